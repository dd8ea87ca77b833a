//! Backup: folders or a stream → chunks → blobs → packs → index → snapshot.
//!
//! The pipeline overlaps its stages with bounded memory:
//! 1. a reader thread walks the folders (or reads the stream), cuts content into chunks and
//!    sends events down a bounded channel; files whose size, mtime, ctime and inode match the
//!    parent snapshot are not read again; small files (one chunk each) and unchanged ones go
//!    in batches, so that a tree of a million small files is not a million hand-offs;
//! 2. worker threads (one per core and one more) take the chunks in that order and hash,
//!    compress and seal them, several at once; the results come back in order;
//! 3. one task assembles files and trees and feeds the [`Packer`], which uploads packs a few at
//!    a time;
//! 4. when everything is durable and indexed, the snapshot is written (if the lock still
//!    holds).
//!
//! Unreadable, vanished or special files are skipped with a warning; a file that changes
//! while read is stored as read, with a warning. A read error of a stream is fatal: no
//! snapshot is written. This module must not delete anything.

use std::io::{Read, Seek};
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use tokio::sync::mpsc;

use crate::chunker::{Chunker, ChunkerParams};
use crate::content;
use crate::crypto::MasterKey;
use crate::error::{RepoError, Result};
use crate::exclude::Excludes;
use crate::folder_cache::{FolderCache, folder_key};
use crate::id::Id;
use crate::index::MasterIndex;
use crate::lock::LockGuard;
use crate::pack::BlobType;
use crate::repository::{Repository, SealedBlob, hostname, now_rfc3339, seal_blob_at, username};
use crate::snapshot::{Snapshot, SnapshotKind, Summary};
use crate::tree::{Node, NodeKind, Tree};

/// Live counters a caller can poll to draw progress.
#[derive(Debug, Default)]
pub struct Progress {
    /// Files finished.
    pub files: AtomicU64,
    /// Bytes read from the source.
    pub bytes_read: AtomicU64,
    /// Bytes of unchanged files skipped.
    pub bytes_skipped: AtomicU64,
    /// Bytes added to the repository (sealed).
    pub bytes_stored: AtomicU64,
}

/// Options of a backup.
#[derive(Debug, Clone, Default)]
pub struct BackupOptions {
    /// Tags to record.
    pub tags: Vec<String>,
    /// The parent snapshot; `None` picks the latest snapshot of the same paths and host.
    pub parent: Option<Id>,
    /// Read every file even when it looks unchanged.
    pub force_read: bool,
    /// Host name to record (default: this machine's).
    pub host: Option<String>,
    /// Free-form details to record with the snapshot.
    pub meta: serde_json::Value,
    /// Chunker bounds for a stream (default: the repository's stream bounds).
    pub stream_chunker: Option<ChunkerParams>,
    /// For a folder backup: the name to record as the snapshot's source and only path instead
    /// of the absolute paths read (e.g. `clinic.pgdir` for a dump written to a temporary
    /// folder, whose path means nothing once it is gone). Such a snapshot is never picked as
    /// a parent by path.
    pub source_name: Option<String>,
    /// For a folder backup: entries to leave out, by their path under each backed-up folder.
    pub exclude: Excludes,
    /// Live counters.
    pub progress: Option<Arc<Progress>>,
}

enum Event {
    DirStart(Node),
    /// The end of the folder begun last, with its tree in the parent snapshot (id and
    /// entries) when there is one: an equal tree is not encoded and stored again; and its
    /// path when the folder cache is kept: the folder's key and tree are learned for it.
    DirEnd {
        before: Option<(Id, Tree)>,
        path: Option<Vec<u8>>,
    },
    /// Folder keys and trees the walk took from the folder cache (sent once, at the end).
    CacheHits(Vec<(Id, Id)>),
    FileStart(Node),
    /// The next chunks of the current file, in order (see [`send_chunks`]).
    Chunks(Vec<Vec<u8>>),
    FileEnd {
        size: u64,
        warning: Option<String>,
    },
    /// Whole entries of the current folder, in order (see [`Walker::push_item`]).
    Batch(Vec<Item>),
    Warning(String),
}

/// An entry that needs nothing more from the reader.
enum Item {
    /// Complete as it is: a folder's symlink, an empty file, an unchanged file.
    Leaf(Node),
    /// A file of one chunk (no larger than the chunker's minimum), read whole.
    Small {
        node: Node,
        data: Vec<u8>,
        warning: Option<String>,
    },
    /// A whole folder whose tree came from the folder cache.
    Reused(Reused),
}

/// A folder taken whole from the folder cache: its node (with its tree) and what it holds,
/// for the summary.
struct Reused {
    node: Node,
    /// Files of some size, and empty ones, in it and its subfolders (symlinks are not files).
    files_unchanged: u64,
    files_empty: u64,
    /// Folders, itself included.
    dirs: u64,
    bytes: u64,
}

/// An [`Item`] after a worker saw it.
enum Done {
    Leaf(Node),
    Reused(Reused),
    Small {
        node: Node,
        chunk: Chunk,
        warning: Option<String>,
    },
}

enum Processed {
    Event(Event),
    /// One per chunk of an [`Event::Chunks`], in its order.
    Chunks(Vec<Chunk>),
    /// One per item of an [`Event::Batch`], in its order.
    Batch(Vec<Done>),
}

/// A chunk after a worker saw it.
enum Chunk {
    /// Already in the repository.
    Known(Id),
    /// New, sealed for a pack.
    New(SealedBlob),
}

/// Chunk bytes of a stream handed to a worker at once. A dump's 16 KiB chunks were each one
/// hand-off (a channel send, a blocking-pool wake-up and one back) that cost a tenth of the
/// stream's CPU in context switches.
const STREAM_BATCH_BYTES: usize = 1 << 20;

/// Bytes of content read and not yet stored (being compressed, or done and waiting for
/// their turn in the assembler) before the reader waits. Counted in bytes, not events:
/// reading and compressing alternate as the bottleneck from file to file (a megabyte of
/// incompressible media costs a worker a tenth of what a megabyte of text does), so the
/// reader has to run well ahead while a worker compresses text, and a file's start and end
/// took places in a queue of 8 events without holding any content. With those 8 events both
/// cores sat idle 11–20 % of a first media backup (one chunk of text at the head of the
/// line, the rest done behind it); with 32 events 5 %, but peak memory rose by 15 MB. By
/// bytes, five alternating runs each (docs/benchmarks.md, fourteenth pass): median 3.43 s
/// with 8 events, 3.33 with 4 MiB, 3.09 with 8 MiB, 3.09 with 12 MiB, 2.95 with 16 MiB;
/// peak memory 58, 55, 61, 62 and 68 MB. A chunk larger than this still goes, alone.
const IN_FLIGHT_BYTES: usize = 8 << 20;

/// Events in flight at most, whatever they hold (folder and file starts and ends hold no
/// content): only a bound on the assembler's queue; [`IN_FLIGHT_BYTES`] is the one that
/// matters.
const IN_FLIGHT_EVENTS: usize = 256;

/// What the reader sends through: the events, in order, to the assembler; the work in them
/// to the workers; and the budget of [`IN_FLIGHT_BYTES`] it waits on.
struct Outbox {
    tx: mpsc::Sender<(Incoming, usize)>,
    jobs: std::sync::mpsc::Sender<Job>,
    ctx: Arc<Ctx>,
    budget: Arc<Budget>,
}

/// An event for a worker, and where its result goes.
struct Job {
    ev: Event,
    done: tokio::sync::oneshot::Sender<Processed>,
}

/// What the assembler receives, in the reader's order, with the bytes of content it holds.
enum Incoming {
    /// Needed nothing from a worker.
    Ready(Processed),
    /// Being processed: its result comes through here.
    Working(tokio::sync::oneshot::Receiver<Processed>),
}

/// Starts `n` worker threads that take jobs in the order they were sent and hash, compress
/// and seal their content; they end when the returned sender (the reader's) is dropped and
/// the jobs sent before are done. Threads of their own, not tasks: a worker that finishes a
/// job takes the next one at once, where a blocking task was started only after the
/// assembler's thread had woken up to see the last one finish, which left a core idle for
/// each hand-off.
fn start_workers(n: usize, ctx: &Arc<Ctx>) -> Result<WorkerPool> {
    let (jobs, queue) = std::sync::mpsc::channel::<Job>();
    let queue = Arc::new(std::sync::Mutex::new(queue));
    let mut threads = Vec::with_capacity(n);
    for i in 0..n {
        let queue = Arc::clone(&queue);
        let ctx = Arc::clone(ctx);
        let thread = std::thread::Builder::new()
            .name(format!("backup-worker-{i}"))
            .spawn(move || {
                loop {
                    // One worker waits in `recv` at a time, the others for the lock; a
                    // poisoned lock only means a worker panicked: the queue is whole.
                    let job = queue
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .recv();
                    let Ok(Job { ev, done }) = job else { break };
                    // The assembler may have stopped: then nobody waits for the result.
                    let _ = done.send(process_event(&ctx, ev));
                }
            })
            .map_err(|e| RepoError::Invalid(format!("starting a backup worker: {e}")))?;
        threads.push(thread);
    }
    Ok(WorkerPool { jobs, threads })
}

/// The workers' job queue and their threads, which end once the queue's sender is dropped and
/// the jobs sent before are done.
struct WorkerPool {
    jobs: std::sync::mpsc::Sender<Job>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

/// Bytes of content in flight between the reader and the assembler.
struct Budget {
    /// Bytes taken, and whether the assembler has stopped (the reader must not wait then).
    state: std::sync::Mutex<(usize, bool)>,
    given_back: std::sync::Condvar,
}

impl Budget {
    fn new() -> Budget {
        Budget {
            state: std::sync::Mutex::new((0, false)),
            given_back: std::sync::Condvar::new(),
        }
    }

    /// A poisoned lock only means a thread panicked holding it: the count is still whole.
    fn state(&self) -> std::sync::MutexGuard<'_, (usize, bool)> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Waits until `n` more bytes fit (or nothing is in flight), then counts them.
    fn take(&self, n: usize) -> Result<()> {
        let mut st = self.state();
        while !st.1 && st.0 > 0 && st.0 + n > IN_FLIGHT_BYTES {
            st = self
                .given_back
                .wait(st)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        if st.1 {
            return Err(RepoError::Cancelled);
        }
        st.0 += n;
        Ok(())
    }

    /// `n` bytes were stored (or dropped).
    fn give(&self, n: usize) {
        if n > 0 {
            let mut st = self.state();
            st.0 = st.0.saturating_sub(n);
            self.given_back.notify_all();
        }
    }

    /// The assembler stopped: a reader waiting for room gets [`RepoError::Cancelled`].
    fn close(&self) {
        self.state().1 = true;
        self.given_back.notify_all();
    }
}

/// Closes the budget when the assembler's side ends in any way, even when the backup's
/// future is dropped half-way (a cancelled job): the reader's thread must not wait forever.
struct CloseOnDrop(Arc<Budget>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.0.close();
    }
}

impl Event {
    /// Bytes of file content the event holds.
    fn content_bytes(&self) -> usize {
        match self {
            Event::Chunks(chunks) => chunks.iter().map(Vec::len).sum(),
            Event::Batch(items) => items
                .iter()
                .map(|i| match i {
                    Item::Small { data, .. } => data.len(),
                    Item::Leaf(_) | Item::Reused(_) => 0,
                })
                .sum(),
            _ => 0,
        }
    }
}

/// A file's chunks go one at a time: they are 512 KiB or more (but a file's last), so a
/// hand-off costs little against them, and batches of two would hold more of them in memory
/// (the first media backup's peak went from 71 to 79 MB with 1 MiB batches).
const FILE_BATCH_BYTES: usize = 1;

/// A batch of small files and unchanged entries is sent when it holds this many bytes of
/// file content or [`BATCH_ITEMS`] entries, or before any other event. One hand-off per small
/// file cost ~250 µs of waiting: 20,000 files of 1.5 KiB took 5 s, for 2 s of CPU.
const BATCH_BYTES: usize = 1 << 20;
/// See [`BATCH_BYTES`].
const BATCH_ITEMS: usize = 1024;

/// Cuts the chunker's current reader to its end and sends its chunks in batches of at least
/// `batch_bytes` (the last may be smaller). Returns the bytes read and the read error that
/// ended the reader early, if one did (the chunks read before it are sent).
fn send_chunks<R: Read>(
    chunker: &mut Chunker<R>,
    batch_bytes_min: usize,
    tx: &Outbox,
    progress: Option<&Progress>,
) -> Result<(u64, Option<std::io::Error>)> {
    let mut size = 0u64;
    let mut batch = Vec::new();
    let mut batch_bytes = 0;
    let read_error = loop {
        match chunker.next_chunk() {
            Ok(Some(c)) => {
                size += c.len() as u64;
                if let Some(p) = progress {
                    p.bytes_read.fetch_add(c.len() as u64, Ordering::Relaxed);
                }
                batch_bytes += c.len();
                batch.push(c);
                if batch_bytes >= batch_bytes_min {
                    send(tx, Event::Chunks(std::mem::take(&mut batch)))?;
                    batch_bytes = 0;
                }
            }
            Ok(None) => break None,
            Err(e) => break Some(e),
        }
    };
    if !batch.is_empty() {
        send(tx, Event::Chunks(batch))?;
    }
    Ok((size, read_error))
}

struct Frame {
    node: Option<Node>,
    tree: Tree,
}

/// The node of a stream's content before it is read: a private file, owned by root, with
/// nothing in it yet.
fn stream_node(name: Vec<u8>) -> Node {
    Node {
        name,
        kind: NodeKind::File,
        mode: 0o600,
        uid: 0,
        gid: 0,
        mtime_ns: 0,
        ctime_ns: 0,
        inode: 0,
        size: 0,
        content: vec![],
        content_lists: vec![],
        subtree: None,
        target: None,
    }
}

fn now_ns() -> i64 {
    chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0)
}

fn meta_node(name: Vec<u8>, kind: NodeKind, md: &std::fs::Metadata) -> Node {
    Node {
        name,
        kind,
        mode: md.permissions().mode() & 0o7777,
        uid: md.uid(),
        gid: md.gid(),
        mtime_ns: md
            .mtime()
            .saturating_mul(1_000_000_000)
            .saturating_add(md.mtime_nsec()),
        ctime_ns: md
            .ctime()
            .saturating_mul(1_000_000_000)
            .saturating_add(md.ctime_nsec()),
        inode: md.ino(),
        size: md.len(),
        content: vec![],
        content_lists: vec![],
        subtree: None,
        target: None,
    }
}

/// Backs up folders (and files) into a new snapshot.
///
/// # Errors
/// When a path does not exist or is not readable, when the repository cannot be written,
/// or when the lock was lost; no snapshot is then written.
pub async fn backup_paths(
    repo: &Arc<Repository>,
    lock: &LockGuard,
    paths: &[PathBuf],
    opts: BackupOptions,
) -> Result<(Id, Snapshot)> {
    if paths.is_empty() {
        return Err(RepoError::Invalid(
            "nothing to back up: give at least one --path".into(),
        ));
    }
    let mut abs = Vec::new();
    for p in paths {
        let a = std::path::absolute(p).map_err(RepoError::io("resolving", p))?;
        std::fs::symlink_metadata(&a).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => {
                RepoError::Invalid(format!("{} does not exist", p.display()))
            }
            _ => RepoError::Io {
                context: "reading",
                path: p.clone(),
                source: e,
            },
        })?;
        abs.push(a);
    }
    let sources: Vec<String> = abs.iter().map(|p| p.display().to_string()).collect();
    refresh_index(repo, lock).await?;
    let host = opts.host.clone().unwrap_or_else(hostname);
    let parent = match opts.parent {
        Some(p) => Some(p),
        None if opts.force_read => None,
        None => {
            let (snaps, _) = repo.list_snapshots().await?;
            snaps
                .into_iter()
                .rev()
                .find(|(_, s)| {
                    s.kind == SnapshotKind::Files && s.paths == sources && s.host == host
                })
                .map(|(id, _)| id)
        }
    };
    // A parent that cannot be read only costs speed: every file is then read again.
    let mut early_warnings = Vec::new();
    let parent_root = match parent {
        Some(pid) => match repo.find_snapshot(&pid.to_hex()).await {
            Ok((_, ps)) => match repo.load_tree(&ps.tree).await {
                Ok(t) => Some(t),
                Err(e) => {
                    early_warnings.push(format!(
                        "parent snapshot {} unreadable, reading every file: {e}",
                        pid.short()
                    ));
                    None
                }
            },
            Err(e) if opts.parent.is_some() => return Err(e),
            Err(_) => None,
        },
        None => None,
    };
    // The folder cache: kept wherever there is a cache folder, except for a temporary folder
    // recorded under another name (its path is new each time: the cache would only grow);
    // used unless every file is to be read.
    let folder_cache = match (repo.cache_dir(), &opts.source_name) {
        (Some(dir), None) => {
            let mut fc = FolderCache::new(dir, repo.config().id, repo.key(), &host, &sources);
            if !opts.force_read {
                let key = repo.key().clone();
                let index_files = repo.index_file_ids();
                fc = tokio::task::spawn_blocking(move || {
                    fc.load(&key, &index_files);
                    fc
                })
                .await
                .map_err(|e| RepoError::Invalid(format!("reading the folder cache: {e}")))?;
            }
            Some(fc)
        }
        _ => None,
    };
    let walk = WalkSetup {
        parent_root,
        exclude: opts.exclude.clone(),
        params: repo.config().chunker_files,
        record: folder_cache.is_some(),
        cache: folder_cache
            .as_ref()
            .filter(|c| !c.is_empty())
            .cloned()
            .map(Arc::new),
    };
    let r = Arc::clone(repo);
    let progress = opts.progress.clone();
    let reader = move |tx: Outbox| walk_roots(&r, &abs, walk, &tx, progress.as_deref());
    let (source, recorded_paths) = match &opts.source_name {
        Some(n) => (n.clone(), vec![n.clone()]),
        None => (sources.join(", "), sources),
    };
    let (mut snap, learned) = run(
        repo,
        lock,
        reader,
        &opts,
        SnapshotKind::Files,
        source,
        recorded_paths,
    )
    .await?;
    snap.parent = parent;
    snap.summary.notes = early_warnings;
    let id = commit(repo, lock, &snap).await?;
    if let Some(fc) = folder_cache {
        // Written after the snapshot, with the index files that hold every tree it names. A
        // cache that cannot be written only makes the next backup slower.
        let key = repo.key().clone();
        let index_files = repo.index_file_ids();
        let _ = tokio::task::spawn_blocking(move || fc.store(&key, learned, &index_files)).await;
    }
    Ok((id, snap))
}

/// Backs up a stream (e.g. a database dump) as a snapshot holding one file named `name`.
///
/// # Errors
/// When the stream fails to read (the error of the producing process included), when the
/// repository cannot be written or the lock was lost; no snapshot is then written.
pub async fn backup_stream(
    repo: &Arc<Repository>,
    lock: &LockGuard,
    name: &str,
    input: Box<dyn Read + Send>,
    opts: BackupOptions,
) -> Result<(Id, Snapshot)> {
    let meta = opts.meta.clone();
    backup_stream_with(repo, lock, name, input, opts, move || Ok(meta)).await
}

/// Like [`backup_stream`], but the snapshot's `meta` comes from `finish`, called after the
/// whole stream was read and stored and before the snapshot is committed. An error from
/// `finish` (e.g. the dump tool exited non-zero, or its manifest could not be read) aborts
/// the backup: no snapshot is written.
///
/// # Errors
/// As [`backup_stream`], plus the error of `finish`.
pub async fn backup_stream_with(
    repo: &Arc<Repository>,
    lock: &LockGuard,
    name: &str,
    mut input: Box<dyn Read + Send>,
    opts: BackupOptions,
    finish: impl FnOnce() -> std::result::Result<serde_json::Value, String> + Send + 'static,
) -> Result<(Id, Snapshot)> {
    let node_name = name.trim_matches('/').to_owned();
    let probe = stream_node(node_name.clone().into_bytes());
    if !probe.name_is_safe() {
        return Err(RepoError::Invalid(format!(
            "{name:?} is not a valid stream name (no '/', not empty)"
        )));
    }
    let params = opts.stream_chunker.unwrap_or(repo.config().chunker_streams);
    params.validate().map_err(RepoError::Invalid)?;
    refresh_index(repo, lock).await?;
    let seed = repo.config().chunker_seed;
    let progress = opts.progress.clone();
    let reader = move |tx: Outbox| -> Result<()> {
        let mut node = probe;
        node.mtime_ns = now_ns();
        node.ctime_ns = node.mtime_ns;
        send(&tx, Event::FileStart(node))?;
        let mut chunker: Chunker<&mut dyn Read> = Chunker::new(params, seed);
        chunker.reset(&mut *input);
        let (size, read_error) =
            send_chunks(&mut chunker, STREAM_BATCH_BYTES, &tx, progress.as_deref())?;
        if let Some(e) = read_error {
            return Err(RepoError::Invalid(format!(
                "reading the stream {node_name:?} failed: {e}"
            )));
        }
        send(
            &tx,
            Event::FileEnd {
                size,
                warning: None,
            },
        )
    };
    let (mut snap, _) = run(
        repo,
        lock,
        reader,
        &opts,
        SnapshotKind::Stream,
        name.to_owned(),
        vec![name.to_owned()],
    )
    .await?;
    snap.meta = tokio::task::spawn_blocking(finish)
        .await
        .map_err(|e| RepoError::Invalid(e.to_string()))?
        .map_err(|e| {
            RepoError::Invalid(format!("the source failed after its stream was read: {e}"))
        })?;
    let id = commit(repo, lock, &snap).await?;
    Ok((id, snap))
}

/// Reloads the index under the caller's lock. An index loaded before the lock was taken may
/// list blobs that a prune removed since; a backup trusting it would refer to them without
/// storing them, and its snapshot would not restore.
async fn refresh_index(repo: &Repository, lock: &LockGuard) -> Result<()> {
    lock.check().await?;
    repo.reload_index_if_changed().await?;
    Ok(())
}

async fn commit(repo: &Repository, lock: &LockGuard, snap: &Snapshot) -> Result<Id> {
    lock.check().await?;
    let mut s = snap.clone();
    s.summary.finished = now_rfc3339();
    repo.save_snapshot(&s).await
}

/// Sends an event once the content it holds fits in the budget: its work to the workers,
/// and the event (or where its result will come) to the assembler.
fn send(out: &Outbox, ev: Event) -> Result<()> {
    let bytes = ev.content_bytes();
    out.budget.take(bytes)?;
    let incoming = if needs_worker(&ev) {
        let (done, result) = tokio::sync::oneshot::channel();
        out.jobs
            .send(Job { ev, done })
            .map_err(|_| RepoError::Cancelled)?;
        Incoming::Working(result)
    } else {
        Incoming::Ready(process_event(&out.ctx, ev))
    };
    out.tx
        .blocking_send((incoming, bytes))
        .map_err(|_| RepoError::Cancelled)
}

/// Whether an event has content to hash, compress and seal.
fn needs_worker(ev: &Event) -> bool {
    match ev {
        Event::Chunks(_) => true,
        Event::Batch(items) => items.iter().any(|i| matches!(i, Item::Small { .. })),
        _ => false,
    }
}

/// An event after a worker saw it (or as it is, when it has no content).
fn process_event(ctx: &Ctx, ev: Event) -> Processed {
    match ev {
        Event::Chunks(chunks) => {
            let done = chunks.iter().map(|c| process_chunk(ctx, c)).collect();
            chunks.into_iter().for_each(crate::buffers::give);
            Processed::Chunks(done)
        }
        Event::Batch(items) => {
            Processed::Batch(items.into_iter().map(|i| process_item(ctx, i)).collect())
        }
        other => Processed::Event(other),
    }
}

struct Ctx {
    key: MasterKey,
    index: Arc<RwLock<MasterIndex>>,
    /// zstd level of new data blobs.
    level: i32,
}

fn process_chunk(ctx: &Ctx, data: &[u8]) -> Chunk {
    let id = ctx.key.blob_id(data);
    let known = ctx.index.read().map(|i| i.contains(&id)).unwrap_or(false);
    if known {
        Chunk::Known(id)
    } else {
        Chunk::New(seal_blob_at(&ctx.key, BlobType::Data, id, data, ctx.level))
    }
}

fn process_item(ctx: &Ctx, item: Item) -> Done {
    match item {
        Item::Leaf(node) => Done::Leaf(node),
        Item::Reused(r) => Done::Reused(r),
        Item::Small {
            node,
            data,
            warning,
        } => {
            let chunk = process_chunk(ctx, &data);
            crate::buffers::give(data);
            Done::Small {
                chunk,
                node,
                warning,
            }
        }
    }
}

/// Adds a new chunk to the pack being written (a known one is only referred to); its id.
async fn store_chunk(
    packer: &mut crate::repository::Packer<'_>,
    chunk: Chunk,
    progress: Option<&Progress>,
) -> Result<Id> {
    match chunk {
        Chunk::Known(id) => Ok(id),
        Chunk::New(blob) => {
            let id = blob.id;
            let stored = blob.sealed.len() as u64;
            if packer.add(blob).await?
                && let Some(p) = progress
            {
                p.bytes_stored.fetch_add(stored, Ordering::Relaxed);
            }
            Ok(id)
        }
    }
}

/// Counts a file whose content was read into the summary and the live counters.
fn count_file_read(summary: &mut Summary, progress: Option<&Progress>, size: u64) {
    summary.files += 1;
    summary.files_read += 1;
    summary.bytes_read += size;
    summary.total_bytes += size;
    if let Some(p) = progress {
        p.files.fetch_add(1, Ordering::Relaxed);
    }
}

/// Counts an entry that was not read: a file reused unchanged (or empty), or a symlink.
fn count_leaf(summary: &mut Summary, progress: Option<&Progress>, node: &Node) {
    if node.kind != NodeKind::File {
        return;
    }
    summary.files += 1;
    summary.total_bytes += node.size;
    if node.size > 0 {
        summary.files_unchanged += 1;
    } else {
        summary.files_read += 1;
    }
    if let Some(p) = progress {
        p.files.fetch_add(1, Ordering::Relaxed);
        p.bytes_skipped.fetch_add(node.size, Ordering::Relaxed);
    }
}

fn count_reused(summary: &mut Summary, progress: Option<&Progress>, r: &Reused) {
    summary.dirs += r.dirs;
    summary.files += r.files_unchanged + r.files_empty;
    summary.files_unchanged += r.files_unchanged;
    summary.files_read += r.files_empty;
    summary.total_bytes += r.bytes;
    if let Some(p) = progress {
        p.files
            .fetch_add(r.files_unchanged + r.files_empty, Ordering::Relaxed);
        p.bytes_skipped.fetch_add(r.bytes, Ordering::Relaxed);
    }
}

async fn run<F>(
    repo: &Arc<Repository>,
    lock: &LockGuard,
    reader: F,
    opts: &BackupOptions,
    kind: SnapshotKind,
    source: String,
    paths: Vec<String>,
) -> Result<(Snapshot, Vec<(Id, Id)>)>
where
    F: FnOnce(Outbox) -> Result<()> + Send + 'static,
{
    lock.check().await?;
    let started = now_rfc3339();
    let ctx = Arc::new(Ctx {
        key: repo.key().clone(),
        index: Arc::clone(repo.index()),
        level: match kind {
            SnapshotKind::Stream => crate::compress::ZSTD_LEVEL_STREAMS,
            SnapshotKind::Files => crate::compress::ZSTD_LEVEL,
        },
    });
    // As many workers as compress at once (one per core and one more): the reader then
    // keeps cutting ahead while the workers compress a long stretch of text, and the
    // workers keep busy while the reader goes through incompressible files (which cost them
    // little), without a compression context per waiting chunk. Up to `IN_FLIGHT_BYTES` of
    // content are worked on or waiting in order.
    let WorkerPool { jobs, threads } = start_workers(crate::compress::compressing_at_once(), &ctx)?;
    let (tx, mut rx) = mpsc::channel::<(Incoming, usize)>(IN_FLIGHT_EVENTS);
    let budget = Arc::new(Budget::new());
    let closer = CloseOnDrop(Arc::clone(&budget));
    let out = Outbox {
        tx,
        jobs,
        ctx,
        budget: Arc::clone(&budget),
    };
    let reader_task = tokio::task::spawn_blocking(move || reader(out));

    let mut packer = repo.packer();
    let mut summary = Summary {
        started,
        ..Summary::default()
    };
    let mut stack = vec![Frame {
        node: None,
        tree: Tree::default(),
    }];
    let mut file: Option<Node> = None;
    let mut learned: Vec<(Id, Id)> = Vec::new();
    let progress = opts.progress.clone();
    let assemble = async {
        let mut seen = 0u64;
        while let Some((incoming, bytes)) = rx.recv().await {
            seen += 1;
            let item = match incoming {
                Incoming::Ready(p) => Ok(p),
                Incoming::Working(result) => result
                    .await
                    .map_err(|_| RepoError::Invalid("a backup worker failed".into())),
            };
            // Stop early when the lock could not be refreshed: nothing will be committed.
            if seen.is_multiple_of(256)
                && let Some(why) = lock.lost_reason()
            {
                return Err(RepoError::LockLost(why));
            }
            match item? {
                Processed::Chunks(chunks) => {
                    let f = file
                        .as_mut()
                        .ok_or_else(|| RepoError::Invalid("chunk outside a file".into()))?;
                    for chunk in chunks {
                        f.content
                            .push(store_chunk(&mut packer, chunk, progress.as_deref()).await?);
                    }
                }
                Processed::Event(Event::FileStart(node)) => file = Some(node),
                Processed::Event(Event::FileEnd { size, warning }) => {
                    let mut f = file
                        .take()
                        .ok_or_else(|| RepoError::Invalid("file end without start".into()))?;
                    f.size = size;
                    if content::needs_lists(&f.content) {
                        for part in content::split(&f.content) {
                            let id = packer
                                .add_plain(BlobType::Tree, content::encode(part))
                                .await?;
                            f.content_lists.push(id);
                        }
                        f.content.clear();
                    }
                    count_file_read(&mut summary, progress.as_deref(), size);
                    summary.warnings.extend(warning);
                    push_node(&mut stack, f)?;
                }
                Processed::Batch(done) => {
                    for d in done {
                        match d {
                            Done::Leaf(node) => {
                                count_leaf(&mut summary, progress.as_deref(), &node);
                                push_node(&mut stack, node)?;
                            }
                            Done::Reused(r) => {
                                count_reused(&mut summary, progress.as_deref(), &r);
                                push_node(&mut stack, r.node)?;
                            }
                            Done::Small {
                                mut node,
                                chunk,
                                warning,
                            } => {
                                node.content.push(
                                    store_chunk(&mut packer, chunk, progress.as_deref()).await?,
                                );
                                count_file_read(&mut summary, progress.as_deref(), node.size);
                                summary.warnings.extend(warning);
                                push_node(&mut stack, node)?;
                            }
                        }
                    }
                }
                Processed::Event(Event::DirStart(node)) => {
                    summary.dirs += 1;
                    stack.push(Frame {
                        node: Some(node),
                        tree: Tree::default(),
                    });
                }
                Processed::Event(Event::DirEnd { before, path }) => {
                    let frame = stack
                        .pop()
                        .ok_or_else(|| RepoError::Invalid("unbalanced directories".into()))?;
                    let mut node = frame
                        .node
                        .ok_or_else(|| RepoError::Invalid("unbalanced directories".into()))?;
                    let tree = normalized(frame.tree);
                    let key = path.map(|p| folder_key(repo.key(), &p, &tree.nodes));
                    let id = save_tree(&mut packer, tree, before).await?;
                    if let Some(key) = key {
                        learned.push((key, id));
                    }
                    node.subtree = Some(id);
                    push_node(&mut stack, node)?;
                }
                Processed::Event(Event::CacheHits(hits)) => learned.extend(hits),
                Processed::Event(Event::Warning(w)) => summary.warnings.push(w),
                Processed::Event(Event::Chunks(_) | Event::Batch(_)) => {}
            }
            budget.give(bytes);
        }
        Ok::<_, RepoError>(())
    };
    let assembled = assemble.await;
    // A reader still waiting for room (the assembler failed) stops at once.
    drop(closer);
    drop(rx);
    let read_result = reader_task
        .await
        .map_err(|e| RepoError::Invalid(format!("reader failed: {e}")))?;
    // The reader is done (its end of the job queue dropped): the workers end once the jobs
    // it sent are done, and none outlives the backup. A worker that panicked was reported
    // through the result it did not send.
    let _ = tokio::task::spawn_blocking(move || {
        for t in threads {
            let _ = t.join();
        }
    })
    .await;
    // The reader's own error is the cause when both failed, unless the reader only stopped
    // because the assembler did (a pack write failed: the disk is full).
    match (read_result, assembled) {
        (Err(RepoError::Cancelled), Err(e)) | (Err(e), _) | (Ok(()), Err(e)) => return Err(e),
        (Ok(()), Ok(())) => {}
    }
    if stack.len() != 1 {
        return Err(RepoError::Invalid("unbalanced directories".into()));
    }
    let root = stack.pop().map(|f| f.tree).unwrap_or_default();
    let tree = save_tree(&mut packer, normalized(root), None).await?;
    packer.flush().await?;
    let stats = packer.stats();
    summary.blobs_added = stats.blobs;
    summary.bytes_added = stats.raw_bytes;
    summary.bytes_stored = stats.stored_bytes;
    let snap = Snapshot {
        version: 1,
        time: summary.started.clone(),
        kind,
        source,
        paths,
        host: opts.host.clone().unwrap_or_else(hostname),
        user: username(),
        tags: opts.tags.clone(),
        tree,
        parent: None,
        summary,
        program: format!("strongroom {}", env!("CARGO_PKG_VERSION")),
        meta: opts.meta.clone(),
    };
    Ok((snap, learned))
}

fn push_node(stack: &mut [Frame], node: Node) -> Result<()> {
    let top = stack
        .last_mut()
        .ok_or_else(|| RepoError::Invalid("unbalanced directories".into()))?;
    top.tree.nodes.push(node);
    Ok(())
}

/// A folder's entries as its tree stores them: sorted by name, each name once.
fn normalized(mut tree: Tree) -> Tree {
    tree.sort();
    tree.nodes.dedup_by(|b, a| a.name == b.name);
    tree
}

/// Stores a folder's tree (as [`normalized`]); `before` is the parent snapshot's tree of the
/// same folder: when the entries are the same and it is still indexed, its id is the answer
/// (the same entries encode to the same blob; nothing is encoded, hashed or looked up again).
async fn save_tree(
    packer: &mut crate::repository::Packer<'_>,
    tree: Tree,
    before: Option<(Id, Tree)>,
) -> Result<Id> {
    if let Some((id, old)) = before
        && old.nodes == tree.nodes
        && packer.has(&id)
    {
        return Ok(id);
    }
    let bytes = tree
        .to_bytes()
        .map_err(|e| RepoError::Invalid(e.to_string()))?;
    packer.add_plain(BlobType::Tree, bytes).await
}

fn path_bytes(p: &Path) -> Vec<u8> {
    p.as_os_str().as_bytes().to_vec()
}

fn name_bytes(p: &Path) -> Vec<u8> {
    p.file_name()
        .map(|n| n.as_bytes().to_vec())
        .unwrap_or_else(|| b"root".to_vec())
}

/// A parent tree being loaded on the runtime (see [`Walker::dir`]).
type PendingTree = tokio::task::JoinHandle<Result<(Id, Tree)>>;

/// Parent trees of subfolders loaded ahead of the walk, per folder.
const TREE_PREFETCH: usize = 4;

/// Folder listings looked at ahead of the walk, on the blocking pool, in the folder cache's
/// walk: looking at a million files is most of an unchanged tree's backup, and this spreads it
/// over the cores.
const SCAN_PREFETCH: usize = 4;

/// What a folder walk starts from.
struct WalkSetup {
    /// The parent snapshot's root tree.
    parent_root: Option<Tree>,
    /// Entries to leave out.
    exclude: Excludes,
    params: ChunkerParams,
    /// Send folder paths, so that the assembler learns each folder's key and tree.
    record: bool,
    /// The folder cache, when it has entries to use.
    cache: Option<Arc<FolderCache>>,
}

/// A folder of the folder cache's walk: entered, but perhaps not begun for the assembler.
struct CacheFrame {
    /// Its name in its parent's tree.
    name: Vec<u8>,
    /// Its node (no tree yet).
    node: Node,
    /// Whether its `DirStart` was sent.
    started: bool,
    /// Its tree in the parent snapshot: `None` until looked up.
    old: Option<Option<(Id, Tree)>>,
}

/// A folder listed and looked at: its entries sorted by name, or why it could not be listed.
struct Scan {
    entries: std::io::Result<Vec<(Vec<u8>, std::io::Result<std::fs::Metadata>)>>,
    /// Entries that could not be listed.
    errors: Vec<std::io::Error>,
}

/// Lists a folder and looks at each entry (without following symlinks), through the open
/// folder (`statx` relative to it).
fn scan_folder(path: &Path) -> Scan {
    let mut errors = Vec::new();
    let entries = std::fs::read_dir(path).map(|rd| {
        let mut v = Vec::new();
        for e in rd {
            match e {
                Ok(e) => v.push((e.file_name().as_bytes().to_vec(), e.metadata())),
                Err(e) => errors.push(e),
            }
        }
        v.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        v
    });
    Scan { entries, errors }
}

/// What became of a folder in the folder cache's walk.
enum Outcome {
    /// Its tree came from the cache; nothing was sent.
    Resolved(Box<Reused>),
    /// It was begun and ended for the assembler.
    Emitted,
    /// It could not be listed (a warning was sent); it is not in the snapshot.
    Skipped,
}

/// A folder scan running on the blocking pool.
type PendingScan = tokio::task::JoinHandle<Scan>;

struct Walker<'a> {
    repo: &'a Repository,
    shared: Arc<Repository>,
    handle: tokio::runtime::Handle,
    tx: &'a Outbox,
    chunker: Chunker<std::fs::File>,
    progress: Option<&'a Progress>,
    /// Files of at most this size are one chunk: read whole and batched.
    small_max: u64,
    /// Entries not sent yet, and the bytes of file content among them.
    batch: Vec<Item>,
    batch_bytes: usize,
    /// See [`WalkSetup::record`].
    record: bool,
    /// See [`WalkSetup::cache`].
    cache: Option<Arc<FolderCache>>,
    /// The parent snapshot's root tree (the folder cache's walk looks trees up lazily from it).
    parent_root: Option<Tree>,
    /// The folders the folder cache's walk is in, outermost first.
    frames: Vec<CacheFrame>,
    /// Folder keys and trees taken from the cache.
    hits: Vec<(Id, Id)>,
    /// Entries to leave out, and the backed-up path they are relative to.
    exclude: Excludes,
    root: PathBuf,
}

fn walk_roots(
    repo: &Arc<Repository>,
    roots: &[PathBuf],
    setup: WalkSetup,
    tx: &Outbox,
    progress: Option<&Progress>,
) -> Result<()> {
    let WalkSetup {
        parent_root,
        exclude,
        params,
        record,
        cache,
    } = setup;
    let mut w = Walker {
        repo,
        shared: Arc::clone(repo),
        handle: tokio::runtime::Handle::current(),
        tx,
        chunker: Chunker::new(params, repo.config().chunker_seed),
        progress,
        small_max: u64::from(params.min),
        batch: Vec::new(),
        batch_bytes: 0,
        record,
        cache,
        parent_root,
        frames: Vec::new(),
        hits: Vec::new(),
        exclude,
        root: PathBuf::new(),
    };
    let mut used: Vec<Vec<u8>> = Vec::new();
    for root in roots {
        let mut name = name_bytes(root);
        let base = name.clone();
        let mut n = 2;
        while used.contains(&name) {
            name = [base.as_slice(), format!("-{n}").as_bytes()].concat();
            n += 1;
        }
        used.push(name.clone());
        w.root.clone_from(root);
        let md = std::fs::symlink_metadata(root);
        if w.cache.is_some()
            && let Ok(md) = &md
            && md.is_dir()
        {
            if let Outcome::Resolved(r) = w.folder(root, name, md, Ok(scan_folder(root)))? {
                w.push_item(Item::Reused(*r))?;
            }
            continue;
        }
        let parent_node = w.parent_root.as_ref().and_then(|t| find(t, &name)).cloned();
        w.entry(root, name, md, parent_node.as_ref(), None)?;
    }
    if !w.hits.is_empty() {
        let hits = std::mem::take(&mut w.hits);
        w.emit(Event::CacheHits(hits))?;
    }
    w.flush()
}

fn find<'t>(tree: &'t Tree, name: &[u8]) -> Option<&'t Node> {
    tree.nodes
        .binary_search_by(|n| n.name.as_slice().cmp(name))
        .ok()
        .and_then(|i| tree.nodes.get(i))
}

impl Walker<'_> {
    /// Removes from the listing `entries` of the folder `path` what the exclude patterns
    /// match (matched by the path under the backed-up path being walked).
    fn drop_excluded<T>(
        &self,
        path: &Path,
        entries: &mut Vec<(Vec<u8>, T)>,
        is_dir: impl Fn(&T) -> bool,
    ) {
        if self.exclude.is_empty() {
            return;
        }
        let folder = path
            .strip_prefix(&self.root)
            .map(path_bytes)
            .unwrap_or_default();
        entries.retain(|(name, e)| !self.exclude.excludes(&folder, name, is_dir(e)));
    }

    /// Sends an event after the entries batched before it, keeping the folder's order.
    fn emit(&mut self, ev: Event) -> Result<()> {
        self.flush()?;
        send(self.tx, ev)
    }

    fn flush(&mut self) -> Result<()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        self.batch_bytes = 0;
        send(self.tx, Event::Batch(std::mem::take(&mut self.batch)))
    }

    fn push_item(&mut self, item: Item) -> Result<()> {
        if let Item::Small { data, .. } = &item {
            self.batch_bytes += data.len();
        }
        self.batch.push(item);
        if self.batch_bytes >= BATCH_BYTES || self.batch.len() >= BATCH_ITEMS {
            self.flush()?;
        }
        Ok(())
    }

    fn warn(&mut self, msg: String) -> Result<()> {
        self.emit(Event::Warning(msg))
    }

    /// One path, looked at (not following a symlink) as `md`; `parent` is its node in the
    /// parent snapshot, and `prefetched` the loading of that node's tree when it is a folder
    /// whose tree the caller started to load.
    fn entry(
        &mut self,
        path: &Path,
        name: Vec<u8>,
        md: std::io::Result<std::fs::Metadata>,
        parent: Option<&Node>,
        prefetched: Option<PendingTree>,
    ) -> Result<()> {
        let md = match md {
            Ok(md) => md,
            Err(e) => return self.warn(format!("{}: skipped, cannot read: {e}", path.display())),
        };
        let ft = md.file_type();
        if ft.is_dir() {
            // A parent tree that cannot be read only costs speed: its files are read again.
            let parent_tree = match prefetched {
                Some(pending) => self.handle.block_on(pending).ok().and_then(Result::ok),
                None => match parent
                    .filter(|p| p.kind == NodeKind::Dir)
                    .and_then(|p| p.subtree)
                {
                    Some(id) => self
                        .handle
                        .block_on(self.repo.load_tree(&id))
                        .ok()
                        .map(|t| (id, t)),
                    None => None,
                },
            };
            self.dir(path, name, &md, parent_tree)
        } else if ft.is_file() {
            self.file(path, name, &md, parent)
        } else if ft.is_symlink() {
            match std::fs::read_link(path) {
                Ok(t) => {
                    let mut node = meta_node(name, NodeKind::Symlink, &md);
                    node.target = Some(t.as_os_str().as_bytes().to_vec());
                    node.size = 0;
                    self.push_item(Item::Leaf(node))
                }
                Err(e) => self.warn(format!(
                    "{}: skipped symlink, cannot read it: {e}",
                    path.display()
                )),
            }
        } else {
            self.warn(format!(
                "{}: skipped special file (device, fifo or socket)",
                path.display()
            ))
        }
    }

    fn dir(
        &mut self,
        path: &Path,
        name: Vec<u8>,
        md: &std::fs::Metadata,
        parent_tree: Option<(Id, Tree)>,
    ) -> Result<()> {
        // The entries are looked at through the open folder (`DirEntry::metadata` is a
        // `statx` relative to it), not by their whole path: a million files' paths resolved
        // one component at a time was a fifth of an unchanged tree's backup.
        let mut entries: Vec<(Vec<u8>, std::fs::DirEntry)> = match std::fs::read_dir(path) {
            Ok(rd) => {
                let mut v = Vec::new();
                for e in rd {
                    match e {
                        Ok(e) => {
                            v.push((e.file_name().as_bytes().to_vec(), e));
                        }
                        Err(e) => self.warn(format!("{}: error listing: {e}", path.display()))?,
                    }
                }
                v
            }
            Err(e) => {
                return self.warn(format!(
                    "{}: skipped directory, cannot list it: {e}",
                    path.display()
                ));
            }
        };
        self.drop_excluded(path, &mut entries, |e| {
            e.file_type().is_ok_and(|t| t.is_dir())
        });
        entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let mut node = meta_node(name, NodeKind::Dir, md);
        node.size = 0;
        self.emit(Event::DirStart(node))?;
        // The parent trees of the subfolders still folders are loaded a few ahead, on the
        // runtime, while this thread looks at files: decoding them was a sixth of the walk.
        let subtrees: Vec<(usize, Id)> = match &parent_tree {
            Some((_, t)) => entries
                .iter()
                .enumerate()
                .filter(|(_, (_, e))| e.file_type().is_ok_and(|ft| ft.is_dir()))
                .filter_map(|(i, (n, _))| {
                    find(t, n)
                        .filter(|p| p.kind == NodeKind::Dir)
                        .and_then(|p| p.subtree)
                        .map(|id| (i, id))
                })
                .collect(),
            None => Vec::new(),
        };
        let mut to_load = subtrees.into_iter().peekable();
        let mut loading: std::collections::VecDeque<(usize, PendingTree)> =
            std::collections::VecDeque::new();
        for (i, (n, e)) in entries.into_iter().enumerate() {
            while loading.len() < TREE_PREFETCH
                && let Some((j, id)) = to_load.next()
            {
                let repo = Arc::clone(&self.shared);
                let pending = self
                    .handle
                    .spawn(async move { repo.load_tree(&id).await.map(|t| (id, t)) });
                loading.push_back((j, pending));
            }
            let prefetched = match loading.front() {
                Some((j, _)) if *j == i => loading.pop_front().map(|(_, p)| p),
                _ => None,
            };
            let pn = parent_tree.as_ref().and_then(|(_, t)| find(t, &n));
            self.entry(&e.path(), n, e.metadata(), pn, prefetched)?;
        }
        let path = self.record.then(|| path_bytes(path));
        self.emit(Event::DirEnd {
            before: parent_tree,
            path,
        })
    }

    /// A folder in the folder cache's walk: its subfolders first (their trees are part of its
    /// key), then, when its key is in the cache with a tree the index holds, that tree, and
    /// nothing is sent; otherwise it is begun (with the folders around it) and its entries go
    /// as in [`Walker::dir`], against its tree in the parent snapshot, looked up only then.
    fn folder(
        &mut self,
        path: &Path,
        name: Vec<u8>,
        md: &std::fs::Metadata,
        scan: std::result::Result<Scan, tokio::task::JoinError>,
    ) -> Result<Outcome> {
        let mut node = meta_node(name.clone(), NodeKind::Dir, md);
        node.size = 0;
        self.frames.push(CacheFrame {
            name,
            node,
            started: false,
            old: None,
        });
        let out = self.folder_entries(path, scan);
        self.frames.pop();
        out
    }

    fn folder_entries(
        &mut self,
        path: &Path,
        scan: std::result::Result<Scan, tokio::task::JoinError>,
    ) -> Result<Outcome> {
        let scan = scan.unwrap_or_else(|e| Scan {
            entries: Err(std::io::Error::other(e.to_string())),
            errors: Vec::new(),
        });
        let mut entries = match scan.entries {
            Ok(v) => v,
            Err(e) => {
                self.warn(format!(
                    "{}: skipped directory, cannot list it: {e}",
                    path.display()
                ))?;
                return Ok(Outcome::Skipped);
            }
        };
        self.drop_excluded(path, &mut entries, |md| {
            md.as_ref().is_ok_and(std::fs::Metadata::is_dir)
        });
        // Anything to warn about, or any special file, is for the usual path to report.
        let mut whole = scan.errors.is_empty()
            && entries.iter().all(|(_, md)| {
                md.as_ref().is_ok_and(|m| {
                    let t = m.file_type();
                    t.is_file() || t.is_dir() || t.is_symlink()
                })
            });
        // Subfolders, their listings looked at a few ahead on the blocking pool.
        let subfolders: Vec<usize> = entries
            .iter()
            .enumerate()
            .filter(|(_, (_, md))| md.as_ref().is_ok_and(std::fs::Metadata::is_dir))
            .map(|(i, _)| i)
            .collect();
        let mut to_scan = subfolders.iter().copied().peekable();
        let mut scanning: std::collections::VecDeque<(usize, PendingScan)> =
            std::collections::VecDeque::new();
        let mut done: Vec<(usize, Outcome)> = Vec::with_capacity(subfolders.len());
        for &i in &subfolders {
            while scanning.len() < SCAN_PREFETCH
                && let Some(j) = to_scan.next()
            {
                let p = path.join(std::ffi::OsStr::from_bytes(&entries[j].0));
                scanning.push_back((j, self.handle.spawn_blocking(move || scan_folder(&p))));
            }
            let scan = match scanning.pop_front() {
                Some((j, pending)) if j == i => self.handle.block_on(pending),
                _ => return Err(RepoError::Invalid("folder scans out of order".into())),
            };
            let (name, md) = &entries[i];
            let Ok(md) = md else { continue };
            let sub = path.join(std::ffi::OsStr::from_bytes(name));
            let outcome = self.folder(&sub, name.clone(), md, scan)?;
            whole &= matches!(outcome, Outcome::Resolved(_));
            done.push((i, outcome));
        }
        if whole && let Some(r) = self.folder_from_cache(path, &entries, &done) {
            return Ok(Outcome::Resolved(Box::new(r)));
        }
        // Not in the cache: this folder is sent, against its tree in the parent snapshot.
        self.start_frames()?;
        for (_, outcome) in done {
            if let Outcome::Resolved(r) = outcome {
                self.push_item(Item::Reused(*r))?;
            }
        }
        let old = self.old_tree();
        for (name, md) in entries {
            if md.as_ref().is_ok_and(std::fs::Metadata::is_dir) {
                continue;
            }
            let p = path.join(std::ffi::OsStr::from_bytes(&name));
            let pn = old.as_ref().and_then(|(_, t)| find(t, &name));
            self.entry(&p, name, md, pn, None)?;
        }
        let path = self.record.then(|| path_bytes(path));
        self.emit(Event::DirEnd { before: old, path })?;
        Ok(Outcome::Emitted)
    }

    /// The innermost folder's tree from the cache, when its key (from `entries` and the
    /// subfolders `done`, all resolved) is there and the index holds the tree.
    fn folder_from_cache(
        &mut self,
        path: &Path,
        entries: &[(Vec<u8>, std::io::Result<std::fs::Metadata>)],
        done: &[(usize, Outcome)],
    ) -> Option<Reused> {
        let cache = self.cache.as_ref()?;
        let frame = self.frames.last()?;
        let mut nodes = Vec::with_capacity(entries.len());
        let mut r = Reused {
            node: frame.node.clone(),
            files_unchanged: 0,
            files_empty: 0,
            dirs: 1,
            bytes: 0,
        };
        let mut subs = done.iter();
        for (i, (name, md)) in entries.iter().enumerate() {
            let md = md.as_ref().ok()?;
            let t = md.file_type();
            if t.is_dir() {
                let Some((j, Outcome::Resolved(sub))) = subs.next() else {
                    return None;
                };
                if *j != i {
                    return None;
                }
                r.dirs += sub.dirs;
                r.files_unchanged += sub.files_unchanged;
                r.files_empty += sub.files_empty;
                r.bytes += sub.bytes;
                nodes.push(sub.node.clone());
                continue;
            }
            let mut n = meta_node(name.clone(), NodeKind::File, md);
            if t.is_symlink() {
                let p = path.join(std::ffi::OsStr::from_bytes(name));
                n.kind = NodeKind::Symlink;
                n.target = Some(std::fs::read_link(p).ok()?.as_os_str().as_bytes().to_vec());
                n.size = 0;
            } else if n.size > 0 {
                r.files_unchanged += 1;
            } else {
                r.files_empty += 1;
            }
            r.bytes += n.size;
            nodes.push(n);
        }
        let key = folder_key(self.repo.key(), &path_bytes(path), &nodes);
        let tree = cache.get(&key)?;
        if !self.repo.index_read().contains(&tree) {
            return None;
        }
        self.hits.push((key, tree));
        r.node.subtree = Some(tree);
        Some(r)
    }

    /// Begins, for the assembler, the folders of the folder cache's walk not begun yet,
    /// outermost first: something in the innermost is about to be sent.
    fn start_frames(&mut self) -> Result<()> {
        for i in 0..self.frames.len() {
            if !self.frames[i].started {
                self.frames[i].started = true;
                let node = self.frames[i].node.clone();
                self.emit(Event::DirStart(node))?;
            }
        }
        Ok(())
    }

    /// The innermost folder's tree in the parent snapshot, taken (it is looked up, with those
    /// of the folders around it not looked up yet, from the parent's root tree).
    fn old_tree(&mut self) -> Option<(Id, Tree)> {
        for i in 0..self.frames.len() {
            if self.frames[i].old.is_some() {
                continue;
            }
            let id = {
                let around = match i {
                    0 => self.parent_root.as_ref(),
                    _ => self.frames[i - 1]
                        .old
                        .as_ref()
                        .and_then(Option::as_ref)
                        .map(|(_, t)| t),
                };
                around
                    .and_then(|t| find(t, &self.frames[i].name))
                    .filter(|p| p.kind == NodeKind::Dir)
                    .and_then(|p| p.subtree)
            };
            // A parent tree that cannot be read only costs speed: its files are read again.
            let old = id.and_then(|id| {
                self.handle
                    .block_on(self.repo.load_tree(&id))
                    .ok()
                    .map(|t| (id, t))
            });
            self.frames[i].old = Some(old);
        }
        self.frames.last_mut().and_then(|f| f.old.take()).flatten()
    }

    /// Whether every blob of an earlier snapshot's file node is in the index, so the node can
    /// be reused for an unchanged file. Content lists are read (the walker runs on a blocking
    /// thread, outside the runtime); a list that cannot be read means the file is read again.
    fn stored_content_present(&self, p: &Node) -> bool {
        if p.content_lists.is_empty() {
            return !p.content.is_empty() && self.repo.index_read().contains_all(&p.content);
        }
        if !self.repo.index_read().contains_all(&p.content_lists) {
            return false;
        }
        match self.handle.block_on(self.repo.file_content(p)) {
            Ok(ids) => self.repo.index_read().contains_all(&ids),
            Err(_) => false,
        }
    }

    fn file(
        &mut self,
        path: &Path,
        name: Vec<u8>,
        md: &std::fs::Metadata,
        parent: Option<&Node>,
    ) -> Result<()> {
        let node = meta_node(name, NodeKind::File, md);
        if let Some(p) = parent {
            let unchanged = p.kind == NodeKind::File
                && p.size == node.size
                && p.mtime_ns == node.mtime_ns
                && p.ctime_ns == node.ctime_ns
                && p.inode == node.inode
                && self.stored_content_present(p);
            if unchanged {
                let mut n = node;
                n.content.clone_from(&p.content);
                n.content_lists.clone_from(&p.content_lists);
                return self.push_item(Item::Leaf(n));
            }
        }
        if node.size == 0 {
            // Still open it: an unreadable empty file is reported like any other.
            if let Err(e) = std::fs::File::open(path) {
                return self.warn(format!("{}: skipped, cannot open: {e}", path.display()));
            }
            return self.push_item(Item::Leaf(node));
        }
        let mut f = match std::fs::File::open(path) {
            Ok(f) => f,
            Err(e) => return self.warn(format!("{}: skipped, cannot open: {e}", path.display())),
        };
        if node.size <= self.small_max {
            // One chunk, as the chunker would cut it: read whole (up to one byte more than
            // fits, to notice a file that grew) and batched.
            let mut data = crate::buffers::take(usize::try_from(node.size).unwrap_or(0) + 1);
            let read = (&mut f).take(self.small_max + 1).read_to_end(&mut data);
            match read {
                Ok(n) if n as u64 <= self.small_max => {
                    let size = n as u64;
                    if let Some(p) = self.progress {
                        p.bytes_read.fetch_add(size, Ordering::Relaxed);
                    }
                    let warning = changed_while_read(path, md, size);
                    let mut node = node;
                    node.size = size;
                    return self.push_item(Item::Small {
                        node,
                        data,
                        warning,
                    });
                }
                // It grew past one chunk since it was looked at, or the read failed: the
                // chunked path below reads it again from the start and says what happened.
                _ => {
                    if let Err(e) = f.seek(std::io::SeekFrom::Start(0)) {
                        return self.warn(format!("{}: skipped, cannot read: {e}", path.display()));
                    }
                }
            }
        }
        self.emit(Event::FileStart(node.clone()))?;
        self.chunker.reset(f);
        let (size, read_error) =
            send_chunks(&mut self.chunker, FILE_BATCH_BYTES, self.tx, self.progress)?;
        let warning = match read_error {
            Some(e) => Some(format!(
                "{}: read error after {size} bytes, only those were stored: {e}",
                path.display()
            )),
            None => changed_while_read(path, md, size),
        };
        self.emit(Event::FileEnd { size, warning })
    }
}

/// A warning when the file at `path` no longer has the size and mtime of `md` (looked at
/// before it was read) after `size` bytes were read from it.
fn changed_while_read(path: &Path, md: &std::fs::Metadata, size: u64) -> Option<String> {
    match std::fs::symlink_metadata(path) {
        Ok(after)
            if after.len() != md.len()
                || after.mtime() != md.mtime()
                || after.mtime_nsec() != md.mtime_nsec() =>
        {
            Some(format!(
                "{}: changed while being read; stored {size} bytes as read",
                path.display()
            ))
        }
        Ok(_) => None,
        Err(_) => Some(format!(
            "{}: vanished while being read; stored {size} bytes as read",
            path.display()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn workers_answer_every_job_and_end_when_the_reader_is_done() {
        let ctx = Arc::new(Ctx {
            key: MasterKey::generate(),
            index: Arc::new(RwLock::new(MasterIndex::default())),
            level: crate::compress::ZSTD_LEVEL_STREAMS,
        });
        let pool = start_workers(2, &ctx).unwrap();
        // Larger jobs first, so that later ones tend to finish before earlier ones.
        let content = |i: usize| vec![u8::try_from(i).unwrap(); 200_000 - i * 9_000];
        let mut results = Vec::new();
        for i in 0..20 {
            let (done, result) = tokio::sync::oneshot::channel();
            let ev = Event::Chunks(vec![content(i), b"end".to_vec()]);
            pool.jobs.send(Job { ev, done }).unwrap();
            results.push(result);
        }
        // A job whose result nobody waits for any more does not stop a worker.
        let (done, result) = tokio::sync::oneshot::channel();
        drop(result);
        let ev = Event::Chunks(vec![content(0)]);
        pool.jobs.send(Job { ev, done }).unwrap();
        drop(pool.jobs);
        for (i, result) in results.into_iter().enumerate() {
            let Processed::Chunks(chunks) = result.blocking_recv().unwrap() else {
                panic!("job {i}: not chunks");
            };
            let ids: Vec<Id> = chunks
                .iter()
                .map(|c| match c {
                    Chunk::New(blob) => blob.id,
                    Chunk::Known(id) => *id,
                })
                .collect();
            assert_eq!(
                ids,
                [ctx.key.blob_id(&content(i)), ctx.key.blob_id(b"end")],
                "job {i}"
            );
        }
        for t in pool.threads {
            t.join().unwrap();
        }
    }

    /// Whether a thread is still waiting after a moment.
    fn still_waiting<T>(t: &std::thread::JoinHandle<T>) -> bool {
        std::thread::sleep(Duration::from_millis(100));
        !t.is_finished()
    }

    #[test]
    fn the_budget_waits_for_room_lets_a_large_chunk_go_alone_and_close_frees_a_waiter() {
        let budget = Arc::new(Budget::new());
        budget.take(IN_FLIGHT_BYTES - 10).unwrap();
        budget.take(10).unwrap();
        let b = Arc::clone(&budget);
        let waiter = std::thread::spawn(move || b.take(1));
        assert!(still_waiting(&waiter), "took a byte past the budget");
        budget.give(5);
        waiter.join().unwrap().unwrap();
        budget.give(IN_FLIGHT_BYTES - 4);

        // Nothing in flight: a chunk larger than the whole budget goes, alone.
        budget.take(IN_FLIGHT_BYTES * 2).unwrap();
        let b = Arc::clone(&budget);
        let waiter = std::thread::spawn(move || b.take(1));
        assert!(
            still_waiting(&waiter),
            "took a byte beside an oversized chunk"
        );
        // The assembler stopped: the waiting reader is told so instead of waiting forever.
        drop(CloseOnDrop(Arc::clone(&budget)));
        assert!(matches!(waiter.join().unwrap(), Err(RepoError::Cancelled)));
        assert!(matches!(budget.take(0), Err(RepoError::Cancelled)));
    }

    #[test]
    fn events_count_only_their_content() {
        let node = stream_node(b"f".to_vec());
        assert_eq!(Event::FileStart(node.clone()).content_bytes(), 0);
        assert_eq!(
            Event::Chunks(vec![vec![1; 7], vec![2; 5]]).content_bytes(),
            12
        );
        let batch = Event::Batch(vec![
            Item::Leaf(node.clone()),
            Item::Small {
                node,
                data: vec![0; 3],
                warning: None,
            },
        ]);
        assert_eq!(batch.content_bytes(), 3);
    }
}
