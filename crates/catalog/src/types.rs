//! Small closed sets of values stored as text: job kinds and statuses, user roles, metric
//! statuses.
//!
//! Each is stored in the catalog as its lower-case `snake_case` name (the same text as its
//! JSON form and its `Display`), so the rows stay readable with any SQL client. Adding a value
//! is a code change here only; renaming one would need a migration, so don't.

use crate::error::CatalogError;

/// Declares a text-stored enum with `as_str`, `Display`, `FromStr` and serde.
macro_rules! text_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $text:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
        pub enum $name {
            $( $(#[$vmeta])* #[serde(rename = $text)] $variant, )+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The stored (and JSON) name.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text,)+ }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = CatalogError;
            fn from_str(s: &str) -> Result<Self, CatalogError> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(CatalogError::Invalid(format!(
                        concat!("unknown ", stringify!($name), " {:?}"), s
                    ))),
                }
            }
        }
    };
}

text_enum! {
    /// What a job does.
    pub enum JobKind {
        /// A backup of every database source and the media.
        Full = "full",
        /// A backup of one database source.
        Database = "database",
        /// A backup of the media folders.
        Media = "media",
        /// A verification of the repository (structure, optionally data).
        Verification = "verification",
        /// A restore into a scratch place to prove a backup restores.
        TestRestore = "test_restore",
        /// A real restore.
        Restore = "restore",
        /// Removal of unreferenced data from the repository.
        Prune = "prune",
        /// Import of an existing backup file into the repository.
        Import = "import",
        /// Removal of snapshots by a retention policy.
        Forget = "forget",
    }
}

impl JobKind {
    /// The kinds that produce a backup: the ones counted by the health summary.
    pub const BACKUPS: &'static [JobKind] = &[JobKind::Full, JobKind::Database, JobKind::Media];

    /// True for kinds that produce a backup (full, database, media).
    pub fn is_backup(self) -> bool {
        Self::BACKUPS.contains(&self)
    }
}

text_enum! {
    /// Where a job is in its life: queued → in_progress → success | warning | failed |
    /// cancelled (a queued job can also go straight to cancelled).
    pub enum JobStatus {
        /// Waiting for a worker.
        Queued = "queued",
        /// Leased by a worker, which heartbeats while it runs.
        InProgress = "in_progress",
        /// Finished and everything asked was done.
        Success = "success",
        /// Finished and saved, with something to look at (e.g. unreadable files).
        Warning = "warning",
        /// Finished without doing what was asked, or interrupted.
        Failed = "failed",
        /// Stopped on request.
        Cancelled = "cancelled",
    }
}

impl JobStatus {
    /// The statuses of an active job, at most one per (source, kind).
    pub const ACTIVE: &'static [JobStatus] = &[JobStatus::Queued, JobStatus::InProgress];

    /// True for queued and in_progress.
    pub fn is_active(self) -> bool {
        Self::ACTIVE.contains(&self)
    }

    /// True for the end states (success, warning, failed, cancelled).
    pub fn is_final(self) -> bool {
        !self.is_active()
    }
}

text_enum! {
    /// What a user may do.
    pub enum Role {
        /// Everything, including restores, deletions, users and settings.
        Admin = "admin",
        /// Run backups and verifications, download.
        Staff = "staff",
        /// Read only.
        Viewer = "viewer",
    }
}

text_enum! {
    /// The state a health metric reports.
    pub enum MetricStatus {
        /// Within bounds.
        Healthy = "healthy",
        /// Needs attention soon.
        Warning = "warning",
        /// Needs attention now.
        Critical = "critical",
        /// Could not be measured.
        Unknown = "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for k in JobKind::ALL {
            assert_eq!(k.as_str().parse::<JobKind>().ok(), Some(*k));
            assert_eq!(serde_json::to_value(k).ok(), Some(k.as_str().into()));
        }
        for s in JobStatus::ALL {
            assert_eq!(s.as_str().parse::<JobStatus>().ok(), Some(*s));
        }
        assert!("bogus".parse::<JobKind>().is_err());
        assert_eq!(JobKind::TestRestore.to_string(), "test_restore");
    }
}
