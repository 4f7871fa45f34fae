//! The `webhook` guardrail against a real decision service (an HTTP server this test starts): its
//! three answers through the gateway between a real rmcp client and server, the signed and redacted
//! body the service receives, one connection reused for every call, the timeout and both failure
//! modes, and an entry that cannot work refused by the configuration file.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test fails loudly on any unexpected error"
)]

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use cerberus_axum::gateway::ServerSettings;
use cerberus_axum::webhook::{Reach, SIGNATURE_HEADER, Signer, TIMESTAMP_HEADER, Webhooks};
use cerberus_core::{DecisionKind, GuardrailRegistry, PolicyLevel};
use rmcp::ServiceExt;
use rmcp::model::CallToolRequestParams;
use rmcp::service::RunningService;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde_json::{Value, json};
use support::{KEY, TestGateway, start_gateway_with, start_upstream};

/// The secret the gateway and the service share.
const SECRET: &str = "a-webhook-secret-of-32-bytes-ok!";

/// What the decision service saw.
#[derive(Clone, Default)]
struct Service {
    /// The `input` of every call it trusted.
    inputs: Arc<Mutex<Vec<Value>>>,
    /// The address every call came from.
    peers: Arc<Mutex<Vec<SocketAddr>>>,
    /// Calls refused for their signature.
    forged: Arc<Mutex<usize>>,
}

/// Decides by the first word of the `echo` tool's text: `block`, `modify`, `slow`, `fail`, or allow.
async fn decide(
    State(service): State<Service>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    service.peers.lock().unwrap().push(peer);
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    };
    let timestamp = header(TIMESTAMP_HEADER);
    let signer = Signer::new(SECRET.as_bytes()).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let recent = timestamp
        .parse::<u64>()
        .is_ok_and(|sent| now.abs_diff(sent) <= 60);
    if !recent || !signer.verify(timestamp, &body, header(SIGNATURE_HEADER)) {
        *service.forged.lock().unwrap() += 1;
        return (StatusCode::UNAUTHORIZED, "bad signature").into_response();
    }
    let input = serde_json::from_slice::<Value>(&body).unwrap()["input"].clone();
    service.inputs.lock().unwrap().push(input.clone());
    let text = input["message"]["params"]["arguments"]["text"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    match text.split(' ').next().unwrap_or_default() {
        "block" => {
            Json(json!({"decision": "block", "reason": "the ticket is closed"})).into_response()
        }
        "modify" => {
            let mut message = input["message"].clone();
            message["params"]["arguments"]["text"] = json!("changed by the service");
            Json(
                json!({"result": {"decision": "modify", "reason": "softened", "message": message}}),
            )
            .into_response()
        }
        "slow" => {
            tokio::time::sleep(Duration::from_secs(3)).await;
            Json(json!({"decision": "allow"})).into_response()
        }
        "fail" => (StatusCode::INTERNAL_SERVER_ERROR, "no").into_response(),
        _ => Json(json!({"decision": "allow"})).into_response(),
    }
}

/// Starts the decision service; returns its URL and what it sees.
async fn start_service() -> (String, Service) {
    let service = Service::default();
    let router = axum::Router::new()
        .route("/decide", axum::routing::post(decide))
        .with_state(service.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
    (format!("http://{address}/decide"), service)
}

/// A registry with the `webhook` type, its secret `opa` being `secret`, reaching loopback.
fn registry_with(secret: &'static str) -> GuardrailRegistry {
    let mut registry = GuardrailRegistry::default();
    let webhooks = Webhooks::with_secrets(move |name| (name == "opa").then(|| secret.to_owned()));
    let server = ServerSettings {
        webhook_allow: vec!["127.0.0.0/8".parse().unwrap()],
        ..ServerSettings::default()
    };
    assert!(webhooks.limit_to(Reach::Limited(server.webhook_egress_policy())));
    webhooks.register(&mut registry).unwrap();
    registry
}

/// A gateway whose organisation policy is one webhook entry with `settings` besides its URL.
async fn gateway(url: &str, settings: &str, secret: &'static str) -> TestGateway {
    let upstream = start_upstream().await;
    let policy = format!(
        "{{ guardrails = [{{ type = \"webhook\", name = \"opa\", url = \"{url}\", secret = \"opa\"{settings} }}] }}"
    );
    start_gateway_with(&format!("{{ url = \"{upstream}\" }}"), &policy, || {
        registry_with(secret)
    })
    .await
}

async fn connect(gateway: &TestGateway) -> RunningService<rmcp::RoleClient, ()> {
    let transport = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(gateway.url.as_str()).auth_header(KEY),
    );
    ().serve(transport).await.unwrap()
}

/// Calls `echo` with `text`: the text echoed, or the error's text.
async fn echo(client: &RunningService<rmcp::RoleClient, ()>, text: &str) -> Result<String, String> {
    let call = CallToolRequestParams::new("echo")
        .with_arguments(json!({"text": text}).as_object().unwrap().clone());
    match client.call_tool(call).await {
        Ok(result) => Ok(serde_json::to_value(&result.content).unwrap()[0]["text"]
            .as_str()
            .unwrap_or_default()
            .to_owned()),
        Err(e) => Err(e.to_string()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_service_allows_blocks_and_modifies_calls_through_the_gateway() {
    let (url, service) = start_service().await;
    let gateway = gateway(&url, "", SECRET).await;
    let client = connect(&gateway).await;

    assert_eq!(echo(&client, "hello").await.unwrap(), "hello");
    let refused = echo(&client, "block this").await.unwrap_err();
    assert!(
        refused.contains("webhook:opa: the ticket is closed"),
        "{refused}"
    );
    assert_eq!(
        echo(&client, "modify this").await.unwrap(),
        "changed by the service"
    );
    assert_eq!(
        echo(&client, "mail bob@example.com").await.unwrap(),
        "mail bob@example.com",
        "the service saw a redacted copy; the call itself is unchanged"
    );
    client.cancel().await.unwrap();

    // Only the tool calls went out (not initialize, not the list), each signed and redacted.
    let inputs = service.inputs.lock().unwrap().clone();
    assert_eq!(inputs.len(), 4, "{inputs:#?}");
    assert_eq!(*service.forged.lock().unwrap(), 0);
    let first = &inputs[0];
    assert_eq!(first["version"], 1);
    assert_eq!(first["direction"], "request");
    assert_eq!(first["method"], "tools/call");
    assert_eq!(first["target"], "echo");
    assert_eq!(first["redacted"], true);
    assert_eq!(first["caller"]["organisation"]["name"], "acme");
    assert_eq!(first["caller"]["agent"]["name"], "bot");
    let audited = &gateway.audit.events()[0].identity;
    assert_eq!(first["identity"]["agent"], json!(audited.agent));
    assert_eq!(
        inputs[3]["message"]["params"]["arguments"]["text"],
        "mail [REDACTED:EMAIL]"
    );
    assert!(
        !serde_json::to_string(&inputs)
            .unwrap()
            .contains("bob@example.com")
    );

    // One connection, kept for every call.
    let peers = service.peers.lock().unwrap().clone();
    assert_eq!(peers.len(), 4);
    assert!(peers.iter().all(|peer| *peer == peers[0]), "{peers:?}");

    // The trace names the webhook, its level, the service's reason and the wait.
    let events = gateway.audit.events();
    let block = events
        .iter()
        .find(|e| e.decision == DecisionKind::Block)
        .unwrap();
    let entry = block.trace.entries().last().unwrap();
    assert_eq!(entry.guardrail, "webhook:opa");
    assert_eq!(entry.level, PolicyLevel::Organisation);
    assert_eq!(entry.code.as_deref(), Some("webhook_blocked"));
    assert_eq!(
        entry.reason.as_deref(),
        Some("webhook:opa: the ticket is closed")
    );
    assert!(entry.waited_us.is_some(), "{entry:?}");
    let modify = events
        .iter()
        .find(|e| e.decision == DecisionKind::Modify)
        .unwrap();
    assert_eq!(
        modify.trace.entries().last().unwrap().reason.as_deref(),
        Some("webhook:opa: softened")
    );
    let metrics = gateway.gateway.metrics.render();
    assert!(
        metrics
            .lines()
            .any(|l| l == r#"cerberus_guardrail_wait_seconds_count{guardrail="webhook"} 4"#),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_failing_or_absent_service_blocks_calls_by_default() {
    let (url, _service) = start_service().await;
    let gateway = gateway(&url, ", timeout_ms = 300", SECRET).await;
    let client = connect(&gateway).await;
    let slow = echo(&client, "slow down").await.unwrap_err();
    assert!(
        slow.contains("webhook:opa failed: no answer within 300 ms"),
        "{slow}"
    );
    let failing = echo(&client, "fail now").await.unwrap_err();
    assert!(
        failing.contains("webhook:opa failed: the service answered 500"),
        "{failing}"
    );
    assert_eq!(echo(&client, "hello").await.unwrap(), "hello");
    client.cancel().await.unwrap();
    let codes: Vec<_> = gateway
        .audit
        .events()
        .iter()
        .filter_map(|e| e.trace.entries().last().and_then(|t| t.code.clone()))
        .collect();
    assert_eq!(codes, ["webhook_failed", "webhook_failed"]);

    // Nothing listens on the port: the call cannot be made.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let gateway = gateway_to(&format!("http://{closed}/decide")).await;
    let client = connect(&gateway).await;
    let absent = echo(&client, "hello").await.unwrap_err();
    assert!(
        absent.contains("webhook:opa failed: the call failed"),
        "{absent}"
    );
    client.cancel().await.unwrap();
}

async fn gateway_to(url: &str) -> TestGateway {
    gateway(url, "", SECRET).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_error_allow_lets_calls_through_when_the_service_fails() {
    let (url, _service) = start_service().await;
    let gateway = gateway(&url, ", timeout_ms = 300, on_error = \"allow\"", SECRET).await;
    let client = connect(&gateway).await;
    assert_eq!(echo(&client, "slow down").await.unwrap(), "slow down");
    assert_eq!(echo(&client, "fail now").await.unwrap(), "fail now");
    let refused = echo(&client, "block it").await.unwrap_err();
    assert!(refused.contains("the ticket is closed"), "{refused}");
    client.cancel().await.unwrap();
    let reasons: Vec<_> = gateway
        .audit
        .events()
        .iter()
        .filter_map(|e| e.trace.entries().last().and_then(|t| t.reason.clone()))
        .collect();
    assert_eq!(reasons.len(), 3, "{reasons:?}");
    assert!(
        reasons[0].ends_with("no answer within 300 ms; on_error allows the message"),
        "{reasons:?}"
    );
    assert!(reasons[1].contains("answered 500"), "{reasons:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_refuses_a_call_signed_with_another_secret() {
    let (url, service) = start_service().await;
    let gateway = gateway(&url, "", "not-the-secret-the-service-knows").await;
    let client = connect(&gateway).await;
    let refused = echo(&client, "hello").await.unwrap_err();
    assert!(refused.contains("answered 401"), "{refused}");
    client.cancel().await.unwrap();
    assert_eq!(*service.forged.lock().unwrap(), 1);
    assert!(service.inputs.lock().unwrap().is_empty());
}

#[test]
fn a_webhook_without_its_secret_is_refused_by_the_configuration_file() {
    let config = "[[organisations]]\nname = \"acme\"\npolicy = { guardrails = [\n\
                  { type = \"webhook\", url = \"http://127.0.0.1:8181/\", secret = \"vault\" }\n] }\n";
    let error =
        cerberus_axum::config::GatewayConfig::parse(config, Path::new("."), &registry_with(SECRET))
            .unwrap_err()
            .to_string();
    assert!(
        error.contains("guardrails[0].secret: no secret `vault` is set"),
        "{error}"
    );
}

/// `cerberus check` runs the operator's own policy file: it reaches the service on loopback without
/// `webhook_allow`, reads the secret from `CERBERUS_WEBHOOK_SECRET_OPA`, and reports the service's
/// reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cerberus_check_reports_the_services_reason() {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let (url, service) = start_service().await;
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.json");
    std::fs::write(
        &policy,
        json!({"guardrails": [{"type": "webhook", "name": "opa", "url": url, "secret": "opa"}]})
            .to_string(),
    )
    .unwrap();
    let binary = support::workspace_binary("cerberus-axum", "cerberus");
    let output = tokio::task::spawn_blocking(move || {
        let mut child = Command::new(binary)
            .arg("check")
            .arg("--policy")
            .arg(&policy)
            .env("CERBERUS_WEBHOOK_SECRET_OPA", SECRET)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let message = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                             "params": {"name": "echo", "arguments": {"text": "block it"}}});
        child
            .stdin
            .take()
            .unwrap()
            .write_all(message.to_string().as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap();
    assert!(output.status.success(), "{output:?}");
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["decision"], "block", "{report}");
    assert_eq!(report["guardrail"], "webhook:opa", "{report}");
    assert_eq!(
        report["reason"], "webhook:opa: the ticket is closed",
        "{report}"
    );
    assert_eq!(report["trace"][0]["level"], "organisation", "{report}");
    assert!(report["trace"][0]["waited_us"].is_u64(), "{report}");
    assert_eq!(service.inputs.lock().unwrap().len(), 1);
}
