//! GET streams on their way upstream, so that a call never overtakes the stream its server request
//! will need.
//!
//! A client opens its standalone GET stream and sends `tools/call` milliseconds apart. A server that
//! sends a request (sampling, elicitation, roots) on its standalone stream the moment the call
//! arrives drops it when that stream does not exist yet, and the client then waits for an answer that
//! never comes. Through the gateway, the GET has further to go (a session lookup, an upstream
//! connection), and the call can overtake it. So a GET marks its session as opening from the moment it
//! reaches the proxy until the upstream has answered it (or failed, or the client gave up); a POST of
//! that session waits for the mark to go before it is forwarded, at most [`MAX_WAIT`] (a server that
//! sends a GET stream's head only with its first event would otherwise hold every call).
//!
//! A call may also reach the gateway before the GET its client sent first (the two travel on
//! separate connections). So, when a client says it is ready (`notifications/initialized`), the
//! gateway opens the session's upstream GET stream itself, marked as opening like a client's, and
//! holds it, unread, for the client's GET to take ([`HOLD`] at most): what the server sends on it
//! meanwhile waits in the connection, in order, and reaches the client when its GET takes the stream.
//! A GET with `Last-Event-ID` does not take it (it is dropped, and the GET goes upstream as usual),
//! nor does a client that never opens one (the held stream is dropped after [`HOLD`]).
//!
//! Marks and held streams are per instance: with sessions shared between instances (`[redis]`), the
//! gateway does not open streams on its own account (the client's GET might reach another instance
//! and be refused upstream as a second stream), and a GET and a POST that a load balancer sends to two
//! instances are not ordered (sticky sessions keep them together).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use cerberus_core::Identity;
use tokio::sync::watch;

use crate::upstream_client::UpstreamResponse;

/// How long an upstream GET stream the gateway opened waits for the client's GET to take it.
pub const HOLD: Duration = Duration::from_secs(10);
/// How long a request waits at most for its session's GET stream to open upstream.
pub const MAX_WAIT: Duration = Duration::from_secs(5);

/// A session: its agent and the gateway's session id.
type Key = (Identity, String);

/// The sessions of this instance whose GET stream is on its way upstream.
#[derive(Default)]
pub struct OpeningStreams {
    opening: Mutex<HashMap<Key, watch::Receiver<()>>>,
    /// Streams the gateway opened, each with the number that tells its hold from a later one's.
    held: Mutex<HashMap<Key, (u64, UpstreamResponse)>>,
    holds: AtomicU64,
}

impl std::fmt::Debug for OpeningStreams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpeningStreams")
            .field("opening", &self.len())
            .field("held", &self.held().len())
            .finish()
    }
}

/// Held while a GET stream is on its way upstream; dropping it lets the session's POSTs go.
#[derive(Debug)]
pub struct Opening {
    streams: Arc<OpeningStreams>,
    key: Key,
    // Dropped with the guard: waiters see their channel close.
    _open: watch::Sender<()>,
    receiver: watch::Receiver<()>,
}

impl OpeningStreams {
    /// Marks `agent`'s session `session` as opening its GET stream until the guard is dropped.
    pub fn open(self: &Arc<Self>, agent: Identity, session: &str) -> Opening {
        let (open, receiver) = watch::channel(());
        let key = (agent, session.to_owned());
        self.lock().insert(key.clone(), receiver.clone());
        Opening {
            streams: Arc::clone(self),
            key,
            _open: open,
            receiver,
        }
    }

    /// Waits, at most `limit`, until no GET stream of `agent`'s session `session` is on its way
    /// upstream. Whether it had to wait.
    pub async fn settled(&self, agent: Identity, session: &str, limit: Duration) -> bool {
        match self.pending(agent, session) {
            Some(pending) => {
                pending.settled(limit).await;
                true
            }
            None => false,
        }
    }

    /// The GET stream of `agent`'s session `session` on its way upstream now, if any: a GET takes
    /// it before marking its own, to wait for the stream the gateway is opening.
    pub fn pending(&self, agent: Identity, session: &str) -> Option<Pending> {
        let opening = self.lock();
        // Every POST asks; nearly always no GET is on its way, and the key is not built.
        if opening.is_empty() {
            return None;
        }
        opening
            .get(&(agent, session.to_owned()))
            .cloned()
            .map(Pending)
    }

    /// Keeps `stream`, the upstream GET stream the gateway opened for `agent`'s session `session`,
    /// for the client's GET to [`take`](Self::take); drops it (closing it upstream) after [`HOLD`].
    pub fn hold(self: &Arc<Self>, agent: Identity, session: &str, stream: UpstreamResponse) {
        let number = self.holds.fetch_add(1, Ordering::Relaxed);
        let key = (agent, session.to_owned());
        self.held().insert(key.clone(), (number, stream));
        let streams = Arc::clone(self);
        tokio::spawn(async move {
            tokio::time::sleep(HOLD).await;
            let mut held = streams.held();
            if held.get(&key).is_some_and(|(n, _)| *n == number) {
                held.remove(&key);
            }
        });
    }

    /// The upstream GET stream the gateway holds for `agent`'s session `session`, if any.
    pub fn take(&self, agent: Identity, session: &str) -> Option<UpstreamResponse> {
        self.held()
            .remove(&(agent, session.to_owned()))
            .map(|(_, stream)| stream)
    }

    fn held(&self) -> std::sync::MutexGuard<'_, HashMap<Key, (u64, UpstreamResponse)>> {
        // A map of streams, whole after every change.
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// How many GET streams are on their way upstream.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, watch::Receiver<()>>> {
        // The map holds no invariant a panic elsewhere could break.
        self.opening.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A GET stream on its way upstream, as another request of its session sees it.
#[derive(Debug)]
pub struct Pending(watch::Receiver<()>);

impl Pending {
    /// Waits, at most `limit`, until the stream is open upstream (or failed).
    pub async fn settled(mut self, limit: Duration) {
        // The sender never sends: `changed` ends when the guard drops it.
        let _ = tokio::time::timeout(limit, self.0.changed()).await;
    }
}

impl Drop for Opening {
    fn drop(&mut self) {
        let mut opening = self.streams.lock();
        // A second GET of the same session may have taken the place since: leave that one.
        if opening
            .get(&self.key)
            .is_some_and(|r| r.same_channel(&self.receiver))
        {
            opening.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cerberus_core::AgentId;

    fn agent(name: &str) -> Identity {
        Identity::standalone(AgentId::from_name(name))
    }

    #[tokio::test(start_paused = true)]
    async fn a_post_waits_for_its_sessions_opening_stream_only() {
        let streams = Arc::new(OpeningStreams::default());
        assert!(
            !streams
                .settled(agent("a"), "s1", Duration::from_secs(5))
                .await
        );

        let opening = streams.open(agent("a"), "s1");
        // Another session, or another agent's session of the same id, does not wait.
        assert!(
            !streams
                .settled(agent("a"), "s2", Duration::from_secs(5))
                .await
        );
        assert!(
            !streams
                .settled(agent("b"), "s1", Duration::from_secs(5))
                .await
        );

        let waiter = tokio::spawn({
            let streams = Arc::clone(&streams);
            async move {
                let start = tokio::time::Instant::now();
                let waited = streams
                    .settled(agent("a"), "s1", Duration::from_secs(60))
                    .await;
                (waited, start.elapsed())
            }
        });
        tokio::time::sleep(Duration::from_secs(2)).await;
        drop(opening);
        let (waited, elapsed) = waiter.await.unwrap();
        assert!(waited);
        assert_eq!(
            elapsed,
            Duration::from_secs(2),
            "released when the stream opened"
        );
        assert!(streams.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_stream_that_never_opens_holds_posts_only_up_to_the_limit() {
        let streams = Arc::new(OpeningStreams::default());
        let _opening = streams.open(agent("a"), "s1");
        let start = tokio::time::Instant::now();
        assert!(
            streams
                .settled(agent("a"), "s1", Duration::from_secs(30))
                .await
        );
        assert_eq!(start.elapsed(), Duration::from_secs(30));
    }

    #[test]
    fn a_replaced_guard_leaves_the_newer_mark() {
        let streams = Arc::new(OpeningStreams::default());
        let first = streams.open(agent("a"), "s1");
        let second = streams.open(agent("a"), "s1");
        drop(first);
        assert_eq!(streams.len(), 1, "the second GET is still on its way");
        drop(second);
        assert!(streams.is_empty());
    }
}
