//! `cerberus serve`: the gateway as a network service.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use axum::serve::ListenerExt;
use cerberus_core::GuardrailRegistry;
use cerberus_core::audit::{AuditSink, AuditStore, FanoutAuditSink};
use cerberus_core::rate_limit::RateLimiter;
use cerberus_core::session::{MemorySessionStore, SessionStore};
use cerberus_core::store::{ControlStore, UserStore};
use cerberus_sqlx::SqlStore;

use crate::admin::credentials::{TokenIssuer, hash_password};
use crate::admin::{self, AdminState};
use crate::audit::{BatchedAuditSink, JsonLinesAuditSink, spawn_retention};
use crate::cli::ServeArgs;
use crate::config::{AdminSettings, GatewayConfig};
use crate::distributed::Distributed;
use crate::gateway::Gateway;
use crate::health::{self, Readiness};
use crate::{metrics, proxy};

/// How long shutdown waits for the audit queue to be stored.
const AUDIT_FLUSH_LIMIT: std::time::Duration = std::time::Duration::from_secs(30);

/// The environment variable holding the access-token signing secret.
pub const JWT_SECRET_ENV: &str = "CERBERUS_JWT_SECRET";

/// Builds the gateway's router from a configuration, with no control-plane database.
pub fn build(
    config: &GatewayConfig,
    audit: Arc<dyn AuditSink>,
) -> anyhow::Result<(Arc<Gateway>, axum::Router)> {
    build_with_store(config, audit, None)
}

/// Builds the gateway's router: the proxy, and with a store the admin API and the stored agents. With
/// `[redis] url`, rate limits, sessions and cache invalidations are shared through Redis (this starts
/// the invalidation subscription, so it must run within a Tokio runtime).
pub fn build_with_store(
    config: &GatewayConfig,
    audit: Arc<dyn AuditSink>,
    store: Option<Arc<dyn ControlStore>>,
) -> anyhow::Result<(Arc<Gateway>, axum::Router)> {
    let distributed = Distributed::from_settings(&config.redis)?;
    let (registry, sessions): (_, Arc<dyn SessionStore>) = match &distributed {
        Some(shared) => (
            GuardrailRegistry::new(Arc::clone(&shared.limiter) as Arc<dyn RateLimiter>),
            Arc::clone(&shared.sessions) as Arc<dyn SessionStore>,
        ),
        None => (
            GuardrailRegistry::default(),
            Arc::new(MemorySessionStore::new()) as Arc<dyn SessionStore>,
        ),
    };
    let registry = Arc::new(registry);
    let mut gateway = Gateway::new(config, &registry, sessions, audit)?;
    if let Some(shared) = &distributed {
        gateway.metrics.watch_limiter(Arc::clone(&shared.limiter));
    }
    let readiness = Arc::new(Readiness::new(config, store.clone(), distributed.clone()));
    // Routes every deployment has: the proxy, health, readiness and metrics, counted by route.
    let operations = |gateway: &Arc<Gateway>, router: axum::Router| {
        let metrics = Arc::clone(&gateway.metrics);
        router
            .merge(health::router(Arc::clone(&readiness)))
            .route(
                "/metrics",
                axum::routing::get(metrics::serve).with_state(Arc::clone(&metrics)),
            )
            .layer(axum::middleware::from_fn_with_state(
                metrics,
                metrics::count_requests,
            ))
    };
    let Some(store) = store else {
        let gateway = Arc::new(gateway);
        let router = operations(&gateway, proxy::router(Arc::clone(&gateway)));
        return Ok((gateway, router));
    };
    let ttl = config
        .database
        .as_ref()
        .map_or(std::time::Duration::from_millis(500), |d| d.cache_ttl());
    gateway.directory = gateway.directory.with_store(
        Arc::clone(&store),
        Arc::clone(&registry),
        config.base.clone(),
        ttl,
    );
    let gateway = Arc::new(gateway);
    let local: Arc<dyn Fn() + Send + Sync> = {
        let gateway = Arc::clone(&gateway);
        Arc::new(move || gateway.directory.invalidate())
    };
    // An admin change clears this instance's cache at once and, in distributed mode, every other
    // instance's through Redis; a message that cannot be published is logged, and the others then
    // catch up within their cache TTL.
    let invalidate: Arc<dyn Fn() + Send + Sync> = match &distributed {
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
    let admin = AdminState::new(
        store,
        token_issuer(&config.admin)?,
        registry,
        config.admin.clone(),
        invalidate,
    );
    let router = operations(
        &gateway,
        proxy::router(Arc::clone(&gateway)).merge(admin::router(admin)),
    );
    Ok((gateway, router))
}

/// The access-token issuer: the secret from the environment, else the file, else a random one.
fn token_issuer(settings: &AdminSettings) -> anyhow::Result<TokenIssuer> {
    let secret = match std::env::var(JWT_SECRET_ENV)
        .ok()
        .or_else(|| settings.jwt_secret.clone())
    {
        Some(secret) if secret.len() >= 32 => secret.into_bytes(),
        Some(_) => {
            anyhow::bail!("admin.jwt_secret ({JWT_SECRET_ENV}) must have at least 32 characters")
        }
        None => {
            tracing::warn!(
                "no {JWT_SECRET_ENV}: admin tokens are signed with a random secret and end with this process"
            );
            let mut secret = vec![0u8; 32];
            rand::RngCore::fill_bytes(&mut rand::rng(), &mut secret);
            secret
        }
    };
    Ok(TokenIssuer::new(
        &secret,
        std::time::Duration::from_secs(settings.access_token_ttl_secs),
        std::time::Duration::from_secs(settings.refresh_token_ttl_secs),
    ))
}

/// Opens (and, if configured, migrates) the control-plane database of a configuration.
pub async fn open_store(config: &GatewayConfig) -> anyhow::Result<Option<Arc<SqlStore>>> {
    let Some(database) = &config.database else {
        return Ok(None);
    };
    let store = SqlStore::connect(&database.url).await?;
    if database.migrate {
        store.migrate().await?;
    }
    Ok(Some(Arc::new(store)))
}

/// The first owner, from `CERBERUS_BOOTSTRAP_ORGANISATION`, `_EMAIL` and `_PASSWORD`, when that user
/// does not exist yet: a way to start a fresh deployment without a default password.
async fn bootstrap_owner(store: &SqlStore) -> anyhow::Result<()> {
    let var = |name: &str| std::env::var(format!("CERBERUS_BOOTSTRAP_{name}")).ok();
    let (Some(organisation), Some(email), Some(password)) =
        (var("ORGANISATION"), var("EMAIL"), var("PASSWORD"))
    else {
        return Ok(());
    };
    if store.credentials(&email).await?.is_some() {
        return Ok(());
    }
    create_owner(store, &organisation, &email, password).await?;
    tracing::info!(%organisation, "created the first owner from the environment");
    Ok(())
}

/// Creates an organisation and its first owner (`cerberus admin create-user`).
pub async fn create_owner(
    store: &SqlStore,
    organisation: &str,
    email: &str,
    password: String,
) -> anyhow::Result<()> {
    if password.chars().count() < 12 {
        anyhow::bail!("the password must have at least 12 characters");
    }
    let hash = hash_password(password)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    use cerberus_core::store::OrganisationStore;
    store
        .create_organisation(organisation, email, &hash)
        .await
        .with_context(|| format!("cannot create organisation `{organisation}`"))?;
    Ok(())
}

/// Runs `cerberus serve` until Ctrl-C or SIGTERM.
pub async fn run(args: &ServeArgs) -> anyhow::Result<()> {
    run_with(load_config(args)?, args).await
}

/// The configuration `cerberus serve` runs with: the file, the environment's overrides, then the
/// command line's.
pub fn load_config(args: &ServeArgs) -> anyhow::Result<GatewayConfig> {
    let mut config = GatewayConfig::load(&args.config, &GuardrailRegistry::default())?;
    if let Some(listen) = args.listen {
        config.server.listen = listen;
    }
    Ok(config)
}

/// Runs `cerberus serve` with a loaded configuration until Ctrl-C or SIGTERM.
pub async fn run_with(config: GatewayConfig, args: &ServeArgs) -> anyhow::Result<()> {
    let store = open_store(&config).await?;
    if let Some(store) = &store {
        bootstrap_owner(store).await?;
    }
    let mut sinks: Vec<Arc<dyn AuditSink>> = Vec::new();
    let mut batched = None;
    if let Some(store) = &store
        && config.audit.database
    {
        let store: Arc<dyn AuditStore> = Arc::clone(store) as Arc<dyn AuditStore>;
        let sink = Arc::new(BatchedAuditSink::start(Arc::clone(&store), &config.audit));
        batched = Some(Arc::clone(&sink));
        sinks.push(sink);
        spawn_retention(store, config.audit.retention_days);
    }
    match &args.audit_log {
        Some(path) if path == Path::new("-") => sinks.push(Arc::new(JsonLinesAuditSink::new(
            Box::new(std::io::stdout()),
        ))),
        Some(path) => sinks.push(Arc::new(
            JsonLinesAuditSink::append_to(path)
                .with_context(|| format!("cannot open {}", path.display()))?,
        )),
        None => {}
    }
    let audit: Arc<dyn AuditSink> = match sinks.len() {
        0 => Arc::new(cerberus_core::audit::NullAuditSink),
        1 => sinks.remove(0),
        _ => Arc::new(FanoutAuditSink::new(sinks)),
    };
    let (gateway, router) =
        build_with_store(&config, audit, store.map(|s| s as Arc<dyn ControlStore>))?;
    if let Some(batched) = batched {
        gateway.metrics.watch_audit(batched);
    }
    let listener = tokio::net::TcpListener::bind(config.server.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.server.listen))?;
    let address = listener.local_addr()?;
    tracing::info!(%address, agents = config.agents.len(), database = config.database.is_some(), "cerberus is serving");
    println!("MCP endpoint: http://{address}{}", proxy::PROXY_PATH);
    if config.database.is_some() {
        println!("Admin API: http://{address}/api/v1");
    }
    // Small SSE writes must leave at once: without TCP_NODELAY, Nagle's algorithm and the client's
    // delayed acknowledgements add some 40 ms to every streamed answer.
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::warn!(error = %e, "cannot set TCP_NODELAY");
        }
    });
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    // Stop stdio upstreams cleanly rather than leaving it to the runtime's teardown.
    gateway.stdio.shutdown().await;
    // Every event the proxy recorded is stored before the process ends, unless the store stays
    // unreachable for longer than a shutdown may reasonably take.
    if tokio::time::timeout(AUDIT_FLUSH_LIMIT, gateway.audit.flush())
        .await
        .is_err()
    {
        tracing::error!(
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
