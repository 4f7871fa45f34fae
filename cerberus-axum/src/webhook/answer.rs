//! A decision service's answer, read and checked.

use cerberus_core::{GuardrailResult, Message};
use serde::Deserialize;
use serde_json::Value;

use super::BLOCKED;

/// The longest reason kept from a service, in characters; the rest is cut.
const MAX_REASON_CHARS: usize = 1024;

/// What a service decided.
#[derive(Debug, Deserialize)]
#[serde(tag = "decision", rename_all = "lowercase")]
pub(super) enum Answer {
    /// Let the message through.
    Allow,
    /// Refuse it.
    Block {
        #[serde(default)]
        reason: Option<String>,
    },
    /// Let a changed message through.
    Modify {
        message: Value,
        #[serde(default)]
        reason: Option<String>,
    },
}

/// The answer as sent: the decision itself, or OPA's `{"result": decision}`.
#[derive(Deserialize)]
#[serde(untagged)]
enum Envelope {
    Opa { result: Answer },
    Bare(Answer),
}

impl Answer {
    /// Reads an answer's body.
    pub(super) fn parse(body: &[u8]) -> Result<Self, String> {
        match serde_json::from_slice::<Envelope>(body) {
            Ok(Envelope::Opa { result } | Envelope::Bare(result)) => Ok(result),
            Err(_) => Err(
                "the answer is not a decision: expected {\"decision\": \"allow\" | \"block\" | \"modify\", …}"
                    .to_owned(),
            ),
        }
    }

    /// The guardrail's result for `original`; an error when a modified message is not one the
    /// gateway can pass on in its place.
    pub(super) fn into_result(
        self,
        original: &Message,
        label: &str,
    ) -> Result<GuardrailResult, String> {
        match self {
            Self::Allow => Ok(GuardrailResult::Allow),
            Self::Block { reason } => Ok(GuardrailResult::block(
                BLOCKED,
                match reason {
                    Some(reason) => format!("{label}: {}", bounded(&reason)),
                    None => format!("{label} refused the message"),
                },
            )),
            Self::Modify { message, reason } => {
                let changed = Message::from_value(message)
                    .map_err(|e| format!("the modified message is not a JSON-RPC message: {e}"))?;
                if changed.id() != original.id() {
                    return Err("the modified message has another id".to_owned());
                }
                if changed.kind() != original.kind() || changed.method() != original.method() {
                    return Err("the modified message is another kind of message".to_owned());
                }
                Ok(GuardrailResult::Modify {
                    message: changed,
                    reason: match reason {
                        Some(reason) => format!("{label}: {}", bounded(&reason)),
                        None => format!("{label} changed the message"),
                    },
                })
            }
        }
    }
}

/// `reason`, cut at [`MAX_REASON_CHARS`].
fn bounded(reason: &str) -> &str {
    match reason.char_indices().nth(MAX_REASON_CHARS) {
        Some((end, _)) => reason.get(..end).unwrap_or(reason),
        None => reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call() -> Message {
        Message::parse(
            r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"transfer","arguments":{"amount":5}}}"#,
        )
        .unwrap()
    }

    fn result_of(body: &str) -> Result<GuardrailResult, String> {
        Answer::parse(body.as_bytes())?.into_result(&call(), "webhook:opa")
    }

    #[test]
    fn reads_the_three_decisions_bare_or_as_opa_answers_them() {
        assert_eq!(
            result_of(r#"{"decision":"allow"}"#),
            Ok(GuardrailResult::Allow)
        );
        assert_eq!(
            result_of(r#"{"result":{"decision":"allow","extra":1}}"#),
            Ok(GuardrailResult::Allow)
        );
        assert_eq!(
            result_of(r#"{"decision":"block","reason":"over budget"}"#),
            Ok(GuardrailResult::block(BLOCKED, "webhook:opa: over budget"))
        );
        assert_eq!(
            result_of(r#"{"result":{"decision":"block"}}"#),
            Ok(GuardrailResult::block(
                BLOCKED,
                "webhook:opa refused the message"
            ))
        );
        let modified = result_of(
            r#"{"decision":"modify","reason":"capped","message":{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"transfer","arguments":{"amount":1}}}}"#,
        )
        .unwrap();
        let GuardrailResult::Modify { message, reason } = modified else {
            panic!("{modified:?}");
        };
        assert_eq!(reason, "webhook:opa: capped");
        assert_eq!(message.arguments().unwrap()["amount"], 1);
    }

    #[test]
    fn refuses_what_is_not_a_decision_or_not_the_same_message() {
        for body in [
            "",
            "null",
            "{}",
            r#"{"decision":"maybe"}"#,
            r#"{"decision":"ALLOW"}"#,
            r#"{"result":true}"#,
            r#"{"decision":"modify"}"#,
            r#"{"decision":"block","reason":7}"#,
        ] {
            assert!(result_of(body).is_err(), "{body}");
        }
        for (message, why) in [
            (
                r#"{"jsonrpc":"2.0","id":8,"method":"tools/call","params":{}}"#,
                "another id",
            ),
            (
                r#"{"jsonrpc":"2.0","id":7,"method":"tools/list"}"#,
                "another kind",
            ),
            (r#"{"jsonrpc":"2.0","id":7,"result":{}}"#, "another kind"),
            (r#"{"id":7}"#, "not a JSON-RPC message"),
        ] {
            let body = format!(r#"{{"decision":"modify","message":{message}}}"#);
            let err = result_of(&body).unwrap_err();
            assert!(err.contains(why), "{message}: {err}");
        }
    }

    #[test]
    fn a_long_reason_is_cut() {
        let long = "é".repeat(5000);
        let body = format!(r#"{{"decision":"block","reason":"{long}"}}"#);
        let GuardrailResult::Block { reason, .. } = result_of(&body).unwrap() else {
            panic!();
        };
        assert_eq!(
            reason.chars().count(),
            "webhook:opa: ".len() + MAX_REASON_CHARS
        );
    }
}
