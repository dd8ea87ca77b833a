//! Object storage for a Strongroom repository, behind one narrow async trait.
//!
//! The repository engine sees storage only through [`Storage`]: list, read, read a range,
//! write (create once) and delete objects named by a kind and a name. Implementations:
//! a local directory ([`local::LocalStorage`]), an S3-compatible bucket ([`s3::S3Storage`]),
//! memory ([`memory::MemoryStorage`]), and for
//! tests a fault-injecting wrapper ([`faulty::FaultyStorage`]) and a crash-simulating store
//! ([`crash::CrashStorage`]).
//!
//! This crate must not know anything about packs, blobs, encryption or snapshots: it moves
//! opaque bytes under names.

use async_trait::async_trait;
use bytes::Bytes;

pub mod crash;
pub mod direct;
pub mod faulty;
pub mod local;
pub mod memory;
pub mod s3;

/// The kinds of object a repository stores; each lives in its own namespace (folder).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// The repository configuration (a single object named `config`).
    Config,
    /// Key files: the master key wrapped by a password-derived key.
    Key,
    /// Pack files holding encrypted blobs.
    Pack,
    /// Index files mapping blobs to packs.
    Index,
    /// Snapshot files.
    Snapshot,
    /// Lock files.
    Lock,
}

impl Kind {
    /// All kinds, in a fixed order.
    pub const ALL: [Kind; 6] = [
        Kind::Config,
        Kind::Key,
        Kind::Pack,
        Kind::Index,
        Kind::Snapshot,
        Kind::Lock,
    ];

    /// The folder name used by path-based backends.
    #[must_use]
    pub fn dir(self) -> &'static str {
        match self {
            Kind::Config => "",
            Kind::Key => "keys",
            Kind::Pack => "data",
            Kind::Index => "index",
            Kind::Snapshot => "snapshots",
            Kind::Lock => "locks",
        }
    }
}

/// One object found by [`Storage::list`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// The object's name within its kind.
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
}

/// Errors from a storage backend.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// The object does not exist.
    #[error("{kind:?} object {name} not found")]
    NotFound {
        /// Kind of the missing object.
        kind: Kind,
        /// Name of the missing object.
        name: String,
    },
    /// A write was refused because an object of that name already exists (objects are
    /// write-once).
    #[error("{kind:?} object {name} already exists")]
    AlreadyExists {
        /// Kind of the object.
        kind: Kind,
        /// Name of the object.
        name: String,
    },
    /// The object name is not acceptable (empty, contains a separator, ...).
    #[error("invalid object name {0:?}")]
    InvalidName(String),
    /// A range read went past the end of the object.
    #[error("range {offset}+{length} is past the end of {kind:?} object {name} ({size} bytes)")]
    OutOfRange {
        /// Kind of the object.
        kind: Kind,
        /// Name of the object.
        name: String,
        /// Requested offset.
        offset: u64,
        /// Requested length.
        length: u64,
        /// Actual size.
        size: u64,
    },
    /// An I/O error, with what was being done.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, e.g. "writing data/ab/abcd…".
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A remote store answered with an error, or could not be reached (after retries).
    #[error("{context}: {detail}")]
    Remote {
        /// What was being done, and where.
        context: String,
        /// What went wrong: the HTTP status and the server's error code and message, or the
        /// transport error.
        detail: String,
    },
    /// The backend's settings are missing or invalid (nothing was sent).
    #[error("storage settings: {0}")]
    Settings(String),
    /// An injected or simulated failure (test backends only).
    #[error("injected fault: {0}")]
    Injected(String),
    /// The simulated process has crashed; nothing more is accepted (test backends only).
    #[error("simulated crash")]
    Crashed,
}

impl StorageError {
    /// True when the object was not found.
    #[must_use]
    pub fn is_not_found(&self) -> bool {
        matches!(self, StorageError::NotFound { .. })
    }

    /// True when the storage device is out of space.
    #[must_use]
    pub fn is_out_of_space(&self) -> bool {
        match self {
            StorageError::Io { source, .. } => {
                source.raw_os_error() == Some(28) // ENOSPC
                    || source.kind() == std::io::ErrorKind::StorageFull
            }
            _ => false,
        }
    }
}

/// Result alias for storage operations.
pub type Result<T> = std::result::Result<T, StorageError>;

/// The narrow object-store interface the repository engine uses.
///
/// Semantics every implementation keeps (checked by the conformance suite in
/// `tests/conformance.rs`):
/// - `write` is atomic and durable when it returns: a reader sees either no object or the
///   whole object, never a part, and after a crash an acknowledged write is still there.
///   Writing a name that exists fails with [`StorageError::AlreadyExists`] (objects are
///   write-once; nothing is ever modified in place).
/// - `list` returns every object of a kind, sorted by name, with its size; an error means
///   the listing is unusable (callers that delete must then delete nothing).
/// - `delete` of a missing object is [`StorageError::NotFound`].
#[async_trait]
pub trait Storage: Send + Sync + std::fmt::Debug {
    /// A short human description, e.g. `local:/srv/backups`.
    fn location(&self) -> String;

    /// Lists all objects of a kind, sorted by name.
    async fn list(&self, kind: Kind) -> Result<Vec<ObjectInfo>>;

    /// The names of all objects of a kind, sorted: what [`Storage::list`] returns without the
    /// sizes. A backend overrides it where sizes cost extra (a local folder: a `stat` per
    /// file).
    async fn list_names(&self, kind: Kind) -> Result<Vec<String>> {
        Ok(self.list(kind).await?.into_iter().map(|o| o.name).collect())
    }

    /// Reads a whole object.
    async fn read(&self, kind: Kind, name: &str) -> Result<Bytes>;

    /// Reads several whole objects of one kind: each result in the place of its name, an
    /// error for one not failing the others. The default reads them one after another with
    /// [`Storage::read`]; a backend overrides it where many small reads at once cost less
    /// (the local one reads them all in one blocking task instead of a hand-off per file).
    async fn read_many(&self, kind: Kind, names: &[String]) -> Vec<Result<Bytes>> {
        let mut out = Vec::with_capacity(names.len());
        for name in names {
            out.push(self.read(kind, name).await);
        }
        out
    }

    /// Reads a whole object into `buf` (its contents replaced), reusing its memory where
    /// the backend can: a caller that reads many large objects one after another (verify
    /// reads every pack) then does not fault in fresh pages for each. The default reads with
    /// [`Storage::read`] and returns that buffer instead.
    async fn read_into(&self, kind: Kind, name: &str, buf: Vec<u8>) -> Result<Vec<u8>> {
        drop(buf);
        Ok(Vec::from(self.read(kind, name).await?))
    }

    /// Whether each request costs a round trip over a network (an object store): callers
    /// then read more per request, e.g. a whole pack of trees instead of one tree at a time.
    /// Local storage answers small reads from the page cache and says no.
    fn requests_are_costly(&self) -> bool {
        false
    }

    /// Reads `length` bytes at `offset`; fails with [`StorageError::OutOfRange`] when the
    /// object is shorter.
    async fn read_range(&self, kind: Kind, name: &str, offset: u64, length: u64) -> Result<Bytes>;

    /// Writes a whole object atomically and durably.
    async fn write(&self, kind: Kind, name: &str, data: Bytes) -> Result<()>;

    /// A writer for one new object of `kind` that arrives in pieces and is named only at its
    /// end (a pack is named by the hash of its bytes), so that the caller need not hold the
    /// whole object in memory; `None` where the backend cannot take an object in pieces
    /// (the caller then builds it in memory and calls [`Storage::write`]). Creating one does
    /// no I/O. The object it commits keeps every promise of [`Storage::write`].
    fn object_writer(&self, kind: Kind) -> Option<Box<dyn ObjectWriter>> {
        let _ = kind;
        None
    }

    /// Deletes an object.
    async fn delete(&self, kind: Kind, name: &str) -> Result<()>;

    /// Prepares an empty repository location (creates folders); fails when the location
    /// already holds a repository config.
    async fn create(&self) -> Result<()>;
}

/// One new object written in pieces (see [`Storage::object_writer`]).
///
/// Every call blocks on I/O: run it on a blocking thread, never on the async runtime. Until
/// [`ObjectWriter::commit`] returns, no reader sees the object; a writer dropped without a
/// commit (or whose commit failed) leaves nothing behind.
pub trait ObjectWriter: Send {
    /// Appends `data` to the object.
    ///
    /// # Errors
    /// The backend's write error; the writer is then unusable (drop it).
    fn write(&mut self, data: &[u8]) -> Result<()>;

    /// Makes the bytes written so far the object `name`, atomically and durably.
    ///
    /// # Errors
    /// [`StorageError::AlreadyExists`] when an object of that name exists (nothing is
    /// overwritten), [`StorageError::InvalidName`] for a bad name, or the backend's error.
    fn commit(self: Box<Self>, name: &str) -> Result<()>;
}

/// Checks that an object name is safe for every backend: non-empty, at most 128 bytes of
/// `[0-9a-zA-Z._-]`, not starting with a dot.
///
/// # Errors
/// [`StorageError::InvalidName`] when it is not.
pub fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(StorageError::InvalidName(name.to_owned()))
    }
}

/// A shared store is a store: lets wrappers such as [`faulty::FaultyStorage`] take an
/// `Arc<dyn Storage>`.
#[async_trait]
impl<T: Storage + ?Sized> Storage for std::sync::Arc<T> {
    fn location(&self) -> String {
        (**self).location()
    }

    fn requests_are_costly(&self) -> bool {
        (**self).requests_are_costly()
    }

    async fn list(&self, kind: Kind) -> Result<Vec<ObjectInfo>> {
        (**self).list(kind).await
    }

    async fn list_names(&self, kind: Kind) -> Result<Vec<String>> {
        (**self).list_names(kind).await
    }

    async fn read(&self, kind: Kind, name: &str) -> Result<Bytes> {
        (**self).read(kind, name).await
    }

    async fn read_into(&self, kind: Kind, name: &str, buf: Vec<u8>) -> Result<Vec<u8>> {
        (**self).read_into(kind, name, buf).await
    }

    async fn read_many(&self, kind: Kind, names: &[String]) -> Vec<Result<Bytes>> {
        (**self).read_many(kind, names).await
    }

    async fn read_range(&self, kind: Kind, name: &str, offset: u64, length: u64) -> Result<Bytes> {
        (**self).read_range(kind, name, offset, length).await
    }

    async fn write(&self, kind: Kind, name: &str, data: Bytes) -> Result<()> {
        (**self).write(kind, name, data).await
    }

    fn object_writer(&self, kind: Kind) -> Option<Box<dyn ObjectWriter>> {
        (**self).object_writer(kind)
    }

    async fn delete(&self, kind: Kind, name: &str) -> Result<()> {
        (**self).delete(kind, name).await
    }

    async fn create(&self) -> Result<()> {
        (**self).create().await
    }
}
