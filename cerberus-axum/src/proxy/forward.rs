//! Client requests: parsed, checked against the session, run through the request pipeline and sent on.

use std::sync::Arc;

use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use cerberus_core::exchange::Conversation;
use cerberus_core::session::SessionRecord;
use cerberus_core::{Message, MessageKind, methods};
use rand::Rng;

use super::intermediary::Mirrors;
use super::listening::{self, Opening};
use super::relay::{self, Answering, ProxyDoor, UpstreamLink};
use super::replay::Position;
use super::stdio::SpawnError;
use super::{SESSION_HEADER, STATELESS_VERSION, VERSION_HEADER};
use crate::gateway::{Caller, Gateway};
use crate::relay::Unanswered;
use crate::relay::requests::{self, Decided};
use crate::upstream::{HttpUpstream, StdioUpstream, Upstream};
use crate::upstream_client::{SetByOperator, UpstreamResponse};
use crate::wire;

/// Headers a client sends that the upstream needs as they are.
const PASSED_HEADERS: [&str; 3] = ["accept", "mcp-protocol-version", "last-event-id"];
/// Where a client resumes a broken event stream.
const LAST_EVENT_ID: HeaderName = HeaderName::from_static("last-event-id");

fn header<'h>(headers: &'h HeaderMap, name: &HeaderName) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// A new gateway session id: 256 random bits, URL-safe.
fn new_session_id() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The session a request names, checked to belong to the caller.
async fn session(
    gateway: &Gateway,
    caller: &Caller,
    headers: &HeaderMap,
) -> Result<Option<(String, SessionRecord)>, Response> {
    let Some(id) = header(headers, &SESSION_HEADER) else {
        return Ok(None);
    };
    match gateway.sessions.get(id).await {
        // Another agent's session is as unknown to this caller as a session that never existed.
        Ok(Some(record)) if record.identity == caller.route.identity => {
            Ok(Some((id.to_owned(), record)))
        }
        Ok(_) => Err(wire::http_error(
            StatusCode::NOT_FOUND,
            wire::INVALID_REQUEST,
            "unknown or expired session: initialize again",
        )),
        Err(e) => {
            tracing::error!(error = %e, "session store unavailable");
            Err(wire::http_error(
                StatusCode::SERVICE_UNAVAILABLE,
                wire::UPSTREAM_UNAVAILABLE,
                "session store unavailable",
            ))
        }
    }
}

/// The session a GET or DELETE must name (400 without one, 404 for one that is not the caller's).
async fn required_session(
    gateway: &Gateway,
    caller: &Caller,
    headers: &HeaderMap,
) -> Result<(String, SessionRecord), Response> {
    match session(gateway, caller, headers).await? {
        Some(session) => Ok(session),
        None => Err(wire::http_error(
            StatusCode::BAD_REQUEST,
            wire::INVALID_REQUEST,
            "missing Mcp-Session-Id",
        )),
    }
}

fn json_response(
    status: StatusCode,
    messages: &[Message],
    batch: bool,
    session: Option<&str>,
) -> Response {
    let mut response = wire::json_response(status, messages, batch);
    if let Some(value) = session.and_then(|s| HeaderValue::from_str(s).ok()) {
        response.headers_mut().insert(SESSION_HEADER, value);
    }
    response
}

/// The request to the upstream, with the client's protocol headers, the intermediary headers that
/// mirror the body it carries, and never the client's credential. A POST carries one JSON-RPC body.
pub(super) fn upstream_request(
    upstream: &HttpUpstream,
    method: Method,
    upstream_session: Option<&str>,
    client_headers: &HeaderMap,
    mirrored: Vec<(HeaderName, HeaderValue)>,
    body: Bytes,
) -> Request<Bytes> {
    let mut request = Request::new(body);
    let headers = request.headers_mut();
    if method == Method::POST {
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
    }
    for (name, value) in client_headers {
        if PASSED_HEADERS.contains(&name.as_str()) {
            headers.append(name, value.clone());
        }
    }
    for (name, value) in mirrored {
        headers.append(name, value);
    }
    for (name, value) in &upstream.headers {
        headers.append(name, value.clone());
    }
    if let Some(session) = upstream_session.and_then(|s| HeaderValue::from_str(s).ok()) {
        headers.insert(SESSION_HEADER, session);
    }
    if let Some(trace) = crate::telemetry::trace_headers() {
        headers.extend(trace);
    }
    *request.method_mut() = method;
    *request.uri_mut() = upstream.url.clone();
    if !upstream.egress_checked {
        request.extensions_mut().insert(SetByOperator);
    }
    request
}

/// POST: one message (or a 2025-03-26 batch) from the client.
pub(super) async fn post(
    gateway: &Arc<Gateway>,
    caller: &Caller,
    headers: &HeaderMap,
    body: Bytes,
) -> Response {
    // A large message is parsed and governed in its agent's turn (see `turns`).
    let turn = gateway
        .large_message_turns
        .take(caller.route.identity, body.len())
        .await;
    let mut posted = match requests::parse(body) {
        Ok(posted) => posted,
        Err(response) => return *response,
    };
    // A client's answer to the gateway's own question (a held call put to the user) is the
    // gateway's, not the server's.
    if !posted.batch
        && let [answer] = posted.messages.as_slice()
        && answer
            .id()
            .and_then(serde_json::Value::as_str)
            .is_some_and(|id| id.starts_with(crate::asking::REQUEST_ID_PREFIX))
        && let Some(answer) = posted.messages.pop()
    {
        match gateway
            .elicitations
            .answer(caller.route.identity.agent, answer)
        {
            None => return StatusCode::ACCEPTED.into_response(),
            Some(theirs) => posted.messages.push(theirs),
        }
    }
    let is_batch = posted.batch;
    let version = header(headers, &VERSION_HEADER);
    if is_batch && version.is_some_and(|v| v != "2025-03-26") {
        return wire::http_error(
            StatusCode::BAD_REQUEST,
            wire::INVALID_REQUEST,
            "JSON-RPC batches were removed in protocol 2025-06-18",
        );
    }
    // Batches (2025-03-26 only) predate the intermediary headers: a batch's are not passed on.
    let mirrors = match posted.messages.as_slice() {
        [message] => match Mirrors::read(headers, message) {
            Ok(mirrors) => mirrors,
            Err(why) => {
                return wire::http_error(StatusCode::BAD_REQUEST, wire::HEADER_MISMATCH, &why);
            }
        },
        _ => Mirrors::default(),
    };
    let initialize = posted
        .messages
        .iter()
        .any(|m| m.kind() == MessageKind::Request && m.method() == Some(methods::INITIALIZE));
    let session = match session(gateway, caller, headers).await {
        Ok(session) => session,
        Err(response) => return response,
    };
    if session.is_none() && !initialize && version != Some(STATELESS_VERSION) {
        return wire::http_error(
            StatusCode::BAD_REQUEST,
            wire::INVALID_REQUEST,
            "missing Mcp-Session-Id: initialize first",
        );
    }
    let session_id = session.as_ref().map(|(id, _)| id.as_str());
    super::holding::set_client_elicits(
        session
            .as_ref()
            .is_some_and(|(_, record)| record.client_elicits)
            || client_elicits(&posted.messages),
    );
    let conversation = gateway.conversation(caller, session_id);
    let governed = requests::govern(
        &gateway.exchange(caller, &conversation, session_id),
        posted.messages,
    )
    .await;
    drop(turn);

    if governed.forwarded.is_empty() {
        return governed.refused_only(is_batch);
    }

    let http = match &caller.route.upstream {
        Upstream::Http(http) => http,
        Upstream::Stdio(stdio) => {
            let exchange = StdioExchange {
                protocol_version: initialize_version(&governed.forwarded),
                session,
                conversation,
                governed,
                initialize,
                batch: is_batch,
            };
            return post_stdio(gateway, caller, stdio, exchange).await;
        }
    };
    let upstream_body = governed.body(posted.body, is_batch);
    let mirrored = match mirrors.for_upstream(governed.forwarded.first().filter(|_| !is_batch)) {
        Ok(mirrored) => mirrored,
        Err(why) => {
            conversation.forget_client_requests(&governed.requests);
            let errors: Vec<Message> = governed
                .forwarded
                .iter()
                .filter_map(|m| wire::error_message(m.id(), wire::HEADER_MISMATCH, &why, None))
                .collect();
            return json_response(StatusCode::OK, &errors, is_batch, None);
        }
    };
    let upstream_session = session
        .as_ref()
        .and_then(|(_, record)| record.upstream_session.clone());
    // What this POST asks may make the server send a request on the session's GET stream: that
    // stream must be open upstream first.
    if let Some(session_id) = session_id {
        gateway
            .opening_streams
            .settled(caller.route.identity, session_id, listening::MAX_WAIT)
            .await;
    }
    // A client that says it is ready gets its session's upstream GET stream opened now, before
    // anything it sends next can make the server send a request on it.
    let pre_open = match session_id {
        Some(session_id)
            if gateway.pre_open_streams
                && governed.forwarded.iter().any(|m| {
                    m.kind() == MessageKind::Notification
                        && m.method() == Some(methods::INITIALIZED)
                }) =>
        {
            Some(
                gateway
                    .opening_streams
                    .open(caller.route.identity, session_id),
            )
        }
        _ => None,
    };
    let request = upstream_request(
        http,
        Method::POST,
        upstream_session.as_deref(),
        headers,
        mirrored,
        upstream_body,
    );
    let sent = std::time::Instant::now();
    let upstream = match send(gateway, request).await {
        Ok(upstream) => upstream,
        Err((code, message)) => {
            drop(pre_open);
            conversation.forget_client_requests(&governed.requests);
            let errors: Vec<Message> = governed
                .forwarded
                .iter()
                .filter(|m| m.kind() == MessageKind::Request)
                .filter_map(|m| wire::error_message(m.id(), code, &message, None))
                .chain(governed.answers)
                .collect();
            if errors.is_empty() {
                return wire::http_error(StatusCode::BAD_GATEWAY, code, &message);
            }
            return json_response(StatusCode::OK, &errors, is_batch, None);
        }
    };

    if let (Some(opening), Some(session_id)) = (pre_open, session_id)
        && upstream.status().is_success()
    {
        tokio::spawn(pre_open_stream(
            Arc::clone(gateway),
            caller.clone(),
            session_id.to_owned(),
            upstream_session.clone(),
            headers.get(&VERSION_HEADER).cloned(),
            opening,
        ));
    }

    // A successful initialize opens a gateway session that stands for the upstream's.
    let mut new_session = None;
    let gateway_session = if initialize && upstream.status().is_success() {
        let id = new_session_id();
        let record = SessionRecord {
            identity: caller.route.identity,
            upstream_session: upstream
                .headers()
                .get(&SESSION_HEADER)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            protocol_version: initialize_version(&governed.forwarded),
            served_by: None,
            client_elicits: client_elicits(&governed.forwarded),
        };
        if let Err(e) = gateway.sessions.insert(&id, record).await {
            tracing::error!(error = %e, "cannot store a new session");
            return wire::http_error(
                StatusCode::SERVICE_UNAVAILABLE,
                wire::UPSTREAM_UNAVAILABLE,
                "session store unavailable",
            );
        }
        new_session = Some(id.clone());
        Some(id)
    } else {
        session_id.map(str::to_owned)
    };

    let door = ProxyDoor {
        gateway: Arc::clone(gateway),
        caller: caller.clone(),
        session: gateway_session,
        conversation,
        link: UpstreamLink::Http {
            session: upstream_session,
        },
        upstream_sent: Some(sent),
        upstream_status: None,
        span: crate::telemetry::current_span(),
    };
    let answering = Answering {
        requests: governed.requests,
        answers: governed.answers,
        batch: is_batch,
        new_session,
    };
    relay::response(door, answering, upstream).await
}

/// Opens the session's upstream GET stream on the gateway's own account and holds it for the client's
/// GET to take (see `listening`); `opening` marks it as on its way until then. A server without a GET
/// stream (405), or one that fails, leaves nothing held: the client's GET will hear the same.
async fn pre_open_stream(
    gateway: Arc<Gateway>,
    caller: Caller,
    session: String,
    upstream_session: Option<String>,
    version: Option<HeaderValue>,
    opening: Opening,
) {
    let Upstream::Http(http) = &caller.route.upstream else {
        return;
    };
    let mut headers = HeaderMap::new();
    headers.insert(
        header::ACCEPT,
        HeaderValue::from_static("text/event-stream"),
    );
    if let Some(version) = version {
        headers.insert(VERSION_HEADER, version);
    }
    let request = upstream_request(
        http,
        Method::GET,
        upstream_session.as_deref(),
        &headers,
        Vec::new(),
        Bytes::new(),
    );
    if let Ok(stream) = send(&gateway, request).await {
        let is_stream = header(stream.headers(), &header::CONTENT_TYPE)
            .is_some_and(|t| t.starts_with("text/event-stream"));
        if stream.status().is_success() && is_stream {
            gateway
                .opening_streams
                .hold(caller.route.identity, &session, stream);
        }
    }
    drop(opening);
}

/// Sends an upstream request, turning failures and time-outs into a JSON-RPC error code and message.
pub(super) async fn send(
    gateway: &Gateway,
    request: Request<Bytes>,
) -> Result<UpstreamResponse, (i64, String)> {
    match tokio::time::timeout(
        gateway.settings.upstream_timeout(),
        gateway.http.send(request),
    )
    .await
    {
        Ok(Ok(response)) => Ok(response),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "upstream request failed");
            Err((
                wire::UPSTREAM_UNAVAILABLE,
                "the upstream MCP server could not be reached".into(),
            ))
        }
        Err(_) => Err((
            wire::UPSTREAM_TIMEOUT,
            "the upstream MCP server did not answer in time".into(),
        )),
    }
}

/// GET: the server-initiated stream of a session.
pub(super) async fn get(gateway: &Arc<Gateway>, caller: &Caller, headers: &HeaderMap) -> Response {
    // Until the upstream has answered this GET, the session's POSTs wait (see `listening`). Marked
    // before anything here awaits, so that a POST that arrived after the GET cannot overtake it; a
    // stream the gateway is opening for the session itself is waited for, to be taken.
    let session_header = header(headers, &SESSION_HEADER);
    let pre_opening = session_header.and_then(|session| {
        gateway
            .opening_streams
            .pending(caller.route.identity, session)
    });
    let opening =
        session_header.map(|session| gateway.opening_streams.open(caller.route.identity, session));
    let accept = header(headers, &header::ACCEPT).unwrap_or_default();
    if !accept.contains("text/event-stream") && !accept.contains("*/*") {
        return wire::http_error(
            StatusCode::NOT_ACCEPTABLE,
            wire::INVALID_REQUEST,
            "Accept must list text/event-stream",
        );
    }
    if header(headers, &VERSION_HEADER) == Some(STATELESS_VERSION) {
        return wire::http_error(
            StatusCode::METHOD_NOT_ALLOWED,
            wire::INVALID_REQUEST,
            "protocol 2026-07-28 has no GET stream",
        );
    }
    let (session_id, record) = match required_session(gateway, caller, headers).await {
        Ok(session) => session,
        Err(response) => return response,
    };
    let http = match &caller.route.upstream {
        Upstream::Http(http) => http,
        Upstream::Stdio(_) => {
            let Some(process) = gateway.stdio.get(&session_id) else {
                return session_not_served_here(gateway, &session_id, &record).await;
            };
            let door = ProxyDoor {
                gateway: Arc::clone(gateway),
                caller: caller.clone(),
                conversation: gateway.conversation(caller, Some(&session_id)),
                session: Some(session_id),
                link: UpstreamLink::Stdio(Arc::clone(&process)),
                upstream_sent: None,
                upstream_status: None,
                span: crate::telemetry::current_span(),
            };
            let resume = header(headers, &LAST_EVENT_ID).and_then(Position::parse);
            return relay::stdio_listen(door, &process, resume);
        }
    };
    if let Some(pre_opening) = pre_opening {
        pre_opening.settled(listening::MAX_WAIT).await;
    }
    let held = gateway
        .opening_streams
        .take(caller.route.identity, &session_id);
    let upstream = match held {
        // The stream the gateway opened when the client said it was ready, unread until now. A
        // client that resumes (`Last-Event-ID`) gets a stream of its own instead.
        Some(held) if header(headers, &LAST_EVENT_ID).is_none() => held,
        held => {
            drop(held);
            let request = upstream_request(
                http,
                Method::GET,
                record.upstream_session.as_deref(),
                headers,
                Vec::new(),
                Bytes::new(),
            );
            match send(gateway, request).await {
                Ok(upstream) => upstream,
                Err((code, message)) => {
                    return wire::http_error(StatusCode::BAD_GATEWAY, code, &message);
                }
            }
        }
    };
    // The upstream has its stream: the session's POSTs may go.
    drop(opening);
    let door = ProxyDoor {
        gateway: Arc::clone(gateway),
        caller: caller.clone(),
        conversation: gateway.conversation(caller, Some(&session_id)),
        session: Some(session_id),
        link: UpstreamLink::Http {
            session: record.upstream_session,
        },
        upstream_sent: None,
        upstream_status: None,
        span: crate::telemetry::current_span(),
    };
    let listening = Answering {
        requests: Unanswered::default(),
        answers: Vec::new(),
        batch: false,
        new_session: None,
    };
    relay::response(door, listening, upstream).await
}

/// DELETE: ends a session here and upstream.
pub(super) async fn delete(
    gateway: &Arc<Gateway>,
    caller: &Caller,
    headers: &HeaderMap,
) -> Response {
    let (session_id, record) = match required_session(gateway, caller, headers).await {
        Ok(session) => session,
        Err(response) => return response,
    };
    let status = match (&caller.route.upstream, record.upstream_session.as_deref()) {
        (Upstream::Stdio(_), _) => {
            gateway.stdio.end(&session_id).await;
            StatusCode::NO_CONTENT
        }
        (Upstream::Http(http), Some(upstream_session)) => {
            let request = upstream_request(
                http,
                Method::DELETE,
                Some(upstream_session),
                headers,
                Vec::new(),
                Bytes::new(),
            );
            match send(gateway, request).await {
                Ok(response) => response.status(),
                // The gateway session ends whatever the upstream says; its own session will expire there.
                Err(_) => StatusCode::NO_CONTENT,
            }
        }
        (Upstream::Http(_), None) => StatusCode::NO_CONTENT,
    };
    gateway
        .conversations
        .end(&session_id, &caller.route.identity);
    if let Err(e) = gateway.sessions.remove(&session_id).await {
        tracing::error!(error = %e, "cannot remove a session");
        return wire::http_error(
            StatusCode::SERVICE_UNAVAILABLE,
            wire::UPSTREAM_UNAVAILABLE,
            "session store unavailable",
        );
    }
    if status == StatusCode::METHOD_NOT_ALLOWED {
        return StatusCode::METHOD_NOT_ALLOWED.into_response();
    }
    StatusCode::OK.into_response()
}

/// The protocol version an `initialize` request among `messages` asks for.
/// Whether the client declares among `messages` that it can be asked: the `elicitation` capability
/// of its `initialize`, or of a stateless request's `_meta`.
fn client_elicits(messages: &[Message]) -> bool {
    messages.iter().any(|m| {
        let Some(params) = m.params().filter(|_| m.kind() == MessageKind::Request) else {
            return false;
        };
        let capabilities = if m.method() == Some(methods::INITIALIZE) {
            params.get("capabilities")
        } else {
            params
                .get("_meta")
                .and_then(|meta| meta.get("io.modelcontextprotocol/clientCapabilities"))
        };
        capabilities
            .and_then(|c| c.get("elicitation"))
            .is_some_and(serde_json::Value::is_object)
    })
}

fn initialize_version(messages: &[Message]) -> Option<String> {
    messages
        .iter()
        .find(|m| m.method() == Some(methods::INITIALIZE))
        .and_then(|m| {
            m.params()?
                .get("protocolVersion")?
                .as_str()
                .map(str::to_owned)
        })
}

/// A session whose stdio process does not run on this instance. If this instance started it, the
/// process has ended: the session is over. If another instance runs it (several instances share
/// sessions, and the load balancer sent this request elsewhere), that session lives on there and is
/// left alone. Either way this instance cannot serve it: 404, on which MCP clients initialize again
/// (and a load balancer with session affinity never sends it here).
async fn session_not_served_here(
    gateway: &Gateway,
    session_id: &str,
    record: &SessionRecord,
) -> Response {
    let elsewhere = record
        .served_by
        .as_ref()
        .is_some_and(|instance| *instance != gateway.instance);
    if elsewhere {
        tracing::warn!(
            served_by = record.served_by.as_deref().unwrap_or_default(),
            "a stdio session reached an instance that does not run its process: route sessions by Mcp-Session-Id"
        );
        return wire::http_error(
            StatusCode::NOT_FOUND,
            wire::INVALID_REQUEST,
            "the session's MCP server process runs on another gateway instance: route requests by Mcp-Session-Id (session affinity), or initialize again",
        );
    }
    session_ended(gateway, session_id).await
}

/// A session whose stdio process (on this instance) has ended: it is over, and the client
/// initializes again.
async fn session_ended(gateway: &Gateway, session_id: &str) -> Response {
    let _ = gateway.sessions.remove(session_id).await;
    wire::http_error(
        StatusCode::NOT_FOUND,
        wire::INVALID_REQUEST,
        "the session's MCP server process has ended: initialize again",
    )
}

/// What a POST hands to a stdio upstream.
struct StdioExchange {
    session: Option<(String, SessionRecord)>,
    conversation: Arc<Conversation>,
    governed: Decided,
    initialize: bool,
    batch: bool,
    protocol_version: Option<String>,
}

/// POST to a stdio upstream: a new process for `initialize`, the session's process otherwise.
async fn post_stdio(
    gateway: &Arc<Gateway>,
    caller: &Caller,
    upstream: &StdioUpstream,
    exchange: StdioExchange,
) -> Response {
    let StdioExchange {
        session,
        conversation,
        governed,
        initialize,
        batch,
        protocol_version,
    } = exchange;
    let forwarded = &governed.forwarded;
    let (session_id, process, new_session) = if initialize {
        let id = new_session_id();
        let process = match gateway
            .stdio
            .spawn(&id, upstream, &caller.route.name, caller.route.identity)
            .await
        {
            Ok(process) => process,
            Err(error @ (SpawnError::TooMany(_) | SpawnError::BackingOff(_))) => {
                let mut response = wire::http_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    wire::UPSTREAM_UNAVAILABLE,
                    &error.to_string(),
                );
                let seconds = match error {
                    SpawnError::BackingOff(wait) => wait.as_secs().max(1),
                    _ => 5,
                };
                if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
                    response.headers_mut().insert(header::RETRY_AFTER, value);
                }
                return response;
            }
            Err(error) => {
                tracing::error!(upstream = %caller.route.name, %error, "cannot start a stdio upstream");
                let errors: Vec<Message> = forwarded
                    .iter()
                    .filter(|m| m.kind() == MessageKind::Request)
                    .filter_map(|m| {
                        wire::error_message(
                            m.id(),
                            wire::UPSTREAM_UNAVAILABLE,
                            "the upstream MCP server could not be started",
                            None,
                        )
                    })
                    .collect();
                return json_response(StatusCode::OK, &errors, batch, None);
            }
        };
        let record = SessionRecord {
            identity: caller.route.identity,
            upstream_session: None,
            protocol_version,
            served_by: Some(gateway.instance.clone()),
            client_elicits: client_elicits(forwarded),
        };
        if let Err(e) = gateway.sessions.insert(&id, record).await {
            tracing::error!(error = %e, "cannot store a new session");
            gateway.stdio.end(&id).await;
            return wire::http_error(
                StatusCode::SERVICE_UNAVAILABLE,
                wire::UPSTREAM_UNAVAILABLE,
                "session store unavailable",
            );
        }
        (id.clone(), process, Some(id))
    } else {
        let Some((id, record)) = session else {
            return wire::http_error(
                StatusCode::BAD_REQUEST,
                wire::INVALID_REQUEST,
                "this workspace's MCP server runs over stdio and needs a session: initialize first",
            );
        };
        match gateway.stdio.get(&id) {
            Some(process) => (id, process, None),
            None => return session_not_served_here(gateway, &id, &record).await,
        }
    };

    let sent = std::time::Instant::now();
    let (to_post, from_process) = tokio::sync::mpsc::channel(64);
    let routes = process.register(forwarded, &to_post);
    // Only the routes hold a sender now, so the stream ends when the process does.
    drop(to_post);
    for message in forwarded {
        if !process.send(message).await {
            process.release(&routes);
            conversation.forget_client_requests(&governed.requests);
            return session_ended(gateway, &session_id).await;
        }
    }
    if governed.requests.is_empty() {
        process.release(&routes);
        if governed.answers.is_empty() {
            return StatusCode::ACCEPTED.into_response();
        }
        return json_response(StatusCode::OK, &governed.answers, batch, None);
    }
    let events = Arc::clone(&process.events);
    let door = ProxyDoor {
        gateway: Arc::clone(gateway),
        caller: caller.clone(),
        session: Some(session_id),
        conversation,
        link: UpstreamLink::Stdio(process),
        upstream_sent: Some(sent),
        upstream_status: None,
        span: crate::telemetry::current_span(),
    };
    let answering = Answering {
        requests: governed.requests,
        answers: governed.answers,
        batch,
        new_session,
    };
    relay::stdio_stream(door, answering, routes, from_process, events)
}
