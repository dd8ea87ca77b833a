//! Folders of many small files: the reader sends them (and unchanged entries) in batches of
//! whole files. A folder of more entries than one batch holds, with large files, empty files,
//! symlinks and subfolders among them, restores as it was; files at the chunker's minimum size
//! and one byte over it take the two paths (read whole, or cut); a second backup finds every
//! file unchanged and restores the same.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::{XorShift, assert_restores, memory_repo, scan, tempdir};
use strongroom_repo::chunker::ChunkerParams;
use strongroom_repo::{Repository, Snapshot};

async fn backup(repo: &Arc<Repository>, path: &Path) -> Snapshot {
    common::backup_folder(repo, path).await.1
}

/// Regular files under `dir` of size zero.
fn empty_files(dir: &Path) -> u64 {
    let mut n = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let md = std::fs::symlink_metadata(e.path()).unwrap();
        if md.is_dir() {
            n += empty_files(&e.path());
        } else if md.is_file() && md.len() == 0 {
            n += 1;
        }
    }
    n
}

/// Writes the tree; returns its root and the number of files (all kinds of size).
fn make_tree(base: &Path) -> (PathBuf, u64) {
    let mut r = XorShift::new(41);
    let root = base.join("src");
    let many = root.join("many");
    std::fs::create_dir_all(many.join("sub")).unwrap();
    let mut files = 0u64;
    // 2,500 small files (two and a half batches of entries): some empty, some equal.
    for i in 0..2500u32 {
        let size = match i % 50 {
            0 => 0,
            1 => 100, // equal content below (same seed bytes)
            _ => r.below(3000) as usize,
        };
        let data = if i % 50 == 1 {
            vec![7u8; size]
        } else {
            r.bytes(size)
        };
        std::fs::write(many.join(format!("f{i:04}")), data).unwrap();
        files += 1;
        if i == 1200 {
            // In the middle of the batches: a large file (cut into chunks), a symlink and a
            // folder with files of its own.
            std::fs::write(many.join("f1200-large"), r.bytes(3 << 20)).unwrap();
            std::os::unix::fs::symlink("f0001", many.join("f1200-link")).unwrap();
            for j in 0..10 {
                std::fs::write(many.join("sub").join(format!("s{j}")), r.bytes(j * 10)).unwrap();
            }
            files += 11;
        }
    }
    // At the chunker's minimum (one chunk, read whole) and one byte over it (cut).
    let min = ChunkerParams::FILES.min as usize;
    std::fs::write(root.join("at-min"), r.bytes(min)).unwrap();
    std::fs::write(root.join("over-min"), r.bytes(min + 1)).unwrap();
    (root, files + 2)
}

#[test]
fn many_small_files_in_batches_restore_and_are_unchanged_the_second_time() {
    let rt = common::runtime();
    rt.block_on(async {
        let (_mem, repo) = memory_repo().await;
        let dir = tempdir();
        let (root, files) = make_tree(dir.path());
        let before = scan(&root);

        let first = backup(&repo, &root).await;
        let s = &first.summary;
        assert_eq!(s.files, files);
        assert_eq!(s.files_read, files, "every file read the first time");
        assert_eq!(s.dirs, 3);
        assert!(s.warnings.is_empty(), "{:?}", s.warnings);

        assert_restores(&repo, &first, &before, "first restore").await;

        let second = backup(&repo, &root).await;
        let s = &second.summary;
        assert_eq!(s.files, files);
        // Empty files count as read (there is nothing to reuse); every other is unchanged.
        let empty = empty_files(&root);
        assert!(empty >= 50, "{empty}");
        assert_eq!(s.files_read, empty);
        assert_eq!(s.files_unchanged, files - empty);
        assert_eq!(s.bytes_read, 0);
        assert_eq!(s.blobs_added, 0, "nothing new the second time");
        assert_eq!(second.tree, first.tree, "the same tree");

        assert_restores(&repo, &second, &before, "second restore").await;
    });
}

#[test]
fn a_changed_small_file_among_unchanged_ones_is_read_again() {
    let rt = common::runtime();
    rt.block_on(async {
        let (_mem, repo) = memory_repo().await;
        let dir = tempdir();
        let (root, files) = make_tree(dir.path());
        backup(&repo, &root).await;
        // A new size and a new mtime: read again; the rest stays unchanged.
        std::fs::write(root.join("many").join("f2003"), b"changed").unwrap();
        let state = scan(&root);
        let snap = backup(&repo, &root).await;
        let empty = empty_files(&root);
        assert_eq!(snap.summary.files_read, empty + 1);
        assert_eq!(snap.summary.files_unchanged, files - empty - 1);
        assert_eq!(snap.summary.bytes_read, 7);
        assert_restores(&repo, &snap, &state, "restore after a change").await;
    });
}
