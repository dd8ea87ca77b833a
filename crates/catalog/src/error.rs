//! The one error type of the catalog, [`CatalogError`].
//!
//! Messages here are shown to operators and may reach logs and API answers, so they must never
//! carry a connection string, a password, a password hash or a token: database errors are
//! reduced to the database's own message (which names constraints and tables, not values), and
//! connection errors are described without the URL (see `db::connect_error`).

/// What went wrong in a catalog operation.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum CatalogError {
    /// The row asked for does not exist (the text names it, e.g. "job 42").
    #[error("{0} not found")]
    NotFound(String),

    /// A job for the same (source, kind) is already queued or in progress: the database's
    /// unique partial index refused a second active one.
    #[error("a job for this source and kind is already in progress (job {existing_job_id})")]
    AlreadyActive {
        /// The id of the job that is queued or in progress.
        existing_job_id: i64,
    },

    /// The worker no longer holds the job: it was never leased to it, it was finished, or it
    /// was declared interrupted after its heartbeat stopped.
    #[error("the lease on job {job_id} is not held by this worker (lost, expired or never taken)")]
    LeaseLost {
        /// The job whose lease was lost.
        job_id: i64,
    },

    /// The change conflicts with what is stored: a duplicate unique value (user name, schedule
    /// name, token), a missing referenced row, or a state that does not allow the operation.
    #[error("conflict: {0}")]
    Conflict(String),

    /// The input was refused before reaching the database (bad URL, bad value).
    #[error("invalid input: {0}")]
    Invalid(String),

    /// The database failed or returned something this crate cannot read. The text never
    /// contains a connection string or a password.
    #[error("catalog database error: {0}")]
    Database(String),
}

impl CatalogError {
    pub(crate) fn not_found(what: impl Into<String>) -> Self {
        Self::NotFound(what.into())
    }

    pub(crate) fn corrupt(what: impl std::fmt::Display) -> Self {
        Self::Database(format!("unreadable value in the catalog: {what}"))
    }
}

/// Shorthand for results of catalog operations.
pub type Result<T, E = CatalogError> = std::result::Result<T, E>;
