//! Retention policy: which snapshots to keep (pure; no I/O).
//!
//! Like restic's `forget`: snapshots are grouped (by host, kind and source), and within each
//! group, newest first, a snapshot is kept when it is among the last N, or the newest of its
//! hour / day / week / month / year for the first N such periods, or within a duration of
//! the newest snapshot, or carries a kept tag. The newest snapshot of every group is always
//! kept. An empty policy is refused by the caller, never read as "delete all".

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, Datelike, Duration, Timelike, Utc};

use crate::id::Id;
use crate::snapshot::Snapshot;

/// How many of each to keep.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    /// The last N snapshots.
    pub last: u32,
    /// The newest of each of the last N hours that have snapshots.
    pub hourly: u32,
    /// … days.
    pub daily: u32,
    /// … ISO weeks.
    pub weekly: u32,
    /// … months.
    pub monthly: u32,
    /// … years.
    pub yearly: u32,
    /// Everything within this duration of the newest snapshot of the group.
    pub within: Option<Duration>,
    /// Snapshots with any of these tags.
    pub keep_tags: Vec<String>,
}

impl Policy {
    /// True when the policy keeps nothing on its own (and so must not be applied).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.last == 0
            && self.hourly == 0
            && self.daily == 0
            && self.weekly == 0
            && self.monthly == 0
            && self.yearly == 0
            && self.within.is_none()
            && self.keep_tags.is_empty()
    }
}

/// The decision for one snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The snapshot.
    pub id: Id,
    /// Its time.
    pub time: DateTime<Utc>,
    /// Its group (host, kind, source).
    pub group: String,
    /// Keep it?
    pub keep: bool,
    /// Why it is kept (e.g. "daily", "last"), empty when removed.
    pub reasons: Vec<String>,
}

/// Parses a duration such as `30d`, `12h`, `2w`, `1y6m` (y=365d, m=30d, w=7d, d, h).
///
/// # Errors
/// A message naming what could not be read.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let mut total = Duration::zero();
    let mut num = String::new();
    if s.is_empty() {
        return Err("empty duration".into());
    }
    for c in s.chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let n: i64 = num
            .parse()
            .map_err(|_| format!("{s:?}: expected a number before {c:?}"))?;
        num.clear();
        let d = match c {
            'y' => Duration::days(365 * n),
            'm' => Duration::days(30 * n),
            'w' => Duration::weeks(n),
            'd' => Duration::days(n),
            'h' => Duration::hours(n),
            _ => return Err(format!("{s:?}: unknown unit {c:?} (use y, m, w, d or h)")),
        };
        total += d;
    }
    if !num.is_empty() {
        return Err(format!("{s:?}: a number needs a unit (y, m, w, d or h)"));
    }
    Ok(total)
}

/// Applies a policy to snapshots; returns one decision per snapshot, newest first.
#[must_use]
pub fn apply(policy: &Policy, snaps: &[(Id, Snapshot)]) -> Vec<Decision> {
    type Member<'s> = (Id, DateTime<Utc>, &'s Snapshot);
    let mut groups: BTreeMap<String, Vec<Member<'_>>> = BTreeMap::new();
    for (id, s) in snaps {
        let g = format!("{} {:?} {}", s.host, s.kind, s.source);
        groups.entry(g).or_default().push((*id, s.timestamp(), s));
    }
    let mut out = Vec::new();
    for (group, mut list) in groups {
        list.sort_by(|a, b| b.1.cmp(&a.1).then(b.0.cmp(&a.0)));
        let newest = list.first().map(|x| x.1);
        type Bucket = fn(&DateTime<Utc>) -> i64;
        let buckets: [(&str, u32, Bucket); 5] = [
            ("hourly", policy.hourly, |t| t.timestamp().div_euclid(3600)),
            ("daily", policy.daily, |t| {
                i64::from(t.year()) * 1000 + i64::from(t.ordinal())
            }),
            ("weekly", policy.weekly, |t| {
                let w = t.iso_week();
                i64::from(w.year()) * 100 + i64::from(w.week())
            }),
            ("monthly", policy.monthly, |t| {
                i64::from(t.year()) * 100 + i64::from(t.month())
            }),
            ("yearly", policy.yearly, |t| i64::from(t.year())),
        ];
        let mut seen: Vec<HashSet<i64>> = vec![HashSet::new(); buckets.len()];
        for (i, (id, time, snap)) in list.iter().enumerate() {
            let mut reasons = Vec::new();
            // The newest snapshot of a group is never removed by a policy: a policy that
            // happens to match nothing recent must not leave a source without a backup.
            if i == 0 {
                reasons.push("newest".to_owned());
            }
            if (i as u64) < u64::from(policy.last) {
                reasons.push("last".to_owned());
            }
            for (b, (name, count, f)) in buckets.iter().enumerate() {
                let key = f(time);
                if seen[b].len() < *count as usize && !seen[b].contains(&key) {
                    seen[b].insert(key);
                    reasons.push((*name).to_owned());
                }
            }
            if let (Some(w), Some(n)) = (policy.within, newest)
                && *time >= n - w
            {
                reasons.push("within".to_owned());
            }
            if snap.tags.iter().any(|t| policy.keep_tags.contains(t)) {
                reasons.push("tag".to_owned());
            }
            let _ = time.hour();
            out.push(Decision {
                id: *id,
                time: *time,
                group: group.clone(),
                keep: !reasons.is_empty(),
                reasons,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::{SnapshotKind, Summary};

    fn snap(time: &str) -> Snapshot {
        Snapshot {
            version: 1,
            time: time.into(),
            kind: SnapshotKind::Files,
            source: "/data".into(),
            paths: vec!["/data".into()],
            host: "h".into(),
            user: "u".into(),
            tags: vec![],
            tree: Id::default(),
            parent: None,
            summary: Summary::default(),
            program: String::new(),
            meta: serde_json::Value::Null,
        }
    }

    fn series(days: u32, per_day: u32) -> Vec<(Id, Snapshot)> {
        let start = DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let mut v = vec![];
        for d in 0..days {
            for h in 0..per_day {
                let t = start + Duration::days(i64::from(d)) + Duration::hours(i64::from(h) * 3);
                let mut id = [0u8; 32];
                id[..4].copy_from_slice(&(d * 100 + h).to_le_bytes());
                v.push((Id(id), snap(&t.to_rfc3339())));
            }
        }
        v
    }

    #[test]
    fn keep_daily_and_weekly() {
        let s = series(60, 4);
        let p = Policy {
            daily: 7,
            weekly: 4,
            ..Policy::default()
        };
        let d = apply(&p, &s);
        assert_eq!(d.len(), 240);
        let kept: Vec<_> = d.iter().filter(|x| x.keep).collect();
        // 7 daily (the last 7 days' newest) + up to 4 weekly, overlapping in the newest week.
        assert!(kept.len() >= 7 && kept.len() <= 11, "kept {}", kept.len());
        // The newest snapshot is always kept.
        assert!(d[0].keep);
    }

    #[test]
    fn keep_last_and_within() {
        let s = series(10, 1);
        let d = apply(
            &Policy {
                last: 3,
                ..Policy::default()
            },
            &s,
        );
        assert_eq!(d.iter().filter(|x| x.keep).count(), 3);
        let d = apply(
            &Policy {
                within: Some(Duration::days(4)),
                ..Policy::default()
            },
            &s,
        );
        assert_eq!(d.iter().filter(|x| x.keep).count(), 5);
        assert!(Policy::default().is_empty());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("2d12h").unwrap(), Duration::hours(60));
        assert_eq!(parse_duration("1y").unwrap(), Duration::days(365));
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("3x").is_err());
        assert!(parse_duration("").is_err());
    }
}
