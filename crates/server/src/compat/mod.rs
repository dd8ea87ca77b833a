//! The compatibility API for the clinic's React "Database & Backup Monitor" page: the paths,
//! JSON shapes, status codes and messages of `shared/reference/uscpis-contract.md` (§3, §4.5),
//! served under `/api/utils/` and `/api/system/` (trailing slashes as the contract has them),
//! plus `/api/auth/database-health/`. A "backup" here is a catalog job; `backup_id` is its id.
//!
//! Kept: the envelopes (`success`/`error`, `error`, DRF's `detail`), the 401/403/404/409 codes
//! and messages, the field names. Fixed on purpose (contract §9): work is never done inside the
//! request (create, trigger and run-now answer 202 at once with `backup_id`; the page polls); a
//! daily schedule, a stuck job or an empty catalog never break an answer; statistics count
//! backups only; `last_successful_backup` means the newest successful backup; stuck jobs are
//! found by heartbeat; restore is not offered here (admins use the v1 preview/confirm flow).
//!
//! Role mapping from the clinic's roles (used when accounts are migrated): ADMIN → admin,
//! STAFF → staff, DOCTOR/DENTIST/NURSE/FACULTY → viewer, STUDENT → no account. Each route
//! needs the same permission as its v1 counterpart; 403 bodies follow the clinic's gates.
//!
//! Must not run backups, verifications or deletions in the request, or expose server paths.

mod backups;
mod health;
mod schedules;

use axum::http::{Method, StatusCode};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use strongroom_catalog::{Job, JobKind, JobStatus};

use crate::auth::Permission;
use crate::error::ApiError;
use crate::health::job_size;
use crate::routes::{Family, Forbidden, Registry};
use crate::util::{py_iso, py_iso_opt, round, seconds_between};

/// Gate V2's 403 body.
pub(crate) const V2: Forbidden = Forbidden::Error("Admin access required");
/// Gate L's 403 bodies.
pub(crate) const L_HEALTH: Forbidden = Forbidden::Error("Permission denied");
pub(crate) const L_STAFF: Forbidden =
    Forbidden::Error("Permission denied. Admin/Staff access required.");
pub(crate) const L_DETAIL: Forbidden =
    Forbidden::Detail("Permission denied. Admin/Staff access required.");
/// P2's 403 body.
pub(crate) const P2: Forbidden = Forbidden::Error("Access denied. Admin privileges required.");

pub(crate) fn register(r: &mut Registry) {
    use Permission as P;
    r.compat(
        Method::POST,
        "backup/create/",
        P::RunBackups,
        V2,
        backups::create,
    );
    r.compat(
        Method::GET,
        "backup/status/{id}/",
        P::Read,
        V2,
        backups::status,
    );
    r.compat(
        Method::GET,
        "backup/download-v2/{id}/",
        P::Download,
        V2,
        backups::download,
    );
    r.compat(
        Method::POST,
        "backup/verify/{id}/",
        P::RunBackups,
        V2,
        backups::verify,
    );
    r.compat(
        Method::POST,
        "backup/verify-dry-run/{id}/",
        P::RunBackups,
        V2,
        backups::verify_dry_run,
    );
    r.compat(Method::GET, "backup/list/", P::Read, V2, backups::list);
    r.compat(
        Method::DELETE,
        "backup/delete/{id}/",
        P::Delete,
        V2,
        backups::delete,
    );
    r.compat(
        Method::GET,
        "backup/health/",
        P::Read,
        V2,
        health::backup_health,
    );
    r.compat(
        Method::GET,
        "backup/schedules/",
        P::Read,
        V2,
        schedules::list,
    );
    r.compat(
        Method::POST,
        "backup/schedules/",
        P::ManageSchedules,
        V2,
        schedules::create,
    );
    r.compat(
        Method::PUT,
        "backup/schedules/{id}/",
        P::ManageSchedules,
        V2,
        schedules::update,
    );
    r.compat(
        Method::PATCH,
        "backup/schedules/{id}/",
        P::ManageSchedules,
        V2,
        schedules::update,
    );
    r.compat(
        Method::POST,
        "backup/schedules/{id}/toggle/",
        P::RunBackups,
        V2,
        schedules::toggle,
    );
    r.compat(
        Method::POST,
        "backup/schedules/{id}/run_now/",
        P::RunBackups,
        V2,
        schedules::run_now,
    );
    r.compat(
        Method::GET,
        "backup/uploaded/",
        P::Read,
        V2,
        backups::uploaded,
    );
    r.compat(
        Method::GET,
        "backup-health/",
        P::Read,
        L_HEALTH,
        health::legacy_backup_health,
    );
    r.compat(
        Method::POST,
        "backup/trigger/",
        P::RunBackups,
        L_STAFF,
        backups::trigger,
    );
    r.compat(
        Method::POST,
        "trigger-backup/",
        P::RunBackups,
        L_STAFF,
        backups::trigger,
    );
    r.compat(
        Method::GET,
        "backup-status/{id}/",
        P::Read,
        L_STAFF,
        backups::legacy_status,
    );
    r.compat(
        Method::GET,
        "database-health/",
        P::Read,
        L_DETAIL,
        health::database_health,
    );
    r.add(
        Method::GET,
        "/api/auth/database-health/",
        P::Read,
        Family::Compat(P2),
        None,
        health::auth_database_health,
    );
}

/// The clinic's status vocabulary.
pub(crate) fn status_of(s: JobStatus) -> &'static str {
    match s {
        JobStatus::Queued | JobStatus::InProgress => "in_progress",
        JobStatus::Success => "success",
        JobStatus::Warning => "warning",
        JobStatus::Failed | JobStatus::Cancelled => "failed",
    }
}

/// The clinic's type vocabulary where it has one (a test restore is a verification).
pub(crate) fn type_of(k: JobKind) -> &'static str {
    match k {
        JobKind::TestRestore => "verification",
        other => other.as_str(),
    }
}

/// Our statuses for one of the clinic's.
pub(crate) fn statuses_for(s: &str) -> Option<Vec<JobStatus>> {
    Some(match s {
        "in_progress" => vec![JobStatus::Queued, JobStatus::InProgress],
        "success" => vec![JobStatus::Success],
        "warning" => vec![JobStatus::Warning],
        "failed" => vec![JobStatus::Failed, JobStatus::Cancelled],
        _ => return None,
    })
}

pub(crate) fn duration(j: &Job, now: DateTime<Utc>) -> Option<f64> {
    j.duration_seconds.or_else(|| {
        (j.status == JobStatus::InProgress)
            .then(|| seconds_between(j.started_at.unwrap_or(j.created_at), now))
    })
}

pub(crate) fn size_mb(j: &Job) -> Value {
    match job_size(j) {
        Some(b) if b > 0 => json!(round(crate::util::f(b) / 1_048_576.0, 2)),
        _ => Value::Null,
    }
}

pub(crate) fn is_recent(j: &Job, now: DateTime<Utc>) -> bool {
    now - j.created_at < chrono::Duration::days(1)
}

pub(crate) fn has_file(j: &Job) -> bool {
    matches!(j.status, JobStatus::Success | JobStatus::Warning) && !j.snapshot_ids.is_empty()
}

/// `metadata` as shown: the job's metadata plus what the page may use; never a path.
pub(crate) fn metadata(j: &Job) -> Value {
    let mut m = match &j.metadata {
        Value::Object(o) => o.clone(),
        _ => serde_json::Map::new(),
    };
    m.insert("source".into(), json!(j.source));
    m.insert("kind".into(), json!(j.kind));
    m.insert("strongroom_status".into(), json!(j.status));
    m.insert("snapshot_ids".into(), json!(j.snapshot_ids));
    if let Some(p) = &j.progress {
        m.insert("progress".into(), json!(p));
    }
    Value::Object(m)
}

/// The five keys of a `latest_*_backup` of the legacy summary.
pub(crate) fn brief(j: &Job) -> Value {
    json!({
        "id": j.id, "backup_type": type_of(j.kind), "status": status_of(j.status),
        "started_at": py_iso(j.created_at), "completed_at": py_iso_opt(j.completed_at),
    })
}

/// A v1 error from the shared operations, in the compatibility envelope with the page's
/// messages.
pub(crate) fn compat_err(e: ApiError, backup_type: &str) -> ApiError {
    let e = match (e.status, e.code) {
        (StatusCode::CONFLICT, "already_in_progress") => ApiError::conflict(
            "already_in_progress",
            format!("Another {backup_type} backup is already in progress"),
        ),
        (StatusCode::UNPROCESSABLE_ENTITY, _) => ApiError::bad_request(e.message),
        _ => ApiError { extra: None, ..e },
    };
    e.compat()
}
