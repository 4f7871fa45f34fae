//! Organisations, created together with their first owner.

use async_trait::async_trait;
use cerberus_core::{Cause, OrganisationId};
use std::collections::BTreeMap;

use cerberus_core::store::{
    Organisation, OrganisationStore, PolicyTarget, Role, StoreError, User, UserId,
};
use uuid::Uuid;

use crate::SqlStore;
use crate::rows::{self, ORGANISATION_COLUMNS, conflict, now, storable, store_error, time};

#[async_trait]
impl OrganisationStore for SqlStore {
    async fn create_organisation(
        &self,
        name: &str,
        owner_email: &str,
        owner_password_hash: &str,
    ) -> Result<(Organisation, User), StoreError> {
        let now = now();
        let organisation = Organisation {
            id: OrganisationId(Uuid::new_v4()),
            name: name.to_owned(),
            labels: Default::default(),
            created_at: time(now),
            updated_at: time(now),
        };
        let owner = User {
            id: UserId(Uuid::new_v4()),
            organisation: organisation.id,
            email: owner_email.to_owned(),
            role: Role::Owner,
            created_at: time(now),
            updated_at: time(now),
        };
        let mut transaction = self.pool.begin().await.map_err(store_error)?;
        sqlx::query(
            "INSERT INTO organisations (id, name, created_at, updated_at) VALUES ($1, $2, $3, $3)",
        )
        .bind(organisation.id.to_string())
        .bind(name)
        .bind(now)
        .execute(&mut *transaction)
        .await
        .map_err(conflict("an organisation with that name"))?;
        sqlx::query(
            "INSERT INTO users (id, organisation_id, email, role, password_hash, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $6)",
        )
        .bind(owner.id.to_string())
        .bind(organisation.id.to_string())
        .bind(owner_email)
        .bind(Role::Owner.as_str())
        .bind(owner_password_hash)
        .bind(now)
        .execute(&mut *transaction)
        .await
        .map_err(conflict("a user with that email"))?;
        transaction.commit().await.map_err(store_error)?;
        Ok((organisation, owner))
    }

    async fn organisation(&self, id: OrganisationId) -> Result<Option<Organisation>, StoreError> {
        sqlx::query(&format!(
            "SELECT {ORGANISATION_COLUMNS} FROM organisations WHERE id = $1 AND deleted_at IS NULL"
        ))
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await
        .map_err(store_error)?
        .as_ref()
        .map(rows::organisation)
        .transpose()
    }

    async fn rename_organisation(
        &self,
        id: OrganisationId,
        name: &str,
    ) -> Result<Option<Organisation>, StoreError> {
        sqlx::query(&format!(
            "UPDATE organisations SET name = $2, updated_at = $3 \
             WHERE id = $1 AND deleted_at IS NULL RETURNING {ORGANISATION_COLUMNS}"
        ))
        .bind(id.to_string())
        .bind(name)
        .bind(now())
        .fetch_optional(&self.pool)
        .await
        .map_err(conflict("an organisation with that name"))?
        .as_ref()
        .map(rows::organisation)
        .transpose()
    }

    async fn set_labels(
        &self,
        organisation: OrganisationId,
        target: PolicyTarget,
        labels: &BTreeMap<String, String>,
    ) -> Result<bool, StoreError> {
        let text =
            serde_json::to_string(labels).map_err(|e| StoreError::Rejected(Cause::new(e)))?;
        let text = storable(&text).into_owned();
        let id = target.uuid().to_string();
        // The organisation scopes every target: another tenant's id matches no row.
        let query = match target {
            PolicyTarget::Organisation(_) => sqlx::query(
                "UPDATE organisations SET labels = $1, updated_at = $2 \
                 WHERE id = $3 AND id = $4 AND deleted_at IS NULL",
            )
            .bind(text)
            .bind(now()),
            PolicyTarget::Workspace(_) => sqlx::query(
                "UPDATE workspaces SET labels = $1, updated_at = $2 \
                 WHERE id = $3 AND organisation_id = $4 AND deleted_at IS NULL",
            )
            .bind(text)
            .bind(now()),
            // An agent access has no time of change of its own: its key's rotation is its change.
            PolicyTarget::Agent(_) => sqlx::query(
                "UPDATE agent_accesses SET labels = $1 \
                 WHERE id = $2 AND organisation_id = $3 AND deleted_at IS NULL",
            )
            .bind(text),
        };
        let done = query
            .bind(id)
            .bind(organisation.to_string())
            .execute(&self.pool)
            .await
            .map_err(store_error)?;
        Ok(done.rows_affected() > 0)
    }

    async fn delete_organisation(&self, id: OrganisationId) -> Result<bool, StoreError> {
        // Everything the organisation owns goes with it, so that its names and emails are free again.
        let now = now();
        let mut transaction = self.pool.begin().await.map_err(store_error)?;
        let done = sqlx::query(
            "UPDATE organisations SET deleted_at = $2 WHERE id = $1 AND deleted_at IS NULL",
        )
        .bind(id.to_string())
        .bind(now)
        .execute(&mut *transaction)
        .await
        .map_err(store_error)?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        for table in ["users", "workspaces", "agent_accesses", "policies"] {
            sqlx::query(&format!(
                "UPDATE {table} SET deleted_at = $2 WHERE organisation_id = $1 AND deleted_at IS NULL"
            ))
            .bind(id.to_string())
            .bind(now)
            .execute(&mut *transaction)
            .await
            .map_err(store_error)?;
        }
        sqlx::query(
            "UPDATE refresh_tokens SET revoked_at = $2 WHERE revoked_at IS NULL \
             AND user_id IN (SELECT id FROM users WHERE organisation_id = $1)",
        )
        .bind(id.to_string())
        .bind(now)
        .execute(&mut *transaction)
        .await
        .map_err(store_error)?;
        transaction.commit().await.map_err(store_error)?;
        Ok(true)
    }
}
