//! Authentication and authorization.
//!
//! [`authenticate`] runs on every request: it works out the client address (trusting
//! `X-Forwarded-For` only from configured proxies) and who is calling (an API token in
//! `Authorization: Bearer …` or `Authorization: Token …`, else a session cookie), and records
//! the outcome in the request. [`authorize`] runs on every route with the permission the route
//! declared: 401 without valid credentials, 403 for an insufficient role or scope, 403 for a
//! cookie-authenticated state change without the session's CSRF token.
//!
//! What this module must not do: accept a token or session that is revoked, expired or whose
//! user is disabled; tell apart "unknown user" and "wrong password"; log a credential.

pub mod password;
pub mod permissions;
pub mod session;
pub mod throttle;

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use strongroom_catalog::Role;

use crate::error::{ApiError, ErrorStyle};
use crate::routes::{Family, Forbidden};
use crate::state::AppState;
pub use permissions::Permission;

/// How a request was authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// A session cookie.
    Session {
        /// The stored id (hash of the cookie secret).
        id_hash: String,
        /// The session's CSRF token.
        csrf: String,
    },
    /// An API token.
    Token {
        /// Its catalog id.
        id: i64,
        /// Its label.
        name: String,
        /// Its scopes (empty: everything its user may do).
        scopes: Vec<String>,
    },
}

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The user's id.
    pub user_id: i64,
    /// The user's name.
    pub username: String,
    /// The user's role.
    pub role: Role,
    /// How they authenticated.
    pub credential: Credential,
}

impl Principal {
    /// Whether this caller has `perm`: the role must allow it and, for a scoped token, a scope
    /// must name it. A token scoped `metrics:read` reads metrics whatever its user's role.
    pub fn allows(&self, perm: Permission) -> bool {
        let scopes = match &self.credential {
            Credential::Token { scopes, .. } => scopes.as_slice(),
            Credential::Session { .. } => &[],
        };
        let scoped = scopes.iter().any(|s| s == perm.name() || s == "*");
        if matches!(perm, Permission::Public | Permission::Authenticated) {
            return true;
        }
        if perm == Permission::Metrics && scoped {
            return true;
        }
        perm.role_allows(self.role) && (scopes.is_empty() || scoped)
    }

    /// How audit entries name the caller.
    pub fn actor(&self) -> String {
        self.username.clone()
    }

    /// `via` for audit details.
    pub fn via(&self) -> String {
        match &self.credential {
            Credential::Session { .. } => "session".to_owned(),
            Credential::Token { name, .. } => format!("token:{name}"),
        }
    }
}

/// The client's address, as far as it can be trusted.
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub Option<IpAddr>);

/// What [`authenticate`] found.
#[derive(Debug, Clone)]
pub(crate) enum AuthOutcome {
    /// No credentials.
    Anonymous,
    /// Credentials that do not work (unknown, revoked, expired, disabled user).
    Invalid,
    /// A caller.
    Authenticated(Principal),
    /// The catalog failed.
    Failed(String),
}

/// The client address: the peer, or, when the peer is a trusted proxy, the right-most
/// address of `X-Forwarded-For` that is not itself a trusted proxy.
pub(crate) fn client_ip(
    state: &AppState,
    peer: Option<IpAddr>,
    headers: &HeaderMap,
) -> Option<IpAddr> {
    let trusted = &state.options().trusted_proxies;
    let is_trusted = |ip: IpAddr| trusted.iter().any(|n| n.contains(ip));
    let peer = peer?;
    if !is_trusted(peer) {
        return Some(peer);
    }
    let mut chain: Vec<IpAddr> = Vec::new();
    for v in headers.get_all("x-forwarded-for") {
        let Ok(text) = v.to_str() else {
            return Some(peer);
        };
        for part in text.split(',') {
            match part.trim().parse::<IpAddr>() {
                Ok(ip) => chain.push(ip),
                Err(_) => return Some(peer),
            }
        }
    }
    for ip in chain.into_iter().rev() {
        if !is_trusted(ip) {
            return Some(ip);
        }
    }
    Some(peer)
}

fn bearer(headers: &HeaderMap) -> Option<Result<String, ()>> {
    let v = headers.get(header::AUTHORIZATION)?;
    let Ok(text) = v.to_str() else {
        return Some(Err(()));
    };
    let mut parts = text.trim().splitn(2, ' ');
    let scheme = parts.next().unwrap_or_default();
    let value = parts.next().map(str::trim).unwrap_or_default();
    if (scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("token"))
        && !value.is_empty()
    {
        Some(Ok(value.to_owned()))
    } else {
        Some(Err(()))
    }
}

async fn resolve_token(state: &AppState, token: &str, now: DateTime<Utc>) -> AuthOutcome {
    let hash = password::token_hash(token);
    let ttl = state.options().auth_cache_ttl;
    if !ttl.is_zero()
        && let Ok(cache) = state.inner.token_cache.lock()
        && let Some((at, p)) = cache.get(&hash)
        && at.elapsed() < ttl
    {
        return AuthOutcome::Authenticated(p.clone());
    }
    let catalog = state.catalog();
    let tok = match catalog.tokens().find_by_hash(&hash).await {
        Ok(Some(t)) => t,
        Ok(None) => return AuthOutcome::Invalid,
        Err(e) => return AuthOutcome::Failed(e.to_string()),
    };
    if !tok.is_usable(now) {
        return AuthOutcome::Invalid;
    }
    let user = match catalog.users().get(tok.user_id).await {
        Ok(u) => u,
        Err(strongroom_catalog::CatalogError::NotFound(_)) => return AuthOutcome::Invalid,
        Err(e) => return AuthOutcome::Failed(e.to_string()),
    };
    if user.disabled {
        return AuthOutcome::Invalid;
    }
    if tok
        .last_used_at
        .is_none_or(|t| now - t >= chrono::Duration::seconds(60))
        && let Err(e) = catalog.tokens().touch(tok.id, now).await
    {
        tracing::warn!(error = %state.redact(&e.to_string()), "could not record a token's use");
    }
    let p = Principal {
        user_id: user.id,
        username: user.username,
        role: user.role,
        credential: Credential::Token {
            id: tok.id,
            name: tok.name,
            scopes: tok.scopes,
        },
    };
    // Cache only tokens that do not expire within the cache's lifetime.
    let expires_soon = tok.expires_at.is_some_and(|e| {
        e - now < chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX)
    });
    if !ttl.is_zero()
        && !expires_soon
        && let Ok(mut cache) = state.inner.token_cache.lock()
    {
        if cache.len() > 10_000 {
            cache.clear();
        }
        cache.insert(hash, (Instant::now(), p.clone()));
    }
    AuthOutcome::Authenticated(p)
}

async fn resolve_session(state: &AppState, secret: &str, now: DateTime<Utc>) -> AuthOutcome {
    let id_hash = password::token_hash(secret);
    let catalog = state.catalog();
    let s = match catalog.sessions().get(&id_hash).await {
        Ok(Some(s)) => s,
        Ok(None) => return AuthOutcome::Invalid,
        Err(e) => return AuthOutcome::Failed(e.to_string()),
    };
    let opts = state.options();
    let idle =
        chrono::Duration::from_std(opts.session_idle_timeout).unwrap_or(chrono::Duration::MAX);
    let absolute =
        chrono::Duration::from_std(opts.session_absolute_timeout).unwrap_or(chrono::Duration::MAX);
    let expired =
        now >= s.expires_at || now - s.last_seen_at >= idle || now - s.created_at >= absolute;
    if expired {
        if let Err(e) = catalog.sessions().delete(&id_hash).await {
            tracing::warn!(error = %state.redact(&e.to_string()), "could not delete an expired session");
        }
        return AuthOutcome::Invalid;
    }
    let user = match catalog.users().get(s.user_id).await {
        Ok(u) => u,
        Err(strongroom_catalog::CatalogError::NotFound(_)) => return AuthOutcome::Invalid,
        Err(e) => return AuthOutcome::Failed(e.to_string()),
    };
    if user.disabled || user.password_changed_at.is_some_and(|t| t > s.created_at) {
        return AuthOutcome::Invalid;
    }
    if now - s.last_seen_at >= chrono::Duration::seconds(5) {
        let new_expiry = std::cmp::min(now + idle, s.created_at + absolute);
        if let Err(e) = catalog.sessions().touch(&id_hash, now, new_expiry).await {
            tracing::warn!(error = %state.redact(&e.to_string()), "could not refresh a session");
        }
    }
    AuthOutcome::Authenticated(Principal {
        user_id: user.id,
        username: user.username,
        role: user.role,
        credential: Credential::Session {
            id_hash,
            csrf: s.csrf_token,
        },
    })
}

/// Middleware on every request: records [`ClientIp`] and the [`AuthOutcome`].
pub(crate) async fn authenticate(
    State(state): State<AppState>,
    mut req: Request,
    next: Next,
) -> Response {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let ip = client_ip(&state, peer, req.headers());
    req.extensions_mut().insert(ClientIp(ip));
    let now = state.now();
    let outcome = match bearer(req.headers()) {
        Some(Ok(token)) => resolve_token(&state, &token, now).await,
        Some(Err(())) => AuthOutcome::Invalid,
        None => match session::cookie_secret(req.headers()) {
            Some(secret) => resolve_session(&state, &secret, now).await,
            None => AuthOutcome::Anonymous,
        },
    };
    req.extensions_mut().insert(outcome);
    next.run(req).await
}

/// What a route needs, for [`authorize`].
#[derive(Debug, Clone)]
pub(crate) struct Gate {
    pub(crate) permission: Permission,
    pub(crate) family: Family,
}

fn unauthenticated(family: &Family, invalid: bool) -> Response {
    match family {
        Family::Compat(_) => ApiError::unauthenticated(if invalid {
            "Invalid token."
        } else {
            "Authentication credentials were not provided."
        })
        .styled(ErrorStyle::Detail)
        .into_response(),
        _ => ApiError::unauthenticated(if invalid {
            "invalid or expired credentials"
        } else {
            "authentication required: log in, or send an API token as `Authorization: Bearer <token>`"
        })
        .into_response(),
    }
}

fn forbidden(family: &Family, p: &Principal, perm: Permission) -> Response {
    match family {
        Family::Compat(Forbidden::Error(m)) => ApiError::forbidden(*m).legacy().into_response(),
        Family::Compat(Forbidden::Detail(m)) => ApiError::forbidden(*m)
            .styled(ErrorStyle::Detail)
            .into_response(),
        _ => ApiError::forbidden(format!(
            "this needs the `{}` permission, which your {} (role {}) does not have",
            perm.name(),
            match &p.credential {
                Credential::Session { .. } => "session",
                Credential::Token { .. } => "token",
            },
            p.role
        ))
        .into_response(),
    }
}

/// Route middleware: checks the route's declared permission and, for cookie-authenticated
/// state changes, the CSRF token.
pub(crate) async fn authorize(
    State((state, gate)): State<(AppState, Gate)>,
    mut req: Request,
    next: Next,
) -> Response {
    if gate.permission == Permission::Public {
        return next.run(req).await;
    }
    let outcome = req
        .extensions()
        .get::<AuthOutcome>()
        .cloned()
        .unwrap_or(AuthOutcome::Anonymous);
    let p = match outcome {
        AuthOutcome::Anonymous => return unauthenticated(&gate.family, false),
        AuthOutcome::Invalid => return unauthenticated(&gate.family, true),
        AuthOutcome::Failed(e) => {
            let err = state.internal(format!("authentication: {e}"));
            return match gate.family {
                Family::Compat(_) => err.compat().into_response(),
                _ => err.into_response(),
            };
        }
        AuthOutcome::Authenticated(p) => p,
    };
    if !p.allows(gate.permission) {
        return forbidden(&gate.family, &p, gate.permission);
    }
    if let Credential::Session { csrf, .. } = &p.credential
        && !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS)
    {
        let sent = req
            .headers()
            .get("x-csrf-token")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if sent.is_empty() || !password::secrets_equal(sent, csrf) {
            let e = ApiError::new(
                axum::http::StatusCode::FORBIDDEN,
                "csrf",
                "missing or wrong X-CSRF-Token header (a cookie-authenticated change needs the session's CSRF token)",
            );
            return match gate.family {
                Family::Compat(_) => {
                    ApiError::forbidden("CSRF Failed: CSRF token missing or incorrect.")
                        .styled(ErrorStyle::Detail)
                        .into_response()
                }
                _ => e.into_response(),
            };
        }
    }
    req.extensions_mut().insert(p);
    next.run(req).await
}

/// Forgets cached token look-ups (after a revocation or a user change).
pub(crate) fn clear_token_cache(state: &AppState) {
    if let Ok(mut c) = state.inner.token_cache.lock() {
        c.clear();
    }
}
