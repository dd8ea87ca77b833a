//! Integration tests of the durable job runner (`strongroom_jobs::runner`), each run against
//! both catalogs: SQLite (a temporary file) and PostgreSQL (a throw-away database).
//!
//! - backups end to end (media, database, full; failing sources end failed, never success);
//! - 100 concurrent enqueues for one (source, kind) start exactly one job;
//! - recovery of interrupted jobs (marked failed, scheduled ones retried once, the retry runs),
//!   and `abort_running`;
//! - two instances (two catalog pools, one repository, one manual clock) ticking a simulated
//!   day of an hourly and a daily 02:00 Europe/Berlin schedule (the spring-forward day):
//!   every fire time is enqueued exactly once; one instance killed mid-job is taken over;
//! - retention: the newest verified backup survives any sequence of newer failed or empty
//!   ones (generated sequences); a dry run lists exactly what a real run removes;
//! - cancellation and the time limit of a running job;
//! - `catalog rebuild` brings every snapshot back from the repository alone.
//!
//! PostgreSQL is found through `STRONGROOM_TEST_PG` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`, an admin connection), as in the catalog's
//! conformance suite; each test creates its own `srj_runner_*` databases and drops them at
//! the end, pass or fail. Like every other test of the workspace, a PostgreSQL test FAILS
//! (never skips) when the server is unreachable, so `STRONGROOM_REQUIRE_SERVICES=1` holds
//! trivially: run `scripts/services` to start it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)]

mod common;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, TimeZone, Utc};
use serde_json::json;
use strongroom_catalog::{
    Catalog, ConnectOptions, INTERRUPTED_MESSAGE, Job, JobFilter, JobKind, JobStatus,
    SnapshotFilter, SnapshotRecord,
};
use strongroom_jobs::runner::retention::{self, Candidate};
use strongroom_jobs::runner::{
    Clock, Enqueued, JobEvent, JobHook, JobOptions, JobRequest, JobSources, ManualClock,
    NamedDatabase, NamedMedia, Outcome, RepoOpener, RetentionPolicy, Runner, RunnerSettings,
    ScheduleDefinition, ScheduleSettings, TimeLimits, cache, create_schedule, enqueue_scheduled,
    set_schedule_enabled, sync_schedules,
};

use strongroom_repo::lock;
use strongroom_repo::snapshot::Summary;
use strongroom_repo::{Id, Snapshot, SnapshotKind};
use strongroom_storage::local::LocalStorage;
use tokio::sync::{Semaphore, mpsc};

// ------------------------------------------------------------------------------ catalogs

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Sqlite,
    Postgres,
}

fn admin_url() -> String {
    std::env::var("STRONGROOM_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// `url` with its database name replaced by `db`.
fn with_database(url: &str, db: &str) -> String {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    let (base, query) = match url.find('?') {
        Some(q) => (&url[..q], &url[q..]),
        None => (url, ""),
    };
    let host_end = base[after_scheme..]
        .find('/')
        .map_or(base.len(), |i| after_scheme + i);
    format!("{}/{db}{query}", &base[..host_end])
}

async fn admin_connection() -> sqlx::PgConnection {
    use sqlx::Connection;
    let url = admin_url();
    let shown = url.split('@').next_back().unwrap_or("").to_owned();
    match tokio::time::timeout(
        StdDuration::from_secs(10),
        sqlx::PgConnection::connect(&url),
    )
    .await
    {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => panic!(
            "PostgreSQL is not reachable at {shown} ({e}): run scripts/services to start it, \
             or set STRONGROOM_TEST_PG to an admin URL"
        ),
        Err(_) => panic!(
            "PostgreSQL did not answer at {shown} within 10 s: run scripts/services to start \
             it, or set STRONGROOM_TEST_PG to an admin URL"
        ),
    }
}

/// The throw-away catalogs of one test; PostgreSQL databases are dropped by [`Scratch::drop_all`].
#[derive(Clone, Default)]
struct Scratch {
    pg: Arc<Mutex<Vec<String>>>,
}

impl Scratch {
    /// A new, empty catalog of `backend` (a file under `dir`, or a new PostgreSQL database).
    async fn catalog(&self, backend: Backend, dir: &Path) -> (Catalog, String) {
        static N: AtomicU64 = AtomicU64::new(0);
        let n = N.fetch_add(1, Ordering::SeqCst);
        let url = match backend {
            Backend::Sqlite => format!("sqlite://{}/catalog-{n}.db", dir.display()),
            Backend::Postgres => {
                use sqlx::{Connection, Executor};
                let name = common::unique("runner").to_lowercase();
                let mut admin = admin_connection().await;
                self.pg.lock().unwrap().push(name.clone());
                admin
                    .execute(format!("CREATE DATABASE {name}").as_str())
                    .await
                    .expect("create the test database");
                let _ = admin.close().await;
                with_database(&admin_url(), &name)
            }
        };
        let catalog = Catalog::connect_with(&url, &ConnectOptions::default())
            .await
            .unwrap_or_else(|e| panic!("open the {backend:?} catalog: {e}"));
        (catalog, url)
    }

    async fn drop_all(&self) {
        use sqlx::{Connection, Executor};
        let names: Vec<String> = std::mem::take(&mut *self.pg.lock().unwrap());
        if names.is_empty() {
            return;
        }
        let mut admin = admin_connection().await;
        for name in names {
            admin
                .execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
                .await
                .expect("drop the test database");
        }
        let _ = admin.close().await;
    }
}

// ---------------------------------------------------------------------------- environment

/// 2024-03-30 23:00 UTC: midnight in Berlin at the start of the spring-forward day.
fn start_time() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 3, 30, 23, 0, 0).unwrap()
}

/// One test's world: a catalog, a repository, a media folder and a SQLite database, a clock.
struct Env {
    backend: Backend,
    dir: tempfile::TempDir,
    scratch: Scratch,
    catalog: Catalog,
    url: String,
    clock: ManualClock,
    opener: RepoOpener,
    media: PathBuf,
    db_path: PathBuf,
}

const MEDIA_FILES: &[(&str, usize)] = &[("a.txt", 1000), ("sub/b.bin", 5000), ("c.txt", 10)];

fn media_bytes() -> u64 {
    MEDIA_FILES.iter().map(|(_, n)| *n as u64).sum()
}

impl Env {
    async fn new(backend: Backend, scratch: Scratch) -> Env {
        let dir = tempfile::Builder::new()
            .prefix("strongroom-runner-")
            .tempdir()
            .unwrap();
        let repo_path = dir.path().join("repo");
        common::Repo::init_at(&repo_path).await;
        let opener = RepoOpener::new(
            Arc::new(LocalStorage::new(repo_path)),
            strongroom_repo::Credential::Password(common::PASSWORD.to_vec()),
        );
        let media = dir.path().join("uploads");
        for (i, (name, size)) in MEDIA_FILES.iter().enumerate() {
            let p = media.join(name);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            let body: Vec<u8> = (0..*size).map(|j| ((j * 31 + i * 7) % 251) as u8).collect();
            std::fs::write(p, body).unwrap();
        }
        let db_path = dir.path().join("clinic.db");
        common::sqlite(
            &db_path,
            "CREATE TABLE patients (id INTEGER PRIMARY KEY, name TEXT NOT NULL);\
             INSERT INTO patients (name) VALUES ('ada'), ('grace'), ('edsger');",
        );
        let (catalog, url) = scratch.catalog(backend, dir.path()).await;
        Env {
            backend,
            dir,
            scratch,
            catalog,
            url,
            clock: ManualClock::new(start_time()),
            opener,
            media,
            db_path,
        }
    }

    /// "clinic" (the SQLite database) and "uploads" (the media folder).
    fn sources(&self) -> JobSources {
        JobSources {
            databases: vec![NamedDatabase {
                name: "clinic".into(),
                source: common::sqlite_source(&self.db_path),
                drill: None,
            }],
            media: vec![NamedMedia {
                name: "uploads".into(),
                path: self.media.clone(),
                exclude: Vec::new(),
            }],
        }
    }

    fn runner(&self, worker: &str) -> Runner {
        self.runner_with(self.catalog.clone(), self.sources(), worker, settings())
    }

    fn runner_with(
        &self,
        catalog: Catalog,
        sources: JobSources,
        worker: &str,
        settings: RunnerSettings,
    ) -> Runner {
        Runner::new(
            catalog,
            self.opener.clone(),
            sources,
            worker,
            Arc::new(self.clock.clone()),
        )
        .with_settings(settings)
    }

    /// A second connection pool to the same catalog (another service instance).
    async fn second_pool(&self) -> Catalog {
        Catalog::connect_with(&self.url, &ConnectOptions::default())
            .await
            .unwrap()
    }

    async fn job(&self, id: i64) -> Job {
        self.catalog.jobs().get(id).await.unwrap()
    }

    /// The snapshot ids in the repository.
    async fn repo_snapshots(&self) -> BTreeSet<String> {
        let repo = self.opener.open().await.unwrap();
        let (snaps, warnings) = repo.list_snapshots().await.unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        snaps.iter().map(|(id, _)| id.to_hex()).collect()
    }

    async fn records(&self, catalog: &Catalog) -> Vec<SnapshotRecord> {
        let mut r = catalog
            .snapshots()
            .list(&SnapshotFilter {
                limit: u32::MAX,
                ..SnapshotFilter::default()
            })
            .await
            .unwrap();
        r.sort_by(|a, b| a.snapshot_id.cmp(&b.snapshot_id));
        r
    }

    /// Changes one media file, so the next media backup differs from the last.
    fn touch_media(&self, round: u32) {
        std::fs::write(
            self.media.join("c.txt"),
            format!("round {round} {}", "x".repeat(round as usize)),
        )
        .unwrap();
    }
}

fn settings() -> RunnerSettings {
    RunnerSettings {
        heartbeat_interval: StdDuration::from_millis(40),
        heartbeat_timeout: Duration::minutes(5),
        catch_up_window: Duration::hours(6),
        time_limits: TimeLimits::default(),
        lock_wait: StdDuration::from_secs(20),
    }
}

/// Runs a scenario on `backend` in its own task, so that the PostgreSQL databases are dropped
/// however it ends; a panic of the scenario is the test's panic.
async fn on<F, Fut>(backend: Backend, scenario: F)
where
    F: FnOnce(Env) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let scratch = Scratch::default();
    let s = scratch.clone();
    let outcome = tokio::spawn(async move {
        let env = Env::new(backend, s).await;
        scenario(env).await;
    })
    .await;
    scratch.drop_all().await;
    if let Err(e) = outcome {
        if e.is_panic() {
            std::panic::resume_unwind(e.into_panic());
        }
        panic!("scenario task failed: {e}");
    }
}

macro_rules! on_both {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    crate::on(crate::Backend::Sqlite, crate::$name).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    crate::on(crate::Backend::Postgres, crate::$name).await;
                }
            )*
        }
    };
}

on_both!(
    backups_run_end_to_end,
    failing_sources_end_failed,
    concurrent_enqueues_start_one_job,
    recovery_marks_interrupted_and_retries_once,
    abort_running_fails_and_retries_once,
    two_instances_run_a_day_of_schedules_once,
    dry_run_lists_exactly_what_a_real_run_removes,
    scheduled_backup_applies_retention,
    verification_does_not_clear_a_failed_backup,
    cancel_and_time_limit_stop_a_running_job,
    rebuild_brings_back_every_snapshot,
    missed_runs_are_made_up_once,
    retention_of_schedules_ending_together_both_run,
    concurrent_start_ups_sync_schedules,
    interrupted_retention_job_keeps_the_schedule_run,
    verification_rotates_read_data_slices,
    lost_lease_stops_the_job_and_the_other_instance_retries,
    test_restore_forget_prune_and_verify_jobs,
    forget_by_id_removes_exactly_the_named_snapshots,
    restore_jobs_restore_as_confirmed,
    a_replace_restore_keeps_what_backups_leave_out,
    test_restore_of_named_snapshots,
    unreadable_options_fail_the_job,
);

// -------------------------------------------------------------------------------- helpers

fn request(kind: JobKind, sources: &[&str]) -> JobRequest {
    JobRequest {
        kind,
        options: JobOptions {
            sources: sources.iter().map(|s| (*s).to_owned()).collect(),
            ..JobOptions::default()
        },
        started_by: "alice".into(),
        schedule_id: None,
    }
}

async fn enqueue(runner: &Runner, req: &JobRequest) -> i64 {
    match runner.enqueue(req).await.unwrap() {
        Enqueued::Queued(j) => {
            assert_eq!(j.status, JobStatus::Queued);
            j.id
        }
        other => panic!("expected a new job, got {other:?}"),
    }
}

/// Enqueues and runs one job (the queue must be empty before); returns it as recorded.
async fn run_job(runner: &Runner, req: &JobRequest) -> Job {
    let id = enqueue(runner, req).await;
    assert_eq!(runner.run_one().await.unwrap(), Outcome::TaskCompleted(id));
    runner.catalog().jobs().get(id).await.unwrap()
}

/// Runs queued jobs until the queue is empty; returns their ids in order.
async fn drain(runner: &Runner) -> Vec<i64> {
    let mut ids = Vec::new();
    while let Outcome::TaskCompleted(id) = runner.run_one().await.unwrap() {
        ids.push(id);
    }
    ids
}

fn events_of(rx: &mut tokio::sync::broadcast::Receiver<JobEvent>, id: i64) -> Vec<JobEvent> {
    let mut out = Vec::new();
    while let Ok(e) = rx.try_recv() {
        if e.job_id == id {
            out.push(e);
        }
    }
    out
}

/// A hook that, while `hold` is set, reports each job it sees and holds it until released.
struct Gate {
    hold: AtomicBool,
    started: mpsc::UnboundedSender<i64>,
    release: Semaphore,
}

impl Gate {
    fn new() -> (Arc<Gate>, mpsc::UnboundedReceiver<i64>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (
            Arc::new(Gate {
                hold: AtomicBool::new(false),
                started: tx,
                release: Semaphore::new(0),
            }),
            rx,
        )
    }
}

impl JobHook for Gate {
    fn before_execute<'a>(&'a self, job: &'a Job) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        Box::pin(async move {
            if self.hold.load(Ordering::SeqCst) {
                let _ = self.started.send(job.id);
                let _ = self.release.acquire().await.map(|p| p.forget());
            }
        })
    }
}

async fn next_started(rx: &mut mpsc::UnboundedReceiver<i64>) -> i64 {
    tokio::time::timeout(StdDuration::from_secs(20), rx.recv())
        .await
        .expect("the job did not start within 20 s")
        .expect("gate closed")
}

fn schedule_def(name: &str, kind: JobKind, sources: &[&str], spec: &str) -> ScheduleDefinition {
    ScheduleDefinition {
        name: name.into(),
        kind,
        sources: sources.iter().map(|s| (*s).to_owned()).collect(),
        spec: spec.into(),
        timezone: "Europe/Berlin".into(),
        enabled: true,
        verify: false,
        test_restore: false,
        settings: ScheduleSettings::default(),
    }
}

/// Moves the clock to `t` and returns `t`.
fn set_clock(clock: &ManualClock, t: DateTime<Utc>) -> DateTime<Utc> {
    clock.set(t);
    t
}

fn all_jobs() -> JobFilter {
    JobFilter {
        limit: 10_000,
        ..JobFilter::default()
    }
}

fn in_progress() -> JobFilter {
    JobFilter {
        statuses: vec![JobStatus::InProgress],
        ..all_jobs()
    }
}

// ------------------------------------------------------------------ 1. backups end to end

async fn backups_run_end_to_end(env: Env) {
    let runner = env.runner("worker-1");
    let mut events = runner.subscribe();

    // A media backup.
    let media = run_job(&runner, &request(JobKind::Media, &["uploads"])).await;
    assert_eq!(
        media.status,
        JobStatus::Success,
        "{:?}",
        media.error_message
    );
    assert_eq!(media.error_message, None);
    assert_eq!(media.source, "uploads");
    assert_eq!(media.lease_owner.as_deref(), Some("worker-1"));
    assert_eq!(media.attempts, 1);
    assert_eq!(media.completed_at, Some(env.clock.now()));
    assert_eq!(media.snapshot_ids.len(), 1, "{media:?}");
    assert_eq!(media.bytes_read, Some(media_bytes()));
    assert!(media.bytes_added.unwrap() >= media_bytes(), "{media:?}");
    assert!(media.bytes_stored.unwrap() > 0, "{media:?}");
    assert_eq!(media.files, Some(MEDIA_FILES.len() as u64));
    assert!(media.metadata["result"]["recovery_point"].is_object());
    assert_eq!(media.metadata["sources"], json!(["uploads"]));
    let ev = events_of(&mut events, media.id);
    assert_eq!(ev.first().map(|e| e.status), Some(JobStatus::InProgress));
    assert_eq!(ev.last().map(|e| e.status), Some(JobStatus::Success));
    let rec = env
        .catalog
        .snapshots()
        .get(&media.snapshot_ids[0])
        .await
        .unwrap()
        .expect("the snapshot is cached");
    assert_eq!(
        (rec.kind.as_str(), rec.source.as_str()),
        ("media", "uploads")
    );
    assert_eq!(rec.size, Some(media_bytes()));

    // A database backup (SQLite), verified.
    let mut req = request(JobKind::Database, &["clinic"]);
    req.options.verify = true;
    let db = run_job(&runner, &req).await;
    assert_eq!(db.status, JobStatus::Success, "{:?}", db.error_message);
    assert_eq!(db.snapshot_ids.len(), 1);
    assert!(db.bytes_read.unwrap() > 0);
    assert_eq!(db.files, Some(1));
    let rec = env
        .catalog
        .snapshots()
        .get(&db.snapshot_ids[0])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (rec.kind.as_str(), rec.source.as_str()),
        ("database", "clinic")
    );
    assert!(rec.verified_at.is_some(), "{rec:?}");
    assert_eq!(rec.verification.as_ref().unwrap()["ok"], json!(true));

    // A full backup: every source, one snapshot each.
    let full = run_job(&runner, &request(JobKind::Full, &[])).await;
    assert_eq!(full.status, JobStatus::Success, "{:?}", full.error_message);
    assert_eq!(full.source, "all");
    assert_eq!(full.snapshot_ids.len(), 2);
    // The media part was unchanged since the first backup: nothing new was stored for it.
    assert!(full.bytes_read.unwrap() > 0);

    let in_repo = env.repo_snapshots().await;
    let recorded: BTreeSet<String> = [&media, &db, &full]
        .iter()
        .flat_map(|j| j.snapshot_ids.iter().cloned())
        .collect();
    assert_eq!(in_repo, recorded);
    assert_eq!(env.records(&env.catalog).await.len(), 4);
    assert_eq!(runner.run_one().await.unwrap(), Outcome::EmptyQueue);

    // A source named twice is one part of the backup.
    let twice = run_job(&runner, &request(JobKind::Media, &["uploads", "uploads"])).await;
    assert_eq!(twice.status, JobStatus::Success);
    assert_eq!(twice.source, "uploads");
    assert_eq!(twice.snapshot_ids.len(), 1, "{twice:?}");
}

async fn failing_sources_end_failed(env: Env) {
    let mut sources = env.sources();
    sources.media.push(NamedMedia {
        name: "gone".into(),
        path: env.dir.path().join("no-such-folder"),
        exclude: Vec::new(),
    });
    sources.databases.push(NamedDatabase {
        name: "lost-db".into(),
        source: common::sqlite_source(&env.dir.path().join("no-such.db")),
        drill: None,
    });
    let empty = env.dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    sources.media.push(NamedMedia {
        name: "empty".into(),
        path: empty,
        exclude: Vec::new(),
    });
    let runner = env.runner_with(env.catalog.clone(), sources, "worker-1", settings());

    // A missing media folder.
    let job = run_job(&runner, &request(JobKind::Media, &["gone"])).await;
    assert_eq!(job.status, JobStatus::Failed);
    let msg = job.error_message.unwrap();
    assert!(msg.contains("gone") && msg.contains("failed"), "{msg}");
    assert!(job.snapshot_ids.is_empty());

    // A database that is not there.
    let job = run_job(&runner, &request(JobKind::Database, &["lost-db"])).await;
    assert_eq!(job.status, JobStatus::Failed);
    let msg = job.error_message.unwrap();
    assert!(msg.contains("lost-db"), "{msg}");
    assert!(job.snapshot_ids.is_empty());

    // A source that is not configured.
    let job = run_job(&runner, &request(JobKind::Media, &["nope"])).await;
    assert_eq!(job.status, JobStatus::Failed);
    assert!(
        job.error_message
            .as_deref()
            .unwrap()
            .contains("no source is named \"nope\""),
        "{:?}",
        job.error_message
    );

    // A source of the wrong type.
    let job = run_job(&runner, &request(JobKind::Media, &["clinic"])).await;
    assert_eq!(job.status, JobStatus::Failed);

    // One good part and one missing: failed, the good part is kept and recorded.
    let job = run_job(&runner, &request(JobKind::Full, &["uploads", "gone"])).await;
    assert_eq!(job.status, JobStatus::Failed);
    let msg = job.error_message.unwrap();
    assert!(msg.contains("1 of 2 part(s) failed"), "{msg}");
    assert_eq!(job.snapshot_ids.len(), 1);

    // An empty folder: a warning, not a success.
    let job = run_job(&runner, &request(JobKind::Media, &["empty"])).await;
    assert_eq!(job.status, JobStatus::Warning);
    assert!(
        job.error_message.as_deref().unwrap().contains("empty"),
        "{:?}",
        job.error_message
    );

    // Restores are not run by the service.
    let job = run_job(&runner, &request(JobKind::Restore, &["clinic"])).await;
    assert_eq!(job.status, JobStatus::Failed);

    // None of them succeeded; none is left active.
    let all = env.catalog.jobs().list(&all_jobs()).await.unwrap();
    assert_eq!(all.len(), 7);
    assert!(
        all.iter().all(|j| j.status != JobStatus::Success),
        "{all:?}"
    );
    assert!(all.iter().all(|j| j.status.is_final()));
}

// --------------------------------------------------------------- 2. concurrent enqueues

async fn concurrent_enqueues_start_one_job(env: Env) {
    let runner = env.runner("worker-1");
    let req = request(JobKind::Database, &["clinic"]);
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let r = runner.clone();
            let req = req.clone();
            tokio::spawn(async move { r.enqueue(&req).await })
        })
        .collect();
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(t.await.unwrap().unwrap());
    }
    let queued: Vec<i64> = answers
        .iter()
        .filter_map(|a| match a {
            Enqueued::Queued(j) => Some(j.id),
            Enqueued::AlreadyActive { .. } => None,
        })
        .collect();
    assert_eq!(queued.len(), 1, "{answers:?}");
    let id = queued[0];
    let others: Vec<i64> = answers
        .iter()
        .filter_map(|a| match a {
            Enqueued::AlreadyActive { existing_job_id } => Some(*existing_job_id),
            Enqueued::Queued(_) => None,
        })
        .collect();
    assert_eq!(others.len(), 99);
    assert!(others.iter().all(|o| *o == id), "{others:?}");
    assert_eq!(env.catalog.jobs().count(&all_jobs()).await.unwrap(), 1);

    // Another kind for the same source is its own slot.
    enqueue(&runner, &request(JobKind::Media, &["uploads"])).await;
    // While the job runs, the slot stays taken; once it ended, a new job can start.
    assert_eq!(runner.run_one().await.unwrap(), Outcome::TaskCompleted(id));
    let again = runner.enqueue(&req).await.unwrap();
    assert!(
        matches!(again, Enqueued::Queued(ref j) if j.id != id),
        "{again:?}"
    );
}

// ---------------------------------------------------------------------------- 3. recovery

async fn recovery_marks_interrupted_and_retries_once(env: Env) {
    let runner = env.runner("survivor");
    let t0 = env.clock.now();
    let sched = create_schedule(
        &env.catalog,
        &schedule_def("hourly-media", JobKind::Media, &["uploads"], "@hourly"),
        t0,
    )
    .await
    .unwrap();
    let limits = settings().time_limits;
    let Enqueued::Queued(scheduled) = enqueue_scheduled(
        &env.catalog,
        &limits,
        &sched,
        "schedule:hourly-media",
        Some(t0),
        t0,
    )
    .await
    .unwrap() else {
        panic!("not queued")
    };
    let manual = enqueue(&runner, &request(JobKind::Database, &["clinic"])).await;
    let alive = enqueue(&runner, &request(JobKind::Full, &[])).await;
    // "dead" takes the first two and stops; "alive" takes the third and keeps beating.
    let jobs = env.catalog.jobs();
    assert_eq!(
        jobs.lease_next("dead", t0).await.unwrap().unwrap().id,
        scheduled.id
    );
    assert_eq!(
        jobs.lease_next("dead", t0).await.unwrap().unwrap().id,
        manual
    );
    assert_eq!(
        jobs.lease_next("alive", t0).await.unwrap().unwrap().id,
        alive
    );

    // Within the timeout nothing is interrupted.
    let now = env.clock.advance(Duration::minutes(4));
    jobs.heartbeat(alive, "alive", None, now).await.unwrap();
    let report = runner.recover(now).await.unwrap();
    assert!(report.interrupted.is_empty(), "{report:?}");

    let now = env.clock.advance(Duration::minutes(4));
    jobs.heartbeat(alive, "alive", None, now).await.unwrap();
    let report = runner.recover(now).await.unwrap();
    let ids: BTreeSet<i64> = report.interrupted.iter().map(|j| j.id).collect();
    assert_eq!(ids, BTreeSet::from([scheduled.id, manual]));
    for j in &report.interrupted {
        assert_eq!(j.status, JobStatus::Failed);
        assert_eq!(j.error_message.as_deref(), Some(INTERRUPTED_MESSAGE));
        assert_eq!(j.completed_at, Some(now));
    }
    // Only the scheduled one is retried, once.
    assert_eq!(report.retried.len(), 1, "{report:?}");
    let (of, retry) = report.retried[0];
    assert_eq!(of, scheduled.id);
    let r = env.job(retry).await;
    assert_eq!(r.status, JobStatus::Queued);
    assert_eq!(r.schedule_id, Some(sched.id));
    assert_eq!(r.metadata["retry_of"], json!(scheduled.id));
    assert_eq!(r.metadata["schedule"], json!("hourly-media"));
    let s = env.catalog.schedules().get(sched.id).await.unwrap();
    assert_eq!(s.last_job_id, Some(retry));
    // Only the live job is still in progress.
    let running = jobs.list(&in_progress()).await.unwrap();
    assert_eq!(
        running.iter().map(|j| j.id).collect::<Vec<_>>(),
        vec![alive]
    );
    // A second recovery finds nothing more.
    let report = runner.recover(now).await.unwrap();
    assert!(report.interrupted.is_empty() && report.retried.is_empty());

    // The retry runs to success.
    assert_eq!(
        runner.run_one().await.unwrap(),
        Outcome::TaskCompleted(retry)
    );
    let r = env.job(retry).await;
    assert_eq!(r.status, JobStatus::Success, "{:?}", r.error_message);
    assert_eq!(r.snapshot_ids.len(), 1);
    let s = env.catalog.schedules().get(sched.id).await.unwrap();
    assert_eq!(
        (s.last_job_id, s.last_outcome),
        (Some(retry), Some(JobStatus::Success))
    );

    // A retry that is interrupted in turn is not retried again.
    let now = env.clock.advance(Duration::minutes(1));
    let Enqueued::Queued(second) = enqueue_scheduled(
        &env.catalog,
        &limits,
        &sched,
        "schedule:hourly-media",
        Some(now),
        now,
    )
    .await
    .unwrap() else {
        panic!("not queued")
    };
    assert_eq!(
        jobs.lease_next("dead", now).await.unwrap().unwrap().id,
        second.id
    );
    let now = env.clock.advance(Duration::minutes(6));
    jobs.heartbeat(alive, "alive", None, now).await.unwrap();
    let report = runner.recover(now).await.unwrap();
    assert_eq!(report.retried.len(), 1);
    let retry2 = report.retried[0].1;
    assert_eq!(
        jobs.lease_next("dead", now).await.unwrap().unwrap().id,
        retry2
    );
    let now = env.clock.advance(Duration::minutes(6));
    jobs.heartbeat(alive, "alive", None, now).await.unwrap();
    let report = runner.recover(now).await.unwrap();
    assert_eq!(
        report.interrupted.iter().map(|j| j.id).collect::<Vec<_>>(),
        vec![retry2]
    );
    assert!(report.retried.is_empty() && report.already_active.is_empty());
    assert_eq!(runner.run_one().await.unwrap(), Outcome::EmptyQueue);
    let s = env.catalog.schedules().get(sched.id).await.unwrap();
    assert_eq!(
        (s.last_job_id, s.last_outcome),
        (Some(retry2), Some(JobStatus::Failed))
    );
    // The scheduled job was retried exactly once per interruption chain: 2 originals, 2 retries.
    let of_schedule = jobs
        .list(&JobFilter {
            schedule_id: Some(sched.id),
            ..all_jobs()
        })
        .await
        .unwrap();
    assert_eq!(of_schedule.len(), 4);
}

async fn abort_running_fails_and_retries_once(env: Env) {
    let (gate, mut started) = Gate::new();
    gate.hold.store(true, Ordering::SeqCst);
    let stopping = env.runner("stopping").with_hook(gate.clone());
    let other = env.runner("other");
    let now = env.clock.now();
    let sched = create_schedule(
        &env.catalog,
        &schedule_def("nightly", JobKind::Database, &["clinic"], "daily 02:00"),
        now,
    )
    .await
    .unwrap();
    let Enqueued::Queued(job) = enqueue_scheduled(
        &env.catalog,
        &settings().time_limits,
        &sched,
        "schedule:nightly",
        Some(now),
        now,
    )
    .await
    .unwrap() else {
        panic!("not queued")
    };
    let handle = tokio::spawn({
        let r = stopping.clone();
        async move { r.run_one().await }
    });
    assert_eq!(next_started(&mut started).await, job.id);
    stopping.abort_running();
    let out = tokio::time::timeout(StdDuration::from_secs(20), handle)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(out, Outcome::TaskCompleted(job.id));
    let j = env.job(job.id).await;
    assert_eq!(j.status, JobStatus::Failed);
    assert!(
        j.error_message
            .as_deref()
            .unwrap()
            .starts_with(INTERRUPTED_MESSAGE),
        "{:?}",
        j.error_message
    );
    // The stopped instance takes no more work; the retry is queued once for the others.
    assert_eq!(stopping.run_one().await.unwrap(), Outcome::EmptyQueue);
    let queued = env
        .catalog
        .jobs()
        .list(&JobFilter {
            statuses: vec![JobStatus::Queued],
            ..all_jobs()
        })
        .await
        .unwrap();
    assert_eq!(queued.len(), 1, "{queued:?}");
    assert_eq!(queued[0].metadata["retry_of"], json!(job.id));
    // Recovery does not retry it again (it is not in progress any more).
    let report = other
        .recover(env.clock.advance(Duration::hours(1)))
        .await
        .unwrap();
    assert!(report.interrupted.is_empty() && report.retried.is_empty());
    assert_eq!(drain(&other).await, vec![queued[0].id]);
    let r = env.job(queued[0].id).await;
    assert_eq!(r.status, JobStatus::Success, "{:?}", r.error_message);
    assert_eq!(env.catalog.jobs().count(&all_jobs()).await.unwrap(), 2);
}

// ----------------------------------------------------------- 4. two instances, one day

async fn two_instances_run_a_day_of_schedules_once(env: Env) {
    let start = env.clock.now();
    let hourly = create_schedule(
        &env.catalog,
        &schedule_def("hourly-media", JobKind::Media, &["uploads"], "@hourly"),
        start,
    )
    .await
    .unwrap();
    let nightly = create_schedule(
        &env.catalog,
        &schedule_def("nightly-db", JobKind::Database, &["clinic"], "daily 02:00"),
        start,
    )
    .await
    .unwrap();
    // The local day of 31 March 2024 in Berlin has 23 hours (02:00 does not exist).
    let end = Utc.with_ymd_and_hms(2024, 3, 31, 22, 0, 0).unwrap();
    let expected = |spec: &str| -> Vec<DateTime<Utc>> {
        let s = strongroom_scheduler::Schedule::parse(spec, "Europe/Berlin").unwrap();
        s.upcoming(start).take_while(|t| *t <= end).collect()
    };
    let hourly_times = expected("@hourly");
    let nightly_times = expected("daily 02:00");
    assert_eq!(hourly_times.len(), 23);
    assert_eq!(
        nightly_times,
        vec![Utc.with_ymd_and_hms(2024, 3, 31, 1, 0, 0).unwrap()]
    );

    let (gate, mut started) = Gate::new();
    let mut a = Some(
        env.runner_with(
            env.second_pool().await,
            env.sources(),
            "instance-a",
            settings(),
        )
        .with_hook(gate.clone()),
    );
    let b = env.runner_with(
        env.second_pool().await,
        env.sources(),
        "instance-b",
        settings(),
    );
    let kill_at = Utc.with_ymd_and_hms(2024, 3, 31, 10, 0, 0).unwrap();
    let restart_at = Utc.with_ymd_and_hms(2024, 3, 31, 10, 30, 0).unwrap();
    let mut killed = None;
    let mut enqueued = 0usize;
    let mut claimed_elsewhere = 0usize;
    let mut interrupted = Vec::new();
    let mut retried = Vec::new();
    let mut now = start;
    while now < end {
        now = env.clock.advance(Duration::minutes(1));
        if now == restart_at {
            a = Some(
                env.runner_with(
                    env.second_pool().await,
                    env.sources(),
                    "instance-a-restarted",
                    settings(),
                )
                .with_hook(gate.clone()),
            );
        }
        // Both instances recover and tick at once.
        let (ra, rb) = match &a {
            Some(a) => {
                let (x, y) = tokio::join!(a.recover(now), b.recover(now));
                (Some(x.unwrap()), y.unwrap())
            }
            None => (None, b.recover(now).await.unwrap()),
        };
        for r in ra.into_iter().chain([rb]) {
            interrupted.extend(r.interrupted.iter().map(|j| j.id));
            retried.extend(r.retried);
        }
        let (ta, tb) = match &a {
            Some(a) => {
                let (x, y) = tokio::join!(a.tick(now), b.tick(now));
                (Some(x.unwrap()), y.unwrap())
            }
            None => (None, b.tick(now).await.unwrap()),
        };
        for t in ta.into_iter().chain([tb]) {
            assert!(t.already_active.is_empty(), "{t:?}");
            assert!(t.missed.is_empty() && t.invalid.is_empty(), "{t:?}");
            enqueued += t.enqueued.len();
            claimed_elsewhere += t.claimed_elsewhere;
        }
        if now == kill_at {
            // Instance A leases the hourly run and is killed before it finishes.
            let a_runner = a.take().unwrap();
            gate.hold.store(true, Ordering::SeqCst);
            let task = tokio::spawn(async move { a_runner.run_one().await });
            let id = next_started(&mut started).await;
            task.abort();
            assert!(task.await.unwrap_err().is_cancelled());
            gate.hold.store(false, Ordering::SeqCst);
            let j = env.job(id).await;
            assert_eq!(
                (j.status, j.lease_owner.as_deref()),
                (JobStatus::InProgress, Some("instance-a"))
            );
            killed = Some(id);
        }
        // Both instances work the queue at once until it is empty.
        loop {
            let (oa, ob) = match &a {
                Some(a) => {
                    let (x, y) = tokio::join!(a.run_one(), b.run_one());
                    (x.unwrap(), y.unwrap())
                }
                None => (Outcome::EmptyQueue, b.run_one().await.unwrap()),
            };
            if oa == Outcome::EmptyQueue && ob == Outcome::EmptyQueue {
                break;
            }
        }
    }
    let killed = killed.expect("the kill happened");
    println!(
        "{:?}: {enqueued} runs enqueued, {claimed_elsewhere} claimed elsewhere",
        env.backend
    );

    // The killed job was found by the other instance 5 minutes later and retried once.
    assert_eq!(interrupted, vec![killed]);
    assert_eq!(retried.len(), 1);
    assert_eq!(retried[0].0, killed);
    let k = env.job(killed).await;
    assert_eq!(k.status, JobStatus::Failed);
    assert_eq!(k.error_message.as_deref(), Some(INTERRUPTED_MESSAGE));
    assert_eq!(
        k.completed_at,
        Some(kill_at + Duration::minutes(6)),
        "interrupted at the first recovery past the 5 minute timeout"
    );
    let retry = env.job(retried[0].1).await;
    assert_eq!(
        retry.status,
        JobStatus::Success,
        "{:?}",
        retry.error_message
    );
    assert_eq!(retry.lease_owner.as_deref(), Some("instance-b"));
    assert_eq!(retry.metadata["planned_for"], k.metadata["planned_for"]);

    // Every fire time was enqueued exactly once, by one of the two instances.
    assert_eq!(enqueued, hourly_times.len() + nightly_times.len());
    for (sched, times) in [(&hourly, &hourly_times), (&nightly, &nightly_times)] {
        let jobs = env
            .catalog
            .jobs()
            .list(&JobFilter {
                schedule_id: Some(sched.id),
                ..all_jobs()
            })
            .await
            .unwrap();
        let (retries, runs): (Vec<&Job>, Vec<&Job>) =
            jobs.iter().partition(|j| !j.metadata["retry_of"].is_null());
        let mut planned: Vec<DateTime<Utc>> = runs
            .iter()
            .map(|j| serde_json::from_value(j.metadata["planned_for"].clone()).unwrap())
            .collect();
        planned.sort();
        assert_eq!(&planned, times, "schedule {}", sched.name);
        for j in &runs {
            assert_eq!(j.created_at, j.started_at.unwrap(), "ran at once: {j:?}");
            assert_eq!(
                j.created_at,
                serde_json::from_value::<DateTime<Utc>>(j.metadata["planned_for"].clone()).unwrap()
            );
            if j.id != killed {
                assert_eq!(j.status, JobStatus::Success, "{j:?}");
            }
        }
        let expect_retries = usize::from(sched.id == hourly.id);
        assert_eq!(retries.len(), expect_retries, "schedule {}", sched.name);
    }
    // Both instances did some of the work.
    let all = env.catalog.jobs().list(&all_jobs()).await.unwrap();
    let owners: HashSet<&str> = all
        .iter()
        .filter_map(|j| j.lease_owner.as_deref())
        .collect();
    assert!(
        owners.contains("instance-b") && owners.len() >= 2,
        "{owners:?}"
    );
    assert!(all.iter().all(|j| j.status.is_final()));
    let s = env.catalog.schedules().get(hourly.id).await.unwrap();
    assert_eq!(s.next_run_at, Some(end + Duration::hours(1)));
}

// ----------------------------------------------------------------------------- 5. retention

/// A tiny deterministic generator (xorshift64*), so the sequences need no extra crate.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Verified,
    Good,
    Failed,
    Empty,
}

fn candidate(t: DateTime<Utc>, kind: Kind) -> Candidate {
    let snapshot = Snapshot {
        version: 1,
        time: t.to_rfc3339(),
        kind: SnapshotKind::Files,
        source: "/srv/uploads".into(),
        paths: vec!["/srv/uploads".into()],
        // Hosts change on platform restarts; the plan must not care.
        host: format!("host-{}", t.timestamp() % 3),
        user: "app".into(),
        tags: vec![],
        tree: Id::random(),
        parent: None,
        summary: Summary {
            total_bytes: if kind == Kind::Empty { 0 } else { 100 },
            ..Summary::default()
        },
        program: "test".into(),
        meta: json!({ "type": "media", "name": "uploads" }),
    };
    Candidate {
        id: Id::random(),
        snapshot,
        verified: kind == Kind::Verified,
        failed: kind == Kind::Failed,
    }
}

fn random_policy(rng: &mut Rng) -> RetentionPolicy {
    let mut pick = |n: u64| match rng.below(n + 1) {
        0 => None,
        k => Some(u32::try_from(k - 1).unwrap()),
    };
    RetentionPolicy {
        keep_last: pick(4),
        keep_daily: pick(3),
        keep_weekly: pick(2),
        keep_monthly: pick(1),
        keep_yearly: None,
        keep_days: pick(2),
    }
}

#[test]
fn newest_verified_survives_any_newer_failed_or_empty_backups() {
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let base = Utc.with_ymd_and_hms(2024, 1, 1, 2, 0, 0).unwrap();
    for case in 0..3000 {
        let policy = random_policy(&mut rng);
        let mut t = base;
        let mut cands = Vec::new();
        // Some older history of any kind, one verified backup, then only failed or empty ones.
        for _ in 0..rng.below(6) {
            t += Duration::minutes(i64::try_from(1 + rng.below(3000)).unwrap());
            let kind = [Kind::Verified, Kind::Good, Kind::Failed, Kind::Empty]
                [usize::try_from(rng.below(4)).unwrap()];
            cands.push(candidate(t, kind));
        }
        t += Duration::minutes(i64::try_from(1 + rng.below(3000)).unwrap());
        let verified = candidate(t, Kind::Verified);
        let vid = verified.id.to_hex();
        cands.push(verified);
        for _ in 0..rng.below(30) {
            // Sometimes at the very same time as the one before.
            t += Duration::minutes(i64::try_from(rng.below(2000)).unwrap());
            let kind = if rng.below(2) == 0 {
                Kind::Failed
            } else {
                Kind::Empty
            };
            cands.push(candidate(t, kind));
        }
        // Shuffle: the plan must not depend on the order it gets.
        for i in (1..cands.len()).rev() {
            let j = usize::try_from(rng.below(i as u64 + 1)).unwrap();
            cands.swap(i, j);
        }
        let plan = retention::plan_source("uploads", &policy, &cands);
        assert_eq!(plan.protected.as_deref(), Some(vid.as_str()), "case {case}");
        assert!(
            plan.keep.iter().any(|k| k.id == vid),
            "case {case}: {policy:?} {plan:#?}"
        );
        assert!(!plan.remove.iter().any(|k| k.id == vid), "case {case}");
        assert_eq!(plan.keep.len() + plan.remove.len(), cands.len());
    }
}

#[test]
fn retention_plans_hold_their_rules() {
    let mut rng = Rng(0x0dd_ba11_cafe_f00d);
    let base = Utc.with_ymd_and_hms(2024, 5, 1, 0, 0, 0).unwrap();
    let kinds = [Kind::Verified, Kind::Good, Kind::Failed, Kind::Empty];
    for case in 0..3000 {
        let policy = random_policy(&mut rng);
        let mut t = base;
        let cands: Vec<Candidate> = (0..rng.below(16))
            .map(|_| {
                t += Duration::minutes(i64::try_from(rng.below(2500)).unwrap());
                candidate(t, kinds[usize::try_from(rng.below(4)).unwrap()])
            })
            .collect();
        let plan = retention::plan_source("uploads", &policy, &cands);
        let kept: HashSet<&str> = plan.keep.iter().map(|p| p.id.as_str()).collect();
        let removed: HashSet<&str> = plan.remove.iter().map(|p| p.id.as_str()).collect();
        let ctx = || format!("case {case}: {policy:?}\n{plan:#?}");
        // Every candidate is decided once.
        assert_eq!(kept.len() + removed.len(), cands.len(), "{}", ctx());
        assert!(kept.is_disjoint(&removed), "{}", ctx());
        let mut newest_first: Vec<&Candidate> = cands.iter().collect();
        newest_first.sort_by_key(|c| std::cmp::Reverse((c.time(), c.id)));
        let good: Vec<&Candidate> = newest_first
            .iter()
            .copied()
            .filter(|c| !c.failed && !c.is_empty())
            .collect();
        let want_protected = good
            .iter()
            .find(|c| c.verified)
            .or_else(|| good.first())
            .map(|c| c.id.to_hex());
        assert_eq!(plan.protected, want_protected, "{}", ctx());
        if policy.is_empty() {
            assert!(removed.is_empty(), "{}", ctx());
            continue;
        }
        // The newest good and the protected one are kept.
        if let Some(g) = good.first() {
            assert!(kept.contains(g.id.to_hex().as_str()), "{}", ctx());
        }
        // keep_last counts good snapshots only: bad ones never push good ones out.
        let last = usize::try_from(policy.keep_last.unwrap_or(0)).unwrap();
        for g in good.iter().take(last) {
            assert!(kept.contains(g.id.to_hex().as_str()), "{}", ctx());
        }
        // Bad snapshots: kept when newer than the protected one, removed when older.
        let protected_time = good
            .iter()
            .find(|c| Some(c.id.to_hex()) == want_protected)
            .map(|c| (c.time(), c.id));
        for c in newest_first.iter().filter(|c| c.failed || c.is_empty()) {
            let newer = protected_time.is_none_or(|p| (c.time(), c.id) > p);
            assert_eq!(kept.contains(c.id.to_hex().as_str()), newer, "{}", ctx());
        }
        // A good snapshot is removed only with the reason that the policy did not keep it.
        for r in &plan.remove {
            assert_eq!(r.reasons.len(), 1, "{}", ctx());
        }
    }
}

/// Runs a forget job with `policy` (dry run or not) over every source.
async fn forget_job(runner: &Runner, policy: RetentionPolicy, dry_run: bool) -> Job {
    let req = JobRequest {
        kind: JobKind::Forget,
        options: JobOptions {
            retention: Some(policy),
            dry_run,
            ..JobOptions::default()
        },
        started_by: "alice".into(),
        schedule_id: None,
    };
    run_job(runner, &req).await
}

async fn dry_run_lists_exactly_what_a_real_run_removes(env: Env) {
    let runner = env.runner("worker-1");
    // uploads: verified, good, good, then two empty backups; clinic: two good ones.
    let mut req = request(JobKind::Media, &["uploads"]);
    req.options.verify = true;
    let verified = run_job(&runner, &req).await;
    assert_eq!(verified.status, JobStatus::Success);
    let verified = verified.snapshot_ids[0].clone();
    let mut good = Vec::new();
    for round in 1..=2 {
        env.touch_media(round);
        let j = run_job(&runner, &request(JobKind::Media, &["uploads"])).await;
        assert_eq!(j.status, JobStatus::Success);
        good.push(j.snapshot_ids[0].clone());
    }
    let mut dbs = Vec::new();
    for _ in 0..2 {
        let j = run_job(&runner, &request(JobKind::Database, &["clinic"])).await;
        assert_eq!(j.status, JobStatus::Success, "{:?}", j.error_message);
        dbs.push(j.snapshot_ids[0].clone());
    }
    std::fs::remove_dir_all(&env.media).unwrap();
    std::fs::create_dir(&env.media).unwrap();
    let mut empty = Vec::new();
    for _ in 0..2 {
        let j = run_job(&runner, &request(JobKind::Media, &["uploads"])).await;
        assert_eq!(j.status, JobStatus::Warning, "{:?}", j.error_message);
        empty.push(j.snapshot_ids[0].clone());
    }
    let before = env.repo_snapshots().await;
    assert_eq!(before.len(), 7);

    let policy = RetentionPolicy {
        keep_last: Some(1),
        ..RetentionPolicy::default()
    };
    let dry = forget_job(&runner, policy, true).await;
    assert_eq!(dry.status, JobStatus::Success, "{:?}", dry.error_message);
    assert!(dry.snapshot_ids.is_empty());
    assert_eq!(
        env.repo_snapshots().await,
        before,
        "a dry run removes nothing"
    );
    let plan: retention::RetentionPlan = {
        // The plan is stored as JSON; read back the parts we compare.
        let p = &dry.metadata["result"]["plan"];
        let ids: Vec<String> = p["sources"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|s| s["remove"].as_array().unwrap().iter())
            .map(|r| r["id"].as_str().unwrap().to_owned())
            .collect();
        let direct = {
            let repo = runner.repo().open().await.unwrap();
            retention::plan(&repo, &env.catalog, &runner.sources().names(), &policy)
                .await
                .unwrap()
        };
        assert_eq!(direct.remove_ids(), ids);
        direct
    };
    let planned: BTreeSet<String> = plan.remove_ids().into_iter().collect();
    // The expected plan: uploads keeps the newest good, the verified one and the empty ones
    // (newer than the verified one); clinic keeps its newest.
    let expect: BTreeSet<String> = [good[0].clone(), dbs[0].clone()].into();
    assert_eq!(planned, expect, "{plan:#?}");
    let uploads = plan.sources.iter().find(|s| s.source == "uploads").unwrap();
    assert_eq!(uploads.protected.as_deref(), Some(verified.as_str()));

    let real = forget_job(&runner, policy, false).await;
    assert_eq!(real.status, JobStatus::Success, "{:?}", real.error_message);
    let after = env.repo_snapshots().await;
    let gone: BTreeSet<String> = before.difference(&after).cloned().collect();
    assert_eq!(gone, planned, "the real run removed exactly the plan");
    assert_eq!(
        real.snapshot_ids.iter().cloned().collect::<BTreeSet<_>>(),
        planned
    );
    assert!(after.contains(&verified) && after.contains(&good[1]));
    assert!(empty.iter().all(|e| after.contains(e)));
    let cached: BTreeSet<String> = env
        .records(&env.catalog)
        .await
        .into_iter()
        .map(|r| r.snapshot_id)
        .collect();
    assert_eq!(
        cached, after,
        "the cache rows of removed snapshots are gone"
    );

    // Nothing more to remove: a second plan is empty.
    let again = forget_job(&runner, policy, true).await;
    assert_eq!(again.metadata["result"]["removed"], json!([]));
    let repo = runner.repo().open().await.unwrap();
    let p = retention::plan(&repo, &env.catalog, &runner.sources().names(), &policy)
        .await
        .unwrap();
    assert!(p.remove_ids().is_empty(), "{p:#?}");

    // An empty policy is refused, nothing removed.
    let none = forget_job(&runner, RetentionPolicy::default(), false).await;
    assert_eq!(none.status, JobStatus::Failed);
    assert_eq!(env.repo_snapshots().await, after);

    // Direct plan + execute under a lock removes exactly the plan too: after one more good
    // backup, the previous newest good one is no longer kept.
    for (name, size) in MEDIA_FILES {
        let p = env.media.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, vec![7u8; *size]).unwrap();
    }
    let newest = run_job(&runner, &request(JobKind::Media, &["uploads"])).await;
    assert_eq!(newest.status, JobStatus::Success);
    let before = env.repo_snapshots().await;
    let repo = runner.repo().open().await.unwrap();
    let lock = lock::lock(&repo, true, "test").await.unwrap();
    let p = retention::plan(&repo, &env.catalog, &["uploads".to_owned()], &policy)
        .await
        .unwrap();
    assert_eq!(p.remove_ids(), vec![good[1].clone()], "{p:#?}");
    let removed = retention::execute(&repo, &lock, &env.catalog, &p)
        .await
        .unwrap();
    lock.release().await.unwrap();
    assert_eq!(removed, p.remove_ids());
    let final_ids = env.repo_snapshots().await;
    let gone: Vec<String> = before.difference(&final_ids).cloned().collect();
    assert_eq!(gone, removed);
    assert!(final_ids.contains(&verified) && final_ids.contains(&newest.snapshot_ids[0]));
}

async fn scheduled_backup_applies_retention(env: Env) {
    let runner = env.runner("worker-1");
    let now = env.clock.now();
    let mut def = schedule_def("media-keep-2", JobKind::Media, &["uploads"], "@hourly");
    def.settings.retention = RetentionPolicy {
        keep_last: Some(2),
        ..RetentionPolicy::default()
    };
    let sched = create_schedule(&env.catalog, &def, now).await.unwrap();
    let mut snapshots = Vec::new();
    for round in 0..4 {
        env.touch_media(round);
        let now = env.clock.advance(Duration::hours(1));
        let report = runner.tick(now).await.unwrap();
        assert_eq!(report.enqueued.len(), 1, "{report:?}");
        let ids = drain(&runner).await;
        // The backup, then the forget job it enqueued.
        assert_eq!(ids.len(), 2, "{ids:?}");
        let backup = env.job(ids[0]).await;
        let forget = env.job(ids[1]).await;
        assert_eq!(backup.status, JobStatus::Success);
        assert_eq!(
            (forget.kind, forget.status, forget.schedule_id),
            (JobKind::Forget, JobStatus::Success, Some(sched.id)),
            "{:?}",
            forget.error_message
        );
        assert_eq!(forget.started_by, "schedule:media-keep-2");
        snapshots.push(backup.snapshot_ids[0].clone());
        let left = env.repo_snapshots().await;
        let want: BTreeSet<String> = snapshots.iter().rev().take(2).cloned().collect();
        assert_eq!(left, want, "round {round}");
        // The schedule's last run is the backup, not the forget job.
        let s = env.catalog.schedules().get(sched.id).await.unwrap();
        assert_eq!(
            (s.last_job_id, s.last_outcome),
            (Some(backup.id), Some(JobStatus::Success))
        );
    }
}

/// A repository verification that passes does not turn a snapshot whose backup failed into
/// a verified one (retention would then protect it and remove good backups).
async fn verification_does_not_clear_a_failed_backup(env: Env) {
    let runner = env.runner("worker-1");
    let good = run_job(&runner, &request(JobKind::Media, &["uploads"])).await;
    env.touch_media(1);
    let bad = run_job(&runner, &request(JobKind::Media, &["uploads"])).await;
    let (good, bad) = (good.snapshot_ids[0].clone(), bad.snapshot_ids[0].clone());
    // As the backup records a part whose test restore or verification failed.
    let mut rec = env.catalog.snapshots().get(&bad).await.unwrap().unwrap();
    rec.verified_at = Some(env.clock.now());
    rec.verification =
        Some(json!({ "ok": false, "scope": "backup", "error": "test restore failed" }));
    env.catalog.snapshots().upsert(&rec).await.unwrap();

    let v = run_job(&runner, &request(JobKind::Verification, &[])).await;
    assert_eq!(v.status, JobStatus::Success, "{:?}", v.error_message);
    let g = env.catalog.snapshots().get(&good).await.unwrap().unwrap();
    assert_eq!(g.verification.as_ref().unwrap()["ok"], json!(true));
    let b = env.catalog.snapshots().get(&bad).await.unwrap().unwrap();
    assert_eq!(
        b.verification.as_ref().unwrap()["ok"],
        json!(false),
        "{b:?}"
    );
    // Retention protects the good one and removes the failed one, older or not.
    let repo = runner.repo().open().await.unwrap();
    let plan = retention::plan(
        &repo,
        &env.catalog,
        &["uploads".to_owned()],
        &RetentionPolicy {
            keep_last: Some(1),
            ..RetentionPolicy::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(plan.sources[0].protected.as_deref(), Some(good.as_str()));
}

// --------------------------------------------------------------- 6. cancel and time limit

async fn cancel_and_time_limit_stop_a_running_job(env: Env) {
    let (gate, mut started) = Gate::new();
    let mut s = settings();
    s.time_limits.backup = Some(3600);
    let runner = env
        .runner_with(env.catalog.clone(), env.sources(), "worker-1", s)
        .with_hook(gate.clone());
    gate.hold.store(true, Ordering::SeqCst);

    // Cancelled while it runs.
    let id = enqueue(&runner, &request(JobKind::Media, &["uploads"])).await;
    assert_eq!(env.job(id).await.time_limit_seconds, Some(3600));
    let task = tokio::spawn({
        let r = runner.clone();
        async move { r.run_one().await }
    });
    assert_eq!(next_started(&mut started).await, id);
    let j = env
        .catalog
        .jobs()
        .request_cancel(id, env.clock.now())
        .await
        .unwrap();
    assert_eq!(
        (j.status, j.cancel_requested),
        (JobStatus::InProgress, true)
    );
    let out = tokio::time::timeout(StdDuration::from_secs(20), task)
        .await
        .expect("the cancelled job stopped")
        .unwrap()
        .unwrap();
    assert_eq!(out, Outcome::TaskCompleted(id));
    let j = env.job(id).await;
    assert_eq!(j.status, JobStatus::Cancelled);
    assert!(
        j.error_message.as_deref().unwrap().contains("cancelled"),
        "{:?}",
        j.error_message
    );
    assert!(j.snapshot_ids.is_empty());
    assert!(j.completed_at.is_some());
    assert!(env.repo_snapshots().await.is_empty());

    // Over its time limit (clock time) while it runs.
    let id = enqueue(&runner, &request(JobKind::Media, &["uploads"])).await;
    let task = tokio::spawn({
        let r = runner.clone();
        async move { r.run_one().await }
    });
    assert_eq!(next_started(&mut started).await, id);
    // It is alive and beating meanwhile.
    tokio::time::sleep(StdDuration::from_millis(150)).await;
    let j = env.job(id).await;
    assert_eq!(j.status, JobStatus::InProgress);
    assert!(j.progress.is_some(), "{j:?}");
    env.clock.advance(Duration::seconds(3601));
    let out = tokio::time::timeout(StdDuration::from_secs(20), task)
        .await
        .expect("the job stopped at its limit")
        .unwrap()
        .unwrap();
    assert_eq!(out, Outcome::TaskCompleted(id));
    let j = env.job(id).await;
    assert_eq!(j.status, JobStatus::Failed);
    let msg = j.error_message.unwrap();
    assert!(msg.contains("time limit of 1h"), "{msg}");
    assert!(env.repo_snapshots().await.is_empty());

    // A queued job cancelled before it starts never runs.
    let id = enqueue(&runner, &request(JobKind::Media, &["uploads"])).await;
    env.catalog
        .jobs()
        .request_cancel(id, env.clock.now())
        .await
        .unwrap();
    assert_eq!(runner.run_one().await.unwrap(), Outcome::EmptyQueue);
    assert_eq!(env.job(id).await.status, JobStatus::Cancelled);

    // The runner (and the repository) is fine afterwards.
    gate.hold.store(false, Ordering::SeqCst);
    let j = run_job(&runner, &request(JobKind::Media, &["uploads"])).await;
    assert_eq!(j.status, JobStatus::Success, "{:?}", j.error_message);
    assert_eq!(env.repo_snapshots().await.len(), 1);
}

// ------------------------------------------------------------------------- 7. rebuild

async fn rebuild_brings_back_every_snapshot(env: Env) {
    let runner = env.runner("worker-1");
    let mut req = request(JobKind::Full, &[]);
    req.options.verify = true;
    req.options.tags = vec!["before-upgrade".into()];
    assert_eq!(run_job(&runner, &req).await.status, JobStatus::Success);
    env.touch_media(1);
    assert_eq!(
        run_job(&runner, &request(JobKind::Media, &["uploads"]))
            .await
            .status,
        JobStatus::Success
    );
    assert_eq!(
        run_job(&runner, &request(JobKind::Database, &["clinic"]))
            .await
            .status,
        JobStatus::Success
    );
    let before = env.records(&env.catalog).await;
    assert_eq!(before.len(), 4);
    let in_repo = env.repo_snapshots().await;
    assert_eq!(
        before
            .iter()
            .map(|r| r.snapshot_id.clone())
            .collect::<BTreeSet<_>>(),
        in_repo
    );

    // A fresh, empty catalog.
    let (fresh, _) = env.scratch.catalog(env.backend, env.dir.path()).await;
    assert_eq!(fresh.snapshots().count().await.unwrap(), 0);
    let repo = env.opener.open().await.unwrap();
    let report = cache::rebuild(&repo, &fresh).await.unwrap();
    assert_eq!((report.removed, report.added), (0, 4));
    assert!(report.warnings.is_empty());
    assert_eq!(
        report.by_kind,
        BTreeMap::from([("database".to_owned(), 2), ("media".to_owned(), 2)])
    );
    let after = env.records(&fresh).await;
    let strip = |r: &SnapshotRecord| SnapshotRecord {
        verified_at: None,
        test_restored_at: None,
        verification: None,
        ..r.clone()
    };
    assert_eq!(after.len(), before.len());
    for (a, b) in after.iter().zip(&before) {
        assert_eq!(*a, strip(b));
        assert!(a.size.unwrap() > 0);
        assert!(a.summary["files"].as_u64().unwrap() >= 1, "{a:?}");
    }
    let tagged = after
        .iter()
        .filter(|r| r.tags.iter().any(|t| t == "before-upgrade"))
        .count();
    assert_eq!(tagged, 2);
    // Rebuilding again in place replaces the rows with the same ones.
    let report = cache::rebuild(&repo, &fresh).await.unwrap();
    assert_eq!((report.removed, report.added), (4, 4));
    assert_eq!(env.records(&fresh).await, after);
    fresh.close().await;

    // A refresh of the original catalog drops the row of a snapshot that is gone from the
    // repository and keeps what it knew about the others' verification.
    let gone = before
        .iter()
        .find(|r| r.kind == "media" && r.verified_at.is_none())
        .unwrap();
    repo.delete_snapshot(&Id::from_hex(&gone.snapshot_id).unwrap())
        .await
        .unwrap();
    assert_eq!(cache::refresh(&repo, &env.catalog).await.unwrap(), 3);
    let refreshed = env.records(&env.catalog).await;
    let expect: Vec<SnapshotRecord> = before
        .iter()
        .filter(|r| r.snapshot_id != gone.snapshot_id)
        .cloned()
        .collect();
    assert_eq!(refreshed, expect);
    assert_eq!(
        refreshed.iter().filter(|r| r.verified_at.is_some()).count(),
        2
    );
}

// ------------------------------------------------------------------- schedules, more

async fn missed_runs_are_made_up_once(env: Env) {
    let runner = env.runner("worker-1");
    let start = env.clock.now();
    let hourly = create_schedule(
        &env.catalog,
        &schedule_def("hourly", JobKind::Media, &["uploads"], "@hourly"),
        start,
    )
    .await
    .unwrap();
    let mut def = schedule_def("nightly", JobKind::Database, &["clinic"], "daily 02:00");
    def.settings.catch_up_window_seconds = Some(3600);
    let nightly = create_schedule(&env.catalog, &def, start).await.unwrap();

    // Nothing ticked from 23:00 to 04:30 UTC: five hourly runs and the nightly one passed.
    let now = set_clock(
        &env.clock,
        Utc.with_ymd_and_hms(2024, 3, 31, 4, 30, 0).unwrap(),
    );
    let report = runner.tick(now).await.unwrap();
    // The hourly schedule (6 h window) runs once for all of them, as its 04:00 run.
    assert_eq!(report.enqueued.len(), 1, "{report:?}");
    let run = &report.enqueued[0];
    assert_eq!(run.schedule, "hourly");
    assert_eq!(
        run.planned_for,
        Utc.with_ymd_and_hms(2024, 3, 31, 4, 0, 0).unwrap()
    );
    assert!(run.collapsed);
    // The nightly one (1 h window) is reported missed and not made up.
    assert_eq!(report.missed.len(), 1, "{report:?}");
    assert_eq!(report.missed[0].schedule, "nightly");
    assert_eq!(
        report.missed[0].next,
        Some(Utc.with_ymd_and_hms(2024, 4, 1, 0, 0, 0).unwrap())
    );
    let h = env.catalog.schedules().get(hourly.id).await.unwrap();
    assert_eq!(
        h.next_run_at,
        Some(Utc.with_ymd_and_hms(2024, 3, 31, 5, 0, 0).unwrap())
    );
    let n = env.catalog.schedules().get(nightly.id).await.unwrap();
    assert_eq!(n.next_run_at, report.missed[0].next);
    assert_eq!(n.last_job_id, None);
    assert_eq!(drain(&runner).await, vec![run.job_id]);
    // A second tick at the same time does nothing.
    let report = runner.tick(now).await.unwrap();
    assert!(report.enqueued.is_empty() && report.missed.is_empty());

    // A schedule that never catches up (window 0) still runs when a tick finds its run a few
    // seconds late, as the service's ticks do.
    let mut def = schedule_def("strict", JobKind::Full, &[], "hourly :15");
    def.settings.catch_up_window_seconds = Some(0);
    let strict = create_schedule(&env.catalog, &def, now).await.unwrap();
    let due = Utc.with_ymd_and_hms(2024, 3, 31, 5, 15, 0).unwrap();
    assert_eq!(strict.next_run_at, Some(due));
    let now = set_clock(&env.clock, due + Duration::seconds(5));
    let report = runner.tick(now).await.unwrap();
    let strict_runs: Vec<&strongroom_jobs::runner::ScheduledRun> = report
        .enqueued
        .iter()
        .filter(|r| r.schedule == "strict")
        .collect();
    assert_eq!(strict_runs.len(), 1, "{report:?}");
    assert_eq!(strict_runs[0].planned_for, due);
    assert!(!strict_runs[0].collapsed);
    drain(&runner).await;
    // But a run missed while the service was down is not made up.
    let now = set_clock(
        &env.clock,
        Utc.with_ymd_and_hms(2024, 3, 31, 8, 0, 0).unwrap(),
    );
    let report = runner.tick(now).await.unwrap();
    assert!(
        !report.enqueued.iter().any(|r| r.schedule == "strict"),
        "{report:?}"
    );
    assert!(report.missed.iter().any(|m| m.schedule == "strict"));
    let s = env.catalog.schedules().get(strict.id).await.unwrap();
    assert_eq!(
        s.next_run_at,
        Some(Utc.with_ymd_and_hms(2024, 3, 31, 8, 15, 0).unwrap())
    );

    // Disabled, a schedule is never due; enabled again, runs missed meanwhile are not made up.
    let off = set_schedule_enabled(&env.catalog, "hourly", false, now)
        .await
        .unwrap();
    assert_eq!((off.enabled, off.next_run_at), (false, None));
    let now = set_clock(
        &env.clock,
        Utc.with_ymd_and_hms(2024, 3, 31, 11, 30, 0).unwrap(),
    );
    let report = runner.tick(now).await.unwrap();
    assert!(!report.enqueued.iter().any(|r| r.schedule == "hourly"));
    let on = set_schedule_enabled(&env.catalog, "hourly", true, now)
        .await
        .unwrap();
    assert_eq!(
        on.next_run_at,
        Some(Utc.with_ymd_and_hms(2024, 3, 31, 12, 0, 0).unwrap())
    );
    let report = runner.tick(now).await.unwrap();
    assert!(!report.enqueued.iter().any(|r| r.schedule == "hourly"));
    assert!(!report.missed.iter().any(|m| m.schedule == "hourly"));
}

/// Two backup schedules of different kinds with retention, due at the same time, naming no
/// sources: each one's retention runs after it.
async fn retention_of_schedules_ending_together_both_run(env: Env) {
    let runner = env.runner("worker-1");
    let keep_one = RetentionPolicy {
        keep_last: Some(1),
        ..RetentionPolicy::default()
    };
    for (name, kind) in [
        ("db-nightly", JobKind::Database),
        ("media-nightly", JobKind::Media),
    ] {
        let mut def = schedule_def(name, kind, &[], "daily 02:00");
        def.settings.retention = keep_one;
        create_schedule(&env.catalog, &def, env.clock.now())
            .await
            .unwrap();
    }
    let mut night = Utc.with_ymd_and_hms(2024, 3, 31, 1, 0, 0).unwrap();
    for round in 0..3 {
        env.touch_media(round);
        let now = set_clock(&env.clock, night);
        let report = runner.tick(now).await.unwrap();
        assert_eq!(report.enqueued.len(), 2, "{report:?}");
        let ids = drain(&runner).await;
        let mut jobs = Vec::new();
        for id in ids {
            jobs.push(env.job(id).await);
        }
        let forgets: Vec<&Job> = jobs.iter().filter(|j| j.kind == JobKind::Forget).collect();
        assert_eq!(forgets.len(), 2, "round {round}: {jobs:#?}");
        assert!(
            jobs.iter().all(|j| j.status == JobStatus::Success),
            "{jobs:#?}"
        );
        // One database and one media snapshot left: the newest of each.
        let repo = runner.repo().open().await.unwrap();
        let (snaps, _) = repo.list_snapshots().await.unwrap();
        let mut names: Vec<String> = snaps
            .iter()
            .filter_map(|(_, s)| cache::source_name(s))
            .collect();
        names.sort();
        assert_eq!(names, vec!["clinic", "uploads"], "round {round}");
        night += Duration::days(1);
    }
}

/// Several instances starting at once against a new catalog all sync the configured
/// schedules without failing, and each schedule exists once.
async fn concurrent_start_ups_sync_schedules(env: Env) {
    let defs: Vec<ScheduleDefinition> = (0..4)
        .map(|i| schedule_def(&format!("s{i}"), JobKind::Media, &["uploads"], "@hourly"))
        .collect();
    let now = env.clock.now();
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let catalog = env.second_pool().await;
        let defs = defs.clone();
        tasks.push(tokio::spawn(async move {
            sync_schedules(&catalog, &defs, now).await
        }));
    }
    let mut created = 0;
    for t in tasks {
        let report = t.await.unwrap().unwrap();
        assert_eq!(
            report.created.len() + report.updated.len() + report.unchanged.len(),
            defs.len()
        );
        created += report.created.len();
    }
    assert_eq!(created, defs.len());
    let stored = env.catalog.schedules().list().await.unwrap();
    assert_eq!(stored.len(), defs.len());
    assert!(
        stored
            .iter()
            .all(|s| s.next_run_at == Some(Utc.with_ymd_and_hms(2024, 3, 31, 0, 0, 0).unwrap()))
    );
}

/// The retention job a scheduled backup enqueued is interrupted and retried: the schedule's
/// last run stays the backup.
async fn interrupted_retention_job_keeps_the_schedule_run(env: Env) {
    let runner = env.runner("worker-1");
    let mut def = schedule_def("media", JobKind::Media, &["uploads"], "@hourly");
    def.settings.retention = RetentionPolicy {
        keep_last: Some(3),
        ..RetentionPolicy::default()
    };
    let sched = create_schedule(&env.catalog, &def, env.clock.now())
        .await
        .unwrap();
    let now = env.clock.advance(Duration::hours(1));
    let report = runner.tick(now).await.unwrap();
    let backup = report.enqueued[0].job_id;
    // Run the backup only; the forget job it queues is taken by a worker that dies.
    assert_eq!(
        runner.run_one().await.unwrap(),
        Outcome::TaskCompleted(backup)
    );
    let forget = env
        .catalog
        .jobs()
        .lease_next("dead", now)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(forget.kind, JobKind::Forget);
    assert_eq!(forget.schedule_id, Some(sched.id));
    let now = env.clock.advance(Duration::minutes(10));
    let report = runner.recover(now).await.unwrap();
    assert_eq!(report.interrupted.len(), 1);
    assert_eq!(report.retried.len(), 1, "{report:?}");
    let s = env.catalog.schedules().get(sched.id).await.unwrap();
    assert_eq!(
        (s.last_job_id, s.last_outcome),
        (Some(backup), Some(JobStatus::Success)),
        "the schedule's last run is still its backup"
    );
    let retry = report.retried[0].1;
    assert_eq!(drain(&runner).await, vec![retry]);
    assert_eq!(env.job(retry).await.status, JobStatus::Success);
    let s = env.catalog.schedules().get(sched.id).await.unwrap();
    assert_eq!(
        (s.last_job_id, s.last_outcome),
        (Some(backup), Some(JobStatus::Success))
    );
}

/// A verification schedule reading 50 % of the data per run alternates between the two
/// halves, remembered in the catalog.
async fn verification_rotates_read_data_slices(env: Env) {
    let runner = env.runner("worker-1");
    assert_eq!(
        run_job(&runner, &request(JobKind::Full, &[])).await.status,
        JobStatus::Success
    );
    let mut def = schedule_def("verify", JobKind::Verification, &[], "@hourly");
    def.settings.read_data_subset = Some(50);
    create_schedule(&env.catalog, &def, env.clock.now())
        .await
        .unwrap();
    let mut slices = Vec::new();
    for _ in 0..3 {
        let now = env.clock.advance(Duration::hours(1));
        let report = runner.tick(now).await.unwrap();
        assert_eq!(report.enqueued.len(), 1);
        let id = report.enqueued[0].job_id;
        assert_eq!(drain(&runner).await, vec![id]);
        let j = env.job(id).await;
        assert_eq!(j.status, JobStatus::Success, "{:?}", j.error_message);
        assert_eq!(j.metadata["result"]["read_data"]["of"], json!(2));
        slices.push(j.metadata["result"]["read_data"]["n"].as_u64().unwrap());
    }
    assert_eq!(slices, vec![0, 1, 0]);
    // Every snapshot is now recorded as verified.
    let recs = env.records(&env.catalog).await;
    assert_eq!(recs.len(), 2);
    assert!(recs.iter().all(|r| r.verified_at.is_some()));
}

/// A worker that is alive but whose job another instance took for interrupted (its heartbeat
/// came too late) stops the job when it learns that, records nothing, and the other
/// instance's retry runs.
async fn lost_lease_stops_the_job_and_the_other_instance_retries(env: Env) {
    let (gate, mut started) = Gate::new();
    gate.hold.store(true, Ordering::SeqCst);
    let slow = env
        .runner_with(env.second_pool().await, env.sources(), "slow", settings())
        .with_hook(gate.clone());
    let other = env.runner("other");
    let mut events = slow.subscribe();
    let now = env.clock.now();
    let sched = create_schedule(
        &env.catalog,
        &schedule_def("hourly", JobKind::Media, &["uploads"], "@hourly"),
        now,
    )
    .await
    .unwrap();
    let Enqueued::Queued(job) = enqueue_scheduled(
        &env.catalog,
        &settings().time_limits,
        &sched,
        "schedule:hourly",
        Some(now),
        now,
    )
    .await
    .unwrap() else {
        panic!("not queued")
    };
    let task = tokio::spawn({
        let r = slow.clone();
        async move { r.run_one().await }
    });
    assert_eq!(next_started(&mut started).await, job.id);
    // The other instance's clock is ahead: to it, the heartbeat is 6 minutes old.
    let report = other.recover(now + Duration::minutes(6)).await.unwrap();
    assert_eq!(report.interrupted.len(), 1, "{report:?}");
    let out = tokio::time::timeout(StdDuration::from_secs(20), task)
        .await
        .expect("the job stopped once its lease was lost")
        .unwrap()
        .unwrap();
    assert_eq!(out, Outcome::TaskCompleted(job.id));
    let j = env.job(job.id).await;
    assert_eq!(j.status, JobStatus::Failed);
    assert_eq!(j.error_message.as_deref(), Some(INTERRUPTED_MESSAGE));
    let ev = events_of(&mut events, job.id);
    assert!(
        ev.iter().any(|e| e
            .message
            .as_deref()
            .is_some_and(|m| m.contains("lease was lost"))),
        "{ev:?}"
    );
    assert!(env.repo_snapshots().await.is_empty());
    // Exactly one retry, run by the other instance.
    gate.hold.store(false, Ordering::SeqCst);
    let ids = drain(&other).await;
    assert_eq!(ids.len(), 1);
    assert_eq!(ids[0], report.retried[0].1);
    assert_eq!(env.job(ids[0]).await.status, JobStatus::Success);
    assert_eq!(drain(&slow).await, Vec::<i64>::new());
}

/// The other kinds of job the service runs: a test restore, retention, prune and a full
/// verification of what is left.
async fn test_restore_forget_prune_and_verify_jobs(env: Env) {
    let runner = env.runner("worker-1");
    let first = run_job(&runner, &request(JobKind::Full, &[])).await;
    assert_eq!(first.status, JobStatus::Success);
    common::sqlite(
        &env.db_path,
        "INSERT INTO patients (name) VALUES ('barbara');",
    );
    for (name, size) in MEDIA_FILES {
        std::fs::write(env.media.join(name), vec![42u8; *size * 3]).unwrap();
    }
    let second = run_job(&runner, &request(JobKind::Full, &[])).await;
    assert_eq!(second.status, JobStatus::Success);

    // A test restore proves the newest database backup.
    let tr = run_job(&runner, &request(JobKind::TestRestore, &["clinic"])).await;
    assert_eq!(tr.status, JobStatus::Success, "{:?}", tr.error_message);
    assert_eq!(tr.snapshot_ids.len(), 1);
    let rec = env
        .catalog
        .snapshots()
        .get(&tr.snapshot_ids[0])
        .await
        .unwrap()
        .unwrap();
    assert!(rec.test_restored_at.is_some());
    assert!(second.snapshot_ids.contains(&tr.snapshot_ids[0]));
    assert_eq!(tr.metadata["result"]["test_restores"][0]["ok"], json!(true));

    // Keep the newest of each source: the first full backup goes (its database part was not
    // test-restored; the second's was).
    let forget = forget_job(
        &runner,
        RetentionPolicy {
            keep_last: Some(1),
            ..RetentionPolicy::default()
        },
        false,
    )
    .await;
    assert_eq!(
        forget.status,
        JobStatus::Success,
        "{:?}",
        forget.error_message
    );
    let left = env.repo_snapshots().await;
    assert_eq!(
        left,
        second.snapshot_ids.iter().cloned().collect::<BTreeSet<_>>()
    );

    // Prune: a dry run frees nothing, a real one frees what the plan said.
    let mut req = request(JobKind::Prune, &[]);
    req.options.dry_run = true;
    let dry = run_job(&runner, &req).await;
    assert_eq!(dry.status, JobStatus::Success, "{:?}", dry.error_message);
    let planned = dry.metadata["result"]["freed_bytes"].as_u64().unwrap();
    assert!(planned > 0, "{:?}", dry.metadata);
    let prune = run_job(&runner, &request(JobKind::Prune, &[])).await;
    assert_eq!(
        prune.status,
        JobStatus::Success,
        "{:?}",
        prune.error_message
    );
    assert_eq!(
        prune.metadata["result"]["freed_bytes"].as_u64(),
        Some(planned)
    );
    let again = run_job(&runner, &req).await;
    assert_eq!(again.metadata["result"]["freed_bytes"].as_u64(), Some(0));

    // A verification reading all data finds the repository sound.
    let mut req = request(JobKind::Verification, &[]);
    req.options.read_data_subset = Some(100);
    let v = run_job(&runner, &req).await;
    assert_eq!(v.status, JobStatus::Success, "{:?}", v.error_message);
    assert_eq!(v.metadata["result"]["errors"], json!([]));
    assert!(v.bytes_read.unwrap() > 0);
    assert_eq!(v.metadata["result"]["snapshots"], json!(2));
}

// ------------------------------------------------------- jobs as the server enqueues them

/// Enqueues a job with `metadata` exactly as the server writes it (crates/server/src/api/
/// ops.rs), runs it, and returns it as recorded.
async fn run_raw(runner: &Runner, kind: JobKind, source: &str, metadata: serde_json::Value) -> Job {
    let mut new = strongroom_catalog::NewJob::new(kind, source, "admin");
    new.metadata = metadata;
    let job = runner
        .catalog()
        .jobs()
        .enqueue(&new, runner.now())
        .await
        .unwrap();
    assert_eq!(
        runner.run_one().await.unwrap(),
        Outcome::TaskCompleted(job.id)
    );
    runner.catalog().jobs().get(job.id).await.unwrap()
}

/// The snapshot of `job` whose source is `name`.
async fn part_of(env: &Env, job: &Job, name: &str) -> String {
    let repo = env.opener.open().await.unwrap();
    for id in &job.snapshot_ids {
        let (_, snap) = repo.read_snapshot(id).await.unwrap();
        if cache::source_name(&snap).as_deref() == Some(name) {
            return id.clone();
        }
    }
    panic!("job {} has no part {name}", job.id)
}

fn patients(db: &Path) -> String {
    common::sqlite(db, "SELECT count(*) FROM patients;")
        .trim()
        .to_owned()
}

/// A backup deleted through the API: its forget job names the snapshots; exactly those go,
/// even the newest verified backup; an unknown id or another source's snapshot removes
/// nothing.
async fn forget_by_id_removes_exactly_the_named_snapshots(env: Env) {
    let runner = env.runner("worker-1");
    let mut req = request(JobKind::Media, &["uploads"]);
    req.options.verify = true;
    let older = run_job(&runner, &req).await;
    env.touch_media(1);
    let newest = run_job(&runner, &req).await;
    let db = run_job(&runner, &request(JobKind::Database, &["clinic"])).await;
    for j in [&older, &newest, &db] {
        assert_eq!(j.status, JobStatus::Success, "{:?}", j.error_message);
    }
    let before = env.repo_snapshots().await;
    assert_eq!(before.len(), 3);

    // Unknown id (with a known one): failed, nothing removed.
    let unknown = "cd".repeat(32);
    let f = run_raw(
        &runner,
        JobKind::Forget,
        "uploads",
        json!({"sources": ["uploads"], "backup_kind": "media", "target_job_id": newest.id,
               "snapshot_ids": [newest.snapshot_ids[0], unknown], "reason": "deleted through the API"}),
    )
    .await;
    assert_eq!(f.status, JobStatus::Failed);
    let msg = f.error_message.clone().unwrap();
    assert!(
        msg.contains(&unknown) && msg.contains("nothing was removed"),
        "{msg}"
    );
    assert_eq!(env.repo_snapshots().await, before);

    // Another source's snapshot: failed, nothing removed.
    let f = run_raw(
        &runner,
        JobKind::Forget,
        "uploads",
        json!({"sources": ["uploads"], "backup_kind": "media", "snapshot_ids": db.snapshot_ids}),
    )
    .await;
    assert_eq!(f.status, JobStatus::Failed);
    assert!(
        f.error_message
            .as_deref()
            .unwrap()
            .contains("nothing was removed"),
        "{:?}",
        f.error_message
    );
    assert_eq!(env.repo_snapshots().await, before);

    // The newest verified media backup, deleted by the user: exactly it goes.
    let gone = newest.snapshot_ids[0].clone();
    assert!(env.catalog.snapshots().get(&gone).await.unwrap().is_some());
    let f = run_raw(
        &runner,
        JobKind::Forget,
        "uploads",
        json!({"sources": ["uploads"], "backup_kind": "media", "target_job_id": newest.id,
               "snapshot_ids": newest.snapshot_ids, "reason": "deleted through the API"}),
    )
    .await;
    assert_eq!(f.status, JobStatus::Success, "{:?}", f.error_message);
    assert_eq!(f.snapshot_ids, vec![gone.clone()]);
    assert_eq!(f.metadata["result"]["removed"], json!([gone.clone()]));
    let mut expected = before.clone();
    expected.remove(&gone);
    assert_eq!(env.repo_snapshots().await, expected);
    assert!(env.catalog.snapshots().get(&gone).await.unwrap().is_none());
    assert!(
        env.catalog
            .snapshots()
            .get(&older.snapshot_ids[0])
            .await
            .unwrap()
            .is_some()
    );
}

/// Restores as the server enqueues them after a confirmed preview: next to the live data,
/// then replacing it after safety backups; what cannot be done fails and changes nothing.
async fn restore_jobs_restore_as_confirmed(env: Env) {
    let runner = env.runner("worker-1");
    let backup = run_job(&runner, &request(JobKind::Full, &[])).await;
    assert_eq!(
        backup.status,
        JobStatus::Success,
        "{:?}",
        backup.error_message
    );
    let original_a = std::fs::read(env.media.join("a.txt")).unwrap();
    // The live data moves on.
    common::sqlite(
        &env.db_path,
        "INSERT INTO patients (name) VALUES ('barbara');",
    );
    std::fs::write(env.media.join("a.txt"), b"changed").unwrap();
    std::fs::write(env.media.join("new.txt"), b"new").unwrap();
    let meta = |target: serde_json::Value| {
        json!({
            "target_job_id": backup.id,
            "snapshot_ids": backup.snapshot_ids,
            "target": target,
            "safety_backup": target["replace"],
            "confirmed_by": "admin",
            "requested_via": "api",
        })
    };
    let bid = backup.id;
    let new_db = PathBuf::from(format!("{}_restored_{bid}", env.db_path.display()));
    let new_media = PathBuf::from(format!("{}.restored-{bid}", env.media.display()));

    // Next to the live data.
    let r = run_raw(
        &runner,
        JobKind::Restore,
        &backup.source,
        meta(json!({"sources": ["clinic", "uploads"], "replace": false, "new_name": null})),
    )
    .await;
    assert_eq!(r.status, JobStatus::Success, "{:?}", r.error_message);
    assert_eq!(patients(&new_db), "3");
    assert_eq!(patients(&env.db_path), "4");
    assert_eq!(std::fs::read(new_media.join("a.txt")).unwrap(), original_a);
    assert!(!new_media.join("new.txt").exists());
    assert_eq!(std::fs::read(env.media.join("a.txt")).unwrap(), b"changed");
    assert_eq!(r.snapshot_ids.len(), 2);
    assert_eq!(
        r.metadata["result"]["restored"].as_array().unwrap().len(),
        2
    );
    assert!(
        !r.metadata.to_string().contains("sqlite://"),
        "{}",
        r.metadata
    );

    // Again: the targets exist; nothing is written over.
    let again = run_raw(
        &runner,
        JobKind::Restore,
        &backup.source,
        meta(json!({"sources": ["uploads"], "replace": false, "new_name": null})),
    )
    .await;
    assert_eq!(again.status, JobStatus::Failed);
    assert!(
        again
            .error_message
            .as_deref()
            .unwrap()
            .contains("already exists"),
        "{:?}",
        again.error_message
    );

    // What cannot be done: a part the backup does not have, new_name with replace.
    for (target, why) in [
        (
            json!({"sources": ["nope"], "replace": false, "new_name": null}),
            "has no part",
        ),
        (
            json!({"sources": ["clinic"], "replace": true, "new_name": "x"}),
            "exclude each other",
        ),
    ] {
        let f = run_raw(&runner, JobKind::Restore, &backup.source, meta(target)).await;
        assert_eq!(f.status, JobStatus::Failed);
        let m = f.error_message.unwrap();
        assert!(
            m.contains(why) && m.contains("nothing was restored") && m.contains("supported"),
            "{m}"
        );
    }
    assert_eq!(patients(&env.db_path), "4");

    // Replacing: safety backups first, then the live data is the backup's.
    let before = env.repo_snapshots().await;
    let r = run_raw(
        &runner,
        JobKind::Restore,
        &backup.source,
        meta(json!({"sources": ["clinic", "uploads"], "replace": true, "new_name": null})),
    )
    .await;
    assert_eq!(r.status, JobStatus::Success, "{:?}", r.error_message);
    assert_eq!(patients(&env.db_path), "3");
    assert_eq!(std::fs::read(env.media.join("a.txt")).unwrap(), original_a);
    assert!(!env.media.join("new.txt").exists());
    let safety: Vec<String> = r.metadata["result"]["safety_backups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["snapshot"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(safety.len(), 2, "{}", r.metadata);
    let after = env.repo_snapshots().await;
    let repo = env.opener.open().await.unwrap();
    for id in &safety {
        assert!(!before.contains(id) && after.contains(id));
        let (_, snap) = repo.read_snapshot(id).await.unwrap();
        assert!(
            snap.tags.contains(&"safety-before-restore".to_owned()),
            "{:?}",
            snap.tags
        );
        assert!(
            cache::source_name(&snap)
                .unwrap()
                .ends_with("-before-restore"),
            "{:?}",
            snap.meta
        );
    }
    // The replaced media folder is kept aside.
    let aside = PathBuf::from(format!("{}.before-restore-{}", env.media.display(), r.id));
    assert_eq!(std::fs::read(aside.join("new.txt")).unwrap(), b"new");
}

/// A replace restore of a media folder brings back the backup's files; what the folder's
/// exclude patterns leave out of backups (caches, temporary files) was never in a snapshot,
/// so it is moved from the replaced folder into the restored one rather than lost to the
/// aside copy. An excluded entry whose place the restored folder has (the patterns changed
/// since the backup) stays aside, and the job says so.
async fn a_replace_restore_keeps_what_backups_leave_out(env: Env) {
    std::fs::write(env.media.join("old.tmp"), b"in the backup").unwrap();
    let backup = run_job(&env.runner("worker-1"), &request(JobKind::Media, &[])).await;
    assert_eq!(
        backup.status,
        JobStatus::Success,
        "{:?}",
        backup.error_message
    );
    let mut sources = env.sources();
    sources.media[0].exclude = vec!["cache/".into(), "*.tmp".into()];
    let runner = env.runner_with(env.catalog.clone(), sources, "worker-1", settings());
    let original_a = std::fs::read(env.media.join("a.txt")).unwrap();
    std::fs::write(env.media.join("a.txt"), b"changed").unwrap();
    std::fs::create_dir_all(env.media.join("cache/thumbs")).unwrap();
    std::fs::write(env.media.join("cache/thumbs/1.jpg"), b"thumb").unwrap();
    std::fs::write(env.media.join("sub/upload.tmp"), b"half an upload").unwrap();
    std::fs::create_dir_all(env.media.join("later/deeper")).unwrap();
    std::fs::write(env.media.join("later/deeper/x.tmp"), b"x").unwrap();
    std::fs::write(env.media.join("old.tmp"), b"live").unwrap();
    let r = run_raw(
        &runner,
        JobKind::Restore,
        &backup.source,
        json!({
            "target_job_id": backup.id,
            "snapshot_ids": backup.snapshot_ids,
            "target": {"sources": ["uploads"], "replace": true, "new_name": null},
            "safety_backup": true,
            "confirmed_by": "admin",
            "requested_via": "api",
        }),
    )
    .await;
    assert_eq!(r.status, JobStatus::Success, "{:?}", r.error_message);
    // The backup's files are back; the excluded ones are still in the live folder.
    assert_eq!(std::fs::read(env.media.join("a.txt")).unwrap(), original_a);
    assert_eq!(
        std::fs::read(env.media.join("cache/thumbs/1.jpg")).unwrap(),
        b"thumb"
    );
    assert_eq!(
        std::fs::read(env.media.join("sub/upload.tmp")).unwrap(),
        b"half an upload"
    );
    // A folder the backup did not have is made for what is moved into it.
    assert_eq!(
        std::fs::read(env.media.join("later/deeper/x.tmp")).unwrap(),
        b"x"
    );
    // old.tmp was backed up before the patterns excluded it: the backup's copy wins, the
    // live one stays aside, and the job says so.
    assert_eq!(
        std::fs::read(env.media.join("old.tmp")).unwrap(),
        b"in the backup"
    );
    let aside = PathBuf::from(format!("{}.before-restore-{}", env.media.display(), r.id));
    assert_eq!(std::fs::read(aside.join("old.tmp")).unwrap(), b"live");
    assert!(!aside.join("cache").exists());
    assert_eq!(std::fs::read(aside.join("a.txt")).unwrap(), b"changed");
    let part = &r.metadata["result"]["restored"][0]["details"];
    assert_eq!(part["excluded_moved_back"], json!(3), "{}", r.metadata);
    let left = part["excluded_left_in_previous"].to_string();
    assert!(
        left.contains("old.tmp") && left.contains("restored folder has it"),
        "{left}"
    );
}

/// A test restore of a given backup proves that backup's database, not the newest one.
async fn test_restore_of_named_snapshots(env: Env) {
    let runner = env.runner("worker-1");
    let first = run_job(&runner, &request(JobKind::Full, &[])).await;
    common::sqlite(
        &env.db_path,
        "INSERT INTO patients (name) VALUES ('barbara');",
    );
    let second = run_job(&runner, &request(JobKind::Full, &[])).await;
    assert_eq!(second.status, JobStatus::Success);
    let first_db = part_of(&env, &first, "clinic").await;

    let tr = run_raw(
        &runner,
        JobKind::TestRestore,
        "clinic",
        json!({"target_job_id": first.id, "snapshot_ids": first.snapshot_ids,
               "sources": ["clinic"], "requested_via": "api"}),
    )
    .await;
    assert_eq!(tr.status, JobStatus::Success, "{:?}", tr.error_message);
    assert_eq!(tr.snapshot_ids, vec![first_db.clone()]);
    let rec = env
        .catalog
        .snapshots()
        .get(&first_db)
        .await
        .unwrap()
        .unwrap();
    assert!(rec.test_restored_at.is_some());
    let second_db = part_of(&env, &second, "clinic").await;
    let rec = env
        .catalog
        .snapshots()
        .get(&second_db)
        .await
        .unwrap()
        .unwrap();
    assert!(rec.test_restored_at.is_none());

    // A snapshot that is gone fails; so does a backup without a database part.
    let gone = "ef".repeat(32);
    let f = run_raw(
        &runner,
        JobKind::TestRestore,
        "clinic",
        json!({"snapshot_ids": [gone], "sources": ["clinic"]}),
    )
    .await;
    assert_eq!(f.status, JobStatus::Failed);
    assert!(
        f.error_message
            .as_deref()
            .unwrap()
            .contains("not in the repository"),
        "{:?}",
        f.error_message
    );
    let media = part_of(&env, &first, "uploads").await;
    let f = run_raw(
        &runner,
        JobKind::TestRestore,
        "clinic",
        json!({"snapshot_ids": [media], "sources": ["clinic"]}),
    )
    .await;
    assert_eq!(f.status, JobStatus::Failed);
    assert!(
        f.error_message
            .as_deref()
            .unwrap()
            .contains("is a database backup"),
        "{:?}",
        f.error_message
    );
}

/// Metadata the runner cannot read fails the job; it never runs with default options.
async fn unreadable_options_fail_the_job(env: Env) {
    let runner = env.runner("worker-1");
    let j = run_raw(
        &runner,
        JobKind::Media,
        "uploads",
        json!({"sources": ["uploads"], "verify": "yes"}),
    )
    .await;
    assert_eq!(j.status, JobStatus::Failed);
    let m = j.error_message.unwrap();
    assert!(m.starts_with("job options unreadable: "), "{m}");
    assert!(j.snapshot_ids.is_empty());
    assert!(env.repo_snapshots().await.is_empty());
    // A forget whose snapshot ids are not a list removes nothing either.
    let b = run_job(&runner, &request(JobKind::Media, &["uploads"])).await;
    let f = run_raw(
        &runner,
        JobKind::Forget,
        "uploads",
        json!({"sources": ["uploads"], "snapshot_ids": b.snapshot_ids[0]}),
    )
    .await;
    assert_eq!(f.status, JobStatus::Failed);
    assert!(
        f.error_message
            .unwrap()
            .starts_with("job options unreadable: ")
    );
    assert_eq!(env.repo_snapshots().await.len(), 1);
}
