//! The command-line interface other tools drive, run as the real binary: init, backup of
//! folders and of stdin, snapshots --json, restore (prefix, latest, --stdout, --include),
//! verify (structure, --read-data, the rotating --read-data-subset), forget, prune, export,
//! stats; bad input (missing path, special file, not a repository, unknown snapshot, wrong
//! password, a full disk) gives a clear error and a non-zero exit and leaves the repository
//! valid; a backup in another process keeps prune out; the same commands on an s3://
//! repository (against `STRONGROOM_TEST_S3_ENDPOINT`, which `scripts/test` sets).
//!
//! Randomized data comes from a seeded generator; the seed is printed
//! (`STRONGROOM_TEST_SEED` replays it).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_strongroom");
const PASSWORD: &str = "cli test password";
/// No command of these tests should take anywhere near this long; a hang fails the test.
const TIMEOUT: Duration = Duration::from_secs(120);

// ---------------------------------------------------------------------------------------
// Helpers.

fn seed(test: &str) -> u64 {
    let seed = std::env::var("STRONGROOM_TEST_SEED")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos() as u64
        });
    eprintln!("{test}: seed {seed} (replay with STRONGROOM_TEST_SEED={seed})");
    seed
}

/// xorshift64* for test data.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(n + 8);
        while v.len() < n {
            v.extend_from_slice(&self.next().to_le_bytes());
        }
        v.truncate(n);
        v
    }
}

fn is_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

/// The output of a finished command.
struct Out {
    code: Option<i32>,
    stdout: Vec<u8>,
    stderr: String,
}

impl Out {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}):\n{}\nstderr: {}",
                self.text(),
                self.stderr
            )
        })
    }
}

/// Waits for a child with a deadline, collecting its output; kills it on timeout.
fn finish(mut child: Child, what: &str) -> Out {
    let mut so = child.stdout.take();
    let mut se = child.stderr.take();
    let t_out = std::thread::spawn(move || {
        let mut v = Vec::new();
        if let Some(s) = so.as_mut() {
            let _ = s.read_to_end(&mut v);
        }
        v
    });
    let t_err = std::thread::spawn(move || {
        let mut v = Vec::new();
        if let Some(s) = se.as_mut() {
            let _ = s.read_to_end(&mut v);
        }
        v
    });
    let start = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if start.elapsed() > TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: still running after {TIMEOUT:?} (hung?)");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Out {
        code: status.code(),
        stdout: t_out.join().unwrap(),
        stderr: String::from_utf8_lossy(&t_err.join().unwrap()).into_owned(),
    }
}

/// A repository in a temporary folder, and the environment to drive it.
struct Env {
    tmp: tempfile::TempDir,
    repo: PathBuf,
    cache: PathBuf,
    password: String,
    /// An s3:// repository instead of `repo`: its URL and the server's endpoint.
    remote: Option<(String, String)>,
}

impl Env {
    /// A new, empty environment (no repository yet).
    fn bare() -> Env {
        let tmp = tempfile::Builder::new()
            .prefix("strongroom-cli-")
            .tempdir()
            .unwrap();
        let repo = tmp.path().join("repo");
        let cache = tmp.path().join("cache");
        Env {
            tmp,
            repo,
            cache,
            password: PASSWORD.into(),
            remote: None,
        }
    }

    /// A new environment whose repository is a fresh prefix of a bucket on the test S3
    /// server, or `None` (said on stderr) without one.
    fn bare_s3() -> Option<Env> {
        let Some(endpoint) = std::env::var("STRONGROOM_TEST_S3_ENDPOINT")
            .ok()
            .filter(|e| !e.is_empty())
        else {
            eprintln!(
                "skipped: STRONGROOM_TEST_S3_ENDPOINT is not set (scripts/test starts an S3 \
                 server and sets it)"
            );
            return None;
        };
        let mut e = Env::bare();
        let name = e
            .tmp
            .path()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .to_lowercase();
        e.remote = Some((format!("s3://strongroom-cli/{name}/repo"), endpoint));
        Some(e)
    }

    /// A new environment with an initialised repository (fast key derivation).
    fn new() -> Env {
        let e = Env::bare();
        e.init(&[]);
        e
    }

    fn init(&self, extra: &[&str]) -> Out {
        let mut args = vec!["init", "--kdf-memory-mib", "19", "--kdf-passes", "2"];
        args.extend_from_slice(extra);
        self.ok(&args)
    }

    fn path(&self, p: &str) -> PathBuf {
        self.tmp.path().join(p)
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        match &self.remote {
            Some((url, endpoint)) => c
                .arg("--repo")
                .arg(url)
                .env("AWS_ENDPOINT_URL", endpoint)
                .env("AWS_ACCESS_KEY_ID", "strongroom-cli")
                .env("AWS_SECRET_ACCESS_KEY", "strongroom-cli-secret")
                .env_remove("AWS_ENDPOINT_URL_S3")
                .env_remove("AWS_SESSION_TOKEN")
                .env_remove("AWS_REGION")
                .env_remove("AWS_DEFAULT_REGION")
                .env_remove("STRONGROOM_S3_PATH_STYLE"),
            None => c.arg("--repo").arg(&self.repo),
        };
        c.args(args)
            .env("STRONGROOM_PASSWORD", &self.password)
            .env("STRONGROOM_CACHE_DIR", &self.cache)
            .env_remove("STRONGROOM_REPO")
            .env_remove("STRONGROOM_PASSWORD_FILE")
            .env_remove("STRONGROOM_MASTER_KEY_FILE")
            .env_remove("STRONGROOM_NEW_PASSWORD")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    }

    fn run_cmd(&self, mut c: Command, args: &[&str], stdin: Option<&[u8]>) -> Out {
        if stdin.is_some() {
            c.stdin(Stdio::piped());
        }
        let mut child = c.spawn().unwrap();
        if let Some(data) = stdin {
            let mut si = child.stdin.take().unwrap();
            let data = data.to_vec();
            std::thread::spawn(move || {
                let _ = si.write_all(&data);
            });
        }
        finish(child, &format!("strongroom {}", args.join(" ")))
    }

    fn run(&self, args: &[&str]) -> Out {
        self.run_cmd(self.cmd(args), args, None)
    }

    fn run_stdin(&self, args: &[&str], stdin: &[u8]) -> Out {
        self.run_cmd(self.cmd(args), args, Some(stdin))
    }

    /// Runs and requires exit code 0.
    fn ok(&self, args: &[&str]) -> Out {
        let o = self.run(args);
        assert_eq!(
            o.code,
            Some(0),
            "strongroom {} failed:\nstdout: {}\nstderr: {}",
            args.join(" "),
            o.text(),
            o.stderr
        );
        o
    }

    fn ok_stdin(&self, args: &[&str], stdin: &[u8]) -> Out {
        let o = self.run_stdin(args, stdin);
        assert_eq!(
            o.code,
            Some(0),
            "strongroom {} failed:\nstdout: {}\nstderr: {}",
            args.join(" "),
            o.text(),
            o.stderr
        );
        o
    }

    /// Runs and requires a failure (exit code 1) whose message contains every `needle`
    /// (case-insensitive).
    fn fails(&self, args: &[&str], needles: &[&str]) -> Out {
        let o = self.run(args);
        check_failure(&o, args, needles);
        o
    }

    /// Backs up and returns the new snapshot's id (from --json).
    fn backup(&self, args: &[&str]) -> String {
        let mut a = vec!["backup", "--json"];
        a.extend_from_slice(args);
        self.ok(&a).json()["snapshot_id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    fn backup_stdin(&self, name: &str, data: &[u8]) -> String {
        self.ok_stdin(&["backup", "--json", "--stdin", name], data)
            .json()["snapshot_id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    fn snapshots(&self) -> Vec<serde_json::Value> {
        self.ok(&["snapshots", "--json"])
            .json()
            .as_array()
            .unwrap()
            .clone()
    }

    fn snapshot_ids(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .snapshots()
            .iter()
            .map(|s| s["id"].as_str().unwrap().to_owned())
            .collect();
        v.sort();
        v
    }

    /// `verify --read-data` passes.
    fn verify(&self) {
        let o = self.ok(&["verify", "--read-data", "--json"]);
        let v = o.json();
        assert_eq!(v["ok"], true, "{v}");
        assert!(v["errors"].as_array().unwrap().is_empty(), "{v}");
    }

    /// Every file of the repository, by path, with its bytes.
    fn files(&self) -> BTreeMap<PathBuf, Vec<u8>> {
        let mut out = BTreeMap::new();
        let mut stack = vec![self.repo.clone()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let e = e.unwrap();
                if e.file_type().unwrap().is_dir() {
                    stack.push(e.path());
                } else {
                    out.insert(e.path(), std::fs::read(e.path()).unwrap());
                }
            }
        }
        out
    }

    fn packs(&self) -> usize {
        self.files()
            .keys()
            .filter(|p| p.starts_with(self.repo.join("data")))
            .count()
    }
}

fn check_failure(o: &Out, args: &[&str], needles: &[&str]) {
    assert_eq!(
        o.code,
        Some(1),
        "strongroom {} should fail with exit code 1:\nstdout: {}\nstderr: {}",
        args.join(" "),
        o.text(),
        o.stderr
    );
    let err = o.stderr.to_lowercase();
    assert!(
        err.contains("error"),
        "no error on stderr for {args:?}: {}",
        o.stderr
    );
    for n in needles {
        assert!(
            err.contains(&n.to_lowercase()),
            "strongroom {}: stderr does not mention {n:?}:\n{}",
            args.join(" "),
            o.stderr
        );
    }
    assert!(
        !o.stderr.contains("panicked"),
        "a panic instead of an error: {}",
        o.stderr
    );
}

/// What a restore must reproduce of one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Meta {
    File {
        mode: u32,
        owner: (u32, u32),
        mtime: (i64, i64),
        data: Vec<u8>,
    },
    Dir {
        mode: u32,
        owner: (u32, u32),
        mtime: (i64, i64),
    },
    Link {
        owner: (u32, u32),
        mtime: (i64, i64),
        target: Vec<u8>,
    },
}

/// `root` and everything under it, by relative path bytes starting with root's name.
fn scan(root: &Path) -> BTreeMap<Vec<u8>, Meta> {
    fn go(p: &Path, rel: Vec<u8>, out: &mut BTreeMap<Vec<u8>, Meta>) {
        let md = std::fs::symlink_metadata(p).unwrap();
        let owner = (md.uid(), md.gid());
        let mtime = (md.mtime(), md.mtime_nsec());
        let mode = md.mode() & 0o7777;
        let ft = md.file_type();
        let m = if ft.is_dir() {
            Meta::Dir { mode, owner, mtime }
        } else if ft.is_symlink() {
            Meta::Link {
                owner,
                mtime,
                target: std::fs::read_link(p)
                    .unwrap()
                    .as_os_str()
                    .as_bytes()
                    .to_vec(),
            }
        } else if ft.is_file() {
            Meta::File {
                mode,
                owner,
                mtime,
                data: std::fs::read(p).unwrap(),
            }
        } else {
            return; // special files are not backed up
        };
        out.insert(rel.clone(), m);
        if ft.is_dir() {
            for e in std::fs::read_dir(p).unwrap() {
                let e = e.unwrap();
                go(
                    &e.path(),
                    [rel.as_slice(), b"/", e.file_name().as_bytes()].concat(),
                    out,
                );
            }
        }
    }
    let mut out = BTreeMap::new();
    go(
        root,
        root.file_name().unwrap().as_bytes().to_vec(),
        &mut out,
    );
    out
}

fn scan_children(dir: &Path) -> BTreeMap<Vec<u8>, Meta> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(dir).unwrap() {
        out.extend(scan(&e.unwrap().path()));
    }
    out
}

/// The same, with times cut to seconds (what tar keeps).
fn to_seconds(m: &BTreeMap<Vec<u8>, Meta>) -> BTreeMap<Vec<u8>, Meta> {
    m.iter()
        .map(|(k, v)| {
            let mut v = v.clone();
            match &mut v {
                Meta::File { mtime, .. } | Meta::Dir { mtime, .. } | Meta::Link { mtime, .. } => {
                    mtime.1 = 0;
                }
            }
            (k.clone(), v)
        })
        .collect()
}

fn assert_same(expected: &BTreeMap<Vec<u8>, Meta>, actual: &BTreeMap<Vec<u8>, Meta>, what: &str) {
    if expected == actual {
        return;
    }
    let show = |k: &[u8]| String::from_utf8_lossy(k).into_owned();
    let mut d = Vec::new();
    for (k, v) in expected {
        match actual.get(k) {
            None => d.push(format!("missing {:?}", show(k))),
            Some(a) if a != v => {
                let brief = |m: &Meta| match m {
                    Meta::File {
                        mode,
                        owner,
                        mtime,
                        data,
                    } => format!(
                        "file mode {mode:o} owner {owner:?} mtime {mtime:?} {} bytes",
                        data.len()
                    ),
                    other => format!("{other:?}"),
                };
                d.push(format!(
                    "differs {:?}: expected {} / actual {}",
                    show(k),
                    brief(v),
                    brief(a)
                ));
            }
            Some(_) => {}
        }
    }
    for k in actual.keys() {
        if !expected.contains_key(k) {
            d.push(format!("unexpected {:?}", show(k)));
        }
    }
    d.truncate(10);
    panic!("{what}:\n{}", d.join("\n"));
}

/// A folder with nested folders, odd names, a symlink, modes and times.
fn make_tree(root: &Path, rng: &mut Rng) {
    std::fs::create_dir_all(root.join("sub/deeper")).unwrap();
    std::fs::write(root.join("small.txt"), b"hello strongroom\n").unwrap();
    std::fs::write(root.join("random.bin"), rng.bytes(700_000)).unwrap();
    std::fs::write(
        root.join("sub/text with spaces.txt"),
        "some text\n".repeat(5000),
    )
    .unwrap();
    std::fs::write(root.join("sub/deeper/empty"), b"").unwrap();
    std::fs::write(root.join("-leading-dash"), b"dash").unwrap();
    std::fs::write(root.join("ünïcødé 日本"), b"unicode").unwrap();
    std::fs::write(
        root.join(std::ffi::OsStr::from_bytes(b"bad-\xff\xfe-name")),
        b"bytes",
    )
    .unwrap();
    std::fs::write(root.join("l".repeat(200)), rng.bytes(1000)).unwrap();
    std::fs::write(root.join("sub/script.sh"), b"#!/bin/sh\necho hi\n").unwrap();
    std::fs::set_permissions(
        root.join("sub/script.sh"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    std::fs::set_permissions(
        root.join("small.txt"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    std::os::unix::fs::symlink("../small.txt", root.join("sub/link")).unwrap();
    std::os::unix::fs::symlink("/nonexistent/dangling", root.join("dangling")).unwrap();
    let t = filetime::FileTime::from_unix_time(1_650_000_000, 123_456_789);
    filetime::set_file_mtime(root.join("random.bin"), t).unwrap();
    filetime::set_symlink_file_times(root.join("sub/link"), t, t).unwrap();
    for d in ["sub/deeper", "sub", ""] {
        filetime::set_file_mtime(root.join(d), t).unwrap();
    }
}

/// The shortest prefix of `id` (at least 4) that no other id shares.
fn unique_prefix(id: &str, all: &[String]) -> String {
    (4..id.len())
        .map(|n| &id[..n])
        .find(|p| all.iter().filter(|o| o.starts_with(p)).count() == 1)
        .unwrap_or(id)
        .to_owned()
}

// ---------------------------------------------------------------------------------------
// The interface.

/// init; backup of two folders with a tag; backup of stdin; snapshots --json; restore by
/// unique prefix, by "latest", with --include, and --stdout for a stream.
#[test]
fn backup_snapshots_restore() {
    let mut rng = Rng::new(seed("backup_snapshots_restore"));
    let e = Env::bare();
    let init = e.init(&["--json"]).json();
    assert_eq!(init["id"].as_str().unwrap().len(), 64, "{init}");
    // A second init refuses and changes nothing.
    let before = e.files();
    e.fails(
        &["init", "--kdf-memory-mib", "19", "--kdf-passes", "2"],
        &["already"],
    );
    assert_eq!(before, e.files());

    let media = e.path("media");
    let uploads = e.path("uploads");
    make_tree(&media, &mut rng);
    std::fs::create_dir(&uploads).unwrap();
    std::fs::write(uploads.join("a.jpg"), rng.bytes(50_000)).unwrap();
    let dump: Vec<u8> = {
        let mut d = b"-- dump\n".to_vec();
        d.extend(rng.bytes(1_500_000));
        d.extend("INSERT INTO t VALUES (1);\n".repeat(40_000).into_bytes());
        d
    };
    let stream_id = e.backup_stdin("clinic.dump", &dump);
    let files_id = e.backup(&[
        "--path",
        media.to_str().unwrap(),
        "--path",
        uploads.to_str().unwrap(),
        "--tag",
        "nightly",
    ]);
    // snapshots --json: an array; id, time (RFC 3339), kind, source, size.
    let snaps = e.snapshots();
    assert_eq!(snaps.len(), 2, "{snaps:?}");
    let by_id = |id: &str| {
        snaps
            .iter()
            .find(|s| s["id"] == id)
            .unwrap_or_else(|| panic!("{id} not listed"))
            .clone()
    };
    let s = by_id(&stream_id);
    assert_eq!(s["kind"], "stream");
    assert_eq!(s["source"], "clinic.dump");
    assert_eq!(s["size"].as_u64().unwrap(), dump.len() as u64);
    let f = by_id(&files_id);
    assert_eq!(f["kind"], "files");
    assert_eq!(
        f["source"].as_str().unwrap(),
        format!("{}, {}", media.display(), uploads.display())
    );
    assert!(f["tags"].as_array().unwrap().contains(&"nightly".into()));
    let expected = {
        let mut m = scan(&media);
        m.extend(scan(&uploads));
        m
    };
    let total: u64 = expected
        .values()
        .map(|m| match m {
            Meta::File { data, .. } => data.len() as u64,
            _ => 0,
        })
        .sum();
    assert_eq!(f["size"].as_u64().unwrap(), total);
    let mut times = Vec::new();
    for s in &snaps {
        for key in ["id", "time", "kind", "source", "size"] {
            assert!(!s[key].is_null(), "{key} missing in {s}");
        }
        let t = chrono::DateTime::parse_from_rfc3339(s["time"].as_str().unwrap())
            .unwrap_or_else(|e| panic!("time of {s} is not RFC 3339: {e}"));
        let age = chrono::Utc::now().signed_duration_since(t);
        assert!(age.num_seconds() >= 0 && age.num_seconds() < 600, "{t}");
        times.push(t);
    }
    assert!(times[0] <= times[1], "not sorted by time");
    // The human listing names both.
    let human = e.ok(&["snapshots"]).text();
    assert!(
        human.contains(&stream_id[..8]) && human.contains(&files_id[..8]),
        "{human}"
    );
    // --tag filters.
    let tagged = e.ok(&["snapshots", "--json", "--tag", "nightly"]).json();
    assert_eq!(tagged.as_array().unwrap().len(), 1);

    // restore by unique prefix.
    let ids = e.snapshot_ids();
    let prefix = unique_prefix(&files_id, &ids);
    let t1 = e.path("restore-prefix");
    let out = e
        .ok(&[
            "restore",
            &prefix,
            "--target",
            t1.to_str().unwrap(),
            "--json",
        ])
        .json();
    assert_eq!(out["snapshot_id"], files_id.as_str());
    assert_same(&expected, &scan_children(&t1), "restore by prefix");
    // Upper-case prefix too.
    let t1u = e.path("restore-upper");
    e.ok(&[
        "restore",
        &prefix.to_uppercase(),
        "--target",
        t1u.to_str().unwrap(),
    ]);
    assert_same(
        &expected,
        &scan_children(&t1u),
        "restore by upper-case prefix",
    );
    // restore latest (the folder backup is the newest).
    let t2 = e.path("restore-latest");
    e.ok(&["restore", "latest", "--target", t2.to_str().unwrap()]);
    assert_same(&expected, &scan_children(&t2), "restore latest");
    // --include restores only that path (and the folders leading to it).
    let t3 = e.path("restore-include");
    e.ok(&[
        "restore",
        &files_id,
        "--target",
        t3.to_str().unwrap(),
        "--include",
        "media/sub/deeper",
    ]);
    let got = scan_children(&t3);
    let want: BTreeMap<_, _> = expected
        .iter()
        .filter(|(k, _)| {
            let k = k.as_slice();
            k == b"media" || k == b"media/sub" || k.starts_with(b"media/sub/deeper")
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    assert_same(&want, &got, "restore --include");
    // --sparse restores the same tree (holes where blocks are zeros: the repo crate's tests
    // check the room taken); it has no meaning for a stream on standard output.
    let t5 = e.path("restore-sparse");
    e.ok(&[
        "restore",
        "latest",
        "--sparse",
        "--target",
        t5.to_str().unwrap(),
    ]);
    assert_same(&expected, &scan_children(&t5), "restore --sparse");
    let o = e.run(&["restore", &stream_id, "--stdout", "--sparse"]);
    assert_eq!(o.code, Some(2), "a usage error: {}", o.stderr);
    assert!(
        o.stderr
            .contains("'--stdout' cannot be used with '--sparse'"),
        "{}",
        o.stderr
    );
    // The stream: --stdout, and by --target as one file.
    let o = e.ok(&["restore", &stream_id[..12], "--stdout"]);
    assert!(o.stdout == dump, "restored stream differs");
    let t4 = e.path("restore-stream");
    e.ok(&["restore", &stream_id, "--target", t4.to_str().unwrap()]);
    assert!(std::fs::read(t4.join("clinic.dump")).unwrap() == dump);
    // A folder snapshot cannot go to --stdout.
    e.fails(&["restore", &files_id, "--stdout"], &["folder"]);
    // Backing up the same folders again reads nothing unchanged and adds no data.
    let again = e
        .ok(&[
            "backup",
            "--json",
            "--path",
            media.to_str().unwrap(),
            "--path",
            uploads.to_str().unwrap(),
        ])
        .json();
    let summary = &again["summary"];
    assert_eq!(summary["bytes_read"], 0, "{again}");
    assert!(summary["bytes_added"].as_u64().unwrap() < 20_000, "{again}");
    e.verify();
}

/// An s3:// repository: init (twice refused), backups of folders and stdin, listing, restore
/// (folder, one file, stream), verify --read-data, forget --prune, and the errors of missing
/// credentials and an unreachable server.
#[test]
fn s3_repository_end_to_end() {
    let Some(e) = Env::bare_s3() else { return };
    let mut rng = Rng::new(seed("s3_repository_end_to_end"));
    let init = e.init(&["--json"]).json();
    assert_eq!(init["id"].as_str().unwrap().len(), 64, "{init}");
    e.fails(
        &["init", "--kdf-memory-mib", "19", "--kdf-passes", "2"],
        &["already"],
    );
    let media = e.path("media");
    make_tree(&media, &mut rng);
    std::fs::write(media.join("big.bin"), rng.bytes(3_000_000)).unwrap();
    let expected = scan(&media);
    let dump = rng.bytes(2_000_000);
    let first = e.backup(&["--path", media.to_str().unwrap()]);
    let stream = e.backup_stdin("clinic.dump", &dump);
    std::fs::write(media.join("new.txt"), b"added later").unwrap();
    let second = e.backup(&["--path", media.to_str().unwrap()]);
    assert_eq!(e.snapshots().len(), 3);

    let t1 = e.path("restore-first");
    e.ok(&["restore", &first, "--target", t1.to_str().unwrap()]);
    assert_same(&expected, &scan_children(&t1), "restore from S3");
    assert!(e.ok(&["restore", &stream, "--stdout"]).stdout == dump);
    let t2 = e.path("restore-one");
    e.ok(&[
        "restore",
        &second,
        "--target",
        t2.to_str().unwrap(),
        "--include",
        "media/new.txt",
    ]);
    assert_eq!(
        std::fs::read(t2.join("media/new.txt")).unwrap(),
        b"added later"
    );
    e.verify();

    let j = e
        .ok(&["forget", "--keep-last", "1", "--prune", "--json"])
        .json();
    assert_eq!(j["remove"].as_array().unwrap().len(), 1, "{j}");
    let mut left = e.snapshot_ids();
    left.sort();
    let mut want = vec![second.clone(), stream.clone()];
    want.sort();
    assert_eq!(left, want);
    e.verify();
    let t3 = e.path("restore-after-prune");
    e.ok(&["restore", &second, "--target", t3.to_str().unwrap()]);
    assert_eq!(
        std::fs::read(t3.join("media/new.txt")).unwrap(),
        b"added later"
    );

    // Without credentials: the variable to set is named, nothing is sent.
    let (url, endpoint) = e.remote.clone().unwrap();
    let mut c = e.cmd(&["snapshots"]);
    c.env_remove("AWS_SECRET_ACCESS_KEY");
    let o = e.run_cmd(c, &["snapshots"], None);
    check_failure(
        &o,
        &["snapshots"],
        &["AWS_SECRET_ACCESS_KEY is not set", &url],
    );
    // An unreachable server: an error after the retries, naming where.
    let mut c = e.cmd(&["snapshots"]);
    c.env("AWS_ENDPOINT_URL", "http://127.0.0.1:9");
    let o = e.run_cmd(c, &["snapshots"], None);
    check_failure(&o, &["snapshots"], &["127.0.0.1:9", "attempts"]);
    assert!(!o.stderr.contains("strongroom-cli-secret"), "{}", o.stderr);
    // A bad URL is refused before anything is sent.
    let mut c = Command::new(BIN);
    c.args(["--repo", "s3://Bad_Bucket/x", "snapshots"])
        .env("AWS_ENDPOINT_URL", &endpoint)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let o = finish(c.spawn().unwrap(), "bad bucket");
    check_failure(&o, &["snapshots"], &["--repo"]);
}

/// An s3:// repository behind a fault-injecting proxy, or `None` (said) without a test server.
fn s3_behind_proxy(
    faults: strongroom_testkit::s3_proxy::Faults,
    seed: u64,
) -> Option<(Env, strongroom_testkit::s3_proxy::FaultProxy)> {
    let mut e = Env::bare_s3()?;
    let (url, upstream) = e.remote.clone().unwrap();
    let proxy = strongroom_testkit::s3_proxy::FaultProxy::start(&upstream, faults, seed);
    e.remote = Some((url, proxy.endpoint.clone()));
    Some((e, proxy))
}

/// Object-store faults (reliability plan C5): with 10 % of requests answered `503 SlowDown`
/// and 3 % of GET bodies cut off mid-way, backups, verify --read-data, restores and
/// forget --prune all succeed (the client retries), and what they leave verifies.
#[test]
fn s3_backups_survive_transient_server_errors() {
    use strongroom_testkit::s3_proxy::Faults;
    let seed = seed("s3_backups_survive_transient_server_errors");
    let faults = Faults {
        server_error_per_mille: 100,
        truncate_get_per_mille: 30,
        ..Faults::default()
    };
    let Some((e, proxy)) = s3_behind_proxy(faults, seed) else {
        return;
    };
    let mut rng = Rng::new(seed);
    e.init(&[]);
    let media = e.path("media");
    make_tree(&media, &mut rng);
    let mut ids = Vec::new();
    for round in 0..4 {
        std::fs::write(media.join(format!("round-{round}.bin")), rng.bytes(700_000)).unwrap();
        ids.push(e.backup(&["--path", media.to_str().unwrap()]));
    }
    let expected = scan(&media);
    e.verify();
    let t = e.path("restored");
    e.ok(&["restore", "latest", "--target", t.to_str().unwrap()]);
    assert_same(&expected, &scan_children(&t), "restore through faults");
    e.ok(&["forget", "--keep-last", "2", "--prune"]);
    assert_eq!(e.snapshot_ids().len(), 2);
    e.verify();
    assert!(
        proxy.injected() >= 10,
        "too few faults were injected to mean anything: {} of {} requests",
        proxy.injected(),
        proxy.forwarded()
    );
    eprintln!(
        "{} faults injected over {} forwarded requests",
        proxy.injected(),
        proxy.forwarded()
    );
}

/// A server that acknowledges pack uploads it does not keep: the backup fails (the write's
/// check finds no object) and commits no snapshot; the repository still verifies.
#[test]
fn s3_a_lost_write_fails_the_backup_and_commits_nothing() {
    use strongroom_testkit::s3_proxy::Faults;
    let seed = seed("s3_a_lost_write_fails_the_backup_and_commits_nothing");
    let Some((e, proxy)) = s3_behind_proxy(Faults::default(), seed) else {
        return;
    };
    let mut rng = Rng::new(seed);
    e.init(&[]);
    let media = e.path("media");
    make_tree(&media, &mut rng);
    let first = e.backup(&["--path", media.to_str().unwrap()]);
    proxy.set_faults(Faults {
        lose_puts_containing: Some("/data/".into()),
        ..Faults::default()
    });
    std::fs::write(media.join("new.bin"), rng.bytes(900_000)).unwrap();
    e.fails(
        &["backup", "--path", media.to_str().unwrap()],
        &["acknowledged the write", "does not have the object"],
    );
    assert!(proxy.injected() > 0);
    proxy.set_faults(Faults::default());
    assert_eq!(e.snapshot_ids(), vec![first.clone()]);
    e.verify();
    // Once the server keeps what it is sent, the next backup succeeds.
    let second = e.backup(&["--path", media.to_str().unwrap()]);
    assert_ne!(second, first);
    e.verify();
}

/// Listings in pages of 2 keys work end to end; when a later page fails, forget --prune
/// fails and deletes nothing (restic #4612, kopia #552).
#[test]
fn s3_a_listing_that_fails_midway_deletes_nothing() {
    use strongroom_testkit::s3_proxy::Faults;
    let seed = seed("s3_a_listing_that_fails_midway_deletes_nothing");
    let paged = Faults {
        list_max_keys: Some(2),
        ..Faults::default()
    };
    let Some((e, proxy)) = s3_behind_proxy(paged.clone(), seed) else {
        return;
    };
    let mut rng = Rng::new(seed);
    e.init(&[]);
    let media = e.path("media");
    std::fs::create_dir(&media).unwrap();
    for round in 0..5 {
        std::fs::write(media.join(format!("r{round}.bin")), rng.bytes(300_000)).unwrap();
        e.backup(&["--path", media.to_str().unwrap()]);
    }
    let ids = e.snapshot_ids();
    assert_eq!(ids.len(), 5, "every page of 2 was followed");
    e.verify();
    proxy.set_faults(Faults {
        fail_later_list_pages: true,
        ..paged.clone()
    });
    e.fails(&["forget", "--keep-last", "1", "--prune"], &["attempts"]);
    e.fails(&["prune"], &["attempts"]);
    assert!(proxy.injected() > 0);
    proxy.set_faults(paged);
    assert_eq!(e.snapshot_ids(), ids, "nothing was forgotten");
    e.verify();
    for id in &ids {
        let t = e.path(&format!("restore-{}", &id[..8]));
        e.ok(&["restore", id, "--target", t.to_str().unwrap()]);
    }
}

/// verify, verify --read-data, and --read-data-subset 10%: ten runs read every pack once.
#[test]
fn verify_read_data_and_rotating_subset() {
    let mut rng = Rng::new(seed("verify_read_data_and_rotating_subset"));
    let e = Env::bare();
    // Small packs: many of them to spread over the slices.
    e.init(&["--pack-size", "16384"]);
    let src = e.path("src");
    std::fs::create_dir(&src).unwrap();
    for i in 0..120 {
        let n = 5_000 + (rng.next() % 30_000) as usize;
        std::fs::write(src.join(format!("f{i:03}")), rng.bytes(n)).unwrap();
    }
    e.backup(&["--path", src.to_str().unwrap()]);
    e.backup_stdin("db.dump", &rng.bytes(2_000_000));

    let v = e.ok(&["verify", "--json"]).json();
    assert_eq!(v["ok"], true);
    assert_eq!(v["read_data"], "none");
    assert_eq!(v["packs_read"], 0);
    assert_eq!(v["snapshots"], 2);
    let human = e.ok(&["verify"]).text();
    assert!(human.contains("no errors were found"), "{human}");

    let all = e.ok(&["verify", "--read-data", "--json"]).json();
    assert_eq!(all["ok"], true, "{all}");
    assert_eq!(all["read_data"], "all");
    let total = all["packs_read"].as_u64().unwrap();
    assert_eq!(total as usize, e.packs(), "--read-data reads every pack");
    assert!(total >= 40, "too few packs to test the rotation: {total}");

    let mut sum = 0;
    let mut first = None;
    for run in 1..=10 {
        let v = e
            .ok(&["verify", "--read-data-subset", "10%", "--json"])
            .json();
        assert_eq!(v["ok"], true, "{v}");
        assert_eq!(v["read_data"], format!("{run}/10"), "the slices rotate");
        let n = v["packs_read"].as_u64().unwrap();
        assert!(n > 0 && n < total, "run {run} read {n} of {total} packs");
        first.get_or_insert(n);
        sum += n;
    }
    assert_eq!(sum, total, "ten runs of 10% read every pack exactly once");
    // The eleventh run starts over.
    let v = e
        .ok(&["verify", "--read-data-subset", "10%", "--json"])
        .json();
    assert_eq!(v["read_data"], "1/10");
    assert_eq!(v["packs_read"].as_u64(), first);
    // A fixed slice.
    let v = e
        .ok(&["verify", "--read-data-subset", "2/5", "--json"])
        .json();
    assert_eq!(v["read_data"], "2/5");
    for bad in ["0%", "150%", "abc", "6/5", "0/3"] {
        e.fails(
            &["verify", "--read-data-subset", bad],
            &["--read-data-subset"],
        );
    }

    // A damaged byte in a pack: structure-only verify may not see it, --read-data does, and
    // names the pack.
    let packs: Vec<PathBuf> = e
        .files()
        .keys()
        .filter(|p| p.starts_with(e.repo.join("data")))
        .cloned()
        .collect();
    let victim = &packs[packs.len() / 2];
    let original = std::fs::read(victim).unwrap();
    let mut bad = original.clone();
    let at = bad.len() / 3;
    bad[at] ^= 0x40;
    std::fs::write(victim, &bad).unwrap();
    let name = victim.file_name().unwrap().to_str().unwrap();
    let o = e.fails(&["verify", "--read-data"], &["damaged", &name[..8]]);
    assert!(o.text().contains("error") || o.stderr.contains(&name[..8]));
    let j = e.run(&["verify", "--read-data", "--json"]);
    assert_eq!(j.code, Some(1));
    assert_eq!(j.json()["ok"], false);
    std::fs::write(victim, &original).unwrap();
    e.verify();
}

/// forget --dry-run and prune --dry-run change nothing; forget --keep-last 1 --prune keeps
/// the newest snapshot of each source and frees the rest.
#[test]
fn forget_and_prune() {
    let mut rng = Rng::new(seed("forget_and_prune"));
    let e = Env::new();
    let a = e.path("a");
    let b = e.path("b");
    std::fs::create_dir(&a).unwrap();
    std::fs::create_dir(&b).unwrap();
    std::fs::write(b.join("b.bin"), rng.bytes(300_000)).unwrap();
    let mut a_ids = Vec::new();
    for i in 0..3 {
        std::fs::write(a.join(format!("round-{i}")), rng.bytes(400_000)).unwrap();
        a_ids.push(e.backup(&["--path", a.to_str().unwrap()]));
    }
    let a_state = scan(&a);
    let d1 = rng.bytes(500_000);
    let d2 = rng.bytes(500_000);
    let s1 = e.backup_stdin("db.dump", &d1);
    let s2 = e.backup_stdin("db.dump", &d2);
    let b_id = e.backup(&["--path", b.to_str().unwrap()]);
    let b_state = scan(&b);
    assert_eq!(e.snapshots().len(), 6);

    // --dry-run: the plan is shown, nothing changes.
    let before = e.files();
    let plan = e
        .ok(&[
            "forget",
            "--keep-daily",
            "7",
            "--keep-weekly",
            "4",
            "--dry-run",
            "--json",
        ])
        .json();
    assert_eq!(plan["dry_run"], true);
    // All were made today: one per source is kept, two of "a" and one stream would go.
    let mut remove: Vec<String> = plan["remove"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    remove.sort();
    let mut want = vec![a_ids[0].clone(), a_ids[1].clone(), s1.clone()];
    want.sort();
    assert_eq!(remove, want);
    let human = e
        .ok(&[
            "forget",
            "--keep-daily",
            "7",
            "--keep-weekly",
            "4",
            "--dry-run",
        ])
        .text();
    assert!(human.contains("dry run"), "{human}");
    assert_eq!(before, e.files(), "forget --dry-run changed the repository");
    let p = e.ok(&["prune", "--dry-run", "--json"]).json();
    assert_eq!(p["dry_run"], true);
    assert_eq!(before, e.files(), "prune --dry-run changed the repository");
    e.ok(&["forget", "--keep-last", "1", "--prune", "--dry-run"]);
    assert_eq!(
        before,
        e.files(),
        "forget --prune --dry-run changed the repository"
    );
    // No policy: refused.
    e.fails(&["forget"], &["no policy"]);
    assert_eq!(before, e.files());

    // For real.
    let packs_before = e.packs();
    // --json: one document, the prune's plan included.
    let j = e
        .ok(&["forget", "--keep-last", "1", "--prune", "--json"])
        .json();
    assert_eq!(j["dry_run"], false, "{j}");
    assert_eq!(j["remove"].as_array().unwrap().len(), 3, "{j}");
    assert!(j["prune"]["delete_packs"].as_u64().unwrap() > 0, "{j}");
    let mut left = e.snapshot_ids();
    left.sort();
    let mut want = vec![a_ids[2].clone(), s2.clone(), b_id.clone()];
    want.sort();
    assert_eq!(left, want, "keep-last 1 keeps the newest of each source");
    assert!(
        e.packs() < packs_before,
        "prune freed nothing ({} packs before, {} after)",
        packs_before,
        e.packs()
    );
    e.verify();
    // Nothing left to prune.
    let p = e.ok(&["prune", "--json"]).json();
    assert_eq!(p["delete_packs"], 0, "{p}");
    assert_eq!(p["unindexed_packs"], 0, "{p}");
    // What is left restores.
    let t = e.path("ra");
    e.ok(&["restore", &a_ids[2], "--target", t.to_str().unwrap()]);
    assert_same(&a_state, &scan_children(&t), "a after prune");
    let t = e.path("rb");
    e.ok(&["restore", &b_id, "--target", t.to_str().unwrap()]);
    assert_same(&b_state, &scan_children(&t), "b after prune");
    assert!(e.ok(&["restore", &s2, "--stdout"]).stdout == d2);
    // Forgetting by id.
    e.ok(&["forget", &b_id[..10]]);
    assert_eq!(e.snapshots().len(), 2);
    e.verify();
}

/// export: a stream's bytes, identical; a folder as a tar that `tar -x` extracts identical
/// to the source (times to the second, as tar keeps them).
/// `snapshots` keeps a local cache of decoded snapshots; it follows the repository (a
/// forgotten snapshot goes, a new one comes), a damaged cache is rebuilt, and `--no-cache`
/// writes none.
#[test]
fn the_snapshot_cache_follows_the_repository() {
    let e = Env::new();
    let first = e.backup_stdin("db.dump", b"first dump");
    let second = e.backup_stdin("db.dump", b"second dump");
    let mut both = vec![first.clone(), second.clone()];
    both.sort();
    assert_eq!(e.snapshot_ids(), both);
    // One folder per repository, holding the cache file; the folder is tagged as a cache.
    let folders: Vec<PathBuf> = std::fs::read_dir(&e.cache)
        .unwrap()
        .map(|d| d.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    assert_eq!(folders.len(), 1, "{folders:?}");
    let cache_file = folders[0].join("snapshots");
    assert!(cache_file.is_file());
    assert!(e.cache.join("CACHEDIR.TAG").is_file());

    e.ok(&["forget", &first]);
    assert_eq!(e.snapshot_ids(), vec![second.clone()]);
    let third = e.backup_stdin("db.dump", b"third dump");
    let mut now = vec![second.clone(), third.clone()];
    now.sort();
    assert_eq!(e.snapshot_ids(), now);
    let human = e.ok(&["snapshots"]).text();
    assert!(
        human.contains(&third[..8]) && !human.contains(&first[..8]),
        "{human}"
    );

    std::fs::write(&cache_file, b"damaged").unwrap();
    assert_eq!(e.snapshot_ids(), now);
    assert!(std::fs::read(&cache_file).unwrap() != b"damaged", "rebuilt");

    let elsewhere = e.path("other-cache");
    let args = ["snapshots", "--json", "--no-cache"];
    let mut c = e.cmd(&args);
    c.env("STRONGROOM_CACHE_DIR", &elsewhere);
    let o = e.run_cmd(c, &args, None);
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    assert_eq!(o.json().as_array().unwrap().len(), 2);
    assert!(!elsewhere.exists(), "--no-cache wrote a cache");
}

#[test]
fn a_configuration_files_cache_dir_holds_the_snapshot_cache() {
    let e = Env::new();
    e.backup_stdin("db.dump", b"a dump");
    let configured = e.path("configured-cache");
    let config = e.path("strongroom.toml");
    std::fs::write(
        &config,
        format!("cache_dir = {:?}\n", configured.to_str().unwrap()),
    )
    .unwrap();
    let args = ["--config", config.to_str().unwrap(), "snapshots", "--json"];
    let mut c = e.cmd(&args);
    c.env_remove("STRONGROOM_CACHE_DIR");
    let o = e.run_cmd(c, &args, None);
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    assert_eq!(o.json().as_array().unwrap().len(), 1);
    assert!(
        configured.join("CACHEDIR.TAG").is_file(),
        "the configured cache_dir was not used"
    );
    // The environment still wins over the file, as it does for the service.
    let from_env = e.path("env-cache");
    let mut c = e.cmd(&args);
    c.env("STRONGROOM_CACHE_DIR", &from_env);
    let o = e.run_cmd(c, &args, None);
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    assert!(from_env.join("CACHEDIR.TAG").is_file());
}

#[test]
fn export_stream_and_folder() {
    let mut rng = Rng::new(seed("export_stream_and_folder"));
    let e = Env::new();
    let dump = rng.bytes(1_200_000);
    let sid = e.backup_stdin("db.dump", &dump);
    let out = e.path("db.out");
    e.ok(&["export", &sid, "--out", out.to_str().unwrap()]);
    assert!(
        std::fs::read(&out).unwrap() == dump,
        "exported stream differs"
    );
    let o = e.ok(&["export", &sid]);
    assert!(o.stdout == dump, "exported stream on stdout differs");

    let src = e.path("site");
    make_tree(&src, &mut rng);
    let fid = e.backup(&["--path", src.to_str().unwrap()]);
    let tar = e.path("site.tar");
    e.ok(&["export", &fid, "--out", tar.to_str().unwrap()]);
    assert!(
        !e.path(".site.tar.partial").exists(),
        "the partial file was left behind"
    );
    let x = e.path("extracted");
    std::fs::create_dir(&x).unwrap();
    let st = Command::new("tar")
        .arg("-x")
        .arg("-p")
        .arg("-f")
        .arg(&tar)
        .arg("-C")
        .arg(&x)
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "tar -x failed: {}",
        String::from_utf8_lossy(&st.stderr)
    );
    let mut want = to_seconds(&scan(&src));
    let mut got = to_seconds(&scan_children(&x));
    // Symlink times are not kept by every tar; compare the targets.
    for m in [&mut want, &mut got] {
        for v in m.values_mut() {
            if let Meta::Link { mtime, .. } = v {
                *mtime = (0, 0);
            }
        }
    }
    assert_same(&want, &got, "tar extracted");
}

/// backup --exclude: what the patterns match is not in the snapshot; the rest restores.
#[test]
fn backup_leaves_out_what_exclude_matches() {
    let e = Env::new();
    let src = e.path("site");
    for (rel, body) in [
        ("a.jpg", "a"),
        ("b.tmp", "b"),
        ("up/c.tmp", "c"),
        ("up/d.jpg", "d"),
        ("cache/e.bin", "e"),
    ] {
        let p = src.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, body).unwrap();
    }
    let s = src.to_str().unwrap();
    e.backup(&["--path", s, "--exclude", "*.tmp", "--exclude", "cache/**"]);
    let t = e.path("restored");
    e.ok(&["restore", "latest", "--target", t.to_str().unwrap()]);
    let got: Vec<String> = scan_children(&t)
        .keys()
        .map(|k| String::from_utf8_lossy(k).into_owned())
        .collect();
    assert_eq!(
        got,
        [
            "site",
            "site/a.jpg",
            "site/cache",
            "site/up",
            "site/up/d.jpg"
        ]
    );
}

/// stats --json: counts and sizes that add up; deduplication shows.
#[test]
fn stats_json() {
    let mut rng = Rng::new(seed("stats_json"));
    let e = Env::new();
    let data = rng.bytes(800_000);
    e.backup_stdin("a.dump", &data);
    e.backup_stdin("b.dump", &data);
    let s = e.ok(&["stats", "--json"]).json();
    assert_eq!(s["snapshots"], 2, "{s}");
    assert_eq!(s["logical_bytes"].as_u64().unwrap(), 1_600_000, "{s}");
    let unique = s["unique_bytes"].as_u64().unwrap();
    assert!((800_000..900_000).contains(&unique), "{s}");
    assert!(s["dedup_ratio"].as_f64().unwrap() > 1.7, "{s}");
    assert_eq!(s["packs"].as_u64().unwrap() as usize, e.packs(), "{s}");
    let total: u64 = e.files().values().map(|v| v.len() as u64).sum();
    assert_eq!(s["total_bytes"].as_u64().unwrap(), total, "{s}");
    let human = e.ok(&["stats"]).text();
    assert!(human.contains("deduplication"), "{human}");
}

// ---------------------------------------------------------------------------------------
// Bad input: a clear error, a non-zero exit, and a repository that still verifies.

#[test]
fn missing_or_no_backup_path() {
    let e = Env::new();
    let src = e.path("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("f"), b"data").unwrap();
    e.backup(&["--path", src.to_str().unwrap()]);
    let before = e.files();
    let missing = e.path("no-such-folder");
    e.fails(
        &[
            "backup",
            "--path",
            src.to_str().unwrap(),
            "--path",
            missing.to_str().unwrap(),
        ],
        &["no-such-folder", "does not exist", "no snapshot"],
    );
    e.fails(&["backup"], &["nothing to back up"]);
    e.fails(
        &[
            "backup",
            "--path",
            src.to_str().unwrap(),
            "--exclude",
            "img[0-9.png",
        ],
        &["--exclude", "img[0-9.png", "unclosed"],
    );
    e.fails(
        &["backup", "--stdin", "x.sql", "--exclude", "*.tmp"],
        &["--exclude applies to --path"],
    );
    let j = e.run(&["backup", "--json", "--path", missing.to_str().unwrap()]);
    assert_eq!(j.code, Some(1));
    assert!(
        j.json()["error"]
            .as_str()
            .unwrap()
            .contains("does not exist")
    );
    assert_eq!(before, e.files(), "a refused backup changed the repository");
    assert_eq!(e.snapshots().len(), 1);
    e.verify();
}

/// A FIFO (and, when not root, an unreadable file) is skipped with a warning naming it:
/// the backup does not hang, saves the rest and exits with 3.
#[test]
fn special_and_unreadable_files_are_skipped_with_a_warning() {
    let e = Env::new();
    let src = e.path("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("regular"), b"regular file").unwrap();
    let fifo = src.join("a-fifo");
    let st = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(st.success());
    let unreadable = src.join("secret");
    std::fs::write(&unreadable, b"no access").unwrap();
    std::fs::set_permissions(&unreadable, std::fs::Permissions::from_mode(0o000)).unwrap();
    let root = is_root();
    if root {
        eprintln!(
            "running as root: permission bits do not stop reads, so the unreadable-file case \
             is not exercised (the FIFO still is)"
        );
    }
    let started = Instant::now();
    let o = e.run(&["backup", "--json", "--path", src.to_str().unwrap()]);
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "backup hung on a FIFO"
    );
    assert_eq!(o.code, Some(3), "stdout {} stderr {}", o.text(), o.stderr);
    assert!(o.stderr.contains("a-fifo"), "{}", o.stderr);
    assert!(o.stderr.contains("special file"), "{}", o.stderr);
    if !root {
        assert!(o.stderr.contains("secret"), "{}", o.stderr);
    }
    let id = o.json()["snapshot_id"].as_str().unwrap().to_owned();
    let t = e.path("restored");
    e.ok(&["restore", &id, "--target", t.to_str().unwrap()]);
    assert_eq!(
        std::fs::read(t.join("src/regular")).unwrap(),
        b"regular file"
    );
    assert!(!t.join("src/a-fifo").exists());
    if root {
        assert_eq!(std::fs::read(t.join("src/secret")).unwrap(), b"no access");
    } else {
        assert!(!t.join("src/secret").exists());
    }
    std::fs::set_permissions(&unreadable, std::fs::Permissions::from_mode(0o600)).unwrap();
    e.verify();
}

#[test]
fn not_a_repository() {
    let e = Env::new();
    let empty = e.path("empty");
    std::fs::create_dir(&empty).unwrap();
    let other = e.path("other");
    std::fs::create_dir(&other).unwrap();
    std::fs::write(other.join("notes.txt"), b"just a folder").unwrap();
    for dir in [&empty, &other, &e.path("missing")] {
        for args in [
            &["snapshots"][..],
            &["verify"],
            &["backup", "--path", "/etc/hostname"],
            &["prune"],
        ] {
            let mut c = Command::new(BIN);
            c.arg("--repo")
                .arg(dir)
                .args(args)
                .env("STRONGROOM_PASSWORD", PASSWORD)
                .env_remove("STRONGROOM_REPO")
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            let o = finish(c.spawn().unwrap(), "not a repository");
            check_failure(
                &o,
                args,
                &["not a strongroom repository", "strongroom init"],
            );
        }
    }
    assert_eq!(
        std::fs::read_dir(&empty).unwrap().count(),
        0,
        "created files"
    );
    assert!(!e.path("missing").exists(), "created the folder");
    assert_eq!(std::fs::read_dir(&other).unwrap().count(), 1);
    // No repository given at all.
    let o = finish(
        Command::new(BIN)
            .arg("snapshots")
            .env_remove("STRONGROOM_REPO")
            .env("STRONGROOM_PASSWORD", PASSWORD)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
        "no repo",
    );
    check_failure(&o, &["snapshots"], &["--repo"]);
    e.verify();
}

#[test]
fn unknown_or_ambiguous_snapshot() {
    let e = Env::new();
    let mut ids = Vec::new();
    // 17 snapshots: two of them must share their first hex digit.
    for i in 0..17u8 {
        ids.push(e.backup_stdin("s.dump", &[i; 100]));
    }
    let before = e.files();
    let unknown = (0..=u32::MAX)
        .map(|n| format!("{n:08x}"))
        .find(|p| !ids.iter().any(|id| id.starts_with(p.as_str())))
        .unwrap();
    let target = e.path("t");
    for q in [unknown.as_str(), "zz-not-hex", ""] {
        e.fails(
            &["restore", q, "--target", target.to_str().unwrap()],
            &["no snapshot matches"],
        );
        e.fails(
            &["export", q, "--out", "/dev/null"],
            &["no snapshot matches"],
        );
        e.fails(&["forget", q], &["no snapshot matches"]);
    }
    assert!(!target.exists(), "a failed restore created its target");
    let shared = (0..16)
        .map(|d| format!("{d:x}"))
        .find(|c| ids.iter().filter(|id| id.starts_with(c.as_str())).count() >= 2)
        .unwrap();
    let o = e.fails(
        &["restore", &shared, "--stdout"],
        &["give more digits", &format!("\"{shared}\"")],
    );
    assert!(o.stdout.is_empty());
    e.fails(&["forget", &shared], &["give more digits"]);
    assert_eq!(before, e.files(), "refused commands changed the repository");
    e.verify();
}

#[test]
fn wrong_password() {
    let mut e = Env::new();
    let src = e.path("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("f"), b"data").unwrap();
    e.backup(&["--path", src.to_str().unwrap()]);
    let before = e.files();
    e.password = "not the password".into();
    for args in [
        &["snapshots"][..],
        &["backup", "--path", src.to_str().unwrap()],
        &["restore", "latest", "--stdout"],
        &["prune"],
        &["verify"],
    ] {
        e.fails(args, &["wrong password"]);
    }
    let j = e.run(&["snapshots", "--json"]);
    assert_eq!(j.code, Some(1));
    assert!(
        j.json()["error"]
            .as_str()
            .unwrap()
            .contains("wrong password")
    );
    // An empty password is refused before anything is tried.
    e.password = String::new();
    e.fails(&["snapshots"], &["empty"]);
    e.password = PASSWORD.into();
    assert_eq!(before, e.files());
    e.verify();
}

/// `key export-master` writes a file only its owner can read, never over an existing one;
/// with it (flag or environment) every command works without the password, also after the
/// password changed; no password can be changed through it; another repository and a
/// damaged file are refused with clear errors.
#[test]
fn a_master_key_file_replaces_the_password() {
    use std::os::unix::fs::PermissionsExt as _;
    let mut e = Env::new();
    let src = e.path("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("f"), b"patient records").unwrap();
    let key = e.path("master.key");
    let k = key.to_str().unwrap();
    let o = e.ok(&["key", "export-master", k]);
    assert!(o.text().contains("--master-key-file"), "{}", o.text());
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let written = std::fs::read(&key).unwrap();
    e.fails(&["key", "export-master", k], &["never overwritten"]);
    // Never inside the repository.
    let inside = e.repo.join("data").join("master.key");
    e.fails(
        &["key", "export-master", inside.to_str().unwrap()],
        &["inside the repository"],
    );
    assert!(!inside.exists());
    assert_eq!(std::fs::read(&key).unwrap(), written);

    // From here the password is wrong: only the key file opens the repository.
    e.password = "not the password".into();
    e.fails(&["snapshots"], &["wrong password"]);
    let id = e.backup(&["--master-key-file", k, "--path", src.to_str().unwrap()]);
    let listed = e.ok(&["snapshots", "--master-key-file", k]).text();
    assert!(listed.contains(&id[..8]), "{listed}");
    let target = e.path("restored");
    e.ok(&[
        "--master-key-file",
        k,
        "restore",
        &id,
        "--target",
        target.to_str().unwrap(),
    ]);
    let restored = std::fs::read(target.join("src").join("f")).unwrap();
    assert_eq!(restored, b"patient records");
    let mut c = e.cmd(&["verify", "--read-data"]);
    c.env("STRONGROOM_MASTER_KEY_FILE", &key);
    let o = e.run_cmd(c, &["verify", "--read-data"], None);
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    // No key file is "in use", and no password can be changed without one.
    let keys = e.ok(&["--master-key-file", k, "key", "list"]).text();
    assert!(!keys.contains('*'), "{keys}");
    let mut c = e.cmd(&["--master-key-file", k, "key", "passwd"]);
    c.env("STRONGROOM_NEW_PASSWORD", "another");
    let o = e.run_cmd(c, &["key", "passwd"], None);
    check_failure(&o, &["key", "passwd"], &["master key file", "key add"]);

    // The password changes; the key file still opens the repository.
    e.password = PASSWORD.into();
    let mut c = e.cmd(&["key", "passwd"]);
    c.env("STRONGROOM_NEW_PASSWORD", "changed password");
    let o = e.run_cmd(c, &["key", "passwd"], None);
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    e.password = "not the password".into();
    let listed = e.ok(&["--master-key-file", k, "snapshots"]).text();
    assert!(listed.contains(&id[..8]), "{listed}");

    // Another repository refuses it.
    let mut other = Env::new();
    other.password = "not the password".into();
    other.fails(
        &["--master-key-file", k, "snapshots"],
        &["does not open the repository", "another repository"],
    );
    // A damaged file is named as such, a missing one too; nothing was changed by either.
    let cut = e.path("cut.key");
    std::fs::write(&cut, &written[..written.len() / 2]).unwrap();
    e.fails(
        &["--master-key-file", cut.to_str().unwrap(), "snapshots"],
        &["master key file", "damaged"],
    );
    e.fails(
        &[
            "--master-key-file",
            e.path("absent.key").to_str().unwrap(),
            "snapshots",
        ],
        &["reading master key file"],
    );
    // A configuration file's `master_key_file` does the same (as for `strongroom serve`).
    let cfg = e.path("strongroom.toml");
    std::fs::write(
        &cfg,
        format!(
            "[repository]\npath = {:?}\nmaster_key_file = \"master.key\"\n",
            e.repo.to_str().unwrap()
        ),
    )
    .unwrap();
    let mut c = e.cmd(&["--config", cfg.to_str().unwrap(), "snapshots"]);
    c.env_remove("STRONGROOM_PASSWORD");
    let o = e.run_cmd(c, &["--config", "snapshots"], None);
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    assert!(o.text().contains(&id[..8]), "{}", o.text());
    // A file others can read still works, with a warning to chmod it.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let o = e.ok(&["--master-key-file", k, "snapshots"]);
    assert!(o.stderr.contains("chmod 600"), "{}", o.stderr);
    e.password = "changed password".into();
    e.verify();
}

/// A tmpfs mount that is unmounted when dropped.
struct Mount(PathBuf);

impl Mount {
    fn tmpfs(dir: &Path, size: &str) -> Result<Mount, String> {
        std::fs::create_dir_all(dir).unwrap();
        let o = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .map_err(|e| e.to_string())?;
        if o.status.success() {
            Ok(Mount(dir.to_path_buf()))
        } else {
            Err(String::from_utf8_lossy(&o.stderr).trim().to_owned())
        }
    }

    fn resize(&self, size: &str) {
        let st = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .status()
            .unwrap();
        assert!(st.success(), "remount failed");
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// A full disk: the backup fails with an error that says so, saves no snapshot and leaves
/// no lock; once there is space again the repository verifies, the earlier snapshot
/// restores, prune clears the leftovers and backups work. (Needs a small tmpfs; where
/// mounting is not permitted, only the restore-to-a-full-device half runs.)
#[test]
fn full_disk() {
    let mut rng = Rng::new(seed("full_disk"));
    let mut e = Env::bare();
    let small = e.path("small-disk");
    let mount = match Mount::tmpfs(&small, "4m") {
        Ok(m) => Some(m),
        Err(why) => {
            eprintln!(
                "full_disk: cannot mount a small tmpfs ({why}); testing only a restore to \
                 /dev/full. Run as root (or with CAP_SYS_ADMIN) for the repository half."
            );
            None
        }
    };
    if mount.is_some() {
        e.repo = small.join("repo");
    }
    e.init(&[]);
    let src = e.path("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("small.bin"), rng.bytes(200_000)).unwrap();
    let first = e.backup(&["--path", src.to_str().unwrap()]);
    let first_state = scan(&src);

    // A restore into a full device fails clearly.
    let devfull = Command::new(BIN)
        .arg("--repo")
        .arg(&e.repo)
        .args(["restore", &first, "--stdout"])
        .env("STRONGROOM_PASSWORD", PASSWORD)
        .env_remove("STRONGROOM_REPO")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create("/dev/full").unwrap())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let o = finish(devfull, "restore to /dev/full");
    // A folder snapshot refuses --stdout before writing; use a stream for the real check.
    check_failure(&o, &["restore", "--stdout"], &["folder"]);
    let sid = e.backup_stdin("db.dump", &rng.bytes(300_000));
    let devfull = Command::new(BIN)
        .arg("--repo")
        .arg(&e.repo)
        .args(["restore", &sid, "--stdout"])
        .env("STRONGROOM_PASSWORD", PASSWORD)
        .env_remove("STRONGROOM_REPO")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create("/dev/full").unwrap())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let o = finish(devfull, "restore to /dev/full");
    check_failure(&o, &["restore", "--stdout"], &["no space left"]);

    let Some(mount) = mount else {
        e.verify();
        return;
    };
    // 8 MiB of incompressible data into a 4 MiB file system.
    let big = e.path("big");
    std::fs::create_dir(&big).unwrap();
    for i in 0..4 {
        std::fs::write(big.join(format!("part-{i}")), rng.bytes(2_000_000)).unwrap();
    }
    let snaps_before = e.snapshot_ids();
    let o = e.run(&["backup", "--path", big.to_str().unwrap()]);
    eprintln!("full_disk: the backup said: {}", o.stderr.trim());
    check_failure(&o, &["backup"], &["no space left", "no snapshot was saved"]);
    let o = e.run_stdin(&["backup", "--stdin", "big.dump"], &rng.bytes(8_000_000));
    check_failure(
        &o,
        &["backup --stdin"],
        &["no space left", "no snapshot was saved"],
    );
    assert_eq!(
        e.snapshot_ids(),
        snaps_before,
        "a failed backup left a snapshot"
    );
    let locks = std::fs::read_dir(e.repo.join("locks")).unwrap().count();
    assert_eq!(locks, 0, "a failed backup left its lock");
    let tmp_left: Vec<PathBuf> = e
        .files()
        .into_keys()
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .collect();
    assert!(tmp_left.is_empty(), "temporary files left: {tmp_left:?}");
    // Even full, the repository verifies (leftover packs are warnings, not errors).
    let v = e.ok(&["verify", "--json"]).json();
    assert_eq!(v["ok"], true, "{v}");
    // Free space: the earlier snapshot restores, prune removes the leftovers, backups work.
    mount.resize("64m");
    e.verify();
    let t = e.path("restored");
    e.ok(&["restore", &first, "--target", t.to_str().unwrap()]);
    assert_same(
        &first_state,
        &scan_children(&t),
        "earlier snapshot after a full disk",
    );
    e.ok(&["prune"]);
    let v = e.ok(&["verify", "--read-data", "--json"]).json();
    assert!(v["warnings"].as_array().unwrap().is_empty(), "{v}");
    let id = e.backup(&["--path", big.to_str().unwrap()]);
    let t = e.path("restored-big");
    e.ok(&["restore", &id, "--target", t.to_str().unwrap()]);
    assert_same(&scan(&big), &scan_children(&t), "big after space was freed");
    e.verify();
    drop(mount);
}

// ---------------------------------------------------------------------------------------
// Several processes.

/// Waits until the repository has a lock file.
fn wait_for_lock(repo: &Path) {
    let start = Instant::now();
    while std::fs::read_dir(repo.join("locks"))
        .map(|d| d.count())
        .unwrap_or(0)
        == 0
    {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the backup never took its lock"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A `backup --stdin` held open by a pipe this test controls: meanwhile prune and forget in
/// other processes are refused with an error naming the lock, another backup runs; when the
/// stream ends the backup completes and restores; then prune runs.
#[test]
fn prune_refused_while_a_backup_process_runs() {
    let mut rng = Rng::new(seed("prune_refused_while_a_backup_process_runs"));
    let e = Env::new();
    let data = rng.bytes(4_000_000);
    let mut c = e.cmd(&["backup", "--json", "--stdin", "held.dump"]);
    c.stdin(Stdio::piped());
    let mut child = c.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(&data[..1_500_000]).unwrap();
    stdin.flush().unwrap();
    wait_for_lock(&e.repo);
    let o = e.fails(&["prune"], &["locked", "backup", "unlock"]);
    assert!(o.stderr.contains(&child.id().to_string()), "{}", o.stderr);
    e.fails(&["forget", "--keep-last", "1", "--prune"], &["locked"]);
    e.fails(&["prune", "--dry-run"], &["locked"]);
    // Shared locks coexist: another backup runs meanwhile.
    let other = rng.bytes(100_000);
    let other_id = e.backup_stdin("other.dump", &other);
    // The held backup is still running.
    assert!(
        child.try_wait().unwrap().is_none(),
        "the backup ended early"
    );
    stdin.write_all(&data[1_500_000..]).unwrap();
    drop(stdin);
    let o = finish(child, "held backup");
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    let id = o.json()["snapshot_id"].as_str().unwrap().to_owned();
    assert!(e.ok(&["restore", &id, "--stdout"]).stdout == data);
    assert!(e.ok(&["restore", &other_id, "--stdout"]).stdout == other);
    // Free again.
    e.ok(&["prune"]);
    e.verify();
}

/// A backup process killed mid-stream leaves a lock of a process that is gone: it does not
/// block prune (which removes it and the orphaned data), and `unlock` can remove it too.
#[test]
fn killed_backup_leaves_a_stale_lock_that_does_not_block() {
    let mut rng = Rng::new(seed(
        "killed_backup_leaves_a_stale_lock_that_does_not_block",
    ));
    let e = Env::new();
    let keep = rng.bytes(200_000);
    let keep_id = e.backup_stdin("keep.dump", &keep);
    for round in 0..2 {
        let mut c = e.cmd(&["backup", "--stdin", "killed.dump"]);
        c.stdin(Stdio::piped());
        let mut child = c.spawn().unwrap();
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(&rng.bytes(3_000_000)).unwrap();
        wait_for_lock(&e.repo);
        child.kill().unwrap();
        child.wait().unwrap();
        drop(stdin);
        assert_eq!(std::fs::read_dir(e.repo.join("locks")).unwrap().count(), 1);
        if round == 0 {
            let o = e.ok(&["unlock"]);
            assert!(o.text().contains("removed 1 lock"), "{}", o.text());
        } else {
            e.ok(&["prune"]);
        }
        assert_eq!(std::fs::read_dir(e.repo.join("locks")).unwrap().count(), 0);
    }
    e.ok(&["prune"]);
    let v = e.ok(&["verify", "--read-data", "--json"]).json();
    assert!(v["warnings"].as_array().unwrap().is_empty(), "{v}");
    assert_eq!(e.snapshot_ids(), vec![keep_id.clone()]);
    assert!(e.ok(&["restore", &keep_id, "--stdout"]).stdout == keep);
}
