//! The [`Guardrail`] trait: one check applied to one message.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::identity::{CallerProfile, Identity};
use crate::message::Message;
use crate::policy::PolicyLevel;
use crate::trace::Trace;

/// Which way a message travels through the gateway.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// From the client to the MCP server: requests, notifications, and the client's answers to server requests.
    Request,
    /// From the MCP server to the client: results, errors, notifications, and server-initiated requests
    /// (sampling, elicitation, roots).
    Response,
}

impl Direction {
    /// The lowercase name used in policies and the audit log.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Request => "request",
            Self::Response => "response",
        }
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything a guardrail may look at to decide about one message.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct GuardrailContext<'a> {
    /// Which way the message travels.
    pub direction: Direction,
    /// Who sent it (or, for responses, who will receive it).
    pub identity: &'a Identity,
    /// The gateway session the message belongs to, if any.
    pub session: Option<&'a str>,
    /// For a response or error: the method of the request it answers, when known.
    pub request_method: Option<&'a str>,
    /// The message as it stands after the guardrails before this one.
    pub message: &'a Message,
    /// The names and labels of the caller's organisation, workspace and agent, when the host knows
    /// them.
    pub profile: Option<&'a CallerProfile>,
}

impl<'a> GuardrailContext<'a> {
    /// A context for `message` travelling in `direction` for `identity`, with no session.
    pub fn new(direction: Direction, identity: &'a Identity, message: &'a Message) -> Self {
        Self {
            direction,
            identity,
            session: None,
            request_method: None,
            message,
            profile: None,
        }
    }

    /// The same context with the caller's names and labels.
    pub fn with_profile(self, profile: &'a CallerProfile) -> Self {
        Self {
            profile: Some(profile),
            ..self
        }
    }

    /// The method this message is about: its own for requests and notifications, the answered
    /// request's for responses.
    pub fn method(&self) -> Option<&'a str> {
        self.message.method().or(self.request_method)
    }
}

/// What one guardrail decided about one message.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum GuardrailResult {
    /// Let the message through unchanged.
    Allow,
    /// Let a changed message through; later guardrails see the change.
    Modify {
        /// The changed message.
        message: Message,
        /// What was changed, without the data itself (for example "redacted 2 email addresses").
        reason: String,
    },
    /// Refuse the message.
    Block {
        /// A stable, machine-readable code such as `rbac_denied`.
        code: String,
        /// Why, for people; never the personal data that caused it.
        reason: String,
    },
    /// Let the message through only once a person approves it. The guardrails after this one still
    /// run, so a message another refuses is never put to anyone; then the door that carries it asks
    /// (see [`crate::approval`]) and passes or refuses it by the answer. A door that cannot ask
    /// refuses it.
    Hold {
        /// A stable, machine-readable code such as `approval_required`.
        code: String,
        /// Why it needs approval, for the person asked.
        reason: String,
        /// Who to ask.
        by: crate::approval::ApproveBy,
    },
    /// Refuse the message for now: the caller may retry after `retry_after`.
    Throttle {
        /// When a retry may succeed.
        retry_after: Duration,
        /// Why, for people.
        reason: String,
    },
}

impl GuardrailResult {
    /// A block with a code and a reason.
    pub fn block(code: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Block {
            code: code.into(),
            reason: reason.into(),
        }
    }
}

/// One check applied to one message.
///
/// Implement [`SyncGuardrail`] instead when the check never waits on I/O: it gets this trait for free.
/// Guardrails are shared between tasks, so they take `&self` and keep any state behind their own
/// synchronisation.
///
/// ```
/// use async_trait::async_trait;
/// use cerberus_core::{Guardrail, GuardrailContext, GuardrailResult};
///
/// /// Refuses every message after a kill switch is flipped.
/// #[derive(Debug, Default)]
/// struct KillSwitch(std::sync::atomic::AtomicBool);
///
/// #[async_trait]
/// impl Guardrail for KillSwitch {
///     fn type_name(&self) -> &str { "kill_switch" }
///     async fn evaluate(&self, _ctx: &GuardrailContext<'_>) -> GuardrailResult {
///         if self.0.load(std::sync::atomic::Ordering::Relaxed) {
///             GuardrailResult::block("kill_switch", "the kill switch is on")
///         } else {
///             GuardrailResult::Allow
///         }
///     }
/// }
/// ```
#[async_trait]
pub trait Guardrail: Send + Sync + fmt::Debug {
    /// The type name a policy document uses for this guardrail, recorded in the trace.
    fn type_name(&self) -> &str;

    /// Whether this guardrail has anything to say about the message; a guardrail that does not apply is
    /// skipped and leaves no trace entry.
    fn applies_to(&self, _ctx: &GuardrailContext<'_>) -> bool {
        true
    }

    /// Decides about one message.
    async fn evaluate(&self, ctx: &GuardrailContext<'_>) -> GuardrailResult;

    /// Decides and records the decision in `trace`.
    ///
    /// Override this only in a guardrail that stands for several policy entries at once (the built-in PII
    /// scanner runs every `pii_*` entry in one pass) so that each entry gets its own trace entry.
    async fn evaluate_traced(
        &self,
        ctx: &GuardrailContext<'_>,
        level: PolicyLevel,
        trace: &mut Trace,
    ) -> GuardrailResult {
        let result = self.evaluate(ctx).await;
        trace.record(self.type_name().to_owned(), level, &result);
        result
    }

    /// Decides now, recording the decision in `trace`, when this guardrail can do so without waiting;
    /// `None` (the default) when it must be awaited.
    ///
    /// The pipeline asks this first and awaits [`Guardrail::evaluate_traced`] only on `None`, so a
    /// guardrail that never waits costs no future on the heap. Every [`SyncGuardrail`] answers here; a
    /// guardrail that sometimes waits (a rate limit counted in Redis) answers when it does not. A
    /// guardrail that answers here must decide as [`Guardrail::evaluate_traced`] would.
    fn evaluate_now(
        &self,
        _ctx: &GuardrailContext<'_>,
        _level: PolicyLevel,
        _trace: &mut Trace,
    ) -> Option<GuardrailResult> {
        None
    }
}

/// A guardrail that never waits: regexes, counters in memory, size checks.
///
/// Every `SyncGuardrail` is a [`Guardrail`].
pub trait SyncGuardrail: Send + Sync + fmt::Debug {
    /// The type name a policy document uses for this guardrail.
    fn type_name(&self) -> &str;

    /// Whether this guardrail has anything to say about the message.
    fn applies_to(&self, _ctx: &GuardrailContext<'_>) -> bool {
        true
    }

    /// Decides about one message.
    fn evaluate_sync(&self, ctx: &GuardrailContext<'_>) -> GuardrailResult;
}

#[async_trait]
impl<T: SyncGuardrail> Guardrail for T {
    fn type_name(&self) -> &str {
        SyncGuardrail::type_name(self)
    }

    fn applies_to(&self, ctx: &GuardrailContext<'_>) -> bool {
        SyncGuardrail::applies_to(self, ctx)
    }

    async fn evaluate(&self, ctx: &GuardrailContext<'_>) -> GuardrailResult {
        self.evaluate_sync(ctx)
    }

    fn evaluate_now(
        &self,
        ctx: &GuardrailContext<'_>,
        level: PolicyLevel,
        trace: &mut Trace,
    ) -> Option<GuardrailResult> {
        let result = self.evaluate_sync(ctx);
        trace.record(SyncGuardrail::type_name(self).to_owned(), level, &result);
        Some(result)
    }
}
