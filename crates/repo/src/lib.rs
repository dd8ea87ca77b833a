//! The Strongroom repository engine.
//!
//! Content-addressed and append-only, after restic's proven design with modern primitives:
//! files and streams are cut into chunks (FastCDC; line-anchored for dumps), each identified
//! by a keyed BLAKE3 hash, compressed with zstd where that helps, sealed with AES-256-GCM
//! (random nonce, object type and id bound as associated data) and grouped into packs; index
//! files map blobs to packs; trees list folders, and content lists the chunks of large files;
//! snapshots name a root tree. The format is specified in
//! `docs/design/repository-format.md`.
//!
//! The engine sees storage only through [`strongroom_storage::Storage`] and must not know
//! which backend it has. It knows nothing of databases, catalogs or HTTP.

pub mod archiver;
pub mod buffers;
pub mod checker;
pub mod chunker;
pub mod compress;
pub mod content;
pub mod crypto;
pub mod error;
pub mod exclude;
pub mod export;
pub mod folder_cache;
pub mod id;
pub mod index;
pub mod lock;
pub mod master_key_file;
pub mod pack;
mod pack_stream;
pub mod prune;
pub mod repository;
pub mod restorer;
pub mod retention;
pub mod snapshot;
pub mod snapshot_cache;
pub mod stats;
pub mod tree;

pub use error::{RepoError, Result};
pub use id::Id;
pub use master_key_file::MasterKeyFile;
pub use repository::{Credential, InitOptions, Repository};
pub use snapshot::{Snapshot, SnapshotKind};

/// Gives back what a backup, restore or verify keeps for the next one in the same process:
/// the buffer pool (up to [`buffers::POOL_BYTES`]) and the idle zstd contexts. The service
/// calls it when a job ends, so that between jobs it holds only what it needs to serve.
pub fn release_idle_memory() {
    buffers::release();
    compress::release_idle_contexts();
}
