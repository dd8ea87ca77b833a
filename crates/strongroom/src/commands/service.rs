//! `strongroom serve` and what the service commands share: the configuration, the catalog,
//! the repository opener and the job runner built from them.
//!
//! The service is three loops over one catalog: the scheduler (every few seconds: recover
//! jobs whose heartbeat stopped, enqueue due scheduled runs), `[jobs] workers` workers (lease
//! a job, run it, repeat) and, unless `--no-http`, the HTTP API. What it must not do: run a
//! job outside the catalog's lease (every job is leased, heartbeated and finished there), or
//! print a secret (only source names and redacted URLs reach the log).

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use strongroom_catalog::Catalog;
use strongroom_config::{CatalogConfig, Config, ProcessEnv, RepoLocation};
use strongroom_jobs::runner::{
    JobSources, Outcome, RepoOpener, Runner, RunnerSettings, ScheduleDefinition, SystemClock,
    sync_schedules,
};
use strongroom_repo::Credential;
use strongroom_storage::Storage;
use strongroom_storage::local::LocalStorage;
use strongroom_storage::s3::{S3Settings, S3Storage};

use crate::cli::{Global, ServeArgs};

/// The configuration: `--config` / `STRONGROOM_CONFIG`, the environment and the defaults;
/// `--repo` overrides the repository's location. Read once per process (later calls get
/// the same).
pub fn load_config(g: &Global) -> Result<Config> {
    if let Some(c) = g.loaded_config.get() {
        return Ok(c.clone());
    }
    let mut config = Config::load(g.config.as_deref(), &ProcessEnv)?;
    if let Some(repo) = g.repo.as_deref() {
        config.repository.location = Some(repo_flag_location(repo)?);
    }
    Ok(g.loaded_config.get_or_init(|| config).clone())
}

/// The location `--repo` names: a URL (`file://`, `s3://`) or a local folder.
pub fn repo_flag_location(repo: &str) -> Result<RepoLocation> {
    if repo.contains("://") {
        RepoLocation::parse_url(repo).with_context(|| format!("--repo {repo:?}"))
    } else {
        Ok(RepoLocation::Path(repo.into()))
    }
}

/// The catalog URL of a configuration (a secret when it is PostgreSQL: never print it).
fn catalog_url(config: &Config) -> String {
    match &config.catalog {
        CatalogConfig::Sqlite { path } => format!("sqlite://{}", path.display()),
        CatalogConfig::Postgres { url } => url.expose().to_owned(),
    }
}

/// Where the catalog is, fit to print.
pub fn catalog_shown(config: &Config) -> String {
    match &config.catalog {
        CatalogConfig::Sqlite { path } => path.display().to_string(),
        CatalogConfig::Postgres { url } => url.redacted().to_owned(),
    }
}

/// Opens (creating if needed) the configured catalog.
pub async fn open_catalog(config: &Config) -> Result<Catalog> {
    Catalog::connect(&catalog_url(config))
        .await
        .with_context(|| format!("opening the catalog {}", catalog_shown(config)))
}

/// The repository's storage.
pub fn repo_storage(config: &Config) -> Result<Arc<dyn Storage>> {
    location_storage(config.repository_location()?)
}

/// The storage at a location: a local folder, or an S3 bucket reached with the standard
/// `AWS_*` variables (see `S3Settings::from_env`).
pub fn location_storage(location: &RepoLocation) -> Result<Arc<dyn Storage>> {
    match location {
        RepoLocation::Path(p) => Ok(Arc::new(LocalStorage::new(p.clone()))),
        RepoLocation::S3 { bucket, prefix } => {
            let settings = S3Settings::from_env(bucket, prefix, |name| std::env::var(name).ok())
                .with_context(|| format!("repository {location}"))?;
            Ok(Arc::new(
                S3Storage::new(settings).with_context(|| format!("repository {location}"))?,
            ))
        }
    }
}

/// What opens the repository: `--master-key-file`, else the configuration's (`password`,
/// `password_file`, `password_env`, `master_key_file`, `STRONGROOM_PASSWORD`), else
/// `--password-file`, else a prompt.
pub fn repo_credential(g: &Global, config: &Config) -> Result<Credential> {
    if g.master_key_file.is_none() && g.password_file.is_none() {
        if let Some(f) = config.repository.master_key_file() {
            return crate::password::master_key_credential(f);
        }
        if let Some(secret) = config.repository.password(&ProcessEnv)? {
            if secret.is_empty() {
                bail!("the configured repository password is empty");
            }
            return Ok(Credential::Password(secret.expose().as_bytes().to_vec()));
        }
    }
    super::flag_credential(g)
}

/// A repository opener, after checking that the repository opens with its credential.
pub async fn repo_opener(g: &Global, config: &Config) -> Result<RepoOpener> {
    let storage = repo_storage(config)?;
    let credential = repo_credential(g, config)?;
    let opener = RepoOpener::new(storage, credential).with_cache_dir(&config.cache_dir);
    opener.open().await.with_context(|| {
        format!(
            "opening repository {} (create it with `strongroom init`)",
            opener.location()
        )
    })?;
    Ok(opener)
}

/// This machine's name, for worker ids.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

/// A worker id unique across instances: host, process and worker number.
pub fn worker_id(n: u32) -> String {
    format!("{}:{}:{n}", hostname(), std::process::id())
}

/// A runner over the configured catalog, repository and sources.
pub async fn runner(g: &Global, config: &Config, catalog: Catalog) -> Result<Runner> {
    let opener = repo_opener(g, config).await?;
    let sources = JobSources::from_config(config)?;
    Ok(Runner::new(
        catalog,
        opener,
        sources,
        worker_id(0),
        Arc::new(SystemClock),
    )
    .with_settings(RunnerSettings::from_config(&config.jobs)))
}

/// Brings the catalog's schedules in step with the configuration file.
pub async fn sync_configured(config: &Config, catalog: &Catalog) -> Result<()> {
    let defs: Vec<ScheduleDefinition> = config
        .schedules
        .iter()
        .map(ScheduleDefinition::from_config)
        .collect();
    let report = sync_schedules(catalog, &defs, chrono::Utc::now())
        .await
        .context("syncing the configured schedules into the catalog")?;
    for name in &report.created {
        eprintln!("schedule {name:?} added from the configuration");
    }
    for name in &report.updated {
        eprintln!("schedule {name:?} updated from the configuration");
    }
    Ok(())
}

/// How long a worker sleeps when the queue is empty.
const IDLE_POLL: Duration = Duration::from_millis(500);
/// How often the scheduler ticks.
const TICK: Duration = Duration::from_secs(5);

fn log(line: &str) {
    eprintln!("{} {line}", chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ"));
}

/// `strongroom serve`.
pub async fn serve(g: &Global, a: ServeArgs) -> Result<i32> {
    let mut config = load_config(g)?;
    if let Some(listen) = a.listen {
        config.server.listen = listen;
    }
    let workers = a.workers.unwrap_or(config.jobs.workers).max(1);
    let catalog = open_catalog(&config).await?;
    sync_configured(&config, &catalog).await?;
    let runner = runner(g, &config, catalog.clone()).await?;
    log(&format!(
        "strongroom serve: repository {}, catalog {}, {} source(s), {workers} worker(s)",
        runner.repo().location(),
        catalog_shown(&config),
        runner.sources().names().len(),
    ));
    if runner.sources().is_empty() {
        log(
            "warning: no database or media folder is configured (set DATABASE_URL / MEDIA_ROOT or [[database]] / [[media]])",
        );
    }

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();

    // Job events to the log.
    let mut events = runner.subscribe();
    let logger = tokio::spawn(async move {
        loop {
            match events.recv().await {
                Ok(e) if e.progress.is_none() || e.message.is_some() => {
                    let msg = e.message.map(|m| format!(": {m}")).unwrap_or_default();
                    log(&format!(
                        "job {} {} {} ({}) {}{msg}",
                        e.job_id, e.kind, e.source, e.started_by, e.status
                    ));
                }
                Ok(_) => {}
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            }
        }
    });

    // Scheduler: recovery and due runs.
    // The loop's first round, at once, recovers jobs a previous run left in progress.
    {
        let runner = runner.clone();
        let mut stop = stop_rx.clone();
        tasks.spawn(async move {
            loop {
                let now = runner.now();
                match runner.recover(now).await {
                    Ok(r) => {
                        for j in &r.interrupted {
                            log(&format!(
                                "job {} ({} {}) was interrupted (its heartbeat stopped): marked failed",
                                j.id, j.kind, j.source
                            ));
                        }
                        for (old, new) in &r.retried {
                            log(&format!("job {new} queued: retry of interrupted job {old}"));
                        }
                    }
                    Err(e) => log(&format!("error: recovering interrupted jobs: {e}")),
                }
                match runner.tick(now).await {
                    Ok(t) => {
                        for r in &t.enqueued {
                            log(&format!(
                                "schedule {:?}: job {} queued (planned for {})",
                                r.schedule, r.job_id, r.planned_for
                            ));
                        }
                        for (s, id) in &t.already_active {
                            log(&format!(
                                "schedule {s:?}: not queued, job {id} of the same kind is still active"
                            ));
                        }
                        for m in &t.missed {
                            log(&format!(
                                "schedule {:?}: the run planned for {} was missed (older than its catch-up window)",
                                m.schedule, m.planned_for
                            ));
                        }
                        for (s, why) in &t.invalid {
                            log(&format!("schedule {s:?} cannot run: {why}"));
                        }
                    }
                    Err(e) => log(&format!("error: scheduler tick: {e}")),
                }
                tokio::select! {
                    () = tokio::time::sleep(TICK) => {}
                    _ = stop.wait_for(|s| *s) => break,
                }
            }
        });
    }

    // Workers, on their own runtime whose threads run at a lower CPU priority: on a small
    // machine a backup's hashing and compression must not delay the API's answers.
    let jobs_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(usize::try_from(workers).unwrap_or(1).clamp(1, 4))
        .thread_name("strongroom-job")
        .on_thread_start(lower_priority)
        .enable_all()
        .build()
        .context("starting the job runtime")?;
    for n in 0..workers {
        let worker = runner.for_worker(worker_id(n));
        let mut stop = stop_rx.clone();
        tasks.spawn_on(
            async move {
                loop {
                    if *stop.borrow() {
                        break;
                    }
                    let idle = match worker.run_one().await {
                        Ok(Outcome::TaskCompleted(_)) => false,
                        Ok(Outcome::EmptyQueue) => true,
                        Err(e) => {
                            log(&format!("error: worker {}: {e}", worker.worker_id()));
                            true
                        }
                    };
                    if idle {
                        tokio::select! {
                            () = tokio::time::sleep(IDLE_POLL) => {}
                            _ = stop.wait_for(|s| *s) => break,
                        }
                    }
                }
            },
            jobs_rt.handle(),
        );
    }

    // HTTP.
    let http = if a.no_http {
        None
    } else {
        let listener = tokio::net::TcpListener::bind(config.server.listen)
            .await
            .with_context(|| format!("listening on {}", config.server.listen))?;
        let repo = runner.repo().open().await?;
        let state = strongroom_server::AppState::builder(catalog.clone(), config.clone())
            .repository(Arc::new(strongroom_server::RepositoryAccess::new(repo)))
            .build();
        let mut stop = stop_rx.clone();
        log(&format!(
            "listening on http://{}",
            listener.local_addr().unwrap_or(config.server.listen)
        ));
        Some(tokio::spawn(strongroom_server::serve(
            listener,
            state,
            async move {
                let _ = stop.wait_for(|s| *s).await;
            },
        )))
    };

    shutdown_signal().await;
    log("stopping: running jobs are marked interrupted (scheduled ones run again)");
    runner.abort_running();
    stop_tx.send_replace(true);
    let drain = async {
        while tasks.join_next().await.is_some() {}
        if let Some(h) = http
            && let Ok(Err(e)) = h.await
        {
            log(&format!("error: HTTP server: {e}"));
        }
    };
    if tokio::time::timeout(Duration::from_secs(30), drain)
        .await
        .is_err()
    {
        log("some tasks did not stop within 30 s; exiting");
    }
    // Let the last events reach the log; the logger itself ends only with every runner.
    tokio::time::sleep(Duration::from_millis(100)).await;
    logger.abort();
    jobs_rt.shutdown_background();
    catalog.close().await;
    log("stopped");
    Ok(0)
}

/// Lowers the calling thread's CPU priority (nice 10); a failure only costs responsiveness.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        let tid = rustix::thread::gettid();
        let _ = rustix::process::setpriority_process(Some(tid), 10);
    }
}

/// Waits for SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
