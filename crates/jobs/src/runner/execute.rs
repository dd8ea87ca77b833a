//! The work of each kind of job, end to end: open the repository, take the right lock (and
//! reload the index under it), do the operation, update the snapshot cache, and say how it
//! ended as a [`JobOutcome`] with its counts and a `result` for the job's metadata.
//!
//! Status rules: `success` only when every part was saved and, if asked, verified and
//! test-restored; `warning` when something was saved but needs a look (unreadable files, an
//! empty media folder); `failed` otherwise, with a message that says what to do. What this
//! module must not do: finish the job or heartbeat (the runner does), keep a lock after it
//! returns or is dropped, or put a URL or other secret in a message or the metadata.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration as StdDuration, Instant};

use serde_json::{Value, json};
use strongroom_catalog::{
    Job, JobFilter, JobKind, JobOutcome, JobStatus, Progress, SnapshotFilter,
};
use strongroom_repo::archiver::Progress as Counters;
use strongroom_repo::checker::{self, ReadData};
use strongroom_repo::lock::{self, LockGuard};
use strongroom_repo::{Id, RepoError, Repository, Snapshot, prune};
use strongroom_sources::DatabaseSource;

use super::cache::record_for;
use super::options::JobOptions;
use super::retention;
use super::{Runner, RunnerError};
use crate::database::{self, DatabaseMeta, TestRestoreReport};
use crate::full::{self, BackupType, RunOptions};

/// What a running job shares with its heartbeat: live counters and the current phase.
pub(crate) struct JobCtx {
    pub counters: Arc<Counters>,
    phase: Mutex<String>,
    estimate: Option<u64>,
    started: Instant,
}

impl JobCtx {
    pub(crate) fn new(estimate: Option<u64>) -> Self {
        JobCtx {
            counters: Arc::new(Counters::default()),
            phase: Mutex::new("starting".into()),
            estimate,
            started: Instant::now(),
        }
    }

    pub(crate) fn set_phase(&self, phase: impl Into<String>) {
        *self.phase.lock().unwrap_or_else(|e| e.into_inner()) = phase.into();
    }

    /// The progress to report: the phase, bytes done, and an estimate of the total (the last
    /// successful run's size) and of the time left.
    pub(crate) fn progress(&self) -> Progress {
        let done = self.counters.bytes_read.load(Ordering::Relaxed)
            + self.counters.bytes_skipped.load(Ordering::Relaxed);
        let total = self.estimate.filter(|t| *t >= done && *t > 0);
        let elapsed = self.started.elapsed().as_secs_f64();
        let eta_seconds = total.and_then(|t| {
            if done == 0 || elapsed < 1.0 {
                return None;
            }
            #[allow(
                clippy::cast_precision_loss,
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss
            )]
            let eta = ((t - done) as f64 / (done as f64 / elapsed)).round() as u64;
            Some(eta)
        });
        Progress {
            phase: self.phase.lock().unwrap_or_else(|e| e.into_inner()).clone(),
            bytes_done: done,
            bytes_total: total,
            eta_seconds,
        }
    }
}

/// A repository lock that is released when the job ends, also when the job's future is
/// dropped (cancelled, timed out, aborted).
pub(super) struct HeldLock(Option<LockGuard>);

impl HeldLock {
    pub(super) fn guard(&self) -> Result<&LockGuard, RunnerError> {
        self.0
            .as_ref()
            .ok_or_else(|| RunnerError::Invalid("the repository lock was already released".into()))
    }

    pub(super) async fn release(mut self) -> Option<String> {
        match self.0.take() {
            Some(g) => g.release().await.err().map(|e| e.to_string()),
            None => None,
        }
    }
}

impl Drop for HeldLock {
    fn drop(&mut self) {
        if let Some(g) = self.0.take()
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            rt.spawn(async move {
                let _ = g.release().await;
            });
        }
    }
}

/// Opens the repository, takes the lock (waiting up to `lock_wait` for a conflicting one)
/// and reloads the index under it.
pub(super) async fn open_locked(
    runner: &Runner,
    exclusive: bool,
    purpose: &str,
    ctx: &JobCtx,
) -> Result<(Arc<Repository>, HeldLock), RunnerError> {
    ctx.set_phase("opening the repository");
    let repo = runner.repo().open().await?;
    let deadline = Instant::now() + runner.settings().lock_wait;
    let guard = loop {
        match lock::lock(&repo, exclusive, purpose).await {
            Ok(g) => break g,
            Err(RepoError::Locked(who)) if Instant::now() < deadline => {
                ctx.set_phase(format!("waiting for the repository lock (locked {who})"));
                tokio::time::sleep(StdDuration::from_secs(2)).await;
            }
            Err(e) => return Err(e.into()),
        }
    };
    let held = HeldLock(Some(guard));
    // Under the lock: no prune can run between this load and the work.
    repo.load_index().await?;
    Ok((repo, held))
}

pub(super) async fn run(
    runner: &Runner,
    job: &Job,
    opts: &JobOptions,
    ctx: &JobCtx,
) -> Result<JobOutcome, RunnerError> {
    match job.kind {
        JobKind::Full => backup(runner, job, opts, ctx, BackupType::Full).await,
        JobKind::Database => backup(runner, job, opts, ctx, BackupType::Database).await,
        JobKind::Media => backup(runner, job, opts, ctx, BackupType::Media).await,
        JobKind::Verification => verification(runner, job, opts, ctx).await,
        JobKind::TestRestore => test_restore_job(runner, job, opts, ctx).await,
        JobKind::Prune => prune_job(runner, opts, ctx).await,
        JobKind::Forget => forget(runner, opts, ctx).await,
        JobKind::Restore => super::restore::run(runner, job, opts, ctx).await,
        JobKind::Import => Ok(JobOutcome::failed(
            "import jobs are not run by the service yet: use `strongroom import` on the command line",
        )),
    }
}

pub(super) fn join_notes(mut message: Option<String>, notes: &[String]) -> Option<String> {
    if notes.is_empty() {
        return message;
    }
    let n = notes.join("; ");
    message = Some(match message {
        Some(m) => format!("{m}; {n}"),
        None => n,
    });
    message
}

async fn backup(
    runner: &Runner,
    job: &Job,
    opts: &JobOptions,
    ctx: &JobCtx,
    backup_type: BackupType,
) -> Result<JobOutcome, RunnerError> {
    let sources = runner.sources().select(backup_type, &opts.sources)?;
    let (repo, held) = open_locked(runner, false, "backup", ctx).await?;
    ctx.set_phase("backing up");
    let mut tags = opts.tags.clone();
    if let Some(s) = &opts.schedule {
        tags.push(format!("schedule:{s}"));
    }
    let run_opts = RunOptions {
        verify: opts.verify,
        test_restore: opts.test_restore,
        scratch: runner.sources().scratch_servers(),
        tags,
        progress: Some(Arc::clone(&ctx.counters)),
    };
    let point = full::run(&repo, held.guard()?, &sources, backup_type, &run_opts).await;
    let mut notes = Vec::new();
    if let Some(e) = held.release().await {
        notes.push(format!("the repository lock could not be released: {e}"));
    }
    let point = point?;

    ctx.set_phase("recording");
    let now = runner.now();
    let mut outcome = JobOutcome::new(JobStatus::Success);
    let (mut read, mut added, mut stored, mut files) = (0u64, 0u64, 0u64, 0u64);
    let mut empty = Vec::new();
    for part in &point.parts {
        let Some(id) = part.snapshot else { continue };
        outcome.snapshot_ids.push(id.to_hex());
        match repo.read_snapshot(&id.to_hex()).await {
            Ok((_, snap)) => {
                let s = &snap.summary;
                read += s.bytes_read;
                added += s.bytes_added;
                stored += s.bytes_stored;
                files += s.files.max(u64::from(
                    snap.kind == strongroom_repo::SnapshotKind::Stream,
                ));
                if snap.size() == 0 {
                    empty.push(format!("{} {:?}", part.kind, part.name));
                }
                let mut rec = record_for(&id, &snap);
                if let Some(err) = &part.error {
                    rec.verified_at = Some(now);
                    rec.verification = Some(
                        json!({ "ok": false, "scope": "backup", "job": job.id, "error": err }),
                    );
                } else if part.verified == Some(true) {
                    rec.verified_at = Some(now);
                    rec.verification =
                        Some(json!({ "ok": true, "scope": "snapshot", "job": job.id }));
                }
                if part.error.is_none() && part.test_restore.as_ref().is_some_and(|t| t.ok) {
                    rec.test_restored_at = Some(now);
                }
                runner.catalog().snapshots().upsert(&rec).await?;
            }
            Err(e) => notes.push(format!(
                "snapshot {} could not be read back: {e}",
                id.short()
            )),
        }
    }
    outcome.bytes_read = Some(read);
    outcome.bytes_added = Some(added);
    outcome.bytes_stored = Some(stored);
    outcome.files = Some(files);

    let failed: Vec<String> = point
        .parts
        .iter()
        .filter_map(|p| {
            p.error
                .as_ref()
                .map(|e| format!("{} {:?}: {e}", p.kind, p.name))
        })
        .collect();
    let skipped: Vec<&String> = point.parts.iter().flat_map(|p| &p.warnings).collect();
    let message = if !failed.is_empty() {
        outcome.status = JobStatus::Failed;
        Some(format!(
            "{} of {} part(s) failed: {}; earlier backups are untouched",
            failed.len(),
            point.parts.len(),
            failed.join("; ")
        ))
    } else if !empty.is_empty() {
        outcome.status = JobStatus::Warning;
        Some(format!(
            "nothing was backed up from {}: the source is empty; check that it points at the \
             right place (e.g. MEDIA_ROOT)",
            empty.join(", ")
        ))
    } else if let Some(first) = skipped.first() {
        outcome.status = JobStatus::Warning;
        Some(format!(
            "saved, but {} file(s) could not be read completely; first: {first}",
            skipped.len()
        ))
    } else {
        None
    };
    outcome.error_message = join_notes(message, &notes);
    outcome.metadata = Some(json!({ "recovery_point": point }));
    Ok(outcome)
}

/// The read-data slice of this verification run: one after the last successful run's slice
/// of the same schedule (or, unscheduled, of the same source), kept in the catalog so that it
/// survives the loss of the local disk.
async fn next_slice(runner: &Runner, job: &Job, of: u32) -> Result<u32, RunnerError> {
    let filter = JobFilter {
        kinds: vec![JobKind::Verification],
        statuses: vec![JobStatus::Success, JobStatus::Warning],
        schedule_id: job.schedule_id,
        source: job.schedule_id.is_none().then(|| job.source.clone()),
        limit: 1,
        ..JobFilter::default()
    };
    let last = runner.catalog().jobs().list(&filter).await?;
    let prev = last.first().and_then(|j| {
        let rd = j.metadata.get("result")?.get("read_data")?;
        let n = u32::try_from(rd.get("n")?.as_u64()?).ok()?;
        let prev_of = u32::try_from(rd.get("of")?.as_u64()?).ok()?;
        (prev_of == of).then_some(n)
    });
    Ok(prev.map_or(0, |n| (n + 1) % of))
}

struct RestoreResult {
    name: String,
    result: Result<TestRestoreReport, String>,
}

/// Test-restores one database snapshot (into a scratch database on `server`) and records a
/// success in the snapshot cache.
async fn prove(
    runner: &Runner,
    repo: &Arc<Repository>,
    id: &Id,
    snap: &Snapshot,
    server: Option<&DatabaseSource>,
) -> Result<Result<TestRestoreReport, String>, RunnerError> {
    let result = database::test_restore(repo, id, snap, server).await;
    if result.is_ok() {
        let now = runner.now();
        runner
            .catalog()
            .snapshots()
            .upsert(&record_for(id, snap))
            .await?;
        runner
            .catalog()
            .snapshots()
            .mark_test_restored(&id.to_hex(), now)
            .await?;
    }
    Ok(result.map_err(|e| e.to_string()))
}

/// Test-restores the newest backup of each named database (all when none are named); or,
/// when `ids` are given, exactly those snapshots (their database parts: media parts are
/// skipped, and so are databases `names` leaves out).
async fn test_restores(
    runner: &Runner,
    repo: &Arc<Repository>,
    names: &[String],
    ids: &[String],
    ctx: &JobCtx,
) -> Result<Vec<RestoreResult>, RunnerError> {
    if !ids.is_empty() {
        return test_restores_of(runner, repo, names, ids, ctx).await;
    }
    let (snaps, _) = repo.list_snapshots().await?;
    let mut out = Vec::new();
    for db in runner.sources().databases_named(names) {
        ctx.set_phase(format!("test restore of {:?}", db.name));
        let newest = snaps
            .iter()
            .rev()
            .find(|(_, s)| DatabaseMeta::of(s).is_some_and(|m| m.name == db.name));
        let Some((id, snap)) = newest else {
            out.push(RestoreResult {
                name: db.name.clone(),
                result: Err(format!(
                    "no backup of database {:?} exists yet: run a backup first",
                    db.name
                )),
            });
            continue;
        };
        let server = db.drill.as_ref().unwrap_or(&db.source);
        let result = prove(runner, repo, id, snap, Some(server)).await?;
        out.push(RestoreResult {
            name: db.name.clone(),
            result,
        });
    }
    Ok(out)
}

/// Test-restores the named snapshots (full ids, as the server sends a backup's). A snapshot
/// that is not in the repository is a failed result, not a reason to prove another one.
async fn test_restores_of(
    runner: &Runner,
    repo: &Arc<Repository>,
    names: &[String],
    ids: &[String],
    ctx: &JobCtx,
) -> Result<Vec<RestoreResult>, RunnerError> {
    let present: HashSet<String> = repo
        .storage()
        .list(strongroom_storage::Kind::Snapshot)
        .await
        .map_err(|e| RunnerError::Invalid(format!("listing snapshots: {e}")))?
        .into_iter()
        .map(|o| o.name)
        .collect();
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    for hex in ids {
        if !seen.insert(hex.as_str()) {
            continue;
        }
        let shown = hex.get(..8).unwrap_or(hex);
        let id = match Id::from_hex(hex) {
            Ok(id) if present.contains(&id.to_hex()) => id,
            Ok(_) => {
                out.push(RestoreResult {
                    name: format!("snapshot {shown}"),
                    result: Err(format!(
                        "snapshot {shown} is not in the repository (removed by retention or \
                         deleted?): nothing to test-restore"
                    )),
                });
                continue;
            }
            Err(e) => {
                out.push(RestoreResult {
                    name: format!("snapshot {shown}"),
                    result: Err(format!("{hex:?} is not a snapshot id: {e}")),
                });
                continue;
            }
        };
        let snap = match repo.read_snapshot(&id.to_hex()).await {
            Ok((_, snap)) => snap,
            Err(e) => {
                out.push(RestoreResult {
                    name: format!("snapshot {shown}"),
                    result: Err(format!("snapshot {shown} cannot be read: {e}")),
                });
                continue;
            }
        };
        // A full backup's media part, or a database the job does not name.
        let Some(meta) = DatabaseMeta::of(&snap) else {
            continue;
        };
        if !names.is_empty() && !names.contains(&meta.name) {
            continue;
        }
        ctx.set_phase(format!(
            "test restore of {:?} (snapshot {shown})",
            meta.name
        ));
        let sources = runner.sources();
        let scratch = sources.scratch_servers();
        let server = sources
            .databases
            .iter()
            .find(|d| d.name == meta.name && d.source.engine() == meta.engine)
            .map(|d| d.drill.as_ref().unwrap_or(&d.source))
            .or_else(|| scratch.iter().find(|s| s.engine() == meta.engine))
            .or_else(|| {
                sources
                    .databases
                    .iter()
                    .map(|d| &d.source)
                    .find(|s| s.engine() == meta.engine)
            });
        let result = prove(runner, repo, &id, &snap, server).await?;
        out.push(RestoreResult {
            name: meta.name.clone(),
            result,
        });
    }
    Ok(out)
}

fn restores_json(results: &[RestoreResult]) -> Value {
    Value::Array(
        results
            .iter()
            .map(|r| match &r.result {
                Ok(rep) => json!({ "database": r.name, "ok": true, "report": rep }),
                Err(e) => json!({ "database": r.name, "ok": false, "error": e }),
            })
            .collect(),
    )
}

fn restore_failures(results: &[RestoreResult]) -> Vec<String> {
    results
        .iter()
        .filter_map(|r| {
            r.result
                .as_ref()
                .err()
                .map(|e| format!("test restore of {:?}: {e}", r.name))
        })
        .collect()
}

async fn verification(
    runner: &Runner,
    job: &Job,
    opts: &JobOptions,
    ctx: &JobCtx,
) -> Result<JobOutcome, RunnerError> {
    let read = match opts.read_data_subset {
        Some(p) if p >= 100 => ReadData::All,
        Some(p) if p > 0 => {
            let of = 100u32.div_ceil(u32::from(p)).max(1);
            ReadData::Subset {
                n: next_slice(runner, job, of).await?,
                of,
            }
        }
        _ => ReadData::None,
    };
    let (repo, held) = open_locked(runner, false, "verify", ctx).await?;
    ctx.set_phase("verifying the repository");
    let report = checker::check(&repo, read).await;
    let restores = match &report {
        Ok(_) if opts.test_restore => test_restores(runner, &repo, &opts.sources, &[], ctx).await,
        _ => Ok(Vec::new()),
    };
    let mut notes = Vec::new();
    if let Some(e) = held.release().await {
        notes.push(format!("the repository lock could not be released: {e}"));
    }
    let report = report?;
    let restores = restores?;
    let now = runner.now();
    let label = match read {
        ReadData::None => "structure only".to_owned(),
        ReadData::All => "all data".to_owned(),
        ReadData::Subset { n, of } => format!("data slice {}/{of}", n + 1),
    };
    if report.is_ok() {
        ctx.set_phase("recording");
        let (snaps, _) = repo.list_snapshots().await?;
        // A sound repository does not undo a failed backup (a dump that did not test-restore
        // stays bad): those keep their failure, so retention never protects them.
        let backup_failed: HashSet<String> = runner
            .catalog()
            .snapshots()
            .list(&SnapshotFilter {
                limit: u32::MAX,
                ..SnapshotFilter::default()
            })
            .await?
            .into_iter()
            .filter(|r| {
                r.verification
                    .as_ref()
                    .is_some_and(|v| v["ok"] == json!(false) && v["scope"] == json!("backup"))
            })
            .map(|r| r.snapshot_id)
            .collect();
        for (id, snap) in &snaps {
            let mut rec = record_for(id, snap);
            if !backup_failed.contains(&rec.snapshot_id) {
                rec.verified_at = Some(now);
                rec.verification = Some(
                    json!({ "ok": true, "scope": "repository", "read_data": label, "job": job.id }),
                );
            }
            runner.catalog().snapshots().upsert(&rec).await?;
        }
    }
    let failures = restore_failures(&restores);
    let mut outcome = JobOutcome::new(JobStatus::Success);
    let message = if let Some(first) = report.errors.first() {
        outcome.status = JobStatus::Failed;
        Some(format!(
            "verification found {} error(s), the repository is damaged; first: {first}; run \
             `strongroom verify --read-data` for the full list",
            report.errors.len()
        ))
    } else if !failures.is_empty() {
        outcome.status = JobStatus::Failed;
        Some(failures.join("; "))
    } else {
        None
    };
    outcome.error_message = join_notes(message, &notes);
    outcome.bytes_read = Some(report.bytes_read);
    outcome.snapshot_ids = restores
        .iter()
        .filter_map(|r| r.result.as_ref().ok().map(|rep| rep.snapshot.to_hex()))
        .collect();
    let read_data = match read {
        ReadData::Subset { n, of } => json!({ "n": n, "of": of }),
        ReadData::All => json!("all"),
        ReadData::None => Value::Null,
    };
    outcome.metadata = Some(json!({
        "read_data": read_data,
        "scope": label,
        "errors": report.errors,
        "warnings": report.warnings,
        "snapshots": report.snapshots,
        "trees": report.trees,
        "packs_read": report.packs_read,
        "blobs_read": report.blobs_read,
        "bytes_read": report.bytes_read,
        "test_restores": restores_json(&restores),
    }));
    Ok(outcome)
}

async fn test_restore_job(
    runner: &Runner,
    _job: &Job,
    opts: &JobOptions,
    ctx: &JobCtx,
) -> Result<JobOutcome, RunnerError> {
    if opts.snapshot_ids.is_empty() && runner.sources().databases_named(&opts.sources).is_empty() {
        return Ok(JobOutcome::failed(
            "no database to test-restore: configure a [[database]] (or DATABASE_URL) or name one",
        ));
    }
    let (repo, held) = open_locked(runner, false, "test restore", ctx).await?;
    let restores = test_restores(runner, &repo, &opts.sources, &opts.snapshot_ids, ctx).await;
    let note = held.release().await;
    let restores = restores?;
    let mut failures = restore_failures(&restores);
    if restores.is_empty() {
        failures.push(format!(
            "none of the snapshots {} is a database backup{}: nothing was test-restored",
            opts.snapshot_ids.join(", "),
            if opts.sources.is_empty() {
                String::new()
            } else {
                format!(" of {}", opts.sources.join(", "))
            }
        ));
    }
    let mut outcome = JobOutcome::new(if failures.is_empty() {
        JobStatus::Success
    } else {
        JobStatus::Failed
    });
    outcome.error_message = join_notes(
        (!failures.is_empty()).then(|| failures.join("; ")),
        &note.into_iter().collect::<Vec<_>>(),
    );
    outcome.snapshot_ids = restores
        .iter()
        .filter_map(|r| r.result.as_ref().ok().map(|rep| rep.snapshot.to_hex()))
        .collect();
    outcome.metadata = Some(json!({ "test_restores": restores_json(&restores) }));
    Ok(outcome)
}

async fn prune_job(
    runner: &Runner,
    opts: &JobOptions,
    ctx: &JobCtx,
) -> Result<JobOutcome, RunnerError> {
    let (repo, held) = open_locked(runner, true, "prune", ctx).await?;
    ctx.set_phase("planning prune");
    let result = async {
        let plan = prune::plan(&repo).await?;
        let summary = json!({
            "plan": plan.describe(),
            "freed_bytes": plan.freed_bytes,
            "repack_bytes": plan.repack_bytes,
            "delete_packs": plan.delete.len() + plan.unindexed.len(),
            "repack_packs": plan.repack.len(),
            "dry_run": opts.dry_run,
        });
        if !opts.dry_run && !plan.is_empty() {
            ctx.set_phase("pruning");
            prune::execute(&repo, held.guard()?, plan).await?;
        }
        Ok::<_, RunnerError>(summary)
    }
    .await;
    let note = held.release().await;
    let summary = result?;
    let mut outcome = JobOutcome::success();
    outcome.error_message = note.map(|e| format!("the repository lock could not be released: {e}"));
    outcome.metadata = Some(summary);
    Ok(outcome)
}

async fn forget(
    runner: &Runner,
    opts: &JobOptions,
    ctx: &JobCtx,
) -> Result<JobOutcome, RunnerError> {
    let policy = opts.retention.filter(|p| !p.is_empty());
    if !opts.snapshot_ids.is_empty() {
        if policy.is_some() {
            return Ok(JobOutcome::failed(
                "a forget job names either snapshots (snapshot_ids) or a retention policy, not \
                 both; nothing was removed",
            ));
        }
        return forget_ids(runner, opts, ctx).await;
    }
    let Some(policy) = policy else {
        return Ok(JobOutcome::failed(
            "a forget job needs a retention policy (keep_last, keep_daily, …) or the snapshots \
             to remove (snapshot_ids); nothing was removed",
        ));
    };
    let names = if opts.sources.is_empty() {
        let s = runner.sources();
        match opts.backup_kind {
            Some(JobKind::Database) => s.databases.iter().map(|d| d.name.clone()).collect(),
            Some(JobKind::Media) => s.media.iter().map(|m| m.name.clone()).collect(),
            _ => s.names(),
        }
    } else {
        opts.sources.clone()
    };
    let (repo, held) = open_locked(runner, true, "retention", ctx).await?;
    ctx.set_phase("planning retention");
    let result = async {
        let plan = retention::plan(&repo, runner.catalog(), &names, &policy).await?;
        let removed = if opts.dry_run {
            Vec::new()
        } else {
            ctx.set_phase("removing snapshots");
            retention::execute(&repo, held.guard()?, runner.catalog(), &plan).await?
        };
        Ok::<_, RunnerError>((plan, removed))
    }
    .await;
    let note = held.release().await;
    let (plan, removed) = result?;
    let mut outcome = JobOutcome::success();
    outcome.error_message = note.map(|e| format!("the repository lock could not be released: {e}"));
    outcome.snapshot_ids.clone_from(&removed);
    outcome.metadata = Some(json!({
        "dry_run": opts.dry_run,
        "summary": plan.describe(),
        "plan": plan,
        "removed": removed,
    }));
    Ok(outcome)
}

/// Forget by id (a backup deleted through the API): removes exactly the named snapshots,
/// under the exclusive lock, and their cache rows. The newest verified backup of a source is
/// not protected here: deleting it is the user's explicit decision (the server asks for an
/// override). Every id must name a snapshot of the job's sources that can be read, or nothing
/// is removed.
async fn forget_ids(
    runner: &Runner,
    opts: &JobOptions,
    ctx: &JobCtx,
) -> Result<JobOutcome, RunnerError> {
    let mut wanted: Vec<Id> = Vec::new();
    for hex in &opts.snapshot_ids {
        match Id::from_hex(hex) {
            Ok(id) if !wanted.contains(&id) => wanted.push(id),
            Ok(_) => {}
            Err(e) => {
                return Ok(JobOutcome::failed(format!(
                    "{hex:?} is not a snapshot id ({e}); nothing was removed"
                )));
            }
        }
    }
    let (repo, held) = open_locked(runner, true, "forget", ctx).await?;
    ctx.set_phase("checking the snapshots to remove");
    let result = async {
        let present: HashSet<String> = repo
            .storage()
            .list(strongroom_storage::Kind::Snapshot)
            .await
            .map_err(|e| RunnerError::Invalid(format!("listing snapshots: {e}")))?
            .into_iter()
            .map(|o| o.name)
            .collect();
        let missing: Vec<String> = wanted
            .iter()
            .filter(|id| !present.contains(&id.to_hex()))
            .map(Id::to_hex)
            .collect();
        if !missing.is_empty() {
            return Ok(Err(format!(
                "no snapshot {} in the repository (already removed?); nothing was removed",
                missing.join(", ")
            )));
        }
        let mut planned = Vec::new();
        for id in &wanted {
            let (_, snap) = match repo.read_snapshot(&id.to_hex()).await {
                Ok(s) => s,
                Err(e) => {
                    return Ok(Err(format!(
                        "snapshot {} cannot be read ({e}); nothing was removed: run \
                         `strongroom verify`",
                        id.short()
                    )));
                }
            };
            let source = super::cache::source_name(&snap);
            if !opts.sources.is_empty()
                && !source.as_ref().is_some_and(|s| opts.sources.contains(s))
            {
                return Ok(Err(format!(
                    "snapshot {} belongs to {}, not to {}; nothing was removed",
                    id.short(),
                    source.as_deref().unwrap_or("no configured source"),
                    opts.sources.join(", ")
                )));
            }
            planned.push(json!({
                "id": id.to_hex(),
                "time": snap.timestamp(),
                "source": source,
            }));
        }
        let mut removed = Vec::new();
        if !opts.dry_run {
            ctx.set_phase("removing snapshots");
            held.guard()?.check().await?;
            for id in &wanted {
                let hex = id.to_hex();
                repo.delete_snapshot(id).await?;
                runner.catalog().snapshots().delete(&hex).await?;
                removed.push(hex);
            }
        }
        Ok::<_, RunnerError>(Ok((planned, removed)))
    }
    .await;
    let note = held.release().await;
    let (planned, removed) = match result? {
        Ok(done) => done,
        Err(message) => return Ok(JobOutcome::failed(message)),
    };
    let mut outcome = JobOutcome::success();
    outcome.error_message = note.map(|e| format!("the repository lock could not be released: {e}"));
    outcome.snapshot_ids.clone_from(&removed);
    outcome.metadata = Some(json!({
        "dry_run": opts.dry_run,
        "summary": format!(
            "{} snapshot(s) named by id {}",
            planned.len(),
            if opts.dry_run { "would be removed" } else { "removed" }
        ),
        "plan": { "by_id": planned },
        "removed": removed,
    }));
    Ok(outcome)
}
