//! `/api/v1/backups`: the job history (every kind), starting backups, verifications, test
//! restores, restores (preview + confirmation token), downloads, cancellation and deletion.
//!
//! Must not run any of that work: each start is an enqueued job answered with 202 and its id.

use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::Duration;
use serde::Deserialize;
use serde_json::{Value, json};
use strongroom_catalog::{JobFilter, JobKind, JobStatus};
use strongroom_sources::beside_database;

use super::ops::{self, BackupRequest};
use crate::auth::password::{random_secret, token_hash};
use crate::auth::{ClientIp, Permission, Principal};
use crate::error::{ApiError, ApiResult};
use crate::openapi::s::*;
use crate::routes::{Doc, Registry};
use crate::state::{AppState, PendingRestore};
use crate::util::{JsonBody, OptJson, parse_time};

pub(crate) fn register(r: &mut Registry) {
    let list_doc = Doc::new("backups", "List backups and other jobs, newest first")
        .query(
            "kind",
            string(),
            "comma-separated kinds (full, database, media, verification, ...)",
        )
        .query("status", string(), "comma-separated statuses")
        .query("source", string(), "exact source key")
        .query(
            "from",
            json!({"type": "string", "format": "date-time"}),
            "created at or after (RFC 3339)",
        )
        .query(
            "to",
            json!({"type": "string", "format": "date-time"}),
            "created before (RFC 3339)",
        )
        .query("limit", int_range(1, 500), "page size (default 50)")
        .query("offset", int_range(0, 1_000_000_000), "rows to skip")
        .ok(
            200,
            all(&[
                ("items", arr(sref("Job"))),
                ("total", int()),
                ("limit", int()),
                ("offset", int()),
            ]),
        );
    r.v1(
        Method::GET,
        "/api/v1/backups",
        Permission::Read,
        list_doc,
        list,
    );
    let create_doc = Doc::new(
        "backups",
        "Start a backup (answers at once with the job id)",
    )
    .body(obj(
        &[
            ("kind", enumeration(&["full", "database", "media"])),
            ("sources", arr(string())),
            ("verify", boolean()),
            ("test_restore", boolean()),
        ],
        &["kind"],
    ))
    .ok(202, sref("Accepted"));
    r.v1(
        Method::POST,
        "/api/v1/backups",
        Permission::RunBackups,
        create_doc,
        create,
    );
    r.v1(
        Method::GET,
        "/api/v1/backups/{id}",
        Permission::Read,
        Doc::new("backups", "One backup or job").ok(200, sref("Job")),
        get,
    );
    r.v1(
        Method::GET,
        "/api/v1/backups/{id}/progress",
        Permission::Read,
        Doc::new("backups", "Progress of a job").ok(
            200,
            all(&[
                ("job_id", int()),
                ("status", string()),
                ("progress", nullable(sref("Progress"))),
                ("started_at", nullable(time())),
                ("heartbeat_at", nullable(time())),
                ("cancel_requested", boolean()),
            ]),
        ),
        progress,
    );
    r.v1(
        Method::POST,
        "/api/v1/backups/{id}/cancel",
        Permission::RunBackups,
        Doc::new("backups", "Cancel a queued or running job").ok(200, sref("Job")),
        cancel,
    );
    r.v1(
        Method::POST,
        "/api/v1/backups/{id}/verify",
        Permission::RunBackups,
        Doc::new("backups", "Verify a backup (enqueues a verification job)")
            .optional_body(obj(&[("read_data", boolean())], &[]))
            .ok(202, sref("Accepted")),
        verify,
    );
    r.v1(
        Method::POST,
        "/api/v1/backups/{id}/test-restore",
        Permission::RunBackups,
        Doc::new(
            "backups",
            "Prove a database backup by restoring it into a scratch database (enqueues a job)",
        )
        .ok(202, sref("Accepted")),
        test_restore,
    );
    r.v1(
        Method::POST,
        "/api/v1/backups/{id}/restore/preview",
        Permission::Restore,
        Doc::new(
            "backups",
            "Preview a restore: what it replaces, and a short-lived confirmation token",
        )
        .optional_body(obj(
            &[
                ("sources", arr(string())),
                ("replace", boolean()),
                ("new_name", string()),
            ],
            &[],
        ))
        .ok(
            200,
            all(&[
                ("backup_id", int()),
                ("snapshot_ids", arr(string())),
                ("replace", boolean()),
                ("will_replace", arr(any_obj())),
                ("will_create", arr(any_obj())),
                ("safety_backup", boolean()),
                ("confirmation_token", string()),
                ("expires_at", time()),
            ]),
        ),
        restore_preview,
    );
    r.v1(Method::POST, "/api/v1/backups/{id}/restore", Permission::Restore,
        Doc::new("backups", "Restore a backup (needs the preview's confirmation token; enqueues a job that takes a safety backup first when replacing)")
            .body(all(&[("confirmation_token", string())]))
            .ok(202, sref("Accepted")), restore);
    r.v1(
        Method::GET,
        "/api/v1/backups/{id}/download",
        Permission::Download,
        Doc::new(
            "backups",
            "Download a backup's content (streamed: a stream's bytes, or a tar)",
        )
        .query(
            "snapshot",
            string(),
            "which part, when the backup has several",
        )
        .ok_as(
            200,
            "application/octet-stream",
            json!({"type": "string", "format": "binary"}),
        ),
        download,
    );
    r.v1(
        Method::DELETE,
        "/api/v1/backups/{id}",
        Permission::Delete,
        Doc::new(
            "backups",
            "Delete a backup (never the newest verified one of its source without override=true)",
        )
        .query(
            "override",
            boolean(),
            "allow deleting the newest verified backup",
        )
        .ok(
            200,
            obj(
                &[("deleted", int()), ("forget_job_id", nullable(int()))],
                &["deleted", "forget_job_id"],
            ),
        ),
        delete,
    );
}

#[derive(Debug, Deserialize, Default)]
pub(crate) struct ListQuery {
    kind: Option<String>,
    status: Option<String>,
    source: Option<String>,
    from: Option<String>,
    to: Option<String>,
    limit: Option<u32>,
    offset: Option<u64>,
}

fn parse_list<T: std::str::FromStr>(name: &str, text: Option<&str>) -> ApiResult<Vec<T>> {
    let Some(text) = text else {
        return Ok(Vec::new());
    };
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<T>()
                .map_err(|_| ApiError::invalid(format!("unknown {name} {s:?}")))
        })
        .collect()
}

async fn list(State(state): State<AppState>, Query(q): Query<ListQuery>) -> ApiResult<Response> {
    let limit = q.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::invalid("limit must be between 1 and 500"));
    }
    let filter = JobFilter {
        kinds: parse_list::<JobKind>("kind", q.kind.as_deref())?,
        statuses: parse_list::<JobStatus>("status", q.status.as_deref())?,
        source: q.source.filter(|s| !s.is_empty()),
        schedule_id: None,
        created_from: q
            .from
            .as_deref()
            .map(|t| parse_time("from", t))
            .transpose()?,
        created_before: q.to.as_deref().map(|t| parse_time("to", t)).transpose()?,
        limit,
        offset: q.offset.unwrap_or(0).min(1_000_000_000),
    };
    let jobs = state.catalog().jobs();
    let items: Vec<_> = jobs
        .list(&filter)
        .await?
        .into_iter()
        .map(|j| state.redact_job(j))
        .collect();
    let total = jobs.count(&filter).await?;
    Ok(
        axum::Json(
            json!({"items": items, "total": total, "limit": limit, "offset": filter.offset}),
        )
        .into_response(),
    )
}

#[derive(Debug, Deserialize)]
struct CreateBody {
    kind: String,
    #[serde(default)]
    sources: Vec<String>,
    #[serde(default)]
    verify: bool,
    #[serde(default)]
    test_restore: bool,
}

fn accepted(job: &strongroom_catalog::Job) -> Response {
    (
        StatusCode::ACCEPTED,
        axum::Json(json!({"job_id": job.id, "job": job})),
    )
        .into_response()
}

async fn create(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Extension(ip): Extension<ClientIp>,
    JsonBody(body): JsonBody<CreateBody>,
) -> ApiResult<Response> {
    let kind: JobKind = body
        .kind
        .parse()
        .ok()
        .filter(|k: &JobKind| k.is_backup())
        .ok_or_else(|| ApiError::invalid("kind must be one of full, database, media"))?;
    let job = ops::enqueue_backup(
        &state,
        &p,
        ip.0,
        BackupRequest {
            kind,
            sources: body.sources,
            verify: body.verify,
            test_restore: body.test_restore,
            schedule_id: None,
            extra: json!({}),
        },
    )
    .await?;
    Ok(accepted(&job))
}

async fn get(State(state): State<AppState>, Path(id): Path<i64>) -> ApiResult<Response> {
    let job = ops::get_job(&state, id).await?;
    Ok(axum::Json(job).into_response())
}

async fn progress(State(state): State<AppState>, Path(id): Path<i64>) -> ApiResult<Response> {
    let j = ops::get_job(&state, id).await?;
    Ok(axum::Json(json!({
        "job_id": j.id, "status": j.status, "progress": j.progress, "started_at": j.started_at,
        "heartbeat_at": j.heartbeat_at, "cancel_requested": j.cancel_requested,
    }))
    .into_response())
}

async fn cancel(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Extension(ip): Extension<ClientIp>,
    Path(id): Path<i64>,
) -> ApiResult<Response> {
    ops::get_job(&state, id).await?;
    let job = state
        .catalog()
        .jobs()
        .request_cancel(id, state.now())
        .await?;
    let job = state.redact_job(job);
    state.invalidate_caches();
    state
        .audit(
            &p.actor(),
            "job.cancel",
            Some(id.to_string()),
            json!({"via": p.via()}),
            ip.0,
        )
        .await;
    Ok(axum::Json(job).into_response())
}

#[derive(Debug, Deserialize, Default)]
struct VerifyBody {
    #[serde(default)]
    read_data: bool,
}

async fn verify(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Extension(ip): Extension<ClientIp>,
    Path(id): Path<i64>,
    OptJson(body): OptJson<VerifyBody>,
) -> ApiResult<Response> {
    let job = ops::get_job(&state, id).await?;
    let q = ops::enqueue_followup(
        &state,
        &p,
        ip.0,
        &job,
        JobKind::Verification,
        if body.read_data {
            json!({"read_data_subset": 100})
        } else {
            json!({})
        },
    )
    .await?;
    Ok(accepted(&q))
}

async fn test_restore(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Extension(ip): Extension<ClientIp>,
    Path(id): Path<i64>,
) -> ApiResult<Response> {
    let job = ops::get_job(&state, id).await?;
    let q = ops::enqueue_followup(&state, &p, ip.0, &job, JobKind::TestRestore, json!({})).await?;
    Ok(accepted(&q))
}

#[derive(Debug, Deserialize, Default)]
struct PreviewBody {
    #[serde(default)]
    sources: Vec<String>,
    #[serde(default)]
    replace: bool,
    #[serde(default)]
    new_name: Option<String>,
}

async fn restore_preview(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Extension(ip): Extension<ClientIp>,
    Path(id): Path<i64>,
    OptJson(body): OptJson<PreviewBody>,
) -> ApiResult<Response> {
    let job = ops::get_job(&state, id).await?;
    ops::ensure_content(&job)?;
    if let Some(n) = &body.new_name
        && (n.is_empty()
            || n.len() > 63
            || !n
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'))
    {
        return Err(ApiError::invalid(
            "new_name must be 1-63 letters, digits, '_' or '-'",
        ));
    }
    // The sources this backup covers: its metadata, else every configured source of its kind.
    let covered: Vec<String> = job
        .metadata
        .get("sources")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect::<Vec<_>>()
        })
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| {
            let c = state.config();
            let dbs = c.databases.iter().map(|d| d.name.clone());
            let media = c.media.iter().map(|m| m.name.clone());
            match job.kind {
                JobKind::Database => dbs.collect(),
                JobKind::Media => media.collect(),
                _ => dbs.chain(media).collect(),
            }
        });
    let chosen = if body.sources.is_empty() {
        covered.clone()
    } else {
        body.sources.clone()
    };
    for s in &chosen {
        if !covered.contains(s) {
            return Err(ApiError::invalid(format!(
                "backup {id} does not cover a source named {s:?}"
            )));
        }
    }
    let config = state.config();
    let mut affected = Vec::new();
    for name in &chosen {
        if let Some(d) = config.databases.iter().find(|d| &d.name == name) {
            affected.push(json!({
                "source": name, "type": "database", "engine": d.url.engine().name(),
                "target": if body.replace { d.url.redacted().to_owned() } else {
                    beside_database(
                        d.url.engine() == strongroom_config::Engine::Sqlite,
                        d.url.database(),
                        body.new_name.as_deref(),
                        id,
                    )
                },
            }));
        } else if let Some(m) = config.media.iter().find(|m| &m.name == name) {
            affected.push(json!({
                "source": name, "type": "media",
                "target": if body.replace { m.path.to_string_lossy().into_owned() } else {
                    format!("{}.restored-{id}", m.path.to_string_lossy())
                },
            }));
        }
    }
    let token = random_secret().map_err(|e| state.internal(e))?;
    let now = state.now();
    let ttl = Duration::from_std(state.options().restore_token_ttl).unwrap_or(Duration::minutes(5));
    let expires_at = now + ttl;
    let target = json!({"sources": chosen, "replace": body.replace, "new_name": body.new_name});
    if let Ok(mut g) = state.inner.restores.lock() {
        g.retain(|_, r| r.expires_at > now);
        if g.len() > 1000 {
            g.clear();
        }
        g.insert(
            token_hash(&token),
            PendingRestore {
                job_id: id,
                user_id: p.user_id,
                target: target.clone(),
                expires_at,
            },
        );
    }
    state
        .audit(
            &p.actor(),
            "restore.preview",
            Some(id.to_string()),
            json!({"target": target, "via": p.via()}),
            ip.0,
        )
        .await;
    let (will_replace, will_create) = if body.replace {
        (affected, Vec::new())
    } else {
        (Vec::new(), affected)
    };
    Ok(axum::Json(json!({
        "backup_id": id,
        "snapshot_ids": job.snapshot_ids,
        "replace": body.replace,
        "will_replace": will_replace,
        "will_create": will_create,
        "safety_backup": body.replace,
        "confirmation_token": token,
        "expires_at": expires_at,
    }))
    .into_response())
}

#[derive(Debug, Deserialize)]
struct RestoreBody {
    confirmation_token: String,
}

async fn restore(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Extension(ip): Extension<ClientIp>,
    Path(id): Path<i64>,
    JsonBody(body): JsonBody<RestoreBody>,
) -> ApiResult<Response> {
    let job = ops::get_job(&state, id).await?;
    let now = state.now();
    let pending = state
        .inner
        .restores
        .lock()
        .ok()
        .and_then(|mut g| g.remove(&token_hash(&body.confirmation_token)));
    let pending = pending
        .filter(|r| r.job_id == id && r.user_id == p.user_id && r.expires_at > now)
        .ok_or_else(|| {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_confirmation",
                "the confirmation token is unknown, already used, expired, or for another backup or user; ask for a new preview")
        })?;
    let q = ops::enqueue_restore(&state, &p, ip.0, &job, pending.target).await?;
    Ok(accepted(&q))
}

#[derive(Debug, Deserialize, Default)]
struct DownloadQuery {
    snapshot: Option<String>,
}

async fn download(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Extension(ip): Extension<ClientIp>,
    Path(id): Path<i64>,
    Query(q): Query<DownloadQuery>,
) -> ApiResult<Response> {
    let job = ops::get_job(&state, id).await?;
    ops::download(&state, &p, ip.0, &job, q.snapshot.as_deref()).await
}

#[derive(Debug, Deserialize, Default)]
struct DeleteQuery {
    #[serde(rename = "override", default)]
    override_: Option<bool>,
}

async fn delete(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Extension(ip): Extension<ClientIp>,
    Path(id): Path<i64>,
    Query(q): Query<DeleteQuery>,
) -> ApiResult<Response> {
    let job = ops::get_job(&state, id).await?;
    let forget = ops::delete_backup(&state, &p, ip.0, &job, q.override_.unwrap_or(false)).await?;
    Ok(axum::Json(json!({"deleted": id, "forget_job_id": forget})).into_response())
}
