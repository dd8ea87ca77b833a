//! One module per command; `run` dispatches. Shared here: opening the repository.

mod admin;
mod backup;
pub mod database;
mod forget;
mod key;
mod restore;
mod schedule;
pub mod service;
mod snapshots;
mod verify;

use std::sync::Arc;

use anyhow::{Context, Result, bail};
use strongroom_repo::{Credential, Repository};
use strongroom_storage::Storage;

use crate::cli::{Cli, Command, Global};

/// Runs a command; returns the exit code.
pub async fn run(cli: Cli) -> Result<i32> {
    let g = &cli.global;
    match cli.command {
        Command::Init(a) => backup::init(g, a).await,
        Command::Backup(a) => backup::backup(g, a).await,
        Command::Snapshots(a) => snapshots::list(g, a).await,
        Command::Restore(a) => restore::restore(g, a).await,
        Command::Export(a) => restore::export(g, a).await,
        Command::Verify(a) => verify::verify(g, a).await,
        Command::Forget(a) => forget::forget(g, a).await,
        Command::Prune(a) => forget::prune_cmd(g, a).await,
        Command::Stats => snapshots::stats(g).await,
        Command::Key(k) => key::key(g, k).await,
        Command::Unlock(a) => key::unlock(g, a).await,
        Command::Import(a) => database::import(g, a).await,
        Command::Health(a) => database::health(g, a).await,
        Command::Serve(a) => service::serve(g, a).await,
        Command::Config(c) => admin::config(g, c).await,
        Command::Setup(a) => admin::setup(g, a).await,
        Command::Schedule(c) => schedule::schedule(g, c).await,
        Command::Jobs(a) => schedule::jobs(g, a).await,
        Command::Catalog(c) => admin::catalog(g, c).await,
        Command::User(c) => admin::user(g, c).await,
    }
}

/// The storage named by `--repo` (or, with a configuration file, its `[repository]`).
pub fn storage(g: &Global) -> Result<Arc<dyn Storage>> {
    let Some(repo) = g.repo.as_deref() else {
        if g.config.is_some() {
            return service::repo_storage(&service::load_config(g)?);
        }
        bail!(
            "no repository given: pass --repo PATH or set STRONGROOM_REPO (or give --config FILE)"
        );
    };
    if repo.trim().is_empty() {
        bail!("--repo is empty");
    }
    service::location_storage(&service::repo_flag_location(repo)?)
}

/// The repository's folder when it is a local one (`--repo`, else the configuration's).
pub fn local_repo_folder(g: &Global) -> Result<Option<std::path::PathBuf>> {
    let location = match g.repo.as_deref() {
        Some(r) => service::repo_flag_location(r)?,
        None if g.config.is_some() => match &service::load_config(g)?.repository.location {
            Some(l) => l.clone(),
            None => return Ok(None),
        },
        None => return Ok(None),
    };
    Ok(match location {
        strongroom_config::RepoLocation::Path(p) => Some(p),
        strongroom_config::RepoLocation::S3 { .. } => None,
    })
}

/// What opens the repository: `--master-key-file` or `--password-file` when given; else,
/// with a configuration file, its `[repository]` settings; else `STRONGROOM_PASSWORD` or a
/// prompt.
pub fn credential(g: &Global) -> Result<Credential> {
    if g.config.is_some() && g.master_key_file.is_none() && g.password_file.is_none() {
        return service::repo_credential(g, &service::load_config(g)?);
    }
    flag_credential(g)
}

/// What the command line says opens the repository: `--master-key-file`, else
/// `--password-file`, `STRONGROOM_PASSWORD` or a prompt.
pub fn flag_credential(g: &Global) -> Result<Credential> {
    if let Some(f) = &g.master_key_file {
        return crate::password::master_key_credential(f);
    }
    Ok(Credential::Password(crate::password::repository(
        g.password_file.as_deref(),
        false,
    )?))
}

/// Opens the repository with the password and loads its index.
pub async fn open(g: &Global) -> Result<Arc<Repository>> {
    let repo = open_without_index(g).await?;
    for w in repo.load_index().await.context("loading the index")? {
        eprintln!("warning: {w}");
    }
    Ok(repo)
}

/// Opens the repository without loading its index, for commands that read only snapshots,
/// keys or locks (listing snapshots of a large repository reads no index files).
pub async fn open_without_index(g: &Global) -> Result<Arc<Repository>> {
    open_storage_without_index(g, storage(g)?).await
}

/// [`open_without_index`] for a storage the caller already has.
pub async fn open_storage_without_index(
    g: &Global,
    storage: Arc<dyn Storage>,
) -> Result<Arc<Repository>> {
    let location = storage.location();
    let credential = credential(g)?;
    let mut repo = Repository::open_with(storage, &credential)
        .await
        .with_context(|| format!("opening repository {location}"))?;
    if let Some(dir) = cache_dir(g)? {
        repo.use_snapshot_cache(&dir);
    }
    Ok(Arc::new(repo))
}

/// The local cache folder: `--cache-dir` (or `STRONGROOM_CACHE_DIR`); with a configuration
/// file, its `cache_dir` (and the fallbacks the configuration resolves); else
/// `$XDG_CACHE_HOME/strongroom`, else `~/.cache/strongroom`, else `.strongroom-cache` here.
///
/// # Errors
/// When the configuration file given cannot be loaded.
pub fn cache_root(g: &Global) -> Result<std::path::PathBuf> {
    if let Some(dir) = &g.cache_dir {
        return Ok(dir.clone());
    }
    if g.config.is_some() {
        return Ok(service::load_config(g)?.cache_dir);
    }
    let from_env = |name: &str| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(std::path::PathBuf::from)
    };
    Ok(from_env("XDG_CACHE_HOME")
        .map(|d| d.join("strongroom"))
        .or_else(|| from_env("HOME").map(|h| h.join(".cache").join("strongroom")))
        .unwrap_or_else(|| std::path::PathBuf::from(".strongroom-cache")))
}

/// Where decoded snapshots are cached: the cache folder, or none with `--no-cache`.
fn cache_dir(g: &Global) -> Result<Option<std::path::PathBuf>> {
    if g.no_cache {
        return Ok(None);
    }
    cache_root(g).map(Some)
}

/// A shared lock for reading (restore, export, verify). When the lock file cannot be written
/// because the repository's disk is full or read-only, reading goes on without it, with a
/// warning: a recovery must not be blocked by a full disk.
pub async fn read_lock(
    repo: &Repository,
    purpose: &str,
) -> Result<Option<strongroom_repo::lock::LockGuard>> {
    match strongroom_repo::lock::lock(repo, false, purpose).await {
        Ok(g) => Ok(Some(g)),
        Err(e @ strongroom_repo::RepoError::Storage { .. }) if cannot_write(&e) => {
            eprintln!("warning: reading without a lock ({e}); do not run prune at the same time");
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

fn cannot_write(e: &strongroom_repo::RepoError) -> bool {
    use std::error::Error as _;
    if e.is_out_of_space() {
        return true;
    }
    let mut src = e.source();
    while let Some(s) = src {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            // EROFS (read-only file system), EACCES/EPERM (no write permission).
            return matches!(io.raw_os_error(), Some(30 | 13 | 1));
        }
        src = s.source();
    }
    false
}

/// Prints JSON on stdout.
pub fn print_json(v: &impl serde::Serialize) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}
