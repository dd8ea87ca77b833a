//! Missed runs: a run missed while the service was down runs once at start-up if the most
//! recent missed time is within the catch-up window, never several times.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

use chrono::{DateTime, Duration, Utc};
use strongroom_scheduler::{Catchup, Schedule};

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .unwrap_or_else(|e| panic!("bad test instant {s}: {e}"))
        .with_timezone(&Utc)
}

fn daily() -> Schedule {
    Schedule::parse("daily 02:00", "UTC").unwrap()
}

#[test]
fn nothing_missed() {
    let c = daily().due_runs(
        at("2024-05-05T02:00:00Z"),
        at("2024-05-05T10:00:00Z"),
        Duration::hours(12),
    );
    assert_eq!(
        c,
        Catchup {
            run_now: false,
            planned_for: None,
            missed_any: false,
            next: Some(at("2024-05-06T02:00:00Z")),
        }
    );
}

#[test]
fn missed_within_the_window_runs_once() {
    // Down from 1 May to 5 May 10:00: four runs missed, one catch-up run (for 5 May 02:00).
    let c = daily().due_runs(
        at("2024-05-01T02:00:00Z"),
        at("2024-05-05T10:00:00Z"),
        Duration::hours(12),
    );
    assert_eq!(
        c,
        Catchup {
            run_now: true,
            planned_for: Some(at("2024-05-05T02:00:00Z")),
            missed_any: true,
            next: Some(at("2024-05-06T02:00:00Z")),
        }
    );
    // After the catch-up run is recorded, nothing more is due: never a second run.
    let again = daily().due_runs(
        c.planned_for.unwrap(),
        at("2024-05-05T10:01:00Z"),
        Duration::hours(12),
    );
    assert!(!again.run_now);
    assert!(!again.missed_any);
}

#[test]
fn missed_beyond_the_window_is_not_made_up() {
    let c = daily().due_runs(
        at("2024-05-01T02:00:00Z"),
        at("2024-05-05T10:00:00Z"),
        Duration::hours(6),
    );
    assert_eq!(
        c,
        Catchup {
            run_now: false,
            planned_for: None,
            missed_any: true,
            next: Some(at("2024-05-06T02:00:00Z")),
        }
    );
}

#[test]
fn window_edges() {
    // Exactly at the edge of the window: still caught up.
    let c = daily().due_runs(
        at("2024-05-04T02:00:00Z"),
        at("2024-05-05T08:00:00Z"),
        Duration::hours(6),
    );
    assert!(c.run_now);
    assert_eq!(c.planned_for, Some(at("2024-05-05T02:00:00Z")));
    // One second past it: not.
    let c = daily().due_runs(
        at("2024-05-04T02:00:00Z"),
        at("2024-05-05T08:00:01Z"),
        Duration::hours(6),
    );
    assert!(!c.run_now && c.missed_any);
    // A fire time equal to now is due (the ordinary tick), even with a zero window.
    let c = daily().due_runs(
        at("2024-05-04T02:00:00Z"),
        at("2024-05-05T02:00:00Z"),
        Duration::zero(),
    );
    assert!(c.run_now);
    assert_eq!(c.planned_for, Some(at("2024-05-05T02:00:00Z")));
    assert_eq!(c.next, Some(at("2024-05-06T02:00:00Z")));
    // A negative window is a zero window.
    let c = daily().due_runs(
        at("2024-05-04T02:00:00Z"),
        at("2024-05-05T02:00:01Z"),
        Duration::hours(-3),
    );
    assert!(!c.run_now && c.missed_any);
}

#[test]
fn many_missed_frequent_runs_make_one_run() {
    // Every 5 minutes, down for three days: one run, for the most recent missed time.
    let s = Schedule::parse("*/5 * * * *", "Europe/Berlin").unwrap();
    let c = s.due_runs(
        at("2024-05-01T00:00:00Z"),
        at("2024-05-04T00:07:00Z"),
        Duration::hours(1),
    );
    assert!(c.run_now);
    assert_eq!(c.planned_for, Some(at("2024-05-04T00:05:00Z")));
    assert_eq!(c.next, Some(at("2024-05-04T00:10:00Z")));
}

#[test]
fn last_planned_in_the_future_is_harmless() {
    // A clock that went backwards: nothing is due, the next run is after last_planned.
    let c = daily().due_runs(
        at("2024-05-06T02:00:00Z"),
        at("2024-05-05T10:00:00Z"),
        Duration::hours(12),
    );
    assert!(!c.run_now && !c.missed_any);
    assert_eq!(c.next, Some(at("2024-05-07T02:00:00Z")));
}

#[test]
fn start_up_after_downtime_across_a_dst_change() {
    // Berlin, daily 02:30; down from 30 March to 31 March 01:30Z. The 31 March run (moved to
    // 03:00 CEST = 01:00Z by the gap) is caught up once.
    let s = Schedule::parse("daily 02:30", "Europe/Berlin").unwrap();
    let c = s.due_runs(
        at("2024-03-29T01:30:00Z"),
        at("2024-03-31T01:30:00Z"),
        Duration::hours(2),
    );
    assert!(c.run_now);
    assert_eq!(c.planned_for, Some(at("2024-03-31T01:00:00Z")));
    assert_eq!(c.next, Some(at("2024-04-01T00:30:00Z")));
}
