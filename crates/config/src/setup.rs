//! `strongroom setup`: the sensible default for a platform app, from `DATABASE_URL` and
//! `MEDIA_ROOT`: a daily full backup at 02:00 keeping 7 daily, 4 weekly and 12 monthly
//! backups, and a weekly verification with a test restore.
//!
//! The result is configuration data (TOML text to save, and the configuration it yields in
//! this environment) for the caller to print or write. What it must not do: write files, or
//! copy a secret into the text: the sources stay in the environment, where the platform keeps
//! them, and are read from there at run time.

use crate::build::{DATABASE_URL_SOURCE, MEDIA_ROOT_SOURCE, build};
use crate::env::Env;
use crate::error::ConfigError;
use crate::model::Config;

/// What `strongroom setup` creates.
#[derive(Debug, Clone)]
pub struct Setup {
    /// A complete `strongroom.toml` holding the schedules (no secrets).
    pub toml: String,
    /// The configuration that file yields with this environment.
    pub config: Config,
    /// One line per thing set up, for the command to print.
    pub summary: Vec<String>,
}

/// Build the default setup from the environment (`DATABASE_URL`, `MEDIA_ROOT`, and
/// optionally `STRONGROOM_TIMEZONE` for the schedules' time zone, default UTC).
pub fn setup_defaults<E: Env + ?Sized>(env: &E) -> Result<Setup, ConfigError> {
    let from_env = build("", None, env)?;
    if from_env.databases.is_empty() && from_env.media.is_empty() {
        return Err(ConfigError::NothingToSetUp);
    }
    let tz = from_env.timezone.clone();
    let has_database = !from_env.databases.is_empty();

    let mut sources_note = Vec::new();
    if has_database {
        sources_note.push(format!("DATABASE_URL (database \"{DATABASE_URL_SOURCE}\")"));
    }
    if !from_env.media.is_empty() {
        sources_note.push(format!("MEDIA_ROOT (media folder \"{MEDIA_ROOT_SOURCE}\")"));
    }
    let mut toml = String::new();
    toml.push_str("# strongroom.toml, written by `strongroom setup`.\n");
    toml.push_str(&format!(
        "# The sources come from the environment at run time: {}.\n",
        sources_note.join(" and ")
    ));
    toml.push_str("# No secret is written here. See docs/configuration.md for every key.\n\n");
    toml.push_str("[[schedule]]\n");
    toml.push_str("name = \"daily-full\"\n");
    toml.push_str("kind = \"full\"\n");
    toml.push_str("when = \"daily 02:00\"\n");
    toml.push_str(&format!("timezone = \"{tz}\"\n"));
    toml.push_str("verify = true\n");
    toml.push_str("retention = { keep_daily = 7, keep_weekly = 4, keep_monthly = 12 }\n\n");
    toml.push_str("[[schedule]]\n");
    toml.push_str("name = \"weekly-verify\"\n");
    toml.push_str("kind = \"verify\"\n");
    toml.push_str("when = \"weekly sun 04:00\"\n");
    toml.push_str(&format!("timezone = \"{tz}\"\n"));
    if has_database {
        toml.push_str("test_restore = true\n");
    }

    let config = build(&toml, None, env)?;
    let mut summary = Vec::new();
    for d in &config.databases {
        summary.push(format!(
            "database \"{}\" ({}) from {}",
            d.name,
            d.url,
            d.url_env.as_deref().unwrap_or("the configuration")
        ));
    }
    for m in &config.media {
        summary.push(format!(
            "media folder \"{}\" ({}) from {}",
            m.name,
            m.path.display(),
            m.path_env.as_deref().unwrap_or("the configuration")
        ));
    }
    summary.push(format!(
        "schedule \"daily-full\": full backup every day at 02:00 ({tz}), verified, keeping 7 daily, 4 weekly and 12 monthly backups"
    ));
    summary.push(if has_database {
        format!(
            "schedule \"weekly-verify\": repository verification with a test restore every Sunday at 04:00 ({tz})"
        )
    } else {
        format!("schedule \"weekly-verify\": repository verification every Sunday at 04:00 ({tz})")
    });
    Ok(Setup {
        toml,
        config,
        summary,
    })
}
