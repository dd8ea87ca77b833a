//! Export a snapshot as plain files so no user is locked in: a stream snapshot as its bytes,
//! a folder snapshot as a tar archive (GNU format: long and non-UTF-8 names, symlinks,
//! modes and times). Read-only.

use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;

use crate::error::{RepoError, Result};
use crate::id::Id;
use crate::repository::Repository;
use crate::snapshot::{Snapshot, SnapshotKind};
use crate::tree::NodeKind;

/// Reads a file's content blob by blob (call only from a blocking thread).
struct BlobReader {
    repo: Arc<Repository>,
    handle: tokio::runtime::Handle,
    ids: Vec<Id>,
    next: usize,
    buf: Vec<u8>,
    off: usize,
    path: String,
}

impl Read for BlobReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.off >= self.buf.len() {
            let Some(id) = self.ids.get(self.next).copied() else {
                return Ok(0);
            };
            self.next += 1;
            self.buf = self
                .handle
                .block_on(self.repo.read_blob(&id))
                .map_err(|e| std::io::Error::other(format!("{}: {e}", self.path)))?;
            self.off = 0;
        }
        let n = out.len().min(self.buf.len() - self.off);
        out[..n].copy_from_slice(&self.buf[self.off..self.off + n]);
        self.off += n;
        Ok(n)
    }
}

/// Writes a snapshot to `out`: a stream's bytes, or a tar of a folder snapshot. Returns the
/// bytes of content written.
///
/// # Errors
/// When a tree or blob is missing or damaged (the error names the file), or writing fails.
pub async fn export(
    repo: &Arc<Repository>,
    snap: &Snapshot,
    out: Box<dyn Write + Send>,
) -> Result<u64> {
    let repo = Arc::clone(repo);
    let snap = snap.clone();
    let handle = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || export_blocking(&repo, &snap, out, &handle))
        .await
        .map_err(|e| RepoError::Invalid(e.to_string()))?
}

fn export_blocking(
    repo: &Arc<Repository>,
    snap: &Snapshot,
    mut out: Box<dyn Write + Send>,
    handle: &tokio::runtime::Handle,
) -> Result<u64> {
    let werr = |e: std::io::Error| RepoError::Io {
        context: "writing export",
        path: "output".into(),
        source: e,
    };
    if snap.kind == SnapshotKind::Stream {
        let node = handle.block_on(crate::restorer::stream_node(repo, snap))?;
        let path = node.display_name();
        let mut r = BlobReader {
            repo: Arc::clone(repo),
            handle: handle.clone(),
            ids: node.content,
            next: 0,
            buf: vec![],
            off: 0,
            path,
        };
        let n = std::io::copy(&mut r, &mut out).map_err(|e| RepoError::Invalid(e.to_string()))?;
        out.flush().map_err(werr)?;
        return Ok(n);
    }
    let mut tar = tar::Builder::new(out);
    tar.mode(tar::HeaderMode::Complete);
    let mut total = 0u64;
    let mut stack: Vec<(Id, Vec<u8>)> = vec![(snap.tree, Vec::new())];
    while let Some((tid, prefix)) = stack.pop() {
        let tree = handle.block_on(repo.load_tree(&tid))?;
        // Push subfolders in reverse so the archive lists them in name order.
        let mut subdirs = Vec::new();
        for node in tree.nodes {
            if !node.name_is_safe() {
                return Err(RepoError::Corrupt {
                    what: "tree".into(),
                    detail: format!("unsafe name {:?}", node.display_name()),
                });
            }
            let rel = if prefix.is_empty() {
                node.name.clone()
            } else {
                [prefix.as_slice(), b"/", &node.name].concat()
            };
            let path = std::path::PathBuf::from(std::ffi::OsStr::from_bytes(&rel));
            let mut h = tar::Header::new_gnu();
            h.set_mode(node.mode);
            h.set_uid(u64::from(node.uid));
            h.set_gid(u64::from(node.gid));
            h.set_mtime(u64::try_from(node.mtime_ns.div_euclid(1_000_000_000)).unwrap_or(0));
            match node.kind {
                NodeKind::Dir => {
                    h.set_entry_type(tar::EntryType::Directory);
                    h.set_size(0);
                    tar.append_data(&mut h, &path, std::io::empty())
                        .map_err(werr)?;
                    if let Some(s) = node.subtree {
                        subdirs.push((s, rel));
                    }
                }
                NodeKind::File => {
                    h.set_entry_type(tar::EntryType::Regular);
                    h.set_size(node.size);
                    let r = BlobReader {
                        repo: Arc::clone(repo),
                        handle: handle.clone(),
                        ids: node.content.clone(),
                        next: 0,
                        buf: vec![],
                        off: 0,
                        path: String::from_utf8_lossy(&rel).into_owned(),
                    };
                    tar.append_data(&mut h, &path, r)
                        .map_err(|e| RepoError::Invalid(format!("exporting: {e}")))?;
                    total += node.size;
                }
                NodeKind::Symlink => {
                    h.set_entry_type(tar::EntryType::Symlink);
                    h.set_size(0);
                    let target = node.target.clone().unwrap_or_default();
                    tar.append_link(&mut h, &path, std::ffi::OsStr::from_bytes(&target))
                        .map_err(werr)?;
                }
            }
        }
        stack.extend(subdirs.into_iter().rev());
    }
    let mut out = tar.into_inner().map_err(werr)?;
    out.flush().map_err(werr)?;
    Ok(total)
}
