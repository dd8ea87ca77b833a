//! Object storage in a local directory (or anything mounted as one).
//!
//! Layout under the root: `config` at the root; `keys/<name>`, `index/<name>`,
//! `snapshots/<name>`, `locks/<name>`; packs in `data/<first two characters>/<name>` (the
//! two-character folder is created on the first write into it). Objects of kind
//! [`Kind::Config`] live directly in the root.
//!
//! Writes are atomic, durable and write-once: the bytes go to a temporary file named
//! `.tmp-<random hex>` in the target's folder, which is fsynced, then committed by
//! **hard-linking** it to the target name and unlinking the temporary name, then the folder
//! is fsynced. `link(2)` fails with `EEXIST` when the target exists, so two writers racing
//! for one name cannot overwrite each other: the loser gets
//! [`StorageError::AlreadyExists`]. (`renameat2(RENAME_NOREPLACE)` would do the same, but
//! needs `unsafe` FFI, which the workspace denies.) On file systems that do not support hard
//! links (`EPERM`/`EOPNOTSUPP`, e.g. some FUSE or SMB mounts) the commit falls back to
//! check-then-rename, which has a small race window between the check and the rename; the
//! engine's names are content hashes or random, and exclusive work happens under a lock, so
//! the window is acceptable there. The temporary file is removed on every error.
//!
//! With fsync on, an object of 1 MiB or more (a pack) is written past the page cache
//! (`O_DIRECT`, [`crate::direct`]), falling back to plain writes where the filesystem refuses:
//! the same bytes, the same fsyncs, less CPU, and a backup does not push the server's working
//! set out of memory. Such objects are read back from disk, not from memory, afterwards.
//!
//! An object written in pieces ([`Storage::object_writer`]: a pack streamed as a backup seals
//! it) goes to `.tmp-<random hex>` in its kind's folder (`data/` for packs: the name, and so
//! its prefix folder, is known only at the end) and is committed the same way, under the
//! name given at the end.
//!
//! Listing skips temporary files (every name starting with a dot) and anything that is not
//! a regular file, and sorts by name. Out-of-space errors come through as
//! [`StorageError::Io`] with the original OS error, so
//! [`StorageError::is_out_of_space`] works.
//!
//! This module must not modify an object in place, must not delete anything but the object
//! asked for (and its own temporary files), and must not follow names outside the root
//! (every name is checked with [`check_name`] before it becomes a path).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use async_trait::async_trait;
use bytes::Bytes;

use crate::direct::{DEFAULT_STAGE_BYTES, DIRECT_MIN_BYTES, DirectWriter};
use crate::{Kind, ObjectInfo, ObjectWriter, Result, Storage, StorageError, check_name};

/// Prefix of temporary files; never a valid object name (names cannot start with a dot).
const TMP_PREFIX: &str = ".tmp-";

/// The name of the repository configuration object.
const CONFIG_NAME: &str = "config";

/// Object storage in a local directory.
#[derive(Debug, Clone)]
pub struct LocalStorage {
    root: PathBuf,
    fsync: bool,
}

impl LocalStorage {
    /// A store rooted at `root`, with fsync on (writes are durable when they return).
    #[must_use]
    pub fn new(root: PathBuf) -> Self {
        Self { root, fsync: true }
    }

    /// A store rooted at `root` with fsync switched on or off explicitly. Without fsync a
    /// write is still atomic but may be lost (whole) on power failure; only for tests and
    /// throw-away repositories.
    #[must_use]
    pub fn with_fsync(root: PathBuf, fsync: bool) -> Self {
        Self { root, fsync }
    }

    /// The root folder.
    #[must_use]
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Whether writes and deletes are fsynced.
    #[must_use]
    pub fn fsync_enabled(&self) -> bool {
        self.fsync
    }

    /// The path an object lives at.
    ///
    /// # Errors
    /// [`StorageError::InvalidName`] when the name fails [`check_name`].
    pub fn object_path(&self, kind: Kind, name: &str) -> Result<PathBuf> {
        check_name(name)?;
        Ok(object_path(&self.root, kind, name))
    }

    async fn blocking<T, F>(&self, what: String, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Ctx) -> Result<T> + Send + 'static,
    {
        let ctx = Ctx {
            root: self.root.clone(),
            fsync: self.fsync,
        };
        match tokio::task::spawn_blocking(move || f(&ctx)).await {
            Ok(result) => result,
            Err(join) => Err(StorageError::Io {
                context: what,
                source: io::Error::other(format!("blocking task failed: {join}")),
            }),
        }
    }
}

/// What a blocking operation needs from the store.
struct Ctx {
    root: PathBuf,
    fsync: bool,
}

fn read_file(kind: Kind, name: &str, path: &Path) -> Result<Bytes> {
    fs::read(path)
        .map(Bytes::from)
        .map_err(|e| not_found_or(kind, name, format!("reading {}", path.display()), e))
}

fn object_path(root: &Path, kind: Kind, name: &str) -> PathBuf {
    match kind {
        Kind::Config => root.join(name),
        Kind::Pack => root.join(kind.dir()).join(pack_prefix(name)).join(name),
        _ => root.join(kind.dir()).join(name),
    }
}

/// The pack subfolder: the first two characters of the name (the whole name if shorter).
/// Names are ASCII (checked), so slicing by bytes is safe.
fn pack_prefix(name: &str) -> &str {
    name.get(..2).unwrap_or(name)
}

fn io_err(context: impl Into<String>, source: io::Error) -> StorageError {
    StorageError::Io {
        context: context.into(),
        source,
    }
}

fn not_found_or(kind: Kind, name: &str, context: String, e: io::Error) -> StorageError {
    if e.kind() == io::ErrorKind::NotFound {
        StorageError::NotFound {
            kind,
            name: name.to_owned(),
        }
    } else {
        io_err(context, e)
    }
}

fn fsync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_err(format!("syncing folder {}", dir.display()), e))
}

fn random_hex() -> io::Result<String> {
    let mut buf = [0u8; 8];
    getrandom::fill(&mut buf).map_err(|e| io::Error::other(format!("no randomness: {e}")))?;
    Ok(hex::encode(buf))
}

/// Staging buffers of direct writes, kept between objects so that each pack does not fault
/// in fresh memory; shared by the process's threads, at most [`KEPT_STAGES`] of them.
static DIRECT_STAGES: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

/// Staging buffers kept: as many as the packs a backup writes at once (one filling, two
/// finishing).
const KEPT_STAGES: usize = 3;

fn take_stage() -> Vec<u8> {
    DIRECT_STAGES
        .lock()
        .ok()
        .and_then(|mut kept| kept.pop())
        .unwrap_or_default()
}

fn keep_stage(stage: Vec<u8>) {
    // A plain writer's buffer is empty: nothing worth a place.
    if stage.capacity() == 0 {
        return;
    }
    if let Ok(mut kept) = DIRECT_STAGES.lock()
        && kept.len() < KEPT_STAGES
    {
        kept.push(stage);
    }
}

/// Writes all of `data` to `file` and, if asked, fsyncs it.
///
/// With fsync, an object of [`DIRECT_MIN_BYTES`] or more (a pack) is written past the page
/// cache ([`DirectWriter`]): the fsync waits for the disk either way, and the copy into the
/// page cache is most of a large write's CPU time. Without fsync (tests, throw-away
/// repositories) the write goes through the page cache and returns before the disk has it.
fn write_and_sync(file: File, data: &[u8], fsync: bool) -> io::Result<()> {
    let mut writer = if fsync && data.len() as u64 >= DIRECT_MIN_BYTES {
        DirectWriter::with_buffer(file, DEFAULT_STAGE_BYTES, take_stage())
    } else {
        DirectWriter::plain(file)
    };
    writer.write_all(data)?;
    finish_and_sync(writer, fsync)
}

/// Writes what `writer` still stages, keeps its staging buffer for the next object and, if
/// asked, fsyncs the file.
fn finish_and_sync(writer: DirectWriter, fsync: bool) -> io::Result<()> {
    let (mut file, stage) = writer.finish_keeping_buffer()?;
    keep_stage(stage);
    file.flush()?;
    if fsync {
        file.sync_all()?;
    }
    Ok(())
}

/// Creates `dir/.tmp-<hex>` exclusively and opens it for writing.
fn create_temp(dir: &Path) -> Result<(PathBuf, File)> {
    let mut attempts = 0;
    loop {
        let tmp = dir.join(format!(
            "{TMP_PREFIX}{}",
            random_hex().map_err(|e| io_err("choosing a temporary name", e))?
        ));
        match OpenOptions::new().write(true).create_new(true).open(&tmp) {
            Ok(file) => return Ok((tmp, file)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempts < 8 => attempts += 1,
            Err(e) => {
                return Err(io_err(
                    format!("creating temporary file {}", tmp.display()),
                    e,
                ));
            }
        }
    }
}

/// Creates `dir/.tmp-<hex>` (exclusively) and fills it; removes it again on error.
fn write_temp(dir: &Path, data: &[u8], fsync: bool) -> Result<PathBuf> {
    let (tmp, file) = create_temp(dir)?;
    if let Err(e) = write_and_sync(file, data, fsync) {
        let _ = fs::remove_file(&tmp);
        return Err(io_err(
            format!("writing temporary file {}", tmp.display()),
            e,
        ));
    }
    Ok(tmp)
}

/// Moves `tmp` to `target` without overwriting. With `hard_link`, by `link(tmp, target)`
/// then `unlink(tmp)` (atomic, never overwrites), falling back to the next way when the file
/// system has no hard links; otherwise (or on fallback) by checking that the target is absent,
/// then `rename`. On error `tmp` may still exist (the caller removes it).
fn commit(tmp: &Path, target: &Path, hard_link: bool, kind: Kind, name: &str) -> Result<()> {
    let exists = || StorageError::AlreadyExists {
        kind,
        name: name.to_owned(),
    };
    let context = || format!("committing {}", target.display());
    if hard_link {
        match fs::hard_link(tmp, target) {
            Ok(()) => {
                // Best effort: a leftover temp file is invisible and harmless; the object is
                // already in place.
                let _ = fs::remove_file(tmp);
                return Ok(());
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Err(exists()),
            Err(e)
                if e.kind() == io::ErrorKind::Unsupported
                    || e.kind() == io::ErrorKind::PermissionDenied
                    || e.raw_os_error() == Some(95) =>
            {
                // No hard links here (EPERM / EOPNOTSUPP): fall through to the rename.
                // A genuine permission problem makes the rename fail as well.
            }
            Err(e) => return Err(io_err(context(), e)),
        }
    }
    match fs::symlink_metadata(target) {
        Ok(_) => return Err(exists()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(context(), e)),
    }
    fs::rename(tmp, target).map_err(|e| io_err(context(), e))
}

/// The folder an object goes into, created (and its parent synced) for a pack's first
/// object under a new prefix; fails early with [`StorageError::AlreadyExists`] when the
/// object is already there (the commit checks again, atomically).
fn prepare_target(ctx: &Ctx, kind: Kind, name: &str) -> Result<(PathBuf, PathBuf)> {
    let target = object_path(&ctx.root, kind, name);
    let dir = target
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| ctx.root.clone());
    if kind == Kind::Pack {
        match fs::create_dir(&dir) {
            Ok(()) => {
                if ctx.fsync {
                    let data_dir = ctx.root.join(Kind::Pack.dir());
                    fsync_dir(&data_dir)?;
                }
            }
            // Already there (or a non-folder in the way: then creating the temp file fails
            // with a clear error naming the path).
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_err(format!("creating folder {}", dir.display()), e)),
        }
    }
    if fs::symlink_metadata(&target).is_ok() {
        return Err(StorageError::AlreadyExists {
            kind,
            name: name.to_owned(),
        });
    }
    Ok((target, dir))
}

/// The whole write: folder, temp file, commit, folder sync.
fn write_object(ctx: &Ctx, kind: Kind, name: &str, data: &[u8], hard_link: bool) -> Result<()> {
    let (target, dir) = prepare_target(ctx, kind, name)?;
    let tmp = write_temp(&dir, data, ctx.fsync)?;
    if let Err(e) = commit(&tmp, &target, hard_link, kind, name) {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    if ctx.fsync {
        fsync_dir(&dir)?;
    }
    Ok(())
}

/// An object written in pieces ([`Storage::object_writer`]): into a temporary file in its
/// kind's folder (for packs `data/`, since the name, and so the prefix folder, is known only
/// at the end), past the page cache when fsync is on, then committed like [`write_object`]:
/// fsync, hard link under its name (the same filesystem), folder sync. The temporary file is
/// created at the first write and removed on drop unless committed.
struct LocalObjectWriter {
    ctx: Ctx,
    kind: Kind,
    open: Option<(PathBuf, DirectWriter)>,
}

impl LocalObjectWriter {
    fn opened(&mut self) -> Result<&mut (PathBuf, DirectWriter)> {
        if self.open.is_none() {
            // The kind's folder (the root for the config: its `dir()` is empty).
            let (tmp, file) = create_temp(&self.ctx.root.join(self.kind.dir()))?;
            let writer = if self.ctx.fsync {
                DirectWriter::with_buffer(file, DEFAULT_STAGE_BYTES, take_stage())
            } else {
                DirectWriter::plain(file)
            };
            self.open = Some((tmp, writer));
        }
        self.open
            .as_mut()
            .ok_or_else(|| io_err("opening a temporary file", io::Error::other("not open")))
    }
}

impl ObjectWriter for LocalObjectWriter {
    fn write(&mut self, data: &[u8]) -> Result<()> {
        let (tmp, writer) = self.opened()?;
        writer
            .write_all(data)
            .map_err(|e| io_err(format!("writing temporary file {}", tmp.display()), e))
    }

    fn commit(mut self: Box<Self>, name: &str) -> Result<()> {
        check_name(name)?;
        let kind = self.kind;
        self.opened()?;
        let Some((tmp, writer)) = self.open.take() else {
            return Err(io_err("committing", io::Error::other("not open")));
        };
        let committed = finish_and_sync(writer, self.ctx.fsync)
            .map_err(|e| io_err(format!("writing temporary file {}", tmp.display()), e))
            .and_then(|()| prepare_target(&self.ctx, kind, name))
            .and_then(|(target, dir)| {
                commit(&tmp, &target, true, kind, name)?;
                Ok(dir)
            });
        match committed {
            Ok(dir) => {
                if self.ctx.fsync {
                    fsync_dir(&dir)?;
                }
                Ok(())
            }
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                Err(e)
            }
        }
    }
}

impl Drop for LocalObjectWriter {
    fn drop(&mut self) {
        if let Some((tmp, writer)) = self.open.take() {
            drop(writer);
            let _ = fs::remove_file(tmp);
        }
    }
}

/// Lists the objects in `dir` into `out`. Without `sizes`, an entry the folder itself says
/// is a regular file is taken without a `stat` (its size is left 0): listing 10,000
/// snapshot names then costs one `getdents` pass, not 10,000 path lookups.
fn list_dir(
    dir: &Path,
    out: &mut Vec<ObjectInfo>,
    prefix: Option<&str>,
    sizes: bool,
) -> Result<()> {
    let context = || format!("listing {}", dir.display());
    for entry in fs::read_dir(dir).map_err(|e| io_err(context(), e))? {
        let entry = entry.map_err(|e| io_err(context(), e))?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        // Temp files, hidden files and anything else that is not a valid object name.
        if check_name(&name).is_err() {
            continue;
        }
        if prefix.is_some_and(|prefix| pack_prefix(&name) != prefix) {
            continue; // would not be found by `read` under this name
        }
        if !sizes && entry.file_type().is_ok_and(|t| t.is_file()) {
            out.push(ObjectInfo { name, size: 0 });
            continue;
        }
        let path = entry.path();
        let meta = match fs::metadata(&path) {
            Ok(meta) => meta,
            // Deleted between read_dir and stat: it is simply gone.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io_err(format!("reading metadata of {}", path.display()), e)),
        };
        if meta.is_file() {
            out.push(ObjectInfo {
                name,
                size: meta.len(),
            });
        }
    }
    Ok(())
}

fn list_kind(ctx: &Ctx, kind: Kind, sizes: bool) -> Result<Vec<ObjectInfo>> {
    let dir = ctx.root.join(kind.dir());
    let mut out = Vec::new();
    if kind == Kind::Pack {
        let context = || format!("listing {}", dir.display());
        for entry in fs::read_dir(&dir).map_err(|e| io_err(context(), e))? {
            let entry = entry.map_err(|e| io_err(context(), e))?;
            let Ok(sub) = entry.file_name().into_string() else {
                continue;
            };
            if sub.starts_with('.') || check_name(&sub).is_err() {
                continue;
            }
            let file_type = entry.file_type().map_err(|e| io_err(context(), e))?;
            if file_type.is_dir() {
                list_dir(&entry.path(), &mut out, Some(&sub), sizes)?;
            }
        }
    } else {
        list_dir(&dir, &mut out, None, sizes)?;
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

fn read_range_blocking(
    path: &Path,
    kind: Kind,
    name: &str,
    offset: u64,
    length: u64,
) -> Result<Bytes> {
    let context = || format!("reading {}", path.display());
    let mut file = File::open(path).map_err(|e| not_found_or(kind, name, context(), e))?;
    let size = file.metadata().map_err(|e| io_err(context(), e))?.len();
    let out_of_range = |size| StorageError::OutOfRange {
        kind,
        name: name.to_owned(),
        offset,
        length,
        size,
    };
    let end = offset
        .checked_add(length)
        .ok_or_else(|| out_of_range(size))?;
    if end > size {
        return Err(out_of_range(size));
    }
    let len = usize::try_from(length).map_err(|_| out_of_range(size))?;
    // Read into the buffer's spare room (`read_to_end` does not zero it first).
    let mut buf = Vec::with_capacity(len);
    file.seek(SeekFrom::Start(offset))
        .map_err(|e| io_err(context(), e))?;
    match file.take(length).read_to_end(&mut buf) {
        Ok(n) if n == len => Ok(Bytes::from(buf)),
        // Shorter than its metadata said (it should never change, but do not trust it).
        Ok(_) => Err(out_of_range(size)),
        Err(e) => Err(io_err(context(), e)),
    }
}

fn create_blocking(ctx: &Ctx) -> Result<()> {
    let config = ctx.root.join(CONFIG_NAME);
    match fs::symlink_metadata(&config) {
        Ok(_) => {
            return Err(StorageError::AlreadyExists {
                kind: Kind::Config,
                name: CONFIG_NAME.to_owned(),
            });
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(format!("checking {}", config.display()), e)),
    }
    let root_existed = ctx.root.is_dir();
    fs::create_dir_all(&ctx.root)
        .map_err(|e| io_err(format!("creating folder {}", ctx.root.display()), e))?;
    for kind in Kind::ALL {
        if kind == Kind::Config {
            continue;
        }
        let dir = ctx.root.join(kind.dir());
        fs::create_dir_all(&dir)
            .map_err(|e| io_err(format!("creating folder {}", dir.display()), e))?;
    }
    if ctx.fsync {
        fsync_dir(&ctx.root)?;
        // A new root's own entry must be durable too.
        match ctx.root.parent() {
            Some(parent) if !root_existed => {
                let parent = if parent.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    parent
                };
                fsync_dir(parent)?;
            }
            _ => {}
        }
    }
    Ok(())
}

#[async_trait]
impl Storage for LocalStorage {
    fn location(&self) -> String {
        format!("local:{}", self.root.display())
    }

    async fn list(&self, kind: Kind) -> Result<Vec<ObjectInfo>> {
        self.blocking(format!("listing {kind:?}"), move |ctx| {
            list_kind(ctx, kind, true)
        })
        .await
    }

    async fn list_names(&self, kind: Kind) -> Result<Vec<String>> {
        let listed = self
            .blocking(format!("listing {kind:?}"), move |ctx| {
                list_kind(ctx, kind, false)
            })
            .await?;
        Ok(listed.into_iter().map(|o| o.name).collect())
    }

    async fn read(&self, kind: Kind, name: &str) -> Result<Bytes> {
        let path = self.object_path(kind, name)?;
        let name = name.to_owned();
        self.blocking(format!("reading {}", path.display()), move |_| {
            read_file(kind, &name, &path)
        })
        .await
    }

    async fn read_into(&self, kind: Kind, name: &str, mut buf: Vec<u8>) -> Result<Vec<u8>> {
        let path = self.object_path(kind, name)?;
        let name = name.to_owned();
        self.blocking(format!("reading {}", path.display()), move |_| {
            use std::io::Read as _;
            buf.clear();
            fs::File::open(&path)
                .and_then(|mut f| {
                    let len = f.metadata().map_or(0, |m| m.len());
                    buf.reserve(usize::try_from(len).unwrap_or(0));
                    f.read_to_end(&mut buf)
                })
                .map_err(|e| not_found_or(kind, &name, format!("reading {}", path.display()), e))?;
            Ok(buf)
        })
        .await
    }

    async fn read_many(&self, kind: Kind, names: &[String]) -> Vec<Result<Bytes>> {
        let paths: Vec<(String, Result<PathBuf>)> = names
            .iter()
            .map(|name| (name.clone(), self.object_path(kind, name)))
            .collect();
        let n = paths.len();
        let all = self
            .blocking(format!("reading {n} {kind:?} objects"), move |_| {
                Ok(paths
                    .into_iter()
                    .map(|(name, path)| read_file(kind, &name, &path?))
                    .collect::<Vec<_>>())
            })
            .await;
        match all {
            Ok(v) => v,
            // The blocking task itself failed: every read did.
            Err(e) => (0..n)
                .map(|_| {
                    Err(StorageError::Io {
                        context: e.to_string(),
                        source: io::Error::other("the reading task failed"),
                    })
                })
                .collect(),
        }
    }

    async fn read_range(&self, kind: Kind, name: &str, offset: u64, length: u64) -> Result<Bytes> {
        let path = self.object_path(kind, name)?;
        let name = name.to_owned();
        self.blocking(format!("reading {}", path.display()), move |_| {
            read_range_blocking(&path, kind, &name, offset, length)
        })
        .await
    }

    async fn write(&self, kind: Kind, name: &str, data: Bytes) -> Result<()> {
        let path = self.object_path(kind, name)?;
        let name = name.to_owned();
        self.blocking(format!("writing {}", path.display()), move |ctx| {
            write_object(ctx, kind, &name, &data, true)
        })
        .await
    }

    fn object_writer(&self, kind: Kind) -> Option<Box<dyn ObjectWriter>> {
        Some(Box::new(LocalObjectWriter {
            ctx: Ctx {
                root: self.root.clone(),
                fsync: self.fsync,
            },
            kind,
            open: None,
        }))
    }

    async fn delete(&self, kind: Kind, name: &str) -> Result<()> {
        let path = self.object_path(kind, name)?;
        let name = name.to_owned();
        self.blocking(format!("deleting {}", path.display()), move |ctx| {
            fs::remove_file(&path).map_err(|e| {
                not_found_or(kind, &name, format!("deleting {}", path.display()), e)
            })?;
            match path.parent() {
                Some(dir) if ctx.fsync => fsync_dir(dir)?,
                _ => {}
            }
            Ok(())
        })
        .await
    }

    async fn create(&self) -> Result<()> {
        self.blocking(format!("creating {}", self.root.display()), create_blocking)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_prefix_is_two_chars_or_whole_name() {
        assert_eq!(pack_prefix("abcdef"), "ab");
        assert_eq!(pack_prefix("ab"), "ab");
        assert_eq!(pack_prefix("a"), "a");
    }

    #[test]
    fn paths_follow_the_layout() {
        let s = LocalStorage::new(PathBuf::from("/r"));
        let p = |k, n| s.object_path(k, n).unwrap();
        assert_eq!(p(Kind::Config, "config"), PathBuf::from("/r/config"));
        assert_eq!(p(Kind::Key, "k1"), PathBuf::from("/r/keys/k1"));
        assert_eq!(p(Kind::Pack, "abcd"), PathBuf::from("/r/data/ab/abcd"));
        assert_eq!(p(Kind::Index, "i"), PathBuf::from("/r/index/i"));
        assert_eq!(p(Kind::Snapshot, "s"), PathBuf::from("/r/snapshots/s"));
        assert_eq!(p(Kind::Lock, "l"), PathBuf::from("/r/locks/l"));
        assert!(matches!(
            s.object_path(Kind::Key, "../x"),
            Err(StorageError::InvalidName(_))
        ));
    }

    #[test]
    fn enospc_keeps_its_os_error() {
        // /dev/full fails every write with ENOSPC: the error must still be recognisable after
        // going through the write path and being wrapped.
        // Both ways: a small write through the page cache, and a large one direct.
        for (len, fsync) in [(4096, false), (3 << 20, true)] {
            let Ok(full) = OpenOptions::new().write(true).open("/dev/full") else {
                return; // not on this platform
            };
            let err = write_and_sync(full, &vec![0u8; len], fsync).unwrap_err();
            let err = io_err("writing /dev/full", err);
            assert!(err.is_out_of_space(), "{len}: {err}");
            assert!(err.to_string().starts_with("writing /dev/full: "), "{err}");
        }
    }

    #[test]
    fn check_then_rename_fallback_is_write_once() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = Ctx {
            root: dir.path().to_path_buf(),
            fsync: true,
        };
        fs::create_dir(dir.path().join("keys")).unwrap();
        write_object(&ctx, Kind::Key, "k", b"first", false).unwrap();
        let err = write_object(&ctx, Kind::Key, "k", b"second", false);
        assert!(
            matches!(err, Err(StorageError::AlreadyExists { .. })),
            "{err:?}"
        );
        assert_eq!(fs::read(dir.path().join("keys/k")).unwrap(), b"first");
        // The losing temp file was removed.
        let names: Vec<_> = fs::read_dir(dir.path().join("keys"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, vec!["k".to_owned()]);
    }

    #[test]
    fn commit_race_loser_gets_already_exists() {
        // Skip the early existence check: the hard link itself must refuse to overwrite.
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("obj");
        fs::write(&target, b"winner").unwrap();
        let tmp = write_temp(dir.path(), b"loser", false).unwrap();
        let err = commit(&tmp, &target, true, Kind::Index, "obj");
        assert!(
            matches!(err, Err(StorageError::AlreadyExists { .. })),
            "{err:?}"
        );
        assert_eq!(fs::read(&target).unwrap(), b"winner");
    }
}
