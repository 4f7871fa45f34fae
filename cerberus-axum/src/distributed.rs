//! Distributed mode: what the gateway shares through Redis when `[redis] url` is set.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use cerberus_core::session::{MemorySessionStore, SessionRecord, SessionStore, SessionStoreError};

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
    /// What rate limits and sessions do when Redis cannot answer: `fail_closed` (the default: refuse
    /// calls), `fail_open` (admit them uncounted) or `local_fallback` (count per instance). Sessions
    /// follow it as [`FallbackSessions`] says.
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
    /// Sessions any instance can continue, following the failure mode when Redis cannot answer.
    pub sessions: Arc<FallbackSessions>,
    /// Tells every instance to drop its cached keys and policies.
    pub invalidations: Invalidations,
    /// The shared connection, for readiness checks.
    connection: redis::aio::ConnectionManager,
}

impl Distributed {
    /// Distributed mode as `settings` configure it; `None` without a URL. Connections open on first
    /// use, so the gateway starts while Redis is down (and applies the failure mode).
    ///
    /// Sessions opened while Redis cannot answer are kept in `local`, if the failure mode allows.
    pub fn from_settings(
        settings: &RedisSettings,
        local: Arc<MemorySessionStore>,
    ) -> Result<Option<Self>, DistributedError> {
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
            sessions: Arc::new(FallbackSessions::new(
                Arc::new(RedisSessionStore::new(
                    connection.clone(),
                    &settings.key_prefix,
                    Duration::from_secs(settings.session_idle_secs),
                )),
                local,
                settings.failure_mode,
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

/// Sessions kept in Redis that follow the failure mode when Redis cannot answer.
///
/// With `fail_closed`, a call that needs the session store then gets 503, as a rate-limited call does.
/// With `fail_open` or `local_fallback`, the instance carries on alone: a new session is kept in its
/// own memory (bounded as the in-memory store is), a session it cannot ask Redis about is unknown (the
/// client gets 404 and initializes again, here), and the sessions kept here are found here first, for
/// as long as they are used. That opens nothing a key does not already allow: the agent's key is
/// checked on every request whatever the session store says, and a session serves only the agent that
/// opened it. Once Redis answers again, new sessions go there; those opened meanwhile stay on this
/// instance (like stdio sessions, they need affinity behind a load balancer) until they end.
#[derive(Debug)]
pub struct FallbackSessions {
    shared: Arc<RedisSessionStore>,
    local: Arc<MemorySessionStore>,
    mode: FailureMode,
    /// Whether the last call to Redis failed: a change is logged once, not on every call.
    failing: AtomicBool,
}

impl FallbackSessions {
    /// Sessions in `shared`, falling back to `local` as `mode` says.
    pub fn new(
        shared: Arc<RedisSessionStore>,
        local: Arc<MemorySessionStore>,
        mode: FailureMode,
    ) -> Self {
        Self {
            shared,
            local,
            mode,
            failing: AtomicBool::new(false),
        }
    }

    /// The sessions kept in this instance's memory (those opened while Redis could not answer).
    pub fn local(&self) -> &Arc<MemorySessionStore> {
        &self.local
    }

    /// `outcome` of asking Redis, or `fallback` where the failure mode allows one.
    fn follow<T>(
        &self,
        outcome: Result<T, SessionStoreError>,
        fallback: impl FnOnce() -> T,
    ) -> Result<T, SessionStoreError> {
        match outcome {
            Ok(value) => {
                if self.failing.swap(false, Ordering::Relaxed) {
                    tracing::info!("the session store answers again");
                }
                Ok(value)
            }
            Err(error) => {
                if !self.failing.swap(true, Ordering::Relaxed) {
                    tracing::error!(
                        %error,
                        mode = ?self.mode,
                        "the session store cannot be reached"
                    );
                }
                match self.mode {
                    FailureMode::FailClosed => Err(error),
                    _ => Ok(fallback()),
                }
            }
        }
    }
}

#[async_trait]
impl SessionStore for FallbackSessions {
    async fn insert(&self, id: &str, record: SessionRecord) -> Result<(), SessionStoreError> {
        match self.follow(
            self.shared.insert(id, record.clone()).await.map(|()| true),
            || false,
        )? {
            true => Ok(()),
            false => self.local.insert(id, record).await,
        }
    }

    async fn get(&self, id: &str) -> Result<Option<SessionRecord>, SessionStoreError> {
        if let Some(record) = self.local.get(id).await? {
            return Ok(Some(record));
        }
        self.follow(self.shared.get(id).await, || None)
    }

    async fn remove(&self, id: &str) -> Result<Option<SessionRecord>, SessionStoreError> {
        if let Some(record) = self.local.remove(id).await? {
            return Ok(Some(record));
        }
        self.follow(self.shared.remove(id).await, || None)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly")]

    use cerberus_core::Identity;

    use super::*;

    /// Sessions over a Redis that is not there (nothing listens on the port).
    fn sessions_without_redis(mode: FailureMode) -> FallbackSessions {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let timeout = Duration::from_millis(200);
        let (_, connection) = cerberus_redis::connect(
            &format!("redis://127.0.0.1:{port}"),
            Timeouts {
                connect: timeout,
                response: timeout,
            },
        )
        .unwrap();
        FallbackSessions::new(
            Arc::new(RedisSessionStore::new(
                connection,
                "test:",
                Duration::from_secs(60),
            )),
            Arc::new(MemorySessionStore::default()),
            mode,
        )
    }

    #[tokio::test]
    async fn sessions_follow_the_failure_mode_while_redis_is_away() {
        let record = SessionRecord {
            identity: Identity::new_random(),
            upstream_session: None,
            protocol_version: Some("2025-11-25".into()),
            served_by: None,
            client_elicits: false,
        };
        let closed = sessions_without_redis(FailureMode::FailClosed);
        assert!(closed.insert("s", record.clone()).await.is_err());
        assert!(closed.get("s").await.is_err());
        for mode in [FailureMode::FailOpen, FailureMode::LocalFallback] {
            let sessions = sessions_without_redis(mode);
            // A new session is kept here and found again; one Redis had is unknown (initialize
            // again); ending one ends it here.
            sessions.insert("new", record.clone()).await.unwrap();
            assert_eq!(sessions.get("new").await.unwrap(), Some(record.clone()));
            assert_eq!(sessions.local().len(), 1);
            assert_eq!(sessions.get("from-before").await.unwrap(), None, "{mode:?}");
            assert_eq!(sessions.remove("new").await.unwrap(), Some(record.clone()));
            assert_eq!(sessions.get("new").await.unwrap(), None);
        }
    }
}
