//! What the proxy says on the wire when it refuses something: JSON-RPC errors with documented codes.
//!
//! | code | meaning |
//! |---|---|
//! | -32050 | blocked by a guardrail (`data`: `guardrail`, `code`, `reason`) |
//! | -32051 | throttled by a rate limit (`data`: `guardrail`, `retry_after_ms`, `reason`) |
//! | -32052 | the upstream MCP server could not be reached or failed |
//! | -32053 | the upstream MCP server did not answer in time |
//! | -32020 | an `Mcp-Method`, `Mcp-Name` or `Mcp-Param-*` header does not match the body (as the 2026-07-28 spec says) |
//! | -32700, -32600 | parse error, invalid request (JSON-RPC) |

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use cerberus_core::{Decision, Message};
use serde_json::{Value, json};

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
/// The body is not JSON.
pub const PARSE_ERROR: i64 = -32700;
/// The body is JSON but not a JSON-RPC message.
pub const INVALID_REQUEST: i64 = -32600;

/// A JSON-RPC error object for `id`.
pub fn error_value(id: Option<&Value>, code: i64, message: &str, data: Option<Value>) -> Value {
    let mut error = json!({"code": code, "message": message});
    if let (Some(data), Some(object)) = (data, error.as_object_mut()) {
        object.insert("data".into(), data);
    }
    json!({"jsonrpc": "2.0", "id": id.cloned().unwrap_or(Value::Null), "error": error})
}

/// A JSON-RPC error message for `id`.
pub fn error_message(
    id: Option<&Value>,
    code: i64,
    message: &str,
    data: Option<Value>,
) -> Option<Message> {
    Message::from_value(error_value(id, code, message, data)).ok()
}

/// The JSON-RPC error that stands for a refusal, answering `id`; `None` when the decision lets the message on.
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

/// A refusal of the whole HTTP request: the status, and a JSON-RPC error with a null id as the body.
pub fn http_error(status: StatusCode, code: i64, message: &str) -> Response {
    let body = error_value(None, code, message, None).to_string();
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

/// Messages as one JSON body: the message itself when there is one and the client sent no batch, an
/// array otherwise.
pub fn messages_body(messages: &[Message], batch: bool) -> bytes::Bytes {
    match messages {
        [single] if !batch => single.to_bytes(),
        all => {
            let values: Vec<Value> = all
                .iter()
                .map(|m| Value::Object(m.as_json().clone()))
                .collect();
            bytes::Bytes::from(Value::Array(values).to_string())
        }
    }
}

/// A JSON response carrying `messages`.
pub fn json_response(status: StatusCode, messages: &[Message], batch: bool) -> Response {
    let body = messages_body(messages, batch);
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

/// 401 with a `WWW-Authenticate` challenge.
pub fn unauthorised(message: &str) -> Response {
    let mut response = http_error(StatusCode::UNAUTHORIZED, INVALID_REQUEST, message);
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"cerberus\""),
    );
    response
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
