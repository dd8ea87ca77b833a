//! The catalog conformance suite: every scenario is written once (in `scenarios`) and run
//! against SQLite (a temporary file) and PostgreSQL (a throw-away database).
//!
//! PostgreSQL is found through `STRONGROOM_TEST_PG` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`, an admin connection); each test creates its
//! own `strongroom_test_<random>` database there and drops it at the end, pass or fail. When
//! PostgreSQL is not reachable the PostgreSQL tests fail (they never skip): run
//! `scripts/services` to start it. These tests must not touch any other database.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use strongroom_catalog::{Catalog, ConnectOptions};

/// What a scenario gets: the open catalog and the URL it was opened with.
struct TestDb {
    catalog: Catalog,
    url: String,
}

async fn run_scenario<F, Fut>(db: TestDb, scenario: F) -> Result<(), String>
where
    F: FnOnce(TestDb) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    // A panicking scenario must not skip the clean-up, so it runs on its own task.
    match tokio::spawn(scenario(db)).await {
        Ok(()) => Ok(()),
        Err(e) if e.is_panic() => {
            let p = e.into_panic();
            Err(p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_else(|| "scenario panicked".into()))
        }
        Err(e) => Err(format!("scenario task failed: {e}")),
    }
}

async fn on_sqlite<F, Fut>(scenario: F)
where
    F: FnOnce(TestDb) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("nested").join("catalog.db");
    let url = format!("sqlite://{}", path.display());
    let catalog = Catalog::connect_with(&url, &ConnectOptions::default())
        .await
        .expect("open the SQLite catalog");
    let outcome = run_scenario(
        TestDb {
            catalog: catalog.clone(),
            url,
        },
        scenario,
    )
    .await;
    catalog.close().await;
    drop(dir);
    if let Err(msg) = outcome {
        panic!("{msg}");
    }
}

fn admin_url() -> String {
    std::env::var("STRONGROOM_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// `url` with its database name replaced by `db`.
fn with_database(url: &str, db: &str) -> String {
    let after_scheme = url.find("://").map(|i| i + 3).unwrap_or(0);
    let (base, query) = match url.find('?') {
        Some(q) => (&url[..q], &url[q..]),
        None => (url, ""),
    };
    let host_end = base[after_scheme..]
        .find('/')
        .map(|i| after_scheme + i)
        .unwrap_or(base.len());
    format!("{}/{db}{query}", &base[..host_end])
}

fn unique_name() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "strongroom_test_{}_{}_{}",
        std::process::id(),
        nanos,
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// `url` with the password of `user:password@` replaced by `***`.
fn redact(url: &str) -> String {
    let start = url.find("://").map(|i| i + 3).unwrap_or(0);
    let end = url[start..]
        .find('/')
        .map(|i| start + i)
        .unwrap_or(url.len());
    match url[start..end].rfind('@') {
        Some(at) => match url[start..start + at].find(':') {
            Some(colon) => format!("{}***{}", &url[..start + colon + 1], &url[start + at..]),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

async fn admin_connection() -> sqlx::PgConnection {
    use sqlx::Connection;
    let url = admin_url();
    let shown = redact(&url);
    match tokio::time::timeout(Duration::from_secs(10), sqlx::PgConnection::connect(&url)).await {
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

async fn on_postgres<F, Fut>(scenario: F)
where
    F: FnOnce(TestDb) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    use sqlx::{Connection, Executor};
    let name = unique_name();
    let mut admin = admin_connection().await;
    admin
        .execute(format!("CREATE DATABASE {name}").as_str())
        .await
        .expect("create the test database");
    let url = with_database(&admin_url(), &name);
    let outcome = match Catalog::connect_with(&url, &ConnectOptions::default()).await {
        Ok(catalog) => {
            let r = run_scenario(
                TestDb {
                    catalog: catalog.clone(),
                    url,
                },
                scenario,
            )
            .await;
            catalog.close().await;
            r
        }
        Err(e) => Err(format!("open the PostgreSQL catalog: {e}")),
    };
    let dropped = admin
        .execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
        .await;
    let _ = admin.close().await;
    if let Err(msg) = outcome {
        panic!("{msg}");
    }
    dropped.expect("drop the test database");
}

/// Opening errors are clear and never show the password of the URL.
#[tokio::test]
async fn connect_errors_are_clear_and_hide_passwords() {
    let options = ConnectOptions {
        acquire_timeout: Duration::from_secs(1),
        ..ConnectOptions::default()
    };
    let url = "postgres://strongroom:hunter2-secret@127.0.0.1:1/catalog";
    let e = Catalog::connect_with(url, &options).await.unwrap_err();
    let msg = e.to_string();
    assert!(!msg.contains("hunter2-secret"), "{msg}");
    assert!(msg.contains("127.0.0.1:1"), "{msg}");
    for bad in [
        "mysql://x@h/db",
        "sqlite://",
        "sqlite::memory:",
        "/tmp/x.db",
    ] {
        assert!(
            matches!(
                Catalog::connect(bad).await,
                Err(strongroom_catalog::CatalogError::Invalid(_))
            ),
            "{bad}"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let c = Catalog::connect(&format!("sqlite://{}/c.db", dir.path().display()))
        .await
        .unwrap();
    assert!(!format!("{c:?}").is_empty());
    let shown = format!(
        "{:?}",
        Catalog::connect_with(url, &options)
            .await
            .map(|_| ())
            .unwrap_err()
    );
    assert!(!shown.contains("hunter2-secret"), "{shown}");
    assert_eq!(redact(url), "postgres://strongroom:***@127.0.0.1:1/catalog");
}

/// Declares each scenario as one test per backend: `sqlite::NAME` and `postgres::NAME`.
macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    crate::on_sqlite(|t| async move { crate::scenarios::$name(&t).await }).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    crate::on_postgres(|t| async move { crate::scenarios::$name(&t).await }).await
                }
            )*
        }
    };
}

conformance!(
    migrations_are_idempotent,
    one_active_job_per_source_and_kind,
    finished_or_cancelled_jobs_free_the_slot,
    each_job_is_leased_exactly_once,
    heartbeat_and_finish_need_the_lease,
    cancellation,
    mark_interrupted_fails_only_stale_jobs,
    claim_due_run_is_exactly_once,
    schedules_crud,
    job_list_filters_and_pagination,
    job_delete,
    health_summary_counts_backups_only,
    users_tokens_sessions,
    audit_and_alerts,
    metrics,
    snapshot_cache,
    values_round_trip,
);

mod scenarios {
    use std::collections::HashMap;
    use std::sync::Arc;

    use chrono::{DateTime, Duration, TimeZone, Utc};
    use serde_json::json;
    use strongroom_catalog::*;

    use super::TestDb;

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0)
            .single()
            .expect("valid time")
    }

    fn at(minutes: i64) -> DateTime<Utc> {
        t0() + Duration::minutes(minutes)
    }

    fn job(kind: JobKind, source: &str) -> NewJob {
        NewJob::new(kind, source, "alice")
    }

    /// Enqueues, leases and finishes a job with `status`, created at `created`.
    async fn finished_job(
        c: &Catalog,
        kind: JobKind,
        source: &str,
        status: JobStatus,
        created: DateTime<Utc>,
    ) -> Job {
        let jobs = c.jobs();
        let queued = jobs
            .enqueue(&job(kind, source), created)
            .await
            .expect("enqueue");
        let leased = jobs
            .lease_next("w", created)
            .await
            .expect("lease")
            .expect("a queued job");
        assert_eq!(leased.id, queued.id, "only this job was queued");
        jobs.finish(
            leased.id,
            "w",
            &JobOutcome::new(status),
            created + Duration::seconds(30),
        )
        .await
        .expect("finish")
    }

    pub async fn migrations_are_idempotent(t: &TestDb) {
        let c = &t.catalog;
        assert_eq!(c.schema_version(), 1);
        let j = c
            .jobs()
            .enqueue(&job(JobKind::Media, "media"), at(0))
            .await
            .unwrap();
        for _ in 0..2 {
            let again = Catalog::connect(&t.url).await.expect("connect again");
            assert_eq!(again.schema_version(), c.schema_version());
            assert_eq!(again.backend(), c.backend());
            assert_eq!(again.jobs().get(j.id).await.unwrap(), j);
            again.close().await;
        }
        // Several processes starting at once migrate safely too.
        let opens: Vec<_> = (0..4)
            .map(|_| {
                let url = t.url.clone();
                tokio::spawn(
                    async move { Catalog::connect(&url).await.map(|c| c.schema_version()) },
                )
            })
            .collect();
        for o in opens {
            assert_eq!(o.await.unwrap().unwrap(), 1);
        }
    }

    pub async fn one_active_job_per_source_and_kind(t: &TestDb) {
        let c = t.catalog.clone();
        let start = Arc::new(tokio::sync::Barrier::new(100));
        let tasks: Vec<_> = (0..100)
            .map(|i| {
                let c = c.clone();
                let start = start.clone();
                tokio::spawn(async move {
                    start.wait().await;
                    c.jobs()
                        .enqueue(
                            &NewJob::new(JobKind::Database, "db:clinic", format!("u{i}")),
                            at(0),
                        )
                        .await
                })
            })
            .collect();
        let mut created = Vec::new();
        let mut refused = Vec::new();
        for task in tasks {
            match task.await.unwrap() {
                Ok(job) => created.push(job.id),
                Err(CatalogError::AlreadyActive { existing_job_id }) => {
                    refused.push(existing_job_id)
                }
                Err(e) => panic!("unexpected error: {e}"),
            }
        }
        assert_eq!(created.len(), 1, "exactly one enqueue succeeds");
        assert_eq!(refused.len(), 99);
        assert!(
            refused.iter().all(|id| *id == created[0]),
            "all point at the one job"
        );
        let active = c
            .jobs()
            .active("db:clinic", JobKind::Database)
            .await
            .unwrap();
        assert_eq!(active.map(|j| j.id), Some(created[0]));
        // Another kind or another source is independent.
        c.jobs()
            .enqueue(&job(JobKind::Verification, "db:clinic"), at(0))
            .await
            .unwrap();
        c.jobs()
            .enqueue(&job(JobKind::Database, "db:other"), at(0))
            .await
            .unwrap();
        // The error names the job for the user.
        let e = c
            .jobs()
            .enqueue(&job(JobKind::Database, "db:clinic"), at(1))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("already in progress"), "{e}");
        // Still refused once the job is in progress.
        let leased = c.jobs().lease_next("w", at(1)).await.unwrap().unwrap();
        assert_eq!(leased.id, created[0]);
        assert!(matches!(
            c.jobs().enqueue(&job(JobKind::Database, "db:clinic"), at(2)).await,
            Err(CatalogError::AlreadyActive { existing_job_id }) if existing_job_id == created[0]
        ));
    }

    pub async fn finished_or_cancelled_jobs_free_the_slot(t: &TestDb) {
        let c = &t.catalog;
        for (i, status) in [
            JobStatus::Success,
            JobStatus::Warning,
            JobStatus::Failed,
            JobStatus::Cancelled,
        ]
        .into_iter()
        .enumerate()
        {
            let j = finished_job(c, JobKind::Full, "all", status, at(i as i64 * 10)).await;
            assert_eq!(j.status, status);
        }
        let queued = c
            .jobs()
            .enqueue(&job(JobKind::Full, "all"), at(100))
            .await
            .unwrap();
        c.jobs().request_cancel(queued.id, at(101)).await.unwrap();
        let again = c
            .jobs()
            .enqueue(&job(JobKind::Full, "all"), at(102))
            .await
            .unwrap();
        assert_ne!(again.id, queued.id);
        // Concurrency again after the slot was used: still one winner.
        c.jobs().request_cancel(again.id, at(103)).await.unwrap();
        let tasks: Vec<_> = (0..20)
            .map(|_| {
                let c = c.clone();
                tokio::spawn(
                    async move { c.jobs().enqueue(&job(JobKind::Full, "all"), at(104)).await },
                )
            })
            .collect();
        let mut ok = 0;
        for task in tasks {
            if task.await.unwrap().is_ok() {
                ok += 1;
            }
        }
        assert_eq!(ok, 1);
    }

    pub async fn each_job_is_leased_exactly_once(t: &TestDb) {
        let c = t.catalog.clone();
        let mut ids = Vec::new();
        for i in 0..50 {
            let j = c
                .jobs()
                .enqueue(&job(JobKind::Database, &format!("db:{i}")), at(i))
                .await
                .unwrap();
            ids.push(j.id);
        }
        let start = Arc::new(tokio::sync::Barrier::new(4));
        let workers: Vec<_> = (0..4)
            .map(|w| {
                let c = c.clone();
                let start = start.clone();
                tokio::spawn(async move {
                    start.wait().await;
                    let worker = format!("worker-{w}");
                    let mut got = Vec::new();
                    while let Some(j) = c.jobs().lease_next(&worker, at(100)).await.unwrap() {
                        assert_eq!(j.status, JobStatus::InProgress);
                        assert_eq!(j.lease_owner.as_deref(), Some(worker.as_str()));
                        assert_eq!(j.attempts, 1);
                        assert_eq!(j.started_at, Some(at(100)));
                        assert_eq!(j.heartbeat_at, Some(at(100)));
                        c.jobs()
                            .finish(j.id, &worker, &JobOutcome::success(), at(101))
                            .await
                            .unwrap();
                        got.push(j.id);
                    }
                    got
                })
            })
            .collect();
        let mut leased: HashMap<i64, usize> = HashMap::new();
        for w in workers {
            for id in w.await.unwrap() {
                *leased.entry(id).or_default() += 1;
            }
        }
        assert_eq!(leased.len(), 50, "every job leased");
        assert!(
            leased.values().all(|n| *n == 1),
            "no job leased twice: {leased:?}"
        );
        let mut got: Vec<i64> = leased.into_keys().collect();
        got.sort_unstable();
        assert_eq!(got, ids);
        assert!(
            c.jobs()
                .lease_next("late", at(102))
                .await
                .unwrap()
                .is_none()
        );
        // The oldest queued job is leased first.
        let a = c
            .jobs()
            .enqueue(&job(JobKind::Media, "m1"), at(201))
            .await
            .unwrap();
        let b = c
            .jobs()
            .enqueue(&job(JobKind::Media, "m0"), at(200))
            .await
            .unwrap();
        assert_eq!(
            c.jobs().lease_next("w", at(202)).await.unwrap().unwrap().id,
            b.id
        );
        assert_eq!(
            c.jobs().lease_next("w", at(202)).await.unwrap().unwrap().id,
            a.id
        );
    }

    pub async fn heartbeat_and_finish_need_the_lease(t: &TestDb) {
        let jobs = t.catalog.jobs();
        let j = jobs
            .enqueue(&job(JobKind::Database, "db:clinic"), at(0))
            .await
            .unwrap();
        // Not leased yet: nobody holds it.
        assert_eq!(
            jobs.heartbeat(j.id, "w1", None, at(1)).await.unwrap_err(),
            CatalogError::LeaseLost { job_id: j.id }
        );
        let j = jobs.lease_next("w1", at(1)).await.unwrap().unwrap();
        let progress = Progress {
            phase: "dumping".into(),
            bytes_done: 1 << 40,
            bytes_total: Some(2 << 40),
            eta_seconds: Some(90),
        };
        assert_eq!(
            jobs.heartbeat(j.id, "w2", Some(&progress), at(2))
                .await
                .unwrap_err(),
            CatalogError::LeaseLost { job_id: j.id }
        );
        let hb = jobs
            .heartbeat(j.id, "w1", Some(&progress), at(2))
            .await
            .unwrap();
        assert_eq!(hb.heartbeat_at, Some(at(2)));
        assert_eq!(hb.progress.as_ref(), Some(&progress));
        // A heartbeat without progress keeps the last progress.
        let hb = jobs.heartbeat(j.id, "w1", None, at(3)).await.unwrap();
        assert_eq!(hb.progress.as_ref(), Some(&progress));
        assert!(!hb.cancel_requested);
        assert!(matches!(
            jobs.heartbeat(9_999_999, "w1", None, at(3)).await,
            Err(CatalogError::NotFound(_))
        ));

        assert_eq!(
            jobs.finish(j.id, "w2", &JobOutcome::success(), at(4))
                .await
                .unwrap_err(),
            CatalogError::LeaseLost { job_id: j.id }
        );
        assert!(matches!(
            jobs.finish(j.id, "w1", &JobOutcome::new(JobStatus::InProgress), at(4))
                .await,
            Err(CatalogError::Invalid(_))
        ));
        let outcome = JobOutcome {
            bytes_read: Some(10_000),
            bytes_added: Some(2_000),
            bytes_stored: Some(900),
            files: Some(3),
            snapshot_ids: vec!["ab12".into(), "cd34".into()],
            checksum: Some("e3b0c442".into()),
            error_message: Some("2 files unreadable".into()),
            metadata: Some(json!({"unreadable": ["a", "b"]})),
            ..JobOutcome::new(JobStatus::Warning)
        };
        let done = jobs.finish(j.id, "w1", &outcome, at(5)).await.unwrap();
        assert_eq!(done.status, JobStatus::Warning);
        assert_eq!(done.completed_at, Some(at(5)));
        assert_eq!(done.duration_seconds, Some(240.0));
        assert_eq!(done.bytes_read, Some(10_000));
        assert_eq!(done.bytes_added, Some(2_000));
        assert_eq!(done.bytes_stored, Some(900));
        assert_eq!(done.files, Some(3));
        assert_eq!(
            done.snapshot_ids,
            vec!["ab12".to_owned(), "cd34".to_owned()]
        );
        assert_eq!(done.checksum.as_deref(), Some("e3b0c442"));
        assert_eq!(done.error_message.as_deref(), Some("2 files unreadable"));
        assert_eq!(done.metadata, json!({"unreadable": ["a", "b"]}));
        assert_eq!(jobs.get(j.id).await.unwrap(), done);
        // Once finished, the lease is gone for everyone.
        assert_eq!(
            jobs.heartbeat(j.id, "w1", None, at(6)).await.unwrap_err(),
            CatalogError::LeaseLost { job_id: j.id }
        );
        assert_eq!(
            jobs.finish(j.id, "w1", &JobOutcome::success(), at(6))
                .await
                .unwrap_err(),
            CatalogError::LeaseLost { job_id: j.id }
        );
    }

    pub async fn cancellation(t: &TestDb) {
        let jobs = t.catalog.jobs();
        let queued = jobs
            .enqueue(&job(JobKind::Prune, "repo"), at(0))
            .await
            .unwrap();
        let cancelled = jobs.request_cancel(queued.id, at(1)).await.unwrap();
        assert_eq!(cancelled.status, JobStatus::Cancelled);
        assert_eq!(cancelled.completed_at, Some(at(1)));
        assert!(
            jobs.lease_next("w", at(2)).await.unwrap().is_none(),
            "cancelled is not leased"
        );

        let running = jobs
            .enqueue(&job(JobKind::Prune, "repo"), at(3))
            .await
            .unwrap();
        jobs.lease_next("w", at(3)).await.unwrap().unwrap();
        let asked = jobs.request_cancel(running.id, at(4)).await.unwrap();
        assert_eq!(asked.status, JobStatus::InProgress);
        assert!(asked.cancel_requested);
        let hb = jobs.heartbeat(running.id, "w", None, at(5)).await.unwrap();
        assert!(hb.cancel_requested, "the worker learns it on its heartbeat");
        let done = jobs
            .finish(
                running.id,
                "w",
                &JobOutcome::new(JobStatus::Cancelled),
                at(6),
            )
            .await
            .unwrap();
        assert_eq!(done.status, JobStatus::Cancelled);
        assert!(matches!(
            jobs.request_cancel(running.id, at(7)).await,
            Err(CatalogError::Conflict(_))
        ));
        assert!(matches!(
            jobs.request_cancel(424_242, at(7)).await,
            Err(CatalogError::NotFound(_))
        ));
    }

    pub async fn mark_interrupted_fails_only_stale_jobs(t: &TestDb) {
        let jobs = t.catalog.jobs();
        let stale = jobs
            .enqueue(&job(JobKind::Database, "db:a"), at(0))
            .await
            .unwrap();
        let fresh = jobs
            .enqueue(&job(JobKind::Database, "db:b"), at(0))
            .await
            .unwrap();
        let queued = jobs
            .enqueue(&job(JobKind::Database, "db:c"), at(0))
            .await
            .unwrap();
        jobs.lease_next("dead-worker", at(1))
            .await
            .unwrap()
            .unwrap();
        jobs.lease_next("live-worker", at(1))
            .await
            .unwrap()
            .unwrap();
        // Lease order is creation order, then id.
        assert_eq!(
            jobs.get(stale.id).await.unwrap().lease_owner.as_deref(),
            Some("dead-worker")
        );
        jobs.heartbeat(fresh.id, "live-worker", None, at(10))
            .await
            .unwrap();

        let interrupted = jobs.mark_interrupted(at(8), at(11)).await.unwrap();
        assert_eq!(interrupted.len(), 1);
        let j = &interrupted[0];
        assert_eq!(j.id, stale.id);
        assert_eq!(j.status, JobStatus::Failed);
        assert_eq!(j.error_message.as_deref(), Some(INTERRUPTED_MESSAGE));
        assert_eq!(j.error_message.as_deref(), Some("interrupted by a restart"));
        assert_eq!(j.completed_at, Some(at(11)));
        assert_eq!(j.duration_seconds, Some(600.0));
        assert_eq!(jobs.get(stale.id).await.unwrap(), *j);
        assert_eq!(
            jobs.get(fresh.id).await.unwrap().status,
            JobStatus::InProgress
        );
        assert_eq!(jobs.get(queued.id).await.unwrap().status, JobStatus::Queued);
        // Its lease is gone, and its slot is free for the retry.
        assert_eq!(
            jobs.heartbeat(stale.id, "dead-worker", None, at(12))
                .await
                .unwrap_err(),
            CatalogError::LeaseLost { job_id: stale.id }
        );
        let retry = jobs
            .enqueue(&job(JobKind::Database, "db:a"), at(12))
            .await
            .unwrap();
        assert_eq!(retry.status, JobStatus::Queued);
        // Nothing more to do a second time.
        assert!(
            jobs.mark_interrupted(at(8), at(13))
                .await
                .unwrap()
                .is_empty()
        );
        // After a restart (cutoff = now), every in-progress job is interrupted.
        let all = jobs.mark_interrupted(at(20), at(20)).await.unwrap();
        assert_eq!(all.iter().map(|j| j.id).collect::<Vec<_>>(), vec![fresh.id]);
        assert!(
            jobs.list(&JobFilter {
                statuses: vec![JobStatus::InProgress],
                ..JobFilter::default()
            })
            .await
            .unwrap()
            .is_empty()
        );
    }

    fn nightly(name: &str, next: Option<DateTime<Utc>>) -> NewSchedule {
        NewSchedule {
            name: name.into(),
            kind: JobKind::Full,
            sources: vec!["db:clinic".into(), "media".into()],
            spec: "daily 02:00".into(),
            timezone: "Asia/Manila".into(),
            enabled: true,
            retention: json!({"keep_daily": 7, "keep_weekly": 4, "keep_monthly": 12}),
            verify_after: true,
            test_restore: false,
            next_run_at: next,
        }
    }

    pub async fn claim_due_run_is_exactly_once(t: &TestDb) {
        let c = t.catalog.clone();
        let due_at = at(120) + Duration::microseconds(123_456);
        let s = c
            .schedules()
            .create(&nightly("nightly", Some(due_at)), at(0))
            .await
            .unwrap();
        assert_eq!(s.next_run_at, Some(due_at));
        assert!(c.schedules().due(at(119)).await.unwrap().is_empty());
        let due = c.schedules().due(at(121)).await.unwrap();
        assert_eq!(due.iter().map(|s| s.id).collect::<Vec<_>>(), vec![s.id]);

        let next = due_at + Duration::days(1);
        let start = Arc::new(tokio::sync::Barrier::new(20));
        let tasks: Vec<_> = (0..20)
            .map(|_| {
                let c = c.clone();
                let start = start.clone();
                tokio::spawn(async move {
                    start.wait().await;
                    c.schedules()
                        .claim_due_run(s.id, due_at, Some(next))
                        .await
                        .unwrap()
                })
            })
            .collect();
        let mut wins = 0;
        for task in tasks {
            if task.await.unwrap() {
                wins += 1;
            }
        }
        assert_eq!(wins, 1, "exactly one claim succeeds");
        assert_eq!(
            c.schedules().get(s.id).await.unwrap().next_run_at,
            Some(next)
        );
        assert!(
            !c.schedules()
                .claim_due_run(s.id, due_at, Some(next))
                .await
                .unwrap()
        );
        assert!(c.schedules().due(at(121)).await.unwrap().is_empty());
        // A disabled schedule is never due and cannot be claimed.
        c.schedules()
            .set_enabled(s.id, false, at(130))
            .await
            .unwrap();
        assert!(c.schedules().due(next).await.unwrap().is_empty());
        assert!(!c.schedules().claim_due_run(s.id, next, None).await.unwrap());
        c.schedules()
            .set_enabled(s.id, true, at(131))
            .await
            .unwrap();
        assert!(c.schedules().claim_due_run(s.id, next, None).await.unwrap());
        assert_eq!(c.schedules().get(s.id).await.unwrap().next_run_at, None);
        assert!(
            !c.schedules()
                .claim_due_run(424_242, next, None)
                .await
                .unwrap()
        );
    }

    pub async fn schedules_crud(t: &TestDb) {
        let schedules = t.catalog.schedules();
        let s = schedules
            .create(&nightly("nightly", Some(at(120))), at(0))
            .await
            .unwrap();
        assert_eq!(s.name, "nightly");
        assert_eq!(s.kind, JobKind::Full);
        assert_eq!(s.sources, vec!["db:clinic".to_owned(), "media".to_owned()]);
        assert_eq!(s.spec, "daily 02:00");
        assert_eq!(s.timezone, "Asia/Manila");
        assert!(s.enabled && s.verify_after && !s.test_restore);
        assert_eq!(s.retention["keep_daily"], 7);
        assert_eq!((s.created_at, s.updated_at), (at(0), at(0)));
        assert_eq!(s.last_run_at, None);
        assert_eq!(schedules.get(s.id).await.unwrap(), s);
        assert_eq!(
            schedules.find_by_name("nightly").await.unwrap(),
            Some(s.clone())
        );
        assert_eq!(schedules.find_by_name("nope").await.unwrap(), None);

        assert!(matches!(
            schedules.create(&nightly("nightly", None), at(1)).await,
            Err(CatalogError::Conflict(_))
        ));
        assert!(matches!(
            schedules.create(&nightly("", None), at(1)).await,
            Err(CatalogError::Invalid(_))
        ));
        let weekly = schedules
            .create(
                &NewSchedule {
                    kind: JobKind::Verification,
                    spec: "0 3 * * SUN".into(),
                    ..nightly("weekly-verify", None)
                },
                at(2),
            )
            .await
            .unwrap();
        assert_eq!(
            schedules
                .list()
                .await
                .unwrap()
                .iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>(),
            vec!["nightly", "weekly-verify"]
        );

        let changed = schedules
            .update(
                s.id,
                &NewSchedule {
                    spec: "daily 03:30".into(),
                    timezone: "UTC".into(),
                    test_restore: true,
                    ..nightly("nightly", Some(at(210)))
                },
                at(5),
            )
            .await
            .unwrap();
        assert_eq!(changed.spec, "daily 03:30");
        assert_eq!(changed.timezone, "UTC");
        assert!(changed.test_restore);
        assert_eq!(changed.next_run_at, Some(at(210)));
        assert_eq!((changed.created_at, changed.updated_at), (at(0), at(5)));
        assert!(matches!(
            schedules
                .update(weekly.id, &nightly("nightly", None), at(6))
                .await,
            Err(CatalogError::Conflict(_))
        ));
        assert!(matches!(
            schedules.update(424_242, &nightly("x", None), at(6)).await,
            Err(CatalogError::NotFound(_))
        ));

        // Runs are recorded with their job; the job keeps its schedule.
        let mut new = job(JobKind::Full, "all");
        new.schedule_id = Some(s.id);
        new.started_by = "schedule:nightly".into();
        let j = t.catalog.jobs().enqueue(&new, at(210)).await.unwrap();
        assert_eq!(j.schedule_id, Some(s.id));
        schedules
            .record_run(s.id, at(210), Some(j.id), None)
            .await
            .unwrap();
        schedules
            .record_run(s.id, at(210), Some(j.id), Some(JobStatus::Success))
            .await
            .unwrap();
        let s2 = schedules.get(s.id).await.unwrap();
        assert_eq!(s2.last_run_at, Some(at(210)));
        assert_eq!(s2.last_job_id, Some(j.id));
        assert_eq!(s2.last_outcome, Some(JobStatus::Success));
        schedules.set_next_run(s.id, Some(at(300))).await.unwrap();
        assert_eq!(
            schedules.get(s.id).await.unwrap().next_run_at,
            Some(at(300))
        );

        schedules.delete(s.id).await.unwrap();
        assert!(matches!(
            schedules.get(s.id).await,
            Err(CatalogError::NotFound(_))
        ));
        assert!(matches!(
            schedules.delete(s.id).await,
            Err(CatalogError::NotFound(_))
        ));
        // Its job stays, without a schedule.
        assert_eq!(t.catalog.jobs().get(j.id).await.unwrap().schedule_id, None);
    }

    pub async fn job_list_filters_and_pagination(t: &TestDb) {
        let c = &t.catalog;
        let mut all = Vec::new();
        for i in 0..30i64 {
            let kind = [JobKind::Database, JobKind::Media, JobKind::Verification][(i % 3) as usize];
            let source = if i % 2 == 0 { "db:clinic" } else { "media" };
            let status = if i % 5 == 0 {
                JobStatus::Failed
            } else {
                JobStatus::Success
            };
            all.push(finished_job(c, kind, source, status, at(i * 60)).await);
        }
        let queued = c
            .jobs()
            .enqueue(&job(JobKind::Full, "all"), at(30 * 60))
            .await
            .unwrap();
        all.push(queued.clone());
        let jobs = c.jobs();

        // Newest first, all of them.
        let listed = jobs.list(&JobFilter::default()).await.unwrap();
        let mut expected: Vec<i64> = all.iter().map(|j| j.id).collect();
        expected.reverse();
        assert_eq!(listed.iter().map(|j| j.id).collect::<Vec<_>>(), expected);
        assert_eq!(jobs.count(&JobFilter::default()).await.unwrap(), 31);

        // Pages cover everything exactly once.
        let mut paged = Vec::new();
        for page in 0..4 {
            let f = JobFilter {
                limit: 10,
                offset: page * 10,
                ..JobFilter::default()
            };
            paged.extend(jobs.list(&f).await.unwrap().into_iter().map(|j| j.id));
        }
        assert_eq!(paged, expected);

        let check = |f: JobFilter, pred: &dyn Fn(&Job) -> bool| {
            let want: Vec<i64> = all.iter().rev().filter(|j| pred(j)).map(|j| j.id).collect();
            (f, want)
        };
        let cases = vec![
            check(
                JobFilter {
                    kinds: vec![JobKind::Media],
                    ..JobFilter::default()
                },
                &|j| j.kind == JobKind::Media,
            ),
            check(
                JobFilter {
                    kinds: vec![JobKind::Media, JobKind::Database],
                    statuses: vec![JobStatus::Failed],
                    ..JobFilter::default()
                },
                &|j| {
                    matches!(j.kind, JobKind::Media | JobKind::Database)
                        && j.status == JobStatus::Failed
                },
            ),
            check(
                JobFilter {
                    source: Some("media".into()),
                    ..JobFilter::default()
                },
                &|j| j.source == "media",
            ),
            check(
                JobFilter {
                    statuses: vec![JobStatus::Queued, JobStatus::InProgress],
                    ..JobFilter::default()
                },
                &|j| j.status.is_active(),
            ),
            check(
                JobFilter {
                    created_from: Some(at(600)),
                    created_before: Some(at(1200)),
                    ..JobFilter::default()
                },
                &|j| j.created_at >= at(600) && j.created_at < at(1200),
            ),
            check(
                JobFilter {
                    source: Some("db:clinic".into()),
                    kinds: vec![JobKind::Verification],
                    created_from: Some(at(300)),
                    ..JobFilter::default()
                },
                &|j| {
                    j.source == "db:clinic"
                        && j.kind == JobKind::Verification
                        && j.created_at >= at(300)
                },
            ),
        ];
        for (f, want) in cases {
            let got: Vec<i64> = jobs.list(&f).await.unwrap().iter().map(|j| j.id).collect();
            assert_eq!(got, want, "filter {f:?}");
            assert!(!want.is_empty(), "filter {f:?} should match something");
            assert_eq!(jobs.count(&f).await.unwrap(), want.len() as u64);
        }
        let two = jobs
            .list(&JobFilter {
                kinds: vec![JobKind::Media],
                limit: 2,
                offset: 1,
                ..JobFilter::default()
            })
            .await
            .unwrap();
        let media: Vec<i64> = all
            .iter()
            .rev()
            .filter(|j| j.kind == JobKind::Media)
            .map(|j| j.id)
            .collect();
        assert_eq!(
            two.iter().map(|j| j.id).collect::<Vec<_>>(),
            media[1..3].to_vec()
        );

        // latest_success: the newest success for (source, kind), ignoring failures.
        let want = all
            .iter()
            .filter(|j| {
                j.source == "db:clinic"
                    && j.kind == JobKind::Database
                    && j.status == JobStatus::Success
            })
            .map(|j| j.id)
            .max();
        let got = jobs
            .latest_success("db:clinic", JobKind::Database)
            .await
            .unwrap();
        assert_eq!(got.map(|j| j.id), want);
        assert_eq!(
            jobs.latest_success("nowhere", JobKind::Database)
                .await
                .unwrap(),
            None
        );
        assert_eq!(
            jobs.latest_of_kind(JobKind::Full)
                .await
                .unwrap()
                .map(|j| j.id),
            Some(queued.id)
        );
    }

    pub async fn job_delete(t: &TestDb) {
        let jobs = t.catalog.jobs();
        let done = finished_job(
            &t.catalog,
            JobKind::Media,
            "media",
            JobStatus::Success,
            at(0),
        )
        .await;
        let active = jobs
            .enqueue(&job(JobKind::Media, "media"), at(1))
            .await
            .unwrap();
        assert!(matches!(
            jobs.delete(active.id).await,
            Err(CatalogError::Conflict(_))
        ));
        jobs.delete(done.id).await.unwrap();
        assert!(matches!(
            jobs.get(done.id).await,
            Err(CatalogError::NotFound(_))
        ));
        assert!(matches!(
            jobs.delete(done.id).await,
            Err(CatalogError::NotFound(_))
        ));
        // Ids are never reused.
        jobs.request_cancel(active.id, at(2)).await.unwrap();
        jobs.delete(active.id).await.unwrap();
        let next = jobs
            .enqueue(&job(JobKind::Media, "media"), at(3))
            .await
            .unwrap();
        assert!(next.id > active.id);
    }

    pub async fn health_summary_counts_backups_only(t: &TestDb) {
        let c = &t.catalog;
        let now = at(60 * 24 * 10);
        let hours = |h: i64| now - Duration::hours(h);
        // Within 24 h: 2 successes, 1 failure (backups); 1 verification (not counted).
        finished_job(
            c,
            JobKind::Database,
            "db:clinic",
            JobStatus::Success,
            hours(1),
        )
        .await;
        finished_job(c, JobKind::Media, "media", JobStatus::Success, hours(2)).await;
        finished_job(c, JobKind::Full, "all", JobStatus::Failed, hours(3)).await;
        let verify = finished_job(
            c,
            JobKind::Verification,
            "repo",
            JobStatus::Failed,
            hours(4),
        )
        .await;
        // Within the week: 1 success, 1 warning (not a success).
        finished_job(
            c,
            JobKind::Database,
            "db:clinic",
            JobStatus::Success,
            hours(48),
        )
        .await;
        finished_job(c, JobKind::Media, "media", JobStatus::Warning, hours(72)).await;
        // Older than a week: not counted, but can be "latest".
        let old_full =
            finished_job(c, JobKind::Full, "old", JobStatus::Success, hours(24 * 9)).await;
        // A restore and a prune today: not backups.
        finished_job(
            c,
            JobKind::Restore,
            "db:clinic",
            JobStatus::Success,
            hours(1),
        )
        .await;
        finished_job(c, JobKind::Prune, "repo", JobStatus::Failed, hours(1)).await;
        let latest_db = c
            .jobs()
            .enqueue(&job(JobKind::Database, "db:clinic"), hours(0))
            .await
            .unwrap();

        let s = c.jobs().health_summary(now).await.unwrap();
        assert_eq!(s.last_24h_backups, 4, "3 finished + 1 queued backup today");
        assert_eq!(s.last_24h_successful, 2);
        assert_eq!(s.last_week_backups, 6);
        assert_eq!(s.last_week_successful, 3);
        assert!((s.health_score - 0.5).abs() < 1e-9);
        assert!(!s.is_healthy());
        assert_eq!(s.health_status(), "unhealthy");
        assert_eq!(s.latest_database_backup.map(|j| j.id), Some(latest_db.id));
        assert_eq!(s.latest_media_backup.map(|j| j.created_at), Some(hours(2)));
        assert_eq!(s.latest_full_backup.map(|j| j.created_at), Some(hours(3)));
        assert_eq!(s.latest_verification.map(|j| j.id), Some(verify.id));
        let _ = old_full;

        // An empty week scores 0.
        let later = c
            .jobs()
            .health_summary(now + Duration::days(30))
            .await
            .unwrap();
        assert_eq!((later.last_week_backups, later.health_score), (0, 0.0));
        assert_eq!(later.health_status(), "unhealthy");
    }

    pub async fn users_tokens_sessions(t: &TestDb) {
        let c = &t.catalog;
        assert_eq!(c.users().count().await.unwrap(), 0);
        let alice = c
            .users()
            .create(
                &NewUser {
                    username: "alice".into(),
                    password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
                    role: Role::Admin,
                },
                at(0),
            )
            .await
            .unwrap();
        assert_eq!(alice.role, Role::Admin);
        assert!(!alice.disabled);
        assert_eq!(alice.password_changed_at, Some(at(0)));
        assert!(
            !format!("{alice:?}").contains("argon2id"),
            "Debug hides the hash"
        );
        let bob = c
            .users()
            .create(
                &NewUser {
                    username: "bob".into(),
                    password_hash: "h2".into(),
                    role: Role::Viewer,
                },
                at(1),
            )
            .await
            .unwrap();
        assert!(matches!(
            c.users()
                .create(
                    &NewUser {
                        username: "alice".into(),
                        password_hash: "x".into(),
                        role: Role::Staff
                    },
                    at(2)
                )
                .await,
            Err(CatalogError::Conflict(_))
        ));
        assert_eq!(c.users().count().await.unwrap(), 2);
        assert_eq!(c.users().get(alice.id).await.unwrap(), alice);
        assert_eq!(
            c.users().find_by_username("bob").await.unwrap(),
            Some(bob.clone())
        );
        assert_eq!(c.users().find_by_username("carol").await.unwrap(), None);
        c.users()
            .set_password_hash(bob.id, "h3", at(5))
            .await
            .unwrap();
        c.users().set_role(bob.id, Role::Staff).await.unwrap();
        c.users().set_disabled(bob.id, true).await.unwrap();
        let bob2 = c.users().get(bob.id).await.unwrap();
        assert_eq!(
            (
                bob2.password_hash.as_str(),
                bob2.role,
                bob2.disabled,
                bob2.password_changed_at
            ),
            ("h3", Role::Staff, true, Some(at(5)))
        );
        assert_eq!(
            c.users()
                .list()
                .await
                .unwrap()
                .iter()
                .map(|u| u.username.as_str())
                .collect::<Vec<_>>(),
            vec!["alice", "bob"]
        );
        assert!(matches!(
            c.users().set_role(424_242, Role::Admin).await,
            Err(CatalogError::NotFound(_))
        ));

        // Tokens.
        let tok = c
            .tokens()
            .create(
                &NewToken {
                    user_id: bob.id,
                    name: "monitor page".into(),
                    token_hash: "hash-1".into(),
                    scopes: vec!["read".into()],
                    expires_at: Some(at(1000)),
                },
                at(10),
            )
            .await
            .unwrap();
        assert_eq!(tok.scopes, vec!["read".to_owned()]);
        assert!(tok.is_usable(at(999)) && !tok.is_usable(at(1000)));
        assert!(!format!("{tok:?}").contains("hash-1"));
        assert_eq!(
            c.tokens().find_by_hash("hash-1").await.unwrap(),
            Some(tok.clone())
        );
        assert_eq!(c.tokens().find_by_hash("hash-2").await.unwrap(), None);
        assert!(matches!(
            c.tokens()
                .create(
                    &NewToken {
                        user_id: alice.id,
                        name: "dup".into(),
                        token_hash: "hash-1".into(),
                        scopes: vec![],
                        expires_at: None
                    },
                    at(11)
                )
                .await,
            Err(CatalogError::Conflict(_))
        ));
        assert!(matches!(
            c.tokens()
                .create(
                    &NewToken {
                        user_id: 424_242,
                        name: "orphan".into(),
                        token_hash: "hash-9".into(),
                        scopes: vec![],
                        expires_at: None
                    },
                    at(11)
                )
                .await,
            Err(CatalogError::Conflict(_))
        ));
        c.tokens().touch(tok.id, at(20)).await.unwrap();
        c.tokens().revoke(tok.id).await.unwrap();
        let tok2 = c.tokens().get(tok.id).await.unwrap();
        assert_eq!(tok2.last_used_at, Some(at(20)));
        assert!(tok2.revoked && !tok2.is_usable(at(21)));
        let other = c
            .tokens()
            .create(
                &NewToken {
                    user_id: bob.id,
                    name: "ci".into(),
                    token_hash: "hash-3".into(),
                    scopes: vec![],
                    expires_at: None,
                },
                at(30),
            )
            .await
            .unwrap();
        assert!(other.is_usable(at(1_000_000)));
        assert_eq!(
            c.tokens()
                .list_for_user(bob.id)
                .await
                .unwrap()
                .iter()
                .map(|t| t.id)
                .collect::<Vec<_>>(),
            vec![other.id, tok.id]
        );
        c.tokens().delete(other.id).await.unwrap();
        assert!(matches!(
            c.tokens().get(other.id).await,
            Err(CatalogError::NotFound(_))
        ));

        // Sessions.
        let s = c
            .sessions()
            .create(
                &NewSession {
                    id: "sess-hash".into(),
                    user_id: alice.id,
                    expires_at: at(60),
                    csrf_token: "csrf-secret".into(),
                },
                at(0),
            )
            .await
            .unwrap();
        assert_eq!(
            (s.created_at, s.last_seen_at, s.expires_at),
            (at(0), at(0), at(60))
        );
        assert!(!format!("{s:?}").contains("csrf-secret"));
        c.sessions()
            .touch("sess-hash", at(30), at(90))
            .await
            .unwrap();
        let s2 = c.sessions().get("sess-hash").await.unwrap().unwrap();
        assert_eq!((s2.last_seen_at, s2.expires_at), (at(30), at(90)));
        for (id, exp) in [("a", at(10)), ("b", at(20))] {
            c.sessions()
                .create(
                    &NewSession {
                        id: id.into(),
                        user_id: bob.id,
                        expires_at: exp,
                        csrf_token: "c".into(),
                    },
                    at(0),
                )
                .await
                .unwrap();
        }
        assert_eq!(c.sessions().delete_expired(at(10)).await.unwrap(), 1);
        assert!(c.sessions().get("a").await.unwrap().is_none());
        assert_eq!(c.sessions().delete_for_user(bob.id).await.unwrap(), 1);
        assert!(c.sessions().delete("sess-hash").await.unwrap());
        assert!(!c.sessions().delete("sess-hash").await.unwrap());

        // Deleting a user removes their tokens and sessions.
        c.sessions()
            .create(
                &NewSession {
                    id: "bob-2".into(),
                    user_id: bob.id,
                    expires_at: at(100),
                    csrf_token: "c".into(),
                },
                at(0),
            )
            .await
            .unwrap();
        c.users().delete(bob.id).await.unwrap();
        assert!(c.sessions().get("bob-2").await.unwrap().is_none());
        assert!(matches!(
            c.tokens().get(tok.id).await,
            Err(CatalogError::NotFound(_))
        ));
        assert!(matches!(
            c.users().get(bob.id).await,
            Err(CatalogError::NotFound(_))
        ));
        assert!(matches!(
            c.users().delete(bob.id).await,
            Err(CatalogError::NotFound(_))
        ));
    }

    pub async fn audit_and_alerts(t: &TestDb) {
        let c = &t.catalog;
        let mut ids = Vec::new();
        for (i, (actor, action)) in [
            ("alice", "backup.create"),
            ("bob", "snapshot.download"),
            ("alice", "restore"),
            ("schedule:nightly", "backup.create"),
        ]
        .into_iter()
        .enumerate()
        {
            let e = c
                .audit()
                .append(
                    &NewAuditEntry {
                        actor: actor.into(),
                        action: action.into(),
                        target: Some(format!("job:{i}")),
                        details: json!({"i": i}),
                        ip: (i % 2 == 0).then(|| "192.0.2.7".to_owned()),
                    },
                    at(i as i64),
                )
                .await
                .unwrap();
            assert_eq!(e.at, at(i as i64));
            ids.push(e.id);
        }
        let all = c.audit().list(&AuditFilter::default()).await.unwrap();
        assert_eq!(all.iter().map(|e| e.id).rev().collect::<Vec<_>>(), ids);
        assert_eq!(all[3].ip.as_deref(), Some("192.0.2.7"));
        assert_eq!(all[0].details, json!({"i": 3}));
        let alice = c
            .audit()
            .list(&AuditFilter {
                actor: Some("alice".into()),
                ..AuditFilter::default()
            })
            .await
            .unwrap();
        assert_eq!(
            alice.iter().map(|e| e.id).collect::<Vec<_>>(),
            vec![ids[2], ids[0]]
        );
        let creates = c
            .audit()
            .list(&AuditFilter {
                action: Some("backup.create".into()),
                from: Some(at(1)),
                before: Some(at(10)),
                ..AuditFilter::default()
            })
            .await
            .unwrap();
        assert_eq!(
            creates.iter().map(|e| e.id).collect::<Vec<_>>(),
            vec![ids[3]]
        );
        let page = c
            .audit()
            .list(&AuditFilter {
                limit: 2,
                offset: 1,
                ..AuditFilter::default()
            })
            .await
            .unwrap();
        assert_eq!(
            page.iter().map(|e| e.id).collect::<Vec<_>>(),
            vec![ids[2], ids[1]]
        );
        assert!(matches!(
            c.audit()
                .append(
                    &NewAuditEntry {
                        actor: "".into(),
                        action: "x".into(),
                        target: None,
                        details: json!(null),
                        ip: None
                    },
                    at(0)
                )
                .await,
            Err(CatalogError::Invalid(_))
        ));
        assert_eq!(c.audit().delete_before(at(2)).await.unwrap(), 2);

        // Alerts.
        let a1 = c
            .alerts()
            .record("backup_failed:db:clinic", "email", &json!({"to": 1}), at(0))
            .await
            .unwrap();
        let a2 = c
            .alerts()
            .record("backup_failed:db:clinic", "email", &json!(null), at(5))
            .await
            .unwrap();
        c.alerts()
            .record("backup_failed:db:clinic", "webhook", &json!({}), at(7))
            .await
            .unwrap();
        assert_eq!(a1.details, json!({"to": 1}));
        assert_eq!(a2.details, json!({}));
        let last = c
            .alerts()
            .last("backup_failed:db:clinic", "email")
            .await
            .unwrap()
            .unwrap();
        assert_eq!((last.id, last.sent_at), (a2.id, at(5)));
        assert!(c.alerts().last("other", "email").await.unwrap().is_none());
        assert_eq!(c.alerts().list(2).await.unwrap().len(), 2);
        assert_eq!(c.alerts().delete_before(at(6)).await.unwrap(), 2);
        assert_eq!(c.alerts().list(10).await.unwrap().len(), 1);
    }

    pub async fn metrics(t: &TestDb) {
        let m = t.catalog.metrics();
        let new = |name: &str, value: f64, status: MetricStatus| NewMetric {
            name: name.into(),
            value,
            unit: "%".into(),
            status,
            details: json!({"checked": ["db", "storage"]}),
        };
        let mut rows = Vec::new();
        for (i, (name, v, s)) in [
            ("backup_health", 100.0, MetricStatus::Healthy),
            ("storage_usage", 81.5, MetricStatus::Warning),
            ("backup_health", 25.0, MetricStatus::Critical),
            ("storage_usage", 82.25, MetricStatus::Warning),
            ("backup_health", 75.0, MetricStatus::Warning),
        ]
        .into_iter()
        .enumerate()
        {
            rows.push(m.insert(&new(name, v, s), at(i as i64 * 10)).await.unwrap());
        }
        assert_eq!(rows[1].value, 81.5);
        assert_eq!(rows[1].details, json!({"checked": ["db", "storage"]}));
        assert_eq!(
            m.latest("backup_health").await.unwrap(),
            Some(rows[4].clone())
        );
        assert_eq!(m.latest("nope").await.unwrap(), None);
        assert_eq!(
            m.latest_per_name().await.unwrap(),
            vec![rows[4].clone(), rows[3].clone()]
        );
        let ranged = m
            .list(&MetricFilter {
                name: Some("backup_health".into()),
                from: Some(at(10)),
                before: Some(at(40)),
                ..MetricFilter::default()
            })
            .await
            .unwrap();
        assert_eq!(ranged, vec![rows[2].clone()]);
        assert_eq!(m.list(&MetricFilter::default()).await.unwrap().len(), 5);
        assert!(matches!(
            m.insert(&new("x", f64::NAN, MetricStatus::Unknown), at(0))
                .await,
            Err(CatalogError::Invalid(_))
        ));
        assert_eq!(m.delete_before(at(20)).await.unwrap(), 2);
        assert_eq!(m.list(&MetricFilter::default()).await.unwrap().len(), 3);
    }

    fn snap(id: &str, minutes: i64, source: &str) -> SnapshotRecord {
        SnapshotRecord {
            snapshot_id: id.into(),
            time: at(minutes),
            kind: "stream".into(),
            source: source.into(),
            host: "app-1".into(),
            tags: vec!["nightly".into()],
            size: Some(123_456_789_012),
            parent: None,
            summary: json!({"files": 1, "bytes": 123_456_789_012u64}),
            meta: json!({"engine": "postgres", "tables": 42}),
            verified_at: None,
            test_restored_at: None,
            verification: None,
        }
    }

    pub async fn snapshot_cache(t: &TestDb) {
        let s = t.catalog.snapshots();
        s.upsert(&snap("aa", 0, "db:clinic")).await.unwrap();
        s.upsert(&snap("bb", 10, "media")).await.unwrap();
        s.upsert(&SnapshotRecord {
            kind: "files".into(),
            parent: Some("bb".into()),
            ..snap("cc", 20, "media")
        })
        .await
        .unwrap();
        assert_eq!(s.count().await.unwrap(), 3);
        assert_eq!(s.get("aa").await.unwrap(), Some(snap("aa", 0, "db:clinic")));
        assert_eq!(s.get("zz").await.unwrap(), None);
        let ids = |v: Vec<SnapshotRecord>| v.into_iter().map(|s| s.snapshot_id).collect::<Vec<_>>();
        assert_eq!(
            ids(s.list(&SnapshotFilter::default()).await.unwrap()),
            vec!["cc", "bb", "aa"]
        );
        assert_eq!(
            ids(s
                .list(&SnapshotFilter {
                    source: Some("media".into()),
                    ..SnapshotFilter::default()
                })
                .await
                .unwrap()),
            vec!["cc", "bb"]
        );
        assert_eq!(
            ids(s
                .list(&SnapshotFilter {
                    kind: Some("stream".into()),
                    limit: 1,
                    offset: 1,
                    ..SnapshotFilter::default()
                })
                .await
                .unwrap()),
            vec!["aa"]
        );

        // Verification is remembered across a refresh from the repository.
        s.mark_verified("aa", at(100), &json!({"ok": true, "read_data": true}))
            .await
            .unwrap();
        s.mark_test_restored("aa", at(110)).await.unwrap();
        s.upsert(&SnapshotRecord {
            tags: vec!["nightly".into(), "kept".into()],
            ..snap("aa", 0, "db:clinic")
        })
        .await
        .unwrap();
        let aa = s.get("aa").await.unwrap().unwrap();
        assert_eq!(aa.tags, vec!["nightly".to_owned(), "kept".to_owned()]);
        assert_eq!(aa.verified_at, Some(at(100)));
        assert_eq!(aa.test_restored_at, Some(at(110)));
        assert_eq!(
            aa.verification,
            Some(json!({"ok": true, "read_data": true}))
        );
        assert!(matches!(
            s.mark_verified("zz", at(1), &json!({})).await,
            Err(CatalogError::NotFound(_))
        ));

        assert!(s.delete("bb").await.unwrap());
        assert!(!s.delete("bb").await.unwrap());
        assert_eq!(s.clear().await.unwrap(), 2);
        assert_eq!(s.count().await.unwrap(), 0);
        // Rebuild: repopulate after clearing.
        s.upsert(&snap("aa", 0, "db:clinic")).await.unwrap();
        assert_eq!(s.count().await.unwrap(), 1);
    }

    /// Edge values come back exactly as written, on both backends.
    pub async fn values_round_trip(t: &TestDb) {
        let jobs = t.catalog.jobs();
        let odd_time = Utc
            .with_ymd_and_hms(2026, 10, 25, 1, 59, 59)
            .single()
            .unwrap()
            + Duration::nanoseconds(999_999_999);
        let mut new = NewJob::new(
            JobKind::TestRestore,
            "db:ünïcode 'quoted' \"x\"",
            "schedule:nightly",
        );
        new.time_limit_seconds = Some(7200);
        new.metadata = json!({"nested": {"list": [1, 2.5, null, "s"]}, "big": u64::MAX});
        let j = jobs.enqueue(&new, odd_time).await.unwrap();
        // Times are kept to the microsecond.
        assert_eq!(j.created_at, odd_time - Duration::nanoseconds(999));
        assert_eq!(j.source, new.source);
        assert_eq!(j.kind, JobKind::TestRestore);
        assert_eq!(j.time_limit_seconds, Some(7200));
        assert_eq!(j.metadata, new.metadata);
        assert_eq!(j.snapshot_ids, Vec::<String>::new());
        assert_eq!(j.progress, None);
        assert_eq!(j.attempts, 0);
        assert!(!j.cancel_requested);
        assert_eq!(jobs.get(j.id).await.unwrap(), j);
        // Null metadata is stored as an empty object.
        let mut plain = NewJob::new(JobKind::Forget, "repo", "bob");
        plain.metadata = json!(null);
        assert_eq!(
            jobs.enqueue(&plain, at(0)).await.unwrap().metadata,
            json!({})
        );
        assert!(matches!(
            jobs.enqueue(&NewJob::new(JobKind::Forget, " ", "bob"), at(0))
                .await,
            Err(CatalogError::Invalid(_))
        ));
        let mut huge = NewJob::new(JobKind::Import, "x", "bob");
        huge.time_limit_seconds = Some(u64::MAX);
        assert!(matches!(
            jobs.enqueue(&huge, at(0)).await,
            Err(CatalogError::Invalid(_))
        ));
        // Every kind can be stored.
        for (i, kind) in JobKind::ALL.iter().enumerate() {
            let j = jobs
                .enqueue(&NewJob::new(*kind, format!("k{i}"), "bob"), at(0))
                .await
                .unwrap();
            assert_eq!(jobs.get(j.id).await.unwrap().kind, *kind);
        }
    }
}
