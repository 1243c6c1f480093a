//! Credentials: session tokens and local passwords.
//!
//! - Session tokens are 256 bits from the operating system's CSPRNG, written as `mn_` and 64
//!   lower-case hex digits; they are shown to the caller once and stored only as the hex
//!   SHA-256 of the whole token string (docs/design.md §3, UserSession).
//! - Local passwords are hashed with argon2id (the `argon2` crate's defaults: OWASP's
//!   m = 19 MiB, t = 2, p = 1) into a PHC string. Verification runs the same work whether
//!   the account exists or not, so timing does not tell the two apart.

use std::sync::OnceLock;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use rand::RngCore;
use sha2::{Digest, Sha256};

/// The prefix of every session token (helps secret scanners and people recognise one).
pub const TOKEN_PREFIX: &str = "mn_";
/// Shortest accepted password, in characters.
pub const MIN_PASSWORD_CHARS: usize = 8;
/// Longest accepted password, in bytes.
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// A freshly minted session token (redacted in `Debug`).
pub struct NewToken {
    /// The token, to be shown to the caller once.
    pub token: String,
    /// Its lower-case hex SHA-256, the only form stored.
    pub sha256: String,
}

impl std::fmt::Debug for NewToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NewToken { token: <redacted> }")
    }
}

/// Mints a 256-bit session token.
pub fn new_token() -> NewToken {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let token = format!("{TOKEN_PREFIX}{}", hex::encode(bytes));
    let sha256 = token_sha256(&token);
    NewToken { token, sha256 }
}

/// The lower-case hex SHA-256 of `token`: the key sessions are found by.
pub fn token_sha256(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Why a password cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordError {
    /// Shorter than [`MIN_PASSWORD_CHARS`] or longer than [`MAX_PASSWORD_BYTES`].
    #[error("passwords have 8 to 1024 bytes (at least 8 characters)")]
    Length,
    /// The hasher failed (should not happen with valid parameters).
    #[error("hashing failed: {0}")]
    Hash(#[source] argon2::password_hash::Error),
}

/// Hashes `password` with argon2id and a fresh random salt (a PHC string,
/// `$argon2id$v=19$m=19456,t=2,p=1$…`). CPU-heavy: call it from a blocking task.
///
/// # Errors
/// [`PasswordError::Length`] for a too short or too long password.
pub fn hash_password(password: &str) -> Result<String, PasswordError> {
    if password.chars().count() < MIN_PASSWORD_CHARS || password.len() > MAX_PASSWORD_BYTES {
        return Err(PasswordError::Length);
    }
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(PasswordError::Hash)
}

/// Whether `password` matches `hash`. With `hash` `None` (no such account) the same work is
/// done against a fixed hash and the answer is `false`, so an unknown username takes as long
/// as a wrong password. CPU-heavy: call it from a blocking task.
pub fn verify_password(password: &str, hash: Option<&str>) -> bool {
    let argon2 = Argon2::default();
    let stand_in = dummy_hash();
    let (phc, known) = match hash.and_then(|h| PasswordHash::new(h).ok()) {
        Some(parsed) => (parsed, true),
        #[expect(
            clippy::expect_used,
            reason = "the stand-in is a PHC string argon2 made"
        )]
        None => (
            PasswordHash::new(stand_in).expect("the stand-in hash is a valid PHC string"),
            false,
        ),
    };
    let matches = password.len() <= MAX_PASSWORD_BYTES
        && argon2.verify_password(password.as_bytes(), &phc).is_ok();
    matches && known
}

/// A hash of a random password, computed once, to verify against for unknown accounts.
#[expect(
    clippy::expect_used,
    reason = "argon2 hashes any 48-character password"
)]
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        let mut bytes = [0u8; 24];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        hash_password(&hex::encode(bytes)).expect("a 48-character password hashes")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_256_bits_prefixed_hex_and_hashed_with_sha256() {
        let minted = new_token();
        let hex_part = minted.token.strip_prefix(TOKEN_PREFIX).expect("the prefix");
        assert_eq!(hex_part.len(), 64);
        assert!(hex_part.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(minted.sha256, token_sha256(&minted.token));
        assert_eq!(minted.sha256.len(), 64);
        assert_ne!(new_token().token, minted.token);
        assert_eq!(format!("{minted:?}"), "NewToken { token: <redacted> }");
    }

    #[test]
    fn passwords_hash_to_argon2id_and_verify() {
        let hash = hash_password("correct horse").expect("hashes");
        assert!(hash.starts_with("$argon2id$v=19$"), "{hash}");
        assert!(verify_password("correct horse", Some(&hash)));
        assert!(!verify_password("wrong horse!", Some(&hash)));
        assert_ne!(
            hash_password("correct horse").expect("hashes"),
            hash,
            "salted"
        );
    }

    #[test]
    fn an_unknown_account_never_verifies() {
        assert!(!verify_password("anything at all", None));
        assert!(!verify_password(
            "anything at all",
            Some("not a phc string")
        ));
    }

    #[test]
    fn password_length_is_bounded() {
        assert_eq!(hash_password("short"), Err(PasswordError::Length));
        assert_eq!(hash_password(&"x".repeat(1025)), Err(PasswordError::Length));
        assert!(!verify_password(&"x".repeat(1025), None));
    }
}
