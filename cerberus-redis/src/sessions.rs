//! Gateway sessions in Redis: a session opened through one instance continues through any other.

use std::time::Duration;

use async_trait::async_trait;
use cerberus_core::Cause;
use cerberus_core::session::{SessionRecord, SessionStore, SessionStoreError};
use redis::AsyncCommands;
use redis::aio::ConnectionManager;

/// A [`SessionStore`] shared by every instance. A session expires after `idle` without use; each use
/// starts the idle time again.
#[derive(Debug, Clone)]
pub struct RedisSessionStore {
    connection: ConnectionManager,
    prefix: String,
    idle: Duration,
}

fn unavailable(e: impl std::error::Error + Send + Sync + 'static) -> SessionStoreError {
    SessionStoreError(Cause::new(e))
}

impl RedisSessionStore {
    /// Sessions under `prefix` (`cerberus:`), forgotten after `idle` unused.
    pub fn new(connection: ConnectionManager, prefix: &str, idle: Duration) -> Self {
        Self {
            connection,
            prefix: format!("{prefix}session:"),
            idle,
        }
    }

    fn key(&self, id: &str) -> String {
        format!("{}{id}", self.prefix)
    }

    fn idle_secs(&self) -> u64 {
        self.idle.as_secs().max(1)
    }

    fn decode(text: Option<String>) -> Result<Option<SessionRecord>, SessionStoreError> {
        text.map(|text| {
            serde_json::from_str(&text).map_err(|e| {
                SessionStoreError(Cause::message(format!(
                    "a stored session is unreadable: {e}"
                )))
            })
        })
        .transpose()
    }
}

#[async_trait]
impl SessionStore for RedisSessionStore {
    async fn insert(&self, id: &str, record: SessionRecord) -> Result<(), SessionStoreError> {
        let text = serde_json::to_string(&record).map_err(unavailable)?;
        let mut connection = self.connection.clone();
        connection
            .set_ex::<_, _, ()>(self.key(id), text, self.idle_secs())
            .await
            .map_err(unavailable)
    }

    async fn get(&self, id: &str) -> Result<Option<SessionRecord>, SessionStoreError> {
        let mut connection = self.connection.clone();
        let text: Option<String> = connection
            .get_ex(self.key(id), redis::Expiry::EX(self.idle_secs()))
            .await
            .map_err(unavailable)?;
        Self::decode(text)
    }

    async fn remove(&self, id: &str) -> Result<Option<SessionRecord>, SessionStoreError> {
        let mut connection = self.connection.clone();
        let text: Option<String> = connection
            .get_del(self.key(id))
            .await
            .map_err(unavailable)?;
        Self::decode(text)
    }
}
