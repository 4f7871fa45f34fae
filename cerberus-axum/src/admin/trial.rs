//! Trying a policy before it is stored: `POST /policies/check` checks a document as `POST /policies`
//! would and, given a sample message, runs it with the policies it would join (the stored ones above
//! and below its level, the tried one in place of its level's) through the `cerberus check` engine,
//! in a sandbox that spends no agent's quota and pins nothing. `GET /guardrail-types` names the
//! types a document may use in this build.

use axum::Json;
use axum::extract::State;
use cerberus_core::store::PolicyTarget;
use cerberus_core::{AgentId, Direction, Message, PolicyDocument, PolicyLevel, WorkspaceId};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use super::AdminState;
use super::error::{ApiError, ErrorBody};
use super::extract::{AdminCaller, Body};
use super::policies::check_document;

/// A policy to try.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyTrial {
    /// `organisation`, `workspace` or `agent`.
    level: PolicyLevel,
    /// The id of the organisation, workspace or agent access it would be attached to.
    target_id: Uuid,
    /// The policy document.
    #[schema(value_type = Object)]
    document: Value,
    /// A JSON-RPC message to run through the effective policy; without one, only the document is
    /// checked.
    #[schema(value_type = Option<Object>)]
    message: Option<Value>,
    /// `request` (from the client) or `response` (from the server); by default, inferred from the
    /// message.
    #[schema(value_type = Option<String>, pattern = "^(request|response)$")]
    direction: Option<Direction>,
    /// For a response: the method of the request it answers (`tools/call`).
    method: Option<String>,
}

/// What a trial found.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TrialReport {
    /// The document is valid (an invalid one is 422, naming the entry).
    valid: bool,
    /// With a message: what the pipeline decided (`decision`, the decision's details, `message`
    /// after the pipeline, `trace` with each guardrail's level, `ignored` overrides), as
    /// `cerberus check` prints it.
    #[schema(value_type = Option<Object>)]
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<Value>,
}

/// `POST /policies/check` (admins): checks a document and tries it on a sample message.
#[utoipa::path(post, operation_id = "policies_check", path = "/api/v1/policies/check", tag = "policies", request_body = PolicyTrial, responses((status = 200, body = TrialReport), (status = 401, description = "no valid access token", body = ErrorBody), (status = 403, description = "the role does not allow it", body = ErrorBody), (status = 404, description = "the target is not in the caller's organisation", body = ErrorBody), (status = 422, description = "the document or the message is wrong; `field` names the entry", body = ErrorBody)), security(("bearer" = [])))]
pub async fn check(
    State(state): State<AdminState>,
    caller: AdminCaller,
    Body(trial): Body<PolicyTrial>,
) -> Result<Json<TrialReport>, ApiError> {
    caller.require_write()?;
    let organisation = caller.organisation();
    // The levels above the tried one, by the target's place in the hierarchy.
    let (workspace, agent) = match trial.level {
        PolicyLevel::Organisation if trial.target_id == organisation.0 => (None, None),
        PolicyLevel::Workspace => {
            let workspace = WorkspaceId(trial.target_id);
            state
                .store
                .workspace(organisation, workspace)
                .await?
                .ok_or(ApiError::NotFound)?;
            (Some(workspace), None)
        }
        PolicyLevel::Agent => {
            let agent = state
                .store
                .agent_access(organisation, AgentId(trial.target_id))
                .await?
                .ok_or(ApiError::NotFound)?;
            (Some(agent.workspace), Some(agent.id))
        }
        PolicyLevel::Organisation => return Err(ApiError::NotFound),
        other => {
            return Err(ApiError::invalid(
                "level",
                format!("policies cannot be attached at the {other} level"),
            ));
        }
    };
    let tried = check_document(&state, &trial.document)?;
    let Some(message) = trial.message else {
        return Ok(Json(TrialReport {
            valid: true,
            result: None,
        }));
    };
    let message =
        Message::from_value(message).map_err(|e| ApiError::invalid("message", e.to_string()))?;

    let targets = [
        (
            PolicyLevel::Organisation,
            Some(PolicyTarget::Organisation(organisation)),
        ),
        (
            PolicyLevel::Workspace,
            workspace.map(PolicyTarget::Workspace),
        ),
        (PolicyLevel::Agent, agent.map(PolicyTarget::Agent)),
    ];
    let mut policies = Vec::with_capacity(targets.len());
    for (level, target) in targets {
        if level == trial.level {
            policies.push((level, tried.clone()));
        } else if let Some(target) = target
            && let Some(stored) = state.store.policy_for(organisation, target).await?
        {
            let document = PolicyDocument::from_value(stored.document).map_err(|e| {
                ApiError::Unavailable(format!("the stored {level} policy no longer parses: {e}"))
            })?;
            policies.push((level, document));
        }
    }
    // A sandbox per trial: its rate limits and pins go with it.
    let report = crate::check::check(
        &state.registry.sandbox(),
        &policies,
        message,
        trial.direction,
        trial.method.as_deref(),
    )
    .await
    .map_err(|e| ApiError::invalid("document", e.to_string()))?;
    Ok(Json(TrialReport {
        valid: true,
        result: Some(report.to_json()),
    }))
}

/// The guardrail types of this build.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct GuardrailTypes {
    /// Their names, the built-in ones first.
    types: Vec<String>,
}

/// `GET /guardrail-types`.
#[utoipa::path(get, operation_id = "guardrail_types", path = "/api/v1/guardrail-types", tag = "policies", responses((status = 200, body = GuardrailTypes), (status = 401, description = "no valid access token", body = ErrorBody)), security(("bearer" = [])))]
pub async fn types(State(state): State<AdminState>, _caller: AdminCaller) -> Json<GuardrailTypes> {
    Json(GuardrailTypes {
        types: state
            .registry
            .type_names()
            .into_iter()
            .map(str::to_owned)
            .collect(),
    })
}
