//! The queries every tenant-owned table shares: find one live row of an organisation by id, list an
//! organisation's live rows a page at a time (oldest first), delete one softly.

use cerberus_core::OrganisationId;
use cerberus_core::store::{AgentAccess, Page, StoreError, StoredPolicy, User, Workspace};
use sqlx::any::AnyRow;
use sqlx::{Any, AnyPool, Executor};

use crate::rows::{
    self, AGENT_COLUMNS, POLICY_COLUMNS, USER_COLUMNS, WORKSPACE_COLUMNS, store_error,
};

/// A table whose rows belong to an organisation and are deleted by setting `deleted_at`.
pub(crate) struct Table<T> {
    name: &'static str,
    columns: &'static str,
    decode: fn(&AnyRow) -> Result<T, StoreError>,
}

pub(crate) const USERS: Table<User> = Table {
    name: "users",
    columns: USER_COLUMNS,
    decode: rows::user,
};
pub(crate) const WORKSPACES: Table<Workspace> = Table {
    name: "workspaces",
    columns: WORKSPACE_COLUMNS,
    decode: rows::workspace,
};
pub(crate) const AGENT_ACCESSES: Table<AgentAccess> = Table {
    name: "agent_accesses",
    columns: AGENT_COLUMNS,
    decode: rows::agent_access,
};
pub(crate) const POLICIES: Table<StoredPolicy> = Table {
    name: "policies",
    columns: POLICY_COLUMNS,
    decode: rows::policy,
};

impl<T> Table<T> {
    /// The live row `id` of `organisation`.
    pub(crate) async fn find(
        &self,
        pool: &AnyPool,
        organisation: OrganisationId,
        id: impl ToString,
    ) -> Result<Option<T>, StoreError> {
        sqlx::query(&format!(
            "SELECT {} FROM {} WHERE id = $1 AND organisation_id = $2 AND deleted_at IS NULL",
            self.columns, self.name
        ))
        .bind(id.to_string())
        .bind(organisation.to_string())
        .fetch_optional(pool)
        .await
        .map_err(store_error)?
        .as_ref()
        .map(self.decode)
        .transpose()
    }

    /// A page of the organisation's live rows, oldest first; `within` narrows them to those whose
    /// column has a value (an agent access's workspace, say).
    pub(crate) async fn list(
        &self,
        pool: &AnyPool,
        organisation: OrganisationId,
        within: Option<(&str, String)>,
        page: Page,
    ) -> Result<Vec<T>, StoreError> {
        let (limit, offset) = rows::page(page);
        let narrowed = within
            .as_ref()
            .map_or(String::new(), |(column, _)| format!(" AND {column} = $4"));
        let sql = format!(
            "SELECT {} FROM {} WHERE organisation_id = $1 AND deleted_at IS NULL{narrowed} \
             ORDER BY created_at, id LIMIT $2 OFFSET $3",
            self.columns, self.name
        );
        let mut query = sqlx::query(&sql)
            .bind(organisation.to_string())
            .bind(limit)
            .bind(offset);
        if let Some((_, value)) = within {
            query = query.bind(value);
        }
        query
            .fetch_all(pool)
            .await
            .map_err(store_error)?
            .iter()
            .map(self.decode)
            .collect()
    }

    /// Deletes the live row `id` of `organisation` softly; whether there was one.
    pub(crate) async fn soft_delete<'e>(
        &self,
        executor: impl Executor<'e, Database = Any>,
        organisation: OrganisationId,
        id: impl ToString,
        now: i64,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(&format!(
            "UPDATE {} SET deleted_at = $3 WHERE id = $1 AND organisation_id = $2 AND deleted_at IS NULL",
            self.name
        ))
        .bind(id.to_string())
        .bind(organisation.to_string())
        .bind(now)
        .execute(executor)
        .await
        .map_err(store_error)?;
        Ok(done.rows_affected() == 1)
    }
}
