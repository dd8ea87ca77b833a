//! Small value types of the configuration with their own syntax: durations (`"90s"`,
//! `"30m"`, `"6h"`, `"1h30m"`, `"7d"`, or an integer number of seconds), networks for
//! trusted proxies (`"10.0.0.0/8"`, `"::1"`), names, glob patterns and e-mail addresses.
//!
//! Each parser returns a message that says what is expected; serde errors raised here get
//! the value's position from the TOML deserializer. What it must not do: quote secrets (none
//! of these values is one) or accept a value it would have to guess about.

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A duration written as `"90s"`, `"30m"`, `"6h"`, `"2d"`, combinations such as `"1h30m"`,
/// or an integer number of seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct HumanDuration(pub Duration);

/// Parse `"1h30m"`-style durations (units `s`, `m`, `h`, `d`, `w`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let expected = || {
        format!(
            "`{t}` is not a duration; write a number with a unit (s, m, h, d, w), e.g. \"90s\", \"30m\", \"6h\", \"1h30m\", \"7d\""
        )
    };
    if t.is_empty() {
        return Err(expected());
    }
    if t.bytes().all(|b| b.is_ascii_digit()) {
        return t
            .parse::<u64>()
            .map(Duration::from_secs)
            .map_err(|_| expected());
    }
    let mut total: u64 = 0;
    let mut number = String::new();
    for c in t.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let unit: u64 = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            'w' => 7 * 86_400,
            _ => return Err(expected()),
        };
        if number.is_empty() {
            return Err(expected());
        }
        let n: u64 = number.parse().map_err(|_| expected())?;
        total = n
            .checked_mul(unit)
            .and_then(|x| total.checked_add(x))
            .ok_or_else(expected)?;
        number.clear();
    }
    if !number.is_empty() {
        return Err(expected());
    }
    Ok(Duration::from_secs(total))
}

/// Format a duration the way it is written: `"1h30m"`, `"7d"`, `"0s"`.
pub fn format_duration(d: Duration) -> String {
    let mut secs = d.as_secs();
    if secs == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    for (unit, size) in [("d", 86_400), ("h", 3600), ("m", 60), ("s", 1)] {
        if secs >= size {
            out.push_str(&format!("{}{unit}", secs / size));
            secs %= size;
        }
    }
    out
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_duration(self.0))
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&format_duration(self.0))
    }
}

struct DurationVisitor;

impl Visitor<'_> for DurationVisitor {
    type Value = HumanDuration;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a duration such as \"30m\", \"6h\" or \"1h30m\", or a number of seconds")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<HumanDuration, E> {
        parse_duration(v).map(HumanDuration).map_err(E::custom)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<HumanDuration, E> {
        u64::try_from(v)
            .map(|s| HumanDuration(Duration::from_secs(s)))
            .map_err(|_| E::custom("a duration cannot be negative"))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<HumanDuration, E> {
        Ok(HumanDuration(Duration::from_secs(v)))
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(DurationVisitor)
    }
}

/// An IP network (`10.0.0.0/8`, `fd00::/8`) or a single address (`127.0.0.1`, `::1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    /// The network address (host bits zero).
    pub addr: IpAddr,
    /// The prefix length.
    pub prefix: u8,
}

impl IpNet {
    /// Parse `addr` or `addr/prefix`.
    pub fn parse(text: &str) -> Result<IpNet, String> {
        let t = text.trim();
        let bad = || {
            format!(
                "`{t}` is not an IP address or network; e.g. \"10.0.0.0/8\", \"127.0.0.1\" or \"fd00::/8\""
            )
        };
        let (addr, prefix) = match t.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (t, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p.parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(bad)?,
        };
        let net = IpNet { addr, prefix };
        if net.masked() != addr {
            return Err(format!(
                "`{t}` has host bits set; the network is `{}/{prefix}`",
                net.masked()
            ));
        }
        Ok(net)
    }

    fn masked(&self) -> IpAddr {
        match self.addr {
            IpAddr::V4(a) => {
                let bits = u32::from(a);
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V4((bits & mask).into())
            }
            IpAddr::V6(a) => {
                let bits = u128::from(a);
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V6((bits & mask).into())
            }
        }
    }

    /// Whether `ip` is inside the network (an IPv4-mapped IPv6 address counts as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        if ip.is_ipv4() != self.addr.is_ipv4() {
            return false;
        }
        IpNet {
            addr: ip,
            prefix: self.prefix,
        }
        .masked()
            == self.addr
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl Serialize for IpNet {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for IpNet {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrVisitor {
            expecting: "an IP address or network such as \"10.0.0.0/8\"",
            parse: IpNet::parse,
        })
    }
}

/// A visitor that accepts only a string and parses it in place, so a parse error carries the
/// value's own position (also inside arrays). Other types are refused without echoing the
/// value.
pub(crate) struct StrVisitor<T> {
    /// What is expected, for messages.
    pub(crate) expecting: &'static str,
    /// The parser.
    pub(crate) parse: fn(&str) -> Result<T, String>,
}

impl<T> StrVisitor<T> {
    fn refuse<E: de::Error>(&self) -> Result<T, E> {
        Err(E::custom(format!("expected {} (a string)", self.expecting)))
    }
}

impl<'de, T> Visitor<'de> for StrVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.expecting)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        (self.parse)(v).map_err(E::custom)
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<T, E> {
        self.refuse()
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<T, E> {
        self.refuse()
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<T, E> {
        self.refuse()
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<T, E> {
        self.refuse()
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, _: A) -> Result<T, A::Error> {
        self.refuse()
    }

    fn visit_map<A: de::MapAccess<'de>>(self, _: A) -> Result<T, A::Error> {
        self.refuse()
    }
}

/// Check a source or schedule name: 1-64 characters, letters, digits, `_`, `-`, `.`,
/// starting with a letter or digit.
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a valid name; use 1 to 64 letters, digits, `_`, `-` or `.`, starting with a letter or digit (e.g. \"clinic-db\")"
        ))
    }
}

/// Check an exclude pattern: `*` (any characters but `/`), `**` (any number of folders),
/// `?` (one character), `[abc]` / `[a-z]` / `[!abc]` (a class), `\` (escape). The backup
/// engine compiles it (`strongroom_repo::exclude`), which accepts exactly these (a test of
/// the jobs crate holds the two to it).
pub fn check_glob(pattern: &str) -> Result<(), String> {
    if pattern.is_empty() {
        return Err("an empty exclude pattern; e.g. \"*.tmp\" or \"cache/**\"".into());
    }
    if pattern.contains('\0') {
        return Err("an exclude pattern cannot contain a NUL character".into());
    }
    // The length of each folder name between unescaped slashes (a class counts as one).
    let mut names = vec![0usize];
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '/' => {
                names.push(0);
                continue;
            }
            '\\' if chars.next().is_none() => {
                return Err(format!("`{pattern}` ends with a lone `\\`"));
            }
            '[' => {
                let mut closed = false;
                let mut first = true;
                let mut negated = false;
                for d in chars.by_ref() {
                    if d == ']' && !first {
                        closed = true;
                        break;
                    }
                    if first && !negated && (d == '!' || d == '^') {
                        negated = true;
                        continue;
                    }
                    first = false;
                }
                if !closed {
                    return Err(format!(
                        "`{pattern}` has an unclosed `[`; write `\\[` for a literal bracket"
                    ));
                }
            }
            _ => {}
        }
        if let Some(n) = names.last_mut() {
            *n += 1;
        }
    }
    // One trailing slash (folders only) and one leading slash (from the folder) are allowed.
    if names.len() > 1 && names.last() == Some(&0) {
        names.pop();
    }
    if names.len() > 1 && names.first() == Some(&0) {
        names.remove(0);
    }
    if names.contains(&0) {
        return Err(format!(
            "`{pattern}` has an empty folder name (`//`, or only `/`); e.g. \"cache/**\""
        ));
    }
    Ok(())
}

/// Check an e-mail address, `user@example.org` or `Name <user@example.org>`. Line breaks
/// are refused (they would inject mail headers).
pub fn check_email(text: &str) -> Result<(), String> {
    if text.chars().any(|c| c == '\r' || c == '\n' || c == '\0') {
        return Err("an e-mail address cannot contain a line break".into());
    }
    let addr = match (text.rfind('<'), text.ends_with('>')) {
        (Some(open), true) => &text[open + 1..text.len() - 1],
        _ => text,
    };
    let ok = match addr.trim().rsplit_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.is_empty()
                && !addr.trim().chars().any(|c| c.is_whitespace() || c == ',')
        }
        None => false,
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{text}` is not an e-mail address; e.g. \"ops@example.org\" or \"Backups <backups@example.org>\""
        ))
    }
}
