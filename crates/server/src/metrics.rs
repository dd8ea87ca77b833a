//! `/metrics`: Prometheus text format (0.0.4) with `# HELP` and `# TYPE`: jobs by kind and
//! status, durations and bytes of jobs finished in the last 30 days, the last successful
//! backup per source, the repository's size, stuck jobs. For admins or a token scoped
//! `metrics:read`.
//!
//! Must not put a secret or a free-form text (error messages) in a label.

use std::collections::BTreeMap;
use std::fmt::Write;

use axum::extract::State;
use axum::http::{HeaderValue, Method, header};
use axum::response::{IntoResponse, Response};
use chrono::Duration;
use strongroom_catalog::{JobFilter, JobKind, JobStatus};

use crate::auth::Permission;
use crate::error::ApiResult;
use crate::health;
use crate::openapi::s::*;
use crate::routes::{Doc, Family, Registry};
use crate::state::AppState;

pub(crate) fn register(r: &mut Registry) {
    r.add(
        Method::GET,
        "/metrics",
        Permission::Metrics,
        Family::Metrics,
        Some(Doc::new("metrics", "Prometheus metrics").ok_as(200, "text/plain", string())),
        metrics,
    );
}

fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn head(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

async fn metrics(State(state): State<AppState>) -> ApiResult<Response> {
    let jobs = state.catalog().jobs();
    let now = state.now();
    let mut out = String::new();
    head(
        &mut out,
        "strongroom_up",
        "gauge",
        "1 while the server answers.",
    );
    out.push_str("strongroom_up 1\n");
    head(
        &mut out,
        "strongroom_jobs",
        "gauge",
        "Jobs in the catalog by kind and status.",
    );
    for kind in JobKind::ALL {
        for status in JobStatus::ALL {
            let n = jobs
                .count(&JobFilter {
                    kinds: vec![*kind],
                    statuses: vec![*status],
                    ..JobFilter::default()
                })
                .await?;
            let _ = writeln!(
                out,
                "strongroom_jobs{{kind=\"{kind}\",status=\"{status}\"}} {n}"
            );
        }
    }
    let recent = jobs
        .list(&JobFilter {
            created_from: Some(now - Duration::days(30)),
            limit: 10_000,
            ..JobFilter::default()
        })
        .await?;
    let mut dur: BTreeMap<String, (f64, u64)> = BTreeMap::new();
    let mut bytes: BTreeMap<(String, &str), u64> = BTreeMap::new();
    for j in recent.iter().filter(|j| j.status.is_final()) {
        if let Some(d) = j.duration_seconds {
            let e = dur.entry(j.kind.to_string()).or_default();
            e.0 += d;
            e.1 += 1;
        }
        for (name, v) in [
            ("read", j.bytes_read),
            ("added", j.bytes_added),
            ("stored", j.bytes_stored),
        ] {
            *bytes.entry((j.kind.to_string(), name)).or_default() += v.unwrap_or(0);
        }
    }
    head(
        &mut out,
        "strongroom_job_duration_seconds",
        "summary",
        "Durations of jobs finished in the last 30 days, by kind.",
    );
    for (kind, (sum, count)) in &dur {
        let _ = writeln!(
            out,
            "strongroom_job_duration_seconds_sum{{kind=\"{kind}\"}} {sum}"
        );
        let _ = writeln!(
            out,
            "strongroom_job_duration_seconds_count{{kind=\"{kind}\"}} {count}"
        );
    }
    head(
        &mut out,
        "strongroom_job_bytes",
        "gauge",
        "Bytes read, added and stored by jobs finished in the last 30 days, by kind.",
    );
    for ((kind, what), n) in &bytes {
        let _ = writeln!(
            out,
            "strongroom_job_bytes{{kind=\"{kind}\",type=\"{what}\"}} {n}"
        );
    }
    let successes = jobs
        .list(&JobFilter {
            kinds: JobKind::BACKUPS.to_vec(),
            statuses: vec![JobStatus::Success],
            limit: 1000,
            ..JobFilter::default()
        })
        .await?;
    let mut last: BTreeMap<(String, String), i64> = BTreeMap::new();
    for j in &successes {
        last.entry((j.source.clone(), j.kind.to_string()))
            .or_insert_with(|| j.completed_at.unwrap_or(j.created_at).timestamp());
    }
    head(
        &mut out,
        "strongroom_last_success_timestamp_seconds",
        "gauge",
        "When the newest successful backup of each source and kind finished (Unix time).",
    );
    for ((source, kind), t) in &last {
        let _ = writeln!(
            out,
            "strongroom_last_success_timestamp_seconds{{source=\"{}\",kind=\"{kind}\"}} {t}",
            label(source)
        );
    }
    let facts = health::backup_facts(&state).await?;
    head(
        &mut out,
        "strongroom_stuck_jobs",
        "gauge",
        "In-progress jobs whose heartbeat stopped.",
    );
    let _ = writeln!(out, "strongroom_stuck_jobs {}", facts.stuck.len());
    let disk = facts.disk;
    head(
        &mut out,
        "strongroom_repository_size_bytes",
        "gauge",
        "Bytes under the repository folder (local repositories).",
    );
    let _ = writeln!(
        out,
        "strongroom_repository_size_bytes {}",
        disk.repository_bytes.unwrap_or(0)
    );
    if let (Some(t), Some(a)) = (disk.fs_total, disk.fs_available) {
        head(
            &mut out,
            "strongroom_repository_disk_available_bytes",
            "gauge",
            "Bytes available on the repository's file system.",
        );
        let _ = writeln!(out, "strongroom_repository_disk_available_bytes {a}");
        head(
            &mut out,
            "strongroom_repository_disk_size_bytes",
            "gauge",
            "Size of the repository's file system.",
        );
        let _ = writeln!(out, "strongroom_repository_disk_size_bytes {t}");
    }
    head(
        &mut out,
        "strongroom_backup_success_rate_7d",
        "gauge",
        "Successful backups / backups in the last 7 days.",
    );
    let _ = writeln!(
        out,
        "strongroom_backup_success_rate_7d {}",
        facts.counts(Duration::days(7)).rate()
    );
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        out,
    )
        .into_response())
}
