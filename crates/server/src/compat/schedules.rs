//! The clinic's schedule endpoints: list and create (A9), update (A10), toggle (A11), run now
//! (A12). The clinic's `(backup_type, schedule_type, schedule_time)` maps onto a Strongroom
//! schedule named `<type>-<schedule_type>` with the spec `daily HH:MM`, `weekly sun HH:MM` or
//! `monthly 1 HH:MM` in the configured time zone; other specs show as `custom`.
//!
//! Must not crash on any stored schedule (the clinic's crashed on every daily one).

use std::collections::HashMap;

use axum::Extension;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::Timelike;
use serde::Deserialize;
use serde_json::{Value, json};
use strongroom_catalog::{CatalogError, NewSchedule, Schedule};

use super::compat_err;
use crate::api::schedules::{config_of, finish, get_schedule, run_schedule, set_enabled};
use crate::auth::{ClientIp, Principal};
use crate::error::{ApiError, ApiResult};
use crate::health::retention_days;
use crate::state::AppState;
use crate::util::OptJson;

fn hhmm(h: &str, m: &str) -> Option<String> {
    let h: u32 = h.parse().ok()?;
    let m: u32 = m.parse().ok()?;
    (h < 24 && m < 60).then(|| format!("{h:02}:{m:02}"))
}

/// `(schedule_type, schedule_time)` of a spec.
pub(crate) fn schedule_fields(spec: &str) -> (String, String) {
    let parts: Vec<&str> = spec.split_whitespace().collect();
    let time = |t: &str| t.split_once(':').and_then(|(h, m)| hhmm(h, m));
    let found = match parts.as_slice() {
        ["daily", t] => time(t).map(|t| ("daily", t)),
        ["weekly", _, t] => time(t).map(|t| ("weekly", t)),
        ["monthly", _, t] => time(t).map(|t| ("monthly", t)),
        ["hourly", t] => Some(("hourly", (*t).to_owned())),
        ["@daily"] | ["@midnight"] => Some(("daily", "00:00".to_owned())),
        ["@weekly"] => Some(("weekly", "00:00".to_owned())),
        ["@monthly"] => Some(("monthly", "00:00".to_owned())),
        ["@hourly"] => Some(("hourly", ":00".to_owned())),
        [m, h, dom, "*", dow] => hhmm(h, m).and_then(|t| match (*dom, *dow) {
            ("*", "*") => Some(("daily", t)),
            ("*", _) => Some(("weekly", t)),
            (_, "*") => Some(("monthly", t)),
            _ => None,
        }),
        _ => None,
    };
    match found {
        Some((k, t)) => (k.to_owned(), t),
        None => ("custom".to_owned(), spec.to_owned()),
    }
}

/// The next run in the schedule's own time zone, as Python's `isoformat()` writes it.
fn next_run(s: &Schedule) -> Value {
    let Some(t) = s.next_run_at else {
        return Value::Null;
    };
    let local = match strongroom_scheduler::parse_timezone(&s.timezone) {
        Ok(tz) => t.with_timezone(&tz).fixed_offset(),
        Err(_) => t.fixed_offset(),
    };
    let text = if local.nanosecond() / 1000 == 0 {
        local.format("%Y-%m-%dT%H:%M:%S%:z").to_string()
    } else {
        local.format("%Y-%m-%dT%H:%M:%S%.6f%:z").to_string()
    };
    Value::String(text)
}

/// One schedule row as the page reads it.
pub(crate) fn schedule_row(s: &Schedule) -> Value {
    let (kind, time) = schedule_fields(&s.spec);
    json!({
        "id": s.id, "backup_type": s.kind.as_str(), "schedule_type": kind, "schedule_time": time,
        "is_active": s.enabled, "retention_days": retention_days(s), "next_run_time": next_run(s),
    })
}

fn not_found() -> ApiError {
    ApiError::not_found("Schedule not found").compat()
}

async fn schedule(state: &AppState, id: i64) -> ApiResult<Schedule> {
    get_schedule(state, id).await.map_err(|e| {
        if e.status == StatusCode::NOT_FOUND {
            not_found()
        } else {
            e.compat()
        }
    })
}

/// A9 `GET backup/schedules/`.
pub(crate) async fn list(State(state): State<AppState>) -> ApiResult<Response> {
    let all = state
        .catalog()
        .schedules()
        .list()
        .await
        .map_err(|e| ApiError::from(e).compat())?;
    let mut rows: Vec<Value> = all.iter().map(schedule_row).collect();
    rows.sort_by_key(|r| {
        (
            r["backup_type"].to_string(),
            r["schedule_type"].to_string(),
            r["id"].as_i64(),
        )
    });
    Ok(axum::Json(json!({"success": true, "schedules": rows})).into_response())
}

#[derive(Deserialize, Default)]
pub(crate) struct Body {
    backup_type: Option<String>,
    schedule_type: Option<String>,
    schedule_time: Option<String>,
    is_active: Option<bool>,
    retention_days: Option<i64>,
    configuration: Option<HashMap<String, Value>>,
}

fn spec_for(schedule_type: &str, time: &str) -> ApiResult<String> {
    let t = time
        .split_once(':')
        .and_then(|(h, m)| hhmm(h, m.get(..2).unwrap_or(m)))
        .ok_or_else(|| ApiError::bad_request("schedule_time must be HH:MM").compat())?;
    match schedule_type {
        "daily" => Ok(format!("daily {t}")),
        "weekly" => Ok(format!("weekly sun {t}")),
        "monthly" => Ok(format!("monthly 1 {t}")),
        "manual" => Err(ApiError::bad_request(
            "Manual schedules are not stored; use Run Now or POST backup/create/",
        )
        .compat()),
        _ => Err(ApiError::bad_request("schedule_type must be daily, weekly or monthly").compat()),
    }
}

fn check_type(t: &str) -> ApiResult<strongroom_catalog::JobKind> {
    match t {
        "database" | "media" | "full" => t
            .parse()
            .map_err(|_| ApiError::bad_request("bad type").compat()),
        _ => Err(ApiError::bad_request(
            "Invalid backup type. Must be one of: database, media, full",
        )
        .compat()),
    }
}

fn retention(days: Option<i64>) -> ApiResult<Value> {
    match days {
        None => Ok(json!({"keep_days": 7})),
        Some(d) if (1..=3650).contains(&d) => Ok(json!({"keep_days": d})),
        Some(_) => Err(ApiError::bad_request("retention_days must be 1 to 3650").compat()),
    }
}

fn apply(state: &AppState, n: NewSchedule) -> ApiResult<NewSchedule> {
    finish(state, n).map_err(|e| compat_err(e, ""))
}

async fn taken(state: &AppState, name: &str, except: Option<i64>) -> ApiResult<()> {
    match state.catalog().schedules().find_by_name(name).await {
        Ok(Some(s)) if Some(s.id) != except => {
            let (t, k) = name.split_once('-').unwrap_or((name, ""));
            Err(
                ApiError::bad_request(format!("A {k} schedule for {t} backups already exists"))
                    .compat(),
            )
        }
        Ok(_) => Ok(()),
        Err(e) => Err(ApiError::from(e).compat()),
    }
}

/// A9 `POST backup/schedules/`.
pub(crate) async fn create(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Extension(ip): Extension<ClientIp>,
    body: Result<OptJson<Body>, ApiError>,
) -> ApiResult<Response> {
    let OptJson(b) = body.map_err(ApiError::compat)?;
    let bt = b.backup_type.unwrap_or_else(|| "database".to_owned());
    let kind = check_type(&bt)?;
    let st = b.schedule_type.unwrap_or_else(|| "daily".to_owned());
    let spec = spec_for(&st, b.schedule_time.as_deref().unwrap_or("00:00"))?;
    let name = format!("{bt}-{st}");
    taken(&state, &name, None).await?;
    let cfg = b.configuration.unwrap_or_default();
    let verify = cfg
        .get("verify_integrity")
        .and_then(Value::as_bool)
        .unwrap_or(true);
    let n = apply(
        &state,
        NewSchedule {
            name,
            kind,
            sources: Vec::new(),
            spec,
            timezone: state.config().timezone.clone(),
            enabled: b.is_active.unwrap_or(true),
            retention: retention(b.retention_days)?,
            verify_after: verify,
            test_restore: false,
            next_run_at: None,
        },
    )?;
    let s = state
        .catalog()
        .schedules()
        .create(&n, state.now())
        .await
        .map_err(|e| match e {
            CatalogError::Conflict(m) => ApiError::bad_request(m).compat(),
            other => ApiError::from(other).compat(),
        })?;
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
    Ok(axum::Json(json!({"success": true, "id": s.id})).into_response())
}

/// A10 `PUT|PATCH backup/schedules/{id}/`.
pub(crate) async fn update(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Extension(ip): Extension<ClientIp>,
    Path(id): Path<i64>,
    body: Result<OptJson<Body>, ApiError>,
) -> ApiResult<Response> {
    let OptJson(b) = body.map_err(ApiError::compat)?;
    let cur = schedule(&state, id).await?;
    let mut n = config_of(&cur);
    let (cur_type, cur_time) = schedule_fields(&cur.spec);
    if let Some(bt) = &b.backup_type {
        n.kind = check_type(bt)?;
    }
    if b.schedule_type.is_some() || b.schedule_time.is_some() {
        let st = b.schedule_type.clone().unwrap_or(cur_type.clone());
        let time = b.schedule_time.clone().unwrap_or(if cur_type == "custom" {
            "00:00".to_owned()
        } else {
            cur_time
        });
        n.spec = spec_for(&st, &time)?;
    }
    if b.backup_type.is_some() || b.schedule_type.is_some() {
        let (st, _) = schedule_fields(&n.spec);
        n.name = format!("{}-{st}", n.kind.as_str());
        taken(&state, &n.name, Some(id)).await?;
    }
    if let Some(a) = b.is_active {
        n.enabled = a;
    }
    if b.retention_days.is_some() {
        n.retention = retention(b.retention_days)?;
    }
    if let Some(cfg) = &b.configuration
        && let Some(v) = cfg.get("verify_integrity").and_then(Value::as_bool)
    {
        n.verify_after = v;
    }
    let n = apply(&state, n)?;
    state
        .catalog()
        .schedules()
        .update(id, &n, state.now())
        .await
        .map_err(|e| match e {
            CatalogError::Conflict(m) => ApiError::bad_request(m).compat(),
            other => ApiError::from(other).compat(),
        })?;
    state.invalidate_caches();
    state
        .audit(
            &p.actor(),
            "schedule.update",
            Some(id.to_string()),
            json!({"name": n.name, "when": n.spec, "via": p.via()}),
            ip.0,
        )
        .await;
    Ok(axum::Json(json!({"success": true})).into_response())
}

/// A11 `POST backup/schedules/{id}/toggle/`.
pub(crate) async fn toggle(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Extension(ip): Extension<ClientIp>,
    Path(id): Path<i64>,
) -> ApiResult<Response> {
    let cur = schedule(&state, id).await?;
    let s = set_enabled(&state, &p, ip.0, id, !cur.enabled)
        .await
        .map_err(|e| compat_err(e, ""))?;
    Ok(axum::Json(json!({"success": true, "is_active": s.enabled})).into_response())
}

/// A12 `POST backup/schedules/{id}/run_now/`.
pub(crate) async fn run_now(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Extension(ip): Extension<ClientIp>,
    Path(id): Path<i64>,
) -> ApiResult<Response> {
    let s = schedule(&state, id).await?;
    let job = run_schedule(&state, &p, ip.0, &s)
        .await
        .map_err(|e| compat_err(e, s.kind.as_str()))?;
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(json!({"success": true, "backup_id": job.id})),
    )
        .into_response())
}
