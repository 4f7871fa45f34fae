//! Distributed mode: what the gateway shares through Redis when `[redis] url` is set.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use cerberus_redis::redis;
use cerberus_redis::{
    Invalidations, LimiterSettings, RedisRateLimiter, RedisSessionStore, Timeouts,
};

use crate::config::RedisSettings;

/// The shared rate limiter, session store and cache invalidations of one gateway instance.
#[derive(Debug, Clone)]
pub struct Distributed {
    /// Counts every instance's calls.
    pub limiter: Arc<RedisRateLimiter>,
    /// Sessions any instance can continue.
    pub sessions: Arc<RedisSessionStore>,
    /// Tells every instance to drop its cached keys and policies.
    pub invalidations: Invalidations,
    /// The shared connection, for readiness checks.
    connection: redis::aio::ConnectionManager,
}

impl Distributed {
    /// Distributed mode as `settings` configure it; `None` without a URL. Connections open on first
    /// use, so the gateway starts while Redis is down (and applies the failure mode).
    pub fn from_settings(settings: &RedisSettings) -> anyhow::Result<Option<Self>> {
        let Some(url) = &settings.url else {
            return Ok(None);
        };
        let timeout = Duration::from_millis(settings.timeout_ms);
        let (client, connection) = cerberus_redis::connect(
            url,
            Timeouts {
                connect: timeout,
                response: timeout,
            },
        )
        .context("redis.url")?;
        let limiter = RedisRateLimiter::new(
            connection.clone(),
            LimiterSettings {
                key_prefix: settings.key_prefix.clone(),
                failure_mode: settings.failure_mode,
                breaker_threshold: settings.breaker_threshold,
                breaker_cooldown: Duration::from_millis(settings.breaker_cooldown_ms),
            },
        );
        Ok(Some(Self {
            limiter: Arc::new(limiter),
            sessions: Arc::new(RedisSessionStore::new(
                connection.clone(),
                &settings.key_prefix,
                Duration::from_secs(settings.session_idle_secs),
            )),
            invalidations: Invalidations::new(client, connection.clone(), &settings.key_prefix),
            connection,
        }))
    }

    /// Whether Redis answers.
    pub async fn ping(&self) -> Result<(), String> {
        cerberus_redis::ping(&self.connection)
            .await
            .map_err(|e| e.to_string())
    }
}
