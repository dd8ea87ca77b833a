//! Helpers shared by the integration tests of the engine: a runtime, seeds, a tiny PRNG, and
//! a file-tree scanner that records everything a restore must reproduce.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use strongroom_repo::crypto::KdfParams;
use strongroom_repo::{InitOptions, Repository};
use strongroom_storage::Storage;
use strongroom_storage::memory::MemoryStorage;

/// The password of every test repository.
pub const PASSWORD: &[u8] = b"correct horse battery staple";

/// A multi-threaded runtime like the CLI's.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap()
}

/// The seed of a randomized test: `STRONGROOM_TEST_SEED` when set, else from the clock.
/// Printed so a failure can be replayed.
pub fn seed(test: &str) -> u64 {
    let seed = std::env::var("STRONGROOM_TEST_SEED")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            (t.as_nanos() as u64) ^ u64::from(std::process::id()).rotate_left(32)
        });
    eprintln!("{test}: seed {seed} (replay with STRONGROOM_TEST_SEED={seed})");
    seed
}

/// xorshift64*: a tiny deterministic generator for test data.
#[derive(Debug, Clone)]
pub struct XorShift(u64);

impl XorShift {
    pub fn new(seed: u64) -> XorShift {
        // Mix the seed so that small seeds do not give similar streams; never zero.
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        XorShift((z ^ (z >> 31)) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        for c in buf.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            c.copy_from_slice(&v[..c.len()]);
        }
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut v = vec![0u8; n];
        self.fill(&mut v);
        v
    }
}

/// A new repository in memory (fast key derivation).
pub async fn memory_repo() -> (MemoryStorage, Arc<Repository>) {
    let mem = MemoryStorage::new();
    let repo = init_in(Arc::new(mem.clone())).await;
    (mem, repo)
}

/// A new repository in `storage` (fast key derivation).
pub async fn init_in(storage: Arc<dyn Storage>) -> Arc<Repository> {
    let repo = Repository::init(
        storage,
        PASSWORD,
        InitOptions {
            kdf: KdfParams::MINIMUM,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    Arc::new(repo)
}

/// Another handle on the repository in `storage`, with its index loaded, keeping its local
/// caches (snapshot and folder cache) under `cache` when given.
pub async fn handle(storage: &Arc<dyn Storage>, cache: Option<&Path>) -> Arc<Repository> {
    let mut r = Repository::open(Arc::clone(storage), PASSWORD)
        .await
        .unwrap();
    if let Some(dir) = cache {
        r.use_snapshot_cache(dir);
    }
    r.load_index().await.unwrap();
    Arc::new(r)
}

/// True when running as root (ownership is then restored and compared with chown'd files).
pub fn is_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

/// What a restore must reproduce of one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Meta {
    File {
        mode: u32,
        uid: u32,
        gid: u32,
        mtime: (i64, i64),
        size: u64,
        hash: [u8; 32],
    },
    Dir {
        mode: u32,
        uid: u32,
        gid: u32,
        mtime: (i64, i64),
    },
    Symlink {
        uid: u32,
        gid: u32,
        mtime: (i64, i64),
        target: Vec<u8>,
    },
    Other,
}

impl Meta {
    pub fn is_file(&self) -> bool {
        matches!(self, Meta::File { .. })
    }
}

/// Hashes a file's content in blocks (works for files of any size).
pub fn hash_file(path: &Path) -> (u64, [u8; 32]) {
    use std::io::Read;
    let mut f = std::fs::File::open(path).unwrap();
    let mut h = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        let k = f.read(&mut buf).unwrap();
        if k == 0 {
            break;
        }
        n += k as u64;
        h.update(&buf[..k]);
    }
    (n, *h.finalize().as_bytes())
}

fn meta_of(path: &Path, md: &std::fs::Metadata) -> Meta {
    let mtime = (md.mtime(), md.mtime_nsec());
    let ft = md.file_type();
    if ft.is_file() {
        let (size, hash) = hash_file(path);
        Meta::File {
            mode: md.mode() & 0o7777,
            uid: md.uid(),
            gid: md.gid(),
            mtime,
            size,
            hash,
        }
    } else if ft.is_dir() {
        Meta::Dir {
            mode: md.mode() & 0o7777,
            uid: md.uid(),
            gid: md.gid(),
            mtime,
        }
    } else if ft.is_symlink() {
        Meta::Symlink {
            uid: md.uid(),
            gid: md.gid(),
            mtime,
            target: std::fs::read_link(path)
                .unwrap()
                .as_os_str()
                .as_bytes()
                .to_vec(),
        }
    } else {
        Meta::Other
    }
}

/// Every entry under `root` (and `root` itself, named by its file name), by relative path
/// bytes (`name/child/...`).
pub fn scan(root: &Path) -> BTreeMap<Vec<u8>, Meta> {
    let mut out = BTreeMap::new();
    let name = root.file_name().unwrap().as_bytes().to_vec();
    scan_into(root, name, &mut out);
    out
}

fn scan_into(path: &Path, rel: Vec<u8>, out: &mut BTreeMap<Vec<u8>, Meta>) {
    let md = std::fs::symlink_metadata(path).unwrap();
    out.insert(rel.clone(), meta_of(path, &md));
    if md.is_dir() {
        for e in std::fs::read_dir(path).unwrap() {
            let e = e.unwrap();
            let child = [rel.as_slice(), b"/", e.file_name().as_bytes()].concat();
            scan_into(&e.path(), child, out);
        }
    }
}

/// Everything below a restore target: the union of [`scan`] of each entry in it.
pub fn scan_children(dir: &Path) -> BTreeMap<Vec<u8>, Meta> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        out.extend(scan(&e.path()));
    }
    out
}

fn show(p: &[u8]) -> String {
    format!("{:?}", String::from_utf8_lossy(p))
}

/// Asserts two scans are equal, naming the first differences.
pub fn assert_same(
    expected: &BTreeMap<Vec<u8>, Meta>,
    actual: &BTreeMap<Vec<u8>, Meta>,
    what: &str,
) {
    if expected == actual {
        return;
    }
    let mut diffs = Vec::new();
    for (k, v) in expected {
        match actual.get(k) {
            None => diffs.push(format!("missing {}: {v:?}", show(k))),
            Some(a) if a != v => diffs.push(format!(
                "differs {}:\n   expected {v:?}\n   actual   {a:?}",
                show(k)
            )),
            Some(_) => {}
        }
    }
    for k in actual.keys() {
        if !expected.contains_key(k) {
            diffs.push(format!("unexpected {}", show(k)));
        }
    }
    let n = diffs.len();
    diffs.truncate(10);
    panic!("{what}: {n} difference(s):\n{}", diffs.join("\n"));
}

/// A fresh temporary folder.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("strongroom-test-")
        .tempdir()
        .unwrap()
}

/// `base/name` for raw name bytes.
pub fn join(base: &Path, name: &[u8]) -> PathBuf {
    base.join(std::ffi::OsStr::from_bytes(name))
}

/// Restores the folder snapshot `snap` into a fresh folder and asserts that its `src` equals
/// `expected` (a [`scan`] of the tree backed up).
pub async fn assert_restores(
    repo: &Repository,
    snap: &strongroom_repo::Snapshot,
    expected: &BTreeMap<Vec<u8>, Meta>,
    what: &str,
) {
    use strongroom_repo::restorer::{self, RestoreOptions};
    let target = tempdir();
    let stats = restorer::restore_to_dir(repo, snap, target.path(), &RestoreOptions::default())
        .await
        .unwrap();
    assert!(stats.failures.is_empty(), "{what}: {:?}", stats.failures);
    assert_same(expected, &scan(&target.path().join("src")), what);
}

/// Backs up the folder `path` (default options) under a shared lock; its id and snapshot.
pub async fn backup_folder(
    repo: &Arc<Repository>,
    path: &Path,
) -> (strongroom_repo::Id, strongroom_repo::Snapshot) {
    use strongroom_repo::archiver::{self, BackupOptions};
    let guard = strongroom_repo::lock::lock(repo, false, "test")
        .await
        .unwrap();
    let out = archiver::backup_paths(
        repo,
        &guard,
        &[path.to_path_buf()],
        BackupOptions::default(),
    )
    .await
    .unwrap();
    guard.release().await.unwrap();
    out
}

/// `ids` read through the blocking reader (database restores, export), on a blocking thread.
pub async fn read_blocking(repo: &Arc<Repository>, ids: Vec<strongroom_repo::Id>) -> Vec<u8> {
    use std::io::Read;
    let handle = tokio::runtime::Handle::current();
    let r = Arc::clone(repo);
    tokio::task::spawn_blocking(move || {
        let mut reader = strongroom_repo::restorer::BlobReader::new(r, handle, ids, "test".into());
        let mut v = Vec::new();
        reader.read_to_end(&mut v).map(|_| v)
    })
    .await
    .unwrap()
    .unwrap()
}
