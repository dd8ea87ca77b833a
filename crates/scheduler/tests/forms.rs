//! Parsing and plain (UTC, no daylight saving) evaluation of every accepted form: cron
//! features, presets, simple forms, "monthly last", leap years, and the errors for bad
//! input. Every test uses fixed instants; nothing reads the clock.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

use chrono::{DateTime, Utc};
use strongroom_scheduler::{Schedule, ScheduleError};

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .unwrap_or_else(|e| panic!("bad test instant {s}: {e}"))
        .with_timezone(&Utc)
}

/// The next `n` fire times after `from`, as `YYYY-MM-DD HH:MM` in UTC.
fn next_n(spec: &str, from: &str, n: usize) -> Vec<String> {
    let s = Schedule::parse(spec, "UTC").unwrap_or_else(|e| panic!("{spec}: {e}"));
    s.upcoming(at(from))
        .take(n)
        .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
        .collect()
}

fn err(spec: &str) -> String {
    match Schedule::parse(spec, "UTC") {
        Ok(s) => panic!("`{spec}` parsed as {s:?}, expected an error"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn every_minute_and_strictly_after() {
    assert_eq!(
        next_n("* * * * *", "2024-05-01T10:00:00Z", 3),
        ["2024-05-01 10:01", "2024-05-01 10:02", "2024-05-01 10:03"]
    );
    // Seconds past a minute: the next whole minute.
    assert_eq!(
        next_n("* * * * *", "2024-05-01T10:00:30Z", 1),
        ["2024-05-01 10:01"]
    );
}

#[test]
fn steps_on_star() {
    assert_eq!(
        next_n("*/15 * * * *", "2024-05-01T10:07:00Z", 4),
        [
            "2024-05-01 10:15",
            "2024-05-01 10:30",
            "2024-05-01 10:45",
            "2024-05-01 11:00"
        ]
    );
    assert_eq!(
        next_n("0 */6 * * *", "2024-05-01T01:00:00Z", 4),
        [
            "2024-05-01 06:00",
            "2024-05-01 12:00",
            "2024-05-01 18:00",
            "2024-05-02 00:00"
        ]
    );
}

#[test]
fn ranges_lists_and_ranged_steps() {
    assert_eq!(
        next_n("0 9-11 * * *", "2024-05-01T10:30:00Z", 3),
        ["2024-05-01 11:00", "2024-05-02 09:00", "2024-05-02 10:00"]
    );
    assert_eq!(
        next_n("5,35 * * * *", "2024-05-01T10:06:00Z", 3),
        ["2024-05-01 10:35", "2024-05-01 11:05", "2024-05-01 11:35"]
    );
    assert_eq!(
        next_n("10-30/10 * * * *", "2024-05-01T10:00:00Z", 4),
        [
            "2024-05-01 10:10",
            "2024-05-01 10:20",
            "2024-05-01 10:30",
            "2024-05-01 11:10"
        ]
    );
    // `a/n` is `a-max/n`.
    assert_eq!(
        next_n("5/20 * * * *", "2024-05-01T10:00:00Z", 4),
        [
            "2024-05-01 10:05",
            "2024-05-01 10:25",
            "2024-05-01 10:45",
            "2024-05-01 11:05"
        ]
    );
    // Lists mixing ranges, steps and single values.
    assert_eq!(
        next_n("0 1,3-4,20-23/2 * * *", "2024-05-01T00:00:00Z", 6),
        [
            "2024-05-01 01:00",
            "2024-05-01 03:00",
            "2024-05-01 04:00",
            "2024-05-01 20:00",
            "2024-05-01 22:00",
            "2024-05-02 01:00"
        ]
    );
}

#[test]
fn month_and_weekday_names() {
    // 2024-05-01 is a Wednesday.
    assert_eq!(
        next_n("0 12 * JAN,JUL MON-FRI", "2024-05-01T00:00:00Z", 3),
        ["2024-07-01 12:00", "2024-07-02 12:00", "2024-07-03 12:00"]
    );
    // Case-insensitive, and the same as numbers.
    assert_eq!(
        next_n("0 12 * jan,jul mon-fri", "2024-05-01T00:00:00Z", 3),
        next_n("0 12 * 1,7 1-5", "2024-05-01T00:00:00Z", 3)
    );
    // Sunday is 0 or 7 or SUN.
    let sundays = next_n("0 0 * * 0", "2024-05-01T00:00:00Z", 3);
    assert_eq!(
        sundays,
        ["2024-05-05 00:00", "2024-05-12 00:00", "2024-05-19 00:00"]
    );
    assert_eq!(next_n("0 0 * * 7", "2024-05-01T00:00:00Z", 3), sundays);
    assert_eq!(next_n("0 0 * * SUN", "2024-05-01T00:00:00Z", 3), sundays);
    assert_eq!(
        next_n("0 0 * * 5-7", "2024-05-01T00:00:00Z", 4),
        [
            "2024-05-03 00:00",
            "2024-05-04 00:00",
            "2024-05-05 00:00",
            "2024-05-10 00:00"
        ]
    );
    assert_eq!(
        next_n("0 0 1 */3 *", "2024-05-01T00:00:00Z", 3),
        ["2024-07-01 00:00", "2024-10-01 00:00", "2025-01-01 00:00"]
    );
}

#[test]
fn vixie_day_of_month_or_day_of_week() {
    // Both restricted: the 13th OR any Friday. September 2024: Fri 6, Fri 13, Fri 20.
    assert_eq!(
        next_n("0 0 13 * FRI", "2024-09-01T00:00:00Z", 4),
        [
            "2024-09-06 00:00",
            "2024-09-13 00:00",
            "2024-09-20 00:00",
            "2024-09-27 00:00"
        ]
    );
    // 2024-10-13 is a Sunday: it matches through the day of month alone.
    assert_eq!(
        next_n("0 0 13 * FRI", "2024-10-05T00:00:00Z", 2),
        ["2024-10-11 00:00", "2024-10-13 00:00"]
    );
    // Day of month starting with `*` (even `*/2`) makes the two fields AND-ed: odd days
    // that are Mondays. May 2024 Mondays: 6, 13, 20, 27; odd among them: 13, 27.
    assert_eq!(
        next_n("0 0 */2 * MON", "2024-05-01T00:00:00Z", 2),
        ["2024-05-13 00:00", "2024-05-27 00:00"]
    );
    // Day of week `*`: the day of month alone decides.
    assert_eq!(
        next_n("0 0 1,15 * *", "2024-05-02T00:00:00Z", 3),
        ["2024-05-15 00:00", "2024-06-01 00:00", "2024-06-15 00:00"]
    );
}

#[test]
fn presets() {
    let from = "2024-05-01T10:30:00Z";
    assert_eq!(
        next_n("@hourly", from, 2),
        ["2024-05-01 11:00", "2024-05-01 12:00"]
    );
    assert_eq!(
        next_n("@daily", from, 2),
        ["2024-05-02 00:00", "2024-05-03 00:00"]
    );
    assert_eq!(next_n("@midnight", from, 1), ["2024-05-02 00:00"]);
    assert_eq!(
        next_n("@weekly", from, 2),
        ["2024-05-05 00:00", "2024-05-12 00:00"]
    );
    assert_eq!(
        next_n("@monthly", from, 2),
        ["2024-06-01 00:00", "2024-07-01 00:00"]
    );
    assert_eq!(
        next_n("@yearly", from, 2),
        ["2025-01-01 00:00", "2026-01-01 00:00"]
    );
    assert_eq!(next_n("@annually", from, 1), ["2025-01-01 00:00"]);
    assert_eq!(next_n("@DAILY", from, 1), ["2024-05-02 00:00"]);
}

#[test]
fn simple_forms() {
    let from = "2024-05-01T10:30:00Z"; // a Wednesday
    assert_eq!(
        next_n("daily 02:00", from, 2),
        ["2024-05-02 02:00", "2024-05-03 02:00"]
    );
    assert_eq!(next_n("daily 2:05", from, 1), ["2024-05-02 02:05"]);
    assert_eq!(next_n("daily 23:59", from, 1), ["2024-05-01 23:59"]);
    assert_eq!(
        next_n("weekly sun 02:00", from, 2),
        ["2024-05-05 02:00", "2024-05-12 02:00"]
    );
    assert_eq!(
        next_n("weekly Wednesday 11:00", from, 1),
        ["2024-05-01 11:00"]
    );
    assert_eq!(next_n("weekly 7 02:00", from, 1), ["2024-05-05 02:00"]);
    assert_eq!(
        next_n("monthly 1 02:00", from, 2),
        ["2024-06-01 02:00", "2024-07-01 02:00"]
    );
    assert_eq!(
        next_n("hourly :15", from, 3),
        ["2024-05-01 11:15", "2024-05-01 12:15", "2024-05-01 13:15"]
    );
    assert_eq!(next_n("  DAILY   02:00 ", from, 1), ["2024-05-02 02:00"]);
    // The simple forms are the cron expressions they stand for.
    assert_eq!(next_n("daily 02:00", from, 5), next_n("0 2 * * *", from, 5));
    assert_eq!(
        next_n("weekly sun 02:00", from, 5),
        next_n("0 2 * * 0", from, 5)
    );
    assert_eq!(next_n("hourly :15", from, 5), next_n("15 * * * *", from, 5));
}

#[test]
fn monthly_last_and_short_months() {
    assert_eq!(
        next_n("monthly last 23:00", "2024-01-01T00:00:00Z", 5),
        [
            "2024-01-31 23:00",
            "2024-02-29 23:00",
            "2024-03-31 23:00",
            "2024-04-30 23:00",
            "2024-05-31 23:00"
        ]
    );
    assert_eq!(
        next_n("monthly LAST 23:00", "2023-02-01T00:00:00Z", 1),
        ["2023-02-28 23:00"]
    );
    // `monthly 31` runs every month, on the last day of shorter months.
    assert_eq!(
        next_n("monthly 31 01:00", "2023-01-01T00:00:00Z", 4),
        [
            "2023-01-31 01:00",
            "2023-02-28 01:00",
            "2023-03-31 01:00",
            "2023-04-30 01:00"
        ]
    );
    // Cron's day 31 keeps cron's meaning: only months that have one.
    assert_eq!(
        next_n("0 1 31 * *", "2023-01-01T00:00:00Z", 3),
        ["2023-01-31 01:00", "2023-03-31 01:00", "2023-05-31 01:00"]
    );
}

#[test]
fn leap_years() {
    assert_eq!(
        next_n("0 0 29 2 *", "2024-03-01T00:00:00Z", 2),
        ["2028-02-29 00:00", "2032-02-29 00:00"]
    );
    // 2100 is not a leap year: eight years between two 29 Februaries.
    assert_eq!(
        next_n("0 0 29 2 *", "2096-03-01T00:00:00Z", 1),
        ["2104-02-29 00:00"]
    );
    // 2000 was.
    assert_eq!(
        next_n("0 0 29 FEB *", "1999-01-01T00:00:00Z", 1),
        ["2000-02-29 00:00"]
    );
    // Feb 29 OR a Monday in February (Vixie): Mondays of February 2025.
    assert_eq!(
        next_n("0 0 29 2 MON", "2024-03-01T00:00:00Z", 2),
        ["2025-02-03 00:00", "2025-02-10 00:00"]
    );
    assert_eq!(
        next_n("monthly 29 00:00", "2023-02-01T00:00:00Z", 2),
        ["2023-02-28 00:00", "2023-03-29 00:00"]
    );
}

#[test]
fn accessors_and_display() {
    let s = Schedule::parse(" daily 02:30 ", "Europe/Berlin").unwrap();
    assert_eq!(s.spec(), "daily 02:30");
    assert_eq!(s.timezone_name(), "Europe/Berlin");
    assert_eq!(s.to_string(), "daily 02:30 (Europe/Berlin)");
    assert_eq!(
        format!("{s:?}"),
        "Schedule(\"daily 02:30\" in Europe/Berlin)"
    );
}

#[test]
fn errors_say_what_is_wrong_and_give_an_example() {
    let cases: &[(&str, &[&str])] = &[
        ("", &["empty", "daily 02:30"]),
        ("   ", &["empty"]),
        ("* * * *", &["5 fields", "has 4", "30 2 * * *"]),
        ("* * * * * *", &["5 fields", "has 6"]),
        (
            "60 * * * *",
            &["field 1 (minute)", "60 is out of range (0-59)", "*/15"],
        ),
        (
            "* 24 * * *",
            &["field 2 (hour)", "24 is out of range (0-23)"],
        ),
        (
            "* * 0 * *",
            &["field 3 (day of month)", "0 is out of range (1-31)"],
        ),
        ("* * 32 * *", &["day of month", "32 is out of range"]),
        (
            "* * * 13 *",
            &["field 4 (month)", "13 is out of range (1-12)", "JAN-MAR"],
        ),
        (
            "* * * * 8",
            &[
                "field 5 (day of week)",
                "8 is out of range (0-7)",
                "MON-FRI",
            ],
        ),
        (
            "* * * FOO *",
            &["month", "`FOO` is neither a number nor a name", "JAN"],
        ),
        ("* * * * FRIDAY", &["day of week", "`FRIDAY`"]),
        ("x * * * *", &["not a schedule"]),
        (
            "*/0 * * * *",
            &["minute", "step `/0` must be between 1 and 59"],
        ),
        ("*/60 * * * *", &["step `/60`"]),
        ("*/x * * * *", &["step `/x` is not a number"]),
        ("30-10 * * * *", &["runs backwards", "30-59,0-10"]),
        ("1,,2 * * * *", &["empty list item"]),
        ("1- * * * *", &["a value is missing"]),
        ("0 0 * * FRI-MON", &["runs backwards", "5-7,0-1"]),
        ("@reboot", &["unknown preset `@reboot`", "@daily"]),
        ("@fortnightly", &["unknown preset"]),
        ("daily", &["expected `daily HH:MM`", "daily 02:30"]),
        (
            "daily 25:00",
            &["`25:00` is not a time of day", "daily 02:30"],
        ),
        ("daily 02:60", &["`02:60` is not a time of day"]),
        ("daily 2pm", &["`2pm` is not a time of day"]),
        ("daily 02:00 03:00", &["expected `daily HH:MM`"]),
        (
            "weekly 02:00",
            &["expected `weekly DAY HH:MM`", "weekly sun 02:30"],
        ),
        (
            "weekly funday 02:00",
            &["`funday` is not a day of the week"],
        ),
        ("weekly 8 02:00", &["`8` is not a day of the week"]),
        (
            "monthly 32 02:00",
            &["`32` is not a day of the month (1 to 31, or `last`)"],
        ),
        ("monthly 0 02:00", &["`0` is not a day of the month"]),
        (
            "monthly first 02:00",
            &["`first` is not a day of the month", "monthly 1 02:30"],
        ),
        ("monthly 02:00", &["expected `monthly DAY HH:MM`"]),
        (
            "hourly 15",
            &["`15` is not a minute past the hour", "hourly :15"],
        ),
        ("hourly :60", &["`:60`"]),
        ("hourly", &["expected `hourly :MM`"]),
        ("every day at 2", &["not a schedule", "daily 02:30"]),
        ("0 0 30 2 *", &["never runs"]),
        ("0 0 31 4,6,9,11 *", &["never runs"]),
    ];
    for (spec, needles) in cases {
        let msg = err(spec);
        for needle in *needles {
            assert!(
                msg.contains(needle),
                "error for `{spec}` should contain `{needle}`, got: {msg}"
            );
        }
    }
}

#[test]
fn unknown_time_zones() {
    let e = Schedule::parse("daily 02:00", "Mars/Olympus").unwrap_err();
    assert!(matches!(e, ScheduleError::UnknownTimeZone { .. }));
    let msg = e.to_string();
    assert!(msg.contains("unknown time zone `Mars/Olympus`"), "{msg}");
    assert!(msg.contains("Europe/Berlin"), "{msg}");
    let msg = Schedule::parse("daily 02:00", "america/new_york")
        .unwrap_err()
        .to_string();
    assert!(msg.contains("did you mean `America/New_York`?"), "{msg}");
    // Valid names, including UTC spellings.
    for tz in [
        "UTC",
        "Etc/UTC",
        "America/New_York",
        "Europe/Berlin",
        "Asia/Manila",
        "Australia/Lord_Howe",
    ] {
        Schedule::parse("daily 02:00", tz).unwrap_or_else(|e| panic!("{tz}: {e}"));
    }
}
