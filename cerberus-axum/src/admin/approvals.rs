//! Calls held for approval: listed and read by every role, answered by admins. The call waits on
//! whichever instance holds it; an answer given here reaches it there (see [`crate::approvals`]).

use axum::Json;
use axum::extract::{FromRequestParts, Query, State};
use axum::http::request::Parts;
use cerberus_core::store::{Approval, ApprovalId, ApprovalStatus, Verdict};
use serde::Deserialize;

use super::AdminState;
use super::error::{ApiError, ErrorBody};
use super::extract::{AdminCaller, Body, Id, Ids, Listing, Pagination};

/// The most characters of an admin's note or reason.
const MAX_NOTE_CHARS: usize = 1000;

/// `?status=&limit=&offset=` on the list.
pub struct ApprovalQuery {
    status: Option<ApprovalStatus>,
    page: Pagination,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawQuery {
    status: Option<String>,
    limit: Option<u32>,
    offset: Option<u64>,
}

impl<S: Send + Sync> FromRequestParts<S> for ApprovalQuery {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Query(query) = Query::<RawQuery>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::invalid("query", e.body_text()))?;
        let status = query
            .status
            .as_deref()
            .map(str::parse)
            .transpose()
            .map_err(|e: String| ApiError::invalid("status", e))?;
        Ok(Self {
            status,
            page: Pagination::of(query.limit, query.offset)?,
        })
    }
}

/// An admin's answer.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AnswerBody {
    /// Why, shown in the approval and, for a denial, in the error the caller gets (at most 1000
    /// characters).
    #[serde(default, alias = "reason")]
    note: Option<String>,
}

/// `GET /organisations/{id}/approvals`.
#[utoipa::path(get, operation_id = "approvals_list", path = "/api/v1/organisations/{id}/approvals", tag = "approvals", params(("id" = Uuid, Path, description = "the organisation"), ("status" = Option<String>, Query, description = "pending, approved, denied or timed_out", pattern = "^(pending|approved|denied|timed_out)$"), ("limit" = Option<u32>, Query, description = "1 to 200, default 50", minimum = 1, maximum = 200), ("offset" = Option<u64>, Query, description = "0 to 9223372036854775807, default 0", minimum = 0, maximum = 9223372036854775807_u64)), responses((status = 200, body = Listing<Approval>), (status = 401, description = "no valid access token", body = ErrorBody), (status = 404, description = "not in the caller's organisation", body = ErrorBody), (status = 422, description = "a field is wrong; `field` names it", body = ErrorBody)), security(("bearer" = [])))]
pub async fn list(
    State(state): State<AdminState>,
    caller: AdminCaller,
    id: Id,
    query: ApprovalQuery,
) -> Result<Json<Listing<Approval>>, ApiError> {
    let organisation = caller.own(id)?;
    let page = query.page.0;
    let items = state
        .store
        .approvals(organisation, query.status, page)
        .await?;
    Ok(Json(Listing::of(items, page)))
}

/// `GET /organisations/{id}/approvals/{approval_id}`.
#[utoipa::path(get, operation_id = "approvals_get", path = "/api/v1/organisations/{id}/approvals/{approval_id}", tag = "approvals", params(("id" = Uuid, Path, description = "the organisation"), ("approval_id" = Uuid, Path)), responses((status = 200, body = Approval), (status = 401, description = "no valid access token", body = ErrorBody), (status = 404, description = "not in the caller's organisation", body = ErrorBody)), security(("bearer" = [])))]
pub async fn get(
    State(state): State<AdminState>,
    caller: AdminCaller,
    Ids(organisation, approval): Ids,
) -> Result<Json<Approval>, ApiError> {
    let organisation = caller.own(Id(organisation))?;
    state
        .store
        .approval(organisation, ApprovalId(approval))
        .await?
        .map(Json)
        .ok_or(ApiError::NotFound)
}

/// Answers a pending approval on the caller's behalf.
async fn answer(
    state: &AdminState,
    caller: &AdminCaller,
    organisation: Id,
    approval: uuid::Uuid,
    verdict: Verdict,
    body: AnswerBody,
) -> Result<Json<Approval>, ApiError> {
    let organisation = caller.own(organisation)?;
    let id = ApprovalId(approval);
    caller
        .require_write_on(state.store.approval(organisation, id))
        .await?;
    let note = body
        .note
        .as_deref()
        .map(str::trim)
        .filter(|n| !n.is_empty());
    if note.is_some_and(|n| n.chars().count() > MAX_NOTE_CHARS) {
        return Err(ApiError::invalid(
            "note",
            format!("at most {MAX_NOTE_CHARS} characters"),
        ));
    }
    let me = caller.user.id.to_string();
    let approval = state
        .store
        .decide_approval(organisation, id, verdict, &me, note)
        .await?
        .ok_or(ApiError::NotFound)?;
    let wanted = match verdict {
        Verdict::Approve => ApprovalStatus::Approved,
        Verdict::Deny => ApprovalStatus::Denied,
    };
    if approval.status != wanted || approval.decided_by.as_deref() != Some(me.as_str()) {
        return Err(ApiError::Outdated(match approval.status {
            ApprovalStatus::Pending => "the call no longer waits: its time is up".to_owned(),
            status => format!("the approval is already {status}"),
        }));
    }
    tracing::info!(approval = %id, status = %approval.status, decided_by = %me, "held call answered by an admin");
    if let Some(approver) = &state.approvals {
        approver.answered();
    }
    Ok(Json(approval))
}

/// `POST /organisations/{id}/approvals/{approval_id}/approve` (admins).
#[utoipa::path(post, operation_id = "approvals_approve", path = "/api/v1/organisations/{id}/approvals/{approval_id}/approve", tag = "approvals", request_body = AnswerBody, params(("id" = Uuid, Path, description = "the organisation"), ("approval_id" = Uuid, Path)), responses((status = 200, body = Approval), (status = 401, description = "no valid access token", body = ErrorBody), (status = 403, description = "the role does not allow it", body = ErrorBody), (status = 404, description = "not in the caller's organisation", body = ErrorBody), (status = 409, description = "already answered, or timed out", body = ErrorBody), (status = 422, description = "a field is wrong; `field` names it", body = ErrorBody)), security(("bearer" = [])))]
pub async fn approve(
    State(state): State<AdminState>,
    caller: AdminCaller,
    Ids(organisation, approval): Ids,
    Body(body): Body<AnswerBody>,
) -> Result<Json<Approval>, ApiError> {
    answer(
        &state,
        &caller,
        Id(organisation),
        approval,
        Verdict::Approve,
        body,
    )
    .await
}

/// `POST /organisations/{id}/approvals/{approval_id}/deny` (admins).
#[utoipa::path(post, operation_id = "approvals_deny", path = "/api/v1/organisations/{id}/approvals/{approval_id}/deny", tag = "approvals", request_body = AnswerBody, params(("id" = Uuid, Path, description = "the organisation"), ("approval_id" = Uuid, Path)), responses((status = 200, body = Approval), (status = 401, description = "no valid access token", body = ErrorBody), (status = 403, description = "the role does not allow it", body = ErrorBody), (status = 404, description = "not in the caller's organisation", body = ErrorBody), (status = 409, description = "already answered, or timed out", body = ErrorBody), (status = 422, description = "a field is wrong; `field` names it", body = ErrorBody)), security(("bearer" = [])))]
pub async fn deny(
    State(state): State<AdminState>,
    caller: AdminCaller,
    Ids(organisation, approval): Ids,
    Body(body): Body<AnswerBody>,
) -> Result<Json<Approval>, ApiError> {
    answer(
        &state,
        &caller,
        Id(organisation),
        approval,
        Verdict::Deny,
        body,
    )
    .await
}
