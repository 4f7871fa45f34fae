//! What a refused message becomes on the wire: a JSON-RPC error with a documented code.
//!
//! | code | meaning |
//! |---|---|
//! | -32050 | blocked by a guardrail (`data`: `guardrail`, `code`, `reason`) |
//! | -32051 | throttled by a rate limit (`data`: `guardrail`, `retry_after_ms`, `reason`) |
//! | -32052 | the upstream MCP server could not be reached or failed |
//! | -32053 | the upstream MCP server did not answer in time |
//! | -32020 | an `Mcp-Method`, `Mcp-Name` or `Mcp-Param-*` header does not match the body |
//! | -32700, -32600 | parse error, invalid request (JSON-RPC) |
//!
//! ```
//! use cerberus_core::{Decision, refusal};
//!
//! let blocked = Decision::Block { guardrail: "rbac".into(), code: "rbac_denied".into(), reason: "not allowed".into() };
//! let error = refusal::refusal(Some(&serde_json::json!(7)), &blocked).unwrap();
//! assert_eq!(error.error().unwrap()["code"], refusal::BLOCKED);
//! assert_eq!(error.error().unwrap()["data"]["guardrail"], "rbac");
//! ```

use serde_json::{Value, json};

use crate::message::Message;
use crate::pipeline::Decision;

/// Blocked by a guardrail.
pub const BLOCKED: i64 = -32050;
/// Throttled by a rate limit.
pub const THROTTLED: i64 = -32051;
/// The upstream could not be reached or failed.
pub const UPSTREAM_UNAVAILABLE: i64 = -32052;
/// The upstream did not answer in time.
pub const UPSTREAM_TIMEOUT: i64 = -32053;
/// An intermediary header does not match the body.
pub const HEADER_MISMATCH: i64 = -32020;
/// The input is not JSON.
pub const PARSE_ERROR: i64 = -32700;
/// The input is JSON but not a JSON-RPC message.
pub const INVALID_REQUEST: i64 = -32600;

/// A JSON-RPC error object answering `id` (null when there is none).
pub fn error_value(id: Option<&Value>, code: i64, message: &str, data: Option<Value>) -> Value {
    let mut error = json!({"code": code, "message": message});
    if let (Some(data), Some(object)) = (data, error.as_object_mut()) {
        object.insert("data".into(), data);
    }
    json!({"jsonrpc": "2.0", "id": id.cloned().unwrap_or(Value::Null), "error": error})
}

/// A JSON-RPC error message answering `id`.
pub fn error_message(
    id: Option<&Value>,
    code: i64,
    message: &str,
    data: Option<Value>,
) -> Option<Message> {
    Message::from_value(error_value(id, code, message, data)).ok()
}

/// The JSON-RPC error that stands for a refusal, answering `id`; `None` when the decision lets the
/// message on.
pub fn refusal(id: Option<&Value>, decision: &Decision) -> Option<Message> {
    match decision {
        Decision::Allow | Decision::Modify => None,
        Decision::Block {
            guardrail,
            code,
            reason,
        } => error_message(
            id,
            BLOCKED,
            &format!("blocked by guardrail {guardrail}: {reason}"),
            Some(
                json!({"type": "blocked", "guardrail": guardrail, "code": code, "reason": reason}),
            ),
        ),
        // A hold nobody settled: the door had no way to ask.
        Decision::Hold {
            guardrail,
            code,
            reason,
            ..
        } => error_message(
            id,
            BLOCKED,
            &format!("blocked by guardrail {guardrail}: {reason}, and there is no one to ask"),
            Some(
                json!({"type": "blocked", "guardrail": guardrail, "code": code,
                "reason": format!("{reason}, and there is no one to ask")}),
            ),
        ),
        Decision::Throttle {
            guardrail,
            retry_after,
            reason,
        } => {
            let retry_after_ms = u64::try_from(retry_after.as_millis())
                .unwrap_or(u64::MAX)
                .max(1);
            error_message(
                id,
                THROTTLED,
                &format!("throttled by guardrail {guardrail}: {reason}"),
                Some(
                    json!({"type": "throttled", "guardrail": guardrail, "retry_after_ms": retry_after_ms, "reason": reason}),
                ),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn refusals_carry_the_guardrail_and_retry_hint() {
        let id = json!(7);
        let blocked = Decision::Block {
            guardrail: "rbac".into(),
            code: "rbac_denied".into(),
            reason: "no".into(),
        };
        let error = refusal(Some(&id), &blocked).unwrap();
        assert_eq!(
            Value::Object(error.into_json()),
            json!({"jsonrpc": "2.0", "id": 7, "error": {"code": BLOCKED, "message": "blocked by guardrail rbac: no",
                "data": {"type": "blocked", "guardrail": "rbac", "code": "rbac_denied", "reason": "no"}}})
        );
        let throttled = Decision::Throttle {
            guardrail: "rate_limit_per_minute".into(),
            retry_after: Duration::from_millis(1500),
            reason: "slow".into(),
        };
        let error = refusal(Some(&id), &throttled).unwrap();
        assert_eq!(error.error().unwrap()["data"]["retry_after_ms"], 1500);
        assert!(refusal(Some(&id), &Decision::Allow).is_none());
    }
}
