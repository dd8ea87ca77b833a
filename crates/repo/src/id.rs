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
        let digits = s.as_bytes();
        if digits.len() != 64 {
            return Err(IdParseError(s.to_owned()));
        }
        let mut b = [0u8; 32];
        // Every digit's value, or 0xFF: one OR over all of them tells whether any was bad.
        let mut bad = 0u8;
        for (out, pair) in b.iter_mut().zip(digits.chunks_exact(2)) {
            let hi = HEX_VALUE[usize::from(pair[0])];
            let lo = HEX_VALUE[usize::from(pair[1])];
            bad |= hi | lo;
            *out = (hi << 4) | (lo & 0x0F);
        }
        if bad & 0xF0 != 0 {
            return Err(IdParseError(s.to_owned()));
        }
        Ok(Id(b))
    }

    /// The full hex form.
    #[must_use]
    pub fn to_hex(&self) -> String {
        encode_hex(&self.0)
    }

    /// The first 8 hex digits, as shown to people.
    #[must_use]
    pub fn short(&self) -> String {
        encode_hex(&self.0[..4])
    }

    /// The first 8 bytes as a number (used to spread packs into verification buckets).
    #[must_use]
    pub fn prefix_u64(&self) -> u64 {
        let mut b = [0u8; 8];
        b.copy_from_slice(&self.0[..8]);
        u64::from_le_bytes(b)
    }
}

/// Lowercase hex digits.
const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

/// The value of each byte as a hex digit (either case), 0xFF for any other byte.
static HEX_VALUE: [u8; 256] = {
    let mut t = [0xFF_u8; 256];
    let mut i = 0;
    while i < 16 {
        t[HEX_DIGITS[i] as usize] = i as u8;
        t[HEX_DIGITS[i].to_ascii_uppercase() as usize] = i as u8;
        i += 1;
    }
    t
};

/// `bytes` as lowercase hex.
fn encode_hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(HEX_DIGITS[usize::from(b >> 4)]));
        s.push(char::from(HEX_DIGITS[usize::from(b & 0x0F)]));
    }
    s
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
            assert_eq!(Id(b).to_hex(), hex::encode(b));
            assert_eq!(Id(b).short(), hex::encode(&b[..4]));
        }
        // Every byte that is not a hex digit, in either place of a pair.
        for c in 0..=255u8 {
            if c.is_ascii_hexdigit() {
                continue;
            }
            for at in [0, 1, 62, 63] {
                let mut digits = vec![b'0'; 64];
                digits[at] = c;
                let text = String::from_utf8_lossy(&digits).into_owned();
                assert!(Id::from_hex(&text).is_err(), "{c:#x} at {at}");
            }
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
