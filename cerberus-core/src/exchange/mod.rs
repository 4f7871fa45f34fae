//! The governed exchange: one engine every door runs each message through.
//!
//! A door carries messages between an MCP client and a server: the gateway's proxy, the tower layer,
//! `cerberus stdio`, or a transport of your own. For each message it builds an [`Exchange`] (who is
//! calling, under which pipeline, within which [`Conversation`]) and hands the message over with the
//! side it came from. The exchange runs the pipeline in the right direction, knowing for an answer
//! which request it answers; records the audit event and tells the door's [`Observer`]; remembers a
//! request it lets through, so that the other side's answer is checked knowing its method; and says
//! what to do ([`Action`]): pass the message on, answer its sender in the other side's place, or drop
//! it. It does no I/O: the door reads, writes and frames.
//!
//! ```
//! use cerberus_core::exchange::{Action, Conversation, Exchange, Recorder};
//! use cerberus_core::{EffectivePolicy, GuardrailRegistry, Identity, Message, PolicyDocument};
//!
//! # futures::executor::block_on(async {
//! let policy = PolicyDocument::from_json(r#"{"guardrails": [{"type": "rbac", "allow": ["echo"]}]}"#)?;
//! let pipeline = GuardrailRegistry::default().build(&EffectivePolicy::single(&policy))?;
//! let (identity, conversation, recorder) = (Identity::new_random(), Conversation::new(), Recorder::none());
//! let exchange = Exchange::new(&pipeline, &identity, &conversation, &recorder);
//!
//! let list = Message::parse(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#)?;
//! assert!(matches!(exchange.from_client(list).await.action, Action::Forward(_)));
//! // The answer is checked as the answer to `tools/list`: rbac leaves out what it denies.
//! let tools = Message::parse(r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"echo"},{"name":"rm"}]}}"#)?;
//! let Action::Forward(tools) = exchange.from_server(tools).await.action else { unreachable!() };
//! assert_eq!(tools.result().unwrap()["tools"].as_array().unwrap().len(), 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```

mod conversation;

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{Instrument, Span};

pub use self::conversation::{Conversation, Conversations, MAX_PENDING, Pending};
use crate::approval::{ApprovalAnswer, ApprovalRequest, Approver};
use crate::audit::{AuditSink, EventDraft, NullAuditSink, PayloadRedactor, UpstreamTiming};
use crate::guardrail::Direction;
use crate::identity::{CallerProfile, Identity};
use crate::message::{Message, MessageKind, RequestId};
use crate::pipeline::{Decision, Envelope, Pipeline};
use crate::policy::PolicyLevel;
use crate::refusal;
use crate::trace::{DecisionKind, Trace};

/// What the door does with a message after the pipeline.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Action {
    /// Pass this message on to the other side: the original, the modified one, or, for a refused
    /// answer, the error that takes its place (the other side is waiting for an answer).
    Forward(Message),
    /// Send this answer back to the side the message came from, in the other side's place (a refused
    /// request: a client's gets its error, a server's gets the error as the client's answer).
    Reply(Message),
    /// Pass nothing on (a refused notification).
    Drop,
}

/// The pipeline's decision about a message and what to do with it.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Handled {
    /// What the pipeline decided.
    pub decision: Decision,
    /// What the door does.
    pub action: Action,
}

/// One message's pipeline run, as an [`Observer`] sees it.
#[derive(Debug)]
#[non_exhaustive]
pub struct Observation<'a> {
    /// Which way the message travelled, for whom, answering what.
    pub envelope: Envelope<'a>,
    /// What the pipeline decided.
    pub decision: &'a Decision,
    /// What each guardrail decided.
    pub trace: &'a Trace,
    /// How long the pipeline took.
    pub elapsed: Duration,
    /// For a server's answer: from its request passing the pipeline to the answer's arrival.
    pub upstream: Option<Duration>,
    /// The span [`Observer::span`] gave the run.
    pub span: &'a Span,
}

/// What a door wants to know of every pipeline run, besides the audit event: metrics, spans.
pub trait Observer: Send + Sync + fmt::Debug {
    /// The span `message`'s pipeline run is instrumented with; none by default.
    fn span(&self, envelope: &Envelope<'_>, message: &Message) -> Span {
        let _ = (envelope, message);
        Span::none()
    }

    /// One run is done.
    fn observe(&self, observation: &Observation<'_>);
}

/// Where a door's exchanges record what they decided: the audit sink, the payloads it keeps, and an
/// observer. Made once per door and shared by every exchange.
#[derive(Clone, Debug)]
pub struct Recorder {
    audit: Arc<dyn AuditSink>,
    payloads: Option<PayloadRedactor>,
    observer: Option<Arc<dyn Observer>>,
    approver: Option<Arc<dyn Approver>>,
}

impl Default for Recorder {
    fn default() -> Self {
        Self::none()
    }
}

impl Recorder {
    /// Records every event into `audit`, without payloads.
    pub fn new(audit: Arc<dyn AuditSink>) -> Self {
        Self {
            audit,
            payloads: None,
            observer: None,
            approver: None,
        }
    }

    /// Records nothing.
    pub fn none() -> Self {
        Self::new(Arc::new(NullAuditSink))
    }

    /// The same recorder recording into `audit` instead.
    pub fn with_audit(self, audit: Arc<dyn AuditSink>) -> Self {
        Self { audit, ..self }
    }

    /// The same recorder keeping each message, redacted, in its event (none with `None`).
    pub fn with_payloads(self, payloads: Option<PayloadRedactor>) -> Self {
        Self { payloads, ..self }
    }

    /// The same recorder telling `observer` about every run.
    pub fn with_observer(self, observer: Arc<dyn Observer>) -> Self {
        Self {
            observer: Some(observer),
            ..self
        }
    }

    /// The same recorder putting held calls to `approver` (without one, they are refused).
    pub fn with_approver(self, approver: Arc<dyn Approver>) -> Self {
        Self {
            approver: Some(approver),
            ..self
        }
    }

    /// Where events go.
    pub fn audit(&self) -> &Arc<dyn AuditSink> {
        &self.audit
    }

    /// What keeps payloads, when events keep any.
    pub fn payloads(&self) -> Option<&PayloadRedactor> {
        self.payloads.as_ref()
    }
}

/// One message's passage through a door: who is calling, under which pipeline, within which
/// conversation; see the [module docs](self). Cheap to make (it borrows), so a door makes one per
/// message or per request.
#[derive(Clone, Copy, Debug)]
pub struct Exchange<'a> {
    pipeline: &'a Pipeline,
    identity: &'a Identity,
    conversation: &'a Conversation,
    recorder: &'a Recorder,
    session: Option<&'a str>,
    key_prefix: Option<&'a str>,
    profile: Option<&'a CallerProfile>,
    upstream_status: Option<u16>,
    upstream_sent: Option<Instant>,
}

impl<'a> Exchange<'a> {
    /// An exchange for `identity` through `pipeline`, within `conversation`, recorded by `recorder`.
    pub fn new(
        pipeline: &'a Pipeline,
        identity: &'a Identity,
        conversation: &'a Conversation,
        recorder: &'a Recorder,
    ) -> Self {
        Self {
            pipeline,
            identity,
            conversation,
            recorder,
            session: None,
            key_prefix: None,
            profile: None,
            upstream_status: None,
            upstream_sent: None,
        }
    }

    /// The same exchange with the caller's names and labels, for guardrails that read them.
    pub fn with_profile(self, profile: Option<&'a CallerProfile>) -> Self {
        Self { profile, ..self }
    }

    /// The same exchange naming `session` to guardrails and in audit events.
    pub fn with_session(self, session: Option<&'a str>) -> Self {
        Self { session, ..self }
    }

    /// The same exchange naming the caller's key by its first characters in audit events.
    pub fn with_key_prefix(self, key_prefix: Option<&'a str>) -> Self {
        Self { key_prefix, ..self }
    }

    /// The same exchange timing the server's messages from `sent`, when the door sent the request
    /// they come with (an HTTP request whose answer carries them, with its `status`). Without it, a
    /// server's answer is timed from its request passing the pipeline, and its other messages are
    /// not timed.
    pub fn with_upstream(self, status: Option<u16>, sent: Option<Instant>) -> Self {
        Self {
            upstream_status: status,
            upstream_sent: sent,
            ..self
        }
    }

    /// The caller.
    pub fn identity(&self) -> &'a Identity {
        self.identity
    }

    /// The conversation.
    pub fn conversation(&self) -> &'a Conversation {
        self.conversation
    }

    /// A message from the client: checked as a request, or as the client's answer to a server request.
    pub async fn from_client(&self, message: Message) -> Handled {
        self.handle(Direction::Request, message).await
    }

    /// A message from the server: checked as a response, or as a server request or notification.
    pub async fn from_server(&self, message: Message) -> Handled {
        self.handle(Direction::Response, message).await
    }

    async fn handle(&self, direction: Direction, message: Message) -> Handled {
        let kind = message.kind();
        let id = message.id().map(RequestId::of);
        let answered = match (kind, &id) {
            (MessageKind::Response | MessageKind::Error, Some(id)) => match direction {
                Direction::Request => self.conversation.client_answered(id),
                Direction::Response => self.conversation.server_answered(id),
            },
            _ => None,
        };
        let envelope = Envelope::new(direction, self.identity)
            .with_session(self.session)
            .with_profile(self.profile)
            .answering(answered.as_ref().map(|p| p.method.as_str()));
        // The server's time, up to this message's arrival.
        let upstream = match direction {
            Direction::Request => None,
            Direction::Response => self
                .upstream_sent
                .or(answered.as_ref().map(|pending| pending.sent))
                .map(|sent| sent.elapsed()),
        };
        let audit = &self.recorder.audit;
        let mut draft = audit.keeps_events().then(|| {
            EventDraft::new(envelope, &message)
                .or_target(answered.as_ref().and_then(|p| p.target.as_deref()))
        });
        let started = Instant::now();
        // One future for the run, in a span or not: two arms would each hold a pipeline's future.
        let span = match &self.recorder.observer {
            Some(observer) => observer.span(&envelope, &message),
            None => Span::none(),
        };
        let mut outcome = self
            .pipeline
            .run(envelope, message)
            .instrument(span.clone())
            .await;
        let elapsed = started.elapsed();
        if matches!(outcome.decision, Decision::Hold { .. }) {
            // The record of the call if its caller goes away while it waits (its future is then
            // dropped here): every held call leaves one.
            let abandoned = draft.as_ref().map(|draft| Abandoned {
                audit: Arc::clone(audit),
                event: Some(self.abandoned_event(envelope, draft.clone(), &outcome)),
            });
            let asked = Instant::now();
            self.settle_hold(envelope, kind, &mut outcome).await;
            if let Some(mut abandoned) = abandoned {
                abandoned.event = None;
            }
            if let Some(draft) = &mut draft {
                draft.exclude(asked.elapsed());
            }
        }
        if let Some(observer) = &self.recorder.observer {
            observer.observe(&Observation {
                envelope,
                decision: &outcome.decision,
                trace: &outcome.trace,
                elapsed,
                upstream,
                span: &span,
            });
        }
        if let Some(draft) = draft {
            let timing = upstream.map(|elapsed| UpstreamTiming {
                status: self.upstream_status,
                elapsed,
            });
            let event = draft.finish(
                envelope,
                &mut outcome,
                self.key_prefix.map(str::to_owned),
                timing,
                self.recorder.payloads.as_ref(),
            );
            audit.record(event).await;
        }

        let action = if outcome.decision.passes() {
            if let (MessageKind::Request, Some(id), Some(method)) =
                (kind, id, outcome.message.method())
            {
                let pending = Pending {
                    method: method.to_owned(),
                    target: outcome.message.target().map(str::to_owned),
                    sent: Instant::now(),
                };
                match direction {
                    Direction::Request => self.conversation.client_asked(id, pending),
                    Direction::Response => self.conversation.server_asked(id, pending),
                }
            }
            Action::Forward(outcome.message)
        } else {
            let id = id.map(|id| id.to_value());
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

/// Records its event if dropped armed: a held call whose caller went away before an answer.
struct Abandoned {
    audit: Arc<dyn AuditSink>,
    event: Option<crate::audit::AuditEvent>,
}

impl Drop for Abandoned {
    fn drop(&mut self) {
        if let Some(event) = self.event.take() {
            self.audit.record_now(event);
        }
    }
}

impl Exchange<'_> {
    /// The audit event of a held call whose caller went away before an answer: refused, with an
    /// `approval` entry saying so.
    fn abandoned_event(
        &self,
        envelope: Envelope<'_>,
        draft: EventDraft,
        outcome: &crate::pipeline::PipelineOutcome,
    ) -> crate::audit::AuditEvent {
        let mut abandoned = outcome.clone();
        let reason = "the caller went away before an answer".to_owned();
        let level = abandoned
            .trace
            .entries()
            .iter()
            .find(|e| e.code.as_deref() == Some(crate::approval::codes::REQUIRED))
            .map_or(PolicyLevel::Organisation, |e| e.level);
        abandoned.trace.push(crate::trace::TraceEntry {
            code: Some(crate::approval::codes::ABANDONED.to_owned()),
            ..crate::trace::TraceEntry::new(crate::approval::GUARDRAIL, level, DecisionKind::Block)
                .with_reason(reason.clone())
        });
        abandoned.decision = Decision::Block {
            guardrail: crate::approval::GUARDRAIL.to_owned(),
            code: crate::approval::codes::ABANDONED.to_owned(),
            reason,
        };
        draft.finish(
            envelope,
            &mut abandoned,
            self.key_prefix.map(str::to_owned),
            None,
            self.recorder.payloads.as_ref(),
        )
    }

    /// Puts a held message to the recorder's approver and records the answer: the message then
    /// passes as the pipeline would have let it, or is refused. Only a client's request can wait
    /// for a person; anything else held is refused.
    async fn settle_hold(
        &self,
        envelope: Envelope<'_>,
        kind: MessageKind,
        outcome: &mut crate::pipeline::PipelineOutcome,
    ) {
        let Decision::Hold {
            guardrail,
            reason,
            by,
            ..
        } = &outcome.decision
        else {
            return;
        };
        let entries = outcome.trace.entries();
        let level = entries
            .iter()
            .find(|e| e.guardrail == guardrail.as_str() && e.code.is_some())
            .map_or(PolicyLevel::Organisation, |e| e.level);
        let passed = if entries.iter().any(|e| e.decision == DecisionKind::Modify) {
            Decision::Modify
        } else {
            Decision::Allow
        };
        let started = Instant::now();
        let answer = match (
            &self.recorder.approver,
            kind,
            envelope.direction,
            outcome.message.method(),
        ) {
            (None, ..) => ApprovalAnswer::Unavailable {
                reason: "this gateway has no one to ask".into(),
            },
            (Some(approver), MessageKind::Request, Direction::Request, Some(method)) => {
                let redactor = self
                    .recorder
                    .payloads
                    .as_ref()
                    .unwrap_or_else(|| PayloadRedactor::for_fields());
                let arguments = outcome
                    .message
                    .arguments()
                    .map(|a| redactor.redact_value(Direction::Request, a));
                // What the caller chose (a tool name, a resource URI, quoted in the reason) is
                // shown, stored and logged as the audit log keeps it: redacted.
                let fields = PayloadRedactor::for_fields();
                let redacted = |text: &str| {
                    let mut text = text.to_owned();
                    fields.redact_text(&mut text);
                    text
                };
                let (method, target, reason) = (
                    redacted(method),
                    outcome.message.target().map(redacted),
                    redacted(reason),
                );
                approver
                    .decide(ApprovalRequest {
                        identity: self.identity,
                        profile: self.profile,
                        session: self.session,
                        method: &method,
                        target: target.as_deref(),
                        arguments: arguments.as_ref(),
                        guardrail,
                        reason: &reason,
                        by: *by,
                    })
                    .await
            }
            _ => ApprovalAnswer::Unavailable {
                reason: "only a client's request can wait for approval".into(),
            },
        };
        let (mut entry, decision) = answer.settle(passed, level);
        entry.waited_us = Some(u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX));
        outcome.trace.push(entry);
        outcome.decision = decision;
    }
}

#[cfg(test)]
mod tests;
