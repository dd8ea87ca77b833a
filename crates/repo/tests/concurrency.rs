//! Concurrency: backups running side by side, then forget and prune, repeated, lose nothing;
//! prune refuses to run while another process holds a lock, and a backup refuses to run
//! while prune holds one.
//!
//! Every "process" is a separately opened [`Repository`] on the same folder, with its own
//! storage handle, index and locks, as separate processes would have. The multi-process
//! check with the real binary (a `strongroom backup --stdin` held open while `strongroom
//! prune` is refused) lives in `crates/strongroom/tests/cli.rs`, where Cargo builds the
//! binary for the test.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

mod common;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use common::{Meta, PASSWORD, XorShift, assert_same, scan, scan_children};
use strongroom_repo::archiver::{self, BackupOptions};
use strongroom_repo::checker::{self, ReadData};
use strongroom_repo::crypto::{KdfParams, ObjectType};
use strongroom_repo::lock::{self, LockInfo};
use strongroom_repo::restorer::{self, RestoreOptions};
use strongroom_repo::{Id, InitOptions, RepoError, Repository, prune};
use strongroom_storage::local::LocalStorage;
use strongroom_storage::{Kind, Storage};

/// Opens the repository in `dir` as a new process would: own storage handle, own index.
async fn open_process(dir: &Path) -> Arc<Repository> {
    let storage: Arc<dyn Storage> = Arc::new(LocalStorage::new(dir.to_path_buf()));
    let repo = Repository::open(storage, PASSWORD).await.unwrap();
    let warnings = repo.load_index().await.unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    Arc::new(repo)
}

async fn init(dir: &Path) {
    let storage: Arc<dyn Storage> = Arc::new(LocalStorage::new(dir.to_path_buf()));
    Repository::init(
        storage,
        PASSWORD,
        InitOptions {
            kdf: KdfParams::MINIMUM,
            // Small packs: many of them, so prune has packs to keep, repack and delete.
            pack_size: 256 * 1024,
        },
    )
    .await
    .unwrap();
}

/// What a snapshot must restore to.
#[derive(Debug, Clone)]
enum Expected {
    Folders(BTreeMap<Vec<u8>, Meta>),
    Stream(Vec<u8>),
}

/// A pool of contents: files draw from it, so the same content recurs across folders,
/// snapshots and rounds (deduplicated, then orphaned by forget, then needed again).
struct Pool(Vec<Vec<u8>>);

impl Pool {
    fn new(seed: u64) -> Pool {
        let mut r = XorShift::new(seed);
        Pool(
            (0..30)
                .map(|i| {
                    let len = match i % 4 {
                        0 => r.below(2_000) as usize,
                        1 => 20_000 + r.below(100_000) as usize,
                        2 => 200_000 + r.below(600_000) as usize,
                        _ => 0,
                    };
                    r.bytes(len)
                })
                .collect(),
        )
    }

    fn pick(&self, r: &mut XorShift) -> &[u8] {
        &self.0[r.below(self.0.len() as u64) as usize]
    }
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                out.push(e.path());
            }
        }
    }
    out.sort();
    out
}

/// Adds, rewrites and deletes files under `dir`.
fn mutate(dir: &Path, pool: &Pool, r: &mut XorShift, round: usize) {
    let existing = files_under(dir);
    for p in &existing {
        match r.below(6) {
            0 => std::fs::remove_file(p).unwrap(),
            1 | 2 => std::fs::write(p, pool.pick(r)).unwrap(),
            _ => {}
        }
    }
    let n = 2 + r.below(5);
    for i in 0..n {
        let sub = match r.below(3) {
            0 => dir.to_path_buf(),
            1 => dir.join(format!("sub-{}", r.below(3))),
            _ => dir.join(format!("sub-{}/deeper", r.below(2))),
        };
        std::fs::create_dir_all(&sub).unwrap();
        std::fs::write(sub.join(format!("r{round}-f{i}")), pool.pick(r)).unwrap();
    }
}

/// One backup job: what a process backs up.
#[derive(Debug, Clone)]
enum Job {
    Paths(Vec<PathBuf>),
    Stream(Vec<u8>),
}

async fn run_job(repo: Arc<Repository>, job: Job) -> Result<Id, RepoError> {
    let guard = lock::lock(&repo, false, "backup").await?;
    let res = match job {
        Job::Paths(paths) => {
            archiver::backup_paths(&repo, &guard, &paths, BackupOptions::default()).await
        }
        Job::Stream(data) => {
            archiver::backup_stream(
                &repo,
                &guard,
                "app.dump",
                Box::new(std::io::Cursor::new(data)),
                BackupOptions::default(),
            )
            .await
        }
    };
    guard.release().await?;
    res.map(|(id, _)| id)
}

/// Checks every byte of the repository, that exactly the `expected` snapshots exist, and
/// that each restores to what was backed up.
async fn verify_all(dir: &Path, expected: &HashMap<Id, Expected>, scratch: &Path, what: &str) {
    let repo = open_process(dir).await;
    let report = checker::check(&repo, ReadData::All).await.unwrap();
    assert!(report.is_ok(), "{what}: verify failed: {:?}", report.errors);
    let (snaps, warnings) = repo.list_snapshots().await.unwrap();
    assert!(warnings.is_empty(), "{what}: {warnings:?}");
    let mut listed: Vec<Id> = snaps.iter().map(|(id, _)| *id).collect();
    let mut wanted: Vec<Id> = expected.keys().copied().collect();
    listed.sort();
    wanted.sort();
    assert_eq!(
        listed, wanted,
        "{what}: the snapshots present are not those expected"
    );
    for (id, snap) in &snaps {
        match &expected[id] {
            Expected::Stream(bytes) => {
                let mut out = Vec::new();
                restorer::restore_stream(&repo, snap, &mut out)
                    .await
                    .unwrap_or_else(|e| panic!("{what}: stream snapshot {}: {e}", id.short()));
                assert!(
                    &out == bytes,
                    "{what}: stream snapshot {} differs",
                    id.short()
                );
            }
            Expected::Folders(state) => {
                let target = scratch.join(format!("restore-{}", id.to_hex()));
                restorer::restore_to_dir(&repo, snap, &target, &RestoreOptions::default())
                    .await
                    .unwrap_or_else(|e| panic!("{what}: snapshot {}: {e}", id.short()));
                assert_same(
                    state,
                    &scan_children(&target),
                    &format!("{what}: snapshot {}", id.short()),
                );
                std::fs::remove_dir_all(&target).unwrap();
            }
        }
    }
}

/// Rounds of: processes start (each loads the index), a forget + prune slips in before
/// they take their locks, then the backups run side by side (different and overlapping
/// folders, and a stream), while a prune attempt is refused; after each round every byte
/// verifies and every remaining snapshot restores to what its source held at its time.
#[test]
fn concurrent_backups_then_prune_lose_nothing() {
    const ROUNDS: usize = 5;
    let seed = common::seed("concurrent_backups_then_prune_lose_nothing");
    let mut r = XorShift::new(seed);
    let pool = Pool::new(r.next_u64());
    let rt = common::runtime();
    let tmp = common::tempdir();
    let repo_dir = tmp.path().join("repo");
    let src = tmp.path().join("src");
    let alpha = src.join("alpha");
    let beta = src.join("beta");
    let shared = alpha.join("shared");
    for d in [&alpha, &beta, &shared] {
        std::fs::create_dir_all(d).unwrap();
    }
    let started = std::time::Instant::now();
    rt.block_on(async {
        init(&repo_dir).await;
        let pruner = open_process(&repo_dir).await;
        let mut expected: HashMap<Id, Expected> = HashMap::new();
        let mut forgotten = 0usize;
        for round in 0..ROUNDS {
            mutate(&alpha, &pool, &mut r, round);
            mutate(&beta, &pool, &mut r, round);
            mutate(&shared, &pool, &mut r, round);
            let mut stream = Vec::new();
            for _ in 0..1 + r.below(4) {
                stream.extend_from_slice(pool.pick(&mut r));
            }
            let jobs = vec![
                (
                    Job::Paths(vec![alpha.clone()]),
                    Expected::Folders(scan(&alpha)),
                ),
                (
                    Job::Paths(vec![beta.clone()]),
                    Expected::Folders(scan(&beta)),
                ),
                (
                    Job::Paths(vec![shared.clone(), beta.clone()]),
                    Expected::Folders({
                        let mut m = scan(&shared);
                        m.extend(scan(&beta));
                        m
                    }),
                ),
                (Job::Stream(stream.clone()), Expected::Stream(stream)),
            ];
            // (a) The processes start: each opens the repository and loads the index.
            let mut procs = Vec::new();
            for _ in &jobs {
                procs.push(open_process(&repo_dir).await);
            }
            // (b) Before they lock, a forget + prune runs in another process.
            if !expected.is_empty() {
                let guard = lock::lock(&pruner, true, "prune").await.unwrap();
                let mut ids: Vec<Id> = expected.keys().copied().collect();
                ids.sort();
                for id in ids {
                    if r.below(100) < 60 {
                        pruner.delete_snapshot(&id).await.unwrap();
                        expected.remove(&id);
                        forgotten += 1;
                    }
                }
                let plan = prune::plan(&pruner).await.unwrap();
                eprintln!("round {round}: prune {}", plan.describe());
                prune::execute(&pruner, &guard, plan).await.unwrap();
                guard.release().await.unwrap();
                verify_all(
                    &repo_dir,
                    &expected,
                    tmp.path(),
                    &format!("round {round} after prune"),
                )
                .await;
            }
            // (c) The backups run side by side; another process holds a shared lock
            // throughout, and a prune attempt meanwhile is refused.
            let watcher = open_process(&repo_dir).await;
            let held = lock::lock(&watcher, false, "backup").await.unwrap();
            let mut tasks = tokio::task::JoinSet::new();
            for (i, ((job, exp), repo)) in jobs.into_iter().zip(procs).enumerate() {
                tasks.spawn(async move { (i, exp, run_job(repo, job).await) });
            }
            match lock::lock(&pruner, true, "prune").await {
                Err(RepoError::Locked(who)) => assert!(who.contains("backup"), "{who}"),
                other => panic!("round {round}: prune was not refused: {other:?}"),
            }
            while let Some(res) = tasks.join_next().await {
                let (i, exp, res) = res.unwrap();
                let id = res.unwrap_or_else(|e| panic!("round {round}: backup {i}: {e}"));
                expected.insert(id, exp);
            }
            held.release().await.unwrap();
            // (d) After the round, nothing is lost.
            verify_all(
                &repo_dir,
                &expected,
                tmp.path(),
                &format!("round {round} after backups"),
            )
            .await;
        }
        assert!(forgotten > 0, "the test forgot nothing; seed {seed}");
        eprintln!(
            "{ROUNDS} rounds, {} snapshots kept, {forgotten} forgotten, {:.1}s",
            expected.len(),
            started.elapsed().as_secs_f64()
        );
    });
}

/// A process that loaded the index before a prune, then locks and backs up content that
/// only forgotten snapshots had, must store that content again: a snapshot must never
/// refer to blobs that prune removed.
#[test]
fn backup_after_prune_with_index_loaded_before_stays_restorable() {
    let rt = common::runtime();
    let tmp = common::tempdir();
    let repo_dir = tmp.path().join("repo");
    let src = tmp.path().join("src");
    std::fs::create_dir(&src).unwrap();
    let content = XorShift::new(7).bytes(900_000);
    std::fs::write(src.join("data.bin"), &content).unwrap();
    rt.block_on(async {
        init(&repo_dir).await;
        let first = open_process(&repo_dir).await;
        let id1 = run_job(Arc::clone(&first), Job::Paths(vec![src.clone()]))
            .await
            .unwrap();
        // A backup process starts and loads the index (which lists data.bin's blobs)...
        let late = open_process(&repo_dir).await;
        // ...then the only snapshot is forgotten and pruned by another process...
        let pruner = open_process(&repo_dir).await;
        let guard = lock::lock(&pruner, true, "prune").await.unwrap();
        pruner.delete_snapshot(&id1).await.unwrap();
        let plan = prune::plan(&pruner).await.unwrap();
        assert!(!plan.delete.is_empty(), "{}", plan.describe());
        prune::execute(&pruner, &guard, plan).await.unwrap();
        guard.release().await.unwrap();
        // ...and only then does the first process lock and back up the same content.
        let state = scan(&src);
        let id2 = run_job(Arc::clone(&late), Job::Paths(vec![src.clone()]))
            .await
            .unwrap();
        let mut expected = HashMap::new();
        expected.insert(id2, Expected::Folders(state));
        verify_all(&repo_dir, &expected, tmp.path(), "backup after prune").await;
        // The same for a stream.
        let late = open_process(&repo_dir).await;
        let pruner = open_process(&repo_dir).await;
        let guard = lock::lock(&pruner, true, "prune").await.unwrap();
        pruner.delete_snapshot(&id2).await.unwrap();
        let plan = prune::plan(&pruner).await.unwrap();
        prune::execute(&pruner, &guard, plan).await.unwrap();
        guard.release().await.unwrap();
        let id3 = run_job(late, Job::Stream(content.clone())).await.unwrap();
        let mut expected = HashMap::new();
        expected.insert(id3, Expected::Stream(content));
        verify_all(&repo_dir, &expected, tmp.path(), "stream after prune").await;
    });
}

/// Prune (an exclusive lock) is refused while another process holds a shared lock, with a
/// message naming the holder; a backup (shared) is refused while another process holds an
/// exclusive lock; shared locks coexist; after release the other side proceeds.
#[test]
fn locks_exclude_prune_and_backup() {
    let rt = common::runtime();
    let tmp = common::tempdir();
    let repo_dir = tmp.path().join("repo");
    let src = tmp.path().join("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("f"), b"some data").unwrap();
    rt.block_on(async {
        init(&repo_dir).await;
        let backup_proc = open_process(&repo_dir).await;
        let other_backup = open_process(&repo_dir).await;
        let prune_proc = open_process(&repo_dir).await;

        let shared = lock::lock(&backup_proc, false, "backup").await.unwrap();
        // Another backup may run at the same time.
        let shared2 = lock::lock(&other_backup, false, "backup").await.unwrap();
        shared2.release().await.unwrap();
        // Prune may not.
        let err = lock::lock(&prune_proc, true, "prune").await.unwrap_err();
        assert!(matches!(err, RepoError::Locked(_)), "{err}");
        let msg = err.to_string();
        assert!(
            msg.contains("locked") && msg.contains("backup") && msg.contains("unlock"),
            "{msg}"
        );
        // The refused attempt left no lock behind: only the holder's.
        let locks = backup_proc.storage().list(Kind::Lock).await.unwrap();
        assert_eq!(locks.len(), 1, "{locks:?}");
        // The backup holding the lock still completes.
        archiver::backup_paths(
            &backup_proc,
            &shared,
            std::slice::from_ref(&src),
            BackupOptions::default(),
        )
        .await
        .unwrap();
        shared.release().await.unwrap();

        // Now prune holds the lock: backups are refused.
        let exclusive = lock::lock(&prune_proc, true, "prune").await.unwrap();
        for p in [&backup_proc, &other_backup] {
            let err = lock::lock(p, false, "backup").await.unwrap_err();
            assert!(matches!(err, RepoError::Locked(_)), "{err}");
            assert!(err.to_string().contains("exclusively"), "{err}");
            let err = lock::lock(p, true, "prune").await.unwrap_err();
            assert!(matches!(err, RepoError::Locked(_)), "{err}");
        }
        let plan = prune::plan(&prune_proc).await.unwrap();
        prune::execute(&prune_proc, &exclusive, plan).await.unwrap();
        exclusive.release().await.unwrap();
        assert!(
            backup_proc
                .storage()
                .list(Kind::Lock)
                .await
                .unwrap()
                .is_empty()
        );
        // Released: a backup runs again.
        let g = lock::lock(&backup_proc, false, "backup").await.unwrap();
        g.release().await.unwrap();
    });
}

/// The lock of a process that is gone (same host, pid no longer running) does not block
/// prune, and is removed by it; a lock file that cannot be read blocks it.
#[test]
fn stale_lock_of_dead_process_is_ignored_unreadable_lock_blocks() {
    let rt = common::runtime();
    let tmp = common::tempdir();
    let repo_dir = tmp.path().join("repo");
    rt.block_on(async {
        init(&repo_dir).await;
        let repo = open_process(&repo_dir).await;
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead_pid = child.id();
        child.wait().unwrap();
        let info = LockInfo {
            exclusive: false,
            host: strongroom_repo::repository::hostname(),
            pid: dead_pid,
            user: "someone".into(),
            time: strongroom_repo::repository::now_rfc3339(),
            purpose: "backup".into(),
        };
        let id = Id::random();
        let sealed = repo
            .key()
            .seal(ObjectType::Lock, &id, &serde_json::to_vec(&info).unwrap());
        repo.storage()
            .write(Kind::Lock, &id.to_hex(), sealed.into())
            .await
            .unwrap();
        let g = lock::lock(&repo, true, "prune").await.unwrap();
        let left: Vec<String> = repo
            .storage()
            .list(Kind::Lock)
            .await
            .unwrap()
            .into_iter()
            .map(|o| o.name)
            .collect();
        assert!(!left.contains(&id.to_hex()), "stale lock not removed");
        g.release().await.unwrap();

        let garbage = Id::random();
        repo.storage()
            .write(Kind::Lock, &garbage.to_hex(), b"not a lock".to_vec().into())
            .await
            .unwrap();
        let err = lock::lock(&repo, true, "prune").await.unwrap_err();
        assert!(matches!(err, RepoError::Locked(_)), "{err}");
        assert!(err.to_string().contains(&garbage.to_hex()), "{err}");
    });
}

/// A backup reloads the index under its lock, but reads index files again only when the
/// repository's set of them changed or blobs were added in memory since the last load: an
/// index file damaged after an unchanged load is not read (its old contents are still what
/// the memory holds), while a new index file from another process, or a pack this handle
/// added, makes the next reload read them all.
#[test]
fn an_unchanged_index_is_not_read_again() {
    let rt = common::runtime();
    rt.block_on(async {
        let (mem, repo) = common::memory_repo().await;
        let storage = Arc::clone(repo.storage());
        let g = lock::lock(&repo, false, "b").await.unwrap();
        let data = XorShift::new(3).bytes(300_000);
        strongroom_repo::archiver::backup_stream(
            &repo,
            &g,
            "a",
            Box::new(std::io::Cursor::new(data)),
            strongroom_repo::archiver::BackupOptions::default(),
        )
        .await
        .unwrap();
        g.release().await.unwrap();
        let h = common::handle(&storage, None).await;
        let blobs = h.index_read().blob_count();
        assert!(blobs > 0);
        // Damage the one index file behind the handle's back.
        let names = storage.list_names(Kind::Index).await.unwrap();
        assert_eq!(names.len(), 1);
        let good = mem
            .put_raw(Kind::Index, &names[0], Bytes::from_static(b"damaged"))
            .unwrap();
        assert!(h.reload_index_if_changed().await.unwrap().is_empty());
        assert_eq!(h.index_read().blob_count(), blobs);
        // load_index always reads: it sees the damage.
        let warnings = h.load_index().await.unwrap();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert_eq!(h.index_read().blob_count(), 0);
        // The same warning comes back from an unchanged reload.
        assert_eq!(h.reload_index_if_changed().await.unwrap(), warnings);
        mem.put_raw(Kind::Index, &names[0], good);
        // A new index file (another process's backup) is read, with every other one.
        let g = lock::lock(&repo, false, "b").await.unwrap();
        strongroom_repo::archiver::backup_stream(
            &repo,
            &g,
            "b",
            Box::new(std::io::Cursor::new(XorShift::new(4).bytes(300_000))),
            strongroom_repo::archiver::BackupOptions::default(),
        )
        .await
        .unwrap();
        g.release().await.unwrap();
        assert!(h.reload_index_if_changed().await.unwrap().is_empty());
        let both = h.index_read().blob_count();
        assert!(both > blobs, "{both} > {blobs}");
        // A pack added in memory (no index file written for it): the next reload reads the
        // files again, and sees the damage.
        let mut p = h.packer();
        p.add_plain(
            strongroom_repo::pack::BlobType::Data,
            b"only in memory".to_vec(),
        )
        .await
        .unwrap();
        assert_eq!(p.finish_packs().await.unwrap().len(), 1);
        assert_eq!(storage.list_names(Kind::Index).await.unwrap().len(), 2);
        mem.put_raw(Kind::Index, &names[0], Bytes::from_static(b"damaged"));
        assert_eq!(h.reload_index_if_changed().await.unwrap().len(), 1);
    });
}
