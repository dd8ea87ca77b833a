//! Session cookies: `__Host-strongroom_session` (HttpOnly, SameSite=Strict, Secure, Path=/,
//! no Domain) when cookies can be secure, else `strongroom_session` without `Secure` (browsers
//! refuse a `__Host-` cookie without it). The cookie holds a random secret; the catalog stores
//! only its hash, with the session's CSRF token.
//!
//! Must not put anything but the random secret in the cookie.

use axum::http::HeaderMap;
use axum::http::header;
use chrono::{DateTime, Utc};
use strongroom_catalog::{NewSession, User};

use super::password::{random_secret, token_hash};
use crate::error::ApiError;
use crate::state::AppState;

/// The cookie name with secure cookies.
pub const SECURE_COOKIE: &str = "__Host-strongroom_session";
/// The cookie name without.
pub const PLAIN_COOKIE: &str = "strongroom_session";

/// The session secret from the request's cookies, if any.
pub fn cookie_secret(headers: &HeaderMap) -> Option<String> {
    for v in headers.get_all(header::COOKIE) {
        let Ok(text) = v.to_str() else { continue };
        for pair in text.split(';') {
            let mut kv = pair.trim().splitn(2, '=');
            let name = kv.next().unwrap_or_default();
            let value = kv.next().unwrap_or_default();
            if (name == SECURE_COOKIE || name == PLAIN_COOKIE) && !value.is_empty() {
                return Some(value.to_owned());
            }
        }
    }
    None
}

/// A new session for `user`: the `Set-Cookie` value, the CSRF token and when it ends.
pub(crate) async fn create(
    state: &AppState,
    user: &User,
    now: DateTime<Utc>,
) -> Result<(String, String, DateTime<Utc>), ApiError> {
    let secret = random_secret().map_err(|e| state.internal(e))?;
    let csrf = random_secret().map_err(|e| state.internal(e))?;
    let opts = state.options();
    let idle =
        chrono::Duration::from_std(opts.session_idle_timeout).unwrap_or(chrono::Duration::MAX);
    let absolute =
        chrono::Duration::from_std(opts.session_absolute_timeout).unwrap_or(chrono::Duration::MAX);
    let expires_at = std::cmp::min(now + idle, now + absolute);
    state
        .catalog()
        .sessions()
        .create(
            &NewSession {
                id: token_hash(&secret),
                user_id: user.id,
                expires_at,
                csrf_token: csrf.clone(),
            },
            now,
        )
        .await?;
    let max_age = opts.session_absolute_timeout.as_secs();
    Ok((set_cookie(state, &secret, max_age), csrf, expires_at))
}

/// A `Set-Cookie` value carrying `value` for `max_age` seconds (0 deletes it).
pub(crate) fn set_cookie(state: &AppState, value: &str, max_age: u64) -> String {
    if state.options().secure_cookies {
        format!(
            "{SECURE_COOKIE}={value}; Path=/; Max-Age={max_age}; HttpOnly; Secure; SameSite=Strict"
        )
    } else {
        format!("{PLAIN_COOKIE}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Strict")
    }
}
