//! Data packs written to storage blob by blob (storage with object writers: a local folder)
//! are whole, named by their hash and verifiable like packs built in memory; a backup that
//! stops halfway leaves neither a pack nor a temporary file behind.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

mod common;

use std::path::Path;
use std::sync::Arc;

use common::{PASSWORD, XorShift, assert_restores, backup_folder, scan};
use strongroom_repo::checker::{self, ReadData};
use strongroom_repo::crypto::KdfParams;
use strongroom_repo::pack::BlobType;
use strongroom_repo::repository::{InitOptions, Packer, Repository};
use strongroom_storage::local::LocalStorage;
use strongroom_storage::{Kind, Storage};

fn files_named(root: &Path, pred: &dyn Fn(&str) -> bool) -> Vec<String> {
    let mut out = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                dirs.push(e.path());
            } else if pred(&e.file_name().to_string_lossy()) {
                out.push(e.path().display().to_string());
            }
        }
    }
    out
}

async fn local_repo(root: &Path, pack_size: u32) -> (Arc<dyn Storage>, Arc<Repository>) {
    let storage: Arc<dyn Storage> = Arc::new(LocalStorage::new(root.to_path_buf()));
    assert!(storage.object_writer(Kind::Pack).is_some());
    let repo = Repository::init(
        Arc::clone(&storage),
        PASSWORD,
        InitOptions {
            kdf: KdfParams::MINIMUM,
            pack_size,
        },
    )
    .await
    .unwrap();
    (storage, Arc::new(repo))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_packs_verify_and_restore() {
    let src_parent = common::tempdir();
    let src = src_parent.path().join("src");
    std::fs::create_dir(&src).unwrap();
    let mut r = XorShift::new(common::seed("streamed_packs_verify_and_restore"));
    // Large chunked files (random: incompressible), text, and many small files, so that
    // packs hold large blobs, gathered small ones, and both.
    std::fs::write(src.join("scan.bin"), r.bytes(3_500_000)).unwrap();
    let text: Vec<u8> = (0..2_000_000u32)
        .map(|i| b"visit notes, blood pressure normal; "[(i % 36) as usize])
        .collect();
    std::fs::write(src.join("notes.txt"), &text).unwrap();
    for i in 0..300 {
        std::fs::write(src.join(format!("small-{i:03}")), r.bytes(1_000 + i * 37)).unwrap();
    }
    let repo_dir = common::tempdir();
    let (storage, repo) = local_repo(repo_dir.path(), 256 << 10).await;
    let (_, snap) = backup_folder(&repo, &src).await;
    let packs = storage.list(Kind::Pack).await.unwrap();
    assert!(packs.len() >= 10, "several packs: {}", packs.len());
    assert!(
        files_named(repo_dir.path(), &|n| n.starts_with(".tmp-")).is_empty(),
        "no temporary files left"
    );
    let fresh = common::handle(&storage, None).await;
    let report = checker::check(&fresh, ReadData::All).await.unwrap();
    assert!(report.is_ok(), "{:?}", report.errors);
    assert_restores(&fresh, &snap, &scan(&src), "streamed packs").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abandoned_pack_leaves_nothing() {
    let repo_dir = common::tempdir();
    let (storage, repo) = local_repo(repo_dir.path(), 16 << 20).await;
    let mut r = XorShift::new(7);
    let add_five = async |packer: &mut Packer<'_>, r: &mut XorShift| {
        for _ in 0..5 {
            packer
                .add_plain(BlobType::Data, r.bytes(700_000))
                .await
                .unwrap();
        }
    };
    {
        let mut packer = repo.packer();
        add_five(&mut packer, &mut r).await;
        // Dropped without a flush: the backup failed.
    }
    // The writing task notices on its own thread; give it a moment.
    let is_tmp = |n: &str| n.starts_with(".tmp-");
    let mut left = files_named(repo_dir.path(), &is_tmp);
    for _ in 0..100 {
        if left.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        left = files_named(repo_dir.path(), &is_tmp);
    }
    assert!(left.is_empty(), "{left:?}");
    assert!(storage.list(Kind::Pack).await.unwrap().is_empty());
    // Flushed, the same blobs make one pack.
    let mut packer = repo.packer();
    add_five(&mut packer, &mut r).await;
    packer.flush().await.unwrap();
    assert_eq!(storage.list(Kind::Pack).await.unwrap().len(), 1);
    let fresh = common::handle(&storage, None).await;
    let report = checker::check(&fresh, ReadData::All).await.unwrap();
    assert!(report.is_ok(), "{:?}", report.errors);
}
