//! The governance plane: a Streamable HTTP MCP proxy with the guardrail pipeline on every message.
//!
//! A request's path through this module: `checks` (origin, host, credential, protocol version,
//! content type) → `forward` (parse, session, request pipeline, upstream call) → `relay` (response
//! pipeline on each message of the JSON body or SSE stream, as it arrives) → the client. See `README.md`
//! beside this file for the design.

mod checks;
mod forward;
pub(crate) mod holding;
mod intermediary;
pub mod listening;
mod relay;
pub mod replay;
pub mod stdio;
pub mod turns;

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, Method, StatusCode};
use axum::response::Response;
use axum::routing::post;

use tracing::Instrument;

use crate::gateway::Gateway;
use crate::telemetry;
use crate::wire;

/// The documented path of the proxy endpoint.
pub const PROXY_PATH: &str = "/governance-plane/api/v1/proxy/mcp";
/// A short alias of [`PROXY_PATH`].
pub const ALIAS_PATH: &str = "/mcp";

/// The gateway's session id header.
pub(crate) const SESSION_HEADER: HeaderName = HeaderName::from_static("mcp-session-id");
/// The protocol version header.
pub(crate) const VERSION_HEADER: HeaderName = HeaderName::from_static("mcp-protocol-version");

/// Protocol versions the proxy serves on this endpoint.
pub const SUPPORTED_VERSIONS: [&str; 4] = ["2025-03-26", "2025-06-18", "2025-11-25", "2026-07-28"];
/// The first protocol version without sessions.
pub const STATELESS_VERSION: &str = "2026-07-28";

/// The proxy routes, on both paths; each also serves one workspace at `{path}/{workspace id}`, the
/// URL an OAuth client connects to (`crate::oauth`).
pub fn router(gateway: Arc<Gateway>) -> Router {
    type Workspace = Option<Path<String>>;
    let methods = |base: &'static str| {
        post(move |state, path: Workspace, request: Request| {
            post_message(state, Endpoint::new(base, path), request)
        })
        .get(move |state, path: Workspace, request: Request| {
            open_stream(state, Endpoint::new(base, path), request)
        })
        .delete(move |state, path: Workspace, request: Request| {
            end_session(state, Endpoint::new(base, path), request)
        })
    };
    Router::new()
        .route(PROXY_PATH, methods(PROXY_PATH))
        .route(ALIAS_PATH, methods(ALIAS_PATH))
        .route(&format!("{PROXY_PATH}/{{workspace}}"), methods(PROXY_PATH))
        .route(&format!("{ALIAS_PATH}/{{workspace}}"), methods(ALIAS_PATH))
        .with_state(gateway)
}

/// Which proxy path a request came to: the shared one, or one workspace's under it.
#[derive(Clone, Debug)]
pub(crate) struct Endpoint {
    /// The proxy path or its alias.
    #[cfg_attr(
        not(feature = "oauth"),
        expect(dead_code, reason = "it names an OAuth resource's metadata")
    )]
    pub(crate) base: &'static str,
    /// The workspace id that follows it, as written.
    pub(crate) workspace: Option<String>,
}

impl Endpoint {
    fn new(base: &'static str, path: Option<Path<String>>) -> Self {
        Self {
            base,
            workspace: path.map(|Path(workspace)| workspace),
        }
    }
}

// The handlers take the whole request, not a `HeaderMap`: extracting one clones every header.
async fn post_message(
    State(gateway): State<Arc<Gateway>>,
    endpoint: Endpoint,
    request: Request,
) -> Response {
    let (Parts { headers, .. }, body) = request.into_parts();
    traced(
        Method::POST,
        &headers,
        Box::pin(async {
            let caller = checks::caller(&gateway, &headers, &endpoint).await?;
            checks::post_headers(&headers)?;
            let limit = gateway.settings.max_body_bytes;
            let read = axum::body::to_bytes(body, limit);
            let body = match tokio::time::timeout(gateway.settings.body_read_timeout(), read).await
            {
                Ok(Ok(body)) => body,
                Ok(Err(_)) => {
                    return Err(Box::new(wire::http_error(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        wire::INVALID_REQUEST,
                        &format!("the request body exceeds {limit} bytes"),
                    )));
                }
                Err(_) => {
                    return Err(Box::new(wire::http_error(
                        StatusCode::REQUEST_TIMEOUT,
                        wire::INVALID_REQUEST,
                        "the request body did not arrive in time",
                    )));
                }
            };
            // A call held for approval keeps its client's event stream alive while it waits.
            match gateway
                .approval_keep_alive
                .filter(|_| holding::accepts_events(&headers))
            {
                Some(interval) => {
                    let (gateway, headers) = (Arc::clone(&gateway), headers.clone());
                    let post =
                        async move { forward::post(&gateway, &caller, &headers, body).await };
                    Ok(holding::respond(post, interval).await)
                }
                None => Ok(forward::post(&gateway, &caller, &headers, body).await),
            }
        }),
    )
    .await
}

async fn open_stream(
    State(gateway): State<Arc<Gateway>>,
    endpoint: Endpoint,
    request: Request,
) -> Response {
    let headers = request.into_parts().0.headers;
    traced(
        Method::GET,
        &headers,
        Box::pin(async {
            let caller = checks::caller(&gateway, &headers, &endpoint).await?;
            Ok(forward::get(&gateway, &caller, &headers).await)
        }),
    )
    .await
}

async fn end_session(
    State(gateway): State<Arc<Gateway>>,
    endpoint: Endpoint,
    request: Request,
) -> Response {
    let headers = request.into_parts().0.headers;
    traced(
        Method::DELETE,
        &headers,
        Box::pin(async {
            let caller = checks::caller(&gateway, &headers, &endpoint).await?;
            Ok(forward::delete(&gateway, &caller, &headers).await)
        }),
    )
    .await
}

/// Handles one HTTP request inside its trace span (when spans are exported), recording who called
/// and the status they got. A refusal by the checks is an `Err` holding its response.
///
/// The handlers pass `handle` boxed: the proxy's state machine is several kilobytes, and axum's and
/// tower's layers move the handler's future by value on its way to the connection (four copies per
/// request, some 15k instructions of `memcpy` per call before it was boxed; docs/benchmarks.md).
async fn traced(
    method: Method,
    headers: &HeaderMap,
    handle: impl Future<Output = Result<Response, Box<Response>>>,
) -> Response {
    let span = telemetry::request_span(&method, headers);
    let response = handle
        .instrument(span.clone())
        .await
        .unwrap_or_else(|refusal| *refusal);
    telemetry::record_status(&span, response.status());
    response
}
