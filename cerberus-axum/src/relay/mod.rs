//! A governed HTTP exchange, both ways: the relay the gateway's proxy and the tower layer share.
//!
//! A client's POST becomes messages ([`requests::parse`]), each through the engine of
//! `cerberus_core::exchange` ([`requests::govern`]): what passes goes to the server, refused requests
//! are answered in its place. The server's answer comes back through a [`Relay`]: a JSON body
//! ([`Relay::json`]) or an event stream ([`events::events`]), each message through the engine as it
//! arrives, the door's own answers first. A server request the pipeline refuses never reaches the
//! client: the [`Door`] answers it in the client's place, so the server is not left waiting.
//!
//! What differs between the doors is only how they reach the server and the session it belongs to,
//! which each one's [`Door`] says; deciding, remembering pending requests and relaying are this
//! module's and `cerberus_core::exchange`'s, so a fix or a speed-up reaches both.

pub(crate) mod events;
pub(crate) mod requests;

use std::collections::HashSet;
use std::future::Future;
use std::time::Duration;

use axum::http::{HeaderMap, HeaderName, HeaderValue, header};
use bytes::Bytes;
use cerberus_core::exchange::{Action, Handled};
use cerberus_core::{Message, RequestId};

use crate::sse::SseEvent;

/// The requests of a POST that have no answer yet.
pub(crate) type Unanswered = HashSet<RequestId, foldhash::fast::RandomState>;

/// What a door does with the server's messages.
pub(crate) trait Door: Send + Sync + 'static {
    /// One message from the server through the engine, within the door's conversation.
    fn decide(&self, message: Message) -> impl Future<Output = Handled> + Send;

    /// Takes `answer` to the server: the error that stands for the client's answer to a server
    /// request the pipeline refused.
    fn answer_server(&self, answer: Message) -> impl Future<Output = ()> + Send;

    /// Forgets the client's requests `unanswered` in the conversation: their answers will not come
    /// this way.
    fn forget(&self, unanswered: &Unanswered);
}

/// One answer of the server on its way to the client.
pub(crate) struct Relay<D> {
    /// Decides about each message, and answers refused server requests.
    pub(crate) door: D,
    /// The door's own answers to refused requests, sent before the server's.
    pub(crate) answers: Vec<Message>,
    /// The POST's requests that await their answers in this one (none for a GET's stream): the
    /// client's stream ends with the last.
    pub(crate) requests: Unanswered,
    /// Whether the client sent a batch.
    pub(crate) batch: bool,
    /// How long the rest of an answered event stream is read, so its connection can be reused.
    pub(crate) drain_limit: Duration,
}

impl<D: Door> Relay<D> {
    /// A JSON answer's body for the client: each message through the pipeline, the door's answers
    /// first; `None` when the server's body is not JSON-RPC.
    pub(crate) async fn json(self, body: Bytes) -> Option<Bytes> {
        let messages = Message::parse_batch(body).ok()?;
        let mut out = self.answers;
        for message in messages {
            out.extend(server_message(&self.door, message).await);
        }
        if !self.requests.is_empty() {
            let mut unanswered = self.requests;
            for message in &out {
                if let Some(id) = message.id() {
                    unanswered.remove(&RequestId::of(id));
                }
            }
            if !unanswered.is_empty() {
                self.door.forget(&unanswered);
            }
        }
        Some(crate::wire::messages_body(&out, self.batch))
    }
}

/// One message from the server: what the client gets in its place, if anything. A refused server
/// request is answered to the server in the client's place, and the client never sees it.
pub(crate) async fn server_message<D: Door>(door: &D, message: Message) -> Option<Message> {
    match door.decide(message).await.action {
        Action::Forward(message) => Some(message),
        Action::Reply(answer) => {
            // Rare, and a request of its own: boxed, so that every message's future stays small.
            Box::pin(door.answer_server(answer)).await;
            None
        }
        _ => None,
    }
}

/// A message as one server-sent event.
pub(crate) fn message_event(message: &Message) -> Bytes {
    SseEvent::message(String::from_utf8_lossy(&message.to_bytes()).into_owned()).encode()
}

/// Tells a reverse proxy in front (nginx) not to buffer the stream.
const ACCEL_BUFFERING: HeaderName = HeaderName::from_static("x-accel-buffering");

/// The headers of an event stream relayed to the client.
pub(crate) fn set_event_stream_headers(headers: &mut HeaderMap) {
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, no-transform"),
    );
    headers.insert(ACCEL_BUFFERING, HeaderValue::from_static("no"));
    headers.remove(header::CONTENT_LENGTH);
}
