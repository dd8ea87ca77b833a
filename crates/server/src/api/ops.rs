//! The operations behind both APIs (v1 and the clinic's compatibility layer): enqueue a
//! backup, a verification, a test restore, a restore, a deletion; stream a download. Each
//! checks its input against the configuration and the catalog, writes the audit log, and
//! returns at once: the work itself is a durable job run by the workers.
//!
//! Job conventions shared with the workers (`strongroom-jobs`, whose runner reads a job's
//! metadata as `JobOptions` in `crates/jobs/src/runner/options.rs`; this crate must not depend
//! on it, so `tests/job_metadata.rs` pins the shape): `source` is the runner's `source_key`
//! (`all` for every configured source of the kind, one source name, or several sorted and
//! joined by `+`; `repository` for verification and prune); `metadata.sources` lists the
//! names, `metadata.verify` / `metadata.test_restore` ask for the extra steps, a scheduled run
//! carries `schedule` and `retention`, a verification may carry `read_data_subset`, a forget
//! carries `backup_kind`; follow-up jobs (verification, test_restore, restore, forget) also
//! carry `metadata.target_job_id` and `metadata.snapshot_ids`; a restore carries
//! `metadata.target` and `metadata.safety_backup`. A value of the wrong type makes the runner
//! fail the job ("job options unreadable"), so only the runner's types are written under its
//! keys.
//! Must not run any of that work here.

use std::net::IpAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use strongroom_catalog::{CatalogError, Job, JobFilter, JobKind, JobStatus, NewJob};

use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::repo::ChannelWriter;
use crate::state::AppState;

/// A backup to start.
#[derive(Debug, Clone)]
pub(crate) struct BackupRequest {
    pub(crate) kind: JobKind,
    pub(crate) sources: Vec<String>,
    pub(crate) verify: bool,
    pub(crate) test_restore: bool,
    pub(crate) schedule_id: Option<i64>,
    pub(crate) extra: Value,
}

fn names_of(state: &AppState, kind: JobKind) -> Vec<String> {
    let c = state.config();
    let dbs = c.databases.iter().map(|d| d.name.clone());
    let media = c.media.iter().map(|m| m.name.clone());
    match kind {
        JobKind::Database | JobKind::TestRestore => dbs.collect(),
        JobKind::Media => media.collect(),
        _ => dbs.chain(media).collect(),
    }
}

/// The catalog source key of a job of `kind` over `names`, exactly as the job runner computes
/// it (`strongroom_jobs::runner::options::source_key`): `repository` for repository-wide kinds
/// (verification, prune), else the sorted, de-duplicated names joined by `+`, or `all` when
/// none are named. The catalog's "one active job per (source, kind)" rule is about this key,
/// so the server and the runner must agree on it.
pub(crate) fn job_source_key(kind: JobKind, names: &[String]) -> String {
    match kind {
        JobKind::Verification | JobKind::Prune => "repository".to_owned(),
        _ => {
            let mut n: Vec<&str> = names.iter().map(String::as_str).collect();
            n.sort_unstable();
            n.dedup();
            if n.is_empty() {
                "all".to_owned()
            } else {
                n.join("+")
            }
        }
    }
}

/// The source names a job's metadata lists (`metadata.sources`), ignoring anything that is
/// not a string.
pub(crate) fn sources_of(job: &Job) -> Vec<String> {
    job.metadata
        .get("sources")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The job source key for these sources of `kind`, checked against the configuration.
pub(crate) fn source_key(
    state: &AppState,
    kind: JobKind,
    sources: &[String],
) -> ApiResult<(String, Vec<String>)> {
    let known = names_of(state, kind);
    let what = match kind {
        JobKind::Database => "database",
        JobKind::Media => "media folder",
        _ => "source",
    };
    if sources.is_empty() {
        if known.is_empty() && kind.is_backup() {
            return Err(ApiError::invalid(format!(
                "no {what} is configured, so there is nothing to back up"
            ))
            .with_extra(json!({"reason": "no_sources"})));
        }
        return Ok((job_source_key(kind, &[]), Vec::new()));
    }
    let mut names: Vec<String> = sources.iter().map(|s| s.trim().to_owned()).collect();
    names.sort();
    names.dedup();
    for n in &names {
        if !known.contains(n) {
            return Err(ApiError::invalid(format!(
                "no {what} is named {n:?} (configured: {})",
                if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                }
            )));
        }
    }
    Ok((job_source_key(kind, &names), names))
}

/// The run-time limit of a job of `kind`, from `[jobs.time_limit]`.
pub(crate) fn time_limit(state: &AppState, kind: JobKind) -> u64 {
    let t = &state.config().jobs.time_limit;
    match kind {
        JobKind::Full | JobKind::Database | JobKind::Media | JobKind::Import => t.backup.as_secs(),
        JobKind::Verification | JobKind::TestRestore => t.verify.as_secs(),
        JobKind::Restore => t.restore.as_secs(),
        JobKind::Prune | JobKind::Forget => t.prune.as_secs(),
    }
}

fn already(kind: JobKind, source: &str, existing: i64) -> ApiError {
    ApiError::conflict(
        "already_in_progress",
        format!("a {kind} job for {source} is already queued or in progress (job {existing})"),
    )
    .with_extra(json!({"existing_job_id": existing}))
}

async fn enqueue(state: &AppState, new: NewJob) -> ApiResult<Job> {
    match state.catalog().jobs().enqueue(&new, state.now()).await {
        Ok(j) => {
            state.invalidate_caches();
            Ok(j)
        }
        Err(CatalogError::AlreadyActive { existing_job_id }) => {
            Err(already(new.kind, &new.source, existing_job_id))
        }
        Err(e) => Err(e.into()),
    }
}

/// Queues a backup job and audits it.
pub(crate) async fn enqueue_backup(
    state: &AppState,
    p: &Principal,
    ip: Option<IpAddr>,
    req: BackupRequest,
) -> ApiResult<Job> {
    if !req.kind.is_backup() {
        return Err(ApiError::invalid(
            "kind must be one of full, database, media",
        ));
    }
    let (source, names) = source_key(state, req.kind, &req.sources)?;
    let mut metadata = json!({
        "sources": names,
        "verify": req.verify,
        "test_restore": req.test_restore,
        "requested_via": p.via(),
    });
    if let (Some(m), Value::Object(extra)) = (metadata.as_object_mut(), req.extra) {
        m.extend(extra);
    }
    let new = NewJob {
        kind: req.kind,
        source: source.clone(),
        started_by: p.username.clone(),
        schedule_id: req.schedule_id,
        time_limit_seconds: Some(time_limit(state, req.kind)),
        metadata,
    };
    let job = enqueue(state, new).await?;
    state
        .audit(&p.actor(), "backup.create", Some(job.id.to_string()),
            json!({"kind": req.kind, "source": source, "via": p.via(), "schedule_id": req.schedule_id}), ip)
        .await;
    Ok(job)
}

/// The job, or 404.
pub(crate) async fn get_job(state: &AppState, id: i64) -> ApiResult<Job> {
    match state.catalog().jobs().get(id).await {
        Ok(j) => Ok(state.redact_job(j)),
        Err(CatalogError::NotFound(_)) => Err(ApiError::not_found(format!(
            "no backup or job with id {id}"
        ))),
        Err(e) => Err(e.into()),
    }
}

/// 409 unless the job is a finished backup with content.
pub(crate) fn ensure_content(job: &Job) -> ApiResult<()> {
    if !job.kind.is_backup() && job.kind != JobKind::Import {
        return Err(ApiError::conflict(
            "not_a_backup",
            format!("job {} is a {} job, not a backup", job.id, job.kind),
        ));
    }
    if !matches!(job.status, JobStatus::Success | JobStatus::Warning) || job.snapshot_ids.is_empty()
    {
        return Err(ApiError::conflict(
            "incomplete",
            format!(
                "backup {} is {} and has no content to work on",
                job.id, job.status
            ),
        ));
    }
    Ok(())
}

/// Queues a verification or a test restore of a finished backup.
pub(crate) async fn enqueue_followup(
    state: &AppState,
    p: &Principal,
    ip: Option<IpAddr>,
    job: &Job,
    kind: JobKind,
    extra: Value,
) -> ApiResult<Job> {
    ensure_content(job)?;
    if kind == JobKind::TestRestore && job.kind == JobKind::Media {
        return Err(ApiError::conflict(
            "not_a_database",
            "a test restore proves database backups; this is a media backup",
        ));
    }
    let mut sources = sources_of(job);
    if kind == JobKind::TestRestore && !sources.is_empty() {
        // A test restore proves databases: keep the backup's database sources only (an empty
        // list would mean "every database", which this backup may not cover).
        let dbs: Vec<String> = state
            .config()
            .databases
            .iter()
            .map(|d| d.name.clone())
            .collect();
        sources.retain(|s| dbs.contains(s));
        if sources.is_empty() {
            return Err(ApiError::conflict(
                "not_a_database",
                "a test restore proves database backups; this backup holds no database",
            ));
        }
    }
    // The keys are the job runner's `JobOptions` (crates/jobs/src/runner/options.rs): it reads
    // `sources` (and `read_data_subset` for a verification) and ignores the others, which say
    // what the job is about.
    let mut metadata = json!({
        "target_job_id": job.id, "snapshot_ids": job.snapshot_ids, "sources": sources,
        "requested_via": p.via(),
    });
    if let (Some(m), Value::Object(extra)) = (metadata.as_object_mut(), extra) {
        m.extend(extra);
    }
    let new = NewJob {
        kind,
        source: job_source_key(kind, &sources),
        started_by: p.username.clone(),
        schedule_id: None,
        time_limit_seconds: Some(time_limit(state, kind)),
        metadata,
    };
    let queued = enqueue(state, new).await?;
    let action = if kind == JobKind::Verification {
        "backup.verify"
    } else {
        "backup.test_restore"
    };
    state
        .audit(
            &p.actor(),
            action,
            Some(job.id.to_string()),
            json!({"job_id": queued.id, "via": p.via()}),
            ip,
        )
        .await;
    Ok(queued)
}

/// Queues a restore job.
pub(crate) async fn enqueue_restore(
    state: &AppState,
    p: &Principal,
    ip: Option<IpAddr>,
    job: &Job,
    target: Value,
) -> ApiResult<Job> {
    ensure_content(job)?;
    let replace = target
        .get("replace")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let new = NewJob {
        kind: JobKind::Restore,
        source: job.source.clone(),
        started_by: p.username.clone(),
        schedule_id: None,
        time_limit_seconds: Some(time_limit(state, JobKind::Restore)),
        metadata: json!({
            "target_job_id": job.id,
            "snapshot_ids": job.snapshot_ids,
            "target": target,
            "safety_backup": replace,
            "confirmed_by": p.username,
            "requested_via": p.via(),
        }),
    };
    let queued = enqueue(state, new).await?;
    state
        .audit(
            &p.actor(),
            "backup.restore",
            Some(job.id.to_string()),
            json!({"job_id": queued.id, "target": target, "via": p.via()}),
            ip,
        )
        .await;
    Ok(queued)
}

/// True when `job` is the newest verified backup of its source and kind: a success that was
/// verified after it ran, whose snapshot the cache shows verified, or that a successful
/// verification job targeted.
pub(crate) async fn is_newest_verified(state: &AppState, job: &Job) -> ApiResult<bool> {
    if !job.kind.is_backup() || job.status != JobStatus::Success {
        return Ok(false);
    }
    let jobs = state.catalog().jobs();
    let verifications = jobs
        .list(&JobFilter {
            kinds: vec![JobKind::Verification],
            statuses: vec![JobStatus::Success],
            limit: 1000,
            ..JobFilter::default()
        })
        .await?;
    let verified_targets: std::collections::HashSet<i64> = verifications
        .iter()
        .filter_map(|v| v.metadata.get("target_job_id").and_then(Value::as_i64))
        .collect();
    let candidates = jobs
        .list(&JobFilter {
            kinds: vec![job.kind],
            statuses: vec![JobStatus::Success],
            source: Some(job.source.clone()),
            limit: 200,
            ..JobFilter::default()
        })
        .await?;
    for c in candidates {
        let mut verified = c
            .metadata
            .get("verify")
            .and_then(Value::as_bool)
            .unwrap_or(false)
            || verified_targets.contains(&c.id);
        if !verified {
            for sid in &c.snapshot_ids {
                if let Some(s) = state.catalog().snapshots().get(sid).await?
                    && s.verified_at.is_some()
                {
                    verified = true;
                    break;
                }
            }
        }
        if verified {
            return Ok(c.id == job.id);
        }
    }
    Ok(false)
}

/// Deletes a backup: refuses an active job and, without `override_`, the newest verified
/// backup of its source; queues a `forget` job for its snapshots; removes the job row.
/// Returns the forget job's id, if one was needed.
pub(crate) async fn delete_backup(
    state: &AppState,
    p: &Principal,
    ip: Option<IpAddr>,
    job: &Job,
    override_: bool,
) -> ApiResult<Option<i64>> {
    if job.status.is_active() {
        return Err(ApiError::conflict(
            "active",
            format!(
                "job {} is {}; cancel it before deleting it",
                job.id, job.status
            ),
        ));
    }
    if !override_ && is_newest_verified(state, job).await? {
        return Err(ApiError::conflict(
            "newest_verified",
            format!(
                "backup {} is the newest verified backup of {}; deleting it needs ?override=true",
                job.id, job.source
            ),
        ));
    }
    let mut forget_id = None;
    if !job.snapshot_ids.is_empty() {
        // A forget job in the runner's terms (`JobOptions`: `sources`, `backup_kind`), plus
        // the snapshots to remove. The source key is the runner's for these sources, which is
        // the backup's own key.
        let sources = sources_of(job);
        let new = NewJob {
            kind: JobKind::Forget,
            source: job_source_key(JobKind::Forget, &sources),
            started_by: p.username.clone(),
            schedule_id: None,
            time_limit_seconds: Some(time_limit(state, JobKind::Forget)),
            metadata: json!({
                "sources": sources,
                "backup_kind": job.kind,
                "target_job_id": job.id,
                "snapshot_ids": job.snapshot_ids,
                "reason": "deleted through the API",
            }),
        };
        forget_id = Some(enqueue(state, new).await?.id);
    }
    match state.catalog().jobs().delete(job.id).await {
        Ok(()) | Err(CatalogError::NotFound(_)) => {}
        Err(e) => return Err(e.into()),
    }
    state.invalidate_caches();
    state
        .audit(&p.actor(), "backup.delete", Some(job.id.to_string()),
            json!({"override": override_, "forget_job_id": forget_id, "snapshot_ids": job.snapshot_ids, "via": p.via()}), ip)
        .await;
    Ok(forget_id)
}

/// Streams the export of one snapshot of a finished backup (never buffered whole).
pub(crate) async fn download(
    state: &AppState,
    p: &Principal,
    ip: Option<IpAddr>,
    job: &Job,
    snapshot: Option<&str>,
) -> ApiResult<Response> {
    ensure_content(job)?;
    let snap_id = match snapshot {
        Some(s) => job
            .snapshot_ids
            .iter()
            .find(|id| id.starts_with(s) && !s.is_empty())
            .cloned()
            .ok_or_else(|| {
                ApiError::not_found(format!("backup {} has no snapshot {s:?}", job.id))
            })?,
        None if job.snapshot_ids.len() == 1 => job.snapshot_ids[0].clone(),
        None => {
            return Err(ApiError::conflict(
                "several_snapshots",
                format!(
                    "backup {} has {} parts; choose one with ?snapshot=<id>",
                    job.id,
                    job.snapshot_ids.len()
                ),
            )
            .with_extra(json!({"snapshot_ids": job.snapshot_ids})));
        }
    };
    let Some(repo) = state.inner.repo.clone() else {
        return Err(ApiError::unavailable(
            "the repository is not available to this server",
        ));
    };
    let info = match repo.snapshot(&snap_id).await {
        Ok(i) => i,
        Err(crate::repo::RepoAccessError::NotFound) => {
            return Err(ApiError::not_found(
                "the backup's content is not in the repository (removed by retention?)",
            ));
        }
        Err(e) => return Err(state.internal(e)),
    };
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(4);
    let err_tx = tx.clone();
    let writer = ChannelWriter {
        tx,
        buf: Vec::with_capacity(64 * 1024),
    };
    let task_state = state.clone();
    let id = info.id.clone();
    let repo2: Arc<dyn crate::repo::RepoAccess> = repo;
    tokio::spawn(async move {
        if let Err(e) = repo2.export(&id, Box::new(writer)).await {
            tracing::error!(error = %task_state.redact(&e.to_string()), snapshot = %id, "download failed midway");
            let _ = err_tx
                .send(Err(std::io::Error::other(
                    "the export failed; see the server log",
                )))
                .await;
        }
    });
    let stream = futures::stream::poll_fn(move |cx| rx.poll_recv(cx));
    state
        .audit(
            &p.actor(),
            "backup.download",
            Some(job.id.to_string()),
            json!({"snapshot_id": info.id, "via": p.via()}),
            ip,
        )
        .await;
    let name = info.download_name();
    let mut resp = (StatusCode::OK, Body::from_stream(stream)).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(info.content_type()),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(resp)
}
