//! PostgreSQL: `pg_dump` custom archives (uncompressed, streamed), manifests counted in the
//! dump's own snapshot, `pg_dumpall --globals-only`, restores through `pg_restore`, and
//! health probes; all through the client tools and [`crate::process`].
//!
//! Consistent counts: a long-lived `psql` session runs `BEGIN ISOLATION LEVEL REPEATABLE
//! READ, READ ONLY` and `SELECT pg_export_snapshot()`, then `pg_dump --snapshot=<id>` dumps
//! exactly that snapshot while a thread counts every table's rows in the same transaction
//! (`count(*)` through `query_to_xml`, one statement). The transaction stays open until the
//! manifest is finished, so the snapshot cannot vanish before `pg_dump` imports it.
//!
//! Connection parameters travel in libpq's environment (`PGHOST`, `PGPORT`, `PGUSER`,
//! `PGDATABASE`, `PGPASSWORD`, `PGSSLMODE`, ...); nothing secret is ever an argument.
//! This module must not drop or overwrite a database it did not create, except a target the
//! caller asked to replace (which is kept under a new name).

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::thread::JoinHandle;
use std::time::Instant;

use chrono::Utc;
use serde::Deserialize;

use crate::process::CommandError;
use crate::process::{Session, ToolCommand};
use crate::url::{DatabaseUrl, POSTGRES_PARAMS};
use crate::{
    AppMigrations, CountingReader, CountsMethod, DirectoryDump, DjangoMigrations, DumpInfo,
    DumpOutcome, DumpReader, Engine, FinishDump, GlobalsInfo, HealthReport, MANIFEST_FORMAT,
    Manifest, PendingManifest, PrivateDir, Replaced, RestoreOptions, RestoreReport, SourceError,
    TableCount, Tools,
};

const PACKAGE: &str = "postgresql-client";

/// Connection timeout used when the URL sets none, so an unreachable host fails quickly.
const DEFAULT_CONNECT_TIMEOUT: &str = "10";

/// libpq environment for `url` (includes `PGPASSWORD` when the URL has a password).
fn pg_env(url: &DatabaseUrl) -> Vec<(&'static str, String)> {
    let mut env = vec![("PGDATABASE", url.database().to_string())];
    if let Some(h) = url.host() {
        env.push(("PGHOST", h.to_string()));
    }
    if let Some(p) = url.port() {
        env.push(("PGPORT", p.to_string()));
    }
    if let Some(u) = url.user() {
        env.push(("PGUSER", u.to_string()));
    }
    if let Some(p) = url.password() {
        env.push(("PGPASSWORD", p.expose().to_string()));
    }
    for (name, var) in POSTGRES_PARAMS {
        if let Some(v) = url.params().get(*name) {
            env.push((var, v.clone()));
        }
    }
    if !url.params().contains_key("connect_timeout") {
        env.push(("PGCONNECT_TIMEOUT", DEFAULT_CONNECT_TIMEOUT.to_string()));
    }
    env
}

fn command(url: &DatabaseUrl, tools: &Tools, program: &str) -> ToolCommand {
    let mut cmd = tools.command(program, PACKAGE, &url.to_string());
    for (k, v) in pg_env(url) {
        cmd = cmd.env(k, v);
    }
    cmd
}

fn psql(url: &DatabaseUrl, tools: &Tools) -> ToolCommand {
    command(url, tools, "psql").args(["-X", "-q", "-A", "-t", "-w", "-v", "ON_ERROR_STOP=1"])
}

/// Quote an SQL string literal (`standard_conforming_strings` is on in every session here).
fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Quote an SQL identifier.
fn ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// Run an SQL script (statements separated by newlines, each in autocommit) through `psql`,
/// returning its output lines.
fn run_sql(url: &DatabaseUrl, tools: &Tools, sql: &str) -> Result<Vec<String>, SourceError> {
    let script = format!("SET standard_conforming_strings = on;\n{sql}\n");
    let out = psql(url, tools).run_with_bytes(script.as_bytes())?;
    Ok(out
        .stdout_text()
        .lines()
        .map(str::to_string)
        .filter(|l| !l.is_empty())
        .collect())
}

/// A `psql` session answering one query at a time.
struct PgSession {
    session: Session,
    seq: u64,
}

impl PgSession {
    fn open(url: &DatabaseUrl, tools: &Tools) -> Result<Self, SourceError> {
        let session = psql(url, tools).spawn_session()?;
        let mut s = PgSession { session, seq: 0 };
        // The snapshot must outlive long dumps: no server-side timeouts for this session.
        s.query(
            "SET standard_conforming_strings = on; SET statement_timeout = 0; \
             SET lock_timeout = 0; SET idle_in_transaction_session_timeout = 0;",
        )?;
        Ok(s)
    }

    /// Run `sql` (one or more statements ending in `;`) and return the output lines.
    fn query(&mut self, sql: &str) -> Result<Vec<String>, SourceError> {
        self.seq += 1;
        let marker = format!("__strongroom_end_{}_{}__", std::process::id(), self.seq);
        self.session.send(&format!("{sql}\n\\echo {marker}\n"))?;
        let mut lines = Vec::new();
        loop {
            let line = self.session.read_line()?;
            if line == marker {
                return Ok(lines);
            }
            if !line.is_empty() {
                lines.push(line);
            }
        }
    }

    /// Run a query that returns exactly one value.
    fn value(&mut self, sql: &str) -> Result<String, SourceError> {
        let lines = self.query(sql)?;
        match <[String; 1]>::try_from(lines) {
            Ok([v]) => Ok(v),
            Err(lines) => Err(SourceError::Protocol {
                tool: "psql".into(),
                detail: format!("expected one line for `{sql}`, got {}", lines.len()),
            }),
        }
    }

    fn json<T: for<'de> Deserialize<'de>>(&mut self, sql: &str) -> Result<T, SourceError> {
        let v = self.value(sql)?;
        serde_json::from_str(&v).map_err(|e| SourceError::Protocol {
            tool: "psql".into(),
            detail: format!("bad JSON ({e}) for `{sql}`"),
        })
    }

    fn close(mut self) -> Result<(), SourceError> {
        self.session.send("ROLLBACK;\n\\q\n")?;
        self.session.close()?;
        Ok(())
    }
}

/// `SELECT` listing every table with its exact row count as one JSON array
/// `[[schema, table, rows], ...]`. Run inside a transaction, every count sees its snapshot.
const COUNT_SQL: &str = "SELECT coalesce(jsonb_agg(jsonb_build_array(n.nspname, c.relname, \
     (xpath('/row/c/text()', query_to_xml(format('SELECT count(*) AS c FROM %I.%I', \
     n.nspname, c.relname), false, true, '')))[1]::text::bigint) \
     ORDER BY n.nspname, c.relname), '[]'::jsonb)::text \
     FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
     WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
     AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%';";

fn count_tables(session: &mut PgSession) -> Result<Vec<TableCount>, SourceError> {
    let rows: Vec<(String, String, u64)> = session.json(COUNT_SQL)?;
    let mut tables: Vec<TableCount> = rows
        .into_iter()
        .map(|(schema, table, rows)| TableCount {
            name: format!("{schema}.{table}"),
            rows,
        })
        .collect();
    tables.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(tables)
}

fn django_migrations(session: &mut PgSession) -> Result<Option<DjangoMigrations>, SourceError> {
    let table = session.value(
        "SELECT coalesce((SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname) \
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE c.relname = 'django_migrations' AND c.relkind IN ('r', 'p') \
         ORDER BY (n.nspname = 'public') DESC, n.nspname LIMIT 1), '-');",
    )?;
    if table == "-" {
        return Ok(None);
    }
    #[derive(Deserialize)]
    struct Row {
        app: String,
        count: u64,
        latest: String,
        applied: Option<String>,
    }
    let rows: Vec<Row> = session.json(&format!(
        "SELECT coalesce(jsonb_agg(jsonb_build_object('app', app, 'count', cnt, \
         'latest', name, 'applied', applied) ORDER BY app), '[]'::jsonb)::text FROM \
         (SELECT DISTINCT ON (app) app, name, applied::text AS applied, \
         count(*) OVER (PARTITION BY app) AS cnt FROM {table} ORDER BY app, id DESC) s;"
    ))?;
    let apps: Vec<AppMigrations> = rows
        .into_iter()
        .map(|r| AppMigrations {
            app: r.app,
            count: r.count,
            latest: r.latest,
            applied: r.applied,
        })
        .collect();
    Ok(Some(DjangoMigrations {
        total: apps.iter().map(|a| a.count).sum(),
        apps,
    }))
}

/// The major version in a tool's `--version` line, e.g. "pg_dump (PostgreSQL) 15.6 (Debian)"
/// → ("15.6", 15).
pub fn parse_client_version(line: &str) -> Option<(String, u32)> {
    let version = line
        .split_whitespace()
        .find(|w| w.chars().next().is_some_and(|c| c.is_ascii_digit()))?;
    let major = version
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()?;
    Some((version.to_string(), major))
}

/// The major version of a `server_version_num` (e.g. 150006 → 15; 90624 → 9).
pub fn server_major(version_num: u32) -> u32 {
    version_num / 10000
}

fn client_version(
    url: &DatabaseUrl,
    tools: &Tools,
    tool: &str,
) -> Result<(String, String, u32), SourceError> {
    let out = command(url, tools, tool).arg("--version").run()?;
    let line = out.stdout_text().trim().to_string();
    let (v, major) = parse_client_version(&line).ok_or_else(|| SourceError::Protocol {
        tool: tool.into(),
        detail: format!("cannot read a version from `{line}`"),
    })?;
    Ok((line, v, major))
}

struct ServerInfo {
    version: String,
    major: u32,
}

fn server_info(session: &mut PgSession) -> Result<ServerInfo, SourceError> {
    let num: u32 = session
        .value("SHOW server_version_num;")?
        .trim()
        .parse()
        .map_err(|_| SourceError::Protocol {
            tool: "psql".into(),
            detail: "server_version_num is not a number".into(),
        })?;
    let version = session.value("SHOW server_version;")?;
    Ok(ServerInfo {
        version,
        major: server_major(num),
    })
}

fn check_client(
    tool: &str,
    client_version: &str,
    client_major: u32,
    server: &ServerInfo,
) -> Result<(), SourceError> {
    if client_major < server.major {
        return Err(SourceError::ClientTooOld {
            tool: tool.into(),
            client: client_version.into(),
            server: server.version.clone(),
            server_major: server.major,
        });
    }
    Ok(())
}

fn database_size(session: &mut PgSession) -> Result<Option<u64>, SourceError> {
    Ok(session
        .value("SELECT pg_database_size(current_database());")?
        .trim()
        .parse()
        .ok())
}

/// Dump cluster globals; `Ok((None, info))` when not permitted.
fn dump_globals(url: &DatabaseUrl, tools: &Tools) -> (Option<Vec<u8>>, GlobalsInfo) {
    let base = || {
        command(url, tools, "pg_dumpall")
            .args(["--globals-only", "--no-password", "-l"])
            .arg(url.database())
    };
    let first = match base().run() {
        Ok(out) if !out.stdout.is_empty() => {
            return (
                Some(out.stdout),
                GlobalsInfo {
                    included: true,
                    role_passwords: true,
                    note: None,
                },
            );
        }
        Ok(_) => "pg_dumpall printed nothing".to_string(),
        Err(e) => e.to_string(),
    };
    match base().arg("--no-role-passwords").run() {
        Ok(out) if !out.stdout.is_empty() => (
            Some(out.stdout),
            GlobalsInfo {
                included: true,
                role_passwords: false,
                note: Some(format!("role passwords left out: {first}")),
            },
        ),
        Ok(_) => (None, not_included(first)),
        Err(e) => (None, not_included(format!("{first}; then: {e}"))),
    }
}

fn not_included(note: String) -> GlobalsInfo {
    GlobalsInfo {
        included: false,
        role_passwords: false,
        note: Some(note),
    }
}

/// What the counting thread found inside the snapshot.
struct SnapshotFacts {
    tables: Vec<TableCount>,
    size: Option<u64>,
    django: Option<DjangoMigrations>,
}

fn read_facts(session: &mut PgSession) -> Result<SnapshotFacts, SourceError> {
    Ok(SnapshotFacts {
        tables: count_tables(session)?,
        size: database_size(session)?,
        django: django_migrations(session)?,
    })
}

type Globals = (Option<Vec<u8>>, GlobalsInfo);
type FactsThread = JoinHandle<(PgSession, Result<SnapshotFacts, SourceError>, Globals)>;

struct PgFinisher {
    url: DatabaseUrl,
    thread: Option<FactsThread>,
    server_version: String,
    tool: String,
    started_at: chrono::DateTime<Utc>,
    /// [`DumpInfo::format`].
    format: String,
    /// [`DumpInfo::extension`].
    extension: String,
}

impl FinishDump for PgFinisher {
    fn finish(mut self: Box<Self>, dump_bytes: u64) -> Result<DumpOutcome, SourceError> {
        let thread = self
            .thread
            .take()
            .ok_or_else(|| SourceError::DumpIncomplete("manifest already finished".into()))?;
        let (session, facts, (globals_sql, globals)) = thread
            .join()
            .map_err(|_| SourceError::DumpIncomplete("the row-counting thread panicked".into()))?;
        let facts = facts?;
        // Ends the snapshot's transaction.
        session.close()?;
        let mut warnings = Vec::new();
        if !globals.role_passwords
            && let Some(note) = &globals.note
        {
            warnings.push(format!("globals (roles, tablespaces): {note}"));
        }
        let manifest = Manifest {
            format: MANIFEST_FORMAT,
            engine: Engine::Postgres,
            source: self.url.to_string(),
            database: self.url.database().to_string(),
            server_version: self.server_version.clone(),
            size_bytes: facts.size,
            dump: Some(DumpInfo {
                format: self.format.clone(),
                tool: self.tool.clone(),
                bytes: dump_bytes,
                extension: self.extension.clone(),
            }),
            tables: facts.tables,
            counts: CountsMethod::SameSnapshot,
            django_migrations: facts.django,
            integrity_check: None,
            globals: Some(globals),
            started_at: self.started_at,
            finished_at: Utc::now(),
            warnings,
        };
        Ok(DumpOutcome {
            manifest,
            globals_sql,
        })
    }
}

/// A repeatable-read transaction whose snapshot was exported for `pg_dump --snapshot`, after
/// the client/server version check.
struct ExportedSnapshot {
    session: PgSession,
    id: String,
    server: ServerInfo,
    tool: String,
    started_at: chrono::DateTime<Utc>,
}

fn export_snapshot(url: &DatabaseUrl, tools: &Tools) -> Result<ExportedSnapshot, SourceError> {
    let started_at = Utc::now();
    let (tool, client_version, client_major) = client_version(url, tools, "pg_dump")?;
    let mut session = PgSession::open(url, tools)?;
    let server = server_info(&mut session)?;
    check_client("pg_dump", &client_version, client_major, &server)?;
    session.query("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY;")?;
    let id = session.value("SELECT pg_export_snapshot();")?;
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
        return Err(SourceError::Protocol {
            tool: "psql".into(),
            detail: format!("unexpected snapshot id `{id}`"),
        });
    }
    Ok(ExportedSnapshot {
        session,
        id,
        server,
        tool,
        started_at,
    })
}

/// Count the rows inside the exported snapshot, then dump the globals, on a thread while
/// `pg_dump` runs; the returned finisher joins it and ends the transaction.
fn count_in_background(
    url: &DatabaseUrl,
    tools: &Tools,
    snap: ExportedSnapshot,
    format: String,
    extension: &str,
) -> Result<PgFinisher, SourceError> {
    let mut session = snap.session;
    let (globals_url, globals_tools) = (url.clone(), tools.clone());
    let thread = std::thread::Builder::new()
        .name("pg-snapshot-counts".into())
        .spawn(move || {
            let facts = read_facts(&mut session);
            // The globals too, while the dump runs: they are not part of its snapshot.
            let globals = dump_globals(&globals_url, &globals_tools);
            (session, facts, globals)
        })
        .map_err(|e| SourceError::io("starting the row-counting thread", e))?;
    Ok(PgFinisher {
        url: url.clone(),
        thread: Some(thread),
        server_version: snap.server.version,
        tool: snap.tool,
        started_at: snap.started_at,
        format,
        extension: extension.into(),
    })
}

/// Start a dump of `url`: version check, snapshot export, `pg_dump --snapshot`, and the
/// row counts in that snapshot on a thread.
pub(crate) fn dump(
    url: &DatabaseUrl,
    tools: &Tools,
) -> Result<(DumpReader, PendingManifest), SourceError> {
    let snap = export_snapshot(url, tools)?;
    let reader = command(url, tools, "pg_dump")
        .args(["--format=custom", "-Z0", "--no-password"])
        .arg(format!("--snapshot={}", snap.id))
        .spawn_reader()?;
    let finisher = count_in_background(
        url,
        tools,
        snap,
        "pg_dump custom archive (-Fc -Z0)".into(),
        "dump",
    )?;
    let (reader, status) = DumpReader::new(Box::new(reader));
    Ok((reader, PendingManifest::new(status, Box::new(finisher))))
}

/// Files and bytes of the regular files directly in `dir` (a directory-format archive is
/// flat).
fn dir_stats(dir: &Path) -> std::io::Result<(u64, u64)> {
    let mut files = 0;
    let mut bytes = 0;
    for entry in std::fs::read_dir(dir)? {
        let md = entry?.metadata()?;
        if md.is_file() {
            files += 1;
            bytes += md.len();
        }
    }
    Ok((files, bytes))
}

/// True when `dir` holds a directory-format archive: a `toc.dat` starting with `PGDMP`.
fn has_toc(dir: &Path) -> bool {
    let mut head = [0u8; 5];
    std::fs::File::open(dir.join("toc.dat"))
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok()
        && &head == b"PGDMP"
}

/// A parallel directory-format dump of `url` with `jobs` workers into a private temporary
/// folder: `pg_dump -Fd -j N -Z0 --snapshot=<id>` (its workers all import the one exported
/// snapshot the row counts are read in). The folder is removed on every error.
pub(crate) fn dump_directory(
    url: &DatabaseUrl,
    tools: &Tools,
    jobs: u32,
    name: &str,
) -> Result<DirectoryDump, SourceError> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') || name.contains('\0') {
        return Err(SourceError::Unsupported(format!(
            "{name:?} is not a valid name for a dump folder"
        )));
    }
    let snap = export_snapshot(url, tools)?;
    let dir = PrivateDir::new(tools, "pgdump")?;
    let archive = dir.path().join(name);
    let cmd = command(url, tools, "pg_dump")
        .args(["--format=directory", "-Z0", "--no-password"])
        .arg(format!("--jobs={jobs}"))
        .arg(format!("--snapshot={}", snap.id))
        .arg("--file")
        .arg(&archive);
    let description = cmd.describe();
    let finisher = count_in_background(
        url,
        tools,
        snap,
        format!("pg_dump directory archive (-Fd -j {jobs} -Z0)"),
        "tar",
    )?;
    // A failure drops the finisher (its thread ends the transaction when done) and `dir`.
    let output = cmd.run()?;
    let (files, bytes) = dir_stats(&archive).unwrap_or((0, 0));
    if files == 0 || !has_toc(&archive) {
        return Err(CommandError::NoOutput {
            command: description,
            stderr: output.stderr,
        }
        .into());
    }
    let outcome = Box::new(finisher).finish(bytes)?;
    Ok(DirectoryDump {
        dir,
        archive,
        outcome,
        jobs,
        bytes,
        files,
    })
}

/// A manifest of the live database, counted in one repeatable-read transaction.
pub(crate) fn manifest(url: &DatabaseUrl, tools: &Tools) -> Result<Manifest, SourceError> {
    let started_at = Utc::now();
    let mut session = PgSession::open(url, tools)?;
    let server = server_info(&mut session)?;
    session.query("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY;")?;
    let facts = read_facts(&mut session)?;
    session.close()?;
    Ok(Manifest {
        format: MANIFEST_FORMAT,
        engine: Engine::Postgres,
        source: url.to_string(),
        database: url.database().to_string(),
        server_version: server.version,
        size_bytes: facts.size,
        dump: None,
        tables: facts.tables,
        counts: CountsMethod::Live,
        django_migrations: facts.django,
        integrity_check: None,
        globals: None,
        started_at,
        finished_at: Utc::now(),
        warnings: Vec::new(),
    })
}

/// Exact row counts of every table (`schema.table` → rows), in one snapshot.
pub(crate) fn table_counts(
    url: &DatabaseUrl,
    tools: &Tools,
) -> Result<BTreeMap<String, u64>, SourceError> {
    let mut session = PgSession::open(url, tools)?;
    session.query("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY;")?;
    let tables = count_tables(&mut session)?;
    session.close()?;
    Ok(tables.into_iter().map(|t| (t.name, t.rows)).collect())
}

fn maintenance_url(target: &DatabaseUrl) -> Result<DatabaseUrl, SourceError> {
    Ok(target.with_database("postgres")?)
}

fn database_exists(maint: &DatabaseUrl, tools: &Tools, name: &str) -> Result<bool, SourceError> {
    let lines = run_sql(
        maint,
        tools,
        &format!(
            "SELECT count(*) FROM pg_database WHERE datname = {};",
            literal(name)
        ),
    )?;
    Ok(lines.first().map(String::as_str) == Some("1"))
}

fn drop_database(maint: &DatabaseUrl, tools: &Tools, name: &str) -> Result<(), SourceError> {
    run_sql(
        maint,
        tools,
        &format!("DROP DATABASE IF EXISTS {} WITH (FORCE);", ident(name)),
    )?;
    Ok(())
}

/// Drop the database `url` names (used for scratch databases of test restores).
pub(crate) fn drop_named(url: &DatabaseUrl, tools: &Tools) -> Result<(), SourceError> {
    let maint = maintenance_url(url)?;
    drop_database(&maint, tools, url.database())
}

/// `amcheck`-free integrity check: every table can be read to its end.
pub(crate) fn integrity(url: &DatabaseUrl, tools: &Tools) -> Result<String, SourceError> {
    // Counting every table reads every heap page; a damaged page fails the query.
    table_counts(url, tools).map(|t| format!("ok ({} tables read)", t.len()))
}

/// Truncate a database name to PostgreSQL's 63-byte limit on a character boundary.
fn limit_name(name: &str) -> String {
    let mut end = name.len().min(63);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    name[..end].to_string()
}

/// What `pg_restore` reads.
enum Input<'a> {
    /// A custom archive on its stdin.
    Stream(&'a mut dyn Read),
    /// A directory-format archive, restored by `jobs` workers.
    Directory { dir: &'a Path, jobs: u32 },
}

/// Restore a directory-format archive (`pg_restore -Fd -j jobs`) from `dir`, as [`restore`].
pub(crate) fn restore_directory(
    dir: &Path,
    jobs: u32,
    target: &DatabaseUrl,
    tools: &Tools,
    options: &RestoreOptions,
) -> Result<RestoreReport, SourceError> {
    if !has_toc(dir) {
        return Err(SourceError::Protocol {
            tool: "pg_restore".into(),
            detail: format!(
                "{} is not a pg_dump directory archive (no toc.dat)",
                dir.display()
            ),
        });
    }
    restore_input(Input::Directory { dir, jobs }, target, tools, options)
}

/// Restore a `pg_dump` custom archive from `reader` into the database named by `target`.
///
/// A missing target is created (from `template0`) and restored with `pg_restore --no-owner
/// --exit-on-error`; if that fails the new database is dropped. An existing target is
/// refused unless `options.replace`: then the dump is restored into a staging database
/// first, and only when that succeeded the old database is renamed
/// `<name>_before_restore_<time>` (kept; its connections are terminated) and the staging
/// database takes the name.
pub(crate) fn restore(
    reader: &mut dyn Read,
    target: &DatabaseUrl,
    tools: &Tools,
    options: &RestoreOptions,
) -> Result<RestoreReport, SourceError> {
    restore_input(Input::Stream(reader), target, tools, options)
}

fn restore_input(
    input: Input<'_>,
    target: &DatabaseUrl,
    tools: &Tools,
    options: &RestoreOptions,
) -> Result<RestoreReport, SourceError> {
    let maint = maintenance_url(target)?;
    let name = target.database().to_string();
    let exists = database_exists(&maint, tools, &name)?;
    if exists && !options.replace {
        return Err(SourceError::TargetExists {
            target: target.to_string(),
        });
    }
    let stamp = crate::stamp();
    let restore_name = if exists {
        limit_name(&format!("sr_restore_{}_{stamp}", std::process::id()))
    } else {
        name.clone()
    };
    run_sql(
        &maint,
        tools,
        &format!(
            "CREATE DATABASE {} TEMPLATE template0;",
            ident(&restore_name)
        ),
    )?;
    let conninfo = format!(
        "dbname='{}'",
        restore_name.replace('\\', "\\\\").replace('\'', "\\'")
    );
    let base = command(target, tools, "pg_restore")
        .args(["--no-owner", "--exit-on-error", "--no-password", "-d"])
        .arg(conninfo);
    let result = match input {
        Input::Stream(reader) => {
            let mut counting = CountingReader {
                inner: reader,
                bytes: 0,
            };
            base.run_streaming_input(&mut counting)
                .map(|o| (o, counting.bytes))
        }
        Input::Directory { dir, jobs } => {
            let bytes = dir_stats(dir).map(|(_, b)| b).unwrap_or(0);
            base.arg("--format=directory")
                .arg(format!("--jobs={jobs}"))
                .arg(dir)
                .run()
                .map(|o| (o, bytes))
        }
    };
    let (output, bytes) = match result {
        Ok(o) => o,
        Err(e) => {
            let _ = drop_database(&maint, tools, &restore_name);
            return Err(e.into());
        }
    };
    let mut replaced = None;
    if exists {
        let kept = limit_name(&format!("{name}_before_restore_{stamp}"));
        let swap = format!(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE datname = {lit} AND pid <> pg_backend_pid();\n\
             ALTER DATABASE {old} RENAME TO {kept};\n\
             ALTER DATABASE {staging} RENAME TO {old};",
            lit = literal(&name),
            old = ident(&name),
            kept = ident(&kept),
            staging = ident(&restore_name),
        );
        if let Err(e) = run_sql(&maint, tools, &swap) {
            // Put the old database back if it was already renamed; keep the staging copy.
            if !database_exists(&maint, tools, &name).unwrap_or(true) {
                let _ = run_sql(
                    &maint,
                    tools,
                    &format!(
                        "ALTER DATABASE {} RENAME TO {};",
                        ident(&kept),
                        ident(&name)
                    ),
                );
            }
            return Err(e);
        }
        replaced = Some(Replaced::KeptAs(kept));
    }
    Ok(RestoreReport {
        target: target.to_string(),
        created: !exists,
        replaced,
        bytes,
        tool_messages: output.stderr,
    })
}

#[derive(Deserialize)]
struct ProbeRow {
    version: String,
    size: Option<u64>,
    active: Option<u64>,
    total: Option<u64>,
    max_connections: Option<u64>,
    waiting_locks: Option<u64>,
    longest: Option<f64>,
    cache_hit: Option<f64>,
    replica: Option<bool>,
    lag: Option<f64>,
    uptime: Option<f64>,
}

const PROBE_SQL: &str = "SELECT jsonb_build_object(\
     'version', current_setting('server_version'), \
     'size', pg_database_size(current_database()), \
     'active', (SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND backend_type = 'client backend'), \
     'total', (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'), \
     'max_connections', current_setting('max_connections')::bigint, \
     'waiting_locks', (SELECT count(*) FROM pg_locks WHERE NOT granted), \
     'longest', (SELECT coalesce(max(extract(epoch FROM now() - query_start)), 0)::float8 \
        FROM pg_stat_activity WHERE state = 'active' AND pid <> pg_backend_pid() \
        AND backend_type = 'client backend'), \
     'cache_hit', (SELECT (sum(blks_hit)::float8 / nullif(sum(blks_hit) + sum(blks_read), 0)) \
        FROM pg_stat_database WHERE datname = current_database()), \
     'replica', pg_is_in_recovery(), \
     'lag', CASE WHEN pg_is_in_recovery() THEN \
        extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8 END, \
     'uptime', extract(epoch FROM now() - pg_postmaster_start_time())::float8\
     )::text;";

/// Probe health. Latency is the round trip of `SELECT 1` on an established session (process
/// start and connection excluded).
pub(crate) fn probe(url: &DatabaseUrl, tools: &Tools) -> HealthReport {
    let report = HealthReport::new(Engine::Postgres, url.to_string());
    match probe_inner(url, tools, report.clone()) {
        Ok(r) => r,
        Err(e) => report.failed(&e),
    }
}

fn probe_inner(
    url: &DatabaseUrl,
    tools: &Tools,
    mut report: HealthReport,
) -> Result<HealthReport, SourceError> {
    let mut session = PgSession::open(url, tools)?;
    let start = Instant::now();
    session.value("SELECT 1;")?;
    report.latency_ms = Some(start.elapsed().as_secs_f64() * 1000.0);
    let row: ProbeRow = session.json(PROBE_SQL)?;
    session.close()?;
    report.reachable = true;
    report.version = Some(row.version);
    report.size_bytes = row.size;
    report.active_connections = row.active;
    report.total_connections = row.total;
    report.max_connections = row.max_connections;
    report.waiting_locks = row.waiting_locks;
    report.longest_query_seconds = row.longest;
    report.cache_hit_ratio = row.cache_hit;
    report.is_replica = row.replica;
    report.replication_lag_seconds = row.lag;
    report.uptime_seconds = row.uptime.map(|u| u.max(0.0) as u64);
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_client_versions() {
        assert_eq!(
            parse_client_version("pg_dump (PostgreSQL) 15.20 (Debian 15.20-0+deb12u1)"),
            Some(("15.20".into(), 15))
        );
        assert_eq!(
            parse_client_version("pg_dump (PostgreSQL) 9.6.24"),
            Some(("9.6.24".into(), 9))
        );
        assert_eq!(
            parse_client_version("pg_dump (PostgreSQL) 17devel"),
            Some(("17devel".into(), 17))
        );
        assert_eq!(parse_client_version("garbage"), None);
        assert_eq!(server_major(150006), 15);
        assert_eq!(server_major(90624), 9);
    }

    #[test]
    fn older_client_is_refused_naming_both() {
        let server = ServerInfo {
            version: "16.2".into(),
            major: 16,
        };
        let err = check_client("pg_dump", "15.6", 15, &server)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("pg_dump 15.6 is older than the server (PostgreSQL 16.2)"),
            "{err}"
        );
        assert!(err.contains("postgresql-client-16"), "{err}");
        assert!(check_client("pg_dump", "16.1", 16, &server).is_ok());
        assert!(check_client("pg_dump", "17.0", 17, &server).is_ok());
    }

    #[test]
    fn environment_carries_the_password_not_the_arguments() {
        let url = DatabaseUrl::parse("postgres://u:pw@h:6543/db?sslmode=require").unwrap();
        let env = pg_env(&url);
        assert!(env.contains(&("PGPASSWORD", "pw".into())));
        assert!(env.contains(&("PGSSLMODE", "require".into())));
        assert!(env.contains(&("PGPORT", "6543".into())));
        let cmd = command(&url, &Tools::default(), "pg_dump").arg("-Fc");
        assert!(!cmd.describe().contains("pw@"));
        assert!(!format!("{cmd:?}").contains(":pw"));
    }

    #[test]
    fn quoting() {
        assert_eq!(literal("it's"), "'it''s'");
        assert_eq!(ident("we\"ird"), "\"we\"\"ird\"");
        assert_eq!(limit_name(&"é".repeat(40)).len(), 62);
    }
}
