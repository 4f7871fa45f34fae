//! What the proxy says on the wire when it refuses something: JSON-RPC errors with the codes of
//! [`cerberus_core::refusal`], as HTTP responses.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use cerberus_core::Message;
pub use cerberus_core::refusal::{
    BLOCKED, HEADER_MISMATCH, INVALID_REQUEST, PARSE_ERROR, THROTTLED, UPSTREAM_TIMEOUT,
    UPSTREAM_UNAVAILABLE, error_message, error_value, refusal,
};
use serde_json::Value;

/// Whether `headers` say the body is of the `media` type (parameters and case aside).
pub fn is_media(headers: &axum::http::HeaderMap, media: &str) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| essence(v).eq_ignore_ascii_case(media))
}

/// `text` before and after the first `delimiter`, an ASCII byte.
///
/// The short header values and field lines the proxy splits on every call are mostly a few bytes
/// long: a plain scan finds the delimiter sooner than `str::split_once`'s searcher gets started.
pub(crate) fn split_once_ascii(text: &str, delimiter: u8) -> Option<(&str, &str)> {
    let at = text.bytes().position(|b| b == delimiter)?;
    // An ASCII byte always sits on a character boundary.
    Some((text.get(..at)?, text.get(at + 1..)?))
}

/// A media type without its parameters, trimmed: `application/json` of `application/json; charset=utf-8`.
pub(crate) fn essence(media: &str) -> &str {
    split_once_ascii(media, b';')
        .map_or(media, |(essence, _)| essence)
        .trim()
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
            let values: Vec<Value> = all.iter().map(Message::to_value).collect();
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
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn an_essence_drops_parameters_and_spaces() {
        assert_eq!(
            essence(" Application/JSON ; charset=utf-8"),
            "Application/JSON"
        );
        assert_eq!(essence("text/event-stream"), "text/event-stream");
        assert_eq!(essence(""), "");
    }

    proptest! {
        #[test]
        fn a_byte_split_agrees_with_the_standard_one(text in "[a-cé,;: ]{0,24}") {
            for delimiter in [b',', b';', b':', b' '] {
                prop_assert_eq!(
                    split_once_ascii(&text, delimiter),
                    text.split_once(char::from(delimiter))
                );
            }
        }
    }
}
