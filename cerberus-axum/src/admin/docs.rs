//! The admin API described: an OpenAPI 3.1 document generated from the handlers' annotations at
//! `/openapi.json`, and a page at `/docs` that renders it.

use axum::Json;
use axum::response::Html;
use cerberus_core::store::{
    AgentAccess, Environment, Organisation, PolicyTarget, Role, StoredPolicy, UpstreamDefinition,
    User, Workspace,
};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::error::{ErrorBody, ErrorDetail};
use super::{agents, analytics, audit, login, organisations, policies, workspaces};

/// The OpenAPI document of the admin API.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Cerberus admin API",
        description = "The control plane of the Cerberus MCP governance gateway: organisations, users, MCP server workspaces, agent accesses and policies. Every id is scoped to the caller's organisation: another tenant's ids are 404."
    ),
    paths(
        login::login, login::refresh, login::logout,
        organisations::list, organisations::create, organisations::get, organisations::update,
        organisations::delete, organisations::users, organisations::create_user,
        organisations::update_user, organisations::delete_user,
        workspaces::list, workspaces::create, workspaces::get, workspaces::update, workspaces::delete,
        agents::list, agents::create, agents::get, agents::rotate, agents::revoke, agents::delete,
        policies::create, policies::list, policies::get, policies::update, policies::delete,
        policies::effective,
        audit::list, audit::export, analytics::get,
    ),
    components(schemas(
        ErrorBody, ErrorDetail, Organisation, User, Role, Workspace, Environment, UpstreamDefinition,
        AgentAccess, StoredPolicy, PolicyTarget,
    )),
    modifiers(&BearerToken)
)]
pub struct ApiDoc;

/// Declares the bearer access token the secured operations name.
struct BearerToken;

impl Modify for BearerToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "The access_token of POST /api/v1/auth/login or /api/v1/auth/refresh",
                    ))
                    .build(),
            ),
        );
    }
}

/// `GET /openapi.json`.
pub async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

/// `GET /docs`: the document rendered by Scalar's API reference (loaded from its CDN by the browser;
/// without it, the page links the raw document).
pub async fn page() -> Html<&'static str> {
    Html(
        r#"<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Cerberus admin API</title>
  <meta name="viewport" content="width=device-width, initial-scale=1">
</head>
<body>
  <noscript>The reference needs JavaScript; the document itself is at <a href="/openapi.json">/openapi.json</a>.</noscript>
  <script id="api-reference" data-url="/openapi.json"></script>
  <script src="https://cdn.jsdelivr.net/npm/@scalar/api-reference"></script>
</body>
</html>
"#,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_describes_every_route_with_its_security() {
        let document = serde_json::to_value(ApiDoc::openapi()).unwrap();
        let paths = document["paths"].as_object().unwrap();
        for path in [
            "/api/v1/auth/login",
            "/api/v1/organisations/{id}/mcp-server-workspaces/{workspace_id}",
            "/api/v1/agent-accesses/{id}/rotate",
            "/api/v1/policies/mcp-server-workspaces/{id}/effective-policies",
        ] {
            assert!(paths.contains_key(path), "{path} is documented");
        }
        assert_eq!(paths.len(), 19, "every admin route");
        assert!(document["paths"]["/api/v1/auth/login"]["post"]["security"].is_null());
        assert_eq!(
            document["paths"]["/api/v1/policies"]["post"]["security"][0]["bearer"],
            serde_json::json!([])
        );
        assert_eq!(
            document["components"]["securitySchemes"]["bearer"]["scheme"],
            "bearer"
        );
        let analytics = &document["components"]["schemas"]["AuditAnalytics"]["properties"];
        for field in ["totals", "over_time", "by_tool", "guardrails", "latency"] {
            assert!(
                analytics.get(field).is_some(),
                "analytics schema has {field}"
            );
        }
        let workspace = &document["components"]["schemas"]["Workspace"]["properties"];
        assert_eq!(workspace["created_at"]["format"], "date-time");
    }
}
