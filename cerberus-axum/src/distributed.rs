//! Distributed mode: what the gateway shares through Redis when `[redis] url` is set.

use std::sync::Arc;
use std::time::Duration;

use cerberus_redis::redis;
use cerberus_redis::{
    FailureMode, Invalidations, LimiterSettings, RedisRateLimiter, RedisSessionStore, Timeouts,
};

use serde::{Deserialize, Serialize};

/// Distributed mode (`[redis]`): with a `url`, rate limits, sessions and cache invalidations are
/// shared through Redis by every instance; without one, everything stays in this process's memory.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct RedisSettings {
    /// `redis://host:6379/0` (or `rediss://` for TLS); none keeps everything in memory.
    pub url: Option<String>,
    /// Prefix of every key and channel, so that several deployments can share one Redis.
    pub key_prefix: String,
    /// What rate limits do when Redis cannot answer: `fail_closed` (the default: refuse calls),
    /// `fail_open` (admit them uncounted) or `local_fallback` (count per instance).
    pub failure_mode: FailureMode,
    /// Failures in a row after which the limiter stops asking Redis for a while.
    pub breaker_threshold: u32,
    /// How long it then stops asking, in milliseconds.
    pub breaker_cooldown_ms: u64,
    /// How long a connection may take to open, and a command to answer, in milliseconds.
    pub timeout_ms: u64,
    /// How long an unused session is kept, in seconds.
    pub session_idle_secs: u64,
}

impl Default for RedisSettings {
    fn default() -> Self {
        Self {
            url: None,
            key_prefix: "cerberus:".to_owned(),
            failure_mode: FailureMode::default(),
            breaker_threshold: 3,
            breaker_cooldown_ms: 5_000,
            timeout_ms: 500,
            session_idle_secs: 24 * 3600,
        }
    }
}

/// Redis cannot be used as `[redis]` says (its URL does not parse, say).
#[derive(Debug, thiserror::Error)]
#[error("redis.url")]
pub struct DistributedError(#[source] pub redis::RedisError);

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
    pub fn from_settings(settings: &RedisSettings) -> Result<Option<Self>, DistributedError> {
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
        .map_err(DistributedError)?;
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
    pub async fn ping(&self) -> redis::RedisResult<()> {
        cerberus_redis::ping(&self.connection).await
    }
}
