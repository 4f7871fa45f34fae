//! Protected resource metadata (RFC 9728), and the `WWW-Authenticate` challenge that points to it.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use cerberus_core::WorkspaceId;

use super::{Resource, ResourceServer, TokenRefusal};
use crate::proxy::{ALIAS_PATH, PROXY_PATH};
use crate::wire;

/// Where the metadata of a resource is: this, then the resource's path (RFC 9728, section 3.1).
pub(super) const WELL_KNOWN: &str = "/.well-known/oauth-protected-resource";

/// The metadata routes of every protected workspace, on both proxy paths.
pub fn router(server: Arc<ResourceServer>) -> Router {
    Router::new()
        .route(
            &format!("{WELL_KNOWN}{ALIAS_PATH}/{{workspace}}"),
            get(|state, path| serve(state, path, ALIAS_PATH)).options(preflight),
        )
        .route(
            &format!("{WELL_KNOWN}{PROXY_PATH}/{{workspace}}"),
            get(|state, path| serve(state, path, PROXY_PATH)).options(preflight),
        )
        .with_state(server)
}

async fn serve(
    State(server): State<Arc<ResourceServer>>,
    Path(workspace): Path<String>,
    base: &'static str,
) -> Response {
    let resource = match WorkspaceId::from_path(&workspace) {
        Some(workspace) => server.resource(workspace).await,
        None => Ok(None),
    };
    let mut response = match resource {
        Ok(Some(resource)) => axum::Json(server.metadata(base, &resource)).into_response(),
        Err(refusal) => refuse(&server, base, None, Some(&refusal)),
        Ok(None) => (
            StatusCode::NOT_FOUND,
            axum::Json(serde_json::json!({"error": "no protected MCP server at this path"})),
        )
            .into_response(),
    };
    // Public metadata: a client running in a browser (the MCP Inspector) reads it across origins.
    response.headers_mut().insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    response
}

/// The answer to a browser's CORS preflight: clients send `MCP-Protocol-Version` with their metadata
/// request, which makes it one that needs asking first.
async fn preflight() -> Response {
    (
        StatusCode::NO_CONTENT,
        [
            (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
            (header::ACCESS_CONTROL_ALLOW_METHODS, "GET"),
            (header::ACCESS_CONTROL_ALLOW_HEADERS, "mcp-protocol-version"),
            (header::ACCESS_CONTROL_MAX_AGE, "86400"),
        ],
    )
        .into_response()
}

/// The response refusing a request to `resource` at `base` for `refusal` (`None`: the request had
/// no credential).
pub fn refuse(
    server: &ResourceServer,
    base: &str,
    resource: Option<&Resource>,
    refusal: Option<&TokenRefusal>,
) -> Response {
    // Without a resource there is nothing to point a client to: the path serves no MCP server.
    let Some(resource) = resource else {
        return match refusal {
            Some(TokenRefusal::Unavailable(message)) => wire::http_error(
                StatusCode::SERVICE_UNAVAILABLE,
                wire::UPSTREAM_UNAVAILABLE,
                message,
            ),
            _ => wire::http_error(
                StatusCode::NOT_FOUND,
                wire::INVALID_REQUEST,
                "no MCP server at this path",
            ),
        };
    };
    let metadata = server.metadata_url(base, resource.workspace.workspace);
    let scopes = resource.required_scopes();
    let mut challenge = format!("Bearer resource_metadata=\"{metadata}\"");
    if !scopes.is_empty() {
        challenge.push_str(&format!(", scope=\"{}\"", quoted(&scopes)));
    }
    let (status, message) = match refusal {
        None => (
            StatusCode::UNAUTHORIZED,
            "missing Authorization: Bearer <access token or agent access key>".to_owned(),
        ),
        Some(TokenRefusal::Unavailable(message)) => {
            return wire::http_error(
                StatusCode::SERVICE_UNAVAILABLE,
                wire::UPSTREAM_UNAVAILABLE,
                message,
            );
        }
        Some(refusal @ TokenRefusal::Invalid(message)) => {
            challenge.push_str(&format!(
                ", error=\"invalid_token\", error_description=\"{}\"",
                quoted(message)
            ));
            (StatusCode::UNAUTHORIZED, refusal.to_string())
        }
        Some(refusal @ TokenRefusal::InsufficientScope(_)) => {
            challenge.push_str(&format!(
                ", error=\"insufficient_scope\", error_description=\"{}\"",
                quoted(&refusal.to_string())
            ));
            (StatusCode::FORBIDDEN, refusal.to_string())
        }
        Some(refusal @ TokenRefusal::Malformed(message)) => {
            challenge.push_str(&format!(
                ", error=\"invalid_request\", error_description=\"{}\"",
                quoted(message)
            ));
            (StatusCode::BAD_REQUEST, refusal.to_string())
        }
        // A valid token whose person may not use this server: nothing to ask the client for.
        Some(TokenRefusal::Forbidden(message)) => {
            return wire::http_error(StatusCode::FORBIDDEN, wire::INVALID_REQUEST, message);
        }
    };
    let mut response = wire::http_error(status, wire::INVALID_REQUEST, &message);
    if let Ok(value) = HeaderValue::from_str(&challenge) {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, value);
    }
    response
}

/// `text` fit for a quoted-string: without `"`, `\` or control characters.
fn quoted(text: &str) -> String {
    text.chars()
        .filter(|c| !matches!(c, '"' | '\\') && !c.is_control())
        .collect()
}
