//! The storage conformance suite: the same checks against every backend (local directory,
//! S3-compatible bucket, memory, fault wrapper without faults, crash store without a crash),
//! then tests specific to the local directory, the S3 store, the fault wrapper and the crash
//! store.
//!
//! The S3 backend runs against the server named by `STRONGROOM_TEST_S3_ENDPOINT`
//! (`scripts/test` starts one and sets it); without it those tests say so and skip.

// This whole file is test code; `allow-unwrap-in-tests` does not reach helper functions
// outside `#[test]` functions in an integration-test crate.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use strongroom_storage::crash::CrashStorage;
use strongroom_storage::faulty::{Fault, FaultyStorage, Op, Rule};
use strongroom_storage::local::LocalStorage;
use strongroom_storage::memory::MemoryStorage;
use strongroom_storage::s3::{Credentials, S3Settings, S3Storage};
use strongroom_storage::{Kind, ObjectInfo, Storage, StorageError};

// ---------------------------------------------------------------------------------------------
// Fixtures and helpers

/// A backend under test, plus whatever must live as long as it (the temp dir).
struct Fixture {
    storage: Arc<dyn Storage>,
    _dir: Option<tempfile::TempDir>,
}

fn local() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    // A root that does not exist yet: `create` must make it.
    let storage = LocalStorage::new(dir.path().join("repo"));
    Fixture {
        storage: Arc::new(storage),
        _dir: Some(dir),
    }
}

fn memory() -> Fixture {
    Fixture {
        storage: Arc::new(MemoryStorage::new()),
        _dir: None,
    }
}

fn faulty() -> Fixture {
    Fixture {
        storage: Arc::new(FaultyStorage::new(MemoryStorage::new(), 42)),
        _dir: None,
    }
}

/// The bucket every S3 test shares; each test has its own prefix in it.
const S3_BUCKET: &str = "strongroom-conformance";

/// S3 settings for a fresh prefix, or `None` (said on stderr) without a test server.
fn s3_settings() -> Option<S3Settings> {
    let Some(endpoint) = std::env::var("STRONGROOM_TEST_S3_ENDPOINT")
        .ok()
        .filter(|e| !e.is_empty())
    else {
        eprintln!(
            "skipped: STRONGROOM_TEST_S3_ENDPOINT is not set (scripts/test starts an S3 server \
             and sets it)"
        );
        return None;
    };
    let mut id = [0u8; 8];
    getrandom::fill(&mut id).unwrap();
    Some(S3Settings {
        endpoint: endpoint.parse().unwrap(),
        region: "us-east-1".into(),
        bucket: S3_BUCKET.into(),
        prefix: format!("conformance/{}", hex::encode(id)),
        path_style: true,
        credentials: Credentials {
            access_key_id: "strongroom-test".into(),
            secret_access_key: "strongroom-test-secret".into(),
            session_token: None,
        },
    })
}

fn s3() -> Option<Fixture> {
    Some(Fixture {
        storage: Arc::new(S3Storage::new(s3_settings()?).unwrap()),
        _dir: None,
    })
}

fn crash() -> Fixture {
    Fixture {
        storage: Arc::new(CrashStorage::new()),
        _dir: None,
    }
}

/// Deterministic pseudo-random bytes.
fn data(len: usize, seed: u64) -> Bytes {
    let mut x = seed
        .wrapping_mul(6_364_136_223_846_793_005)
        .wrapping_add(1_442_695_040_888_963_407);
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let word = x.to_le_bytes();
        let take = (len - out.len()).min(8);
        out.extend_from_slice(&word[..take]);
    }
    Bytes::from(out)
}

/// A 64-hex-digit pack-like name whose first two characters vary with `i`.
fn pack_name(i: u64) -> String {
    let h = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (i << 7);
    format!(
        "{:02x}{:062x}",
        h >> 56,
        u128::from(h) * 0x1_0000_0001 + u128::from(i)
    )
}

async fn created(f: &Fixture) -> &dyn Storage {
    f.storage.create().await.unwrap();
    f.storage.as_ref()
}

fn infos(list: &[(&str, u64)]) -> Vec<ObjectInfo> {
    list.iter()
        .map(|(n, s)| ObjectInfo {
            name: (*n).to_owned(),
            size: *s,
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The conformance checks

async fn check_create_on_empty_location(f: Fixture) {
    let s = f.storage.as_ref();
    assert!(!s.location().is_empty());
    s.create().await.unwrap();
    for kind in Kind::ALL {
        assert_eq!(s.list(kind).await.unwrap(), vec![], "{kind:?}");
    }
}

async fn check_create_fails_over_existing_config(f: Fixture) {
    let s = f.storage.as_ref();
    s.create().await.unwrap();
    // Until a config exists, create may be repeated (an interrupted init can be retried).
    s.create().await.unwrap();
    s.write(Kind::Config, "config", Bytes::from_static(b"cfg"))
        .await
        .unwrap();
    let err = s.create().await.unwrap_err();
    assert!(
        matches!(&err, StorageError::AlreadyExists { kind: Kind::Config, name } if name == "config"),
        "{err:?}"
    );
    let err = s.create().await.unwrap_err();
    assert!(matches!(err, StorageError::AlreadyExists { .. }), "{err:?}");
    assert_eq!(
        s.read(Kind::Config, "config").await.unwrap(),
        Bytes::from_static(b"cfg")
    );
}

async fn check_round_trip_every_kind(f: Fixture) {
    let s = created(&f).await;
    // Over 1 MiB and not a whole number of 4 KiB blocks: the local store writes it directly,
    // its tail through the page cache.
    let big = data(5 * 1024 * 1024 + 777, 5);
    for (i, kind) in Kind::ALL.into_iter().enumerate() {
        let prefix = format!("{kind:?}").to_lowercase();
        let objects = [
            (format!("{prefix}-empty"), Bytes::new()),
            (format!("{prefix}-small"), data(1000 + i, i as u64)),
            (format!("{prefix}-big"), big.clone()),
        ];
        for (name, bytes) in &objects {
            s.write(kind, name, bytes.clone()).await.unwrap();
        }
        for (name, bytes) in &objects {
            let got = s.read(kind, name).await.unwrap();
            assert_eq!(got.len(), bytes.len(), "{kind:?} {name}");
            assert!(got == *bytes, "{kind:?} {name} differs");
        }
        let mut expected: Vec<ObjectInfo> = objects
            .iter()
            .map(|(n, b)| ObjectInfo {
                name: n.clone(),
                size: b.len() as u64,
            })
            .collect();
        expected.sort_by(|a, b| a.name.cmp(&b.name));
        assert_eq!(s.list(kind).await.unwrap(), expected, "{kind:?}");
    }
}

async fn check_write_once(f: Fixture) {
    let s = created(&f).await;
    for kind in Kind::ALL {
        s.write(kind, "once", Bytes::from_static(b"first"))
            .await
            .unwrap();
        let err = s
            .write(kind, "once", Bytes::from_static(b"second!"))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, StorageError::AlreadyExists { kind: k, name } if *k == kind && name == "once"),
            "{err:?}"
        );
        assert_eq!(
            s.read(kind, "once").await.unwrap(),
            Bytes::from_static(b"first")
        );
        assert_eq!(s.list(kind).await.unwrap(), infos(&[("once", 5)]));
    }
}

async fn check_racing_writers_one_wins(f: Fixture) {
    let s = f.storage.clone();
    s.create().await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..10u64 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            (i, s.write(Kind::Snapshot, "contested", data(4096, i)).await)
        }));
    }
    let mut winners = Vec::new();
    for task in tasks {
        let (i, result) = task.await.unwrap();
        match result {
            Ok(()) => winners.push(i),
            Err(StorageError::AlreadyExists { .. }) => {}
            Err(e) => panic!("unexpected error {e:?}"),
        }
    }
    assert_eq!(winners.len(), 1, "{winners:?}");
    assert_eq!(
        s.read(Kind::Snapshot, "contested").await.unwrap(),
        data(4096, winners[0])
    );
}

async fn check_read_missing_is_not_found(f: Fixture) {
    let s = created(&f).await;
    for kind in Kind::ALL {
        let err = s.read(kind, "missing").await.unwrap_err();
        assert!(err.is_not_found(), "{err:?}");
        assert!(
            matches!(&err, StorageError::NotFound { kind: k, name } if *k == kind && name == "missing")
        );
        let err = s.read_range(kind, "missing", 0, 1).await.unwrap_err();
        assert!(err.is_not_found(), "{err:?}");
    }
    // Present in one kind does not make it present in another.
    s.write(Kind::Index, "only-index", Bytes::from_static(b"x"))
        .await
        .unwrap();
    assert!(
        s.read(Kind::Snapshot, "only-index")
            .await
            .unwrap_err()
            .is_not_found()
    );
}

async fn check_read_many(f: Fixture) {
    let s = created(&f).await;
    let mut names = Vec::new();
    for i in 0..40u64 {
        let name = format!("snap{i:02}");
        s.write(Kind::Snapshot, &name, data(100 + i as usize, i))
            .await
            .unwrap();
        names.push(name);
    }
    // In the order asked, with a missing name and an invalid one among them: each fails on
    // its own, in its place.
    names.reverse();
    names.insert(5, "missing".into());
    names.insert(9, "../escape".into());
    let got = s.read_many(Kind::Snapshot, &names).await;
    assert_eq!(got.len(), names.len());
    for (name, r) in names.iter().zip(&got) {
        match name.as_str() {
            "missing" => assert!(r.as_ref().unwrap_err().is_not_found(), "{r:?}"),
            "../escape" => assert!(matches!(r, Err(StorageError::InvalidName(_))), "{r:?}"),
            n => {
                let i: u64 = n.trim_start_matches("snap").parse().unwrap();
                assert_eq!(r.as_ref().unwrap(), &data(100 + i as usize, i), "{n}");
            }
        }
    }
    assert!(s.read_many(Kind::Snapshot, &[]).await.is_empty());
    // Another kind does not see them.
    let other = s.read_many(Kind::Index, &names[..1]).await;
    assert!(other[0].as_ref().unwrap_err().is_not_found());
}

/// `read_into` returns exactly the object whatever the buffer held before (longer, shorter,
/// or with room to spare), and fails like `read` for a missing or invalid name.
async fn check_read_into(f: Fixture) {
    let s = created(&f).await;
    let big = data(300_000, 7);
    let small = data(1_000, 8);
    s.write(Kind::Pack, &pack_name(1), big.clone())
        .await
        .unwrap();
    s.write(Kind::Pack, &pack_name(2), small.clone())
        .await
        .unwrap();
    let buf = s
        .read_into(Kind::Pack, &pack_name(1), vec![0xAA; 5])
        .await
        .unwrap();
    assert_eq!(buf, big);
    // The same buffer again, for a shorter object: nothing of the longer one is left.
    let buf = s.read_into(Kind::Pack, &pack_name(2), buf).await.unwrap();
    assert_eq!(buf, small);
    let buf = s.read_into(Kind::Pack, &pack_name(1), buf).await.unwrap();
    assert_eq!(buf, big);
    let e = s
        .read_into(Kind::Pack, &pack_name(3), Vec::new())
        .await
        .unwrap_err();
    assert!(e.is_not_found(), "{e:?}");
    let e = s
        .read_into(Kind::Pack, "../escape", Vec::new())
        .await
        .unwrap_err();
    assert!(matches!(e, StorageError::InvalidName(_)), "{e:?}");
}

async fn check_read_range(f: Fixture) {
    let s = created(&f).await;
    let obj = data(100, 9);
    s.write(Kind::Pack, "ab0123", obj.clone()).await.unwrap();
    let rr = |o, l| s.read_range(Kind::Pack, "ab0123", o, l);
    assert_eq!(rr(10, 20).await.unwrap(), obj.slice(10..30));
    assert_eq!(rr(90, 10).await.unwrap(), obj.slice(90..100));
    assert_eq!(rr(0, 100).await.unwrap(), obj);
    assert_eq!(rr(0, 0).await.unwrap(), Bytes::new());
    assert_eq!(rr(50, 0).await.unwrap(), Bytes::new());
    assert_eq!(rr(100, 0).await.unwrap(), Bytes::new());
    for (offset, length) in [(95, 10), (100, 1), (101, 0), (0, 101), (u64::MAX, 2)] {
        let err = rr(offset, length).await.unwrap_err();
        match err {
            StorageError::OutOfRange {
                kind,
                name,
                offset: o,
                length: l,
                size,
            } => {
                assert_eq!((kind, name.as_str()), (Kind::Pack, "ab0123"));
                assert_eq!((o, l, size), (offset, length, 100));
            }
            other => panic!("{offset}+{length}: expected OutOfRange, got {other:?}"),
        }
    }
    // Empty object: only the empty range at 0 is in range.
    s.write(Kind::Pack, "ab-empty", Bytes::new()).await.unwrap();
    assert_eq!(
        s.read_range(Kind::Pack, "ab-empty", 0, 0).await.unwrap(),
        Bytes::new()
    );
    let err = s
        .read_range(Kind::Pack, "ab-empty", 0, 1)
        .await
        .unwrap_err();
    assert!(
        matches!(err, StorageError::OutOfRange { size: 0, .. }),
        "{err:?}"
    );
}

async fn check_list_sorted_with_sizes_per_kind(f: Fixture) {
    let s = created(&f).await;
    for (i, kind) in Kind::ALL.into_iter().enumerate() {
        // Written out of order, sizes differ per kind.
        for name in ["cc", "aa", "bb", "a", "b-1", "b.2"] {
            let size = name.len() + i * 10;
            s.write(kind, &format!("{name}{i}"), data(size, 1))
                .await
                .unwrap();
        }
    }
    for (i, kind) in Kind::ALL.into_iter().enumerate() {
        let mut expected: Vec<ObjectInfo> = ["cc", "aa", "bb", "a", "b-1", "b.2"]
            .iter()
            .map(|n| ObjectInfo {
                name: format!("{n}{i}"),
                size: (n.len() + i * 10) as u64,
            })
            .collect();
        expected.sort_by(|a, b| a.name.cmp(&b.name));
        assert_eq!(s.list(kind).await.unwrap(), expected, "{kind:?}");
        assert_eq!(
            s.list_names(kind).await.unwrap(),
            expected.iter().map(|o| o.name.clone()).collect::<Vec<_>>(),
            "names alone, {kind:?}"
        );
    }
}

async fn check_many_packs_across_prefixes(f: Fixture) {
    let s = created(&f).await;
    let mut expected = Vec::new();
    for i in 0..300u64 {
        let name = pack_name(i);
        let size = (i % 7) as usize;
        s.write(Kind::Pack, &name, data(size, i)).await.unwrap();
        expected.push(ObjectInfo {
            name,
            size: size as u64,
        });
    }
    expected.sort_by(|a, b| a.name.cmp(&b.name));
    let prefixes: std::collections::BTreeSet<&str> =
        expected.iter().map(|o| &o.name[..2]).collect();
    assert!(
        prefixes.len() > 100,
        "names should spread over many prefixes"
    );
    let listed = s.list(Kind::Pack).await.unwrap();
    assert_eq!(listed.len(), 300);
    assert_eq!(listed, expected);
    let names: Vec<String> = expected.iter().map(|o| o.name.clone()).collect();
    assert_eq!(s.list_names(Kind::Pack).await.unwrap(), names);
    assert_eq!(s.list(Kind::Index).await.unwrap(), vec![]);
}

async fn check_delete(f: Fixture) {
    let s = created(&f).await;
    for kind in Kind::ALL {
        s.write(kind, "gone", Bytes::from_static(b"bye"))
            .await
            .unwrap();
        s.write(kind, "kept", Bytes::from_static(b"stay"))
            .await
            .unwrap();
    }
    s.delete(Kind::Lock, "gone").await.unwrap();
    assert!(s.read(Kind::Lock, "gone").await.unwrap_err().is_not_found());
    assert_eq!(s.list(Kind::Lock).await.unwrap(), infos(&[("kept", 4)]));
    // Other kinds keep their object of the same name.
    for kind in Kind::ALL.into_iter().filter(|k| *k != Kind::Lock) {
        assert_eq!(
            s.read(kind, "gone").await.unwrap(),
            Bytes::from_static(b"bye")
        );
    }
    let err = s.delete(Kind::Lock, "gone").await.unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
    let err = s.delete(Kind::Pack, "never-there").await.unwrap_err();
    assert!(
        matches!(&err, StorageError::NotFound { kind: Kind::Pack, name } if name == "never-there"),
        "{err:?}"
    );
    for kind in Kind::ALL.into_iter().filter(|k| *k != Kind::Lock) {
        s.delete(kind, "gone").await.unwrap();
        assert!(s.read(kind, "gone").await.unwrap_err().is_not_found());
        assert_eq!(s.list(kind).await.unwrap(), infos(&[("kept", 4)]));
    }
}

async fn check_invalid_names_rejected(f: Fixture) {
    let s = created(&f).await;
    let long = "a".repeat(129);
    let bad = [
        "", ".", "..", ".hidden", ".tmp-abc", "a/b", "../x", "a\\b", "sp ace", "ü", "a\0b",
    ];
    for kind in Kind::ALL {
        for name in bad.iter().copied().chain([long.as_str()]) {
            let err = s
                .write(kind, name, Bytes::from_static(b"x"))
                .await
                .unwrap_err();
            assert!(
                matches!(err, StorageError::InvalidName(_)),
                "{kind:?} {name:?}: {err:?}"
            );
            let err = s.read(kind, name).await.unwrap_err();
            assert!(
                matches!(err, StorageError::InvalidName(_)),
                "{kind:?} {name:?}: {err:?}"
            );
            let err = s.delete(kind, name).await.unwrap_err();
            assert!(
                matches!(err, StorageError::InvalidName(_)),
                "{kind:?} {name:?}: {err:?}"
            );
        }
        assert_eq!(s.list(kind).await.unwrap(), vec![]);
    }
    // The longest acceptable name works.
    s.write(Kind::Key, &"k".repeat(128), Bytes::from_static(b"x"))
        .await
        .unwrap();
}

async fn check_concurrent_writes_all_land(f: Fixture) {
    let s = f.storage.clone();
    s.create().await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..50u64 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let kind = if i % 2 == 0 { Kind::Pack } else { Kind::Index };
            s.write(kind, &pack_name(i), data(1000 + i as usize, i))
                .await
        }));
    }
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    let packs = s.list(Kind::Pack).await.unwrap();
    let indexes = s.list(Kind::Index).await.unwrap();
    assert_eq!((packs.len(), indexes.len()), (25, 25));
    for i in 0..50u64 {
        let kind = if i % 2 == 0 { Kind::Pack } else { Kind::Index };
        assert_eq!(
            s.read(kind, &pack_name(i)).await.unwrap(),
            data(1000 + i as usize, i)
        );
    }
}

/// Writes `data` through an object writer in uneven pieces on a blocking thread and commits it
/// as `name`; `None` when the backend has no object writers.
async fn write_in_pieces(
    s: &dyn Storage,
    kind: Kind,
    name: &str,
    data: Bytes,
) -> Option<Result<(), StorageError>> {
    let mut w = s.object_writer(kind)?;
    let name = name.to_owned();
    let result = tokio::task::spawn_blocking(move || {
        let mut rest = &data[..];
        let mut piece = 1;
        while !rest.is_empty() {
            let (now, later) = rest.split_at(piece.min(rest.len()));
            w.write(now)?;
            rest = later;
            piece = piece * 7 + 3;
        }
        w.commit(&name)
    })
    .await
    .unwrap();
    Some(result)
}

async fn check_object_writer(f: Fixture, expect_writers: bool) {
    let s = created(&f).await;
    let big = data(3_000_001, 11);
    let Some(written) = write_in_pieces(s, Kind::Pack, &pack_name(1), big.clone()).await else {
        assert!(
            !expect_writers,
            "{} should take objects in pieces",
            s.location()
        );
        return;
    };
    assert!(expect_writers, "{} has no object writers", s.location());
    written.unwrap();
    assert_eq!(s.read(Kind::Pack, &pack_name(1)).await.unwrap(), big);
    // Every kind, an empty object, and the listing with sizes.
    for kind in Kind::ALL {
        let name = if kind == Kind::Config {
            "config2"
        } else {
            "piecewise"
        };
        write_in_pieces(s, kind, name, data(5_000, 3))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            s.read(kind, name).await.unwrap(),
            data(5_000, 3),
            "{kind:?}"
        );
    }
    write_in_pieces(s, Kind::Pack, &pack_name(2), Bytes::new())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        s.read(Kind::Pack, &pack_name(2)).await.unwrap(),
        Bytes::new()
    );
    // Write-once: a second object under a taken name is refused and the first one stays.
    let err = write_in_pieces(s, Kind::Pack, &pack_name(1), data(10, 1))
        .await
        .unwrap()
        .unwrap_err();
    assert!(matches!(err, StorageError::AlreadyExists { .. }), "{err:?}");
    assert_eq!(s.read(Kind::Pack, &pack_name(1)).await.unwrap(), big);
    let err = write_in_pieces(s, Kind::Pack, "../escape", data(10, 1))
        .await
        .unwrap()
        .unwrap_err();
    assert!(matches!(err, StorageError::InvalidName(_)), "{err:?}");
    // Dropped before its commit: nothing is there.
    let mut w = s.object_writer(Kind::Pack).unwrap();
    tokio::task::spawn_blocking(move || {
        w.write(&[1u8; 10_000]).unwrap();
        drop(w);
    })
    .await
    .unwrap();
    let packs: Vec<String> = s
        .list(Kind::Pack)
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.name)
        .collect();
    let mut expected = vec![pack_name(1), pack_name(2), "piecewise".to_owned()];
    expected.sort();
    assert_eq!(packs, expected);
}

/// A backend's fixture, or `None` where it is not available here (said by the backend).
fn fixture(f: impl Into<Option<Fixture>>) -> Option<Fixture> {
    f.into()
}

macro_rules! conformance {
    ($backend:ident, writers: $writers:expr) => {
        mod $backend {
            use super::*;

            #[tokio::test]
            async fn object_writer() {
                if let Some(f) = fixture(super::$backend()) {
                    check_object_writer(f, $writers).await;
                }
            }

            #[tokio::test]
            async fn create_on_empty_location() {
                if let Some(f) = fixture(super::$backend()) {
                    check_create_on_empty_location(f).await;
                }
            }

            #[tokio::test]
            async fn create_fails_over_existing_config() {
                if let Some(f) = fixture(super::$backend()) {
                    check_create_fails_over_existing_config(f).await;
                }
            }

            #[tokio::test]
            async fn round_trip_every_kind() {
                if let Some(f) = fixture(super::$backend()) {
                    check_round_trip_every_kind(f).await;
                }
            }

            #[tokio::test]
            async fn write_once() {
                if let Some(f) = fixture(super::$backend()) {
                    check_write_once(f).await;
                }
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn racing_writers_one_wins() {
                if let Some(f) = fixture(super::$backend()) {
                    check_racing_writers_one_wins(f).await;
                }
            }

            #[tokio::test]
            async fn read_into() {
                if let Some(f) = fixture(super::$backend()) {
                    check_read_into(f).await;
                }
            }

            #[tokio::test]
            async fn read_missing_is_not_found() {
                if let Some(f) = fixture(super::$backend()) {
                    check_read_missing_is_not_found(f).await;
                }
            }

            #[tokio::test]
            async fn read_many() {
                if let Some(f) = fixture(super::$backend()) {
                    check_read_many(f).await;
                }
            }

            #[tokio::test]
            async fn read_range() {
                if let Some(f) = fixture(super::$backend()) {
                    check_read_range(f).await;
                }
            }

            #[tokio::test]
            async fn list_sorted_with_sizes_per_kind() {
                if let Some(f) = fixture(super::$backend()) {
                    check_list_sorted_with_sizes_per_kind(f).await;
                }
            }

            #[tokio::test]
            async fn many_packs_across_prefixes() {
                if let Some(f) = fixture(super::$backend()) {
                    check_many_packs_across_prefixes(f).await;
                }
            }

            #[tokio::test]
            async fn delete() {
                if let Some(f) = fixture(super::$backend()) {
                    check_delete(f).await;
                }
            }

            #[tokio::test]
            async fn invalid_names_rejected() {
                if let Some(f) = fixture(super::$backend()) {
                    check_invalid_names_rejected(f).await;
                }
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn concurrent_writes_all_land() {
                if let Some(f) = fixture(super::$backend()) {
                    check_concurrent_writes_all_land(f).await;
                }
            }
        }
    };
}

conformance!(local, writers: true);
conformance!(s3, writers: false);
conformance!(memory, writers: true);
conformance!(faulty, writers: false);
conformance!(crash, writers: false);

// ---------------------------------------------------------------------------------------------
// S3Storage only

/// A second view of the same bucket with another prefix (to see keys the first one wrote).
fn s3_view(settings: &S3Settings, prefix: &str) -> S3Storage {
    S3Storage::new(S3Settings {
        prefix: prefix.to_owned(),
        ..settings.clone()
    })
    .unwrap()
}

#[tokio::test]
async fn s3_keys_follow_the_local_layout_and_strays_are_not_listed() {
    let Some(settings) = s3_settings() else {
        return;
    };
    let s = S3Storage::new(settings.clone()).unwrap();
    s.create().await.unwrap();
    s.write(Kind::Pack, "abcdef", Bytes::from_static(b"pack"))
        .await
        .unwrap();
    s.write(Kind::Snapshot, "s1", Bytes::from_static(b"snap"))
        .await
        .unwrap();
    // The pack is at <prefix>/data/ab/abcdef, the snapshot at <prefix>/snapshots/s1.
    let packs = s3_view(&settings, &format!("{}/data/ab", settings.prefix));
    assert_eq!(
        packs.read(Kind::Config, "abcdef").await.unwrap(),
        Bytes::from_static(b"pack")
    );
    let snaps = s3_view(&settings, &format!("{}/snapshots", settings.prefix));
    assert_eq!(
        snaps.read(Kind::Config, "s1").await.unwrap(),
        Bytes::from_static(b"snap")
    );
    // Keys this layout would not have written are not objects of the repository: a pack in
    // the wrong subfolder, something one level too deep.
    packs
        .write(Kind::Config, "zz-wrong-folder", Bytes::from_static(b"x"))
        .await
        .unwrap();
    snaps
        .write(Kind::Key, "too-deep", Bytes::from_static(b"x"))
        .await
        .unwrap();
    assert_eq!(s.list(Kind::Pack).await.unwrap(), infos(&[("abcdef", 4)]));
    assert_eq!(s.list(Kind::Snapshot).await.unwrap(), infos(&[("s1", 4)]));
    assert_eq!(s.list(Kind::Config).await.unwrap(), vec![]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_listing_follows_every_page() {
    use futures::StreamExt;
    let Some(settings) = s3_settings() else {
        return;
    };
    let s = Arc::new(S3Storage::new(settings).unwrap());
    s.create().await.unwrap();
    // More than one page of 1,000 keys.
    let names: Vec<String> = (0..1_150).map(|i| format!("snap{i:05}")).collect();
    let writes = names.iter().map(|n| {
        let s = s.clone();
        let n = n.clone();
        async move { s.write(Kind::Snapshot, &n, Bytes::from(n.clone())).await }
    });
    let results: Vec<_> = futures::stream::iter(writes)
        .buffer_unordered(32)
        .collect()
        .await;
    assert!(results.iter().all(Result::is_ok));
    let listed = s.list(Kind::Snapshot).await.unwrap();
    assert_eq!(listed.len(), 1_150);
    assert_eq!(
        listed.iter().map(|o| o.name.clone()).collect::<Vec<_>>(),
        names
    );
    assert!(listed.iter().all(|o| o.size == 9));
}

#[tokio::test]
async fn s3_missing_bucket_and_unreachable_server_are_clear_errors() {
    let Some(settings) = s3_settings() else {
        return;
    };
    let mut id = [0u8; 6];
    getrandom::fill(&mut id).unwrap();
    let missing = S3Storage::new(S3Settings {
        bucket: format!("strongroom-missing-{}", hex::encode(id)),
        ..settings.clone()
    })
    .unwrap();
    let err = missing.read(Kind::Config, "config").await.unwrap_err();
    assert!(
        !err.is_not_found(),
        "a missing bucket is not a missing object: {err:?}"
    );
    assert!(err.to_string().contains("does not exist"), "{err}");
    let err = missing.list(Kind::Snapshot).await.unwrap_err();
    assert!(err.to_string().contains("does not exist"), "{err}");

    // Nothing listens on port 9 (discard) here: every attempt is refused, then one error.
    let down = S3Storage::new(S3Settings {
        endpoint: "http://127.0.0.1:9".parse().unwrap(),
        ..settings
    })
    .unwrap();
    let err = down.list(Kind::Snapshot).await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, StorageError::Remote { .. }), "{err:?}");
    assert!(
        text.contains("attempts") && text.contains("127.0.0.1:9"),
        "{text}"
    );
    assert!(!text.contains("strongroom-test-secret"), "{text}");
}

// ---------------------------------------------------------------------------------------------
// LocalStorage only

/// Every file under `root`, as paths relative to it.
fn files_under(root: &Path) -> Vec<PathBuf> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                out.push(path.strip_prefix(root).unwrap().to_path_buf());
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

fn has_tmp(root: &Path) -> bool {
    files_under(root).iter().any(|p| {
        p.file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with(".tmp-"))
    })
}

mod local_only {
    use super::*;

    fn store() -> (tempfile::TempDir, PathBuf, LocalStorage) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("repo");
        let s = LocalStorage::new(root.clone());
        (dir, root, s)
    }

    #[tokio::test]
    async fn layout_on_disk() {
        let (_dir, root, s) = store();
        s.create().await.unwrap();
        for sub in ["keys", "data", "index", "snapshots", "locks"] {
            assert!(root.join(sub).is_dir(), "{sub}");
        }
        s.write(Kind::Config, "config", Bytes::from_static(b"c"))
            .await
            .unwrap();
        s.write(Kind::Key, "k1", Bytes::from_static(b"k"))
            .await
            .unwrap();
        s.write(Kind::Pack, "abcdef", Bytes::from_static(b"p"))
            .await
            .unwrap();
        s.write(Kind::Index, "i1", Bytes::from_static(b"i"))
            .await
            .unwrap();
        s.write(Kind::Snapshot, "s1", Bytes::from_static(b"s"))
            .await
            .unwrap();
        s.write(Kind::Lock, "l1", Bytes::from_static(b"l"))
            .await
            .unwrap();
        let expected: Vec<PathBuf> = [
            "config",
            "data/ab/abcdef",
            "index/i1",
            "keys/k1",
            "locks/l1",
            "snapshots/s1",
        ]
        .iter()
        .map(PathBuf::from)
        .collect();
        assert_eq!(files_under(&root), expected);
        assert_eq!(std::fs::read(root.join("data/ab/abcdef")).unwrap(), b"p");
        assert_eq!(s.location(), format!("local:{}", root.display()));
    }

    #[tokio::test]
    async fn create_in_existing_empty_folder_and_not_over_config() {
        let dir = tempfile::tempdir().unwrap();
        let s = LocalStorage::new(dir.path().to_path_buf());
        s.create().await.unwrap();
        std::fs::write(dir.path().join("config"), b"theirs").unwrap();
        let err = s.create().await.unwrap_err();
        assert!(
            matches!(
                err,
                StorageError::AlreadyExists {
                    kind: Kind::Config,
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(std::fs::read(dir.path().join("config")).unwrap(), b"theirs");
    }

    #[tokio::test]
    async fn no_temp_files_remain_after_writes() {
        let (_dir, root, s) = store();
        s.create().await.unwrap();
        for i in 0..40u64 {
            let kind = Kind::ALL[(i % 6) as usize];
            s.write(kind, &pack_name(i), data(i as usize * 100, i))
                .await
                .unwrap();
        }
        // Failed writes (already exists) must not leave temp files either.
        assert!(
            s.write(Kind::Pack, &pack_name(2), data(10, 0))
                .await
                .is_err()
        );
        assert!(!has_tmp(&root), "{:?}", files_under(&root));
    }

    #[tokio::test]
    async fn object_writers_leave_no_temp_files_and_packs_land_under_their_prefix() {
        for fsync in [true, false] {
            let dir = tempfile::tempdir().unwrap();
            let root = dir.path().join("repo");
            let s = LocalStorage::with_fsync(root.clone(), fsync);
            s.create().await.unwrap();
            let big = data(5_000_003, 4);
            write_in_pieces(&s, Kind::Pack, "cd0123", big.clone())
                .await
                .unwrap()
                .unwrap();
            assert_eq!(std::fs::read(root.join("data/cd/cd0123")).unwrap(), big);
            // Refused (taken name) and abandoned writers clean up after themselves.
            assert!(
                write_in_pieces(&s, Kind::Pack, "cd0123", data(10, 0))
                    .await
                    .unwrap()
                    .is_err()
            );
            let mut w = s.object_writer(Kind::Pack).unwrap();
            let wrote = tokio::task::spawn_blocking(move || {
                w.write(&[9u8; 3 << 20]).unwrap();
                let tmp_while_open = has_tmp(&root);
                drop(w);
                (tmp_while_open, has_tmp(&root), files_under(&root))
            })
            .await
            .unwrap();
            assert!(wrote.0, "the pieces go to a temporary file");
            assert!(!wrote.1, "{:?}", wrote.2);
            assert_eq!(
                wrote.2,
                vec![PathBuf::from("data/cd/cd0123")],
                "fsync {fsync}"
            );
        }
    }

    #[tokio::test]
    async fn leftover_temp_and_foreign_entries_are_not_listed() {
        let (_dir, root, s) = store();
        s.create().await.unwrap();
        s.write(Kind::Key, "real", Bytes::from_static(b"r"))
            .await
            .unwrap();
        s.write(Kind::Pack, "ab01", Bytes::from_static(b"p"))
            .await
            .unwrap();
        s.write(Kind::Config, "config", Bytes::from_static(b"c"))
            .await
            .unwrap();
        std::fs::write(root.join("keys/.tmp-x"), b"partial").unwrap();
        std::fs::write(root.join("data/ab/.tmp-x"), b"partial").unwrap();
        std::fs::write(root.join(".tmp-x"), b"partial").unwrap();
        std::fs::create_dir(root.join("keys/subdir")).unwrap();
        std::fs::create_dir(root.join("data/.tmp-dir")).unwrap();
        std::fs::write(root.join("data/.tmp-dir/ab02"), b"hidden").unwrap();
        std::fs::write(root.join("data/stray-file"), b"not a folder").unwrap();
        assert_eq!(s.list(Kind::Key).await.unwrap(), infos(&[("real", 1)]));
        assert_eq!(s.list(Kind::Pack).await.unwrap(), infos(&[("ab01", 1)]));
        assert_eq!(s.list(Kind::Config).await.unwrap(), infos(&[("config", 1)]));
        // Names alone skip the same entries; a symlink to an object file counts as one
        // (as with `list`), one to a folder does not.
        std::os::unix::fs::symlink(root.join("keys/real"), root.join("keys/linked")).unwrap();
        std::os::unix::fs::symlink(root.join("keys/subdir"), root.join("keys/linkdir")).unwrap();
        assert_eq!(s.list_names(Kind::Key).await.unwrap(), ["linked", "real"]);
        assert_eq!(
            s.list(Kind::Key).await.unwrap(),
            infos(&[("linked", 1), ("real", 1)])
        );
        assert_eq!(s.list_names(Kind::Pack).await.unwrap(), ["ab01"]);
        let err = s.read(Kind::Key, ".tmp-x").await.unwrap_err();
        assert!(matches!(err, StorageError::InvalidName(_)), "{err}");
    }

    #[tokio::test]
    async fn failed_write_leaves_nothing_and_says_where() {
        let (_dir, root, s) = store();
        s.create().await.unwrap();
        // A regular file where the pack subfolder `data/ab` should be.
        std::fs::write(root.join("data/ab"), b"in the way").unwrap();
        let before = files_under(&root);
        let err = s
            .write(Kind::Pack, "abcdef", data(1000, 1))
            .await
            .unwrap_err();
        match &err {
            StorageError::Io { context, .. } => {
                assert!(
                    context.contains("data/ab"),
                    "context should name the path: {context}"
                );
            }
            other => panic!("expected an Io error, got {other:?}"),
        }
        assert!(!err.is_out_of_space());
        assert_eq!(files_under(&root), before);
        assert_eq!(std::fs::read(root.join("data/ab")).unwrap(), b"in the way");
        assert!(s.read(Kind::Pack, "abcdef").await.is_err());
        // Other prefixes still work, and the listing ignores the stray file.
        s.write(Kind::Pack, "cdef", data(10, 2)).await.unwrap();
        assert_eq!(s.list(Kind::Pack).await.unwrap(), infos(&[("cdef", 10)]));
    }

    #[tokio::test]
    async fn listing_an_uncreated_location_is_an_error_not_empty() {
        let (_dir, _root, s) = store();
        let err = s.list(Kind::Snapshot).await.unwrap_err();
        assert!(matches!(err, StorageError::Io { .. }), "{err:?}");
        let err = s.list(Kind::Pack).await.unwrap_err();
        assert!(matches!(err, StorageError::Io { .. }), "{err:?}");
    }

    #[tokio::test]
    async fn without_fsync_still_atomic_and_write_once() {
        let dir = tempfile::tempdir().unwrap();
        let s = LocalStorage::with_fsync(dir.path().to_path_buf(), false);
        assert!(!s.fsync_enabled());
        assert!(LocalStorage::new(dir.path().to_path_buf()).fsync_enabled());
        s.create().await.unwrap();
        s.write(Kind::Pack, "0011", data(5000, 3)).await.unwrap();
        assert_eq!(s.read(Kind::Pack, "0011").await.unwrap(), data(5000, 3));
        let err = s.write(Kind::Pack, "0011", data(1, 3)).await.unwrap_err();
        assert!(matches!(err, StorageError::AlreadyExists { .. }));
        s.delete(Kind::Pack, "0011").await.unwrap();
        assert!(!has_tmp(dir.path()));
    }

    #[tokio::test]
    async fn reopened_store_sees_objects() {
        let (_dir, root, s) = store();
        s.create().await.unwrap();
        s.write(Kind::Index, "idx", data(77, 7)).await.unwrap();
        drop(s);
        let again = LocalStorage::new(root);
        assert_eq!(again.read(Kind::Index, "idx").await.unwrap(), data(77, 7));
        assert_eq!(
            again.list(Kind::Index).await.unwrap(),
            infos(&[("idx", 77)])
        );
    }
}

// ---------------------------------------------------------------------------------------------
// FaultyStorage

mod faulty_rules {
    use super::*;

    fn wrapped(seed: u64) -> (MemoryStorage, FaultyStorage<MemoryStorage>) {
        let mem = MemoryStorage::new();
        (mem.clone(), FaultyStorage::new(mem, seed))
    }

    fn is_injected(e: &StorageError) -> bool {
        matches!(e, StorageError::Injected(_))
    }

    #[tokio::test]
    async fn fail_nth_fires_exactly_on_that_call() {
        let (mem, f) = wrapped(1);
        f.fail_nth(Op::Write, 3);
        let mut results = Vec::new();
        for i in 0..6u64 {
            results.push(f.write(Kind::Pack, &format!("p{i}"), data(10, i)).await);
        }
        for (i, r) in results.iter().enumerate() {
            if i == 2 {
                assert!(is_injected(r.as_ref().unwrap_err()), "{r:?}");
            } else {
                assert!(r.is_ok(), "call {} should succeed: {r:?}", i + 1);
            }
        }
        // The failed write never reached the inner store.
        assert!(mem.read(Kind::Pack, "p2").await.unwrap_err().is_not_found());
        assert_eq!(mem.object_count(), 5);
        assert_eq!(f.calls(Op::Write), 6);
        assert_eq!(f.faults_injected(), 1);
    }

    #[tokio::test]
    async fn nth_counts_from_when_the_rule_is_added() {
        let (_mem, f) = wrapped(1);
        f.create().await.unwrap();
        for i in 0..3 {
            f.write(Kind::Key, &format!("k{i}"), data(1, 0))
                .await
                .unwrap();
        }
        f.fail_nth(Op::Read, 2);
        assert!(f.read(Kind::Key, "k0").await.is_ok());
        assert!(is_injected(&f.read(Kind::Key, "k1").await.unwrap_err()));
        assert!(f.read(Kind::Key, "k2").await.is_ok());
    }

    #[tokio::test]
    async fn fail_once_then_succeeds() {
        let (_mem, f) = wrapped(1);
        f.write(Kind::Index, "i", data(10, 1)).await.unwrap();
        f.fail_once(Op::Read);
        let err = f.read(Kind::Index, "i").await.unwrap_err();
        assert!(is_injected(&err));
        assert!(err.to_string().contains("Read"), "{err}");
        for _ in 0..5 {
            assert_eq!(f.read(Kind::Index, "i").await.unwrap(), data(10, 1));
        }
        f.fail_once(Op::Delete);
        assert!(is_injected(&f.delete(Kind::Index, "i").await.unwrap_err()));
        f.delete(Kind::Index, "i").await.unwrap();
        f.fail_once(Op::Create);
        assert!(is_injected(&f.create().await.unwrap_err()));
        f.create().await.unwrap();
        f.fail_once(Op::ReadRange);
        f.write(Kind::Index, "j", data(10, 1)).await.unwrap();
        assert!(is_injected(
            &f.read_range(Kind::Index, "j", 0, 5).await.unwrap_err()
        ));
        assert_eq!(
            f.read_range(Kind::Index, "j", 0, 5).await.unwrap(),
            data(10, 1).slice(..5)
        );
    }

    #[tokio::test]
    async fn list_fails_until_rules_are_cleared() {
        let (_mem, f) = wrapped(1);
        f.write(Kind::Snapshot, "s", data(3, 1)).await.unwrap();
        f.fail_list();
        for kind in Kind::ALL {
            assert!(is_injected(&f.list(kind).await.unwrap_err()));
        }
        // Other operations are untouched.
        assert!(f.read(Kind::Snapshot, "s").await.is_ok());
        f.clear_rules();
        assert_eq!(f.list(Kind::Snapshot).await.unwrap(), infos(&[("s", 3)]));
        assert_eq!(f.calls(Op::List), 7);
    }

    #[tokio::test]
    async fn short_list_drops_entries_silently() {
        let (_mem, f) = wrapped(1);
        for i in 0..10u64 {
            f.write(Kind::Pack, &pack_name(i), data(1, i))
                .await
                .unwrap();
        }
        f.add_rule(Rule::new(Op::List, Fault::ShortRead).once());
        let short = f.list(Kind::Pack).await.unwrap();
        let full = f.list(Kind::Pack).await.unwrap();
        assert_eq!(short.len(), 5);
        assert_eq!(full.len(), 10);
        assert_eq!(short[..], full[..5]);
    }

    #[tokio::test]
    async fn probability_is_deterministic_per_seed() {
        async fn pattern(seed: u64, p: f64) -> Vec<bool> {
            let (_mem, f) = wrapped(seed);
            f.write(Kind::Pack, "x", data(8, 0)).await.unwrap();
            f.fail_with_probability(Op::Read, p);
            let mut out = Vec::new();
            for _ in 0..400 {
                out.push(f.read(Kind::Pack, "x").await.is_err());
            }
            out
        }
        let a = pattern(11, 0.3).await;
        assert_eq!(a, pattern(11, 0.3).await, "same seed, same faults");
        assert_ne!(a, pattern(12, 0.3).await, "another seed, other faults");
        let failures = a.iter().filter(|x| **x).count();
        assert!(
            (80..160).contains(&failures),
            "about 30% of 400: {failures}"
        );
        assert!(pattern(3, 0.0).await.iter().all(|x| !x));
        assert!(pattern(3, 1.0).await.iter().all(|x| *x));
    }

    #[tokio::test]
    async fn short_read_returns_a_strict_prefix() {
        let (_mem, f) = wrapped(1);
        let obj = data(1001, 4);
        f.write(Kind::Pack, "p", obj.clone()).await.unwrap();
        f.add_rule(Rule::new(Op::Read, Fault::ShortRead).nth(2));
        assert_eq!(f.read(Kind::Pack, "p").await.unwrap(), obj);
        let short = f.read(Kind::Pack, "p").await.unwrap();
        assert!(short.len() < obj.len());
        assert_eq!(short, obj.slice(..short.len()));
        assert_eq!(f.read(Kind::Pack, "p").await.unwrap(), obj);
        f.add_rule(Rule::new(Op::ReadRange, Fault::ShortRead).once());
        let short = f.read_range(Kind::Pack, "p", 100, 10).await.unwrap();
        assert_eq!(short, obj.slice(100..105));
    }

    #[tokio::test]
    async fn bit_flip_changes_exactly_one_bit() {
        for seed in 0..20u64 {
            let (mem, f) = wrapped(seed);
            let obj = data(333, seed);
            f.write(Kind::Pack, "p", obj.clone()).await.unwrap();
            f.add_rule(Rule::new(Op::Read, Fault::FlipBit).once());
            let got = f.read(Kind::Pack, "p").await.unwrap();
            assert_eq!(got.len(), obj.len());
            let diff: u32 = got
                .iter()
                .zip(obj.iter())
                .map(|(a, b)| (a ^ b).count_ones())
                .sum();
            assert_eq!(diff, 1, "seed {seed}");
            // Only the returned copy was changed, and only once.
            assert_eq!(mem.read(Kind::Pack, "p").await.unwrap(), obj);
            assert_eq!(f.read(Kind::Pack, "p").await.unwrap(), obj);
            f.add_rule(Rule::new(Op::ReadRange, Fault::FlipBit).once());
            let got = f.read_range(Kind::Pack, "p", 10, 1).await.unwrap();
            assert_eq!((got[0] ^ obj[10]).count_ones(), 1);
        }
    }

    #[tokio::test]
    async fn write_faults_corrupt_or_lose_the_acknowledgement() {
        let (mem, f) = wrapped(5);
        let obj = data(64, 1);
        f.add_rule(Rule::new(Op::Write, Fault::FlipBit).once());
        f.write(Kind::Pack, "flipped", obj.clone()).await.unwrap();
        let stored = mem.read(Kind::Pack, "flipped").await.unwrap();
        let diff: u32 = stored
            .iter()
            .zip(obj.iter())
            .map(|(a, b)| (a ^ b).count_ones())
            .sum();
        assert_eq!(diff, 1);
        f.add_rule(Rule::new(Op::Write, Fault::ShortRead).once());
        f.write(Kind::Pack, "short", obj.clone()).await.unwrap();
        assert_eq!(
            mem.read(Kind::Pack, "short").await.unwrap(),
            obj.slice(..32)
        );
        f.add_rule(Rule::new(Op::Write, Fault::ErrorAfter).once());
        let err = f
            .write(Kind::Pack, "landed", obj.clone())
            .await
            .unwrap_err();
        assert!(is_injected(&err));
        assert_eq!(mem.read(Kind::Pack, "landed").await.unwrap(), obj);
    }

    #[tokio::test]
    async fn kind_filter_limits_a_rule() {
        let (_mem, f) = wrapped(1);
        f.add_rule(
            Rule::new(Op::Write, Fault::Error)
                .kind(Kind::Index)
                .always(),
        );
        f.write(Kind::Pack, "p", data(1, 1)).await.unwrap();
        assert!(is_injected(
            &f.write(Kind::Index, "i", data(1, 1)).await.unwrap_err()
        ));
        f.write(Kind::Snapshot, "s", data(1, 1)).await.unwrap();
        // The n-th call counts only matching calls.
        f.clear_rules();
        f.add_rule(
            Rule::new(Op::Read, Fault::Error)
                .kind(Kind::Snapshot)
                .nth(2),
        );
        assert!(f.read(Kind::Pack, "p").await.is_ok());
        assert!(f.read(Kind::Snapshot, "s").await.is_ok());
        assert!(f.read(Kind::Pack, "p").await.is_ok());
        assert!(is_injected(&f.read(Kind::Snapshot, "s").await.unwrap_err()));
    }

    #[tokio::test]
    async fn counters_per_operation() {
        let (_mem, f) = wrapped(1);
        f.create().await.unwrap();
        f.write(Kind::Key, "k", data(4, 1)).await.unwrap();
        let _ = f.write(Kind::Key, "k", data(4, 1)).await; // AlreadyExists still counts
        f.read(Kind::Key, "k").await.unwrap();
        f.read_range(Kind::Key, "k", 0, 2).await.unwrap();
        f.read_range(Kind::Key, "k", 0, 2).await.unwrap();
        f.list(Kind::Key).await.unwrap();
        f.delete(Kind::Key, "k").await.unwrap();
        let _ = f.delete(Kind::Key, "k").await;
        let _ = f.delete(Kind::Key, "k").await;
        assert_eq!(
            f.all_calls(),
            vec![
                (Op::List, 1),
                (Op::Read, 1),
                (Op::ReadRange, 2),
                (Op::Write, 2),
                (Op::Delete, 3),
                (Op::Create, 1)
            ]
        );
        assert_eq!(f.faults_injected(), 0);
        assert!(f.location().starts_with("faulty:memory"));
    }

    #[tokio::test]
    async fn wraps_a_shared_dyn_store() {
        let inner: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
        let f = FaultyStorage::new(inner.clone(), 9);
        f.fail_once(Op::Write);
        assert!(f.write(Kind::Lock, "l", data(1, 1)).await.is_err());
        f.write(Kind::Lock, "l", data(1, 1)).await.unwrap();
        assert_eq!(inner.list(Kind::Lock).await.unwrap(), infos(&[("l", 1)]));
    }
}

// ---------------------------------------------------------------------------------------------
// CrashStorage

mod crash_model {
    use super::*;

    #[derive(Clone, Debug)]
    enum Step {
        Write(Kind, String, Bytes),
        Delete(Kind, String),
    }

    /// A workload of writes and deletes (every one succeeds when nothing crashes).
    fn workload() -> Vec<Step> {
        let mut steps = vec![Step::Write(Kind::Config, "config".into(), data(50, 0))];
        steps.push(Step::Write(Kind::Key, "key1".into(), data(80, 1)));
        steps.push(Step::Write(Kind::Lock, "lock1".into(), data(10, 2)));
        for i in 0..4u64 {
            steps.push(Step::Write(Kind::Pack, pack_name(i), data(1000, i)));
        }
        steps.push(Step::Write(Kind::Index, "idx1".into(), data(200, 3)));
        steps.push(Step::Write(Kind::Snapshot, "snap1".into(), data(90, 4)));
        steps.push(Step::Delete(Kind::Pack, pack_name(1)));
        steps.push(Step::Delete(Kind::Lock, "lock1".into()));
        steps
    }

    /// The state after the first `n` steps.
    fn expected_after(steps: &[Step], n: usize) -> BTreeMap<(Kind, String), Bytes> {
        let mut map = BTreeMap::new();
        for step in &steps[..n] {
            match step {
                Step::Write(k, name, d) => {
                    map.insert((*k, name.clone()), d.clone());
                }
                Step::Delete(k, name) => {
                    map.remove(&(*k, name.clone()));
                }
            }
        }
        map
    }

    /// Runs the steps, stopping at the first error; returns how many were acknowledged.
    async fn run(s: &dyn Storage, steps: &[Step]) -> (usize, Option<StorageError>) {
        s.create().await.unwrap();
        for (i, step) in steps.iter().enumerate() {
            let r = match step {
                Step::Write(k, name, d) => s.write(*k, name, d.clone()).await,
                Step::Delete(k, name) => s.delete(*k, name).await,
            };
            if let Err(e) = r {
                return (i, Some(e));
            }
        }
        (steps.len(), None)
    }

    #[tokio::test]
    async fn uncrashed_run_counts_ops() {
        let steps = workload();
        let c = CrashStorage::new();
        let (done, err) = run(&c, &steps).await;
        assert!(err.is_none());
        assert_eq!(done, steps.len());
        assert_eq!(c.ops(), steps.len() as u64);
        assert!(!c.crashed());
        assert_eq!(
            c.recover().snapshot_objects(),
            expected_after(&steps, steps.len())
        );
    }

    #[tokio::test]
    async fn crash_at_k_keeps_exactly_the_ops_before_k() {
        let steps = workload();
        let n = {
            let c = CrashStorage::new();
            run(&c, &steps).await;
            c.ops()
        };
        for k in 1..=n {
            let c = CrashStorage::with_crash_at(k);
            let (done, err) = run(&c, &steps).await;
            assert_eq!(done as u64, k - 1, "crash at {k}");
            assert!(
                matches!(err, Some(StorageError::Crashed)),
                "crash at {k}: {err:?}"
            );
            assert!(c.crashed());
            assert_eq!(c.ops(), k - 1);
            // Dead: nothing more is accepted, reads included.
            assert!(matches!(
                c.list(Kind::Pack).await,
                Err(StorageError::Crashed)
            ));
            assert!(matches!(
                c.read(Kind::Config, "config").await,
                Err(StorageError::Crashed)
            ));
            assert!(matches!(
                c.read_range(Kind::Config, "config", 0, 1).await,
                Err(StorageError::Crashed)
            ));
            assert!(matches!(
                c.write(Kind::Key, "late", data(1, 1)).await,
                Err(StorageError::Crashed)
            ));
            assert!(matches!(
                c.delete(Kind::Key, "key1").await,
                Err(StorageError::Crashed)
            ));
            assert!(matches!(c.create().await, Err(StorageError::Crashed)));
            assert_eq!(c.ops(), k - 1);
            // Recovery sees exactly the acknowledged ops.
            let recovered = c.recover();
            let expected = expected_after(&steps, (k - 1) as usize);
            assert_eq!(recovered.snapshot_objects(), expected, "crash at {k}");
            for ((kind, name), bytes) in &expected {
                assert_eq!(&recovered.read(*kind, name).await.unwrap(), bytes);
            }
            assert!(c.torn_writes().is_empty());
        }
        // A crash point past the workload never fires.
        let c = CrashStorage::with_crash_at(n + 1);
        assert_eq!(run(&c, &steps).await.0, steps.len());
        assert!(!c.crashed());
    }

    #[tokio::test]
    async fn ordinary_errors_count_as_ops() {
        let c = CrashStorage::with_crash_at(4);
        c.write(Kind::Key, "a", data(1, 1)).await.unwrap(); // op 1
        assert!(c.write(Kind::Key, "a", data(1, 1)).await.is_err()); // op 2: AlreadyExists
        assert!(c.delete(Kind::Key, "zz").await.unwrap_err().is_not_found()); // op 3
        assert_eq!(c.ops(), 3);
        // Reads are not ops.
        c.read(Kind::Key, "a").await.unwrap();
        c.list(Kind::Key).await.unwrap();
        assert!(matches!(
            c.delete(Kind::Key, "a").await,
            Err(StorageError::Crashed)
        )); // op 4
        assert_eq!(c.recover().read(Kind::Key, "a").await.unwrap(), data(1, 1));
    }

    #[tokio::test]
    async fn torn_write_is_never_visible() {
        let c = CrashStorage::with_crash_at(2)
            .with_torn_writes(true)
            .with_reads_after_crash(true);
        c.write(Kind::Pack, "aa01", data(100, 1)).await.unwrap();
        let big = data(1000, 2);
        assert!(matches!(
            c.write(Kind::Pack, "bb02", big.clone()).await,
            Err(StorageError::Crashed)
        ));
        let torn = c.torn_writes();
        assert_eq!(torn.len(), 1);
        assert_eq!((torn[0].kind, torn[0].name.as_str()), (Kind::Pack, "bb02"));
        assert!(torn[0].partial.len() < big.len());
        assert_eq!(torn[0].partial, big.slice(..torn[0].partial.len()));
        // Reads are allowed here, and show no trace of the torn object.
        assert_eq!(c.list(Kind::Pack).await.unwrap(), infos(&[("aa01", 100)]));
        assert!(c.read(Kind::Pack, "bb02").await.unwrap_err().is_not_found());
        let recovered = c.recover();
        assert_eq!(
            recovered.list(Kind::Pack).await.unwrap(),
            infos(&[("aa01", 100)])
        );
        // Later writes fail without leaving more torn objects.
        assert!(c.write(Kind::Pack, "cc03", data(10, 3)).await.is_err());
        assert_eq!(c.torn_writes().len(), 1);
    }

    #[tokio::test]
    async fn crash_at_a_delete_keeps_the_object() {
        let c = CrashStorage::with_crash_at(2);
        c.write(Kind::Lock, "l", data(5, 5)).await.unwrap();
        assert!(matches!(
            c.delete(Kind::Lock, "l").await,
            Err(StorageError::Crashed)
        ));
        assert_eq!(c.recover().read(Kind::Lock, "l").await.unwrap(), data(5, 5));
    }

    #[tokio::test]
    async fn crash_at_zero_is_dead_from_the_start() {
        let c = CrashStorage::with_crash_at(0);
        assert!(c.crashed());
        assert!(matches!(c.create().await, Err(StorageError::Crashed)));
        assert!(matches!(
            c.list(Kind::Key).await,
            Err(StorageError::Crashed)
        ));
        assert!(matches!(
            c.write(Kind::Key, "k", data(1, 1)).await,
            Err(StorageError::Crashed)
        ));
        assert_eq!(c.ops(), 0);
        assert_eq!(c.recover().object_count(), 0);
    }

    #[tokio::test]
    async fn continue_from_a_recovered_state() {
        let first = CrashStorage::with_crash_at(3);
        let steps = workload();
        run(&first, &steps).await;
        let recovered = first.recover();
        let second = CrashStorage::from_memory(&recovered, Some(2));
        second
            .write(Kind::Snapshot, "after", data(3, 3))
            .await
            .unwrap();
        assert!(matches!(
            second.write(Kind::Snapshot, "after2", data(3, 3)).await,
            Err(StorageError::Crashed)
        ));
        let mut expected = expected_after(&steps, 2);
        expected.insert((Kind::Snapshot, "after".into()), data(3, 3));
        assert_eq!(second.recover().snapshot_objects(), expected);
        // The first recovered store is independent of the second run.
        assert_eq!(recovered.snapshot_objects(), expected_after(&steps, 2));
    }
}
