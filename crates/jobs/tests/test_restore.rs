//! Test restores catch bad backups (issue 3, "Done means" 5): a snapshot whose data was
//! tampered with (one bit flipped in one of its packs), and a dump whose row counts disagree
//! with the manifest recorded beside it (a second snapshot of the same data whose manifest
//! says otherwise). Each makes `database::test_restore` return an error naming the problem,
//! and the scratch database is dropped either way.
//!
//! Needs PostgreSQL on 127.0.0.1:5432 (`scripts/services`); fails, never skips, without it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use bytes::Bytes;
use common::*;
use strongroom_jobs::JobError;
use strongroom_jobs::database::{self, DatabaseMeta};
use strongroom_repo::crypto::KdfParams;
use strongroom_repo::{Id, InitOptions, Repository, Snapshot, restorer};
use strongroom_storage::local::LocalStorage;
use strongroom_storage::memory::MemoryStorage;
use strongroom_storage::{Kind, Storage};

const PG_SQL: &str = "CREATE TABLE items (id serial PRIMARY KEY, body text NOT NULL); \
     CREATE TABLE tags (item_id int REFERENCES items(id), tag text); \
     INSERT INTO items (body) SELECT 'item ' || g || ' ' || repeat(md5(g::text), 4) \
     FROM generate_series(1, 30000) g; \
     INSERT INTO tags SELECT id, 'tag' || (id % 7) FROM items WHERE id % 5 = 0;";

/// Where a blob of the snapshot's stream lies: its pack and the byte range in it.
fn blob_in_the_middle(repo: &Repository, content: &[Id]) -> (Id, u64, u64) {
    assert!(content.len() >= 2, "the dump should span several blobs");
    let blob = content[content.len() / 2];
    let loc = repo.index_read().get(&blob).unwrap();
    (
        loc.pack,
        u64::from(loc.entry.offset),
        u64::from(loc.entry.stored_len),
    )
}

fn assert_no_scratch_left(id: &Id) {
    let left = pg_databases_like(&format!("strongroom_drill_{}", id.short()));
    assert!(left.is_empty(), "scratch databases left behind: {left:?}");
}

fn expect_failure(res: strongroom_jobs::Result<database::TestRestoreReport>) -> String {
    match res {
        Ok(r) => panic!("the test restore passed: {r:?}"),
        Err(e @ JobError::TestRestoreFailed(_)) => {
            let msg = e.to_string();
            eprintln!("the test restore failed as it should: {msg}");
            msg
        }
        Err(e) => panic!("the test restore failed for another reason: {e}"),
    }
}

/// One bit flipped inside a data blob of the snapshot, in its pack file on disk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_restore_catches_a_tampered_snapshot() {
    require_postgres();
    let src = PgDb::create("tr_tamper");
    pg(&src.0, PG_SQL);
    let repo = Repo::new().await;
    let (id, snap) = repo.backup("shop", &src.source()).await.unwrap();

    // Sound, it proves itself.
    let ok = database::test_restore(&repo.repo, &id, &snap, Some(&src.source()))
        .await
        .unwrap();
    assert!(ok.ok && ok.tables_checked == 2, "{ok:?}");

    let node = restorer::stream_node(&repo.repo, &snap).await.unwrap();
    let content = repo.repo.file_content(&node).await.unwrap();
    let (pack, offset, len) = blob_in_the_middle(&repo.repo, &content);
    let path = LocalStorage::new(repo.path.clone())
        .object_path(Kind::Pack, &pack.to_hex())
        .unwrap();
    let mut perms = std::fs::metadata(&path).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    std::fs::set_permissions(&path, perms).unwrap();
    let mut data = std::fs::read(&path).unwrap();
    let at = usize::try_from(offset + len / 2).unwrap();
    data[at] ^= 0x10;
    std::fs::write(&path, &data).unwrap();

    let msg =
        expect_failure(database::test_restore(&repo.repo, &id, &snap, Some(&src.source())).await);
    assert!(msg.contains("did not restore"), "{msg}");
    assert!(msg.contains(&pack.short()), "names the damaged pack: {msg}");
    assert_no_scratch_left(&id);
    // A plain restore of it fails too, and leaves no database behind.
    let dst = PgDb::named("tr_tamper_dst");
    let err = database::restore(&repo.repo, &id, &snap, &dst.source(), false)
        .await
        .unwrap_err();
    eprintln!("restore: {err}");
    assert!(!pg_exists(&dst.0), "a failed restore left its database");
}

/// The same with the repository in memory, SQLite, and the bit flipped via `put_raw`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_restore_catches_a_tampered_sqlite_snapshot_in_memory() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("app.sqlite3");
    sqlite(
        &db,
        "CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT); \
         WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < 20000) \
         INSERT INTO t (body) SELECT 'row ' || n || ' ' || hex(randomblob(40)) FROM s;",
    );
    let store = Arc::new(MemoryStorage::new());
    let repo = Arc::new(
        Repository::init(
            Arc::clone(&store) as Arc<dyn Storage>,
            PASSWORD,
            InitOptions {
                kdf: KdfParams::MINIMUM,
                ..Default::default()
            },
        )
        .await
        .unwrap(),
    );
    let guard = strongroom_repo::lock::lock(&repo, false, "t")
        .await
        .unwrap();
    let (id, snap) = database::backup(
        &repo,
        &guard,
        "app",
        &sqlite_source(&db),
        Default::default(),
    )
    .await
    .unwrap();
    guard.release().await.unwrap();
    assert!(
        database::test_restore(&repo, &id, &snap, None)
            .await
            .unwrap()
            .ok
    );

    let node = restorer::stream_node(&repo, &snap).await.unwrap();
    let content = repo.file_content(&node).await.unwrap();
    let (pack, offset, len) = blob_in_the_middle(&repo, &content);
    let name = pack.to_hex();
    let mut data = store.read(Kind::Pack, &name).await.unwrap().to_vec();
    let at = usize::try_from(offset + len / 3).unwrap();
    data[at] ^= 0x01;
    store.put_raw(Kind::Pack, &name, Bytes::from(data));

    let msg = expect_failure(database::test_restore(&repo, &id, &snap, None).await);
    assert!(msg.contains("did not restore"), "{msg}");
    let scratch: Vec<_> = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(&format!("strongroom_drill_{}", id.short()))
        })
        .collect();
    assert!(scratch.is_empty(), "scratch files left: {scratch:?}");
}

/// A second snapshot of the same dump (same tree), whose manifest is changed by `edit`.
async fn with_edited_manifest(
    repo: &Repository,
    snap: &Snapshot,
    edit: impl FnOnce(&mut serde_json::Value),
) -> (Id, Snapshot) {
    let mut forged = snap.clone();
    edit(&mut forged.meta["manifest"]);
    let id = repo.save_snapshot(&forged).await.unwrap();
    assert_eq!(forged.tree, snap.tree);
    (id, forged)
}

fn table_index(manifest: &serde_json::Value, name: &str) -> usize {
    manifest["tables"]
        .as_array()
        .unwrap()
        .iter()
        .position(|t| t["name"] == name)
        .unwrap_or_else(|| panic!("{name} is not in the manifest: {manifest}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_restore_catches_counts_that_disagree_with_the_manifest() {
    require_postgres();
    let src = PgDb::create("tr_counts");
    pg(&src.0, PG_SQL);
    let repo = Repo::new().await;
    let (id, snap) = repo.backup("shop", &src.source()).await.unwrap();
    let rows = DatabaseMeta::of(&snap).unwrap().manifest.unwrap().counts()["public.items"];
    assert_eq!(rows, 30_000);

    // The manifest says one row more than the dump holds.
    let (forged_id, forged) = with_edited_manifest(&repo.repo, &snap, |m| {
        let i = table_index(m, "public.items");
        m["tables"][i]["rows"] = serde_json::json!(rows + 1);
    })
    .await;
    let msg = expect_failure(
        database::test_restore(&repo.repo, &forged_id, &forged, Some(&src.source())).await,
    );
    assert!(
        msg.contains("public.items: expected 30001 rows, found 30000"),
        "names the table and both counts: {msg}"
    );
    assert!(!msg.contains("public.tags"), "only the wrong table: {msg}");
    assert_no_scratch_left(&forged_id);

    // The manifest lacks a table the dump has.
    let (forged_id, forged) = with_edited_manifest(&repo.repo, &snap, |m| {
        let i = table_index(m, "public.tags");
        m["tables"].as_array_mut().unwrap().remove(i);
    })
    .await;
    let msg = expect_failure(
        database::test_restore(&repo.repo, &forged_id, &forged, Some(&src.source())).await,
    );
    assert!(msg.contains("public.tags: not in the manifest"), "{msg}");
    assert_no_scratch_left(&forged_id);

    // The genuine snapshot still proves itself.
    let ok = database::test_restore(&repo.repo, &id, &snap, Some(&src.source()))
        .await
        .unwrap();
    assert!(ok.ok, "{ok:?}");
}
