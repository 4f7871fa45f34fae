//! The gateway between a real rmcp client and a real rmcp server over Streamable HTTP.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test fails loudly on any unexpected error"
)]

mod support;

use cerberus_core::DecisionKind;
use rmcp::model::CallToolRequestParams;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{ClientLifecycleMode, ClientServiceExt, ServiceExt};
use serde_json::json;
use support::{KEY, eras, start_gateway, start_upstream};

const POLICY: &str = r#"{ guardrails = [
    { type = "rbac", allow = ["echo", "whoami"] },
    { type = "pii_email", action = "redact" },
    { type = "pii_phone", action = "redact", direction = "response" },
    { type = "rate_limit_per_minute", limit = 5 }
] }"#;

async fn client(
    url: &str,
    key: &str,
    lifecycle: ClientLifecycleMode,
) -> rmcp::service::RunningService<rmcp::RoleClient, ()> {
    let transport = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(url).auth_header(key),
    );
    ().serve_with_lifecycle(transport, lifecycle)
        .await
        .expect("the client connects through the gateway")
}

fn text(result: &rmcp::model::CallToolResult) -> String {
    serde_json::to_value(&result.content).unwrap()[0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_rmcp_client_works_through_the_gateway_under_policy_in_both_eras() {
    for (era, lifecycle) in eras() {
        println!("{era}");
        governed_session(lifecycle).await;
    }
}

async fn governed_session(lifecycle: ClientLifecycleMode) {
    let upstream = start_upstream().await;
    let gateway = start_gateway(&upstream, POLICY).await;
    let client = client(&gateway.url, KEY, lifecycle).await;

    // RBAC hides the tool the agent may not call.
    let mut names: Vec<String> = client
        .list_all_tools()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name.to_string())
        .collect();
    names.sort();
    assert_eq!(names, ["echo", "whoami"]);

    // Personal data in the request is redacted before the upstream sees it.
    let args = json!({"text": "mail jane@example.com"})
        .as_object()
        .unwrap()
        .clone();
    let echoed = client
        .call_tool(CallToolRequestParams::new("echo").with_arguments(args))
        .await
        .unwrap();
    assert_eq!(text(&echoed), "mail [REDACTED:EMAIL]");

    // And in the response before the client sees it.
    let me = client
        .call_tool(CallToolRequestParams::new("whoami"))
        .await
        .unwrap();
    assert_eq!(
        text(&me),
        "Jane Doe <[REDACTED:EMAIL]>, phone [REDACTED:PHONE]"
    );

    // A denied tool is a JSON-RPC error, and the session stays usable.
    let denied = client
        .call_tool(CallToolRequestParams::new("delete_everything"))
        .await
        .unwrap_err();
    let message = denied.to_string();
    assert!(
        message.contains("-32050") || message.contains("blocked by guardrail rbac"),
        "{message}"
    );
    let again = client
        .call_tool(
            CallToolRequestParams::new("echo")
                .with_arguments(json!({"text": "still here"}).as_object().unwrap().clone()),
        )
        .await
        .unwrap();
    assert_eq!(text(&again), "still here");

    // Five calls a minute: three were counted so far (rbac refused the denied call before the limit
    // saw it), so two more pass and the next is throttled.
    for _ in 0..2 {
        client
            .call_tool(CallToolRequestParams::new("whoami"))
            .await
            .unwrap();
    }
    let throttled = client
        .call_tool(CallToolRequestParams::new("whoami"))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        throttled.contains("throttled") || throttled.contains("-32051"),
        "{throttled}"
    );

    client.cancel().await.unwrap();

    let events = gateway.audit.events();
    assert!(
        events.iter().any(|e| e.decision == DecisionKind::Block
            && e.target.as_deref() == Some("delete_everything"))
    );
    assert!(events.iter().any(|e| e.decision == DecisionKind::Throttle));
    let audit = serde_json::to_string(&events).unwrap();
    assert!(
        !audit.contains("jane.doe@example.com") && !audit.contains("555 234 5678"),
        "no raw personal data in the audit"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_key_is_refused_and_never_reaches_the_upstream() {
    let upstream = start_upstream().await;
    let gateway = start_gateway(&upstream, POLICY).await;
    let transport = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(gateway.url.as_str())
            .auth_header("cbk_wrong"),
    );
    assert!(().serve(transport).await.is_err());
    assert!(gateway.audit.events().is_empty());
}
