//! The built-in guardrails, and the pieces custom guardrails can reuse.
//!
//! | type | module |
//! |---|---|
//! | `rbac` | [`rbac`] |
//! | `pii_ssn`, `pii_credit_card`, `pii_email`, `pii_phone`, `pii_ip_address` | [`pii`] |
//! | `rate_limit_per_minute`, `rate_limit_per_hour` | [`rate_limit`] |
//! | `content_large_documents`, `content_structured_data`, `content_source_code` | [`content`] |
//! | `rule` (feature `rules`) | [`rule`] |
//! | `tool_pinning` | [`tool_pinning`] |

pub mod content;
pub mod pii;
pub mod rate_limit;
pub mod rbac;
#[cfg(feature = "rules")]
pub mod rule;
pub mod tool_pinning;
pub mod wildcard;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use std::borrow::Cow;

use crate::guardrail::{Direction, GuardrailResult};
use crate::policy::PolicyLevel;
use crate::trace::{DecisionKind, Trace, TraceEntry};

/// How deep guardrails follow JSON documents held inside strings (a tool that returns its JSON
/// answer as text, which itself holds JSON as text, …).
pub(crate) const EMBEDDED_JSON_DEPTH: u8 = 3;

/// The JSON object or array `text` holds, if it holds one (blanks around it allowed).
///
/// Most framed texts are not JSON (`[REDACTED:email]`, `[1/3]`, `{name}`): the byte after the opening
/// bracket rules them out before any parse, which would build an error for each.
pub(crate) fn embedded_json(text: &str) -> Option<Value> {
    let trimmed = text.trim_ascii();
    let bytes = trimmed.as_bytes();
    let (Some(&open), Some(&close)) = (bytes.first(), bytes.last()) else {
        return None;
    };
    let next = bytes
        .get(1..)
        .and_then(|rest| rest.iter().find(|b| !b.is_ascii_whitespace()));
    let may_be_json = match (open, close) {
        (b'{', b'}') => matches!(next, Some(b'"' | b'}')),
        (b'[', b']') => matches!(
            next,
            Some(b'"' | b'{' | b'[' | b']' | b'-' | b'0'..=b'9' | b't' | b'f' | b'n')
        ),
        _ => false,
    };
    if !may_be_json {
        return None;
    }
    serde_json::from_str::<Value>(trimmed)
        .ok()
        .filter(|v| v.is_object() || v.is_array())
}

/// The `direction` setting: which messages a guardrail inspects.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Directions {
    /// Messages from the client to the server.
    Request,
    /// Messages from the server to the client.
    Response,
    /// Both.
    #[default]
    Both,
}

impl Directions {
    /// Whether a message travelling in `direction` is inspected.
    pub fn includes(self, direction: Direction) -> bool {
        match self {
            Self::Both => true,
            Self::Request => direction == Direction::Request,
            Self::Response => direction == Direction::Response,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_json_is_an_object_or_array_in_a_string() {
        for (text, holds) in [
            (r#"{"a": 1}"#, true),
            ("  [1, 2]\n", true),
            ("[ ]", true),
            ("{ }", true),
            (r#"[{"a": [true, null, -1]}]"#, true),
            ("[REDACTED:email]", false),
            ("[1/3]", false),
            ("{name}", false),
            ("{", false),
            ("", false),
            ("42", false),
            (r#""text""#, false),
            ("[1, 2", false),
        ] {
            assert_eq!(embedded_json(text).is_some(), holds, "{text:?}");
        }
    }
}

/// The `on_error` setting: what a guardrail does when it cannot decide (a rule that cannot be run on
/// a message, a decision service that does not answer).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnError {
    /// Refuse the message (fail closed).
    #[default]
    Block,
    /// Let it through, noting the failure in the trace.
    Allow,
}

impl OnError {
    /// Settles a failure described by `reason`: under `Block` a block with `code`, under `Allow`
    /// the message let through; either way recorded in `trace` under `label` at `level`.
    pub fn settle(
        self,
        code: &str,
        reason: String,
        label: impl Into<Cow<'static, str>>,
        level: PolicyLevel,
        trace: &mut Trace,
    ) -> GuardrailResult {
        match self {
            Self::Block => {
                let result = GuardrailResult::block(code, reason);
                trace.record(label, level, &result);
                result
            }
            Self::Allow => {
                trace.push(
                    TraceEntry::new(label, level, DecisionKind::Allow)
                        .with_reason(format!("{reason}; on_error allows the message")),
                );
                GuardrailResult::Allow
            }
        }
    }
}
