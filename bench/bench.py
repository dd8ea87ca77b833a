#!/usr/bin/env python3
"""Run Strongroom and its peers (restic, rustic, borg, bupstash) on the same data, in one run.

Called by bench/run after the tools are installed and the data generated (gen_data.py). Every
step runs --runs times (default 5); the order of the tools rotates from round to round so
that background load falls on all of them alike. Each command runs under GNU time (peak RSS,
CPU seconds); wall time is measured here. Every restore and every stream read back is
compared with its input: a mismatch marks that tool's result INVALID.

Results go to bench/results/<mode>-<UTC time>.json and bench/results/latest-<mode>.json;
report.py turns such a file into the Markdown report.
"""

import argparse
import datetime
import filecmp
import json
import os
import platform
import shutil
import stat
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
TOOLS_BIN = os.path.join(HERE, ".tools", "bin")
PASSWORD = "bench-password-0123456789"
PG_URL = "postgres://postgres@127.0.0.1:5432/"
PG_ARGS = ["-h", "127.0.0.1", "-p", "5432", "-U", "postgres"]
# Writes copies of a snapshot (crates/repo/examples/repeat_snapshot.rs, built by bench/run).
REPEAT_SNAPSHOT = os.path.join(ROOT, "target", "release", "examples", "repeat_snapshot")

# What each step moves, for MB/s: name -> (title, which bytes)
STEPS = {
    "backup_first": "first backup of the media tree (fresh repository)",
    "backup_incr": "backup of the tree after ~5 % of the files changed",
    "stdin_dump": "SQL dump through stdin (first dump, fresh repository)",
    "stdin_dump2": "second SQL dump through stdin (after pgbench -t 2000)",
    "restore_tree": "restore of the whole tree (the second snapshot)",
    "restore_stream": "restore of the second SQL dump to a file",
    "verify": "verify, reading all data (repository with both tree snapshots)",
    "list_snapshots": "list the snapshots (repository with both tree snapshots)",
    "list_snapshots_key": "list the snapshots, opened with a key file instead of a password",
}


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def loadavg():
    with open("/proc/loadavg") as fh:
        return float(fh.read().split()[0])


def du(path):
    """Apparent size in bytes of everything under path."""
    n = 0
    for d, _, fs in os.walk(path):
        for f in fs:
            try:
                n += os.lstat(os.path.join(d, f)).st_size
            except FileNotFoundError:
                pass
    return n


def rmtree(path):
    if os.path.lexists(path):
        shutil.rmtree(path)


def sh(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw).stdout


def first_line(cmd):
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        return (out.stdout or out.stderr).strip().splitlines()[0]
    except Exception as e:  # noqa: BLE001 - a version string is informational
        return f"unknown ({e})"


class Runner:
    """Runs commands under GNU time, logging their output."""

    def __init__(self, logdir):
        self.logdir = logdir
        os.makedirs(logdir, exist_ok=True)
        self.n = 0

    def run(self, label, cmd, *, cwd=None, env=None, stdin_path=None, pipe_from=None,
            stdout_path=None, check=True):
        """Runs cmd; returns {wall, rss_kb, user, sys, rc, load}. pipe_from: a file sent
        through `cat |` (a pipe, as a dump tool would), stdin_path: a file as stdin."""
        self.n += 1
        base = os.path.join(self.logdir, f"{self.n:04d}-{label}")
        tfile = base + ".time"
        full = ["/usr/bin/time", "-f", "%e %M %U %S", "-o", tfile, "--", *cmd]
        with open(base + ".log", "wb") as logfh:
            logfh.write((" ".join(cmd) + "\n").encode())
            logfh.flush()
            out = open(stdout_path, "wb") if stdout_path else logfh
            src = None
            stdin = subprocess.DEVNULL
            if pipe_from:
                src = subprocess.Popen(["cat", pipe_from], stdout=subprocess.PIPE)
                stdin = src.stdout
            elif stdin_path:
                stdin = open(stdin_path, "rb")
            load = loadavg()
            t0 = time.perf_counter()
            p = subprocess.Popen(full, cwd=cwd, env=env, stdin=stdin,
                                 stdout=out, stderr=logfh)
            if src:
                src.stdout.close()
            rc = p.wait()
            wall = time.perf_counter() - t0
            if src:
                src.wait()
            if stdout_path:
                out.close()
            if stdin_path:
                stdin.close()
        with open(tfile) as fh:
            lines = [ln for ln in fh.read().splitlines() if ln and ln[0].isdigit()]
        e, m, u, s = lines[-1].split() if lines else ("0", "0", "0", "0")
        res = dict(wall=round(wall, 4), rss_kb=int(m), user=float(u), sys=float(s), rc=rc,
                   load=load)
        if rc != 0 and check:
            with open(base + ".log", "rb") as fh:
                tail = fh.read()[-1500:].decode(errors="replace")
            res["error"] = f"exit {rc}: {tail.strip()}"
            log(f"  ! {label} failed (exit {rc}); see {base}.log")
        return res


# ----------------------------------------------------------------------------- tools

class Tool:
    name = "?"
    label = "?"
    is_peer = True
    verify_note = None  # set when "verify" is not the same operation as the others'

    def __init__(self, ws):
        self.ws = ws  # a scratch folder of this tool for this round
        self.ids = {}

    def env(self):
        e = dict(os.environ)
        e["XDG_CACHE_HOME"] = os.path.join(self.ws, "cache")
        e["XDG_CONFIG_HOME"] = os.path.join(self.ws, "config")
        e["HOME"] = self.ws  # keeps every tool's dot-folders in the scratch folder
        e["PATH"] = TOOLS_BIN + os.pathsep + e["PATH"]
        return e

    def after_backup(self, repo, tag):
        """Learns the id of the snapshot just made (untimed)."""

    def kdf(self, repo):
        """How the repository key is derived from the password (informational)."""
        return None

    def list_snapshots_key(self, repo):
        """Listing with a key file instead of a password: (untimed setup commands, the timed
        command), or None for a tool without key files."""
        return None

    def restored_root(self, target, leaf="media_tree"):
        """Where the restored folder (media_tree) is inside target."""
        for d, dirs, _ in os.walk(target):
            if leaf in dirs:
                return os.path.join(d, leaf)
        return target


class Strongroom(Tool):
    name, label, is_peer = "strongroom", "Strongroom", False
    bin = os.path.join(ROOT, "target", "release", "strongroom")

    def env(self):
        e = super().env()
        e["STRONGROOM_PASSWORD"] = PASSWORD
        e["STRONGROOM_CACHE_DIR"] = os.path.join(self.ws, "cache", "strongroom")
        return e

    def version(self):
        return first_line([self.bin, "--version"])

    def s(self, repo, *a):
        return [self.bin, "--repo", repo, *a]

    def kdf(self, repo):
        return "argon2id, 19 MiB, 2 passes (init --kdf-memory-mib 19 --kdf-passes 2)"

    def init(self, repo):
        return [self.s(repo, "init", "--kdf-memory-mib", "19", "--kdf-passes", "2")]

    def backup_tree(self, repo, tag, path="media_tree"):
        return self.s(repo, "backup", "--path", path)

    def backup_stdin(self, repo, tag):
        return self.s(repo, "backup", "--stdin", "dump.sql")

    def after_backup(self, repo, tag):
        snaps = json.loads(sh(self.s(repo, "snapshots", "--json"), env=self.env()))
        self.ids[tag] = max(snaps, key=lambda s: s["time"])["id"]

    def restore_tree(self, repo, tag, target):
        return self.s(repo, "restore", self.ids[tag], "--target", target)

    def restore_stream(self, repo, tag):
        return self.s(repo, "restore", self.ids[tag], "--stdout")

    def verify(self, repo):
        return self.s(repo, "verify", "--read-data")

    def list_snapshots(self, repo):
        return self.s(repo, "snapshots")

    def list_snapshots_key(self, repo):
        key = os.path.join(self.ws, "strongroom-master.key")
        if os.path.exists(key):
            os.unlink(key)
        return ([self.s(repo, "key", "export-master", key)],
                self.s(repo, "--master-key-file", key, "snapshots"))


class Restic(Tool):
    name, label = "restic", "restic"

    def env(self):
        e = super().env()
        e["RESTIC_PASSWORD"] = PASSWORD
        e["RESTIC_CACHE_DIR"] = os.path.join(self.ws, "cache", "restic")
        return e

    def version(self):
        return first_line(["restic", "version"])

    def r(self, repo, *a):
        return ["restic", "-r", repo, "-q", *a]

    def kdf(self, repo):
        keys = os.listdir(os.path.join(repo, "keys"))
        with open(os.path.join(repo, "keys", keys[0])) as fh:
            k = json.load(fh)
        return f"{k['kdf']} N={k['N']} r={k['r']} p={k['p']}"

    def init(self, repo):
        # Repository format 2: compression (auto, zstd) as the other tools have.
        return [self.r(repo, "init", "--repository-version", "2")]

    def backup_tree(self, repo, tag, path="media_tree"):
        return self.r(repo, "backup", path)

    def backup_stdin(self, repo, tag):
        return self.r(repo, "backup", "--stdin", "--stdin-filename", "dump.sql")

    def after_backup(self, repo, tag):
        snaps = json.loads(sh(["restic", "-r", repo, "snapshots", "--json"], env=self.env()))
        self.ids[tag] = max(snaps, key=lambda s: s["time"])["id"]

    def restore_tree(self, repo, tag, target):
        return self.r(repo, "restore", self.ids[tag], "--target", target)

    def restore_stream(self, repo, tag):
        return self.r(repo, "dump", self.ids[tag], "/dump.sql")

    def verify(self, repo):
        return self.r(repo, "check", "--read-data")

    def list_snapshots(self, repo):
        return self.r(repo, "snapshots")


class Rustic(Tool):
    name, label = "rustic", "rustic"

    def env(self):
        e = super().env()
        e["RUSTIC_PASSWORD"] = PASSWORD
        e["RUSTIC_CACHE_DIR"] = os.path.join(self.ws, "cache", "rustic")
        return e

    def version(self):
        return first_line(["rustic", "--version"])

    def r(self, repo, *a):
        return ["rustic", "-r", repo, "--no-progress", *a]

    def kdf(self, repo):
        keys = os.listdir(os.path.join(repo, "keys"))
        with open(os.path.join(repo, "keys", keys[0])) as fh:
            k = json.load(fh)
        return f"{k['kdf']} N={k['N']} r={k['r']} p={k['p']}"

    def init(self, repo):
        return [self.r(repo, "init")]

    def backup_tree(self, repo, tag, path="media_tree"):
        return self.r(repo, "backup", path)

    def backup_stdin(self, repo, tag):
        # --force: rustic 0.11 otherwise keeps the previous stream when a stdin backup
        # reuses the name (rustic-rs/rustic#1793).
        return self.r(repo, "backup", "-", "--stdin-filename", "dump.sql", "--force")

    def after_backup(self, repo, tag):
        out = json.loads(sh(self.r(repo, "snapshots", "--json"), env=self.env()))
        snaps = []

        def collect(x):
            if isinstance(x, dict) and "id" in x and "time" in x:
                snaps.append(x)
            elif isinstance(x, (list, tuple)):
                for y in x:
                    collect(y)
            elif isinstance(x, dict):
                for y in x.values():
                    collect(y)
        collect(out)
        self.ids[tag] = max(snaps, key=lambda s: s["time"])["id"]

    def restore_tree(self, repo, tag, target):
        return self.r(repo, "restore", self.ids[tag], target)

    def restore_stream(self, repo, tag):
        return self.r(repo, "dump", f"{self.ids[tag]}:dump.sql")

    def verify(self, repo):
        return self.r(repo, "check", "--read-data")

    def list_snapshots(self, repo):
        return self.r(repo, "snapshots")


class Borg(Tool):
    name, label = "borg", "borg"

    def env(self):
        e = super().env()
        e["BORG_PASSPHRASE"] = PASSWORD
        e["BORG_BASE_DIR"] = os.path.join(self.ws, "borgbase")
        e["BORG_RELOCATED_REPO_ACCESS_IS_OK"] = "yes"
        e["BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK"] = "yes"
        return e

    def version(self):
        return first_line(["borg", "--version"])

    def kdf(self, repo):
        return "repokey-blake2: the key in the repository, encrypted under a PBKDF2-HMAC-SHA256 key"

    def init(self, repo):
        return [["borg", "init", "--encryption", "repokey-blake2", repo]]

    def backup_tree(self, repo, tag, path="media_tree"):
        return ["borg", "create", "--compression", "zstd,3", f"{repo}::{tag}", path]

    def backup_stdin(self, repo, tag):
        return ["borg", "create", "--compression", "zstd,3", "--stdin-name", "dump.sql",
                f"{repo}::{tag}", "-"]

    def restore_tree(self, repo, tag, target):
        return ["borg", "extract", f"{repo}::{tag}"]  # runs in target

    def restore_stream(self, repo, tag):
        return ["borg", "extract", "--stdout", f"{repo}::{tag}"]

    def verify(self, repo):
        return ["borg", "check", "--verify-data", repo]

    def list_snapshots(self, repo):
        return ["borg", "list", repo]


class Bupstash(Tool):
    name, label = "bupstash", "bupstash"
    verify_note = ("bupstash has no read-all verify; measured as `bupstash get` of every "
                   "snapshot to /dev/null (decrypts and checks every chunk it reads)")

    def env(self):
        e = super().env()
        e["BUPSTASH_KEY"] = os.path.join(self.ws, "bupstash.key")
        os.makedirs(os.path.join(self.ws, "cache"), exist_ok=True)
        return e

    def version(self):
        return first_line(["bupstash", "version"])

    def kdf(self, repo):
        return "none: a key file (BUPSTASH_KEY), no password"

    def init(self, repo):
        key = os.path.join(self.ws, "bupstash.key")
        cmds = [["bupstash", "init", "-r", repo]]
        if not os.path.exists(key):
            cmds.insert(0, ["bupstash", "new-key", "-o", key])
        return cmds

    def backup_tree(self, repo, tag, path="media_tree"):
        # The send log is bupstash's "unchanged file" cache, one per folder backed up.
        return ["bupstash", "put", "-q", "-r", repo, "--send-log",
                os.path.join(self.ws, "cache", f"{path}.sendlog"), f"bench={tag}", path]

    def backup_stdin(self, repo, tag):
        return ["bupstash", "put", "-q", "-r", repo, "--send-log",
                os.path.join(self.ws, "cache", "stream.sendlog"), f"bench={tag}",
                "name=dump.sql", "-"]

    def restore_tree(self, repo, tag, target):
        return ["bupstash", "restore", "-r", repo, "--into", target, f"bench={tag}"]

    def restored_root(self, target, leaf="media_tree"):
        return target  # bupstash restores the folder's contents into target

    def restore_stream(self, repo, tag):
        return ["bupstash", "get", "-r", repo, f"bench={tag}"]

    def verify(self, repo):
        return ["sh", "-c", f"for t in media1 media2; do bupstash get -r '{repo}' bench=$t "
                            f"> /dev/null || exit 1; done"]

    def list_snapshots(self, repo):
        return ["bupstash", "list", "-r", repo]

    def list_snapshots_key(self, repo):
        # bupstash always opens with its key file (BUPSTASH_KEY).
        return ([], self.list_snapshots(repo))


TOOLS = {t.name: t for t in (Strongroom, Restic, Rustic, Borg, Bupstash)}


# ----------------------------------------------------------------------------- the bench

class Bench:
    def __init__(self, args):
        self.a = args
        self.data = os.path.join(HERE, "data", args.mode)
        self.work = os.path.join(HERE, "work", args.mode)
        with open(os.path.join(self.data, "manifest.json")) as fh:
            self.manifest = json.load(fh)
        rmtree(self.work)
        os.makedirs(self.work)
        self.runner = Runner(os.path.join(self.work, "logs"))
        self.dump1 = os.path.join(self.data, "dump_before.sql")
        self.dump2 = os.path.join(self.data, "dump_after.sql")
        self.live = os.path.join(self.data, "live")
        self.results = dict(steps={s: {} for s in STEPS}, floors={}, sizes={}, invalid={},
                            database={}, snapshot_count={}, small_files={}, notes={})
        self.snapcount_ids = {}
        self.trash = os.path.join(self.work, "trash")
        self.trash_n = 0

    # Deleting many files slows down the steps that create files after it, whichever tool
    # they are, on ext4 without a journal: for a minute after inodes are freed (six while
    # their inode table block is dirty, as creating files nearby makes it), every file
    # created in their group first looks past each of them for an inode not freed recently
    # (the kernel's recently_deleted()). A restore of 3,000 files after another tool's
    # restore was deleted took 2.4-3 s instead of 1.2-1.5 s, most of it in the kernel. So
    # nothing is deleted until the run ends: files are emptied (which frees their blocks and
    # their page cache, not their inodes) and moved aside.
    def discard(self, path):
        if not os.path.lexists(path):
            return
        if os.path.isdir(path) and not os.path.islink(path):
            for d, _, fs in os.walk(path):
                for f in fs:
                    self.empty_file(os.path.join(d, f))
        else:
            self.empty_file(path)
        os.makedirs(self.trash, exist_ok=True)
        self.trash_n += 1
        os.rename(path, os.path.join(self.trash, str(self.trash_n)))

    @staticmethod
    def empty_file(path):
        """Truncates a regular file that has no other link (never a symlink's target, never
        a file hard-linked elsewhere, such as the input trees' shared files); best effort:
        some tools make their repository files read-only."""
        try:
            st = os.lstat(path)
            if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1 or st.st_size == 0:
                return
            if not st.st_mode & 0o200:
                os.chmod(path, st.st_mode | 0o200)
            os.truncate(path, 0)
        except OSError:
            pass

    # Trees: v1 and v2 take turns at live/media_tree (a rename keeps every inode).
    def place(self, version):
        if os.path.isdir(self.live):
            with open(os.path.join(self.live, "STATE")) as fh:
                cur = fh.read().strip()
            if cur == version:
                return
            os.rename(self.live, os.path.join(self.data, cur))
        os.rename(os.path.join(self.data, version), self.live)

    def unplace(self):
        if os.path.isdir(self.live):
            with open(os.path.join(self.live, "STATE")) as fh:
                os.rename(self.live, os.path.join(self.data, fh.read().strip()))

    def tree(self, version):
        """Path of a version's tree while it is not placed."""
        return os.path.join(self.data, version, "media_tree")

    def record(self, group, name, key, res, nbytes):
        slot = self.results[group].setdefault(name, {})
        entry = slot.setdefault(key, dict(bytes=nbytes, runs=[]))
        entry["runs"].append(res)

    def mark_invalid(self, tool, steps, why):
        log(f"  INVALID {tool}: {why}")
        for s in steps:
            self.results["invalid"].setdefault(tool, {}).setdefault(s, []).append(why)

    # --- floors
    def floors(self, rnd):
        v1 = self.tree("v1")
        files = os.path.join(self.work, "files.lst")
        with open(files, "wb") as fh:
            for d, _, fs in sorted(os.walk(v1)):
                for f in sorted(fs):
                    fh.write(os.path.join(d, f).encode() + b"\0")
        tb = self.manifest["media"]["bytes"]
        db = os.path.getsize(self.dump1)
        x = f"xargs -0 -a '{files}'"
        cp_target = os.path.join(self.work, "cp-floor")
        self.discard(cp_target)
        todo = [
            ("cat_tree", ["sh", "-c", f"{x} cat > /dev/null"], tb),
            ("zstd_tree", ["sh", "-c", f"{x} cat | zstd -3 -T2 -c > /dev/null"], tb),
            ("b3sum_tree", ["sh", "-c", f"{x} b3sum > /dev/null"], tb),
            ("cp_tree", ["cp", "-a", v1, cp_target], tb),
            ("cat_dump", ["sh", "-c", f"cat '{self.dump1}' > /dev/null"], db),
            ("zstd_dump", ["zstd", "-3", "-T2", "-c", self.dump1, "-o", "/dev/null", "-f",
                           "-q"], db),
            ("b3sum_dump", ["b3sum", self.dump1], db),
        ]
        for name, cmd, nbytes in todo:
            res = self.runner.run(f"floor-{name}", cmd)
            self.record("floors", name, "floor", res, nbytes)
            if name == "cp_tree":
                self.discard(cp_target)
                subprocess.run(["sync"])

    # --- one tool, one round
    def tool_round(self, tool_cls, rnd):
        name = tool_cls.name
        ws = os.path.join(self.work, name)
        self.discard(ws)
        os.makedirs(ws)
        t = tool_cls(ws)
        env = t.env()
        R = self.runner
        mb = self.manifest["media"]
        sizes = self.results["sizes"].setdefault(name, {})

        def timed(step, cmd, nbytes, **kw):
            # Earlier writes (another tool's repository or restore) are flushed first, so
            # that their writeback does not land in this step's time.
            subprocess.run(["sync"])
            res = R.run(f"{name}-{step}-r{rnd}", cmd, env=env, **kw)
            self.record("steps", step, name, res, nbytes)
            return res.get("error") is None

        def untimed(label, cmd, **kw):
            res = R.run(f"{name}-{label}-r{rnd}", cmd, env=env, **kw)
            if res.get("error"):
                raise RuntimeError(f"{name} {label}: {res['error']}")

        # ---- media
        repo = os.path.join(ws, "repo-media")
        for c in t.init(repo):
            untimed("init", c)
        s0 = du(repo)
        if rnd == 0:
            try:
                self.results.setdefault("kdf", {})[name] = t.kdf(repo)
            except Exception as e:  # noqa: BLE001 - informational only
                self.results.setdefault("kdf", {})[name] = f"unknown ({e})"
        self.place("v1")
        ok1 = timed("backup_first", t.backup_tree(repo, "media1"), mb["bytes"], cwd=self.live)
        s1 = du(repo)
        sizes.setdefault("media_empty", []).append(s0)
        sizes.setdefault("media_after_first", []).append(s1)
        if ok1:
            t.after_backup(repo, "media1")
        self.place("v2")
        ok2 = timed("backup_incr", t.backup_tree(repo, "media2"), mb["v2_bytes"], cwd=self.live)
        s2 = du(repo)
        sizes.setdefault("media_after_incr", []).append(s2)
        self.unplace()
        if ok2:
            t.after_backup(repo, "media2")
            target = os.path.join(ws, "restore")
            os.makedirs(target)
            okr = timed("restore_tree", t.restore_tree(repo, "media2", target), mb["v2_bytes"],
                        cwd=target)
            if okr and not same_tree(t.restored_root(target), self.tree("v2")):
                self.mark_invalid(name, ["backup_incr", "restore_tree"],
                                  f"round {rnd + 1}: the restored tree differs from its input")
            self.discard(target)
            if rnd == 0 and ok1:
                # The first snapshot too, once (untimed).
                os.makedirs(target)
                untimed("restore-first", t.restore_tree(repo, "media1", target), cwd=target)
                if not same_tree(t.restored_root(target), self.tree("v1")):
                    self.mark_invalid(name, ["backup_first"], "round 1: the first snapshot "
                                      "restores to something other than its input")
                self.discard(target)
        if ok1 and ok2:
            timed("verify", t.verify(repo), s2)
            timed("list_snapshots", t.list_snapshots(repo), 0)
            keyed = t.list_snapshots_key(repo)
            if keyed:
                setup, cmd = keyed
                for c in setup:
                    untimed("key-file", c)
                timed("list_snapshots_key", cmd, 0)
        self.discard(repo)

        # ---- streams
        repo = os.path.join(ws, "repo-stream")
        for c in t.init(repo):
            untimed("init-stream", c)
        z0 = du(repo)
        okd1 = timed("stdin_dump", t.backup_stdin(repo, "dump1"), os.path.getsize(self.dump1),
                     pipe_from=self.dump1)
        z1 = du(repo)
        if okd1:
            t.after_backup(repo, "dump1")
        okd2 = timed("stdin_dump2", t.backup_stdin(repo, "dump2"),
                     os.path.getsize(self.dump2), pipe_from=self.dump2)
        z2 = du(repo)
        for k, v in (("stream_empty", z0), ("stream_after_dump1", z1), ("stream_after_dump2", z2)):
            sizes.setdefault(k, []).append(v)
        out = os.path.join(ws, "stream.out")
        if okd2:
            t.after_backup(repo, "dump2")
            ok = timed("restore_stream", t.restore_stream(repo, "dump2"),
                       os.path.getsize(self.dump2), stdout_path=out)
            if ok and not filecmp.cmp(out, self.dump2, shallow=False):
                self.mark_invalid(name, ["stdin_dump2", "restore_stream", "growth"],
                                  f"round {rnd + 1}: the second dump reads back different bytes")
            os.unlink(out)
        if okd1:
            untimed("restore-dump1", t.restore_stream(repo, "dump1"), stdout_path=out)
            if not filecmp.cmp(out, self.dump1, shallow=False):
                self.mark_invalid(name, ["stdin_dump", "growth"],
                                  f"round {rnd + 1}: the first dump reads back different bytes")
            os.unlink(out)
        self.discard(repo)
        self.discard(ws)

    # --- issue 6, point 4: listing and restoring one file with 10 and with 10,000 snapshots
    def snapshot_count_round(self, rnd):
        ws = os.path.join(self.work, "snapcount")
        R = self.runner
        t = Strongroom(ws)
        env = t.env()
        counts = (10, 10_000)
        if rnd == 0:
            self.discard(ws)
            os.makedirs(ws)
            # A small folder: the 50 smallest files of the first tree.
            v1 = self.tree("v1")
            files = sorted((os.path.getsize(os.path.join(d, f)), os.path.join(d, f))
                           for d, _, fs in os.walk(v1) for f in fs)[:50]
            src = os.path.join(ws, "small")
            os.makedirs(src)
            for i, (_, f) in enumerate(files):
                shutil.copyfile(f, os.path.join(src, f"file{i:02}"))
            for n in counts:
                repo = os.path.join(ws, f"repo{n}")
                for c in t.init(repo):
                    R.run(f"snapcount-init-{n}", c, env=env)
                R.run(f"snapcount-backup-{n}", t.s(repo, "backup", "--path", src), env=env)
                snaps = json.loads(sh(t.s(repo, "snapshots", "--json"), env=env))
                # The other n - 1 are copies of it a minute apart (a fixture, not a backup).
                R.run(f"snapcount-copies-{n}", [REPEAT_SNAPSHOT, repo, snaps[0]["id"], str(n - 1)],
                      env=env)
                self.snapcount_ids[n] = snaps[0]["id"][:8]
                # Untimed: fills the local snapshot cache, as any earlier command would.
                R.run(f"snapcount-warm-{n}", t.s(repo, "snapshots"), env=env)
        for n in counts:
            repo = os.path.join(ws, f"repo{n}")
            res = R.run(f"snapcount-list-{n}-r{rnd}", t.s(repo, "snapshots"), env=env)
            self.record("snapshot_count", f"list_{n}", "strongroom", res, 0)
            res = R.run(f"snapcount-list-nocache-{n}-r{rnd}",
                        t.s(repo, "snapshots", "--no-cache"), env=env)
            self.record("snapshot_count", f"list_nocache_{n}", "strongroom", res, 0)
            target = os.path.join(ws, "restore")
            self.discard(target)
            res = R.run(f"snapcount-restore-{n}-r{rnd}",
                        t.s(repo, "restore", self.snapcount_ids[n], "--target", target,
                            "--include", "small/file07"), env=env)
            if not res.get("error") and not filecmp.cmp(
                    os.path.join(target, "small", "file07"),
                    os.path.join(ws, "small", "file07"), shallow=False):
                self.mark_invalid("strongroom", ["snapshot_count"],
                                  f"round {rnd + 1}: the file restored from {n} snapshots differs")
            self.discard(target)
            self.record("snapshot_count", f"restore_{n}", "strongroom", res, 0)
        if rnd == self.a.runs - 1:
            self.discard(ws)

    # --- issue 6, point 4: backing up again a tree of many small files that did not change
    SMALL_ROUNDS = 3  # the re-backups are timed in the first three rounds only (1M files)

    def small_files_round(self, rnd, tools):
        root = os.path.join(self.data, "small_files")
        with open(os.path.join(root, "manifest.json")) as fh:
            sm = json.load(fh)
        self.results["small_files_data"] = sm
        sizes = self.results.setdefault("small_files_sizes", {})
        R = self.runner
        last = rnd == min(self.a.runs, self.SMALL_ROUNDS) - 1
        for tc in tools:
            name = tc.name
            ws = os.path.join(self.work, "small", name)
            if rnd == 0:
                self.discard(ws)
                os.makedirs(ws)
            t = tc(ws)
            env = t.env()
            repo = os.path.join(ws, "repo")

            def timed(step, t=t, env=env, repo=repo, name=name):
                subprocess.run(["sync"])
                res = R.run(f"small-{name}-{step}-r{rnd}",
                            t.backup_tree(repo, f"small-{step}-{rnd}", "tree"), env=env, cwd=root)
                self.record("small_files", step, name, res, sm["bytes"])
                if res.get("error"):
                    self.results["notes"].setdefault(name, []).append(
                        f"small files, {step}, round {rnd + 1}: {res['error'][:300]}")
                return res.get("error") is None

            log(f"  {tc.label}")
            if rnd == 0:
                for c in t.init(repo):
                    R.run(f"small-{name}-init", c, env=env)
                if not timed("first"):
                    self.discard(ws)
                    continue
                sizes[name] = du(repo)
            if not os.path.isdir(repo):
                continue
            ok = timed("again")
            if ok and last and name == "strongroom":
                # Strongroom's last snapshot of the tree, restored and compared (once).
                t.after_backup(repo, "again")
                target = os.path.join(ws, "restore")
                os.makedirs(target)
                res = R.run(f"small-{name}-restore", t.restore_tree(repo, "again", target),
                            env=env, cwd=target)
                restored = t.restored_root(target, "tree")
                if res.get("error") or not same_tree(restored, os.path.join(root, "tree")):
                    self.mark_invalid(name, ["small_files"], "the re-backup of the small files "
                                      "restores to something other than its input")
                self.discard(target)
            if last:
                self.discard(ws)

    # --- issue 3: database backups with Strongroom against pg_dump itself
    def database_round(self, rnd):
        dbm = self.manifest["database"]
        db, db_after = dbm["db"], dbm["db_after"]
        ws = os.path.join(self.work, "database")
        self.discard(ws)
        os.makedirs(ws)
        R = self.runner
        out = os.path.join(ws, "dump.out")
        dump_bytes = 0
        for name, extra in (("pg_dump_fc_z0", ["-Fc", "-Z0"]), ("pg_dump_fc", ["-Fc"])):
            res = R.run(f"db-{name}-r{rnd}", ["pg_dump", *PG_ARGS, *extra, db], stdout_path=out)
            res["out_bytes"] = os.path.getsize(out)
            dump_bytes = dump_bytes or res["out_bytes"]
            self.record("database", name, "floor", res, dump_bytes)
            os.unlink(out)
        t = Strongroom(ws)
        env = t.env()
        repo = os.path.join(ws, "repo-db")
        for c in t.init(repo):
            R.run(f"db-init-r{rnd}", c, env=env)
        d0 = du(repo)
        res = R.run(f"db-strongroom-first-r{rnd}",
                    t.s(repo, "backup", "--type", "database", "--database",
                        f"bench={PG_URL}{db}"), env=env)
        d1 = du(repo)
        self.record("database", "strongroom_first", "strongroom", res, dump_bytes)
        res = R.run(f"db-strongroom-second-r{rnd}",
                    t.s(repo, "backup", "--type", "database", "--database",
                        f"bench={PG_URL}{db_after}"), env=env)
        d2 = du(repo)
        self.record("database", "strongroom_second", "strongroom", res, dump_bytes)
        sz = self.results["database"].setdefault("sizes", {})
        for k, v in (("empty", d0), ("after_first", d1), ("after_second", d2)):
            sz.setdefault(k, []).append(v)
        if rnd == 0 and not res.get("error"):
            # The second backup, read back through pg_restore, is the plain dump after pgbench.
            t.after_backup(repo, "db2")
            p1 = subprocess.Popen(t.restore_stream(repo, "db2"), env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.DEVNULL)
            with open(out, "wb") as fh:
                subprocess.run(["pg_restore", "-f", "-", "--restrict-key=strongroombench"],
                               stdin=p1.stdout, stdout=fh, check=False)
            p1.wait()
            if not filecmp.cmp(out, self.dump2, shallow=False):
                why = "the second database backup, through pg_restore, differs from the dump"
                self.mark_invalid("strongroom", ["database"], why)
            os.unlink(out)
        self.discard(ws)

    def run(self):
        tools = [TOOLS[n] for n in self.a.tools]
        started = time.time()
        self.results["meta"] = meta(self.a, self.manifest, tools)
        self.results["meta"]["load_start"] = os.getloadavg()
        self.results["meta"]["deletes_deferred"] = True
        for rnd in range(self.a.runs):
            order = tools[rnd % len(tools):] + tools[:rnd % len(tools)]
            log(f"round {rnd + 1}/{self.a.runs}: floors")
            self.floors(rnd)
            for tc in order:
                log(f"round {rnd + 1}/{self.a.runs}: {tc.label}")
                try:
                    self.tool_round(tc, rnd)
                except Exception as e:  # noqa: BLE001 - one tool's failure must not stop the run
                    log(f"  ! {tc.label}: {e}")
                    self.results["notes"].setdefault(tc.name, []).append(
                        f"round {rnd + 1}: {str(e)[:500]}")
                finally:
                    self.unplace()
            if not self.a.no_database:
                log(f"round {rnd + 1}/{self.a.runs}: database backups (issue 3)")
                self.database_round(rnd)
            if "strongroom" in self.a.tools:
                log(f"round {rnd + 1}/{self.a.runs}: 10 against 10,000 snapshots (issue 6, point 4)")
                self.snapshot_count_round(rnd)
            if not self.a.no_small_files and rnd < self.SMALL_ROUNDS:
                log(f"round {rnd + 1}/{self.a.runs}: many small files, backed up again "
                    f"(issue 6, point 4)")
                self.small_files_round(rnd, order)
            self.save(partial=True)
        self.results["meta"]["load_end"] = os.getloadavg()
        self.results["meta"]["seconds"] = round(time.time() - started)
        self.results["meta"]["finished"] = utcnow()
        rmtree(self.trash)
        return self.save(partial=False)

    def save(self, partial):
        os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
        stamp = self.results["meta"]["started"].replace(":", "").replace("-", "")
        path = os.path.join(HERE, "results", f"{self.a.mode}-{stamp}.json")
        self.results["meta"]["partial"] = partial
        with open(path, "w") as fh:
            json.dump(self.results, fh, indent=1)
        if not partial:
            shutil.copyfile(path, os.path.join(HERE, "results", f"latest-{self.a.mode}.json"))
        return path


def same_tree(a, b):
    return subprocess.run(["diff", "-r", "-q", "--no-dereference", a, b],
                          capture_output=True).returncode == 0


def utcnow():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def meta(a, manifest, tools):
    def cpu_model():
        try:
            for line in sh(["lscpu"]).splitlines():
                if line.startswith("Model name:"):
                    return line.split(":", 1)[1].strip()
        except Exception:  # noqa: BLE001
            pass
        return platform.processor() or "unknown"

    with open("/proc/meminfo") as fh:
        mem_kb = int(fh.readline().split()[1])
    disk = " ".join(first_line(["findmnt", "-n", "-o", "SOURCE,FSTYPE,SIZE", "--target",
                                HERE]).split())
    try:
        dev = disk.split()[0]
        rota = sh(["lsblk", "-n", "-d", "-o", "ROTA,MODEL", dev]).strip()
        disk += f" (rotational={rota.split()[0]}{', ' + ' '.join(rota.split()[1:]) if len(rota.split()) > 1 else ''})"
    except Exception:  # noqa: BLE001
        pass
    git = first_line(["git", "-C", ROOT, "rev-parse", "--short=12", "HEAD"])
    dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout.strip()
    versions = {t.name: t(HERE).version() for t in tools}
    versions["strongroom"] = versions.get("strongroom", "") + f" (git {git}{', modified' if dirty else ''})"
    versions.update({
        "zstd": first_line(["zstd", "--version"]).strip("* "),
        "b3sum": first_line(["b3sum", "--version"]),
        "pg_dump": first_line(["pg_dump", "--version"]),
        "postgres server": sh(["psql", "-X", *PG_ARGS, "-d", "postgres", "-At", "-c",
                               "SHOW server_version"]).strip(),
        "python": platform.python_version(),
    })
    return dict(
        mode=a.mode, runs=a.runs, tools=[t.name for t in tools],
        command=os.environ.get("BENCH_COMMAND", " ".join(sys.argv)),
        started=utcnow(),
        machine=dict(nproc=os.cpu_count(), cpu=cpu_model(), memory_gib=round(mem_kb / 2**20, 1),
                     disk=disk, kernel=platform.release(), os=first_line(
                         ["sh", "-c", ". /etc/os-release && echo $PRETTY_NAME"])),
        versions=versions, data=manifest,
    )


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", choices=["full", "quick"], default="full")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--tools", default=",".join(TOOLS))
    ap.add_argument("--no-database", action="store_true")
    ap.add_argument("--no-small-files", action="store_true")
    a = ap.parse_args()
    a.tools = [t for t in a.tools.split(",") if t]
    for t in a.tools:
        if t not in TOOLS:
            sys.exit(f"unknown tool {t}; known: {', '.join(TOOLS)}")
    b = Bench(a)
    try:
        path = b.run()
    finally:
        b.unplace()
    print(path)


if __name__ == "__main__":
    main()
