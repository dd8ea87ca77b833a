//! Master key files: a repository's master key in a file outside the repository, so an
//! unattended machine opens it without a password and without key derivation (like
//! bupstash's key files; spec: repository-format.md §4.1).
//!
//! Whoever holds such a file holds the repository, for as long as it exists: changing or
//! removing passwords does not take it back. This module parses and writes the file's bytes
//! only; it must never put one inside the repository, and it does no file I/O.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};

use crate::crypto::{CryptoError, MasterKey};
use crate::id::Id;

/// The only version written and read.
const VERSION: u32 = 1;

/// The stored form; canonical like the repository's key files (`to_vec_pretty` and `\n`).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Stored {
    strongroom_master_key: u32,
    repository: String,
    created: String,
    key: String,
}

/// A repository's master key with the id of the repository it opens.
#[derive(Clone)]
pub struct MasterKeyFile {
    repository: Id,
    created: String,
    key: MasterKey,
}

impl std::fmt::Debug for MasterKeyFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MasterKeyFile")
            .field("repository", &self.repository.short())
            .field("created", &self.created)
            .finish_non_exhaustive()
    }
}

impl MasterKeyFile {
    /// The master key of the repository `repository`, written now.
    pub(crate) fn new(repository: Id, key: MasterKey) -> MasterKeyFile {
        MasterKeyFile {
            repository,
            created: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            key,
        }
    }

    /// The id of the repository (its config's `id`) this key opens.
    #[must_use]
    pub fn repository(&self) -> Id {
        self.repository
    }

    /// When the file was written (RFC 3339).
    #[must_use]
    pub fn created(&self) -> &str {
        &self.created
    }

    pub(crate) fn key(&self) -> &MasterKey {
        &self.key
    }

    /// The file's bytes.
    #[must_use]
    pub fn to_bytes(&self) -> Vec<u8> {
        let stored = Stored {
            strongroom_master_key: VERSION,
            repository: self.repository.to_hex(),
            created: self.created.clone(),
            key: B64.encode(self.key.to_bytes()),
        };
        // Serialising four plain fields cannot fail.
        let mut v = serde_json::to_vec_pretty(&stored).unwrap_or_default();
        v.push(b'\n');
        v
    }

    /// Parses a master key file. Any byte out of its canonical form is refused, so a file
    /// that was cut short or edited by hand is reported as damaged rather than half-read.
    ///
    /// # Errors
    /// [`CryptoError::MasterKeyFileDamaged`] naming what is wrong.
    pub fn parse(bytes: &[u8]) -> Result<MasterKeyFile, CryptoError> {
        let damaged = |d: String| CryptoError::MasterKeyFileDamaged(d);
        let stored: Stored = serde_json::from_slice(bytes).map_err(|e| {
            damaged(format!(
                "not a Strongroom master key file ({e}); `strongroom key export-master` writes one"
            ))
        })?;
        if stored.strongroom_master_key != VERSION {
            return Err(damaged(format!(
                "master key file version {} is not supported (this Strongroom reads version {VERSION})",
                stored.strongroom_master_key
            )));
        }
        let repository =
            Id::from_hex(&stored.repository).map_err(|e| damaged(format!("repository id: {e}")))?;
        let raw = B64
            .decode(&stored.key)
            .map_err(|e| damaged(format!("key: {e}")))?;
        let raw: [u8; 64] = raw
            .try_into()
            .map_err(|raw: Vec<u8>| damaged(format!("key: {} bytes where 64 belong", raw.len())))?;
        let file = MasterKeyFile {
            repository,
            created: stored.created,
            key: MasterKey::from_bytes(&raw),
        };
        if file.to_bytes() != bytes {
            return Err(damaged("not in canonical form (edited by hand?)".into()));
        }
        Ok(file)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::ObjectType;

    fn sample() -> MasterKeyFile {
        MasterKeyFile::new(Id::random(), MasterKey::generate())
    }

    #[test]
    fn a_written_file_parses_to_the_same_key() {
        let f = sample();
        let bytes = f.to_bytes();
        let back = MasterKeyFile::parse(&bytes).unwrap();
        assert_eq!(back.repository(), f.repository());
        assert_eq!(back.created(), f.created());
        // The same key: what one seals, the other opens.
        let sealed = f.key().seal(ObjectType::Config, &Id::default(), b"config");
        assert_eq!(
            back.key()
                .open(ObjectType::Config, &Id::default(), &sealed)
                .unwrap(),
            b"config"
        );
    }

    #[test]
    fn damaged_files_are_refused_with_a_reason() {
        let bytes = sample().to_bytes();
        let text = String::from_utf8(bytes.clone()).unwrap();
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (Vec::new(), "not a Strongroom master key file"),
            (
                bytes[..bytes.len() / 2].to_vec(),
                "not a Strongroom master key file",
            ),
            (
                text.replace(
                    "\"strongroom_master_key\": 1",
                    "\"strongroom_master_key\": 2",
                )
                .into_bytes(),
                "version 2 is not supported",
            ),
            (
                text.replace("\n}", ",\n  \"extra\": 1\n}").into_bytes(),
                "unknown field",
            ),
            (text.replace("  ", "   ").into_bytes(), "canonical"),
            (text.trim_end().as_bytes().to_vec(), "canonical"),
        ];
        for (input, want) in cases {
            let err = MasterKeyFile::parse(&input).unwrap_err().to_string();
            assert!(err.contains(want), "{err:?} should say {want:?}");
        }
        // A key of the wrong length.
        let stored: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        let mut short = stored.clone();
        short["key"] = serde_json::Value::String(B64.encode([0u8; 32]));
        let mut v = serde_json::to_vec_pretty(&short).unwrap();
        v.push(b'\n');
        let err = MasterKeyFile::parse(&v).unwrap_err().to_string();
        assert!(err.contains("32 bytes where 64 belong"), "{err}");
    }

    #[test]
    fn debug_output_never_shows_the_key() {
        let f = sample();
        let shown = format!("{f:?}");
        let key_b64 = B64.encode(f.key().to_bytes());
        assert!(!shown.contains(&key_b64[..16]), "{shown}");
        assert!(shown.contains(&f.repository().short()), "{shown}");
    }
}
