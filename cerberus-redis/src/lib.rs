//! Distributed mode for the Cerberus MCP gateway on Redis: several gateway instances behind a load
//! balancer act as one.
//!
//! - [`RedisRateLimiter`]: the rate limits of every instance counted in one place, GCRA in one atomic
//!   Lua script over all windows of a call, with a [`FailureMode`] and a circuit breaker for when
//!   Redis is away.
//! - [`RedisSessionStore`]: gateway sessions any instance can continue.
//! - [`Invalidations`]: a change made through one instance's admin API clears every instance's caches.
//!
//! Two gateway instances, each with its own connection to one Redis, share an agent's limit of two
//! calls a minute: the third call is throttled whichever instance takes it. (The example runs against
//! the Redis at `CERBERUS_TEST_REDIS_URL`, or 127.0.0.1:6379.)
//!
//! ```
//! use std::sync::Arc;
//! use cerberus_core::{
//!     Decision, Direction, EffectivePolicy, Envelope, GuardrailRegistry, Identity, Message,
//!     PolicyDocument, PolicyLevel,
//! };
//! use cerberus_redis::{LimiterSettings, RedisRateLimiter, connect};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let url = std::env::var("CERBERUS_TEST_REDIS_URL")
//! #     .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
//! let policy = PolicyDocument::from_json(
//!     r#"{"guardrails": [{"type": "rate_limit_per_minute", "limit": 2}]}"#,
//! )?;
//! let policy = EffectivePolicy::merge([(PolicyLevel::Organisation, &policy)]);
//! let mut instances = Vec::new();
//! for _ in 0..2 {
//!     let (_client, connection) = connect(&url, Default::default())?;
//!     let limiter = RedisRateLimiter::new(connection, LimiterSettings::default());
//!     // Every rate_limit_* guardrail this registry builds counts in Redis.
//!     let registry = GuardrailRegistry::new(Arc::new(limiter));
//!     instances.push(registry.build(&policy)?);
//! }
//!
//! let agent = Identity::new_random();
//! let call = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search"}}"#;
//! let mut decisions = Vec::new();
//! for pipeline in [&instances[0], &instances[1], &instances[0]] {
//!     let envelope = Envelope::new(Direction::Request, &agent);
//!     decisions.push(pipeline.run(envelope, Message::parse(call)?).await.decision);
//! }
//! assert!(matches!(decisions[..2], [Decision::Allow, Decision::Allow]));
//! assert!(matches!(decisions[2], Decision::Throttle { .. }));
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

mod breaker;
mod invalidation;
mod limiter;
mod sessions;

use std::time::Duration;

pub use breaker::CircuitBreaker;
pub use invalidation::Invalidations;
pub use limiter::{FailureMode, LimiterSettings, RedisRateLimiter};
pub use sessions::RedisSessionStore;

pub use cerberus_core;
pub use redis;

/// How long a connection may take to open, and an answer to come.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// Opening a connection.
    pub connect: Duration,
    /// One command's answer.
    pub response: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_millis(500),
            response: Duration::from_millis(500),
        }
    }
}

/// A client for `url` and a shared, self-reconnecting connection. Nothing is connected yet: the
/// connection opens on first use, so a gateway starts (and applies its failure mode) while Redis is
/// down. A malformed URL is an error.
pub fn connect(
    url: &str,
    timeouts: Timeouts,
) -> redis::RedisResult<(redis::Client, redis::aio::ConnectionManager)> {
    let client = redis::Client::open(url)?;
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(timeouts.connect))
        .set_response_timeout(Some(timeouts.response))
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_secs(1));
    let connection = redis::aio::ConnectionManager::new_lazy_with_config(client.clone(), config)?;
    Ok((client, connection))
}

/// Checks that Redis answers (`PING`), for readiness checks.
pub async fn ping(connection: &redis::aio::ConnectionManager) -> redis::RedisResult<()> {
    let mut connection = connection.clone();
    redis::cmd("PING")
        .query_async::<String>(&mut connection)
        .await
        .map(drop)
}
