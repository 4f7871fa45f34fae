//! What each side of a conversation has asked the other: requests awaiting their answers, by id.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::identity::Identity;
use crate::message::RequestId;

/// How many requests may await an answer in each direction of one conversation; beyond that, answers
/// are still checked, without knowing the method they answer.
pub const MAX_PENDING: usize = 10_000;

/// A request awaiting its answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pending {
    /// Its method.
    pub method: String,
    /// The tool, prompt or resource it named.
    pub target: Option<String>,
    /// When it passed the pipeline on its way to the other side.
    pub sent: Instant,
}

type Book = HashMap<RequestId, Pending, foldhash::fast::RandomState>;

/// One client–server conversation's requests awaiting answers, each side's apart: a session of the
/// gateway or of the tower layer, one `cerberus stdio` run. Shared by every exchange of the
/// conversation (`&self` throughout), so that the answer a client sends in one HTTP request is checked
/// knowing the server request it answers, which came in another.
#[derive(Debug)]
pub struct Conversation {
    identity: Option<Identity>,
    /// Requests the client sent, awaiting the server's answers.
    from_client: Mutex<Book>,
    /// Requests the server sent, awaiting the client's answers.
    from_server: Mutex<Book>,
    last_used: Mutex<Instant>,
}

impl Default for Conversation {
    fn default() -> Self {
        Self::new()
    }
}

impl Conversation {
    /// A conversation with nothing pending.
    pub fn new() -> Self {
        Self {
            identity: None,
            from_client: Mutex::default(),
            from_server: Mutex::default(),
            last_used: Mutex::new(Instant::now()),
        }
    }

    fn of(identity: Identity) -> Self {
        Self {
            identity: Some(identity),
            ..Self::new()
        }
    }

    /// Notes a request the client sent as `id`, which the server is to answer.
    pub fn client_asked(&self, id: RequestId, pending: Pending) {
        remember(&self.from_client, id, pending);
    }

    /// Notes a request the server sent as `id`, which the client is to answer.
    pub fn server_asked(&self, id: RequestId, pending: Pending) {
        remember(&self.from_server, id, pending);
    }

    /// The client's request the server's answer `id` answers, forgotten.
    pub fn server_answered(&self, id: &RequestId) -> Option<Pending> {
        lock(&self.from_client).remove(id)
    }

    /// The server's request the client's answer `id` answers, forgotten.
    pub fn client_answered(&self, id: &RequestId) -> Option<Pending> {
        lock(&self.from_server).remove(id)
    }

    /// Forgets client requests whose answers will not come this way (their stream ended without
    /// them).
    pub fn forget_client_requests<'a>(&self, ids: impl IntoIterator<Item = &'a RequestId>) {
        let mut book = lock(&self.from_client);
        for id in ids {
            book.remove(id);
        }
    }

    /// How many requests of the client and of the server await their answers.
    pub fn pending(&self) -> (usize, usize) {
        (lock(&self.from_client).len(), lock(&self.from_server).len())
    }

    fn touch(&self) -> Instant {
        let now = Instant::now();
        *lock(&self.last_used) = now;
        now
    }

    fn idle_since(&self) -> Instant {
        *lock(&self.last_used)
    }
}

fn remember(book: &Mutex<Book>, id: RequestId, pending: Pending) {
    let mut book = lock(book);
    if book.len() < MAX_PENDING || book.contains_key(&id) {
        book.insert(id, pending);
    }
}

/// The lock's data; a lock a panic poisoned still holds consistent maps (each operation is one
/// insert or remove), so it is used as it is.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Conversations by session id, for doors that see a session one HTTP request at a time. Bounded:
/// past `max` conversations, those idle longer than `idle` are forgotten, then the one idle longest.
///
/// A conversation belongs to the identity that opened it: a caller naming another caller's session
/// gets a conversation of its own that is not kept, so it can neither read nor spend the other's
/// pending requests.
#[derive(Debug)]
pub struct Conversations {
    by_session: Mutex<HashMap<Box<str>, Arc<Conversation>, foldhash::fast::RandomState>>,
    max: usize,
    idle: Duration,
}

impl Default for Conversations {
    /// Up to 100,000 conversations, each forgotten after an hour without a message when room is
    /// needed.
    fn default() -> Self {
        Self::new(100_000, Duration::from_secs(3600))
    }
}

impl Conversations {
    /// Up to `max` conversations; past that, those idle for `idle` go first.
    pub fn new(max: usize, idle: Duration) -> Self {
        Self {
            by_session: Mutex::default(),
            max: max.max(1),
            idle,
        }
    }

    /// The conversation of `session` for `identity`, opened on first use.
    pub fn get(&self, session: &str, identity: &Identity) -> Arc<Conversation> {
        let mut sessions = lock(&self.by_session);
        if let Some(conversation) = sessions.get(session) {
            if conversation.identity.as_ref() != Some(identity) {
                return Arc::new(Conversation::of(*identity));
            }
            conversation.touch();
            return Arc::clone(conversation);
        }
        if sessions.len() >= self.max {
            let now = Instant::now();
            sessions.retain(|_, c| now.duration_since(c.idle_since()) < self.idle);
            if sessions.len() >= self.max
                && let Some(oldest) = sessions
                    .iter()
                    .min_by_key(|(_, c)| c.idle_since())
                    .map(|(id, _)| id.clone())
            {
                sessions.remove(&oldest);
            }
        }
        let conversation = Arc::new(Conversation::of(*identity));
        sessions.insert(session.into(), Arc::clone(&conversation));
        conversation
    }

    /// Ends the conversation of `session`, if `identity` opened it.
    pub fn end(&self, session: &str, identity: &Identity) {
        let mut sessions = lock(&self.by_session);
        if sessions
            .get(session)
            .is_some_and(|c| c.identity.as_ref() == Some(identity))
        {
            sessions.remove(session);
        }
    }

    /// How many conversations are kept.
    pub fn len(&self) -> usize {
        lock(&self.by_session).len()
    }

    /// Whether none is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(method: &str) -> Pending {
        Pending {
            method: method.into(),
            target: None,
            sent: Instant::now(),
        }
    }

    #[test]
    fn each_side_answers_the_other_sides_requests_once() {
        let conversation = Conversation::new();
        let id = RequestId::Unsigned(1);
        conversation.client_asked(id.clone(), pending("tools/call"));
        conversation.server_asked(id.clone(), pending("sampling/createMessage"));
        assert_eq!(conversation.pending(), (1, 1));
        assert_eq!(
            conversation.client_answered(&id).map(|p| p.method),
            Some("sampling/createMessage".into())
        );
        assert_eq!(conversation.client_answered(&id), None, "once");
        assert_eq!(
            conversation.server_answered(&id).map(|p| p.method),
            Some("tools/call".into())
        );
        assert_eq!(conversation.pending(), (0, 0));
    }

    #[test]
    fn a_side_keeps_at_most_max_pending_requests() {
        let conversation = Conversation::new();
        for n in 0..MAX_PENDING as u64 + 10 {
            conversation.client_asked(RequestId::Unsigned(n), pending("ping"));
        }
        assert_eq!(conversation.pending(), (MAX_PENDING, 0));
        conversation.forget_client_requests(&[RequestId::Unsigned(0)]);
        assert_eq!(conversation.pending(), (MAX_PENDING - 1, 0));
    }

    #[test]
    fn a_session_is_its_owners_and_the_registry_stays_bounded() {
        let conversations = Conversations::new(2, Duration::from_secs(3600));
        let (alice, mallory) = (Identity::new_random(), Identity::new_random());
        let mine = conversations.get("s1", &alice);
        mine.server_asked(RequestId::Unsigned(7), pending("elicitation/create"));
        assert!(Arc::ptr_eq(&mine, &conversations.get("s1", &alice)));

        // Another caller naming the session gets a conversation of its own, which is not kept.
        let theirs = conversations.get("s1", &mallory);
        assert_eq!(theirs.client_answered(&RequestId::Unsigned(7)), None);
        assert_eq!(
            mine.pending(),
            (0, 1),
            "the owner's request is still pending"
        );
        conversations.end("s1", &mallory);
        assert_eq!(conversations.len(), 1, "only its owner ends it");

        conversations.get("s2", &alice);
        conversations.get("s3", &alice);
        assert_eq!(conversations.len(), 2, "the one idle longest made room");
        assert!(!Arc::ptr_eq(&mine, &conversations.get("s1", &alice)));
        conversations.end("s1", &alice);
        assert_eq!(conversations.len(), 1);
    }
}
