//! The durable job runner: leases jobs from the catalog, runs them end to end against the
//! repository, heartbeats while they run, and records how they ended; plus the scheduler tick
//! that turns due schedules into jobs, start-up recovery of interrupted jobs, and retention
//! after scheduled backups.
//!
//! - [`Runner::run_one`] leases the oldest queued job and runs it: full, database and media
//!   backups ([`crate::full::run`] with the job's options), verification
//!   ([`strongroom_repo::checker::check`] with a rotating read-data share whose position is
//!   kept in the catalog), test restores (the newest backups, or the snapshots a job names),
//!   restores (`runner/restore.rs`: next to the live data, or replacing it after safety backups),
//!   prune, and forget (retention, or the snapshots of a backup deleted by id). A job whose
//!   options cannot be read fails without doing anything. While it runs, a
//!   ticker heartbeats with progress; a cancellation request, a lost lease, the job's time
//!   limit or [`Runner::abort_running`] stops it. The status is `success` only when every part
//!   was saved (the dump tool exited 0, the snapshot committed) and, if asked, verified;
//!   `warning` when files were skipped or a folder was empty; `failed` otherwise, with a
//!   message that says what to do.
//! - [`Runner::recover`] marks jobs whose heartbeat stopped as failed ("interrupted by a
//!   restart") and re-enqueues scheduled ones once.
//! - [`Runner::tick`] claims each due schedule's run with a compare-and-set (so several
//!   instances run it once) and enqueues it; runs missed while nothing ticked are made up
//!   once if still within the schedule's catch-up window.
//!
//! Every "now" comes from the injected [`Clock`]; only the pacing of heartbeats (how often,
//! in real time) uses `tokio::time`. What this module must not do: decide anything with a
//! read-then-write on the catalog (the catalog's atomic operations arbitrate), hold a
//! repository lock past the end of a job, or let a secret reach a job's message or metadata
//! (only source names are recorded, never URLs).

pub mod cache;
pub mod clock;
mod execute;
mod heartbeat;
pub mod options;
mod restore;
pub mod retention;
mod scheduling;
pub mod sources;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use strongroom_catalog::{
    Catalog, CatalogError, INTERRUPTED_MESSAGE, Job, JobKind, JobOutcome, JobStatus, NewJob,
    Progress,
};
use strongroom_repo::{Credential, RepoError, Repository};
use strongroom_storage::Storage;
use tokio::sync::{broadcast, watch};

pub use clock::{Clock, ManualClock, SystemClock};
pub use options::{
    JobOptions, RestoreTarget, RetentionPolicy, ScheduleSettings, job_kind, source_key,
};
pub use scheduling::{
    MissedRun, RecoveryReport, ScheduleDefinition, ScheduledRun, SyncReport, TickReport,
    create_schedule, enqueue_job, enqueue_scheduled, set_schedule_enabled, sync_schedules,
};
pub use sources::{JobSources, NamedDatabase, NamedMedia};

use execute::JobCtx;

/// What went wrong in the runner (a job's own failure is recorded on the job, not returned).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunnerError {
    /// The catalog failed.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// The repository failed.
    #[error(transparent)]
    Repo(#[from] RepoError),
    /// An operation failed.
    #[error(transparent)]
    Job(#[from] crate::JobError),
    /// A schedule cannot be used.
    #[error("schedule {name:?}: {message}")]
    Schedule {
        /// The schedule.
        name: String,
        /// What is wrong.
        message: String,
    },
    /// The request cannot be carried out as asked.
    #[error("{0}")]
    Invalid(String),
}

/// What [`Runner::run_one`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A job was leased and run to its end (whatever its status).
    TaskCompleted(i64),
    /// No job was queued.
    EmptyQueue,
}

/// The answer to an enqueue request.
// Not boxed: callers match on `Queued(job)` and use the job; one answer per request.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Enqueued {
    /// A new job was queued.
    Queued(Job),
    /// A job for the same (source, kind) is already queued or in progress.
    AlreadyActive {
        /// Its id.
        existing_job_id: i64,
    },
}

impl Enqueued {
    /// The new job's id, or the active one's.
    #[must_use]
    pub fn job_id(&self) -> i64 {
        match self {
            Enqueued::Queued(j) => j.id,
            Enqueued::AlreadyActive { existing_job_id } => *existing_job_id,
        }
    }
}

/// A job to enqueue.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRequest {
    /// What to do.
    pub kind: JobKind,
    /// How (sources, verify, …).
    pub options: JobOptions,
    /// A user name, or `schedule:<name>`.
    pub started_by: String,
    /// The schedule that asked, if any.
    pub schedule_id: Option<i64>,
}

/// The longest each kind of job may run (seconds); `None`: no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeLimits {
    /// Full, database and media backups.
    pub backup: Option<u64>,
    /// Verifications and test restores.
    pub verify: Option<u64>,
    /// Restores and imports.
    pub restore: Option<u64>,
    /// Prune and forget.
    pub prune: Option<u64>,
}

impl TimeLimits {
    /// The limit of a kind.
    #[must_use]
    pub fn for_kind(&self, kind: JobKind) -> Option<u64> {
        match kind {
            JobKind::Full | JobKind::Database | JobKind::Media => self.backup,
            JobKind::Verification | JobKind::TestRestore => self.verify,
            JobKind::Restore | JobKind::Import => self.restore,
            JobKind::Prune | JobKind::Forget => self.prune,
        }
    }
}

impl Default for TimeLimits {
    fn default() -> Self {
        Self::from(strongroom_config::JobsConfig::default().time_limit)
    }
}

impl From<strongroom_config::TimeLimits> for TimeLimits {
    fn from(t: strongroom_config::TimeLimits) -> Self {
        TimeLimits {
            backup: Some(t.backup.as_secs()),
            verify: Some(t.verify.as_secs()),
            restore: Some(t.restore.as_secs()),
            prune: Some(t.prune.as_secs()),
        }
    }
}

/// How the runner paces and bounds its work.
#[derive(Debug, Clone, PartialEq)]
pub struct RunnerSettings {
    /// Real time between two heartbeats of a running job.
    pub heartbeat_interval: StdDuration,
    /// A job whose heartbeat is older than this (clock time) is taken as interrupted.
    pub heartbeat_timeout: Duration,
    /// Default catch-up window of schedules that name none.
    pub catch_up_window: Duration,
    /// Time limits by kind, recorded on each job when it is enqueued.
    pub time_limits: TimeLimits,
    /// How long (real time) a job waits for a conflicting repository lock before failing.
    pub lock_wait: StdDuration,
}

impl Default for RunnerSettings {
    fn default() -> Self {
        Self::from_config(&strongroom_config::JobsConfig::default())
    }
}

impl RunnerSettings {
    /// The settings of `[jobs]`.
    #[must_use]
    pub fn from_config(jobs: &strongroom_config::JobsConfig) -> Self {
        RunnerSettings {
            heartbeat_interval: jobs.heartbeat(),
            heartbeat_timeout: seconds(jobs.heartbeat_timeout_seconds),
            catch_up_window: seconds(jobs.catch_up_window.as_secs()),
            time_limits: jobs.time_limit.into(),
            lock_wait: StdDuration::from_secs(600),
        }
    }
}

/// A duration of `s` seconds, saturating.
pub(crate) fn seconds(s: u64) -> Duration {
    Duration::try_seconds(i64::try_from(s).unwrap_or(i64::MAX / 1000)).unwrap_or(Duration::MAX)
}

/// Opens the repository for each job: a fresh handle with its own index, so a job never works
/// from an index another job (or instance) made stale.
#[derive(Clone)]
pub struct RepoOpener {
    storage: Arc<dyn Storage>,
    credential: Arc<Credential>,
    /// The local cache folder (decoded snapshots, the folder cache of media backups).
    cache_dir: Option<Arc<std::path::Path>>,
}

impl fmt::Debug for RepoOpener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RepoOpener")
            .field("location", &self.storage.location())
            .finish_non_exhaustive()
    }
}

impl RepoOpener {
    /// An opener for the repository in `storage`, unlocked by a password or a master key
    /// file.
    #[must_use]
    pub fn new(storage: Arc<dyn Storage>, credential: Credential) -> Self {
        RepoOpener {
            storage,
            credential: Arc::new(credential),
            cache_dir: None,
        }
    }

    /// Keeps the repository's local caches under `dir` (see
    /// [`Repository::use_snapshot_cache`]): an unchanged media folder is then backed up
    /// again without reading its parent snapshot's trees.
    #[must_use]
    pub fn with_cache_dir(mut self, dir: &std::path::Path) -> Self {
        self.cache_dir = Some(Arc::from(dir));
        self
    }

    /// Where the repository is.
    #[must_use]
    pub fn location(&self) -> String {
        self.storage.location()
    }

    /// Opens the repository (and loads its index).
    ///
    /// # Errors
    /// Not a repository, a wrong password, or a storage failure.
    pub async fn open(&self) -> Result<Arc<Repository>, RepoError> {
        let mut repo = Repository::open_with(Arc::clone(&self.storage), &self.credential).await?;
        if let Some(dir) = &self.cache_dir {
            repo.use_snapshot_cache(dir);
        }
        Ok(Arc::new(repo))
    }
}

/// Called by the runner around each job; for tests and instrumentation. It must not change
/// the job.
pub trait JobHook: Send + Sync {
    /// Called after the job was leased and its heartbeat started, before its work begins;
    /// the job can be cancelled, time out or be aborted while this runs.
    fn before_execute<'a>(&'a self, job: &'a Job) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>>;
}

/// What a running or finished job reports to subscribers (the server streams these).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobEvent {
    /// The job.
    pub job_id: i64,
    /// Its kind.
    pub kind: JobKind,
    /// Its source key.
    pub source: String,
    /// Who started it.
    pub started_by: String,
    /// Its status: in_progress while it runs, then its final status.
    pub status: JobStatus,
    /// Its progress, while it runs.
    pub progress: Option<Progress>,
    /// Its message, when it ended (or a note from the runner).
    pub message: Option<String>,
    /// When (clock time).
    pub at: DateTime<Utc>,
}

struct Shared {
    catalog: Catalog,
    repo: RepoOpener,
    sources: JobSources,
    clock: Arc<dyn Clock>,
    settings: RunnerSettings,
    hook: Option<Arc<dyn JobHook>>,
    events: broadcast::Sender<JobEvent>,
    abort: watch::Sender<bool>,
}

/// The job runner of one worker. Clones share everything; [`Runner::for_worker`] makes a
/// runner for another worker of the same instance.
#[derive(Clone)]
pub struct Runner {
    shared: Arc<Shared>,
    worker_id: Arc<str>,
}

impl fmt::Debug for Runner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Runner")
            .field("worker_id", &self.worker_id)
            .field("catalog", &self.shared.catalog)
            .field("repo", &self.shared.repo)
            .finish_non_exhaustive()
    }
}

/// Why a running job was stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StopReason {
    /// Someone asked to cancel it.
    Cancelled,
    /// It ran longer than its limit (seconds).
    TimeLimit(u64),
    /// Its lease is no longer ours (its heartbeat came too late and another worker marked it
    /// interrupted, or it was finished elsewhere).
    LeaseLost,
    /// The service is stopping.
    Shutdown,
}

/// Aborts a spawned task when dropped (so a dropped job future takes its heartbeat with it).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

enum Ended {
    Done(Result<JobOutcome, RunnerError>),
    Stopped(StopReason),
}

impl Runner {
    /// A runner working for `worker_id` (unique per worker: e.g. host, process and number).
    #[must_use]
    pub fn new(
        catalog: Catalog,
        repo: RepoOpener,
        sources: JobSources,
        worker_id: impl Into<String>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let (events, _) = broadcast::channel(256);
        let (abort, _) = watch::channel(false);
        Runner {
            shared: Arc::new(Shared {
                catalog,
                repo,
                sources,
                clock,
                settings: RunnerSettings::default(),
                hook: None,
                events,
                abort,
            }),
            worker_id: Arc::from(worker_id.into()),
        }
    }

    fn rebuild(self, f: impl FnOnce(&mut Shared)) -> Self {
        let old = &self.shared;
        let mut shared = Shared {
            catalog: old.catalog.clone(),
            repo: old.repo.clone(),
            sources: old.sources.clone(),
            clock: Arc::clone(&old.clock),
            settings: old.settings.clone(),
            hook: old.hook.clone(),
            events: old.events.clone(),
            abort: watch::channel(*old.abort.borrow()).0,
        };
        f(&mut shared);
        Runner {
            shared: Arc::new(shared),
            worker_id: self.worker_id,
        }
    }

    /// The same runner with these settings (call before cloning or making workers).
    #[must_use]
    pub fn with_settings(self, settings: RunnerSettings) -> Self {
        self.rebuild(|s| s.settings = settings)
    }

    /// The same runner with a hook around each job (call before cloning or making workers).
    #[must_use]
    pub fn with_hook(self, hook: Arc<dyn JobHook>) -> Self {
        self.rebuild(|s| s.hook = Some(hook))
    }

    /// A runner for another worker of this instance, sharing everything else (including
    /// [`Runner::abort_running`] and the event stream).
    #[must_use]
    pub fn for_worker(&self, worker_id: impl Into<String>) -> Self {
        Runner {
            shared: Arc::clone(&self.shared),
            worker_id: Arc::from(worker_id.into()),
        }
    }

    /// This worker's id (the lease owner it records).
    #[must_use]
    pub fn worker_id(&self) -> &str {
        &self.worker_id
    }

    /// The catalog.
    #[must_use]
    pub fn catalog(&self) -> &Catalog {
        &self.shared.catalog
    }

    /// The settings.
    #[must_use]
    pub fn settings(&self) -> &RunnerSettings {
        &self.shared.settings
    }

    /// The sources.
    #[must_use]
    pub fn sources(&self) -> &JobSources {
        &self.shared.sources
    }

    /// The repository opener.
    #[must_use]
    pub fn repo(&self) -> &RepoOpener {
        &self.shared.repo
    }

    /// The clock's now.
    #[must_use]
    pub fn now(&self) -> DateTime<Utc> {
        self.shared.clock.now()
    }

    /// Job events: start, progress with each heartbeat, end.
    #[must_use]
    pub fn subscribe(&self) -> broadcast::Receiver<JobEvent> {
        self.shared.events.subscribe()
    }

    /// Stops every running job of this instance now: each is finished as failed
    /// ("interrupted …") and, if scheduled, re-enqueued once. Used when the service must stop
    /// before its jobs end.
    pub fn abort_running(&self) {
        self.shared.abort.send_replace(true);
    }

    /// Queues a job (the time limit of its kind is recorded with it).
    ///
    /// # Errors
    /// When the catalog fails; an active job for the same (source, kind) is not an error but
    /// [`Enqueued::AlreadyActive`].
    pub async fn enqueue(&self, request: &JobRequest) -> Result<Enqueued, RunnerError> {
        enqueue_job(
            &self.shared.catalog,
            &self.shared.settings.time_limits,
            request,
            self.now(),
        )
        .await
    }

    fn emit(
        &self,
        job: &Job,
        status: JobStatus,
        progress: Option<Progress>,
        message: Option<String>,
    ) {
        // No subscriber is fine.
        let _ = self.shared.events.send(JobEvent {
            job_id: job.id,
            kind: job.kind,
            source: job.source.clone(),
            started_by: job.started_by.clone(),
            status,
            progress,
            message,
            at: self.now(),
        });
    }

    /// Leases the oldest queued job and runs it to its end.
    ///
    /// # Errors
    /// Only when the catalog fails around the job; the job's own failure is recorded on it.
    pub async fn run_one(&self) -> Result<Outcome, RunnerError> {
        if *self.shared.abort.borrow() {
            return Ok(Outcome::EmptyQueue);
        }
        let Some(job) = self
            .shared
            .catalog
            .jobs()
            .lease_next(&self.worker_id, self.now())
            .await?
        else {
            return Ok(Outcome::EmptyQueue);
        };
        let id = job.id;
        self.run_leased(job).await?;
        Ok(Outcome::TaskCompleted(id))
    }

    async fn run_leased(&self, job: Job) -> Result<(), RunnerError> {
        // Options that cannot be read fail the job (below): it never runs with defaults it
        // was not given.
        let read = JobOptions::from_metadata(&job.metadata);
        let opts = read.clone().unwrap_or_default();
        let estimate = self
            .shared
            .catalog
            .jobs()
            .latest_success(&job.source, job.kind)
            .await
            .ok()
            .flatten()
            .and_then(|j| j.bytes_read);
        let ctx = Arc::new(JobCtx::new(estimate));
        self.emit(&job, JobStatus::InProgress, Some(ctx.progress()), None);
        let limit = job
            .time_limit_seconds
            .or_else(|| self.shared.settings.time_limits.for_kind(job.kind));
        let (stop_tx, mut stop_rx) = watch::channel(None::<StopReason>);
        let ticker = AbortOnDrop(tokio::spawn(heartbeat::run(
            self.clone(),
            job.clone(),
            limit,
            Arc::clone(&ctx),
            stop_tx,
        )));
        let mut abort_rx = self.shared.abort.subscribe();
        let work = async {
            if let Some(h) = &self.shared.hook {
                h.before_execute(&job).await;
            }
            match &read {
                Ok(opts) => execute::run(self, &job, opts, &ctx).await,
                Err(e) => Ok(JobOutcome::failed(format!("{e}; nothing was done"))),
            }
        };
        let ended = tokio::select! {
            r = work => Ended::Done(r),
            reason = stopped(&mut stop_rx) => Ended::Stopped(reason),
            () = aborted(&mut abort_rx) => Ended::Stopped(StopReason::Shutdown),
        };
        drop(ticker);
        // The job's buffers and compression contexts are not kept for the next one, which may
        // be hours away.
        strongroom_repo::release_idle_memory();

        let outcome = match ended {
            Ended::Done(Ok(outcome)) => outcome,
            Ended::Done(Err(e)) => JobOutcome::failed(failure_message(&e)),
            Ended::Stopped(StopReason::LeaseLost) => {
                self.emit(
                    &job,
                    JobStatus::Failed,
                    None,
                    Some(format!(
                        "job {} was stopped: its lease was lost (its heartbeat came too late and \
                         it was marked interrupted, or it was finished elsewhere)",
                        job.id
                    )),
                );
                return Ok(());
            }
            Ended::Stopped(StopReason::Cancelled) => {
                let mut o = JobOutcome::new(JobStatus::Cancelled);
                o.error_message =
                    Some("cancelled on request; parts saved before that are kept".into());
                o
            }
            Ended::Stopped(StopReason::TimeLimit(secs)) => JobOutcome::failed(format!(
                "stopped after its time limit of {} (raise [jobs.time_limit] in strongroom.toml if \
                 the job needs longer); parts saved before that are kept",
                strongroom_config::format_duration(StdDuration::from_secs(secs))
            )),
            Ended::Stopped(StopReason::Shutdown) => JobOutcome::failed(format!(
                "{INTERRUPTED_MESSAGE}: the service stopped before the job finished"
            )),
        };
        let shutdown = outcome
            .error_message
            .as_deref()
            .is_some_and(|m| m.starts_with(INTERRUPTED_MESSAGE))
            && outcome.status == JobStatus::Failed;
        let mut outcome = outcome;
        outcome.metadata = Some(merge_result(&job.metadata, outcome.metadata.take()));
        let finished = match self
            .shared
            .catalog
            .jobs()
            .finish(job.id, &self.worker_id, &outcome, self.now())
            .await
        {
            Ok(j) => j,
            Err(CatalogError::LeaseLost { .. }) => {
                self.emit(
                    &job,
                    outcome.status,
                    None,
                    Some(format!(
                        "job {} ended ({}) but its lease was lost meanwhile: the result was not recorded",
                        job.id, outcome.status
                    )),
                );
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        };
        self.emit(
            &finished,
            finished.status,
            None,
            finished.error_message.clone(),
        );
        self.after_finish(&finished, &opts, shutdown).await
    }

    /// Schedule bookkeeping, retention after a scheduled backup, and the retry of a job the
    /// service stopped.
    async fn after_finish(
        &self,
        job: &Job,
        opts: &JobOptions,
        shutdown: bool,
    ) -> Result<(), RunnerError> {
        let catalog = &self.shared.catalog;
        if let Some(sid) = job.schedule_id {
            match catalog.schedules().get(sid).await {
                Ok(s) if s.last_job_id == Some(job.id) => {
                    catalog
                        .schedules()
                        .record_run(
                            sid,
                            s.last_run_at.unwrap_or(self.now()),
                            Some(job.id),
                            Some(job.status),
                        )
                        .await?;
                }
                Ok(_) | Err(CatalogError::NotFound(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        if job.kind.is_backup()
            && matches!(job.status, JobStatus::Success | JobStatus::Warning)
            && let Some(policy) = opts.retention.filter(|p| !p.is_empty())
        {
            // The sources the backup covered, by name: a forget job's (source, kind) slot is
            // then its own, so the retention of a database schedule and of a media schedule
            // that end together do not take each other's place (both would be "all").
            let sources = if opts.sources.is_empty() {
                let s = self.sources();
                match job.kind {
                    JobKind::Database => s.databases.iter().map(|d| d.name.clone()).collect(),
                    JobKind::Media => s.media.iter().map(|m| m.name.clone()).collect(),
                    _ => s.names(),
                }
            } else {
                opts.sources.clone()
            };
            let request = JobRequest {
                kind: JobKind::Forget,
                options: JobOptions {
                    sources,
                    schedule: opts.schedule.clone(),
                    retention: Some(policy),
                    backup_kind: Some(job.kind),
                    ..JobOptions::default()
                },
                started_by: job.started_by.clone(),
                schedule_id: job.schedule_id,
            };
            if let Enqueued::AlreadyActive { existing_job_id } = self.enqueue(&request).await? {
                self.emit(
                    job,
                    job.status,
                    None,
                    Some(format!(
                        "retention already queued or running (job {existing_job_id})"
                    )),
                );
            }
        }
        if shutdown && job.schedule_id.is_some() && opts.retry_of.is_none() {
            scheduling::retry(self, job).await?;
        }
        Ok(())
    }
}

/// A job's options with its result added under `result`.
fn merge_result(
    metadata: &serde_json::Value,
    result: Option<serde_json::Value>,
) -> serde_json::Value {
    let mut m = match metadata {
        serde_json::Value::Object(o) => serde_json::Value::Object(o.clone()),
        _ => serde_json::Value::Object(Default::default()),
    };
    if let (Some(r), Some(o)) = (result, m.as_object_mut()) {
        o.insert("result".into(), r);
    }
    m
}

/// A failed job's message: the error, with advice where the error has none.
fn failure_message(e: &RunnerError) -> String {
    match e {
        RunnerError::Repo(RepoError::Locked(_)) => format!(
            "{e}; the job waited for it and gave up: it runs again at the next scheduled time"
        ),
        RunnerError::Repo(RepoError::WrongPassword(_)) => {
            format!("{e}; check the repository password configured for the service")
        }
        _ => e.to_string(),
    }
}

async fn stopped(rx: &mut watch::Receiver<Option<StopReason>>) -> StopReason {
    let reason = match rx.wait_for(Option::is_some).await {
        Ok(v) => v.clone(),
        Err(_) => None,
    };
    match reason {
        Some(r) => r,
        // The ticker ended without a reason: nothing will stop the job from here.
        None => std::future::pending().await,
    }
}

async fn aborted(rx: &mut watch::Receiver<bool>) {
    if rx.wait_for(|v| *v).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// A new job for `request` at `now`.
pub(crate) fn new_job(request: &JobRequest, limits: &TimeLimits) -> NewJob {
    let mut new = NewJob::new(
        request.kind,
        source_key(request.kind, &request.options.sources),
        request.started_by.clone(),
    );
    new.schedule_id = request.schedule_id;
    new.time_limit_seconds = limits.for_kind(request.kind);
    new.metadata = request.options.to_metadata();
    new
}
