//! `/api/v1/users` and `/api/v1/tokens` (admin): local users (argon2id) and API tokens (stored
//! hashed, with scopes and expiry, revocable; the token itself is shown once, at creation).
//!
//! Must not return a password hash or a token hash, and must not let an admin lock themself
//! out (deleting, disabling or demoting oneself, revoking the token in use).

use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::json;
use strongroom_catalog::{ApiToken, CatalogError, NewToken, NewUser, Role};

use super::auth::{check_new_password, user_json};
use crate::auth::password::{generate_api_token, hash_password};
use crate::auth::{ClientIp, Credential, Permission, Principal, clear_token_cache};
use crate::error::{ApiError, ApiResult};
use crate::openapi::s::*;
use crate::routes::{Doc, Registry};
use crate::state::AppState;
use crate::util::{JsonBody, OptJson, parse_time};

pub(crate) fn register(r: &mut Registry) {
    let roles = enumeration(&["admin", "staff", "viewer"]);
    r.v1(
        Method::GET,
        "/api/v1/users",
        Permission::ManageUsers,
        Doc::new("users", "List users").ok(200, all(&[("items", arr(sref("User")))])),
        list_users,
    );
    r.v1(
        Method::POST,
        "/api/v1/users",
        Permission::ManageUsers,
        Doc::new("users", "Create a user")
            .body(all(&[
                ("username", string()),
                ("password", string()),
                ("role", roles.clone()),
            ]))
            .ok(201, sref("User")),
        create_user,
    );
    r.v1(
        Method::GET,
        "/api/v1/users/{id}",
        Permission::ManageUsers,
        Doc::new("users", "One user").ok(200, sref("User")),
        get_user,
    );
    r.v1(
        Method::PUT,
        "/api/v1/users/{id}",
        Permission::ManageUsers,
        Doc::new(
            "users",
            "Change a user's role, state or password (a new password ends their sessions)",
        )
        .body(obj(
            &[
                ("role", roles),
                ("disabled", boolean()),
                ("password", string()),
            ],
            &[],
        ))
        .ok(200, sref("User")),
        update_user,
    );
    r.v1(
        Method::DELETE,
        "/api/v1/users/{id}",
        Permission::ManageUsers,
        Doc::new("users", "Delete a user with their tokens and sessions")
            .ok(200, all(&[("deleted", int())])),
        delete_user,
    );
    r.v1(
        Method::GET,
        "/api/v1/tokens",
        Permission::ManageUsers,
        Doc::new("tokens", "List API tokens (of one user with user_id)")
            .query("user_id", int(), "only this user's tokens")
            .ok(200, all(&[("items", arr(sref("Token")))])),
        list_tokens,
    );
    r.v1(
        Method::POST,
        "/api/v1/tokens",
        Permission::ManageUsers,
        Doc::new("tokens", "Create an API token (shown once)")
            .body(obj(
                &[
                    ("name", string()),
                    ("user_id", int()),
                    ("scopes", arr(string())),
                    ("expires_at", time()),
                    ("expires_in_days", int_range(1, 3650)),
                ],
                &["name"],
            ))
            .ok(201, all(&[("token", string()), ("info", sref("Token"))])),
        create_token,
    );
    r.v1(
        Method::DELETE,
        "/api/v1/tokens/{id}",
        Permission::ManageUsers,
        Doc::new("tokens", "Revoke an API token").ok(200, all(&[("revoked", int())])),
        revoke_token,
    );
}

fn token_json(t: &ApiToken) -> serde_json::Value {
    json!({
        "id": t.id, "user_id": t.user_id, "name": t.name, "scopes": t.scopes,
        "created_at": t.created_at, "expires_at": t.expires_at, "last_used_at": t.last_used_at,
        "revoked": t.revoked,
    })
}

async fn get_user_row(state: &AppState, id: i64) -> ApiResult<strongroom_catalog::User> {
    match state.catalog().users().get(id).await {
        Ok(u) => Ok(u),
        Err(CatalogError::NotFound(_)) => Err(ApiError::not_found(format!("no user with id {id}"))),
        Err(e) => Err(e.into()),
    }
}

async fn list_users(State(state): State<AppState>) -> ApiResult<Response> {
    let items: Vec<_> = state
        .catalog()
        .users()
        .list()
        .await?
        .iter()
        .map(user_json)
        .collect();
    Ok(axum::Json(json!({"items": items})).into_response())
}

#[derive(Deserialize)]
struct NewUserBody {
    username: String,
    password: String,
    role: String,
}

fn parse_role(r: &str) -> ApiResult<Role> {
    r.parse()
        .map_err(|_| ApiError::invalid("role must be admin, staff or viewer"))
}

async fn hash(state: &AppState, pw: String) -> ApiResult<String> {
    tokio::task::spawn_blocking(move || hash_password(&pw))
        .await
        .map_err(|e| state.internal(e))?
        .map_err(|e| state.internal(e))
}

async fn create_user(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Extension(ip): Extension<ClientIp>,
    JsonBody(b): JsonBody<NewUserBody>,
) -> ApiResult<Response> {
    let name = b.username.trim().to_owned();
    if name.is_empty()
        || name.len() > 64
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-@".contains(c))
    {
        return Err(ApiError::invalid(
            "username must be 1-64 letters, digits, '_', '.', '-' or '@'",
        ));
    }
    let role = parse_role(&b.role)?;
    check_new_password(&b.password)?;
    let password_hash = hash(&state, b.password).await?;
    let user = state
        .catalog()
        .users()
        .create(
            &NewUser {
                username: name,
                password_hash,
                role,
            },
            state.now(),
        )
        .await
        .map_err(|e| match e {
            CatalogError::Conflict(m) => ApiError::conflict("username_taken", m),
            other => other.into(),
        })?;
    state
        .audit(
            &p.actor(),
            "user.create",
            Some(user.username.clone()),
            json!({"role": role, "via": p.via()}),
            ip.0,
        )
        .await;
    Ok((StatusCode::CREATED, axum::Json(user_json(&user))).into_response())
}

async fn get_user(State(state): State<AppState>, Path(id): Path<i64>) -> ApiResult<Response> {
    Ok(axum::Json(user_json(&get_user_row(&state, id).await?)).into_response())
}

#[derive(Deserialize, Default)]
struct UpdateUserBody {
    role: Option<String>,
    disabled: Option<bool>,
    password: Option<String>,
}

async fn update_user(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Extension(ip): Extension<ClientIp>,
    Path(id): Path<i64>,
    OptJson(b): OptJson<UpdateUserBody>,
) -> ApiResult<Response> {
    let user = get_user_row(&state, id).await?;
    let role = b.role.as_deref().map(parse_role).transpose()?;
    if id == p.user_id && (role.is_some_and(|r| r != Role::Admin) || b.disabled == Some(true)) {
        return Err(ApiError::conflict(
            "self_lockout",
            "you cannot demote or disable yourself; ask another admin",
        ));
    }
    if let Some(pw) = &b.password {
        check_new_password(pw)?;
    }
    let users = state.catalog().users();
    let mut changed = Vec::new();
    if let Some(r) = role {
        users.set_role(id, r).await?;
        changed.push("role");
    }
    if let Some(d) = b.disabled {
        users.set_disabled(id, d).await?;
        if d {
            state.catalog().sessions().delete_for_user(id).await?;
        }
        changed.push("disabled");
    }
    if let Some(pw) = b.password {
        let h = hash(&state, pw).await?;
        users.set_password_hash(id, &h, state.now()).await?;
        state.catalog().sessions().delete_for_user(id).await?;
        changed.push("password");
    }
    clear_token_cache(&state);
    state
        .audit(
            &p.actor(),
            "user.update",
            Some(user.username.clone()),
            json!({"changed": changed, "role": role, "disabled": b.disabled, "via": p.via()}),
            ip.0,
        )
        .await;
    Ok(axum::Json(user_json(&get_user_row(&state, id).await?)).into_response())
}

async fn delete_user(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Extension(ip): Extension<ClientIp>,
    Path(id): Path<i64>,
) -> ApiResult<Response> {
    let user = get_user_row(&state, id).await?;
    if id == p.user_id {
        return Err(ApiError::conflict(
            "self_lockout",
            "you cannot delete yourself; ask another admin",
        ));
    }
    state.catalog().users().delete(id).await?;
    clear_token_cache(&state);
    state
        .audit(
            &p.actor(),
            "user.delete",
            Some(user.username),
            json!({"via": p.via()}),
            ip.0,
        )
        .await;
    Ok(axum::Json(json!({"deleted": id})).into_response())
}

#[derive(Deserialize, Default)]
struct TokenQuery {
    user_id: Option<i64>,
}

async fn list_tokens(
    State(state): State<AppState>,
    Query(q): Query<TokenQuery>,
) -> ApiResult<Response> {
    let users = match q.user_id {
        Some(id) => vec![get_user_row(&state, id).await?],
        None => state.catalog().users().list().await?,
    };
    let mut items = Vec::new();
    for u in users {
        for t in state.catalog().tokens().list_for_user(u.id).await? {
            items.push(token_json(&t));
        }
    }
    Ok(axum::Json(json!({"items": items})).into_response())
}

#[derive(Deserialize)]
struct NewTokenBody {
    name: String,
    user_id: Option<i64>,
    #[serde(default)]
    scopes: Vec<String>,
    expires_at: Option<String>,
    expires_in_days: Option<u32>,
}

async fn create_token(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Extension(ip): Extension<ClientIp>,
    JsonBody(b): JsonBody<NewTokenBody>,
) -> ApiResult<Response> {
    let name = b.name.trim().to_owned();
    if name.is_empty() || name.len() > 100 {
        return Err(ApiError::invalid("name must be 1-100 characters"));
    }
    for s in &b.scopes {
        if s != "*" && !Permission::scopes().any(|k| k == s) {
            return Err(ApiError::invalid(format!(
                "unknown scope {s:?} (known: {})",
                Permission::scopes().collect::<Vec<_>>().join(", ")
            )));
        }
    }
    let now = state.now();
    let expires_at: Option<DateTime<Utc>> = match (&b.expires_at, b.expires_in_days) {
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid(
                "give expires_at or expires_in_days, not both",
            ));
        }
        (Some(t), None) => Some(parse_time("expires_at", t)?),
        (None, Some(d)) if (1..=3650).contains(&d) => {
            Some(now + chrono::Duration::days(i64::from(d)))
        }
        (None, Some(_)) => return Err(ApiError::invalid("expires_in_days must be 1 to 3650")),
        (None, None) => None,
    };
    if expires_at.is_some_and(|e| e <= now) {
        return Err(ApiError::invalid("expires_at must be in the future"));
    }
    let owner = get_user_row(&state, b.user_id.unwrap_or(p.user_id)).await?;
    let (token, token_hash) = generate_api_token().map_err(|e| state.internal(e))?;
    let t = state
        .catalog()
        .tokens()
        .create(
            &NewToken {
                user_id: owner.id,
                name,
                token_hash,
                scopes: b.scopes,
                expires_at,
            },
            now,
        )
        .await?;
    state
        .audit(
            &p.actor(),
            "token.create",
            Some(t.id.to_string()),
            json!({"user": owner.username, "name": t.name, "scopes": t.scopes, "via": p.via()}),
            ip.0,
        )
        .await;
    Ok((
        StatusCode::CREATED,
        axum::Json(json!({"token": token, "info": token_json(&t)})),
    )
        .into_response())
}

async fn revoke_token(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Extension(ip): Extension<ClientIp>,
    Path(id): Path<i64>,
) -> ApiResult<Response> {
    if let Credential::Token { id: current, .. } = &p.credential
        && *current == id
    {
        return Err(ApiError::conflict(
            "self_lockout",
            "you cannot revoke the token you are using; use another credential",
        ));
    }
    match state.catalog().tokens().revoke(id).await {
        Ok(()) => {}
        Err(CatalogError::NotFound(_)) => {
            return Err(ApiError::not_found(format!("no token with id {id}")));
        }
        Err(e) => return Err(e.into()),
    }
    clear_token_cache(&state);
    state
        .audit(
            &p.actor(),
            "token.revoke",
            Some(id.to_string()),
            json!({"via": p.via()}),
            ip.0,
        )
        .await;
    Ok(axum::Json(json!({"revoked": id})).into_response())
}
