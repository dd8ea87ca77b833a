//! Database and full backups, database restores, test restores, imports and health probes.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use strongroom_jobs::database::{self, DatabaseMeta};
use strongroom_jobs::full::{self, BackupType, RunOptions, Sources};
use strongroom_jobs::runner::NamedMedia;
use strongroom_repo::archiver::Progress;
use strongroom_repo::exclude::Excludes;
use strongroom_repo::{Repository, lock};
use strongroom_sources::DatabaseSource;

use crate::cli::{BackupArgs, DatabasesArgs, Global, ImportArgs};
use crate::output::{ProgressBar, size};

fn split_named(v: &str) -> (Option<&str>, &str) {
    match v.split_once('=') {
        Some((n, rest)) if !n.is_empty() && !n.contains(':') && !n.contains('/') => (Some(n), rest),
        _ => (None, v),
    }
}

/// The databases named by flags, else by the configuration file (`--config`), else by
/// DATABASE_URL.
pub fn databases(g: &Global, a: &DatabasesArgs) -> Result<Vec<(String, DatabaseSource)>> {
    let mut out = Vec::new();
    for v in &a.databases {
        let (name, url) = split_named(v);
        let src = DatabaseSource::parse(url)
            .with_context(|| format!("--database {}", name.unwrap_or("")))?;
        let name = name.map(str::to_owned).unwrap_or_else(|| {
            let d = src.url().database();
            std::path::Path::new(d)
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| d.to_owned())
        });
        if out.iter().any(|(n, _)| *n == name) {
            bail!("two databases are named {name:?}; name them with NAME=URL");
        }
        out.push((name, src));
    }
    if out.is_empty() && g.config.is_some() {
        // The same sources the service's jobs use (parallel dumps, their temporary folder).
        let config = super::service::load_config(g)?;
        let sources = strongroom_jobs::runner::JobSources::from_config(&config)?;
        return Ok(sources
            .databases
            .into_iter()
            .map(|d| (d.name, d.source))
            .collect());
    }
    if out.is_empty()
        && let Ok(url) = std::env::var("DATABASE_URL")
        && !url.is_empty()
    {
        let src = DatabaseSource::parse(&url).context("DATABASE_URL")?;
        out.push(("default".to_owned(), src));
    }
    Ok(out)
}

/// The media folders named by flags, else by the configuration file, else by MEDIA_ROOT;
/// `--exclude` patterns are added to each one's own.
fn media(g: &Global, list: &[String], exclude: &[String]) -> Result<Vec<NamedMedia>> {
    Excludes::new(exclude).map_err(|e| anyhow::anyhow!("--exclude {e}"))?;
    let mut out = Vec::new();
    for v in list {
        let (name, dir) = split_named(v);
        let path = PathBuf::from(dir);
        let name = name.map(str::to_owned).unwrap_or_else(|| {
            path.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "media".into())
        });
        out.push(NamedMedia {
            name,
            path,
            exclude: Vec::new(),
        });
    }
    if out.is_empty() && g.config.is_some() {
        let config = super::service::load_config(g)?;
        out = config
            .media
            .iter()
            .map(|m| NamedMedia {
                name: m.name.clone(),
                path: m.path.clone(),
                exclude: m.exclude.clone(),
            })
            .collect();
    } else if out.is_empty()
        && let Some(root) = std::env::var_os("MEDIA_ROOT")
        && !root.is_empty()
    {
        out.push(NamedMedia {
            name: "media".to_owned(),
            path: PathBuf::from(root),
            exclude: Vec::new(),
        });
    }
    for m in &mut out {
        m.exclude.extend_from_slice(exclude);
    }
    Ok(out)
}

pub async fn typed_backup(g: &Global, a: BackupArgs, kind: &str) -> Result<i32> {
    let backup_type = match kind {
        "full" => BackupType::Full,
        "database" | "db" => BackupType::Database,
        "media" => BackupType::Media,
        other => bail!("--type {other:?} is not known: use full, database or media"),
    };
    let mut dbs = databases(g, &a.dbs)?;
    if let Some(jobs) = a.pg_jobs {
        for (_, src) in &mut dbs {
            *src = src.clone().with_parallel_jobs(jobs);
        }
    }
    let sources = Sources {
        databases: dbs,
        media: media(g, &a.media, &a.exclude)?,
    };
    let mut scratch = Vec::new();
    for u in &a.scratch_url {
        scratch.push(DatabaseSource::parse(u).context("--scratch-url")?);
    }
    let repo = super::open(g).await?;
    let progress = Arc::new(Progress::default());
    let opts = RunOptions {
        verify: a.verify,
        test_restore: a.test_restore,
        scratch,
        tags: a.tags.clone(),
        progress: Some(Arc::clone(&progress)),
    };
    let guard = lock::lock(&repo, false, "backup").await?;
    let bar = ProgressBar::start(&progress, g.quiet || g.json);
    let point = full::run(&repo, &guard, &sources, backup_type, &opts).await;
    bar.finish();
    if let Err(e) = guard.release().await {
        eprintln!("warning: {e}");
    }
    let point = point?;
    if g.json {
        super::print_json(&serde_json::json!({ "ok": point.ok(), "recovery_point": point }))?;
    } else if !g.quiet {
        println!(
            "recovery point {} ({:?}): {} part(s)",
            point.id,
            point.backup_type,
            point.parts.len()
        );
        for p in &point.parts {
            let status = match (&p.error, p.verified, &p.test_restore) {
                (Some(e), _, _) => format!("FAILED: {e}"),
                (None, _, Some(t)) => {
                    format!("ok, test restore proved {} tables", t.tables_checked)
                }
                (None, Some(true), None) => "ok, verified".to_owned(),
                _ => "ok".to_owned(),
            };
            println!(
                "  {:<8} {:<16} {} {:>11} ({} stored)  {}",
                p.kind,
                p.name,
                p.snapshot
                    .map(|s| s.short())
                    .unwrap_or_else(|| "--------".into()),
                size(p.size),
                size(p.stored),
                status
            );
        }
    }
    for p in &point.parts {
        for w in &p.warnings {
            eprintln!("warning: {w}");
        }
    }
    if !point.ok() {
        // Say why here too: with --quiet or --json nothing else reaches stderr.
        let failed: Vec<String> = point
            .parts
            .iter()
            .filter_map(|p| {
                p.error
                    .as_ref()
                    .map(|e| format!("{} {}: {e}", p.kind, p.name))
            })
            .collect();
        let msg = format!(
            "the backup failed ({}); earlier backups are untouched",
            failed.join("; ")
        );
        if g.json {
            // The recovery point is on stdout already: keep stdout a single JSON document.
            eprintln!("error: {msg}");
            return Ok(1);
        }
        bail!(msg);
    }
    Ok(if point.has_warnings() {
        crate::EXIT_PARTIAL
    } else {
        0
    })
}

pub async fn restore_database(
    g: &Global,
    repo: &Arc<Repository>,
    query: &str,
    url: &str,
    replace: bool,
) -> Result<i32> {
    let target = DatabaseSource::parse(url).context("--to-database")?;
    let (id, snap) = repo.find_snapshot(query).await?;
    let meta = DatabaseMeta::of(&snap)
        .with_context(|| format!("snapshot {} is not a database backup", id.short()))?;
    if replace {
        let guard = lock::lock(repo, false, "safety backup before restore").await?;
        let safety = database::safety_backup(repo, &guard, &meta.name, &target).await;
        let _ = guard.release().await;
        match safety.context(
            "taking the safety backup of the database to be replaced (nothing was changed)",
        )? {
            Some((sid, _)) => {
                if !g.quiet {
                    eprintln!(
                        "safety backup of {} taken: snapshot {}",
                        target.url(),
                        sid.short()
                    );
                }
            }
            None => {
                if !g.quiet {
                    eprintln!(
                        "{} does not exist yet: no safety backup needed",
                        target.url()
                    );
                }
            }
        }
    }
    let report = database::restore(repo, &id, &snap, &target, replace)
        .await
        .with_context(|| format!("restoring snapshot {} into {}", id.short(), target.url()))?;
    if g.json {
        super::print_json(&serde_json::json!({ "snapshot_id": id, "report": report }))?;
    } else if !g.quiet {
        println!(
            "restored snapshot {} into {} ({} of dump)",
            id.short(),
            report.target,
            size(report.bytes)
        );
        if let Some(r) = &report.replaced {
            println!("the previous database: {r:?}");
        }
    }
    Ok(0)
}

pub async fn verify_one(
    g: &Global,
    repo: &Arc<Repository>,
    query: &str,
    test_restore: bool,
    scratch: Option<&str>,
) -> Result<i32> {
    let (id, snap) = repo.find_snapshot(query).await?;
    let errors = strongroom_repo::checker::verify_snapshot(repo, &snap).await?;
    if !errors.is_empty() {
        for e in &errors {
            eprintln!("error: {e}");
        }
        bail!(
            "snapshot {} is damaged: {} problem(s)",
            id.short(),
            errors.len()
        );
    }
    let mut report = None;
    if test_restore {
        let server = match scratch {
            Some(u) => Some(DatabaseSource::parse(u).context("--scratch-url")?),
            None => databases(g, &DatabasesArgs::default())?
                .into_iter()
                .next()
                .map(|(_, s)| s),
        };
        let r = database::test_restore(repo, &id, &snap, server.as_ref())
            .await
            .with_context(|| format!("test restore of snapshot {}", id.short()))?;
        report = Some(r);
    }
    if g.json {
        super::print_json(
            &serde_json::json!({ "snapshot_id": id, "ok": true, "test_restore": report }),
        )?;
    } else if !g.quiet {
        println!("snapshot {}: every blob read and authenticated", id.short());
        if let Some(r) = &report {
            println!(
                "test restore into {}: {} tables match the manifest, integrity check: {}",
                r.scratch, r.tables_checked, r.integrity
            );
        }
    }
    Ok(0)
}

pub async fn import(g: &Global, a: ImportArgs) -> Result<i32> {
    if a.kind != "database" {
        bail!(
            "--type {:?} cannot be imported yet: only database dumps",
            a.kind
        );
    }
    let repo = super::open(g).await?;
    let guard = lock::lock(&repo, false, "import").await?;
    let res = database::import(&repo, &guard, &a.name, &a.file).await;
    let _ = guard.release().await;
    let (id, snap) = res.with_context(|| format!("importing {}", a.file.display()))?;
    if g.json {
        super::print_json(
            &serde_json::json!({ "snapshot_id": id, "source": snap.source, "size": snap.size() }),
        )?;
    } else if !g.quiet {
        println!(
            "imported {} as snapshot {} ({})",
            a.file.display(),
            id.short(),
            size(snap.size())
        );
    }
    Ok(0)
}

pub async fn health(g: &Global, a: DatabasesArgs) -> Result<i32> {
    let dbs = databases(g, &a)?;
    if dbs.is_empty() {
        bail!("no database configured: give --database URL or set DATABASE_URL");
    }
    let mut reports = Vec::new();
    for (name, src) in dbs {
        let r = tokio::task::spawn_blocking(move || src.probe()).await?;
        reports.push((name, r));
    }
    let all_ok = reports.iter().all(|(_, r)| r.reachable);
    if g.json {
        let v: Vec<_> = reports
            .iter()
            .map(|(n, r)| serde_json::json!({ "name": n, "health": r }))
            .collect();
        super::print_json(&v)?;
    } else {
        for (n, r) in &reports {
            if r.reachable {
                println!(
                    "{n}: up, {} ms, {} , size {}, connections {}/{}",
                    r.latency_ms.map(|l| format!("{l:.1}")).unwrap_or_default(),
                    r.version.clone().unwrap_or_default(),
                    r.size_bytes.map(size).unwrap_or_default(),
                    r.total_connections
                        .map(|c| c.to_string())
                        .unwrap_or_default(),
                    r.max_connections.map(|c| c.to_string()).unwrap_or_default()
                );
            } else {
                println!("{n}: DOWN: {}", r.error.clone().unwrap_or_default());
            }
        }
    }
    Ok(if all_ok { 0 } else { 1 })
}
