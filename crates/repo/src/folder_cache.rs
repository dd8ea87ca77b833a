//! A local cache of folder trees, so that backing up again a tree that did not change looks
//! at every file's metadata but decodes no tree of the parent snapshot and hands no entry to
//! the assembler: a folder whose entries (names, types, permissions, owners, times, inodes,
//! sizes, link targets, subfolder trees) hash to a key seen in the previous backup of the same
//! paths is that backup's tree blob again.
//!
//! It must never be the truth about the repository. A tree is taken from it only while every
//! index file that was loaded when the cache was written is still there (index files are only
//! added between prunes; a prune or a damaged index file replaces or drops one, and the whole
//! cache is then ignored), and only when the index lists the tree now; so every blob the tree
//! refers to (through its files and subfolders) is indexed as it was when the tree was stored
//! or taken the last time. The file is sealed with the repository's key under its own id, and
//! the keys are keyed hashes, so a damaged, foreign or edited cache opens as nothing; losing
//! it only costs one slower backup. Pure file I/O on the local disk.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use crate::crypto::{MasterKey, ObjectType};
use crate::id::Id;
use crate::tree::{Node, NodeKind};

/// What the plaintext starts with.
const MAGIC: &[u8; 8] = b"SRDIRC\0\0";

/// The cache's format version.
const VERSION: u32 = 1;

/// What a folder key's hashed bytes start with (keeps them apart from any blob's plaintext).
const KEY_DOMAIN: &[u8] = b"strongroom folder cache key v1\0";

/// The folder cache of one set of backed-up paths of one repository: where it lives and the
/// entries it held when loaded.
#[derive(Debug, Clone)]
pub struct FolderCache {
    /// `<cache folder>/<repository id>/folders-<id>`.
    path: PathBuf,
    /// The id the file is sealed under (derived from the host and paths backed up).
    id: Id,
    /// (folder key, tree id), sorted by key.
    entries: Vec<(Id, Id)>,
}

impl FolderCache {
    /// The cache for backing up `paths` from `host` into the repository `repo_id`, under the
    /// cache folder `root`; empty until [`FolderCache::load`].
    #[must_use]
    pub fn new(root: &Path, repo_id: Id, key: &MasterKey, host: &str, paths: &[String]) -> Self {
        let mut h = key.id_hasher();
        h.update(b"strongroom folder cache file v1\0");
        h.update(&repo_id.0);
        for part in std::iter::once(host).chain(paths.iter().map(String::as_str)) {
            h.update(&(part.len() as u64).to_le_bytes());
            h.update(part.as_bytes());
        }
        let id = Id(*h.finalize().as_bytes());
        FolderCache {
            path: root
                .join(repo_id.to_hex())
                .join(format!("folders-{}", id.to_hex())),
            id,
            entries: Vec::new(),
        }
    }

    /// The cache file's path.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the cache file. It is used only when every index file it was written with is
    /// among `index_files` (the ones loaded now); a missing, damaged, foreign or stale file
    /// leaves the cache empty, never an error. Returns whether entries were loaded.
    pub fn load(&mut self, key: &MasterKey, index_files: &[Id]) -> bool {
        self.entries.clear();
        let Ok(sealed) = std::fs::read(&self.path) else {
            return false;
        };
        let Ok(plain) = key.open_vec(ObjectType::LocalFolderCache, &self.id, sealed) else {
            return false;
        };
        let Some((written_with, entries)) = decode(&plain) else {
            return false;
        };
        let now: HashSet<&Id> = index_files.iter().collect();
        if !written_with.iter().all(|id| now.contains(id)) {
            return false;
        }
        self.entries = entries;
        !self.entries.is_empty()
    }

    /// Whether there are no entries.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The tree stored for a folder whose key is `key`, if the cache has one.
    #[must_use]
    pub fn get(&self, key: &Id) -> Option<Id> {
        self.entries
            .binary_search_by(|(k, _)| k.cmp(key))
            .ok()
            .and_then(|i| self.entries.get(i))
            .map(|(_, tree)| *tree)
    }

    /// Replaces the file with `entries` (folder key, tree id), written with the index files
    /// `index_files`: to a temporary file beside it, then renamed over it.
    ///
    /// # Errors
    /// When the folder or the file cannot be written (the next backup then reads the parent
    /// snapshot's trees instead).
    pub fn store(
        &self,
        key: &MasterKey,
        mut entries: Vec<(Id, Id)>,
        index_files: &[Id],
    ) -> std::io::Result<()> {
        entries.sort_unstable();
        entries.dedup_by(|a, b| a.0 == b.0);
        let mut plain = Vec::with_capacity(64 + index_files.len() * 32 + entries.len() * 64);
        plain.extend_from_slice(MAGIC);
        plain.extend_from_slice(&VERSION.to_le_bytes());
        plain.extend_from_slice(&(index_files.len() as u64).to_le_bytes());
        for id in index_files {
            plain.extend_from_slice(&id.0);
        }
        plain.extend_from_slice(&(entries.len() as u64).to_le_bytes());
        for (k, tree) in &entries {
            plain.extend_from_slice(&k.0);
            plain.extend_from_slice(&tree.0);
        }
        let sealed = key.seal(ObjectType::LocalFolderCache, &self.id, &plain);
        crate::snapshot_cache::replace_file(&self.path, &sealed)
    }
}

/// What a cache file holds: the index files it was written with, and its (folder key, tree)
/// entries sorted by key.
type Contents = (Vec<Id>, Vec<(Id, Id)>);

/// The contents of an opened cache file, or `None` when it is not one of this version, whole,
/// with its entries in order.
fn decode(plain: &[u8]) -> Option<Contents> {
    let mut r = plain;
    let mut take = |n: usize| -> Option<&[u8]> {
        let (head, rest) = r.split_at_checked(n)?;
        r = rest;
        Some(head)
    };
    if take(MAGIC.len())? != MAGIC || take(4)? != VERSION.to_le_bytes() {
        return None;
    }
    let id = |b: &[u8]| -> Option<Id> { Some(Id(b.try_into().ok()?)) };
    let files = u64::from_le_bytes(take(8)?.try_into().ok()?);
    let mut index_files = Vec::new();
    for _ in 0..files {
        index_files.push(id(take(32)?)?);
    }
    let count = u64::from_le_bytes(take(8)?.try_into().ok()?);
    let mut entries = Vec::new();
    for _ in 0..count {
        entries.push((id(take(32)?)?, id(take(32)?)?));
    }
    let sorted = entries.windows(2).all(|w| w[0].0 < w[1].0);
    (r.is_empty() && sorted).then_some((index_files, entries))
}

/// The key of a folder at `path` (its absolute path's bytes) with the entries `nodes`, sorted
/// by name as its tree stores them. Only what the backup looks at is hashed, never content:
/// a file node's `size` is its size as looked at (an unchanged file's tree node has the same),
/// a symlink's is 0, a folder's `subtree` is its tree.
#[must_use]
pub fn folder_key(key: &MasterKey, path: &[u8], nodes: &[Node]) -> Id {
    let mut h = key.id_hasher();
    h.update(KEY_DOMAIN);
    h.update(&(path.len() as u64).to_le_bytes());
    h.update(path);
    h.update(&(nodes.len() as u64).to_le_bytes());
    for n in nodes {
        let mut fixed = [0u8; 8 + 1 + 12 + 32];
        fixed[..8].copy_from_slice(&(n.name.len() as u64).to_le_bytes());
        fixed[8] = match n.kind {
            NodeKind::File => 1,
            NodeKind::Dir => 2,
            NodeKind::Symlink => 3,
        };
        fixed[9..13].copy_from_slice(&n.mode.to_le_bytes());
        fixed[13..17].copy_from_slice(&n.uid.to_le_bytes());
        fixed[17..21].copy_from_slice(&n.gid.to_le_bytes());
        fixed[21..29].copy_from_slice(&n.mtime_ns.to_le_bytes());
        fixed[29..37].copy_from_slice(&n.ctime_ns.to_le_bytes());
        fixed[37..45].copy_from_slice(&n.inode.to_le_bytes());
        fixed[45..53].copy_from_slice(&n.size.to_le_bytes());
        h.update(&fixed);
        h.update(&n.name);
        match &n.subtree {
            Some(t) => {
                h.update(&[1]);
                h.update(&t.0);
            }
            None => {
                h.update(&[0]);
            }
        }
        match &n.target {
            Some(t) => {
                h.update(&[1]);
                h.update(&(t.len() as u64).to_le_bytes());
                h.update(t);
            }
            None => {
                h.update(&[0]);
            }
        }
    }
    Id(*h.finalize().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, size: u64) -> Node {
        Node {
            name: name.as_bytes().to_vec(),
            kind: NodeKind::File,
            mode: 0o644,
            uid: 1000,
            gid: 1000,
            mtime_ns: 1_700_000_000_000_000_000,
            ctime_ns: 1_700_000_000_000_000_001,
            inode: 42,
            size,
            content: vec![],
            content_lists: vec![],
            subtree: None,
            target: None,
        }
    }

    fn cache(dir: &Path, key: &MasterKey) -> FolderCache {
        FolderCache::new(dir, Id([3; 32]), key, "clinic", &["/srv/media".into()])
    }

    #[test]
    fn a_stored_cache_loads_while_its_index_files_remain() {
        let dir = tempfile::tempdir().unwrap();
        let key = MasterKey::generate();
        let c = cache(dir.path(), &key);
        let (a, b) = (Id([1; 32]), Id([2; 32]));
        c.store(
            &key,
            vec![(b, Id([9; 32])), (a, Id([8; 32]))],
            &[Id([5; 32])],
        )
        .unwrap();
        let mut loaded = cache(dir.path(), &key);
        // Index files were only added: the entries hold.
        assert!(loaded.load(&key, &[Id([6; 32]), Id([5; 32])]));
        assert_eq!(loaded.get(&a), Some(Id([8; 32])));
        assert_eq!(loaded.get(&b), Some(Id([9; 32])));
        assert_eq!(loaded.get(&Id([4; 32])), None);
        // An index file it was written with is gone (a prune replaced it): ignored whole.
        assert!(!loaded.load(&key, &[Id([6; 32])]));
        assert!(loaded.is_empty());
        assert_eq!(loaded.get(&a), None);
    }

    #[test]
    fn a_damaged_foreign_or_other_paths_cache_opens_as_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let key = MasterKey::generate();
        let c = cache(dir.path(), &key);
        c.store(&key, vec![(Id([1; 32]), Id([8; 32]))], &[])
            .unwrap();
        // Another key (another repository's) cannot open it.
        let other = MasterKey::generate();
        assert!(!cache(dir.path(), &other).load(&other, &[]));
        // Other paths are another file.
        let mut elsewhere =
            FolderCache::new(dir.path(), Id([3; 32]), &key, "clinic", &["/srv/x".into()]);
        assert_ne!(elsewhere.path(), c.path());
        assert!(!elsewhere.load(&key, &[]));
        // One flipped byte: nothing.
        let mut bytes = std::fs::read(c.path()).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(c.path(), &bytes).unwrap();
        assert!(!cache(dir.path(), &key).load(&key, &[]));
    }

    #[test]
    fn decode_rejects_truncated_trailing_or_unsorted_entries() {
        let mut plain = Vec::new();
        plain.extend_from_slice(MAGIC);
        plain.extend_from_slice(&VERSION.to_le_bytes());
        plain.extend_from_slice(&0u64.to_le_bytes());
        plain.extend_from_slice(&2u64.to_le_bytes());
        for k in [1u8, 2] {
            plain.extend_from_slice(&[k; 32]);
            plain.extend_from_slice(&[9; 32]);
        }
        assert_eq!(decode(&plain).map(|(_, e)| e.len()), Some(2));
        assert!(decode(&plain[..plain.len() - 1]).is_none());
        let mut trailing = plain.clone();
        trailing.push(0);
        assert!(decode(&trailing).is_none());
        let mut unsorted = plain.clone();
        let first = MAGIC.len() + 4 + 8 + 8;
        unsorted[first..first + 32].copy_from_slice(&[7; 32]);
        assert!(decode(&unsorted).is_none());
    }

    #[test]
    fn every_looked_at_field_changes_the_key_and_content_does_not() {
        let key = MasterKey::generate();
        let base = vec![node("a.txt", 10), node("b.txt", 20)];
        let k = folder_key(&key, b"/srv/media", &base);
        assert_eq!(k, folder_key(&key, b"/srv/media", &base.clone()));
        type Change = Box<dyn Fn(&mut Node)>;
        let changes: Vec<Change> = vec![
            Box::new(|n| n.name = b"c.txt".to_vec()),
            Box::new(|n| n.kind = NodeKind::Symlink),
            Box::new(|n| n.mode = 0o600),
            Box::new(|n| n.uid = 0),
            Box::new(|n| n.gid = 0),
            Box::new(|n| n.mtime_ns += 1),
            Box::new(|n| n.ctime_ns += 1),
            Box::new(|n| n.inode += 1),
            Box::new(|n| n.size += 1),
            Box::new(|n| n.subtree = Some(Id([1; 32]))),
            Box::new(|n| n.target = Some(b"x".to_vec())),
        ];
        for change in &changes {
            let mut nodes = base.clone();
            change(&mut nodes[1]);
            assert_ne!(k, folder_key(&key, b"/srv/media", &nodes));
        }
        assert_ne!(k, folder_key(&key, b"/srv/other", &base));
        assert_ne!(k, folder_key(&key, b"/srv/media", &base[..1]));
        assert_ne!(k, folder_key(&MasterKey::generate(), b"/srv/media", &base));
        // What a node stores but the walk does not look at is not part of the key.
        let mut with_content = base.clone();
        with_content[0].content = vec![Id([5; 32])];
        assert_eq!(k, folder_key(&key, b"/srv/media", &with_content));
    }
}
