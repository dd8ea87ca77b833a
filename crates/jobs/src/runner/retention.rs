//! Retention for scheduled backups: which snapshots of each source a policy removes, planned
//! first (one [`RetentionPlan`], shown by a dry run) and executed second (exactly the plan's
//! removals, under the exclusive lock).
//!
//! The rules, per configured source (database or media folder):
//! - The **protected** snapshot is the newest one with a successful verification or test
//!   restore (from the catalog); when none was ever verified, the newest successful one. It
//!   is always kept, whatever the policy says.
//! - **Bad** snapshots (empty, or whose backup or verification failed) never count towards the
//!   policy, so a series of failed or empty runs cannot push good backups out of `keep_last`
//!   or `keep_daily`. A bad snapshot newer than the protected one is left alone; an older one
//!   is removed.
//! - The policy (`keep_last`, `keep_daily`, …) is applied to the good snapshots, newest
//!   first, with the engine's rules ([`strongroom_repo::retention::apply`]); the newest good
//!   snapshot is always kept too.
//! - An empty policy removes nothing.
//!
//! What it must not do: remove anything that is not in the plan, plan with a snapshot it
//! could not read (one unreadable snapshot file aborts the plan: nothing is removed on doubt),
//! or touch snapshots that belong to no configured source (manual CLI backups).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use strongroom_catalog::{Catalog, SnapshotFilter, SnapshotRecord};
use strongroom_repo::lock::LockGuard;
use strongroom_repo::{Id, Repository, Snapshot};

use super::RunnerError;
use super::cache::source_name;
use super::options::RetentionPolicy;

/// One snapshot of a source, with what the catalog knows about it.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// Its id.
    pub id: Id,
    /// The snapshot.
    pub snapshot: Snapshot,
    /// A verification or test restore of it succeeded.
    pub verified: bool,
    /// Its backup, verification or test restore failed.
    pub failed: bool,
}

impl Candidate {
    /// The candidate for a snapshot, judged by its cache row (if any).
    #[must_use]
    pub fn new(id: Id, snapshot: Snapshot, record: Option<&SnapshotRecord>) -> Self {
        let ok = record
            .and_then(|r| r.verification.as_ref())
            .and_then(|v| v.get("ok"))
            .and_then(Value::as_bool);
        let verified = record.is_some_and(|r| {
            (r.verified_at.is_some() && ok == Some(true)) || r.test_restored_at.is_some()
        });
        Candidate {
            id,
            snapshot,
            verified: verified && ok != Some(false),
            failed: ok == Some(false),
        }
    }

    /// When it was taken.
    #[must_use]
    pub fn time(&self) -> DateTime<Utc> {
        self.snapshot.timestamp()
    }

    /// Nothing was backed up.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.snapshot.size() == 0
    }

    fn is_good(&self) -> bool {
        !self.failed && !self.is_empty()
    }
}

/// One snapshot in a plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlannedSnapshot {
    /// The snapshot id (hex).
    pub id: String,
    /// When it was taken.
    pub time: DateTime<Utc>,
    /// Why it is kept (e.g. "daily", "newest verified") or removed (e.g. "not kept by the
    /// policy", "empty").
    pub reasons: Vec<String>,
}

/// The plan for one source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SourcePlan {
    /// The source name.
    pub source: String,
    /// The snapshot kept whatever the policy says.
    pub protected: Option<String>,
    /// Snapshots kept, newest first.
    pub keep: Vec<PlannedSnapshot>,
    /// Snapshots removed, newest first.
    pub remove: Vec<PlannedSnapshot>,
}

/// What a retention run removes; a dry run shows it, a real run executes exactly it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RetentionPlan {
    /// The policy applied.
    pub policy: RetentionPolicy,
    /// One plan per source.
    pub sources: Vec<SourcePlan>,
}

impl RetentionPlan {
    /// The ids of every snapshot to remove.
    #[must_use]
    pub fn remove_ids(&self) -> Vec<String> {
        self.sources
            .iter()
            .flat_map(|s| s.remove.iter().map(|p| p.id.clone()))
            .collect()
    }

    /// A one-line summary.
    #[must_use]
    pub fn describe(&self) -> String {
        let keep: usize = self.sources.iter().map(|s| s.keep.len()).sum();
        let remove: usize = self.sources.iter().map(|s| s.remove.len()).sum();
        format!(
            "{}: {keep} snapshot(s) kept, {remove} removed, over {} source(s)",
            self.policy.describe(),
            self.sources.len()
        )
    }
}

fn newer(a: &Candidate, b: &Candidate) -> bool {
    (a.time(), a.id) > (b.time(), b.id)
}

/// Plans one source (pure).
#[must_use]
pub fn plan_source(source: &str, policy: &RetentionPolicy, candidates: &[Candidate]) -> SourcePlan {
    let mut all: Vec<&Candidate> = candidates.iter().collect();
    all.sort_by_key(|c| std::cmp::Reverse((c.time(), c.id)));
    let good: Vec<&Candidate> = all.iter().copied().filter(|c| c.is_good()).collect();
    let protected = good
        .iter()
        .copied()
        .find(|c| c.verified)
        .or_else(|| good.first().copied());

    // The policy sees the good snapshots only, as one group (a host rename on a platform
    // restart must not split a source in two).
    let policy_input: Vec<(Id, Snapshot)> = good
        .iter()
        .map(|c| {
            let mut s = c.snapshot.clone();
            s.host = String::new();
            s.source = source.to_owned();
            (c.id, s)
        })
        .collect();
    let empty_policy = policy.is_empty();
    let decisions: HashMap<Id, Vec<String>> = if empty_policy {
        HashMap::new()
    } else {
        strongroom_repo::retention::apply(&policy.to_policy(), &policy_input)
            .into_iter()
            .map(|d| (d.id, d.reasons))
            .collect()
    };

    let mut plan = SourcePlan {
        source: source.to_owned(),
        protected: protected.map(|p| p.id.to_hex()),
        keep: Vec::new(),
        remove: Vec::new(),
    };
    for c in all {
        let mut reasons = Vec::new();
        if protected.is_some_and(|p| p.id == c.id) {
            reasons.push(if c.verified {
                "newest verified".to_owned()
            } else {
                "newest successful (none verified)".to_owned()
            });
        }
        if empty_policy {
            reasons.push("no policy".to_owned());
        } else if c.is_good() {
            reasons.extend(decisions.get(&c.id).cloned().unwrap_or_default());
        } else if protected.is_none_or(|p| newer(c, p)) {
            reasons.push("newer than the newest verified backup".to_owned());
        }
        let planned = PlannedSnapshot {
            id: c.id.to_hex(),
            time: c.time(),
            reasons,
        };
        if planned.reasons.is_empty() {
            let why = if c.failed {
                "failed"
            } else if c.is_empty() {
                "empty"
            } else {
                "not kept by the policy"
            };
            plan.remove.push(PlannedSnapshot {
                reasons: vec![why.to_owned()],
                ..planned
            });
        } else {
            plan.keep.push(planned);
        }
    }
    plan
}

/// Plans retention for the named sources from the repository's snapshots and the
/// catalog's knowledge of their verifications.
///
/// # Errors
/// When a snapshot cannot be read or listed (nothing is planned on doubt), or the catalog
/// fails.
pub async fn plan(
    repo: &Repository,
    catalog: &Catalog,
    sources: &[String],
    policy: &RetentionPolicy,
) -> Result<RetentionPlan, RunnerError> {
    let (snaps, warnings) = repo.list_snapshots().await?;
    if let Some(w) = warnings.first() {
        return Err(RunnerError::Invalid(format!(
            "retention not applied: a snapshot could not be read ({w}); run `strongroom verify`"
        )));
    }
    let records: HashMap<String, SnapshotRecord> = catalog
        .snapshots()
        .list(&SnapshotFilter {
            limit: u32::MAX,
            ..SnapshotFilter::default()
        })
        .await?
        .into_iter()
        .map(|r| (r.snapshot_id.clone(), r))
        .collect();
    let mut out = RetentionPlan {
        policy: *policy,
        sources: Vec::new(),
    };
    for source in sources {
        let candidates: Vec<Candidate> = snaps
            .iter()
            .filter(|(_, s)| source_name(s).as_deref() == Some(source.as_str()))
            .map(|(id, s)| Candidate::new(*id, s.clone(), records.get(&id.to_hex())))
            .collect();
        out.sources.push(plan_source(source, policy, &candidates));
    }
    Ok(out)
}

/// Removes exactly the plan's snapshots (and their cache rows). Returns the ids removed.
///
/// # Errors
/// When the lock was lost (nothing is removed) or a removal fails (the ones before it are
/// done; the plan can be made again).
pub async fn execute(
    repo: &Repository,
    lock: &LockGuard,
    catalog: &Catalog,
    plan: &RetentionPlan,
) -> Result<Vec<String>, RunnerError> {
    lock.check().await?;
    let mut removed = Vec::new();
    for hex in plan.remove_ids() {
        let id = Id::from_hex(&hex)
            .map_err(|e| RunnerError::Invalid(format!("snapshot id {hex} in the plan: {e}")))?;
        repo.delete_snapshot(&id).await?;
        catalog.snapshots().delete(&hex).await?;
        removed.push(hex);
    }
    Ok(removed)
}
