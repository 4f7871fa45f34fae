//! Governance inside your own MCP server: an `rmcp` Streamable HTTP server in axum, with Cerberus's
//! guardrail pipeline in front of it as a tower layer.
//!
//! ```sh
//! cargo run -p cerberus-examples --example embed_rmcp            # http://127.0.0.1:3950/mcp
//! cargo run -p cerberus-examples --example embed_rmcp -- 127.0.0.1:0
//! ```
//!
//! The policy hides and refuses `delete_*` tools, redacts email addresses both ways, and allows 60
//! calls a minute per caller. Every message is audited as a JSON line on standard error. Callers are
//! told apart by their `Authorization` header here; use your own authentication's identity.

use std::sync::Arc;

use cerberus_axum::audit::JsonLinesAuditSink;
use cerberus_axum::layer::GovernanceLayer;
use cerberus_core::{
    AgentId, EffectivePolicy, GuardrailRegistry, Identity, PolicyDocument, PolicyLevel,
};
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{ServerCapabilities, ServerConfig};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ServerHandler, tool, tool_handler, tool_router};

/// A small customer-service MCP server.
#[derive(Debug, Clone)]
struct Customers;

/// A customer's name.
#[derive(Debug, serde::Deserialize, rmcp::schemars::JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
struct NameArgs {
    /// The customer's name.
    name: String,
}

#[tool_router]
impl Customers {
    #[tool(description = "Looks up a customer's contact details")]
    async fn lookup_customer(&self, Parameters(args): Parameters<NameArgs>) -> String {
        format!("{}: jane.doe@example.com", args.name)
    }

    #[tool(description = "Deletes a customer")]
    async fn delete_customer(&self, Parameters(args): Parameters<NameArgs>) -> String {
        format!("{} deleted", args.name)
    }
}

#[tool_handler]
impl ServerHandler for Customers {
    fn get_info(&self) -> ServerConfig {
        let mut info = ServerConfig::default();
        info.capabilities = ServerCapabilities::builder().enable_tools().build();
        info
    }
}

const POLICY: &str = r#"{"guardrails": [
    {"type": "rbac", "allow": ["*"], "deny": ["delete_*"]},
    {"type": "pii_email", "action": "redact", "direction": "both"},
    {"type": "rate_limit_per_minute", "limit": 60}
]}"#;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let address = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:3950".to_owned());

    // The pipeline: one policy here; organisation, workspace and agent levels merge the same way.
    let policy = PolicyDocument::from_json(POLICY)?;
    let pipeline = GuardrailRegistry::default().build(&EffectivePolicy::merge([(
        PolicyLevel::Organisation,
        &policy,
    )]))?;

    // The MCP server, as rmcp serves it.
    let mcp = StreamableHttpService::new(
        || Ok(Customers),
        Arc::new(LocalSessionManager::default()),
        StreamableHttpServerConfig::default(),
    );

    // The layer: a few lines.
    let governance = GovernanceLayer::new(pipeline)
        .identify(|request| {
            let caller = request.headers.get("authorization")?.as_bytes();
            Some(caller_identity(caller))
        })
        .audit(Arc::new(JsonLinesAuditSink::new(Box::new(
            std::io::stderr(),
        ))));
    let app = axum::Router::new().route_service(
        "/mcp",
        tower::ServiceBuilder::new().layer(governance).service(mcp),
    );

    let listener = tokio::net::TcpListener::bind(&address).await?;
    println!(
        "governed MCP endpoint: http://{}/mcp",
        listener.local_addr()?
    );
    axum::serve(listener, app).await?;
    Ok(())
}

/// A stable identity per credential (never the credential itself), so that each caller has its own
/// rate limit and audit trail.
fn caller_identity(credential: &[u8]) -> Identity {
    Identity::standalone(AgentId::from_name(credential))
}
