//! Policies on the hierarchy, validated against the guardrail registry before they are stored, and the
//! effective policy of a workspace and its agents as the proxy will apply it.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use cerberus_core::store::{AgentAccess, Page, PolicyId, PolicyTarget, StoredPolicy};
use cerberus_core::{
    AgentId, EffectivePolicy, OrganisationId, PolicyDocument, PolicyLevel, WorkspaceId,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::AdminState;
use super::error::{ApiError, ErrorBody};
use super::extract::{AdminCaller, Body, Id, Listing, Pagination};
use super::workspaces::caller_workspace;

/// A new policy.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewPolicy {
    /// `organisation`, `workspace` or `agent`.
    level: PolicyLevel,
    /// The id of the organisation, workspace or agent access.
    target_id: Uuid,
    /// The policy document.
    #[schema(value_type = Object)]
    document: serde_json::Value,
}

/// A replacement document.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyUpdate {
    /// The policy document.
    #[schema(value_type = Object)]
    pub(super) document: serde_json::Value,
}

/// Checks a document as the proxy will build it, naming the field; the parsed document.
pub(super) fn check_document(
    state: &AdminState,
    document: &serde_json::Value,
) -> Result<PolicyDocument, ApiError> {
    let parsed = PolicyDocument::from_value(document.clone())
        .map_err(|e| ApiError::invalid(prefixed(&e.path), e.message))?;
    state
        .registry
        .validate(&parsed)
        .map_err(|e| ApiError::invalid(prefixed(&e.path), e.message))?;
    Ok(parsed)
}

fn prefixed(path: &str) -> String {
    if path.is_empty() {
        "document".to_owned()
    } else {
        format!("document.{path}")
    }
}

/// `POST /policies` (admins): attaches a policy to one of the caller's targets.
#[utoipa::path(post, operation_id = "policies_create", path = "/api/v1/policies", tag = "policies", request_body = NewPolicy, responses((status = 201, body = StoredPolicy), (status = 401, description = "no valid access token", body = ErrorBody), (status = 403, description = "the role does not allow it", body = ErrorBody), (status = 404, description = "not in the caller's organisation", body = ErrorBody), (status = 409, description = "the name is taken", body = ErrorBody), (status = 422, description = "a field is wrong; `field` names it", body = ErrorBody)), security(("bearer" = [])))]
pub async fn create(
    State(state): State<AdminState>,
    caller: AdminCaller,
    Body(new): Body<NewPolicy>,
) -> Result<(StatusCode, Json<StoredPolicy>), ApiError> {
    let target = match new.level {
        PolicyLevel::Organisation => PolicyTarget::Organisation(OrganisationId(new.target_id)),
        PolicyLevel::Workspace => PolicyTarget::Workspace(WorkspaceId(new.target_id)),
        PolicyLevel::Agent => PolicyTarget::Agent(AgentId(new.target_id)),
        other => {
            return Err(ApiError::invalid(
                "level",
                format!("policies cannot be attached at the {other} level"),
            ));
        }
    };
    let organisation = caller.organisation();
    let target_is_ours = async {
        Ok(match target {
            PolicyTarget::Organisation(id) => (id == organisation).then_some(()),
            PolicyTarget::Workspace(id) => state.store.workspace(organisation, id).await?.map(drop),
            PolicyTarget::Agent(id) => state.store.agent_access(organisation, id).await?.map(drop),
        })
    };
    caller.require_write_on(target_is_ours).await?;
    check_document(&state, &new.document)?;
    let policy = state
        .store
        .create_policy(caller.organisation(), target, &new.document)
        .await?
        .ok_or(ApiError::NotFound)?;
    state.changed();
    Ok((StatusCode::CREATED, Json(policy)))
}

/// `GET /policies`.
#[utoipa::path(get, operation_id = "policies_list", path = "/api/v1/policies", tag = "policies", params(("limit" = Option<u32>, Query, description = "1 to 200, default 50", minimum = 1, maximum = 200), ("offset" = Option<u64>, Query, description = "0 to 9223372036854775807, default 0", minimum = 0, maximum = 9223372036854775807_u64)), responses((status = 200, body = Listing<StoredPolicy>), (status = 401, description = "no valid access token", body = ErrorBody)), security(("bearer" = [])))]
pub async fn list(
    State(state): State<AdminState>,
    caller: AdminCaller,
    Pagination(page): Pagination,
) -> Result<Json<Listing<StoredPolicy>>, ApiError> {
    let policies = state.store.policies(caller.organisation(), page).await?;
    Ok(Json(Listing::of(policies, page)))
}

/// `GET /policies/{id}`.
#[utoipa::path(get, operation_id = "policies_get", path = "/api/v1/policies/{id}", tag = "policies", params(("id" = Uuid, Path, description = "the id")), responses((status = 200, body = StoredPolicy), (status = 401, description = "no valid access token", body = ErrorBody), (status = 404, description = "not in the caller's organisation", body = ErrorBody)), security(("bearer" = [])))]
pub async fn get(
    State(state): State<AdminState>,
    caller: AdminCaller,
    id: Id,
) -> Result<Json<StoredPolicy>, ApiError> {
    state
        .store
        .policy(caller.organisation(), PolicyId(id.0))
        .await?
        .map(Json)
        .ok_or(ApiError::NotFound)
}

/// `PUT /policies/{id}` (admins): replaces the document.
#[utoipa::path(put, operation_id = "policies_update", path = "/api/v1/policies/{id}", tag = "policies", request_body = PolicyUpdate, params(("id" = Uuid, Path, description = "the id")), responses((status = 200, body = StoredPolicy), (status = 401, description = "no valid access token", body = ErrorBody), (status = 403, description = "the role does not allow it", body = ErrorBody), (status = 404, description = "not in the caller's organisation", body = ErrorBody), (status = 422, description = "a field is wrong; `field` names it", body = ErrorBody)), security(("bearer" = [])))]
pub async fn update(
    State(state): State<AdminState>,
    caller: AdminCaller,
    id: Id,
    Body(update): Body<PolicyUpdate>,
) -> Result<Json<StoredPolicy>, ApiError> {
    caller
        .require_write_on(state.store.policy(caller.organisation(), PolicyId(id.0)))
        .await?;
    check_document(&state, &update.document)?;
    let policy = state
        .store
        .update_policy(caller.organisation(), PolicyId(id.0), &update.document)
        .await?
        .ok_or(ApiError::NotFound)?;
    state.changed();
    Ok(Json(policy))
}

/// `DELETE /policies/{id}` (admins).
#[utoipa::path(delete, operation_id = "policies_delete", path = "/api/v1/policies/{id}", tag = "policies", params(("id" = Uuid, Path, description = "the id")), responses((status = 204), (status = 401, description = "no valid access token", body = ErrorBody), (status = 403, description = "the role does not allow it", body = ErrorBody), (status = 404, description = "not in the caller's organisation", body = ErrorBody)), security(("bearer" = [])))]
pub async fn delete(
    State(state): State<AdminState>,
    caller: AdminCaller,
    id: Id,
) -> Result<StatusCode, ApiError> {
    caller
        .require_write_on(state.store.policy(caller.organisation(), PolicyId(id.0)))
        .await?;
    if !state
        .store
        .delete_policy(caller.organisation(), PolicyId(id.0))
        .await?
    {
        return Err(ApiError::NotFound);
    }
    state.changed();
    Ok(StatusCode::NO_CONTENT)
}

/// The effective policies of a workspace.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EffectivePolicies {
    /// What applies to an agent of the workspace that has no policy of its own.
    #[schema(value_type = Object)]
    workspace: EffectivePolicy,
    /// What applies to each agent access (the first 200).
    agents: Vec<AgentEffectivePolicy>,
}

/// What applies to one agent access.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AgentEffectivePolicy {
    agent_access_id: AgentId,
    name: String,
    #[schema(value_type = Object)]
    effective: EffectivePolicy,
}

/// `GET /policies/mcp-server-workspaces/{id}/effective-policies`.
#[utoipa::path(get, operation_id = "policies_effective", path = "/api/v1/policies/mcp-server-workspaces/{id}/effective-policies", tag = "policies", params(("id" = Uuid, Path, description = "the id")), responses((status = 200, body = EffectivePolicies), (status = 401, description = "no valid access token", body = ErrorBody), (status = 404, description = "not in the caller's organisation", body = ErrorBody)), security(("bearer" = [])))]
pub async fn effective(
    State(state): State<AdminState>,
    caller: AdminCaller,
    id: Id,
) -> Result<Json<EffectivePolicies>, ApiError> {
    let organisation = caller.organisation();
    let workspace = caller_workspace(&state, &caller, WorkspaceId(id.0)).await?;
    let document = |policy: Option<StoredPolicy>| -> Result<Option<PolicyDocument>, ApiError> {
        policy
            .map(|p| PolicyDocument::from_value(p.document))
            .transpose()
            .map_err(|e| ApiError::Unavailable(format!("a stored policy no longer parses: {e}")))
    };
    let org_policy = document(
        state
            .store
            .policy_for(organisation, PolicyTarget::Organisation(organisation))
            .await?,
    )?;
    let workspace_policy = document(
        state
            .store
            .policy_for(organisation, PolicyTarget::Workspace(workspace.id))
            .await?,
    )?;
    let merge = |agent: Option<&PolicyDocument>| {
        let levels = [
            (PolicyLevel::Organisation, org_policy.as_ref()),
            (PolicyLevel::Workspace, workspace_policy.as_ref()),
            (PolicyLevel::Agent, agent),
        ];
        EffectivePolicy::merge(levels.into_iter().filter_map(|(l, d)| Some((l, d?))))
    };
    let page = Page {
        limit: 200,
        offset: 0,
    };
    let agents: Vec<AgentAccess> = state
        .store
        .agent_accesses(organisation, workspace.id, page)
        .await?;
    let mut effective_agents = Vec::with_capacity(agents.len());
    for agent in agents {
        let own = document(
            state
                .store
                .policy_for(organisation, PolicyTarget::Agent(agent.id))
                .await?,
        )?;
        effective_agents.push(AgentEffectivePolicy {
            agent_access_id: agent.id,
            name: agent.name,
            effective: merge(own.as_ref()),
        });
    }
    Ok(Json(EffectivePolicies {
        workspace: merge(None),
        agents: effective_agents,
    }))
}
