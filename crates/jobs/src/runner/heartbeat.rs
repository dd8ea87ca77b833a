//! The heartbeat of a running job: every `heartbeat_interval` (real time) it records a sign
//! of life with the job's progress, publishes the progress to subscribers, and tells the job
//! to stop when a cancellation was requested, the lease was lost or the time limit (clock
//! time since the job started) has passed.
//!
//! What it must not do: finish the job (the runner does, once the work has stopped) or give
//! up on a transient catalog error (the next beat tries again; if the catalog stays away for
//! longer than the heartbeat timeout, another instance may take the job over, and the next
//! beat that gets through learns the lease was lost).

use std::sync::Arc;

use strongroom_catalog::{CatalogError, Job, JobStatus};
use tokio::sync::watch;
use tokio::time::MissedTickBehavior;

use super::execute::JobCtx;
use super::{Runner, StopReason, seconds};

pub(super) async fn run(
    runner: Runner,
    job: Job,
    limit: Option<u64>,
    ctx: Arc<JobCtx>,
    stop: watch::Sender<Option<StopReason>>,
) {
    let mut interval = tokio::time::interval(runner.settings().heartbeat_interval);
    interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let started = job.started_at.unwrap_or_else(|| runner.now());
    loop {
        interval.tick().await;
        let now = runner.now();
        if let Some(limit) = limit
            && now - started >= seconds(limit)
        {
            stop.send_replace(Some(StopReason::TimeLimit(limit)));
            return;
        }
        let progress = ctx.progress();
        match runner
            .catalog()
            .jobs()
            .heartbeat(job.id, runner.worker_id(), Some(&progress), now)
            .await
        {
            Ok(j) if j.cancel_requested => {
                stop.send_replace(Some(StopReason::Cancelled));
                return;
            }
            Ok(_) => runner.emit(&job, JobStatus::InProgress, Some(progress), None),
            Err(CatalogError::LeaseLost { .. } | CatalogError::NotFound(_)) => {
                stop.send_replace(Some(StopReason::LeaseLost));
                return;
            }
            Err(e) => runner.emit(
                &job,
                JobStatus::InProgress,
                None,
                Some(format!("heartbeat not recorded (will retry): {e}")),
            ),
        }
    }
}
