//! A data pack written to storage blob by blob as a backup seals them, instead of being built
//! whole in memory first (for storage that takes objects in pieces:
//! [`Storage::object_writer`](strongroom_storage::Storage::object_writer)).
//!
//! A backup used to hold up to three 16 MiB packs at once (one filling, two uploading), each
//! fresh memory faulted in page by page and copied once more on its way to the disk. Here a
//! blocking task appends each sealed blob to the storage's writer as it arrives (hashing the
//! bytes as they pass, since a pack is named by their hash), then the trailer, then commits
//! the pack under its name. The pack is durable and visible only after that commit, exactly
//! as with [`Storage::write`](strongroom_storage::Storage::write): the write order of
//! `docs/design/ordering-and-locking.md` does not change.
//!
//! This module must not decide what goes into a pack (the packer does) and must not commit
//! a pack whose end it was not sent: an abandoned pack is removed, never half-stored.

use strongroom_storage::ObjectWriter;
use tokio::sync::mpsc;

use crate::error::{RepoError, Result};
use crate::id::Id;
use crate::pack::PackIdHasher;

/// Pieces queued for the writing task, each about [`BATCH_BYTES`] (a media chunk, or small
/// blobs together): room to keep sealing while the disk takes a pack's fsync.
const QUEUED_PIECES: usize = 16;

/// Blobs smaller than a quarter of this are gathered into pieces of about this size: a dump's
/// 16 KiB chunks, each its own hand-off, would wake the writing task 60 times per MiB.
const BATCH_BYTES: usize = 1 << 20;

/// What the writing task receives.
enum Piece {
    /// A sealed blob's bytes (handed back to the buffer pool once written).
    Blob(Vec<u8>),
    /// The pack's trailer ([`PackBuilder::trailer`](crate::pack::PackBuilder::trailer)):
    /// written last, then the pack is committed.
    End(Vec<u8>),
}

/// One pack being written.
pub(crate) struct PackStream {
    tx: mpsc::Sender<Piece>,
    task: tokio::task::JoinHandle<Result<(Id, u64)>>,
    /// Small blobs gathered for the next piece.
    gathered: Vec<u8>,
}

impl PackStream {
    /// Starts the task writing a pack through `writer`.
    pub(crate) fn start(writer: Box<dyn ObjectWriter>) -> PackStream {
        let (tx, rx) = mpsc::channel(QUEUED_PIECES);
        let task = tokio::task::spawn_blocking(move || write_pack(writer, rx));
        PackStream {
            tx,
            task,
            gathered: Vec::new(),
        }
    }

    /// Queues a sealed blob's bytes; they follow the blobs queued before.
    ///
    /// # Errors
    /// The writer's error when it has stopped.
    pub(crate) async fn blob(&mut self, sealed: Vec<u8>) -> Result<()> {
        if sealed.len() >= BATCH_BYTES / 4 {
            self.send_gathered().await?;
            return self.send(Piece::Blob(sealed)).await;
        }
        if self.gathered.capacity() == 0 {
            self.gathered = crate::buffers::take(BATCH_BYTES + BATCH_BYTES / 4);
        }
        self.gathered.extend_from_slice(&sealed);
        crate::buffers::give(sealed);
        if self.gathered.len() >= BATCH_BYTES {
            self.send_gathered().await?;
        }
        Ok(())
    }

    /// Queues the trailer; the returned future resolves when the pack is committed, with
    /// its id and size.
    ///
    /// # Errors
    /// The writer's error when it has stopped.
    pub(crate) async fn end(
        mut self,
        trailer: Vec<u8>,
    ) -> Result<impl Future<Output = Result<(Id, u64)>> + Send + 'static> {
        self.send_gathered().await?;
        self.send(Piece::End(trailer)).await?;
        let task = self.task;
        Ok(async move {
            task.await
                .map_err(|e| RepoError::Invalid(format!("pack writer failed: {e}")))?
        })
    }

    async fn send_gathered(&mut self) -> Result<()> {
        if self.gathered.is_empty() {
            return Ok(());
        }
        let piece = Piece::Blob(std::mem::take(&mut self.gathered));
        self.send(piece).await
    }

    async fn send(&mut self, piece: Piece) -> Result<()> {
        if self.tx.send(piece).await.is_ok() {
            return Ok(());
        }
        Err(self.stopped().await)
    }

    /// Why the writing task no longer takes pieces.
    async fn stopped(&mut self) -> RepoError {
        match (&mut self.task).await {
            Ok(Err(e)) => e,
            Ok(Ok(_)) => RepoError::Invalid("the pack writer ended before the pack did".into()),
            Err(e) => RepoError::Invalid(format!("pack writer failed: {e}")),
        }
    }
}

/// The writing task: blobs, then the trailer, then the commit under the pack's hash.
fn write_pack(
    mut writer: Box<dyn ObjectWriter>,
    mut rx: mpsc::Receiver<Piece>,
) -> Result<(Id, u64)> {
    let mut hasher = PackIdHasher::default();
    let mut size = 0u64;
    let mut append = |bytes: &[u8], writer: &mut Box<dyn ObjectWriter>| -> Result<()> {
        hasher.update(bytes);
        size += bytes.len() as u64;
        writer
            .write(bytes)
            .map_err(RepoError::storage("writing a pack"))
    };
    loop {
        match rx.blocking_recv() {
            Some(Piece::Blob(bytes)) => {
                append(&bytes, &mut writer)?;
                crate::buffers::give(bytes);
            }
            Some(Piece::End(trailer)) => {
                append(&trailer, &mut writer)?;
                break;
            }
            // The packer went away (its backup failed): the writer, dropped, removes what
            // it wrote.
            None => return Err(RepoError::Invalid("pack abandoned before its end".into())),
        }
    }
    let id = hasher.finish();
    writer
        .commit(&id.to_hex())
        .map_err(RepoError::storage(format!("writing pack {}", id.short())))?;
    Ok((id, size))
}
