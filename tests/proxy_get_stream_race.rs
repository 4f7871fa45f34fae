//! A call never overtakes the GET stream its server request needs. A client opens its standalone GET
//! stream and sends `tools/call` right after (or even before); this upstream, like the conformance
//! suite's reference server, sends an elicitation on its standalone stream the moment the call
//! arrives, and drops it when that stream is not open yet. It takes a while to open one (as a server
//! across a network does), so unless the gateway has the stream open before it forwards the call, the
//! request is lost every time.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test fails loudly on any unexpected error"
)]

mod support;

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use bytes::Bytes;
use futures::StreamExt;
use serde_json::{Value, json};
use support::{HANG, KEY, listen, mcp_post, start_gateway};
use tokio::sync::mpsc;

const VERSION: &str = "2025-06-18";
/// How long the upstream takes to open a GET stream.
const OPENING: Duration = Duration::from_millis(400);
/// How far apart the client sends its GET and its call: far shorter than the upstream takes to open
/// the stream.
const APART: Duration = Duration::from_millis(100);
/// How many times in a row the race is run.
const ROUNDS: usize = 8;

/// The upstream: one session, one standalone stream at most.
#[derive(Clone, Default)]
struct Upstream {
    stream: Arc<Mutex<Option<mpsc::UnboundedSender<Value>>>>,
    sent: Arc<AtomicUsize>,
    dropped: Arc<AtomicUsize>,
    gets: Arc<AtomicUsize>,
}

async fn upstream_post(State(upstream): State<Upstream>, body: Bytes) -> Response {
    let message: Value = serde_json::from_slice(&body).unwrap();
    let Some(id) = message.get("id").cloned() else {
        return StatusCode::ACCEPTED.into_response();
    };
    let result = match message["method"].as_str() {
        Some("initialize") => json!({
            "protocolVersion": VERSION,
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "eager-elicitor", "version": "1"}
        }),
        Some("tools/call") => {
            let request = json!({
                "jsonrpc": "2.0",
                "id": format!("elicit-{id}"),
                "method": "elicitation/create",
                "params": {"message": "Which one?", "requestedSchema": {"type": "object", "properties": {}}}
            });
            let stream = upstream.stream.lock().unwrap().clone();
            match stream {
                Some(stream) if stream.send(request).is_ok() => {
                    upstream.sent.fetch_add(1, Ordering::SeqCst);
                }
                _ => {
                    upstream.dropped.fetch_add(1, Ordering::SeqCst);
                }
            }
            json!({"content": [{"type": "text", "text": "asked"}]})
        }
        // A client's answer to the elicitation.
        _ if message.get("method").is_none() => return StatusCode::ACCEPTED.into_response(),
        _ => json!({}),
    };
    let answer = json!({"jsonrpc": "2.0", "id": id, "result": result});
    (
        [
            ("content-type", "application/json"),
            ("mcp-session-id", "upstream-session"),
        ],
        answer.to_string(),
    )
        .into_response()
}

async fn upstream_get(State(upstream): State<Upstream>) -> Response {
    upstream.gets.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(OPENING).await;
    let (sender, receiver) = mpsc::unbounded_channel::<Value>();
    *upstream.stream.lock().unwrap() = Some(sender);
    let events = futures::stream::unfold(receiver, |mut receiver| async move {
        let message = receiver.recv().await?;
        Some((
            Ok::<_, Infallible>(Bytes::from(format!("data: {message}\n\n"))),
            receiver,
        ))
    });
    (
        [("content-type", "text/event-stream")],
        Body::from_stream(events),
    )
        .into_response()
}

async fn start_upstream() -> (String, Upstream) {
    let upstream = Upstream::default();
    let router = axum::Router::new()
        .route("/mcp", post(upstream_post).get(upstream_get))
        .with_state(upstream.clone());
    (format!("http://{}/mcp", listen(router).await), upstream)
}

fn session_of(headers: &HeaderMap) -> String {
    headers["mcp-session-id"].to_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_call_waits_for_the_get_stream_the_server_answers_on() {
    race(Order::GetFirst).await;
}

#[tokio::test]
async fn a_call_sent_before_the_get_still_reaches_the_client_through_it() {
    race(Order::CallFirst).await;
}

/// Which the client sends first.
#[derive(Clone, Copy, Debug)]
enum Order {
    GetFirst,
    CallFirst,
}

async fn race(order: Order) {
    let (url, upstream) = start_upstream().await;
    let gateway = start_gateway(
        &url,
        r#"{ guardrails = [{ type = "rbac", allow = ["*"] }] }"#,
    )
    .await;

    for round in 0..ROUNDS {
        let initialize = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": VERSION, "capabilities": {"elicitation": {}},
            "clientInfo": {"name": "race", "version": "1"}}});
        let answer = mcp_post(&gateway.url, KEY, VERSION, None, &initialize)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200);
        let session = session_of(answer.headers());
        let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
        let answer = mcp_post(&gateway.url, KEY, VERSION, Some(&session), &initialized)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 202);

        // The GET stream, read until the server's request arrives on it.
        let get = reqwest::Client::new()
            .get(&gateway.url)
            .bearer_auth(KEY)
            .header("accept", "text/event-stream")
            .header("mcp-protocol-version", VERSION)
            .header("mcp-session-id", &session);
        let elicited = tokio::spawn(async move {
            if let Order::CallFirst = order {
                tokio::time::sleep(APART).await;
            }
            let answer = get.send().await.unwrap();
            assert_eq!(answer.status(), 200);
            let mut body = answer.bytes_stream();
            let mut seen = Vec::new();
            while let Some(chunk) = body.next().await {
                seen.extend_from_slice(&chunk.unwrap());
                if String::from_utf8_lossy(&seen).contains("elicitation/create") {
                    return;
                }
            }
            panic!("the GET stream ended without the server's request");
        });

        if let Order::GetFirst = order {
            tokio::time::sleep(APART).await;
        }
        let call = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
            "params": {"name": "ask", "arguments": {}}});
        let answer = mcp_post(&gateway.url, KEY, VERSION, Some(&session), &call)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200);
        assert!(answer.text().await.unwrap().contains("asked"));

        assert_eq!(
            upstream.dropped.load(Ordering::SeqCst),
            0,
            "round {round} ({order:?}): the call reached the upstream before the GET stream it answers on"
        );
        tokio::time::timeout(HANG, elicited)
            .await
            .expect("the server's request reaches the client")
            .unwrap();
        assert_eq!(upstream.sent.load(Ordering::SeqCst), round + 1);
        *upstream.stream.lock().unwrap() = None;
    }
    assert!(
        gateway.gateway.opening_streams.is_empty(),
        "no GET is left marked as opening"
    );
    assert_eq!(
        upstream.gets.load(Ordering::SeqCst),
        ROUNDS,
        "one upstream GET stream a session: the one the gateway opened, taken by the client's GET"
    );
}
