//! Gateway sessions: what a session id issued by the gateway stands for.
//!
//! The gateway never shows a client the upstream server's session id. It issues its own and keeps the
//! mapping in a [`SessionStore`]: in memory for one instance, in a shared store when several instances
//! serve the same sessions.

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::identity::Identity;

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

/// Sessions in this process's memory.
#[derive(Debug, Default)]
pub struct MemorySessionStore {
    sessions: Mutex<HashMap<String, SessionRecord>>,
}

impl MemorySessionStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// The number of open sessions.
    pub fn len(&self) -> usize {
        self.sessions.lock().map_or(0, |s| s.len())
    }

    /// Whether no session is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(
        &self,
    ) -> Result<std::sync::MutexGuard<'_, HashMap<String, SessionRecord>>, SessionStoreError> {
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
        self.lock()?.insert(id.to_owned(), record);
        Ok(())
    }

    async fn get(&self, id: &str) -> Result<Option<SessionRecord>, SessionStoreError> {
        Ok(self.lock()?.get(id).cloned())
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
        };
        store.insert("gw-1", record.clone()).await.unwrap();
        assert_eq!(store.get("gw-1").await.unwrap(), Some(record.clone()));
        assert_eq!(store.get("gw-2").await.unwrap(), None);
        assert_eq!(store.remove("gw-1").await.unwrap(), Some(record));
        assert!(store.is_empty());
    }
}
