//! Admin credentials: argon2id password hashes, short-lived JWT access tokens (HS256), and opaque
//! refresh tokens stored only as SHA-256 hashes and rotated on every use.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cerberus_core::OrganisationId;
use cerberus_core::store::{User, UserId};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::Rng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::error::ApiError;

/// The prefix of refresh tokens, so that a leaked one is easy to recognise.
const REFRESH_PREFIX: &str = "cbr_";

/// Hashes a password with argon2id (off the async threads: it is slow on purpose).
pub async fn hash_password(password: String) -> Result<String, ApiError> {
    tokio::task::spawn_blocking(move || {
        let salt = random_salt()?;
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|hash| hash.to_string())
            .map_err(|e| ApiError::Unavailable(format!("cannot hash a password: {e}")))
    })
    .await
    .map_err(|e| ApiError::Unavailable(format!("password hashing stopped: {e}")))?
}

/// A 128-bit salt from the thread's CSPRNG (seeded by the operating system).
fn random_salt() -> Result<SaltString, ApiError> {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    SaltString::encode_b64(&bytes)
        .map_err(|e| ApiError::Unavailable(format!("cannot encode a salt: {e}")))
}

/// What an unknown user's login is checked against: an argon2id hash, with the parameters of
/// `Argon2::default()`, of a random password nobody kept. A constant, so that it cannot fail to exist.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$fYhrI2i4Y/QaQbcslYeBSg$EQK/GaZ4FvbcudPJmFAU57zSgGaYqZV1ZFgtmSnF7w0";

/// Whether `password` matches `hash`. With no hash (an unknown user) a constant dummy hash is checked
/// instead, so that the answer takes as long whether or not the user exists.
pub async fn verify_password(password: String, hash: Option<String>) -> bool {
    let known = hash.is_some();
    let hash = hash.unwrap_or_else(|| DUMMY_HASH.to_owned());
    let matches = tokio::task::spawn_blocking(move || {
        PasswordHash::new(&hash).is_ok_and(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
    })
    .await
    .unwrap_or(false);
    known && matches
}

/// How far apart the clocks of the instance that issued a token and the one that checks it may be,
/// in seconds.
const LEEWAY: u64 = 5;

/// What an access token says.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// The user.
    pub sub: Uuid,
    /// The user's organisation: every query of the request is scoped to it.
    pub org: Uuid,
    /// Issued at (seconds since the epoch): a token issued in the future is refused.
    pub iat: u64,
    /// Not valid before (seconds since the epoch), when the token says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    /// Expires at (seconds since the epoch).
    pub exp: u64,
}

impl Claims {
    /// The user.
    pub fn user(&self) -> UserId {
        UserId(self.sub)
    }

    /// The organisation.
    pub fn organisation(&self) -> OrganisationId {
        OrganisationId(self.org)
    }
}

/// A new refresh token: the secret for the client, the hash for the store.
#[derive(Clone)]
pub struct RefreshToken {
    /// The token, shown once.
    pub secret: String,
    /// Its SHA-256 hash.
    pub hash: [u8; 32],
}

impl std::fmt::Debug for RefreshToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RefreshToken(…)")
    }
}

impl RefreshToken {
    /// 256 random bits.
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        let secret = format!("{REFRESH_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes));
        Self {
            hash: Self::hash_of(&secret),
            secret,
        }
    }

    /// The hash of a presented token.
    pub fn hash_of(secret: &str) -> [u8; 32] {
        Sha256::digest(secret.as_bytes()).into()
    }
}

/// Issues and checks access tokens.
#[derive(Clone)]
pub struct TokenIssuer {
    keys: Arc<(EncodingKey, DecodingKey)>,
    /// How long an access token lives.
    pub access_ttl: Duration,
    /// How long a refresh token lives.
    pub refresh_ttl: Duration,
}

impl std::fmt::Debug for TokenIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenIssuer")
            .field("access_ttl", &self.access_ttl)
            .field("refresh_ttl", &self.refresh_ttl)
            .finish_non_exhaustive()
    }
}

fn seconds(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl TokenIssuer {
    /// An issuer signing with `secret` (HS256; at least 32 bytes, shared by every instance).
    pub fn new(secret: &[u8], access_ttl: Duration, refresh_ttl: Duration) -> Self {
        crate::jose::install();
        Self {
            keys: Arc::new((
                EncodingKey::from_secret(secret),
                DecodingKey::from_secret(secret),
            )),
            access_ttl,
            refresh_ttl,
        }
    }

    /// An access token for `user`, valid for [`Self::access_ttl`] from `now`.
    pub fn access_token(&self, user: &User, now: SystemTime) -> Result<String, ApiError> {
        let claims = Claims {
            sub: user.id.0,
            org: user.organisation.0,
            iat: seconds(now),
            nbf: None,
            exp: seconds(now + self.access_ttl),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.keys.0)
            .map_err(|e| ApiError::Unavailable(format!("cannot sign a token: {e}")))
    }

    /// The claims of a valid token signed by this issuer: unexpired, issued in the past, and valid
    /// now if it says from when (`nbf`), each with a leeway of five seconds for clocks that differ
    /// between instances.
    pub fn verify(&self, token: &str) -> Result<Claims, ApiError> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = LEEWAY;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "sub", "iat"]);
        let claims = jsonwebtoken::decode::<Claims>(token, &self.keys.1, &validation)
            .map(|data| data.claims)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => {
                    ApiError::Unauthorized("the access token has expired: refresh it")
                }
                _ => ApiError::Unauthorized("invalid access token"),
            })?;
        if claims.iat > seconds(SystemTime::now()).saturating_add(LEEWAY) {
            return Err(ApiError::Unauthorized("invalid access token"));
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user() -> User {
        User {
            id: UserId(Uuid::new_v4()),
            organisation: OrganisationId::new_random(),
            email: "a@example.com".into(),
            role: cerberus_core::store::Role::Owner,
            created_at: SystemTime::now(),
            updated_at: SystemTime::now(),
        }
    }

    #[tokio::test]
    async fn passwords_hash_with_argon2id_and_verify() {
        let hash = hash_password("correct horse battery".into()).await.unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password("correct horse battery".into(), Some(hash.clone())).await);
        assert!(!verify_password("wrong".into(), Some(hash)).await);
        assert!(!verify_password("anything".into(), None).await);
        assert!(!verify_password("x".into(), Some("not a hash".into())).await);
        // An unknown user costs a login what a known one does: same algorithm and parameters.
        let dummy = PasswordHash::new(DUMMY_HASH).unwrap();
        let real = hash_password("correct horse battery".into()).await.unwrap();
        let real = PasswordHash::new(&real).unwrap();
        assert_eq!(
            (dummy.algorithm, dummy.version, &dummy.params),
            (real.algorithm, real.version, &real.params)
        );
    }

    #[test]
    fn tokens_carry_their_user_and_expire() {
        let issuer = TokenIssuer::new(&[7; 32], Duration::from_secs(60), Duration::from_secs(600));
        let user = user();
        let token = issuer.access_token(&user, SystemTime::now()).unwrap();
        let claims = issuer.verify(&token).unwrap();
        assert_eq!(
            (claims.user(), claims.organisation()),
            (user.id, user.organisation)
        );

        let old = issuer
            .access_token(&user, SystemTime::now() - Duration::from_secs(3600))
            .unwrap();
        assert!(
            issuer
                .verify(&old)
                .unwrap_err()
                .to_string()
                .contains("expired")
        );
        let forged = TokenIssuer::new(&[8; 32], Duration::from_secs(60), Duration::from_secs(60))
            .access_token(&user, SystemTime::now())
            .unwrap();
        assert!(
            issuer.verify(&forged).is_err(),
            "another secret's signature"
        );
        assert!(issuer.verify("not.a.token").is_err());
        let unsigned = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#),
            token.split('.').nth(1).unwrap()
        );
        assert!(issuer.verify(&unsigned).is_err(), "alg none is refused");
        let mut parts = token.split('.');
        let relabelled = format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256","typ":"JWT"}"#),
            parts.nth(1).unwrap(),
            parts.next().unwrap()
        );
        assert!(
            issuer.verify(&relabelled).is_err(),
            "a token claiming another algorithm is refused"
        );

        // Signed with the right secret, but from the future: issued there, or valid only later.
        let sign = |claims: &Claims| {
            jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &issuer.keys.0).unwrap()
        };
        let now = seconds(SystemTime::now());
        let fresh = Claims {
            sub: user.id.0,
            org: user.organisation.0,
            iat: now,
            nbf: None,
            exp: now + 60,
        };
        assert!(issuer.verify(&sign(&fresh)).is_ok());
        let issued_later = Claims {
            iat: now + 3600,
            exp: now + 7200,
            ..fresh.clone()
        };
        assert!(issuer.verify(&sign(&issued_later)).is_err());
        let valid_later = Claims {
            nbf: Some(now + 3600),
            ..fresh
        };
        assert!(issuer.verify(&sign(&valid_later)).is_err());
    }

    #[test]
    fn refresh_tokens_are_random_and_hashed() {
        let a = RefreshToken::generate();
        assert!(a.secret.starts_with(REFRESH_PREFIX));
        assert_ne!(a.secret, RefreshToken::generate().secret);
        assert_eq!(RefreshToken::hash_of(&a.secret), a.hash);
        assert!(!format!("{a:?}").contains(&a.secret));
    }
}
