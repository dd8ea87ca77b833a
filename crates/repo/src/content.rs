//! Content lists: how the data blobs of a large file or stream are recorded.
//!
//! Up to [`INLINE_MAX`] blob ids stay inline in the file's tree node (`content`). Longer
//! lists are cut into list blobs (`content_lists`), each holding a run of ids; a run ends after
//! an id whose first byte has its low six bits zero (about 64 ids per list, at most
//! [`LIST_MAX`]). The cut depends only on the ids themselves, so a backup that changes a few
//! chunks of a large dump stores again only the lists around them, not the whole list of a
//! file with tens of thousands of chunks. Pure encoding and the cut rule; reading lists is
//! [`crate::repository::Repository::file_content`].

use crate::id::Id;

/// The most blob ids a tree node holds inline.
pub const INLINE_MAX: usize = 64;
/// The most ids in one list blob.
pub const LIST_MAX: usize = 1024;
/// A list ends after an id whose first byte has these bits zero.
const CUT_MASK: u8 = 63;
const MAGIC: &[u8; 4] = b"SRCL";
const VERSION: u8 = 1;
const HEADER: usize = MAGIC.len() + 1;

/// Whether a file's blob ids are stored as list blobs rather than inline.
#[must_use]
pub fn needs_lists(ids: &[Id]) -> bool {
    ids.len() > INLINE_MAX
}

/// Cuts `ids` into the runs stored as list blobs, in order; none when `ids` is empty.
#[must_use]
pub fn split(ids: &[Id]) -> Vec<&[Id]> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, id) in ids.iter().enumerate() {
        if id.0[0] & CUT_MASK == 0 || i + 1 - start == LIST_MAX {
            out.push(&ids[start..=i]);
            start = i + 1;
        }
    }
    if start < ids.len() {
        out.push(&ids[start..]);
    }
    out
}

/// The plaintext of a list blob: `"SRCL"`, version 1, then the ids (32 bytes each).
#[must_use]
pub fn encode(ids: &[Id]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + ids.len() * 32);
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    for id in ids {
        out.extend_from_slice(&id.0);
    }
    out
}

/// Decodes a list blob's plaintext.
///
/// # Errors
/// A message saying what is wrong: another magic or version, a partial id, no ids, or more
/// than [`LIST_MAX`].
pub fn decode(bytes: &[u8]) -> Result<Vec<Id>, String> {
    let Some(body) = bytes.strip_prefix(MAGIC.as_slice()) else {
        return Err("not a content list (no SRCL magic)".into());
    };
    match body.split_first() {
        Some((&VERSION, ids)) => {
            if ids.is_empty() || ids.len() % 32 != 0 || ids.len() / 32 > LIST_MAX {
                return Err(format!(
                    "content list of {} bytes: not 1 to {LIST_MAX} ids of 32 bytes",
                    ids.len()
                ));
            }
            Ok(ids
                .chunks_exact(32)
                .map(|c| {
                    let mut id = [0u8; 32];
                    id.copy_from_slice(c);
                    Id(id)
                })
                .collect())
        }
        Some((v, _)) => Err(format!("content list version {v} is not supported")),
        None => Err("content list without a version".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize, seed: u64) -> Vec<Id> {
        (0..n as u64)
            .map(|i| {
                let mut h = blake3::Hasher::new();
                h.update(&seed.to_le_bytes());
                h.update(&i.to_le_bytes());
                Id(*h.finalize().as_bytes())
            })
            .collect()
    }

    #[test]
    fn lists_round_trip_and_concatenate_to_the_ids() {
        for n in [1, 64, 65, 1000, 20_000] {
            let all = ids(n, 1);
            let parts = split(&all);
            assert_eq!(parts.concat(), all);
            for p in &parts {
                assert!(!p.is_empty() && p.len() <= LIST_MAX);
                assert_eq!(decode(&encode(p)).unwrap(), p.to_vec());
            }
            if n >= 20_000 {
                let mean = n / parts.len();
                assert!((32..=128).contains(&mean), "mean list {mean} ids");
            }
        }
        assert!(split(&[]).is_empty());
        assert!(!needs_lists(&ids(INLINE_MAX, 2)) && needs_lists(&ids(INLINE_MAX + 1, 2)));
    }

    #[test]
    fn a_changed_id_changes_only_the_lists_around_it() {
        let before = ids(20_000, 3);
        let mut after = before.clone();
        after[10_000] = ids(1, 99)[0];
        let old: std::collections::HashSet<Vec<u8>> =
            split(&before).iter().map(|p| encode(p)).collect();
        let new = split(&after)
            .iter()
            .filter(|p| !old.contains(&encode(p)))
            .count();
        assert!((1..=2).contains(&new), "{new} lists changed");
    }

    #[test]
    fn damaged_lists_are_refused() {
        let good = encode(&ids(3, 4));
        assert!(
            decode(&good[..good.len() - 1])
                .unwrap_err()
                .contains("32 bytes")
        );
        assert!(decode(&good[..HEADER]).unwrap_err().contains("32 bytes"));
        assert!(decode(b"SRCL").unwrap_err().contains("version"));
        let mut v2 = good.clone();
        v2[4] = 2;
        assert!(decode(&v2).unwrap_err().contains("version 2"));
        assert!(decode(b"XXXX\x01").unwrap_err().contains("magic"));
        let too_many = encode(&ids(LIST_MAX + 1, 5));
        assert!(decode(&too_many).is_err());
    }
}
