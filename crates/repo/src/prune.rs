//! Prune: remove what no snapshot needs. Planned first ([`plan`], pure reading), shown,
//! then executed ([`execute`]) under an exclusive lock.
//!
//! Planning reads every snapshot and tree; any listing or read failure aborts the plan, so
//! nothing is deleted on doubt. Each indexed pack is then kept (all blobs used, or little
//! waste), repacked (used blobs copied to new packs when more than [`REPACK_WASTE`] of it is
//! unused) or deleted (nothing used). Packs no index lists are deleted (leftovers of
//! interrupted backups: the exclusive lock guarantees no backup is writing).
//!
//! Execution order keeps every snapshot restorable at every step: (1) write repacked packs;
//! (2) write one new index for every kept and new pack, superseding all old index files;
//! (3) delete the old index files; (4) delete unused, repacked and unindexed packs.

use std::collections::{HashMap, HashSet};

use strongroom_storage::Kind;

use crate::error::{RepoError, Result};
use crate::id::Id;
use crate::index::{IndexFile, IndexPack, MasterIndex};
use crate::lock::LockGuard;
use crate::pack::PackEntry;
use crate::repository::{Repository, SealedBlob};
use crate::tree::NodeKind;

/// Fraction of unused bytes above which a pack is repacked.
pub const REPACK_WASTE: f64 = 0.2;

/// What prune will do.
#[derive(Debug, Clone, Default)]
pub struct PrunePlan {
    /// Packs kept as they are.
    pub keep: Vec<Id>,
    /// Packs whose used blobs are copied to new packs, then deleted.
    pub repack: Vec<Id>,
    /// Packs with nothing used, deleted.
    pub delete: Vec<Id>,
    /// Packs in storage that no index lists, deleted.
    pub unindexed: Vec<Id>,
    /// Index files replaced by the new index.
    pub old_index_files: Vec<Id>,
    /// Bytes used by snapshots.
    pub used_bytes: u64,
    /// Bytes freed.
    pub freed_bytes: u64,
    /// Bytes copied by repacking.
    pub repack_bytes: u64,
    /// Blobs used.
    pub used_blobs: usize,
    /// Blob locations in kept packs, by pack (for the new index).
    kept_entries: HashMap<Id, (u64, Vec<PackEntry>)>,
    /// Blobs to copy out of repacked packs.
    copy: Vec<(Id, PackEntry)>,
}

impl PrunePlan {
    /// True when there is nothing to do.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.repack.is_empty() && self.delete.is_empty() && self.unindexed.is_empty()
    }

    /// A human summary.
    #[must_use]
    pub fn describe(&self) -> String {
        format!(
            "{} packs kept, {} repacked ({} bytes copied), {} unused and {} unindexed deleted; {} bytes freed, {} blobs in use",
            self.keep.len(),
            self.repack.len(),
            self.repack_bytes,
            self.delete.len(),
            self.unindexed.len(),
            self.freed_bytes,
            self.used_blobs
        )
    }
}

/// Collects every blob reachable from every snapshot.
///
/// # Errors
/// On any listing or read failure (the caller then deletes nothing).
pub async fn used_blobs(repo: &Repository) -> Result<HashSet<Id>> {
    let names = repo
        .storage()
        .list(Kind::Snapshot)
        .await
        .map_err(RepoError::storage("listing snapshots"))?;
    let mut used = HashSet::new();
    let mut stack = Vec::new();
    for n in names {
        let (_, snap) = repo.read_snapshot(&n.name).await?;
        stack.push(snap.tree);
    }
    while let Some(t) = stack.pop() {
        if !used.insert(t) {
            continue;
        }
        let tree = repo.load_tree(&t).await?;
        for node in tree.nodes {
            match node.kind {
                NodeKind::Dir => stack.extend(node.subtree),
                NodeKind::File => {
                    used.extend(node.content);
                    for l in node.content_lists {
                        if used.insert(l) {
                            used.extend(repo.load_content_list(&l).await?);
                        }
                    }
                }
                NodeKind::Symlink => {}
            }
        }
    }
    Ok(used)
}

/// Plans a prune. Reads only.
///
/// # Errors
/// On any listing or read failure, or when a used blob is missing (the repository needs
/// repair first): nothing may be deleted then.
pub async fn plan(repo: &Repository) -> Result<PrunePlan> {
    let storage = repo.storage();
    let index_names = storage
        .list(Kind::Index)
        .await
        .map_err(RepoError::storage("listing index files"))?;
    let mut index = MasterIndex::default();
    let mut old_index_files = Vec::new();
    // Every location of every blob (duplicates included), by pack.
    let mut packs: HashMap<Id, (u64, Vec<PackEntry>)> = HashMap::new();
    for f in &index_names {
        // A damaged index file aborts: its packs may hold the only copy of used blobs.
        let (id, file) = repo.read_index_file(&f.name).await?;
        index.add_file(&file);
        old_index_files.push(id);
        for p in file.packs {
            let e = packs.entry(p.id).or_insert((p.size, Vec::new()));
            for b in p.blobs {
                if !e.1.contains(&b) {
                    e.1.push(b);
                }
            }
        }
    }
    repo.replace_index(index.clone(), old_index_files.clone());
    let used = used_blobs(repo).await?;
    for b in &used {
        if !index.contains(b) {
            return Err(RepoError::Corrupt {
                what: "repository".into(),
                detail: format!(
                    "blob {} is used by a snapshot but missing from every index; run verify",
                    b.short()
                ),
            });
        }
    }
    let stored = storage
        .list(Kind::Pack)
        .await
        .map_err(RepoError::storage("listing packs"))?;
    let stored_names: HashSet<&str> = stored.iter().map(|o| o.name.as_str()).collect();
    let mut plan = PrunePlan {
        old_index_files,
        used_blobs: used.len(),
        ..PrunePlan::default()
    };
    // Each used blob is claimed by exactly one pack: the first kept location.
    let mut claimed: HashSet<Id> = HashSet::new();
    let mut pack_ids: Vec<Id> = packs.keys().copied().collect();
    pack_ids.sort();
    // Prefer packs that are fully used, so duplicates get dropped from the others.
    pack_ids.sort_by_key(|p| {
        packs.get(p).map_or(0, |(_, es)| {
            es.iter().filter(|e| !used.contains(&e.id)).count()
        })
    });
    for pid in pack_ids {
        let Some((size, entries)) = packs.get(&pid) else {
            continue;
        };
        if !stored_names.contains(pid.to_hex().as_str()) {
            return Err(RepoError::Corrupt {
                what: format!("pack {}", pid.short()),
                detail: "listed in the index but missing from storage; run verify".into(),
            });
        }
        let mut mine = Vec::new();
        let mut used_bytes = 0u64;
        for e in entries {
            if used.contains(&e.id) && !claimed.contains(&e.id) {
                claimed.insert(e.id);
                used_bytes += u64::from(e.stored_len);
                mine.push(*e);
            }
        }
        let total: u64 = entries.iter().map(|e| u64::from(e.stored_len)).sum();
        plan.used_bytes += used_bytes;
        if mine.is_empty() {
            plan.delete.push(pid);
            plan.freed_bytes += size;
        } else if mine.len() == entries.len()
            || (total - used_bytes) as f64 <= REPACK_WASTE * total as f64
        {
            plan.keep.push(pid);
            plan.kept_entries.insert(pid, (*size, entries.clone()));
        } else {
            plan.repack.push(pid);
            plan.repack_bytes += used_bytes;
            plan.freed_bytes += size.saturating_sub(used_bytes);
            plan.copy.extend(mine.into_iter().map(|e| (pid, e)));
        }
    }
    for o in &stored {
        if let Ok(id) = Id::from_hex(&o.name)
            && !packs.contains_key(&id)
        {
            plan.unindexed.push(id);
            plan.freed_bytes += o.size;
        }
    }
    Ok(plan)
}

/// Executes a plan (see the module docs for the order).
///
/// # Errors
/// When a step fails; what was done until then leaves the repository valid.
pub async fn execute(repo: &Repository, lock: &LockGuard, plan: PrunePlan) -> Result<()> {
    if plan.is_empty() {
        return Ok(());
    }
    lock.check().await?;
    // (1) Repack.
    let mut packer = repo.packer();
    packer.without_intermediate_index();
    // Do not let the packer skip blobs because they are indexed in the packs being removed.
    let mut new_packs: Vec<IndexPack> = Vec::new();
    {
        let mut tmp_index = MasterIndex::default();
        for (pid, (size, entries)) in &plan.kept_entries {
            tmp_index.add_pack(*pid, *size, entries);
        }
        repo.replace_index(tmp_index, repo.index_file_ids());
    }
    for (pid, e) in &plan.copy {
        let stored = repo
            .storage()
            .read_range(
                Kind::Pack,
                &pid.to_hex(),
                u64::from(e.offset),
                u64::from(e.stored_len),
            )
            .await
            .map_err(RepoError::storage(format!(
                "reading pack {} to repack",
                pid.short()
            )))?;
        // Authenticate before copying: never copy damage into a new pack.
        crate::repository::decode_blob(repo.key(), pid, e, &stored)?;
        packer
            .add(SealedBlob {
                id: e.id,
                blob_type: e.blob_type,
                compression: e.compression,
                raw_len: e.raw_len,
                sealed: stored.to_vec(),
            })
            .await?;
    }
    new_packs.extend(packer.finish_packs().await?);
    lock.check().await?;
    // (2) One new index for everything kept, superseding the old index files.
    let mut file = IndexFile {
        supersedes: plan.old_index_files.clone(),
        packs: Vec::new(),
    };
    let mut kept: Vec<_> = plan.kept_entries.iter().collect();
    kept.sort_by_key(|(id, _)| **id);
    for (pid, (size, entries)) in kept {
        file.packs.push(IndexPack {
            id: *pid,
            size: *size,
            blobs: entries.clone(),
        });
    }
    file.packs.extend(new_packs);
    let new_id = repo.write_index_file(&file).await?;
    lock.check().await?;
    // (3) Old index files (one already gone is fine: the new index holds everything).
    for id in &plan.old_index_files {
        match repo.storage().delete(Kind::Index, &id.to_hex()).await {
            Ok(()) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => {
                return Err(RepoError::Storage {
                    context: format!("deleting index file {}", id.short()),
                    source: e,
                });
            }
        }
    }
    let mut index = MasterIndex::default();
    index.add_file(&file);
    repo.replace_index(index, vec![new_id]);
    // (4) Packs.
    for id in plan
        .delete
        .iter()
        .chain(&plan.repack)
        .chain(&plan.unindexed)
    {
        match repo.storage().delete(Kind::Pack, &id.to_hex()).await {
            Ok(()) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => {
                return Err(RepoError::Storage {
                    context: format!("deleting pack {}", id.short()),
                    source: e,
                });
            }
        }
    }
    Ok(())
}
