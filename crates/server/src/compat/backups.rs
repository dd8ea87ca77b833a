//! The clinic's backup endpoints: create (A1), status (A2), download (A3), verify (A4),
//! dry-run verify (A5), list (A6), delete (A7), uploaded list (B3), the legacy trigger (C2)
//! and status (C3).
//!
//! Must not run a backup or verification in the request: A1/C2 enqueue a job and answer 202
//! with `backup_id`; A4 enqueues a verification; A5 checks that the content is present.

use std::collections::HashMap;

use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use strongroom_catalog::{JobFilter, JobKind, JobStatus};

use super::{
    compat_err, duration, has_file, is_recent, metadata, size_mb, status_of, statuses_for, type_of,
};
use crate::api::ops::{self, BackupRequest};
use crate::auth::{ClientIp, Principal};
use crate::error::{ApiError, ApiResult};
use crate::health::job_size;
use crate::state::AppState;
use crate::util::{OptJson, py_iso, py_iso_opt};

const TYPES: &[&str] = &["database", "media", "full"];

fn not_found() -> ApiError {
    ApiError::not_found("Backup not found").compat()
}

async fn job(state: &AppState, id: i64) -> ApiResult<strongroom_catalog::Job> {
    ops::get_job(state, id).await.map_err(|e| {
        if e.status == StatusCode::NOT_FOUND {
            not_found()
        } else {
            e.compat()
        }
    })
}

#[derive(Deserialize)]
#[serde(default)]
pub(crate) struct CreateBody {
    backup_type: Value,
    quick_backup: Value,
    verify_integrity: Value,
}

impl Default for CreateBody {
    fn default() -> Self {
        CreateBody {
            backup_type: json!("database"),
            quick_backup: json!(true),
            verify_integrity: json!(false),
        }
    }
}

fn truthy(v: &Value, default: bool) -> bool {
    match v {
        Value::Bool(b) => *b,
        Value::Null => default,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !matches!(
            s.to_ascii_lowercase().as_str(),
            "" | "false" | "0" | "no" | "off"
        ),
        _ => true,
    }
}

async fn start(
    state: &AppState,
    p: &Principal,
    ip: Option<std::net::IpAddr>,
    backup_type: &str,
    verify: bool,
    quick: bool,
    via: &str,
) -> ApiResult<strongroom_catalog::Job> {
    let kind: JobKind = backup_type
        .parse()
        .map_err(|_| ApiError::bad_request("unknown type"))?;
    ops::enqueue_backup(
        state,
        p,
        ip,
        BackupRequest {
            kind,
            sources: Vec::new(),
            verify,
            test_restore: false,
            schedule_id: None,
            extra: json!({"quick_backup": quick, "compat_endpoint": via}),
        },
    )
    .await
}

/// A1 `POST backup/create/`.
pub(crate) async fn create(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Extension(ip): Extension<ClientIp>,
    body: Result<OptJson<CreateBody>, ApiError>,
) -> ApiResult<Response> {
    let OptJson(b) = body.map_err(ApiError::compat)?;
    let t = b.backup_type.as_str().unwrap_or_default().to_owned();
    if !TYPES.contains(&t.as_str()) {
        return Err(ApiError::bad_request(
            "Invalid backup type. Must be one of: database, media, full",
        )
        .compat());
    }
    let job = start(
        &state,
        &p,
        ip.0,
        &t,
        truthy(&b.verify_integrity, false),
        truthy(&b.quick_backup, true),
        "backup/create",
    )
    .await
    .map_err(|e| compat_err(e, &t))?;
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(json!({
            "success": true, "backup_id": job.id,
            "message": "Backup started; it runs in the background (poll its status)",
        })),
    )
        .into_response())
}

#[derive(Deserialize)]
#[serde(default)]
pub(crate) struct TriggerBody {
    backup_type: Value,
    verify: Value,
    quick_backup: Value,
}

impl Default for TriggerBody {
    fn default() -> Self {
        TriggerBody {
            backup_type: json!("database"),
            verify: json!(true),
            quick_backup: json!(false),
        }
    }
}

/// C2 `POST backup/trigger/` (and `trigger-backup/`).
pub(crate) async fn trigger(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Extension(ip): Extension<ClientIp>,
    body: Result<OptJson<TriggerBody>, ApiError>,
) -> ApiResult<Response> {
    let OptJson(b) = body.map_err(ApiError::legacy)?;
    let t = b.backup_type.as_str().unwrap_or_default().to_owned();
    if !TYPES.contains(&t.as_str()) {
        return Err(ApiError::bad_request(
            "Invalid backup type. Must be one of: ['database', 'media', 'full']",
        )
        .legacy());
    }
    let verify = truthy(&b.verify, true);
    let job = start(
        &state,
        &p,
        ip.0,
        &t,
        verify,
        truthy(&b.quick_backup, false),
        "backup/trigger",
    )
    .await
    .map_err(|e| compat_err(e, &t))?;
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(json!({
            "message": "Manual backup triggered successfully",
            "backup_id": job.id,
            "backup_type": t,
            "verify": verify,
            "status_check_url": format!("/api/utils/backup-status/{}/", job.id),
            "note": "Backup is executing in the background. Check status using the provided URL.",
        })),
    )
        .into_response())
}

/// A2 `GET backup/status/{id}/`.
pub(crate) async fn status(
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> ApiResult<Response> {
    let j = job(&state, id).await?;
    let now = state.now();
    Ok(axum::Json(json!({"success": true, "backup": {
        "id": j.id, "status": status_of(j.status), "backup_type": type_of(j.kind),
        "started_at": py_iso(j.created_at), "completed_at": py_iso_opt(j.completed_at),
        "duration_seconds": duration(&j, now), "file_size_mb": size_mb(&j),
        "error_message": j.error_message.clone().filter(|m| !m.is_empty()),
        "metadata": metadata(&j),
    }}))
    .into_response())
}

/// C3 `GET backup-status/{id}/`.
pub(crate) async fn legacy_status(
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> ApiResult<Response> {
    let j = ops::get_job(&state, id).await.map_err(|e| {
        if e.status == StatusCode::NOT_FOUND {
            ApiError::not_found("Backup not found").legacy()
        } else {
            e.legacy()
        }
    })?;
    let now = state.now();
    Ok(axum::Json(json!({
        "id": j.id, "backup_type": type_of(j.kind), "status": status_of(j.status),
        "started_at": py_iso(j.created_at), "completed_at": py_iso_opt(j.completed_at),
        "duration_seconds": duration(&j, now), "file_size": job_size(&j), "file_size_mb": size_mb(&j),
        "checksum": j.checksum.clone().unwrap_or_default(),
        "error_message": j.error_message.clone().unwrap_or_default(),
        "metadata": metadata(&j), "created_by": j.started_by, "is_recent": is_recent(&j, now),
    })).into_response())
}

/// A6 `GET backup/list/`.
pub(crate) async fn list(
    State(state): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    let num = |name: &str, default: u64| -> ApiResult<u64> {
        match q.get(name).map(|s| s.trim()).filter(|s| !s.is_empty()) {
            None => Ok(default),
            Some(s) => s.parse::<u64>().ok().filter(|n| *n >= 1).ok_or_else(|| {
                ApiError::bad_request(format!("{name} must be a positive whole number")).compat()
            }),
        }
    };
    let limit = num("limit", 10)?.min(500);
    let page = num("page", 1)?.min(1_000_000);
    let mut filter = JobFilter {
        limit: u32::try_from(limit).unwrap_or(500),
        offset: (page - 1) * limit,
        ..JobFilter::default()
    };
    if let Some(t) = q.get("type").filter(|t| !t.is_empty()) {
        match t.parse::<JobKind>() {
            Ok(k) if t != "verification" => filter.kinds = vec![k],
            Ok(_) => filter.kinds = vec![JobKind::Verification, JobKind::TestRestore],
            // An unknown type matches nothing, as an exact filter would.
            Err(_) => return Ok(axum::Json(json!({"success": true, "backups": [], "count": 0, "total": 0, "page": page, "page_size": limit})).into_response()),
        }
    }
    if let Some(s) = q.get("status").filter(|s| !s.is_empty()) {
        match statuses_for(s) {
            Some(v) => filter.statuses = v,
            None => return Ok(axum::Json(json!({"success": true, "backups": [], "count": 0, "total": 0, "page": page, "page_size": limit})).into_response()),
        }
    }
    // Unparsable times are ignored, as the clinic's `parse_datetime` did.
    let time = |k: &str| {
        q.get(k)
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&chrono::Utc))
    };
    filter.created_from = time("start");
    filter.created_before = time("end").map(|t| t + chrono::Duration::microseconds(1));
    let jobs = state.catalog().jobs();
    let items: Vec<_> = jobs
        .list(&filter)
        .await
        .map_err(|e| ApiError::from(e).compat())?
        .into_iter()
        .map(|j| state.redact_job(j))
        .collect();
    let total = jobs
        .count(&filter)
        .await
        .map_err(|e| ApiError::from(e).compat())?;
    let now = state.now();
    let backups: Vec<Value> = items
        .iter()
        .map(|j| {
            json!({
                "id": j.id, "status": status_of(j.status), "backup_type": type_of(j.kind),
                "started_at": py_iso(j.created_at), "completed_at": py_iso_opt(j.completed_at),
                "duration_seconds": duration(j, now), "file_size_mb": size_mb(j),
                "is_recent": is_recent(j, now), "has_file": has_file(j), "metadata": metadata(j),
            })
        })
        .collect();
    Ok(axum::Json(json!({
        "success": true, "count": backups.len(), "backups": backups, "total": total, "page": page, "page_size": limit,
    })).into_response())
}

/// B3 `GET backup/uploaded/`: Strongroom imports dump files through the CLI, so the list of
/// uploads through this API is empty.
pub(crate) async fn uploaded() -> ApiResult<Response> {
    Ok(axum::Json(json!({"success": true, "backups": [], "count": 0})).into_response())
}

#[derive(Deserialize, Default)]
pub(crate) struct DeleteQuery {
    #[serde(rename = "override")]
    override_: Option<bool>,
}

/// A7 `DELETE backup/delete/{id}/`.
pub(crate) async fn delete(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Extension(ip): Extension<ClientIp>,
    Path(id): Path<i64>,
    Query(q): Query<DeleteQuery>,
) -> ApiResult<Response> {
    let j = job(&state, id).await?;
    if j.status.is_active() {
        return Err(
            ApiError::conflict("active", "Cannot delete a backup that is in progress").compat(),
        );
    }
    ops::delete_backup(&state, &p, ip.0, &j, q.override_.unwrap_or(false))
        .await
        .map_err(|e| match e.code {
            "newest_verified" => ApiError::conflict("newest_verified",
                "This is the newest verified backup of its source and cannot be deleted without override=true").compat(),
            _ => e.compat(),
        })?;
    Ok(
        axum::Json(json!({"success": true, "message": "Backup deleted successfully"}))
            .into_response(),
    )
}

/// A3 `GET backup/download-v2/{id}/`.
pub(crate) async fn download(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Extension(ip): Extension<ClientIp>,
    Path(id): Path<i64>,
) -> ApiResult<Response> {
    let j = job(&state, id).await?;
    if j.status != JobStatus::Success && j.status != JobStatus::Warning {
        return Err(ApiError::bad_request("Backup not completed successfully").compat());
    }
    let Some(first) = j.snapshot_ids.first().cloned() else {
        return Err(ApiError::not_found("Backup file not found").compat());
    };
    ops::download(&state, &p, ip.0, &j, Some(&first))
        .await
        .map_err(|e| match e.status {
            StatusCode::NOT_FOUND => ApiError::not_found("Backup file not found").compat(),
            s if s.is_server_error() => {
                ApiError::new(s, "download_failed", "Download failed").compat()
            }
            _ => e.compat(),
        })
}

async fn check_content(state: &AppState, j: &strongroom_catalog::Job) -> ApiResult<(bool, String)> {
    if j.status != JobStatus::Success && j.status != JobStatus::Warning {
        return Err(ApiError::bad_request("Cannot verify incomplete backup").compat());
    }
    if j.snapshot_ids.is_empty() {
        return Err(ApiError::not_found("Backup file not found").compat());
    }
    let Some(repo) = state.inner.repo.clone() else {
        return Err(
            ApiError::unavailable("The repository is not available to this server").compat(),
        );
    };
    let mut total = 0;
    for sid in &j.snapshot_ids {
        match repo.snapshot(sid).await {
            Ok(info) => total += info.total_bytes,
            Err(crate::repo::RepoAccessError::NotFound) => {
                return Err(ApiError::not_found("Backup file not found").compat());
            }
            Err(e) => {
                return Ok((
                    false,
                    format!("Verification failed: {}", state.redact(&e.to_string())),
                ));
            }
        }
    }
    Ok((
        true,
        format!(
            "{} snapshot(s) present in the repository, {total} bytes of content",
            j.snapshot_ids.len()
        ),
    ))
}

/// A5 `POST backup/verify-dry-run/{id}/`: checks the content is in the repository (no job).
pub(crate) async fn verify_dry_run(
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> ApiResult<Response> {
    let j = job(&state, id).await?;
    let (valid, message) = check_content(&state, &j).await?;
    Ok(axum::Json(
        json!({"success": true, "valid": valid, "message": format!("{message} (dry-run)")}),
    )
    .into_response())
}

/// A4 `POST backup/verify/{id}/`: the same check, and a full verification queued as a job.
pub(crate) async fn verify(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Extension(ip): Extension<ClientIp>,
    Path(id): Path<i64>,
) -> ApiResult<Response> {
    let j = job(&state, id).await?;
    let (valid, message) = check_content(&state, &j).await?;
    let q = ops::enqueue_followup(&state, &p, ip.0, &j, JobKind::Verification, json!({}))
        .await
        .map_err(|e| match e.code {
            "already_in_progress" => ApiError::conflict(
                "already_in_progress",
                "A verification of this backup's source is already in progress",
            )
            .compat(),
            _ => e.compat(),
        })?;
    Ok(axum::Json(json!({
        "success": true, "valid": valid,
        "message": format!("{message}; a full verification is queued as job {}", q.id),
        "verification_job_id": q.id,
    }))
    .into_response())
}
