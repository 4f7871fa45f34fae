//! The cryptography behind admin access tokens: HMAC-SHA256 only, from RustCrypto's `hmac` and
//! `sha2`, installed as `jsonwebtoken`'s process-wide provider.
//!
//! `jsonwebtoken` leaves the choice of cryptography to a provider. Its RustCrypto provider links RSA,
//! ECDSA and Ed25519 code, and with it the `rsa` crate (RUSTSEC-2023-0071, a timing side channel on
//! private-key operations); its aws-lc provider builds a C library. Admin tokens are HS256 and nothing
//! else, so this provider signs and verifies HS256 and refuses every other algorithm: no asymmetric
//! code is linked, and a token claiming another algorithm fails verification.

use std::sync::Once;

use hmac::{Hmac, Mac};
use jsonwebtoken::crypto::{CryptoProvider, JwkUtils, JwtSigner, JwtVerifier};
use jsonwebtoken::errors::{Error, ErrorKind};
use jsonwebtoken::jwk::ThumbprintHash;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use sha2::{Digest, Sha256, Sha384, Sha512};

type HmacSha256 = Hmac<Sha256>;

/// The provider: HS256 signing and verification, and the digests JWK thumbprints use.
static PROVIDER: CryptoProvider = CryptoProvider {
    signer_factory: signer,
    verifier_factory: verifier,
    jwk_utils: JwkUtils {
        extract_rsa_public_key_components: |_| Err(ErrorKind::InvalidAlgorithm.into()),
        extract_ec_public_key_coordinates: |_, _| Err(ErrorKind::InvalidAlgorithm.into()),
        compute_digest: digest,
    },
};

/// Installs the HS256 provider for this process, once. When the embedding program installed its own
/// provider first, that one stays: it serves HS256 too, or signing and verifying fail (closed).
pub(crate) fn install() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        if PROVIDER.install_default().is_err() {
            tracing::debug!("a JWT crypto provider was installed before; admin tokens use it");
        }
    });
}

fn signer(algorithm: &Algorithm, key: &EncodingKey) -> Result<Box<dyn JwtSigner>, Error> {
    match algorithm {
        Algorithm::HS256 => Ok(Box::new(Hs256(hmac_of(key.try_get_hmac_secret()?)?))),
        _ => Err(ErrorKind::InvalidAlgorithm.into()),
    }
}

fn verifier(algorithm: &Algorithm, key: &DecodingKey) -> Result<Box<dyn JwtVerifier>, Error> {
    match algorithm {
        Algorithm::HS256 => Ok(Box::new(Hs256(hmac_of(key.try_get_hmac_secret()?)?))),
        _ => Err(ErrorKind::InvalidAlgorithm.into()),
    }
}

fn hmac_of(secret: &[u8]) -> Result<HmacSha256, Error> {
    HmacSha256::new_from_slice(secret).map_err(|_| ErrorKind::InvalidKeyFormat.into())
}

fn digest(data: &[u8], hash: ThumbprintHash) -> Vec<u8> {
    match hash {
        ThumbprintHash::SHA256 => Sha256::digest(data).to_vec(),
        ThumbprintHash::SHA384 => Sha384::digest(data).to_vec(),
        ThumbprintHash::SHA512 => Sha512::digest(data).to_vec(),
    }
}

/// An HMAC-SHA256 key, keyed once and cloned for each message.
struct Hs256(HmacSha256);

impl signature::Signer<Vec<u8>> for Hs256 {
    fn try_sign(&self, message: &[u8]) -> Result<Vec<u8>, signature::Error> {
        let mut mac = self.0.clone();
        mac.update(message);
        Ok(mac.finalize().into_bytes().to_vec())
    }
}

impl signature::Verifier<Vec<u8>> for Hs256 {
    /// Compares in constant time (`verify_slice`).
    fn verify(&self, message: &[u8], tag: &Vec<u8>) -> Result<(), signature::Error> {
        let mut mac = self.0.clone();
        mac.update(message);
        mac.verify_slice(tag).map_err(signature::Error::from_source)
    }
}

impl JwtSigner for Hs256 {
    fn algorithm(&self) -> Algorithm {
        Algorithm::HS256
    }
}

impl JwtVerifier for Hs256 {
    fn algorithm(&self) -> Algorithm {
        Algorithm::HS256
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 4231 test case 2: HMAC-SHA256 with key "Jefe".
    #[test]
    fn signs_as_the_rfc_says() {
        let key = EncodingKey::from_secret(b"Jefe");
        let tag = signer(&Algorithm::HS256, &key)
            .unwrap()
            .try_sign(b"what do ya want for nothing?")
            .unwrap();
        assert_eq!(
            hex::encode(tag),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn verifies_its_own_tags_and_refuses_others() {
        let good = DecodingKey::from_secret(b"secret");
        let tag = signer(&Algorithm::HS256, &EncodingKey::from_secret(b"secret"))
            .unwrap()
            .try_sign(b"message")
            .unwrap();
        let check = verifier(&Algorithm::HS256, &good).unwrap();
        assert!(check.verify(b"message", &tag).is_ok());
        assert!(check.verify(b"massage", &tag).is_err());
        assert!(check.verify(b"message", &tag[..31].to_vec()).is_err());
        let other = verifier(&Algorithm::HS256, &DecodingKey::from_secret(b"other")).unwrap();
        assert!(other.verify(b"message", &tag).is_err());
    }

    #[test]
    fn refuses_every_other_algorithm() {
        let key = EncodingKey::from_secret(b"secret");
        for algorithm in [
            Algorithm::HS384,
            Algorithm::HS512,
            Algorithm::RS256,
            Algorithm::PS256,
            Algorithm::ES256,
            Algorithm::EdDSA,
        ] {
            assert!(signer(&algorithm, &key).is_err(), "{algorithm:?}");
            assert!(
                verifier(&algorithm, &DecodingKey::from_secret(b"secret")).is_err(),
                "{algorithm:?}"
            );
        }
    }
}
