//! Database sources as streams: dump, manifest, restore and health probe for PostgreSQL,
//! MySQL/MariaDB and SQLite, through each engine's own command-line tools.
//!
//! The main entry point is [`DatabaseSource`], built from a [`DatabaseUrl`]:
//!
//! ```no_run
//! # fn main() -> Result<(), strongroom_sources::SourceError> {
//! use std::io::Read;
//! use strongroom_sources::DatabaseSource;
//!
//! let source = DatabaseSource::parse("postgres://postgres@127.0.0.1/app")?;
//! let (mut stream, pending) = source.dump()?;
//! // Hand `stream` (a blocking `Read + Send`) to the repository engine; a failed dump tool,
//! // a non-zero exit or an empty dump surfaces as a read error, never as a short stream.
//! let mut sink = std::io::sink();
//! std::io::copy(&mut stream, &mut sink).map_err(|e| strongroom_sources::SourceError::io("reading the dump", e))?;
//! drop(stream);
//! // Only once the stream ended cleanly does `finish` return the manifest.
//! let outcome = pending.finish()?;
//! println!("{}", outcome.manifest.to_json()?);
//! # Ok(()) }
//! ```
//!
//! Everything here is blocking (std threads and processes, see [`process`]); async callers use
//! `spawn_blocking`. This crate must not depend on the repository engine or on storage: it
//! produces and consumes byte streams, manifests and reports, and knows nothing of snapshots.
//! It must never put a password on a command line, in a message or in a manifest.

pub mod mysql;
pub mod postgres;
pub mod process;
pub mod sqlite;
pub mod url;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use crate::process::{CommandError, CommandReader, PipeReader, ToolCommand};
pub use crate::url::{DatabaseUrl, Engine, Secret, UrlError, beside_database};

/// The manifest format version written by this crate.
pub const MANIFEST_FORMAT: u32 = 1;

/// The most workers a parallel PostgreSQL dump or restore (`pg_dump -j`, `pg_restore -j`)
/// may use.
pub const MAX_PARALLEL_JOBS: u32 = 32;

/// Where the database tools are found and where temporary files go.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tools {
    /// Look the tools up on this `PATH`-style list instead of `$PATH` (also the children's
    /// `PATH`). `None`: the process's `$PATH`.
    pub search_path: Option<OsString>,
    /// Directory for temporary files (the SQLite backup copy, MySQL defaults files, the
    /// folders of parallel PostgreSQL dumps). `None`: the system temporary directory
    /// (`$TMPDIR`, else `/tmp`).
    pub temp_dir: Option<PathBuf>,
}

impl Tools {
    pub(crate) fn command(&self, program: &str, package: &str, context: &str) -> ToolCommand {
        ToolCommand::new(program)
            .search_path(self.search_path.clone())
            .package_hint(package)
            .context(context)
    }

    pub(crate) fn find(&self, program: &str) -> Option<PathBuf> {
        process::find_program(program, self.search_path.as_deref())
    }

    pub(crate) fn temp_dir(&self) -> PathBuf {
        self.temp_dir.clone().unwrap_or_else(std::env::temp_dir)
    }
}

/// Everything that can go wrong with a database source.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The URL is invalid.
    #[error(transparent)]
    Url(#[from] UrlError),
    /// A database tool failed (its message, stderr tail and, where recognisable, advice).
    #[error("{error}{}", advice_suffix(error))]
    Command {
        /// The tool's error.
        #[from]
        error: CommandError,
    },
    /// The dump client is older than the server.
    #[error(
        "{tool} {client} is older than the server (PostgreSQL {server}); install the PostgreSQL {server_major} client tools (e.g. `apt-get install postgresql-client-{server_major}`) or put them first on PATH"
    )]
    ClientTooOld {
        /// The tool, e.g. "pg_dump".
        tool: String,
        /// The client version, e.g. "14.11".
        client: String,
        /// The server version, e.g. "15.6".
        server: String,
        /// The server's major version.
        server_major: u32,
    },
    /// A restore target that already exists, without `replace`.
    #[error(
        "the target {target} already exists; restore into a new database (or path), or ask to replace it"
    )]
    TargetExists {
        /// The target (redacted URL or path).
        target: String,
    },
    /// The database (or SQLite file) to dump or probe does not exist.
    #[error("{target} does not exist; check the database name or path")]
    Missing {
        /// The target (redacted URL or path).
        target: String,
    },
    /// A tool printed something this crate did not expect.
    #[error("unexpected output from {tool}: {detail}")]
    Protocol {
        /// The tool.
        tool: String,
        /// What was wrong.
        detail: String,
    },
    /// `finish` was called but the dump stream did not end cleanly.
    #[error("the dump did not complete: {0}")]
    DumpIncomplete(String),
    /// A snapshot of one engine restored into another.
    #[error("cannot restore a {actual} dump into a {expected} database")]
    EngineMismatch {
        /// The target's engine.
        expected: Engine,
        /// The dump's engine.
        actual: Engine,
    },
    /// A local i/o error (temporary files, the SQLite target).
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// Writing or reading a manifest as JSON failed.
    #[error("manifest JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// The engine cannot do what was asked (e.g. a parallel dump of a MySQL database).
    #[error("{0}")]
    Unsupported(String),
}

impl SourceError {
    /// An i/o error with context.
    pub fn io(context: impl Into<String>, source: io::Error) -> Self {
        SourceError::Io {
            context: context.into(),
            source,
        }
    }

    /// Advice for a human about what to do, when the failure is recognisable.
    pub fn advice(&self) -> Option<&'static str> {
        match self {
            SourceError::Command { error } => advice_for(error),
            SourceError::Io { source, .. } => {
                (source.raw_os_error() == Some(28)).then_some("free disk space and retry")
            }
            _ => None,
        }
    }
}

fn advice_for(err: &CommandError) -> Option<&'static str> {
    let text = err.to_string();
    let has = |s: &str| text.contains(s);
    if let CommandError::NotFound { .. } = err {
        return None;
    }
    if has("password authentication failed")
        || has("Access denied for user")
        || has("no password supplied")
    {
        Some("check the user name and password in the database URL")
    } else if has("role \"") && has("does not exist") {
        Some("check the user name in the database URL: that role does not exist on the server")
    } else if has("Connection refused")
        || has("Can't connect")
        || has("could not connect")
        || has("No route to host")
        || has("timeout expired")
        || has("Unknown MySQL server host")
        || has("could not translate host name")
    {
        Some("check that the database server is running and reachable at the URL's host and port")
    } else if (has("database \"") && has("does not exist")) || has("Unknown database") {
        Some("check the database name in the URL: it does not exist on that server")
    } else if has("No space left on device") {
        Some("free disk space and retry")
    } else if has("permission denied") || has("Access denied") {
        Some("the database user lacks a privilege the dump needs; grant it or use another user")
    } else if has("server closed the connection")
        || has("Lost connection")
        || has("terminating connection")
        || has("connection to server was lost")
        // PostgreSQL over TLS: the server's termination can race the TLS teardown, and libpq
        // then reports only the closed socket.
        || has("SSL SYSCALL error: EOF detected")
        || has("SSL connection has been closed unexpectedly")
        // MySQL/MariaDB client error 2006.
        || has("server has gone away")
    {
        Some("the server went away during the operation; check the server's log and retry")
    } else if let CommandError::NoOutput { .. } = err {
        Some(
            "the tool exited successfully but wrote nothing, which is never a valid dump; \
             check that the tool found on PATH is the real one, then retry",
        )
    } else if has("was killed by signal") {
        Some(
            "the tool was killed before it finished (out of memory, a timeout or another \
             process?); check the system log (e.g. `dmesg` for the OOM killer) and retry",
        )
    } else {
        None
    }
}

/// A tool's failure surfacing as a read error of the dump stream, carrying the same advice
/// as [`SourceError::Command`] when the failure is recognisable.
fn with_advice(e: io::Error) -> io::Error {
    match CommandError::from_io(&e) {
        Some(error) if advice_for(error).is_some() => io::Error::new(
            e.kind(),
            SourceError::Command {
                error: error.clone(),
            },
        ),
        _ => e,
    }
}

fn advice_suffix(err: &CommandError) -> String {
    advice_for(err)
        .map(|a| format!(" (hint: {a})"))
        .unwrap_or_default()
}

/// The number of rows in one table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableCount {
    /// The table: `schema.table` for PostgreSQL, the plain name for MySQL and SQLite.
    pub name: String,
    /// Its exact row count.
    pub rows: u64,
}

/// How the row counts of a manifest relate to the dump.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CountsMethod {
    /// Counted in the very snapshot the dump was taken from (PostgreSQL `--snapshot`).
    SameSnapshot,
    /// Counted from the dump's own data as it streamed (MySQL/MariaDB INSERT tuples).
    DumpStream,
    /// Counted in the backup copy that is the dump (SQLite).
    BackupCopy,
    /// Counted in the live database, not tied to any dump.
    Live,
}

/// The application's Django migration state, when a `django_migrations` table exists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DjangoMigrations {
    /// Number of applied migrations.
    pub total: u64,
    /// Per app: count and the latest applied migration.
    pub apps: Vec<AppMigrations>,
}

/// One Django app's migration state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppMigrations {
    /// The app label.
    pub app: String,
    /// Applied migrations of this app.
    pub count: u64,
    /// The most recently applied migration's name.
    pub latest: String,
    /// When it was applied, as the database printed it.
    pub applied: Option<String>,
}

/// Whether PostgreSQL cluster globals (roles, tablespaces) were saved beside the dump.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GlobalsInfo {
    /// True if `pg_dumpall --globals-only` output is in [`DumpOutcome::globals_sql`].
    pub included: bool,
    /// False if role passwords had to be left out (`--no-role-passwords`).
    pub role_passwords: bool,
    /// Why not (or what was left out), when not complete.
    pub note: Option<String>,
}

/// How a dump was made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DumpInfo {
    /// "pg_dump custom archive", "mysql SQL script", "sqlite database file".
    pub format: String,
    /// The tool and its version, e.g. "pg_dump (PostgreSQL) 15.6".
    pub tool: String,
    /// Size of the dump stream in bytes.
    pub bytes: u64,
    /// File name extension for an export of it: "dump", "sql", "sqlite3".
    pub extension: String,
}

/// What a database held at backup time; stored beside the dump as JSON and used by test
/// restores ([`verify_counts`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`MANIFEST_FORMAT`].
    pub format: u32,
    /// The engine.
    pub engine: Engine,
    /// The source URL, password redacted.
    pub source: String,
    /// The database name (SQLite: its path).
    pub database: String,
    /// The server's version string.
    pub server_version: String,
    /// Database size in bytes, as the engine reports it.
    pub size_bytes: Option<u64>,
    /// The dump this manifest describes, if any.
    pub dump: Option<DumpInfo>,
    /// Every table and its exact row count, sorted by name.
    pub tables: Vec<TableCount>,
    /// How the counts relate to the dump.
    pub counts: CountsMethod,
    /// Django migration state, if the database has a `django_migrations` table.
    pub django_migrations: Option<DjangoMigrations>,
    /// The engine's integrity check result (SQLite `PRAGMA integrity_check`), if run.
    pub integrity_check: Option<String>,
    /// PostgreSQL globals, if attempted.
    pub globals: Option<GlobalsInfo>,
    /// When the dump (or manifest) started.
    pub started_at: DateTime<Utc>,
    /// When it finished.
    pub finished_at: DateTime<Utc>,
    /// Non-fatal problems (e.g. globals denied, integrity check not "ok").
    pub warnings: Vec<String>,
}

impl Manifest {
    /// The manifest as pretty JSON.
    pub fn to_json(&self) -> Result<String, SourceError> {
        Ok(serde_json::to_string_pretty(self)?)
    }

    /// Read a manifest from JSON.
    pub fn from_json(json: &str) -> Result<Self, SourceError> {
        Ok(serde_json::from_str(json)?)
    }

    /// The row counts as a map, table name → rows.
    pub fn counts(&self) -> BTreeMap<String, u64> {
        self.tables
            .iter()
            .map(|t| (t.name.clone(), t.rows))
            .collect()
    }
}

/// One table whose restored row count differs from the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CountMismatch {
    /// The table.
    pub table: String,
    /// Rows in the manifest (`None`: the table is not in the manifest).
    pub expected: Option<u64>,
    /// Rows after restore (`None`: the table is missing after restore).
    pub actual: Option<u64>,
}

impl fmt::Display for CountMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.expected, self.actual) {
            (Some(e), Some(a)) => write!(f, "{}: expected {e} rows, found {a}", self.table),
            (Some(e), None) => write!(f, "{}: expected {e} rows, table missing", self.table),
            (None, Some(a)) => write!(f, "{}: not in the manifest, found {a} rows", self.table),
            (None, None) => write!(f, "{}: unknown", self.table),
        }
    }
}

/// The result of comparing restored row counts with a manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CountCheck {
    /// Tables compared.
    pub tables_checked: usize,
    /// Every difference; empty when the restore matches.
    pub mismatches: Vec<CountMismatch>,
}

impl CountCheck {
    /// True when every table matches.
    pub fn is_ok(&self) -> bool {
        self.mismatches.is_empty()
    }
}

/// Compare a manifest's row counts with the counts of a restored database. A table missing
/// on either side is a mismatch. Pure: no I/O.
pub fn verify_counts(manifest: &Manifest, restored: &BTreeMap<String, u64>) -> CountCheck {
    let expected = manifest.counts();
    let mut mismatches = Vec::new();
    for (table, &rows) in &expected {
        match restored.get(table) {
            Some(&actual) if actual == rows => {}
            actual => mismatches.push(CountMismatch {
                table: table.clone(),
                expected: Some(rows),
                actual: actual.copied(),
            }),
        }
    }
    for (table, &actual) in restored {
        if !expected.contains_key(table) {
            mismatches.push(CountMismatch {
                table: table.clone(),
                expected: None,
                actual: Some(actual),
            });
        }
    }
    mismatches.sort_by(|a, b| a.table.cmp(&b.table));
    CountCheck {
        tables_checked: expected.len().max(restored.len()),
        mismatches,
    }
}

/// Recognise a dump file by its first bytes (for importing an existing dump): a PostgreSQL
/// custom archive (`PGDMP`), a SQLite database, or a MySQL/MariaDB dump script.
pub fn detect_dump_format(head: &[u8]) -> Option<Engine> {
    if head.starts_with(b"PGDMP") {
        return Some(Engine::Postgres);
    }
    if head.starts_with(b"SQLite format 3\0") {
        return Some(Engine::Sqlite);
    }
    let text = String::from_utf8_lossy(&head[..head.len().min(512)]);
    if text.contains("-- MySQL dump") || text.contains("-- MariaDB dump") {
        return Some(Engine::Mysql);
    }
    None
}

/// Options for a restore.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestoreOptions {
    /// Replace an existing target. Without it, an existing database or file is never touched.
    /// The caller must take a safety backup of the target first (the jobs layer does).
    pub replace: bool,
}

/// What happened to a target that a restore replaced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Replaced {
    /// The old database or file was kept under this name (PostgreSQL database, SQLite path).
    KeptAs(String),
    /// The old database was dropped (MySQL/MariaDB, which cannot rename a database).
    Dropped,
}

/// The result of a successful restore.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreReport {
    /// The target, password redacted.
    pub target: String,
    /// True when the target database or file was created by this restore.
    pub created: bool,
    /// What happened to the previous target, if one was replaced.
    pub replaced: Option<Replaced>,
    /// Bytes of dump consumed.
    pub bytes: u64,
    /// Warnings the restore tool printed (tail).
    pub tool_messages: String,
}

/// A database's health, as shown by the monitor. Fields an engine lacks are `None`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealthReport {
    /// The engine.
    pub engine: Engine,
    /// The target, password redacted.
    pub target: String,
    /// When probed.
    pub checked_at: DateTime<Utc>,
    /// Whether a query succeeded.
    pub reachable: bool,
    /// Round-trip time of a trivial query in milliseconds (see each engine for what it
    /// includes).
    pub latency_ms: Option<f64>,
    /// Server version.
    pub version: Option<String>,
    /// Database size in bytes.
    pub size_bytes: Option<u64>,
    /// Connections currently running a query.
    pub active_connections: Option<u64>,
    /// All open connections.
    pub total_connections: Option<u64>,
    /// The server's connection limit.
    pub max_connections: Option<u64>,
    /// Lock requests waiting.
    pub waiting_locks: Option<u64>,
    /// The longest-running query's age in seconds.
    pub longest_query_seconds: Option<f64>,
    /// Buffer cache hit ratio, 0..=1.
    pub cache_hit_ratio: Option<f64>,
    /// Whether the server is a replica.
    pub is_replica: Option<bool>,
    /// Replication lag in seconds, on a replica.
    pub replication_lag_seconds: Option<f64>,
    /// Server uptime in seconds.
    pub uptime_seconds: Option<u64>,
    /// Engine-specific details (SQLite page count, journal mode, quick_check, ...).
    pub details: BTreeMap<String, serde_json::Value>,
    /// Why the probe failed, when it did.
    pub error: Option<String>,
}

impl HealthReport {
    pub(crate) fn new(engine: Engine, target: String) -> Self {
        HealthReport {
            engine,
            target,
            checked_at: Utc::now(),
            reachable: false,
            latency_ms: None,
            version: None,
            size_bytes: None,
            active_connections: None,
            total_connections: None,
            max_connections: None,
            waiting_locks: None,
            longest_query_seconds: None,
            cache_hit_ratio: None,
            is_replica: None,
            replication_lag_seconds: None,
            uptime_seconds: None,
            details: BTreeMap::new(),
            error: None,
        }
    }

    pub(crate) fn failed(mut self, err: &SourceError) -> Self {
        self.reachable = false;
        self.error = Some(err.to_string());
        self
    }
}

/// The result of a finished dump: the manifest and, for PostgreSQL, the cluster globals.
#[derive(Debug, Clone)]
pub struct DumpOutcome {
    /// The manifest.
    pub manifest: Manifest,
    /// `pg_dumpall --globals-only` output (SQL), when permitted. Store it beside the dump:
    /// it holds role definitions (possibly password hashes).
    pub globals_sql: Option<Vec<u8>>,
}

#[derive(Debug, Clone)]
enum ReadStatus {
    Reading,
    Finished { bytes: u64 },
    Failed(String),
}

type SharedStatus = Arc<Mutex<ReadStatus>>;

fn set_status(status: &SharedStatus, new: ReadStatus) {
    *status.lock().unwrap_or_else(PoisonError::into_inner) = new;
}

/// The dump as a blocking byte stream (`Read + Send + 'static`), to be consumed in a worker
/// thread. A failure of the dump tool (non-zero exit, death, empty output) is a read error.
/// Dropping it before the end stops the tool.
pub struct DumpReader {
    inner: Box<dyn Read + Send>,
    status: SharedStatus,
    bytes: u64,
}

impl fmt::Debug for DumpReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DumpReader")
            .field("bytes", &self.bytes)
            .finish_non_exhaustive()
    }
}

impl DumpReader {
    pub(crate) fn new(inner: Box<dyn Read + Send>) -> (Self, SharedStatus) {
        let status = Arc::new(Mutex::new(ReadStatus::Reading));
        (
            DumpReader {
                inner,
                status: Arc::clone(&status),
                bytes: 0,
            },
            status,
        )
    }

    /// Bytes read so far.
    pub fn bytes_read(&self) -> u64 {
        self.bytes
    }
}

impl Read for DumpReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        match self.inner.read(buf) {
            Ok(0) => {
                let mut st = self.status.lock().unwrap_or_else(PoisonError::into_inner);
                if matches!(*st, ReadStatus::Reading) {
                    *st = ReadStatus::Finished { bytes: self.bytes };
                }
                Ok(0)
            }
            Ok(n) => {
                self.bytes += n as u64;
                Ok(n)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Err(e),
            Err(e) => {
                let e = with_advice(e);
                set_status(&self.status, ReadStatus::Failed(e.to_string()));
                Err(e)
            }
        }
    }
}

impl Drop for DumpReader {
    fn drop(&mut self) {
        let mut st = self.status.lock().unwrap_or_else(PoisonError::into_inner);
        if matches!(*st, ReadStatus::Reading) {
            *st = ReadStatus::Failed("the dump stream was stopped before its end".into());
        }
    }
}

/// Completes an engine's manifest once its dump stream ended cleanly.
pub(crate) trait FinishDump: Send {
    fn finish(self: Box<Self>, dump_bytes: u64) -> Result<DumpOutcome, SourceError>;
}

/// The manifest of a dump in progress; [`PendingManifest::finish`] it after the
/// [`DumpReader`] was read to its end.
pub struct PendingManifest {
    status: SharedStatus,
    finisher: Box<dyn FinishDump>,
}

impl fmt::Debug for PendingManifest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PendingManifest").finish_non_exhaustive()
    }
}

impl PendingManifest {
    pub(crate) fn new(status: SharedStatus, finisher: Box<dyn FinishDump>) -> Self {
        PendingManifest { status, finisher }
    }

    /// The manifest (and globals). Fails unless the dump stream was read to its end with the
    /// tool exiting successfully: a dump that failed can never produce a manifest.
    /// Does not block: call it after the reader reached its end (or was dropped).
    pub fn finish(self) -> Result<DumpOutcome, SourceError> {
        let status = self
            .status
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        match status {
            ReadStatus::Reading => Err(SourceError::DumpIncomplete(
                "the dump stream has not been read to its end".into(),
            )),
            ReadStatus::Failed(msg) => Err(SourceError::DumpIncomplete(msg)),
            ReadStatus::Finished { bytes } => self.finisher.finish(bytes),
        }
    }
}

/// A private temporary folder (mode 0700), removed with everything in it when dropped,
/// whatever happened in between (an error, a panic unwinding). Only a process killed
/// outright (SIGKILL, power loss) leaves one behind, named `strongroom-<purpose>-<pid>-*` in
/// the tools' temporary directory; the next one made there removes such leftovers of processes
/// that no longer run (a whole dump of a database can be in one).
pub struct PrivateDir {
    dir: tempfile::TempDir,
}

impl fmt::Debug for PrivateDir {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("PrivateDir").field(&self.dir.path()).finish()
    }
}

impl PrivateDir {
    /// Create one in `tools`' temporary directory (created if missing).
    pub fn new(tools: &Tools, purpose: &str) -> Result<Self, SourceError> {
        use std::os::unix::fs::PermissionsExt;
        let parent = tools.temp_dir();
        std::fs::create_dir_all(&parent)
            .map_err(|e| SourceError::io(format!("creating {}", parent.display()), e))?;
        let dir = tempfile::Builder::new()
            .prefix(&format!("strongroom-{purpose}-{}-", std::process::id()))
            .permissions(std::fs::Permissions::from_mode(0o700))
            .tempdir_in(&parent)
            .map_err(|e| {
                SourceError::io(
                    format!("creating a temporary folder in {}", parent.display()),
                    e,
                )
            })?;
        // Whatever the umask did: nobody else may read a dump.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))
            .map_err(|e| SourceError::io(format!("making {} private", dir.path().display()), e))?;
        remove_leftovers(&parent, dir.path());
        Ok(PrivateDir { dir })
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Remove it now, reporting a failure (dropping it removes it quietly).
    pub fn remove(self) -> Result<(), SourceError> {
        let shown = self.dir.path().display().to_string();
        self.dir
            .close()
            .map_err(|e| SourceError::io(format!("removing {shown}"), e))
    }
}

/// Removes the private folders in `parent` left by Strongroom processes that were killed:
/// `strongroom-<purpose>-<pid>-*` folders owned by the owner of `ours` (just made) whose
/// process no longer runs. Only where `/proc` shows processes; best effort and quiet (a folder
/// that cannot be removed now is tried again next time).
fn remove_leftovers(parent: &Path, ours: &Path) {
    use std::os::unix::fs::MetadataExt;
    let proc = Path::new("/proc");
    let (Ok(me), true) = (std::fs::metadata(ours), proc.join("self").exists()) else {
        return;
    };
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(leftover_pid) else {
            continue;
        };
        let path = entry.path();
        let ours_to_remove = std::fs::symlink_metadata(&path)
            .is_ok_and(|m| m.is_dir() && m.uid() == me.uid())
            && path != ours
            && !proc.join(pid.to_string()).exists();
        if ours_to_remove {
            let _ = std::fs::remove_dir_all(&path);
        }
    }
}

/// The process id in a private folder's name `strongroom-<purpose>-<pid>-<random>`.
fn leftover_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix("strongroom-")?;
    let mut parts = rest.rsplitn(3, '-');
    let _random = parts.next()?;
    let pid = parts.next()?.parse().ok()?;
    let purpose = parts.next()?;
    (!purpose.is_empty() && purpose.bytes().all(|b| b.is_ascii_lowercase())).then_some(pid)
}

/// A finished PostgreSQL directory-format dump (`pg_dump -Fd -j N`) on disk, in a
/// [`PrivateDir`] that goes away when this is dropped.
#[derive(Debug)]
pub struct DirectoryDump {
    dir: PrivateDir,
    archive: PathBuf,
    /// The manifest (counted in the dump's own snapshot) and the globals.
    pub outcome: DumpOutcome,
    /// The number of parallel jobs the dump used.
    pub jobs: u32,
    /// Bytes of the dump's files.
    pub bytes: u64,
    /// Files in the dump folder.
    pub files: u64,
}

impl DirectoryDump {
    /// The dump folder (`toc.dat` and one `NNNN.dat` per table); `pg_restore -Fd` reads it.
    pub fn path(&self) -> &Path {
        &self.archive
    }

    /// Remove the dump now, reporting a failure.
    pub fn remove(self) -> Result<(), SourceError> {
        self.dir.remove()
    }
}

/// A configured database: what to dump, probe or restore into.
#[derive(Debug, Clone)]
pub struct DatabaseSource {
    url: DatabaseUrl,
    tools: Tools,
    parallel_jobs: u32,
}

impl DatabaseSource {
    /// A source for `url`, with tools from `$PATH`.
    pub fn new(url: DatabaseUrl) -> Self {
        DatabaseSource {
            url,
            tools: Tools::default(),
            parallel_jobs: 1,
        }
    }

    /// Parse a URL into a source.
    pub fn parse(url: &str) -> Result<Self, SourceError> {
        Ok(DatabaseSource::new(DatabaseUrl::parse(url)?))
    }

    /// Use these tool locations.
    pub fn with_tools(mut self, tools: Tools) -> Self {
        self.tools = tools;
        self
    }

    /// PostgreSQL: back up with a parallel directory-format dump of `jobs` workers
    /// ([`DatabaseSource::dump_directory`]) instead of streaming one archive. 1 (the
    /// default) streams; values are clamped to `1..=`[`MAX_PARALLEL_JOBS`]. Other engines
    /// ignore it.
    pub fn with_parallel_jobs(mut self, jobs: u32) -> Self {
        self.parallel_jobs = jobs.clamp(1, MAX_PARALLEL_JOBS);
        self
    }

    /// The parallel dump workers asked for (1: streaming).
    pub fn parallel_jobs(&self) -> u32 {
        self.parallel_jobs
    }

    /// True when backups of this source take a parallel directory-format dump.
    pub fn dumps_in_parallel(&self) -> bool {
        self.engine() == Engine::Postgres && self.parallel_jobs > 1
    }

    /// The URL.
    pub fn url(&self) -> &DatabaseUrl {
        &self.url
    }

    /// The tool locations.
    pub fn tools(&self) -> &Tools {
        &self.tools
    }

    /// The engine.
    pub fn engine(&self) -> Engine {
        self.url.engine()
    }

    /// Start a dump. Read the [`DumpReader`] to its end, then call
    /// [`PendingManifest::finish`] for the manifest.
    ///
    /// Formats: PostgreSQL a `pg_dump` custom archive without compression (`pg_restore`-able);
    /// MySQL/MariaDB a SQL script (`mariadb`-able); SQLite a database file (`sqlite3`-able).
    /// An export of a snapshot is exactly these bytes.
    pub fn dump(&self) -> Result<(DumpReader, PendingManifest), SourceError> {
        match self.engine() {
            Engine::Postgres => postgres::dump(&self.url, &self.tools),
            Engine::Mysql => mysql::dump(&self.url, &self.tools),
            Engine::Sqlite => sqlite::dump(&self.url, &self.tools),
        }
    }

    /// PostgreSQL only: dump with `pg_dump -Fd -j N -Z0` (N = [`DatabaseSource::parallel_jobs`])
    /// into a [`PrivateDir`] in the tools' temporary directory, as folder `name`. The same
    /// checks as [`DatabaseSource::dump`]: client version, one exported snapshot for the dump
    /// (all workers share it) and the row counts, exit status, and a non-empty archive. On
    /// any failure the folder is already gone.
    pub fn dump_directory(&self, name: &str) -> Result<DirectoryDump, SourceError> {
        match self.engine() {
            Engine::Postgres => {
                postgres::dump_directory(&self.url, &self.tools, self.parallel_jobs, name)
            }
            other => Err(SourceError::Unsupported(format!(
                "parallel directory dumps exist for PostgreSQL only, not {}",
                other.name()
            ))),
        }
    }

    /// PostgreSQL only: restore a directory-format dump (`pg_restore -Fd -j jobs`) from
    /// `dir` into this source, with the same rules as [`DatabaseSource::restore`] (created;
    /// an existing target only with `replace`, kept under a new name).
    pub fn restore_directory(
        &self,
        dir: &Path,
        jobs: u32,
        options: &RestoreOptions,
    ) -> Result<RestoreReport, SourceError> {
        match self.engine() {
            Engine::Postgres => postgres::restore_directory(
                dir,
                jobs.clamp(1, MAX_PARALLEL_JOBS),
                &self.url,
                &self.tools,
                options,
            ),
            other => Err(SourceError::Unsupported(format!(
                "directory-format dumps exist for PostgreSQL only, not {}",
                other.name()
            ))),
        }
    }

    /// A manifest of the live database (counts from one consistent read where the engine
    /// allows), not tied to a dump.
    pub fn manifest(&self) -> Result<Manifest, SourceError> {
        match self.engine() {
            Engine::Postgres => postgres::manifest(&self.url, &self.tools),
            Engine::Mysql => mysql::manifest(&self.url, &self.tools),
            Engine::Sqlite => sqlite::manifest(&self.url, &self.tools),
        }
    }

    /// Exact row counts of every table, keyed like [`Manifest::tables`]; for comparing a
    /// restored database with [`verify_counts`].
    pub fn table_counts(&self) -> Result<BTreeMap<String, u64>, SourceError> {
        match self.engine() {
            Engine::Postgres => postgres::table_counts(&self.url, &self.tools),
            Engine::Mysql => mysql::table_counts(&self.url, &self.tools),
            Engine::Sqlite => sqlite::table_counts(&self.url, &self.tools),
        }
    }

    /// Restore a dump of this source's engine from `reader` into this source (the target).
    /// See [`restore`].
    pub fn restore(
        &self,
        reader: &mut dyn Read,
        options: &RestoreOptions,
    ) -> Result<RestoreReport, SourceError> {
        match self.engine() {
            Engine::Postgres => postgres::restore(reader, &self.url, &self.tools, options),
            Engine::Mysql => mysql::restore(reader, &self.url, &self.tools, options),
            Engine::Sqlite => sqlite::restore(reader, &self.url, &self.tools, options),
        }
    }

    /// Drop this database (SQLite: remove the file). For scratch databases of test
    /// restores only: callers must never point it at a production database.
    pub fn drop_database(&self) -> Result<(), SourceError> {
        match self.engine() {
            Engine::Postgres => postgres::drop_named(&self.url, &self.tools),
            Engine::Mysql => mysql::drop_named(&self.url, &self.tools),
            Engine::Sqlite => sqlite::drop_named(&self.url),
        }
    }

    /// The engine's own integrity check: SQLite `PRAGMA integrity_check`, MySQL/MariaDB
    /// `CHECK TABLE` of every table, PostgreSQL a full read of every table. The text starts
    /// with "ok" when sound.
    pub fn integrity_check(&self) -> Result<String, SourceError> {
        match self.engine() {
            Engine::Postgres => postgres::integrity(&self.url, &self.tools),
            Engine::Mysql => mysql::integrity(&self.url, &self.tools),
            Engine::Sqlite => sqlite::integrity(&self.url, &self.tools),
        }
    }

    /// Probe the database's health. Never fails: an unreachable database gives a report with
    /// `reachable: false` and the error.
    pub fn probe(&self) -> HealthReport {
        match self.engine() {
            Engine::Postgres => postgres::probe(&self.url, &self.tools),
            Engine::Mysql => mysql::probe(&self.url, &self.tools),
            Engine::Sqlite => sqlite::probe(&self.url, &self.tools),
        }
    }
}

/// Restore a dump from `reader` into `target`.
///
/// The target database (or SQLite file) is created; an existing one is refused unless
/// `options.replace`. A restore that fails removes what it created and returns the tool's
/// error; a failing `reader` (e.g. a corrupt snapshot) stops the restore tool.
pub fn restore(
    reader: &mut dyn Read,
    target: &DatabaseSource,
    options: &RestoreOptions,
) -> Result<RestoreReport, SourceError> {
    target.restore(reader, options)
}

/// Wraps a reader, counting bytes consumed.
pub(crate) struct CountingReader<'a> {
    pub(crate) inner: &'a mut dyn Read,
    pub(crate) bytes: u64,
}

impl Read for CountingReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }
}

/// A timestamp for names of kept targets: `20240131T235959`.
pub(crate) fn stamp() -> String {
    Utc::now().format("%Y%m%dT%H%M%S").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leftover_names_are_recognised() {
        assert_eq!(leftover_pid("strongroom-pgdump-4242-AbC123"), Some(4242));
        assert_eq!(leftover_pid("strongroom-pgrestore-7-x"), Some(7));
        assert_eq!(leftover_pid("strongroom-pgdump-AbC123"), None);
        assert_eq!(leftover_pid("strongroom--12-x"), None);
        assert_eq!(leftover_pid("other-pgdump-12-x"), None);
    }

    /// A folder left by a process that no longer runs goes when the next one is made; one of
    /// a running process (this one) and other names stay.
    #[test]
    fn private_dirs_of_dead_processes_are_removed() {
        let parent = tempfile::tempdir().unwrap();
        let tools = Tools {
            search_path: None,
            temp_dir: Some(parent.path().to_path_buf()),
        };
        // Above any pid_max (2^22), so no process has it.
        let dead = parent.path().join("strongroom-pgdump-99999999-old");
        std::fs::create_dir(&dead).unwrap();
        std::fs::write(dead.join("toc.dat"), b"a dump").unwrap();
        let live = parent
            .path()
            .join(format!("strongroom-pgdump-{}-mine", std::process::id()));
        std::fs::create_dir(&live).unwrap();
        let other = parent.path().join("strongroom-notes");
        std::fs::create_dir(&other).unwrap();
        let made = PrivateDir::new(&tools, "pgdump").unwrap();
        assert!(made.path().exists());
        if Path::new("/proc/self").exists() {
            assert!(!dead.exists(), "the dead process's folder is still there");
        }
        assert!(live.exists() && other.exists());
        let shown = made.path().to_path_buf();
        made.remove().unwrap();
        assert!(!shown.exists());
    }

    fn manifest(tables: &[(&str, u64)]) -> Manifest {
        Manifest {
            format: MANIFEST_FORMAT,
            engine: Engine::Postgres,
            source: "postgres://u:***@h/db".into(),
            database: "db".into(),
            server_version: "15.6".into(),
            size_bytes: Some(1),
            dump: None,
            tables: tables
                .iter()
                .map(|(n, r)| TableCount {
                    name: (*n).into(),
                    rows: *r,
                })
                .collect(),
            counts: CountsMethod::SameSnapshot,
            django_migrations: None,
            integrity_check: None,
            globals: None,
            started_at: Utc::now(),
            finished_at: Utc::now(),
            warnings: vec![],
        }
    }

    #[test]
    fn dump_halves_can_move_to_worker_threads() {
        fn assert_send_static<T: Send + 'static>() {}
        assert_send_static::<DumpReader>();
        assert_send_static::<PendingManifest>();
        assert_send_static::<DatabaseSource>();
        let _boxed: fn(DumpReader) -> Box<dyn Read + Send> = |r| Box::new(r);
    }

    #[test]
    fn verify_counts_reports_every_difference() {
        let m = manifest(&[("public.a", 3), ("public.b", 0), ("public.c", 7)]);
        let restored: BTreeMap<String, u64> = [
            ("public.a".to_string(), 3),
            ("public.c".into(), 6),
            ("public.d".into(), 1),
        ]
        .into_iter()
        .collect();
        let check = verify_counts(&m, &restored);
        assert!(!check.is_ok());
        let text: Vec<String> = check.mismatches.iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            [
                "public.b: expected 0 rows, table missing",
                "public.c: expected 7 rows, found 6",
                "public.d: not in the manifest, found 1 rows",
            ]
        );
        let ok = verify_counts(&m, &m.counts());
        assert!(ok.is_ok());
        assert_eq!(ok.tables_checked, 3);
    }

    #[test]
    fn manifest_json_round_trip() {
        let m = manifest(&[("public.a", 3)]);
        let json = m.to_json().unwrap();
        assert!(json.contains("\"engine\": \"postgres\""));
        assert!(json.contains("\"counts\": \"same_snapshot\""));
        assert_eq!(Manifest::from_json(&json).unwrap(), m);
    }

    #[test]
    fn detects_dump_formats() {
        assert_eq!(detect_dump_format(b"PGDMP\x01\x0e"), Some(Engine::Postgres));
        assert_eq!(
            detect_dump_format(b"SQLite format 3\0rest"),
            Some(Engine::Sqlite)
        );
        assert_eq!(
            detect_dump_format(b"/*M!999999\\- enable the sandbox mode */ \n-- MariaDB dump 10.19"),
            Some(Engine::Mysql)
        );
        assert_eq!(detect_dump_format(b"hello"), None);
    }

    #[test]
    fn finish_refuses_an_unfinished_or_failed_stream() {
        struct Never;
        impl FinishDump for Never {
            fn finish(self: Box<Self>, _: u64) -> Result<DumpOutcome, SourceError> {
                panic!("must not be called")
            }
        }
        let (reader, status) = DumpReader::new(Box::new(io::Cursor::new(b"abc".to_vec())));
        let pending = PendingManifest::new(Arc::clone(&status), Box::new(Never));
        let err = pending.finish().unwrap_err();
        assert!(
            err.to_string().contains("not been read to its end"),
            "{err}"
        );
        drop(reader);
        let pending = PendingManifest::new(status, Box::new(Never));
        let err = pending.finish().unwrap_err();
        assert!(err.to_string().contains("stopped before its end"), "{err}");
    }

    #[test]
    fn stream_failures_carry_advice() {
        struct Failing(Option<CommandError>);
        impl Read for Failing {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(self.0.take().unwrap().into_io())
            }
        }
        let cases = [
            (
                CommandError::Failed {
                    command: "pg_dump -Fc".into(),
                    status: "was killed by signal 9 (SIGKILL)".into(),
                    stderr: String::new(),
                },
                "hint: the tool was killed",
            ),
            (
                CommandError::NoOutput {
                    command: "pg_dump -Fc".into(),
                    stderr: String::new(),
                },
                "hint: the tool exited successfully but wrote nothing",
            ),
            (
                CommandError::Failed {
                    command: "pg_dump -Fc".into(),
                    status: "exited with status 1".into(),
                    stderr: "FATAL:  terminating connection due to administrator command".into(),
                },
                "hint: the server went away",
            ),
        ];
        for (error, hint) in cases {
            let (mut reader, status) = DumpReader::new(Box::new(Failing(Some(error))));
            let err = reader.read(&mut [0u8; 8]).unwrap_err();
            assert!(err.to_string().contains(hint), "{err}");
            let pending = PendingManifest::new(status, Box::new(NeverFinish));
            let err = pending.finish().unwrap_err().to_string();
            assert!(err.contains(hint), "{err}");
        }
    }

    struct NeverFinish;
    impl FinishDump for NeverFinish {
        fn finish(self: Box<Self>, _: u64) -> Result<DumpOutcome, SourceError> {
            panic!("must not be called")
        }
    }

    #[test]
    fn advice_recognises_common_failures() {
        let e = SourceError::from(CommandError::Failed {
            command: "psql".into(),
            status: "exited with status 2".into(),
            stderr: "psql: error: connection to server at \"127.0.0.1\", port 1 failed: Connection refused".into(),
        });
        assert!(
            e.to_string()
                .contains("hint: check that the database server is running"),
            "{e}"
        );
    }

    /// Every way the clients report a connection the server ended gets the same hint.
    #[test]
    fn advice_recognises_a_server_that_went_away() {
        for stderr in [
            "FATAL:  terminating connection due to administrator command",
            "pg_dump: error: Dumping the contents of table \"big\" failed: PQgetCopyData() failed.\n\
             pg_dump: detail: Error message from server: SSL SYSCALL error: EOF detected",
            "pg_dump: error: SSL connection has been closed unexpectedly",
            "server closed the connection unexpectedly",
            "mysqldump: Error 2013: Lost connection to server during query",
            "mysqldump: Got error: 2006: \"MySQL server has gone away\"",
        ] {
            let e = SourceError::from(CommandError::Failed {
                command: "pg_dump -Fc".into(),
                status: "exited with status 1".into(),
                stderr: stderr.into(),
            });
            assert!(
                e.to_string().contains("hint: the server went away"),
                "{stderr}: {e}"
            );
        }
        let e = SourceError::from(CommandError::Failed {
            command: "pg_dump -Fc".into(),
            status: "exited with status 1".into(),
            stderr: "pg_dump: error: query failed: ERROR:  syntax error".into(),
        });
        assert!(!e.to_string().contains("server went away"), "{e}");
    }
}
