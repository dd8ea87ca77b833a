//! `/api/v1/health`: backup health (the clinic's rule set, counting backups only, stuck jobs
//! by heartbeat), database health (probes), system health (repository disk usage, catalog,
//! job queue), each with recommendations.
//!
//! Must not probe more often than the probe cache allows, or write anything.

use axum::extract::State;
use axum::http::{Method, StatusCode};
use axum::response::Response;
use chrono::Duration;
use serde_json::{Value, json};
use strongroom_catalog::JobStatus;

use crate::auth::Permission;
use crate::error::ApiResult;
use crate::health::{self, BackupFacts};
use crate::openapi::s::*;
use crate::routes::{Doc, Registry};
use crate::state::AppState;

pub(crate) fn register(r: &mut Registry) {
    let status = enumeration(&["healthy", "warning", "unhealthy", "critical"]);
    let backups = all(&[
        ("status", status.clone()),
        ("message", string()),
        ("statistics", any_obj()),
        ("kpis", any_obj()),
        ("last_successful_backup", nullable(time())),
        ("sources", arr(any_obj())),
        ("recommendations", arr(sref("Recommendation"))),
    ]);
    let databases = all(&[("status", status.clone()), ("databases", arr(any_obj()))]);
    let system = all(&[
        ("status", status.clone()),
        ("repository", any_obj()),
        ("catalog", any_obj()),
        ("jobs", any_obj()),
        ("recommendations", arr(sref("Recommendation"))),
    ]);
    r.v1(
        Method::GET,
        "/api/v1/health",
        Permission::Read,
        Doc::new("health", "Backup, database and system health together").ok(
            200,
            all(&[
                ("status", status),
                ("backups", backups.clone()),
                ("databases", databases.clone()),
                ("system", system.clone()),
            ]),
        ),
        overall,
    );
    r.v1(
        Method::GET,
        "/api/v1/health/backups",
        Permission::Read,
        Doc::new("health", "Backup health with recommendations").ok(200, backups),
        backups_h,
    );
    r.v1(
        Method::GET,
        "/api/v1/health/databases",
        Permission::Read,
        Doc::new("health", "Database health (probes)").ok(200, databases),
        databases_h,
    );
    r.v1(
        Method::GET,
        "/api/v1/health/system",
        Permission::Read,
        Doc::new(
            "health",
            "System health: repository disk usage, catalog, job queue",
        )
        .ok(200, system),
        system_h,
    );
}

fn rec(kind: &str, priority: &str, message: String, action: &str) -> Value {
    json!({"type": kind, "priority": priority, "message": message, "action": action})
}

fn backups_json(f: &BackupFacts) -> Value {
    let (status, message) = f.status();
    let c = f.counts(Duration::days(7));
    let mut sources = std::collections::BTreeMap::<String, Value>::new();
    for j in &f.jobs_30d {
        let key = format!("{}:{}", j.kind, j.source);
        let entry = sources.entry(key).or_insert_with(|| json!({
            "source": j.source, "kind": j.kind, "last_status": j.status, "last_at": j.created_at,
            "last_success_at": Value::Null,
        }));
        if j.status == JobStatus::Success && entry["last_success_at"].is_null() {
            entry["last_success_at"] = json!(j.created_at);
        }
    }
    let mut recs = f.recommendations();
    if !f.stuck.is_empty() {
        recs.insert(
            0,
            rec(
                "stuck_jobs",
                "high",
                format!(
                    "{} job(s) have not sent a heartbeat for over {} minutes.",
                    f.stuck.len(),
                    f.stuck_minutes
                ),
                "Check the workers; interrupted jobs are marked failed on restart",
            ),
        );
    }
    json!({
        "status": status,
        "message": message,
        "statistics": {
            "total_backups": c.total, "successful_backups": c.successful, "failed_backups": c.failed,
            "in_progress_backups": c.in_progress, "stuck_backups": f.stuck.len(),
            "stuck_job_ids": f.stuck.iter().map(|j| j.id).collect::<Vec<_>>(),
        },
        "kpis": f.kpis(),
        "last_successful_backup": f.last_success.as_ref().map(|j| j.created_at),
        "sources": sources.into_values().collect::<Vec<_>>(),
        "recommendations": recs,
    })
}

async fn databases_json(state: &AppState) -> Value {
    let reports = health::probe_all(state).await;
    let mut worst = "healthy";
    let dbs: Vec<Value> = reports
        .iter()
        .map(|(name, r)| {
            let st = health::database_status(r);
            if st == "critical" || (st == "warning" && worst == "healthy") {
                worst = st;
            }
            json!({
                "name": name, "engine": r.engine.name(), "status": st, "reachable": r.reachable,
                "latency_ms": r.latency_ms, "version": r.version, "size_bytes": r.size_bytes,
                "active_connections": r.active_connections, "total_connections": r.total_connections,
                "max_connections": r.max_connections, "waiting_locks": r.waiting_locks,
                "checked_at": r.checked_at, "error": r.error,
            })
        })
        .collect();
    if dbs.is_empty() {
        worst = "warning";
    }
    json!({"status": worst, "databases": dbs})
}

async fn system_json(state: &AppState, f: &BackupFacts) -> Value {
    let d = f.disk;
    let used = d.used_percent();
    let mut recs = Vec::new();
    let mut status = "healthy";
    if let Some(u) = used {
        if u >= 95.0 {
            status = "critical";
            recs.push(rec(
                "disk_space",
                "high",
                format!("The repository's disk is {u:.1}% full."),
                "Free space or move the repository",
            ));
        } else if u >= 85.0 {
            status = "warning";
            recs.push(rec(
                "disk_space",
                "medium",
                format!("The repository's disk is {u:.1}% full."),
                "Plan more space; check retention",
            ));
        }
    }
    let queued = f
        .active
        .iter()
        .filter(|j| j.status == JobStatus::Queued)
        .count();
    let running = f
        .active
        .iter()
        .filter(|j| j.status == JobStatus::InProgress)
        .count();
    if !f.stuck.is_empty() {
        status = if status == "critical" {
            status
        } else {
            "warning"
        };
    }
    let location = state
        .config()
        .repository
        .location
        .as_ref()
        .map(ToString::to_string);
    json!({
        "status": status,
        "repository": {
            "location": location, "size_bytes": d.repository_bytes, "disk_total_bytes": d.fs_total,
            "disk_available_bytes": d.fs_available, "disk_used_percent": used,
            "available_to_server": state.inner.repo.is_some(),
        },
        "catalog": {
            "backend": format!("{:?}", state.catalog().backend()).to_lowercase(),
            "schema_version": state.catalog().schema_version(),
        },
        "jobs": {"queued": queued, "in_progress": running, "stuck": f.stuck.len()},
        "recommendations": recs,
    })
}

async fn backups_h(State(state): State<AppState>) -> ApiResult<Response> {
    let s = state.clone();
    let b = health::cached_json(&state, "v1_backups", || async move {
        Ok(backups_json(&health::backup_facts(&s).await?))
    })
    .await?;
    Ok(health::json_bytes(StatusCode::OK, b))
}

async fn databases_h(State(state): State<AppState>) -> ApiResult<Response> {
    let v = databases_json(&state).await;
    Ok(health::json_bytes(
        StatusCode::OK,
        serde_json::to_vec(&v).unwrap_or_default().into(),
    ))
}

async fn system_h(State(state): State<AppState>) -> ApiResult<Response> {
    let f = health::backup_facts(&state).await?;
    let v = system_json(&state, &f).await;
    Ok(health::json_bytes(
        StatusCode::OK,
        serde_json::to_vec(&v).unwrap_or_default().into(),
    ))
}

async fn overall(State(state): State<AppState>) -> ApiResult<Response> {
    let f = health::backup_facts(&state).await?;
    let b = backups_json(&f);
    let d = databases_json(&state).await;
    let s = system_json(&state, &f).await;
    let rank = |v: &Value| match v["status"].as_str() {
        Some("critical") | Some("unhealthy") => 2,
        Some("warning") => 1,
        _ => 0,
    };
    let worst = [rank(&b), rank(&d), rank(&s)]
        .into_iter()
        .max()
        .unwrap_or(0);
    let status = ["healthy", "warning", "unhealthy"][worst];
    let v = json!({"status": status, "backups": b, "databases": d, "system": s});
    Ok(health::json_bytes(
        StatusCode::OK,
        serde_json::to_vec(&v).unwrap_or_default().into(),
    ))
}
