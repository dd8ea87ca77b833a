//! The engine's error type: what went wrong, on which object or path, and what to do.

use std::path::PathBuf;

use strongroom_storage::StorageError;

/// Errors of repository operations.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RepoError {
    /// A storage operation failed.
    #[error("{context}: {source}")]
    Storage {
        /// What was being done.
        context: String,
        /// The storage error.
        #[source]
        source: StorageError,
    },
    /// The location holds no repository.
    #[error(
        "{0} is not a Strongroom repository (no config found); create one with `strongroom init`"
    )]
    NotARepository(String),
    /// The location already holds a repository.
    #[error("{0} already holds a repository")]
    AlreadyInitialised(String),
    /// No key file opens with the given password.
    #[error(
        "wrong password: none of the {0} key file(s) of this repository opens with it (or a key file was modified)"
    )]
    WrongPassword(usize),
    /// The repository's config does not open with the master key file given.
    #[error(
        "the master key file (for repository {repository}) does not open the repository at \
         {location}: it belongs to another repository, or this repository's config is damaged"
    )]
    MasterKeyMismatch {
        /// Where the repository is.
        location: String,
        /// The repository id the master key file names.
        repository: String,
    },
    /// A key file is damaged or was tampered with.
    #[error("key file keys/{name} is damaged or was tampered with: {detail}")]
    KeyFileDamaged {
        /// Key file name.
        name: String,
        /// What is wrong.
        detail: String,
    },
    /// An object failed authentication or decoding.
    #[error("{what} is damaged: {detail}")]
    Corrupt {
        /// Which object, e.g. "pack 1a2b3c4d" or "snapshot 5e6f7a8b".
        what: String,
        /// What is wrong.
        detail: String,
    },
    /// A blob is not in the index.
    #[error("blob {0} is missing from the repository index")]
    BlobMissing(String),
    /// The repository is locked by someone else.
    #[error(
        "repository is locked {0}; wait for it to finish (or, if that process is gone, run `strongroom unlock`)"
    )]
    Locked(String),
    /// Our lock could not be kept (refresh failed, or it was removed).
    #[error("the repository lock was lost ({0}); nothing was committed")]
    LockLost(String),
    /// No snapshot matches.
    #[error("no snapshot matches {0:?}; list them with `strongroom snapshots`")]
    SnapshotNotFound(String),
    /// Several snapshots match a prefix.
    #[error("{0:?} matches {1} snapshots; give more digits")]
    AmbiguousSnapshot(String, usize),
    /// Local file-system I/O failed.
    #[error("{context} {path}: {source}")]
    Io {
        /// What was being done.
        context: &'static str,
        /// On which path.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The caller asked for something invalid.
    #[error("{0}")]
    Invalid(String),
    /// Some files could not be restored (the others were).
    #[error("{failed} of {total} files could not be restored; first: {first}")]
    PartialRestore {
        /// Number of failures.
        failed: usize,
        /// Number attempted.
        total: usize,
        /// The first failure, naming the file.
        first: String,
        /// Every failure, each naming its file (or folder) first.
        failures: Vec<String>,
    },
    /// The operation was cancelled.
    #[error("cancelled")]
    Cancelled,
}

impl RepoError {
    /// Wraps a storage error with what was being done.
    pub fn storage(context: impl Into<String>) -> impl FnOnce(StorageError) -> RepoError {
        let context = context.into();
        move |source| RepoError::Storage { context, source }
    }

    /// A local I/O error on a path.
    pub fn io(
        context: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> RepoError {
        let path = path.into();
        move |source| RepoError::Io {
            context,
            path,
            source,
        }
    }

    /// True when the storage device is out of space.
    #[must_use]
    pub fn is_out_of_space(&self) -> bool {
        match self {
            RepoError::Storage { source, .. } => source.is_out_of_space(),
            RepoError::Io { source, .. } => source.raw_os_error() == Some(28),
            _ => false,
        }
    }
}

/// Result alias.
pub type Result<T, E = RepoError> = std::result::Result<T, E>;
