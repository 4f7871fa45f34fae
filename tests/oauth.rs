//! People calling tools with OAuth access tokens of their organisation's identity provider: the
//! gateway as a resource server (discovery, token checks, refusals), each person an identity of
//! their own (policies, rate limits, audit), and no token forwarded upstream.
//!
//! The identity providers here are small axum servers publishing OpenID metadata and a JWK set, and
//! the tokens are signed with `ring`, so that every claim can be made wrong on purpose; the flow of
//! a real provider and a real SDK client is `tests/python/test_oauth.py`'s.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test fails loudly on any unexpected error"
)]

mod admin_support;
mod databases;
mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cerberus_axum::config::GatewayConfig;
use cerberus_core::GuardrailRegistry;
use cerberus_core::audit::MemoryAuditSink;
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use rmcp::model::CallToolRequestParams;
use rmcp::service::RunningService;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{ClientLifecycleMode, ClientServiceExt, RoleClient};
use serde_json::{Value, json};

use support::{KEY, listen};

/// An ES256 signing key with its key id.
struct SigningKey {
    id: String,
    pair: EcdsaKeyPair,
}

impl SigningKey {
    fn new(id: &str) -> Self {
        let random = SystemRandom::new();
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &random).unwrap();
        let pair =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &random)
                .unwrap();
        Self {
            id: id.to_owned(),
            pair,
        }
    }

    fn jwk(&self) -> Value {
        let point = self.pair.public_key().as_ref();
        json!({"kty": "EC", "crv": "P-256", "use": "sig", "kid": self.id,
               "x": URL_SAFE_NO_PAD.encode(&point[1..33]), "y": URL_SAFE_NO_PAD.encode(&point[33..])})
    }

    /// A JWT of `claims` signed with this key, its header naming `kid` and `alg`.
    fn sign_as(&self, kid: &str, alg: &str, claims: &Value) -> String {
        let header = json!({"alg": alg, "typ": "at+jwt", "kid": kid});
        let message = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = self
            .pair
            .sign(&SystemRandom::new(), message.as_bytes())
            .unwrap();
        format!("{message}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref()))
    }

    fn sign(&self, claims: &Value) -> String {
        self.sign_as(&self.id, "ES256", claims)
    }
}

/// An identity provider: OpenID metadata and a JWK set of the keys it publishes now.
struct Issuer {
    url: String,
    published: Arc<Mutex<Vec<Value>>>,
    /// How many times its key set was fetched.
    fetches: Arc<Mutex<usize>>,
    /// How long it takes to answer for its key set.
    delay: Arc<Mutex<Duration>>,
}

impl Issuer {
    async fn start(keys: &[&SigningKey]) -> Self {
        let published = Arc::new(Mutex::new(keys.iter().map(|k| k.jwk()).collect::<Vec<_>>()));
        let fetches = Arc::new(Mutex::new(0));
        let delay = Arc::new(Mutex::new(Duration::ZERO));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let metadata = json!({"issuer": url, "jwks_uri": format!("{url}/jwks"),
                              "authorization_endpoint": format!("{url}/authorize"),
                              "token_endpoint": format!("{url}/token")});
        let (keys, count, wait) = (
            Arc::clone(&published),
            Arc::clone(&fetches),
            Arc::clone(&delay),
        );
        let router = axum::Router::new()
            .route(
                "/.well-known/openid-configuration",
                axum::routing::get(move || async move { axum::Json(metadata) }),
            )
            .route(
                "/jwks",
                axum::routing::get(move || async move {
                    let wait = *wait.lock().unwrap();
                    tokio::time::sleep(wait).await;
                    *count.lock().unwrap() += 1;
                    let keys = keys.lock().unwrap().clone();
                    axum::Json(json!({"keys": keys}))
                }),
            );
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        Self {
            url,
            published,
            fetches,
            delay,
        }
    }

    fn publish(&self, keys: &[&SigningKey]) {
        *self.published.lock().unwrap() = keys.iter().map(|k| k.jwk()).collect();
    }

    fn fetches(&self) -> usize {
        *self.fetches.lock().unwrap()
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A gateway whose organisation trusts `issuer` for its workspace, in front of the test upstream
/// (which records the `Authorization` headers it is sent).
struct Gateway {
    /// The workspace's own MCP endpoint: the resource.
    resource: String,
    /// The shared proxy endpoint.
    shared: String,
    base: String,
    audit: Arc<MemoryAuditSink>,
    upstream_authorizations: Arc<Mutex<Vec<String>>>,
}

impl Gateway {
    async fn start(issuer: &str) -> Self {
        let authorizations = Arc::new(Mutex::new(Vec::new()));
        let upstream = {
            let seen = Arc::clone(&authorizations);
            let service = rmcp::transport::streamable_http_server::StreamableHttpService::new(
                || Ok(support::Upstream::default()),
                Arc::new(
                    rmcp::transport::streamable_http_server::session::local::LocalSessionManager::default(),
                ),
                rmcp::transport::streamable_http_server::StreamableHttpServerConfig::default()
                    .with_sse_keep_alive(None),
            );
            let router =
                axum::Router::new()
                    .nest_service("/mcp", service)
                    .layer(axum::middleware::from_fn(
                        move |request: axum::extract::Request, next: axum::middleware::Next| {
                            let seen = Arc::clone(&seen);
                            async move {
                                if let Some(value) = request.headers().get("authorization") {
                                    seen.lock()
                                        .unwrap()
                                        .push(value.to_str().unwrap_or_default().to_owned());
                                }
                                next.run(request).await
                            }
                        },
                    ));
            format!("http://{}/mcp", listen(router).await)
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let hash = cerberus_axum::auth::KeyHash::of(KEY).to_hex();
        let config = format!(
            r#"
[oauth]
public_url = "{base}"
key_refresh_interval_secs = 1
leeway_secs = 0

[[organisations]]
name = "acme"
policy = {{ guardrails = [{{ type = "rate_limit_per_minute", limit = 3 }}] }}

[[workspaces]]
name = "tools"
organisation = "acme"
upstream = {{ url = "{upstream}", headers = {{ authorization = "Bearer upstream-credential" }} }}

[[agents]]
name = "bot"
workspace = "tools"
key_sha256 = "{hash}"

[[identity_providers]]
name = "acme-login"
organisation = "acme"
issuer = "{issuer}"
workspaces = ["tools"]
required_scopes = ["mcp"]
allowed_groups = ["staff", "contractors"]
policy = {{ guardrails = [{{ type = "pii_email", action = "redact" }}] }}

[[identity_providers.group_policies]]
group = "contractors"
policy = {{ guardrails = [
  {{ type = "rbac", allow = ["*"], deny = ["delete_*"] }},
  {{ type = "rule", name = "no-echo-for-interns", when = "tool == 'echo' && 'interns' in agent.groups", reason = "interns do not echo" }},
] }}

[[identity_providers.people]]
subject = "dee"
policy = {{ guardrails = [{{ type = "rule", name = "no-echo-for-interns", enabled = false }}] }}
"#
        );
        let config = GatewayConfig::parse(
            &config,
            std::path::Path::new("."),
            &GuardrailRegistry::default(),
        )
        .unwrap();
        let audit = Arc::new(MemoryAuditSink::new());
        let (gateway, router) =
            cerberus_axum::serve::build(&config, GuardrailRegistry::default(), audit.clone())
                .unwrap();
        let workspace = config.workspaces[0].id;
        assert!(
            gateway
                .oauth
                .as_ref()
                .unwrap()
                .resource(workspace)
                .await
                .unwrap()
                .is_some()
        );
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        Self {
            resource: format!("{base}/mcp/{workspace}"),
            shared: format!("{base}/mcp"),
            base,
            audit,
            upstream_authorizations: authorizations,
        }
    }

    /// Claims of a good token of `issuer` for this resource, for `subject` in `groups`.
    fn claims(&self, issuer: &str, subject: &str, groups: &[&str]) -> Value {
        json!({"iss": issuer, "sub": subject, "aud": self.resource, "exp": now() + 300,
               "iat": now(), "scope": "openid mcp", "email": format!("{subject}@acme.example"),
               "groups": groups, "client_id": "test-client"})
    }
}

/// One POST of `initialize` to `url` with `authorization`: the status and the `WWW-Authenticate`
/// challenge.
async fn try_initialize(url: &str, authorization: Option<&str>) -> (u16, String) {
    let mut request = reqwest::Client::new()
        .post(url)
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json")
        .body(
            json!({"jsonrpc": "2.0", "id": 1, "method": "initialize",
                   "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                              "clientInfo": {"name": "t", "version": "1"}}})
            .to_string(),
        );
    if let Some(authorization) = authorization {
        request = request.header("authorization", authorization);
    }
    let response = request.send().await.unwrap();
    let challenge = response
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (response.status().as_u16(), challenge)
}

async fn connect(url: &str, token: &str) -> RunningService<RoleClient, ()> {
    let transport = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(url).auth_header(token),
    );
    ().serve_with_lifecycle(transport, ClientLifecycleMode::Initialize)
        .await
        .expect("the client connects through the gateway")
}

/// Calls `tool` with `text`: the text answered, or the error.
async fn call(client: &RunningService<RoleClient, ()>, tool: &str, text: &str) -> String {
    let params = CallToolRequestParams::new(tool.to_owned())
        .with_arguments(json!({"text": text}).as_object().unwrap().clone());
    match client.call_tool(params).await {
        Ok(result) => result
            .content
            .iter()
            .filter_map(|c| c.as_text().map(|t| t.text.clone()))
            .collect(),
        Err(e) => format!("error: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_finds_the_issuer_from_the_challenge_and_a_person_calls_as_themself() {
    let key = SigningKey::new("k1");
    let issuer = Issuer::start(&[&key]).await;
    let gateway = Gateway::start(&issuer.url).await;

    // Discovery: the 401 names the metadata, which names the issuer.
    let (status, challenge) = try_initialize(&gateway.resource, None).await;
    assert_eq!(status, 401);
    let metadata_url = format!(
        "{}/.well-known/oauth-protected-resource{}",
        gateway.base,
        gateway.resource.trim_start_matches(&gateway.base)
    );
    assert_eq!(
        challenge,
        format!("Bearer resource_metadata=\"{metadata_url}\", scope=\"mcp\"")
    );
    let metadata: Value = reqwest::get(&metadata_url)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(metadata["resource"], gateway.resource);
    assert_eq!(metadata["authorization_servers"], json!([issuer.url]));
    assert_eq!(metadata["scopes_supported"], json!(["mcp"]));
    assert_eq!(metadata["resource_name"], "acme/tools");
    // A client in a browser (the MCP Inspector) may read it across origins, after a preflight.
    let preflight = reqwest::Client::new()
        .request(reqwest::Method::OPTIONS, &metadata_url)
        .header("origin", "http://localhost:6274")
        .header("access-control-request-method", "GET")
        .header("access-control-request-headers", "mcp-protocol-version")
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), 204);
    assert_eq!(preflight.headers()["access-control-allow-origin"], "*");
    assert_eq!(
        preflight.headers()["access-control-allow-headers"],
        "mcp-protocol-version"
    );
    let unknown = format!(
        "{}/.well-known/oauth-protected-resource/mcp/{}",
        gateway.base,
        uuid::Uuid::new_v4()
    );
    assert_eq!(reqwest::get(&unknown).await.unwrap().status(), 404);

    // A governed call: the provider's policy redacts, and the token never reaches the upstream.
    let ann = key.sign(&gateway.claims(&issuer.url, "ann", &["staff"]));
    let client = connect(&gateway.resource, &ann).await;
    assert_eq!(
        call(&client, "echo", "mail bo@acme.example").await,
        "mail [REDACTED:EMAIL]"
    );
    client.cancel().await.unwrap();
    let seen = gateway.upstream_authorizations.lock().unwrap().clone();
    assert!(!seen.is_empty());
    assert!(
        seen.iter().all(|a| a == "Bearer upstream-credential"),
        "only the workspace's own credential goes upstream: {seen:?}"
    );

    // The audit log names the person, never their email.
    let events = gateway.audit.events();
    let call_event = events
        .iter()
        .find(|e| e.method.as_deref() == Some("tools/call"))
        .unwrap();
    assert_eq!(call_event.key_prefix.as_deref(), Some("oauth:ann"));
    let stored = serde_json::to_string(&events).unwrap();
    assert!(!stored.contains("ann@acme.example"));

    // The workspace's agent key works on its path too; an access token is no key on the shared one.
    let bot = connect(&gateway.resource, KEY).await;
    assert_eq!(call(&bot, "echo", "hi").await, "hi");
    bot.cancel().await.unwrap();
    let (status, _) = try_initialize(&gateway.shared, Some(&format!("Bearer {ann}"))).await;
    assert_eq!(status, 401);

    // Operators see how tokens fare.
    let (status, _) = try_initialize(&gateway.resource, Some("Bearer a.b.c")).await;
    assert_eq!(status, 401);
    let metrics = reqwest::get(format!("{}/metrics", gateway.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        "cerberus_oauth_tokens_total{outcome=\"accepted\"} ",
        "cerberus_oauth_tokens_total{outcome=\"invalid_token\"} 1",
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_token_is_refused_with_the_reason_in_the_challenge() {
    let key = SigningKey::new("k1");
    let stranger_key = SigningKey::new("k1");
    let issuer = Issuer::start(&[&key]).await;
    let stranger = Issuer::start(&[&stranger_key]).await;
    let gateway = Gateway::start(&issuer.url).await;
    let good = gateway.claims(&issuer.url, "ann", &["staff"]);
    let with = |change: Value| {
        let mut claims = good.clone();
        for (name, value) in change.as_object().unwrap() {
            if value.is_null() {
                claims.as_object_mut().unwrap().remove(name);
            } else {
                claims[name] = value.clone();
            }
        }
        claims
    };
    let refused = [
        (
            "expired",
            key.sign(&with(json!({"exp": now() - 60}))),
            401,
            "the access token has expired",
        ),
        (
            "not yet valid",
            key.sign(&with(json!({"nbf": now() + 600}))),
            401,
            "the access token is not valid yet",
        ),
        (
            "another audience",
            key.sign(&with(json!({"aud": "https://other.example/mcp"}))),
            401,
            "the access token is for another resource than this MCP server",
        ),
        (
            "the shared endpoint as audience",
            key.sign(&with(json!({"aud": gateway.shared}))),
            401,
            "the access token is for another resource than this MCP server",
        ),
        (
            "an untrusted issuer",
            stranger_key.sign(&with(json!({"iss": stranger.url}))),
            401,
            "the access token's issuer is not trusted for this MCP server",
        ),
        (
            "a trusted issuer's name, another's key",
            stranger_key.sign(&good),
            401,
            "the access token's signature is wrong",
        ),
        (
            "an unpublished key",
            key.sign_as("k2", "ES256", &good),
            401,
            "the access token is signed with a key its issuer does not publish",
        ),
        (
            "a symmetric algorithm",
            key.sign_as("k1", "HS256", &good),
            401,
            "the access token is signed with an algorithm its issuer is not trusted to use",
        ),
        (
            "no subject",
            key.sign(&with(json!({"sub": null}))),
            401,
            "the access token names no subject (`sub`)",
        ),
        (
            "no expiry",
            key.sign(&with(json!({"exp": null}))),
            401,
            "the access token lacks `exp`, `iss` or `aud`",
        ),
        (
            "no required scope",
            key.sign(&with(json!({"scope": "openid"}))),
            403,
            "insufficient_scope",
        ),
        (
            "no allowed group",
            key.sign(&with(json!({"groups": ["visitors"]}))),
            403,
            "",
        ),
        (
            "three parts of nothing",
            "a.b.c".to_owned(),
            401,
            "the access token is not a JWT with an issuer",
        ),
        (
            "not a JWT",
            "not-a-token".to_owned(),
            401,
            "neither an access token",
        ),
    ];
    for (case, token, status, reason) in refused {
        let (got, challenge) =
            try_initialize(&gateway.resource, Some(&format!("Bearer {token}"))).await;
        assert_eq!(got, status, "{case}: {challenge}");
        if status == 401 {
            assert!(
                challenge.contains("error=\"invalid_token\"") && challenge.contains(reason),
                "{case}: {challenge}"
            );
        }
        assert!(challenge.contains(reason), "{case}: {challenge}");
    }
    let others = format!("{}/mcp/{}", gateway.base, uuid::Uuid::new_v4());
    let token = key.sign(&good);
    assert_eq!(
        try_initialize(&others, Some(&format!("Bearer {token}")))
            .await
            .0,
        401,
        "a workspace that takes no tokens treats one as a wrong agent key"
    );
    let uppercase = gateway
        .resource
        .to_uppercase()
        .replace("HTTP://", "http://");
    assert_eq!(
        try_initialize(
            &uppercase.replace("/MCP/", "/mcp/"),
            Some(&format!("Bearer {token}"))
        )
        .await
        .0,
        404,
        "one spelling of a workspace id: the one its audience names"
    );
    let (status, challenge) =
        try_initialize(&gateway.resource, Some(&format!("Basic {token}"))).await;
    assert_eq!(status, 400, "{challenge}");
    assert!(
        challenge.contains("error=\"invalid_request\""),
        "{challenge}"
    );
    assert_eq!(
        try_initialize(
            &format!("{}/mcp/not-an-id", gateway.base),
            Some(&format!("Bearer {token}"))
        )
        .await
        .0,
        404
    );
    let (status, _) = try_initialize(&gateway.resource, Some(&format!("Bearer {token}"))).await;
    assert_eq!(status, 200, "the good token itself passes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_and_group_policies_apply_per_person() {
    let key = SigningKey::new("k1");
    let issuer = Issuer::start(&[&key]).await;
    let gateway = Gateway::start(&issuer.url).await;
    let ann = connect(
        &gateway.resource,
        &key.sign(&gateway.claims(&issuer.url, "ann", &["staff"])),
    )
    .await;
    let cy = connect(
        &gateway.resource,
        &key.sign(&gateway.claims(&issuer.url, "cy", &["contractors", "interns"])),
    )
    .await;

    // A contractor's group policy denies what staff may do; a rule reads the person's groups.
    assert!(call(&cy, "delete_everything", "").await.contains("error"));
    assert_eq!(
        call(&ann, "delete_everything", "").await,
        "everything is gone"
    );
    assert!(
        call(&cy, "echo", "hi")
            .await
            .contains("interns do not echo")
    );
    // A person's own policy comes last: Dee, an intern contractor too, has the rule switched off.
    let dee = connect(
        &gateway.resource,
        &key.sign(&gateway.claims(&issuer.url, "dee", &["contractors", "interns"])),
    )
    .await;
    assert_eq!(call(&dee, "echo", "hi").await, "hi");
    assert!(call(&dee, "delete_everything", "").await.contains("error"));
    dee.cancel().await.unwrap();

    // Three calls a minute each: Ann's third call is her own, and her fourth is refused while
    // Cy's calls still count from his own.
    assert_eq!(call(&ann, "echo", "2").await, "2");
    assert_eq!(call(&ann, "echo", "3").await, "3");
    let throttled = call(&ann, "echo", "4").await;
    assert!(throttled.contains("rate limit"), "{throttled}");
    let own = call(&cy, "whoami", "").await;
    assert!(own.contains("[REDACTED:EMAIL]"), "{own}");
    ann.cancel().await.unwrap();
    cy.cancel().await.unwrap();

    let events = gateway.audit.events();
    let agent_of = |prefix: &str| {
        events
            .iter()
            .filter(|e| e.key_prefix.as_deref() == Some(prefix))
            .map(|e| e.identity.agent)
            .collect::<std::collections::BTreeSet<_>>()
    };
    let (ann_ids, cy_ids) = (agent_of("oauth:ann"), agent_of("oauth:cy"));
    assert_eq!(ann_ids.len(), 1, "one identity per person");
    assert_eq!(cy_ids.len(), 1);
    assert_ne!(ann_ids, cy_ids);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_key_is_fetched_when_a_token_names_it_and_a_flood_of_made_up_ones_is_not() {
    let old = SigningKey::new("2026-old");
    let new = SigningKey::new("2026-new");
    let issuer = Issuer::start(&[&old]).await;
    let gateway = Gateway::start(&issuer.url).await;
    let claims = gateway.claims(&issuer.url, "ann", &["staff"]);
    let status = |token: String| {
        let resource = gateway.resource.clone();
        async move {
            try_initialize(&resource, Some(&format!("Bearer {token}")))
                .await
                .0
        }
    };
    // The refresh interval of the configuration, and a little more.
    let interval = Duration::from_millis(1100);

    assert_eq!(status(old.sign(&claims)).await, 200);
    assert_eq!(issuer.fetches(), 1);
    assert_eq!(status(old.sign(&claims)).await, 200);
    assert_eq!(issuer.fetches(), 1, "known keys are not fetched again");

    // Made-up key ids, many at once: at most one fetch per interval.
    tokio::time::sleep(interval).await;
    let forger = SigningKey::new("unused");
    let flood: Vec<_> = (0..20)
        .map(|n| status(forger.sign_as(&format!("made-up-{n}"), "ES256", &claims)))
        .collect();
    for refused in futures::future::join_all(flood).await {
        assert_eq!(refused, 401);
    }
    assert_eq!(issuer.fetches(), 2, "twenty unknown key ids, one fetch");

    issuer.publish(&[&old, &new]);
    tokio::time::sleep(interval).await;
    assert_eq!(
        status(new.sign(&claims)).await,
        200,
        "an unknown key id fetches the keys again"
    );
    assert_eq!(issuer.fetches(), 3);

    issuer.publish(&[&new]);
    tokio::time::sleep(interval).await;
    let withdrawn = SigningKey::new("2026-withdrawn");
    assert_eq!(status(withdrawn.sign(&claims)).await, 401);
    assert_eq!(issuer.fetches(), 4);
    assert_eq!(
        status(old.sign(&claims)).await,
        401,
        "a key the issuer withdrew is refused once the keys are fetched again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_belongs_to_the_person_who_opened_it() {
    let key = SigningKey::new("k1");
    let issuer = Issuer::start(&[&key]).await;
    let gateway = Gateway::start(&issuer.url).await;
    let ann = key.sign(&gateway.claims(&issuer.url, "ann", &["staff"]));
    let bo = key.sign(&gateway.claims(&issuer.url, "bo", &["staff"]));
    let version = "2025-06-18";
    let opened = support::mcp_post(
        &gateway.resource,
        &ann,
        version,
        None,
        &json!({"jsonrpc": "2.0", "id": 1, "method": "initialize",
                "params": {"protocolVersion": version, "capabilities": {},
                           "clientInfo": {"name": "t", "version": "1"}}}),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(opened.status(), 200);
    let session = opened.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    let send = |token: &str| {
        support::mcp_post(
            &gateway.resource,
            token,
            version,
            Some(&session),
            &initialized,
        )
        .send()
    };
    assert_eq!(
        send(&bo).await.unwrap().status(),
        404,
        "another person's session is unknown"
    );
    assert_eq!(
        send(KEY).await.unwrap().status(),
        404,
        "so it is to an agent key"
    );
    assert_eq!(send(&ann).await.unwrap().status(), 202);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_hangs_up_does_not_cancel_the_key_fetch() {
    let key = SigningKey::new("k1");
    let issuer = Issuer::start(&[&key]).await;
    *issuer.delay.lock().unwrap() = Duration::from_millis(400);
    let gateway = Gateway::start(&issuer.url).await;
    let token = key.sign(&gateway.claims(&issuer.url, "ann", &["staff"]));
    let request = || {
        reqwest::Client::new()
            .post(&gateway.resource)
            .bearer_auth(&token)
            .header("accept", "application/json, text/event-stream")
            .header("content-type", "application/json")
            .body(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#)
    };
    // The first token makes the gateway fetch the keys; its client gives up long before they come.
    let gave_up = request().timeout(Duration::from_millis(50)).send().await;
    assert!(gave_up.is_err_and(|e| e.is_timeout()));
    // Within the refresh interval, the fetch it started has finished all the same.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(issuer.fetches(), 1);
    let (status, challenge) =
        try_initialize(&gateway.resource, Some(&format!("Bearer {token}"))).await;
    assert_eq!(status, 200, "{challenge}");
    assert_eq!(issuer.fetches(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_verified_once_is_refused_once_it_expires() {
    let key = SigningKey::new("k1");
    let issuer = Issuer::start(&[&key]).await;
    let gateway = Gateway::start(&issuer.url).await;
    let mut claims = gateway.claims(&issuer.url, "ann", &["staff"]);
    claims["exp"] = json!(now() + 2);
    let bearer = format!("Bearer {}", key.sign(&claims));
    for _ in 0..3 {
        assert_eq!(
            try_initialize(&gateway.resource, Some(&bearer)).await.0,
            200
        );
    }
    // Past `exp` (and the configuration's leeway of 0), the token remembered as verified is not.
    tokio::time::sleep(Duration::from_millis(3100)).await;
    let (status, challenge) = try_initialize(&gateway.resource, Some(&bearer)).await;
    assert_eq!(status, 401);
    assert!(
        challenge.contains("the access token has expired"),
        "{challenge}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_identity_provider_stops_start_up_with_the_setting_named() {
    let base = r#"
[[organisations]]
name = "acme"

[[organisations]]
name = "other"

[[workspaces]]
name = "tools"
organisation = "acme"
upstream = { url = "http://127.0.0.1:9/mcp" }

[[workspaces]]
name = "theirs"
organisation = "other"
upstream = { url = "http://127.0.0.1:9/mcp" }
"#;
    let provider = |extra: &str| {
        format!(
            "[[identity_providers]]\nname = \"p\"\norganisation = \"acme\"\nissuer = \"https://login.acme.example\"\nworkspaces = [\"tools\"]\n{extra}\n"
        )
    };
    let oauth = "[oauth]\npublic_url = \"https://mcp.acme.example\"\n";
    let cases = [
        (
            format!("{oauth}{}", provider("")).replace(
                "organisation = \"acme\"\nissuer",
                "organisation = \"nobody\"\nissuer",
            ),
            "identity_providers[0].organisation",
        ),
        (
            format!(
                "{oauth}{}",
                provider("").replace("[\"tools\"]", "[\"theirs\"]")
            ),
            "identity_providers[0].workspaces",
        ),
        (
            format!("{oauth}{}", provider("").replace("[\"tools\"]", "[]")),
            "identity_providers[0].workspaces",
        ),
        (provider(""), "oauth.public_url"),
        (
            format!(
                "[oauth]\npublic_url = \"http://mcp.acme.example\"\n{}",
                provider("")
            ),
            "oauth.public_url",
        ),
        (
            format!(
                "[oauth]\npublic_url = \"https://mcp.acme.example/gateway\"\n{}",
                provider("")
            ),
            "oauth.public_url",
        ),
        (
            format!(
                "[oauth]\npublic_url = \"https://mcp.acme.example\"\nkey_refresh_interval_secs = 0\n{}",
                provider("")
            ),
            "oauth.key_refresh_interval_secs",
        ),
        (
            format!(
                "{oauth}{}",
                provider("").replace("https://login.acme.example", "http://login.acme.example")
            ),
            "identity_providers[0].issuer",
        ),
        (
            format!("{oauth}{}", provider("algorithms = [\"HS256\"]")),
            "identity_providers[0].algorithms",
        ),
        (
            format!(
                "{oauth}{}{}",
                provider(""),
                provider("").replace("name = \"p\"", "name = \"q\"")
            ),
            "identity_providers[1].issuer",
        ),
        (
            format!(
                "{oauth}{}",
                provider(
                    "[[identity_providers.people]]\nsubject = \"\"\npolicy = { guardrails = [] }"
                )
            ),
            "identity_providers[0].people[0].subject",
        ),
        (
            format!(
                "{oauth}{}",
                provider("policy = { guardrails = [{ type = \"no_such_type\" }] }")
            ),
            "identity_providers[0].policy",
        ),
    ];
    for (text, field) in cases {
        let text = format!("{base}{text}");
        let error = match GatewayConfig::parse(
            &text,
            std::path::Path::new("."),
            &GuardrailRegistry::default(),
        ) {
            Err(error) => error,
            Ok(config) => match cerberus_axum::serve::build(
                &config,
                GuardrailRegistry::default(),
                Arc::new(MemoryAuditSink::new()),
            ) {
                Err(error) => {
                    assert!(
                        error.to_string().starts_with(field)
                            || format!("{error:?}").contains(field),
                        "{field}: {error:?}"
                    );
                    continue;
                }
                Ok(_) => panic!("{field}: accepted\n{text}"),
            },
        };
        assert!(error.path.starts_with(field), "{field}: {error}");
    }
}

/// Claims of a good token of `issuer` for `resource`, for `subject` in `groups`.
fn claims_for(resource: &str, issuer: &str, subject: &str, groups: &[&str]) -> Value {
    json!({"iss": issuer, "sub": subject, "aud": resource, "exp": now() + 300, "iat": now(),
           "scope": "openid mcp", "email": format!("{subject}@acme.example"), "groups": groups})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_providers_set_through_the_admin_api_govern_people() {
    use admin_support::AdminGateway;
    use reqwest::StatusCode;

    for backend in databases::BACKENDS {
        println!("{backend:?}");
        let key = SigningKey::new("k1");
        let issuer = Issuer::start(&[&key]).await;
        let gateway =
            AdminGateway::start_with_oauth(backend, "admin_upstream_allow = [\"127.0.0.0/8\"]")
                .await;
        let upstream = support::start_upstream().await;
        let owner = gateway.tenant("acme", "owner@acme.example").await;
        let org = owner.organisation.clone();
        let workspace = owner.workspace("crm", &upstream).await;
        let other_workspace = owner.workspace("hr", &upstream).await;
        let resource = format!("{}/mcp/{workspace}", gateway.base);
        let metadata_url = format!(
            "{}/.well-known/oauth-protected-resource/mcp/{workspace}",
            gateway.base
        );
        let providers = format!("/api/v1/organisations/{org}/identity-providers");

        // No provider yet: the workspace takes agent keys only, and has no metadata.
        let (status, challenge) = try_initialize(&resource, None).await;
        assert_eq!(
            (status, challenge.as_str()),
            (401, "Bearer realm=\"cerberus\"")
        );
        assert_eq!(reqwest::get(&metadata_url).await.unwrap().status(), 404);

        // Bad settings are refused with the field named.
        let settings = json!({
            "name": "acme-login", "issuer": issuer.url, "workspaces": [workspace],
            "required_scopes": ["mcp"],
            "policy": {"guardrails": [{"type": "pii_email", "action": "redact"}]},
        });
        let with = |field: &str, value: Value| {
            let mut changed = settings.clone();
            changed[field] = value;
            changed
        };
        for (body, field) in [
            (with("issuer", json!("ftp://login.acme.example")), "issuer"),
            (with("algorithms", json!(["HS256"])), "algorithms"),
            (with("algorithms", json!(["XX999"])), "algorithms[0]"),
            (
                with("workspaces", json!([uuid::Uuid::new_v4()])),
                "workspaces[0]",
            ),
            (with("workspaces", json!([])), "workspaces"),
            (
                with("required_scopes", json!(["two words"])),
                "required_scopes[0]",
            ),
            (with("name", json!(" ")), "name"),
            (
                with("required_scopes", json!(["caf\u{e9}"])),
                "required_scopes[0]",
            ),
            (
                with("required_scopes", json!(["a\"b"])),
                "required_scopes[0]",
            ),
            (
                with(
                    "issuer",
                    json!(format!("https://login.acme.example/{}", "a".repeat(3000))),
                ),
                "issuer",
            ),
            (
                with(
                    "policy",
                    json!({"guardrails": [{"type": "no_such_guardrail"}]}),
                ),
                "policy.guardrails[0]",
            ),
        ] {
            let (status, answer) = owner.call("POST", &providers, Some(body)).await;
            assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
            assert!(
                answer["error"]["field"]
                    .as_str()
                    .unwrap()
                    .starts_with(field),
                "{field}: {answer}"
            );
        }
        let (status, _) = owner
            .call("POST", &providers, Some(with("workspaces", json!("all"))))
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

        // A good provider protects the workspace at once: discovery, then a governed call.
        let created = owner
            .expect(
                StatusCode::CREATED,
                "POST",
                &providers,
                Some(settings.clone()),
            )
            .await;
        let provider = created["id"].as_str().unwrap().to_owned();
        assert_eq!(created["workspaces"], json!([workspace]));
        assert_eq!(created["claims"]["subject"], "sub");
        let (status, challenge) = try_initialize(&resource, None).await;
        assert_eq!(status, 401);
        assert_eq!(
            challenge,
            format!("Bearer resource_metadata=\"{metadata_url}\", scope=\"mcp\"")
        );
        let metadata: Value = reqwest::get(&metadata_url)
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(metadata["authorization_servers"], json!([issuer.url]));
        assert_eq!(metadata["resource_name"], "acme/crm");
        let ann = connect(
            &resource,
            &key.sign(&claims_for(&resource, &issuer.url, "ann", &["staff"])),
        )
        .await;
        assert_eq!(
            call(&ann, "echo", "mail bo@acme.example").await,
            "mail [REDACTED:EMAIL]"
        );
        // The other workspace is not the provider's: its tokens open nothing there.
        let hr = format!("{}/mcp/{other_workspace}", gateway.base);
        let hr_token = key.sign(&claims_for(&hr, &issuer.url, "ann", &["staff"]));
        assert_eq!(
            try_initialize(&hr, Some(&format!("Bearer {hr_token}")))
                .await
                .0,
            401
        );

        // The same issuer twice in one organisation is a conflict.
        let (status, _) = owner
            .call(
                "POST",
                &providers,
                Some(with("name", json!("acme-login-again"))),
            )
            .await;
        assert_eq!(status, StatusCode::CONFLICT);

        // A person's policy and a group's, through the API, apply to their next calls.
        let members = format!("{providers}/{provider}");
        owner
            .expect(
                StatusCode::OK,
                "PUT",
                &format!("{members}/people/ann/policy"),
                Some(json!({"document": {"guardrails": [
                    {"type": "rbac", "allow": ["*"], "deny": ["echo"]}]}})),
            )
            .await;
        owner
            .expect(
                StatusCode::OK,
                "PUT",
                &format!("{members}/groups/contractors/policy"),
                Some(json!({"document": {"guardrails": [
                    {"type": "rbac", "allow": ["*"], "deny": ["delete_*"]}]}})),
            )
            .await;
        let (status, answer) = owner
            .call(
                "PUT",
                &format!("{members}/groups/contractors/policy"),
                Some(json!({"document": {"guardrails": [{"type": "nope"}]}})),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
        let listed = owner
            .expect(
                StatusCode::OK,
                "GET",
                &format!("{members}/member-policies"),
                None,
            )
            .await;
        assert_eq!(
            listed["members"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["member"].clone())
                .collect::<Vec<_>>(),
            [
                json!({"kind": "group", "name": "contractors"}),
                json!({"kind": "person", "name": "ann"})
            ]
        );
        assert!(call(&ann, "echo", "hi").await.contains("error"));
        ann.cancel().await.unwrap();
        let cy = connect(
            &resource,
            &key.sign(&claims_for(&resource, &issuer.url, "cy", &["contractors"])),
        )
        .await;
        assert_eq!(call(&cy, "echo", "hi").await, "hi");
        assert!(call(&cy, "delete_everything", "").await.contains("error"));
        cy.cancel().await.unwrap();
        owner
            .expect(
                StatusCode::NO_CONTENT,
                "DELETE",
                &format!("{members}/people/ann/policy"),
                None,
            )
            .await;
        let ann = connect(
            &resource,
            &key.sign(&claims_for(&resource, &issuer.url, "ann", &["staff"])),
        )
        .await;
        assert_eq!(call(&ann, "echo", "back").await, "back");
        ann.cancel().await.unwrap();

        // The audit names each person.
        let events = gateway.audit.events();
        assert!(
            events
                .iter()
                .any(|e| e.key_prefix.as_deref() == Some("oauth:cy"))
        );

        // Another tenant sees none of it.
        let other = gateway.tenant("globex", "owner@globex.example").await;
        for path in [
            format!("/api/v1/organisations/{org}/identity-providers"),
            format!(
                "/api/v1/organisations/{}/identity-providers/{provider}",
                other.organisation
            ),
            format!(
                "/api/v1/organisations/{}/identity-providers/{provider}/member-policies",
                other.organisation
            ),
        ] {
            assert_eq!(
                other.call("GET", &path, None).await.0,
                StatusCode::NOT_FOUND,
                "{path}"
            );
        }
        let (status, _) = other
            .call(
                "PUT",
                &format!(
                    "/api/v1/organisations/{}/identity-providers/{provider}/people/ann/policy",
                    other.organisation
                ),
                Some(json!({"document": {"guardrails": []}})),
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);

        // Every workspace (`"*"`), then none: deleting the provider closes the door at once.
        let all = owner
            .expect(
                StatusCode::OK,
                "PUT",
                &members,
                Some(with("workspaces", json!("*"))),
            )
            .await;
        assert_eq!(all["workspaces"], "*");
        assert_eq!(
            try_initialize(&hr, Some(&format!("Bearer {hr_token}")))
                .await
                .0,
            200
        );
        owner
            .expect(StatusCode::NO_CONTENT, "DELETE", &members, None)
            .await;
        let token = key.sign(&claims_for(&resource, &issuer.url, "ann", &["staff"]));
        let (status, challenge) = try_initialize(&resource, Some(&format!("Bearer {token}"))).await;
        assert_eq!(
            (status, challenge.as_str()),
            (401, "Bearer realm=\"cerberus\"")
        );
        assert_eq!(
            owner.call("GET", &members, None).await.0,
            StatusCode::NOT_FOUND
        );
        gateway.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_set_issuer_is_reached_only_where_the_egress_policy_permits() {
    use admin_support::AdminGateway;
    use reqwest::StatusCode;

    let key = SigningKey::new("k1");
    let issuer = Issuer::start(&[&key]).await;
    // Loopback is not among the addresses admin-set URLs may reach here.
    let gateway = AdminGateway::start_with_oauth(databases::BACKENDS[0], "").await;
    let owner = gateway.tenant("acme", "owner@acme.example").await;
    // The workspace's upstream is never reached: the token is refused before.
    let workspace = owner.workspace("crm", "https://mcp.acme.example/mcp").await;
    owner
        .expect(
            StatusCode::CREATED,
            "POST",
            &format!(
                "/api/v1/organisations/{}/identity-providers",
                owner.organisation
            ),
            Some(json!({"name": "acme-login", "issuer": issuer.url, "workspaces": "*"})),
        )
        .await;
    let resource = format!("{}/mcp/{workspace}", gateway.base);
    let token = key.sign(&claims_for(&resource, &issuer.url, "ann", &[]));
    let (status, _) = try_initialize(&resource, Some(&format!("Bearer {token}"))).await;
    assert_eq!(status, 503, "the issuer's keys cannot be fetched");
    assert_eq!(issuer.fetches(), 0, "nothing reached the loopback issuer");
    gateway.stop().await;
}

/// A gateway on SQLite taking access tokens for the identity providers of its database, an issuer
/// no provider trusts yet, and the owner of `acme` with a workspace `crm` in front of the test
/// upstream.
struct Stored {
    key: SigningKey,
    issuer: Issuer,
    gateway: admin_support::AdminGateway,
    owner: admin_support::Admin,
    workspace: String,
}

impl Stored {
    async fn start() -> Self {
        let key = SigningKey::new("k1");
        let issuer = Issuer::start(&[&key]).await;
        let gateway = admin_support::AdminGateway::start_with_oauth(
            databases::BACKENDS[0],
            "admin_upstream_allow = [\"127.0.0.0/8\"]",
        )
        .await;
        let upstream = support::start_upstream().await;
        let owner = gateway.tenant("acme", "owner@acme.example").await;
        let workspace = owner.workspace("crm", &upstream).await;
        Self {
            key,
            issuer,
            gateway,
            owner,
            workspace,
        }
    }
}

/// A provider for every workspace of `owner`'s organisation, trusting `issuer`; its id.
async fn trust(owner: &admin_support::Admin, issuer: &str) -> String {
    let created = owner
        .expect(
            reqwest::StatusCode::CREATED,
            "POST",
            &format!(
                "/api/v1/organisations/{}/identity-providers",
                owner.organisation
            ),
            Some(json!({"name": "acme-login", "issuer": issuer, "workspaces": "*"})),
        )
        .await;
    created["id"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_through_one_instance_reaches_tokens_verified_on_another() {
    use reqwest::StatusCode;

    let Stored {
        key,
        issuer,
        gateway,
        owner,
        workspace,
    } = Stored::start().await;
    let provider = trust(&owner, &issuer.url).await;
    // Another instance behind the same public address, told of nothing: it reads the store again
    // once its cache time is up.
    let other = gateway
        .second_instance_with(
            200,
            &format!(
                "[oauth]\npublic_url = \"{}\"\nleeway_secs = 0\n",
                gateway.base
            ),
        )
        .await;
    let audience = format!("{}/mcp/{workspace}", gateway.base);
    let token = key.sign(&claims_for(&audience, &issuer.url, "ann", &[]));
    let ann = connect(&format!("{other}/mcp/{workspace}"), &token).await;
    assert_eq!(call(&ann, "echo", "hi").await, "hi");

    owner
        .expect(
            StatusCode::OK,
            "PUT",
            &format!(
                "/api/v1/organisations/{}/identity-providers/{provider}/people/ann/policy",
                owner.organisation
            ),
            Some(json!({"document": {"guardrails": [
                {"type": "rbac", "allow": ["*"], "deny": ["echo"]}]}})),
        )
        .await;
    // The token was verified on the other instance before the change; its next calls after the
    // cache time are judged by the new policy (`oauth.person_cache_secs` is a minute).
    let mut answer = String::new();
    for _ in 0..100 {
        answer = call(&ann, "echo", "hi").await;
        if answer.contains("error") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(answer.contains("error"), "{answer}");
    ann.cancel().await.unwrap();
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_database_a_token_gets_503_and_a_known_agent_key_still_works() {
    let Stored {
        key,
        issuer,
        gateway,
        owner,
        workspace,
    } = Stored::start().await;
    let (_, agent_key) = owner.agent(&workspace, "bot").await;
    trust(&owner, &issuer.url).await;
    let resource = format!("{}/mcp/{workspace}", gateway.base);
    // The agent's key is looked up once on the shared endpoint, and kept for the cache time (a
    // minute here); the workspace's own path, and so its identity providers, was never asked for.
    assert_eq!(
        try_initialize(&gateway.mcp(), Some(&format!("Bearer {agent_key}")))
            .await
            .0,
        200
    );
    gateway.store.pool().close().await;
    let token = key.sign(&claims_for(&resource, &issuer.url, "ann", &[]));
    assert_eq!(
        try_initialize(&resource, Some(&format!("Bearer {token}")))
            .await
            .0,
        503,
        "a token cannot be checked"
    );
    assert_eq!(try_initialize(&resource, None).await.0, 503);
    assert_eq!(
        try_initialize(&resource, Some(&format!("Bearer {agent_key}")))
            .await
            .0,
        200,
        "the agent's key does not depend on the identity providers"
    );
    gateway.stop().await;
}
