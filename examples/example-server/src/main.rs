//! `cerberus-example-server`: an MCP server to put behind Cerberus.
//!
//! It serves the fixtures the `@modelcontextprotocol/conformance` server scenarios call, and a few tools
//! whose answers carry personal data, a table and denied operations, so that guardrails have something to
//! show. Over stdio (the default) or Streamable HTTP:
//!
//! ```sh
//! cerberus-example-server                      # stdio
//! cerberus-example-server --http 127.0.0.1:3901  # http://127.0.0.1:3901/mcp
//! cerberus-example-server --http 127.0.0.1:3901 --policy policy.json   # behind the tower layer
//! ```
//!
//! With `--policy`, the HTTP server governs itself: Cerberus's tower layer (`cerberus-axum` without
//! its default features) runs the policy in front of it, as an MCP server of your own would embed it.

mod server;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::serve::ListenerExt;
use cerberus_axum::audit::JsonLinesAuditSink;
use cerberus_axum::layer::GovernanceLayer;
use cerberus_core::{EffectivePolicy, GuardrailRegistry, PolicyDocument, PolicyFormat};
use clap::Parser;
use rmcp::ServiceExt;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};

/// An MCP server for trying Cerberus.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Serve Streamable HTTP on this address (at `/mcp`) instead of stdio.
    #[arg(long, value_name = "ADDR")]
    http: Option<SocketAddr>,
    /// With --http: put Cerberus's tower layer in front, running this policy (JSON, or TOML when
    /// the file ends in .toml) and auditing every message as a JSON line on standard error.
    #[arg(long, value_name = "FILE", requires = "http")]
    policy: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    match args.http {
        None => {
            // stdout carries the protocol: diagnostics go to stderr.
            eprintln!("cerberus-example-server: serving MCP on stdio");
            let service = server::ExampleServer::new()
                .serve(rmcp::transport::stdio())
                .await?;
            service.waiting().await?;
        }
        Some(address) => {
            let mut config = StreamableHttpServerConfig::default();
            config.allowed_hosts = vec![
                "localhost".into(),
                "127.0.0.1".into(),
                "[::1]".into(),
                address.ip().to_string(),
            ];
            let service = StreamableHttpService::new(
                || Ok(server::ExampleServer::new()),
                Arc::new(LocalSessionManager::default()),
                config,
            );
            let router = match &args.policy {
                None => axum::Router::new().nest_service("/mcp", service),
                Some(policy) => {
                    let text = std::fs::read_to_string(policy)?;
                    let policy = PolicyDocument::parse(&text, PolicyFormat::from_path(policy))?;
                    let pipeline =
                        GuardrailRegistry::default().build(&EffectivePolicy::single(&policy))?;
                    let governance = GovernanceLayer::new(pipeline).audit(Arc::new(
                        JsonLinesAuditSink::new(Box::new(std::io::stderr())),
                    ));
                    axum::Router::new().nest_service(
                        "/mcp",
                        tower::ServiceBuilder::new()
                            .layer(governance)
                            .service(service),
                    )
                }
            };
            let listener = tokio::net::TcpListener::bind(address).await?;
            eprintln!(
                "cerberus-example-server: serving MCP on http://{}/mcp",
                listener.local_addr()?
            );
            // Without TCP_NODELAY every streamed answer waits ~40 ms for a delayed acknowledgement.
            let listener = listener.tap_io(|tcp| {
                let _ = tcp.set_nodelay(true);
            });
            axum::serve(listener, router)
                .with_graceful_shutdown(async {
                    let _ = tokio::signal::ctrl_c().await;
                })
                .await?;
        }
    }
    Ok(())
}
