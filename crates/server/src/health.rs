//! Health figures computed from the catalog (jobs, schedules), the repository's disk usage
//! and the database probes; shared by the v1 health endpoints, the compatibility endpoints
//! and the metrics. One rule set (the clinic's `backup/health` decision order), counting
//! backup jobs only (full, database, media), with stuck jobs found by their heartbeat.
//!
//! Must not write anything, and must not block a request on a slow probe or a large folder
//! walk longer than needed: probes and disk usage are cached.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};
use strongroom_catalog::{HealthSummary, Job, JobFilter, JobKind, JobStatus, Schedule};
use strongroom_sources::HealthReport;

use crate::error::ApiResult;
use crate::state::AppState;
use crate::util::{f, py_iso, py_iso_opt, round};

/// Disk usage of the repository.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct DiskUsage {
    /// Bytes under the repository folder, or of every object in a bucket.
    pub(crate) repository_bytes: Option<u64>,
    /// Size of the file system holding it.
    pub(crate) fs_total: Option<u64>,
    /// Bytes available on it.
    pub(crate) fs_available: Option<u64>,
}

impl DiskUsage {
    pub(crate) fn used_percent(&self) -> Option<f64> {
        match (self.fs_total, self.fs_available) {
            (Some(t), Some(a)) if t > 0 => Some(round(100.0 * (1.0 - f(a) / f(t)), 1)),
            _ => None,
        }
    }
}

fn walk(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(meta) = e.metadata() else { continue };
            if meta.is_dir() {
                stack.push(e.path());
            } else if meta.is_file() {
                total += meta.len();
            }
        }
    }
    total
}

fn measure(dir: &Path) -> DiskUsage {
    let mut u = DiskUsage {
        repository_bytes: dir.is_dir().then(|| walk(dir)),
        ..DiskUsage::default()
    };
    // The file system of the repository, or of its nearest existing ancestor.
    let mut p = Some(dir);
    while let Some(candidate) = p {
        if let Ok(st) = rustix::fs::statvfs(candidate) {
            u.fs_total = Some(st.f_blocks.saturating_mul(st.f_frsize));
            u.fs_available = Some(st.f_bavail.saturating_mul(st.f_frsize));
            break;
        }
        p = candidate.parent();
    }
    u
}

/// The repository's disk usage (cached).
pub(crate) async fn disk_usage(state: &AppState) -> DiskUsage {
    let ttl = state.options().disk_cache_ttl;
    if let Ok(g) = state.inner.caches.disk.lock()
        && let Some((at, u)) = *g
        && !ttl.is_zero()
        && at.elapsed() < ttl
    {
        return u;
    }
    let u = match state.repository_path() {
        Some(dir) => tokio::task::spawn_blocking(move || measure(&dir))
            .await
            .unwrap_or_default(),
        // Not a local folder (an S3 bucket): the size from the storage's listing; no disk.
        None => match &state.inner.repo {
            Some(repo) => DiskUsage {
                repository_bytes: repo.stored_bytes().await.ok(),
                ..DiskUsage::default()
            },
            None => DiskUsage::default(),
        },
    };
    if let Ok(mut g) = state.inner.caches.disk.lock() {
        *g = Some((Instant::now(), u));
    }
    u
}

/// Probes every configured database (cached per database; probes run in blocking tasks, in
/// parallel).
pub(crate) async fn probe_all(state: &AppState) -> Vec<(String, HealthReport)> {
    let ttl = state.options().probe_cache_ttl;
    let mut out = Vec::new();
    let mut pending = Vec::new();
    for (name, probe) in &state.inner.probes {
        let cached = state.inner.caches.probes.lock().ok().and_then(|g| {
            g.get(name)
                .filter(|(at, _)| !ttl.is_zero() && at.elapsed() < ttl)
                .map(|(_, r)| r.clone())
        });
        match cached {
            Some(r) => out.push((name.clone(), r)),
            None => {
                let probe = Arc::clone(probe);
                pending.push((
                    name.clone(),
                    tokio::task::spawn_blocking(move || probe.probe()),
                ));
            }
        }
    }
    for (name, task) in pending {
        if let Ok(mut report) = task.await {
            report.error = report.error.map(|e| state.redact(&e));
            report.target = state.redact(&report.target);
            if let Ok(mut g) = state.inner.caches.probes.lock() {
                g.insert(name.clone(), (Instant::now(), report.clone()));
            }
            out.push((name, report));
        }
    }
    let order: HashMap<&str, usize> = state
        .inner
        .probes
        .iter()
        .enumerate()
        .map(|(i, (n, _))| (n.as_str(), i))
        .collect();
    out.sort_by_key(|(n, _)| order.get(n.as_str()).copied().unwrap_or(usize::MAX));
    out
}

/// Everything the backup-health answers are computed from.
pub(crate) struct BackupFacts {
    pub(crate) now: DateTime<Utc>,
    /// Backup jobs created in the last 30 days, newest first.
    pub(crate) jobs_30d: Vec<Job>,
    /// In-progress jobs (any kind) whose heartbeat is older than the stuck threshold.
    pub(crate) stuck: Vec<Job>,
    /// Queued or in-progress jobs, any kind.
    pub(crate) active: Vec<Job>,
    /// The newest successful backup job, any source.
    pub(crate) last_success: Option<Job>,
    /// The newest successful backup per kind.
    pub(crate) last_success_by_kind: HashMap<JobKind, Job>,
    /// The newest verification job.
    pub(crate) last_verification: Option<Job>,
    /// The clinic's summary (24 h / 7 d counts, latest per type, score).
    pub(crate) summary: HealthSummary,
    /// Every schedule.
    pub(crate) schedules: Vec<Schedule>,
    /// Repository disk usage.
    pub(crate) disk: DiskUsage,
    /// The stuck threshold in minutes.
    pub(crate) stuck_minutes: u32,
}

/// Counts over a window.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Counts {
    pub(crate) total: u64,
    pub(crate) successful: u64,
    pub(crate) failed: u64,
    pub(crate) in_progress: u64,
}

impl Counts {
    pub(crate) fn rate(&self) -> f64 {
        round(f(self.successful) / f(self.total.max(1)), 3)
    }
}

/// The file size the clinic's page shows for a job: bytes read from the source.
pub(crate) fn job_size(job: &Job) -> Option<u64> {
    job.bytes_read.or(job.bytes_stored)
}

/// A job's time as the clinic's `started_at`: when it was requested.
pub(crate) fn job_time(job: &Job) -> DateTime<Utc> {
    job.created_at
}

/// Retention days of a schedule: `keep_days`, else `keep_daily`, else 7.
pub(crate) fn retention_days(s: &Schedule) -> u64 {
    ["keep_days", "keep_daily"]
        .iter()
        .find_map(|k| s.retention.get(*k).and_then(Value::as_u64))
        .unwrap_or(7)
}

impl BackupFacts {
    pub(crate) fn counts(&self, window: Duration) -> Counts {
        let since = self.now - window;
        let mut c = Counts::default();
        for j in self.jobs_30d.iter().filter(|j| j.created_at >= since) {
            c.total += 1;
            match j.status {
                JobStatus::Success => c.successful += 1,
                JobStatus::Failed => c.failed += 1,
                JobStatus::Queued | JobStatus::InProgress => c.in_progress += 1,
                JobStatus::Warning | JobStatus::Cancelled => {}
            }
        }
        c
    }

    /// `(health_status, message)` by the clinic's decision order.
    pub(crate) fn status(&self) -> (&'static str, String) {
        let c = self.counts(Duration::days(7));
        let stuck = self.stuck.len();
        if stuck > 0 {
            ("unhealthy", format!("{stuck} stuck backup(s) detected"))
        } else if c.failed > c.successful {
            (
                "unhealthy",
                format!(
                    "More failures ({}) than successes ({})",
                    c.failed, c.successful
                ),
            )
        } else if c.failed > 0 {
            (
                "warning",
                format!(
                    "{} successful, {} failed in last 7 days",
                    c.successful, c.failed
                ),
            )
        } else if c.total == 0 {
            ("warning", "No backups in last 7 days".to_owned())
        } else {
            (
                "healthy",
                format!("{} successful backups in last 7 days", c.successful),
            )
        }
    }

    pub(crate) fn kpis(&self) -> Value {
        let week = self.now - Duration::days(7);
        let week_jobs: Vec<&Job> = self
            .jobs_30d
            .iter()
            .filter(|j| j.created_at >= week)
            .collect();
        let durations: Vec<f64> = week_jobs
            .iter()
            .filter_map(|j| j.duration_seconds)
            .collect();
        let sizes: Vec<f64> = week_jobs
            .iter()
            .filter_map(|j| job_size(j))
            .map(f)
            .collect();
        let mean = |v: &[f64]| {
            if v.is_empty() {
                Value::Null
            } else {
                json!(round(v.iter().sum::<f64>() / f(v.len() as u64), 2))
            }
        };
        let mut bounds = serde_json::Map::new();
        for kind in [JobKind::Database, JobKind::Media, JobKind::Full] {
            let ok: Vec<&Job> = self
                .jobs_30d
                .iter()
                .filter(|j| j.kind == kind && j.status == JobStatus::Success)
                .collect();
            bounds.insert(
                kind.as_str().to_owned(),
                json!({
                    "newest": py_iso_opt(ok.first().map(|j| job_time(j))),
                    "oldest": py_iso_opt(ok.last().map(|j| job_time(j))),
                }),
            );
        }
        json!({
            "success_rate_24h": self.counts(Duration::hours(24)).rate(),
            "success_rate_7d": self.counts(Duration::days(7)).rate(),
            "success_rate_30d": self.counts(Duration::days(30)).rate(),
            "avg_duration_7d_sec": mean(&durations),
            "avg_size_7d_bytes": mean(&sizes),
            "per_type_bounds_30d": bounds,
            "last_verification": py_iso_opt(self.last_verification.as_ref().and_then(|j| j.completed_at)),
            "retention_issues": self.retention_issues(),
            "storage_usage_bytes": self.disk.repository_bytes.unwrap_or(0),
        })
    }

    pub(crate) fn retention_issues(&self) -> Vec<Value> {
        self.schedules
            .iter()
            .filter(|s| s.enabled && s.kind.is_backup())
            .filter_map(|s| {
                let days = retention_days(s);
                let window = Duration::days(i64::try_from(days).unwrap_or(i64::MAX / 86_400_000));
                let ok = self
                    .last_success_by_kind
                    .get(&s.kind)
                    .is_some_and(|j| j.created_at >= self.now - window);
                (!ok).then(|| {
                    json!({
                        "backup_type": s.kind.as_str(),
                        "retention_days": days,
                        "issue": "No successful backup within retention window",
                    })
                })
            })
            .collect()
    }

    /// `system_health` of the legacy payload, with `last_successful_backup` meaning what it
    /// says (the newest successful backup).
    pub(crate) fn system_health(&self) -> Value {
        json!({
            "backup_system_healthy": self.summary.is_healthy(),
            "last_successful_backup": py_iso_opt(self.last_success.as_ref().map(|j| j.started_at.unwrap_or(j.created_at))),
            "backup_frequency_ok": self.summary.last_24h_backups >= 1,
            "storage_usage": self.disk.repository_bytes,
        })
    }

    /// The clinic's recommendations (§6.6), in order.
    pub(crate) fn recommendations(&self) -> Vec<Value> {
        let s = &self.summary;
        let mut r = Vec::new();
        if s.last_24h_backups == 0 {
            r.push(json!({"type": "backup_frequency", "priority": "high",
                "message": "No backups in the last 24 hours. Consider running a manual backup.",
                "action": "Run manual backup"}));
        }
        if s.health_score < 0.8 {
            r.push(json!({"type": "success_rate", "priority": "medium",
                "message": format!("Backup success rate is {:.1}%. Investigate recent failures.", s.health_score * 100.0),
                "action": "Check backup logs"}));
        }
        if s.latest_verification.is_none() {
            r.push(json!({"type": "verification", "priority": "medium",
                "message": "No backup verification found. Run backup verification to ensure integrity.",
                "action": "Run backup verification"}));
        }
        // A full backup includes the media, so it counts as a media backup here.
        if s.latest_media_backup.is_none() && s.latest_full_backup.is_none() {
            r.push(json!({"type": "media_backup", "priority": "low",
                "message": "No media file backups found. Consider implementing media backup strategy.",
                "action": "Set up media backups"}));
        }
        r
    }

    pub(crate) fn timestamp(&self) -> String {
        py_iso(self.now)
    }
}

/// Gathers the facts (about ten catalog queries).
pub(crate) async fn backup_facts(state: &AppState) -> ApiResult<BackupFacts> {
    let now = state.now();
    let catalog = state.catalog();
    let jobs = catalog.jobs();
    let settings = state.settings().await?;
    let jobs_30d = jobs
        .list(&JobFilter {
            kinds: JobKind::BACKUPS.to_vec(),
            created_from: Some(now - Duration::days(30)),
            limit: 10_000,
            ..JobFilter::default()
        })
        .await?;
    let active = jobs
        .list(&JobFilter {
            statuses: JobStatus::ACTIVE.to_vec(),
            limit: 1000,
            ..JobFilter::default()
        })
        .await?;
    let cutoff = now - Duration::minutes(i64::from(settings.stuck_after_minutes));
    let stuck = active
        .iter()
        .filter(|j| {
            j.status == JobStatus::InProgress
                && j.heartbeat_at.or(j.started_at).unwrap_or(j.created_at) < cutoff
        })
        .cloned()
        .collect();
    let mut last_success_by_kind = HashMap::new();
    for kind in JobKind::BACKUPS {
        if let Some(j) = jobs
            .list(&JobFilter {
                kinds: vec![*kind],
                statuses: vec![JobStatus::Success],
                limit: 1,
                ..JobFilter::default()
            })
            .await?
            .into_iter()
            .next()
        {
            last_success_by_kind.insert(*kind, j);
        }
    }
    let last_success = last_success_by_kind
        .values()
        .max_by_key(|j| (j.created_at, j.id))
        .cloned();
    let summary = jobs.health_summary(now).await?;
    let last_verification = summary.latest_verification.clone();
    let schedules = catalog.schedules().list().await?;
    let disk = disk_usage(state).await;
    Ok(BackupFacts {
        now,
        jobs_30d,
        stuck,
        active,
        last_success,
        last_success_by_kind,
        last_verification,
        summary,
        schedules,
        disk,
        stuck_minutes: settings.stuck_after_minutes,
    })
}

/// A cached serialized answer, computed by `make` on a miss.
pub(crate) async fn cached_json<F, Fut>(
    state: &AppState,
    key: &'static str,
    make: F,
) -> ApiResult<Bytes>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = ApiResult<Value>>,
{
    let ttl = state.options().health_cache_ttl;
    if !ttl.is_zero()
        && let Ok(g) = state.inner.caches.responses.lock()
        && let Some((at, b)) = g.get(key)
        && at.elapsed() < ttl
    {
        return Ok(b.clone());
    }
    let v = make().await?;
    let b = Bytes::from(serde_json::to_vec(&v).map_err(|e| state.internal(e))?);
    if !ttl.is_zero()
        && let Ok(mut g) = state.inner.caches.responses.lock()
    {
        g.insert(key, (Instant::now(), b.clone()));
    }
    Ok(b)
}

/// A JSON answer from bytes. An error status keeps its body: it is marked as already rendered
/// so the envelope middleware does not replace it (the clinic's health errors have bodies of
/// their own, such as `{"status": "unhealthy", "error": …}`).
pub(crate) fn json_bytes(status: axum::http::StatusCode, b: Bytes) -> axum::response::Response {
    use axum::response::IntoResponse;
    let mut resp = (
        status,
        [(
            axum::http::header::CONTENT_TYPE,
            axum::http::HeaderValue::from_static("application/json"),
        )],
        b,
    )
        .into_response();
    if status.as_u16() >= 400 {
        resp.extensions_mut().insert(crate::error::RenderedError {
            message: String::new(),
            style: crate::error::ErrorStyle::Legacy,
        });
    }
    resp
}

/// Status of one database from its probe, with the clinic's thresholds: connection use
/// over 80 % warning, over 90 % critical; a trivial query over 5 s warning, over 10 s
/// critical; over 10 waiting locks warning, over 50 critical; unreachable critical.
pub(crate) fn database_status(r: &HealthReport) -> &'static str {
    if !r.reachable {
        return "critical";
    }
    let mut worst = 0;
    if let (Some(a), Some(m)) = (
        r.total_connections.or(r.active_connections),
        r.max_connections,
    ) && m > 0
    {
        let pct = 100.0 * f(a) / f(m);
        worst = worst.max(if pct > 90.0 {
            2
        } else if pct > 80.0 {
            1
        } else {
            0
        });
    }
    if let Some(ms) = r.latency_ms {
        worst = worst.max(if ms > 10_000.0 {
            2
        } else if ms > 5_000.0 {
            1
        } else {
            0
        });
    }
    if let Some(l) = r.waiting_locks {
        worst = worst.max(if l > 50 {
            2
        } else if l > 10 {
            1
        } else {
            0
        });
    }
    ["healthy", "warning", "critical"][worst]
}
