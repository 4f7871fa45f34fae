//! JSON-RPC 2.0 messages as MCP carries them.
//!
//! A [`Message`] is parsed once at the edge. It keeps the bytes it was parsed from, so a message that no
//! guardrail changed is forwarded byte for byte; a changed message is re-serialised from its JSON object,
//! which keeps every member (known or not) in its original order.
//!
//! A parsed message is held as a [`tape`](self::tape) that [`JsonRef`] reads; its `serde_json` object is
//! built on first use only, so a message that only guardrails read is never copied into one.

mod request_id;
mod rewrite;
mod tape;

use std::sync::OnceLock;

use bytes::Bytes;
use serde_json::{Map, Value};

pub use self::request_id::RequestId;
pub use self::rewrite::JsonEdit;
use self::tape::Tape;
pub use self::tape::{Items, JsonRef, Members, Part};

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
    /// Ends the session-era handshake: the client is ready.
    pub const INITIALIZED: &str = "notifications/initialized";
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
    /// A message carries `method` beside `result` or `error`: a request and an answer at once.
    #[error("a message cannot carry `method` beside `result` or `error`")]
    MethodAndAnswer,
    /// A member of the envelope or of `params` is named twice. Readers disagree on which copy
    /// counts (the last for the gateway's parser, the first for others), so the message could be
    /// judged on one copy and acted on by the other.
    #[error("`{0}` is named twice: a message names each member once")]
    Repeated(String),
}

/// One JSON-RPC 2.0 message: a typed view over its JSON object that keeps every member.
#[derive(Clone, Debug)]
pub struct Message {
    /// The bytes this message was parsed from, while it is unchanged.
    raw: Option<Bytes>,
    /// The message as parsed; `None` for a message built from a `serde_json` object.
    tape: Option<Tape>,
    /// The JSON object: built from the tape on first use, or given (boxed: most messages never need it).
    object: OnceLock<Box<Map<String, Value>>>,
    /// The id, read at once: every response is matched by it.
    id: Option<Value>,
    /// Where the tape holds the members read most.
    slots: Slots,
    kind: MessageKind,
    /// Whether this message differs from what was sent: built from a value, or written anew by a
    /// guardrail (its bytes, if any, are not the sender's).
    modified: bool,
}

/// The tape nodes of a parsed message's top-level `method`, `params`, `result` and `error`.
#[derive(Clone, Copy, Debug, Default)]
struct Slots {
    method: Option<u32>,
    params: Option<u32>,
    result: Option<u32>,
    error: Option<u32>,
}

/// The top-level members that make a message what it is.
#[derive(Default)]
struct Envelope<'a> {
    jsonrpc: Option<JsonRef<'a>>,
    id: Option<JsonRef<'a>>,
    method: Option<JsonRef<'a>>,
    params: Option<JsonRef<'a>>,
    result: Option<JsonRef<'a>>,
    error: Option<JsonRef<'a>>,
}

impl<'a> Envelope<'a> {
    /// Reads the envelope from `members`; the last of a name sent twice counts, as in the JSON object.
    fn read(members: impl Iterator<Item = (&'a str, JsonRef<'a>)>) -> Self {
        let mut envelope = Self::default();
        for (name, value) in members {
            if let Some(slot) = envelope.slot(name) {
                *slot = Some(value);
            }
        }
        envelope
    }

    fn slot(&mut self, name: &str) -> Option<&mut Option<JsonRef<'a>>> {
        match name {
            "jsonrpc" => Some(&mut self.jsonrpc),
            "id" => Some(&mut self.id),
            "method" => Some(&mut self.method),
            "params" => Some(&mut self.params),
            "result" => Some(&mut self.result),
            "error" => Some(&mut self.error),
            _ => None,
        }
    }
}

impl PartialEq for Message {
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind && self.raw == other.raw && self.as_json() == other.as_json()
    }
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
        let tape = Tape::parse_slice(&raw)?;
        Self::parsed_from(tape, raw)
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
        let tape = Tape::parse_str(&text)?;
        Self::parsed_from(tape, Bytes::from(text))
    }

    /// The message `tape` holds, parsed from `raw`: unchanged, so forwarded as those bytes.
    fn parsed_from(tape: Tape, raw: Bytes) -> Result<Self, MessageError> {
        if !tape.root().is_object() {
            return Err(MessageError::NotAnObject);
        }
        // One pass over the members: the envelope to classify, and where the members read most lie.
        let mut slots = Slots::default();
        let mut envelope = Envelope::default();
        for (name, index) in tape.members_of(0) {
            let slot = match name {
                "method" => &mut slots.method,
                "params" => &mut slots.params,
                "result" => &mut slots.result,
                "error" => &mut slots.error,
                _ => &mut None,
            };
            *slot = Some(index);
            if let Some(member) = envelope.slot(name) {
                if member.is_some() {
                    return Err(MessageError::Repeated(name.to_owned()));
                }
                *member = Some(tape.at(index));
            }
        }
        if let Some(params) = slots.params {
            unique_members(&tape, params)?;
        }
        let (kind, id) = classify(envelope)?;
        let id = id.map(JsonRef::to_value);
        Ok(Self {
            raw: Some(raw),
            id,
            slots,
            tape: Some(tape),
            object: OnceLock::new(),
            kind,
            modified: false,
        })
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
        let (kind, id) = classify(Envelope::read(Members::of(&object)))?;
        Ok(Self {
            raw: None,
            tape: None,
            id: id.map(JsonRef::to_value),
            slots: Slots::default(),
            object: OnceLock::from(Box::new(object)),
            kind,
            modified: true,
        })
    }

    /// Request, notification, response or error.
    pub fn kind(&self) -> MessageKind {
        self.kind
    }

    /// The method of a request or notification.
    pub fn method(&self) -> Option<&str> {
        match &self.tape {
            Some(tape) => tape.str_at(self.slots.method?),
            None => member(self.as_json(), "method")?.as_str(),
        }
    }

    /// The id of a request, response or error.
    pub fn id(&self) -> Option<&Value> {
        self.id.as_ref()
    }

    /// The `params` of a request or notification.
    pub fn params(&self) -> Option<&Value> {
        member(self.as_json(), "params")
    }

    /// The `result` of a response.
    pub fn result(&self) -> Option<&Value> {
        member(self.as_json(), "result")
    }

    /// The `error` of an error response.
    pub fn error(&self) -> Option<&Value> {
        member(self.as_json(), "error")
    }

    /// The payload guardrails inspect: `params`, `result` or `error`, whichever the message has.
    pub fn payload(&self) -> Option<&Value> {
        let name = self.payload_member()?;
        member(self.as_json(), name)
    }

    /// The payload as a read-only view: as [`Message::payload`], without building the JSON object of a
    /// parsed message. What a guardrail that only reads should walk.
    pub fn payload_view(&self) -> Option<JsonRef<'_>> {
        match &self.tape {
            Some(tape) => {
                let Slots {
                    params,
                    result,
                    error,
                    ..
                } = self.slots;
                params.or(result).or(error).map(|index| tape.at(index))
            }
            None => self.payload().map(JsonRef::from),
        }
    }

    /// The member that holds the payload (`"params"`, `"result"` or `"error"`).
    pub fn payload_member(&self) -> Option<&'static str> {
        match &self.tape {
            Some(_) => {
                let Slots {
                    params,
                    result,
                    error,
                    ..
                } = self.slots;
                [params, result, error]
                    .into_iter()
                    .zip(PAYLOAD_MEMBERS)
                    .find_map(|(slot, name)| slot.map(|_| name))
            }
            None => PAYLOAD_MEMBERS
                .into_iter()
                .find(|name| member(self.as_json(), name).is_some()),
        }
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
            Some(methods::RESOURCES_READ | methods::RESOURCES_SUBSCRIBE) => self.param_str("uri"),
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

    /// The `params` member `name`, if it is a string, read without building the JSON object.
    pub fn param_str(&self, name: &str) -> Option<&str> {
        match &self.tape {
            Some(tape) => tape.str_at(tape.member_of(self.slots.params?, name)?),
            None => member(member(self.as_json(), "params")?.as_object()?, name)?.as_str(),
        }
    }

    /// The whole JSON object (built on first use for a parsed message).
    pub fn as_json(&self) -> &Map<String, Value> {
        self.object
            .get_or_init(|| Box::new(self.tape.as_ref().map(Tape::to_map).unwrap_or_default()))
    }

    /// A copy of the whole message as a JSON value. For a parsed message whose JSON object was never
    /// needed, the copy is made straight from the parse, and no object is kept.
    pub fn to_value(&self) -> Value {
        match (self.object.get(), &self.tape) {
            (None, Some(tape)) => tape.root().to_value(),
            _ => Value::Object(self.as_json().clone()),
        }
    }

    /// Takes the JSON object out.
    pub fn into_json(mut self) -> Map<String, Value> {
        match self.object.take() {
            Some(object) => *object,
            None => self.tape.as_ref().map(Tape::to_map).unwrap_or_default(),
        }
    }

    /// Whether the message differs from the bytes it was parsed from (or was never parsed).
    pub fn is_modified(&self) -> bool {
        self.modified
    }

    /// The message on the wire: the original bytes when unchanged, else the serialised object.
    pub fn to_bytes(&self) -> Bytes {
        match &self.raw {
            Some(raw) => raw.clone(),
            None => Bytes::from(serialise(self.as_json())),
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
        let mut object = self.as_json().clone();
        edit(&mut object);
        Self::from_value(Value::Object(object))
    }

    /// Replaces the payload member (`params`, `result` or `error`) with `payload`.
    pub fn with_payload(&self, payload: Value) -> Result<Self, MessageError> {
        let member = self.payload_member().unwrap_or("params");
        // Copy every other member; the old payload is not cloned only to be thrown away.
        let current = self.as_json();
        let mut object = Map::with_capacity(current.len() + 1);
        let mut payload = Some(payload);
        for (key, value) in current {
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
            self.param_str(key)
        } else {
            None
        }
    }
}

/// The members that can hold a message's payload, in the order [`Message::payload`] prefers them.
const PAYLOAD_MEMBERS: [&str; 3] = ["params", "result", "error"];

/// The kind of message `envelope` makes, and its id.
/// Refuses an object of `tape` (`params`) that names a member twice.
fn unique_members(tape: &Tape, object: u32) -> Result<(), MessageError> {
    /// Up to this many members, comparing each name with those before it costs less than a set.
    const SMALL: usize = 16;
    let repeated = |name: &str| Err(MessageError::Repeated(format!("params.{name}")));
    let count = tape.members_of(object).count();
    if count <= SMALL {
        for (i, (name, _)) in tape.members_of(object).enumerate() {
            if tape
                .members_of(object)
                .take(i)
                .any(|(seen, _)| seen == name)
            {
                return repeated(name);
            }
        }
        return Ok(());
    }
    let mut seen = std::collections::HashSet::with_capacity_and_hasher(
        count,
        foldhash::fast::RandomState::default(),
    );
    for (name, _) in tape.members_of(object) {
        if !seen.insert(name) {
            return repeated(name);
        }
    }
    Ok(())
}

fn classify(envelope: Envelope<'_>) -> Result<(MessageKind, Option<JsonRef<'_>>), MessageError> {
    let Envelope {
        jsonrpc,
        id,
        method,
        params,
        result,
        error,
    } = envelope;
    if jsonrpc.as_ref().and_then(JsonRef::as_str) != Some("2.0") {
        return Err(MessageError::Version);
    }
    if let Some(params) = &params
        && !(params.is_object() || params.is_array())
    {
        return Err(MessageError::Params);
    }
    let kind = if let Some(method) = method {
        if method.as_str().is_none() {
            return Err(MessageError::Method);
        }
        if result.is_some() || error.is_some() {
            return Err(MessageError::MethodAndAnswer);
        }
        match &id {
            None => MessageKind::Notification,
            Some(id) if is_valid_id(id) => MessageKind::Request,
            Some(_) => return Err(MessageError::Id),
        }
    } else {
        let id_ref = id.as_ref().ok_or(MessageError::Shape)?;
        match (result, error) {
            (Some(_), Some(_)) => return Err(MessageError::ResultAndError),
            (Some(_), None) if is_valid_id(id_ref) => MessageKind::Response,
            // An error answering a request whose id could not be read carries a null id.
            (None, Some(_)) if is_valid_id(id_ref) || id_ref.is_null() => MessageKind::Error,
            (None, None) => return Err(MessageError::Shape),
            _ => return Err(MessageError::Id),
        }
    };
    Ok((kind, id))
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

fn is_valid_id(id: &JsonRef<'_>) -> bool {
    match id {
        JsonRef::String(_) => true,
        JsonRef::Number(n) => n.is_i64() || n.is_u64(),
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
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","result":{}}"#,
                "cannot carry `method` beside `result`",
            ),
            (
                r#"{"jsonrpc":"2.0","method":"notifications/x","error":{}}"#,
                "cannot carry `method` beside `result` or `error`",
            ),
            // A reader that keeps the first copy would run `delete_customer`; the gateway judged `ok`.
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"delete_customer","name":"ok"}}"#,
                "`params.name` is named twice",
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","method":"ping"}"#,
                "`method` is named twice",
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"id":2,"method":"ping"}"#,
                "`id` is named twice",
            ),
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
    fn a_repeated_member_is_found_among_many_params() {
        let mut params: Vec<String> = (0..40).map(|n| format!(r#""p{n}":{n}"#)).collect();
        let text = |params: &[String]| {
            format!(
                r#"{{"jsonrpc":"2.0","id":1,"method":"x","params":{{{}}}}}"#,
                params.join(",")
            )
        };
        assert!(Message::parse(text(&params)).is_ok());
        params.push(r#""p7":"again""#.to_owned());
        let err = Message::parse(text(&params)).unwrap_err().to_string();
        assert!(err.contains("`params.p7` is named twice"), "{err}");
        // Members named twice deeper in are read in every copy by the guardrails, and pass.
        assert!(
            Message::parse(
                r#"{"jsonrpc":"2.0","id":1,"method":"x","params":{"arguments":{"a":1,"a":2}}}"#
            )
            .is_ok()
        );
    }

    #[test]
    fn a_parsed_message_reads_as_serde_json_parses_it() {
        let text =
            r#"{"jsonrpc":"2.0","id":"x","z":1,"result":{"b":[1,2.5,"\u00e9"],"a":null},"z":2}"#;
        let expected: Map<String, Value> = serde_json::from_str(text).unwrap();
        let m = Message::parse(text).unwrap();
        assert_eq!(
            m.to_value(),
            Value::Object(expected.clone()),
            "straight from the parse"
        );
        assert_eq!(m.as_json(), &expected, "built on first use");
        assert_eq!(
            m.to_value(),
            Value::Object(expected.clone()),
            "from the object"
        );
        assert_eq!(m.clone().into_json(), expected);
        assert_eq!(Message::parse(text).unwrap().into_json(), expected);
        assert_eq!(m.id(), Some(&json!("x")));
        assert_eq!(m.payload(), expected.get("result"));
        assert_eq!(m.payload_view().unwrap().to_value(), expected["result"]);
        assert_eq!(m.payload_member(), Some("result"));
        assert!(!m.is_modified(), "reading it changes nothing");
        assert_eq!(m.to_bytes(), text);
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
