//! An issuer's signing keys: found through its metadata (OpenID Connect discovery, else RFC 8414),
//! fetched from its JWKS, and fetched again when a token names a key the cache does not hold (the
//! issuer rotated its keys) or when they are older than `max_age`, at most once per
//! `refresh_interval` either way.
//!
//! A fetch runs in a task of its own, never in a request's future: a client that hangs up cannot
//! cancel it and so keep the keys from ever being fetched. Keys past their age keep verifying while
//! they are fetched again in the background; only a token naming an unknown key waits for a fetch.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, header};
use http_body_util::BodyExt;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};

use crate::upstream_client::{SetByOperator, UpstreamClient};

/// The largest metadata or key set read, in bytes.
const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;
/// How long one `GET` may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a whole fetch may take: discovery (two documents at most) and the key set.
const FETCH_BUDGET: Duration = Duration::from_secs(30);

/// Why an issuer's keys cannot be had.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub(super) struct KeysUnavailable(String);

/// Who set an issuer's URLs, and so what they may reach.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum SetBy {
    /// The operator, in the configuration file: the issuer's own host and its configured key set
    /// URL are reached wherever they are.
    Operator,
    /// An admin, through the API: every URL is reached only where the egress policy permits, as
    /// admin-set upstreams are.
    #[cfg(feature = "control-plane")]
    Admin,
}

/// One issuer's keys; clones share them.
#[derive(Clone)]
pub(super) struct IssuerKeys {
    inner: Arc<Inner>,
}

struct Inner {
    issuer: String,
    jwks_uri: Option<String>,
    set_by: SetBy,
    http: Arc<UpstreamClient>,
    refresh_interval: Duration,
    max_age: Duration,
    current: RwLock<Option<Arc<KeySet>>>,
    /// When keys were last fetched (or tried): one fetch at a time, and at most one per interval.
    last_fetch: tokio::sync::Mutex<Option<Instant>>,
    /// Whether a background refresh of aged keys is under way.
    refreshing: AtomicBool,
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
    /// The keys of a JWK set document; a key of a type or curve this gateway does not use (an
    /// encryption key, a curve of tomorrow) is skipped, not fatal to the others.
    fn parse(document: &[u8], fetched: Instant) -> Result<Self, String> {
        #[derive(serde::Deserialize)]
        struct Document {
            keys: Vec<serde_json::Value>,
        }
        let document: Document =
            serde_json::from_slice(document).map_err(|e| format!("not a JWK set: {e}"))?;
        let keys = document
            .keys
            .into_iter()
            .filter_map(|value| serde_json::from_value::<Jwk>(value).ok())
            .filter(|jwk| {
                !matches!(
                    jwk.common.public_key_use,
                    Some(PublicKeyUse::Encryption | PublicKeyUse::Other(_))
                )
            })
            .filter_map(|jwk| {
                // A symmetric (`oct`) key never verifies anything: `algorithms_of` gives it none.
                let algorithms = algorithms_of(&jwk.algorithm, jwk.common.key_algorithm)?;
                let key = DecodingKey::from_jwk(&jwk).ok()?;
                Some(Key {
                    id: jwk.common.key_id.clone(),
                    algorithms,
                    key,
                })
            })
            .collect();
        Ok(Self { keys, fetched })
    }

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
        set_by: SetBy,
        http: Arc<UpstreamClient>,
        refresh_interval: Duration,
        max_age: Duration,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                issuer,
                jwks_uri,
                set_by,
                http,
                refresh_interval,
                max_age,
                current: RwLock::new(None),
                last_fetch: tokio::sync::Mutex::new(None),
                refreshing: AtomicBool::new(false),
            }),
        }
    }

    /// The key `kid` names for `algorithm`: `Ok(None)` when the issuer does not publish it, an
    /// error when its keys cannot be fetched and none were before.
    pub(super) async fn key(
        &self,
        kid: Option<&str>,
        algorithm: Algorithm,
    ) -> Result<Option<DecodingKey>, KeysUnavailable> {
        if let Some(set) = self.inner.current()
            && let Some(key) = set.find(kid, algorithm)
        {
            if set.fetched.elapsed() >= self.inner.max_age {
                self.refresh_in_background();
            }
            return Ok(Some(key));
        }
        let asked = Instant::now();
        let inner = Arc::clone(&self.inner);
        let set = tokio::spawn(async move { inner.fetch_if_due(asked).await })
            .await
            .map_err(|e| KeysUnavailable(format!("the key fetch stopped: {e}")))??;
        Ok(set.find(kid, algorithm))
    }

    /// Fetches the keys now, in a task of its own, logging how many came (a failure is logged as a
    /// warning): at start-up, so that a misconfigured issuer shows before the first person does.
    pub(super) fn prefetch(&self) {
        let inner = Arc::clone(&self.inner);
        tokio::spawn(async move {
            if let Ok(set) = inner.fetch_if_due(Instant::now()).await {
                tracing::info!(issuer = %inner.issuer, keys = set.keys.len(), "fetched an identity provider's keys");
            }
        });
    }

    /// Fetches aged keys again in a task of its own, unless one already is.
    fn refresh_in_background(&self) {
        if self
            .inner
            .refreshing
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return;
        }
        let inner = Arc::clone(&self.inner);
        tokio::spawn(async move {
            // A failure is logged by the fetch, and the aged keys stay in use.
            let _ = inner.fetch_if_due(Instant::now()).await;
            inner.refreshing.store(false, Ordering::Release);
        });
    }
}

impl Inner {
    fn current(&self) -> Option<Arc<KeySet>> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The keys fetched at or after `asked`: fetched now unless another fetch since gave them, or
    /// the last one was less than the refresh interval ago (then the keys held, if any).
    async fn fetch_if_due(&self, asked: Instant) -> Result<Arc<KeySet>, KeysUnavailable> {
        let mut last_fetch = self.last_fetch.lock().await;
        let known = self.current();
        if let Some(set) = &known
            && set.fetched >= asked
        {
            return Ok(Arc::clone(set));
        }
        if last_fetch.is_some_and(|at| at.elapsed() < self.refresh_interval) {
            return known.ok_or_else(|| {
                KeysUnavailable(
                    "the identity provider's keys could not be fetched; the next try is soon"
                        .into(),
                )
            });
        }
        *last_fetch = Some(Instant::now());
        let error = match tokio::time::timeout(FETCH_BUDGET, self.fetch()).await {
            Ok(Ok(set)) => {
                let set = Arc::new(set);
                *self.current.write().unwrap_or_else(PoisonError::into_inner) =
                    Some(Arc::clone(&set));
                return Ok(set);
            }
            Ok(Err(e)) => e,
            Err(_) => KeysUnavailable("fetching the keys timed out".into()),
        };
        tracing::warn!(issuer = %self.issuer, error = %error, "cannot fetch an identity provider's keys");
        // Keys fetched before stay in use until the issuer answers again.
        known.ok_or(error)
    }

    /// Fetches the issuer's metadata (unless its key set's URL is configured), then its keys.
    async fn fetch(&self) -> Result<KeySet, KeysUnavailable> {
        let jwks_uri = match &self.jwks_uri {
            Some(uri) => uri.clone(),
            None => self.discover().await?,
        };
        let document = self.get(&jwks_uri).await?;
        KeySet::parse(&document, Instant::now())
            .map_err(|e| KeysUnavailable(format!("{jwks_uri}: {e}")))
    }

    /// The issuer's `jwks_uri`, from its OpenID Connect metadata or else its RFC 8414 metadata; the
    /// metadata's `issuer` must be the issuer (so one issuer cannot pass off another's keys), and the
    /// key set's URL must be `https` (`http` only on a loopback address).
    async fn discover(&self) -> Result<String, KeysUnavailable> {
        #[derive(serde::Deserialize)]
        struct Metadata {
            issuer: String,
            jwks_uri: Option<String>,
        }
        let issuer = self.issuer.trim_end_matches('/');
        let Some((scheme, rest)) = issuer.split_once("://") else {
            return Err(KeysUnavailable(format!("{issuer}: not a URL")));
        };
        // RFC 8414 puts the well-known segment before the issuer's path.
        let rfc8414 = match rest.split_once('/') {
            Some((host, path)) => {
                format!("{scheme}://{host}/.well-known/oauth-authorization-server/{path}")
            }
            None => format!("{scheme}://{rest}/.well-known/oauth-authorization-server"),
        };
        let mut failures = Vec::new();
        for url in [
            format!("{issuer}/.well-known/openid-configuration"),
            rfc8414,
        ] {
            let metadata = match self.get(&url).await {
                Ok(body) => body,
                Err(e) => {
                    failures.push(e.0);
                    continue;
                }
            };
            let metadata: Metadata = match serde_json::from_slice(&metadata) {
                Ok(metadata) => metadata,
                Err(e) => {
                    failures.push(format!("{url}: not authorization server metadata: {e}"));
                    continue;
                }
            };
            if metadata.issuer != self.issuer {
                failures.push(format!(
                    "{url} names the issuer {}, not {}",
                    metadata.issuer, self.issuer
                ));
                continue;
            }
            let Some(jwks_uri) = metadata.jwks_uri else {
                failures.push(format!("{url} has no jwks_uri"));
                continue;
            };
            super::check_url(&jwks_uri)
                .map_err(|e| KeysUnavailable(format!("{url}: jwks_uri {jwks_uri}: {e}")))?;
            return Ok(jwks_uri);
        }
        Err(KeysUnavailable(failures.join("; ")))
    }

    /// The body of a `GET` of `url`, at most [`MAX_DOCUMENT_BYTES`], within [`FETCH_TIMEOUT`]. The
    /// issuer's own host and a key set URL the operator configured are the operator's choice and
    /// reached as such; another host (a key set URL the issuer's metadata names), and every URL of
    /// an issuer an admin set, only where the egress policy lets admin-set upstreams reach.
    async fn get(&self, url: &str) -> Result<Bytes, KeysUnavailable> {
        let failed = |message: String| KeysUnavailable(format!("{url}: {message}"));
        let mut request = Request::get(url)
            .header(header::ACCEPT, "application/json")
            .body(Bytes::new())
            .map_err(|e| failed(e.to_string()))?;
        let operators = self.set_by == SetBy::Operator
            && (self.jwks_uri.as_deref() == Some(url)
                || authority(url).is_some() && authority(url) == authority(&self.issuer));
        if operators {
            request.extensions_mut().insert(SetByOperator);
        }
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

/// The scheme and authority of `url` (`https://login.example.com:8443`), lower-cased.
fn authority(url: &str) -> Option<String> {
    let uri: http::Uri = url.parse().ok()?;
    Some(format!(
        "{}://{}",
        uri.scheme_str()?,
        uri.authority()?.as_str()
    ))
    .map(|a| a.to_ascii_lowercase())
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
        KeySet::parse(jwks.to_string().as_bytes(), Instant::now()).unwrap()
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
    fn a_key_of_an_unknown_type_or_curve_leaves_the_others_usable() {
        let keys = set(json!({"keys": [
            {"kty": "AKP", "alg": "ML-DSA-44", "pub": "AAAA", "kid": "future"},
            {"kty": "OKP", "crv": "X25519", "x": X, "kid": "agreement", "use": "enc"},
            {"kty": "EC", "crv": "secp256k1", "x": X, "y": Y, "kid": "k1"},
            {"kty": "EC", "crv": "P-256", "x": X, "y": Y, "kid": "ok"},
        ]}));
        assert_eq!(keys.keys.len(), 1);
        assert!(keys.find(Some("ok"), Algorithm::ES256).is_some());
        assert!(KeySet::parse(b"{\"keys\": 7}", Instant::now()).is_err());
    }

    #[test]
    fn the_authority_tells_the_issuers_host_from_others() {
        assert_eq!(
            authority("https://Login.Example.com/realms/acme").as_deref(),
            Some("https://login.example.com")
        );
        assert_ne!(
            authority("https://login.example.com:8443/keys"),
            authority("https://login.example.com/keys")
        );
        assert_eq!(authority("not a url"), None);
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
