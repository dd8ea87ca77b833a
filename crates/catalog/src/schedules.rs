//! Schedules (the clinic's `BackupSchedule`): what to run, when, and the compare-and-set claim
//! that makes each scheduled run happen exactly once across service instances.
//!
//! The schedule text (`spec`) and time zone are stored exactly as given; parsing them and
//! computing the next run belong to the scheduler, not here. This module must not decide when
//! anything runs: it stores `next_run_at` values computed elsewhere and arbitrates who claims
//! each one.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::db::{Arg, Db, DbRow, args, enum_as, json_as, opt_enum_as};
use crate::error::{CatalogError, Result};
use crate::types::{JobKind, JobStatus};

/// A stored schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    /// Catalog id.
    pub id: i64,
    /// Unique name (e.g. "nightly").
    pub name: String,
    /// What each run does.
    pub kind: JobKind,
    /// The source keys each run covers.
    pub sources: Vec<String>,
    /// When: a cron expression or a simple form such as "daily 02:00", as given.
    pub spec: String,
    /// IANA time-zone name the spec is read in (e.g. "Asia/Manila").
    pub timezone: String,
    /// Disabled schedules are never due and cannot be claimed.
    pub enabled: bool,
    /// The retention policy applied after each run (JSON, shape owned by the scheduler).
    pub retention: Value,
    /// Verify the snapshot after each backup.
    pub verify_after: bool,
    /// Test-restore after each backup.
    pub test_restore: bool,
    /// When the last run was started.
    pub last_run_at: Option<DateTime<Utc>>,
    /// The job of the last run.
    pub last_job_id: Option<i64>,
    /// How the last run ended, once it has.
    pub last_outcome: Option<JobStatus>,
    /// The next time it is due; `None` when it has none.
    pub next_run_at: Option<DateTime<Utc>>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When its configuration last changed.
    pub updated_at: DateTime<Utc>,
}

/// The configuration of a schedule, to create or replace one.
#[derive(Debug, Clone, PartialEq)]
pub struct NewSchedule {
    /// Unique name.
    pub name: String,
    /// What each run does.
    pub kind: JobKind,
    /// Source keys.
    pub sources: Vec<String>,
    /// Cron or simple form, stored as given.
    pub spec: String,
    /// IANA time-zone name.
    pub timezone: String,
    /// Whether it runs.
    pub enabled: bool,
    /// Retention policy (JSON; `null` is stored as `{}`).
    pub retention: Value,
    /// Verify after each backup.
    pub verify_after: bool,
    /// Test-restore after each backup.
    pub test_restore: bool,
    /// The first (or, on update, the recomputed) next run.
    pub next_run_at: Option<DateTime<Utc>>,
}

/// The schedules table; get it from [`crate::Catalog::schedules`].
pub struct Schedules<'a> {
    pub(crate) db: &'a Db,
}

fn map_schedule(r: &dyn DbRow) -> Result<Schedule> {
    Ok(Schedule {
        id: r.int("id")?,
        name: r.text("name")?,
        kind: enum_as(r, "kind")?,
        sources: json_as(r, "sources")?,
        spec: r.text("spec")?,
        timezone: r.text("timezone")?,
        enabled: r.boolean("enabled")?,
        retention: r.json("retention")?,
        verify_after: r.boolean("verify_after")?,
        test_restore: r.boolean("test_restore")?,
        last_run_at: r.opt_time("last_run_at")?,
        last_job_id: r.opt_int("last_job_id")?,
        last_outcome: opt_enum_as(r, "last_outcome")?,
        next_run_at: r.opt_time("next_run_at")?,
        created_at: r.time("created_at")?,
        updated_at: r.time("updated_at")?,
    })
}

fn config_args(s: &NewSchedule) -> Result<Vec<Arg>> {
    if s.name.trim().is_empty() || s.spec.trim().is_empty() || s.timezone.trim().is_empty() {
        return Err(CatalogError::Invalid(
            "a schedule needs a name, a spec and a time zone".into(),
        ));
    }
    let retention = if s.retention.is_null() {
        Value::Object(Default::default())
    } else {
        s.retention.clone()
    };
    let mut a = args![&s.name, s.kind.as_str()];
    a.push(Arg::json(&s.sources)?);
    a.extend(args![&s.spec, &s.timezone, s.enabled]);
    a.push(Arg::Json(Some(retention)));
    a.extend(args![s.verify_after, s.test_restore, s.next_run_at]);
    Ok(a)
}

fn name_taken(name: &str, e: CatalogError) -> CatalogError {
    match e {
        CatalogError::Conflict(_) => {
            CatalogError::Conflict(format!("a schedule named {name:?} already exists"))
        }
        other => other,
    }
}

impl Schedules<'_> {
    /// Creates a schedule ([`CatalogError::Conflict`] if the name is taken).
    pub async fn create(&self, new: &NewSchedule, now: DateTime<Utc>) -> Result<Schedule> {
        let mut a = config_args(new)?;
        a.push(Arg::from(now));
        self.db
            .fetch_one(
                "INSERT INTO schedules (name, kind, sources, spec, timezone, enabled, retention, \
                 verify_after, test_restore, next_run_at, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11) RETURNING *",
                a,
                map_schedule,
            )
            .await
            .map_err(|e| name_taken(&new.name, e))
    }

    /// Replaces a schedule's configuration, including `next_run_at`; its run history stays.
    pub async fn update(&self, id: i64, new: &NewSchedule, now: DateTime<Utc>) -> Result<Schedule> {
        let mut a = config_args(new)?;
        a.extend(args![now, id]);
        self.db
            .fetch_optional(
                "UPDATE schedules SET name = $1, kind = $2, sources = $3, spec = $4, \
                 timezone = $5, enabled = $6, retention = $7, verify_after = $8, \
                 test_restore = $9, next_run_at = $10, updated_at = $11 \
                 WHERE id = $12 RETURNING *",
                a,
                map_schedule,
            )
            .await
            .map_err(|e| name_taken(&new.name, e))?
            .ok_or_else(|| CatalogError::not_found(format!("schedule {id}")))
    }

    /// Enables or disables a schedule.
    pub async fn set_enabled(
        &self,
        id: i64,
        enabled: bool,
        now: DateTime<Utc>,
    ) -> Result<Schedule> {
        self.db
            .fetch_optional(
                "UPDATE schedules SET enabled = $2, updated_at = $3 WHERE id = $1 RETURNING *",
                args![id, enabled, now],
                map_schedule,
            )
            .await?
            .ok_or_else(|| CatalogError::not_found(format!("schedule {id}")))
    }

    /// Sets the next run unconditionally (after creating or editing a schedule, or when the
    /// scheduler starts). To take a due run, use [`Schedules::claim_due_run`].
    pub async fn set_next_run(&self, id: i64, next_run_at: Option<DateTime<Utc>>) -> Result<()> {
        let n = self
            .db
            .execute(
                "UPDATE schedules SET next_run_at = $2 WHERE id = $1",
                args![id, next_run_at],
            )
            .await?;
        if n == 0 {
            return Err(CatalogError::not_found(format!("schedule {id}")));
        }
        Ok(())
    }

    /// Claims the run due at `expected_next_run_at` by moving `next_run_at` to
    /// `new_next_run_at`, as one compare-and-set `UPDATE`. Returns true for exactly one caller
    /// among any number of concurrent ones (threads or service instances); false when the run
    /// was already claimed, the schedule changed, was disabled or deleted.
    pub async fn claim_due_run(
        &self,
        schedule_id: i64,
        expected_next_run_at: DateTime<Utc>,
        new_next_run_at: Option<DateTime<Utc>>,
    ) -> Result<bool> {
        let n = self
            .db
            .execute(
                "UPDATE schedules SET next_run_at = $3 \
                 WHERE id = $1 AND enabled = TRUE AND next_run_at = $2",
                args![schedule_id, expected_next_run_at, new_next_run_at],
            )
            .await?;
        Ok(n == 1)
    }

    /// Records a run: when it started, its job, and (once known) its outcome.
    pub async fn record_run(
        &self,
        id: i64,
        run_at: DateTime<Utc>,
        job_id: Option<i64>,
        outcome: Option<JobStatus>,
    ) -> Result<()> {
        let n = self
            .db
            .execute(
                "UPDATE schedules SET last_run_at = $2, last_job_id = $3, last_outcome = $4 \
                 WHERE id = $1",
                args![id, run_at, job_id, outcome.map(JobStatus::as_str)],
            )
            .await?;
        if n == 0 {
            return Err(CatalogError::not_found(format!("schedule {id}")));
        }
        Ok(())
    }

    /// Enabled schedules whose next run is at or before `now`, soonest first.
    pub async fn due(&self, now: DateTime<Utc>) -> Result<Vec<Schedule>> {
        self.db
            .fetch_all(
                "SELECT * FROM schedules WHERE enabled = TRUE AND next_run_at IS NOT NULL \
                 AND next_run_at <= $1 ORDER BY next_run_at, id",
                args![now],
                map_schedule,
            )
            .await
    }

    /// The schedule with this id ([`CatalogError::NotFound`] if none).
    pub async fn get(&self, id: i64) -> Result<Schedule> {
        self.db
            .fetch_optional(
                "SELECT * FROM schedules WHERE id = $1",
                args![id],
                map_schedule,
            )
            .await?
            .ok_or_else(|| CatalogError::not_found(format!("schedule {id}")))
    }

    /// The schedule with this name, if any.
    pub async fn find_by_name(&self, name: &str) -> Result<Option<Schedule>> {
        self.db
            .fetch_optional(
                "SELECT * FROM schedules WHERE name = $1",
                args![name],
                map_schedule,
            )
            .await
    }

    /// Every schedule, by name.
    pub async fn list(&self) -> Result<Vec<Schedule>> {
        self.db
            .fetch_all(
                "SELECT * FROM schedules ORDER BY name",
                args![],
                map_schedule,
            )
            .await
    }

    /// Deletes a schedule; its past jobs stay, with no schedule.
    pub async fn delete(&self, id: i64) -> Result<()> {
        let n = self
            .db
            .execute("DELETE FROM schedules WHERE id = $1", args![id])
            .await?;
        if n == 0 {
            return Err(CatalogError::not_found(format!("schedule {id}")));
        }
        Ok(())
    }
}
