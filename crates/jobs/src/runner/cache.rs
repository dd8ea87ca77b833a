//! The catalog's snapshot cache, seen from the repository: the row each snapshot gets, and
//! `catalog rebuild` (clear the cache and refill it from the repository alone).
//!
//! What a row holds comes from the snapshot itself (its kind, source name, host, tags, size,
//! parent, summary and meta), so a rebuilt row equals the row written after the backup, except
//! for what only the catalog knew (when it was verified or test-restored). What it must not
//! do: write to the repository, or copy anything secret into the catalog: PostgreSQL globals
//! (`globals_sql`, which may hold role password hashes) stay in the repository only.

use std::collections::BTreeMap;

use serde_json::Value;
use strongroom_catalog::{Catalog, SnapshotRecord};
use strongroom_repo::{Id, Repository, Snapshot, SnapshotKind};

use super::RunnerError;

/// The kind recorded for a snapshot: `database` or `media` for the snapshots Strongroom's
/// jobs take, else the engine's `files` or `stream`.
#[must_use]
pub fn snapshot_kind(snap: &Snapshot) -> String {
    match snap.meta.get("type").and_then(Value::as_str) {
        Some(t @ ("database" | "media")) => t.to_owned(),
        _ => match snap.kind {
            SnapshotKind::Files => "files".into(),
            SnapshotKind::Stream => "stream".into(),
        },
    }
}

/// The configured source a snapshot belongs to (`meta.name` of database and media
/// snapshots), if it was taken by a job.
#[must_use]
pub fn source_name(snap: &Snapshot) -> Option<String> {
    match snap.meta.get("type").and_then(Value::as_str) {
        Some("database" | "media") => snap
            .meta
            .get("name")
            .and_then(Value::as_str)
            .map(str::to_owned),
        _ => None,
    }
}

/// The cache row of a snapshot (no verification fields: those are the catalog's own).
#[must_use]
pub fn record_for(id: &Id, snap: &Snapshot) -> SnapshotRecord {
    let mut meta = snap.meta.clone();
    if let Some(obj) = meta.as_object_mut()
        && obj.remove("globals_sql").is_some()
    {
        obj.insert("has_globals".into(), Value::Bool(true));
    }
    SnapshotRecord {
        snapshot_id: id.to_hex(),
        time: snap.timestamp(),
        kind: snapshot_kind(snap),
        source: source_name(snap).unwrap_or_else(|| snap.source.clone()),
        host: snap.host.clone(),
        tags: snap.tags.clone(),
        size: Some(snap.size()),
        parent: snap.parent.map(|p| p.to_hex()),
        summary: serde_json::to_value(&snap.summary).unwrap_or(Value::Null),
        meta,
        verified_at: None,
        test_restored_at: None,
        verification: None,
    }
}

/// What a rebuild did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RebuildReport {
    /// Rows removed from the cache first.
    pub removed: u64,
    /// Rows written from the repository.
    pub added: u64,
    /// Rows written, by kind.
    pub by_kind: BTreeMap<String, u64>,
    /// Snapshot files that could not be read (they are not cached).
    pub warnings: Vec<String>,
}

/// Clears the snapshot cache and refills it from the repository alone.
///
/// # Errors
/// When the repository cannot be listed (the cache is then left as it was) or the catalog
/// fails.
pub async fn rebuild(repo: &Repository, catalog: &Catalog) -> Result<RebuildReport, RunnerError> {
    // List first: a repository that cannot be read must not leave an empty cache behind.
    let (snaps, warnings) = repo.list_snapshots().await?;
    let removed = catalog.snapshots().clear().await?;
    let mut report = RebuildReport {
        removed,
        warnings,
        ..RebuildReport::default()
    };
    for (id, snap) in &snaps {
        let rec = record_for(id, snap);
        *report.by_kind.entry(rec.kind.clone()).or_default() += 1;
        catalog.snapshots().upsert(&rec).await?;
        report.added += 1;
    }
    Ok(report)
}

/// Adds (or refreshes) the cache rows of every snapshot in the repository and removes rows
/// of snapshots that are gone, keeping what the catalog knows about verifications.
///
/// # Errors
/// When the repository cannot be listed or the catalog fails.
pub async fn refresh(repo: &Repository, catalog: &Catalog) -> Result<u64, RunnerError> {
    let (snaps, warnings) = repo.list_snapshots().await?;
    for (id, snap) in &snaps {
        catalog.snapshots().upsert(&record_for(id, snap)).await?;
    }
    // Only when every snapshot file could be read is a missing row proof that it is gone.
    if warnings.is_empty() {
        let ids: std::collections::HashSet<String> =
            snaps.iter().map(|(id, _)| id.to_hex()).collect();
        let cached = catalog
            .snapshots()
            .list(&strongroom_catalog::SnapshotFilter {
                limit: u32::MAX,
                ..Default::default()
            })
            .await?;
        for rec in cached {
            if !ids.contains(&rec.snapshot_id) {
                catalog.snapshots().delete(&rec.snapshot_id).await?;
            }
        }
    }
    Ok(snaps.len() as u64)
}
