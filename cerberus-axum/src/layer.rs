//! A tower [`Layer`] that puts the guardrail pipeline in front of any Streamable HTTP MCP service:
//! an `rmcp` `StreamableHttpService`, an axum router, anything that takes `Request<Body>`.
//!
//! ```no_run
//! # use std::sync::Arc;
//! # fn example(mcp_service: axum::routing::MethodRouter) -> Result<(), Box<dyn std::error::Error>> {
//! use cerberus_axum::layer::GovernanceLayer;
//! use cerberus_core::{EffectivePolicy, GuardrailRegistry, PolicyDocument, PolicyLevel};
//!
//! let policy = PolicyDocument::from_json(r#"{"guardrails": [
//!     {"type": "rbac", "allow": ["*"], "deny": ["delete_*"]},
//!     {"type": "pii_email", "action": "redact", "direction": "both"}
//! ]}"#)?;
//! let pipeline = GuardrailRegistry::default()
//!     .build(&EffectivePolicy::merge([(PolicyLevel::Organisation, &policy)]))?;
//! let app: axum::Router = axum::Router::new().route_service(
//!     "/mcp",
//!     tower::ServiceBuilder::new()
//!         .layer(GovernanceLayer::new(pipeline))
//!         .service(mcp_service),
//! );
//! # Ok(()) }
//! ```
//!
//! Each POST's messages go through the pipeline as requests: refused requests are answered by the
//! layer and never reach the service, modified ones reach it modified. The service's answers (a JSON
//! body or an event stream, on POST and GET alike) go through it as responses, event by event as they
//! arrive. Every message is audited into the layer's sink.
//!
//! The layer lives in `cerberus-axum`, beside the gateway's proxy, rather than in `cerberus-core`:
//! it speaks HTTP and server-sent events, and reuses the proxy's SSE codec and wire errors, while the
//! core stays free of I/O and transports. It needs no database or Redis: those come with the
//! `cerberus` binary's configuration, not with the layer.
//!
//! What a layer cannot do that the gateway does: it sees one HTTP exchange at a time, so the answer
//! a client POSTs to a server request is checked without knowing the request's method, and a server
//! request the pipeline refuses is dropped from the stream (the server's request then times out)
//! rather than answered on the client's behalf.

use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::http::{Method, Request, Response, StatusCode, header};
use axum::response::IntoResponse;
use bytes::Bytes;
use cerberus_core::audit::{AuditSink, NullAuditSink, PayloadRedactor};
use cerberus_core::stream::{Action, StreamGuard};
use cerberus_core::{Identity, Message, MessageError, Pipeline};
use futures::StreamExt;
use futures::future::BoxFuture;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tower::{Layer, Service};

use crate::sse::{SseDecoder, SseEvent};
use crate::wire;

/// The largest JSON answer read from the service.
const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;

/// Finds who is calling from the request's head: `None` refuses the request with 401.
pub type Identify = dyn Fn(&axum::http::request::Parts) -> Option<Identity> + Send + Sync;

#[derive(Clone)]
struct Settings {
    pipeline: Pipeline,
    identify: Arc<Identify>,
    audit: Arc<dyn AuditSink>,
    payloads: Option<PayloadRedactor>,
    max_body_bytes: usize,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("pipeline", &self.pipeline)
            .field("audit", &self.audit)
            .field("max_body_bytes", &self.max_body_bytes)
            .finish_non_exhaustive()
    }
}

/// Governs a Streamable HTTP MCP service with a guardrail pipeline; see the [module docs](self).
#[derive(Clone, Debug)]
pub struct GovernanceLayer {
    settings: Arc<Settings>,
}

impl GovernanceLayer {
    /// A layer running `pipeline` for every caller as one identity (random at each start), recording
    /// nothing, accepting bodies up to 4 MiB.
    pub fn new(pipeline: Pipeline) -> Self {
        let identity = Identity::new_random();
        Self {
            settings: Arc::new(Settings {
                pipeline,
                identify: Arc::new(move |_| Some(identity)),
                audit: Arc::new(NullAuditSink),
                payloads: None,
                max_body_bytes: 4 * 1024 * 1024,
            }),
        }
    }

    fn with(self, change: impl FnOnce(&mut Settings)) -> Self {
        let mut settings = Arc::unwrap_or_clone(self.settings);
        change(&mut settings);
        Self {
            settings: Arc::new(settings),
        }
    }

    /// Tells callers apart (rate limits and audit records are per identity): `identify` reads the
    /// request's head, typically a credential your own authentication checked; `None` gets 401.
    pub fn identify(
        self,
        identify: impl Fn(&axum::http::request::Parts) -> Option<Identity> + Send + Sync + 'static,
    ) -> Self {
        self.with(|s| s.identify = Arc::new(identify))
    }

    /// Records an audit event per message into `sink`.
    pub fn audit(self, sink: Arc<dyn AuditSink>) -> Self {
        self.with(|s| s.audit = sink)
    }

    /// Keeps each message, redacted, in its audit event.
    pub fn audit_payloads(self, redactor: PayloadRedactor) -> Self {
        self.with(|s| s.payloads = Some(redactor))
    }

    /// Refuses request bodies larger than `bytes` with 413.
    pub fn max_body_bytes(self, bytes: usize) -> Self {
        self.with(|s| s.max_body_bytes = bytes)
    }
}

impl<S> Layer<S> for GovernanceLayer {
    type Service = Governed<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Governed {
            inner,
            settings: Arc::clone(&self.settings),
        }
    }
}

/// A service behind a [`GovernanceLayer`].
#[derive(Clone, Debug)]
pub struct Governed<S> {
    inner: S,
    settings: Arc<Settings>,
}

impl<S, B> Service<Request<Body>> for Governed<S>
where
    S: Service<Request<Body>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Send,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Response<Body>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        // The service that was polled ready is the one to call; a clone takes its place.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(govern(Arc::clone(&self.settings), inner, request))
    }
}

async fn govern<S, B>(
    settings: Arc<Settings>,
    mut inner: S,
    request: Request<Body>,
) -> Result<Response<Body>, S::Error>
where
    S: Service<Request<Body>, Response = Response<B>>,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    let (mut parts, body) = request.into_parts();
    let Some(identity) = (settings.identify)(&parts) else {
        return Ok(wire::unauthorised("unknown caller"));
    };
    let mut guard = StreamGuard::new(settings.pipeline.clone(), identity)
        .with_audit(Arc::clone(&settings.audit))
        .with_payloads(settings.payloads.clone());
    if let Some(session) = parts
        .headers
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
    {
        guard = guard.with_session(session);
    }
    let guard = Arc::new(guard);

    if parts.method != Method::POST {
        let response = inner.call(Request::from_parts(parts, body)).await?;
        return Ok(govern_response(guard, response, Vec::new(), false).await);
    }
    let Ok(bytes) = axum::body::to_bytes(body, settings.max_body_bytes).await else {
        return Ok(wire::http_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            wire::INVALID_REQUEST,
            &format!("the request body exceeds {} bytes", settings.max_body_bytes),
        ));
    };
    let batch = bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[');
    let messages = match Message::parse_batch(bytes.clone()) {
        Ok(messages) => messages,
        Err(MessageError::Json(e)) => {
            return Ok(wire::http_error(
                StatusCode::BAD_REQUEST,
                wire::PARSE_ERROR,
                &format!("the body is not valid JSON: {e}"),
            ));
        }
        Err(e) => {
            return Ok(wire::http_error(
                StatusCode::BAD_REQUEST,
                wire::INVALID_REQUEST,
                &format!("not a JSON-RPC message: {e}"),
            ));
        }
    };
    let count = messages.len();
    let mut forwarded = Vec::with_capacity(count);
    let mut replies = Vec::new();
    for message in messages {
        match guard.from_client(message).await.action {
            Action::Forward(message) => forwarded.push(message),
            Action::Reply(reply) => replies.push(reply),
            Action::Drop => {}
        }
    }
    if forwarded.is_empty() {
        if replies.is_empty() {
            return Ok(StatusCode::ACCEPTED.into_response());
        }
        return Ok(wire::json_response(StatusCode::OK, &replies, batch));
    }
    let body = if forwarded.len() != count || forwarded.iter().any(Message::is_modified) {
        wire::messages_body(&forwarded, batch)
    } else {
        bytes
    };
    parts
        .headers
        .insert(header::CONTENT_LENGTH, body.len().into());
    let response = inner
        .call(Request::from_parts(parts, Body::from(body)))
        .await?;
    Ok(govern_response(guard, response, replies, batch).await)
}

/// The service's answer, each message through the pipeline, with the layer's own `replies` first.
async fn govern_response<B>(
    guard: Arc<StreamGuard>,
    response: Response<B>,
    replies: Vec<Message>,
    batch: bool,
) -> Response<Body>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    let (mut parts, body) = response.into_parts();
    if wire::is_media(&parts.headers, "application/json") {
        return govern_json(&guard, parts, Body::new(body), replies, batch).await;
    }
    if wire::is_media(&parts.headers, "text/event-stream") {
        parts.headers.remove(header::CONTENT_LENGTH);
        let (sender, receiver) = mpsc::channel::<Result<Bytes, std::io::Error>>(16);
        tokio::spawn(relay_events(guard, Body::new(body), replies, sender));
        return Response::from_parts(parts, Body::from_stream(ReceiverStream::new(receiver)));
    }
    if replies.is_empty() {
        return Response::from_parts(parts, Body::new(body));
    }
    // The service accepted the rest (202): the refused requests' answers are the body.
    let mut response = wire::json_response(StatusCode::OK, &replies, batch);
    for (name, value) in &parts.headers {
        if name.as_str().starts_with("mcp-") {
            response.headers_mut().insert(name, value.clone());
        }
    }
    response
}

/// A JSON answer: each message through the pipeline, the layer's `replies` first.
async fn govern_json(
    guard: &StreamGuard,
    mut parts: axum::http::response::Parts,
    body: Body,
    replies: Vec<Message>,
    batch: bool,
) -> Response<Body> {
    let Ok(bytes) = axum::body::to_bytes(body, MAX_RESPONSE_BYTES).await else {
        return wire::http_error(
            StatusCode::BAD_GATEWAY,
            wire::UPSTREAM_UNAVAILABLE,
            "the MCP service's answer broke off or is too large",
        );
    };
    let Ok(messages) = Message::parse_batch(bytes) else {
        return wire::http_error(
            StatusCode::BAD_GATEWAY,
            wire::UPSTREAM_UNAVAILABLE,
            "the MCP service sent a malformed JSON-RPC body",
        );
    };
    let mut out = replies;
    for message in messages {
        if let Some(message) = from_server(guard, message).await {
            out.push(message);
        }
    }
    let body = wire::messages_body(&out, batch || out.len() > 1);
    parts
        .headers
        .insert(header::CONTENT_LENGTH, body.len().into());
    Response::from_parts(parts, Body::from(body))
}

/// One message from the service: what the client gets in its place, if anything.
async fn from_server(guard: &StreamGuard, message: Message) -> Option<Message> {
    match guard.from_server(message).await.action {
        Action::Forward(message) => Some(message),
        Action::Reply(_) => {
            tracing::warn!("dropped a server request the pipeline refused");
            None
        }
        Action::Drop => None,
    }
}

/// Passes an event stream on, each event's message through the pipeline as it arrives.
async fn relay_events(
    guard: Arc<StreamGuard>,
    body: Body,
    replies: Vec<Message>,
    sender: mpsc::Sender<Result<Bytes, std::io::Error>>,
) {
    for reply in replies {
        let event = SseEvent::message(String::from_utf8_lossy(&reply.to_bytes()).into_owned());
        if sender.send(Ok(event.encode())).await.is_err() {
            return;
        }
    }
    let mut decoder = SseDecoder::new();
    let mut chunks = body.into_data_stream();
    loop {
        let events = match chunks.next().await {
            Some(Ok(chunk)) => decoder.push(&chunk),
            Some(Err(e)) => {
                tracing::warn!(error = %e, "the MCP service's event stream broke off");
                return;
            }
            None => {
                let events = decoder.finish().into_iter().collect();
                for event in govern_events(&guard, events).await {
                    let _ = sender.send(Ok(event)).await;
                }
                return;
            }
        };
        let Ok(events) = events else {
            tracing::warn!("the MCP service sent an event too large to check: stream ended");
            return;
        };
        for event in govern_events(&guard, events).await {
            if sender.send(Ok(event)).await.is_err() {
                return;
            }
        }
    }
}

/// Each event with its message checked: unchanged events keep their bytes, refused ones keep only
/// their id (so that resumption still works), unparseable ones are not passed on.
async fn govern_events(guard: &StreamGuard, events: Vec<SseEvent>) -> Vec<Bytes> {
    let mut out = Vec::with_capacity(events.len());
    for mut event in events {
        let data = event.data.clone().unwrap_or_default();
        if data.is_empty() {
            out.push(event.encode());
            continue;
        }
        let Ok(message) = Message::parse_text(data) else {
            tracing::warn!("dropped an event that is not a JSON-RPC message");
            out.push(SseEvent::placeholder(event.id.clone()).encode());
            continue;
        };
        match from_server(guard, message).await {
            Some(message) if !message.is_modified() => out.push(event.encode()),
            Some(message) => {
                event.set_data(String::from_utf8_lossy(&message.to_bytes()).into_owned());
                out.push(event.encode());
            }
            None => out.push(SseEvent::placeholder(event.id.clone()).encode()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn layer() -> GovernanceLayer {
        let policy = cerberus_core::PolicyDocument::from_json(
            r#"{"guardrails": [{"type": "rbac", "allow": ["echo"]}]}"#,
        )
        .unwrap();
        let pipeline = cerberus_core::GuardrailRegistry::default()
            .build(&cerberus_core::EffectivePolicy::merge([(
                cerberus_core::PolicyLevel::Organisation,
                &policy,
            )]))
            .unwrap();
        GovernanceLayer::new(pipeline).max_body_bytes(200)
    }

    async fn send(body: &str, calls: &Arc<AtomicUsize>) -> (StatusCode, String) {
        let calls = Arc::clone(calls);
        let inner = tower::service_fn(move |request: Request<Body>| {
            calls.fetch_add(1, Ordering::SeqCst);
            async move {
                let body = axum::body::to_bytes(request.into_body(), usize::MAX)
                    .await
                    .unwrap();
                let mut response = Response::new(Body::from(body));
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    axum::http::HeaderValue::from_static("application/json"),
                );
                Ok::<_, std::convert::Infallible>(response)
            }
        });
        let mut service = layer().layer(inner);
        let request = Request::post("/mcp")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_owned()))
            .unwrap();
        let response = service.call(request).await.unwrap();
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn refusals_and_bad_input_never_reach_the_service() {
        let calls = Arc::new(AtomicUsize::new(0));
        let (status, body) = send(
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"rm"}}"#,
            &calls,
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert!(body.contains("-32050"), "{body}");
        let (status, body) = send("{not json", &calls).await;
        assert_eq!(
            (status, body.contains("-32700")),
            (StatusCode::BAD_REQUEST, true)
        );
        let (status, _) = send(&format!("\"{}\"", "x".repeat(300)), &calls).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(calls.load(Ordering::SeqCst), 0);

        // An allowed call reaches the service, and its (echoed) answer comes back checked.
        let (status, body) = send(
            r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo"}}"#,
            &calls,
        )
        .await;
        assert_eq!((status, calls.load(Ordering::SeqCst)), (StatusCode::OK, 1));
        assert!(body.contains(r#""name":"echo""#), "{body}");
    }
}
