//! Finding a snapshot by id prefix reads only the file it names: other snapshots, damaged
//! or not, do not matter, and a damaged one that is asked for is an error that says so.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

mod common;

use std::io::{Cursor, Read};
use std::sync::Arc;

use bytes::Bytes;
use common::memory_repo;
use strongroom_repo::archiver::{self, BackupOptions};
use strongroom_repo::{Id, RepoError, Repository, lock};
use strongroom_storage::Kind;

async fn backup(repo: &Arc<Repository>, data: &[u8]) -> Id {
    let guard = lock::lock(repo, false, "test").await.unwrap();
    let input: Box<dyn Read + Send> = Box::new(Cursor::new(data.to_vec()));
    let (id, _) = archiver::backup_stream(repo, &guard, "s", input, BackupOptions::default())
        .await
        .unwrap();
    guard.release().await.unwrap();
    id
}

#[test]
fn a_prefix_reads_the_snapshot_it_names_and_no_other() {
    let rt = common::runtime();
    rt.block_on(async {
        let (mem, repo) = memory_repo().await;
        let good = backup(&repo, b"first").await;
        let damaged = backup(&repo, b"second").await;
        let third = backup(&repo, b"third").await;
        mem.put_raw(
            Kind::Snapshot,
            &damaged.to_hex(),
            Bytes::from_static(b"not sealed"),
        );

        // The two intact ones are found by a prefix, the damaged one is named.
        let (id, snap) = repo.find_snapshot(&good.short()).await.unwrap();
        assert_eq!(id, good);
        assert_eq!(snap.source, "s");
        assert_eq!(repo.find_snapshot(&third.to_hex()).await.unwrap().0, third);
        match repo.find_snapshot(&damaged.short()).await {
            Err(RepoError::Corrupt { what, .. }) => assert!(what.contains(&damaged.short())),
            other => panic!("expected the damaged snapshot to be reported, got {other:?}"),
        }

        // Listing skips it with a warning; "latest" is the newest intact one.
        let (snaps, warnings) = repo.list_snapshots().await.unwrap();
        assert_eq!(snaps.len(), 2);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert_eq!(repo.find_snapshot("latest").await.unwrap().0, third);

        // Not hex, no match, and a prefix shared by all three (the empty one is refused).
        assert!(matches!(
            repo.find_snapshot("xyz").await,
            Err(RepoError::SnapshotNotFound(_))
        ));
        assert!(matches!(
            repo.find_snapshot("").await,
            Err(RepoError::SnapshotNotFound(_))
        ));
        let absent = (0..16u8)
            .map(|d| format!("{d:x}"))
            .find(|p| {
                ![good, damaged, third]
                    .iter()
                    .any(|i| i.to_hex().starts_with(p))
            })
            .unwrap();
        assert!(matches!(
            repo.find_snapshot(&absent).await,
            Err(RepoError::SnapshotNotFound(_))
        ));
    });
}

#[test]
fn a_prefix_of_several_is_ambiguous() {
    let rt = common::runtime();
    rt.block_on(async {
        let (_mem, repo) = memory_repo().await;
        let mut ids = Vec::new();
        // 40 snapshots: some two share their first hex digit.
        for i in 0..40u32 {
            ids.push(backup(&repo, &i.to_le_bytes()).await);
        }
        let shared = (0..16u8)
            .map(|d| format!("{d:x}"))
            .find(|p| ids.iter().filter(|i| i.to_hex().starts_with(p)).count() >= 2)
            .unwrap();
        let n = ids
            .iter()
            .filter(|i| i.to_hex().starts_with(&shared))
            .count();
        match repo.find_snapshot(&shared).await {
            Err(RepoError::AmbiguousSnapshot(q, m)) => {
                assert_eq!(q, shared);
                assert_eq!(m, n);
            }
            other => panic!("expected an ambiguous prefix, got {other:?}"),
        }
    });
}
