//! The audit log (who did what, when, from where) and the record of alerts sent (for
//! de-duplication and cool-downs).
//!
//! The audit log is append-only through this API: there is no update and no single-row delete.
//! This module must not decide what is audited or when an alert is due; callers must not put
//! secrets in `details`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::db::{Arg, Db, DbRow, Filter, args};
use crate::error::{CatalogError, Result};

/// One audit-log entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Catalog id.
    pub id: i64,
    /// When it happened.
    pub at: DateTime<Utc>,
    /// Who: a user name, `token:<name>`, `schedule:<name>` or `system`.
    pub actor: String,
    /// What: e.g. "backup.create", "restore", "user.delete".
    pub action: String,
    /// On what (a job id, snapshot id, user name), if anything.
    pub target: Option<String>,
    /// Free-form details (JSON).
    pub details: Value,
    /// The client address, if the action came over the network.
    pub ip: Option<String>,
}

/// An entry to append.
#[derive(Debug, Clone, PartialEq)]
pub struct NewAuditEntry {
    /// Who.
    pub actor: String,
    /// What.
    pub action: String,
    /// On what.
    pub target: Option<String>,
    /// Details (JSON; `null` is stored as `{}`).
    pub details: Value,
    /// Client address.
    pub ip: Option<String>,
}

/// Which entries [`Audit::list`] returns.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditFilter {
    /// Only this actor.
    pub actor: Option<String>,
    /// Only this action.
    pub action: Option<String>,
    /// At or after.
    pub from: Option<DateTime<Utc>>,
    /// Strictly before.
    pub before: Option<DateTime<Utc>>,
    /// At most this many (default 100).
    pub limit: u32,
    /// Skip this many first.
    pub offset: u64,
}

impl Default for AuditFilter {
    fn default() -> Self {
        AuditFilter {
            actor: None,
            action: None,
            from: None,
            before: None,
            limit: 100,
            offset: 0,
        }
    }
}

/// One alert that was sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertSent {
    /// Catalog id.
    pub id: i64,
    /// What the alert is about (de-duplication key, e.g. "backup_failed:db:clinic").
    pub key: String,
    /// Where it went (e.g. "email", "webhook").
    pub channel: String,
    /// When it was sent.
    pub sent_at: DateTime<Utc>,
    /// Free-form details (JSON).
    pub details: Value,
}

fn object_or_empty(v: &Value) -> Value {
    if v.is_null() {
        Value::Object(Default::default())
    } else {
        v.clone()
    }
}

fn map_audit(r: &dyn DbRow) -> Result<AuditEntry> {
    Ok(AuditEntry {
        id: r.int("id")?,
        at: r.time("at")?,
        actor: r.text("actor")?,
        action: r.text("action")?,
        target: r.opt_text("target")?,
        details: r.json("details")?,
        ip: r.opt_text("ip")?,
    })
}

fn map_alert(r: &dyn DbRow) -> Result<AlertSent> {
    Ok(AlertSent {
        id: r.int("id")?,
        key: r.text("key")?,
        channel: r.text("channel")?,
        sent_at: r.time("sent_at")?,
        details: r.json("details")?,
    })
}

/// The audit_log table; get it from [`crate::Catalog::audit`].
pub struct Audit<'a> {
    pub(crate) db: &'a Db,
}

impl Audit<'_> {
    /// Appends an entry that happened at `at`.
    pub async fn append(&self, new: &NewAuditEntry, at: DateTime<Utc>) -> Result<AuditEntry> {
        if new.actor.trim().is_empty() || new.action.trim().is_empty() {
            return Err(CatalogError::Invalid(
                "an audit entry needs an actor and an action".into(),
            ));
        }
        let mut a = args![at, &new.actor, &new.action, &new.target];
        a.push(Arg::Json(Some(object_or_empty(&new.details))));
        a.push(Arg::from(&new.ip));
        self.db
            .fetch_one(
                "INSERT INTO audit_log (at, actor, action, target, details, ip) \
                 VALUES ($1, $2, $3, $4, $5, $6) RETURNING *",
                a,
                map_audit,
            )
            .await
    }

    /// Entries matching the filter, newest first.
    pub async fn list(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>> {
        let mut w = Filter::default();
        if let Some(actor) = &filter.actor {
            let p = w.arg(actor);
            w.push(format!("actor = {p}"));
        }
        if let Some(action) = &filter.action {
            let p = w.arg(action);
            w.push(format!("action = {p}"));
        }
        if let Some(t) = filter.from {
            let p = w.arg(t);
            w.push(format!("at >= {p}"));
        }
        if let Some(t) = filter.before {
            let p = w.arg(t);
            w.push(format!("at < {p}"));
        }
        let page = w.limit_offset(filter.limit, filter.offset)?;
        let sql = format!(
            "SELECT * FROM audit_log{} ORDER BY at DESC, id DESC{page}",
            w.where_sql()
        );
        self.db.fetch_all(&sql, w.args, map_audit).await
    }

    /// Deletes entries older than `cutoff` (log retention); returns how many.
    pub async fn delete_before(&self, cutoff: DateTime<Utc>) -> Result<u64> {
        self.db
            .execute("DELETE FROM audit_log WHERE at < $1", args![cutoff])
            .await
    }
}

/// The alerts_sent table; get it from [`crate::Catalog::alerts`].
pub struct Alerts<'a> {
    pub(crate) db: &'a Db,
}

impl Alerts<'_> {
    /// Records that an alert was sent at `at`.
    pub async fn record(
        &self,
        key: &str,
        channel: &str,
        details: &Value,
        at: DateTime<Utc>,
    ) -> Result<AlertSent> {
        let mut a = args![key, channel, at];
        a.push(Arg::Json(Some(object_or_empty(details))));
        self.db
            .fetch_one(
                "INSERT INTO alerts_sent (key, channel, sent_at, details) \
                 VALUES ($1, $2, $3, $4) RETURNING *",
                a,
                map_alert,
            )
            .await
    }

    /// The newest alert sent for (key, channel), for cool-downs.
    pub async fn last(&self, key: &str, channel: &str) -> Result<Option<AlertSent>> {
        self.db
            .fetch_optional(
                "SELECT * FROM alerts_sent WHERE key = $1 AND channel = $2 \
                 ORDER BY sent_at DESC, id DESC LIMIT 1",
                args![key, channel],
                map_alert,
            )
            .await
    }

    /// The newest alerts, at most `limit`.
    pub async fn list(&self, limit: u32) -> Result<Vec<AlertSent>> {
        self.db
            .fetch_all(
                "SELECT * FROM alerts_sent ORDER BY sent_at DESC, id DESC LIMIT $1",
                args![i64::from(limit)],
                map_alert,
            )
            .await
    }

    /// Deletes records older than `cutoff`; returns how many.
    pub async fn delete_before(&self, cutoff: DateTime<Utc>) -> Result<u64> {
        self.db
            .execute("DELETE FROM alerts_sent WHERE sent_at < $1", args![cutoff])
            .await
    }
}
