//! Repository statistics: logical size of the snapshots, unique data, stored size, and the
//! resulting deduplication and compression ratios. Read-only.

use serde::Serialize;
use strongroom_storage::Kind;

use crate::error::{RepoError, Result};
use crate::repository::Repository;

/// Sizes of a repository.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct RepoStats {
    /// Snapshots.
    pub snapshots: usize,
    /// Sum of the sizes of all snapshots (what restoring all of them would write).
    pub logical_bytes: u64,
    /// Distinct blobs.
    pub blobs: usize,
    /// Plaintext bytes of the distinct blobs.
    pub unique_bytes: u64,
    /// Bytes of all packs.
    pub pack_bytes: u64,
    /// Bytes of all files of the repository (packs, index, snapshots, keys, config).
    pub total_bytes: u64,
    /// Packs.
    pub packs: usize,
    /// logical / unique.
    pub dedup_ratio: f64,
    /// unique / packs.
    pub compression_ratio: f64,
}

/// Computes the statistics.
///
/// # Errors
/// When the repository cannot be listed.
pub async fn stats(repo: &Repository) -> Result<RepoStats> {
    let (snaps, _) = repo.list_snapshots().await?;
    let mut s = RepoStats {
        snapshots: snaps.len(),
        ..RepoStats::default()
    };
    s.logical_bytes = snaps.iter().map(|(_, x)| x.size()).sum();
    {
        let index = repo.index_read();
        s.blobs = index.blob_count();
        s.unique_bytes = index.iter().map(|l| u64::from(l.entry.raw_len)).sum();
    }
    for kind in Kind::ALL {
        let list = repo
            .storage()
            .list(kind)
            .await
            .map_err(RepoError::storage("listing repository"))?;
        let bytes: u64 = list.iter().map(|o| o.size).sum();
        s.total_bytes += bytes;
        if kind == Kind::Pack {
            s.pack_bytes = bytes;
            s.packs = list.len();
        }
    }
    s.dedup_ratio = if s.unique_bytes > 0 {
        s.logical_bytes as f64 / s.unique_bytes as f64
    } else {
        0.0
    };
    s.compression_ratio = if s.pack_bytes > 0 {
        s.unique_bytes as f64 / s.pack_bytes as f64
    } else {
        0.0
    };
    Ok(s)
}
