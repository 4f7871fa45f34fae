//! How a webhook call is signed: HMAC-SHA256 of `<timestamp>.<body>` under the entry's secret.

use std::fmt;

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The header holding the signature, `sha256=<hex>`.
pub const SIGNATURE_HEADER: &str = "cerberus-signature";

/// The header holding the time of the call, in Unix seconds, which the signature covers.
pub const TIMESTAMP_HEADER: &str = "cerberus-timestamp";

/// Signs calls under one secret; a service written in Rust verifies with it too.
///
/// ```
/// use cerberus_axum::webhook::Signer;
///
/// let signer = Signer::new(b"0123456789abcdef").unwrap();
/// let signature = signer.sign("1700000000", b"{}");
/// assert!(signature.starts_with("sha256=") && signature.len() == 7 + 64);
/// assert!(signer.verify("1700000000", b"{}", &signature));
/// assert!(!signer.verify("1700000001", b"{}", &signature));
/// ```
#[derive(Clone)]
pub struct Signer {
    mac: Hmac<Sha256>,
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signer").finish_non_exhaustive()
    }
}

impl Signer {
    /// A signer with `key`; `None` only if HMAC refused the key, which it does for no length.
    pub fn new(key: &[u8]) -> Option<Self> {
        Hmac::<Sha256>::new_from_slice(key)
            .ok()
            .map(|mac| Self { mac })
    }

    fn mac_of(&self, timestamp: &str, body: &[u8]) -> Hmac<Sha256> {
        let mut mac = self.mac.clone();
        mac.update(timestamp.as_bytes());
        mac.update(b".");
        mac.update(body);
        mac
    }

    /// The `cerberus-signature` value of `body` sent at `timestamp`.
    pub fn sign(&self, timestamp: &str, body: &[u8]) -> String {
        let tag = self.mac_of(timestamp, body).finalize().into_bytes();
        format!("sha256={}", hex::encode(tag))
    }

    /// Whether `signature` is that of `body` sent at `timestamp`, compared in constant time.
    pub fn verify(&self, timestamp: &str, body: &[u8], signature: &str) -> bool {
        let Some(tag) = signature
            .strip_prefix("sha256=")
            .and_then(|hex_tag| hex::decode(hex_tag).ok())
        else {
            return false;
        };
        self.mac_of(timestamp, body).verify_slice(&tag).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_the_timestamp_a_dot_and_the_body_with_hmac_sha256() {
        let mut mac = Hmac::<Sha256>::new_from_slice(b"Jefe").unwrap();
        mac.update(b"1700000000.{\"input\":{}}");
        let expected = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
        let signer = Signer::new(b"Jefe").unwrap();
        assert_eq!(signer.sign("1700000000", br#"{"input":{}}"#), expected);
    }

    #[test]
    fn verifies_only_the_same_key_time_and_body() {
        let signer = Signer::new(b"0123456789abcdef").unwrap();
        let signature = signer.sign("1", b"{}");
        assert!(signer.verify("1", b"{}", &signature));
        assert!(!signer.verify("2", b"{}", &signature));
        assert!(!signer.verify("1", b"{ }", &signature));
        assert!(
            !Signer::new(b"0123456789abcdeg")
                .unwrap()
                .verify("1", b"{}", &signature)
        );
        assert!(!signer.verify("1", b"{}", "sha256=zz"));
        assert!(!signer.verify("1", b"{}", signature.trim_start_matches("sha256=")));
    }
}
