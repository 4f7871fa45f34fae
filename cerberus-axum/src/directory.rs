//! Who holds which key: the agents of the configuration file, and, with a control-plane database, the
//! agents stored there, looked up through a short-lived cache so that no MCP message waits on the
//! database once its key is known.
//!
//! A cached answer (a route, or "no such key") is trusted for `database.cache_ttl_ms` (half a second by
//! default); [`AgentDirectory::invalidate`] drops every cached answer at once, which the admin API does
//! after each change it makes, so a revoked key or a changed policy applies on this instance at once and
//! on the others within the time-to-live.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use cerberus_core::store::{ControlStore, ResolvedAgent, StoreError};
use cerberus_core::{
    AgentId, EffectivePolicy, GuardrailRegistry, PolicyDocument, PolicyError, PolicyLevel,
    WorkspaceId,
};
use subtle::ConstantTimeEq;

use crate::auth::{KeyHash, KeyIndex};
use crate::gateway::AgentRoute;
use crate::upstream::{InvalidUpstream, Upstream};

/// The most answers cached at once; past it the cache starts afresh (a flood of wrong keys must not
/// grow memory without bound).
const MAX_CACHED: usize = 100_000;

/// The key lookup could not be made: the proxy refuses the call (fails closed).
#[derive(Debug, thiserror::Error)]
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
    stored: Option<StoredAgents>,
}

/// Agents in the control-plane database.
struct StoredAgents {
    store: Arc<dyn ControlStore>,
    registry: Arc<GuardrailRegistry>,
    base: PathBuf,
    ttl: Duration,
    cache: Mutex<HashMap<KeyHash, Cached>>,
}

/// A looked-up answer and when it was fetched: the route, or `None` for a key that opens nothing.
type Cached = (Instant, Option<Arc<AgentRoute>>);

impl std::fmt::Debug for StoredAgents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredAgents")
            .field("store", &self.store)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl AgentDirectory {
    /// The agents of the configuration file only.
    pub fn configured(configured: KeyIndex<Arc<AgentRoute>>) -> Self {
        Self {
            configured,
            stored: None,
        }
    }

    /// Adds the agents of a control-plane database, built with `registry`; relative stdio commands
    /// are relative to `base`.
    pub fn with_store(
        mut self,
        store: Arc<dyn ControlStore>,
        registry: Arc<GuardrailRegistry>,
        base: PathBuf,
        ttl: Duration,
    ) -> Self {
        self.stored = Some(StoredAgents {
            store,
            registry,
            base,
            ttl,
            cache: Mutex::new(HashMap::new()),
        });
        self
    }

    /// The route `key` opens, if any.
    pub async fn find(&self, key: &str) -> Result<Option<Arc<AgentRoute>>, DirectoryError> {
        if let Some(route) = self.configured.find(key) {
            return Ok(Some(Arc::clone(route)));
        }
        match &self.stored {
            Some(stored) => stored.find(KeyHash::of(key)).await,
            None => Ok(None),
        }
    }

    /// Forgets every cached answer: the next call of each key asks the database again.
    pub fn invalidate(&self) {
        if let Some(stored) = &self.stored
            && let Ok(mut cache) = stored.cache.lock()
        {
            cache.clear();
        }
    }
}

impl StoredAgents {
    async fn find(&self, hash: KeyHash) -> Result<Option<Arc<AgentRoute>>, DirectoryError> {
        if let Ok(cache) = self.cache.lock()
            && let Some((fetched, route)) = cache.get(&hash)
            && fetched.elapsed() < self.ttl
        {
            return Ok(route.clone());
        }
        let resolved = self
            .store
            .resolve_key(hash.0, SystemTime::now())
            .await
            .map_err(DirectoryError::Store)?;
        let route = match resolved {
            // The database matched the hash; compare it again in constant time before trusting it.
            Some((agent, matched)) if bool::from(matched.ct_eq(&hash.0)) => {
                Some(Arc::new(self.route(agent)?))
            }
            _ => None,
        };
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() >= MAX_CACHED {
                cache.clear();
            }
            cache.insert(hash, (Instant::now(), route.clone()));
        }
        Ok(route)
    }

    /// The route of a stored agent: its upstream and its pipeline, built from its three policies.
    fn route(&self, resolved: ResolvedAgent) -> Result<AgentRoute, DirectoryError> {
        let ResolvedAgent {
            agent,
            workspace,
            policies,
        } = resolved;
        let policy_error = |source| DirectoryError::Policy {
            agent: agent.id,
            source,
        };
        let parse = |document: Option<serde_json::Value>| {
            document
                .map(PolicyDocument::from_value)
                .transpose()
                .map_err(policy_error)
        };
        let levels = [
            (PolicyLevel::Organisation, parse(policies.organisation)?),
            (PolicyLevel::Workspace, parse(policies.workspace)?),
            (PolicyLevel::Agent, parse(policies.agent)?),
        ];
        let policy = EffectivePolicy::merge(
            levels
                .iter()
                .filter_map(|(level, document)| Some((*level, document.as_ref()?))),
        );
        let pipeline = self.registry.build(&policy).map_err(policy_error)?;
        let upstream =
            Upstream::from_definition(&workspace.upstream, &self.base).map_err(|source| {
                DirectoryError::Upstream {
                    workspace: workspace.id,
                    source,
                }
            })?;
        Ok(AgentRoute {
            identity: agent.identity(),
            name: agent.name,
            upstream,
            pipeline,
        })
    }
}
