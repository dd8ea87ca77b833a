//! Repository locks: shared for backups, exclusive for forget and prune.
//!
//! A lock is a sealed JSON file under `locks/` naming the host, process and time. It is
//! refreshed (a new file written, then the old one deleted) every [`REFRESH`] while held.
//! A lock is stale when it was not refreshed for [`STALE_AFTER`], or when it belongs to this
//! host and its process no longer exists; a live holder's lock is never broken. Stale locks
//! are ignored, and removed when an exclusive lock is taken.
//!
//! Acquisition: check, write ours, check again (so two racing exclusive lockers both back
//! off rather than both proceed).

use std::sync::{Arc, Mutex};

use std::time::Duration;
use tokio::sync::Mutex as AsyncMutex;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use strongroom_storage::{Kind, Storage};

use crate::crypto::{MasterKey, ObjectType};
use crate::error::{RepoError, Result};
use crate::id::Id;
use crate::repository::{Repository, hostname, now_rfc3339, username};

/// How often a held lock is refreshed.
pub const REFRESH: Duration = Duration::from_secs(5 * 60);
/// After how long without refresh a lock is stale.
pub const STALE_AFTER: Duration = Duration::from_secs(30 * 60);

/// The content of a lock file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockInfo {
    /// Exclusive (prune, forget) or shared (backup).
    pub exclusive: bool,
    /// Host name.
    pub host: String,
    /// Process id.
    pub pid: u32,
    /// User.
    pub user: String,
    /// When written (RFC 3339).
    pub time: String,
    /// What the holder is doing.
    pub purpose: String,
}

impl LockInfo {
    fn describe(&self) -> String {
        format!(
            "{} by {} (pid {} on {}, user {}, since {})",
            if self.exclusive {
                "exclusively"
            } else {
                "for a backup"
            },
            self.purpose,
            self.pid,
            self.host,
            self.user,
            self.time
        )
    }

    /// True when the lock is stale (see the module docs).
    #[must_use]
    pub fn is_stale(&self, now: chrono::DateTime<chrono::Utc>) -> bool {
        let age = chrono::DateTime::parse_from_rfc3339(&self.time)
            .map(|t| now.signed_duration_since(t.with_timezone(&chrono::Utc)))
            .ok();
        let too_old = match age {
            Some(a) => a.to_std().map(|a| a > STALE_AFTER).unwrap_or(false),
            None => true,
        };
        too_old || (self.host == hostname() && !process_exists(self.pid))
    }
}

/// True when a process with this pid exists on this host.
#[must_use]
pub fn process_exists(pid: u32) -> bool {
    if pid == std::process::id() {
        return true;
    }
    let proc = std::path::Path::new("/proc");
    if !proc.join("self").exists() {
        return true; // cannot tell: assume alive
    }
    // A zombie (killed, not yet reaped) is gone for our purposes.
    match std::fs::read_to_string(proc.join(pid.to_string()).join("stat")) {
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

fn seal_lock(key: &MasterKey, id: &Id, info: &LockInfo) -> Result<Vec<u8>> {
    let plain = serde_json::to_vec(info).map_err(|e| RepoError::Invalid(e.to_string()))?;
    Ok(key.seal(ObjectType::Lock, id, &plain))
}

/// Reads every lock file: (name, info or the reason it cannot be read).
///
/// # Errors
/// When the lock files cannot be listed.
pub async fn list_locks(
    repo: &Repository,
) -> Result<Vec<(String, std::result::Result<LockInfo, String>)>> {
    let storage = repo.storage();
    let files = storage
        .list(Kind::Lock)
        .await
        .map_err(RepoError::storage("listing locks"))?;
    let mut out = Vec::new();
    for f in files {
        let info = match storage.read(Kind::Lock, &f.name).await {
            Ok(b) => Id::from_hex(&f.name)
                .map_err(|e| e.to_string())
                .and_then(|id| {
                    repo.key()
                        .open(ObjectType::Lock, &id, &b)
                        .map_err(|e| e.to_string())
                })
                .and_then(|p| serde_json::from_slice::<LockInfo>(&p).map_err(|e| e.to_string())),
            // Removed between list and read: released.
            Err(e) if e.is_not_found() => continue,
            Err(e) => {
                return Err(RepoError::Storage {
                    context: "reading lock".into(),
                    source: e,
                });
            }
        };
        out.push((f.name, info));
    }
    Ok(out)
}

/// A held lock. Release it with [`LockGuard::release`]; if the process dies instead, the
/// lock becomes stale.
#[derive(Debug)]
pub struct LockGuard {
    storage: Arc<dyn Storage>,
    /// Name of our current lock file; held by the refresher while it swaps files.
    current: Arc<AsyncMutex<String>>,
    lost: Arc<Mutex<Option<String>>>,
    refresher: tokio::task::JoinHandle<()>,
}

impl LockGuard {
    /// Why the lock was lost, if a refresh failed (no storage access; cheap enough to call
    /// often).
    #[must_use]
    pub fn lost_reason(&self) -> Option<String> {
        self.lost.lock().ok().and_then(|g| g.clone())
    }

    /// Fails when the lock could not be refreshed or was removed by someone else.
    ///
    /// # Errors
    /// [`RepoError::LockLost`].
    pub async fn check(&self) -> Result<()> {
        if let Some(why) = self.lost.lock().ok().and_then(|g| g.clone()) {
            return Err(RepoError::LockLost(why));
        }
        let name = self.current.lock().await.clone();
        match self.storage.read(Kind::Lock, &name).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => {
                Err(RepoError::LockLost("our lock file was removed".into()))
            }
            Err(e) => Err(RepoError::LockLost(format!(
                "cannot read our lock file: {e}"
            ))),
        }
    }

    /// Stops refreshing and deletes the lock file.
    ///
    /// # Errors
    /// When the lock file cannot be deleted.
    pub async fn release(self) -> Result<()> {
        // Wait for a refresh in progress, so that no new lock file appears after this.
        let name = {
            let guard = self.current.lock().await;
            self.refresher.abort();
            guard.clone()
        };
        match self.storage.delete(Kind::Lock, &name).await {
            Ok(()) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(RepoError::Storage {
                context: "removing lock".into(),
                source: e,
            }),
        }
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        self.refresher.abort();
    }
}

fn conflicts(mine_exclusive: bool, theirs: &LockInfo) -> bool {
    mine_exclusive || theirs.exclusive
}

/// Takes a lock on the repository.
///
/// # Errors
/// [`RepoError::Locked`] naming the holder when a conflicting live lock exists.
pub async fn lock(repo: &Repository, exclusive: bool, purpose: &str) -> Result<LockGuard> {
    check_conflicts(repo, exclusive, None).await?;
    let info = LockInfo {
        exclusive,
        host: hostname(),
        pid: std::process::id(),
        user: username(),
        time: now_rfc3339(),
        purpose: purpose.into(),
    };
    let id = Id::random();
    let storage = Arc::clone(repo.storage());
    storage
        .write(
            Kind::Lock,
            &id.to_hex(),
            Bytes::from(seal_lock(repo.key(), &id, &info)?),
        )
        .await
        .map_err(RepoError::storage("writing lock"))?;
    if let Err(e) = check_conflicts(repo, exclusive, Some(&id.to_hex())).await {
        let _ = storage.delete(Kind::Lock, &id.to_hex()).await;
        return Err(e);
    }
    let current = Arc::new(AsyncMutex::new(id.to_hex()));
    let lost = Arc::new(Mutex::new(None));
    let refresher = tokio::spawn(refresh_loop(
        Arc::clone(&storage),
        repo.key().clone(),
        info,
        Arc::clone(&current),
        Arc::clone(&lost),
    ));
    Ok(LockGuard {
        storage,
        current,
        lost,
        refresher,
    })
}

async fn check_conflicts(repo: &Repository, exclusive: bool, mine: Option<&str>) -> Result<()> {
    let now = chrono::Utc::now();
    for (name, info) in list_locks(repo).await? {
        if Some(name.as_str()) == mine {
            continue;
        }
        match info {
            Ok(info) if info.is_stale(now) => {
                if exclusive {
                    let _ = repo.storage().delete(Kind::Lock, &name).await;
                }
            }
            Ok(info) if conflicts(exclusive, &info) => {
                return Err(RepoError::Locked(info.describe()));
            }
            Ok(_) => {}
            Err(why) => {
                return Err(RepoError::Locked(format!(
                    "by an unreadable lock file locks/{name} ({why})"
                )));
            }
        }
    }
    Ok(())
}

async fn refresh_loop(
    storage: Arc<dyn Storage>,
    key: MasterKey,
    mut info: LockInfo,
    current: Arc<AsyncMutex<String>>,
    lost: Arc<Mutex<Option<String>>>,
) {
    loop {
        tokio::time::sleep(REFRESH).await;
        let mut name = current.lock().await;
        info.time = now_rfc3339();
        let id = Id::random();
        let res = async {
            // Someone removed our lock (e.g. judged it stale): it must not come back.
            match storage.read(Kind::Lock, &name).await {
                Ok(_) => {}
                Err(e) if e.is_not_found() => {
                    return Err(RepoError::LockLost(
                        "our lock file was removed by another process".into(),
                    ));
                }
                Err(e) => return Err(RepoError::storage("checking our lock")(e)),
            }
            let sealed = seal_lock(&key, &id, &info)?;
            storage
                .write(Kind::Lock, &id.to_hex(), Bytes::from(sealed))
                .await
                .map_err(RepoError::storage("refreshing lock"))
        }
        .await;
        match res {
            Ok(()) => {
                let old = std::mem::replace(&mut *name, id.to_hex());
                if let Err(e) = storage.delete(Kind::Lock, &old).await {
                    if let Ok(mut g) = lost.lock() {
                        *g = Some(format!("could not replace our lock file: {e}"));
                    }
                    return;
                }
            }
            Err(e) => {
                if let Ok(mut g) = lost.lock() {
                    *g = Some(e.to_string());
                }
                return;
            }
        }
    }
}

/// Removes stale locks (or all locks with `all`); returns how many were removed.
///
/// # Errors
/// When the locks cannot be listed or deleted.
pub async fn unlock(repo: &Repository, all: bool) -> Result<usize> {
    let now = chrono::Utc::now();
    let mut n = 0;
    for (name, info) in list_locks(repo).await? {
        // An unreadable lock file may belong to a live process: only --remove-all removes it.
        let remove = all || info.as_ref().is_ok_and(|i| i.is_stale(now));
        if remove {
            repo.storage()
                .delete(Kind::Lock, &name)
                .await
                .map_err(RepoError::storage(format!("removing lock {name}")))?;
            n += 1;
        }
    }
    Ok(n)
}
