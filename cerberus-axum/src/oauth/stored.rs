//! The workspaces of the control-plane database that take access tokens: those an identity provider
//! set through the admin API reaches, looked up per workspace behind a short-lived cache, as agent
//! keys are (`crate::directory`).
//!
//! A cached answer (a protected workspace, or "takes no tokens") holds for `database.cache_ttl_ms`
//! or until the admin API changes something. An issuer's keys outlive those answers: they are kept
//! by issuer and key set URL, so that an admin change does not make every issuer's keys be fetched
//! again.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use cerberus_core::store::{ControlStore, WorkspaceTrust};
use cerberus_core::{CallerProfile, PolicyDocument, Profile, WorkspaceId};

use super::keys::{IssuerKeys, SetBy};
use super::{
    IdentityProvider, ProtectedWorkspace, Provider, Resource, ResourceServer, TokenRefusal,
};
use crate::upstream::Upstream;

/// The most workspaces' answers cached at once.
const MAX_CACHED: u64 = 100_000;
/// The most issuers whose keys are kept at once.
const MAX_ISSUERS: u64 = 10_000;

/// The store's protected workspaces.
pub(super) struct StoredResources {
    store: Arc<dyn ControlStore>,
    base: PathBuf,
    /// By workspace and the generation they were looked up in.
    resources: moka::future::Cache<(WorkspaceId, u64), Option<Arc<Resource>>>,
    /// Bumped by every admin change: a lookup that began before one and ends after it is kept
    /// under the old generation, which no request asks for again.
    generation: AtomicU64,
    keys: moka::future::Cache<(String, Option<String>), IssuerKeys>,
}

impl StoredResources {
    pub(super) fn new(store: Arc<dyn ControlStore>, base: PathBuf, ttl: Duration) -> Self {
        Self {
            store,
            base,
            generation: AtomicU64::new(0),
            resources: moka::future::Cache::builder()
                .max_capacity(MAX_CACHED)
                .time_to_live(ttl)
                .build(),
            keys: moka::future::Cache::builder()
                .max_capacity(MAX_ISSUERS)
                .time_to_idle(Duration::from_secs(24 * 3600))
                .build(),
        }
    }

    pub(super) fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.resources.invalidate_all();
    }

    /// `workspace` as a protected resource, if an identity provider of the store reaches it.
    pub(super) async fn find(
        &self,
        server: &ResourceServer,
        workspace: WorkspaceId,
    ) -> Result<Option<Arc<Resource>>, TokenRefusal> {
        let generation = self.generation.load(Ordering::Acquire);
        self.resources
            .try_get_with((workspace, generation), self.load(server, workspace))
            .await
            .map_err(|e| {
                tracing::error!(workspace = %workspace, error = %e, "cannot look up a workspace's identity providers");
                TokenRefusal::Unavailable("the gateway cannot check access tokens right now".into())
            })
    }

    async fn load(
        &self,
        server: &ResourceServer,
        workspace: WorkspaceId,
    ) -> Result<Option<Arc<Resource>>, String> {
        let Some(trust) = self
            .store
            .workspace_trust(workspace)
            .await
            .map_err(|e| cerberus_core::with_causes(&e))?
        else {
            return Ok(None);
        };
        self.resource(server, trust)
            .await
            .map(|resource| Some(Arc::new(resource)))
    }

    /// The resource of what the store says: what the admin API checked on its way in, so a
    /// failure here is a stored row that no longer reads.
    async fn resource(
        &self,
        server: &ResourceServer,
        trust: WorkspaceTrust,
    ) -> Result<Resource, String> {
        let WorkspaceTrust {
            workspace,
            organisation,
            policies,
            providers,
        } = trust;
        let policy = |document: Option<serde_json::Value>, what: &str| {
            document
                .map(PolicyDocument::from_value)
                .transpose()
                .map_err(|e| format!("the stored policy of {what}: {e}"))
        };
        let upstream = Upstream::from_definition(&workspace.upstream, &self.base)
            .map_err(|e| format!("the upstream of workspace {}: {e}", workspace.id))?;
        let protected = ProtectedWorkspace {
            organisation: workspace.organisation,
            workspace: workspace.id,
            upstream,
            profile: CallerProfile {
                organisation,
                workspace: Profile {
                    name: workspace.name,
                    labels: workspace.labels,
                    ..Default::default()
                },
                agent: Profile::default(),
            },
            organisation_policy: policy(policies.organisation, "the organisation")?,
            workspace_policy: policy(policies.workspace, "the workspace")?,
        };
        let mut built = Vec::with_capacity(providers.len());
        for (stored, members) in providers {
            let settings = IdentityProvider::from_settings(
                stored.organisation,
                &stored.settings,
                &members,
                vec![workspace.id],
            )
            .map_err(|(field, message)| {
                format!("identity provider {}: {field}: {message}", stored.id)
            })?;
            let keys = self
                .keys
                .get_with(
                    (settings.issuer.clone(), settings.jwks_uri.clone()),
                    async {
                        IssuerKeys::new(
                            settings.issuer.clone(),
                            settings.jwks_uri.clone(),
                            SetBy::Admin,
                            Arc::clone(&server.http),
                            server.key_refresh_interval,
                            server.key_max_age,
                        )
                    },
                )
                .await;
            built.push(Arc::new(Provider { settings, keys }));
        }
        Ok(Resource::new(protected, built))
    }
}
