//! Policies attached to an organisation, a workspace or an agent access; one per target.

use async_trait::async_trait;
use cerberus_core::OrganisationId;
use cerberus_core::store::{Page, PolicyId, PolicyStore, PolicyTarget, StoreError, StoredPolicy};
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
