//! Agent accesses: created and rotated with a key shown once, revoked, deleted. Only the key's SHA-256
//! hash and display prefix are stored.

use std::time::{Duration, SystemTime};

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use cerberus_core::store::{AgentAccess, StoredKey, rfc3339};
use cerberus_core::{AgentId, WorkspaceId};
use serde::{Deserialize, Serialize};

use super::AdminState;
use super::error::{ApiError, ErrorBody};
use super::extract::{AdminCaller, Body, Id, Listing, Pagination};
use super::validate;
use super::workspaces::caller_workspace;
use crate::auth::generate_key;

/// The longest grace period a rotation may give the old key.
const MAX_GRACE: Duration = Duration::from_secs(30 * 24 * 3600);

/// A new agent access.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewAgentAccess {
    #[schema(value_type = validate::Name)]
    name: String,
    /// When it stops working by itself (RFC 3339), if ever.
    #[serde(default, with = "rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    expires_at: Option<SystemTime>,
}

/// A rotation.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Rotation {
    /// How long the old key keeps working, in seconds (default: the gateway's setting; at most 30
    /// days).
    #[schema(maximum = 2_592_000)]
    grace_period_secs: Option<u64>,
}

/// An agent access with its new key, shown this once.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WithKey {
    agent_access: AgentAccess,
    /// The key: store it now, it cannot be shown again.
    key: String,
}

/// `GET /mcp-server-workspaces/{id}/agent-accesses`.
#[utoipa::path(get, operation_id = "agent_accesses_list", path = "/api/v1/mcp-server-workspaces/{id}/agent-accesses", tag = "agent accesses", params(("id" = Uuid, Path, description = "the id"), ("limit" = Option<u32>, Query, description = "1 to 200, default 50", minimum = 1, maximum = 200), ("offset" = Option<u64>, Query, description = "0 to 9223372036854775807, default 0", minimum = 0, maximum = 9223372036854775807_u64)), responses((status = 200, body = Listing<AgentAccess>), (status = 401, description = "no valid access token", body = ErrorBody), (status = 404, description = "not in the caller's organisation", body = ErrorBody)), security(("bearer" = [])))]
pub async fn list(
    State(state): State<AdminState>,
    caller: AdminCaller,
    id: Id,
    Pagination(page): Pagination,
) -> Result<Json<Listing<AgentAccess>>, ApiError> {
    let workspace = caller_workspace(&state, &caller, WorkspaceId(id.0)).await?;
    let agents = state
        .store
        .agent_accesses(caller.organisation(), workspace.id, page)
        .await?;
    Ok(Json(Listing::of(agents, page)))
}

/// `POST /mcp-server-workspaces/{id}/agent-accesses` (admins): returns the key once.
#[utoipa::path(post, operation_id = "agent_accesses_create", path = "/api/v1/mcp-server-workspaces/{id}/agent-accesses", tag = "agent accesses", request_body = NewAgentAccess, params(("id" = Uuid, Path, description = "the id")), responses((status = 201, body = WithKey, description = "the key is shown this once"), (status = 401, description = "no valid access token", body = ErrorBody), (status = 403, description = "the role does not allow it", body = ErrorBody), (status = 404, description = "not in the caller's organisation", body = ErrorBody), (status = 409, description = "the name is taken", body = ErrorBody), (status = 422, description = "a field is wrong; `field` names it", body = ErrorBody)), security(("bearer" = [])))]
pub async fn create(
    State(state): State<AdminState>,
    caller: AdminCaller,
    id: Id,
    Body(new): Body<NewAgentAccess>,
) -> Result<(StatusCode, Json<WithKey>), ApiError> {
    caller
        .require_write_on(
            state
                .store
                .workspace(caller.organisation(), WorkspaceId(id.0)),
        )
        .await?;
    let name = validate::name("name", &new.name)?;
    if new.expires_at.is_some_and(|at| at <= SystemTime::now()) {
        return Err(ApiError::invalid("expires_at", "is in the past"));
    }
    let key = generate_key();
    let agent_access = state
        .store
        .create_agent_access(
            caller.organisation(),
            WorkspaceId(id.0),
            &name,
            StoredKey {
                hash: key.hash.0,
                prefix: &key.prefix,
            },
            new.expires_at,
        )
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok((
        StatusCode::CREATED,
        Json(WithKey {
            agent_access,
            key: key.secret,
        }),
    ))
}

/// `GET /agent-accesses/{id}`.
#[utoipa::path(get, operation_id = "agent_accesses_get", path = "/api/v1/agent-accesses/{id}", tag = "agent accesses", params(("id" = Uuid, Path, description = "the id")), responses((status = 200, body = AgentAccess), (status = 401, description = "no valid access token", body = ErrorBody), (status = 404, description = "not in the caller's organisation", body = ErrorBody)), security(("bearer" = [])))]
pub async fn get(
    State(state): State<AdminState>,
    caller: AdminCaller,
    id: Id,
) -> Result<Json<AgentAccess>, ApiError> {
    state
        .store
        .agent_access(caller.organisation(), AgentId(id.0))
        .await?
        .map(Json)
        .ok_or(ApiError::NotFound)
}

/// `POST /agent-accesses/{id}/rotate` (admins): a new key, returned once; the old one keeps working
/// for the grace period.
#[utoipa::path(post, operation_id = "agent_accesses_rotate", path = "/api/v1/agent-accesses/{id}/rotate", tag = "agent accesses", request_body = Option<Rotation>, params(("id" = Uuid, Path, description = "the id")), responses((status = 200, body = WithKey, description = "the new key is shown this once"), (status = 401, description = "no valid access token", body = ErrorBody), (status = 403, description = "the role does not allow it", body = ErrorBody), (status = 404, description = "not in the caller's organisation", body = ErrorBody), (status = 422, description = "a field is wrong; `field` names it", body = ErrorBody)), security(("bearer" = [])))]
pub async fn rotate(
    State(state): State<AdminState>,
    caller: AdminCaller,
    id: Id,
    rotation: Option<Body<Rotation>>,
) -> Result<Json<WithKey>, ApiError> {
    caller
        .require_write_on(
            state
                .store
                .agent_access(caller.organisation(), AgentId(id.0)),
        )
        .await?;
    let rotation = rotation.map(|Body(r)| r).unwrap_or_default();
    let grace = rotation
        .grace_period_secs
        .map_or(state.settings.key_rotation_grace(), Duration::from_secs);
    if grace > MAX_GRACE {
        return Err(ApiError::invalid(
            "grace_period_secs",
            format!("must be at most {} seconds", MAX_GRACE.as_secs()),
        ));
    }
    let key = generate_key();
    let agent_access = state
        .store
        .rotate_key(
            caller.organisation(),
            AgentId(id.0),
            StoredKey {
                hash: key.hash.0,
                prefix: &key.prefix,
            },
            (!grace.is_zero()).then(|| SystemTime::now() + grace),
        )
        .await?
        .ok_or(ApiError::NotFound)?;
    state.changed();
    Ok(Json(WithKey {
        agent_access,
        key: key.secret,
    }))
}

/// `POST /agent-accesses/{id}/revoke` (admins): every key of the access stops working.
#[utoipa::path(post, operation_id = "agent_accesses_revoke", path = "/api/v1/agent-accesses/{id}/revoke", tag = "agent accesses", params(("id" = Uuid, Path, description = "the id")), responses((status = 200, body = AgentAccess), (status = 401, description = "no valid access token", body = ErrorBody), (status = 403, description = "the role does not allow it", body = ErrorBody), (status = 404, description = "not in the caller's organisation", body = ErrorBody)), security(("bearer" = [])))]
pub async fn revoke(
    State(state): State<AdminState>,
    caller: AdminCaller,
    id: Id,
) -> Result<Json<AgentAccess>, ApiError> {
    caller
        .require_write_on(
            state
                .store
                .agent_access(caller.organisation(), AgentId(id.0)),
        )
        .await?;
    let revoked = state
        .store
        .revoke_agent_access(caller.organisation(), AgentId(id.0))
        .await?
        .ok_or(ApiError::NotFound)?;
    state.changed();
    Ok(Json(revoked))
}

/// `DELETE /agent-accesses/{id}` (admins).
#[utoipa::path(delete, operation_id = "agent_accesses_delete", path = "/api/v1/agent-accesses/{id}", tag = "agent accesses", params(("id" = Uuid, Path, description = "the id")), responses((status = 204), (status = 401, description = "no valid access token", body = ErrorBody), (status = 403, description = "the role does not allow it", body = ErrorBody), (status = 404, description = "not in the caller's organisation", body = ErrorBody)), security(("bearer" = [])))]
pub async fn delete(
    State(state): State<AdminState>,
    caller: AdminCaller,
    id: Id,
) -> Result<StatusCode, ApiError> {
    caller
        .require_write_on(
            state
                .store
                .agent_access(caller.organisation(), AgentId(id.0)),
        )
        .await?;
    if !state
        .store
        .delete_agent_access(caller.organisation(), AgentId(id.0))
        .await?
    {
        return Err(ApiError::NotFound);
    }
    state.changed();
    Ok(StatusCode::NO_CONTENT)
}
