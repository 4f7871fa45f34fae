//! The reference Cerberus gateway: the `cerberus` command and the pieces it is built from.
//!
//! [`proxy`] is the governance plane (the MCP proxy), [`gateway`] its shared state, [`directory`] the
//! key lookup (configuration file and database), [`admin`] the control plane's REST API, [`config`] the
//! configuration file, [`auth`] agent keys, [`check`] the dry run for policy authors, [`serve`] the
//! whole gateway as one router, [`health`] and [`metrics`] its operation endpoints, [`stdio_wrapper`]
//! the `cerberus stdio` command.
//!
//! To govern an MCP server of your own without running the gateway, put a [`layer::GovernanceLayer`]
//! in front of its Streamable HTTP service. Here the service is a stand-in that answers every call
//! with an email address; the layer refuses the denied tool itself and redacts the answer of the
//! allowed one:
//!
//! ```
//! use axum::body::{Body, to_bytes};
//! use axum::http::Request;
//! use cerberus_axum::layer::GovernanceLayer;
//! use cerberus_core::{EffectivePolicy, GuardrailRegistry, PolicyDocument, PolicyLevel};
//! use tower::ServiceExt;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let policy = PolicyDocument::from_json(r#"{"guardrails": [
//!     {"type": "rbac", "allow": ["*"], "deny": ["delete_*"]},
//!     {"type": "pii_email", "action": "redact", "direction": "response"}
//! ]}"#)?;
//! let pipeline = GuardrailRegistry::default()
//!     .build(&EffectivePolicy::merge([(PolicyLevel::Organisation, &policy)]))?;
//!
//! // Your MCP service: an rmcp `StreamableHttpService`, or as here any axum handler.
//! let mcp = axum::routing::post(|| async {
//!     axum::Json(serde_json::json!({"jsonrpc": "2.0", "id": 1,
//!         "result": {"content": [{"type": "text", "text": "ask jane@example.com"}]}}))
//! });
//! let app = axum::Router::new()
//!     .route("/mcp", mcp)
//!     .layer(GovernanceLayer::new(pipeline));
//!
//! let call = |tool: &str| {
//!     Request::post("/mcp")
//!         .header("content-type", "application/json")
//!         .header("accept", "application/json, text/event-stream")
//!         .body(Body::from(format!(
//!             r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"{tool}"}}}}"#
//!         )))
//! };
//! let answer = app.clone().oneshot(call("delete_user")?).await?;
//! let answer = String::from_utf8(to_bytes(answer.into_body(), usize::MAX).await?.to_vec())?;
//! assert!(answer.contains("-32050"), "{answer}"); // refused by rbac; the service never saw it
//!
//! let answer = app.oneshot(call("find_user")?).await?;
//! let answer = String::from_utf8(to_bytes(answer.into_body(), usize::MAX).await?.to_vec())?;
//! assert!(answer.contains("[REDACTED:EMAIL]") && !answer.contains("jane@"), "{answer}");
//! # Ok(()) }
//! ```
//!
//! `examples/embed_rmcp.rs` in the workspace does the same with a real `rmcp` server, and
//! `docs/embedding.md` says what the layer does and does not do. To run the whole gateway from a
//! configuration, see [`serve::run`] (what `cerberus serve` does) or [`serve::build`] for its router.
#![deny(missing_docs)]

pub mod admin;
pub mod audit;
pub mod auth;
pub mod check;
pub mod cli;
pub mod config;
pub mod directory;
pub mod distributed;
pub mod gateway;
pub mod health;
pub mod layer;
pub mod metrics;
pub mod proxy;
pub mod serve;
pub mod stdio_wrapper;
pub mod telemetry;
pub mod upstream_client;
