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

/// The zstd level used for blobs.
pub const ZSTD_LEVEL: i32 = 3;

/// Below this many bytes compression is not tried.
const MIN_COMPRESS: usize = 64;

/// Compresses `data` unless that saves less than 1/32 of it; returns the bytes to store.
///
/// Incompressible data is detected cheaply first: a 4 KiB sample from the middle is
/// compressed at the fastest level, and when it does not shrink the whole blob is stored
/// as is.
#[must_use]
pub fn compress(data: &[u8]) -> (Compression, Vec<u8>) {
    if data.len() < MIN_COMPRESS || !sample_compresses(data) {
        return (Compression::None, data.to_vec());
    }
    match zstd::bulk::compress(data, ZSTD_LEVEL) {
        Ok(c) if c.len() + c.len() / 32 < data.len() => (Compression::Zstd, c),
        _ => (Compression::None, data.to_vec()),
    }
}

/// The incompressibility probe of [`compress`]: whether a 4 KiB sample from the middle of
/// `data` shrinks by at least 1/16 at zstd level 1 (always true for 8 KiB or less). Public
/// so that the engine benchmarks can time it alone.
#[must_use]
pub fn sample_compresses(data: &[u8]) -> bool {
    const SAMPLE: usize = 4096;
    if data.len() <= SAMPLE * 2 {
        return true;
    }
    let start = data.len() / 2 - SAMPLE / 2;
    let sample = data.get(start..start + SAMPLE).unwrap_or(data);
    match zstd::bulk::compress(sample, 1) {
        Ok(c) => c.len() < SAMPLE - SAMPLE / 16,
        Err(_) => true,
    }
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
        Compression::None => Ok(stored),
        Compression::Zstd => {
            let out = zstd::bulk::decompress(&stored, raw_len)
                .map_err(|e| DecompressError(e.to_string()))?;
            if out.len() != raw_len {
                return Err(DecompressError(format!(
                    "expected {raw_len} bytes, got {}",
                    out.len()
                )));
            }
            Ok(out)
        }
    }
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
    fn wrong_length_is_an_error() {
        let text = vec![b'a'; 10_000];
        let (c, out) = compress(&text);
        assert!(decompress(c, out, 9_999).is_err());
    }
}
