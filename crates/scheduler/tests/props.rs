//! Property test: for random cron expressions, time zones and instants, `next_after(t)` is
//! later than `t`, is itself a fire time, and no fire time lies strictly between them.
//!
//! The oracle is independent of the crate's search: each expression is generated together
//! with the sets of values it selects, and a brute-force walk over every UTC minute decides
//! "is this a fire time" from those sets and the documented daylight-saving rules.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

use chrono::{DateTime, Datelike, Duration, NaiveDateTime, TimeZone, Timelike, Utc};
use proptest::prelude::*;
use strongroom_scheduler::{Schedule, Tz};

/// One generated cron field: its text and the values it selects.
#[derive(Debug, Clone)]
struct Field {
    text: String,
    set: Vec<bool>,
}

/// A strategy for one field over `min..=max` (names optional).
fn field(min: u32, max: u32, names: &'static [&'static str]) -> BoxedStrategy<Field> {
    let size = (max + 1) as usize;
    let name = move |v: u32, use_name: bool| -> String {
        if use_name && !names.is_empty() {
            names[(v - min) as usize].to_string()
        } else {
            v.to_string()
        }
    };
    let star = Just(Field {
        text: "*".into(),
        set: (0..size).map(|v| v as u32 >= min).collect(),
    });
    let star_step = (1..=(max - min).min(12)).prop_map(move |n| Field {
        text: format!("*/{n}"),
        set: (0..size)
            .map(|v| v as u32 >= min && (v as u32 - min).is_multiple_of(n))
            .collect(),
    });
    let single = (min..=max, any::<bool>()).prop_map(move |(a, nm)| Field {
        text: name(a, nm),
        set: (0..size).map(|v| v as u32 == a).collect(),
    });
    let range = (min..=max, min..=max, any::<bool>(), 1u32..4).prop_map(move |(a, b, nm, n)| {
        let (a, b) = (a.min(b), a.max(b));
        let text = if n == 1 || a == b {
            format!("{}-{}", name(a, nm), name(b, nm))
        } else {
            format!("{}-{}/{n}", name(a, nm), name(b, nm))
        };
        let n = if a == b { 1 } else { n };
        Field {
            text,
            set: (0..size)
                .map(|v| {
                    let v = v as u32;
                    v >= a && v <= b && (v - a).is_multiple_of(n)
                })
                .collect(),
        }
    });
    let list = proptest::collection::btree_set(min..=max, 2..4).prop_map(move |vals| Field {
        text: vals
            .iter()
            .map(|v| v.to_string())
            .collect::<Vec<_>>()
            .join(","),
        set: (0..size).map(|v| vals.contains(&(v as u32))).collect(),
    });
    prop_oneof![
        3 => star,
        2 => star_step,
        2 => single,
        2 => range,
        2 => list,
    ]
    .boxed()
}

const MONTHS: &[&str] = &[
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const DAYS: &[&str] = &["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

#[derive(Debug, Clone)]
struct Spec {
    fields: [Field; 5],
}

impl Spec {
    fn text(&self) -> String {
        self.fields
            .iter()
            .map(|f| f.text.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn every_hour(&self) -> bool {
        self.fields[1].set.iter().all(|b| *b)
    }

    /// Does a local wall-clock minute match (Vixie day semantics)?
    fn matches(&self, n: NaiveDateTime) -> bool {
        let [min, hour, dom, month, dow] = &self.fields;
        if !min.set[n.minute() as usize]
            || !hour.set[n.hour() as usize]
            || !month.set[n.month() as usize]
        {
            return false;
        }
        let d = n.weekday().num_days_from_sunday() as usize;
        let dom_hit = dom.set[n.day() as usize];
        let dow_hit = dow.set[d];
        if dom.text.starts_with('*') || dow.text.starts_with('*') {
            dom_hit && dow_hit
        } else {
            dom_hit || dow_hit
        }
    }
}

fn spec() -> impl Strategy<Value = Spec> {
    // Day fields are mostly `*` so that most expressions fire within the brute-force span.
    let dom = prop_oneof![4 => Just(Field { text: "*".into(), set: (0..32).map(|v| v >= 1).collect() }), 1 => field(1, 31, &[])];
    let month = prop_oneof![4 => Just(Field { text: "*".into(), set: (0..13).map(|v| v >= 1).collect() }), 1 => field(1, 12, MONTHS)];
    (
        field(0, 59, &[]),
        field(0, 23, &[]),
        dom,
        month,
        field(0, 6, DAYS),
    )
        .prop_map(|(a, b, c, d, e)| Spec {
            fields: [a, b, c, d, e],
        })
}

/// Zones with instants near their 2024 transitions (where the interesting cases are), and
/// zones without daylight saving at ordinary instants.
const CASES: &[(&str, &str)] = &[
    ("America/New_York", "2024-03-10T07:00:00Z"),
    ("America/New_York", "2024-11-03T06:00:00Z"),
    ("Europe/Berlin", "2024-03-31T01:00:00Z"),
    ("Europe/Berlin", "2024-10-27T01:00:00Z"),
    ("Australia/Lord_Howe", "2024-04-06T15:00:00Z"),
    ("Australia/Lord_Howe", "2024-10-05T15:30:00Z"),
    ("UTC", "2024-02-28T12:00:00Z"),
    ("Asia/Manila", "2024-06-15T00:00:00Z"),
    ("Europe/Berlin", "2024-06-15T00:00:00Z"),
];

/// The oracle: is the UTC minute `u` a fire time of `spec` in `tz`?
fn is_fire_time(spec: &Spec, tz: Tz, u: DateTime<Utc>) -> bool {
    let local = u.with_timezone(&tz).naive_local();
    if spec.matches(local) {
        // It fires at the first instant that has this wall time.
        let first = tz
            .from_local_datetime(&local)
            .earliest()
            .map(|d| d.with_timezone(&Utc));
        if first == Some(u) {
            return true;
        }
    }
    if spec.every_hour() {
        return false;
    }
    // A gap end: the wall clock jumps forward at `u`; a matching wall-clock minute inside
    // the jump fires here.
    let before = (u - Duration::seconds(1)).with_timezone(&tz).naive_local();
    if local - before <= Duration::seconds(1) {
        return false;
    }
    let mut m = before.with_second(0).unwrap() + Duration::minutes(1);
    while m < local {
        if spec.matches(m) {
            return true;
        }
        m += Duration::minutes(1);
    }
    false
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn next_after_is_the_first_fire_time_after_t(
        spec in spec(),
        case in 0..CASES.len(),
        offset_secs in prop_oneof![-7_200i64..7_200, -30_000i64..30_000],
    ) {
        let text = spec.text();
        let (zone, base) = CASES[case];
        let tz: Tz = zone.parse().unwrap();
        let s = match Schedule::parse(&text, zone) {
            Ok(s) => s,
            // Only "never runs" is an acceptable rejection of a generated expression.
            Err(e) => {
                prop_assert!(e.to_string().contains("never runs"), "{text}: {e}");
                return Ok(());
            }
        };
        let t = DateTime::parse_from_rfc3339(base).unwrap().with_timezone(&Utc)
            + Duration::seconds(offset_secs);
        let next = s.next_after(t);
        // Brute force: every UTC minute after t, for four days.
        let span_end = t + Duration::days(4);
        let mut u = t.with_second(0).unwrap().with_nanosecond(0).unwrap() + Duration::minutes(1);
        let mut expected = None;
        while u <= span_end {
            if is_fire_time(&spec, tz, u) {
                expected = Some(u);
                break;
            }
            u += Duration::minutes(1);
        }
        match expected {
            Some(e) => prop_assert_eq!(next, Some(e), "{} in {} after {}", text, zone, t),
            None => {
                let n = next.unwrap();
                prop_assert!(n > span_end, "{} in {} after {}: {} is not a fire time", text, zone, t, n);
                prop_assert!(is_fire_time(&spec, tz, n), "{} in {}: {} is not a fire time", text, zone, n);
            }
        }
        if let Some(n) = next {
            prop_assert!(n > t);
        }
    }
}
