//! The validated configuration: what the rest of Strongroom reads. Every default is applied
//! and every cross-reference checked by the time a value of these types exists.
//!
//! `Serialize` writes the effective configuration in the file's own layout with every secret
//! as `***` (that is what `strongroom config check` prints). What it must not do: expose a
//! secret through `Debug`, `Display` or `Serialize`, or hold a value that was not validated.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::ser::SerializeStruct;
use serde::{Serialize, Serializer};
use strongroom_scheduler::Schedule;

use crate::env::Env;
use crate::error::ConfigError;
use crate::raw::{NotifyEvent, ScheduleKind, TlsMode};
use crate::secret::{REDACTED, Secret};
use crate::url::{DatabaseUrl, RepoLocation, WebhookUrl};
use crate::values::{IpNet, format_duration};

pub(crate) fn ser_path<S: Serializer>(p: &Path, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&p.to_string_lossy())
}

pub(crate) fn ser_duration<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_duration(*d))
}

fn ser_display<T: std::fmt::Display, S: Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&v.to_string())
}

/// The whole, validated configuration.
#[derive(Debug, Clone, Serialize)]
pub struct Config {
    /// The file it was read from, if any.
    #[serde(skip)]
    pub file: Option<PathBuf>,
    /// Where the catalog lives.
    pub catalog: CatalogConfig,
    /// Strongroom's own state (the default catalog when the repository is not local).
    #[serde(serialize_with = "ser_path")]
    pub data_dir: PathBuf,
    /// Caches (e.g. the position of `verify --read-data-subset`).
    #[serde(serialize_with = "ser_path")]
    pub cache_dir: PathBuf,
    /// The default time zone of schedules.
    pub timezone: String,
    /// The repository.
    pub repository: RepositoryConfig,
    /// Database sources (`[[database]]`, or `DATABASE_URL`).
    #[serde(rename = "database")]
    pub databases: Vec<DatabaseSource>,
    /// Media folder sources (`[[media]]`, or `MEDIA_ROOT`).
    pub media: Vec<MediaSource>,
    /// Schedules.
    #[serde(rename = "schedule")]
    pub schedules: Vec<ScheduleConfig>,
    /// Notifications.
    pub notify: NotifyConfig,
    /// The HTTP server.
    pub server: ServerConfig,
    /// Job execution.
    pub jobs: JobsConfig,
}

/// Where the catalog lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CatalogConfig {
    /// A SQLite file (the default: beside a local repository, else in the data dir).
    Sqlite {
        /// The database file.
        path: PathBuf,
    },
    /// A PostgreSQL database (`catalog = "postgres://…"`).
    Postgres {
        /// Its URL (a secret; prints redacted).
        url: DatabaseUrl,
    },
}

impl Serialize for CatalogConfig {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            CatalogConfig::Sqlite { path } => {
                s.serialize_str(&format!("sqlite://{}", path.to_string_lossy()))
            }
            CatalogConfig::Postgres { url } => url.serialize(s),
        }
    }
}

/// How the repository password is obtained.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordSource {
    /// Not configured: the CLI prompts for it.
    None,
    /// Given in the file (`password`) or by `STRONGROOM_PASSWORD`.
    Inline(Secret),
    /// Read from a file (`password_file`, `STRONGROOM_PASSWORD_FILE`).
    File(PathBuf),
    /// Read from another environment variable (`password_env`).
    Env(String),
    /// No password: the repository's master key, from a file `strongroom key export-master`
    /// wrote (`master_key_file`).
    MasterKeyFile(PathBuf),
}

/// `[repository]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepositoryConfig {
    /// Where it is (`None` when neither the file nor `STRONGROOM_REPO` says).
    pub location: Option<RepoLocation>,
    /// How to get its password.
    pub password: PasswordSource,
}

impl RepositoryConfig {
    /// The master key file, when one is configured instead of a password.
    #[must_use]
    pub fn master_key_file(&self) -> Option<&std::path::Path> {
        match &self.password {
            PasswordSource::MasterKeyFile(p) => Some(p),
            _ => None,
        }
    }

    /// The password, read now from wherever it is configured; `Ok(None)` when none is
    /// configured (the caller may prompt) or a master key file is configured instead (see
    /// [`RepositoryConfig::master_key_file`]). A password file's trailing newline is dropped.
    pub fn password<E: Env + ?Sized>(&self, env: &E) -> Result<Option<Secret>, ConfigError> {
        match &self.password {
            PasswordSource::None | PasswordSource::MasterKeyFile(_) => Ok(None),
            PasswordSource::Inline(s) => Ok(Some(s.clone())),
            PasswordSource::Env(var) => env
                .var(var)
                .map(|v| Some(Secret::new(v)))
                .ok_or_else(|| ConfigError::PasswordEnvUnset(var.clone())),
            PasswordSource::File(path) => {
                let text =
                    std::fs::read_to_string(path).map_err(|source| ConfigError::PasswordFile {
                        path: path.clone(),
                        source,
                    })?;
                let trimmed = text.strip_suffix('\n').unwrap_or(&text);
                let trimmed = trimmed.strip_suffix('\r').unwrap_or(trimmed);
                if trimmed.is_empty() {
                    return Err(ConfigError::EmptyPasswordFile(path.clone()));
                }
                Ok(Some(Secret::new(trimmed)))
            }
        }
    }
}

impl Serialize for RepositoryConfig {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("repository", 2)?;
        match &self.location {
            Some(RepoLocation::Path(p)) => st.serialize_field("path", &p.to_string_lossy())?,
            Some(loc @ RepoLocation::S3 { .. }) => st.serialize_field("url", &loc.to_string())?,
            None => st.skip_field("path")?,
        }
        match &self.password {
            PasswordSource::None => st.skip_field("password")?,
            PasswordSource::Inline(_) => st.serialize_field("password", REDACTED)?,
            PasswordSource::File(p) => st.serialize_field("password_file", &p.to_string_lossy())?,
            PasswordSource::Env(v) => st.serialize_field("password_env", v)?,
            PasswordSource::MasterKeyFile(p) => {
                st.serialize_field("master_key_file", &p.to_string_lossy())?;
            }
        }
        st.end()
    }
}

/// A database source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DatabaseSource {
    /// Its name (unique among all sources).
    pub name: String,
    /// Where it is (a secret; prints redacted).
    pub url: DatabaseUrl,
    /// The environment variable the URL came from (`DATABASE_URL`, or `url_env`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url_env: Option<String>,
    /// A server for test restores ("drills"); default: the same server as `url`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drill_url: Option<DatabaseUrl>,
    /// PostgreSQL: also dump roles and other globals (`pg_dumpall --globals-only`) where
    /// permitted. Always false for other engines.
    pub globals: bool,
    /// PostgreSQL: dump with `pg_dump -Fd -j N` instead of streaming one archive.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parallel_jobs: Option<u32>,
}

/// A media folder source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MediaSource {
    /// Its name (unique among all sources).
    pub name: String,
    /// The folder (absolute).
    #[serde(serialize_with = "ser_path")]
    pub path: PathBuf,
    /// Glob patterns of paths (relative to the folder) to leave out.
    pub exclude: Vec<String>,
    /// The environment variable the path came from (`MEDIA_ROOT`).
    #[serde(skip)]
    pub path_env: Option<String>,
}

/// A retention policy (each `keep_*` as in `strongroom forget`). The newest verified backup
/// of a source is always kept, whatever the policy says.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Retention {
    /// Keep the newest N backups.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_last: Option<u32>,
    /// Keep the newest backup of each of the last N days that have one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_daily: Option<u32>,
    /// … of each of the last N weeks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_weekly: Option<u32>,
    /// … of each of the last N months.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_monthly: Option<u32>,
    /// … of each of the last N years.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_yearly: Option<u32>,
    /// Keep every backup younger than N days.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_days: Option<u32>,
}

/// A schedule.
#[derive(Debug, Clone, Serialize)]
pub struct ScheduleConfig {
    /// Its name (unique among schedules).
    pub name: String,
    /// What it runs.
    pub kind: ScheduleKind,
    /// The sources it covers (resolved: when the file names none, every source the kind
    /// applies to; empty for `prune`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<String>,
    /// Whether `sources` was given explicitly (else it follows the configured sources).
    #[serde(skip)]
    pub sources_explicit: bool,
    /// The schedule as written.
    pub when: String,
    /// Its IANA time zone.
    pub timezone: String,
    /// The parsed schedule.
    #[serde(skip)]
    pub schedule: Schedule,
    /// Whether it runs.
    pub enabled: bool,
    /// Re-read and check what each backup wrote before calling it successful.
    pub verify: bool,
    /// Prove database parts by a test restore.
    pub test_restore: bool,
    /// How late a missed run may still be made up at start-up.
    #[serde(serialize_with = "ser_duration")]
    pub catch_up_window: Duration,
    /// `verify` schedules: the percentage of pack data to read on each run (rotating).
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "ser_percent"
    )]
    pub read_data_subset: Option<u8>,
    /// Retention applied after each successful run (backup kinds only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retention: Option<Retention>,
}

fn ser_percent<S: Serializer>(p: &Option<u8>, s: S) -> Result<S::Ok, S::Error> {
    match p {
        Some(p) => s.serialize_str(&format!("{p}%")),
        None => s.serialize_none(),
    }
}

/// `[notify]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NotifyConfig {
    /// Which events are sent.
    pub on: Vec<NotifyEvent>,
    /// E-mail, when there is at least one recipient.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<EmailConfig>,
    /// Webhooks.
    pub webhooks: Vec<WebhookConfig>,
}

/// `[notify.email]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EmailConfig {
    /// Recipients.
    pub to: Vec<String>,
    /// Sender.
    pub from: String,
    /// SMTP server.
    pub host: String,
    /// SMTP port.
    pub port: u16,
    /// SMTP user.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// SMTP password.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<Secret>,
    /// Transport security.
    pub tls: TlsMode,
}

/// `[[notify.webhooks]]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WebhookConfig {
    /// Where to POST (a secret; prints as `https://host/***`).
    pub url: WebhookUrl,
    /// Key for the HMAC-SHA256 signature header, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<Secret>,
}

/// `[server]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServerConfig {
    /// The address to listen on.
    #[serde(serialize_with = "ser_display")]
    pub listen: SocketAddr,
    /// The address users reach the dashboard at (for links in notifications).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_url: Option<String>,
    /// Proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<IpNet>,
    /// A session ends after this long without a request.
    #[serde(serialize_with = "ser_duration")]
    pub session_idle_timeout: Duration,
    /// A session ends this long after login, however active.
    #[serde(serialize_with = "ser_duration")]
    pub session_absolute_timeout: Duration,
}

/// `[jobs.time_limit]`: the longest each kind of job may run before it is cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TimeLimits {
    /// Backups (full, database, media).
    #[serde(serialize_with = "ser_duration")]
    pub backup: Duration,
    /// Verification and test restores.
    #[serde(serialize_with = "ser_duration")]
    pub verify: Duration,
    /// Restores.
    #[serde(serialize_with = "ser_duration")]
    pub restore: Duration,
    /// Prune.
    #[serde(serialize_with = "ser_duration")]
    pub prune: Duration,
}

/// `[jobs]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct JobsConfig {
    /// Jobs run at the same time by one instance.
    pub workers: u32,
    /// A running job's heartbeat interval.
    pub heartbeat_seconds: u64,
    /// A job whose heartbeat is older than this is taken as interrupted.
    pub heartbeat_timeout_seconds: u64,
    /// Default catch-up window of schedules.
    #[serde(serialize_with = "ser_duration")]
    pub catch_up_window: Duration,
    /// Time limits.
    pub time_limit: TimeLimits,
}

impl JobsConfig {
    /// The heartbeat interval.
    pub fn heartbeat(&self) -> Duration {
        Duration::from_secs(self.heartbeat_seconds)
    }

    /// The heartbeat timeout.
    pub fn heartbeat_timeout(&self) -> Duration {
        Duration::from_secs(self.heartbeat_timeout_seconds)
    }
}

impl Default for JobsConfig {
    fn default() -> Self {
        JobsConfig {
            workers: 1,
            heartbeat_seconds: 10,
            heartbeat_timeout_seconds: 60,
            catch_up_window: Duration::from_secs(6 * 3600),
            time_limit: TimeLimits {
                backup: Duration::from_secs(12 * 3600),
                verify: Duration::from_secs(12 * 3600),
                restore: Duration::from_secs(12 * 3600),
                prune: Duration::from_secs(6 * 3600),
            },
        }
    }
}

/// A reference to one configured source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceRef<'a> {
    /// A database.
    Database(&'a DatabaseSource),
    /// A media folder.
    Media(&'a MediaSource),
}

impl Config {
    /// The repository's location, or a clear error when none is configured.
    pub fn repository_location(&self) -> Result<&RepoLocation, ConfigError> {
        self.repository
            .location
            .as_ref()
            .ok_or(ConfigError::NoRepository)
    }

    /// A source by name.
    pub fn source(&self, name: &str) -> Option<SourceRef<'_>> {
        self.databases
            .iter()
            .find(|d| d.name == name)
            .map(SourceRef::Database)
            .or_else(|| {
                self.media
                    .iter()
                    .find(|m| m.name == name)
                    .map(SourceRef::Media)
            })
    }

    /// A schedule by name.
    pub fn schedule(&self, name: &str) -> Option<&ScheduleConfig> {
        self.schedules.iter().find(|s| s.name == name)
    }

    /// The effective configuration as TOML, every secret as `***` (for
    /// `strongroom config check`).
    pub fn redacted_toml(&self) -> String {
        // Serializing these plain types cannot fail; keep a readable fallback all the same.
        let mut text = toml::to_string_pretty(self)
            .unwrap_or_else(|e| format!("# the configuration could not be printed: {e}\n"));
        if !text.ends_with('\n') {
            text.push('\n');
        }
        text
    }
}

impl std::fmt::Display for Config {
    /// The redacted TOML of [`Config::redacted_toml`].
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted_toml())
    }
}
