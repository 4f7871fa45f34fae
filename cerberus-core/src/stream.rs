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

use std::sync::Arc;

use crate::audit::{AuditSink, PayloadRedactor};
pub use crate::exchange::{Action, Handled};
use crate::exchange::{Conversation, Exchange, Recorder};
use crate::identity::Identity;
use crate::message::Message;
use crate::pipeline::Pipeline;

/// Governs one client–server JSON-RPC conversation with one pipeline; see the [module docs](self).
///
/// It holds one [`Conversation`] and runs each message through an [`Exchange`] of it, the engine
/// the gateway and the tower layer run too. It takes `&self`, so the two directions may run
/// concurrently (share it in an `Arc`).
#[derive(Debug)]
pub struct StreamGuard {
    pipeline: Pipeline,
    identity: Identity,
    session: Option<String>,
    recorder: Recorder,
    conversation: Conversation,
}

impl StreamGuard {
    /// A guard running `pipeline` for `identity`, recording nothing.
    pub fn new(pipeline: Pipeline, identity: Identity) -> Self {
        Self {
            pipeline,
            identity,
            session: None,
            recorder: Recorder::none(),
            conversation: Conversation::new(),
        }
    }

    /// The same guard recording an audit event per message into `sink`.
    pub fn with_audit(self, sink: Arc<dyn AuditSink>) -> Self {
        Self {
            recorder: self.recorder.with_audit(sink),
            ..self
        }
    }

    /// The same guard keeping redacted payloads in its audit events.
    pub fn with_payloads(self, redactor: Option<PayloadRedactor>) -> Self {
        Self {
            recorder: self.recorder.with_payloads(redactor),
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

    /// The conversation's requests awaiting answers.
    pub fn conversation(&self) -> &Conversation {
        &self.conversation
    }

    fn exchange(&self) -> Exchange<'_> {
        Exchange::new(
            &self.pipeline,
            &self.identity,
            &self.conversation,
            &self.recorder,
        )
        .with_session(self.session.as_deref())
    }

    /// A message from the client, checked as a request (or as the client's answer to a server request).
    pub async fn from_client(&self, message: Message) -> Handled {
        self.exchange().from_client(message).await
    }

    /// A message from the server, checked as a response (or a server request or notification).
    pub async fn from_server(&self, message: Message) -> Handled {
        self.exchange().from_server(message).await
    }
}
