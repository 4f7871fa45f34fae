//! Gateway sessions: what a session id issued by the gateway stands for.
//!
//! The gateway never shows a client the upstream server's session id. It issues its own and keeps the
//! mapping in a [`SessionStore`]: in memory for one instance, in a shared store when several instances
//! serve the same sessions.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::identity::{AgentId, Identity};

/// What a gateway session id stands for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// The agent that opened the session; no other agent may use it.
    pub identity: Identity,
    /// The upstream server's own session id, if it issued one.
    pub upstream_session: Option<String>,
    /// The protocol version negotiated at initialisation.
    pub protocol_version: Option<String>,
    /// The gateway instance that runs the session's upstream process (stdio upstreams), which only it
    /// can serve; `None` when any instance can (HTTP upstreams).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub served_by: Option<String>,
    /// Whether the client declared at `initialize` that it can be asked (the `elicitation`
    /// capability).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub client_elicits: bool,
}

/// A session store could not be reached.
#[derive(Clone, Debug, thiserror::Error)]
#[error("session store unavailable: {0}")]
pub struct SessionStoreError(#[source] pub crate::Cause);

/// Where gateway sessions live.
#[async_trait]
pub trait SessionStore: Send + Sync + fmt::Debug {
    /// Records a new session.
    async fn insert(&self, id: &str, record: SessionRecord) -> Result<(), SessionStoreError>;
    /// The session `id`, if it exists.
    async fn get(&self, id: &str) -> Result<Option<SessionRecord>, SessionStoreError>;
    /// Ends the session `id`, returning what it was.
    async fn remove(&self, id: &str) -> Result<Option<SessionRecord>, SessionStoreError>;
}

/// How many sessions a [`MemorySessionStore`] keeps, and for how long.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionLimits {
    /// The most sessions open at once; past it, new sessions are refused until idle ones expire.
    pub max_sessions: usize,
    /// The most sessions one agent has open at once; its session idle longest makes room for a new
    /// one (clients such as the Inspector or mcp-remote never end theirs).
    pub max_per_agent: usize,
    /// How long a session may go unused before it ends.
    pub idle: Duration,
}

impl Default for SessionLimits {
    /// 100,000 sessions, 1,000 per agent, an hour without use.
    fn default() -> Self {
        Self {
            max_sessions: 100_000,
            max_per_agent: 1_000,
            idle: Duration::from_secs(3600),
        }
    }
}

/// A kept session and when it was last used.
#[derive(Debug)]
struct Kept {
    record: SessionRecord,
    used: Instant,
}

#[derive(Debug, Default)]
struct Sessions {
    by_id: HashMap<String, Kept>,
    /// The ids of each agent's sessions.
    by_agent: HashMap<AgentId, HashSet<String>>,
}

impl Sessions {
    fn remove(&mut self, id: &str) -> Option<SessionRecord> {
        let kept = self.by_id.remove(id)?;
        let agent = kept.record.identity.agent;
        if let Some(ids) = self.by_agent.get_mut(&agent) {
            ids.remove(id);
            if ids.is_empty() {
                self.by_agent.remove(&agent);
            }
        }
        Some(kept.record)
    }

    /// Ends every session unused for `idle` or longer.
    fn expire(&mut self, idle: Duration, now: Instant) {
        let expired: Vec<String> = self
            .by_id
            .iter()
            .filter(|(_, kept)| now.duration_since(kept.used) >= idle)
            .map(|(id, _)| id.clone())
            .collect();
        for id in expired {
            self.remove(&id);
        }
    }
}

/// Sessions in this process's memory, within [`SessionLimits`].
#[derive(Debug, Default)]
pub struct MemorySessionStore {
    sessions: Mutex<Sessions>,
    limits: SessionLimits,
}

impl MemorySessionStore {
    /// An empty store with the default limits.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty store within `limits`.
    pub fn with_limits(limits: SessionLimits) -> Self {
        Self {
            sessions: Mutex::default(),
            limits,
        }
    }

    /// The number of open sessions.
    pub fn len(&self) -> usize {
        self.sessions.lock().map_or(0, |s| s.by_id.len())
    }

    /// Whether no session is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Sessions>, SessionStoreError> {
        self.sessions.lock().map_err(|_| {
            SessionStoreError(crate::Cause::message(
                "the session map was poisoned by a panic",
            ))
        })
    }
}

#[async_trait]
impl SessionStore for MemorySessionStore {
    async fn insert(&self, id: &str, record: SessionRecord) -> Result<(), SessionStoreError> {
        let now = Instant::now();
        let mut sessions = self.lock()?;
        let agent = record.identity.agent;
        // The agent's own session idle longest makes room for its new one.
        let at_cap = sessions
            .by_agent
            .get(&agent)
            .filter(|ids| ids.len() >= self.limits.max_per_agent)
            .and_then(|ids| {
                ids.iter()
                    .filter_map(|id| sessions.by_id.get(id).map(|kept| (kept.used, id)))
                    .min()
                    .map(|(_, id)| id.clone())
            });
        if let Some(oldest) = at_cap {
            sessions.remove(&oldest);
        }
        if sessions.by_id.len() >= self.limits.max_sessions {
            sessions.expire(self.limits.idle, now);
            if sessions.by_id.len() >= self.limits.max_sessions {
                return Err(SessionStoreError(crate::Cause::message(format!(
                    "{} sessions are open, the most this gateway keeps",
                    self.limits.max_sessions
                ))));
            }
        }
        if let Some(kept) = sessions
            .by_id
            .insert(id.to_owned(), Kept { record, used: now })
        {
            // An id issued twice (256 random bits: never) replaces its session.
            let old = kept.record.identity.agent;
            if let Some(ids) = sessions.by_agent.get_mut(&old) {
                ids.remove(id);
            }
        }
        sessions
            .by_agent
            .entry(agent)
            .or_default()
            .insert(id.to_owned());
        Ok(())
    }

    async fn get(&self, id: &str) -> Result<Option<SessionRecord>, SessionStoreError> {
        let now = Instant::now();
        let mut sessions = self.lock()?;
        let expired = match sessions.by_id.get_mut(id) {
            None => return Ok(None),
            Some(kept) if now.duration_since(kept.used) >= self.limits.idle => true,
            Some(kept) => {
                kept.used = now;
                return Ok(Some(kept.record.clone()));
            }
        };
        if expired {
            sessions.remove(id);
        }
        Ok(None)
    }

    async fn remove(&self, id: &str) -> Result<Option<SessionRecord>, SessionStoreError> {
        Ok(self.lock()?.remove(id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stores_and_ends_sessions() {
        let store = MemorySessionStore::new();
        let record = SessionRecord {
            identity: Identity::new_random(),
            upstream_session: Some("up-1".into()),
            protocol_version: Some("2025-11-25".into()),
            served_by: None,
            client_elicits: false,
        };
        store.insert("gw-1", record.clone()).await.unwrap();
        assert_eq!(store.get("gw-1").await.unwrap(), Some(record.clone()));
        assert_eq!(store.get("gw-2").await.unwrap(), None);
        assert_eq!(store.remove("gw-1").await.unwrap(), Some(record));
        assert!(store.is_empty());
    }

    fn record(identity: Identity) -> SessionRecord {
        SessionRecord {
            identity,
            upstream_session: None,
            protocol_version: None,
            served_by: None,
            client_elicits: false,
        }
    }

    #[tokio::test]
    async fn an_agent_at_its_cap_gives_up_its_session_idle_longest() {
        let store = MemorySessionStore::with_limits(SessionLimits {
            max_per_agent: 2,
            ..SessionLimits::default()
        });
        let (agent, other) = (Identity::new_random(), Identity::new_random());
        store.insert("a1", record(agent)).await.unwrap();
        store.insert("a2", record(agent)).await.unwrap();
        store.insert("b1", record(other)).await.unwrap();
        assert!(store.get("a1").await.unwrap().is_some(), "a1 is in use");
        store.insert("a3", record(agent)).await.unwrap();
        assert!(
            store.get("a2").await.unwrap().is_none(),
            "idle longest: gone"
        );
        for kept in ["a1", "a3", "b1"] {
            assert!(store.get(kept).await.unwrap().is_some(), "{kept}");
        }
        assert_eq!(store.len(), 3);
    }

    #[tokio::test]
    async fn the_store_is_bounded_and_idle_sessions_end() {
        let full = MemorySessionStore::with_limits(SessionLimits {
            max_sessions: 2,
            ..SessionLimits::default()
        });
        full.insert("s1", record(Identity::new_random()))
            .await
            .unwrap();
        full.insert("s2", record(Identity::new_random()))
            .await
            .unwrap();
        let refused = full.insert("s3", record(Identity::new_random())).await;
        assert!(
            refused
                .unwrap_err()
                .to_string()
                .contains("2 sessions are open")
        );
        assert_eq!(full.len(), 2);

        // With no idle time allowed, a session ends as soon as it is unused, and makes room.
        let idle = MemorySessionStore::with_limits(SessionLimits {
            max_sessions: 2,
            idle: Duration::ZERO,
            ..SessionLimits::default()
        });
        idle.insert("s1", record(Identity::new_random()))
            .await
            .unwrap();
        idle.insert("s2", record(Identity::new_random()))
            .await
            .unwrap();
        idle.insert("s3", record(Identity::new_random()))
            .await
            .unwrap();
        assert_eq!(idle.len(), 1, "the idle ones were swept to make room");
        assert!(
            idle.get("s3").await.unwrap().is_none(),
            "and s3 ends unused"
        );
        assert!(idle.is_empty());
    }
}
