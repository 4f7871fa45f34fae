//! Admins approve held calls: the [`Approver`] of a gateway with a database.
//!
//! A held call becomes a pending [`Approval`] in the database, and its request waits. Admins list
//! and answer approvals through the admin API of any instance (`/api/v1/organisations/{id}/approvals`);
//! the waiting instance reads the answer back (at once when it was given through this instance,
//! within `admin.approval_poll_interval_ms` through another) and lets the call go on or refuses it.
//! Nobody answering within `admin.approval_timeout_secs` refuses it, as does a database that cannot
//! record it. A call whose client goes away is marked timed out at once, so no one approves a call
//! that no longer waits.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use cerberus_core::approval::{ApprovalAnswer, ApprovalRequest, Approver};
use cerberus_core::store::{Approval, ApprovalId, ApprovalStatus, ApprovalStore};
use cerberus_core::{OrganisationId, with_causes};
use tokio::sync::Notify;

/// Puts held calls to the organisation's admins through the database.
pub struct AdminApprover {
    store: Arc<dyn ApprovalStore>,
    timeout: Duration,
    poll: Duration,
    /// Woken by every answer given through this instance's admin API.
    answered: Notify,
    /// Calls waiting on this instance.
    waiting: AtomicUsize,
}

impl std::fmt::Debug for AdminApprover {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminApprover")
            .field("timeout", &self.timeout)
            .field("poll", &self.poll)
            .field("waiting", &self.waiting())
            .finish_non_exhaustive()
    }
}

impl AdminApprover {
    /// An approver keeping approvals in `store`, waiting `timeout` for an answer and looking for
    /// one every `poll`.
    pub fn new(store: Arc<dyn ApprovalStore>, timeout: Duration, poll: Duration) -> Self {
        Self {
            store,
            timeout,
            poll,
            answered: Notify::new(),
            waiting: AtomicUsize::new(0),
        }
    }

    /// Tells the calls waiting on this instance that an answer was given (through this instance's
    /// admin API), so that the one it concerns goes on at once.
    pub fn answered(&self) {
        self.answered.notify_waiters();
    }

    /// How many calls wait for an answer on this instance.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    /// Waits until the approval is answered or the time is up; `None` when the time is up.
    async fn answer(&self, organisation: OrganisationId, id: ApprovalId) -> Option<Approval> {
        let deadline = Instant::now() + self.timeout;
        loop {
            // Listening before looking: an answer given between the two still wakes the wait.
            let answered = self.answered.notified();
            tokio::pin!(answered);
            answered.as_mut().enable();
            match self.store.approval(organisation, id).await {
                Ok(Some(approval)) if approval.status != ApprovalStatus::Pending => {
                    return Some(approval);
                }
                Ok(_) => {}
                // The database may come back before the time is up: keep looking.
                Err(e) => {
                    tracing::warn!(approval = %id, error = %with_causes(&e), "cannot read a held call's approval")
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            tokio::select! {
                () = answered => {}
                () = tokio::time::sleep(self.poll.min(left)) => {}
            }
        }
    }
}

/// Marks an approval timed out if its call stops waiting before an answer (the client went away).
struct Abandoned<'a> {
    store: &'a Arc<dyn ApprovalStore>,
    approval: Option<(OrganisationId, ApprovalId)>,
    waiting: &'a AtomicUsize,
}

impl Drop for Abandoned<'_> {
    fn drop(&mut self) {
        self.waiting.fetch_sub(1, Ordering::Relaxed);
        if let Some((organisation, id)) = self.approval.take() {
            let store = Arc::clone(self.store);
            tokio::spawn(async move {
                if let Err(e) = store.expire_approval(organisation, id).await {
                    tracing::warn!(approval = %id, error = %with_causes(&e), "cannot close the approval of an abandoned call");
                }
            });
        }
    }
}

/// What a decided approval means for its call.
fn answer_of(approval: &Approval, timeout: Duration) -> ApprovalAnswer {
    let by = || {
        approval
            .decided_by
            .as_deref()
            .map_or_else(|| "an admin".to_owned(), |id| format!("admin {id}"))
    };
    match approval.status {
        ApprovalStatus::Approved => ApprovalAnswer::Approved { by: by() },
        ApprovalStatus::Denied => ApprovalAnswer::Denied {
            by: by(),
            reason: approval.note.clone(),
        },
        ApprovalStatus::TimedOut | ApprovalStatus::Pending => {
            ApprovalAnswer::TimedOut { after: timeout }
        }
    }
}

#[async_trait]
impl Approver for AdminApprover {
    async fn decide(&self, request: ApprovalRequest<'_>) -> ApprovalAnswer {
        let identity = request.identity;
        let approval = Approval::pending(
            identity.organisation,
            identity.workspace,
            identity.agent,
            request.method.to_owned(),
            request.target.map(str::to_owned),
            request.arguments.cloned(),
            request.guardrail.to_owned(),
            request.reason.to_owned(),
            SystemTime::now() + self.timeout,
        );
        if let Err(e) = self.store.create_approval(&approval).await {
            tracing::error!(error = %with_causes(&e), "cannot record a held call's approval");
            return ApprovalAnswer::Unavailable {
                reason: "the approval could not be recorded".into(),
            };
        }
        let (organisation, id) = (approval.organisation, approval.id);
        crate::proxy::holding::signal_held();
        tracing::info!(approval = %id, %organisation, target = ?approval.target, "call held for approval");
        self.waiting.fetch_add(1, Ordering::Relaxed);
        let mut abandoned = Abandoned {
            store: &self.store,
            approval: Some((organisation, id)),
            waiting: &self.waiting,
        };
        let decided = match self.answer(organisation, id).await {
            Some(approval) => Some(approval),
            // Time is up: an answer that came at the last moment stands.
            None => match self.store.expire_approval(organisation, id).await {
                Ok(approval) => approval,
                Err(e) => {
                    tracing::error!(approval = %id, error = %with_causes(&e), "cannot mark an approval timed out");
                    None
                }
            },
        };
        abandoned.approval = None;
        let answer = decided.as_ref().map_or(
            ApprovalAnswer::TimedOut {
                after: self.timeout,
            },
            |approval| answer_of(approval, self.timeout),
        );
        tracing::info!(approval = %id, ?answer, "held call answered");
        answer
    }
}
