//! What of a message the audit log keeps: nothing by default, or the message after the pipeline with
//! every kind of personal data redacted, whatever the policy said. Never the raw message.
//!
//! The fields every record keeps whatever the mode (the JSON-RPC id, method, target and the trace's
//! reasons) come from the client or the upstream too, so they are redacted the same way before an
//! event is stored: see [`PayloadRedactor::redact_text`].

use std::sync::LazyLock;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::Message;
use crate::guardrail::Direction;
use crate::guardrails::pii::PiiGuardrail;

/// Which payloads audit records keep (`audit.payloads` in the configuration).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PayloadMode {
    /// No payload: the record describes the message (method, target, sizes, trace) but holds none of
    /// it.
    #[default]
    None,
    /// The message as the gateway passed it on (or, when refused, as far as the pipeline got), with
    /// every `pii_*` guardrail applied in redact mode, even those the policy does not name.
    Redacted,
}

impl std::str::FromStr for PayloadMode {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "none" => Ok(Self::None),
            "redacted" => Ok(Self::Redacted),
            other => Err(format!(
                "`{other}` is not a payload mode: use `none` or `redacted`"
            )),
        }
    }
}

/// Makes the payloads that [`PayloadMode::Redacted`] stores.
#[derive(Clone, Debug)]
pub struct PayloadRedactor {
    pii: PiiGuardrail,
}

impl Default for PayloadRedactor {
    fn default() -> Self {
        Self {
            pii: PiiGuardrail::redact_everything(),
        }
    }
}

impl PayloadRedactor {
    /// A redactor for every kind of personal data the built-in guardrails know.
    pub fn new() -> Self {
        Self::default()
    }

    /// The redactor `mode` calls for: `None` when payloads are not kept.
    pub fn for_mode(mode: PayloadMode) -> Option<Self> {
        match mode {
            PayloadMode::None => None,
            PayloadMode::Redacted => Some(Self::new()),
        }
    }

    /// The whole of `message` (its id, method and payload alike), travelling `direction`, with every
    /// piece of personal data replaced by `[REDACTED:kind]`.
    pub fn redact(&self, direction: Direction, message: &Message) -> Value {
        let whole = message.to_value();
        self.pii.redact(direction, &whole).unwrap_or(whole)
    }

    /// Replaces every piece of personal data in `text` with `[REDACTED:kind]`, in place; says whether
    /// anything was replaced. A text with none is neither copied nor changed.
    pub fn redact_text(&self, text: &mut String) -> bool {
        let value = Value::String(std::mem::take(text));
        match self.pii.redact(Direction::Request, &value) {
            Some(Value::String(redacted)) => {
                *text = redacted;
                true
            }
            _ => {
                if let Value::String(original) = value {
                    *text = original;
                }
                false
            }
        }
    }

    /// The redactor every audit event's own fields go through: built on first use, then shared.
    pub(crate) fn for_fields() -> &'static Self {
        static FIELDS: LazyLock<PayloadRedactor> = LazyLock::new(PayloadRedactor::new);
        &FIELDS
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly")]

    use super::*;

    #[test]
    fn every_kind_is_redacted_in_both_directions_and_the_rest_is_kept() {
        let redactor = PayloadRedactor::new();
        let request = Message::parse(
            r#"{"jsonrpc":"2.0","id":"jane@example.com","method":"tools/call","params":{"name":"send","arguments":{
                "to":"jane@example.com","ssn":"536-22-1234","card":"4111 1111 1111 1111",
                "phone":"+1 (555) 234-5678","ip":"203.0.113.9","note":"kept as it is"}}}"#,
        )
        .unwrap();
        let response = Message::parse(
            r#"{"jsonrpc":"2.0","id":3,"result":{"content":[{"type":"text","text":"ssn 536-22-1234"}]}}"#,
        )
        .unwrap();
        let stored = format!(
            "{} {}",
            redactor.redact(Direction::Request, &request),
            redactor.redact(Direction::Response, &response)
        );
        for raw in [
            "jane@example.com",
            "536-22-1234",
            "4111 1111 1111 1111",
            "555) 234-5678",
            "203.0.113.9",
        ] {
            assert!(!stored.contains(raw), "{raw} kept in {stored}");
        }
        for kept in ["kept as it is", "tools/call", "\"send\"", "[REDACTED:"] {
            assert!(stored.contains(kept), "{kept} missing from {stored}");
        }
    }

    #[test]
    fn texts_are_redacted_in_place_and_clean_ones_kept() {
        let redactor = PayloadRedactor::new();
        let mut text = "tool `mail jane.doe@example.com` from 203.0.113.9".to_owned();
        assert!(redactor.redact_text(&mut text));
        assert_eq!(
            text,
            "tool `mail [REDACTED:EMAIL]` from [REDACTED:IP_ADDRESS]"
        );
        let mut clean = "tools/call".to_owned();
        assert!(!redactor.redact_text(&mut clean));
        assert_eq!(clean, "tools/call");
        let mut empty = String::new();
        assert!(!redactor.redact_text(&mut empty));
        assert_eq!(empty, "");
    }

    #[test]
    fn payloads_are_kept_only_when_asked_for() {
        assert!(PayloadRedactor::for_mode(PayloadMode::default()).is_none());
        assert!(PayloadRedactor::for_mode(PayloadMode::Redacted).is_some());
        let mode: PayloadMode = serde_json::from_str("\"redacted\"").unwrap();
        assert_eq!(mode, PayloadMode::Redacted);
        assert!(serde_json::from_str::<PayloadMode>("\"raw\"").is_err());
    }
}
