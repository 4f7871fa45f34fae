//! Policies attached to an organisation, a workspace or an agent access; one per target.

use async_trait::async_trait;
use cerberus_core::store::{
    Page, PolicyId, PolicyStore, PolicyTarget, ResolvedPolicies, StoreError, StoredPolicy,
};
use cerberus_core::{AgentId, OrganisationId, WorkspaceId};
use uuid::Uuid;

use crate::SqlStore;
use crate::rows::{self, POLICY_COLUMNS, conflict, now, store_error};
use crate::scoped::POLICIES;

/// The live row a target names within an organisation.
fn target_exists(target: PolicyTarget) -> &'static str {
    match target {
        PolicyTarget::Organisation(_) => {
            "SELECT 1 FROM organisations WHERE id = $3 AND id = $2 AND deleted_at IS NULL"
        }
        PolicyTarget::Workspace(_) => {
            "SELECT 1 FROM workspaces WHERE id = $3 AND organisation_id = $2 AND deleted_at IS NULL"
        }
        PolicyTarget::Agent(_) => {
            "SELECT 1 FROM agent_accesses WHERE id = $3 AND organisation_id = $2 AND deleted_at IS NULL"
        }
    }
}

impl SqlStore {
    /// The policy documents of an organisation, one of its workspaces and, when given, one of the
    /// workspace's agents: what applies to a caller there.
    pub(crate) async fn resolved_policies(
        &self,
        organisation: OrganisationId,
        workspace: WorkspaceId,
        agent: Option<AgentId>,
    ) -> Result<ResolvedPolicies, StoreError> {
        let mut policies = ResolvedPolicies::default();
        let documents = sqlx::query(
            "SELECT level, document FROM policies WHERE organisation_id = $1 AND deleted_at IS NULL \
             AND ((level = 'organisation' AND target_id = $1) OR (level = 'workspace' AND target_id = $2) \
             OR (level = 'agent' AND target_id = $3))",
        )
        .bind(organisation.to_string())
        .bind(workspace.to_string())
        .bind(agent.map(|agent| agent.to_string()))
        .fetch_all(&self.pool)
        .await
        .map_err(store_error)?;
        for row in documents {
            let document = Some(rows::json(&row, "document")?);
            match rows::text(&row, "level")?.as_str() {
                "organisation" => policies.organisation = document,
                "workspace" => policies.workspace = document,
                "agent" => policies.agent = document,
                other => return Err(rows::corrupt("level", other)),
            }
        }
        Ok(policies)
    }
}

fn document_text(document: &serde_json::Value) -> String {
    document.to_string()
}

#[async_trait]
impl PolicyStore for SqlStore {
    async fn create_policy(
        &self,
        organisation: OrganisationId,
        target: PolicyTarget,
        document: &serde_json::Value,
    ) -> Result<Option<StoredPolicy>, StoreError> {
        let id = PolicyId(Uuid::new_v4());
        let done = sqlx::query(&format!(
            "INSERT INTO policies (id, organisation_id, level, target_id, document, created_at, updated_at) \
             SELECT $1, $2, $4, $3, $5, $6, $6 WHERE EXISTS ({})",
            target_exists(target)
        ))
        .bind(id.0.to_string())
        .bind(organisation.to_string())
        .bind(target.uuid().to_string())
        .bind(target.level())
        .bind(document_text(document))
        .bind(now())
        .execute(&self.pool)
        .await
        .map_err(conflict("a policy for that target"))?;
        if done.rows_affected() == 0 {
            return Ok(None);
        }
        self.policy(organisation, id).await
    }

    async fn policies(
        &self,
        organisation: OrganisationId,
        page: Page,
    ) -> Result<Vec<StoredPolicy>, StoreError> {
        POLICIES.list(&self.pool, organisation, None, page).await
    }

    async fn policy(
        &self,
        organisation: OrganisationId,
        id: PolicyId,
    ) -> Result<Option<StoredPolicy>, StoreError> {
        POLICIES.find(&self.pool, organisation, id.0).await
    }

    async fn policy_for(
        &self,
        organisation: OrganisationId,
        target: PolicyTarget,
    ) -> Result<Option<StoredPolicy>, StoreError> {
        sqlx::query(&format!(
            "SELECT {POLICY_COLUMNS} FROM policies \
             WHERE level = $1 AND target_id = $2 AND organisation_id = $3 AND deleted_at IS NULL"
        ))
        .bind(target.level())
        .bind(target.uuid().to_string())
        .bind(organisation.to_string())
        .fetch_optional(&self.pool)
        .await
        .map_err(store_error)?
        .as_ref()
        .map(rows::policy)
        .transpose()
    }

    async fn update_policy(
        &self,
        organisation: OrganisationId,
        id: PolicyId,
        document: &serde_json::Value,
    ) -> Result<Option<StoredPolicy>, StoreError> {
        sqlx::query(&format!(
            "UPDATE policies SET document = $3, updated_at = $4 \
             WHERE id = $1 AND organisation_id = $2 AND deleted_at IS NULL RETURNING {POLICY_COLUMNS}"
        ))
        .bind(id.0.to_string())
        .bind(organisation.to_string())
        .bind(document_text(document))
        .bind(now())
        .fetch_optional(&self.pool)
        .await
        .map_err(store_error)?
        .as_ref()
        .map(rows::policy)
        .transpose()
    }

    async fn delete_policy(
        &self,
        organisation: OrganisationId,
        id: PolicyId,
    ) -> Result<bool, StoreError> {
        POLICIES
            .soft_delete(&self.pool, organisation, id.0, now())
            .await
    }
}
