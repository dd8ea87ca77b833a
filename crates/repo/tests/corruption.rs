//! Corruption detection (reliability plan C3; issue "Done means" 4).
//!
//! A repository with many small packs (two folder snapshots and a stream snapshot) is built
//! in memory. Each trial copies its pristine objects, damages exactly one object — a random
//! single-bit flip (at least 1,000 trials, with at least 50 of them in the last 64 bytes of
//! a pack: header, header length and magic), a truncation to a random length including 0
//! (at least 200) or a swap, another object's bytes put under its name (at least 50) — and
//! then requires:
//!
//! - config or key file damaged: opening fails with an error naming the config or the key
//!   file (the repository cannot be used at all, so that is the report);
//! - otherwise `verify --read-data` reports an error naming the damaged object;
//! - every snapshot that still lists is restored: each file whose data (or whose folder's
//!   tree) lies in a damaged byte range fails with an error naming that file (or the folder
//!   that could not be read), and every other file restores byte for byte; nothing else is
//!   written. A stream whose data is damaged fails to restore; an intact one restores
//!   identically.
//!
//! Which files a fault affects is worked out independently of the engine: the damaged byte
//! range is mapped to blobs with the pristine index (pack offsets and lengths), and blobs to
//! files and folders with the pristine trees. A flip or cut in a pack's header or trailer
//! only affects no file: verify must still report it (the pack's hash no longer matches its
//! name), and every file must restore.
//!
//! Object kinds are chosen uniformly (pack, index, snapshot, key, config), then an object of
//! that kind. Swaps need two objects of a kind, so they are done among packs, index files and
//! snapshots: the repository has one config and one key file.
//!
//! The trials are generated from the printed seed; set `STRONGROOM_TEST_SEED` to replay.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use common::{Meta, XorShift, scan, scan_children};
use strongroom_repo::archiver::{self, BackupOptions};
use strongroom_repo::checker::{self, ReadData};
use strongroom_repo::chunker::ChunkerParams;
use strongroom_repo::crypto::KdfParams;
use strongroom_repo::restorer::{self, RestoreOptions};
use strongroom_repo::tree::{NodeKind, Tree};
use strongroom_repo::{Id, InitOptions, RepoError, Repository, Snapshot, lock};
use strongroom_storage::memory::{MemoryStorage, ObjectMap};
use strongroom_storage::{Kind, Storage};

const PASSWORD: &[u8] = b"password of the corruption test";
/// Small packs: many of them, so that faults land in packs of every shape.
const PACK_SIZE: u32 = 4 * 1024;
const FLIPS: usize = 1000;
const TRUNCATIONS: usize = 220;
const SWAPS: usize = 60;
/// Worker threads running trials.
const WORKERS: usize = 3;
const STREAM_NAME: &str = "clinic.sql";

// ---------------------------------------------------------------------------------------
// The repository.

fn sized(rng: &mut XorShift, base: usize, extra: u64) -> Vec<u8> {
    let n = base + rng.below(extra) as usize;
    rng.bytes(n)
}

fn text(rng: &mut XorShift, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 80);
    while out.len() < len {
        out.extend_from_slice(
            format!(
                "row {} value {} status {}\n",
                rng.below(100_000),
                rng.below(1000),
                ["ok", "late", "failed", "retry"][rng.below(4) as usize]
            )
            .as_bytes(),
        );
    }
    out.truncate(len);
    out
}

/// Writes folder v1 (and v2: v1 with some files changed, removed or added) under `root`.
fn make_folders(root: &Path, rng: &mut XorShift) -> (PathBuf, PathBuf) {
    let v1 = root.join("v1").join("data");
    let v2 = root.join("v2").join("data");
    const DIRS: [&str; 6] = ["", "media/", "media/2024/", "docs/", "docs/old/", "db/"];
    let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut earlier: Vec<Vec<u8>> = Vec::new();
    for i in 0..48 {
        let dir = DIRS[rng.below(DIRS.len() as u64) as usize];
        let data = match i % 8 {
            0 => Vec::new(),
            1 if !earlier.is_empty() => earlier[rng.below(earlier.len() as u64) as usize].clone(),
            2 | 3 => {
                let n = 500 + rng.below(9000) as usize;
                text(rng, n)
            }
            _ => sized(rng, 100, 7000),
        };
        earlier.push(data.clone());
        files.insert(format!("{dir}f{i:02}.dat"), data);
    }
    // A file of several chunks (file chunks are 512 KiB to 8 MiB).
    files.insert("media/film.bin".into(), sized(rng, 1_300_000, 300_000));
    for (p, d) in &files {
        let path = v1.join(p);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, d).unwrap();
    }
    std::os::unix::fs::symlink("media/film.bin", v1.join("film-link")).unwrap();
    std::fs::create_dir_all(v1.join("empty")).unwrap();
    for (p, d) in &files {
        let r = rng.below(10);
        if r == 0 {
            continue;
        }
        let path = v2.join(p);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        if r == 1 {
            std::fs::write(&path, sized(rng, 100, 6000)).unwrap();
        } else {
            std::fs::write(&path, d).unwrap();
        }
    }
    for i in 0..6 {
        let n = 300 + rng.below(5000) as usize;
        std::fs::write(v2.join(format!("new-{i}.txt")), text(rng, n)).unwrap();
    }
    std::os::unix::fs::symlink("/etc/hostname", v2.join("host-link")).unwrap();
    (v1, v2)
}

fn make_stream(rng: &mut XorShift) -> Vec<u8> {
    let mut s = String::from("-- dump\nCOPY t (id, v, token) FROM stdin;\n");
    let mut i = 0u64;
    while s.len() < 600_000 {
        s.push_str(&format!(
            "{i}\t{}\t{:016x}\n",
            rng.below(1_000_000),
            rng.next_u64()
        ));
        i += 1;
    }
    s.push_str("\\.\n");
    s.into_bytes()
}

/// What a restore must reproduce of an entry: content of files, target of symlinks.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Shape {
    File { size: u64, hash: [u8; 32] },
    Dir,
    Symlink(Vec<u8>),
    Other,
}

fn shapes(m: BTreeMap<Vec<u8>, Meta>) -> BTreeMap<String, Shape> {
    m.into_iter()
        .map(|(k, v)| {
            let s = match v {
                Meta::File { size, hash, .. } => Shape::File { size, hash },
                Meta::Dir { .. } => Shape::Dir,
                Meta::Symlink { target, .. } => Shape::Symlink(target),
                Meta::Other => Shape::Other,
            };
            (String::from_utf8(k).unwrap(), s)
        })
        .collect()
}

/// One snapshot of the pristine repository and what restoring it must give.
struct SnapInfo {
    id: Id,
    snap: Snapshot,
    /// Every entry of the source, by path as the restorer shows it (`data/docs/f01.dat`).
    expected: BTreeMap<String, Shape>,
    /// The stream's bytes, for a stream snapshot.
    stream: Option<Bytes>,
}

/// The pristine repository and the maps from bytes to blobs and from blobs to files.
struct World {
    seed: u64,
    pristine: ObjectMap,
    snaps: Vec<SnapInfo>,
    /// Every tree of every snapshot.
    trees: HashMap<Id, Tree>,
    /// Every content list of those trees' files, by its id.
    lists: HashMap<Id, Vec<Id>>,
    /// Blobs of each pack: (id, offset, stored length).
    pack_blobs: HashMap<String, Vec<(Id, u64, u64)>>,
    /// Packs listed by each index file.
    index_packs: HashMap<String, Vec<String>>,
    scratch: PathBuf,
    _dir: tempfile::TempDir,
}

async fn build_world(seed: u64) -> World {
    let dir = common::tempdir();
    let mut rng = XorShift::new(seed);
    let (v1, v2) = make_folders(dir.path(), &mut rng);
    let stream = Bytes::from(make_stream(&mut rng));
    let mem = MemoryStorage::new();
    let storage: Arc<dyn Storage> = Arc::new(mem.clone());
    let repo = Arc::new(
        Repository::init(
            storage,
            PASSWORD,
            InitOptions {
                kdf: KdfParams::MINIMUM,
                pack_size: PACK_SIZE,
            },
        )
        .await
        .unwrap(),
    );
    let mut sources = HashMap::new();
    let guard = lock::lock(&repo, false, "backup").await.unwrap();
    for v in [&v1, &v2] {
        let (id, _) = archiver::backup_paths(
            &repo,
            &guard,
            std::slice::from_ref(v),
            BackupOptions::default(),
        )
        .await
        .unwrap();
        sources.insert(id, shapes(scan(v)));
    }
    let opts = BackupOptions {
        stream_chunker: Some(ChunkerParams {
            min: 2 * 1024,
            avg: 8 * 1024,
            max: 32 * 1024,
            line_anchored: true,
            full_window: true,
        }),
        ..BackupOptions::default()
    };
    let input = Box::new(Cursor::new(stream.clone()));
    let (stream_id, _) = archiver::backup_stream(&repo, &guard, STREAM_NAME, input, opts)
        .await
        .unwrap();
    guard.release().await.unwrap();
    let pristine = mem.snapshot_objects();

    // Blobs by pack and packs by index file, from the index files themselves.
    let mut pack_blobs = HashMap::new();
    let mut index_packs = HashMap::new();
    for (kind, name) in pristine.keys() {
        if *kind != Kind::Index {
            continue;
        }
        let (_, file) = repo.read_index_file(name).await.unwrap();
        let mut packs = Vec::new();
        for p in file.packs {
            let blobs = p
                .blobs
                .iter()
                .map(|e| (e.id, u64::from(e.offset), u64::from(e.stored_len)))
                .collect();
            pack_blobs.insert(p.id.to_hex(), blobs);
            packs.push(p.id.to_hex());
        }
        index_packs.insert(name.clone(), packs);
    }
    // Every pack is indexed (nothing was interrupted).
    for (kind, name) in pristine.keys() {
        if *kind == Kind::Pack {
            assert!(pack_blobs.contains_key(name), "pack {name} is not indexed");
        }
    }

    // Trees of every snapshot.
    repo.load_index().await.unwrap();
    let (listed, warnings) = repo.list_snapshots().await.unwrap();
    assert!(warnings.is_empty());
    let mut trees = HashMap::new();
    let mut lists = HashMap::new();
    let mut snaps = Vec::new();
    for (id, snap) in listed {
        let mut stack = vec![snap.tree];
        while let Some(t) = stack.pop() {
            if trees.contains_key(&t) {
                continue;
            }
            let tree = repo.load_tree(&t).await.unwrap();
            stack.extend(tree.nodes.iter().filter_map(|n| n.subtree));
            for l in tree.nodes.iter().flat_map(|n| &n.content_lists) {
                lists.insert(*l, repo.load_content_list(l).await.unwrap());
            }
            trees.insert(t, tree);
        }
        let (expected, stream_bytes) = if id == stream_id {
            let mut e = BTreeMap::new();
            e.insert(
                STREAM_NAME.to_owned(),
                Shape::File {
                    size: stream.len() as u64,
                    hash: *blake3::hash(&stream).as_bytes(),
                },
            );
            (e, Some(stream.clone()))
        } else {
            (sources.remove(&id).unwrap(), None)
        };
        snaps.push(SnapInfo {
            id,
            snap,
            expected,
            stream: stream_bytes,
        });
    }
    assert_eq!(snaps.len(), 3);
    let scratch = if Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    World {
        seed,
        pristine,
        snaps,
        trees,
        lists,
        pack_blobs,
        index_packs,
        scratch,
        _dir: dir,
    }
}

// ---------------------------------------------------------------------------------------
// Faults.

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum FaultType {
    Flip,
    /// A flip in the last 64 bytes of a pack.
    FlipTail,
    Truncate,
    Swap,
}

#[derive(Debug, Clone)]
enum Fault {
    Flip {
        offset: usize,
        bit: u8,
    },
    Truncate {
        len: usize,
    },
    /// The bytes of object `from` (same kind) under the target's name.
    Swap {
        from: String,
    },
}

#[derive(Debug, Clone)]
struct Trial {
    n: usize,
    ty: FaultType,
    kind: Kind,
    name: String,
    fault: Fault,
}

const KINDS: [Kind; 5] = [
    Kind::Pack,
    Kind::Index,
    Kind::Snapshot,
    Kind::Key,
    Kind::Config,
];
const SWAP_KINDS: [Kind; 3] = [Kind::Pack, Kind::Index, Kind::Snapshot];

fn plan_trials(w: &World, rng: &mut XorShift) -> Vec<Trial> {
    let names = |k: Kind| -> Vec<&String> {
        w.pristine
            .keys()
            .filter(|(kind, _)| *kind == k)
            .map(|(_, n)| n)
            .collect()
    };
    let mut types = Vec::new();
    types.extend(std::iter::repeat_n(FaultType::Flip, FLIPS));
    types.extend(std::iter::repeat_n(FaultType::Truncate, TRUNCATIONS));
    types.extend(std::iter::repeat_n(FaultType::Swap, SWAPS));
    for i in (1..types.len()).rev() {
        types.swap(i, rng.below(i as u64 + 1) as usize);
    }
    let mut pack_flips = 0usize;
    let mut trials = Vec::new();
    for (n, mut ty) in types.into_iter().enumerate() {
        let kind = if ty == FaultType::Swap {
            SWAP_KINDS[rng.below(3) as usize]
        } else {
            KINDS[rng.below(5) as usize]
        };
        let candidates = names(kind);
        let name = candidates[rng.below(candidates.len() as u64) as usize].clone();
        let len = w.pristine[&(kind, name.clone())].len();
        let fault = match ty {
            FaultType::Flip | FaultType::FlipTail => {
                // Every second flip of a pack hits its last 64 bytes (header and trailer).
                let tail = kind == Kind::Pack && {
                    pack_flips += 1;
                    pack_flips.is_multiple_of(2)
                };
                let offset = if tail {
                    ty = FaultType::FlipTail;
                    len - 1 - rng.below(64.min(len as u64)) as usize
                } else {
                    rng.below(len as u64) as usize
                };
                Fault::Flip {
                    offset,
                    bit: rng.below(8) as u8,
                }
            }
            FaultType::Truncate => Fault::Truncate {
                len: if rng.below(10) == 0 {
                    0
                } else {
                    rng.below(len as u64) as usize
                },
            },
            FaultType::Swap => {
                let others: Vec<_> = candidates.iter().filter(|c| ***c != name).collect();
                Fault::Swap {
                    from: (**others[rng.below(others.len() as u64) as usize]).clone(),
                }
            }
        };
        trials.push(Trial {
            n,
            ty,
            kind,
            name,
            fault,
        });
    }
    trials
}

fn apply(w: &World, t: &Trial) -> ObjectMap {
    let mut objects = w.pristine.clone();
    let key = (t.kind, t.name.clone());
    let old = &w.pristine[&key];
    let new = match &t.fault {
        Fault::Flip { offset, bit } => {
            let mut v = old.to_vec();
            v[*offset] ^= 1 << bit;
            Bytes::from(v)
        }
        Fault::Truncate { len } => old.slice(..*len),
        Fault::Swap { from } => w.pristine[&(t.kind, from.clone())].clone(),
    };
    assert_ne!(&new, old, "trial {} changes nothing", t.n);
    objects.insert(key, new);
    objects
}

/// Blobs whose stored bytes the fault changes or makes unreachable.
fn affected_blobs(w: &World, t: &Trial) -> HashSet<Id> {
    match t.kind {
        Kind::Pack => {
            let blobs = &w.pack_blobs[&t.name];
            blobs
                .iter()
                .filter(|(_, off, len)| match &t.fault {
                    Fault::Flip { offset, .. } => (*off..off + len).contains(&(*offset as u64)),
                    Fault::Truncate { len: cut } => off + len > *cut as u64,
                    Fault::Swap { .. } => true,
                })
                .map(|(id, _, _)| *id)
                .collect()
        }
        // Any damage makes the whole index file unreadable: its packs' blobs are missing.
        Kind::Index => w.index_packs[&t.name]
            .iter()
            .flat_map(|p| w.pack_blobs[p].iter().map(|(id, _, _)| *id))
            .collect(),
        _ => HashSet::new(),
    }
}

/// What restoring a snapshot must do given the affected blobs: the paths named by failures
/// (files, and folders whose tree cannot be read, or "/" for the root), and the paths that
/// must be restored.
fn expected_restore(
    w: &World,
    root: Id,
    affected: &HashSet<Id>,
) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut failures = BTreeSet::new();
    let mut restored = BTreeSet::new();
    if affected.contains(&root) {
        failures.insert("/".to_owned());
        return (failures, restored);
    }
    let mut stack = vec![(root, String::new())];
    while let Some((t, rel)) = stack.pop() {
        for node in &w.trees[&t].nodes {
            let p = if rel.is_empty() {
                node.display_name()
            } else {
                format!("{rel}/{}", node.display_name())
            };
            match node.kind {
                NodeKind::Dir => {
                    restored.insert(p.clone());
                    let sub = node.subtree.unwrap();
                    if affected.contains(&sub) {
                        failures.insert(p);
                    } else {
                        stack.push((sub, p));
                    }
                }
                NodeKind::File => {
                    if file_blobs(w, node).iter().any(|b| affected.contains(b)) {
                        failures.insert(p);
                    } else {
                        restored.insert(p);
                    }
                }
                NodeKind::Symlink => {
                    restored.insert(p);
                }
            }
        }
    }
    (failures, restored)
}

/// The blobs a file's restore reads: its inline content, or its content lists and every id
/// they hold.
fn file_blobs(w: &World, node: &strongroom_repo::tree::Node) -> Vec<Id> {
    let mut out = node.content.clone();
    for l in &node.content_lists {
        out.push(*l);
        out.extend(&w.lists[l]);
    }
    out
}

/// Files (by path) whose own data blobs are affected, with those blobs, in folders that can
/// be read: verify must name each of them or one of its blobs.
fn damaged_files(w: &World, root: Id, affected: &HashSet<Id>) -> Vec<(String, Vec<Id>)> {
    let mut out = Vec::new();
    if affected.contains(&root) {
        return out;
    }
    let mut stack = vec![(root, String::new())];
    while let Some((t, rel)) = stack.pop() {
        for node in &w.trees[&t].nodes {
            let p = format!("{rel}/{}", node.display_name());
            match node.kind {
                NodeKind::Dir => {
                    let sub = node.subtree.unwrap();
                    if !affected.contains(&sub) {
                        stack.push((sub, p));
                    }
                }
                NodeKind::File => {
                    let bad: Vec<Id> = file_blobs(w, node)
                        .into_iter()
                        .filter(|b| affected.contains(b))
                        .collect();
                    if !bad.is_empty() {
                        out.push((p, bad));
                    }
                }
                NodeKind::Symlink => {}
            }
        }
    }
    out
}

#[derive(Debug, Default, Clone)]
struct Tally {
    trials: BTreeMap<(FaultType, String), usize>,
    open_refused: usize,
    verify_reported: usize,
    restores: usize,
    files_restored: usize,
    failures_named: usize,
    header_only: usize,
}

impl Tally {
    fn add(&mut self, o: &Tally) {
        for (k, v) in &o.trials {
            *self.trials.entry(k.clone()).or_default() += v;
        }
        self.open_refused += o.open_refused;
        self.verify_reported += o.verify_reported;
        self.restores += o.restores;
        self.files_restored += o.files_restored;
        self.failures_named += o.failures_named;
        self.header_only += o.header_only;
    }
}

/// Puts exactly `objects` into `mem` (a handle the worker's repository reads through).
fn reset(mem: &MemoryStorage, objects: &ObjectMap) {
    for (kind, name) in mem.snapshot_objects().keys() {
        if !objects.contains_key(&(*kind, name.clone())) {
            mem.remove_raw(*kind, name);
        }
    }
    for ((kind, name), data) in objects {
        mem.put_raw(*kind, name, data.clone());
    }
}

/// Runs one trial. `mem`/`repo` are the worker's repository, opened once: for a fault in a
/// pack, index file or snapshot, opening again would read the same (intact) config and key
/// file and give the same repository, so the damaged objects are put in place under it.
async fn run_trial(
    w: &World,
    t: &Trial,
    mem: &MemoryStorage,
    repo: &Repository,
    tally: &mut Tally,
) {
    let label = format!(
        "trial {} ({:?} of {:?} {} : {:?}; seed {})",
        t.n, t.ty, t.kind, t.name, t.fault, w.seed
    );
    *tally
        .trials
        .entry((t.ty, format!("{:?}", t.kind)))
        .or_default() += 1;
    let objects = apply(w, t);

    if matches!(t.kind, Kind::Config | Kind::Key) {
        let storage: Arc<dyn Storage> = Arc::new(MemoryStorage::from_objects(objects));
        match Repository::open(storage, PASSWORD).await {
            Err(e) => {
                let msg = e.to_string();
                let named = if t.kind == Kind::Config {
                    "config"
                } else {
                    "key file"
                };
                assert!(
                    msg.contains(named),
                    "{label}: opening failed without naming the {named}: {msg}"
                );
                tally.open_refused += 1;
                return;
            }
            Ok(_) => panic!("{label}: the repository opened with a damaged {:?}", t.kind),
        }
    }

    reset(mem, &objects);
    let report = checker::check(repo, ReadData::All)
        .await
        .unwrap_or_else(|e| panic!("{label}: verify could not run: {e}"));
    assert!(
        !report.is_ok(),
        "{label}: verify --read-data reported nothing (warnings: {:?})",
        report.warnings
    );
    let short = &t.name[..8];
    assert!(
        report.errors.iter().any(|e| e.contains(short)),
        "{label}: no verify error names {short}: {:?}",
        report.errors
    );
    tally.verify_reported += 1;

    let affected = affected_blobs(w, t);
    if t.kind == Kind::Pack && affected.is_empty() {
        tally.header_only += 1;
    }
    let (listed, warnings) = repo
        .list_snapshots()
        .await
        .unwrap_or_else(|e| panic!("{label}: cannot list snapshots: {e}"));
    if t.kind == Kind::Snapshot {
        assert_eq!(warnings.len(), 1, "{label}: {warnings:?}");
        assert_eq!(listed.len(), w.snaps.len() - 1, "{label}");
        assert!(
            listed.iter().all(|(id, _)| id.to_hex() != t.name),
            "{label}: the damaged snapshot still lists"
        );
    } else {
        assert!(warnings.is_empty(), "{label}: {warnings:?}");
        assert_eq!(listed.len(), w.snaps.len(), "{label}");
    }

    for (id, snap) in &listed {
        let info = w.snaps.iter().find(|s| s.id == *id).unwrap();
        assert_eq!(snap, &info.snap, "{label}: snapshot {} changed", id.short());
        let what = format!("{label}, snapshot {}", id.short());
        for (file, blobs) in damaged_files(w, snap.tree, &affected) {
            assert!(
                report
                    .errors
                    .iter()
                    .any(|e| e.contains(&file) || blobs.iter().any(|b| e.contains(&b.short()))),
                "{what}: no verify error names {file} or its damaged blobs: {:?}",
                report.errors
            );
        }
        let (want_failures, want_restored) = expected_restore(w, snap.tree, &affected);
        let target = tempfile::Builder::new()
            .prefix("strongroom-corrupt-")
            .tempdir_in(&w.scratch)
            .unwrap();
        let res =
            restorer::restore_to_dir(repo, snap, target.path(), &RestoreOptions::default()).await;
        tally.restores += 1;
        let failures = match res {
            Ok(_) => Vec::new(),
            Err(RepoError::PartialRestore { failures, .. }) => failures,
            Err(e) => panic!("{what}: restore failed outright: {e}"),
        };
        let named: BTreeSet<String> = failures
            .iter()
            .map(|f| f.split_once(": ").map_or(f.as_str(), |(p, _)| p).to_owned())
            .collect();
        assert_eq!(
            named, want_failures,
            "{what}: the restore failures do not name exactly the affected files: {failures:#?}"
        );
        assert_eq!(named.len(), failures.len(), "{what}: {failures:#?}");
        for f in &failures {
            let (p, _) = f.split_once(": ").unwrap();
            let is_dir = p == "/" || info.expected.get(p) == Some(&Shape::Dir);
            assert!(
                !is_dir || f.contains("folder cannot be read"),
                "{what}: {f}"
            );
        }
        tally.failures_named += failures.len();
        let got = shapes(scan_children(target.path()));
        let want: BTreeMap<String, Shape> = info
            .expected
            .iter()
            .filter(|(p, _)| want_restored.contains(*p))
            .map(|(p, s)| (p.clone(), s.clone()))
            .collect();
        assert_eq!(
            want.len(),
            want_restored.len(),
            "{what}: the trees name paths the source does not have"
        );
        if got != want {
            let missing: Vec<_> = want.keys().filter(|k| !got.contains_key(*k)).collect();
            let extra: Vec<_> = got.keys().filter(|k| !want.contains_key(*k)).collect();
            let differ: Vec<_> = want
                .iter()
                .filter(|(k, v)| got.get(*k).is_some_and(|g| g != *v))
                .map(|(k, _)| k)
                .collect();
            panic!(
                "{what}: wrong restore: missing {missing:?}, unexpected {extra:?}, different {differ:?}"
            );
        }
        tally.files_restored += want
            .values()
            .filter(|s| matches!(s, Shape::File { .. }))
            .count();

        if let Some(stream) = &info.stream {
            let mut out = Vec::new();
            let res = restorer::restore_stream(repo, snap, &mut out).await;
            if want_failures.is_empty() {
                res.unwrap_or_else(|e| panic!("{what}: intact stream does not restore: {e}"));
                assert!(
                    out == *stream,
                    "{what}: the stream restored different bytes"
                );
            } else {
                assert!(res.is_err(), "{what}: a damaged stream restored");
            }
        }
    }
    assert!(
        mem.snapshot_objects() == objects,
        "{label}: verify or restore changed the repository"
    );
}

#[test]
fn every_flip_truncation_and_swap_is_reported_and_spares_unaffected_files() {
    let started = Instant::now();
    let seed = common::seed("corruption");
    let world = common::runtime().block_on(build_world(seed));
    let mut rng = XorShift::new(seed ^ 0x5eed);
    let trials = plan_trials(&world, &mut rng);
    let count = |k: Kind| world.pristine.keys().filter(|(kind, _)| *kind == k).count();
    eprintln!(
        "corruption: repository of {} packs, {} index files, {} snapshots, {} key file, {} config; {} trials",
        count(Kind::Pack),
        count(Kind::Index),
        count(Kind::Snapshot),
        count(Kind::Key),
        count(Kind::Config),
        trials.len()
    );
    assert!(count(Kind::Pack) >= 50 && count(Kind::Index) >= 2);

    let world = &world;
    let mut total = Tally::default();
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..WORKERS)
            .map(|i| {
                let mine: Vec<&Trial> = trials.iter().skip(i).step_by(WORKERS).collect();
                s.spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .unwrap();
                    rt.block_on(async {
                        let mem = MemoryStorage::from_objects(world.pristine.clone());
                        let storage: Arc<dyn Storage> = Arc::new(mem.clone());
                        let repo = Repository::open(storage, PASSWORD).await.unwrap();
                        let mut tally = Tally::default();
                        for t in mine {
                            run_trial(world, t, &mem, &repo, &mut tally).await;
                        }
                        tally
                    })
                })
            })
            .collect();
        for h in handles {
            match h.join() {
                Ok(t) => total.add(&t),
                Err(e) => std::panic::resume_unwind(e),
            }
        }
    });

    let by_type = |ty: FaultType| -> usize {
        total
            .trials
            .iter()
            .filter(|((t, _), _)| *t == ty)
            .map(|(_, n)| n)
            .sum()
    };
    let flips = by_type(FaultType::Flip) + by_type(FaultType::FlipTail);
    eprintln!(
        "corruption: {} trials in {:.1}s (seed {seed}): {flips} flips ({} in the last 64 bytes of a pack), {} truncations, {} swaps; by type and kind {:?}",
        trials.len(),
        started.elapsed().as_secs_f64(),
        by_type(FaultType::FlipTail),
        by_type(FaultType::Truncate),
        by_type(FaultType::Swap),
        total.trials
    );
    eprintln!(
        "corruption: {} refused at open (config or key file named), {} reported by verify; {} restores: {} files restored identical, {} failures each naming its file or folder; {} pack faults touched no blob and every file restored",
        total.open_refused,
        total.verify_reported,
        total.restores,
        total.files_restored,
        total.failures_named,
        total.header_only
    );
    assert_eq!(total.open_refused + total.verify_reported, trials.len());
    assert!(flips >= 1000);
    assert!(by_type(FaultType::FlipTail) >= 50);
    assert!(by_type(FaultType::Truncate) >= 200);
    assert!(by_type(FaultType::Swap) >= 50);
}
