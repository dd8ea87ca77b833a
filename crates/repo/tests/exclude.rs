//! Exclude patterns in a folder backup: what they match is not in the snapshot (and an
//! excluded folder is not entered: a fifo in it is not warned about), in the plain walk and in
//! the folder cache's walk alike, and a change of patterns between backups is seen even when
//! every folder is in the folder cache.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::{Meta, assert_restores, handle, memory_repo, scan, tempdir};
use strongroom_repo::archiver::{self, BackupOptions};
use strongroom_repo::exclude::Excludes;
use strongroom_repo::{Repository, Snapshot, lock};
use strongroom_storage::Storage;

/// `src/` with files to keep and to leave out, a fifo inside the excluded `cache/deep`.
fn make_tree(base: &Path) -> PathBuf {
    let root = base.join("src");
    for (rel, body) in [
        ("keep.txt", "k"),
        ("a.tmp", "t"),
        ("sub/b.tmp", "t"),
        ("sub/keep2.txt", "k2"),
        ("sub/build", "a file named build"),
        ("cache/x.bin", "x"),
        ("cache/deep/y.bin", "y"),
        ("build/out.o", "o"),
        ("nested/build/out.o", "o"),
    ] {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, body).unwrap();
    }
    let status = std::process::Command::new("mkfifo")
        .arg(root.join("cache/deep/pipe"))
        .status()
        .unwrap();
    assert!(status.success());
    root
}

const PATTERNS: [&str; 3] = ["*.tmp", "cache/**", "build/"];

/// The scan of `root` without what [`PATTERNS`] leave out (`with_tmp`: without `*.tmp`).
fn expected(root: &Path, with_tmp: bool) -> BTreeMap<Vec<u8>, Meta> {
    let mut m = scan(root);
    m.retain(|k, _| {
        let k = String::from_utf8_lossy(k);
        !((!with_tmp && k.ends_with(".tmp"))
            || k.starts_with("src/cache/")
            || k == "src/build"
            || k.starts_with("src/build/")
            || k.starts_with("src/nested/build"))
    });
    m
}

async fn backup(repo: &Arc<Repository>, root: &Path, patterns: &[&str]) -> Snapshot {
    let guard = lock::lock(repo, false, "test").await.unwrap();
    let opts = BackupOptions {
        exclude: Excludes::new(patterns).unwrap(),
        ..BackupOptions::default()
    };
    let (_, snap) = archiver::backup_paths(repo, &guard, &[root.to_path_buf()], opts)
        .await
        .unwrap();
    guard.release().await.unwrap();
    snap
}

#[test]
fn excluded_entries_are_left_out_with_and_without_the_folder_cache() {
    let rt = common::runtime();
    rt.block_on(async {
        let (mem, _) = memory_repo().await;
        let storage: Arc<dyn Storage> = Arc::new(mem);
        let dir = tempdir();
        let root = make_tree(dir.path());
        let want = expected(&root, false);
        assert!(
            want.contains_key(b"src/sub/build".as_slice()),
            "a file named build stays"
        );
        assert!(
            want.contains_key(b"src/cache".as_slice()),
            "cache/** keeps the folder"
        );

        // Without a cache folder: the plain walk.
        let plain = handle(&storage, None).await;
        let snap = backup(&plain, &root, &PATTERNS).await;
        assert!(snap.summary.warnings.is_empty(), "{:?}", snap.summary);
        assert_restores(&plain, &snap, &want, "plain walk").await;

        // With a cache folder: the first backup learns the folders, the second takes them
        // from the cache; both leave the same out.
        let cache = tempdir();
        let cached = handle(&storage, Some(cache.path())).await;
        let first = backup(&cached, &root, &PATTERNS).await;
        let second = backup(&cached, &root, &PATTERNS).await;
        for (what, s) in [("learning", &first), ("from the cache", &second)] {
            assert!(s.summary.warnings.is_empty(), "{what}: {:?}", s.summary);
            assert_eq!(s.tree, snap.tree, "{what}");
        }
        assert_eq!(second.summary.bytes_read, 0);

        // Patterns change: the cache must not keep the old choice.
        let without_tmp = ["cache/**", "build/"];
        let now = backup(&cached, &root, &without_tmp).await;
        assert_ne!(now.tree, snap.tree);
        assert_restores(
            &cached,
            &now,
            &expected(&root, true),
            "*.tmp no longer excluded",
        )
        .await;
        let back = backup(&cached, &root, &PATTERNS).await;
        assert_eq!(back.tree, snap.tree, "*.tmp excluded again");

        // No patterns: everything, and the fifo is warned about again.
        let all = backup(&plain, &root, &[]).await;
        assert_eq!(all.summary.warnings.len(), 1, "{:?}", all.summary);
        assert!(all.summary.warnings[0].contains("special file"));
    });
}

#[test]
fn a_backed_up_path_itself_is_never_excluded() {
    let rt = common::runtime();
    rt.block_on(async {
        let (_mem, repo) = memory_repo().await;
        let dir = tempdir();
        let root = dir.path().join("a.tmp");
        std::fs::create_dir(&root).unwrap();
        std::fs::write(root.join("keep"), "k").unwrap();
        std::fs::write(root.join("drop.tmp"), "d").unwrap();
        let snap = backup(&repo, &root, &["*.tmp"]).await;
        let mut want = scan(&root);
        want.remove(b"a.tmp/drop.tmp".as_slice());
        assert_eq!(want.len(), 2);
        let target = tempdir();
        let stats = strongroom_repo::restorer::restore_to_dir(
            &repo,
            &snap,
            target.path(),
            &strongroom_repo::restorer::RestoreOptions::default(),
        )
        .await
        .unwrap();
        assert!(stats.failures.is_empty());
        common::assert_same(&want, &common::scan_children(target.path()), "root kept");
    });
}
