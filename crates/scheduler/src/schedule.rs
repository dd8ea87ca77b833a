//! A parsed schedule in a time zone: when it next fires, and what to do about runs missed
//! while the service was down.
//!
//! All instants are UTC; patterns are matched against the local wall clock of the
//! schedule's IANA time zone, with the daylight-saving rules documented in the crate root.
//! What it must not do: read the system clock, sleep, or do any I/O. The caller passes
//! "now" in, so every result is reproducible in a test.

use std::fmt;

use chrono::{
    DateTime, Datelike, Duration, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, TimeZone,
    Timelike, Utc,
};
use chrono_tz::Tz;

use crate::error::ScheduleError;
use crate::pattern::{self, Pattern};

/// How far ahead `next_after` searches. A valid pattern fires at least once every 8 years
/// (29 February skips at most one leap year, e.g. 2096 → 2104), so 9 years is enough.
const SEARCH_YEARS: i32 = 9;

/// A schedule: a pattern of local wall-clock times in a time zone.
#[derive(Clone, PartialEq, Eq)]
pub struct Schedule {
    spec: String,
    tz: Tz,
    pattern: Pattern,
}

impl fmt::Debug for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Schedule({:?} in {})", self.spec, self.tz.name())
    }
}

impl fmt::Display for Schedule {
    /// `daily 02:30 (Europe/Berlin)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.spec, self.tz.name())
    }
}

/// What to do at start-up (or at any tick) about fire times since the last planned run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Catchup {
    /// Run once now: at least one fire time in `(last_planned, now]` was not run, and the most
    /// recent such time is within the catch-up window. However many were missed, this is one
    /// run.
    pub run_now: bool,
    /// The fire time the run stands for (the most recent one within the window), when
    /// `run_now`; record it as the new "last planned" time.
    pub planned_for: Option<DateTime<Utc>>,
    /// Whether any fire time in `(last_planned, now]` passed at all, including ones too old to
    /// catch up (worth a warning: "the 02:00 run was missed and is not made up").
    pub missed_any: bool,
    /// The next regular fire time strictly after `now` (`None` only past the year 262,000).
    pub next: Option<DateTime<Utc>>,
}

/// Parse an IANA time-zone name (`UTC`, `Europe/Berlin`, …) from the compiled-in database.
pub fn parse_timezone(name: &str) -> Result<Tz, ScheduleError> {
    let trimmed = name.trim();
    if let Ok(tz) = trimmed.parse::<Tz>() {
        return Ok(tz);
    }
    let hint = chrono_tz::TZ_VARIANTS
        .iter()
        .find(|tz| tz.name().eq_ignore_ascii_case(trimmed))
        .map(|tz| format!(" (did you mean `{}`?)", tz.name()))
        .unwrap_or_default();
    Err(ScheduleError::UnknownTimeZone {
        name: name.to_string(),
        hint,
    })
}

/// The smallest set bit of `bits` at or above `from`.
fn next_bit(bits: u64, from: u32) -> Option<u32> {
    if from >= 64 {
        return None;
    }
    let rest = bits >> from;
    (rest != 0).then(|| from + rest.trailing_zeros())
}

fn midnight(date: NaiveDate) -> NaiveDateTime {
    date.and_time(NaiveTime::MIN)
}

fn first_of_next_month(date: NaiveDate) -> Option<NaiveDate> {
    if date.month() == 12 {
        NaiveDate::from_ymd_opt(date.year().checked_add(1)?, 1, 1)
    } else {
        NaiveDate::from_ymd_opt(date.year(), date.month() + 1, 1)
    }
}

impl Schedule {
    /// Parse a schedule: a 5-field cron expression (numbers, ranges `a-b`, lists, steps `*/n`
    /// and `a-b/n`, names `JAN`-`DEC` and `SUN`-`SAT`), a preset (`@hourly`, `@daily`,
    /// `@weekly`, `@monthly`, `@yearly`) or a simple form (`daily 02:30`, `weekly sun 02:30`,
    /// `monthly 1 02:30`, `monthly last 02:30`, `hourly :15`), in the IANA time zone `tz`.
    pub fn parse(spec: &str, tz: &str) -> Result<Schedule, ScheduleError> {
        let pattern = pattern::parse(spec)?;
        let tz = parse_timezone(tz)?;
        Ok(Schedule {
            spec: spec.trim().to_string(),
            tz,
            pattern,
        })
    }

    /// The specification as given (trimmed).
    pub fn spec(&self) -> &str {
        &self.spec
    }

    /// The time zone.
    pub fn timezone(&self) -> Tz {
        self.tz
    }

    /// The time zone's IANA name.
    pub fn timezone_name(&self) -> &'static str {
        self.tz.name()
    }

    /// The first fire time strictly after `t`, or `None` if there is none before the end of
    /// chrono's calendar (a parsed schedule always fires again within 8 years).
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = t.with_timezone(&self.tz).naive_local();
        // Start at the local minute containing `t`: every earlier local minute resolves to an
        // instant at or before `t` (resolution is monotonic), so nothing is missed.
        let mut n = local.with_second(0)?.with_nanosecond(0)?;
        let last_year = n.year().checked_add(SEARCH_YEARS)?;
        let p = &self.pattern;
        loop {
            if n.year() > last_year {
                return None;
            }
            let date = n.date();
            if p.months & (1 << date.month()) == 0 {
                n = midnight(first_of_next_month(date)?);
                continue;
            }
            if !p.days.matches(date) {
                n = midnight(date.succ_opt()?);
                continue;
            }
            let Some(hour) = next_bit(u64::from(p.hours), n.hour()) else {
                n = midnight(date.succ_opt()?);
                continue;
            };
            let from_minute = if hour == n.hour() { n.minute() } else { 0 };
            let Some(minute) = next_bit(p.minutes, from_minute) else {
                // No minute left in this hour: try the next hour (or the next day).
                n = match hour.checked_add(1).filter(|h| *h < 24) {
                    Some(h) => date.and_hms_opt(h, 0, 0)?,
                    None => midnight(date.succ_opt()?),
                };
                continue;
            };
            n = date.and_hms_opt(hour, minute, 0)?;
            if let Some(at) = self.resolve(n)
                && at > t
            {
                return Some(at);
            }
            n = n.checked_add_signed(Duration::minutes(1))?;
        }
    }

    /// An iterator over the fire times strictly after `t`.
    pub fn upcoming(&self, t: DateTime<Utc>) -> impl Iterator<Item = DateTime<Utc>> + '_ {
        let mut at = t;
        std::iter::from_fn(move || {
            let next = self.next_after(at)?;
            at = next;
            Some(next)
        })
    }

    /// Decide what to do about fire times after `last_planned` (the fire time of the last run
    /// that was started, or when the schedule was created) as of `now`.
    ///
    /// A run missed while the service was down runs ONCE, at start-up, if the most recent
    /// missed fire time is at most `catch_up_window` before `now`; older misses are not made
    /// up (but reported in `missed_any`). A fire time equal to `now` counts as due. Calling
    /// this on every tick of the scheduler gives the normal behaviour as well.
    pub fn due_runs(
        &self,
        last_planned: DateTime<Utc>,
        now: DateTime<Utc>,
        catch_up_window: Duration,
    ) -> Catchup {
        let window = catch_up_window.max(Duration::zero());
        let next = self.next_after(now.max(last_planned));
        let first_missed = self.next_after(last_planned).filter(|m| *m <= now);
        if first_missed.is_none() {
            return Catchup {
                run_now: false,
                planned_for: None,
                missed_any: false,
                next,
            };
        }
        // The most recent fire time in (max(last_planned, now - window), now]; scanning only
        // the window keeps this cheap however long the service was down.
        let window_start = now
            .checked_sub_signed(window)
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
        // `next_after` is strict, so step back a nanosecond to include a fire time exactly at
        // the window's start.
        let from = window_start
            .checked_sub_signed(Duration::nanoseconds(1))
            .unwrap_or(window_start)
            .max(last_planned);
        let mut planned_for = None;
        for at in self.upcoming(from) {
            if at > now {
                break;
            }
            planned_for = Some(at);
        }
        Catchup {
            run_now: planned_for.is_some(),
            planned_for,
            missed_any: true,
            next,
        }
    }

    /// The instant a local wall-clock time fires at, by the daylight-saving rules:
    /// - an unambiguous local time fires at its one instant;
    /// - a local time that occurs twice (fall-back overlap) fires at its first occurrence;
    /// - a local time that does not exist (spring-forward gap) fires at the first instant
    ///   after the gap, unless the pattern fires every hour, in which case it is skipped.
    fn resolve(&self, local: NaiveDateTime) -> Option<DateTime<Utc>> {
        match self.tz.from_local_datetime(&local) {
            LocalResult::Single(at) => Some(at.with_timezone(&Utc)),
            LocalResult::Ambiguous(a, b) => Some(a.with_timezone(&Utc).min(b.with_timezone(&Utc))),
            LocalResult::None => {
                if self.pattern.every_hour() {
                    None
                } else {
                    self.gap_end(local)
                }
            }
        }
    }

    /// The first instant whose local wall-clock time is later than `local`, which lies in a
    /// gap: that is the transition instant that ends the gap (e.g. 03:00 local on a day whose
    /// clocks jump from 02:00 to 03:00).
    fn gap_end(&self, local: NaiveDateTime) -> Option<DateTime<Utc>> {
        let wall = |secs: i64| {
            DateTime::<Utc>::from_timestamp(secs, 0)
                .map(|at| at.with_timezone(&self.tz).naive_local())
        };
        // UTC offsets lie within -12h..+14h, so these bracket the answer:
        // wall(lo) <= local - 2h and wall(hi) >= local + 4h. Transitions fall on whole
        // seconds, so the search runs over whole seconds.
        let centre = local.and_utc().timestamp();
        let mut lo = centre.checked_sub(16 * 3600)?;
        let mut hi = centre.checked_add(16 * 3600)?;
        if wall(lo)? >= local || wall(hi)? <= local {
            return None;
        }
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if wall(mid)? > local {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        DateTime::<Utc>::from_timestamp(hi, 0)
    }
}
