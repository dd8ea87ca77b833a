//! Content-defined chunking (FastCDC 2020) with parameters per kind of data.
//!
//! Media files are cut into large chunks (fewer index entries, little to gain from small
//! ones); database dumps into small chunks, because a change to a few rows then rewrites
//! little. Pure logic over a reader; the caller decides what to do with each chunk.

use std::io::Read;

use serde::{Deserialize, Serialize};

/// Chunk size bounds in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkerParams {
    /// Smallest chunk (except the last of a file).
    pub min: u32,
    /// Target average.
    pub avg: u32,
    /// Largest chunk.
    pub max: u32,
}

impl ChunkerParams {
    /// For files (media): 512 KiB / 1 MiB / 8 MiB.
    pub const FILES: ChunkerParams = ChunkerParams {
        min: 512 * 1024,
        avg: 1024 * 1024,
        max: 8 * 1024 * 1024,
    };
    /// For database dumps and other streams: 16 KiB / 64 KiB / 256 KiB.
    pub const DUMPS: ChunkerParams = ChunkerParams {
        min: 16 * 1024,
        avg: 64 * 1024,
        max: 256 * 1024,
    };

    /// Checks the bounds FastCDC accepts.
    ///
    /// # Errors
    /// A message naming the bound that is out of range.
    pub fn validate(&self) -> Result<(), String> {
        use fastcdc::v2020::{
            AVERAGE_MAX, AVERAGE_MIN, MAXIMUM_MAX, MAXIMUM_MIN, MINIMUM_MAX, MINIMUM_MIN,
        };
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

/// Cuts readers into content-defined chunks, reading through a buffer of `2 × max` bytes
/// that is reused from one reader to the next.
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
        let masks = (
            fastcdc::v2020::MASKS
                .get(bits + 1)
                .copied()
                .unwrap_or(u64::MAX),
            fastcdc::v2020::MASKS.get(bits - 1).copied().unwrap_or(0),
        );
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
        let want = self.params.max as usize * 2;
        if self.buf.len() < want {
            self.buf.resize(want, 0);
        }
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
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
        if self.end - self.start < self.params.max as usize && !self.eof {
            self.fill()?;
        }
        let data = &self.buf[self.start..self.end];
        if data.is_empty() {
            self.reader = None;
            return Ok(None);
        }
        let p = &self.params;
        let (mask_s, mask_l) = self.masks;
        let (_hash, len) = fastcdc::v2020::cut_gear(
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
        );
        let len = if len == 0 { data.len() } else { len };
        let chunk = data[..len].to_vec();
        self.start += len;
        Ok(Some(chunk))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn params_are_valid() {
        ChunkerParams::FILES.validate().unwrap();
        ChunkerParams::DUMPS.validate().unwrap();
        assert!(
            ChunkerParams {
                min: 1,
                avg: 2,
                max: 3
            }
            .validate()
            .is_err()
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
