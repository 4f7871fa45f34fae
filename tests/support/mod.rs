//! Shared fixtures: an rmcp upstream server, a gateway in front of it, and HTTP helpers.
#![allow(
    dead_code,
    reason = "each test binary uses a different part of the fixtures"
)]
#![allow(
    deprecated,
    reason = "sampling is deprecated by SEP-2577, but session-era clients use it and the gateway relays it"
)]

pub mod browser;
pub mod changing;

use std::net::SocketAddr;
use std::sync::Arc;

use cerberus_axum::config::GatewayConfig;
use cerberus_axum::gateway::Gateway;
use cerberus_core::GuardrailRegistry;
use cerberus_core::audit::MemoryAuditSink;
use rmcp::RoleServer;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CreateMessageRequestParams, ProgressNotificationParam, SamplingMessage};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{tool, tool_router};
use tokio::sync::Notify;

/// The key every test agent uses.
pub const KEY: &str = "cbk_test_key_for_the_integration_tests";

/// A POST of one JSON-RPC message as an MCP client of protocol `version` sends it, with `key` and within
/// `session` if given.
pub fn mcp_post(
    url: &str,
    key: &str,
    version: &str,
    session: Option<&str>,
    body: &serde_json::Value,
) -> reqwest::RequestBuilder {
    let mut request = reqwest::Client::new()
        .post(url)
        .bearer_auth(key)
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json")
        .header("mcp-protocol-version", version)
        .body(body.to_string());
    if let Some(session) = session {
        request = request.header("mcp-session-id", session);
    }
    request
}

#[derive(Debug, serde::Deserialize, rmcp::schemars::JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
pub struct EchoArgs {
    /// The text to send back.
    pub text: String,
}

/// A small MCP server: what the gateway guards in these tests.
#[derive(Debug, Clone, Default)]
pub struct Upstream {
    /// Lets `progress_then_wait` finish.
    release: Arc<Notify>,
}

#[tool_router(server_handler)]
impl Upstream {
    #[tool(description = "Sends the text back")]
    async fn echo(&self, Parameters(args): Parameters<EchoArgs>) -> String {
        args.text
    }

    #[tool(description = "Describes the current user, with personal data")]
    async fn whoami(&self) -> String {
        "Jane Doe <jane.doe@example.com>, phone +1 555 234 5678".to_owned()
    }

    #[tool(description = "Deletes everything")]
    async fn delete_everything(&self) -> String {
        "everything is gone".to_owned()
    }

    #[tool(
        description = "Reports progress 1, waits to be released, reports progress 2 and returns"
    )]
    async fn progress_then_wait(&self, ctx: RequestContext<RoleServer>) -> String {
        let Some(token) = ctx.meta.get_progress_token() else {
            return "no progress token".to_owned();
        };
        let _ = ctx
            .peer
            .notify_progress(
                ProgressNotificationParam::new(token.clone(), 1.0)
                    .with_message("call jane@example.com"),
            )
            .await;
        self.release.notified().await;
        let _ = ctx
            .peer
            .notify_progress(ProgressNotificationParam::new(token, 2.0))
            .await;
        "done".to_owned()
    }

    #[tool(description = "Asks the client's model, through sampling, and returns its answer")]
    async fn ask_model(&self, ctx: RequestContext<RoleServer>) -> String {
        let request = CreateMessageRequestParams::new(
            vec![SamplingMessage::user_text(
                "Summarise the account of jane@example.com",
            )],
            50,
        );
        match ctx.peer.create_message(request).await {
            Ok(result) => serde_json::to_value(&result.message)
                .map(|m| m.to_string())
                .unwrap_or_default(),
            Err(e) => format!("sampling failed: {e}"),
        }
    }
}

/// The two protocol eras a gateway serves on one endpoint, as an rmcp client starts each.
pub fn eras() -> [(&'static str, rmcp::ClientLifecycleMode); 2] {
    [
        (
            "session era (initialize, 2025-11-25)",
            rmcp::ClientLifecycleMode::Initialize,
        ),
        (
            "stateless era (server/discover, 2026-07-28)",
            rmcp::ClientLifecycleMode::Discover {
                preferred_versions: vec![rmcp::model::ProtocolVersion::V_2026_07_28],
            },
        ),
    ]
}

/// A deadline that only turns a hang into a failure; it measures nothing.
pub const HANG: std::time::Duration = std::time::Duration::from_secs(30);

/// Serves `router` on a free loopback port; returns its address.
pub async fn listen(router: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    address
}

/// Starts the upstream MCP server; returns its endpoint URL.
pub async fn start_upstream() -> String {
    start_upstream_with_release().await.0
}

/// Starts the upstream MCP server; returns its endpoint URL and what releases `progress_then_wait`.
pub async fn start_upstream_with_release() -> (String, Arc<Notify>) {
    let release = Arc::new(Notify::new());
    let upstream = Upstream {
        release: Arc::clone(&release),
    };
    let mut config = StreamableHttpServerConfig::default();
    config.sse_keep_alive = None;
    let service = StreamableHttpService::new(
        move || Ok(upstream.clone()),
        Arc::new(LocalSessionManager::default()),
        config,
    );
    let address = listen(axum::Router::new().nest_service("/mcp", service)).await;
    (format!("http://{address}/mcp"), release)
}

/// A running gateway.
pub struct TestGateway {
    /// Its proxy endpoint.
    pub url: String,
    /// What it audited.
    pub audit: Arc<MemoryAuditSink>,
    /// Its state.
    pub gateway: Arc<Gateway>,
}

/// Starts a gateway for one agent whose organisation policy is `policy` (TOML inline table syntax), in
/// front of the Streamable HTTP server at `upstream`.
pub async fn start_gateway(upstream: &str, policy: &str) -> TestGateway {
    start_gateway_for(&format!("{{ url = \"{upstream}\" }}"), policy).await
}

/// Builds the example MCP server (debug); returns its path.
pub fn example_server_binary() -> std::path::PathBuf {
    workspace_binary("cerberus-example-server", "cerberus-example-server")
}

/// Builds the binary `name` of the workspace package `package` (debug); returns its path.
pub fn workspace_binary(package: &str, name: &str) -> std::path::PathBuf {
    cargo_build(package, "--bin", name).join(name)
}

/// Builds the example `name` of the workspace package `package` (debug); returns its path.
pub fn workspace_example(package: &str, name: &str) -> std::path::PathBuf {
    cargo_build(package, "--example", name)
        .join("examples")
        .join(name)
}

/// Builds one target (`--bin NAME` or `--example NAME`); returns the debug output directory.
fn cargo_build(package: &str, kind: &str, name: &str) -> std::path::PathBuf {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let status = std::process::Command::new(env!("CARGO"))
        .args(["build", "--quiet", "-p", package, kind, name])
        .current_dir(&root)
        .status()
        .expect("cargo runs");
    assert!(status.success(), "{name} builds");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| root.join("target"), std::path::PathBuf::from);
    target.join("debug")
}

/// Starts a gateway for one agent whose workspace's `upstream` table is given as TOML.
pub async fn start_gateway_for(upstream: &str, policy: &str) -> TestGateway {
    start_gateway_with(upstream, policy, GuardrailRegistry::default).await
}

/// Like [`start_gateway_for`], with the guardrail types of the registries `registry` makes (one to
/// read the configuration, one to build the gateway).
pub async fn start_gateway_with(
    upstream: &str,
    policy: &str,
    registry: impl Fn() -> GuardrailRegistry,
) -> TestGateway {
    let hash = cerberus_axum::auth::KeyHash::of(KEY).to_hex();
    let config = format!(
        "[server]\nmax_body_bytes = 65536\nupstream_timeout_secs = 5\nbody_read_timeout_secs = 2\n\n\
         [[organisations]]\nname = \"acme\"\npolicy = {policy}\n\n\
         [[workspaces]]\nname = \"tools\"\norganisation = \"acme\"\nupstream = {upstream}\n\n\
         [[agents]]\nname = \"bot\"\nworkspace = \"tools\"\nkey_sha256 = \"{hash}\"\n"
    );
    let config = GatewayConfig::parse(&config, std::path::Path::new("."), &registry()).unwrap();
    let audit = Arc::new(MemoryAuditSink::new());
    let (gateway, router) =
        cerberus_axum::serve::build(&config, registry(), audit.clone()).unwrap();
    let address = listen(router).await;
    TestGateway {
        url: format!("http://{address}{}", cerberus_axum::proxy::PROXY_PATH),
        audit,
        gateway,
    }
}
