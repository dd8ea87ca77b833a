//! `/api/v1/audit` (read the audit log) and `/api/v1/settings` (run-time settings; every
//! change is itself an audit entry, which is also where the settings are kept).
//!
//! Must not offer a way to change or delete audit entries.

use axum::Extension;
use axum::extract::{Query, State};
use axum::http::Method;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use strongroom_catalog::AuditFilter;

use crate::auth::{ClientIp, Permission, Principal};
use crate::error::{ApiError, ApiResult};
use crate::openapi::s::*;
use crate::routes::{Doc, Registry};
use crate::settings::{RuntimeSettings, SETTINGS_ACTION};
use crate::state::AppState;
use crate::util::{JsonBody, parse_time};

pub(crate) fn register(r: &mut Registry) {
    r.v1(
        Method::GET,
        "/api/v1/audit",
        Permission::ReadAudit,
        Doc::new("audit", "The audit log, newest first")
            .query("actor", string(), "only this actor")
            .query(
                "action",
                string(),
                "only this action (e.g. backup.create, login.failure)",
            )
            .query(
                "from",
                json!({"type": "string", "format": "date-time"}),
                "at or after",
            )
            .query(
                "to",
                json!({"type": "string", "format": "date-time"}),
                "before",
            )
            .query("limit", int_range(1, 1000), "page size (default 100)")
            .query("offset", int_range(0, 1_000_000_000), "rows to skip")
            .ok(200, all(&[("items", arr(sref("AuditEntry")))])),
        audit,
    );
    r.v1(
        Method::GET,
        "/api/v1/settings",
        Permission::Settings,
        Doc::new("settings", "The run-time settings").ok(
            200,
            all(&[
                ("settings", sref("Settings")),
                ("defaults", sref("Settings")),
            ]),
        ),
        get_settings,
    );
    r.v1(
        Method::PUT,
        "/api/v1/settings",
        Permission::Settings,
        Doc::new(
            "settings",
            "Change run-time settings (fields not given stay)",
        )
        .body(obj(
            &[
                ("alert_emails", arr(string())),
                ("stuck_after_minutes", int_range(1, 10_080)),
            ],
            &[],
        ))
        .ok(
            200,
            all(&[
                ("settings", sref("Settings")),
                ("defaults", sref("Settings")),
            ]),
        ),
        put_settings,
    );
}

#[derive(Deserialize, Default)]
struct AuditQuery {
    actor: Option<String>,
    action: Option<String>,
    from: Option<String>,
    to: Option<String>,
    limit: Option<u32>,
    offset: Option<u64>,
}

async fn audit(State(state): State<AppState>, Query(q): Query<AuditQuery>) -> ApiResult<Response> {
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::invalid("limit must be between 1 and 1000"));
    }
    let filter = AuditFilter {
        actor: q.actor.filter(|s| !s.is_empty()),
        action: q.action.filter(|s| !s.is_empty()),
        from: q
            .from
            .as_deref()
            .map(|t| parse_time("from", t))
            .transpose()?,
        before: q.to.as_deref().map(|t| parse_time("to", t)).transpose()?,
        limit,
        offset: q.offset.unwrap_or(0).min(1_000_000_000),
    };
    let items = state.catalog().audit().list(&filter).await?;
    Ok(axum::Json(json!({"items": items})).into_response())
}

fn defaults(state: &AppState) -> RuntimeSettings {
    RuntimeSettings::defaults(state.config(), state.options().stuck_after_minutes)
}

async fn get_settings(State(state): State<AppState>) -> ApiResult<Response> {
    let s = state.settings().await?;
    Ok(axum::Json(json!({"settings": s, "defaults": defaults(&state)})).into_response())
}

#[derive(Deserialize, Default)]
struct SettingsBody {
    alert_emails: Option<Vec<String>>,
    stuck_after_minutes: Option<u32>,
}

fn valid_email(e: &str) -> bool {
    let Some((local, domain)) = e.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && e.len() <= 254
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !e
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "<>,;\"".contains(c))
        && !domain.contains('@')
}

async fn put_settings(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Extension(ip): Extension<ClientIp>,
    JsonBody(b): JsonBody<SettingsBody>,
) -> ApiResult<Response> {
    let mut s = state.settings().await?;
    let mut changed = Vec::new();
    if let Some(list) = b.alert_emails {
        if list.len() > 20 {
            return Err(ApiError::invalid("at most 20 alert e-mail addresses"));
        }
        for e in &list {
            if !valid_email(e) {
                return Err(ApiError::invalid(format!("{e:?} is not an e-mail address")));
            }
        }
        s.alert_emails = list;
        changed.push("alert_emails");
    }
    if let Some(m) = b.stuck_after_minutes {
        if !(1..=10_080).contains(&m) {
            return Err(ApiError::invalid("stuck_after_minutes must be 1 to 10080"));
        }
        s.stuck_after_minutes = m;
        changed.push("stuck_after_minutes");
    }
    let entry = strongroom_catalog::NewAuditEntry {
        actor: p.actor(),
        action: SETTINGS_ACTION.to_owned(),
        target: None,
        details: json!({"settings": s, "changed": changed, "via": p.via()}),
        ip: ip.0.map(|i| i.to_string()),
    };
    // The audit entry is the stored value: it must be written, or nothing changed.
    state.catalog().audit().append(&entry, state.now()).await?;
    state.set_settings(s.clone());
    state.invalidate_caches();
    Ok(axum::Json(json!({"settings": s, "defaults": defaults(&state)})).into_response())
}
