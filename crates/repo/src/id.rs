//! Object and blob identifiers: 32 bytes, shown as 64 lowercase hex digits.
//!
//! Pure value types; no I/O.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A 32-byte identifier (blob id, pack id, snapshot id, index id, ...).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Id(pub [u8; 32]);

impl Id {
    /// A fresh random id.
    ///
    /// # Panics
    /// Never in practice: only if the operating system's random source is unavailable.
    #[must_use]
    pub fn random() -> Id {
        let mut b = [0u8; 32];
        crate::crypto::fill_random(&mut b);
        Id(b)
    }

    /// Parses 64 hex digits.
    ///
    /// # Errors
    /// When the text is not exactly 64 hex digits.
    pub fn from_hex(s: &str) -> Result<Id, IdParseError> {
        let bad = || IdParseError(s.to_owned());
        let digits = s.as_bytes();
        if digits.len() != 64 {
            return Err(bad());
        }
        let mut b = [0u8; 32];
        for (out, pair) in b.iter_mut().zip(digits.chunks_exact(2)) {
            let (Some(hi), Some(lo)) = (hex_value(pair[0]), hex_value(pair[1])) else {
                return Err(bad());
            };
            *out = (hi << 4) | lo;
        }
        Ok(Id(b))
    }

    /// The full hex form.
    #[must_use]
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The first 8 hex digits, as shown to people.
    #[must_use]
    pub fn short(&self) -> String {
        hex::encode(&self.0[..4])
    }

    /// The first 8 bytes as a number (used to spread packs into verification buckets).
    #[must_use]
    pub fn prefix_u64(&self) -> u64 {
        let mut b = [0u8; 8];
        b.copy_from_slice(&self.0[..8]);
        u64::from_le_bytes(b)
    }
}

/// The value of one hex digit (either case).
fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Text that is not a valid id.
#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not a valid id (64 hex digits expected)")]
pub struct IdParseError(pub String);

impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Id({})", self.short())
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl Serialize for Id {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Id, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Id::from_hex(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip() {
        let id = Id::random();
        assert_eq!(Id::from_hex(&id.to_hex()).unwrap(), id);
        assert_eq!(id.short().len(), 8);
        assert!(Id::from_hex("abc").is_err());
        assert!(Id::from_hex(&"zz".repeat(32)).is_err());
        assert!(Id::from_hex(&"0".repeat(63)).is_err());
        assert!(Id::from_hex(&"0".repeat(65)).is_err());
        assert!(Id::from_hex(&format!("{}g", "0".repeat(63))).is_err());
        assert!(Id::from_hex(&format!("{}é", "0".repeat(62))).is_err());
        // Either case is read; the hex crate agrees on every byte value.
        let upper = id.to_hex().to_uppercase();
        assert_eq!(Id::from_hex(&upper).unwrap(), id);
        let every: Vec<u8> = (0..=255u8).collect();
        for chunk in every.chunks(32) {
            let mut b = [0u8; 32];
            b.copy_from_slice(chunk);
            assert_eq!(Id::from_hex(&hex::encode(b)).unwrap(), Id(b));
        }
    }

    #[test]
    fn serde_as_hex_string() {
        let id = Id([7u8; 32]);
        let j = serde_json::to_string(&id).unwrap();
        assert_eq!(j, format!("\"{}\"", "07".repeat(32)));
        let back: Id = serde_json::from_str(&j).unwrap();
        assert_eq!(back, id);
    }
}
