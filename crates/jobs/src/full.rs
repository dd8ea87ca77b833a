//! A full recovery point: every configured database and media folder in one run, each part
//! its own snapshot carrying the recovery point's id, with the time each part started and
//! ended. Or one kind of part only (`database`, `media`).
//!
//! A part that fails does not stop the others, but the recovery point is then not
//! successful. `verify` re-reads every blob of what was written; `test_restore` proves each
//! database part in a scratch database.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use strongroom_repo::archiver::{self, BackupOptions, Progress};
use strongroom_repo::exclude::Excludes;
use strongroom_repo::lock::LockGuard;
use strongroom_repo::{Id, Repository};
use strongroom_sources::DatabaseSource;

use crate::database::{self, DatabaseBackupOptions, TestRestoreReport};
use crate::runner::NamedMedia;

/// Which parts to take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackupType {
    /// Every database and media folder.
    Full,
    /// Every database.
    Database,
    /// Every media folder.
    Media,
}

/// What to back up.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    /// Named databases.
    pub databases: Vec<(String, DatabaseSource)>,
    /// Named media folders.
    pub media: Vec<NamedMedia>,
}

/// Options of a run.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Re-read and check every blob written before calling it successful.
    pub verify: bool,
    /// Prove each database part by a test restore.
    pub test_restore: bool,
    /// Where scratch databases of test restores are created (by engine); default: the
    /// database's own server.
    pub scratch: Vec<DatabaseSource>,
    /// Tags for every part.
    pub tags: Vec<String>,
    /// Live counters.
    pub progress: Option<Arc<Progress>>,
}

/// One part of a recovery point.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PartResult {
    /// "database" or "media".
    pub kind: String,
    /// Its configured name.
    pub name: String,
    /// The snapshot, when one was committed.
    pub snapshot: Option<Id>,
    /// Bytes of the part.
    pub size: u64,
    /// Bytes it added to the repository.
    pub stored: u64,
    /// When it started (RFC 3339).
    pub started: String,
    /// When it ended (RFC 3339).
    pub finished: String,
    /// Whether the post-backup verification passed (None: not asked).
    pub verified: Option<bool>,
    /// The test restore, when asked.
    pub test_restore: Option<TestRestoreReport>,
    /// Files that could not be read (media).
    pub warnings: Vec<String>,
    /// Why it failed.
    pub error: Option<String>,
}

/// A recovery point.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RecoveryPoint {
    /// Its id (shared by its parts' snapshots as `meta.recovery_point`).
    pub id: String,
    /// What was asked.
    pub backup_type: BackupType,
    /// When it started.
    pub started: String,
    /// When it ended.
    pub finished: String,
    /// The parts.
    pub parts: Vec<PartResult>,
}

impl RecoveryPoint {
    /// True when every part succeeded (and verified / test-restored when asked).
    #[must_use]
    pub fn ok(&self) -> bool {
        !self.parts.is_empty() && self.parts.iter().all(|p| p.error.is_none())
    }

    /// True when it succeeded but some media files could not be read.
    #[must_use]
    pub fn has_warnings(&self) -> bool {
        self.parts.iter().any(|p| !p.warnings.is_empty())
    }
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// Takes a recovery point.
///
/// # Errors
/// Only when there is nothing to back up; part failures are reported in the result.
pub async fn run(
    repo: &Arc<Repository>,
    lock: &LockGuard,
    sources: &Sources,
    backup_type: BackupType,
    opts: &RunOptions,
) -> crate::Result<RecoveryPoint> {
    let mut rand = [0u8; 8];
    strongroom_repo::crypto::fill_random(&mut rand);
    let rp = hex::encode(rand);
    let dbs = matches!(backup_type, BackupType::Full | BackupType::Database);
    let media = matches!(backup_type, BackupType::Full | BackupType::Media);
    let n_parts =
        if dbs { sources.databases.len() } else { 0 } + if media { sources.media.len() } else { 0 };
    if n_parts == 0 {
        return Err(crate::JobError::Invalid(match backup_type {
            BackupType::Database => "no database configured: give --database URL or set DATABASE_URL".into(),
            BackupType::Media => "no media folder configured: give --media DIR or set MEDIA_ROOT".into(),
            BackupType::Full => {
                "nothing configured: give --database URL / --media DIR, or set DATABASE_URL / MEDIA_ROOT".into()
            }
        }));
    }
    let mut point = RecoveryPoint {
        id: rp.clone(),
        backup_type,
        started: now(),
        finished: String::new(),
        parts: Vec::new(),
    };
    let mut tags = opts.tags.clone();
    tags.push(format!("rp:{rp}"));
    if dbs {
        for (name, source) in &sources.databases {
            let started = now();
            let dopts = DatabaseBackupOptions {
                tags: tags.clone(),
                recovery_point: Some(rp.clone()),
                progress: opts.progress.clone(),
            };
            let mut part = PartResult {
                kind: "database".into(),
                name: name.clone(),
                snapshot: None,
                size: 0,
                stored: 0,
                started,
                finished: String::new(),
                verified: None,
                test_restore: None,
                warnings: vec![],
                error: None,
            };
            match database::backup(repo, lock, name, source, dopts).await {
                Ok((id, snap)) => {
                    part.snapshot = Some(id);
                    part.size = snap.size();
                    part.stored = snap.summary.bytes_stored;
                    check_part(repo, &mut part, &id, &snap, opts, Some(source)).await;
                }
                Err(e) => part.error = Some(e.to_string()),
            }
            part.finished = now();
            point.parts.push(part);
        }
    }
    if media {
        for NamedMedia {
            name,
            path,
            exclude,
        } in &sources.media
        {
            let started = now();
            let meta = serde_json::json!({ "type": "media", "name": name, "recovery_point": rp });
            let mut mtags = tags.clone();
            mtags.push("media".into());
            // The configuration's check refuses a bad pattern before any run; a caller that
            // skipped it gets the part refused rather than more backed up than asked.
            let exclude = Excludes::new(exclude);
            let bopts = BackupOptions {
                tags: mtags,
                meta,
                exclude: exclude.clone().unwrap_or_default(),
                progress: opts.progress.clone(),
                ..BackupOptions::default()
            };
            let mut part = PartResult {
                kind: "media".into(),
                name: name.clone(),
                snapshot: None,
                size: 0,
                stored: 0,
                started,
                finished: String::new(),
                verified: None,
                test_restore: None,
                warnings: vec![],
                error: None,
            };
            let result = match exclude {
                Ok(_) => archiver::backup_paths(repo, lock, std::slice::from_ref(path), bopts)
                    .await
                    .map_err(|e| e.to_string()),
                Err(e) => Err(format!("media folder {name:?}: exclude {e}")),
            };
            match result {
                Ok((id, snap)) => {
                    part.snapshot = Some(id);
                    part.size = snap.size();
                    part.stored = snap.summary.bytes_stored;
                    part.warnings.clone_from(&snap.summary.warnings);
                    check_part(repo, &mut part, &id, &snap, opts, None).await;
                }
                Err(e) => part.error = Some(e),
            }
            part.finished = now();
            point.parts.push(part);
        }
    }
    point.finished = now();
    Ok(point)
}

async fn check_part(
    repo: &Arc<Repository>,
    part: &mut PartResult,
    id: &Id,
    snap: &strongroom_repo::Snapshot,
    opts: &RunOptions,
    source: Option<&DatabaseSource>,
) {
    if opts.verify {
        match strongroom_repo::checker::verify_snapshot(repo, snap).await {
            Ok(errors) if errors.is_empty() => part.verified = Some(true),
            Ok(errors) => {
                part.verified = Some(false);
                part.error = Some(format!(
                    "verification after backup failed: {}",
                    errors.join("; ")
                ));
            }
            Err(e) => {
                part.verified = Some(false);
                part.error = Some(format!("verification after backup failed: {e}"));
            }
        }
    }
    if opts.test_restore
        && part.error.is_none()
        && let Some(src) = source
    {
        let server = opts
            .scratch
            .iter()
            .find(|s| s.engine() == src.engine())
            .unwrap_or(src);
        match database::test_restore(repo, id, snap, Some(server)).await {
            Ok(r) => part.test_restore = Some(r),
            Err(e) => part.error = Some(e.to_string()),
        }
    }
}
