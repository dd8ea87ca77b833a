//! Restore: a snapshot's trees and blobs → files on disk, or a stream's bytes → a writer.
//!
//! Never writes outside the target: every name is checked ([`Node::name_is_safe`]), nothing
//! is written through a symlink (an existing symlink where a file or folder goes is replaced,
//! files are opened with `O_NOFOLLOW`). A file whose data is damaged or missing is reported by
//! its path and removed; every other file is still restored, and the restore then fails with
//! [`RepoError::PartialRestore`]. Folder permissions and times are set last, deepest first.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::StreamExt;
use strongroom_storage::direct::{self, DEFAULT_STAGE_BYTES, DIRECT_MIN_BYTES, DirectWriter};

use crate::error::{RepoError, Result};
use crate::id::Id;
use crate::repository::{BlobRun, Repository};
use crate::snapshot::{Snapshot, SnapshotKind};
use crate::tree::{Node, NodeKind, Tree};

/// Options of a restore.
#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    /// Only these paths (relative to the snapshot root, e.g. `media/a.jpg`), with everything
    /// below them. Empty: everything.
    pub include: Vec<String>,
    /// Live count of bytes written.
    pub progress: Option<Arc<AtomicU64>>,
    /// Leave holes where whole 4 KiB blocks of a file are zeros (sparse files, as
    /// `cp --sparse=always`; restic's and borg's `--sparse`): disk images and preallocated
    /// files take only the room of their data, and their zeros are not written. Off by
    /// default: a file that was not sparse stays fully allocated.
    pub sparse: bool,
}

/// What a restore did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestoreStats {
    /// Files written.
    pub files: u64,
    /// Directories created.
    pub dirs: u64,
    /// Symlinks created.
    pub symlinks: u64,
    /// Bytes written.
    pub bytes: u64,
    /// Files that failed, with the reason (path first).
    pub failures: Vec<String>,
}

fn want(include: &[Vec<u8>], path: &[u8]) -> bool {
    include.is_empty()
        || include.iter().any(|inc| {
            // path is inside inc, or inc is inside path (so we descend towards it)
            let inside = path.starts_with(inc)
                && (path.len() == inc.len() || path.get(inc.len()) == Some(&b'/'));
            let towards = inc.starts_with(path) && inc.get(path.len()) == Some(&b'/');
            inside || towards
        })
}

fn os_path(base: &Path, name: &[u8]) -> PathBuf {
    use std::os::unix::ffi::OsStrExt;
    base.join(std::ffi::OsStr::from_bytes(name))
}

/// Restores a snapshot (or some of its paths) into `target`.
///
/// # Errors
/// [`RepoError::PartialRestore`] when some files failed (the rest are restored), or an
/// error when the target cannot be created or a tree cannot be read.
pub async fn restore_to_dir(
    repo: &Repository,
    snap: &Snapshot,
    target: &Path,
    opts: &RestoreOptions,
) -> Result<RestoreStats> {
    std::fs::create_dir_all(target).map_err(RepoError::io("creating", target))?;
    let include: Vec<Vec<u8>> = opts
        .include
        .iter()
        .map(|s| s.trim_matches('/').as_bytes().to_vec())
        .filter(|s| !s.is_empty())
        .collect();
    let mut stats = RestoreStats::default();
    let mut dir_meta: Vec<(PathBuf, Node)> = Vec::new();
    // Explicit stack of (tree id, folder on disk, path inside the snapshot).
    let mut stack: Vec<(Id, PathBuf, Vec<u8>)> =
        vec![(snap.tree, target.to_path_buf(), Vec::new())];
    let mut total = 0usize;
    let budget = tokio::sync::Semaphore::new(BUDGET_UNITS as usize);
    let mut in_flight = futures::stream::FuturesUnordered::new();
    while let Some((tree_id, dir, rel)) = stack.pop() {
        let tree = match repo.load_tree(&tree_id).await {
            Ok(t) => t,
            Err(e) => {
                let shown = if rel.is_empty() {
                    "/".to_owned()
                } else {
                    String::from_utf8_lossy(&rel).into_owned()
                };
                stats.failures.push(format!(
                    "{shown}: folder cannot be read, nothing below it restored: {e}"
                ));
                total += 1;
                continue;
            }
        };
        for node in tree.nodes {
            if !node.name_is_safe() {
                stats
                    .failures
                    .push(format!("{:?}: unsafe name refused", node.display_name()));
                continue;
            }
            let node_rel = if rel.is_empty() {
                node.name.clone()
            } else {
                [rel.as_slice(), b"/", &node.name].concat()
            };
            if !want(&include, &node_rel) {
                continue;
            }
            let path = os_path(&dir, &node.name);
            let shown = String::from_utf8_lossy(&node_rel).into_owned();
            match node.kind {
                NodeKind::Dir => {
                    if let Err(e) = make_dir(&path) {
                        stats.failures.push(format!("{shown}: {e}"));
                        continue;
                    }
                    stats.dirs += 1;
                    if let Some(sub) = node.subtree {
                        stack.push((sub, path.clone(), node_rel));
                    }
                    dir_meta.push((path, node));
                }
                NodeKind::File => {
                    total += 1;
                    // Several files at once: most files are a blob or two, and one at a time
                    // would leave a core idle while each one is opened, read and renamed.
                    while in_flight.len() >= FILES_IN_FLIGHT {
                        if let Some(done) = in_flight.next().await {
                            file_done(&mut stats, done);
                        }
                    }
                    let budget = &budget;
                    in_flight.push(async move {
                        let r = restore_file(repo, &node, path, opts, budget).await;
                        (r, shown)
                    });
                }
                NodeKind::Symlink => {
                    total += 1;
                    match make_symlink(&path, &node) {
                        Ok(()) => {
                            stats.symlinks += 1;
                            set_meta(&path, &node, true);
                        }
                        Err(e) => stats.failures.push(format!("{shown}: {e}")),
                    }
                }
            }
        }
    }
    while let Some(done) = in_flight.next().await {
        file_done(&mut stats, done);
    }
    // Deepest folders last in the list: apply their metadata first (after every file in
    // them was written, so that their times stay as recorded).
    for (path, node) in dir_meta.iter().rev() {
        set_meta(path, node, false);
    }
    if let Some(first) = stats.failures.first() {
        return Err(RepoError::PartialRestore {
            failed: stats.failures.len(),
            total,
            first: first.clone(),
            failures: stats.failures.clone(),
        });
    }
    Ok(stats)
}

/// A finished file of [`restore_to_dir`] (its metadata already set), or its failure.
fn file_done(stats: &mut RestoreStats, done: (Result<u64>, String)) {
    let (result, shown) = done;
    match result {
        Ok(n) => {
            stats.files += 1;
            stats.bytes += n;
        }
        // The file was written to a temporary name, removed on failure: a file already at
        // `path` is left as it was.
        Err(e) => stats.failures.push(format!("{shown}: {e}")),
    }
}

fn remove_if_not(path: &Path, keep: impl Fn(&std::fs::Metadata) -> bool) -> std::io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(md) if keep(&md) => Ok(()),
        Ok(md) if md.is_dir() => Err(std::io::Error::new(
            std::io::ErrorKind::AlreadyExists,
            "a folder is in the way; move it aside and restore again",
        )),
        Ok(_) => std::fs::remove_file(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

fn make_dir(path: &Path) -> std::io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(md) if md.is_dir() => Ok(()),
        Ok(_) => {
            std::fs::remove_file(path)?;
            std::fs::create_dir(path)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => std::fs::create_dir(path),
        Err(e) => Err(e),
    }
}

fn make_symlink(path: &Path, node: &Node) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    remove_if_not(path, |_| false)?;
    let target = node.target.clone().unwrap_or_default();
    std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(&target), path)
}

fn set_meta(path: &Path, node: &Node, symlink: bool) {
    let mtime = filetime::FileTime::from_unix_time(
        node.mtime_ns.div_euclid(1_000_000_000),
        u32::try_from(node.mtime_ns.rem_euclid(1_000_000_000)).unwrap_or(0),
    );
    if is_root() {
        let _ = std::os::unix::fs::lchown(path, Some(node.uid), Some(node.gid));
    }
    if symlink {
        let _ = filetime::set_symlink_file_times(path, mtime, mtime);
    } else {
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(node.mode));
        let _ = filetime::set_file_times(path, mtime, mtime);
    }
}

fn is_root() -> bool {
    static ROOT: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ROOT.get_or_init(|| {
        std::fs::metadata("/proc/self")
            .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
            .unwrap_or(false)
    })
}

/// Runs of blobs ([`crate::repository::BlobRun`], at most 2 MiB of plaintext each) fetched
/// ahead while restoring a stream: up to 8 MiB.
const PREFETCH: usize = 4;

/// Files restored at once by [`restore_to_dir`], each with up to [`FILE_PREFETCH`] runs of
/// blobs ahead (at most 2 MiB each, but most files are smaller), plus a 2 MiB staging buffer
/// per large file (more only where single blobs are larger). A large file's direct writes
/// wait for the disk; 8 rather than 4 kept both cores busier (media tree, by hand: 1.06–1.35
/// → 1.01–1.06 s, peak 43 → 56–68 MB); since each file is created and committed on the
/// blocking threads, 12 rather than 8 again (on a journaled ext4: 0.91–0.92 → 0.82–0.87 s,
/// peak 53 → 61–66 MB; 16 was no faster and 70–72 MB; docs/benchmarks.md, fifteenth pass).
const FILES_IN_FLIGHT: usize = 12;
/// Runs of blobs fetched ahead for each file of [`restore_to_dir`].
const FILE_PREFETCH: usize = 2;

/// Plaintext bytes of runs fetched and not yet written, over all the files of a
/// [`restore_to_dir`] at once. Files and runs at once were bounded by count only: runs are
/// at most 2 MiB, but a single blob is a run of its own and may be 8 MiB (a file with no cut
/// in it, e.g. a run of zeros). A file holds up to three runs (one being written, two
/// fetched ahead), so a tree of such files could hold 12 × 3 × 8 MiB, twice over while
/// decoding: 14 files of 100 MiB of zeros peaked at 176–196 MB. The media tree's files of
/// ~1 MiB chunks hold about 40 MiB at most, below this bound.
const RUNS_IN_FLIGHT_BYTES: u64 = 64 << 20;
/// The unit the budget of [`RUNS_IN_FLIGHT_BYTES`] is counted in.
const BUDGET_UNIT: u64 = 64 << 10;
/// [`RUNS_IN_FLIGHT_BYTES`] in [`BUDGET_UNIT`]s.
const BUDGET_UNITS: u32 = (RUNS_IN_FLIGHT_BYTES / BUDGET_UNIT) as u32;

/// Units of the budget a run of `raw_len` plaintext bytes takes: at least one, at most the
/// whole budget (a run larger than it goes alone).
fn budget_units(raw_len: u64) -> u32 {
    u32::try_from(raw_len.div_ceil(BUDGET_UNIT))
        .unwrap_or(BUDGET_UNITS)
        .clamp(1, BUDGET_UNITS)
}

async fn restore_file(
    repo: &Repository,
    node: &Node,
    path: PathBuf,
    opts: &RestoreOptions,
    budget: &tokio::sync::Semaphore,
) -> Result<u64> {
    let content = repo.file_content(node).await?;
    // Written under a temporary name beside it, then renamed over: an existing file (or a
    // hard link to a file elsewhere) is never written through, and survives a failure.
    let mut suffix = [0u8; 6];
    crate::crypto::fill_random(&mut suffix);
    let tmp = path.with_file_name(format!(".strongroom-restore-{}", hex::encode(suffix)));
    let dest = Arc::new(Destination {
        path,
        tmp,
        // Large files bypass the page cache where the filesystem allows: copying into it
        // cost more than decoding (docs/benchmarks.md, seventh pass).
        direct: node.size >= DIRECT_MIN_BYTES,
        sparse: opts.sparse,
        meta: without_content(node),
        created: std::sync::atomic::AtomicBool::new(false),
    });
    let result = write_file(repo, &content, &dest, opts.progress.as_deref(), budget).await;
    if result.is_err() && dest.created.load(Ordering::Acquire) {
        let _ = std::fs::remove_file(&dest.tmp);
    }
    result
}

/// A copy of `node` with what [`set_meta`] needs, without its content.
fn without_content(node: &Node) -> Node {
    Node {
        name: Vec::new(),
        kind: node.kind,
        mode: node.mode,
        uid: node.uid,
        gid: node.gid,
        mtime_ns: node.mtime_ns,
        ctime_ns: node.ctime_ns,
        inode: node.inode,
        size: node.size,
        content: Vec::new(),
        content_lists: Vec::new(),
        subtree: None,
        target: None,
    }
}

/// Where [`restore_file`] writes a file, and the metadata it gives it.
struct Destination {
    path: PathBuf,
    /// The temporary name it is written under.
    tmp: PathBuf,
    /// Written past the page cache ([`DirectWriter::new`]).
    direct: bool,
    /// Zero blocks left as holes ([`RestoreOptions::sparse`]).
    sparse: bool,
    /// The node without its content (for [`set_meta`]).
    meta: Node,
    /// Whether `tmp` was made (and so is to be removed on failure).
    created: std::sync::atomic::AtomicBool,
}

impl Destination {
    /// Makes the temporary file. Where many files are created at once this is a good part of
    /// a restore's time (the filesystem looks for free inodes), so it runs on a blocking
    /// thread, not on the one that drives the restore.
    fn create(&self) -> Result<DirectWriter> {
        if std::fs::symlink_metadata(&self.path).is_ok_and(|m| m.is_dir()) {
            return Err(RepoError::Invalid(
                "a folder is in the way; move it aside and restore again".into(),
            ));
        }
        let f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(libc::O_NOFOLLOW)
            .mode(0o600)
            .open(&self.tmp)
            .map_err(RepoError::io("creating", &self.tmp))?;
        self.created.store(true, Ordering::Release);
        Ok(if self.direct {
            DirectWriter::new(f, DEFAULT_STAGE_BYTES)
        } else {
            DirectWriter::plain(f)
        })
    }

    /// Ends the writes, renames the file into place and sets its metadata.
    fn commit(&self, file: DirectWriter) -> Result<()> {
        file.finish()
            .map_err(RepoError::io("writing", &self.path))?;
        std::fs::rename(&self.tmp, &self.path)
            .map_err(RepoError::io("renaming into", &self.path))?;
        set_meta(&self.path, &self.meta, false);
        Ok(())
    }
}

/// Writes a file's blobs in order, each run decoded and written by one task on the blocking
/// pool: a write costs about as much as decoding (a copy into the page cache, or a wait for
/// the disk), and so files being restored at once decode and write on every core instead of
/// all on the one thread that drives them. Decoding where the content is written kept it in
/// that core's cache and saved a hand-off per run (media tree by hand: CPU 1.79 → 1.67 s).
/// The first run's task also creates the file and the last one's commits it, so that a file
/// of one run (most files) is one task.
async fn write_file(
    repo: &Repository,
    content: &[Id],
    dest: &Arc<Destination>,
    progress: Option<&AtomicU64>,
    budget: &tokio::sync::Semaphore,
) -> Result<u64> {
    let runs = repo.plan_runs(content)?;
    let count = runs.len();
    if count == 0 {
        let d = Arc::clone(dest);
        return tokio::task::spawn_blocking(move || d.create().and_then(|f| d.commit(f)))
            .await
            .map_err(writer_failed)?
            .map(|()| 0);
    }
    // A run that reads the same bytes as the one before it (a run of zeros: one 8 MiB blob
    // many times over) is neither read nor decoded again: the content decoded for the first
    // is written once more, and kept (with its room in the budget) while the next repeats it.
    let repeats = repeated_runs(&runs);
    // Runs are read ahead, each once it fits in the restore's budget (held until it is
    // written); each is decoded on the thread that writes it, so that its content is still in
    // that core's cache when it is copied out (and one hand-off fewer).
    let mut runs = futures::stream::iter(runs.into_iter().zip(repeats.clone()))
        .map(|(run, repeat)| async move {
            if repeat {
                return Ok::<_, RepoError>(None);
            }
            let room = budget
                .acquire_many(budget_units(run.raw_len()))
                .await
                .map_err(|_| RepoError::Invalid("the restore's memory budget closed".into()))?;
            Ok(Some((room, repo.read_run_stored(run).await?)))
        })
        .buffered(FILE_PREFETCH);
    let mut file: Option<DirectWriter> = None;
    // The content of the last run and its room, while the next run repeats it.
    // (Content known to be zeros, for a sparse file, keeps only its length, and no room.)
    let mut kept: Option<(Kept, Option<tokio::sync::SemaphorePermit<'_>>)> = None;
    let mut n = 0u64;
    let mut done = 0usize;
    while let Some(fetched) = runs.next().await {
        let fetched = fetched?;
        let keep = next_repeats(&repeats, done);
        done += 1;
        let last = done == count;
        let key = repo.key().clone();
        let d = Arc::clone(dest);
        let open = file.take();
        let (content, room) = match fetched {
            Some((room, stored)) => (Err(stored), Some(room)),
            None => {
                let Some((content, room)) = kept.take() else {
                    return Err(missing_repeat());
                };
                (Ok(content), room)
            }
        };
        let (f, res) = tokio::task::spawn_blocking(move || {
            let mut f = match open.map_or_else(|| d.create(), Ok) {
                Ok(f) => f,
                Err(e) => return (None, Err(e)),
            };
            let written = content
                .or_else(|stored| {
                    let content = stored.decode(&key)?;
                    // Whether it is zeros matters only for a sparse file, and is worth
                    // knowing only for content that is written again.
                    let zeros = d.sparse && keep && direct::all_zeros(&content);
                    Ok(Kept {
                        len: content.len(),
                        content,
                        zeros,
                    })
                })
                .and_then(|mut k| {
                    if d.sparse && k.zeros {
                        f.write_sparse_zeros(k.len)
                    } else if d.sparse {
                        f.write_sparse(&k.content)
                    } else {
                        f.write_all(&k.content)
                    }
                    .map_err(RepoError::io("writing", &d.path))?;
                    // Freed here, on the writing thread, unless the next run repeats it and
                    // needs more than its length.
                    if k.zeros {
                        k.content = Vec::new();
                    }
                    Ok((k.len as u64, keep.then_some(k)))
                });
            match written {
                Ok(w) if last => (None, d.commit(f).map(|()| w)),
                other => (Some(f), other),
            }
        })
        .await
        .map_err(writer_failed)?;
        file = f;
        let (len, content) = res?;
        kept = content.map(|c| {
            let room = if c.zeros { None } else { room };
            (c, room)
        });
        n += len;
        if let Some(p) = progress {
            p.fetch_add(len, Ordering::Relaxed);
        }
    }
    Ok(n)
}

/// A run's decoded content, kept while the runs after it repeat it ([`write_file`]).
struct Kept {
    /// Empty once known to be zeros.
    content: Vec<u8>,
    len: usize,
    /// All zeros (looked at only for a sparse restore): written again as holes, unread.
    zeros: bool,
}

/// The blocking task that wrote a file's bytes ended without a result (it panicked).
fn writer_failed(e: tokio::task::JoinError) -> RepoError {
    RepoError::Invalid(format!("writer failed: {e}"))
}

/// For each run, whether it reads the same bytes as the one before it: a run of zeros is one
/// blob many times over, read and decoded once ([`write_file`], [`write_content`]).
fn repeated_runs(runs: &[BlobRun]) -> Vec<bool> {
    std::iter::once(false)
        .chain(runs.windows(2).map(|w| match w {
            [a, b] => b.same_bytes_as(a),
            _ => false,
        }))
        .collect()
}

/// Whether the run after run `i` repeats it (so that its content is worth keeping).
fn next_repeats(repeats: &[bool], i: usize) -> bool {
    repeats.get(i + 1).copied().unwrap_or(false)
}

/// A run marked as a repeat came without the content of the run before it (cannot happen
/// while runs are taken in order).
fn missing_repeat() -> RepoError {
    RepoError::Invalid("a repeated run came without the run it repeats".into())
}

async fn write_content(
    repo: &Repository,
    content: &[Id],
    out: &mut dyn Write,
    progress: Option<&AtomicU64>,
) -> Result<u64> {
    let runs = repo.plan_runs(content)?;
    let repeats = repeated_runs(&runs);
    let mut blobs = futures::stream::iter(runs.into_iter().zip(repeats.clone()))
        .map(|(run, repeat)| async move {
            if repeat {
                Ok(None)
            } else {
                repo.read_run(run).await.map(Some)
            }
        })
        .buffered(PREFETCH);
    let mut n = 0u64;
    let mut kept: Option<Vec<u8>> = None;
    let mut done = 0usize;
    while let Some(b) = blobs.next().await {
        let b = match b? {
            Some(b) => b,
            None => kept.take().ok_or_else(missing_repeat)?,
        };
        out.write_all(&b).map_err(|e| RepoError::Io {
            context: "writing",
            path: PathBuf::from("output"),
            source: e,
        })?;
        n += b.len() as u64;
        if let Some(p) = progress {
            p.fetch_add(b.len() as u64, Ordering::Relaxed);
        }
        if next_repeats(&repeats, done) {
            kept = Some(b);
        }
        done += 1;
    }
    Ok(n)
}

/// A blocking reader over a file's content, a run of neighbouring blobs at a time
/// ([`Repository::plan_run`]), each blob authenticated as it is read.
/// Use it only on a blocking thread (it waits on the runtime for each blob); a damaged blob
/// is a read error naming `label`.
pub struct BlobReader {
    repo: Arc<Repository>,
    handle: tokio::runtime::Handle,
    ids: Vec<Id>,
    next: usize,
    buf: Vec<u8>,
    off: usize,
    /// The run whose content `buf` holds.
    last: Option<BlobRun>,
    label: String,
}

impl BlobReader {
    /// A reader over `ids`, fetched through `handle`.
    #[must_use]
    pub fn new(
        repo: Arc<Repository>,
        handle: tokio::runtime::Handle,
        ids: Vec<Id>,
        label: String,
    ) -> BlobReader {
        BlobReader {
            repo,
            handle,
            ids,
            next: 0,
            buf: Vec::new(),
            off: 0,
            last: None,
            label,
        }
    }
}

impl std::io::Read for BlobReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.off >= self.buf.len() {
            let rest = self.ids.get(self.next..).unwrap_or_default();
            if rest.is_empty() {
                return Ok(0);
            }
            let fail = |e: RepoError| std::io::Error::other(format!("{}: {e}", self.label));
            let (run, n) = self.repo.plan_run(rest).map_err(fail)?;
            // A run that repeats the last one (a run of zeros) is already in the buffer. A
            // failed read leaves the reader where it was: a read again tries that run again.
            if !self
                .last
                .as_ref()
                .is_some_and(|last| run.same_bytes_as(last))
            {
                self.buf = self
                    .handle
                    .block_on(self.repo.read_run(run.clone()))
                    .map_err(fail)?;
                self.last = Some(run);
            }
            self.next += n;
            self.off = 0;
        }
        let n = out.len().min(self.buf.len() - self.off);
        out[..n].copy_from_slice(&self.buf[self.off..self.off + n]);
        self.off += n;
        Ok(n)
    }
}

/// The single file of a stream snapshot.
///
/// # Errors
/// When the snapshot is not a stream or its tree cannot be read.
pub async fn stream_node(repo: &Repository, snap: &Snapshot) -> Result<Node> {
    if snap.kind != SnapshotKind::Stream {
        return Err(RepoError::Invalid(format!(
            "this snapshot is a folder backup of {}; restore it with --target DIR or export it as a tar",
            snap.source
        )));
    }
    let tree: Tree = repo.load_tree(&snap.tree).await?;
    let mut files = tree.nodes.into_iter().filter(|n| n.kind == NodeKind::File);
    match (files.next(), files.next()) {
        (Some(n), None) => Ok(n),
        _ => Err(RepoError::Corrupt {
            what: "stream snapshot".into(),
            detail: "it does not hold exactly one file".into(),
        }),
    }
}

/// Writes the bytes of a stream snapshot to `out`; returns how many.
///
/// # Errors
/// When the snapshot is not a stream, or a blob is missing or damaged (the error names it).
pub async fn restore_stream(
    repo: &Repository,
    snap: &Snapshot,
    out: &mut dyn Write,
) -> Result<u64> {
    let node = stream_node(repo, snap).await?;
    let content = repo.file_content(&node).await?;
    let n = write_content(repo, &content, out, None).await?;
    out.flush().map_err(|e| RepoError::Io {
        context: "writing",
        path: PathBuf::from("output"),
        source: e,
    })?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::{BUDGET_UNIT, BUDGET_UNITS, RUNS_IN_FLIGHT_BYTES, budget_units, want};

    #[test]
    fn a_run_takes_its_share_of_the_budget_and_never_more_than_all_of_it() {
        assert_eq!(budget_units(0), 1);
        assert_eq!(budget_units(1), 1);
        assert_eq!(budget_units(BUDGET_UNIT), 1);
        assert_eq!(budget_units(BUDGET_UNIT + 1), 2);
        // An 8 MiB blob, the largest a media file is cut into: an eighth of it all.
        assert_eq!(budget_units(8 << 20), 128);
        assert_eq!(BUDGET_UNITS, 1024);
        assert!(u64::from(budget_units(8 << 20)) * BUDGET_UNIT < RUNS_IN_FLIGHT_BYTES);
        // Larger than the budget: it goes alone instead of waiting forever.
        assert_eq!(budget_units(RUNS_IN_FLIGHT_BYTES * 3), BUDGET_UNITS);
        assert_eq!(budget_units(u64::MAX), BUDGET_UNITS);
    }

    #[test]
    fn include_matching() {
        let inc = vec![b"a/b".to_vec()];
        assert!(want(&inc, b"a"));
        assert!(want(&inc, b"a/b"));
        assert!(want(&inc, b"a/b/c"));
        assert!(!want(&inc, b"a/bc"));
        assert!(!want(&inc, b"x"));
        assert!(want(&[], b"anything"));
    }
}
