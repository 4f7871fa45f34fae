//! Identity providers an organisation trusts for OAuth access tokens (`crate::oauth`), and the
//! policies of their groups and people: set here, checked as the proxy will use them, applied by
//! every instance once the admin change reaches it.

use axum::Json;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use cerberus_core::OrganisationId;
use cerberus_core::store::{
    IdentityProviderId, IdentityProviderSettings, Member, MemberPolicy, StoredIdentityProvider,
    TrustedWorkspaces,
};
use serde::Serialize;
use uuid::Uuid;

use super::AdminState;
use super::error::{ApiError, ErrorBody};
use super::extract::{AdminCaller, Body, Id, Ids, Listing, Pagination};
use super::policies::{PolicyUpdate, check_document};
use super::validate;

/// The most workspaces one provider lists.
const MAX_WORKSPACES: usize = 1000;
/// The most scopes or groups one provider lists.
const MAX_NAMES: usize = 256;

/// A provider's member policies.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MemberPolicies {
    /// Groups first, then people, each by name.
    members: Vec<MemberPolicy>,
}

/// The organisation, provider and member (a group's name or a person's subject) a path names.
pub struct MemberPath(Uuid, IdentityProviderId, String);

impl<S: Send + Sync> FromRequestParts<S> for MemberPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path((organisation, provider, member)) =
            Path::<(String, String, String)>::from_request_parts(parts, state)
                .await
                .map_err(|_| ApiError::NotFound)?;
        match (Uuid::parse_str(&organisation), Uuid::parse_str(&provider)) {
            (Ok(organisation), Ok(provider)) => {
                Ok(Self(organisation, IdentityProviderId(provider), member))
            }
            _ => Err(ApiError::NotFound),
        }
    }
}

/// Checks `settings` as the proxy will use them, naming the field at fault; the settings with
/// their name trimmed.
async fn checked(
    state: &AdminState,
    organisation: OrganisationId,
    mut settings: IdentityProviderSettings,
) -> Result<IdentityProviderSettings, ApiError> {
    if state.oauth.is_none() {
        return Err(ApiError::invalid(
            "issuer",
            "this gateway takes no access tokens: its operator must set `oauth.public_url`, the \
             address every token's audience names",
        ));
    }
    settings.name = validate::name("name", &settings.name)?;
    for (field, count) in [
        ("required_scopes", settings.required_scopes.len()),
        ("allowed_groups", settings.allowed_groups.len()),
        ("algorithms", settings.algorithms.len()),
    ] {
        if count > MAX_NAMES {
            return Err(ApiError::invalid(
                field,
                format!("at most {MAX_NAMES} entries"),
            ));
        }
    }
    if let TrustedWorkspaces::Only(ids) = &settings.workspaces {
        if ids.is_empty() || ids.len() > MAX_WORKSPACES {
            return Err(ApiError::invalid(
                "workspaces",
                format!(
                    "name 1 to {MAX_WORKSPACES} workspaces, or \"*\" for all of the organisation's"
                ),
            ));
        }
        for (i, id) in ids.iter().enumerate() {
            if state.store.workspace(organisation, *id).await?.is_none() {
                return Err(ApiError::invalid(
                    format!("workspaces[{i}]"),
                    format!("no workspace {id} in this organisation"),
                ));
            }
        }
    }
    crate::oauth::IdentityProvider::from_settings(organisation, &settings, &[], Vec::new())
        .map_err(|(field, message)| ApiError::invalid(field, message))?;
    if let Some(policy) = &settings.policy {
        check_document(state, policy).map_err(|e| match e {
            ApiError::Invalid { field, message } => ApiError::invalid(
                format!("policy{}", field.trim_start_matches("document")),
                message,
            ),
            other => other,
        })?;
    }
    Ok(settings)
}

/// The provider `id` of the caller's organisation named in a path.
async fn caller_provider(
    state: &AdminState,
    caller: &AdminCaller,
    organisation: Uuid,
    id: IdentityProviderId,
) -> Result<StoredIdentityProvider, ApiError> {
    let organisation = caller.own(Id(organisation))?;
    state
        .store
        .identity_provider(organisation, id)
        .await?
        .ok_or(ApiError::NotFound)
}

/// `GET /organisations/{id}/identity-providers`.
#[utoipa::path(get, operation_id = "identity_providers_list", path = "/api/v1/organisations/{id}/identity-providers", tag = "identity providers", params(("id" = Uuid, Path, description = "the organisation"), ("limit" = Option<u32>, Query, description = "1 to 200, default 50", minimum = 1, maximum = 200), ("offset" = Option<u64>, Query, description = "0 to 9223372036854775807, default 0", minimum = 0, maximum = 9223372036854775807_u64)), responses((status = 200, body = Listing<StoredIdentityProvider>), (status = 401, description = "no valid access token", body = ErrorBody), (status = 404, description = "not the caller's organisation", body = ErrorBody)), security(("bearer" = [])))]
pub async fn list(
    State(state): State<AdminState>,
    caller: AdminCaller,
    id: Id,
    Pagination(page): Pagination,
) -> Result<Json<Listing<StoredIdentityProvider>>, ApiError> {
    let organisation = caller.own(id)?;
    let providers = state.store.identity_providers(organisation, page).await?;
    Ok(Json(Listing::of(providers, page)))
}

/// `POST /organisations/{id}/identity-providers` (admins): trusts an identity provider.
#[utoipa::path(post, operation_id = "identity_providers_create", path = "/api/v1/organisations/{id}/identity-providers", tag = "identity providers", request_body = IdentityProviderSettings, params(("id" = Uuid, Path, description = "the organisation")), responses((status = 201, body = StoredIdentityProvider), (status = 401, description = "no valid access token", body = ErrorBody), (status = 403, description = "the role does not allow it", body = ErrorBody), (status = 404, description = "not the caller's organisation", body = ErrorBody), (status = 409, description = "the name or issuer is taken in the organisation", body = ErrorBody), (status = 422, description = "a field is wrong; `field` names it", body = ErrorBody)), security(("bearer" = [])))]
pub async fn create(
    State(state): State<AdminState>,
    caller: AdminCaller,
    id: Id,
    Body(settings): Body<IdentityProviderSettings>,
) -> Result<(StatusCode, Json<StoredIdentityProvider>), ApiError> {
    let organisation = caller.own(id)?;
    caller.require_write()?;
    let settings = checked(&state, organisation, settings).await?;
    let provider = state
        .store
        .create_identity_provider(organisation, &settings)
        .await?;
    state.changed();
    tracing::info!(organisation = %organisation, identity_provider = %provider.id, issuer = %provider.settings.issuer, "identity provider trusted");
    Ok((StatusCode::CREATED, Json(provider)))
}

/// `GET /organisations/{id}/identity-providers/{provider_id}`.
#[utoipa::path(get, operation_id = "identity_providers_get", path = "/api/v1/organisations/{id}/identity-providers/{provider_id}", tag = "identity providers", params(("id" = Uuid, Path, description = "the organisation"), ("provider_id" = Uuid, Path)), responses((status = 200, body = StoredIdentityProvider), (status = 401, description = "no valid access token", body = ErrorBody), (status = 404, description = "not in the caller's organisation", body = ErrorBody)), security(("bearer" = [])))]
pub async fn get(
    State(state): State<AdminState>,
    caller: AdminCaller,
    Ids(organisation, provider): Ids,
) -> Result<Json<StoredIdentityProvider>, ApiError> {
    caller_provider(&state, &caller, organisation, IdentityProviderId(provider))
        .await
        .map(Json)
}

/// `PUT /organisations/{id}/identity-providers/{provider_id}` (admins): replaces its settings.
#[utoipa::path(put, operation_id = "identity_providers_update", path = "/api/v1/organisations/{id}/identity-providers/{provider_id}", tag = "identity providers", request_body = IdentityProviderSettings, params(("id" = Uuid, Path, description = "the organisation"), ("provider_id" = Uuid, Path)), responses((status = 200, body = StoredIdentityProvider), (status = 401, description = "no valid access token", body = ErrorBody), (status = 403, description = "the role does not allow it", body = ErrorBody), (status = 404, description = "not in the caller's organisation", body = ErrorBody), (status = 409, description = "the name or issuer is taken in the organisation", body = ErrorBody), (status = 422, description = "a field is wrong; `field` names it", body = ErrorBody)), security(("bearer" = [])))]
pub async fn update(
    State(state): State<AdminState>,
    caller: AdminCaller,
    Ids(organisation, provider): Ids,
    Body(settings): Body<IdentityProviderSettings>,
) -> Result<Json<StoredIdentityProvider>, ApiError> {
    let id = IdentityProviderId(provider);
    let organisation = caller.own(Id(organisation))?;
    caller
        .require_write_on(state.store.identity_provider(organisation, id))
        .await?;
    let settings = checked(&state, organisation, settings).await?;
    let provider = state
        .store
        .update_identity_provider(organisation, id, &settings)
        .await?
        .ok_or(ApiError::NotFound)?;
    state.changed();
    Ok(Json(provider))
}

/// `DELETE /organisations/{id}/identity-providers/{provider_id}` (admins): its people's tokens stop
/// opening anything, and its member policies go with it.
#[utoipa::path(delete, operation_id = "identity_providers_delete", path = "/api/v1/organisations/{id}/identity-providers/{provider_id}", tag = "identity providers", params(("id" = Uuid, Path, description = "the organisation"), ("provider_id" = Uuid, Path)), responses((status = 204), (status = 401, description = "no valid access token", body = ErrorBody), (status = 403, description = "the role does not allow it", body = ErrorBody), (status = 404, description = "not in the caller's organisation", body = ErrorBody)), security(("bearer" = [])))]
pub async fn delete(
    State(state): State<AdminState>,
    caller: AdminCaller,
    Ids(organisation, provider): Ids,
) -> Result<StatusCode, ApiError> {
    let id = IdentityProviderId(provider);
    let organisation = caller.own(Id(organisation))?;
    caller
        .require_write_on(state.store.identity_provider(organisation, id))
        .await?;
    if !state
        .store
        .delete_identity_provider(organisation, id)
        .await?
    {
        return Err(ApiError::NotFound);
    }
    state.changed();
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /organisations/{id}/identity-providers/{provider_id}/member-policies`.
#[utoipa::path(get, operation_id = "identity_providers_member_policies", path = "/api/v1/organisations/{id}/identity-providers/{provider_id}/member-policies", tag = "identity providers", params(("id" = Uuid, Path, description = "the organisation"), ("provider_id" = Uuid, Path)), responses((status = 200, body = MemberPolicies), (status = 401, description = "no valid access token", body = ErrorBody), (status = 404, description = "not in the caller's organisation", body = ErrorBody)), security(("bearer" = [])))]
pub async fn member_policies(
    State(state): State<AdminState>,
    caller: AdminCaller,
    Ids(organisation, provider): Ids,
) -> Result<Json<MemberPolicies>, ApiError> {
    let organisation = caller.own(Id(organisation))?;
    let members = state
        .store
        .member_policies(organisation, IdentityProviderId(provider))
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(Json(MemberPolicies { members }))
}

/// A group's name or a person's subject as a member, refused as 422 when no token could carry it.
fn member(kind: fn(String) -> Member, name: String) -> Result<Member, ApiError> {
    // A path segment of `.` or `..` is resolved away by clients before it is sent.
    if name == "." || name == ".." {
        return Err(ApiError::invalid(
            "name",
            "cannot be `.` or `..`, which a URL path cannot carry",
        ));
    }
    if name.is_empty()
        || name.len() > crate::oauth::MAX_CLAIM_BYTES
        || name.chars().any(char::is_control)
    {
        return Err(ApiError::invalid(
            "name",
            format!(
                "must be 1 to {} bytes, without control characters",
                crate::oauth::MAX_CLAIM_BYTES
            ),
        ));
    }
    Ok(kind(name))
}

/// Attaches `document` to a member of a provider.
async fn set(
    state: &AdminState,
    caller: &AdminCaller,
    path: MemberPath,
    kind: fn(String) -> Member,
    document: &serde_json::Value,
) -> Result<Json<MemberPolicy>, ApiError> {
    let MemberPath(organisation, id, name) = path;
    let organisation = caller.own(Id(organisation))?;
    caller
        .require_write_on(state.store.identity_provider(organisation, id))
        .await?;
    let member = member(kind, name)?;
    check_document(state, document)?;
    let policy = state
        .store
        .set_member_policy(organisation, id, &member, document)
        .await?
        .ok_or(ApiError::NotFound)?;
    state.changed();
    Ok(Json(policy))
}

/// Detaches a member's policy.
async fn unset(
    state: &AdminState,
    caller: &AdminCaller,
    path: MemberPath,
    kind: fn(String) -> Member,
) -> Result<StatusCode, ApiError> {
    let MemberPath(organisation, id, name) = path;
    let organisation = caller.own(Id(organisation))?;
    caller
        .require_write_on(state.store.identity_provider(organisation, id))
        .await?;
    if !state
        .store
        .delete_member_policy(organisation, id, &kind(name))
        .await?
    {
        return Err(ApiError::NotFound);
    }
    state.changed();
    Ok(StatusCode::NO_CONTENT)
}

/// `PUT /organisations/{id}/identity-providers/{provider_id}/groups/{group}/policy` (admins): the
/// policy of everyone in the group, after the provider's own.
#[utoipa::path(put, operation_id = "identity_providers_set_group_policy", path = "/api/v1/organisations/{id}/identity-providers/{provider_id}/groups/{group}/policy", tag = "identity providers", request_body = PolicyUpdate, params(("id" = Uuid, Path, description = "the organisation"), ("provider_id" = Uuid, Path), ("group" = String, Path, description = "the group's name, as tokens carry it")), responses((status = 200, body = MemberPolicy), (status = 401, description = "no valid access token", body = ErrorBody), (status = 403, description = "the role does not allow it", body = ErrorBody), (status = 404, description = "not in the caller's organisation", body = ErrorBody), (status = 422, description = "a field is wrong; `field` names it", body = ErrorBody)), security(("bearer" = [])))]
pub async fn set_group_policy(
    State(state): State<AdminState>,
    caller: AdminCaller,
    path: MemberPath,
    Body(update): Body<PolicyUpdate>,
) -> Result<Json<MemberPolicy>, ApiError> {
    set(&state, &caller, path, Member::Group, &update.document).await
}

/// `DELETE /organisations/{id}/identity-providers/{provider_id}/groups/{group}/policy` (admins).
#[utoipa::path(delete, operation_id = "identity_providers_delete_group_policy", path = "/api/v1/organisations/{id}/identity-providers/{provider_id}/groups/{group}/policy", tag = "identity providers", params(("id" = Uuid, Path, description = "the organisation"), ("provider_id" = Uuid, Path), ("group" = String, Path, description = "the group's name")), responses((status = 204), (status = 401, description = "no valid access token", body = ErrorBody), (status = 403, description = "the role does not allow it", body = ErrorBody), (status = 404, description = "not in the caller's organisation, or no policy", body = ErrorBody)), security(("bearer" = [])))]
pub async fn delete_group_policy(
    State(state): State<AdminState>,
    caller: AdminCaller,
    path: MemberPath,
) -> Result<StatusCode, ApiError> {
    unset(&state, &caller, path, Member::Group).await
}

/// `PUT /organisations/{id}/identity-providers/{provider_id}/people/{subject}/policy` (admins): the
/// policy of one person, after their groups'.
#[utoipa::path(put, operation_id = "identity_providers_set_person_policy", path = "/api/v1/organisations/{id}/identity-providers/{provider_id}/people/{subject}/policy", tag = "identity providers", request_body = PolicyUpdate, params(("id" = Uuid, Path, description = "the organisation"), ("provider_id" = Uuid, Path), ("subject" = String, Path, description = "the person's subject, as tokens carry it")), responses((status = 200, body = MemberPolicy), (status = 401, description = "no valid access token", body = ErrorBody), (status = 403, description = "the role does not allow it", body = ErrorBody), (status = 404, description = "not in the caller's organisation", body = ErrorBody), (status = 422, description = "a field is wrong; `field` names it", body = ErrorBody)), security(("bearer" = [])))]
pub async fn set_person_policy(
    State(state): State<AdminState>,
    caller: AdminCaller,
    path: MemberPath,
    Body(update): Body<PolicyUpdate>,
) -> Result<Json<MemberPolicy>, ApiError> {
    set(&state, &caller, path, Member::Person, &update.document).await
}

/// `DELETE /organisations/{id}/identity-providers/{provider_id}/people/{subject}/policy` (admins).
#[utoipa::path(delete, operation_id = "identity_providers_delete_person_policy", path = "/api/v1/organisations/{id}/identity-providers/{provider_id}/people/{subject}/policy", tag = "identity providers", params(("id" = Uuid, Path, description = "the organisation"), ("provider_id" = Uuid, Path), ("subject" = String, Path, description = "the person's subject")), responses((status = 204), (status = 401, description = "no valid access token", body = ErrorBody), (status = 403, description = "the role does not allow it", body = ErrorBody), (status = 404, description = "not in the caller's organisation, or no policy", body = ErrorBody)), security(("bearer" = [])))]
pub async fn delete_person_policy(
    State(state): State<AdminState>,
    caller: AdminCaller,
    path: MemberPath,
) -> Result<StatusCode, ApiError> {
    unset(&state, &caller, path, Member::Person).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_member_no_token_could_carry_is_refused() {
        assert!(member(Member::Group, "engineering".into()).is_ok());
        assert!(member(Member::Person, "00u1abc".into()).is_ok());
        assert!(member(Member::Group, String::new()).is_err());
        assert!(member(Member::Group, "..".into()).is_err());
        assert!(member(Member::Person, "a\u{0}b".into()).is_err());
        assert!(
            member(
                Member::Person,
                "x".repeat(crate::oauth::MAX_CLAIM_BYTES + 1)
            )
            .is_err()
        );
    }
}
