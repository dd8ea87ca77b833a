//! Test support: a server over a temporary SQLite catalog with a controlled clock, fake
//! database probes, seeded users (admin, staff, viewer) with API tokens, and request helpers
//! for `tower::ServiceExt::oneshot`. Secrets are planted in the configuration so tests can
//! check they never come out.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use chrono::{DateTime, TimeZone, Utc};
use serde_json::Value;
use strongroom_catalog::{Catalog, NewJob, NewToken, NewUser, Role};
use strongroom_server::{
    AppState, DatabaseProbe, ManualClock, PasswordCost, ServerOptions, generate_api_token,
    hash_password_with,
};
use strongroom_sources::{Engine, HealthReport};
use tower::ServiceExt;

pub const DB_PASSWORD: &str = "pg-PLANTED-secret-4417";
pub const SMTP_PASSWORD: &str = "smtp-PLANTED-secret-8812";
pub const REPO_PASSWORD: &str = "repo-PLANTED-secret-2290";
pub const WEBHOOK_SECRET: &str = "hook-PLANTED-secret-5531";
pub const PASSWORD: &str = "correct horse battery staple";

pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 22, 5, 20, 43)
        .single()
        .expect("time")
}

/// A probe answering a fixed report; the unreachable one mentions the URL with its password
/// (as a careless tool message could), so the redaction is exercised.
pub struct FakeProbe {
    pub reachable: bool,
    pub url: String,
}

impl DatabaseProbe for FakeProbe {
    fn probe(&self) -> HealthReport {
        let mut r: HealthReport = serde_json::from_value(serde_json::json!({
            "engine": "postgres", "target": self.url.clone(), "checked_at": "2026-11-22T05:20:43Z",
            "reachable": self.reachable, "latency_ms": 0.215, "version": "16.2",
            "size_bytes": 11_156_839u64, "active_connections": 1, "total_connections": 6,
            "max_connections": 100, "waiting_locks": 0, "longest_query_seconds": null,
            "cache_hit_ratio": 0.99, "is_replica": false, "replication_lag_seconds": null,
            "uptime_seconds": 1000, "details": {}, "error": null,
        }))
        .expect("report");
        if !self.reachable {
            r.error = Some(format!("connection to {} refused", self.url));
        }
        let _ = Engine::Postgres;
        r
    }
}

/// A repository answering for any snapshot id: a stream whose content names the id; ids in
/// `missing` are not found, ids in `failing` fail with a message that carries the repository
/// password and the database URL (as a careless error could), so the redaction is exercised.
#[derive(Default)]
pub struct FakeRepo {
    pub missing: std::sync::Mutex<Vec<String>>,
    pub failing: std::sync::Mutex<Vec<String>>,
}

impl FakeRepo {
    pub fn content(id: &str) -> Vec<u8> {
        format!("-- dump of snapshot {id}\n")
            .repeat(100)
            .into_bytes()
    }
    fn check(&self, id: &str) -> Result<(), strongroom_server::RepoAccessError> {
        if self.missing.lock().unwrap().iter().any(|m| m == id) {
            return Err(strongroom_server::RepoAccessError::NotFound);
        }
        if self.failing.lock().unwrap().iter().any(|m| m == id) {
            return Err(strongroom_server::RepoAccessError::Failed(format!(
                "cannot open the repository with password {REPO_PASSWORD} (database postgres://clinic:{DB_PASSWORD}@db.internal:5432/clinic)"
            )));
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl strongroom_server::RepoAccess for FakeRepo {
    async fn snapshot(
        &self,
        id: &str,
    ) -> Result<strongroom_server::SnapshotInfo, strongroom_server::RepoAccessError> {
        self.check(id)?;
        Ok(strongroom_server::SnapshotInfo {
            id: id.to_owned(),
            kind: "stream".into(),
            source: "clinic.sql".into(),
            time: "2026-11-22T05:20:43Z".into(),
            total_bytes: Self::content(id).len() as u64,
        })
    }

    async fn export(
        &self,
        id: &str,
        mut out: Box<dyn std::io::Write + Send>,
    ) -> Result<u64, strongroom_server::RepoAccessError> {
        self.check(id)?;
        let data = Self::content(id);
        tokio::task::spawn_blocking(move || {
            out.write_all(&data)?;
            out.flush()?;
            Ok::<u64, std::io::Error>(data.len() as u64)
        })
        .await
        .unwrap()
        .map_err(|e| strongroom_server::RepoAccessError::Failed(e.to_string()))
    }
}

pub struct TestApp {
    pub state: AppState,
    pub app: Router,
    pub clock: Arc<ManualClock>,
    pub catalog: Catalog,
    pub dir: tempfile::TempDir,
    pub admin: String,
    pub staff: String,
    pub viewer: String,
    pub admin_id: i64,
    pub db_url: String,
}

/// Changes the server options before the state is built.
pub type OptionsHook = Box<dyn Fn(&mut ServerOptions)>;

pub struct Setup {
    pub reachable: bool,
    pub public_url: Option<String>,
    pub trusted_proxies: Vec<String>,
    pub options: Option<OptionsHook>,
    pub repo: Option<Arc<dyn strongroom_server::RepoAccess>>,
    /// `[repository] url` instead of the local folder (e.g. an `s3://` location).
    pub repository_url: Option<String>,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            reachable: true,
            public_url: None,
            trusted_proxies: Vec::new(),
            options: None,
            repo: None,
            repository_url: None,
        }
    }
}

pub async fn app() -> TestApp {
    app_with(Setup::default()).await
}

pub async fn app_with(setup: Setup) -> TestApp {
    let dir = tempfile::tempdir().expect("tempdir");
    let repo_dir = dir.path().join("repository");
    std::fs::create_dir_all(repo_dir.join("data")).expect("repo dir");
    std::fs::write(repo_dir.join("data").join("pack"), vec![0u8; 4096]).expect("pack");
    let db_url = format!("postgres://clinic:{DB_PASSWORD}@db.internal:5432/clinic");
    let public = setup
        .public_url
        .map(|u| format!("public_url = \"{u}\"\n"))
        .unwrap_or_default();
    let proxies = setup
        .trusted_proxies
        .iter()
        .map(|p| format!("\"{p}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let toml = format!(
        r#"
catalog = "sqlite://{catalog}"
timezone = "Asia/Manila"

[repository]
{location}
password = "{REPO_PASSWORD}"

[[database]]
name = "clinic"
url = "{db_url}"

[[media]]
name = "uploads"
path = "{media}"

[notify.email]
to = ["ops@example.org"]
from = "strongroom@example.org"
host = "smtp.example.org"
port = 587
user = "strongroom"
password = "{SMTP_PASSWORD}"

[[notify.webhooks]]
url = "https://hooks.example.org/services/T000/B000/XXXX"
secret = "{WEBHOOK_SECRET}"

[server]
listen = "127.0.0.1:8080"
{public}trusted_proxies = [{proxies}]
session_idle_timeout = "30m"
session_absolute_timeout = "12h"
"#,
        catalog = dir.path().join("catalog.db").display(),
        location = match &setup.repository_url {
            Some(url) => format!("url = \"{url}\""),
            None => format!("path = \"{}\"", repo_dir.display()),
        },
        media = dir.path().join("media").display(),
    );
    let env: [(&str, &str); 0] = [];
    let config = strongroom_config::Config::from_toml_str(&toml, None, &env).expect("config");
    let catalog = Catalog::connect(&format!(
        "sqlite://{}",
        dir.path().join("catalog.db").display()
    ))
    .await
    .expect("catalog");
    let clock = Arc::new(ManualClock::new(t0()));
    let mut options = ServerOptions::from_config(&config);
    options.health_cache_ttl = std::time::Duration::ZERO;
    options.auth_cache_ttl = std::time::Duration::ZERO;
    options.probe_cache_ttl = std::time::Duration::ZERO;
    options.disk_cache_ttl = std::time::Duration::ZERO;
    options.event_poll_interval = std::time::Duration::from_millis(50);
    if let Some(f) = &setup.options {
        f(&mut options);
    }
    let probe: Arc<dyn DatabaseProbe> = Arc::new(FakeProbe {
        reachable: setup.reachable,
        url: db_url.clone(),
    });
    let mut builder = AppState::builder(catalog.clone(), config)
        .clock(clock.clone())
        .options(options)
        .database_probes(vec![("clinic".to_owned(), probe)]);
    if let Some(r) = setup.repo {
        builder = builder.repository(r);
    }
    let state = builder.build();
    let mut tokens = Vec::new();
    let mut admin_id = 0;
    for (name, role) in [
        ("admin", Role::Admin),
        ("staff", Role::Staff),
        ("viewer", Role::Viewer),
    ] {
        let hash = hash_password_with(PASSWORD, PasswordCost::insecure_fast()).expect("hash");
        let u = catalog
            .users()
            .create(
                &NewUser {
                    username: name.into(),
                    password_hash: hash,
                    role,
                },
                t0(),
            )
            .await
            .expect("user");
        if role == Role::Admin {
            admin_id = u.id;
        }
        let (token, token_hash) = generate_api_token().expect("token");
        catalog
            .tokens()
            .create(
                &NewToken {
                    user_id: u.id,
                    name: format!("{name}-token"),
                    token_hash,
                    scopes: vec![],
                    expires_at: None,
                },
                t0(),
            )
            .await
            .expect("token");
        tokens.push(token);
    }
    let app = strongroom_server::app(state.clone());
    TestApp {
        state,
        app,
        clock,
        catalog,
        dir,
        admin: tokens[0].clone(),
        staff: tokens[1].clone(),
        viewer: tokens[2].clone(),
        admin_id,
        db_url,
    }
}

pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "not JSON ({e}): {} {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

pub struct Req {
    pub method: Method,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<Value>,
    pub peer: Option<SocketAddr>,
}

impl Req {
    pub fn new(method: Method, path: &str) -> Self {
        Req {
            method,
            path: path.into(),
            headers: Vec::new(),
            body: None,
            peer: Some("192.0.2.10:5555".parse().unwrap()),
        }
    }
    pub fn get(path: &str) -> Self {
        Self::new(Method::GET, path)
    }
    pub fn post(path: &str) -> Self {
        Self::new(Method::POST, path)
    }
    pub fn token(self, t: &str) -> Self {
        self.header("authorization", &format!("Token {t}"))
    }
    pub fn bearer(self, t: &str) -> Self {
        self.header("authorization", &format!("Bearer {t}"))
    }
    pub fn header(mut self, k: &str, v: &str) -> Self {
        self.headers.push((k.into(), v.into()));
        self
    }
    pub fn json(mut self, v: Value) -> Self {
        self.body = Some(v);
        self
    }
    pub fn peer(mut self, p: &str) -> Self {
        self.peer = Some(p.parse().unwrap());
        self
    }
}

impl TestApp {
    pub async fn send(&self, r: Req) -> Resp {
        let mut b = Request::builder().method(r.method).uri(&r.path);
        for (k, v) in &r.headers {
            b = b.header(k, v);
        }
        let body = match &r.body {
            Some(v) => {
                b = b.header("content-type", "application/json");
                Body::from(serde_json::to_vec(v).unwrap())
            }
            None => Body::empty(),
        };
        let mut req = b.body(body).unwrap();
        if let Some(p) = r.peer {
            req.extensions_mut().insert(ConnectInfo(p));
        }
        let resp = self.app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = axum::body::to_bytes(resp.into_body(), 64 * 1024 * 1024)
            .await
            .unwrap()
            .to_vec();
        Resp {
            status,
            headers,
            body,
        }
    }

    /// A job in the catalog: enqueued, leased, heartbeat and finished as asked.
    pub async fn job(
        &self,
        kind: strongroom_catalog::JobKind,
        source: &str,
        status: strongroom_catalog::JobStatus,
        created: DateTime<Utc>,
    ) -> i64 {
        use strongroom_catalog::{JobOutcome, JobStatus};
        let jobs = self.catalog.jobs();
        let mut new = NewJob::new(kind, source, "admin");
        new.metadata = serde_json::json!({"sources": []});
        let j = jobs.enqueue(&new, created).await.expect("enqueue");
        if status == JobStatus::Queued {
            return j.id;
        }
        // The catalog leases the oldest queued job: a job the server queued (a forget after a
        // delete, a verification…) must be taken care of first (see `work_off`).
        let leased = jobs
            .lease_next("w1", created)
            .await
            .expect("lease")
            .expect("job");
        assert_eq!(
            leased.id, j.id,
            "job {} is queued ahead of this one; run `work_off` first",
            leased.id
        );
        if status == JobStatus::InProgress {
            return j.id;
        }
        let mut o = JobOutcome::new(status);
        o.bytes_read = Some(3 * 1024 * 1024);
        o.bytes_stored = Some(1024 * 1024);
        if matches!(status, JobStatus::Success | JobStatus::Warning) {
            o.snapshot_ids = vec![format!("{:064x}", j.id)];
        }
        if status == JobStatus::Failed {
            o.error_message = Some("pg_dump exited with status 1".into());
        }
        jobs.finish(j.id, "w1", &o, created + chrono::Duration::seconds(42))
            .await
            .expect("finish");
        j.id
    }

    /// Plays the worker for every queued job: leases each and finishes it with `status`.
    /// Returns the jobs as they were leased.
    pub async fn work_off(
        &self,
        status: strongroom_catalog::JobStatus,
    ) -> Vec<strongroom_catalog::Job> {
        let jobs = self.catalog.jobs();
        let now = self.state.now();
        let mut out = Vec::new();
        while let Some(j) = jobs.lease_next("w-test", now).await.expect("lease") {
            jobs.finish(
                j.id,
                "w-test",
                &strongroom_catalog::JobOutcome::new(status),
                now,
            )
            .await
            .expect("finish");
            out.push(j);
        }
        out
    }
}
