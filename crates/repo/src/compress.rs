//! Compression of blob contents: zstd, skipped where the data does not compress.
//!
//! Pure functions over bytes; no I/O.

/// How a blob's stored bytes are compressed (recorded in pack headers and index entries).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Compression {
    /// Stored as is.
    None = 0,
    /// A single zstd frame.
    Zstd = 1,
}

impl Compression {
    /// From its byte value.
    #[must_use]
    pub fn from_u8(b: u8) -> Option<Compression> {
        match b {
            0 => Some(Compression::None),
            1 => Some(Compression::Zstd),
            _ => None,
        }
    }
}

/// The zstd level of file contents and trees: media must not take more room than in the
/// peers' repositories (they use level 3 too). Compressed with [`FILES_MATCH_FINDER`].
pub const ZSTD_LEVEL: i32 = 3;

/// How contexts at [`ZSTD_LEVEL`] find matches: zstd's `fast` strategy over a 2^17-entry
/// hash table with a minimum match of 7 bytes, instead of level 3's `dfast` (two hash
/// tables of 2^17 and 2^16 entries, matches from 5 bytes). Measured on the benchmark's
/// 430 MB of text, CSV and JSON in blocks of 1 MiB (`zstd -b -B1M`, docs/benchmarks.md,
/// twelfth and thirteenth passes): a 2^18 table with matches from 6 bytes was 1.24× level
/// 3's speed for 0.5 % more bytes; 2^17 and 7 bytes is 1.15–1.25× faster again for 1.1 %
/// more than that, and in a backup on two cores, where two contexts share the caches, it
/// took 1.0–1.6 s less CPU of 5.6–6.6 (the repository grew by 0.2 %, to 1.004 of the
/// smallest peer's). Level 2 was 1.47× level 3 for 4.6 % more, and a 2^16 table 1.3× for
/// 5 %: either would take the repository past the smallest peer's by about 1 %. Any zstd
/// decoder reads the frames; nothing in the format depends on it.
const FILES_MATCH_FINDER: [zstd::zstd_safe::CParameter; 3] = [
    zstd::zstd_safe::CParameter::Strategy(zstd::zstd_safe::Strategy::ZSTD_fast),
    zstd::zstd_safe::CParameter::HashLog(17),
    zstd::zstd_safe::CParameter::MinMatch(7),
];

/// The zstd level of streams (database dumps). Level 1 takes about 0.6 of the CPU time of
/// level 3 on a dump and stores about 4 % more; a dump's backup then keeps pace with the
/// dump tool on two cores, which keeps the database's snapshot open for less time.
pub const ZSTD_LEVEL_STREAMS: i32 = 1;

/// Below this many bytes compression is not tried.
const MIN_COMPRESS: usize = 64;

/// zstd contexts, lent to one compression or decompression at a time: creating one
/// allocates (and the kernel then zero-fills) about a megabyte of tables, which cost more
/// than compressing a small chunk.
struct Contexts {
    /// At [`ZSTD_LEVEL`] with [`FILES_MATCH_FINDER`] (file contents).
    files: Option<zstd::bulk::Compressor<'static>>,
    /// At any other level (streams); a service backs up both, so each keeps its own.
    other: Option<zstd::bulk::Compressor<'static>>,
    /// The level `other` is set to.
    other_level: i32,
    probe: Option<zstd::bulk::Compressor<'static>>,
    decompressor: Option<zstd::bulk::Decompressor<'static>>,
    /// The probe's output (a few KiB).
    scratch: Vec<u8>,
}

impl Contexts {
    const fn new() -> Contexts {
        Contexts {
            files: None,
            other: None,
            other_level: ZSTD_LEVEL_STREAMS,
            probe: None,
            decompressor: None,
            scratch: Vec::new(),
        }
    }
}

/// Contexts not in use. They are shared by all threads rather than kept per thread: a
/// backup's chunks are compressed on whichever of a dozen pool threads is free, and with a
/// context per thread a backup of the benchmark's media tree held 13 MB of them at its peak
/// (heaptrack) while only three compressed at a time.
static IDLE_CONTEXTS: std::sync::Mutex<Vec<Contexts>> = std::sync::Mutex::new(Vec::new());

/// How many compress at once: one per core and one more to cover a hand-off. A backup runs
/// that many workers, and as many contexts are kept idle; more are dropped when given back.
pub(crate) fn compressing_at_once() -> usize {
    static AT_ONCE: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *AT_ONCE.get_or_init(|| {
        std::thread::available_parallelism()
            .map(std::num::NonZero::get)
            .unwrap_or(2)
            + 1
    })
}

/// The idle contexts. A poisoned lock only means another thread panicked while taking or
/// giving back a context: the list itself is still whole.
fn idle_contexts() -> std::sync::MutexGuard<'static, Vec<Contexts>> {
    IDLE_CONTEXTS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Runs `f` with an idle context set (a new one when none is idle), then gives it back.
fn with_contexts<T>(f: impl FnOnce(&mut Contexts) -> T) -> T {
    let mut cx = idle_contexts().pop().unwrap_or_else(Contexts::new);
    let out = f(&mut cx);
    let mut idle = idle_contexts();
    if idle.len() < compressing_at_once() {
        idle.push(cx);
    }
    out
}

/// Drops the idle contexts (a megabyte or more each). A long-running process calls it when a
/// job ends: contexts are made again by the next one that compresses.
pub fn release_idle_contexts() {
    idle_contexts().clear();
}

/// zstd at `level` of `data`, appended to `out`, with the context in `slot` (made at `level`
/// when empty); the compressed length, or `None` (and `out` as it was) when zstd fails.
fn zstd_append(
    slot: &mut Option<zstd::bulk::Compressor<'static>>,
    level: i32,
    data: &[u8],
    out: &mut Vec<u8>,
) -> Option<usize> {
    if slot.is_none() {
        *slot = zstd::bulk::Compressor::new(level).ok().and_then(|mut c| {
            if level == ZSTD_LEVEL {
                for p in FILES_MATCH_FINDER {
                    c.set_parameter(p).ok()?;
                }
            }
            Some(c)
        });
    }
    let ctx = slot.as_mut()?;
    // Zeroing the room of each blob first cost 2 % of a dump's backup.
    let start = out.len();
    let written = write_after_content(out, zstd::zstd_safe::compress_bound(data.len()), |room| {
        ctx.compress_to_buffer(data, room).ok()
    });
    out.truncate(start + written.unwrap_or(0));
    written
}

/// Runs `write` with a cursor just after `out`'s content, over at least `room` bytes of spare
/// capacity that are not zeroed first: zstd writes there, and `out`'s length grows by what it
/// wrote.
fn write_after_content<T>(
    out: &mut Vec<u8>,
    room: usize,
    write: impl FnOnce(&mut std::io::Cursor<Vec<u8>>) -> T,
) -> T {
    let start = out.len();
    out.reserve(room);
    let mut cursor = std::io::Cursor::new(std::mem::take(out));
    cursor.set_position(start as u64);
    let result = write(&mut cursor);
    *out = cursor.into_inner();
    result
}

/// Room [`compress_append`] may use for `len` bytes of data (zstd's worst case).
#[must_use]
pub fn stored_bound(len: usize) -> usize {
    zstd::zstd_safe::compress_bound(len).max(len)
}

/// Compresses `data` unless that saves less than 1/32 of it; returns the bytes to store.
///
/// Incompressible data is detected cheaply first: a 4 KiB sample from the middle is
/// compressed at the fastest level, and when it does not shrink the whole blob is stored
/// as is.
#[must_use]
pub fn compress(data: &[u8]) -> (Compression, Vec<u8>) {
    let mut out = Vec::new();
    let c = compress_append(data, ZSTD_LEVEL, &mut out);
    (c, out)
}

/// Like [`compress`], at zstd `level`, appending the bytes to store to `out` (e.g. after
/// room for a nonce), so that they are written once, straight into the buffer that gets
/// sealed.
pub fn compress_append(data: &[u8], level: i32, out: &mut Vec<u8>) -> Compression {
    if data.len() < MIN_COMPRESS || !sample_compresses(data) {
        out.extend_from_slice(data);
        return Compression::None;
    }
    with_contexts(|cx| {
        let blob = if level == ZSTD_LEVEL {
            &mut cx.files
        } else {
            if cx.other_level != level {
                // Recreated at the new level on first use.
                cx.other = None;
                cx.other_level = level;
            }
            &mut cx.other
        };
        let start = out.len();
        match zstd_append(blob, level, data, out) {
            Some(n) if n + n / 32 < data.len() => Compression::Zstd,
            _ => {
                out.truncate(start);
                out.extend_from_slice(data);
                Compression::None
            }
        }
    })
}

/// The incompressibility probe of [`compress`]: whether a 4 KiB sample from the middle of
/// `data` shrinks by at least 1/16 at zstd level 1 (always true for 64 KiB or less: there the
/// probe costs a quarter of compressing a 16 KiB dump chunk whole and saves little, because
/// level 1 gives up on random bytes quickly). Public so that the engine benchmarks can time
/// it alone.
#[must_use]
pub fn sample_compresses(data: &[u8]) -> bool {
    const SAMPLE: usize = 4096;
    const PROBE_ABOVE: usize = 64 * 1024;
    if data.len() <= PROBE_ABOVE {
        return true;
    }
    let start = data.len() / 2 - SAMPLE / 2;
    let sample = data.get(start..start + SAMPLE).unwrap_or(data);
    with_contexts(|cx| {
        let Contexts { probe, scratch, .. } = cx;
        scratch.clear();
        match zstd_append(probe, 1, sample, scratch) {
            Some(n) => n < SAMPLE - SAMPLE / 16,
            None => true,
        }
    })
}

/// Errors from decompression.
#[derive(Debug, thiserror::Error)]
#[error("decompression failed: {0}")]
pub struct DecompressError(String);

/// Reverses [`compress`]; `raw_len` is the length recorded for the blob.
///
/// # Errors
/// When the bytes are not a valid zstd frame of `raw_len` bytes.
pub fn decompress(
    c: Compression,
    stored: Vec<u8>,
    raw_len: usize,
) -> Result<Vec<u8>, DecompressError> {
    match c {
        Compression::None => {
            check_raw_len(stored.len(), raw_len)?;
            Ok(stored)
        }
        Compression::Zstd => {
            let mut out = Vec::new();
            decompress_zstd_into(&stored, raw_len, &mut out)?;
            Ok(out)
        }
    }
}

/// Like [`decompress`] for a zstd blob, into `out` (cleared, then filled with exactly
/// `raw_len` bytes), with a pooled context: no allocation once `out` has grown.
///
/// # Errors
/// When the bytes are not a valid zstd frame of `raw_len` bytes.
pub fn decompress_zstd_into(
    stored: &[u8],
    raw_len: usize,
    out: &mut Vec<u8>,
) -> Result<(), DecompressError> {
    out.clear();
    decompress_zstd_append(stored, raw_len, out)
}

/// Like [`decompress_zstd_into`], appending the `raw_len` bytes to `out` (restore decodes
/// a run of neighbouring blobs into one buffer). On an error `out` may hold part of them.
///
/// # Errors
/// When the bytes are not a valid zstd frame of `raw_len` bytes.
pub fn decompress_zstd_append(
    stored: &[u8],
    raw_len: usize,
    out: &mut Vec<u8>,
) -> Result<(), DecompressError> {
    // Zeroing a run of decoded blobs first cost 3 % of a restore's samples.
    let n = write_after_content(out, raw_len, |room| {
        with_contexts(|cx| {
            if cx.decompressor.is_none() {
                cx.decompressor = Some(zstd::bulk::Decompressor::new().map_err(|e| e.to_string())?);
            }
            match cx.decompressor.as_mut() {
                Some(d) => d
                    .decompress_to_buffer(stored, room)
                    .map_err(|e| e.to_string()),
                None => Err("no decompression context".to_owned()),
            }
        })
    });
    let n = n.map_err(DecompressError)?;
    check_raw_len(n, raw_len)
}

/// A blob's content has the length recorded for it.
///
/// # Errors
/// When it does not.
pub fn check_raw_len(len: usize, raw_len: usize) -> Result<(), DecompressError> {
    if len != raw_len {
        return Err(DecompressError(format!(
            "expected {raw_len} bytes, got {len}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_compresses_random_does_not() {
        let text = "the quick brown fox jumps over the lazy dog\n".repeat(2000);
        let (c, out) = compress(text.as_bytes());
        assert_eq!(c, Compression::Zstd);
        assert!(out.len() < text.len() / 10);
        assert_eq!(decompress(c, out, text.len()).unwrap(), text.as_bytes());

        let mut noise = vec![0u8; 100_000];
        crate::crypto::fill_random(&mut noise);
        let (c, out) = compress(&noise);
        assert_eq!(c, Compression::None);
        assert_eq!(out, noise);
    }

    #[test]
    fn contexts_are_shared_and_the_idle_ones_bounded() {
        let text = "a line of text that repeats itself, as text does\n".repeat(4000);
        // Sixteen threads compress and decompress at once; each gets a context of its own
        // (the output checks it) and no more than the kept number stay idle afterwards.
        std::thread::scope(|s| {
            for i in 0..16 {
                let text = &text;
                s.spawn(move || {
                    let level = if i % 2 == 0 {
                        ZSTD_LEVEL
                    } else {
                        ZSTD_LEVEL_STREAMS
                    };
                    let mut out = Vec::new();
                    assert_eq!(
                        compress_append(text.as_bytes(), level, &mut out),
                        Compression::Zstd
                    );
                    let back = decompress(Compression::Zstd, out, text.len()).unwrap();
                    assert_eq!(back, text.as_bytes());
                });
            }
        });
        let idle = IDLE_CONTEXTS.lock().unwrap().len();
        assert!(idle >= 1, "contexts are given back");
        assert!(idle <= compressing_at_once(), "{idle} idle contexts");
    }

    #[test]
    fn file_contents_use_the_fast_match_finder_and_streams_their_level() {
        // Text with repeats 5 bytes long (dfast would take them) and longer ones.
        let text: Vec<u8> = (0..300_000u32)
            .flat_map(|i| format!("row {},{},{};", i % 997, i % 13, i / 7).into_bytes())
            .collect();
        let with = |level: i32, params: &[zstd::zstd_safe::CParameter]| {
            let mut c = zstd::bulk::Compressor::new(level).unwrap();
            for p in params {
                c.set_parameter(*p).unwrap();
            }
            c.compress(&text).unwrap()
        };
        let mut out = Vec::new();
        assert_eq!(
            compress_append(&text, ZSTD_LEVEL, &mut out),
            Compression::Zstd
        );
        assert_eq!(out, with(ZSTD_LEVEL, &FILES_MATCH_FINDER));
        assert_ne!(out, with(ZSTD_LEVEL, &[]), "level 3's own match finder");
        assert_eq!(
            decompress(Compression::Zstd, out, text.len()).unwrap(),
            text
        );
        // The same thread at the streams' level gets that level's defaults, and back.
        let mut out = Vec::new();
        compress_append(&text, ZSTD_LEVEL_STREAMS, &mut out);
        assert_eq!(out, with(ZSTD_LEVEL_STREAMS, &[]));
        let mut out = Vec::new();
        compress_append(&text, ZSTD_LEVEL, &mut out);
        assert_eq!(out, with(ZSTD_LEVEL, &FILES_MATCH_FINDER));
    }

    #[test]
    fn wrong_length_is_an_error() {
        let text = vec![b'a'; 10_000];
        let (c, out) = compress(&text);
        assert!(decompress(c, out, 9_999).is_err());
    }

    #[test]
    fn appending_keeps_what_was_there_and_checks_the_length() {
        let a = "first blob, first blob, first blob\n".repeat(500);
        let b = "second blob; second blob; second\n".repeat(700);
        let (_, za) = compress(a.as_bytes());
        let (_, zb) = compress(b.as_bytes());
        let mut out = Vec::new();
        decompress_zstd_append(&za, a.len(), &mut out).unwrap();
        decompress_zstd_append(&zb, b.len(), &mut out).unwrap();
        assert_eq!(out, [a.as_bytes(), b.as_bytes()].concat());
        // Longer or shorter than recorded: an error either way, and what was there stays.
        let mut out = b"kept".to_vec();
        assert!(decompress_zstd_append(&zb, b.len() - 1, &mut out).is_err());
        assert!(out.starts_with(b"kept"));
        let mut out = b"kept".to_vec();
        assert!(decompress_zstd_append(&zb, b.len() + 1, &mut out).is_err());
        assert!(out.starts_with(b"kept"));
        // Into a reused buffer larger than needed: exactly the content, nothing stale.
        let mut out = Vec::with_capacity(1 << 20);
        out.extend_from_slice(&[9u8; 1000]);
        decompress_zstd_into(&za, a.len(), &mut out).unwrap();
        assert_eq!(out, a.as_bytes());
    }
}
