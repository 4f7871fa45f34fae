//! An event stream from the server relayed to the client, event by event as it arrives, in the
//! request's own task: no spawned task, no channel, so a slow client slows the read of the server.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use cerberus_core::{Message, MessageKind, RequestId};
use futures::FutureExt;
use futures::StreamExt;
use futures::stream::{BoxStream, Peekable};

use super::{Door, Relay, Unanswered, message_event, server_message};
use crate::sse::{SseDecoder, SseEvent};
use crate::wire;

/// The server's answer body, chunk by chunk.
pub(crate) type Chunks = BoxStream<'static, Result<Bytes, axum::BoxError>>;

/// The client's side of a relayed event stream: an HTTP body that says it has ended as soon as the
/// relay knows the server's stream has, so that the last event and the end of the stream are written
/// at once.
///
/// The answer to a POST takes with its head whatever of the server's answer has already arrived, up
/// to its first message ([`events`] looks once, without waiting), and its stream ends with the last
/// answer, so a one-event answer costs the client one write, not three.
pub(crate) struct RelayBody<D: Door> {
    /// Bytes to send next, in order: hyper writes what is ready together.
    ready: std::collections::VecDeque<Bytes>,
    /// The relay producing what follows; none once the server's stream has ended.
    next: Option<NextOutput<D>>,
    /// Whether a message from the server has been read into `ready` (or sent).
    message_read: bool,
}

/// The relay reading its next output, and the relay back once it has. The relay is boxed, so that
/// passing it in and out of each step moves a pointer, not the relay.
type NextOutput<D> = Pin<Box<dyn Future<Output = (Box<EventRelay<D>>, Option<Bytes>)> + Send>>;

/// Relays the server's event stream `chunks` to the client: see [`RelayBody`].
pub(crate) async fn events<D: Door>(relay: Relay<D>, chunks: Chunks) -> RelayBody<D> {
    let answers = join(relay.answers.iter().map(message_event).collect());
    let holds_head = !relay.requests.is_empty();
    let relay = Box::new(EventRelay {
        door: relay.door,
        unanswered: relay.requests,
        drain_limit: relay.drain_limit,
        answers_requests: holds_head,
        chunks: chunks.peekable(),
        decoder: SseDecoder::new(),
        resumable: false,
        ended: false,
        relayed_message: false,
    });
    let mut body = RelayBody {
        ready: (!answers.is_empty())
            .then_some(answers)
            .into_iter()
            .collect(),
        next: Some(relay.into_next()),
        message_read: false,
    };
    if holds_head {
        // One look, no wait: an event half read stays in the body, which goes on with it.
        std::future::poll_fn(|cx| {
            let _ = body.poll_first_message(cx);
            Poll::Ready(())
        })
        .await;
    }
    body
}

impl<D: Door> RelayBody<D> {
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

impl<D: Door> http_body::Body for RelayBody<D> {
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

/// The state of one relayed event stream.
struct EventRelay<D: Door> {
    door: D,
    chunks: Peekable<Chunks>,
    decoder: SseDecoder,
    /// Requests of this POST that have no answer yet.
    unanswered: Unanswered,
    /// Whether the stream answers requests (a POST's), rather than listening (a GET's).
    answers_requests: bool,
    /// How long the rest of an answered stream is read, so that its connection can be reused.
    drain_limit: Duration,
    /// Whether the server gave its events ids: a client can then resume a broken stream itself.
    resumable: bool,
    /// Whether the server's stream has ended and everything from it has been relayed.
    ended: bool,
    /// Whether a message (an event with data) has been relayed.
    relayed_message: bool,
}

impl<D: Door> Drop for EventRelay<D> {
    /// Requests whose answers this stream did not bring (the client left, the server broke off) no
    /// longer await them in the conversation.
    fn drop(&mut self) {
        if !self.unanswered.is_empty() {
            self.door.forget(&self.unanswered);
        }
    }
}

impl<D: Door> EventRelay<D> {
    /// The relay reading its next output, as a future that owns it.
    fn into_next(mut self: Box<Self>) -> NextOutput<D> {
        Box::pin(async move {
            let out = self.next().await;
            (self, out)
        })
    }

    /// The bytes for the client from the next chunk that completes any event; `None` at the end.
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
                    self.forget_unanswered();
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
                if self.answers_requests && self.unanswered.is_empty() {
                    self.end_after_answers(events.filter(SseEvent::has_message).count());
                    break;
                }
            }
            return Some(join(out));
        }
    }

    /// The client's stream ends with the last answer: `dropped` messages that followed it in the same
    /// chunk reach no one. The server should have ended its stream too; what it still sends is read
    /// to the end in the background, so that its connection can carry the next request. Never waits.
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
        tokio::spawn(drain(rest, dropped, self.drain_limit));
    }

    /// One event through the pipeline. Events without data (priming events, keep-alives) pass as
    /// they are; a refused message leaves its id behind in an empty event, so that resumption
    /// positions stay valid.
    async fn relay(&mut self, mut event: SseEvent) -> SseEvent {
        self.resumable |= event.id.as_deref().is_some_and(|id| !id.is_empty());
        self.relayed_message |= event.has_message();
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
                    self.unanswered.remove(&RequestId::of(id));
                }
                server_message(&self.door, message).await
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

    /// The stream failed: requests still waiting get an error, unless the client can resume.
    fn broke_off(&mut self, error: &str) -> Option<Bytes> {
        tracing::warn!(error, "the upstream event stream broke off");
        self.ended = true;
        let out = join(self.unanswered_errors("the upstream MCP server's stream broke off"));
        self.forget_unanswered();
        (!out.is_empty()).then_some(out)
    }

    fn forget_unanswered(&mut self) {
        if !self.unanswered.is_empty() {
            self.door.forget(&self.unanswered);
            self.unanswered.clear();
        }
    }

    /// An error event for every request still waiting, when the client cannot resume the stream to
    /// get its answers (the server gave no event ids).
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

/// Reads the rest of an event stream whose requests are all answered, for at most `limit`. Messages
/// in it reach no one (nor do `dropped` ones before it): the stream should have ended with its last
/// answer.
async fn drain(mut rest: Peekable<Chunks>, mut dropped: usize, limit: Duration) {
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
