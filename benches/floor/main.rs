//! The floor of the load benchmark: the cheapest MCP pass-through that the gateway's own transport
//! allows. The same HTTP server (axum on hyper) and the same upstream client as `cerberus serve`, and
//! nothing else: no key, no session of its own, no parsing, no guardrails, no audit, no metrics. Each
//! request's body goes upstream as it came, with the MCP headers, and the upstream's answer comes
//! back as it streams.
//!
//! `load --floor target/release/floor-proxy` runs it as one more target, so that every run shows
//! how much of direct throughput an HTTP hop through this stack leaves, beside what the gateway keeps.
//!
//! ```text
//! floor-proxy --listen 127.0.0.1:4000 --upstream http://127.0.0.1:3000/mcp
//! ```

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::serve::ListenerExt;
use cerberus_axum::egress::EgressPolicy;
use cerberus_axum::upstream_client::{SetByOperator, UpstreamClient};
use clap::Parser;

// The gateway's allocator, so that the floor allocates as the gateway does.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The headers an MCP exchange needs on its way upstream.
const PASSED_HEADERS: [&str; 5] = [
    "accept",
    "content-type",
    "mcp-protocol-version",
    "mcp-session-id",
    "last-event-id",
];

/// The largest request body passed on, as the gateway's default.
const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

#[derive(Debug, Parser)]
#[command(
    about = "The cheapest MCP pass-through on the gateway's transport, for the load benchmark"
)]
struct Args {
    /// Where to listen.
    #[arg(long)]
    listen: SocketAddr,
    /// The upstream MCP endpoint.
    #[arg(long)]
    upstream: Uri,
}

#[derive(Debug)]
struct Floor {
    client: UpstreamClient,
    upstream: Uri,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(args: Args) -> anyhow::Result<()> {
    let floor = Arc::new(Floor {
        client: UpstreamClient::new(Duration::from_secs(5), None, EgressPolicy::default())?,
        upstream: args.upstream,
    });
    let router = axum::Router::new()
        .route(
            "/mcp",
            axum::routing::post(forward).get(forward).delete(forward),
        )
        .with_state(floor);
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await?
        .tap_io(|tcp| {
            // As the gateway: small answers leave at once.
            let _ = tcp.set_nodelay(true);
        });
    axum::serve(listener, router).await?;
    Ok(())
}

async fn forward(State(floor): State<Arc<Floor>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, MAX_BODY_BYTES).await else {
        return StatusCode::PAYLOAD_TOO_LARGE.into_response();
    };
    let mut upstream = axum::http::Request::new(body);
    *upstream.method_mut() = parts.method;
    *upstream.uri_mut() = floor.upstream.clone();
    // The upstream is the operator's (on loopback), as a configuration file's would be.
    upstream.extensions_mut().insert(SetByOperator);
    for (name, value) in &parts.headers {
        if PASSED_HEADERS.contains(&name.as_str()) {
            upstream.headers_mut().append(name, value.clone());
        }
    }
    match floor.client.send(upstream).await {
        Ok(answer) => answer.map(Body::new),
        Err(e) => (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    }
}
