//! Index files of a backup of many small blobs: one is written every 65,536 blobs, not one
//! for the whole backup at its end (which was built, compressed and sealed whole in memory);
//! every blob counts as stored while its pack is being written and after, and a fresh handle
//! finds every one through the index files.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

mod common;

use std::sync::Arc;

use strongroom_repo::crypto::KdfParams;
use strongroom_repo::pack::BlobType;
use strongroom_repo::repository::{InitOptions, Repository, seal_blob};
use strongroom_storage::memory::MemoryStorage;
use strongroom_storage::{Kind, Storage};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_small_blobs_get_an_index_file_every_65536_blobs() {
    let storage: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
    // Packs of 64 KiB: ~44 packs for the blobs below, fewer than the 64 packs that also close
    // an index file, so only the count of blobs can.
    let repo = Repository::init(
        Arc::clone(&storage),
        common::PASSWORD,
        InitOptions {
            kdf: KdfParams::MINIMUM,
            pack_size: 64 << 10,
        },
    )
    .await
    .unwrap();
    let before = storage.list(Kind::Index).await.unwrap().len();
    let mut packer = repo.packer();
    let mut ids = Vec::new();
    for i in 0..70_000u32 {
        let blob = seal_blob(repo.key(), BlobType::Data, &i.to_le_bytes());
        ids.push(blob.id);
        assert!(packer.add(blob).await.unwrap(), "blob {i} added twice");
        if i % 10_000 == 0 {
            assert!(ids.iter().all(|id| packer.has(id)), "after {i} blobs");
        }
    }
    assert!(ids.iter().all(|id| packer.has(id)));
    let again = seal_blob(repo.key(), BlobType::Data, &7u32.to_le_bytes());
    assert!(
        !packer.add(again).await.unwrap(),
        "a blob of an indexed pack added again"
    );
    packer.flush().await.unwrap();
    let written = storage.list(Kind::Index).await.unwrap().len() - before;
    assert_eq!(
        written, 2,
        "one index file at 65,536 blobs, one at the flush"
    );
    let fresh = common::handle(&storage, None).await;
    let index = fresh.index_read();
    assert!(ids.iter().all(|id| index.contains(id)));
}
