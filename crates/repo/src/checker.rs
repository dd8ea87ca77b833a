//! Verify: the structure of the repository always; with `read_data`, every byte of the
//! chosen packs, decrypted and checked against its id.
//!
//! Structure: every key file parses; every index file opens; every indexed pack exists with
//! its recorded size; every snapshot opens; every tree of every snapshot is readable and every
//! blob it references is indexed. Data: each pack's name equals the hash of its bytes, its
//! header matches the index, and every blob authenticates and hashes to its id. Findings name
//! the object, and for damaged data the snapshots and files it affects. Read-only: the
//! checker never changes the repository.

use std::collections::{BTreeMap, HashMap, HashSet};

use strongroom_storage::Kind;

use crate::crypto::KeyFile;
use crate::error::Result;
use crate::id::Id;
use crate::pack::{pack_id, read_header};
use crate::repository::{Repository, decode_blob};
use crate::tree::NodeKind;

/// Which packs to read in full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadData {
    /// Structure only.
    None,
    /// Every pack.
    All,
    /// Slice `n` of `of`: packs whose id falls in that bucket, so that `of` consecutive runs
    /// with n = 0, 1, … cover every pack.
    Subset {
        /// Which slice (0-based).
        n: u32,
        /// How many slices.
        of: u32,
    },
}

/// What verify found.
#[derive(Debug, Clone, Default)]
pub struct CheckReport {
    /// Problems that make data unrestorable or the repository inconsistent.
    pub errors: Vec<String>,
    /// Harmless findings (e.g. unreferenced packs left by an interrupted backup).
    pub warnings: Vec<String>,
    /// Snapshots checked.
    pub snapshots: usize,
    /// Trees checked.
    pub trees: usize,
    /// Packs read in full.
    pub packs_read: usize,
    /// Bytes read in full.
    pub bytes_read: u64,
    /// Blobs checked by reading.
    pub blobs_read: usize,
}

impl CheckReport {
    /// True when nothing is wrong.
    #[must_use]
    pub fn is_ok(&self) -> bool {
        self.errors.is_empty()
    }
}

/// Checks the repository (see the module docs).
///
/// # Errors
/// Only when the repository cannot be listed at all; everything else is a finding.
pub async fn check(repo: &Repository, read_data: ReadData) -> Result<CheckReport> {
    let mut r = CheckReport::default();
    let storage = repo.storage();

    // Key files parse.
    for k in storage
        .list(Kind::Key)
        .await
        .map_err(crate::error::RepoError::storage("listing key files"))?
    {
        match storage.read(Kind::Key, &k.name).await {
            Ok(b) => {
                if let Err(e) = KeyFile::parse(&b) {
                    r.errors
                        .push(format!("key file keys/{} is damaged: {e}", k.name));
                }
            }
            Err(e) => r.errors.push(format!("key file keys/{}: {e}", k.name)),
        }
    }

    // Index files open; reload the index from what is there now.
    for w in repo.load_index().await? {
        r.errors.push(w);
    }
    let stored: HashMap<String, u64> = storage
        .list(Kind::Pack)
        .await
        .map_err(crate::error::RepoError::storage("listing packs"))?
        .into_iter()
        .map(|o| (o.name, o.size))
        .collect();
    let indexed: Vec<(Id, u64)> = repo.index_read().packs().to_vec();
    let indexed_names: HashSet<String> = indexed.iter().map(|(id, _)| id.to_hex()).collect();
    for (id, size) in &indexed {
        match stored.get(&id.to_hex()) {
            None => r.errors.push(format!(
                "pack {} is listed in the index but missing from storage",
                id.short()
            )),
            Some(s) if s != size => r.errors.push(format!(
                "pack {} has {s} bytes but the index says {size}: it was truncated or replaced",
                id.short()
            )),
            Some(_) => {}
        }
    }
    for name in stored.keys() {
        if !indexed_names.contains(name) {
            r.warnings.push(format!(
                "pack {} is not referenced by any index (left by an interrupted backup; prune removes it)",
                &name[..8.min(name.len())]
            ));
        }
    }

    // Snapshots and their trees.
    let (snaps, snap_warnings) = repo.list_snapshots().await?;
    r.errors.extend(snap_warnings);
    r.snapshots = snaps.len();
    let mut seen_trees: HashSet<Id> = HashSet::new();
    // blob → (snapshot, path) of one file using it, for naming damage.
    let mut users: HashMap<Id, Vec<String>> = HashMap::new();
    for (sid, snap) in &snaps {
        let mut stack = vec![(snap.tree, String::new())];
        while let Some((tid, path)) = stack.pop() {
            if !seen_trees.insert(tid) {
                continue;
            }
            r.trees += 1;
            let tree = match repo.load_tree(&tid).await {
                Ok(t) => t,
                Err(e) => {
                    r.errors
                        .push(format!("snapshot {} folder /{path}: {e}", sid.short()));
                    continue;
                }
            };
            for node in &tree.nodes {
                let p = if path.is_empty() {
                    node.display_name()
                } else {
                    format!("{path}/{}", node.display_name())
                };
                match node.kind {
                    NodeKind::Dir => match node.subtree {
                        Some(s) => stack.push((s, p)),
                        None => r
                            .errors
                            .push(format!("snapshot {} folder /{p} has no tree", sid.short())),
                    },
                    NodeKind::File => {
                        let index = repo.index_read();
                        for b in &node.content {
                            if !index.contains(b) {
                                r.errors.push(format!(
                                    "snapshot {} file /{p}: blob {} is missing from the index",
                                    sid.short(),
                                    b.short()
                                ));
                            }
                            let u = users.entry(*b).or_default();
                            if u.len() < 3 {
                                u.push(format!("snapshot {} file /{p}", sid.short()));
                            }
                        }
                    }
                    NodeKind::Symlink => {}
                }
            }
        }
    }

    // Data.
    if read_data != ReadData::None {
        let mut by_pack: BTreeMap<Id, Vec<crate::pack::PackEntry>> = BTreeMap::new();
        for loc in repo.index_read().iter() {
            by_pack.entry(loc.pack).or_default().push(loc.entry);
        }
        for (pid, _) in &indexed {
            let chosen = match read_data {
                ReadData::None => false,
                ReadData::All => true,
                ReadData::Subset { n, of } => {
                    of == 0 || pid.prefix_u64() % u64::from(of) == u64::from(n % of.max(1))
                }
            };
            if !chosen || !stored.contains_key(&pid.to_hex()) {
                continue;
            }
            let bytes = match storage.read(Kind::Pack, &pid.to_hex()).await {
                Ok(b) => b,
                Err(e) => {
                    r.errors
                        .push(format!("pack {}: cannot read: {e}", pid.short()));
                    continue;
                }
            };
            r.packs_read += 1;
            r.bytes_read += bytes.len() as u64;
            let mut damaged: Vec<Id> = Vec::new();
            if pack_id(&bytes) != *pid {
                r.errors.push(format!(
                    "pack {}: content does not match its name (modified or swapped)",
                    pid.short()
                ));
            }
            match read_header(repo.key(), &bytes) {
                Ok(entries) => {
                    let mut expected: Vec<_> = by_pack.get(pid).cloned().unwrap_or_default();
                    expected.sort_by_key(|e| e.offset);
                    let mut listed = entries.clone();
                    listed.sort_by_key(|e| e.offset);
                    for e in &expected {
                        if !listed.contains(e) {
                            r.errors.push(format!(
                                "pack {}: blob {} is in the index but not in the pack header",
                                pid.short(),
                                e.id.short()
                            ));
                        }
                    }
                }
                Err(e) => r.errors.push(format!("pack {}: {e}", pid.short())),
            }
            let key = repo.key().clone();
            let entries = by_pack.get(pid).cloned().unwrap_or_default();
            let pidc = *pid;
            let results = tokio::task::spawn_blocking(move || {
                entries
                    .iter()
                    .map(|e| {
                        let start = e.offset as usize;
                        let end = start + e.stored_len as usize;
                        let res = match bytes.get(start..end) {
                            Some(s) => decode_blob(&key, &pidc, e, s).map(|_| ()),
                            None => Err(crate::error::RepoError::Corrupt {
                                what: format!("blob {} in pack {}", e.id.short(), pidc.short()),
                                detail: "past the end of the pack".into(),
                            }),
                        };
                        (e.id, res)
                    })
                    .collect::<Vec<_>>()
            })
            .await
            .map_err(|e| crate::error::RepoError::Invalid(e.to_string()))?;
            for (id, res) in results {
                r.blobs_read += 1;
                if let Err(e) = res {
                    r.errors.push(e.to_string());
                    damaged.push(id);
                }
            }
            for id in damaged {
                if let Some(u) = users.get(&id) {
                    r.errors.push(format!(
                        "damaged blob {} affects {}",
                        id.short(),
                        u.join(", ")
                    ));
                }
            }
        }
    }
    Ok(r)
}

/// Re-reads every blob of one snapshot (trees and data), authenticating each: the check run
/// after a backup with `--verify`. Returns the problems found, naming files.
///
/// # Errors
/// Only when the snapshot's root cannot be listed at all.
pub async fn verify_snapshot(repo: &Repository, snap: &crate::Snapshot) -> Result<Vec<String>> {
    let mut errors = Vec::new();
    let mut seen: HashSet<Id> = HashSet::new();
    let mut stack = vec![(snap.tree, String::new())];
    while let Some((tid, path)) = stack.pop() {
        if !seen.insert(tid) {
            continue;
        }
        let tree = match repo.load_tree(&tid).await {
            Ok(t) => t,
            Err(e) => {
                errors.push(format!("folder /{path}: {e}"));
                continue;
            }
        };
        for node in &tree.nodes {
            let p = if path.is_empty() {
                node.display_name()
            } else {
                format!("{path}/{}", node.display_name())
            };
            match node.kind {
                NodeKind::Dir => stack.extend(node.subtree.map(|s| (s, p))),
                NodeKind::File => {
                    for b in &node.content {
                        if seen.insert(*b)
                            && let Err(e) = repo.read_blob(b).await
                        {
                            errors.push(format!("file /{p}: {e}"));
                        }
                    }
                }
                NodeKind::Symlink => {}
            }
        }
    }
    Ok(errors)
}
