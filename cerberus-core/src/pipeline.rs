//! The [`Pipeline`]: guardrails run in order over one message.
//!
//! BLOCK and THROTTLE stop the run; MODIFY hands the changed message to the next guardrail; ALLOW passes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::guardrail::{Direction, Guardrail, GuardrailContext, GuardrailResult};
use crate::identity::{CallerProfile, Identity};
use crate::message::Message;
use crate::policy::PolicyLevel;
use crate::trace::{DecisionKind, Trace, millis};

/// Who a message is for and which way it travels: everything about a message but the message.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct Envelope<'a> {
    /// Which way the message travels.
    pub direction: Direction,
    /// The caller.
    pub identity: &'a Identity,
    /// The gateway session, if any.
    pub session: Option<&'a str>,
    /// For a response: the method of the request it answers, when known.
    pub request_method: Option<&'a str>,
    /// The caller's names and labels, when the host knows them.
    pub profile: Option<&'a CallerProfile>,
}

impl<'a> Envelope<'a> {
    /// An envelope with no session and no answered method.
    pub fn new(direction: Direction, identity: &'a Identity) -> Self {
        Self {
            direction,
            identity,
            session: None,
            request_method: None,
            profile: None,
        }
    }

    /// The same envelope with the caller's names and labels.
    pub fn with_profile(self, profile: Option<&'a CallerProfile>) -> Self {
        Self { profile, ..self }
    }

    /// The same envelope within `session`.
    pub fn with_session(self, session: Option<&'a str>) -> Self {
        Self { session, ..self }
    }

    /// The same envelope for a response to a `method` request.
    pub fn answering(self, method: Option<&'a str>) -> Self {
        Self {
            request_method: method,
            ..self
        }
    }

    fn context(&self, message: &'a Message) -> GuardrailContext<'a> {
        GuardrailContext {
            direction: self.direction,
            identity: self.identity,
            session: self.session,
            request_method: self.request_method,
            message,
            profile: self.profile,
        }
    }
}

/// The decision of a whole pipeline run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "decision", rename_all = "lowercase")]
#[non_exhaustive]
pub enum Decision {
    /// Every guardrail allowed the message unchanged.
    Allow,
    /// At least one guardrail changed the message and none refused it.
    Modify,
    /// A guardrail refused the message.
    Block {
        /// The type of the guardrail that refused.
        guardrail: String,
        /// Its machine-readable code.
        code: String,
        /// Why, for people.
        reason: String,
    },
    /// No guardrail refused the message, and one said it needs a person's approval: the door asks
    /// and settles it ([`crate::exchange`] does); until then it is refused, as a door that cannot ask
    /// refuses it.
    Hold {
        /// The type of the guardrail that asked for approval (the first, if several did).
        guardrail: String,
        /// Its machine-readable code.
        code: String,
        /// Why, for the person asked.
        reason: String,
        /// Who to ask.
        by: crate::approval::ApproveBy,
    },
    /// A guardrail refused the message for now.
    Throttle {
        /// The type of the guardrail that refused.
        guardrail: String,
        /// When a retry may succeed.
        #[serde(rename = "retry_after_ms", serialize_with = "serialize_millis")]
        retry_after: Duration,
        /// Why, for people.
        reason: String,
    },
}

impl Decision {
    /// The kind of decision, without its details.
    pub fn kind(&self) -> DecisionKind {
        match self {
            Self::Allow => DecisionKind::Allow,
            Self::Modify => DecisionKind::Modify,
            Self::Block { .. } | Self::Hold { .. } => DecisionKind::Block,
            Self::Throttle { .. } => DecisionKind::Throttle,
        }
    }

    /// Whether the message may go on (allowed or modified): not a held one, until it is approved.
    pub fn passes(&self) -> bool {
        matches!(self, Self::Allow | Self::Modify)
    }
}

fn serialize_millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(millis(*d))
}

/// What a pipeline run produced.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct PipelineOutcome {
    /// The final decision.
    pub decision: Decision,
    /// The message after every MODIFY (the input message when nothing changed it).
    pub message: Message,
    /// What each guardrail decided, in order.
    pub trace: Trace,
}

#[derive(Clone, Debug)]
struct Stage {
    guardrail: Arc<dyn Guardrail>,
    level: PolicyLevel,
}

/// An ordered list of guardrails.
///
/// ```
/// use std::sync::Arc;
/// use cerberus_core::{Decision, Direction, Envelope, Identity, Message, Pipeline, PolicyLevel};
/// use cerberus_core::guardrails::rbac::{Rbac, RbacSettings};
///
/// let rbac: RbacSettings = serde_json::from_value(serde_json::json!({"allow": ["fs_*"], "deny": ["fs_delete*"]}))?;
/// let pipeline = Pipeline::new().with(PolicyLevel::Organisation, Arc::new(Rbac::new(rbac)));
/// let identity = Identity::new_random();
/// let call = Message::parse(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"fs_delete_all"}}"#)?;
/// let outcome = futures::executor::block_on(pipeline.run(Envelope::new(Direction::Request, &identity), call));
/// assert!(matches!(outcome.decision, Decision::Block { ref code, .. } if code == "rbac_denied"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, Default)]
pub struct Pipeline {
    stages: Vec<Stage>,
}

impl Pipeline {
    /// An empty pipeline, which allows everything.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a guardrail whose settings came from `level`.
    pub fn push(&mut self, level: PolicyLevel, guardrail: Arc<dyn Guardrail>) {
        self.stages.push(Stage { guardrail, level });
    }

    /// This pipeline with a guardrail appended.
    pub fn with(mut self, level: PolicyLevel, guardrail: Arc<dyn Guardrail>) -> Self {
        self.push(level, guardrail);
        self
    }

    /// The number of guardrails.
    pub fn len(&self) -> usize {
        self.stages.len()
    }

    /// Whether the pipeline has no guardrail.
    pub fn is_empty(&self) -> bool {
        self.stages.is_empty()
    }

    /// The guardrails' type names, in order.
    pub fn type_names(&self) -> impl Iterator<Item = &str> {
        self.stages.iter().map(|stage| stage.guardrail.type_name())
    }

    /// Runs every guardrail over `message` in order.
    pub async fn run(&self, envelope: Envelope<'_>, message: Message) -> PipelineOutcome {
        let mut message = message;
        // Room for one entry per stage and then some: the PII stage records one per enabled kind.
        let mut trace = Trace::with_capacity(2 * self.stages.len());
        let mut modified = false;
        let mut held: Option<(String, String, String, crate::approval::ApproveBy)> = None;
        for stage in &self.stages {
            let ctx = envelope.context(&message);
            if !stage.guardrail.applies_to(&ctx) {
                continue;
            }
            let first_entry = trace.len();
            let result = match stage.guardrail.evaluate_now(&ctx, stage.level, &mut trace) {
                Some(result) => result,
                None => {
                    let started = Instant::now();
                    let result = stage
                        .guardrail
                        .evaluate_traced(&ctx, stage.level, &mut trace)
                        .await;
                    trace.mark_waited(first_entry, started.elapsed());
                    result
                }
            };
            let deciding = |kind: DecisionKind| {
                trace
                    .entries()
                    .get(first_entry..)
                    .and_then(|entries| entries.iter().find(|e| e.decision == kind))
                    .map_or_else(
                        || stage.guardrail.type_name().to_owned(),
                        |e| e.guardrail.to_string(),
                    )
            };
            match result {
                GuardrailResult::Allow => {}
                GuardrailResult::Modify {
                    message: changed, ..
                } => {
                    message = changed;
                    modified = true;
                }
                GuardrailResult::Hold { code, reason, by } => {
                    if held.is_none() {
                        // The entry that holds names the guardrail (`rule:NAME` for a rule).
                        let guardrail = trace
                            .entries()
                            .get(first_entry..)
                            .and_then(|entries| {
                                entries.iter().find(|e| e.code.as_deref() == Some(&code))
                            })
                            .map_or_else(
                                || stage.guardrail.type_name().to_owned(),
                                |e| e.guardrail.to_string(),
                            );
                        held = Some((guardrail, code, reason, by));
                    }
                }
                GuardrailResult::Block { code, reason } => {
                    let guardrail = deciding(DecisionKind::Block);
                    return PipelineOutcome {
                        decision: Decision::Block {
                            guardrail,
                            code,
                            reason,
                        },
                        message,
                        trace,
                    };
                }
                GuardrailResult::Throttle {
                    retry_after,
                    reason,
                } => {
                    let guardrail = deciding(DecisionKind::Throttle);
                    return PipelineOutcome {
                        decision: Decision::Throttle {
                            guardrail,
                            retry_after,
                            reason,
                        },
                        message,
                        trace,
                    };
                }
            }
        }
        let decision = if let Some((guardrail, code, reason, by)) = held {
            Decision::Hold {
                guardrail,
                code,
                reason,
                by,
            }
        } else if modified {
            Decision::Modify
        } else {
            Decision::Allow
        };
        PipelineOutcome {
            decision,
            message,
            trace,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guardrail::SyncGuardrail;
    use serde_json::json;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[derive(Debug)]
    struct Fixed(GuardrailResult, AtomicUsize);

    impl SyncGuardrail for Fixed {
        fn type_name(&self) -> &str {
            "fixed"
        }
        fn evaluate_sync(&self, _: &GuardrailContext<'_>) -> GuardrailResult {
            self.1.fetch_add(1, Ordering::Relaxed);
            self.0.clone()
        }
    }

    #[derive(Debug)]
    struct AppendX;

    impl SyncGuardrail for AppendX {
        fn type_name(&self) -> &str {
            "append_x"
        }
        fn evaluate_sync(&self, ctx: &GuardrailContext<'_>) -> GuardrailResult {
            let text = ctx
                .message
                .result()
                .and_then(|r| r["text"].as_str())
                .unwrap_or("");
            let message = ctx
                .message
                .with_payload(json!({"text": format!("{text}x")}))
                .unwrap();
            GuardrailResult::Modify {
                message,
                reason: "appended x".into(),
            }
        }
    }

    fn fixed(result: GuardrailResult) -> Arc<Fixed> {
        Arc::new(Fixed(result, AtomicUsize::new(0)))
    }

    fn response() -> Message {
        Message::parse(r#"{"jsonrpc":"2.0","id":1,"result":{"text":""}}"#).unwrap()
    }

    async fn run(pipeline: &Pipeline) -> PipelineOutcome {
        let identity = Identity::new_random();
        pipeline
            .run(Envelope::new(Direction::Response, &identity), response())
            .await
    }

    /// Answers now with one decision and, awaited, with another, to tell which the pipeline used.
    #[derive(Debug)]
    struct TwoFaced {
        now: Option<GuardrailResult>,
    }

    #[async_trait::async_trait]
    impl Guardrail for TwoFaced {
        fn type_name(&self) -> &str {
            "two_faced"
        }
        async fn evaluate(&self, _: &GuardrailContext<'_>) -> GuardrailResult {
            GuardrailResult::block("awaited", "decided awaited")
        }
        fn evaluate_now(
            &self,
            _: &GuardrailContext<'_>,
            level: PolicyLevel,
            trace: &mut Trace,
        ) -> Option<GuardrailResult> {
            let result = self.now.clone()?;
            trace.record("two_faced", level, &result);
            Some(result)
        }
    }

    #[tokio::test]
    async fn a_decision_made_now_is_used_and_none_falls_back_to_the_awaited_one() {
        let now = Pipeline::new().with(
            PolicyLevel::Organisation,
            Arc::new(TwoFaced {
                now: Some(GuardrailResult::block("now", "decided now")),
            }),
        );
        let outcome = run(&now).await;
        assert!(matches!(&outcome.decision, Decision::Block { code, .. } if code == "now"));
        assert_eq!(outcome.trace.len(), 1);

        let awaited =
            Pipeline::new().with(PolicyLevel::Organisation, Arc::new(TwoFaced { now: None }));
        let outcome = run(&awaited).await;
        assert!(matches!(&outcome.decision, Decision::Block { code, .. } if code == "awaited"));
        assert_eq!(outcome.trace.len(), 1);
        assert_eq!(outcome.trace.entries()[0].guardrail, "two_faced");
    }

    #[tokio::test]
    async fn a_sync_guardrail_is_decided_now_once() {
        let counted = fixed(GuardrailResult::Allow);
        let mut trace = Trace::new();
        let identity = Identity::new_random();
        let message = response();
        let ctx = GuardrailContext::new(Direction::Response, &identity, &message);
        let result = Guardrail::evaluate_now(&*counted, &ctx, PolicyLevel::Agent, &mut trace);
        assert_eq!(result, Some(GuardrailResult::Allow));
        assert_eq!(counted.1.load(Ordering::Relaxed), 1);
        assert_eq!(trace.entries()[0].guardrail, "fixed");
        assert_eq!(trace.entries()[0].level, PolicyLevel::Agent);
    }

    #[tokio::test]
    async fn an_empty_pipeline_allows_unchanged() {
        let outcome = run(&Pipeline::new()).await;
        assert_eq!(outcome.decision, Decision::Allow);
        assert!(!outcome.message.is_modified());
        assert!(outcome.trace.is_empty());
    }

    #[tokio::test]
    async fn modifications_chain_in_order() {
        let pipeline = Pipeline::new()
            .with(PolicyLevel::Organisation, Arc::new(AppendX))
            .with(PolicyLevel::Agent, Arc::new(AppendX));
        let outcome = run(&pipeline).await;
        assert_eq!(outcome.decision, Decision::Modify);
        assert_eq!(outcome.message.result().unwrap()["text"], "xx");
        let levels: Vec<_> = outcome.trace.entries().iter().map(|e| e.level).collect();
        assert_eq!(levels, [PolicyLevel::Organisation, PolicyLevel::Agent]);
    }

    #[tokio::test]
    async fn block_short_circuits_and_keeps_earlier_changes() {
        let after = fixed(GuardrailResult::Allow);
        let pipeline = Pipeline::new()
            .with(PolicyLevel::Organisation, Arc::new(AppendX))
            .with(
                PolicyLevel::Workspace,
                fixed(GuardrailResult::block("nope", "because")),
            )
            .with(PolicyLevel::Agent, after.clone());
        let outcome = run(&pipeline).await;
        assert_eq!(
            outcome.decision,
            Decision::Block {
                guardrail: "fixed".into(),
                code: "nope".into(),
                reason: "because".into()
            }
        );
        assert_eq!(
            after.1.load(Ordering::Relaxed),
            0,
            "nothing runs after a block"
        );
        assert_eq!(outcome.trace.len(), 2);
        assert_eq!(outcome.trace.entries()[1].code.as_deref(), Some("nope"));
    }

    #[tokio::test]
    async fn throttle_short_circuits_with_retry_after() {
        let after = fixed(GuardrailResult::Allow);
        let pipeline = Pipeline::new()
            .with(
                PolicyLevel::Agent,
                fixed(GuardrailResult::Throttle {
                    retry_after: Duration::from_micros(1500),
                    reason: "slow down".into(),
                }),
            )
            .with(PolicyLevel::Agent, after.clone());
        let outcome = run(&pipeline).await;
        assert_eq!(outcome.decision.kind(), DecisionKind::Throttle);
        assert_eq!(
            outcome.trace.entries()[0].retry_after_ms,
            Some(2),
            "rounded up"
        );
        assert_eq!(after.1.load(Ordering::Relaxed), 0);
        let json = serde_json::to_value(&outcome.decision).unwrap();
        assert_eq!(
            json,
            json!({"decision": "throttle", "guardrail": "fixed", "retry_after_ms": 2, "reason": "slow down"})
        );
    }
}
