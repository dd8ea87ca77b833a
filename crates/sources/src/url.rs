//! Database URLs: `postgres://`, `postgresql://`, `mysql://`, `mariadb://`, `sqlite:///path`.
//!
//! Parsing is strict and every error names what is wrong (never echoing the password). The
//! password lives in a [`Secret`] whose `Debug` and `Display` print `***`, and the URL's own
//! `Display` redacts it, so a URL can be logged or put in an error message as is.
//!
//! SQLite paths must be absolute. `sqlite:///abs/path` and `sqlite:////abs/path` (the
//! SQLAlchemy / dj-database-url spelling of an absolute path) both mean `/abs/path`;
//! `sqlite://localhost/abs/path` is accepted too. A relative path (`sqlite://db.sqlite3`,
//! `sqlite:relative`) is rejected: it would depend on the daemon's working directory, and
//! `sqlite:///db.sqlite3` is read as the absolute `/db.sqlite3`, never as relative.
//!
//! What it must not do: print, log or put a password in any error, or guess at an ambiguous
//! URL.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// A secret string (a password). `Debug` and `Display` print `***`; use [`Secret::expose`]
/// only where the secret is handed to a tool (environment or 0600 file).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wrap a secret.
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    /// The secret value. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// The database engine a URL or a snapshot belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    /// PostgreSQL.
    Postgres,
    /// MySQL or MariaDB.
    Mysql,
    /// SQLite.
    Sqlite,
}

impl Engine {
    /// A short lowercase name: "postgres", "mysql", "sqlite".
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

/// Why a database URL was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    /// The string is empty.
    #[error("the database URL is empty")]
    Empty,
    /// No `scheme://`.
    #[error(
        "the database URL has no scheme; expected postgres://, postgresql://, mysql://, mariadb:// or sqlite:///path"
    )]
    MissingScheme,
    /// An unknown scheme.
    #[error(
        "unsupported database URL scheme `{0}`; expected postgres, postgresql, mysql, mariadb or sqlite"
    )]
    UnsupportedScheme(String),
    /// The port is not a number in 1..=65535.
    #[error("invalid port `{0}` in the database URL (expected a number from 1 to 65535)")]
    InvalidPort(String),
    /// The host is malformed (e.g. an unclosed `[`).
    #[error("invalid host in the database URL: {0}")]
    InvalidHost(String),
    /// No database name after the host.
    #[error("the database URL names no database; add it as the path, e.g. {0}")]
    MissingDatabase(&'static str),
    /// A `%` escape is malformed or decodes to invalid UTF-8.
    #[error("invalid percent-encoding in the {0} of the database URL")]
    BadEncoding(&'static str),
    /// A SQLite URL whose path is not absolute.
    #[error(
        "a SQLite URL needs an absolute path, e.g. sqlite:///var/lib/app/db.sqlite3 (got `{0}`); relative paths would depend on the daemon's working directory"
    )]
    RelativeSqlitePath(String),
    /// A SQLite URL with credentials, a port or query parameters.
    #[error("a SQLite URL takes only a path ({0} is not allowed)")]
    SqliteExtra(&'static str),
    /// A query parameter this engine does not support.
    #[error("unsupported parameter `{name}` for {engine} URLs; supported: {supported}")]
    UnknownParameter {
        /// The engine.
        engine: Engine,
        /// The parameter name.
        name: String,
        /// The supported names.
        supported: String,
    },
    /// A database name that the tools cannot take safely.
    #[error("invalid database name: {0}")]
    InvalidDatabaseName(String),
}

/// Query parameters accepted for PostgreSQL URLs (each maps to a libpq environment variable).
pub const POSTGRES_PARAMS: &[(&str, &str)] = &[
    ("sslmode", "PGSSLMODE"),
    ("sslrootcert", "PGSSLROOTCERT"),
    ("sslcert", "PGSSLCERT"),
    ("sslkey", "PGSSLKEY"),
    ("sslcrl", "PGSSLCRL"),
    ("connect_timeout", "PGCONNECT_TIMEOUT"),
    ("application_name", "PGAPPNAME"),
    ("options", "PGOPTIONS"),
    ("target_session_attrs", "PGTARGETSESSIONATTRS"),
    ("gssencmode", "PGGSSENCMODE"),
    ("channel_binding", "PGCHANNELBINDING"),
];

/// Query parameters accepted for MySQL/MariaDB URLs (each becomes a client option in the
/// defaults file).
pub const MYSQL_PARAMS: &[&str] = &[
    "socket",
    "ssl",
    "ssl-ca",
    "ssl-cert",
    "ssl-key",
    "ssl-verify-server-cert",
    "connect-timeout",
    "protocol",
];

/// A parsed database URL.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl {
    engine: Engine,
    scheme: String,
    user: Option<String>,
    password: Option<Secret>,
    host: Option<String>,
    port: Option<u16>,
    database: String,
    params: BTreeMap<String, String>,
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({self})")
    }
}

impl fmt::Display for DatabaseUrl {
    /// The URL with the password replaced by `***`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.engine == Engine::Sqlite {
            return write!(f, "sqlite://{}", self.database);
        }
        write!(f, "{}://", self.scheme)?;
        if let Some(u) = &self.user {
            f.write_str(&encode(u))?;
            if self.password.is_some() {
                f.write_str(":***")?;
            }
            f.write_str("@")?;
        }
        if let Some(h) = &self.host {
            if h.contains(':') {
                write!(f, "[{h}]")?;
            } else {
                f.write_str(&encode(h))?;
            }
        }
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        write!(f, "/{}", encode(&self.database))?;
        let mut sep = '?';
        for (k, v) in &self.params {
            write!(f, "{sep}{}={}", encode(k), encode(v))?;
            sep = '&';
        }
        Ok(())
    }
}

impl std::str::FromStr for DatabaseUrl {
    type Err = UrlError;
    fn from_str(s: &str) -> Result<Self, UrlError> {
        DatabaseUrl::parse(s)
    }
}

impl DatabaseUrl {
    /// Parse a database URL.
    pub fn parse(input: &str) -> Result<Self, UrlError> {
        let input = input.trim();
        if input.is_empty() {
            return Err(UrlError::Empty);
        }
        let Some((scheme, rest)) = input.split_once(':') else {
            return Err(UrlError::MissingScheme);
        };
        let scheme_lc = scheme.to_ascii_lowercase();
        if scheme_lc.is_empty()
            || !scheme_lc
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '+')
        {
            return Err(UrlError::MissingScheme);
        }
        let engine = match scheme_lc.as_str() {
            "postgres" | "postgresql" => Engine::Postgres,
            "mysql" | "mariadb" => Engine::Mysql,
            "sqlite" | "sqlite3" => Engine::Sqlite,
            _ => return Err(UrlError::UnsupportedScheme(scheme.to_string())),
        };
        if engine == Engine::Sqlite {
            return parse_sqlite(rest);
        }
        let Some(rest) = rest.strip_prefix("//") else {
            return Err(UrlError::MissingScheme);
        };
        // Split off the query, then the path; the authority ends at the first '/'.
        let (before_query, query) = match rest.split_once('?') {
            Some((a, q)) => (a, Some(q)),
            None => (rest, None),
        };
        let (authority, path) = match before_query.rfind('@') {
            // Userinfo may (wrongly, but commonly) contain an unescaped '/': the authority
            // then runs to the first '/' after the last '@'.
            Some(at) => match before_query[at..].find('/') {
                Some(slash) => (&before_query[..at + slash], &before_query[at + slash..]),
                None => (before_query, ""),
            },
            None => match before_query.find('/') {
                Some(slash) => (&before_query[..slash], &before_query[slash..]),
                None => (before_query, ""),
            },
        };
        let (userinfo, hostport) = match authority.rfind('@') {
            Some(at) => (Some(&authority[..at]), &authority[at + 1..]),
            None => (None, authority),
        };
        let (user, password) = match userinfo {
            None => (None, None),
            Some(ui) => {
                let (u, p) = match ui.split_once(':') {
                    Some((u, p)) => (u, Some(p)),
                    None => (ui, None),
                };
                let u = decode(u, "user name")?;
                let p = p.map(|p| decode(p, "password")).transpose()?;
                ((!u.is_empty()).then_some(u), p.map(Secret))
            }
        };
        let (host, port) = parse_host_port(hostport)?;
        let example = match engine {
            Engine::Postgres => "postgres://user@host:5432/dbname",
            _ => "mysql://user@host:3306/dbname",
        };
        let database = decode(path.trim_start_matches('/'), "database name")?;
        if database.is_empty() {
            return Err(UrlError::MissingDatabase(example));
        }
        validate_database_name(&database)?;
        let mut params = BTreeMap::new();
        if let Some(q) = query {
            for pair in q.split('&').filter(|p| !p.is_empty()) {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                let k = decode(k, "query parameters")?;
                let v = decode(v, "query parameters")?;
                let known = match engine {
                    Engine::Postgres => POSTGRES_PARAMS.iter().any(|(n, _)| *n == k),
                    _ => MYSQL_PARAMS.contains(&k.as_str()),
                };
                if !known {
                    let supported = match engine {
                        Engine::Postgres => POSTGRES_PARAMS
                            .iter()
                            .map(|(n, _)| *n)
                            .collect::<Vec<_>>()
                            .join(", "),
                        _ => MYSQL_PARAMS.join(", "),
                    };
                    return Err(UrlError::UnknownParameter {
                        engine,
                        name: k,
                        supported,
                    });
                }
                params.insert(k, v);
            }
        }
        Ok(DatabaseUrl {
            engine,
            scheme: scheme_lc,
            user,
            password,
            host,
            port,
            database,
            params,
        })
    }

    /// A SQLite URL for an absolute path.
    pub fn sqlite(path: impl Into<PathBuf>) -> Result<Self, UrlError> {
        let path: PathBuf = path.into();
        let s = path.to_string_lossy().into_owned();
        if !path.is_absolute() {
            return Err(UrlError::RelativeSqlitePath(s));
        }
        Ok(DatabaseUrl {
            engine: Engine::Sqlite,
            scheme: "sqlite".into(),
            user: None,
            password: None,
            host: None,
            port: None,
            database: s,
            params: BTreeMap::new(),
        })
    }

    /// The engine.
    pub fn engine(&self) -> Engine {
        self.engine
    }

    /// The user name, if given.
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// The password, if given.
    pub fn password(&self) -> Option<&Secret> {
        self.password.as_ref()
    }

    /// The host, if given (IPv6 without brackets; may be a socket directory for PostgreSQL).
    pub fn host(&self) -> Option<&str> {
        self.host.as_deref()
    }

    /// The port, if given.
    pub fn port(&self) -> Option<u16> {
        self.port
    }

    /// The database name (for SQLite: the absolute file path).
    pub fn database(&self) -> &str {
        &self.database
    }

    /// The SQLite file path (meaningful for SQLite URLs only).
    pub fn sqlite_path(&self) -> PathBuf {
        PathBuf::from(&self.database)
    }

    /// Query parameters (e.g. `sslmode`).
    pub fn params(&self) -> &BTreeMap<String, String> {
        &self.params
    }

    /// The same server and credentials, another database (or, for SQLite, another path).
    pub fn with_database(&self, database: &str) -> Result<Self, UrlError> {
        if self.engine == Engine::Sqlite {
            return DatabaseUrl::sqlite(database);
        }
        validate_database_name(database)?;
        let mut u = self.clone();
        u.database = database.to_string();
        Ok(u)
    }

    /// The same URL with another password (or none).
    pub fn with_password(&self, password: Option<Secret>) -> Self {
        let mut u = self.clone();
        u.password = password;
        u
    }

    /// The same URL with another user.
    pub fn with_user(&self, user: Option<&str>) -> Self {
        let mut u = self.clone();
        u.user = user.map(str::to_string);
        u
    }
}

fn validate_database_name(name: &str) -> Result<(), UrlError> {
    if name.contains('\0') {
        return Err(UrlError::InvalidDatabaseName(
            "it contains a NUL character".into(),
        ));
    }
    if name.contains('/') {
        return Err(UrlError::InvalidDatabaseName(
            "it contains `/` (a URL path has one segment: the database name)".into(),
        ));
    }
    if name.starts_with('-') {
        return Err(UrlError::InvalidDatabaseName(
            "it starts with `-`, which the tools would read as an option".into(),
        ));
    }
    Ok(())
}

fn parse_sqlite(rest: &str) -> Result<DatabaseUrl, UrlError> {
    if rest.contains('?') {
        return Err(UrlError::SqliteExtra("a query string"));
    }
    let path = match rest.strip_prefix("//") {
        Some(after) => {
            // after = authority + path; the authority must be empty or "localhost".
            let (authority, path) = match after.find('/') {
                Some(i) => (&after[..i], &after[i..]),
                None => (after, ""),
            };
            if authority.contains('@') {
                return Err(UrlError::SqliteExtra("a user name or password"));
            }
            if !(authority.is_empty() || authority.eq_ignore_ascii_case("localhost")) {
                return Err(UrlError::RelativeSqlitePath(format!("{authority}{path}")));
            }
            path
        }
        None => rest,
    };
    let decoded = decode(path, "path")?;
    if decoded.is_empty() || !decoded.starts_with('/') {
        return Err(UrlError::RelativeSqlitePath(decoded));
    }
    // sqlite:////abs → "//abs": collapse the leading slashes.
    let collapsed = format!("/{}", decoded.trim_start_matches('/'));
    if collapsed == "/" {
        return Err(UrlError::RelativeSqlitePath(decoded));
    }
    if collapsed.contains('\0') {
        return Err(UrlError::BadEncoding("path"));
    }
    DatabaseUrl::sqlite(collapsed)
}

fn parse_host_port(hostport: &str) -> Result<(Option<String>, Option<u16>), UrlError> {
    if hostport.is_empty() {
        return Ok((None, None));
    }
    let (host, port) = if let Some(rest) = hostport.strip_prefix('[') {
        let Some((h, after)) = rest.split_once(']') else {
            return Err(UrlError::InvalidHost(
                "unclosed `[` around an IPv6 address".into(),
            ));
        };
        let port = match after {
            "" => None,
            p => Some(
                p.strip_prefix(':')
                    .ok_or_else(|| UrlError::InvalidHost("text after `]`".into()))?,
            ),
        };
        (h.to_string(), port)
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (decode(h, "host")?, Some(p)),
            None => (decode(hostport, "host")?, None),
        }
    };
    let port = match port {
        None => None,
        Some("") => None,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 => Some(n),
            _ => return Err(UrlError::InvalidPort(p.to_string())),
        },
    };
    if host.chars().any(|c| c.is_whitespace() || c == ',') {
        return Err(UrlError::InvalidHost(
            "it contains spaces or commas (one host per URL)".into(),
        ));
    }
    Ok(((!host.is_empty()).then_some(host), port))
}

fn decode(s: &str, what: &'static str) -> Result<String, UrlError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).ok_or(UrlError::BadEncoding(what))?;
            let hex = std::str::from_utf8(hex).map_err(|_| UrlError::BadEncoding(what))?;
            let b = u8::from_str_radix(hex, 16).map_err(|_| UrlError::BadEncoding(what))?;
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| UrlError::BadEncoding(what))
}

fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The database a restore next to the live data creates: `<database>_restored_<backup id>`,
/// or `new_name`. For SQLite, whose database is a file path, `new_name` is a file in the
/// original's folder. The server's restore preview and the restore job both name the target
/// with this, so the preview shows what the job will create.
#[must_use]
pub fn beside_database(
    sqlite: bool,
    database: &str,
    new_name: Option<&str>,
    backup_id: i64,
) -> String {
    match new_name {
        Some(n) if sqlite => std::path::Path::new(database)
            .parent()
            .unwrap_or_else(|| std::path::Path::new(""))
            .join(n)
            .to_string_lossy()
            .into_owned(),
        Some(n) => n.to_owned(),
        None => format!("{database}_restored_{backup_id}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Case {
        input: &'static str,
        engine: Engine,
        user: Option<&'static str>,
        password: Option<&'static str>,
        host: Option<&'static str>,
        port: Option<u16>,
        database: &'static str,
        display: &'static str,
    }

    const CASES: &[Case] = &[
        Case {
            input: "postgres://app:s3cret@db.example.com:5433/clinic?sslmode=require",
            engine: Engine::Postgres,
            user: Some("app"),
            password: Some("s3cret"),
            host: Some("db.example.com"),
            port: Some(5433),
            database: "clinic",
            display: "postgres://app:***@db.example.com:5433/clinic?sslmode=require",
        },
        Case {
            input: "postgresql://postgres@127.0.0.1/test",
            engine: Engine::Postgres,
            user: Some("postgres"),
            password: None,
            host: Some("127.0.0.1"),
            port: None,
            database: "test",
            display: "postgresql://postgres@127.0.0.1/test",
        },
        Case {
            input: "postgres://u:p%40ss%2Fw%3Ard@[::1]:5432/my%20db",
            engine: Engine::Postgres,
            user: Some("u"),
            password: Some("p@ss/w:rd"),
            host: Some("::1"),
            port: Some(5432),
            database: "my db",
            display: "postgres://u:***@[::1]:5432/my%20db",
        },
        Case {
            // Unescaped '@' and ':' in a password: the last '@' ends the user info.
            input: "postgres://u:p@ss:w@host/db",
            engine: Engine::Postgres,
            user: Some("u"),
            password: Some("p@ss:w"),
            host: Some("host"),
            port: None,
            database: "db",
            display: "postgres://u:***@host/db",
        },
        Case {
            // Heroku style, socket directory as a percent-encoded host.
            input: "postgres://%2Fvar%2Frun%2Fpostgresql/app",
            engine: Engine::Postgres,
            user: None,
            password: None,
            host: Some("/var/run/postgresql"),
            port: None,
            database: "app",
            display: "postgres://%2Fvar%2Frun%2Fpostgresql/app",
        },
        Case {
            input: "mysql://root@127.0.0.1:3306/shop",
            engine: Engine::Mysql,
            user: Some("root"),
            password: None,
            host: Some("127.0.0.1"),
            port: Some(3306),
            database: "shop",
            display: "mysql://root@127.0.0.1:3306/shop",
        },
        Case {
            input: "mariadb://u:pw@localhost/shop?socket=%2Frun%2Fmysqld%2Fmysqld.sock",
            engine: Engine::Mysql,
            user: Some("u"),
            password: Some("pw"),
            host: Some("localhost"),
            port: None,
            database: "shop",
            display: "mariadb://u:***@localhost/shop?socket=%2Frun%2Fmysqld%2Fmysqld.sock",
        },
        Case {
            input: "sqlite:///var/lib/app/db.sqlite3",
            engine: Engine::Sqlite,
            user: None,
            password: None,
            host: None,
            port: None,
            database: "/var/lib/app/db.sqlite3",
            display: "sqlite:///var/lib/app/db.sqlite3",
        },
        Case {
            input: "sqlite:////var/lib/app/db.sqlite3",
            engine: Engine::Sqlite,
            user: None,
            password: None,
            host: None,
            port: None,
            database: "/var/lib/app/db.sqlite3",
            display: "sqlite:///var/lib/app/db.sqlite3",
        },
        Case {
            input: "sqlite://localhost/srv/my%20app.db",
            engine: Engine::Sqlite,
            user: None,
            password: None,
            host: None,
            port: None,
            database: "/srv/my app.db",
            display: "sqlite:///srv/my app.db",
        },
    ];

    #[test]
    fn a_restore_beside_the_live_database_names_a_new_one() {
        for (sqlite, database, new_name, want) in [
            (true, "/srv/app/clinic.db", Some("copy"), "/srv/app/copy"),
            (
                true,
                "/srv/app/clinic.db",
                None,
                "/srv/app/clinic.db_restored_7",
            ),
            (true, "clinic.db", Some("copy"), "copy"),
            (false, "clinic", Some("copy"), "copy"),
            (false, "clinic", None, "clinic_restored_7"),
        ] {
            assert_eq!(beside_database(sqlite, database, new_name, 7), want);
        }
    }

    #[test]
    fn table_of_valid_urls() {
        for c in CASES {
            let u = DatabaseUrl::parse(c.input).unwrap_or_else(|e| panic!("{}: {e}", c.input));
            assert_eq!(u.engine(), c.engine, "{}", c.input);
            assert_eq!(u.user(), c.user, "{}", c.input);
            assert_eq!(u.password().map(Secret::expose), c.password, "{}", c.input);
            assert_eq!(u.host(), c.host, "{}", c.input);
            assert_eq!(u.port(), c.port, "{}", c.input);
            assert_eq!(u.database(), c.database, "{}", c.input);
            assert_eq!(u.to_string(), c.display, "{}", c.input);
            let debug = format!("{u:?}");
            if let Some(p) = c.password {
                assert!(!debug.contains(p), "{debug}");
                assert!(!u.to_string().contains(p));
            }
        }
    }

    #[test]
    fn table_of_invalid_urls() {
        let cases: &[(&str, UrlError)] = &[
            ("", UrlError::Empty),
            ("localhost/db", UrlError::MissingScheme),
            (
                "oracle://h/db",
                UrlError::UnsupportedScheme("oracle".into()),
            ),
            (
                "postgres://h:99999/db",
                UrlError::InvalidPort("99999".into()),
            ),
            ("postgres://h:abc/db", UrlError::InvalidPort("abc".into())),
            ("postgres://h:0/db", UrlError::InvalidPort("0".into())),
            (
                "postgres://h/",
                UrlError::MissingDatabase("postgres://user@host:5432/dbname"),
            ),
            (
                "mysql://h",
                UrlError::MissingDatabase("mysql://user@host:3306/dbname"),
            ),
            ("postgres://u:p%zz@h/db", UrlError::BadEncoding("password")),
            (
                "sqlite://db.sqlite3",
                UrlError::RelativeSqlitePath("db.sqlite3".into()),
            ),
            (
                "sqlite:relative.db",
                UrlError::RelativeSqlitePath("relative.db".into()),
            ),
            ("sqlite://", UrlError::RelativeSqlitePath(String::new())),
            (
                "sqlite:///x.db?mode=ro",
                UrlError::SqliteExtra("a query string"),
            ),
            (
                "postgres://[::1/db",
                UrlError::InvalidHost("unclosed `[` around an IPv6 address".into()),
            ),
            (
                "postgres://h/a/b",
                UrlError::InvalidDatabaseName(
                    "it contains `/` (a URL path has one segment: the database name)".into(),
                ),
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(&DatabaseUrl::parse(input).unwrap_err(), expected, "{input}");
        }
        let err = DatabaseUrl::parse("postgres://h/db?sslmod=require").unwrap_err();
        assert!(err.to_string().contains("`sslmod`"), "{err}");
        assert!(err.to_string().contains("sslmode"), "{err}");
    }

    #[test]
    fn errors_never_contain_the_password() {
        for input in [
            "postgres://u:hunter2@h:bad/db",
            "postgres://u:hunter2@h/",
            "postgres://u:hunter2@h/db?x=1",
            "postgres://u:hunter2@[h/db",
        ] {
            let err = DatabaseUrl::parse(input).unwrap_err().to_string();
            assert!(!err.contains("hunter2"), "{err}");
        }
    }

    #[test]
    fn secret_is_redacted() {
        let s = Secret::new("pw");
        assert_eq!(format!("{s} {s:?}"), "*** ***");
        assert_eq!(s.expose(), "pw");
    }

    #[test]
    fn with_database_keeps_credentials() {
        let u = DatabaseUrl::parse("postgres://u:pw@h/a").unwrap();
        let v = u.with_database("b").unwrap();
        assert_eq!(v.database(), "b");
        assert_eq!(v.password().map(Secret::expose), Some("pw"));
        assert!(u.with_database("-x").is_err());
        let round = DatabaseUrl::parse(&v.to_string().replace("***", "pw")).unwrap();
        assert_eq!(round, v);
    }
}
