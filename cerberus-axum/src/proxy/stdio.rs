//! stdio upstreams: one child process per gateway session, spoken to one JSON-RPC message per line.
//!
//! What the process writes is routed: a response to the POST that sent its request, a progress
//! notification to the POST that set its token, anything else (other notifications, server requests)
//! to the newest POST still waiting for an answer, else to the session's GET stream, else to a small
//! backlog the next GET drains. A process that exits ends its session: the client gets 404 on its next
//! request and initializes again, which starts a new process. Spawning backs off after failures.

use std::collections::{HashMap, VecDeque};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use cerberus_core::guardrails::pii::{PiiKinds, PiiScanner};
use cerberus_core::{Identity, Message, MessageKind};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

use super::replay::EventLog;
use crate::upstream::StdioUpstream;

/// The longest line accepted from a process.
const MAX_LINE_BYTES: usize = 16 * 1024 * 1024;
/// Messages waiting for a client that reads slowly; past this the process waits (its pipe fills).
const CHANNEL: usize = 64;
/// Messages kept for a GET stream that is not open yet.
const BACKLOG: usize = 256;
/// Environment variables a process inherits from the gateway; everything else (credentials, database
/// URLs) stays with the gateway.
const INHERITED_ENV: [&str; 7] = [
    "PATH",
    "HOME",
    "LANG",
    "LC_ALL",
    "TMPDIR",
    "USER",
    "SYSTEMROOT",
];

/// Why a stdio session could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// Too many processes already run.
    #[error("too many stdio sessions are open ({0}); try again later")]
    TooMany(usize),
    /// Recent starts failed: the next attempt waits.
    #[error("the upstream command failed recently; retry in {0:?}")]
    BackingOff(Duration),
    /// The command could not be started.
    #[error("cannot start the upstream command: {0}")]
    Io(#[from] std::io::Error),
}

#[derive(Debug, Default)]
struct Routes {
    by_id: HashMap<String, mpsc::Sender<Message>>,
    by_progress: HashMap<String, mpsc::Sender<Message>>,
    posts: Vec<(u64, mpsc::Sender<Message>)>,
    listener: Option<mpsc::Sender<Message>>,
    backlog: VecDeque<Message>,
}

/// One running upstream process.
#[derive(Debug)]
pub struct StdioProcess {
    label: String,
    /// The agent whose session it serves, in its workspace.
    owner: Identity,
    /// The writer task's input; taken at termination, which closes the process's stdin.
    stdin: Mutex<Option<mpsc::Sender<Bytes>>>,
    routes: Mutex<Routes>,
    last_used: Mutex<Instant>,
    next_post: AtomicU64,
    alive: AtomicBool,
    child: tokio::sync::Mutex<Option<Child>>,
    /// What the session's streams sent, for clients that resume with `Last-Event-ID`.
    pub events: Arc<EventLog>,
}

/// What a POST registered, to take back when it is done.
#[derive(Debug)]
pub struct PostRoutes {
    seq: u64,
    ids: Vec<String>,
    tokens: Vec<String>,
}

impl StdioProcess {
    /// Writes one message to the process.
    pub async fn send(&self, message: &Message) -> bool {
        self.touch();
        let mut line = message.to_bytes().to_vec();
        // One message per line: a serialised JSON value never holds a raw newline, but input bytes might.
        line.retain(|&b| b != b'\n' && b != b'\r');
        line.push(b'\n');
        let Some(stdin) = self.stdin.lock().ok().and_then(|s| s.clone()) else {
            return false;
        };
        stdin.send(Bytes::from(line)).await.is_ok()
    }

    /// Whether the process still runs.
    pub fn is_alive(&self) -> bool {
        self.alive.load(Ordering::Acquire)
    }

    fn touch(&self) {
        if let Ok(mut last) = self.last_used.lock() {
            *last = Instant::now();
        }
    }

    /// Whether a POST is waiting for its answers.
    fn busy(&self) -> bool {
        self.routes
            .lock()
            .is_ok_and(|routes| !routes.posts.is_empty())
    }

    fn idle_for(&self) -> Duration {
        self.last_used
            .lock()
            .map(|last| last.elapsed())
            .unwrap_or_default()
    }

    /// Routes the answers to `messages` (and their progress) to `sender`, until [`StdioProcess::release`].
    pub fn register(&self, messages: &[Message], sender: &mpsc::Sender<Message>) -> PostRoutes {
        let seq = self.next_post.fetch_add(1, Ordering::Relaxed);
        let mut ids = Vec::new();
        let mut tokens = Vec::new();
        for message in messages.iter().filter(|m| m.kind() == MessageKind::Request) {
            if let Some(id) = message.id() {
                ids.push(id.to_string());
            }
            if let Some(token) = message
                .params()
                .and_then(|p| p.get("_meta"))
                .and_then(|m| m.get("progressToken"))
            {
                tokens.push(token.to_string());
            }
        }
        if let Ok(mut routes) = self.routes.lock() {
            for id in &ids {
                routes.by_id.insert(id.clone(), sender.clone());
            }
            for token in &tokens {
                routes.by_progress.insert(token.clone(), sender.clone());
            }
            routes.posts.push((seq, sender.clone()));
        }
        PostRoutes { seq, ids, tokens }
    }

    /// Forgets what a POST registered.
    pub fn release(&self, post: &PostRoutes) {
        if let Ok(mut routes) = self.routes.lock() {
            for id in &post.ids {
                routes.by_id.remove(id);
            }
            for token in &post.tokens {
                routes.by_progress.remove(token);
            }
            routes.posts.retain(|(seq, _)| *seq != post.seq);
        }
    }

    /// Makes `sender` the session's GET stream, handing it what waited in the backlog.
    pub fn listen(&self, sender: mpsc::Sender<Message>) -> Vec<Message> {
        match self.routes.lock() {
            Ok(mut routes) => {
                routes.listener = Some(sender);
                routes.backlog.drain(..).collect()
            }
            Err(_) => Vec::new(),
        }
    }

    /// Where a message from the process goes.
    fn route(&self, message: &Message) -> Option<mpsc::Sender<Message>> {
        let mut routes = self.routes.lock().ok()?;
        let by_key = match message.kind() {
            MessageKind::Response | MessageKind::Error => {
                return message
                    .id()
                    .and_then(|id| routes.by_id.get(&id.to_string()).cloned());
            }
            MessageKind::Notification => message
                .params()
                .and_then(|p| p.get("progressToken"))
                .and_then(|token| routes.by_progress.get(&token.to_string()).cloned()),
            MessageKind::Request => None,
        };
        if by_key.is_some() {
            return by_key;
        }
        routes.posts.retain(|(_, sender)| !sender.is_closed());
        if let Some((_, sender)) = routes.posts.last() {
            return Some(sender.clone());
        }
        if let Some(listener) = routes.listener.as_ref().filter(|l| !l.is_closed()) {
            return Some(listener.clone());
        }
        if routes.backlog.len() >= BACKLOG {
            routes.backlog.pop_front();
        }
        routes.backlog.push_back(message.clone());
        None
    }

    /// Stops the process: closes its input, waits a little, then kills it.
    pub async fn terminate(&self) {
        self.alive.store(false, Ordering::Release);
        // Closing stdin is how a stdio MCP server is asked to stop.
        if let Ok(mut stdin) = self.stdin.lock() {
            stdin.take();
        }
        let running = self.child.lock().await.take();
        if let Some(mut running) = running
            && tokio::time::timeout(Duration::from_secs(2), running.wait())
                .await
                .is_err()
        {
            let _ = running.kill().await;
        }
    }
}

#[derive(Debug, Default)]
struct Backoff {
    failures: u32,
    until: Option<Instant>,
}

/// How many stdio processes may run, and for how long unused.
///
/// A client that never ends its session (the Inspector, mcp-remote, the conformance runner) keeps its
/// process until the idle timeout. So that one tenant cannot take every process slot, each agent and
/// each workspace has its own cap below the instance's: past them, and past the instance's cap, a new
/// session ends the longest-idle session of the same agent, or else of the same workspace, that is not
/// waiting for an answer, and is refused (503) only when there is none. Another workspace's sessions are
/// never ended to make room.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StdioLimits {
    /// Processes at once on this instance.
    pub max: usize,
    /// Processes at once for one workspace.
    pub per_workspace: usize,
    /// Processes at once for one agent.
    pub per_agent: usize,
    /// How long a process may go unused before it is stopped.
    pub idle: Duration,
}

/// Every stdio upstream process of this gateway instance, by gateway session id.
#[derive(Debug)]
pub struct StdioSessions {
    processes: Mutex<HashMap<String, Arc<StdioProcess>>>,
    backoff: Mutex<HashMap<String, Backoff>>,
    limits: StdioLimits,
    reaper_started: AtomicBool,
    scanner: Arc<PiiScanner>,
}

impl StdioSessions {
    /// No processes yet; at most as many at once as `limits` say, each stopped after its idle time.
    pub fn new(limits: StdioLimits) -> Self {
        Self {
            processes: Mutex::new(HashMap::new()),
            backoff: Mutex::new(HashMap::new()),
            limits,
            reaper_started: AtomicBool::new(false),
            scanner: Arc::new(PiiScanner::new(PiiKinds::all())),
        }
    }

    /// Takes out the session to end so that `owner` may start one, if a cap is reached: the
    /// longest-idle of the agent's, else of the workspace's, that waits for no answer.
    fn make_room(&self, owner: &Identity) -> Result<Option<Arc<StdioProcess>>, SpawnError> {
        let Ok(mut processes) = self.processes.lock() else {
            return Err(SpawnError::TooMany(self.limits.max));
        };
        let same_agent = |p: &StdioProcess| p.owner.agent == owner.agent;
        let same_workspace = |p: &StdioProcess| {
            p.owner.organisation == owner.organisation && p.owner.workspace == owner.workspace
        };
        let count =
            |of: &dyn Fn(&StdioProcess) -> bool| processes.values().filter(|p| of(p)).count();
        let (scope, limit): (&dyn Fn(&StdioProcess) -> bool, usize) =
            if count(&same_agent) >= self.limits.per_agent {
                (&same_agent, self.limits.per_agent)
            } else if count(&same_workspace) >= self.limits.per_workspace {
                (&same_workspace, self.limits.per_workspace)
            } else if processes.len() >= self.limits.max {
                (&same_workspace, self.limits.max)
            } else {
                return Ok(None);
            };
        let idlest = processes
            .iter()
            .filter(|(_, p)| scope(p) && !p.busy())
            .max_by_key(|(_, p)| p.idle_for())
            .map(|(id, _)| id.clone());
        match idlest.and_then(|id| processes.remove(&id)) {
            Some(process) => Ok(Some(process)),
            None => Err(SpawnError::TooMany(limit)),
        }
    }

    /// The process serving `session`, if it runs on this instance.
    pub fn get(&self, session: &str) -> Option<Arc<StdioProcess>> {
        let process = self.processes.lock().ok()?.get(session).cloned()?;
        process.is_alive().then_some(process)
    }

    /// The number of running processes.
    pub fn len(&self) -> usize {
        self.processes.lock().map_or(0, |p| p.len())
    }

    /// Whether no process runs.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Starts a process for `owner`'s new session `session`, ending another of its agent's or
    /// workspace's first if a cap is reached ([`StdioLimits`]).
    pub async fn spawn(
        self: &Arc<Self>,
        session: &str,
        upstream: &StdioUpstream,
        label: &str,
        owner: Identity,
    ) -> Result<Arc<StdioProcess>, SpawnError> {
        self.start_reaper();
        let key = upstream.command.display().to_string();
        if let Some(wait) = self.backoff_left(&key) {
            return Err(SpawnError::BackingOff(wait));
        }
        if let Some(evicted) = self.make_room(&owner)? {
            tracing::info!(
                upstream = %evicted.label,
                idle_secs = evicted.idle_for().as_secs(),
                "ending the longest-idle stdio session of the agent or workspace to make room"
            );
            evicted.terminate().await;
        }
        let process = match start(upstream, label, owner, Arc::clone(&self.scanner)) {
            Ok(process) => process,
            Err(e) => {
                self.failed(&key);
                return Err(e.into());
            }
        };
        if let Ok(mut backoff) = self.backoff.lock() {
            backoff.remove(&key);
        }
        if let Ok(mut processes) = self.processes.lock() {
            processes.insert(session.to_owned(), Arc::clone(&process));
        }
        Ok(process)
    }

    /// Ends `session`'s process, if it runs here.
    pub async fn end(&self, session: &str) {
        let process = self
            .processes
            .lock()
            .ok()
            .and_then(|mut p| p.remove(session));
        if let Some(process) = process {
            process.terminate().await;
        }
    }

    /// Stops every process (at shutdown).
    pub async fn shutdown(&self) {
        let all: Vec<Arc<StdioProcess>> = self
            .processes
            .lock()
            .map(|mut p| p.drain().map(|(_, v)| v).collect())
            .unwrap_or_default();
        for process in all {
            process.terminate().await;
        }
    }

    fn backoff_left(&self, key: &str) -> Option<Duration> {
        let backoff = self.backoff.lock().ok()?;
        let until = backoff.get(key)?.until?;
        until.checked_duration_since(Instant::now())
    }

    fn failed(&self, key: &str) {
        if let Ok(mut backoff) = self.backoff.lock() {
            let entry = backoff.entry(key.to_owned()).or_default();
            entry.failures = entry.failures.saturating_add(1);
            let wait = Duration::from_millis(250)
                .saturating_mul(1 << entry.failures.min(7))
                .min(Duration::from_secs(30));
            entry.until = Some(Instant::now() + wait);
        }
    }

    fn start_reaper(self: &Arc<Self>) {
        if self.reaper_started.swap(true, Ordering::AcqRel) {
            return;
        }
        let sessions = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(15));
            loop {
                tick.tick().await;
                let Some(sessions) = sessions.upgrade() else {
                    return;
                };
                let stale: Vec<(String, Arc<StdioProcess>)> = match sessions.processes.lock() {
                    Ok(mut processes) => {
                        let ids: Vec<String> = processes
                            .iter()
                            .filter(|(_, p)| !p.is_alive() || p.idle_for() > sessions.limits.idle)
                            .map(|(id, _)| id.clone())
                            .collect();
                        ids.into_iter()
                            .filter_map(|id| processes.remove(&id).map(|p| (id, p)))
                            .collect()
                    }
                    Err(_) => Vec::new(),
                };
                for (_, process) in stale {
                    tracing::info!(upstream = %process.label, "stopping an idle or exited stdio upstream");
                    process.terminate().await;
                }
            }
        });
    }
}

fn start(
    upstream: &StdioUpstream,
    label: &str,
    owner: Identity,
    scanner: Arc<PiiScanner>,
) -> std::io::Result<Arc<StdioProcess>> {
    let mut command = Command::new(&upstream.command);
    command
        .args(&upstream.args)
        .env_clear()
        .envs(
            INHERITED_ENV
                .iter()
                .filter_map(|name| std::env::var_os(name).map(|value| (*name, value))),
        )
        .envs(&upstream.env)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(cwd) = &upstream.cwd {
        command.current_dir(cwd);
    }
    let mut child = command.spawn()?;
    let missing = || std::io::Error::other("the child's pipes were not captured");
    let mut stdin = child.stdin.take().ok_or_else(missing)?;
    let stdout = child.stdout.take().ok_or_else(missing)?;
    let stderr = child.stderr.take().ok_or_else(missing)?;
    let (stdin_tx, mut stdin_rx) = mpsc::channel::<Bytes>(CHANNEL);
    let process = Arc::new(StdioProcess {
        label: label.to_owned(),
        owner,
        stdin: Mutex::new(Some(stdin_tx)),
        routes: Mutex::new(Routes::default()),
        last_used: Mutex::new(Instant::now()),
        next_post: AtomicU64::new(0),
        alive: AtomicBool::new(true),
        events: Arc::default(),
        child: tokio::sync::Mutex::new(Some(child)),
    });

    tokio::spawn(async move {
        while let Some(line) = stdin_rx.recv().await {
            if stdin.write_all(&line).await.is_err() || stdin.flush().await.is_err() {
                return;
            }
        }
    });

    forward_stderr(stderr, label.to_owned(), scanner);

    let reader = Arc::clone(&process);
    tokio::spawn(async move {
        let mut stdout = BufReader::new(stdout);
        let mut line = Vec::new();
        loop {
            line.clear();
            match read_line(&mut stdout, &mut line, MAX_LINE_BYTES).await {
                Ok(LineRead::Line) => {}
                Ok(LineRead::End) => break,
                Ok(LineRead::TooLong) => {
                    tracing::warn!(upstream = %reader.label, "stopping a stdio upstream that sent a line over {MAX_LINE_BYTES} bytes");
                    break;
                }
                Err(e) => {
                    tracing::warn!(upstream = %reader.label, error = %e, "stopping a stdio upstream that broke the protocol");
                    break;
                }
            }
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            // The message is the line without its end: kept, the newline became an empty `data:`
            // line of every event the message was relayed in.
            let text = line.strip_suffix(b"\n").unwrap_or(&line);
            let text = text.strip_suffix(b"\r").unwrap_or(text);
            let message = match Message::parse(Bytes::copy_from_slice(text)) {
                Ok(message) => message,
                Err(e) => {
                    tracing::warn!(upstream = %reader.label, error = %e, "ignored a line that is not a JSON-RPC message");
                    continue;
                }
            };
            if let Some(sender) = reader.route(&message) {
                // The POST or GET stream may have ended meanwhile: the message has nowhere to go.
                let _ = sender.send(message).await;
            }
        }
        reader.alive.store(false, Ordering::Release);
        // Dropping every route ends every stream waiting on this process.
        if let Ok(mut routes) = reader.routes.lock() {
            *routes = Routes::default();
        }
        let status = reader.child.lock().await.as_mut().map(|c| c.try_wait());
        tracing::info!(upstream = %reader.label, ?status, "a stdio upstream ended");
    });
    Ok(process)
}

/// `line` with every piece of personal data replaced, for the log.
pub fn redact_for_log(scanner: &PiiScanner, line: &str) -> String {
    let mut clean = String::with_capacity(line.len());
    let mut last = 0;
    scanner.scan(line, |finding| {
        clean.push_str(line.get(last..finding.span.start).unwrap_or_default());
        clean.push_str("[REDACTED]");
        last = finding.span.end;
    });
    clean.push_str(line.get(last..).unwrap_or_default());
    clean
}

/// What [`read_line`] found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum LineRead {
    /// A line (with its newline, unless the stream ended without one) is in the buffer.
    Line,
    /// The line exceeded the limit: what was read of it is discarded, and the reader stands at the
    /// start of the next line.
    TooLong,
    /// The stream ended.
    End,
}

/// Reads one line of at most `max` bytes into `line`.
pub(crate) async fn read_line<R: tokio::io::AsyncBufRead + Unpin>(
    reader: &mut R,
    line: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<LineRead> {
    let mut discarding = false;
    loop {
        let buffer = reader.fill_buf().await?;
        if buffer.is_empty() {
            return Ok(match (discarding, line.is_empty()) {
                (true, _) => LineRead::TooLong,
                (false, true) => LineRead::End,
                (false, false) => LineRead::Line,
            });
        }
        let (take, done) = match buffer.iter().position(|&b| b == b'\n') {
            Some(end) => (end + 1, true),
            None => (buffer.len(), false),
        };
        if !discarding {
            line.extend_from_slice(buffer.get(..take).unwrap_or_default());
        }
        reader.consume(take);
        if line.len() > max {
            line.clear();
            discarding = true;
        }
        if done {
            return Ok(if discarding {
                LineRead::TooLong
            } else {
                LineRead::Line
            });
        }
    }
}

/// Logs what a child process writes to stderr, line by line, with personal data redacted.
pub(crate) fn forward_stderr(
    stderr: tokio::process::ChildStderr,
    label: String,
    scanner: Arc<PiiScanner>,
) {
    tokio::spawn(async move {
        let mut lines = BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            // A server's diagnostics are free text: personal data in them never reaches the gateway's log.
            let clean = redact_for_log(&scanner, &line);
            tracing::info!(upstream = %label, "{clean}");
        }
    });
}

#[cfg(test)]
mod tests {
    use cerberus_core::{AgentId, OrganisationId, WorkspaceId};

    use super::*;

    /// An agent of workspace `workspace` (of one organisation).
    fn agent(workspace: u128, agent: u128) -> Identity {
        Identity {
            organisation: OrganisationId(uuid::Uuid::from_u128(1)),
            workspace: WorkspaceId(uuid::Uuid::from_u128(workspace)),
            agent: AgentId(uuid::Uuid::from_u128(agent)),
        }
    }

    /// `cat`, which runs until its input closes: enough of a process for the caps.
    fn cat() -> StdioUpstream {
        StdioUpstream {
            command: "cat".into(),
            args: Vec::new(),
            env: Default::default(),
            cwd: None,
        }
    }

    #[tokio::test]
    async fn an_agent_or_workspace_at_its_cap_ends_its_own_idlest_session_never_another() {
        let sessions = Arc::new(StdioSessions::new(StdioLimits {
            max: 4,
            per_workspace: 3,
            per_agent: 2,
            idle: Duration::from_secs(300),
        }));
        let (a1, a2, b) = (agent(1, 1), agent(1, 2), agent(2, 3));
        let spawn = |id: &'static str, owner: Identity| {
            let sessions = Arc::clone(&sessions);
            async move { sessions.spawn(id, &cat(), "cat", owner).await.map(drop) }
        };
        let running = |ids: &[&str]| ids.iter().all(|id| sessions.get(id).is_some());

        spawn("a1-1", a1).await.unwrap();
        spawn("a1-2", a1).await.unwrap();
        // The agent's cap: its idlest session ends.
        spawn("a1-3", a1).await.unwrap();
        assert!(sessions.get("a1-1").is_none() && running(&["a1-2", "a1-3"]));
        // The workspace's cap (3): its idlest session ends, whichever agent's.
        spawn("a2-1", a2).await.unwrap();
        spawn("a2-2", a2).await.unwrap();
        assert!(sessions.get("a1-2").is_none() && running(&["a1-3", "a2-1", "a2-2"]));
        // The instance's cap (4) with another workspace: room for one, then its own idlest ends;
        // the first workspace keeps its sessions.
        spawn("b-1", b).await.unwrap();
        spawn("b-2", b).await.unwrap();
        assert!(sessions.get("b-1").is_none());
        assert!(running(&["a1-3", "a2-1", "a2-2", "b-2"]));
        assert_eq!(sessions.len(), 4);
        // A session waiting for an answer is not ended: with none other, the new one is refused.
        let (sender, _receiver) = mpsc::channel(1);
        let process = sessions.get("b-2").unwrap();
        let post = process.register(&[], &sender);
        assert!(matches!(spawn("b-3", b).await, Err(SpawnError::TooMany(4))));
        process.release(&post);
        spawn("b-3", b).await.unwrap();
        sessions.shutdown().await;
    }

    #[test]
    fn upstream_diagnostics_lose_their_personal_data() {
        let scanner = PiiScanner::new(PiiKinds::all());
        assert_eq!(
            redact_for_log(&scanner, "lookup for jane@example.com from 10.0.0.7 failed"),
            "lookup for [REDACTED] from [REDACTED] failed"
        );
        assert_eq!(
            redact_for_log(&scanner, "listening on stdio"),
            "listening on stdio"
        );
    }

    #[tokio::test]
    async fn reads_bounded_lines() {
        let mut input: &[u8] = b"one\nmuch too long\ntwo";
        let mut line = Vec::new();
        let mut read = async |line: &mut Vec<u8>| read_line(&mut input, line, 5).await.unwrap();
        assert_eq!(read(&mut line).await, LineRead::Line);
        assert_eq!(line, b"one\n");
        line.clear();
        assert_eq!(
            read(&mut line).await,
            LineRead::TooLong,
            "skipped to the next line"
        );
        assert!(line.is_empty());
        assert_eq!(read(&mut line).await, LineRead::Line);
        assert_eq!(line, b"two");
        line.clear();
        assert_eq!(read(&mut line).await, LineRead::End);
    }
}
