//! Refresh tokens: spent once, and a second use revokes the family it belongs to.

use std::time::SystemTime;

use async_trait::async_trait;
use cerberus_core::Cause;
use cerberus_core::store::{
    RefreshOutcome, RefreshTokenRecord, RefreshTokenStore, StoreError, UserId,
};
use sqlx::Row;
use uuid::Uuid;

use crate::SqlStore;
use crate::rows::{hash_text, millis, store_error, time};

#[async_trait]
impl RefreshTokenStore for SqlStore {
    async fn insert_refresh_token(
        &self,
        hash: [u8; 32],
        record: &RefreshTokenRecord,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO refresh_tokens (token_hash, user_id, family, expires_at, revoked_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(hash_text(hash))
        .bind(record.user.to_string())
        .bind(record.family.to_string())
        .bind(millis(record.expires_at))
        .bind(record.revoked_at.map(millis))
        .execute(&self.pool)
        .await
        .map_err(store_error)?;
        Ok(())
    }

    async fn spend_refresh_token(
        &self,
        hash: [u8; 32],
        now: SystemTime,
    ) -> Result<RefreshOutcome, StoreError> {
        let hash = hash_text(hash);
        // Spending is one conditional update, so two concurrent uses cannot both succeed.
        let spent = sqlx::query(
            "UPDATE refresh_tokens SET revoked_at = $2 \
             WHERE token_hash = $1 AND revoked_at IS NULL AND expires_at > $2 \
             RETURNING user_id, family, expires_at",
        )
        .bind(&hash)
        .bind(millis(now))
        .fetch_optional(&self.pool)
        .await
        .map_err(store_error)?;
        if let Some(row) = spent {
            let id = |column: &str| -> Result<Uuid, StoreError> {
                let text: String = row.try_get(column).map_err(store_error)?;
                Uuid::parse_str(&text).map_err(|e| StoreError::Unavailable(Cause::new(e)))
            };
            return Ok(RefreshOutcome::Spent(RefreshTokenRecord {
                user: UserId(id("user_id")?),
                family: id("family")?,
                expires_at: time(row.try_get("expires_at").map_err(store_error)?),
                revoked_at: Some(now),
            }));
        }
        let known =
            sqlx::query("SELECT family, revoked_at FROM refresh_tokens WHERE token_hash = $1")
                .bind(&hash)
                .fetch_optional(&self.pool)
                .await
                .map_err(store_error)?;
        let Some(row) = known else {
            return Ok(RefreshOutcome::Invalid);
        };
        let revoked: Option<i64> = row.try_get("revoked_at").map_err(store_error)?;
        if revoked.is_none() {
            // Expired, never spent.
            return Ok(RefreshOutcome::Invalid);
        }
        let family: String = row.try_get("family").map_err(store_error)?;
        let family =
            Uuid::parse_str(&family).map_err(|e| StoreError::Unavailable(Cause::new(e)))?;
        self.revoke_refresh_family(family).await?;
        Ok(RefreshOutcome::Reused)
    }

    async fn revoke_refresh_family(&self, family: Uuid) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE refresh_tokens SET revoked_at = $2 WHERE family = $1 AND revoked_at IS NULL",
        )
        .bind(family.to_string())
        .bind(millis(SystemTime::now()))
        .execute(&self.pool)
        .await
        .map_err(store_error)?;
        Ok(())
    }
}
