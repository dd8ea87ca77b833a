//! Large files written past the page cache (`O_DIRECT`) where the filesystem allows it, and
//! through it where it does not.
//!
//! Copying into the page cache is what a large local write costs most: on the benchmark's
//! machine 1 GiB written through it took 3.5 s of system time on two cores, and with
//! `O_DIRECT` 0.6 s with almost none (docs/benchmarks.md, seventh pass). A direct write needs
//! its memory, offset and length aligned, so bytes are staged in an aligned buffer and
//! written in whole blocks; the last partial block goes through the page cache.
//!
//! A writer can also leave holes where whole aligned blocks are zeros
//! ([`DirectWriter::write_sparse`], for `restore --sparse`): the file reads back the same.
//!
//! Each direct write waits for the disk: this is for large sequential writes (packs, large
//! restored files), never for small files. It must not change what ends up in the file:
//! wherever `O_DIRECT` is refused (tmpfs, some network and FUSE filesystems), at open or at
//! a write, it falls back to plain writes of the same bytes.

use std::fs::File;
use std::io::{self, Seek, SeekFrom, Write};

/// Alignment of a direct write's memory, offset and length: the largest logical block size
/// of common disks.
const ALIGN: usize = 4096;

/// Smallest size worth writing directly: below it the wait for the disk costs more than the
/// copy into the page cache saves.
pub const DIRECT_MIN_BYTES: u64 = 1 << 20;

/// Bytes staged per direct write by [`DirectWriter::new`] callers that have no better size.
pub const DEFAULT_STAGE_BYTES: usize = 2 << 20;

/// A file written sequentially from its start in whole aligned blocks with `O_DIRECT`, where
/// the filesystem allows it (see the module's documentation).
#[derive(Debug)]
pub struct DirectWriter {
    file: File,
    /// `stage` aligned bytes starting at `start`, plus up to [`ALIGN`] bytes to align them.
    buf: Vec<u8>,
    start: usize,
    stage: usize,
    /// Bytes staged, not yet written.
    filled: usize,
    direct: bool,
    /// Bytes of the file so far, written, staged or skipped.
    pos: u64,
    /// Whether a hole was left ([`DirectWriter::write_sparse`]): the file's length is then
    /// set at the end, in case it ends in one.
    holes: bool,
}

impl DirectWriter {
    /// Writes `file` (open for writing, empty, positioned at its start) in whole blocks of
    /// `stage_bytes` (rounded up to the alignment), with `O_DIRECT` if the filesystem takes it.
    #[must_use]
    pub fn new(file: File, stage_bytes: usize) -> DirectWriter {
        DirectWriter::with_buffer(file, stage_bytes, Vec::new())
    }

    /// Like [`DirectWriter::new`], staging in `buf` (grown as needed): for a caller that
    /// writes many files and keeps one buffer between them (see
    /// [`DirectWriter::finish_keeping_buffer`]), so that no file pays for fresh memory.
    #[must_use]
    pub fn with_buffer(file: File, stage_bytes: usize, mut buf: Vec<u8>) -> DirectWriter {
        let stage = stage_bytes.div_ceil(ALIGN).max(1) * ALIGN;
        let direct = set_direct(&file, true).is_ok();
        let start = if direct {
            if buf.len() < stage + ALIGN {
                buf.resize(stage + ALIGN, 0);
            }
            buf.as_ptr().align_offset(ALIGN).min(ALIGN)
        } else {
            0
        };
        DirectWriter {
            file,
            buf,
            start,
            stage,
            filled: 0,
            direct,
            pos: 0,
            holes: false,
        }
    }

    /// Writes `file` through the page cache: for files too small to gain from direct writes.
    #[must_use]
    pub fn plain(file: File) -> DirectWriter {
        DirectWriter {
            file,
            buf: Vec::new(),
            start: 0,
            stage: ALIGN,
            filled: 0,
            direct: false,
            pos: 0,
            holes: false,
        }
    }

    /// Whether writes still bypass the page cache.
    #[must_use]
    pub fn is_direct(&self) -> bool {
        self.direct
    }

    /// Appends `data` to the file.
    ///
    /// # Errors
    /// The write's error; what was written before it stays written.
    pub fn write_all(&mut self, mut data: &[u8]) -> io::Result<()> {
        self.pos += data.len() as u64;
        while self.direct && !data.is_empty() {
            let at = self.start + self.filled;
            let n = (self.stage - self.filled).min(data.len());
            let (now, rest) = data.split_at(n);
            self.buf
                .get_mut(at..at + n)
                .ok_or_else(out_of_bounds)?
                .copy_from_slice(now);
            self.filled += n;
            data = rest;
            if self.filled == self.stage {
                self.write_blocks()?;
            }
        }
        if data.is_empty() {
            return Ok(());
        }
        self.file.write_all(data)
    }

    /// Appends `data` to the file, leaving a hole (blocks the filesystem does not allocate,
    /// which read as zeros) wherever a whole aligned block of the file would be zeros; the
    /// rest is written as [`DirectWriter::write_all`] does. The file reads back the same;
    /// where the filesystem cannot leave holes it allocates them as zeros.
    ///
    /// # Errors
    /// The write's or the seek's error.
    pub fn write_sparse(&mut self, mut data: &[u8]) -> io::Result<()> {
        // Up to the file's next block boundary, as it is.
        let (now, rest) = data.split_at(self.to_block_boundary().min(data.len()));
        self.write_all(now)?;
        data = rest;
        while !data.is_empty() {
            let zeros = data
                .chunks_exact(ALIGN)
                .take_while(|block| is_zero(block))
                .count()
                * ALIGN;
            let (hole, rest) = data.split_at(zeros);
            if !hole.is_empty() {
                self.skip(hole.len())?;
            }
            // Then the blocks up to the next zero one (or the end, a last partial block
            // included), written.
            let bytes = rest
                .chunks(ALIGN)
                .take_while(|block| block.len() < ALIGN || !is_zero(block))
                .map(<[u8]>::len)
                .sum::<usize>();
            let (now, rest) = rest.split_at(bytes);
            self.write_all(now)?;
            data = rest;
        }
        Ok(())
    }

    /// Appends `n` zero bytes as [`DirectWriter::write_sparse`] would (holes for the whole
    /// aligned blocks, the rest written), without looking at them: for content known to be
    /// zeros, such as a blob written again.
    ///
    /// # Errors
    /// The write's or the seek's error.
    pub fn write_sparse_zeros(&mut self, n: usize) -> io::Result<()> {
        const ZERO_BLOCK: [u8; ALIGN] = [0; ALIGN];
        let head = self.to_block_boundary().min(n);
        self.write_all(ZERO_BLOCK.get(..head).unwrap_or_default())?;
        let middle = (n - head) / ALIGN * ALIGN;
        if middle > 0 {
            self.skip(middle)?;
        }
        let tail = n - head - middle;
        self.write_all(ZERO_BLOCK.get(..tail).unwrap_or_default())
    }

    /// Bytes from the position to the next block boundary (0 at a boundary).
    fn to_block_boundary(&self) -> usize {
        // Less than ALIGN, so the conversion cannot fail.
        usize::try_from(self.pos.next_multiple_of(ALIGN as u64) - self.pos).unwrap_or(ALIGN)
    }

    /// Moves `n` bytes (whole blocks) on from a block boundary without writing them.
    fn skip(&mut self, n: usize) -> io::Result<()> {
        if self.direct {
            // At a block boundary the staged bytes are whole blocks: all of them go.
            self.write_blocks()?;
        }
        if self.filled != 0 {
            return Err(io::Error::other(
                "a hole left in the middle of a block (a bug in the sparse writer)",
            ));
        }
        let step = i64::try_from(n).map_err(|_| io::Error::other("hole too large"))?;
        self.file.seek(SeekFrom::Current(step))?;
        self.pos += n as u64;
        self.holes = true;
        Ok(())
    }

    /// Writes what is staged and returns the file, no longer in direct mode.
    ///
    /// # Errors
    /// The write's error.
    pub fn finish(self) -> io::Result<File> {
        self.finish_keeping_buffer().map(|(file, _)| file)
    }

    /// [`DirectWriter::finish`], also handing back the staging buffer for the next file.
    ///
    /// # Errors
    /// The write's error.
    pub fn finish_keeping_buffer(mut self) -> io::Result<(File, Vec<u8>)> {
        if self.direct {
            self.write_blocks()?;
            self.buffered()?;
        }
        let tail = self
            .buf
            .get(self.start..self.start + self.filled)
            .ok_or_else(out_of_bounds)?;
        self.file.write_all(tail)?;
        if self.holes {
            // A file that ends in a hole has its length only once it is set: where the writes
            // and holes have brought the file's position (`pos` counts from where this writer
            // started, which for a file not empty at the start is not the file's end).
            let end = self.file.stream_position()?;
            self.file.set_len(end)?;
        }
        Ok((self.file, self.buf))
    }

    /// Writes the whole blocks staged and moves the rest (less than a block) to the front.
    fn write_blocks(&mut self) -> io::Result<()> {
        let whole = self.filled / ALIGN * ALIGN;
        let mut done = 0;
        while done < whole {
            let part = self
                .buf
                .get(self.start + done..self.start + whole)
                .ok_or_else(out_of_bounds)?;
            let result = if self.direct {
                self.file.write(part)
            } else {
                self.file.write_all(part).map(|()| part.len())
            };
            match result {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // Refused at the first write (or after a short write left the position
                // unaligned): the rest goes through the page cache.
                Err(e)
                    if e.raw_os_error() == Some(rustix::io::Errno::INVAL.raw_os_error())
                        && self.direct =>
                {
                    self.buffered()?;
                }
                Err(e) => return Err(e),
            }
        }
        self.buf
            .copy_within(self.start + whole..self.start + self.filled, self.start);
        self.filled -= whole;
        Ok(())
    }

    fn buffered(&mut self) -> io::Result<()> {
        self.direct = false;
        set_direct(&self.file, false)
    }
}

/// Whether every byte of `block` is zero (an OR over all of it, which vectorises: a block is
/// small enough that stopping early would not pay).
fn is_zero(block: &[u8]) -> bool {
    block.iter().fold(0u8, |acc, b| acc | b) == 0
}

/// Whether every byte of `data` is zero: a block at a time, stopping at the first that is not.
#[must_use]
pub fn all_zeros(data: &[u8]) -> bool {
    data.chunks(ALIGN).all(is_zero)
}

/// A staging range outside the buffer: cannot happen while `start + stage <= buf.len()`.
fn out_of_bounds() -> io::Error {
    io::Error::other("direct write staging out of bounds")
}

#[cfg(target_os = "linux")]
fn set_direct(file: &File, on: bool) -> io::Result<()> {
    use rustix::fs::{OFlags, fcntl_getfl, fcntl_setfl};
    let flags = fcntl_getfl(file)?;
    let flags = if on {
        flags | OFlags::DIRECT
    } else {
        flags - OFlags::DIRECT
    };
    fcntl_setfl(file, flags)?;
    Ok(())
}

#[cfg(not(target_os = "linux"))]
fn set_direct(_file: &File, on: bool) -> io::Result<()> {
    if on {
        Err(io::ErrorKind::Unsupported.into())
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn write_in_pieces(dir: &std::path::Path, data: &[u8], pieces: &[usize], stage: usize) {
        let path = dir.join("f");
        let _ = std::fs::remove_file(&path);
        let file = File::create(&path).unwrap();
        let mut w = DirectWriter::new(file, stage);
        let mut rest = data;
        for &p in pieces.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (now, later) = rest.split_at(p.clamp(1, rest.len()));
            w.write_all(now).unwrap();
            rest = later;
        }
        let file = w.finish().unwrap();
        drop(file);
        assert_eq!(std::fs::read(&path).unwrap(), data);
    }

    #[test]
    fn a_file_written_in_odd_pieces_reads_back_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..5_000_003u32)
            .map(|i| i.wrapping_mul(2_654_435_761).to_le_bytes()[3])
            .collect();
        write_in_pieces(
            dir.path(),
            &data,
            &[1, 4095, 4097, 70_000, 1 << 20],
            1 << 20,
        );
        write_in_pieces(dir.path(), &data, &[3 << 20], 4096);
        write_in_pieces(dir.path(), &data[..4096], &[4096], 4096);
        write_in_pieces(dir.path(), &[], &[1], 4096);
    }

    #[test]
    fn the_returned_file_is_no_longer_direct() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let mut w = DirectWriter::new(File::create(&path).unwrap(), 8192);
        w.write_all(&[7u8; 10_000]).unwrap();
        let mut file = w.finish().unwrap();
        // An unaligned write would fail with EINVAL on a file still in direct mode.
        file.write_all(&[1u8; 3]).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 10_003);
    }

    /// Writes `data` with `write` through a writer whose direct writes the filesystem will
    /// refuse: three bytes written first leave the position unaligned, and a filesystem that
    /// checks alignment (ext4, xfs) answers the first direct write with EINVAL, which is the
    /// path a filesystem without O_DIRECT takes. Checks the file reads back the same and
    /// returns whether the writer was still direct at the end.
    fn write_after_a_refusal(
        stage: usize,
        data: &[u8],
        write: impl FnOnce(&mut DirectWriter, &[u8]),
    ) -> bool {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let mut file = File::create(&path).unwrap();
        file.write_all(b"abc").unwrap();
        let mut w = DirectWriter::new(file, stage);
        write(&mut w, data);
        let direct = w.is_direct();
        drop(w.finish().unwrap());
        let back = std::fs::read(&path).unwrap();
        assert_eq!(&back[..3], b"abc");
        assert!(
            back[3..] == data[..],
            "the file after a refused direct write differs"
        );
        direct
    }

    #[test]
    fn a_refused_direct_write_goes_through_the_page_cache_instead() {
        let data: Vec<u8> = (0..50_000u32).map(|i| (i % 253) as u8).collect();
        write_after_a_refusal(4096, &data, |w, d| w.write_all(d).unwrap());
    }

    #[test]
    fn a_kept_buffer_stages_the_next_file_without_its_old_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let first: Vec<u8> = (0..30_001u32).map(|i| (i % 241) as u8).collect();
        let second: Vec<u8> = (0..12_289u32).map(|i| (i % 7) as u8 + 100).collect();
        let mut buf = Vec::new();
        for (name, data) in [("a", &first), ("b", &second), ("c", &first)] {
            let path = dir.path().join(name);
            let mut w = DirectWriter::with_buffer(File::create(&path).unwrap(), 8192, buf);
            w.write_all(data).unwrap();
            let (file, kept) = w.finish_keeping_buffer().unwrap();
            drop(file);
            buf = kept;
            assert_eq!(&std::fs::read(&path).unwrap(), data, "{name}");
        }
    }

    /// Writes `data` sparsely in `pieces` (cycled) through a writer made by `make`, checks
    /// it reads back the same, and returns the bytes the filesystem allocated for it.
    fn write_sparse_in_pieces(
        path: &std::path::Path,
        data: &[u8],
        pieces: &[usize],
        make: impl FnOnce(File) -> DirectWriter,
    ) -> u64 {
        use std::os::unix::fs::MetadataExt;
        let _ = std::fs::remove_file(path);
        let mut w = make(File::create(path).unwrap());
        let mut rest = data;
        for &p in pieces.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (now, later) = rest.split_at(p.clamp(1, rest.len()));
            w.write_sparse(now).unwrap();
            rest = later;
        }
        drop(w.finish().unwrap());
        let back = std::fs::read(path).unwrap();
        assert_eq!(back.len(), data.len());
        assert!(back == data, "sparse file reads back differently");
        std::fs::metadata(path).unwrap().blocks() * 512
    }

    #[test]
    fn a_sparse_write_leaves_holes_for_zero_blocks_and_reads_back_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let mib = 1 << 20;
        // 1 MiB of data, 8 MiB of zeros, 1 MiB + 5 bytes of data, 3 MiB of zeros at the end.
        let mut data: Vec<u8> = (0..mib).map(|i| (i % 251) as u8 + 1).collect();
        data.resize(9 * mib, 0);
        data.extend((0..mib + 5).map(|i| (i % 241) as u8 + 1));
        data.resize(data.len() + 3 * mib, 0);
        for (what, pieces) in [
            ("whole", vec![data.len()]),
            ("odd pieces", vec![1, 4095, 70_001, mib + 3]),
        ] {
            let direct = write_sparse_in_pieces(&path, &data, &pieces, |f| {
                DirectWriter::new(f, DEFAULT_STAGE_BYTES)
            });
            let plain = write_sparse_in_pieces(&path, &data, &pieces, DirectWriter::plain);
            // About 2 MiB of data allocated, not 13 (a filesystem may round up a little).
            for allocated in [direct, plain] {
                assert!(
                    allocated < 3 * mib as u64,
                    "{what}: {allocated} bytes allocated"
                );
            }
        }
        // The same bytes written in full take all of their room.
        let mut w = DirectWriter::new(File::create(&path).unwrap(), DEFAULT_STAGE_BYTES);
        w.write_all(&data).unwrap();
        drop(w.finish().unwrap());
        use std::os::unix::fs::MetadataExt;
        assert!(std::fs::metadata(&path).unwrap().blocks() * 512 >= data.len() as u64);
    }

    #[test]
    fn a_sparse_write_refused_direct_in_the_middle_goes_on_through_the_page_cache() {
        // Holes are left before the first direct write is refused; the rest, holes included,
        // goes through the page cache.
        let mut data = vec![0u8; 3 << 20];
        data.extend((0..100_000u32).map(|i| (i % 249) as u8 + 1));
        data.resize(data.len() + (2 << 20), 0);
        let direct = write_after_a_refusal(8192, &data, |w, d| {
            for piece in d.chunks(70_001) {
                w.write_sparse(piece).unwrap();
            }
        });
        assert!(
            !direct,
            "the unaligned start should have refused direct writes"
        );
    }

    #[test]
    fn known_zeros_leave_holes() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let mib = 1 << 20;
        let data: Vec<u8> = (0..mib + 7).map(|i| (i % 251) as u8 + 1).collect();
        for direct in [true, false] {
            let file = File::create(&path).unwrap();
            let mut w = if direct {
                DirectWriter::new(file, DEFAULT_STAGE_BYTES)
            } else {
                DirectWriter::plain(file)
            };
            w.write_sparse(&data).unwrap();
            w.write_sparse_zeros(8 * mib).unwrap();
            w.write_sparse(&data).unwrap();
            w.write_sparse_zeros(3 * mib + 5).unwrap();
            drop(w.finish().unwrap());
            let mut expected = data.clone();
            expected.resize(expected.len() + 8 * mib, 0);
            expected.extend_from_slice(&data);
            expected.resize(expected.len() + 3 * mib + 5, 0);
            assert!(
                std::fs::read(&path).unwrap() == expected,
                "direct: {direct}"
            );
            let allocated = std::fs::metadata(&path).unwrap().blocks() * 512;
            assert!(
                allocated < 3 * mib as u64,
                "direct: {direct}: {allocated} allocated"
            );
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        #[test]
        fn sparse_writes_read_back_the_same(
            runs in proptest::collection::vec((any::<bool>(), 1usize..20_000), 0..12),
            a in 1usize..9_000,
            b in 1usize..40_000,
            stage in 1usize..30_000,
            direct in any::<bool>(),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let mut data = Vec::new();
            for (n, (zeros, len)) in runs.into_iter().enumerate() {
                let byte = if zeros { 0 } else { n as u8 | 1 };
                data.resize(data.len() + len, byte);
            }
            write_sparse_in_pieces(&dir.path().join("f"), &data, &[a, b], |f| {
                if direct { DirectWriter::new(f, stage) } else { DirectWriter::plain(f) }
            });
        }

        #[test]
        fn known_zeros_read_back_as_zeros(
            runs in proptest::collection::vec((any::<bool>(), 1usize..20_000), 0..12),
            stage in 1usize..30_000,
            direct in any::<bool>(),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("f");
            let file = File::create(&path).unwrap();
            let mut w = if direct { DirectWriter::new(file, stage) } else { DirectWriter::plain(file) };
            let mut data = Vec::new();
            for (n, (zeros, len)) in runs.iter().copied().enumerate() {
                if zeros {
                    w.write_sparse_zeros(len).unwrap();
                    data.resize(data.len() + len, 0);
                } else {
                    let piece = vec![n as u8 | 1; len];
                    w.write_sparse(&piece).unwrap();
                    data.extend_from_slice(&piece);
                }
            }
            drop(w.finish().unwrap());
            prop_assert!(std::fs::read(&path).unwrap() == data);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        #[test]
        fn any_pieces_any_stage(len in 0usize..300_000, a in 1usize..20_000, b in 1usize..70_000, stage in 1usize..100_000) {
            let dir = tempfile::tempdir().unwrap();
            let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            write_in_pieces(dir.path(), &data, &[a, b], stage);
        }
    }
}
