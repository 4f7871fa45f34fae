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
use bytes::Bytes;
use cerberus_core::approval::{ApprovalAnswer, ApprovalRequest, Approver};
use cerberus_core::store::{Approval, ApprovalId, ApprovalStatus, ApprovalStore, WorkspaceStore};
use cerberus_core::{OrganisationId, with_causes};
use http::{Request, Uri, header};
use tokio::sync::Notify;

use crate::upstream_client::{SetByOperator, UpstreamClient};
use crate::webhook::{MIN_SECRET_BYTES, SIGNATURE_HEADER, Signer, TIMESTAMP_HEADER};

/// How many calls of one organisation may wait on one instance; more are refused at once
/// (`approval_unavailable`), so that one tenant's agents cannot tie up the instance's connections
/// and the database's rows at the others' expense.
pub const MAX_WAITING_PER_ORGANISATION: usize = 1_000;

/// How long a notice may take, connecting included.
const NOTICE_TIMEOUT: Duration = Duration::from_secs(5);

/// Tells an outside system (a chat tool, a ticket queue) of every call held for approval: a signed
/// `POST` of `{"type": "approval.pending", "approval": {…}, "approve": PATH, "deny": PATH}`, with
/// the `cerberus-timestamp` and `cerberus-signature` headers of the `webhook` guardrail. A notice
/// that fails is logged; the call waits all the same.
pub struct ApprovalNotifier {
    url: Uri,
    signer: Signer,
    client: UpstreamClient,
}

impl std::fmt::Debug for ApprovalNotifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may hold a token in its query.
        f.debug_struct("ApprovalNotifier").finish_non_exhaustive()
    }
}

impl ApprovalNotifier {
    /// A notifier POSTing to `url`, signing with `secret` (at least 16 bytes).
    pub fn new(url: &str, secret: &[u8]) -> Result<Self, String> {
        let uri: Uri = url.parse().map_err(|e| format!("not a URL: {e}"))?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
            return Err("must be an http:// or https:// URL".into());
        }
        if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
            return Err("must not hold credentials".into());
        }
        let signer = Signer::new(secret)
            .filter(|_| secret.len() >= MIN_SECRET_BYTES)
            .ok_or_else(|| format!("the secret must have at least {MIN_SECRET_BYTES} bytes"))?;
        // The operator chose the URL: it may be anywhere, as their upstreams may.
        let client =
            UpstreamClient::new(NOTICE_TIMEOUT, None, crate::egress::EgressPolicy::default())
                .map_err(|e| format!("cannot make the client: {e}"))?;
        Ok(Self {
            url: uri,
            signer,
            client,
        })
    }

    /// Sends the notice of `approval`.
    async fn notify(&self, approval: &Approval) {
        let base = format!(
            "/api/v1/organisations/{}/approvals/{}",
            approval.organisation, approval.id
        );
        let body = match serde_json::to_vec(&serde_json::json!({
            "type": "approval.pending",
            "approval": approval,
            "approve": format!("{base}/approve"),
            "deny": format!("{base}/deny"),
        })) {
            Ok(body) => body,
            Err(e) => {
                tracing::error!(error = %e, "cannot write an approval notice");
                return;
            }
        };
        let timestamp = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_secs())
            .to_string();
        let signature = self.signer.sign(&timestamp, &body);
        let request = Request::post(self.url.clone())
            .header(header::CONTENT_TYPE, "application/json")
            .header(TIMESTAMP_HEADER, timestamp)
            .header(SIGNATURE_HEADER, signature)
            .extension(SetByOperator)
            .body(Bytes::from(body));
        let request = match request {
            Ok(request) => request,
            Err(e) => {
                tracing::error!(error = %e, "cannot make an approval notice");
                return;
            }
        };
        let sent = async {
            let response = self
                .client
                .send(request)
                .await
                .map_err(|e| with_causes(&e))?;
            let status = response.status();
            // Read the answer to the end, so the connection can serve the next notice.
            let _ = http_body_util::BodyExt::collect(http_body_util::Limited::new(
                response.into_body(),
                64 * 1024,
            ))
            .await;
            if status.is_success() {
                Ok(())
            } else {
                Err(format!("the service answered {status}"))
            }
        };
        match tokio::time::timeout(NOTICE_TIMEOUT, sent).await {
            Ok(Ok(())) => {}
            Ok(Err(why)) => {
                tracing::warn!(approval = %approval.id, error = %why, "approval notice failed")
            }
            Err(_) => {
                tracing::warn!(approval = %approval.id, "approval notice got no answer in time")
            }
        }
    }
}

/// Puts held calls to the organisation's admins through the database.
pub struct AdminApprover {
    store: Arc<dyn ApprovalStore>,
    timeout: Duration,
    poll: Duration,
    /// Woken by every answer given through this instance's admin API.
    answered: Notify,
    /// Calls waiting on this instance.
    waiting: AtomicUsize,
    /// The same, by organisation.
    by_organisation: std::sync::Mutex<std::collections::HashMap<OrganisationId, usize>>,
    /// Who hears of held calls, besides the admin API.
    notifier: Option<Arc<ApprovalNotifier>>,
    /// The workspaces the admin API manages, when only their calls can be answered there.
    workspaces: Option<Arc<dyn WorkspaceStore>>,
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
            by_organisation: std::sync::Mutex::default(),
            notifier: None,
            workspaces: None,
        }
    }

    /// The same approver refusing at once the calls of workspaces `workspaces` does not hold (those
    /// of the configuration file): no admin can answer them through the API.
    pub fn managing(self, workspaces: Arc<dyn WorkspaceStore>) -> Self {
        Self {
            workspaces: Some(workspaces),
            ..self
        }
    }

    /// The same approver telling `notifier` of every held call.
    pub fn with_notifier(self, notifier: ApprovalNotifier) -> Self {
        Self {
            notifier: Some(Arc::new(notifier)),
            ..self
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

/// A call counted as waiting on this instance until it is dropped; one that stops waiting before
/// an answer (its client went away) has its approval marked timed out.
struct Waiting<'a> {
    approver: &'a AdminApprover,
    organisation: OrganisationId,
    /// The approval to close if the call stops waiting unanswered.
    open: Option<ApprovalId>,
}

impl<'a> Waiting<'a> {
    /// Counts a call of `organisation`, unless the organisation has too many waiting already.
    fn start(approver: &'a AdminApprover, organisation: OrganisationId) -> Option<Self> {
        let mut counts = approver.by_organisation.lock().ok()?;
        let count = counts.entry(organisation).or_insert(0);
        if *count >= MAX_WAITING_PER_ORGANISATION {
            return None;
        }
        *count += 1;
        approver.waiting.fetch_add(1, Ordering::Relaxed);
        Some(Self {
            approver,
            organisation,
            open: None,
        })
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.approver.waiting.fetch_sub(1, Ordering::Relaxed);
        if let Ok(mut counts) = self.approver.by_organisation.lock()
            && let Some(count) = counts.get_mut(&self.organisation)
        {
            *count = count.saturating_sub(1);
            if *count == 0 {
                counts.remove(&self.organisation);
            }
        }
        if let (Some(id), Ok(runtime)) = (self.open.take(), tokio::runtime::Handle::try_current()) {
            let (store, organisation) = (Arc::clone(&self.approver.store), self.organisation);
            runtime.spawn(async move {
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
        if let Some(workspaces) = &self.workspaces {
            match workspaces
                .workspace(identity.organisation, identity.workspace)
                .await
            {
                Ok(Some(_)) => {}
                Ok(None) => {
                    return ApprovalAnswer::Unavailable {
                        reason: "no admin can answer for a workspace of the configuration file"
                            .into(),
                    };
                }
                Err(e) => {
                    tracing::error!(error = %with_causes(&e), "cannot look up a held call's workspace");
                    return ApprovalAnswer::Unavailable {
                        reason: "the approval could not be recorded".into(),
                    };
                }
            }
        }
        let Some(mut waiting) = Waiting::start(self, identity.organisation) else {
            tracing::warn!(organisation = %identity.organisation, "too many calls of one organisation wait for approval");
            return ApprovalAnswer::Unavailable {
                reason: format!(
                    "{MAX_WAITING_PER_ORGANISATION} calls of this organisation already wait for approval"
                ),
            };
        };
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
        if let Some(notifier) = &self.notifier {
            let (notifier, approval) = (Arc::clone(notifier), approval.clone());
            tokio::spawn(async move { notifier.notify(&approval).await });
        }
        tracing::info!(approval = %id, %organisation, target = ?approval.target, "call held for approval");
        waiting.open = Some(id);
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
        waiting.open = None;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::AdminSettings;
    use cerberus_core::store::{Page, StoreError, Verdict};

    #[derive(Debug)]
    struct NoStore;

    #[async_trait]
    impl ApprovalStore for NoStore {
        async fn create_approval(&self, _: &Approval) -> Result<(), StoreError> {
            Ok(())
        }
        async fn approval(
            &self,
            _: OrganisationId,
            _: ApprovalId,
        ) -> Result<Option<Approval>, StoreError> {
            Ok(None)
        }
        async fn approvals(
            &self,
            _: OrganisationId,
            _: Option<ApprovalStatus>,
            _: Page,
        ) -> Result<Vec<Approval>, StoreError> {
            Ok(Vec::new())
        }
        async fn decide_approval(
            &self,
            _: OrganisationId,
            _: ApprovalId,
            _: Verdict,
            _: &str,
            _: Option<&str>,
        ) -> Result<Option<Approval>, StoreError> {
            Ok(None)
        }
        async fn delete_approvals_before(&self, _: SystemTime) -> Result<u64, StoreError> {
            Ok(0)
        }
        async fn expire_approval(
            &self,
            _: OrganisationId,
            _: ApprovalId,
        ) -> Result<Option<Approval>, StoreError> {
            Ok(None)
        }
    }

    #[test]
    fn one_organisation_cannot_hold_more_than_its_share_of_waiting_calls() {
        let approver = AdminApprover::new(
            Arc::new(NoStore),
            Duration::from_secs(1),
            Duration::from_millis(50),
        );
        let (greedy, other) = (OrganisationId::new_random(), OrganisationId::new_random());
        let mut held: Vec<_> = (0..MAX_WAITING_PER_ORGANISATION)
            .map(|_| Waiting::start(&approver, greedy).unwrap())
            .collect();
        assert!(Waiting::start(&approver, greedy).is_none());
        let theirs = Waiting::start(&approver, other).unwrap();
        assert_eq!(approver.waiting(), MAX_WAITING_PER_ORGANISATION + 1);
        held.pop();
        assert!(Waiting::start(&approver, greedy).is_some());
        drop((held, theirs));
        assert_eq!(approver.waiting(), 0);
        assert!(approver.by_organisation.lock().unwrap().is_empty());
    }

    #[test]
    fn a_notice_url_and_secret_are_checked_before_the_gateway_starts() {
        let secret = b"sixteen-bytes-ok";
        assert!(ApprovalNotifier::new("https://chat.example/hooks/1", secret).is_ok());
        for (url, key, why) in [
            ("ftp://chat.example/x", &secret[..], "http:// or https://"),
            ("https://user:pw@chat.example/x", &secret[..], "credentials"),
            ("not a url", &secret[..], "not a URL"),
            ("https://chat.example/x", &b"short"[..], "at least 16 bytes"),
        ] {
            let error = ApprovalNotifier::new(url, key).unwrap_err();
            assert!(error.contains(why), "{url}: {error}");
        }
        let half = AdminSettings {
            approval_webhook_url: Some("https://chat.example/x".into()),
            ..AdminSettings::default()
        };
        assert!(
            half.check()
                .unwrap_err()
                .to_string()
                .starts_with("admin.approval_webhook_secret")
        );
        let slow = AdminSettings {
            approval_timeout_secs: 0,
            ..AdminSettings::default()
        };
        assert!(
            slow.check()
                .unwrap_err()
                .to_string()
                .starts_with("admin.approval_timeout_secs")
        );
    }
}
