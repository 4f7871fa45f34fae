//! A parsed message as a tape: one flat list of nodes, with every string's text in one buffer.
//!
//! Parsing into [`serde_json::Value`] allocates every string, array and object, and hashes every
//! member's name into its map; dropping it frees them all again. The guardrails that read every message
//! (PII, content limits) only walk it. A tape is built in the same single pass of the same parser, so it
//! accepts exactly what `Value` accepts, but it allocates two buffers, whatever the message holds. A
//! [`JsonRef`] reads either: a tape, or a `Value` (a message a guardrail changed, or JSON found inside a
//! string).

use std::fmt;
use std::ops::ControlFlow;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// One parsed JSON document.
#[derive(Clone, Debug, Default, PartialEq)]
pub(super) struct Tape {
    /// The nodes in document order. A container is followed by its subtree; in an object, each member is
    /// a string node (its name) followed by the value's subtree.
    nodes: Vec<Node>,
    /// The text of every string and member name, one after another.
    text: String,
}

/// One node of a [`Tape`].
#[derive(Clone, Debug, PartialEq)]
enum Node {
    Null,
    Bool(bool),
    Number(Number),
    /// A string: its text is `text[start..end]`, and it stands as those very bytes (no escapes) at
    /// `source` in the document parsed, or `source` is [`NOT_IN_SOURCE`].
    String {
        start: u32,
        end: u32,
        source: u32,
    },
    /// A member's name: its text is `text[start..end]`.
    Name {
        start: u32,
        end: u32,
    },
    /// An array of `len` items, whose subtree ends before node `end`.
    Array {
        len: u32,
        end: u32,
    },
    /// An object of `len` members, whose subtree ends before node `end`.
    Object {
        len: u32,
        end: u32,
    },
}

/// The `source` of a string written with escapes: its text is not a slice of the document.
const NOT_IN_SOURCE: u32 = u32::MAX;

impl Tape {
    /// Parses one JSON document, with the same checks as `serde_json::from_slice::<Value>`.
    pub(super) fn parse_slice(bytes: &[u8]) -> serde_json::Result<Self> {
        let mut deserializer = serde_json::Deserializer::from_slice(bytes);
        let tape = Self::parse(&mut deserializer, bytes.as_ptr().addr(), bytes.len())?;
        deserializer.end()?;
        Ok(tape)
    }

    /// Parses one JSON document, with the same checks as `serde_json::from_str::<Value>`.
    pub(super) fn parse_str(text: &str) -> serde_json::Result<Self> {
        let mut deserializer = serde_json::Deserializer::from_str(text);
        let tape = Self::parse(&mut deserializer, text.as_ptr().addr(), text.len())?;
        deserializer.end()?;
        Ok(tape)
    }

    /// Parses the document `deserializer` reads: `size` bytes from the address `source`.
    fn parse<'de, D: de::Deserializer<'de>>(
        deserializer: D,
        source: usize,
        size: usize,
    ) -> Result<Self, D::Error> {
        // Positions are `u32`: a document of 4 GiB or more is refused rather than read in part. (Its
        // text and its nodes are each at most as many as its bytes.)
        if u32::try_from(size).is_err() {
            return Err(de::Error::custom(
                "a message of 4 GiB or more cannot be read",
            ));
        }
        let mut tape = Self {
            // A node for every 16 bytes and all of the text fit most messages without growing.
            nodes: Vec::with_capacity(size / 16 + 4),
            text: String::with_capacity(size),
        };
        NodeSeed {
            tape: &mut tape,
            source,
        }
        .deserialize(deserializer)?;
        Ok(tape)
    }

    /// The document's root.
    pub(super) fn root(&self) -> JsonRef<'_> {
        self.at(0)
    }

    /// The value at node `index`.
    pub(super) fn at(&self, index: u32) -> JsonRef<'_> {
        match self.nodes.get(index as usize) {
            None | Some(Node::Null) => JsonRef::Null,
            Some(Node::Bool(b)) => JsonRef::Bool(*b),
            Some(Node::Number(n)) => JsonRef::Number(n),
            Some(Node::String { start, end, .. } | Node::Name { start, end }) => {
                JsonRef::String(self.str(*start, *end))
            }
            Some(Node::Array { len, .. }) => JsonRef::Array(Items(ItemsInner::Tape {
                tape: self,
                next: index + 1,
                left: *len,
            })),
            Some(Node::Object { len, .. }) => JsonRef::Object(Members(MembersInner::Tape {
                tape: self,
                next: index + 1,
                left: *len,
            })),
        }
    }

    fn str(&self, start: u32, end: u32) -> &str {
        // The bounds were taken from this text as it grew, at the ends of whole strings.
        self.text
            .get(start as usize..end as usize)
            .unwrap_or_default()
    }

    /// The members of the object at node `object` (none if it is not one): each name, and the index of
    /// its value's node.
    pub(super) fn members_of(&self, object: u32) -> impl Iterator<Item = (&str, u32)> {
        let len = match self.nodes.get(object as usize) {
            Some(Node::Object { len, .. }) => *len,
            _ => 0,
        };
        self.member_indices(object + 1, len)
    }

    /// The `len` members from the name at `next` on: each name, and the index of its value's node.
    fn member_indices(&self, mut next: u32, len: u32) -> impl Iterator<Item = (&str, u32)> {
        (0..len).map(move |_| {
            let name = match self.nodes.get(next as usize) {
                Some(Node::Name { start, end }) => self.str(*start, *end),
                _ => "",
            };
            let value = next + 1;
            next = self.after(value);
            (name, value)
        })
    }

    /// The string at node `index`, if it is one.
    pub(super) fn str_at(&self, index: u32) -> Option<&str> {
        match self.nodes.get(index as usize)? {
            Node::String { start, end, .. } => Some(self.str(*start, *end)),
            _ => None,
        }
    }

    /// The node of the value of member `name` of the object at node `object`.
    pub(super) fn member_of(&self, object: u32, name: &str) -> Option<u32> {
        last_named(self.members_of(object), name)
    }

    /// The index just after the subtree at `index`.
    fn after(&self, index: u32) -> u32 {
        match self.nodes.get(index as usize) {
            Some(Node::Array { end, .. } | Node::Object { end, .. }) => *end,
            _ => index + 1,
        }
    }

    /// The object at the root as a `serde_json` map (empty if the root is not an object), exactly as
    /// `serde_json` would have parsed it: a repeated member name keeps its first place and its last value.
    pub(super) fn to_map(&self) -> Map<String, Value> {
        match self.root().to_value() {
            Value::Object(map) => map,
            _ => Map::new(),
        }
    }

    fn push(&mut self, node: Node) -> u32 {
        let index = index(self.nodes.len());
        self.nodes.push(node);
        index
    }

    /// Pushes a member name.
    fn push_name(&mut self, s: &str) {
        let (start, end) = self.push_text(s);
        self.push(Node::Name { start, end });
    }

    /// Pushes a string, found as it is at `source` in the document (or [`NOT_IN_SOURCE`]).
    fn push_string(&mut self, s: &str, source: u32) {
        let (start, end) = self.push_text(s);
        self.push(Node::String { start, end, source });
    }

    fn push_text(&mut self, s: &str) -> (u32, u32) {
        let start = index(self.text.len());
        self.text.push_str(s);
        (start, index(self.text.len()))
    }

    /// The index after `count` subtrees one after another from `index`.
    fn skip(&self, mut index: u32, count: u32) -> u32 {
        for _ in 0..count {
            index = self.after(index);
        }
        index
    }

    /// Calls `visit` for every part of the nodes from `start` to before `end` (whole subtrees), in
    /// document order: one pass over a flat list.
    fn walk<'a, B>(
        &'a self,
        start: u32,
        end: u32,
        visit: &mut impl FnMut(Part<'a>) -> ControlFlow<B>,
    ) -> ControlFlow<B> {
        let nodes = self
            .nodes
            .get(start as usize..end as usize)
            .unwrap_or_default();
        for (at, node) in (start..).zip(nodes) {
            let part = match node {
                Node::Null | Node::Bool(_) | Node::Object { .. } => continue,
                Node::Number(n) => Part::Number(n),
                Node::String { start, end, .. } => Part::String(self.str(*start, *end)),
                Node::Name { start, end } => Part::Name(self.str(*start, *end)),
                Node::Array { len, .. } => Part::Array(Items(ItemsInner::Tape {
                    tape: self,
                    next: at + 1,
                    left: *len,
                })),
            };
            visit(part)?;
        }
        ControlFlow::Continue(())
    }

    /// Fills in the container opened at `open` now that its `len` children are on the tape.
    fn close(&mut self, open: u32, len: u32) {
        let end = index(self.nodes.len());
        if let Some(Node::Array { len: l, end: e } | Node::Object { len: l, end: e }) =
            self.nodes.get_mut(open as usize)
        {
            *l = len;
            *e = end;
        }
    }
}

impl Tape {
    /// This document written as JSON, with the subtree at node `edited` written with `edits` made
    /// (places counted from that node on, see [`JsonEdit`](super::JsonEdit)), and the tape of what
    /// was written: the same nodes, their texts replaced where the edits say (a number replaced
    /// becomes a string). One pass over the flat node list, so the result needs no parse.
    ///
    /// `None` when an edit replaces a member name (which may then need a suffix to stay apart from
    /// its object's other names; rare, and left to the writer that parses again), or when the result
    /// would be too large for a tape.
    pub(super) fn edited(&self, edited: u32, edits: &[super::JsonEdit]) -> Option<(Self, Vec<u8>)> {
        let mut out = Vec::with_capacity(self.text.len() + self.nodes.len() * 4 + 64);
        let mut tape = Self {
            nodes: Vec::with_capacity(self.nodes.len()),
            text: String::with_capacity(self.text.len()),
        };
        let edited_end = self.after(edited);
        let mut places = super::rewrite::Places::new(edits);
        // Open containers: where each ends, whether it is an object, and whether an item was written.
        let mut open: Vec<(u32, bool, bool)> = Vec::new();
        for (index, node) in (0u32..).zip(&self.nodes) {
            while open.last().is_some_and(|(end, _, _)| *end == index) {
                if let Some((_, object, _)) = open.pop() {
                    out.push(if object { b'}' } else { b']' });
                }
            }
            // A separator before every item and member name, and none before a member's value.
            let is_value_of_member = matches!(
                index
                    .checked_sub(1)
                    .and_then(|i| self.nodes.get(i as usize)),
                Some(Node::Name { .. })
            );
            if !is_value_of_member && let Some((_, _, written)) = open.last_mut() {
                if *written {
                    out.push(b',');
                }
                *written = true;
            }
            let replacement = if (edited..edited_end).contains(&index)
                && matches!(
                    node,
                    Node::String { .. } | Node::Name { .. } | Node::Number(_)
                ) {
                places.take()
            } else {
                None
            };
            match node {
                Node::Null => {
                    out.extend_from_slice(b"null");
                    tape.push(Node::Null);
                }
                Node::Bool(b) => {
                    out.extend_from_slice(if *b { b"true" } else { b"false" });
                    tape.push(Node::Bool(*b));
                }
                Node::Number(n) => match replacement {
                    Some(text) => {
                        let source = written_string(&mut out, text);
                        tape.push_string(text, source);
                    }
                    None => {
                        let _ = serde_json::to_writer(&mut out, n);
                        tape.push(Node::Number(n.clone()));
                    }
                },
                Node::Name { .. } if replacement.is_some() => return None,
                Node::Name { start, end } => {
                    let text = self.str(*start, *end);
                    super::rewrite::escape(&mut out, text);
                    tape.push_name(text);
                    out.push(b':');
                }
                Node::String { start, end, .. } => {
                    let text = replacement.unwrap_or_else(|| self.str(*start, *end));
                    let source = written_string(&mut out, text);
                    tape.push_string(text, source);
                }
                Node::Array { len, end } | Node::Object { len, end } => {
                    let object = matches!(node, Node::Object { .. });
                    out.push(if object { b'{' } else { b'[' });
                    tape.push(if object {
                        Node::Object {
                            len: *len,
                            end: *end,
                        }
                    } else {
                        Node::Array {
                            len: *len,
                            end: *end,
                        }
                    });
                    open.push((*end, object, false));
                }
            }
        }
        while let Some((_, object, _)) = open.pop() {
            out.push(if object { b'}' } else { b']' });
        }
        u32::try_from(out.len()).ok()?;
        Some((tape, out))
    }
}

impl Tape {
    /// What [`edited`](Self::edited) gives, made by splicing `source`, the bytes this tape was parsed
    /// from: when every edit replaces a string that `source` holds without escapes, only those
    /// strings are written, and everything between them is copied as it was (spacing included), as
    /// are the tape's texts; the other nodes only move. On a large result with a few values
    /// redacted, this skips escaping and writing every other string and number again.
    ///
    /// `None` when an edit replaces a member name, a number or a string written with escapes (left
    /// to [`edited`](Self::edited)), or when `source` is not what the tape was parsed from.
    pub(super) fn spliced(
        &self,
        source: &[u8],
        edited: u32,
        edits: &[super::JsonEdit],
    ) -> Option<(Self, Vec<u8>)> {
        let mut places = super::rewrite::Places::new(edits);
        let mut replaced: Vec<(u32, &str)> = Vec::with_capacity(edits.len());
        let nodes = self
            .nodes
            .get(edited as usize..self.after(edited) as usize)?;
        for (index, node) in (edited..).zip(nodes) {
            match node {
                Node::String { .. } => {
                    if let Some(text) = places.take() {
                        replaced.push((index, text));
                    }
                }
                Node::Name { .. } | Node::Number(_) => places.take().is_none().then_some(())?,
                Node::Null | Node::Bool(_) | Node::Array { .. } | Node::Object { .. } => {}
            }
        }
        let growth: usize = replaced.iter().map(|(_, text)| text.len() + 8).sum();
        let mut out = Vec::with_capacity(source.len() + growth);
        let mut text = String::with_capacity(self.text.len() + growth);
        // What each replaced string became, in order: its node, and how far the texts and the
        // bytes after it move (the replacements before it counted), modulo 2^32: every position
        // moved lands in a text and a document of fewer than 2^32 bytes, so wrapping adds are exact.
        let mut moves: Vec<(Node, u32, u32)> = Vec::with_capacity(replaced.len());
        let (mut copied, mut copied_text) = (0, 0);
        for (index, replacement) in &replaced {
            let Some(&Node::String {
                start,
                end,
                source: at,
            }) = self.nodes.get(*index as usize)
            else {
                return None;
            };
            if at == NOT_IN_SOURCE {
                return None;
            }
            let (at, old) = (at as usize, self.str(start, end));
            // The string must stand in `source` as its quoted text, or `source` is another document.
            let quoted = source.get(at.checked_sub(1)?..at.checked_add(old.len() + 1)?)?;
            if quoted.first() != Some(&b'"')
                || quoted.last() != Some(&b'"')
                || quoted.get(1..=old.len())? != old.as_bytes()
            {
                return None;
            }
            out.extend_from_slice(source.get(copied..at - 1)?);
            let new_source = written_string(&mut out, replacement);
            copied = at + old.len() + 1;
            text.push_str(self.text.get(copied_text..start as usize)?);
            let new_start = text.len();
            text.push_str(replacement);
            copied_text = end as usize;
            let node = Node::String {
                start: u32::try_from(new_start).ok()?,
                end: u32::try_from(text.len()).ok()?,
                source: new_source,
            };
            let moved_by = |new: usize, old: usize| {
                Some(
                    u32::try_from(new)
                        .ok()?
                        .wrapping_sub(u32::try_from(old).ok()?),
                )
            };
            moves.push((
                node,
                moved_by(text.len(), copied_text)?,
                moved_by(out.len(), copied)?,
            ));
        }
        out.extend_from_slice(source.get(copied..)?);
        text.push_str(self.text.get(copied_text..)?);
        u32::try_from(out.len()).ok()?;
        u32::try_from(text.len()).ok()?;
        // Every node keeps its place; texts and sources after a replaced string move by what it
        // grew or shrank. The nodes are written once, moved as they are copied.
        let mut nodes = Vec::with_capacity(self.nodes.len());
        let (mut from, mut text_shift, mut source_shift) = (0, 0, 0);
        for ((index, _), (node, text_by, source_by)) in replaced.iter().zip(moves) {
            let index = *index as usize;
            let before = self.nodes.get(from..index)?;
            nodes.extend(before.iter().map(|n| n.moved(text_shift, source_shift)));
            nodes.push(node);
            (from, text_shift, source_shift) = (index + 1, text_by, source_by);
        }
        let rest = self.nodes.get(from..)?;
        nodes.extend(rest.iter().map(|n| n.moved(text_shift, source_shift)));
        let tape = Self { nodes, text };
        Some((tape, out))
    }
}

impl Node {
    /// This node with its text moved by `text` bytes and, for a string, its source by `source`
    /// bytes, both modulo 2^32 (see [`Tape::spliced`]).
    fn moved(&self, text: u32, source: u32) -> Self {
        match *self {
            Self::String {
                start,
                end,
                source: at,
            } => Self::String {
                start: start.wrapping_add(text),
                end: end.wrapping_add(text),
                source: match at {
                    NOT_IN_SOURCE => NOT_IN_SOURCE,
                    at => at.wrapping_add(source),
                },
            },
            Self::Name { start, end } => Self::Name {
                start: start.wrapping_add(text),
                end: end.wrapping_add(text),
            },
            Self::Null => Self::Null,
            Self::Bool(b) => Self::Bool(b),
            Self::Number(ref n) => Self::Number(n.clone()),
            Self::Array { len, end } => Self::Array { len, end },
            Self::Object { len, end } => Self::Object { len, end },
        }
    }
}

/// The value node of the last member called `name`: the one `serde_json` keeps when a name is sent
/// more than once.
fn last_named<'a>(members: impl Iterator<Item = (&'a str, u32)>, name: &str) -> Option<u32> {
    members
        .filter(|(n, _)| *n == name)
        .last()
        .map(|(_, value)| value)
}

/// Writes `text` to `out` as a JSON string, and returns where its text starts in `out` when it was
/// written without escapes (as a parse would note it), or [`NOT_IN_SOURCE`].
fn written_string(out: &mut Vec<u8>, text: &str) -> u32 {
    let quote = out.len();
    super::rewrite::escape(out, text);
    if out.len() - quote == text.len() + 2 {
        u32::try_from(quote + 1).unwrap_or(NOT_IN_SOURCE)
    } else {
        NOT_IN_SOURCE
    }
}

/// A tape position as the `u32` nodes hold: [`Tape::parse`] refuses a document too large for one.
fn index(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Deserialises one value onto the tape.
struct NodeSeed<'t> {
    tape: &'t mut Tape,
    /// The address of the document's first byte, to tell where a string borrowed from it lies.
    source: usize,
}

impl NodeSeed<'_> {
    fn child(&mut self) -> NodeSeed<'_> {
        NodeSeed {
            tape: self.tape,
            source: self.source,
        }
    }
}

impl<'de> DeserializeSeed<'de> for NodeSeed<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for NodeSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any valid JSON value")
    }

    fn visit_bool<E>(self, b: bool) -> Result<(), E> {
        self.tape.push(Node::Bool(b));
        Ok(())
    }

    fn visit_i64<E>(self, n: i64) -> Result<(), E> {
        self.tape.push(Node::Number(n.into()));
        Ok(())
    }

    fn visit_u64<E>(self, n: u64) -> Result<(), E> {
        self.tape.push(Node::Number(n.into()));
        Ok(())
    }

    fn visit_f64<E>(self, n: f64) -> Result<(), E> {
        // As `Value`: a float JSON cannot hold becomes null.
        self.tape
            .push(Number::from_f64(n).map_or(Node::Null, Node::Number));
        Ok(())
    }

    /// A string with escapes, read into a buffer of the parser's.
    fn visit_str<E>(self, s: &str) -> Result<(), E> {
        self.tape.push_string(s, NOT_IN_SOURCE);
        Ok(())
    }

    /// A string without escapes: its text is a slice of the document.
    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<(), E> {
        let source = s
            .as_ptr()
            .addr()
            .checked_sub(self.source)
            .and_then(|at| u32::try_from(at).ok())
            .unwrap_or(NOT_IN_SOURCE);
        self.tape.push_string(s, source);
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        self.tape.push(Node::Null);
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
        let open = self.tape.push(Node::Array { len: 0, end: 0 });
        let mut len = 0;
        while seq.next_element_seed(self.child())?.is_some() {
            len += 1;
        }
        self.tape.close(open, len);
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<(), A::Error> {
        let open = self.tape.push(Node::Object { len: 0, end: 0 });
        let mut len = 0;
        while map.next_key_seed(KeySeed(self.tape))?.is_some() {
            map.next_value_seed(self.child())?;
            len += 1;
        }
        self.tape.close(open, len);
        Ok(())
    }
}

/// Deserialises a member's name onto the tape.
struct KeySeed<'t>(&'t mut Tape);

impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a member name")
    }

    fn visit_str<E>(self, s: &str) -> Result<(), E> {
        self.0.push_name(s);
        Ok(())
    }
}

/// A read-only view of a JSON value, over a parsed message's tape or over a [`serde_json::Value`]:
/// what the built-in guardrails walk, without building a `Value` for a message nobody changes.
///
/// An object's members come as they were sent, in order; a name sent twice comes twice (what `Value`
/// keeps is the last value, in the first place).
///
/// ```
/// use cerberus_core::{JsonRef, Message};
/// let m = Message::parse(r#"{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"hi"}]}}"#)?;
/// let Some(JsonRef::Object(result)) = m.payload_view() else { panic!("an object") };
/// let texts: Vec<&str> = result.get("content").and_then(JsonRef::as_array).into_iter().flatten()
///     .filter_map(|item| item.as_object()?.get("text")?.as_str())
///     .collect();
/// assert_eq!(texts, ["hi"]);
/// # Ok::<(), cerberus_core::MessageError>(())
/// ```
#[derive(Clone, Debug)]
pub enum JsonRef<'a> {
    /// `null`.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// A number.
    Number(&'a Number),
    /// A string, unescaped.
    String(&'a str),
    /// An array's items.
    Array(Items<'a>),
    /// An object's members.
    Object(Members<'a>),
}

impl<'a> JsonRef<'a> {
    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&'a str> {
        match self {
            Self::String(s) => Some(*s),
            _ => None,
        }
    }

    /// The members, if this is an object.
    pub fn as_object(self) -> Option<Members<'a>> {
        match self {
            Self::Object(members) => Some(members),
            _ => None,
        }
    }

    /// The items, if this is an array.
    pub fn as_array(self) -> Option<Items<'a>> {
        match self {
            Self::Array(items) => Some(items),
            _ => None,
        }
    }

    /// Whether this is an object.
    pub fn is_object(&self) -> bool {
        matches!(self, Self::Object(_))
    }

    /// Whether this is an array.
    pub fn is_array(&self) -> bool {
        matches!(self, Self::Array(_))
    }

    /// Whether this is `null`.
    pub fn is_null(&self) -> bool {
        matches!(self, Self::Null)
    }

    /// An owned copy, as `serde_json` would have parsed it.
    pub fn to_value(self) -> Value {
        match self {
            Self::Null => Value::Null,
            Self::Bool(b) => Value::Bool(b),
            Self::Number(n) => Value::Number(n.clone()),
            Self::String(s) => Value::String(s.to_owned()),
            Self::Array(items) => Value::Array(items.map(Self::to_value).collect()),
            Self::Object(members) => {
                let mut map = Map::with_capacity(members.len());
                for (name, value) in members {
                    map.insert(name.to_owned(), value.to_value());
                }
                Value::Object(map)
            }
        }
    }
}

/// One part of a JSON value that [`JsonRef::walk`] visits: the parts that hold text, and arrays.
#[derive(Clone, Debug)]
pub enum Part<'a> {
    /// A member's name.
    Name(&'a str),
    /// A string value, unescaped.
    String(&'a str),
    /// A number.
    Number(&'a Number),
    /// An array, visited before its items.
    Array(Items<'a>),
}

impl<'a> JsonRef<'a> {
    /// Visits every name, string, number and array in this value and everything it holds, in document
    /// order (a name before its value), until `visit` breaks. Over a parsed message this is one pass over
    /// a flat list, which is faster than descending through nested iterators.
    pub fn walk<B>(&self, visit: &mut impl FnMut(Part<'a>) -> ControlFlow<B>) -> ControlFlow<B> {
        match self {
            Self::Null | Self::Bool(_) => ControlFlow::Continue(()),
            Self::Number(n) => visit(Part::Number(n)),
            Self::String(s) => visit(Part::String(s)),
            // The items left, or the members left (each a name and a value), lie one after another.
            Self::Array(items @ Items(ItemsInner::Tape { tape, next, left })) => {
                visit(Part::Array(items.clone()))?;
                tape.walk(*next, tape.skip(*next, *left), visit)
            }
            Self::Object(Members(MembersInner::Tape { tape, next, left })) => {
                tape.walk(*next, tape.skip(*next, left.saturating_mul(2)), visit)
            }
            Self::Array(items) => {
                visit(Part::Array(items.clone()))?;
                items.clone().try_for_each(|item| item.walk(visit))
            }
            Self::Object(members) => members.clone().try_for_each(|(name, value)| {
                visit(Part::Name(name))?;
                value.walk(visit)
            }),
        }
    }
}

impl<'a> From<&'a Value> for JsonRef<'a> {
    fn from(value: &'a Value) -> Self {
        match value {
            Value::Null => Self::Null,
            Value::Bool(b) => Self::Bool(*b),
            Value::Number(n) => Self::Number(n),
            Value::String(s) => Self::String(s),
            Value::Array(items) => Self::Array(Items(ItemsInner::Value(items.iter()))),
            Value::Object(map) => Self::Object(Members::of(map)),
        }
    }
}

/// The items of a [`JsonRef::Array`], in order.
#[derive(Clone, Debug)]
pub struct Items<'a>(ItemsInner<'a>);

#[derive(Clone, Debug)]
enum ItemsInner<'a> {
    Tape {
        tape: &'a Tape,
        next: u32,
        left: u32,
    },
    Value(std::slice::Iter<'a, Value>),
}

impl<'a> Iterator for Items<'a> {
    type Item = JsonRef<'a>;

    fn next(&mut self) -> Option<JsonRef<'a>> {
        match &mut self.0 {
            ItemsInner::Tape { tape, next, left } => {
                *left = left.checked_sub(1)?;
                let item = tape.at(*next);
                *next = tape.after(*next);
                Some(item)
            }
            ItemsInner::Value(items) => items.next().map(JsonRef::from),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let len = self.len();
        (len, Some(len))
    }
}

impl ExactSizeIterator for Items<'_> {
    fn len(&self) -> usize {
        match &self.0 {
            ItemsInner::Tape { left, .. } => *left as usize,
            ItemsInner::Value(items) => items.len(),
        }
    }
}

/// The members of a [`JsonRef::Object`] (name and value), in order.
#[derive(Clone, Debug)]
pub struct Members<'a>(MembersInner<'a>);

#[derive(Clone, Debug)]
enum MembersInner<'a> {
    Tape {
        tape: &'a Tape,
        next: u32,
        left: u32,
    },
    Value(serde_json::map::Iter<'a>),
}

impl<'a> Members<'a> {
    /// The members of a `serde_json` map.
    pub fn of(map: &'a Map<String, Value>) -> Self {
        Self(MembersInner::Value(map.iter()))
    }

    /// The value of the member `name`; of its last, if it was sent more than once (as `serde_json`).
    pub fn get(self, name: &str) -> Option<JsonRef<'a>> {
        match self.0 {
            MembersInner::Tape { tape, next, left } => {
                last_named(tape.member_indices(next, left), name).map(|value| tape.at(value))
            }
            // A map's names are unique.
            MembersInner::Value(mut members) => members
                .find(|(n, _)| *n == name)
                .map(|(_, value)| JsonRef::from(value)),
        }
    }
}

impl<'a> Iterator for Members<'a> {
    type Item = (&'a str, JsonRef<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        match &mut self.0 {
            MembersInner::Tape { tape, next, left } => {
                *left = left.checked_sub(1)?;
                let name = tape.at(*next).as_str().unwrap_or_default();
                let value = tape.at(*next + 1);
                *next = tape.after(*next + 1);
                Some((name, value))
            }
            MembersInner::Value(members) => members
                .next()
                .map(|(name, value)| (name.as_str(), JsonRef::from(value))),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let len = self.len();
        (len, Some(len))
    }
}

impl ExactSizeIterator for Members<'_> {
    fn len(&self) -> usize {
        match &self.0 {
            MembersInner::Tape { left, .. } => *left as usize,
            MembersInner::Value(members) => members.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    /// Any JSON value, nested a few levels, with strings that need escapes.
    fn any_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            "\\PC{0,12}|[\"\\\\\n\t\u{0}-\u{1f}é😀]{0,6}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::vec(("\\PC{0,6}", inner), 0..6)
                    .prop_map(|members| Value::Object(members.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn a_tape_reads_back_as_the_value_serde_json_parses(value in any_json(), pretty in any::<bool>()) {
            let text = if pretty { serde_json::to_string_pretty(&value) } else { serde_json::to_string(&value) }.unwrap();
            let expected: Value = serde_json::from_str(&text).unwrap();
            prop_assert_eq!(Tape::parse_slice(text.as_bytes()).unwrap().root().to_value(), expected.clone());
            prop_assert_eq!(Tape::parse_str(&text).unwrap().root().to_value(), expected.clone());
            prop_assert_eq!(JsonRef::from(&expected).to_value(), expected.clone());
            let tape = Tape::parse_str(&text).unwrap();
            prop_assert_eq!(parts(tape.root()), parts(JsonRef::from(&expected)));
            // From the middle of an array or object, too.
            if let (JsonRef::Array(mut items), Value::Array(values)) = (tape.root(), &expected) {
                items.next();
                let rest = Value::Array(values.iter().skip(1).cloned().collect());
                prop_assert_eq!(parts(JsonRef::Array(items)), parts(JsonRef::from(&rest)));
            }
            if let (JsonRef::Object(mut members), Value::Object(_)) = (tape.root(), &expected) {
                let skipped = members.next().map(|(name, _)| name.to_owned());
                let rest = Value::Object(members.clone().map(|(n, v)| (n.to_owned(), v.to_value())).collect());
                prop_assert_eq!(parts(JsonRef::Object(members)), parts(JsonRef::from(&rest)), "after {:?}", skipped);
            }
        }

        #[test]
        fn a_tape_accepts_exactly_what_serde_json_accepts(bytes in prop::collection::vec(
            prop_oneof![Just(b'{'), Just(b'}'), Just(b'['), Just(b']'), Just(b'"'), Just(b':'), Just(b','),
                Just(b'1'), Just(b'-'), Just(b'e'), Just(b'.'), Just(b'\\'), Just(b'u'), Just(b' '), Just(0xff),
                Just(b'n'), Just(b't'), Just(b'a')],
            0..24,
        )) {
            let serde = serde_json::from_slice::<Value>(&bytes);
            let tape = Tape::parse_slice(&bytes);
            prop_assert_eq!(serde.is_ok(), tape.is_ok());
            if let (Err(a), Err(b)) = (serde, tape) {
                prop_assert_eq!(a.to_string(), b.to_string());
            }
        }
    }

    /// What a walk visits, written out.
    fn parts(json: JsonRef<'_>) -> Vec<String> {
        let mut out = Vec::new();
        let _: ControlFlow<()> = json.walk(&mut |part| {
            out.push(match part {
                Part::Name(s) => format!("name {s}"),
                Part::String(s) => format!("string {s}"),
                Part::Number(n) => format!("number {n}"),
                Part::Array(items) => format!("array of {}", items.len()),
            });
            ControlFlow::Continue(())
        });
        out
    }

    #[test]
    fn a_walk_stops_where_it_is_told() {
        let tape = Tape::parse_str(r#"{"a":["x",{"b":1}],"c":"y"}"#).unwrap();
        let mut seen = Vec::new();
        let flow = tape.root().walk(&mut |part| {
            seen.push(format!("{part:?}").chars().take(6).collect::<String>());
            if matches!(part, Part::Number(_)) {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        });
        assert!(flow.is_break());
        assert_eq!(
            parts(tape.root()),
            [
                "name a",
                "array of 2",
                "string x",
                "name b",
                "number 1",
                "name c",
                "string y"
            ]
        );
        assert_eq!(seen.len(), 5, "stopped at the number: {seen:?}");
    }

    #[test]
    #[cfg(target_pointer_width = "64")]
    fn refuses_a_document_its_positions_cannot_hold() {
        let mut deserializer = serde_json::Deserializer::from_str("1");
        let err = Tape::parse(&mut deserializer, 0, 1 << 32).unwrap_err();
        assert!(err.to_string().contains("4 GiB"), "{err}");
    }

    #[test]
    fn rejects_what_serde_json_rejects() {
        for text in [
            "",
            "{",
            "[1,]",
            r#"{"a":1,}"#,
            r#"{"a" 1}"#,
            "\"\u{1}\"",
            r#""\x""#,
            "1e400",
            "[1] x",
            &"[".repeat(200),
        ] {
            let serde = serde_json::from_str::<Value>(text).unwrap_err().to_string();
            let tape = Tape::parse_str(text).unwrap_err().to_string();
            assert_eq!(tape, serde, "{text}");
            assert!(Tape::parse_slice(text.as_bytes()).is_err(), "{text}");
        }
        assert!(Tape::parse_slice(b"\"\xff\"").is_err());
    }

    #[test]
    fn a_name_sent_twice_reads_as_serde_json_keeps_it() {
        let tape = Tape::parse_str(r#"{"a":1,"b":2,"a":{"c":3}}"#).unwrap();
        assert_eq!(
            tape.to_map(),
            serde_json::from_str::<Map<String, Value>>(r#"{"a":1,"b":2,"a":{"c":3}}"#).unwrap()
        );
        let members = tape.root().as_object().unwrap();
        assert_eq!(members.len(), 3, "the view shows every member sent");
        assert_eq!(members.get("a").unwrap().to_value(), json!({"c": 3}));
    }

    #[test]
    fn skips_whole_subtrees() {
        let tape = Tape::parse_str(r#"[[1,[2,{"x":[3]}]],{"y":{}},"z"]"#).unwrap();
        let items: Vec<Value> = tape
            .root()
            .as_array()
            .unwrap()
            .map(JsonRef::to_value)
            .collect();
        assert_eq!(
            items,
            [json!([1, [2, {"x": [3]}]]), json!({"y": {}}), json!("z")]
        );
    }
}
