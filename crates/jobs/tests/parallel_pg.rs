//! PostgreSQL parallel mode (issue 3): `pg_dump -Fd -j N` into a private temporary folder,
//! backed up as a folder snapshot, restored with `pg_restore -Fd -j N`.
//!
//! - a round trip with `-j 2`: backup, restore into a new database, equal row counts, equal
//!   checksums of every table's contents and an equal schema-and-data dump; the export is a
//!   tar that unpacks to a folder `pg_restore -Fd` reads;
//! - a failing `pg_dump` (missing database, non-zero exit after writing, exit 0 without
//!   output) fails the job, records no snapshot and leaves no temporary folder;
//! - a test restore of a directory-format snapshot passes (and one whose manifest disagrees
//!   fails).
//!
//! Needs PostgreSQL on 127.0.0.1:5432 (`scripts/services`); fails, never skips, without it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use strongroom_jobs::database::{self, DIRECTORY_FORMAT, DatabaseMeta};
use strongroom_repo::{Id, Snapshot, SnapshotKind};
use strongroom_sources::{DatabaseSource, Tools};

const SQL: &str = "CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy'); \
     CREATE TABLE items (id serial PRIMARY KEY, body text NOT NULL, doc jsonb, \
        blob bytea, price numeric(12,2), at timestamptz DEFAULT now(), feel mood); \
     CREATE TABLE tags (item_id int REFERENCES items(id), tag text); \
     CREATE TABLE empty_one (x int); \
     CREATE SCHEMA other; CREATE TABLE other.log (id bigserial PRIMARY KEY, line text); \
     INSERT INTO items (body, doc, blob, price, feel) \
        SELECT 'item ' || g || ' ' || repeat(md5(g::text), 8), \
               jsonb_build_object('g', g, 'sq', g * g), decode(md5(g::text), 'hex'), \
               g / 7.0, (ARRAY['sad','ok','happy']::mood[])[1 + g % 3] \
        FROM generate_series(1, 40000) g; \
     INSERT INTO tags SELECT id, 'tag' || (id % 7) FROM items WHERE id % 3 = 0; \
     INSERT INTO other.log (line) SELECT 'line ' || g FROM generate_series(1, 25000) g; \
     CREATE VIEW cheap AS SELECT id, price FROM items WHERE price < 10;";

/// A source dumping with `jobs` workers, its temporary folders under `tmp`.
fn parallel(db: &PgDb, jobs: u32, tmp: &Path) -> DatabaseSource {
    db.source()
        .with_tools(Tools {
            search_path: None,
            temp_dir: Some(tmp.to_path_buf()),
        })
        .with_parallel_jobs(jobs)
}

/// A new database `name` loaded with [`SQL`], backed up with `-j 2` into a new repository,
/// its temporary folders under the returned `tmp`.
async fn backed_up(name: &str) -> (PgDb, tempfile::TempDir, Repo, Id, Snapshot) {
    let src = PgDb::create(name);
    pg(&src.0, SQL);
    let tmp = tempfile::tempdir().unwrap();
    let repo = Repo::new().await;
    let (id, snap) = repo
        .backup("clinic", &parallel(&src, 2, tmp.path()))
        .await
        .unwrap();
    (src, tmp, repo, id, snap)
}

/// Every table's row count and an md5 of its rows in a stable order.
fn checksums(db: &str) -> String {
    pg(
        db,
        "SELECT string_agg(t, E'\\n' ORDER BY t) FROM ( \
           SELECT format('%I.%I', n.nspname, c.relname) || ' ' || \
             (xpath('/row/s/text()', query_to_xml(format( \
               'SELECT count(*) || '' '' || coalesce(md5(string_agg(x::text, '','' ORDER BY x::text)), ''-'') AS s FROM %I.%I x', \
               n.nspname, c.relname), false, true, '')))[1]::text AS t \
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
           WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
             AND n.nspname NOT LIKE 'pg_toast%') s;",
    )
}

fn entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_round_trip_restores_the_same_data() {
    require_postgres();
    let (src, tmp, repo, id, snap) = backed_up("par_src").await;
    assert!(
        entries(tmp.path()).is_empty(),
        "temporary folders left: {:?}",
        entries(tmp.path())
    );
    assert_eq!(snap.kind, SnapshotKind::Files);
    // Named after the dump, not the temporary folder it was written to.
    assert_eq!(snap.source, "clinic.pgdir");
    assert_eq!(snap.paths, vec!["clinic.pgdir".to_owned()]);
    let meta = DatabaseMeta::of(&snap).expect("a database snapshot");
    assert!(meta.is_directory());
    assert_eq!(meta.format.as_deref(), Some(DIRECTORY_FORMAT));
    assert_eq!(meta.jobs, Some(2));
    let manifest = meta.manifest.clone().unwrap();
    let counts = manifest.counts();
    assert_eq!(counts["public.items"], 40000);
    assert_eq!(counts["public.tags"], 13333);
    assert_eq!(counts["public.empty_one"], 0);
    assert_eq!(counts["other.log"], 25000);
    let dump = manifest.dump.unwrap();
    assert!(dump.format.contains("-Fd -j 2"), "{}", dump.format);
    assert_eq!(dump.bytes, snap.size());

    // Restore into a new database with pg_restore -Fd -j 2.
    let dst = PgDb::named("par_dst");
    let report = database::restore(&repo.repo, &id, &snap, &dst.source(), false)
        .await
        .unwrap();
    assert!(report.created);
    assert_eq!(report.bytes, snap.size());
    assert_eq!(checksums(&dst.0), checksums(&src.0));
    assert_eq!(pg_plain_dump(&dst.0), pg_plain_dump(&src.0));
    assert_eq!(dst.source().table_counts().unwrap(), counts);

    // Restoring again into the same (now existing) database is refused without replace.
    let err = database::restore(&repo.repo, &id, &snap, &dst.source(), false)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("already exists"), "{err}");

    // The export is a tar that unpacks to clinic.pgdir, which pg_restore -Fd reads.
    let out = tmp.path().join("export.tar");
    let file = std::fs::File::create(&out).unwrap();
    strongroom_repo::export::export(&repo.repo, &snap, Box::new(file))
        .await
        .unwrap();
    let unpack = tmp.path().join("unpacked");
    std::fs::create_dir(&unpack).unwrap();
    let st = Command::new("tar")
        .arg("-xf")
        .arg(&out)
        .arg("-C")
        .arg(&unpack)
        .status()
        .unwrap();
    assert!(st.success());
    let listed = Command::new("pg_restore")
        .args(["-Fd", "-l"])
        .arg(unpack.join("clinic.pgdir"))
        .output()
        .unwrap();
    assert!(
        listed.status.success(),
        "{}",
        String::from_utf8_lossy(&listed.stderr)
    );
    assert!(String::from_utf8_lossy(&listed.stdout).contains("TABLE DATA public items"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_parallel_dump_fails_the_job_and_leaves_no_folder() {
    require_postgres();
    let tmp = tempfile::tempdir().unwrap();
    let repo = Repo::new().await;

    // The database does not exist.
    let missing = PgDb::named("par_missing");
    let err = repo
        .backup("gone", &parallel(&missing, 2, tmp.path()))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("does not exist"), "{err}");
    assert!(entries(tmp.path()).is_empty(), "{:?}", entries(tmp.path()));
    assert!(repo.snapshot_ids().await.is_empty());

    let src = PgDb::create("par_fail");
    pg(&src.0, SQL);
    // pg_dump writes the whole dump, then exits non-zero.
    let (_keep, tools) = tool_dir(
        &["psql", "pg_dumpall"],
        &[(
            "pg_dump",
            "if [ \"$1\" = --version ]; then exec @REAL_pg_dump@ --version; fi\n\
             @REAL_pg_dump@ \"$@\" || exit $?\necho 'pg_dump: error: boom' >&2\nexit 3",
        )],
    );
    let source = src
        .source()
        .with_tools(Tools {
            temp_dir: Some(tmp.path().to_path_buf()),
            ..tools
        })
        .with_parallel_jobs(2);
    let err = repo
        .backup("clinic", &source)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("exited with status 3") && err.contains("boom"),
        "{err}"
    );
    assert!(entries(tmp.path()).is_empty(), "{:?}", entries(tmp.path()));

    // pg_dump exits 0 without writing anything (--version still answers).
    let (_keep2, tools) = tool_dir(
        &["psql", "pg_dumpall"],
        &[(
            "pg_dump",
            "if [ \"$1\" = --version ]; then exec @REAL_pg_dump@ --version; fi\nexit 0",
        )],
    );
    let source = src
        .source()
        .with_tools(Tools {
            temp_dir: Some(tmp.path().to_path_buf()),
            ..tools
        })
        .with_parallel_jobs(2);
    let err = repo
        .backup("clinic", &source)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("produced no output"), "{err}");
    assert!(entries(tmp.path()).is_empty(), "{:?}", entries(tmp.path()));

    assert!(
        repo.snapshot_ids().await.is_empty(),
        "no snapshot may exist"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_restore_proves_a_directory_snapshot() {
    require_postgres();
    let (src, _tmp, repo, id, snap) = backed_up("par_tr").await;

    let report = database::test_restore(&repo.repo, &id, &snap, Some(&src.source()))
        .await
        .unwrap();
    assert!(report.ok, "{report:?}");
    assert_eq!(report.tables_checked, 4);
    assert!(report.integrity.starts_with("ok"), "{}", report.integrity);
    assert!(
        pg_databases_like(&format!("strongroom_drill_{}", id.short())).is_empty(),
        "scratch database left behind"
    );

    // The same folder with a manifest that says otherwise: the test restore fails.
    let mut wrong = snap.clone();
    let mut meta = DatabaseMeta::of(&snap).unwrap();
    let m = meta.manifest.as_mut().unwrap();
    m.tables
        .iter_mut()
        .find(|t| t.name == "public.items")
        .unwrap()
        .rows += 1;
    wrong.meta = serde_json::to_value(&meta).unwrap();
    let err = database::test_restore(&repo.repo, &id, &wrong, Some(&src.source()))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("public.items: expected 40001 rows, found 40000"),
        "{err}"
    );
    assert!(pg_databases_like(&format!("strongroom_drill_{}", id.short())).is_empty());
}
