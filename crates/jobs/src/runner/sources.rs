//! The sources a runner backs up: named databases (each with its test-restore server) and
//! media folders, taken from the configuration (or built by the CLI from its flags), and the
//! choice of the ones a job names.
//!
//! What it must not do: print or store a database URL (they carry passwords; only names leave
//! this module), or open a connection.

use std::path::PathBuf;

use strongroom_config::Config;
use strongroom_sources::DatabaseSource;

use super::RunnerError;
use crate::full::{BackupType, Sources};

/// A configured database.
#[derive(Debug, Clone)]
pub struct NamedDatabase {
    /// Its name (unique among all sources).
    pub name: String,
    /// Where it is.
    pub source: DatabaseSource,
    /// Where test restores create their scratch database (default: the same server).
    pub drill: Option<DatabaseSource>,
}

/// A configured media folder.
#[derive(Debug, Clone)]
pub struct NamedMedia {
    /// Its name (unique among all sources).
    pub name: String,
    /// The folder.
    pub path: PathBuf,
    /// Patterns of paths in it to leave out ([`strongroom_repo::exclude`]).
    pub exclude: Vec<String>,
}

/// Every source a runner knows.
#[derive(Debug, Clone, Default)]
pub struct JobSources {
    /// Databases.
    pub databases: Vec<NamedDatabase>,
    /// Media folders.
    pub media: Vec<NamedMedia>,
}

impl JobSources {
    /// The sources of a configuration.
    ///
    /// # Errors
    /// When a configured URL is not understood by the database tools (names the source,
    /// never the URL).
    pub fn from_config(cfg: &Config) -> Result<Self, RunnerError> {
        let mut out = JobSources::default();
        for d in &cfg.databases {
            let mut source = DatabaseSource::parse(d.url.expose())
                .map_err(|e| RunnerError::Invalid(format!("database source {:?}: {e}", d.name)))?;
            if source.engine() == strongroom_sources::Engine::Postgres {
                // `parallel_jobs > 1`: `pg_dump -Fd -j N` into a private folder on the cache's
                // disk (not /tmp), backed up as a folder snapshot.
                let tools = strongroom_sources::Tools {
                    temp_dir: Some(cfg.cache_dir.join("tmp")),
                    ..source.tools().clone()
                };
                source = source
                    .with_tools(tools)
                    .with_parallel_jobs(d.parallel_jobs.unwrap_or(1));
            }
            let drill = match &d.drill_url {
                Some(u) => Some(DatabaseSource::parse(u.expose()).map_err(|e| {
                    RunnerError::Invalid(format!("database source {:?} drill_url: {e}", d.name))
                })?),
                None => None,
            };
            out.databases.push(NamedDatabase {
                name: d.name.clone(),
                source,
                drill,
            });
        }
        for m in &cfg.media {
            out.media.push(NamedMedia {
                name: m.name.clone(),
                path: m.path.clone(),
                exclude: m.exclude.clone(),
            });
        }
        Ok(out)
    }

    /// True when nothing is configured.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.databases.is_empty() && self.media.is_empty()
    }

    /// Every source name.
    #[must_use]
    pub fn names(&self) -> Vec<String> {
        self.databases
            .iter()
            .map(|d| d.name.clone())
            .chain(self.media.iter().map(|m| m.name.clone()))
            .collect()
    }

    /// The sources a backup of `backup_type` covers: the named ones (each must exist and
    /// suit the type), or every one that suits it when `names` is empty.
    ///
    /// # Errors
    /// A name that is not configured, or one that does not suit the backup type.
    pub fn select(
        &self,
        backup_type: BackupType,
        names: &[String],
    ) -> Result<Sources, RunnerError> {
        let dbs = matches!(backup_type, BackupType::Full | BackupType::Database);
        let media = matches!(backup_type, BackupType::Full | BackupType::Media);
        let mut out = Sources::default();
        if names.is_empty() {
            if dbs {
                out.databases = self
                    .databases
                    .iter()
                    .map(|d| (d.name.clone(), d.source.clone()))
                    .collect();
            }
            if media {
                out.media.clone_from(&self.media);
            }
            return Ok(out);
        }
        for (i, name) in names.iter().enumerate() {
            // A name given twice is backed up once.
            if names[..i].contains(name) {
                continue;
            }
            if let Some(d) = self.databases.iter().find(|d| &d.name == name) {
                if !dbs {
                    return Err(RunnerError::Invalid(format!(
                        "{name:?} is a database; a {backup_type:?} backup does not cover it"
                    )));
                }
                out.databases.push((d.name.clone(), d.source.clone()));
            } else if let Some(m) = self.media.iter().find(|m| &m.name == name) {
                if !media {
                    return Err(RunnerError::Invalid(format!(
                        "{name:?} is a media folder; a {backup_type:?} backup does not cover it"
                    )));
                }
                out.media.push(m.clone());
            } else {
                return Err(RunnerError::Invalid(format!(
                    "no source is named {name:?} (configured: {}); fix the schedule or the configuration",
                    self.names().join(", ")
                )));
            }
        }
        Ok(out)
    }

    /// The databases named (all when `names` is empty); names that are not databases are
    /// skipped.
    #[must_use]
    pub fn databases_named(&self, names: &[String]) -> Vec<&NamedDatabase> {
        self.databases
            .iter()
            .filter(|d| names.is_empty() || names.contains(&d.name))
            .collect()
    }

    /// Scratch servers for test restores, one per engine (the first drill server of each).
    #[must_use]
    pub fn scratch_servers(&self) -> Vec<DatabaseSource> {
        let mut out: Vec<DatabaseSource> = Vec::new();
        for d in &self.databases {
            if let Some(drill) = &d.drill
                && !out.iter().any(|s| s.engine() == drill.engine())
            {
                out.push(drill.clone());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    /// The configuration's check of an exclude pattern and the engine that applies it accept
    /// the same patterns: every string of up to five characters of the pattern language.
    #[test]
    fn the_configuration_accepts_exactly_the_patterns_the_engine_compiles() {
        const ALPHABET: &[char] = &['a', '*', '?', '/', '[', ']', '!', '^', '\\', '-'];
        let mut patterns = vec![String::new()];
        let mut last = vec![String::new()];
        for _ in 0..5 {
            let mut next = Vec::new();
            for p in &last {
                for c in ALPHABET {
                    next.push(format!("{p}{c}"));
                }
            }
            patterns.extend(next.iter().cloned());
            last = next;
        }
        let mut refused = 0;
        for p in &patterns {
            let config = strongroom_config::check_glob(p);
            let engine = strongroom_repo::exclude::check(p);
            assert_eq!(
                config.is_ok(),
                engine.is_ok(),
                "{p:?}: {config:?} vs {engine:?}"
            );
            refused += usize::from(engine.is_err());
        }
        assert!(
            refused > 1000 && refused < patterns.len() / 2,
            "{refused} refused"
        );
    }
}
