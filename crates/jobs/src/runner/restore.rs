//! Restore jobs: a backup's parts (database dumps, media folders) back into place, as the
//! server's restore preview described and the user confirmed (`metadata.target`:
//! `{"sources": [...], "replace": bool, "new_name": ...}`, with the backup's
//! `metadata.snapshot_ids` and `metadata.target_job_id`).
//!
//! - Not replacing: a database is restored into a new database `<database>_restored_<backup
//!   id>` (or `new_name`; SQLite: a new file next to the original), a media folder into a new
//!   folder `<folder>.restored-<backup id>`. An existing target is never written over.
//! - Replacing: first a safety backup of every database and media folder about to be
//!   replaced (tagged `safety-before-restore`, source `<name>-before-restore`); only when all
//!   of them are saved is anything replaced. A database is then restored with the engine's
//!   replace (the old one kept or dropped as the engine allows); a media folder is restored
//!   next to the live one, then swapped in (the old folder is kept as
//!   `<folder>.before-restore-<job id>`, and what the folder's exclude patterns leave out of
//!   backups is moved from it into the restored folder). A media restore with damaged files
//!   is never swapped in.
//!
//! Everything is checked before anything changes (every part is in the backup, every source
//! is configured, every target is free): a restore that cannot be done as asked fails with
//! what is supported, never a silent success. What it must not do: put a URL or password in
//! a message or the metadata (database and folder names only), or restore under no lock.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{Value, json};
use strongroom_catalog::{Job, JobOutcome, JobStatus};
use strongroom_repo::archiver::{self, BackupOptions};
use strongroom_repo::restorer::{self, RestoreOptions};
use strongroom_repo::{Id, RepoError, Repository, Snapshot};
use strongroom_sources::{DatabaseSource, Engine};

use super::cache::{record_for, source_name};
use super::execute::{HeldLock, JobCtx, join_notes, open_locked};
use super::options::JobOptions;
use super::{Runner, RunnerError};
use crate::database::{self, DatabaseMeta};

/// One part to restore, fully resolved before anything changes.
// Not boxed: a few parts per job, each used once.
#[allow(clippy::large_enum_variant)]
enum Part {
    Database {
        name: String,
        id: Id,
        snap: Snapshot,
        /// The configured database (what a replace replaces).
        live: DatabaseSource,
        /// Where the dump goes.
        target: DatabaseSource,
    },
    Media {
        name: String,
        id: Id,
        snap: Snapshot,
        /// The configured folder.
        live: PathBuf,
        /// Where the folder goes (the live one when replacing).
        target: PathBuf,
        /// The folder's exclude patterns: what its backups leave out, and a replace carries
        /// over from the live folder.
        exclude: Vec<String>,
    },
}

impl Part {
    fn name(&self) -> &str {
        match self {
            Part::Database { name, .. } | Part::Media { name, .. } => name,
        }
    }

    fn id(&self) -> &Id {
        match self {
            Part::Database { id, .. } | Part::Media { id, .. } => id,
        }
    }

    /// The target as shown: a database name or a SQLite / folder file name, never a URL.
    fn shown_target(&self) -> String {
        match self {
            Part::Database { target, .. } => shown_database(target),
            Part::Media { target, .. } => file_name(target),
        }
    }
}

fn shown_database(d: &DatabaseSource) -> String {
    match d.engine() {
        Engine::Sqlite => file_name(&d.url().sqlite_path()),
        _ => d.url().database().to_owned(),
    }
}

fn file_name(p: &Path) -> String {
    p.file_name().map_or_else(
        || p.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

fn fail(message: impl Into<String>) -> Result<JobOutcome, RunnerError> {
    Ok(JobOutcome::failed(message.into()))
}

/// Runs a restore job.
pub(super) async fn run(
    runner: &Runner,
    job: &Job,
    opts: &JobOptions,
    ctx: &JobCtx,
) -> Result<JobOutcome, RunnerError> {
    const SUPPORTED: &str = "supported: the parts of one finished backup (metadata.snapshot_ids) \
        restored next to the live data (a new database, or `new_name` for one database; a new \
        folder `<folder>.restored-<backup id>`), or replacing the live database / media folder \
        after a safety backup";
    let Some(target) = &opts.target else {
        return fail(format!(
            "a restore job needs a target (metadata.target); nothing was restored ({SUPPORTED})"
        ));
    };
    if opts.snapshot_ids.is_empty() {
        return fail(format!(
            "a restore job needs the backup's snapshots (metadata.snapshot_ids); nothing was \
             restored ({SUPPORTED})"
        ));
    }
    let backup_id = opts.target_job_id.unwrap_or(job.id);
    let (repo, held) = open_locked(runner, false, "restore", ctx).await?;
    ctx.set_phase("checking what to restore");
    let result = async {
        let parts = match plan(runner, &repo, opts, backup_id, job.id).await? {
            Ok(p) => p,
            Err(message) => {
                return Ok(Err(format!(
                    "{message}; nothing was restored ({SUPPORTED})"
                )));
            }
        };
        execute(runner, &repo, &held, job, target.replace, parts, ctx)
            .await
            .map(Ok)
    }
    .await;
    let note = held.release().await;
    let mut outcome = match result? {
        Ok(o) => o,
        Err(message) => JobOutcome::failed(message),
    };
    if let Some(e) = note {
        outcome.error_message = join_notes(
            outcome.error_message.take(),
            &[format!("the repository lock could not be released: {e}")],
        );
    }
    Ok(outcome)
}

/// Resolves every part: `Err(message)` when the restore cannot be done as asked.
async fn plan(
    runner: &Runner,
    repo: &Arc<Repository>,
    opts: &JobOptions,
    backup_id: i64,
    job_id: i64,
) -> Result<Result<Vec<Part>, String>, RunnerError> {
    let target = opts.target.clone().unwrap_or_default();
    // The backup's parts by source name.
    let mut parts: Vec<(String, Id, Snapshot)> = Vec::new();
    for hex in &opts.snapshot_ids {
        let id = match Id::from_hex(hex) {
            Ok(id) => id,
            Err(e) => return Ok(Err(format!("{hex:?} is not a snapshot id ({e})"))),
        };
        let snap = match repo.read_snapshot(&id.to_hex()).await {
            Ok((_, s)) => s,
            Err(e) => {
                return Ok(Err(format!(
                    "snapshot {} of backup {backup_id} cannot be read (removed by retention, or \
                     damaged: {e})",
                    id.short()
                )));
            }
        };
        let Some(name) = source_name(&snap) else {
            return Ok(Err(format!(
                "snapshot {} is not a database or media backup taken by the service",
                id.short()
            )));
        };
        parts.push((name, id, snap));
    }
    let chosen: Vec<String> = if target.sources.is_empty() {
        parts.iter().map(|(n, _, _)| n.clone()).collect()
    } else {
        target.sources.clone()
    };
    let db_count = chosen
        .iter()
        .filter(|n| runner.sources().databases.iter().any(|d| &d.name == *n))
        .count();
    if let Some(new_name) = &target.new_name {
        if target.replace {
            return Ok(Err(
                "new_name and replace exclude each other: a replace restores into the live database"
                    .into(),
            ));
        }
        if db_count != 1 {
            return Ok(Err(format!(
                "new_name names one database; this restore covers {db_count}: restore them one \
                 at a time, or without new_name"
            )));
        }
        if new_name.is_empty()
            || new_name.len() > 63
            || !new_name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Ok(Err(
                "new_name must be 1-63 letters, digits, '_' or '-'".into()
            ));
        }
    }
    let mut out = Vec::new();
    for (i, name) in chosen.iter().enumerate() {
        if chosen[..i].contains(name) {
            continue;
        }
        let Some((_, id, snap)) = parts.iter().find(|(n, _, _)| n == name) else {
            return Ok(Err(format!(
                "backup {backup_id} has no part {name:?} (its parts: {})",
                parts
                    .iter()
                    .map(|(n, _, _)| n.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        };
        if let Some(d) = runner.sources().databases.iter().find(|d| &d.name == name) {
            let Some(meta) = DatabaseMeta::of(snap) else {
                return Ok(Err(format!(
                    "{name:?} is a database, but snapshot {} is not a database backup",
                    id.short()
                )));
            };
            if meta.engine != d.source.engine() {
                return Ok(Err(format!(
                    "snapshot {} is a {} backup; {name:?} is {}",
                    id.short(),
                    meta.engine.name(),
                    d.source.engine().name()
                )));
            }
            let dest = if target.replace {
                d.source.clone()
            } else {
                let url = d.source.url();
                let made = url.with_database(&strongroom_sources::beside_database(
                    d.source.engine() == Engine::Sqlite,
                    url.database(),
                    target.new_name.as_deref(),
                    backup_id,
                ));
                match made {
                    Ok(u) => DatabaseSource::new(u).with_tools(d.source.tools().clone()),
                    Err(e) => {
                        return Ok(Err(format!(
                            "the new database for {name:?} cannot be named: {e}"
                        )));
                    }
                }
            };
            out.push(Part::Database {
                name: name.clone(),
                id: *id,
                snap: snap.clone(),
                live: d.source.clone(),
                target: dest,
            });
        } else if let Some(m) = runner.sources().media.iter().find(|m| &m.name == name) {
            if snap.kind != strongroom_repo::SnapshotKind::Files {
                return Ok(Err(format!(
                    "{name:?} is a media folder, but snapshot {} is not a folder backup",
                    id.short()
                )));
            }
            let dest = if target.replace {
                m.path.clone()
            } else {
                let dest = suffixed(&m.path, &format!(".restored-{backup_id}"));
                if std::fs::symlink_metadata(&dest).is_ok() {
                    return Ok(Err(format!(
                        "{} already exists (restored before?): move it away first",
                        file_name(&dest)
                    )));
                }
                dest
            };
            let parent_ok = m.path.parent().is_some_and(Path::is_dir);
            if !parent_ok {
                return Ok(Err(format!(
                    "the folder holding media folder {name:?} does not exist"
                )));
            }
            for spare in [
                staging_dir(&m.path, job_id),
                suffixed(&m.path, &format!(".before-restore-{job_id}")),
            ] {
                if std::fs::symlink_metadata(&spare).is_ok() {
                    return Ok(Err(format!(
                        "{} already exists: move it away first",
                        file_name(&spare)
                    )));
                }
            }
            out.push(Part::Media {
                name: name.clone(),
                id: *id,
                snap: snap.clone(),
                live: m.path.clone(),
                target: dest,
                exclude: m.exclude.clone(),
            });
        } else {
            return Ok(Err(format!(
                "{name:?} is not a configured database or media folder (configured: {}): the \
                 service restores only into configured sources",
                runner.sources().names().join(", ")
            )));
        }
    }
    if out.is_empty() {
        return Ok(Err("nothing to restore".into()));
    }
    Ok(Ok(out))
}

/// `path` with `suffix` appended to its last component.
fn suffixed(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Where a media folder is restored before it is moved into place (next to it: same
/// file system, so the move is a rename).
fn staging_dir(live: &Path, job_id: i64) -> PathBuf {
    let name = format!(".{}.restoring-{job_id}", file_name(live));
    live.parent()
        .map_or_else(|| PathBuf::from(&name), |p| p.join(&name))
}

/// Safety backups of everything about to be replaced, then the restores.
async fn execute(
    runner: &Runner,
    repo: &Arc<Repository>,
    held: &HeldLock,
    job: &Job,
    replace: bool,
    parts: Vec<Part>,
    ctx: &JobCtx,
) -> Result<JobOutcome, RunnerError> {
    let mut safety = Vec::new();
    if replace {
        for part in &parts {
            ctx.set_phase(format!("safety backup of {:?}", part.name()));
            let taken = match part {
                Part::Database { name, live, .. } => {
                    database::safety_backup(repo, held.guard()?, name, live)
                        .await
                        .map_err(|e| e.to_string())
                }
                Part::Media { name, live, .. } => {
                    if live.exists() {
                        let opts = BackupOptions {
                            tags: vec!["media".into(), "safety-before-restore".into()],
                            meta: json!({ "type": "media", "name": format!("{name}-before-restore") }),
                            progress: Some(Arc::clone(&ctx.counters)),
                            ..BackupOptions::default()
                        };
                        archiver::backup_paths(
                            repo,
                            held.guard()?,
                            std::slice::from_ref(live),
                            opts,
                        )
                        .await
                        .map(Some)
                        .map_err(|e| e.to_string())
                    } else {
                        Ok(None)
                    }
                }
            };
            match taken {
                Ok(Some((id, snap))) => {
                    runner
                        .catalog()
                        .snapshots()
                        .upsert(&record_for(&id, &snap))
                        .await?;
                    safety.push(json!({ "source": part.name(), "snapshot": id.to_hex() }));
                }
                Ok(None) => {
                    safety.push(json!({ "source": part.name(), "snapshot": null, "note": "nothing to replace yet" }));
                }
                Err(e) => {
                    let mut o = JobOutcome::failed(format!(
                        "the safety backup of {:?} failed ({e}); nothing was replaced",
                        part.name()
                    ));
                    o.metadata = Some(json!({ "safety_backups": safety, "restored": [] }));
                    return Ok(o);
                }
            }
        }
    }

    let mut restored: Vec<Value> = Vec::new();
    let mut failure = None;
    for (i, part) in parts.iter().enumerate() {
        ctx.set_phase(format!("restoring {:?}", part.name()));
        let done = match part {
            Part::Database {
                id, snap, target, ..
            } => database::restore(repo, id, snap, target, replace)
                .await
                .map(|r| json!({ "bytes": r.bytes, "created": r.created, "replaced": r.replaced.is_some() }))
                .map_err(|e| e.to_string()),
            Part::Media {
                snap,
                live,
                target,
                exclude,
                ..
            } => {
                let into = MediaTarget {
                    live,
                    target,
                    replace,
                    exclude,
                };
                restore_media(repo, snap, &into, job.id, ctx).await
            }
        };
        match done {
            Ok(details) => restored.push(json!({
                "source": part.name(),
                "snapshot": part.id().to_hex(),
                "target": part.shown_target(),
                "details": details,
            })),
            Err(e) => {
                let left: Vec<&str> = parts[i + 1..].iter().map(Part::name).collect();
                failure = Some(format!(
                    "the restore of {:?} into {} failed: {e}{}{}",
                    part.name(),
                    part.shown_target(),
                    if restored.is_empty() {
                        String::new()
                    } else {
                        format!(
                            "; restored before it: {}",
                            restored
                                .iter()
                                .filter_map(|r| r["source"].as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        )
                    },
                    if left.is_empty() {
                        String::new()
                    } else {
                        format!("; not attempted: {}", left.join(", "))
                    }
                ));
                break;
            }
        }
    }
    let mut outcome = JobOutcome::new(if failure.is_some() {
        JobStatus::Failed
    } else {
        JobStatus::Success
    });
    outcome.error_message = failure;
    outcome.snapshot_ids = restored
        .iter()
        .filter_map(|r| r["snapshot"].as_str().map(str::to_owned))
        .collect();
    outcome.metadata = Some(json!({
        "replace": replace,
        "safety_backups": safety,
        "restored": restored,
    }));
    Ok(outcome)
}

/// Where a media restore goes.
#[derive(Clone, Copy)]
struct MediaTarget<'a> {
    /// The configured folder.
    live: &'a Path,
    /// A new folder, or (replacing) the live folder's path.
    target: &'a Path,
    replace: bool,
    /// The folder's exclude patterns.
    exclude: &'a [String],
}

/// Restores a media snapshot into a staging folder next to the live one, then moves it to
/// `target` (a new folder; or, replacing, the live folder's place, the old one kept aside,
/// and what the exclude patterns leave out of backups moved from it into the restored one).
async fn restore_media(
    repo: &Arc<Repository>,
    snap: &Snapshot,
    into: &MediaTarget<'_>,
    job_id: i64,
    ctx: &JobCtx,
) -> Result<Value, String> {
    let MediaTarget {
        live,
        target,
        replace,
        ..
    } = *into;
    let staging = staging_dir(live, job_id);
    // `restore_to_dir`'s future is not `Send` (it writes through a `&mut dyn Write`), so it
    // runs on a blocking thread of its own, driven by the runtime's handle.
    let restored = {
        let (repo, snap, dir) = (Arc::clone(repo), snap.clone(), staging.clone());
        let handle = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || {
            handle.block_on(restorer::restore_to_dir(
                &repo,
                &snap,
                &dir,
                &RestoreOptions::default(),
            ))
        })
        .await
        .map_err(|e| format!("the restore stopped: {e}"))?
    };
    let stats = match restored {
        Ok(s) => s,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(match e {
                RepoError::PartialRestore { .. } => format!(
                    "{e}; the damaged backup was not put in place{}",
                    if replace {
                        " (the live folder is untouched)"
                    } else {
                        ""
                    }
                ),
                e => e.to_string(),
            });
        }
    };
    ctx.set_phase("moving the restored folder into place");
    let moved = place(&staging, live, target, replace, job_id);
    let _ = std::fs::remove_dir_all(&staging);
    let kept = moved?;
    let mut details = json!({
        "files": stats.files,
        "dirs": stats.dirs,
        "bytes": stats.bytes,
        "previous_kept_as": kept.as_deref().map(file_name),
    });
    if let Some(aside) = &kept
        && !into.exclude.is_empty()
    {
        ctx.set_phase("moving excluded files back from the replaced folder");
        let carried = carry_over_excluded(aside, live, into.exclude);
        details["excluded_moved_back"] = json!(carried.moved);
        if !carried.left.is_empty() {
            details["excluded_left_in_previous"] = json!(carried.left);
        }
    }
    Ok(details)
}

/// What [`carry_over_excluded`] did.
#[derive(Debug, Default, PartialEq, Eq)]
struct CarriedOver {
    /// Entries moved back into the live folder.
    moved: usize,
    /// Entries left in the replaced folder, each with why (relative paths).
    left: Vec<String>,
}

/// The entries of `folder` that `exclude` leaves out of its backups (relative paths; an
/// excluded folder is one entry, not entered), in walk order. Read-only.
fn excluded_entries(folder: &Path, exclude: &strongroom_repo::exclude::Excludes) -> Vec<PathBuf> {
    use std::os::unix::ffi::OsStrExt as _;
    let mut found = Vec::new();
    let mut pending = vec![PathBuf::new()];
    while let Some(rel) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(folder.join(&rel)) else {
            continue;
        };
        let mut names: Vec<_> = entries.filter_map(Result::ok).collect();
        names.sort_by_key(std::fs::DirEntry::file_name);
        for e in names {
            let is_dir = e.file_type().is_ok_and(|t| t.is_dir());
            let path = rel.join(e.file_name());
            if exclude.excludes(rel.as_os_str().as_bytes(), e.file_name().as_bytes(), is_dir) {
                found.push(path);
            } else if is_dir {
                pending.push(path);
            }
        }
    }
    found
}

/// After a replace: the entries of the replaced folder (`aside`) that the exclude patterns
/// leave out of backups are not in any snapshot, so the restore did not bring them back.
/// They are moved (renamed, same file system) into the restored live folder at the same
/// place, creating the folders leading to them; one whose place is taken stays aside. First
/// planned (the list of entries), then moved.
fn carry_over_excluded(aside: &Path, live: &Path, patterns: &[String]) -> CarriedOver {
    let mut out = CarriedOver::default();
    let exclude = match strongroom_repo::exclude::Excludes::new(patterns) {
        Ok(x) => x,
        Err(e) => {
            out.left.push(format!("(every excluded entry: {e})"));
            return out;
        }
    };
    for rel in excluded_entries(aside, &exclude) {
        let to = live.join(&rel);
        if std::fs::symlink_metadata(&to).is_ok() {
            out.left
                .push(format!("{}: the restored folder has it", rel.display()));
            continue;
        }
        let moved = to
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| std::fs::rename(aside.join(&rel), &to));
        match moved {
            Ok(()) => out.moved += 1,
            Err(e) => out.left.push(format!("{}: {e}", rel.display())),
        }
    }
    out
}

/// Moves the one folder a media snapshot restores (named after the backed-up folder) from
/// `staging` to `target`. Returns where the replaced folder was kept.
fn place(
    staging: &Path,
    live: &Path,
    target: &Path,
    replace: bool,
    job_id: i64,
) -> Result<Option<PathBuf>, String> {
    let entries: Vec<PathBuf> = std::fs::read_dir(staging)
        .map_err(|e| format!("reading the restored folder: {e}"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    let [restored] = entries.as_slice() else {
        return Err(format!(
            "the backup holds {} top-level entries, expected the one media folder",
            entries.len()
        ));
    };
    if !restored.is_dir() {
        return Err("the backup does not hold a folder".into());
    }
    if !replace {
        return std::fs::rename(restored, target)
            .map(|()| None)
            .map_err(|e| format!("moving the restored folder into place: {e}"));
    }
    let aside = suffixed(live, &format!(".before-restore-{job_id}"));
    let had_live = std::fs::symlink_metadata(live).is_ok();
    if had_live {
        std::fs::rename(live, &aside).map_err(|e| {
            format!(
                "the live folder cannot be moved aside ({e}; is it a mount point?): nothing was \
                 replaced; restore without replace and move the files yourself"
            )
        })?;
    }
    if let Err(e) = std::fs::rename(restored, target) {
        let back = if had_live {
            std::fs::rename(&aside, live)
        } else {
            Ok(())
        };
        return Err(match back {
            Ok(()) => {
                format!("moving the restored folder into place failed ({e}); nothing was replaced")
            }
            Err(b) => format!(
                "moving the restored folder into place failed ({e}) and the live folder could not be moved back ({b}): it is at {}",
                file_name(&aside)
            ),
        });
    }
    Ok(had_live.then_some(aside))
}
