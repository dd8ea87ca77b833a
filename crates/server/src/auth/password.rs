//! Password hashing with argon2id (PHC strings), API token and session secret generation, and
//! the hashes under which tokens and sessions are stored.
//!
//! Must not log or return a password, a token or a hash; comparisons of secrets go through
//! hashes compared in constant time (BLAKE3's `Hash` equality).

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use base64::Engine as _;

/// The cost of new password hashes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PasswordCost {
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Iterations.
    pub iterations: u32,
    /// Parallelism.
    pub parallelism: u32,
}

impl Default for PasswordCost {
    /// OWASP's argon2id recommendation (19 MiB, 2 iterations, 1 lane).
    fn default() -> Self {
        PasswordCost {
            memory_kib: 19 * 1024,
            iterations: 2,
            parallelism: 1,
        }
    }
}

impl PasswordCost {
    /// A cheap cost for tests and demos only.
    pub fn insecure_fast() -> Self {
        PasswordCost {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
        }
    }
}

/// Errors of hashing (random source or parameters).
#[derive(Debug, thiserror::Error)]
#[error("could not hash the password: {0}")]
pub struct HashError(String);

fn random_bytes<const N: usize>() -> Result<[u8; N], HashError> {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).map_err(|e| HashError(e.to_string()))?;
    Ok(b)
}

/// An argon2id PHC hash of `password` at the default cost.
///
/// # Errors
/// When the system's random source fails.
pub fn hash_password(password: &str) -> Result<String, HashError> {
    hash_password_with(password, PasswordCost::default())
}

/// An argon2id PHC hash of `password` at `cost`.
///
/// # Errors
/// When the system's random source fails or the cost is out of range.
pub fn hash_password_with(password: &str, cost: PasswordCost) -> Result<String, HashError> {
    let params = Params::new(cost.memory_kib, cost.iterations, cost.parallelism, None)
        .map_err(|e| HashError(e.to_string()))?;
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
    let salt_bytes = random_bytes::<16>()?;
    let salt = SaltString::encode_b64(&salt_bytes).map_err(|e| HashError(e.to_string()))?;
    argon
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| HashError(e.to_string()))
}

/// True when `password` matches the PHC `hash` (any argon2 variant; parameters from the hash).
pub fn verify_password(password: &str, hash: &str) -> bool {
    match PasswordHash::new(hash) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// A hash to verify against when the user does not exist, so that the answer takes as long.
pub(crate) fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash_password("not a real password").unwrap_or_default())
}

/// A new random secret: 32 bytes, base64url without padding.
///
/// # Errors
/// When the system's random source fails.
pub fn random_secret() -> Result<String, HashError> {
    let b = random_bytes::<32>()?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b))
}

/// The prefix of Strongroom API tokens.
pub const TOKEN_PREFIX: &str = "sr_";

/// A new API token: `(token, hash)`. Show the token once; store only the hash.
///
/// # Errors
/// When the system's random source fails.
pub fn generate_api_token() -> Result<(String, String), HashError> {
    let token = format!("{TOKEN_PREFIX}{}", random_secret()?);
    let hash = token_hash(&token);
    Ok((token, hash))
}

/// The stored hash of a token or session secret: BLAKE3, hex. The secrets are 256-bit
/// random values, so a fast hash is enough (no dictionary to attack).
pub fn token_hash(secret: &str) -> String {
    blake3::hash(secret.as_bytes()).to_hex().to_string()
}

/// Compares two secrets in constant time (through their hashes).
pub fn secrets_equal(a: &str, b: &str) -> bool {
    blake3::hash(a.as_bytes()) == blake3::hash(b.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_differ() -> Result<(), HashError> {
        let h = hash_password_with("correct horse", PasswordCost::insecure_fast())?;
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("wrong", &h));
        assert!(!verify_password("x", "not a hash"));
        let (t, th) = generate_api_token()?;
        assert!(t.starts_with("sr_"));
        assert_eq!(token_hash(&t), th);
        Ok(())
    }
}
