//! MySQL/MariaDB integration tests against the real server on 127.0.0.1:3306 (root, empty
//! password): round trip of a database with many column types, triggers, routines, events,
//! views, a sequence and foreign keys; dump-derived row counts under concurrent writes; and
//! the failure matrix (unreachable host, missing database, wrong password, missing tool,
//! empty dump, bad restore input).
//!
//! Each test creates uniquely named databases (and users) and drops them; it must never touch
//! others. A test fails (does not skip) when the server is unreachable: run
//! `scripts/services`.

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
CREATE TABLE patients (
  id BIGINT AUTO_INCREMENT PRIMARY KEY,
  name VARCHAR(200) NOT NULL,
  born DATE,
  mood ENUM('sad', 'ok', 'happy'),
  flags SET('a', 'b', 'c'),
  balance DECIMAL(30, 10),
  ratio DOUBLE,
  profile JSON,
  photo LONGBLOB,
  small VARBINARY(16),
  seen_at DATETIME(6),
  stamp TIMESTAMP NULL,
  notes LONGTEXT,
  bits BIT(8),
  active BOOLEAN DEFAULT TRUE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
CREATE TABLE visits (
  id INT AUTO_INCREMENT PRIMARY KEY,
  patient_id BIGINT NOT NULL,
  invoice BIGINT,
  at DATETIME NOT NULL DEFAULT '2024-01-01 00:00:00',
  FOREIGN KEY (patient_id) REFERENCES patients (id) ON DELETE CASCADE
) ENGINE=InnoDB;
CREATE TABLE audit (id INT AUTO_INCREMENT PRIMARY KEY, patient_id BIGINT, action VARCHAR(10));
CREATE TABLE `odd ``name`` (x)` (k VARCHAR(10) PRIMARY KEY, v TEXT);
INSERT INTO `odd ``name`` (x)` VALUES ('a', 'it''s (a) test;'), ('b', NULL);
CREATE SEQUENCE invoice_seq START WITH 1000 INCREMENT BY 7;
CREATE TRIGGER patients_audit AFTER INSERT ON patients FOR EACH ROW
  INSERT INTO audit (patient_id, action) VALUES (NEW.id, 'insert');
CREATE FUNCTION balance_total() RETURNS DECIMAL(40, 10) READS SQL DATA
  RETURN (SELECT SUM(balance) FROM patients);
CREATE PROCEDURE bump(IN p BIGINT) MODIFIES SQL DATA
  UPDATE patients SET ratio = ratio + 1 WHERE id = p;
CREATE VIEW happy AS SELECT id, name FROM patients WHERE mood = 'happy';
CREATE EVENT nightly ON SCHEDULE EVERY 1 DAY STARTS '2030-01-01 00:00:00' DISABLE
  DO DELETE FROM audit WHERE id < 0;
INSERT INTO patients (name, born, mood, flags, balance, ratio, profile, photo, small, seen_at,
                      stamp, notes, bits)
WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < 500)
SELECT CONCAT('patient ', n, ' \\ back ''quote'' (paren); ünïcode ✓ \n newline \t tab'),
       DATE_ADD('1950-01-01', INTERVAL n DAY),
       ELT(1 + n % 3, 'sad', 'ok', 'happy'),
       ELT(1 + n % 4, 'a', 'a,b', '', 'a,b,c'),
       n * 1234.5678912345,
       n / 7.0,
       JSON_OBJECT('k', n, 'nested', JSON_ARRAY(1, 'two', NULL), 'q', '"quoted"'),
       CONCAT(UNHEX(REPEAT(MD5(n), 4)), X'00FF0A0D5C27'),
       UNHEX(MD5(n)),
       TIMESTAMPADD(MICROSECOND, n * 1234567, '2024-03-31 01:30:00.000000'),
       TIMESTAMPADD(HOUR, n, '2024-03-31 00:00:00'),
       IF(n % 50 = 0, REPEAT('large text ', 100000), NULL),
       n % 256
FROM g;
INSERT INTO patients (name, photo) SELECT 'all bytes', CAST(GROUP_CONCAT(CHAR(n) ORDER BY n SEPARATOR '') AS BINARY)
  FROM (WITH RECURSIVE b(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM b WHERE n < 255) SELECT n FROM b) bytes;
INSERT INTO visits (patient_id, invoice) SELECT id, NEXTVAL(invoice_seq) FROM patients WHERE id % 3 = 0;
CREATE TABLE django_migrations (id INT AUTO_INCREMENT PRIMARY KEY, app VARCHAR(255) NOT NULL,
  name VARCHAR(255) NOT NULL, applied DATETIME(6) NOT NULL);
INSERT INTO django_migrations (app, name, applied) VALUES
  ('contenttypes', '0001_initial', '2024-01-01 10:00:00'),
  ('auth', '0001_initial', '2024-01-01 10:01:00'),
  ('contenttypes', '0002_remove_content_type_name', '2024-01-01 10:02:00'),
  ('patients', '0001_initial', '2024-01-02 09:00:00');
"#;

/// A schema-and-data dump; only the comment lines naming the database are normalised.
fn plain_dump(db: &str) -> String {
    let out = Command::new("mariadb-dump")
        .args([
            "-h",
            "127.0.0.1",
            "-P",
            "3306",
            "-uroot",
            "--skip-dump-date",
        ])
        .args(["--routines", "--triggers", "--events", "--hex-blob", db])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    text.lines()
        .map(|l| {
            if l.starts_with("-- ") {
                l.replace(db, "<DB>")
            } else {
                assert!(!l.contains(db), "the database name outside a comment: {l}");
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn live_counts(db: &str) -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    // Sequences are not tables: their state is in the dump as SETVAL, not as rows.
    for t in [
        "patients",
        "visits",
        "audit",
        "django_migrations",
        "odd `name` (x)",
    ] {
        let q = format!("SELECT COUNT(*) FROM `{}`;", t.replace('`', "``"));
        m.insert(t.to_string(), my(db, &q).trim().parse().unwrap());
    }
    m
}

#[test]
fn round_trip_restores_an_identical_database() {
    require_mysql();
    let src = MyDb::create("my_src");
    my(&src.0, SCHEMA);

    let (bytes, outcome) = dump_all(&src.source()).unwrap();
    assert_eq!(detect_dump_format(&bytes), Some(Engine::Mysql));
    let m = &outcome.manifest;
    assert_eq!(m.engine, Engine::Mysql);
    assert!(m.server_version.contains("MariaDB") || !m.server_version.is_empty());
    assert_eq!(m.counts, CountsMethod::DumpStream);
    assert_eq!(m.dump.as_ref().unwrap().bytes, bytes.len() as u64);
    assert!(m.size_bytes.unwrap() > 0);

    // Counts parsed from the dump equal exact COUNT(*).
    assert_eq!(m.counts(), live_counts(&src.0));
    assert_eq!(m.counts()["patients"], 501);
    assert_eq!(m.counts()["audit"], 501);

    let dj = m.django_migrations.as_ref().unwrap();
    assert_eq!(dj.total, 4);
    assert_eq!(dj.apps.len(), 3);
    assert_eq!(dj.apps[1].app, "contenttypes");
    assert_eq!(dj.apps[1].latest, "0002_remove_content_type_name");
    assert_eq!(dj.apps[1].count, 2);

    let dst = MyDb::named(&unique("my_dst"));
    let report = dst
        .source()
        .restore(&mut Cursor::new(&bytes), &RestoreOptions::default())
        .unwrap();
    assert!(report.created);
    assert_eq!(report.bytes, bytes.len() as u64);

    let a = plain_dump(&src.0);
    let b = plain_dump(&dst.0);
    assert!(a.contains("TRIGGER") && a.contains("EVENT") && a.contains("PROCEDURE"));
    assert!(a == b, "plain dumps differ after restore");

    let check = verify_counts(m, &dst.source().table_counts().unwrap());
    assert!(check.is_ok(), "{:?}", check.mismatches);

    assert_eq!(
        my(&dst.0, "SELECT balance_total();").trim(),
        my(&src.0, "SELECT balance_total();").trim()
    );
    // MariaDB dumps a sequence at its next value not yet cached (as a server restart
    // would): the restored sequence never repeats a value, but may skip the cached ones.
    let restored_next: u64 = my(&dst.0, "SELECT NEXTVAL(invoice_seq);")
        .trim()
        .parse()
        .unwrap();
    let source_next: u64 = my(&src.0, "SELECT NEXTVAL(invoice_seq);")
        .trim()
        .parse()
        .unwrap();
    assert!(
        restored_next >= source_next,
        "{restored_next} < {source_next}"
    );

    // Existing target: refused, untouched; replaced only when asked.
    my(&dst.0, "INSERT INTO audit (action) VALUES ('marker');");
    let err = dst
        .source()
        .restore(&mut Cursor::new(&bytes), &RestoreOptions::default())
        .unwrap_err();
    assert!(matches!(err, SourceError::TargetExists { .. }), "{err}");
    assert_eq!(
        my(
            &dst.0,
            "SELECT COUNT(*) FROM audit WHERE action = 'marker';"
        )
        .trim(),
        "1"
    );
    let report = dst
        .source()
        .restore(&mut Cursor::new(&bytes), &RestoreOptions { replace: true })
        .unwrap();
    assert_eq!(report.replaced, Some(Replaced::Dropped));
    assert_eq!(
        my(
            &dst.0,
            "SELECT COUNT(*) FROM audit WHERE action = 'marker';"
        )
        .trim(),
        "0"
    );

    let live = src.source().manifest().unwrap();
    assert_eq!(live.counts(), m.counts());
}

#[test]
fn counts_match_the_dump_under_concurrent_writes() {
    require_mysql();
    let src = MyDb::create("my_busy");
    my(
        &src.0,
        "SET SESSION max_recursive_iterations = 100000;
         CREATE TABLE ledger (id BIGINT AUTO_INCREMENT PRIMARY KEY, amount INT NOT NULL) ENGINE=InnoDB;
         INSERT INTO ledger (amount) WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < 20000) SELECT 1 FROM g;
         DELIMITER //
         CREATE PROCEDURE churn(n INT) BEGIN DECLARE i INT DEFAULT 0;
           WHILE i < n DO INSERT INTO ledger (amount) VALUES (i); DO SLEEP(0.001); SET i = i + 1; END WHILE;
         END //
         DELIMITER ;",
    );
    let mut writer = Command::new("mariadb")
        .args([
            "-h",
            "127.0.0.1",
            "-uroot",
            &format!("--database={}", src.0),
        ])
        .args(["-e", "CALL churn(3000);"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    for _ in 0..200 {
        if my(&src.0, "SELECT COUNT(*) > 20010 FROM ledger;").trim() == "1" {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let (bytes, outcome) = dump_all(&src.source()).unwrap();
    // Stop the procedure server-side, then the client.
    let ids = my(
        "",
        &format!(
            "SELECT ID FROM information_schema.PROCESSLIST WHERE DB = '{}' AND INFO LIKE 'CALL churn%';",
            src.0
        ),
    );
    for id in ids.split_whitespace() {
        let _ = my_try("", &format!("KILL {id};"));
    }
    let _ = writer.kill();
    let _ = writer.wait();
    let dst = MyDb::named(&unique("my_busy_dst"));
    dst.source()
        .restore(&mut Cursor::new(&bytes), &RestoreOptions::default())
        .unwrap();
    let check = verify_counts(&outcome.manifest, &dst.source().table_counts().unwrap());
    assert!(check.is_ok(), "{:?}", check.mismatches);
    assert!(outcome.manifest.counts()["ledger"] > 20000);
}

#[test]
fn unreachable_host_fails_with_advice() {
    require_mysql();
    let source = DatabaseSource::parse("mysql://root@127.0.0.1:1/mysql").unwrap();
    let err = source.dump().unwrap_err().to_string();
    assert!(err.contains("Can't connect"), "{err}");
    assert!(
        err.contains("mysql://root@127.0.0.1:1/mysql"),
        "names the target: {err}"
    );
    assert!(
        err.contains("hint: check that the database server is running"),
        "{err}"
    );
    let report = source.probe();
    assert!(!report.reachable);
    assert!(report.error.is_some());
}

#[test]
fn missing_database_fails() {
    require_mysql();
    let name = unique("my_missing");
    let source = DatabaseSource::parse(&format!("mysql://root@127.0.0.1/{name}")).unwrap();
    let err = source.dump().unwrap_err().to_string();
    assert!(err.contains("Unknown database"), "{err}");
    assert!(err.contains("hint: check the database name"), "{err}");
}

#[test]
fn wrong_password_fails_without_leaking_it() {
    require_mysql();
    let db = MyDb::create("my_pw");
    let user = unique("u");
    my(
        "",
        &format!(
            "CREATE USER '{user}'@'127.0.0.1' IDENTIFIED BY 'right-password';
             CREATE USER '{user}'@'localhost' IDENTIFIED BY 'right-password';
             GRANT ALL ON `{0}`.* TO '{user}'@'127.0.0.1';",
            db.0
        ),
    );
    struct DropUser(String);
    impl Drop for DropUser {
        fn drop(&mut self) {
            let _ = my_try(
                "",
                &format!(
                    "DROP USER IF EXISTS '{0}'@'127.0.0.1'; DROP USER IF EXISTS '{0}'@'localhost';",
                    self.0
                ),
            );
        }
    }
    let _guard = DropUser(user.clone());
    let wrong = DatabaseSource::parse(&format!(
        "mysql://{user}:wrong-password@127.0.0.1:3306/{}",
        db.0
    ))
    .unwrap();
    let msg = wrong.dump().unwrap_err().to_string();
    assert!(msg.contains("Access denied for user"), "{msg}");
    assert!(
        msg.contains("hint: check the user name and password"),
        "{msg}"
    );
    assert!(
        !msg.contains("wrong-password"),
        "the password leaked: {msg}"
    );

    // The right password works (through the 0600 defaults file).
    let right = DatabaseSource::parse(&format!(
        "mysql://{user}:right-password@127.0.0.1:3306/{}",
        db.0
    ))
    .unwrap();
    my(
        &db.0,
        "CREATE TABLE t (id INT PRIMARY KEY); INSERT INTO t VALUES (1), (2);",
    );
    let report = right.probe();
    assert!(report.reachable, "{:?}", report.error);
    assert_eq!(right.table_counts().unwrap()["t"], 2);
}

#[test]
fn missing_dump_tool_is_named_with_its_package() {
    require_mysql();
    let (_dir, tools) = tool_dir(&["mariadb"], &[]);
    let source = DatabaseSource::parse(MY_ADMIN_URL)
        .unwrap()
        .with_tools(tools);
    let err = source.dump().unwrap_err().to_string();
    assert!(err.contains("`mariadb-dump` was not found"), "{err}");
    assert!(err.contains("mariadb-client"), "{err}");
}

#[test]
fn empty_dump_is_a_failure() {
    require_mysql();
    let (_dir, tools) = tool_dir(
        &["mariadb"],
        &[(
            "mariadb-dump",
            "for a; do [ \"$a\" = --version ] && { echo 'mariadb-dump fake'; exit 0; }; done; exit 0",
        )],
    );
    let source = DatabaseSource::parse(MY_ADMIN_URL)
        .unwrap()
        .with_tools(tools);
    let (mut reader, pending) = source.dump().unwrap();
    let mut out = Vec::new();
    let err = reader.read_to_end(&mut out).unwrap_err();
    assert!(err.to_string().contains("produced no output"), "{err}");
    drop(reader);
    assert!(pending.finish().is_err());
}

#[test]
fn failed_restores_leave_no_database_behind() {
    require_mysql();
    let src = MyDb::create("my_trunc");
    my(
        &src.0,
        "SET SESSION max_recursive_iterations = 100000;
         CREATE TABLE t (id INT PRIMARY KEY, s TEXT);
         INSERT INTO t WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < 5000)
           SELECT n, REPEAT('x', 100) FROM g;",
    );
    let (bytes, _) = dump_all(&src.source()).unwrap();
    let dst = MyDb::named(&unique("my_trunc_dst"));
    let exists = |name: &str| {
        my(
            "",
            &format!(
                "SELECT COUNT(*) FROM information_schema.schemata WHERE schema_name = '{name}';"
            ),
        )
        .trim()
            == "1"
    };
    // Cut in the middle of an INSERT statement.
    let cut = bytes.windows(11).position(|w| w == b"INSERT INTO").unwrap() + 200;
    let err = dst
        .source()
        .restore(&mut Cursor::new(&bytes[..cut]), &RestoreOptions::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("mariadb"), "{err}");
    assert!(!exists(&dst.0), "the half-restored database was dropped");

    let err = dst
        .source()
        .restore(&mut io::empty(), &RestoreOptions::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("empty"), "{err}");
    assert!(!exists(&dst.0));

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
    require_mysql();
    let db = MyDb::create("my_probe");
    let report = db.source().probe();
    assert!(report.reachable, "{:?}", report.error);
    assert!(
        report.version.as_deref().unwrap_or("").contains("MariaDB"),
        "{report:?}"
    );
    assert!(report.latency_ms.unwrap() > 0.0);
    assert!(report.max_connections.unwrap() > 0);
    assert!(report.total_connections.unwrap() >= 1);
    assert!(report.uptime_seconds.unwrap() > 0);
    assert!(report.waiting_locks.is_some());
    assert_eq!(report.is_replica, Some(false));
}
