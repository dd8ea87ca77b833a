//! Export a snapshot as plain files so no user is locked in: a stream snapshot as its bytes,
//! a folder snapshot as a tar archive (GNU format: long and non-UTF-8 names, symlinks,
//! modes and times). Read-only.

use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;

use crate::error::{RepoError, Result};
use crate::repository::Repository;
use crate::restorer::BlobReader;
use crate::snapshot::{Snapshot, SnapshotKind};
use crate::tree::NodeKind;

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
        let content = handle.block_on(repo.file_content(&node))?;
        let mut r = BlobReader::new(Arc::clone(repo), handle.clone(), content, path);
        let n = std::io::copy(&mut r, &mut out).map_err(|e| RepoError::Invalid(e.to_string()))?;
        out.flush().map_err(werr)?;
        return Ok(n);
    }
    let mut tar = tar::Builder::new(out);
    tar.mode(tar::HeaderMode::Complete);
    let mut total = 0u64;
    // Depth first, in name order: a folder's entry is followed by everything in it, as tar
    // itself writes them. (Extractors set a folder's time and mode once they leave it; an
    // archive listing its content later would leave wrong times, or fail to extract into a
    // read-only folder.)
    let root = handle.block_on(repo.load_tree(&snap.tree))?;
    let mut stack: Vec<(std::vec::IntoIter<crate::tree::Node>, Vec<u8>)> =
        vec![(root.nodes.into_iter(), Vec::new())];
    while let Some((nodes, prefix)) = stack.last_mut() {
        let Some(node) = nodes.next() else {
            stack.pop();
            continue;
        };
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
                    let tree = handle.block_on(repo.load_tree(&s))?;
                    stack.push((tree.nodes.into_iter(), rel));
                }
            }
            NodeKind::File => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(node.size);
                let content = handle.block_on(repo.file_content(&node))?;
                let r = BlobReader::new(
                    Arc::clone(repo),
                    handle.clone(),
                    content,
                    String::from_utf8_lossy(&rel).into_owned(),
                );
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
    let mut out = tar.into_inner().map_err(werr)?;
    out.flush().map_err(werr)?;
    Ok(total)
}
