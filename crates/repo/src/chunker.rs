//! Content-defined chunking with parameters per kind of data: FastCDC 2020 for files, and
//! a line-anchored variant of it for database dumps.
//!
//! Media files are cut into large chunks (fewer index entries, little to gain from small
//! ones); database dumps into small chunks, because a change to a few rows then rewrites
//! little. Pure logic over a reader; the caller decides what to do with each chunk. It must
//! not change where an existing repository's parameters cut: dedup depends on it.

use std::io::Read;

use serde::{Deserialize, Serialize};

/// Chunk size bounds in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChunkerParams {
    /// Smallest chunk (except the last of a file).
    pub min: u32,
    /// Target average.
    pub avg: u32,
    /// Largest chunk.
    pub max: u32,
    /// Line-anchored cutting (for dumps): besides FastCDC's rolling gear hash over the last
    /// 64 bytes, a hash of the current line since its last `\n` may also cut. Rows that differ
    /// only in a few bytes before long runs of identical bytes (padding, repeated values) give
    /// the gear hash nothing to cut on, so chunks there reach `max` and an edit shifts every
    /// following cut; the line hash keeps cuts tied to the rows. Absent in the config of
    /// repositories made before it existed (plain FastCDC).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub line_anchored: bool,
    /// With `line_anchored`: the gear hash is first fed the 64 bytes before `min`, so every
    /// position it tests sees 64 bytes of content and nothing of where the chunk began.
    /// Started at `min` from zero (FastCDC's way, and these repositories' before it
    /// existed), the hash over a run of one byte `b` is `G[b]·(2^k − 1)` `k` bytes in: with
    /// some seeds (2 in 2,500 searched) one such `k` passes the mask, and then rows padded with such
    /// runs are cut `k` bytes after `min` — cuts that follow the previous cut, not the
    /// content, so one deleted row shifts every later cut. Absent in the config of
    /// repositories made before it existed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub full_window: bool,
}

impl ChunkerParams {
    /// For files (media): 512 KiB / 1 MiB / 8 MiB.
    pub const FILES: ChunkerParams = ChunkerParams {
        min: 512 * 1024,
        avg: 1024 * 1024,
        max: 8 * 1024 * 1024,
        line_anchored: false,
        full_window: false,
    };
    /// For database dumps and other streams: 8 KiB / 16 KiB / 64 KiB, line-anchored.
    pub const DUMPS: ChunkerParams = ChunkerParams {
        min: 8 * 1024,
        avg: 16 * 1024,
        max: 64 * 1024,
        line_anchored: true,
        full_window: true,
    };

    /// Checks the bounds FastCDC accepts.
    ///
    /// # Errors
    /// A message naming the bound that is out of range.
    pub fn validate(&self) -> Result<(), String> {
        use fastcdc::v2020::{
            AVERAGE_MAX, AVERAGE_MIN, MAXIMUM_MAX, MAXIMUM_MIN, MINIMUM_MAX, MINIMUM_MIN,
        };
        if self.full_window && !self.line_anchored {
            return Err(format!(
                "chunker bounds {self:?}: full_window is only defined for a line-anchored cut"
            ));
        }
        if self.line_anchored && !self.avg.is_power_of_two() {
            return Err(format!(
                "chunker bounds {self:?}: a line-anchored average must be a power of two"
            ));
        }
        let in_range = (MINIMUM_MIN..=MINIMUM_MAX).contains(&self.min)
            && (AVERAGE_MIN..=AVERAGE_MAX).contains(&self.avg)
            && (MAXIMUM_MIN..=MAXIMUM_MAX).contains(&self.max)
            && self.min <= self.avg
            && self.avg <= self.max;
        if !in_range {
            return Err(format!("chunker bounds {self:?} are out of range"));
        }
        Ok(())
    }
}

/// Cuts readers into content-defined chunks, reading through a buffer of `4 × avg` bytes (at
/// least 1 MiB; grown up to `max` where a stretch of input has no cut) that is reused from
/// one reader to the next.
pub struct Chunker<R> {
    reader: Option<R>,
    params: ChunkerParams,
    gear: Box<[u64; 256]>,
    gear_ls: Box<[u64; 256]>,
    masks: (u64, u64),
    buf: Vec<u8>,
    start: usize,
    end: usize,
    eof: bool,
}

impl<R: Read> Chunker<R> {
    /// A chunker with the repository's gear seed (so that chunk boundaries do not reveal
    /// content to someone without the key).
    #[must_use]
    pub fn new(params: ChunkerParams, seed: u64) -> Chunker<R> {
        let (gear, gear_ls) = fastcdc::v2020::get_gear_with_seed(seed);
        let bits = fastcdc::v2020::logarithm2(params.avg) as usize;
        let masks = if params.line_anchored {
            line_masks(bits)
        } else {
            (
                fastcdc::v2020::MASKS
                    .get(bits + 1)
                    .copied()
                    .unwrap_or(u64::MAX),
                fastcdc::v2020::MASKS.get(bits - 1).copied().unwrap_or(0),
            )
        };
        Chunker {
            reader: None,
            params,
            gear,
            gear_ls,
            masks,
            buf: Vec::new(),
            start: 0,
            end: 0,
            eof: true,
        }
    }

    /// Starts cutting a new reader.
    pub fn reset(&mut self, reader: R) {
        self.reader = Some(reader);
        self.start = 0;
        self.end = 0;
        self.eof = false;
    }

    fn fill(&mut self) -> std::io::Result<()> {
        // Only the unread tail (less than a chunk: see `next_chunk`) moves to the front.
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let base = (self.params.avg as usize * 4).max(1 << 20);
        let max = self.params.max as usize;
        if self.buf.len() < base {
            self.buf.resize(base, 0);
        } else if self.end == self.buf.len() && self.buf.len() < max {
            // No cut in a full buffer: grow it towards `max`, where a cut is certain.
            self.buf.resize((self.buf.len() * 2).min(max), 0);
        }
        let Some(reader) = self.reader.as_mut() else {
            self.eof = true;
            return Ok(());
        };
        while !self.eof && self.end < self.buf.len() {
            match reader.read(&mut self.buf[self.end..]) {
                Ok(0) => self.eof = true,
                Ok(n) => self.end += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// The next chunk, or `None` at the end of the current reader.
    ///
    /// # Errors
    /// A read error of the underlying reader.
    pub fn next_chunk(&mut self) -> std::io::Result<Option<Vec<u8>>> {
        loop {
            let data = &self.buf[self.start..self.end];
            let len = if data.is_empty() { 0 } else { self.cut(data) };
            // A cut before the end of what is buffered is where it would be with all of the
            // input at hand: both hashes only look back. A cut at the end may only mean that
            // the buffered bytes ran out; then read more, unless there is no more or `max`
            // bytes are here.
            let decided =
                self.eof || data.len() >= self.params.max as usize || (len > 0 && len < data.len());
            if !decided {
                self.fill()?;
                continue;
            }
            if data.is_empty() {
                self.reader = None;
                return Ok(None);
            }
            let len = if len == 0 { data.len() } else { len };
            let mut chunk = crate::buffers::take(len);
            chunk.extend_from_slice(&data[..len]);
            self.start += len;
            return Ok(Some(chunk));
        }
    }

    /// Length of the next chunk of `data` (not empty) by the parameters' cut.
    fn cut(&self, data: &[u8]) -> usize {
        let p = &self.params;
        let (mask_s, mask_l) = self.masks;
        if p.line_anchored {
            cut_line_anchored(data, p, &self.gear, self.masks)
        } else {
            fastcdc::v2020::cut_gear(
                data,
                p.min as usize,
                p.avg as usize,
                p.max as usize,
                mask_s,
                mask_l,
                mask_s << 1,
                mask_l << 1,
                &self.gear,
                &self.gear_ls,
            )
            .1
        }
    }
}

/// The masks of the line-anchored cut: the top `bits + 1` bits before `avg`, the top
/// `bits − 1` after (FastCDC's normalisation level 1). The top bits of the gear hash depend
/// on all of its 64-byte window.
fn line_masks(bits: usize) -> (u64, u64) {
    let top = |n: usize| -> u64 {
        match n {
            0 => 0,
            n if n >= 64 => u64::MAX,
            n => !(u64::MAX >> n),
        }
    };
    (top(bits + 1), top(bits.saturating_sub(1)))
}

/// Length of the next line-anchored chunk of `data` (all of it when shorter than `min`).
///
/// Cuts after the first byte at or past `min` where either hash has its masked bits zero:
/// the gear hash `g = (g << 1) + G[b]` (fed the 64 bytes before `min` with `full_window`,
/// else started at `min` from zero, as FastCDC does) or the line hash `h = rotl(h, 1) + G[b]`,
/// which covers every byte of the current line since its last `\n` (a newline resets it to all
/// ones, which no mask accepts). At `max` it cuts regardless.
///
/// The masks are top bits, so "masked bits zero" is "at most `!mask`", and one comparison of
/// the smaller hash tests both. Lines are found with `memchr`, so that the loop over a line's
/// bytes carries no reset: it runs at about twice the speed of a loop that tests each byte
/// for a newline (the cuts are the same; `tests::same_cuts_as_the_byte_at_a_time_loop`).
fn cut_line_anchored(
    data: &[u8],
    p: &ChunkerParams,
    gear: &[u64; 256],
    (mask_s, mask_l): (u64, u64),
) -> usize {
    let (min, avg, max) = (p.min as usize, p.avg as usize, p.max as usize);
    let end = data.len().min(max);
    if end <= min {
        return end;
    }
    // The line hash needs the current line from its start: from the last newline before `min`.
    let line_start = memchr::memrchr(b'\n', &data[..min]).map_or(0, |i| i + 1);
    let mut line: u64 = u64::MAX;
    for &b in &data[line_start..min] {
        line = line.rotate_left(1).wrapping_add(gear[usize::from(b)]);
    }
    let mut roll: u64 = 0;
    if p.full_window {
        for &b in &data[min.saturating_sub(64)..min] {
            roll = (roll << 1).wrapping_add(gear[usize::from(b)]);
        }
    }
    let avg = avg.min(end);
    let mut i = min;
    for (phase_end, limit) in [(avg, !mask_s), (end, !mask_l)] {
        while i < phase_end {
            let rest = &data[i..phase_end];
            let line_end = memchr::memchr(b'\n', rest).unwrap_or(rest.len());
            let bytes = &rest[..line_end];
            // Four bytes at a time, one test of the smallest of their eight hashes: the
            // hashes are the same, and only where that test passes is the first of the four
            // that cuts looked for.
            let mut quads = bytes.chunks_exact(4);
            let mut k = 0;
            for q in &mut quads {
                let mut hashes = [0u64; 4];
                let mut lowest = u64::MAX;
                for (h, &b) in hashes.iter_mut().zip(q) {
                    let g = gear[usize::from(b)];
                    roll = (roll << 1).wrapping_add(g);
                    line = line.rotate_left(1).wrapping_add(g);
                    *h = roll.min(line);
                    lowest = lowest.min(*h);
                }
                if lowest <= limit
                    && let Some(j) = hashes.iter().position(|&h| h <= limit)
                {
                    return i + k + j + 1;
                }
                k += 4;
            }
            for &b in quads.remainder() {
                let g = gear[usize::from(b)];
                roll = (roll << 1).wrapping_add(g);
                line = line.rotate_left(1).wrapping_add(g);
                if roll.min(line) <= limit {
                    return i + k + 1;
                }
                k += 1;
            }
            i += line_end;
            if i < phase_end {
                // The newline itself.
                roll = (roll << 1).wrapping_add(gear[usize::from(b'\n')]);
                line = u64::MAX;
                if roll.min(line) <= limit {
                    return i + 1;
                }
                i += 1;
            }
        }
    }
    end
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first version of [`cut_line_anchored`], a byte at a time: the cuts must not change.
    ///
    /// Cuts after the first byte at or past `min` where either hash has its masked bits zero:
    /// the gear hash `g = (g << 1) + G[b]` (from the 64 bytes before `min` with `full_window`,
    /// else from zero at `min`, as FastCDC does) or the line hash
    /// `h = rotl(h, 1) + G[b]`, which covers every byte of the current line since its last `\n`
    /// (a newline resets it to all ones, which no mask accepts). At `max` it cuts regardless.
    fn cut_line_anchored_reference(
        data: &[u8],
        p: &ChunkerParams,
        gear: &[u64; 256],
        (mask_s, mask_l): (u64, u64),
    ) -> usize {
        let (min, avg, max) = (p.min as usize, p.avg as usize, p.max as usize);
        let end = data.len().min(max);
        if end <= min {
            return end;
        }
        // The line hash needs the current line from its start: from the last newline before `min`.
        let line_start = data[..min]
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        let mut line: u64 = u64::MAX;
        for &b in &data[line_start..min] {
            line = line.rotate_left(1).wrapping_add(gear[usize::from(b)]);
        }
        let mut roll: u64 = 0;
        if p.full_window {
            for &b in &data[min.saturating_sub(64)..min] {
                roll = (roll << 1).wrapping_add(gear[usize::from(b)]);
            }
        }
        let avg = avg.min(end);
        for (range, mask) in [(min..avg, mask_s), (avg..end, mask_l)] {
            for i in range {
                let b = data[i];
                let g = gear[usize::from(b)];
                roll = (roll << 1).wrapping_add(g);
                line = if b == b'\n' {
                    u64::MAX
                } else {
                    line.rotate_left(1).wrapping_add(g)
                };
                if roll & mask == 0 || line & mask == 0 {
                    return i + 1;
                }
            }
        }
        end
    }

    #[test]
    fn same_cuts_as_the_byte_at_a_time_loop() {
        let (gear, _) = fastcdc::v2020::get_gear_with_seed(7);
        for full_window in [false, true] {
            same_cuts_with(
                &ChunkerParams {
                    min: 256,
                    avg: 1024,
                    max: 4096,
                    line_anchored: true,
                    full_window,
                },
                &gear,
            );
        }
    }

    fn same_cuts_with(p: &ChunkerParams, gear: &[u64; 256]) {
        // Lines from none at all to a newline every few bytes, and runs of one byte.
        for (seed, line_every) in [(1, 0), (2, 3), (3, 40), (4, 200), (5, 5000), (6, 64)] {
            let mut data = pseudo_random(200_000, seed);
            for (i, b) in data.iter_mut().enumerate() {
                if line_every > 0 && i % line_every == line_every - 1 {
                    *b = b'\n';
                } else if seed == 6 && i % 1000 > 100 {
                    *b = b' ';
                }
            }
            for bits in [0, 1, 9, 10, 11, 63, 64, 70] {
                let masks = line_masks(bits);
                let mut at = 0;
                while at < data.len() {
                    let rest = &data[at..];
                    let want = cut_line_anchored_reference(rest, p, gear, masks);
                    let got = cut_line_anchored(rest, p, gear, masks);
                    assert_eq!(got, want, "{p:?}, seed {seed}, bits {bits}, at {at}");
                    at += want.max(1);
                }
            }
        }
    }

    fn pseudo_random(n: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    }

    fn chunks(data: &[u8], p: ChunkerParams) -> Vec<Vec<u8>> {
        let mut c = Chunker::new(p, 42);
        c.reset(data);
        let mut out = vec![];
        while let Some(ch) = c.next_chunk().unwrap() {
            out.push(ch);
        }
        out
    }

    /// A reader that hands out at most a few bytes at a time (sizes cycling through `steps`).
    struct Trickle<'a> {
        data: &'a [u8],
        steps: &'a [usize],
        n: usize,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let step = self.steps[self.n % self.steps.len()].max(1);
            self.n += 1;
            let k = step.min(buf.len()).min(self.data.len());
            buf[..k].copy_from_slice(&self.data[..k]);
            self.data = &self.data[k..];
            Ok(k)
        }
    }

    /// Where the cut falls with all of the rest of the input at hand: the chunker's buffer,
    /// its refills and the reader's read sizes must not move a cut.
    fn reference_chunks(data: &[u8], p: ChunkerParams) -> Vec<usize> {
        let c: Chunker<&[u8]> = Chunker::new(p, 42);
        let mut at = 0;
        let mut lens = vec![];
        while at < data.len() {
            let len = c.cut(&data[at..]);
            let len = if len == 0 { data.len() - at } else { len };
            lens.push(len);
            at += len;
        }
        lens
    }

    #[test]
    fn cuts_do_not_depend_on_buffering_or_read_sizes() {
        // Random data with a long run of one byte (no cut: chunks of `max`, and the buffer
        // must grow to find that out), then text with lines.
        let mut data = pseudo_random(11 << 20, 3);
        data[(2 << 20)..(2 << 20) + (17 << 20) / 2].fill(0);
        data.extend(padded_rows(0..60_000));
        for p in [ChunkerParams::FILES, ChunkerParams::DUMPS] {
            let want = reference_chunks(&data, p);
            assert!(
                p.line_anchored || want.contains(&(p.max as usize)),
                "{p:?}: the data must hold a chunk of max size"
            );
            for steps in [&[usize::MAX][..], &[1, 4095, 70_000, 3 << 20], &[65_537]] {
                let mut c = Chunker::new(p, 42);
                c.reset(Trickle {
                    data: &data,
                    steps,
                    n: 0,
                });
                let mut got = vec![];
                while let Some(ch) = c.next_chunk().unwrap() {
                    got.push(ch.len());
                }
                assert_eq!(got, want, "{p:?}, reads of {steps:?}");
            }
        }
    }

    #[test]
    fn params_are_valid() {
        ChunkerParams::FILES.validate().unwrap();
        ChunkerParams::DUMPS.validate().unwrap();
        assert!(
            ChunkerParams {
                min: 1,
                avg: 2,
                max: 3,
                line_anchored: false,
                full_window: false,
            }
            .validate()
            .is_err()
        );
        let odd = ChunkerParams {
            avg: 12 * 1024,
            ..ChunkerParams::DUMPS
        };
        assert!(odd.validate().unwrap_err().contains("power of two"));
        let window_alone = ChunkerParams {
            full_window: true,
            ..ChunkerParams::FILES
        };
        assert!(
            window_alone
                .validate()
                .unwrap_err()
                .contains("line-anchored")
        );
        // A config written before `full_window` existed reads as without it; DUMPS writes it.
        let old: ChunkerParams =
            serde_json::from_str(r#"{"min":8192,"avg":16384,"max":65536,"line_anchored":true}"#)
                .unwrap();
        assert!(old.line_anchored && !old.full_window);
        let json = serde_json::to_string(&ChunkerParams::DUMPS).unwrap();
        assert!(json.contains(r#""full_window":true"#), "{json}");
        assert!(
            !serde_json::to_string(&ChunkerParams::FILES)
                .unwrap()
                .contains("window")
        );
    }

    fn chunks_seeded(data: &[u8], p: ChunkerParams, seed: u64) -> Vec<Vec<u8>> {
        let mut c = Chunker::new(p, seed);
        c.reset(data);
        let mut out = vec![];
        while let Some(ch) = c.next_chunk().unwrap() {
            out.push(ch);
        }
        out
    }

    /// How many chunks of `edited` are not chunks of `data`.
    fn new_chunks(data: &[u8], edited: &[u8], p: ChunkerParams, seed: u64) -> usize {
        let before = chunks_seeded(data, p, seed);
        let set: std::collections::HashSet<_> = before.iter().collect();
        chunks_seeded(edited, p, seed)
            .iter()
            .filter(|c| !set.contains(c))
            .count()
    }

    /// With every seed, three deleted rows cost a few chunks each. The first seed is one where
    /// the gear hash started from zero at `min` passes the mask some bytes into the padding, so
    /// that without `full_window` chunks there follow the previous cut rather than the rows
    /// (found by searching 2,500 seeds; a dedup test failed this way about once in 100
    /// random keys).
    #[test]
    fn padded_rows_resynchronise_with_every_seed() {
        let deleted = [20_000, 100_000, 180_000];
        let data = padded_rows(1..200_000);
        let edited = padded_rows((1..200_000).filter(|i| !deleted.contains(i)));
        let trap = 0x1236_c68c_9ceb_35a2;
        let without = ChunkerParams {
            full_window: false,
            ..ChunkerParams::DUMPS
        };
        let lost = new_chunks(&data, &edited, without, trap);
        assert!(
            lost > 20,
            "without the full window only {lost} chunks were new"
        );
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        for n in 0..30 {
            let seed = if n == 0 { trap } else { x };
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            let new = new_chunks(&data, &edited, ChunkerParams::DUMPS, seed);
            assert!(new <= 2 * deleted.len(), "seed {seed:#x}: {new} chunks new");
        }
    }

    /// Rows like pgbench's: a unique number, then 84 identical bytes.
    fn padded_rows(ids: impl Iterator<Item = u32>) -> Vec<u8> {
        let mut out = Vec::new();
        for id in ids {
            out.extend_from_slice(format!("{id}\t1\t0\t{:84}\n", "").as_bytes());
        }
        out
    }

    #[test]
    fn padded_rows_are_cut_near_the_average_and_resynchronise_after_a_deleted_row() {
        let p = ChunkerParams::DUMPS;
        let data = padded_rows(1..40_000);
        let cs = chunks(&data, p);
        assert_eq!(cs.concat(), data);
        for c in &cs[..cs.len() - 1] {
            assert!(c.len() >= p.min as usize && c.len() <= p.max as usize);
        }
        let mean = data.len() / cs.len();
        assert!(
            (p.avg as usize / 2..p.avg as usize * 2).contains(&mean),
            "mean chunk {mean} bytes"
        );
        assert!(
            cs.iter().filter(|c| c.len() == p.max as usize).count() * 10 < cs.len(),
            "most cuts are at max: the rows gave the hashes nothing"
        );
        // Two rows deleted far apart: each costs a chunk or two, not every chunk after it.
        let edited = padded_rows((1..40_000).filter(|&i| i != 9_000 && i != 30_000));
        let b = chunks(&edited, p);
        let set: std::collections::HashSet<_> = cs.iter().collect();
        let new = b.iter().filter(|c| !set.contains(c)).count();
        assert!(new <= 6, "{new} of {} chunks are new", b.len());
        // Plain FastCDC with the same bounds cuts these rows at max and does worse.
        let plain = ChunkerParams {
            line_anchored: false,
            full_window: false,
            ..p
        };
        let (pa, pb) = (chunks(&data, plain), chunks(&edited, plain));
        let set: std::collections::HashSet<_> = pa.iter().collect();
        let plain_new = pb.iter().filter(|c| !set.contains(c)).count();
        assert!(plain_new > new, "plain {plain_new}, line-anchored {new}");
    }

    #[test]
    fn line_anchored_cuts_data_without_newlines_and_runs_of_one_byte() {
        let p = ChunkerParams::DUMPS;
        for data in [pseudo_random(1_000_000, 3), vec![0u8; 1_000_000]] {
            let cs = chunks(&data, p);
            assert_eq!(cs.concat(), data);
            for c in &cs[..cs.len() - 1] {
                assert!(c.len() >= p.min as usize && c.len() <= p.max as usize);
            }
        }
        // Random bytes: cut by content, near the average.
        let cs = chunks(&pseudo_random(1_000_000, 3), p);
        assert!(
            cs.len() > 1_000_000 / (p.avg as usize * 2),
            "{} chunks",
            cs.len()
        );
    }

    #[test]
    fn chunks_concatenate_and_respect_bounds() {
        let data = pseudo_random(3_000_000, 7);
        let p = ChunkerParams::DUMPS;
        let cs = chunks(&data, p);
        assert_eq!(cs.concat(), data);
        for c in &cs[..cs.len() - 1] {
            assert!(c.len() >= p.min as usize && c.len() <= p.max as usize);
        }
        assert!(cs.len() > 20, "expected many chunks, got {}", cs.len());
    }

    #[test]
    fn boundaries_resynchronise_after_an_insertion() {
        let data = pseudo_random(2_000_000, 9);
        let mut edited = data[..1_000_000].to_vec();
        edited.extend_from_slice(b"INSERTED ROW");
        edited.extend_from_slice(&data[1_000_000..]);
        let a = chunks(&data, ChunkerParams::DUMPS);
        let b = chunks(&edited, ChunkerParams::DUMPS);
        let set: std::collections::HashSet<_> = a.iter().collect();
        let shared = b.iter().filter(|c| set.contains(c)).count();
        assert!(
            shared + 3 >= b.len(),
            "only {shared} of {} chunks shared",
            b.len()
        );
    }

    #[test]
    fn empty_input_has_no_chunks() {
        assert!(chunks(&[], ChunkerParams::FILES).is_empty());
    }
}
