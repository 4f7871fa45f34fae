//! The admin API described: an OpenAPI 3.1 document generated from the handlers' annotations at
//! `/openapi.json`, and a page at `/docs` that renders it with RapiDoc, served from the binary
//! (`assets/rapidoc/README.md` says where it comes from) under a Content-Security-Policy that lets
//! the page load nothing from elsewhere: admins hold their tokens on this origin.

use axum::Json;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use cerberus_core::store::{
    AgentAccess, Approval, ApprovalStatus, Environment, Organisation, PolicyTarget, Role,
    StoredPolicy, UpstreamDefinition, User, Workspace,
};
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::schema::{AdditionalProperties, ArrayBuilder, ObjectBuilder, Schema, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Content, Ref, RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use super::error::{ErrorBody, ErrorDetail};
#[cfg(feature = "oauth")]
use super::identity_providers;
use super::{
    agents, analytics, approvals, audit, labels, login, organisations, pins, policies, trial,
    workspaces,
};

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
        policies::effective, trial::check, trial::types,
        audit::list, audit::export, analytics::get,
        labels::organisation, labels::workspace, labels::agent_access,
        pins::list, pins::approve,
        approvals::list, approvals::get, approvals::approve, approvals::deny,
    ),
    components(schemas(
        ErrorBody, ErrorDetail, Organisation, User, Role, Workspace, Environment, UpstreamDefinition,
        AgentAccess, StoredPolicy, PolicyTarget, labels::Labels, pins::ToolPins, pins::ToolPinView,
        pins::MemberChangeView, pins::ApproveBody, approvals::AnswerBody, Approval, ApprovalStatus,
    )),
    modifiers(&BearerToken, &StandardAnswers, &ExactSchemas)
)]
pub struct ApiDoc;

/// The operations on identity providers, in builds that take OAuth access tokens.
#[cfg(feature = "oauth")]
#[derive(OpenApi)]
#[openapi(
    paths(
        identity_providers::list, identity_providers::create, identity_providers::get,
        identity_providers::update, identity_providers::delete,
        identity_providers::member_policies, identity_providers::set_group_policy,
        identity_providers::delete_group_policy, identity_providers::set_person_policy,
        identity_providers::delete_person_policy,
    ),
    components(schemas(
        cerberus_core::store::IdentityProviderSettings, cerberus_core::store::StoredIdentityProvider,
        cerberus_core::store::ClaimNames, cerberus_core::store::TrustedWorkspaces,
        cerberus_core::store::Member, cerberus_core::store::MemberPolicy,
        identity_providers::MemberPolicies, policies::PolicyUpdate,
    )),
    modifiers(&BearerToken, &StandardAnswers, &ExactSchemas)
)]
struct IdentityProviderDoc;

/// The OpenAPI document of this build's admin API.
pub fn document() -> utoipa::openapi::OpenApi {
    #[allow(unused_mut, reason = "extended only with the feature oauth")]
    let mut document = ApiDoc::openapi();
    #[cfg(feature = "oauth")]
    document.merge(IdentityProviderDoc::openapi());
    document
}

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

/// Adds to every operation the answers the API's common parts may give, so that the document lists
/// every status a client can get: 400 (a body that is not JSON), 401 (an operation that needs a
/// token), 403 (one that also changes something), 404 (an id in the path, malformed or not the
/// caller's), 413 and 415 (a body too large, or not JSON), 422 (a body or query whose values cannot
/// be used) and 503 (storage). An operation's own description of a status stays.
struct StandardAnswers;

/// Whether an answer applies to an operation, given whether the operation only reads.
type Applies = fn(&Operation, bool) -> bool;

impl StandardAnswers {
    /// Each answer: its status, its description, and which operations (and whether a read) may give it.
    const ANSWERS: [(&'static str, &'static str, Applies); 8] = [
        ("400", "the body is not JSON", |o, _| has_body(o)),
        ("401", "no valid access token", |o, _| is_secured(o)),
        ("403", "the role does not allow it", |o, read| {
            is_secured(o) && !read
        }),
        ("404", "not in the caller's organisation", |o, _| {
            has_parameter(o, ParameterIn::Path)
        }),
        ("413", "the body is larger than 1 MiB", |o, _| has_body(o)),
        ("415", "the body is not application/json", |o, _| {
            has_body(o)
        }),
        (
            "422",
            "a field or query parameter cannot be used; `field` names it",
            |o, _| has_body(o) || has_parameter(o, ParameterIn::Query),
        ),
        ("503", "the database is unavailable", |_, _| true),
    ];
}

fn has_body(operation: &Operation) -> bool {
    operation.request_body.is_some()
}

fn is_secured(operation: &Operation) -> bool {
    operation.security.as_ref().is_some_and(|s| !s.is_empty())
}

fn has_parameter(operation: &Operation, place: ParameterIn) -> bool {
    operation
        .parameters
        .iter()
        .flatten()
        .any(|p| p.parameter_in == place)
}

impl Modify for StandardAnswers {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for item in openapi.paths.paths.values_mut() {
            let operations = [
                (&mut item.get, true),
                (&mut item.put, false),
                (&mut item.post, false),
                (&mut item.delete, false),
                (&mut item.patch, false),
            ];
            for (operation, read) in operations {
                let Some(operation) = operation else { continue };
                for (status, description, applies) in Self::ANSWERS {
                    if applies(operation, read)
                        && !operation.responses.responses.contains_key(status)
                    {
                        let answer = ResponseBuilder::new()
                            .description(description)
                            .content(
                                "application/json",
                                Content::new(Some(Ref::from_schema_name("ErrorBody"))),
                            )
                            .build();
                        operation
                            .responses
                            .responses
                            .insert(status.to_owned(), answer.into());
                    }
                }
            }
        }
    }
}

/// Says in the document what the derived schemas leave out: an upstream definition takes no other
/// members (it is an untagged enum whose variants deny unknown fields) and its `url` is an http or
/// https URL, and a policy document (stored or tried) is an object with a `guardrails` array of
/// objects that each name their `type`. What a guardrail's settings may be depends on the guardrail
/// types a build registers, so the document stops there.
struct ExactSchemas;

impl Modify for ExactSchemas {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let Some(components) = openapi.components.as_mut() else {
            return;
        };
        if let Some(RefOr::T(Schema::OneOf(upstream))) =
            components.schemas.get_mut("UpstreamDefinition")
        {
            for variant in &mut upstream.items {
                if let RefOr::T(Schema::Object(variant)) = variant {
                    variant.additional_properties =
                        Some(Box::new(AdditionalProperties::FreeForm(false)));
                    if let Some(RefOr::T(Schema::Object(url))) = variant.properties.get_mut("url") {
                        url.pattern =
                            Some(r"^[Hh][Tt][Tt][Pp][Ss]?://[^@/?#\s]+([/?#]\S*)?$".into());
                    }
                }
            }
        }
        for body in ["NewPolicy", "PolicyUpdate", "PolicyTrial"] {
            if let Some(RefOr::T(Schema::Object(body))) = components.schemas.get_mut(body)
                && let Some(RefOr::T(Schema::Object(document))) =
                    body.properties.get_mut("document")
            {
                let guardrail = ObjectBuilder::new()
                    .schema_type(Type::Object)
                    .property(
                        "type",
                        ObjectBuilder::new()
                            .schema_type(Type::String)
                            .min_length(Some(1)),
                    )
                    .required("type");
                let guardrails = ArrayBuilder::new().items(guardrail).build();
                document
                    .properties
                    .insert("guardrails".into(), RefOr::T(Schema::Array(guardrails)));
                document.required.push("guardrails".into());
            }
        }
    }
}

/// `GET /openapi.json`.
pub async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(document())
}

/// Where `/docs` loads RapiDoc from: named by the release built into the binary, so that it can be
/// cached for good.
pub const RAPIDOC_PATH: &str = "/docs/rapidoc-9.3.8.min.js";

/// RapiDoc's bundle, gzip-compressed as it is sent.
const RAPIDOC_GZIP: &[u8] = include_bytes!("../../assets/rapidoc/rapidoc-min.js.gz");

/// What `/docs` may load: its script and the document from the gateway, nothing from elsewhere; no
/// frames, forms or plugins. RapiDoc sets inline styles, which is all `'unsafe-inline'` allows.
pub const DOCS_CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; \
     connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// `GET /docs`: the document rendered by RapiDoc (without JavaScript, the page links the raw
/// document).
pub async fn page() -> Response {
    let html = format!(
        r#"<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Cerberus admin API</title>
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <link rel="icon" href="data:,">
  <script type="module" src="{RAPIDOC_PATH}"></script>
</head>
<body>
  <noscript>The reference needs JavaScript; the document itself is at <a href="/openapi.json">/openapi.json</a>.</noscript>
  <rapi-doc spec-url="/openapi.json" load-fonts="false" render-style="read" show-header="false"
    allow-spec-url-load="false" allow-spec-file-load="false" allow-server-selection="false"></rapi-doc>
</body>
</html>
"#
    );
    (
        [
            (
                header::CONTENT_SECURITY_POLICY,
                DOCS_CONTENT_SECURITY_POLICY,
            ),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Html(html),
    )
        .into_response()
}

/// Whether `Accept-Encoding` allows gzip (by name or `*`, with a weight above zero).
fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|coding| {
            let mut parts = coding.split(';').map(str::trim);
            let name = parts.next().unwrap_or_default();
            let weight = parts
                .find_map(|p| p.strip_prefix("q="))
                .map_or(Some(1.0), |q| q.trim().parse::<f32>().ok());
            (name.eq_ignore_ascii_case("gzip") || name == "*") && weight.is_some_and(|q| q > 0.0)
        })
}

/// `GET /docs/rapidoc-VERSION.min.js`: RapiDoc, gzip-compressed. Every browser accepts gzip; a client
/// that says it does not gets 406 rather than bytes it would misread.
pub async fn rapidoc(headers: HeaderMap) -> Response {
    if !accepts_gzip(&headers) {
        return (
            StatusCode::NOT_ACCEPTABLE,
            "this asset is served gzip-compressed only: send Accept-Encoding: gzip\n",
        )
            .into_response();
    }
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/javascript; charset=utf-8"),
            ),
            (header::CONTENT_ENCODING, HeaderValue::from_static("gzip")),
            (header::VARY, HeaderValue::from_static("accept-encoding")),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=31536000, immutable"),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
        ],
        RAPIDOC_GZIP,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_is_sent_only_to_clients_that_accept_it() {
        let accepts = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(
                header::ACCEPT_ENCODING,
                HeaderValue::from_str(value).unwrap(),
            );
            accepts_gzip(&headers)
        };
        assert!(accepts("gzip, deflate, br, zstd"));
        assert!(accepts("br;q=1.0, GZIP;q=0.5"));
        assert!(accepts("*"));
        assert!(!accepts("gzip;q=0"));
        assert!(!accepts("gzip; q=0.000"));
        assert!(!accepts("identity"));
        assert!(!accepts("gzipx"));
        assert!(!accepts_gzip(&HeaderMap::new()));
    }

    #[test]
    fn the_built_in_renderer_is_gzip_and_the_page_loads_nothing_from_elsewhere() {
        assert_eq!(RAPIDOC_GZIP.get(..2), Some(&[0x1f, 0x8b][..]));
        assert!(!DOCS_CONTENT_SECURITY_POLICY.contains("http"));
    }

    #[test]
    fn the_document_describes_every_route_with_its_security() {
        let document = serde_json::to_value(document()).unwrap();
        let paths = document["paths"].as_object().unwrap();
        for path in [
            "/api/v1/auth/login",
            "/api/v1/organisations/{id}/mcp-server-workspaces/{workspace_id}",
            "/api/v1/agent-accesses/{id}/rotate",
            "/api/v1/policies/mcp-server-workspaces/{id}/effective-policies",
        ] {
            assert!(paths.contains_key(path), "{path} is documented");
        }
        // Five more paths in builds that take OAuth access tokens: the identity providers.
        let expected = if cfg!(feature = "oauth") { 35 } else { 30 };
        assert_eq!(paths.len(), expected, "every admin route");
        if cfg!(feature = "oauth") {
            let create =
                &document["paths"]["/api/v1/organisations/{id}/identity-providers"]["post"];
            assert_eq!(create["security"][0]["bearer"], serde_json::json!([]));
            assert!(create["responses"]["409"].is_object());
            let workspaces = &document["components"]["schemas"]["TrustedWorkspaces"];
            assert_eq!(workspaces["oneOf"][0]["enum"], serde_json::json!(["*"]));
        }
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

    #[test]
    fn every_operation_lists_the_answers_its_common_parts_give() {
        let document = serde_json::to_value(document()).unwrap();
        let statuses = |path: &str, method: &str| -> Vec<String> {
            let responses = document["paths"][path][method]["responses"]
                .as_object()
                .unwrap();
            responses.keys().cloned().collect()
        };
        let create = statuses("/api/v1/organisations/{id}/mcp-server-workspaces", "post");
        for status in [
            "201", "400", "401", "403", "404", "413", "415", "422", "503",
        ] {
            assert!(create.contains(&status.to_owned()), "create lists {status}");
        }
        let list = statuses("/api/v1/organisations/{id}/mcp-server-workspaces", "get");
        assert!(
            !list.contains(&"403".to_owned()),
            "a read is never forbidden"
        );
        assert!(!list.contains(&"415".to_owned()), "a read has no body");
        let login = statuses("/api/v1/auth/login", "post");
        assert!(!login.contains(&"404".to_owned()) && login.contains(&"429".to_owned()));

        let parameters = document["paths"]["/api/v1/organisations/{id}/mcp-server-workspaces"]
            ["get"]["parameters"]
            .as_array()
            .unwrap();
        let limit = parameters.iter().find(|p| p["name"] == "limit").unwrap();
        assert_eq!(
            (&limit["schema"]["minimum"], &limit["schema"]["maximum"]),
            (&serde_json::json!(1), &serde_json::json!(200))
        );
        let upstream = &document["components"]["schemas"]["UpstreamDefinition"]["oneOf"];
        for variant in upstream.as_array().unwrap() {
            assert_eq!(variant["additionalProperties"], false);
        }
        let document_schema =
            &document["components"]["schemas"]["NewPolicy"]["properties"]["document"];
        assert_eq!(
            document_schema["required"],
            serde_json::json!(["guardrails"])
        );
    }
}
