//! Writing a message again with a few of its payload's strings replaced, without building a JSON value.
//!
//! A guardrail that redacts a few values of a large result reads the payload in place (a [`JsonRef`])
//! and notes what to replace as [`JsonEdit`]s. The message's bytes are then written in one pass, every
//! string escaped as `serde_json` escapes it, and the edits put in their places. Building a
//! `serde_json::Value` of the whole payload instead (a map, and a string per member, for every item)
//! cost several times the scan on a result of many short strings.

use std::borrow::Cow;
use std::collections::HashSet;

use bytes::Bytes;
use serde_json::Number;

use super::{JsonRef, Members, Message, MessageError};

/// A replacement for one string, member name or number of a JSON document.
///
/// `place` counts the strings, member names and numbers of the document in document order (a name
/// before its value), from 0: what [`JsonRef::walk`] visits, leaving out arrays. The replacement is
/// written as a JSON string; a number replaced becomes one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JsonEdit {
    /// Which string, name or number, counted in document order.
    pub place: usize,
    /// What goes there instead.
    pub text: String,
}

impl Message {
    /// A copy of this message with `edits` made to its payload (`params`, `result` or `error`): the
    /// other members as they were, the payload written again with its strings replaced where the edits
    /// say. When every edit replaces a string a parsed message holds without escapes, its bytes are
    /// kept as they were around those strings, spacing included; otherwise the message is written
    /// compactly, as `serde_json` writes it. `edits` must come in increasing order of place; an edit out of order, or past the last
    /// place, is not made. A replaced member name that another name of its object already has gets a
    /// `#2`, `#3`, … suffix, so that no value is lost.
    ///
    /// ```
    /// use cerberus_core::{JsonEdit, Message};
    /// let m = Message::parse(r#"{"jsonrpc":"2.0","id":1,"result":{"text":"call 555-0100","n":4}}"#)?;
    /// // Places: 0 the name "text", 1 its value, 2 the name "n", 3 the number 4.
    /// let edited = m.with_payload_edits(&[JsonEdit { place: 1, text: "call [PHONE]".into() }])?;
    /// assert!(edited.is_modified());
    /// assert_eq!(edited.to_bytes(), r#"{"jsonrpc":"2.0","id":1,"result":{"text":"call [PHONE]","n":4}}"#);
    /// # Ok::<(), cerberus_core::MessageError>(())
    /// ```
    pub fn with_payload_edits(&self, edits: &[JsonEdit]) -> Result<Self, MessageError> {
        // A parsed message is written from its tape along with the tape of the result: no parse.
        // Where the edits replace plain strings, its bytes are copied around them.
        let slots = self.slots;
        let payload = slots.params.or(slots.result).or(slots.error);
        if let (Some(tape), Some(payload)) = (&self.tape, payload)
            && let Some((tape, bytes)) = self
                .raw
                .as_ref()
                .and_then(|raw| tape.spliced(raw, payload, edits))
                .or_else(|| tape.edited(payload, edits))
        {
            let mut message = Self::parsed_from(tape, Bytes::from(bytes))?;
            message.modified = true;
            return Ok(message);
        }
        let payload_member = self.payload_member();
        let mut writer = Writer::new(edits, self.to_bytes().len() + 64);
        let root = match &self.tape {
            Some(tape) => tape.root(),
            None => JsonRef::Object(Members::of(self.as_json())),
        };
        let JsonRef::Object(root) = root else {
            return Err(MessageError::NotAnObject);
        };
        writer.out.push(b'{');
        for (i, (name, value)) in root.enumerate() {
            if i > 0 {
                writer.out.push(b',');
            }
            escape(&mut writer.out, name);
            writer.out.push(b':');
            if Some(name) == payload_member {
                writer.value(value);
            } else {
                write_plain(&mut writer.out, value);
            }
        }
        writer.out.push(b'}');
        let mut message = Self::parse(writer.out)?;
        message.modified = true;
        Ok(message)
    }
}

impl JsonRef<'_> {
    /// Appends this value to `out` as JSON, with `edits` made (see [`JsonEdit`]; places count from
    /// this value): the redacted copy of a document held inside a string, for example.
    ///
    /// ```
    /// use cerberus_core::{JsonEdit, JsonRef};
    /// let value = serde_json::json!({"to": ["a@example.com", 7]});
    /// let mut out = Vec::new();
    /// JsonRef::from(&value).write_edited(&[JsonEdit { place: 1, text: "[EMAIL]".into() }], &mut out);
    /// assert_eq!(out, br#"{"to":["[EMAIL]",7]}"#);
    /// ```
    pub fn write_edited(self, edits: &[JsonEdit], out: &mut Vec<u8>) {
        let mut writer = Writer::new(edits, 0);
        writer.out = std::mem::take(out);
        writer.value(self);
        *out = writer.out;
    }
}

/// Walks the places of a document in order and hands out the edit for each.
pub(super) struct Places<'e> {
    edits: std::iter::Peekable<std::slice::Iter<'e, JsonEdit>>,
    /// The place of the next string, name or number.
    place: usize,
}

impl<'e> Places<'e> {
    pub(super) fn new(edits: &'e [JsonEdit]) -> Self {
        Self {
            edits: edits.iter().peekable(),
            place: 0,
        }
    }

    /// The replacement at the current place, if any; moves to the next place.
    pub(super) fn take(&mut self) -> Option<&'e str> {
        let place = self.place;
        self.place += 1;
        // An edit left behind (out of order) is never made, but must not stop the later ones.
        while self.edits.next_if(|edit| edit.place < place).is_some() {}
        self.edits
            .next_if(|edit| edit.place == place)
            .map(|edit| edit.text.as_str())
    }
}

/// Writes JSON, counting places and making the edits at theirs.
struct Writer<'e> {
    out: Vec<u8>,
    places: Places<'e>,
}

impl<'e> Writer<'e> {
    fn new(edits: &'e [JsonEdit], capacity: usize) -> Self {
        Self {
            out: Vec::with_capacity(capacity),
            places: Places::new(edits),
        }
    }

    /// The replacement at the current place, if any; moves to the next place.
    fn take(&mut self) -> Option<&'e str> {
        self.places.take()
    }

    fn value(&mut self, json: JsonRef<'_>) {
        match json {
            JsonRef::Null => self.out.extend_from_slice(b"null"),
            JsonRef::Bool(b) => self
                .out
                .extend_from_slice(if b { b"true" } else { b"false" }),
            JsonRef::Number(n) => match self.take() {
                Some(text) => escape(&mut self.out, text),
                None => number(&mut self.out, n),
            },
            JsonRef::String(s) => self.string(s),
            JsonRef::Array(items) => {
                self.out.push(b'[');
                for (i, item) in items.enumerate() {
                    if i > 0 {
                        self.out.push(b',');
                    }
                    self.value(item);
                }
                self.out.push(b']');
            }
            JsonRef::Object(members) => self.object(members),
        }
    }

    fn string(&mut self, s: &str) {
        let text = self.take().unwrap_or(s);
        escape(&mut self.out, text);
    }

    fn object<'a>(&mut self, members: Members<'a>) {
        self.out.push(b'{');
        let all = members.clone();
        // The names written so far in this object, kept from its first replaced name on (rare).
        let mut written: Option<HashSet<Cow<'a, str>>> = None;
        for (i, (name, value)) in members.enumerate() {
            if i > 0 {
                self.out.push(b',');
            }
            match self.take() {
                None => {
                    escape(&mut self.out, name);
                    if let Some(written) = written.as_mut() {
                        written.insert(Cow::Borrowed(name));
                    }
                }
                Some(text) => {
                    let written = written.get_or_insert_with(|| {
                        all.clone().take(i).map(|(n, _)| Cow::Borrowed(n)).collect()
                    });
                    let mut name = text.to_owned();
                    let mut n = 2;
                    while written.contains(name.as_str()) {
                        name = format!("{text}#{n}");
                        n += 1;
                    }
                    escape(&mut self.out, &name);
                    written.insert(Cow::Owned(name));
                }
            }
            self.out.push(b':');
            self.value(value);
        }
        self.out.push(b'}');
    }
}

/// `json` written as it is.
fn write_plain(out: &mut Vec<u8>, json: JsonRef<'_>) {
    json.write_edited(&[], out);
}

/// `text` as a JSON string, escaped as `serde_json` escapes it.
pub(super) fn escape(out: &mut Vec<u8>, text: &str) {
    // Most strings hold nothing to escape, and are copied whole between quotes.
    if !needs_escape(text.as_bytes()) {
        out.reserve(text.len() + 2);
        out.push(b'"');
        out.extend_from_slice(text.as_bytes());
        out.push(b'"');
        return;
    }
    // Writing to a vector cannot fail, and a string always serialises.
    let _ = serde_json::to_writer(&mut *out, text);
}

/// Whether `bytes` hold what `serde_json` escapes: a control character, a quote or a backslash.
///
/// Eight bytes at a time: per byte b, `b - k` borrows into its high bit when `b < k`, and `!b` keeps
/// that bit only for ASCII bytes; a quote or backslash is found as a zero byte after an exclusive or.
fn needs_escape(bytes: &[u8]) -> bool {
    const ONES: u64 = u64::from_ne_bytes([1; 8]);
    const HIGH: u64 = ONES * 0x80;
    let below = |word: u64, k: u8| word.wrapping_sub(ONES * u64::from(k)) & !word;
    let (chunks, rest) = bytes.as_chunks::<8>();
    let any_in_chunks = chunks.iter().any(|chunk| {
        let word = u64::from_le_bytes(*chunk);
        let control = below(word, 0x20);
        let quote = below(word ^ (ONES * u64::from(b'"')), 1);
        let backslash = below(word ^ (ONES * u64::from(b'\\')), 1);
        (control | quote | backslash) & HIGH != 0
    });
    any_in_chunks || rest.iter().any(|&b| b < 0x20 || b == b'"' || b == b'\\')
}

fn number(out: &mut Vec<u8>, n: &Number) {
    let _ = serde_json::to_writer(&mut *out, n);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::{Value, json};

    fn edited(value: &Value, edits: &[(usize, &str)]) -> Value {
        let edits: Vec<JsonEdit> = edits
            .iter()
            .map(|(place, text)| JsonEdit {
                place: *place,
                text: (*text).to_owned(),
            })
            .collect();
        let mut out = Vec::new();
        JsonRef::from(value).write_edited(&edits, &mut out);
        serde_json::from_slice(&out).unwrap()
    }

    #[test]
    fn places_count_names_strings_and_numbers_in_document_order() {
        let value = json!({"a": ["x", 1, null, true, {"b": 2.5}], "c": "y"});
        // 0 "a", 1 "x", 2 1, 3 "b", 4 2.5, 5 "c", 6 "y".
        assert_eq!(
            edited(&value, &[(1, "X"), (2, "one"), (3, "B"), (6, "Y")]),
            json!({"a": ["X", "one", null, true, {"B": 2.5}], "c": "Y"})
        );
        // Out of order, or past the end: not made, and later edits still are.
        assert_eq!(
            edited(&value, &[(5, "C"), (1, "X"), (6, "Y"), (99, "Z")]),
            json!({"a": ["x", 1, null, true, {"b": 2.5}], "C": "Y"})
        );
    }

    #[test]
    fn a_replaced_name_never_overwrites_another() {
        let value = json!({"k": 1, "a@x.io": 2, "b@x.io": 3});
        assert_eq!(
            edited(&value, &[(2, "k"), (4, "k")]),
            json!({"k": 1, "k#2": 2, "k#3": 3})
        );
    }

    #[test]
    fn a_message_written_with_edits_counts_as_modified_and_keeps_its_other_members() {
        let message = Message::parse(
            r#"{"jsonrpc":"2.0","id":"7","result":{"text":"secret"},"_meta":{"text":"kept"}}"#,
        )
        .unwrap();
        let edits = [JsonEdit {
            place: 1,
            text: "[gone]".to_owned(),
        }];
        let changed = message.with_payload_edits(&edits).unwrap();
        assert!(changed.is_modified() && !message.is_modified());
        assert_eq!(
            changed.to_bytes(),
            r#"{"jsonrpc":"2.0","id":"7","result":{"text":"[gone]"},"_meta":{"text":"kept"}}"#
        );
        // The same from a message built from a value.
        let built = Message::from_value(message.to_value()).unwrap();
        assert_eq!(
            built.with_payload_edits(&edits).unwrap().to_bytes(),
            changed.to_bytes()
        );
    }

    #[test]
    fn plain_strings_are_replaced_in_the_bytes_as_sent() {
        let sent = "{ \"jsonrpc\": \"2.0\", \"id\": 1,\n  \"result\": {\"a\": \"x@example.com\", \"n\": 1.50,\n  \"b\": \"tab\\there\", \"c\": \"keep\"} }";
        let message = Message::parse(sent).unwrap();
        // Places: 0 "a", 1 its value, 2 "n", 3 1.50, 4 "b", 5 its value, 6 "c", 7 its value.
        let edit = |place: usize, text: &str| JsonEdit {
            place,
            text: text.to_owned(),
        };
        let changed = message
            .with_payload_edits(&[edit(1, "[EMAIL] \"quoted\""), edit(7, "kept")])
            .unwrap();
        assert_eq!(
            changed.to_bytes(),
            "{ \"jsonrpc\": \"2.0\", \"id\": 1,\n  \"result\": {\"a\": \"[EMAIL] \\\"quoted\\\"\", \"n\": 1.50,\n  \"b\": \"tab\\there\", \"c\": \"kept\"} }",
            "spacing, number spelling and escapes outside the edits are the sender's"
        );
        assert_eq!(
            changed.tape,
            Message::parse(changed.to_bytes()).unwrap().tape
        );
        // A string sent with escapes is written anew, compactly.
        let rewritten = message.with_payload_edits(&[edit(5, "t")]).unwrap();
        assert_eq!(
            rewritten.to_bytes(),
            r#"{"jsonrpc":"2.0","id":1,"result":{"a":"x@example.com","n":1.5,"b":"t","c":"keep"}}"#
        );
    }

    fn arbitrary_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
            "\\PC{0,12}".prop_map(Value::String),
            "[\"\\\\\u{0}-\u{1f}\u{7f}]{0,4}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::hash_map("\\PC{0,6}", inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    #[test]
    fn strings_are_escaped_as_serde_json_escapes_them() {
        for text in [
            "",
            "plain",
            "quote \" in",
            "back\\slash",
            "tab\tnew\nline",
            "\u{1}\u{1f}\u{7f}",
            "é ✓ 🦀",
        ] {
            let mut out = Vec::new();
            escape(&mut out, text);
            assert_eq!(out, serde_json::to_vec(text).unwrap(), "{text:?}");
        }
    }

    proptest! {
        /// Strings of every byte class are escaped as `serde_json` escapes them.
        #[test]
        fn any_string_is_escaped_as_serde_json_escapes_it(text in "[\\x00-\\x7f\"\\\\é]{0,40}") {
            let mut out = Vec::new();
            escape(&mut out, &text);
            prop_assert_eq!(out, serde_json::to_vec(&text).unwrap());
        }

        /// Without edits, a value is written byte for byte as `serde_json` writes it, from a tape and
        /// from a value alike.
        #[test]
        fn without_edits_the_bytes_are_serde_jsons(value in arbitrary_json()) {
            let expected = serde_json::to_vec(&value).unwrap();
            let mut out = Vec::new();
            JsonRef::from(&value).write_edited(&[], &mut out);
            prop_assert_eq!(&out, &expected);
            let message = Message::parse(
                serde_json::to_vec(&json!({"jsonrpc": "2.0", "id": 1, "result": value})).unwrap(),
            )
            .unwrap();
            let written = message.with_payload_edits(&[]).unwrap();
            prop_assert_eq!(written.to_bytes(), message.to_bytes());
        }

        /// A parsed message is written from its tape, a built one by the writer over its value:
        /// the same edits give the same bytes, and the tape written along reads as a parse would.
        #[test]
        fn the_tape_and_the_value_are_written_alike(
            value in arbitrary_json(),
            places in prop::collection::btree_set(0usize..40, 0..6),
            text in "\\PC{0,6}",
        ) {
            let edits: Vec<JsonEdit> = places
                .into_iter()
                .map(|place| JsonEdit { place, text: text.clone() })
                .collect();
            let json = json!({"jsonrpc": "2.0", "id": 1, "result": value});
            let parsed = Message::parse(serde_json::to_vec(&json).unwrap()).unwrap();
            let built = Message::from_value(json).unwrap();
            let from_tape = parsed.with_payload_edits(&edits).unwrap();
            let from_value = built.with_payload_edits(&edits).unwrap();
            prop_assert_eq!(from_tape.to_bytes(), from_value.to_bytes());
            let reparsed = Message::parse(from_tape.to_bytes()).unwrap();
            prop_assert!(from_tape.is_modified());
            prop_assert_eq!(from_tape.tape, reparsed.tape);
        }

        /// A message sent with spacing is edited as the same message sent compactly: the same
        /// value, and a tape that reads as a parse of the bytes written.
        #[test]
        fn spacing_changes_nothing_but_the_bytes_kept(
            value in arbitrary_json(),
            places in prop::collection::btree_set(0usize..40, 0..6),
            text in "\\PC{0,6}",
        ) {
            let edits: Vec<JsonEdit> = places
                .into_iter()
                .map(|place| JsonEdit { place, text: text.clone() })
                .collect();
            let json = json!({"jsonrpc": "2.0", "id": 1, "result": value});
            let compact = Message::parse(serde_json::to_vec(&json).unwrap()).unwrap();
            let spaced = Message::parse(serde_json::to_vec_pretty(&json).unwrap()).unwrap();
            let from_compact = compact.with_payload_edits(&edits).unwrap();
            let from_spaced = spaced.with_payload_edits(&edits).unwrap();
            prop_assert_eq!(from_compact.to_value(), from_spaced.to_value());
            let reparsed = Message::parse(from_spaced.to_bytes()).unwrap();
            prop_assert_eq!(from_spaced.tape, reparsed.tape);
        }
    }
}
