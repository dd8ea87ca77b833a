//! Trees: one directory's entries, stored as a JSON blob (then compressed and sealed).
//!
//! A name or link target that is not UTF-8 is stored base64-encoded in `name_b64` /
//! `target_b64`. Entries are sorted by the bytes of their names and names are unique.
//! Pure encoding and validation; no I/O.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};

use crate::id::Id;

/// What a node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeKind {
    /// A regular file; `content` (or `content_lists`) lists its data blobs.
    File,
    /// A directory; `subtree` is its tree blob.
    Dir,
    /// A symbolic link; `target` is where it points.
    Symlink,
}

/// One entry of a tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// The name, as raw bytes (Unix names need not be UTF-8).
    pub name: Vec<u8>,
    /// File, directory or symlink.
    pub kind: NodeKind,
    /// Permission bits (`st_mode & 0o7777`).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Modification time, nanoseconds since the Unix epoch.
    pub mtime_ns: i64,
    /// Status-change time, nanoseconds (used to detect unchanged files).
    pub ctime_ns: i64,
    /// Inode number (used to detect unchanged files).
    pub inode: u64,
    /// Size in bytes (for files: the bytes stored).
    pub size: u64,
    /// Data blobs of a file, in order, when there are at most [`crate::content::INLINE_MAX`].
    pub content: Vec<Id>,
    /// Otherwise: the list blobs holding them, in order (see [`crate::content`]). A file
    /// never has both.
    pub content_lists: Vec<Id>,
    /// Tree blob of a directory.
    pub subtree: Option<Id>,
    /// Target of a symlink, raw bytes.
    pub target: Option<Vec<u8>>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNode {
    #[serde(skip_serializing_if = "Option::is_none", default)]
    name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    name_b64: Option<String>,
    #[serde(rename = "type")]
    kind: NodeKind,
    mode: u32,
    uid: u32,
    gid: u32,
    mtime_ns: i64,
    ctime_ns: i64,
    inode: u64,
    size: u64,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    content: Vec<Id>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    content_lists: Vec<Id>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    subtree: Option<Id>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    target: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    target_b64: Option<String>,
}

fn split_bytes(b: &[u8]) -> (Option<String>, Option<String>) {
    match std::str::from_utf8(b) {
        Ok(s) => (Some(s.to_owned()), None),
        Err(_) => (None, Some(B64.encode(b))),
    }
}

fn join_bytes(s: Option<String>, b64: Option<String>) -> Result<Option<Vec<u8>>, String> {
    match (s, b64) {
        (Some(s), None) => Ok(Some(s.into_bytes())),
        (None, Some(b)) => B64.decode(b).map(Some).map_err(|e| e.to_string()),
        (None, None) => Ok(None),
        (Some(_), Some(_)) => Err("both plain and base64 forms given".into()),
    }
}

impl Serialize for Node {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (name, name_b64) = split_bytes(&self.name);
        let (target, target_b64) = match &self.target {
            Some(t) => split_bytes(t),
            None => (None, None),
        };
        RawNode {
            name,
            name_b64,
            kind: self.kind,
            mode: self.mode,
            uid: self.uid,
            gid: self.gid,
            mtime_ns: self.mtime_ns,
            ctime_ns: self.ctime_ns,
            inode: self.inode,
            size: self.size,
            content: self.content.clone(),
            content_lists: self.content_lists.clone(),
            subtree: self.subtree,
            target,
            target_b64,
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Node, D::Error> {
        let r = RawNode::deserialize(d)?;
        let name = join_bytes(r.name, r.name_b64)
            .map_err(serde::de::Error::custom)?
            .ok_or_else(|| serde::de::Error::custom("node without a name"))?;
        let target = join_bytes(r.target, r.target_b64).map_err(serde::de::Error::custom)?;
        if !r.content.is_empty() && !r.content_lists.is_empty() {
            return Err(serde::de::Error::custom(
                "node with both content and content_lists",
            ));
        }
        Ok(Node {
            name,
            kind: r.kind,
            mode: r.mode,
            uid: r.uid,
            gid: r.gid,
            mtime_ns: r.mtime_ns,
            ctime_ns: r.ctime_ns,
            inode: r.inode,
            size: r.size,
            content: r.content,
            content_lists: r.content_lists,
            subtree: r.subtree,
            target,
        })
    }
}

impl Node {
    /// The name for messages (lossy for non-UTF-8 names).
    #[must_use]
    pub fn display_name(&self) -> String {
        String::from_utf8_lossy(&self.name).into_owned()
    }

    /// True when the name is safe to create inside a directory: not empty, not `.` or `..`,
    /// and without `/` or NUL.
    #[must_use]
    pub fn name_is_safe(&self) -> bool {
        let n = &self.name;
        !n.is_empty() && n != b"." && n != b".." && !n.contains(&b'/') && !n.contains(&0)
    }
}

/// A directory listing.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tree {
    /// Entries sorted by name.
    pub nodes: Vec<Node>,
}

impl Tree {
    /// Sorts entries by name.
    pub fn sort(&mut self) {
        self.nodes.sort_by(|a, b| a.name.cmp(&b.name));
    }

    /// Encodes as JSON bytes.
    ///
    /// # Errors
    /// Never in practice.
    pub fn to_bytes(&self) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(self)
    }

    /// Decodes and validates: every name safe, names unique and sorted.
    ///
    /// # Errors
    /// A message saying what is wrong.
    pub fn from_bytes(b: &[u8]) -> Result<Tree, String> {
        let t: Tree = serde_json::from_slice(b).map_err(|e| e.to_string())?;
        for w in t.nodes.windows(2) {
            if w[0].name >= w[1].name {
                return Err(format!(
                    "entries not sorted or duplicated at {:?}",
                    w[1].display_name()
                ));
            }
        }
        if let Some(bad) = t.nodes.iter().find(|n| !n.name_is_safe()) {
            return Err(format!("unsafe entry name {:?}", bad.display_name()));
        }
        Ok(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &[u8]) -> Node {
        Node {
            name: name.to_vec(),
            kind: NodeKind::File,
            mode: 0o644,
            uid: 1,
            gid: 2,
            mtime_ns: 3,
            ctime_ns: 4,
            inode: 5,
            size: 6,
            content: vec![Id([1; 32])],
            content_lists: vec![],
            subtree: None,
            target: None,
        }
    }

    #[test]
    fn round_trip_with_non_utf8_names() {
        let mut t = Tree {
            nodes: vec![node(b"z\xff\xfe"), node("üñí".as_bytes()), node(b"a")],
        };
        t.nodes[0].kind = NodeKind::Symlink;
        t.nodes[0].target = Some(b"/x\xff".to_vec());
        t.sort();
        let b = t.to_bytes().unwrap();
        assert_eq!(Tree::from_bytes(&b).unwrap(), t);
    }

    #[test]
    fn unsafe_or_duplicate_names_rejected() {
        for bad in [&b".."[..], b"a/b", b"", b"."] {
            let t = Tree {
                nodes: vec![node(bad)],
            };
            assert!(
                Tree::from_bytes(&t.to_bytes().unwrap()).is_err(),
                "{bad:?} accepted"
            );
        }
        let t = Tree {
            nodes: vec![node(b"a"), node(b"a")],
        };
        assert!(Tree::from_bytes(&t.to_bytes().unwrap()).is_err());
    }
}
