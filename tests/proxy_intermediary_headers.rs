//! The 2026-07-28 intermediary headers through the gateway: a redacted argument that a tool mirrors in
//! an `Mcp-Param-*` header reaches the upstream with the header recomputed, so the upstream's own check
//! passes and the raw value never travels on; headers that contradict the body are refused.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test fails loudly on any unexpected error"
)]

mod support;

use std::sync::Arc;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, ListToolsResult,
    PaginatedRequestParams, ProtocolVersion, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::RequestContext;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ClientLifecycleMode, ClientServiceExt, ErrorData, RoleServer, ServerHandler};
use serde_json::json;
use support::{KEY, start_gateway};

const POLICY: &str = r#"{ guardrails = [
    { type = "rbac", allow = ["*"] },
    { type = "pii_email", action = "redact" }
] }"#;

/// A server whose `notify` tool mirrors its `email` argument in `Mcp-Param-Email`, and reports both
/// the argument and the header it received.
#[derive(Clone, Default)]
struct MirroringServer;

fn notify_tool() -> Tool {
    let schema = json!({
        "type": "object",
        "properties": {
            "email": { "type": "string", "x-mcp-header": "Email" },
            "text": { "type": "string" }
        },
        "required": ["email"]
    });
    Tool::new(
        "notify",
        "Sends a note to an address",
        Arc::new(schema.as_object().unwrap().clone()),
    )
}

impl ServerHandler for MirroringServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        (name == "notify").then(notify_tool)
    }

    async fn list_tools(
        &self,
        _: Option<PaginatedRequestParams>,
        _: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(vec![notify_tool()]))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let argument = request
            .arguments
            .as_ref()
            .and_then(|a| a.get("email"))
            .and_then(|e| e.as_str())
            .unwrap_or_default()
            .to_owned();
        let header = context
            .extensions
            .get::<http::request::Parts>()
            .and_then(|parts| parts.headers.get("mcp-param-email"))
            .and_then(|v| v.to_str().ok())
            .unwrap_or("<none>")
            .to_owned();
        Ok(CallToolResult::success(vec![ContentBlock::text(format!(
            "argument={argument} header={header}"
        ))])
        .into())
    }
}

async fn start_mirroring_upstream() -> String {
    let service = StreamableHttpService::new(
        || Ok(MirroringServer),
        Arc::new(LocalSessionManager::default()),
        StreamableHttpServerConfig::default().with_sse_keep_alive(None),
    );
    let router = axum::Router::new().nest_service("/mcp", service);
    let address = support::listen(router).await;
    format!("http://{address}/mcp")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redacted_argument_is_mirrored_again_in_its_header() {
    let upstream = start_mirroring_upstream().await;
    let gateway = start_gateway(&upstream, POLICY).await;
    let transport = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(gateway.url.as_str()).auth_header(KEY),
    );
    let client = ()
        .serve_with_lifecycle(
            transport,
            ClientLifecycleMode::Discover {
                preferred_versions: vec![ProtocolVersion::V_2026_07_28],
            },
        )
        .await
        .unwrap();
    // The client learns the annotation from the tool list, then mirrors the argument on every call.
    assert_eq!(client.list_all_tools().await.unwrap().len(), 1);
    let arguments = json!({"email": "jane@example.com", "text": "hello"});
    let result = client
        .call_tool(
            CallToolRequestParams::new("notify")
                .with_arguments(arguments.as_object().unwrap().clone()),
        )
        .await
        .expect("the upstream accepts the recomputed header");
    let text = serde_json::to_value(&result.content).unwrap()[0]["text"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        text, "argument=[REDACTED:EMAIL] header=[REDACTED:EMAIL]",
        "the header says what the body says, and neither holds the address"
    );
    client.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_that_contradict_the_body_are_refused_before_the_upstream() {
    let upstream = start_mirroring_upstream().await;
    let gateway = start_gateway(&upstream, POLICY).await;
    let http = reqwest::Client::new();
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": "notify", "arguments": {"email": "a@example.com"}}});
    for (header, value) in [
        ("mcp-param-email", "b@example.com"),
        ("mcp-name", "other"),
        ("mcp-method", "tools/list"),
    ] {
        let response = http
            .post(&gateway.url)
            .bearer_auth(KEY)
            .header("accept", "application/json, text/event-stream")
            .header("content-type", "application/json")
            .header("mcp-protocol-version", "2026-07-28")
            .header(header, value)
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{header}");
        let error: serde_json::Value =
            serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
        assert_eq!(error["error"]["code"], -32020, "{header}: {error}");
    }
    assert!(
        gateway.audit.events().is_empty(),
        "refused before any pipeline ran or anything reached the upstream"
    );
}
