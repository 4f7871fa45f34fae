//! Who holds which key: the agents of the configuration file, and, with a control-plane database, the
//! agents stored there, looked up through a short-lived cache so that no MCP message waits on the
//! database once its key is known.
//!
//! A cached answer (a route, or "no such key") is trusted for `database.cache_ttl_ms` (half a second by
//! default); [`AgentDirectory::invalidate`] drops every cached answer at once, which the admin API does
//! after each change it makes, so a revoked key or a changed policy applies on this instance at once and
//! on the others within the time-to-live.
//!
//! The cache (moka's) holds at most [`MAX_CACHED`] answers and evicts them one by one, keeping the keys
//! in use: a flood of wrong keys neither empties it nor grows it. Concurrent lookups of one key make
//! one query, and a key that opens nothing is remembered as such for the time-to-live too, so the
//! flood costs the database one query per distinct key and time-to-live.

#[cfg(feature = "control-plane")]
mod stored;

#[cfg(feature = "control-plane")]
use std::path::PathBuf;
use std::sync::Arc;
#[cfg(feature = "control-plane")]
use std::time::Duration;

#[cfg(feature = "control-plane")]
use cerberus_core::GuardrailRegistry;
#[cfg(feature = "control-plane")]
use cerberus_core::store::ControlStore;
use cerberus_core::store::StoreError;
use cerberus_core::{AgentId, PolicyError, WorkspaceId};

#[cfg(feature = "control-plane")]
use crate::auth::KeyHash;
use crate::auth::KeyIndex;
use crate::gateway::AgentRoute;
use crate::upstream::InvalidUpstream;

/// The most answers cached at once.
pub const MAX_CACHED: u64 = 100_000;

/// The key lookup could not be made: the proxy refuses the call (fails closed).
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DirectoryError {
    /// The control-plane database failed.
    #[error("the agent directory is unavailable: {0}")]
    Store(#[source] StoreError),
    /// A stored policy of the agent cannot be read or built.
    #[error("the policy of agent {agent}: {source}")]
    Policy {
        /// The agent.
        agent: AgentId,
        /// What is wrong with it.
        #[source]
        source: PolicyError,
    },
    /// The agent's workspace has an upstream the gateway cannot use.
    #[error("the upstream of workspace {workspace}: {source}")]
    Upstream {
        /// The workspace.
        workspace: WorkspaceId,
        /// What is wrong with it.
        #[source]
        source: InvalidUpstream,
    },
}

/// Where keys are looked up.
#[derive(Debug)]
pub struct AgentDirectory {
    configured: KeyIndex<Arc<AgentRoute>>,
    #[cfg(feature = "control-plane")]
    stored: Option<stored::StoredAgents>,
}

impl AgentDirectory {
    /// The agents of the configuration file only.
    pub fn configured(configured: KeyIndex<Arc<AgentRoute>>) -> Self {
        Self {
            configured,
            #[cfg(feature = "control-plane")]
            stored: None,
        }
    }

    /// Adds the agents of a control-plane database, built with `registry`; relative stdio commands
    /// are relative to `base`. At most `capacity` answers are cached, each for `ttl`.
    #[cfg(feature = "control-plane")]
    pub fn with_store(
        mut self,
        store: Arc<dyn ControlStore>,
        registry: Arc<GuardrailRegistry>,
        base: PathBuf,
        ttl: Duration,
        capacity: u64,
    ) -> Self {
        self.stored = Some(stored::StoredAgents::new(
            store, registry, base, ttl, capacity,
        ));
        self
    }

    /// The route `key` opens, if any.
    pub async fn find(&self, key: &str) -> Result<Option<Arc<AgentRoute>>, DirectoryError> {
        if let Some(route) = self.configured.find(key) {
            return Ok(Some(Arc::clone(route)));
        }
        #[cfg(feature = "control-plane")]
        if let Some(stored) = &self.stored {
            return stored.find(KeyHash::of(key)).await;
        }
        Ok(None)
    }

    /// Forgets every cached answer: the next call of each key asks the database again.
    pub fn invalidate(&self) {
        #[cfg(feature = "control-plane")]
        if let Some(stored) = &self.stored {
            stored.invalidate();
        }
    }

    /// How many answers the cache holds (after its pending evictions).
    #[cfg(feature = "control-plane")]
    pub async fn cached(&self) -> u64 {
        match &self.stored {
            Some(stored) => stored.cached().await,
            None => 0,
        }
    }
}
