//! MySQL/MariaDB: `mariadb-dump` (or `mysqldump`) SQL dumps, streamed, with row counts read
//! from the dump itself; restores by piping into `mariadb` (or `mysql`); health probes.
//!
//! Consistent counts: MySQL cannot share a transaction snapshot with another session, so a
//! `COUNT(*)` in our own session could disagree with the dump on a busy database. Instead
//! the dump stream is parsed as it passes (a small state machine, [`InsertCounter`]): each
//! table's rows are the tuples of its `INSERT INTO ... VALUES` statements between
//! `LOCK TABLES `t` WRITE;` and `UNLOCK TABLES;` (mysqldump's data sections, `--add-locks`),
//! so the counts are exactly what the dump holds, taken in its `--single-transaction`
//! snapshot. Restored databases are counted with exact `COUNT(*)`.
//!
//! Credentials go in a `--defaults-extra-file` created with mode 0600 (a [`tempfile`]) that
//! lives exactly as long as the tool; never on the command line. This module must not drop a
//! database it did not create, except a target the caller asked to replace.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use chrono::Utc;
use serde::Deserialize;
use tempfile::NamedTempFile;

use crate::process::ToolCommand;
use crate::url::DatabaseUrl;
use crate::{
    AppMigrations, CommandError, CountingReader, CountsMethod, DjangoMigrations, DumpInfo,
    DumpOutcome, DumpReader, Engine, FinishDump, HealthReport, MANIFEST_FORMAT, Manifest,
    PendingManifest, Replaced, RestoreOptions, RestoreReport, SourceError, TableCount, Tools,
};

const PACKAGE: &str = "mariadb-client";

/// Quote a value for a MySQL option file.
fn option_value(v: &str) -> String {
    let mut s = String::with_capacity(v.len() + 2);
    s.push('"');
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            '\r' => s.push_str("\\r"),
            '\t' => s.push_str("\\t"),
            c => s.push(c),
        }
    }
    s.push('"');
    s
}

/// The `[client]` option file contents for `url` (holds the password).
fn defaults_contents(url: &DatabaseUrl) -> String {
    let mut s = String::from("[client]\n");
    if let Some(u) = url.user() {
        s.push_str(&format!("user={}\n", option_value(u)));
    }
    // Always set: an empty password must not fall back to a prompt or ~/.my.cnf's.
    let pw = url.password().map(|p| p.expose()).unwrap_or("");
    s.push_str(&format!("password={}\n", option_value(pw)));
    if let Some(h) = url.host() {
        s.push_str(&format!("host={}\n", option_value(h)));
    }
    if let Some(p) = url.port() {
        s.push_str(&format!("port={p}\n"));
    }
    let mut timeout = "10".to_string();
    for (k, v) in url.params() {
        match (k.as_str(), v.as_str()) {
            ("connect-timeout", v) => timeout = v.to_string(),
            ("ssl", "false" | "0" | "off") => s.push_str("skip-ssl\n"),
            ("ssl", _) => s.push_str("ssl\n"),
            ("ssl-verify-server-cert", "false" | "0" | "off") => {}
            ("ssl-verify-server-cert", _) => s.push_str("ssl-verify-server-cert\n"),
            (k, v) => s.push_str(&format!("{k}={}\n", option_value(v))),
        }
    }
    // Only the interactive client knows connect-timeout; the dump tool rejects it.
    s.push_str(&format!(
        "[mysql]\nconnect-timeout={}\n",
        option_value(&timeout)
    ));
    s
}

fn defaults_file(url: &DatabaseUrl, tools: &Tools) -> Result<NamedTempFile, SourceError> {
    // tempfile creates the file with mode 0600.
    let mut f = tempfile::Builder::new()
        .prefix("strongroom-my-")
        .suffix(".cnf")
        .tempfile_in(tools.temp_dir())
        .map_err(|e| SourceError::io("creating the MySQL defaults file", e))?;
    f.write_all(defaults_contents(url).as_bytes())
        .and_then(|()| f.flush())
        .map_err(|e| SourceError::io("writing the MySQL defaults file", e))?;
    Ok(f)
}

/// Pick the first available of `names` (so a missing tool is reported by its main name).
fn pick(tools: &Tools, names: &[&'static str]) -> &'static str {
    names
        .iter()
        .copied()
        .find(|n| tools.find(n).is_some())
        .unwrap_or(names[0])
}

fn command(
    url: &DatabaseUrl,
    tools: &Tools,
    names: &[&'static str],
) -> Result<ToolCommand, SourceError> {
    let program = pick(tools, names);
    let file = defaults_file(url, tools)?;
    let hint = if names.len() > 1 {
        format!("{PACKAGE} (provides {})", names.join(" / "))
    } else {
        PACKAGE.to_string()
    };
    let mut arg = std::ffi::OsString::from("--defaults-extra-file=");
    arg.push(file.path());
    Ok(tools
        .command(program, &hint, &url.to_string())
        .arg_shown_as(arg, "--defaults-extra-file=<0600 credentials file>")
        .keep_alive(file))
}

fn client(url: &DatabaseUrl, tools: &Tools) -> Result<ToolCommand, SourceError> {
    command(url, tools, &["mariadb", "mysql"])
}

/// Run SQL with the client in batch mode, one output line per row, no column names.
fn run_sql(
    url: &DatabaseUrl,
    tools: &Tools,
    sql: &str,
    database: bool,
) -> Result<Vec<String>, SourceError> {
    let mut cmd = client(url, tools)?.args(["--batch", "--raw", "--skip-column-names"]);
    if database {
        cmd = cmd.arg(format!("--database={}", url.database()));
    }
    let out = cmd.run_with_bytes(sql.as_bytes())?;
    Ok(out.stdout_text().lines().map(str::to_string).collect())
}

/// A string literal that is safe whatever the `sql_mode`: `CONVERT(X'..' USING utf8mb4)`.
fn literal(s: &str) -> String {
    let hex: String = s.bytes().map(|b| format!("{b:02X}")).collect();
    format!("CONVERT(X'{hex}' USING utf8mb4)")
}

/// Quote an identifier with backticks.
fn ident(s: &str) -> String {
    format!("`{}`", s.replace('`', "``"))
}

fn json_line<T: for<'de> Deserialize<'de>>(line: &str, what: &str) -> Result<T, SourceError> {
    serde_json::from_str(line).map_err(|e| SourceError::Protocol {
        tool: "mariadb".into(),
        detail: format!("bad JSON for {what}: {e}"),
    })
}

fn server_version(url: &DatabaseUrl, tools: &Tools) -> Result<String, SourceError> {
    let lines = run_sql(url, tools, "SELECT VERSION();", true)?;
    lines
        .into_iter()
        .next()
        .ok_or_else(|| SourceError::Protocol {
            tool: "mariadb".into(),
            detail: "no version".into(),
        })
}

fn database_size(url: &DatabaseUrl, tools: &Tools) -> Result<Option<u64>, SourceError> {
    let lines = run_sql(
        url,
        tools,
        &format!(
            "SELECT COALESCE(SUM(data_length + index_length), 0) FROM information_schema.tables \
             WHERE table_schema = {};",
            literal(url.database())
        ),
        true,
    )?;
    Ok(lines.first().and_then(|l| l.trim().parse().ok()))
}

fn django_migrations(
    url: &DatabaseUrl,
    tools: &Tools,
) -> Result<Option<DjangoMigrations>, SourceError> {
    let exists = run_sql(
        url,
        tools,
        &format!(
            "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = {} \
             AND table_name = 'django_migrations';",
            literal(url.database())
        ),
        true,
    )?;
    if exists.first().map(String::as_str) != Some("1") {
        return Ok(None);
    }
    #[derive(Deserialize)]
    struct Row {
        app: String,
        count: u64,
        latest: String,
        applied: Option<String>,
    }
    let lines = run_sql(
        url,
        tools,
        "SELECT JSON_OBJECT('app', m.app, 'count', c.n, 'latest', m.name, \
         'applied', CAST(m.applied AS CHAR)) \
         FROM django_migrations m JOIN (SELECT app, COUNT(*) AS n, MAX(id) AS last_id \
         FROM django_migrations GROUP BY app) c ON c.last_id = m.id ORDER BY m.app;",
        true,
    )?;
    let mut apps = Vec::new();
    for line in lines.iter().filter(|l| !l.is_empty()) {
        let r: Row = json_line(line, "django_migrations")?;
        apps.push(AppMigrations {
            app: r.app,
            count: r.count,
            latest: r.latest,
            applied: r.applied,
        });
    }
    Ok(Some(DjangoMigrations {
        total: apps.iter().map(|a| a.count).sum(),
        apps,
    }))
}

/// Exact `COUNT(*)` of every base table.
pub(crate) fn table_counts(
    url: &DatabaseUrl,
    tools: &Tools,
) -> Result<BTreeMap<String, u64>, SourceError> {
    let names = run_sql(
        url,
        tools,
        &format!(
            "SELECT JSON_QUOTE(table_name) FROM information_schema.tables WHERE table_schema = {} \
             AND table_type = 'BASE TABLE' ORDER BY table_name;",
            literal(url.database())
        ),
        true,
    )?;
    let mut tables = Vec::new();
    for line in names.iter().filter(|l| !l.is_empty()) {
        tables.push(json_line::<String>(line, "table names")?);
    }
    if tables.is_empty() {
        return Ok(BTreeMap::new());
    }
    let mut sql = String::from("START TRANSACTION WITH CONSISTENT SNAPSHOT;\n");
    for t in &tables {
        sql.push_str(&format!(
            "SELECT JSON_ARRAY({}, (SELECT COUNT(*) FROM {}));\n",
            literal(t),
            ident(t)
        ));
    }
    sql.push_str("COMMIT;\n");
    let mut counts = BTreeMap::new();
    for line in run_sql(url, tools, &sql, true)?
        .iter()
        .filter(|l| !l.is_empty())
    {
        let (name, rows): (String, u64) = json_line(line, "row counts")?;
        counts.insert(name, rows);
    }
    Ok(counts)
}

/// Parse state of [`InsertCounter`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scan {
    /// Collecting the start of a line.
    LineStart,
    /// Ignoring the rest of a line.
    SkipLine,
    /// Inside the tuples of an INSERT statement.
    Values {
        depth: u32,
        quote: Option<u8>,
        escaped: bool,
    },
}

/// Longest line prefix examined for `LOCK TABLES` / `INSERT INTO` (table names are at most
/// 64 characters, 256 bytes escaped).
const MAX_PREFIX: usize = 1024;

/// Counts the rows of each table in a mysqldump stream as it passes through.
#[derive(Debug)]
pub struct InsertCounter<R> {
    inner: R,
    state: Scan,
    prefix: Vec<u8>,
    locked: Option<String>,
    current: Option<String>,
    counts: BTreeMap<String, u64>,
    shared: Arc<Mutex<Option<BTreeMap<String, u64>>>>,
}

impl<R: Read> InsertCounter<R> {
    /// Wrap `inner`; the counts are published to [`InsertCounter::counts_handle`] when the
    /// stream ends successfully.
    pub fn new(inner: R) -> Self {
        InsertCounter {
            inner,
            state: Scan::LineStart,
            prefix: Vec::new(),
            locked: None,
            current: None,
            counts: BTreeMap::new(),
            shared: Arc::new(Mutex::new(None)),
        }
    }

    /// Where the final counts appear (`None` until the end of the stream).
    pub fn counts_handle(&self) -> Arc<Mutex<Option<BTreeMap<String, u64>>>> {
        Arc::clone(&self.shared)
    }

    /// The counts so far.
    pub fn counts(&self) -> &BTreeMap<String, u64> {
        &self.counts
    }

    fn scan(&mut self, data: &[u8]) {
        for &b in data {
            match self.state {
                Scan::SkipLine => {
                    if b == b'\n' {
                        self.state = Scan::LineStart;
                    }
                }
                Scan::LineStart => {
                    if b == b'\n' {
                        self.end_of_line();
                    } else if b == b'(' && self.insert_target().is_some() {
                        self.current = self.insert_target();
                        self.prefix.clear();
                        self.state = Scan::Values {
                            depth: 0,
                            quote: None,
                            escaped: false,
                        };
                        self.values_byte(b);
                    } else if self.prefix.len() < MAX_PREFIX {
                        self.prefix.push(b);
                    } else {
                        self.prefix.clear();
                        self.state = Scan::SkipLine;
                    }
                }
                Scan::Values { .. } => self.values_byte(b),
            }
        }
    }

    fn values_byte(&mut self, b: u8) {
        let Scan::Values {
            mut depth,
            mut quote,
            mut escaped,
        } = self.state
        else {
            return;
        };
        if let Some(q) = quote {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == q {
                quote = None;
            }
        } else {
            match b {
                b'\'' | b'"' => quote = Some(b),
                b'(' => {
                    if depth == 0
                        && let Some(t) = &self.current
                    {
                        *self.counts.entry(t.clone()).or_insert(0) += 1;
                    }
                    depth += 1;
                }
                b')' => depth = depth.saturating_sub(1),
                b';' if depth == 0 => {
                    self.current = None;
                    self.state = Scan::SkipLine;
                    return;
                }
                _ => {}
            }
        }
        self.state = Scan::Values {
            depth,
            quote,
            escaped,
        };
    }

    /// The table of an `INSERT INTO `t` VALUES` line prefix, if inside a LOCK TABLES section.
    fn insert_target(&self) -> Option<String> {
        self.locked.as_ref()?;
        let line = std::str::from_utf8(&self.prefix).ok()?;
        let rest = line.strip_prefix("INSERT INTO ")?;
        let (name, after) = parse_backticked(rest)?;
        (after.trim_end() == " VALUES" || after.trim() == "VALUES").then_some(name)
    }

    fn end_of_line(&mut self) {
        if let Ok(line) = std::str::from_utf8(&self.prefix) {
            let line = line.trim_end_matches('\r');
            if let Some(rest) = line.strip_prefix("LOCK TABLES ") {
                if let Some((name, after)) = parse_backticked(rest)
                    && after.starts_with(" WRITE")
                {
                    self.counts.entry(name.clone()).or_insert(0);
                    self.locked = Some(name);
                }
            } else if line.starts_with("UNLOCK TABLES") {
                self.locked = None;
            } else if let Some(name) = self.insert_target() {
                // "INSERT INTO `t` VALUES" with the tuples on the following lines.
                self.current = Some(name);
                self.state = Scan::Values {
                    depth: 0,
                    quote: None,
                    escaped: false,
                };
                self.prefix.clear();
                return;
            }
        }
        self.prefix.clear();
        self.state = Scan::LineStart;
    }
}

/// Parse a backtick-quoted identifier at the start of `s`: (name, rest after the closing
/// backtick).
fn parse_backticked(s: &str) -> Option<(String, &str)> {
    let body = s.strip_prefix('`')?;
    let mut name = String::new();
    let mut chars = body.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c == '`' {
            if chars.peek().map(|&(_, c)| c) == Some('`') {
                chars.next();
                name.push('`');
            } else {
                return Some((name, &body[i + 1..]));
            }
        } else {
            name.push(c);
        }
    }
    None
}

impl<R: Read> Read for InsertCounter<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() {
            *self.shared.lock().unwrap_or_else(PoisonError::into_inner) = Some(self.counts.clone());
        } else {
            self.scan(&buf[..n]);
        }
        Ok(n)
    }
}

struct MyFinisher {
    url: DatabaseUrl,
    counts: Arc<Mutex<Option<BTreeMap<String, u64>>>>,
    server_version: String,
    size: Option<u64>,
    django: Option<DjangoMigrations>,
    tool: String,
    started_at: chrono::DateTime<Utc>,
}

impl FinishDump for MyFinisher {
    fn finish(self: Box<Self>, dump_bytes: u64) -> Result<DumpOutcome, SourceError> {
        let counts = self
            .counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
            .ok_or_else(|| SourceError::DumpIncomplete("row counts were not collected".into()))?;
        let manifest = Manifest {
            format: MANIFEST_FORMAT,
            engine: Engine::Mysql,
            source: self.url.to_string(),
            database: self.url.database().to_string(),
            server_version: self.server_version,
            size_bytes: self.size,
            dump: Some(DumpInfo {
                format: "mysql SQL script".into(),
                tool: self.tool,
                bytes: dump_bytes,
                extension: "sql".into(),
            }),
            tables: counts
                .into_iter()
                .map(|(name, rows)| TableCount { name, rows })
                .collect(),
            counts: CountsMethod::DumpStream,
            django_migrations: self.django,
            integrity_check: None,
            globals: None,
            started_at: self.started_at,
            finished_at: Utc::now(),
            warnings: Vec::new(),
        };
        Ok(DumpOutcome {
            manifest,
            globals_sql: None,
        })
    }
}

const DUMP_TOOLS: &[&str] = &["mariadb-dump", "mysqldump"];

/// Start a dump of `url`.
pub(crate) fn dump(
    url: &DatabaseUrl,
    tools: &Tools,
) -> Result<(DumpReader, PendingManifest), SourceError> {
    let started_at = Utc::now();
    // Resolve the dump tool first: a missing tool is the first thing to report.
    let version_line = command(url, tools, DUMP_TOOLS)?
        .arg("--version")
        .run()?
        .stdout_text()
        .trim()
        .to_string();
    let server_version = server_version(url, tools)?;
    let size = database_size(url, tools)?;
    let django = django_migrations(url, tools)?;
    let reader = command(url, tools, DUMP_TOOLS)?
        .args([
            "--single-transaction",
            "--routines",
            "--triggers",
            "--events",
            "--hex-blob",
            "--default-character-set=utf8mb4",
            "--add-locks",
            "--no-tablespaces",
            "--skip-dump-date",
            "--quick",
        ])
        .arg(url.database())
        .spawn_reader()?;
    let counter = InsertCounter::new(reader);
    let counts = counter.counts_handle();
    let (reader, status) = DumpReader::new(Box::new(counter));
    let finisher = MyFinisher {
        url: url.clone(),
        counts,
        server_version,
        size,
        django,
        tool: version_line,
        started_at,
    };
    Ok((reader, PendingManifest::new(status, Box::new(finisher))))
}

/// A manifest of the live database (`COUNT(*)` in one consistent-snapshot transaction).
pub(crate) fn manifest(url: &DatabaseUrl, tools: &Tools) -> Result<Manifest, SourceError> {
    let started_at = Utc::now();
    let server_version = server_version(url, tools)?;
    let size = database_size(url, tools)?;
    let django = django_migrations(url, tools)?;
    let counts = table_counts(url, tools)?;
    Ok(Manifest {
        format: MANIFEST_FORMAT,
        engine: Engine::Mysql,
        source: url.to_string(),
        database: url.database().to_string(),
        server_version,
        size_bytes: size,
        dump: None,
        tables: counts
            .into_iter()
            .map(|(name, rows)| TableCount { name, rows })
            .collect(),
        counts: CountsMethod::Live,
        django_migrations: django,
        integrity_check: None,
        globals: None,
        started_at,
        finished_at: Utc::now(),
        warnings: Vec::new(),
    })
}

fn database_exists(url: &DatabaseUrl, tools: &Tools, name: &str) -> Result<bool, SourceError> {
    let lines = run_sql(
        url,
        tools,
        &format!(
            "SELECT COUNT(*) FROM information_schema.schemata WHERE schema_name = {};",
            literal(name)
        ),
        false,
    )?;
    Ok(lines.first().map(String::as_str) == Some("1"))
}

/// Restore a SQL dump from `reader` into the database named by `target`, creating it.
///
/// An existing target is refused unless `options.replace`; MySQL cannot rename a database,
/// so a replaced target is dropped first (the caller takes the safety backup). A failed
/// restore drops the database it created.
pub(crate) fn restore(
    reader: &mut dyn Read,
    target: &DatabaseUrl,
    tools: &Tools,
    options: &RestoreOptions,
) -> Result<RestoreReport, SourceError> {
    let name = target.database();
    let exists = database_exists(target, tools, name)?;
    if exists && !options.replace {
        return Err(SourceError::TargetExists {
            target: target.to_string(),
        });
    }
    let mut sql = String::new();
    if exists {
        sql.push_str(&format!("DROP DATABASE {};\n", ident(name)));
    }
    sql.push_str(&format!(
        "CREATE DATABASE {} CHARACTER SET utf8mb4;\n",
        ident(name)
    ));
    run_sql(target, tools, &sql, false)?;
    let mut counting = CountingReader {
        inner: reader,
        bytes: 0,
    };
    let result = client(target, tools)?
        .args(["--batch", "--binary-mode"])
        .arg(format!("--database={name}"))
        .run_streaming_input(&mut counting);
    let output = match result {
        Ok(o) => o,
        Err(e) => {
            let _ = run_sql(
                target,
                tools,
                &format!("DROP DATABASE IF EXISTS {};", ident(name)),
                false,
            );
            return Err(e.into());
        }
    };
    if counting.bytes == 0 {
        let _ = run_sql(
            target,
            tools,
            &format!("DROP DATABASE IF EXISTS {};", ident(name)),
            false,
        );
        return Err(SourceError::from(CommandError::NoOutput {
            command: "restore input".into(),
            stderr: "the dump to restore is empty".into(),
        }));
    }
    Ok(RestoreReport {
        target: target.to_string(),
        created: true,
        replaced: exists.then_some(Replaced::Dropped),
        bytes: counting.bytes,
        tool_messages: output.stderr,
    })
}

/// Probe health. Latency is the wall time of one `SELECT 1` through the client tool,
/// including its start and connection.
/// Drop the database `url` names (used for scratch databases of test restores).
pub(crate) fn drop_named(url: &DatabaseUrl, tools: &Tools) -> Result<(), SourceError> {
    run_sql(
        url,
        tools,
        &format!("DROP DATABASE IF EXISTS {};", ident(url.database())),
        false,
    )?;
    Ok(())
}

/// `CHECK TABLE` of every table; "ok" when every table reports OK.
pub(crate) fn integrity(url: &DatabaseUrl, tools: &Tools) -> Result<String, SourceError> {
    let tables = run_sql(
        url,
        tools,
        "SELECT table_name FROM information_schema.tables WHERE table_schema = DATABASE() AND table_type = 'BASE TABLE';",
        true,
    )?;
    let mut bad = Vec::new();
    for t in &tables {
        let rows = run_sql(url, tools, &format!("CHECK TABLE {};", ident(t)), true)?;
        for r in rows {
            let cols: Vec<&str> = r.split('\t').collect();
            if cols.get(2) == Some(&"status")
                && cols.get(3).is_some_and(|v| !v.eq_ignore_ascii_case("ok"))
            {
                bad.push(r.clone());
            }
            if cols.get(2) == Some(&"error") {
                bad.push(r.clone());
            }
        }
    }
    Ok(if bad.is_empty() {
        format!("ok ({} tables checked)", tables.len())
    } else {
        bad.join("; ")
    })
}

pub(crate) fn probe(url: &DatabaseUrl, tools: &Tools) -> HealthReport {
    let report = HealthReport::new(Engine::Mysql, url.to_string());
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
    let start = Instant::now();
    run_sql(url, tools, "SELECT 1;", true)?;
    report.latency_ms = Some(start.elapsed().as_secs_f64() * 1000.0);
    report.reachable = true;
    #[derive(Deserialize)]
    struct Row {
        version: String,
        size: Option<u64>,
        max_connections: Option<u64>,
        longest: Option<f64>,
    }
    let sql = format!(
        "SELECT JSON_OBJECT('version', VERSION(), \
         'size', (SELECT CAST(COALESCE(SUM(data_length + index_length), 0) AS UNSIGNED) \
            FROM information_schema.tables WHERE table_schema = {db}), \
         'max_connections', @@max_connections, \
         'longest', (SELECT COALESCE(MAX(TIME), 0) FROM information_schema.PROCESSLIST \
            WHERE COMMAND = 'Query' AND ID <> CONNECTION_ID()));\n\
         SHOW GLOBAL STATUS WHERE Variable_name IN ('Threads_connected', 'Threads_running', \
         'Uptime', 'Innodb_row_lock_current_waits', 'Innodb_buffer_pool_reads', \
         'Innodb_buffer_pool_read_requests');",
        db = literal(url.database())
    );
    let lines = run_sql(url, tools, &sql, true)?;
    let mut lines = lines.into_iter().filter(|l| !l.is_empty());
    let first = lines.next().ok_or_else(|| SourceError::Protocol {
        tool: "mariadb".into(),
        detail: "no probe row".into(),
    })?;
    let row: Row = json_line(&first, "probe")?;
    let status: BTreeMap<String, String> = lines
        .filter_map(|l| {
            l.split_once('\t')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect();
    let num = |k: &str| status.get(k).and_then(|v| v.trim().parse::<u64>().ok());
    report.version = Some(row.version);
    report.size_bytes = row.size;
    report.max_connections = row.max_connections;
    report.longest_query_seconds = row.longest;
    report.total_connections = num("Threads_connected");
    report.active_connections = num("Threads_running");
    report.uptime_seconds = num("Uptime");
    report.waiting_locks = num("Innodb_row_lock_current_waits");
    if let (Some(reads), Some(requests)) = (
        num("Innodb_buffer_pool_reads"),
        num("Innodb_buffer_pool_read_requests"),
    ) && requests > 0
    {
        report.cache_hit_ratio = Some(1.0 - reads as f64 / requests as f64);
    }

    // Replication: SHOW SLAVE STATUS (MariaDB, MySQL < 8.4) with column names.
    if let Ok(out) = client(url, tools)?
        .args(["--batch", "--raw"])
        .run_with_bytes(b"SHOW SLAVE STATUS;")
    {
        let text = out.stdout_text();
        let mut rows = text.lines();
        match (rows.next(), rows.next()) {
            (Some(header), Some(values)) => {
                report.is_replica = Some(true);
                let lag = header
                    .split('\t')
                    .zip(values.split('\t'))
                    .find(|(k, _)| *k == "Seconds_Behind_Master")
                    .and_then(|(_, v)| v.parse::<f64>().ok());
                report.replication_lag_seconds = lag;
            }
            _ => report.is_replica = Some(false),
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(dump: &[u8], chunk: usize) -> BTreeMap<String, u64> {
        let mut c = InsertCounter::new(io::Cursor::new(dump.to_vec()));
        let mut buf = vec![0u8; chunk];
        while c.read(&mut buf).unwrap() > 0 {}
        let handle = c.counts_handle();
        handle.lock().unwrap().clone().unwrap()
    }

    const SAMPLE: &str = r#"/*M!999999\- enable the sandbox mode */
-- MariaDB dump 10.19
INSERT INTO `not_locked` VALUES (1),(2);
DROP TABLE IF EXISTS `e`;
CREATE TABLE `e` (
  `id` int(11) NOT NULL
);
LOCK TABLES `e` WRITE;
/*!40000 ALTER TABLE `e` DISABLE KEYS */;
/*!40000 ALTER TABLE `e` ENABLE KEYS */;
UNLOCK TABLES;
LOCK TABLES `f` WRITE;
INSERT INTO `f` VALUES
(1,'a(b);c\'d'),
(2,NULL),
(3,'line
INSERT INTO `f` VALUES (99);
'),
(4,0x28293B27),
(5,"dq ( \" )"),
(6,'back\\'),
(7,'x');
INSERT INTO `f` VALUES (8,'y'),(9,'(((');
UNLOCK TABLES;
LOCK TABLES `we``ird (t)` WRITE;
INSERT INTO `we``ird (t)` VALUES (1,'a'),(2,'b');
UNLOCK TABLES;
DELIMITER ;;
CREATE TRIGGER t AFTER INSERT ON f FOR EACH ROW
INSERT INTO `audit` VALUES (1) ;;
DELIMITER ;
"#;

    #[test]
    fn counts_tuples_in_data_sections_only() {
        for chunk in [1, 2, 3, 7, 64, 4096] {
            let c = count(SAMPLE.as_bytes(), chunk);
            let expected: BTreeMap<String, u64> = [
                ("e".to_string(), 0),
                ("f".to_string(), 9),
                ("we`ird (t)".to_string(), 2),
            ]
            .into_iter()
            .collect();
            assert_eq!(c, expected, "chunk {chunk}");
        }
    }

    #[test]
    fn counts_are_published_only_at_the_end() {
        let mut c = InsertCounter::new(io::Cursor::new(SAMPLE.as_bytes().to_vec()));
        let mut buf = [0u8; 16];
        c.read_exact(&mut buf).unwrap();
        assert!(c.counts_handle().lock().unwrap().is_none());
    }

    #[test]
    fn option_file_quoting() {
        assert_eq!(option_value(r#"p"a\ss#1"#), r#""p\"a\\ss#1""#);
        let url = DatabaseUrl::parse("mysql://root:se%22cret@127.0.0.1:3306/db?ssl=false").unwrap();
        let c = defaults_contents(&url);
        assert!(c.starts_with("[client]\n"));
        assert!(c.contains("password=\"se\\\"cret\"\n"));
        assert!(c.contains("port=3306\n"));
        assert!(c.contains("skip-ssl\n"));
    }

    #[test]
    fn defaults_file_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let url = DatabaseUrl::parse("mysql://root:pw@127.0.0.1/db").unwrap();
        let f = defaults_file(&url, &Tools::default()).unwrap();
        let mode = std::fs::metadata(f.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn literals_and_identifiers() {
        assert_eq!(literal("a'b"), "CONVERT(X'612762' USING utf8mb4)");
        assert_eq!(ident("a`b"), "`a``b`");
        assert_eq!(parse_backticked("`a``b` x"), Some(("a`b".into(), " x")));
    }
}
