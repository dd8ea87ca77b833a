//! The file model: what `strongroom.toml` may contain, exactly as written, with the position
//! of every value that is checked after parsing.
//!
//! Every table denies unknown keys. Values whose syntax stands alone (URLs, durations,
//! networks, enums) are checked while parsing, so their errors carry the value's position;
//! checks that need other keys (a cron expression and its time zone, names that must be
//! unique, sources a schedule refers to) happen in `build.rs` from the spans kept here.
//! What it must not do: apply defaults or the environment (that is `build.rs`), or hold a
//! secret in anything but a `Secret`-based type.

use serde::Deserialize;
use toml::Spanned;

use crate::secret::Secret;
use crate::url::{DatabaseUrl, WebhookUrl};
use crate::values::{HumanDuration, IpNet};

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    pub catalog: Option<Spanned<DatabaseUrl>>,
    pub data_dir: Option<Spanned<String>>,
    pub cache_dir: Option<Spanned<String>>,
    pub timezone: Option<Spanned<String>>,
    pub repository: Option<Spanned<RawRepository>>,
    #[serde(default)]
    pub database: Vec<Spanned<RawDatabase>>,
    #[serde(default)]
    pub media: Vec<Spanned<RawMedia>>,
    #[serde(default)]
    pub schedule: Vec<Spanned<RawSchedule>>,
    pub notify: Option<RawNotify>,
    pub server: Option<RawServer>,
    pub jobs: Option<RawJobs>,
}

/// `[repository]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRepository {
    pub path: Option<Spanned<String>>,
    pub url: Option<Spanned<String>>,
    pub password: Option<Spanned<Secret>>,
    pub password_file: Option<Spanned<String>>,
    pub password_env: Option<Spanned<String>>,
    pub master_key_file: Option<Spanned<String>>,
}

/// `[[database]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDatabase {
    pub name: Spanned<String>,
    pub url: Option<Spanned<DatabaseUrl>>,
    pub url_env: Option<Spanned<String>>,
    pub drill_url: Option<Spanned<DatabaseUrl>>,
    pub globals: Option<Spanned<bool>>,
    pub parallel_jobs: Option<Spanned<u32>>,
}

/// `[[media]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMedia {
    pub name: Spanned<String>,
    pub path: Spanned<String>,
    #[serde(default)]
    pub exclude: Vec<Spanned<String>>,
}

/// What a schedule runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ScheduleKind {
    /// Every selected database and media folder, as one recovery point.
    Full,
    /// Databases only.
    Database,
    /// Media folders only.
    Media,
    /// Verify the repository (and test-restore databases if asked).
    Verify,
    /// Prune data no longer referenced by any snapshot.
    Prune,
}

impl ScheduleKind {
    /// The kind's name as written in the file.
    pub fn name(self) -> &'static str {
        match self {
            ScheduleKind::Full => "full",
            ScheduleKind::Database => "database",
            ScheduleKind::Media => "media",
            ScheduleKind::Verify => "verify",
            ScheduleKind::Prune => "prune",
        }
    }
}

/// `[[schedule]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSchedule {
    pub name: Spanned<String>,
    pub kind: Spanned<ScheduleKind>,
    pub sources: Option<Spanned<Vec<Spanned<String>>>>,
    pub when: Spanned<String>,
    pub timezone: Option<Spanned<String>>,
    pub enabled: Option<bool>,
    pub verify: Option<Spanned<bool>>,
    pub test_restore: Option<Spanned<bool>>,
    pub retention: Option<Spanned<RawRetention>>,
    pub catch_up_window: Option<Spanned<HumanDuration>>,
    pub read_data_subset: Option<Spanned<String>>,
}

/// `retention = { … }`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRetention {
    pub keep_last: Option<u32>,
    pub keep_daily: Option<u32>,
    pub keep_weekly: Option<u32>,
    pub keep_monthly: Option<u32>,
    pub keep_yearly: Option<u32>,
    pub keep_days: Option<u32>,
}

/// When to send a notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NotifyEvent {
    /// A job failed.
    Failure,
    /// A job ended with warnings (e.g. unreadable files).
    Warning,
    /// A job succeeded (noisy; off by default).
    Success,
    /// A source's first success after a failure.
    Recovery,
    /// A health check crossed a threshold (disk, overdue backup, database unreachable).
    Health,
}

/// `[notify]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawNotify {
    pub on: Option<Vec<NotifyEvent>>,
    pub email: Option<Spanned<RawEmail>>,
    #[serde(default)]
    pub webhooks: Vec<Spanned<RawWebhook>>,
}

/// How SMTP is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// Plain SMTP (only for a relay on the same host or network).
    None,
    /// STARTTLS on the submission port (587 by default).
    Starttls,
    /// TLS from the first byte (implicit TLS, port 465 by default).
    Tls,
}

impl TlsMode {
    /// The usual port for the mode.
    pub fn default_port(self) -> u16 {
        match self {
            TlsMode::None => 25,
            TlsMode::Starttls => 587,
            TlsMode::Tls => 465,
        }
    }
}

/// `[notify.email]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawEmail {
    pub to: Option<Vec<Spanned<String>>>,
    pub from: Option<Spanned<String>>,
    pub host: Option<Spanned<String>>,
    pub port: Option<Spanned<u16>>,
    pub user: Option<Spanned<String>>,
    pub password: Option<Spanned<Secret>>,
    pub tls: Option<Spanned<TlsMode>>,
}

/// `[[notify.webhooks]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawWebhook {
    pub url: Spanned<WebhookUrl>,
    pub secret: Option<Spanned<Secret>>,
}

/// `[server]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawServer {
    pub listen: Option<Spanned<String>>,
    pub public_url: Option<Spanned<String>>,
    pub trusted_proxies: Option<Vec<Spanned<IpNet>>>,
    pub session_idle_timeout: Option<Spanned<HumanDuration>>,
    pub session_absolute_timeout: Option<Spanned<HumanDuration>>,
}

/// `[jobs]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawJobs {
    pub workers: Option<Spanned<u32>>,
    pub heartbeat_seconds: Option<Spanned<u64>>,
    pub heartbeat_timeout_seconds: Option<Spanned<u64>>,
    pub catch_up_window: Option<Spanned<HumanDuration>>,
    pub time_limit: Option<RawTimeLimits>,
}

/// `[jobs.time_limit]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTimeLimits {
    pub backup: Option<Spanned<HumanDuration>>,
    pub verify: Option<Spanned<HumanDuration>>,
    pub restore: Option<Spanned<HumanDuration>>,
    pub prune: Option<Spanned<HumanDuration>>,
}
