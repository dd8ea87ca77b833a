//! `key list|add|remove|passwd|export-master` and `unlock`.

use anyhow::{Context, Result, bail};
use strongroom_repo::crypto::{KdfParams, KeyFile};
use strongroom_repo::lock;
use strongroom_storage::Kind;

use crate::cli::{Global, KeyCommand, UnlockArgs};

pub async fn key(g: &Global, k: KeyCommand) -> Result<i32> {
    let repo = super::open_without_index(g).await?;
    match k {
        KeyCommand::List => {
            let keys = repo.storage().list(Kind::Key).await?;
            let mut rows = Vec::new();
            for f in keys {
                let bytes = repo.storage().read(Kind::Key, &f.name).await?;
                let current = repo.key_id().is_some_and(|k| f.name == k.to_hex());
                match KeyFile::parse(&bytes) {
                    Ok(kf) => rows.push(serde_json::json!({
                        "id": f.name, "current": current, "created": kf.header.created,
                        "host": kf.header.host, "user": kf.header.user,
                    })),
                    Err(e) => rows.push(serde_json::json!({ "id": f.name, "current": current, "error": e.to_string() })),
                }
            }
            if g.json {
                super::print_json(&rows)?;
            } else {
                for r in rows {
                    println!(
                        "{} {:<8} {} {}@{}",
                        if r["current"].as_bool().unwrap_or(false) {
                            "*"
                        } else {
                            " "
                        },
                        r["id"].as_str().unwrap_or("").get(..8).unwrap_or(""),
                        r["created"]
                            .as_str()
                            .unwrap_or(r["error"].as_str().unwrap_or("")),
                        r["user"].as_str().unwrap_or(""),
                        r["host"].as_str().unwrap_or("")
                    );
                }
            }
        }
        KeyCommand::Add(a) => {
            let pw = crate::password::new_password(a.new_password_file.as_deref())?;
            let id = repo.add_key(&pw, KdfParams::DEFAULT).await?;
            println!("added key {}", id.short());
        }
        KeyCommand::Remove { id } => {
            let keys = repo.storage().list(Kind::Key).await?;
            let matches: Vec<_> = keys
                .iter()
                .filter(|k| k.name.starts_with(&id.to_ascii_lowercase()))
                .collect();
            let [one] = matches.as_slice() else {
                bail!(
                    "{id:?} matches {} keys; give a unique prefix (see `strongroom key list`)",
                    matches.len()
                );
            };
            let kid = strongroom_repo::Id::from_hex(&one.name)?;
            if repo.key_id() == Some(kid) {
                bail!(
                    "refusing to remove the key in use; open the repository with another password first"
                );
            }
            repo.remove_key(&kid).await?;
            println!("removed key {}", kid.short());
        }
        KeyCommand::Passwd(a) => {
            let pw = crate::password::new_password(a.new_password_file.as_deref())?;
            let mut r = std::sync::Arc::try_unwrap(repo)
                .map_err(|_| anyhow::anyhow!("repository in use"))?;
            let id = r
                .change_password(&pw, KdfParams::DEFAULT)
                .await
                .context("changing the password")?;
            println!("password changed (new key {})", id.short());
        }
        KeyCommand::ExportMaster { file } => {
            // The key beside the data it opens would open it for whoever can read the
            // storage (or a copy of it): refused.
            if let Some(root) = super::local_repo_folder(g)? {
                let parent = match file.parent() {
                    Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
                    _ => std::path::PathBuf::from("."),
                };
                if let (Ok(parent), Ok(root)) = (parent.canonicalize(), root.canonicalize())
                    && parent.starts_with(&root)
                {
                    bail!(
                        "{} is inside the repository ({}): whoever can read the repository could \
                         then read every backup; write the master key file somewhere else",
                        file.display(),
                        root.display()
                    );
                }
            }
            let master = repo.master_key_file();
            crate::password::write_master_key_file(&file, &master)?;
            if !g.quiet {
                println!(
                    "wrote the master key of repository {} to {}; open it with \
                     --master-key-file {} (or STRONGROOM_MASTER_KEY_FILE). Whoever reads that \
                     file can read and delete every backup, even after the passwords change.",
                    master.repository().short(),
                    file.display(),
                    file.display()
                );
            }
        }
    }
    Ok(0)
}

pub async fn unlock(g: &Global, a: UnlockArgs) -> Result<i32> {
    let repo = super::open_without_index(g).await?;
    let n = lock::unlock(&repo, a.remove_all).await?;
    if !g.quiet {
        println!("removed {n} lock(s)");
    }
    Ok(0)
}
