//! Time zones and daylight saving: UTC, America/New_York, Europe/Berlin, Asia/Manila and
//! Australia/Lord_Howe (whose clocks move by 30 minutes), both transitions, for daily,
//! hourly and every-15-minutes schedules, and a simulated year of daily runs.
//!
//! Transitions used (2024):
//! - New York: 10 March 02:00 EST → 03:00 EDT (07:00Z); 3 November 02:00 EDT → 01:00 EST
//!   (06:00Z).
//! - Berlin: 31 March 02:00 CET → 03:00 CEST (01:00Z); 27 October 03:00 CEST → 02:00 CET
//!   (01:00Z).
//! - Lord Howe: 7 April 02:00 (+11:00) → 01:30 (+10:30) (6 April 15:00Z); 6 October 02:00
//!   (+10:30) → 02:30 (+11:00) (5 October 15:30Z).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

use std::collections::BTreeSet;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use strongroom_scheduler::{Schedule, Tz};

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .unwrap_or_else(|e| panic!("bad test instant {s}: {e}"))
        .with_timezone(&Utc)
}

fn sched(spec: &str, tz: &str) -> Schedule {
    Schedule::parse(spec, tz).unwrap_or_else(|e| panic!("{spec} in {tz}: {e}"))
}

/// Fire times after `from`, as RFC 3339 with the local offset.
fn next_local(spec: &str, tz: &str, from: &str, n: usize) -> Vec<String> {
    let s = sched(spec, tz);
    let zone = s.timezone();
    s.upcoming(at(from))
        .take(n)
        .map(|t| {
            t.with_timezone(&zone)
                .format("%Y-%m-%dT%H:%M%:z")
                .to_string()
        })
        .collect()
}

/// All fire times in `[from, to)`.
fn fires_between(s: &Schedule, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<DateTime<Utc>> {
    s.upcoming(from - Duration::nanoseconds(1))
        .take_while(|t| *t < to)
        .collect()
}

/// The UTC bounds of one local calendar day.
fn local_day(tz: &str, date: &str) -> (DateTime<Utc>, DateTime<Utc>) {
    use chrono::TimeZone;
    let zone: Tz = tz.parse().unwrap();
    let d = NaiveDate::parse_from_str(date, "%Y-%m-%d").unwrap();
    let start = zone
        .from_local_datetime(&d.and_hms_opt(0, 0, 0).unwrap())
        .earliest()
        .unwrap();
    let end = zone
        .from_local_datetime(&d.succ_opt().unwrap().and_hms_opt(0, 0, 0).unwrap())
        .earliest()
        .unwrap();
    (start.with_timezone(&Utc), end.with_timezone(&Utc))
}

#[test]
fn daily_in_several_zones() {
    assert_eq!(
        next_local("daily 02:00", "UTC", "2024-05-01T00:00:00Z", 2),
        ["2024-05-01T02:00+00:00", "2024-05-02T02:00+00:00"]
    );
    assert_eq!(
        next_local("daily 02:00", "America/New_York", "2024-05-01T00:00:00Z", 1),
        ["2024-05-01T02:00-04:00"]
    );
    assert_eq!(
        next_local("daily 02:00", "America/New_York", "2024-01-01T00:00:00Z", 1),
        ["2024-01-01T02:00-05:00"]
    );
    assert_eq!(
        next_local("daily 02:00", "Europe/Berlin", "2024-04-30T12:00:00Z", 1),
        ["2024-05-01T02:00+02:00"]
    );
    // Manila has no daylight saving: always +08:00; 02:00 local is 18:00Z the day before.
    let s = sched("daily 02:00", "Asia/Manila");
    assert_eq!(
        s.next_after(at("2024-05-01T00:00:00Z")),
        Some(at("2024-05-01T18:00:00Z"))
    );
    assert_eq!(
        s.next_after(at("2024-12-31T18:00:00Z")),
        Some(at("2025-01-01T18:00:00Z"))
    );
    assert_eq!(
        next_local(
            "daily 02:00",
            "Australia/Lord_Howe",
            "2024-07-01T00:00:00Z",
            1
        ),
        ["2024-07-02T02:00+10:30"]
    );
    assert_eq!(
        next_local(
            "daily 02:00",
            "Australia/Lord_Howe",
            "2024-12-01T00:00:00Z",
            1
        ),
        ["2024-12-02T02:00+11:00"]
    );
}

#[test]
fn daily_0230_spring_forward_runs_once_at_the_end_of_the_gap() {
    // Berlin: 02:30 does not exist on 31 March 2024; it runs at 03:00 CEST.
    assert_eq!(
        next_local("daily 02:30", "Europe/Berlin", "2024-03-29T12:00:00Z", 4),
        [
            "2024-03-30T02:30+01:00",
            "2024-03-31T03:00+02:00",
            "2024-04-01T02:30+02:00",
            "2024-04-02T02:30+02:00"
        ]
    );
    // New York: 10 March 2024.
    assert_eq!(
        next_local("daily 02:30", "America/New_York", "2024-03-09T12:00:00Z", 3),
        [
            "2024-03-10T03:00-04:00",
            "2024-03-11T02:30-04:00",
            "2024-03-12T02:30-04:00"
        ]
    );
    // Lord Howe: 02:15 does not exist on 6 October 2024 (02:00 → 02:30).
    assert_eq!(
        next_local(
            "daily 02:15",
            "Australia/Lord_Howe",
            "2024-10-04T12:00:00Z",
            3
        ),
        [
            "2024-10-05T02:15+10:30",
            "2024-10-06T02:30+11:00",
            "2024-10-07T02:15+11:00"
        ]
    );
    // Started just after the moved run: no second run that day.
    let s = sched("daily 02:30", "Europe/Berlin");
    assert_eq!(
        s.next_after(at("2024-03-31T01:00:00Z")),
        Some(at("2024-04-01T00:30:00Z"))
    );
    // Started just before it: the moved run.
    assert_eq!(
        s.next_after(at("2024-03-31T00:59:59Z")),
        Some(at("2024-03-31T01:00:00Z"))
    );
}

#[test]
fn daily_fall_back_runs_once_at_the_first_occurrence() {
    // Berlin: 02:30 happens twice on 27 October 2024 (00:30Z CEST, 01:30Z CET).
    assert_eq!(
        next_local("daily 02:30", "Europe/Berlin", "2024-10-26T12:00:00Z", 3),
        [
            "2024-10-27T02:30+02:00",
            "2024-10-28T02:30+01:00",
            "2024-10-29T02:30+01:00"
        ]
    );
    let s = sched("daily 02:30", "Europe/Berlin");
    // From between the two occurrences: the second one is not a run.
    assert_eq!(
        s.next_after(at("2024-10-27T01:00:00Z")),
        Some(at("2024-10-28T01:30:00Z"))
    );
    assert_eq!(
        s.next_after(at("2024-10-27T01:30:00Z")),
        Some(at("2024-10-28T01:30:00Z"))
    );
    // New York: 01:30 happens twice on 3 November 2024.
    assert_eq!(
        next_local("daily 01:30", "America/New_York", "2024-11-02T12:00:00Z", 2),
        ["2024-11-03T01:30-04:00", "2024-11-04T01:30-05:00"]
    );
    // Lord Howe: 01:45 happens twice on 7 April 2024 (14:45Z at +11, 15:15Z at +10:30).
    assert_eq!(
        next_local(
            "daily 01:45",
            "Australia/Lord_Howe",
            "2024-04-06T12:00:00Z",
            2
        ),
        ["2024-04-07T01:45+11:00", "2024-04-08T01:45+10:30"]
    );
    let s = sched("daily 01:45", "Australia/Lord_Howe");
    assert_eq!(
        s.next_after(at("2024-04-06T14:50:00Z")),
        Some(at("2024-04-07T15:15:00Z"))
    );
}

#[test]
fn hourly_across_both_transitions() {
    // Spring forward in New York: 01:00 EST (06Z), then 03:00 EDT (07Z): one run an hour.
    let s = sched("@hourly", "America/New_York");
    let runs = fires_between(&s, at("2024-03-10T05:00:00Z"), at("2024-03-10T10:00:00Z"));
    assert_eq!(
        runs,
        [
            at("2024-03-10T05:00:00Z"),
            at("2024-03-10T06:00:00Z"),
            at("2024-03-10T07:00:00Z"),
            at("2024-03-10T08:00:00Z"),
            at("2024-03-10T09:00:00Z"),
        ]
    );
    // `hourly :30`: 02:30 does not exist and is skipped (the pattern fires every hour):
    // 01:30 EST (06:30Z) and 03:30 EDT (07:30Z) are one hour apart.
    let s = sched("hourly :30", "America/New_York");
    let runs = fires_between(&s, at("2024-03-10T05:00:00Z"), at("2024-03-10T09:00:00Z"));
    assert_eq!(
        runs,
        [
            at("2024-03-10T05:30:00Z"),
            at("2024-03-10T06:30:00Z"),
            at("2024-03-10T07:30:00Z"),
            at("2024-03-10T08:30:00Z"),
        ]
    );
    // Fall back: 01:00 local happens twice; it runs once (05Z, EDT), then 02:00 EST (07Z).
    let s = sched("0 * * * *", "America/New_York");
    let runs = fires_between(&s, at("2024-11-03T04:00:00Z"), at("2024-11-03T09:00:00Z"));
    assert_eq!(
        runs,
        [
            at("2024-11-03T04:00:00Z"),
            at("2024-11-03T05:00:00Z"),
            at("2024-11-03T07:00:00Z"),
            at("2024-11-03T08:00:00Z"),
        ]
    );
    // Every local hour of both days runs exactly once.
    for (date, expected) in [("2024-03-10", 23), ("2024-11-03", 24)] {
        let (from, to) = local_day("America/New_York", date);
        let runs = fires_between(&s, from, to);
        assert_eq!(runs.len(), expected, "{date}");
        let hours: BTreeSet<String> = runs
            .iter()
            .map(|t| t.with_timezone(&s.timezone()).format("%H").to_string())
            .collect();
        assert_eq!(hours.len(), expected, "{date}: a local hour ran twice");
    }
    // A restricted-hour pattern (`0 */2`) moves the missing 02:00 to 03:00 instead.
    let s = sched("0 */2 * * *", "America/New_York");
    assert_eq!(
        fires_between(&s, at("2024-03-10T05:00:00Z"), at("2024-03-10T09:00:00Z")),
        [
            at("2024-03-10T05:00:00Z"),
            at("2024-03-10T07:00:00Z"),
            at("2024-03-10T08:00:00Z")
        ]
    );
}

/// Check a `*/15` schedule over one local day: every local quarter-hour that exists runs
/// exactly once, and no other time runs.
fn check_quarter_hours(tz: &str, date: &str, expected_runs: usize, missing: &[&str]) {
    let s = sched("*/15 * * * *", tz);
    let zone = s.timezone();
    let (from, to) = local_day(tz, date);
    let runs = fires_between(&s, from, to);
    let locals: Vec<String> = runs
        .iter()
        .map(|t| t.with_timezone(&zone).format("%H:%M").to_string())
        .collect();
    let unique: BTreeSet<&String> = locals.iter().collect();
    assert_eq!(
        unique.len(),
        locals.len(),
        "{tz} {date}: a quarter-hour ran twice"
    );
    assert_eq!(runs.len(), expected_runs, "{tz} {date}: {locals:?}");
    for h in 0..24 {
        for m in [0, 15, 30, 45] {
            let q = format!("{h:02}:{m:02}");
            assert_eq!(
                unique.contains(&q),
                !missing.contains(&q.as_str()),
                "{tz} {date}: quarter-hour {q}"
            );
        }
    }
    // Strictly increasing and no two runs closer than 15 minutes.
    for w in runs.windows(2) {
        assert!(w[1] - w[0] >= Duration::minutes(15), "{tz} {date}: {w:?}");
    }
}

#[test]
fn every_fifteen_minutes_across_both_transitions() {
    let ny_gap = ["02:00", "02:15", "02:30", "02:45"];
    check_quarter_hours("America/New_York", "2024-03-10", 92, &ny_gap);
    check_quarter_hours("America/New_York", "2024-11-03", 96, &[]);
    check_quarter_hours("Europe/Berlin", "2024-03-31", 92, &ny_gap);
    check_quarter_hours("Europe/Berlin", "2024-10-27", 96, &[]);
    check_quarter_hours("Australia/Lord_Howe", "2024-10-06", 94, &["02:00", "02:15"]);
    check_quarter_hours("Australia/Lord_Howe", "2024-04-07", 96, &[]);
    check_quarter_hours("UTC", "2024-03-31", 96, &[]);
    check_quarter_hours("Asia/Manila", "2024-03-10", 96, &[]);
    // In UTC terms, spring forward loses nothing: quarter-hours are contiguous.
    let s = sched("*/15 * * * *", "America/New_York");
    let runs = fires_between(&s, at("2024-03-10T06:00:00Z"), at("2024-03-10T08:00:00Z"));
    assert_eq!(runs.len(), 8);
    for w in runs.windows(2) {
        assert_eq!(w[1] - w[0], Duration::minutes(15));
    }
    // Fall back: the repeated hour does not run again (01:45 EDT → 02:00 EST is 75 min).
    let runs = fires_between(&s, at("2024-11-03T05:30:00Z"), at("2024-11-03T07:30:00Z"));
    assert_eq!(
        runs,
        [
            at("2024-11-03T05:30:00Z"),
            at("2024-11-03T05:45:00Z"),
            at("2024-11-03T07:00:00Z"),
            at("2024-11-03T07:15:00Z"),
        ]
    );
}

#[test]
fn weekly_and_monthly_in_a_gap_run_at_the_gap_end() {
    // 31 March 2024 is a Sunday and the last day of the month.
    assert_eq!(
        next_local(
            "weekly sun 02:15",
            "Europe/Berlin",
            "2024-03-30T00:00:00Z",
            2
        ),
        ["2024-03-31T03:00+02:00", "2024-04-07T02:15+02:00"]
    );
    assert_eq!(
        next_local(
            "monthly last 02:45",
            "Europe/Berlin",
            "2024-03-30T00:00:00Z",
            2
        ),
        ["2024-03-31T03:00+02:00", "2024-04-30T02:45+02:00"]
    );
    // Several missing times that collapse onto one instant run once.
    let s = sched("0,20,40 2 * * *", "Europe/Berlin");
    assert_eq!(
        fires_between(&s, at("2024-03-30T12:00:00Z"), at("2024-04-01T12:00:00Z")),
        [
            at("2024-03-31T01:00:00Z"),
            at("2024-04-01T00:00:00Z"),
            at("2024-04-01T00:20:00Z"),
            at("2024-04-01T00:40:00Z")
        ]
    );
}

/// Simulate a year of a daily schedule by following `next_after` from run to run.
fn year_of_daily(spec: &str, tz: &str, year: i32) -> Vec<DateTime<Utc>> {
    let s = sched(spec, tz);
    let (from, _) = local_day(tz, &format!("{year}-01-01"));
    let (_, to) = local_day(tz, &format!("{year}-12-31"));
    fires_between(&s, from, to)
}

#[test]
fn a_year_of_daily_runs_is_365_or_366() {
    for tz in [
        "UTC",
        "America/New_York",
        "Europe/Berlin",
        "Asia/Manila",
        "Australia/Lord_Howe",
    ] {
        for spec in [
            "daily 02:30",
            "daily 02:00",
            "daily 01:30",
            "daily 01:45",
            "daily 00:00",
        ] {
            for (year, days) in [(2023, 365), (2024, 366)] {
                let runs = year_of_daily(spec, tz, year);
                assert_eq!(runs.len(), days, "{spec} in {tz}, {year}");
                let zone: Tz = tz.parse().unwrap();
                let dates: BTreeSet<String> = runs
                    .iter()
                    .map(|t| t.with_timezone(&zone).format("%Y-%m-%d").to_string())
                    .collect();
                assert_eq!(dates.len(), days, "{spec} in {tz}, {year}: a day ran twice");
            }
        }
    }
}

#[test]
fn a_year_of_ticks_runs_each_day_once() {
    // A scheduler loop ticking every 10 minutes with a fake clock, through both Berlin
    // transitions: `due_runs` says "run" exactly once a day.
    let s = sched("daily 02:30", "Europe/Berlin");
    let mut now = at("2024-01-01T00:00:00Z");
    let end = at("2025-01-01T00:00:00Z");
    let mut last_planned = now;
    let mut runs = 0;
    while now < end {
        let c = s.due_runs(last_planned, now, Duration::hours(1));
        if c.run_now {
            runs += 1;
            last_planned = c.planned_for.unwrap();
        }
        now += Duration::minutes(10);
    }
    assert_eq!(runs, 366);
}
