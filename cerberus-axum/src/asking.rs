//! Who a held call is put to: the person at the client, or the organisation's admins.
//!
//! A policy entry that holds a call says who approves it (`approve_by`): `admin`, `user`, or
//! `user_or_admin`. [`Asking`] is the gateway's [`Approver`]:
//!
//! - **The user** is asked through MCP elicitation, where the client declared the `elicitation`
//!   capability (at `initialize`, or in a stateless request's `_meta`) and takes an event stream for
//!   its POST: the gateway sends `elicitation/create` on that stream, a yes/no form naming the tool,
//!   its redacted arguments and the reason, and the call goes on when the answer is `accept` with
//!   `approve: true`. Any other answer (declined, cancelled, `approve: false`, an error) refuses it,
//!   as does no answer within the approval timeout. The client's answer comes in a POST of its own,
//!   which the gateway takes for itself ([`Elicitations::answer`]); it must reach the instance that
//!   asked (sticky sessions, as a stdio upstream needs).
//! - **The admins** are asked through the admin API ([`crate::approvals`], with a database).
//!
//! `user_or_admin` asks the user where the client can be asked, the admins otherwise; `user` refuses
//! a call whose client cannot be asked, and `admin` (or `user_or_admin`) one with no admins to ask
//! (no database).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use cerberus_core::approval::{ApprovalAnswer, ApprovalRequest, ApproveBy, Approver};
use cerberus_core::{AgentId, Identity, Message, MessageKind, OrganisationId};
use serde_json::{Value, json};
use tokio::sync::oneshot;

use crate::proxy::holding;

/// The prefix of the ids of the gateway's own requests to clients.
pub const REQUEST_ID_PREFIX: &str = "cerberus-approval-";

/// How long the user is given to answer, when the gateway has no approval settings of its own
/// (no database).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

/// How often a held call's client gets a keep-alive comment, when the gateway has no approval
/// settings of its own.
pub const DEFAULT_KEEP_ALIVE: Duration = Duration::from_secs(15);

/// How many questions may wait for clients at once; more are refused (no one is asked).
const MAX_WAITING: usize = 10_000;

/// How many of them one organisation's calls may hold, so that one tenant cannot use up the rest.
const MAX_WAITING_PER_ORGANISATION: usize = 1_000;

/// Who a question was put to, and where its answer goes.
#[derive(Debug)]
struct Asked {
    organisation: OrganisationId,
    agent: AgentId,
    answer: oneshot::Sender<Message>,
}

/// Questions put to clients, waiting for their answers, by request id.
#[derive(Debug, Default)]
pub struct Elicitations {
    waiting: Mutex<HashMap<String, Asked>>,
}

impl Elicitations {
    /// Takes `message` if it answers one of the gateway's questions to `agent`; gives it back
    /// otherwise (it is for the server). An answer to a question put to another agent is dropped:
    /// only the asked client may answer.
    pub fn answer(&self, agent: AgentId, message: Message) -> Option<Message> {
        let ours = matches!(message.kind(), MessageKind::Response | MessageKind::Error)
            && message
                .id()
                .and_then(Value::as_str)
                .is_some_and(|id| id.starts_with(REQUEST_ID_PREFIX));
        if !ours {
            return Some(message);
        }
        let Some(id) = message.id().and_then(Value::as_str).map(str::to_owned) else {
            return Some(message);
        };
        let Ok(mut waiting) = self.waiting.lock() else {
            return None;
        };
        match waiting.remove(&id) {
            Some(asked) if asked.agent == agent => {
                let _ = asked.answer.send(message);
            }
            Some(other) => {
                tracing::warn!("an answer to the gateway's question came from another agent");
                waiting.insert(id, other);
            }
            None => tracing::debug!("an answer to a question nobody waits for"),
        }
        None
    }

    fn ask(&self, id: &str, identity: &Identity) -> Option<oneshot::Receiver<Message>> {
        let (answer, receiver) = oneshot::channel();
        let mut waiting = self.waiting.lock().ok()?;
        let theirs = waiting
            .values()
            .filter(|asked| asked.organisation == identity.organisation)
            .count();
        if waiting.len() >= MAX_WAITING || theirs >= MAX_WAITING_PER_ORGANISATION {
            return None;
        }
        waiting.insert(
            id.to_owned(),
            Asked {
                organisation: identity.organisation,
                agent: identity.agent,
                answer,
            },
        );
        Some(receiver)
    }

    fn forget(&self, id: &str) {
        if let Ok(mut waiting) = self.waiting.lock() {
            waiting.remove(id);
        }
    }

    /// How many questions wait for clients.
    pub fn len(&self) -> usize {
        self.waiting.lock().map_or(0, |waiting| waiting.len())
    }

    /// Whether none does.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A question waiting for a client: forgotten however the wait ends (an answer, the timeout, or the
/// held call dropped because its client went away).
struct Question<'a> {
    elicitations: &'a Elicitations,
    id: String,
}

impl Drop for Question<'_> {
    fn drop(&mut self) {
        self.elicitations.forget(&self.id);
    }
}

/// The gateway's approver: asks the user or the admins, as the policy says.
#[derive(Debug)]
pub struct Asking {
    elicitations: Arc<Elicitations>,
    admins: Option<Arc<dyn Approver>>,
    timeout: Duration,
}

impl Asking {
    /// An approver asking users through `elicitations` and waiting `timeout` for them, with no admins
    /// to ask.
    pub fn new(elicitations: Arc<Elicitations>, timeout: Duration) -> Self {
        Self {
            elicitations,
            admins: None,
            timeout,
        }
    }

    /// The same approver putting calls to `admins` where the policy says so.
    pub fn with_admins(self, admins: Arc<dyn Approver>, timeout: Duration) -> Self {
        Self {
            admins: Some(admins),
            timeout,
            ..self
        }
    }

    async fn ask_user(&self, request: &ApprovalRequest<'_>) -> ApprovalAnswer {
        let id = format!("{REQUEST_ID_PREFIX}{}", uuid::Uuid::new_v4());
        let Some(answer) = self.elicitations.ask(&id, request.identity) else {
            return ApprovalAnswer::Unavailable {
                reason: "too many questions wait for clients".into(),
            };
        };
        let question = Question {
            elicitations: &self.elicitations,
            id,
        };
        let id = question.id.as_str();
        let target = request.target.unwrap_or(request.method);
        let arguments = request
            .arguments
            .map_or_else(|| "none".to_owned(), Value::to_string);
        let message = json!({
            "jsonrpc": "2.0",
            "id": id,
            "method": "elicitation/create",
            "params": {
                "mode": "form",
                "message": format!(
                    "Approve the call of `{target}`? {}. Arguments: {arguments}",
                    request.reason
                ),
                "requestedSchema": {
                    "type": "object",
                    "properties": {
                        "approve": {
                            "type": "boolean",
                            "title": "Approve",
                            "description": format!("Let the call of `{target}` go on"),
                        }
                    },
                    "required": ["approve"],
                },
            },
        });
        if !holding::ask_client(&message) {
            return ApprovalAnswer::Unavailable {
                reason: "the client has no stream to be asked on".into(),
            };
        }
        let answer = tokio::time::timeout(self.timeout, answer).await;
        drop(question);
        match answer {
            Err(_) => ApprovalAnswer::TimedOut {
                after: self.timeout,
            },
            Ok(Err(_)) => ApprovalAnswer::Unavailable {
                reason: "the question was dropped".into(),
            },
            Ok(Ok(message)) => user_answer(&message),
        }
    }
}

/// What the client's answer to `elicitation/create` means.
fn user_answer(message: &Message) -> ApprovalAnswer {
    let by = || "the user".to_owned();
    if let Some(error) = message.error() {
        let text = error
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("no message");
        return ApprovalAnswer::Unavailable {
            reason: format!("the client could not ask: {text}"),
        };
    }
    let result = message.result();
    let action = result.and_then(|r| r.get("action")).and_then(Value::as_str);
    let approved = result
        .and_then(|r| r.get("content"))
        .and_then(|c| c.get("approve"))
        .and_then(Value::as_bool);
    match (action, approved) {
        (Some("accept"), Some(true)) => ApprovalAnswer::Approved { by: by() },
        (Some("accept"), _) => ApprovalAnswer::Denied {
            by: by(),
            reason: None,
        },
        (Some("decline"), _) => ApprovalAnswer::Denied {
            by: by(),
            reason: Some("declined".into()),
        },
        (Some("cancel"), _) => ApprovalAnswer::Denied {
            by: by(),
            reason: Some("cancelled".into()),
        },
        _ => ApprovalAnswer::Unavailable {
            reason: "the client's answer is not an elicitation result".into(),
        },
    }
}

#[async_trait]
impl Approver for Asking {
    async fn decide(&self, request: ApprovalRequest<'_>) -> ApprovalAnswer {
        let user = holding::client_can_be_asked();
        match (request.by, user) {
            (ApproveBy::User | ApproveBy::UserOrAdmin, true) => self.ask_user(&request).await,
            (ApproveBy::User, false) => ApprovalAnswer::Unavailable {
                reason: "the client cannot be asked (it declared no elicitation capability, or takes no event stream)".into(),
            },
            (ApproveBy::Admin | ApproveBy::UserOrAdmin, _) => match &self.admins {
                Some(admins) => admins.decide(request).await,
                None => ApprovalAnswer::Unavailable {
                    reason: "there are no admins to ask (the gateway has no database)".into(),
                },
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(text: &str) -> Message {
        Message::parse(text.to_owned()).unwrap()
    }

    #[test]
    fn the_users_answer_approves_only_an_accepted_yes() {
        let answers = [
            (
                r#"{"jsonrpc":"2.0","id":"x","result":{"action":"accept","content":{"approve":true}}}"#,
                "approved",
            ),
            (
                r#"{"jsonrpc":"2.0","id":"x","result":{"action":"accept","content":{"approve":false}}}"#,
                "denied",
            ),
            (
                r#"{"jsonrpc":"2.0","id":"x","result":{"action":"accept","content":{"approve":"yes"}}}"#,
                "denied",
            ),
            (
                r#"{"jsonrpc":"2.0","id":"x","result":{"action":"decline"}}"#,
                "denied",
            ),
            (
                r#"{"jsonrpc":"2.0","id":"x","result":{"action":"cancel"}}"#,
                "denied",
            ),
            (r#"{"jsonrpc":"2.0","id":"x","result":{}}"#, "unavailable"),
            (
                r#"{"jsonrpc":"2.0","id":"x","error":{"code":-32601,"message":"no"}}"#,
                "unavailable",
            ),
        ];
        for (text, expected) in answers {
            let kind = match user_answer(&message(text)) {
                ApprovalAnswer::Approved { .. } => "approved",
                ApprovalAnswer::Denied { .. } => "denied",
                _ => "unavailable",
            };
            assert_eq!(kind, expected, "{text}");
        }
    }

    #[test]
    fn a_question_is_forgotten_however_its_wait_ends() {
        let elicitations = Elicitations::default();
        let id = format!("{REQUEST_ID_PREFIX}2");
        let _answer = elicitations.ask(&id, &Identity::new_random()).unwrap();
        let question = Question {
            elicitations: &elicitations,
            id,
        };
        assert_eq!(elicitations.len(), 1);
        // The held call's future is dropped mid-wait when its client goes away.
        drop(question);
        assert!(elicitations.is_empty());
    }

    #[test]
    fn one_organisation_cannot_use_up_the_questions() {
        let elicitations = Elicitations::default();
        let greedy = Identity::new_random();
        let _held: Vec<_> = (0..MAX_WAITING_PER_ORGANISATION)
            .map(|i| elicitations.ask(&format!("q{i}"), &greedy).unwrap())
            .collect();
        assert!(elicitations.ask("one-more", &greedy).is_none());
        assert!(
            elicitations
                .ask("theirs", &Identity::new_random())
                .is_some()
        );
    }

    #[test]
    fn only_the_asked_agent_answers_a_question() {
        let elicitations = Elicitations::default();
        let identity = Identity::new_random();
        let (asked, other) = (identity.agent, AgentId::new_random());
        let id = format!("{REQUEST_ID_PREFIX}1");
        let mut receiver = elicitations.ask(&id, &identity).unwrap();
        let answer = message(&format!(
            r#"{{"jsonrpc":"2.0","id":"{id}","result":{{"action":"cancel"}}}}"#
        ));
        assert!(elicitations.answer(other, answer.clone()).is_none());
        assert!(receiver.try_recv().is_err(), "another agent cannot answer");
        assert!(elicitations.answer(asked, answer).is_none());
        assert!(receiver.try_recv().is_ok());
        assert!(elicitations.is_empty());
        // Anything else is the server's.
        let theirs = message(r#"{"jsonrpc":"2.0","id":"srv-1","result":{}}"#);
        assert!(elicitations.answer(asked, theirs).is_some());
    }
}
