//! `strongroom schedule …` and `strongroom jobs`: schedules and jobs in the catalog.
//!
//! These commands only read and write the catalog (and, for `schedule run` without
//! `--detach`, work the queue like a `serve` worker until the job ends). What they must not do:
//! decide anything with a read-then-write the catalog does not arbitrate (enqueueing answers
//! "already in progress" from the catalog's unique index), or print a source's URL.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use chrono::Utc;
use strongroom_catalog::{Job, JobFilter, JobStatus};
use strongroom_jobs::runner::{
    Enqueued, JobSources, Outcome, RetentionPolicy, ScheduleDefinition, ScheduleSettings,
    TimeLimits, create_schedule, enqueue_scheduled, job_kind, set_schedule_enabled,
};

use crate::EXIT_PARTIAL;
use crate::cli::{Global, JobsArgs, ScheduleAddArgs, ScheduleCommand};
use crate::commands::print_json;
use crate::commands::service::{load_config, open_catalog, runner};

/// `strongroom schedule …`.
pub async fn schedule(g: &Global, cmd: ScheduleCommand) -> Result<i32> {
    let config = load_config(g)?;
    let catalog = open_catalog(&config).await?;
    crate::commands::service::sync_configured(&config, &catalog).await?;
    let now = Utc::now();
    match cmd {
        ScheduleCommand::Add(a) => {
            let def = definition(&config, a)?;
            let s = create_schedule(&catalog, &def, now).await?;
            if g.json {
                print_json(&s)?;
            } else {
                println!(
                    "schedule {:?} added: {} {} ({}); next run {}",
                    s.name,
                    s.kind,
                    s.spec,
                    s.timezone,
                    s.next_run_at
                        .map_or_else(|| "none (disabled)".to_owned(), |t| t.to_rfc3339())
                );
                if config.schedule(&s.name).is_none() && config.file.is_some() {
                    println!(
                        "note: it lives in the catalog; add it to the configuration file to keep it with the rest"
                    );
                }
            }
        }
        ScheduleCommand::List => {
            let list = catalog.schedules().list().await?;
            if g.json {
                print_json(&list)?;
            } else if list.is_empty() {
                println!(
                    "no schedules (add one with `strongroom schedule add` or `strongroom setup`)"
                );
            } else {
                println!(
                    "{:<20} {:<13} {:<22} {:<16} {:<8} {:<26} {:<26}",
                    "NAME", "KIND", "WHEN", "TIME ZONE", "ENABLED", "LAST RUN", "NEXT RUN"
                );
                for s in list {
                    let last = match (s.last_run_at, s.last_outcome) {
                        (Some(t), Some(o)) => format!("{} {o}", t.format("%Y-%m-%d %H:%M")),
                        (Some(t), None) => format!("{} (running)", t.format("%Y-%m-%d %H:%M")),
                        _ => "never".to_owned(),
                    };
                    let next = s.next_run_at.map_or_else(
                        || "-".to_owned(),
                        |t| t.format("%Y-%m-%d %H:%M UTC").to_string(),
                    );
                    println!(
                        "{:<20} {:<13} {:<22} {:<16} {:<8} {:<26} {:<26}",
                        s.name,
                        s.kind.to_string(),
                        s.spec,
                        s.timezone,
                        if s.enabled { "yes" } else { "no" },
                        last,
                        next
                    );
                }
            }
        }
        ScheduleCommand::Enable { name } | ScheduleCommand::Disable { name }
            if config.schedule(&name).is_some() && config.file.is_some() =>
        {
            bail!(
                "schedule {name:?} is defined in the configuration file, which would undo this at the next start: set `enabled` there instead"
            );
        }
        ScheduleCommand::Enable { name } => {
            let s = set_schedule_enabled(&catalog, &name, true, now).await?;
            println!(
                "schedule {name:?} enabled; next run {}",
                s.next_run_at
                    .map_or_else(|| "none".to_owned(), |t| t.to_rfc3339())
            );
        }
        ScheduleCommand::Disable { name } => {
            set_schedule_enabled(&catalog, &name, false, now).await?;
            println!("schedule {name:?} disabled");
        }
        ScheduleCommand::Remove { name } => {
            if config.schedule(&name).is_some() && config.file.is_some() {
                bail!(
                    "schedule {name:?} is defined in the configuration file: remove it there (it would come back at the next start)"
                );
            }
            let s = catalog
                .schedules()
                .find_by_name(&name)
                .await?
                .with_context(|| format!("no schedule is named {name:?}"))?;
            catalog.schedules().delete(s.id).await?;
            println!("schedule {name:?} removed (its past jobs stay in `strongroom jobs`)");
        }
        ScheduleCommand::Run { name, detach } => {
            let s = catalog
                .schedules()
                .find_by_name(&name)
                .await?
                .with_context(|| format!("no schedule is named {name:?}"))?;
            let limits = TimeLimits::from(config.jobs.time_limit);
            let started_by = format!("cli (schedule {name})");
            let answer = enqueue_scheduled(&catalog, &limits, &s, &started_by, None, now).await?;
            let id = match answer {
                Enqueued::Queued(j) => {
                    if !g.json {
                        println!("job {} queued ({} of schedule {name:?})", j.id, j.kind);
                    }
                    j.id
                }
                Enqueued::AlreadyActive { existing_job_id } => {
                    if g.json {
                        print_json(&serde_json::json!({
                            "error": "already in progress",
                            "existing_job_id": existing_job_id,
                        }))?;
                    }
                    bail!(
                        "a {} job for the same sources is already in progress (job {existing_job_id}); see `strongroom jobs`",
                        s.kind
                    );
                }
            };
            if detach {
                if g.json {
                    print_json(&serde_json::json!({ "job_id": id }))?;
                }
                return Ok(0);
            }
            let job = work_until_done(g, &config, catalog.clone(), id, s.id).await?;
            return finished(g, &job);
        }
    }
    Ok(0)
}

fn definition(
    config: &strongroom_config::Config,
    a: ScheduleAddArgs,
) -> Result<ScheduleDefinition> {
    let kind: strongroom_config::ScheduleKind = serde_json::from_value(serde_json::Value::String(
        a.kind.to_ascii_lowercase(),
    ))
    .map_err(|_| {
        anyhow::anyhow!(
            "--type {:?}: expected full, database, media, verify or prune",
            a.kind
        )
    })?;
    for s in &a.sources {
        if config.source(s).is_none() {
            let names = JobSources::from_config(config)?.names();
            bail!(
                "--source {s:?}: no configured database or media folder has that name (configured: {})",
                if names.is_empty() {
                    "none".to_owned()
                } else {
                    names.join(", ")
                }
            );
        }
    }
    let read_data_subset = match a.read_data_subset.as_deref() {
        None => None,
        Some(t) => Some(
            t.trim_end_matches('%')
                .parse::<u8>()
                .ok()
                .filter(|p| (1..=100).contains(p))
                .with_context(|| {
                    format!("--read-data-subset {t:?}: give a percentage from 1% to 100%")
                })?,
        ),
    };
    let def = ScheduleDefinition {
        name: a.name,
        kind: job_kind(kind),
        sources: a.sources,
        spec: a.when,
        timezone: a.timezone.unwrap_or_else(|| config.timezone.clone()),
        enabled: !a.disabled,
        verify: a.verify,
        test_restore: a.test_restore,
        settings: ScheduleSettings {
            retention: RetentionPolicy {
                keep_last: a.keep_last,
                keep_daily: a.keep_daily,
                keep_weekly: a.keep_weekly,
                keep_monthly: a.keep_monthly,
                keep_yearly: a.keep_yearly,
                keep_days: a.keep_days,
            },
            catch_up_window_seconds: None,
            read_data_subset,
        },
    };
    def.parse()?;
    Ok(def)
}

/// Works the queue (like a `serve` worker) until job `id` has ended, then runs what it
/// queued for its schedule (retention after a backup); when another worker runs a job,
/// waits for it.
async fn work_until_done(
    g: &Global,
    config: &strongroom_config::Config,
    catalog: strongroom_catalog::Catalog,
    id: i64,
    schedule_id: i64,
) -> Result<Job> {
    let runner = runner(g, config, catalog.clone()).await?;
    let job = work_one(&runner, &catalog, id).await?;
    let follow_ups = catalog
        .jobs()
        .list(&JobFilter {
            schedule_id: Some(schedule_id),
            statuses: vec![JobStatus::Queued],
            created_from: Some(job.created_at),
            ..JobFilter::default()
        })
        .await?;
    for f in follow_ups {
        if !g.quiet && !g.json {
            eprintln!(
                "running job {} ({} {}) queued by job {id}",
                f.id, f.kind, f.source
            );
        }
        let ended = work_one(&runner, &catalog, f.id).await?;
        if !g.quiet && !g.json {
            eprintln!(
                "job {} {}{}",
                ended.id,
                ended.status,
                ended
                    .error_message
                    .map(|m| format!(": {m}"))
                    .unwrap_or_default()
            );
        }
    }
    Ok(job)
}

/// Works the queue until job `id` has ended.
async fn work_one(
    runner: &strongroom_jobs::runner::Runner,
    catalog: &strongroom_catalog::Catalog,
    id: i64,
) -> Result<Job> {
    loop {
        let job = catalog.jobs().get(id).await?;
        if job.status.is_final() {
            return Ok(job);
        }
        if job.status == JobStatus::Queued {
            if runner.run_one().await? == Outcome::EmptyQueue {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        } else {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

/// Prints how a job ended; the exit code: 0 success, 3 warning, 1 otherwise.
fn finished(g: &Global, job: &Job) -> Result<i32> {
    if g.json {
        print_json(job)?;
    } else {
        print_job(job);
    }
    Ok(match job.status {
        JobStatus::Success => 0,
        JobStatus::Warning => EXIT_PARTIAL,
        _ => 1,
    })
}

fn print_job(j: &Job) {
    println!("job {}: {} {} — {}", j.id, j.kind, j.source, j.status);
    println!("  started by  {}", j.started_by);
    println!("  queued      {}", j.created_at.to_rfc3339());
    if let Some(t) = j.started_at {
        println!("  started     {}", t.to_rfc3339());
    }
    if let Some(t) = j.completed_at {
        println!("  ended       {}", t.to_rfc3339());
    }
    if let Some(d) = j.duration_seconds {
        println!("  duration    {d:.1} s");
    }
    if let Some(b) = j.bytes_read {
        println!("  read        {}", crate::output::size(b));
    }
    if let Some(b) = j.bytes_added {
        println!("  added       {}", crate::output::size(b));
    }
    if let Some(b) = j.bytes_stored {
        println!("  stored      {}", crate::output::size(b));
    }
    if let Some(n) = j.files {
        println!("  files       {n}");
    }
    for s in &j.snapshot_ids {
        println!("  snapshot    {s}");
    }
    if let Some(p) = &j.progress
        && j.status == JobStatus::InProgress
    {
        println!(
            "  progress    {}",
            serde_json::to_string(p).unwrap_or_default()
        );
    }
    if let Some(m) = &j.error_message {
        println!("  message     {m}");
    }
}

/// `strongroom jobs`.
pub async fn jobs(g: &Global, a: JobsArgs) -> Result<i32> {
    let config = load_config(g)?;
    let catalog = open_catalog(&config).await?;
    if let Some(id) = a.cancel {
        let job = catalog
            .jobs()
            .request_cancel(id, Utc::now())
            .await
            .with_context(|| format!("cancelling job {id}"))?;
        if g.json {
            print_json(&job)?;
        } else if job.status == JobStatus::Cancelled {
            println!("job {id} cancelled (it had not started)");
        } else {
            println!("job {id}: cancellation requested; its worker stops it at its next heartbeat");
        }
        return Ok(0);
    }
    if let Some(id) = a.show {
        let job = catalog
            .jobs()
            .get(id)
            .await
            .with_context(|| format!("job {id}"))?;
        if g.json {
            print_json(&job)?;
        } else {
            print_job(&job);
        }
        return Ok(0);
    }
    let mut filter = JobFilter {
        limit: a.limit,
        ..JobFilter::default()
    };
    if let Some(s) = a.status.as_deref() {
        filter.statuses = vec![s.parse::<JobStatus>().map_err(|_| {
            anyhow::anyhow!(
                "--status {s:?}: expected queued, in_progress, success, warning, failed or cancelled"
            )
        })?];
    }
    let list = catalog.jobs().list(&filter).await?;
    if g.json {
        print_json(&list)?;
        return Ok(0);
    }
    if list.is_empty() {
        println!("no jobs");
        return Ok(0);
    }
    println!(
        "{:>6} {:<13} {:<11} {:<18} {:<20} {:<17} {:>9}  MESSAGE",
        "ID", "KIND", "STATUS", "SOURCE", "STARTED BY", "QUEUED (UTC)", "DURATION"
    );
    for j in list {
        let duration = j
            .duration_seconds
            .map_or_else(|| "-".to_owned(), |d| format!("{d:.1}s"));
        let mut msg = j.error_message.clone().unwrap_or_default();
        if msg.chars().count() > 80 {
            msg = msg.chars().take(79).collect::<String>() + "…";
        }
        println!(
            "{:>6} {:<13} {:<11} {:<18} {:<20} {:<17} {:>9}  {msg}",
            j.id,
            j.kind.to_string(),
            j.status.to_string(),
            j.source,
            j.started_by,
            j.created_at.format("%Y-%m-%d %H:%M"),
            duration
        );
    }
    Ok(0)
}
