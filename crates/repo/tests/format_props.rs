//! Property tests for the on-disk formats: every encoder's output decodes to the same value,
//! and decoders reject arbitrary bytes without panicking.

use proptest::prelude::*;
use strongroom_repo::compress::{self, Compression};
use strongroom_repo::crypto::MasterKey;
use strongroom_repo::id::Id;
use strongroom_repo::index::{IndexFile, IndexPack};
use strongroom_repo::pack::{BlobType, PackBuilder, PackEntry, read_header};
use strongroom_repo::tree::{Node, NodeKind, Tree};

fn arb_id() -> impl Strategy<Value = Id> {
    any::<[u8; 32]>().prop_map(Id)
}

fn arb_entry() -> impl Strategy<Value = PackEntry> {
    (
        arb_id(),
        any::<bool>(),
        any::<bool>(),
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
    )
        .prop_map(|(id, tree, z, offset, stored_len, raw_len)| PackEntry {
            id,
            blob_type: if tree { BlobType::Tree } else { BlobType::Data },
            compression: if z {
                Compression::Zstd
            } else {
                Compression::None
            },
            offset,
            stored_len,
            raw_len,
        })
}

fn arb_name() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 1..40).prop_filter("safe name", |n| {
        n.as_slice() != b"." && n.as_slice() != b".." && !n.contains(&b'/') && !n.contains(&0)
    })
}

fn arb_node() -> impl Strategy<Value = Node> {
    (
        arb_name(),
        0u8..3,
        any::<u32>(),
        any::<i64>(),
        any::<u64>(),
        proptest::collection::vec(arb_id(), 0..4),
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..30)),
    )
        .prop_map(|(name, k, mode, t, size, content, target)| {
            let kind = [NodeKind::File, NodeKind::Dir, NodeKind::Symlink][k as usize];
            Node {
                name,
                kind,
                mode: mode & 0o7777,
                uid: mode,
                gid: mode / 3,
                mtime_ns: t,
                ctime_ns: t / 2,
                inode: size / 7,
                size,
                // A file holds its blob ids inline or as content lists, never both.
                content: if kind == NodeKind::File && size % 2 == 0 {
                    content.clone()
                } else {
                    vec![]
                },
                content_lists: if kind == NodeKind::File && size % 2 == 1 {
                    content
                } else {
                    vec![]
                },
                subtree: if kind == NodeKind::Dir {
                    Some(Id([1; 32]))
                } else {
                    None
                },
                target: if kind == NodeKind::Symlink {
                    target
                } else {
                    None
                },
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn index_files_round_trip(
        supersedes in proptest::collection::vec(arb_id(), 0..3),
        packs in proptest::collection::vec((arb_id(), any::<u64>(), proptest::collection::vec(arb_entry(), 0..20)), 0..8),
    ) {
        let key = MasterKey::generate();
        let file = IndexFile {
            supersedes,
            packs: packs.into_iter().map(|(id, size, blobs)| IndexPack { id, size, blobs }).collect(),
        };
        let id = Id::random();
        let sealed = file.seal(&key, &id);
        prop_assert_eq!(IndexFile::open(&key, &id, &sealed).unwrap(), file);
    }

    #[test]
    fn trees_round_trip(nodes in proptest::collection::vec(arb_node(), 0..20)) {
        let mut tree = Tree { nodes };
        tree.sort();
        tree.nodes.dedup_by(|a, b| a.name == b.name);
        let bytes = tree.to_bytes().unwrap();
        prop_assert_eq!(Tree::from_bytes(&bytes).unwrap(), tree);
    }

    #[test]
    fn packs_round_trip(blobs in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..3000), 0..12)) {
        let key = MasterKey::generate();
        let mut b = PackBuilder::default();
        for blob in &blobs {
            let id = key.blob_id(blob);
            let (c, stored) = compress::compress(blob);
            let sealed = key.seal(BlobType::Data.object_type(), &id, &stored);
            b.add(id, BlobType::Data, c, blob.len() as u32, &sealed);
        }
        let (_, bytes, entries) = b.finish(&key);
        let read = read_header(&key, &bytes).unwrap();
        prop_assert_eq!(&read, &entries);
        for (e, blob) in read.iter().zip(&blobs) {
            let s = &bytes[e.offset as usize..(e.offset + e.stored_len) as usize];
            let raw = strongroom_repo::repository::decode_blob(&key, &Id::default(), e, s).unwrap();
            prop_assert_eq!(&raw, blob);
        }
    }

    #[test]
    fn compression_round_trips(data in proptest::collection::vec(any::<u8>(), 0..20_000), repeat in 1usize..8) {
        let data = data.repeat(repeat);
        let (c, stored) = compress::compress(&data);
        prop_assert_eq!(compress::decompress(c, stored, data.len()).unwrap(), data);
    }

    #[test]
    fn decoders_reject_garbage_without_panicking(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let key = MasterKey::generate();
        prop_assert!(IndexFile::open(&key, &Id::default(), &bytes).is_err());
        prop_assert!(read_header(&key, &bytes).is_err());
        let _ = Tree::from_bytes(&bytes);
        let _ = strongroom_repo::crypto::KeyFile::parse(&bytes);
        prop_assert!(strongroom_repo::MasterKeyFile::parse(&bytes).is_err());
    }
}
