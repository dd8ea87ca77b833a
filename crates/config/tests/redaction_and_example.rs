//! Secrets never print (Debug, Display, the redacted TOML, error messages), the full example
//! of `docs/configuration.md` parses, and `setup_defaults` builds the platform default.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

use std::path::Path;

use strongroom_config::{
    Config, ConfigError, Engine, NotifyEvent, PasswordSource, Retention, ScheduleKind, Secret,
    TlsMode, setup_defaults,
};

/// Every secret below contains this marker.
const PLANT: &str = "PLANTED";

const SECRET_FILE: &str = r#"catalog = "postgres://sr:PLANTED-catalog@pg.internal/strongroom"

[repository]
path = "/srv/backups/repo"
password = "PLANTED-repo"

[[database]]
name = "clinic"
url = "postgres://backup:PLANTED-db@db.internal:5432/clinic?sslmode=require&sslpassword=PLANTED-q"
drill_url = "postgres://drill:PLANTED-drill@drill.internal/postgres"

[[database]]
name = "wiki"
url = "mysql://backup:PLANTED%40db2@wiki.internal/wiki"

[[media]]
name = "uploads"
path = "/srv/app/media"

[[schedule]]
name = "nightly"
kind = "full"
when = "daily 02:00"

[notify.email]
to = ["ops@example.org"]
from = "sr@example.org"
host = "smtp.example.org"
user = "sr"
password = "PLANTED-smtp"

[[notify.webhooks]]
url = "https://hooks.example.org/services/PLANTED-token"
secret = "PLANTED-hmac"

[[notify.webhooks]]
url = "https://user:PLANTED-basic@hooks2.example.org:8443/x"
"#;

fn assert_clean(what: &str, text: &str) {
    assert!(!text.contains(PLANT), "{what} leaks a secret:\n{text}");
}

#[test]
fn no_secret_in_debug_display_or_redacted_toml() {
    let env = [
        ("STRONGROOM_PASSWORD", "PLANTED-env-repo"),
        ("EMAIL_HOST_PASSWORD", "PLANTED-env-smtp"),
        ("DATABASE_URL", "postgres://u:PLANTED-unused@h/db"),
    ];
    let c = Config::from_toml_str(SECRET_FILE, None, &env).unwrap();
    // The secrets are there for whoever needs them...
    assert_eq!(
        c.repository.password(&env).unwrap().unwrap().expose(),
        "PLANTED-env-repo"
    );
    assert!(c.databases[0].url.expose().contains("PLANTED-db"));
    assert_eq!(
        c.notify
            .email
            .as_ref()
            .unwrap()
            .password
            .as_ref()
            .unwrap()
            .expose(),
        "PLANTED-env-smtp"
    );
    assert!(c.notify.webhooks[0].url.expose().contains("PLANTED-token"));
    // ...and nowhere in what prints.
    assert_clean("Debug", &format!("{c:?}"));
    assert_clean("pretty Debug", &format!("{c:#?}"));
    assert_clean("Display", &c.to_string());
    let redacted = c.redacted_toml();
    assert_clean("redacted_toml", &redacted);
    for d in &c.databases {
        assert_clean("url Display", &d.url.to_string());
        assert_clean("url redacted", d.url.redacted());
    }
    // The redacted output is TOML, shows where secrets were, and keeps the shape.
    let table: toml::Table = toml::from_str(&redacted).unwrap();
    assert_eq!(table["repository"]["password"].as_str(), Some("***"));
    assert_eq!(
        table["catalog"].as_str(),
        Some("postgres://sr:***@pg.internal/strongroom")
    );
    let dbs = table["database"].as_array().unwrap();
    assert_eq!(
        dbs[0]["url"].as_str(),
        Some("postgres://backup:***@db.internal:5432/clinic?sslmode=require&sslpassword=***")
    );
    assert_eq!(
        dbs[0]["drill_url"].as_str(),
        Some("postgres://drill:***@drill.internal/postgres")
    );
    assert_eq!(
        dbs[1]["url"].as_str(),
        Some("mysql://backup:***@wiki.internal/wiki")
    );
    assert_eq!(table["notify"]["email"]["password"].as_str(), Some("***"));
    let hooks = table["notify"]["webhooks"].as_array().unwrap();
    assert_eq!(
        hooks[0]["url"].as_str(),
        Some("https://hooks.example.org/***")
    );
    assert_eq!(hooks[0]["secret"].as_str(), Some("***"));
    assert_eq!(
        hooks[1]["url"].as_str(),
        Some("https://hooks2.example.org/***")
    );
    assert_eq!(table["schedule"][0]["when"].as_str(), Some("daily 02:00"));
}

#[test]
fn secrets_do_not_reach_error_messages() {
    // Broken URLs around planted passwords, in the file and in the environment.
    let files = [
        "[[database]]\nname = \"a\"\nurl = \"postgres://u:PLANTED?x@host:notaport/db\"\n",
        "[[database]]\nname = \"a\"\nurl = \"postgres://u:PLANTED/x@h\"\n",
        "[[database]]\nname = \"a\"\nurl = \"postgres://u:PLANTED%ZZ@h/db\"\n",
        "[[database]]\nname = \"a\"\nurl = \"u:PLANTED@h/db\"\n",
        "[[database]]\nname = \"a\"\nurl = \"postgres://u:PLANTED@h/db\"\ndrill_url = \"mysql://u:PLANTED@h/db\"\n",
        "[[database]]\nname = \"a\"\nurl = \"postgres://u:PLANTED@h/db\"\nglobals = \"PLANTED\"\n",
        "[repository]\npassword = 123456\npath = \"/r\"\n",
        "[repository]\npassword = [\"PLANTED\"]\npath = \"/r\"\n",
        "[[notify.webhooks]]\nurl = \"https://hooks.example.org:PLANTED/x\"\n",
        "[[notify.webhooks]]\nurl = \"gopher://PLANTED\"\n",
        "catalog = \"mysql://u:PLANTED@h/db\"\n",
    ];
    let none: [(&str, &str); 0] = [];
    for text in files {
        let e = Config::from_toml_str(text, None, &none).unwrap_err();
        let msg = e.to_string();
        assert!(
            !msg.contains(PLANT),
            "error leaks a secret for {text:?}: {msg}"
        );
        assert!(!msg.contains("123456"), "error quotes a value: {msg}");
        assert!(
            !format!("{e:?}").contains(PLANT),
            "Debug of the error leaks: {e:?}"
        );
    }
    for (var, value) in [
        ("DATABASE_URL", "postgres://u:PLANTED@h:xx/db"),
        ("STRONGROOM_CATALOG", "postgres://u:PLANTED@h/"),
        ("STRONGROOM_REPO", "s3://u:PLANTED@bucket"),
    ] {
        let e = Config::from_env(&[(var, value)]).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains(var), "{msg}");
        assert!(!msg.contains(PLANT), "error leaks a secret: {msg}");
    }
}

#[test]
fn secret_type_never_prints() {
    let s = Secret::new("PLANTED");
    assert_eq!(format!("{s}"), "***");
    assert_eq!(format!("{s:?}"), "***");
    assert_eq!(format!("{s:#?}"), "***");
    assert_eq!(serde_json_like(&s), "\"***\"");
    assert_eq!(s.expose(), "PLANTED");
}

fn serde_json_like(s: &Secret) -> String {
    // toml serializes a bare value as a string literal.
    toml::Value::try_from(s).unwrap().to_string()
}

/// The first ```toml block under "## Full example" in docs/configuration.md.
fn docs_example() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/configuration.md");
    let doc = std::fs::read_to_string(&path).unwrap();
    let section = doc.split("## Full example").nth(1).unwrap();
    let start = section.find("```toml\n").unwrap() + "```toml\n".len();
    let end = section[start..].find("```").unwrap();
    section[start..start + end].to_string()
}

#[test]
fn the_documented_example_parses() {
    let env = [(
        "CLINIC_DATABASE_URL",
        "postgres://backup:pw@db.internal:5432/clinic",
    )];
    let text = docs_example();
    let c = Config::from_toml_str(
        &text,
        Some(Path::new("/etc/strongroom/strongroom.toml")),
        &env,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.timezone, "Europe/Berlin");
    assert_eq!(
        c.databases
            .iter()
            .map(|d| d.name.as_str())
            .collect::<Vec<_>>(),
        ["clinic", "wiki", "sessions"]
    );
    assert_eq!(c.databases[0].url.engine(), Engine::Postgres);
    assert_eq!(c.databases[0].parallel_jobs, Some(4));
    assert_eq!(c.databases[1].url.engine(), Engine::Mysql);
    assert!(!c.databases[1].globals);
    assert_eq!(c.databases[2].url.engine(), Engine::Sqlite);
    assert_eq!(c.media[0].exclude.len(), 3);
    assert_eq!(
        c.repository.password,
        PasswordSource::File("/etc/strongroom/repository.pass".into())
    );
    let nightly = c.schedule("nightly").unwrap();
    assert_eq!(nightly.kind, ScheduleKind::Full);
    assert_eq!(nightly.sources, ["clinic", "wiki", "sessions", "uploads"]);
    assert_eq!(nightly.timezone, "Europe/Berlin");
    assert!(nightly.verify);
    assert_eq!(
        nightly.retention,
        Some(Retention {
            keep_last: Some(3),
            keep_daily: Some(7),
            keep_weekly: Some(4),
            keep_monthly: Some(12),
            keep_yearly: Some(3),
            keep_days: None,
        })
    );
    let hourly = c.schedule("clinic-hourly").unwrap();
    assert_eq!(hourly.catch_up_window, std::time::Duration::from_secs(1800));
    let verify = c.schedule("weekly-verify").unwrap();
    assert!(verify.test_restore);
    assert_eq!(verify.read_data_subset, Some(10));
    let prune = c.schedule("monthly-prune").unwrap();
    assert_eq!(prune.timezone, "UTC");
    assert!(prune.sources.is_empty());
    let email = c.notify.email.as_ref().unwrap();
    assert_eq!(email.tls, TlsMode::Starttls);
    assert_eq!(email.to.len(), 2);
    assert_eq!(
        c.notify.on,
        [
            NotifyEvent::Failure,
            NotifyEvent::Warning,
            NotifyEvent::Recovery,
            NotifyEvent::Health
        ]
    );
    assert_eq!(c.server.trusted_proxies.len(), 2);
    assert!(c.server.trusted_proxies[1].contains("10.1.2.3".parse().unwrap()));
    assert!(!c.server.trusted_proxies[1].contains("192.168.1.1".parse().unwrap()));
    assert_eq!(
        c.jobs.time_limit.prune,
        std::time::Duration::from_secs(6 * 3600)
    );
    // The schedules evaluate: 02:00 does not exist in Berlin on 31 March 2024, so the
    // nightly run happens at 03:00 CEST (01:00Z).
    let t = chrono::DateTime::parse_from_rfc3339("2024-03-30T12:00:00Z")
        .unwrap()
        .with_timezone(&chrono::Utc);
    assert_eq!(
        nightly.schedule.next_after(t).unwrap().to_rfc3339(),
        "2024-03-31T01:00:00+00:00"
    );
    // Its redacted form is valid TOML with the same shape.
    let redacted = c.redacted_toml();
    let table: toml::Table = toml::from_str(&redacted).unwrap();
    assert_eq!(table["schedule"].as_array().unwrap().len(), 4);
    assert!(!redacted.contains("change-me"));
    assert!(!redacted.contains("a-long-random-string"));
    assert!(!redacted.contains("XXXX"));
}

#[test]
fn setup_creates_the_platform_default() {
    let env = [
        ("DATABASE_URL", "postgres://app:PLANTED@db/clinic"),
        ("MEDIA_ROOT", "/app/media"),
    ];
    let setup = setup_defaults(&env).unwrap();
    assert_clean("setup toml", &setup.toml);
    assert_clean("setup summary", &setup.summary.join("\n"));
    let c = &setup.config;
    let full = c.schedule("daily-full").unwrap();
    assert_eq!(full.kind, ScheduleKind::Full);
    assert_eq!(full.when, "daily 02:00");
    assert_eq!(full.sources, ["default", "media"]);
    assert!(full.verify);
    assert_eq!(
        full.retention,
        Some(Retention {
            keep_daily: Some(7),
            keep_weekly: Some(4),
            keep_monthly: Some(12),
            ..Retention::default()
        })
    );
    let verify = c.schedule("weekly-verify").unwrap();
    assert_eq!(verify.kind, ScheduleKind::Verify);
    assert_eq!(verify.when, "weekly sun 04:00");
    assert!(verify.test_restore);
    // The text is a configuration file that loads to the same schedules.
    let reloaded = Config::from_toml_str(&setup.toml, None, &env).unwrap();
    assert_eq!(reloaded.schedules.len(), 2);
    assert!(
        setup
            .summary
            .iter()
            .any(|l| l.contains("postgres://app:***@db/clinic"))
    );

    // Media only: no test restore; a time zone from the environment.
    let setup = setup_defaults(&[
        ("MEDIA_ROOT", "/app/media"),
        ("STRONGROOM_TIMEZONE", "Asia/Manila"),
    ])
    .unwrap();
    let verify = setup.config.schedule("weekly-verify").unwrap();
    assert!(!verify.test_restore);
    assert_eq!(verify.timezone, "Asia/Manila");

    // Nothing to back up.
    let none: [(&str, &str); 0] = [];
    assert!(matches!(
        setup_defaults(&none).unwrap_err(),
        ConfigError::NothingToSetUp
    ));
    // A bad DATABASE_URL is reported as such.
    let e = setup_defaults(&[("DATABASE_URL", "nonsense")]).unwrap_err();
    assert!(e.to_string().contains("DATABASE_URL"), "{e}");
}
