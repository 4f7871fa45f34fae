//! `cerberus serve`: the gateway as a network service.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use axum::serve::ListenerExt;
use cerberus_core::GuardrailRegistry;
use cerberus_core::audit::AuditSink;
use cerberus_core::session::MemorySessionStore;

use crate::audit_log::JsonLinesAuditSink;
use crate::cli::ServeArgs;
use crate::config::GatewayConfig;
use crate::gateway::Gateway;
use crate::proxy;

/// Builds the gateway's router from a configuration.
pub fn build(
    config: &GatewayConfig,
    audit: Arc<dyn AuditSink>,
) -> anyhow::Result<(Arc<Gateway>, axum::Router)> {
    let registry = GuardrailRegistry::default();
    let gateway = Arc::new(Gateway::new(
        config,
        &registry,
        Arc::new(MemorySessionStore::new()),
        audit,
    )?);
    let router = proxy::router(Arc::clone(&gateway));
    Ok((gateway, router))
}

/// Runs `cerberus serve` until Ctrl-C or SIGTERM.
pub async fn run(args: &ServeArgs) -> anyhow::Result<()> {
    let registry = GuardrailRegistry::default();
    let mut config = GatewayConfig::load(&args.config, &registry)?;
    if let Some(listen) = args.listen {
        config.server.listen = listen;
    }
    let audit: Arc<dyn AuditSink> = match &args.audit_log {
        Some(path) if path == Path::new("-") => {
            Arc::new(JsonLinesAuditSink::new(Box::new(std::io::stdout())))
        }
        Some(path) => Arc::new(
            JsonLinesAuditSink::append_to(path)
                .with_context(|| format!("cannot open {}", path.display()))?,
        ),
        None => Arc::new(cerberus_core::audit::NullAuditSink),
    };
    let (gateway, router) = build(&config, audit)?;
    let listener = tokio::net::TcpListener::bind(config.server.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.server.listen))?;
    let address = listener.local_addr()?;
    tracing::info!(%address, agents = config.agents.len(), "cerberus is serving");
    println!("MCP endpoint: http://{address}{}", proxy::PROXY_PATH);
    // Small SSE writes must leave at once: without TCP_NODELAY, Nagle's algorithm and the client's
    // delayed acknowledgements add some 40 ms to every streamed answer.
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::warn!(error = %e, "cannot set TCP_NODELAY");
        }
    });
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown())
        .await?;
    // Stop stdio upstreams cleanly rather than leaving it to the runtime's teardown.
    gateway.stdio.shutdown().await;
    Ok(())
}

async fn shutdown() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down");
}
