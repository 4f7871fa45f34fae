//! The `webhook` guardrail: a decision from a service outside the gateway, for what a `rule` cannot
//! know (a ticket system, a budget, an OPA policy).
//!
//! ```json
//! {"type": "webhook", "name": "opa", "url": "http://127.0.0.1:8181/v1/data/mcp/decision",
//!  "secret": "opa", "timeout_ms": 500, "on_error": "block"}
//! ```
//!
//! | setting | default | meaning |
//! |---|---|---|
//! | `url` | required | where the gateway POSTs (`http` or `https`, no credentials in it) |
//! | `secret` | required | the name of the HMAC key, read from `CERBERUS_WEBHOOK_SECRET_<NAME>` |
//! | `name` | the URL's host | tells the entry apart in traces and in the hierarchy |
//! | `methods` | `["tools/call"]` | the messages sent, by method (`"*"` for every message) |
//! | `direction` | `request` | `request`, `response` or `both` |
//! | `timeout_ms` | 1000 | the whole exchange, connecting included (at most 30 000) |
//! | `on_error` | `block` | what a failure does: `block` (`webhook_failed`) or `allow` |
//! | `payload` | `redacted` | the message as the audit would store it, or `whole` |
//!
//! # What the service receives
//!
//! `POST url` with `content-type: application/json`, `cerberus-timestamp` (Unix seconds) and
//! `cerberus-signature: sha256=<hex>`, the HMAC-SHA256 of `<timestamp>.<body>` under the secret: the
//! service recomputes it, compares in constant time and refuses old timestamps, so a body it trusts
//! came from the gateway and is not a replay. The body is OPA's input document, so that OPA's data
//! API can answer it directly:
//!
//! ```json
//! {"input": {"version": 1, "direction": "request", "method": "tools/call", "target": "transfer",
//!            "session": "…", "identity": {"organisation": "…", "workspace": "…", "agent": "…"},
//!            "caller": {"organisation": {"name": "acme", "labels": {}}, "workspace": {…}, "agent": {…}},
//!            "redacted": true, "message": {"jsonrpc": "2.0", "id": 7, "method": "tools/call", …}}}
//! ```
//!
//! With `payload: redacted` every piece of personal data the built-in scanners know is replaced by
//! `[REDACTED:kind]` first, whatever the policy says, as in the audit log.
//!
//! # What it answers
//!
//! A 2xx answer whose JSON is a decision, at the top level or under `result` (OPA's answer):
//! `{"decision": "allow"}`, `{"decision": "block", "reason": "…"}` or
//! `{"decision": "modify", "message": {…}, "reason": "…"}`. A modified message must be a JSON-RPC
//! message with the original's id and method. Anything else (another status, a body that is not such
//! a decision, more than 1 MiB, no answer within `timeout_ms`, no connection) is a failure, and
//! `on_error` decides; the trace says which.
//!
//! # Where it may connect
//!
//! Connections are kept for the next call ([`UpstreamClient`]'s pool). A policy may come from a
//! tenant through the admin API, so `cerberus serve` lets webhooks reach public addresses only,
//! plus the networks of `[server] webhook_allow`, never those of `admin_upstream_deny`
//! ([`Webhooks::limit_to`]). The time the pipeline waits for a webhook is in the trace (`waited_us`)
//! and in `cerberus_guardrail_wait_seconds{guardrail="webhook"}`.

mod answer;
mod signature;

use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use cerberus_core::audit::PayloadRedactor;
use cerberus_core::guardrails::Directions;
use cerberus_core::{
    Guardrail, GuardrailContext, GuardrailFactory, GuardrailRegistry, GuardrailResult, PolicyError,
    PolicyLevel, RegistryError, Trace, parse_settings,
};
use http::{Request, Uri, header};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use self::answer::Answer;
pub use self::signature::{SIGNATURE_HEADER, Signer, TIMESTAMP_HEADER};
use crate::egress::EgressPolicy;
use crate::upstream_client::{SetByOperator, UpstreamClient};

/// The type name policies use.
pub const TYPE_NAME: &str = "webhook";

/// The prefix of the environment variables that hold webhook secrets: `secret: "opa"` reads
/// `CERBERUS_WEBHOOK_SECRET_OPA`.
pub const SECRET_ENV_PREFIX: &str = "CERBERUS_WEBHOOK_SECRET_";

/// The shortest secret accepted, in bytes.
pub const MIN_SECRET_BYTES: usize = 16;

/// The longest `timeout_ms` accepted.
pub const MAX_TIMEOUT_MS: u64 = 30_000;

/// The largest answer read, in bytes.
const MAX_ANSWER_BYTES: usize = 1024 * 1024;

/// How long connecting to a service may take at most, within the call's own timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The block code of a service's refusal.
pub const BLOCKED: &str = "webhook_blocked";

/// The block code of a failed call, under `on_error: block`.
pub const FAILED: &str = "webhook_failed";

/// What a failed call does: `block` (`webhook_failed`, the default) or `allow`.
pub use cerberus_core::guardrails::OnError;

/// Which form of the message the service receives.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PayloadForm {
    /// With personal data redacted, as the audit log stores it.
    #[default]
    Redacted,
    /// As it stands in the pipeline.
    Whole,
}

/// A `webhook` entry's settings, as written.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WebhookSettings {
    url: String,
    secret: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default = "default_methods")]
    methods: Vec<String>,
    #[serde(default = "default_direction")]
    direction: Directions,
    #[serde(default = "default_timeout_ms")]
    timeout_ms: u64,
    #[serde(default)]
    on_error: OnError,
    #[serde(default)]
    payload: PayloadForm,
}

fn default_methods() -> Vec<String> {
    vec!["tools/call".to_owned()]
}

fn default_direction() -> Directions {
    Directions::Request
}

fn default_timeout_ms() -> u64 {
    1000
}

/// Where webhook calls may connect.
#[derive(Clone, Debug)]
pub enum Reach {
    /// Anywhere: every policy is the operator's own (`cerberus check`, `cerberus stdio`).
    Anywhere,
    /// The addresses a policy permits.
    Limited(EgressPolicy),
}

/// Looks a secret up by its name in a policy.
type SecretLookup = dyn Fn(&str) -> Option<String> + Send + Sync;

/// The webhook guardrail type and what its guardrails share: the connections, the secrets, where
/// calls may go. Cheap to clone; register it in the registry policies are checked and built with.
///
/// ```
/// use cerberus_axum::webhook::Webhooks;
/// use cerberus_core::GuardrailRegistry;
///
/// let mut registry = GuardrailRegistry::default();
/// Webhooks::from_environment().register(&mut registry)?;
/// assert!(registry.type_names().contains(&"webhook"));
/// # Ok::<(), cerberus_core::RegistryError>(())
/// ```
#[derive(Clone)]
pub struct Webhooks {
    shared: Arc<Shared>,
}

struct Shared {
    secrets: Box<SecretLookup>,
    reach: OnceLock<Reach>,
    client: OnceLock<Result<UpstreamClient, String>>,
    redactor: PayloadRedactor,
}

impl fmt::Debug for Webhooks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Webhooks")
            .field("reach", &self.shared.reach.get())
            .finish_non_exhaustive()
    }
}

impl Webhooks {
    /// Webhooks whose secrets are environment variables: `secret: "opa"` is
    /// `CERBERUS_WEBHOOK_SECRET_OPA`.
    pub fn from_environment() -> Self {
        Self::with_secrets(|name| {
            std::env::var(format!("{SECRET_ENV_PREFIX}{}", name.to_ascii_uppercase())).ok()
        })
    }

    /// Webhooks whose secrets `lookup` finds by name (a secret store of your own, or tests).
    pub fn with_secrets(lookup: impl Fn(&str) -> Option<String> + Send + Sync + 'static) -> Self {
        Self {
            shared: Arc::new(Shared {
                secrets: Box::new(lookup),
                reach: OnceLock::new(),
                client: OnceLock::new(),
                // The whole message: the body is bounded by the gateway's own body limit already.
                redactor: PayloadRedactor::new().with_max_bytes(usize::MAX),
            }),
        }
    }

    /// Sets where calls may connect, before the first call; `false` (and no change) after it or
    /// a second time. Without it, calls reach public addresses only.
    pub fn limit_to(&self, reach: Reach) -> bool {
        self.shared.reach.set(reach).is_ok()
    }

    /// Registers the `webhook` type in `registry`.
    pub fn register(&self, registry: &mut GuardrailRegistry) -> Result<(), RegistryError> {
        registry.register(TYPE_NAME, self.clone())
    }

    /// The client calls go through, made on first use.
    fn client(&self) -> Result<&UpstreamClient, &str> {
        self.shared
            .client
            .get_or_init(|| {
                let egress = match self
                    .shared
                    .reach
                    .get_or_init(|| Reach::Limited(EgressPolicy::default()))
                {
                    Reach::Anywhere => EgressPolicy::default(),
                    Reach::Limited(policy) => policy.clone(),
                };
                UpstreamClient::new(CONNECT_TIMEOUT, None, egress)
                    .map_err(|e| format!("cannot make the webhook client: {e}"))
            })
            .as_ref()
            .map_err(String::as_str)
    }

    fn reaches_anywhere(&self) -> bool {
        matches!(self.shared.reach.get(), Some(Reach::Anywhere))
    }
}

impl GuardrailFactory for Webhooks {
    fn build(
        &self,
        settings: &Map<String, Value>,
        _env: &cerberus_core::BuildEnv,
    ) -> Result<Arc<dyn Guardrail>, PolicyError> {
        let settings: WebhookSettings = parse_settings(settings)?;
        Ok(Arc::new(WebhookGuardrail::new(settings, self.clone())?))
    }
}

/// One `webhook` entry, built.
pub struct WebhookGuardrail {
    url: Uri,
    /// `webhook:<name>`, as the trace names it.
    label: String,
    signer: Signer,
    methods: Option<Vec<String>>,
    direction: Directions,
    timeout: Duration,
    on_error: OnError,
    payload: PayloadForm,
    webhooks: Webhooks,
}

impl fmt::Debug for WebhookGuardrail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookGuardrail")
            .field("label", &self.label)
            .field("url", &self.url)
            .field("timeout", &self.timeout)
            .field("on_error", &self.on_error)
            .finish_non_exhaustive()
    }
}

impl WebhookGuardrail {
    fn new(settings: WebhookSettings, webhooks: Webhooks) -> Result<Self, PolicyError> {
        let url: Uri = settings
            .url
            .parse()
            .map_err(|e| PolicyError::new("url", format!("not a URL: {e}")))?;
        let host = match (url.scheme_str(), url.authority()) {
            (Some("http" | "https"), Some(authority)) if !authority.as_str().contains('@') => {
                authority.host().to_owned()
            }
            (Some("http" | "https"), Some(_)) => {
                return Err(PolicyError::new(
                    "url",
                    "a URL with credentials in it: use `secret` to sign calls instead",
                ));
            }
            _ => {
                return Err(PolicyError::new(
                    "url",
                    "expected an http:// or https:// URL with a host",
                ));
            }
        };
        let valid_name = |name: &str| {
            !name.is_empty()
                && name.len() <= 64
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        };
        if !valid_name(&settings.secret) || settings.secret.contains('-') {
            return Err(PolicyError::new(
                "secret",
                "expected the name of a secret: letters, digits and underscores, at most 64",
            ));
        }
        let key = (webhooks.shared.secrets)(&settings.secret).ok_or_else(|| {
            PolicyError::new(
                "secret",
                format!(
                    "no secret `{}` is set (environment variable {SECRET_ENV_PREFIX}{})",
                    settings.secret,
                    settings.secret.to_ascii_uppercase()
                ),
            )
        })?;
        if key.len() < MIN_SECRET_BYTES {
            return Err(PolicyError::new(
                "secret",
                format!(
                    "the secret `{}` is shorter than {MIN_SECRET_BYTES} bytes",
                    settings.secret
                ),
            ));
        }
        if let Some(name) = &settings.name
            && !valid_name(name)
        {
            return Err(PolicyError::new(
                "name",
                "expected letters, digits, `_` and `-`, at most 64",
            ));
        }
        if !(1..=MAX_TIMEOUT_MS).contains(&settings.timeout_ms) {
            return Err(PolicyError::new(
                "timeout_ms",
                format!("expected 1 to {MAX_TIMEOUT_MS}"),
            ));
        }
        if settings.methods.is_empty() {
            return Err(PolicyError::new(
                "methods",
                "expected at least one method, or \"*\" for every message",
            ));
        }
        let methods =
            (!settings.methods.iter().any(|m| m == "*")).then_some(settings.methods.clone());
        Ok(Self {
            label: format!("{TYPE_NAME}:{}", settings.name.as_deref().unwrap_or(&host)),
            url,
            signer: Signer::new(key.as_bytes())
                .ok_or_else(|| PolicyError::new("secret", "HMAC refused the secret"))?,
            methods,
            direction: settings.direction,
            timeout: Duration::from_millis(settings.timeout_ms),
            on_error: settings.on_error,
            payload: settings.payload,
            webhooks,
        })
    }

    /// The body sent for the message of `ctx`.
    fn body(&self, ctx: &GuardrailContext<'_>) -> Result<Vec<u8>, serde_json::Error> {
        let (message, redacted) = match self.payload {
            PayloadForm::Redacted => (
                self.webhooks
                    .shared
                    .redactor
                    .redact(ctx.direction, ctx.message),
                true,
            ),
            PayloadForm::Whole => (ctx.message.to_value(), false),
        };
        serde_json::to_vec(&json!({"input": {
            "version": 1,
            "direction": ctx.direction,
            "method": ctx.method(),
            "target": ctx.message.target(),
            "session": ctx.session,
            "identity": ctx.identity,
            "caller": ctx.profile,
            "redacted": redacted,
            "message": message,
        }}))
    }

    /// Asks the service, within the timeout.
    async fn ask(&self, ctx: &GuardrailContext<'_>) -> Result<Answer, String> {
        let body = self
            .body(ctx)
            .map_err(|e| format!("cannot write the request: {e}"))?;
        let client = self.webhooks.client()?;
        let timestamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_secs())
            .to_string();
        let signature = self.signer.sign(&timestamp, &body);
        let mut request = Request::post(self.url.clone())
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ACCEPT, "application/json")
            .header(TIMESTAMP_HEADER, timestamp)
            .header(SIGNATURE_HEADER, signature)
            .body(Bytes::from(body))
            .map_err(|e| format!("cannot make the request: {e}"))?;
        if self.webhooks.reaches_anywhere() {
            request.extensions_mut().insert(SetByOperator);
        }
        let exchange = async {
            let response = client
                .send(request)
                .await
                .map_err(|e| format!("the call failed: {}", cerberus_core::with_causes(&e)))?;
            let status = response.status();
            let body = http_body_util::BodyExt::collect(http_body_util::Limited::new(
                response.into_body(),
                MAX_ANSWER_BYTES,
            ))
            .await
            .map_err(|e| format!("the answer could not be read: {e}"))?
            .to_bytes();
            if !status.is_success() {
                return Err(format!("the service answered {status}"));
            }
            Answer::parse(&body)
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| format!("no answer within {} ms", self.timeout.as_millis()))?
    }

    /// What a failure does, by `on_error`.
    fn failed(&self, why: &str, level: PolicyLevel, trace: &mut Trace) -> GuardrailResult {
        // The URL may carry a token in its query: the label names the entry instead.
        tracing::warn!(webhook = %self.label, error = %why, "webhook failed");
        let reason = format!("{} failed: {why}", self.label);
        self.on_error
            .settle(FAILED, reason, self.label.clone(), level, trace)
    }
}

#[async_trait]
impl Guardrail for WebhookGuardrail {
    fn type_name(&self) -> &str {
        TYPE_NAME
    }

    fn applies_to(&self, ctx: &GuardrailContext<'_>) -> bool {
        self.direction.includes(ctx.direction)
            && match &self.methods {
                None => true,
                Some(methods) => ctx
                    .method()
                    .is_some_and(|method| methods.iter().any(|m| m == method)),
            }
    }

    async fn evaluate(&self, ctx: &GuardrailContext<'_>) -> GuardrailResult {
        let mut trace = Trace::new();
        self.evaluate_traced(ctx, PolicyLevel::Agent, &mut trace)
            .await
    }

    async fn evaluate_traced(
        &self,
        ctx: &GuardrailContext<'_>,
        level: PolicyLevel,
        trace: &mut Trace,
    ) -> GuardrailResult {
        let answer = match self.ask(ctx).await {
            Ok(answer) => answer,
            Err(why) => return self.failed(&why, level, trace),
        };
        let result = match answer.into_result(ctx.message, &self.label) {
            Ok(result) => result,
            Err(why) => return self.failed(&why, level, trace),
        };
        trace.record(self.label.clone(), level, &result);
        result
    }
}

#[cfg(test)]
mod tests;
