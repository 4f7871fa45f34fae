//! Pinned tool definitions of a workspace: what its server listed, what is pinned, the difference,
//! and the approval of a new definition (`tool_pinning` guardrail).

use std::time::SystemTime;

use axum::Json;
use axum::extract::{FromRequestParts, Query, State};
use axum::http::request::Parts;
use cerberus_core::WorkspaceId;
use cerberus_core::pinning::{Approval, PinStatus, ToolPin};
use cerberus_core::store::rfc3339;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::AdminState;
use super::error::{ApiError, ErrorBody};
use super::extract::{AdminCaller, Body, Id, Ids};
use super::workspaces::caller_workspace;

/// One member of a definition that differs between the pinned and the listed definition.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MemberChangeView {
    /// `name`, `title`, `description`, `inputSchema`, `outputSchema` or `annotations`.
    member: &'static str,
    /// Its pinned value; absent when the listed definition adds the member.
    #[serde(skip_serializing_if = "Option::is_none")]
    pinned: Option<Value>,
    /// Its listed value; absent when the listed definition drops the member.
    #[serde(skip_serializing_if = "Option::is_none")]
    listed: Option<Value>,
}

/// One tool of a workspace as its pin holds it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ToolPinView {
    /// The tool's name.
    tool: String,
    /// `approved` (the listed definition is the pinned one), `changed` or `new`.
    #[schema(value_type = String, pattern = "^(approved|changed|new)$")]
    status: PinStatus,
    /// The SHA-256 of the listed definition's canonical form: what an approval names.
    fingerprint: String,
    /// The listed definition: the members a pin covers.
    #[schema(value_type = Object)]
    definition: Map<String, Value>,
    /// When a listing last showed a new definition.
    #[serde(with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    listed_at: SystemTime,
    /// The SHA-256 of the pinned definition; absent for a new tool.
    #[serde(skip_serializing_if = "Option::is_none")]
    pinned_fingerprint: Option<String>,
    /// When the pinned definition was pinned.
    #[serde(with = "rfc3339::option", skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pinned_at: Option<SystemTime>,
    /// The id of the user who approved the pinned definition; absent for one pinned as first seen.
    #[serde(skip_serializing_if = "Option::is_none")]
    approved_by: Option<String>,
    /// What the listed definition changes, member by member; empty when approved.
    changes: Vec<MemberChangeView>,
}

impl From<ToolPin> for ToolPinView {
    fn from(pin: ToolPin) -> Self {
        let changes = match pin.status() {
            PinStatus::Approved => Vec::new(),
            PinStatus::Changed | PinStatus::New => pin
                .changes()
                .into_iter()
                .map(|change| MemberChangeView {
                    member: change.member,
                    pinned: change.pinned,
                    listed: change.current,
                })
                .collect(),
        };
        Self {
            tool: pin.tool().to_owned(),
            status: pin.status(),
            fingerprint: pin.listed.fingerprint().to_owned(),
            definition: pin.listed.members().clone(),
            listed_at: pin.listed_at,
            pinned_fingerprint: pin.pinned.as_ref().map(|p| p.fingerprint().to_owned()),
            pinned_at: pin.pinned_at,
            approved_by: pin.approved_by,
            changes,
        }
    }
}

/// The tools of a workspace.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ToolPins {
    /// By name.
    tools: Vec<ToolPinView>,
}

/// `?status=` on the list: which tools to show, a bad value refused as 422.
pub struct Wanted(fn(PinStatus) -> bool);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PinQuery {
    status: Option<String>,
}

impl<S: Send + Sync> FromRequestParts<S> for Wanted {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Query(query) = Query::<PinQuery>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::invalid("query", e.body_text()))?;
        let wanted: fn(PinStatus) -> bool = match query.status.as_deref() {
            None => |_| true,
            Some("approved") => |s| s == PinStatus::Approved,
            Some("changed") => |s| s == PinStatus::Changed,
            Some("new") => |s| s == PinStatus::New,
            Some("unapproved") => |s| s != PinStatus::Approved,
            Some(_) => {
                return Err(ApiError::invalid(
                    "status",
                    "expected approved, changed, new or unapproved",
                ));
            }
        };
        Ok(Self(wanted))
    }
}

/// The definition an admin approves.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApproveBody {
    /// The tool's name.
    tool: String,
    /// The fingerprint of the listed definition the admin reviewed: if the server has listed
    /// another since, nothing is approved (409).
    #[schema(pattern = "^[0-9a-f]{64}$")]
    fingerprint: String,
}

/// `GET /organisations/{id}/mcp-server-workspaces/{workspace}/tool-pins`.
#[utoipa::path(get, operation_id = "tool_pins_list", path = "/api/v1/organisations/{id}/mcp-server-workspaces/{workspace_id}/tool-pins", tag = "tool pins", params(("id" = Uuid, Path, description = "the organisation"), ("workspace_id" = Uuid, Path), ("status" = Option<String>, Query, description = "approved, changed, new, or unapproved (changed or new)", pattern = "^(approved|changed|new|unapproved)$")), responses((status = 200, body = ToolPins), (status = 401, description = "no valid access token", body = ErrorBody), (status = 404, description = "not in the caller's organisation", body = ErrorBody), (status = 422, description = "a field is wrong; `field` names it", body = ErrorBody)), security(("bearer" = [])))]
pub async fn list(
    State(state): State<AdminState>,
    caller: AdminCaller,
    Ids(organisation, workspace): Ids,
    Wanted(wanted): Wanted,
) -> Result<Json<ToolPins>, ApiError> {
    let organisation = caller.own(Id(organisation))?;
    let workspace = caller_workspace(&state, &caller, WorkspaceId(workspace)).await?;
    let tools = state
        .store
        .pins(organisation, workspace.id)
        .await?
        .into_iter()
        .filter(|pin| wanted(pin.status()))
        .map(ToolPinView::from)
        .collect();
    Ok(Json(ToolPins { tools }))
}

/// `POST /organisations/{id}/mcp-server-workspaces/{workspace}/tool-pins/approve` (admins).
#[utoipa::path(post, operation_id = "tool_pins_approve", path = "/api/v1/organisations/{id}/mcp-server-workspaces/{workspace_id}/tool-pins/approve", tag = "tool pins", request_body = ApproveBody, params(("id" = Uuid, Path, description = "the organisation"), ("workspace_id" = Uuid, Path)), responses((status = 200, body = ToolPinView), (status = 401, description = "no valid access token", body = ErrorBody), (status = 403, description = "the role does not allow it", body = ErrorBody), (status = 404, description = "not in the caller's organisation, or a tool the workspace never listed", body = ErrorBody), (status = 409, description = "the server listed another definition since the one reviewed", body = ErrorBody), (status = 422, description = "a field is wrong; `field` names it", body = ErrorBody)), security(("bearer" = [])))]
pub async fn approve(
    State(state): State<AdminState>,
    caller: AdminCaller,
    Ids(organisation, workspace): Ids,
    Body(body): Body<ApproveBody>,
) -> Result<Json<ToolPinView>, ApiError> {
    let organisation = caller.own(Id(organisation))?;
    let workspace = WorkspaceId(workspace);
    caller
        .require_write_on(state.store.workspace(organisation, workspace))
        .await?;
    let workspace = caller_workspace(&state, &caller, workspace).await?;
    if body.fingerprint.len() != 64 || !body.fingerprint.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::invalid(
            "fingerprint",
            "expected the 64 hexadecimal digits of a listed definition's fingerprint",
        ));
    }
    let approver = caller.user.id.to_string();
    match state
        .store
        .approve(
            organisation,
            workspace.id,
            &body.tool,
            &body.fingerprint.to_ascii_lowercase(),
            &approver,
        )
        .await?
    {
        Approval::Approved(pin) => {
            // Every instance's proxy judges calls by the new pin at once.
            state.changed();
            tracing::info!(
                workspace = %workspace.id,
                tool = %body.tool,
                fingerprint = %body.fingerprint,
                approved_by = %approver,
                "tool definition approved"
            );
            Ok(Json(pin.into()))
        }
        Approval::Stale(pin) => Err(ApiError::Outdated(format!(
            "the server has listed another definition of `{}` since (fingerprint {}): review it and approve that one",
            body.tool,
            pin.listed.fingerprint()
        ))),
        _ => Err(ApiError::NotFound),
    }
}
