//! MCP server workspaces, by organisation.

use async_trait::async_trait;
use cerberus_core::store::{
    NewWorkspace, Page, StoreError, Workspace, WorkspaceChanges, WorkspaceStore,
};
use cerberus_core::{Cause, OrganisationId, WorkspaceId};
use uuid::Uuid;

use crate::SqlStore;
use crate::rows::{self, WORKSPACE_COLUMNS, conflict, now, store_error, time};
use crate::scoped::WORKSPACES;

const NAME_TAKEN: &str = "a workspace with that name";

fn upstream_text(
    upstream: &cerberus_core::store::UpstreamDefinition,
) -> Result<String, StoreError> {
    serde_json::to_string(upstream).map_err(|e| StoreError::Unavailable(Cause::new(e)))
}

#[async_trait]
impl WorkspaceStore for SqlStore {
    async fn create_workspace(
        &self,
        organisation: OrganisationId,
        workspace: NewWorkspace,
    ) -> Result<Workspace, StoreError> {
        let now = now();
        let created = Workspace {
            id: WorkspaceId(Uuid::new_v4()),
            organisation,
            name: workspace.name,
            labels: Default::default(),
            environment: workspace.environment,
            upstream: workspace.upstream,
            created_at: time(now),
            updated_at: time(now),
        };
        sqlx::query(
            "INSERT INTO workspaces (id, organisation_id, name, environment, upstream, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $6)",
        )
        .bind(created.id.to_string())
        .bind(organisation.to_string())
        .bind(&created.name)
        .bind(created.environment.as_str())
        .bind(upstream_text(&created.upstream)?)
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(conflict(NAME_TAKEN))?;
        Ok(created)
    }

    async fn workspaces(
        &self,
        organisation: OrganisationId,
        page: Page,
    ) -> Result<Vec<Workspace>, StoreError> {
        WORKSPACES.list(&self.pool, organisation, None, page).await
    }

    async fn workspace(
        &self,
        organisation: OrganisationId,
        id: WorkspaceId,
    ) -> Result<Option<Workspace>, StoreError> {
        WORKSPACES.find(&self.pool, organisation, id).await
    }

    async fn update_workspace(
        &self,
        organisation: OrganisationId,
        id: WorkspaceId,
        changes: WorkspaceChanges,
    ) -> Result<Option<Workspace>, StoreError> {
        let upstream = changes.upstream.as_ref().map(upstream_text).transpose()?;
        sqlx::query(&format!(
            "UPDATE workspaces SET name = COALESCE($3, name), environment = COALESCE($4, environment), \
             upstream = COALESCE($5, upstream), updated_at = $6 \
             WHERE id = $1 AND organisation_id = $2 AND deleted_at IS NULL RETURNING {WORKSPACE_COLUMNS}"
        ))
        .bind(id.to_string())
        .bind(organisation.to_string())
        .bind(changes.name)
        .bind(changes.environment.map(|e| e.as_str()))
        .bind(upstream)
        .bind(now())
        .fetch_optional(&self.pool)
        .await
        .map_err(conflict(NAME_TAKEN))?
        .as_ref()
        .map(rows::workspace)
        .transpose()
    }

    async fn delete_workspace(
        &self,
        organisation: OrganisationId,
        id: WorkspaceId,
    ) -> Result<bool, StoreError> {
        // The workspace's agent accesses and every policy attached to it or to them go with it.
        let organisation_id = organisation;
        let (id, organisation, now) = (id.to_string(), organisation.to_string(), now());
        let mut transaction = self.pool.begin().await.map_err(store_error)?;
        if !WORKSPACES
            .soft_delete(&mut *transaction, organisation_id, &id, now)
            .await?
        {
            return Ok(false);
        }
        sqlx::query(
            "UPDATE policies SET deleted_at = $3 WHERE organisation_id = $2 AND deleted_at IS NULL \
             AND ((level = 'workspace' AND target_id = $1) OR (level = 'agent' AND target_id IN \
             (SELECT id FROM agent_accesses WHERE workspace_id = $1)))",
        )
        .bind(&id)
        .bind(&organisation)
        .bind(now)
        .execute(&mut *transaction)
        .await
        .map_err(store_error)?;
        sqlx::query(
            "UPDATE agent_accesses SET deleted_at = $3 \
             WHERE workspace_id = $1 AND organisation_id = $2 AND deleted_at IS NULL",
        )
        .bind(&id)
        .bind(&organisation)
        .bind(now)
        .execute(&mut *transaction)
        .await
        .map_err(store_error)?;
        transaction.commit().await.map_err(store_error)?;
        Ok(true)
    }
}
