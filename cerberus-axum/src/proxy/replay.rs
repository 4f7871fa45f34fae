//! The events a stdio session's streams sent, kept so that a client whose stream broke resumes it with
//! `Last-Event-ID`.
//!
//! An HTTP upstream numbers its own events and replays them; a process's stdout has no positions, so
//! the gateway numbers what it writes for a stdio session: `STREAM-SEQ`, a stream per POST answer
//! and per GET, a sequence within each. Every event goes into the session's log before it is sent,
//! so one lost on a broken connection is there to replay. A POST whose client went away keeps
//! collecting its answers into the log until every request is answered. A GET with
//! `Last-Event-ID` gets what its stream sent after that id: for a POST's stream, until that stream
//! ends; for a GET's, then whatever comes next, as the session's new GET stream.
//!
//! The log is bounded: the newest [`MAX_EVENTS`] events and at most [`MAX_BYTES`] of them. A
//! client that comes back after more than that misses the oldest, and the gateway says so in its log.
//! It lives with the process, on the instance that runs it (like the session itself).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use cerberus_core::Message;
use tokio::sync::Notify;

use crate::sse::SseEvent;

/// How many events a session keeps.
pub const MAX_EVENTS: usize = 1024;
/// How many bytes of events a session keeps.
pub const MAX_BYTES: usize = 2 * 1024 * 1024;

/// Which kind of stream an event went out on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamKind {
    /// The answer to a POST: it ends when its requests are answered.
    Post,
    /// The session's GET stream: it goes on.
    Get,
}

#[derive(Debug)]
struct Logged {
    stream: u64,
    seq: u64,
    kind: StreamKind,
    event: Bytes,
}

#[derive(Debug, Default)]
struct State {
    next_stream: u64,
    events: VecDeque<Logged>,
    bytes: usize,
    /// The streams still being written.
    open: Vec<(u64, StreamKind)>,
    /// Events dropped for room, for the log line.
    evicted: u64,
}

/// One session's log.
#[derive(Debug, Default)]
pub struct EventLog {
    state: Mutex<State>,
    appended: Notify,
}

/// Writes one stream's events into the log; the stream ends when it is dropped.
#[derive(Debug)]
pub struct StreamWriter {
    log: Arc<EventLog>,
    stream: u64,
    kind: StreamKind,
    next_seq: u64,
}

/// Where a `Last-Event-ID` points.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Position {
    stream: u64,
    seq: u64,
}

impl Position {
    /// Reads an id this log gave (`STREAM-SEQ`); `None` for anything else.
    pub fn parse(id: &str) -> Option<Self> {
        let (stream, seq) = id.trim().split_once('-')?;
        Some(Self {
            stream: stream.parse().ok()?,
            seq: seq.parse().ok()?,
        })
    }
}

impl EventLog {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Every change leaves the state whole: a panic elsewhere cannot break it.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A new stream of `kind`.
    pub fn stream(self: &Arc<Self>, kind: StreamKind) -> StreamWriter {
        let mut state = self.lock();
        let stream = state.next_stream;
        state.next_stream += 1;
        state.open.push((stream, kind));
        StreamWriter {
            log: Arc::clone(self),
            stream,
            kind,
            next_seq: 0,
        }
    }

    /// The kind of the stream `position` names, if the log still knows it: a stream still open, or
    /// one with events after `position`.
    pub fn kind_of(&self, position: Position) -> Option<StreamKind> {
        let state = self.lock();
        let open = state.open.iter().find(|(s, _)| *s == position.stream);
        open.map(|(_, kind)| *kind).or_else(|| {
            state
                .events
                .iter()
                .find(|e| e.stream == position.stream)
                .map(|e| e.kind)
        })
    }

    /// The events of `position`'s stream after it, waiting for more while the stream is open; each
    /// batch goes to `send`, which says whether the client still reads. Returns when the stream has
    /// ended and everything is sent, or the client is gone.
    pub async fn replay<F, Fut>(&self, position: Position, mut send: F)
    where
        F: FnMut(Bytes) -> Fut,
        Fut: Future<Output = bool>,
    {
        let mut after = position.seq;
        let mut warned = false;
        loop {
            let appended = self.appended.notified();
            tokio::pin!(appended);
            // Registered before looking, so that an event appended meanwhile wakes this.
            appended.as_mut().enable();
            let (batch, open) = {
                let state = self.lock();
                let batch: Vec<(u64, Bytes)> = state
                    .events
                    .iter()
                    .filter(|e| e.stream == position.stream && e.seq > after)
                    .map(|e| (e.seq, e.event.clone()))
                    .collect();
                let open = state.open.iter().any(|(s, _)| *s == position.stream);
                (batch, open)
            };
            if !warned
                && let Some((first, _)) = batch.first()
                && *first > after + 1
            {
                tracing::warn!(
                    missed = first - after - 1,
                    "a resumed stdio stream lost events older than the session's replay log"
                );
                warned = true;
            }
            for (seq, event) in batch {
                if !send(event).await {
                    return;
                }
                after = seq;
            }
            if !open {
                return;
            }
            appended.await;
        }
    }

    fn append(&self, logged: Logged) {
        let mut state = self.lock();
        state.bytes += logged.event.len();
        state.events.push_back(logged);
        while state.events.len() > MAX_EVENTS || state.bytes > MAX_BYTES {
            let Some(old) = state.events.pop_front() else {
                break;
            };
            state.bytes -= old.event.len();
            state.evicted += 1;
        }
        drop(state);
        self.appended.notify_waiters();
    }

    /// How many events were dropped for room so far.
    pub fn evicted(&self) -> u64 {
        self.lock().evicted
    }
}

impl StreamWriter {
    /// `message` as an event with the next id of this stream, logged before it is returned.
    pub fn event(&mut self, message: &Message) -> Bytes {
        let mut event =
            SseEvent::message(String::from_utf8_lossy(&message.to_bytes()).into_owned());
        event.id = Some(format!("{}-{}", self.stream, self.next_seq));
        let bytes = event.encode();
        self.log.append(Logged {
            stream: self.stream,
            seq: self.next_seq,
            kind: self.kind,
            event: bytes.clone(),
        });
        self.next_seq += 1;
        bytes
    }
}

impl Drop for StreamWriter {
    fn drop(&mut self) {
        self.log.lock().open.retain(|(s, _)| *s != self.stream);
        self.log.appended.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn message(n: u64) -> Message {
        Message::parse_text(format!(
            r#"{{"jsonrpc":"2.0","method":"notifications/message","params":{{"n":{n}}}}}"#
        ))
        .unwrap()
    }

    async fn replayed(log: &EventLog, position: Position) -> Vec<String> {
        let mut got = Vec::new();
        log.replay(position, |event| {
            got.push(String::from_utf8_lossy(&event).into_owned());
            async { true }
        })
        .await;
        got
    }

    #[test]
    fn ids_are_stream_then_sequence() {
        assert_eq!(
            Position::parse("3-14"),
            Some(Position { stream: 3, seq: 14 })
        );
        assert_eq!(
            Position::parse(" 3-14 "),
            Some(Position { stream: 3, seq: 14 })
        );
        for other in [
            "",
            "3",
            "-1",
            "a-1",
            "1-b",
            "1-2-3",
            "18446744073709551616-0",
        ] {
            assert_eq!(Position::parse(other), None, "{other}");
        }
    }

    #[tokio::test]
    async fn an_ended_stream_replays_what_came_after_the_position_once() {
        let log = Arc::new(EventLog::default());
        let mut other = log.stream(StreamKind::Get);
        let mut post = log.stream(StreamKind::Post);
        for n in 0..4 {
            let event = String::from_utf8_lossy(&post.event(&message(n))).into_owned();
            assert!(event.contains(&format!("\nid: 1-{n}\n")), "{event}");
            other.event(&message(100 + n));
        }
        drop(post);
        let position = Position::parse("1-1").unwrap();
        assert_eq!(log.kind_of(position), Some(StreamKind::Post));
        let got = replayed(&log, position).await;
        assert_eq!(got.len(), 2);
        assert!(got[0].contains("id: 1-2") && got[0].contains(r#""n":2"#));
        assert!(got[1].contains("id: 1-3") && got[1].contains(r#""n":3"#));
        assert_eq!(
            log.kind_of(Position::parse("0-0").unwrap()),
            Some(StreamKind::Get)
        );
        assert_eq!(log.kind_of(Position::parse("7-0").unwrap()), None);
    }

    #[tokio::test]
    async fn an_open_stream_is_followed_until_it_ends() {
        let log = Arc::new(EventLog::default());
        let mut post = log.stream(StreamKind::Post);
        post.event(&message(0));
        let follower = tokio::spawn({
            let log = Arc::clone(&log);
            async move { replayed(&log, Position::parse("0-0").unwrap()).await }
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        post.event(&message(1));
        tokio::time::sleep(Duration::from_millis(10)).await;
        post.event(&message(2));
        drop(post);
        let got = follower.await.unwrap();
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(got[1].contains("id: 0-2"));
    }

    #[tokio::test]
    async fn a_client_that_stops_reading_ends_the_replay() {
        let log = Arc::new(EventLog::default());
        let mut post = log.stream(StreamKind::Post);
        for n in 0..3 {
            post.event(&message(n));
        }
        let mut sent = 0;
        log.replay(Position { stream: 0, seq: 0 }, |_| {
            sent += 1;
            async { false }
        })
        .await;
        assert_eq!(sent, 1, "the stream is open, but nobody reads it");
    }

    #[test]
    fn the_log_keeps_the_newest_events_within_its_bounds() {
        let log = Arc::new(EventLog::default());
        let mut stream = log.stream(StreamKind::Get);
        for n in 0..(MAX_EVENTS as u64 + 10) {
            stream.event(&message(n));
        }
        assert_eq!(log.evicted(), 10);
        let big = Message::parse_text(format!(
            r#"{{"jsonrpc":"2.0","method":"notifications/message","params":{{"data":"{}"}}}}"#,
            "x".repeat(MAX_BYTES / 4)
        ))
        .unwrap();
        for _ in 0..8 {
            stream.event(&big);
        }
        let state = log.lock();
        assert!(state.bytes <= MAX_BYTES);
        assert_eq!(
            state.bytes,
            state.events.iter().map(|e| e.event.len()).sum::<usize>()
        );
    }
}
