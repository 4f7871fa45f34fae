//! An issuer's signing keys: found through its metadata (OpenID Connect discovery, else RFC 8414),
//! fetched from its JWKS, kept for `key_max_age`, and fetched again, at most once per
//! `refresh_interval`, when a token names a key the cache does not hold (the issuer rotated its
//! keys).

use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, header};
use http_body_util::BodyExt;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};

use crate::upstream_client::{SetByOperator, UpstreamClient};

/// The largest metadata or key set read, in bytes.
const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;
/// How long one fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// Why an issuer's keys cannot be had.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub(super) struct KeysUnavailable(String);

/// One issuer's keys.
pub(super) struct IssuerKeys {
    issuer: String,
    jwks_uri: Option<String>,
    http: Arc<UpstreamClient>,
    refresh_interval: Duration,
    max_age: Duration,
    current: RwLock<Option<Arc<KeySet>>>,
    /// When keys were last fetched (or tried): one fetch at a time, and at most one per interval.
    last_fetch: tokio::sync::Mutex<Option<Instant>>,
}

/// The keys of one fetch.
struct KeySet {
    keys: Vec<Key>,
    fetched: Instant,
}

struct Key {
    id: Option<String>,
    /// What the key may verify: its JWK's `alg` when given, else every algorithm of its type.
    algorithms: Vec<Algorithm>,
    key: DecodingKey,
}

impl KeySet {
    /// The key `kid` names for `algorithm`; without a `kid`, the only key for `algorithm`.
    fn find(&self, kid: Option<&str>, algorithm: Algorithm) -> Option<DecodingKey> {
        let mut usable = self
            .keys
            .iter()
            .filter(|key| key.algorithms.contains(&algorithm));
        match kid {
            Some(kid) => usable
                .find(|key| key.id.as_deref() == Some(kid))
                .map(|key| key.key.clone()),
            None => match (usable.next(), usable.next()) {
                (Some(only), None) => Some(only.key.clone()),
                _ => None,
            },
        }
    }
}

impl IssuerKeys {
    pub(super) fn new(
        issuer: String,
        jwks_uri: Option<String>,
        http: Arc<UpstreamClient>,
        refresh_interval: Duration,
        max_age: Duration,
    ) -> Self {
        Self {
            issuer,
            jwks_uri,
            http,
            refresh_interval,
            max_age,
            current: RwLock::new(None),
            last_fetch: tokio::sync::Mutex::new(None),
        }
    }

    fn current(&self) -> Option<Arc<KeySet>> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The key `kid` names for `algorithm`: `Ok(None)` when the issuer does not publish it, an
    /// error when its keys cannot be fetched and none were before.
    pub(super) async fn key(
        &self,
        kid: Option<&str>,
        algorithm: Algorithm,
    ) -> Result<Option<DecodingKey>, KeysUnavailable> {
        let asked = Instant::now();
        let fresh = |set: &KeySet| set.fetched.elapsed() < self.max_age;
        if let Some(set) = self.current()
            && fresh(&set)
            && let Some(key) = set.find(kid, algorithm)
        {
            return Ok(Some(key));
        }
        let mut last_fetch = self.last_fetch.lock().await;
        let known = self.current();
        // Fetched while this call waited its turn.
        if let Some(set) = &known
            && set.fetched >= asked
        {
            return Ok(set.find(kid, algorithm));
        }
        if last_fetch.is_some_and(|at| at.elapsed() < self.refresh_interval) {
            return match known {
                Some(set) => Ok(set.find(kid, algorithm)),
                None => Err(KeysUnavailable(
                    "the identity provider's keys could not be fetched; the next try is soon"
                        .into(),
                )),
            };
        }
        *last_fetch = Some(Instant::now());
        match tokio::time::timeout(FETCH_TIMEOUT * 2, self.fetch()).await {
            Ok(Ok(set)) => {
                let set = Arc::new(set);
                *self.current.write().unwrap_or_else(PoisonError::into_inner) =
                    Some(Arc::clone(&set));
                Ok(set.find(kid, algorithm))
            }
            failed => {
                let error = match failed {
                    Ok(Err(e)) => e,
                    _ => KeysUnavailable("fetching the keys timed out".into()),
                };
                // Keys fetched before stay in use until the issuer answers again.
                match known {
                    Some(set) => {
                        tracing::warn!(issuer = %self.issuer, error = %error, "cannot fetch an identity provider's keys; using those fetched before");
                        Ok(set.find(kid, algorithm))
                    }
                    None => Err(error),
                }
            }
        }
    }

    /// Fetches the issuer's metadata (unless its key set's URL is configured), then its keys.
    async fn fetch(&self) -> Result<KeySet, KeysUnavailable> {
        let jwks_uri = match &self.jwks_uri {
            Some(uri) => uri.clone(),
            None => self.discover().await?,
        };
        let set: JwkSet = serde_json::from_slice(&self.get(&jwks_uri).await?)
            .map_err(|e| KeysUnavailable(format!("{jwks_uri}: not a JWK set: {e}")))?;
        let keys = set
            .keys
            .iter()
            .filter(|jwk| {
                !matches!(
                    jwk.common.public_key_use,
                    Some(PublicKeyUse::Encryption | PublicKeyUse::Other(_))
                )
            })
            .filter_map(|jwk| {
                let algorithms = algorithms_of(&jwk.algorithm, jwk.common.key_algorithm)?;
                // A symmetric (`oct`) key never verifies anything: `algorithms_of` gives it none.
                let key = DecodingKey::from_jwk(jwk).ok()?;
                Some(Key {
                    id: jwk.common.key_id.clone(),
                    algorithms,
                    key,
                })
            })
            .collect();
        Ok(KeySet {
            keys,
            fetched: Instant::now(),
        })
    }

    /// The issuer's `jwks_uri`, from its OpenID Connect metadata or else its RFC 8414 metadata; the
    /// metadata's `issuer` must be the issuer (so one issuer cannot pass off another's keys).
    async fn discover(&self) -> Result<String, KeysUnavailable> {
        let issuer = self.issuer.trim_end_matches('/');
        let oidc = format!("{issuer}/.well-known/openid-configuration");
        // RFC 8414 puts the well-known segment before the issuer's path.
        let Some((scheme, rest)) = issuer.split_once("://") else {
            return Err(KeysUnavailable(format!("{issuer}: not a URL")));
        };
        let rfc8414 = match rest.split_once('/') {
            Some((host, path)) => {
                format!("{scheme}://{host}/.well-known/oauth-authorization-server/{path}")
            }
            None => format!("{scheme}://{rest}/.well-known/oauth-authorization-server"),
        };
        let mut failures = Vec::new();
        for url in [oidc, rfc8414] {
            let metadata = match self.get(&url).await {
                Ok(body) => body,
                Err(e) => {
                    failures.push(e.0);
                    continue;
                }
            };
            #[derive(serde::Deserialize)]
            struct Metadata {
                issuer: String,
                jwks_uri: Option<String>,
            }
            let metadata: Metadata = serde_json::from_slice(&metadata).map_err(|e| {
                KeysUnavailable(format!("{url}: not authorization server metadata: {e}"))
            })?;
            if metadata.issuer != self.issuer {
                return Err(KeysUnavailable(format!(
                    "{url} names the issuer {}, not {}",
                    metadata.issuer, self.issuer
                )));
            }
            return metadata
                .jwks_uri
                .ok_or_else(|| KeysUnavailable(format!("{url} has no jwks_uri")));
        }
        Err(KeysUnavailable(failures.join("; ")))
    }

    /// The body of a `GET` of `url`, at most [`MAX_DOCUMENT_BYTES`], within [`FETCH_TIMEOUT`].
    async fn get(&self, url: &str) -> Result<Bytes, KeysUnavailable> {
        let failed = |message: String| KeysUnavailable(format!("{url}: {message}"));
        let mut request = Request::get(url)
            .header(header::ACCEPT, "application/json")
            .body(Bytes::new())
            .map_err(|e| failed(e.to_string()))?;
        // The configuration file's issuers: the operator chose these addresses.
        request.extensions_mut().insert(SetByOperator);
        let exchange = async {
            let response = self
                .http
                .send(request)
                .await
                .map_err(|e| failed(cerberus_core::with_causes(&e)))?;
            let status = response.status();
            if !status.is_success() {
                return Err(failed(format!("answered {status}")));
            }
            http_body_util::Limited::new(response.into_body(), MAX_DOCUMENT_BYTES)
                .collect()
                .await
                .map(http_body_util::Collected::to_bytes)
                .map_err(|e| failed(format!("cannot read the answer: {e}")))
        };
        tokio::time::timeout(FETCH_TIMEOUT, exchange)
            .await
            .map_err(|_| failed("timed out".into()))?
    }
}

/// The algorithms a key of `parameters` may verify: its declared `alg` alone when it has one that
/// fits its type, every algorithm of its type otherwise; none for a symmetric key, an unknown
/// curve, or a declared `alg` of another type.
fn algorithms_of(
    parameters: &AlgorithmParameters,
    declared: Option<KeyAlgorithm>,
) -> Option<Vec<Algorithm>> {
    use Algorithm::{ES256, ES384, EdDSA, PS256, PS384, PS512, RS256, RS384, RS512};
    let of_type: Vec<Algorithm> = match parameters {
        AlgorithmParameters::RSA(_) => vec![RS256, RS384, RS512, PS256, PS384, PS512],
        AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
            EllipticCurve::P256 => vec![ES256],
            EllipticCurve::P384 => vec![ES384],
            _ => return None,
        },
        AlgorithmParameters::OctetKeyPair(okp) => match okp.curve {
            EllipticCurve::Ed25519 => vec![EdDSA],
            _ => return None,
        },
        AlgorithmParameters::OctetKey(_) => return None,
    };
    match declared {
        None => Some(of_type),
        Some(declared) => {
            let declared = declared.to_string().parse::<Algorithm>().ok()?;
            of_type.contains(&declared).then(|| vec![declared])
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn set(jwks: serde_json::Value) -> KeySet {
        let set: JwkSet = serde_json::from_value(jwks).unwrap();
        KeySet {
            keys: set
                .keys
                .iter()
                .filter_map(|jwk| {
                    Some(Key {
                        id: jwk.common.key_id.clone(),
                        algorithms: algorithms_of(&jwk.algorithm, jwk.common.key_algorithm)?,
                        key: DecodingKey::from_jwk(jwk).ok()?,
                    })
                })
                .collect(),
            fetched: Instant::now(),
        }
    }

    const X: &str = "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU";
    const Y: &str = "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0";

    #[test]
    fn a_key_id_picks_its_key_and_none_picks_the_only_one() {
        let keys = set(json!({"keys": [
            {"kty": "EC", "crv": "P-256", "x": X, "y": Y, "kid": "a"},
            {"kty": "EC", "crv": "P-256", "x": X, "y": Y, "kid": "b", "alg": "ES256"},
        ]}));
        assert!(keys.find(Some("a"), Algorithm::ES256).is_some());
        assert!(keys.find(Some("b"), Algorithm::ES256).is_some());
        assert!(keys.find(Some("c"), Algorithm::ES256).is_none());
        assert!(
            keys.find(Some("a"), Algorithm::RS256).is_none(),
            "an EC key is no RSA key"
        );
        assert!(
            keys.find(None, Algorithm::ES256).is_none(),
            "two keys fit: ambiguous"
        );
        let one = set(json!({"keys": [{"kty": "EC", "crv": "P-256", "x": X, "y": Y}]}));
        assert!(one.find(None, Algorithm::ES256).is_some());
    }

    #[test]
    fn symmetric_keys_and_mismatched_algorithms_are_never_used() {
        let keys = set(json!({"keys": [
            {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac", "alg": "HS256"},
            {"kty": "EC", "crv": "P-256", "x": X, "y": Y, "kid": "lying", "alg": "RS256"},
        ]}));
        assert!(keys.keys.is_empty());
        for algorithm in [Algorithm::HS256, Algorithm::RS256, Algorithm::ES256] {
            assert!(keys.find(Some("hmac"), algorithm).is_none());
            assert!(keys.find(Some("lying"), algorithm).is_none());
        }
    }
}
