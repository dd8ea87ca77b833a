//! SQLite: consistent copies through the `sqlite3` shell's online backup (`.backup`) into a
//! private temporary file that is then streamed, manifests counted in that copy, restores to
//! a path, and health probes.
//!
//! The raw database file is never read directly (it would miss committed pages still in the
//! WAL, or catch a write half done); the backup API reads through SQLite's pager and
//! includes the WAL. The source is opened read-only (`mode=ro`, so closing our connection
//! never checkpoints the application's WAL), falling back to a normal connection if a
//! read-only one cannot open it (e.g. a hot rollback journal).
//!
//! A restore never writes over an existing file unless asked to replace it, and then keeps
//! the old file (and its `-wal`/`-shm`/`-journal` companions) renamed
//! `<name>.before-restore-<time>`. It must not leave a half-written target behind: the dump is
//! written to a temporary file beside the target, checked, and renamed into place.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use chrono::Utc;
use serde::Deserialize;
use tempfile::TempDir;

use crate::process::ToolCommand;
use crate::url::DatabaseUrl;
use crate::{
    AppMigrations, CountsMethod, DjangoMigrations, DumpInfo, DumpOutcome, DumpReader, Engine,
    FinishDump, HealthReport, MANIFEST_FORMAT, Manifest, PendingManifest, Replaced, RestoreOptions,
    RestoreReport, SourceError, TableCount, Tools,
};

const PACKAGE: &str = "sqlite3";

/// The 16-byte header of every SQLite database file.
pub const SQLITE_HEADER: &[u8; 16] = b"SQLite format 3\0";

/// A `file:` URI for `path` with a `mode` parameter.
fn uri(path: &Path, mode: &str) -> String {
    let mut s = String::from("file:");
    for b in path.to_string_lossy().bytes() {
        if b.is_ascii_alphanumeric() || b"/-._~".contains(&b) {
            s.push(b as char);
        } else {
            s.push_str(&format!("%{b:02X}"));
        }
    }
    s.push_str("?mode=");
    s.push_str(mode);
    s
}

fn sqlite3(tools: &Tools, db: &Path, mode: &str) -> ToolCommand {
    tools
        .command("sqlite3", PACKAGE, &db.display().to_string())
        .args(["-bail", "-batch", "-noheader", "-list"])
        .arg(uri(db, mode))
}

/// Run SQL (from stdin) against `db`, returning non-empty output lines.
fn run_sql(tools: &Tools, db: &Path, mode: &str, sql: &str) -> Result<Vec<String>, SourceError> {
    let out = sqlite3(tools, db, mode).run_with_bytes(sql.as_bytes())?;
    Ok(out
        .stdout_text()
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect())
}

fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

fn json<T: for<'de> Deserialize<'de>>(line: &str, what: &str) -> Result<T, SourceError> {
    serde_json::from_str(line).map_err(|e| SourceError::Protocol {
        tool: "sqlite3".into(),
        detail: format!("bad JSON for {what}: {e}"),
    })
}

fn require_file(url: &DatabaseUrl) -> Result<PathBuf, SourceError> {
    let path = url.sqlite_path();
    match std::fs::metadata(&path) {
        Ok(m) if m.is_file() => Ok(path),
        Ok(_) => Err(SourceError::io(
            format!("{} is not a regular file", path.display()),
            io::Error::new(io::ErrorKind::InvalidInput, "not a file"),
        )),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(SourceError::Missing {
            target: url.to_string(),
        }),
        Err(e) => Err(SourceError::io(format!("checking {}", path.display()), e)),
    }
}

/// Tables and exact row counts of `db`.
fn count_tables(tools: &Tools, db: &Path, mode: &str) -> Result<Vec<TableCount>, SourceError> {
    let names = run_sql(
        tools,
        db,
        mode,
        "SELECT json_group_array(name) FROM (SELECT name FROM sqlite_schema \
         WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name);",
    )?;
    let names: Vec<String> = match names.first() {
        Some(l) => json(l, "table names")?,
        None => Vec::new(),
    };
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let mut sql = String::from("BEGIN;\n");
    for n in &names {
        sql.push_str(&format!(
            "SELECT json_array({}, (SELECT count(*) FROM {}));\n",
            literal(n),
            ident(n)
        ));
    }
    sql.push_str("COMMIT;\n");
    let mut tables = Vec::new();
    for line in run_sql(tools, db, mode, &sql)? {
        let (name, rows): (String, u64) = json(&line, "row counts")?;
        tables.push(TableCount { name, rows });
    }
    tables.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(tables)
}

fn django_migrations(
    tools: &Tools,
    db: &Path,
    mode: &str,
) -> Result<Option<DjangoMigrations>, SourceError> {
    let exists = run_sql(
        tools,
        db,
        mode,
        "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = 'django_migrations';",
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
        tools,
        db,
        mode,
        "SELECT json_object('app', m.app, 'count', c.n, 'latest', m.name, 'applied', \
         CAST(m.applied AS TEXT)) FROM django_migrations m JOIN (SELECT app, count(*) AS n, \
         max(id) AS last_id FROM django_migrations GROUP BY app) c ON c.last_id = m.id \
         ORDER BY m.app;",
    )?;
    let mut apps = Vec::new();
    for line in lines {
        let r: Row = json(&line, "django_migrations")?;
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

fn integrity_check(
    tools: &Tools,
    db: &Path,
    mode: &str,
    pragma: &str,
) -> Result<String, SourceError> {
    Ok(run_sql(tools, db, mode, &format!("PRAGMA {pragma};"))?.join("\n"))
}

fn version(tools: &Tools, db: &Path, mode: &str) -> Result<String, SourceError> {
    Ok(run_sql(tools, db, mode, "SELECT sqlite_version();")?
        .into_iter()
        .next()
        .unwrap_or_default())
}

/// Everything the manifest says, read from one database file.
struct Facts {
    version: String,
    tables: Vec<TableCount>,
    django: Option<DjangoMigrations>,
    integrity: String,
}

fn read_facts(tools: &Tools, db: &Path, mode: &str) -> Result<Facts, SourceError> {
    Ok(Facts {
        version: version(tools, db, mode)?,
        tables: count_tables(tools, db, mode)?,
        django: django_migrations(tools, db, mode)?,
        integrity: integrity_check(tools, db, mode, "integrity_check")?,
    })
}

/// Make the consistent copy of `src` at `dest` with the online backup API.
fn backup(tools: &Tools, src: &Path, dest: &Path) -> Result<(), SourceError> {
    let dest_s = dest.to_string_lossy();
    if dest_s.contains('\'') || dest_s.contains('\n') {
        return Err(SourceError::io(
            format!(
                "temporary directory {} contains a quote or newline",
                dest.display()
            ),
            io::Error::new(io::ErrorKind::InvalidInput, "unsupported path"),
        ));
    }
    let command = format!(".backup '{dest_s}'");
    let first = sqlite3(tools, src, "ro").arg(&command).run();
    match first {
        Ok(_) => Ok(()),
        Err(ro_err) => {
            if matches!(ro_err, crate::CommandError::NotFound { .. }) {
                return Err(ro_err.into());
            }
            let _ = std::fs::remove_file(dest);
            sqlite3(tools, src, "rw")
                .arg(&command)
                .run()
                .map(|_| ())
                .map_err(|_| SourceError::from(ro_err))
        }
    }
}

/// The backup copy streamed as the dump; deleted when dropped.
struct CopyReader {
    file: File,
    _dir: TempDir,
}

impl Read for CopyReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.file.read(buf)
    }
}

struct SqliteFinisher {
    manifest: Manifest,
}

impl FinishDump for SqliteFinisher {
    fn finish(self: Box<Self>, dump_bytes: u64) -> Result<DumpOutcome, SourceError> {
        let mut manifest = self.manifest;
        if let Some(d) = manifest.dump.as_mut()
            && d.bytes != dump_bytes
        {
            return Err(SourceError::DumpIncomplete(format!(
                "the backup copy has {} bytes but {dump_bytes} were read",
                d.bytes
            )));
        }
        manifest.finished_at = Utc::now();
        Ok(DumpOutcome {
            manifest,
            globals_sql: None,
        })
    }
}

/// Copy the database with the online backup API into a private temporary directory, read
/// the manifest from the copy, and stream the copy.
pub(crate) fn dump(
    url: &DatabaseUrl,
    tools: &Tools,
) -> Result<(DumpReader, PendingManifest), SourceError> {
    let started_at = Utc::now();
    let src = require_file(url)?;
    let dir = tempfile::Builder::new()
        .prefix("strongroom-sqlite-")
        .tempdir_in(tools.temp_dir())
        .map_err(|e| SourceError::io("creating a temporary directory for the SQLite copy", e))?;
    let copy = dir.path().join("backup.sqlite3");
    backup(tools, &src, &copy)?;
    let size = std::fs::metadata(&copy)
        .map_err(|e| SourceError::io("reading the SQLite backup copy", e))?
        .len();
    if size == 0 {
        return Err(SourceError::from(crate::CommandError::NoOutput {
            command: format!("sqlite3 .backup of {}", src.display()),
            stderr: String::new(),
        }));
    }
    let facts = read_facts(tools, &copy, "ro")?;
    let mut warnings = Vec::new();
    if facts.integrity != "ok" {
        warnings.push(format!("PRAGMA integrity_check: {}", facts.integrity));
    }
    let manifest = Manifest {
        format: MANIFEST_FORMAT,
        engine: Engine::Sqlite,
        source: url.to_string(),
        database: src.display().to_string(),
        server_version: facts.version,
        size_bytes: Some(size),
        dump: Some(DumpInfo {
            format: "sqlite database file (online backup)".into(),
            tool: "sqlite3 .backup".into(),
            bytes: size,
            extension: "sqlite3".into(),
        }),
        tables: facts.tables,
        counts: CountsMethod::BackupCopy,
        django_migrations: facts.django,
        integrity_check: Some(facts.integrity),
        globals: None,
        started_at,
        finished_at: Utc::now(),
        warnings,
    };
    let file =
        File::open(&copy).map_err(|e| SourceError::io("opening the SQLite backup copy", e))?;
    let (reader, status) = DumpReader::new(Box::new(CopyReader { file, _dir: dir }));
    Ok((
        reader,
        PendingManifest::new(status, Box::new(SqliteFinisher { manifest })),
    ))
}

/// A manifest of the live database, read-only.
pub(crate) fn manifest(url: &DatabaseUrl, tools: &Tools) -> Result<Manifest, SourceError> {
    let started_at = Utc::now();
    let path = require_file(url)?;
    let facts = read_facts(tools, &path, "ro")?;
    let size = std::fs::metadata(&path).ok().map(|m| m.len());
    let mut warnings = Vec::new();
    if facts.integrity != "ok" {
        warnings.push(format!("PRAGMA integrity_check: {}", facts.integrity));
    }
    Ok(Manifest {
        format: MANIFEST_FORMAT,
        engine: Engine::Sqlite,
        source: url.to_string(),
        database: path.display().to_string(),
        server_version: facts.version,
        size_bytes: size,
        dump: None,
        tables: facts.tables,
        counts: CountsMethod::Live,
        django_migrations: facts.django,
        integrity_check: Some(facts.integrity),
        globals: None,
        started_at,
        finished_at: Utc::now(),
        warnings,
    })
}

/// Exact row counts of every table.
pub(crate) fn table_counts(
    url: &DatabaseUrl,
    tools: &Tools,
) -> Result<BTreeMap<String, u64>, SourceError> {
    let path = require_file(url)?;
    Ok(count_tables(tools, &path, "ro")?
        .into_iter()
        .map(|t| (t.name, t.rows))
        .collect())
}

/// The companion files SQLite keeps beside a database.
const COMPANIONS: &[&str] = &["-wal", "-shm", "-journal"];

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(suffix);
    PathBuf::from(s)
}

/// Restore a SQLite database file from `reader` to the path of `target`.
pub(crate) fn restore(
    reader: &mut dyn Read,
    target: &DatabaseUrl,
    tools: &Tools,
    options: &RestoreOptions,
) -> Result<RestoreReport, SourceError> {
    let path = target.sqlite_path();
    let parent = path
        .parent()
        .filter(|p| p.is_dir())
        .ok_or_else(|| {
            SourceError::io(
                format!("the directory of {} does not exist", path.display()),
                io::Error::new(io::ErrorKind::NotFound, "no parent directory"),
            )
        })?
        .to_path_buf();
    let occupied = std::iter::once(path.clone())
        .chain(COMPANIONS.iter().map(|s| with_suffix(&path, s)))
        .filter(|p| p.symlink_metadata().is_ok())
        .collect::<Vec<_>>();
    let exists = path.symlink_metadata().is_ok();
    if !occupied.is_empty() && !options.replace {
        return Err(SourceError::TargetExists {
            target: occupied
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "database".into());
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{file_name}.restore-"))
        .tempfile_in(&parent)
        .map_err(|e| {
            SourceError::io(
                format!("creating a temporary file in {}", parent.display()),
                e,
            )
        })?;
    let bytes = copy_checked(reader, tmp.as_file_mut())
        .map_err(|e| SourceError::io("writing the restored SQLite file", e))?;
    if bytes == 0 {
        return Err(SourceError::from(crate::CommandError::NoOutput {
            command: "restore input".into(),
            stderr: "the dump to restore is empty".into(),
        }));
    }
    let mut head = [0u8; 16];
    let header_ok = File::open(tmp.path())
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok()
        && &head == SQLITE_HEADER;
    if !header_ok {
        return Err(SourceError::Protocol {
            tool: "restore".into(),
            detail: "the dump is not a SQLite database file".into(),
        });
    }
    let check = integrity_check(tools, tmp.path(), "rw", "quick_check")?;
    if check != "ok" {
        return Err(SourceError::Protocol {
            tool: "sqlite3".into(),
            detail: format!("the restored file fails PRAGMA quick_check: {check}"),
        });
    }
    let mut replaced = None;
    if !occupied.is_empty() {
        let kept = with_suffix(&path, &format!(".before-restore-{}", crate::stamp()));
        for suffix in std::iter::once("").chain(COMPANIONS.iter().copied()) {
            let from = with_suffix(&path, suffix);
            if from.symlink_metadata().is_ok() {
                let to = with_suffix(&kept, suffix);
                std::fs::rename(&from, &to).map_err(|e| {
                    SourceError::io(format!("keeping {} as {}", from.display(), to.display()), e)
                })?;
            }
        }
        replaced = Some(Replaced::KeptAs(kept.display().to_string()));
    }
    tmp.persist(&path).map_err(|e| {
        SourceError::io(
            format!("moving the restored file to {}", path.display()),
            e.error,
        )
    })?;
    File::open(&parent)
        .and_then(|d| d.sync_all())
        .map_err(|e| SourceError::io(format!("syncing {}", parent.display()), e))?;
    Ok(RestoreReport {
        target: target.to_string(),
        created: !exists,
        replaced,
        bytes,
        tool_messages: String::new(),
    })
}

fn copy_checked(reader: &mut dyn Read, file: &mut File) -> io::Result<u64> {
    let n = io::copy(reader, file)?;
    file.flush()?;
    file.sync_all()?;
    Ok(n)
}

/// Probe health: file size, page count and size, free pages, journal mode, `quick_check`.
/// Latency is the wall time of one `SELECT 1` through `sqlite3`, process start included.
/// Remove the database file and its companions (used for scratch copies of test restores).
pub(crate) fn drop_named(url: &DatabaseUrl) -> Result<(), SourceError> {
    let path = url.sqlite_path();
    for p in [
        path.clone(),
        with_suffix(&path, "-wal"),
        with_suffix(&path, "-shm"),
    ] {
        match std::fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(SourceError::io(format!("removing {}", p.display()), e)),
        }
    }
    Ok(())
}

/// `PRAGMA integrity_check` ("ok" when sound).
pub(crate) fn integrity(url: &DatabaseUrl, tools: &Tools) -> Result<String, SourceError> {
    let path = require_file(url)?;
    integrity_check(tools, &path, "ro", "integrity_check")
}

pub(crate) fn probe(url: &DatabaseUrl, tools: &Tools) -> HealthReport {
    let report = HealthReport::new(Engine::Sqlite, url.to_string());
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
    let path = require_file(url)?;
    let start = Instant::now();
    run_sql(tools, &path, "ro", "SELECT 1;")?;
    report.latency_ms = Some(start.elapsed().as_secs_f64() * 1000.0);
    let lines = run_sql(
        tools,
        &path,
        "ro",
        "SELECT sqlite_version();\nPRAGMA page_count;\nPRAGMA page_size;\n\
         PRAGMA freelist_count;\nPRAGMA journal_mode;\nPRAGMA quick_check;\n",
    )?;
    if lines.len() < 6 {
        return Err(SourceError::Protocol {
            tool: "sqlite3".into(),
            detail: format!("expected 6 lines from the probe, got {}", lines.len()),
        });
    }
    let num = |i: usize| lines[i].trim().parse::<u64>().ok();
    report.reachable = true;
    report.version = Some(lines[0].clone());
    report.size_bytes = std::fs::metadata(&path).ok().map(|m| m.len());
    let wal = std::fs::metadata(with_suffix(&path, "-wal"))
        .ok()
        .map(|m| m.len());
    report.details.insert("page_count".into(), num(1).into());
    report.details.insert("page_size".into(), num(2).into());
    report
        .details
        .insert("freelist_count".into(), num(3).into());
    report
        .details
        .insert("journal_mode".into(), lines[4].clone().into());
    report
        .details
        .insert("quick_check".into(), lines[5..].join("\n").into());
    report.details.insert("wal_bytes".into(), wal.into());
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_encodes_paths() {
        assert_eq!(
            uri(Path::new("/srv/my db?#.sqlite"), "ro"),
            "file:/srv/my%20db%3F%23.sqlite?mode=ro"
        );
    }

    #[test]
    fn companion_names() {
        assert_eq!(
            with_suffix(Path::new("/a/db.sqlite3"), "-wal"),
            PathBuf::from("/a/db.sqlite3-wal")
        );
    }
}
