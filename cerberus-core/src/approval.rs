//! A person in the loop: what a door does with a call a guardrail [holds](crate::GuardrailResult::Hold).
//!
//! A policy says that a call needs approval (an `rbac` entry's `approve` patterns, a `rule` whose
//! `action` is `approve`). The pipeline then decides [`Decision::Hold`] for a call no guardrail
//! refused, and the [`Exchange`](crate::exchange::Exchange) puts it to the door's [`Approver`]: the
//! call waits for the answer and goes on, or is refused with code `approval_denied`,
//! `approval_timed_out` or `approval_unavailable`. The answer is added to the call's trace as an
//! `approval` entry naming who decided, or the timeout, so the audit record says it. A door with no
//! approver refuses held calls.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::identity::{CallerProfile, Identity};
use crate::pipeline::Decision;
use crate::policy::PolicyLevel;
use crate::trace::{DecisionKind, TraceEntry};

/// Who is asked to approve a held call.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApproveBy {
    /// The organisation's admins, through the admin API.
    #[default]
    Admin,
    /// The person at the client, through MCP elicitation (a yes/no form); a client that cannot be
    /// asked gets the call refused.
    User,
    /// The person at the client where it can be asked, the admins otherwise.
    UserOrAdmin,
}

impl ApproveBy {
    /// The name used in policies.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::User => "user",
            Self::UserOrAdmin => "user_or_admin",
        }
    }
}

/// The trace name of an approval's answer.
pub const GUARDRAIL: &str = "approval";

/// Codes of the approval's trace entry and of the refusal a call gets.
pub mod codes {
    /// What a guardrail that holds a call records.
    pub const REQUIRED: &str = "approval_required";
    /// A person approved the call.
    pub const GRANTED: &str = "approval_granted";
    /// A person refused the call.
    pub const DENIED: &str = "approval_denied";
    /// Nobody answered in time.
    pub const TIMED_OUT: &str = "approval_timed_out";
    /// The approval could not be asked for (no approver, a store that does not answer).
    pub const UNAVAILABLE: &str = "approval_unavailable";
    /// The caller went away before an answer came.
    pub const ABANDONED: &str = "approval_abandoned";
}

/// A held call, as it is put to a person.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct ApprovalRequest<'a> {
    /// Who asked.
    pub identity: &'a Identity,
    /// Their names and labels, when the door knows them.
    pub profile: Option<&'a CallerProfile>,
    /// The gateway session.
    pub session: Option<&'a str>,
    /// The request's method (`tools/call`).
    pub method: &'a str,
    /// What it names: a tool, a prompt, a resource.
    pub target: Option<&'a str>,
    /// Its arguments, redacted as the audit log would store them.
    pub arguments: Option<&'a Value>,
    /// The guardrail that held it (`rbac`, `rule:NAME`).
    pub guardrail: &'a str,
    /// Why it needs approval.
    pub reason: &'a str,
    /// Who the policy says to ask.
    pub by: ApproveBy,
}

/// What became of a held call.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ApprovalAnswer {
    /// Someone approved it.
    Approved {
        /// Who: an admin's user id, or `user` for the person at the client.
        by: String,
    },
    /// Someone refused it.
    Denied {
        /// Who.
        by: String,
        /// Why, if they said.
        reason: Option<String>,
    },
    /// Nobody answered within the time allowed.
    TimedOut {
        /// The time allowed.
        after: Duration,
    },
    /// It could not be asked for.
    Unavailable {
        /// Why, for logs and the caller (no secrets).
        reason: String,
    },
}

impl ApprovalAnswer {
    /// The trace entry that records this answer, and the decision the call gets: `approved` keeps
    /// `passed` (the decision the pipeline would have made without the hold, allow or modify).
    /// The entry stands at `level`, the level of the policy entry that held the call.
    pub fn settle(&self, passed: Decision, level: PolicyLevel) -> (TraceEntry, Decision) {
        let (decision, code, reason) = match self {
            Self::Approved { by } => (
                DecisionKind::Allow,
                codes::GRANTED,
                format!("approved by {by}"),
            ),
            Self::Denied { by, reason } => (
                DecisionKind::Block,
                codes::DENIED,
                match reason {
                    Some(reason) => format!("denied by {by}: {reason}"),
                    None => format!("denied by {by}"),
                },
            ),
            Self::TimedOut { after } => (
                DecisionKind::Block,
                codes::TIMED_OUT,
                format!("nobody answered within {} s", after.as_secs()),
            ),
            Self::Unavailable { reason } => (
                DecisionKind::Block,
                codes::UNAVAILABLE,
                format!("approval could not be asked for: {reason}"),
            ),
        };
        let entry = TraceEntry {
            code: Some(code.to_owned()),
            ..TraceEntry::new(GUARDRAIL, level, decision).with_reason(reason.clone())
        };
        let decision = match decision {
            DecisionKind::Allow => passed,
            _ => Decision::Block {
                guardrail: GUARDRAIL.to_owned(),
                code: code.to_owned(),
                reason,
            },
        };
        (entry, decision)
    }
}

/// Asks a person about a held call and waits for the answer: an admin through the gateway's
/// admin API, or the user at the client. The wait is the approver's to bound: it answers
/// [`ApprovalAnswer::TimedOut`] when its time is up.
#[async_trait]
pub trait Approver: Send + Sync + fmt::Debug {
    /// Asks about `request` and waits for the answer.
    async fn decide(&self, request: ApprovalRequest<'_>) -> ApprovalAnswer;
}
