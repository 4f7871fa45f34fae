//! Labels on the organisation, its workspaces and its agent accesses: key-value pairs that rules
//! read (`agent.labels.team == 'payments'`). Each `PUT` replaces the whole set.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use cerberus_core::store::PolicyTarget;
use cerberus_core::{AgentId, WorkspaceId};
use serde::{Deserialize, Serialize};

use super::AdminState;
use super::error::{ApiError, ErrorBody};
use super::extract::{AdminCaller, Body, Id, Ids};
use super::validate;

/// The labels of one organisation, workspace or agent access.
#[derive(Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Labels {
    /// At most 64; keys of 1 to 63 letters, digits, `_`, `-`, `.` and `/`, starting with a letter or
    /// digit; values of at most 256 characters.
    #[schema(value_type = validate::LabelMap)]
    labels: BTreeMap<String, String>,
}

/// Checks `labels` and stores them on `target` of the caller's organisation.
async fn replace(
    state: &AdminState,
    caller: &AdminCaller,
    target: PolicyTarget,
    labels: Labels,
) -> Result<Json<Labels>, ApiError> {
    cerberus_core::check_labels(&labels.labels).map_err(|(key, message)| {
        let field = if key.is_empty() {
            "labels".to_owned()
        } else {
            format!("labels.{key}")
        };
        ApiError::invalid(field, message)
    })?;
    if !state
        .store
        .set_labels(caller.organisation(), target, &labels.labels)
        .await?
    {
        return Err(ApiError::NotFound);
    }
    // Cached routes carry the labels their rules read.
    state.changed();
    Ok(Json(labels))
}

/// `PUT /organisations/{id}/labels` (owners).
#[utoipa::path(put, operation_id = "organisations_labels", path = "/api/v1/organisations/{id}/labels", tag = "organisations", request_body = Labels, params(("id" = Uuid, Path, description = "the id")), responses((status = 200, body = Labels), (status = 401, description = "no valid access token", body = ErrorBody), (status = 403, description = "the role does not allow it", body = ErrorBody), (status = 404, description = "not in the caller's organisation", body = ErrorBody), (status = 422, description = "a field is wrong; `field` names it", body = ErrorBody)), security(("bearer" = [])))]
pub async fn organisation(
    State(state): State<AdminState>,
    caller: AdminCaller,
    id: Id,
    Body(labels): Body<Labels>,
) -> Result<Json<Labels>, ApiError> {
    let id = caller.own(id)?;
    caller.require_owner()?;
    replace(&state, &caller, PolicyTarget::Organisation(id), labels).await
}

/// `PUT /organisations/{id}/mcp-server-workspaces/{workspace}/labels` (admins).
#[utoipa::path(put, operation_id = "workspaces_labels", path = "/api/v1/organisations/{id}/mcp-server-workspaces/{workspace_id}/labels", tag = "workspaces", request_body = Labels, params(("id" = Uuid, Path, description = "the organisation"), ("workspace_id" = Uuid, Path)), responses((status = 200, body = Labels), (status = 401, description = "no valid access token", body = ErrorBody), (status = 403, description = "the role does not allow it", body = ErrorBody), (status = 404, description = "not in the caller's organisation", body = ErrorBody), (status = 422, description = "a field is wrong; `field` names it", body = ErrorBody)), security(("bearer" = [])))]
pub async fn workspace(
    State(state): State<AdminState>,
    caller: AdminCaller,
    Ids(organisation, workspace): Ids,
    Body(labels): Body<Labels>,
) -> Result<Json<Labels>, ApiError> {
    caller.own(Id(organisation))?;
    let id = WorkspaceId(workspace);
    caller
        .require_write_on(state.store.workspace(caller.organisation(), id))
        .await?;
    replace(&state, &caller, PolicyTarget::Workspace(id), labels).await
}

/// `PUT /agent-accesses/{id}/labels` (admins).
#[utoipa::path(put, operation_id = "agent_accesses_labels", path = "/api/v1/agent-accesses/{id}/labels", tag = "agent accesses", request_body = Labels, params(("id" = Uuid, Path, description = "the id")), responses((status = 200, body = Labels), (status = 401, description = "no valid access token", body = ErrorBody), (status = 403, description = "the role does not allow it", body = ErrorBody), (status = 404, description = "not in the caller's organisation", body = ErrorBody), (status = 422, description = "a field is wrong; `field` names it", body = ErrorBody)), security(("bearer" = [])))]
pub async fn agent_access(
    State(state): State<AdminState>,
    caller: AdminCaller,
    id: Id,
    Body(labels): Body<Labels>,
) -> Result<Json<Labels>, ApiError> {
    let id = AgentId(id.0);
    caller
        .require_write_on(state.store.agent_access(caller.organisation(), id))
        .await?;
    replace(&state, &caller, PolicyTarget::Agent(id), labels).await
}
