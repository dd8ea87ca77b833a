//! A local cache of decoded snapshots, one file per repository, so that listing a repository
//! of 10,000 snapshots reads the names of its snapshot files and one local file, not 10,000
//! files.
//!
//! It must never be the truth about the repository: an entry is used only for a snapshot file
//! the repository lists at that moment (snapshot files are written once under a random id and
//! never changed, so an entry for a listed name is that file's content); the file is sealed
//! with the repository's key under its id, so a damaged, foreign or edited cache opens as
//! nothing and is rebuilt; losing it loses nothing. `verify` does not read it. Pure file I/O
//! on the local disk; it knows nothing of storage backends.
//!
//! The entries are binary, not JSON: decoding 10,000 snapshots of JSON took longer than the
//! rest of a listing together. Every field of [`Snapshot`] and [`Summary`] is written by
//! destructuring, so a new field does not compile until it is cached too.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use crate::crypto::{MasterKey, ObjectType};
use crate::id::Id;
use crate::snapshot::{Snapshot, SnapshotKind, Summary};

/// What the plaintext starts with.
const MAGIC: &[u8; 8] = b"SRSNAPC\0";

/// The cache's format version.
const VERSION: u32 = 1;

/// The file (under the cache folder) holding one repository's snapshots.
const FILE_NAME: &str = "snapshots";

/// Marks the cache folder as a cache for backup tools that honour it (restic, borg, tar
/// `--exclude-caches`).
const CACHEDIR_TAG: &str = "Signature: 8a477f597d28d172789f06886806bc55\n\
# This file is a cache directory tag created by Strongroom.\n\
# For information about cache directory tags see https://bford.info/cachedir/\n";

/// The cached snapshots of one repository.
#[derive(Debug, Clone)]
pub struct SnapshotCache {
    /// `<cache folder>/<repository id>/snapshots`.
    path: PathBuf,
    /// The cache folder itself (where `CACHEDIR.TAG` goes).
    root: PathBuf,
    /// The repository's id: the id the file is sealed under.
    repo_id: Id,
}

impl SnapshotCache {
    /// The cache of the repository `repo_id` under the cache folder `root`.
    #[must_use]
    pub fn new(root: &Path, repo_id: Id) -> SnapshotCache {
        SnapshotCache {
            path: root.join(repo_id.to_hex()).join(FILE_NAME),
            root: root.to_path_buf(),
            repo_id,
        }
    }

    /// The cache file's path.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The cache folder (shared by every repository's cache files).
    #[must_use]
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The cached snapshots, in the order they were stored. A missing, unreadable, damaged or
    /// foreign file is an empty cache (it is rebuilt from the repository), never an error.
    #[must_use]
    pub fn load(&self, key: &MasterKey) -> Vec<(Id, Snapshot)> {
        let Ok(sealed) = std::fs::read(&self.path) else {
            return Vec::new();
        };
        let Ok(plain) = key.open_vec(ObjectType::LocalCache, &self.repo_id, sealed) else {
            return Vec::new();
        };
        self.decode(&plain).unwrap_or_default()
    }

    /// The entries of an opened cache file, or `None` when it is not one of this
    /// repository's, of this version, whole.
    fn decode(&self, plain: &[u8]) -> Option<Vec<(Id, Snapshot)>> {
        let mut r = Reader(plain);
        if r.take(MAGIC.len())? != MAGIC || r.u32()? != VERSION || r.id()? != self.repo_id {
            return None;
        }
        let count = usize::try_from(r.u64()?).ok()?;
        // Each entry takes well over 64 bytes: a count beyond that is a damaged header.
        let mut out = Vec::with_capacity(count.min(plain.len() / 64));
        for _ in 0..count {
            let id = r.id()?;
            out.push((id, r.snapshot()?));
        }
        r.0.is_empty().then_some(out)
    }

    /// The plaintext of a cache holding `snapshots`.
    fn encode(&self, snapshots: &[(Id, Snapshot)]) -> Vec<u8> {
        let mut w = Writer(Vec::with_capacity(64 + snapshots.len() * 400));
        w.0.extend_from_slice(MAGIC);
        w.u32(VERSION);
        w.id(&self.repo_id);
        w.u64(snapshots.len() as u64);
        for (id, snap) in snapshots {
            w.id(id);
            w.snapshot(snap);
        }
        w.0
    }

    /// Replaces the cache with `snapshots`: written to a temporary file beside it, then
    /// renamed over it, so a reader sees the old cache or the new one, never half of one.
    ///
    /// # Errors
    /// When the folder or the file cannot be written (the caller goes on without a cache).
    pub fn store(&self, key: &MasterKey, snapshots: &[(Id, Snapshot)]) -> std::io::Result<()> {
        let plain = self.encode(snapshots);
        let sealed = key.seal(ObjectType::LocalCache, &self.repo_id, &plain);
        let tag = self.root.join("CACHEDIR.TAG");
        if !tag.exists() {
            // Best effort: the tag only helps other tools skip the folder.
            create_private_dir(&self.root)?;
            let _ = std::fs::write(&tag, CACHEDIR_TAG);
        }
        replace_file(&self.path, &sealed)
    }
}

/// Replaces the file at `path` with `bytes`: written to a temporary file beside it (its
/// folder created, private, where missing), then renamed over it, so a reader sees the old
/// file or the new one, never half of one.
///
/// # Errors
/// When the folder or the file cannot be written.
pub(crate) fn replace_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    create_private_dir(dir)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let tmp = dir.join(format!(
        ".{name}.{}.{}.tmp",
        std::process::id(),
        Id::random().short()
    ));
    let written = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// Little-endian fields, strings as a `u32` length and UTF-8.
struct Writer(Vec<u8>);

impl Writer {
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }

    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }

    fn id(&mut self, id: &Id) {
        self.0.extend_from_slice(&id.0);
    }

    fn len(&mut self, n: usize) {
        // Strings and lists of a snapshot are far below 4 GiB; saturating keeps a writer
        // panic-free, and the reader then rejects the entry (its length does not match).
        self.u32(u32::try_from(n).unwrap_or(u32::MAX));
    }

    fn str(&mut self, s: &str) {
        self.len(s.len());
        self.0.extend_from_slice(s.as_bytes());
    }

    fn strs(&mut self, v: &[String]) {
        self.len(v.len());
        for s in v {
            self.str(s);
        }
    }

    fn snapshot(&mut self, s: &Snapshot) {
        let Snapshot {
            version,
            time,
            kind,
            source,
            paths,
            host,
            user,
            tags,
            tree,
            parent,
            summary,
            program,
            meta,
        } = s;
        self.u32(*version);
        self.str(time);
        self.0.push(match kind {
            SnapshotKind::Files => 0,
            SnapshotKind::Stream => 1,
        });
        self.str(source);
        self.strs(paths);
        self.str(host);
        self.str(user);
        self.strs(tags);
        self.id(tree);
        match parent {
            Some(p) => {
                self.0.push(1);
                self.id(p);
            }
            None => self.0.push(0),
        }
        let Summary {
            files,
            dirs,
            files_read,
            files_unchanged,
            total_bytes,
            bytes_read,
            blobs_added,
            bytes_added,
            bytes_stored,
            warnings,
            notes,
            started,
            finished,
        } = summary;
        for n in [
            files,
            dirs,
            files_read,
            files_unchanged,
            total_bytes,
            bytes_read,
            blobs_added,
            bytes_added,
            bytes_stored,
        ] {
            self.u64(*n);
        }
        self.strs(warnings);
        self.strs(notes);
        self.str(started);
        self.str(finished);
        self.str(program);
        // Free-form details keep their JSON; none (the common case) is empty.
        if meta.is_null() {
            self.str("");
        } else {
            self.str(&meta.to_string());
        }
    }
}

/// Reads what [`Writer`] wrote; `None` at the first thing that does not fit.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1)?.first().copied()
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }

    fn id(&mut self) -> Option<Id> {
        Some(Id(self.take(32)?.try_into().ok()?))
    }

    fn len(&mut self) -> Option<usize> {
        usize::try_from(self.u32()?).ok()
    }

    fn str(&mut self) -> Option<String> {
        let n = self.len()?;
        let bytes = self.take(n)?;
        std::str::from_utf8(bytes).ok().map(str::to_owned)
    }

    fn strs(&mut self) -> Option<Vec<String>> {
        let n = self.len()?;
        // A list cannot hold more strings than there are bytes left (each is 4 or more).
        if n > self.0.len() / 4 {
            return None;
        }
        (0..n).map(|_| self.str()).collect()
    }

    fn snapshot(&mut self) -> Option<Snapshot> {
        let version = self.u32()?;
        let time = self.str()?;
        let kind = match self.u8()? {
            0 => SnapshotKind::Files,
            1 => SnapshotKind::Stream,
            _ => return None,
        };
        let source = self.str()?;
        let paths = self.strs()?;
        let host = self.str()?;
        let user = self.str()?;
        let tags = self.strs()?;
        let tree = self.id()?;
        let parent = match self.u8()? {
            0 => None,
            1 => Some(self.id()?),
            _ => return None,
        };
        let mut n = [0u64; 9];
        for v in &mut n {
            *v = self.u64()?;
        }
        let [
            files,
            dirs,
            files_read,
            files_unchanged,
            total_bytes,
            bytes_read,
            blobs_added,
            bytes_added,
            bytes_stored,
        ] = n;
        let summary = Summary {
            files,
            dirs,
            files_read,
            files_unchanged,
            total_bytes,
            bytes_read,
            blobs_added,
            bytes_added,
            bytes_stored,
            warnings: self.strs()?,
            notes: self.strs()?,
            started: self.str()?,
            finished: self.str()?,
        };
        let program = self.str()?;
        let meta = match self.str()? {
            m if m.is_empty() => serde_json::Value::Null,
            m => serde_json::from_str(&m).ok()?,
        };
        Some(Snapshot {
            version,
            time,
            kind,
            source,
            paths,
            host,
            user,
            tags,
            tree,
            parent,
            summary,
            program,
            meta,
        })
    }
}

/// Creates `dir` and its parents, readable by this user alone where they are new.
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(time: &str) -> Snapshot {
        Snapshot {
            version: 1,
            time: time.into(),
            kind: SnapshotKind::Files,
            source: "/srv/media".into(),
            paths: vec!["/srv/media".into()],
            host: "clinic".into(),
            user: "backup".into(),
            tags: vec!["nightly".into()],
            tree: Id([7; 32]),
            parent: None,
            summary: Summary::default(),
            program: "strongroom test".into(),
            meta: serde_json::Value::Null,
        }
    }

    #[test]
    fn stores_and_loads_what_it_was_given() {
        let dir = tempfile::tempdir().unwrap();
        let key = MasterKey::generate();
        let cache = SnapshotCache::new(dir.path(), Id([1; 32]));
        assert!(cache.load(&key).is_empty());
        let snaps = vec![
            (Id([2; 32]), snap("2026-12-01T00:00:00Z")),
            (Id([3; 32]), snap("2026-12-02T00:00:00Z")),
        ];
        cache.store(&key, &snaps).unwrap();
        assert_eq!(cache.load(&key), snaps, "the same, in the same order");
        assert!(dir.path().join("CACHEDIR.TAG").exists());
        // No temporary file is left behind.
        let names: Vec<_> = std::fs::read_dir(cache.path().parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from(FILE_NAME)]);
    }

    fn full(i: u64) -> Snapshot {
        let mut s = snap(&format!("2026-12-01T00:00:{:02}.{i:06}Z", i % 60));
        s.kind = SnapshotKind::Stream;
        s.parent = Some(Id([i as u8; 32]));
        s.tags = vec!["a".into(), "ü €".into(), String::new()];
        s.paths = vec![];
        s.summary = Summary {
            files: i,
            dirs: 2,
            files_read: 3,
            files_unchanged: 4,
            total_bytes: u64::MAX,
            bytes_read: 6,
            blobs_added: 7,
            bytes_added: 8,
            bytes_stored: 9,
            warnings: vec!["line one\nline \"two\"".into()],
            notes: vec!["note".into()],
            started: "s".into(),
            finished: "f".into(),
        };
        s.meta = serde_json::json!({"database": "clinic", "tables": [1, 2, {"x": null}]});
        s
    }

    #[test]
    fn every_field_survives_the_round_trip() {
        let cache = SnapshotCache::new(Path::new("/nonexistent"), Id([1; 32]));
        let snaps: Vec<(Id, Snapshot)> = (0..50)
            .map(|i| {
                (
                    Id([i as u8 + 1; 32]),
                    if i % 2 == 0 { full(i) } else { snap("t") },
                )
            })
            .collect();
        let plain = cache.encode(&snaps);
        assert_eq!(cache.decode(&plain).unwrap(), snaps);
        assert_eq!(cache.decode(&cache.encode(&[])).unwrap(), vec![]);
    }

    #[test]
    fn anything_cut_short_or_added_to_is_none() {
        let cache = SnapshotCache::new(Path::new("/nonexistent"), Id([1; 32]));
        let plain = cache.encode(&[(Id([2; 32]), full(3)), (Id([3; 32]), snap("t"))]);
        for n in 0..plain.len() {
            assert!(cache.decode(&plain[..n]).is_none(), "cut at {n}");
        }
        let mut longer = plain.clone();
        longer.push(0);
        assert!(cache.decode(&longer).is_none());
        // Another repository's, another version.
        let other = SnapshotCache::new(Path::new("/nonexistent"), Id([9; 32]));
        assert!(other.decode(&plain).is_none());
        let mut v2 = plain.clone();
        v2[MAGIC.len()] = 2;
        assert!(cache.decode(&v2).is_none());
        // A count far beyond what the bytes can hold.
        let mut huge = plain;
        let at = MAGIC.len() + 4 + 32;
        huge[at..at + 8].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(cache.decode(&huge).is_none());
    }

    proptest::proptest! {
        #[test]
        fn any_snapshot_round_trips(
            time in ".*", source in ".*", host in ".*",
            paths in proptest::collection::vec(".*", 0..4),
            tags in proptest::collection::vec(".*", 0..4),
            numbers in proptest::array::uniform9(proptest::num::u64::ANY),
            parent in proptest::option::of(proptest::array::uniform32(proptest::num::u8::ANY)),
            stream in proptest::bool::ANY,
            meta in proptest::option::of(".*"),
        ) {
            let cache = SnapshotCache::new(Path::new("/nonexistent"), Id([1; 32]));
            let mut s = snap(&time);
            s.source = source;
            s.host = host;
            s.paths = paths;
            s.tags = tags;
            s.parent = parent.map(Id);
            s.kind = if stream { SnapshotKind::Stream } else { SnapshotKind::Files };
            let [a, b, c, d, e, f, g, h, i] = numbers;
            s.summary.files = a;
            s.summary.dirs = b;
            s.summary.files_read = c;
            s.summary.files_unchanged = d;
            s.summary.total_bytes = e;
            s.summary.bytes_read = f;
            s.summary.blobs_added = g;
            s.summary.bytes_added = h;
            s.summary.bytes_stored = i;
            s.meta = meta.map_or(serde_json::Value::Null, |m| serde_json::json!({ "m": m }));
            let entries = vec![(Id([5; 32]), s)];
            proptest::prop_assert_eq!(cache.decode(&cache.encode(&entries)), Some(entries));
        }
    }

    #[test]
    fn a_damaged_or_foreign_cache_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let key = MasterKey::generate();
        let cache = SnapshotCache::new(dir.path(), Id([1; 32]));
        cache
            .store(&key, &[(Id([2; 32]), snap("2026-12-01T00:00:00Z"))])
            .unwrap();
        // Another key (another repository, or a password's key of another repository).
        assert!(cache.load(&MasterKey::generate()).is_empty());
        // The same file presented as another repository's cache.
        let other = SnapshotCache::new(dir.path(), Id([9; 32]));
        std::fs::create_dir_all(other.path().parent().unwrap()).unwrap();
        std::fs::copy(cache.path(), other.path()).unwrap();
        assert!(other.load(&key).is_empty());
        // One byte changed.
        let mut bytes = std::fs::read(cache.path()).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 1;
        std::fs::write(cache.path(), &bytes).unwrap();
        assert!(cache.load(&key).is_empty());
    }
}
