//! The clinic's health endpoints: `backup/health/` (A8, plus `system_health` and
//! `health_recommendations`, which the page renders), the legacy `backup-health/` (C1),
//! `database-health/` (D2) and `/api/auth/database-health/` (P2). Figures come from the
//! catalog, the repository's disk usage and the database probes; answers are cached briefly.
//!
//! Must not fail because of a schedule, a stuck job or an empty catalog (the clinic's did).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use chrono::Duration;
use serde_json::{Value, json};
use strongroom_sources::HealthReport;

use super::schedules::schedule_row;
use super::{brief, duration, is_recent, size_mb, status_of, type_of};
use crate::error::{ApiError, ApiResult};
use crate::health::{self, BackupFacts, cached_json, json_bytes};
use crate::state::AppState;
use crate::util::{py_iso, round};

fn a8(f: &BackupFacts) -> Value {
    let (status, message) = f.status();
    let c = f.counts(Duration::days(7));
    json!({
        "success": true,
        "health_status": status,
        "message": message,
        "statistics": {
            "total_backups": c.total, "successful_backups": c.successful, "failed_backups": c.failed,
            "in_progress_backups": c.in_progress, "stuck_backups": f.stuck.len(),
        },
        "kpis": f.kpis(),
        "system_health": f.system_health(),
        "health_recommendations": f.recommendations(),
    })
}

fn c1(f: &BackupFacts) -> Value {
    let s = &f.summary;
    let week = f.now - Duration::days(7);
    let recent: Vec<Value> = f
        .jobs_30d
        .iter()
        .filter(|j| j.created_at >= week)
        .take(10)
        .map(|j| json!({
            "id": j.id, "backup_type": type_of(j.kind), "status": status_of(j.status),
            "started_at": py_iso(j.created_at), "completed_at": crate::util::py_iso_opt(j.completed_at),
            "duration_seconds": duration(j, f.now), "file_size_mb": size_mb(j), "is_recent": is_recent(j, f.now),
        }))
        .collect();
    let mut schedules: Vec<Value> = f
        .schedules
        .iter()
        .filter(|s| s.enabled)
        .map(|s| {
            let mut row = schedule_row(s);
            if let Some(o) = row.as_object_mut() {
                o.remove("id");
                o.remove("is_active");
            }
            row
        })
        .collect();
    schedules.sort_by_key(|r| (r["backup_type"].to_string(), r["schedule_type"].to_string()));
    json!({
        "timestamp": f.timestamp(),
        "system_health": f.system_health(),
        "backup_summary": {
            "last_24h_backups": s.last_24h_backups,
            "last_24h_successful": s.last_24h_successful,
            "last_week_backups": s.last_week_backups,
            "last_week_successful": s.last_week_successful,
            "latest_database_backup": s.latest_database_backup.as_ref().map(brief),
            "latest_media_backup": s.latest_media_backup.as_ref().map(brief),
            "latest_full_backup": s.latest_full_backup.as_ref().map(brief),
            "latest_verification": s.latest_verification.as_ref().map(brief),
            "health_score": round(s.health_score, 3),
            "health_status": s.health_status(),
        },
        "recent_backups": recent,
        "active_schedules": schedules,
        "health_recommendations": f.recommendations(),
    })
}

/// A8 `GET backup/health/`.
pub(crate) async fn backup_health(State(state): State<AppState>) -> ApiResult<Response> {
    let s = state.clone();
    let b = cached_json(&state, "compat_a8", || async move {
        Ok(a8(&health::backup_facts(&s).await?))
    })
    .await
    .map_err(|_| {
        ApiError::internal("backup health")
            .compat()
            .with_text("Health check failed")
    })?;
    Ok(json_bytes(StatusCode::OK, b))
}

/// C1 `GET backup-health/`.
pub(crate) async fn legacy_backup_health(State(state): State<AppState>) -> ApiResult<Response> {
    let s = state.clone();
    let b = cached_json(&state, "compat_c1", || async move {
        Ok(c1(&health::backup_facts(&s).await?))
    })
    .await
    .map_err(|_| {
        ApiError::internal("backup health")
            .legacy()
            .with_text("Failed to get backup health status")
    })?;
    Ok(json_bytes(StatusCode::OK, b))
}

trait WithText {
    fn with_text(self, m: &str) -> Self;
}

impl WithText for ApiError {
    fn with_text(mut self, m: &str) -> Self {
        self.message = m.to_owned();
        self
    }
}

fn unavailable(what: &str) -> Value {
    json!({"status": "healthy", "message": format!("{what} not available for this database type")})
}

fn level(s: &str) -> u8 {
    match s {
        "critical" | "error" => 2,
        "warning" => 1,
        _ => 0,
    }
}

/// Every check of D2 failing with `error`, as the clinic's monitor answers when its checks
/// raise (`{"status": "error", "error": …}`, connection and performance also with
/// `severity: critical`); all five keys stay, so the page's reads of `checks.storage.size` and
/// `checks.connection.active_connections` find an object.
fn d2_failed(
    now: chrono::DateTime<chrono::Utc>,
    overall: &str,
    error: &str,
    extended: Value,
) -> Value {
    let failed = |critical: bool| {
        let mut c = json!({"status": "error", "error": error});
        if critical {
            c["severity"] = json!("critical");
        }
        c
    };
    json!({
        "timestamp": py_iso(now), "overall_status": overall,
        "checks": {
            "connection": failed(true), "performance": failed(true), "storage": failed(false),
            "locks": failed(false), "indexes": failed(false),
        },
        "extended": extended,
    })
}

fn d2(name: Option<&str>, r: Option<&HealthReport>, now: chrono::DateTime<chrono::Utc>) -> Value {
    let Some(r) = r else {
        return d2_failed(now, "warning", "No database is configured", json!({}));
    };
    if !r.reachable {
        let error = r
            .error
            .clone()
            .unwrap_or_else(|| "the database did not answer".to_owned());
        return d2_failed(
            now,
            "critical",
            &error,
            json!({"database": name, "engine": r.engine.name()}),
        );
    }
    let connection = match (
        r.total_connections.or(r.active_connections),
        r.max_connections,
    ) {
        (Some(n), Some(m)) if m > 0 => {
            let pct = round(100.0 * crate::util::f(n) / crate::util::f(m), 2);
            let st = if pct > 90.0 {
                "critical"
            } else if pct > 80.0 {
                "warning"
            } else {
                "healthy"
            };
            json!({"status": st, "active_connections": r.active_connections.unwrap_or(n),
                   "max_connections": m, "usage_percent": pct})
        }
        _ => json!({"status": "healthy", "message": "Connection check passed",
                    "active_connections": r.active_connections}),
    };
    let secs = r.latency_ms.map(|ms| round(ms / 1000.0, 6));
    let performance = json!({
        "status": match secs { Some(s) if s > 10.0 => "critical", Some(s) if s > 5.0 => "warning", _ => "healthy" },
        "query_time": secs, "threshold": 5.0,
    });
    let storage = match r.size_bytes {
        Some(b) => {
            json!({"status": "healthy", "size": crate::util::pretty_size(b), "size_bytes": b})
        }
        None => unavailable("Storage check"),
    };
    let locks = match r.waiting_locks {
        Some(l) => {
            json!({"status": if l > 50 { "critical" } else if l > 10 { "warning" } else { "healthy" }, "blocked_locks": l})
        }
        None => unavailable("Lock check"),
    };
    let indexes = unavailable("Index check");
    let worst = [&connection, &performance, &storage, &locks, &indexes]
        .iter()
        .map(|c| level(c["status"].as_str().unwrap_or("healthy")))
        .max()
        .unwrap_or(0);
    let lat = secs.map_or(Value::Null, |s| json!(s));
    let overall = ["healthy", "warning", "critical"][usize::from(worst)];
    json!({
        "timestamp": py_iso(now),
        "overall_status": overall,
        "checks": {"connection": connection, "performance": performance, "storage": storage,
                   "locks": locks, "indexes": indexes},
        "extended": {"latency_p50": lat, "latency_p95": lat, "latency_p99": lat,
                     "last_migration": null, "cache_hit_rate": r.cache_hit_ratio,
                     "database": name, "engine": r.engine.name(), "version": r.version},
    })
}

/// D2 `GET database-health/` (the first configured database).
pub(crate) async fn database_health(State(state): State<AppState>) -> ApiResult<Response> {
    let reports = health::probe_all(&state).await;
    let first = reports.first();
    let v = d2(
        first.map(|(n, _)| n.as_str()),
        first.map(|(_, r)| r),
        state.now(),
    );
    Ok(json_bytes(
        StatusCode::OK,
        serde_json::to_vec(&v).unwrap_or_default().into(),
    ))
}

/// P2 `GET /api/auth/database-health/`.
pub(crate) async fn auth_database_health(State(state): State<AppState>) -> ApiResult<Response> {
    let reports = health::probe_all(&state).await;
    let v = match reports.first() {
        Some((_, r)) if r.reachable => json!({
            "status": "healthy",
            "database_size": match (r.engine, r.size_bytes) {
                (strongroom_sources::Engine::Sqlite, _) => "N/A (SQLite)".to_owned(),
                (_, Some(b)) => crate::util::pretty_size(b),
                (_, None) => "unknown".to_owned(),
            },
            "connection_count": r.total_connections.or(r.active_connections).unwrap_or(0),
            "tables": [],
        }),
        Some((_, r)) => {
            // The clinic's answer when its check fails: 500 with this body (contract P2).
            let body = json!({"status": "unhealthy", "error": r.error.clone().unwrap_or_else(|| "the database did not answer".to_owned())});
            return Ok(json_bytes(
                StatusCode::INTERNAL_SERVER_ERROR,
                serde_json::to_vec(&body).unwrap_or_default().into(),
            ));
        }
        None => {
            json!({"status": "unhealthy", "error": "No database is configured", "database_size": "N/A", "connection_count": 0, "tables": []})
        }
    };
    Ok(json_bytes(
        StatusCode::OK,
        serde_json::to_vec(&v).unwrap_or_default().into(),
    ))
}
