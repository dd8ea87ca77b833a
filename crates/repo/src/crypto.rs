//! Keys and authenticated encryption.
//!
//! - [`MasterKey`]: 32 bytes for AES-256-GCM and 32 bytes for keyed BLAKE3 blob ids.
//! - [`MasterKey::seal`] / [`MasterKey::open`]: `nonce(12) ‖ ciphertext ‖ tag(16)`, with a
//!   random nonce and the object's type and id bound as associated data, so an object copied
//!   over another's name, or a blob moved to another id, fails to open.
//! - [`KeyFile`]: the master key wrapped by an argon2id-derived key; every field of the key
//!   file is bound as associated data, and the file must be in canonical form.
//!
//! This module does no I/O: callers read and write the bytes.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, Tag, UnboundKey};
use serde::{Deserialize, Serialize};

use crate::id::Id;

/// Bytes of nonce before each ciphertext.
pub const NONCE_LEN: usize = 12;
/// Bytes of authentication tag after each ciphertext.
pub const TAG_LEN: usize = 16;
/// Bytes a sealed object adds to its plaintext.
pub const SEAL_OVERHEAD: usize = NONCE_LEN + TAG_LEN;

const AAD_PREFIX: &[u8; 12] = b"strongroom\x00\x01";

/// What a sealed object is; bound into its associated data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ObjectType {
    /// A data blob (file or stream content) inside a pack.
    DataBlob = 1,
    /// A tree blob inside a pack.
    TreeBlob = 2,
    /// A pack header.
    PackHeader = 3,
    /// An index file.
    Index = 4,
    /// A snapshot file.
    Snapshot = 5,
    /// The repository config.
    Config = 6,
    /// A lock file.
    Lock = 7,
    /// A file of the local cache (not in the repository; see `snapshot_cache`).
    LocalCache = 8,
    /// The local folder cache (not in the repository; see `folder_cache`).
    LocalFolderCache = 9,
}

/// Errors from sealing, opening and key handling.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CryptoError {
    /// Authentication failed: the bytes were modified, truncated, moved to another name, or
    /// the key is wrong.
    #[error(
        "authentication failed: the data was modified, truncated or moved, or the key is wrong"
    )]
    Authentication,
    /// The sealed object is shorter than nonce and tag.
    #[error("sealed object too short ({0} bytes)")]
    TooShort(usize),
    /// The key file is not valid.
    #[error("key file is damaged: {0}")]
    KeyFileDamaged(String),
    /// A master key file (outside the repository) is not valid.
    #[error("master key file is damaged: {0}")]
    MasterKeyFileDamaged(String),
    /// The key file asks for weaker key derivation than Strongroom accepts.
    #[error(
        "key file asks for weak key derivation (m={m_kib} KiB, t={t}, p={p}); minimum is m=19456 KiB, t=2, p=1: the file was tampered with"
    )]
    WeakKdf {
        /// Memory in KiB.
        m_kib: u32,
        /// Iterations.
        t: u32,
        /// Parallelism.
        p: u32,
    },
    /// Key derivation failed.
    #[error("key derivation failed: {0}")]
    Kdf(String),
}

/// Fills a buffer from the operating system's random source.
///
/// # Panics
/// When the operating system cannot provide random bytes; continuing would risk nonce reuse.
pub fn fill_random(buf: &mut [u8]) {
    if let Err(e) = getrandom::fill(buf) {
        panic!("the operating system's random source failed: {e}");
    }
}

/// An AES-256-GCM key (ring's implementation: AES-NI and carry-less multiplication, with
/// the vector forms where the CPU has them).
fn aead_key(bytes: &[u8; 32]) -> LessSafeKey {
    match UnboundKey::new(&AES_256_GCM, bytes) {
        Ok(k) => LessSafeKey::new(k),
        // ring refuses only keys of the wrong length, and the type fixes it at 32 bytes.
        Err(_) => panic!("AES-256-GCM refused a 32-byte key"),
    }
}

/// Encrypts `buf` in place; returns the tag.
fn seal_detached(key: &LessSafeKey, nonce: [u8; NONCE_LEN], aad: &[u8], buf: &mut [u8]) -> Tag {
    match key.seal_in_place_separate_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad), buf) {
        Ok(tag) => tag,
        // ring fails only for plaintexts above 64 GiB, which no caller produces.
        Err(_) => panic!("AES-GCM refused a plaintext of {} bytes", buf.len()),
    }
}

/// Decrypts `ct_and_tag` in place; returns the plaintext's length (the tag's 16 bytes at the
/// end are then garbage).
fn open_detached(
    key: &LessSafeKey,
    nonce: &[u8],
    aad: &[u8],
    ct_and_tag: &mut [u8],
) -> Result<usize, CryptoError> {
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| CryptoError::Authentication)?;
    key.open_in_place(nonce, Aad::from(aad), ct_and_tag)
        .map(|p| p.len())
        .map_err(|_| CryptoError::Authentication)
}

fn aad(kind: ObjectType, id: &Id) -> [u8; 45] {
    let mut a = [0u8; 45];
    a[..12].copy_from_slice(AAD_PREFIX);
    a[12] = kind as u8;
    a[13..45].copy_from_slice(&id.0);
    a
}

/// The repository's master key: never stored in the clear.
#[derive(Clone)]
pub struct MasterKey {
    enc: [u8; 32],
    mac: [u8; 32],
    cipher: LessSafeKey,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(***)")
    }
}

impl MasterKey {
    /// A new random master key.
    #[must_use]
    pub fn generate() -> MasterKey {
        let mut b = [0u8; 64];
        fill_random(&mut b);
        MasterKey::from_bytes(&b)
    }

    pub(crate) fn from_bytes(b: &[u8; 64]) -> MasterKey {
        let mut enc = [0u8; 32];
        let mut mac = [0u8; 32];
        enc.copy_from_slice(&b[..32]);
        mac.copy_from_slice(&b[32..]);
        let cipher = aead_key(&enc);
        MasterKey { enc, mac, cipher }
    }

    pub(crate) fn to_bytes(&self) -> [u8; 64] {
        let mut b = [0u8; 64];
        b[..32].copy_from_slice(&self.enc);
        b[32..].copy_from_slice(&self.mac);
        b
    }

    /// The id of a blob: BLAKE3 keyed with the repository's id key, over the plaintext.
    #[must_use]
    pub fn blob_id(&self, plaintext: &[u8]) -> Id {
        Id(*blake3::keyed_hash(&self.mac, plaintext).as_bytes())
    }

    /// A BLAKE3 hasher keyed like [`MasterKey::blob_id`], for keys that only this repository's
    /// key can make (e.g. the local folder cache's).
    #[must_use]
    pub fn id_hasher(&self) -> blake3::Hasher {
        blake3::Hasher::new_keyed(&self.mac)
    }

    /// Encrypts `plaintext` as an object of `kind` named `id`.
    #[must_use]
    pub fn seal(&self, kind: ObjectType, id: &Id, plaintext: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(plaintext.len() + SEAL_OVERHEAD);
        out.extend_from_slice(&[0u8; NONCE_LEN]);
        out.extend_from_slice(plaintext);
        self.seal_in_place(kind, id, &mut out);
        out
    }

    /// Seals in place: `buf` holds [`NONCE_LEN`] bytes of room followed by the plaintext;
    /// afterwards it holds `nonce ‖ ciphertext ‖ tag`, as [`MasterKey::seal`] returns. Lets
    /// a caller build the plaintext (e.g. compress) straight into the buffer it stores.
    ///
    /// # Panics
    /// When `buf` is shorter than the nonce (a caller's bug).
    pub fn seal_in_place(&self, kind: ObjectType, id: &Id, buf: &mut Vec<u8>) {
        let mut nonce = [0u8; NONCE_LEN];
        fill_random(&mut nonce);
        let (head, body) = buf.split_at_mut(NONCE_LEN);
        head.copy_from_slice(&nonce);
        let tag = seal_detached(&self.cipher, nonce, &aad(kind, id), body);
        buf.extend_from_slice(tag.as_ref());
    }

    /// Like [`MasterKey::open`], but decrypts in the buffer it is given and returns it holding
    /// the plaintext alone: no copy of the object.
    ///
    /// # Errors
    /// As [`MasterKey::open`].
    pub fn open_vec(
        &self,
        kind: ObjectType,
        id: &Id,
        mut sealed: Vec<u8>,
    ) -> Result<Vec<u8>, CryptoError> {
        let n = self.open_in_place(kind, id, &mut sealed)?.len();
        sealed.copy_within(NONCE_LEN..NONCE_LEN + n, 0);
        sealed.truncate(n);
        Ok(sealed)
    }

    /// Decrypts and authenticates a sealed object in place; returns the plaintext, which is
    /// `sealed[NONCE_LEN..NONCE_LEN + len]` afterwards (the rest of `sealed` is garbage).
    /// For callers that check many objects and reuse one buffer.
    ///
    /// # Errors
    /// As [`MasterKey::open`].
    pub fn open_in_place<'a>(
        &self,
        kind: ObjectType,
        id: &Id,
        sealed: &'a mut [u8],
    ) -> Result<&'a [u8], CryptoError> {
        if sealed.len() < SEAL_OVERHEAD {
            return Err(CryptoError::TooShort(sealed.len()));
        }
        let (nonce, rest) = sealed.split_at_mut(NONCE_LEN);
        let n = open_detached(&self.cipher, nonce, &aad(kind, id), rest)?;
        Ok(rest.get(..n).unwrap_or_default())
    }

    /// Decrypts and authenticates an object sealed by [`MasterKey::seal`].
    ///
    /// # Errors
    /// [`CryptoError::Authentication`] when any byte, the type or the id differ.
    pub fn open(&self, kind: ObjectType, id: &Id, sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
        if sealed.len() < SEAL_OVERHEAD {
            return Err(CryptoError::TooShort(sealed.len()));
        }
        let (nonce, rest) = sealed.split_at(NONCE_LEN);
        let mut buf = rest.to_vec();
        let n = open_detached(&self.cipher, nonce, &aad(kind, id), &mut buf)?;
        buf.truncate(n);
        Ok(buf)
    }
}

/// Argon2id parameters for deriving a key from a password.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct KdfParams {
    /// Memory in KiB.
    pub m_kib: u32,
    /// Iterations.
    pub t: u32,
    /// Lanes.
    pub p: u32,
}

impl KdfParams {
    /// The floor Strongroom accepts (OWASP's argon2id minimum): 19 MiB, 2 passes, 1 lane.
    pub const MINIMUM: KdfParams = KdfParams {
        m_kib: 19_456,
        t: 2,
        p: 1,
    };
    /// The default for new keys: 64 MiB, 3 passes, 1 lane.
    pub const DEFAULT: KdfParams = KdfParams {
        m_kib: 65_536,
        t: 3,
        p: 1,
    };

    /// The ceiling Strongroom accepts (so a planted key file cannot make `open` allocate
    /// without bound): 4 GiB, 64 passes, 16 lanes.
    pub const MAXIMUM: KdfParams = KdfParams {
        m_kib: 4 * 1024 * 1024,
        t: 64,
        p: 16,
    };

    fn check(&self) -> Result<(), CryptoError> {
        if self.m_kib < Self::MINIMUM.m_kib || self.t < Self::MINIMUM.t || self.p < 1 {
            return Err(CryptoError::WeakKdf {
                m_kib: self.m_kib,
                t: self.t,
                p: self.p,
            });
        }
        if self.m_kib > Self::MAXIMUM.m_kib || self.t > Self::MAXIMUM.t || self.p > Self::MAXIMUM.p
        {
            return Err(CryptoError::KeyFileDamaged(format!(
                "key derivation parameters m={} KiB, t={}, p={} exceed the maximum (m=4 GiB, t=64, p=16)",
                self.m_kib, self.t, self.p
            )));
        }
        Ok(())
    }

    fn derive(&self, password: &[u8], salt: &[u8]) -> Result<[u8; 32], CryptoError> {
        self.check()?;
        let params = argon2::Params::new(self.m_kib, self.t, self.p, Some(32))
            .map_err(|e| CryptoError::Kdf(e.to_string()))?;
        let a = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let mut out = [0u8; 32];
        a.hash_password_into(password, salt, &mut out)
            .map_err(|e| CryptoError::Kdf(e.to_string()))?;
        Ok(out)
    }
}

/// The bound (authenticated) fields of a key file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyFileHeader {
    /// Format version of key files (1).
    pub version: u32,
    /// Always "argon2id".
    pub kdf: String,
    /// Argon2id parameters.
    pub params: KdfParams,
    /// 32 random bytes, base64.
    pub salt: String,
    /// When the key was added (RFC 3339).
    pub created: String,
    /// Host that added the key.
    pub host: String,
    /// User that added the key.
    pub user: String,
}

/// A key file: the master key wrapped under a password-derived key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyFile {
    /// Bound fields.
    pub header: KeyFileHeader,
    /// `nonce ‖ AES-256-GCM(master key) ‖ tag`, base64.
    pub wrapped: String,
}

impl KeyFile {
    /// Wraps `master` under `password`, for the key file named `id`.
    ///
    /// # Errors
    /// When the parameters are below the floor or key derivation fails.
    pub fn wrap(
        master: &MasterKey,
        password: &[u8],
        params: KdfParams,
        id: &Id,
        host: &str,
        user: &str,
    ) -> Result<KeyFile, CryptoError> {
        let mut salt = [0u8; 32];
        fill_random(&mut salt);
        let header = KeyFileHeader {
            version: 1,
            kdf: "argon2id".into(),
            params,
            salt: B64.encode(salt),
            created: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            host: host.into(),
            user: user.into(),
        };
        let wrap_key = params.derive(password, &salt)?;
        let cipher = aead_key(&wrap_key);
        let mut nonce = [0u8; NONCE_LEN];
        fill_random(&mut nonce);
        let mut buf = master.to_bytes().to_vec();
        let tag = seal_detached(&cipher, nonce, &key_aad(&header, id)?, &mut buf);
        let mut wrapped = nonce.to_vec();
        wrapped.extend_from_slice(&buf);
        wrapped.extend_from_slice(tag.as_ref());
        Ok(KeyFile {
            header,
            wrapped: B64.encode(wrapped),
        })
    }

    /// The canonical bytes stored in the repository.
    ///
    /// # Errors
    /// Never in practice (serialisation of plain fields).
    pub fn to_bytes(&self) -> Result<Vec<u8>, CryptoError> {
        let mut v = serde_json::to_vec_pretty(self)
            .map_err(|e| CryptoError::KeyFileDamaged(e.to_string()))?;
        v.push(b'\n');
        Ok(v)
    }

    /// Parses a key file, refusing any byte that is not in canonical form and any weakened
    /// parameters.
    ///
    /// # Errors
    /// [`CryptoError::KeyFileDamaged`] or [`CryptoError::WeakKdf`].
    pub fn parse(bytes: &[u8]) -> Result<KeyFile, CryptoError> {
        let kf: KeyFile = serde_json::from_slice(bytes)
            .map_err(|e| CryptoError::KeyFileDamaged(e.to_string()))?;
        if kf.to_bytes()? != bytes {
            return Err(CryptoError::KeyFileDamaged("not in canonical form".into()));
        }
        if kf.header.version != 1 || kf.header.kdf != "argon2id" {
            return Err(CryptoError::KeyFileDamaged(format!(
                "unsupported key file version {} / kdf {:?}",
                kf.header.version, kf.header.kdf
            )));
        }
        kf.header.params.check()?;
        Ok(kf)
    }

    /// Unwraps the master key with `password`.
    ///
    /// # Errors
    /// [`CryptoError::Authentication`] for a wrong password or a modified key file.
    pub fn unwrap_key(&self, password: &[u8], id: &Id) -> Result<MasterKey, CryptoError> {
        let salt = B64
            .decode(&self.header.salt)
            .map_err(|e| CryptoError::KeyFileDamaged(format!("salt: {e}")))?;
        let wrapped = B64
            .decode(&self.wrapped)
            .map_err(|e| CryptoError::KeyFileDamaged(format!("wrapped key: {e}")))?;
        if wrapped.len() != NONCE_LEN + 64 + TAG_LEN {
            return Err(CryptoError::KeyFileDamaged(
                "wrapped key has the wrong length".into(),
            ));
        }
        let wrap_key = self.header.params.derive(password, &salt)?;
        let cipher = aead_key(&wrap_key);
        let (nonce, rest) = wrapped.split_at(NONCE_LEN);
        let mut buf = rest.to_vec();
        let n = open_detached(&cipher, nonce, &key_aad(&self.header, id)?, &mut buf)?;
        let mut b = [0u8; 64];
        b.copy_from_slice(
            buf.get(..n)
                .filter(|p| p.len() == 64)
                .ok_or(CryptoError::Authentication)?,
        );
        Ok(MasterKey::from_bytes(&b))
    }
}

fn key_aad(header: &KeyFileHeader, id: &Id) -> Result<Vec<u8>, CryptoError> {
    let mut a = b"strongroom-key-v1\x00".to_vec();
    a.extend_from_slice(&id.0);
    a.extend_from_slice(
        &serde_json::to_vec(header).map_err(|e| CryptoError::KeyFileDamaged(e.to_string()))?,
    );
    Ok(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The on-disk format is standard AES-256-GCM: a known answer (NIST GCM test case 16,
    /// 256-bit key, with associated data) pins it, so that changing the implementation can
    /// never change what existing repositories hold.
    #[test]
    fn aes_256_gcm_known_answer() {
        fn hex(s: &str) -> Vec<u8> {
            (0..s.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
                .collect()
        }
        let key: [u8; 32] = hex("feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308")
            .try_into()
            .unwrap();
        let nonce: [u8; 12] = hex("cafebabefacedbaddecaf888").try_into().unwrap();
        let aad = hex("feedfacedeadbeeffeedfacedeadbeefabaddad2");
        let plain = hex(concat!(
            "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72",
            "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39"
        ));
        let mut buf = plain.clone();
        let tag = seal_detached(&aead_key(&key), nonce, &aad, &mut buf);
        assert_eq!(
            buf,
            hex(concat!(
                "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa",
                "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662"
            ))
        );
        assert_eq!(
            tag.as_ref(),
            hex("76fc6ece0f4e1768cddf8853bb2d551b").as_slice()
        );
        buf.extend_from_slice(tag.as_ref());
        let n = open_detached(&aead_key(&key), &nonce, &aad, &mut buf).unwrap();
        assert_eq!(&buf[..n], plain.as_slice());
    }

    #[test]
    fn open_vec_and_open_in_place_agree_with_open() {
        let k = MasterKey::generate();
        let id = Id([4; 32]);
        let sealed = k.seal(ObjectType::DataBlob, &id, b"some plaintext");
        assert_eq!(
            k.open_vec(ObjectType::DataBlob, &id, sealed.clone())
                .unwrap(),
            b"some plaintext"
        );
        let mut buf = sealed.clone();
        assert_eq!(
            k.open_in_place(ObjectType::DataBlob, &id, &mut buf)
                .unwrap(),
            b"some plaintext"
        );
        let mut bad = sealed.clone();
        bad[NONCE_LEN] ^= 1;
        assert!(k.open_vec(ObjectType::DataBlob, &id, bad.clone()).is_err());
        assert!(
            k.open_in_place(ObjectType::DataBlob, &id, &mut bad)
                .is_err()
        );
        assert!(
            k.open_vec(ObjectType::TreeBlob, &id, sealed.clone())
                .is_err()
        );
        assert!(k.open_vec(ObjectType::DataBlob, &id, vec![0; 10]).is_err());
    }

    #[test]
    fn seal_open_round_trip_and_binding() {
        let k = MasterKey::generate();
        let id = Id([1; 32]);
        let sealed = k.seal(ObjectType::DataBlob, &id, b"hello");
        assert_eq!(sealed.len(), 5 + SEAL_OVERHEAD);
        assert_eq!(
            k.open(ObjectType::DataBlob, &id, &sealed).unwrap(),
            b"hello"
        );
        // Another id, another type, another key: all refused.
        assert!(k.open(ObjectType::DataBlob, &Id([2; 32]), &sealed).is_err());
        assert!(k.open(ObjectType::TreeBlob, &id, &sealed).is_err());
        assert!(
            MasterKey::generate()
                .open(ObjectType::DataBlob, &id, &sealed)
                .is_err()
        );
        // Every single-bit flip is refused.
        for i in 0..sealed.len() * 8 {
            let mut s = sealed.clone();
            s[i / 8] ^= 1 << (i % 8);
            assert!(
                k.open(ObjectType::DataBlob, &id, &s).is_err(),
                "flip {i} accepted"
            );
        }
        assert!(matches!(
            k.open(ObjectType::DataBlob, &id, &sealed[..10]),
            Err(CryptoError::TooShort(10))
        ));
    }

    #[test]
    fn key_file_wrap_unwrap() {
        let k = MasterKey::generate();
        let id = Id::random();
        let kf = KeyFile::wrap(&k, b"pw", KdfParams::MINIMUM, &id, "h", "u").unwrap();
        let bytes = kf.to_bytes().unwrap();
        let parsed = KeyFile::parse(&bytes).unwrap();
        let k2 = parsed.unwrap_key(b"pw", &id).unwrap();
        assert_eq!(k2.blob_id(b"x"), k.blob_id(b"x"));
        assert!(matches!(
            parsed.unwrap_key(b"wrong", &id),
            Err(CryptoError::Authentication)
        ));
        assert!(parsed.unwrap_key(b"pw", &Id::random()).is_err());
    }

    #[test]
    fn key_file_tampering_refused() {
        let k = MasterKey::generate();
        let id = Id::random();
        let kf = KeyFile::wrap(&k, b"pw", KdfParams::MINIMUM, &id, "h", "u").unwrap();
        // A bound field changed (host) is refused at unwrap.
        let mut t = kf.clone();
        t.header.host = "evil".into();
        assert!(t.unwrap_key(b"pw", &id).is_err());
        // Weakened parameters are refused at parse.
        let mut w = kf.clone();
        w.header.params.m_kib = 8;
        let err = KeyFile::parse(&w.to_bytes().unwrap()).unwrap_err();
        assert!(matches!(err, CryptoError::WeakKdf { .. }));
        // Non-canonical bytes are refused.
        let mut bytes = kf.to_bytes().unwrap();
        bytes.insert(1, b' ');
        assert!(KeyFile::parse(&bytes).is_err());
    }
}
