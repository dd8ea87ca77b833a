//! SQLite integration tests with the real `sqlite3` tool: a WAL database with 1,000 rows not
//! yet checkpointed (writer still open) restores all 1,000 rows; round trip of tables, views,
//! triggers, blobs; restore refusals and the kept `*.before-restore-<time>` file; failures
//! (missing file, missing tool, garbage or empty input); the health probe.
//!
//! Everything happens in temporary directories; these tests must never touch other files.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

mod common;

use std::io::{BufRead, BufReader, Cursor, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use common::*;
use strongroom_sources::{
    CountsMethod, DatabaseSource, DatabaseUrl, Engine, Replaced, RestoreOptions, SourceError,
    Tools, detect_dump_format, verify_counts,
};

fn sqlite(path: &Path, sql: &str) -> String {
    let mut child = Command::new("sqlite3")
        .args(["-bail", "-batch"])
        .arg(path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(sql.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn source(path: &Path) -> DatabaseSource {
    DatabaseSource::new(DatabaseUrl::sqlite(path).unwrap())
}

/// A `sqlite3` process holding a connection open, driven line by line.
struct Writer {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Writer {
    fn open(path: &Path) -> Self {
        let mut child = Command::new("sqlite3")
            .arg(path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Writer {
            child,
            stdin,
            stdout,
        }
    }

    /// Run SQL and wait until it is done (its output up to a marker).
    fn exec(&mut self, sql: &str) -> Vec<String> {
        writeln!(self.stdin, "{sql}\nSELECT 'done-marker';").unwrap();
        self.stdin.flush().unwrap();
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            assert!(self.stdout.read_line(&mut line).unwrap() > 0, "writer died");
            let line = line.trim_end().to_string();
            if line == "done-marker" {
                return lines;
            }
            lines.push(line);
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn wal_rows_not_yet_checkpointed_are_restored() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.sqlite3");
    let mut writer = Writer::open(&db);
    assert_eq!(writer.exec("PRAGMA journal_mode=WAL;"), ["wal"]);
    writer.exec(
        "PRAGMA wal_autocheckpoint=0;
         CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL, data BLOB);
         BEGIN;
         WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < 1000)
           INSERT INTO items (name, data) SELECT 'item ' || n, randomblob(100) FROM g;
         COMMIT;",
    );
    // The rows live only in the WAL: the main file alone does not have them.
    let wal = dir.path().join("app.sqlite3-wal");
    assert!(std::fs::metadata(&wal).unwrap().len() > 100_000);
    let raw_copy = dir.path().join("raw-copy.sqlite3");
    std::fs::copy(&db, &raw_copy).unwrap();
    let raw = Command::new("sqlite3")
        .arg(&raw_copy)
        .arg("SELECT count(*) FROM items;")
        .output()
        .unwrap();
    assert!(
        !raw.status.success() || String::from_utf8_lossy(&raw.stdout).trim() != "1000",
        "the main file unexpectedly holds the rows; the test would prove nothing"
    );

    // Dump while the writer still holds its connection.
    let (bytes, outcome) = dump_all(&source(&db)).unwrap();
    assert_eq!(detect_dump_format(&bytes), Some(Engine::Sqlite));
    let m = &outcome.manifest;
    assert_eq!(m.counts, CountsMethod::BackupCopy);
    assert_eq!(m.counts()["items"], 1000);
    assert_eq!(m.integrity_check.as_deref(), Some("ok"));
    // Our read-only connection did not checkpoint the application's WAL.
    assert!(std::fs::metadata(&wal).unwrap().len() > 100_000);

    let target = dir.path().join("restored.sqlite3");
    let report = source(&target)
        .restore(&mut Cursor::new(&bytes), &RestoreOptions::default())
        .unwrap();
    assert!(report.created);
    assert_eq!(
        sqlite(&target, "SELECT count(*) FROM items;").trim(),
        "1000"
    );
    assert_eq!(sqlite(&target, "PRAGMA integrity_check;").trim(), "ok");
    let check = verify_counts(m, &source(&target).table_counts().unwrap());
    assert!(check.is_ok(), "{:?}", check.mismatches);
    drop(writer);
}

const SCHEMA: &str = "
PRAGMA foreign_keys = ON;
CREATE TABLE patients (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL,
  balance NUMERIC, ratio REAL, photo BLOB, profile TEXT CHECK (json_valid(profile)),
  seen_at TEXT);
CREATE TABLE visits (id INTEGER PRIMARY KEY, patient_id INTEGER NOT NULL
  REFERENCES patients (id) ON DELETE CASCADE, at TEXT);
CREATE TABLE audit (id INTEGER PRIMARY KEY, patient_id INTEGER, action TEXT);
CREATE TABLE \"odd \"\"name\"\"\" (k TEXT PRIMARY KEY, v TEXT);
INSERT INTO \"odd \"\"name\"\"\" VALUES ('a', 'it''s'), ('b', NULL);
CREATE INDEX visits_patient ON visits (patient_id);
CREATE TRIGGER patients_audit AFTER INSERT ON patients BEGIN
  INSERT INTO audit (patient_id, action) VALUES (NEW.id, 'insert');
END;
CREATE VIEW rich AS SELECT id, name FROM patients WHERE balance > 100000;
WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < 300)
INSERT INTO patients (name, balance, ratio, photo, profile, seen_at)
SELECT 'patient ' || n || ' ''q'' ünïcode ✓' || char(10) || 'newline', n * 1234.5678, n / 7.0,
       randomblob(64), json_object('k', n, 'a', json_array(1, 'two', NULL)),
       datetime('2024-03-31 01:30:00', '+' || n || ' hours')
FROM g;
INSERT INTO visits (patient_id, at) SELECT id, '2024-01-01' FROM patients WHERE id % 3 = 0;
CREATE TABLE django_migrations (id INTEGER PRIMARY KEY AUTOINCREMENT, app TEXT NOT NULL,
  name TEXT NOT NULL, applied TEXT NOT NULL);
INSERT INTO django_migrations (app, name, applied) VALUES
  ('auth', '0001_initial', '2024-01-01 10:00:00'),
  ('patients', '0001_initial', '2024-01-01 10:01:00'),
  ('patients', '0002_more', '2024-01-02 10:01:00');
";

#[test]
fn round_trip_keeps_schema_and_data() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("src.db");
    sqlite(&db, SCHEMA);
    let (bytes, outcome) = dump_all(&source(&db)).unwrap();
    let m = &outcome.manifest;
    assert_eq!(m.counts()["patients"], 300);
    assert_eq!(m.counts()["audit"], 300);
    assert_eq!(m.counts()["odd \"name\""], 2);
    assert!(!m.counts().contains_key("sqlite_sequence"));
    let dj = m.django_migrations.as_ref().unwrap();
    assert_eq!(dj.total, 3);
    assert_eq!(dj.apps[1].latest, "0002_more");

    let target = dir.path().join("dst.db");
    source(&target)
        .restore(&mut Cursor::new(&bytes), &RestoreOptions::default())
        .unwrap();
    assert_eq!(sqlite(&db, ".dump"), sqlite(&target, ".dump"));

    // Live manifest agrees.
    assert_eq!(source(&db).manifest().unwrap().counts(), m.counts());
}

#[test]
fn restore_never_overwrites_without_replace_and_keeps_the_old_file() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.db");
    sqlite(&a, "CREATE TABLE t (v TEXT); INSERT INTO t VALUES ('new');");
    let (bytes, _) = dump_all(&source(&a)).unwrap();

    let target = dir.path().join("live.db");
    sqlite(
        &target,
        "CREATE TABLE t (v TEXT); INSERT INTO t VALUES ('old');",
    );
    let err = source(&target)
        .restore(&mut Cursor::new(&bytes), &RestoreOptions::default())
        .unwrap_err();
    assert!(matches!(err, SourceError::TargetExists { .. }), "{err}");
    assert_eq!(sqlite(&target, "SELECT v FROM t;").trim(), "old");

    let report = source(&target)
        .restore(&mut Cursor::new(&bytes), &RestoreOptions { replace: true })
        .unwrap();
    let Some(Replaced::KeptAs(kept)) = report.replaced else {
        panic!("old file not kept: {report:?}");
    };
    assert!(kept.contains("live.db.before-restore-"), "{kept}");
    assert_eq!(sqlite(Path::new(&kept), "SELECT v FROM t;").trim(), "old");
    assert_eq!(sqlite(&target, "SELECT v FROM t;").trim(), "new");

    // A stale WAL beside a missing target would be replayed into the restored file: refused.
    let ghost = dir.path().join("ghost.db");
    std::fs::write(dir.path().join("ghost.db-wal"), b"stale").unwrap();
    let err = source(&ghost)
        .restore(&mut Cursor::new(&bytes), &RestoreOptions::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("ghost.db-wal"), "{err}");
    assert!(!exists(&ghost));
}

#[test]
fn bad_restore_input_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("t.db");
    let err = source(&target)
        .restore(
            &mut Cursor::new(b"definitely not a database".to_vec()),
            &RestoreOptions::default(),
        )
        .unwrap_err()
        .to_string();
    assert!(err.contains("not a SQLite database"), "{err}");
    let err = source(&target)
        .restore(&mut std::io::empty(), &RestoreOptions::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("empty"), "{err}");
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn missing_file_fails_and_is_not_created() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("nope.db");
    let err = source(&db).dump().unwrap_err();
    assert!(matches!(err, SourceError::Missing { .. }), "{err}");
    assert!(err.to_string().contains("nope.db does not exist"), "{err}");
    assert!(!exists(&db));
    let report = source(&db).probe();
    assert!(!report.reachable);
    assert!(!exists(&db));
}

#[test]
fn missing_sqlite3_tool_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("x.db");
    sqlite(&db, "CREATE TABLE t (v);");
    let (_tools_dir, tools) = tool_dir(&[], &[]);
    let err = source(&db)
        .with_tools(tools)
        .dump()
        .unwrap_err()
        .to_string();
    assert!(err.contains("`sqlite3` was not found"), "{err}");
    assert!(err.contains("apt-get install sqlite3"), "{err}");
}

#[test]
fn temp_dir_is_configurable_and_cleaned_up() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("x.db");
    sqlite(&db, "CREATE TABLE t (v); INSERT INTO t VALUES (1);");
    let scratch = tempfile::tempdir().unwrap();
    let tools = Tools {
        search_path: None,
        temp_dir: Some(scratch.path().to_path_buf()),
    };
    let src = source(&db).with_tools(tools);
    let (reader, pending) = src.dump().unwrap();
    assert_eq!(
        std::fs::read_dir(scratch.path()).unwrap().count(),
        1,
        "the copy is there"
    );
    drop(reader);
    assert!(
        pending.finish().is_err(),
        "a dump not read to its end has no manifest"
    );
    assert_eq!(
        std::fs::read_dir(scratch.path()).unwrap().count(),
        0,
        "and is removed"
    );
}

#[test]
fn probe_reports_file_health() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("p.db");
    sqlite(
        &db,
        "PRAGMA journal_mode=WAL; CREATE TABLE t (v); INSERT INTO t VALUES (1);",
    );
    let report = source(&db).probe();
    assert!(report.reachable, "{:?}", report.error);
    assert!(report.version.is_some());
    assert!(report.latency_ms.is_some());
    assert!(report.size_bytes.unwrap() > 0);
    assert_eq!(report.details["journal_mode"], "wal");
    assert_eq!(report.details["quick_check"], "ok");
    assert!(report.details["page_count"].as_u64().unwrap() >= 2);
}
