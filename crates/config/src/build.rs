//! From the file model and the environment to a validated [`Config`]: environment overrides,
//! defaults, and every check that involves more than one value.
//!
//! Precedence, highest first: `STRONGROOM_*` variables and the platform's variables (which
//! override the same settings in the file), the file, the defaults. `DATABASE_URL` and
//! `MEDIA_ROOT` add a source only when the file configures none of that kind. All problems
//! are collected, so one `config check` lists them all. What it must not do: read any file
//! but the configuration (password files are read on demand by
//! [`crate::RepositoryConfig::password`]), or put a secret in a problem's message.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use strongroom_scheduler::{Schedule, ScheduleError, parse_timezone};
use toml::Spanned;

use crate::env::Env;
use crate::error::{ConfigError, Origin, Problem, key_path_at, line_col, scrub_message};
use crate::model::{
    CatalogConfig, Config, DatabaseSource, EmailConfig, JobsConfig, MediaSource, NotifyConfig,
    PasswordSource, RepositoryConfig, Retention, ScheduleConfig, ServerConfig, WebhookConfig,
};
use crate::raw::{
    NotifyEvent, RawConfig, RawEmail, RawJobs, RawNotify, RawRetention, RawSchedule, RawServer,
    ScheduleKind, TlsMode,
};
use crate::secret::Secret;
use crate::url::{DatabaseUrl, Engine, RepoLocation};
use crate::values::{check_email, check_glob, check_name};

/// The name of the database source `DATABASE_URL` adds.
pub const DATABASE_URL_SOURCE: &str = "default";
/// The name of the media source `MEDIA_ROOT` adds.
pub const MEDIA_ROOT_SOURCE: &str = "media";

/// Which kind a source is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SourceKind {
    Database,
    Media,
}

/// Where a name was first defined (for "already used by …" messages).
#[derive(Debug, Clone)]
struct Defined {
    kind: SourceKind,
    what: String,
}

struct Builder<'a, E: Env + ?Sized> {
    text: &'a str,
    path: Option<&'a Path>,
    base_dir: Option<PathBuf>,
    env: &'a E,
    problems: Vec<Problem>,
}

impl<E: Env + ?Sized> Builder<'_, E> {
    /// A problem at a position in the file.
    fn at(&mut self, span: Range<usize>, key: impl Into<String>, message: impl Into<String>) {
        let (line, column) = line_col(self.text, span.start);
        self.problems.push(Problem {
            origin: Origin::File {
                path: self.path.map(Path::to_path_buf),
                line,
                column,
            },
            key: key.into(),
            message: message.into(),
        });
    }

    /// A problem in an environment variable.
    fn env_problem(&mut self, var: &str, message: impl Into<String>) {
        self.problems.push(Problem {
            origin: Origin::Env {
                var: var.to_string(),
            },
            key: var.to_string(),
            message: message.into(),
        });
    }

    fn var(&self, name: &str) -> Option<String> {
        self.env.var(name)
    }

    /// A path from the file: relative paths are relative to the file's folder.
    fn file_path(&self, p: &str) -> PathBuf {
        let p = PathBuf::from(p);
        match &self.base_dir {
            Some(base) if p.is_relative() => base.join(p),
            _ => p,
        }
    }
}

/// Parse the file text and build the configuration.
pub(crate) fn build<E: Env + ?Sized>(
    text: &str,
    path: Option<&Path>,
    env: &E,
) -> Result<Config, ConfigError> {
    let raw: RawConfig = match toml::from_str(text) {
        Ok(raw) => raw,
        Err(e) => return Err(ConfigError::Invalid(vec![serde_problem(text, path, &e)])),
    };
    let base_dir = path.map(|p| match p.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    });
    let mut b = Builder {
        text,
        path,
        base_dir,
        env,
        problems: Vec::new(),
    };
    let config = assemble(&mut b, raw);
    if b.problems.is_empty() {
        Ok(config)
    } else {
        // File order first (stable for problems on the same spot), then the environment.
        b.problems.sort_by_key(|p| match &p.origin {
            Origin::File { line, column, .. } => (0, *line, *column),
            Origin::Env { .. } => (1, 0, 0),
            Origin::Whole { .. } => (2, 0, 0),
        });
        Err(ConfigError::Invalid(b.problems))
    }
}

/// Turn a toml/serde error into a problem with key path, line and column.
fn serde_problem(text: &str, path: Option<&Path>, e: &toml::de::Error) -> Problem {
    let message = scrub_message(e.message());
    match e.span() {
        Some(span) => {
            let (line, column) = line_col(text, span.start);
            Problem {
                origin: Origin::File {
                    path: path.map(Path::to_path_buf),
                    line,
                    column,
                },
                key: key_path_at(text, &span).unwrap_or_default(),
                message,
            }
        }
        None => Problem {
            origin: Origin::Whole {
                path: path.map(Path::to_path_buf),
            },
            key: String::new(),
            message,
        },
    }
}

fn assemble<E: Env + ?Sized>(b: &mut Builder<'_, E>, raw: RawConfig) -> Config {
    let data_dir = data_dir(b, &raw);
    let cache_dir = cache_dir(b, &raw, &data_dir);
    let timezone = default_timezone(b, &raw);
    let repository = repository(b, &raw);
    let catalog = catalog(b, &raw, &repository, &data_dir);
    let mut names: HashMap<String, Defined> = HashMap::new();
    let databases = databases(b, &raw, &mut names);
    let media = media(b, &raw, &mut names);
    let jobs = jobs(b, raw.jobs.as_ref());
    let schedules = schedules(
        b,
        &raw.schedule,
        &names,
        &databases,
        &media,
        &timezone,
        &jobs,
    );
    let notify = notify(b, raw.notify.as_ref());
    let server = server(b, raw.server.as_ref());
    Config {
        file: b.path.map(Path::to_path_buf),
        catalog,
        data_dir,
        cache_dir,
        timezone,
        repository,
        databases,
        media,
        schedules,
        notify,
        server,
        jobs,
    }
}

fn data_dir<E: Env + ?Sized>(b: &mut Builder<'_, E>, raw: &RawConfig) -> PathBuf {
    if let Some(d) = b.var("STRONGROOM_DATA_DIR") {
        return PathBuf::from(d);
    }
    if let Some(d) = &raw.data_dir {
        if d.get_ref().trim().is_empty() {
            b.at(d.span(), "data_dir", "the folder is empty");
        }
        return b.file_path(d.get_ref());
    }
    if let Some(x) = b.var("XDG_DATA_HOME") {
        return PathBuf::from(x).join("strongroom");
    }
    if let Some(h) = b.var("HOME") {
        return PathBuf::from(h).join(".local/share/strongroom");
    }
    PathBuf::from("/var/lib/strongroom")
}

fn cache_dir<E: Env + ?Sized>(b: &mut Builder<'_, E>, raw: &RawConfig, data_dir: &Path) -> PathBuf {
    if let Some(d) = b.var("STRONGROOM_CACHE_DIR") {
        return PathBuf::from(d);
    }
    if let Some(d) = &raw.cache_dir {
        if d.get_ref().trim().is_empty() {
            b.at(d.span(), "cache_dir", "the folder is empty");
        }
        return b.file_path(d.get_ref());
    }
    if let Some(x) = b.var("XDG_CACHE_HOME") {
        return PathBuf::from(x).join("strongroom");
    }
    if let Some(h) = b.var("HOME") {
        return PathBuf::from(h).join(".cache/strongroom");
    }
    data_dir.join("cache")
}

fn default_timezone<E: Env + ?Sized>(b: &mut Builder<'_, E>, raw: &RawConfig) -> String {
    if let Some(tz) = b.var("STRONGROOM_TIMEZONE") {
        return match parse_timezone(&tz) {
            Ok(t) => t.name().to_string(),
            Err(e) => {
                b.env_problem("STRONGROOM_TIMEZONE", e.to_string());
                "UTC".into()
            }
        };
    }
    if let Some(tz) = &raw.timezone {
        return match parse_timezone(tz.get_ref()) {
            Ok(t) => t.name().to_string(),
            Err(e) => {
                b.at(tz.span(), "timezone", e.to_string());
                "UTC".into()
            }
        };
    }
    "UTC".into()
}

fn valid_var_name(name: &str) -> bool {
    name.chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn repository<E: Env + ?Sized>(b: &mut Builder<'_, E>, raw: &RawConfig) -> RepositoryConfig {
    let mut location = None;
    let mut password = PasswordSource::None;
    if let Some(r) = &raw.repository {
        let r = r.get_ref();
        match (&r.path, &r.url) {
            (Some(_), Some(u)) => b.at(
                u.span(),
                "repository.url",
                "set either `path` (a local folder) or `url`, not both",
            ),
            (Some(p), None) => {
                if p.get_ref().trim().is_empty() {
                    b.at(p.span(), "repository.path", "the path is empty");
                } else {
                    location = Some(RepoLocation::Path(b.file_path(p.get_ref())));
                }
            }
            (None, Some(u)) => match RepoLocation::parse_url(u.get_ref()) {
                Ok(l) => location = Some(l),
                Err(e) => b.at(u.span(), "repository.url", e.to_string()),
            },
            (None, None) => {}
        }
        let mut given: Vec<(&str, Range<usize>)> = Vec::new();
        if let Some(p) = &r.password {
            given.push(("password", p.span()));
            if p.get_ref().is_empty() {
                b.at(p.span(), "repository.password", "the password is empty");
            }
            password = PasswordSource::Inline(p.get_ref().clone());
        }
        if let Some(f) = &r.password_file {
            given.push(("password_file", f.span()));
            if f.get_ref().trim().is_empty() {
                b.at(f.span(), "repository.password_file", "the path is empty");
            }
            password = PasswordSource::File(b.file_path(f.get_ref()));
        }
        if let Some(v) = &r.password_env {
            given.push(("password_env", v.span()));
            if !valid_var_name(v.get_ref()) {
                b.at(
                    v.span(),
                    "repository.password_env",
                    format!(
                        "`{}` is not an environment variable name (letters, digits and `_`, e.g. \"BACKUP_PASSWORD\")",
                        v.get_ref()
                    ),
                );
            }
            password = PasswordSource::Env(v.get_ref().clone());
        }
        if let Some(f) = &r.master_key_file {
            given.push(("master_key_file", f.span()));
            if f.get_ref().trim().is_empty() {
                b.at(f.span(), "repository.master_key_file", "the path is empty");
            }
            password = PasswordSource::MasterKeyFile(b.file_path(f.get_ref()));
        }
        if given.len() > 1 {
            let (key, span) = given[1].clone();
            b.at(
                span,
                format!("repository.{key}"),
                "set only one of `password`, `password_file`, `password_env` and `master_key_file`",
            );
        }
    }
    if let Some(repo) = b.var("STRONGROOM_REPO") {
        if repo.contains("://") {
            match RepoLocation::parse_url(&repo) {
                Ok(l) => location = Some(l),
                Err(e) => b.env_problem("STRONGROOM_REPO", e.to_string()),
            }
        } else {
            location = Some(RepoLocation::Path(PathBuf::from(repo)));
        }
    }
    // As in the CLI: a password file wins over a password in the environment.
    if let Some(f) = b.var("STRONGROOM_PASSWORD_FILE") {
        password = PasswordSource::File(PathBuf::from(f));
    } else if let Some(p) = b.var("STRONGROOM_PASSWORD") {
        password = PasswordSource::Inline(Secret::new(p));
    }
    RepositoryConfig { location, password }
}

fn catalog<E: Env + ?Sized>(
    b: &mut Builder<'_, E>,
    raw: &RawConfig,
    repository: &RepositoryConfig,
    data_dir: &Path,
) -> CatalogConfig {
    const MYSQL: &str = "the catalog runs on SQLite (`sqlite:///path`) or PostgreSQL (`postgres://…`); MySQL/MariaDB is supported as a backup source, not as the catalog";
    let from_url = |url: DatabaseUrl| match url.engine() {
        Engine::Sqlite => Ok(CatalogConfig::Sqlite {
            path: url.sqlite_path().unwrap_or_default(),
        }),
        Engine::Postgres => Ok(CatalogConfig::Postgres { url }),
        Engine::Mysql => Err(MYSQL),
    };
    let default = || match &repository.location {
        Some(RepoLocation::Path(p)) if p.file_name().is_some() => {
            let mut name = p.file_name().unwrap_or_default().to_os_string();
            name.push(".catalog.sqlite3");
            CatalogConfig::Sqlite {
                path: p.with_file_name(name),
            }
        }
        _ => CatalogConfig::Sqlite {
            path: data_dir.join("catalog.sqlite3"),
        },
    };
    if let Some(c) = b.var("STRONGROOM_CATALOG") {
        return match DatabaseUrl::parse(&c).map_err(|e| e.to_string()) {
            Ok(url) => match from_url(url) {
                Ok(c) => c,
                Err(m) => {
                    b.env_problem("STRONGROOM_CATALOG", m);
                    default()
                }
            },
            Err(m) => {
                b.env_problem("STRONGROOM_CATALOG", m);
                default()
            }
        };
    }
    if let Some(c) = &raw.catalog {
        return match from_url(c.get_ref().clone()) {
            Ok(c) => c,
            Err(m) => {
                b.at(c.span(), "catalog", m);
                default()
            }
        };
    }
    default()
}

/// Record a source name; report a duplicate.
fn define<E: Env + ?Sized>(
    b: &mut Builder<'_, E>,
    names: &mut HashMap<String, Defined>,
    name: &str,
    kind: SourceKind,
    what: String,
    span: Option<Range<usize>>,
    key: &str,
) {
    if let Some(first) = names.get(name) {
        let msg = format!(
            "the name `{name}` is already used by {}; source names must be unique",
            first.what
        );
        match span {
            Some(span) => b.at(span, key, msg),
            None => b.env_problem(key, msg),
        }
        return;
    }
    names.insert(name.to_string(), Defined { kind, what });
}

fn databases<E: Env + ?Sized>(
    b: &mut Builder<'_, E>,
    raw: &RawConfig,
    names: &mut HashMap<String, Defined>,
) -> Vec<DatabaseSource> {
    let mut out = Vec::new();
    for (i, d) in raw.database.iter().enumerate() {
        let header = d.span();
        let d = d.get_ref();
        let key = format!("database[{i}]");
        let name = d.name.get_ref().clone();
        match check_name(&name) {
            Ok(()) => {
                let (line, _) = line_col(b.text, d.name.span().start);
                define(
                    b,
                    names,
                    &name,
                    SourceKind::Database,
                    format!("{key} (line {line})"),
                    Some(d.name.span()),
                    &format!("{key}.name"),
                );
            }
            Err(m) => b.at(d.name.span(), format!("{key}.name"), m),
        }
        let mut url_env = None;
        let url = match (&d.url, &d.url_env) {
            (Some(_), Some(v)) => {
                b.at(
                    v.span(),
                    format!("{key}.url_env"),
                    "set either `url` or `url_env`, not both",
                );
                None
            }
            (Some(u), None) => Some(u.get_ref().clone()),
            (None, Some(v)) => {
                let var = v.get_ref();
                if !valid_var_name(var) {
                    b.at(
                        v.span(),
                        format!("{key}.url_env"),
                        format!("`{var}` is not an environment variable name"),
                    );
                    None
                } else {
                    match b.var(var) {
                        None => {
                            b.at(
                                v.span(),
                                format!("{key}.url_env"),
                                format!("the environment variable {var} is not set (or is empty)"),
                            );
                            None
                        }
                        Some(text) => match DatabaseUrl::parse(&text) {
                            Ok(u) => {
                                url_env = Some(var.clone());
                                Some(u)
                            }
                            Err(e) => {
                                b.at(
                                    v.span(),
                                    format!("{key}.url_env"),
                                    format!("the URL in {var} is not valid: {e}"),
                                );
                                None
                            }
                        },
                    }
                }
            }
            (None, None) => {
                b.at(
                    header.clone(),
                    key.clone(),
                    "a database needs `url` (e.g. \"postgres://backup@db.internal:5432/app\") or `url_env` (the name of a variable holding it)",
                );
                None
            }
        };
        let Some(url) = url else { continue };
        let engine = url.engine();
        if let Some(drill) = &d.drill_url {
            if engine == Engine::Sqlite {
                b.at(
                    drill.span(),
                    format!("{key}.drill_url"),
                    "not used for SQLite: test restores of SQLite go to a temporary file",
                );
            } else if drill.get_ref().engine() != engine {
                b.at(
                    drill.span(),
                    format!("{key}.drill_url"),
                    format!(
                        "the drill server must run the same engine as `url` ({engine}), not {}",
                        drill.get_ref().engine()
                    ),
                );
            }
        }
        let globals = match &d.globals {
            Some(g) if *g.get_ref() && engine != Engine::Postgres => {
                b.at(
                    g.span(),
                    format!("{key}.globals"),
                    format!("roles and other globals exist for PostgreSQL only, not {engine}"),
                );
                false
            }
            Some(g) => *g.get_ref(),
            None => engine == Engine::Postgres,
        };
        if let Some(p) = &d.parallel_jobs {
            if engine != Engine::Postgres {
                b.at(
                    p.span(),
                    format!("{key}.parallel_jobs"),
                    format!(
                        "parallel dumps (`pg_dump -j`) exist for PostgreSQL only, not {engine}"
                    ),
                );
            } else if !(1..=32).contains(p.get_ref()) {
                b.at(
                    p.span(),
                    format!("{key}.parallel_jobs"),
                    "must be a number from 1 to 32",
                );
            }
        }
        out.push(DatabaseSource {
            name,
            url,
            url_env,
            drill_url: d.drill_url.as_ref().map(|u| u.get_ref().clone()),
            globals,
            parallel_jobs: d.parallel_jobs.as_ref().map(|p| *p.get_ref()),
        });
    }
    if raw.database.is_empty()
        && let Some(text) = b.var("DATABASE_URL")
    {
        match DatabaseUrl::parse(&text) {
            Ok(url) => {
                define(
                    b,
                    names,
                    DATABASE_URL_SOURCE,
                    SourceKind::Database,
                    "the database from DATABASE_URL".into(),
                    None,
                    "DATABASE_URL",
                );
                let globals = url.engine() == Engine::Postgres;
                out.push(DatabaseSource {
                    name: DATABASE_URL_SOURCE.into(),
                    url,
                    url_env: Some("DATABASE_URL".into()),
                    drill_url: None,
                    globals,
                    parallel_jobs: None,
                });
            }
            Err(e) => b.env_problem("DATABASE_URL", format!("not a valid database URL: {e}")),
        }
    }
    out
}

fn media<E: Env + ?Sized>(
    b: &mut Builder<'_, E>,
    raw: &RawConfig,
    names: &mut HashMap<String, Defined>,
) -> Vec<MediaSource> {
    let mut out = Vec::new();
    for (i, m) in raw.media.iter().enumerate() {
        let m = m.get_ref();
        let key = format!("media[{i}]");
        let name = m.name.get_ref().clone();
        match check_name(&name) {
            Ok(()) => {
                let (line, _) = line_col(b.text, m.name.span().start);
                define(
                    b,
                    names,
                    &name,
                    SourceKind::Media,
                    format!("{key} (line {line})"),
                    Some(m.name.span()),
                    &format!("{key}.name"),
                );
            }
            Err(msg) => b.at(m.name.span(), format!("{key}.name"), msg),
        }
        if m.path.get_ref().trim().is_empty() {
            b.at(m.path.span(), format!("{key}.path"), "the path is empty");
        }
        for (j, pattern) in m.exclude.iter().enumerate() {
            if let Err(msg) = check_glob(pattern.get_ref()) {
                b.at(pattern.span(), format!("{key}.exclude[{j}]"), msg);
            }
        }
        out.push(MediaSource {
            name,
            path: b.file_path(m.path.get_ref()),
            exclude: m.exclude.iter().map(|p| p.get_ref().clone()).collect(),
            path_env: None,
        });
    }
    if raw.media.is_empty()
        && let Some(root) = b.var("MEDIA_ROOT")
    {
        let path = PathBuf::from(&root);
        if path.is_absolute() {
            define(
                b,
                names,
                MEDIA_ROOT_SOURCE,
                SourceKind::Media,
                "the media folder from MEDIA_ROOT".into(),
                None,
                "MEDIA_ROOT",
            );
            out.push(MediaSource {
                name: MEDIA_ROOT_SOURCE.into(),
                path,
                exclude: Vec::new(),
                path_env: Some("MEDIA_ROOT".into()),
            });
        } else {
            b.env_problem(
                "MEDIA_ROOT",
                format!("`{root}` is not an absolute path (e.g. /app/media)"),
            );
        }
    }
    out
}

fn jobs<E: Env + ?Sized>(b: &mut Builder<'_, E>, raw: Option<&RawJobs>) -> JobsConfig {
    let mut jobs = JobsConfig::default();
    let Some(r) = raw else { return jobs };
    if let Some(w) = &r.workers {
        if (1..=64).contains(w.get_ref()) {
            jobs.workers = *w.get_ref();
        } else {
            b.at(w.span(), "jobs.workers", "must be a number from 1 to 64");
        }
    }
    if let Some(h) = &r.heartbeat_seconds {
        if (1..=3600).contains(h.get_ref()) {
            jobs.heartbeat_seconds = *h.get_ref();
        } else {
            b.at(
                h.span(),
                "jobs.heartbeat_seconds",
                "must be a number of seconds from 1 to 3600",
            );
        }
    }
    if let Some(t) = &r.heartbeat_timeout_seconds {
        jobs.heartbeat_timeout_seconds = *t.get_ref();
        if *t.get_ref() < 2 * jobs.heartbeat_seconds {
            b.at(
                t.span(),
                "jobs.heartbeat_timeout_seconds",
                format!(
                    "must be at least twice heartbeat_seconds ({}), or a slow heartbeat would mark a live job as interrupted",
                    jobs.heartbeat_seconds
                ),
            );
        }
    } else if jobs.heartbeat_timeout_seconds < 2 * jobs.heartbeat_seconds {
        jobs.heartbeat_timeout_seconds = 6 * jobs.heartbeat_seconds;
    }
    if let Some(c) = &r.catch_up_window {
        jobs.catch_up_window = c.get_ref().0;
    }
    if let Some(t) = &r.time_limit {
        for (name, value, slot) in [
            ("backup", &t.backup, &mut jobs.time_limit.backup),
            ("verify", &t.verify, &mut jobs.time_limit.verify),
            ("restore", &t.restore, &mut jobs.time_limit.restore),
            ("prune", &t.prune, &mut jobs.time_limit.prune),
        ] {
            if let Some(v) = value {
                if v.get_ref().0.is_zero() {
                    b.at(
                        v.span(),
                        format!("jobs.time_limit.{name}"),
                        "a time limit must be longer than zero, e.g. \"6h\"",
                    );
                } else {
                    *slot = v.get_ref().0;
                }
            }
        }
    }
    jobs
}

fn retention<E: Env + ?Sized>(
    b: &mut Builder<'_, E>,
    r: &Spanned<RawRetention>,
    key: &str,
) -> Retention {
    let raw = r.get_ref();
    let policy = Retention {
        keep_last: raw.keep_last,
        keep_daily: raw.keep_daily,
        keep_weekly: raw.keep_weekly,
        keep_monthly: raw.keep_monthly,
        keep_yearly: raw.keep_yearly,
        keep_days: raw.keep_days,
    };
    let keeps_something = [
        policy.keep_last,
        policy.keep_daily,
        policy.keep_weekly,
        policy.keep_monthly,
        policy.keep_yearly,
        policy.keep_days,
    ]
    .iter()
    .any(|k| k.is_some_and(|n| n > 0));
    if !keeps_something {
        b.at(
            r.span(),
            key,
            "this policy keeps nothing; set at least one keep_* above zero, e.g. { keep_daily = 7, keep_weekly = 4 }",
        );
    }
    policy
}

fn parse_percent(text: &str) -> Option<u8> {
    let t = text.trim();
    let t = t.strip_suffix('%').unwrap_or(t).trim();
    t.parse::<u8>().ok().filter(|p| (1..=100).contains(p))
}

#[allow(clippy::too_many_arguments)]
fn schedules<E: Env + ?Sized>(
    b: &mut Builder<'_, E>,
    raw: &[Spanned<RawSchedule>],
    names: &HashMap<String, Defined>,
    databases: &[DatabaseSource],
    media: &[MediaSource],
    default_tz: &str,
    jobs: &JobsConfig,
) -> Vec<ScheduleConfig> {
    let mut out = Vec::new();
    let mut seen: HashMap<String, String> = HashMap::new();
    let mut known: Vec<&str> = names.keys().map(String::as_str).collect();
    known.sort_unstable();
    let known_list = if known.is_empty() {
        "none is configured".to_string()
    } else {
        format!("configured sources: {}", known.join(", "))
    };
    for (i, s) in raw.iter().enumerate() {
        let header = s.span();
        let s = s.get_ref();
        let key = format!("schedule[{i}]");
        let name = s.name.get_ref().clone();
        match check_name(&name) {
            Ok(()) => {
                let (line, _) = line_col(b.text, s.name.span().start);
                if let Some(first) = seen.get(&name) {
                    b.at(
                        s.name.span(),
                        format!("{key}.name"),
                        format!(
                            "the name `{name}` is already used by {first}; schedule names must be unique"
                        ),
                    );
                } else {
                    seen.insert(name.clone(), format!("{key} (line {line})"));
                }
            }
            Err(m) => b.at(s.name.span(), format!("{key}.name"), m),
        }
        let kind = *s.kind.get_ref();
        let backup_kind = matches!(
            kind,
            ScheduleKind::Full | ScheduleKind::Database | ScheduleKind::Media
        );

        // When and where.
        let timezone = match &s.timezone {
            Some(tz) => match parse_timezone(tz.get_ref()) {
                Ok(t) => Some(t.name().to_string()),
                Err(e) => {
                    b.at(tz.span(), format!("{key}.timezone"), e.to_string());
                    None
                }
            },
            None => Some(default_tz.to_string()),
        };
        let schedule =
            timezone
                .as_ref()
                .and_then(|tz| match Schedule::parse(s.when.get_ref(), tz) {
                    Ok(sch) => Some(sch),
                    Err(ScheduleError::UnknownTimeZone { .. }) => None,
                    Err(e) => {
                        b.at(s.when.span(), format!("{key}.when"), e.to_string());
                        None
                    }
                });

        // Sources.
        let (sources, explicit) = match &s.sources {
            Some(list) => {
                if kind == ScheduleKind::Prune {
                    b.at(
                        list.span(),
                        format!("{key}.sources"),
                        "a prune schedule works on the whole repository and takes no sources",
                    );
                }
                let mut picked: Vec<String> = Vec::new();
                for (j, src) in list.get_ref().iter().enumerate() {
                    let n = src.get_ref();
                    let skey = format!("{key}.sources[{j}]");
                    match names.get(n) {
                        None => b.at(
                            src.span(),
                            skey,
                            format!("no source is named `{n}` ({known_list})"),
                        ),
                        Some(def) => {
                            let wrong = match (kind, def.kind) {
                                (ScheduleKind::Database, SourceKind::Media) => {
                                    Some("a database schedule takes databases only")
                                }
                                (ScheduleKind::Media, SourceKind::Database) => {
                                    Some("a media schedule takes media folders only")
                                }
                                _ => None,
                            };
                            if let Some(w) = wrong {
                                b.at(src.span(), skey, format!("`{n}` is {}; {w}", def.what));
                            } else if picked.contains(n) {
                                b.at(src.span(), skey, format!("`{n}` is listed twice"));
                            } else {
                                picked.push(n.clone());
                            }
                        }
                    }
                }
                if list.get_ref().is_empty() && kind != ScheduleKind::Prune {
                    b.at(
                        list.span(),
                        format!("{key}.sources"),
                        "the list is empty; leave `sources` out to cover every source",
                    );
                }
                (picked, true)
            }
            None => {
                let dbs = databases.iter().map(|d| d.name.clone());
                let ms = media.iter().map(|m| m.name.clone());
                let all: Vec<String> = match kind {
                    ScheduleKind::Full => dbs.chain(ms).collect(),
                    ScheduleKind::Database => dbs.collect(),
                    ScheduleKind::Media => ms.collect(),
                    ScheduleKind::Verify => dbs.collect(),
                    ScheduleKind::Prune => Vec::new(),
                };
                if all.is_empty() && backup_kind {
                    let what = match kind {
                        ScheduleKind::Database => "a database ([[database]] or DATABASE_URL)",
                        ScheduleKind::Media => "a media folder ([[media]] or MEDIA_ROOT)",
                        _ => {
                            "a database or media folder ([[database]], [[media]], DATABASE_URL or MEDIA_ROOT)"
                        }
                    };
                    b.at(
                        header.clone(),
                        format!("{key}.sources"),
                        format!(
                            "a {} backup needs {what}, and none is configured",
                            kind.name()
                        ),
                    );
                }
                (all, false)
            }
        };

        // Options that only some kinds take.
        let verify = match &s.verify {
            Some(v) if *v.get_ref() && !backup_kind => {
                b.at(
                    v.span(),
                    format!("{key}.verify"),
                    format!(
                        "`verify` applies to backup schedules (full, database, media), not {}",
                        kind.name()
                    ),
                );
                false
            }
            Some(v) => *v.get_ref(),
            None => false,
        };
        let test_restore = match &s.test_restore {
            Some(t) if *t.get_ref() => {
                if matches!(kind, ScheduleKind::Media | ScheduleKind::Prune) {
                    b.at(
                        t.span(),
                        format!("{key}.test_restore"),
                        format!(
                            "test restores prove databases; a {} schedule has none",
                            kind.name()
                        ),
                    );
                    false
                } else if !sources
                    .iter()
                    .any(|n| databases.iter().any(|d| &d.name == n))
                {
                    b.at(
                        t.span(),
                        format!("{key}.test_restore"),
                        "test_restore needs a database among the schedule's sources",
                    );
                    false
                } else {
                    true
                }
            }
            _ => false,
        };
        let retention = s.retention.as_ref().and_then(|r| {
            if backup_kind {
                Some(retention(b, r, &format!("{key}.retention")))
            } else {
                b.at(
                    r.span(),
                    format!("{key}.retention"),
                    format!(
                        "retention belongs on backup schedules (full, database, media), not {}",
                        kind.name()
                    ),
                );
                None
            }
        });
        let read_data_subset = s.read_data_subset.as_ref().and_then(|p| {
            if kind != ScheduleKind::Verify {
                b.at(
                    p.span(),
                    format!("{key}.read_data_subset"),
                    "read_data_subset applies to verify schedules only",
                );
                return None;
            }
            let parsed = parse_percent(p.get_ref());
            if parsed.is_none() {
                b.at(
                    p.span(),
                    format!("{key}.read_data_subset"),
                    format!(
                        "`{}` is not a percentage from 1% to 100% (e.g. \"10%\")",
                        p.get_ref()
                    ),
                );
            }
            parsed
        });
        let catch_up_window = s
            .catch_up_window
            .as_ref()
            .map_or(jobs.catch_up_window, |c| c.get_ref().0);

        if let (Some(schedule), Some(timezone)) = (schedule, timezone) {
            out.push(ScheduleConfig {
                name,
                kind,
                sources,
                sources_explicit: explicit,
                when: s.when.get_ref().trim().to_string(),
                timezone,
                schedule,
                enabled: s.enabled.unwrap_or(true),
                verify,
                test_restore,
                catch_up_window,
                read_data_subset,
                retention,
            });
        }
    }
    out
}

fn parse_bool(text: &str) -> Option<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" => Some(false),
        _ => None,
    }
}

fn notify<E: Env + ?Sized>(b: &mut Builder<'_, E>, raw: Option<&RawNotify>) -> NotifyConfig {
    let mut on = vec![
        NotifyEvent::Failure,
        NotifyEvent::Warning,
        NotifyEvent::Recovery,
        NotifyEvent::Health,
    ];
    if let Some(list) = raw.and_then(|n| n.on.as_ref()) {
        on = Vec::new();
        for e in list {
            if !on.contains(e) {
                on.push(*e);
            }
        }
    }
    let email = email(b, raw.and_then(|n| n.email.as_ref()));
    let mut webhooks = Vec::new();
    for (i, w) in raw
        .map(|n| n.webhooks.as_slice())
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let w = w.get_ref();
        if let Some(s) = &w.secret
            && s.get_ref().is_empty()
        {
            b.at(
                s.span(),
                format!("notify.webhooks[{i}].secret"),
                "the secret is empty; leave it out to send unsigned requests",
            );
        }
        webhooks.push(WebhookConfig {
            url: w.url.get_ref().clone(),
            secret: w.secret.as_ref().map(|s| s.get_ref().clone()),
        });
    }
    NotifyConfig {
        on,
        email,
        webhooks,
    }
}

fn email<E: Env + ?Sized>(
    b: &mut Builder<'_, E>,
    raw: Option<&Spanned<RawEmail>>,
) -> Option<EmailConfig> {
    let empty = RawEmail::default();
    let file = raw.map_or(&empty, |r| r.get_ref());

    // Recipients.
    let mut to: Vec<String> = Vec::new();
    if let Some(list) = b.var("BACKUP_ALERT_EMAIL") {
        for addr in list.split(',').map(str::trim).filter(|a| !a.is_empty()) {
            match check_email(addr) {
                Ok(()) => to.push(addr.to_string()),
                Err(m) => b.env_problem("BACKUP_ALERT_EMAIL", m),
            }
        }
    } else if let Some(list) = &file.to {
        for (i, addr) in list.iter().enumerate() {
            match check_email(addr.get_ref()) {
                Ok(()) => to.push(addr.get_ref().clone()),
                Err(m) => b.at(addr.span(), format!("notify.email.to[{i}]"), m),
            }
        }
    }

    // Sender.
    let from = if let Some(f) = b.var("DEFAULT_FROM_EMAIL") {
        if let Err(m) = check_email(&f) {
            b.env_problem("DEFAULT_FROM_EMAIL", m);
        }
        f
    } else if let Some(f) = &file.from {
        if let Err(m) = check_email(f.get_ref()) {
            b.at(f.span(), "notify.email.from", m);
        }
        f.get_ref().clone()
    } else {
        "strongroom@localhost".to_string()
    };

    // Server and security.
    let host_from_env = b.var("EMAIL_HOST");
    let host = host_from_env
        .clone()
        .or_else(|| file.host.as_ref().map(|h| h.get_ref().clone()))
        .unwrap_or_else(|| "localhost".to_string());
    if host.trim().is_empty() || host.chars().any(char::is_whitespace) {
        match (&host_from_env, &file.host) {
            (Some(_), _) => b.env_problem("EMAIL_HOST", "not a host name"),
            (None, Some(h)) => b.at(h.span(), "notify.email.host", "not a host name"),
            _ => {}
        }
    }
    let env_tls = b.var("EMAIL_USE_TLS");
    let env_ssl = b.var("EMAIL_USE_SSL");
    let mut tls = file
        .tls
        .as_ref()
        .map_or(TlsMode::Starttls, |t| *t.get_ref());
    if host_from_env.is_some() && env_tls.is_none() && env_ssl.is_none() && file.tls.is_none() {
        // Django's meaning of EMAIL_HOST alone: plain SMTP.
        tls = TlsMode::None;
    }
    let flag = |b: &mut Builder<'_, E>, var: &str, v: Option<String>| match v {
        None => None,
        Some(v) => match parse_bool(&v) {
            Some(x) => Some(x),
            None => {
                b.env_problem(var, "expected True or False (or 1/0, yes/no, on/off)");
                None
            }
        },
    };
    let use_tls = flag(b, "EMAIL_USE_TLS", env_tls);
    let use_ssl = flag(b, "EMAIL_USE_SSL", env_ssl);
    match (use_tls, use_ssl) {
        (Some(true), Some(true)) => b.env_problem(
            "EMAIL_USE_SSL",
            "EMAIL_USE_TLS and EMAIL_USE_SSL are both true; set only one",
        ),
        (_, Some(true)) => tls = TlsMode::Tls,
        (Some(true), _) => tls = TlsMode::Starttls,
        (Some(false), _) | (_, Some(false)) => tls = TlsMode::None,
        (None, None) => {}
    }
    let port = match b.var("EMAIL_PORT") {
        Some(p) => match p.trim().parse::<u16>() {
            Ok(n) if n > 0 => n,
            _ => {
                b.env_problem("EMAIL_PORT", "not a port number from 1 to 65535");
                tls.default_port()
            }
        },
        None => match &file.port {
            Some(p) if *p.get_ref() == 0 => {
                b.at(
                    p.span(),
                    "notify.email.port",
                    "not a port number from 1 to 65535",
                );
                tls.default_port()
            }
            Some(p) => *p.get_ref(),
            None => tls.default_port(),
        },
    };
    let user = b
        .var("EMAIL_HOST_USER")
        .or_else(|| file.user.as_ref().map(|u| u.get_ref().clone()));
    let password = b
        .var("EMAIL_HOST_PASSWORD")
        .map(Secret::new)
        .or_else(|| file.password.as_ref().map(|p| p.get_ref().clone()));

    if to.is_empty() {
        if let Some(r) = raw {
            b.at(
                r.span(),
                "notify.email.to",
                "e-mail is configured but has no recipients; set `to = [\"ops@example.org\"]` or BACKUP_ALERT_EMAIL",
            );
        }
        return None;
    }
    Some(EmailConfig {
        to,
        from,
        host,
        port,
        user,
        password,
        tls,
    })
}

fn server<E: Env + ?Sized>(b: &mut Builder<'_, E>, raw: Option<&RawServer>) -> ServerConfig {
    const LISTEN_EXAMPLE: &str =
        "an address and port such as \"127.0.0.1:8080\", \"0.0.0.0:8080\" or \"[::1]:8080\"";
    let default_listen = SocketAddr::from(([127, 0, 0, 1], 8080));
    let empty = RawServer::default();
    let r = raw.unwrap_or(&empty);
    let listen = if let Some(l) = b.var("STRONGROOM_LISTEN") {
        l.trim().parse().unwrap_or_else(|_| {
            b.env_problem(
                "STRONGROOM_LISTEN",
                format!("`{l}` is not {LISTEN_EXAMPLE}"),
            );
            default_listen
        })
    } else if let Some(l) = &r.listen {
        l.get_ref().trim().parse().unwrap_or_else(|_| {
            b.at(
                l.span(),
                "server.listen",
                format!("`{}` is not {LISTEN_EXAMPLE}", l.get_ref()),
            );
            default_listen
        })
    } else if let Some(port) = b.var("PORT") {
        match port.trim().parse::<u16>() {
            Ok(p) => SocketAddr::from(([0, 0, 0, 0], p)),
            Err(_) => {
                b.env_problem("PORT", "not a port number from 0 to 65535");
                default_listen
            }
        }
    } else {
        default_listen
    };
    let public_url = r.public_url.as_ref().map(|u| {
        let text = u.get_ref().trim().to_string();
        let lower = text.to_ascii_lowercase();
        if !(lower.starts_with("https://") || lower.starts_with("http://"))
            || text.chars().any(char::is_whitespace)
        {
            b.at(
                u.span(),
                "server.public_url",
                "expected an http(s) address such as \"https://backups.example.org\"",
            );
        }
        text
    });
    let idle = r
        .session_idle_timeout
        .as_ref()
        .map_or(Duration::from_secs(30 * 60), |d| d.get_ref().0);
    let absolute = r
        .session_absolute_timeout
        .as_ref()
        .map_or(Duration::from_secs(12 * 3600), |d| d.get_ref().0);
    for (key, value) in [
        ("server.session_idle_timeout", &r.session_idle_timeout),
        (
            "server.session_absolute_timeout",
            &r.session_absolute_timeout,
        ),
    ] {
        if let Some(v) = value
            && v.get_ref().0.is_zero()
        {
            b.at(v.span(), key, "must be longer than zero, e.g. \"30m\"");
        }
    }
    if idle > absolute
        && let Some(v) = r
            .session_idle_timeout
            .as_ref()
            .or(r.session_absolute_timeout.as_ref())
    {
        b.at(
            v.span(),
            "server.session_idle_timeout",
            "the idle timeout cannot be longer than the absolute timeout",
        );
    }
    ServerConfig {
        listen,
        public_url,
        trusted_proxies: r
            .trusted_proxies
            .as_ref()
            .map(|l| l.iter().map(|n| *n.get_ref()).collect())
            .unwrap_or_default(),
        session_idle_timeout: idle,
        session_absolute_timeout: absolute,
    }
}
