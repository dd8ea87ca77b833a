//! The folder cache: a backup of a tree that did not change takes its folders' trees from the
//! cache (no parent snapshot needed), and any change anywhere (content, size, times,
//! permissions, a new, removed or renamed entry, a symlink's target) is seen: the snapshot is
//! the one a backup without the cache makes, and restores as the tree is now. Entries to warn
//! about are still warned about; after a prune the cache is not trusted.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::{XorShift, assert_restores, handle, memory_repo, scan, tempdir};
use strongroom_repo::folder_cache::FolderCache;
use strongroom_repo::{Id, Repository, Snapshot, lock, prune};
use strongroom_storage::Storage;

async fn backup(repo: &Arc<Repository>, path: &Path) -> (Id, Snapshot) {
    common::backup_folder(repo, path).await
}

/// A new repository in memory, a folder for local caches, a handle keeping them there, and
/// the tree of [`make_tree`].
struct Fixture {
    storage: Arc<dyn Storage>,
    cache: tempfile::TempDir,
    repo: Arc<Repository>,
    _dir: tempfile::TempDir,
    root: PathBuf,
    files: u64,
}

async fn setup() -> Fixture {
    let (mem, _) = memory_repo().await;
    let storage: Arc<dyn Storage> = Arc::new(mem);
    let cache = tempdir();
    let repo = handle(&storage, Some(cache.path())).await;
    let dir = tempdir();
    let (root, files) = make_tree(dir.path());
    Fixture {
        storage,
        cache,
        repo,
        _dir: dir,
        root,
        files,
    }
}

/// Three levels of folders with files (some empty), a symlink and an empty folder.
fn make_tree(base: &Path) -> (PathBuf, u64) {
    let mut r = XorShift::new(77);
    let root = base.join("src");
    let mut files = 0;
    for a in 0..3 {
        for b in 0..3 {
            let d = root.join(format!("a{a}")).join(format!("b{b}"));
            std::fs::create_dir_all(&d).unwrap();
            for f in 0..20 {
                let size = if f == 0 { 0 } else { r.below(5000) as usize };
                std::fs::write(d.join(format!("f{f:02}")), r.bytes(size)).unwrap();
                files += 1;
            }
        }
        std::fs::write(root.join(format!("a{a}")).join("top"), r.bytes(100)).unwrap();
        files += 1;
    }
    std::os::unix::fs::symlink("a0/top", root.join("link")).unwrap();
    std::fs::create_dir_all(root.join("empty")).unwrap();
    (root, files)
}

/// Empty files under `dir`.
fn empty_entries(dir: &Path) -> u64 {
    let mut n = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let md = std::fs::symlink_metadata(e.path()).unwrap();
        if md.is_dir() {
            n += empty_entries(&e.path());
        } else if md.is_file() && md.len() == 0 {
            n += 1;
        }
    }
    n
}

#[test]
fn an_unchanged_tree_comes_from_the_folder_cache_without_a_parent_snapshot() {
    let rt = common::runtime();
    rt.block_on(async {
        let f = setup().await;
        let (repo, root, files) = (Arc::clone(&f.repo), f.root.clone(), f.files);
        let state = scan(&root);

        let (first_id, first) = backup(&repo, &root).await;
        assert_eq!(first.summary.files_read, files);
        // One key per folder: src, a0..a2, their b0..b2, and the empty one.
        let mut fc = FolderCache::new(
            f.cache.path(),
            repo.config().id,
            repo.key(),
            &first.host,
            &first.paths,
        );
        assert!(fc.load(repo.key(), &repo.index_file_ids()));

        // Without the parent snapshot, only the cache can tell that nothing changed.
        repo.delete_snapshot(&first_id).await.unwrap();
        let (_, second) = backup(&repo, &root).await;
        let s = &second.summary;
        assert_eq!(second.parent, None);
        assert_eq!(second.tree, first.tree, "the same tree");
        assert_eq!(s.bytes_read, 0, "nothing read: {s:?}");
        assert_eq!(s.blobs_added, 0);
        assert_eq!(s.files, files);
        assert_eq!(s.dirs, first.summary.dirs);
        assert_eq!(s.dirs, 14);
        assert_eq!(s.total_bytes, first.summary.total_bytes);
        let empty = empty_entries(&root);
        assert_eq!(s.files_read, empty);
        assert_eq!(s.files_unchanged, files - empty);
        assert_restores(&repo, &second, &state, "restore of the cached tree").await;

        // The cache is written again with the folders of the backup that used it.
        assert!(fc.load(repo.key(), &repo.index_file_ids()));
    });
}

#[test]
fn every_kind_of_change_is_seen_and_the_snapshot_is_the_one_made_without_the_cache() {
    let rt = common::runtime();
    rt.block_on(async {
        let f = setup().await;
        let (storage, cached, root) = (&f.storage, Arc::clone(&f.repo), f.root.clone());
        backup(&cached, &root).await;

        let b = |a: u32, b: u32| root.join(format!("a{a}")).join(format!("b{b}"));
        // Content and size.
        std::fs::write(b(0, 0).join("f05"), b"new content").unwrap();
        // Only the permissions.
        std::fs::set_permissions(
            b(1, 1).join("f03"),
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .unwrap();
        // Only the mtime (same size, same content).
        let f = std::fs::File::options()
            .write(true)
            .open(b(2, 2).join("f07"))
            .unwrap();
        f.set_modified(
            std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1e9 as u64),
        )
        .unwrap();
        drop(f);
        // Added, removed, renamed.
        std::fs::write(b(1, 2).join("added"), b"added").unwrap();
        std::fs::remove_file(b(2, 0).join("f09")).unwrap();
        std::fs::rename(b(0, 1).join("f01"), b(0, 1).join("f01-renamed")).unwrap();
        // A symlink pointing elsewhere, a new folder in the empty one.
        std::fs::remove_file(root.join("link")).unwrap();
        std::os::unix::fs::symlink("a1/top", root.join("link")).unwrap();
        std::fs::create_dir(root.join("empty").join("new")).unwrap();
        let state = scan(&root);

        let (_, with_cache) = backup(&cached, &root).await;
        assert_restores(&cached, &with_cache, &state, "restore after changes").await;
        // Read again besides the empty ones: the changed, the chmod'ed (its ctime moved), the
        // touched, the added and the renamed file (new by name; its content is known).
        let empty = empty_entries(&root);
        assert_eq!(
            with_cache.summary.files_read,
            empty + 5,
            "{:?}",
            with_cache.summary
        );

        // The same paths backed up by a handle without any cache: the same tree.
        let plain = handle(storage, None).await;
        let (_, without) = backup(&plain, &root).await;
        assert_eq!(with_cache.tree, without.tree);

        // And once more with the cache (now holding the changed folders): still the same.
        let (_, again) = backup(&cached, &root).await;
        assert_eq!(again.tree, without.tree);
        assert_eq!(again.summary.bytes_read, 0);
    });
}

#[test]
fn entries_to_warn_about_are_warned_about_again() {
    let rt = common::runtime();
    rt.block_on(async {
        let f = setup().await;
        let (repo, root) = (Arc::clone(&f.repo), f.root.clone());
        let fifo = root.join("a1").join("b1").join("pipe");
        let status = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(status.success());
        for round in ["first", "second"] {
            let (_, snap) = backup(&repo, &root).await;
            assert_eq!(
                snap.summary.warnings.len(),
                1,
                "{round}: {:?}",
                snap.summary
            );
            assert!(
                snap.summary.warnings[0].contains("special file"),
                "{round}: {:?}",
                snap.summary.warnings
            );
        }
    });
}

#[test]
fn after_a_prune_the_tree_is_read_again() {
    let rt = common::runtime();
    rt.block_on(async {
        let f = setup().await;
        let (repo, root, files) = (Arc::clone(&f.repo), f.root.clone(), f.files);
        let state = scan(&root);
        let (id, _) = backup(&repo, &root).await;
        repo.delete_snapshot(&id).await.unwrap();
        let guard = lock::lock(&repo, true, "prune").await.unwrap();
        let plan = prune::plan(&repo).await.unwrap();
        prune::execute(&repo, &guard, plan).await.unwrap();
        guard.release().await.unwrap();

        let (_, snap) = backup(&repo, &root).await;
        assert_eq!(snap.summary.files_read, files, "{:?}", snap.summary);
        assert_restores(&repo, &snap, &state, "restore after a prune").await;
    });
}
