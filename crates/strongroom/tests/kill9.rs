//! Real-process `kill -9` loops: the `strongroom` binary is killed with SIGKILL at random
//! points while it backs up (a folder, or a stream from stdin) and while it forgets and
//! prunes, and after every kill the repository must be whole.
//!
//! A generated source folder (a few hundred files, about 45 MB of random and text data,
//! nested folders, odd names, symlinks, modes) and a dump-like stream (about 16 MB) are
//! changed a little before every backup, so that every backup writes new packs (the pack
//! size is 256 KiB, to multiply writes). Each operation's uninterrupted duration T is measured
//! first (and again on one run in six, as the repository changes); a run is then killed after
//! a random delay in [0, 1.2·T] unless it finished first, or, one time in four, a few
//! milliseconds after a new index file or snapshot appeared (so that the short last steps —
//! between the index and the snapshot, between the snapshot and the lock's release, while a
//! prune deletes the old index files — are hit too). Each kill is classified by how far the
//! process got (from the objects it left), and the counts are printed.
//!
//! After every kill:
//! - `verify --read-data` finds no error (the only warnings allowed are packs no index lists,
//!   left by the killed process);
//! - every snapshot whose backup was acknowledged (exit 0, `--json` with its id) is listed,
//!   unless a forget removed it by policy (for a killed forget: only snapshots its dry run
//!   named may be gone);
//! - a snapshot nobody acknowledged appears only after a killed backup (its commit was done
//!   when the kill came), at most one, and it is attributed to that backup's source state;
//! - snapshots restore byte for byte (contents, modes, owners, times, symlink targets; a
//!   stream's bytes) to the source state their backup read: new ones at once, a random sample
//!   of the others each cycle (all of them in the deep run), and all of them at each phase's
//!   end;
//! - the lock the killed process left does not block the next backup, forget or prune (its
//!   process is gone on this host, so it is stale): no `unlock` is ever run; after a forget or
//!   prune that finished, no lock file is left.
//!
//! The default run kills 8 backups and 8 forget/prunes (about 1.5 minutes on 2 cores);
//! `STRONGROOM_DEEP_TESTS=1` (set by `scripts/test --deep`) kills 50 of each, and restores
//! every snapshot every tenth cycle too (about 10-20 minutes). Randomness comes from a seeded generator; the seed
//! is printed (`STRONGROOM_TEST_SEED` replays the choices, though not the kill timing).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_strongroom");
const PASSWORD: &str = "kill -9 test password";
/// No command should take anywhere near this long; a hang fails the test.
const TIMEOUT: Duration = Duration::from_secs(300);
/// Small packs: many pack and index writes per backup, many packs per prune.
const PACK_SIZE: &str = "262144";
/// Name of the stream snapshots.
const STREAM_NAME: &str = "clinic.dump";
const SIGKILL: i32 = 9;

// ---------------------------------------------------------------------------------------
// Seeded data.

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

fn deep() -> bool {
    std::env::var("STRONGROOM_DEEP_TESTS").is_ok_and(|v| !v.is_empty() && v != "0")
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
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo + 1)
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }
    /// Log-uniform in [0, max): many small sizes, some large.
    fn size(&mut self, max: usize) -> usize {
        ((max as f64).ln() * self.unit()).exp() as usize - 1
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(n + 8);
        while v.len() < n {
            v.extend_from_slice(&self.next().to_le_bytes());
        }
        v.truncate(n);
        v
    }
    /// Dump-like text (compressible, with repeats the chunker can find).
    fn text(&mut self, n: usize) -> Vec<u8> {
        const WORDS: &[&str] = &[
            "patient",
            "clinic",
            "appointment",
            "invoice",
            "paid",
            "pending",
            "dr",
            "smith",
            "jones",
            "x-ray",
            "lab",
            "result",
            "normal",
            "review",
            "note",
            "room",
            "nurse",
            "monday",
            "friday",
            "insurance",
            "claim",
            "upload",
            "scan",
            "pdf",
            "jpeg",
        ];
        let mut s = String::with_capacity(n + 200);
        while s.len() < n {
            let id = self.next() % 1_000_000;
            let _ = write!(s, "INSERT INTO records VALUES ({id}, '");
            for i in 0..self.range(2, 12) {
                if i > 0 {
                    s.push(' ');
                }
                s.push_str(WORDS[self.below(WORDS.len())]);
            }
            let _ = writeln!(
                s,
                "', '2024-{:02}-{:02}', {});",
                self.range(1, 12),
                self.range(1, 28),
                self.next() % 10_000
            );
        }
        let mut v = s.into_bytes();
        v.truncate(n);
        v
    }
    /// Random, text, or both.
    fn content(&mut self, n: usize) -> Vec<u8> {
        match self.below(3) {
            0 => self.bytes(n),
            1 => self.text(n),
            _ => {
                let half = n / 2;
                let mut v = self.text(half);
                v.extend(self.bytes(n - half));
                v
            }
        }
    }
}

fn digest(data: &[u8]) -> u128 {
    let mut a = DefaultHasher::new();
    0u8.hash(&mut a);
    data.hash(&mut a);
    let mut b = DefaultHasher::new();
    1u8.hash(&mut b);
    data.hash(&mut b);
    (u128::from(a.finish()) << 64) | u128::from(b.finish())
}

// ---------------------------------------------------------------------------------------
// Source trees.

/// What a restore must reproduce of one entry (file contents by digest).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    File {
        mode: u32,
        owner: (u32, u32),
        mtime: (i64, i64),
        len: u64,
        digest: u128,
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

type Tree = BTreeMap<Vec<u8>, Entry>;

/// `root` and everything under it, by relative path bytes starting with root's name.
fn scan(root: &Path) -> Tree {
    fn go(p: &Path, rel: Vec<u8>, out: &mut Tree) {
        let md = std::fs::symlink_metadata(p).unwrap();
        let owner = (md.uid(), md.gid());
        let mtime = (md.mtime(), md.mtime_nsec());
        let mode = md.mode() & 0o7777;
        let ft = md.file_type();
        let e = if ft.is_dir() {
            Entry::Dir { mode, owner, mtime }
        } else if ft.is_symlink() {
            Entry::Link {
                owner,
                mtime,
                target: std::fs::read_link(p)
                    .unwrap()
                    .as_os_str()
                    .as_bytes()
                    .to_vec(),
            }
        } else {
            let data = std::fs::read(p).unwrap();
            Entry::File {
                mode,
                owner,
                mtime,
                len: data.len() as u64,
                digest: digest(&data),
            }
        };
        out.insert(rel.clone(), e);
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
    let mut out = Tree::new();
    go(
        root,
        root.file_name().unwrap().as_bytes().to_vec(),
        &mut out,
    );
    out
}

/// A readable list of the differences (empty when equal).
fn diff(expected: &Tree, actual: &Tree) -> String {
    let show = |k: &[u8]| String::from_utf8_lossy(k).into_owned();
    let mut d = Vec::new();
    for (k, v) in expected {
        match actual.get(k) {
            None => d.push(format!("missing {:?}", show(k))),
            Some(a) if a != v => d.push(format!(
                "differs {:?}: expected {v:?} / actual {a:?}",
                show(k)
            )),
            Some(_) => {}
        }
    }
    for k in actual.keys() {
        if !expected.contains_key(k) {
            d.push(format!("unexpected {:?}", show(k)));
        }
    }
    let n = d.len();
    d.truncate(10);
    if n > 10 {
        d.push(format!("... {} more", n - 10));
    }
    d.join("\n")
}

/// Every regular file under `dir` (sorted, for replayable choices).
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                stack.push(e.path());
            } else if ft.is_file() {
                out.push(e.path());
            }
        }
    }
    out.sort();
    out
}

fn dirs_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                out.push(e.path());
                stack.push(e.path());
            }
        }
    }
    out.sort();
    out
}

/// A new file name in a random folder of `src`.
fn new_file_path(src: &Path, rng: &mut Rng, n: usize) -> PathBuf {
    let dirs = dirs_under(src);
    let dir = if dirs.is_empty() || rng.chance(0.1) {
        src.to_path_buf()
    } else {
        dirs[rng.below(dirs.len())].clone()
    };
    let name = match rng.below(8) {
        0 => format!("scan {n} (copy).pdf"),
        1 => format!("ünïcødé-{n}.jpg"),
        2 => format!("-{n}.txt"),
        _ => format!("f{n:05}.{}", ["bin", "txt", "dat"][rng.below(3)]),
    };
    dir.join(name)
}

/// The initial source folder: about 45 MB.
fn make_source(src: &Path, rng: &mut Rng) {
    std::fs::create_dir_all(src).unwrap();
    for d in 0..12 {
        let dir = src.join(format!("d{d:02}"));
        std::fs::create_dir_all(&dir).unwrap();
        for s in 0..rng.below(3) {
            std::fs::create_dir_all(dir.join(format!("sub{s}"))).unwrap();
        }
    }
    std::fs::create_dir_all(src.join("empty dir")).unwrap();
    std::fs::write(src.join("empty"), b"").unwrap();
    for n in 0..300 {
        let size = rng.size(1_500_000);
        let data = rng.content(size);
        let p = new_file_path(src, rng, n);
        std::fs::write(&p, data).unwrap();
    }
    for n in 0..3 {
        let size = rng.range(2_000_000, 5_000_000);
        let data = rng.content(size);
        std::fs::write(src.join(format!("d00/big-{n}.bin")), data).unwrap();
    }
    std::os::unix::fs::symlink("d00/big-0.bin", src.join("link-to-big")).unwrap();
    std::os::unix::fs::symlink("/nonexistent/dangling", src.join("d01/dangling")).unwrap();
}

/// Changes the source a little: rewrites, edits, appends to, truncates or re-moded files
/// (about 5-35% of them), deletes and adds a few, sometimes a folder, retargets a symlink.
fn mutate_source(src: &Path, rng: &mut Rng, counter: &mut usize) {
    let files = files_under(src);
    let k = files.len() * rng.range(5, 35) / 100 + 1;
    for _ in 0..k {
        let p = &files[rng.below(files.len())];
        if !p.exists() {
            continue;
        }
        match rng.below(7) {
            0..=2 => {
                let size = rng.size(1_500_000);
                std::fs::write(p, rng.content(size)).unwrap();
            }
            3 => {
                // Overwrite a range in the middle.
                let mut data = std::fs::read(p).unwrap();
                if !data.is_empty() {
                    let at = rng.below(data.len());
                    let len = rng.range(1, (data.len() - at).min(300_000));
                    let new = rng.content(len);
                    data[at..at + len].copy_from_slice(&new);
                    std::fs::write(p, data).unwrap();
                }
            }
            4 => {
                let mut data = std::fs::read(p).unwrap();
                let size = rng.size(200_000);
                data.extend(rng.text(size));
                std::fs::write(p, data).unwrap();
            }
            5 => {
                let data = std::fs::read(p).unwrap();
                let keep = rng.below(data.len() + 1);
                std::fs::write(p, &data[..keep]).unwrap();
            }
            _ => {
                let mode = [0o600, 0o644, 0o640, 0o755][rng.below(4)];
                std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
            }
        }
    }
    for _ in 0..rng.below(4) {
        let p = &files[rng.below(files.len())];
        if p.exists() && !p.ends_with("big-0.bin") {
            std::fs::remove_file(p).unwrap();
        }
    }
    for _ in 0..rng.below(4) {
        *counter += 1;
        let p = new_file_path(src, rng, 1000 + *counter);
        let size = rng.size(1_500_000);
        std::fs::write(p, rng.content(size)).unwrap();
    }
    if rng.chance(0.1) {
        *counter += 1;
        let d = src.join(format!("new-{}", *counter));
        std::fs::create_dir_all(d.join("inner")).unwrap();
        for i in 0..rng.range(1, 6) {
            let size = rng.size(500_000);
            std::fs::write(d.join(format!("inner/n{i}")), rng.content(size)).unwrap();
        }
    }
    if rng.chance(0.1) {
        let dirs: Vec<PathBuf> = dirs_under(src)
            .into_iter()
            .filter(|d| d.file_name().unwrap().as_bytes().starts_with(b"new-"))
            .collect();
        if !dirs.is_empty() {
            std::fs::remove_dir_all(&dirs[rng.below(dirs.len())]).unwrap();
        }
    }
    if rng.chance(0.2) {
        let l = src.join("link-to-big");
        std::fs::remove_file(&l).unwrap();
        let target = format!("d00/big-{}.bin", rng.below(3));
        std::os::unix::fs::symlink(target, l).unwrap();
    }
}

/// Edits the stream a little: replaces, inserts and deletes ranges; keeps it at 8-24 MB.
fn mutate_stream(s: &mut Vec<u8>, rng: &mut Rng) {
    for _ in 0..rng.range(1, 4) {
        match rng.below(3) {
            0 => {
                let at = rng.below(s.len());
                let len = rng.range(1, (s.len() - at).min(2_000_000));
                let new = rng.content(len);
                s[at..at + len].copy_from_slice(&new);
            }
            1 if s.len() < 24_000_000 => {
                let at = rng.below(s.len());
                let size = rng.size(1_000_000);
                let new = rng.content(size);
                s.splice(at..at, new);
            }
            _ if s.len() > 8_000_000 => {
                let at = rng.below(s.len());
                let len = rng.range(1, (s.len() - at).min(1_000_000));
                s.drain(at..at + len);
            }
            _ => s.extend(rng.text(500_000)),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Processes.

/// The output of a finished (or killed) command.
struct Out {
    status: ExitStatus,
    stdout: Vec<u8>,
    stderr: String,
    elapsed: Duration,
}

impl Out {
    fn killed(&self) -> bool {
        self.status.signal() == Some(SIGKILL)
    }
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

/// When to kill a process.
#[derive(Debug, Clone)]
struct Kill {
    /// How long after the start (or after `when`).
    delay: Duration,
    /// Start the delay only when the committed objects of this repository folder change (a
    /// new index file, a new snapshot): aims kills at the short last steps of an operation.
    when: Option<(PathBuf, BTreeSet<String>)>,
}

impl Kill {
    fn describe(kill: Option<&Kill>) -> String {
        match kill {
            None => "-".to_owned(),
            Some(Kill { delay, when: None }) => format!("{:.3}s", delay.as_secs_f64()),
            Some(Kill {
                delay,
                when: Some((dir, _)),
            }) => format!(
                "{:.1}ms after {}/ changed",
                delay.as_secs_f64() * 1000.0,
                dir.file_name().unwrap().to_string_lossy()
            ),
        }
    }
}

/// Names in `dir`, without temporary files.
fn names(dir: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let name = e.file_name().to_string_lossy().into_owned();
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else if !name.starts_with(".tmp-") {
                out.insert(name);
            }
        }
    }
    out
}

/// Waits for `child`, sending it SIGKILL (`Child::kill`) as `kill` says; collects its
/// output. A hang past [`TIMEOUT`] fails.
fn run_child(mut child: Child, kill: Option<&Kill>, what: &str) -> Out {
    let start = Instant::now();
    // When the kill's delay starts: now, or once its folder changed.
    let mut armed = kill.and_then(|k| k.when.is_none().then_some(start));
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
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        let elapsed = start.elapsed();
        if armed.is_none()
            && let Some(Kill {
                when: Some((dir, before)),
                ..
            }) = kill
            && names(dir) != *before
        {
            armed = Some(Instant::now());
        }
        let left = match (kill, armed) {
            (Some(k), Some(t)) => Some(k.delay.saturating_sub(t.elapsed())),
            _ => None,
        };
        if left == Some(Duration::ZERO) {
            // SIGKILL. If the process exited just now, this signals a zombie (harmless) and
            // the status below tells it finished.
            child.kill().unwrap();
            break child.wait().unwrap();
        }
        if elapsed > TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: still running after {TIMEOUT:?} (hung?)");
        }
        let step = match (kill, armed) {
            // Watching a folder: poll often.
            (Some(_), None) => Duration::from_micros(500),
            _ => left.map_or(Duration::from_millis(2), |l| {
                l.min(Duration::from_millis(2))
            }),
        };
        std::thread::sleep(step);
    };
    let elapsed = start.elapsed();
    Out {
        status,
        stdout: t_out.join().unwrap(),
        stderr: String::from_utf8_lossy(&t_err.join().unwrap()).into_owned(),
        elapsed,
    }
}

/// A repository, the source and scratch space in a temporary folder.
struct Env {
    tmp: tempfile::TempDir,
    repo: PathBuf,
    cache: PathBuf,
    src: PathBuf,
    stream_file: PathBuf,
    scratch: PathBuf,
}

impl Env {
    fn new() -> Env {
        let tmp = tempfile::Builder::new()
            .prefix("strongroom-kill9-")
            .tempdir()
            .unwrap();
        let e = Env {
            repo: tmp.path().join("repo"),
            cache: tmp.path().join("cache"),
            src: tmp.path().join("src"),
            stream_file: tmp.path().join("stream.dump"),
            scratch: tmp.path().join("scratch"),
            tmp,
        };
        std::fs::create_dir_all(&e.scratch).unwrap();
        e.ok(&[
            "init",
            "--kdf-memory-mib",
            "19",
            "--kdf-passes",
            "2",
            "--pack-size",
            PACK_SIZE,
        ]);
        e
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.arg("--repo")
            .arg(&self.repo)
            .args(args)
            .env("STRONGROOM_PASSWORD", PASSWORD)
            .env("STRONGROOM_CACHE_DIR", &self.cache)
            .env_remove("STRONGROOM_REPO")
            .env_remove("STRONGROOM_PASSWORD_FILE")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    }

    /// Runs `args` (stdin from `stdin_file`), killing it as `kill` says.
    fn run(&self, args: &[&str], stdin_file: Option<&Path>, kill: Option<&Kill>) -> Out {
        let mut c = self.cmd(args);
        if let Some(f) = stdin_file {
            c.stdin(std::fs::File::open(f).unwrap());
        }
        let child = c.spawn().unwrap();
        let what = format!("strongroom {}", args.join(" "));
        let o = run_child(child, kill, &what);
        assert!(
            o.killed() || o.status.code() == Some(0),
            "{what} failed ({}):\nstdout: {}\nstderr: {}",
            o.status,
            o.text(),
            o.stderr
        );
        assert!(!o.stderr.contains("panicked"), "{what}: {}", o.stderr);
        o
    }

    /// Runs to the end; requires exit code 0.
    fn ok(&self, args: &[&str]) -> Out {
        self.run(args, None, None)
    }

    /// Lock files (not counting temporary files a killed writer left).
    fn locks(&self) -> usize {
        self.objects().locks
    }

    /// Names of the committed objects.
    fn objects(&self) -> Objects {
        Objects {
            packs: names(&self.repo.join("data")),
            indexes: names(&self.repo.join("index")),
            locks: names(&self.repo.join("locks")).len(),
        }
    }

    /// Files and bytes of the repository; leftover temporary files.
    fn repo_usage(&self) -> (usize, u64, usize) {
        let (mut n, mut bytes, mut tmp) = (0, 0, 0);
        let mut stack = vec![self.repo.clone()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let e = e.unwrap();
                if e.file_type().unwrap().is_dir() {
                    stack.push(e.path());
                } else {
                    n += 1;
                    bytes += e.metadata().unwrap().len();
                    if e.file_name().as_bytes().starts_with(b".tmp-") {
                        tmp += 1;
                    }
                }
            }
        }
        (n, bytes, tmp)
    }
}

/// The committed objects of a repository, to tell how far a killed process got.
struct Objects {
    packs: BTreeSet<String>,
    indexes: BTreeSet<String>,
    locks: usize,
}

/// How far a killed backup got.
fn backup_stage(before: &Objects, after: &Objects, committed: bool) -> &'static str {
    if committed {
        if after.locks > before.locks {
            "snapshot committed, lock not yet released"
        } else {
            "snapshot committed and lock released"
        }
    } else if !after.indexes.is_subset(&before.indexes) {
        "index files written, no snapshot"
    } else if !after.packs.is_subset(&before.packs) {
        "packs written, none indexed"
    } else if after.locks > before.locks {
        "lock taken, nothing written"
    } else {
        "before taking the lock"
    }
}

/// How far a killed forget/prune got (prune: write repacked packs, write the new index,
/// delete the old index files, delete packs).
fn prune_stage(before: &Objects, after: &Objects, forgotten: usize) -> &'static str {
    let new_packs = !after.packs.is_subset(&before.packs);
    let new_index = !after.indexes.is_subset(&before.indexes);
    let old_index_gone = !before.indexes.is_subset(&after.indexes);
    let packs_gone = !before.packs.is_subset(&after.packs);
    if packs_gone {
        "deleting packs"
    } else if old_index_gone {
        "deleting old index files"
    } else if new_index {
        "new index written"
    } else if new_packs {
        "repacking"
    } else if forgotten > 0 {
        "snapshots forgotten, prune not yet writing"
    } else if after.locks > before.locks {
        "lock taken, nothing changed"
    } else {
        "before taking the lock"
    }
}

// ---------------------------------------------------------------------------------------
// The model: what each snapshot must restore to, and which snapshots must exist.

/// What a snapshot must restore to: an index into the recorded source states.
#[derive(Debug, Clone, Copy)]
enum Expect {
    Tree(usize),
    Stream(usize),
}

#[derive(Debug)]
struct Known {
    expect: Expect,
    /// The backup exited 0 and printed this id.
    acked: bool,
    /// Cycle of the backup (for messages).
    cycle: usize,
}

#[derive(Default)]
struct Figures {
    cycles: usize,
    kills: usize,
    finished: usize,
    killed_committed: usize,
    killed_forget_partial: usize,
    runs_over_stale_locks: usize,
    restores: usize,
    /// How far the killed processes got.
    stages: BTreeMap<&'static str, usize>,
}

struct Test {
    e: Env,
    rng: Rng,
    deep: bool,
    trees: Vec<Tree>,
    streams: Vec<(usize, u128)>,
    stream: Vec<u8>,
    counter: usize,
    known: BTreeMap<String, Known>,
    /// Removed by a forget's policy (its dry run named them).
    forgotten: BTreeSet<String>,
    /// Uninterrupted durations (seconds) by operation, for choosing kill points.
    t: BTreeMap<&'static str, f64>,
    cycle: usize,
}

impl Test {
    /// Records the current source (or stream) state; returns what a backup of it restores to.
    fn record(&mut self, stream: bool) -> Expect {
        if stream {
            std::fs::write(&self.e.stream_file, &self.stream).unwrap();
            self.streams.push((self.stream.len(), digest(&self.stream)));
            Expect::Stream(self.streams.len() - 1)
        } else {
            self.trees.push(scan(&self.e.src));
            Expect::Tree(self.trees.len() - 1)
        }
    }

    fn mutate(&mut self, stream: bool) {
        if stream {
            mutate_stream(&mut self.stream, &mut self.rng);
        } else {
            mutate_source(&self.e.src, &mut self.rng, &mut self.counter);
        }
    }

    /// When to kill a run of `op`. None (run to the end, measuring its duration T) when T is
    /// not known yet, and for one run in six (T changes as the repository does). Else, one
    /// time in four, a delay uniform in [0, `window`] after one of the `events` folders of the
    /// repository changed (to aim at an operation's last steps: a new index file, a
    /// snapshot); else a delay uniform in [0, 1.2·T].
    fn kill_point(&mut self, op: &'static str, events: &[&str], window: Duration) -> Option<Kill> {
        let t = *self.t.get(op)?;
        if self.rng.chance(1.0 / 6.0) {
            return None;
        }
        if !events.is_empty() && self.rng.chance(0.25) {
            let dir = self.e.repo.join(events[self.rng.below(events.len())]);
            let before = names(&dir);
            return Some(Kill {
                delay: window.mul_f64(self.rng.unit()),
                when: Some((dir, before)),
            });
        }
        Some(Kill {
            delay: Duration::from_secs_f64(self.rng.unit() * 1.2 * t),
            when: None,
        })
    }

    /// Updates T of `op` from a run that was not to be killed.
    fn measured(&mut self, op: &'static str, kill: Option<&Kill>, d: Duration) {
        if kill.is_none() {
            let d = d.as_secs_f64();
            let t = self.t.entry(op).or_insert(d);
            *t = 0.5 * *t + 0.5 * d;
        }
    }

    fn snapshot_ids(&self) -> BTreeSet<String> {
        let o = self.e.ok(&["snapshots", "--json"]);
        o.json()
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["id"].as_str().unwrap().to_owned())
            .collect()
    }

    /// Runs a backup (killed as `kill` says, or to the end when None).
    fn backup(&mut self, stream: bool, kill: Option<&Kill>, f: &mut Figures) -> Out {
        let stale = self.e.locks();
        let o = if stream {
            self.e.run(
                &["backup", "--json", "--stdin", STREAM_NAME],
                Some(&self.e.stream_file),
                kill,
            )
        } else {
            let src = self.e.src.to_str().unwrap().to_owned();
            self.e
                .run(&["backup", "--json", "--path", &src], None, kill)
        };
        if stale > 0 {
            f.runs_over_stale_locks += 1;
        }
        o
    }

    /// One backup cycle; `kill` false runs it to the end.
    fn backup_cycle(&mut self, stream: bool, kill: bool, f: &mut Figures) -> String {
        self.mutate(stream);
        let expect = self.record(stream);
        let op = if stream {
            "backup-stream"
        } else {
            "backup-files"
        };
        let kill = if kill {
            self.kill_point(op, &["index", "snapshots"], Duration::from_millis(5))
        } else {
            None
        };
        let before = self.snapshot_ids();
        let objects = self.e.objects();
        let o = self.backup(stream, kill.as_ref(), f);
        let outcome;
        if o.killed() {
            f.kills += 1;
            let after = self.snapshot_ids();
            let new: Vec<&String> = after.difference(&before).collect();
            assert!(
                new.len() <= 1,
                "cycle {}: one killed backup, {} new snapshots: {new:?}",
                self.cycle,
                new.len()
            );
            let stage = backup_stage(&objects, &self.e.objects(), !new.is_empty());
            *f.stages.entry(stage).or_default() += 1;
            if let Some(id) = new.first() {
                f.killed_committed += 1;
                self.known.insert(
                    (*id).clone(),
                    Known {
                        expect,
                        acked: false,
                        cycle: self.cycle,
                    },
                );
                outcome = format!("killed: {stage} ({})", &id[..8]);
            } else {
                outcome = format!("killed: {stage}");
            }
        } else {
            f.finished += 1;
            self.measured(op, kill.as_ref(), o.elapsed);
            let id = o.json()["snapshot_id"].as_str().unwrap().to_owned();
            self.known.insert(
                id.clone(),
                Known {
                    expect,
                    acked: true,
                    cycle: self.cycle,
                },
            );
            outcome = format!("finished: {}", &id[..8]);
        }
        eprintln!(
            "  cycle {:3} {op:14} kill at {:>8} ran {:7.3}s  {outcome}",
            self.cycle,
            Kill::describe(kill.as_ref()),
            o.elapsed.as_secs_f64()
        );
        self.cycle += 1;
        outcome
    }

    /// `forget --keep-last N [--prune]`, killed as `kill` says; returns whether it was
    /// killed. Checks which snapshots are left against its dry run's plan.
    fn forget(&mut self, keep: usize, prune: bool, kill: Option<Kill>, f: &mut Figures) -> bool {
        let keep = keep.to_string();
        if self.e.locks() > 0 {
            f.runs_over_stale_locks += 1;
        }
        let before = self.snapshot_ids();
        // The dry run takes the exclusive lock too (and removes stale ones).
        let plan = self
            .e
            .ok(&["forget", "--keep-last", &keep, "--dry-run", "--json"])
            .json();
        let remove: BTreeSet<String> = plan["remove"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect();
        let mut args = vec!["forget", "--keep-last", &keep, "--json"];
        if prune {
            args.push("--prune");
        }
        let objects = self.e.objects();
        let o = self.e.run(&args, None, kill.as_ref());
        let after = self.snapshot_ids();
        let must_stay: BTreeSet<String> = before.difference(&remove).cloned().collect();
        assert!(
            after.is_subset(&before),
            "cycle {}: forget made snapshots appear: {:?}",
            self.cycle,
            after.difference(&before).collect::<Vec<_>>()
        );
        assert!(
            must_stay.is_subset(&after),
            "cycle {}: forget removed snapshots its policy keeps: {:?}",
            self.cycle,
            must_stay.difference(&after).collect::<Vec<_>>()
        );
        let removed: BTreeSet<String> = before.difference(&after).cloned().collect();
        self.forgotten.extend(removed.iter().cloned());
        let mut stage = "finished";
        if o.killed() {
            stage = prune_stage(&objects, &self.e.objects(), removed.len());
            *f.stages.entry(stage).or_default() += 1;
            if !removed.is_empty() && removed != remove {
                f.killed_forget_partial += 1;
            }
        } else {
            let done: BTreeSet<String> = o.json()["remove"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap().to_owned())
                .collect();
            assert_eq!(done, remove, "forget removed other snapshots than planned");
            assert_eq!(removed, remove, "a finished forget left some behind");
            assert_eq!(self.e.locks(), 0, "a finished forget left lock files");
        }
        eprintln!(
            "  cycle {:3} forget --keep-last {keep}{} kill at {:>8} ran {:7.3}s  {}{stage}, {} of {} planned removed",
            self.cycle,
            if prune { " --prune" } else { "" },
            Kill::describe(kill.as_ref()),
            o.elapsed.as_secs_f64(),
            if o.killed() { "killed: " } else { "" },
            removed.len(),
            remove.len()
        );
        if prune {
            self.measured("forget-prune", kill.as_ref(), o.elapsed);
        }
        o.killed()
    }

    /// `prune`, killed as `kill` says; snapshots must not change.
    fn prune(&mut self, kill: Option<Kill>, f: &mut Figures) -> bool {
        let before = self.snapshot_ids();
        if self.e.locks() > 0 {
            f.runs_over_stale_locks += 1;
        }
        let objects = self.e.objects();
        let o = self.e.run(&["prune", "--json"], None, kill.as_ref());
        assert_eq!(self.snapshot_ids(), before, "prune changed the snapshots");
        let plan = if o.killed() {
            let stage = prune_stage(&objects, &self.e.objects(), 0);
            *f.stages.entry(stage).or_default() += 1;
            format!("killed: {stage}")
        } else {
            let j = o.json();
            assert_eq!(self.e.locks(), 0, "a finished prune left lock files");
            self.measured("prune", kill.as_ref(), o.elapsed);
            format!(
                "finished: {} kept, {} repacked, {} deleted, {} unindexed",
                j["keep_packs"], j["repack_packs"], j["delete_packs"], j["unindexed_packs"]
            )
        };
        eprintln!(
            "  cycle {:3} prune          kill at {:>8} ran {:7.3}s  {plan}",
            self.cycle,
            Kill::describe(kill.as_ref()),
            o.elapsed.as_secs_f64()
        );
        o.killed()
    }

    /// The repository after a kill: verify finds no error; the snapshots are exactly the
    /// known ones minus forgotten ones; `restore_all` or a sample restore correctly.
    fn check(&mut self, restore_all: bool, f: &mut Figures) {
        let v = self.e.ok(&["verify", "--read-data", "--json"]).json();
        assert_eq!(v["ok"], true, "cycle {}: verify: {v:#}", self.cycle);
        assert!(
            v["errors"].as_array().unwrap().is_empty(),
            "cycle {}: verify: {v:#}",
            self.cycle
        );
        for w in v["warnings"].as_array().unwrap() {
            assert!(
                w.as_str()
                    .unwrap()
                    .contains("is not referenced by any index"),
                "cycle {}: unexpected verify warning {w}",
                self.cycle
            );
        }
        let listed = self.snapshot_ids();
        for id in &listed {
            assert!(
                self.known.contains_key(id),
                "cycle {}: snapshot {id} appeared from nowhere",
                self.cycle
            );
            assert!(
                !self.forgotten.contains(id),
                "cycle {}: forgotten snapshot {id} is back",
                self.cycle
            );
        }
        for (id, k) in &self.known {
            if !self.forgotten.contains(id) {
                assert!(
                    listed.contains(id),
                    "cycle {}: snapshot {id} of cycle {} (acknowledged: {}) is gone",
                    self.cycle,
                    k.cycle,
                    k.acked
                );
            }
        }
        let ids: Vec<&String> = listed.iter().collect();
        let chosen: Vec<String> = if restore_all {
            ids.iter().map(|s| (*s).clone()).collect()
        } else {
            // The newest (by cycle) and two others.
            let mut c: Vec<String> = Vec::new();
            if let Some(newest) = ids.iter().max_by_key(|id| self.known[**id].cycle) {
                c.push((*newest).clone());
            }
            for _ in 0..2 {
                if !ids.is_empty() {
                    let id = ids[self.rng.below(ids.len())].clone();
                    if !c.contains(&id) {
                        c.push(id);
                    }
                }
            }
            c
        };
        for id in chosen {
            self.restore(&id);
            f.restores += 1;
        }
    }

    fn restore(&self, id: &str) {
        let k = &self.known[id];
        match k.expect {
            Expect::Stream(i) => {
                let o = self.e.ok(&["restore", id, "--stdout"]);
                let (len, d) = self.streams[i];
                assert!(
                    o.stdout.len() == len && digest(&o.stdout) == d,
                    "cycle {}: stream snapshot {id} of cycle {} (acknowledged: {}) restores to {} bytes, not the {len} it read",
                    self.cycle,
                    k.cycle,
                    k.acked,
                    o.stdout.len()
                );
            }
            Expect::Tree(i) => {
                let target = self.e.scratch.join(&id[..16]);
                self.e
                    .ok(&["restore", id, "--target", target.to_str().unwrap()]);
                let got = scan(&target.join(self.e.src.file_name().unwrap()));
                let d = diff(&self.trees[i], &got);
                assert!(
                    d.is_empty(),
                    "cycle {}: snapshot {id} of cycle {} (acknowledged: {}) does not restore to what it read:\n{d}",
                    self.cycle,
                    k.cycle,
                    k.acked
                );
                std::fs::remove_dir_all(&target).unwrap();
            }
        }
    }

    /// A clean end: prune to the end, no warning left, no lock left, every snapshot restores.
    fn settle(&mut self, f: &mut Figures) {
        self.prune(None, f);
        let v = self.e.ok(&["verify", "--read-data", "--json"]).json();
        assert!(
            v["warnings"].as_array().unwrap().is_empty(),
            "after a full prune: {v:#}"
        );
        assert_eq!(self.e.locks(), 0, "lock files left after a full prune");
        self.check(true, f);
    }
}

fn report(name: &str, f: &Figures, took: Duration) {
    eprintln!(
        "{name}: {} cycles, {} kills, {} runs finished before the kill, {} killed backups had committed their snapshot, {} killed forgets had removed part of their plan, {} runs over a stale lock, {} restores checked; {:.1}s",
        f.cycles,
        f.kills,
        f.finished,
        f.killed_committed,
        f.killed_forget_partial,
        f.runs_over_stale_locks,
        f.restores,
        took.as_secs_f64()
    );
    for (stage, n) in &f.stages {
        eprintln!("    killed at \"{stage}\": {n}");
    }
}

// ---------------------------------------------------------------------------------------
// The loops.

/// Backups (of a folder and of a stream) and forget/prune, SIGKILLed at random points; the
/// repository stays valid and every acknowledged snapshot restorable after every kill.
#[test]
fn kill9_during_backup_and_prune() {
    let start = Instant::now();
    let deep = deep();
    let kills = if deep { 50 } else { 8 };
    let mut rng = Rng::new(seed("kill9_during_backup_and_prune"));
    let e = Env::new();
    make_source(&e.src, &mut rng);
    let stream = rng.text(16_000_000);
    let mut t = Test {
        e,
        rng,
        deep,
        trees: Vec::new(),
        streams: Vec::new(),
        stream,
        counter: 0,
        known: BTreeMap::new(),
        forgotten: BTreeSet::new(),
        t: BTreeMap::new(),
        cycle: 0,
    };
    eprintln!(
        "source: {} files, {} MB; stream {} MB; pack size {PACK_SIZE}; {} kills per phase{}",
        files_under(&t.e.src).len(),
        files_under(&t.e.src)
            .iter()
            .map(|p| p.metadata().unwrap().len())
            .sum::<u64>()
            / 1_000_000,
        t.stream.len() / 1_000_000,
        kills,
        if deep { " (deep)" } else { "" }
    );

    // Phase 1: backups killed. First one of each kind to the end (T is measured on the
    // second, since the first writes everything).
    let phase = Instant::now();
    let mut f = Figures::default();
    t.backup_cycle(false, false, &mut f);
    t.backup_cycle(true, false, &mut f);
    t.t.clear();
    t.check(true, &mut f);
    let mut f = Figures::default();
    let mut n = 0;
    while f.kills < kills {
        assert!(n < kills * 4, "too few kills landed: T is wrong?");
        n += 1;
        f.cycles += 1;
        let stream = t.rng.chance(0.35);
        t.backup_cycle(stream, true, &mut f);
        t.check(t.deep && n % 10 == 0, &mut f);
        // Sometimes a prune over the killed backup's stale lock and leftovers.
        if t.rng.chance(0.2) {
            t.prune(None, &mut f);
            t.check(false, &mut f);
        }
        // Keep the repository from growing without bound.
        if n % 10 == 0 {
            t.forget(4, true, None, &mut f);
            t.check(false, &mut f);
        }
    }
    t.settle(&mut f);
    let (f1, t1) = (f, phase.elapsed());
    report("phase 1 (backup killed)", &f1, t1);

    // Phase 2: forget --prune and prune killed; a backup to the end before each. The prunes
    // of phase 1 had little to do: T of prune is measured afresh.
    let phase = Instant::now();
    t.t.remove("prune");
    let mut f = Figures::default();
    let mut n = 0;
    while f.kills < kills {
        assert!(n < kills * 4, "too few kills landed: T is wrong?");
        n += 1;
        f.cycles += 1;
        let stream = n % 2 == 0;
        // Must not be blocked by the stale exclusive lock of the prune killed last cycle.
        t.backup_cycle(stream, false, &mut f);
        f.finished -= 1; // counts the runs of forget and prune only
        let killed = if t.rng.chance(0.5) {
            let d = t.kill_point(
                "forget-prune",
                &["snapshots", "index"],
                Duration::from_millis(60),
            );
            t.forget(2, true, d, &mut f)
        } else {
            t.forget(2, false, None, &mut f);
            let d = t.kill_point("prune", &["index"], Duration::from_millis(60));
            t.prune(d, &mut f)
        };
        if killed {
            f.kills += 1;
        } else {
            f.finished += 1;
        }
        t.cycle += 1;
        t.check(t.deep && n % 10 == 0, &mut f);
    }
    t.settle(&mut f);
    report("phase 1 (backup killed)", &f1, t1);
    report(
        "phase 2 (forget --prune / prune killed)",
        &f,
        phase.elapsed(),
    );
    eprintln!("uninterrupted durations T at the end: {:?}", t.t);
    let (files, bytes, tmp) = t.e.repo_usage();
    eprintln!(
        "repository at the end: {files} files, {} MB, {tmp} leftover temporary files; {} snapshots; total {:.1}s",
        bytes / 1_000_000,
        t.snapshot_ids().len(),
        start.elapsed().as_secs_f64()
    );
    drop(t.e.tmp);
}
