//! An open repository: storage, master key, config and the merged index; reading and
//! writing blobs, trees, snapshots, index files and keys.
//!
//! Write order is the caller's contract, enforced by [`Packer`]: packs are durable before
//! the index file that lists them is written, and a snapshot is written only after
//! [`Packer::flush`] has made every pack and index it refers to durable.

use std::collections::HashSet;
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use futures::StreamExt;
use strongroom_storage::{Kind, Storage};
use tokio::task::JoinSet;

use crate::compress::{self, Compression};
use crate::crypto::{KdfParams, KeyFile, MasterKey, ObjectType};
use crate::error::{RepoError, Result};
use crate::id::Id;
use crate::index::{IndexFile, IndexPack, MasterIndex};
use crate::master_key_file::MasterKeyFile;
use crate::pack::{BlobType, PackBuilder, PackEntry};
use crate::pack_stream::PackStream;
use crate::snapshot::{Config, Snapshot};
use crate::snapshot_cache::SnapshotCache;
use crate::tree::{Node, Tree};

/// Options for creating a repository.
#[derive(Debug, Clone, Copy)]
pub struct InitOptions {
    /// Key derivation parameters for the first key.
    pub kdf: KdfParams,
    /// Target pack size.
    pub pack_size: u32,
}

impl Default for InitOptions {
    fn default() -> Self {
        InitOptions {
            kdf: KdfParams::DEFAULT,
            pack_size: Config::DEFAULT_PACK_SIZE,
        }
    }
}

/// What opens a repository: a password (tried against every key file, each costing one key
/// derivation), or a master key file written by [`Repository::master_key_file`] (no key
/// derivation, no key file read).
#[derive(Clone)]
pub enum Credential {
    /// A password.
    Password(Vec<u8>),
    /// A master key file's contents.
    MasterKey(Box<MasterKeyFile>),
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::Password(_) => f.write_str("Password(***)"),
            Credential::MasterKey(m) => f.debug_tuple("MasterKey").field(m).finish(),
        }
    }
}

/// An open repository.
#[derive(Debug)]
pub struct Repository {
    storage: Arc<dyn Storage>,
    key: MasterKey,
    config: Config,
    index: Arc<RwLock<MasterIndex>>,
    index_files: RwLock<Vec<Id>>,
    /// What the last [`Repository::load_index`] read: the index file names (as listed,
    /// sorted) and its warnings; `None` once blobs were added in memory since (packs not yet in an index
    /// file), or before any load.
    loaded_index: std::sync::Mutex<Option<(Vec<String>, Vec<String>)>>,
    /// Whole packs of trees read from storage whose requests are costly (see
    /// [`Repository::read_blob`]).
    tree_packs: std::sync::Mutex<TreePackCache>,
    /// Id of the key file that opened the repository; none when a master key file did.
    key_id: Option<Id>,
    /// The local cache of decoded snapshots, when the caller gave a cache folder.
    snapshot_cache: Option<SnapshotCache>,
}

/// The host name of this machine.
#[must_use]
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into())
}

/// The user running this process.
#[must_use]
pub fn username() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".into())
}

const CONFIG_NAME: &str = "config";

/// Bytes of whole tree packs [`Repository::read_blob`] keeps from costly storage: two packs
/// of the default size. The oldest read is dropped first.
pub const TREE_PACK_CACHE_BYTES: usize = 32 << 20;

/// Tree packs read whole, oldest first.
#[derive(Debug, Default)]
struct TreePackCache {
    packs: std::collections::VecDeque<(Id, Bytes)>,
    bytes: usize,
}

impl TreePackCache {
    fn get(&self, pack: &Id) -> Option<Bytes> {
        self.packs
            .iter()
            .find(|(id, _)| id == pack)
            .map(|(_, b)| b.clone())
    }

    /// Keeps `bytes`, dropping the oldest packs beyond [`TREE_PACK_CACHE_BYTES`] (never the
    /// one just added).
    fn insert(&mut self, pack: Id, bytes: Bytes) {
        if self.get(&pack).is_some() {
            return;
        }
        self.bytes += bytes.len();
        self.packs.push_back((pack, bytes));
        while self.bytes > TREE_PACK_CACHE_BYTES && self.packs.len() > 1 {
            if let Some((_, old)) = self.packs.pop_front() {
                self.bytes -= old.len();
            }
        }
    }
}

/// Finds the key file that opens with `password` and whose master key opens the config;
/// returns that key, the key file's id and the decrypted config.
async fn unlock_with_password(
    storage: &dyn Storage,
    password: &[u8],
    config_bytes: &[u8],
) -> Result<(MasterKey, Id, Vec<u8>)> {
    let keys = storage
        .list(Kind::Key)
        .await
        .map_err(RepoError::storage("listing key files"))?;
    if keys.is_empty() {
        return Err(RepoError::Corrupt {
            what: "repository".into(),
            detail: "it has no key files".into(),
        });
    }
    let mut damaged = None;
    let mut config_error = None;
    let mut opened = None;
    for k in &keys {
        let id = match Id::from_hex(&k.name) {
            Ok(id) => id,
            Err(e) => {
                damaged = Some(RepoError::KeyFileDamaged {
                    name: k.name.clone(),
                    detail: e.to_string(),
                });
                continue;
            }
        };
        let bytes = storage
            .read(Kind::Key, &k.name)
            .await
            .map_err(RepoError::storage(format!("reading key file {}", k.name)))?;
        let kf = match KeyFile::parse(&bytes) {
            Ok(kf) => kf,
            Err(e) => {
                damaged = Some(RepoError::KeyFileDamaged {
                    name: k.name.clone(),
                    detail: e.to_string(),
                });
                continue;
            }
        };
        let pw = password.to_vec();
        let res = tokio::task::spawn_blocking(move || kf.unwrap_key(&pw, &id))
            .await
            .map_err(|e| RepoError::Invalid(e.to_string()))?;
        match res {
            Ok(key) => {
                // A key that unwraps but does not open the config belongs to another
                // repository (e.g. left by an interrupted init): try the others.
                match key.open(ObjectType::Config, &Id::default(), config_bytes) {
                    Ok(cfg) => {
                        opened = Some((key, id, cfg));
                        break;
                    }
                    Err(e) => {
                        config_error = Some(RepoError::Corrupt {
                            what: "config".into(),
                            detail: format!("{e} (with key file {})", id.short()),
                        });
                    }
                }
            }
            // A wrong password, or authenticated fields changed: indistinguishable.
            Err(crate::crypto::CryptoError::Authentication) => {}
            // Undecodable salt or wrapped key: the file itself is damaged.
            Err(e) => {
                damaged = Some(RepoError::KeyFileDamaged {
                    name: k.name.clone(),
                    detail: e.to_string(),
                });
            }
        }
    }
    let Some(opened) = opened else {
        if let Some(e) = config_error {
            return Err(e);
        }
        return Err(match damaged {
            Some(d) if keys.len() == 1 => d,
            _ => RepoError::WrongPassword(keys.len()),
        });
    };
    Ok(opened)
}

impl Repository {
    /// Creates a new repository in empty storage.
    ///
    /// # Errors
    /// When the storage already holds a repository or cannot be written.
    pub async fn init(
        storage: Arc<dyn Storage>,
        password: &[u8],
        opts: InitOptions,
    ) -> Result<Repository> {
        // Offsets inside packs are 32-bit: keep packs far below 4 GiB.
        if !(4096..=Config::MAX_PACK_SIZE).contains(&opts.pack_size) {
            return Err(RepoError::Invalid(format!(
                "pack size {} is out of range (4 KiB to {} MiB)",
                opts.pack_size,
                Config::MAX_PACK_SIZE >> 20
            )));
        }
        if storage.read(Kind::Config, CONFIG_NAME).await.is_ok() {
            return Err(RepoError::AlreadyInitialised(storage.location()));
        }
        // Key files without a config: an interrupted init, or another init racing this one.
        if storage.list(Kind::Key).await.is_ok_and(|k| !k.is_empty()) {
            return Err(RepoError::Invalid(format!(
                "{} holds key files but no config (an interrupted or concurrent init?); \
                 remove that folder or choose another before creating a repository",
                storage.location()
            )));
        }
        storage.create().await.map_err(|e| match e {
            strongroom_storage::StorageError::AlreadyExists { .. } => {
                RepoError::AlreadyInitialised(storage.location())
            }
            e => RepoError::Storage {
                context: format!("creating repository at {}", storage.location()),
                source: e,
            },
        })?;
        let key = MasterKey::generate();
        let mut seed = [0u8; 8];
        crate::crypto::fill_random(&mut seed);
        let config = Config {
            version: Config::VERSION,
            id: Id::random(),
            created: now_rfc3339(),
            chunker_seed: u64::from_le_bytes(seed),
            chunker_files: crate::chunker::ChunkerParams::FILES,
            chunker_streams: crate::chunker::ChunkerParams::DUMPS,
            pack_size: opts.pack_size,
        };
        let key_id = Id::random();
        write_key(&*storage, &key, password, opts.kdf, &key_id).await?;
        let cfg = serde_json::to_vec(&config).map_err(|e| RepoError::Invalid(e.to_string()))?;
        let sealed = key.seal(ObjectType::Config, &Id::default(), &cfg);
        storage
            .write(Kind::Config, CONFIG_NAME, Bytes::from(sealed))
            .await
            .map_err(RepoError::storage("writing config"))?;
        Ok(Repository {
            storage,
            key,
            config,
            index: Arc::default(),
            index_files: RwLock::default(),
            loaded_index: std::sync::Mutex::default(),
            tree_packs: std::sync::Mutex::default(),
            key_id: Some(key_id),
            snapshot_cache: None,
        })
    }

    /// Opens a repository with a password (without loading its index).
    ///
    /// # Errors
    /// [`RepoError::NotARepository`], [`RepoError::WrongPassword`],
    /// [`RepoError::KeyFileDamaged`], or a damaged config.
    pub async fn open(storage: Arc<dyn Storage>, password: &[u8]) -> Result<Repository> {
        Repository::open_with(storage, &Credential::Password(password.to_vec())).await
    }

    /// Opens a repository with a password or a master key file (without loading its index).
    ///
    /// # Errors
    /// As [`Repository::open`]; with a master key file, [`RepoError::MasterKeyMismatch`]
    /// when the config does not open with it.
    pub async fn open_with(
        storage: Arc<dyn Storage>,
        credential: &Credential,
    ) -> Result<Repository> {
        let config_bytes = match storage.read(Kind::Config, CONFIG_NAME).await {
            Ok(b) => b,
            Err(e) if e.is_not_found() => {
                return Err(RepoError::NotARepository(storage.location()));
            }
            Err(e) => {
                return Err(RepoError::Storage {
                    context: "reading config".into(),
                    source: e,
                });
            }
        };
        // The config is decrypted once, by whichever key opens it.
        let (key, key_id, cfg) = match credential {
            Credential::Password(password) => {
                let (key, id, cfg) =
                    unlock_with_password(&*storage, password, &config_bytes).await?;
                (key, Some(id), cfg)
            }
            Credential::MasterKey(file) => {
                let cfg = file
                    .key()
                    .open(ObjectType::Config, &Id::default(), &config_bytes)
                    .map_err(|_| RepoError::MasterKeyMismatch {
                        location: storage.location(),
                        repository: file.repository().to_hex(),
                    })?;
                (file.key().clone(), None, cfg)
            }
        };
        let config: Config = serde_json::from_slice(&cfg).map_err(|e| RepoError::Corrupt {
            what: "config".into(),
            detail: e.to_string(),
        })?;
        if config.version != Config::VERSION {
            return Err(RepoError::Invalid(format!(
                "repository format version {} is not supported by this Strongroom (it reads version {})",
                config.version,
                Config::VERSION
            )));
        }
        config
            .chunker_files
            .validate()
            .map_err(|d| RepoError::Corrupt {
                what: "config".into(),
                detail: d,
            })?;
        config
            .chunker_streams
            .validate()
            .map_err(|d| RepoError::Corrupt {
                what: "config".into(),
                detail: d,
            })?;
        Ok(Repository {
            storage,
            key,
            config,
            index: Arc::default(),
            index_files: RwLock::default(),
            loaded_index: std::sync::Mutex::default(),
            tree_packs: std::sync::Mutex::default(),
            key_id,
            snapshot_cache: None,
        })
    }

    /// The storage.
    #[must_use]
    pub fn storage(&self) -> &Arc<dyn Storage> {
        &self.storage
    }

    /// The master key.
    #[must_use]
    pub fn key(&self) -> &MasterKey {
        &self.key
    }

    /// The config.
    #[must_use]
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The shared in-memory index.
    #[must_use]
    pub fn index(&self) -> &Arc<RwLock<MasterIndex>> {
        &self.index
    }

    /// A read view of the index.
    pub fn index_read(&self) -> std::sync::RwLockReadGuard<'_, MasterIndex> {
        self.index
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn index_write(&self) -> std::sync::RwLockWriteGuard<'_, MasterIndex> {
        self.index
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Ids of the index files loaded.
    #[must_use]
    pub fn index_file_ids(&self) -> Vec<Id> {
        self.index_files
            .read()
            .map(|v| v.clone())
            .unwrap_or_default()
    }

    /// Loads every index file into memory. A damaged index file does not stop the others
    /// from loading: it is returned as a warning (its blobs then count as missing).
    ///
    /// # Errors
    /// When the index files cannot be listed or read.
    pub async fn load_index(&self) -> Result<Vec<String>> {
        let names = self.index_file_names().await?;
        self.load_index_files(names).await
    }

    /// The names of the index files in the storage, sorted (as `list_names` returns them).
    async fn index_file_names(&self) -> Result<Vec<String>> {
        self.storage
            .list_names(Kind::Index)
            .await
            .map_err(RepoError::storage("listing index files"))
    }

    /// [`Repository::load_index`], but when the repository holds exactly the index files the
    /// last load read and no blob was added in memory since, the index in memory is already
    /// what they say (index files are never changed once written, and each has a name of
    /// its own): only the listing is read, and the last load's warnings are returned again.
    /// A backup reloads the index under its lock this way, after the command or job loaded it
    /// to open the repository (on 1,000,000 blobs a load reads and sorts 47 MB, and holds the
    /// old and the new table at once).
    ///
    /// # Errors
    /// As [`Repository::load_index`].
    pub async fn reload_index_if_changed(&self) -> Result<Vec<String>> {
        let names = self.index_file_names().await?;
        if let Ok(last) = self.loaded_index.lock()
            && let Some((loaded, warnings)) = last.as_ref()
            && *loaded == names
        {
            return Ok(warnings.clone());
        }
        self.load_index_files(names).await
    }

    async fn load_index_files(&self, names: Vec<String>) -> Result<Vec<String>> {
        self.forget_loaded_index();
        let mut warnings = Vec::new();
        let mut index = crate::index::IndexBuilder::default();
        let mut ids = Vec::new();
        for name in &names {
            let damaged = |what: &str, detail: String| {
                RepoError::Corrupt {
                    what: format!("index file {what}"),
                    detail,
                }
                .to_string()
            };
            let id = match Id::from_hex(name) {
                Ok(id) => id,
                Err(e) => {
                    warnings.push(damaged(name, e.to_string()));
                    continue;
                }
            };
            let sealed = self
                .storage
                .read(Kind::Index, name)
                .await
                .map_err(RepoError::storage(format!("reading index file {name}")))?;
            match index.add_sealed(&self.key, &id, Vec::from(sealed)) {
                Ok(()) => ids.push(id),
                Err(e) => warnings.push(damaged(&id.short(), e.to_string())),
            }
        }
        *self.index_write() = index.finish();
        if let Ok(mut v) = self.index_files.write() {
            *v = ids;
        }
        if let Ok(mut last) = self.loaded_index.lock() {
            *last = Some((names, warnings.clone()));
        }
        Ok(warnings)
    }

    /// Reads and opens one index file.
    ///
    /// # Errors
    /// [`RepoError::Corrupt`] when it fails to authenticate or decode.
    pub async fn read_index_file(&self, name: &str) -> Result<(Id, IndexFile)> {
        let id = Id::from_hex(name).map_err(|e| RepoError::Corrupt {
            what: format!("index file {name}"),
            detail: e.to_string(),
        })?;
        let bytes = self
            .storage
            .read(Kind::Index, name)
            .await
            .map_err(RepoError::storage(format!("reading index file {name}")))?;
        let file = IndexFile::open(&self.key, &id, &bytes).map_err(|e| RepoError::Corrupt {
            what: format!("index file {}", id.short()),
            detail: e.to_string(),
        })?;
        Ok((id, file))
    }

    /// Writes an index file and returns its id.
    ///
    /// # Errors
    /// When the write fails.
    pub async fn write_index_file(&self, file: &IndexFile) -> Result<Id> {
        let id = Id::random();
        let sealed = file.seal(&self.key, &id);
        self.storage
            .write(Kind::Index, &id.to_hex(), Bytes::from(sealed))
            .await
            .map_err(RepoError::storage("writing index file"))?;
        if let Ok(mut v) = self.index_files.write() {
            v.push(id);
        }
        Ok(id)
    }

    /// The first [`BlobRun`] of `ids`: the longest prefix of them stored one after another
    /// (gaps of at most [`RUN_GAP`]) in one pack, up to [`RUN_BYTES`] of plaintext (at least
    /// one blob). Returns it with the number of ids it covers (0 when `ids` is empty).
    ///
    /// # Errors
    /// [`RepoError::BlobMissing`] when the first id is not in the index.
    pub fn plan_run(&self, ids: &[Id]) -> Result<(BlobRun, usize)> {
        let index = self.index_read();
        let mut run: Option<BlobRun> = None;
        let mut taken = 0;
        for id in ids {
            let Some(loc) = index.get(id) else {
                if run.is_none() {
                    return Err(RepoError::BlobMissing(id.short()));
                }
                // Reported when the next run starts with it.
                break;
            };
            let e = loc.entry;
            let (offset, stored) = (u64::from(e.offset), u64::from(e.stored_len));
            match run.as_mut() {
                None => {
                    run = Some(BlobRun {
                        pack: loc.pack,
                        offset,
                        len: stored,
                        raw_len: u64::from(e.raw_len),
                        blobs: vec![e],
                    });
                }
                Some(r) => {
                    let end = r.offset + r.len;
                    let small = |raw: u64| raw <= RUN_BLOB_MAX;
                    let joins = loc.pack == r.pack
                        && r.blobs.first().is_some_and(|f| small(u64::from(f.raw_len)))
                        && small(u64::from(e.raw_len))
                        && offset >= end
                        && offset - end <= RUN_GAP
                        && r.raw_len + u64::from(e.raw_len) <= RUN_BYTES;
                    if !joins {
                        break;
                    }
                    r.len = offset + stored - r.offset;
                    r.raw_len += u64::from(e.raw_len);
                    r.blobs.push(e);
                }
            }
            taken += 1;
        }
        let run = run.unwrap_or_else(|| BlobRun {
            pack: Id::default(),
            offset: 0,
            len: 0,
            raw_len: 0,
            blobs: Vec::new(),
        });
        Ok((run, taken))
    }

    /// `ids` as consecutive [`BlobRun`]s (see [`Repository::plan_run`]).
    ///
    /// # Errors
    /// [`RepoError::BlobMissing`] naming the first id not in the index.
    pub fn plan_runs(&self, mut ids: &[Id]) -> Result<Vec<BlobRun>> {
        let mut runs = Vec::new();
        while !ids.is_empty() {
            let (run, n) = self.plan_run(ids)?;
            runs.push(run);
            ids = ids.get(n..).unwrap_or_default();
        }
        Ok(runs)
    }

    /// Reads a [`BlobRun`] with one request and decodes its blobs (each authenticated,
    /// decompressed and checked against its id) into one buffer, in order.
    ///
    /// # Errors
    /// [`RepoError::Corrupt`] naming the first damaged blob and its pack, or the storage
    /// error of the read.
    pub async fn read_run(&self, run: BlobRun) -> Result<Vec<u8>> {
        let stored = self.read_run_stored(run).await?;
        let key = self.key.clone();
        tokio::task::spawn_blocking(move || stored.decode(&key))
            .await
            .map_err(|e| RepoError::Invalid(e.to_string()))?
    }

    /// The read half of [`Repository::read_run`]: the run's sealed bytes, not yet decoded,
    /// so that a caller can decode them on the thread that then uses the content.
    ///
    /// # Errors
    /// The storage error of the read.
    pub async fn read_run_stored(&self, run: BlobRun) -> Result<StoredRun> {
        if run.blobs.is_empty() {
            return Ok(StoredRun {
                run,
                stored: bytes::Bytes::new(),
            });
        }
        let stored = self
            .storage
            .read_range(Kind::Pack, &run.pack.to_hex(), run.offset, run.len)
            .await
            .map_err(RepoError::storage(format!(
                "reading {} blobs from pack {}",
                run.blobs.len(),
                run.pack.short()
            )))?;
        Ok(StoredRun { run, stored })
    }

    /// Reads, authenticates, decompresses and checks one blob.
    ///
    /// # Errors
    /// [`RepoError::BlobMissing`] or [`RepoError::Corrupt`] naming the blob and pack.
    ///
    /// A tree (or content list) from storage whose requests are costly (S3) is read with its
    /// whole pack, which is kept (up to [`TREE_PACK_CACHE_BYTES`]) for the trees next to it:
    /// a restore, verify or prune walks thousands of folders, and a request per folder at
    /// tens of milliseconds each added minutes.
    pub async fn read_blob(&self, id: &Id) -> Result<Vec<u8>> {
        let loc = self
            .index_read()
            .get(id)
            .ok_or_else(|| RepoError::BlobMissing(id.short()))?;
        let e = loc.entry;
        let what = || format!("reading blob {} from pack {}", id.short(), loc.pack.short());
        let whole_pack = e.blob_type == BlobType::Tree
            && self.storage.requests_are_costly()
            && self.config.pack_size as usize <= TREE_PACK_CACHE_BYTES / 2;
        let stored = if whole_pack {
            let pack = self.tree_pack(&loc.pack, what).await?;
            let start = e.offset as usize;
            let end = start + e.stored_len as usize;
            if end > pack.len() {
                return Err(RepoError::Corrupt {
                    what: format!("pack {}", loc.pack.short()),
                    detail: format!(
                        "{} bytes long, but blob {} is listed at {start}..{end}",
                        pack.len(),
                        id.short()
                    ),
                });
            }
            pack.slice(start..end)
        } else {
            self.storage
                .read_range(
                    Kind::Pack,
                    &loc.pack.to_hex(),
                    u64::from(e.offset),
                    u64::from(e.stored_len),
                )
                .await
                .map_err(RepoError::storage(what()))?
        };
        let key = self.key.clone();
        let pack = loc.pack;
        // Bytes made from a Vec give it back without a copy when they are its only owner.
        tokio::task::spawn_blocking(move || decode_blob_vec(&key, &pack, &e, Vec::from(stored)))
            .await
            .map_err(|e| RepoError::Invalid(e.to_string()))?
    }

    /// Reads and decodes a tree.
    ///
    /// # Errors
    /// When the blob is missing or damaged, or is not a valid tree.
    pub async fn load_tree(&self, id: &Id) -> Result<Tree> {
        let b = self.read_blob(id).await?;
        Tree::from_bytes(&b).map_err(|d| RepoError::Corrupt {
            what: format!("tree {}", id.short()),
            detail: d,
        })
    }

    /// Reads and decodes one content list blob (see [`crate::content`]).
    ///
    /// # Errors
    /// When the blob is missing or damaged, or is not a content list.
    pub async fn load_content_list(&self, id: &Id) -> Result<Vec<Id>> {
        let b = self.read_blob(id).await?;
        crate::content::decode(&b).map_err(|d| RepoError::Corrupt {
            what: format!("content list {}", id.short()),
            detail: d,
        })
    }

    /// The data blobs of a file node, in order: its inline `content`, or the ids its content
    /// lists hold.
    ///
    /// # Errors
    /// When a content list is missing or damaged.
    pub async fn file_content(&self, node: &Node) -> Result<Vec<Id>> {
        if node.content_lists.is_empty() {
            return Ok(node.content.clone());
        }
        let mut ids = Vec::new();
        for l in &node.content_lists {
            ids.extend(self.load_content_list(l).await?);
        }
        Ok(ids)
    }

    /// Keeps decoded snapshots in a local cache under the folder `dir` (one file per
    /// repository, see [`SnapshotCache`]): [`Repository::list_snapshots`] then reads only the
    /// snapshot files it has not seen before.
    pub fn use_snapshot_cache(&mut self, dir: &std::path::Path) {
        self.snapshot_cache = Some(SnapshotCache::new(dir, self.config.id));
    }

    /// The local cache folder given to [`Repository::use_snapshot_cache`], if any (backups
    /// keep their folder cache there too).
    #[must_use]
    pub fn cache_dir(&self) -> Option<&std::path::Path> {
        self.snapshot_cache.as_ref().map(SnapshotCache::root)
    }

    /// Lists the snapshots that can be read, sorted by time, and warnings for those that
    /// cannot. With a snapshot cache ([`Repository::use_snapshot_cache`]) only the files the
    /// cache does not hold are read; the cache is used for the names the repository lists now
    /// and nothing else, and is rewritten when they changed.
    ///
    /// # Errors
    /// When the snapshot files cannot be listed.
    pub async fn list_snapshots(&self) -> Result<(Vec<(Id, Snapshot)>, Vec<String>)> {
        let Some(cache) = &self.snapshot_cache else {
            return self.list_snapshots_uncached().await;
        };
        // The names are listed while the cache is read and decoded: neither needs the other.
        let (names, cached) = tokio::join!(self.snapshot_names(), self.load_cache(cache));
        self.merge_with_cache(cache, names?, cached?).await
    }

    /// Like [`Repository::list_snapshots`], for the snapshot files `names` the caller listed
    /// ([`Storage::list_names`] of [`Kind::Snapshot`]), e.g. while the repository was being
    /// opened: the key derivation and the listing then overlap.
    ///
    /// # Errors
    /// When the snapshot files cannot be read.
    pub async fn list_snapshots_among(
        &self,
        names: Vec<String>,
    ) -> Result<(Vec<(Id, Snapshot)>, Vec<String>)> {
        match &self.snapshot_cache {
            Some(cache) => {
                let cached = self.load_cache(cache).await?;
                self.merge_with_cache(cache, names, cached).await
            }
            None => self.read_snapshots_sorted(names).await,
        }
    }

    /// The cache's entries, read and decoded on the blocking pool.
    async fn load_cache(&self, cache: &SnapshotCache) -> Result<Vec<(Id, Snapshot)>> {
        let key = self.key.clone();
        let cache = cache.clone();
        tokio::task::spawn_blocking(move || cache.load(&key))
            .await
            .map_err(|e| RepoError::Invalid(e.to_string()))
    }

    /// The snapshots named by `names`: from the cache's entries where it has them, read from
    /// the repository where not; the cache is rewritten when it held other names.
    async fn merge_with_cache(
        &self,
        cache: &SnapshotCache,
        names: Vec<String>,
        cached: Vec<(Id, Snapshot)>,
    ) -> Result<(Vec<(Id, Snapshot)>, Vec<String>)> {
        let cached_len = cached.len();
        let ids: Vec<Option<Id>> = names.iter().map(|n| Id::from_hex(n).ok()).collect();
        let mut listed: HashSet<Id> = ids.iter().flatten().copied().collect();
        // Cached entries of listed files, in the cache's (time) order; each id once.
        let mut out: Vec<(Id, Snapshot)> = cached
            .into_iter()
            .filter(|(id, _)| listed.remove(id))
            .collect();
        // Fewer kept than cached: snapshots were deleted (forget) since it was written.
        let gone = out.len() != cached_len;
        let unseen: Vec<String> = names
            .into_iter()
            .zip(ids)
            .filter(|(_, id)| id.is_none_or(|id| listed.contains(&id)))
            .map(|(name, _)| name)
            .collect();
        let (read, warnings) = self.read_snapshot_files(unseen).await?;
        let changed = gone || !read.is_empty();
        if !read.is_empty() {
            out.extend(read);
            sort_as_listed(&mut out);
        }
        if changed {
            let key = self.key.clone();
            let cache = cache.clone();
            // A cache that cannot be written only makes the next listing slower.
            out = tokio::task::spawn_blocking(move || {
                let _ = cache.store(&key, &out);
                out
            })
            .await
            .map_err(|e| RepoError::Invalid(e.to_string()))?;
        }
        Ok((out, warnings))
    }

    /// Lists and reads every snapshot file, without the local cache (what `verify` checks).
    ///
    /// # Errors
    /// When the snapshot files cannot be listed.
    pub async fn list_snapshots_uncached(&self) -> Result<(Vec<(Id, Snapshot)>, Vec<String>)> {
        let names = self.snapshot_names().await?;
        self.read_snapshots_sorted(names).await
    }

    /// [`Repository::read_snapshot_files`], sorted as listed.
    async fn read_snapshots_sorted(
        &self,
        names: Vec<String>,
    ) -> Result<(Vec<(Id, Snapshot)>, Vec<String>)> {
        let (mut out, warnings) = self.read_snapshot_files(names).await?;
        sort_as_listed(&mut out);
        Ok((out, warnings))
    }

    /// The names of the snapshot files.
    async fn snapshot_names(&self) -> Result<Vec<String>> {
        self.storage
            .list_names(Kind::Snapshot)
            .await
            .map_err(RepoError::storage("listing snapshots"))
    }

    /// Reads and decodes the snapshot files `names`: those that can be read, in no order,
    /// and warnings for those that are damaged.
    async fn read_snapshot_files(
        &self,
        names: Vec<String>,
    ) -> Result<(Vec<(Id, Snapshot)>, Vec<String>)> {
        let mut out = Vec::with_capacity(names.len());
        let mut warnings = Vec::new();
        // In groups (one blocking task for a group on local disk), a few groups at a time,
        // each decoded on the blocking pool: listing 10,000 snapshots is then not 10,000
        // hand-offs to read a file and back.
        let groups: Vec<Vec<String>> = names.chunks(SNAPSHOT_GROUP).map(<[_]>::to_vec).collect();
        let mut groups = futures::stream::iter(groups)
            .map(|group: Vec<String>| async move {
                let bytes = self.storage.read_many(Kind::Snapshot, &group).await;
                let key = self.key.clone();
                tokio::task::spawn_blocking(move || {
                    group
                        .iter()
                        .zip(bytes)
                        .map(|(name, b)| {
                            let b = b.map_err(RepoError::storage(format!(
                                "reading snapshot {}",
                                name.get(..8).unwrap_or(name)
                            )))?;
                            decode_snapshot(&key, name, &b)
                        })
                        .collect::<Vec<_>>()
                })
                .await
                .map_err(|e| RepoError::Invalid(e.to_string()))
            })
            .buffer_unordered(SNAPSHOT_GROUPS);
        while let Some(group) = groups.next().await {
            for read in group? {
                match read {
                    Ok(s) => out.push(s),
                    Err(e @ RepoError::Corrupt { .. }) => warnings.push(e.to_string()),
                    Err(e) => return Err(e),
                }
            }
        }
        Ok((out, warnings))
    }

    /// Reads one snapshot file.
    ///
    /// # Errors
    /// [`RepoError::Corrupt`] when it fails to authenticate or decode.
    pub async fn read_snapshot(&self, name: &str) -> Result<(Id, Snapshot)> {
        let id = snapshot_id(name)?;
        let bytes = self
            .storage
            .read(Kind::Snapshot, name)
            .await
            .map_err(RepoError::storage(format!(
                "reading snapshot {}",
                id.short()
            )))?;
        decode_snapshot(&self.key, name, &bytes)
    }

    /// Finds a snapshot by unique id prefix, or `latest` (optionally among those whose
    /// source is `source`).
    ///
    /// # Errors
    /// [`RepoError::SnapshotNotFound`] or [`RepoError::AmbiguousSnapshot`].
    ///
    /// An id prefix is matched against the snapshot files' names, and only the one it names
    /// is read: finding a snapshot in a repository of 10,000 reads one file, not 10,000. A
    /// damaged snapshot file it names is an error ([`RepoError::Corrupt`]), not "not found".
    pub async fn find_snapshot(&self, query: &str) -> Result<(Id, Snapshot)> {
        if query == "latest" {
            let (snaps, _) = self.list_snapshots().await?;
            return snaps
                .into_iter()
                .last()
                .ok_or_else(|| RepoError::SnapshotNotFound(query.into()));
        }
        let q = query.to_ascii_lowercase();
        if q.is_empty() || !q.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(RepoError::SnapshotNotFound(query.into()));
        }
        let mut matches: Vec<String> = self
            .snapshot_names()
            .await?
            .into_iter()
            .filter(|name| name.starts_with(&q))
            .collect();
        match matches.len() {
            0 => Err(RepoError::SnapshotNotFound(query.into())),
            1 => self.read_snapshot(&matches.remove(0)).await,
            n => Err(RepoError::AmbiguousSnapshot(query.into(), n)),
        }
    }

    /// Writes a snapshot; call only after [`Packer::flush`].
    ///
    /// # Errors
    /// When the write fails.
    pub async fn save_snapshot(&self, snap: &Snapshot) -> Result<Id> {
        let id = Id::random();
        let plain = serde_json::to_vec(snap).map_err(|e| RepoError::Invalid(e.to_string()))?;
        let sealed = self.key.seal(ObjectType::Snapshot, &id, &plain);
        self.storage
            .write(Kind::Snapshot, &id.to_hex(), Bytes::from(sealed))
            .await
            .map_err(RepoError::storage("writing snapshot"))?;
        Ok(id)
    }

    /// Deletes a snapshot file.
    ///
    /// # Errors
    /// When the delete fails.
    pub async fn delete_snapshot(&self, id: &Id) -> Result<()> {
        self.storage
            .delete(Kind::Snapshot, &id.to_hex())
            .await
            .map_err(RepoError::storage(format!(
                "deleting snapshot {}",
                id.short()
            )))
    }

    /// Adds a password; returns the new key file's id.
    ///
    /// # Errors
    /// When the write fails.
    pub async fn add_key(&self, password: &[u8], kdf: KdfParams) -> Result<Id> {
        let id = Id::random();
        write_key(&*self.storage, &self.key, password, kdf, &id).await?;
        Ok(id)
    }

    /// Removes a key file; refuses to remove the last one, or the one in use unless
    /// another exists.
    ///
    /// # Errors
    /// When it is the only key or the delete fails.
    pub async fn remove_key(&self, id: &Id) -> Result<()> {
        let keys = self
            .storage
            .list(Kind::Key)
            .await
            .map_err(RepoError::storage("listing key files"))?;
        if !keys.iter().any(|k| k.name == id.to_hex()) {
            return Err(RepoError::Invalid(format!("no key file {}", id.short())));
        }
        if keys.len() < 2 {
            return Err(RepoError::Invalid(
                "refusing to remove the only key of the repository".into(),
            ));
        }
        self.storage
            .delete(Kind::Key, &id.to_hex())
            .await
            .map_err(RepoError::storage(format!(
                "deleting key file {}",
                id.short()
            )))
    }

    /// Replaces the password of the key in use: a new key file is written first, then the
    /// old one is removed.
    ///
    /// # Errors
    /// When either step fails (the old password still works if the new key was not written).
    pub async fn change_password(&mut self, new_password: &[u8], kdf: KdfParams) -> Result<Id> {
        let Some(old) = self.key_id else {
            return Err(RepoError::Invalid(
                "the repository was opened with a master key file, so no password is in use to \
                 change; add one with `strongroom key add`, or open it with the password"
                    .into(),
            ));
        };
        let new_id = self.add_key(new_password, kdf).await?;
        self.storage
            .delete(Kind::Key, &old.to_hex())
            .await
            .map_err(RepoError::storage(format!(
                "deleting old key file {}",
                old.short()
            )))?;
        self.key_id = Some(new_id);
        Ok(new_id)
    }

    /// Id of the key file in use; none when a master key file opened the repository.
    #[must_use]
    pub fn key_id(&self) -> Option<Id> {
        self.key_id
    }

    /// This repository's master key as a [`MasterKeyFile`], for the caller to store outside
    /// the repository.
    #[must_use]
    pub fn master_key_file(&self) -> MasterKeyFile {
        MasterKeyFile::new(self.config.id, self.key.clone())
    }

    /// A packer for new blobs.
    #[must_use]
    pub fn packer(&self) -> Packer<'_> {
        Packer::new(self)
    }

    /// A whole tree pack: from the cache, or read from the storage and kept.
    async fn tree_pack(&self, pack: &Id, what: impl Fn() -> String) -> Result<Bytes> {
        if let Some(b) = self.tree_packs.lock().ok().and_then(|c| c.get(pack)) {
            return Ok(b);
        }
        let b = self
            .storage
            .read(Kind::Pack, &pack.to_hex())
            .await
            .map_err(RepoError::storage(what()))?;
        if let Ok(mut c) = self.tree_packs.lock() {
            c.insert(*pack, b.clone());
        }
        Ok(b)
    }

    /// The index in memory no longer equals the index files last loaded.
    fn forget_loaded_index(&self) {
        if let Ok(mut last) = self.loaded_index.lock() {
            *last = None;
        }
    }

    pub(crate) fn add_to_index(&self, pack: Id, size: u64, entries: &[PackEntry]) {
        self.forget_loaded_index();
        self.index_write().add_pack(pack, size, entries);
    }

    /// Replaces the in-memory index. Never while a packer holds blobs it added whose packs are
    /// not in an index file yet: it forgets those blobs once their pack is in the in-memory
    /// index, so a new index without them would let it store them again (prune replaces the
    /// index before its packer's first blob and after its last).
    pub(crate) fn replace_index(&self, index: MasterIndex, files: Vec<Id>) {
        self.forget_loaded_index();
        *self.index_write() = index;
        if let Ok(mut v) = self.index_files.write() {
            *v = files;
        }
    }
}

async fn write_key(
    storage: &dyn Storage,
    key: &MasterKey,
    password: &[u8],
    kdf: KdfParams,
    id: &Id,
) -> Result<()> {
    let key = key.clone();
    let pw = password.to_vec();
    let kid = *id;
    let kf = tokio::task::spawn_blocking(move || {
        KeyFile::wrap(&key, &pw, kdf, &kid, &hostname(), &username())
    })
    .await
    .map_err(|e| RepoError::Invalid(e.to_string()))?
    .map_err(|e| RepoError::Invalid(e.to_string()))?;
    let bytes = kf
        .to_bytes()
        .map_err(|e| RepoError::Invalid(e.to_string()))?;
    storage
        .write(Kind::Key, &id.to_hex(), Bytes::from(bytes))
        .await
        .map_err(RepoError::storage("writing key file"))
}

/// Opens one sealed blob and checks that its plaintext hashes to its id.
///
/// # Errors
/// [`RepoError::Corrupt`] naming the blob and pack.
pub fn decode_blob(key: &MasterKey, pack: &Id, e: &PackEntry, stored: &[u8]) -> Result<Vec<u8>> {
    decode_blob_vec(key, pack, e, stored.to_vec())
}

/// [`decode_blob`] of a blob's bytes the caller owns: decrypted where they are.
///
/// # Errors
/// [`RepoError::Corrupt`] naming the blob and pack.
pub fn decode_blob_vec(
    key: &MasterKey,
    pack: &Id,
    e: &PackEntry,
    stored: Vec<u8>,
) -> Result<Vec<u8>> {
    let plain = key
        .open_vec(e.blob_type.object_type(), &e.id, stored)
        .map_err(|x| blob_corrupt(pack, e, x))?;
    let raw = compress::decompress(e.compression, plain, e.raw_len as usize)
        .map_err(|x| blob_corrupt(pack, e, x))?;
    ensure_blob_id(key, pack, e, &raw)?;
    Ok(raw)
}

/// Neighbouring blobs of one pack, read with one request (see [`Repository::plan_run`]).
#[derive(Debug, Clone)]
pub struct BlobRun {
    pack: Id,
    /// Where the first blob starts in the pack.
    offset: u64,
    /// Bytes from there to the end of the last blob.
    len: u64,
    /// Plaintext bytes of the blobs.
    raw_len: u64,
    blobs: Vec<PackEntry>,
}

/// The sealed bytes of a [`BlobRun`] ([`Repository::read_run_stored`]).
#[derive(Debug)]
pub struct StoredRun {
    run: BlobRun,
    stored: bytes::Bytes,
}

impl StoredRun {
    /// Decodes the run's blobs (each authenticated, decompressed and checked against its id)
    /// into one buffer, in order. CPU work: call it on a blocking thread.
    ///
    /// # Errors
    /// [`RepoError::Corrupt`] naming the first damaged blob and its pack.
    pub fn decode(self, key: &MasterKey) -> Result<Vec<u8>> {
        let StoredRun { run, stored } = self;
        // Bytes made from a Vec give it back without a copy when they are its only owner.
        match run.blobs.as_slice() {
            [] => Ok(Vec::new()),
            // Decrypted where it was read; stored uncompressed, it is returned as is.
            [e] => decode_blob_vec(key, &run.pack, e, Vec::from(stored)),
            _ => decode_run(key, &run, Vec::from(stored)),
        }
    }
}

impl BlobRun {
    /// Plaintext bytes of its blobs.
    #[must_use]
    pub fn raw_len(&self) -> u64 {
        self.raw_len
    }

    /// Whether it decodes to the same content as `other`: the same blobs of the same pack (a
    /// file's run of zeros is one blob many times over). The same start and end are not
    /// enough: a run may skip a gap (up to [`RUN_GAP`]) that another one reads.
    #[must_use]
    pub fn same_bytes_as(&self, other: &BlobRun) -> bool {
        self.pack == other.pack && self.blobs == other.blobs
    }
}

/// Sorts snapshots in listing order: by time (string order), then id.
fn sort_as_listed(snaps: &mut [(Id, Snapshot)]) {
    snaps.sort_by(|a, b| a.1.time.cmp(&b.1.time).then(a.0.cmp(&b.0)));
}

/// The id a snapshot file's name holds.
fn snapshot_id(name: &str) -> Result<Id> {
    Id::from_hex(name).map_err(|e| RepoError::Corrupt {
        what: format!("snapshot file {name}"),
        detail: e.to_string(),
    })
}

/// Authenticates and parses the snapshot file `name` holding `bytes`.
///
/// # Errors
/// [`RepoError::Corrupt`] when it fails to authenticate or decode, [`RepoError::Invalid`]
/// for a format version this reader does not know.
fn decode_snapshot(key: &MasterKey, name: &str, bytes: &[u8]) -> Result<(Id, Snapshot)> {
    let id = snapshot_id(name)?;
    let plain = key
        .open(ObjectType::Snapshot, &id, bytes)
        .map_err(|e| RepoError::Corrupt {
            what: format!("snapshot {}", id.short()),
            detail: e.to_string(),
        })?;
    let snap: Snapshot = serde_json::from_slice(&plain).map_err(|e| RepoError::Corrupt {
        what: format!("snapshot {}", id.short()),
        detail: e.to_string(),
    })?;
    // A newer format may reference data in ways this reader does not know: refusing it
    // keeps prune from deleting what such a snapshot needs.
    if snap.version != 1 {
        return Err(RepoError::Invalid(format!(
            "snapshot {} has format version {}, which this Strongroom does not read; upgrade Strongroom",
            id.short(),
            snap.version
        )));
    }
    Ok((id, snap))
}

/// Snapshot files read by one [`Storage::read_many`] in [`Repository::list_snapshots`].
const SNAPSHOT_GROUP: usize = 128;
/// Groups of [`SNAPSHOT_GROUP`] read at once.
const SNAPSHOT_GROUPS: usize = 4;

/// Most plaintext in one [`BlobRun`] (a larger blob is a run of its own). Restore reads a
/// dump's 16 KiB blobs 128 at a time instead of one request and one hand-off each.
pub const RUN_BYTES: u64 = 2 << 20;

/// Largest blob that shares a [`BlobRun`] with others. A larger one (a media file's chunks
/// are 1 MiB on average) is a run of its own, decoded in the buffer it was read into: joined
/// to others, its bytes would be copied once more, and runs of two such blobs decode on one
/// thread what two threads decoded before.
pub const RUN_BLOB_MAX: u64 = 256 << 10;

/// Largest hole between two blobs of one [`BlobRun`]: reading past a few KiB of other blobs
/// costs less than another request.
pub const RUN_GAP: u64 = 64 << 10;

/// Decodes the blobs of `run` from `stored` (the pack's bytes from `run.offset` on).
fn decode_run(key: &MasterKey, run: &BlobRun, mut stored: Vec<u8>) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(usize::try_from(run.raw_len).unwrap_or(0));
    for e in &run.blobs {
        let start = usize::try_from(u64::from(e.offset) - run.offset).unwrap_or(usize::MAX);
        let bytes = start
            .checked_add(e.stored_len as usize)
            .and_then(|end| stored.get_mut(start..end))
            .ok_or_else(|| blob_corrupt(&run.pack, e, "the pack ends before the blob"))?;
        decode_blob_append(key, &run.pack, e, bytes, &mut out)?;
    }
    Ok(out)
}

/// [`decode_blob`] of sealed bytes the caller may overwrite (they are decrypted where they
/// are), appending the content to `out`.
///
/// # Errors
/// [`RepoError::Corrupt`] naming the blob and pack.
pub fn decode_blob_append(
    key: &MasterKey,
    pack: &Id,
    e: &PackEntry,
    stored: &mut [u8],
    out: &mut Vec<u8>,
) -> Result<()> {
    let plain = key
        .open_in_place(e.blob_type.object_type(), &e.id, stored)
        .map_err(|x| blob_corrupt(pack, e, x))?;
    let start = out.len();
    match e.compression {
        Compression::None => {
            compress::check_raw_len(plain.len(), e.raw_len as usize)
                .map_err(|x| blob_corrupt(pack, e, x))?;
            out.extend_from_slice(plain);
        }
        Compression::Zstd => compress::decompress_zstd_append(plain, e.raw_len as usize, out)
            .map_err(|x| blob_corrupt(pack, e, x))?,
    }
    ensure_blob_id(key, pack, e, out.get(start..).unwrap_or_default())
}

/// Checks a blob as [`decode_blob`] does (authenticated, decompressed, hashed) without
/// keeping its content, in the caller's buffers: once they have grown to the largest blob,
/// checking allocates nothing.
///
/// # Errors
/// [`RepoError::Corrupt`] naming the blob and pack.
pub fn check_blob(
    key: &MasterKey,
    pack: &Id,
    e: &PackEntry,
    stored: &[u8],
    sealed: &mut Vec<u8>,
    raw: &mut Vec<u8>,
) -> Result<()> {
    sealed.clear();
    sealed.extend_from_slice(stored);
    let plain = key
        .open_in_place(e.blob_type.object_type(), &e.id, sealed)
        .map_err(|x| blob_corrupt(pack, e, x))?;
    let content: &[u8] = match e.compression {
        Compression::None => {
            compress::check_raw_len(plain.len(), e.raw_len as usize)
                .map_err(|x| blob_corrupt(pack, e, x))?;
            plain
        }
        Compression::Zstd => {
            compress::decompress_zstd_into(plain, e.raw_len as usize, raw)
                .map_err(|x| blob_corrupt(pack, e, x))?;
            raw
        }
    };
    ensure_blob_id(key, pack, e, content)
}

/// The error of a blob that fails to decode.
fn blob_corrupt(pack: &Id, e: &PackEntry, detail: impl std::fmt::Display) -> RepoError {
    RepoError::Corrupt {
        what: format!("blob {} in pack {}", e.id.short(), pack.short()),
        detail: detail.to_string(),
    }
}

/// Decoded content belongs to the blob: its keyed hash is the blob's id.
fn ensure_blob_id(key: &MasterKey, pack: &Id, e: &PackEntry, content: &[u8]) -> Result<()> {
    if key.blob_id(content) != e.id {
        return Err(blob_corrupt(pack, e, "content does not match its id"));
    }
    Ok(())
}

/// The current time in RFC 3339 (UTC, nanoseconds trimmed to micro).
#[must_use]
pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// A blob ready to be packed: compressed and sealed.
#[derive(Debug)]
pub struct SealedBlob {
    /// Blob id.
    pub id: Id,
    /// Data or tree.
    pub blob_type: BlobType,
    /// Compression of the sealed bytes.
    pub compression: Compression,
    /// Plaintext length.
    pub raw_len: u32,
    /// Sealed bytes.
    pub sealed: Vec<u8>,
}

/// Hashes, compresses and seals a plaintext blob (CPU work; call from a worker thread).
#[must_use]
pub fn seal_blob(key: &MasterKey, blob_type: BlobType, raw: &[u8]) -> SealedBlob {
    let id = key.blob_id(raw);
    seal_blob_with_id(key, blob_type, id, raw)
}

/// Compresses and seals a blob whose id is already known.
#[must_use]
pub fn seal_blob_with_id(key: &MasterKey, blob_type: BlobType, id: Id, raw: &[u8]) -> SealedBlob {
    seal_blob_at(key, blob_type, id, raw, compress::ZSTD_LEVEL)
}

/// [`seal_blob_with_id`] at zstd `level` (see [`compress::ZSTD_LEVEL_STREAMS`]).
#[must_use]
pub fn seal_blob_at(
    key: &MasterKey,
    blob_type: BlobType,
    id: Id,
    raw: &[u8],
    level: i32,
) -> SealedBlob {
    // One buffer, written once: room for the nonce, the stored bytes, then the tag.
    let mut sealed =
        crate::buffers::take(compress::stored_bound(raw.len()) + crate::crypto::SEAL_OVERHEAD);
    sealed.extend_from_slice(&[0u8; crate::crypto::NONCE_LEN]);
    let compression = compress::compress_append(raw, level, &mut sealed);
    key.seal_in_place(blob_type.object_type(), &id, &mut sealed);
    SealedBlob {
        id,
        blob_type,
        compression,
        raw_len: u32::try_from(raw.len()).unwrap_or(u32::MAX),
        sealed,
    }
}

/// Statistics of what a [`Packer`] wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PackerStats {
    /// Blobs added.
    pub blobs: u64,
    /// Plaintext bytes of those blobs.
    pub raw_bytes: u64,
    /// Sealed bytes of those blobs.
    pub stored_bytes: u64,
    /// Packs written.
    pub packs: u64,
}

type Upload = Result<(Id, u64, Vec<PackEntry>)>;

/// An intermediate index file is closed at the pack that brings it to this many blobs (so it
/// may hold one pack's blobs more), as it is at 64 packs. Counting packs alone, the 64 packs
/// of a first backup of 1,000,000 small files held all 1,000,000 entries until its one index
/// file was written at the end, and that file was then built, compressed and sealed whole in memory:
/// with the packer's set of every blob added, 337 MB at the peak. restic closes its index
/// files at 50,000 blobs.
const INDEX_FILE_BLOBS: usize = 65_536;

/// Collects sealed blobs into packs, uploads them (a few at a time) and writes index files
/// listing only packs that are durable.
pub struct Packer<'a> {
    repo: &'a Repository,
    data: PackBuilder,
    /// Where the data pack being filled is written as it fills, when the storage takes
    /// objects in pieces ([`crate::pack_stream`]); `None`: it is built in memory.
    data_stream: Option<PackStream>,
    tree: PackBuilder,
    /// Blobs added whose pack is not in the index yet (once it is, the index answers for
    /// them: a set of every blob of a backup held 69 MB at the end of one of 1,000,000 small
    /// files).
    seen: HashSet<Id>,
    uploads: JoinSet<Upload>,
    durable: Vec<IndexPack>,
    stats: PackerStats,
    /// Packs per intermediate index file.
    index_every: usize,
    /// Blobs that close an intermediate index file, whatever the number of packs.
    index_every_blobs: usize,
    max_uploads: usize,
}

impl<'a> Packer<'a> {
    fn new(repo: &'a Repository) -> Packer<'a> {
        Packer {
            repo,
            data: PackBuilder::default(),
            data_stream: None,
            tree: PackBuilder::default(),
            seen: HashSet::new(),
            uploads: JoinSet::new(),
            durable: Vec::new(),
            stats: PackerStats::default(),
            index_every: 64,
            index_every_blobs: INDEX_FILE_BLOBS,
            max_uploads: 2,
        }
    }

    /// True when the blob is in the repository or already added by this packer.
    #[must_use]
    pub fn has(&self, id: &Id) -> bool {
        self.seen.contains(id) || self.repo.index_read().contains(id)
    }

    /// Never write intermediate index files (prune writes one complete index itself).
    pub fn without_intermediate_index(&mut self) {
        self.index_every = usize::MAX;
        self.index_every_blobs = usize::MAX;
    }

    /// What was written so far.
    #[must_use]
    pub fn stats(&self) -> PackerStats {
        self.stats
    }

    /// Adds a sealed blob unless it is already stored; returns whether it was added.
    ///
    /// # Errors
    /// When a finished pack fails to upload.
    pub async fn add(&mut self, blob: SealedBlob) -> Result<bool> {
        if self.has(&blob.id) {
            return Ok(false);
        }
        self.seen.insert(blob.id);
        self.stats.blobs += 1;
        self.stats.raw_bytes += u64::from(blob.raw_len);
        self.stats.stored_bytes += blob.sealed.len() as u64;
        if blob.blob_type == BlobType::Data && self.data.is_empty() && self.data_stream.is_none() {
            self.data_stream = self
                .repo
                .storage
                .object_writer(Kind::Pack)
                .map(PackStream::start);
        }
        let (builder, stream) = match blob.blob_type {
            BlobType::Data => (&mut self.data, self.data_stream.as_mut()),
            BlobType::Tree => (&mut self.tree, None),
        };
        if let Some(stream) = stream {
            builder.add_entry(
                blob.id,
                blob.blob_type,
                blob.compression,
                blob.raw_len,
                blob.sealed.len(),
            );
            stream.blob(blob.sealed).await?;
        } else {
            if builder.is_empty() {
                // Reserve once: a doubling Vec would copy and touch up to twice the pack
                // size. Room for the blob that crosses the pack size (chunks are at most 8
                // MiB) and for the header (1/32 of the pack holds the entries of 12,000
                // blobs). Pages that are never written cost no memory.
                let pack_size = self.repo.config.pack_size as usize;
                let crossing = blob.sealed.len().max(8 << 20) + 4096;
                builder.reserve(pack_size + crossing + pack_size / 32);
            }
            builder.add(
                blob.id,
                blob.blob_type,
                blob.compression,
                blob.raw_len,
                &blob.sealed,
            );
            crate::buffers::give(blob.sealed);
        }
        if builder.len() >= self.repo.config.pack_size as usize {
            let full = std::mem::take(builder);
            match blob.blob_type {
                BlobType::Data => self.finish_data_pack(full).await?,
                BlobType::Tree => self.upload(full).await?,
            }
        }
        Ok(true)
    }

    /// Stores a plaintext blob (hashing, compressing and sealing it here); returns its id.
    ///
    /// # Errors
    /// When a finished pack fails to upload.
    pub async fn add_plain(&mut self, blob_type: BlobType, raw: Vec<u8>) -> Result<Id> {
        let id = self.repo.key.blob_id(&raw);
        if !self.has(&id) {
            let key = self.repo.key.clone();
            let sealed =
                tokio::task::spawn_blocking(move || seal_blob_with_id(&key, blob_type, id, &raw))
                    .await
                    .map_err(|e| RepoError::Invalid(e.to_string()))?;
            self.add(sealed).await?;
        }
        Ok(id)
    }

    /// Ends the data pack `builder` describes: its stream's trailer and commit when it was
    /// written as it filled, else an upload of the whole pack.
    async fn finish_data_pack(&mut self, builder: PackBuilder) -> Result<()> {
        let Some(stream) = self.data_stream.take() else {
            return self.upload(builder).await;
        };
        let committed = stream.end(builder.trailer(&self.repo.key)).await?;
        let entries = builder.into_entries();
        self.wait_for_upload_slot().await?;
        self.uploads.spawn(async move {
            let (id, size) = committed.await?;
            Ok((id, size, entries))
        });
        Ok(())
    }

    /// Ends the partial packs (data and tree) after the last blob and waits until every
    /// pack is durable.
    async fn finish_partial_packs(&mut self) -> Result<()> {
        let data = std::mem::take(&mut self.data);
        if !data.is_empty() {
            self.finish_data_pack(data).await?;
        }
        let tree = std::mem::take(&mut self.tree);
        if !tree.is_empty() {
            self.upload(tree).await?;
        }
        while !self.uploads.is_empty() {
            self.join_one().await?;
        }
        Ok(())
    }

    async fn wait_for_upload_slot(&mut self) -> Result<()> {
        while self.uploads.len() >= self.max_uploads {
            self.join_one().await?;
        }
        Ok(())
    }

    async fn upload(&mut self, builder: PackBuilder) -> Result<()> {
        self.wait_for_upload_slot().await?;
        let key = self.repo.key.clone();
        let storage = Arc::clone(&self.repo.storage);
        self.uploads.spawn(async move {
            let (id, bytes, entries) = tokio::task::spawn_blocking(move || builder.finish(&key))
                .await
                .map_err(|e| RepoError::Invalid(e.to_string()))?;
            let size = bytes.len() as u64;
            storage
                .write(Kind::Pack, &id.to_hex(), Bytes::from(bytes))
                .await
                .map_err(RepoError::storage(format!("writing pack {}", id.short())))?;
            Ok((id, size, entries))
        });
        Ok(())
    }

    async fn join_one(&mut self) -> Result<()> {
        if let Some(res) = self.uploads.join_next().await {
            let (id, size, entries) =
                res.map_err(|e| RepoError::Invalid(format!("upload task failed: {e}")))??;
            self.repo.add_to_index(id, size, &entries);
            for e in &entries {
                self.seen.remove(&e.id);
            }
            self.stats.packs += 1;
            self.durable.push(IndexPack {
                id,
                size,
                blobs: entries,
            });
            let blobs: usize = self.durable.iter().map(|p| p.blobs.len()).sum();
            if self.durable.len() >= self.index_every || blobs >= self.index_every_blobs {
                self.write_durable_index().await?;
            }
        }
        Ok(())
    }

    /// Uploads the partial packs, waits for every upload, and writes an index file for
    /// all durable packs not yet indexed. After this returns, everything added is
    /// durable and indexed.
    ///
    /// # Errors
    /// When an upload or the index write fails.
    pub async fn flush(&mut self) -> Result<()> {
        self.finish_partial_packs().await?;
        if !self.durable.is_empty() {
            self.write_durable_index().await?;
        }
        Ok(())
    }

    /// Durable packs written by this packer since the last index file (for prune, which
    /// writes its own complete index).
    pub fn take_durable(&mut self) -> Vec<IndexPack> {
        std::mem::take(&mut self.durable)
    }

    /// Writes an index file of the durable packs not yet indexed, and forgets them.
    async fn write_durable_index(&mut self) -> Result<()> {
        let file = IndexFile {
            supersedes: vec![],
            packs: self.take_durable(),
        };
        self.repo.write_index_file(&file).await?;
        Ok(())
    }

    /// Uploads partial packs and waits for uploads without writing an index file.
    ///
    /// # Errors
    /// When an upload fails.
    pub async fn finish_packs(&mut self) -> Result<Vec<IndexPack>> {
        self.finish_partial_packs().await?;
        Ok(self.take_durable())
    }
}
