//! Environment conventions: the platform's variables (`DATABASE_URL`, `MEDIA_ROOT`,
//! `BACKUP_ALERT_EMAIL`, `EMAIL_*`, `DEFAULT_FROM_EMAIL`, `PORT`) and the `STRONGROOM_*`
//! overrides, their precedence over the file, defaults, and errors naming the variable.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use strongroom_config::{
    CatalogConfig, Config, ConfigError, Engine, Origin, PasswordSource, RepoLocation, ScheduleKind,
    SourceRef, TlsMode,
};

fn env_problems(text: &str, env: &[(&str, &str)]) -> Vec<(String, String)> {
    match Config::from_toml_str(text, None, env) {
        Ok(_) => panic!("expected problems"),
        Err(ConfigError::Invalid(ps)) => ps
            .into_iter()
            .map(|p| {
                let var = match &p.origin {
                    Origin::Env { var } => var.clone(),
                    other => panic!("expected an environment problem, got {other:?}: {p}"),
                };
                (var, p.to_string())
            })
            .collect(),
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn database_url_adds_the_default_database() {
    let env = [("DATABASE_URL", "postgres://app:pw@db.internal:5432/clinic")];
    let c = Config::from_env(&env).unwrap();
    assert_eq!(c.databases.len(), 1);
    let d = &c.databases[0];
    assert_eq!(d.name, "default");
    assert_eq!(d.url.engine(), Engine::Postgres);
    assert_eq!(d.url.expose(), "postgres://app:pw@db.internal:5432/clinic");
    assert_eq!(
        d.url.redacted(),
        "postgres://app:***@db.internal:5432/clinic"
    );
    assert_eq!(d.url_env.as_deref(), Some("DATABASE_URL"));
    assert!(d.globals);
    assert!(matches!(c.source("default"), Some(SourceRef::Database(_))));
    // Heroku-style `postgres://` and the other engines.
    for (url, engine) in [
        ("postgresql://u@h/db", Engine::Postgres),
        ("mysql://u:p@h:3306/db", Engine::Mysql),
        ("mariadb://u@h/db", Engine::Mysql),
        ("sqlite:////var/lib/app/db.sqlite3", Engine::Sqlite),
    ] {
        let c = Config::from_env(&[("DATABASE_URL", url)]).unwrap();
        assert_eq!(c.databases[0].url.engine(), engine, "{url}");
        assert_eq!(c.databases[0].globals, engine == Engine::Postgres);
    }
    let c = Config::from_env(&[("DATABASE_URL", "sqlite:////var/lib/app/db.sqlite3")]).unwrap();
    assert_eq!(
        c.databases[0].url.sqlite_path(),
        Some(PathBuf::from("/var/lib/app/db.sqlite3"))
    );
}

#[test]
fn database_url_is_ignored_when_the_file_lists_databases() {
    let text = "[[database]]\nname = \"clinic\"\nurl = \"postgres://h/clinic\"\n";
    let c = Config::from_toml_str(text, None, &[("DATABASE_URL", "postgres://h/other")]).unwrap();
    assert_eq!(c.databases.len(), 1);
    assert_eq!(c.databases[0].name, "clinic");
}

#[test]
fn bad_database_url_names_the_variable_and_hides_the_password() {
    for url in [
        "postgres://app:s3cr3t-pw@db.internal:notaport/clinic",
        "oracle://app:s3cr3t-pw@db/clinic",
        "postgres://app:s3cr3t-pw@db.internal:5432",
        "app:s3cr3t-pw@db.internal/clinic",
        "postgres://app:s3cr3t?pw@db.internal:5432/clinic%zz",
    ] {
        let ps = env_problems("", &[("DATABASE_URL", url)]);
        assert_eq!(ps.len(), 1, "{url}");
        assert_eq!(ps[0].0, "DATABASE_URL");
        assert!(ps[0].1.contains("DATABASE_URL"), "{}", ps[0].1);
        assert!(!ps[0].1.contains("s3cr3t"), "password leaked: {}", ps[0].1);
    }
}

#[test]
fn url_env_reads_another_variable() {
    let text = "[[database]]\nname = \"replica\"\nurl_env = \"REPLICA_URL\"\n";
    let c = Config::from_toml_str(text, None, &[("REPLICA_URL", "mysql://u:p@h/db")]).unwrap();
    assert_eq!(c.databases[0].url.engine(), Engine::Mysql);
    assert_eq!(c.databases[0].url_env.as_deref(), Some("REPLICA_URL"));
}

#[test]
fn media_root_adds_a_media_source() {
    let c = Config::from_env(&[("MEDIA_ROOT", "/app/media")]).unwrap();
    assert_eq!(c.media.len(), 1);
    assert_eq!(c.media[0].name, "media");
    assert_eq!(c.media[0].path, PathBuf::from("/app/media"));
    assert_eq!(c.media[0].path_env.as_deref(), Some("MEDIA_ROOT"));
    let ps = env_problems("", &[("MEDIA_ROOT", "media")]);
    assert_eq!(ps[0].0, "MEDIA_ROOT");
    assert!(ps[0].1.contains("absolute"), "{}", ps[0].1);
    // Not added when the file has media.
    let text = "[[media]]\nname = \"uploads\"\npath = \"/srv/up\"\n";
    let c = Config::from_toml_str(text, None, &[("MEDIA_ROOT", "/app/media")]).unwrap();
    assert_eq!(c.media.len(), 1);
    assert_eq!(c.media[0].name, "uploads");
}

#[test]
fn database_url_and_media_root_make_a_platform_config() {
    let env = [
        ("DATABASE_URL", "postgres://app:pw@db/clinic"),
        ("MEDIA_ROOT", "/app/media"),
        ("STRONGROOM_REPO", "/data/repo"),
    ];
    let text = "[[schedule]]\nname = \"nightly\"\nkind = \"full\"\nwhen = \"daily 02:00\"\n";
    let c = Config::from_toml_str(text, None, &env).unwrap();
    assert_eq!(c.schedules[0].sources, ["default", "media"]);
    assert!(!c.schedules[0].sources_explicit);
}

#[test]
fn repository_overrides() {
    let text = "[repository]\npath = \"/from/file\"\npassword = \"file-pw\"\n";
    let c = Config::from_toml_str(text, None, &[] as &[(&str, &str)]).unwrap();
    assert_eq!(
        c.repository.location,
        Some(RepoLocation::Path("/from/file".into()))
    );
    assert_eq!(
        c.repository
            .password(&[] as &[(&str, &str)])
            .unwrap()
            .unwrap()
            .expose(),
        "file-pw"
    );

    let env = [
        ("STRONGROOM_REPO", "/from/env"),
        ("STRONGROOM_PASSWORD", "env-pw"),
    ];
    let c = Config::from_toml_str(text, None, &env).unwrap();
    assert_eq!(
        c.repository_location().unwrap(),
        &RepoLocation::Path("/from/env".into())
    );
    assert_eq!(
        c.repository.password(&env).unwrap().unwrap().expose(),
        "env-pw"
    );

    let c = Config::from_env(&[("STRONGROOM_REPO", "s3://backups/clinic/")]).unwrap();
    assert_eq!(
        c.repository.location,
        Some(RepoLocation::S3 {
            bucket: "backups".into(),
            prefix: "clinic".into()
        })
    );
    let ps = env_problems("", &[("STRONGROOM_REPO", "s3://key:secret@bucket/x")]);
    assert_eq!(ps[0].0, "STRONGROOM_REPO");
    assert!(!ps[0].1.contains("secret@"), "{}", ps[0].1);

    // No repository at all: loading works, using it says what to do.
    let c = Config::from_env(&[] as &[(&str, &str)]).unwrap();
    let e = c.repository_location().unwrap_err();
    assert!(e.to_string().contains("STRONGROOM_REPO"), "{e}");
    assert_eq!(c.repository.password(&[] as &[(&str, &str)]).unwrap(), None);
}

#[test]
fn password_file_and_password_env() {
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("repo.pass");
    std::fs::write(&pw, "from-file\n").unwrap();
    let pw_s = pw.to_str().unwrap();
    // STRONGROOM_PASSWORD_FILE wins over STRONGROOM_PASSWORD, as on the command line.
    let env = [
        ("STRONGROOM_PASSWORD_FILE", pw_s),
        ("STRONGROOM_PASSWORD", "from-env"),
    ];
    let c = Config::from_env(&env).unwrap();
    assert_eq!(c.repository.password, PasswordSource::File(pw.clone()));
    assert_eq!(
        c.repository.password(&env).unwrap().unwrap().expose(),
        "from-file"
    );

    let text = "[repository]\npath = \"/r\"\npassword_env = \"MY_REPO_PW\"\n";
    let env = [("MY_REPO_PW", "via-env")];
    let c = Config::from_toml_str(text, None, &env).unwrap();
    assert_eq!(
        c.repository.password(&env).unwrap().unwrap().expose(),
        "via-env"
    );
    let e = c.repository.password(&[] as &[(&str, &str)]).unwrap_err();
    assert!(e.to_string().contains("MY_REPO_PW"), "{e}");

    // A relative password_file is relative to the configuration file.
    let cfg = dir.path().join("strongroom.toml");
    std::fs::write(
        &cfg,
        "[repository]\npath = \"repo\"\npassword_file = \"repo.pass\"\n",
    )
    .unwrap();
    let c = Config::load(Some(&cfg), &[] as &[(&str, &str)]).unwrap();
    assert_eq!(
        c.repository.location,
        Some(RepoLocation::Path(dir.path().join("repo")))
    );
    assert_eq!(
        c.repository
            .password(&[] as &[(&str, &str)])
            .unwrap()
            .unwrap()
            .expose(),
        "from-file"
    );
    // Missing and empty files are clear errors.
    std::fs::write(&pw, "\n").unwrap();
    let e = c.repository.password(&[] as &[(&str, &str)]).unwrap_err();
    assert!(e.to_string().contains("is empty"), "{e}");
    std::fs::remove_file(&pw).unwrap();
    let e = c.repository.password(&[] as &[(&str, &str)]).unwrap_err();
    assert!(matches!(e, ConfigError::PasswordFile { .. }), "{e}");
}

#[test]
fn strongroom_config_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("custom.toml");
    std::fs::write(&cfg, "[server]\nlisten = \"127.0.0.1:9999\"\n").unwrap();
    let env = [("STRONGROOM_CONFIG", cfg.to_str().unwrap())];
    let c = Config::load(None, &env).unwrap();
    assert_eq!(
        c.server.listen,
        "127.0.0.1:9999".parse::<SocketAddr>().unwrap()
    );
    assert_eq!(c.file.as_deref(), Some(cfg.as_path()));
    // An explicit path wins over STRONGROOM_CONFIG.
    let other = dir.path().join("other.toml");
    std::fs::write(&other, "").unwrap();
    let c = Config::load(Some(&other), &env).unwrap();
    assert_eq!(
        c.server.listen,
        "127.0.0.1:8080".parse::<SocketAddr>().unwrap()
    );
    // Errors name the file.
    std::fs::write(&cfg, "[server]\nlisten = 5\n").unwrap();
    let e = Config::load(None, &env).unwrap_err();
    assert!(e.to_string().contains("custom.toml:2:"), "{e}");
}

#[test]
fn catalog_defaults_and_overrides() {
    // Beside a local repository.
    let c = Config::from_env(&[("STRONGROOM_REPO", "/srv/backups/repo")]).unwrap();
    assert_eq!(
        c.catalog,
        CatalogConfig::Sqlite {
            path: "/srv/backups/repo.catalog.sqlite3".into()
        }
    );
    // In the data dir otherwise.
    let c = Config::from_env(&[("STRONGROOM_DATA_DIR", "/var/lib/sr")]).unwrap();
    assert_eq!(
        c.catalog,
        CatalogConfig::Sqlite {
            path: "/var/lib/sr/catalog.sqlite3".into()
        }
    );
    let c = Config::from_env(&[("STRONGROOM_REPO", "s3://b/p"), ("HOME", "/home/u")]).unwrap();
    assert_eq!(
        c.catalog,
        CatalogConfig::Sqlite {
            path: "/home/u/.local/share/strongroom/catalog.sqlite3".into()
        }
    );
    // PostgreSQL from the environment beats the file.
    let text = "catalog = \"sqlite:///var/lib/strongroom/catalog.db\"\n";
    let c = Config::from_toml_str(text, None, &[] as &[(&str, &str)]).unwrap();
    assert_eq!(
        c.catalog,
        CatalogConfig::Sqlite {
            path: "/var/lib/strongroom/catalog.db".into()
        }
    );
    let c = Config::from_toml_str(
        text,
        None,
        &[("STRONGROOM_CATALOG", "postgres://sr:pw@pg/strongroom")],
    )
    .unwrap();
    match &c.catalog {
        CatalogConfig::Postgres { url } => {
            assert_eq!(url.redacted(), "postgres://sr:***@pg/strongroom")
        }
        other => panic!("{other:?}"),
    }
    let ps = env_problems("", &[("STRONGROOM_CATALOG", "mysql://u@h/db")]);
    assert_eq!(ps[0].0, "STRONGROOM_CATALOG");
}

#[test]
fn listen_address() {
    let none: [(&str, &str); 0] = [];
    let addr = |s: &str| s.parse::<SocketAddr>().unwrap();
    assert_eq!(
        Config::from_env(&none).unwrap().server.listen,
        addr("127.0.0.1:8080")
    );
    assert_eq!(
        Config::from_env(&[("PORT", "5000")]).unwrap().server.listen,
        addr("0.0.0.0:5000")
    );
    let text = "[server]\nlisten = \"[::1]:8443\"\n";
    assert_eq!(
        Config::from_toml_str(text, None, &[("PORT", "5000")])
            .unwrap()
            .server
            .listen,
        addr("[::1]:8443")
    );
    assert_eq!(
        Config::from_toml_str(text, None, &[("STRONGROOM_LISTEN", "0.0.0.0:9000")])
            .unwrap()
            .server
            .listen,
        addr("0.0.0.0:9000")
    );
    let ps = env_problems("", &[("STRONGROOM_LISTEN", "everywhere")]);
    assert_eq!(ps[0].0, "STRONGROOM_LISTEN");
    assert!(ps[0].1.contains("127.0.0.1:8080"), "{}", ps[0].1);
    let ps = env_problems("", &[("PORT", "http")]);
    assert_eq!(ps[0].0, "PORT");
}

#[test]
fn cache_and_data_dirs() {
    let c = Config::from_env(&[("HOME", "/home/u")]).unwrap();
    assert_eq!(c.cache_dir, PathBuf::from("/home/u/.cache/strongroom"));
    assert_eq!(c.data_dir, PathBuf::from("/home/u/.local/share/strongroom"));
    let c = Config::from_env(&[
        ("HOME", "/home/u"),
        ("XDG_CACHE_HOME", "/xdg/cache"),
        ("XDG_DATA_HOME", "/xdg/data"),
    ])
    .unwrap();
    assert_eq!(c.cache_dir, PathBuf::from("/xdg/cache/strongroom"));
    assert_eq!(c.data_dir, PathBuf::from("/xdg/data/strongroom"));
    let text = "cache_dir = \"/from/file\"\n";
    let c = Config::from_toml_str(text, None, &[("STRONGROOM_CACHE_DIR", "/from/env")]).unwrap();
    assert_eq!(c.cache_dir, PathBuf::from("/from/env"));
    let c = Config::from_toml_str(text, None, &[("HOME", "/home/u")]).unwrap();
    assert_eq!(c.cache_dir, PathBuf::from("/from/file"));
}

#[test]
fn django_email_settings() {
    let env = [
        (
            "BACKUP_ALERT_EMAIL",
            "ops@clinic.example, it@clinic.example",
        ),
        ("EMAIL_HOST", "smtp.gmail.com"),
        ("EMAIL_PORT", "587"),
        ("EMAIL_HOST_USER", "alerts@clinic.example"),
        ("EMAIL_HOST_PASSWORD", "app-password"),
        ("EMAIL_USE_TLS", "True"),
        ("DEFAULT_FROM_EMAIL", "Clinic <noreply@clinic.example>"),
    ];
    let c = Config::from_env(&env).unwrap();
    let e = c.notify.email.as_ref().unwrap();
    assert_eq!(e.to, ["ops@clinic.example", "it@clinic.example"]);
    assert_eq!(e.host, "smtp.gmail.com");
    assert_eq!(e.port, 587);
    assert_eq!(e.user.as_deref(), Some("alerts@clinic.example"));
    assert_eq!(e.password.as_ref().unwrap().expose(), "app-password");
    assert_eq!(e.tls, TlsMode::Starttls);
    assert_eq!(e.from, "Clinic <noreply@clinic.example>");

    // SSL means implicit TLS on 465 by default.
    let c = Config::from_env(&[
        ("BACKUP_ALERT_EMAIL", "ops@x.org"),
        ("EMAIL_HOST", "smtp.x.org"),
        ("EMAIL_USE_SSL", "1"),
    ])
    .unwrap();
    let e = c.notify.email.unwrap();
    assert_eq!((e.tls, e.port), (TlsMode::Tls, 465));

    // EMAIL_HOST alone is Django's plain SMTP.
    let c =
        Config::from_env(&[("BACKUP_ALERT_EMAIL", "ops@x.org"), ("EMAIL_HOST", "relay")]).unwrap();
    let e = c.notify.email.unwrap();
    assert_eq!((e.tls, e.port), (TlsMode::None, 25));
    assert_eq!(e.from, "strongroom@localhost");

    // No recipients: no e-mail, even with a host (the app's own mail settings).
    let c = Config::from_env(&[("EMAIL_HOST", "smtp.x.org")]).unwrap();
    assert!(c.notify.email.is_none());

    // The environment overrides the file.
    let text = "[notify.email]\nto = [\"file@x.org\"]\nhost = \"file-host\"\ntls = \"tls\"\n";
    let c = Config::from_toml_str(
        text,
        None,
        &[("EMAIL_HOST", "env-host"), ("EMAIL_USE_TLS", "false")],
    )
    .unwrap();
    let e = c.notify.email.unwrap();
    assert_eq!(e.to, ["file@x.org"]);
    assert_eq!(e.host, "env-host");
    assert_eq!((e.tls, e.port), (TlsMode::None, 25));
    let c = Config::from_toml_str(text, None, &[("BACKUP_ALERT_EMAIL", "env@x.org")]).unwrap();
    let e = c.notify.email.unwrap();
    assert_eq!(e.to, ["env@x.org"]);
    assert_eq!((e.tls, e.port), (TlsMode::Tls, 465));

    // Bad values name the variable.
    for (var, value) in [
        ("EMAIL_PORT", "five-eight-seven"),
        ("EMAIL_USE_TLS", "maybe"),
        ("BACKUP_ALERT_EMAIL", "not an address"),
        ("DEFAULT_FROM_EMAIL", "x\r\nBcc: victim@example.org"),
    ] {
        let mut env: HashMap<String, String> = HashMap::new();
        env.insert("BACKUP_ALERT_EMAIL".into(), "ops@x.org".into());
        env.insert(var.into(), value.into());
        let ps = match Config::from_env(&env) {
            Err(ConfigError::Invalid(ps)) => ps,
            other => panic!("{var}={value}: {other:?}"),
        };
        assert!(
            ps.iter()
                .any(|p| p.origin == Origin::Env { var: var.into() }),
            "{var}: {ps:?}"
        );
    }
    let ps = env_problems(
        "",
        &[
            ("BACKUP_ALERT_EMAIL", "ops@x.org"),
            ("EMAIL_USE_TLS", "true"),
            ("EMAIL_USE_SSL", "true"),
        ],
    );
    assert!(ps[0].1.contains("both true"), "{}", ps[0].1);
}

#[test]
fn empty_variables_are_unset() {
    let c = Config::from_env(&[
        ("DATABASE_URL", ""),
        ("STRONGROOM_REPO", ""),
        ("STRONGROOM_LISTEN", ""),
    ])
    .unwrap();
    assert!(c.databases.is_empty());
    assert!(c.repository.location.is_none());
}

#[test]
fn timezone_default_for_schedules() {
    let text = "[[media]]\nname = \"m\"\npath = \"/m\"\n[[schedule]]\nname = \"s\"\nkind = \"media\"\nwhen = \"daily 02:00\"\n";
    let c = Config::from_toml_str(text, None, &[("STRONGROOM_TIMEZONE", "Asia/Manila")]).unwrap();
    assert_eq!(c.schedules[0].timezone, "Asia/Manila");
    assert_eq!(c.schedules[0].schedule.timezone_name(), "Asia/Manila");
    let c = Config::from_toml_str(text, None, &[] as &[(&str, &str)]).unwrap();
    assert_eq!(c.schedules[0].timezone, "UTC");
    let c = Config::from_toml_str(
        &format!("timezone = \"Europe/Berlin\"\n{text}"),
        None,
        &[] as &[(&str, &str)],
    )
    .unwrap();
    assert_eq!(c.schedules[0].timezone, "Europe/Berlin");
    assert_eq!(c.schedules[0].kind, ScheduleKind::Media);
    let ps = env_problems("", &[("STRONGROOM_TIMEZONE", "Berlin")]);
    assert_eq!(ps[0].0, "STRONGROOM_TIMEZONE");
}

#[test]
fn process_env_is_an_env() {
    use strongroom_config::{Env, ProcessEnv};
    assert_eq!(ProcessEnv.var("STRONGROOM_TEST_SURELY_UNSET_7F3A"), None);
    let map: HashMap<String, String> =
        [("A".to_string(), "1".to_string()), ("B".into(), "".into())].into();
    assert_eq!(map.var("A").as_deref(), Some("1"));
    assert_eq!(map.var("B"), None);
}

#[test]
fn a_master_key_file_instead_of_a_password() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("strongroom.toml");
    std::fs::write(
        &cfg,
        "[repository]\npath = \"repo\"\nmaster_key_file = \"master.key\"\n",
    )
    .unwrap();
    let none = [] as [(&str, &str); 0];
    let c = Config::load(Some(&cfg), &none).unwrap();
    // Relative to the configuration file, like password_file.
    assert_eq!(
        c.repository.master_key_file(),
        Some(dir.path().join("master.key").as_path())
    );
    // No password to read (nothing to prompt for either: the caller reads the key file).
    assert_eq!(c.repository.password(&none).unwrap(), None);
    // It is shown (a path, not a secret) by `config check`.
    let shown = toml::to_string(&c.repository).unwrap();
    assert!(shown.contains("master_key_file"), "{shown}");
    // Not together with a password.
    let text = "[repository]\npath = \"/r\"\npassword = \"a\"\nmaster_key_file = \"/k\"\n";
    let e = Config::from_toml_str(text, None, &none)
        .unwrap_err()
        .to_string();
    assert!(e.contains("repository.master_key_file"), "{e}");
    assert!(e.contains("only one of"), "{e}");
    // An empty path is refused.
    let text = "[repository]\npath = \"/r\"\nmaster_key_file = \" \"\n";
    let e = Config::from_toml_str(text, None, &none)
        .unwrap_err()
        .to_string();
    assert!(e.contains("the path is empty"), "{e}");
}
