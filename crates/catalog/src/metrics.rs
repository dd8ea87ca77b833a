//! Health metrics (the clinic's `SystemHealthMetric`): named measurements over time, written by
//! the health monitor and read by the dashboard.
//!
//! This module must not measure anything or decide thresholds: it stores what it is given.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::db::{Arg, Db, DbRow, Filter, args, enum_as};
use crate::error::{CatalogError, Result};
use crate::types::MetricStatus;

/// One recorded measurement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealthMetric {
    /// Catalog id.
    pub id: i64,
    /// What was measured (e.g. "backup_health", "storage_usage").
    pub name: String,
    /// The measured value.
    pub value: f64,
    /// Its unit (e.g. "%", "bytes"); may be empty.
    pub unit: String,
    /// The state the value means.
    pub status: MetricStatus,
    /// When it was measured.
    pub recorded_at: DateTime<Utc>,
    /// Free-form details (JSON).
    pub details: Value,
}

/// A measurement to record.
#[derive(Debug, Clone, PartialEq)]
pub struct NewMetric {
    /// What was measured.
    pub name: String,
    /// The measured value.
    pub value: f64,
    /// Its unit; may be empty.
    pub unit: String,
    /// The state the value means.
    pub status: MetricStatus,
    /// Free-form details (JSON; `null` is stored as `{}`).
    pub details: Value,
}

/// Which metrics [`Metrics::list`] returns.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricFilter {
    /// Only this name.
    pub name: Option<String>,
    /// Recorded at or after.
    pub from: Option<DateTime<Utc>>,
    /// Recorded strictly before.
    pub before: Option<DateTime<Utc>>,
    /// At most this many (default 1000).
    pub limit: u32,
    /// Skip this many first.
    pub offset: u64,
}

impl Default for MetricFilter {
    fn default() -> Self {
        MetricFilter {
            name: None,
            from: None,
            before: None,
            limit: 1000,
            offset: 0,
        }
    }
}

/// The health_metrics table; get it from [`crate::Catalog::metrics`].
pub struct Metrics<'a> {
    pub(crate) db: &'a Db,
}

fn map_metric(r: &dyn DbRow) -> Result<HealthMetric> {
    Ok(HealthMetric {
        id: r.int("id")?,
        name: r.text("name")?,
        value: r.real("value")?,
        unit: r.text("unit")?,
        status: enum_as(r, "status")?,
        recorded_at: r.time("recorded_at")?,
        details: r.json("details")?,
    })
}

impl Metrics<'_> {
    /// Records a measurement taken at `at`.
    pub async fn insert(&self, new: &NewMetric, at: DateTime<Utc>) -> Result<HealthMetric> {
        if new.name.trim().is_empty() || !new.value.is_finite() {
            return Err(CatalogError::Invalid(
                "a metric needs a name and a finite value".into(),
            ));
        }
        let details = if new.details.is_null() {
            Value::Object(Default::default())
        } else {
            new.details.clone()
        };
        let mut a = args![&new.name, new.value, &new.unit, new.status.as_str(), at];
        a.push(Arg::Json(Some(details)));
        self.db
            .fetch_one(
                "INSERT INTO health_metrics (name, value, unit, status, recorded_at, details) \
                 VALUES ($1, $2, $3, $4, $5, $6) RETURNING *",
                a,
                map_metric,
            )
            .await
    }

    /// The newest measurement with this name.
    pub async fn latest(&self, name: &str) -> Result<Option<HealthMetric>> {
        self.db
            .fetch_optional(
                "SELECT * FROM health_metrics WHERE name = $1 \
                 ORDER BY recorded_at DESC, id DESC LIMIT 1",
                args![name],
                map_metric,
            )
            .await
    }

    /// The newest measurement of every name, by name.
    pub async fn latest_per_name(&self) -> Result<Vec<HealthMetric>> {
        self.db
            .fetch_all(
                "SELECT * FROM health_metrics m WHERE m.id = (\
                   SELECT i.id FROM health_metrics i WHERE i.name = m.name \
                   ORDER BY i.recorded_at DESC, i.id DESC LIMIT 1) \
                 ORDER BY m.name",
                args![],
                map_metric,
            )
            .await
    }

    /// Measurements matching the filter, newest first.
    pub async fn list(&self, filter: &MetricFilter) -> Result<Vec<HealthMetric>> {
        let mut w = Filter::default();
        if let Some(name) = &filter.name {
            let p = w.arg(name);
            w.push(format!("name = {p}"));
        }
        if let Some(t) = filter.from {
            let p = w.arg(t);
            w.push(format!("recorded_at >= {p}"));
        }
        if let Some(t) = filter.before {
            let p = w.arg(t);
            w.push(format!("recorded_at < {p}"));
        }
        let page = w.limit_offset(filter.limit, filter.offset)?;
        let sql = format!(
            "SELECT * FROM health_metrics{} ORDER BY recorded_at DESC, id DESC{page}",
            w.where_sql()
        );
        self.db.fetch_all(&sql, w.args, map_metric).await
    }

    /// Deletes measurements recorded before `cutoff`; returns how many.
    pub async fn delete_before(&self, cutoff: DateTime<Utc>) -> Result<u64> {
        self.db
            .execute(
                "DELETE FROM health_metrics WHERE recorded_at < $1",
                args![cutoff],
            )
            .await
    }
}
