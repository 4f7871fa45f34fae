//! OpenTelemetry traces from the real binary: `cerberus serve` exports its spans over OTLP/HTTP (JSON)
//! to a collector run by the test, continues the client's W3C trace, carries it on to the upstream,
//! and puts nothing secret or personal in a span.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test fails loudly on any unexpected error"
)]

mod processes;
mod support;

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use processes::{Running, free_port, post_mcp, terminate, wait_exit, wait_for};
use serde_json::{Value, json};

const KEY: &str = "cbk_telemetry_test_key_0123456789abcdef";
const EMAIL: &str = "jane.doe@example.com";
/// The client's trace: W3C `traceparent` of version 00, sampled.
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";

/// What a server saw: each request's body and headers.
type Seen = Arc<Mutex<Vec<(HeaderMap, Value)>>>;

async fn serve_on(app: axum::Router) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    port
}

/// An OTLP/HTTP collector that keeps every JSON export it receives.
async fn collector() -> (u16, Seen) {
    let seen = Seen::default();
    let app = axum::Router::new()
        .route(
            "/v1/traces",
            axum::routing::post(
                |State(seen): State<Seen>, headers: HeaderMap, body: String| async move {
                    let body: Value = serde_json::from_str(&body).expect("an OTLP/JSON export");
                    seen.lock().unwrap().push((headers, body));
                    Json(json!({}))
                },
            ),
        )
        .with_state(Arc::clone(&seen));
    (serve_on(app).await, seen)
}

/// A minimal Streamable HTTP MCP server answering in JSON, that keeps the headers of each request.
async fn upstream() -> (u16, Seen) {
    let seen = Seen::default();
    let app = axum::Router::new()
        .route(
            "/mcp",
            axum::routing::post(|State(seen): State<Seen>, headers: HeaderMap, Json(message): Json<Value>| async move {
                seen.lock().unwrap().push((headers, message.clone()));
                let Some(id) = message.get("id").cloned() else {
                    return StatusCode::ACCEPTED.into_response();
                };
                let result = match message["method"].as_str() {
                    Some("initialize") => json!({"protocolVersion": "2025-11-25", "capabilities": {"tools": {}},
                        "serverInfo": {"name": "recorder", "version": "1"}}),
                    _ => json!({"content": [{"type": "text", "text": format!("write to {EMAIL}")}]}),
                };
                let mut response: Response = Json(json!({"jsonrpc": "2.0", "id": id, "result": result})).into_response();
                response.headers_mut().insert("mcp-session-id", "upstream-session".parse().unwrap());
                response
            }),
        )
        .with_state(Arc::clone(&seen));
    (serve_on(app).await, seen)
}

/// Every span of every export, flattened: name, ids and attributes as text.
fn spans(exports: &[(HeaderMap, Value)]) -> Vec<Span> {
    let mut spans = Vec::new();
    for (_, export) in exports {
        for resource in export["resourceSpans"].as_array().unwrap() {
            let service = attributes(&resource["resource"]["attributes"]);
            for scope in resource["scopeSpans"].as_array().unwrap() {
                for span in scope["spans"].as_array().unwrap() {
                    spans.push(Span {
                        name: span["name"].as_str().unwrap().to_owned(),
                        trace_id: span["traceId"].as_str().unwrap().to_lowercase(),
                        span_id: span["spanId"].as_str().unwrap().to_lowercase(),
                        parent_span_id: span["parentSpanId"]
                            .as_str()
                            .unwrap_or_default()
                            .to_lowercase(),
                        attributes: attributes(&span["attributes"]),
                        service: service.get("service.name").cloned().unwrap_or_default(),
                    });
                }
            }
        }
    }
    spans
}

#[derive(Debug)]
struct Span {
    name: String,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
    attributes: HashMap<String, String>,
    service: String,
}

fn attributes(list: &Value) -> HashMap<String, String> {
    list.as_array()
        .map(|list| {
            list.iter()
                .map(|kv| {
                    let value = kv["value"]
                        .as_object()
                        .and_then(|v| v.values().next())
                        .unwrap();
                    let text = value
                        .as_str()
                        .map_or_else(|| value.to_string(), str::to_owned);
                    (kv["key"].as_str().unwrap().to_owned(), text)
                })
                .collect()
        })
        .unwrap_or_default()
}

async fn traced_post(port: u16, session: Option<&str>, body: &Value) -> (Option<String>, String) {
    let mut request = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/mcp"))
        .bearer_auth(KEY)
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json")
        .header("mcp-protocol-version", "2025-11-25")
        .header("traceparent", format!("00-{TRACE_ID}-{CLIENT_SPAN}-01"))
        .body(body.to_string());
    if let Some(session) = session {
        request = request.header("mcp-session-id", session);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 200);
    let session = response
        .headers()
        .get("mcp-session-id")
        .map(|v| v.to_str().unwrap().to_owned());
    (session, response.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn spans_continue_the_client_trace_reach_the_upstream_and_hold_no_secret() {
    let (collector_port, exports) = collector().await;
    let (upstream_port, upstream_seen) = upstream().await;
    let directory = tempfile::tempdir().unwrap();
    let port = free_port();
    let hash = cerberus_axum::auth::KeyHash::of(KEY).to_hex();
    let config = directory.path().join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\n\n\
             [telemetry]\notlp_endpoint = \"http://127.0.0.1:{collector_port}\"\notlp_protocol = \"http/json\"\nservice_name = \"gateway-under-test\"\n\n\
             [[organisations]]\nname = \"acme\"\npolicy = {{ guardrails = [\n\
               {{ type = \"rbac\", allow = [\"*\"], deny = [\"delete_*\"] }},\n\
               {{ type = \"pii_email\", action = \"redact\", direction = \"both\" }},\n] }}\n\n\
             [[workspaces]]\nname = \"tools\"\norganisation = \"acme\"\nupstream = {{ url = \"http://127.0.0.1:{upstream_port}/mcp\" }}\n\n\
             [[agents]]\nname = \"bot\"\nworkspace = \"tools\"\nkey_sha256 = \"{hash}\"\n"
        ),
    )
    .unwrap();
    let mut gateway = Running(
        Command::new(support::workspace_binary("cerberus-axum", "cerberus"))
            .args(["serve", "--config"])
            .arg(&config)
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for(port, &mut gateway.0);

    let (session, _) = traced_post(
        port,
        None,
        &json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-11-25",
            "capabilities": {}, "clientInfo": {"name": "test", "version": "1"}}}),
    )
    .await;
    let session = session.expect("a session");
    let (_, denied) = traced_post(
        port,
        Some(&session),
        &json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "delete_user", "arguments": {}}}),
    )
    .await;
    assert!(denied.contains("-32050"), "{denied}");
    let (_, redacted) = traced_post(
        port,
        Some(&session),
        &json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "find_user", "arguments": {"who": EMAIL}}}),
    )
    .await;
    assert!(
        redacted.contains("[REDACTED:EMAIL]") && !redacted.contains(EMAIL),
        "{redacted}"
    );
    // Without the client's traceparent a request starts a trace of its own.
    let (status, _, _) = post_mcp(
        port,
        KEY,
        "2025-11-25",
        Some(&session),
        &json!({"jsonrpc": "2.0", "id": 4, "method": "ping"}),
    )
    .await;
    assert_eq!(status, 200);

    // A graceful stop sends the spans still buffered.
    terminate(&gateway.0);
    // The collector answers the last export on this runtime while the test waits.
    tokio::task::block_in_place(|| wait_exit(&mut gateway.0));

    let exports = exports.lock().unwrap().clone();
    assert!(!exports.is_empty(), "the collector received nothing");
    for (headers, _) in &exports {
        assert_eq!(headers["content-type"], "application/json");
    }
    let spans = spans(&exports);
    assert!(
        spans.iter().all(|s| s.service == "gateway-under-test"),
        "{spans:#?}"
    );

    // One server span per HTTP request, the first three children of the client's span.
    let requests: Vec<&Span> = spans.iter().filter(|s| s.name == "POST mcp").collect();
    assert_eq!(requests.len(), 4, "{spans:#?}");
    let (continued, own): (Vec<&Span>, Vec<&Span>) =
        requests.iter().partition(|s| s.trace_id == TRACE_ID);
    assert_eq!(continued.len(), 3, "{spans:#?}");
    assert!(continued.iter().all(|s| s.parent_span_id == CLIENT_SPAN));
    assert_eq!(own.len(), 1);
    assert!(own[0].parent_span_id.is_empty(), "{own:#?}");
    for request in &requests {
        assert_eq!(request.attributes["http.request.method"], "POST");
        assert_eq!(request.attributes["http.response.status_code"], "200");
        assert_eq!(
            request.attributes["cerberus.organisation"].len(),
            36,
            "a UUID"
        );
        assert_eq!(request.attributes["cerberus.agent"].len(), 36, "a UUID");
    }

    // The pipeline's spans are children of their request's, with what was decided and by whom.
    let guardrails: Vec<&Span> = spans
        .iter()
        .filter(|s| s.name.starts_with("guardrails "))
        .collect();
    for span in &guardrails {
        assert!(
            requests
                .iter()
                .any(|r| r.span_id == span.parent_span_id && r.trace_id == span.trace_id),
            "{span:#?} has no request span as its parent"
        );
    }
    let find = |direction: &str, method: &str, decision: &str| {
        guardrails.iter().find(|s| {
            s.attributes["cerberus.direction"] == direction
                && s.attributes.get("mcp.method.name").map(String::as_str) == Some(method)
                && s.attributes["cerberus.decision"] == decision
        })
    };
    let blocked = find("request", "tools/call", "block").expect("the denied call's span");
    assert_eq!(blocked.attributes["cerberus.guardrail"], "rbac");
    assert_eq!(blocked.attributes["cerberus.target"], "delete_user");
    assert!(
        find("request", "tools/call", "modify").is_some(),
        "the redacted request's span"
    );
    assert!(
        find("response", "tools/call", "modify").is_some(),
        "the redacted answer's span"
    );
    assert!(find("request", "initialize", "allow").is_some());

    // The upstream got the trace, as a child of the gateway's request span; never the key.
    let calls = upstream_seen.lock().unwrap().clone();
    assert!(!calls.is_empty());
    for (headers, _) in &calls {
        assert!(headers.get("authorization").is_none());
        let traceparent = headers["traceparent"].to_str().unwrap();
        let parts: Vec<&str> = traceparent.split('-').collect();
        assert_eq!(parts.len(), 4, "{traceparent}");
        assert!(
            requests
                .iter()
                .any(|r| r.trace_id == parts[1] && r.span_id == parts[2]),
            "{traceparent} names no request span"
        );
    }
    assert!(
        calls
            .iter()
            .any(|(headers, _)| headers["traceparent"].to_str().unwrap().contains(TRACE_ID))
    );

    // Nothing secret or personal left the gateway in a span.
    let exported = exports
        .iter()
        .map(|(_, body)| body.to_string())
        .collect::<String>();
    for secret in [KEY, EMAIL, &session] {
        assert!(!exported.contains(secret), "a span holds {secret}");
    }
}
