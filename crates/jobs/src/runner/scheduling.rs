//! From schedules to jobs: the scheduler tick, start-up recovery, the retry of interrupted
//! scheduled runs, and keeping the catalog's schedules in step with the configuration.
//!
//! Exactly once: a due run is claimed with the catalog's compare-and-set
//! ([`strongroom_catalog::Schedules::claim_due_run`]) before it is enqueued, so however many
//! instances tick at once, one of them enqueues it; an interrupted job is returned to exactly
//! one caller of `mark_interrupted`, which retries it once. Missed runs: when a tick finds a
//! schedule whose planned run passed (the service was down), [`Schedule::due_runs`] decides:
//! one run now if the most recent missed fire time is within the catch-up window (never one
//! per missed time), else none; either way the next run moves to the next fire time after now.
//!
//! What it must not do: read the system clock (every function takes `now`), enqueue a run it
//! did not claim, or retry a job more than once.

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use strongroom_catalog::{
    Catalog, CatalogError, Job, JobKind, JobStatus, NewSchedule, Schedule as StoredSchedule,
};
use strongroom_config::ScheduleConfig;
use strongroom_scheduler::Schedule;

use super::options::{JobOptions, ScheduleSettings, job_kind};
use super::{Enqueued, JobRequest, Runner, RunnerError, TimeLimits, new_job, seconds};

/// How late a tick may find a due run and still count it as on time.
const ON_TIME: Duration = Duration::seconds(60);

/// A run the tick enqueued.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScheduledRun {
    /// The schedule.
    pub schedule: String,
    /// The fire time it stands for.
    pub planned_for: DateTime<Utc>,
    /// The job.
    pub job_id: i64,
    /// Several fire times were missed and this one run stands for them.
    pub collapsed: bool,
}

/// A run that was missed and is not made up (older than the catch-up window).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MissedRun {
    /// The schedule.
    pub schedule: String,
    /// The first fire time that was missed.
    pub planned_for: DateTime<Utc>,
    /// The next run.
    pub next: Option<DateTime<Utc>>,
}

/// What one tick did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TickReport {
    /// Runs enqueued.
    pub enqueued: Vec<ScheduledRun>,
    /// Runs claimed but not enqueued because a job of the same (source, kind) was active:
    /// (schedule, the active job).
    pub already_active: Vec<(String, i64)>,
    /// Runs missed and not made up.
    pub missed: Vec<MissedRun>,
    /// Due runs another instance claimed first.
    pub claimed_elsewhere: usize,
    /// Schedules that cannot be evaluated (their next run is cleared): (schedule, why).
    pub invalid: Vec<(String, String)>,
}

/// What start-up (or periodic) recovery did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RecoveryReport {
    /// Jobs marked failed because their heartbeat stopped.
    pub interrupted: Vec<Job>,
    /// Retries enqueued: (interrupted job, new job).
    pub retried: Vec<(i64, i64)>,
    /// Retries not enqueued because a job of the same (source, kind) was active:
    /// (interrupted job, active job).
    pub already_active: Vec<(i64, i64)>,
}

/// What [`sync_schedules`] changed.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SyncReport {
    /// Schedules created.
    pub created: Vec<String>,
    /// Schedules whose configuration changed.
    pub updated: Vec<String>,
    /// Schedules already as configured.
    pub unchanged: Vec<String>,
}

/// A schedule's configuration, from `strongroom.toml` or `strongroom schedule add`.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleDefinition {
    /// Unique name.
    pub name: String,
    /// What each run does.
    pub kind: JobKind,
    /// Source names (empty: every source the kind applies to, at run time).
    pub sources: Vec<String>,
    /// Cron or simple form.
    pub spec: String,
    /// IANA time zone.
    pub timezone: String,
    /// Whether it runs.
    pub enabled: bool,
    /// Verify after each backup.
    pub verify: bool,
    /// Test-restore (backups: each database part; verification: the newest database backups).
    pub test_restore: bool,
    /// Retention, catch-up window and read-data share.
    pub settings: ScheduleSettings,
}

impl ScheduleDefinition {
    /// The definition of a configured schedule.
    #[must_use]
    pub fn from_config(s: &ScheduleConfig) -> Self {
        ScheduleDefinition {
            name: s.name.clone(),
            kind: job_kind(s.kind),
            sources: if s.sources_explicit {
                s.sources.clone()
            } else {
                Vec::new()
            },
            spec: s.when.clone(),
            timezone: s.timezone.clone(),
            enabled: s.enabled,
            verify: s.verify,
            test_restore: s.test_restore,
            settings: ScheduleSettings {
                retention: s.retention.map(Into::into).unwrap_or_default(),
                catch_up_window_seconds: Some(s.catch_up_window.as_secs()),
                read_data_subset: s.read_data_subset,
            },
        }
    }

    /// Checks the definition and parses its schedule.
    ///
    /// # Errors
    /// A bad spec or time zone, or options that do not suit the kind.
    pub fn parse(&self) -> Result<Schedule, RunnerError> {
        let bad = |message: String| RunnerError::Schedule {
            name: self.name.clone(),
            message,
        };
        let schedule =
            Schedule::parse(&self.spec, &self.timezone).map_err(|e| bad(e.to_string()))?;
        let backup = self.kind.is_backup();
        if !backup && self.kind != JobKind::Verification && self.kind != JobKind::Prune {
            return Err(bad(format!(
                "a schedule runs full, database, media, verification or prune jobs, not {}",
                self.kind
            )));
        }
        if self.kind == JobKind::Prune && !self.sources.is_empty() {
            return Err(bad(
                "a prune covers the whole repository: give no sources".into()
            ));
        }
        if !backup && !self.settings.retention.is_empty() {
            return Err(bad(
                "retention applies to backup schedules (full, database, media)".into(),
            ));
        }
        if !backup && self.verify {
            return Err(bad(
                "--verify applies to backup schedules; a verification verifies anyway".into(),
            ));
        }
        if self.test_restore && matches!(self.kind, JobKind::Media | JobKind::Prune) {
            return Err(bad(
                "test restores apply to full, database and verification schedules".into(),
            ));
        }
        if self.settings.read_data_subset.is_some() && self.kind != JobKind::Verification {
            return Err(bad(
                "a read-data share applies to verification schedules".into()
            ));
        }
        if self
            .settings
            .read_data_subset
            .is_some_and(|p| p == 0 || p > 100)
        {
            return Err(bad(
                "the read-data share is a percentage from 1 to 100".into()
            ));
        }
        Ok(schedule)
    }

    fn to_new(&self, next_run_at: Option<DateTime<Utc>>) -> NewSchedule {
        NewSchedule {
            name: self.name.clone(),
            kind: self.kind,
            sources: self.sources.clone(),
            spec: self.spec.clone(),
            timezone: self.timezone.clone(),
            enabled: self.enabled,
            retention: self.settings.to_json(),
            verify_after: self.verify,
            test_restore: self.test_restore,
            next_run_at,
        }
    }

    fn same_as(&self, s: &StoredSchedule) -> bool {
        self.kind == s.kind
            && self.sources == s.sources
            && self.spec == s.spec
            && self.timezone == s.timezone
            && self.enabled == s.enabled
            && self.settings == ScheduleSettings::from_json(&s.retention)
            && self.verify == s.verify_after
            && self.test_restore == s.test_restore
    }
}

/// Creates a schedule; its first run is the first fire time after `now`.
///
/// # Errors
/// A bad definition, or a name already taken ([`CatalogError::Conflict`]).
pub async fn create_schedule(
    catalog: &Catalog,
    def: &ScheduleDefinition,
    now: DateTime<Utc>,
) -> Result<StoredSchedule, RunnerError> {
    let schedule = def.parse()?;
    let next = def.enabled.then(|| schedule.next_after(now)).flatten();
    Ok(catalog.schedules().create(&def.to_new(next), now).await?)
}

/// Brings the catalog's schedules in step with the configuration: creates missing ones and
/// updates changed ones (a changed spec, time zone or a re-enabled schedule gets its next run
/// recomputed from `now`; otherwise the planned next run stays). Schedules the configuration
/// does not name (added with `strongroom schedule add`) are left alone.
///
/// # Errors
/// A bad definition or a catalog failure.
pub async fn sync_schedules(
    catalog: &Catalog,
    defs: &[ScheduleDefinition],
    now: DateTime<Utc>,
) -> Result<SyncReport, RunnerError> {
    let mut report = SyncReport::default();
    for def in defs {
        let schedule = def.parse()?;
        let existing = match catalog.schedules().find_by_name(&def.name).await? {
            Some(s) => Some(s),
            None => match create_schedule(catalog, def, now).await {
                Ok(_) => None,
                // Another instance starting at the same time created it first: bring that
                // one in step instead of failing the start-up.
                Err(RunnerError::Catalog(CatalogError::Conflict(m))) => Some(
                    catalog
                        .schedules()
                        .find_by_name(&def.name)
                        .await?
                        .ok_or(RunnerError::Catalog(CatalogError::Conflict(m)))?,
                ),
                Err(e) => return Err(e),
            },
        };
        match existing {
            None => report.created.push(def.name.clone()),
            Some(s) if def.same_as(&s) && (s.next_run_at.is_some() || !s.enabled) => {
                report.unchanged.push(def.name.clone());
            }
            Some(s) => {
                let retime = s.spec != def.spec
                    || s.timezone != def.timezone
                    || (def.enabled && !s.enabled)
                    || s.next_run_at.is_none();
                let next = if !def.enabled {
                    None
                } else if retime {
                    schedule.next_after(now)
                } else {
                    s.next_run_at
                };
                catalog
                    .schedules()
                    .update(s.id, &def.to_new(next), now)
                    .await?;
                report.updated.push(def.name.clone());
            }
        }
    }
    Ok(report)
}

/// Enables or disables a schedule by name. Enabling plans its next run from `now` (runs
/// missed while it was disabled are not made up); disabling clears it.
///
/// # Errors
/// No such schedule, or a catalog failure.
pub async fn set_schedule_enabled(
    catalog: &Catalog,
    name: &str,
    enabled: bool,
    now: DateTime<Utc>,
) -> Result<StoredSchedule, RunnerError> {
    let s = catalog
        .schedules()
        .find_by_name(name)
        .await?
        .ok_or_else(|| RunnerError::Invalid(format!("no schedule is named {name:?}")))?;
    let next = if enabled {
        Schedule::parse(&s.spec, &s.timezone)
            .map_err(|e| RunnerError::Schedule {
                name: name.to_owned(),
                message: e.to_string(),
            })?
            .next_after(now)
    } else {
        None
    };
    catalog.schedules().set_enabled(s.id, enabled, now).await?;
    catalog.schedules().set_next_run(s.id, next).await?;
    Ok(catalog.schedules().get(s.id).await?)
}

/// Queues a job.
///
/// # Errors
/// A catalog failure; an active job for the same (source, kind) is [`Enqueued::AlreadyActive`].
pub async fn enqueue_job(
    catalog: &Catalog,
    limits: &TimeLimits,
    request: &JobRequest,
    now: DateTime<Utc>,
) -> Result<Enqueued, RunnerError> {
    match catalog.jobs().enqueue(&new_job(request, limits), now).await {
        Ok(job) => Ok(Enqueued::Queued(job)),
        Err(CatalogError::AlreadyActive { existing_job_id }) => {
            Ok(Enqueued::AlreadyActive { existing_job_id })
        }
        Err(e) => Err(e.into()),
    }
}

/// Queues a run of a schedule (by the scheduler, a retry, or `strongroom schedule run`),
/// with the schedule's options, and records it as the schedule's last run.
///
/// # Errors
/// A catalog failure; an active job is [`Enqueued::AlreadyActive`].
pub async fn enqueue_scheduled(
    catalog: &Catalog,
    limits: &TimeLimits,
    schedule: &StoredSchedule,
    started_by: &str,
    planned_for: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Result<Enqueued, RunnerError> {
    let settings = ScheduleSettings::from_json(&schedule.retention);
    let options = JobOptions {
        sources: schedule.sources.clone(),
        verify: schedule.verify_after,
        test_restore: schedule.test_restore,
        schedule: Some(schedule.name.clone()),
        planned_for,
        retention: (schedule.kind.is_backup() && !settings.retention.is_empty())
            .then_some(settings.retention),
        read_data_subset: settings.read_data_subset,
        ..JobOptions::default()
    };
    let request = JobRequest {
        kind: schedule.kind,
        options,
        started_by: started_by.to_owned(),
        schedule_id: Some(schedule.id),
    };
    let answer = enqueue_job(catalog, limits, &request, now).await?;
    if let Enqueued::Queued(job) = &answer {
        catalog
            .schedules()
            .record_run(schedule.id, now, Some(job.id), None)
            .await?;
    }
    Ok(answer)
}

/// Re-enqueues an interrupted scheduled job once.
pub(super) async fn retry(runner: &Runner, job: &Job) -> Result<Option<Enqueued>, RunnerError> {
    // Options that cannot be read failed the job; a retry would fail the same way.
    let Ok(mut options) = JobOptions::from_metadata(&job.metadata) else {
        return Ok(None);
    };
    if options.retry_of.is_some() {
        return Ok(None);
    }
    options.retry_of = Some(job.id);
    let request = JobRequest {
        kind: job.kind,
        options,
        started_by: job.started_by.clone(),
        schedule_id: job.schedule_id,
    };
    let answer = runner.enqueue(&request).await?;
    // The retry becomes the schedule's last run only if the interrupted job was (not, e.g.,
    // for the retention job a scheduled backup enqueued).
    if let (Enqueued::Queued(new), Some(sid)) = (&answer, job.schedule_id) {
        match runner.catalog().schedules().get(sid).await {
            Ok(s) if s.last_job_id == Some(job.id) => {
                match runner
                    .catalog()
                    .schedules()
                    .record_run(sid, runner.now(), Some(new.id), None)
                    .await
                {
                    Ok(()) | Err(CatalogError::NotFound(_)) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            Ok(_) | Err(CatalogError::NotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Some(answer))
}

impl Runner {
    /// Marks jobs whose heartbeat is older than `now - heartbeat_timeout` as failed
    /// ("interrupted by a restart") and re-enqueues the scheduled ones once. Call at start-up
    /// and periodically (another instance's jobs are taken over this way).
    ///
    /// # Errors
    /// A catalog failure.
    pub async fn recover(&self, now: DateTime<Utc>) -> Result<RecoveryReport, RunnerError> {
        let cutoff = now - self.settings().heartbeat_timeout;
        let interrupted = self.catalog().jobs().mark_interrupted(cutoff, now).await?;
        let mut report = RecoveryReport::default();
        for job in &interrupted {
            if let Some(sid) = job.schedule_id {
                match self.catalog().schedules().get(sid).await {
                    Ok(s) if s.last_job_id == Some(job.id) => {
                        self.catalog()
                            .schedules()
                            .record_run(
                                sid,
                                s.last_run_at.unwrap_or(now),
                                Some(job.id),
                                Some(JobStatus::Failed),
                            )
                            .await?;
                    }
                    Ok(_) | Err(CatalogError::NotFound(_)) => {}
                    Err(e) => return Err(e.into()),
                }
                match retry(self, job).await? {
                    Some(Enqueued::Queued(new)) => report.retried.push((job.id, new.id)),
                    Some(Enqueued::AlreadyActive { existing_job_id }) => {
                        report.already_active.push((job.id, existing_job_id));
                    }
                    None => {}
                }
            }
        }
        report.interrupted = interrupted;
        Ok(report)
    }

    /// Enqueues the runs of every enabled schedule whose next run is due at `now`, each
    /// claimed first so that it runs once however many instances tick.
    ///
    /// # Errors
    /// A catalog failure.
    pub async fn tick(&self, now: DateTime<Utc>) -> Result<TickReport, RunnerError> {
        let mut report = TickReport::default();
        for s in self.catalog().schedules().due(now).await? {
            let Some(expected) = s.next_run_at else {
                continue;
            };
            let schedule = match Schedule::parse(&s.spec, &s.timezone) {
                Ok(p) => p,
                Err(e) => {
                    if self
                        .catalog()
                        .schedules()
                        .claim_due_run(s.id, expected, None)
                        .await?
                    {
                        report.invalid.push((s.name.clone(), e.to_string()));
                    }
                    continue;
                }
            };
            let settings = ScheduleSettings::from_json(&s.retention);
            // A run found up to a minute late is on time, not missed (ticks come every few
            // seconds): a catch-up window of 0 means "never catch up", not "never run".
            let window = settings
                .catch_up_window_seconds
                .map_or(self.settings().catch_up_window, seconds)
                .max(ON_TIME);
            // The run planned at `expected` has not happened: ask about fire times from it on.
            let last_planned = expected - Duration::microseconds(1);
            let decision = schedule.due_runs(last_planned, now, window);
            if !self
                .catalog()
                .schedules()
                .claim_due_run(s.id, expected, decision.next)
                .await?
            {
                report.claimed_elsewhere += 1;
                continue;
            }
            let Some(planned_for) = decision.planned_for.filter(|_| decision.run_now) else {
                if decision.missed_any {
                    report.missed.push(MissedRun {
                        schedule: s.name.clone(),
                        planned_for: expected,
                        next: decision.next,
                    });
                }
                continue;
            };
            let started_by = format!("schedule:{}", s.name);
            match enqueue_scheduled(
                self.catalog(),
                &self.settings().time_limits,
                &s,
                &started_by,
                Some(planned_for),
                now,
            )
            .await?
            {
                Enqueued::Queued(job) => report.enqueued.push(ScheduledRun {
                    schedule: s.name.clone(),
                    planned_for,
                    job_id: job.id,
                    collapsed: planned_for > expected,
                }),
                Enqueued::AlreadyActive { existing_job_id } => {
                    report
                        .already_active
                        .push((s.name.clone(), existing_job_id));
                }
            }
        }
        Ok(report)
    }
}
