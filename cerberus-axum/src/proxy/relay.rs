//! Upstream responses: every message through the response pipeline, SSE events passed on one by one as
//! they arrive.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use cerberus_core::{Direction, Envelope, Message, MessageKind};
use http_body_util::BodyExt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use futures::stream::{BoxStream, Peekable};
use futures::{FutureExt, StreamExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tracing::Instrument;

use super::SESSION_HEADER;
use super::request_id::RequestId;
use super::stdio::{PostRoutes, StdioProcess};
use crate::gateway::{Caller, Gateway, UpstreamTiming};
use crate::sse::{SseDecoder, SseEvent};
use crate::upstream::Upstream;
use crate::upstream_client::{UpstreamError, UpstreamResponse};
use crate::wire;

/// The largest JSON response body read from an upstream.
const MAX_UPSTREAM_JSON_BYTES: usize = 64 * 1024 * 1024;

/// How many events may wait for a slow client before the relay stops reading the upstream.
const STREAM_BUFFER: usize = 16;

/// The way back to the upstream, for answers the gateway gives on the client's behalf.
#[derive(Clone, Debug)]
pub(super) enum UpstreamLink {
    /// An HTTP upstream, within its own session (if it has one).
    Http { session: Option<String> },
    /// A stdio process.
    Stdio(Arc<StdioProcess>),
}

/// The method of each request of a POST, by id: usually one entry, made once per POST.
pub(super) type RequestMethods = HashMap<RequestId, String, foldhash::fast::RandomState>;

/// The requests of a POST that have no answer yet (hashed like [`RequestMethods`]).
type Unanswered = HashSet<RequestId, foldhash::fast::RandomState>;

/// What the relay needs to know about the request it answers.
#[derive(Debug)]
pub(super) struct RelayContext {
    /// The gateway session.
    pub session: Option<String>,
    /// The upstream session, to answer server requests the gateway refuses.
    pub link: UpstreamLink,
    /// The method of each request of this POST, by id.
    pub request_methods: RequestMethods,
    /// Answers the gateway gives itself (refused requests), sent before the upstream's.
    pub answers: Vec<Message>,
    /// Whether the client sent a batch.
    pub batch: bool,
    /// A session opened by this request, to announce in `Mcp-Session-Id`.
    pub new_session: Option<String>,
    /// When the request went upstream (none for a GET stream, which answers no request).
    pub upstream_sent: Option<std::time::Instant>,
    /// The HTTP status the upstream answered with.
    pub upstream_status: Option<u16>,
    /// The request's trace span, which the relay's pipeline spans belong to even after the handler
    /// has returned (none when spans are not exported).
    pub span: tracing::Span,
}

/// Passes an upstream response on to the client.
pub(super) async fn response(
    gateway: Arc<Gateway>,
    caller: Caller,
    mut context: RelayContext,
    upstream: UpstreamResponse,
) -> Response {
    let status =
        StatusCode::from_u16(upstream.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    context.upstream_status = Some(upstream.status().as_u16());
    if status == StatusCode::NOT_FOUND && context.session.is_some() && context.new_session.is_none()
    {
        // The upstream forgot the session: so does the gateway, and the client initializes again.
        if let Some(session) = &context.session {
            let _ = gateway.sessions.remove(session).await;
        }
        return wire::http_error(
            StatusCode::NOT_FOUND,
            wire::INVALID_REQUEST,
            "the session expired: initialize again",
        );
    }
    let new_session = context.new_session.take();
    let mut response = if wire::is_media(upstream.headers(), "text/event-stream") {
        stream(gateway, caller, context, upstream, status).await
    } else if wire::is_media(upstream.headers(), "application/json") {
        json(&gateway, &caller, &context, upstream, status).await
    } else if !context.answers.is_empty() {
        wire::json_response(status_or_ok(status), &context.answers, context.batch)
    } else {
        status.into_response()
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

async fn json(
    gateway: &Gateway,
    caller: &Caller,
    context: &RelayContext,
    upstream: UpstreamResponse,
    status: StatusCode,
) -> Response {
    let read =
        tokio::time::timeout(gateway.settings.upstream_timeout(), read_limited(upstream)).await;
    let body = match read {
        Ok(Ok(body)) => body,
        Ok(Err(message)) => {
            return wire::http_error(
                StatusCode::BAD_GATEWAY,
                wire::UPSTREAM_UNAVAILABLE,
                &message,
            );
        }
        Err(_) => {
            return wire::http_error(
                StatusCode::GATEWAY_TIMEOUT,
                wire::UPSTREAM_TIMEOUT,
                "the upstream MCP server did not finish its answer in time",
            );
        }
    };
    let Ok(messages) = Message::parse_batch(body) else {
        return wire::http_error(
            StatusCode::BAD_GATEWAY,
            wire::UPSTREAM_UNAVAILABLE,
            "the upstream MCP server sent a malformed JSON-RPC body",
        );
    };
    let mut out = context.answers.clone();
    for message in messages {
        out.extend(process_message(gateway, caller, context, message).await);
    }
    wire::json_response(status_or_ok(status), &out, context.batch)
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

/// One upstream message through the response pipeline: what the client gets instead, if anything.
async fn process_message(
    gateway: &Gateway,
    caller: &Caller,
    context: &RelayContext,
    message: Message,
) -> Option<Message> {
    let kind = message.kind();
    let id = message.id().cloned();
    let answered = id
        .as_ref()
        .and_then(|id| context.request_methods.get(&RequestId::of(id)))
        .map(String::as_str);
    if let (MessageKind::Request, Some(session), Some(id), Some(method)) =
        (kind, &context.session, &id, message.method())
    {
        gateway.remember_server_request(session, id, method);
    }
    let identity = caller.route.identity;
    let envelope = Envelope::new(Direction::Response, &identity)
        .with_session(context.session.as_deref())
        .answering(answered);
    let upstream = context.upstream_sent.map(|sent| UpstreamTiming {
        status: context.upstream_status,
        elapsed: sent.elapsed(),
    });
    let outcome = gateway
        .evaluate(caller, envelope, message, upstream)
        .instrument(context.span.clone())
        .await;
    if outcome.decision.passes() {
        return Some(outcome.message);
    }
    match kind {
        MessageKind::Response | MessageKind::Error => wire::refusal(id.as_ref(), &outcome.decision),
        MessageKind::Request => {
            // The server is waiting: it gets an error as the client's answer, and the client never sees
            // the refused request.
            if let Some(answer) = wire::refusal(id.as_ref(), &outcome.decision) {
                answer_upstream(gateway, caller, &context.link, answer).await;
            }
            None
        }
        MessageKind::Notification => None,
    }
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
        (UpstreamLink::Http { .. }, Upstream::Stdio(_)) => return,
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
    set_event_stream_headers(response.headers_mut());
    response
}

/// Tells a reverse proxy in front of the gateway (nginx) not to buffer the stream.
const ACCEL_BUFFERING: HeaderName = HeaderName::from_static("x-accel-buffering");

fn set_event_stream_headers(headers: &mut axum::http::HeaderMap) {
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, no-transform"),
    );
    headers.insert(ACCEL_BUFFERING, HeaderValue::from_static("no"));
}

fn message_event(message: &Message) -> Bytes {
    SseEvent::message(String::from_utf8_lossy(&message.to_bytes()).into_owned()).encode()
}

/// A POST to a stdio process: its messages as an event stream, until every request is answered.
pub(super) fn stdio_stream(
    gateway: Arc<Gateway>,
    caller: Caller,
    context: RelayContext,
    routes: PostRoutes,
    mut from_process: mpsc::Receiver<Message>,
    requests: Vec<serde_json::Value>,
) -> Response {
    let (sender, receiver) = mpsc::channel::<Result<Bytes, std::io::Error>>(STREAM_BUFFER);
    let new_session = context.new_session.clone();
    tokio::spawn(async move {
        let mut client_gone = false;
        for answer in &context.answers {
            client_gone |= sender.send(Ok(message_event(answer))).await.is_err();
        }
        let mut outstanding: HashSet<RequestId, foldhash::fast::RandomState> =
            requests.iter().map(RequestId::of).collect();
        while !outstanding.is_empty() && !client_gone {
            let Some(message) = from_process.recv().await else {
                break;
            };
            if matches!(message.kind(), MessageKind::Response | MessageKind::Error)
                && let Some(id) = message.id()
            {
                outstanding.remove(&RequestId::of(id));
            }
            if let Some(out) = process_message(&gateway, &caller, &context, message).await {
                client_gone |= sender.send(Ok(message_event(&out))).await.is_err();
            }
        }
        if let UpstreamLink::Stdio(process) = &context.link {
            process.release(&routes);
        }
        for id in &outstanding {
            let error = wire::error_message(
                Some(&id.to_value()),
                wire::UPSTREAM_UNAVAILABLE,
                "the upstream MCP server process ended before answering",
                None,
            );
            if let Some(error) = error {
                let _ = sender.send(Ok(message_event(&error))).await;
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

/// A GET to a stdio session: the process's messages that answer no POST, as they come.
pub(super) fn stdio_listen(
    gateway: Arc<Gateway>,
    caller: Caller,
    context: RelayContext,
    process: &StdioProcess,
) -> Response {
    let (to_stream, mut from_process) = mpsc::channel::<Message>(STREAM_BUFFER);
    let backlog = process.listen(to_stream);
    let (sender, receiver) = mpsc::channel::<Result<Bytes, std::io::Error>>(STREAM_BUFFER);
    tokio::spawn(async move {
        for message in backlog {
            if let Some(out) = process_message(&gateway, &caller, &context, message).await
                && sender.send(Ok(message_event(&out))).await.is_err()
            {
                return;
            }
        }
        while let Some(message) = from_process.recv().await {
            if let Some(out) = process_message(&gateway, &caller, &context, message).await
                && sender.send(Ok(message_event(&out))).await.is_err()
            {
                return;
            }
        }
    });
    event_stream_response(receiver, StatusCode::OK)
}

/// An upstream event stream relayed to the client: decoded and evaluated as the client reads, in the
/// connection's own task (no spawned task, no channel), so a slow client slows the upstream read.
///
/// The answer to a POST takes with its head whatever of the upstream's answer has already arrived, up
/// to its first message (the upstream connection is driven by this task, so an upstream that wrote its
/// answer at once has usually been read whole by now), so that the two leave in one write; when that
/// message answers the last request, the end of the stream goes with it too. A one-event answer then
/// costs the client one packet, not three. Nothing waits for this: what has not arrived follows.
async fn stream(
    gateway: Arc<Gateway>,
    caller: Caller,
    context: RelayContext,
    upstream: UpstreamResponse,
    status: StatusCode,
) -> Response {
    let answers = join(context.answers.iter().map(message_event).collect());
    let relay = Box::new(EventRelay {
        unanswered: context.request_methods.keys().cloned().collect(),
        gateway,
        caller,
        context,
        chunks: upstream.into_body().into_data_stream().boxed().peekable(),
        decoder: SseDecoder::new(),
        resumable: false,
        ended: false,
        relayed_message: false,
    });
    let holds_head = relay.answers_requests();
    let mut body = RelayBody::new(answers, relay);
    if holds_head {
        // One look, no wait: an event half read stays in the body, which goes on with it.
        std::future::poll_fn(|cx| {
            let _ = body.poll_first_message(cx);
            Poll::Ready(())
        })
        .await;
    }
    let mut response = Response::new(Body::new(body));
    *response.status_mut() = status;
    set_event_stream_headers(response.headers_mut());
    response
}

/// The relay reading its next output, and the relay back once it has. The relay is boxed, so that
/// passing it in and out of each step moves a pointer, not the relay.
type NextOutput = Pin<Box<dyn Future<Output = (Box<EventRelay>, Option<Bytes>)> + Send>>;

/// The client's side of a relayed event stream: an HTTP body that says it has ended as soon as the
/// relay knows the upstream has, so that hyper writes the last event and the end of the stream at once.
struct RelayBody {
    /// Bytes to send next, in order: hyper writes what is ready together.
    ready: VecDeque<Bytes>,
    /// The relay producing what follows; none once the upstream has ended.
    next: Option<NextOutput>,
    /// Whether a message from the upstream has been read into `ready` (or sent).
    message_read: bool,
}

impl RelayBody {
    fn new(first: Bytes, relay: Box<EventRelay>) -> Self {
        Self {
            ready: (!first.is_empty()).then_some(first).into_iter().collect(),
            next: Some(relay.into_next()),
            message_read: false,
        }
    }

    /// Reads the relay's output until it has given a message (with the events before it that carry
    /// none, such as a priming event), or ended.
    fn poll_first_message(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        while !self.message_read && self.next.is_some() {
            ready!(self.poll_fill(cx));
        }
        Poll::Ready(())
    }

    /// Reads the relay's next output into `ready`: ready when it has, or at the end.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        while let Some(next) = self.next.as_mut() {
            let (relay, out) = ready!(next.as_mut().poll(cx));
            self.message_read |= relay.relayed_message;
            self.next = (out.is_some() && !relay.ended).then(|| relay.into_next());
            if let Some(out) = out.filter(|out| !out.is_empty()) {
                self.ready.push_back(out);
                return Poll::Ready(());
            }
        }
        Poll::Ready(())
    }
}

impl http_body::Body for RelayBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if this.ready.is_empty() {
            ready!(this.poll_fill(cx));
        }
        Poll::Ready(
            this.ready
                .pop_front()
                .map(|out| Ok(http_body::Frame::data(out))),
        )
    }

    fn is_end_stream(&self) -> bool {
        self.ready.is_empty() && self.next.is_none()
    }
}

/// The state of one relayed upstream event stream.
struct EventRelay {
    gateway: Arc<Gateway>,
    caller: Caller,
    context: RelayContext,
    chunks: Peekable<BoxStream<'static, Result<Bytes, hyper::Error>>>,
    decoder: SseDecoder,
    /// Requests of this POST that have no answer yet, by JSON id text.
    unanswered: Unanswered,
    /// Whether the upstream gave its events ids: a client can then resume a broken stream itself.
    resumable: bool,
    /// Whether the upstream stream has ended and everything from it has been relayed.
    ended: bool,
    /// Whether a message (an event with data) has been relayed.
    relayed_message: bool,
}

impl EventRelay {
    /// The relay reading its next output, as a future that owns it.
    fn into_next(mut self: Box<Self>) -> NextOutput {
        Box::pin(async move {
            let out = self.next().await;
            (self, out)
        })
    }

    /// The bytes for the client from the next upstream chunk that completes any event; `None` at the end.
    /// Not called again once `ended`.
    async fn next(&mut self) -> Option<Bytes> {
        loop {
            let events = match self.chunks.next().await {
                Some(Ok(chunk)) => match self.decoder.push(&chunk) {
                    Ok(events) => events,
                    Err(e) => return self.broke_off(&e.to_string()),
                },
                Some(Err(e)) => return self.broke_off(&e.to_string()),
                None => {
                    let last = self.decoder.finish();
                    let mut out = Vec::new();
                    if let Some(event) = last {
                        out.push(self.relay(event).await.encode());
                    }
                    out.extend(self.unanswered_errors("the upstream MCP server ended its stream"));
                    self.unanswered.clear();
                    self.ended = true;
                    let out = join(out);
                    return (!out.is_empty()).then_some(out);
                }
            };
            if events.is_empty() {
                continue;
            }
            let mut out = Vec::with_capacity(events.len());
            let mut events = events.into_iter();
            while let Some(event) = events.next() {
                out.push(self.relay(event).await.encode());
                if self.all_answered() {
                    self.end_after_answers(events.filter(SseEvent::has_message).count());
                    break;
                }
            }
            return Some(join(out));
        }
    }

    /// Whether the stream answers requests (a POST's), rather than listening (a GET's).
    fn answers_requests(&self) -> bool {
        !self.context.request_methods.is_empty()
    }

    /// Whether this stream answers a POST whose requests all have their answers now.
    fn all_answered(&self) -> bool {
        self.answers_requests() && self.unanswered.is_empty()
    }

    /// The client's stream ends with the last answer: `dropped` messages that followed it in the same
    /// chunk reach no one. The upstream should have ended its stream too; what it still sends is read to
    /// the end in the background, so that its connection can carry the next request. Never waits.
    fn end_after_answers(&mut self, dropped: usize) {
        self.ended = true;
        if let Some(None) = Pin::new(&mut self.chunks).peek().now_or_never() {
            warn_dropped(dropped);
            return;
        }
        let rest = std::mem::replace(
            &mut self.chunks,
            futures::stream::empty().boxed().peekable(),
        );
        tokio::spawn(drain(
            rest,
            dropped,
            self.gateway.settings.upstream_timeout(),
        ));
    }

    async fn relay(&mut self, event: SseEvent) -> SseEvent {
        self.resumable |= event.id.as_deref().is_some_and(|id| !id.is_empty());
        self.relayed_message |= event.has_message();
        relay_event(
            &self.gateway,
            &self.caller,
            &self.context,
            &mut self.unanswered,
            event,
        )
        .await
    }

    /// The stream failed: requests still waiting get an error, unless the client can resume.
    fn broke_off(&mut self, error: &str) -> Option<Bytes> {
        tracing::warn!(error, "the upstream event stream broke off");
        self.ended = true;
        let out = join(self.unanswered_errors("the upstream MCP server's stream broke off"));
        self.unanswered.clear();
        (!out.is_empty()).then_some(out)
    }

    /// An error event for every request still waiting, when the client cannot resume the stream to get
    /// its answers (the upstream gave no event ids).
    fn unanswered_errors(&self, why: &str) -> Vec<Bytes> {
        if self.resumable {
            return Vec::new();
        }
        self.unanswered
            .iter()
            .filter_map(|id| {
                wire::error_message(Some(&id.to_value()), wire::UPSTREAM_UNAVAILABLE, why, None)
            })
            .map(|error| message_event(&error))
            .collect()
    }
}

/// Reads the rest of an upstream event stream whose requests are all answered, for at most `limit`.
/// Messages in it reach no one (nor do `dropped` ones before it): the stream should have ended with its
/// last answer.
async fn drain(
    mut rest: Peekable<BoxStream<'static, Result<Bytes, hyper::Error>>>,
    mut dropped: usize,
    limit: Duration,
) {
    let mut decoder = SseDecoder::new();
    let read = async {
        while let Some(Ok(chunk)) = rest.next().await {
            let Ok(events) = decoder.push(&chunk) else {
                return;
            };
            dropped += events.iter().filter(|event| event.has_message()).count();
        }
    };
    if tokio::time::timeout(limit, read).await.is_err() {
        tracing::debug!("the upstream kept an answered event stream open; it was closed");
    }
    warn_dropped(dropped);
}

fn warn_dropped(dropped: usize) {
    if dropped > 0 {
        tracing::warn!(
            dropped,
            "the upstream sent messages after answering every request of a POST; they were dropped"
        );
    }
}

/// Events written back to back: one buffer for the client, without a copy when there is one.
fn join(mut parts: Vec<Bytes>) -> Bytes {
    match parts.len() {
        0 => Bytes::new(),
        1 => parts.pop().unwrap_or_default(),
        _ => parts.concat().into(),
    }
}

/// One event through the pipeline. Events without data (priming events, keep-alives) pass as they are;
/// a refused message leaves its id behind in an empty event, so that resumption positions stay valid.
async fn relay_event(
    gateway: &Gateway,
    caller: &Caller,
    context: &RelayContext,
    unanswered: &mut Unanswered,
    mut event: SseEvent,
) -> SseEvent {
    if !event.has_message() {
        return event;
    }
    let Some(data) = event.take_data() else {
        return event;
    };
    // The data moves into the message without a copy; the event keeps the bytes it came as.
    let outcome = match Message::parse_text(data) {
        Ok(message) => {
            if matches!(message.kind(), MessageKind::Response | MessageKind::Error)
                && let Some(id) = message.id()
            {
                unanswered.remove(&RequestId::of(id));
            }
            process_message(gateway, caller, context, message).await
        }
        Err(e) => {
            tracing::warn!(error = %e, "dropped an upstream event that is not a JSON-RPC message");
            None
        }
    };
    match outcome {
        Some(message) if !message.is_modified() => {
            if !event.is_raw() {
                event.set_data(String::from_utf8_lossy(&message.to_bytes()).into_owned());
            }
            event
        }
        Some(message) => {
            event.set_data(String::from_utf8_lossy(&message.to_bytes()).into_owned());
            event
        }
        None => SseEvent::placeholder(event.id),
    }
}
