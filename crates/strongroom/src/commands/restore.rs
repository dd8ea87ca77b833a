//! `restore` and `export`.

use std::io::{IsTerminal, Write};

use anyhow::{Context, Result, bail};
use strongroom_repo::restorer::{self, RestoreOptions};

use crate::cli::{ExportArgs, Global, RestoreArgs};
use crate::output::size;

pub async fn restore(g: &Global, a: RestoreArgs) -> Result<i32> {
    let repo = super::open(g).await?;
    // A shared lock: a prune cannot remove data while it is read.
    let guard = super::read_lock(&repo, "restore").await?;
    let result = restore_locked(g, a, &repo).await;
    if let Some(guard) = guard
        && let Err(e) = guard.release().await
    {
        eprintln!("warning: {e}");
    }
    result
}

async fn restore_locked(
    g: &Global,
    a: RestoreArgs,
    repo: &std::sync::Arc<strongroom_repo::Repository>,
) -> Result<i32> {
    if let Some(url) = &a.to_database {
        return super::database::restore_database(g, repo, &a.id, url, a.replace).await;
    }
    let (id, snap) = repo.find_snapshot(&a.id).await?;
    if a.stdout {
        if std::io::stdout().is_terminal() {
            bail!(
                "refusing to write snapshot data to a terminal; redirect standard output to a file"
            );
        }
        let mut out = std::io::stdout().lock();
        let n = restorer::restore_stream(repo, &snap, &mut out)
            .await
            .with_context(|| format!("restoring snapshot {}", id.short()))?;
        out.flush()?;
        if !g.quiet && !g.json {
            eprintln!("restored {} from snapshot {}", size(n), id.short());
        }
        return Ok(0);
    }
    let Some(target) = a.target else {
        bail!("give --target DIR or --stdout")
    };
    let opts = RestoreOptions {
        include: a.include,
        progress: None,
        sparse: a.sparse,
    };
    match restorer::restore_to_dir(repo, &snap, &target, &opts).await {
        Ok(stats) => {
            if g.json {
                super::print_json(&serde_json::json!({
                    "snapshot_id": id, "target": target, "files": stats.files, "dirs": stats.dirs,
                    "symlinks": stats.symlinks, "bytes": stats.bytes,
                }))?;
            } else if !g.quiet {
                println!(
                    "restored snapshot {} to {}: {} files, {} folders, {} symlinks, {}",
                    id.short(),
                    target.display(),
                    stats.files,
                    stats.dirs,
                    stats.symlinks,
                    size(stats.bytes)
                );
            }
            Ok(0)
        }
        Err(e) => Err(e)
            .with_context(|| format!("restoring snapshot {} to {}", id.short(), target.display())),
    }
}

pub async fn export(g: &Global, a: ExportArgs) -> Result<i32> {
    let repo = super::open(g).await?;
    // A shared lock: a prune cannot remove data while it is read.
    let guard = super::read_lock(&repo, "export").await?;
    let result = export_locked(g, a, &repo).await;
    if let Some(guard) = guard
        && let Err(e) = guard.release().await
    {
        eprintln!("warning: {e}");
    }
    result
}

async fn export_locked(
    g: &Global,
    a: ExportArgs,
    repo: &std::sync::Arc<strongroom_repo::Repository>,
) -> Result<i32> {
    let (id, snap) = repo.find_snapshot(&a.id).await?;
    match &a.out {
        None => {
            if std::io::stdout().is_terminal() {
                bail!(
                    "refusing to write an export to a terminal; use --out FILE or redirect standard output"
                );
            }
            strongroom_repo::export::export(repo, &snap, Box::new(std::io::stdout())).await?;
        }
        Some(path) => {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "export".into());
            let partial = path.with_file_name(format!(".{name}.partial"));
            let file = std::fs::File::create(&partial)
                .with_context(|| format!("creating {}", partial.display()))?;
            let res = strongroom_repo::export::export(
                repo,
                &snap,
                Box::new(std::io::BufWriter::new(file)),
            )
            .await;
            match res {
                Ok(n) => {
                    std::fs::rename(&partial, path)
                        .with_context(|| format!("renaming to {}", path.display()))?;
                    if !g.quiet && !g.json {
                        eprintln!(
                            "exported snapshot {} ({} of content) to {}",
                            id.short(),
                            size(n),
                            path.display()
                        );
                    }
                }
                Err(e) => {
                    let _ = std::fs::remove_file(&partial);
                    return Err(e).with_context(|| format!("exporting snapshot {}", id.short()));
                }
            }
        }
    }
    Ok(0)
}
