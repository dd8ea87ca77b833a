//! Pure schedule logic for Strongroom: parse a schedule, find its next fire time in an IANA
//! time zone, and decide what to do about runs missed while the service was down.
//!
//! There is no clock here, no sleeping and no I/O: every function takes the current instant
//! as an argument, so the job runner owns time and the tests control it completely.
//!
//! # Forms
//!
//! - 5-field cron `minute hour day-of-month month day-of-week`: numbers, ranges `a-b`,
//!   lists `a,b`, steps `*/n`, `a-b/n` (and `a/n`, read as `a-max/n`), month names
//!   `JAN`-`DEC`, weekday names `SUN`-`SAT` (Sunday is 0 or 7). Ranges do not wrap around.
//!   Day of month and day of week follow Vixie cron: if both are restricted (neither field
//!   starts with `*`), a day matches when EITHER matches; if one starts with `*`, the other
//!   decides. An expression that can never fire (`0 0 30 2 *`) is rejected.
//! - Presets: `@hourly`, `@daily` (`@midnight`), `@weekly` (Sunday 00:00), `@monthly` (the
//!   1st, 00:00), `@yearly` (`@annually`, 1 January 00:00).
//! - Simple forms: `daily HH:MM`, `weekly DAY HH:MM` (`sun`…`sat`, full names, or 0-7),
//!   `monthly D HH:MM` (D = 1-31: in months shorter than D it runs on the last day, so
//!   `monthly 31` runs every month) or `monthly last HH:MM`, and `hourly :MM`.
//!
//! # Daylight saving
//!
//! Patterns are matched against the local wall clock of the schedule's time zone. Where the
//! wall clock is not a simple count of minutes:
//!
//! - **Spring forward (gap)**: a local time that does not exist that day (02:30 when clocks
//!   jump from 02:00 to 03:00) runs ONCE at the first instant after the gap, i.e. at the
//!   transition (03:00 new time; 02:30 on Lord Howe Island, whose clocks jump 30 minutes).
//!   Several skipped times collapse into that one run, which is also the run of the first
//!   time after the gap if the pattern has one there. **Exception**: a pattern that fires
//!   every hour (its hour field is `*`, as in `hourly :15`, `@hourly` or `*/15 * * * *`)
//!   simply skips the times that do not exist: its next time after the gap comes within the
//!   hour anyway, so moving the skipped ones would only add an extra run.
//! - **Fall back (overlap)**: a local time that occurs twice (01:30 when clocks go from 02:00
//!   back to 01:00) runs ONCE, at its first occurrence (still in summer time). During the
//!   repeated hour nothing fires again, also for every-hour patterns: each local time runs
//!   at most once a day.
//!
//! So a daily schedule runs exactly once every day, whatever the time zone does, and a year
//! of daily runs is 365 (or 366) runs.
//!
//! # Missed runs
//!
//! [`Schedule::due_runs`] turns "the last planned run" and "now" into one decision: run once
//! now (if the most recent missed fire time is within the catch-up window; never once per
//! missed time) or wait for the next fire time.
//!
//! # Dependencies
//!
//! chrono (already the workspace's time type) and chrono-tz, which compiles the IANA database
//! into the binary: no dependence on the host's `/usr/share/zoneinfo` (absent from slim
//! containers), no run-time loading, and the same answers on every machine. jiff would do the
//! same job but would bring a second date-time type into a workspace that speaks chrono.

mod error;
mod pattern;
mod schedule;

pub use chrono_tz::Tz;
pub use error::{FORMS, ScheduleError};
pub use schedule::{Catchup, Schedule, parse_timezone};
