//! Trees from storage whose requests are costly (S3) are read a whole pack at a time: a
//! restore, a verify and a prune of a snapshot of hundreds of folders make a few pack reads
//! for its trees instead of one request per folder, and restore the same files. Local
//! storage keeps reading one tree per request.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use common::{XorShift, assert_restores, backup_folder, scan};
use strongroom_repo::checker::{self, ReadData};
use strongroom_repo::prune;
use strongroom_storage::memory::MemoryStorage;
use strongroom_storage::{Kind, ObjectInfo, Result, Storage};

/// Memory storage that counts pack reads and says whether its requests are costly.
#[derive(Debug)]
struct Counting {
    inner: MemoryStorage,
    costly: bool,
    pack_reads: AtomicUsize,
}

impl Counting {
    fn reads(&self) -> usize {
        self.pack_reads.swap(0, Ordering::SeqCst)
    }

    fn count(&self, kind: Kind) {
        if kind == Kind::Pack {
            self.pack_reads.fetch_add(1, Ordering::SeqCst);
        }
    }
}

#[async_trait]
impl Storage for Counting {
    fn location(&self) -> String {
        self.inner.location()
    }
    fn requests_are_costly(&self) -> bool {
        self.costly
    }
    async fn list(&self, kind: Kind) -> Result<Vec<ObjectInfo>> {
        self.inner.list(kind).await
    }
    async fn read(&self, kind: Kind, name: &str) -> Result<Bytes> {
        self.count(kind);
        self.inner.read(kind, name).await
    }
    async fn read_range(&self, kind: Kind, name: &str, offset: u64, length: u64) -> Result<Bytes> {
        self.count(kind);
        self.inner.read_range(kind, name, offset, length).await
    }
    async fn write(&self, kind: Kind, name: &str, data: Bytes) -> Result<()> {
        self.inner.write(kind, name, data).await
    }
    async fn delete(&self, kind: Kind, name: &str) -> Result<()> {
        self.inner.delete(kind, name).await
    }
    async fn create(&self) -> Result<()> {
        self.inner.create().await
    }
}

/// 300 folders of one small file each.
fn many_folders(root: &std::path::Path) {
    let mut r = XorShift::new(11);
    for i in 0..300 {
        let d = root.join(format!("patient-{:03}/visit", i));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("notes.txt"), r.bytes(200)).unwrap();
    }
}

async fn pack_reads_of_a_restore(costly: bool) -> (usize, usize, usize) {
    let tmp = common::tempdir();
    let src = tmp.path().join("src");
    many_folders(&src);
    let counting = Arc::new(Counting {
        inner: MemoryStorage::new(),
        costly,
        pack_reads: AtomicUsize::new(0),
    });
    let storage: Arc<dyn Storage> = Arc::clone(&counting) as Arc<dyn Storage>;
    let repo = common::init_in(Arc::clone(&storage)).await;
    let expected = scan(&src);
    let (_, snap) = backup_folder(&repo, &src).await;
    // A new handle: nothing read yet.
    let fresh = common::handle(&storage, None).await;
    counting.reads();
    assert_restores(&fresh, &snap, &expected, "restore").await;
    let restore = counting.reads();
    let fresh = common::handle(&storage, None).await;
    let report = checker::check(&fresh, ReadData::None).await.unwrap();
    assert!(report.is_ok(), "{:?}", report.errors);
    let verify = counting.reads();
    let fresh = common::handle(&storage, None).await;
    prune::plan(&fresh).await.unwrap();
    let plan = counting.reads();
    (restore, verify, plan)
}

#[test]
fn trees_come_a_pack_at_a_time_from_costly_storage() {
    let rt = common::runtime();
    rt.block_on(async {
        // 601 trees (src and 300 × 2 folders) in one tree pack; the restore reads each of
        // the 300 files' data with a request of its own.
        let (restore, verify, plan) = pack_reads_of_a_restore(true).await;
        assert!(restore <= 300 + 2, "restore read packs {restore} times");
        assert!(verify <= 2, "verify read packs {verify} times");
        assert!(plan <= 2, "prune's plan read packs {plan} times");
        // Local storage: one request per tree, as before (small reads cost nothing there).
        let (restore, verify, plan) = pack_reads_of_a_restore(false).await;
        assert!(restore > 300 + 600, "restore read packs {restore} times");
        assert!(verify > 600, "verify read packs {verify} times");
        assert!(plan > 600, "prune's plan read packs {plan} times");
    });
}
