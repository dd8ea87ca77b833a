#!/usr/bin/env python3
"""Deterministic benchmark data for bench/run (fixed seeds; the same bytes on every machine).

Writes, under DATA_DIR (bench/data/full or bench/data/quick):

  v1/media_tree/...   the media tree: ~3,000 files (quick: ~300) of 1 KiB..20 MiB with
                      log-normal sizes, ~1 GiB in all (quick: ~100 MiB); 60 % of the bytes
                      are random (incompressible), 40 % prose, CSV and JSON (~3x with zstd -3)
  v2/media_tree/...   the same tree after ~5 % of the files were changed, added or removed.
                      Unchanged files are hard links to v1's, so they keep their inode, size,
                      mtime and ctime: a backup tool's "unchanged file" shortcut sees them as
                      unchanged once the tree sits at the same path (bench.py moves v1 and v2
                      in turn to one path, live/, by renaming the parent folder).
  dump_before.sql     plain `pg_dump` of the PostgreSQL benchmark database (pgbench -i -s 20
                      plus a table of ~130 MB of generated prose; quick: -s 2 and ~13 MB)
  dump_after.sql      the same after `pgbench -t 2000 -c 1` (a copy of the database, so the
                      database backups can be repeated: DB_after = CREATE DATABASE .. TEMPLATE DB)
  small_files/tree/.. many small files (full: 1,000,000; quick: 20,000), 1,000 to a folder,
                      200 B..3 KiB of text each (a header with the file's number makes every
                      one unique): the "re-back up an unchanged tree of 1,000,000 small
                      files" step (issue 6, point 4)
  manifest.json       what was generated: sizes, counts, the change set, databases

Rerunning is cheap: each part is skipped when its manifest entry matches the parameters.
"""

import argparse
import hashlib
import itertools
import json
import math
import os
import random
import shutil
import subprocess
import sys
import time

GENERATOR_VERSION = 5  # of the media tree
DB_VERSION = 2  # of the databases and dumps

MODES = {
    # total bytes of the media tree, number of files, pgbench scale, prose bytes in the db
    "full": dict(total=1 << 30, files=3000, scale=20, prose=130_000_000, db="strongroom_bench"),
    "quick": dict(total=(1 << 30) // 10, files=300, scale=2, prose=13_000_000,
                  db="strongroom_bench_quick"),
}
SMALL_FILES = {"full": 1_000_000, "quick": 20_000}
SMALL_PER_DIR = 1000
SMALL_VERSION = 1
MIN_SIZE = 1 << 10
MAX_SIZE = 20 << 20
RANDOM_SHARE = 0.60
CHANGE_SHARE = 0.05  # of the files: changed, added or removed
SEED = 20240601
PG = dict(host="127.0.0.1", port="5432", user="postgres")
BASE_MTIME = 1_704_067_200  # 2024-01-01T00:00:00Z
RESTRICT_KEY = "strongroombench"


def log(msg):
    print(f"gen_data: {msg}", flush=True)


# ----------------------------------------------------------------------------- text

class Text:
    """Fast generated prose, CSV and JSON that zstd -3 compresses about 3x.

    A vocabulary of made-up words (English letter frequencies, Zipf-like use) forms a pool
    of phrases; text is a uniform random sequence of phrases. The pool is large enough that
    zstd finds few long matches (~3x for prose, ~2.7x for CSV, ~3.7x for JSON).
    Every file's sequence is its own, so there are no duplicate chunks between files.
    """

    def __init__(self, seed, pool=50_000):
        r = random.Random(f"{seed}-vocab")
        letters = "etaoinshrdlcumwfgypbvkjxqz"
        weights = [12.7, 9.1, 8.2, 7.5, 7.0, 6.7, 6.3, 6.1, 6.0, 4.3, 4.0, 2.8, 2.8, 2.4,
                   2.4, 2.2, 2.0, 2.0, 1.9, 1.5, 1.0, 0.8, 0.15, 0.15, 0.1, 0.07]
        vocab = set()
        while len(vocab) < 8000:
            n = max(1, min(14, int(r.lognormvariate(1.5, 0.45))))
            vocab.add("".join(r.choices(letters, weights, k=n)))
        vocab = sorted(vocab)
        r.shuffle(vocab)
        weighted = []
        for i, w in enumerate(vocab):
            weighted += [w] * max(1, int(400 / (i + 1)))
        ends = [" "] * 12 + [", "] * 2 + [". "] * 3 + [".\n\n"]
        self.phrases = [" ".join(r.choices(weighted, k=r.randint(2, 4))) + r.choice(ends)
                        for _ in range(pool)]
        self.words = vocab[:3000]
        self.cities = [w.capitalize() + " " + r.choice(["City", "Town", "Falls", "Park", ""])
                       for w in vocab[3000:3400]]

    def prose(self, r, size):
        k = size // 20 + 16
        out = "".join(r.choices(self.phrases, k=k)).encode()
        while len(out) < size:
            out += "".join(r.choices(self.phrases, k=k)).encode()
        return out[:size]

    def html(self, r, size):
        body = self.prose(r, size).decode()
        paras = body.split("\n\n")
        out = ("<!doctype html>\n<html><head><title>" + paras[0][:40] + "</title></head>\n<body>\n"
               + "\n".join(f"<p>{p}</p>" for p in paras) + "\n</body></html>\n").encode()
        return out[:size]

    def csv(self, r, size):
        rows = ["id,date,customer,city,item,quantity,amount,status\n"]
        n = 0
        i = r.randrange(1, 10_000_000)
        rnd, words, cities = r.random, self.words, self.cities
        statuses = ["paid", "open", "refunded", "shipped", "cancelled"]
        while n < size:
            d = int(rnd() * 1500)
            row = (f"{i},2021-{1 + d % 12:02d}-{1 + d % 28:02d},{words[int(rnd() * 3000)]} "
                   f"{words[int(rnd() * 3000)]},{cities[int(rnd() * 400)]},"
                   f"{words[int(rnd() * 3000)]}-{int(rnd() * 900) + 100},{int(rnd() * 20) + 1},"
                   f"{rnd() * 2000:.2f},{statuses[int(rnd() * 5)]}\n")
            rows.append(row)
            n += len(row)
            i += 1 + int(rnd() * 3)
        return "".join(rows).encode()[:size]

    def json(self, r, size):
        parts = ["[\n"]
        n = 2
        rnd, words, cities = r.random, self.words, self.cities
        i = r.randrange(1, 1_000_000)
        while n < size:
            rec = json.dumps({
                "id": i,
                "user": f"{words[int(rnd() * 3000)]}.{words[int(rnd() * 3000)]}",
                "city": cities[int(rnd() * 400)],
                "score": round(rnd() * 100, 3),
                "active": rnd() < 0.7,
                "tags": [words[int(rnd() * 3000)] for _ in range(int(rnd() * 4))],
                "note": "".join(r.choices(self.phrases, k=2 + int(rnd() * 4))).strip(),
            }, separators=(", ", ": "))
            s = "  " + rec + ",\n"
            parts.append(s)
            n += len(s)
            i += 1
        parts.append("]\n")
        return "".join(parts).encode()[:size]


TEXT_KINDS = [("txt", "prose"), ("md", "prose"), ("html", "html"), ("csv", "csv"),
              ("json", "json")]
BIN_EXTS = ["jpg", "png", "mp4", "pdf", "zip", "webp"]
TOPS = ["uploads", "documents", "images", "exports", "video", "attachments"]


def content(text, kind, r, size):
    if kind == "bin":
        return r.randbytes(size)
    return getattr(text, kind)(r, size)


# ----------------------------------------------------------------------------- media tree

def plan_sizes(r, n, total):
    """n log-normal sizes clipped to [MIN_SIZE, MAX_SIZE], scaled to sum to ~total."""
    raw = [r.lognormvariate(0.0, 2.2) for _ in range(n)]
    scale = total / n / (sum(raw) / n)
    for _ in range(60):
        sizes = [min(MAX_SIZE, max(MIN_SIZE, int(x * scale))) for x in raw]
        s = sum(sizes)
        if abs(s - total) < total * 0.002:
            break
        scale *= total / s
    return sizes


def plan_tree(mode):
    p = MODES[mode]
    r = random.Random(f"{SEED}-{mode}-plan")
    sizes = plan_sizes(r, p["files"], p["total"])
    total = sum(sizes)
    order = list(range(len(sizes)))
    r.shuffle(order)
    kinds = [None] * len(sizes)
    rand_bytes = 0
    for i in order:
        if rand_bytes + sizes[i] <= RANDOM_SHARE * total:
            kinds[i] = "bin"
            rand_bytes += sizes[i]
        else:
            kinds[i] = "text"
    dirs = [f"{t}/{y}/{m:02d}" for t in TOPS for y in (2022, 2023, 2024) for m in range(1, 13, 2)]
    files = []
    for i, (size, kind) in enumerate(zip(sizes, kinds)):
        if kind == "bin":
            ext, gen = r.choice(BIN_EXTS), "bin"
        else:
            ext, gen = r.choice(TEXT_KINDS)
        d = r.choice(dirs)
        files.append(dict(path=f"{d}/f{i:05d}.{ext}", size=size, gen=gen, seed=f"{SEED}-f{i}",
                          mtime=BASE_MTIME + i * 37))
    return files


def plan_changes(mode, files):
    r = random.Random(f"{SEED}-{mode}-changes")
    n = max(3, round(len(files) * CHANGE_SHARE))
    n_mod, n_add = round(n * 0.4), round(n * 0.3)
    n_del = n - n_mod - n_add
    idx = list(range(len(files)))
    r.shuffle(idx)
    modified = sorted(idx[:n_mod])
    removed = sorted(idx[n_mod:n_mod + n_del])
    extra = plan_sizes(r, max(n_add * 10, 100), sum(f["size"] for f in files) / len(files)
                       * max(n_add * 10, 100))
    added = []
    dirs = sorted({os.path.dirname(f["path"]) for f in files})
    for j in range(n_add):
        size = extra[j]
        if r.random() < RANDOM_SHARE:
            ext, gen = r.choice(BIN_EXTS), "bin"
        else:
            ext, gen = r.choice(TEXT_KINDS)
        added.append(dict(path=f"{r.choice(dirs)}/new{j:05d}.{ext}", size=size, gen=gen,
                          seed=f"{SEED}-{mode}-new{j}", mtime=BASE_MTIME + 50_000_000 + j))
    return modified, removed, added


def modify(text, f, data, r):
    """A changed version of a file: a region rewritten (binary) or text inserted and edited."""
    data = bytearray(data)
    if f["gen"] == "bin":
        n = min(len(data), r.randint(4 << 10, 256 << 10))
        at = r.randrange(0, len(data) - n + 1)
        data[at:at + n] = r.randbytes(n)
        if r.random() < 0.3:
            data += r.randbytes(r.randint(1 << 10, 64 << 10))
        return bytes(data)
    ins = text.prose(r, r.randint(200, 8000))
    at = r.randrange(0, len(data) + 1)
    data[at:at] = ins
    at2 = r.randrange(0, len(data))
    data[at2:at2 + 100] = text.prose(r, 100)
    return bytes(data)


def write_file(path, data, mtime):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(data)
    os.utime(path, (mtime, mtime))


def gen_media(mode, data_dir, text):
    files = plan_tree(mode)
    v1 = os.path.join(data_dir, "v1", "media_tree")
    v2 = os.path.join(data_dir, "v2", "media_tree")
    for d in ("v1", "v2", "live"):
        shutil.rmtree(os.path.join(data_dir, d), ignore_errors=True)
    t = time.time()
    for k, f in enumerate(files):
        r = random.Random(f["seed"])
        write_file(os.path.join(v1, f["path"]), content(text, f["gen"], r, f["size"]), f["mtime"])
        if k % 500 == 499:
            log(f"  v1: {k + 1}/{len(files)} files ({time.time() - t:.0f} s)")
    modified, removed, added = plan_changes(mode, files)
    # v2: hard links to v1 (same inodes), then the changes as new inodes.
    for f in files:
        src, dst = os.path.join(v1, f["path"]), os.path.join(v2, f["path"])
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        os.link(src, dst)
    new_bytes = 0
    r = random.Random(f"{SEED}-{mode}-modify")
    for i in modified:
        f = files[i]
        p = os.path.join(v2, f["path"])
        with open(p, "rb") as fh:
            old = fh.read()
        os.unlink(p)  # never write through the link: v1 shares the inode
        data = modify(text, f, old, r)
        write_file(p, data, f["mtime"] + 86_400)
        new_bytes += len(data)
    for i in removed:
        os.unlink(os.path.join(v2, files[i]["path"]))
    for f in added:
        rr = random.Random(f["seed"])
        data = content(text, f["gen"], rr, f["size"])
        write_file(os.path.join(v2, f["path"]), data, f["mtime"])
        new_bytes += len(data)
    with open(os.path.join(data_dir, "v1", "STATE"), "w") as fh:
        fh.write("v1\n")
    with open(os.path.join(data_dir, "v2", "STATE"), "w") as fh:
        fh.write("v2\n")
    v1_bytes = sum(f["size"] for f in files)
    v2_bytes = tree_bytes(v2)
    rand = sum(f["size"] for f in files if f["gen"] == "bin")
    return dict(
        files=len(files), bytes=v1_bytes, random_bytes=rand, random_share=rand / v1_bytes,
        dirs=len({os.path.dirname(f["path"]) for f in files}),
        min_file=min(f["size"] for f in files), max_file=max(f["size"] for f in files),
        v2_files=len(files) - len(removed) + len(added), v2_bytes=v2_bytes,
        changed=len(modified), added=len(added), removed=len(removed),
        changed_or_added_bytes=new_bytes,
        removed_bytes=sum(files[i]["size"] for i in removed),
        seconds=round(time.time() - t, 1),
    )


def gen_small_files(mode, data_dir, text):
    """Many small files: SMALL_FILES[mode] of them, SMALL_PER_DIR to a folder."""
    n = SMALL_FILES[mode]
    root = os.path.join(data_dir, "small_files")
    marker = os.path.join(root, "DONE")
    want = f"v{SMALL_VERSION} n={n} seed={SEED}"
    if os.path.exists(marker):
        with open(marker) as fh:
            if fh.read().strip() == want:
                log(f"small files ({n:,}) are up to date")
                return
    shutil.rmtree(root, ignore_errors=True)
    log(f"generating {n:,} small files in {root}")
    r = random.Random(f"{SEED}-small")
    pool = text.prose(r, 1 << 20)
    t = time.time()
    total = 0
    for k in range(n):
        if k % SMALL_PER_DIR == 0:
            d = os.path.join(root, "tree", f"d{k // SMALL_PER_DIR:04d}")
            os.makedirs(d)
            if k and k % 100_000 == 0:
                log(f"  {k:,}/{n:,} files ({time.time() - t:.0f} s)")
        size = r.randrange(200, 3072)
        at = r.randrange(0, len(pool) - size)
        data = f"file {k}\n".encode() + pool[at:at + size]
        path = os.path.join(d, f"f{k % SMALL_PER_DIR:03d}.txt")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        os.write(fd, data)
        os.utime(fd, (BASE_MTIME, BASE_MTIME))
        os.close(fd)
        total += len(data)
    with open(os.path.join(root, "manifest.json"), "w") as fh:
        json.dump(dict(files=n, bytes=total, per_dir=SMALL_PER_DIR,
                       seconds=round(time.time() - t, 1)), fh, indent=2)
    with open(marker, "w") as fh:
        fh.write(want + "\n")
    log(f"small files: {n:,} files, {total / 1e6:.0f} MB ({time.time() - t:.0f} s)")


def tree_digest(root):
    """SHA-256 over every file's relative path, size and SHA-256, in path order: two trees
    with the same digest hold the same bytes (used to show that generation is deterministic)."""
    h = hashlib.sha256()
    paths = sorted(os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root)
                   for f in fs)
    for p in paths:
        full = os.path.join(root, p)
        h.update(f"{p}\0{os.path.getsize(full)}\0{sha256(full)}\n".encode())
    return h.hexdigest()


def tree_bytes(root):
    n = 0
    for d, _, fs in os.walk(root):
        for f in fs:
            n += os.lstat(os.path.join(d, f)).st_size
    return n


def zstd_ratio(paths):
    """zstd -3 ratio of the concatenation of the given files (measured, for the manifest)."""
    total = 0
    cat = subprocess.Popen(["cat", *paths], stdout=subprocess.PIPE)
    z = subprocess.run(["zstd", "-3", "-T2", "-c"], stdin=cat.stdout, capture_output=True)
    cat.wait()
    total = sum(os.path.getsize(p) for p in paths)
    return total / max(1, len(z.stdout))


# ----------------------------------------------------------------------------- database

def psql(db, sql, **kw):
    return subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", PG["host"], "-p",
                           PG["port"], "-U", PG["user"], "-d", db, "-At", "-c", sql],
                          check=True, capture_output=True, text=True, **kw).stdout.strip()


def db_marker(db):
    try:
        return psql(db, "SELECT v FROM bench_meta")
    except subprocess.CalledProcessError:
        return None


def gen_database(mode, data_dir, text):
    p = MODES[mode]
    db, db_after = p["db"], p["db"] + "_after"
    marker = f"v{GENERATOR_VERSION}.{DB_VERSION}-s{p['scale']}-p{p['prose']}"
    before = os.path.join(data_dir, "dump_before.sql")
    after = os.path.join(data_dir, "dump_after.sql")
    if (db_marker(db) == marker and db_marker(db_after) == marker + "-after"
            and os.path.exists(before) and os.path.exists(after)):
        log(f"databases {db}, {db_after} and their dumps are up to date")
    else:
        t = time.time()
        for d in (db_after, db):
            psql("postgres", f"DROP DATABASE IF EXISTS {d}")
        psql("postgres", f"CREATE DATABASE {db}")
        log(f"pgbench -i -s {p['scale']} {db}")
        subprocess.run(["pgbench", "-i", "-q", "-s", str(p["scale"]), "-h", PG["host"], "-p",
                        PG["port"], "-U", PG["user"], db], check=True, capture_output=True)
        log(f"prose table: {p['prose'] / 1e6:.0f} MB")
        tsv = os.path.join(data_dir, "prose.tsv")
        r = random.Random(f"{SEED}-{mode}-prose")
        n = 0
        row = 0
        with open(tsv, "w") as fh:
            while n < p["prose"]:
                row += 1
                body = text.prose(r, r.randint(500, 6000)).decode()
                title = text.prose(r, r.randint(20, 80)).decode().replace("\n", " ")
                body = body.replace("\\", "\\\\").replace("\t", " ").replace("\n", "\\n")
                fh.write(f"{row}\t{title}\t{body}\n")
                n += len(body) + len(title)
        psql(db, "CREATE TABLE bench_notes (id integer PRIMARY KEY, title text, body text)")
        psql(db, f"\\copy bench_notes FROM '{tsv}'")
        os.unlink(tsv)
        psql(db, "CREATE TABLE bench_meta (v text)")
        psql(db, f"INSERT INTO bench_meta VALUES ('{marker}')")
        psql(db, "VACUUM ANALYZE")
        psql("postgres", f"CREATE DATABASE {db_after} TEMPLATE {db}")
        psql(db_after, f"UPDATE bench_meta SET v = '{marker}-after'")
        log(f"pgbench -t 2000 -c 1 {db_after}")
        subprocess.run(["pgbench", "-t", "2000", "-c", "1", "--random-seed=42", "-h", PG["host"],
                        "-p", PG["port"], "-U", PG["user"], db_after], check=True,
                       capture_output=True)
        # pgbench stamps its history rows with the clock: make them deterministic (the
        # update rewrites every row in scan order, so the dump's order stays deterministic).
        psql(db_after, "UPDATE pgbench_history SET mtime = timestamp '2024-01-01 00:00:00' "
                       "+ (aid % 86400) * interval '1 second'")
        psql(db_after, "VACUUM ANALYZE")
        psql(db_after, "CHECKPOINT")
        for d, out in ((db, before), (db_after, after)):
            with open(out + ".tmp", "wb") as fh:
                # A fixed \restrict key: pg_dump otherwise puts a random one in every dump.
                subprocess.run(["pg_dump", "-h", PG["host"], "-p", PG["port"], "-U", PG["user"],
                                f"--restrict-key={RESTRICT_KEY}", d], stdout=fh, check=True)
            os.replace(out + ".tmp", out)
        log(f"databases and dumps made in {time.time() - t:.0f} s")
    size = int(psql(db, f"SELECT pg_database_size('{db}')"))
    diff = subprocess.run(["diff", before, after], capture_output=True)
    changed = sum(1 for line in diff.stdout.splitlines() if line[:2] in (b"< ", b"> "))
    return dict(
        db=db, db_after=db_after, scale=p["scale"], prose_bytes=p["prose"], db_size=size,
        dump_before_bytes=os.path.getsize(before), dump_after_bytes=os.path.getsize(after),
        dump_before_sha256=sha256(before), dump_after_sha256=sha256(after),
        dump_lines=sum(1 for _ in open(before, "rb")), dump_diff_lines=changed,
        dump_zstd3_ratio=round(zstd_ratio([before]), 3),
    )


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ----------------------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mode", choices=sorted(MODES), default="full")
    ap.add_argument("--data", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                   "data"))
    ap.add_argument("--force", action="store_true", help="regenerate everything")
    ap.add_argument("--no-small-files", action="store_true",
                    help="skip the tree of many small files")
    a = ap.parse_args()
    data_dir = os.path.join(a.data, a.mode)
    os.makedirs(data_dir, exist_ok=True)
    mpath = os.path.join(data_dir, "manifest.json")
    manifest = {}
    if os.path.exists(mpath) and not a.force:
        with open(mpath) as fh:
            manifest = json.load(fh)
    params = dict(version=GENERATOR_VERSION, seed=SEED, mode=a.mode, **MODES[a.mode])
    text = Text(SEED)
    # A folder left at live/ by an interrupted run goes back to where it came from.
    live = os.path.join(data_dir, "live")
    if os.path.isdir(live):
        with open(os.path.join(live, "STATE")) as fh:
            os.rename(live, os.path.join(data_dir, fh.read().strip()))
    if (manifest.get("params") == params and "media" in manifest
            and os.path.isdir(os.path.join(data_dir, "v1", "media_tree"))
            and os.path.isdir(os.path.join(data_dir, "v2", "media_tree")) and not a.force):
        log(f"media tree ({a.mode}) is up to date")
    else:
        log(f"generating the media tree ({a.mode}) in {data_dir}")
        manifest = dict(params=params, media=gen_media(a.mode, data_dir, text))
        v1 = os.path.join(data_dir, "v1", "media_tree")
        text_files = [os.path.join(d, f) for d, _, fs in os.walk(v1) for f in fs
                      if f.rsplit(".", 1)[-1] in {k for k, _ in TEXT_KINDS}]
        manifest["media"]["text_zstd3_ratio"] = round(zstd_ratio(sorted(text_files)), 3)
        all_files = sorted(os.path.join(d, f) for d, _, fs in os.walk(v1) for f in fs)
        manifest["media"]["tree_zstd3_ratio"] = round(zstd_ratio(all_files), 3)
        manifest.pop("database", None)
        with open(mpath, "w") as fh:
            json.dump(manifest, fh, indent=2)
    if "v1_digest" not in manifest["media"]:
        for v in ("v1", "v2"):
            manifest["media"][f"{v}_digest"] = tree_digest(os.path.join(data_dir, v, "media_tree"))
    if a.force:
        for d in (MODES[a.mode]["db"] + "_after", MODES[a.mode]["db"]):
            psql("postgres", f"DROP DATABASE IF EXISTS {d}")
    manifest["database"] = gen_database(a.mode, data_dir, text)
    if not a.no_small_files:
        if a.force:
            shutil.rmtree(os.path.join(data_dir, "small_files"), ignore_errors=True)
        gen_small_files(a.mode, data_dir, text)
    with open(mpath, "w") as fh:
        json.dump(manifest, fh, indent=2)
    m = manifest["media"]
    log(f"media: {m['files']} files, {m['bytes'] / 1e6:.0f} MB, random {m['random_share']:.0%}, "
        f"text zstd -3 {m['text_zstd3_ratio']}x; v2: {m['changed']} changed, {m['added']} added, "
        f"{m['removed']} removed, {m['changed_or_added_bytes'] / 1e6:.1f} MB new content")
    d = manifest["database"]
    log(f"database {d['db']}: {d['db_size'] / 1e6:.0f} MB; dumps {d['dump_before_bytes'] / 1e6:.0f}"
        f" / {d['dump_after_bytes'] / 1e6:.0f} MB, diff: {d['dump_diff_lines']} of {d['dump_lines']} "
        f"lines, zstd -3 {d['dump_zstd3_ratio']}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
