//! Durable jobs (the clinic's `BackupStatus`): the queue, leases, heartbeats, outcomes and the
//! backup health summary.
//!
//! The rules that make jobs trustworthy live in the database, not in read-then-write code:
//! - at most one active (queued or in_progress) job per (source, kind), by a unique partial
//!   index; a second `enqueue` gets [`CatalogError::AlreadyActive`];
//! - a queued job is leased by exactly one worker (one atomic `UPDATE`, with
//!   `FOR UPDATE SKIP LOCKED` on PostgreSQL);
//! - heartbeats and outcomes are accepted only from the worker that holds the lease;
//! - [`Jobs::mark_interrupted`] turns jobs whose heartbeat stopped into failed ones, so a restart
//!   never leaves a job in progress.
//!
//! This module must not run jobs, compute schedules or talk to the repository: it records.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::db::{Arg, Db, DbRow, Filter, args, db_err, enum_as, is_unique_violation, json_as};
use crate::error::{CatalogError, Result};
use crate::types::{JobKind, JobStatus};

/// The error message of a job found in progress after its worker stopped heartbeating.
pub const INTERRUPTED_MESSAGE: &str = "interrupted by a restart";

/// One job: a backup, verification, restore, prune, … and everything known about its run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    /// Catalog id, increasing, never reused.
    pub id: i64,
    /// What the job does.
    pub kind: JobKind,
    /// Where it is in its life.
    pub status: JobStatus,
    /// What it works on: a source key such as `db:clinic`, `media` or `all`.
    pub source: String,
    /// A user name, or `schedule:<name>` for scheduled runs.
    pub started_by: String,
    /// The schedule that started it, if any.
    pub schedule_id: Option<i64>,
    /// When it was enqueued.
    pub created_at: DateTime<Utc>,
    /// When a worker leased it.
    pub started_at: Option<DateTime<Utc>>,
    /// When it reached its final status.
    pub completed_at: Option<DateTime<Utc>>,
    /// Seconds from `started_at` to `completed_at`.
    pub duration_seconds: Option<f64>,
    /// Bytes read from the source.
    pub bytes_read: Option<u64>,
    /// Bytes of new (not deduplicated) data.
    pub bytes_added: Option<u64>,
    /// Bytes written to the repository after compression and encryption.
    pub bytes_stored: Option<u64>,
    /// Number of files (or streams) read.
    pub files: Option<u64>,
    /// Snapshots the job produced or worked on.
    pub snapshot_ids: Vec<String>,
    /// A checksum of the backed-up content (e.g. SHA-256 hex of a dump), when computed.
    pub checksum: Option<String>,
    /// Why it failed or what to look at; `None` on a clean success.
    pub error_message: Option<String>,
    /// The last progress reported by the worker.
    pub progress: Option<Progress>,
    /// The worker's last sign of life.
    pub heartbeat_at: Option<DateTime<Utc>>,
    /// The worker that holds (or last held) the lease.
    pub lease_owner: Option<String>,
    /// How many times it was leased.
    pub attempts: u32,
    /// The run-time limit the worker must enforce, if any.
    pub time_limit_seconds: Option<u64>,
    /// Cancellation was asked while it was in progress; the worker sees it on its heartbeat.
    pub cancel_requested: bool,
    /// Free-form details (JSON object).
    pub metadata: Value,
}

/// Progress reported by a worker with its heartbeat.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Progress {
    /// What the job is doing now (e.g. "dumping", "uploading", "verifying").
    pub phase: String,
    /// Bytes processed so far.
    pub bytes_done: u64,
    /// Bytes expected in total, when known.
    pub bytes_total: Option<u64>,
    /// Estimated seconds left, when known.
    pub eta_seconds: Option<u64>,
}

/// A job to enqueue.
#[derive(Debug, Clone, PartialEq)]
pub struct NewJob {
    /// What it will do.
    pub kind: JobKind,
    /// What it works on (source key).
    pub source: String,
    /// A user name, or `schedule:<name>`.
    pub started_by: String,
    /// The schedule that asked for it.
    pub schedule_id: Option<i64>,
    /// A run-time limit for the worker to enforce.
    pub time_limit_seconds: Option<u64>,
    /// Free-form details (JSON object; `null` is stored as `{}`).
    pub metadata: Value,
}

impl NewJob {
    /// A job with no schedule, no time limit and empty metadata.
    pub fn new(kind: JobKind, source: impl Into<String>, started_by: impl Into<String>) -> Self {
        NewJob {
            kind,
            source: source.into(),
            started_by: started_by.into(),
            schedule_id: None,
            time_limit_seconds: None,
            metadata: Value::Object(Default::default()),
        }
    }
}

/// How a job ended, as reported by its worker to [`Jobs::finish`].
#[derive(Debug, Clone, PartialEq)]
pub struct JobOutcome {
    /// A final status: success, warning, failed or cancelled.
    pub status: JobStatus,
    /// Bytes read from the source.
    pub bytes_read: Option<u64>,
    /// Bytes of new data.
    pub bytes_added: Option<u64>,
    /// Bytes written to the repository.
    pub bytes_stored: Option<u64>,
    /// Files (or streams) read.
    pub files: Option<u64>,
    /// Snapshots produced or worked on.
    pub snapshot_ids: Vec<String>,
    /// Checksum of the content, if computed.
    pub checksum: Option<String>,
    /// The error or warning text; `None` clears any earlier one.
    pub error_message: Option<String>,
    /// Replaces the job's metadata when given.
    pub metadata: Option<Value>,
}

impl JobOutcome {
    /// An outcome with the given status and nothing else.
    pub fn new(status: JobStatus) -> Self {
        JobOutcome {
            status,
            bytes_read: None,
            bytes_added: None,
            bytes_stored: None,
            files: None,
            snapshot_ids: Vec::new(),
            checksum: None,
            error_message: None,
            metadata: None,
        }
    }

    /// A success.
    pub fn success() -> Self {
        Self::new(JobStatus::Success)
    }

    /// A failure with its message.
    pub fn failed(message: impl Into<String>) -> Self {
        JobOutcome {
            error_message: Some(message.into()),
            ..Self::new(JobStatus::Failed)
        }
    }
}

/// Which jobs [`Jobs::list`] and [`Jobs::count`] return. Empty vectors and `None` mean "any".
#[derive(Debug, Clone, PartialEq)]
pub struct JobFilter {
    /// Only these kinds.
    pub kinds: Vec<JobKind>,
    /// Only these statuses.
    pub statuses: Vec<JobStatus>,
    /// Only this source key.
    pub source: Option<String>,
    /// Only jobs of this schedule.
    pub schedule_id: Option<i64>,
    /// Only jobs created at or after this time.
    pub created_from: Option<DateTime<Utc>>,
    /// Only jobs created strictly before this time.
    pub created_before: Option<DateTime<Utc>>,
    /// At most this many rows (default 100).
    pub limit: u32,
    /// Skip this many rows first (default 0).
    pub offset: u64,
}

impl Default for JobFilter {
    fn default() -> Self {
        JobFilter {
            kinds: Vec::new(),
            statuses: Vec::new(),
            source: None,
            schedule_id: None,
            created_from: None,
            created_before: None,
            limit: 100,
            offset: 0,
        }
    }
}

/// The backup health summary, mirroring the clinic's `get_backup_health_summary`, except that
/// counts include only backup kinds (full, database, media), not verifications or restores.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HealthSummary {
    /// Backup jobs created in the 24 hours before `now`.
    pub last_24h_backups: u64,
    /// Of those, the ones whose status is `success`.
    pub last_24h_successful: u64,
    /// Backup jobs created in the 7 days before `now`.
    pub last_week_backups: u64,
    /// Of those, the ones whose status is `success`.
    pub last_week_successful: u64,
    /// The newest database backup job, whatever its status.
    pub latest_database_backup: Option<Job>,
    /// The newest media backup job, whatever its status.
    pub latest_media_backup: Option<Job>,
    /// The newest full backup job, whatever its status.
    pub latest_full_backup: Option<Job>,
    /// The newest verification job, whatever its status.
    pub latest_verification: Option<Job>,
    /// `last_week_successful / last_week_backups`, 0 when there were none.
    pub health_score: f64,
}

impl HealthSummary {
    /// True when the score is at least 0.8 (the clinic's threshold).
    pub fn is_healthy(&self) -> bool {
        self.health_score >= 0.8
    }

    /// `"healthy"` or `"unhealthy"`, as the clinic's API spells it.
    pub fn health_status(&self) -> &'static str {
        if self.is_healthy() {
            "healthy"
        } else {
            "unhealthy"
        }
    }
}

/// The jobs table; get it from [`crate::Catalog::jobs`].
pub struct Jobs<'a> {
    pub(crate) db: &'a Db,
}

const ACTIVE_SQL: &str = "status IN ('queued', 'in_progress')";

fn map_job(r: &dyn DbRow) -> Result<Job> {
    let attempts = r.int("attempts")?;
    Ok(Job {
        id: r.int("id")?,
        kind: enum_as(r, "kind")?,
        status: enum_as(r, "status")?,
        source: r.text("source")?,
        started_by: r.text("started_by")?,
        schedule_id: r.opt_int("schedule_id")?,
        created_at: r.time("created_at")?,
        started_at: r.opt_time("started_at")?,
        completed_at: r.opt_time("completed_at")?,
        duration_seconds: r.opt_real("duration_seconds")?,
        bytes_read: r.opt_u64("bytes_read")?,
        bytes_added: r.opt_u64("bytes_added")?,
        bytes_stored: r.opt_u64("bytes_stored")?,
        files: r.opt_u64("files")?,
        snapshot_ids: json_as(r, "snapshot_ids")?,
        checksum: r.opt_text("checksum")?,
        error_message: r.opt_text("error_message")?,
        progress: json_as(r, "progress")?,
        heartbeat_at: r.opt_time("heartbeat_at")?,
        lease_owner: r.opt_text("lease_owner")?,
        attempts: u32::try_from(attempts)
            .map_err(|_| CatalogError::corrupt(format!("attempts = {attempts}")))?,
        time_limit_seconds: r.opt_u64("time_limit_seconds")?,
        cancel_requested: r.boolean("cancel_requested")?,
        metadata: r.json("metadata")?,
    })
}

fn seconds_between(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    let micros = (to - from).num_microseconds().unwrap_or(i64::MAX).max(0);
    // Precision loss only above 2^53 µs (285 years).
    #[allow(clippy::cast_precision_loss)]
    let seconds = micros as f64 / 1_000_000.0;
    seconds
}

fn object_or_empty(v: &Value) -> Value {
    if v.is_null() {
        Value::Object(Default::default())
    } else {
        v.clone()
    }
}

impl Jobs<'_> {
    /// Queues a job. Fails with [`CatalogError::AlreadyActive`] when a job for the same
    /// (source, kind) is queued or in progress; the database decides, so concurrent callers
    /// (threads, processes, service instances) get exactly one new job between them.
    pub async fn enqueue(&self, new: &NewJob, now: DateTime<Utc>) -> Result<Job> {
        if new.source.trim().is_empty() || new.started_by.trim().is_empty() {
            return Err(CatalogError::Invalid(
                "a job needs a source and who started it".into(),
            ));
        }
        let sql = "INSERT INTO jobs (kind, status, source, started_by, schedule_id, created_at, \
                   time_limit_seconds, metadata) \
                   VALUES ($1, 'queued', $2, $3, $4, $5, $6, $7) RETURNING *";
        // The active job can finish between our failed insert and the look-up; then the slot
        // is free again and the insert is retried.
        for _ in 0..5 {
            let mut a = args![
                new.kind.as_str(),
                &new.source,
                &new.started_by,
                new.schedule_id,
                now
            ];
            a.push(Arg::count(new.time_limit_seconds, "time limit")?);
            a.push(Arg::Json(Some(object_or_empty(&new.metadata))));
            match self.db.fetch_all_raw(sql, a, map_job).await {
                Ok(rows) => {
                    return rows?
                        .into_iter()
                        .next()
                        .ok_or_else(|| CatalogError::Database("insert returned no row".into()));
                }
                Err(e) if is_unique_violation(&e) => {
                    if let Some(job) = self.active(&new.source, new.kind).await? {
                        return Err(CatalogError::AlreadyActive {
                            existing_job_id: job.id,
                        });
                    }
                }
                Err(e) => return Err(db_err(e)),
            }
        }
        Err(CatalogError::Conflict(
            "the active job for this source and kind kept changing; try again".into(),
        ))
    }

    /// The queued or in-progress job for (source, kind), if any.
    pub async fn active(&self, source: &str, kind: JobKind) -> Result<Option<Job>> {
        let sql = format!("SELECT * FROM jobs WHERE source = $1 AND kind = $2 AND {ACTIVE_SQL}");
        self.db
            .fetch_optional(&sql, args![source, kind.as_str()], map_job)
            .await
    }

    /// Leases the oldest queued job to `worker_id`: it becomes in_progress with
    /// `started_at = heartbeat_at = now` and one more attempt. Each queued job is leased by
    /// exactly one caller, however many workers and instances ask at once.
    pub async fn lease_next(&self, worker_id: &str, now: DateTime<Utc>) -> Result<Option<Job>> {
        // SQLite has one writer at a time, so the single UPDATE is atomic. PostgreSQL locks
        // the chosen row and makes concurrent workers skip it rather than wait for it.
        let lock = if self.db.is_postgres() {
            " FOR UPDATE SKIP LOCKED"
        } else {
            ""
        };
        let sql = format!(
            "UPDATE jobs SET status = 'in_progress', lease_owner = $1, started_at = $2, \
             heartbeat_at = $2, attempts = attempts + 1 \
             WHERE id = (SELECT id FROM jobs WHERE status = 'queued' \
                         ORDER BY created_at, id LIMIT 1{lock}) \
               AND status = 'queued' \
             RETURNING *"
        );
        self.db
            .fetch_optional(&sql, args![worker_id, now], map_job)
            .await
    }

    /// Records a sign of life (and optionally progress) from the worker holding the lease.
    /// Returns the job, whose `cancel_requested` tells the worker to stop. Fails with
    /// [`CatalogError::LeaseLost`] when `worker_id` does not hold an in-progress lease on it.
    pub async fn heartbeat(
        &self,
        job_id: i64,
        worker_id: &str,
        progress: Option<&Progress>,
        now: DateTime<Utc>,
    ) -> Result<Job> {
        let progress = progress
            .map(Arg::json)
            .transpose()?
            .unwrap_or(Arg::Json(None));
        let mut a = args![job_id, worker_id, now];
        a.push(progress);
        let updated = self
            .db
            .fetch_optional(
                "UPDATE jobs SET heartbeat_at = $3, progress = COALESCE($4, progress) \
                 WHERE id = $1 AND lease_owner = $2 AND status = 'in_progress' RETURNING *",
                a,
                map_job,
            )
            .await?;
        match updated {
            Some(job) => Ok(job),
            None => {
                self.get(job_id).await?;
                Err(CatalogError::LeaseLost { job_id })
            }
        }
    }

    /// Records how the job ended. Only the worker holding the lease may finish it
    /// ([`CatalogError::LeaseLost`] otherwise), and only with a final status.
    pub async fn finish(
        &self,
        job_id: i64,
        worker_id: &str,
        outcome: &JobOutcome,
        now: DateTime<Utc>,
    ) -> Result<Job> {
        if outcome.status.is_active() {
            return Err(CatalogError::Invalid(format!(
                "{} is not a final status",
                outcome.status
            )));
        }
        let job = self.get(job_id).await?;
        if job.status != JobStatus::InProgress || job.lease_owner.as_deref() != Some(worker_id) {
            return Err(CatalogError::LeaseLost { job_id });
        }
        let duration = job.started_at.map(|s| seconds_between(s, now));
        let mut a = args![job_id, worker_id, outcome.status.as_str(), now, duration];
        a.push(Arg::count(outcome.bytes_read, "bytes read")?);
        a.push(Arg::count(outcome.bytes_added, "bytes added")?);
        a.push(Arg::count(outcome.bytes_stored, "bytes stored")?);
        a.push(Arg::count(outcome.files, "files")?);
        a.push(Arg::json(&outcome.snapshot_ids)?);
        a.push(Arg::from(&outcome.checksum));
        a.push(Arg::from(&outcome.error_message));
        a.push(Arg::opt_json(outcome.metadata.as_ref()));
        let updated = self
            .db
            .fetch_optional(
                "UPDATE jobs SET status = $3, completed_at = $4, duration_seconds = $5, \
                 bytes_read = $6, bytes_added = $7, bytes_stored = $8, files = $9, \
                 snapshot_ids = $10, checksum = $11, error_message = $12, \
                 metadata = COALESCE($13, metadata) \
                 WHERE id = $1 AND lease_owner = $2 AND status = 'in_progress' RETURNING *",
                a,
                map_job,
            )
            .await?;
        updated.ok_or(CatalogError::LeaseLost { job_id })
    }

    /// Asks a job to stop. A queued job is cancelled at once; an in-progress one gets
    /// `cancel_requested`, which its worker sees on the next heartbeat. A finished job is a
    /// [`CatalogError::Conflict`].
    pub async fn request_cancel(&self, job_id: i64, now: DateTime<Utc>) -> Result<Job> {
        if let Some(job) = self
            .db
            .fetch_optional(
                "UPDATE jobs SET status = 'cancelled', cancel_requested = TRUE, \
                 completed_at = $2 WHERE id = $1 AND status = 'queued' RETURNING *",
                args![job_id, now],
                map_job,
            )
            .await?
        {
            return Ok(job);
        }
        if let Some(job) = self
            .db
            .fetch_optional(
                "UPDATE jobs SET cancel_requested = TRUE \
                 WHERE id = $1 AND status = 'in_progress' RETURNING *",
                args![job_id],
                map_job,
            )
            .await?
        {
            return Ok(job);
        }
        let job = self.get(job_id).await?;
        Err(CatalogError::Conflict(format!(
            "job {job_id} already ended ({})",
            job.status
        )))
    }

    /// Marks every in-progress job whose last heartbeat is older than `heartbeat_cutoff` as
    /// failed with [`INTERRUPTED_MESSAGE`] and returns them (so the caller can retry the
    /// scheduled ones). Jobs that heartbeat in the meantime are left alone.
    pub async fn mark_interrupted(
        &self,
        heartbeat_cutoff: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Job>> {
        let stale = "status = 'in_progress' AND (heartbeat_at IS NULL OR heartbeat_at < $1)";
        let candidates = self
            .db
            .fetch_all(
                &format!("SELECT * FROM jobs WHERE {stale} ORDER BY id"),
                args![heartbeat_cutoff],
                map_job,
            )
            .await?;
        let mut interrupted = Vec::with_capacity(candidates.len());
        for job in candidates {
            let duration = job.started_at.map(|s| seconds_between(s, now));
            // The same staleness test again, atomically with the change: a heartbeat that
            // arrived since the SELECT keeps the job running.
            let sql = format!(
                "UPDATE jobs SET status = 'failed', error_message = $2, completed_at = $3, \
                 duration_seconds = $4 WHERE id = $5 AND {stale} RETURNING *"
            );
            if let Some(j) = self
                .db
                .fetch_optional(
                    &sql,
                    args![heartbeat_cutoff, INTERRUPTED_MESSAGE, now, duration, job.id],
                    map_job,
                )
                .await?
            {
                interrupted.push(j);
            }
        }
        Ok(interrupted)
    }

    /// The job with this id ([`CatalogError::NotFound`] if none).
    pub async fn get(&self, id: i64) -> Result<Job> {
        self.db
            .fetch_optional("SELECT * FROM jobs WHERE id = $1", args![id], map_job)
            .await?
            .ok_or_else(|| CatalogError::not_found(format!("job {id}")))
    }

    fn filter(f: &JobFilter) -> Filter {
        let mut w = Filter::default();
        w.any_of("kind", f.kinds.iter().map(|k| k.as_str()));
        w.any_of("status", f.statuses.iter().map(|s| s.as_str()));
        if let Some(source) = &f.source {
            let p = w.arg(source);
            w.push(format!("source = {p}"));
        }
        if let Some(id) = f.schedule_id {
            let p = w.arg(id);
            w.push(format!("schedule_id = {p}"));
        }
        if let Some(t) = f.created_from {
            let p = w.arg(t);
            w.push(format!("created_at >= {p}"));
        }
        if let Some(t) = f.created_before {
            let p = w.arg(t);
            w.push(format!("created_at < {p}"));
        }
        w
    }

    /// Jobs matching the filter, newest first (by creation time, then id).
    pub async fn list(&self, filter: &JobFilter) -> Result<Vec<Job>> {
        let mut w = Self::filter(filter);
        let page = w.limit_offset(filter.limit, filter.offset)?;
        let sql = format!(
            "SELECT * FROM jobs{} ORDER BY created_at DESC, id DESC{page}",
            w.where_sql()
        );
        self.db.fetch_all(&sql, w.args, map_job).await
    }

    /// How many jobs match the filter (its limit and offset are ignored).
    pub async fn count(&self, filter: &JobFilter) -> Result<u64> {
        let w = Self::filter(filter);
        let sql = format!("SELECT COUNT(*) AS n FROM jobs{}", w.where_sql());
        let n = self.db.fetch_one(&sql, w.args, |r| r.int("n")).await?;
        u64::try_from(n).map_err(|_| CatalogError::corrupt("negative count"))
    }

    /// The newest job with status `success` for (source, kind).
    pub async fn latest_success(&self, source: &str, kind: JobKind) -> Result<Option<Job>> {
        self.db
            .fetch_optional(
                "SELECT * FROM jobs WHERE source = $1 AND kind = $2 AND status = 'success' \
                 ORDER BY created_at DESC, id DESC LIMIT 1",
                args![source, kind.as_str()],
                map_job,
            )
            .await
    }

    /// The newest job of this kind, whatever its source and status.
    pub async fn latest_of_kind(&self, kind: JobKind) -> Result<Option<Job>> {
        self.db
            .fetch_optional(
                "SELECT * FROM jobs WHERE kind = $1 ORDER BY created_at DESC, id DESC LIMIT 1",
                args![kind.as_str()],
                map_job,
            )
            .await
    }

    /// Deletes a finished job. An active job cannot be deleted ([`CatalogError::Conflict`]):
    /// cancel it first.
    pub async fn delete(&self, id: i64) -> Result<()> {
        let sql = format!("DELETE FROM jobs WHERE id = $1 AND NOT ({ACTIVE_SQL})");
        if self.db.execute(&sql, args![id]).await? == 1 {
            return Ok(());
        }
        let job = self.get(id).await?;
        Err(CatalogError::Conflict(format!(
            "job {id} is {}; cancel it before deleting it",
            job.status
        )))
    }

    /// The backup health summary at `now` (see [`HealthSummary`]).
    pub async fn health_summary(&self, now: DateTime<Utc>) -> Result<HealthSummary> {
        let (day, day_ok) = self.backup_counts(now - Duration::hours(24)).await?;
        let (week, week_ok) = self.backup_counts(now - Duration::days(7)).await?;
        #[allow(clippy::cast_precision_loss)]
        let health_score = if week == 0 {
            0.0
        } else {
            week_ok as f64 / week as f64
        };
        Ok(HealthSummary {
            last_24h_backups: day,
            last_24h_successful: day_ok,
            last_week_backups: week,
            last_week_successful: week_ok,
            latest_database_backup: self.latest_of_kind(JobKind::Database).await?,
            latest_media_backup: self.latest_of_kind(JobKind::Media).await?,
            latest_full_backup: self.latest_of_kind(JobKind::Full).await?,
            latest_verification: self.latest_of_kind(JobKind::Verification).await?,
            health_score,
        })
    }

    /// (all, successful) backup jobs created at or after `since`.
    async fn backup_counts(&self, since: DateTime<Utc>) -> Result<(u64, u64)> {
        let mut w = Filter::default();
        w.any_of("kind", JobKind::BACKUPS.iter().map(|k| k.as_str()));
        let p = w.arg(since);
        w.push(format!("created_at >= {p}"));
        let sql = format!(
            "SELECT COUNT(*) AS total, \
             COALESCE(SUM(CASE WHEN status = 'success' THEN 1 ELSE 0 END), 0) AS ok \
             FROM jobs{}",
            w.where_sql()
        );
        let (total, ok) = self
            .db
            .fetch_one(&sql, w.args, |r| Ok((r.int("total")?, r.int("ok")?)))
            .await?;
        let conv = |v: i64| u64::try_from(v).map_err(|_| CatalogError::corrupt("negative count"));
        Ok((conv(total)?, conv(ok)?))
    }
}
