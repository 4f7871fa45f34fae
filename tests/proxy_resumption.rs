//! Resumption through the gateway: a client whose response stream broke off reconnects with
//! `Last-Event-ID` and gets the rest of its answer, still through the response pipeline, with the
//! upstream's event ids kept so that its positions stay valid.
//!
//! The upstream here is scripted (a few lines of axum) rather than an SDK server, so that the test sees
//! exactly which headers arrive and which event ids go out: rmcp's in-memory session manager answers a
//! resumption of a request whose stream was dropped with an empty stream, which would test nothing.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test fails loudly on any unexpected error"
)]

mod support;

use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use futures::StreamExt;
use serde_json::{Value, json};
use support::{HANG, KEY, mcp_post, start_gateway};

const POLICY: &str = r#"{ guardrails = [
    { type = "rbac", allow = ["*"] },
    { type = "pii_email", action = "redact" }
] }"#;

const VERSION: &str = "2025-11-25";

fn post(url: &str, session: Option<&str>, body: &Value) -> reqwest::RequestBuilder {
    mcp_post(url, KEY, VERSION, session, body)
}

/// One server-sent event: its id and its data.
#[derive(Debug)]
struct Event {
    id: Option<String>,
    data: String,
}

/// Reads events from an SSE body until `done` says the last one read is enough.
async fn read_events(
    body: &mut (impl futures::Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin),
    buffer: &mut String,
    mut done: impl FnMut(&Event) -> bool,
) -> Vec<Event> {
    let mut events = Vec::new();
    loop {
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let mut event = Event {
                id: None,
                data: String::new(),
            };
            for line in block.lines() {
                if let Some(id) = line.strip_prefix("id:") {
                    event.id = Some(id.trim().to_owned());
                } else if let Some(data) = line.strip_prefix("data:") {
                    event.data.push_str(data.trim_start());
                }
            }
            eprintln!("event: {event:?}");
            let stop = done(&event);
            events.push(event);
            if stop {
                return events;
            }
        }
        let chunk = tokio::time::timeout(HANG, body.next())
            .await
            .expect("the stream goes on")
            .expect("the stream has not ended")
            .unwrap();
        buffer.push_str(std::str::from_utf8(&chunk).unwrap());
    }
}

/// What the scripted upstream saw on its GET: `Last-Event-ID` and `Mcp-Session-Id`.
type Seen = Arc<Mutex<Vec<(Option<String>, Option<String>)>>>;

fn sse(events: &[(&str, Value)]) -> String {
    events
        .iter()
        .map(|(id, data)| format!("id: {id}\ndata: {data}\n\n"))
        .collect()
}

/// A session-era upstream: `tools/call` streams one progress event (`e1`) and then hangs; a GET with
/// `Last-Event-ID: e1` replays the rest of that stream (`e2`, `e3`) and ends.
async fn start_scripted_upstream() -> (String, Seen) {
    let seen: Seen = Arc::default();
    let post = |body: String| async move {
        let message: Value = serde_json::from_str(&body).unwrap();
        match message["method"].as_str() {
            Some("initialize") => (
                [
                    ("content-type", "application/json"),
                    ("mcp-session-id", "upstream-session-1"),
                ],
                json!({"jsonrpc": "2.0", "id": message["id"], "result": {
                    "protocolVersion": VERSION, "capabilities": {"tools": {}},
                    "serverInfo": {"name": "scripted", "version": "1"}}})
                .to_string(),
            )
                .into_response(),
            Some("tools/call") => {
                let first = sse(&[(
                    "e1",
                    json!({"jsonrpc": "2.0", "method": "notifications/progress", "params": {
                        "progressToken": "p-7", "progress": 1, "message": "call jane@example.com"}}),
                )]);
                let hang = futures::stream::once(async move { Ok::<_, std::io::Error>(first) })
                    .chain(futures::stream::pending());
                (
                    [("content-type", "text/event-stream")],
                    axum::body::Body::from_stream(hang),
                )
                    .into_response()
            }
            _ => StatusCode::ACCEPTED.into_response(),
        }
    };
    let get = {
        let seen = Arc::clone(&seen);
        move |headers: HeaderMap| async move {
            let header = |name: &str| {
                headers
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            };
            let last = header("last-event-id");
            seen.lock()
                .unwrap()
                .push((last.clone(), header("mcp-session-id")));
            let rest = if last.as_deref() == Some("e1") {
                sse(&[
                    (
                        "e2",
                        json!({"jsonrpc": "2.0", "method": "notifications/progress", "params": {
                        "progressToken": "p-7", "progress": 2, "message": "mail bob@example.org"}}),
                    ),
                    (
                        "e3",
                        json!({"jsonrpc": "2.0", "id": 7, "result": {"content": [
                        {"type": "text", "text": "done for jane@example.com"}]}}),
                    ),
                ])
            } else {
                String::new()
            };
            ([("content-type", "text/event-stream")], rest)
        }
    };
    let router = axum::Router::new().route("/mcp", axum::routing::post(post).get(get));
    let address = support::listen(router).await;
    (format!("http://{address}/mcp"), seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_stream_resumes_with_last_event_id_through_the_pipeline() {
    let (upstream, seen) = start_scripted_upstream().await;
    let gateway = start_gateway(&upstream, POLICY).await;

    let initialize = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": VERSION, "capabilities": {},
        "clientInfo": {"name": "resumer", "version": "1"}}});
    let response = post(&gateway.url, None, &initialize).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let session = response.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_ne!(session, "upstream-session-1");

    // The call streams its first progress notification; the connection then breaks (in the session
    // era that is not a cancellation).
    let call = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {
        "name": "work", "arguments": {}, "_meta": {"progressToken": "p-7"}}});
    let response = post(&gateway.url, Some(&session), &call)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.bytes_stream();
    let mut buffer = String::new();
    let first = read_events(&mut body, &mut buffer, |e| !e.data.is_empty()).await;
    let progress = first.last().unwrap();
    assert_eq!(
        progress.id.as_deref(),
        Some("e1"),
        "event ids pass unchanged"
    );
    assert!(
        progress.data.contains("call [REDACTED:EMAIL]"),
        "{progress:?}"
    );
    drop(body);

    // The client comes back for the rest of its stream.
    let resumed = reqwest::Client::new()
        .get(&gateway.url)
        .bearer_auth(KEY)
        .header("accept", "text/event-stream")
        .header("mcp-protocol-version", VERSION)
        .header("mcp-session-id", &session)
        .header("last-event-id", "e1")
        .send()
        .await
        .unwrap();
    assert_eq!(resumed.status(), 200);
    let mut body = resumed.bytes_stream();
    let mut buffer = String::new();
    let rest = read_events(&mut body, &mut buffer, |e| e.data.contains("\"result\"")).await;
    let ids: Vec<_> = rest.iter().filter_map(|e| e.id.as_deref()).collect();
    assert_eq!(
        ids,
        ["e2", "e3"],
        "the replay keeps the upstream's positions"
    );
    assert!(rest[0].data.contains("mail [REDACTED:EMAIL]"), "{rest:?}");
    let answer: Value = serde_json::from_str(&rest[1].data).unwrap();
    assert_eq!(answer["id"], 7);
    assert_eq!(
        answer["result"]["content"][0]["text"], "done for [REDACTED:EMAIL]",
        "a replayed answer goes through the response pipeline like any other"
    );

    assert_eq!(
        seen.lock().unwrap().as_slice(),
        [(Some("e1".to_owned()), Some("upstream-session-1".to_owned()))],
        "the upstream gets the client's Last-Event-ID, within its own session"
    );
    let audited = gateway.audit.events().into_iter().any(|e| {
        e.jsonrpc_id.as_deref() == Some("7") && e.direction == cerberus_core::Direction::Response
    });
    assert!(audited, "the replayed answer is audited");
}
