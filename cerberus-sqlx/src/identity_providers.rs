//! Identity providers an organisation trusts for OAuth access tokens, and the policies of their
//! groups and people.

use async_trait::async_trait;
use cerberus_core::store::{
    IdentityProviderId, IdentityProviderSettings, IdentityProviderStore, Member, MemberPolicy,
    OrganisationStore, Page, StoreError, StoredIdentityProvider, WorkspaceStore, WorkspaceTrust,
};
use cerberus_core::{Cause, OrganisationId, Profile, WorkspaceId};
use sqlx::any::AnyRow;
use uuid::Uuid;

use crate::SqlStore;
use crate::rows::{self, at, conflict, corrupt, json, now, store_error, text};

/// The columns [`provider`] reads.
const PROVIDER_COLUMNS: &str = "id, organisation_id, settings, created_at, updated_at";
const TAKEN: &str = "an identity provider with that name or issuer in this organisation";

fn provider(row: &AnyRow) -> Result<StoredIdentityProvider, StoreError> {
    let id = |column| Uuid::parse_str(&text(row, column)?).map_err(|e| corrupt(column, e));
    Ok(StoredIdentityProvider {
        id: IdentityProviderId(id("id")?),
        organisation: OrganisationId(id("organisation_id")?),
        settings: json(row, "settings")?,
        created_at: at(row, "created_at")?,
        updated_at: at(row, "updated_at")?,
    })
}

fn member_policy(row: &AnyRow) -> Result<MemberPolicy, StoreError> {
    let name = text(row, "name")?;
    let member = match text(row, "kind")?.as_str() {
        "group" => Member::Group(name),
        "person" => Member::Person(name),
        other => return Err(corrupt("kind", other)),
    };
    Ok(MemberPolicy {
        identity_provider: IdentityProviderId(
            Uuid::parse_str(&text(row, "identity_provider_id")?)
                .map_err(|e| corrupt("identity_provider_id", e))?,
        ),
        member,
        document: json(row, "document")?,
        updated_at: at(row, "updated_at")?,
    })
}

fn settings_text(settings: &IdentityProviderSettings) -> Result<String, StoreError> {
    serde_json::to_string(settings).map_err(|e| StoreError::Rejected(Cause::new(e)))
}

impl SqlStore {
    /// The member policies of `provider`, groups first, then by name. Sorted here, byte by byte,
    /// not by the database, whose collation differs between backends (and whose order decides which
    /// group's policy is applied last).
    async fn members_of(
        &self,
        provider: IdentityProviderId,
    ) -> Result<Vec<MemberPolicy>, StoreError> {
        let mut members = sqlx::query(
            "SELECT identity_provider_id, kind, name, document, updated_at \
             FROM identity_provider_members WHERE identity_provider_id = $1",
        )
        .bind(provider.to_string())
        .fetch_all(&self.pool)
        .await
        .map_err(store_error)?
        .iter()
        .map(member_policy)
        .collect::<Result<Vec<_>, _>>()?;
        members.sort_by(|a, b| {
            (a.member.kind(), a.member.name()).cmp(&(b.member.kind(), b.member.name()))
        });
        Ok(members)
    }
}

#[async_trait]
impl IdentityProviderStore for SqlStore {
    async fn create_identity_provider(
        &self,
        organisation: OrganisationId,
        settings: &IdentityProviderSettings,
    ) -> Result<StoredIdentityProvider, StoreError> {
        let id = IdentityProviderId::new_random();
        let now = now();
        sqlx::query(&format!(
            "INSERT INTO identity_providers \
             (id, organisation_id, name, issuer, settings, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $6) RETURNING {PROVIDER_COLUMNS}"
        ))
        .bind(id.to_string())
        .bind(organisation.to_string())
        .bind(rows::storable(&settings.name).as_ref())
        .bind(rows::storable(&settings.issuer).as_ref())
        .bind(settings_text(settings)?)
        .bind(now)
        .fetch_one(&self.pool)
        .await
        .map_err(conflict(TAKEN))
        .and_then(|row| provider(&row))
    }

    async fn identity_providers(
        &self,
        organisation: OrganisationId,
        page: Page,
    ) -> Result<Vec<StoredIdentityProvider>, StoreError> {
        let (limit, offset) = rows::page(page);
        sqlx::query(&format!(
            "SELECT {PROVIDER_COLUMNS} FROM identity_providers WHERE organisation_id = $1 \
             ORDER BY created_at, id LIMIT $2 OFFSET $3"
        ))
        .bind(organisation.to_string())
        .bind(limit)
        .bind(offset)
        .fetch_all(&self.pool)
        .await
        .map_err(store_error)?
        .iter()
        .map(provider)
        .collect()
    }

    async fn identity_provider(
        &self,
        organisation: OrganisationId,
        id: IdentityProviderId,
    ) -> Result<Option<StoredIdentityProvider>, StoreError> {
        sqlx::query(&format!(
            "SELECT {PROVIDER_COLUMNS} FROM identity_providers WHERE id = $1 AND organisation_id = $2"
        ))
        .bind(id.to_string())
        .bind(organisation.to_string())
        .fetch_optional(&self.pool)
        .await
        .map_err(store_error)?
        .as_ref()
        .map(provider)
        .transpose()
    }

    async fn update_identity_provider(
        &self,
        organisation: OrganisationId,
        id: IdentityProviderId,
        settings: &IdentityProviderSettings,
    ) -> Result<Option<StoredIdentityProvider>, StoreError> {
        sqlx::query(&format!(
            "UPDATE identity_providers SET name = $3, issuer = $4, settings = $5, updated_at = $6 \
             WHERE id = $1 AND organisation_id = $2 RETURNING {PROVIDER_COLUMNS}"
        ))
        .bind(id.to_string())
        .bind(organisation.to_string())
        .bind(rows::storable(&settings.name).as_ref())
        .bind(rows::storable(&settings.issuer).as_ref())
        .bind(settings_text(settings)?)
        .bind(now())
        .fetch_optional(&self.pool)
        .await
        .map_err(conflict(TAKEN))?
        .as_ref()
        .map(provider)
        .transpose()
    }

    async fn delete_identity_provider(
        &self,
        organisation: OrganisationId,
        id: IdentityProviderId,
    ) -> Result<bool, StoreError> {
        // The members go with it (ON DELETE CASCADE); SQLite applies that with its foreign keys on,
        // which every connection of the pool turns on.
        let done =
            sqlx::query("DELETE FROM identity_providers WHERE id = $1 AND organisation_id = $2")
                .bind(id.to_string())
                .bind(organisation.to_string())
                .execute(&self.pool)
                .await
                .map_err(store_error)?;
        Ok(done.rows_affected() > 0)
    }

    async fn set_member_policy(
        &self,
        organisation: OrganisationId,
        id: IdentityProviderId,
        member: &Member,
        document: &serde_json::Value,
    ) -> Result<Option<MemberPolicy>, StoreError> {
        sqlx::query(
            "INSERT INTO identity_provider_members \
             (identity_provider_id, kind, name, document, updated_at) \
             SELECT $1, $3, $4, $5, $6 WHERE EXISTS (SELECT 1 FROM identity_providers \
             WHERE id = $1 AND organisation_id = $2) \
             ON CONFLICT (identity_provider_id, kind, name) \
             DO UPDATE SET document = excluded.document, updated_at = excluded.updated_at \
             RETURNING identity_provider_id, kind, name, document, updated_at",
        )
        .bind(id.to_string())
        .bind(organisation.to_string())
        .bind(member.kind())
        .bind(rows::storable(member.name()).as_ref())
        .bind(document.to_string())
        .bind(now())
        .fetch_optional(&self.pool)
        .await
        .map_err(store_error)?
        .as_ref()
        .map(member_policy)
        .transpose()
    }

    async fn member_policies(
        &self,
        organisation: OrganisationId,
        id: IdentityProviderId,
    ) -> Result<Option<Vec<MemberPolicy>>, StoreError> {
        if self.identity_provider(organisation, id).await?.is_none() {
            return Ok(None);
        }
        self.members_of(id).await.map(Some)
    }

    async fn delete_member_policy(
        &self,
        organisation: OrganisationId,
        id: IdentityProviderId,
        member: &Member,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "DELETE FROM identity_provider_members WHERE identity_provider_id = $1 \
             AND kind = $3 AND name = $4 AND EXISTS (SELECT 1 FROM identity_providers \
             WHERE id = $1 AND organisation_id = $2)",
        )
        .bind(id.to_string())
        .bind(organisation.to_string())
        .bind(member.kind())
        .bind(rows::storable(member.name()).as_ref())
        .execute(&self.pool)
        .await
        .map_err(store_error)?;
        Ok(done.rows_affected() > 0)
    }

    async fn workspace_trust(
        &self,
        workspace: WorkspaceId,
    ) -> Result<Option<WorkspaceTrust>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {} FROM identity_providers p JOIN workspaces w \
             ON w.organisation_id = p.organisation_id \
             WHERE w.id = $1 AND w.deleted_at IS NULL ORDER BY p.created_at, p.id",
            PROVIDER_COLUMNS
                .split(", ")
                .map(|c| format!("p.{c}"))
                .collect::<Vec<_>>()
                .join(", ")
        ))
        .bind(workspace.to_string())
        .fetch_all(&self.pool)
        .await
        .map_err(store_error)?;
        let mut providers = Vec::new();
        for row in &rows {
            let provider = provider(row)?;
            if provider.settings.workspaces.contains(workspace) {
                let members = self.members_of(provider.id).await?;
                providers.push((provider, members));
            }
        }
        let Some(organisation) = providers.first().map(|(p, _)| p.organisation) else {
            return Ok(None);
        };
        let (Some(found), Some(owner)) = (
            self.workspace(organisation, workspace).await?,
            self.organisation(organisation).await?,
        ) else {
            return Ok(None);
        };
        let policies = self
            .resolved_policies(organisation, workspace, None)
            .await?;
        Ok(Some(WorkspaceTrust {
            workspace: found,
            organisation: Profile {
                name: owner.name,
                labels: owner.labels,
                ..Default::default()
            },
            policies,
            providers,
        }))
    }
}
