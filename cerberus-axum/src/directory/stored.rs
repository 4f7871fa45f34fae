//! Agents in the control-plane database, behind a bounded cache.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use cerberus_core::store::{ControlStore, ResolvedAgent};
use cerberus_core::{
    CallerProfile, EffectivePolicy, GuardrailRegistry, PolicyDocument, PolicyLevel, Profile,
};
use subtle::ConstantTimeEq;

use super::DirectoryError;
use crate::auth::KeyHash;
use crate::gateway::AgentRoute;
use crate::upstream::Upstream;

/// Agents in the control-plane database.
pub(super) struct StoredAgents {
    store: Arc<dyn ControlStore>,
    registry: Arc<GuardrailRegistry>,
    base: PathBuf,
    ttl: Duration,
    /// The route each key opens, or `None` for a key that opens nothing.
    cache: moka::future::Cache<KeyHash, Option<Arc<AgentRoute>>>,
}

impl std::fmt::Debug for StoredAgents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredAgents")
            .field("store", &self.store)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl StoredAgents {
    pub(super) fn new(
        store: Arc<dyn ControlStore>,
        registry: Arc<GuardrailRegistry>,
        base: PathBuf,
        ttl: Duration,
        capacity: u64,
    ) -> Self {
        Self {
            store,
            registry,
            base,
            ttl,
            cache: moka::future::Cache::builder()
                .max_capacity(capacity)
                .time_to_live(ttl)
                .build(),
        }
    }

    /// Forgets every cached answer.
    pub(super) fn invalidate(&self) {
        self.cache.invalidate_all();
    }

    /// How many answers are cached, once pending evictions have run.
    pub(super) async fn cached(&self) -> u64 {
        self.cache.run_pending_tasks().await;
        self.cache.entry_count()
    }

    pub(super) async fn find(
        &self,
        hash: KeyHash,
    ) -> Result<Option<Arc<AgentRoute>>, DirectoryError> {
        self.cache
            .try_get_with(hash, self.resolve(hash))
            .await
            .map_err(|e| (*e).clone())
    }

    /// The route `hash` opens, asked of the database.
    async fn resolve(&self, hash: KeyHash) -> Result<Option<Arc<AgentRoute>>, DirectoryError> {
        let resolved = self
            .store
            .resolve_key(hash.0, SystemTime::now())
            .await
            .map_err(DirectoryError::Store)?;
        Ok(match resolved {
            // The database matched the hash; compare it again in constant time before trusting it.
            Some((agent, matched)) if bool::from(matched.ct_eq(&hash.0)) => {
                Some(Arc::new(self.route(agent)?))
            }
            _ => None,
        })
    }

    /// The route of a stored agent: its upstream and its pipeline, built from its three policies.
    fn route(&self, resolved: ResolvedAgent) -> Result<AgentRoute, DirectoryError> {
        let ResolvedAgent {
            agent,
            workspace,
            organisation,
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
        let profile = CallerProfile {
            organisation,
            workspace: Profile {
                name: workspace.name,
                labels: workspace.labels,
                ..Default::default()
            },
            agent: Profile {
                name: agent.name.clone(),
                labels: agent.labels.clone(),
                ..Default::default()
            },
        };
        Ok(AgentRoute::new(agent.identity(), agent.name, upstream, pipeline).with_profile(profile))
    }
}

#[cfg(test)]
mod tests {
    use cerberus_core::store::{
        AgentAccessStore, Environment, NewWorkspace, OrganisationStore, StoredKey,
        UpstreamDefinition, WorkspaceStore,
    };

    use super::*;
    use crate::directory::AgentDirectory;

    #[tokio::test]
    async fn a_flood_of_wrong_keys_keeps_the_keys_in_use_and_the_cache_bounded() {
        let store = Arc::new(
            cerberus_sqlx::SqlStore::connect("sqlite::memory:")
                .await
                .unwrap(),
        );
        store.migrate().await.unwrap();
        let (organisation, _) = store
            .create_organisation("acme", "owner@acme.example", "$argon2id$unused")
            .await
            .unwrap();
        let workspace = store
            .create_workspace(
                organisation.id,
                NewWorkspace {
                    name: "crm".into(),
                    environment: Environment::Production,
                    upstream: UpstreamDefinition::Http {
                        url: "http://127.0.0.1:1/mcp".into(),
                        headers: Default::default(),
                    },
                },
            )
            .await
            .unwrap();
        let key = crate::auth::generate_key();
        let agent = store
            .create_agent_access(
                organisation.id,
                workspace.id,
                "bot",
                StoredKey {
                    hash: key.hash.0,
                    prefix: &key.prefix,
                },
                None,
            )
            .await
            .unwrap()
            .unwrap();
        let directory = AgentDirectory::configured(Default::default()).with_store(
            Arc::clone(&store) as Arc<dyn ControlStore>,
            Arc::new(GuardrailRegistry::default()),
            PathBuf::from("."),
            Duration::from_secs(3600),
            50,
        );
        for _ in 0..20 {
            assert!(directory.find(&key.secret).await.unwrap().is_some());
        }
        // Revoked in the database, the key still opens its cached route until the cache lets go of
        // it: what follows shows whether a flood of wrong keys, with the key in use among them as a
        // working agent's calls are, made it.
        store
            .revoke_agent_access(organisation.id, agent.id)
            .await
            .unwrap();
        for n in 0..2000 {
            let wrong = format!("cbk_wrong_key_{n}");
            assert!(directory.find(&wrong).await.unwrap().is_none());
            if n % 10 == 0 {
                assert!(
                    directory.find(&key.secret).await.unwrap().is_some(),
                    "the key in use was evicted after {n} wrong keys"
                );
            }
        }
        assert!(directory.cached().await <= 50, "the cache is bounded");
        // An admin change drops every answer: the revocation applies at once.
        directory.invalidate();
        assert!(directory.find(&key.secret).await.unwrap().is_none());
    }
}
