//! Property tests of backup and restore: random folders (odd names, symlinks, deep trees,
//! permission bits, times, owners) and random streams come back byte for byte with their
//! metadata; an incremental backup reads only what changed and still restores identically;
//! a restore with `include` writes only what was asked for. One deterministic test backs up
//! a 200 MiB sparse file (restored in full, and with `sparse` as holes again).
//!
//! Every randomized test prints its seed; set `STRONGROOM_TEST_SEED` to replay it.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::{Meta, XorShift, assert_same, is_root, join, memory_repo, scan, scan_children};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use strongroom_repo::archiver::{self, BackupOptions};
use strongroom_repo::checker::{self, ReadData};
use strongroom_repo::restorer::{self, RestoreOptions};
use strongroom_repo::{RepoError, Repository, lock};

// ---------------------------------------------------------------------------------------
// The runner: a fixed number of cases, seeded from `common::seed`, no regression files.

fn runner(test: &str, cases: u32) -> (TestRunner, u64) {
    let seed = common::seed(test);
    let mut s = [0u8; 32];
    s[..8].copy_from_slice(&seed.to_le_bytes());
    s[8..16].copy_from_slice(&seed.rotate_left(17).to_le_bytes());
    let config = Config {
        cases,
        failure_persistence: None,
        max_shrink_iters: 64,
        ..Config::default()
    };
    (
        TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &s)),
        seed,
    )
}

fn run<S: Strategy>(
    test: &str,
    cases: u32,
    strategy: S,
    f: impl Fn(S::Value) -> Result<(), TestCaseError>,
) {
    let (mut runner, seed) = runner(test, cases);
    let started = std::time::Instant::now();
    if let Err(e) = runner.run(&strategy, f) {
        panic!("{test} failed (seed {seed}, replay with STRONGROOM_TEST_SEED={seed}): {e}");
    }
    eprintln!(
        "{test}: {cases} cases passed in {:.1}s",
        started.elapsed().as_secs_f64()
    );
}

// ---------------------------------------------------------------------------------------
// Random folders.

#[derive(Debug, Clone)]
enum Content {
    Empty,
    Random {
        len: usize,
        seed: u64,
    },
    Repeat {
        pattern: usize,
        len: usize,
        seed: u64,
    },
    Zeros {
        len: usize,
    },
}

impl Content {
    fn bytes(&self) -> Vec<u8> {
        match *self {
            Content::Empty => vec![],
            Content::Random { len, seed } => XorShift::new(seed).bytes(len),
            Content::Repeat { pattern, len, seed } => {
                let p = XorShift::new(seed).bytes(pattern.max(1));
                p.iter().copied().cycle().take(len).collect()
            }
            Content::Zeros { len } => vec![0; len],
        }
    }
}

#[derive(Debug, Clone)]
struct Attrs {
    mode: u32,
    /// Seconds and nanoseconds.
    mtime: (i64, u32),
    /// Applied only when running as root.
    owner: (u32, u32),
}

#[derive(Debug, Clone)]
enum Entry {
    File {
        name: Vec<u8>,
        content: Content,
        attrs: Attrs,
    },
    Symlink {
        name: Vec<u8>,
        target: Vec<u8>,
        attrs: Attrs,
    },
    Dir {
        name: Vec<u8>,
        attrs: Attrs,
        children: Vec<Entry>,
    },
}

impl Entry {
    fn name(&self) -> &[u8] {
        match self {
            Entry::File { name, .. } | Entry::Symlink { name, .. } | Entry::Dir { name, .. } => {
                name
            }
        }
    }
}

/// A folder to back up: a random tree plus a chain of nested folders `depth` deep.
#[derive(Debug, Clone)]
struct Spec {
    root: Attrs,
    children: Vec<Entry>,
    depth: usize,
    deep_file: Content,
}

fn name_strategy() -> impl Strategy<Value = Vec<u8>> {
    let unicode = prop::sample::select(vec![
        "ünïcødé",
        "日本語のファイル",
        "emoji 😀🎉",
        "Ω≈ç√∫",
        "ﬁle",
        "e\u{301}cole",
        "עברית",
        "zero\u{200b}width",
    ]);
    prop_oneof![
        4 => "[a-z0-9_.]{1,12}".prop_map(String::into_bytes),
        1 => "[a-z]{1,6}( [a-z]{1,6}){1,3} ?".prop_map(String::into_bytes),
        1 => "-[a-z-]{0,8}".prop_map(String::into_bytes),
        1 => "[a-z]{1,5}\n[a-z]{0,5}\n?".prop_map(String::into_bytes),
        1 => (unicode, "[a-z0-9]{0,4}").prop_map(|(u, s)| format!("{u}{s}").into_bytes()),
        1 => prop::collection::vec(prop_oneof![0x80u8..=0xff, b'a'..=b'z', Just(b' ')], 1..16)
            .prop_map(|mut v| {
                v.push(0xff);
                v
            }),
        1 => (b'a'..=b'z', 240usize..=250).prop_map(|(c, n)| {
            let mut v = vec![c; n];
            v[0] = b'L';
            v
        }),
        1 => Just(b"..." .to_vec()),
        1 => Just(b" ".to_vec()),
        1 => Just(b"\\back\\slash:*?\"<>|".to_vec()),
    ]
    .prop_filter("not . or ..", |n| n != b"." && n != b"..")
}

fn content_strategy() -> impl Strategy<Value = Content> {
    prop_oneof![
        3 => Just(Content::Empty),
        8 => (0usize..4096, any::<u64>()).prop_map(|(len, seed)| Content::Random { len, seed }),
        4 => (4096usize..300_000, any::<u64>()).prop_map(|(len, seed)| Content::Random { len, seed }),
        3 => (1usize..100, 0usize..2_000_000, any::<u64>())
            .prop_map(|(pattern, len, seed)| Content::Repeat { pattern, len, seed }),
        1 => (1usize..1_500_000).prop_map(|len| Content::Zeros { len }),
        1 => (1_000_000usize..3_500_000, any::<u64>())
            .prop_map(|(len, seed)| Content::Random { len, seed }),
    ]
}

fn mtime_strategy() -> impl Strategy<Value = (i64, u32)> {
    prop_oneof![
        6 => (0i64..2_000_000_000, 0u32..1_000_000_000),
        1 => (-2_000_000_000i64..0, 0u32..1_000_000_000),
        1 => (0i64..2_000_000_000, Just(0u32)),
        1 => Just((0i64, 0u32)),
    ]
}

fn owner_strategy() -> impl Strategy<Value = (u32, u32)> {
    (
        prop_oneof![Just(0u32), 1u32..70_000],
        prop_oneof![Just(0u32), 1u32..70_000],
    )
}

fn file_attrs() -> impl Strategy<Value = Attrs> {
    let mode = prop::sample::select(vec![
        0o600, 0o644, 0o640, 0o755, 0o700, 0o400, 0o444, 0o4755, 0o2755, 0o6750,
    ]);
    (mode, mtime_strategy(), owner_strategy()).prop_map(|(mode, mtime, owner)| Attrs {
        mode,
        mtime,
        owner,
    })
}

fn dir_attrs() -> impl Strategy<Value = Attrs> {
    // The owner keeps rwx so the test can always clean up, also when not root.
    let mode = prop::sample::select(vec![0o755, 0o700, 0o750, 0o775, 0o1777, 0o2755, 0o711]);
    (mode, mtime_strategy(), owner_strategy()).prop_map(|(mode, mtime, owner)| Attrs {
        mode,
        mtime,
        owner,
    })
}

fn target_strategy() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        "[a-z]{1,8}".prop_map(String::into_bytes),
        "(\\.\\./){1,3}[a-z]{1,8}".prop_map(String::into_bytes),
        Just(b"/etc/hostname".to_vec()),
        Just(b"/nonexistent/dangling/target".to_vec()),
        Just(b"does-not-exist".to_vec()),
        Just(b"/".to_vec()),
        Just(b"target with spaces\nand a newline".to_vec()),
        Just(b"bad-utf8-\xff\xfe".to_vec()),
        (b'a'..=b'z', 500usize..2000).prop_map(|(c, n)| vec![c; n]),
    ]
}

fn dedup(mut v: Vec<Entry>) -> Vec<Entry> {
    let mut seen = std::collections::HashSet::new();
    v.retain(|e| seen.insert(e.name().to_vec()));
    v
}

fn entry_strategy() -> impl Strategy<Value = Entry> {
    let leaf = prop_oneof![
        5 => (name_strategy(), content_strategy(), file_attrs())
            .prop_map(|(name, content, attrs)| Entry::File { name, content, attrs }),
        2 => (name_strategy(), target_strategy(), file_attrs())
            .prop_map(|(name, target, attrs)| Entry::Symlink { name, target, attrs }),
    ];
    leaf.prop_recursive(3, 64, 8, |inner| {
        (
            name_strategy(),
            dir_attrs(),
            prop::collection::vec(inner, 0..8),
        )
            .prop_map(|(name, attrs, children)| Entry::Dir {
                name,
                attrs,
                children: dedup(children),
            })
    })
}

fn spec_strategy() -> impl Strategy<Value = Spec> {
    (
        dir_attrs(),
        prop::collection::vec(entry_strategy(), 0..14),
        30usize..40,
        content_strategy(),
    )
        .prop_map(|(root, children, depth, deep_file)| Spec {
            root,
            children: dedup(children),
            depth,
            deep_file,
        })
}

fn apply_attrs(path: &Path, a: &Attrs, symlink: bool) {
    if is_root() {
        std::os::unix::fs::lchown(path, Some(a.owner.0), Some(a.owner.1)).unwrap();
    }
    let t = filetime::FileTime::from_unix_time(a.mtime.0, a.mtime.1);
    if symlink {
        filetime::set_symlink_file_times(path, t, t).unwrap();
    } else {
        // After chown, which clears set-id bits.
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(a.mode)).unwrap();
        filetime::set_file_times(path, t, t).unwrap();
    }
}

fn create_entry(dir: &Path, e: &Entry) {
    match e {
        Entry::File {
            name,
            content,
            attrs,
        } => {
            let p = join(dir, name);
            std::fs::write(&p, content.bytes()).unwrap();
            apply_attrs(&p, attrs, false);
        }
        Entry::Symlink {
            name,
            target,
            attrs,
        } => {
            let p = join(dir, name);
            std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(target), &p).unwrap();
            apply_attrs(&p, attrs, true);
        }
        Entry::Dir {
            name,
            attrs,
            children,
        } => {
            let p = join(dir, name);
            std::fs::create_dir(&p).unwrap();
            for c in children {
                create_entry(&p, c);
            }
            apply_attrs(&p, attrs, false);
        }
    }
}

/// Builds the folder `base/src` from a spec; returns its path.
fn materialize(base: &Path, spec: &Spec) -> PathBuf {
    let root = base.join("src");
    std::fs::create_dir(&root).unwrap();
    for c in &spec.children {
        create_entry(&root, c);
    }
    // The deep chain: deep/level-1/level-2/... with a file at the bottom; its folders get
    // their times set bottom-up.
    // '+' appears in no generated name, so these cannot collide with random entries.
    let mut chain = vec![root.join("+deep")];
    std::fs::create_dir(&chain[0]).unwrap();
    for i in 1..spec.depth {
        let next = chain[i - 1].join(format!("level-{i}"));
        std::fs::create_dir(&next).unwrap();
        chain.push(next);
    }
    let bottom = chain.last().unwrap().join("bottom file");
    std::fs::write(&bottom, spec.deep_file.bytes()).unwrap();
    for (i, d) in chain.iter().enumerate().rev() {
        let t = filetime::FileTime::from_unix_time(1_600_000_000 + i as i64, i as u32 * 7);
        filetime::set_file_times(d, t, t).unwrap();
    }
    apply_attrs(&root, &spec.root, false);
    root
}

async fn backup(
    repo: &Arc<Repository>,
    paths: &[PathBuf],
    parent: Option<strongroom_repo::Id>,
) -> (strongroom_repo::Id, strongroom_repo::Snapshot) {
    let guard = lock::lock(repo, false, "test backup").await.unwrap();
    let res = archiver::backup_paths(
        repo,
        &guard,
        paths,
        BackupOptions {
            parent,
            ..BackupOptions::default()
        },
    )
    .await;
    guard.release().await.unwrap();
    res.unwrap()
}

async fn restore(
    repo: &Repository,
    snap: &strongroom_repo::Snapshot,
    target: &Path,
    include: Vec<String>,
) -> restorer::RestoreStats {
    restorer::restore_to_dir(
        repo,
        snap,
        target,
        &RestoreOptions {
            include,
            ..RestoreOptions::default()
        },
    )
    .await
    .unwrap()
}

fn count_files(m: &BTreeMap<Vec<u8>, Meta>) -> (u64, u64) {
    let files = m.values().filter(|v| v.is_file()).count() as u64;
    let bytes = m
        .values()
        .map(|v| match v {
            Meta::File { size, .. } => *size,
            _ => 0,
        })
        .sum();
    (files, bytes)
}

/// Random folders come back identical: content, modes (set-id bits included), times to the
/// nanosecond, symlink targets (dangling, absolute, non-UTF-8), owners when root.
#[test]
fn folders_round_trip_with_metadata() {
    let rt = common::runtime();
    run(
        "folders_round_trip_with_metadata",
        24,
        spec_strategy(),
        |spec| {
            rt.block_on(async {
                let tmp = common::tempdir();
                let src = materialize(tmp.path(), &spec);
                let before = scan(&src);
                let (_mem, repo) = memory_repo().await;
                let (_, snap) = backup(&repo, std::slice::from_ref(&src), None).await;
                assert!(
                    snap.summary.warnings.is_empty(),
                    "{:?}",
                    snap.summary.warnings
                );
                let (files, bytes) = count_files(&before);
                eprintln!(
                    "  case: {} entries, {files} files, {bytes} bytes, {} symlinks",
                    before.len(),
                    before
                        .values()
                        .filter(|m| matches!(m, Meta::Symlink { .. }))
                        .count()
                );
                prop_assert_eq!(snap.summary.files, files);
                prop_assert_eq!(snap.summary.total_bytes, bytes);
                prop_assert_eq!(snap.summary.files_unchanged, 0);
                // Reading the source changed nothing in it.
                assert_same(&before, &scan(&src), "source after backup");
                let target = tmp.path().join("restored");
                let stats = restore(&repo, &snap, &target, vec![]).await;
                prop_assert_eq!(stats.files, files);
                prop_assert_eq!(stats.bytes, bytes);
                assert_same(&before, &scan_children(&target), "restored tree");
                // Restoring again over the restored tree is idempotent.
                restore(&repo, &snap, &target, vec![]).await;
                assert_same(&before, &scan_children(&target), "restored twice");
                let report = checker::check(&repo, ReadData::All).await.unwrap();
                prop_assert!(report.is_ok(), "{:?}", report.errors);
                Ok(())
            })
        },
    );
}

// ---------------------------------------------------------------------------------------
// Streams.

#[derive(Debug, Clone)]
enum StreamData {
    Random {
        len: usize,
        seed: u64,
    },
    Repeat {
        pattern: usize,
        len: usize,
        seed: u64,
    },
    Zeros {
        len: usize,
    },
    /// Random blocks, some of them repeated.
    Mixed {
        blocks: usize,
        seed: u64,
    },
}

impl StreamData {
    fn bytes(&self) -> Vec<u8> {
        match *self {
            StreamData::Random { len, seed } => XorShift::new(seed).bytes(len),
            StreamData::Repeat { pattern, len, seed } => {
                Content::Repeat { pattern, len, seed }.bytes()
            }
            StreamData::Zeros { len } => vec![0; len],
            StreamData::Mixed { blocks, seed } => {
                let mut r = XorShift::new(seed);
                let pool: Vec<Vec<u8>> = (0..4)
                    .map(|_| {
                        let n = 10_000 + r.below(200_000) as usize;
                        r.bytes(n)
                    })
                    .collect();
                let mut out = Vec::new();
                for _ in 0..blocks {
                    if r.below(2) == 0 {
                        out.extend_from_slice(&pool[r.below(4) as usize]);
                    } else {
                        let n = r.below(100_000) as usize;
                        out.extend(r.bytes(n));
                    }
                }
                out
            }
        }
    }
}

fn stream_strategy() -> impl Strategy<Value = StreamData> {
    let len = prop_oneof![
        Just(0usize),
        Just(1usize),
        2usize..1000,
        1000usize..300_000,
        1_000_000usize..8_000_000,
    ];
    prop_oneof![
        (len.clone(), any::<u64>()).prop_map(|(len, seed)| StreamData::Random { len, seed }),
        (1usize..300, len.clone(), any::<u64>())
            .prop_map(|(pattern, len, seed)| StreamData::Repeat { pattern, len, seed }),
        len.prop_map(|len| StreamData::Zeros { len }),
        (1usize..60, any::<u64>()).prop_map(|(blocks, seed)| StreamData::Mixed { blocks, seed }),
    ]
}

/// A reader that hands out its data in small, irregular pieces, like a pipe.
struct Trickle {
    data: Vec<u8>,
    pos: usize,
    rng: XorShift,
    max: usize,
}

impl Read for Trickle {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let left = self.data.len() - self.pos;
        let n = left
            .min(buf.len())
            .min(1 + self.rng.below(self.max as u64) as usize);
        buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Streams of 0 bytes, 1 byte, many MiB, repetitive and random, read in one piece or in
/// tiny irregular pieces, come back identical; the same stream again adds no data blobs.
#[test]
fn streams_round_trip() {
    let rt = common::runtime();
    let (_mem, repo) = rt.block_on(memory_repo());
    let strategy = (
        stream_strategy(),
        "[a-zA-Z0-9 ._-]{1,40}",
        prop_oneof![Just(None), (1usize..10_000).prop_map(Some)],
        any::<u64>(),
    );
    run(
        "streams_round_trip",
        24,
        strategy,
        |(data, name, trickle, seed)| {
            rt.block_on(async {
                prop_assume!(name != "." && name != ".." && !name.trim_matches('/').is_empty());
                let bytes = data.bytes();
                eprintln!("  stream: {} bytes, trickle {trickle:?}", bytes.len());
                let input = |d: Vec<u8>| -> Box<dyn Read + Send> {
                    match trickle {
                        None => Box::new(std::io::Cursor::new(d)),
                        Some(max) => Box::new(Trickle {
                            data: d,
                            pos: 0,
                            rng: XorShift::new(seed),
                            max,
                        }),
                    }
                };
                let guard = lock::lock(&repo, false, "test").await.unwrap();
                let (id, snap) = archiver::backup_stream(
                    &repo,
                    &guard,
                    &name,
                    input(bytes.clone()),
                    BackupOptions::default(),
                )
                .await
                .unwrap();
                prop_assert_eq!(snap.summary.total_bytes, bytes.len() as u64);
                prop_assert_eq!(snap.summary.bytes_read, bytes.len() as u64);
                prop_assert_eq!(&snap.source, &name);
                let (_, again) = archiver::backup_stream(
                    &repo,
                    &guard,
                    &name,
                    input(bytes.clone()),
                    BackupOptions::default(),
                )
                .await
                .unwrap();
                guard.release().await.unwrap();
                // Only the new tree (the stream's time differs) is new; no data.
                prop_assert!(again.summary.blobs_added <= 1, "{:?}", again.summary);
                let (_, found) = repo.find_snapshot(&id.to_hex()).await.unwrap();
                let mut out = Vec::new();
                let n = restorer::restore_stream(&repo, &found, &mut out)
                    .await
                    .unwrap();
                prop_assert_eq!(n, bytes.len() as u64);
                prop_assert!(
                    out == bytes,
                    "stream differs (len {} vs {})",
                    out.len(),
                    bytes.len()
                );
                let mut out2 = Vec::new();
                restorer::restore_stream(&repo, &again, &mut out2)
                    .await
                    .unwrap();
                prop_assert!(out2 == bytes, "second stream differs");
                Ok(())
            })
        },
    );
    let report = rt.block_on(checker::check(&repo, ReadData::All)).unwrap();
    assert!(report.is_ok(), "{:?}", report.errors);
}

/// Bad stream names are refused and write nothing; a failing reader leaves no snapshot.
#[test]
fn bad_streams_refused() {
    let rt = common::runtime();
    rt.block_on(async {
        let (mem, repo) = memory_repo().await;
        let guard = lock::lock(&repo, false, "test").await.unwrap();
        for bad in ["", "/", "a/b", "..", "."] {
            let err = archiver::backup_stream(
                &repo,
                &guard,
                bad,
                Box::new(std::io::empty()),
                BackupOptions::default(),
            )
            .await
            .unwrap_err();
            assert!(matches!(err, RepoError::Invalid(_)), "{bad:?}: {err}");
        }
        struct Failing(usize);
        impl Read for Failing {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                if self.0 == 0 {
                    return Err(std::io::Error::other("pg_dump exited with status 1"));
                }
                let n = self.0.min(buf.len()).min(4096);
                buf[..n].fill(7);
                self.0 -= n;
                Ok(n)
            }
        }
        let err = archiver::backup_stream(
            &repo,
            &guard,
            "db.dump",
            Box::new(Failing(300_000)),
            BackupOptions::default(),
        )
        .await
        .unwrap_err();
        assert!(err.to_string().contains("pg_dump exited"), "{err}");
        guard.release().await.unwrap();
        let snaps = mem
            .snapshot_objects()
            .keys()
            .filter(|(k, _)| *k == strongroom_storage::Kind::Snapshot)
            .count();
        assert_eq!(snaps, 0, "a failed stream must not leave a snapshot");
    });
}

// ---------------------------------------------------------------------------------------
// Incremental backups.

#[derive(Debug, Clone)]
enum Mutation {
    /// New content (maybe of the same size), new mtime.
    Rewrite {
        content: Content,
        mtime: (i64, u32),
    },
    /// Same content, new mtime.
    Touch {
        mtime: (i64, u32),
    },
    /// Only the mode changes (ctime moves, so the file is read again).
    Chmod,
    Delete,
}

fn mutation_strategy() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        3 => (content_strategy(), mtime_strategy())
            .prop_map(|(content, mtime)| Mutation::Rewrite { content, mtime }),
        1 => mtime_strategy().prop_map(|mtime| Mutation::Touch { mtime }),
        1 => Just(Mutation::Chmod),
        1 => Just(Mutation::Delete),
    ]
}

fn file_paths(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                stack.push(e.path());
            } else if ft.is_file() {
                out.push(e.path());
            }
        }
    }
    out.sort();
    out
}

type StatKey = (u64, i64, i64, i64, i64, u64);

fn stat_key(p: &Path) -> StatKey {
    let m = std::fs::symlink_metadata(p).unwrap();
    (
        m.len(),
        m.mtime(),
        m.mtime_nsec(),
        m.ctime(),
        m.ctime_nsec(),
        m.ino(),
    )
}

/// A second backup with the first as parent reads exactly the files whose size, mtime,
/// ctime or inode changed (and the empty ones), takes the others from the parent, and both
/// snapshots restore identically; a third backup of the unchanged folder reads nothing.
#[test]
fn incremental_reads_only_changed_files() {
    let rt = common::runtime();
    let strategy = (
        spec_strategy(),
        prop::collection::vec((any::<prop::sample::Index>(), mutation_strategy()), 0..8),
        prop::collection::vec((name_strategy(), content_strategy()), 0..4),
    );
    run(
        "incremental_reads_only_changed_files",
        16,
        strategy,
        |(spec, mutations, added)| {
            rt.block_on(async {
                let tmp = common::tempdir();
                let src = materialize(tmp.path(), &spec);
                let (_mem, repo) = memory_repo().await;
                let state1 = scan(&src);
                let (id1, snap1) = backup(&repo, std::slice::from_ref(&src), None).await;
                let files = file_paths(&src);
                let stat_before: BTreeMap<PathBuf, StatKey> =
                    files.iter().map(|p| (p.clone(), stat_key(p))).collect();
                // Timestamps come from a coarse clock: let it tick before changing anything.
                std::thread::sleep(std::time::Duration::from_millis(30));
                let mut touched = std::collections::HashSet::new();
                for (idx, m) in &mutations {
                    if files.is_empty() {
                        break;
                    }
                    let p = &files[idx.index(files.len())];
                    if !p.exists() {
                        continue;
                    }
                    touched.insert(p.clone());
                    match m {
                        Mutation::Rewrite { content, mtime } => {
                            let mode = std::fs::metadata(p).unwrap().permissions();
                            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o600))
                                .unwrap();
                            std::fs::write(p, content.bytes()).unwrap();
                            std::fs::set_permissions(p, mode).unwrap();
                            let t = filetime::FileTime::from_unix_time(mtime.0, mtime.1);
                            filetime::set_file_mtime(p, t).unwrap();
                        }
                        Mutation::Touch { mtime } => {
                            let t = filetime::FileTime::from_unix_time(mtime.0, mtime.1);
                            filetime::set_file_mtime(p, t).unwrap();
                        }
                        Mutation::Chmod => {
                            let m = std::fs::metadata(p).unwrap().permissions().mode();
                            std::fs::set_permissions(
                                p,
                                std::fs::Permissions::from_mode((m & 0o7777) ^ 0o004),
                            )
                            .unwrap();
                        }
                        Mutation::Delete => std::fs::remove_file(p).unwrap(),
                    }
                }
                let new_dir = src.join("+added");
                std::fs::create_dir_all(&new_dir).unwrap();
                for (name, content) in &added {
                    std::fs::write(join(&new_dir, name), content.bytes()).unwrap();
                }
                let state2 = scan(&src);
                // What the backup must read: files that are new, empty, or whose identity
                // (size, mtime, ctime, inode) moved.
                let mut expect_read = 0u64;
                let mut expect_unchanged = 0u64;
                let mut expect_bytes = 0u64;
                for p in file_paths(&src) {
                    let now = stat_key(&p);
                    let same = stat_before.get(&p) == Some(&now);
                    if same && now.0 > 0 {
                        expect_unchanged += 1;
                    } else {
                        expect_read += 1;
                        expect_bytes += now.0;
                    }
                    if !touched.contains(&p) && stat_before.contains_key(&p) && now.0 > 0 {
                        // An untouched file must look unchanged (else the test proves nothing).
                        prop_assert!(same, "untouched {} changed identity", p.display());
                    }
                }
                let (id2, snap2) = backup(&repo, std::slice::from_ref(&src), Some(id1)).await;
                prop_assert_eq!(snap2.parent, Some(id1));
                let s = &snap2.summary;
                prop_assert_eq!(s.files_unchanged, expect_unchanged, "{:?}", s);
                prop_assert_eq!(s.files_read, expect_read, "{:?}", s);
                prop_assert_eq!(s.bytes_read, expect_bytes, "{:?}", s);
                // Both snapshots restore to what the folder held at their time.
                let t1 = tmp.path().join("r1");
                restore(&repo, &snap1, &t1, vec![]).await;
                assert_same(&state1, &scan_children(&t1), "first snapshot");
                let t2 = tmp.path().join("r2");
                restore(&repo, &snap2, &t2, vec![]).await;
                assert_same(&state2, &scan_children(&t2), "second snapshot");
                // Nothing changed since: the parent is found by itself and nothing non-empty
                // is read.
                let (_, snap3) = backup(&repo, std::slice::from_ref(&src), None).await;
                prop_assert_eq!(snap3.parent, Some(id2));
                prop_assert_eq!(snap3.summary.bytes_read, 0, "{:?}", snap3.summary);
                let nonempty = state2
                    .values()
                    .filter(|m| matches!(m, Meta::File { size, .. } if *size > 0))
                    .count() as u64;
                let (all_files, _) = count_files(&state2);
                prop_assert_eq!(snap3.summary.files_unchanged, nonempty);
                prop_assert_eq!(snap3.summary.files_read, all_files - nonempty);
                let t3 = tmp.path().join("r3");
                restore(&repo, &snap3, &t3, vec![]).await;
                assert_same(&state2, &scan_children(&t3), "third snapshot");
                Ok(())
            })
        },
    );
}

/// A file rewritten with content of the same size whose mtime is then put back is read
/// again: in place (ctime moved) and replaced by rename (new inode).
#[test]
fn same_size_and_mtime_but_new_ctime_or_inode_is_read_again() {
    let rt = common::runtime();
    rt.block_on(async {
        let tmp = common::tempdir();
        let src = tmp.path().join("src");
        std::fs::create_dir(&src).unwrap();
        let in_place = src.join("in-place.db");
        let renamed = src.join("renamed.db");
        let untouched = src.join("untouched.db");
        let old_mtime = filetime::FileTime::from_unix_time(1_700_000_000, 123_456_789);
        for (p, c) in [(&in_place, b'a'), (&renamed, b'b'), (&untouched, b'c')] {
            std::fs::write(p, vec![c; 700_000]).unwrap();
            filetime::set_file_mtime(p, old_mtime).unwrap();
        }
        let (_mem, repo) = memory_repo().await;
        let (id1, _) = backup(&repo, std::slice::from_ref(&src), None).await;
        std::thread::sleep(std::time::Duration::from_millis(30));
        let before_in_place = stat_key(&in_place);
        let before_renamed = stat_key(&renamed);
        // In place: same inode, same size, mtime put back; only ctime moves.
        {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .open(&in_place)
                .unwrap();
            f.write_all(&vec![b'A'; 700_000]).unwrap();
            f.sync_all().unwrap();
        }
        filetime::set_file_mtime(&in_place, old_mtime).unwrap();
        // By rename: a new inode, same size, same mtime.
        let tmpf = src.join(".renamed.tmp");
        std::fs::write(&tmpf, vec![b'B'; 700_000]).unwrap();
        filetime::set_file_mtime(&tmpf, old_mtime).unwrap();
        std::fs::rename(&tmpf, &renamed).unwrap();
        let after_in_place = stat_key(&in_place);
        let after_renamed = stat_key(&renamed);
        assert_eq!(
            (
                before_in_place.0,
                before_in_place.1,
                before_in_place.2,
                before_in_place.5
            ),
            (
                after_in_place.0,
                after_in_place.1,
                after_in_place.2,
                after_in_place.5
            ),
            "size, mtime and inode of the in-place file are as before"
        );
        assert_ne!(
            (before_in_place.3, before_in_place.4),
            (after_in_place.3, after_in_place.4),
            "ctime moved"
        );
        assert_eq!(
            (before_renamed.0, before_renamed.1, before_renamed.2),
            (after_renamed.0, after_renamed.1, after_renamed.2)
        );
        assert_ne!(before_renamed.5, after_renamed.5, "inode changed");
        let state = scan(&src);
        let (_, snap) = backup(&repo, std::slice::from_ref(&src), Some(id1)).await;
        assert_eq!(snap.summary.files_read, 2, "{:?}", snap.summary);
        assert_eq!(snap.summary.files_unchanged, 1, "{:?}", snap.summary);
        assert_eq!(snap.summary.bytes_read, 1_400_000);
        let t = tmp.path().join("restored");
        restore(&repo, &snap, &t, vec![]).await;
        assert_same(&state, &scan_children(&t), "restored");
        assert_eq!(
            std::fs::read(t.join("src/in-place.db")).unwrap(),
            vec![b'A'; 700_000]
        );
        assert_eq!(
            std::fs::read(t.join("src/renamed.db")).unwrap(),
            vec![b'B'; 700_000]
        );
    });
}

// ---------------------------------------------------------------------------------------
// Restoring part of a snapshot.

fn is_within(path: &[u8], inc: &[u8]) -> bool {
    path.starts_with(inc) && (path.len() == inc.len() || path.get(inc.len()) == Some(&b'/'))
}

/// A restore with `include` writes exactly the included paths, everything below them and
/// the folders leading to them (with their metadata), nothing else.
#[test]
fn include_restores_only_those_paths() {
    let rt = common::runtime();
    let strategy = (
        spec_strategy(),
        prop::collection::vec((any::<prop::sample::Index>(), any::<bool>()), 1..4),
    );
    run(
        "include_restores_only_those_paths",
        16,
        strategy,
        |(spec, picks)| {
            rt.block_on(async {
                let tmp = common::tempdir();
                let src = materialize(tmp.path(), &spec);
                let state = scan(&src);
                let (_mem, repo) = memory_repo().await;
                let (_, snap) = backup(&repo, std::slice::from_ref(&src), None).await;
                let candidates: Vec<&Vec<u8>> = state
                    .keys()
                    .filter(|k| k.as_slice() != b"src" && std::str::from_utf8(k).is_ok())
                    .collect();
                let include: Vec<Vec<u8>> = picks
                    .iter()
                    .map(|(i, _)| candidates[i.index(candidates.len())].clone())
                    .collect();
                let args: Vec<String> = include
                    .iter()
                    .zip(&picks)
                    .map(|(p, (_, slash))| {
                        let s = String::from_utf8(p.clone()).unwrap();
                        if *slash { format!("/{s}/") } else { s }
                    })
                    .collect();
                let expected: BTreeMap<Vec<u8>, Meta> = state
                    .iter()
                    .filter(|(k, _)| {
                        include
                            .iter()
                            .any(|inc| is_within(k, inc) || is_within(inc, k))
                    })
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                let target = tmp.path().join("partial");
                let stats = restore(&repo, &snap, &target, args.clone()).await;
                let (files, _) = count_files(&expected);
                prop_assert_eq!(stats.files, files);
                assert_same(
                    &expected,
                    &scan_children(&target),
                    &format!("restore with include {args:?}"),
                );
                Ok(())
            })
        },
    );
}

// ---------------------------------------------------------------------------------------
// A huge sparse file.

/// A 200 MiB sparse file with a few bytes written in it: stored in little space (the zero
/// runs deduplicate and compress), restored byte for byte.
#[test]
fn huge_sparse_file_round_trips_in_little_space() {
    const SIZE: u64 = 200 * 1024 * 1024;
    let rt = common::runtime();
    rt.block_on(async {
        let tmp = common::tempdir();
        let src = tmp.path().join("src");
        std::fs::create_dir(&src).unwrap();
        let huge = src.join("huge.img");
        {
            use std::io::{Seek, SeekFrom};
            let mut f = std::fs::File::create(&huge).unwrap();
            f.set_len(SIZE).unwrap();
            for (off, data) in [
                (0u64, &b"head of the image"[..]),
                (SIZE / 2 + 12_345, b"in the middle"),
                (SIZE - 4, b"tail"),
            ] {
                f.seek(SeekFrom::Start(off)).unwrap();
                f.write_all(data).unwrap();
            }
        }
        std::fs::write(src.join("small"), b"x").unwrap();
        let allocated = std::fs::metadata(&huge).unwrap().blocks() * 512;
        eprintln!("sparse file: {SIZE} bytes, {allocated} allocated");
        let state = scan(&src);
        let (_mem, repo) = memory_repo().await;
        let started = std::time::Instant::now();
        let (_, snap) = backup(&repo, std::slice::from_ref(&src), None).await;
        eprintln!(
            "backup of the sparse file: {:.1}s, {} bytes stored",
            started.elapsed().as_secs_f64(),
            snap.summary.bytes_stored
        );
        assert_eq!(snap.summary.total_bytes, SIZE + 1);
        assert!(
            snap.summary.bytes_stored < 2 * 1024 * 1024,
            "zero runs must deduplicate and compress: {} bytes stored",
            snap.summary.bytes_stored
        );
        let target = tmp.path().join("restored");
        restore(&repo, &snap, &target, vec![]).await;
        assert_same(&state, &scan_children(&target), "restored sparse file");
        let mut f = std::fs::File::open(target.join("src/huge.img")).unwrap();
        let mut head = [0u8; 17];
        f.read_exact(&mut head).unwrap();
        assert_eq!(&head, b"head of the image");
        // By default the zeros are written: the restored file takes all of its room.
        let full = std::fs::metadata(target.join("src/huge.img"))
            .unwrap()
            .blocks()
            * 512;
        assert!(full >= SIZE, "{full} bytes allocated for a plain restore");
        // With `sparse`, they are holes again, and the file reads back the same.
        let sparse_target = tmp.path().join("restored-sparse");
        let stats = restorer::restore_to_dir(
            &repo,
            &snap,
            &sparse_target,
            &RestoreOptions {
                sparse: true,
                ..RestoreOptions::default()
            },
        )
        .await
        .unwrap();
        assert!(stats.failures.is_empty(), "{:?}", stats.failures);
        assert_eq!(stats.bytes, SIZE + 1);
        assert_same(&state, &scan_children(&sparse_target), "sparse restore");
        let sparse = std::fs::metadata(sparse_target.join("src/huge.img"))
            .unwrap()
            .blocks()
            * 512;
        assert!(
            sparse < 1 << 20,
            "{sparse} bytes allocated for a sparse restore"
        );
        let report = checker::check(&repo, ReadData::All).await.unwrap();
        assert!(report.is_ok(), "{:?}", report.errors);
    });
}

/// A file whose content repeats one blob (64 MiB of zeros: eight 8 MiB blobs, one id) reads
/// and decodes that blob once on restore, not once per place it takes, and restores the same;
/// so does the same content as a stream, restored or read through a `BlobReader`.
#[test]
fn a_repeated_blob_is_read_once_per_run_of_repeats() {
    use strongroom_storage::faulty::{FaultyStorage, Op};
    let rt = common::runtime();
    rt.block_on(async {
        let tmp = common::tempdir();
        let src = tmp.path().join("src");
        std::fs::create_dir(&src).unwrap();
        let mut rng = XorShift::new(common::seed("a_repeated_blob_is_read_once"));
        let mut data = rng.bytes(1 << 20);
        data.resize(data.len() + (64 << 20), 0);
        data.extend(rng.bytes(1 << 20));
        std::fs::write(src.join("image"), &data).unwrap();
        let state = scan(&src);
        let faulty = Arc::new(FaultyStorage::new(
            strongroom_storage::memory::MemoryStorage::new(),
            1,
        ));
        let repo = common::init_in(faulty.clone()).await;
        let (_, snap) = backup(&repo, std::slice::from_ref(&src), None).await;
        let tree = repo.load_tree(&snap.tree).await.unwrap();
        let dir = repo
            .load_tree(&tree.nodes[0].subtree.unwrap())
            .await
            .unwrap();
        let content = repo.file_content(&dir.nodes[0]).await.unwrap();
        let distinct: std::collections::BTreeSet<_> = content.iter().collect();
        assert!(
            content.len() >= distinct.len() + 6,
            "the zeros should be one blob many times: {} blobs, {} distinct",
            content.len(),
            distinct.len()
        );
        let before = faulty.calls(Op::ReadRange);
        let target = tmp.path().join("restored");
        restore(&repo, &snap, &target, vec![]).await;
        let reads = faulty.calls(Op::ReadRange) - before;
        assert_same(&state, &scan_children(&target), "restored image");
        // Each run of repeats is one read (plus the trees'): without that, a read per place.
        assert!(
            reads < content.len() as u64,
            "{reads} reads for {} distinct blobs in {} places",
            distinct.len(),
            content.len()
        );

        // The same bytes as a stream, restored to a writer.
        let guard = lock::lock(&repo, false, "test").await.unwrap();
        let (_, stream) = archiver::backup_stream(
            &repo,
            &guard,
            "image",
            Box::new(std::io::Cursor::new(data.clone())),
            BackupOptions::default(),
        )
        .await
        .unwrap();
        guard.release().await.unwrap();
        let before = faulty.calls(Op::ReadRange);
        let mut out = Vec::new();
        restorer::restore_stream(&repo, &stream, &mut out)
            .await
            .unwrap();
        let reads = faulty.calls(Op::ReadRange) - before;
        assert!(out == data, "the stream restores differently");
        let stream_tree = repo.load_tree(&stream.tree).await.unwrap();
        let places = repo
            .file_content(&stream_tree.nodes[0])
            .await
            .unwrap()
            .len();
        // A stream's chunks are smaller: hundreds of places, read once per run of repeats.
        assert!(
            reads * 10 < places as u64,
            "stream: {reads} reads for {places} places"
        );
        // And through a blocking reader (export, database restores).
        let ids = repo
            .file_content(&stream_tree.nodes[0])
            .await
            .unwrap()
            .to_vec();
        let before = faulty.calls(Op::ReadRange);
        let read = common::read_blocking(&repo, ids).await;
        let reads = faulty.calls(Op::ReadRange) - before;
        assert!(read == data, "the reader reads differently");
        assert!(
            reads * 10 < places as u64,
            "reader: {reads} reads for {places} places"
        );
    });
}
