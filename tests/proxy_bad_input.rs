//! Bad input at the proxy gets a clear error, the right status, and never a panic or a hung request.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test fails loudly on any unexpected error"
)]

mod support;

use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{KEY, start_gateway, start_upstream};

const POLICY: &str = r#"{ guardrails = [{ type = "rbac", allow = ["*"] }] }"#;
const ACCEPT: &str = "application/json, text/event-stream";

fn initialize() -> Value {
    json!({"jsonrpc": "2.0", "id": 1, "method": "initialize",
           "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}})
}

fn post(url: &str) -> reqwest::RequestBuilder {
    post_as(url, "application/json", ACCEPT)
}

fn post_as(url: &str, content_type: &str, accept: &str) -> reqwest::RequestBuilder {
    reqwest::Client::new()
        .post(url)
        .header("content-type", content_type)
        .header("accept", accept)
        .header("authorization", format!("Bearer {KEY}"))
}

fn anonymous(url: &str) -> reqwest::RequestBuilder {
    reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .header("accept", ACCEPT)
}

/// The status and, when the body is JSON, the JSON-RPC error code.
async fn outcome(request: reqwest::RequestBuilder) -> (StatusCode, Option<i64>, Value) {
    let response = request.send().await.unwrap();
    let status = response.status();
    let bytes = response.bytes().await.unwrap_or_default();
    let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, body["error"]["code"].as_i64(), body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_bad_requests_with_clear_errors() {
    let upstream = start_upstream().await;
    let gw = start_gateway(&upstream, POLICY).await;
    let url = gw.url.as_str();

    let cases: Vec<(&str, reqwest::RequestBuilder, StatusCode, Option<i64>)> = vec![
        (
            "malformed JSON",
            post(url).body("{\"jsonrpc\": "),
            StatusCode::BAD_REQUEST,
            Some(-32700),
        ),
        (
            "not JSON-RPC",
            post(url).body(r#"{"hello": "world"}"#),
            StatusCode::BAD_REQUEST,
            Some(-32600),
        ),
        (
            // Judged on the last copy and forwarded byte for byte, an upstream that keeps the first
            // would run the other tool.
            "a member named twice in params",
            post(url).body(
                r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"delete_customer","name":"echo"}}"#,
            ),
            StatusCode::BAD_REQUEST,
            Some(-32600),
        ),
        (
            "a request and an answer at once",
            post(url).body(r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","result":{}}"#),
            StatusCode::BAD_REQUEST,
            Some(-32600),
        ),
        (
            "wrong content type",
            post_as(url, "text/plain", ACCEPT).body(initialize().to_string()),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Some(-32600),
        ),
        (
            "no event-stream in Accept",
            post_as(url, "application/json", "application/json").body(initialize().to_string()),
            StatusCode::NOT_ACCEPTABLE,
            Some(-32600),
        ),
        (
            "oversized body",
            post(url).body(format!(
                r#"{{"jsonrpc":"2.0","id":1,"method":"x","params":{{"p":"{}"}}}}"#,
                "a".repeat(70_000)
            )),
            StatusCode::PAYLOAD_TOO_LARGE,
            Some(-32600),
        ),
        (
            "unknown session",
            post(url)
                .header("mcp-session-id", "nope")
                .body(r#"{"jsonrpc":"2.0","id":2,"method":"ping"}"#),
            StatusCode::NOT_FOUND,
            Some(-32600),
        ),
        (
            "no session",
            post(url)
                .header("mcp-protocol-version", "2025-11-25")
                .body(r#"{"jsonrpc":"2.0","id":2,"method":"ping"}"#),
            StatusCode::BAD_REQUEST,
            Some(-32600),
        ),
        (
            "foreign origin",
            post(url)
                .header("origin", "http://evil.example")
                .body(initialize().to_string()),
            StatusCode::FORBIDDEN,
            Some(-32600),
        ),
        (
            "rebound host",
            post(url)
                .header("host", "evil.example:80")
                .body(initialize().to_string()),
            StatusCode::FORBIDDEN,
            Some(-32600),
        ),
        (
            "unsupported version",
            post(url)
                .header("mcp-protocol-version", "1999-01-01")
                .body(initialize().to_string()),
            StatusCode::BAD_REQUEST,
            Some(-32600),
        ),
        (
            "batch after 2025-03-26",
            post(url)
                .header("mcp-protocol-version", "2025-06-18")
                .body(format!("[{}]", initialize())),
            StatusCode::BAD_REQUEST,
            Some(-32600),
        ),
        (
            "header and body disagree",
            post(url)
                .header("mcp-protocol-version", "2026-07-28")
                .header("mcp-method", "tools/list")
                .body(r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"echo"}}"#),
            StatusCode::BAD_REQUEST,
            Some(-32020),
        ),
        (
            "no credential",
            reqwest::Client::new()
                .post(url)
                .header("content-type", "application/json")
                .header("accept", ACCEPT)
                .body(initialize().to_string()),
            StatusCode::UNAUTHORIZED,
            Some(-32600),
        ),
        (
            "two content types",
            post(url)
                .header("content-type", "text/plain")
                .body(initialize().to_string()),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Some(-32600),
        ),
        (
            "two credentials",
            post(url)
                .header("authorization", "Bearer cbk_other")
                .body(initialize().to_string()),
            StatusCode::UNAUTHORIZED,
            Some(-32600),
        ),
        (
            "wrong key",
            anonymous(url)
                .header("authorization", "Bearer cbk_not_a_key")
                .body(initialize().to_string()),
            StatusCode::UNAUTHORIZED,
            Some(-32600),
        ),
        (
            "wrong scheme",
            anonymous(url)
                .header("authorization", format!("Basic {KEY}"))
                .body(initialize().to_string()),
            StatusCode::UNAUTHORIZED,
            Some(-32600),
        ),
        (
            "GET without session",
            reqwest::Client::new()
                .get(url)
                .header("accept", "text/event-stream")
                .header("authorization", format!("Bearer {KEY}")),
            StatusCode::BAD_REQUEST,
            Some(-32600),
        ),
        (
            "DELETE of an unknown session",
            reqwest::Client::new()
                .delete(url)
                .header("mcp-session-id", "nope")
                .header("authorization", format!("Bearer {KEY}")),
            StatusCode::NOT_FOUND,
            Some(-32600),
        ),
    ];
    for (name, request, status, code) in cases {
        let (got_status, got_code, body) = outcome(request).await;
        assert_eq!((got_status, got_code), (status, code), "{name}: {body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{name}: a message says why"
        );
    }
    // Refused for what the message is, before anything else is looked at (a session, say).
    for (body, says) in [
        (
            r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"delete_customer","name":"echo"}}"#,
            "`params.name` is named twice",
        ),
        (
            r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","result":{}}"#,
            "cannot carry `method` beside `result`",
        ),
    ] {
        let (_, _, answer) = outcome(post(url).body(body)).await;
        let message = answer["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(says), "{message}");
    }
    let (status, _, _) = outcome(
        post(url)
            .header("origin", "http://localhost:6274")
            .body(initialize().to_string()),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "a loopback origin (the MCP Inspector) is allowed"
    );
    assert!(
        gw.audit
            .events()
            .iter()
            .all(|e| e.jsonrpc_id.as_deref() != Some("2")),
        "refused requests never reached the pipeline"
    );
}

/// A body that stops arriving (a client sending 5 bytes a second, or nothing) gets 408 once the
/// body read timeout (2 s for these tests) has passed, rather than holding the request for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_stops_arriving_gets_408() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let upstream = start_upstream().await;
    let gw = start_gateway(&upstream, POLICY).await;
    let url: reqwest::Url = gw.url.parse().unwrap();
    let mut stream = tokio::net::TcpStream::connect((url.host_str().unwrap(), url.port().unwrap()))
        .await
        .unwrap();
    let head = format!(
        "POST {} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {KEY}\r\n\
         Content-Type: application/json\r\nAccept: {ACCEPT}\r\nContent-Length: 100\r\n\r\n{{\"json",
        url.path()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = vec![0; 4096];
    let read = tokio::time::timeout(std::time::Duration::from_secs(30), stream.read(&mut answer));
    let n = read.await.expect("an answer").unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("did not arrive in time"), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_unauthorised_answer_challenges_for_a_bearer_token() {
    let upstream = start_upstream().await;
    let gw = start_gateway(&upstream, POLICY).await;
    let response = reqwest::Client::new()
        .post(&gw.url)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        response.headers()["www-authenticate"],
        "Bearer realm=\"cerberus\""
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_upstream_is_a_json_rpc_error_not_a_hang() {
    // A port that was just free: nothing listens there.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let gw = start_gateway(&format!("http://{closed}/mcp"), POLICY).await;
    let (status, code, body) = outcome(post(&gw.url).body(initialize().to_string())).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(code, Some(-32052), "{body}");
    assert_eq!(body["id"], 1, "the error answers the request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_are_the_gateways_own_and_end_with_delete() {
    let upstream = start_upstream().await;
    let gw = start_gateway(&upstream, POLICY).await;
    let response = post(&gw.url)
        .body(initialize().to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let session = response.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(session.len() >= 43, "256 random bits");
    let session_record = gw.gateway.sessions.get(&session).await.unwrap().unwrap();
    assert_ne!(
        session_record.upstream_session.as_deref(),
        Some(session.as_str()),
        "the upstream id stays private"
    );
    drop(response);

    let ping = || {
        post(&gw.url)
            .header("mcp-session-id", &session)
            .header("mcp-protocol-version", "2025-11-25")
            .body(r#"{"jsonrpc":"2.0","id":9,"method":"ping"}"#)
    };
    let answer = ping().send().await.unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    let text = answer.text().await.unwrap();
    assert!(text.contains("\"id\":9"), "{text}");

    let deleted = reqwest::Client::new()
        .delete(&gw.url)
        .header("authorization", format!("Bearer {KEY}"))
        .header("mcp-session-id", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), StatusCode::OK);
    assert_eq!(ping().send().await.unwrap().status(), StatusCode::NOT_FOUND);
}
