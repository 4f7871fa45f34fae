//! MCP server workspaces of an organisation. Upstream header and environment values (credentials, as
//! often as not) are write-only: responses show their names with the values masked.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use std::collections::BTreeMap;

use cerberus_core::WorkspaceId;
use cerberus_core::store::{
    Environment, NewWorkspace, UpstreamDefinition, Workspace, WorkspaceChanges,
};
use serde::Deserialize;

use super::AdminState;
use super::error::{ApiError, ErrorBody};
use super::extract::{AdminCaller, Body, Id, Ids, Listing, Pagination};
use super::validate;

/// What responses show instead of a header or environment value.
const MASK: &str = "********";

/// A new workspace.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewWorkspaceBody {
    #[schema(value_type = validate::Name)]
    name: String,
    #[serde(default = "production")]
    environment: Environment,
    upstream: UpstreamDefinition,
}

fn production() -> Environment {
    Environment::Production
}

/// Changes to a workspace; absent fields stay as they are.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkspaceChangesBody {
    #[schema(value_type = Option<validate::Name>)]
    name: Option<String>,
    environment: Option<Environment>,
    upstream: Option<UpstreamDefinition>,
}

/// A workspace as the API shows it.
pub fn shown(mut workspace: Workspace) -> Workspace {
    match &mut workspace.upstream {
        UpstreamDefinition::Http { headers, .. } => {
            headers.values_mut().for_each(|v| *v = MASK.into())
        }
        UpstreamDefinition::Stdio { env, .. } => env.values_mut().for_each(|v| *v = MASK.into()),
    }
    workspace
}

/// The secret values of an upstream: its headers (HTTP) or its environment (stdio), with the
/// field's name.
fn secrets(upstream: &UpstreamDefinition) -> (&'static str, &BTreeMap<String, String>) {
    match upstream {
        UpstreamDefinition::Http { headers, .. } => ("headers", headers),
        UpstreamDefinition::Stdio { env, .. } => ("env", env),
    }
}

/// Whether `upstream` carries a value as the API shows it masked.
fn masks_any(upstream: &UpstreamDefinition) -> bool {
    secrets(upstream).1.values().any(|v| v == MASK)
}

/// Puts back the stored value of each secret `upstream` carries masked, as a client that read a
/// workspace and wrote it back sends it: the mask stands for "keep it". A mask with no stored value
/// of the same name behind it is refused, rather than stored as the secret.
fn unmask(upstream: &mut UpstreamDefinition, stored: &UpstreamDefinition) -> Result<(), ApiError> {
    let field = secrets(upstream).0;
    let stored = secrets(stored).1;
    let values = match upstream {
        UpstreamDefinition::Http { headers, .. } => headers,
        UpstreamDefinition::Stdio { env, .. } => env,
    };
    for (name, value) in values.iter_mut() {
        if value != MASK {
            continue;
        }
        match stored.get(name) {
            Some(kept) => value.clone_from(kept),
            None => {
                return Err(ApiError::invalid(
                    format!("upstream.{field}.{name}"),
                    format!("`{MASK}` stands for a stored value, and this workspace has none"),
                ));
            }
        }
    }
    Ok(())
}

/// Checks an upstream the way the proxy will use it.
fn check_upstream(state: &AdminState, upstream: &UpstreamDefinition) -> Result<(), ApiError> {
    if matches!(upstream, UpstreamDefinition::Stdio { .. }) && !state.settings.allow_stdio_upstreams
    {
        return Err(ApiError::invalid(
            "upstream.command",
            "stdio upstreams run commands on the gateway's machine and are disabled for the admin API \
             (admin.allow_stdio_upstreams)",
        ));
    }
    crate::upstream::Upstream::from_definition(upstream, std::path::Path::new("."))
        .map(drop)
        .map_err(|e| ApiError::invalid(format!("upstream.{}", e.field), e.message))
}

/// The caller's workspace `id`, or 404.
pub(super) async fn caller_workspace(
    state: &AdminState,
    caller: &AdminCaller,
    id: WorkspaceId,
) -> Result<Workspace, ApiError> {
    state
        .store
        .workspace(caller.organisation(), id)
        .await?
        .ok_or(ApiError::NotFound)
}

/// `GET /organisations/{id}/mcp-server-workspaces`.
#[utoipa::path(get, operation_id = "workspaces_list", path = "/api/v1/organisations/{id}/mcp-server-workspaces", tag = "workspaces", params(("id" = Uuid, Path, description = "the id"), ("limit" = Option<u32>, Query, description = "1 to 200, default 50", minimum = 1, maximum = 200), ("offset" = Option<u64>, Query, description = "0 to 9223372036854775807, default 0", minimum = 0, maximum = 9223372036854775807_u64)), responses((status = 200, body = Listing<Workspace>), (status = 401, description = "no valid access token", body = ErrorBody), (status = 404, description = "not in the caller's organisation", body = ErrorBody)), security(("bearer" = [])))]
pub async fn list(
    State(state): State<AdminState>,
    caller: AdminCaller,
    id: Id,
    Pagination(page): Pagination,
) -> Result<Json<Listing<Workspace>>, ApiError> {
    let organisation = caller.own(id)?;
    let workspaces = state.store.workspaces(organisation, page).await?;
    Ok(Json(Listing::of(
        workspaces.into_iter().map(shown).collect(),
        page,
    )))
}

/// `POST /organisations/{id}/mcp-server-workspaces` (admins).
#[utoipa::path(post, operation_id = "workspaces_create", path = "/api/v1/organisations/{id}/mcp-server-workspaces", tag = "workspaces", request_body = NewWorkspaceBody, params(("id" = Uuid, Path, description = "the id")), responses((status = 201, body = Workspace), (status = 401, description = "no valid access token", body = ErrorBody), (status = 403, description = "the role does not allow it", body = ErrorBody), (status = 404, description = "not in the caller's organisation", body = ErrorBody), (status = 409, description = "the name is taken", body = ErrorBody), (status = 422, description = "a field is wrong; `field` names it", body = ErrorBody)), security(("bearer" = [])))]
pub async fn create(
    State(state): State<AdminState>,
    caller: AdminCaller,
    id: Id,
    Body(new): Body<NewWorkspaceBody>,
) -> Result<(StatusCode, Json<Workspace>), ApiError> {
    let organisation = caller.own(id)?;
    caller.require_write()?;
    let name = validate::name("name", &new.name)?;
    check_upstream(&state, &new.upstream)?;
    let workspace = state
        .store
        .create_workspace(
            organisation,
            NewWorkspace {
                name,
                environment: new.environment,
                upstream: new.upstream,
            },
        )
        .await?;
    Ok((StatusCode::CREATED, Json(shown(workspace))))
}

/// `GET /organisations/{id}/mcp-server-workspaces/{workspace}`.
#[utoipa::path(get, operation_id = "workspaces_get", path = "/api/v1/organisations/{id}/mcp-server-workspaces/{workspace_id}", tag = "workspaces", params(("id" = Uuid, Path, description = "the organisation"), ("workspace_id" = Uuid, Path)), responses((status = 200, body = Workspace), (status = 401, description = "no valid access token", body = ErrorBody), (status = 404, description = "not in the caller's organisation", body = ErrorBody)), security(("bearer" = [])))]
pub async fn get(
    State(state): State<AdminState>,
    caller: AdminCaller,
    Ids(organisation, workspace): Ids,
) -> Result<Json<Workspace>, ApiError> {
    caller.own(Id(organisation))?;
    caller_workspace(&state, &caller, WorkspaceId(workspace))
        .await
        .map(|w| Json(shown(w)))
}

/// `PATCH /organisations/{id}/mcp-server-workspaces/{workspace}` (admins).
#[utoipa::path(patch, operation_id = "workspaces_update", path = "/api/v1/organisations/{id}/mcp-server-workspaces/{workspace_id}", tag = "workspaces", request_body = WorkspaceChangesBody, params(("id" = Uuid, Path, description = "the organisation"), ("workspace_id" = Uuid, Path)), responses((status = 200, body = Workspace), (status = 401, description = "no valid access token", body = ErrorBody), (status = 403, description = "the role does not allow it", body = ErrorBody), (status = 404, description = "not in the caller's organisation", body = ErrorBody), (status = 409, description = "the name is taken", body = ErrorBody), (status = 422, description = "a field is wrong; `field` names it", body = ErrorBody)), security(("bearer" = [])))]
pub async fn update(
    State(state): State<AdminState>,
    caller: AdminCaller,
    Ids(organisation, workspace): Ids,
    Body(changes): Body<WorkspaceChangesBody>,
) -> Result<Json<Workspace>, ApiError> {
    let organisation = caller.own(Id(organisation))?;
    caller.require_write()?;
    let name = changes
        .name
        .as_deref()
        .map(|n| validate::name("name", n))
        .transpose()?;
    let upstream = match changes.upstream {
        Some(mut upstream) => {
            if masks_any(&upstream) {
                let stored = caller_workspace(&state, &caller, WorkspaceId(workspace)).await?;
                unmask(&mut upstream, &stored.upstream)?;
            }
            check_upstream(&state, &upstream)?;
            Some(upstream)
        }
        None => None,
    };
    let updated = state
        .store
        .update_workspace(
            organisation,
            WorkspaceId(workspace),
            WorkspaceChanges {
                name,
                environment: changes.environment,
                upstream,
            },
        )
        .await?
        .ok_or(ApiError::NotFound)?;
    state.changed();
    Ok(Json(shown(updated)))
}

/// `DELETE /organisations/{id}/mcp-server-workspaces/{workspace}` (admins): its agent accesses and
/// policies go with it.
#[utoipa::path(delete, operation_id = "workspaces_delete", path = "/api/v1/organisations/{id}/mcp-server-workspaces/{workspace_id}", tag = "workspaces", params(("id" = Uuid, Path, description = "the organisation"), ("workspace_id" = Uuid, Path)), responses((status = 204), (status = 401, description = "no valid access token", body = ErrorBody), (status = 403, description = "the role does not allow it", body = ErrorBody), (status = 404, description = "not in the caller's organisation", body = ErrorBody)), security(("bearer" = [])))]
pub async fn delete(
    State(state): State<AdminState>,
    caller: AdminCaller,
    Ids(organisation, workspace): Ids,
) -> Result<StatusCode, ApiError> {
    let organisation = caller.own(Id(organisation))?;
    caller.require_write()?;
    if !state
        .store
        .delete_workspace(organisation, WorkspaceId(workspace))
        .await?
    {
        return Err(ApiError::NotFound);
    }
    state.changed();
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http(headers: &[(&str, &str)]) -> UpstreamDefinition {
        UpstreamDefinition::Http {
            url: "https://mcp.example.com/mcp".into(),
            headers: headers
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }

    #[test]
    fn a_masked_value_written_back_keeps_the_stored_secret() {
        let stored = http(&[("Authorization", "Bearer up-secret"), ("X-Tenant", "acme")]);
        let mut written = http(&[("Authorization", MASK), ("X-Tenant", "other")]);
        assert!(masks_any(&written));
        unmask(&mut written, &stored).unwrap();
        assert_eq!(
            written,
            http(&[("Authorization", "Bearer up-secret"), ("X-Tenant", "other")])
        );
        // A mask that stands for nothing is refused, not stored as the secret.
        let mut invented = http(&[("X-Key", MASK)]);
        let error = unmask(&mut invented, &stored).unwrap_err();
        assert!(
            error.to_string().starts_with("upstream.headers.X-Key"),
            "{error}"
        );
    }
}
