//! The shape of a relayed event stream: the client's stream ends with the last answer of its POST, even
//! when the upstream holds its own open, a slow answer's head is not held back waiting for it, and a
//! server request the gateway refuses is answered upstream on the client's behalf.
//!
//! The upstream is scripted (a few lines of axum) so that it can misbehave on cue: keep a stream open
//! after answering, send a message after the answer, or hold an answer until the test releases it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test fails loudly on any unexpected error"
)]

mod support;

use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::IntoResponse;
use futures::StreamExt;
use serde_json::{Value, json};
use support::{HANG, KEY, mcp_post, start_gateway};
use tokio::sync::Notify;

const POLICY: &str = r#"{ guardrails = [
    { type = "rbac", allow = ["*"] },
    { type = "pii_email", action = "redact" },
    { type = "pii_ssn", action = "block" }
] }"#;

const VERSION: &str = "2025-11-25";

fn post(url: &str, session: Option<&str>, body: &Value) -> reqwest::RequestBuilder {
    mcp_post(url, KEY, VERSION, session, body)
}

/// What the scripted upstream received as answers: the session each came in, and the message.
type Answers = Arc<std::sync::Mutex<Vec<(Option<String>, Value)>>>;

fn event(id: &str, data: &Value) -> String {
    format!("id: {id}\ndata: {data}\n\n")
}

/// A priming event, as 2025-11-25 servers send first: an id and no data.
const PRIMING: &str = "id: p0\ndata:\n\n";

fn answer(id: &Value, text: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "result": {"content": [{"type": "text", "text": text}]}})
}

/// A session-era upstream whose `tools/call` answers depend on the tool:
/// - `held_open`: a priming event and the answer, then a log notification, and the stream never ends;
/// - `slow`: a priming event, then the answer once `release` is notified, then the end;
/// - `asks_with_ssn`: a sampling request with a social security number in it, then the answer.
///
/// Answers the client sends (or the gateway sends for it) are kept in `answers`, with the session they
/// came in.
async fn start_scripted_upstream(release: Arc<Notify>, answers: Answers) -> String {
    let post = move |headers: axum::http::HeaderMap, body: String| {
        let release = Arc::clone(&release);
        let answers = Arc::clone(&answers);
        async move {
            let message: Value = serde_json::from_str(&body).unwrap();
            let id = message["id"].clone();
            if message.get("method").is_none() {
                let session = headers
                    .get("mcp-session-id")
                    .map(|v| v.to_str().unwrap().to_owned());
                answers.lock().unwrap().push((session, message));
                return StatusCode::ACCEPTED.into_response();
            }
            let events = match (
                message["method"].as_str(),
                message["params"]["name"].as_str(),
            ) {
                (Some("initialize"), _) => {
                    let result = json!({"jsonrpc": "2.0", "id": id, "result": {
                        "protocolVersion": VERSION, "capabilities": {"tools": {}},
                        "serverInfo": {"name": "scripted", "version": "1"}}});
                    return (
                        [
                            ("content-type", "application/json"),
                            ("mcp-session-id", "upstream-session-1"),
                        ],
                        result.to_string(),
                    )
                        .into_response();
                }
                (Some("tools/call"), Some("held_open")) => {
                    let late = json!({"jsonrpc": "2.0", "method": "notifications/message",
                        "params": {"level": "info", "data": "after the answer"}});
                    let first = format!(
                        "{PRIMING}{}{}",
                        event("r1", &answer(&id, "held for jane@example.com")),
                        event("r2", &late)
                    );
                    futures::stream::once(async move { Ok::<_, std::io::Error>(first) })
                        .chain(futures::stream::pending())
                        .boxed()
                }
                (Some("tools/call"), Some("slow")) => {
                    let done = event("r1", &answer(&id, "slow but done"));
                    futures::stream::once(async { Ok(PRIMING.to_owned()) })
                        .chain(futures::stream::once(async move {
                            release.notified().await;
                            Ok(done)
                        }))
                        .boxed()
                }
                (Some("tools/call"), Some("asks_with_ssn")) => {
                    let ask = json!({"jsonrpc": "2.0", "id": "s1", "method": "sampling/createMessage",
                        "params": {"messages": [{"role": "user", "content": {"type": "text",
                            "text": "is 536-22-8451 a valid SSN?"}}], "maxTokens": 10}});
                    let all = format!(
                        "{PRIMING}{}{}",
                        event("r1", &ask),
                        event("r2", &answer(&id, "done without asking"))
                    );
                    futures::stream::once(async move { Ok::<_, std::io::Error>(all) }).boxed()
                }
                _ => return StatusCode::ACCEPTED.into_response(),
            };
            (
                [("content-type", "text/event-stream")],
                axum::body::Body::from_stream(events),
            )
                .into_response()
        }
    };
    let router = axum::Router::new().route("/mcp", axum::routing::post(post));
    let address = support::listen(router).await;
    format!("http://{address}/mcp")
}

async fn open_session(url: &str) -> String {
    let initialize = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": VERSION, "capabilities": {},
        "clientInfo": {"name": "shape", "version": "1"}}});
    let response = post(url, None, &initialize).send().await.unwrap();
    assert_eq!(response.status(), 200);
    response.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_owned()
}

fn call(id: u64, tool: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {
        "name": tool, "arguments": {}}})
}

/// The data of each event with data, in order.
fn messages(body: &str) -> Vec<Value> {
    body.split("\n\n")
        .filter_map(|block| {
            let data: String = block
                .lines()
                .filter_map(|line| line.strip_prefix("data:"))
                .map(str::trim_start)
                .collect();
            (!data.is_empty()).then(|| serde_json::from_str(&data).unwrap())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_ends_with_the_last_answer_even_when_the_upstream_holds_it_open() {
    let upstream = start_scripted_upstream(Arc::new(Notify::new()), Answers::default()).await;
    let gateway = start_gateway(&upstream, POLICY).await;
    let session = open_session(&gateway.url).await;

    for id in [1, 2] {
        let response = post(&gateway.url, Some(&session), &call(id, "held_open"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        // The whole body: it ends although the upstream's stream never does.
        let body = tokio::time::timeout(HANG, response.text())
            .await
            .expect("the client's stream ends with the last answer")
            .unwrap();
        assert!(
            body.starts_with(PRIMING),
            "the priming event passes first: {body}"
        );
        let messages = messages(&body);
        assert_eq!(
            messages.len(),
            1,
            "only the answer: what the upstream sends after it reaches no one: {body}"
        );
        assert_eq!(messages[0]["id"], id);
        assert_eq!(
            messages[0]["result"]["content"][0]["text"],
            "held for [REDACTED:EMAIL]"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_answers_head_is_not_held_back() {
    let release = Arc::new(Notify::new());
    let upstream = start_scripted_upstream(Arc::clone(&release), Answers::default()).await;
    let gateway = start_gateway(&upstream, POLICY).await;
    let session = open_session(&gateway.url).await;

    // The upstream holds the answer until released: the head and the priming event arrive anyway.
    let response = tokio::time::timeout(
        HANG,
        post(&gateway.url, Some(&session), &call(3, "slow")).send(),
    )
    .await
    .expect("the head arrives while the answer is still being worked on")
    .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut body = response.bytes_stream();
    let mut received = String::new();
    while !received.contains("\n\n") {
        let chunk = tokio::time::timeout(HANG, body.next())
            .await
            .expect("the priming event arrives before the answer")
            .unwrap()
            .unwrap();
        received.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    assert_eq!(received, PRIMING, "nothing but the priming event yet");

    release.notify_one();
    while let Some(chunk) = tokio::time::timeout(HANG, body.next())
        .await
        .expect("the answer follows")
    {
        received.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
    }
    let messages = messages(&received);
    assert_eq!(messages.len(), 1, "{received}");
    assert_eq!(messages[0]["result"]["content"][0]["text"], "slow but done");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_server_request_is_answered_upstream_and_never_reaches_the_client() {
    let answers = Answers::default();
    let upstream = start_scripted_upstream(Arc::new(Notify::new()), Arc::clone(&answers)).await;
    let gateway = start_gateway(&upstream, POLICY).await;
    let session = open_session(&gateway.url).await;

    let response = post(&gateway.url, Some(&session), &call(4, "asks_with_ssn"))
        .send()
        .await
        .unwrap();
    let body = tokio::time::timeout(HANG, response.text())
        .await
        .expect("the stream ends with the answer")
        .unwrap();
    let messages = messages(&body);
    assert_eq!(messages.len(), 1, "only the tool's answer: {body}");
    assert_eq!(messages[0]["id"], 4);
    assert!(!body.contains("536-22-8451"), "{body}");

    // The upstream got an error as the client's answer, in its own session, before the tool's answer
    // reached the client.
    let answers = answers.lock().unwrap();
    assert_eq!(answers.len(), 1, "{answers:?}");
    let (answer_session, answer) = &answers[0];
    assert_eq!(answer_session.as_deref(), Some("upstream-session-1"));
    assert_eq!(answer["id"], "s1");
    assert_eq!(answer["error"]["code"], -32050, "{answer}");
    assert_eq!(answer["error"]["data"]["guardrail"], "pii_ssn", "{answer}");
}
