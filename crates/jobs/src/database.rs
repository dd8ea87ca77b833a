//! Database backups, restores, test restores and imports.
//!
//! A database snapshot is a stream snapshot holding the engine's own dump (PostgreSQL custom
//! archive without compression, MySQL/MariaDB SQL script, SQLite database file), so an
//! export is exactly what `pg_restore`, `mariadb` or `sqlite3` take. Its `meta` records:
//! `{"type": "database", "name", "engine", "manifest", "globals_sql"?, "recovery_point"?,
//! "imported_from"?, "format"?, "jobs"?}`. A backup is committed only after the dump tool
//! exited 0 and the manifest was read; otherwise no snapshot exists.
//!
//! A PostgreSQL source set to dump in parallel ([`DatabaseSource::with_parallel_jobs`] > 1)
//! is instead dumped with `pg_dump -Fd -j N -Z0` into a private temporary folder, which is
//! backed up as a folder snapshot holding one folder, `<name>.pgdir` (`"format":
//! "directory"`, `"jobs": N`), and removed afterwards whatever happened. Its restore puts the
//! folder back in a private temporary folder and runs `pg_restore -Fd -j N`; its export is a
//! tar that unpacks to that folder, for `pg_restore -Fd`.

use std::io::Read;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use strongroom_repo::archiver::{self, BackupOptions, Progress};
use strongroom_repo::lock::LockGuard;
use strongroom_repo::restorer::{self, BlobReader};
use strongroom_repo::{Id, Repository, Snapshot, SnapshotKind};
use strongroom_sources::{
    DatabaseSource, DatabaseUrl, Engine, Manifest, PrivateDir, RestoreOptions, RestoreReport,
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
    /// How the dump is stored: absent for one stream (archive, script or file),
    /// [`DIRECTORY_FORMAT`] for a PostgreSQL parallel dump stored as a folder snapshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    /// The `pg_dump -j` workers of a directory dump; its restore uses as many.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jobs: Option<u32>,
}

/// [`DatabaseMeta::format`] of a PostgreSQL directory-format dump (`pg_dump -Fd`).
pub const DIRECTORY_FORMAT: &str = "directory";

impl DatabaseMeta {
    /// Reads the database meta of a snapshot, if it is a database snapshot.
    #[must_use]
    pub fn of(snap: &Snapshot) -> Option<DatabaseMeta> {
        if snap.meta.get("type").and_then(|t| t.as_str()) != Some("database") {
            return None;
        }
        let meta: DatabaseMeta = serde_json::from_value(snap.meta.clone()).ok()?;
        let fits = match snap.kind {
            SnapshotKind::Stream => meta.format.is_none(),
            SnapshotKind::Files => meta.is_directory(),
        };
        fits.then_some(meta)
    }

    /// True for a PostgreSQL directory-format dump (a folder snapshot).
    #[must_use]
    pub fn is_directory(&self) -> bool {
        self.engine == Engine::Postgres && self.format.as_deref() == Some(DIRECTORY_FORMAT)
    }
}

fn safe_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The folder a directory-format dump is stored as: `<name>.pgdir`.
#[must_use]
pub fn directory_name(name: &str) -> String {
    format!("{}.pgdir", safe_name(name))
}

/// The file name a dump is stored under.
#[must_use]
pub fn stream_name(name: &str, engine: Engine) -> String {
    let ext = match engine {
        Engine::Postgres => "dump",
        Engine::Mysql => "sql",
        Engine::Sqlite => "sqlite",
    };
    format!("{}.{ext}", safe_name(name))
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
    if source.dumps_in_parallel() {
        return backup_directory(repo, lock, name, source, opts).await;
    }
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
            format: None,
            jobs: None,
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

/// A parallel dump (`pg_dump -Fd -j N`) backed up as a folder snapshot; see the module
/// documentation. The snapshot is kept only when every file of the dump was stored whole.
async fn backup_directory(
    repo: &Arc<Repository>,
    lock: &LockGuard,
    name: &str,
    source: &DatabaseSource,
    opts: DatabaseBackupOptions,
) -> Result<(Id, Snapshot)> {
    let src = source.clone();
    let folder = directory_name(name);
    let dump = tokio::task::spawn_blocking(move || src.dump_directory(&folder))
        .await
        .map_err(|e| JobError::Invalid(e.to_string()))??;
    let meta = DatabaseMeta {
        kind: "database".into(),
        name: name.to_owned(),
        engine: source.engine(),
        manifest: Some(dump.outcome.manifest.clone()),
        globals_sql: dump
            .outcome
            .globals_sql
            .as_ref()
            .map(|g| String::from_utf8_lossy(g).into_owned()),
        recovery_point: opts.recovery_point.clone(),
        imported_from: None,
        format: Some(DIRECTORY_FORMAT.into()),
        jobs: Some(dump.jobs),
    };
    let meta = serde_json::to_value(meta).map_err(|e| JobError::Invalid(e.to_string()))?;
    let mut tags = opts.tags.clone();
    tags.push("database".into());
    let bopts = BackupOptions {
        tags,
        meta,
        // The folder is new every time: never trust a parent's file metadata.
        force_read: true,
        // Not the temporary folder's path, gone after the backup.
        source_name: Some(directory_name(name)),
        progress: opts.progress.clone(),
        ..BackupOptions::default()
    };
    let (files, bytes) = (dump.files, dump.bytes);
    let path = dump.path().to_path_buf();
    let res = archiver::backup_paths(repo, lock, &[path], bopts).await;
    // Removing it is best effort: a failure leaves a private folder, not a wrong backup.
    let _ = tokio::task::spawn_blocking(move || dump.remove()).await;
    let (id, snap) = res?;
    let s = &snap.summary;
    if !s.warnings.is_empty() || s.files != files || s.total_bytes != bytes {
        // A database dump is whole or worthless: never keep one missing a file.
        let _ = repo.delete_snapshot(&id).await;
        return Err(JobError::Invalid(format!(
            "the parallel dump was not stored whole ({} of {files} files, {} of {bytes} bytes{}); \
             no snapshot was kept",
            s.files,
            s.total_bytes,
            if s.warnings.is_empty() {
                String::new()
            } else {
                format!(": {}", s.warnings.join("; "))
            }
        )));
    }
    Ok((id, snap))
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
        format: None,
        jobs: None,
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
    if meta.is_directory() {
        return restore_directory(repo, snap, &meta, target, replace).await;
    }
    let node = restorer::stream_node(repo, snap).await?;
    let content = repo.file_content(&node).await?;
    let reader = BlobReader::new(
        Arc::clone(repo),
        tokio::runtime::Handle::current(),
        content,
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

/// Restores a directory-format snapshot: its folder into a private temporary folder (in the
/// target's tools' temporary directory, removed afterwards), then `pg_restore -Fd -j N`.
async fn restore_directory(
    repo: &Arc<Repository>,
    snap: &Snapshot,
    meta: &DatabaseMeta,
    target: &DatabaseSource,
    replace: bool,
) -> Result<RestoreReport> {
    // On a blocking thread throughout: the folder restore's future is not `Send`, and
    // `pg_restore` blocks.
    let repo = Arc::clone(repo);
    let snap = snap.clone();
    let handle = tokio::runtime::Handle::current();
    let target = target.clone();
    let jobs = meta.jobs.unwrap_or(1);
    let name = meta.name.clone();
    tokio::task::spawn_blocking(move || {
        let tmp = PrivateDir::new(target.tools(), "pgrestore")?;
        let restored = handle.block_on(restorer::restore_to_dir(
            &repo,
            &snap,
            tmp.path(),
            &restorer::RestoreOptions::default(),
        ));
        let result = match restored {
            Err(e) => Err(JobError::from(e)),
            Ok(stats) if !stats.failures.is_empty() => Err(JobError::Invalid(format!(
                "the dump folder did not restore whole: {}",
                stats.failures.join("; ")
            ))),
            Ok(_) => archive_folder(tmp.path(), &name).and_then(|dir| {
                target
                    .restore_directory(&dir, jobs, &RestoreOptions { replace })
                    .map_err(JobError::from)
            }),
        };
        // Best effort: the folder is private, and dropping it removes it anyway.
        let _ = tmp.remove();
        result
    })
    .await
    .map_err(|e| JobError::Invalid(e.to_string()))?
}

/// The one folder a directory-format snapshot restores to (normally `<name>.pgdir`).
fn archive_folder(root: &std::path::Path, name: &str) -> Result<std::path::PathBuf> {
    let expected = root.join(directory_name(name));
    if expected.is_dir() {
        return Ok(expected);
    }
    let dirs: Vec<_> = std::fs::read_dir(root)
        .map_err(|e| JobError::Invalid(format!("reading {}: {e}", root.display())))?
        .filter_map(std::result::Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect();
    match <[_; 1]>::try_from(dirs) {
        Ok([dir]) => Ok(dir),
        Err(dirs) => Err(JobError::Invalid(format!(
            "a directory-format database snapshot holds one folder; this one holds {}",
            dirs.len()
        ))),
    }
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
