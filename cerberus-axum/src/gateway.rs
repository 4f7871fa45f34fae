//! The gateway's shared state: who holds which key, which upstream and pipeline each agent gets, where
//! sessions and audit events go.

use crate::proxy::listening::OpeningStreams;
use crate::proxy::turns::LargeMessageTurns;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use cerberus_core::audit::{AuditSink, PayloadRedactor};
use cerberus_core::exchange::{Conversation, Conversations, Exchange, Observer, Recorder};
use cerberus_core::session::{SessionLimits, SessionStore};
use cerberus_core::{CallerProfile, Identity, Pipeline, Profile};
use serde::{Deserialize, Serialize};

use crate::auth::{KeyIndex, display_prefix};
use crate::directory::{AgentDirectory, DirectoryError};
use crate::egress::EgressPolicy;
use crate::listener::ConnectionLimits;
use crate::metrics::Metrics;
use crate::proxy::stdio::{StdioLimits, StdioSessions};
use crate::upstream::Upstream;
use crate::upstream_client::{UpstreamClient, UpstreamError};

/// The gateway's server settings (`[server]` in the configuration file).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSettings {
    /// The address to listen on.
    pub listen: SocketAddr,
    /// The largest request body accepted, in bytes (larger ones get 413).
    pub max_body_bytes: usize,
    /// How long an upstream may take to start answering, in seconds.
    pub upstream_timeout_secs: u64,
    /// Origins allowed besides loopback ones (`https://app.example.com`); other origins get 403.
    pub allowed_origins: Vec<String>,
    /// Host names allowed in the `Host` header; empty means loopback names only when listening on
    /// loopback, and any host otherwise.
    pub allowed_hosts: Vec<String>,
    /// How long a stdio session may stay unused before its process is stopped, in seconds.
    pub stdio_idle_timeout_secs: u64,
    /// The most stdio upstream processes running at once on this instance.
    pub max_stdio_sessions: usize,
    /// The most stdio upstream processes of one workspace at once; past it, a new session ends the
    /// workspace's longest-idle one.
    pub max_stdio_sessions_per_workspace: usize,
    /// The most stdio upstream processes of one agent at once; past it, a new session ends the
    /// agent's longest-idle one.
    pub max_stdio_sessions_per_agent: usize,
    /// A PEM file of certificate authorities trusted for `https` upstreams besides the public ones
    /// (an organisation's own authority); a relative path is relative to the configuration file.
    pub upstream_ca_file: Option<PathBuf>,
    /// The most gateway sessions kept in this instance's memory (without `[redis]`); past it, new
    /// sessions are refused (503) until idle ones end.
    pub max_sessions: usize,
    /// The most sessions one agent keeps open; its session idle longest ends to make room.
    pub max_sessions_per_agent: usize,
    /// How long a session kept in memory may go unused before it ends, in seconds.
    pub session_idle_secs: u64,
    /// The most client connections served at once; past it, new ones wait to be accepted.
    pub max_connections: usize,
    /// How long a connection may take to send a request's head, or stay idle before its next
    /// request, in seconds; then it is closed.
    pub header_read_timeout_secs: u64,
    /// The largest request head (request line and headers), in bytes; larger ones get 431.
    pub max_header_bytes: usize,
    /// How long a request's body may take to arrive, in seconds; a slower one gets 408.
    pub body_read_timeout_secs: u64,
    /// Networks that upstreams set through the admin API may reach although they are private
    /// (`["10.20.0.0/16"]`); by default such upstreams reach public addresses only.
    pub admin_upstream_allow: Vec<ipnet::IpNet>,
    /// Networks that upstreams set through the admin API may never reach, even when allowed above or
    /// public (the addresses of the gateway's own database and Redis, for example).
    pub admin_upstream_deny: Vec<ipnet::IpNet>,
    /// Networks that `webhook` guardrails may reach although they are private (a decision service
    /// beside the gateway: `["127.0.0.1/32"]`); by default webhooks reach public addresses only, and
    /// never those of `admin_upstream_deny`.
    pub webhook_allow: Vec<ipnet::IpNet>,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_body_bytes: 4 * 1024 * 1024,
            upstream_timeout_secs: 120,
            allowed_origins: Vec::new(),
            allowed_hosts: Vec::new(),
            stdio_idle_timeout_secs: 5 * 60,
            max_stdio_sessions: 64,
            max_stdio_sessions_per_workspace: 16,
            max_stdio_sessions_per_agent: 4,
            upstream_ca_file: None,
            max_sessions: 100_000,
            max_sessions_per_agent: 1_000,
            session_idle_secs: 3600,
            max_connections: 10_000,
            header_read_timeout_secs: 30,
            max_header_bytes: 64 * 1024,
            body_read_timeout_secs: 30,
            admin_upstream_allow: Vec::new(),
            admin_upstream_deny: Vec::new(),
            webhook_allow: Vec::new(),
        }
    }
}

impl ServerSettings {
    /// How the HTTP server treats connections.
    pub fn connection_limits(&self) -> ConnectionLimits {
        ConnectionLimits {
            max_connections: self.max_connections,
            header_read_timeout: Duration::from_secs(self.header_read_timeout_secs),
            max_header_bytes: self.max_header_bytes,
        }
    }

    /// Which addresses upstreams set through the admin API may reach.
    pub fn egress_policy(&self) -> EgressPolicy {
        EgressPolicy::new(
            self.admin_upstream_allow.clone(),
            self.admin_upstream_deny.clone(),
        )
    }

    /// Which addresses `webhook` guardrails may reach.
    pub fn webhook_egress_policy(&self) -> EgressPolicy {
        EgressPolicy::new(self.webhook_allow.clone(), self.admin_upstream_deny.clone())
    }

    /// The caps and idle time of stdio upstream processes.
    pub fn stdio_limits(&self) -> StdioLimits {
        StdioLimits {
            max: self.max_stdio_sessions.max(1),
            per_workspace: self.max_stdio_sessions_per_workspace.max(1),
            per_agent: self.max_stdio_sessions_per_agent.max(1),
            idle: self.stdio_idle_timeout(),
        }
    }

    /// How long a request's body may take to arrive.
    pub fn body_read_timeout(&self) -> Duration {
        Duration::from_secs(self.body_read_timeout_secs)
    }

    /// The limits of sessions kept in memory.
    pub fn session_limits(&self) -> SessionLimits {
        let mut limits = SessionLimits::default();
        limits.max_sessions = self.max_sessions;
        limits.max_per_agent = self.max_sessions_per_agent;
        limits.idle = Duration::from_secs(self.session_idle_secs);
        limits
    }

    /// The upstream timeout.
    pub fn upstream_timeout(&self) -> Duration {
        Duration::from_secs(self.upstream_timeout_secs)
    }

    /// How long a stdio session may stay unused before its process is stopped.
    pub fn stdio_idle_timeout(&self) -> Duration {
        Duration::from_secs(self.stdio_idle_timeout_secs)
    }
}

/// Everything the proxy needs to know about one agent.
#[derive(Debug)]
#[non_exhaustive]
pub struct AgentRoute {
    /// Who the agent is.
    pub identity: Identity,
    /// Its name, for logs.
    pub name: String,
    /// Its workspace's MCP server.
    pub upstream: Upstream,
    /// Its effective policy, built.
    pub pipeline: Pipeline,
    /// The names and labels of its organisation, workspace and itself, for rules.
    pub profile: CallerProfile,
}

impl AgentRoute {
    /// The route of the agent `name`, who is `identity`, to `upstream` through `pipeline`.
    pub fn new(identity: Identity, name: String, upstream: Upstream, pipeline: Pipeline) -> Self {
        let profile = CallerProfile {
            agent: Profile {
                name: name.clone(),
                ..Profile::default()
            },
            ..CallerProfile::default()
        };
        Self {
            identity,
            name,
            upstream,
            pipeline,
            profile,
        }
    }

    /// The same route with the names and labels its rules read.
    pub fn with_profile(self, profile: CallerProfile) -> Self {
        Self { profile, ..self }
    }
}

/// The agents a gateway serves by key, each with its route.
pub type Routes = KeyIndex<Arc<AgentRoute>>;

/// Why a gateway cannot be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GatewayError {
    /// The certificate authorities of `server.upstream_ca_file` cannot be read.
    #[error("server.upstream_ca_file: cannot read {path}")]
    CaFile {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The client for HTTP upstreams cannot be made (certificate authorities it cannot use).
    #[error("server.upstream_ca_file")]
    Client(#[source] UpstreamError),
}

/// The gateway: built once at start-up, shared by every request.
#[derive(Debug)]
pub struct Gateway {
    /// Server settings.
    pub settings: ServerSettings,
    /// Who holds which key.
    pub directory: AgentDirectory,
    /// Where gateway sessions live.
    pub sessions: Arc<dyn SessionStore>,
    /// This instance's id, random at each start: stdio sessions name the instance that runs their
    /// process.
    pub instance: String,
    /// Where audit events go, with the payloads they keep, and the metrics and spans of every
    /// pipeline run.
    pub recorder: Recorder,
    /// What each session's client and server await answers to, for the answers that come in other
    /// HTTP requests than their requests did.
    pub conversations: Conversations,
    /// The client for HTTP upstreams (and identity providers' keys).
    pub http: Arc<UpstreamClient>,
    /// The stdio upstream processes of this instance.
    pub stdio: Arc<StdioSessions>,
    /// What `/metrics` reports.
    pub metrics: Arc<Metrics>,
    /// The sessions whose GET stream is on its way upstream: their POSTs wait for it.
    pub opening_streams: Arc<OpeningStreams>,
    /// Each agent's turn for large messages (`proxy::turns`).
    pub large_message_turns: LargeMessageTurns,
    /// Whether the gateway opens a session's upstream GET stream itself when the client says it is
    /// ready, for the client's GET to take (`proxy::listening`); off when sessions are shared
    /// between instances.
    pub pre_open_streams: bool,
    /// How often a held call's client gets a keep-alive comment on its event stream
    /// (`proxy::holding`); `None` keeps no POST open for a hold (a held call's client then cannot
    /// be asked).
    pub approval_keep_alive: Option<std::time::Duration>,
    /// The gateway's questions to clients about held calls, waiting for their answers.
    pub elicitations: Arc<crate::asking::Elicitations>,
    /// The workspaces that take OAuth access tokens, and the identity providers they trust.
    #[cfg(feature = "oauth")]
    pub oauth: Option<Arc<crate::oauth::ResourceServer>>,
}

/// The identity of the caller and what it may reach, as found from its key or access token.
#[derive(Clone, Debug)]
pub struct Caller {
    /// The route its key opens.
    pub route: Arc<AgentRoute>,
    /// The first characters of its key, or `oauth:<subject>` for a person's access token: how the
    /// audit log names the credential.
    pub key_prefix: String,
}

impl Gateway {
    /// A gateway serving `routes` (more come from a control-plane database when the directory is
    /// given one) with `settings`, keeping sessions in `sessions` and recording into `audit`, each
    /// event with its payload made by `payloads` (none when `None`).
    pub fn new(
        settings: ServerSettings,
        routes: Routes,
        sessions: Arc<dyn SessionStore>,
        audit: Arc<dyn AuditSink>,
        payloads: Option<PayloadRedactor>,
    ) -> Result<Self, GatewayError> {
        // The public certificate authorities, and the operator's own if any.
        let extra_ca = match &settings.upstream_ca_file {
            Some(path) => Some(std::fs::read(path).map_err(|source| GatewayError::CaFile {
                path: path.clone(),
                source,
            })?),
            None => None,
        };
        let http = UpstreamClient::new(
            settings.upstream_timeout(),
            extra_ca.as_deref(),
            settings.egress_policy(),
        )
        .map_err(GatewayError::Client)?;
        let stdio = Arc::new(StdioSessions::new(settings.stdio_limits()));
        let metrics = Arc::new(Metrics::new());
        metrics.watch_stdio(Arc::clone(&stdio));
        // Held calls are put to the user where the client can be asked; a gateway with a
        // database also puts them to admins (`serve::build_with_store`).
        let elicitations = Arc::new(crate::asking::Elicitations::default());
        let recorder = Recorder::new(audit)
            .with_payloads(payloads)
            .with_observer(Arc::clone(&metrics) as Arc<dyn Observer>)
            .with_approver(Arc::new(crate::asking::Asking::new(
                Arc::clone(&elicitations),
                crate::asking::DEFAULT_TIMEOUT,
            )));
        Ok(Self {
            settings,
            directory: AgentDirectory::configured(routes),
            sessions,
            instance: uuid::Uuid::new_v4().to_string(),
            recorder,
            conversations: Conversations::default(),
            http: Arc::new(http),
            stdio,
            metrics,
            opening_streams: Arc::default(),
            large_message_turns: LargeMessageTurns::default(),
            pre_open_streams: true,
            approval_keep_alive: Some(crate::asking::DEFAULT_KEEP_ALIVE),
            elicitations,
            #[cfg(feature = "oauth")]
            oauth: None,
        })
    }

    /// Where audit events go.
    pub fn audit(&self) -> &Arc<dyn AuditSink> {
        self.recorder.audit()
    }

    /// The caller a bearer key belongs to; an error when the key cannot be looked up (the call is then
    /// refused: the gateway fails closed).
    pub async fn authenticate(&self, key: &str) -> Result<Option<Caller>, DirectoryError> {
        Ok(self.directory.find(key).await?.map(|route| Caller {
            route,
            key_prefix: display_prefix(key),
        }))
    }

    /// An exchange of `caller`'s messages within `conversation` (the session's, or one of its own
    /// for a request without a session), recorded by this gateway.
    pub fn exchange<'a>(
        &'a self,
        caller: &'a Caller,
        conversation: &'a Conversation,
        session: Option<&'a str>,
    ) -> Exchange<'a> {
        Exchange::new(
            &caller.route.pipeline,
            &caller.route.identity,
            conversation,
            &self.recorder,
        )
        .with_session(session)
        .with_key_prefix(Some(&caller.key_prefix))
        .with_profile(Some(&caller.route.profile))
    }

    /// The conversation of `session` for `caller`; one of its own, not kept, without a session.
    pub fn conversation(&self, caller: &Caller, session: Option<&str>) -> Arc<Conversation> {
        match session {
            Some(session) => self.conversations.get(session, &caller.route.identity),
            None => Arc::new(Conversation::new()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use cerberus_core::audit::MemoryAuditSink;
    use cerberus_core::exchange::Handled;
    use cerberus_core::session::MemorySessionStore;
    use cerberus_core::store::UpstreamDefinition;
    use cerberus_core::{
        DecisionKind, EffectivePolicy, GuardrailRegistry, Message, PolicyDocument,
    };

    use super::*;
    use crate::auth::KeyHash;

    const KEY: &str = "ck_test_key_for_the_gateway";

    /// A sink that says it keeps nothing, and counts what it is given all the same.
    #[derive(Debug, Default)]
    struct Discarding(std::sync::atomic::AtomicUsize);

    #[async_trait::async_trait]
    impl AuditSink for Discarding {
        async fn record(&self, _event: cerberus_core::audit::AuditEvent) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }

        fn keeps_events(&self) -> bool {
            false
        }
    }

    fn gateway(audit: Arc<dyn AuditSink>) -> Gateway {
        let policy = PolicyDocument::from_json(
            r#"{"guardrails": [{"type": "rbac", "allow": ["*"], "deny": ["drop_*"]},
                               {"type": "pii_email", "action": "redact"}]}"#,
        )
        .unwrap();
        let pipeline = GuardrailRegistry::default()
            .build(&EffectivePolicy::single(&policy))
            .unwrap();
        let upstream = Upstream::from_definition(
            &UpstreamDefinition::Http {
                url: "http://127.0.0.1:1/mcp".into(),
                headers: Default::default(),
            },
            Path::new("."),
        )
        .unwrap();
        let mut routes = Routes::default();
        routes.insert(
            KeyHash::of(KEY),
            Arc::new(AgentRoute::new(
                Identity::new_random(),
                "bot".into(),
                upstream,
                pipeline,
            )),
        );
        Gateway::new(
            ServerSettings::default(),
            routes,
            Arc::new(MemorySessionStore::default()),
            audit,
            None,
        )
        .unwrap()
    }

    async fn call(gateway: &Gateway, tool: &str) -> Handled {
        let caller = gateway.authenticate(KEY).await.unwrap().unwrap();
        let message = Message::parse(format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"{tool}","arguments":{{"to":"ann@example.com"}}}}}}"#
        ))
        .unwrap();
        let conversation = gateway.conversation(&caller, None);
        gateway
            .exchange(&caller, &conversation, None)
            .from_client(message)
            .await
    }

    /// The metrics' text lines that count messages and guardrail decisions.
    fn counts(gateway: &Gateway) -> Vec<String> {
        let mut lines: Vec<String> = gateway
            .metrics
            .render()
            .lines()
            .filter(|l| {
                (l.starts_with("cerberus_messages_total")
                    || l.starts_with("cerberus_guardrail_decisions_total")
                    || l.starts_with("cerberus_gateway_overhead_seconds_count"))
                    && !l.ends_with(" 0")
            })
            .map(str::to_owned)
            .collect();
        lines.sort();
        lines
    }

    #[tokio::test]
    async fn a_sink_that_keeps_nothing_gets_no_event_and_the_metrics_count_the_same() {
        let memory = Arc::new(MemoryAuditSink::new());
        let keeping = gateway(memory.clone());
        let discarded = Arc::new(Discarding::default());
        let discarding = gateway(discarded.clone());
        for gateway in [&keeping, &discarding] {
            let modified = call(gateway, "send").await;
            assert_eq!(modified.decision.kind(), DecisionKind::Modify);
            let blocked = call(gateway, "drop_table").await;
            assert_eq!(blocked.decision.kind(), DecisionKind::Block);
        }
        assert_eq!(discarded.0.load(std::sync::atomic::Ordering::Relaxed), 0);
        let events = memory.events();
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].decision, DecisionKind::Modify);
        assert_eq!(events[0].trace.entries().len(), 2);
        assert_eq!(events[1].decision, DecisionKind::Block);

        let counted = counts(&keeping);
        assert_eq!(counted, counts(&discarding));
        for expected in [
            r#"cerberus_messages_total{direction="request",decision="modify"} 1"#,
            r#"cerberus_messages_total{direction="request",decision="block"} 1"#,
            r#"cerberus_guardrail_decisions_total{guardrail="pii_email",direction="request",decision="modify"} 1"#,
            r#"cerberus_guardrail_decisions_total{guardrail="rbac",direction="request",decision="block"} 1"#,
            r#"cerberus_gateway_overhead_seconds_count{direction="request"} 2"#,
        ] {
            assert!(
                counted.iter().any(|l| l == expected),
                "{expected} in {counted:#?}"
            );
        }
    }
}
