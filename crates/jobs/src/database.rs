//! Database backups, restores, test restores and imports.
//!
//! A database snapshot is a stream snapshot holding the engine's own dump (PostgreSQL custom
//! archive without compression, MySQL/MariaDB SQL script, SQLite database file), so an
//! export is exactly what `pg_restore`, `mariadb` or `sqlite3` take. Its `meta` records:
//! `{"type": "database", "name", "engine", "manifest", "globals_sql"?, "recovery_point"?,
//! "imported_from"?}`. A backup is committed only after the dump tool exited 0 and the
//! manifest was read; otherwise no snapshot exists.

use std::io::Read;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use strongroom_repo::archiver::{self, BackupOptions, Progress};
use strongroom_repo::lock::LockGuard;
use strongroom_repo::restorer::{self, BlobReader};
use strongroom_repo::{Id, Repository, Snapshot, SnapshotKind};
use strongroom_sources::{
    DatabaseSource, DatabaseUrl, Engine, Manifest, RestoreOptions, RestoreReport,
};

use crate::{JobError, Result};

/// The `meta` of a database snapshot.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DatabaseMeta {
    /// Always "database".
    #[serde(rename = "type")]
    pub kind: String,
    /// The configured name of the database (e.g. "default", "clinic").
    pub name: String,
    /// The engine.
    pub engine: Engine,
    /// The manifest read with the dump (absent for imported dumps).
    pub manifest: Option<Manifest>,
    /// PostgreSQL globals (`pg_dumpall --globals-only`), when permitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub globals_sql: Option<String>,
    /// The full backup this part belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery_point: Option<String>,
    /// The file an imported dump came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub imported_from: Option<String>,
}

impl DatabaseMeta {
    /// Reads the database meta of a snapshot, if it is a database snapshot.
    #[must_use]
    pub fn of(snap: &Snapshot) -> Option<DatabaseMeta> {
        if snap.kind != SnapshotKind::Stream
            || snap.meta.get("type").and_then(|t| t.as_str()) != Some("database")
        {
            return None;
        }
        serde_json::from_value(snap.meta.clone()).ok()
    }
}

/// The file name a dump is stored under.
#[must_use]
pub fn stream_name(name: &str, engine: Engine) -> String {
    let ext = match engine {
        Engine::Postgres => "dump",
        Engine::Mysql => "sql",
        Engine::Sqlite => "sqlite",
    };
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{safe}.{ext}")
}

/// Options of a database backup.
#[derive(Debug, Clone, Default)]
pub struct DatabaseBackupOptions {
    /// Tags.
    pub tags: Vec<String>,
    /// The full backup this is part of.
    pub recovery_point: Option<String>,
    /// Live counters.
    pub progress: Option<Arc<Progress>>,
}

/// Dumps a database into the repository. The snapshot is written only when the dump tool
/// exited 0, produced output, and the manifest was read.
///
/// # Errors
/// The dump tool's failure (with its message and advice), or the repository's.
pub async fn backup(
    repo: &Arc<Repository>,
    lock: &LockGuard,
    name: &str,
    source: &DatabaseSource,
    opts: DatabaseBackupOptions,
) -> Result<(Id, Snapshot)> {
    let src = source.clone();
    let (reader, pending) = tokio::task::spawn_blocking(move || src.dump())
        .await
        .map_err(|e| JobError::Invalid(e.to_string()))??;
    let engine = source.engine();
    let meta_name = name.to_owned();
    let rp = opts.recovery_point.clone();
    let finish = move || -> std::result::Result<serde_json::Value, String> {
        let outcome = pending.finish().map_err(|e| e.to_string())?;
        let meta = DatabaseMeta {
            kind: "database".into(),
            name: meta_name,
            engine,
            manifest: Some(outcome.manifest),
            globals_sql: outcome
                .globals_sql
                .map(|g| String::from_utf8_lossy(&g).into_owned()),
            recovery_point: rp,
            imported_from: None,
        };
        serde_json::to_value(meta).map_err(|e| e.to_string())
    };
    let mut tags = opts.tags.clone();
    tags.push("database".into());
    let bopts = BackupOptions {
        tags,
        progress: opts.progress.clone(),
        ..BackupOptions::default()
    };
    let input: Box<dyn Read + Send> = Box::new(reader);
    let res =
        archiver::backup_stream_with(repo, lock, &stream_name(name, engine), input, bopts, finish)
            .await;
    Ok(res?)
}

/// Imports an existing dump file (e.g. downloaded from a managed provider) as a database
/// snapshot. The engine is recognised from the file's first bytes.
///
/// # Errors
/// When the file cannot be read or is not a recognised dump.
pub async fn import(
    repo: &Arc<Repository>,
    lock: &LockGuard,
    name: &str,
    file: &std::path::Path,
) -> Result<(Id, Snapshot)> {
    let mut f = std::fs::File::open(file)
        .map_err(|e| JobError::Invalid(format!("cannot open {}: {e}", file.display())))?;
    let mut head = vec![0u8; 4096];
    let n = read_up_to(&mut f, &mut head)
        .map_err(|e| JobError::Invalid(format!("cannot read {}: {e}", file.display())))?;
    head.truncate(n);
    let Some(engine) = strongroom_sources::detect_dump_format(&head) else {
        return Err(JobError::Invalid(format!(
            "{} is not a recognised dump: expected a PostgreSQL custom-format archive (pg_dump -Fc), \
             a MySQL/MariaDB dump script or a SQLite database",
            file.display()
        )));
    };
    let input: Box<dyn Read + Send> = Box::new(std::io::Cursor::new(head).chain(f));
    let meta = DatabaseMeta {
        kind: "database".into(),
        name: name.to_owned(),
        engine,
        manifest: None,
        globals_sql: None,
        recovery_point: None,
        imported_from: Some(file.display().to_string()),
    };
    let meta = serde_json::to_value(meta).map_err(|e| JobError::Invalid(e.to_string()))?;
    let opts = BackupOptions {
        tags: vec!["database".into(), "imported".into()],
        ..BackupOptions::default()
    };
    let res = archiver::backup_stream_with(
        repo,
        lock,
        &stream_name(name, engine),
        input,
        opts,
        move || Ok(meta),
    )
    .await;
    Ok(res?)
}

fn read_up_to(r: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

fn require_meta(snap: &Snapshot, id: &Id) -> Result<DatabaseMeta> {
    DatabaseMeta::of(snap).ok_or_else(|| {
        JobError::Invalid(format!(
            "snapshot {} is not a database backup (it holds {})",
            id.short(),
            snap.source
        ))
    })
}

/// Restores a database snapshot into `target` (created; an existing one only with
/// `replace`, which the caller must precede by [`safety_backup`]).
///
/// # Errors
/// When the snapshot is not a database backup of the target's engine, its data is damaged,
/// or the restore tool fails (the target is then left as it was).
pub async fn restore(
    repo: &Arc<Repository>,
    id: &Id,
    snap: &Snapshot,
    target: &DatabaseSource,
    replace: bool,
) -> Result<RestoreReport> {
    let meta = require_meta(snap, id)?;
    if meta.engine != target.engine() {
        return Err(JobError::Invalid(format!(
            "snapshot {} is a {} backup; it cannot be restored into {} ({})",
            id.short(),
            meta.engine.name(),
            target.url(),
            target.engine().name()
        )));
    }
    let node = restorer::stream_node(repo, snap).await?;
    let reader = BlobReader::new(
        Arc::clone(repo),
        tokio::runtime::Handle::current(),
        node.content,
        format!("snapshot {}", id.short()),
    );
    let target = target.clone();
    let report = tokio::task::spawn_blocking(move || {
        let mut r = reader;
        target.restore(&mut r, &RestoreOptions { replace })
    })
    .await
    .map_err(|e| JobError::Invalid(e.to_string()))??;
    Ok(report)
}

/// Before a replacing restore: backs up what is about to be replaced, if it exists.
/// Returns the safety snapshot, or `None` when the target does not exist yet.
///
/// # Errors
/// When the target exists but cannot be backed up (the restore must then not proceed).
pub async fn safety_backup(
    repo: &Arc<Repository>,
    lock: &LockGuard,
    name: &str,
    target: &DatabaseSource,
) -> Result<Option<(Id, Snapshot)>> {
    let t = target.clone();
    let exists = tokio::task::spawn_blocking(move || target_exists(&t))
        .await
        .map_err(|e| JobError::Invalid(e.to_string()))?;
    if !exists {
        return Ok(None);
    }
    let opts = DatabaseBackupOptions {
        tags: vec!["safety-before-restore".into()],
        ..DatabaseBackupOptions::default()
    };
    backup(repo, lock, &format!("{name}-before-restore"), target, opts)
        .await
        .map(Some)
}

fn target_exists(t: &DatabaseSource) -> bool {
    match t.engine() {
        Engine::Sqlite => t.url().sqlite_path().exists(),
        _ => t.probe().reachable,
    }
}

/// The outcome of a test restore.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TestRestoreReport {
    /// The snapshot proven.
    pub snapshot: Id,
    /// The scratch database used (dropped afterwards), password redacted.
    pub scratch: String,
    /// Tables compared with the manifest.
    pub tables_checked: usize,
    /// Tables whose counts differ: "table: expected N, restored M".
    pub mismatches: Vec<String>,
    /// The engine's integrity check result.
    pub integrity: String,
    /// Bytes restored.
    pub bytes: u64,
    /// When it ran.
    pub at: String,
    /// True when everything matched.
    pub ok: bool,
}

/// Restores a database snapshot into a scratch database (created and dropped here), checks
/// every table's row count against the manifest and runs the engine's integrity check.
///
/// `server` names where to create the scratch database (its database name is replaced); for
/// SQLite, a folder-less `sqlite` URL is made in the system temp folder.
///
/// # Errors
/// [`JobError::TestRestoreFailed`] when the restore fails (e.g. tampered data) or counts
/// differ; the scratch database is dropped in every case.
pub async fn test_restore(
    repo: &Arc<Repository>,
    id: &Id,
    snap: &Snapshot,
    server: Option<&DatabaseSource>,
) -> Result<TestRestoreReport> {
    let meta = require_meta(snap, id)?;
    let mut rand = [0u8; 4];
    strongroom_repo::crypto::fill_random(&mut rand);
    let scratch_name = format!("strongroom_drill_{}_{}", id.short(), hex::encode(rand));
    let scratch_url = match meta.engine {
        Engine::Sqlite => {
            DatabaseUrl::sqlite(std::env::temp_dir().join(format!("{scratch_name}.sqlite")))
                .map_err(|e| JobError::Invalid(e.to_string()))?
        }
        _ => {
            let server = server.ok_or_else(|| {
                JobError::Invalid(format!(
                    "a test restore of a {} backup needs a server for the scratch database: give --scratch-url",
                    meta.engine.name()
                ))
            })?;
            if server.engine() != meta.engine {
                return Err(JobError::Invalid(format!(
                    "the scratch server is {}, the backup is {}",
                    server.engine().name(),
                    meta.engine.name()
                )));
            }
            server
                .url()
                .with_database(&scratch_name)
                .map_err(|e| JobError::Invalid(e.to_string()))?
        }
    };
    let scratch = DatabaseSource::new(scratch_url)
        .with_tools(server.map(|s| s.tools().clone()).unwrap_or_default());
    let shown = scratch.url().to_string();
    let restored = restore(repo, id, snap, &scratch, false).await;
    let result = match restored {
        Err(e) => Err(JobError::TestRestoreFailed(format!(
            "the backup did not restore: {e}"
        ))),
        Ok(report) => {
            let s = scratch.clone();
            let checks =
                tokio::task::spawn_blocking(move || (s.table_counts(), s.integrity_check()))
                    .await
                    .map_err(|e| JobError::Invalid(e.to_string()))?;
            match checks {
                (Ok(counts), Ok(integrity)) => {
                    let (tables_checked, mismatches) = match &meta.manifest {
                        Some(m) => {
                            let c = strongroom_sources::verify_counts(m, &counts);
                            (
                                c.tables_checked,
                                c.mismatches
                                    .iter()
                                    .map(|x| x.to_string())
                                    .collect::<Vec<_>>(),
                            )
                        }
                        // An imported dump has no manifest: the restore and integrity check are
                        // the proof; the counts are recorded.
                        None => (counts.len(), Vec::new()),
                    };
                    let ok = mismatches.is_empty() && integrity.starts_with("ok");
                    Ok(TestRestoreReport {
                        snapshot: *id,
                        scratch: shown.clone(),
                        tables_checked,
                        mismatches,
                        integrity,
                        bytes: report.bytes,
                        at: chrono::Utc::now().to_rfc3339(),
                        ok,
                    })
                }
                (Err(e), _) | (_, Err(e)) => Err(JobError::TestRestoreFailed(format!(
                    "the restored copy could not be checked: {e}"
                ))),
            }
        }
    };
    let s = scratch.clone();
    let dropped = tokio::task::spawn_blocking(move || s.drop_database())
        .await
        .map_err(|e| JobError::Invalid(e.to_string()))?;
    let report = result?;
    dropped.map_err(|e| {
        JobError::Invalid(format!(
            "test restore done but the scratch database {shown} could not be dropped: {e}"
        ))
    })?;
    if !report.ok {
        return Err(JobError::TestRestoreFailed(format!(
            "{} table(s) differ from the manifest ({}); integrity check: {}",
            report.mismatches.len(),
            report.mismatches.join("; "),
            report.integrity
        )));
    }
    Ok(report)
}
