//! Strongroom's configuration: one TOML file (`strongroom.toml`) plus environment variables
//! in the platform's conventions, validated into a [`Config`].
//!
//! - [`Config::load`] reads the file named by its argument or by `STRONGROOM_CONFIG` (none:
//!   the environment alone), applies the environment (`DATABASE_URL`, `MEDIA_ROOT`,
//!   `BACKUP_ALERT_EMAIL`, `EMAIL_*`, `DEFAULT_FROM_EMAIL`, `PORT`, `STRONGROOM_*`) and the
//!   defaults, and checks everything. Every problem names its key path (`schedule[1].when`)
//!   and its line and column in the file, or the environment variable; all problems are
//!   reported at once.
//! - Unknown keys are errors. Cron expressions and time zones are checked with the
//!   scheduler's own parser, so what passes here runs there.
//! - Secrets (repository and SMTP passwords, database URLs, webhook URLs and keys) are held
//!   in types whose `Debug`, `Display` and `Serialize` print `***`;
//!   [`Config::redacted_toml`] (and `Display`) print the effective configuration for
//!   `strongroom config check` with no secret in it.
//! - [`setup_defaults`] is what `strongroom setup` creates for a platform app.
//!
//! Every key is documented, with a full example, in `docs/configuration.md`.
//!
//! What this crate must not do: open a network connection or a database, start a runtime,
//! write files, or read any file but the configuration and (on request) a password file.

mod build;
mod env;
mod error;
mod model;
mod raw;
mod secret;
mod setup;
mod url;
mod values;

use std::path::Path;

pub use build::{DATABASE_URL_SOURCE, MEDIA_ROOT_SOURCE};
pub use env::{Env, ProcessEnv};
pub use error::{ConfigError, Origin, Problem};
pub use model::{
    CatalogConfig, Config, DatabaseSource, EmailConfig, JobsConfig, MediaSource, NotifyConfig,
    PasswordSource, RepositoryConfig, Retention, ScheduleConfig, ServerConfig, SourceRef,
    TimeLimits, WebhookConfig,
};
pub use raw::{NotifyEvent, ScheduleKind, TlsMode};
pub use secret::{REDACTED, Secret};
pub use setup::{Setup, setup_defaults};
pub use url::{DatabaseUrl, Engine, RepoLocation, UrlError, WebhookUrl};
pub use values::{IpNet, check_glob, format_duration, parse_duration};

/// The file name Strongroom's documentation uses.
pub const DEFAULT_FILE_NAME: &str = "strongroom.toml";

impl Config {
    /// Load the configuration: the file at `path`, else the one named by `STRONGROOM_CONFIG`,
    /// else none (the environment alone), plus the environment and the defaults.
    pub fn load<E: Env + ?Sized>(path: Option<&Path>, env: &E) -> Result<Config, ConfigError> {
        let from_env = env.var("STRONGROOM_CONFIG");
        let path = path.or(from_env.as_deref().map(Path::new));
        match path {
            None => build::build("", None, env),
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                    path: p.to_path_buf(),
                    source,
                })?;
                build::build(&text, Some(p), env)
            }
        }
    }

    /// Build the configuration from TOML text (`path`, if given, names it in messages and
    /// anchors relative paths), plus the environment and the defaults.
    pub fn from_toml_str<E: Env + ?Sized>(
        text: &str,
        path: Option<&Path>,
        env: &E,
    ) -> Result<Config, ConfigError> {
        build::build(text, path, env)
    }

    /// Build the configuration from the environment alone.
    pub fn from_env<E: Env + ?Sized>(env: &E) -> Result<Config, ConfigError> {
        build::build("", None, env)
    }
}
