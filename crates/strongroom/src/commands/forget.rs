//! `forget` (by policy or id) and `prune`: plan, show, then (unless --dry-run) execute, under
//! an exclusive lock.

use anyhow::{Context, Result, bail};
use strongroom_repo::retention::{self, Policy};
use strongroom_repo::{Repository, lock, prune};

use crate::cli::{ForgetArgs, Global, PruneArgs};
use crate::output::size;

pub async fn forget(g: &Global, a: ForgetArgs) -> Result<i32> {
    let policy = Policy {
        last: a.keep_last,
        hourly: a.keep_hourly,
        daily: a.keep_daily,
        weekly: a.keep_weekly,
        monthly: a.keep_monthly,
        yearly: a.keep_yearly,
        within: a
            .keep_within
            .as_deref()
            .map(retention::parse_duration)
            .transpose()
            .map_err(anyhow::Error::msg)?,
        keep_tags: a.keep_tags.clone(),
    };
    if policy.is_empty() && a.ids.is_empty() {
        bail!(
            "no policy given: use --keep-last/--keep-daily/... or name snapshots to forget (refusing to remove everything)"
        );
    }
    let repo = super::open(g).await?;
    let guard = lock::lock(&repo, true, "forget").await?;
    let result = async {
        let (snaps, _) = repo.list_snapshots().await?;
        let mut remove = Vec::new();
        for q in &a.ids {
            remove.push(repo.find_snapshot(q).await?.0);
        }
        let decisions = if policy.is_empty() { vec![] } else { retention::apply(&policy, &snaps) };
        for d in &decisions {
            if !d.keep && !remove.contains(&d.id) {
                remove.push(d.id);
            }
        }
        // With --json, one document at the end (the prune's plan included).
        let mut json = None;
        if g.json {
            let rows: Vec<_> = decisions
                .iter()
                .map(|d| serde_json::json!({ "id": d.id, "time": d.time.to_rfc3339(), "group": d.group, "keep": d.keep, "reasons": d.reasons }))
                .collect();
            json = Some(serde_json::json!({ "dry_run": a.dry_run, "remove": remove, "decisions": rows }));
        } else if !g.quiet {
            for d in &decisions {
                println!("{} {} {}  {}", if d.keep { "keep  " } else { "remove" }, d.id.short(), d.time.format("%Y-%m-%d %H:%M"), d.reasons.join(","));
            }
            println!("{} snapshot(s) to remove{}", remove.len(), if a.dry_run { " (dry run: nothing changed)" } else { "" });
        }
        if !a.dry_run {
            for id in &remove {
                repo.delete_snapshot(id).await?;
            }
            if a.prune {
                let plan = run_prune(g, &repo, &guard, false).await?;
                if let (Some(j), Some(p)) = (json.as_mut(), plan) {
                    j["prune"] = p;
                }
            }
        } else if a.prune && !g.quiet && !g.json {
            println!("prune skipped in a dry run: what it frees depends on the snapshots removed");
        }
        if let Some(j) = json {
            super::print_json(&j)?;
        }
        anyhow::Ok(())
    }
    .await;
    guard.release().await?;
    result.map(|()| 0)
}

pub async fn prune_cmd(g: &Global, a: PruneArgs) -> Result<i32> {
    let repo = super::open(g).await?;
    let guard = lock::lock(&repo, true, "prune").await?;
    let result = run_prune(g, &repo, &guard, a.dry_run).await;
    guard.release().await?;
    if let Some(j) = result? {
        super::print_json(&j)?;
    }
    Ok(0)
}

async fn run_prune(
    g: &Global,
    repo: &Repository,
    guard: &lock::LockGuard,
    dry_run: bool,
) -> Result<Option<serde_json::Value>> {
    let plan = prune::plan(repo)
        .await
        .context("planning prune (nothing was deleted)")?;
    // With --json the plan is returned, for the caller to print once the prune succeeded.
    let json = g.json.then(|| {
        serde_json::json!({
            "dry_run": dry_run, "keep_packs": plan.keep.len(), "repack_packs": plan.repack.len(),
            "delete_packs": plan.delete.len(), "unindexed_packs": plan.unindexed.len(),
            "freed_bytes": plan.freed_bytes, "repack_bytes": plan.repack_bytes, "used_blobs": plan.used_blobs,
        })
    });
    if !g.quiet && !g.json {
        println!("prune plan: {}", plan.describe());
        println!("frees {}", size(plan.freed_bytes));
    }
    if dry_run || plan.is_empty() {
        if !g.quiet && !g.json {
            println!(
                "{}",
                if dry_run {
                    "dry run: nothing changed"
                } else {
                    "nothing to prune"
                }
            );
        }
        return Ok(json);
    }
    prune::execute(repo, guard, plan)
        .await
        .context("prune failed (the repository is still valid)")?;
    if !g.quiet && !g.json {
        println!("prune done");
    }
    Ok(json)
}
