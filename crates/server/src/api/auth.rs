//! `/api/v1/auth`: log in (a session cookie plus its CSRF token), log out, who am I, change my
//! password. Logins are throttled per account and per client address and audited, successes
//! and failures alike.
//!
//! Must not say whether a user name exists, and must not create users (there is no open
//! "first user" endpoint: the first admin comes from the CLI).

use axum::Extension;
use axum::extract::State;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use crate::auth::password::{hash_password, verify_password};
use crate::auth::throttle::Throttle;
use crate::auth::{ClientIp, Credential, Permission, Principal, session};
use crate::error::{ApiError, ApiResult};
use crate::openapi::s::*;
use crate::routes::{Doc, Registry};
use crate::state::AppState;
use crate::util::JsonBody;

pub(crate) fn register(r: &mut Registry) {
    let session = all(&[
        ("user", sref("User")),
        ("csrf_token", string()),
        ("expires_at", time()),
    ]);
    r.v1(
        Method::POST,
        "/api/v1/auth/login",
        Permission::Public,
        Doc::new(
            "auth",
            "Log in: sets a session cookie and returns the CSRF token for state changes",
        )
        .body(all(&[("username", string()), ("password", string())]))
        .ok(200, session),
        login,
    );
    r.v1(
        Method::POST,
        "/api/v1/auth/logout",
        Permission::Authenticated,
        Doc::new("auth", "Log out (ends the session)").ok(200, all(&[("logged_out", boolean())])),
        logout,
    );
    r.v1(
        Method::GET,
        "/api/v1/auth/me",
        Permission::Authenticated,
        Doc::new("auth", "Who is calling, with which permissions").ok(
            200,
            all(&[
                ("user", sref("User")),
                ("via", string()),
                ("permissions", arr(string())),
                ("csrf_token", nullable(string())),
            ]),
        ),
        me,
    );
    r.v1(
        Method::POST,
        "/api/v1/auth/password",
        Permission::Authenticated,
        Doc::new("auth", "Change my password (ends every session of mine)")
            .body(all(&[
                ("current_password", string()),
                ("new_password", string()),
            ]))
            .ok(200, all(&[("changed", boolean())])),
        change_password,
    );
}

/// A user as the API shows it (never the hash).
pub(crate) fn user_json(u: &strongroom_catalog::User) -> serde_json::Value {
    json!({
        "id": u.id, "username": u.username, "role": u.role, "disabled": u.disabled,
        "created_at": u.created_at, "password_changed_at": u.password_changed_at,
    })
}

/// The minimum length of a new password.
pub(crate) const MIN_PASSWORD: usize = 12;

pub(crate) fn check_new_password(pw: &str) -> ApiResult<()> {
    if pw.chars().count() < MIN_PASSWORD || pw.len() > 1024 {
        return Err(ApiError::invalid(format!(
            "a password needs {MIN_PASSWORD} to 1024 characters"
        )));
    }
    Ok(())
}

#[derive(Deserialize)]
struct LoginBody {
    username: String,
    password: String,
}

fn too_many(secs: u64) -> ApiError {
    ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_attempts",
        format!("too many failed logins; try again in {secs} s"),
    )
    .with_retry_after(secs)
}

async fn login(
    State(state): State<AppState>,
    Extension(ip): Extension<ClientIp>,
    JsonBody(body): JsonBody<LoginBody>,
) -> ApiResult<Response> {
    let now = state.now();
    let throttle = &state.inner.throttle;
    let account = Throttle::account_key(&body.username);
    let address = Throttle::address_key(ip.0);
    if let Some(secs) = throttle.locked(&[&account, &address], now) {
        state
            .audit(&body.username, "login.throttled", None, json!({}), ip.0)
            .await;
        return Err(too_many(secs));
    }
    let user = state
        .catalog()
        .users()
        .find_by_username(&body.username)
        .await?;
    let pw = body.password.clone();
    let hash = user.as_ref().map(|u| u.password_hash.clone());
    let ok = tokio::task::spawn_blocking(move || match hash {
        Some(h) => verify_password(&pw, &h),
        None => {
            verify_password(&pw, crate::auth::password::dummy_hash());
            false
        }
    })
    .await
    .unwrap_or(false);
    let user = match user {
        Some(u) if ok && !u.disabled => u,
        _ => {
            let policy = throttle.policy().clone();
            throttle.failure(&account, policy.account_free_failures, now);
            throttle.failure(&address, policy.address_free_failures, now);
            state
                .audit(&body.username, "login.failure", None, json!({}), ip.0)
                .await;
            return Err(
                ApiError::unauthenticated("wrong user name or password").with_extra(json!({}))
            );
        }
    };
    throttle.success(&account);
    let (cookie, csrf, expires_at) = session::create(&state, &user, now).await?;
    state
        .audit(&user.username, "login.success", None, json!({}), ip.0)
        .await;
    let mut resp =
        axum::Json(json!({"user": user_json(&user), "csrf_token": csrf, "expires_at": expires_at}))
            .into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(resp)
}

async fn logout(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Extension(ip): Extension<ClientIp>,
) -> ApiResult<Response> {
    if let Credential::Session { id_hash, .. } = &p.credential {
        state.catalog().sessions().delete(id_hash).await?;
    }
    state
        .audit(&p.actor(), "logout", None, json!({"via": p.via()}), ip.0)
        .await;
    let mut resp = axum::Json(json!({"logged_out": true})).into_response();
    if let Ok(v) = HeaderValue::from_str(&session::set_cookie(&state, "", 0)) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(resp)
}

async fn me(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
) -> ApiResult<Response> {
    let user = state.catalog().users().get(p.user_id).await?;
    let perms: Vec<&str> = Permission::ALL
        .iter()
        .filter(|perm| !matches!(perm, Permission::Public) && p.allows(**perm))
        .map(|perm| perm.name())
        .collect();
    let csrf = match &p.credential {
        Credential::Session { csrf, .. } => Some(csrf.clone()),
        Credential::Token { .. } => None,
    };
    Ok(axum::Json(
        json!({"user": user_json(&user), "via": p.via(), "permissions": perms, "csrf_token": csrf}),
    )
    .into_response())
}

#[derive(Deserialize)]
struct PasswordBody {
    current_password: String,
    new_password: String,
}

async fn change_password(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Extension(ip): Extension<ClientIp>,
    JsonBody(body): JsonBody<PasswordBody>,
) -> ApiResult<Response> {
    let now = state.now();
    let account = Throttle::account_key(&p.username);
    if let Some(secs) = state.inner.throttle.locked(&[&account], now) {
        return Err(too_many(secs));
    }
    check_new_password(&body.new_password)?;
    let user = state.catalog().users().get(p.user_id).await?;
    let (cur, hash) = (body.current_password.clone(), user.password_hash.clone());
    let ok = tokio::task::spawn_blocking(move || verify_password(&cur, &hash))
        .await
        .unwrap_or(false);
    if !ok {
        let free = state.inner.throttle.policy().account_free_failures;
        state.inner.throttle.failure(&account, free, now);
        state
            .audit(
                &p.actor(),
                "password.change_failure",
                None,
                json!({"via": p.via()}),
                ip.0,
            )
            .await;
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "wrong_password",
            "the current password is wrong",
        ));
    }
    let new = body.new_password.clone();
    let hash = tokio::task::spawn_blocking(move || hash_password(&new))
        .await
        .map_err(|e| state.internal(e))?
        .map_err(|e| state.internal(e))?;
    state
        .catalog()
        .users()
        .set_password_hash(p.user_id, &hash, now)
        .await?;
    state
        .catalog()
        .sessions()
        .delete_for_user(p.user_id)
        .await?;
    crate::auth::clear_token_cache(&state);
    state
        .audit(
            &p.actor(),
            "password.change",
            Some(p.username.clone()),
            json!({"via": p.via()}),
            ip.0,
        )
        .await;
    let mut resp = axum::Json(json!({"changed": true})).into_response();
    if matches!(p.credential, Credential::Session { .. })
        && let Ok(v) = HeaderValue::from_str(&session::set_cookie(&state, "", 0))
    {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(resp)
}
