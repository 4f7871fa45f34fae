//! stdio upstreams: a process per session, started, routed, stopped and failed as the gateway promises.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test fails loudly on any unexpected error"
)]

mod support;

use rmcp::model::CallToolRequestParams;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{ClientLifecycleMode, ClientServiceExt};
use serde_json::{Value, json};
use support::{HANG, KEY, example_server_binary, start_gateway_for};

const POLICY: &str = r#"{ guardrails = [
    { type = "rbac", allow = ["*"], deny = ["delete_*"] },
    { type = "pii_email", action = "redact" },
    { type = "pii_phone", action = "redact" },
    { type = "pii_ip_address", action = "redact" }
] }"#;

fn initialize() -> String {
    json!({"jsonrpc": "2.0", "id": 1, "method": "initialize",
           "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}})
    .to_string()
}

fn post(url: &str, body: String) -> reqwest::RequestBuilder {
    reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("authorization", format!("Bearer {KEY}"))
        .body(body)
}

/// The JSON-RPC messages of an SSE or JSON body. Every `data:` line of an event holds its message: a
/// stray empty one (the line's own newline, kept in the message) fails the test.
fn messages(body: &str) -> Vec<Value> {
    if let Ok(value) = serde_json::from_str::<Value>(body) {
        return vec![value];
    }
    body.lines()
        .filter_map(|line| line.strip_prefix("data:"))
        .map(|data| {
            serde_json::from_str(data.trim_start())
                .unwrap_or_else(|e| panic!("a data line that is not a message ({e}): {body:?}"))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_session_gets_its_own_process_until_delete() {
    let binary = example_server_binary();
    let gateway =
        start_gateway_for(&format!("{{ command = \"{}\" }}", binary.display()), POLICY).await;
    let connect = || async {
        let transport = StreamableHttpClientTransport::from_config(
            StreamableHttpClientTransportConfig::with_uri(gateway.url.as_str()).auth_header(KEY),
        );
        ().serve_with_lifecycle(transport, ClientLifecycleMode::Initialize)
            .await
            .unwrap()
    };
    let first = connect().await;
    let second = connect().await;
    assert_eq!(gateway.gateway.stdio.len(), 2, "one process per session");

    let args = json!({"name": "Jane"}).as_object().unwrap().clone();
    let answer = first
        .call_tool(CallToolRequestParams::new("lookup_customer").with_arguments(args))
        .await
        .unwrap();
    let text = serde_json::to_value(&answer.content).unwrap()[0]["text"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        text,
        "Jane: email [REDACTED:EMAIL], phone [REDACTED:PHONE], last login from [REDACTED:IP_ADDRESS]"
    );
    let denied = second
        .call_tool(
            CallToolRequestParams::new("delete_customer")
                .with_arguments(json!({"name": "x"}).as_object().unwrap().clone()),
        )
        .await;
    assert!(denied.is_err(), "rbac applies to stdio upstreams too");
    let names: Vec<String> = second
        .list_all_tools()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name.to_string())
        .collect();
    assert!(
        names.contains(&"lookup_customer".to_owned())
            && !names.contains(&"delete_customer".to_owned())
    );

    // DELETE ends the session and its process.
    let response = post(&gateway.url, initialize()).send().await.unwrap();
    let session = response.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_owned();
    drop(response);
    assert_eq!(gateway.gateway.stdio.len(), 3);
    // A streamed answer (the tool logs while it runs): one message per event, on one data line, with
    // no empty data line after it (the process's line kept its newline once).
    let in_session = |body: Value| {
        post(&gateway.url, body.to_string())
            .header("mcp-session-id", &session)
            .header("mcp-protocol-version", "2025-11-25")
    };
    in_session(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
        .send()
        .await
        .unwrap();
    let streamed = in_session(json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
        "params": {"name": "test_tool_with_logging", "arguments": {}}}))
    .send()
    .await
    .unwrap();
    assert_eq!(
        streamed.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    let body = streamed.text().await.unwrap();
    let received = messages(&body);
    assert!(received.len() >= 4, "three logs and the result: {body}");
    assert_eq!(received.last().unwrap()["id"], 3, "{body}");
    let deleted = reqwest::Client::new()
        .delete(&gateway.url)
        .header("authorization", format!("Bearer {KEY}"))
        .header("mcp-session-id", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), reqwest::StatusCode::OK);
    assert_eq!(gateway.gateway.stdio.len(), 2);
    let after = post(
        &gateway.url,
        r#"{"jsonrpc":"2.0","id":2,"method":"ping"}"#.into(),
    )
    .header("mcp-session-id", &session)
    .send()
    .await
    .unwrap();
    assert_eq!(after.status(), reqwest::StatusCode::NOT_FOUND);

    first.cancel().await.unwrap();
    second.cancel().await.unwrap();
    gateway.gateway.stdio.shutdown().await;
    assert!(gateway.gateway.stdio.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_that_dies_mid_request_answers_with_an_error_and_ends_the_session() {
    // Reads the initialize request, complains on stderr (with personal data, which the log must not
    // get) and exits without answering.
    let upstream = r#"{ command = "sh", args = ["-c", "head -n 1 >/dev/null; echo 'no luck for jane@example.com' >&2; exit 3"] }"#;
    let gateway = start_gateway_for(upstream, POLICY).await;
    let response = tokio::time::timeout(HANG, post(&gateway.url, initialize()).send())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::OK);
    let session = response.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let body = tokio::time::timeout(HANG, response.text())
        .await
        .unwrap()
        .unwrap();
    let answers = messages(&body);
    assert_eq!(answers.len(), 1, "{body}");
    assert_eq!(answers[0]["id"], 1);
    assert_eq!(answers[0]["error"]["code"], -32052);
    let next = post(
        &gateway.url,
        r#"{"jsonrpc":"2.0","id":2,"method":"ping"}"#.into(),
    )
    .header("mcp-session-id", &session)
    .send()
    .await
    .unwrap();
    assert_eq!(
        next.status(),
        reqwest::StatusCode::NOT_FOUND,
        "the session ended with its process"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_that_cannot_start_is_an_error_then_backs_off() {
    let gateway = start_gateway_for(r#"{ command = "/nonexistent/mcp-server" }"#, POLICY).await;
    let first = post(&gateway.url, initialize()).send().await.unwrap();
    assert_eq!(first.status(), reqwest::StatusCode::OK);
    let answers = messages(&first.text().await.unwrap());
    assert_eq!(answers[0]["error"]["code"], -32052);
    let second = post(&gateway.url, initialize()).send().await.unwrap();
    assert_eq!(second.status(), reqwest::StatusCode::SERVICE_UNAVAILABLE);
    assert!(second.headers().contains_key("retry-after"));
    assert!(gateway.gateway.stdio.is_empty());
}

/// The `id:` and message of each event of an SSE body.
fn events(body: &str) -> Vec<(String, Value)> {
    body.split("\n\n")
        .filter(|event| !event.trim().is_empty())
        .map(|event| {
            let id = event
                .lines()
                .find_map(|line| line.strip_prefix("id:"))
                .unwrap_or_else(|| panic!("an event without an id: {event:?}"))
                .trim()
                .to_owned();
            (id, messages(event).remove(0))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_stream_resumes_from_its_last_event_id() {
    use futures::StreamExt;

    let binary = example_server_binary();
    let gateway =
        start_gateway_for(&format!("{{ command = \"{}\" }}", binary.display()), POLICY).await;
    let response = post(&gateway.url, initialize()).send().await.unwrap();
    let session = response.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let initialized = events(&response.text().await.unwrap());
    assert_eq!(
        initialized[0].1["id"], 1,
        "the initialize answer has an id too"
    );
    let answer = post(
        &gateway.url,
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}).to_string(),
    )
    .header("mcp-session-id", &session)
    .send()
    .await
    .unwrap();
    assert_eq!(answer.status(), 202);

    // The call reports progress three times over 100 ms, then answers. The client reads the first
    // event and goes away.
    let call = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {
        "name": "test_tool_with_progress", "arguments": {}, "_meta": {"progressToken": "p"}}});
    let response = post(&gateway.url, call.to_string())
        .header("mcp-session-id", &session)
        .send()
        .await
        .unwrap();
    let mut body = response.bytes_stream();
    let mut first = String::new();
    while !first.contains("\n\n") {
        let chunk = tokio::time::timeout(HANG, body.next()).await.unwrap();
        first.push_str(&String::from_utf8_lossy(&chunk.unwrap().unwrap()));
    }
    drop(body);
    let first = events(&first[..first.find("\n\n").unwrap() + 2]).remove(0);
    assert_eq!(first.1["params"]["progress"].as_f64(), Some(0.0));

    // The rest of that stream, from where the client left it: the two other reports and the answer,
    // each once, in order, and then the stream ends.
    let resumed = reqwest::Client::new()
        .get(&gateway.url)
        .header("accept", "text/event-stream")
        .header("authorization", format!("Bearer {KEY}"))
        .header("mcp-session-id", &session)
        .header("last-event-id", &first.0)
        .send()
        .await
        .unwrap();
    assert_eq!(resumed.status(), 200);
    let rest = events(
        &tokio::time::timeout(HANG, resumed.text())
            .await
            .unwrap()
            .unwrap(),
    );
    let progress: Vec<f64> = rest
        .iter()
        .filter_map(|(_, m)| m["params"]["progress"].as_f64())
        .collect();
    assert_eq!(progress, [50.0, 100.0], "{rest:?}");
    let last = rest.last().unwrap();
    assert_eq!(last.1["id"], 2);
    assert_eq!(
        last.1["result"]["content"][0]["text"],
        "Tool with progress executed successfully"
    );
    let (stream, seq) = first.0.split_once('-').unwrap();
    for (n, (id, _)) in rest.iter().enumerate() {
        assert_eq!(
            id,
            &format!("{stream}-{}", seq.parse::<usize>().unwrap() + 1 + n),
            "ids follow on"
        );
    }

    // An id the session's log does not know opens the GET stream as usual.
    let fresh = reqwest::Client::new()
        .get(&gateway.url)
        .header("accept", "text/event-stream")
        .header("authorization", format!("Bearer {KEY}"))
        .header("mcp-session-id", &session)
        .header("last-event-id", "999-0")
        .send()
        .await
        .unwrap();
    assert_eq!(fresh.status(), 200);
}
