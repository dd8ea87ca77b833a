//! A small pool of large byte buffers that a backup hands back and forth: a chunk's bytes
//! and a sealed blob are each about a megabyte, made and dropped a thousand times per
//! gigabyte. Under the compact allocator profile each was a fresh mapping, faulted in a page
//! at a time and unmapped again; from the pool they come back with their pages in place.
//!
//! The pool holds at most [`POOL_BYTES`] of capacity, so it adds at most that to a
//! command's memory. It must never hand out a buffer with old contents: [`take`] returns
//! it empty.

use std::sync::Mutex;

/// Capacity the pool keeps at most. The first backup of the benchmark's media tree (2 cores,
/// chunks of 0.5–8 MiB): 4 MiB kept about two buffers and the kernel still spent 1.8–2.0 s
/// faulting in and unmapping pages; 16 MiB, handing out the smallest buffer that fits, cut
/// system time to 0.7–0.9 s and the wall time by a tenth, for 4–6 MB more at the peak.
pub const POOL_BYTES: usize = 16 << 20;

/// Buffers smaller than this are left to the allocator (its own free lists reuse them).
const MIN_POOLED: usize = 256 << 10;

/// Buffers handed back, with their total capacity.
struct Pool {
    buffers: Vec<Vec<u8>>,
    bytes: usize,
    limit: usize,
}

impl Pool {
    const fn new(limit: usize) -> Pool {
        Pool {
            buffers: Vec::new(),
            bytes: 0,
            limit,
        }
    }

    fn take(&mut self, capacity: usize) -> Option<Vec<u8>> {
        // The smallest that fits: a large buffer kept for a large request keeps its pages
        // for that, instead of holding them under a small one.
        let (i, _) = self
            .buffers
            .iter()
            .enumerate()
            .filter(|(_, b)| b.capacity() >= capacity)
            .min_by_key(|(_, b)| b.capacity())?;
        let mut b = self.buffers.swap_remove(i);
        self.bytes -= b.capacity();
        b.clear();
        Some(b)
    }

    fn clear(&mut self) {
        self.buffers = Vec::new();
        self.bytes = 0;
    }

    fn give(&mut self, buf: Vec<u8>) {
        if self.bytes + buf.capacity() <= self.limit {
            self.bytes += buf.capacity();
            self.buffers.push(buf);
        }
    }
}

static POOL: Mutex<Pool> = Mutex::new(Pool::new(POOL_BYTES));

/// An empty buffer with room for at least `capacity` bytes: from the pool when one there
/// is large enough, else new.
#[must_use]
pub fn take(capacity: usize) -> Vec<u8> {
    if capacity >= MIN_POOLED
        && let Ok(mut pool) = POOL.lock()
        && let Some(b) = pool.take(capacity)
    {
        return b;
    }
    Vec::with_capacity(capacity)
}

/// Hands a buffer back for a later [`take`]; dropped instead when it is small or the pool
/// is full.
pub fn give(buf: Vec<u8>) {
    if buf.capacity() < MIN_POOLED {
        return;
    }
    if let Ok(mut pool) = POOL.lock() {
        pool.give(buf);
    }
}

/// Drops every buffer the pool keeps (their memory goes back to the system). A long-running
/// process calls it when a job ends, so that its idle memory is not the last backup's pool.
pub fn release() {
    if let Ok(mut pool) = POOL.lock() {
        pool.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_come_back_empty_and_the_pool_stays_bounded() {
        let mut pool = Pool::new(4 << 20);
        let mut b = Vec::with_capacity(1 << 20);
        b.extend_from_slice(&[7u8; 1000]);
        let ptr = b.as_ptr();
        pool.give(b);
        // Too large a request finds nothing; a fitting one gets the same memory, empty.
        assert!(pool.take(2 << 20).is_none());
        let again = pool.take(1 << 20).unwrap();
        assert!(again.is_empty());
        assert_eq!(again.as_ptr(), ptr);
        assert_eq!(pool.bytes, 0);
        // The smallest buffer that fits is handed out, wherever it sits in the pool.
        let mut pool = Pool::new(16 << 20);
        pool.give(Vec::with_capacity(8 << 20));
        pool.give(Vec::with_capacity(1 << 20));
        pool.give(Vec::with_capacity(2 << 20));
        assert_eq!(pool.take(600 << 10).unwrap().capacity(), 1 << 20);
        assert_eq!(pool.take(1500 << 10).unwrap().capacity(), 2 << 20);
        assert_eq!(pool.take(1 << 20).unwrap().capacity(), 8 << 20);
        assert_eq!(pool.bytes, 0);
        let mut pool = Pool::new(4 << 20);
        // The total stays under the limit: four of 1 MiB fit, the fifth is dropped.
        for _ in 0..5 {
            pool.give(Vec::with_capacity(1 << 20));
        }
        assert_eq!(pool.buffers.len(), 4);
        assert_eq!(pool.bytes, 4 << 20);
        // Released, it keeps nothing and hands out nothing.
        pool.clear();
        assert_eq!(pool.bytes, 0);
        assert!(pool.take(1).is_none());
    }
}
