//! The calendar pattern a schedule matches (minutes, hours, days, months) and the parsers
//! that build it: 5-field cron (Vixie semantics), `@` presets and the simple forms.
//!
//! A pattern is pure data over local wall-clock times; it knows nothing of time zones or
//! daylight saving (that is `schedule.rs`). What it must not do: accept an expression it
//! cannot evaluate exactly, or guess at an ambiguous one.

use chrono::{Datelike, NaiveDate};

use crate::error::ScheduleError;

/// Which days a pattern fires on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DayRule {
    /// Cron's day-of-month and day-of-week fields with Vixie semantics: when both are
    /// restricted (neither starts with `*`), a day matches if EITHER matches; otherwise the
    /// restricted one decides (and with both `*`, every day).
    Cron {
        /// Bits 1..=31.
        dom: u32,
        /// Bits 0..=6, Sunday = 0.
        dow: u8,
        /// The day-of-month field started with `*`.
        dom_star: bool,
        /// The day-of-week field started with `*`.
        dow_star: bool,
    },
    /// `monthly N`: day N, or the month's last day in months shorter than N.
    MonthDay(u32),
    /// `monthly last`: the last day of every month.
    LastDay,
}

impl DayRule {
    /// Whether `date` is a firing day.
    pub(crate) fn matches(self, date: NaiveDate) -> bool {
        match self {
            DayRule::Cron {
                dom,
                dow,
                dom_star,
                dow_star,
            } => {
                let dom_hit = dom & (1 << date.day()) != 0;
                let dow_hit = dow & (1 << date.weekday().num_days_from_sunday()) != 0;
                if dom_star || dow_star {
                    dom_hit && dow_hit
                } else {
                    dom_hit || dow_hit
                }
            }
            DayRule::MonthDay(n) => date.day() == n.min(days_in_month(date.year(), date.month())),
            DayRule::LastDay => date.day() == days_in_month(date.year(), date.month()),
        }
    }
}

/// A calendar pattern over local wall-clock minutes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Pattern {
    /// Bits 0..=59.
    pub(crate) minutes: u64,
    /// Bits 0..=23.
    pub(crate) hours: u32,
    /// Bits 1..=12.
    pub(crate) months: u16,
    /// The day rule.
    pub(crate) days: DayRule,
}

const ALL_MINUTES: u64 = (1 << 60) - 1;
const ALL_HOURS: u32 = (1 << 24) - 1;
const ALL_MONTHS: u16 = 0b1_1111_1111_1110;
const ALL_DOM: u32 = 0xFFFF_FFFE;
const ALL_DOW: u8 = 0x7F;

impl Pattern {
    /// Whether the pattern fires in every hour of the day (hour field `*`): such schedules
    /// skip wall-clock times that do not exist rather than moving them (see the crate docs).
    pub(crate) fn every_hour(&self) -> bool {
        self.hours == ALL_HOURS
    }

    fn at(minute: u32, hour: u32, days: DayRule) -> Pattern {
        Pattern {
            minutes: 1 << minute,
            hours: 1 << hour,
            months: ALL_MONTHS,
            days,
        }
    }

    fn every_day() -> DayRule {
        DayRule::Cron {
            dom: ALL_DOM,
            dow: ALL_DOW,
            dom_star: true,
            dow_star: true,
        }
    }
}

/// The number of days in a month of a year (proleptic Gregorian).
pub(crate) fn days_in_month(year: i32, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ => {
            if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 {
                29
            } else {
                28
            }
        }
    }
}

const MONTH_NAMES: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const DAY_NAMES: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];
const DAY_FULL_NAMES: [&str; 7] = [
    "sunday",
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
];

/// Static description of one cron field.
struct Field {
    position: usize,
    name: &'static str,
    min: u32,
    max: u32,
    /// Names for values `names_base..`, lower-case three letters.
    names: &'static [&'static str],
    names_base: u32,
    example: &'static str,
}

const FIELDS: [Field; 5] = [
    Field {
        position: 1,
        name: "minute",
        min: 0,
        max: 59,
        names: &[],
        names_base: 0,
        example: "*/15",
    },
    Field {
        position: 2,
        name: "hour",
        min: 0,
        max: 23,
        names: &[],
        names_base: 0,
        example: "2",
    },
    Field {
        position: 3,
        name: "day of month",
        min: 1,
        max: 31,
        names: &[],
        names_base: 0,
        example: "1,15",
    },
    Field {
        position: 4,
        name: "month",
        min: 1,
        max: 12,
        names: &MONTH_NAMES,
        names_base: 1,
        example: "JAN-MAR",
    },
    Field {
        position: 5,
        name: "day of week",
        min: 0,
        max: 7,
        names: &DAY_NAMES,
        names_base: 0,
        example: "MON-FRI",
    },
];

impl Field {
    fn error(&self, value: &str, reason: impl Into<String>) -> ScheduleError {
        ScheduleError::CronField {
            position: self.position,
            field: self.name,
            value: value.to_string(),
            reason: reason.into(),
            example: self.example,
        }
    }

    fn value(&self, whole: &str, text: &str) -> Result<u32, ScheduleError> {
        if text.is_empty() {
            return Err(self.error(whole, "a value is missing"));
        }
        if text.bytes().all(|b| b.is_ascii_digit()) {
            let v: u32 = text
                .parse()
                .map_err(|_| self.error(whole, format!("`{text}` is too large")))?;
            if v < self.min || v > self.max {
                return Err(self.error(
                    whole,
                    format!("{v} is out of range ({}-{})", self.min, self.max),
                ));
            }
            return Ok(v);
        }
        let lower = text.to_ascii_lowercase();
        if let Some(i) = self.names.iter().position(|n| *n == lower) {
            // `i` < 12, so the cast is lossless.
            return Ok(self.names_base + i as u32);
        }
        let reason = if self.names.is_empty() {
            format!("`{text}` is not a number")
        } else {
            format!(
                "`{text}` is neither a number nor a name ({})",
                self.names
                    .iter()
                    .map(|n| n.to_ascii_uppercase())
                    .collect::<Vec<_>>()
                    .join(" ")
            )
        };
        Err(self.error(whole, reason))
    }

    /// Parse a whole field into a bit set (bit `v` set for each selected value `v`).
    fn parse(&self, text: &str) -> Result<u64, ScheduleError> {
        let mut bits = 0u64;
        for item in text.split(',') {
            if item.is_empty() {
                return Err(self.error(text, "an empty list item (stray comma)"));
            }
            let (base, step) = match item.split_once('/') {
                Some((b, s)) => (b, Some(s)),
                None => (item, None),
            };
            let (lo, hi) = if base == "*" {
                (self.min, self.max)
            } else if let Some((a, b)) = base.split_once('-') {
                let a = self.value(text, a)?;
                let b = self.value(text, b)?;
                if a > b {
                    return Err(self.error(
                        text,
                        format!(
                            "the range `{base}` runs backwards (ranges do not wrap around); write it as two ranges, `{a}-{},{}-{b}`",
                            self.max, self.min
                        ),
                    ));
                }
                (a, b)
            } else {
                let a = self.value(text, base)?;
                // `a/n` is read as `a-max/n`, as most crons do.
                (a, if step.is_some() { self.max } else { a })
            };
            let step = match step {
                None => 1,
                Some(s) => {
                    let span = self.max - self.min;
                    let n: u32 = if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
                        s.parse().unwrap_or(0)
                    } else {
                        return Err(self.error(text, format!("the step `/{s}` is not a number")));
                    };
                    if n == 0 || n > span {
                        return Err(self.error(
                            text,
                            format!("the step `/{s}` must be between 1 and {span}"),
                        ));
                    }
                    n
                }
            };
            let mut v = lo;
            while v <= hi {
                bits |= 1 << v;
                v += step;
            }
        }
        Ok(bits)
    }
}

/// Parse a 5-field cron expression (already split on whitespace).
fn parse_cron(spec: &str, fields: &[&str]) -> Result<Pattern, ScheduleError> {
    if fields.len() != 5 {
        return Err(ScheduleError::FieldCount {
            spec: spec.to_string(),
            found: fields.len(),
        });
    }
    let mut bits = [0u64; 5];
    for ((slot, field), text) in bits.iter_mut().zip(FIELDS.iter()).zip(fields) {
        *slot = field.parse(text)?;
    }
    let [minutes, hours, dom, months, dow] = bits;
    // Sunday may be written 0 or 7.
    let dow = (dow | (dow >> 7)) & u64::from(ALL_DOW);
    let pattern = Pattern {
        minutes: minutes & ALL_MINUTES,
        hours: (hours as u32) & ALL_HOURS,
        months: (months as u16) & ALL_MONTHS,
        days: DayRule::Cron {
            dom: (dom as u32) & ALL_DOM,
            dow: dow as u8,
            dom_star: fields[2].starts_with('*'),
            dow_star: fields[4].starts_with('*'),
        },
    };
    check_can_fire(spec, &pattern)?;
    Ok(pattern)
}

/// Reject day-of-month/month combinations that never occur (e.g. `0 0 30 2 *`).
fn check_can_fire(spec: &str, p: &Pattern) -> Result<(), ScheduleError> {
    let DayRule::Cron {
        dom,
        dom_star,
        dow_star,
        ..
    } = p.days
    else {
        return Ok(());
    };
    // Only when the day-of-month alone decides (day of week is `*`, or both are `*`).
    if !dow_star || dom_star {
        return Ok(());
    }
    let possible = (1..=12u32).any(|m| {
        p.months & (1 << m) != 0 && (1..=days_in_month(2000, m)).any(|d| dom & (1 << d) != 0)
    });
    if possible {
        Ok(())
    } else {
        Err(ScheduleError::NeverRuns {
            spec: spec.to_string(),
            reason: "none of the chosen days of the month exists in the chosen months".into(),
        })
    }
}

/// Parse `HH:MM` (hour 0-23, two-digit minute).
fn parse_hh_mm(text: &str) -> Option<(u32, u32)> {
    let (h, m) = text.split_once(':')?;
    if h.is_empty() || h.len() > 2 || m.len() != 2 {
        return None;
    }
    if !h.bytes().chain(m.bytes()).all(|b| b.is_ascii_digit()) {
        return None;
    }
    let h: u32 = h.parse().ok()?;
    let m: u32 = m.parse().ok()?;
    (h < 24 && m < 60).then_some((h, m))
}

fn simple_error(spec: &str, reason: impl Into<String>, example: &'static str) -> ScheduleError {
    ScheduleError::SimpleForm {
        spec: spec.to_string(),
        reason: reason.into(),
        example,
    }
}

fn parse_weekday(text: &str) -> Option<u32> {
    let lower = text.to_ascii_lowercase();
    if let Some(i) = DAY_NAMES.iter().position(|n| *n == lower) {
        return u32::try_from(i).ok();
    }
    if let Some(i) = DAY_FULL_NAMES.iter().position(|n| *n == lower) {
        return u32::try_from(i).ok();
    }
    match lower.as_str() {
        "0" | "7" => Some(0),
        "1" | "2" | "3" | "4" | "5" | "6" => lower.parse().ok(),
        _ => None,
    }
}

/// Parse the simple forms: `daily HH:MM`, `weekly DOW HH:MM`, `monthly D|last HH:MM`,
/// `hourly :MM`.
fn parse_simple(spec: &str, words: &[&str]) -> Result<Pattern, ScheduleError> {
    let keyword = words
        .first()
        .map(|w| w.to_ascii_lowercase())
        .unwrap_or_default();
    let bad_time = |w: &str| format!("`{w}` is not a time of day as HH:MM (00:00 to 23:59)");
    match keyword.as_str() {
        "daily" => {
            const EX: &str = "daily 02:30";
            let [_, time] = words else {
                return Err(simple_error(spec, "expected `daily HH:MM`", EX));
            };
            let (h, m) = parse_hh_mm(time).ok_or_else(|| simple_error(spec, bad_time(time), EX))?;
            Ok(Pattern::at(m, h, Pattern::every_day()))
        }
        "weekly" => {
            const EX: &str = "weekly sun 02:30";
            let [_, day, time] = words else {
                return Err(simple_error(spec, "expected `weekly DAY HH:MM`", EX));
            };
            let d = parse_weekday(day).ok_or_else(|| {
                simple_error(
                    spec,
                    format!("`{day}` is not a day of the week (sun, mon, tue, wed, thu, fri, sat)"),
                    EX,
                )
            })?;
            let (h, m) = parse_hh_mm(time).ok_or_else(|| simple_error(spec, bad_time(time), EX))?;
            Ok(Pattern::at(
                m,
                h,
                DayRule::Cron {
                    dom: ALL_DOM,
                    dow: 1 << d,
                    dom_star: true,
                    dow_star: false,
                },
            ))
        }
        "monthly" => {
            const EX: &str = "monthly 1 02:30";
            let [_, day, time] = words else {
                return Err(simple_error(spec, "expected `monthly DAY HH:MM`", EX));
            };
            let rule = if day.eq_ignore_ascii_case("last") {
                DayRule::LastDay
            } else {
                match day.parse::<u32>() {
                    Ok(d) if (1..=31).contains(&d) && day.bytes().all(|b| b.is_ascii_digit()) => {
                        DayRule::MonthDay(d)
                    }
                    _ => {
                        return Err(simple_error(
                            spec,
                            format!("`{day}` is not a day of the month (1 to 31, or `last`)"),
                            EX,
                        ));
                    }
                }
            };
            let (h, m) = parse_hh_mm(time).ok_or_else(|| simple_error(spec, bad_time(time), EX))?;
            Ok(Pattern::at(m, h, rule))
        }
        "hourly" => {
            const EX: &str = "hourly :15";
            let [_, minute] = words else {
                return Err(simple_error(spec, "expected `hourly :MM`", EX));
            };
            let m = minute
                .strip_prefix(':')
                .filter(|m| m.len() == 2 && m.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|m| m.parse::<u32>().ok())
                .filter(|m| *m < 60)
                .ok_or_else(|| {
                    simple_error(
                        spec,
                        format!("`{minute}` is not a minute past the hour as :MM (:00 to :59)"),
                        EX,
                    )
                })?;
            Ok(Pattern {
                minutes: 1 << m,
                hours: ALL_HOURS,
                months: ALL_MONTHS,
                days: Pattern::every_day(),
            })
        }
        _ => Err(ScheduleError::Unrecognised {
            spec: spec.to_string(),
        }),
    }
}

/// Parse any accepted form into a pattern.
pub(crate) fn parse(spec: &str) -> Result<Pattern, ScheduleError> {
    let spec = spec.trim();
    if spec.is_empty() {
        return Err(ScheduleError::Empty);
    }
    let words: Vec<&str> = spec.split_whitespace().collect();
    if let Some(preset) = spec.strip_prefix('@') {
        let cron = match preset.to_ascii_lowercase().as_str() {
            "hourly" => "0 * * * *",
            "daily" | "midnight" => "0 0 * * *",
            "weekly" => "0 0 * * 0",
            "monthly" => "0 0 1 * *",
            "yearly" | "annually" => "0 0 1 1 *",
            _ => return Err(ScheduleError::UnknownPreset(spec.to_string())),
        };
        let fields: Vec<&str> = cron.split_whitespace().collect();
        return parse_cron(spec, &fields);
    }
    let first = words.first().copied().unwrap_or_default();
    if first
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic())
        && matches!(
            first.to_ascii_lowercase().as_str(),
            "daily" | "weekly" | "monthly" | "hourly"
        )
    {
        return parse_simple(spec, &words);
    }
    let looks_like_cron = words.iter().all(|w| {
        w.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '*' | '/' | ',' | '-'))
    }) && first
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_digit() || c == '*');
    if looks_like_cron {
        parse_cron(spec, &words)
    } else {
        Err(ScheduleError::Unrecognised {
            spec: spec.to_string(),
        })
    }
}
