//! Configuration errors: every problem names its key path (`schedule[1].when`) and where it
//! came from: the file's line and column, or the environment variable.
//!
//! Positions come from the TOML parser's byte spans; the key path of a serde error is found
//! by walking the parsed document to the innermost key or value that contains the error's
//! span. What it must not do: quote a value from the file in a message (a mistyped value may
//! be a password), or print a source line (toml's own `Display` does; only its `message()` is
//! used, with quoted values removed).

use std::fmt;
use std::ops::Range;
use std::path::PathBuf;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// Where a problem was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A position in the configuration file (1-based line and column, in characters).
    File {
        /// The file as given (`None` when parsing a string).
        path: Option<PathBuf>,
        /// 1-based line.
        line: usize,
        /// 1-based column (characters, not bytes).
        column: usize,
    },
    /// An environment variable.
    Env {
        /// The variable's name.
        var: String,
    },
    /// The configuration as a whole (no single position, e.g. a missing section).
    Whole {
        /// The file, if any.
        path: Option<PathBuf>,
    },
}

/// One problem in the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Where it is.
    pub origin: Origin,
    /// The key path, e.g. `schedule[1].when` (for an environment variable, its name).
    pub key: String,
    /// What is wrong, and what to write instead.
    pub message: String,
}

impl Problem {
    /// The 1-based line in the file, if the problem has one.
    pub fn line(&self) -> Option<usize> {
        match self.origin {
            Origin::File { line, .. } => Some(line),
            _ => None,
        }
    }

    /// The 1-based column in the file, if the problem has one.
    pub fn column(&self) -> Option<usize> {
        match self.origin {
            Origin::File { column, .. } => Some(column),
            _ => None,
        }
    }
}

impl fmt::Display for Problem {
    /// `strongroom.toml:12:8: schedule[1].when: …` or `environment DATABASE_URL: …`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.origin {
            Origin::File { path, line, column } => {
                let file = path
                    .as_ref()
                    .map_or_else(|| "config".to_string(), |p| p.display().to_string());
                if self.key.is_empty() {
                    write!(f, "{file}:{line}:{column}: {}", self.message)
                } else {
                    write!(f, "{file}:{line}:{column}: {}: {}", self.key, self.message)
                }
            }
            Origin::Env { var } => write!(f, "environment variable {var}: {}", self.message),
            Origin::Whole { path } => {
                let file = path
                    .as_ref()
                    .map_or_else(|| "config".to_string(), |p| p.display().to_string());
                if self.key.is_empty() {
                    write!(f, "{file}: {}", self.message)
                } else {
                    write!(f, "{file}: {}: {}", self.key, self.message)
                }
            }
        }
    }
}

/// Why the configuration could not be loaded or used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read the configuration file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file or the environment has problems; each names its key and line or variable.
    #[error("{}", render(.0))]
    Invalid(Vec<Problem>),
    /// The repository password file could not be read.
    #[error("cannot read the repository password file {path}: {source}")]
    PasswordFile {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The repository password file is empty.
    #[error("the repository password file {0} is empty")]
    EmptyPasswordFile(PathBuf),
    /// `password_env` names a variable that is not set.
    #[error("repository.password_env names the variable {0}, which is not set (or is empty)")]
    PasswordEnvUnset(String),
    /// No repository is configured.
    #[error(
        "no repository is configured: set `[repository] path = \"/srv/backups/repo\"` in strongroom.toml, or STRONGROOM_REPO"
    )]
    NoRepository,
    /// `strongroom setup` found nothing to back up.
    #[error(
        "nothing to set up: neither DATABASE_URL nor MEDIA_ROOT is set (and the configuration names no database or media folder)"
    )]
    NothingToSetUp,
}

impl ConfigError {
    /// The problems, when the configuration is invalid.
    pub fn problems(&self) -> &[Problem] {
        match self {
            ConfigError::Invalid(p) => p,
            _ => &[],
        }
    }
}

fn render(problems: &[Problem]) -> String {
    match problems {
        [one] => format!("invalid configuration: {one}"),
        many => {
            let mut s = format!("invalid configuration ({} problems):", many.len());
            for p in many {
                s.push_str("\n  ");
                s.push_str(&p.to_string());
            }
            s
        }
    }
}

/// 1-based line and column (in characters) of a byte offset.
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = text[line_start..offset].chars().count() + 1;
    (line, column)
}

/// Remove quoted values from a serde/toml message: `invalid type: string "hunter2", expected
/// u16` becomes `invalid type: string, expected u16`. Key names in backticks after
/// "unknown field" and the lists of expected names are kept.
pub(crate) fn scrub_message(message: &str) -> String {
    for prefix in ["invalid type: ", "invalid value: ", "invalid length "] {
        if let Some(rest) = message.strip_prefix(prefix)
            && let Some((found, expected)) = rest.split_once(", expected ")
        {
            let kind = found.split([' ', '`', '"']).next().unwrap_or(found);
            return format!("{prefix}{kind}, expected {expected}");
        }
    }
    message.to_string()
}

/// Find the key path of the innermost key or value whose span contains `span.start`.
pub(crate) fn key_path_at(text: &str, span: &Range<usize>) -> Option<String> {
    let root = DeTable::parse(text).ok()?;
    let mut best: Option<(usize, String)> = None;
    walk_table(root.get_ref(), span.start, "", &mut best);
    best.map(|(_, path)| path)
}

fn consider(best: &mut Option<(usize, String)>, span: Range<usize>, pos: usize, path: &str) {
    if span.start <= pos && pos < span.end.max(span.start + 1) {
        let len = span.end.saturating_sub(span.start);
        if best.as_ref().is_none_or(|(l, _)| len <= *l) {
            *best = Some((len, path.to_string()));
        }
    }
}

fn walk_table(table: &DeTable<'_>, pos: usize, prefix: &str, best: &mut Option<(usize, String)>) {
    for (key, value) in table.iter() {
        let path = if prefix.is_empty() {
            key.get_ref().to_string()
        } else {
            format!("{prefix}.{}", key.get_ref())
        };
        consider(best, key.span(), pos, &path);
        walk_value(value, pos, &path, best);
    }
}

fn walk_value(
    value: &Spanned<DeValue<'_>>,
    pos: usize,
    path: &str,
    best: &mut Option<(usize, String)>,
) {
    consider(best, value.span(), pos, path);
    match value.get_ref() {
        DeValue::Table(t) => walk_table(t, pos, path, best),
        DeValue::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                walk_value(item, pos, &format!("{path}[{i}]"), best);
            }
        }
        _ => {}
    }
}
