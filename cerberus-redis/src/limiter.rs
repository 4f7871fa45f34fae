//! The Redis rate limiter: GCRA over every window of a call in one Lua script, on the Redis server's
//! clock, so that all gateway instances share one count.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use cerberus_core::Cause;
use cerberus_core::rate_limit::{
    LocalRateLimiter, MemoryRateLimiter, RateLimitDecision, RateLimitError, RateLimitWindow,
    RateLimiter,
};
use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};

use crate::breaker::CircuitBreaker;

/// What the limiter does when Redis cannot answer (down, unreachable, too slow).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureMode {
    /// Refuse the call (`rate_limiter_unavailable`). The default: a quota is a governance control,
    /// and an outage of the store that counts it must not lift it silently.
    #[default]
    FailClosed,
    /// Admit the call uncounted: availability before quotas.
    FailOpen,
    /// Count in this instance's memory instead: every instance enforces the limits alone, so N
    /// instances admit up to N times a limit while Redis is away.
    LocalFallback,
}

/// The limiter's settings (`[redis]` in the gateway's configuration).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LimiterSettings {
    /// Prefix of every key the limiter writes.
    pub key_prefix: String,
    /// What to do when Redis cannot answer.
    pub failure_mode: FailureMode,
    /// Failures in a row after which the limiter stops asking Redis for `breaker_cooldown`.
    pub breaker_threshold: u32,
    /// How long the breaker stays open before one call tries Redis again.
    pub breaker_cooldown: Duration,
}

impl Default for LimiterSettings {
    fn default() -> Self {
        Self {
            key_prefix: "cerberus:".to_owned(),
            failure_mode: FailureMode::default(),
            breaker_threshold: 3,
            breaker_cooldown: Duration::from_secs(5),
        }
    }
}

/// A [`RateLimiter`] on Redis, with the semantics of [`MemoryRateLimiter`]: a burst of `limit`, then
/// one call per `period / limit`; every window of a call checked at once, nothing counted on a refusal.
/// Window keys carry the agent as a hash tag (`{agent}:60s`), so that all of a call's keys live in one
/// Redis Cluster slot, as a script's keys must.
#[derive(Debug)]
pub struct RedisRateLimiter {
    connection: ConnectionManager,
    script: redis::Script,
    settings: LimiterSettings,
    breaker: CircuitBreaker,
    fallback: MemoryRateLimiter,
    errors: AtomicU64,
}

fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

impl RedisRateLimiter {
    /// A limiter counting through `connection`.
    pub fn new(connection: ConnectionManager, settings: LimiterSettings) -> Self {
        Self {
            connection,
            script: redis::Script::new(include_str!("gcra.lua")),
            breaker: CircuitBreaker::new(settings.breaker_threshold, settings.breaker_cooldown),
            settings,
            fallback: MemoryRateLimiter::new(),
            errors: AtomicU64::new(0),
        }
    }

    /// How many times Redis could not answer, since start.
    pub fn backend_errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }

    /// Whether the breaker is open: calls are decided by the failure mode without asking Redis.
    pub fn breaker_open(&self) -> bool {
        self.breaker.is_open()
    }

    /// Asks Redis.
    async fn acquire_remote(
        &self,
        windows: &[RateLimitWindow],
    ) -> redis::RedisResult<RateLimitDecision> {
        let mut invocation = self.script.prepare_invoke();
        for window in windows {
            invocation
                .key(format!("{}rl:{}", self.settings.key_prefix, window.key))
                .arg(micros(window.emission_interval()).max(1))
                .arg(micros(window.period));
        }
        let mut connection = self.connection.clone();
        let (admitted, window, wait_us): (i64, i64, i64) =
            invocation.invoke_async(&mut connection).await?;
        Ok(if admitted == 1 {
            RateLimitDecision::Allowed
        } else {
            RateLimitDecision::Denied {
                window: usize::try_from(window).unwrap_or(0),
                retry_after: Duration::from_micros(u64::try_from(wait_us).unwrap_or(0)),
            }
        })
    }
}

#[async_trait]
impl RateLimiter for RedisRateLimiter {
    async fn acquire(
        &self,
        windows: &[RateLimitWindow],
    ) -> Result<RateLimitDecision, RateLimitError> {
        if windows.is_empty() {
            return Ok(RateLimitDecision::Allowed);
        }
        let failure = if self.breaker.allows() {
            match self.acquire_remote(windows).await {
                Ok(decision) => {
                    if self.breaker.succeeded() {
                        tracing::info!("Redis answers again: rate limits are shared again");
                    }
                    return Ok(decision);
                }
                Err(e) => {
                    self.errors.fetch_add(1, Ordering::Relaxed);
                    if self.breaker.failed() {
                        tracing::error!(
                            error = %e,
                            failure_mode = ?self.settings.failure_mode,
                            cooldown = ?self.settings.breaker_cooldown,
                            "Redis cannot count rate limits: the breaker opens"
                        );
                    }
                    Cause::new(e)
                }
            }
        } else {
            Cause::message("the breaker is open after Redis failed")
        };
        match self.settings.failure_mode {
            FailureMode::FailClosed => Err(RateLimitError(failure)),
            FailureMode::FailOpen => Ok(RateLimitDecision::Allowed),
            FailureMode::LocalFallback => self.fallback.acquire_now(windows),
        }
    }
}
