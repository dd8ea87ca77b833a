//! A hundred simultaneous requests for the same backup start exactly one job: the catalog's
//! unique index arbitrates, and every other request gets the "already in progress" answer
//! naming the job that runs (v1 API: 409 with the job id; the clinic page's trigger: its
//! legacy 409 message). Nothing is decided by a read-then-write in the server.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use axum::http::StatusCode;
use common::*;
use serde_json::json;
use strongroom_catalog::{JobFilter, JobKind};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hundred_concurrent_requests_start_one_job() {
    let app = app().await;
    let sends = (0..100).map(|_| {
        app.send(
            Req::post("/api/v1/backups")
                .bearer(&app.staff)
                .json(json!({"kind": "database", "sources": ["clinic"]})),
        )
    });
    let answers = futures::future::join_all(sends).await;
    let accepted: Vec<_> = answers
        .iter()
        .filter(|r| r.status == StatusCode::ACCEPTED)
        .collect();
    assert_eq!(accepted.len(), 1, "exactly one request starts the job");
    let id = accepted[0].json()["id"]
        .as_i64()
        .or_else(|| accepted[0].json()["job"]["id"].as_i64());
    for r in answers.iter().filter(|r| r.status != StatusCode::ACCEPTED) {
        assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text());
        assert_eq!(
            r.json()["error"]["code"],
            "already_in_progress",
            "{}",
            r.text()
        );
        if let Some(id) = id {
            assert_eq!(
                r.json()["existing_job_id"],
                id,
                "names the job: {}",
                r.text()
            );
        }
    }
    let jobs = app
        .catalog
        .jobs()
        .list(&JobFilter {
            kinds: vec![JobKind::Database],
            ..JobFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(jobs.len(), 1, "one job in the catalog");

    // The clinic page's trigger, 100 at once for a media backup.
    let sends = (0..100).map(|_| {
        app.send(
            Req::post("/api/utils/backup/trigger/")
                .bearer(&app.staff)
                .json(json!({"backup_type": "media"})),
        )
    });
    let answers = futures::future::join_all(sends).await;
    let accepted = answers
        .iter()
        .filter(|r| r.status == StatusCode::ACCEPTED)
        .count();
    assert_eq!(
        accepted,
        1,
        "{:?}",
        answers.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    assert!(
        answers
            .iter()
            .filter(|r| r.status != StatusCode::ACCEPTED)
            .all(|r| r.text().contains("already in progress")),
        "every other answer says why"
    );
}
