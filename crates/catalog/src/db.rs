//! The two sqlx drivers (SQLite and PostgreSQL) behind one small crate-private interface.
//!
//! Every operation of the catalog is written once, as SQL with `$1, $2, …` placeholders (which
//! both SQLite and PostgreSQL accept), a list of [`Arg`]s and a function that reads one row
//! through [`DbRow`]. This module binds the arguments and reads the rows for each backend:
//! times are `TIMESTAMPTZ` on PostgreSQL and fixed-width UTC text on SQLite (so that text
//! order is time order), JSON is `JSONB` on PostgreSQL and text on SQLite.
//!
//! This module must not contain domain logic, and nothing here may put a connection string or
//! a password into an error message: connection errors go through [`connect_error`].

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, SubsecRound, Utc};
use serde::de::DeserializeOwned;
use serde_json::Value;
use sqlx::Row;
use sqlx::error::ErrorKind;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow, Postgres};
use sqlx::query::Query;
use sqlx::sqlite::{
    Sqlite, SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};

use crate::error::{CatalogError, Result};

/// A pool for one of the two backends.
#[derive(Clone)]
pub(crate) enum Db {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// One bound parameter, independent of the backend.
#[derive(Debug, Clone)]
pub(crate) enum Arg {
    Int(Option<i64>),
    Real(Option<f64>),
    Text(Option<String>),
    Bool(bool),
    Time(Option<DateTime<Utc>>),
    Json(Option<Value>),
}

impl From<i64> for Arg {
    fn from(v: i64) -> Self {
        Arg::Int(Some(v))
    }
}
impl From<Option<i64>> for Arg {
    fn from(v: Option<i64>) -> Self {
        Arg::Int(v)
    }
}
impl From<f64> for Arg {
    fn from(v: f64) -> Self {
        Arg::Real(Some(v))
    }
}
impl From<Option<f64>> for Arg {
    fn from(v: Option<f64>) -> Self {
        Arg::Real(v)
    }
}
impl From<&str> for Arg {
    fn from(v: &str) -> Self {
        Arg::Text(Some(v.to_owned()))
    }
}
impl From<&String> for Arg {
    fn from(v: &String) -> Self {
        Arg::Text(Some(v.clone()))
    }
}
impl From<String> for Arg {
    fn from(v: String) -> Self {
        Arg::Text(Some(v))
    }
}
impl From<Option<String>> for Arg {
    fn from(v: Option<String>) -> Self {
        Arg::Text(v)
    }
}
impl From<Option<&str>> for Arg {
    fn from(v: Option<&str>) -> Self {
        Arg::Text(v.map(str::to_owned))
    }
}
impl From<&Option<String>> for Arg {
    fn from(v: &Option<String>) -> Self {
        Arg::Text(v.clone())
    }
}
impl From<bool> for Arg {
    fn from(v: bool) -> Self {
        Arg::Bool(v)
    }
}
impl From<DateTime<Utc>> for Arg {
    fn from(v: DateTime<Utc>) -> Self {
        Arg::Time(Some(micros(v)))
    }
}
impl From<Option<DateTime<Utc>>> for Arg {
    fn from(v: Option<DateTime<Utc>>) -> Self {
        Arg::Time(v.map(micros))
    }
}

impl Arg {
    /// A JSON argument from anything serializable.
    pub(crate) fn json<T: serde::Serialize + ?Sized>(v: &T) -> Result<Arg> {
        serde_json::to_value(v)
            .map(|v| Arg::Json(Some(v)))
            .map_err(|e| CatalogError::Invalid(format!("value cannot be stored as JSON: {e}")))
    }

    /// An optional JSON argument.
    pub(crate) fn opt_json(v: Option<&Value>) -> Arg {
        Arg::Json(v.cloned())
    }

    /// An unsigned count, refused when it does not fit a signed 64-bit column.
    pub(crate) fn count(v: Option<u64>, what: &str) -> Result<Arg> {
        v.map(|v| {
            i64::try_from(v).map_err(|_| CatalogError::Invalid(format!("{what} is too large")))
        })
        .transpose()
        .map(Arg::Int)
    }
}

/// Builds the argument list of a query: `args![a, b, c]`.
macro_rules! args {
    ($($a:expr),* $(,)?) => { vec![$(crate::db::Arg::from($a)),*] };
}
pub(crate) use args;

/// Times are kept at microsecond precision, the precision of PostgreSQL's `timestamptz`, so
/// that a value written and read back compares equal on both backends.
pub(crate) fn micros(t: DateTime<Utc>) -> DateTime<Utc> {
    t.trunc_subsecs(6)
}

/// The SQLite text form of a time: fixed width, UTC, so text order is time order.
fn sqlite_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

fn parse_sqlite_time(s: &str) -> Result<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f")
        .map(|t| t.and_utc())
        .map_err(|_| CatalogError::corrupt(format!("time {s:?}")))
}

/// Reads one column of a row, whatever the backend.
pub(crate) trait DbRow {
    fn opt_int(&self, col: &str) -> Result<Option<i64>>;
    fn opt_real(&self, col: &str) -> Result<Option<f64>>;
    fn opt_text(&self, col: &str) -> Result<Option<String>>;
    fn opt_bool(&self, col: &str) -> Result<Option<bool>>;
    fn opt_time(&self, col: &str) -> Result<Option<DateTime<Utc>>>;
    fn opt_json(&self, col: &str) -> Result<Option<Value>>;

    fn int(&self, col: &str) -> Result<i64> {
        self.opt_int(col)?.ok_or_else(|| null_in(col))
    }
    fn real(&self, col: &str) -> Result<f64> {
        self.opt_real(col)?.ok_or_else(|| null_in(col))
    }
    fn text(&self, col: &str) -> Result<String> {
        self.opt_text(col)?.ok_or_else(|| null_in(col))
    }
    fn boolean(&self, col: &str) -> Result<bool> {
        self.opt_bool(col)?.ok_or_else(|| null_in(col))
    }
    fn time(&self, col: &str) -> Result<DateTime<Utc>> {
        self.opt_time(col)?.ok_or_else(|| null_in(col))
    }
    fn json(&self, col: &str) -> Result<Value> {
        Ok(self.opt_json(col)?.unwrap_or(Value::Null))
    }
    fn opt_u64(&self, col: &str) -> Result<Option<u64>> {
        self.opt_int(col)?
            .map(|v| u64::try_from(v).map_err(|_| CatalogError::corrupt(format!("{col} = {v}"))))
            .transpose()
    }
}

fn null_in(col: &str) -> CatalogError {
    CatalogError::corrupt(format!("{col} is NULL"))
}

fn decode_err(col: &str, e: sqlx::Error) -> CatalogError {
    CatalogError::corrupt(format!("column {col}: {e}"))
}

/// A JSON column read as a typed value; SQL `NULL` and JSON `null` read as the default.
pub(crate) fn json_as<T: DeserializeOwned + Default>(r: &dyn DbRow, col: &str) -> Result<T> {
    match r.opt_json(col)? {
        None | Some(Value::Null) => Ok(T::default()),
        Some(v) => serde_json::from_value(v)
            .map_err(|e| CatalogError::corrupt(format!("column {col}: {e}"))),
    }
}

/// A text column read as one of the crate's text enums.
pub(crate) fn enum_as<T: FromStr>(r: &dyn DbRow, col: &str) -> Result<T> {
    let s = r.text(col)?;
    s.parse()
        .map_err(|_| CatalogError::corrupt(format!("column {col}: unknown value {s:?}")))
}

/// An optional text column read as one of the crate's text enums.
pub(crate) fn opt_enum_as<T: FromStr>(r: &dyn DbRow, col: &str) -> Result<Option<T>> {
    match r.opt_text(col)? {
        None => Ok(None),
        Some(s) => s
            .parse()
            .map(Some)
            .map_err(|_| CatalogError::corrupt(format!("column {col}: unknown value {s:?}"))),
    }
}

impl DbRow for SqliteRow {
    fn opt_int(&self, col: &str) -> Result<Option<i64>> {
        self.try_get(col).map_err(|e| decode_err(col, e))
    }
    fn opt_real(&self, col: &str) -> Result<Option<f64>> {
        self.try_get(col).map_err(|e| decode_err(col, e))
    }
    fn opt_text(&self, col: &str) -> Result<Option<String>> {
        self.try_get(col).map_err(|e| decode_err(col, e))
    }
    fn opt_bool(&self, col: &str) -> Result<Option<bool>> {
        self.try_get(col).map_err(|e| decode_err(col, e))
    }
    fn opt_time(&self, col: &str) -> Result<Option<DateTime<Utc>>> {
        self.opt_text(col)?
            .map(|s| parse_sqlite_time(&s))
            .transpose()
    }
    fn opt_json(&self, col: &str) -> Result<Option<Value>> {
        self.opt_text(col)?
            .map(|s| {
                serde_json::from_str(&s)
                    .map_err(|e| CatalogError::corrupt(format!("column {col}: {e}")))
            })
            .transpose()
    }
}

impl DbRow for PgRow {
    fn opt_int(&self, col: &str) -> Result<Option<i64>> {
        self.try_get(col).map_err(|e| decode_err(col, e))
    }
    fn opt_real(&self, col: &str) -> Result<Option<f64>> {
        self.try_get(col).map_err(|e| decode_err(col, e))
    }
    fn opt_text(&self, col: &str) -> Result<Option<String>> {
        self.try_get(col).map_err(|e| decode_err(col, e))
    }
    fn opt_bool(&self, col: &str) -> Result<Option<bool>> {
        self.try_get(col).map_err(|e| decode_err(col, e))
    }
    fn opt_time(&self, col: &str) -> Result<Option<DateTime<Utc>>> {
        self.try_get(col).map_err(|e| decode_err(col, e))
    }
    fn opt_json(&self, col: &str) -> Result<Option<Value>> {
        self.try_get::<Option<sqlx::types::Json<Value>>, _>(col)
            .map(|v| v.map(|j| j.0))
            .map_err(|e| decode_err(col, e))
    }
}

type SqliteQuery<'q> = Query<'q, Sqlite, sqlx::sqlite::SqliteArguments<'q>>;
type PgQuery<'q> = Query<'q, Postgres, sqlx::postgres::PgArguments>;

fn bind_sqlite(mut q: SqliteQuery<'_>, args: Vec<Arg>) -> SqliteQuery<'_> {
    for a in args {
        q = match a {
            Arg::Int(v) => q.bind(v),
            Arg::Real(v) => q.bind(v),
            Arg::Text(v) => q.bind(v),
            Arg::Bool(v) => q.bind(v),
            Arg::Time(v) => q.bind(v.map(sqlite_time)),
            Arg::Json(v) => q.bind(v.map(|j| j.to_string())),
        };
    }
    q
}

fn bind_pg(mut q: PgQuery<'_>, args: Vec<Arg>) -> PgQuery<'_> {
    for a in args {
        q = match a {
            Arg::Int(v) => q.bind(v),
            Arg::Real(v) => q.bind(v),
            Arg::Text(v) => q.bind(v),
            Arg::Bool(v) => q.bind(v),
            Arg::Time(v) => q.bind(v),
            Arg::Json(v) => q.bind(v.map(sqlx::types::Json)),
        };
    }
    q
}

/// True when the error is a unique-constraint violation.
pub(crate) fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.kind() == ErrorKind::UniqueViolation)
}

/// Maps a driver error to a [`CatalogError`] without leaking connection details.
pub(crate) fn db_err(e: sqlx::Error) -> CatalogError {
    match e {
        sqlx::Error::Database(d) => match d.kind() {
            ErrorKind::UniqueViolation => {
                CatalogError::Conflict(format!("already exists ({})", d.message()))
            }
            ErrorKind::ForeignKeyViolation => CatalogError::Conflict(format!(
                "a referenced row does not exist or is still referenced ({})",
                d.message()
            )),
            ErrorKind::CheckViolation | ErrorKind::NotNullViolation => {
                CatalogError::Invalid(format!("value refused by the catalog ({})", d.message()))
            }
            _ => CatalogError::Database(d.message().to_owned()),
        },
        sqlx::Error::PoolTimedOut => {
            CatalogError::Database("timed out waiting for a catalog connection".into())
        }
        sqlx::Error::PoolClosed => CatalogError::Database("the catalog is closed".into()),
        sqlx::Error::Io(e) => {
            CatalogError::Database(format!("I/O error talking to the catalog database: {e}"))
        }
        sqlx::Error::Tls(_) => {
            CatalogError::Database("TLS error talking to the catalog database".into())
        }
        sqlx::Error::Configuration(_) => {
            CatalogError::Database("invalid catalog configuration".into())
        }
        other => CatalogError::Database(other.to_string()),
    }
}

/// Describes a failure to open the catalog, with any password in `url` removed.
pub(crate) fn connect_error(e: sqlx::Error, url: &str, timeout: Duration) -> CatalogError {
    let where_ = redact_url(url);
    let msg = match &e {
        sqlx::Error::PoolTimedOut => format!(
            "could not connect to the catalog at {where_} within {}s (is the database server \
             running and reachable?)",
            timeout.as_secs()
        ),
        sqlx::Error::Configuration(c) => format!("invalid catalog URL {where_}: {c}"),
        sqlx::Error::Io(io) => format!("could not open the catalog at {where_}: {io}"),
        sqlx::Error::Database(d) => {
            format!("could not open the catalog at {where_}: {}", d.message())
        }
        sqlx::Error::Tls(_) => format!("TLS error connecting to the catalog at {where_}"),
        _ => format!("could not open the catalog at {where_}: {}", db_err(e)),
    };
    CatalogError::Database(strip_password(&msg, url))
}

/// The URL with its password (if any) replaced by `***`; safe to show and log.
pub(crate) fn redact_url(url: &str) -> String {
    match url_password_span(url) {
        Some((start, end)) => format!("{}***{}", &url[..start], &url[end..]),
        None => url.to_owned(),
    }
}

fn strip_password(msg: &str, url: &str) -> String {
    match url_password_span(url) {
        Some((start, end)) if end > start => msg.replace(&url[start..end], "***"),
        _ => msg.to_owned(),
    }
}

/// Byte range of the password in `scheme://user:password@host/...`.
fn url_password_span(url: &str) -> Option<(usize, usize)> {
    let auth_start = url.find("://")? + 3;
    let rest = &url[auth_start..];
    let auth_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let at = rest[..auth_end].rfind('@')?;
    let colon = rest[..at].find(':')?;
    Some((auth_start + colon + 1, auth_start + at))
}

/// Options for opening a catalog; see [`crate::ConnectOptions`].
pub(crate) struct PoolSettings {
    pub max_connections: u32,
    pub acquire_timeout: Duration,
    pub busy_timeout: Duration,
}

impl Db {
    /// Opens a pool for `url` (`sqlite://PATH`, `sqlite:PATH`, `postgres://…`,
    /// `postgresql://…`).
    pub(crate) async fn connect(url: &str, s: &PoolSettings) -> Result<Db> {
        if let Some(path) = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
        {
            if path.is_empty() || path.contains(":memory:") || path.contains('?') {
                return Err(CatalogError::Invalid(
                    "a SQLite catalog URL is sqlite://PATH, a file path without options".into(),
                ));
            }
            if let Some(parent) = Path::new(path).parent()
                && !parent.as_os_str().is_empty()
            {
                tokio::fs::create_dir_all(parent).await.map_err(|e| {
                    CatalogError::Database(format!(
                        "could not create the folder of the catalog {}: {e}",
                        parent.display()
                    ))
                })?;
            }
            let options = SqliteConnectOptions::new()
                .filename(path)
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Full)
                .foreign_keys(true)
                .busy_timeout(s.busy_timeout);
            let pool = SqlitePoolOptions::new()
                .max_connections(s.max_connections.max(1))
                .acquire_timeout(s.acquire_timeout)
                .connect_with(options)
                .await
                .map_err(|e| connect_error(e, url, s.acquire_timeout))?;
            Ok(Db::Sqlite(pool))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let options = PgConnectOptions::from_str(url)
                .map_err(|e| connect_error(e, url, s.acquire_timeout))?
                .application_name("strongroom");
            let pool = PgPoolOptions::new()
                .max_connections(s.max_connections.max(1))
                .acquire_timeout(s.acquire_timeout)
                .connect_with(options)
                .await
                .map_err(|e| connect_error(e, url, s.acquire_timeout))?;
            Ok(Db::Postgres(pool))
        } else {
            Err(CatalogError::Invalid(
                "the catalog URL must start with sqlite:// or postgres://".into(),
            ))
        }
    }

    pub(crate) fn is_postgres(&self) -> bool {
        matches!(self, Db::Postgres(_))
    }

    pub(crate) async fn close(&self) {
        match self {
            Db::Sqlite(p) => p.close().await,
            Db::Postgres(p) => p.close().await,
        }
    }

    /// Runs a statement and returns the rows it returned, mapped; driver errors unmapped.
    pub(crate) async fn fetch_all_raw<T>(
        &self,
        sql: &str,
        args: Vec<Arg>,
        map: impl Fn(&dyn DbRow) -> Result<T>,
    ) -> Result<Result<Vec<T>>, sqlx::Error> {
        Ok(match self {
            Db::Sqlite(pool) => {
                let rows = bind_sqlite(sqlx::query(sql), args).fetch_all(pool).await?;
                rows.iter().map(|r| map(r)).collect()
            }
            Db::Postgres(pool) => {
                let rows = bind_pg(sqlx::query(sql), args).fetch_all(pool).await?;
                rows.iter().map(|r| map(r)).collect()
            }
        })
    }

    /// Runs a statement and returns the rows it returned, mapped.
    pub(crate) async fn fetch_all<T>(
        &self,
        sql: &str,
        args: Vec<Arg>,
        map: impl Fn(&dyn DbRow) -> Result<T>,
    ) -> Result<Vec<T>> {
        self.fetch_all_raw(sql, args, map).await.map_err(db_err)?
    }

    /// Runs a statement and returns its first row, if any, mapped.
    pub(crate) async fn fetch_optional<T>(
        &self,
        sql: &str,
        args: Vec<Arg>,
        map: impl Fn(&dyn DbRow) -> Result<T>,
    ) -> Result<Option<T>> {
        Ok(self.fetch_all(sql, args, map).await?.into_iter().next())
    }

    /// Runs a statement that must return exactly one row (e.g. `INSERT … RETURNING`).
    pub(crate) async fn fetch_one<T>(
        &self,
        sql: &str,
        args: Vec<Arg>,
        map: impl Fn(&dyn DbRow) -> Result<T>,
    ) -> Result<T> {
        self.fetch_optional(sql, args, map)
            .await?
            .ok_or_else(|| CatalogError::Database("the statement returned no row".into()))
    }

    /// Runs a statement and returns the number of rows it changed.
    pub(crate) async fn execute(&self, sql: &str, args: Vec<Arg>) -> Result<u64> {
        match self {
            Db::Sqlite(pool) => bind_sqlite(sqlx::query(sql), args)
                .execute(pool)
                .await
                .map(|r| r.rows_affected()),
            Db::Postgres(pool) => bind_pg(sqlx::query(sql), args)
                .execute(pool)
                .await
                .map(|r| r.rows_affected()),
        }
        .map_err(db_err)
    }
}

/// Builds a `WHERE` clause with numbered placeholders, for the list queries.
#[derive(Default)]
pub(crate) struct Filter {
    clauses: Vec<String>,
    pub args: Vec<Arg>,
}

impl Filter {
    /// Adds a placeholder bound to `arg` and returns it (`$n`).
    pub(crate) fn arg(&mut self, arg: impl Into<Arg>) -> String {
        self.args.push(arg.into());
        format!("${}", self.args.len())
    }

    /// Adds a condition (its placeholders come from [`Filter::arg`]).
    pub(crate) fn push(&mut self, clause: String) {
        self.clauses.push(clause);
    }

    /// `col IN ($a, $b, …)` for the given text values; nothing when empty.
    pub(crate) fn any_of(&mut self, col: &str, values: impl IntoIterator<Item = &'static str>) {
        let ps: Vec<String> = values.into_iter().map(|v| self.arg(v)).collect();
        if !ps.is_empty() {
            self.clauses.push(format!("{col} IN ({})", ps.join(", ")));
        }
    }

    /// The ` WHERE …` text (empty when there is no condition).
    pub(crate) fn where_sql(&self) -> String {
        if self.clauses.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", self.clauses.join(" AND "))
        }
    }

    /// ` LIMIT $n OFFSET $m`.
    pub(crate) fn limit_offset(&mut self, limit: u32, offset: u64) -> Result<String> {
        let offset = i64::try_from(offset)
            .map_err(|_| CatalogError::Invalid("offset is too large".into()))?;
        let l = self.arg(i64::from(limit));
        let o = self.arg(offset);
        Ok(format!(" LIMIT {l} OFFSET {o}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_url("postgres://u:s3cret@db.example:5432/x?sslmode=require"),
            "postgres://u:***@db.example:5432/x?sslmode=require"
        );
        assert_eq!(redact_url("postgres://u@h/x"), "postgres://u@h/x");
        assert_eq!(redact_url("sqlite:///tmp/a:b@c"), "sqlite:///tmp/a:b@c");
        assert_eq!(
            strip_password("failed for s3cret", "postgres://u:s3cret@h/x"),
            "failed for ***"
        );
    }

    #[test]
    fn sqlite_times_sort_as_text_and_round_trip() {
        let a = micros(DateTime::from_timestamp(1_700_000_000, 5_000).unwrap_or_default());
        let b = micros(DateTime::from_timestamp(1_700_000_000, 123_456_000).unwrap_or_default());
        assert!(sqlite_time(a) < sqlite_time(b));
        assert_eq!(parse_sqlite_time(&sqlite_time(a)).ok(), Some(a));
        assert_eq!(parse_sqlite_time(&sqlite_time(b)).ok(), Some(b));
    }
}
