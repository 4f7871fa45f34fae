//! Making an audit event around one pipeline run.

use std::time::{Duration, Instant, SystemTime};

use super::{AuditEvent, PayloadRedactor};
use crate::message::Message;
use crate::pipeline::{Envelope, PipelineOutcome};

/// How the upstream answered, for the event of a message it sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UpstreamTiming {
    /// The HTTP status of its answer (none for stdio).
    pub status: Option<u16>,
    /// From sending the request upstream to this message's arrival.
    pub elapsed: Duration,
}

/// What an audit event needs from a message before the pipeline runs (which may change or consume it):
/// take one with [`EventDraft::new`], run the pipeline, then [`EventDraft::finish`].
///
/// ```
/// use cerberus_core::audit::EventDraft;
/// use cerberus_core::{Direction, Envelope, Identity, Message, Pipeline};
///
/// let identity = Identity::new_random();
/// let envelope = Envelope::new(Direction::Request, &identity);
/// let call = Message::parse(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"}}"#)?;
/// let draft = EventDraft::new(envelope, &call);
/// let mut outcome = futures::executor::block_on(Pipeline::new().run(envelope, call));
/// let event = draft.finish(envelope, &mut outcome, None, None, None);
/// assert_eq!(event.target.as_deref(), Some("echo"));
/// assert_eq!(event.method.as_deref(), Some("tools/call"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct EventDraft {
    started: Instant,
    /// Time since `started` that was not the gateway's: a person deciding about a held call.
    excluded: Duration,
    size_bytes: usize,
    jsonrpc_id: Option<String>,
    method: Option<String>,
    target: Option<String>,
}

impl EventDraft {
    /// Notes the message's size, id, method and target, and starts the overhead clock.
    pub fn new(envelope: Envelope<'_>, message: &Message) -> Self {
        Self {
            started: Instant::now(),
            excluded: Duration::ZERO,
            size_bytes: message.to_bytes().len(),
            jsonrpc_id: message.id().map(id_text),
            method: message
                .method()
                .or(envelope.request_method)
                .map(str::to_owned),
            target: message.target().map(str::to_owned),
        }
    }

    /// Names `target` as the tool, prompt or resource when the message names none (a response, whose
    /// request named it).
    pub fn or_target(mut self, target: Option<&str>) -> Self {
        if self.target.is_none() {
            self.target = target.map(str::to_owned);
        }
        self
    }

    /// Leaves `waited` out of the overhead the event reports: time spent waiting for a person, not
    /// in the gateway.
    pub fn exclude(&mut self, waited: Duration) {
        self.excluded += waited;
    }

    /// The event for `outcome`. The trace moves into the event (the outcome keeps an empty one): the
    /// caller acts on the decision and the message, the trace is the audit's. With `payloads`, the
    /// event keeps the resulting message, redacted. Whatever `payloads` says, personal data in the
    /// event's id, method, target and trace reasons (which the client or upstream chose, and which a
    /// refusal may quote) is replaced by `[REDACTED:kind]`.
    pub fn finish(
        self,
        envelope: Envelope<'_>,
        outcome: &mut PipelineOutcome,
        key_prefix: Option<String>,
        upstream: Option<UpstreamTiming>,
        payloads: Option<&PayloadRedactor>,
    ) -> AuditEvent {
        let overhead_us = micros(self.started.elapsed().saturating_sub(self.excluded));
        let fields = PayloadRedactor::for_fields();
        let mut trace = std::mem::take(&mut outcome.trace);
        for reason in trace
            .entries_mut()
            .iter_mut()
            .filter_map(|e| e.reason.as_mut())
        {
            fields.redact_text(reason);
        }
        let redacted = |text: Option<String>| {
            text.map(|mut text| {
                fields.redact_text(&mut text);
                text
            })
        };
        AuditEvent {
            id: uuid::Uuid::now_v7(),
            time: SystemTime::now(),
            identity: *envelope.identity,
            key_prefix,
            session: envelope.session.map(str::to_owned),
            jsonrpc_id: self.jsonrpc_id,
            direction: envelope.direction,
            method: redacted(self.method),
            target: redacted(self.target),
            decision: outcome.decision.kind(),
            trace,
            size_bytes: self.size_bytes,
            overhead_us,
            upstream_status: upstream.and_then(|u| u.status),
            upstream_us: upstream.map(|u| micros(u.elapsed)),
            payload: payloads.map(|redactor| redactor.redact(envelope.direction, &outcome.message)),
        }
    }
}

/// An id as JSON text: `7`, `"a"` or `null`, with any personal data in it redacted (a number that is
/// one becomes a string: `"[REDACTED:CREDIT_CARD]"`). A number, the usual id, is written straight out
/// rather than through the JSON serialiser.
fn id_text(id: &serde_json::Value) -> String {
    let fields = PayloadRedactor::for_fields();
    match id {
        serde_json::Value::Number(n) => {
            let mut text = n.to_string();
            if fields.redact_text(&mut text) {
                serde_json::Value::String(text).to_string()
            } else {
                text
            }
        }
        serde_json::Value::String(s) => {
            let mut text = s.clone();
            fields.redact_text(&mut text);
            serde_json::Value::String(text).to_string()
        }
        other => other.to_string(),
    }
}

fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ids_read_as_their_json_text() {
        for id in [
            json!(7),
            json!(-3),
            json!(u64::MAX),
            json!("a\"b"),
            json!(null),
        ] {
            assert_eq!(id_text(&id), serde_json::to_string(&id).unwrap());
        }
    }
}
