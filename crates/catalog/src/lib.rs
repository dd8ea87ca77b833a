//! The Strongroom catalog: durable jobs, schedules, health metrics, users, tokens, sessions,
//! the audit log, alerts sent and a cache of the repository's snapshots, stored in SQLite (the
//! default, WAL mode) or PostgreSQL (for hosts whose disk is ephemeral, or several instances).
//!
//! ```no_run
//! # async fn demo() -> Result<(), strongroom_catalog::CatalogError> {
//! use chrono::Utc;
//! use strongroom_catalog::{Catalog, CatalogError, JobKind, JobOutcome, NewJob};
//!
//! let catalog = Catalog::connect("sqlite:///var/lib/strongroom/catalog.db").await?;
//! let jobs = catalog.jobs();
//! match jobs.enqueue(&NewJob::new(JobKind::Database, "db:clinic", "alice"), Utc::now()).await {
//!     Ok(job) => println!("queued job {}", job.id),
//!     Err(CatalogError::AlreadyActive { existing_job_id }) => {
//!         println!("already in progress: job {existing_job_id}")
//!     }
//!     Err(e) => return Err(e),
//! }
//! if let Some(job) = jobs.lease_next("worker-1", Utc::now()).await? {
//!     jobs.heartbeat(job.id, "worker-1", None, Utc::now()).await?;
//!     jobs.finish(job.id, "worker-1", &JobOutcome::success(), Utc::now()).await?;
//! }
//! # Ok(()) }
//! ```
//!
//! The API is the same for both backends and exposes no sqlx type. Every operation that writes
//! a time takes it as an argument (`now`), so callers with a controllable clock can test
//! schedules and timeouts; times are stored at microsecond precision, in UTC.
//!
//! The rules the catalog guarantees are enforced by the database itself (a unique partial
//! index, atomic leases, compare-and-set updates), so they hold across processes and service
//! instances; see `docs/design/catalog.md`.
//!
//! This crate must not depend on the repository engine, the sources, storage or anything above
//! it; it must not parse schedules or decide policies (it stores what it is given); and no
//! message or `Debug` output of it may contain a password, a connection-string password, a
//! password hash or a token.

mod audit;
mod auth;
mod db;
mod error;
mod jobs;
mod metrics;
mod migrate;
mod schedules;
mod snapshots;
mod types;

use std::fmt;
use std::time::Duration;

pub use audit::{AlertSent, Alerts, Audit, AuditEntry, AuditFilter, NewAuditEntry};
pub use auth::{ApiToken, NewSession, NewToken, NewUser, Session, Sessions, Tokens, User, Users};
pub use error::{CatalogError, Result};
pub use jobs::{
    HealthSummary, INTERRUPTED_MESSAGE, Job, JobFilter, JobOutcome, Jobs, NewJob, Progress,
};
pub use metrics::{HealthMetric, MetricFilter, Metrics, NewMetric};
pub use schedules::{NewSchedule, Schedule, Schedules};
pub use snapshots::{SnapshotFilter, SnapshotRecord, Snapshots};
pub use types::{JobKind, JobStatus, MetricStatus, Role};

use db::{Db, PoolSettings};

/// Which database a catalog lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A SQLite file (WAL mode).
    Sqlite,
    /// A PostgreSQL database.
    Postgres,
}

/// How to open a catalog; [`Default`] suits a service.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectOptions {
    /// Connections in the pool (default 8). SQLite has one writer at a time whatever this is;
    /// more connections let reads go on while a write waits.
    pub max_connections: u32,
    /// How long to wait for a connection, including for the server to come up (default 10 s).
    pub acquire_timeout: Duration,
    /// How long a SQLite write waits for another writer before failing (default 10 s).
    pub busy_timeout: Duration,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            max_connections: 8,
            acquire_timeout: Duration::from_secs(10),
            busy_timeout: Duration::from_secs(10),
        }
    }
}

/// An open catalog: a connection pool to SQLite or PostgreSQL with the schema up to date.
/// Cloning is cheap and shares the pool.
#[derive(Clone)]
pub struct Catalog {
    db: Db,
    /// The URL with any password replaced, for `Debug`.
    shown_url: String,
    schema_version: i64,
}

impl fmt::Debug for Catalog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Catalog")
            .field("url", &self.shown_url)
            .field("schema_version", &self.schema_version)
            .finish()
    }
}

impl Catalog {
    /// Opens (creating if needed) the catalog at `url` with default options and brings its
    /// schema up to date. `url` is `sqlite://PATH` (relative, or `sqlite:///absolute/path`;
    /// the file and its folder are created if missing) or `postgres://user@host:port/db`.
    pub async fn connect(url: &str) -> Result<Catalog> {
        Self::connect_with(url, &ConnectOptions::default()).await
    }

    /// [`Catalog::connect`] with explicit options.
    pub async fn connect_with(url: &str, options: &ConnectOptions) -> Result<Catalog> {
        let settings = PoolSettings {
            max_connections: options.max_connections,
            acquire_timeout: options.acquire_timeout,
            busy_timeout: options.busy_timeout,
        };
        let db = Db::connect(url, &settings).await?;
        let schema_version = match migrate::run(&db).await {
            Ok(v) => v,
            Err(e) => {
                db.close().await;
                return Err(e);
            }
        };
        Ok(Catalog {
            db,
            shown_url: db::redact_url(url),
            schema_version,
        })
    }

    /// Which database this catalog lives in.
    pub fn backend(&self) -> Backend {
        if self.db.is_postgres() {
            Backend::Postgres
        } else {
            Backend::Sqlite
        }
    }

    /// The schema version (the newest migration applied).
    pub fn schema_version(&self) -> i64 {
        self.schema_version
    }

    /// Closes every connection; later operations fail.
    pub async fn close(&self) {
        self.db.close().await;
    }

    /// Jobs: queue, leases, heartbeats, outcomes, history, health summary.
    pub fn jobs(&self) -> Jobs<'_> {
        Jobs { db: &self.db }
    }

    /// Schedules, with the exactly-once claim of due runs.
    pub fn schedules(&self) -> Schedules<'_> {
        Schedules { db: &self.db }
    }

    /// Health metrics.
    pub fn metrics(&self) -> Metrics<'_> {
        Metrics { db: &self.db }
    }

    /// Local users.
    pub fn users(&self) -> Users<'_> {
        Users { db: &self.db }
    }

    /// API tokens (hashed).
    pub fn tokens(&self) -> Tokens<'_> {
        Tokens { db: &self.db }
    }

    /// Login sessions.
    pub fn sessions(&self) -> Sessions<'_> {
        Sessions { db: &self.db }
    }

    /// The audit log.
    pub fn audit(&self) -> Audit<'_> {
        Audit { db: &self.db }
    }

    /// Alerts sent.
    pub fn alerts(&self) -> Alerts<'_> {
        Alerts { db: &self.db }
    }

    /// The snapshot cache.
    pub fn snapshots(&self) -> Snapshots<'_> {
        Snapshots { db: &self.db }
    }
}
