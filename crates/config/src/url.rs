//! URLs in the configuration: database and catalog URLs (`postgres://`, `postgresql://`,
//! `mysql://`, `mariadb://`, `sqlite:///path`), webhook URLs and repository URLs.
//!
//! Validation here is about scheme and shape (a host that parses, a port from 1 to 65535, a
//! database name, an absolute SQLite path); query parameters are left to the sources crate,
//! which turns them into tool options. The whole URL is kept as a [`Secret`], because
//! passwords, query parameters and webhook paths carry credentials; the redacted form is
//! what prints.
//!
//! What it must not do: put any part of a URL other than its scheme (or a SQLite path) in an
//! error message. A password with an unescaped `?`, `/` or `@` must not leak through a
//! "bad port" or "bad host" message, so those messages never quote what they found.

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::secret::{REDACTED, Secret};
use crate::values::StrVisitor;

/// The database engine a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    /// PostgreSQL (`postgres://`, `postgresql://`).
    Postgres,
    /// MySQL or MariaDB (`mysql://`, `mariadb://`).
    Mysql,
    /// SQLite (`sqlite:///absolute/path`).
    Sqlite,
}

impl Engine {
    /// A short lowercase name: `postgres`, `mysql`, `sqlite`.
    pub fn name(self) -> &'static str {
        match self {
            Engine::Postgres => "postgres",
            Engine::Mysql => "mysql",
            Engine::Sqlite => "sqlite",
        }
    }
}

impl fmt::Display for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a URL was rejected. No variant holds any part of the URL but its scheme or a SQLite
/// path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    /// The URL is empty.
    #[error("the URL is empty")]
    Empty,
    /// No `scheme://`.
    #[error("the URL has no scheme; expected {0}")]
    MissingScheme(&'static str),
    /// A scheme that is not accepted here.
    #[error("unsupported URL scheme `{scheme}`; expected {expected}")]
    UnsupportedScheme {
        /// The scheme as written.
        scheme: String,
        /// What is accepted.
        expected: &'static str,
    },
    /// The port is not a number from 1 to 65535.
    #[error("the port is not a number from 1 to 65535")]
    InvalidPort,
    /// The host is malformed.
    #[error("the host is not valid (an unclosed `[`, a space or a stray character?)")]
    InvalidHost,
    /// An `http(s)` URL without a host.
    #[error("the URL has no host")]
    MissingHost,
    /// No database name after the host.
    #[error("the URL names no database; add it as the path, e.g. `{0}`")]
    MissingDatabase(&'static str),
    /// A `%` escape is malformed or decodes to invalid UTF-8.
    #[error("invalid percent-encoding in the {0}")]
    BadEncoding(&'static str),
    /// A SQLite URL whose path is not absolute.
    #[error(
        "a SQLite URL needs an absolute path, e.g. `sqlite:///var/lib/app/db.sqlite3` (got `{0}`)"
    )]
    RelativeSqlitePath(String),
    /// A SQLite URL with a host, credentials, port or parameters.
    #[error("a SQLite URL takes only a path, e.g. `sqlite:///var/lib/app/db.sqlite3`")]
    SqliteExtra,
    /// Credentials in a URL that must not carry them.
    #[error("this URL must not contain credentials (`user:password@`); {0}")]
    Credentials(&'static str),
    /// A `file://` URL whose path is not absolute.
    #[error("a file:// URL needs an absolute path, e.g. `file:///srv/backups/repo`")]
    NotAbsolute,
    /// Whitespace or control characters.
    #[error("the URL contains whitespace or control characters")]
    Whitespace,
}

const DATABASE_SCHEMES: &str =
    "postgres://, postgresql://, mysql://, mariadb:// or sqlite:///absolute/path";

/// Check that `%` escapes are well formed and decode to UTF-8.
fn check_encoding(s: &str, what: &'static str) -> Result<(), UrlError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or(UrlError::BadEncoding(what))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out)
        .map(|_| ())
        .map_err(|_| UrlError::BadEncoding(what))
}

fn has_whitespace(s: &str) -> bool {
    s.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// Split `scheme://rest`; the scheme must be letters, digits, `+`, `-` or `.`.
fn split_scheme(s: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = s.split_once("://")?;
    let ok = scheme
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    ok.then_some((scheme, rest))
}

/// The parts of `//authority/path?query` after the scheme. The authority ends at the first
/// `/` after the LAST `@` (a password may hold an unescaped `/`, `?` or `@`), and the query
/// starts at the first `?` after that.
struct Parts<'a> {
    userinfo: Option<&'a str>,
    hostport: &'a str,
    path: &'a str,
    query: Option<&'a str>,
}

fn split_parts(rest: &str) -> Parts<'_> {
    let (userinfo, after) = match rest.rfind('@') {
        Some(at) => (Some(&rest[..at]), &rest[at + 1..]),
        None => (None, rest),
    };
    let (before_query, query) = match after.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (after, None),
    };
    let (hostport, path) = match before_query.find('/') {
        Some(slash) => (&before_query[..slash], &before_query[slash..]),
        None => (before_query, ""),
    };
    Parts {
        userinfo,
        hostport,
        path,
        query,
    }
}

/// Validate `host[:port]` (host may be empty, a name, an IPv4 address or `[IPv6]`).
fn check_host_port(hostport: &str) -> Result<(), UrlError> {
    let (host, port) = if let Some(rest) = hostport.strip_prefix('[') {
        let (h, after) = rest.split_once(']').ok_or(UrlError::InvalidHost)?;
        if h.is_empty()
            || !h
                .chars()
                .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.')
        {
            return Err(UrlError::InvalidHost);
        }
        match after {
            "" => ("", None),
            p => ("", Some(p.strip_prefix(':').ok_or(UrlError::InvalidHost)?)),
        }
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    if !host
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '%' | '~'))
    {
        return Err(UrlError::InvalidHost);
    }
    check_encoding(host, "host")?;
    if let Some(p) = port {
        let ok = !p.is_empty()
            && p.bytes().all(|b| b.is_ascii_digit())
            && p.parse::<u32>().is_ok_and(|n| (1..=65535).contains(&n));
        if !ok {
            return Err(UrlError::InvalidPort);
        }
    }
    Ok(())
}

/// Query parameters whose values are secrets (redacted when printed).
fn secret_param(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    k.contains("pass") || k.contains("secret") || k.contains("token")
}

/// A database (or catalog) URL whose shape has been checked. The full text is a secret;
/// `Display` and `Debug` print the redacted form (password and secret parameters as `***`).
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl {
    raw: Secret,
    engine: Engine,
    redacted: String,
    database: String,
}

impl DatabaseUrl {
    /// Check a database URL's scheme and shape.
    pub fn parse(input: &str) -> Result<DatabaseUrl, UrlError> {
        let input = input.trim();
        if input.is_empty() {
            return Err(UrlError::Empty);
        }
        if has_whitespace(input) {
            return Err(UrlError::Whitespace);
        }
        let (scheme, rest) = match split_scheme(input) {
            Some(x) => x,
            None => {
                // `sqlite:relative` has a scheme but no `//`.
                let scheme = input.split_once(':').map(|(s, _)| s.to_ascii_lowercase());
                if matches!(scheme.as_deref(), Some("sqlite" | "sqlite3")) {
                    return Err(UrlError::RelativeSqlitePath(
                        input.split_once(':').map(|(_, p)| p).unwrap_or("").into(),
                    ));
                }
                return Err(UrlError::MissingScheme(DATABASE_SCHEMES));
            }
        };
        let lower = scheme.to_ascii_lowercase();
        let engine = match lower.as_str() {
            "postgres" | "postgresql" => Engine::Postgres,
            "mysql" | "mariadb" => Engine::Mysql,
            "sqlite" | "sqlite3" => Engine::Sqlite,
            _ => {
                return Err(UrlError::UnsupportedScheme {
                    scheme: scheme.to_string(),
                    expected: DATABASE_SCHEMES,
                });
            }
        };
        if engine == Engine::Sqlite {
            let path = sqlite_path(rest)?;
            return Ok(DatabaseUrl {
                raw: Secret::new(input),
                engine,
                redacted: format!("sqlite://{path}"),
                database: path,
            });
        }
        let parts = split_parts(rest);
        let mut redacted = format!("{lower}://");
        if let Some(ui) = parts.userinfo {
            let (user, password) = match ui.split_once(':') {
                Some((u, p)) => (u, Some(p)),
                None => (ui, None),
            };
            check_encoding(user, "user name")?;
            if let Some(p) = password {
                check_encoding(p, "password")?;
            }
            redacted.push_str(user);
            if password.is_some() {
                redacted.push(':');
                redacted.push_str(REDACTED);
            }
            redacted.push('@');
        }
        check_host_port(parts.hostport)?;
        redacted.push_str(parts.hostport);
        let database = parts.path.trim_start_matches('/');
        if database.is_empty() {
            return Err(UrlError::MissingDatabase(match engine {
                Engine::Postgres => "postgres://user@host:5432/dbname",
                _ => "mysql://user@host:3306/dbname",
            }));
        }
        check_encoding(database, "database name")?;
        redacted.push('/');
        redacted.push_str(database);
        if let Some(q) = parts.query {
            let mut sep = '?';
            for pair in q.split('&').filter(|p| !p.is_empty()) {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                check_encoding(k, "query parameters")?;
                check_encoding(v, "query parameters")?;
                redacted.push(sep);
                redacted.push_str(k);
                redacted.push('=');
                redacted.push_str(if secret_param(k) { REDACTED } else { v });
                sep = '&';
            }
        }
        Ok(DatabaseUrl {
            raw: Secret::new(input),
            engine,
            redacted,
            database: database.to_string(),
        })
    }

    /// The engine.
    pub fn engine(&self) -> Engine {
        self.engine
    }

    /// The full URL, credentials included: hand it to the sources crate, never log it.
    pub fn expose(&self) -> &str {
        self.raw.expose()
    }

    /// The URL with its password and secret parameters replaced by `***`.
    pub fn redacted(&self) -> &str {
        &self.redacted
    }

    /// The database name as written (percent-encoded), or for SQLite the absolute path.
    pub fn database(&self) -> &str {
        &self.database
    }

    /// For SQLite, the database file.
    pub fn sqlite_path(&self) -> Option<PathBuf> {
        (self.engine == Engine::Sqlite).then(|| PathBuf::from(&self.database))
    }
}

/// The absolute path of a SQLite URL after `sqlite:`: `///abs`, `////abs` (SQLAlchemy's
/// spelling) and `//localhost/abs` all mean `/abs`.
fn sqlite_path(rest: &str) -> Result<String, UrlError> {
    if rest.contains('?') || rest.contains('#') {
        return Err(UrlError::SqliteExtra);
    }
    let path = if let Some(p) = rest.strip_prefix("localhost/") {
        format!("/{p}")
    } else if rest.starts_with('/') {
        let trimmed = rest.trim_start_matches('/');
        format!("/{trimmed}")
    } else if rest.contains('@') {
        return Err(UrlError::SqliteExtra);
    } else {
        return Err(UrlError::RelativeSqlitePath(rest.to_string()));
    };
    if path == "/" {
        return Err(UrlError::RelativeSqlitePath(String::new()));
    }
    Ok(path)
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted)
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({})", self.redacted)
    }
}

impl Serialize for DatabaseUrl {
    /// The redacted form.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.redacted)
    }
}

impl<'de> Deserialize<'de> for DatabaseUrl {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrVisitor {
            expecting: "a database URL such as \"postgres://user@host:5432/dbname\"",
            parse: |s| DatabaseUrl::parse(s).map_err(|e| e.to_string()),
        })
    }
}

/// A webhook URL (`https://…`, or `http://…`). Its path and query often hold a token (Slack,
/// Discord, Teams), so the whole URL is a secret and prints as `https://host/***`.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookUrl {
    raw: Secret,
    redacted: String,
}

impl WebhookUrl {
    /// Check a webhook URL.
    pub fn parse(input: &str) -> Result<WebhookUrl, UrlError> {
        const EXPECTED: &str = "https:// (or http://)";
        let input = input.trim();
        if input.is_empty() {
            return Err(UrlError::Empty);
        }
        if has_whitespace(input) {
            return Err(UrlError::Whitespace);
        }
        let (scheme, rest) = split_scheme(input).ok_or(UrlError::MissingScheme(EXPECTED))?;
        let lower = scheme.to_ascii_lowercase();
        if lower != "https" && lower != "http" {
            return Err(UrlError::UnsupportedScheme {
                scheme: scheme.to_string(),
                expected: EXPECTED,
            });
        }
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        // Basic-auth credentials stay in the secret and out of the redacted form.
        let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        if hostport.is_empty() || hostport.starts_with(':') {
            return Err(UrlError::MissingHost);
        }
        check_host_port(hostport)?;
        let host_only = if hostport.starts_with('[') {
            hostport
                .split_once(']')
                .map(|(h, _)| h)
                .unwrap_or(hostport)
                .to_string()
                + "]"
        } else {
            hostport.split(':').next().unwrap_or_default().to_string()
        };
        Ok(WebhookUrl {
            raw: Secret::new(input),
            redacted: format!("{lower}://{host_only}/{REDACTED}"),
        })
    }

    /// The full URL: use it to send, never log it.
    pub fn expose(&self) -> &str {
        self.raw.expose()
    }

    /// `scheme://host/***`.
    pub fn redacted(&self) -> &str {
        &self.redacted
    }
}

impl fmt::Display for WebhookUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted)
    }
}

impl fmt::Debug for WebhookUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WebhookUrl({})", self.redacted)
    }
}

impl Serialize for WebhookUrl {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.redacted)
    }
}

impl<'de> Deserialize<'de> for WebhookUrl {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrVisitor {
            expecting: "a webhook URL such as \"https://hooks.example.org/…\"",
            parse: |s| WebhookUrl::parse(s).map_err(|e| e.to_string()),
        })
    }
}

/// Where the repository lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RepoLocation {
    /// A local folder (`path = …`, `file://…` or `STRONGROOM_REPO=/path`).
    Path(PathBuf),
    /// S3-compatible object storage, `s3://bucket/prefix` (credentials from the standard
    /// `AWS_*` variables, never in the URL).
    S3 {
        /// The bucket.
        bucket: String,
        /// The key prefix inside the bucket (may be empty).
        prefix: String,
    },
}

impl fmt::Display for RepoLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RepoLocation::Path(p) => write!(f, "{}", p.display()),
            RepoLocation::S3 { bucket, prefix } if prefix.is_empty() => write!(f, "s3://{bucket}"),
            RepoLocation::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
        }
    }
}

impl RepoLocation {
    /// Parse a repository URL (`file:///path` or `s3://bucket/prefix`).
    pub fn parse_url(input: &str) -> Result<RepoLocation, UrlError> {
        const EXPECTED: &str = "file:///absolute/path or s3://bucket/prefix";
        let input = input.trim();
        if input.is_empty() {
            return Err(UrlError::Empty);
        }
        if has_whitespace(input) {
            return Err(UrlError::Whitespace);
        }
        let (scheme, rest) = split_scheme(input).ok_or(UrlError::MissingScheme(EXPECTED))?;
        match scheme.to_ascii_lowercase().as_str() {
            "file" => {
                let path = rest.strip_prefix("localhost").unwrap_or(rest);
                if !path.starts_with('/') {
                    return Err(UrlError::NotAbsolute);
                }
                check_encoding(path, "path")?;
                Ok(RepoLocation::Path(PathBuf::from(path)))
            }
            "s3" => {
                let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
                if bucket.contains('@') {
                    return Err(UrlError::Credentials(
                        "give S3 credentials in AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY",
                    ));
                }
                let ok_bucket = !bucket.is_empty()
                    && bucket.chars().all(|c| {
                        c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '.')
                    });
                if !ok_bucket {
                    return Err(UrlError::InvalidHost);
                }
                Ok(RepoLocation::S3 {
                    bucket: bucket.to_string(),
                    prefix: prefix.trim_matches('/').to_string(),
                })
            }
            _ => Err(UrlError::UnsupportedScheme {
                scheme: scheme.to_string(),
                expected: EXPECTED,
            }),
        }
    }
}
