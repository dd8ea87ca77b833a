//! Strongroom's application services: one operation end to end, source → repository.
//!
//! - [`database`]: back up a database (dump streamed into the repository, manifest recorded
//!   with the snapshot), restore it (into a new database by default; a replace takes a
//!   safety backup first), prove it by a test restore into a scratch database, import an
//!   existing dump file.
//! - [`full`]: a full recovery point (every database and media folder in one run), or one
//!   part of it.
//!
//! This crate knows the engine and the sources; it must not know HTTP or the CLI.

pub mod database;
pub mod full;
pub mod runner;

/// Errors of an operation, each saying what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JobError {
    /// The repository failed.
    #[error("{}{}", .0, repo_hint(.0))]
    Repo(#[from] strongroom_repo::RepoError),
    /// The database tool or server failed.
    #[error("{0}")]
    Source(#[from] strongroom_sources::SourceError),
    /// The request cannot be carried out as asked.
    #[error("{0}")]
    Invalid(String),
    /// A test restore found the backup wrong.
    #[error("test restore failed: {0}")]
    TestRestoreFailed(String),
}

/// What to do about a repository error the message alone does not say.
fn repo_hint(e: &strongroom_repo::RepoError) -> &'static str {
    if e.is_out_of_space() {
        " (hint: the repository's disk is full; free space there and retry)"
    } else {
        ""
    }
}

/// Result alias.
pub type Result<T, E = JobError> = std::result::Result<T, E>;
