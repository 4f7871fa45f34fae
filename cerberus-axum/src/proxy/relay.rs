//! Upstream answers on their way to the client, through the shared relay (`crate::relay`): the proxy's
//! [`Door`] runs each message through the caller's pipeline within its session's conversation, and
//! answers refused server requests upstream, over HTTP or to the stdio process.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use cerberus_core::exchange::{Conversation, Handled};
use cerberus_core::{Message, MessageKind, RequestId};
use futures::StreamExt;
use http_body_util::BodyExt;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tracing::{Instrument, Span};

use super::SESSION_HEADER;
use super::replay::{EventLog, Position, StreamKind, StreamWriter};
use super::stdio::{PostRoutes, StdioProcess};
use crate::gateway::{Caller, Gateway};
use crate::relay::{self, Door, Relay, Unanswered, server_message};
use crate::upstream::Upstream;
use crate::upstream_client::{UpstreamError, UpstreamResponse};
use crate::wire;

/// The largest JSON response body read from an upstream.
const MAX_UPSTREAM_JSON_BYTES: usize = 64 * 1024 * 1024;

/// How many events may wait for a slow client before the relay stops reading a stdio process.
const STREAM_BUFFER: usize = 16;

/// The way back to the upstream, for answers the gateway gives on the client's behalf.
#[derive(Clone, Debug)]
pub(super) enum UpstreamLink {
    /// An HTTP upstream, within its own session (if it has one).
    Http { session: Option<String> },
    /// A stdio process.
    Stdio(Arc<StdioProcess>),
}

/// The proxy's side of one upstream answer: whose it is, within which session and conversation, and
/// how the upstream is answered.
#[derive(Debug)]
pub(super) struct ProxyDoor {
    pub gateway: Arc<Gateway>,
    pub caller: Caller,
    /// The gateway session.
    pub session: Option<String>,
    pub conversation: Arc<Conversation>,
    /// The upstream session, to answer server requests the gateway refuses.
    pub link: UpstreamLink,
    /// When the request went upstream (none for a GET stream, which answers no request).
    pub upstream_sent: Option<Instant>,
    /// The HTTP status the upstream answered with.
    pub upstream_status: Option<u16>,
    /// The request's trace span, which the relay's pipeline spans belong to even after the handler
    /// has returned (none when spans are not exported).
    pub span: Span,
}

impl Door for ProxyDoor {
    fn decide(&self, message: Message) -> impl Future<Output = Handled> + Send {
        async move {
            self.gateway
                .exchange(&self.caller, &self.conversation, self.session.as_deref())
                .with_upstream(self.upstream_status, self.upstream_sent)
                .from_server(message)
                .await
        }
        .instrument(self.span.clone())
    }

    fn answer_server(&self, answer: Message) -> impl Future<Output = ()> + Send {
        answer_upstream(&self.gateway, &self.caller, &self.link, answer)
    }

    fn forget(&self, unanswered: &Unanswered) {
        self.conversation.forget_client_requests(unanswered);
    }
}

/// What the relay of one upstream answer needs besides its door.
#[derive(Debug)]
pub(super) struct Answering {
    /// The POST's requests awaiting their answers in this one.
    pub requests: Unanswered,
    /// Answers the gateway gives itself (refused requests), sent before the upstream's.
    pub answers: Vec<Message>,
    /// Whether the client sent a batch.
    pub batch: bool,
    /// A session opened by this request, to announce in `Mcp-Session-Id`.
    pub new_session: Option<String>,
}

/// Passes an upstream response on to the client.
pub(super) async fn response(
    mut door: ProxyDoor,
    answering: Answering,
    upstream: UpstreamResponse,
) -> Response {
    let status =
        StatusCode::from_u16(upstream.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    door.upstream_status = Some(upstream.status().as_u16());
    let Answering {
        requests,
        answers,
        batch,
        new_session,
    } = answering;
    if status == StatusCode::NOT_FOUND
        && new_session.is_none()
        && let Some(session) = &door.session
    {
        // The upstream forgot the session: so does the gateway, and the client initializes again.
        let _ = door.gateway.sessions.remove(session).await;
        door.gateway
            .conversations
            .end(session, &door.caller.route.identity);
        door.conversation.forget_client_requests(&requests);
        return wire::http_error(
            StatusCode::NOT_FOUND,
            wire::INVALID_REQUEST,
            "the session expired: initialize again",
        );
    }
    let drain_limit = door.gateway.settings.upstream_timeout();
    let relay = Relay {
        door,
        answers,
        requests,
        batch,
        drain_limit,
    };
    let mut response = if wire::is_media(upstream.headers(), "text/event-stream") {
        let chunks = upstream
            .into_body()
            .into_data_stream()
            .map(|chunk| chunk.map_err(axum::BoxError::from))
            .boxed();
        let body = relay::events::events(relay, chunks).await;
        let mut response = Response::new(Body::new(body));
        *response.status_mut() = status;
        relay::set_event_stream_headers(response.headers_mut());
        response
    } else if wire::is_media(upstream.headers(), "application/json") {
        json(relay, upstream, status).await
    } else {
        relay.door.forget(&relay.requests);
        if relay.answers.is_empty() {
            status.into_response()
        } else {
            wire::json_response(status_or_ok(status), &relay.answers, relay.batch)
        }
    };
    if let Some(value) = new_session
        .as_deref()
        .and_then(|s| HeaderValue::from_str(s).ok())
    {
        response.headers_mut().insert(SESSION_HEADER, value);
    }
    response
}

fn status_or_ok(status: StatusCode) -> StatusCode {
    if status == StatusCode::ACCEPTED {
        StatusCode::OK
    } else {
        status
    }
}

async fn json(relay: Relay<ProxyDoor>, upstream: UpstreamResponse, status: StatusCode) -> Response {
    let timeout = relay.door.gateway.settings.upstream_timeout();
    let read = tokio::time::timeout(timeout, read_limited(upstream)).await;
    let failure = match read {
        Ok(Ok(body)) => {
            // A large answer is governed in the caller's turn, as a large request is (`turns`).
            let turn = relay
                .door
                .gateway
                .large_message_turns
                .take(relay.door.caller.route.identity, body.len())
                .await;
            let governed = relay.json(body).await;
            drop(turn);
            let Some(body) = governed else {
                return wire::http_error(
                    StatusCode::BAD_GATEWAY,
                    wire::UPSTREAM_UNAVAILABLE,
                    "the upstream MCP server sent a malformed JSON-RPC body",
                );
            };
            let mut response = (status_or_ok(status), body).into_response();
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            return response;
        }
        Ok(Err(message)) => (StatusCode::BAD_GATEWAY, wire::UPSTREAM_UNAVAILABLE, message),
        Err(_) => (
            StatusCode::GATEWAY_TIMEOUT,
            wire::UPSTREAM_TIMEOUT,
            "the upstream MCP server did not finish its answer in time".to_owned(),
        ),
    };
    relay.door.forget(&relay.requests);
    wire::http_error(failure.0, failure.1, &failure.2)
}

async fn read_limited(upstream: UpstreamResponse) -> Result<Bytes, String> {
    let mut body = Vec::new();
    let mut chunks = upstream.into_body().into_data_stream();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(|e| format!("the upstream answer broke off: {e}"))?;
        if body.len() + chunk.len() > MAX_UPSTREAM_JSON_BYTES {
            return Err(format!(
                "the upstream answer exceeds {MAX_UPSTREAM_JSON_BYTES} bytes"
            ));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(body))
}

async fn answer_upstream(gateway: &Gateway, caller: &Caller, link: &UpstreamLink, answer: Message) {
    let (upstream, session) = match (link, &caller.route.upstream) {
        (UpstreamLink::Stdio(process), _) => {
            if !process.send(&answer).await {
                tracing::warn!(
                    "could not answer a refused server request: the stdio upstream ended"
                );
            }
            return;
        }
        (UpstreamLink::Http { session }, Upstream::Http(upstream)) => {
            (upstream, session.as_deref())
        }
        (UpstreamLink::Http { .. }, _) => return,
    };
    let mut request = super::forward::upstream_request(
        upstream,
        Method::POST,
        session,
        &HeaderMap::new(),
        Vec::new(),
        answer.to_bytes(),
    );
    request.headers_mut().insert(
        header::ACCEPT,
        HeaderValue::from_static("application/json, text/event-stream"),
    );
    // The upstream's acknowledgement (a 202, normally) is read to its end, which frees the connection;
    // the whole exchange is bounded, whatever the upstream answers with.
    let exchange = async {
        let response = gateway.http.send(request).await?;
        response.into_body().collect().await?;
        Ok::<_, UpstreamError>(())
    };
    match tokio::time::timeout(gateway.settings.upstream_timeout(), exchange).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "could not answer a refused server request upstream")
        }
        Err(_) => tracing::warn!(
            "the upstream did not take the answer to a refused server request in time"
        ),
    }
}

fn event_stream_response(
    receiver: mpsc::Receiver<Result<Bytes, std::io::Error>>,
    status: StatusCode,
) -> Response {
    let mut response = Response::new(Body::from_stream(ReceiverStream::new(receiver)));
    *response.status_mut() = status;
    relay::set_event_stream_headers(response.headers_mut());
    response
}

/// A POST to a stdio process: its messages as an event stream, until every request is answered. Each
/// event is numbered and logged in the session's replay log before it is sent; when the client goes
/// away, the answers are still collected into the log, for a GET with `Last-Event-ID` to resume.
pub(super) fn stdio_stream(
    door: ProxyDoor,
    answering: Answering,
    routes: PostRoutes,
    mut from_process: mpsc::Receiver<Message>,
    events: Arc<EventLog>,
) -> Response {
    let (sender, receiver) = mpsc::channel::<Result<Bytes, std::io::Error>>(STREAM_BUFFER);
    let Answering {
        requests: mut outstanding,
        answers,
        new_session,
        ..
    } = answering;
    tokio::spawn(async move {
        let mut stream = ClientStream {
            writer: events.stream(StreamKind::Post),
            sender,
            gone: false,
        };
        for answer in &answers {
            stream.send(answer).await;
        }
        while !outstanding.is_empty() {
            let Some(message) = from_process.recv().await else {
                break;
            };
            if matches!(message.kind(), MessageKind::Response | MessageKind::Error)
                && let Some(id) = message.id()
            {
                outstanding.remove(&RequestId::of(id));
            }
            if let Some(out) = server_message(&door, message).await {
                stream.send(&out).await;
            }
        }
        if let UpstreamLink::Stdio(process) = &door.link {
            process.release(&routes);
        }
        door.forget(&outstanding);
        for id in &outstanding {
            let error = wire::error_message(
                Some(&id.to_value()),
                wire::UPSTREAM_UNAVAILABLE,
                "the upstream MCP server process ended before answering",
                None,
            );
            if let Some(error) = error {
                stream.send(&error).await;
            }
        }
    });
    let mut response = event_stream_response(receiver, StatusCode::OK);
    if let Some(value) = new_session
        .as_deref()
        .and_then(|s| HeaderValue::from_str(s).ok())
    {
        response.headers_mut().insert(SESSION_HEADER, value);
    }
    response
}

/// One stream of a stdio session to its client: every event logged, and sent while the client reads.
struct ClientStream {
    writer: StreamWriter,
    sender: mpsc::Sender<Result<Bytes, std::io::Error>>,
    gone: bool,
}

impl ClientStream {
    /// Logs `message` and sends it, unless the client is gone; whether the client still reads.
    async fn send(&mut self, message: &Message) -> bool {
        let event = self.writer.event(message);
        if !self.gone {
            self.gone = self.sender.send(Ok(event)).await.is_err();
        }
        !self.gone
    }
}

/// A GET to a stdio session: the process's messages that answer no POST, as they come. With
/// `resume` (a `Last-Event-ID` the session's log still knows), first what that stream sent after it:
/// a POST's stream to its end, and then this response ends; the GET stream's, and then this is the
/// session's GET stream.
pub(super) fn stdio_listen(
    door: ProxyDoor,
    process: &StdioProcess,
    resume: Option<Position>,
) -> Response {
    let events = Arc::clone(&process.events);
    let resumed = resume.and_then(|position| Some((position, events.kind_of(position)?)));
    let (sender, receiver) = mpsc::channel::<Result<Bytes, std::io::Error>>(STREAM_BUFFER);
    let replay = |events: Arc<EventLog>, position, sender: mpsc::Sender<_>| async move {
        events
            .replay(position, |event| {
                let sender = sender.clone();
                async move { sender.send(Ok(event)).await.is_ok() }
            })
            .await;
        sender
    };
    if let Some((position, StreamKind::Post)) = resumed {
        tokio::spawn(replay(events, position, sender));
        return event_stream_response(receiver, StatusCode::OK);
    }
    let (to_stream, mut from_process) = mpsc::channel::<Message>(STREAM_BUFFER);
    // The session's GET stream from now on: a GET stream before it ends, its log closes.
    let backlog = process.listen(to_stream);
    tokio::spawn(async move {
        let sender = match resumed {
            Some((position, _)) => replay(Arc::clone(&events), position, sender).await,
            None => sender,
        };
        let mut stream = ClientStream {
            writer: events.stream(StreamKind::Get),
            sender,
            gone: false,
        };
        for message in backlog {
            if let Some(out) = server_message(&door, message).await
                && !stream.send(&out).await
            {
                return;
            }
        }
        while let Some(message) = from_process.recv().await {
            if let Some(out) = server_message(&door, message).await
                && !stream.send(&out).await
            {
                return;
            }
        }
    });
    event_stream_response(receiver, StatusCode::OK)
}
