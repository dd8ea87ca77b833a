//! The local snapshot cache: listing with it gives what listing the repository gives (new
//! snapshots appear, deleted ones go, a damaged or foreign cache is ignored), it is really
//! read (a snapshot file damaged after it was cached is still listed from the cache), and
//! `list_snapshots_uncached` (what verify uses) never reads it.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

mod common;

use std::io::{Cursor, Read};
use std::sync::Arc;

use bytes::Bytes;
use common::{PASSWORD, memory_repo};
use strongroom_repo::archiver::{self, BackupOptions};
use strongroom_repo::snapshot_cache::SnapshotCache;
use strongroom_repo::{Id, Repository, lock};
use strongroom_storage::{Kind, Storage};

async fn backup(repo: &Arc<Repository>, name: &str) -> Id {
    let guard = lock::lock(repo, false, "test").await.unwrap();
    let input: Box<dyn Read + Send> = Box::new(Cursor::new(name.as_bytes().to_vec()));
    let (id, _) = archiver::backup_stream(repo, &guard, name, input, BackupOptions::default())
        .await
        .unwrap();
    guard.release().await.unwrap();
    id
}

fn ids(list: &[(Id, strongroom_repo::Snapshot)]) -> Vec<Id> {
    list.iter().map(|(id, _)| *id).collect()
}

#[test]
fn the_cache_lists_what_the_repository_holds() {
    let rt = common::runtime();
    rt.block_on(async {
        let (mem, writer) = memory_repo().await;
        let a = backup(&writer, "a").await;
        let b = backup(&writer, "b").await;
        let c = backup(&writer, "c").await;

        let dir = common::tempdir();
        let storage: Arc<dyn Storage> = Arc::new(mem.clone());
        let mut reader = Repository::open(storage, PASSWORD).await.unwrap();
        reader.use_snapshot_cache(dir.path());
        let cache = SnapshotCache::new(dir.path(), reader.config().id);

        // The first listing reads every file and writes the cache.
        let (first, warnings) = reader.list_snapshots().await.unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(ids(&first), vec![a, b, c], "sorted by time");
        assert_eq!(cache.load(reader.key()).len(), 3);
        let (uncached, _) = reader.list_snapshots_uncached().await.unwrap();
        assert_eq!(first, uncached);

        // The cache is what is read: b's file damaged afterwards is still listed from it,
        // while the uncached listing (verify's) reports it.
        let original_b = mem
            .put_raw(Kind::Snapshot, &b.to_hex(), Bytes::from_static(b"damaged"))
            .unwrap();
        let (cached, warnings) = reader.list_snapshots().await.unwrap();
        assert_eq!(cached, first);
        assert!(warnings.is_empty(), "{warnings:?}");
        let (uncached, warnings) = reader.list_snapshots_uncached().await.unwrap();
        assert_eq!(ids(&uncached), vec![a, c]);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        mem.put_raw(Kind::Snapshot, &b.to_hex(), original_b);

        // A new snapshot appears; a deleted one goes, although the cache held it, and the
        // cache is rewritten without it.
        let d = backup(&writer, "d").await;
        mem.remove_raw(Kind::Snapshot, &a.to_hex()).unwrap();
        let (after, warnings) = reader.list_snapshots().await.unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(ids(&after), vec![b, c, d]);
        assert_eq!(ids(&cache.load(reader.key())), vec![b, c, d]);
        assert_eq!(
            reader.find_snapshot("latest").await.unwrap().0,
            d,
            "latest goes through the cache too"
        );

        // A damaged cache file is no cache: the listing is read from the repository again.
        std::fs::write(cache.path(), b"not a cache").unwrap();
        let (again, warnings) = reader.list_snapshots().await.unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(ids(&again), vec![b, c, d]);
        assert_eq!(cache.load(reader.key()).len(), 3, "and rewritten");
    });
}

#[test]
fn an_unwritable_cache_folder_only_costs_reading() {
    let rt = common::runtime();
    rt.block_on(async {
        let (mem, writer) = memory_repo().await;
        let a = backup(&writer, "a").await;
        let dir = common::tempdir();
        // A file where the cache folder should be: nothing can be created under it.
        let blocked = dir.path().join("blocked");
        std::fs::write(&blocked, b"a file").unwrap();
        let storage: Arc<dyn Storage> = Arc::new(mem.clone());
        let mut reader = Repository::open(storage, PASSWORD).await.unwrap();
        reader.use_snapshot_cache(&blocked);
        let (list, warnings) = reader.list_snapshots().await.unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(ids(&list), vec![a]);
        assert!(blocked.is_file());
    });
}
