//! PostgreSQL integration tests against the real server on 127.0.0.1:5432 (user postgres,
//! trust): round trip of a database with many column types and objects, row counts in the
//! dump's own snapshot under concurrent writes, and the failure matrix (unreachable host,
//! missing database, wrong password or role, missing tool, old client, empty dump, tool dying
//! mid-stream, bad restore input).
//!
//! Each test creates uniquely named databases and drops them; it must never touch others.
//! A test fails (does not skip) when the server is unreachable: run `scripts/services`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

mod common;

use std::collections::BTreeMap;
use std::io::{self, Cursor, Read};
use std::process::{Command, Stdio};

use common::*;
use strongroom_sources::{
    CountsMethod, DatabaseSource, Engine, Replaced, RestoreOptions, SourceError,
    detect_dump_format, verify_counts,
};

const SCHEMA: &str = r#"
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE SEQUENCE invoice_seq START 1000 INCREMENT 7;
CREATE TABLE patients (
  id bigserial PRIMARY KEY,
  name text NOT NULL,
  born date,
  mood mood,
  balance numeric(20,6),
  ratio double precision,
  tags text[],
  scores int[],
  profile jsonb,
  raw json,
  photo bytea,
  seen_at timestamptz,
  notes text,
  uid uuid,
  span interval,
  ip inet,
  active boolean DEFAULT true
);
CREATE TABLE visits (
  id serial PRIMARY KEY,
  patient_id bigint NOT NULL REFERENCES patients(id) ON DELETE CASCADE,
  invoice int NOT NULL DEFAULT nextval('invoice_seq'),
  at timestamptz NOT NULL DEFAULT '2024-01-01 00:00:00+00'
);
CREATE TABLE audit (id serial PRIMARY KEY, patient_id bigint, action text);
CREATE INDEX visits_patient ON visits (patient_id);
CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO audit (patient_id, action) VALUES (NEW.id, TG_OP);
  RETURN NEW;
END $$;
CREATE TRIGGER patients_audit AFTER INSERT OR UPDATE ON patients
  FOR EACH ROW EXECUTE FUNCTION touch();
CREATE FUNCTION balance_total() RETURNS numeric LANGUAGE sql STABLE
  AS $$ SELECT sum(balance) FROM patients $$;
CREATE VIEW happy_patients AS SELECT id, name FROM patients WHERE mood = 'happy';
CREATE SCHEMA clinic;
CREATE TABLE clinic."Odd ""Name""" (k text PRIMARY KEY, v jsonb);
INSERT INTO clinic."Odd ""Name""" VALUES ('a', '{"x": [1, 2]}'), ('b', 'null');
INSERT INTO patients (name, born, mood, balance, ratio, tags, scores, profile, raw, photo,
                      seen_at, notes, uid, span, ip)
SELECT 'patient ' || g || E' \t tab ''quote'' \\ back ünïcode ✓ \n newline',
       date '1950-01-01' + g,
       (ARRAY['sad', 'ok', 'happy'])[1 + g % 3]::mood,
       g * 1234.567891,
       g / 7.0,
       ARRAY['a' || g, NULL, 'c,d "q"'],
       ARRAY[g, -g],
       jsonb_build_object('k', g, 'nested', jsonb_build_array(1, 'two', null)),
       ('{"raw": ' || g || ', "dup": 1, "dup": 2}')::json,
       decode(repeat(md5(g::text), 4), 'hex') || '\x00ff'::bytea,
       timestamptz '2024-03-31 01:30:00+02' + g * interval '1 hour',
       CASE WHEN g % 50 = 0 THEN repeat('large text ', 100000) END,
       md5(g::text)::uuid,
       g * interval '1 minute',
       ('10.0.' || (g % 255) || '.1')::inet
FROM generate_series(1, 500) g;
INSERT INTO patients (name, photo)
SELECT 'all bytes', string_agg(set_byte('\x00'::bytea, 0, b), ''::bytea ORDER BY b)
FROM generate_series(0, 255) b;
INSERT INTO visits (patient_id) SELECT id FROM patients WHERE id % 3 = 0;
UPDATE patients SET active = false WHERE id % 10 = 0;
CREATE TABLE django_migrations (id serial PRIMARY KEY, app varchar(255) NOT NULL,
  name varchar(255) NOT NULL, applied timestamptz NOT NULL);
INSERT INTO django_migrations (app, name, applied) VALUES
  ('contenttypes', '0001_initial', '2024-01-01 10:00+00'),
  ('auth', '0001_initial', '2024-01-01 10:01+00'),
  ('contenttypes', '0002_remove_content_type_name', '2024-01-01 10:02+00'),
  ('patients', '0001_initial', '2024-01-02 09:00+00'),
  ('patients', '0002_add_mood', '2024-02-02 09:00+00');
"#;

/// A plain schema-and-data dump, with the per-run `\restrict` key lines removed.
fn plain_dump(db: &str) -> String {
    let out = Command::new("pg_dump")
        .args(["--no-owner", "-h", "127.0.0.1", "-U", "postgres", "-d", db])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("\\restrict ") && !l.starts_with("\\unrestrict "))
        .map(|l| l.replace(db, "<DB>"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn live_counts(db: &str) -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    for t in [
        "public.patients",
        "public.visits",
        "public.audit",
        "public.django_migrations",
    ] {
        let n: u64 = pg(db, &format!("SELECT count(*) FROM {t};"))
            .trim()
            .parse()
            .unwrap();
        m.insert(t.to_string(), n);
    }
    let n: u64 = pg(db, "SELECT count(*) FROM clinic.\"Odd \"\"Name\"\"\";")
        .trim()
        .parse()
        .unwrap();
    m.insert("clinic.Odd \"Name\"".into(), n);
    m
}

#[test]
fn round_trip_restores_an_identical_database() {
    require_postgres();
    let src = PgDb::create("pg_src");
    pg(&src.0, SCHEMA);

    let (bytes, outcome) = dump_all(&src.source()).unwrap();
    assert_eq!(
        detect_dump_format(&bytes),
        Some(Engine::Postgres),
        "a pg_restore-able archive"
    );
    let m = &outcome.manifest;
    assert_eq!(m.engine, Engine::Postgres);
    assert!(m.server_version.starts_with("15") || !m.server_version.is_empty());
    assert_eq!(m.counts, CountsMethod::SameSnapshot);
    assert_eq!(m.dump.as_ref().unwrap().bytes, bytes.len() as u64);
    assert!(m.size_bytes.unwrap() > 0);
    assert!(!m.source.contains("***") && m.source.contains(&src.0));

    // Row counts are exact.
    assert_eq!(m.counts(), live_counts(&src.0));
    assert_eq!(m.counts()["public.patients"], 501);
    assert_eq!(
        m.counts()["public.audit"],
        551,
        "501 inserts + 50 updates audited"
    );

    // Django migration state.
    let dj = m
        .django_migrations
        .as_ref()
        .expect("django_migrations recorded");
    assert_eq!(dj.total, 5);
    let latest: Vec<(&str, u64, &str)> = dj
        .apps
        .iter()
        .map(|a| (a.app.as_str(), a.count, a.latest.as_str()))
        .collect();
    assert_eq!(
        latest,
        [
            ("auth", 1, "0001_initial"),
            ("contenttypes", 2, "0002_remove_content_type_name"),
            ("patients", 2, "0002_add_mood"),
        ]
    );

    // Globals (we are superuser here).
    let g = m.globals.as_ref().unwrap();
    assert!(g.included && g.role_passwords, "{g:?}");
    let globals = String::from_utf8(outcome.globals_sql.clone().unwrap()).unwrap();
    assert!(globals.contains("CREATE ROLE postgres"), "{globals}");

    // Manifest JSON round trip.
    let json = m.to_json().unwrap();
    assert_eq!(&strongroom_sources::Manifest::from_json(&json).unwrap(), m);

    // Restore into a new database.
    let dst = PgDb::named(&unique("pg_dst"));
    let report = dst
        .source()
        .restore(&mut Cursor::new(&bytes), &RestoreOptions::default())
        .unwrap();
    assert!(report.created);
    assert_eq!(report.bytes, bytes.len() as u64);
    assert_eq!(report.replaced, None);

    // Schema and data identical.
    let a = plain_dump(&src.0);
    let b = plain_dump(&dst.0);
    assert!(a.contains("CREATE TRIGGER patients_audit") && a.contains("happy_patients"));
    assert!(a == b, "plain dumps differ after restore");

    // Test-restore style proof.
    let restored = dst.source().table_counts().unwrap();
    let check = verify_counts(m, &restored);
    assert!(check.is_ok(), "{:?}", check.mismatches);
    assert_eq!(check.tables_checked, 5);

    // The restored sequence and function work.
    assert_eq!(
        pg(&dst.0, "SELECT last_value FROM invoice_seq;").trim(),
        pg(&src.0, "SELECT last_value FROM invoice_seq;").trim()
    );
    assert_eq!(
        pg(&dst.0, "SELECT balance_total();").trim(),
        pg(&src.0, "SELECT balance_total();").trim()
    );

    // An existing target is refused without replace, and left untouched.
    pg(&dst.0, "INSERT INTO audit (action) VALUES ('marker');");
    let err = dst
        .source()
        .restore(&mut Cursor::new(&bytes), &RestoreOptions::default())
        .unwrap_err();
    assert!(matches!(err, SourceError::TargetExists { .. }), "{err}");
    assert_eq!(
        pg(
            &dst.0,
            "SELECT count(*) FROM audit WHERE action = 'marker';"
        )
        .trim(),
        "1"
    );

    // With replace: restored, the old database kept under a new name.
    let report = dst
        .source()
        .restore(&mut Cursor::new(&bytes), &RestoreOptions { replace: true })
        .unwrap();
    let Some(Replaced::KeptAs(kept)) = report.replaced.clone() else {
        panic!("expected the old database to be kept: {report:?}");
    };
    let _kept = PgDb::named(&kept);
    assert_eq!(
        pg(
            &dst.0,
            "SELECT count(*) FROM audit WHERE action = 'marker';"
        )
        .trim(),
        "0"
    );
    assert_eq!(
        pg(&kept, "SELECT count(*) FROM audit WHERE action = 'marker';").trim(),
        "1"
    );
    assert!(plain_dump(&dst.0) == a);

    // A standalone live manifest agrees.
    let live = src.source().manifest().unwrap();
    assert_eq!(live.counts(), m.counts());
    assert_eq!(live.counts, CountsMethod::Live);
}

#[test]
fn counts_come_from_the_dump_snapshot_under_concurrent_writes() {
    require_postgres();
    let src = PgDb::create("pg_busy");
    pg(
        &src.0,
        "CREATE TABLE ledger (id bigserial PRIMARY KEY, amount int NOT NULL);
         CREATE TABLE accounts (id int PRIMARY KEY, balance bigint NOT NULL);
         INSERT INTO accounts SELECT g, 1000 FROM generate_series(1, 10) g;
         INSERT INTO ledger (amount) SELECT 1 FROM generate_series(1, 20000);
         CREATE PROCEDURE churn(n int) LANGUAGE plpgsql AS $$
         BEGIN
           FOR i IN 1..n LOOP
             INSERT INTO ledger (amount) VALUES (i);
             UPDATE accounts SET balance = balance - 1 WHERE id = 1 + i % 10;
             UPDATE accounts SET balance = balance + 1 WHERE id = 1 + (i + 1) % 10;
             COMMIT;
             PERFORM pg_sleep(0.001);
           END LOOP;
         END $$;",
    );
    // A bounded writer (at most 10,000 commits, ~10 s), committing continuously during the
    // dump; stopped server-side once the dump is done.
    let mut writer = Command::new("psql")
        .args([
            "-X",
            "-q",
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-d",
            &src.0,
        ])
        .args(["-c", "CALL churn(10000);"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait until it is writing.
    for _ in 0..200 {
        if pg(&src.0, "SELECT count(*) > 20010 FROM ledger;").trim() == "t" {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let source = src.source();
    let (mut reader, pending) = source.dump().unwrap();
    let mut bytes = Vec::new();
    // Read slowly at first so writes land between the snapshot export and the counting.
    let mut buf = [0u8; 4096];
    for _ in 0..5 {
        let n = reader.read(&mut buf).unwrap();
        bytes.extend_from_slice(&buf[..n]);
        std::thread::sleep(std::time::Duration::from_millis(40));
    }
    reader.read_to_end(&mut bytes).unwrap();
    drop(reader);
    let outcome = pending.finish().unwrap();
    let live: u64 = pg(&src.0, "SELECT count(*) FROM ledger;")
        .trim()
        .parse()
        .unwrap();
    // Stop the procedure server-side, then the client.
    pg(
        "postgres",
        &format!(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE datname = '{}' AND query LIKE 'CALL churn%';",
            src.0
        ),
    );
    let _ = writer.kill();
    let _ = writer.wait();
    let counted = outcome.manifest.counts()["public.ledger"];
    assert!(
        live > counted,
        "writes continued after the snapshot ({live} vs {counted})"
    );

    let dst = PgDb::named(&unique("pg_busy_dst"));
    dst.source()
        .restore(&mut Cursor::new(&bytes), &RestoreOptions::default())
        .unwrap();
    let check = verify_counts(&outcome.manifest, &dst.source().table_counts().unwrap());
    assert!(check.is_ok(), "{:?}", check.mismatches);
    // The application's invariant holds in the restored copy.
    assert_eq!(
        pg(&dst.0, "SELECT sum(balance) FROM accounts;").trim(),
        "10000"
    );
}

#[test]
fn unreachable_host_fails_with_advice() {
    require_postgres();
    let source = DatabaseSource::parse("postgres://postgres@127.0.0.1:1/postgres").unwrap();
    let err = source.dump().unwrap_err().to_string();
    assert!(err.contains("Connection refused"), "{err}");
    assert!(err.contains("127.0.0.1:1"), "names the target: {err}");
    assert!(
        err.contains("hint: check that the database server is running"),
        "{err}"
    );
    let report = source.probe();
    assert!(!report.reachable);
    assert!(report.error.unwrap().contains("Connection refused"));
}

#[test]
fn missing_database_fails() {
    require_postgres();
    let name = unique("pg_missing");
    let source = DatabaseSource::parse(&format!("postgres://postgres@127.0.0.1/{name}")).unwrap();
    let err = source.dump().unwrap_err().to_string();
    assert!(
        err.contains(&format!("database \"{name}\" does not exist")),
        "{err}"
    );
    assert!(err.contains("hint: check the database name"), "{err}");
}

/// Wrong password. The test server may be trust-only for 127.0.0.1 (this machine's is), in
/// which case any password is accepted and a wrong one cannot fail; the test then checks the
/// nearest failure trust still has, a role that does not exist, and says so.
#[test]
fn wrong_password_or_unknown_role_fails() {
    require_postgres();
    let role = unique("pg_role");
    pg(
        "postgres",
        &format!("CREATE ROLE {role} LOGIN PASSWORD 'right-password';"),
    );
    struct DropRole(String);
    impl Drop for DropRole {
        fn drop(&mut self) {
            let _ = pg_try("postgres", &format!("DROP ROLE IF EXISTS {};", self.0));
        }
    }
    let _guard = DropRole(role.clone());
    let wrong = DatabaseSource::parse(&format!(
        "postgres://{role}:wrong-password@127.0.0.1/postgres"
    ))
    .unwrap();
    match wrong.dump() {
        Err(e) => {
            let msg = e.to_string();
            assert!(msg.contains("password authentication failed"), "{msg}");
            assert!(
                msg.contains("hint: check the user name and password"),
                "{msg}"
            );
            assert!(
                !msg.contains("wrong-password"),
                "the password leaked: {msg}"
            );
        }
        Ok(_) => eprintln!(
            "note: the server trusts 127.0.0.1 connections, so a wrong password is accepted; \
             checking an unknown role instead"
        ),
    }
    let ghost = unique("pg_ghost");
    let source = DatabaseSource::parse(&format!(
        "postgres://{ghost}:some-password@127.0.0.1/postgres"
    ))
    .unwrap();
    let msg = source.dump().unwrap_err().to_string();
    assert!(
        msg.contains(&format!("role \"{ghost}\" does not exist")),
        "{msg}"
    );
    assert!(msg.contains("hint: check the user name"), "{msg}");
    assert!(!msg.contains("some-password"), "the password leaked: {msg}");
}

#[test]
fn missing_dump_tool_is_named_with_its_package() {
    require_postgres();
    let (_dir, tools) = tool_dir(&["psql"], &[]);
    let source = DatabaseSource::parse(PG_ADMIN_URL)
        .unwrap()
        .with_tools(tools);
    let err = source.dump().unwrap_err().to_string();
    assert!(err.contains("`pg_dump` was not found"), "{err}");
    assert!(err.contains("postgresql-client"), "{err}");
}

#[test]
fn older_client_than_server_is_refused() {
    require_postgres();
    let (_dir, tools) = tool_dir(
        &["psql"],
        &[("pg_dump", "echo 'pg_dump (PostgreSQL) 14.11'; exit 0")],
    );
    let source = DatabaseSource::parse(PG_ADMIN_URL)
        .unwrap()
        .with_tools(tools);
    let err = source.dump().unwrap_err();
    assert!(matches!(err, SourceError::ClientTooOld { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("pg_dump 14.11 is older than the server (PostgreSQL 15"),
        "{msg}"
    );
    assert!(msg.contains("postgresql-client-15"), "{msg}");
}

#[test]
fn empty_dump_is_a_failure() {
    require_postgres();
    let (_dir, tools) = tool_dir(
        &["psql", "pg_dumpall"],
        &[(
            "pg_dump",
            "case \"$1\" in --version) echo 'pg_dump (PostgreSQL) 15.99';; *) exit 0;; esac",
        )],
    );
    let source = DatabaseSource::parse(PG_ADMIN_URL)
        .unwrap()
        .with_tools(tools);
    let (mut reader, pending) = source.dump().unwrap();
    let mut out = Vec::new();
    let err = reader.read_to_end(&mut out).unwrap_err();
    assert!(out.is_empty());
    assert!(err.to_string().contains("produced no output"), "{err}");
    drop(reader);
    let err = pending.finish().unwrap_err().to_string();
    assert!(err.contains("produced no output"), "{err}");
}

#[test]
fn dump_tool_dying_mid_stream_fails_the_read_and_the_manifest() {
    require_postgres();
    let (_dir, tools) = tool_dir(
        &["psql"],
        &[(
            "pg_dump",
            "case \"$1\" in --version) echo 'pg_dump (PostgreSQL) 15.99'; exit 0;; esac\n\
             printf 'PGDMP partial archive'\n\
             echo 'pg_dump: error: server closed the connection unexpectedly' >&2\n\
             exit 1",
        )],
    );
    let source = DatabaseSource::parse(PG_ADMIN_URL)
        .unwrap()
        .with_tools(tools);
    let (mut reader, pending) = source.dump().unwrap();
    let mut out = Vec::new();
    let err = reader.read_to_end(&mut out).unwrap_err().to_string();
    assert_eq!(out, b"PGDMP partial archive");
    assert!(err.contains("exited with status 1"), "{err}");
    assert!(
        err.contains("server closed the connection unexpectedly"),
        "{err}"
    );
    drop(reader);
    assert!(pending.finish().is_err());
}

#[test]
fn failed_restores_leave_no_database_behind() {
    require_postgres();
    let src = PgDb::create("pg_trunc");
    pg(
        &src.0,
        "CREATE TABLE t (id int PRIMARY KEY, s text);
         INSERT INTO t SELECT g, repeat('x', 100) FROM generate_series(1, 5000) g;",
    );
    let (bytes, _) = dump_all(&src.source()).unwrap();

    // Truncated archive.
    let dst = PgDb::named(&unique("pg_trunc_dst"));
    let err = dst
        .source()
        .restore(
            &mut Cursor::new(&bytes[..bytes.len() / 2]),
            &RestoreOptions::default(),
        )
        .unwrap_err()
        .to_string();
    assert!(err.contains("pg_restore"), "{err}");
    let exists = |name: &str| {
        pg(
            "postgres",
            &format!("SELECT count(*) FROM pg_database WHERE datname = '{name}';"),
        )
        .trim()
            == "1"
    };
    assert!(!exists(&dst.0), "the half-restored database was dropped");

    // Empty input.
    let err = dst
        .source()
        .restore(&mut io::empty(), &RestoreOptions::default())
        .unwrap_err();
    assert!(!exists(&dst.0), "{err}");

    // A failing reader (a corrupt snapshot) stops the restore.
    struct Corrupt<'a>(Cursor<&'a [u8]>, usize);
    impl Read for Corrupt<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.1 == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "chunk failed authentication",
                ));
            }
            self.1 -= 1;
            let n = buf.len().min(1024);
            self.0.read(&mut buf[..n])
        }
    }
    let err = dst
        .source()
        .restore(
            &mut Corrupt(Cursor::new(&bytes[..]), 3),
            &RestoreOptions::default(),
        )
        .unwrap_err()
        .to_string();
    assert!(err.contains("chunk failed authentication"), "{err}");
    assert!(!exists(&dst.0));
}

#[test]
fn probe_reports_health() {
    require_postgres();
    let db = PgDb::create("pg_probe");
    let report = db.source().probe();
    assert!(report.reachable, "{:?}", report.error);
    assert!(report.error.is_none());
    assert!(
        report.version.as_deref().unwrap_or("").starts_with("15"),
        "{report:?}"
    );
    assert!(report.latency_ms.unwrap() > 0.0);
    assert!(report.size_bytes.unwrap() > 0);
    assert!(report.max_connections.unwrap() > 0);
    assert!(report.total_connections.unwrap() >= 1);
    assert!(report.waiting_locks.is_some());
    assert!(report.longest_query_seconds.is_some());
    assert_eq!(report.is_replica, Some(false));
    assert_eq!(report.replication_lag_seconds, None);
    let ratio = report.cache_hit_ratio.unwrap_or(1.0);
    assert!((0.0..=1.0).contains(&ratio));
}
