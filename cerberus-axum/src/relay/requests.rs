//! A client's POST: its body becomes messages, each through the engine, and what passes is the body
//! the server gets.

use std::time::Duration;

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use cerberus_core::exchange::{Action, Exchange};
use cerberus_core::{Decision, Message, MessageError, MessageKind, RequestId};

use super::Unanswered;
use crate::wire;

/// A POST's body as messages: one, or a batch (a JSON array).
#[derive(Debug)]
pub(crate) struct Posted {
    /// The bytes as they came, to forward when nothing changes.
    pub(crate) body: Bytes,
    /// Its messages, in order.
    pub(crate) messages: Vec<Message>,
    /// Whether it is a batch.
    pub(crate) batch: bool,
}

/// Reads a POST's body; a body that is not JSON gets 400 with -32700, JSON that is not JSON-RPC 400
/// with -32600.
pub(crate) fn parse(body: Bytes) -> Result<Posted, Box<Response>> {
    let batch = body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[');
    match Message::parse_batch(body.clone()) {
        Ok(messages) => Ok(Posted {
            body,
            messages,
            batch,
        }),
        Err(MessageError::Json(e)) => Err(Box::new(wire::http_error(
            StatusCode::BAD_REQUEST,
            wire::PARSE_ERROR,
            &format!("the body is not valid JSON: {e}"),
        ))),
        Err(e) => Err(Box::new(wire::http_error(
            StatusCode::BAD_REQUEST,
            wire::INVALID_REQUEST,
            &format!("not a JSON-RPC message: {e}"),
        ))),
    }
}

/// A POST's messages after the pipeline.
#[derive(Debug)]
pub(crate) struct Decided {
    /// What goes to the server: messages that passed, and errors that stand for refused answers to
    /// server requests (the server waits for an answer).
    pub(crate) forwarded: Vec<Message>,
    /// The door's answers to refused requests, for the client.
    pub(crate) answers: Vec<Message>,
    /// The forwarded requests, whose answers the client awaits.
    pub(crate) requests: Unanswered,
    /// When a throttled notification was refused, how long until a retry may pass.
    pub(crate) throttled_notification: Option<Duration>,
    /// Whether what goes on differs from what came (refused or changed messages).
    pub(crate) changed: bool,
}

impl Decided {
    /// What a request that carries no client message (a GET's stream, a DELETE) brings to its
    /// answer.
    pub(crate) fn nothing() -> Self {
        Self {
            forwarded: Vec::new(),
            answers: Vec::new(),
            requests: Unanswered::default(),
            throttled_notification: None,
            changed: false,
        }
    }

    /// The answer to a POST none of whose messages goes to the server: the door's answers to its
    /// refused requests; 429 with `Retry-After` when all it carried was a throttled notification;
    /// else 202.
    pub(crate) fn refused_only(&self, batch: bool) -> Response {
        if !self.answers.is_empty() {
            return wire::json_response(StatusCode::OK, &self.answers, batch);
        }
        if let Some(retry_after) = self.throttled_notification {
            let mut response = wire::http_error(
                StatusCode::TOO_MANY_REQUESTS,
                wire::THROTTLED,
                "rate limit exceeded",
            );
            let seconds = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, seconds.into());
            return response;
        }
        StatusCode::ACCEPTED.into_response()
    }

    /// The body for the server: the bytes as they came when nothing changed, re-serialised
    /// otherwise. A batch is always re-serialised: its messages were read into JSON objects, which
    /// keep one copy of a member named twice, so the server gets what was judged.
    pub(crate) fn body(&self, posted: Bytes, batch: bool) -> Bytes {
        if self.changed || batch {
            wire::messages_body(&self.forwarded, batch)
        } else {
            posted
        }
    }
}

/// Each of `messages` from the client through `exchange`.
pub(crate) async fn govern(exchange: &Exchange<'_>, messages: Vec<Message>) -> Decided {
    let count = messages.len();
    let mut governed = Decided {
        forwarded: Vec::with_capacity(count),
        answers: Vec::new(),
        requests: Unanswered::with_capacity_and_hasher(count, Default::default()),
        throttled_notification: None,
        changed: false,
    };
    for message in messages {
        let kind = message.kind();
        let handled = exchange.from_client(message).await;
        match handled.action {
            Action::Forward(message) => {
                governed.changed |= message.is_modified() || !handled.decision.passes();
                if kind == MessageKind::Request
                    && let Some(id) = message.id()
                {
                    governed.requests.insert(RequestId::of(id));
                }
                governed.forwarded.push(message);
            }
            Action::Reply(answer) => {
                governed.changed = true;
                governed.answers.push(answer);
            }
            _ => {
                governed.changed = true;
                if let Decision::Throttle { retry_after, .. } = handled.decision {
                    governed.throttled_notification = Some(retry_after);
                }
            }
        }
    }
    governed
}
