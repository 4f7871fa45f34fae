//! What of a message the audit log keeps: nothing by default, or the message after the pipeline with
//! every kind of personal data redacted, whatever the policy said. Never the raw message.
//!
//! A kept payload is bounded ([`PayloadRedactor::with_max_bytes`], 64 KiB by default): a larger one
//! is stored as its first bytes and a summary of the whole, so that a tenant whose upstream answers
//! with tens of megabytes fills neither the audit queue nor the database, nor an export.
//!
//! The fields every record keeps whatever the mode (the JSON-RPC id, method, target and the trace's
//! reasons) come from the client or the upstream too, so they are redacted the same way before an
//! event is stored: see [`PayloadRedactor::redact_text`].

use std::io::Write;
use std::sync::LazyLock;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

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

/// The most bytes of a payload an audit record keeps by default: 64 KiB of its JSON.
pub const DEFAULT_MAX_PAYLOAD_BYTES: usize = 64 * 1024;

/// Makes the payloads that [`PayloadMode::Redacted`] stores.
#[derive(Clone, Debug)]
pub struct PayloadRedactor {
    pii: PiiGuardrail,
    max_bytes: usize,
}

impl Default for PayloadRedactor {
    fn default() -> Self {
        Self {
            pii: PiiGuardrail::redact_everything(),
            max_bytes: DEFAULT_MAX_PAYLOAD_BYTES,
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

    /// The same, keeping at most `max_bytes` of a payload's JSON (see [`redact`](Self::redact)).
    pub fn with_max_bytes(mut self, max_bytes: usize) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    /// The most bytes of a payload's JSON a record keeps.
    pub fn max_bytes(&self) -> usize {
        self.max_bytes
    }

    /// The whole of `message` (its id, method and payload alike), travelling `direction`, with every
    /// piece of personal data replaced by `[REDACTED:kind]`.
    ///
    /// When that JSON is longer than [`max_bytes`](Self::max_bytes), what is kept instead is
    /// `{"truncated": true, "bytes": N, "sha256": "…", "head": "…"}`: the length and SHA-256 of the
    /// whole redacted JSON, and its first bytes (at most `max_bytes`, cut at a character) as a string.
    /// The cut is made after redaction, so it never splits a piece of personal data into one the
    /// scanner would no longer see.
    pub fn redact(&self, direction: Direction, message: &Message) -> Value {
        let whole = message.to_value();
        let redacted = self.pii.redact(direction, &whole).unwrap_or(whole);
        self.bounded(redacted)
    }

    /// `value` (a message's arguments, say), travelling `direction`, redacted and bounded as
    /// [`redact`](Self::redact) does a whole message.
    pub fn redact_value(&self, direction: Direction, value: &Value) -> Value {
        let redacted = self
            .pii
            .redact(direction, value)
            .unwrap_or_else(|| value.clone());
        self.bounded(redacted)
    }

    /// `value`, or its summary when its JSON is longer than the bound.
    fn bounded(&self, value: Value) -> Value {
        let mut summary = Summary::new(self.max_bytes);
        if serde_json::to_writer(&mut summary, &value).is_err() {
            return value;
        }
        let Some((bytes, sha256, head)) = summary.finish() else {
            return value;
        };
        drop(value);
        json!({"truncated": true, "bytes": bytes, "sha256": sha256, "head": head})
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

/// Counts the bytes written to it and keeps the first `max` of them; once past `max`, hashes them all.
struct Summary {
    max: usize,
    head: Vec<u8>,
    written: usize,
    /// Started when the bytes first go past `max`: a payload within the bound is never hashed.
    hash: Option<Sha256>,
}

impl Summary {
    fn new(max: usize) -> Self {
        Self {
            max,
            head: Vec::new(),
            written: 0,
            hash: None,
        }
    }

    /// The length, the SHA-256 in hex and the head (cut at a character) of everything written, if it
    /// went past `max`; `None` if it did not.
    fn finish(self) -> Option<(usize, String, String)> {
        let digest = self.hash?.finalize();
        let hex: String = digest.iter().map(|byte| format!("{byte:02x}")).collect();
        let head = match String::from_utf8(self.head) {
            Ok(head) => head,
            Err(error) => {
                let valid = error.utf8_error().valid_up_to();
                let mut bytes = error.into_bytes();
                bytes.truncate(valid);
                String::from_utf8(bytes).unwrap_or_default()
            }
        };
        Some((self.written, hex, head))
    }
}

impl Write for Summary {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.written += bytes.len();
        let room = self.max.saturating_sub(self.head.len());
        self.head
            .extend_from_slice(bytes.get(..room.min(bytes.len())).unwrap_or_default());
        match &mut self.hash {
            Some(hash) => hash.update(bytes),
            None if self.written > self.max => {
                let mut hash = Sha256::new();
                hash.update(&self.head);
                hash.update(bytes.get(room.min(bytes.len())..).unwrap_or_default());
                self.hash = Some(hash);
            }
            None => {}
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
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
    fn a_payload_past_the_bound_keeps_its_head_length_and_hash() {
        let text = format!("jane@example.com {}", "é".repeat(40_000));
        let message = Message::parse(
            serde_json::to_vec(&json!({"jsonrpc": "2.0", "id": 1, "result": {"text": text}}))
                .unwrap(),
        )
        .unwrap();
        let redactor = PayloadRedactor::new().with_max_bytes(1000);
        let kept = redactor.redact(Direction::Response, &message);
        let whole = serde_json::to_string(
            &PayloadRedactor::new()
                .with_max_bytes(usize::MAX)
                .redact(Direction::Response, &message),
        )
        .unwrap();
        assert_eq!(kept["truncated"], true);
        assert_eq!(kept["bytes"], whole.len());
        let digest = Sha256::digest(whole.as_bytes());
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(kept["sha256"], hex);
        let head = kept["head"].as_str().unwrap();
        assert!(
            whole.starts_with(head) && (999..=1000).contains(&head.len()),
            "{}",
            head.len()
        );
        assert!(head.contains("[REDACTED:EMAIL]") && !head.contains("jane@"));
        assert!(serde_json::to_string(&kept).unwrap().len() < 1200);

        // Within the bound, the payload is kept whole.
        let small = Message::parse(r#"{"jsonrpc":"2.0","id":1,"result":{"text":"hi"}}"#).unwrap();
        assert_eq!(
            redactor.redact(Direction::Response, &small),
            json!({"jsonrpc": "2.0", "id": 1, "result": {"text": "hi"}})
        );
        assert_eq!(
            PayloadRedactor::new().max_bytes(),
            DEFAULT_MAX_PAYLOAD_BYTES
        );
    }

    #[test]
    fn the_bound_is_exact_at_its_edge() {
        let message = Message::parse(r#"{"jsonrpc":"2.0","id":1,"result":{}}"#).unwrap();
        let length = r#"{"id":1,"jsonrpc":"2.0","result":{}}"#.len();
        let at = PayloadRedactor::new().with_max_bytes(length);
        assert!(
            at.redact(Direction::Response, &message)
                .get("truncated")
                .is_none()
        );
        let under = PayloadRedactor::new().with_max_bytes(length - 1);
        assert_eq!(under.redact(Direction::Response, &message)["bytes"], length);
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
