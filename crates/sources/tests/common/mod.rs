//! Helpers shared by the integration tests: unique names, admin access to the local test
//! servers (PostgreSQL 127.0.0.1:5432 user postgres, MariaDB 127.0.0.1:3306 root without
//! password), fake tool directories, reading a dump to the end.
//!
//! Tests must fail, never skip, when a server is unreachable: the message says to run
//! `scripts/services`. These helpers must only touch databases whose names they generated.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use strongroom_sources::{DatabaseSource, DumpOutcome, SourceError, Tools};

pub const PG_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
pub const MY_ADMIN_URL: &str = "mysql://root@127.0.0.1:3306/mysql";

/// A name unique to this process and call, safe as a database name.
pub fn unique(tag: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::SeqCst);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("sr_{tag}_{}_{n}_{}", std::process::id(), nanos % 100_000)
}

fn run(cmd: &mut Command, input: &str) -> Result<String, String> {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {cmd:?}: {e}"))?;
    let mut stdin = child.stdin.take().ok_or("no stdin")?;
    let input = input.to_string();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(input.as_bytes());
    });
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    let _ = writer.join();
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// Run SQL as the PostgreSQL superuser in `db`; panics on failure.
pub fn pg(db: &str, sql: &str) -> String {
    pg_try(db, sql).unwrap_or_else(|e| panic!("psql in {db} failed: {e}\nSQL: {sql}"))
}

pub fn pg_try(db: &str, sql: &str) -> Result<String, String> {
    run(
        Command::new("psql")
            .args(["-X", "-q", "-A", "-t", "-w", "-v", "ON_ERROR_STOP=1"])
            .args(["-h", "127.0.0.1", "-p", "5432", "-U", "postgres", "-d", db]),
        sql,
    )
}

/// Fail (not skip) when PostgreSQL is not reachable.
pub fn require_postgres() {
    if let Err(e) = pg_try("postgres", "SELECT 1;") {
        panic!(
            "PostgreSQL is not reachable on 127.0.0.1:5432 as user postgres ({}); run scripts/services to start it",
            e.trim()
        );
    }
}

/// Run SQL as MariaDB root in `db` (or no database when empty); panics on failure.
pub fn my(db: &str, sql: &str) -> String {
    my_try(db, sql).unwrap_or_else(|e| panic!("mariadb in {db} failed: {e}\nSQL: {sql}"))
}

pub fn my_try(db: &str, sql: &str) -> Result<String, String> {
    let mut cmd = Command::new("mariadb");
    cmd.args([
        "-h",
        "127.0.0.1",
        "-P",
        "3306",
        "-uroot",
        "--batch",
        "--raw",
        "--skip-column-names",
    ]);
    if !db.is_empty() {
        cmd.arg(format!("--database={db}"));
    }
    run(&mut cmd, sql)
}

/// Fail (not skip) when MariaDB is not reachable.
pub fn require_mysql() {
    if let Err(e) = my_try("", "SELECT 1;") {
        panic!(
            "MariaDB/MySQL is not reachable on 127.0.0.1:3306 as root ({}); run scripts/services to start it",
            e.trim()
        );
    }
}

/// A PostgreSQL database dropped when the guard goes out of scope.
pub struct PgDb(pub String);

impl PgDb {
    pub fn create(tag: &str) -> Self {
        let name = unique(tag);
        pg("postgres", &format!("CREATE DATABASE \"{name}\";"));
        PgDb(name)
    }
    pub fn named(name: &str) -> Self {
        PgDb(name.to_string())
    }
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:5432/{}", self.0)
    }
    pub fn source(&self) -> DatabaseSource {
        DatabaseSource::parse(&self.url()).unwrap()
    }
}

impl Drop for PgDb {
    fn drop(&mut self) {
        let _ = pg_try(
            "postgres",
            &format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE);", self.0),
        );
    }
}

/// A MariaDB database dropped when the guard goes out of scope.
pub struct MyDb(pub String);

impl MyDb {
    pub fn create(tag: &str) -> Self {
        let name = unique(tag);
        my(
            "",
            &format!("CREATE DATABASE `{name}` CHARACTER SET utf8mb4;"),
        );
        MyDb(name)
    }
    pub fn named(name: &str) -> Self {
        MyDb(name.to_string())
    }
    pub fn url(&self) -> String {
        format!("mysql://root@127.0.0.1:3306/{}", self.0)
    }
    pub fn source(&self) -> DatabaseSource {
        DatabaseSource::parse(&self.url()).unwrap()
    }
}

impl Drop for MyDb {
    fn drop(&mut self) {
        let _ = my_try("", &format!("DROP DATABASE IF EXISTS `{}`;", self.0));
    }
}

/// A directory holding only the given tools: symlinks to real ones and fake scripts.
pub fn tool_dir(links: &[&str], scripts: &[(&str, &str)]) -> (tempfile::TempDir, Tools) {
    let dir = strongroom_testkit::tool_dir(links, scripts);
    let tools = Tools {
        search_path: Some(dir.path().as_os_str().to_os_string()),
        temp_dir: None,
    };
    (dir, tools)
}

/// Run a complete dump: read the stream to its end, then finish the manifest.
pub fn dump_all(source: &DatabaseSource) -> Result<(Vec<u8>, DumpOutcome), String> {
    let (mut reader, pending) = source.dump().map_err(|e| e.to_string())?;
    let mut bytes = Vec::new();
    let read = reader.read_to_end(&mut bytes);
    drop(reader);
    let finished = pending.finish();
    match (read, finished) {
        (Ok(_), Ok(outcome)) => Ok((bytes, outcome)),
        (Err(e), Ok(_)) => panic!("read failed ({e}) but finish succeeded"),
        (Err(e), Err(f)) => Err(format!("{e} / {f}")),
        (Ok(_), Err(f)) => Err(f.to_string()),
    }
}

pub fn err_text(e: &SourceError) -> String {
    e.to_string()
}

pub fn exists(p: &Path) -> bool {
    p.symlink_metadata().is_ok()
}
