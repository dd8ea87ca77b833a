//! The failure matrix (issue 3, "Done means" 4), one test each: wrong password, unreachable
//! host, database missing, the server killed mid-dump, the dump tool killed or failing
//! mid-stream, the dump tool missing, a client older than the server, a full disk, an empty
//! dump. Each asserts that the backup fails with a message that says what to do, that no
//! snapshot was committed, and that an earlier good backup is untouched: its stream still
//! reads byte-identical and it still restores into a new database with the same rows.
//!
//! Needs PostgreSQL on 127.0.0.1:5432 and MariaDB on 127.0.0.1:3306 (`scripts/services`);
//! fails, never skips, when they are unreachable. Nothing here harms the shared servers:
//! "killed mid-dump" terminates only the dump's own backend, or kills a wrapper around
//! `pg_dump`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use common::*;
use strongroom_jobs::database;
use strongroom_repo::crypto::KdfParams;
use strongroom_repo::{Id, InitOptions, Repository, Snapshot};
use strongroom_sources::DatabaseSource;
use strongroom_storage::local::LocalStorage;
use strongroom_storage::{Kind, ObjectInfo, Storage, StorageError};

/// A repository with one good backup of a small PostgreSQL database, to check that failures
/// leave it alone.
struct Fixture {
    repo: Arc<Repository>,
    dir: Option<tempfile::TempDir>,
    src: PgDb,
    good: (Id, Snapshot),
    good_bytes: Vec<u8>,
    snapshots: Vec<Id>,
}

const FIXTURE_SQL: &str = "CREATE TABLE notes (id serial PRIMARY KEY, body text NOT NULL, \
     at timestamptz DEFAULT '2024-01-01 00:00+00'); \
     INSERT INTO notes (body) SELECT 'note ' || g || ' ' || repeat(md5(g::text), 3) \
     FROM generate_series(1, 10000) g;";

impl Fixture {
    async fn new() -> Fixture {
        let dir = tempfile::Builder::new()
            .prefix("strongroom-jobs-")
            .tempdir()
            .unwrap();
        let repo = Repo::init_at(&dir.path().join("repo")).await;
        Fixture::with_repo(repo, Some(dir)).await
    }

    async fn with_repo(repo: Arc<Repository>, dir: Option<tempfile::TempDir>) -> Fixture {
        require_postgres();
        let src = PgDb::create("fail_good");
        pg(&src.0, FIXTURE_SQL);
        let good = backup(&repo, "clinic", &src.source()).await.unwrap();
        let good_bytes = stream_bytes(&repo, &good.1).await;
        assert!(
            good_bytes.len() > 800_000,
            "the dump should outgrow the 500 kB cut"
        );
        let snapshots = snapshot_ids(&repo).await;
        assert_eq!(snapshots, vec![good.0]);
        Fixture {
            repo,
            dir,
            src,
            good,
            good_bytes,
            snapshots,
        }
    }

    async fn backup(&self, source: &DatabaseSource) -> strongroom_jobs::Result<(Id, Snapshot)> {
        backup(&self.repo, "clinic", source).await
    }

    /// No snapshot was added, the good one reads byte-identical and restores.
    async fn assert_untouched(&self) {
        assert_eq!(
            snapshot_ids(&self.repo).await,
            self.snapshots,
            "a failed backup committed a snapshot"
        );
        let (id, snap) = &self.good;
        assert!(
            stream_bytes(&self.repo, snap).await == self.good_bytes,
            "the earlier backup's bytes changed"
        );
        let dst = PgDb::named("fail_check");
        database::restore(&self.repo, id, snap, &dst.source(), false)
            .await
            .unwrap();
        let q = "SELECT count(*) || ' ' || md5(string_agg(body, ',' ORDER BY id)) FROM notes;";
        assert_eq!(
            pg(&dst.0, q),
            pg(&self.src.0, q),
            "the earlier backup restores"
        );
    }
}

async fn backup(
    repo: &Arc<Repository>,
    name: &str,
    source: &DatabaseSource,
) -> strongroom_jobs::Result<(Id, Snapshot)> {
    let guard = strongroom_repo::lock::lock(repo, false, "test")
        .await
        .unwrap();
    let res = database::backup(repo, &guard, name, source, Default::default()).await;
    guard.release().await.unwrap();
    res
}

async fn snapshot_ids(repo: &Repository) -> Vec<Id> {
    let (snaps, warnings) = repo.list_snapshots().await.unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    snaps.into_iter().map(|(id, _)| id).collect()
}

/// The error of a backup that must fail, as text, with every needle in it.
fn failed(res: strongroom_jobs::Result<(Id, Snapshot)>, needles: &[&str]) -> String {
    let msg = match res {
        Ok((id, _)) => panic!("the backup succeeded (snapshot {})", id.short()),
        Err(e) => e.to_string(),
    };
    eprintln!("the backup failed as it should: {msg}");
    for n in needles {
        assert!(msg.contains(n), "the message lacks {n:?}: {msg}");
    }
    msg
}

fn pg_url(user: &str, port: u16, db: &str) -> DatabaseSource {
    DatabaseSource::parse(&format!("postgres://{user}@127.0.0.1:{port}/{db}")).unwrap()
}

/// Wrong password, on MariaDB: a temporary user with a password, connected to with another.
/// (PostgreSQL trusts every local connection on the test server, so a wrong password cannot
/// fail there; see `unknown_postgres_role`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password() {
    require_mysql();
    let db = MyDb::create("fail_pw");
    my(
        &db.0,
        "CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(50)); \
         INSERT INTO t SELECT seq, CONCAT('row ', seq) FROM seq_1_to_500;",
    );
    let user = unique("u");
    struct DropUser(String);
    impl Drop for DropUser {
        fn drop(&mut self) {
            let _ = my_try("", &format!("DROP USER IF EXISTS '{}'@'%';", self.0));
        }
    }
    my(
        "",
        &format!(
            "CREATE USER '{user}'@'%' IDENTIFIED BY 'right-Pa55'; \
             GRANT ALL PRIVILEGES ON `{}`.* TO '{user}'@'%'; \
             GRANT PROCESS, RELOAD ON *.* TO '{user}'@'%';",
            db.0
        ),
    );
    let _user = DropUser(user.clone());
    let url = |pw: &str| {
        DatabaseSource::parse(&format!("mysql://{user}:{pw}@127.0.0.1:3306/{}", db.0)).unwrap()
    };
    let tmp = tempfile::tempdir().unwrap();
    let repo = Repo::init_at(&tmp.path().join("repo")).await;
    let good = backup(&repo, "shop", &url("right-Pa55")).await.unwrap();
    let good_bytes = stream_bytes(&repo, &good.1).await;

    let msg = failed(
        backup(&repo, "shop", &url("wrong-Pa55")).await,
        &[
            "Access denied for user",
            "hint: check the user name and password",
        ],
    );
    assert!(!msg.contains("wrong-Pa55"), "the password leaked: {msg}");

    assert_eq!(snapshot_ids(&repo).await, vec![good.0]);
    assert!(stream_bytes(&repo, &good.1).await == good_bytes);
    let dst = MyDb::named("fail_pw_dst");
    database::restore(&repo, &good.0, &good.1, &dst.source(), false)
        .await
        .unwrap();
    let q = "SELECT COUNT(*), MD5(GROUP_CONCAT(v ORDER BY id)) FROM t;";
    assert_eq!(my(&dst.0, q), my(&db.0, q));
}

/// The nearest thing to a wrong password that a trust-only PostgreSQL still refuses: a role
/// that does not exist.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_postgres_role() {
    let f = Fixture::new().await;
    let ghost = unique("ghost");
    let src = DatabaseSource::parse(&format!(
        "postgres://{ghost}:secret-Pa55@127.0.0.1:5432/{}",
        f.src.0
    ))
    .unwrap();
    let msg = failed(
        f.backup(&src).await,
        &[
            &format!("role \"{ghost}\" does not exist"),
            "hint: check the user name",
        ],
    );
    assert!(!msg.contains("secret-Pa55"), "the password leaked: {msg}");
    f.assert_untouched().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_host() {
    let f = Fixture::new().await;
    let started = Instant::now();
    failed(
        f.backup(&pg_url("postgres", 1, &f.src.0)).await,
        &[
            "Connection refused",
            "hint: check that the database server is running",
        ],
    );
    assert!(started.elapsed() < Duration::from_secs(15), "fails quickly");
    f.assert_untouched().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_missing() {
    let f = Fixture::new().await;
    let missing = unique("missing");
    failed(
        f.backup(&pg_url("postgres", 5432, &missing)).await,
        &[
            &format!("database \"{missing}\" does not exist"),
            "hint: check the database name",
        ],
    );
    // A SQLite file that does not exist is not created by a backup.
    let path = f.dir.as_ref().unwrap().path().join("nowhere.sqlite3");
    failed(f.backup(&sqlite_source(&path)).await, &["does not exist"]);
    assert!(!path.exists(), "a backup created the SQLite file");
    f.assert_untouched().await;
}

/// The server ends the dump's connection while `pg_dump` streams a large table (as when the
/// server is killed or restarted): `pg_terminate_backend` on the dump's own backend only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_ends_the_connection_mid_dump() {
    let f = Fixture::new().await;
    let big = PgDb::create("fail_big");
    pg(
        &big.0,
        "CREATE TABLE big (id int PRIMARY KEY, body text); ALTER TABLE big ALTER body SET STORAGE EXTERNAL; \
         INSERT INTO big SELECT g, repeat(md5(g::text), 30) FROM generate_series(1, 60000) g;",
    );
    // A server-side watcher terminates the backend of pg_dump as soon as it runs its COPY.
    let db = big.0.clone();
    let watcher = std::thread::spawn(move || {
        pg(
            "postgres",
            &format!(
                "SET statement_timeout = '20s';
                 DO $$
                 DECLARE n int := 0;
                 BEGIN
                   LOOP
                     SELECT count(pg_terminate_backend(pid)) INTO n FROM pg_stat_activity
                       WHERE datname = '{db}' AND application_name = 'pg_dump'
                         AND query LIKE 'COPY %';
                     EXIT WHEN n > 0;
                     PERFORM pg_stat_clear_snapshot();
                     PERFORM pg_sleep(0.002);
                   END LOOP;
                 END $$;"
            ),
        )
    });
    let res = f.backup(&big.source()).await;
    watcher.join().unwrap();
    let msg = failed(res, &["hint: the server went away during the operation"]);
    // libpq reports the termination itself, or, over TLS, when the server's notice races the
    // TLS teardown, only the socket it closed; either way the dump's table is named.
    assert!(
        msg.contains("terminating connection due to administrator command")
            || msg.contains("SSL SYSCALL error: EOF detected"),
        "the message does not report the ended connection: {msg}"
    );
    assert!(
        msg.contains("table \"big\""),
        "the message does not name the table: {msg}"
    );
    f.assert_untouched().await;
}

/// The dump tool is killed (SIGKILL) after it wrote part of a real dump.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dump_tool_killed_mid_stream() {
    let f = Fixture::new().await;
    let (_dir, tools) = tool_dir(
        &["psql", "pg_dumpall"],
        &[(
            "pg_dump",
            "case \"$1\" in --version) exec @REAL_pg_dump@ --version;; esac\n\
             @REAL_pg_dump@ \"$@\" | @REAL_head@ -c 500000\n\
             kill -9 $$",
        )],
    );
    failed(
        f.backup(&f.src.source().with_tools(tools)).await,
        &["was killed by signal 9", "hint:"],
    );
    f.assert_untouched().await;
}

/// The dump tool fails (exit 1) after it wrote part of a real dump.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dump_tool_fails_mid_stream() {
    let f = Fixture::new().await;
    let (_dir, tools) = tool_dir(
        &["psql", "pg_dumpall"],
        &[(
            "pg_dump",
            "case \"$1\" in --version) exec @REAL_pg_dump@ --version;; esac\n\
             @REAL_pg_dump@ \"$@\" | @REAL_head@ -c 500000\n\
             echo 'pg_dump: error: could not write to output file: Broken pipe' >&2\n\
             exit 1",
        )],
    );
    failed(
        f.backup(&f.src.source().with_tools(tools)).await,
        &["exited with status 1", "could not write to output file"],
    );
    f.assert_untouched().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dump_tool_missing() {
    let f = Fixture::new().await;
    let (_dir, tools) = tool_dir(&["psql", "pg_dumpall"], &[]);
    failed(
        f.backup(&f.src.source().with_tools(tools)).await,
        &["`pg_dump` was not found", "install it", "postgresql-client"],
    );
    f.assert_untouched().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_older_than_server() {
    let f = Fixture::new().await;
    let (_dir, tools) = tool_dir(
        &["psql", "pg_dumpall"],
        &[(
            "pg_dump",
            "case \"$1\" in --version) echo 'pg_dump (PostgreSQL) 14.11'; exit 0;; esac\n\
             exec @REAL_pg_dump@ \"$@\"",
        )],
    );
    failed(
        f.backup(&f.src.source().with_tools(tools)).await,
        &[
            "pg_dump 14.11 is older than the server (PostgreSQL 15",
            "install the PostgreSQL 15 client tools",
        ],
    );
    f.assert_untouched().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_dump() {
    let f = Fixture::new().await;
    let (_dir, tools) = tool_dir(
        &["psql", "pg_dumpall"],
        &[(
            "pg_dump",
            "case \"$1\" in --version) exec @REAL_pg_dump@ --version;; esac\nexit 0",
        )],
    );
    failed(
        f.backup(&f.src.source().with_tools(tools)).await,
        &["produced no output", "hint:"],
    );
    f.assert_untouched().await;
}

// ------------------------------------------------------------------------------ Full disk

/// A tmpfs mount, unmounted when dropped.
struct Mount(PathBuf);

impl Mount {
    fn tmpfs(dir: &Path, size: &str) -> Result<Mount, String> {
        std::fs::create_dir_all(dir).unwrap();
        let o = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .map_err(|e| e.to_string())?;
        if o.status.success() {
            Ok(Mount(dir.to_path_buf()))
        } else {
            Err(String::from_utf8_lossy(&o.stderr).trim().to_owned())
        }
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Where `mount -t tmpfs` is not permitted: a local store that, once `full` is set, fails
/// every write but a lock's with ENOSPC, as a full file system does.
#[derive(Debug)]
struct FullDisk {
    inner: LocalStorage,
    full: AtomicBool,
}

fn enospc(kind: Kind, name: &str) -> StorageError {
    StorageError::Io {
        context: format!("writing {}/{name}", kind.dir()),
        source: std::io::Error::from_raw_os_error(28),
    }
}

#[async_trait]
impl Storage for FullDisk {
    fn location(&self) -> String {
        self.inner.location()
    }
    async fn list(&self, kind: Kind) -> strongroom_storage::Result<Vec<ObjectInfo>> {
        self.inner.list(kind).await
    }
    async fn read(&self, kind: Kind, name: &str) -> strongroom_storage::Result<Bytes> {
        self.inner.read(kind, name).await
    }
    async fn read_range(
        &self,
        kind: Kind,
        name: &str,
        offset: u64,
        length: u64,
    ) -> strongroom_storage::Result<Bytes> {
        self.inner.read_range(kind, name, offset, length).await
    }
    async fn write(&self, kind: Kind, name: &str, data: Bytes) -> strongroom_storage::Result<()> {
        if self.full.load(Ordering::SeqCst) && kind != Kind::Lock {
            return Err(enospc(kind, name));
        }
        self.inner.write(kind, name, data).await
    }
    async fn delete(&self, kind: Kind, name: &str) -> strongroom_storage::Result<()> {
        self.inner.delete(kind, name).await
    }
    async fn create(&self) -> strongroom_storage::Result<()> {
        self.inner.create().await
    }
}

/// A full disk under the repository: a tmpfs of a few MiB holding the repository (or, where
/// mounting is not permitted, a store failing writes with ENOSPC), and a dump of ~6 MiB of
/// incompressible data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_disk() {
    require_postgres();
    let tmp = tempfile::tempdir().unwrap();
    let small = tmp.path().join("small-disk");
    let (mount, f, fake) = match Mount::tmpfs(&small, "4m") {
        Ok(m) => {
            let repo = Repo::init_at(&small.join("repo")).await;
            (Some(m), Fixture::with_repo(repo, None).await, None)
        }
        Err(why) => {
            eprintln!(
                "full_disk: cannot mount a tmpfs ({why}); simulating ENOSPC in the store instead"
            );
            let store = Arc::new(FullDisk {
                inner: LocalStorage::new(tmp.path().join("repo")),
                full: AtomicBool::new(false),
            });
            let repo = Repository::init(
                Arc::clone(&store) as Arc<dyn Storage>,
                PASSWORD,
                InitOptions {
                    kdf: KdfParams::MINIMUM,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
            let f = Fixture::with_repo(Arc::new(repo), None).await;
            store.full.store(true, Ordering::SeqCst);
            (None, f, Some(store))
        }
    };
    let big = PgDb::create("fail_full");
    pg(
        &big.0,
        "CREATE TABLE r (id int PRIMARY KEY, b bytea); \
         INSERT INTO r SELECT g, decode(string_agg(md5(random()::text || g || '.' || h), ''), 'hex') \
         FROM generate_series(1, 6000) g, generate_series(1, 64) h GROUP BY g;",
    );
    failed(
        f.backup(&big.source()).await,
        &[
            "No space left on device",
            "hint: the repository's disk is full; free space there",
        ],
    );
    if let Some(store) = &fake {
        // Reading goes on while the store is full.
        assert!(store.full.load(Ordering::SeqCst));
    }
    f.assert_untouched().await;
    drop(f);
    drop(mount);
}
