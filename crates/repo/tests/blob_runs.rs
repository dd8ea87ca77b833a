//! Restore reads neighbouring blobs of a pack as runs: a dump's small blobs are read a few
//! hundred at a time, the runs cover the content in order, and a run never spans packs,
//! holes or more than `RUN_BYTES` of plaintext.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

mod common;

use std::io::{Cursor, Read};
use std::sync::Arc;

use common::{XorShift, memory_repo};
use strongroom_repo::archiver::{self, BackupOptions};
use strongroom_repo::chunker::ChunkerParams;
use strongroom_repo::repository::{BlobRun, RUN_BLOB_MAX, RUN_BYTES};
use strongroom_repo::restorer;
use strongroom_repo::{Id, RepoError, Repository, Snapshot, lock};

/// Text lines with random words: compressible, and cut into ~16 KiB chunks.
fn dump_like(bytes: usize, seed: u64) -> Vec<u8> {
    let mut r = XorShift::new(seed);
    let mut out = Vec::with_capacity(bytes + 100);
    while out.len() < bytes {
        let n = r.below(12) + 2;
        for _ in 0..n {
            let w = r.below(5000);
            out.extend_from_slice(format!("w{w} ").as_bytes());
        }
        out.push(b'\n');
    }
    out
}

async fn backup_stream(repo: &Arc<Repository>, data: Vec<u8>) -> Snapshot {
    backup_stream_with(repo, data, BackupOptions::default()).await
}

async fn backup_stream_with(
    repo: &Arc<Repository>,
    data: Vec<u8>,
    opts: BackupOptions,
) -> Snapshot {
    let guard = lock::lock(repo, false, "test").await.unwrap();
    let input: Box<dyn Read + Send> = Box::new(Cursor::new(data));
    let (_, snap) = archiver::backup_stream(repo, &guard, "dump.sql", input, opts)
        .await
        .unwrap();
    guard.release().await.unwrap();
    snap
}

/// The runs read one after another, concatenated.
async fn read_runs(repo: &Repository, runs: Vec<BlobRun>) -> Vec<u8> {
    let mut back = Vec::new();
    for run in runs {
        back.extend_from_slice(&repo.read_run(run).await.unwrap());
    }
    back
}

async fn assert_restores(repo: &Repository, snap: &Snapshot, data: &[u8]) {
    let mut out = Vec::new();
    restorer::restore_stream(repo, snap, &mut out)
        .await
        .unwrap();
    assert!(out == data, "restore differs from the stream");
}

async fn content_of(repo: &Repository, snap: &Snapshot) -> Vec<Id> {
    let node = restorer::stream_node(repo, snap).await.unwrap();
    repo.file_content(&node).await.unwrap()
}

#[test]
fn a_dumps_small_blobs_are_read_in_few_runs_that_cover_it_in_order() {
    let rt = common::runtime();
    rt.block_on(async {
        let (_mem, repo) = memory_repo().await;
        let data = dump_like(9 << 20, 7);
        let snap = backup_stream(&repo, data.clone()).await;
        let ids = content_of(&repo, &snap).await;
        assert!(ids.len() > 300, "{} blobs", ids.len());

        let runs = repo.plan_runs(&ids).unwrap();
        // 9 MiB in runs of at most 2 MiB: 5 runs, and a few more where a pack ends.
        assert!(runs.len() >= 5 && runs.len() <= 12, "{} runs", runs.len());
        let total: u64 = runs.iter().map(|r| r.raw_len()).sum();
        assert_eq!(total, data.len() as u64);
        assert!(runs.iter().all(|r| r.raw_len() <= RUN_BYTES));

        let back = read_runs(&repo, runs).await;
        assert!(back == data, "runs read back differ from the stream");
        assert_restores(&repo, &snap, &data).await;
    });
}

#[test]
fn large_blobs_are_runs_of_their_own() {
    let rt = common::runtime();
    rt.block_on(async {
        let (_mem, repo) = memory_repo().await;
        // Media-sized chunks (1 MiB on average): each is read and decoded alone. Chunks are
        // at most 8 MiB, so a little over 16 MiB are at least three whatever the
        // repository's random cut points (6 MiB were cut in two now and then).
        let data = XorShift::new(5).bytes((16 << 20) + 4096);
        let opts = BackupOptions {
            stream_chunker: Some(ChunkerParams::FILES),
            ..BackupOptions::default()
        };
        let snap = backup_stream_with(&repo, data.clone(), opts).await;
        let ids = content_of(&repo, &snap).await;
        assert!(ids.len() >= 3, "{} blobs", ids.len());
        let runs = repo.plan_runs(&ids).unwrap();
        assert_eq!(runs.len(), ids.len(), "one run per large blob");
        // Every chunk but the stream's tail is at least the chunker's minimum (512 KiB); the
        // tail may be any size (the cut points follow the repository's random key), and a
        // small tail after a large blob is still a run of its own.
        let (tail, body) = runs.split_last().unwrap();
        assert!(body.iter().all(|r| r.raw_len() > RUN_BLOB_MAX));
        assert!(tail.raw_len() > 0);
        assert_restores(&repo, &snap, &data).await;
    });
}

/// Two runs with the same start and end but not the same blobs (the first skips the middle
/// blob as a gap, the second reads it) are not a repeat: every reader writes both in full.
#[test]
fn a_run_over_a_gap_is_not_a_repeat_of_one_through_it() {
    let rt = common::runtime();
    rt.block_on(async {
        let (_mem, repo) = memory_repo().await;
        let data = dump_like(1 << 20, 12);
        let snap = backup_stream(&repo, data.clone()).await;
        let ids = content_of(&repo, &snap).await;
        let (a, b, c) = (ids[0], ids[1], ids[2]);
        let list = vec![a, c, a, b, c];
        let runs = repo.plan_runs(&list).unwrap();
        assert_eq!(runs.len(), 2, "[a, c] over the gap of b, then [a, b, c]");
        assert!(!runs[1].same_bytes_as(&runs[0]));
        assert!(runs[0].same_bytes_as(&runs[0].clone()));
        let blob = |id: Id| {
            let repo = Arc::clone(&repo);
            async move { repo.read_blob(&id).await.unwrap() }
        };
        let (ba, bb, bc) = (blob(a).await, blob(b).await, blob(c).await);
        let expected = [ba.as_slice(), &bc, &ba, &bb, &bc].concat();
        assert!(read_runs(&repo, runs).await == expected);

        let read = common::read_blocking(&repo, list).await;
        assert!(
            read == expected,
            "the blocking reader took a run for a repeat"
        );
    });
}

#[test]
fn repeated_and_out_of_order_blobs_start_new_runs() {
    let rt = common::runtime();
    rt.block_on(async {
        let (_mem, repo) = memory_repo().await;
        let data = dump_like(3 << 20, 11);
        let snap = backup_stream(&repo, data.clone()).await;
        let ids = content_of(&repo, &snap).await;
        let (first, last) = (ids[0], ids[ids.len() - 1]);

        // The last blob, then the first twice, then all in order: every jump backwards in
        // the pack (and the repeat) begins a run of its own.
        let mut shuffled = vec![last, first, first];
        shuffled.extend_from_slice(&ids);
        let runs = repo.plan_runs(&shuffled).unwrap();
        let (_, n) = repo.plan_run(&shuffled).unwrap();
        assert_eq!(n, 1, "a jump backwards ends the run");
        let (_, n) = repo.plan_run(&shuffled[1..]).unwrap();
        assert_eq!(n, 1, "a repeated blob is not its own neighbour");
        let back = read_runs(&repo, runs).await;
        let head = repo.read_blob(&last).await.unwrap();
        let one = repo.read_blob(&first).await.unwrap();
        let expected = [head.as_slice(), &one, &one, &data].concat();
        assert!(back == expected, "runs of the shuffled list differ");

        // The blocking reader (database restore, export) reads the same bytes.
        let read = common::read_blocking(&repo, shuffled).await;
        assert!(read == expected, "the blocking reader differs");
    });
}

#[test]
fn a_blob_missing_from_the_index_is_named() {
    let rt = common::runtime();
    rt.block_on(async {
        let (_mem, repo) = memory_repo().await;
        let snap = backup_stream(&repo, dump_like(100_000, 3)).await;
        let mut ids = content_of(&repo, &snap).await;
        let missing = Id::random();
        ids.insert(1, missing);
        let (_, n) = repo.plan_run(&ids).unwrap();
        assert_eq!(n, 1, "the run stops before the unknown blob");
        match repo.plan_runs(&ids) {
            Err(RepoError::BlobMissing(s)) => assert_eq!(s, missing.short()),
            other => panic!("expected the missing blob to be named, got {other:?}"),
        }
    });
}
