//! The snapshot cache: a queryable copy of what the repository holds, plus what was learnt about
//! each snapshot (when it was verified, test-restored).
//!
//! The repository is the source of truth: this table can be cleared and repopulated from the
//! repository alone (`catalog rebuild`), so it must never hold anything the repository needs.
//! This module must not read the repository.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::db::{Arg, Db, DbRow, Filter, args, json_as};
use crate::error::{CatalogError, Result};

/// One cached snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotRecord {
    /// The repository's snapshot id (hex).
    pub snapshot_id: String,
    /// When the snapshot was taken.
    pub time: DateTime<Utc>,
    /// The repository's kind of snapshot (e.g. "files", "stream").
    pub kind: String,
    /// The source key it came from (e.g. "db:clinic", "media").
    pub source: String,
    /// The host that took it.
    pub host: String,
    /// Its tags.
    pub tags: Vec<String>,
    /// Its size in bytes, when known.
    pub size: Option<u64>,
    /// The snapshot it was based on, if any.
    pub parent: Option<String>,
    /// The repository's summary (JSON).
    pub summary: Value,
    /// Other metadata, such as a database manifest (JSON).
    pub meta: Value,
    /// When it was last verified.
    pub verified_at: Option<DateTime<Utc>>,
    /// When it was last test-restored.
    pub test_restored_at: Option<DateTime<Utc>>,
    /// The last verification's result (JSON).
    pub verification: Option<Value>,
}

/// Which snapshots [`Snapshots::list`] returns.
#[derive(Debug, Clone, PartialEq)]
pub struct SnapshotFilter {
    /// Only this kind.
    pub kind: Option<String>,
    /// Only this source.
    pub source: Option<String>,
    /// At most this many (default 1000).
    pub limit: u32,
    /// Skip this many first.
    pub offset: u64,
}

impl Default for SnapshotFilter {
    fn default() -> Self {
        SnapshotFilter {
            kind: None,
            source: None,
            limit: 1000,
            offset: 0,
        }
    }
}

fn map_snapshot(r: &dyn DbRow) -> Result<SnapshotRecord> {
    Ok(SnapshotRecord {
        snapshot_id: r.text("snapshot_id")?,
        time: r.time("time")?,
        kind: r.text("kind")?,
        source: r.text("source")?,
        host: r.text("host")?,
        tags: json_as(r, "tags")?,
        size: r.opt_u64("size")?,
        parent: r.opt_text("parent")?,
        summary: r.json("summary")?,
        meta: r.json("meta")?,
        verified_at: r.opt_time("verified_at")?,
        test_restored_at: r.opt_time("test_restored_at")?,
        verification: r.opt_json("verification")?,
    })
}

fn object_or_empty(v: &Value) -> Value {
    if v.is_null() {
        Value::Object(Default::default())
    } else {
        v.clone()
    }
}

/// The snapshots table; get it from [`crate::Catalog::snapshots`].
pub struct Snapshots<'a> {
    pub(crate) db: &'a Db,
}

impl Snapshots<'_> {
    /// Inserts or replaces a snapshot. Verification fields given as `None` keep what is
    /// stored, so refreshing a snapshot from the repository does not forget that it was
    /// verified.
    pub async fn upsert(&self, s: &SnapshotRecord) -> Result<()> {
        if s.snapshot_id.is_empty() {
            return Err(CatalogError::Invalid("a snapshot needs an id".into()));
        }
        let mut a = args![&s.snapshot_id, s.time, &s.kind, &s.source, &s.host];
        a.push(Arg::json(&s.tags)?);
        a.push(Arg::count(s.size, "snapshot size")?);
        a.push(Arg::from(&s.parent));
        a.push(Arg::Json(Some(object_or_empty(&s.summary))));
        a.push(Arg::Json(Some(object_or_empty(&s.meta))));
        a.extend(args![s.verified_at, s.test_restored_at]);
        a.push(Arg::opt_json(s.verification.as_ref()));
        self.db
            .execute(
                "INSERT INTO snapshots (snapshot_id, time, kind, source, host, tags, size, \
                 parent, summary, meta, verified_at, test_restored_at, verification) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
                 ON CONFLICT (snapshot_id) DO UPDATE SET time = excluded.time, \
                 kind = excluded.kind, source = excluded.source, host = excluded.host, \
                 tags = excluded.tags, size = excluded.size, parent = excluded.parent, \
                 summary = excluded.summary, meta = excluded.meta, \
                 verified_at = COALESCE(excluded.verified_at, snapshots.verified_at), \
                 test_restored_at = COALESCE(excluded.test_restored_at, \
                                             snapshots.test_restored_at), \
                 verification = COALESCE(excluded.verification, snapshots.verification)",
                a,
            )
            .await?;
        Ok(())
    }

    /// Records a verification of the snapshot.
    pub async fn mark_verified(&self, id: &str, at: DateTime<Utc>, result: &Value) -> Result<()> {
        let mut a = args![id, at];
        a.push(Arg::Json(Some(result.clone())));
        let n = self
            .db
            .execute(
                "UPDATE snapshots SET verified_at = $2, verification = $3 WHERE snapshot_id = $1",
                a,
            )
            .await?;
        if n == 0 {
            return Err(CatalogError::not_found(format!("snapshot {id}")));
        }
        Ok(())
    }

    /// Records a successful test restore of the snapshot.
    pub async fn mark_test_restored(&self, id: &str, at: DateTime<Utc>) -> Result<()> {
        let n = self
            .db
            .execute(
                "UPDATE snapshots SET test_restored_at = $2 WHERE snapshot_id = $1",
                args![id, at],
            )
            .await?;
        if n == 0 {
            return Err(CatalogError::not_found(format!("snapshot {id}")));
        }
        Ok(())
    }

    /// The snapshot with this id, if cached.
    pub async fn get(&self, id: &str) -> Result<Option<SnapshotRecord>> {
        self.db
            .fetch_optional(
                "SELECT * FROM snapshots WHERE snapshot_id = $1",
                args![id],
                map_snapshot,
            )
            .await
    }

    /// Snapshots matching the filter, newest first.
    pub async fn list(&self, filter: &SnapshotFilter) -> Result<Vec<SnapshotRecord>> {
        let mut w = Filter::default();
        if let Some(kind) = &filter.kind {
            let p = w.arg(kind);
            w.push(format!("kind = {p}"));
        }
        if let Some(source) = &filter.source {
            let p = w.arg(source);
            w.push(format!("source = {p}"));
        }
        let page = w.limit_offset(filter.limit, filter.offset)?;
        let sql = format!(
            "SELECT * FROM snapshots{} ORDER BY time DESC, snapshot_id DESC{page}",
            w.where_sql()
        );
        self.db.fetch_all(&sql, w.args, map_snapshot).await
    }

    /// How many snapshots are cached.
    pub async fn count(&self) -> Result<u64> {
        let n = self
            .db
            .fetch_one("SELECT COUNT(*) AS n FROM snapshots", args![], |r| {
                r.int("n")
            })
            .await?;
        u64::try_from(n).map_err(|_| CatalogError::corrupt("negative count"))
    }

    /// Removes one snapshot from the cache; true if it was there.
    pub async fn delete(&self, id: &str) -> Result<bool> {
        let n = self
            .db
            .execute("DELETE FROM snapshots WHERE snapshot_id = $1", args![id])
            .await?;
        Ok(n > 0)
    }

    /// Empties the cache (before a rebuild); returns how many rows were removed.
    pub async fn clear(&self) -> Result<u64> {
        self.db.execute("DELETE FROM snapshots", args![]).await
    }
}
