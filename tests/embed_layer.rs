//! `examples/embed_rmcp.rs` run as a process and driven by a real `rmcp` client: the tower layer in
//! front of an `rmcp` Streamable HTTP server.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test fails loudly on any unexpected error"
)]

mod processes;
mod support;

use std::io::Read;
use std::process::{Command, Stdio};

use processes::{Running, free_port, wait_for};
use rmcp::model::CallToolRequestParams;
use rmcp::service::RunningService;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{ClientLifecycleMode, ClientServiceExt, RoleClient};
use serde_json::{Value, json};

async fn connect(url: &str, credential: &str) -> RunningService<RoleClient, ()> {
    let transport = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(url).auth_header(credential),
    );
    ().serve_with_lifecycle(transport, ClientLifecycleMode::Initialize)
        .await
        .unwrap()
}

async fn call(client: &RunningService<RoleClient, ()>, tool: &str) -> Result<Value, String> {
    let params = CallToolRequestParams::new(tool.to_owned())
        .with_arguments(json!({"name": "Jane"}).as_object().unwrap().clone());
    client
        .call_tool(params)
        .await
        .map(|result| serde_json::to_value(result).unwrap())
        .map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_layer_governs_a_real_rmcp_server_for_a_real_client() {
    let port = free_port();
    let mut server = Running(
        Command::new(support::workspace_example(
            "cerberus-examples",
            "embed_rmcp",
        ))
        .arg(format!("127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap(),
    );
    wait_for(port, &mut server.0);
    // Read the audit lines as they come, so that the pipe never fills.
    let mut audit = server.0.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        audit.read_to_string(&mut text).unwrap();
        text
    });
    let url = format!("http://127.0.0.1:{port}/mcp");

    let client = connect(&url, "agent-a").await;
    let tools: Vec<String> = client
        .list_all_tools()
        .await
        .unwrap()
        .into_iter()
        .map(|tool| tool.name.to_string())
        .collect();
    assert_eq!(tools, ["lookup_customer"], "rbac hides delete_customer");

    let looked_up = call(&client, "lookup_customer").await.unwrap();
    assert_eq!(looked_up["content"][0]["text"], "Jane: [REDACTED:EMAIL]");

    let denied = call(&client, "delete_customer").await.unwrap_err();
    assert!(
        denied.contains("-32050") || denied.contains("rbac"),
        "{denied}"
    );

    // 60 calls a minute per caller: this caller has made one; 59 more pass, the next is throttled.
    for _ in 0..59 {
        call(&client, "lookup_customer").await.unwrap();
    }
    let throttled = call(&client, "lookup_customer").await.unwrap_err();
    assert!(
        throttled.contains("-32051") || throttled.contains("throttled"),
        "{throttled}"
    );
    let other = connect(&url, "agent-b").await;
    call(&other, "lookup_customer")
        .await
        .expect("another caller has its own limit");
    client.cancel().await.unwrap();
    other.cancel().await.unwrap();

    // The audit lines (standard error) hold decisions, never the email address.
    drop(server);
    let stderr = reader.join().unwrap();
    let records: Vec<Value> = stderr
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect();
    let count = |direction: &str, decision: &str| {
        records
            .iter()
            .filter(|r| {
                r["method"] == "tools/call"
                    && r["direction"] == direction
                    && r["decision"] == decision
            })
            .count()
    };
    assert_eq!(count("request", "block"), 1);
    assert_eq!(count("request", "throttle"), 1);
    assert_eq!(count("response", "modify"), 61);
    assert!(!stderr.contains("jane.doe@example.com"));
}
