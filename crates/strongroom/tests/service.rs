//! The service commands, run as the real binary: `config check` (errors name the key and the
//! line; secrets never printed), `setup` (the default schedules from DATABASE_URL and
//! MEDIA_ROOT), `schedule add|list|enable|disable|remove|run`, `jobs [--cancel]`, `catalog
//! rebuild` (every snapshot record back after the catalog is deleted), `user add`, and
//! `serve`: killed with SIGKILL in the middle of a job, then restarted, the job shows failed
//! ("interrupted"), nothing is left in progress, the retry runs and succeeds; SIGTERM stops
//! it cleanly; its HTTP API answers.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_strongroom");
const PASSWORD: &str = "service test repository password";
const DB_PASSWORD: &str = "planted-db-secret-5e1f";
const SMTP_PASSWORD: &str = "planted-smtp-secret-77aa";
const TIMEOUT: Duration = Duration::from_secs(120);

struct Env {
    dir: tempfile::TempDir,
}

struct Out {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Out {
    fn ok(self) -> Out {
        assert_eq!(
            self.code,
            Some(0),
            "command failed:\nstdout: {}\nstderr: {}",
            self.stdout,
            self.stderr
        );
        self
    }
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}\nstderr: {}", self.stdout, self.stderr))
    }
    fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

impl Env {
    /// A folder with a SQLite "clinic" database, a media folder, a repository and a
    /// configuration naming them.
    fn new(extra: &str) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let e = Env { dir };
        std::fs::create_dir_all(e.path("media/scans")).unwrap();
        std::fs::write(
            e.path("media/scans/a.txt"),
            "patient scan one\n".repeat(500),
        )
        .unwrap();
        std::fs::write(
            e.path("media/b.bin"),
            (0..200_000u32)
                .map(|i| (i * 7 % 251) as u8)
                .collect::<Vec<u8>>(),
        )
        .unwrap();
        let db = e.path("clinic.db");
        let status = Command::new("sqlite3")
            .arg(&db)
            .arg("CREATE TABLE patients(id INTEGER PRIMARY KEY, name TEXT); WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c WHERE i < 500) INSERT INTO patients SELECT i, 'patient ' || i FROM c;")
            .status();
        if !matches!(status, Ok(s) if s.success()) {
            // No sqlite3 tool: write the database with Python's sqlite3 module instead.
            let ok = Command::new("python3")
                .arg("-c")
                .arg(format!(
                    "import sqlite3; c=sqlite3.connect({:?}); c.execute('CREATE TABLE patients(id INTEGER PRIMARY KEY, name TEXT)'); c.executemany('INSERT INTO patients VALUES (?,?)', [(i, 'patient %d' % i) for i in range(1, 501)]); c.commit()",
                    db.display().to_string()
                ))
                .status()
                .unwrap();
            assert!(ok.success(), "cannot create the test SQLite database");
        }
        let config = format!(
            r#"[repository]
path = "{repo}"
password_env = "SERVICE_TEST_REPO_PASSWORD"

[[database]]
name = "clinic"
url = "sqlite://{db}"

[[media]]
name = "uploads"
path = "{media}"

[[schedule]]
name = "nightly"
kind = "full"
when = "daily 02:00"
timezone = "Europe/Berlin"
retention = {{ keep_last = 2 }}

[jobs]
heartbeat_seconds = 1
heartbeat_timeout_seconds = 4
{extra}"#,
            repo = e.path("repo").display(),
            db = db.display(),
            media = e.path("media").display(),
        );
        std::fs::write(e.path("strongroom.toml"), config).unwrap();
        e.run(&["init", "--kdf-memory-mib", "19", "--kdf-passes", "2"])
            .ok();
        e
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.args(args)
            .current_dir(self.dir.path())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", self.dir.path())
            .env("STRONGROOM_CONFIG", self.path("strongroom.toml"))
            .env("SERVICE_TEST_REPO_PASSWORD", PASSWORD)
            .stdin(Stdio::null());
        c
    }

    fn run(&self, args: &[&str]) -> Out {
        self.run_with(args, &[])
    }

    fn run_with(&self, args: &[&str], envs: &[(&str, &str)]) -> Out {
        let mut c = self.command(args);
        for (k, v) in envs {
            c.env(k, v);
        }
        let child = c
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        wait_output(child, TIMEOUT)
    }

    fn jobs(&self) -> Vec<Value> {
        self.run(&["jobs", "--json", "--limit", "1000"])
            .ok()
            .json()
            .as_array()
            .unwrap()
            .clone()
    }

    fn job(&self, id: i64) -> Value {
        self.run(&["jobs", "--json", "--show", &id.to_string()])
            .ok()
            .json()
    }
}

fn wait_output(child: Child, timeout: Duration) -> Out {
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(timeout) {
        Ok(r) => {
            let o = r.unwrap();
            Out {
                code: o.status.code(),
                stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
            }
        }
        Err(_) => {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            panic!("command timed out after {timeout:?}");
        }
    }
}

fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn kill(pid: u32, signal: &str) {
    let st = Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .unwrap();
    assert!(st.success(), "kill {signal} {pid} failed");
}

// ---------------------------------------------------------------------------------------

#[test]
fn config_check_names_the_key_and_line_and_never_prints_a_secret() {
    let e = Env::new("");
    let good = format!(
        r#"[repository]
path = "/srv/backups"
password = "{PASSWORD}"

[[database]]
name = "clinic"
url = "postgres://app:{DB_PASSWORD}@db.internal:5432/clinic"

[notify.email]
to = ["admin@clinic.example"]
from = "strongroom@clinic.example"
host = "smtp.clinic.example"
user = "mailer"
password = "{SMTP_PASSWORD}"
"#
    );
    std::fs::write(e.path("good.toml"), &good).unwrap();
    let out = e.run(&["config", "check", "good.toml"]).ok();
    let text = out.all();
    assert!(text.contains("valid"), "{text}");
    assert!(
        text.contains("db.internal"),
        "the effective config is printed: {text}"
    );
    for secret in [PASSWORD, DB_PASSWORD, SMTP_PASSWORD] {
        assert!(!text.contains(secret), "secret {secret:?} printed:\n{text}");
    }

    let bad = format!(
        "[repository]\npath = \"/srv/backups\"\npassword = \"{PASSWORD}\"\n\n[[schedule]]\nname = \"nightly\"\nkind = \"full\"\nwhen = \"61 2 * * *\"\n\n[server]\nlisten_address = \"0.0.0.0:80\"\n"
    );
    std::fs::write(e.path("bad.toml"), &bad).unwrap();
    let out = e.run(&["config", "check", "bad.toml"]);
    assert_eq!(out.code, Some(1), "{}", out.all());
    let text = out.all();
    assert!(text.contains("listen_address"), "unknown key named: {text}");
    assert!(text.contains("bad.toml:11:"), "unknown key's line: {text}");
    assert!(!text.contains(PASSWORD), "secret printed: {text}");
    let bad = bad.replace("[server]\nlisten_address", "[server]\nlisten");
    std::fs::write(e.path("bad.toml"), &bad).unwrap();
    let out = e.run(&["config", "check", "bad.toml"]);
    assert_eq!(out.code, Some(1), "{}", out.all());
    let text = out.all();
    assert!(text.contains("when"), "bad cron's key named: {text}");
    assert!(text.contains("bad.toml:8:"), "bad cron's line: {text}");
    assert!(!text.contains(PASSWORD), "secret printed: {text}");

    // Service commands refuse a bad file with the same message, changing nothing.
    let out = e.run(&["--config", "bad.toml", "schedule", "list"]);
    assert_eq!(out.code, Some(1));
    assert!(out.stderr.contains("bad.toml:8:"), "{}", out.stderr);
}

#[test]
fn setup_creates_the_default_schedules_and_does_not_overwrite() {
    let e = Env::new("");
    std::fs::remove_file(e.path("strongroom.toml")).unwrap();
    let db = format!("sqlite://{}", e.path("clinic.db").display());
    let media = e.path("media").display().to_string();
    let repo = e.path("repo").display().to_string();
    let envs = [
        ("DATABASE_URL", db.as_str()),
        ("MEDIA_ROOT", media.as_str()),
        ("STRONGROOM_REPO", repo.as_str()),
    ];
    let mut cmd = e.command(&["setup", "--write", "app.toml"]);
    cmd.env_remove("STRONGROOM_CONFIG");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = wait_output(
        cmd.stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
        TIMEOUT,
    )
    .ok();
    assert!(out.stdout.contains("daily-full"), "{}", out.stdout);
    let written = std::fs::read_to_string(e.path("app.toml")).unwrap();
    assert!(written.contains("when = \"daily 02:00\""), "{written}");
    assert!(
        !written.contains("clinic.db"),
        "no source copied into the file: {written}"
    );

    let mut list_env: Vec<(&str, &str)> = envs.to_vec();
    let app = e.path("app.toml").display().to_string();
    list_env.push(("STRONGROOM_CONFIG", app.as_str()));
    let list = e
        .run_with(&["schedule", "list", "--json"], &list_env)
        .ok()
        .json();
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 2, "{list:?}");
    let daily = list.iter().find(|s| s["name"] == "daily-full").unwrap();
    assert_eq!(daily["kind"], "full");
    assert_eq!(daily["spec"], "daily 02:00");
    assert_eq!(daily["enabled"], true);
    assert_eq!(daily["retention"]["keep_daily"], 7);
    assert_eq!(daily["retention"]["keep_weekly"], 4);
    assert_eq!(daily["retention"]["keep_monthly"], 12);
    assert!(daily["next_run_at"].is_string());
    let weekly = list.iter().find(|s| s["name"] == "weekly-verify").unwrap();
    assert_eq!(weekly["kind"], "verification");
    assert_eq!(weekly["test_restore"], true);

    // A second setup does not overwrite the file.
    std::fs::write(e.path("app.toml"), "# mine\n").unwrap();
    let mut cmd = e.command(&["setup", "--write", "app.toml"]);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = wait_output(
        cmd.stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
        TIMEOUT,
    );
    assert_eq!(out.code, Some(1));
    assert!(out.stderr.contains("--force"), "{}", out.stderr);
    assert_eq!(
        std::fs::read_to_string(e.path("app.toml")).unwrap(),
        "# mine\n"
    );
}

#[test]
fn schedules_and_jobs_from_the_command_line() {
    let e = Env::new("");
    // Bad input changes nothing.
    let out = e.run(&[
        "schedule",
        "add",
        "x",
        "--type",
        "full",
        "--when",
        "daily 25:00",
    ]);
    assert_eq!(out.code, Some(1));
    assert!(out.stderr.contains("25"), "{}", out.stderr);
    let out = e.run(&[
        "schedule",
        "add",
        "x",
        "--type",
        "full",
        "--when",
        "daily 02:00",
        "--source",
        "nope",
    ]);
    assert_eq!(out.code, Some(1));
    assert!(out.stderr.contains("clinic, uploads"), "{}", out.stderr);
    let out = e.run(&[
        "schedule",
        "add",
        "x",
        "--type",
        "backup",
        "--when",
        "daily 02:00",
    ]);
    assert_eq!(out.code, Some(1));

    e.run(&[
        "schedule",
        "add",
        "media-hourly",
        "--type",
        "media",
        "--when",
        "0 * * * *",
        "--timezone",
        "Asia/Manila",
        "--keep-last",
        "3",
    ])
    .ok();
    let list = e.run(&["schedule", "list", "--json"]).ok().json();
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(names.contains(&"nightly") && names.contains(&"media-hourly"));
    let dup = e.run(&[
        "schedule",
        "add",
        "media-hourly",
        "--type",
        "media",
        "--when",
        "hourly",
    ]);
    assert_eq!(dup.code, Some(1), "a taken name is refused");

    e.run(&["schedule", "disable", "media-hourly"]).ok();
    let list = e.run(&["schedule", "list", "--json"]).ok().json();
    let s = list
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "media-hourly")
        .unwrap()
        .clone();
    assert_eq!(s["enabled"], false);
    assert!(s["next_run_at"].is_null());
    e.run(&["schedule", "enable", "media-hourly"]).ok();
    // The configuration file's schedules are changed there, not here.
    let out = e.run(&["schedule", "disable", "nightly"]);
    assert_eq!(out.code, Some(1));
    assert!(out.stderr.contains("configuration file"), "{}", out.stderr);

    // Run a schedule now: the backup, then its retention.
    let out = e.run(&["schedule", "run", "nightly"]).ok();
    assert!(out.stdout.contains("success"), "{}", out.all());
    let jobs = e.jobs();
    let full: Vec<&Value> = jobs.iter().filter(|j| j["kind"] == "full").collect();
    assert_eq!(full.len(), 1);
    assert_eq!(full[0]["status"], "success");
    assert_eq!(
        full[0]["snapshot_ids"].as_array().unwrap().len(),
        2,
        "database + media"
    );
    assert!(full[0]["bytes_read"].as_u64().unwrap() > 100_000);
    let forget: Vec<&Value> = jobs.iter().filter(|j| j["kind"] == "forget").collect();
    assert_eq!(forget.len(), 1, "retention ran after the backup: {jobs:?}");
    assert_eq!(forget[0]["status"], "success");

    // A queued job is cancelled at once; a finished one cannot be.
    let out = e
        .run(&["schedule", "run", "media-hourly", "--detach", "--json"])
        .ok();
    let id = out.json()["job_id"].as_i64().unwrap();
    let again = e.run(&["schedule", "run", "media-hourly", "--detach"]);
    assert_eq!(again.code, Some(1), "a second request while queued");
    assert!(
        again.stderr.contains("already in progress"),
        "{}",
        again.stderr
    );
    assert!(
        again.stderr.contains(&format!("job {id}")),
        "{}",
        again.stderr
    );
    e.run(&["jobs", "--cancel", &id.to_string()]).ok();
    assert_eq!(e.job(id)["status"], "cancelled");
    let out = e.run(&["jobs", "--cancel", &full[0]["id"].to_string()]);
    assert_eq!(out.code, Some(1));
    assert!(out.stderr.contains("already ended"), "{}", out.stderr);

    e.run(&["schedule", "remove", "media-hourly"]).ok();
    let list = e.run(&["schedule", "list", "--json"]).ok().json();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(e.job(id)["kind"], "media", "the history stays");
    let out = e.run(&["jobs", "--status", "running"]);
    assert_eq!(out.code, Some(1), "bad status named: {}", out.all());
}

/// The snapshot records of the catalog, as `GET` would show them (sorted by id).
fn catalog_records(e: &Env) -> Vec<Value> {
    let db = e.path("repo.catalog.sqlite3");
    let out = Command::new("python3")
        .arg("-c")
        .arg(format!(
            "import sqlite3, json\nc = sqlite3.connect({:?})\nc.row_factory = sqlite3.Row\nrows = [dict(r) for r in c.execute('SELECT * FROM snapshots ORDER BY snapshot_id')]\nprint(json.dumps(rows))",
            db.display().to_string()
        ))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice::<Value>(&out.stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn catalog_rebuild_brings_back_every_snapshot_and_its_details() {
    let e = Env::new("");
    e.run(&["schedule", "run", "nightly"]).ok();
    std::fs::write(e.path("media/new.txt"), "a new upload\n").unwrap();
    e.run(&["backup", "--type", "media"]).ok();
    e.run(&["catalog", "rebuild"]).ok();
    let before = catalog_records(&e);
    assert!(before.len() >= 3, "{before:?}");
    let snaps = e.run(&["snapshots", "--json"]).ok().json();
    assert_eq!(snaps.as_array().unwrap().len(), before.len());

    for f in [
        "repo.catalog.sqlite3",
        "repo.catalog.sqlite3-wal",
        "repo.catalog.sqlite3-shm",
    ] {
        let _ = std::fs::remove_file(e.path(f));
    }
    let out = e.run(&["catalog", "rebuild", "--json"]).ok();
    assert_eq!(out.json()["added"].as_u64(), Some(before.len() as u64));
    let after = catalog_records(&e);
    let strip = |rows: &[Value]| -> Vec<Value> {
        rows.iter()
            .map(|r| {
                let mut r = r.clone();
                let o = r.as_object_mut().unwrap();
                // Row bookkeeping, not snapshot details.
                o.remove("id");
                o.remove("cached_at");
                o.remove("updated_at");
                r
            })
            .collect()
    };
    assert_eq!(strip(&before), strip(&after));
    // The configured schedule is back too.
    let list = e.run(&["schedule", "list", "--json"]).ok().json();
    assert_eq!(list.as_array().unwrap().len(), 1);
}

#[test]
fn users_are_added_from_the_command_line_only_with_a_real_password() {
    let e = Env::new("");
    let out = e.run_with(
        &["user", "add", "admin", "--role", "admin"],
        &[("STRONGROOM_NEW_PASSWORD", "short")],
    );
    assert_eq!(out.code, Some(1));
    let out = e.run_with(
        &["user", "add", "admin", "--role", "boss"],
        &[("STRONGROOM_NEW_PASSWORD", "a long enough password")],
    );
    assert_eq!(out.code, Some(1));
    assert!(out.stderr.contains("admin, staff or viewer"));
    e.run_with(
        &["user", "add", "admin", "--role", "admin"],
        &[("STRONGROOM_NEW_PASSWORD", "a long enough password")],
    )
    .ok();
    let list = e.run(&["user", "list", "--json"]).ok();
    assert!(!list.stdout.contains("argon2"), "no hash printed");
    let v = list.json();
    assert_eq!(v[0]["username"], "admin");
    assert_eq!(v[0]["role"], "admin");
    e.run(&["user", "remove", "admin"]).ok();
    assert_eq!(
        e.run(&["user", "list", "--json"])
            .ok()
            .json()
            .as_array()
            .unwrap()
            .len(),
        0
    );
}

/// A started `serve`, with the address it listens on.
struct Serve {
    child: Child,
    addr: Option<String>,
    log: std::sync::Arc<std::sync::Mutex<String>>,
}

/// A test that fails half-way must not leave a service running.
impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_serve(e: &Env, args: &[&str]) -> Serve {
    let http = !args.contains(&"--no-http");
    let mut full = vec!["serve"];
    full.extend_from_slice(args);
    let mut child = e
        .command(&full)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    {
        let log = std::sync::Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(a) = line.split("listening on http://").nth(1) {
                    let _ = tx.send(a.trim().to_owned());
                }
                if !http && line.contains("strongroom serve:") {
                    let _ = tx.send(String::new());
                }
                let mut l = log.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
    }
    let addr = rx.recv_timeout(Duration::from_secs(60)).ok();
    assert!(
        addr.is_some(),
        "serve did not start: {}",
        log.lock().unwrap()
    );
    Serve {
        child,
        addr: addr.filter(|a| !a.is_empty()),
        log,
    }
}

fn http_get(addr: &str, path: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut buf = String::new();
    let _ = std::io::Read::read_to_string(&mut s, &mut buf);
    let code = buf
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, buf)
}

#[test]
fn serve_killed_mid_job_marks_it_interrupted_and_the_retry_runs() {
    let e = Env::new(
        "\n[[schedule]]\nname = \"weekly-prune\"\nkind = \"prune\"\nwhen = \"weekly sun 04:00\"\n",
    );
    // A stream snapshot, read by a restore whose output nobody reads: it holds a shared lock
    // on the repository for as long as it lives, so the prune job waits, heartbeating.
    let data: Vec<u8> = (0..4_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let mut c = e
        .command(&["backup", "--stdin", "clinic.dump", "--json"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(&data).unwrap();
    let out = wait_output(c, TIMEOUT).ok();
    let snap = out.json()["snapshot_id"].as_str().unwrap().to_owned();
    let holder = e
        .command(&["restore", &snap, "--stdout"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));

    let job = e
        .run(&["schedule", "run", "weekly-prune", "--detach", "--json"])
        .ok()
        .json()["job_id"]
        .as_i64()
        .unwrap();
    let mut serve = start_serve(&e, &["--no-http"]);
    wait_for("the prune job to start", Duration::from_secs(60), || {
        e.job(job)["status"] == "in_progress"
    });
    // Let a heartbeat or two land, then kill the service outright.
    std::thread::sleep(Duration::from_millis(2500));
    let j = e.job(job);
    assert_eq!(
        j["status"], "in_progress",
        "still waiting for the lock: {j}"
    );
    assert!(j["heartbeat_at"].is_string());
    kill(serve.child.id(), "-9");
    let _ = serve.child.wait();
    let log = serve.log.lock().unwrap().clone();
    assert_eq!(
        e.job(job)["status"],
        "in_progress",
        "nobody marked it yet: {log}"
    );
    // The lock holder goes away; its lock is released.
    let mut holder = holder;
    let _ = holder.kill();
    let _ = holder.wait();

    // Restart: after the heartbeat timeout the job is marked interrupted and retried once.
    let serve = start_serve(&e, &["--listen", "127.0.0.1:0"]);
    wait_for(
        "the job to be marked interrupted",
        Duration::from_secs(60),
        || e.job(job)["status"] == "failed",
    );
    let j = e.job(job);
    assert!(
        j["error_message"].as_str().unwrap().contains("interrupted"),
        "{j}"
    );
    wait_for("the retry to succeed", Duration::from_secs(90), || {
        e.jobs()
            .iter()
            .any(|r| r["metadata"]["retry_of"] == job && r["status"] == "success")
    });
    let jobs = e.jobs();
    let retries = jobs
        .iter()
        .filter(|r| r["metadata"]["retry_of"] == job)
        .count();
    assert_eq!(retries, 1, "retried exactly once: {jobs:?}");
    assert!(
        jobs.iter()
            .all(|r| r["status"] != "in_progress" && r["status"] != "queued"),
        "nothing left in progress: {jobs:?}"
    );

    // The HTTP API of the restarted service answers, and refuses without credentials.
    let addr = serve.addr.clone().expect("listening address");
    let (code, body) = http_get(&addr, "/api/v1/openapi.json");
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"openapi\""));
    let (code, _) = http_get(&addr, "/api/v1/backups");
    assert_eq!(code, 401);

    // The next run proceeds.
    e.run(&["schedule", "run", "nightly", "--detach"]).ok();
    wait_for(
        "the next backup to succeed",
        Duration::from_secs(90),
        || {
            e.jobs()
                .iter()
                .any(|r| r["kind"] == "full" && r["status"] == "success")
        },
    );

    // SIGTERM stops it cleanly.
    let mut serve = serve;
    kill(serve.child.id(), "-TERM");
    let status = serve.child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{}", serve.log.lock().unwrap());
    assert!(serve.log.lock().unwrap().contains("stopped"));
}

/// Runs SQL on the test PostgreSQL server (127.0.0.1:5432, user postgres; `scripts/services`
/// starts one). It is required: this test fails, never skips, when PostgreSQL is absent.
fn psql(sql: &str) {
    let out = Command::new("psql")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            "5432",
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-v",
            "ON_ERROR_STOP=1",
            "-qAt",
            "-c",
            sql,
        ])
        .output()
        .expect("psql (PostgreSQL client) is needed: run scripts/services");
    assert!(
        out.status.success(),
        "PostgreSQL on 127.0.0.1:5432 is needed (scripts/services starts it): {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn two_serve_instances_on_a_postgres_catalog_take_over_a_dead_ones_job() {
    let db = format!(
        "sr_service_{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos()
    );
    psql(&format!("CREATE DATABASE {db}"));
    struct Drop_(String);
    impl Drop for Drop_ {
        fn drop(&mut self) {
            let _ = Command::new("psql")
                .args([
                    "-h",
                    "127.0.0.1",
                    "-U",
                    "postgres",
                    "-d",
                    "postgres",
                    "-qc",
                    &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.0),
                ])
                .output();
        }
    }
    let _cleanup = Drop_(db.clone());
    let e = Env::new(
        "\n[[schedule]]\nname = \"weekly-prune\"\nkind = \"prune\"\nwhen = \"weekly sun 04:00\"\n",
    );
    // The catalog on PostgreSQL (a top-level key: put it first).
    let text = std::fs::read_to_string(e.path("strongroom.toml")).unwrap();
    std::fs::write(
        e.path("strongroom.toml"),
        format!("catalog = \"postgres://postgres@127.0.0.1:5432/{db}\"\n{text}"),
    )
    .unwrap();

    // A reader holding a shared lock keeps the prune waiting (see the test above).
    let data: Vec<u8> = (0..4_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let mut c = e
        .command(&["backup", "--stdin", "clinic.dump", "--json"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(&data).unwrap();
    let snap = wait_output(c, TIMEOUT).ok().json()["snapshot_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut holder = e
        .command(&["restore", &snap, "--stdout"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));

    let a = start_serve(&e, &["--no-http"]);
    let b = start_serve(&e, &["--no-http"]);
    let job = e
        .run(&["schedule", "run", "weekly-prune", "--detach", "--json"])
        .ok()
        .json()["job_id"]
        .as_i64()
        .unwrap();
    wait_for("the prune job to start", Duration::from_secs(60), || {
        e.job(job)["status"] == "in_progress"
    });
    let owner = e.job(job)["lease_owner"].as_str().unwrap().to_owned();
    let owner_pid: u32 = owner.split(':').nth(1).unwrap().parse().unwrap();
    let (mut dead, alive) = if owner_pid == a.child.id() {
        (a, b)
    } else {
        (b, a)
    };
    assert_eq!(
        dead.child.id(),
        owner_pid,
        "the lease names one of the two instances: {owner}"
    );
    kill(dead.child.id(), "-9");
    let _ = dead.child.wait();
    let _ = holder.kill();
    let _ = holder.wait();

    wait_for(
        "the other instance to mark the job interrupted",
        Duration::from_secs(60),
        || e.job(job)["status"] == "failed",
    );
    assert!(
        e.job(job)["error_message"]
            .as_str()
            .unwrap()
            .contains("interrupted")
    );
    wait_for(
        "the retry to succeed on the other instance",
        Duration::from_secs(90),
        || {
            e.jobs()
                .iter()
                .any(|r| r["metadata"]["retry_of"] == job && r["status"] == "success")
        },
    );
    let jobs = e.jobs();
    let retry: Vec<&Value> = jobs
        .iter()
        .filter(|r| r["metadata"]["retry_of"] == job)
        .collect();
    assert_eq!(retry.len(), 1, "{jobs:?}");
    let alive_pid = alive.child.id().to_string();
    assert_eq!(
        retry[0]["lease_owner"].as_str().unwrap().split(':').nth(1),
        Some(alive_pid.as_str()),
        "the surviving instance ran the retry"
    );
    assert!(
        jobs.iter().all(|r| r["status"] != "in_progress"),
        "{jobs:?}"
    );
    let mut alive = alive;
    kill(alive.child.id(), "-TERM");
    assert_eq!(alive.child.wait().unwrap().code(), Some(0));
}
