//! The pipeline on any JSON-RPC message stream: stdio, a WebSocket, a queue, a custom transport.
//!
//! A [`StreamGuard`] sits between a client and a server that exchange JSON-RPC messages. Hand it each
//! message with the side it came from; it runs the caller's pipeline in the right direction, records
//! the audit event and says what to do: pass the (possibly redacted) message on, answer the sender in
//! its place, or drop it. It remembers which method each pending request called, so that responses are
//! checked knowing what they answer (`tools/list` results are filtered by `rbac`, for example). It does
//! no I/O itself: the transport reads, writes and frames.
//!
//! ```
//! use std::sync::Arc;
//! use cerberus_core::stream::{Action, StreamGuard};
//! use cerberus_core::{GuardrailRegistry, Identity, Message, PolicyDocument, EffectivePolicy, PolicyLevel};
//!
//! # futures::executor::block_on(async {
//! let policy = PolicyDocument::from_json(r#"{"guardrails": [
//!     {"type": "rbac", "allow": ["echo"]},
//!     {"type": "pii_email", "action": "redact", "direction": "response"}
//! ]}"#)?;
//! let pipeline = GuardrailRegistry::default()
//!     .build(&EffectivePolicy::merge([(PolicyLevel::Organisation, &policy)]))?;
//! let guard = StreamGuard::new(pipeline, Identity::new_random());
//!
//! // A call the policy denies is answered in the server's place.
//! let denied = Message::parse(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"rm"}}"#)?;
//! let Action::Reply(error) = guard.from_client(denied).await.action else { panic!() };
//! assert_eq!(error.error().unwrap()["code"], cerberus_core::refusal::BLOCKED);
//!
//! // An allowed call goes on, and its result comes back redacted.
//! let call = Message::parse(r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo"}}"#)?;
//! assert!(matches!(guard.from_client(call).await.action, Action::Forward(_)));
//! let result = Message::parse(r#"{"jsonrpc":"2.0","id":2,"result":{"content":[{"type":"text","text":"ann@example.com"}]}}"#)?;
//! let Action::Forward(result) = guard.from_server(result).await.action else { panic!() };
//! assert!(!result.to_bytes().windows(15).any(|w| w == b"ann@example.com"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::audit::{AuditSink, EventDraft, NullAuditSink, PayloadRedactor, UpstreamTiming};
use crate::guardrail::Direction;
use crate::identity::Identity;
use crate::message::{Message, MessageKind};
use crate::pipeline::{Decision, Envelope, Pipeline};
use crate::refusal;

/// How many requests may await an answer in each direction; beyond that, answers are still checked,
/// without knowing the method they answer.
const MAX_PENDING: usize = 10_000;

/// What to do with a message after the pipeline.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Pass this message on to the other side: the original, the modified one, or, for a refused
    /// answer, the error that takes its place (the other side is waiting for an answer).
    Forward(Message),
    /// Send this answer back to the side the message came from, in place of the other side's (a
    /// refused request).
    Reply(Message),
    /// Pass nothing on (a refused notification).
    Drop,
}

/// The pipeline's decision about a message and what to do with it.
#[derive(Clone, Debug, PartialEq)]
pub struct Handled {
    /// What the pipeline decided.
    pub decision: Decision,
    /// What the transport should do.
    pub action: Action,
}

/// A request awaiting its answer.
#[derive(Debug)]
struct Pending {
    method: String,
    /// The tool, prompt or resource it named.
    target: Option<String>,
    sent: Instant,
}

/// Governs one client–server JSON-RPC conversation with one pipeline; see the [module docs](self).
///
/// It takes `&self`, so the two directions may run concurrently (share it in an `Arc`).
#[derive(Debug)]
pub struct StreamGuard {
    pipeline: Pipeline,
    identity: Identity,
    session: Option<String>,
    audit: Arc<dyn AuditSink>,
    payloads: Option<PayloadRedactor>,
    /// Requests the client sent, by JSON id text, awaiting the server's answer.
    client_requests: Mutex<HashMap<String, Pending>>,
    /// Requests the server sent, by JSON id text, awaiting the client's answer.
    server_requests: Mutex<HashMap<String, Pending>>,
}

impl StreamGuard {
    /// A guard running `pipeline` for `identity`, recording nothing.
    pub fn new(pipeline: Pipeline, identity: Identity) -> Self {
        Self {
            pipeline,
            identity,
            session: None,
            audit: Arc::new(NullAuditSink),
            payloads: None,
            client_requests: Mutex::new(HashMap::new()),
            server_requests: Mutex::new(HashMap::new()),
        }
    }

    /// The same guard recording an audit event per message into `sink`.
    pub fn with_audit(self, sink: Arc<dyn AuditSink>) -> Self {
        Self {
            audit: sink,
            ..self
        }
    }

    /// The same guard keeping redacted payloads in its audit events.
    pub fn with_payloads(self, redactor: Option<PayloadRedactor>) -> Self {
        Self {
            payloads: redactor,
            ..self
        }
    }

    /// The same guard naming `session` in guardrail contexts and audit events.
    pub fn with_session(self, session: impl Into<String>) -> Self {
        Self {
            session: Some(session.into()),
            ..self
        }
    }

    /// The caller this guard acts for.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// A message from the client, checked as a request (or as the client's answer to a server request).
    pub async fn from_client(&self, message: Message) -> Handled {
        self.handle(Direction::Request, message).await
    }

    /// A message from the server, checked as a response (or a server request or notification).
    pub async fn from_server(&self, message: Message) -> Handled {
        self.handle(Direction::Response, message).await
    }

    async fn handle(&self, direction: Direction, message: Message) -> Handled {
        let (own, other) = match direction {
            Direction::Request => (&self.client_requests, &self.server_requests),
            Direction::Response => (&self.server_requests, &self.client_requests),
        };
        let kind = message.kind();
        let id = message.id().cloned();
        let answered = match (kind, &id) {
            (MessageKind::Response | MessageKind::Error, Some(id)) => other
                .lock()
                .ok()
                .and_then(|mut pending| pending.remove(&id.to_string())),
            _ => None,
        };
        let envelope = Envelope::new(direction, &self.identity)
            .with_session(self.session.as_deref())
            .answering(answered.as_ref().map(|p| p.method.as_str()));
        // Time upstream: from the client's request to the server's answer.
        let upstream = answered
            .as_ref()
            .filter(|_| direction == Direction::Response)
            .map(|pending| UpstreamTiming {
                status: None,
                elapsed: pending.sent.elapsed(),
            });
        let draft = EventDraft::new(envelope, &message)
            .or_target(answered.as_ref().and_then(|p| p.target.as_deref()));
        let mut outcome = self.pipeline.run(envelope, message).await;
        let event = draft.finish(
            envelope,
            &mut outcome,
            None,
            upstream,
            self.payloads.as_ref(),
        );
        self.audit.record(event).await;

        let action = if outcome.decision.passes() {
            if let (MessageKind::Request, Some(id), Some(method)) =
                (kind, &id, outcome.message.method())
                && let Ok(mut pending) = own.lock()
                && pending.len() < MAX_PENDING
            {
                pending.insert(
                    id.to_string(),
                    Pending {
                        method: method.to_owned(),
                        target: outcome.message.target().map(str::to_owned),
                        sent: Instant::now(),
                    },
                );
            }
            Action::Forward(outcome.message)
        } else {
            let error = refusal::refusal(id.as_ref(), &outcome.decision);
            match (kind, error) {
                (MessageKind::Request, Some(error)) => Action::Reply(error),
                (MessageKind::Response | MessageKind::Error, Some(error)) => Action::Forward(error),
                _ => Action::Drop,
            }
        };
        Handled {
            decision: outcome.decision,
            action,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::MemoryAuditSink;
    use crate::{EffectivePolicy, GuardrailRegistry, PolicyDocument, PolicyLevel};

    fn guard(policy: &str) -> (StreamGuard, Arc<MemoryAuditSink>) {
        let document = PolicyDocument::from_json(policy).unwrap();
        let pipeline = GuardrailRegistry::default()
            .build(&EffectivePolicy::merge([(
                PolicyLevel::Organisation,
                &document,
            )]))
            .unwrap();
        let audit = Arc::new(MemoryAuditSink::new());
        let guard = StreamGuard::new(pipeline, Identity::new_random())
            .with_audit(Arc::clone(&audit) as Arc<dyn AuditSink>)
            .with_session("s1");
        (guard, audit)
    }

    fn message(text: &str) -> Message {
        Message::parse(text.to_owned()).unwrap()
    }

    #[tokio::test]
    async fn responses_are_checked_knowing_the_method_they_answer() {
        let (guard, audit) = guard(r#"{"guardrails": [{"type": "rbac", "allow": ["echo"]}]}"#);
        let list = message(r#"{"jsonrpc":"2.0","id":"a","method":"tools/list"}"#);
        assert!(matches!(
            guard.from_client(list).await.action,
            Action::Forward(_)
        ));
        let tools = message(
            r#"{"jsonrpc":"2.0","id":"a","result":{"tools":[{"name":"echo"},{"name":"rm"}]}}"#,
        );
        let handled = guard.from_server(tools).await;
        assert_eq!(handled.decision, Decision::Modify);
        let Action::Forward(filtered) = handled.action else {
            panic!("expected the filtered list")
        };
        assert_eq!(
            filtered.result().unwrap()["tools"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
        let events = audit.events();
        assert_eq!(events.len(), 2);
        assert_eq!(events[1].method.as_deref(), Some("tools/list"));
        assert!(
            events[1].upstream_us.is_some(),
            "the server's time is measured"
        );
        assert_eq!(events[1].session.as_deref(), Some("s1"));
        let call =
            message(r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"echo"}}"#);
        guard.from_client(call).await;
        let result = message(r#"{"jsonrpc":"2.0","id":3,"result":{"content":[]}}"#);
        guard.from_server(result).await;
        assert_eq!(
            audit.events()[3].target.as_deref(),
            Some("echo"),
            "a result names the tool its call named"
        );
    }

    #[tokio::test]
    async fn refusals_go_back_to_the_sender_or_stand_in_for_the_answer() {
        let (guard, _) = guard(
            r#"{"guardrails": [{"type": "rbac", "allow": ["echo"]}, {"type": "pii_ssn", "action": "block", "direction": "both"}]}"#,
        );
        // A refused client request is answered in the server's place.
        let denied =
            message(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"rm"}}"#);
        let Action::Reply(error) = guard.from_client(denied).await.action else {
            panic!("expected a reply")
        };
        assert_eq!(error.id(), Some(&serde_json::json!(1)));
        // A refused server answer becomes an error the client receives instead.
        let call =
            message(r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo"}}"#);
        guard.from_client(call).await;
        let leak = message(
            r#"{"jsonrpc":"2.0","id":2,"result":{"content":[{"type":"text","text":"SSN 536-22-8174"}]}}"#,
        );
        let Action::Forward(error) = guard.from_server(leak).await.action else {
            panic!("expected the error in the answer's place")
        };
        assert_eq!(error.error().unwrap()["code"], refusal::BLOCKED);
        assert!(!String::from_utf8_lossy(&error.to_bytes()).contains("8174"));
        // A refused server request is answered back to the server; a refused notification is dropped.
        let ask = message(
            r#"{"jsonrpc":"2.0","id":9,"method":"sampling/createMessage","params":{"note":"536-22-8174"}}"#,
        );
        assert!(matches!(
            guard.from_server(ask).await.action,
            Action::Reply(_)
        ));
        let note = message(
            r#"{"jsonrpc":"2.0","method":"notifications/message","params":{"data":"536-22-8174"}}"#,
        );
        assert_eq!(guard.from_server(note).await.action, Action::Drop);
    }

    #[tokio::test]
    async fn client_answers_to_server_requests_know_their_method() {
        let (guard, audit) = guard(r#"{"guardrails": []}"#);
        let ask = message(r#"{"jsonrpc":"2.0","id":5,"method":"roots/list"}"#);
        guard.from_server(ask).await;
        let answer = message(r#"{"jsonrpc":"2.0","id":5,"result":{"roots":[]}}"#);
        guard.from_client(answer).await;
        let events = audit.events();
        assert_eq!(events[1].method.as_deref(), Some("roots/list"));
        assert_eq!(
            events[1].upstream_us, None,
            "a client answer has no upstream time"
        );
    }
}
