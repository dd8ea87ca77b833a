//! Users, API tokens and sessions: plain storage for the server's authentication.
//!
//! Only hashes are stored: password hashes (argon2id, computed by the server), token hashes and
//! session-id hashes. This module must not hash, verify or generate secrets, and its `Debug`
//! output never shows a hash or a CSRF token.

use std::fmt;

use chrono::{DateTime, Utc};

use crate::db::{Arg, Db, DbRow, args, enum_as, json_as};
use crate::error::{CatalogError, Result};
use crate::types::Role;

/// A local user.
#[derive(Clone, PartialEq)]
pub struct User {
    /// Catalog id.
    pub id: i64,
    /// Unique login name.
    pub username: String,
    /// The password hash (PHC string), never shown.
    pub password_hash: String,
    /// What the user may do.
    pub role: Role,
    /// When the user was created.
    pub created_at: DateTime<Utc>,
    /// Disabled users cannot log in or use tokens.
    pub disabled: bool,
    /// When the password was last set.
    pub password_changed_at: Option<DateTime<Utc>>,
}

impl fmt::Debug for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("User")
            .field("id", &self.id)
            .field("username", &self.username)
            .field("password_hash", &"<redacted>")
            .field("role", &self.role)
            .field("created_at", &self.created_at)
            .field("disabled", &self.disabled)
            .field("password_changed_at", &self.password_changed_at)
            .finish()
    }
}

/// A user to create.
#[derive(Clone, PartialEq)]
pub struct NewUser {
    /// Unique login name.
    pub username: String,
    /// The password hash (PHC string).
    pub password_hash: String,
    /// Role.
    pub role: Role,
}

impl fmt::Debug for NewUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewUser")
            .field("username", &self.username)
            .field("password_hash", &"<redacted>")
            .field("role", &self.role)
            .finish()
    }
}

/// An API token (only its hash is stored).
#[derive(Clone, PartialEq)]
pub struct ApiToken {
    /// Catalog id.
    pub id: i64,
    /// Owner.
    pub user_id: i64,
    /// A label chosen by the user.
    pub name: String,
    /// Hash of the token (unique), never shown.
    pub token_hash: String,
    /// What the token may do (empty: what its user may do).
    pub scopes: Vec<String>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it stops working, if ever.
    pub expires_at: Option<DateTime<Utc>>,
    /// When it was last used.
    pub last_used_at: Option<DateTime<Utc>>,
    /// Revoked tokens never work again.
    pub revoked: bool,
}

impl ApiToken {
    /// Not revoked and not expired at `now` (the owner's state is checked separately).
    pub fn is_usable(&self, now: DateTime<Utc>) -> bool {
        !self.revoked && self.expires_at.is_none_or(|e| now < e)
    }
}

impl fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiToken")
            .field("id", &self.id)
            .field("user_id", &self.user_id)
            .field("name", &self.name)
            .field("token_hash", &"<redacted>")
            .field("scopes", &self.scopes)
            .field("created_at", &self.created_at)
            .field("expires_at", &self.expires_at)
            .field("last_used_at", &self.last_used_at)
            .field("revoked", &self.revoked)
            .finish()
    }
}

/// A token to create.
#[derive(Clone, PartialEq)]
pub struct NewToken {
    /// Owner.
    pub user_id: i64,
    /// Label.
    pub name: String,
    /// Hash of the token.
    pub token_hash: String,
    /// Scopes.
    pub scopes: Vec<String>,
    /// Expiry, if any.
    pub expires_at: Option<DateTime<Utc>>,
}

impl fmt::Debug for NewToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewToken")
            .field("user_id", &self.user_id)
            .field("name", &self.name)
            .field("token_hash", &"<redacted>")
            .field("scopes", &self.scopes)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// A login session.
#[derive(Clone, PartialEq)]
pub struct Session {
    /// Hash of the session token (the cookie value is never stored).
    pub id: String,
    /// The logged-in user.
    pub user_id: i64,
    /// When it began.
    pub created_at: DateTime<Utc>,
    /// Last request seen.
    pub last_seen_at: DateTime<Utc>,
    /// When it ends.
    pub expires_at: DateTime<Utc>,
    /// The CSRF token bound to the session.
    pub csrf_token: String,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("id", &"<redacted>")
            .field("user_id", &self.user_id)
            .field("created_at", &self.created_at)
            .field("last_seen_at", &self.last_seen_at)
            .field("expires_at", &self.expires_at)
            .field("csrf_token", &"<redacted>")
            .finish()
    }
}

/// A session to create.
#[derive(Clone, PartialEq)]
pub struct NewSession {
    /// Hash of the session token.
    pub id: String,
    /// The user.
    pub user_id: i64,
    /// When it ends.
    pub expires_at: DateTime<Utc>,
    /// The CSRF token.
    pub csrf_token: String,
}

impl fmt::Debug for NewSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewSession")
            .field("id", &"<redacted>")
            .field("user_id", &self.user_id)
            .field("expires_at", &self.expires_at)
            .field("csrf_token", &"<redacted>")
            .finish()
    }
}

fn map_user(r: &dyn DbRow) -> Result<User> {
    Ok(User {
        id: r.int("id")?,
        username: r.text("username")?,
        password_hash: r.text("password_hash")?,
        role: enum_as(r, "role")?,
        created_at: r.time("created_at")?,
        disabled: r.boolean("disabled")?,
        password_changed_at: r.opt_time("password_changed_at")?,
    })
}

fn map_token(r: &dyn DbRow) -> Result<ApiToken> {
    Ok(ApiToken {
        id: r.int("id")?,
        user_id: r.int("user_id")?,
        name: r.text("name")?,
        token_hash: r.text("token_hash")?,
        scopes: json_as(r, "scopes")?,
        created_at: r.time("created_at")?,
        expires_at: r.opt_time("expires_at")?,
        last_used_at: r.opt_time("last_used_at")?,
        revoked: r.boolean("revoked")?,
    })
}

fn map_session(r: &dyn DbRow) -> Result<Session> {
    Ok(Session {
        id: r.text("id")?,
        user_id: r.int("user_id")?,
        created_at: r.time("created_at")?,
        last_seen_at: r.time("last_seen_at")?,
        expires_at: r.time("expires_at")?,
        csrf_token: r.text("csrf_token")?,
    })
}

fn one_changed(n: u64, what: impl FnOnce() -> String) -> Result<()> {
    if n == 0 {
        Err(CatalogError::NotFound(what()))
    } else {
        Ok(())
    }
}

/// The users table; get it from [`crate::Catalog::users`].
pub struct Users<'a> {
    pub(crate) db: &'a Db,
}

impl Users<'_> {
    /// Creates a user ([`CatalogError::Conflict`] if the name is taken).
    pub async fn create(&self, new: &NewUser, now: DateTime<Utc>) -> Result<User> {
        if new.username.trim().is_empty() || new.password_hash.is_empty() {
            return Err(CatalogError::Invalid(
                "a user needs a name and a password hash".into(),
            ));
        }
        self.db
            .fetch_one(
                "INSERT INTO users (username, password_hash, role, created_at, disabled, \
                 password_changed_at) VALUES ($1, $2, $3, $4, FALSE, $4) RETURNING *",
                args![&new.username, &new.password_hash, new.role.as_str(), now],
                map_user,
            )
            .await
            .map_err(|e| match e {
                CatalogError::Conflict(_) => {
                    CatalogError::Conflict(format!("user {:?} already exists", new.username))
                }
                other => other,
            })
    }

    /// The user with this id ([`CatalogError::NotFound`] if none).
    pub async fn get(&self, id: i64) -> Result<User> {
        self.db
            .fetch_optional("SELECT * FROM users WHERE id = $1", args![id], map_user)
            .await?
            .ok_or_else(|| CatalogError::not_found(format!("user {id}")))
    }

    /// The user with this name, if any.
    pub async fn find_by_username(&self, username: &str) -> Result<Option<User>> {
        self.db
            .fetch_optional(
                "SELECT * FROM users WHERE username = $1",
                args![username],
                map_user,
            )
            .await
    }

    /// Every user, by name.
    pub async fn list(&self) -> Result<Vec<User>> {
        self.db
            .fetch_all("SELECT * FROM users ORDER BY username", args![], map_user)
            .await
    }

    /// How many users exist (0 means the first-run setup has not happened).
    pub async fn count(&self) -> Result<u64> {
        let n = self
            .db
            .fetch_one("SELECT COUNT(*) AS n FROM users", args![], |r| r.int("n"))
            .await?;
        u64::try_from(n).map_err(|_| CatalogError::corrupt("negative count"))
    }

    /// Sets a new password hash.
    pub async fn set_password_hash(&self, id: i64, hash: &str, now: DateTime<Utc>) -> Result<()> {
        let n = self
            .db
            .execute(
                "UPDATE users SET password_hash = $2, password_changed_at = $3 WHERE id = $1",
                args![id, hash, now],
            )
            .await?;
        one_changed(n, || format!("user {id}"))
    }

    /// Changes a user's role.
    pub async fn set_role(&self, id: i64, role: Role) -> Result<()> {
        let n = self
            .db
            .execute(
                "UPDATE users SET role = $2 WHERE id = $1",
                args![id, role.as_str()],
            )
            .await?;
        one_changed(n, || format!("user {id}"))
    }

    /// Disables or re-enables a user.
    pub async fn set_disabled(&self, id: i64, disabled: bool) -> Result<()> {
        let n = self
            .db
            .execute(
                "UPDATE users SET disabled = $2 WHERE id = $1",
                args![id, disabled],
            )
            .await?;
        one_changed(n, || format!("user {id}"))
    }

    /// Deletes a user with their tokens and sessions.
    pub async fn delete(&self, id: i64) -> Result<()> {
        let n = self
            .db
            .execute("DELETE FROM users WHERE id = $1", args![id])
            .await?;
        one_changed(n, || format!("user {id}"))
    }
}

/// The api_tokens table; get it from [`crate::Catalog::tokens`].
pub struct Tokens<'a> {
    pub(crate) db: &'a Db,
}

impl Tokens<'_> {
    /// Stores a new token ([`CatalogError::Conflict`] if the hash exists or the user does
    /// not).
    pub async fn create(&self, new: &NewToken, now: DateTime<Utc>) -> Result<ApiToken> {
        if new.token_hash.is_empty() {
            return Err(CatalogError::Invalid("a token needs a hash".into()));
        }
        let mut a = args![new.user_id, &new.name, &new.token_hash];
        a.push(Arg::json(&new.scopes)?);
        a.extend(args![now, new.expires_at]);
        self.db
            .fetch_one(
                "INSERT INTO api_tokens (user_id, name, token_hash, scopes, created_at, \
                 expires_at, revoked) VALUES ($1, $2, $3, $4, $5, $6, FALSE) RETURNING *",
                a,
                map_token,
            )
            .await
    }

    /// The token with this id ([`CatalogError::NotFound`] if none).
    pub async fn get(&self, id: i64) -> Result<ApiToken> {
        self.db
            .fetch_optional(
                "SELECT * FROM api_tokens WHERE id = $1",
                args![id],
                map_token,
            )
            .await?
            .ok_or_else(|| CatalogError::not_found(format!("token {id}")))
    }

    /// The token with this hash, whatever its state (check [`ApiToken::is_usable`]).
    pub async fn find_by_hash(&self, token_hash: &str) -> Result<Option<ApiToken>> {
        self.db
            .fetch_optional(
                "SELECT * FROM api_tokens WHERE token_hash = $1",
                args![token_hash],
                map_token,
            )
            .await
    }

    /// A user's tokens, newest first.
    pub async fn list_for_user(&self, user_id: i64) -> Result<Vec<ApiToken>> {
        self.db
            .fetch_all(
                "SELECT * FROM api_tokens WHERE user_id = $1 ORDER BY created_at DESC, id DESC",
                args![user_id],
                map_token,
            )
            .await
    }

    /// Records a use of the token.
    pub async fn touch(&self, id: i64, now: DateTime<Utc>) -> Result<()> {
        let n = self
            .db
            .execute(
                "UPDATE api_tokens SET last_used_at = $2 WHERE id = $1",
                args![id, now],
            )
            .await?;
        one_changed(n, || format!("token {id}"))
    }

    /// Revokes the token for good.
    pub async fn revoke(&self, id: i64) -> Result<()> {
        let n = self
            .db
            .execute(
                "UPDATE api_tokens SET revoked = TRUE WHERE id = $1",
                args![id],
            )
            .await?;
        one_changed(n, || format!("token {id}"))
    }

    /// Deletes the token.
    pub async fn delete(&self, id: i64) -> Result<()> {
        let n = self
            .db
            .execute("DELETE FROM api_tokens WHERE id = $1", args![id])
            .await?;
        one_changed(n, || format!("token {id}"))
    }
}

/// The sessions table; get it from [`crate::Catalog::sessions`].
pub struct Sessions<'a> {
    pub(crate) db: &'a Db,
}

impl Sessions<'_> {
    /// Stores a new session.
    pub async fn create(&self, new: &NewSession, now: DateTime<Utc>) -> Result<Session> {
        if new.id.is_empty() || new.csrf_token.is_empty() {
            return Err(CatalogError::Invalid(
                "a session needs an id hash and a CSRF token".into(),
            ));
        }
        self.db
            .fetch_one(
                "INSERT INTO sessions (id, user_id, created_at, last_seen_at, expires_at, \
                 csrf_token) VALUES ($1, $2, $3, $3, $4, $5) RETURNING *",
                args![&new.id, new.user_id, now, new.expires_at, &new.csrf_token],
                map_session,
            )
            .await
    }

    /// The session with this id hash, whatever its expiry (the caller compares with now).
    pub async fn get(&self, id: &str) -> Result<Option<Session>> {
        self.db
            .fetch_optional(
                "SELECT * FROM sessions WHERE id = $1",
                args![id],
                map_session,
            )
            .await
    }

    /// Records activity and moves the expiry (sliding sessions).
    pub async fn touch(
        &self,
        id: &str,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<()> {
        let n = self
            .db
            .execute(
                "UPDATE sessions SET last_seen_at = $2, expires_at = $3 WHERE id = $1",
                args![id, now, expires_at],
            )
            .await?;
        one_changed(n, || "session".to_owned())
    }

    /// Ends one session; true if it existed.
    pub async fn delete(&self, id: &str) -> Result<bool> {
        let n = self
            .db
            .execute("DELETE FROM sessions WHERE id = $1", args![id])
            .await?;
        Ok(n > 0)
    }

    /// Ends every session of a user (password change, disable); returns how many.
    pub async fn delete_for_user(&self, user_id: i64) -> Result<u64> {
        self.db
            .execute("DELETE FROM sessions WHERE user_id = $1", args![user_id])
            .await
    }

    /// Removes sessions that expired at or before `now`; returns how many.
    pub async fn delete_expired(&self, now: DateTime<Utc>) -> Result<u64> {
        self.db
            .execute("DELETE FROM sessions WHERE expires_at <= $1", args![now])
            .await
    }
}
