//! Pack files: many sealed blobs followed by a sealed header that lists them.
//!
//! Layout (all integers little-endian):
//! ```text
//! blob₀ ‖ blob₁ ‖ … ‖ blobₙ₋₁ ‖ sealed header ‖ header_len: u32 ‖ "SRP1"
//! ```
//! Each blob is `nonce ‖ AES-256-GCM(stored bytes) ‖ tag`, sealed with its type and id as
//! associated data. The header plaintext is `version: u8 (1) ‖ count: u32 ‖ count × entry`,
//! entry = `type: u8 ‖ compression: u8 ‖ stored_len: u32 ‖ raw_len: u32 ‖ id: [u8; 32]`
//! (42 bytes); blob offsets are the running sum of `stored_len`. A pack's name is the
//! BLAKE3 hash of all its bytes, so a pack that was changed or put under another name is
//! detected without the key.
//!
//! Pure encoding and decoding; no I/O.

use crate::compress::Compression;
use crate::crypto::{MasterKey, ObjectType};
use crate::id::Id;

/// Magic bytes at the end of every pack.
pub const PACK_MAGIC: &[u8; 4] = b"SRP1";
/// Bytes of one header entry.
pub const ENTRY_LEN: usize = 42;
/// Bytes after the sealed header.
pub const TRAILER_LEN: usize = 8;

/// The kind of a blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum BlobType {
    /// File or stream content.
    Data = 1,
    /// A directory listing (tree).
    Tree = 2,
}

impl BlobType {
    /// From its byte value.
    #[must_use]
    pub fn from_u8(b: u8) -> Option<BlobType> {
        match b {
            1 => Some(BlobType::Data),
            2 => Some(BlobType::Tree),
            _ => None,
        }
    }

    /// The object type bound into the blob's encryption.
    #[must_use]
    pub fn object_type(self) -> ObjectType {
        match self {
            BlobType::Data => ObjectType::DataBlob,
            BlobType::Tree => ObjectType::TreeBlob,
        }
    }
}

/// One blob inside a pack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackEntry {
    /// Blob id (keyed hash of its plaintext).
    pub id: Id,
    /// Data or tree.
    pub blob_type: BlobType,
    /// How the stored bytes are compressed.
    pub compression: Compression,
    /// Offset of the sealed blob within the pack.
    pub offset: u32,
    /// Length of the sealed blob (nonce, ciphertext, tag).
    pub stored_len: u32,
    /// Length of the plaintext after decompression.
    pub raw_len: u32,
}

/// Errors decoding a pack.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PackError {
    /// Structure is wrong.
    #[error("pack is damaged: {0}")]
    Damaged(String),
    /// The header failed to authenticate.
    #[error("pack header failed to authenticate: the pack was modified")]
    HeaderAuthentication,
}

/// Builds one pack: in memory ([`PackBuilder::add`]), or only its header while the blobs'
/// bytes go straight to storage ([`PackBuilder::add_entry`], [`PackBuilder::trailer`]).
#[derive(Debug, Default)]
pub struct PackBuilder {
    data: Vec<u8>,
    /// Bytes of blobs so far, in `data` or written elsewhere.
    len: usize,
    entries: Vec<PackEntry>,
}

impl PackBuilder {
    /// An empty pack with room for `capacity` bytes.
    #[must_use]
    pub fn with_capacity(capacity: usize) -> PackBuilder {
        PackBuilder {
            data: Vec::with_capacity(capacity),
            len: 0,
            entries: Vec::new(),
        }
    }

    /// Reserves room for `additional` more bytes.
    pub fn reserve(&mut self, additional: usize) {
        self.data.reserve(additional);
    }

    /// Bytes of blobs so far.
    #[must_use]
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when no blob was added.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Number of blobs.
    #[must_use]
    pub fn count(&self) -> usize {
        self.entries.len()
    }

    /// Appends a sealed blob.
    pub fn add(
        &mut self,
        id: Id,
        blob_type: BlobType,
        compression: Compression,
        raw_len: u32,
        sealed: &[u8],
    ) {
        self.add_entry(id, blob_type, compression, raw_len, sealed.len());
        self.data.extend_from_slice(sealed);
    }

    /// Records a sealed blob of `stored_len` bytes whose bytes the caller writes itself,
    /// after those of the blobs before it: the pack's bytes are then these blobs in order,
    /// then [`PackBuilder::trailer`]. Not to be mixed with [`PackBuilder::add`].
    pub fn add_entry(
        &mut self,
        id: Id,
        blob_type: BlobType,
        compression: Compression,
        raw_len: u32,
        stored_len: usize,
    ) {
        self.entries.push(PackEntry {
            id,
            blob_type,
            compression,
            offset: u32::try_from(self.len).unwrap_or(u32::MAX),
            stored_len: u32::try_from(stored_len).unwrap_or(u32::MAX),
            raw_len,
        });
        self.len += stored_len;
    }

    /// What follows the blobs: the sealed header, its length and the magic.
    #[must_use]
    pub fn trailer(&self, key: &MasterKey) -> Vec<u8> {
        let header = encode_header(&self.entries);
        let sealed = key.seal(ObjectType::PackHeader, &Id::default(), &header);
        let mut trailer = Vec::with_capacity(sealed.len() + 4 + PACK_MAGIC.len());
        trailer.extend_from_slice(&sealed);
        trailer.extend_from_slice(
            &u32::try_from(sealed.len())
                .unwrap_or(u32::MAX)
                .to_le_bytes(),
        );
        trailer.extend_from_slice(PACK_MAGIC);
        trailer
    }

    /// The entries recorded so far.
    #[must_use]
    pub fn into_entries(self) -> Vec<PackEntry> {
        self.entries
    }

    /// Seals the header and returns the pack's id, its bytes and its entries.
    #[must_use]
    pub fn finish(mut self, key: &MasterKey) -> (Id, Vec<u8>, Vec<PackEntry>) {
        let trailer = self.trailer(key);
        // Exact: a doubling Vec would touch up to twice the pack's size.
        self.data.reserve_exact(trailer.len());
        self.data.extend_from_slice(&trailer);
        let id = pack_id(&self.data);
        (id, self.data, self.entries)
    }
}

/// The id (name) of a pack: the unkeyed BLAKE3 hash of its bytes.
#[must_use]
pub fn pack_id(bytes: &[u8]) -> Id {
    let mut h = PackIdHasher::default();
    h.update(bytes);
    h.finish()
}

/// [`pack_id`] of bytes that come in pieces (a pack written as it fills).
#[derive(Default)]
pub struct PackIdHasher(blake3::Hasher);

impl PackIdHasher {
    /// Adds the next bytes of the pack.
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    /// The id of the bytes added.
    #[must_use]
    pub fn finish(&self) -> Id {
        Id(*self.0.finalize().as_bytes())
    }
}

fn encode_header(entries: &[PackEntry]) -> Vec<u8> {
    let mut h = Vec::with_capacity(5 + entries.len() * ENTRY_LEN);
    h.push(1u8);
    h.extend_from_slice(
        &u32::try_from(entries.len())
            .unwrap_or(u32::MAX)
            .to_le_bytes(),
    );
    for e in entries {
        h.push(e.blob_type as u8);
        h.push(e.compression as u8);
        h.extend_from_slice(&e.stored_len.to_le_bytes());
        h.extend_from_slice(&e.raw_len.to_le_bytes());
        h.extend_from_slice(&e.id.0);
    }
    h
}

fn le_u32(b: &[u8], at: usize) -> Result<u32, PackError> {
    b.get(at..at + 4)
        .and_then(|s| <[u8; 4]>::try_from(s).ok())
        .map(u32::from_le_bytes)
        .ok_or_else(|| PackError::Damaged("truncated".into()))
}

/// Reads the entries of a whole pack from its header, checking that they tile the pack.
///
/// # Errors
/// [`PackError`] when the trailer, header or layout is wrong.
pub fn read_header(key: &MasterKey, pack: &[u8]) -> Result<Vec<PackEntry>, PackError> {
    if pack.len() < TRAILER_LEN || &pack[pack.len() - 4..] != PACK_MAGIC {
        return Err(PackError::Damaged("missing pack trailer".into()));
    }
    let hlen = le_u32(pack, pack.len() - TRAILER_LEN)? as usize;
    let hstart = pack
        .len()
        .checked_sub(TRAILER_LEN + hlen)
        .ok_or_else(|| PackError::Damaged("header length exceeds pack".into()))?;
    let header = key
        .open(
            ObjectType::PackHeader,
            &Id::default(),
            &pack[hstart..pack.len() - TRAILER_LEN],
        )
        .map_err(|_| PackError::HeaderAuthentication)?;
    let entries = decode_header(&header)?;
    let blobs_end: u64 = entries.iter().map(|e| u64::from(e.stored_len)).sum();
    if blobs_end != hstart as u64 {
        return Err(PackError::Damaged(format!(
            "header lists {blobs_end} bytes of blobs but the pack has {hstart}"
        )));
    }
    Ok(entries)
}

fn decode_header(h: &[u8]) -> Result<Vec<PackEntry>, PackError> {
    if h.first() != Some(&1) {
        return Err(PackError::Damaged("unknown pack header version".into()));
    }
    let count = le_u32(h, 1)? as usize;
    if h.len() != 5 + count * ENTRY_LEN {
        return Err(PackError::Damaged(
            "header length does not match its count".into(),
        ));
    }
    let mut entries = Vec::with_capacity(count);
    let mut offset: u64 = 0;
    for i in 0..count {
        let e = &h[5 + i * ENTRY_LEN..5 + (i + 1) * ENTRY_LEN];
        let blob_type = BlobType::from_u8(e[0])
            .ok_or_else(|| PackError::Damaged("unknown blob type".into()))?;
        let compression = Compression::from_u8(e[1])
            .ok_or_else(|| PackError::Damaged("unknown compression".into()))?;
        let stored_len = le_u32(e, 2)?;
        let raw_len = le_u32(e, 6)?;
        let mut id = [0u8; 32];
        id.copy_from_slice(&e[10..42]);
        entries.push(PackEntry {
            id: Id(id),
            blob_type,
            compression,
            offset: u32::try_from(offset)
                .map_err(|_| PackError::Damaged("pack too large".into()))?,
            stored_len,
            raw_len,
        });
        offset += u64::from(stored_len);
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_and_read_back() {
        let key = MasterKey::generate();
        let mut b = PackBuilder::default();
        let blobs: Vec<Vec<u8>> = vec![b"one".to_vec(), vec![0u8; 1000], b"three".to_vec()];
        for (i, blob) in blobs.iter().enumerate() {
            let id = key.blob_id(blob);
            let t = if i == 1 {
                BlobType::Tree
            } else {
                BlobType::Data
            };
            let sealed = key.seal(t.object_type(), &id, blob);
            b.add(id, t, Compression::None, blob.len() as u32, &sealed);
        }
        let (id, bytes, entries) = b.finish(&key);
        assert_eq!(id, pack_id(&bytes));
        let read = read_header(&key, &bytes).unwrap();
        assert_eq!(read, entries);
        for (e, blob) in read.iter().zip(&blobs) {
            let s = &bytes[e.offset as usize..(e.offset + e.stored_len) as usize];
            assert_eq!(
                &key.open(e.blob_type.object_type(), &e.id, s).unwrap(),
                blob
            );
        }
        // Truncation and a flipped header bit are refused.
        assert!(read_header(&key, &bytes[..bytes.len() - 1]).is_err());
        let mut f = bytes.clone();
        let n = f.len();
        f[n - 20] ^= 1;
        assert!(read_header(&key, &f).is_err());
    }
}
