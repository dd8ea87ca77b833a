//! The shared state of every request: the catalog, the configuration, the clock, the
//! repository (for downloads), database probes, caches and the in-memory security state
//! (login throttle, restore confirmation tokens).
//!
//! Everything a test needs to control is injectable here (clock, repository, probes,
//! timeouts). What this module must not do: hold a secret in a form that `Debug` prints, or
//! start background work on its own (caches are filled on demand).

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use strongroom_catalog::Catalog;
use strongroom_config::{Config, IpNet, RepoLocation};
use strongroom_sources::HealthReport;

use crate::auth::throttle::{Throttle, ThrottlePolicy};
use crate::repo::RepoAccess;
use crate::settings::RuntimeSettings;

/// Where the server reads the time; tests inject a [`ManualClock`].
pub trait Clock: Send + Sync {
    /// The current instant.
    fn now(&self) -> DateTime<Utc>;
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that only moves when told to (tests).
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<DateTime<Utc>>,
}

impl ManualClock {
    /// A clock standing at `t`.
    pub fn new(t: DateTime<Utc>) -> Self {
        ManualClock { now: Mutex::new(t) }
    }

    /// Sets the time.
    pub fn set(&self, t: DateTime<Utc>) {
        if let Ok(mut g) = self.now.lock() {
            *g = t;
        }
    }

    /// Moves the time forward.
    pub fn advance(&self, d: chrono::Duration) {
        if let Ok(mut g) = self.now.lock() {
            *g += d;
        }
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        self.now.lock().map(|g| *g).unwrap_or_else(|_| Utc::now())
    }
}

/// Probes one database's health (the default calls `strongroom_sources` in a blocking task).
pub trait DatabaseProbe: Send + Sync {
    /// Probes now. Never fails: an unreachable database is a report with `reachable: false`.
    fn probe(&self) -> HealthReport;
}

struct SourceProbe(strongroom_sources::DatabaseSource);

impl DatabaseProbe for SourceProbe {
    fn probe(&self) -> HealthReport {
        self.0.probe()
    }
}

/// Tunables of the server; [`ServerOptions::from_config`] suits a service.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Session cookies get `Secure` and the `__Host-` prefix (TLS, or a loopback listener,
    /// which browsers treat as secure).
    pub secure_cookies: bool,
    /// Send `Strict-Transport-Security` (the public URL is https).
    pub hsts: bool,
    /// Proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<IpNet>,
    /// A session ends after this long without a request.
    pub session_idle_timeout: Duration,
    /// A session ends this long after login.
    pub session_absolute_timeout: Duration,
    /// How long health answers are reused (0: never).
    pub health_cache_ttl: Duration,
    /// How long a verified API token is trusted without re-reading the catalog (0: never).
    /// Revocations through this server take effect at once; elsewhere within this delay.
    pub auth_cache_ttl: Duration,
    /// How long a database probe result is reused.
    pub probe_cache_ttl: Duration,
    /// How long the repository's disk usage is reused.
    pub disk_cache_ttl: Duration,
    /// Login throttling.
    pub login_throttle: ThrottlePolicy,
    /// The longest a request may take to produce its response head.
    pub request_timeout: Duration,
    /// Concurrent `/api/v1/events` streams.
    pub max_event_streams: usize,
    /// How often event streams poll the catalog.
    pub event_poll_interval: Duration,
    /// The longest one event stream lives (clients reconnect).
    pub event_stream_max_age: Duration,
    /// How long a restore confirmation token is valid.
    pub restore_token_ttl: Duration,
    /// An in-progress job whose heartbeat is older than this many minutes counts as stuck
    /// (the default of the run-time setting).
    pub stuck_after_minutes: u32,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            secure_cookies: true,
            hsts: false,
            trusted_proxies: Vec::new(),
            session_idle_timeout: Duration::from_secs(30 * 60),
            session_absolute_timeout: Duration::from_secs(12 * 3600),
            health_cache_ttl: Duration::from_secs(1),
            auth_cache_ttl: Duration::from_secs(2),
            probe_cache_ttl: Duration::from_secs(15),
            disk_cache_ttl: Duration::from_secs(60),
            login_throttle: ThrottlePolicy::default(),
            request_timeout: Duration::from_secs(30),
            max_event_streams: 64,
            event_poll_interval: Duration::from_secs(1),
            event_stream_max_age: Duration::from_secs(3600),
            restore_token_ttl: Duration::from_secs(300),
            stuck_after_minutes: 10,
        }
    }
}

impl ServerOptions {
    /// Options from the `[server]` section.
    pub fn from_config(config: &Config) -> Self {
        let https = config
            .server
            .public_url
            .as_deref()
            .is_some_and(|u| u.to_ascii_lowercase().starts_with("https://"));
        let loopback = config.server.listen.ip().is_loopback();
        ServerOptions {
            secure_cookies: https || loopback,
            hsts: https,
            trusted_proxies: config.server.trusted_proxies.clone(),
            session_idle_timeout: config.server.session_idle_timeout,
            session_absolute_timeout: config.server.session_absolute_timeout,
            ..ServerOptions::default()
        }
    }
}

/// Replaces known secrets in text bound for a log line or an answer.
#[derive(Clone, Default)]
pub struct Redactor {
    secrets: Vec<String>,
}

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Redactor({} secrets)", self.secrets.len())
    }
}

impl Redactor {
    /// Collects every secret of the configuration: database URLs and their passwords, the
    /// SMTP password, the repository password, webhook URLs and keys.
    pub fn from_config(config: &Config) -> Self {
        let mut secrets = Vec::new();
        let add_url = |url: &str, secrets: &mut Vec<String>| {
            secrets.push(url.to_owned());
            if let Ok(u) = strongroom_sources::DatabaseUrl::parse(url)
                && let Some(p) = u.password()
            {
                secrets.push(p.expose().to_owned());
            }
        };
        for db in &config.databases {
            add_url(db.url.expose(), &mut secrets);
            if let Some(d) = &db.drill_url {
                add_url(d.expose(), &mut secrets);
            }
        }
        if let strongroom_config::CatalogConfig::Postgres { url } = &config.catalog {
            add_url(url.expose(), &mut secrets);
        }
        if let strongroom_config::PasswordSource::Inline(s) = &config.repository.password {
            secrets.push(s.expose().to_owned());
        }
        if let Some(e) = &config.notify.email
            && let Some(p) = &e.password
        {
            secrets.push(p.expose().to_owned());
        }
        for w in &config.notify.webhooks {
            secrets.push(w.url.expose().to_owned());
            if let Some(s) = &w.secret {
                secrets.push(s.expose().to_owned());
            }
        }
        Self::new(secrets)
    }

    /// A redactor for these secrets (empty and very short ones are ignored).
    pub fn new(secrets: Vec<String>) -> Self {
        let mut secrets: Vec<String> = secrets.into_iter().filter(|s| s.len() >= 4).collect();
        // Longest first, so a URL is replaced whole before the password inside it.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.dedup();
        Redactor { secrets }
    }

    /// `text` with every secret replaced by `***`.
    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for s in &self.secrets {
            if out.contains(s.as_str()) {
                out = out.replace(s.as_str(), "***");
            }
        }
        out
    }

    /// Redacts every string inside `v` in place.
    pub fn redact_json(&self, v: &mut serde_json::Value) {
        match v {
            serde_json::Value::String(s) if self.secrets.iter().any(|x| s.contains(x.as_str())) => {
                *s = self.redact(s);
            }
            serde_json::Value::Array(a) => a.iter_mut().for_each(|x| self.redact_json(x)),
            serde_json::Value::Object(o) => o.values_mut().for_each(|x| self.redact_json(x)),
            _ => {}
        }
    }
}

/// A pending restore, waiting for its confirmation.
#[derive(Debug, Clone)]
pub(crate) struct PendingRestore {
    pub(crate) job_id: i64,
    pub(crate) user_id: i64,
    pub(crate) target: serde_json::Value,
    pub(crate) expires_at: DateTime<Utc>,
}

pub(crate) struct Inner {
    pub(crate) catalog: Catalog,
    pub(crate) config: Arc<Config>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) repo: Option<Arc<dyn RepoAccess>>,
    pub(crate) probes: Vec<(String, Arc<dyn DatabaseProbe>)>,
    pub(crate) options: ServerOptions,
    pub(crate) redactor: Redactor,
    pub(crate) throttle: Throttle,
    pub(crate) restores: Mutex<HashMap<String, PendingRestore>>,
    pub(crate) settings: RwLock<Option<RuntimeSettings>>,
    pub(crate) caches: Caches,
    pub(crate) token_cache: Mutex<HashMap<String, (Instant, crate::auth::Principal)>>,
    pub(crate) event_streams: Arc<tokio::sync::Semaphore>,
}

#[derive(Default)]
pub(crate) struct Caches {
    pub(crate) responses: Mutex<HashMap<&'static str, (Instant, bytes::Bytes)>>,
    pub(crate) probes: Mutex<HashMap<String, (Instant, HealthReport)>>,
    pub(crate) disk: Mutex<Option<(Instant, crate::health::DiskUsage)>>,
}

/// The state shared by every request. Cloning is cheap.
#[derive(Clone)]
pub struct AppState {
    pub(crate) inner: Arc<Inner>,
}

impl fmt::Debug for AppState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppState")
            .field("catalog", &self.inner.catalog)
            .field("repository", &self.inner.repo.is_some())
            .field("databases", &self.inner.probes.len())
            .field("options", &self.inner.options)
            .finish()
    }
}

/// Builds an [`AppState`].
pub struct AppStateBuilder {
    catalog: Catalog,
    config: Arc<Config>,
    clock: Arc<dyn Clock>,
    repo: Option<Arc<dyn RepoAccess>>,
    probes: Option<Vec<(String, Arc<dyn DatabaseProbe>)>>,
    options: ServerOptions,
}

impl AppStateBuilder {
    /// Uses this clock (default: the system clock).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Serves downloads and snapshot checks from this repository (default: none; those
    /// endpoints answer 503).
    pub fn repository(mut self, repo: Arc<dyn RepoAccess>) -> Self {
        self.repo = Some(repo);
        self
    }

    /// Probes databases with these (default: one real probe per configured database).
    pub fn database_probes(mut self, probes: Vec<(String, Arc<dyn DatabaseProbe>)>) -> Self {
        self.probes = Some(probes);
        self
    }

    /// Uses these options (default: [`ServerOptions::from_config`]).
    pub fn options(mut self, options: ServerOptions) -> Self {
        self.options = options;
        self
    }

    /// The state.
    pub fn build(self) -> AppState {
        let probes = self.probes.unwrap_or_else(|| {
            self.config
                .databases
                .iter()
                .filter_map(|d| {
                    let src = strongroom_sources::DatabaseSource::parse(d.url.expose()).ok()?;
                    let p: Arc<dyn DatabaseProbe> = Arc::new(SourceProbe(src));
                    Some((d.name.clone(), p))
                })
                .collect()
        });
        let redactor = Redactor::from_config(&self.config);
        let throttle = Throttle::new(self.options.login_throttle.clone());
        let streams = self.options.max_event_streams;
        AppState {
            inner: Arc::new(Inner {
                catalog: self.catalog,
                config: self.config,
                clock: self.clock,
                repo: self.repo,
                probes,
                options: self.options,
                redactor,
                throttle,
                restores: Mutex::new(HashMap::new()),
                settings: RwLock::new(None),
                caches: Caches::default(),
                token_cache: Mutex::new(HashMap::new()),
                event_streams: Arc::new(tokio::sync::Semaphore::new(streams)),
            }),
        }
    }
}

impl AppState {
    /// A builder over an open catalog and a validated configuration.
    pub fn builder(catalog: Catalog, config: Config) -> AppStateBuilder {
        let options = ServerOptions::from_config(&config);
        AppStateBuilder {
            catalog,
            config: Arc::new(config),
            clock: Arc::new(SystemClock),
            repo: None,
            probes: None,
            options,
        }
    }

    /// The catalog.
    pub fn catalog(&self) -> &Catalog {
        &self.inner.catalog
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The options.
    pub fn options(&self) -> &ServerOptions {
        &self.inner.options
    }

    /// Now, by the state's clock.
    pub fn now(&self) -> DateTime<Utc> {
        self.inner.clock.now()
    }

    /// `text` with every configured secret replaced.
    pub fn redact(&self, text: &str) -> String {
        self.inner.redactor.redact(text)
    }

    /// A job as it may be shown: its message and metadata come from workers and tools, so a
    /// configured secret that slipped into them is replaced.
    pub(crate) fn redact_job(&self, mut job: strongroom_catalog::Job) -> strongroom_catalog::Job {
        if let Some(m) = &job.error_message {
            job.error_message = Some(self.redact(m));
        }
        if let Some(p) = &mut job.progress {
            p.phase = self.redact(&p.phase);
        }
        self.inner.redactor.redact_json(&mut job.metadata);
        job
    }

    /// The local folder of the repository, if it is local.
    pub(crate) fn repository_path(&self) -> Option<std::path::PathBuf> {
        match &self.inner.config.repository.location {
            Some(RepoLocation::Path(p)) => Some(p.clone()),
            _ => None,
        }
    }

    /// A 500 whose detail is logged redacted.
    pub(crate) fn internal(&self, detail: impl fmt::Display) -> crate::error::ApiError {
        crate::error::ApiError::internal(&self.redact(&detail.to_string()))
    }

    /// Appends an audit entry; a failure is logged (the action itself already happened).
    pub(crate) async fn audit(
        &self,
        actor: &str,
        action: &str,
        target: Option<String>,
        details: serde_json::Value,
        ip: Option<IpAddr>,
    ) {
        let entry = strongroom_catalog::NewAuditEntry {
            actor: actor.to_owned(),
            action: action.to_owned(),
            target,
            details,
            ip: ip.map(|i| i.to_string()),
        };
        if let Err(e) = self.inner.catalog.audit().append(&entry, self.now()).await {
            tracing::error!(error = %self.redact(&e.to_string()), action, "could not write the audit log");
        }
    }

    /// Forgets cached answers (after a change made through this server).
    pub(crate) fn invalidate_caches(&self) {
        if let Ok(mut g) = self.inner.caches.responses.lock() {
            g.clear();
        }
    }
}
