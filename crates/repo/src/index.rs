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
        let p = open_plain(key, id, sealed.to_vec())?;
        let mut packs = Vec::new();
        let supersedes = parse(&p, |pid, size, blobs| {
            packs.push(IndexPack {
                id: pid,
                size,
                blobs: blobs.to_vec(),
            });
        })?;
        Ok(IndexFile { supersedes, packs })
    }
}

/// The plaintext of a sealed index file: authenticated, then decompressed (the compressed
/// bytes are freed before the caller decodes).
fn open_plain(key: &MasterKey, id: &Id, sealed: Vec<u8>) -> Result<Vec<u8>, IndexError> {
    let compressed = key
        .open_vec(ObjectType::Index, id, sealed)
        .map_err(|_| IndexError::Authentication)?;
    zstd::stream::decode_all(compressed.as_slice())
        .map_err(|e| IndexError::Damaged(format!("decompression: {e}")))
}

/// Decodes an index file's plaintext, handing each pack (id, size, blobs) to `visit` as it is
/// decoded; returns the index files it supersedes. A damaged file may have had packs visited
/// before the error: check it first (see [`IndexBuilder::add_sealed`]).
fn parse(p: &[u8], mut visit: impl FnMut(Id, u64, &[PackEntry])) -> Result<Vec<Id>, IndexError> {
    let mut r = Reader { b: p, at: 0 };
    if r.take(4)? != MAGIC || r.u8()? != 1 {
        return Err(IndexError::Damaged("unknown index format".into()));
    }
    let ns = r.u32()? as usize;
    let mut supersedes = Vec::with_capacity(ns.min(1 << 16));
    for _ in 0..ns {
        supersedes.push(r.id()?);
    }
    let np = r.u32()? as usize;
    let mut blobs = Vec::new();
    for _ in 0..np {
        let pid = r.id()?;
        let size = u64::from_le_bytes(r.array()?);
        let nb = r.u32()? as usize;
        blobs.clear();
        blobs.reserve(nb.min(1 << 16));
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
        visit(pid, size, &blobs);
    }
    if r.at != p.len() {
        return Err(IndexError::Damaged("trailing bytes".into()));
    }
    Ok(supersedes)
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

/// Position of a pack in [`MasterIndex::packs`] that fits a [`Slot`] (3 bytes).
const SLOT_PACK_LIMIT: u32 = 1 << 24;
/// Plaintext length that fits a [`Slot`] (30 bits; chunks are at most 8 MiB).
const SLOT_RAW_LIMIT: u32 = 1 << 30;
const SLOT_TREE: u32 = 1 << 30;
const SLOT_ZSTD: u32 = 1 << 31;
/// Recent additions kept in a hash map before they are merged into the sorted table.
const MERGE_MIN: usize = 16_384;

/// One blob's location in 47 bytes, with no padding (every field is a byte array): the
/// id, the pack's position (24 bits), offset and stored length, and the plaintext length
/// (30 bits) with the blob type and compression in its top bits.
#[derive(Debug, Clone, Copy)]
struct Slot {
    id: [u8; 32],
    pack: [u8; 3],
    offset: [u8; 4],
    stored_len: [u8; 4],
    raw: [u8; 4],
}

impl Slot {
    /// `None` for the rare location that does not fit (kept in the hash map instead).
    fn new(pos: u32, e: &PackEntry) -> Option<Slot> {
        if pos >= SLOT_PACK_LIMIT || e.raw_len >= SLOT_RAW_LIMIT {
            return None;
        }
        let mut raw = e.raw_len;
        if e.blob_type == BlobType::Tree {
            raw |= SLOT_TREE;
        }
        if e.compression == Compression::Zstd {
            raw |= SLOT_ZSTD;
        }
        let p = pos.to_le_bytes();
        Some(Slot {
            id: e.id.0,
            pack: [p[0], p[1], p[2]],
            offset: e.offset.to_le_bytes(),
            stored_len: e.stored_len.to_le_bytes(),
            raw: raw.to_le_bytes(),
        })
    }

    fn pos(&self) -> u32 {
        u32::from_le_bytes([self.pack[0], self.pack[1], self.pack[2], 0])
    }

    fn entry(&self) -> PackEntry {
        let raw = u32::from_le_bytes(self.raw);
        PackEntry {
            id: Id(self.id),
            blob_type: if raw & SLOT_TREE == 0 {
                BlobType::Data
            } else {
                BlobType::Tree
            },
            compression: if raw & SLOT_ZSTD == 0 {
                Compression::None
            } else {
                Compression::Zstd
            },
            offset: u32::from_le_bytes(self.offset),
            stored_len: u32::from_le_bytes(self.stored_len),
            raw_len: raw & (SLOT_RAW_LIMIT - 1),
        }
    }
}

/// Builds a [`MasterIndex`] from whole index files (loading them all): every location is
/// collected, then sorted once, instead of being looked up and merged as it comes (which was
/// most of loading a million blobs' index). The first location of a blob wins, as with
/// [`MasterIndex::add_pack`].
#[derive(Debug, Default)]
pub struct IndexBuilder {
    index: MasterIndex,
    pending: Vec<Slot>,
}

impl IndexBuilder {
    /// Adds every pack and blob of an index file.
    pub fn add_file(&mut self, file: &IndexFile) {
        for p in &file.packs {
            self.add_pack(p.id, p.size, &p.blobs);
        }
    }

    /// Opens the sealed index file `id` and adds its packs and blobs as they are decoded,
    /// never holding the whole decoded file (loading a million blobs' index peaked at the
    /// sealed, compressed and plain bytes, the decoded file and the table at once). A file
    /// that fails to open or decode adds nothing.
    ///
    /// # Errors
    /// [`IndexError`] when it fails to authenticate or decode.
    pub fn add_sealed(
        &mut self,
        key: &MasterKey,
        id: &Id,
        sealed: Vec<u8>,
    ) -> Result<(), IndexError> {
        let p = open_plain(key, id, sealed)?;
        let mut blobs = 0usize;
        parse(&p, |_, _, b| blobs += b.len())?;
        self.pending.reserve_exact(blobs);
        parse(&p, |pid, size, b| self.add_pack(pid, size, b))?;
        Ok(())
    }

    fn add_pack(&mut self, id: Id, size: u64, blobs: &[PackEntry]) {
        let pos = self.index.pack_position(id, size);
        for e in blobs {
            match Slot::new(pos, e) {
                Some(slot) => self.pending.push(slot),
                None => {
                    self.index.recent.entry(e.id).or_insert((pos, *e));
                }
            }
        }
    }

    /// The index.
    #[must_use]
    pub fn finish(self) -> MasterIndex {
        let IndexBuilder { mut index, pending } = self;
        let mut sorted = pending;
        // Packs get their positions in the order they are first added: among the locations
        // of one blob, the lowest position is the first added.
        sorted.sort_unstable_by(|a, b| a.id.cmp(&b.id).then(a.pos().cmp(&b.pos())));
        sorted.dedup_by(|later, first| later.id == first.id);
        if !index.recent.is_empty() {
            sorted.retain(|s| !index.recent.contains_key(&Id(s.id)));
        }
        sorted.shrink_to_fit();
        index.sorted = sorted;
        index.recent.shrink_to_fit();
        index.rebuild_buckets();
        index
    }
}

/// All index files merged: blob id → location, and the packs that are indexed.
///
/// Compact, because a large repository's index must fit a small machine: the bulk lives in
/// a table of 47-byte [`Slot`]s sorted by id, found through a bucket table on the ids'
/// first bits (ids are uniformly distributed keyed hashes) and a short binary search.
/// Additions go to a hash map first and are merged into the table in batches;
/// [`MasterIndex::compact`] merges the rest (done after loading).
#[derive(Debug, Default, Clone)]
pub struct MasterIndex {
    packs: Vec<(Id, u64)>,
    pack_pos: HashMap<Id, u32>,
    /// Sorted by id, no id twice, none that is also in `recent`.
    sorted: Vec<Slot>,
    /// `buckets[b]` is the first position in `sorted` whose id starts with the
    /// `bucket_bits`-bit prefix `b`; one more entry at the end.
    buckets: Vec<u32>,
    bucket_bits: u32,
    /// Added since the last merge, and locations that do not fit a slot.
    recent: HashMap<Id, (u32, PackEntry)>,
}

fn id_prefix(id: &[u8; 32], bits: u32) -> usize {
    if bits == 0 {
        return 0;
    }
    (u32::from_be_bytes([id[0], id[1], id[2], id[3]]) >> (32 - bits)) as usize
}

impl MasterIndex {
    /// Adds every pack and blob of an index file (the first location of a blob wins).
    pub fn add_file(&mut self, file: &IndexFile) {
        for p in &file.packs {
            self.add_pack(p.id, p.size, &p.blobs);
        }
    }

    /// The position of a pack, added to the list of packs when new.
    fn pack_position(&mut self, id: Id, size: u64) -> u32 {
        *self.pack_pos.entry(id).or_insert_with(|| {
            self.packs.push((id, size));
            u32::try_from(self.packs.len() - 1).unwrap_or(u32::MAX)
        })
    }

    /// Adds one pack.
    pub fn add_pack(&mut self, id: Id, size: u64, blobs: &[PackEntry]) {
        let pos = self.pack_position(id, size);
        for e in blobs {
            if self.find_sorted(&e.id).is_none() {
                self.recent.entry(e.id).or_insert((pos, *e));
            }
        }
        if self.recent.len() >= MERGE_MIN.max(self.sorted.len() / 4) {
            self.merge();
        }
    }

    /// Merges every recent addition into the sorted table and frees spare capacity: call
    /// when no more additions are expected for a while (after loading the index files).
    pub fn compact(&mut self) {
        self.merge();
        self.recent.shrink_to_fit();
        self.sorted.shrink_to_fit();
    }

    fn merge(&mut self) {
        let mut new = Vec::with_capacity(self.recent.len());
        self.recent.retain(|_, (pos, e)| match Slot::new(*pos, e) {
            Some(slot) => {
                new.push(slot);
                false
            }
            None => true,
        });
        if new.is_empty() {
            return;
        }
        new.sort_unstable_by_key(|s| s.id);
        // Merge in place from the back: no second copy of the table.
        let old = self.sorted.len();
        self.sorted.reserve_exact(new.len());
        self.sorted.extend_from_slice(&new);
        let (mut i, mut j, mut k) = (old, new.len(), old + new.len());
        while j > 0 {
            k -= 1;
            if i > 0 && self.sorted[i - 1].id > new[j - 1].id {
                self.sorted[k] = self.sorted[i - 1];
                i -= 1;
            } else {
                self.sorted[k] = new[j - 1];
                j -= 1;
            }
        }
        self.rebuild_buckets();
    }

    fn rebuild_buckets(&mut self) {
        let n = self.sorted.len();
        // About four slots per bucket, at most 2^16 buckets (256 KiB).
        self.bucket_bits = if n < 64 {
            0
        } else {
            (usize::BITS - 1 - (n / 4).leading_zeros()).min(16)
        };
        let count = 1usize << self.bucket_bits;
        self.buckets.clear();
        self.buckets.reserve_exact(count + 1);
        let mut at = 0usize;
        for b in 0..count {
            while at < n && id_prefix(&self.sorted[at].id, self.bucket_bits) < b {
                at += 1;
            }
            self.buckets.push(u32::try_from(at).unwrap_or(u32::MAX));
        }
        self.buckets.push(u32::try_from(n).unwrap_or(u32::MAX));
    }

    fn find_sorted(&self, id: &Id) -> Option<&Slot> {
        if self.sorted.is_empty() {
            return None;
        }
        let b = id_prefix(&id.0, self.bucket_bits);
        let lo = *self.buckets.get(b)? as usize;
        let hi = *self.buckets.get(b + 1)? as usize;
        let bucket = self.sorted.get(lo..hi)?;
        bucket
            .binary_search_by(|s| s.id.cmp(&id.0))
            .ok()
            .and_then(|i| bucket.get(i))
    }

    fn lookup(&self, id: &Id) -> Option<(u32, PackEntry)> {
        if let Some(found) = self.recent.get(id) {
            return Some(*found);
        }
        self.find_sorted(id).map(|s| (s.pos(), s.entry()))
    }

    fn location(&self, pos: u32, entry: PackEntry) -> Option<BlobLocation> {
        self.packs
            .get(pos as usize)
            .map(|(pack, _)| BlobLocation { pack: *pack, entry })
    }

    /// Where a blob is.
    #[must_use]
    pub fn get(&self, id: &Id) -> Option<BlobLocation> {
        self.lookup(id)
            .and_then(|(pos, entry)| self.location(pos, entry))
    }

    /// True when the blob is indexed.
    #[must_use]
    pub fn contains(&self, id: &Id) -> bool {
        self.recent.contains_key(id) || self.find_sorted(id).is_some()
    }

    /// True when every blob is indexed.
    #[must_use]
    pub fn contains_all(&self, ids: &[Id]) -> bool {
        ids.iter().all(|id| self.contains(id))
    }

    /// Number of distinct blobs.
    #[must_use]
    pub fn blob_count(&self) -> usize {
        self.sorted.len() + self.recent.len()
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
        self.sorted
            .iter()
            .map(|s| (s.pos(), s.entry()))
            .chain(self.recent.values().copied())
            .filter_map(|(pos, e)| self.location(pos, e))
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

    fn random_entry(rng: &mut u64, offset: u32) -> PackEntry {
        let mut id = [0u8; 32];
        for b in &mut id {
            *rng ^= *rng << 13;
            *rng ^= *rng >> 7;
            *rng ^= *rng << 17;
            *b = (*rng >> 24) as u8;
        }
        PackEntry {
            id: Id(id),
            blob_type: if offset.is_multiple_of(3) {
                BlobType::Tree
            } else {
                BlobType::Data
            },
            compression: if offset.is_multiple_of(2) {
                Compression::Zstd
            } else {
                Compression::None
            },
            offset,
            stored_len: offset / 2 + 1,
            raw_len: offset.wrapping_mul(7) % (SLOT_RAW_LIMIT - 1),
        }
    }

    /// Tens of thousands of blobs (several merges of the sorted table), the first location
    /// of a blob winning, every one found with all its fields, absent ids not found,
    /// before and after compacting; a plaintext too long for a slot is kept too.
    #[test]
    fn compact_table_finds_every_blob_as_a_map_would() {
        let mut rng = 0x9E37_79B9_7F4A_7C15u64;
        let mut m = MasterIndex::default();
        let mut model: HashMap<Id, (Id, PackEntry)> = HashMap::new();
        for p in 0..120u32 {
            let pack = Id::random();
            let mut blobs: Vec<PackEntry> = (0..500)
                .map(|i| random_entry(&mut rng, p * 1000 + i))
                .collect();
            // Duplicates of earlier blobs: the first location must win.
            if p > 0 {
                let again: Vec<PackEntry> = model.values().take(20).map(|(_, e)| *e).collect();
                blobs.extend(again.into_iter().map(|mut e| {
                    e.offset = 7;
                    e
                }));
            }
            if p == 60 {
                let mut huge = random_entry(&mut rng, 3);
                huge.raw_len = SLOT_RAW_LIMIT + 5;
                blobs.push(huge);
            }
            for e in &blobs {
                model.entry(e.id).or_insert((pack, *e));
            }
            m.add_pack(pack, 1 << 24, &blobs);
        }
        let check = |m: &MasterIndex| {
            assert_eq!(m.blob_count(), model.len());
            for (id, (pack, e)) in &model {
                let loc = m.get(id).unwrap();
                assert_eq!((loc.pack, loc.entry), (*pack, *e));
            }
            let mut r = 42u64;
            for _ in 0..1000 {
                let e = random_entry(&mut r, 1);
                assert_eq!(m.contains(&e.id), model.contains_key(&e.id));
            }
            let listed: std::collections::HashSet<Id> = m.iter().map(|l| l.entry.id).collect();
            assert_eq!(listed.len(), model.len());
        };
        assert!(m.sorted.len() > MERGE_MIN, "merged at least once");
        check(&m);
        m.compact();
        assert_eq!(
            m.recent.len(),
            1,
            "only the over-long blob stays in the map"
        );
        check(&m);
        assert!(m.sorted.windows(2).all(|w| w[0].id < w[1].id));
        assert_eq!(std::mem::size_of::<Slot>(), 47);
    }

    /// Index files loaded at once give the index that adding their packs one by one gives:
    /// every blob at its first location, the over-long one too, absent ids absent.
    #[test]
    fn an_index_built_from_whole_files_is_the_one_built_pack_by_pack() {
        let mut rng = 0x2545_F491_4F6C_DD1Du64;
        let mut files = Vec::new();
        let mut earlier: Vec<PackEntry> = Vec::new();
        for f in 0..6u32 {
            let mut file = IndexFile::default();
            for p in 0..8u32 {
                let mut blobs: Vec<PackEntry> = (0..700)
                    .map(|i| random_entry(&mut rng, (f * 8 + p) * 1000 + i))
                    .collect();
                // Blobs of earlier packs again, elsewhere: the first location must win.
                blobs.extend(
                    earlier
                        .iter()
                        .rev()
                        .take(30)
                        .map(|e| PackEntry { offset: 9, ..*e }),
                );
                if f == 3 && p == 2 {
                    let mut huge = random_entry(&mut rng, 5);
                    huge.raw_len = SLOT_RAW_LIMIT + 1;
                    blobs.push(huge);
                }
                earlier.extend(blobs.iter().take(700).copied());
                file.packs.push(IndexPack {
                    id: Id::random(),
                    size: 1 << 24,
                    blobs,
                });
            }
            // The same pack in two files (as after an interrupted prune).
            if f == 4 {
                let again = files
                    .first()
                    .map(|f: &IndexFile| f.packs[0].clone())
                    .unwrap();
                file.packs.push(again);
            }
            files.push(file);
        }
        let mut one_by_one = MasterIndex::default();
        let mut builder = IndexBuilder::default();
        for f in &files {
            one_by_one.add_file(f);
            builder.add_file(f);
        }
        one_by_one.compact();
        let built = builder.finish();
        assert_eq!(built.blob_count(), one_by_one.blob_count());
        assert!(built.blob_count() > 6 * 8 * 700 - 1);
        for l in one_by_one.iter() {
            assert_eq!(built.get(&l.entry.id), Some(l), "{:?}", l.entry.id);
        }
        let mut r = 7u64;
        for _ in 0..1000 {
            let e = random_entry(&mut r, 1);
            assert_eq!(built.contains(&e.id), one_by_one.contains(&e.id));
        }
        assert_eq!(built.recent.len(), 1, "only the over-long blob in the map");
        assert!(built.sorted.windows(2).all(|w| w[0].id < w[1].id));
        assert_eq!(built.packs, one_by_one.packs);
    }
}
