//! Engine micro-benchmarks (divan), so that a regression shows where it is (issue 6).
//!
//! ```sh
//! cargo bench -p strongroom-repo --bench engine            # all of them
//! cargo bench -p strongroom-repo --bench engine -- chunker # those whose path matches
//! ```
//!
//! Throughputs are in decimal MB/s of the input (plaintext) bytes. The index benchmark also
//! prints the index's memory per entry (live heap bytes, counted by the allocator below)
//! before the tables. Not part of the default test run: `cargo test` builds benches only
//! with `--benches` (and then runs each once, as a smoke test).

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use divan::Bencher;
use divan::counter::{BytesCount, ItemsCount};
use strongroom_repo::Id;
use strongroom_repo::chunker::{Chunker, ChunkerParams};
use strongroom_repo::compress::{self, Compression};
use strongroom_repo::crypto::{MasterKey, ObjectType};
use strongroom_repo::index::MasterIndex;
use strongroom_repo::pack::{BlobType, PackBuilder, PackEntry};
use strongroom_repo::repository::{decode_blob, seal_blob};
use strongroom_repo::tree::{Node, NodeKind, Tree};

/// The system allocator, counting live heap bytes (for the index's bytes per entry).
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded unchanged to `System`; only a counter is updated.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size, Ordering::Relaxed);
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const MIB: usize = 1 << 20;

fn main() {
    report_index_memory();
    divan::Divan::default()
        .max_time(Duration::from_secs(2))
        .config_with_args()
        .main();
}

// ---------------------------------------------------------------------------- test data

/// Deterministic incompressible bytes (xorshift).
fn random_bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(n + 8);
    while out.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(n);
    out
}

/// Deterministic text that zstd -3 compresses about 3× (words drawn from a vocabulary, with
/// numbers, in lines), like the benchmark's prose, CSV and JSON.
fn text_bytes(n: usize, seed: u64) -> Vec<u8> {
    const WORDS: &[&str] = &[
        "backup",
        "restore",
        "the",
        "of",
        "and",
        "snapshot",
        "repository",
        "chunk",
        "pack",
        "index",
        "tree",
        "a",
        "to",
        "in",
        "is",
        "verify",
        "patient",
        "invoice",
        "date",
        "amount",
        "total",
        "customer",
        "order",
        "status",
        "pending",
        "shipped",
        "for",
        "with",
        "from",
        "by",
        "on",
        "at",
        "data",
        "file",
        "folder",
        "media",
        "stream",
        "database",
    ];
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(n + 64);
    let mut col = 0;
    while out.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let w = WORDS[(x % WORDS.len() as u64) as usize];
        if x.is_multiple_of(7) {
            out.extend_from_slice(format!("{} ", (x >> 20) % 100_000).as_bytes());
        }
        out.extend_from_slice(w.as_bytes());
        col += w.len() + 1;
        if col > 70 {
            out.push(b'\n');
            col = 0;
        } else {
            out.push(b' ');
        }
    }
    out.truncate(n);
    out
}

/// Deterministic ids (splitmix64), faster to make by the million than hashes.
fn ids(n: usize, seed: u64) -> Vec<Id> {
    let mut s = seed;
    let mut next = move || {
        s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = s;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    (0..n)
        .map(|_| {
            let mut b = [0u8; 32];
            for c in b.chunks_mut(8) {
                c.copy_from_slice(&next().to_le_bytes());
            }
            Id(b)
        })
        .collect()
}

static KEY: LazyLock<MasterKey> = LazyLock::new(MasterKey::generate);
static RANDOM_32M: LazyLock<Vec<u8>> = LazyLock::new(|| random_bytes(32 * MIB, 1));
static TEXT_32M: LazyLock<Vec<u8>> = LazyLock::new(|| text_bytes(32 * MIB, 2));

// ---------------------------------------------------------------------------- chunker

/// FastCDC over 32 MiB held in memory (no I/O), with the two parameter sets.
mod chunker {
    use super::*;

    fn run(bencher: Bencher, params: ChunkerParams, data: &'static [u8]) {
        let mut c: Chunker<&[u8]> = Chunker::new(params, 42);
        bencher.counter(BytesCount::of_slice(data)).bench_local(|| {
            c.reset(data);
            let mut n = 0usize;
            while let Ok(Some(chunk)) = c.next_chunk() {
                n += chunk.len();
            }
            black_box(n)
        });
    }

    /// Files: 512 KiB / 1 MiB / 8 MiB, random data.
    #[divan::bench]
    fn files_random(b: Bencher) {
        run(b, ChunkerParams::FILES, &RANDOM_32M);
    }

    /// Files parameters, text.
    #[divan::bench]
    fn files_text(b: Bencher) {
        run(b, ChunkerParams::FILES, &TEXT_32M);
    }

    /// Streams (dumps): 16 / 64 / 256 KiB, random data.
    #[divan::bench]
    fn dumps_random(b: Bencher) {
        run(b, ChunkerParams::DUMPS, &RANDOM_32M);
    }

    /// Streams parameters, text.
    #[divan::bench]
    fn dumps_text(b: Bencher) {
        run(b, ChunkerParams::DUMPS, &TEXT_32M);
    }
}

// ---------------------------------------------------------------------------- hashing

/// BLAKE3: the keyed blob id, and the unkeyed pack name.
mod hash {
    use super::*;

    /// Keyed BLAKE3 (blob id) of a 1 MiB or 64 KiB chunk.
    #[divan::bench(args = [64 * 1024, MIB])]
    fn blob_id_keyed(b: Bencher, len: usize) {
        let data = &RANDOM_32M[..len];
        b.counter(BytesCount::new(len))
            .bench(|| KEY.blob_id(black_box(data)));
    }

    /// Unkeyed BLAKE3 of a 16 MiB pack (its name).
    #[divan::bench]
    fn pack_id_16mib(b: Bencher) {
        let data = &RANDOM_32M[..16 * MIB];
        b.counter(BytesCount::new(data.len()))
            .bench(|| strongroom_repo::pack::pack_id(black_box(data)));
    }
}

// ---------------------------------------------------------------------------- compression

/// zstd level 3 on 1 MiB chunks, and the 4 KiB incompressibility probe.
mod zstd_l3 {
    use super::*;

    /// `compress()` of text: probe, then zstd -3.
    #[divan::bench]
    fn compress_text_1mib(b: Bencher) {
        let data = &TEXT_32M[..MIB];
        b.counter(BytesCount::new(MIB))
            .bench(|| compress::compress(black_box(data)));
    }

    /// `compress()` of random data: the probe says no, the chunk is copied as is.
    #[divan::bench]
    fn compress_random_1mib(b: Bencher) {
        let data = &RANDOM_32M[..MIB];
        b.counter(BytesCount::new(MIB))
            .bench(|| compress::compress(black_box(data)));
    }

    /// zstd -3 of random data without the probe: what the probe saves.
    #[divan::bench]
    fn zstd3_random_1mib_no_probe(b: Bencher) {
        let data = &RANDOM_32M[..MIB];
        b.counter(BytesCount::new(MIB))
            .bench(|| zstd::bulk::compress(black_box(data), compress::ZSTD_LEVEL));
    }

    /// The probe alone, on a 1 MiB chunk (counted as the chunk's bytes).
    #[divan::bench(args = ["text", "random"])]
    fn probe_1mib(b: Bencher, kind: &str) {
        let data = if kind == "text" {
            &TEXT_32M[..MIB]
        } else {
            &RANDOM_32M[..MIB]
        };
        b.counter(BytesCount::new(MIB))
            .bench(|| compress::sample_compresses(black_box(data)));
    }

    /// Decompression of a 1 MiB text chunk (counted as the plaintext's bytes).
    #[divan::bench]
    fn decompress_text_1mib(b: Bencher) {
        let (c, stored) = compress::compress(&TEXT_32M[..MIB]);
        assert_eq!(c, Compression::Zstd);
        b.counter(BytesCount::new(MIB))
            .with_inputs(|| stored.clone())
            .bench_values(|s| compress::decompress(c, s, MIB));
    }
}

// ---------------------------------------------------------------------------- sealing

/// AES-256-GCM of 1 MiB blobs, and the whole per-blob paths of backup and verify.
mod seal {
    use super::*;

    /// Seal (encrypt + tag) 1 MiB.
    #[divan::bench]
    fn seal_1mib(b: Bencher) {
        let data = &RANDOM_32M[..MIB];
        let id = KEY.blob_id(data);
        b.counter(BytesCount::new(MIB))
            .bench(|| KEY.seal(ObjectType::DataBlob, &id, black_box(data)));
    }

    /// Open (authenticate + decrypt) 1 MiB.
    #[divan::bench]
    fn open_1mib(b: Bencher) {
        let data = &RANDOM_32M[..MIB];
        let id = KEY.blob_id(data);
        let sealed = KEY.seal(ObjectType::DataBlob, &id, data);
        b.counter(BytesCount::new(MIB))
            .bench(|| KEY.open(ObjectType::DataBlob, &id, black_box(&sealed)));
    }

    /// Backup's per-chunk work: hash, compress (or probe), seal.
    #[divan::bench(args = ["text", "random"])]
    fn seal_blob_1mib(b: Bencher, kind: &str) {
        let data = if kind == "text" {
            &TEXT_32M[..MIB]
        } else {
            &RANDOM_32M[..MIB]
        };
        b.counter(BytesCount::new(MIB))
            .bench(|| seal_blob(&KEY, BlobType::Data, black_box(data)));
    }

    /// Verify's and restore's per-chunk work: open, decompress, hash and compare.
    #[divan::bench(args = ["text", "random"])]
    fn decode_blob_1mib(b: Bencher, kind: &str) {
        let data = if kind == "text" {
            &TEXT_32M[..MIB]
        } else {
            &RANDOM_32M[..MIB]
        };
        let s = seal_blob(&KEY, BlobType::Data, data);
        let e = PackEntry {
            id: s.id,
            blob_type: BlobType::Data,
            compression: s.compression,
            offset: 0,
            stored_len: u32::try_from(s.sealed.len()).unwrap_or(u32::MAX),
            raw_len: s.raw_len,
        };
        let pack = Id::default();
        b.counter(BytesCount::new(MIB))
            .bench(|| decode_blob(&KEY, &pack, &e, black_box(&s.sealed)));
    }
}

// ---------------------------------------------------------------------------- packs

/// Building a 16 MiB pack from sealed 1 MiB blobs: copy in, seal the header, hash the pack.
mod pack {
    use super::*;

    #[divan::bench]
    fn write_16_blobs_of_1mib(b: Bencher) {
        let blobs: Vec<_> = (0..16)
            .map(|i| seal_blob(&KEY, BlobType::Data, &RANDOM_32M[i * MIB..(i + 1) * MIB]))
            .collect();
        let total: usize = blobs.iter().map(|s| s.sealed.len()).sum();
        b.counter(BytesCount::new(total)).bench(|| {
            let mut p = PackBuilder::with_capacity(total + 4096);
            for s in &blobs {
                p.add(s.id, BlobType::Data, s.compression, s.raw_len, &s.sealed);
            }
            p.finish(&KEY)
        });
    }
}

// ---------------------------------------------------------------------------- index

const INDEX_ENTRIES: usize = 1_000_000;
const BLOBS_PER_PACK: usize = 1_000;

fn build_index(blob_ids: &[Id]) -> MasterIndex {
    let mut index = MasterIndex::default();
    let pack_ids = ids(blob_ids.len() / BLOBS_PER_PACK + 1, 7);
    for (p, blobs) in blob_ids.chunks(BLOBS_PER_PACK).enumerate() {
        let mut offset = 0u32;
        let entries: Vec<PackEntry> = blobs
            .iter()
            .map(|id| {
                let e = PackEntry {
                    id: *id,
                    blob_type: BlobType::Data,
                    compression: Compression::Zstd,
                    offset,
                    stored_len: 400_000,
                    raw_len: 1_000_000,
                };
                offset = offset.wrapping_add(400_000);
                e
            })
            .collect();
        index.add_pack(pack_ids[p], 16 << 20, &entries);
    }
    // As after loading the index files.
    index.compact();
    index
}

static BLOB_IDS: LazyLock<Vec<Id>> = LazyLock::new(|| ids(INDEX_ENTRIES, 3));
static INDEX: LazyLock<MasterIndex> = LazyLock::new(|| build_index(&BLOB_IDS));

/// Prints the heap bytes per entry of a 1,000,000-entry index (before divan's tables).
fn report_index_memory() {
    let blob_ids = ids(INDEX_ENTRIES, 3);
    let before = LIVE.load(Ordering::Relaxed);
    let index = build_index(&blob_ids);
    let after = LIVE.load(Ordering::Relaxed);
    let bytes = after.saturating_sub(before);
    println!(
        "index: {} blobs in {} packs: {:.1} MB of heap, {:.1} bytes per entry \
         (goal of issue 6: at most 48)",
        index.blob_count(),
        index.packs().len(),
        bytes as f64 / 1e6,
        bytes as f64 / index.blob_count() as f64
    );
    drop(index);
}

/// Lookups in a 1,000,000-entry index: 4,096 random ids per iteration.
mod index {
    use super::*;

    /// Ids that are in the index (`get`, which builds the location).
    #[divan::bench]
    fn get_hit(b: Bencher) {
        let index = &*INDEX;
        let probe: Vec<Id> = BLOB_IDS.iter().step_by(241).take(4096).copied().collect();
        b.counter(ItemsCount::new(probe.len())).bench(|| {
            let mut found = 0usize;
            for id in &probe {
                found += usize::from(index.get(black_box(id)).is_some());
            }
            found
        });
    }

    /// Ids that are not (`contains`: backup's dedup test for new data).
    #[divan::bench]
    fn contains_miss(b: Bencher) {
        let index = &*INDEX;
        let probe = ids(4096, 99);
        b.counter(ItemsCount::new(probe.len())).bench(|| {
            let mut found = 0usize;
            for id in &probe {
                found += usize::from(index.contains(black_box(id)));
            }
            found
        });
    }
}

// ---------------------------------------------------------------------------- trees

fn sample_tree(files: usize) -> Tree {
    let content = ids(files * 2, 11);
    let mut t = Tree {
        nodes: (0..files)
            .map(|i| Node {
                name: format!("IMG_{i:06}.jpg").into_bytes(),
                kind: NodeKind::File,
                mode: 0o644,
                uid: 1000,
                gid: 1000,
                mtime_ns: 1_704_067_200_000_000_000 + i as i64 * 37,
                ctime_ns: 1_704_067_200_000_000_000 + i as i64 * 41,
                inode: 1_000_000 + i as u64,
                size: 2_000_000,
                content: content[i * 2..i * 2 + 2].to_vec(),
                content_lists: vec![],
                subtree: None,
                target: None,
            })
            .collect(),
    };
    t.sort();
    t
}

/// A folder of 1,000 files (two chunks each): JSON encoding and decoding with validation.
mod tree {
    use super::*;

    #[divan::bench]
    fn encode_1000_files(b: Bencher) {
        let t = sample_tree(1000);
        let len = t.to_bytes().map(|v| v.len()).unwrap_or(0);
        b.counter(BytesCount::new(len))
            .bench(|| black_box(&t).to_bytes());
    }

    #[divan::bench]
    fn decode_1000_files(b: Bencher) {
        let bytes = sample_tree(1000).to_bytes().unwrap_or_default();
        b.counter(BytesCount::of_slice(&bytes))
            .bench(|| Tree::from_bytes(black_box(&bytes)));
    }
}
