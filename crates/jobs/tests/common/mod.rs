//! Helpers shared by the jobs integration tests: unique names, admin access to the local test
//! servers (PostgreSQL 127.0.0.1:5432 user postgres, MariaDB 127.0.0.1:3306 root without a
//! password), repositories in temporary folders, fake tool folders, comparable dumps.
//!
//! A test that needs a server fails (never skips) when it is unreachable; the message says
//! to run `scripts/services`. These helpers only drop databases whose names they generated.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use strongroom_jobs::database;
use strongroom_repo::crypto::KdfParams;
use strongroom_repo::lock::{self, LockGuard};
use strongroom_repo::restorer;
use strongroom_repo::{Id, InitOptions, Repository, Snapshot};
use strongroom_sources::{DatabaseSource, Tools};
use strongroom_storage::local::LocalStorage;

pub const PG_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
pub const MY_ADMIN_URL: &str = "mysql://root@127.0.0.1:3306/mysql";
pub const PASSWORD: &[u8] = b"jobs test password";

/// A name unique to this process and call, safe as a database or user name.
pub fn unique(tag: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::SeqCst);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("srj_{tag}_{}_{n}_{}", std::process::id(), nanos % 100_000)
}

/// Runs a command with `input` on stdin; its stdout, or its stderr as the error.
pub fn run(cmd: &mut Command, input: &str) -> Result<String, String> {
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

// ------------------------------------------------------------------------------ PostgreSQL

/// Runs SQL as the PostgreSQL superuser in `db`; panics on failure.
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

/// One number from a query.
pub fn pg_num(db: &str, sql: &str) -> i64 {
    let out = pg(db, sql);
    out.trim()
        .parse()
        .unwrap_or_else(|_| panic!("not a number from {sql}: {out:?}"))
}

/// Fails (does not skip) when PostgreSQL is not reachable.
pub fn require_postgres() {
    if let Err(e) = pg_try("postgres", "SELECT 1;") {
        panic!(
            "PostgreSQL is not reachable on 127.0.0.1:5432 as user postgres ({}); \
             run scripts/services to start it",
            e.trim()
        );
    }
}

pub fn pg_exists(name: &str) -> bool {
    pg(
        "postgres",
        &format!("SELECT count(*) FROM pg_database WHERE datname = '{name}';"),
    )
    .trim()
        == "1"
}

/// Databases whose names start with `prefix`.
pub fn pg_databases_like(prefix: &str) -> Vec<String> {
    pg(
        "postgres",
        &format!(
            "SELECT datname FROM pg_database WHERE starts_with(datname, '{prefix}') ORDER BY 1;"
        ),
    )
    .lines()
    .map(str::to_owned)
    .filter(|l| !l.is_empty())
    .collect()
}

/// A PostgreSQL database dropped (with any `<name>_before_restore_*` copies of it) when the
/// guard goes out of scope.
pub struct PgDb(pub String);

impl PgDb {
    pub fn create(tag: &str) -> Self {
        let name = unique(tag);
        pg("postgres", &format!("CREATE DATABASE \"{name}\";"));
        PgDb(name)
    }
    /// A name for a database that does not exist yet (dropped if something creates it).
    pub fn named(tag: &str) -> Self {
        PgDb(unique(tag))
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
        let mut names = vec![self.0.clone()];
        if let Ok(out) = pg_try(
            "postgres",
            &format!(
                "SELECT datname FROM pg_database WHERE starts_with(datname, '{}_before_restore_');",
                self.0
            ),
        ) {
            names.extend(out.lines().filter(|l| !l.is_empty()).map(str::to_owned));
        }
        for n in names {
            let _ = pg_try(
                "postgres",
                &format!("DROP DATABASE IF EXISTS \"{n}\" WITH (FORCE);"),
            );
        }
    }
}

/// A plain schema-and-data dump (`pg_dump --no-owner --no-privileges -Fp`), with the
/// per-run `\restrict`/`\unrestrict` key lines removed and the database name masked.
pub fn pg_plain_dump(db: &str) -> String {
    let out = Command::new("pg_dump")
        .args(["--no-owner", "--no-privileges", "-Fp"])
        .args(["-h", "127.0.0.1", "-p", "5432", "-U", "postgres", "-d", db])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pg_dump {db}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("\\restrict ") && !l.starts_with("\\unrestrict "))
        .map(|l| l.replace(db, "<DB>"))
        .collect::<Vec<_>>()
        .join("\n")
}

// -------------------------------------------------------------------------- MySQL/MariaDB

/// Runs SQL as MariaDB root in `db` (no database when empty); panics on failure.
pub fn my(db: &str, sql: &str) -> String {
    my_try(db, sql).unwrap_or_else(|e| panic!("mariadb in {db} failed: {e}\nSQL: {sql}"))
}

pub fn my_try(db: &str, sql: &str) -> Result<String, String> {
    let mut cmd = Command::new("mariadb");
    cmd.args(["-h", "127.0.0.1", "-P", "3306", "-uroot"])
        .args(["--batch", "--raw", "--skip-column-names"])
        .arg("--default-character-set=utf8mb4");
    if !db.is_empty() {
        cmd.arg(format!("--database={db}"));
    }
    run(&mut cmd, sql)
}

/// Fails (does not skip) when MariaDB is not reachable.
pub fn require_mysql() {
    if let Err(e) = my_try("", "SELECT 1;") {
        panic!(
            "MariaDB/MySQL is not reachable on 127.0.0.1:3306 as root ({}); \
             run scripts/services to start it",
            e.trim()
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
    pub fn named(tag: &str) -> Self {
        MyDb(unique(tag))
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

/// `mariadb-dump --skip-dump-date` of a database (routines, triggers, events, hex blobs),
/// with its name masked.
pub fn my_plain_dump(db: &str) -> String {
    let out = Command::new("mariadb-dump")
        .args(["-h", "127.0.0.1", "-P", "3306", "-uroot"])
        .args([
            "--skip-dump-date",
            "--routines",
            "--triggers",
            "--events",
            "--hex-blob",
            "--single-transaction",
            "--default-character-set=utf8mb4",
        ])
        .arg(db)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "mariadb-dump {db}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().replace(db, "<DB>")
}

// --------------------------------------------------------------------------------- SQLite

/// Runs `sqlite3 path` with `sql` on stdin.
pub fn sqlite(path: &Path, sql: &str) -> String {
    run(Command::new("sqlite3").arg("-bail").arg(path), sql)
        .unwrap_or_else(|e| panic!("sqlite3 {} failed: {e}\nSQL: {sql}", path.display()))
}

pub fn sqlite_source(path: &Path) -> DatabaseSource {
    DatabaseSource::parse(&format!("sqlite://{}", path.display())).unwrap()
}

// ---------------------------------------------------------------------------- Repository

/// A repository in a temporary folder (fast key derivation).
pub struct Repo {
    pub dir: tempfile::TempDir,
    pub path: PathBuf,
    pub repo: Arc<Repository>,
}

impl Repo {
    pub async fn new() -> Repo {
        let dir = tempfile::Builder::new()
            .prefix("strongroom-jobs-")
            .tempdir()
            .unwrap();
        let path = dir.path().join("repo");
        let repo = Repo::init_at(&path).await;
        Repo { dir, path, repo }
    }

    pub async fn init_at(path: &Path) -> Arc<Repository> {
        let storage = Arc::new(LocalStorage::new(path.to_path_buf()));
        let repo = Repository::init(
            storage,
            PASSWORD,
            InitOptions {
                kdf: KdfParams::MINIMUM,
                ..Default::default()
            },
        )
        .await
        .unwrap();
        Arc::new(repo)
    }

    pub async fn lock(&self) -> LockGuard {
        lock::lock(&self.repo, false, "test").await.unwrap()
    }

    /// Backs up `source` as `name` under a lock of its own.
    pub async fn backup(
        &self,
        name: &str,
        source: &DatabaseSource,
    ) -> strongroom_jobs::Result<(Id, Snapshot)> {
        let guard = self.lock().await;
        let res = database::backup(&self.repo, &guard, name, source, Default::default()).await;
        guard.release().await.unwrap();
        res
    }

    pub async fn snapshot_ids(&self) -> Vec<Id> {
        let (snaps, warnings) = self.repo.list_snapshots().await.unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        snaps.into_iter().map(|(id, _)| id).collect()
    }
}

/// The bytes a stream snapshot holds.
pub async fn stream_bytes(repo: &Repository, snap: &Snapshot) -> Vec<u8> {
    let mut out = Vec::new();
    restorer::restore_stream(repo, snap, &mut out)
        .await
        .unwrap();
    out
}

// --------------------------------------------------------------------------------- Tools

/// A folder holding only the given tools: symlinks to the real ones and fake shell scripts
/// (in whose bodies `@REAL_<tool>@` is replaced by the real tool's path).
pub fn tool_dir(links: &[&str], scripts: &[(&str, &str)]) -> (tempfile::TempDir, Tools) {
    let dir = strongroom_testkit::tool_dir(links, scripts);
    let tools = Tools {
        search_path: Some(dir.path().as_os_str().to_os_string()),
        temp_dir: None,
    };
    (dir, tools)
}
