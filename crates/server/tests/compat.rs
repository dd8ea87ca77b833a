//! Contract tests of the compatibility API (shared/reference/uscpis-contract.md §3, §4.5):
//! exact shapes, status codes and messages, on an empty catalog, with a daily schedule, and
//! with a stuck in-progress job (the clinic's system broke on the last two).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use axum::http::StatusCode;
use chrono::Duration;
use common::*;
use serde_json::{Value, json};
use strongroom_catalog::{JobKind, JobStatus, NewSchedule};

fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v.as_object().expect("object").keys().cloned().collect();
    k.sort();
    k
}

fn sorted(k: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = k.iter().map(|s| (*s).to_owned()).collect();
    v.sort();
    v
}

/// The four page-polled GETs plus the legacy health answer 200 with the right shapes.
async fn page_loads(app: &TestApp) -> (Value, Value, Value, Value) {
    let t = &app.admin;
    for prefix in ["/api/utils/", "/api/system/"] {
        for path in [
            "database-health/",
            "backup/health/",
            "backup/list/?limit=15",
            "backup/uploaded/?limit=10",
            "backup/schedules/",
            "backup-health/",
        ] {
            let r = app
                .send(Req::get(&format!("{prefix}{path}")).token(t))
                .await;
            assert_eq!(r.status, StatusCode::OK, "{prefix}{path}: {}", r.text());
            assert_eq!(r.headers["content-type"], "application/json");
        }
    }
    let a8 = app
        .send(Req::get("/api/utils/backup/health/").token(t))
        .await
        .json();
    let c1 = app
        .send(Req::get("/api/utils/backup-health/").token(t))
        .await
        .json();
    let list = app
        .send(Req::get("/api/utils/backup/list/?limit=15").token(t))
        .await
        .json();
    let sched = app
        .send(Req::get("/api/utils/backup/schedules/").token(t))
        .await
        .json();
    assert_eq!(
        keys(&a8),
        sorted(&[
            "success",
            "health_status",
            "message",
            "statistics",
            "kpis",
            "system_health",
            "health_recommendations"
        ])
    );
    assert_eq!(
        keys(&a8["statistics"]),
        sorted(&[
            "total_backups",
            "successful_backups",
            "failed_backups",
            "in_progress_backups",
            "stuck_backups"
        ])
    );
    assert_eq!(
        keys(&a8["kpis"]),
        sorted(&[
            "success_rate_24h",
            "success_rate_7d",
            "success_rate_30d",
            "avg_duration_7d_sec",
            "avg_size_7d_bytes",
            "per_type_bounds_30d",
            "last_verification",
            "retention_issues",
            "storage_usage_bytes"
        ])
    );
    assert_eq!(
        keys(&a8["kpis"]["per_type_bounds_30d"]),
        sorted(&["database", "media", "full"])
    );
    assert_eq!(
        keys(&a8["system_health"]),
        sorted(&[
            "backup_system_healthy",
            "last_successful_backup",
            "backup_frequency_ok",
            "storage_usage"
        ])
    );
    assert_eq!(
        keys(&c1),
        sorted(&[
            "timestamp",
            "system_health",
            "backup_summary",
            "recent_backups",
            "active_schedules",
            "health_recommendations"
        ])
    );
    assert_eq!(
        keys(&c1["backup_summary"]),
        sorted(&[
            "last_24h_backups",
            "last_24h_successful",
            "last_week_backups",
            "last_week_successful",
            "latest_database_backup",
            "latest_media_backup",
            "latest_full_backup",
            "latest_verification",
            "health_score",
            "health_status"
        ])
    );
    assert_eq!(
        keys(&list),
        sorted(&["success", "backups", "count", "total", "page", "page_size"])
    );
    assert_eq!(keys(&sched), sorted(&["success", "schedules"]));
    let uploaded = app
        .send(Req::get("/api/utils/backup/uploaded/?limit=10").token(t))
        .await
        .json();
    assert_eq!(
        uploaded,
        json!({"success": true, "backups": [], "count": 0})
    );
    (a8, c1, list, sched)
}

#[tokio::test]
async fn empty_catalog() {
    let app = app().await;
    let (a8, c1, list, sched) = page_loads(&app).await;
    assert_eq!(a8["health_status"], "warning");
    assert_eq!(a8["message"], "No backups in last 7 days");
    assert_eq!(
        a8["statistics"],
        json!({"total_backups": 0, "successful_backups": 0, "failed_backups": 0, "in_progress_backups": 0, "stuck_backups": 0})
    );
    assert_eq!(a8["kpis"]["success_rate_7d"], json!(0.0));
    assert_eq!(a8["kpis"]["avg_duration_7d_sec"], Value::Null);
    assert_eq!(a8["kpis"]["last_verification"], Value::Null);
    assert_eq!(a8["kpis"]["storage_usage_bytes"], json!(4096));
    assert_eq!(a8["system_health"]["last_successful_backup"], Value::Null);
    assert_eq!(
        a8["health_recommendations"],
        json!([
            {"type": "backup_frequency", "priority": "high", "message": "No backups in the last 24 hours. Consider running a manual backup.", "action": "Run manual backup"},
            {"type": "success_rate", "priority": "medium", "message": "Backup success rate is 0.0%. Investigate recent failures.", "action": "Check backup logs"},
            {"type": "verification", "priority": "medium", "message": "No backup verification found. Run backup verification to ensure integrity.", "action": "Run backup verification"},
            {"type": "media_backup", "priority": "low", "message": "No media file backups found. Consider implementing media backup strategy.", "action": "Set up media backups"},
        ])
    );
    assert_eq!(c1["health_recommendations"], a8["health_recommendations"]);
    assert_eq!(c1["timestamp"], "2026-11-22T05:20:43+00:00");
    assert_eq!(c1["backup_summary"]["latest_database_backup"], Value::Null);
    assert_eq!(c1["backup_summary"]["health_status"], "unhealthy");
    assert_eq!(
        list,
        json!({"success": true, "backups": [], "count": 0, "total": 0, "page": 1, "page_size": 15})
    );
    assert_eq!(sched, json!({"success": true, "schedules": []}));
    let d2 = app
        .send(Req::get("/api/utils/database-health/").token(&app.admin))
        .await
        .json();
    assert_eq!(d2["overall_status"], "healthy");
    assert_eq!(d2["checks"]["storage"]["size"], "11 MB");
    assert_eq!(d2["checks"]["connection"]["active_connections"], 1);
    assert_eq!(d2["checks"]["connection"]["max_connections"], 100);
    assert_eq!(d2["checks"]["performance"]["threshold"], 5.0);
    let p2 = app
        .send(Req::get("/api/auth/database-health/").token(&app.admin))
        .await;
    assert_eq!(p2.status, StatusCode::OK);
    assert_eq!(
        p2.json(),
        json!({"status": "healthy", "database_size": "11 MB", "connection_count": 6, "tables": []})
    );
}

#[tokio::test]
async fn daily_schedule_does_not_break_anything() {
    let app = app().await;
    // Through the compatibility API, as the page's (unreachable) New Schedule would.
    let r = app.send(Req::post("/api/utils/backup/schedules/").token(&app.admin).json(json!({
        "backup_type": "database", "schedule_type": "daily", "schedule_time": "01:00", "is_active": true, "retention_days": 7,
    }))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let id = r.json()["id"].as_i64().unwrap();
    assert_eq!(r.json(), json!({"success": true, "id": id}));
    // A duplicate (backup_type, schedule_type) is a 400 with the envelope.
    let dup = app
        .send(
            Req::post("/api/utils/backup/schedules/")
                .token(&app.admin)
                .json(json!({"backup_type": "database", "schedule_type": "daily"})),
        )
        .await;
    assert_eq!(dup.status, StatusCode::BAD_REQUEST);
    assert_eq!(dup.json()["success"], false);
    assert!(
        dup.json()["error"]
            .as_str()
            .unwrap()
            .contains("already exists")
    );
    // And a cron schedule through the v1 API.
    let r = app
        .send(
            Req::post("/api/v1/schedules")
                .bearer(&app.admin)
                .json(json!({"name": "cron", "kind": "full", "when": "30 2 * * *"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    // And a daily media schedule written straight into the catalog, as the runner's sync of
    // strongroom.toml's [[schedule]] does (keep_daily retention, its own next run).
    let synced = app
        .catalog
        .schedules()
        .create(
            &NewSchedule {
                name: "nightly-media".into(),
                kind: JobKind::Media,
                sources: vec!["uploads".into()],
                spec: "daily 02:00".into(),
                timezone: "Asia/Manila".into(),
                enabled: true,
                retention: json!({"keep_daily": 14, "catch_up_window_seconds": 3600}),
                verify_after: false,
                test_restore: false,
                next_run_at: Some(
                    t0() + Duration::hours(12) + Duration::minutes(39) + Duration::seconds(17),
                ),
            },
            t0(),
        )
        .await
        .unwrap();
    let (_a8, c1, _list, sched) = page_loads(&app).await;
    let rows = sched["schedules"].as_array().unwrap();
    assert_eq!(rows.len(), 3);
    let media = rows.iter().find(|r| r["id"] == synced.id).unwrap();
    assert_eq!(
        media,
        &json!({"id": synced.id, "backup_type": "media", "schedule_type": "daily", "schedule_time": "02:00",
        "is_active": true, "retention_days": 14, "next_run_time": "2026-11-23T02:00:00+08:00"})
    );
    assert_eq!(c1["active_schedules"].as_array().unwrap().len(), 3);
    app.catalog.schedules().delete(synced.id).await.unwrap();
    let sched = app
        .send(Req::get("/api/utils/backup/schedules/").token(&app.admin))
        .await
        .json();
    let c1 = app
        .send(Req::get("/api/utils/backup-health/").token(&app.admin))
        .await
        .json();
    let rows = sched["schedules"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    let daily = rows.iter().find(|r| r["id"] == id).unwrap();
    // 01:00 in Asia/Manila on 2026-11-22 has passed (it is 13:20 there): the next run is tomorrow.
    assert_eq!(
        daily,
        &json!({"id": id, "backup_type": "database", "schedule_type": "daily", "schedule_time": "01:00",
        "is_active": true, "retention_days": 7, "next_run_time": "2026-11-23T01:00:00+08:00"})
    );
    let cron = rows.iter().find(|r| r["id"] != id).unwrap();
    assert_eq!(cron["schedule_type"], "daily");
    assert_eq!(cron["schedule_time"], "02:30");
    assert_eq!(c1["active_schedules"].as_array().unwrap().len(), 2);
    assert_eq!(
        keys(&c1["active_schedules"][0]),
        sorted(&[
            "backup_type",
            "schedule_type",
            "schedule_time",
            "retention_days",
            "next_run_time"
        ])
    );
    // Toggle and run now.
    let r = app
        .send(Req::post(&format!("/api/utils/backup/schedules/{id}/toggle/")).token(&app.admin))
        .await;
    assert_eq!(r.json(), json!({"success": true, "is_active": false}));
    let r = app
        .send(Req::post(&format!("/api/utils/backup/schedules/{id}/run_now/")).token(&app.staff))
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
    let backup_id = r.json()["backup_id"].as_i64().unwrap();
    assert_eq!(r.json(), json!({"success": true, "backup_id": backup_id}));
    let r = app
        .send(Req::post(&format!("/api/utils/backup/schedules/{id}/run_now/")).token(&app.staff))
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(
        r.json(),
        json!({"success": false, "error": "Another database backup is already in progress"})
    );
    // Update (PUT and PATCH), 404s.
    let r = app
        .send(
            Req::new(
                axum::http::Method::PATCH,
                &format!("/api/utils/backup/schedules/{id}/"),
            )
            .token(&app.admin)
            .json(json!({"schedule_time": "03:15", "retention_days": 14})),
        )
        .await;
    assert_eq!(r.json(), json!({"success": true}));
    let s = app.catalog.schedules().get(id).await.unwrap();
    assert_eq!(s.spec, "daily 03:15");
    let r = app
        .send(Req::post("/api/utils/backup/schedules/424242/toggle/").token(&app.admin))
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(
        r.json(),
        json!({"success": false, "error": "Schedule not found"})
    );
    let r = app
        .send(
            Req::new(
                axum::http::Method::PUT,
                "/api/utils/backup/schedules/424242/",
            )
            .token(&app.admin)
            .json(json!({})),
        )
        .await;
    assert_eq!(
        (r.status, r.json()),
        (
            StatusCode::NOT_FOUND,
            json!({"success": false, "error": "Schedule not found"})
        )
    );
    let r = app
        .send(Req::post("/api/utils/backup/schedules/424242/run_now/").token(&app.admin))
        .await;
    assert_eq!(
        (r.status, r.json()),
        (
            StatusCode::NOT_FOUND,
            json!({"success": false, "error": "Schedule not found"})
        )
    );
    // PUT is a field-wise set like PATCH: weekly now, same time.
    let r = app
        .send(
            Req::new(
                axum::http::Method::PUT,
                &format!("/api/utils/backup/schedules/{id}/"),
            )
            .token(&app.admin)
            .json(json!({"schedule_type": "weekly", "is_active": true})),
        )
        .await;
    assert_eq!(
        (r.status, r.json()),
        (StatusCode::OK, json!({"success": true}))
    );
    let s = app.catalog.schedules().get(id).await.unwrap();
    assert_eq!(
        (s.spec.as_str(), s.name.as_str(), s.enabled),
        ("weekly sun 03:15", "database-weekly", true)
    );
    let row = app
        .send(Req::get("/api/utils/backup/schedules/").token(&app.viewer))
        .await
        .json()["schedules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == id)
        .cloned()
        .unwrap();
    // 2026-11-22 is a Sunday and 03:15 Manila has passed: the next Sunday.
    assert_eq!(
        row,
        json!({"id": id, "backup_type": "database", "schedule_type": "weekly", "schedule_time": "03:15",
        "is_active": true, "retention_days": 14, "next_run_time": "2026-11-29T03:15:00+08:00"})
    );
    // Invalid values are 400s in the envelope, never a 500.
    for body in [
        json!({"schedule_time": "25:99"}),
        json!({"backup_type": "bogus"}),
        json!({"retention_days": 0}),
        json!({"schedule_type": "hourly"}),
    ] {
        let r = app
            .send(
                Req::new(
                    axum::http::Method::PATCH,
                    &format!("/api/utils/backup/schedules/{id}/"),
                )
                .token(&app.admin)
                .json(body.clone()),
            )
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}: {}", r.text());
        assert_eq!(keys(&r.json()), sorted(&["success", "error"]), "{body}");
    }
}

#[tokio::test]
async fn stuck_job_and_a_history() {
    let app = app().await;
    let now = t0();
    let ok = app
        .job(
            JobKind::Database,
            "all",
            JobStatus::Success,
            now - Duration::hours(3),
        )
        .await;
    let ok2 = app
        .job(
            JobKind::Database,
            "all",
            JobStatus::Success,
            now - Duration::hours(2),
        )
        .await;
    let failed = app
        .job(
            JobKind::Media,
            "all",
            JobStatus::Failed,
            now - Duration::hours(1),
        )
        .await;
    // Leased two hours ago and silent since: stuck.
    let stuck = app
        .job(
            JobKind::Full,
            "all",
            JobStatus::InProgress,
            now - Duration::minutes(150),
        )
        .await;
    let (a8, c1, list, _) = page_loads(&app).await;
    assert_eq!(a8["health_status"], "unhealthy");
    assert_eq!(a8["message"], "1 stuck backup(s) detected");
    assert_eq!(
        a8["statistics"],
        json!({"total_backups": 4, "successful_backups": 2, "failed_backups": 1, "in_progress_backups": 1, "stuck_backups": 1})
    );
    assert_eq!(a8["kpis"]["success_rate_7d"], json!(0.5));
    assert_eq!(a8["kpis"]["avg_duration_7d_sec"], json!(42.0));
    assert_eq!(a8["kpis"]["avg_size_7d_bytes"], json!(3145728.0));
    assert_eq!(
        a8["kpis"]["per_type_bounds_30d"]["database"],
        json!({"newest": "2026-11-22T03:20:43+00:00", "oldest": "2026-11-22T02:20:43+00:00"})
    );
    assert_eq!(
        a8["system_health"]["last_successful_backup"],
        "2026-11-22T03:20:43+00:00"
    );
    assert_eq!(a8["system_health"]["backup_frequency_ok"], true);
    assert_eq!(c1["health_recommendations"][0]["type"], "success_rate");
    assert_eq!(
        c1["health_recommendations"][0]["message"],
        "Backup success rate is 50.0%. Investigate recent failures."
    );
    assert_eq!(
        c1["backup_summary"]["latest_database_backup"],
        json!({"id": ok2, "backup_type": "database", "status": "success",
        "started_at": "2026-11-22T03:20:43+00:00", "completed_at": "2026-11-22T03:21:25+00:00"})
    );
    assert_eq!(c1["recent_backups"].as_array().unwrap().len(), 4);
    let rows = list["backups"].as_array().unwrap();
    assert_eq!(list["total"], 4);
    assert_eq!(
        rows.iter()
            .map(|r| r["id"].as_i64().unwrap())
            .collect::<Vec<_>>(),
        vec![failed, ok2, stuck, ok]
    );
    let row = &rows[1];
    assert_eq!(
        keys(row),
        sorted(&[
            "id",
            "status",
            "backup_type",
            "started_at",
            "completed_at",
            "duration_seconds",
            "file_size_mb",
            "is_recent",
            "has_file",
            "metadata"
        ])
    );
    assert_eq!(row["status"], "success");
    assert_eq!(row["backup_type"], "database");
    assert_eq!(row["file_size_mb"], json!(3.0));
    assert_eq!(row["duration_seconds"], json!(42.0));
    assert_eq!(row["is_recent"], true);
    assert_eq!(row["has_file"], true);
    assert_eq!(rows[2]["status"], "in_progress");
    assert_eq!(rows[2]["duration_seconds"], json!(9000.0));
    assert_eq!(rows[0]["has_file"], false);
    // Filters and pagination.
    let r = app
        .send(Req::get("/api/utils/backup/list/?limit=1&page=2&type=database").token(&app.viewer))
        .await
        .json();
    assert_eq!(
        (
            r["count"].clone(),
            r["total"].clone(),
            r["page"].clone(),
            r["page_size"].clone()
        ),
        (json!(1), json!(2), json!(2), json!(1))
    );
    assert_eq!(r["backups"][0]["id"], ok);
    let r = app
        .send(Req::get("/api/utils/backup/list/?status=failed").token(&app.viewer))
        .await
        .json();
    assert_eq!(r["total"], 1);
    let r = app
        .send(
            Req::get("/api/utils/backup/list/?start=2026-11-22T02:50:00%2B00:00&end=not-a-date")
                .token(&app.viewer),
        )
        .await
        .json();
    assert_eq!(r["total"], 3);
    let r = app
        .send(Req::get("/api/utils/backup/list/?limit=abc").token(&app.viewer))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()["success"], false);
    // A stuck full backup makes a new full backup a 409 with the page's message.
    let r = app
        .send(
            Req::post("/api/utils/backup/create/")
                .token(&app.staff)
                .json(
                    json!({"backup_type": "full", "verify_integrity": true, "quick_backup": false}),
                ),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(
        r.json(),
        json!({"success": false, "error": "Another full backup is already in progress"})
    );
    // Status endpoints.
    let r = app
        .send(Req::get(&format!("/api/utils/backup/status/{ok2}/")).token(&app.viewer))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let b = &r.json()["backup"];
    assert_eq!(
        keys(b),
        sorted(&[
            "id",
            "status",
            "backup_type",
            "started_at",
            "completed_at",
            "duration_seconds",
            "file_size_mb",
            "error_message",
            "metadata"
        ])
    );
    assert_eq!(b["error_message"], Value::Null);
    let r = app
        .send(Req::get(&format!("/api/utils/backup-status/{failed}/")).token(&app.viewer))
        .await
        .json();
    assert_eq!(
        keys(&r),
        sorted(&[
            "id",
            "backup_type",
            "status",
            "started_at",
            "completed_at",
            "duration_seconds",
            "file_size",
            "file_size_mb",
            "checksum",
            "error_message",
            "metadata",
            "created_by",
            "is_recent"
        ])
    );
    assert_eq!(r["error_message"], "pg_dump exited with status 1");
    assert_eq!(r["checksum"], "");
    assert_eq!(r["file_size"], 3145728);
    assert_eq!(r["created_by"], "admin");
    let r = app
        .send(Req::get("/api/utils/backup/status/999/").token(&app.viewer))
        .await;
    assert_eq!(
        (r.status, r.json()),
        (
            StatusCode::NOT_FOUND,
            json!({"success": false, "error": "Backup not found"})
        )
    );
    let r = app
        .send(Req::get("/api/utils/backup-status/999/").token(&app.viewer))
        .await;
    assert_eq!(
        (r.status, r.json()),
        (StatusCode::NOT_FOUND, json!({"error": "Backup not found"}))
    );
}

#[tokio::test]
async fn create_and_trigger_answer_at_once_and_guard_with_409() {
    let app = app().await;
    let r = app.send(Req::post("/api/utils/backup/create/").token(&app.staff).json(json!({"backup_type": "database", "verify_integrity": true, "quick_backup": false}))).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
    let v = r.json();
    assert_eq!(v["success"], true);
    let id = v["backup_id"].as_i64().unwrap();
    let job = app.catalog.jobs().get(id).await.unwrap();
    assert_eq!(
        (job.kind, job.status, job.source.as_str()),
        (JobKind::Database, JobStatus::Queued, "all")
    );
    assert_eq!(job.metadata["verify"], true);
    // The page polls: the row is visible at once, as in_progress.
    let r = app
        .send(Req::get(&format!("/api/utils/backup/status/{id}/")).token(&app.staff))
        .await
        .json();
    assert_eq!(r["backup"]["status"], "in_progress");
    // A second create of the same type: 409 with the exact message; both trigger paths too.
    let r = app
        .send(
            Req::post("/api/utils/backup/create/")
                .token(&app.staff)
                .json(json!({"backup_type": "database"})),
        )
        .await;
    assert_eq!(
        (r.status, r.json()),
        (
            StatusCode::CONFLICT,
            json!({"success": false, "error": "Another database backup is already in progress"})
        )
    );
    for path in [
        "/api/utils/trigger-backup/",
        "/api/utils/backup/trigger/",
        "/api/system/backup/trigger/",
    ] {
        let r = app.send(Req::post(path).token(&app.staff)).await;
        assert_eq!(
            (r.status, r.json()),
            (
                StatusCode::CONFLICT,
                json!({"success": false, "error": "Another database backup is already in progress"})
            ),
            "{path}"
        );
    }
    let r = app
        .send(
            Req::post("/api/utils/trigger-backup/")
                .token(&app.admin)
                .json(json!({"backup_type": "media"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let v = r.json();
    let mid = v["backup_id"].as_i64().unwrap();
    assert_eq!(
        v,
        json!({"message": "Manual backup triggered successfully", "backup_id": mid, "backup_type": "media", "verify": true,
        "status_check_url": format!("/api/utils/backup-status/{mid}/"), "note": "Backup is executing in the background. Check status using the provided URL."})
    );
    let r = app
        .send(
            Req::post("/api/utils/backup/trigger/")
                .token(&app.admin)
                .json(json!({"backup_type": "bogus"})),
        )
        .await;
    assert_eq!(
        (r.status, r.json()),
        (
            StatusCode::BAD_REQUEST,
            json!({"error": "Invalid backup type. Must be one of: ['database', 'media', 'full']"})
        )
    );
    let r = app
        .send(
            Req::post("/api/utils/backup/create/")
                .token(&app.admin)
                .json(json!({"backup_type": "bogus"})),
        )
        .await;
    assert_eq!(
        (r.status, r.json()),
        (
            StatusCode::BAD_REQUEST,
            json!({"success": false, "error": "Invalid backup type. Must be one of: database, media, full"})
        )
    );
    // A viewer is refused with the gate's body; nobody at all gets DRF's 401.
    let r = app
        .send(
            Req::post("/api/utils/backup/create/")
                .token(&app.viewer)
                .json(json!({})),
        )
        .await;
    assert_eq!(
        (r.status, r.json()),
        (
            StatusCode::FORBIDDEN,
            json!({"error": "Admin access required"})
        )
    );
    let r = app
        .send(Req::post("/api/utils/backup/create/").json(json!({})))
        .await;
    assert_eq!(
        (r.status, r.json()),
        (
            StatusCode::UNAUTHORIZED,
            json!({"detail": "Authentication credentials were not provided."})
        )
    );
    // Wrong method: DRF's 405 body.
    let r = app
        .send(Req::get("/api/utils/backup/create/").token(&app.admin))
        .await;
    assert_eq!(
        (r.status, r.json()),
        (
            StatusCode::METHOD_NOT_ALLOWED,
            json!({"detail": "Method \"GET\" not allowed."})
        )
    );
}

#[tokio::test]
async fn delete_verify_and_download_answers() {
    let app = app().await;
    let now = t0();
    let old = app
        .job(
            JobKind::Database,
            "all",
            JobStatus::Success,
            now - Duration::hours(5),
        )
        .await;
    let newest = app
        .job(
            JobKind::Database,
            "all",
            JobStatus::Success,
            now - Duration::hours(1),
        )
        .await;
    // Mark the newest as verified (a verification job targeting it).
    let mut v = strongroom_catalog::NewJob::new(JobKind::Verification, "repository", "admin");
    v.metadata = json!({"target_job_id": newest});
    let vj = app.catalog.jobs().enqueue(&v, now).await.unwrap();
    app.catalog.jobs().lease_next("w", now).await.unwrap();
    app.catalog
        .jobs()
        .finish(vj.id, "w", &strongroom_catalog::JobOutcome::success(), now)
        .await
        .unwrap();
    let r = app
        .send(
            Req::new(
                axum::http::Method::DELETE,
                &format!("/api/utils/backup/delete/{newest}/"),
            )
            .token(&app.admin),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(r.json()["success"], false);
    let r = app
        .send(
            Req::new(
                axum::http::Method::DELETE,
                &format!("/api/utils/backup/delete/{old}/"),
            )
            .token(&app.admin),
        )
        .await;
    assert_eq!(
        (r.status, r.json()),
        (
            StatusCode::OK,
            json!({"success": true, "message": "Backup deleted successfully"})
        )
    );
    // The row is gone at once; the content is removed by a forget job the workers run (the
    // request does no repository work). Play the worker so the queue is empty again.
    let forgets = app.work_off(JobStatus::Success).await;
    assert_eq!(forgets.len(), 1);
    assert_eq!(forgets[0].kind, JobKind::Forget);
    assert_eq!(forgets[0].metadata["target_job_id"], old);
    assert_eq!(
        forgets[0].metadata["snapshot_ids"],
        json!([format!("{old:064x}")])
    );
    let r = app
        .send(
            Req::new(
                axum::http::Method::DELETE,
                &format!("/api/utils/backup/delete/{old}/"),
            )
            .token(&app.admin),
        )
        .await;
    assert_eq!(
        (r.status, r.json()),
        (
            StatusCode::NOT_FOUND,
            json!({"success": false, "error": "Backup not found"})
        )
    );
    let r = app
        .send(
            Req::new(
                axum::http::Method::DELETE,
                &format!("/api/utils/backup/delete/{newest}/"),
            )
            .token(&app.staff),
        )
        .await;
    assert_eq!(
        (r.status, r.json()),
        (
            StatusCode::FORBIDDEN,
            json!({"error": "Admin access required"})
        )
    );
    // Verify on an incomplete backup: 400; download of a failed one: 400; missing: 404.
    let failed = app.job(JobKind::Media, "all", JobStatus::Failed, now).await;
    let r = app
        .send(Req::post(&format!("/api/utils/backup/verify-dry-run/{failed}/")).token(&app.staff))
        .await;
    assert_eq!(
        (r.status, r.json()),
        (
            StatusCode::BAD_REQUEST,
            json!({"success": false, "error": "Cannot verify incomplete backup"})
        )
    );
    let r = app
        .send(Req::get(&format!("/api/utils/backup/download-v2/{failed}/")).token(&app.staff))
        .await;
    assert_eq!(
        (r.status, r.json()),
        (
            StatusCode::BAD_REQUEST,
            json!({"success": false, "error": "Backup not completed successfully"})
        )
    );
    let r = app
        .send(Req::get("/api/utils/backup/download-v2/9999/").token(&app.staff))
        .await;
    assert_eq!(
        (r.status, r.json()),
        (
            StatusCode::NOT_FOUND,
            json!({"success": false, "error": "Backup not found"})
        )
    );
}

async fn a8(app: &TestApp) -> Value {
    app.send(Req::get("/api/utils/backup/health/").token(&app.viewer))
        .await
        .json()
}

/// A8's decision table (contract §3.2), in its order, counting backups only.
#[tokio::test]
async fn backup_health_follows_the_decision_table() {
    let app = app().await;
    let now = t0();
    app.job(
        JobKind::Database,
        "all",
        JobStatus::Success,
        now - Duration::hours(30),
    )
    .await;
    app.job(
        JobKind::Full,
        "all",
        JobStatus::Success,
        now - Duration::hours(2),
    )
    .await;
    // Neither a verification, a forget nor a backup older than 7 days counts as a backup.
    app.job(
        JobKind::Verification,
        "repository",
        JobStatus::Failed,
        now - Duration::hours(1),
    )
    .await;
    app.job(
        JobKind::Forget,
        "all",
        JobStatus::Failed,
        now - Duration::hours(1),
    )
    .await;
    app.job(
        JobKind::Database,
        "all",
        JobStatus::Failed,
        now - Duration::days(8),
    )
    .await;
    let v = a8(&app).await;
    assert_eq!(
        (v["health_status"].clone(), v["message"].clone()),
        (
            json!("healthy"),
            json!("2 successful backups in last 7 days")
        )
    );
    assert_eq!(
        v["statistics"],
        json!({"total_backups": 2, "successful_backups": 2, "failed_backups": 0, "in_progress_backups": 0, "stuck_backups": 0})
    );
    assert_eq!(v["kpis"]["success_rate_24h"], json!(1.0));
    assert_eq!(v["kpis"]["success_rate_30d"], json!(0.667));
    app.job(
        JobKind::Media,
        "all",
        JobStatus::Failed,
        now - Duration::minutes(50),
    )
    .await;
    let v = a8(&app).await;
    assert_eq!(
        (v["health_status"].clone(), v["message"].clone()),
        (
            json!("warning"),
            json!("2 successful, 1 failed in last 7 days")
        )
    );
    assert_eq!(v["kpis"]["success_rate_7d"], json!(0.667));
    assert_eq!(v["kpis"]["success_rate_24h"], json!(0.5));
    app.job(
        JobKind::Media,
        "all",
        JobStatus::Failed,
        now - Duration::minutes(40),
    )
    .await;
    app.job(
        JobKind::Media,
        "all",
        JobStatus::Failed,
        now - Duration::minutes(30),
    )
    .await;
    let v = a8(&app).await;
    assert_eq!(
        (v["health_status"].clone(), v["message"].clone()),
        (
            json!("unhealthy"),
            json!("More failures (3) than successes (2)")
        )
    );
    // In progress but heartbeating: not stuck. Silent for over 10 minutes: stuck, which wins.
    let running = app
        .job(
            JobKind::Database,
            "clinic",
            JobStatus::InProgress,
            now - Duration::minutes(5),
        )
        .await;
    let v = a8(&app).await;
    assert_eq!(v["statistics"]["in_progress_backups"], 1);
    assert_eq!(v["statistics"]["stuck_backups"], 0);
    app.clock.advance(Duration::minutes(6));
    let v = a8(&app).await;
    assert_eq!(
        (v["health_status"].clone(), v["message"].clone()),
        (json!("unhealthy"), json!("1 stuck backup(s) detected"))
    );
    assert_eq!(v["statistics"]["stuck_backups"], 1);
    // A heartbeat makes it alive again.
    app.catalog
        .jobs()
        .heartbeat(running, "w1", None, app.state.now())
        .await
        .unwrap();
    let v = a8(&app).await;
    assert_eq!(v["statistics"]["stuck_backups"], 0);
    // Retention issues: one per active backup schedule without a success in its window.
    let r = app
        .send(
            Req::post("/api/utils/backup/schedules/")
                .token(&app.admin)
                .json(
                    json!({"backup_type": "media", "schedule_type": "weekly", "retention_days": 3}),
                ),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let r = app
        .send(
            Req::post("/api/utils/backup/schedules/")
                .token(&app.admin)
                .json(
                    json!({"backup_type": "full", "schedule_type": "daily", "retention_days": 3}),
                ),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let r = app.send(Req::post("/api/utils/backup/schedules/").token(&app.admin).json(json!({"backup_type": "database", "schedule_type": "monthly", "is_active": false}))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let v = a8(&app).await;
    assert_eq!(
        v["kpis"]["retention_issues"],
        json!([{"backup_type": "media", "retention_days": 3, "issue": "No successful backup within retention window"}])
    );
    assert_eq!(
        v["kpis"]["per_type_bounds_30d"]["media"],
        json!({"newest": null, "oldest": null})
    );
    assert_eq!(
        v["kpis"]["per_type_bounds_30d"]["full"],
        json!({"newest": "2026-11-22T03:20:43+00:00", "oldest": "2026-11-22T03:20:43+00:00"})
    );
    // The legacy payload, with the same figures.
    let c1 = app
        .send(Req::get("/api/utils/backup-health/").token(&app.viewer))
        .await
        .json();
    assert_eq!(c1["backup_summary"]["last_24h_backups"], 5);
    assert_eq!(c1["backup_summary"]["last_24h_successful"], 1);
    assert_eq!(c1["system_health"]["backup_system_healthy"], false);
    assert_eq!(
        c1["system_health"]["last_successful_backup"],
        "2026-11-22T03:20:43+00:00"
    );
    for row in c1["recent_backups"].as_array().unwrap() {
        assert_eq!(
            keys(row),
            sorted(&[
                "id",
                "backup_type",
                "status",
                "started_at",
                "completed_at",
                "duration_seconds",
                "file_size_mb",
                "is_recent"
            ])
        );
    }
    let types: Vec<&str> = c1["health_recommendations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["type"].as_str().unwrap())
        .collect();
    // A (failed) verification exists and a full backup holds the media: only the rate.
    assert_eq!(types, vec!["success_rate"]);
}

fn repo_setup() -> (Setup, std::sync::Arc<FakeRepo>) {
    let repo = std::sync::Arc::new(FakeRepo::default());
    let setup = Setup {
        repo: Some(repo.clone()),
        ..Setup::default()
    };
    (setup, repo)
}

/// A3 download, A4 verify and A5 dry-run against a repository.
#[tokio::test]
async fn download_verify_and_dry_run_with_a_repository() {
    let (setup, repo) = repo_setup();
    let app = app_with(setup).await;
    let now = t0();
    let id = app
        .job(
            JobKind::Database,
            "all",
            JobStatus::Success,
            now - Duration::hours(1),
        )
        .await;
    let snap = format!("{id:064x}");
    // A3: streamed with the attachment headers.
    let r = app
        .send(Req::get(&format!("/api/utils/backup/download-v2/{id}/")).token(&app.staff))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.headers["content-disposition"],
        format!("attachment; filename=\"clinic.sql-{}\"", &snap[..8]).as_str()
    );
    assert_eq!(r.headers["content-type"], "application/octet-stream");
    assert_eq!(r.body, FakeRepo::content(&snap));
    // Audited.
    let audit = app
        .catalog
        .audit()
        .list(&strongroom_catalog::AuditFilter {
            action: Some("backup.download".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].actor, "staff");
    // A5: the content is there.
    let r = app
        .send(Req::post(&format!("/api/system/backup/verify-dry-run/{id}/")).token(&app.staff))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let v = r.json();
    assert_eq!(keys(&v), sorted(&["success", "valid", "message"]));
    assert_eq!(
        (v["success"].clone(), v["valid"].clone()),
        (json!(true), json!(true))
    );
    assert!(v["message"].as_str().unwrap().ends_with("(dry-run)"), "{v}");
    // A4: the same check, and a full verification queued (the request does not do it).
    let r = app
        .send(Req::post(&format!("/api/utils/backup/verify/{id}/")).token(&app.staff))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let v = r.json();
    assert_eq!(
        keys(&v),
        sorted(&["success", "valid", "message", "verification_job_id"])
    );
    assert_eq!(
        (v["success"].clone(), v["valid"].clone()),
        (json!(true), json!(true))
    );
    let vj = app
        .catalog
        .jobs()
        .get(v["verification_job_id"].as_i64().unwrap())
        .await
        .unwrap();
    assert_eq!(
        (vj.kind, vj.status, vj.source.as_str()),
        (JobKind::Verification, JobStatus::Queued, "repository")
    );
    assert_eq!(vj.metadata["target_job_id"], id);
    let r = app
        .send(Req::post(&format!("/api/utils/backup/verify/{id}/")).token(&app.staff))
        .await;
    assert_eq!(
        (r.status, r.json()),
        (
            StatusCode::CONFLICT,
            json!({"success": false, "error": "A verification of this backup's source is already in progress"})
        )
    );
    // A viewer may not start a verification; nobody may verify what does not exist.
    let r = app
        .send(Req::post(&format!("/api/utils/backup/verify/{id}/")).token(&app.viewer))
        .await;
    assert_eq!(
        (r.status, r.json()),
        (
            StatusCode::FORBIDDEN,
            json!({"error": "Admin access required"})
        )
    );
    for path in ["backup/verify/9999/", "backup/verify-dry-run/9999/"] {
        let r = app
            .send(Req::post(&format!("/api/utils/{path}")).token(&app.staff))
            .await;
        assert_eq!(
            (r.status, r.json()),
            (
                StatusCode::NOT_FOUND,
                json!({"success": false, "error": "Backup not found"})
            ),
            "{path}"
        );
    }
    // The content gone from the repository: 404 "Backup file not found" everywhere.
    repo.missing.lock().unwrap().push(snap.clone());
    for (method, path) in [
        ("GET", "download-v2"),
        ("POST", "verify-dry-run"),
        ("POST", "verify"),
    ] {
        let r = app
            .send(
                Req::new(
                    method.parse().unwrap(),
                    &format!("/api/utils/backup/{path}/{id}/"),
                )
                .token(&app.admin),
            )
            .await;
        assert_eq!(
            (r.status, r.json()),
            (
                StatusCode::NOT_FOUND,
                json!({"success": false, "error": "Backup file not found"})
            ),
            "{path}"
        );
    }
    // The repository failing: the download is a JSON 500 "Download failed", the dry run says
    // it is not valid; neither shows the repository's message (it carries secrets).
    repo.missing.lock().unwrap().clear();
    repo.failing.lock().unwrap().push(snap.clone());
    let r = app
        .send(Req::get(&format!("/api/utils/backup/download-v2/{id}/")).token(&app.admin))
        .await;
    assert_eq!(
        (r.status, r.json()),
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({"success": false, "error": "Download failed"})
        )
    );
    let r = app
        .send(Req::post(&format!("/api/utils/backup/verify-dry-run/{id}/")).token(&app.admin))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["valid"], false);
    assert!(
        !r.text().contains(REPO_PASSWORD) && !r.text().contains(DB_PASSWORD),
        "{}",
        r.text()
    );
}

#[tokio::test]
async fn verify_and_download_without_a_repository_are_503_in_the_envelope() {
    let app = app().await;
    let id = app
        .job(JobKind::Database, "all", JobStatus::Success, t0())
        .await;
    for (method, path) in [
        ("GET", "download-v2"),
        ("POST", "verify-dry-run"),
        ("POST", "verify"),
    ] {
        let r = app
            .send(
                Req::new(
                    method.parse().unwrap(),
                    &format!("/api/utils/backup/{path}/{id}/"),
                )
                .token(&app.admin),
            )
            .await;
        assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{path}");
        assert_eq!(keys(&r.json()), sorted(&["success", "error"]), "{path}");
        assert_eq!(r.json()["success"], false);
    }
}

/// D2 and P2 when the clinic's database does not answer: every check is an `error` (the page
/// still finds `checks.storage` and `checks.connection`), the message carries no password.
#[tokio::test]
async fn database_health_when_the_database_is_down() {
    let app = app_with(Setup {
        reachable: false,
        ..Setup::default()
    })
    .await;
    for prefix in ["/api/utils/", "/api/system/"] {
        let r = app
            .send(Req::get(&format!("{prefix}database-health/")).token(&app.admin))
            .await;
        assert_eq!(r.status, StatusCode::OK);
        let v = r.json();
        assert_eq!(
            keys(&v),
            sorted(&["timestamp", "overall_status", "checks", "extended"])
        );
        assert_eq!(v["overall_status"], "critical");
        assert_eq!(
            keys(&v["checks"]),
            sorted(&["connection", "performance", "storage", "locks", "indexes"])
        );
        let err = v["checks"]["connection"]["error"].as_str().unwrap();
        assert_eq!(err, "connection to *** refused");
        assert_eq!(
            v["checks"]["connection"],
            json!({"status": "error", "error": err, "severity": "critical"})
        );
        assert_eq!(v["checks"]["performance"]["severity"], "critical");
        assert_eq!(
            v["checks"]["storage"],
            json!({"status": "error", "error": err})
        );
        assert!(!r.text().contains(DB_PASSWORD));
    }
    let r = app
        .send(Req::get("/api/auth/database-health/").token(&app.admin))
        .await;
    assert_eq!(
        (r.status, r.json()),
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({"status": "unhealthy", "error": "connection to *** refused"})
        )
    );
}

/// D2's exact shape on a reachable database.
#[tokio::test]
async fn database_health_shape() {
    let app = app().await;
    let v = app
        .send(Req::get("/api/utils/database-health/").token(&app.viewer))
        .await
        .json();
    assert_eq!(
        keys(&v),
        sorted(&["timestamp", "overall_status", "checks", "extended"])
    );
    assert_eq!(
        v["checks"]["connection"],
        json!({"status": "healthy", "active_connections": 1, "max_connections": 100, "usage_percent": 6.0})
    );
    assert_eq!(
        v["checks"]["performance"],
        json!({"status": "healthy", "query_time": 0.000215, "threshold": 5.0})
    );
    assert_eq!(
        v["checks"]["storage"],
        json!({"status": "healthy", "size": "11 MB", "size_bytes": 11_156_839})
    );
    assert_eq!(
        v["checks"]["locks"],
        json!({"status": "healthy", "blocked_locks": 0})
    );
    assert_eq!(v["checks"]["indexes"]["status"], "healthy");
    for k in [
        "latency_p50",
        "latency_p95",
        "latency_p99",
        "last_migration",
        "cache_hit_rate",
    ] {
        assert!(v["extended"].get(k).is_some(), "extended.{k}");
    }
}

/// Every compatibility route of the router's table, under an empty catalog and under a
/// history with a daily schedule and a stuck job: never a 5xx, always JSON (the download
/// excepted when it succeeds), never HTML.
#[tokio::test]
async fn no_compat_route_breaks_on_an_empty_catalog_a_daily_schedule_or_a_stuck_job() {
    for populated in [false, true] {
        let (setup, _repo) = repo_setup();
        let app = app_with(setup).await;
        let now = t0();
        let (job_id, schedule_id) = if populated {
            let ok = app
                .job(
                    JobKind::Database,
                    "all",
                    JobStatus::Success,
                    now - Duration::hours(3),
                )
                .await;
            app.job(
                JobKind::Media,
                "all",
                JobStatus::Failed,
                now - Duration::hours(2),
            )
            .await;
            app.job(
                JobKind::Full,
                "all",
                JobStatus::InProgress,
                now - Duration::hours(2),
            )
            .await;
            let r = app.send(Req::post("/api/utils/backup/schedules/").token(&app.admin).json(json!({"backup_type": "database", "schedule_type": "daily", "schedule_time": "02:00"}))).await;
            assert_eq!(r.status, StatusCode::OK);
            (ok, r.json()["id"].as_i64().unwrap())
        } else {
            (1, 1)
        };
        let table = strongroom_server::route_table(&app.state);
        let mut compat: Vec<_> = table
            .iter()
            .filter(|r| matches!(r.family, strongroom_server::Family::Compat(_)))
            .collect();
        // Deletion last, so the other routes see the backup.
        compat.sort_by_key(|r| r.method == axum::http::Method::DELETE);
        assert!(compat.len() >= 40, "{} compatibility routes", compat.len());
        for route in compat {
            let id = if route.path.contains("schedules/{id}") {
                schedule_id
            } else {
                job_id
            };
            let path = route.path.replace("{id}", &id.to_string());
            let mut req = Req::new(route.method.clone(), &path).token(&app.admin);
            if route.method != axum::http::Method::GET && route.method != axum::http::Method::DELETE
            {
                req = req.json(json!({}));
            }
            let r = app.send(req).await;
            let ctype = r
                .headers
                .get("content-type")
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default();
            let what = format!(
                "{} {path} (populated: {populated}): {} {}",
                route.method,
                r.status,
                r.text()
            );
            assert!(!r.status.is_server_error(), "{what}");
            if path.contains("download-v2") && r.status == StatusCode::OK {
                continue;
            }
            assert_eq!(ctype, "application/json", "{what}");
            let _ = r.json();
            if route.method == axum::http::Method::GET && !route.path.contains("{id}") {
                assert_eq!(r.status, StatusCode::OK, "{what}");
            }
        }
    }
}
