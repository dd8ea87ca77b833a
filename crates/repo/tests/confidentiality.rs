//! Confidentiality and keys: a marker planted in file contents, file and folder names,
//! symlink targets, tags, host, stream names and stream contents appears in no byte of any
//! repository file (plain, upper case, UTF-16 or base64); a wrong password and every kind of
//! tampered key file are refused with a clear error; with two keys removing one leaves the
//! other working; changing the password retires the old one; a master key file opens its own
//! repository (and keeps opening it after the password changes) and no other.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine as _;
use common::{PASSWORD, XorShift, assert_same, scan, scan_children};
use strongroom_repo::archiver::{self, BackupOptions};
use strongroom_repo::checker::{self, ReadData};
use strongroom_repo::crypto::{KdfParams, KeyFile};
use strongroom_repo::restorer::{self, RestoreOptions};
use strongroom_repo::{Credential, InitOptions, MasterKeyFile, RepoError, Repository, lock};
use strongroom_storage::local::LocalStorage;
use strongroom_storage::{Kind, Storage};

fn local(dir: &Path) -> Arc<dyn Storage> {
    Arc::new(LocalStorage::new(dir.to_path_buf()))
}

async fn init(dir: &Path) -> Arc<Repository> {
    Arc::new(
        Repository::init(
            local(dir),
            PASSWORD,
            InitOptions {
                kdf: KdfParams::MINIMUM,
                ..Default::default()
            },
        )
        .await
        .unwrap(),
    )
}

/// Backs up `data` as the stream `db.dump`; returns the snapshot's id.
async fn back_up_stream(repo: &Arc<Repository>, data: &[u8]) -> strongroom_repo::Id {
    let g = lock::lock(repo, false, "b").await.unwrap();
    let (sid, _) = archiver::backup_stream(
        repo,
        &g,
        "db.dump",
        Box::new(std::io::Cursor::new(data.to_vec())),
        BackupOptions::default(),
    )
    .await
    .unwrap();
    g.release().await.unwrap();
    sid
}

/// Every form of the marker to look for.
fn needles(marker: &str) -> Vec<(String, Vec<u8>)> {
    let mut out = vec![
        ("plain".to_owned(), marker.as_bytes().to_vec()),
        ("upper case".to_owned(), marker.to_uppercase().into_bytes()),
        (
            "UTF-16LE".to_owned(),
            marker.encode_utf16().flat_map(u16::to_le_bytes).collect(),
        ),
        (
            "UTF-16BE".to_owned(),
            marker.encode_utf16().flat_map(u16::to_be_bytes).collect(),
        ),
    ];
    // Base64 of the marker at each of the three alignments, without the edge characters
    // that depend on the neighbouring bytes; standard and URL-safe alphabets.
    for engine in [
        &base64::engine::general_purpose::STANDARD,
        &base64::engine::general_purpose::URL_SAFE,
    ] {
        for pad in 0..3 {
            let mut input = vec![0u8; pad];
            input.extend_from_slice(marker.as_bytes());
            let enc = engine.encode(&input);
            let skip = if pad == 0 { 0 } else { pad + 1 };
            let stable = (marker.len() + pad) / 3 * 4;
            let core = enc.as_bytes()[skip..stable].to_vec();
            out.push((format!("base64 (offset {pad})"), core));
        }
    }
    out
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    needle.len() <= hay.len() && hay.windows(needle.len()).any(|w| w == needle)
}

/// Every finding of any form of the marker in any file (content or name) under `root`.
fn find_marker(root: &Path, marker: &str) -> Vec<String> {
    let needles = needles(marker);
    let mut found = Vec::new();
    let mut files = 0;
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            let name = e.file_name();
            let name = name.as_encoded_bytes();
            for (what, n) in &needles {
                if contains(name, n) {
                    found.push(format!("{what} in the name {}", p.display()));
                }
            }
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                stack.push(p);
            } else if ft.is_file() {
                files += 1;
                let bytes = std::fs::read(&p).unwrap();
                for (what, n) in &needles {
                    if contains(&bytes, n) {
                        found.push(format!("{what} in {}", p.display()));
                    }
                }
            } else if ft.is_symlink() {
                let t = std::fs::read_link(&p).unwrap();
                for (what, n) in &needles {
                    if contains(t.as_os_str().as_encoded_bytes(), n) {
                        found.push(format!("{what} in the link {}", p.display()));
                    }
                }
            }
        }
    }
    assert!(files > 0, "nothing scanned under {}", root.display());
    found
}

fn random_marker(seed: u64) -> String {
    let mut r = XorShift::new(seed);
    let mut b = [0u8; 12];
    r.fill(&mut b);
    // Also from the OS, so two runs with one seed still differ in the marker.
    let mut os = [0u8; 12];
    getrandom::fill(&mut os).unwrap();
    for (x, y) in b.iter_mut().zip(os) {
        *x ^= y;
    }
    hex::encode(b)
}

/// The scanner finds each form of the marker (so a clean scan means something).
#[test]
fn scanner_finds_every_form() {
    let marker = random_marker(1);
    let tmp = common::tempdir();
    for (i, (what, n)) in needles(&marker).iter().enumerate() {
        let d = tmp.path().join(format!("case-{i}"));
        std::fs::create_dir(&d).unwrap();
        let mut content = b"prefix ".to_vec();
        content.extend_from_slice(n);
        content.extend_from_slice(b" suffix");
        std::fs::write(d.join("f"), &content).unwrap();
        assert!(!find_marker(&d, &marker).is_empty(), "{what} was not found");
    }
    // The base64 forms are those of real encodings of text holding the marker, at any
    // alignment.
    for pre in ["", "x", "xy", "xyz"] {
        let d = tmp.path().join(format!("b64-{}", pre.len()));
        std::fs::create_dir(&d).unwrap();
        let enc = base64::engine::general_purpose::STANDARD.encode(format!("{pre}{marker}tail"));
        std::fs::write(d.join("f"), enc).unwrap();
        assert!(!find_marker(&d, &marker).is_empty(), "base64 after {pre:?}");
    }
    // Names count too.
    let d = tmp.path().join("names");
    std::fs::create_dir_all(d.join(format!("dir-{marker}"))).unwrap();
    std::fs::write(d.join("x"), b"x").unwrap();
    assert!(!find_marker(&d, &marker).is_empty(), "a folder name");
}

/// The marker planted everywhere a user's data can carry it is nowhere in the repository.
#[test]
fn marker_appears_in_no_repository_file() {
    let seed = common::seed("marker_appears_in_no_repository_file");
    let marker = random_marker(seed);
    eprintln!("marker: {marker}");
    let rt = common::runtime();
    let tmp = common::tempdir();
    let repo_dir = tmp.path().join("repo");
    let src = tmp.path().join(format!("source-{marker}"));
    let dir = src.join(format!("folder {marker}"));
    std::fs::create_dir_all(&dir).unwrap();
    let mut r = XorShift::new(seed);
    // Content: the marker alone, in text, repeated (compressible), amid random bytes (not
    // compressible), in a big file spanning several chunks, and at a chunk's edge.
    std::fs::write(src.join("plain.txt"), &marker).unwrap();
    std::fs::write(
        dir.join("notes.txt"),
        format!("patient record, secret {marker}\n").repeat(2000),
    )
    .unwrap();
    let mut noisy = r.bytes(300_000);
    noisy[150_000..150_000 + marker.len()].copy_from_slice(marker.as_bytes());
    std::fs::write(dir.join("noisy.bin"), &noisy).unwrap();
    let mut big = r.bytes(5_000_000);
    for off in [0, 1_048_576, 2_500_000, 5_000_000 - marker.len()] {
        big[off..off + marker.len()].copy_from_slice(marker.as_bytes());
    }
    std::fs::write(src.join("big.bin"), &big).unwrap();
    std::fs::write(
        src.join("utf16.txt"),
        marker
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect::<Vec<u8>>(),
    )
    .unwrap();
    std::fs::write(
        src.join("b64.txt"),
        base64::engine::general_purpose::STANDARD.encode(&marker),
    )
    .unwrap();
    // Names and link targets.
    std::fs::write(src.join(format!("{marker}.jpg")), b"jpeg").unwrap();
    std::fs::write(dir.join(format!("empty-{marker}")), b"").unwrap();
    std::os::unix::fs::symlink(format!("/srv/{marker}/target"), src.join("link")).unwrap();
    std::os::unix::fs::symlink(format!("../{marker}.jpg"), dir.join(format!("l-{marker}")))
        .unwrap();
    let state = scan(&src);
    // The source really holds the marker in every form we look for.
    assert!(find_marker(&src, &marker).len() >= 8);
    let stream: Vec<u8> = format!("COPY patients FROM stdin;\n{marker}\t42\n")
        .repeat(5000)
        .into_bytes();
    rt.block_on(async {
        let repo = init(&repo_dir).await;
        let guard = lock::lock(&repo, false, &format!("backup {marker}"))
            .await
            .unwrap();
        let opts = BackupOptions {
            tags: vec![format!("tag-{marker}")],
            host: Some(format!("host-{marker}")),
            meta: serde_json::json!({ "database": marker }),
            ..BackupOptions::default()
        };
        let (_, snap) =
            archiver::backup_paths(&repo, &guard, std::slice::from_ref(&src), opts.clone())
                .await
                .unwrap();
        let (_, ssnap) = archiver::backup_stream(
            &repo,
            &guard,
            &format!("{marker}.dump"),
            Box::new(std::io::Cursor::new(stream.clone())),
            opts,
        )
        .await
        .unwrap();
        // Scanned while the lock (whose purpose names the marker) is still held.
        let found = find_marker(&repo_dir, &marker);
        assert!(found.is_empty(), "the marker leaked: {found:?}");
        guard.release().await.unwrap();
        let found = find_marker(&repo_dir, &marker);
        assert!(found.is_empty(), "the marker leaked: {found:?}");
        // And the data is all there.
        let reopened = Repository::open(local(&repo_dir), PASSWORD).await.unwrap();
        reopened.load_index().await.unwrap();
        let target = tmp.path().join("restored");
        restorer::restore_to_dir(&reopened, &snap, &target, &RestoreOptions::default())
            .await
            .unwrap();
        assert_same(&state, &scan_children(&target), "restored");
        let mut out = Vec::new();
        restorer::restore_stream(&reopened, &ssnap, &mut out)
            .await
            .unwrap();
        assert!(out == stream);
        let (snaps, _) = reopened.list_snapshots().await.unwrap();
        assert!(
            snaps
                .iter()
                .all(|(_, s)| s.tags == vec![format!("tag-{marker}")])
        );
    });
}

// ---------------------------------------------------------------------------------------
// Passwords and key files.

fn key_path(dir: &Path) -> PathBuf {
    let keys: Vec<_> = std::fs::read_dir(dir.join("keys"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(keys.len(), 1, "{keys:?}");
    keys[0].clone()
}

async fn open_err(dir: &Path, password: &[u8]) -> RepoError {
    match Repository::open(local(dir), password).await {
        Ok(_) => panic!(
            "opened with password {:?}",
            String::from_utf8_lossy(password)
        ),
        Err(e) => e,
    }
}

/// A wrong password is refused as such; an empty one too.
#[test]
fn wrong_password_is_refused_clearly() {
    let rt = common::runtime();
    let tmp = common::tempdir();
    rt.block_on(async {
        init(tmp.path()).await;
        for pw in [&b"wrong"[..], b"", b"correct horse battery stapl"] {
            let err = open_err(tmp.path(), pw).await;
            assert!(matches!(err, RepoError::WrongPassword(1)), "{err:?}");
            let msg = err.to_string();
            assert!(msg.contains("wrong password"), "{msg}");
            assert!(msg.contains("key file"), "{msg}");
        }
        Repository::open(local(tmp.path()), PASSWORD).await.unwrap();
        // A folder that is not a repository is named as such.
        let empty = tmp.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        let err = open_err(&empty, PASSWORD).await;
        assert!(matches!(err, RepoError::NotARepository(_)), "{err:?}");
    });
}

/// Every kind of tampering with the key file is refused with an error naming the key file,
/// and the right password does not get around it.
#[test]
fn tampered_key_file_is_refused() {
    let rt = common::runtime();
    let tmp = common::tempdir();
    rt.block_on(async {
        init(tmp.path()).await;
        let path = key_path(tmp.path());
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let original = std::fs::read(&path).unwrap();
        let kf = KeyFile::parse(&original).unwrap();
        let canonical = |k: &KeyFile| k.to_bytes().unwrap();
        let b64 = base64::engine::general_purpose::STANDARD;

        let mut cases: Vec<(&str, Vec<u8>, bool)> = Vec::new(); // (what, bytes, parse fails)
        let mut k = kf.clone();
        k.header.host = format!("{}-evil", k.header.host);
        cases.push(("host edited", canonical(&k), false));
        let mut k = kf.clone();
        k.header.created = "2001-01-01T00:00:00Z".into();
        cases.push(("created edited", canonical(&k), false));
        let mut k = kf.clone();
        k.header.user = "mallory".into();
        cases.push(("user edited", canonical(&k), false));
        let mut k = kf.clone();
        k.header.params.m_kib = 8;
        k.header.params.t = 1;
        cases.push(("weaker KDF", canonical(&k), true));
        let mut k = kf.clone();
        k.header.params.t = 1;
        cases.push(("one pass fewer", canonical(&k), true));
        let mut k = kf.clone();
        k.header.params.m_kib += 1024;
        cases.push(("stronger KDF", canonical(&k), false));
        let mut k = kf.clone();
        let mut salt = b64.decode(&k.header.salt).unwrap();
        salt[0] ^= 1;
        k.header.salt = b64.encode(salt);
        cases.push(("salt bit flipped", canonical(&k), false));
        for bit in [0, 12 * 8 + 3, 12 * 8 + 64 * 8 - 1, (12 + 64) * 8 + 5] {
            let mut k = kf.clone();
            let mut w = b64.decode(&k.wrapped).unwrap();
            w[bit / 8] ^= 1 << (bit % 8);
            k.wrapped = b64.encode(w);
            cases.push(("bit flipped in wrapped", canonical(&k), false));
        }
        let mut k = kf.clone();
        let mut w = b64.decode(&k.wrapped).unwrap();
        w.pop();
        k.wrapped = b64.encode(w);
        cases.push(("wrapped key shortened", canonical(&k), false));
        let mut k = kf.clone();
        k.wrapped = format!("!{}", &k.wrapped[1..]);
        cases.push(("wrapped key not base64", canonical(&k), false));
        let mut k = kf.clone();
        k.header.salt = "not base64!".into();
        cases.push(("salt not base64", canonical(&k), false));
        let mut k = kf.clone();
        k.header.kdf = "scrypt".into();
        cases.push(("other KDF", canonical(&k), true));
        let mut k = kf.clone();
        k.header.version = 2;
        cases.push(("other version", canonical(&k), true));
        let mut ws = original.clone();
        ws.insert(1, b' ');
        cases.push(("extra whitespace", ws, true));
        let mut ws = original.clone();
        ws.pop();
        cases.push(("final newline removed", ws, true));
        let mut crlf = Vec::new();
        for &b in &original {
            if b == b'\n' {
                crlf.push(b'\r');
            }
            crlf.push(b);
        }
        cases.push(("CRLF line ends", crlf, true));
        let compact = serde_json::to_vec(&kf).unwrap();
        cases.push(("compact JSON", compact, true));
        let mut extra: serde_json::Value = serde_json::from_slice(&original).unwrap();
        extra["comment"] = serde_json::json!("hi");
        let mut extra = serde_json::to_vec_pretty(&extra).unwrap();
        extra.push(b'\n');
        cases.push(("unknown field", extra, true));
        cases.push(("truncated", original[..original.len() / 2].to_vec(), true));
        cases.push(("empty", Vec::new(), true));
        cases.push(("binary garbage", XorShift::new(3).bytes(300), true));

        for (what, bytes, parse_fails) in cases {
            assert_ne!(bytes, original, "{what}: not a change");
            std::fs::write(&path, &bytes).unwrap();
            assert_eq!(
                KeyFile::parse(&bytes).is_err(),
                parse_fails,
                "{what}: parse result"
            );
            let err = open_err(tmp.path(), PASSWORD).await;
            let msg = err.to_string();
            assert!(msg.contains("key file"), "{what}: {msg}");
            if parse_fails {
                assert!(
                    matches!(err, RepoError::KeyFileDamaged { .. }),
                    "{what}: {err:?}"
                );
                assert!(msg.contains(&format!("keys/{name}")), "{what}: {msg}");
                assert!(
                    msg.contains("tampered") || msg.contains("damaged"),
                    "{what}: {msg}"
                );
            } else if what.contains("shortened") || what.contains("not base64") {
                // Undecodable: the file is damaged, whatever the password.
                assert!(
                    matches!(err, RepoError::KeyFileDamaged { .. }),
                    "{what}: {err:?}"
                );
                assert!(msg.contains(&format!("keys/{name}")), "{what}: {msg}");
            } else {
                // Authenticated fields changed: indistinguishable from a wrong password by
                // design (the whole header is bound to the wrapped key).
                assert!(
                    matches!(
                        err,
                        RepoError::WrongPassword(1) | RepoError::KeyFileDamaged { .. }
                    ),
                    "{what}: {err:?}"
                );
            }
        }
        // Restored, the file works again.
        std::fs::write(&path, &original).unwrap();
        Repository::open(local(tmp.path()), PASSWORD).await.unwrap();
        // A key file moved to another name does not open (its name is bound too).
        let other = path.with_file_name(strongroom_repo::Id::random().to_hex());
        std::fs::rename(&path, &other).unwrap();
        let err = open_err(tmp.path(), PASSWORD).await;
        assert!(err.to_string().contains("key file"), "{err}");
        std::fs::rename(&other, &path).unwrap();
        Repository::open(local(tmp.path()), PASSWORD).await.unwrap();
    });
}

/// Two keys: each opens the repository; after removing one, the other still works and the
/// removed password fails; the last key cannot be removed; a damaged second key file does
/// not stop the good one.
#[test]
fn two_keys_remove_one_the_other_works() {
    let rt = common::runtime();
    let tmp = common::tempdir();
    let src = tmp.path().join("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("a"), b"alpha").unwrap();
    let repo_dir = tmp.path().join("repo");
    rt.block_on(async {
        let repo = init(&repo_dir).await;
        let g = lock::lock(&repo, false, "b").await.unwrap();
        let (sid, _) = archiver::backup_paths(
            &repo,
            &g,
            std::slice::from_ref(&src),
            BackupOptions::default(),
        )
        .await
        .unwrap();
        g.release().await.unwrap();
        let first = repo.key_id().unwrap();
        let second = repo
            .add_key(b"second password", KdfParams::MINIMUM)
            .await
            .unwrap();
        let a = Repository::open(local(&repo_dir), PASSWORD).await.unwrap();
        let b = Repository::open(local(&repo_dir), b"second password")
            .await
            .unwrap();
        assert_eq!(a.key_id(), Some(first));
        assert_eq!(b.key_id(), Some(second));
        let err = open_err(&repo_dir, b"neither").await;
        assert!(matches!(err, RepoError::WrongPassword(2)), "{err:?}");
        // A damaged second key file does not lock out the first password.
        let second_path = repo_dir.join("keys").join(second.to_hex());
        let second_bytes = std::fs::read(&second_path).unwrap();
        std::fs::write(&second_path, b"{ damaged").unwrap();
        Repository::open(local(&repo_dir), PASSWORD).await.unwrap();
        std::fs::write(&second_path, &second_bytes).unwrap();
        // Remove the first key, through the second.
        b.remove_key(&first).await.unwrap();
        let err = open_err(&repo_dir, PASSWORD).await;
        assert!(matches!(err, RepoError::WrongPassword(1)), "{err:?}");
        let b = Repository::open(local(&repo_dir), b"second password")
            .await
            .unwrap();
        b.load_index().await.unwrap();
        let (_, snap) = b.find_snapshot(&sid.to_hex()).await.unwrap();
        let t = tmp.path().join("r");
        restorer::restore_to_dir(&b, &snap, &t, &RestoreOptions::default())
            .await
            .unwrap();
        assert_eq!(std::fs::read(t.join("src/a")).unwrap(), b"alpha");
        // The last key cannot go.
        let err = b.remove_key(&second).await.unwrap_err();
        assert!(err.to_string().contains("only key"), "{err}");
        let err = b.remove_key(&first).await.unwrap_err();
        assert!(matches!(err, RepoError::Invalid(_)), "{err}");
        Repository::open(local(&repo_dir), b"second password")
            .await
            .unwrap();
    });
}

/// After change_password the old password fails, the new one works and reads the same data.
#[test]
fn change_password_retires_the_old_one() {
    let rt = common::runtime();
    let tmp = common::tempdir();
    let repo_dir = tmp.path().join("repo");
    rt.block_on(async {
        let repo = init(&repo_dir).await;
        let data = XorShift::new(5).bytes(100_000);
        let sid = back_up_stream(&repo, &data).await;
        drop(repo);
        let mut repo = Repository::open(local(&repo_dir), PASSWORD).await.unwrap();
        let old = repo.key_id();
        let new = repo
            .change_password(b"new password", KdfParams::MINIMUM)
            .await
            .unwrap();
        assert_ne!(old, Some(new));
        assert_eq!(repo.key_id(), Some(new));
        let err = open_err(&repo_dir, PASSWORD).await;
        assert!(matches!(err, RepoError::WrongPassword(1)), "{err:?}");
        let r = Repository::open(local(&repo_dir), b"new password")
            .await
            .unwrap();
        assert_eq!(r.key_id(), Some(new));
        r.load_index().await.unwrap();
        let (_, snap) = r.find_snapshot(&sid.to_hex()).await.unwrap();
        let mut out = Vec::new();
        restorer::restore_stream(&r, &snap, &mut out).await.unwrap();
        assert!(out == data);
        let report = checker::check(&r, ReadData::All).await.unwrap();
        assert!(report.is_ok(), "{:?}", report.errors);
        let keys = r.storage().list(Kind::Key).await.unwrap();
        assert_eq!(keys.len(), 1);
    });
}

/// A master key file opens the repository it was written for without a password, keeps
/// doing so after the password changes, reads the same data, cannot change a password it
/// does not have, and is refused by any other repository.
#[test]
fn a_master_key_file_opens_its_repository_and_no_other() {
    let rt = common::runtime();
    let tmp = common::tempdir();
    let repo_dir = tmp.path().join("repo");
    let other_dir = tmp.path().join("other");
    rt.block_on(async {
        let repo = init(&repo_dir).await;
        let data = XorShift::new(9).bytes(50_000);
        let sid = back_up_stream(&repo, &data).await;
        let bytes = repo.master_key_file().to_bytes();
        let file = MasterKeyFile::parse(&bytes).unwrap();
        let credential = Credential::MasterKey(Box::new(file.clone()));
        assert_eq!(file.repository(), repo.config().id);
        // The password changes; the master key file still opens the repository.
        drop(repo);
        let mut by_password = Repository::open(local(&repo_dir), PASSWORD).await.unwrap();
        by_password
            .change_password(b"changed", KdfParams::MINIMUM)
            .await
            .unwrap();
        let mut r = Repository::open_with(local(&repo_dir), &credential)
            .await
            .unwrap();
        assert_eq!(r.key_id(), None);
        r.load_index().await.unwrap();
        let (_, snap) = r.find_snapshot(&sid.to_hex()).await.unwrap();
        let mut out = Vec::new();
        restorer::restore_stream(&r, &snap, &mut out).await.unwrap();
        assert!(out == data);
        // No password is in use, so none can be changed; adding one works.
        let err = r
            .change_password(b"x", KdfParams::MINIMUM)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("key add"), "{err}");
        r.add_key(b"added", KdfParams::MINIMUM).await.unwrap();
        Repository::open(local(&repo_dir), b"added").await.unwrap();
        // Another repository refuses it, naming both sides.
        init(&other_dir).await;
        let err = Repository::open_with(local(&other_dir), &credential)
            .await
            .unwrap_err();
        assert!(
            matches!(err, RepoError::MasterKeyMismatch { .. }),
            "{err:?}"
        );
        let msg = err.to_string();
        assert!(msg.contains(&file.repository().to_hex()), "{msg}");
        assert!(msg.contains("another repository"), "{msg}");
    });
}
