//! Organisations and their users. A caller sees its own organisation only; creating one provisions a
//! separate tenant with its own first owner.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use cerberus_core::store::{Organisation, Role, User, UserId};
use serde::{Deserialize, Serialize};

use super::AdminState;
use super::credentials::hash_password;
use super::error::{ApiError, ErrorBody};
use super::extract::{AdminCaller, Body, Id, Ids, Listing, Pagination};
use super::validate;

/// A new organisation and its first owner.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewOrganisation {
    #[schema(value_type = validate::Name)]
    name: String,
    owner: NewOwner,
}

/// The first owner of a new organisation.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewOwner {
    #[schema(value_type = validate::Email)]
    email: String,
    #[schema(value_type = validate::NewPassword)]
    password: String,
}

/// An organisation with its first owner.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CreatedOrganisation {
    organisation: Organisation,
    owner: User,
}

/// Changes to an organisation.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrganisationChanges {
    #[schema(value_type = validate::Name)]
    name: String,
}

/// `GET /organisations`: the caller's own.
#[utoipa::path(get, operation_id = "organisations_list", path = "/api/v1/organisations", tag = "organisations", responses((status = 200, body = Listing<Organisation>), (status = 401, description = "no valid access token", body = ErrorBody)), security(("bearer" = [])))]
pub async fn list(
    State(state): State<AdminState>,
    caller: AdminCaller,
) -> Result<Json<Listing<Organisation>>, ApiError> {
    let own = state.store.organisation(caller.organisation()).await?;
    Ok(Json(Listing {
        items: own.into_iter().collect(),
        next_offset: None,
    }))
}

/// `POST /organisations` (owners): a new tenant with its first owner.
#[utoipa::path(post, operation_id = "organisations_create", path = "/api/v1/organisations", tag = "organisations", request_body = NewOrganisation, responses((status = 201, body = CreatedOrganisation), (status = 401, description = "no valid access token", body = ErrorBody), (status = 403, description = "the role does not allow it", body = ErrorBody), (status = 409, description = "the name is taken", body = ErrorBody), (status = 422, description = "a field is wrong; `field` names it", body = ErrorBody)), security(("bearer" = [])))]
pub async fn create(
    State(state): State<AdminState>,
    caller: AdminCaller,
    Body(new): Body<NewOrganisation>,
) -> Result<(StatusCode, Json<CreatedOrganisation>), ApiError> {
    caller.require_owner()?;
    let name = validate::name("name", &new.name)?;
    let email = validate::email("owner.email", &new.owner.email)?;
    validate::password("owner.password", &new.owner.password, &[&email, &new.name])?;
    let hash = hash_password(new.owner.password).await?;
    let (organisation, owner) = state
        .store
        .create_organisation(&name, &email, &hash)
        .await?;
    tracing::info!(organisation = %organisation.id, by = %caller.user.id, "organisation created");
    Ok((
        StatusCode::CREATED,
        Json(CreatedOrganisation {
            organisation,
            owner,
        }),
    ))
}

/// `GET /organisations/{id}`.
#[utoipa::path(get, operation_id = "organisations_get", path = "/api/v1/organisations/{id}", tag = "organisations", params(("id" = Uuid, Path, description = "the id")), responses((status = 200, body = Organisation), (status = 401, description = "no valid access token", body = ErrorBody), (status = 404, description = "not in the caller's organisation", body = ErrorBody)), security(("bearer" = [])))]
pub async fn get(
    State(state): State<AdminState>,
    caller: AdminCaller,
    id: Id,
) -> Result<Json<Organisation>, ApiError> {
    let id = caller.own(id)?;
    state
        .store
        .organisation(id)
        .await?
        .map(Json)
        .ok_or(ApiError::NotFound)
}

/// `PATCH /organisations/{id}` (owners).
#[utoipa::path(patch, operation_id = "organisations_update", path = "/api/v1/organisations/{id}", tag = "organisations", request_body = OrganisationChanges, params(("id" = Uuid, Path, description = "the id")), responses((status = 200, body = Organisation), (status = 401, description = "no valid access token", body = ErrorBody), (status = 403, description = "the role does not allow it", body = ErrorBody), (status = 404, description = "not in the caller's organisation", body = ErrorBody), (status = 409, description = "the name is taken", body = ErrorBody), (status = 422, description = "a field is wrong; `field` names it", body = ErrorBody)), security(("bearer" = [])))]
pub async fn update(
    State(state): State<AdminState>,
    caller: AdminCaller,
    id: Id,
    Body(changes): Body<OrganisationChanges>,
) -> Result<Json<Organisation>, ApiError> {
    let id = caller.own(id)?;
    caller.require_owner()?;
    let name = validate::name("name", &changes.name)?;
    let renamed = state
        .store
        .rename_organisation(id, &name)
        .await?
        .ok_or(ApiError::NotFound)?;
    // Cached routes carry the name rules read (`organisation.name`).
    state.changed();
    Ok(Json(renamed))
}

/// `DELETE /organisations/{id}` (owners): everything in it stops working.
#[utoipa::path(delete, operation_id = "organisations_delete", path = "/api/v1/organisations/{id}", tag = "organisations", params(("id" = Uuid, Path, description = "the id")), responses((status = 204), (status = 401, description = "no valid access token", body = ErrorBody), (status = 403, description = "the role does not allow it", body = ErrorBody), (status = 404, description = "not in the caller's organisation", body = ErrorBody)), security(("bearer" = [])))]
pub async fn delete(
    State(state): State<AdminState>,
    caller: AdminCaller,
    id: Id,
) -> Result<StatusCode, ApiError> {
    let id = caller.own(id)?;
    caller.require_owner()?;
    if !state.store.delete_organisation(id).await? {
        return Err(ApiError::NotFound);
    }
    state.changed();
    Ok(StatusCode::NO_CONTENT)
}

/// A new user of an organisation.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    #[schema(value_type = validate::Email)]
    email: String,
    role: Role,
    #[schema(value_type = validate::NewPassword)]
    password: String,
}

/// A change of role.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleChange {
    role: Role,
}

/// `GET /organisations/{id}/users`.
#[utoipa::path(get, operation_id = "users_list", path = "/api/v1/organisations/{id}/users", tag = "users", params(("id" = Uuid, Path, description = "the id"), ("limit" = Option<u32>, Query, description = "1 to 200, default 50", minimum = 1, maximum = 200), ("offset" = Option<u64>, Query, description = "0 to 9223372036854775807, default 0", minimum = 0, maximum = 9223372036854775807_u64)), responses((status = 200, body = Listing<User>), (status = 401, description = "no valid access token", body = ErrorBody), (status = 404, description = "not in the caller's organisation", body = ErrorBody)), security(("bearer" = [])))]
pub async fn users(
    State(state): State<AdminState>,
    caller: AdminCaller,
    id: Id,
    Pagination(page): Pagination,
) -> Result<Json<Listing<User>>, ApiError> {
    let id = caller.own(id)?;
    let users = state.store.users(id, page).await?;
    Ok(Json(Listing::of(users, page)))
}

/// `POST /organisations/{id}/users` (owners).
#[utoipa::path(post, operation_id = "users_create", path = "/api/v1/organisations/{id}/users", tag = "users", request_body = NewUser, params(("id" = Uuid, Path, description = "the id")), responses((status = 201, body = User), (status = 401, description = "no valid access token", body = ErrorBody), (status = 403, description = "the role does not allow it", body = ErrorBody), (status = 404, description = "not in the caller's organisation", body = ErrorBody), (status = 409, description = "the name is taken", body = ErrorBody), (status = 422, description = "a field is wrong; `field` names it", body = ErrorBody)), security(("bearer" = [])))]
pub async fn create_user(
    State(state): State<AdminState>,
    caller: AdminCaller,
    id: Id,
    Body(new): Body<NewUser>,
) -> Result<(StatusCode, Json<User>), ApiError> {
    let id = caller.own(id)?;
    caller.require_owner()?;
    let email = validate::email("email", &new.email)?;
    validate::password("password", &new.password, &[&email])?;
    let hash = hash_password(new.password).await?;
    let user = state.store.create_user(id, &email, new.role, &hash).await?;
    Ok((StatusCode::CREATED, Json(user)))
}

/// `PATCH /organisations/{id}/users/{user}` (owners): changes the role.
#[utoipa::path(patch, operation_id = "users_update", path = "/api/v1/organisations/{id}/users/{user_id}", tag = "users", request_body = RoleChange, params(("id" = Uuid, Path, description = "the organisation"), ("user_id" = Uuid, Path)), responses((status = 200, body = User), (status = 401, description = "no valid access token", body = ErrorBody), (status = 403, description = "the role does not allow it", body = ErrorBody), (status = 404, description = "not in the caller's organisation", body = ErrorBody), (status = 422, description = "a field is wrong; `field` names it", body = ErrorBody)), security(("bearer" = [])))]
pub async fn update_user(
    State(state): State<AdminState>,
    caller: AdminCaller,
    Ids(organisation, user): Ids,
    Body(change): Body<RoleChange>,
) -> Result<Json<User>, ApiError> {
    let organisation = caller.own(Id(organisation))?;
    caller.require_owner()?;
    state
        .store
        .set_role(organisation, UserId(user), change.role)
        .await?
        .map(Json)
        .ok_or(ApiError::NotFound)
}

/// `DELETE /organisations/{id}/users/{user}` (owners).
#[utoipa::path(delete, operation_id = "users_delete", path = "/api/v1/organisations/{id}/users/{user_id}", tag = "users", params(("id" = Uuid, Path, description = "the organisation"), ("user_id" = Uuid, Path)), responses((status = 204), (status = 401, description = "no valid access token", body = ErrorBody), (status = 403, description = "the role does not allow it", body = ErrorBody), (status = 404, description = "not in the caller's organisation", body = ErrorBody), (status = 422, description = "a field is wrong; `field` names it", body = ErrorBody)), security(("bearer" = [])))]
pub async fn delete_user(
    State(state): State<AdminState>,
    caller: AdminCaller,
    Ids(organisation, user): Ids,
) -> Result<StatusCode, ApiError> {
    let organisation = caller.own(Id(organisation))?;
    caller.require_owner()?;
    if !state.store.delete_user(organisation, UserId(user)).await? {
        return Err(ApiError::NotFound);
    }
    Ok(StatusCode::NO_CONTENT)
}
