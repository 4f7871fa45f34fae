//! Agent access keys: generated, shown once, stored only as SHA-256 hashes, compared in constant time.

use std::collections::HashMap;
use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::Rng;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The prefix of every agent key, so that leaked keys are easy to recognise and scan for.
pub const KEY_PREFIX: &str = "cbk_";

/// How many characters of a key are kept for display (`cbk_AbCd…`).
const DISPLAY_CHARS: usize = 8;

/// The SHA-256 hash of a key: all the gateway keeps.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyHash(pub [u8; 32]);

impl KeyHash {
    /// The hash of `key`.
    pub fn of(key: &str) -> Self {
        Self(Sha256::digest(key.as_bytes()).into())
    }

    /// Parses a hash written as 64 hexadecimal digits.
    pub fn from_hex(hex_text: &str) -> Result<Self, InvalidKeyHash> {
        let bytes = hex::decode(hex_text.trim()).map_err(InvalidKeyHash::NotHex)?;
        let bytes: [u8; 32] = bytes
            .try_into()
            .map_err(|bytes: Vec<u8>| InvalidKeyHash::Length(bytes.len()))?;
        Ok(Self(bytes))
    }

    /// The hash as 64 hexadecimal digits.
    pub fn to_hex(self) -> String {
        hex::encode(self.0)
    }
}

/// Text that is not a key's SHA-256 hash.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidKeyHash {
    /// It is not hexadecimal.
    #[error("not hexadecimal: {0}")]
    NotHex(#[source] hex::FromHexError),
    /// It has another number of bytes than 32.
    #[error("a SHA-256 hash has 64 hexadecimal digits, not {}", .0 * 2)]
    Length(usize),
}

impl fmt::Debug for KeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "KeyHash({}…)",
            hex::encode(self.0.get(..4).unwrap_or_default())
        )
    }
}

/// A newly generated key: shown to its owner once.
#[derive(Clone, PartialEq, Eq)]
pub struct NewKey {
    /// The key itself.
    pub secret: String,
    /// Its hash, to store.
    pub hash: KeyHash,
    /// Its first characters, to display.
    pub prefix: String,
}

impl fmt::Debug for NewKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewKey")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// Generates a key of 256 random bits.
pub fn generate_key() -> NewKey {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let secret = format!("{KEY_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes));
    NewKey {
        hash: KeyHash::of(&secret),
        prefix: display_prefix(&secret),
        secret,
    }
}

/// The displayable start of a key.
pub fn display_prefix(key: &str) -> String {
    let end = key
        .char_indices()
        .nth(KEY_PREFIX.len() + DISPLAY_CHARS)
        .map_or(key.len(), |(at, _)| at);
    key.get(..end).unwrap_or(key).to_owned()
}

/// The bearer token of an `Authorization` header value.
pub fn bearer_token(header: &str) -> Option<&str> {
    let (scheme, token) = crate::wire::split_once_ascii(header.trim(), b' ')?;
    (scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty()).then(|| token.trim())
}

/// Finds what a key opens, by its hash.
///
/// The lookup is by hash, so the time it takes says nothing about the key; the stored hash is compared
/// again in constant time before anything is returned.
#[derive(Debug)]
pub struct KeyIndex<T> {
    entries: HashMap<KeyHash, T>,
}

impl<T> Default for KeyIndex<T> {
    fn default() -> Self {
        Self {
            entries: HashMap::new(),
        }
    }
}

impl<T> KeyIndex<T> {
    /// Adds what `hash` opens; returns the previous entry, if the hash was present.
    pub fn insert(&mut self, hash: KeyHash, value: T) -> Option<T> {
        self.entries.insert(hash, value)
    }

    /// What `key` opens.
    pub fn find(&self, key: &str) -> Option<&T> {
        let hash = KeyHash::of(key);
        let (stored, value) = self.entries.get_key_value(&hash)?;
        bool::from(stored.0.ct_eq(&hash.0)).then_some(value)
    }

    /// The number of keys.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no key is known.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_display_prefix_is_the_first_twelve_characters() {
        assert_eq!(display_prefix("cbk_abcdefghijklmnop"), "cbk_abcdefgh");
        assert_eq!(display_prefix("cbk_abc"), "cbk_abc");
        assert_eq!(display_prefix("ééééééééééééééé"), "éééééééééééé");
    }

    #[test]
    fn generated_keys_are_unique_and_found_by_hash_only() {
        let a = generate_key();
        let b = generate_key();
        assert_ne!(a.secret, b.secret);
        assert!(a.secret.starts_with(KEY_PREFIX) && a.secret.len() > 40);
        assert_eq!(a.prefix.len(), KEY_PREFIX.len() + 8);
        let mut index = KeyIndex::default();
        index.insert(a.hash, "agent-a");
        assert_eq!(index.find(&a.secret), Some(&"agent-a"));
        assert_eq!(index.find(&b.secret), None);
        assert_eq!(index.find(""), None);
        assert!(
            !format!("{a:?}").contains(&a.secret),
            "keys never appear in debug output"
        );
    }

    #[test]
    fn hashes_round_trip_through_hex() {
        let hash = KeyHash::of("cbk_test");
        assert_eq!(KeyHash::from_hex(&hash.to_hex()).unwrap(), hash);
        assert!(KeyHash::from_hex("abc").is_err());
        assert!(KeyHash::from_hex(&"zz".repeat(32)).is_err());
    }

    #[test]
    fn reads_bearer_tokens() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer   abc "), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer "), None);
        assert_eq!(bearer_token("Bearer"), None);
    }
}
