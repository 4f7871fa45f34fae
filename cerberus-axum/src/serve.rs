//! `cerberus serve`: the gateway as a network service, assembled from a configuration and the
//! guardrail types policies may name.
//!
//! [`build`] gives the router of a gateway with the configuration file's agents; with the
//! `control-plane` feature, [`build_with_store`] adds the admin API and the agents of a database;
//! [`run`] is the whole command: the database, the audit sinks, the router, a listener, and a
//! graceful shutdown that stores the last audit events.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cerberus_core::GuardrailRegistry;
use cerberus_core::audit::{AuditSink, FanoutAuditSink, NullAuditSink};
use cerberus_core::session::{MemorySessionStore, SessionStore};
#[cfg(feature = "control-plane")]
use cerberus_core::{audit::AuditStore, store::ControlStore};

use crate::audit::JsonLinesAuditSink;
use crate::config::{ConfigError, GatewayConfig};
#[cfg(feature = "control-plane")]
use crate::control_plane::{self, ControlPlaneError};
#[cfg(feature = "redis")]
use crate::distributed::{Distributed, DistributedError};
use crate::gateway::{Gateway, GatewayError};
use crate::health::{self, Readiness};
use crate::{metrics, proxy};

/// How long shutdown waits for the audit queue to be stored.
const AUDIT_FLUSH_LIMIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Why the gateway cannot be built or served.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The configuration cannot be used.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The gateway cannot be built from it.
    #[error(transparent)]
    Gateway(#[from] GatewayError),
    /// The control plane cannot start.
    #[cfg(feature = "control-plane")]
    #[error(transparent)]
    ControlPlane(#[from] ControlPlaneError),
    /// Redis cannot be used as configured.
    #[cfg(feature = "redis")]
    #[error(transparent)]
    Distributed(#[from] DistributedError),
    /// The audit log file cannot be opened.
    #[error("cannot open the audit log {path}")]
    AuditLog {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The address cannot be listened on.
    #[error("cannot listen on {address}")]
    Listen {
        /// The address.
        address: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The server stopped on an error.
    #[error("the server failed")]
    Serve(#[source] std::io::Error),
}

/// A gateway and the router that serves it.
pub type Built = (Arc<Gateway>, axum::Router);

/// Builds the router of a gateway serving the configuration file's agents, whose policies may name
/// the guardrail types of `registry`. With `[redis] url` (feature `redis`), rate limits, sessions
/// and cache invalidations are shared through Redis (this starts the invalidation subscription, so
/// it must run within a Tokio runtime).
pub fn build(
    config: &GatewayConfig,
    registry: GuardrailRegistry,
    audit: Arc<dyn AuditSink>,
) -> Result<Built, ServeError> {
    #[allow(unused_mut, reason = "changed only with the feature oauth")]
    let mut parts = Parts::new(config, registry, audit)?;
    #[cfg(feature = "oauth")]
    {
        parts.gateway.oauth = parts.oauth.take().map(Arc::new);
    }
    let gateway = Arc::new(parts.gateway);
    let readiness = Readiness::new(config.upstreams());
    #[cfg(feature = "redis")]
    let readiness = readiness.with_redis(parts.distributed);
    let router = operations(&gateway, readiness, proxy::router(Arc::clone(&gateway)));
    Ok((gateway, router))
}

/// Like [`build`], with the admin API over `store` and the agents stored there besides the file's.
#[cfg(feature = "control-plane")]
pub fn build_with_store(
    config: &GatewayConfig,
    registry: GuardrailRegistry,
    audit: Arc<dyn AuditSink>,
    store: Arc<dyn ControlStore>,
) -> Result<Built, ServeError> {
    let ttl = config
        .database
        .as_ref()
        .map_or(std::time::Duration::from_millis(500), |d| d.cache_ttl());
    // Pins and their approvals live in the database, shared by every instance; a call's pin status
    // is trusted for as long as a key and policy are, and forgotten with them on an admin change.
    let pins = Arc::new(cerberus_core::pinning::CachedPinStore::new(
        Arc::clone(&store) as _,
        ttl,
        usize::try_from(crate::directory::MAX_CACHED).unwrap_or(usize::MAX),
    ));
    let registry = registry.with_pin_store(Arc::clone(&pins) as _);
    let mut parts = Parts::new(config, registry, audit)?;
    // Identity providers set through the admin API protect the store's workspaces.
    #[cfg(feature = "oauth")]
    {
        parts.gateway.oauth = parts.oauth.take().map(|server| {
            Arc::new(server.with_store(Arc::clone(&store), config.base.clone(), ttl))
        });
    }
    parts.gateway.directory = parts.gateway.directory.with_store(
        Arc::clone(&store),
        Arc::clone(&parts.registry),
        config.base.clone(),
        ttl,
        crate::directory::MAX_CACHED,
    );
    // Held calls wait for the organisation's admins, through the database.
    let mut approver = crate::approvals::AdminApprover::new(
        Arc::clone(&store) as _,
        config.admin.approval_timeout(),
        config.admin.approval_poll_interval(),
    )
    .managing(Arc::clone(&store) as _);
    if let (Some(url), Some(secret)) = (
        &config.admin.approval_webhook_url,
        &config.admin.approval_webhook_secret,
    ) {
        let notifier = crate::approvals::ApprovalNotifier::new(url, secret.as_bytes())
            .map_err(|e| ConfigError::new("admin.approval_webhook_url", e))?;
        approver = approver.with_notifier(notifier);
    }
    let approver = Arc::new(approver);
    let timeout = config.admin.approval_timeout();
    let asking = crate::asking::Asking::new(Arc::clone(&parts.gateway.elicitations), timeout)
        .with_admins(Arc::clone(&approver) as _, timeout);
    parts.gateway.recorder = parts
        .gateway
        .recorder
        .clone()
        .with_approver(Arc::new(asking));
    parts.gateway.metrics.watch_approvals(Arc::clone(&approver));
    parts.gateway.approval_keep_alive = Some(config.admin.approval_keep_alive());
    let gateway = Arc::new(parts.gateway);
    let local: Arc<dyn Fn() + Send + Sync> = {
        let gateway = Arc::clone(&gateway);
        Arc::new(move || {
            gateway.directory.invalidate();
            #[cfg(feature = "oauth")]
            if let Some(server) = &gateway.oauth {
                server.invalidate();
            }
            pins.clear();
        })
    };
    // An admin change clears this instance's cache at once and, in distributed mode, every other
    // instance's through Redis; a message that cannot be published is logged, and the others then
    // catch up within their cache TTL.
    #[cfg(feature = "redis")]
    let invalidate: Arc<dyn Fn() + Send + Sync> = match &parts.distributed {
        None => local,
        Some(shared) => {
            shared.invalidations.subscribe(Arc::clone(&local));
            let invalidations = shared.invalidations.clone();
            Arc::new(move || {
                local();
                let invalidations = invalidations.clone();
                tokio::spawn(async move {
                    if let Err(e) = invalidations.publish().await {
                        tracing::error!(error = %e, "cannot tell the other instances about an admin change");
                    }
                });
            })
        }
    };
    #[cfg(not(feature = "redis"))]
    let invalidate = local;
    let admin = crate::admin::AdminState::new(
        Arc::clone(&store),
        control_plane::token_issuer(&config.admin)?,
        parts.registry,
        config.admin.clone(),
        invalidate,
    )
    .with_approvals(approver);
    #[cfg(feature = "oauth")]
    let admin = admin.with_oauth(gateway.oauth.clone());
    let readiness = Readiness::new(config.upstreams()).with_store(store);
    #[cfg(feature = "redis")]
    let readiness = readiness.with_redis(parts.distributed);
    let router = operations(
        &gateway,
        readiness,
        proxy::router(Arc::clone(&gateway)).merge(crate::admin::router(admin)),
    );
    Ok((gateway, router))
}

/// What every deployment's gateway is made of, before the control plane is added.
struct Parts {
    gateway: Gateway,
    /// The registry pipelines are built with (counting rate limits in Redis in distributed mode).
    #[cfg_attr(
        not(feature = "control-plane"),
        expect(dead_code, reason = "only stored agents are built later")
    )]
    registry: Arc<GuardrailRegistry>,
    /// The resource server, when the gateway takes OAuth access tokens: put into the gateway once
    /// the control plane, if any, is added to it.
    #[cfg(feature = "oauth")]
    oauth: Option<crate::oauth::ResourceServer>,
    #[cfg(feature = "redis")]
    distributed: Option<Distributed>,
}

impl Parts {
    fn new(
        config: &GatewayConfig,
        registry: GuardrailRegistry,
        audit: Arc<dyn AuditSink>,
    ) -> Result<Self, ServeError> {
        let in_memory = Arc::new(MemorySessionStore::with_limits(
            config.server.session_limits(),
        ));
        #[cfg(feature = "redis")]
        let distributed = Distributed::from_settings(&config.redis, Arc::clone(&in_memory))?;
        #[cfg(feature = "redis")]
        let (registry, sessions): (_, Arc<dyn SessionStore>) = match &distributed {
            Some(shared) => (
                registry.with_rate_limiter(Arc::clone(&shared.limiter) as _),
                Arc::clone(&shared.sessions) as _,
            ),
            None => (registry, Arc::clone(&in_memory) as _),
        };
        #[cfg(not(feature = "redis"))]
        let sessions: Arc<dyn SessionStore> = Arc::clone(&in_memory) as _;
        #[allow(unused_mut, reason = "changed only with the feature redis")]
        let mut gateway = Gateway::new(
            config.server.clone(),
            config.routes(&registry)?,
            sessions,
            audit,
            config.audit.payload_redactor(),
        )?;
        // With sessions shared, a client's GET may reach another instance than the one that would
        // hold the stream it opened (`proxy::listening`).
        #[cfg(feature = "redis")]
        {
            gateway.pre_open_streams = distributed.is_none();
        }
        #[cfg(feature = "redis")]
        if let Some(shared) = &distributed {
            gateway.metrics.watch_limiter(Arc::clone(&shared.limiter));
        }
        // Without Redis, every session is in memory; with it, those opened while Redis could not
        // answer (failure modes other than fail_closed).
        gateway.metrics.watch_sessions(in_memory);
        let registry = Arc::new(registry);
        #[cfg(feature = "oauth")]
        let oauth = config.resource_server(Arc::clone(&gateway.http), Arc::clone(&registry))?;
        Ok(Self {
            gateway,
            registry,
            #[cfg(feature = "oauth")]
            oauth,
            #[cfg(feature = "redis")]
            distributed,
        })
    }
}

/// Routes every deployment has around `router`: health, readiness and metrics, the metadata of
/// the workspaces that take OAuth access tokens, every route counted.
fn operations(gateway: &Arc<Gateway>, readiness: Readiness, router: axum::Router) -> axum::Router {
    let metrics = Arc::clone(&gateway.metrics);
    #[cfg(feature = "oauth")]
    let router = match &gateway.oauth {
        Some(server) => router.merge(crate::oauth::router(Arc::clone(server))),
        None => router,
    };
    router
        .merge(health::router(Arc::new(readiness)))
        .route(
            "/metrics",
            axum::routing::get(metrics::serve).with_state(Arc::clone(&metrics)),
        )
        .layer(axum::middleware::from_fn_with_state(
            metrics,
            metrics::count_requests,
        ))
}

/// Runs `cerberus serve` with a loaded configuration until Ctrl-C or SIGTERM: policies may name the
/// guardrail types of `registry`, and with `audit_log` every audit event is also written there as
/// a JSON line (`-` for standard output).
pub async fn run(
    config: GatewayConfig,
    registry: GuardrailRegistry,
    audit_log: Option<&Path>,
) -> Result<(), ServeError> {
    let mut sinks: Vec<Arc<dyn AuditSink>> = Vec::new();
    #[cfg(feature = "control-plane")]
    let store = match &config.database {
        Some(database) => {
            let store = control_plane::open_store(database).await?;
            control_plane::bootstrap_owner(&store).await?;
            Some(store)
        }
        None => None,
    };
    #[cfg(feature = "control-plane")]
    let mut batched = None;
    #[cfg(feature = "control-plane")]
    if let Some(store) = &store
        && config.audit.database
    {
        let sink = Arc::new(crate::audit::BatchedAuditSink::start(
            Arc::clone(store) as Arc<dyn AuditStore>,
            &config.audit,
        ));
        batched = Some(Arc::clone(&sink));
        sinks.push(sink);
        crate::audit::spawn_retention(Arc::clone(store) as _, config.audit.retention_days);
    }
    match audit_log {
        Some(path) if path == Path::new("-") => sinks.push(Arc::new(JsonLinesAuditSink::new(
            Box::new(std::io::stdout()),
        ))),
        Some(path) => sinks.push(Arc::new(JsonLinesAuditSink::append_to(path).map_err(
            |source| ServeError::AuditLog {
                path: path.to_owned(),
                source,
            },
        )?)),
        None => {}
    }
    let audit: Arc<dyn AuditSink> = match sinks.len() {
        0 => Arc::new(NullAuditSink),
        1 => sinks.remove(0),
        _ => Arc::new(FanoutAuditSink::new(sinks)),
    };
    #[cfg(feature = "control-plane")]
    let (gateway, router) = match store {
        Some(store) => build_with_store(&config, registry, audit, store)?,
        None => build(&config, registry, audit)?,
    };
    #[cfg(not(feature = "control-plane"))]
    let (gateway, router) = build(&config, registry, audit)?;
    #[cfg(feature = "control-plane")]
    if let Some(batched) = batched {
        gateway.metrics.watch_audit(batched);
    }
    let listen = config.server.listen;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|source| ServeError::Listen {
            address: listen,
            source,
        })?;
    let address = listener.local_addr().map_err(ServeError::Serve)?;
    #[cfg(feature = "control-plane")]
    let database = config.database.is_some();
    #[cfg(not(feature = "control-plane"))]
    let database = false;
    tracing::info!(%address, agents = config.agents.len(), database, "cerberus is serving");
    println!("MCP endpoint: http://{address}{}", proxy::PROXY_PATH);
    #[cfg(feature = "oauth")]
    if let Some(server) = &gateway.oauth {
        for (workspace, url) in server.endpoints() {
            println!("OAuth MCP endpoint of {workspace}: {url}");
        }
        server.prefetch_keys();
    }
    if database {
        println!("Admin API: http://{address}/api/v1");
        println!("Console: http://{address}/console/");
    }
    crate::listener::serve(
        listener,
        router,
        config.server.connection_limits(),
        shutdown_signal(),
    )
    .await;
    // Stop stdio upstreams cleanly rather than leaving it to the runtime's teardown.
    gateway.stdio.shutdown().await;
    // Every event the proxy recorded is stored before the process ends, unless the store stays
    // unreachable for longer than a shutdown may reasonably take: then the loss is counted.
    let audit = gateway.audit();
    let waiting = audit.unwritten();
    if waiting > 0 {
        tracing::info!(
            events = waiting,
            "storing the queued audit events before exiting"
        );
    }
    if tokio::time::timeout(AUDIT_FLUSH_LIMIT, audit.flush())
        .await
        .is_err()
    {
        tracing::error!(
            lost = audit.unwritten(),
            "the audit store did not take the last events within {AUDIT_FLUSH_LIMIT:?}: they are lost"
        );
    }
    Ok(())
}

/// Resolves at Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
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
