//! Database commands of the real binary (issue 3): `backup --type full --database ...
//! --media DIR --verify --test-restore` makes one recovery point of two proven parts;
//! `restore ID --to-database URL` restores into a new database and `--replace` first keeps a
//! safety snapshot and keeps the old database under a new name; `import --type database` of
//! a `pg_dump -Fc` file then `verify ID --test-restore --scratch-url` proves it; `export ID
//! --out f.dump` is byte-identical to `restore ID --stdout` and `pg_restore -l` reads it.
//! And the failure matrix of `backup --type database`: wrong password, unknown role,
//! unreachable host, missing database, a dump tool killed mid-stream, a missing dump tool,
//! an old client, an empty dump, a full disk: exit code 1, a message on stderr that says
//! what to do, a single JSON document with `--json`, no new snapshot, and the earlier backup
//! still restores byte-identical.
//!
//! Needs PostgreSQL on 127.0.0.1:5432 and MariaDB on 127.0.0.1:3306 (`scripts/services`);
//! fails, never skips, when they are unreachable. Every database created is uniquely named
//! and dropped.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

use std::ffi::OsString;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_strongroom");
const PASSWORD: &str = "databases test password";
/// No command here should take anywhere near this long; a hang fails the test.
const TIMEOUT: Duration = Duration::from_secs(120);
const SCRATCH: &str = "postgres://postgres@127.0.0.1:5432/postgres";

// ---------------------------------------------------------------------------------------
// Database helpers.

fn unique(tag: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::SeqCst);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("srd_{tag}_{}_{n}_{}", std::process::id(), nanos % 100_000)
}

fn run_input(cmd: &mut Command, input: &str) -> Result<String, String> {
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

fn pg_try(db: &str, sql: &str) -> Result<String, String> {
    run_input(
        Command::new("psql")
            .args(["-X", "-q", "-A", "-t", "-w", "-v", "ON_ERROR_STOP=1"])
            .args(["-h", "127.0.0.1", "-p", "5432", "-U", "postgres", "-d", db]),
        sql,
    )
}

fn pg(db: &str, sql: &str) -> String {
    pg_try(db, sql).unwrap_or_else(|e| panic!("psql in {db} failed: {e}\nSQL: {sql}"))
}

fn require_postgres() {
    if let Err(e) = pg_try("postgres", "SELECT 1;") {
        panic!(
            "PostgreSQL is not reachable on 127.0.0.1:5432 as user postgres ({}); \
             run scripts/services to start it",
            e.trim()
        );
    }
}

fn pg_databases_like(prefix: &str) -> Vec<String> {
    pg(
        "postgres",
        &format!(
            "SELECT datname FROM pg_database WHERE starts_with(datname, '{prefix}') ORDER BY 1;"
        ),
    )
    .lines()
    .filter(|l| !l.is_empty())
    .map(str::to_owned)
    .collect()
}

/// A PostgreSQL database, dropped with its `<name>_before_restore_*` copies.
struct PgDb(String);

impl PgDb {
    fn create(tag: &str, sql: &str) -> PgDb {
        let db = PgDb(unique(tag));
        pg("postgres", &format!("CREATE DATABASE \"{}\";", db.0));
        pg(&db.0, sql);
        db
    }
    fn named(tag: &str) -> PgDb {
        PgDb(unique(tag))
    }
    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:5432/{}", self.0)
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

fn my_try(db: &str, sql: &str) -> Result<String, String> {
    let mut cmd = Command::new("mariadb");
    cmd.args(["-h", "127.0.0.1", "-P", "3306", "-uroot"]).args([
        "--batch",
        "--raw",
        "--skip-column-names",
    ]);
    if !db.is_empty() {
        cmd.arg(format!("--database={db}"));
    }
    run_input(&mut cmd, sql)
}

fn my(db: &str, sql: &str) -> String {
    my_try(db, sql).unwrap_or_else(|e| panic!("mariadb in {db} failed: {e}\nSQL: {sql}"))
}

fn require_mysql() {
    if let Err(e) = my_try("", "SELECT 1;") {
        panic!(
            "MariaDB/MySQL is not reachable on 127.0.0.1:3306 as root ({}); \
             run scripts/services to start it",
            e.trim()
        );
    }
}

const DATA: &str = "CREATE TABLE notes (id serial PRIMARY KEY, body text NOT NULL); \
     CREATE TABLE marks (id serial PRIMARY KEY, note_id int REFERENCES notes(id), what text); \
     INSERT INTO notes (body) SELECT 'note ' || g || ' ' || repeat(md5(g::text), 3) \
     FROM generate_series(1, 5000) g; \
     INSERT INTO marks (note_id, what) SELECT id, 'm' || id FROM notes WHERE id % 4 = 0;";

use strongroom_testkit::tool_dir;

// ---------------------------------------------------------------------------------------
// Running the binary.

struct Out {
    code: Option<i32>,
    stdout: Vec<u8>,
    stderr: String,
}

impl Out {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
    /// Stdout as exactly one JSON document.
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not one JSON document ({e}):\n{}\nstderr: {}",
                self.text(),
                self.stderr
            )
        })
    }
}

fn finish(mut child: Child, what: &str) -> Out {
    let mut so = child.stdout.take();
    let mut se = child.stderr.take();
    let t_out = std::thread::spawn(move || {
        let mut v = Vec::new();
        if let Some(s) = so.as_mut() {
            let _ = s.read_to_end(&mut v);
        }
        v
    });
    let t_err = std::thread::spawn(move || {
        let mut v = Vec::new();
        if let Some(s) = se.as_mut() {
            let _ = s.read_to_end(&mut v);
        }
        v
    });
    let start = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if start.elapsed() > TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: still running after {TIMEOUT:?} (hung?)");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Out {
        code: status.code(),
        stdout: t_out.join().unwrap(),
        stderr: String::from_utf8_lossy(&t_err.join().unwrap()).into_owned(),
    }
}

/// A repository in a temporary folder, and the environment to drive it.
struct Env {
    tmp: tempfile::TempDir,
    repo: PathBuf,
    /// `PATH` for the binary (and so for the database tools it runs).
    path: Option<OsString>,
}

impl Env {
    fn new() -> Env {
        let tmp = tempfile::Builder::new()
            .prefix("strongroom-db-cli-")
            .tempdir()
            .unwrap();
        Env::at(tmp, None)
    }

    /// A repository at `repo` (default: inside the temporary folder).
    fn at(tmp: tempfile::TempDir, repo: Option<PathBuf>) -> Env {
        let repo = repo.unwrap_or_else(|| tmp.path().join("repo"));
        let e = Env {
            tmp,
            repo,
            path: None,
        };
        e.ok(&["init", "--kdf-memory-mib", "19", "--kdf-passes", "2"]);
        e
    }

    fn file(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    fn run(&self, args: &[&str]) -> Out {
        let mut c = Command::new(BIN);
        c.arg("--repo")
            .arg(&self.repo)
            .args(args)
            .env("STRONGROOM_PASSWORD", PASSWORD)
            .env("STRONGROOM_CACHE_DIR", self.tmp.path().join("cache"))
            .env_remove("STRONGROOM_REPO")
            .env_remove("STRONGROOM_PASSWORD_FILE")
            .env_remove("DATABASE_URL")
            .env_remove("MEDIA_ROOT")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(p) = &self.path {
            c.env("PATH", p);
        }
        finish(
            c.spawn().unwrap(),
            &format!("strongroom {}", args.join(" ")),
        )
    }

    fn ok(&self, args: &[&str]) -> Out {
        let o = self.run(args);
        assert_eq!(
            o.code,
            Some(0),
            "strongroom {} failed:\nstdout: {}\nstderr: {}",
            args.join(" "),
            o.text(),
            o.stderr
        );
        assert!(!o.stderr.contains("panicked"), "{}", o.stderr);
        o
    }

    fn snapshots(&self) -> Vec<serde_json::Value> {
        self.ok(&["snapshots", "--json"])
            .json()
            .as_array()
            .unwrap()
            .clone()
    }

    fn snapshot_ids(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .snapshots()
            .iter()
            .map(|s| s["id"].as_str().unwrap().to_owned())
            .collect();
        v.sort();
        v
    }

    /// `backup --type database` of one database; the part's snapshot id.
    fn backup_database(&self, name: &str, url: &str) -> String {
        let spec = format!("{name}={url}");
        let v = self
            .ok(&[
                "backup",
                "--json",
                "--type",
                "database",
                "--database",
                &spec,
            ])
            .json();
        assert_eq!(v["ok"], true, "{v}");
        v["recovery_point"]["parts"][0]["snapshot"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    fn restore_stdout(&self, id: &str) -> Vec<u8> {
        self.ok(&["restore", id, "--stdout"]).stdout
    }
}

// ---------------------------------------------------------------------------------------
// Recovery points, restores, imports, exports.

#[test]
fn full_backup_with_verify_and_test_restore() {
    require_postgres();
    let db = PgDb::create("full", DATA);
    let e = Env::new();
    let media = e.file("media");
    std::fs::create_dir_all(media.join("uploads/2024")).unwrap();
    std::fs::write(media.join("uploads/2024/scan.pdf"), vec![7u8; 300_000]).unwrap();
    std::fs::write(media.join("logo.png"), b"\x89PNG not really").unwrap();

    let spec = format!("clinic={}", db.url());
    let media_spec = format!("files={}", media.display());
    let args = [
        "backup",
        "--json",
        "--type",
        "full",
        "--database",
        &spec,
        "--media",
        &media_spec,
        "--verify",
        "--test-restore",
    ];
    let v = e.ok(&args).json();
    assert_eq!(v["ok"], true, "{v}");
    let rp = &v["recovery_point"];
    let parts = rp["parts"].as_array().unwrap();
    assert_eq!(parts.len(), 2, "{v}");
    let rp_id = rp["id"].as_str().unwrap();
    let mut ids = Vec::new();
    for p in parts {
        assert!(p["error"].is_null(), "{p}");
        assert_eq!(p["verified"], true, "{p}");
        assert!(!p["started"].as_str().unwrap().is_empty(), "{p}");
        assert!(p["finished"].as_str().unwrap() >= p["started"].as_str().unwrap());
        ids.push(p["snapshot"].as_str().expect("a snapshot").to_owned());
    }
    let db_part = parts.iter().find(|p| p["kind"] == "database").unwrap();
    let media_part = parts.iter().find(|p| p["kind"] == "media").unwrap();
    assert_eq!(db_part["name"], "clinic");
    assert_eq!(media_part["name"], "files");
    let tr = &db_part["test_restore"];
    assert_eq!(tr["ok"], true, "{db_part}");
    assert_eq!(tr["tables_checked"], 2, "{db_part}");
    assert!(media_part["test_restore"].is_null());
    assert!(
        pg_databases_like("strongroom_drill_")
            .iter()
            .all(|d| !d.contains(&db_part["snapshot"].as_str().unwrap()[..8])),
        "the scratch database was dropped"
    );

    // Both parts are snapshots of the one recovery point.
    let snaps = e.snapshots();
    assert_eq!(snaps.len(), 2);
    for s in &snaps {
        assert!(ids.contains(&s["id"].as_str().unwrap().to_owned()));
        let tags: Vec<&str> = s["tags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap())
            .collect();
        assert!(tags.contains(&format!("rp:{rp_id}").as_str()), "{s}");
    }
}

#[test]
fn restore_to_a_new_database_then_replace_with_a_safety_backup() {
    require_postgres();
    let src = PgDb::create("rs_src", DATA);
    let e = Env::new();
    let id = e.backup_database("clinic", &src.url());

    // Into a new database.
    let dst = PgDb::named("rs_dst");
    let v = e
        .ok(&["restore", &id, "--json", "--to-database", &dst.url()])
        .json();
    assert_eq!(v["report"]["created"], true, "{v}");
    let q = "SELECT count(*) || ' ' || md5(string_agg(body, ',' ORDER BY id)) FROM notes;";
    assert_eq!(pg(&dst.0, q), pg(&src.0, q));

    // An existing database is not replaced without --replace.
    pg(
        &dst.0,
        "INSERT INTO notes (body) VALUES ('written after the restore');",
    );
    let o = e.run(&["restore", &id, "--to-database", &dst.url()]);
    assert_eq!(o.code, Some(1), "{}", o.stderr);
    assert!(o.stderr.contains("already exists"), "{}", o.stderr);
    assert_eq!(pg(&dst.0, "SELECT count(*) FROM notes;").trim(), "5001");
    let before = e.snapshot_ids();

    // With --replace: a safety snapshot first, the old database kept under a new name.
    let o = e.ok(&["restore", &id, "--to-database", &dst.url(), "--replace"]);
    assert!(o.stderr.contains("safety backup"), "{}", o.stderr);
    assert_eq!(
        pg(&dst.0, q),
        pg(&src.0, q),
        "the target holds the snapshot"
    );
    let kept = pg_databases_like(&format!("{}_before_restore_", dst.0));
    assert_eq!(kept.len(), 1, "the old database is kept: {kept:?}");
    assert_eq!(
        pg(
            &kept[0],
            "SELECT count(*) FROM notes WHERE body = 'written after the restore';"
        )
        .trim(),
        "1"
    );
    let snaps = e.snapshots();
    let new: Vec<&serde_json::Value> = snaps
        .iter()
        .filter(|s| !before.contains(&s["id"].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(new.len(), 1, "one safety snapshot: {new:?}");
    let safety = new[0];
    assert!(
        safety["tags"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t == "safety-before-restore"),
        "{safety}"
    );
    // The safety snapshot holds what was replaced.
    let back = PgDb::named("rs_back");
    e.ok(&[
        "restore",
        safety["id"].as_str().unwrap(),
        "--to-database",
        &back.url(),
    ]);
    assert_eq!(pg(&back.0, "SELECT count(*) FROM notes;").trim(), "5001");
}

#[test]
fn import_a_pg_dump_file_then_prove_it_by_a_test_restore() {
    require_postgres();
    let src = PgDb::create("imp", DATA);
    let e = Env::new();
    let file = e.file("provider-backup.dump");
    let st = Command::new("pg_dump")
        .args(["-Fc", "-h", "127.0.0.1", "-p", "5432", "-U", "postgres"])
        .arg("-f")
        .arg(&file)
        .arg(&src.0)
        .status()
        .unwrap();
    assert!(st.success());

    let v = e
        .ok(&[
            "import",
            "--json",
            "--type",
            "database",
            file.to_str().unwrap(),
        ])
        .json();
    let id = v["snapshot_id"].as_str().unwrap().to_owned();
    assert_eq!(
        v["size"].as_u64().unwrap(),
        std::fs::metadata(&file).unwrap().len()
    );
    let v = e
        .ok(&[
            "verify",
            &id,
            "--json",
            "--test-restore",
            "--scratch-url",
            SCRATCH,
        ])
        .json();
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["test_restore"]["ok"], true, "{v}");
    assert_eq!(v["test_restore"]["tables_checked"], 2, "{v}");
    assert!(pg_databases_like(&format!("strongroom_drill_{}", &id[..8])).is_empty());
    // The imported bytes are the file's.
    assert!(e.restore_stdout(&id) == std::fs::read(&file).unwrap());
}

#[test]
fn export_is_what_restore_stdout_writes_and_pg_restore_reads_it() {
    require_postgres();
    let src = PgDb::create("exp", DATA);
    let e = Env::new();
    let id = e.backup_database("clinic", &src.url());
    let out = e.file("f.dump");
    e.ok(&["export", &id, "--out", out.to_str().unwrap()]);
    let exported = std::fs::read(&out).unwrap();
    assert!(exported.starts_with(b"PGDMP"));
    assert!(
        exported == e.restore_stdout(&id),
        "export and restore --stdout differ"
    );
    let list = Command::new("pg_restore")
        .arg("-l")
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        list.status.success(),
        "pg_restore -l: {}",
        String::from_utf8_lossy(&list.stderr)
    );
    let toc = String::from_utf8_lossy(&list.stdout);
    assert!(
        toc.contains("TABLE DATA public notes") && toc.contains("TABLE DATA public marks"),
        "{toc}"
    );
}

// ---------------------------------------------------------------------------------------
// The failure matrix of `backup --type database`.

/// A repository with one good database backup.
struct Fixture {
    env: Env,
    src: PgDb,
    good: String,
    good_bytes: Vec<u8>,
    ids: Vec<String>,
}

impl Fixture {
    fn new() -> Fixture {
        let tmp = tempfile::Builder::new()
            .prefix("strongroom-db-cli-")
            .tempdir()
            .unwrap();
        Fixture::in_env(Env::at(tmp, None))
    }

    fn in_env(env: Env) -> Fixture {
        require_postgres();
        let src = PgDb::create("fx", DATA);
        let good = env.backup_database("clinic", &src.url());
        let good_bytes = env.restore_stdout(&good);
        let ids = env.snapshot_ids();
        Fixture {
            env,
            src,
            good,
            good_bytes,
            ids,
        }
    }

    /// `backup --type database --database clinic=URL` fails, in text and in JSON, saying
    /// every needle; nothing is committed; the good backup restores byte-identical.
    fn backup_fails(&self, url: &str, needles: &[&str]) {
        let spec = format!("clinic={url}");
        let args = ["backup", "--type", "database", "--database", &spec];
        let o = self.env.run(&args);
        eprintln!("strongroom {}:\n{}{}", args.join(" "), o.text(), o.stderr);
        assert_eq!(o.code, Some(1), "{}\n{}", o.text(), o.stderr);
        assert!(!o.stderr.contains("panicked"), "{}", o.stderr);
        assert!(o.stderr.contains("error: "), "{}", o.stderr);
        assert!(
            o.stderr.contains("earlier backups are untouched"),
            "{}",
            o.stderr
        );
        for n in needles {
            assert!(
                o.stderr.contains(n),
                "stderr does not say {n:?}:\n{}",
                o.stderr
            );
        }
        // --quiet still says why.
        let mut quiet = args.to_vec();
        quiet.push("--quiet");
        let o = self.env.run(&quiet);
        assert_eq!(o.code, Some(1));
        for n in needles {
            assert!(o.stderr.contains(n), "--quiet hides {n:?}:\n{}", o.stderr);
        }
        // --json: one document, not ok, the part's error saying what to do.
        let mut json = args.to_vec();
        json.push("--json");
        let o = self.env.run(&json);
        assert_eq!(o.code, Some(1), "{}", o.stderr);
        let v = o.json();
        assert_eq!(v["ok"], false, "{v}");
        let part = &v["recovery_point"]["parts"][0];
        assert!(part["snapshot"].is_null(), "{v}");
        let err = part["error"].as_str().unwrap();
        for n in needles {
            assert!(err.contains(n), "the JSON error lacks {n:?}: {err}");
        }
        self.assert_untouched();
    }

    fn assert_untouched(&self) {
        assert_eq!(
            self.env.snapshot_ids(),
            self.ids,
            "a failed backup committed a snapshot"
        );
        assert!(
            self.env.restore_stdout(&self.good) == self.good_bytes,
            "the earlier backup changed"
        );
    }
}

/// Wrong password, on MariaDB (PostgreSQL here trusts local connections, whatever the
/// password; see `backup_fails_unknown_role`).
#[test]
fn backup_fails_wrong_password() {
    require_mysql();
    let f = Fixture::new();
    let db = unique("pw");
    my("", &format!("CREATE DATABASE `{db}`;"));
    let user = unique("u");
    struct Cleanup(String, String);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            let _ = my_try("", &format!("DROP USER IF EXISTS '{}'@'%';", self.1));
            let _ = my_try("", &format!("DROP DATABASE IF EXISTS `{}`;", self.0));
        }
    }
    let _c = Cleanup(db.clone(), user.clone());
    my(
        "",
        &format!(
            "CREATE USER '{user}'@'%' IDENTIFIED BY 'right-Pa55'; \
             GRANT ALL PRIVILEGES ON `{db}`.* TO '{user}'@'%';"
        ),
    );
    my(
        &db,
        "CREATE TABLE t (id INT PRIMARY KEY); INSERT INTO t VALUES (1);",
    );
    f.backup_fails(
        &format!("mysql://{user}:wrong-Pa55@127.0.0.1:3306/{db}"),
        &[
            "Access denied for user",
            "hint: check the user name and password",
        ],
    );
}

#[test]
fn backup_fails_unknown_role() {
    let f = Fixture::new();
    let ghost = unique("ghost");
    f.backup_fails(
        &format!("postgres://{ghost}:pw@127.0.0.1:5432/{}", f.src.0),
        &["does not exist", "hint: check the user name"],
    );
}

#[test]
fn backup_fails_unreachable_host() {
    let f = Fixture::new();
    f.backup_fails(
        &format!("postgres://postgres@127.0.0.1:1/{}", f.src.0),
        &[
            "Connection refused",
            "hint: check that the database server is running",
        ],
    );
}

#[test]
fn backup_fails_database_missing() {
    let f = Fixture::new();
    let missing = unique("missing");
    f.backup_fails(
        &format!("postgres://postgres@127.0.0.1:5432/{missing}"),
        &[
            &format!("database \"{missing}\" does not exist"),
            "hint: check the database name",
        ],
    );
}

/// The dump tool killed by SIGKILL after part of a real dump (a wrapper on PATH).
#[test]
fn backup_fails_dump_tool_killed_mid_stream() {
    let mut f = Fixture::new();
    let dir = tool_dir(
        &["psql", "pg_dumpall"],
        &[(
            "pg_dump",
            "case \"$1\" in --version) exec @REAL_pg_dump@ --version;; esac\n\
             @REAL_pg_dump@ \"$@\" | @REAL_head@ -c 100000\n\
             kill -9 $$",
        )],
    );
    f.env.path = Some(dir.path().as_os_str().to_owned());
    let url = f.src.url();
    f.backup_fails(
        &url,
        &["was killed by signal 9", "hint: the tool was killed"],
    );
}

#[test]
fn backup_fails_dump_tool_missing() {
    let mut f = Fixture::new();
    let dir = tool_dir(&["psql", "pg_dumpall"], &[]);
    f.env.path = Some(dir.path().as_os_str().to_owned());
    let url = f.src.url();
    f.backup_fails(
        &url,
        &["`pg_dump` was not found", "install it", "postgresql-client"],
    );
}

#[test]
fn backup_fails_client_older_than_server() {
    let mut f = Fixture::new();
    let dir = tool_dir(
        &["psql", "pg_dumpall"],
        &[(
            "pg_dump",
            "case \"$1\" in --version) echo 'pg_dump (PostgreSQL) 14.11'; exit 0;; esac\n\
             exec @REAL_pg_dump@ \"$@\"",
        )],
    );
    f.env.path = Some(dir.path().as_os_str().to_owned());
    let url = f.src.url();
    f.backup_fails(
        &url,
        &[
            "pg_dump 14.11 is older than the server (PostgreSQL 15",
            "postgresql-client-15",
        ],
    );
}

#[test]
fn backup_fails_empty_dump() {
    let mut f = Fixture::new();
    let dir = tool_dir(
        &["psql", "pg_dumpall"],
        &[(
            "pg_dump",
            "case \"$1\" in --version) exec @REAL_pg_dump@ --version;; esac\nexit 0",
        )],
    );
    f.env.path = Some(dir.path().as_os_str().to_owned());
    let url = f.src.url();
    f.backup_fails(
        &url,
        &[
            "produced no output",
            "hint: the tool exited successfully but wrote nothing",
        ],
    );
}

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

/// The repository on a 4 MiB tmpfs, a dump of ~6 MiB of incompressible data. (Where
/// mounting is not permitted, the jobs crate's `full_disk` test covers this with a store
/// that fails writes with ENOSPC.)
#[test]
fn backup_fails_full_disk() {
    require_postgres();
    let tmp = tempfile::Builder::new()
        .prefix("strongroom-db-cli-")
        .tempdir()
        .unwrap();
    let disk = tempfile::Builder::new()
        .prefix("strongroom-db-cli-disk-")
        .tempdir()
        .unwrap();
    let small = disk.path().join("small-disk");
    let mount = match Mount::tmpfs(&small, "4m") {
        Ok(m) => m,
        Err(why) => {
            eprintln!(
                "backup_fails_full_disk: cannot mount a tmpfs ({why}); the repository half is \
                 covered by strongroom-jobs' failures::full_disk"
            );
            return;
        }
    };
    let f = Fixture::in_env(Env::at(tmp, Some(small.join("repo"))));
    let big = PgDb::create(
        "full",
        "CREATE TABLE r (id int PRIMARY KEY, b bytea); \
         INSERT INTO r SELECT g, decode(string_agg(md5(random()::text || g || '.' || h), ''), 'hex') \
         FROM generate_series(1, 6000) g, generate_series(1, 64) h GROUP BY g;",
    );
    f.backup_fails(
        &big.url(),
        &[
            "No space left on device",
            "hint: the repository's disk is full",
        ],
    );
    drop(f);
    drop(mount);
    drop(disk);
}
