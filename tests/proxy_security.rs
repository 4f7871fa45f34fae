//! What the gateway must never do: pass the client's credential upstream, or let one agent use
//! another agent's session.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test fails loudly on any unexpected error"
)]

use std::sync::{Arc, Mutex};

use axum::http::HeaderMap;
use cerberus_axum::auth::KeyHash;
use cerberus_axum::config::GatewayConfig;
use cerberus_core::GuardrailRegistry;
use cerberus_core::audit::MemoryAuditSink;
use serde_json::{Value, json};

const KEY_A: &str = "cbk_agent_a_key_for_the_security_tests";
const KEY_B: &str = "cbk_agent_b_key_for_the_security_tests";

type Seen = Arc<Mutex<Vec<HeaderMap>>>;

/// An MCP upstream that answers every request with an empty result and remembers the headers it got.
async fn recording_upstream() -> (String, Seen) {
    let seen: Seen = Arc::default();
    let record = Arc::clone(&seen);
    let app = axum::Router::new().route(
        "/mcp",
        axum::routing::post(move |headers: HeaderMap, body: String| {
            let record = Arc::clone(&record);
            async move {
                record.lock().unwrap().push(headers);
                let request: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                let mut response = axum::response::Response::new(axum::body::Body::empty());
                if let Some(id) = request.get("id") {
                    *response.body_mut() = axum::body::Body::from(
                        json!({"jsonrpc": "2.0", "id": id, "result": {}}).to_string(),
                    );
                    response
                        .headers_mut()
                        .insert("content-type", "application/json".parse().unwrap());
                    response
                        .headers_mut()
                        .insert("mcp-session-id", "upstream-session-1".parse().unwrap());
                } else {
                    *response.status_mut() = axum::http::StatusCode::ACCEPTED;
                }
                response
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{address}/mcp"), seen)
}

async fn gateway(upstream: &str) -> String {
    let config = format!(
        "[[organisations]]\nname = \"acme\"\n\n\
         [[workspaces]]\nname = \"tools\"\norganisation = \"acme\"\nupstream = {{ url = \"{upstream}\", headers = {{ x-upstream-token = \"upstream-secret\" }} }}\n\n\
         [[agents]]\nname = \"a\"\nworkspace = \"tools\"\nkey_sha256 = \"{}\"\n\n\
         [[agents]]\nname = \"b\"\nworkspace = \"tools\"\nkey_sha256 = \"{}\"\n",
        KeyHash::of(KEY_A).to_hex(),
        KeyHash::of(KEY_B).to_hex()
    );
    let config = GatewayConfig::parse(
        &config,
        std::path::Path::new("."),
        &GuardrailRegistry::default(),
    )
    .unwrap();
    let (_, router) = cerberus_axum::serve::build(
        &config,
        GuardrailRegistry::default(),
        Arc::new(MemoryAuditSink::new()),
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    format!("http://{address}/mcp")
}

fn post(url: &str, key: &str, session: Option<&str>, body: Value) -> reqwest::RequestBuilder {
    let mut request = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("authorization", format!("Bearer {key}"))
        .header("mcp-protocol-version", "2025-11-25")
        .body(body.to_string());
    if let Some(session) = session {
        request = request.header("mcp-session-id", session);
    }
    request
}

fn initialize() -> Value {
    json!({"jsonrpc": "2.0", "id": 1, "method": "initialize",
           "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_clients_key_never_reaches_the_upstream() {
    let (upstream, seen) = recording_upstream().await;
    let url = gateway(&upstream).await;
    let response = post(&url, KEY_A, None, initialize()).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let session = response.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_ne!(
        session, "upstream-session-1",
        "the upstream's session id stays private"
    );
    post(
        &url,
        KEY_A,
        Some(&session),
        json!({"jsonrpc": "2.0", "id": 2, "method": "ping"}),
    )
    .send()
    .await
    .unwrap();

    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2);
    for headers in seen.iter() {
        assert!(
            headers.get("authorization").is_none(),
            "the gateway credential stays at the gateway"
        );
        assert!(!format!("{headers:?}").contains(KEY_A));
        assert_eq!(
            headers["x-upstream-token"], "upstream-secret",
            "the workspace's own upstream credential is sent"
        );
    }
    assert_eq!(
        seen[1]["mcp-session-id"], "upstream-session-1",
        "the upstream gets its own session id back"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_agents_session_is_unknown_to_another() {
    let (upstream, seen) = recording_upstream().await;
    let url = gateway(&upstream).await;
    let response = post(&url, KEY_A, None, initialize()).send().await.unwrap();
    let session = response.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let calls_before = seen.lock().unwrap().len();

    let ping = json!({"jsonrpc": "2.0", "id": 2, "method": "ping"});
    let stolen = post(&url, KEY_B, Some(&session), ping.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(
        stolen.status(),
        404,
        "another agent's session is as unknown as one that never existed"
    );
    let deleted = reqwest::Client::new()
        .delete(&url)
        .header("authorization", format!("Bearer {KEY_B}"))
        .header("mcp-session-id", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 404);
    assert_eq!(
        seen.lock().unwrap().len(),
        calls_before,
        "nothing reached the upstream"
    );

    let own = post(&url, KEY_A, Some(&session), ping)
        .send()
        .await
        .unwrap();
    assert_eq!(own.status(), 200, "the owner's session is untouched");
}
