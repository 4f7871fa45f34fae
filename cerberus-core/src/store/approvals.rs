//! Held calls waiting for an admin, as the database keeps them: made by the instance that holds the
//! call, decided through the admin API of any instance, read back by the one waiting.

use std::fmt;
use std::str::FromStr;
use std::time::SystemTime;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use super::{Page, StoreError, rfc3339};
use crate::identity::{AgentId, OrganisationId, WorkspaceId};

id_type!(
    /// Identifies a held call's approval.
    ApprovalId
);

/// Where an approval stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ApprovalStatus {
    /// The call waits.
    Pending,
    /// An admin approved it: it went on.
    Approved,
    /// An admin denied it: it was refused.
    Denied,
    /// Nobody answered in time: it was refused.
    TimedOut,
}

impl ApprovalStatus {
    /// The name stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Approved => "approved",
            Self::Denied => "denied",
            Self::TimedOut => "timed_out",
        }
    }
}

impl fmt::Display for ApprovalStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ApprovalStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "pending" => Ok(Self::Pending),
            "approved" => Ok(Self::Approved),
            "denied" => Ok(Self::Denied),
            "timed_out" => Ok(Self::TimedOut),
            other => Err(format!(
                "unknown approval status `{other}`: expected pending, approved, denied or timed_out"
            )),
        }
    }
}

/// An admin's answer to a pending approval.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Let the call go on.
    Approve,
    /// Refuse it.
    Deny,
}

/// A held call and what became of it.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Approval {
    /// Its id.
    pub id: ApprovalId,
    /// The caller's organisation.
    pub organisation: OrganisationId,
    /// The caller's workspace.
    pub workspace: WorkspaceId,
    /// The agent that made the call.
    pub agent: AgentId,
    /// The request's method (`tools/call`).
    pub method: String,
    /// The tool (prompt, resource) it names.
    pub target: Option<String>,
    /// Its arguments, redacted as the audit log stores them.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub arguments: Option<Value>,
    /// The policy entry that held it (`rbac`, `rule:NAME`).
    pub guardrail: String,
    /// Why it needs approval.
    pub reason: String,
    /// Where it stands.
    pub status: ApprovalStatus,
    /// When the call was held.
    #[serde(with = "rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub requested_at: SystemTime,
    /// When it is refused if nobody answers.
    #[serde(with = "rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub expires_at: SystemTime,
    /// The id of the admin who answered.
    pub decided_by: Option<String>,
    /// When the answer came (or the time ran out).
    #[serde(with = "rfc3339::option", default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub decided_at: Option<SystemTime>,
    /// What the admin said with the answer.
    pub note: Option<String>,
}

impl Approval {
    /// A pending approval of a call held now, refused at `expires_at`.
    #[allow(clippy::too_many_arguments, reason = "one field each")]
    pub fn pending(
        organisation: OrganisationId,
        workspace: WorkspaceId,
        agent: AgentId,
        method: String,
        target: Option<String>,
        arguments: Option<Value>,
        guardrail: String,
        reason: String,
        expires_at: SystemTime,
    ) -> Self {
        Self {
            id: ApprovalId(Uuid::now_v7()),
            organisation,
            workspace,
            agent,
            method,
            target,
            arguments,
            guardrail,
            reason,
            status: ApprovalStatus::Pending,
            requested_at: SystemTime::now(),
            expires_at,
            decided_by: None,
            decided_at: None,
            note: None,
        }
    }
}

/// Approvals of held calls, by organisation.
#[async_trait]
pub trait ApprovalStore: Send + Sync {
    /// Stores a new pending approval.
    async fn create_approval(&self, approval: &Approval) -> Result<(), StoreError>;

    /// One approval of the organisation.
    async fn approval(
        &self,
        organisation: OrganisationId,
        id: ApprovalId,
    ) -> Result<Option<Approval>, StoreError>;

    /// The organisation's approvals, newest first, of one status or all.
    async fn approvals(
        &self,
        organisation: OrganisationId,
        status: Option<ApprovalStatus>,
        page: Page,
    ) -> Result<Vec<Approval>, StoreError>;

    /// Answers a pending approval that has not expired, on behalf of `by`; gives the approval as it
    /// stands afterwards (answered by someone else before, or timed out, it is left as it was).
    async fn decide_approval(
        &self,
        organisation: OrganisationId,
        id: ApprovalId,
        verdict: Verdict,
        by: &str,
        note: Option<&str>,
    ) -> Result<Option<Approval>, StoreError>;

    /// Deletes the approvals of calls held before `before` (retention) that nobody waits for any
    /// more: answered, timed out, or past their time (left pending by an instance that stopped while
    /// the call waited); how many went.
    async fn delete_approvals_before(&self, before: SystemTime) -> Result<u64, StoreError>;

    /// Marks an approval still pending as timed out; gives it as it stands afterwards (an answer
    /// that came first stands).
    async fn expire_approval(
        &self,
        organisation: OrganisationId,
        id: ApprovalId,
    ) -> Result<Option<Approval>, StoreError>;
}
