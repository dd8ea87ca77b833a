//! The contract between the server, which enqueues jobs in the catalog, and the job runner
//! (strongroom-jobs), which leases them and reads each job's `metadata` as its `JobOptions`
//! (`crates/jobs/src/runner/options.rs`). The server must not depend on strongroom-jobs, so
//! this test mirrors the runner's reader: `JobOptions` below has the runner's field names and
//! types, and is read the way `JobOptions::from_metadata` reads (serde, unknown keys ignored).
//! The runner fails a job whose metadata does not deserialize ("job options unreadable"), so
//! every job the server writes must deserialize here, strictly, with the intended values; and
//! its catalog `source` must be the runner's `source_key(kind, sources)`.
//!
//! If the runner's `JobOptions` or `source_key` change, change the mirror with them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use axum::http::{Method, StatusCode};
use chrono::{DateTime, Utc};
use common::*;
use serde::Deserialize;
use serde_json::json;
use strongroom_catalog::{Job, JobKind, JobStatus};

/// The runner's `RetentionPolicy` (same names and types).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[allow(dead_code)]
struct RetentionPolicy {
    #[serde(default)]
    keep_last: Option<u32>,
    #[serde(default)]
    keep_daily: Option<u32>,
    #[serde(default)]
    keep_weekly: Option<u32>,
    #[serde(default)]
    keep_monthly: Option<u32>,
    #[serde(default)]
    keep_yearly: Option<u32>,
    #[serde(default)]
    keep_days: Option<u32>,
}

/// The runner's `JobOptions` (same names and types, `#[serde(default)]` on each).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[allow(dead_code)]
struct JobOptions {
    #[serde(default)]
    sources: Vec<String>,
    #[serde(default)]
    verify: bool,
    #[serde(default)]
    test_restore: bool,
    #[serde(default)]
    schedule: Option<String>,
    #[serde(default)]
    planned_for: Option<DateTime<Utc>>,
    #[serde(default)]
    retention: Option<RetentionPolicy>,
    #[serde(default)]
    read_data_subset: Option<u8>,
    #[serde(default)]
    dry_run: bool,
    #[serde(default)]
    backup_kind: Option<JobKind>,
    #[serde(default)]
    retry_of: Option<i64>,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    snapshot_ids: Vec<String>,
    #[serde(default)]
    target_job_id: Option<i64>,
    #[serde(default)]
    target: Option<RestoreTarget>,
    #[serde(default)]
    safety_backup: bool,
}

/// The runner's `RestoreTarget`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[allow(dead_code)]
struct RestoreTarget {
    #[serde(default)]
    sources: Vec<String>,
    #[serde(default)]
    replace: bool,
    #[serde(default)]
    new_name: Option<String>,
}

/// The runner's `source_key`.
fn source_key(kind: JobKind, sources: &[String]) -> String {
    match kind {
        JobKind::Verification | JobKind::Prune => "repository".into(),
        _ => {
            let mut names: Vec<&str> = sources.iter().map(String::as_str).collect();
            names.sort_unstable();
            names.dedup();
            if names.is_empty() {
                "all".into()
            } else {
                names.join("+")
            }
        }
    }
}

/// What the runner will read from `job`: fails the test where the runner would silently read
/// nothing.
fn options(job: &Job) -> JobOptions {
    assert!(
        job.metadata.is_object(),
        "job {} metadata is not an object: {}",
        job.id,
        job.metadata
    );
    let o: JobOptions = serde_json::from_value(job.metadata.clone()).unwrap_or_else(|e| {
        panic!(
            "the runner cannot read job {}'s metadata ({e}); it would run with no options: {}",
            job.id, job.metadata
        )
    });
    assert_eq!(
        job.source,
        source_key(job.kind, &o.sources),
        "job {} source key",
        job.id
    );
    let text = job.metadata.to_string();
    assert!(
        !text.contains("://") && !text.contains(DB_PASSWORD),
        "job {} metadata must name sources, never URLs: {text}",
        job.id
    );
    assert!(
        job.time_limit_seconds.is_some(),
        "job {} has the configured time limit",
        job.id
    );
    o
}

async fn job_of(app: &TestApp, r: &Resp) -> Job {
    assert!(r.status.is_success(), "{} {}", r.status, r.text());
    let v = r.json();
    let id = v["job_id"]
        .as_i64()
        .or_else(|| v["backup_id"].as_i64())
        .or_else(|| v["verification_job_id"].as_i64())
        .expect("a job id");
    app.catalog.jobs().get(id).await.unwrap()
}

#[tokio::test]
async fn backups_started_through_either_api_carry_the_runners_options() {
    let app = app().await;
    // v1: named sources, sorted and de-duplicated, the key joined by `+`.
    let r = app
        .send(Req::post("/api/v1/backups").bearer(&app.staff).json(
            json!({"kind": "full", "sources": ["uploads", "clinic", "clinic"], "verify": true}),
        ))
        .await;
    let j = job_of(&app, &r).await;
    let o = options(&j);
    assert_eq!(
        (j.kind, j.source.as_str()),
        (JobKind::Full, "clinic+uploads")
    );
    assert_eq!(
        o,
        JobOptions {
            sources: vec!["clinic".into(), "uploads".into()],
            verify: true,
            ..JobOptions::default()
        }
    );
    let r = app
        .send(
            Req::post("/api/v1/backups")
                .bearer(&app.staff)
                .json(json!({"kind": "database", "sources": ["clinic"], "test_restore": true})),
        )
        .await;
    let j = job_of(&app, &r).await;
    assert_eq!((j.kind, j.source.as_str()), (JobKind::Database, "clinic"));
    assert_eq!(
        options(&j),
        JobOptions {
            sources: vec!["clinic".into()],
            test_restore: true,
            ..JobOptions::default()
        }
    );
    // No sources: every source of the kind, key `all`.
    let r = app
        .send(
            Req::post("/api/v1/backups")
                .bearer(&app.staff)
                .json(json!({"kind": "media"})),
        )
        .await;
    let j = job_of(&app, &r).await;
    assert_eq!((j.kind, j.source.as_str()), (JobKind::Media, "all"));
    assert_eq!(options(&j), JobOptions::default());
    // A media folder is not a database.
    let r = app
        .send(
            Req::post("/api/v1/backups")
                .bearer(&app.staff)
                .json(json!({"kind": "database", "sources": ["uploads"]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    // The compatibility API: A1 (verify_integrity → verify) and C2 (verify defaults to true).
    let r = app.send(Req::post("/api/utils/backup/create/").token(&app.staff).json(json!({"backup_type": "database", "verify_integrity": true, "quick_backup": false}))).await;
    let j = job_of(&app, &r).await;
    assert_eq!((j.kind, j.source.as_str()), (JobKind::Database, "all"));
    assert_eq!(
        options(&j),
        JobOptions {
            verify: true,
            ..JobOptions::default()
        }
    );
    app.work_off(JobStatus::Success).await;
    let r = app
        .send(
            Req::post("/api/utils/backup/trigger/")
                .token(&app.staff)
                .json(json!({"backup_type": "full"})),
        )
        .await;
    let j = job_of(&app, &r).await;
    assert_eq!((j.kind, j.source.as_str()), (JobKind::Full, "all"));
    assert_eq!(
        options(&j),
        JobOptions {
            verify: true,
            ..JobOptions::default()
        }
    );
    let r = app
        .send(
            Req::post("/api/utils/trigger-backup/")
                .token(&app.staff)
                .json(json!({"backup_type": "media", "verify": false})),
        )
        .await;
    let j = job_of(&app, &r).await;
    assert_eq!(options(&j), JobOptions::default());
}

#[tokio::test]
async fn run_now_carries_the_schedules_options() {
    let app = app().await;
    // A backup schedule: its name (the runner tags the snapshots with it), verify and test
    // restore, and its retention (the runner queues a forget after a success).
    let r = app.send(Req::post("/api/v1/schedules").bearer(&app.admin).json(json!({
        "name": "nightly", "kind": "database", "sources": ["clinic"], "when": "daily 02:00",
        "retention": {"keep_daily": 7, "keep_weekly": 4, "keep_last": 0, "catch_up_window_seconds": 3600},
        "verify_after": true, "test_restore": true,
    }))).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let sid = r.json()["id"].as_i64().unwrap();
    let r = app
        .send(Req::post(&format!("/api/v1/schedules/{sid}/run-now")).bearer(&app.staff))
        .await;
    let j = job_of(&app, &r).await;
    assert_eq!(
        (j.kind, j.source.as_str(), j.schedule_id),
        (JobKind::Database, "clinic", Some(sid))
    );
    assert_eq!(
        options(&j),
        JobOptions {
            sources: vec!["clinic".into()],
            verify: true,
            test_restore: true,
            schedule: Some("nightly".into()),
            retention: Some(RetentionPolicy {
                keep_daily: Some(7),
                keep_weekly: Some(4),
                ..RetentionPolicy::default()
            }),
            ..JobOptions::default()
        }
    );
    // The clinic's schedules (A9 POST, A12): retention_days → keep_days.
    let r = app.send(Req::post("/api/utils/backup/schedules/").token(&app.admin).json(json!({"backup_type": "media", "schedule_type": "weekly", "retention_days": 10}))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let cid = r.json()["id"].as_i64().unwrap();
    let r = app
        .send(Req::post(&format!("/api/utils/backup/schedules/{cid}/run_now/")).token(&app.staff))
        .await;
    let j = job_of(&app, &r).await;
    assert_eq!(
        (j.kind, j.source.as_str(), j.schedule_id),
        (JobKind::Media, "all", Some(cid))
    );
    assert_eq!(
        options(&j),
        JobOptions {
            verify: true,
            schedule: Some("media-weekly".into()),
            retention: Some(RetentionPolicy {
                keep_days: Some(10),
                ..RetentionPolicy::default()
            }),
            ..JobOptions::default()
        }
    );
    // A verification schedule with a read-data share; a prune schedule.
    let r = app
        .send(
            Req::post("/api/v1/schedules")
                .bearer(&app.admin)
                .json(json!({
                    "name": "weekly-check", "kind": "verification", "when": "weekly sun 04:00",
                    "retention": {"read_data_subset": 10}, "test_restore": true,
                })),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let vid = r.json()["id"].as_i64().unwrap();
    let r = app
        .send(Req::post(&format!("/api/v1/schedules/{vid}/run-now")).bearer(&app.staff))
        .await;
    let j = job_of(&app, &r).await;
    assert_eq!(
        (j.kind, j.source.as_str()),
        (JobKind::Verification, "repository")
    );
    assert_eq!(
        options(&j),
        JobOptions {
            test_restore: true,
            schedule: Some("weekly-check".into()),
            read_data_subset: Some(10),
            ..JobOptions::default()
        }
    );
    let r = app
        .send(
            Req::post("/api/v1/schedules")
                .bearer(&app.admin)
                .json(json!({"name": "tidy", "kind": "prune", "when": "monthly 1 05:00"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let pid = r.json()["id"].as_i64().unwrap();
    let r = app
        .send(Req::post(&format!("/api/v1/schedules/{pid}/run-now")).bearer(&app.staff))
        .await;
    let j = job_of(&app, &r).await;
    assert_eq!((j.kind, j.source.as_str()), (JobKind::Prune, "repository"));
    assert_eq!(
        options(&j),
        JobOptions {
            schedule: Some("tidy".into()),
            ..JobOptions::default()
        }
    );
    // What the runner would refuse to run is refused when the schedule is written.
    for (body, why) in [
        (
            json!({"name": "x1", "kind": "prune", "when": "daily 01:00", "sources": ["clinic"]}),
            "prune with sources",
        ),
        (
            json!({"name": "x2", "kind": "verification", "when": "daily 01:00", "retention": {"keep_daily": 3}}),
            "retention on a verification",
        ),
        (
            json!({"name": "x3", "kind": "verification", "when": "daily 01:00", "verify_after": true}),
            "verify_after on a verification",
        ),
        (
            json!({"name": "x4", "kind": "media", "when": "daily 01:00", "test_restore": true}),
            "test restore of media",
        ),
        (
            json!({"name": "x5", "kind": "database", "when": "daily 01:00", "retention": {"read_data_subset": 10}}),
            "read-data share on a backup",
        ),
        (
            json!({"name": "x6", "kind": "verification", "when": "daily 01:00", "retention": {"read_data_subset": 0}}),
            "read-data share of 0",
        ),
        (
            json!({"name": "x7", "kind": "database", "when": "daily 01:00", "retention": {"keep_daily": -1}}),
            "negative count",
        ),
    ] {
        let r = app
            .send(Req::post("/api/v1/schedules").bearer(&app.admin).json(body))
            .await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{why}: {}",
            r.text()
        );
    }
}

#[tokio::test]
async fn follow_up_jobs_carry_their_target_and_the_runners_options() {
    let app = app().await;
    let now = t0();
    // A database backup of one named source.
    let mut new = strongroom_catalog::NewJob::new(JobKind::Database, "clinic", "admin");
    new.metadata = json!({"sources": ["clinic"], "verify": true});
    let b = app.catalog.jobs().enqueue(&new, now).await.unwrap();
    app.catalog.jobs().lease_next("w", now).await.unwrap();
    let mut outcome = strongroom_catalog::JobOutcome::success();
    outcome.snapshot_ids = vec!["ab".repeat(32)];
    app.catalog
        .jobs()
        .finish(b.id, "w", &outcome, now)
        .await
        .unwrap();
    // Verify (all data): repository-wide.
    let r = app
        .send(
            Req::post(&format!("/api/v1/backups/{}/verify", b.id))
                .bearer(&app.staff)
                .json(json!({"read_data": true})),
        )
        .await;
    let j = job_of(&app, &r).await;
    assert_eq!(
        (j.kind, j.source.as_str()),
        (JobKind::Verification, "repository")
    );
    assert_eq!(
        options(&j),
        JobOptions {
            sources: vec!["clinic".into()],
            read_data_subset: Some(100),
            snapshot_ids: vec!["ab".repeat(32)],
            target_job_id: Some(b.id),
            ..JobOptions::default()
        }
    );
    assert_eq!(
        (
            j.metadata["target_job_id"].clone(),
            j.metadata["snapshot_ids"].clone()
        ),
        (json!(b.id), json!(["ab".repeat(32)]))
    );
    // Test restore: the backup's databases.
    let r = app
        .send(Req::post(&format!("/api/v1/backups/{}/test-restore", b.id)).bearer(&app.staff))
        .await;
    let j = job_of(&app, &r).await;
    assert_eq!(
        (j.kind, j.source.as_str()),
        (JobKind::TestRestore, "clinic")
    );
    assert_eq!(
        options(&j),
        JobOptions {
            sources: vec!["clinic".into()],
            snapshot_ids: vec!["ab".repeat(32)],
            target_job_id: Some(b.id),
            ..JobOptions::default()
        }
    );
    // Of a full backup of a database and a media folder: the database only.
    app.work_off(JobStatus::Success).await;
    let mut new = strongroom_catalog::NewJob::new(JobKind::Full, "clinic+uploads", "admin");
    new.metadata = json!({"sources": ["clinic", "uploads"]});
    let f = app.catalog.jobs().enqueue(&new, now).await.unwrap();
    app.catalog.jobs().lease_next("w", now).await.unwrap();
    app.catalog
        .jobs()
        .finish(f.id, "w", &outcome, now)
        .await
        .unwrap();
    let r = app
        .send(Req::post(&format!("/api/v1/backups/{}/test-restore", f.id)).bearer(&app.staff))
        .await;
    let j = job_of(&app, &r).await;
    assert_eq!(
        (j.kind, j.source.as_str()),
        (JobKind::TestRestore, "clinic")
    );
    // Deleting queues a forget of its snapshots, in the runner's terms for its source.
    let r = app
        .send(
            Req::new(
                Method::DELETE,
                &format!("/api/v1/backups/{}?override=true", b.id),
            )
            .bearer(&app.admin),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let forget = app
        .catalog
        .jobs()
        .get(r.json()["forget_job_id"].as_i64().unwrap())
        .await
        .unwrap();
    assert_eq!(
        (forget.kind, forget.source.as_str()),
        (JobKind::Forget, "clinic")
    );
    assert_eq!(
        options(&forget),
        JobOptions {
            sources: vec!["clinic".into()],
            backup_kind: Some(JobKind::Database),
            snapshot_ids: vec!["ab".repeat(32)],
            target_job_id: Some(b.id),
            ..JobOptions::default()
        }
    );
    assert_eq!(forget.metadata["snapshot_ids"], json!(["ab".repeat(32)]));
    assert_eq!(forget.metadata["target_job_id"], json!(b.id));
}

/// The restore preview names the database the restore job will create: the same function
/// (`strongroom_sources::beside_database`) names it in both, so `new_name` for a SQLite file
/// is a file beside the original, not a bare name.
#[tokio::test]
async fn the_restore_preview_names_what_the_job_creates() {
    let app = app().await;
    let b = app
        .job(JobKind::Database, "clinic", JobStatus::Success, t0())
        .await;
    let preview = |body: serde_json::Value| {
        let app = &app;
        async move {
            let r = app
                .send(
                    Req::post(&format!("/api/v1/backups/{b}/restore/preview"))
                        .bearer(&app.admin)
                        .json(body),
                )
                .await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.text());
            r.json()["will_create"][0]["target"].clone()
        }
    };
    assert_eq!(
        preview(json!({"replace": false})).await,
        json!(format!("clinic_restored_{b}"))
    );
    assert_eq!(
        preview(json!({"replace": false, "new_name": "clinic_copy"})).await,
        json!("clinic_copy")
    );
}
