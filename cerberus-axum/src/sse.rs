//! Server-sent events, read and written field for field.
//!
//! The relay must give the client every event as the upstream sent it (ids for resumption, `retry:`,
//! priming events with empty data, comment keep-alives), changing only the data of messages the pipeline
//! changed, so the decoder keeps every field rather than only the data.

use bytes::{Bytes, BytesMut};

/// The largest event accepted from an upstream.
pub const MAX_EVENT_BYTES: usize = 16 * 1024 * 1024;

/// One event (or a block of comments only, such as a keep-alive).
#[derive(Clone, Debug, Default)]
pub struct SseEvent {
    /// Comment lines (without the leading colon).
    pub comments: Vec<String>,
    /// The `event:` field.
    pub event: Option<String>,
    /// The `id:` field.
    pub id: Option<String>,
    /// The `retry:` field.
    pub retry: Option<String>,
    /// The `data:` lines joined with newlines; `None` when the event has no data field.
    pub data: Option<String>,
    /// The bytes the event arrived as, while it is unchanged: passed on as they are.
    raw: Option<Bytes>,
}

impl PartialEq for SseEvent {
    /// Events are equal when their fields are; how they were written does not matter.
    fn eq(&self, other: &Self) -> bool {
        (
            &self.comments,
            &self.event,
            &self.id,
            &self.retry,
            &self.data,
        ) == (
            &other.comments,
            &other.event,
            &other.id,
            &other.retry,
            &other.data,
        )
    }
}

impl Eq for SseEvent {}

impl SseEvent {
    /// An event carrying `data`.
    pub fn message(data: String) -> Self {
        Self {
            event: Some("message".into()),
            data: Some(data),
            ..Self::default()
        }
    }

    /// An event that only keeps a stream position: `id` and empty data, as a priming event.
    pub fn placeholder(id: Option<String>) -> Self {
        Self {
            id,
            data: Some(String::new()),
            ..Self::default()
        }
    }

    /// Whether the event carries a message: data other than blanks (a priming event or a keep-alive has
    /// none).
    pub fn has_message(&self) -> bool {
        self.data.as_deref().is_some_and(|d| !d.trim().is_empty())
    }

    /// Whether the event still has the bytes it came as.
    pub fn is_raw(&self) -> bool {
        self.raw.is_some()
    }

    /// Replaces the data, so the event is written anew.
    pub fn set_data(&mut self, data: String) {
        self.data = Some(data);
        self.raw = None;
    }

    /// Takes the data out (the event keeps its original bytes, if it had them).
    pub fn take_data(&mut self) -> Option<String> {
        self.data.take()
    }

    /// The event on the wire: the bytes it arrived as when unchanged, written anew otherwise.
    pub fn encode(&self) -> Bytes {
        if let Some(raw) = &self.raw {
            return raw.clone();
        }
        let mut out = String::new();
        for comment in &self.comments {
            out.push(':');
            out.push_str(comment);
            out.push('\n');
        }
        let mut field = |name: &str, value: &str| {
            out.push_str(name);
            out.push_str(": ");
            out.push_str(value);
            out.push('\n');
        };
        if let Some(event) = &self.event {
            field("event", event);
        }
        if let Some(id) = &self.id {
            field("id", id);
        }
        if let Some(retry) = &self.retry {
            field("retry", retry);
        }
        if let Some(data) = &self.data {
            for line in data.split('\n') {
                field("data", line);
            }
        }
        out.push('\n');
        Bytes::from(out)
    }

    fn is_empty(&self) -> bool {
        self.comments.is_empty()
            && self.event.is_none()
            && self.id.is_none()
            && self.retry.is_none()
            && self.data.is_none()
    }
}

/// The stream is not server-sent events the relay can pass on.
#[derive(Debug, thiserror::Error)]
pub enum SseError {
    /// One event is larger than [`MAX_EVENT_BYTES`].
    #[error("an event exceeds {MAX_EVENT_BYTES} bytes")]
    TooLarge,
}

/// Reads events from chunks as they arrive.
///
/// The bytes of the event being read stay in one buffer until its blank line arrives, and then leave it
/// as the event's raw bytes without a copy.
#[derive(Debug, Default)]
pub struct SseDecoder {
    /// The event being read (from its first byte) and whatever has arrived after it.
    buffer: BytesMut,
    /// Where the current line starts in `buffer`.
    line_start: usize,
    /// How far `buffer` has been searched for a line end, so a long line is not searched again.
    searched: usize,
    current: SseEvent,
}

impl SseDecoder {
    /// A decoder at the start of a stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a chunk and returns every event it completes.
    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<SseEvent>, SseError> {
        self.buffer.extend_from_slice(chunk);
        let mut events = Vec::new();
        loop {
            let from = self.searched.max(self.line_start);
            let unsearched = self.buffer.get(from..).unwrap_or_default();
            let Some(end) = memchr::memchr2(b'\n', b'\r', unsearched).map(|at| from + at) else {
                self.searched = self.buffer.len();
                break;
            };
            let terminator = match self.buffer.get(end..=end + 1) {
                Some(b"\r\n") => 2,
                // A CR that ends the buffer may be the first half of a CR LF split across chunks: wait.
                None if self.buffer.get(end) == Some(&b'\r') => {
                    self.searched = end;
                    break;
                }
                _ => 1,
            };
            let line = self.buffer.get(self.line_start..end).unwrap_or_default();
            let blank = line.is_empty();
            if !blank {
                field(&mut self.current, &utf8(line));
            }
            self.line_start = end + terminator;
            self.searched = self.line_start;
            if blank {
                let raw = self.buffer.split_to(self.line_start).freeze();
                (self.line_start, self.searched) = (0, 0);
                let mut event = std::mem::take(&mut self.current);
                if !event.is_empty() {
                    event.raw = Some(raw);
                    events.push(event);
                }
            }
        }
        if self.buffer.len() > MAX_EVENT_BYTES {
            return Err(SseError::TooLarge);
        }
        Ok(events)
    }

    /// The event left unterminated at the end of the stream, if any.
    pub fn finish(&mut self) -> Option<SseEvent> {
        let line = self.buffer.get(self.line_start..).unwrap_or_default();
        if !line.is_empty() {
            field(&mut self.current, &utf8(line));
        }
        self.buffer.clear();
        (self.line_start, self.searched) = (0, 0);
        let event = std::mem::take(&mut self.current);
        (!event.is_empty()).then_some(event)
    }
}

/// A line as text: borrowed when it is valid UTF-8, as it nearly always is.
fn utf8(line: &[u8]) -> std::borrow::Cow<'_, str> {
    match std::str::from_utf8(line) {
        Ok(text) => std::borrow::Cow::Borrowed(text),
        Err(_) => String::from_utf8_lossy(line),
    }
}

/// One field line into the event being read.
fn field(current: &mut SseEvent, line: &str) {
    if let Some(comment) = line.strip_prefix(':') {
        current.comments.push(comment.to_owned());
        return;
    }
    let (name, value) = match crate::wire::split_once_ascii(line, b':') {
        Some((name, value)) => (name, value.strip_prefix(' ').unwrap_or(value)),
        None => (line, ""),
    };
    match name {
        "data" => match &mut current.data {
            Some(data) => {
                data.push('\n');
                data.push_str(value);
            }
            None => current.data = Some(value.to_owned()),
        },
        "id" => current.id = Some(value.to_owned()),
        "event" => current.event = Some(value.to_owned()),
        "retry" => current.retry = Some(value.to_owned()),
        // Unknown fields are ignored, as the SSE specification says.
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_events_split_across_chunks() {
        let stream = b"id: p1\ndata: \n\nevent: message\nid: e1\nretry: 3000\ndata: {\"a\":\ndata: 1}\n\n: keep-alive\n\n";
        let mut decoder = SseDecoder::new();
        let mut events = Vec::new();
        for chunk in stream.chunks(5) {
            events.extend(decoder.push(chunk).unwrap());
        }
        assert_eq!(decoder.finish(), None);
        assert_eq!(
            events,
            [
                SseEvent {
                    id: Some("p1".into()),
                    data: Some(String::new()),
                    ..SseEvent::default()
                },
                SseEvent {
                    event: Some("message".into()),
                    id: Some("e1".into()),
                    retry: Some("3000".into()),
                    data: Some("{\"a\":\n1}".into()),
                    ..SseEvent::default()
                },
                SseEvent {
                    comments: vec![" keep-alive".into()],
                    ..SseEvent::default()
                },
            ]
        );
    }

    #[test]
    fn accepts_crlf_and_cr_line_ends_and_fields_without_space() {
        let mut decoder = SseDecoder::new();
        let events = decoder.push(b"data:x\r\nid:7\r\rdata: y\r\n\r\n").unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].data.as_deref(), Some("x"));
        assert_eq!(events[0].id.as_deref(), Some("7"));
        assert_eq!(events[1].data.as_deref(), Some("y"));
    }

    #[test]
    fn a_crlf_split_across_chunks_is_one_line_end() {
        let mut decoder = SseDecoder::new();
        let mut events = decoder.push(b"data: a\r").unwrap();
        events.extend(decoder.push(b"\nid: 1\r\n\r").unwrap());
        assert!(events.is_empty(), "nothing is complete yet: {events:?}");
        events.extend(decoder.push(b"\n").unwrap());
        assert_eq!(events.len(), 1);
        assert_eq!(
            (events[0].data.as_deref(), events[0].id.as_deref()),
            (Some("a"), Some("1"))
        );
    }

    #[test]
    fn unchanged_events_pass_as_the_bytes_they_came_as() {
        let wire = b"event: message\r\nid: 7\r\ndata:{\"a\":1}\r\n\r\n";
        let mut decoder = SseDecoder::new();
        let mut events = decoder.push(wire).unwrap();
        assert_eq!(events[0].encode(), &wire[..]);
        events[0].set_data("{}".into());
        assert_eq!(events[0].encode(), "event: message\nid: 7\ndata: {}\n\n");
    }

    #[test]
    fn encodes_what_it_decodes() {
        let event = SseEvent {
            comments: vec![" c".into()],
            event: Some("message".into()),
            id: Some("9".into()),
            retry: Some("100".into()),
            data: Some("line1\nline2".into()),
            raw: None,
        };
        let mut decoder = SseDecoder::new();
        assert_eq!(decoder.push(&event.encode()).unwrap(), [event]);
        let priming = SseEvent {
            id: Some("0".into()),
            data: Some(String::new()),
            ..SseEvent::default()
        };
        assert_eq!(priming.encode(), "id: 0\ndata: \n\n");
    }

    #[test]
    fn refuses_oversized_events() {
        let mut decoder = SseDecoder::new();
        let big = vec![b'a'; MAX_EVENT_BYTES + 1];
        assert!(matches!(decoder.push(&big), Err(SseError::TooLarge)));
    }

    proptest::proptest! {
        /// However a stream is cut into chunks, the same events come out, and their raw bytes are the
        /// stream itself.
        #[test]
        fn chunking_never_changes_what_is_decoded(
            lines in proptest::collection::vec(
                proptest::sample::select(vec![
                    "data: {\"a\":1}", "data:x", "data: ", "id: 7", "event: message", "retry: 10",
                    ": keep-alive", "", "unknown: f", "data: é ü",
                ]),
                0..24,
            ),
            endings in proptest::collection::vec(proptest::sample::select(vec!["\n", "\r\n", "\r"]), 24),
            cuts in proptest::collection::vec(0usize..64, 0..8),
        ) {
            let mut wire = Vec::new();
            for (line, ending) in lines.iter().zip(endings.iter().cycle()) {
                wire.extend_from_slice(line.as_bytes());
                wire.extend_from_slice(ending.as_bytes());
            }
            wire.extend_from_slice(b"\n\n");
            let whole = SseDecoder::new().push(&wire).unwrap();
            let mut decoder = SseDecoder::new();
            let mut pieces = Vec::new();
            let mut rest = &wire[..];
            for cut in cuts {
                let (head, tail) = rest.split_at(cut.min(rest.len()));
                pieces.extend(decoder.push(head).unwrap());
                rest = tail;
            }
            pieces.extend(decoder.push(rest).unwrap());
            pieces.extend(decoder.finish());
            proptest::prop_assert_eq!(&pieces, &whole);
            // Each event passes on as the very bytes it came as, in order.
            let mut position = 0;
            for event in &whole {
                let raw = event.encode();
                let found = wire[position..].windows(raw.len()).position(|w| w == &raw[..]);
                proptest::prop_assert!(found.is_some(), "{raw:?} is not in the stream after {position}");
                position += found.unwrap_or_default() + raw.len();
            }
        }
    }
}
