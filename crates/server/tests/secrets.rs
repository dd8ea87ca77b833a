//! Secrets planted in the configuration (database password and URL, SMTP password, repository
//! password, webhook secret and URL) never reach a client or a log line (issue 5, "Done
//! means" 4). Every route of the router's table is called (as admin, viewer and anonymous, on
//! every kind of object, and on error paths: an unreachable database whose error names its
//! URL, a repository whose errors carry its password, a job whose message and progress a
//! careless tool filled with them), every answer (status line, headers, body, the first events
//! of the event stream) and everything logged is collected, and the secrets are grepped for.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration as StdDuration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request};
use chrono::Duration;
use common::*;
use futures::StreamExt;
use serde_json::json;
use strongroom_catalog::{JobKind, JobOutcome, JobStatus, NewJob, NewToken, Progress};
use tower::ServiceExt;

/// Everything the server logs, at every level.
#[derive(Clone, Default)]
struct LogBuf(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogBuf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogBuf {
    type Writer = LogBuf;
    fn make_writer(&'a self) -> LogBuf {
        self.clone()
    }
}

fn capture_logs() -> LogBuf {
    let buf = LogBuf::default();
    let sub = tracing_subscriber::fmt()
        .with_writer(buf.clone())
        .with_max_level(tracing::Level::TRACE)
        .finish();
    tracing::subscriber::set_global_default(sub).expect("the only subscriber of this test binary");
    buf
}

/// Status line, headers and body of an answer; for an event stream, what arrives in 400 ms.
async fn call(
    app: &TestApp,
    method: &Method,
    path: &str,
    auth: Option<&str>,
    body: Option<serde_json::Value>,
) -> String {
    let mut b = Request::builder().method(method.clone()).uri(path);
    if let Some(t) = auth {
        b = b.header("authorization", format!("Bearer {t}"));
    }
    let body = match body {
        Some(v) => {
            b = b.header("content-type", "application/json");
            Body::from(serde_json::to_vec(&v).unwrap())
        }
        None => Body::empty(),
    };
    let mut req = b.body(body).unwrap();
    req.extensions_mut().insert(ConnectInfo(
        "192.0.2.10:5555".parse::<std::net::SocketAddr>().unwrap(),
    ));
    let resp = app.app.clone().oneshot(req).await.unwrap();
    let mut text = format!("{method} {path} -> {}\n", resp.status());
    for (k, v) in resp.headers() {
        text.push_str(&format!("{k}: {}\n", String::from_utf8_lossy(v.as_bytes())));
    }
    let stream = resp
        .headers()
        .get("content-type")
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    let mut data = resp.into_body().into_data_stream();
    let deadline = tokio::time::Instant::now() + StdDuration::from_millis(400);
    loop {
        let next = if stream {
            match tokio::time::timeout_at(deadline, data.next()).await {
                Ok(n) => n,
                Err(_) => break,
            }
        } else {
            data.next().await
        };
        match next {
            Some(Ok(chunk)) => text.push_str(&String::from_utf8_lossy(&chunk)),
            _ => break,
        }
    }
    text
}

#[tokio::test]
async fn planted_secrets_never_reach_a_client_or_a_log() {
    let logs = capture_logs();
    let repo = Arc::new(FakeRepo::default());
    let app = app_with(Setup {
        reachable: false,
        repo: Some(repo.clone()),
        ..Setup::default()
    })
    .await;
    let now = t0();
    let db_url = app.db_url.clone();
    let webhook_url = "https://hooks.example.org/services/T000/B000/XXXX";
    let secrets = [
        DB_PASSWORD,
        SMTP_PASSWORD,
        REPO_PASSWORD,
        WEBHOOK_SECRET,
        db_url.as_str(),
        webhook_url,
    ];

    // A history: a good backup; one whose content the repository fails to read (its error
    // carries the repository password); a failure whose message a careless tool filled with
    // secrets; a running job reporting a URL in its progress; a schedule; another token.
    let ok = app
        .job(
            JobKind::Database,
            "all",
            JobStatus::Success,
            now - Duration::hours(4),
        )
        .await;
    let leaky = app
        .job(
            JobKind::Full,
            "all",
            JobStatus::Success,
            now - Duration::hours(3),
        )
        .await;
    repo.failing.lock().unwrap().push(format!("{leaky:064x}"));
    let jobs = app.catalog.jobs();
    let mut new = NewJob::new(JobKind::Media, "uploads", "admin");
    new.metadata =
        json!({"sources": ["uploads"], "note": format!("repository password {REPO_PASSWORD}")});
    let failed = jobs.enqueue(&new, now - Duration::hours(2)).await.unwrap();
    jobs.lease_next("w1", now - Duration::hours(2))
        .await
        .unwrap();
    let mut outcome = JobOutcome::failed(format!(
        "pg_dump: could not connect to {db_url}; mail via smtp password {SMTP_PASSWORD}; hook {WEBHOOK_SECRET}"
    ));
    outcome.metadata =
        Some(json!({"result": {"tool_output": format!("PGPASSWORD={DB_PASSWORD}")}}));
    jobs.finish(
        failed.id,
        "w1",
        &outcome,
        now - Duration::hours(2) + Duration::seconds(5),
    )
    .await
    .unwrap();
    let running = app
        .job(
            JobKind::Database,
            "clinic",
            JobStatus::InProgress,
            now - Duration::minutes(1),
        )
        .await;
    jobs.heartbeat(
        running,
        "w1",
        Some(&Progress {
            phase: format!("connecting to {db_url}"),
            bytes_done: 1,
            bytes_total: None,
            eta_seconds: None,
        }),
        now,
    )
    .await
    .unwrap();
    let r = app.send(Req::post("/api/v1/schedules").bearer(&app.admin).json(json!({"name": "nightly", "kind": "database", "when": "daily 02:00", "retention": {"keep_daily": 7}}))).await;
    assert_eq!(r.status.as_u16(), 201, "{}", r.text());
    let schedule = r.json()["id"].as_i64().unwrap();
    let viewer = app
        .catalog
        .users()
        .find_by_username("viewer")
        .await
        .unwrap()
        .unwrap();
    let (_, hash) = strongroom_server::generate_api_token().unwrap();
    let extra_token = app
        .catalog
        .tokens()
        .create(
            &NewToken {
                user_id: viewer.id,
                name: "spare".into(),
                token_hash: hash,
                scopes: vec![],
                expires_at: None,
            },
            now,
        )
        .await
        .unwrap();

    let mut seen = Vec::new();
    // Requests that reach the interesting error paths.
    let specific: Vec<(Method, String, Option<serde_json::Value>)> = vec![
        (
            Method::POST,
            "/api/v1/backups".into(),
            Some(json!({"kind": "database", "sources": ["nope"]})),
        ),
        (
            Method::POST,
            "/api/v1/backups".into(),
            Some(json!({"kind": "database", "sources": [db_url.clone()]})),
        ),
        (
            Method::POST,
            format!("/api/v1/backups/{ok}/restore/preview"),
            Some(json!({"replace": true})),
        ),
        (
            Method::POST,
            format!("/api/v1/backups/{ok}/restore/preview"),
            Some(json!({"replace": false})),
        ),
        (
            Method::POST,
            format!("/api/v1/backups/{ok}/test-restore"),
            None,
        ),
        (
            Method::GET,
            format!("/api/v1/backups/{leaky}/download"),
            None,
        ),
        (
            Method::GET,
            format!("/api/utils/backup/download-v2/{leaky}/"),
            None,
        ),
        (
            Method::POST,
            format!("/api/utils/backup/verify-dry-run/{leaky}/"),
            None,
        ),
        (
            Method::POST,
            format!("/api/utils/backup/verify/{leaky}/"),
            None,
        ),
        (Method::GET, "/api/v1/backups?limit=500".into(), None),
        (
            Method::GET,
            "/api/utils/backup/list/?limit=500".into(),
            None,
        ),
        (
            Method::POST,
            "/api/v1/auth/login".into(),
            Some(json!({"username": "admin", "password": SMTP_PASSWORD})),
        ),
        (
            Method::POST,
            "/api/v1/auth/login".into(),
            Some(json!({"username": DB_PASSWORD, "password": 5})),
        ),
        (
            Method::PUT,
            "/api/v1/settings".into(),
            Some(json!({"alert_emails": ["ops@example.org"]})),
        ),
        (
            Method::POST,
            "/api/v1/schedules".into(),
            Some(
                json!({"name": "bad", "kind": "database", "when": "daily 02:00", "sources": ["nope"]}),
            ),
        ),
        (Method::GET, "/metrics".into(), None),
    ];
    for (m, path, body) in &specific {
        seen.push(call(&app, m, path, Some(&app.admin), body.clone()).await);
    }
    // Every route, on every kind of object, as admin (everything allowed), viewer and nobody;
    // deletions last.
    let mut table = strongroom_server::route_table(&app.state);
    table.sort_by_key(|r| r.method == Method::DELETE);
    let mut calls = 0;
    for route in &table {
        let ids: Vec<i64> = if route.path.contains("schedules/{id}") {
            vec![schedule]
        } else if route.path.contains("/users/{id}") {
            vec![viewer.id]
        } else if route.path.contains("/tokens/{id}") {
            vec![extra_token.id]
        } else if route.path.contains("{id}") {
            vec![ok, leaky, failed.id, running]
        } else {
            vec![0]
        };
        for id in ids {
            let path = route.path.replace("{id}", &id.to_string());
            let body =
                (route.method != Method::GET && route.method != Method::DELETE).then(|| json!({}));
            for auth in [Some(app.admin.as_str()), Some(app.viewer.as_str()), None] {
                seen.push(call(&app, &route.method, &path, auth, body.clone()).await);
                calls += 1;
            }
        }
    }
    assert!(calls > 300, "{calls} calls");
    let all = seen.join("\n");
    for s in secrets {
        assert!(
            !all.contains(s),
            "a planted secret ({s}) reached a client:\n{}",
            seen.iter().find(|t| t.contains(s)).unwrap()
        );
    }
    // The redaction was exercised (the probe's error names the URL), and the sweep saw the
    // planted job and the event stream.
    assert!(all.contains("connection to *** refused"));
    assert!(all.contains("pg_dump: could not connect to ***"));
    assert!(all.contains("event: job"));
    // Nothing logged carries a secret or a credential either.
    let logged = String::from_utf8_lossy(&logs.0.lock().unwrap()).into_owned();
    assert!(
        logged.contains("internal error"),
        "the log capture works: {logged}"
    );
    for s in secrets
        .iter()
        .copied()
        .chain([app.admin.as_str(), app.viewer.as_str(), PASSWORD])
    {
        assert!(!logged.contains(s), "a secret ({s}) was logged:\n{logged}");
    }
}
