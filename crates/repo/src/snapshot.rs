//! Snapshots (one backup: a root tree plus who, when, what) and the repository config.
//!
//! Both are JSON, sealed under their name: a snapshot under its random id, the config under
//! the all-zero id. Pure encoding; no I/O.

use serde::{Deserialize, Serialize};

use crate::chunker::ChunkerParams;
use crate::id::Id;

/// What a snapshot holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SnapshotKind {
    /// Folders and files.
    Files,
    /// A single stream (e.g. a database dump read from stdin) stored as one file.
    Stream,
}

/// Totals recorded with a snapshot.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// Files seen.
    pub files: u64,
    /// Directories seen.
    pub dirs: u64,
    /// Files read because they were new or changed.
    pub files_read: u64,
    /// Files whose content was taken from the parent without reading them.
    pub files_unchanged: u64,
    /// Total size of all files in the snapshot.
    pub total_bytes: u64,
    /// Bytes actually read from the source.
    pub bytes_read: u64,
    /// New blobs added.
    pub blobs_added: u64,
    /// Plaintext bytes of new blobs.
    pub bytes_added: u64,
    /// Bytes the new blobs take in the repository (compressed, sealed).
    pub bytes_stored: u64,
    /// Files skipped or read inconsistently, with the reason.
    pub warnings: Vec<String>,
    /// Informational notes (e.g. the parent could not be read, so every file was read).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// When reading started (RFC 3339).
    pub started: String,
    /// When the snapshot was committed (RFC 3339).
    pub finished: String,
}

/// A snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Format version (1).
    pub version: u32,
    /// When the backup started (RFC 3339, UTC).
    pub time: String,
    /// Files or stream.
    pub kind: SnapshotKind,
    /// What was backed up: the paths joined by ", " or the stream's name.
    pub source: String,
    /// The absolute paths backed up (files), or the stream name.
    pub paths: Vec<String>,
    /// Host name.
    pub host: String,
    /// User name.
    pub user: String,
    /// Tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Root tree.
    pub tree: Id,
    /// The snapshot this one was made against (for unchanged-file detection).
    #[serde(default)]
    pub parent: Option<Id>,
    /// Totals.
    pub summary: Summary,
    /// Program and version that wrote it.
    pub program: String,
    /// Free-form details from the source (e.g. a database manifest).
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub meta: serde_json::Value,
}

impl Snapshot {
    /// Total size of the snapshot's content.
    #[must_use]
    pub fn size(&self) -> u64 {
        self.summary.total_bytes
    }

    /// The time as a parsed timestamp.
    #[must_use]
    pub fn timestamp(&self) -> chrono::DateTime<chrono::Utc> {
        chrono::DateTime::parse_from_rfc3339(&self.time)
            .map(|t| t.with_timezone(&chrono::Utc))
            .unwrap_or_default()
    }
}

/// The repository configuration, written once by `init`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Repository format version (1).
    pub version: u32,
    /// Repository id (random).
    pub id: Id,
    /// When created.
    pub created: String,
    /// Seed of the chunker's gear table (keeps boundaries secret).
    pub chunker_seed: u64,
    /// Chunker bounds for files.
    pub chunker_files: ChunkerParams,
    /// Chunker bounds for streams and dumps.
    pub chunker_streams: ChunkerParams,
    /// Target pack size in bytes.
    pub pack_size: u32,
}

impl Config {
    /// The format version this build reads and writes.
    pub const VERSION: u32 = 1;
    /// Default target pack size: 16 MiB.
    pub const DEFAULT_PACK_SIZE: u32 = 16 * 1024 * 1024;
    /// Largest target pack size accepted: 256 MiB.
    pub const MAX_PACK_SIZE: u32 = 256 * 1024 * 1024;
}
