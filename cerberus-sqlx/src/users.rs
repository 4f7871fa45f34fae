//! Users of the admin API, by organisation; logging in finds them by email.

use async_trait::async_trait;
use cerberus_core::OrganisationId;
use cerberus_core::store::{Page, Role, StoreError, User, UserCredentials, UserId, UserStore};
use sqlx::Row;
use uuid::Uuid;

use crate::SqlStore;
use crate::rows::{self, USER_COLUMNS, conflict, now, store_error, time};
use crate::scoped::USERS;

#[async_trait]
impl UserStore for SqlStore {
    async fn create_user(
        &self,
        organisation: OrganisationId,
        email: &str,
        role: Role,
        password_hash: &str,
    ) -> Result<User, StoreError> {
        let now = now();
        let user = User {
            id: UserId(Uuid::new_v4()),
            organisation,
            email: email.to_owned(),
            role,
            created_at: time(now),
            updated_at: time(now),
        };
        sqlx::query(
            "INSERT INTO users (id, organisation_id, email, role, password_hash, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $6)",
        )
        .bind(user.id.to_string())
        .bind(organisation.to_string())
        .bind(email)
        .bind(role.as_str())
        .bind(password_hash)
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(conflict("a user with that email"))?;
        Ok(user)
    }

    async fn users(
        &self,
        organisation: OrganisationId,
        page: Page,
    ) -> Result<Vec<User>, StoreError> {
        USERS.list(&self.pool, organisation, None, page).await
    }

    async fn user(
        &self,
        organisation: OrganisationId,
        id: UserId,
    ) -> Result<Option<User>, StoreError> {
        USERS.find(&self.pool, organisation, id).await
    }

    async fn user_by_id(&self, id: UserId) -> Result<Option<User>, StoreError> {
        sqlx::query(
            "SELECT u.id, u.organisation_id, u.email, u.role, u.created_at, u.updated_at \
             FROM users u JOIN organisations o ON o.id = u.organisation_id \
             WHERE u.id = $1 AND u.deleted_at IS NULL AND o.deleted_at IS NULL",
        )
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await
        .map_err(store_error)?
        .as_ref()
        .map(rows::user)
        .transpose()
    }

    async fn credentials(&self, email: &str) -> Result<Option<UserCredentials>, StoreError> {
        let row = sqlx::query(
            "SELECT u.id, u.organisation_id, u.email, u.role, u.created_at, u.updated_at, u.password_hash \
             FROM users u JOIN organisations o ON o.id = u.organisation_id \
             WHERE lower(u.email) = lower($1) AND u.deleted_at IS NULL AND o.deleted_at IS NULL",
        )
        // A login may name any text; no stored email holds a NUL (they are checked on the way in).
        .bind(rows::storable(email).into_owned())
        .fetch_optional(&self.pool)
        .await
        .map_err(store_error)?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(UserCredentials {
            user: rows::user(&row)?,
            password_hash: row
                .try_get::<String, _>("password_hash")
                .map_err(store_error)?,
        }))
    }

    async fn set_role(
        &self,
        organisation: OrganisationId,
        id: UserId,
        role: Role,
    ) -> Result<Option<User>, StoreError> {
        sqlx::query(&format!(
            "UPDATE users SET role = $3, updated_at = $4 \
             WHERE id = $1 AND organisation_id = $2 AND deleted_at IS NULL RETURNING {USER_COLUMNS}"
        ))
        .bind(id.to_string())
        .bind(organisation.to_string())
        .bind(role.as_str())
        .bind(now())
        .fetch_optional(&self.pool)
        .await
        .map_err(store_error)?
        .as_ref()
        .map(rows::user)
        .transpose()
    }

    async fn delete_user(
        &self,
        organisation: OrganisationId,
        id: UserId,
    ) -> Result<bool, StoreError> {
        let now = now();
        let mut transaction = self.pool.begin().await.map_err(store_error)?;
        let deleted = USERS
            .soft_delete(&mut *transaction, organisation, id, now)
            .await?;
        // A removed user's sessions end with it.
        sqlx::query(
            "UPDATE refresh_tokens SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL",
        )
        .bind(id.to_string())
        .bind(now)
        .execute(&mut *transaction)
        .await
        .map_err(store_error)?;
        transaction.commit().await.map_err(store_error)?;
        Ok(deleted)
    }

    async fn owner_count(&self, organisation: OrganisationId) -> Result<u64, StoreError> {
        let count: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM users \
             WHERE organisation_id = $1 AND role = 'owner' AND deleted_at IS NULL",
        )
        .bind(organisation.to_string())
        .fetch_one(&self.pool)
        .await
        .map_err(store_error)?;
        Ok(u64::try_from(count).unwrap_or(0))
    }
}
