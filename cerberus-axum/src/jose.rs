//! The cryptography behind JSON Web Tokens, installed as `jsonwebtoken`'s process-wide provider:
//! HS256 for the gateway's own admin access tokens (RustCrypto's `hmac` and `sha2`), and signature
//! verification of the public-key algorithms identity providers sign OAuth access tokens with
//! (`ring`, which the TLS stack links already).
//!
//! `jsonwebtoken` leaves the choice of cryptography to a provider. Its RustCrypto provider links the
//! `rsa` crate (RUSTSEC-2023-0071, a timing side channel on private-key operations); its aws-lc
//! provider builds a second C library beside `ring`. The gateway signs nothing but HS256, so this
//! provider signs HS256 only and verifies HS256, RS256/384/512, PS256/384/512, ES256/384 and EdDSA
//! (Ed25519) with `ring`'s own verifiers: no private-key RSA code is linked, and which algorithms a
//! token may use is still each caller's `Validation` to decide (admin tokens: HS256 only).

use std::sync::Once;

use hmac::{Hmac, Mac};
use jsonwebtoken::crypto::{CryptoProvider, JwkUtils, JwtSigner, JwtVerifier};
use jsonwebtoken::errors::{Error, ErrorKind};
use jsonwebtoken::jwk::ThumbprintHash;
use jsonwebtoken::{Algorithm, DecodingKey, DecodingKeyKind, EncodingKey};
use ring::signature as verifying;
use sha2::{Digest, Sha256, Sha384, Sha512};

type HmacSha256 = Hmac<Sha256>;

/// The provider: HS256 signing, HS256 and public-key verification, and the digests JWK thumbprints
/// use.
static PROVIDER: CryptoProvider = CryptoProvider {
    signer_factory: signer,
    verifier_factory: verifier,
    jwk_utils: JwkUtils {
        extract_rsa_public_key_components: |_| Err(ErrorKind::InvalidAlgorithm.into()),
        extract_ec_public_key_coordinates: |_, _| Err(ErrorKind::InvalidAlgorithm.into()),
        compute_digest: digest,
    },
};

/// Installs the provider for this process, once. When the embedding program installed its own
/// provider first, that one stays: it serves these algorithms too, or signing and verifying fail
/// (closed).
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
    // A key of one family never verifies another's algorithm (an HMAC secret is no public key).
    if key.family() != algorithm.family() {
        return Err(ErrorKind::InvalidKeyFormat.into());
    }
    let public = |verifying: &'static dyn verifying::VerificationAlgorithm| {
        PublicKey::boxed(*algorithm, verifying, key)
    };
    let rsa = |parameters: &'static verifying::RsaParameters| match key.kind() {
        DecodingKeyKind::RsaModulusExponent { n, e } => Ok(Box::new(RsaPublicKey {
            algorithm: *algorithm,
            parameters,
            n: n.clone(),
            e: e.clone(),
        }) as Box<dyn JwtVerifier>),
        DecodingKeyKind::SecretOrDer(der) => Ok(Box::new(PublicKey {
            algorithm: *algorithm,
            verifying: parameters,
            key: der.clone(),
        }) as Box<dyn JwtVerifier>),
    };
    match algorithm {
        Algorithm::HS256 => Ok(Box::new(Hs256(hmac_of(key.try_get_hmac_secret()?)?))),
        Algorithm::RS256 => rsa(&verifying::RSA_PKCS1_2048_8192_SHA256),
        Algorithm::RS384 => rsa(&verifying::RSA_PKCS1_2048_8192_SHA384),
        Algorithm::RS512 => rsa(&verifying::RSA_PKCS1_2048_8192_SHA512),
        Algorithm::PS256 => rsa(&verifying::RSA_PSS_2048_8192_SHA256),
        Algorithm::PS384 => rsa(&verifying::RSA_PSS_2048_8192_SHA384),
        Algorithm::PS512 => rsa(&verifying::RSA_PSS_2048_8192_SHA512),
        Algorithm::ES256 => public(&verifying::ECDSA_P256_SHA256_FIXED),
        Algorithm::ES384 => public(&verifying::ECDSA_P384_SHA384_FIXED),
        Algorithm::EdDSA => public(&verifying::ED25519),
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

/// An RSA public key given as modulus and exponent (a JWK's `n` and `e`).
struct RsaPublicKey {
    algorithm: Algorithm,
    parameters: &'static verifying::RsaParameters,
    n: Vec<u8>,
    e: Vec<u8>,
}

impl signature::Verifier<Vec<u8>> for RsaPublicKey {
    fn verify(&self, message: &[u8], signature: &Vec<u8>) -> Result<(), signature::Error> {
        verifying::RsaPublicKeyComponents {
            n: &self.n,
            e: &self.e,
        }
        .verify(self.parameters, message, signature)
        .map_err(|_| signature::Error::new())
    }
}

impl JwtVerifier for RsaPublicKey {
    fn algorithm(&self) -> Algorithm {
        self.algorithm
    }
}

/// A public key in the encoding `ring` reads for its algorithm: an EC point (`04 ‖ x ‖ y`, as
/// `DecodingKey::from_ec_components` makes it), an Ed25519 key's 32 bytes, or an RSA key's DER.
struct PublicKey {
    algorithm: Algorithm,
    verifying: &'static dyn verifying::VerificationAlgorithm,
    key: Vec<u8>,
}

impl PublicKey {
    fn boxed(
        algorithm: Algorithm,
        verifying: &'static dyn verifying::VerificationAlgorithm,
        key: &DecodingKey,
    ) -> Result<Box<dyn JwtVerifier>, Error> {
        match key.kind() {
            DecodingKeyKind::SecretOrDer(bytes) => Ok(Box::new(Self {
                algorithm,
                verifying,
                key: bytes.clone(),
            })),
            DecodingKeyKind::RsaModulusExponent { .. } => Err(ErrorKind::InvalidKeyFormat.into()),
        }
    }
}

impl signature::Verifier<Vec<u8>> for PublicKey {
    fn verify(&self, message: &[u8], signature: &Vec<u8>) -> Result<(), signature::Error> {
        verifying::UnparsedPublicKey::new(self.verifying, &self.key)
            .verify(message, signature)
            .map_err(|_| signature::Error::new())
    }
}

impl JwtVerifier for PublicKey {
    fn algorithm(&self) -> Algorithm {
        self.algorithm
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
    fn signs_nothing_but_hs256() {
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
        }
        for algorithm in [Algorithm::HS384, Algorithm::HS512] {
            assert!(
                verifier(&algorithm, &DecodingKey::from_secret(b"secret")).is_err(),
                "{algorithm:?}"
            );
        }
    }

    /// Checks that `signature` of `message` verifies with `key` under `algorithm`, and that a changed
    /// message or signature does not.
    fn verifies(algorithm: Algorithm, key: &DecodingKey, message: &[u8], signature: Vec<u8>) {
        let check = verifier(&algorithm, key).unwrap();
        assert!(check.verify(message, &signature).is_ok(), "{algorithm:?}");
        assert!(check.verify(b"another message", &signature).is_err());
        let mut tampered = signature;
        if let Some(last) = tampered.last_mut() {
            *last ^= 1;
        }
        assert!(check.verify(message, &tampered).is_err(), "{algorithm:?}");
    }

    fn b64(bytes: &[u8]) -> String {
        base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, bytes)
    }

    #[test]
    fn verifies_ecdsa_and_ed25519_signatures_from_their_jwk_coordinates() {
        use ring::signature::KeyPair;
        let random = ring::rand::SystemRandom::new();
        let message = b"header.claims";

        let es256 = &verifying::ECDSA_P256_SHA256_FIXED_SIGNING;
        let pkcs8 = verifying::EcdsaKeyPair::generate_pkcs8(es256, &random).unwrap();
        let pair = verifying::EcdsaKeyPair::from_pkcs8(es256, pkcs8.as_ref(), &random).unwrap();
        let point = pair.public_key().as_ref();
        let (x, y) = point[1..].split_at(32);
        let key = DecodingKey::from_ec_components(&b64(x), &b64(y)).unwrap();
        let signature = pair.sign(&random, message).unwrap().as_ref().to_vec();
        verifies(Algorithm::ES256, &key, message, signature.clone());
        // The same key and signature under another curve's algorithm fail.
        let es384 = verifier(&Algorithm::ES384, &key).unwrap();
        assert!(es384.verify(message, &signature).is_err());

        let pkcs8 = verifying::Ed25519KeyPair::generate_pkcs8(&random).unwrap();
        let pair = verifying::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        let key = DecodingKey::from_ed_components(&b64(pair.public_key().as_ref())).unwrap();
        verifies(
            Algorithm::EdDSA,
            &key,
            message,
            pair.sign(message).as_ref().to_vec(),
        );
    }

    #[test]
    fn verifies_rsa_signatures_from_a_modulus_and_exponent() {
        use ring::signature::KeyPair;
        let random = ring::rand::SystemRandom::new();
        // A 2048-bit RSA key in PKCS#1 DER (`openssl genpkey -algorithm RSA -outform DER`): ring
        // cannot make RSA keys.
        let pair = verifying::RsaKeyPair::from_der(include_bytes!(
            "../tests/fixtures/oauth-signing-rsa.der"
        ))
        .unwrap();
        let components: verifying::RsaPublicKeyComponents<Vec<u8>> = pair.public_key().into();
        let key =
            DecodingKey::from_rsa_components(&b64(&components.n), &b64(&components.e)).unwrap();
        let message = b"header.claims";
        for (algorithm, padding) in [
            (
                Algorithm::RS256,
                &verifying::RSA_PKCS1_SHA256 as &dyn verifying::RsaEncoding,
            ),
            (Algorithm::RS512, &verifying::RSA_PKCS1_SHA512),
            (Algorithm::PS256, &verifying::RSA_PSS_SHA256),
        ] {
            let mut signature = vec![0; pair.public().modulus_len()];
            pair.sign(padding, &random, message, &mut signature)
                .unwrap();
            verifies(algorithm, &key, message, signature);
        }
        // An RSA key is no EC key.
        assert!(verifier(&Algorithm::ES256, &key).is_err());
    }
}
