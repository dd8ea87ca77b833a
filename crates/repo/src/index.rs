//! Index files (which blob is in which pack, where) and the in-memory master index.
//!
//! An index file's plaintext is zstd-compressed, then sealed as [`ObjectType::Index`] under
//! its random id. Plaintext before compression (little-endian):
//! ```text
//! "SRIX" ‖ version: u8 (1) ‖ n_supersedes: u32 ‖ n_supersedes × id[32]
//!        ‖ n_packs: u32 ‖ n_packs × (pack_id[32] ‖ pack_size: u64 ‖ n_blobs: u32 ‖ n_blobs × entry)
//! entry = type: u8 ‖ compression: u8 ‖ offset: u32 ‖ stored_len: u32 ‖ raw_len: u32 ‖ id[32]
//! ```
//! `supersedes` lists index files whose content this one fully contains (written by prune
//! before it deletes them). Pure encoding and lookup; no I/O.

use std::collections::HashMap;

use crate::compress::Compression;
use crate::crypto::{MasterKey, ObjectType};
use crate::id::Id;
use crate::pack::{BlobType, PackEntry};

const MAGIC: &[u8; 4] = b"SRIX";
const ENTRY_LEN: usize = 46;

/// A pack and the blobs it holds, as listed in an index file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexPack {
    /// The pack's id.
    pub id: Id,
    /// The pack's size in bytes.
    pub size: u64,
    /// Its blobs.
    pub blobs: Vec<PackEntry>,
}

/// The content of one index file.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IndexFile {
    /// Index files this one replaces.
    pub supersedes: Vec<Id>,
    /// Packs listed.
    pub packs: Vec<IndexPack>,
}

/// Errors decoding an index file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IndexError {
    /// Authentication failed.
    #[error("index file failed to authenticate: it was modified, truncated or renamed")]
    Authentication,
    /// Structure is wrong.
    #[error("index file is damaged: {0}")]
    Damaged(String),
}

impl IndexFile {
    /// Encodes, compresses and seals this index under `id`.
    #[must_use]
    pub fn seal(&self, key: &MasterKey, id: &Id) -> Vec<u8> {
        let mut p = Vec::new();
        p.extend_from_slice(MAGIC);
        p.push(1);
        put_u32(&mut p, self.supersedes.len());
        for s in &self.supersedes {
            p.extend_from_slice(&s.0);
        }
        put_u32(&mut p, self.packs.len());
        for pack in &self.packs {
            p.extend_from_slice(&pack.id.0);
            p.extend_from_slice(&pack.size.to_le_bytes());
            put_u32(&mut p, pack.blobs.len());
            for e in &pack.blobs {
                p.push(e.blob_type as u8);
                p.push(e.compression as u8);
                p.extend_from_slice(&e.offset.to_le_bytes());
                p.extend_from_slice(&e.stored_len.to_le_bytes());
                p.extend_from_slice(&e.raw_len.to_le_bytes());
                p.extend_from_slice(&e.id.0);
            }
        }
        let compressed = match zstd::bulk::compress(&p, 3) {
            Ok(c) => c,
            // Only an allocation failure makes zstd fail here; storing the plain bytes would
            // make an index file no reader can decode.
            Err(e) => panic!("compressing an index file failed: {e}"),
        };
        key.seal(ObjectType::Index, id, &compressed)
    }

    /// Opens and decodes an index file named `id`.
    ///
    /// # Errors
    /// [`IndexError`] when it fails to authenticate or decode.
    pub fn open(key: &MasterKey, id: &Id, sealed: &[u8]) -> Result<IndexFile, IndexError> {
        let compressed = key
            .open(ObjectType::Index, id, sealed)
            .map_err(|_| IndexError::Authentication)?;
        let p = zstd::stream::decode_all(compressed.as_slice())
            .map_err(|e| IndexError::Damaged(format!("decompression: {e}")))?;
        let mut r = Reader { b: &p, at: 0 };
        if r.take(4)? != MAGIC || r.u8()? != 1 {
            return Err(IndexError::Damaged("unknown index format".into()));
        }
        let ns = r.u32()? as usize;
        let mut supersedes = Vec::with_capacity(ns.min(1 << 16));
        for _ in 0..ns {
            supersedes.push(r.id()?);
        }
        let np = r.u32()? as usize;
        let mut packs = Vec::with_capacity(np.min(1 << 16));
        for _ in 0..np {
            let pid = r.id()?;
            let size = u64::from_le_bytes(r.array()?);
            let nb = r.u32()? as usize;
            let mut blobs = Vec::with_capacity(nb.min(1 << 16));
            for _ in 0..nb {
                let e = r.take(ENTRY_LEN)?;
                let blob_type = BlobType::from_u8(e[0])
                    .ok_or_else(|| IndexError::Damaged("unknown blob type".into()))?;
                let compression = Compression::from_u8(e[1])
                    .ok_or_else(|| IndexError::Damaged("unknown compression".into()))?;
                let f = |at: usize| u32::from_le_bytes([e[at], e[at + 1], e[at + 2], e[at + 3]]);
                let mut id = [0u8; 32];
                id.copy_from_slice(&e[14..46]);
                blobs.push(PackEntry {
                    id: Id(id),
                    blob_type,
                    compression,
                    offset: f(2),
                    stored_len: f(6),
                    raw_len: f(10),
                });
            }
            packs.push(IndexPack {
                id: pid,
                size,
                blobs,
            });
        }
        if r.at != p.len() {
            return Err(IndexError::Damaged("trailing bytes".into()));
        }
        Ok(IndexFile { supersedes, packs })
    }
}

fn put_u32(v: &mut Vec<u8>, n: usize) {
    v.extend_from_slice(&u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes());
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], IndexError> {
        let s = self
            .b
            .get(self.at..self.at + n)
            .ok_or_else(|| IndexError::Damaged("truncated".into()))?;
        self.at += n;
        Ok(s)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], IndexError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8, IndexError> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, IndexError> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    fn id(&mut self) -> Result<Id, IndexError> {
        Ok(Id(self.array()?))
    }
}

/// Where a blob is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobLocation {
    /// The pack holding it.
    pub pack: Id,
    /// The entry in that pack.
    pub entry: PackEntry,
}

/// All index files merged: blob id → location, and the packs that are indexed.
#[derive(Debug, Default, Clone)]
pub struct MasterIndex {
    packs: Vec<(Id, u64)>,
    pack_pos: HashMap<Id, u32>,
    blobs: HashMap<Id, (u32, PackEntry)>,
}

impl MasterIndex {
    /// Adds every pack and blob of an index file (the first location of a blob wins).
    pub fn add_file(&mut self, file: &IndexFile) {
        for p in &file.packs {
            self.add_pack(p.id, p.size, &p.blobs);
        }
    }

    /// Adds one pack.
    pub fn add_pack(&mut self, id: Id, size: u64, blobs: &[PackEntry]) {
        let pos = *self.pack_pos.entry(id).or_insert_with(|| {
            self.packs.push((id, size));
            u32::try_from(self.packs.len() - 1).unwrap_or(u32::MAX)
        });
        for e in blobs {
            self.blobs.entry(e.id).or_insert((pos, *e));
        }
    }

    /// Where a blob is.
    #[must_use]
    pub fn get(&self, id: &Id) -> Option<BlobLocation> {
        self.blobs.get(id).and_then(|(pos, entry)| {
            self.packs.get(*pos as usize).map(|(pack, _)| BlobLocation {
                pack: *pack,
                entry: *entry,
            })
        })
    }

    /// True when the blob is indexed.
    #[must_use]
    pub fn contains(&self, id: &Id) -> bool {
        self.blobs.contains_key(id)
    }

    /// True when every blob is indexed.
    #[must_use]
    pub fn contains_all(&self, ids: &[Id]) -> bool {
        ids.iter().all(|id| self.blobs.contains_key(id))
    }

    /// Number of distinct blobs.
    #[must_use]
    pub fn blob_count(&self) -> usize {
        self.blobs.len()
    }

    /// Indexed packs with their sizes.
    #[must_use]
    pub fn packs(&self) -> &[(Id, u64)] {
        &self.packs
    }

    /// True when the pack is indexed.
    #[must_use]
    pub fn has_pack(&self, id: &Id) -> bool {
        self.pack_pos.contains_key(id)
    }

    /// Iterates over (blob id, location).
    pub fn iter(&self) -> impl Iterator<Item = BlobLocation> + '_ {
        self.blobs.values().filter_map(|(pos, e)| {
            self.packs.get(*pos as usize).map(|(pack, _)| BlobLocation {
                pack: *pack,
                entry: *e,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(n: u8, offset: u32) -> PackEntry {
        PackEntry {
            id: Id([n; 32]),
            blob_type: BlobType::Data,
            compression: Compression::Zstd,
            offset,
            stored_len: 100 + u32::from(n),
            raw_len: 1000,
        }
    }

    #[test]
    fn seal_open_round_trip() {
        let key = MasterKey::generate();
        let f = IndexFile {
            supersedes: vec![Id([9; 32])],
            packs: vec![IndexPack {
                id: Id([1; 32]),
                size: 1234,
                blobs: vec![entry(1, 0), entry(2, 101)],
            }],
        };
        let id = Id::random();
        let sealed = f.seal(&key, &id);
        assert_eq!(IndexFile::open(&key, &id, &sealed).unwrap(), f);
        assert!(IndexFile::open(&key, &Id::random(), &sealed).is_err());
        let mut m = MasterIndex::default();
        m.add_file(&f);
        assert_eq!(m.get(&Id([2; 32])).unwrap().entry.offset, 101);
        assert_eq!(m.get(&Id([2; 32])).unwrap().pack, Id([1; 32]));
        assert!(!m.contains(&Id([3; 32])));
        assert_eq!(m.blob_count(), 2);
    }
}
