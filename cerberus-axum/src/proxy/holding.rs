//! A POST whose call is held for approval answers with an event stream at once and keeps it alive.
//!
//! A held call may wait minutes for an admin. A client, or a proxy in between, would take a
//! request that sends nothing for that long as dead. So when the client accepts
//! `text/event-stream`, the POST runs with a signal the approver ([`crate::asking`]) raises when it
//! holds the call: from then on the client gets a `200` event stream, a `: keep-alive` comment at
//! once and every `interval`, and then the POST's answer as events (an answer that was an event
//! stream already is passed on as it is; a JSON body becomes one `message` event per message). A
//! POST whose call is not held answers as it would have. A client that goes away while its call
//! waits drops the call, which marks its approval timed out.
//!
//! The same stream carries the gateway's own request to the client when the person at the client
//! is asked (`elicitation/create`, see [`crate::asking`]): [`ask_client`] sends it there, and the
//! client's answer comes back in a POST of its own.

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use bytes::Bytes;
use futures::StreamExt as _;
use serde_json::Value;
use tokio::sync::{Notify, mpsc};

use crate::sse::MAX_EVENT_BYTES;

/// What the POST being handled shares with whoever holds its call.
#[derive(Debug, Default)]
struct Hold {
    /// Raised when the call is held.
    held: Notify,
    /// Whether the client declared it can be asked (elicitation).
    client_elicits: AtomicBool,
    /// Messages for the client, sent on the stream once the call is held.
    to_client: Mutex<Vec<Bytes>>,
    /// Raised when a message for the client is queued.
    queued: Notify,
}

impl Hold {
    /// The messages for the client. A list of whole messages is never left half changed, so one a
    /// panic poisoned is still right to send: the question it holds must not be lost.
    fn queue(&self) -> std::sync::MutexGuard<'_, Vec<Bytes>> {
        self.to_client
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

tokio::task_local! {
    /// The hold of the POST being handled.
    static HOLD: Arc<Hold>;
}

/// The keep-alive comment.
const KEEP_ALIVE: &[u8] = b": keep-alive\n\n";

/// Tells the POST being handled, if it listens, that its call is held.
#[cfg_attr(
    not(feature = "control-plane"),
    allow(
        dead_code,
        reason = "only the admins' approvals hold calls without asking the client"
    )
)]
pub(crate) fn signal_held() {
    let _ = HOLD.try_with(|hold| hold.held.notify_one());
}

/// Notes whether the client of the POST being handled can be asked (it declared elicitation).
pub(crate) fn set_client_elicits(elicits: bool) {
    let _ = HOLD.try_with(|hold| hold.client_elicits.store(elicits, Ordering::Relaxed));
}

/// Whether the client of the POST being handled can be asked: it declared elicitation and takes
/// an event stream for its POST.
pub(crate) fn client_can_be_asked() -> bool {
    HOLD.try_with(|hold| hold.client_elicits.load(Ordering::Relaxed))
        .unwrap_or(false)
}

/// Holds the POST being handled and sends `message` to its client on the POST's event stream;
/// false when the POST has no stream to send it on.
pub(crate) fn ask_client(message: &Value) -> bool {
    HOLD.try_with(|hold| {
        let event = Bytes::from(format!("event: message\ndata: {message}\n\n"));
        hold.queue().push(event);
        hold.held.notify_one();
        hold.queued.notify_one();
        true
    })
    .unwrap_or(false)
}

/// Whether the client takes an event stream for its POST.
pub(super) fn accepts_events(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("text/event-stream"))
}

/// Runs `post` (the whole handling of one POST); if its call is held, answers with an event stream
/// kept alive every `interval` while `post` goes on.
pub(super) async fn respond(
    post: impl Future<Output = Response> + Send + 'static,
    interval: Duration,
) -> Response {
    let hold = Arc::new(Hold::default());
    let mut post = Box::pin(HOLD.scope(Arc::clone(&hold), post));
    tokio::select! {
        biased;
        response = &mut post => return response,
        () = hold.held.notified() => {}
    }
    let (events, body) = mpsc::channel::<Result<Bytes, Infallible>>(4);
    tokio::spawn(async move {
        if events
            .send(Ok(Bytes::from_static(KEEP_ALIVE)))
            .await
            .is_err()
        {
            return;
        }
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        let response = loop {
            let queued = std::mem::take(&mut *hold.queue());
            for message in queued {
                if events.send(Ok(message)).await.is_err() {
                    return;
                }
            }
            tokio::select! {
                response = &mut post => break response,
                // The client went away: dropping the call abandons its approval.
                () = events.closed() => return,
                () = hold.queued.notified() => {}
                _ = ticks.tick() => {
                    // The client went away: dropping the call abandons its approval.
                    if events.send(Ok(Bytes::from_static(KEEP_ALIVE))).await.is_err() {
                        return;
                    }
                }
            }
        };
        pass_on(response, &events).await;
    });
    let body = Body::from_stream(futures::stream::unfold(body, |mut body| async move {
        body.recv().await.map(|chunk| (chunk, body))
    }));
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// Sends the POST's answer on the event stream.
async fn pass_on(response: Response, events: &mpsc::Sender<Result<Bytes, Infallible>>) {
    let streamed = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    let status = response.status();
    let mut body = response.into_body().into_data_stream();
    if streamed {
        loop {
            let chunk = tokio::select! {
                chunk = body.next() => chunk,
                // The client went away: stop reading the upstream's stream.
                () = events.closed() => return,
            };
            let Some(Ok(chunk)) = chunk else { return };
            if events.send(Ok(chunk)).await.is_err() {
                return;
            }
        }
    }
    let mut whole = Vec::new();
    while let Some(Ok(chunk)) = body.next().await {
        if whole.len() + chunk.len() > MAX_EVENT_BYTES {
            tracing::error!("a held call's answer is too large to pass on as an event");
            return;
        }
        whole.extend_from_slice(&chunk);
    }
    if whole.is_empty() && status == StatusCode::ACCEPTED {
        return;
    }
    let messages = match serde_json::from_slice::<Value>(&whole) {
        Ok(Value::Array(messages)) => messages,
        Ok(message) => vec![message],
        Err(e) => {
            tracing::error!(%status, error = %e, "a held call's answer is not JSON: it cannot be passed on");
            return;
        }
    };
    for message in messages {
        let event = format!("event: message\ndata: {message}\n\n");
        if events.send(Ok(Bytes::from(event))).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body_text(response: Response) -> String {
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    fn json(text: &str) -> Response {
        let mut response = Response::new(Body::from(text.to_owned()));
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        response
    }

    #[tokio::test(start_paused = true)]
    async fn a_post_that_is_not_held_answers_as_it_would() {
        let response = respond(
            async { json(r#"{"jsonrpc":"2.0","id":1,"result":{}}"#) },
            Duration::from_secs(1),
        )
        .await;
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
        assert_eq!(
            body_text(response).await,
            r#"{"jsonrpc":"2.0","id":1,"result":{}}"#
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_held_post_is_kept_alive_then_answered_as_an_event() {
        let response = respond(
            async {
                signal_held();
                tokio::time::sleep(Duration::from_millis(3500)).await;
                json(
                    "{\n  \"jsonrpc\": \"2.0\", \"id\": 1,\n  \"result\": {\"text\": \"a\\nb\"}\n}",
                )
            },
            Duration::from_secs(1),
        )
        .await;
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "text/event-stream"
        );
        assert_eq!(
            body_text(response).await,
            ": keep-alive\n\n: keep-alive\n\n: keep-alive\n\n: keep-alive\n\nevent: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"text\":\"a\\nb\"}}\n\n"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_event_stream_answer_is_passed_on_as_it_is() {
        let response = respond(
            async {
                signal_held();
                tokio::time::sleep(Duration::from_millis(10)).await;
                let mut response = Response::new(Body::from(
                    "id: 7\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\n\n",
                ));
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/event-stream"),
                );
                response
            },
            Duration::from_secs(1),
        )
        .await;
        assert_eq!(
            body_text(response).await,
            ": keep-alive\n\nid: 7\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\n\n"
        );
    }
}
