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
//! arrive, in the request's own task. Every message is audited into the layer's sink.
//!
//! The layer runs the gateway's engine: the same code decides, remembers pending requests and relays
//! (`cerberus_core::exchange` and this crate's relay). It keeps what each session's client and server
//! await answers to, by `Mcp-Session-Id`, so the answer a client POSTs to a server request (sampling,
//! elicitation, roots) is checked knowing that request's method; a server request the pipeline refuses
//! is answered to the service in the client's place (a JSON-RPC error the service reads as the
//! client's answer), so the service is not left waiting.
//!
//! It needs no database, Redis or HTTP client: `cerberus-axum` without default features is the layer
//! and what it shares with the gateway.

use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{
    HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, header,
};
use axum::response::IntoResponse;
use bytes::Bytes;
use cerberus_core::audit::{AuditSink, PayloadRedactor};
use cerberus_core::exchange::{Conversation, Conversations, Exchange, Handled, Observer, Recorder};
use cerberus_core::{Identity, Message, Pipeline};
use futures::StreamExt;
use futures::future::BoxFuture;
use http_body_util::BodyExt;
use tower::{Layer, Service, ServiceExt};

use crate::relay::requests::{self, Decided};
use crate::relay::{self, Door, Relay, Unanswered};
use crate::wire;

/// The largest JSON answer read from the service.
const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;

/// How long the service may take to take the answer to a server request the layer refused.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// How long the rest of an answered event stream is read.
const DRAIN_LIMIT: Duration = Duration::from_secs(30);

const SESSION_HEADER: HeaderName = HeaderName::from_static("mcp-session-id");
const VERSION_HEADER: HeaderName = HeaderName::from_static("mcp-protocol-version");

/// Finds who is calling from the request's head: `None` refuses the request with 401.
pub type Identify = dyn Fn(&axum::http::request::Parts) -> Option<Identity> + Send + Sync;

#[derive(Clone)]
struct Settings {
    pipeline: Pipeline,
    identify: Arc<Identify>,
    recorder: Recorder,
    max_body_bytes: usize,
    conversations: Arc<Conversations>,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("pipeline", &self.pipeline)
            .field("recorder", &self.recorder)
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
                recorder: Recorder::none(),
                max_body_bytes: 4 * 1024 * 1024,
                conversations: Arc::new(Conversations::default()),
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

    /// Tells callers apart (rate limits, sessions and audit records are per identity): `identify`
    /// reads the request's head, typically a credential your own authentication checked; `None` gets
    /// 401.
    pub fn identify(
        self,
        identify: impl Fn(&axum::http::request::Parts) -> Option<Identity> + Send + Sync + 'static,
    ) -> Self {
        self.with(|s| s.identify = Arc::new(identify))
    }

    /// Records an audit event per message into `sink`.
    pub fn audit(self, sink: Arc<dyn AuditSink>) -> Self {
        self.with(|s| s.recorder = s.recorder.clone().with_audit(sink))
    }

    /// Keeps each message, redacted, in its audit event.
    pub fn audit_payloads(self, redactor: PayloadRedactor) -> Self {
        self.with(|s| s.recorder = s.recorder.clone().with_payloads(Some(redactor)))
    }

    /// Tells `observer` about every pipeline run (metrics, spans).
    pub fn observe(self, observer: Arc<dyn Observer>) -> Self {
        self.with(|s| s.recorder = s.recorder.clone().with_observer(observer))
    }

    /// Refuses request bodies larger than `bytes` with 413.
    pub fn max_body_bytes(self, bytes: usize) -> Self {
        self.with(|s| s.max_body_bytes = bytes)
    }

    /// Keeps the pending requests of at most `sessions` sessions at once; when one more is needed,
    /// those without a message for `idle` go first, then the one idle longest. (100,000 and an hour
    /// by default.)
    pub fn sessions(self, sessions: usize, idle: Duration) -> Self {
        self.with(|s| s.conversations = Arc::new(Conversations::new(sessions, idle)))
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

fn header_text(headers: &HeaderMap, name: &HeaderName) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

async fn govern<S, B>(
    settings: Arc<Settings>,
    mut inner: S,
    request: Request<Body>,
) -> Result<Response<Body>, S::Error>
where
    S: Service<Request<Body>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Send,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    let (mut parts, body) = request.into_parts();
    let Some(identity) = (settings.identify)(&parts) else {
        return Ok(wire::unauthorised("unknown caller"));
    };
    let session = header_text(&parts.headers, &SESSION_HEADER);
    let conversation = match &session {
        Some(session) => settings.conversations.get(session, &identity),
        None => Arc::new(Conversation::new()),
    };
    let protocol_version = parts.headers.get(&VERSION_HEADER).cloned();
    let door = |session: Option<String>, conversation, inner, sent| LayerDoor {
        settings: Arc::clone(&settings),
        identity,
        session,
        conversation,
        inner: Mutex::new(inner),
        protocol_version: protocol_version.clone(),
        sent,
    };

    if parts.method != Method::POST {
        if parts.method == Method::DELETE
            && let Some(session) = &session
        {
            settings.conversations.end(session, &identity);
        }
        let door = door(session, conversation, inner.clone(), None);
        let response = inner.call(Request::from_parts(parts, body)).await?;
        return Ok(govern_response(door, response, Decided::nothing(), false).await);
    }
    let Ok(bytes) = axum::body::to_bytes(body, settings.max_body_bytes).await else {
        return Ok(wire::http_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            wire::INVALID_REQUEST,
            &format!("the request body exceeds {} bytes", settings.max_body_bytes),
        ));
    };
    let posted = match requests::parse(bytes) {
        Ok(posted) => posted,
        Err(response) => return Ok(*response),
    };
    let exchange = Exchange::new(
        &settings.pipeline,
        &identity,
        &conversation,
        &settings.recorder,
    )
    .with_session(session.as_deref());
    let governed = requests::govern(&exchange, posted.messages).await;
    if governed.forwarded.is_empty() {
        return Ok(governed.refused_only(posted.batch));
    }
    let body = governed.body(posted.body, posted.batch);
    parts
        .headers
        .insert(header::CONTENT_LENGTH, body.len().into());
    let door = door(session, conversation, inner.clone(), Some(Instant::now()));
    let response = match inner
        .call(Request::from_parts(parts, Body::from(body)))
        .await
    {
        Ok(response) => response,
        Err(e) => {
            door.forget(&governed.requests);
            return Err(e);
        }
    };
    Ok(govern_response(door, response, governed, posted.batch).await)
}

/// The service's answer, each message through the pipeline, with the layer's own answers first.
async fn govern_response<S, B>(
    mut door: LayerDoor<S>,
    response: Response<B>,
    governed: Decided,
    batch: bool,
) -> Response<Body>
where
    S: Service<Request<Body>> + Clone + Send + 'static,
    S::Future: Send,
    S::Response: IntoResponse,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    let (mut parts, body) = response.into_parts();
    // An initialize's answer opens the session its messages belong to.
    if door.session.is_none() {
        door.session = header_text(&parts.headers, &SESSION_HEADER);
    }
    let relay = Relay {
        door,
        answers: governed.answers,
        requests: governed.requests,
        batch,
        drain_limit: DRAIN_LIMIT,
    };
    if wire::is_media(&parts.headers, "text/event-stream") {
        let chunks = body
            .into_data_stream()
            .map(|chunk| chunk.map_err(Into::into))
            .boxed();
        let body = relay::events::events(relay, chunks).await;
        relay::set_event_stream_headers(&mut parts.headers);
        return Response::from_parts(parts, Body::new(body));
    }
    if wire::is_media(&parts.headers, "application/json") {
        let Ok(bytes) = axum::body::to_bytes(Body::new(body), MAX_RESPONSE_BYTES).await else {
            relay.door.forget(&relay.requests);
            return wire::http_error(
                StatusCode::BAD_GATEWAY,
                wire::UPSTREAM_UNAVAILABLE,
                "the MCP service's answer broke off or is too large",
            );
        };
        let Some(body) = relay.json(bytes).await else {
            return wire::http_error(
                StatusCode::BAD_GATEWAY,
                wire::UPSTREAM_UNAVAILABLE,
                "the MCP service sent a malformed JSON-RPC body",
            );
        };
        parts
            .headers
            .insert(header::CONTENT_LENGTH, body.len().into());
        return Response::from_parts(parts, Body::from(body));
    }
    relay.door.forget(&relay.requests);
    if relay.answers.is_empty() {
        return Response::from_parts(parts, Body::new(body));
    }
    // The service accepted the rest (202): the refused requests' answers are the body.
    let mut response = wire::json_response(StatusCode::OK, &relay.answers, batch);
    for (name, value) in &parts.headers {
        if name.as_str().starts_with("mcp-") {
            response.headers_mut().insert(name, value.clone());
        }
    }
    response
}

/// The layer's side of one answer of the service.
struct LayerDoor<S> {
    settings: Arc<Settings>,
    identity: Identity,
    session: Option<String>,
    conversation: Arc<Conversation>,
    /// The service, to answer the server requests the pipeline refuses (locked only to clone it).
    inner: Mutex<S>,
    /// The client's protocol version, which those answers carry too.
    protocol_version: Option<HeaderValue>,
    /// When the client's request went to the service.
    sent: Option<Instant>,
}

impl<S> Door for LayerDoor<S>
where
    S: Service<Request<Body>> + Clone + Send + 'static,
    S::Future: Send,
    S::Response: IntoResponse,
{
    async fn decide(&self, message: Message) -> Handled {
        Exchange::new(
            &self.settings.pipeline,
            &self.identity,
            &self.conversation,
            &self.settings.recorder,
        )
        .with_session(self.session.as_deref())
        .with_upstream(None, self.sent)
        .from_server(message)
        .await
    }

    fn answer_server(&self, answer: Message) -> impl Future<Output = ()> + Send {
        let service = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let mut request = Request::post("/");
        if let Some(session) = self.session.as_deref() {
            request = request.header(SESSION_HEADER, session);
        }
        if let Some(version) = &self.protocol_version {
            request = request.header(VERSION_HEADER, version.clone());
        }
        let request = request
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ACCEPT, "application/json, text/event-stream")
            .body(Body::from(answer.to_bytes()));
        async move {
            let Ok(request) = request else {
                tracing::warn!("could not answer a refused server request: a header is invalid");
                return;
            };
            let exchange = async {
                let response = service.oneshot(request).await.ok()?.into_response();
                response.into_body().collect().await.ok()
            };
            match tokio::time::timeout(ANSWER_TIMEOUT, exchange).await {
                Ok(Some(_)) => {}
                Ok(None) => tracing::warn!(
                    "the MCP service did not take the answer to a refused server request"
                ),
                Err(_) => tracing::warn!(
                    "the MCP service did not take the answer to a refused server request in time"
                ),
            }
        }
    }

    fn forget(&self, unanswered: &Unanswered) {
        self.conversation.forget_client_requests(unanswered);
    }
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

    /// What the service received: each POST's session and body.
    type Received = Arc<std::sync::Mutex<Vec<(Option<String>, String)>>>;

    /// A service standing for an MCP server: a `tools/call` is answered on an event stream that
    /// first asks the client two things, one of which (it carries an SSN) the policy refuses; every
    /// other POST (the client's answers) is recorded and accepted.
    fn asking_server(
        received: Received,
    ) -> impl Service<
        Request<Body>,
        Response = Response<Body>,
        Error = std::convert::Infallible,
        Future = impl Send,
    > + Clone
    + Send
    + 'static {
        tower::service_fn(move |request: Request<Body>| {
            let received = Arc::clone(&received);
            async move {
                let session = header_text(request.headers(), &SESSION_HEADER);
                let body = axum::body::to_bytes(request.into_body(), usize::MAX)
                    .await
                    .unwrap();
                let body = String::from_utf8(body.to_vec()).unwrap();
                if !body.contains("tools/call") {
                    received.lock().unwrap().push((session, body));
                    let mut accepted = Response::new(Body::empty());
                    *accepted.status_mut() = StatusCode::ACCEPTED;
                    return Ok(accepted);
                }
                let events = [
                    r#"{"jsonrpc":"2.0","id":7,"method":"sampling/createMessage","params":{"messages":[{"role":"user","content":{"type":"text","text":"SSN 536-22-8174"}}]}}"#,
                    r#"{"jsonrpc":"2.0","id":8,"method":"roots/list"}"#,
                    r#"{"jsonrpc":"2.0","id":1,"result":{"content":[]}}"#,
                ]
                .map(|data| format!("event: message\ndata: {data}\n\n"))
                .concat();
                let mut response = Response::new(Body::from(events));
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/event-stream"),
                );
                Ok(response)
            }
        })
    }

    #[tokio::test]
    async fn server_requests_are_answered_when_refused_and_known_when_the_client_answers() {
        let policy = cerberus_core::PolicyDocument::from_json(
            r#"{"guardrails": [{"type": "pii_ssn", "action": "block", "direction": "both"}]}"#,
        )
        .unwrap();
        let pipeline = cerberus_core::GuardrailRegistry::default()
            .build(&cerberus_core::EffectivePolicy::single(&policy))
            .unwrap();
        let audit = Arc::new(cerberus_core::audit::MemoryAuditSink::new());
        let received = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut service = GovernanceLayer::new(pipeline)
            .audit(audit.clone())
            .layer(asking_server(Arc::clone(&received)));
        let post = |body: &str| {
            Request::post("/mcp")
                .header(header::CONTENT_TYPE, "application/json")
                .header(SESSION_HEADER, "session-1")
                .body(Body::from(body.to_owned()))
                .unwrap()
        };

        let call = post(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t"}}"#);
        let response = service.call(call).await.unwrap();
        let stream = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        let stream = String::from_utf8_lossy(&stream);
        assert!(
            !stream.contains("8174"),
            "the refused request never reaches the client"
        );
        assert!(
            stream.contains("roots/list") && stream.contains(r#""result""#),
            "{stream}"
        );

        // The refused request was answered to the server in the client's place, in its session.
        let answers = received.lock().unwrap().clone();
        assert_eq!(answers.len(), 1, "{answers:?}");
        let (session, answer) = &answers[0];
        assert_eq!(session.as_deref(), Some("session-1"));
        let answer: serde_json::Value = serde_json::from_str(answer).unwrap();
        assert_eq!(answer["id"], 7);
        assert_eq!(answer["error"]["code"], wire::BLOCKED);

        // The client answers the other request in a later POST of the session: the layer knows what
        // it answers.
        let response = service
            .call(post(r#"{"jsonrpc":"2.0","id":8,"result":{"roots":[]}}"#))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        let events = audit.events();
        let answer = events.last().unwrap();
        assert_eq!(answer.method.as_deref(), Some("roots/list"));
        assert_eq!(answer.session.as_deref(), Some("session-1"));
        assert_eq!(
            received.lock().unwrap().len(),
            2,
            "the answer reached the server"
        );
    }
}
