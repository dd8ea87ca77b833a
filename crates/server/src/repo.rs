//! What the server needs from the repository, behind a narrow trait ([`RepoAccess`]): look a
//! snapshot up, and export it as plain bytes (a stream's bytes, a tar of a folder). The real
//! implementation, [`RepositoryAccess`], wraps `strongroom_repo::Repository` and holds a shared
//! lock while exporting so a prune cannot remove data being read.
//!
//! Must not write to the repository; restores and deletions are jobs run by the workers.

use std::io::Write;
use std::sync::Arc;

use async_trait::async_trait;
use strongroom_repo::{RepoError, Repository, SnapshotKind};

/// A snapshot, as the server shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SnapshotInfo {
    /// Full id (hex).
    pub id: String,
    /// "files" or "stream".
    pub kind: String,
    /// What was backed up (paths or the stream name).
    pub source: String,
    /// When (RFC 3339).
    pub time: String,
    /// Total size of its content in bytes.
    pub total_bytes: u64,
}

impl SnapshotInfo {
    /// A file name for a download of it.
    pub fn download_name(&self) -> String {
        let short: String = self.id.chars().take(8).collect();
        let base: String = self
            .source
            .rsplit('/')
            .next()
            .unwrap_or("backup")
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "._-".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .take(80)
            .collect();
        let base = if base.is_empty() {
            "backup".to_owned()
        } else {
            base
        };
        if self.kind == "stream" {
            format!("{base}-{short}")
        } else {
            format!("{base}-{short}.tar")
        }
    }

    /// The content type of a download of it.
    pub fn content_type(&self) -> &'static str {
        if self.kind == "stream" {
            "application/octet-stream"
        } else {
            "application/x-tar"
        }
    }
}

/// Errors of repository access.
#[derive(Debug, thiserror::Error)]
pub enum RepoAccessError {
    /// No such snapshot.
    #[error("snapshot not found in the repository")]
    NotFound,
    /// The repository failed (the text is internal: logged, not sent).
    #[error("{0}")]
    Failed(String),
}

/// The repository operations the server uses.
#[async_trait]
pub trait RepoAccess: Send + Sync {
    /// The snapshot with this id (or unique prefix).
    async fn snapshot(&self, id: &str) -> Result<SnapshotInfo, RepoAccessError>;

    /// Writes the snapshot's export to `out` and returns the bytes written. Implementations
    /// must write from a blocking thread (`out` may block while the client is slow).
    async fn export(&self, id: &str, out: Box<dyn Write + Send>) -> Result<u64, RepoAccessError>;

    /// The bytes of every object the repository holds, from its storage's listing: the size
    /// of a repository that is not a local folder (an S3 bucket). Implementations without a
    /// storage to list say so with an error (the size is then shown as unknown).
    async fn stored_bytes(&self) -> Result<u64, RepoAccessError> {
        Err(RepoAccessError::Failed(
            "this repository access cannot list its storage".into(),
        ))
    }
}

/// [`RepoAccess`] over an open repository.
#[derive(Clone)]
pub struct RepositoryAccess {
    repo: Arc<Repository>,
}

impl RepositoryAccess {
    /// Wraps an open repository.
    pub fn new(repo: Arc<Repository>) -> Self {
        RepositoryAccess { repo }
    }
}

fn map_err(e: RepoError) -> RepoAccessError {
    match e {
        RepoError::SnapshotNotFound(_) | RepoError::AmbiguousSnapshot(..) => {
            RepoAccessError::NotFound
        }
        other => RepoAccessError::Failed(other.to_string()),
    }
}

#[async_trait]
impl RepoAccess for RepositoryAccess {
    async fn stored_bytes(&self) -> Result<u64, RepoAccessError> {
        let storage = self.repo.storage();
        let mut total = 0u64;
        for kind in strongroom_storage::Kind::ALL {
            let listed = storage
                .list(kind)
                .await
                .map_err(|e| RepoAccessError::Failed(e.to_string()))?;
            total += listed.iter().map(|o| o.size).sum::<u64>();
        }
        Ok(total)
    }

    async fn snapshot(&self, id: &str) -> Result<SnapshotInfo, RepoAccessError> {
        let (id, snap) = self.repo.find_snapshot(id).await.map_err(map_err)?;
        Ok(SnapshotInfo {
            id: id.to_string(),
            kind: match snap.kind {
                SnapshotKind::Files => "files".to_owned(),
                SnapshotKind::Stream => "stream".to_owned(),
            },
            source: snap.source.clone(),
            time: snap.time.clone(),
            total_bytes: snap.summary.total_bytes,
        })
    }

    async fn export(&self, id: &str, out: Box<dyn Write + Send>) -> Result<u64, RepoAccessError> {
        let guard = strongroom_repo::lock::lock(&self.repo, false, "export")
            .await
            .map_err(map_err)?;
        let result = async {
            let (_, snap) = self.repo.find_snapshot(id).await.map_err(map_err)?;
            strongroom_repo::export::export(&self.repo, &snap, out)
                .await
                .map_err(map_err)
        }
        .await;
        if let Err(e) = guard.release().await {
            tracing::warn!(error = %e, "could not release the export lock");
        }
        result
    }
}

/// A `Write` that sends 64 KiB chunks into a channel (the download body). Writing blocks
/// while the client is slow, so memory stays bounded; it fails once the client is gone.
pub(crate) struct ChannelWriter {
    pub(crate) tx: tokio::sync::mpsc::Sender<Result<bytes::Bytes, std::io::Error>>,
    pub(crate) buf: Vec<u8>,
}

const CHUNK: usize = 64 * 1024;

impl ChannelWriter {
    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = bytes::Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        self.tx.blocking_send(Ok(chunk)).map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the client went away")
        })
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strongroom_repo::InitOptions;
    use strongroom_repo::crypto::KdfParams;
    use strongroom_storage::memory::MemoryStorage;
    use strongroom_storage::{Kind, Storage};

    #[tokio::test]
    async fn stored_bytes_is_the_sum_of_every_object() {
        let mem = MemoryStorage::new();
        let storage: Arc<dyn Storage> = Arc::new(mem.clone());
        let repo = Repository::init(
            Arc::clone(&storage),
            b"stored bytes test",
            InitOptions {
                kdf: KdfParams::MINIMUM,
                ..Default::default()
            },
        )
        .await
        .unwrap();
        let access = RepositoryAccess::new(Arc::new(repo));
        let mut expected = 0;
        for kind in Kind::ALL {
            expected += storage
                .list(kind)
                .await
                .unwrap()
                .iter()
                .map(|o| o.size)
                .sum::<u64>();
        }
        assert!(expected > 0, "a new repository has a config and a key");
        assert_eq!(access.stored_bytes().await.unwrap(), expected);
        storage
            .write(Kind::Pack, "abcdef", bytes::Bytes::from(vec![7u8; 1000]))
            .await
            .unwrap();
        assert_eq!(access.stored_bytes().await.unwrap(), expected + 1000);
    }
}
