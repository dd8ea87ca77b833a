//! `init` and `backup`.

use std::sync::Arc;

use anyhow::{Context, Result, bail};
use strongroom_repo::archiver::{self, BackupOptions, Progress};
use strongroom_repo::crypto::KdfParams;
use strongroom_repo::exclude::Excludes;
use strongroom_repo::{InitOptions, Repository, lock};

use crate::cli::{BackupArgs, Global, InitArgs};
use crate::output::{ProgressBar, size};

pub async fn init(g: &Global, a: InitArgs) -> Result<i32> {
    let storage = super::storage(g)?;
    let location = storage.location();
    let password = if g.config.is_some() && g.password_file.is_none() {
        let config = super::service::load_config(g)?;
        match config.repository.password(&strongroom_config::ProcessEnv)? {
            Some(p) => p.expose().as_bytes().to_vec(),
            None => crate::password::repository(None, true)?,
        }
    } else {
        crate::password::repository(g.password_file.as_deref(), true)?
    };
    let kdf = KdfParams {
        m_kib: a.kdf_memory_mib.saturating_mul(1024),
        t: a.kdf_passes,
        p: 1,
    };
    if kdf.m_kib < KdfParams::MINIMUM.m_kib || kdf.t < KdfParams::MINIMUM.t {
        bail!("--kdf-memory-mib must be at least 19 and --kdf-passes at least 2");
    }
    let mut opts = InitOptions {
        kdf,
        ..InitOptions::default()
    };
    if let Some(p) = a.pack_size {
        if p < 4096 {
            bail!("--pack-size must be at least 4096 bytes");
        }
        opts.pack_size = p;
    }
    let repo = Repository::init(storage, &password, opts)
        .await
        .with_context(|| format!("creating repository at {location}"))?;
    if g.json {
        super::print_json(&serde_json::json!({ "id": repo.config().id, "location": location }))?;
    } else if !g.quiet {
        println!(
            "created repository {} at {location}",
            repo.config().id.short()
        );
        println!("keep the password safe: without it the backups cannot be read.");
    }
    Ok(0)
}

pub async fn backup(g: &Global, a: BackupArgs) -> Result<i32> {
    if let Some(kind) = a.backup_type.clone() {
        return super::database::typed_backup(g, a, &kind).await;
    }
    if a.paths.is_empty() && a.stdin.is_none() {
        bail!(
            "nothing to back up: give --path DIR (repeatable), --stdin NAME, or --type full|database|media"
        );
    }
    // The backup loads the index under its lock (an index read before it could list blobs
    // a prune has since removed): loading it here too read a large index twice.
    let repo = super::open_without_index(g).await?;
    let parent = match &a.parent {
        Some(p) => Some(repo.find_snapshot(p).await?.0),
        None => None,
    };
    if a.stdin.is_some() && !a.exclude.is_empty() {
        bail!("--exclude applies to --path folders, not to --stdin");
    }
    let exclude = Excludes::new(&a.exclude).map_err(|e| anyhow::anyhow!("--exclude {e}"))?;
    let progress = Arc::new(Progress::default());
    let opts = BackupOptions {
        tags: a.tags.clone(),
        parent,
        force_read: a.force,
        exclude,
        host: a.host.clone(),
        progress: Some(Arc::clone(&progress)),
        ..BackupOptions::default()
    };
    let guard = lock::lock(&repo, false, "backup").await?;
    let bar = ProgressBar::start(&progress, g.quiet || g.json);
    let result = match &a.stdin {
        Some(name) => {
            // A pipe (`pg_dump … | strongroom backup --stdin`) is read in large gulps.
            let input: Box<dyn std::io::Read + Send> =
                Box::new(strongroom_sources::PipeReader::new(std::io::stdin()));
            archiver::backup_stream(&repo, &guard, name, input, opts).await
        }
        None => archiver::backup_paths(&repo, &guard, &a.paths, opts).await,
    };
    bar.finish();
    let released = guard.release().await;
    let (id, snap) = result.context("backup failed; no snapshot was saved")?;
    if let Err(e) = released {
        eprintln!("warning: {e}");
    }
    let s = &snap.summary;
    for w in &s.warnings {
        eprintln!("warning: {w}");
    }
    if g.json {
        super::print_json(&serde_json::json!({
            "snapshot_id": id,
            "short_id": id.short(),
            "time": snap.time,
            "kind": snap.kind,
            "source": snap.source,
            "size": snap.size(),
            "summary": s,
        }))?;
    } else if !g.quiet {
        println!(
            "snapshot {} saved: {} files ({} read, {} unchanged), {} total, {} new data, {} stored",
            id.short(),
            s.files,
            s.files_read,
            s.files_unchanged,
            size(s.total_bytes),
            size(s.bytes_added),
            size(s.bytes_stored)
        );
    }
    if s.warnings.is_empty() {
        Ok(0)
    } else {
        eprintln!(
            "snapshot saved, but {} file(s) could not be read completely (see warnings above)",
            s.warnings.len()
        );
        Ok(crate::EXIT_PARTIAL)
    }
}
