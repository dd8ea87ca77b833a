//! `/api/v1/schedules`: list, create, update, enable, disable, run now, delete. `when` is
//! checked with the scheduler's own parser (422 with its message), and the next run is
//! computed with it, so what is accepted here is what runs.
//!
//! Must not run a schedule's work: run-now enqueues a job.

use axum::Extension;
use axum::extract::{Path, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use strongroom_catalog::{CatalogError, JobKind, NewSchedule, Schedule};

use super::ops::{self, BackupRequest};
use crate::auth::{ClientIp, Permission, Principal};
use crate::error::{ApiError, ApiResult};
use crate::openapi::s::*;
use crate::routes::{Doc, Registry};
use crate::state::AppState;
use crate::util::{JsonBody, OptJson};

const RETENTION_KEYS: &[&str] = &[
    "keep_last",
    "keep_daily",
    "keep_weekly",
    "keep_monthly",
    "keep_yearly",
    "keep_days",
];
const SCHEDULE_KINDS: &[&str] = &["full", "database", "media", "verification", "prune"];

pub(crate) fn register(r: &mut Registry) {
    let body_props = [
        ("name", string()),
        ("kind", enumeration(SCHEDULE_KINDS)),
        ("sources", arr(string())),
        ("when", string()),
        ("timezone", string()),
        ("enabled", boolean()),
        ("retention", any_obj()),
        ("verify_after", boolean()),
        ("test_restore", boolean()),
    ];
    r.v1(
        Method::GET,
        "/api/v1/schedules",
        Permission::Read,
        Doc::new("schedules", "List schedules").ok(200, all(&[("items", arr(sref("Schedule")))])),
        list,
    );
    r.v1(
        Method::POST,
        "/api/v1/schedules",
        Permission::ManageSchedules,
        Doc::new("schedules", "Create a schedule")
            .body(obj(&body_props, &["name", "kind", "when"]))
            .ok(201, sref("Schedule")),
        create,
    );
    r.v1(
        Method::GET,
        "/api/v1/schedules/{id}",
        Permission::Read,
        Doc::new("schedules", "One schedule").ok(200, sref("Schedule")),
        get,
    );
    r.v1(
        Method::PUT,
        "/api/v1/schedules/{id}",
        Permission::ManageSchedules,
        Doc::new("schedules", "Change a schedule (fields not given stay)")
            .body(obj(&body_props, &[]))
            .ok(200, sref("Schedule")),
        update,
    );
    r.v1(
        Method::POST,
        "/api/v1/schedules/{id}/enable",
        Permission::RunBackups,
        Doc::new("schedules", "Enable a schedule").ok(200, sref("Schedule")),
        enable,
    );
    r.v1(
        Method::POST,
        "/api/v1/schedules/{id}/disable",
        Permission::RunBackups,
        Doc::new("schedules", "Disable a schedule").ok(200, sref("Schedule")),
        disable,
    );
    r.v1(
        Method::POST,
        "/api/v1/schedules/{id}/run-now",
        Permission::RunBackups,
        Doc::new("schedules", "Run a schedule now (enqueues its job)").ok(202, sref("Accepted")),
        run_now,
    );
    r.v1(
        Method::DELETE,
        "/api/v1/schedules/{id}",
        Permission::ManageSchedules,
        Doc::new("schedules", "Delete a schedule (its past jobs stay)")
            .ok(200, all(&[("deleted", int())])),
        delete,
    );
}

/// A schedule as the API shows it (`when` is the spec as given).
pub(crate) fn schedule_json(s: &Schedule) -> Value {
    let mut v = serde_json::to_value(s).unwrap_or_else(|_| json!({}));
    if let Some(o) = v.as_object_mut() {
        o.insert("when".into(), Value::String(s.spec.clone()));
    }
    v
}

/// Parses `when` in `tz` with the scheduler (422 with its message).
pub(crate) fn parse_when(when: &str, tz: &str) -> ApiResult<strongroom_scheduler::Schedule> {
    strongroom_scheduler::Schedule::parse(when, tz).map_err(|e| ApiError::invalid(e.to_string()))
}

/// Checks a schedule's `retention` JSON, which the job runner reads as its `ScheduleSettings`
/// (the `keep_*` policy at the top level, plus `catch_up_window_seconds` and, for
/// verification schedules, `read_data_subset`).
fn check_retention(v: &Value) -> ApiResult<()> {
    let Some(o) = v.as_object() else {
        return Err(ApiError::invalid(
            "retention must be an object such as {\"keep_daily\": 7}",
        ));
    };
    for (k, val) in o {
        match k.as_str() {
            "catch_up_window_seconds" => {
                if val.as_u64().is_none_or(|n| n > 31 * 86_400) {
                    return Err(ApiError::invalid(
                        "retention catch_up_window_seconds must be a whole number of seconds up to 2678400 (31 days)",
                    ));
                }
            }
            "read_data_subset" => {
                if !val.as_u64().is_some_and(|n| (1..=100).contains(&n)) {
                    return Err(ApiError::invalid(
                        "retention read_data_subset is a percentage from 1 to 100",
                    ));
                }
            }
            key if RETENTION_KEYS.contains(&key) => {
                if val.as_u64().is_none_or(|n| n > 100_000) {
                    return Err(ApiError::invalid(format!(
                        "retention {k} must be a whole number from 0 to 100000"
                    )));
                }
            }
            _ => {
                return Err(ApiError::invalid(format!(
                    "unknown retention key {k:?} (known: {}, catch_up_window_seconds, read_data_subset)",
                    RETENTION_KEYS.join(", ")
                )));
            }
        }
    }
    Ok(())
}

/// The job runner's rules for a schedule definition (`ScheduleDefinition::parse` in
/// strongroom-jobs), so that what is accepted here also runs there.
fn check_kind_options(s: &NewSchedule) -> ApiResult<()> {
    let backup = s.kind.is_backup();
    let keeps = RETENTION_KEYS.iter().any(|k| {
        s.retention
            .get(*k)
            .and_then(Value::as_u64)
            .is_some_and(|n| n > 0)
    });
    if s.kind == JobKind::Prune && !s.sources.is_empty() {
        return Err(ApiError::invalid(
            "a prune covers the whole repository: give no sources",
        ));
    }
    if !backup && keeps {
        return Err(ApiError::invalid(
            "retention (keep_*) applies to backup schedules (full, database, media)",
        ));
    }
    if !backup && s.verify_after {
        return Err(ApiError::invalid(
            "verify_after applies to backup schedules; a verification verifies anyway",
        ));
    }
    if s.test_restore && matches!(s.kind, JobKind::Media | JobKind::Prune) {
        return Err(ApiError::invalid(
            "test_restore applies to full, database and verification schedules",
        ));
    }
    if s.retention.get("read_data_subset").is_some() && s.kind != JobKind::Verification {
        return Err(ApiError::invalid(
            "read_data_subset applies to verification schedules",
        ));
    }
    Ok(())
}

fn check_name(name: &str) -> ApiResult<()> {
    if name.is_empty()
        || name.len() > 64
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
    {
        return Err(ApiError::invalid(
            "name must be 1-64 letters, digits, '_', '.' or '-'",
        ));
    }
    Ok(())
}

fn parse_kind(kind: &str) -> ApiResult<JobKind> {
    if !SCHEDULE_KINDS.contains(&kind) {
        return Err(ApiError::invalid(format!(
            "kind must be one of {}",
            SCHEDULE_KINDS.join(", ")
        )));
    }
    kind.parse().map_err(|_| ApiError::invalid("unknown kind"))
}

/// Validates a configuration and computes its next run.
pub(crate) fn finish(state: &AppState, mut s: NewSchedule) -> ApiResult<NewSchedule> {
    check_name(&s.name)?;
    let parsed = parse_when(&s.spec, &s.timezone)?;
    check_retention(&s.retention)?;
    check_kind_options(&s)?;
    if !s.sources.is_empty() {
        ops::source_key(state, s.kind, &s.sources)?;
    } else if s.kind.is_backup() {
        ops::source_key(state, s.kind, &[])?;
    }
    s.next_run_at = if s.enabled {
        parsed.next_after(state.now())
    } else {
        None
    };
    Ok(s)
}

#[derive(Debug, Deserialize, Default)]
struct Body {
    name: Option<String>,
    kind: Option<String>,
    sources: Option<Vec<String>>,
    when: Option<String>,
    timezone: Option<String>,
    enabled: Option<bool>,
    retention: Option<Value>,
    verify_after: Option<bool>,
    test_restore: Option<bool>,
}

async fn list(State(state): State<AppState>) -> ApiResult<Response> {
    let items: Vec<Value> = state
        .catalog()
        .schedules()
        .list()
        .await?
        .iter()
        .map(schedule_json)
        .collect();
    Ok(axum::Json(json!({"items": items})).into_response())
}

pub(crate) async fn get_schedule(state: &AppState, id: i64) -> ApiResult<Schedule> {
    match state.catalog().schedules().get(id).await {
        Ok(s) => Ok(s),
        Err(CatalogError::NotFound(_)) => {
            Err(ApiError::not_found(format!("no schedule with id {id}")))
        }
        Err(e) => Err(e.into()),
    }
}

fn conflict_name(e: CatalogError) -> ApiError {
    match e {
        CatalogError::Conflict(m) => ApiError::conflict("name_taken", m),
        other => other.into(),
    }
}

async fn create(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Extension(ip): Extension<ClientIp>,
    JsonBody(b): JsonBody<Body>,
) -> ApiResult<Response> {
    let (Some(name), Some(kind), Some(when)) = (b.name, b.kind, b.when) else {
        return Err(ApiError::invalid("name, kind and when are required"));
    };
    let new = finish(
        &state,
        NewSchedule {
            name,
            kind: parse_kind(&kind)?,
            sources: b.sources.unwrap_or_default(),
            spec: when,
            timezone: b
                .timezone
                .unwrap_or_else(|| state.config().timezone.clone()),
            enabled: b.enabled.unwrap_or(true),
            retention: b.retention.unwrap_or_else(|| json!({})),
            verify_after: b.verify_after.unwrap_or(false),
            test_restore: b.test_restore.unwrap_or(false),
            next_run_at: None,
        },
    )?;
    let s = state
        .catalog()
        .schedules()
        .create(&new, state.now())
        .await
        .map_err(conflict_name)?;
    state.invalidate_caches();
    state
        .audit(
            &p.actor(),
            "schedule.create",
            Some(s.id.to_string()),
            json!({"name": s.name, "when": s.spec, "via": p.via()}),
            ip.0,
        )
        .await;
    Ok((StatusCode::CREATED, axum::Json(schedule_json(&s))).into_response())
}

async fn get(State(state): State<AppState>, Path(id): Path<i64>) -> ApiResult<Response> {
    Ok(axum::Json(schedule_json(&get_schedule(&state, id).await?)).into_response())
}

/// The configuration of a stored schedule, to modify.
pub(crate) fn config_of(s: &Schedule) -> NewSchedule {
    NewSchedule {
        name: s.name.clone(),
        kind: s.kind,
        sources: s.sources.clone(),
        spec: s.spec.clone(),
        timezone: s.timezone.clone(),
        enabled: s.enabled,
        retention: s.retention.clone(),
        verify_after: s.verify_after,
        test_restore: s.test_restore,
        next_run_at: s.next_run_at,
    }
}

async fn update(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Extension(ip): Extension<ClientIp>,
    Path(id): Path<i64>,
    OptJson(b): OptJson<Body>,
) -> ApiResult<Response> {
    let cur = get_schedule(&state, id).await?;
    let mut n = config_of(&cur);
    if let Some(v) = b.name {
        n.name = v;
    }
    if let Some(v) = b.kind {
        n.kind = parse_kind(&v)?;
    }
    if let Some(v) = b.sources {
        n.sources = v;
    }
    if let Some(v) = b.when {
        n.spec = v;
    }
    if let Some(v) = b.timezone {
        n.timezone = v;
    }
    if let Some(v) = b.enabled {
        n.enabled = v;
    }
    if let Some(v) = b.retention {
        n.retention = v;
    }
    if let Some(v) = b.verify_after {
        n.verify_after = v;
    }
    if let Some(v) = b.test_restore {
        n.test_restore = v;
    }
    let n = finish(&state, n)?;
    let s = state
        .catalog()
        .schedules()
        .update(id, &n, state.now())
        .await
        .map_err(conflict_name)?;
    state.invalidate_caches();
    state
        .audit(
            &p.actor(),
            "schedule.update",
            Some(id.to_string()),
            json!({"name": s.name, "when": s.spec, "via": p.via()}),
            ip.0,
        )
        .await;
    Ok(axum::Json(schedule_json(&s)).into_response())
}

/// Enables or disables, recomputing the next run.
pub(crate) async fn set_enabled(
    state: &AppState,
    p: &Principal,
    ip: Option<std::net::IpAddr>,
    id: i64,
    enabled: bool,
) -> ApiResult<Schedule> {
    let cur = get_schedule(state, id).await?;
    let mut n = config_of(&cur);
    n.enabled = enabled;
    // A stored spec that no longer parses (edited by hand) is disabled without a next run.
    n.next_run_at = if enabled {
        parse_when(&n.spec, &n.timezone)?.next_after(state.now())
    } else {
        None
    };
    let s = state
        .catalog()
        .schedules()
        .update(id, &n, state.now())
        .await?;
    state.invalidate_caches();
    let action = if enabled {
        "schedule.enable"
    } else {
        "schedule.disable"
    };
    state
        .audit(
            &p.actor(),
            action,
            Some(id.to_string()),
            json!({"name": s.name, "via": p.via()}),
            ip,
        )
        .await;
    Ok(s)
}

async fn enable(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Extension(ip): Extension<ClientIp>,
    Path(id): Path<i64>,
) -> ApiResult<Response> {
    Ok(axum::Json(schedule_json(
        &set_enabled(&state, &p, ip.0, id, true).await?,
    ))
    .into_response())
}

async fn disable(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Extension(ip): Extension<ClientIp>,
    Path(id): Path<i64>,
) -> ApiResult<Response> {
    Ok(axum::Json(schedule_json(
        &set_enabled(&state, &p, ip.0, id, false).await?,
    ))
    .into_response())
}

/// The retention policy part of a schedule's `retention` JSON as the runner's
/// `RetentionPolicy` (`keep_*` counts that fit a u32; `null` when it keeps nothing by
/// itself, which the runner never applies).
fn policy_of(v: &Value) -> Value {
    let policy: serde_json::Map<String, Value> = RETENTION_KEYS
        .iter()
        .filter_map(|k| {
            let n = v.get(*k)?.as_u64().and_then(|n| u32::try_from(n).ok())?;
            (n > 0).then(|| ((*k).to_owned(), json!(n)))
        })
        .collect();
    if policy.is_empty() {
        Value::Null
    } else {
        Value::Object(policy)
    }
}

/// A verification schedule's read-data share as the runner's `u8` percentage, if valid.
fn read_data_subset_of(v: &Value) -> Option<u8> {
    v.get("read_data_subset")
        .and_then(Value::as_u64)
        .filter(|n| (1..=100).contains(n))
        .and_then(|n| u8::try_from(n).ok())
}

/// Enqueues the schedule's job now (whether or not it is enabled).
pub(crate) async fn run_schedule(
    state: &AppState,
    p: &Principal,
    ip: Option<std::net::IpAddr>,
    s: &Schedule,
) -> ApiResult<strongroom_catalog::Job> {
    let job = if s.kind.is_backup() {
        ops::enqueue_backup(
            state,
            p,
            ip,
            BackupRequest {
                kind: s.kind,
                sources: s.sources.clone(),
                verify: s.verify_after,
                test_restore: s.test_restore,
                schedule_id: Some(s.id),
                extra: json!({"schedule": s.name, "run_now": true, "retention": policy_of(&s.retention)}),
            },
        )
        .await?
    } else {
        let (source, names) = ops::source_key(state, s.kind, &s.sources)?;
        // The runner's `JobOptions` for a verification or prune run.
        let mut metadata = json!({
            "schedule": s.name, "run_now": true, "sources": names,
            "test_restore": s.test_restore,
        });
        if let (Some(share), Some(m)) =
            (read_data_subset_of(&s.retention), metadata.as_object_mut())
        {
            m.insert("read_data_subset".into(), json!(share));
        }
        let new = strongroom_catalog::NewJob {
            kind: s.kind,
            source,
            started_by: p.username.clone(),
            schedule_id: Some(s.id),
            time_limit_seconds: Some(ops::time_limit(state, s.kind)),
            metadata,
        };
        match state.catalog().jobs().enqueue(&new, state.now()).await {
            Ok(j) => j,
            Err(CatalogError::AlreadyActive { existing_job_id }) => {
                return Err(ApiError::conflict(
                    "already_in_progress",
                    format!(
                        "a {} job is already queued or in progress (job {existing_job_id})",
                        s.kind
                    ),
                )
                .with_extra(json!({"existing_job_id": existing_job_id})));
            }
            Err(e) => return Err(e.into()),
        }
    };
    if let Err(e) = state
        .catalog()
        .schedules()
        .record_run(s.id, state.now(), Some(job.id), None)
        .await
    {
        tracing::warn!(error = %state.redact(&e.to_string()), "could not record a run-now");
    }
    state
        .audit(
            &p.actor(),
            "schedule.run_now",
            Some(s.id.to_string()),
            json!({"job_id": job.id, "via": p.via()}),
            ip,
        )
        .await;
    Ok(job)
}

async fn run_now(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Extension(ip): Extension<ClientIp>,
    Path(id): Path<i64>,
) -> ApiResult<Response> {
    let s = get_schedule(&state, id).await?;
    let job = run_schedule(&state, &p, ip.0, &s).await?;
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(json!({"job_id": job.id, "job": job})),
    )
        .into_response())
}

async fn delete(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Extension(ip): Extension<ClientIp>,
    Path(id): Path<i64>,
) -> ApiResult<Response> {
    let s = get_schedule(&state, id).await?;
    state.catalog().schedules().delete(id).await?;
    state.invalidate_caches();
    state
        .audit(
            &p.actor(),
            "schedule.delete",
            Some(id.to_string()),
            json!({"name": s.name, "via": p.via()}),
            ip.0,
        )
        .await;
    Ok(axum::Json(json!({"deleted": id})).into_response())
}
