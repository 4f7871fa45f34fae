//! Users of the admin API, by organisation; logging in finds them by email.

use async_trait::async_trait;
use cerberus_core::OrganisationId;
use cerberus_core::store::{Page, Role, StoreError, User, UserCredentials, UserId, UserStore};
use sqlx::{Any, Row, Transaction};
use uuid::Uuid;

use crate::rows::{self, USER_COLUMNS, conflict, now, store_error, time};
use crate::scoped::USERS;
use crate::{Backend, SqlStore};

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
        let mut transaction = self.owners_changing(organisation).await?;
        let changed = sqlx::query(&format!(
            "UPDATE users SET role = $3, updated_at = $4 \
             WHERE id = $1 AND organisation_id = $2 AND deleted_at IS NULL \
             AND ($3 = 'owner' OR {ANOTHER_OWNER_REMAINS}) RETURNING {USER_COLUMNS}"
        ))
        .bind(id.to_string())
        .bind(organisation.to_string())
        .bind(role.as_str())
        .bind(now())
        .fetch_optional(&mut *transaction)
        .await
        .map_err(store_error)?;
        let Some(row) = changed else {
            return match is_live(&mut transaction, organisation, id).await? {
                true => Err(StoreError::LastOwner),
                false => Ok(None),
            };
        };
        let user = rows::user(&row)?;
        transaction.commit().await.map_err(store_error)?;
        Ok(Some(user))
    }

    async fn delete_user(
        &self,
        organisation: OrganisationId,
        id: UserId,
    ) -> Result<bool, StoreError> {
        let now = now();
        let mut transaction = self.owners_changing(organisation).await?;
        let deleted = sqlx::query(&format!(
            "UPDATE users SET deleted_at = $3 \
             WHERE id = $1 AND organisation_id = $2 AND deleted_at IS NULL AND {ANOTHER_OWNER_REMAINS}"
        ))
        .bind(id.to_string())
        .bind(organisation.to_string())
        .bind(now)
        .execute(&mut *transaction)
        .await
        .map_err(store_error)?
        .rows_affected()
            == 1;
        if !deleted {
            return match is_live(&mut transaction, organisation, id).await? {
                true => Err(StoreError::LastOwner),
                false => Ok(false),
            };
        }
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
        Ok(true)
    }
}

/// The condition, on the `users` row being changed (`$1` in organisation `$2`), under which it may
/// stop being a live owner: it is not one, or another live owner remains.
const ANOTHER_OWNER_REMAINS: &str = "(role <> 'owner' OR (SELECT COUNT(*) FROM users AS others \
     WHERE others.organisation_id = $2 AND others.role = 'owner' AND others.deleted_at IS NULL) > 1)";

/// Whether `id` is a live user of `organisation`.
async fn is_live(
    transaction: &mut Transaction<'_, Any>,
    organisation: OrganisationId,
    id: UserId,
) -> Result<bool, StoreError> {
    sqlx::query("SELECT 1 FROM users WHERE id = $1 AND organisation_id = $2 AND deleted_at IS NULL")
        .bind(id.to_string())
        .bind(organisation.to_string())
        .fetch_optional(&mut **transaction)
        .await
        .map(|row| row.is_some())
        .map_err(store_error)
}

impl SqlStore {
    /// A transaction in which an organisation's owners may change, one at a time.
    ///
    /// SQLite runs one writer at a time, so the conditional update that follows sees every change
    /// before it. PostgreSQL runs concurrent updates of different rows each on its own snapshot (two
    /// owners demoting each other would both see two owners), so the organisation's row is locked
    /// first: the second transaction waits, then its statements see the first one's change.
    async fn owners_changing(
        &self,
        organisation: OrganisationId,
    ) -> Result<Transaction<'static, Any>, StoreError> {
        let mut transaction = self.pool().begin().await.map_err(store_error)?;
        if self.backend() == Backend::Postgres {
            sqlx::query("SELECT id FROM organisations WHERE id = $1 FOR UPDATE")
                .bind(organisation.to_string())
                .fetch_optional(&mut *transaction)
                .await
                .map_err(store_error)?;
        }
        Ok(transaction)
    }
}
