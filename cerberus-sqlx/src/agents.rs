//! Agent accesses, and the key lookup the proxy makes when a key is not in its cache.

use std::time::SystemTime;

use async_trait::async_trait;
use cerberus_core::store::{
    AgentAccess, AgentAccessStore, Page, ResolvedAgent, StoreError, StoredKey, WorkspaceStore,
};
use cerberus_core::{AgentId, OrganisationId, Profile, WorkspaceId};
use sqlx::Row;
use uuid::Uuid;

use crate::SqlStore;
use crate::rows::{self, AGENT_COLUMNS, conflict, hash_text, millis, now, store_error};
use crate::scoped::AGENT_ACCESSES;

const NAME_TAKEN: &str = "an agent access with that name in this workspace";

#[async_trait]
impl AgentAccessStore for SqlStore {
    async fn create_agent_access(
        &self,
        organisation: OrganisationId,
        workspace: WorkspaceId,
        name: &str,
        key: StoredKey<'_>,
        expires_at: Option<SystemTime>,
    ) -> Result<Option<AgentAccess>, StoreError> {
        let id = AgentId(Uuid::new_v4());
        let done = sqlx::query(
            "INSERT INTO agent_accesses \
             (id, organisation_id, workspace_id, name, key_prefix, key_hash, created_at, expires_at) \
             SELECT $1, $2, $3, $4, $5, $6, $7, $8 WHERE EXISTS (SELECT 1 FROM workspaces \
             WHERE id = $3 AND organisation_id = $2 AND deleted_at IS NULL)",
        )
        .bind(id.to_string())
        .bind(organisation.to_string())
        .bind(workspace.to_string())
        .bind(name)
        .bind(key.prefix)
        .bind(hash_text(key.hash))
        .bind(now())
        .bind(expires_at.map(millis))
        .execute(&self.pool)
        .await
        .map_err(conflict(NAME_TAKEN))?;
        if done.rows_affected() == 0 {
            return Ok(None);
        }
        self.agent_access(organisation, id).await
    }

    async fn agent_accesses(
        &self,
        organisation: OrganisationId,
        workspace: WorkspaceId,
        page: Page,
    ) -> Result<Vec<AgentAccess>, StoreError> {
        let within = Some(("workspace_id", workspace.to_string()));
        AGENT_ACCESSES
            .list(&self.pool, organisation, within, page)
            .await
    }

    async fn agent_access(
        &self,
        organisation: OrganisationId,
        id: AgentId,
    ) -> Result<Option<AgentAccess>, StoreError> {
        AGENT_ACCESSES.find(&self.pool, organisation, id).await
    }

    async fn rotate_key(
        &self,
        organisation: OrganisationId,
        id: AgentId,
        key: StoredKey<'_>,
        previous_valid_until: Option<SystemTime>,
    ) -> Result<Option<AgentAccess>, StoreError> {
        let grace = previous_valid_until.map(millis);
        sqlx::query(&format!(
            "UPDATE agent_accesses SET \
             previous_key_hash = CASE WHEN $5 IS NULL THEN NULL ELSE key_hash END, \
             previous_key_valid_until = $5, key_hash = $3, key_prefix = $4, rotated_at = $6 \
             WHERE id = $1 AND organisation_id = $2 AND deleted_at IS NULL AND revoked_at IS NULL \
             RETURNING {AGENT_COLUMNS}"
        ))
        .bind(id.to_string())
        .bind(organisation.to_string())
        .bind(hash_text(key.hash))
        .bind(key.prefix)
        .bind(grace)
        .bind(now())
        .fetch_optional(&self.pool)
        .await
        .map_err(store_error)?
        .as_ref()
        .map(rows::agent_access)
        .transpose()
    }

    async fn revoke_agent_access(
        &self,
        organisation: OrganisationId,
        id: AgentId,
    ) -> Result<Option<AgentAccess>, StoreError> {
        sqlx::query(&format!(
            "UPDATE agent_accesses SET revoked_at = COALESCE(revoked_at, $3) \
             WHERE id = $1 AND organisation_id = $2 AND deleted_at IS NULL RETURNING {AGENT_COLUMNS}"
        ))
        .bind(id.to_string())
        .bind(organisation.to_string())
        .bind(now())
        .fetch_optional(&self.pool)
        .await
        .map_err(store_error)?
        .as_ref()
        .map(rows::agent_access)
        .transpose()
    }

    async fn delete_agent_access(
        &self,
        organisation: OrganisationId,
        id: AgentId,
    ) -> Result<bool, StoreError> {
        let now = now();
        let mut transaction = self.pool.begin().await.map_err(store_error)?;
        let deleted = AGENT_ACCESSES
            .soft_delete(&mut *transaction, organisation, id, now)
            .await?;
        let (id, organisation) = (id.to_string(), organisation.to_string());
        sqlx::query(
            "UPDATE policies SET deleted_at = $3 WHERE level = 'agent' AND target_id = $1 \
             AND organisation_id = $2 AND deleted_at IS NULL",
        )
        .bind(&id)
        .bind(&organisation)
        .bind(now)
        .execute(&mut *transaction)
        .await
        .map_err(store_error)?;
        transaction.commit().await.map_err(store_error)?;
        Ok(deleted)
    }

    async fn resolve_key(
        &self,
        key_hash: [u8; 32],
        now: SystemTime,
    ) -> Result<Option<(ResolvedAgent, [u8; 32])>, StoreError> {
        let columns = AGENT_COLUMNS
            .split(", ")
            .map(|c| format!("a.{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        let row = sqlx::query(&format!(
            "SELECT {columns}, a.key_hash, a.previous_key_hash, \
             o.name AS organisation_name, o.labels AS organisation_labels FROM agent_accesses a \
             JOIN workspaces w ON w.id = a.workspace_id \
             JOIN organisations o ON o.id = a.organisation_id \
             WHERE (a.key_hash = $1 OR (a.previous_key_hash = $1 AND a.previous_key_valid_until > $2)) \
             AND a.deleted_at IS NULL AND a.revoked_at IS NULL \
             AND (a.expires_at IS NULL OR a.expires_at > $2) \
             AND w.deleted_at IS NULL AND o.deleted_at IS NULL"
        ))
        .bind(hash_text(key_hash))
        .bind(millis(now))
        .fetch_optional(&self.pool)
        .await
        .map_err(store_error)?;
        let Some(row) = row else { return Ok(None) };
        let agent = rows::agent_access(&row)?;
        let organisation = Profile {
            name: row.try_get("organisation_name").map_err(store_error)?,
            labels: rows::json(&row, "organisation_labels")?,
            ..Default::default()
        };
        let current = rows::hash(&row, "key_hash")?;
        let matched = if current == key_hash {
            current
        } else {
            rows::hash(&row, "previous_key_hash")?
        };
        let Some(workspace) = self.workspace(agent.organisation, agent.workspace).await? else {
            return Ok(None);
        };
        let policies = self
            .resolved_policies(agent.organisation, agent.workspace, Some(agent.id))
            .await?;
        Ok(Some((
            ResolvedAgent {
                agent,
                workspace,
                organisation,
                policies,
            },
            matched,
        )))
    }
}
