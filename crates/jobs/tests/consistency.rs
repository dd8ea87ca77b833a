//! Consistency under writes (issue 3, "Done means" 2): a database backup taken while
//! `pgbench` writes concurrently restores to a consistent state. pgbench's TPC-B-like
//! transaction adds the same delta to one account, one teller, one branch and inserts it
//! into the history, so in any consistent snapshot
//! sum(abalance) = sum(bbalance) = sum(tbalance) = sum(delta).
//! The manifest's row counts equal the restored ones (the test restore passes).
//!
//! Needs PostgreSQL on 127.0.0.1:5432 (`scripts/services`); fails, never skips, without it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use strongroom_jobs::database::{self, DatabaseMeta};

fn sums(db: &str) -> [i64; 4] {
    let out = pg(
        db,
        "SELECT (SELECT coalesce(sum(abalance), 0) FROM pgbench_accounts) || ' ' || \
                (SELECT coalesce(sum(bbalance), 0) FROM pgbench_branches) || ' ' || \
                (SELECT coalesce(sum(tbalance), 0) FROM pgbench_tellers) || ' ' || \
                (SELECT coalesce(sum(delta), 0) FROM pgbench_history);",
    );
    let v: Vec<i64> = out.split_whitespace().map(|s| s.parse().unwrap()).collect();
    [v[0], v[1], v[2], v[3]]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_during_pgbench_writes_restores_consistent() {
    require_postgres();
    let src = PgDb::create("pgbench_src");
    let init = Command::new("pgbench")
        .args(["-i", "-s", "2", "-q", "-h", "127.0.0.1", "-p", "5432"])
        .args(["-U", "postgres", &src.0])
        .output()
        .unwrap();
    assert!(
        init.status.success(),
        "pgbench -i: {}",
        String::from_utf8_lossy(&init.stderr)
    );

    // Two clients writing for up to 20 s; stopped as soon as the backup is taken.
    let mut bench = Command::new("pgbench")
        .args(["-c", "2", "-j", "1", "-T", "20", "-n"])
        .args(["-h", "127.0.0.1", "-p", "5432", "-U", "postgres", &src.0])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    struct Stop(Option<std::process::Child>);
    impl Drop for Stop {
        fn drop(&mut self) {
            if let Some(c) = self.0.as_mut() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
    let mut guard = Stop(None);
    // Wait until transactions are committing.
    let start = Instant::now();
    while pg_num(&src.0, "SELECT count(*) FROM pgbench_history;") < 200 {
        if let Some(st) = bench.try_wait().unwrap() {
            panic!("pgbench ended early: {st}");
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "pgbench does not write"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    guard.0 = Some(bench);

    let repo = Repo::new().await;
    let (id, snap) = repo.backup("bench", &src.source()).await.unwrap();
    let during_backup = pg_num(&src.0, "SELECT count(*) FROM pgbench_history;");
    // pgbench must still be running: the backup was taken under writes.
    let bench = guard.0.as_mut().unwrap();
    assert!(
        bench.try_wait().unwrap().is_none(),
        "pgbench finished before the backup ended: the test proves nothing"
    );
    let _ = bench.kill();
    let _ = bench.wait();
    drop(guard);

    let manifest = DatabaseMeta::of(&snap).unwrap().manifest.unwrap();
    let counts = manifest.counts();
    assert_eq!(counts["public.pgbench_accounts"], 200_000);
    assert_eq!(counts["public.pgbench_branches"], 2);
    assert_eq!(counts["public.pgbench_tellers"], 20);
    let history = counts["public.pgbench_history"];
    assert!(
        history >= 200 && history < during_backup as u64,
        "the backup's history ({history}) must lie between the start of the writes and \
         the end of the backup ({during_backup})"
    );

    let dst = PgDb::named("pgbench_dst");
    database::restore(&repo.repo, &id, &snap, &dst.source(), false)
        .await
        .unwrap();
    let [a, b, t, h] = sums(&dst.0);
    eprintln!(
        "restored: {history} history rows; sums accounts {a}, branches {b}, tellers {t}, history {h}"
    );
    assert!(
        a == b && b == t && t == h,
        "pgbench's invariant is broken in the restored copy: accounts {a}, branches {b}, \
         tellers {t}, history {h}"
    );
    assert_eq!(
        pg_num(&dst.0, "SELECT count(*) FROM pgbench_history;") as u64,
        history,
        "the restored history is the manifest's"
    );

    // The manifest's counts are the restored counts.
    let proof = database::test_restore(&repo.repo, &id, &snap, Some(&src.source()))
        .await
        .unwrap();
    assert!(proof.ok && proof.mismatches.is_empty(), "{proof:?}");
    assert_eq!(proof.tables_checked, 4);
}
