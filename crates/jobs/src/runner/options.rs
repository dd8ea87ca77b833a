//! What a job or a schedule carries besides its catalog columns, as JSON the catalog stores
//! without reading: a job's options (in its `metadata`) and a schedule's settings (in its
//! `retention` column, whose shape the catalog leaves to the scheduler).
//!
//! A job is self-describing: everything a worker needs to run it (sources, verify, test
//! restore, retention, read-data subset) is in its metadata, copied from the schedule or the
//! request when it was enqueued, so editing a schedule never changes a job already queued.
//! What this module must not do: hold a secret (only source names, never URLs), or touch the
//! catalog or the repository.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use strongroom_catalog::JobKind;
use strongroom_repo::retention::Policy;

/// A retention policy as stored with schedules and forget jobs: each `keep_*` as in
/// `strongroom forget`; `keep_days` keeps everything younger than N days (measured from the
/// newest backup of the source). The newest verified backup of a source is always kept on top.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetentionPolicy {
    /// Keep the newest N backups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_last: Option<u32>,
    /// Keep the newest backup of each of the last N days that have one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_daily: Option<u32>,
    /// … weeks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_weekly: Option<u32>,
    /// … months.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_monthly: Option<u32>,
    /// … years.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_yearly: Option<u32>,
    /// Keep every backup younger than N days.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_days: Option<u32>,
}

impl RetentionPolicy {
    /// True when the policy keeps nothing by itself (such a policy is never applied: it is
    /// not read as "remove everything").
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.to_policy().is_empty()
    }

    /// The engine's policy.
    #[must_use]
    pub fn to_policy(&self) -> Policy {
        Policy {
            last: self.keep_last.unwrap_or(0),
            daily: self.keep_daily.unwrap_or(0),
            weekly: self.keep_weekly.unwrap_or(0),
            monthly: self.keep_monthly.unwrap_or(0),
            yearly: self.keep_yearly.unwrap_or(0),
            within: self
                .keep_days
                .filter(|d| *d > 0)
                .map(|d| chrono::Duration::days(i64::from(d))),
            ..Policy::default()
        }
    }

    /// A one-line description, e.g. "keep 7 daily, 4 weekly".
    #[must_use]
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        let mut add = |v: Option<u32>, what: &str| {
            if let Some(n) = v.filter(|n| *n > 0) {
                parts.push(format!("{n} {what}"));
            }
        };
        add(self.keep_last, "last");
        add(self.keep_daily, "daily");
        add(self.keep_weekly, "weekly");
        add(self.keep_monthly, "monthly");
        add(self.keep_yearly, "yearly");
        if let Some(d) = self.keep_days.filter(|d| *d > 0) {
            parts.push(format!("everything younger than {d} days"));
        }
        if parts.is_empty() {
            "keep everything".into()
        } else {
            format!("keep {}", parts.join(", "))
        }
    }
}

impl From<strongroom_config::Retention> for RetentionPolicy {
    fn from(r: strongroom_config::Retention) -> Self {
        RetentionPolicy {
            keep_last: r.keep_last,
            keep_daily: r.keep_daily,
            keep_weekly: r.keep_weekly,
            keep_monthly: r.keep_monthly,
            keep_yearly: r.keep_yearly,
            keep_days: r.keep_days,
        }
    }
}

/// A schedule's settings beyond the catalog's columns, stored as the schedule's `retention`
/// JSON: the retention policy's keys at the top level, plus the catch-up window and the
/// read-data share of verification schedules.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleSettings {
    /// Retention applied after each successful run (backup kinds).
    #[serde(flatten)]
    pub retention: RetentionPolicy,
    /// How late (seconds) a missed run may still be made up; `None`: the runner's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catch_up_window_seconds: Option<u64>,
    /// Verification schedules: the percentage of pack data read on each run (rotating).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_data_subset: Option<u8>,
}

impl ScheduleSettings {
    /// Reads the settings of a stored schedule; unreadable JSON reads as no settings (the
    /// catalog accepted it, and a schedule must not stop running because of it).
    #[must_use]
    pub fn from_json(v: &Value) -> Self {
        serde_json::from_value(v.clone()).unwrap_or_default()
    }

    /// The JSON to store.
    #[must_use]
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or_else(|_| Value::Object(Default::default()))
    }
}

/// What a job needs to run, stored as (the top level of) its metadata.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct JobOptions {
    /// Source names; empty means every source the kind applies to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<String>,
    /// Verify what a backup wrote before calling it successful.
    #[serde(default, skip_serializing_if = "is_false")]
    pub verify: bool,
    /// Prove database parts (or, for verification jobs, the newest database backups) by a
    /// test restore.
    #[serde(default, skip_serializing_if = "is_false")]
    pub test_restore: bool,
    /// The schedule's name, for scheduled runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// The fire time a scheduled run stands for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub planned_for: Option<DateTime<Utc>>,
    /// Retention: after a scheduled backup (which enqueues a forget job), or what a forget
    /// job applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<RetentionPolicy>,
    /// Verification: percentage of pack data to read (rotating); `None`: structure only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_data_subset: Option<u8>,
    /// Forget and prune: plan only, change nothing.
    #[serde(default, skip_serializing_if = "is_false")]
    pub dry_run: bool,
    /// Forget: the kind of backup whose snapshots it thins out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_kind: Option<JobKind>,
    /// A retry: the interrupted job it repeats (a job is retried once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_of: Option<i64>,
    /// Tags for the snapshots.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Snapshots (full hex ids) a job is about, as the server writes them for a backup's
    /// follow-up jobs: a forget removes exactly these (a backup deleted through the API); a
    /// test restore proves these (their database parts); a restore restores from these. A
    /// verification ignores them (it checks the whole repository).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub snapshot_ids: Vec<String>,
    /// Follow-up jobs (verification, test restore, restore, forget): the backup job they are
    /// about (a restore names its new database and folder after it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_job_id: Option<i64>,
    /// Restore: what to restore and where (the confirmed preview's target).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<RestoreTarget>,
    /// Restore: take a safety backup of what is replaced first (the server asks for it with
    /// every replacing restore; the runner takes one whenever it replaces, asked or not).
    #[serde(default, skip_serializing_if = "is_false")]
    pub safety_backup: bool,
}

/// Where a restore job puts a backup's parts, as the server's restore preview described it
/// (`{"sources": [...], "replace": bool, "new_name": "..." | null}`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreTarget {
    /// The sources (parts of the backup) to restore; empty: every part of the backup.
    #[serde(default)]
    pub sources: Vec<String>,
    /// Replace the live database / media folder (after a safety backup); otherwise restore
    /// next to it: a database `<name>_restored_<backup id>` (or `new_name`), a media folder
    /// `<folder>.restored-<backup id>`.
    #[serde(default)]
    pub replace: bool,
    /// The new database's name when not replacing (one database only).
    #[serde(default)]
    pub new_name: Option<String>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl JobOptions {
    /// Reads the options from a job's metadata (unknown keys, such as a finished job's
    /// `result`, are ignored; `null` metadata reads as no options).
    ///
    /// # Errors
    /// When a known key has a value of the wrong type (or the metadata is not an object): the
    /// job must then fail, not run with options it was not given.
    pub fn from_metadata(v: &Value) -> Result<Self, String> {
        if v.is_null() {
            return Ok(JobOptions::default());
        }
        serde_json::from_value(v.clone()).map_err(|e| format!("job options unreadable: {e}"))
    }

    /// The metadata to store.
    #[must_use]
    pub fn to_metadata(&self) -> Value {
        serde_json::to_value(self).unwrap_or_else(|_| Value::Object(Default::default()))
    }
}

/// The job kind a configured schedule kind runs.
#[must_use]
pub fn job_kind(kind: strongroom_config::ScheduleKind) -> JobKind {
    use strongroom_config::ScheduleKind as S;
    match kind {
        S::Full => JobKind::Full,
        S::Database => JobKind::Database,
        S::Media => JobKind::Media,
        S::Verify => JobKind::Verification,
        S::Prune => JobKind::Prune,
    }
}

/// The job's source key: what the catalog's "one active job per (source, kind)" rule is
/// about. Repository-wide kinds (verification, prune) use `repository`; others the sorted
/// source names joined by `+`, or `all` when none are named.
#[must_use]
pub fn source_key(kind: JobKind, sources: &[String]) -> String {
    match kind {
        JobKind::Verification | JobKind::Prune => "repository".into(),
        _ => {
            let mut names: Vec<&str> = sources.iter().map(String::as_str).collect();
            names.sort_unstable();
            names.dedup();
            if names.is_empty() {
                "all".into()
            } else {
                names.join("+")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_round_trip_and_flatten() {
        let s = ScheduleSettings {
            retention: RetentionPolicy {
                keep_daily: Some(7),
                ..RetentionPolicy::default()
            },
            catch_up_window_seconds: Some(600),
            read_data_subset: None,
        };
        let v = s.to_json();
        assert_eq!(v["keep_daily"], 7);
        assert_eq!(ScheduleSettings::from_json(&v), s);
        assert_eq!(
            ScheduleSettings::from_json(&serde_json::json!({})),
            ScheduleSettings::default()
        );
        assert!(RetentionPolicy::default().is_empty());
        assert!(!s.retention.is_empty());
    }

    #[test]
    fn keys() {
        assert_eq!(source_key(JobKind::Full, &[]), "all");
        assert_eq!(
            source_key(JobKind::Database, &["b".into(), "a".into(), "b".into()]),
            "a+b"
        );
        assert_eq!(source_key(JobKind::Prune, &["x".into()]), "repository");
    }

    #[test]
    fn options_ignore_results() {
        let o = JobOptions {
            verify: true,
            sources: vec!["clinic".into()],
            ..JobOptions::default()
        };
        let mut m = o.to_metadata();
        m["result"] = serde_json::json!({"x": 1});
        assert_eq!(JobOptions::from_metadata(&m), Ok(o));
        assert_eq!(
            JobOptions::from_metadata(&Value::Null),
            Ok(JobOptions::default())
        );
    }

    #[test]
    fn unreadable_options_are_an_error() {
        let e = JobOptions::from_metadata(&serde_json::json!({"verify": "yes"})).unwrap_err();
        assert!(e.starts_with("job options unreadable: "), "{e}");
        assert!(JobOptions::from_metadata(&serde_json::json!([1])).is_err());
    }

    #[test]
    fn reads_what_the_server_writes_for_a_restore() {
        let m = serde_json::json!({
            "target_job_id": 7, "snapshot_ids": ["ab"], "confirmed_by": "admin",
            "target": {"sources": ["clinic"], "replace": false, "new_name": null},
            "safety_backup": false, "requested_via": "api",
        });
        let o = JobOptions::from_metadata(&m).unwrap();
        assert_eq!(o.snapshot_ids, vec!["ab".to_owned()]);
        assert_eq!(
            o.target,
            Some(RestoreTarget {
                sources: vec!["clinic".into()],
                replace: false,
                new_name: None,
            })
        );
    }
}
