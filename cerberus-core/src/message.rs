//! JSON-RPC 2.0 messages as MCP carries them.
//!
//! A [`Message`] is parsed once at the edge. It keeps the bytes it was parsed from, so a message that no
//! guardrail changed is forwarded byte for byte; a changed message is re-serialised from its JSON object,
//! which keeps every member (known or not) in its original order.

use bytes::Bytes;
use serde_json::{Map, Value};

/// MCP method names the gateway treats specially.
pub mod methods {
    /// Calls a tool.
    pub const TOOLS_CALL: &str = "tools/call";
    /// Lists tools (paginated).
    pub const TOOLS_LIST: &str = "tools/list";
    /// Fetches a prompt by name.
    pub const PROMPTS_GET: &str = "prompts/get";
    /// Lists prompts (paginated).
    pub const PROMPTS_LIST: &str = "prompts/list";
    /// Reads a resource by URI.
    pub const RESOURCES_READ: &str = "resources/read";
    /// Lists resources (paginated).
    pub const RESOURCES_LIST: &str = "resources/list";
    /// Lists resource templates (paginated).
    pub const RESOURCES_TEMPLATES_LIST: &str = "resources/templates/list";
    /// Subscribes to a resource's updates.
    pub const RESOURCES_SUBSCRIBE: &str = "resources/subscribe";
    /// Opens the session-era handshake.
    pub const INITIALIZE: &str = "initialize";
}

/// What a JSON-RPC message is, decided by which members it has.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MessageKind {
    /// Has `method` and `id`: expects a response.
    Request,
    /// Has `method` and no `id`.
    Notification,
    /// Has `id` and `result`.
    Response,
    /// Has `id` (possibly null) and `error`.
    Error,
}

/// Why bytes are not a JSON-RPC 2.0 message.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MessageError {
    /// The bytes are not JSON.
    #[error("invalid JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// The JSON is not an object (a batch is an array: see [`Message::parse_batch`]).
    #[error("a JSON-RPC message must be a JSON object")]
    NotAnObject,
    /// `jsonrpc` is missing or not `"2.0"`.
    #[error("`jsonrpc` must be \"2.0\"")]
    Version,
    /// `method` is not a string.
    #[error("`method` must be a string")]
    Method,
    /// `id` is not a string or an integer.
    #[error("`id` must be a string or an integer")]
    Id,
    /// `params` is neither an object nor an array.
    #[error("`params` must be an object or an array")]
    Params,
    /// The members fit none of request, notification, response or error.
    #[error("a message needs `method`, or `id` with `result` or `error`")]
    Shape,
    /// A response carries both `result` and `error`.
    #[error("a response cannot carry both `result` and `error`")]
    ResultAndError,
    /// A batch (JSON array) holds no message.
    #[error("a batch must hold at least one message")]
    EmptyBatch,
}

/// One JSON-RPC 2.0 message: a typed view over its JSON object that keeps every member.
#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    /// The bytes this message was parsed from, while it is unchanged.
    raw: Option<Bytes>,
    object: Map<String, Value>,
    kind: MessageKind,
}

impl Message {
    /// Parses one message from the wire.
    ///
    /// ```
    /// use cerberus_core::{Message, MessageKind};
    /// let m = Message::parse(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hi"}}}"#)?;
    /// assert_eq!(m.kind(), MessageKind::Request);
    /// assert_eq!(m.tool_name(), Some("echo"));
    /// # Ok::<(), cerberus_core::MessageError>(())
    /// ```
    pub fn parse(bytes: impl Into<Bytes>) -> Result<Self, MessageError> {
        let raw: Bytes = bytes.into();
        let value = serde_json::from_slice(&raw)?;
        Self::parsed_from(value, raw)
    }

    /// Parses one message from text: as [`Message::parse`], but the strings inside are not checked
    /// for UTF-8 again (the text is a `String`, so they are), which saves a pass over them.
    ///
    /// ```
    /// use cerberus_core::Message;
    /// let m = Message::parse_text(r#"{"jsonrpc":"2.0","id":1,"result":{}}"#.to_owned())?;
    /// assert_eq!(m.to_bytes(), r#"{"jsonrpc":"2.0","id":1,"result":{}}"#);
    /// # Ok::<(), cerberus_core::MessageError>(())
    /// ```
    pub fn parse_text(text: String) -> Result<Self, MessageError> {
        let value = serde_json::from_str(&text)?;
        Self::parsed_from(value, Bytes::from(text))
    }

    /// The message `value` was parsed from `raw`: unchanged, so forwarded as those bytes.
    fn parsed_from(value: Value, raw: Bytes) -> Result<Self, MessageError> {
        let mut message = Self::from_value(value)?;
        message.raw = Some(raw);
        Ok(message)
    }

    /// Parses a body that is either one message or a batch (a JSON array of messages, allowed by the
    /// 2025-03-26 protocol).
    pub fn parse_batch(bytes: impl Into<Bytes>) -> Result<Vec<Self>, MessageError> {
        let raw: Bytes = bytes.into();
        match raw.iter().find(|b| !b.is_ascii_whitespace()) {
            Some(b'[') => {
                let values: Vec<Value> = serde_json::from_slice(&raw)?;
                if values.is_empty() {
                    return Err(MessageError::EmptyBatch);
                }
                values.into_iter().map(Self::from_value).collect()
            }
            _ => Ok(vec![Self::parse(raw)?]),
        }
    }

    /// Builds a message from a JSON value, checking that it is a JSON-RPC 2.0 message.
    ///
    /// The message counts as changed: [`Message::to_bytes`] serialises it.
    pub fn from_value(value: Value) -> Result<Self, MessageError> {
        let Value::Object(object) = value else {
            return Err(MessageError::NotAnObject);
        };
        let kind = classify(&object)?;
        Ok(Self {
            raw: None,
            object,
            kind,
        })
    }

    /// Request, notification, response or error.
    pub fn kind(&self) -> MessageKind {
        self.kind
    }

    /// The method of a request or notification.
    pub fn method(&self) -> Option<&str> {
        member(&self.object, "method").and_then(Value::as_str)
    }

    /// The id of a request, response or error.
    pub fn id(&self) -> Option<&Value> {
        member(&self.object, "id")
    }

    /// The `params` of a request or notification.
    pub fn params(&self) -> Option<&Value> {
        member(&self.object, "params")
    }

    /// The `result` of a response.
    pub fn result(&self) -> Option<&Value> {
        member(&self.object, "result")
    }

    /// The `error` of an error response.
    pub fn error(&self) -> Option<&Value> {
        member(&self.object, "error")
    }

    /// The payload guardrails inspect: `params`, `result` or `error`, whichever the message has.
    pub fn payload(&self) -> Option<&Value> {
        ["params", "result", "error"]
            .into_iter()
            .find_map(|name| member(&self.object, name))
    }

    /// The member that holds the payload (`"params"`, `"result"` or `"error"`).
    pub fn payload_member(&self) -> Option<&'static str> {
        ["params", "result", "error"]
            .into_iter()
            .find(|name| member(&self.object, name).is_some())
    }

    /// The tool a `tools/call` request names.
    pub fn tool_name(&self) -> Option<&str> {
        self.param_str_for(methods::TOOLS_CALL, "name")
    }

    /// The prompt a `prompts/get` request names.
    pub fn prompt_name(&self) -> Option<&str> {
        self.param_str_for(methods::PROMPTS_GET, "name")
    }

    /// The URI a `resources/read` or `resources/subscribe` request names.
    pub fn resource_uri(&self) -> Option<&str> {
        match self.method() {
            Some(methods::RESOURCES_READ | methods::RESOURCES_SUBSCRIBE) => {
                self.params()?.get("uri")?.as_str()
            }
            _ => None,
        }
    }

    /// What a request acts on: the tool, prompt or resource it names.
    pub fn target(&self) -> Option<&str> {
        self.tool_name()
            .or_else(|| self.prompt_name())
            .or_else(|| self.resource_uri())
    }

    /// The `arguments` of a `tools/call` or `prompts/get` request.
    pub fn arguments(&self) -> Option<&Value> {
        match self.method() {
            Some(methods::TOOLS_CALL | methods::PROMPTS_GET) => self.params()?.get("arguments"),
            _ => None,
        }
    }

    /// The whole JSON object.
    pub fn as_json(&self) -> &Map<String, Value> {
        &self.object
    }

    /// Takes the JSON object out.
    pub fn into_json(self) -> Map<String, Value> {
        self.object
    }

    /// Whether the message differs from the bytes it was parsed from (or was never parsed).
    pub fn is_modified(&self) -> bool {
        self.raw.is_none()
    }

    /// The message on the wire: the original bytes when unchanged, else the serialised object.
    pub fn to_bytes(&self) -> Bytes {
        match &self.raw {
            Some(raw) => raw.clone(),
            None => Bytes::from(serialise(&self.object)),
        }
    }

    /// A copy of this message with `edit` applied to its JSON object, checked again.
    ///
    /// ```
    /// use cerberus_core::Message;
    /// let m = Message::parse(r#"{"jsonrpc":"2.0","id":7,"result":{"x":1}}"#)?;
    /// let changed = m.edited(|json| { json.insert("result".into(), serde_json::json!({"x": 2})); })?;
    /// assert!(changed.is_modified());
    /// assert_eq!(changed.to_bytes(), r#"{"jsonrpc":"2.0","id":7,"result":{"x":2}}"#);
    /// # Ok::<(), cerberus_core::MessageError>(())
    /// ```
    pub fn edited(&self, edit: impl FnOnce(&mut Map<String, Value>)) -> Result<Self, MessageError> {
        let mut object = self.object.clone();
        edit(&mut object);
        Self::from_value(Value::Object(object))
    }

    /// Replaces the payload member (`params`, `result` or `error`) with `payload`.
    pub fn with_payload(&self, payload: Value) -> Result<Self, MessageError> {
        let member = self.payload_member().unwrap_or("params");
        // Copy every other member; the old payload is not cloned only to be thrown away.
        let mut object = Map::with_capacity(self.object.len() + 1);
        let mut payload = Some(payload);
        for (key, value) in &self.object {
            let value = if key == member {
                payload.take().unwrap_or(Value::Null)
            } else {
                value.clone()
            };
            object.insert(key.clone(), value);
        }
        if let Some(payload) = payload {
            object.insert(member.to_owned(), payload);
        }
        Self::from_value(Value::Object(object))
    }

    fn param_str_for(&self, method: &str, key: &str) -> Option<&str> {
        if self.method() == Some(method) {
            member(self.params()?.as_object()?, key)?.as_str()
        } else {
            None
        }
    }
}

fn classify(object: &Map<String, Value>) -> Result<MessageKind, MessageError> {
    if member(object, "jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err(MessageError::Version);
    }
    let id = member(object, "id");
    if let Some(params) = member(object, "params")
        && !(params.is_object() || params.is_array())
    {
        return Err(MessageError::Params);
    }
    if let Some(method) = member(object, "method") {
        if !method.is_string() {
            return Err(MessageError::Method);
        }
        return match id {
            None => Ok(MessageKind::Notification),
            Some(id) if is_valid_id(id) => Ok(MessageKind::Request),
            Some(_) => Err(MessageError::Id),
        };
    }
    let id = id.ok_or(MessageError::Shape)?;
    match (member(object, "result"), member(object, "error")) {
        (Some(_), Some(_)) => Err(MessageError::ResultAndError),
        (Some(_), None) if is_valid_id(id) => Ok(MessageKind::Response),
        // An error answering a request whose id could not be read carries a null id.
        (None, Some(_)) if is_valid_id(id) || id.is_null() => Ok(MessageKind::Error),
        (None, None) => Err(MessageError::Shape),
        _ => Err(MessageError::Id),
    }
}

/// A member of a small object, found by comparing names: a JSON-RPC envelope or `params` has a handful of
/// members, where hashing the name (SipHash, for the map's index) costs more than a few comparisons.
fn member<'a>(object: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    const SMALL: usize = 8;
    if object.len() <= SMALL {
        object
            .iter()
            .find_map(|(key, value)| (key == name).then_some(value))
    } else {
        object.get(name)
    }
}

fn is_valid_id(id: &Value) -> bool {
    match id {
        Value::String(_) => true,
        Value::Number(n) => n.is_i64() || n.is_u64(),
        _ => false,
    }
}

/// Serialises a JSON value; infallible for `serde_json::Value`, whose map keys are always strings.
pub(crate) fn serialise(value: &impl serde::Serialize) -> Vec<u8> {
    #[expect(
        clippy::expect_used,
        reason = "serialising a serde_json value cannot fail: its map keys are strings"
    )]
    serde_json::to_vec(value).expect("a JSON value serialises")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn classifies_every_kind() {
        let cases = [
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#,
                MessageKind::Request,
            ),
            (
                r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
                MessageKind::Notification,
            ),
            (
                r#"{"jsonrpc":"2.0","id":"a","result":{}}"#,
                MessageKind::Response,
            ),
            (
                r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"x"}}"#,
                MessageKind::Error,
            ),
        ];
        for (text, kind) in cases {
            assert_eq!(Message::parse(text).unwrap().kind(), kind, "{text}");
            let from_text = Message::parse_text(text.to_owned()).unwrap();
            assert_eq!(from_text, Message::parse(text).unwrap(), "{text}");
        }
    }

    #[test]
    fn rejects_what_is_not_json_rpc() {
        let cases = [
            ("{", "invalid JSON"),
            ("[]", "a JSON-RPC message must be a JSON object"),
            (r#"{"id":1,"method":"ping"}"#, "`jsonrpc` must be \"2.0\""),
            (r#"{"jsonrpc":"1.0","id":1,"method":"ping"}"#, "`jsonrpc`"),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":3}"#,
                "`method` must be a string",
            ),
            (
                r#"{"jsonrpc":"2.0","id":1.5,"method":"ping"}"#,
                "`id` must be",
            ),
            (
                r#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#,
                "`id` must be",
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"x","params":3}"#,
                "`params`",
            ),
            (r#"{"jsonrpc":"2.0","id":1}"#, "a message needs"),
            (r#"{"jsonrpc":"2.0","result":{}}"#, "a message needs"),
            (r#"{"jsonrpc":"2.0","id":1,"result":{},"error":{}}"#, "both"),
        ];
        for (text, expected) in cases {
            let err = Message::parse(text).unwrap_err().to_string();
            assert!(err.contains(expected), "{text}: {err}");
            let err = Message::parse_text(text.to_owned())
                .unwrap_err()
                .to_string();
            assert!(err.contains(expected), "{text}: {err}");
        }
    }

    #[test]
    fn unchanged_messages_keep_their_bytes() {
        let text = "{ \"jsonrpc\" : \"2.0\", \"id\": 1, \"method\": \"x\", \"params\": {\"b\": 1.10, \"a\": \"\\u00e9\"} }";
        let m = Message::parse(text).unwrap();
        assert!(!m.is_modified());
        assert_eq!(m.to_bytes(), text.as_bytes());
    }

    #[test]
    fn changed_messages_keep_unknown_members_in_order() {
        let m = Message::parse(
            r#"{"jsonrpc":"2.0","id":1,"zeta":true,"result":{"content":[],"_meta":{"k":"v"}},"alpha":[1]}"#,
        )
        .unwrap();
        let changed = m
            .with_payload(json!({"content": [{"type": "text", "text": "x"}], "_meta": {"k": "v"}}))
            .unwrap();
        assert_eq!(
            String::from_utf8(changed.to_bytes().to_vec()).unwrap(),
            r#"{"jsonrpc":"2.0","id":1,"zeta":true,"result":{"content":[{"type":"text","text":"x"}],"_meta":{"k":"v"}},"alpha":[1]}"#
        );
    }

    #[test]
    fn names_the_target_of_a_call() {
        let call = Message::parse(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":{"a":1}}}"#).unwrap();
        assert_eq!(call.tool_name(), Some("t"));
        assert_eq!(call.arguments(), Some(&json!({"a": 1})));
        assert_eq!(call.prompt_name(), None);
        let read = Message::parse(
            r#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///x"}}"#,
        )
        .unwrap();
        assert_eq!(read.resource_uri(), Some("file:///x"));
        let prompt = Message::parse(
            r#"{"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{"name":"p"}}"#,
        )
        .unwrap();
        assert_eq!(prompt.prompt_name(), Some("p"));
    }

    #[test]
    fn parses_batches() {
        let batch = Message::parse_batch(
            r#" [{"jsonrpc":"2.0","id":1,"method":"a"},{"jsonrpc":"2.0","method":"b"}]"#,
        )
        .unwrap();
        assert_eq!(batch.len(), 2);
        assert!(matches!(
            Message::parse_batch("[]"),
            Err(MessageError::EmptyBatch)
        ));
        assert_eq!(
            Message::parse_batch(r#"{"jsonrpc":"2.0","id":1,"method":"a"}"#)
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn large_numbers_survive_a_change() {
        let m = Message::parse(
            r#"{"jsonrpc":"2.0","id":1,"result":{"n":18446744073709551615,"f":0.1}}"#,
        )
        .unwrap();
        let changed = m.edited(|_| {}).unwrap();
        assert_eq!(
            changed.to_bytes(),
            r#"{"jsonrpc":"2.0","id":1,"result":{"n":18446744073709551615,"f":0.1}}"#
        );
    }
}
