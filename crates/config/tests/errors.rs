//! Bad configuration files: every error names the key path and the line (and column), and
//! all problems of a file are reported together.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

use std::path::Path;

use strongroom_config::{Config, ConfigError, Problem};

const NO_ENV: [(&str, &str); 0] = [];

fn problems(text: &str) -> Vec<Problem> {
    match Config::from_toml_str(text, Some(Path::new("strongroom.toml")), &NO_ENV) {
        Ok(c) => panic!("expected problems, got a config:\n{c}"),
        Err(ConfigError::Invalid(p)) => p,
        Err(e) => panic!("expected Invalid, got {e}"),
    }
}

/// Assert that the file has a problem at `key` on `line`, and that its message names both.
fn assert_problem(text: &str, key: &str, line: usize, needle: &str) {
    let ps = problems(text);
    let found = ps.iter().find(|p| p.key == key);
    let Some(p) = found else {
        panic!("no problem at `{key}` in:\n{text}\ngot: {ps:#?}");
    };
    assert_eq!(p.line(), Some(line), "line of `{key}`: {p}");
    let msg = p.to_string();
    assert!(
        msg.contains(&format!("strongroom.toml:{line}:")),
        "message should name line {line}: {msg}"
    );
    assert!(msg.contains(key), "message should name `{key}`: {msg}");
    assert!(
        msg.contains(needle),
        "message should contain `{needle}`: {msg}"
    );
    // The whole error names them too.
    let whole = ConfigError::Invalid(ps.clone()).to_string();
    assert!(
        whole.contains(key) && whole.contains(&format!(":{line}:")),
        "{whole}"
    );
}

const BASE: &str = r#"[repository]
path = "/srv/backups/repo"

[[database]]
name = "clinic"
url = "postgres://backup@db.internal:5432/clinic"

[[media]]
name = "uploads"
path = "/srv/app/media"
"#;
// BASE has 10 lines; text appended starts at line 12 after the blank line below.

fn with(extra: &str) -> String {
    format!("{BASE}\n{extra}")
}

#[test]
fn the_base_file_is_valid() {
    Config::from_toml_str(BASE, None, &NO_ENV).unwrap();
}

#[test]
fn table_of_bad_files() {
    let sched = |body: &str| {
        with(&format!(
            "[[schedule]]\nname = \"nightly\"\nkind = \"full\"\nwhen = \"daily 02:00\"\n{body}"
        ))
    };
    // (file, key path, line, a word of the message)
    let cases: Vec<(String, &str, usize, &str)> = vec![
        ("bogus = 1\n".into(), "bogus", 1, "unknown field `bogus`"),
        (
            "[repository]\npath = \"/r\"\npasword = \"x\"\n".into(),
            "repository.pasword",
            3,
            "unknown field `pasword`",
        ),
        (
            sched("retention = { keep_dayly = 7 }\n"),
            "schedule[0].retention.keep_dayly",
            16,
            "unknown field `keep_dayly`",
        ),
        (
            sched("enabled = \"yes\"\n"),
            "schedule[0].enabled",
            16,
            "invalid type: string, expected a boolean",
        ),
        (
            with("[notify.email]\nto = [\"ops@example.org\"]\nport = \"587\"\n"),
            "notify.email.port",
            14,
            "invalid type",
        ),
        (
            with("[notify.email]\nto = [\"ops@example.org\"]\nport = 70000\n"),
            "notify.email.port",
            14,
            "expected u16",
        ),
        (
            sched("\n[[schedule]]\nkind = \"full\"\nwhen = \"daily 03:00\"\n"),
            "schedule[1]",
            17,
            "missing field `name`",
        ),
        (
            sched(
                "\n[[schedule]]\nname = \"x\"\nkind = \"full\"\nwhen = \"daily 03:00\"\nfoo = 1\n",
            ),
            "schedule[1].foo",
            21,
            "unknown field `foo`",
        ),
        (
            "[[database]]\nname = \"a\"\nurl = \"oracle://db/x\"\n".into(),
            "database[0].url",
            3,
            "unsupported URL scheme `oracle`",
        ),
        (
            "[[database]]\nname = \"a\"\nurl = \"postgres://u@db:99999/x\"\n".into(),
            "database[0].url",
            3,
            "port",
        ),
        (
            "[[database]]\nname = \"a\"\nurl = \"postgres://u@db:5432\"\n".into(),
            "database[0].url",
            3,
            "names no database",
        ),
        (
            "[[database]]\nname = \"a\"\nurl = \"sqlite://db.sqlite3\"\n".into(),
            "database[0].url",
            3,
            "absolute path",
        ),
        (
            "[[database]]\nname = \"a\"\n".into(),
            "database[0]",
            1,
            "needs `url`",
        ),
        (
            sched(
                "\n[[schedule]]\nname = \"hourly\"\nkind = \"database\"\nwhen = \"0 25 * * *\"\n",
            ),
            "schedule[1].when",
            20,
            "hour",
        ),
        (
            sched("timezone = \"Europe/Berln\"\n"),
            "schedule[0].timezone",
            16,
            "unknown time zone",
        ),
        (
            sched("when2 = 1\n"),
            "schedule[0].when2",
            16,
            "unknown field",
        ),
        (
            with("[[media]]\nname = \"clinic\"\npath = \"/x\"\n"),
            "media[1].name",
            13,
            "already used by database[0] (line 5)",
        ),
        (
            sched("\n[[schedule]]\nname = \"nightly\"\nkind = \"media\"\nwhen = \"daily 03:00\"\n"),
            "schedule[1].name",
            18,
            "already used by schedule[0] (line 13)",
        ),
        (
            sched("sources = [\"clinic\", \"uplods\"]\n"),
            "schedule[0].sources[1]",
            16,
            "no source is named `uplods` (configured sources: clinic, uploads)",
        ),
        (
            with(
                "[[schedule]]\nname = \"db\"\nkind = \"database\"\nwhen = \"daily 02:00\"\nsources = [\"uploads\"]\n",
            ),
            "schedule[0].sources[0]",
            16,
            "databases only",
        ),
        (
            with("[[schedule]]\nname = \"x\"\nkind = \"fulll\"\nwhen = \"daily 02:00\"\n"),
            "schedule[0].kind",
            14,
            "unknown variant `fulll`",
        ),
        (
            sched("retention = { keep_daily = 0 }\n"),
            "schedule[0].retention",
            16,
            "keeps nothing",
        ),
        (
            with(
                "[[schedule]]\nname = \"p\"\nkind = \"prune\"\nwhen = \"@weekly\"\nsources = [\"clinic\"]\n",
            ),
            "schedule[0].sources",
            16,
            "takes no sources",
        ),
        (
            with(
                "[[schedule]]\nname = \"p\"\nkind = \"prune\"\nwhen = \"@weekly\"\nretention = { keep_last = 3 }\n",
            ),
            "schedule[0].retention",
            16,
            "backup schedules",
        ),
        (
            with(
                "[[schedule]]\nname = \"m\"\nkind = \"media\"\nwhen = \"@daily\"\ntest_restore = true\n",
            ),
            "schedule[0].test_restore",
            16,
            "test restores prove databases",
        ),
        (
            with(
                "[[schedule]]\nname = \"v\"\nkind = \"media\"\nwhen = \"@daily\"\nread_data_subset = \"10%\"\n",
            ),
            "schedule[0].read_data_subset",
            16,
            "verify schedules only",
        ),
        (
            with(
                "[[schedule]]\nname = \"v\"\nkind = \"verify\"\nwhen = \"@daily\"\nread_data_subset = \"0%\"\n",
            ),
            "schedule[0].read_data_subset",
            16,
            "percentage",
        ),
        (
            with("[jobs]\ncatch_up_window = \"6 hours\"\n"),
            "jobs.catch_up_window",
            13,
            "not a duration",
        ),
        (
            with("[jobs]\nheartbeat_seconds = 30\nheartbeat_timeout_seconds = 40\n"),
            "jobs.heartbeat_timeout_seconds",
            14,
            "at least twice",
        ),
        (
            with("[jobs.time_limit]\nbackup = \"0s\"\n"),
            "jobs.time_limit.backup",
            13,
            "longer than zero",
        ),
        (
            with("[server]\ntrusted_proxies = [\"10.0.0.0/8\", \"10.0.0.1/8\"]\n"),
            "server.trusted_proxies[1]",
            13,
            "host bits",
        ),
        (
            with("[server]\nlisten = \"localhost:80\"\n"),
            "server.listen",
            13,
            "127.0.0.1:8080",
        ),
        (
            with("[server]\nsession_idle_timeout = \"1d\"\nsession_absolute_timeout = \"12h\"\n"),
            "server.session_idle_timeout",
            13,
            "cannot be longer",
        ),
        (
            "[repository]\npath = \"/r\"\npassword = \"a\"\npassword_file = \"/p\"\n".into(),
            "repository.password_file",
            4,
            "only one of",
        ),
        (
            "[repository]\npath = \"/r\"\nurl = \"s3://bucket\"\n".into(),
            "repository.url",
            3,
            "not both",
        ),
        (
            "[repository]\nurl = \"ftp://host/x\"\n".into(),
            "repository.url",
            2,
            "unsupported URL scheme `ftp`",
        ),
        (
            "catalog = \"mysql://u@h/db\"\n".into(),
            "catalog",
            1,
            "SQLite",
        ),
        (
            "[[database]]\nname = \"w\"\nurl = \"mysql://u@h/db\"\nglobals = true\n".into(),
            "database[0].globals",
            4,
            "PostgreSQL only",
        ),
        (
            "[[database]]\nname = \"w\"\nurl = \"sqlite:///x.db\"\nparallel_jobs = 2\n".into(),
            "database[0].parallel_jobs",
            4,
            "PostgreSQL only",
        ),
        (
            "[[database]]\nname = \"w\"\nurl = \"postgres://h/db\"\ndrill_url = \"mysql://h/db\"\n"
                .into(),
            "database[0].drill_url",
            4,
            "same engine",
        ),
        (
            "[[database]]\nname = \"w\"\nurl_env = \"NOT_SET_ANYWHERE\"\n".into(),
            "database[0].url_env",
            3,
            "NOT_SET_ANYWHERE is not set",
        ),
        (
            "[[database]]\nname = \"bad name!\"\nurl = \"postgres://h/db\"\n".into(),
            "database[0].name",
            2,
            "not a valid name",
        ),
        (
            "[[media]]\nname = \"m\"\npath = \"/m\"\nexclude = [\"*.tmp\", \"[abc\"]\n".into(),
            "media[0].exclude[1]",
            4,
            "unclosed `[`",
        ),
        (
            with("[notify.email]\nto = [\"not-an-address\"]\n"),
            "notify.email.to[0]",
            13,
            "not an e-mail address",
        ),
        (
            with("[notify.email]\nhost = \"smtp.example.org\"\n"),
            "notify.email.to",
            12,
            "no recipients",
        ),
        (
            with("[[notify.webhooks]]\nurl = \"ftp://hooks.example.org/x\"\n"),
            "notify.webhooks[0].url",
            13,
            "unsupported URL scheme `ftp`",
        ),
        (
            with("[notify]\non = [\"failure\", \"sometimes\"]\n"),
            "notify.on[1]",
            13,
            "unknown variant `sometimes`",
        ),
        (
            "timezone = \"Mars/Base\"\n".into(),
            "timezone",
            1,
            "unknown time zone",
        ),
        (
            "[[schedule]]\nname = \"n\"\nkind = \"database\"\nwhen = \"daily 02:00\"\n".into(),
            "schedule[0].sources",
            1,
            "none is configured",
        ),
    ];
    for (text, key, line, needle) in &cases {
        assert_problem(text, key, *line, needle);
    }
}

#[test]
fn syntax_errors_give_line_and_column() {
    let ps = problems("[repository]\npath = \"/r\"\n[[schedule]\n");
    assert_eq!(ps.len(), 1);
    assert_eq!(ps[0].line(), Some(3));
    assert!(
        ps[0].to_string().starts_with("strongroom.toml:3:"),
        "{}",
        ps[0]
    );
    let ps = problems("a = \"unterminated\n");
    assert_eq!(ps[0].line(), Some(1));
    let ps = problems("[repository]\npath = \"/a\"\npath = \"/b\"\n");
    assert_eq!(ps[0].line(), Some(3));
    assert!(ps[0].to_string().contains("duplicate key"), "{}", ps[0]);
}

#[test]
fn columns_count_characters() {
    // `é` is two bytes; the column is in characters.
    let text = "[[media]]\nname = \"m\"\npath = \"/médïa\"\nexclude = [\"é\", \"[x\"]\n";
    let ps = problems(text);
    let p = ps.iter().find(|p| p.key == "media[0].exclude[1]").unwrap();
    assert_eq!(p.line(), Some(4));
    assert_eq!(p.column(), Some(17));
    assert!(
        p.to_string()
            .starts_with("strongroom.toml:4:17: media[0].exclude[1]: "),
        "{p}"
    );
    // A bad cron expression points at the value.
    let text = "[[media]]\nname = \"m\"\npath = \"/m\"\n[[schedule]]\nname = \"s\"\nkind = \"media\"\nwhen   =   \"61 * * * *\"\n";
    let ps = problems(text);
    assert_eq!(ps[0].key, "schedule[0].when");
    assert_eq!((ps[0].line(), ps[0].column()), (Some(7), Some(12)));
}

#[test]
fn all_problems_are_reported_together() {
    let text = with(
        "[[schedule]]\nname = \"a\"\nkind = \"full\"\nwhen = \"daily 25:00\"\n\n[[schedule]]\nname = \"b\"\nkind = \"full\"\nwhen = \"daily 02:00\"\ntimezone = \"Nowhere/Land\"\nsources = [\"ghost\"]\n",
    );
    let ps = problems(&text);
    let keys: Vec<&str> = ps.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "schedule[0].when",
            "schedule[1].timezone",
            "schedule[1].sources[0]"
        ]
    );
    let lines: Vec<Option<usize>> = ps.iter().map(Problem::line).collect();
    assert_eq!(lines, [Some(15), Some(21), Some(22)]);
    let msg = ConfigError::Invalid(ps).to_string();
    assert!(
        msg.starts_with("invalid configuration (3 problems):"),
        "{msg}"
    );
}

#[test]
fn mistyped_values_are_not_quoted() {
    // A password given as a number, a port given a password-like string: neither value is
    // echoed in the message.
    let ps = problems("[repository]\npath = \"/r\"\npassword = 987654321\n");
    let msg = ps[0].to_string();
    assert_eq!(ps[0].key, "repository.password");
    assert!(!msg.contains("987654321"), "{msg}");
    assert!(msg.contains("expected a string"), "{msg}");
    let ps = problems(&with(
        "[notify.email]\nto = [\"a@b.c\"]\nport = \"hunter2-secret\"\n",
    ));
    let msg = ps[0].to_string();
    assert!(!msg.contains("hunter2"), "{msg}");
}

#[test]
fn unreadable_file_is_a_read_error() {
    let env: [(&str, &str); 0] = [];
    let e = Config::load(Some(Path::new("/nonexistent/strongroom.toml")), &env).unwrap_err();
    assert!(matches!(e, ConfigError::Read { .. }), "{e}");
    assert!(
        e.to_string().contains("/nonexistent/strongroom.toml"),
        "{e}"
    );
}
