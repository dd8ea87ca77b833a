//! `strongroom config check`, `strongroom setup`, `strongroom catalog rebuild` and
//! `strongroom user …`: setting the service up and keeping its catalog right.
//!
//! What these must not do: print a secret (the configuration prints redacted; passwords are
//! read, hashed and dropped), or overwrite a configuration file unless asked.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result, bail};
use chrono::Utc;
use strongroom_catalog::{NewUser, Role};
use strongroom_config::{Config, ProcessEnv};

use crate::cli::{CatalogCommand, ConfigCommand, Global, SetupArgs, UserCommand};
use crate::commands::print_json;
use crate::commands::service::{catalog_shown, load_config, open_catalog, repo_opener};

/// `strongroom config check [FILE]`.
pub async fn config(g: &Global, cmd: ConfigCommand) -> Result<i32> {
    let ConfigCommand::Check { file } = cmd;
    let file = file.or_else(|| g.config.clone());
    let config = match Config::load(file.as_deref(), &ProcessEnv) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            let n = e.problems().len();
            if n > 1 {
                eprintln!("{n} problems; nothing was changed");
            }
            return Ok(1);
        }
    };
    let shown = config
        .file
        .as_deref()
        .map_or_else(|| "the environment".to_owned(), |p| p.display().to_string());
    if g.json {
        let toml_text = config.redacted_toml();
        print_json(&serde_json::json!({ "ok": true, "file": shown, "effective": toml_text }))?;
        return Ok(0);
    }
    eprintln!("{shown}: the configuration is valid");
    if config.repository.location.is_none() {
        eprintln!(
            "note: no repository is configured ([repository] path, or STRONGROOM_REPO); commands need --repo"
        );
    }
    if config.databases.is_empty() && config.media.is_empty() {
        eprintln!(
            "note: no sources: add [[database]] / [[media]], or set DATABASE_URL / MEDIA_ROOT"
        );
    }
    eprintln!("the effective configuration (secrets shown as ***):");
    print!("{}", config.redacted_toml());
    Ok(0)
}

/// Writes `text` to `path` through a temporary file, so a crash leaves the old file or the
/// new one, never half of one.
fn write_file(path: &Path, text: &str) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile_in(dir)?;
    tmp.1.write_all(text.as_bytes())?;
    tmp.1.sync_all()?;
    std::fs::rename(&tmp.0, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

fn tempfile_in(dir: &Path) -> Result<(std::path::PathBuf, std::fs::File)> {
    let p = dir.join(format!(".strongroom-setup-{}.tmp", std::process::id()));
    let f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&p)
        .with_context(|| format!("creating {}", p.display()))?;
    Ok((p, f))
}

/// `strongroom setup`.
pub async fn setup(g: &Global, a: SetupArgs) -> Result<i32> {
    let setup = strongroom_config::setup_defaults(&ProcessEnv)?;
    if a.dry_run {
        for line in &setup.summary {
            eprintln!("would set up {line}");
        }
        print!("{}", setup.toml);
        return Ok(0);
    }
    if a.write.try_exists().unwrap_or(true) && !a.force {
        bail!(
            "{} exists: pass --force to replace it, --write FILE to write elsewhere, or --dry-run to see what would be written",
            a.write.display()
        );
    }
    write_file(&a.write, &setup.toml)?;
    println!("wrote {}", a.write.display());
    let g2 = Global {
        config: Some(a.write.clone()),
        repo: g.repo.clone(),
        password_file: g.password_file.clone(),
        master_key_file: g.master_key_file.clone(),
        cache_dir: g.cache_dir.clone(),
        no_cache: g.no_cache,
        json: g.json,
        quiet: g.quiet,
        loaded_config: std::sync::OnceLock::new(),
    };
    let config = load_config(&g2)?;
    let catalog = open_catalog(&config).await?;
    crate::commands::service::sync_configured(&config, &catalog).await?;
    for line in &setup.summary {
        println!("set up {line}");
    }
    println!("catalog: {}", catalog_shown(&config));
    if config.repository.location.is_none() {
        println!(
            "next: choose a repository (STRONGROOM_REPO or [repository] path), run `strongroom init`, then `strongroom serve --config {}`",
            a.write.display()
        );
    } else {
        println!(
            "next: `strongroom serve --config {}` runs the schedules (run `strongroom init` first if the repository does not exist)",
            a.write.display()
        );
    }
    Ok(0)
}

/// `strongroom catalog rebuild`.
pub async fn catalog(g: &Global, cmd: CatalogCommand) -> Result<i32> {
    let CatalogCommand::Rebuild = cmd;
    let config = load_config(g)?;
    let opener = repo_opener(g, &config).await?;
    let repo = opener.open().await?;
    let catalog = open_catalog(&config).await?;
    let report = strongroom_jobs::runner::cache::rebuild(&repo, &catalog)
        .await
        .context("rebuilding the catalog's snapshot records")?;
    crate::commands::service::sync_configured(&config, &catalog).await?;
    if g.json {
        print_json(&report)?;
    } else {
        println!(
            "catalog {}: {} snapshot record(s) rebuilt from the repository ({} stale removed)",
            catalog_shown(&config),
            report.added,
            report.removed
        );
        for (kind, n) in &report.by_kind {
            println!("  {kind}: {n}");
        }
        for w in &report.warnings {
            eprintln!("warning: {w}");
        }
    }
    Ok(if report.warnings.is_empty() { 0 } else { 1 })
}

/// `strongroom user …`.
pub async fn user(g: &Global, cmd: UserCommand) -> Result<i32> {
    let config = load_config(g)?;
    let catalog = open_catalog(&config).await?;
    match cmd {
        UserCommand::Add {
            username,
            role,
            password,
        } => {
            let role: Role = role
                .parse()
                .map_err(|_| anyhow::anyhow!("--role {role:?}: expected admin, staff or viewer"))?;
            if username.trim().is_empty() || username.chars().any(char::is_whitespace) {
                bail!("the user name must not be empty or contain spaces");
            }
            let pw = crate::password::new_password(password.new_password_file.as_deref())?;
            let pw = String::from_utf8(pw).context("the password is not valid UTF-8")?;
            if pw.chars().count() < 12 {
                bail!("the password is too short: use at least 12 characters");
            }
            let hash = tokio::task::spawn_blocking(move || strongroom_server::hash_password(&pw))
                .await?
                .map_err(|e| anyhow::anyhow!("hashing the password: {e}"))?;
            let user = catalog
                .users()
                .create(
                    &NewUser {
                        username: username.clone(),
                        password_hash: hash,
                        role,
                    },
                    Utc::now(),
                )
                .await
                .with_context(|| format!("adding user {username:?}"))?;
            println!("user {:?} added ({})", user.username, user.role);
        }
        UserCommand::List => {
            let users = catalog.users().list().await?;
            if g.json {
                let rows: Vec<_> = users
                    .iter()
                    .map(|u| {
                        serde_json::json!({
                            "username": u.username,
                            "role": u.role,
                            "disabled": u.disabled,
                            "created_at": u.created_at,
                        })
                    })
                    .collect();
                print_json(&rows)?;
            } else if users.is_empty() {
                println!(
                    "no users (add the first admin with `strongroom user add NAME --role admin`)"
                );
            } else {
                for u in users {
                    println!(
                        "{:<24} {:<7} {}",
                        u.username,
                        u.role.to_string(),
                        if u.disabled { "disabled" } else { "" }
                    );
                }
            }
        }
        UserCommand::Remove { username } => {
            let u = catalog
                .users()
                .find_by_username(&username)
                .await?
                .with_context(|| format!("no user is named {username:?}"))?;
            catalog.users().delete(u.id).await?;
            println!("user {username:?} removed, with their sessions and API tokens");
        }
    }
    Ok(0)
}
