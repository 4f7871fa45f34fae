//! The gateway's shared state: who holds which key, which upstream and pipeline each agent gets, where
//! sessions and audit events go.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub use cerberus_core::audit::UpstreamTiming;
use cerberus_core::audit::{AuditSink, EventDraft, PayloadRedactor};
use cerberus_core::session::SessionStore;
use cerberus_core::{
    EffectivePolicy, Envelope, GuardrailRegistry, Identity, Message, Pipeline, PipelineOutcome,
    PolicyError, PolicyLevel,
};
use tracing::Instrument;

use crate::auth::{KeyIndex, display_prefix};
use crate::config::{GatewayConfig, ServerSettings, Upstream};
use crate::directory::{AgentDirectory, DirectoryError};
use crate::metrics::Metrics;
use crate::proxy::stdio::StdioSessions;
use crate::telemetry;
use crate::upstream_client::UpstreamClient;

/// Everything the proxy needs to know about one agent.
#[derive(Debug)]
pub struct AgentRoute {
    /// Who the agent is.
    pub identity: Identity,
    /// Its name, for logs.
    pub name: String,
    /// Its workspace's MCP server.
    pub upstream: Upstream,
    /// Its effective policy, built.
    pub pipeline: Pipeline,
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
    /// Where audit events go.
    pub audit: Arc<dyn AuditSink>,
    /// Makes the redacted payloads audit events keep, when they keep any.
    payloads: Option<PayloadRedactor>,
    /// The client for HTTP upstreams.
    pub http: UpstreamClient,
    /// The stdio upstream processes of this instance.
    pub stdio: Arc<StdioSessions>,
    /// What `/metrics` reports.
    pub metrics: Arc<Metrics>,
    /// Methods of server-initiated requests awaiting the client's answer, by session and JSON id text.
    server_requests: Mutex<HashMap<(String, String), String>>,
}

/// How many server requests may await an answer across all sessions; beyond that, answers are still
/// relayed but checked without knowing the method they answer.
const MAX_PENDING_SERVER_REQUESTS: usize = 100_000;

/// The identity of the caller and what it may reach, as found from its key.
#[derive(Clone, Debug)]
pub struct Caller {
    /// The route its key opens.
    pub route: Arc<AgentRoute>,
    /// The first characters of its key, for the audit log.
    pub key_prefix: String,
}

impl Gateway {
    /// Builds the gateway for `config`: one pipeline per agent, from its organisation's, workspace's and
    /// own policies.
    pub fn new(
        config: &GatewayConfig,
        registry: &GuardrailRegistry,
        sessions: Arc<dyn SessionStore>,
        audit: Arc<dyn AuditSink>,
    ) -> Result<Self, PolicyError> {
        let mut routes = KeyIndex::default();
        for agent in &config.agents {
            let workspace = config.workspaces.get(agent.workspace);
            let organisation = workspace.and_then(|w| config.organisations.get(w.organisation));
            let levels = [
                (
                    PolicyLevel::Organisation,
                    organisation.and_then(|o| o.policy.as_ref()),
                ),
                (
                    PolicyLevel::Workspace,
                    workspace.and_then(|w| w.policy.as_ref()),
                ),
                (PolicyLevel::Agent, agent.policy.as_ref()),
            ];
            let policy = EffectivePolicy::merge(
                levels
                    .into_iter()
                    .filter_map(|(level, doc)| Some((level, doc?))),
            );
            let pipeline = registry
                .build(&policy)
                .map_err(|e| e.within(&format!("agent `{}`", agent.name)))?;
            let Some(workspace) = workspace else { continue };
            routes.insert(
                agent.key_hash,
                Arc::new(AgentRoute {
                    identity: agent.identity,
                    name: agent.name.clone(),
                    upstream: workspace.upstream.clone(),
                    pipeline,
                }),
            );
        }
        // The public certificate authorities, and the operator's own if any.
        let extra_ca = match &config.server.upstream_ca_file {
            Some(path) => Some(std::fs::read(path).map_err(|e| {
                PolicyError::new(
                    "server.upstream_ca_file",
                    format!("cannot read {}: {e}", path.display()),
                )
            })?),
            None => None,
        };
        let http = UpstreamClient::new(config.server.upstream_timeout(), extra_ca.as_deref())
            .map_err(|e| PolicyError::new("server.upstream_ca_file", e.to_string()))?;
        let stdio = Arc::new(StdioSessions::new(
            config.server.max_stdio_sessions,
            config.server.stdio_idle_timeout(),
        ));
        let metrics = Arc::new(Metrics::new());
        metrics.watch_stdio(Arc::clone(&stdio));
        Ok(Self {
            settings: config.server.clone(),
            directory: AgentDirectory::configured(routes),
            sessions,
            instance: uuid::Uuid::new_v4().to_string(),
            audit,
            payloads: PayloadRedactor::for_mode(config.audit.payloads),
            http,
            stdio,
            metrics,
            server_requests: Mutex::new(HashMap::new()),
        })
    }

    /// Notes that the upstream asked the client `method` as request `id` within `session`.
    pub fn remember_server_request(&self, session: &str, id: &serde_json::Value, method: &str) {
        if let Ok(mut pending) = self.server_requests.lock()
            && pending.len() < MAX_PENDING_SERVER_REQUESTS
        {
            pending.insert((session.to_owned(), id.to_string()), method.to_owned());
        }
    }

    /// The method of the server request that the client's answer `id` answers, forgetting it.
    pub fn take_server_request(&self, session: &str, id: &serde_json::Value) -> Option<String> {
        self.server_requests
            .lock()
            .ok()?
            .remove(&(session.to_owned(), id.to_string()))
    }

    /// The caller a bearer key belongs to; an error when the key cannot be looked up (the call is then
    /// refused: the gateway fails closed).
    pub async fn authenticate(&self, key: &str) -> Result<Option<Caller>, DirectoryError> {
        Ok(self.directory.find(key).await?.map(|route| Caller {
            route,
            key_prefix: display_prefix(key),
        }))
    }

    /// Runs one message through the caller's pipeline and records the audit event; `upstream` says,
    /// for a message from the upstream, how it answered. The trace moves into the audit event: the
    /// outcome returned has an empty one.
    pub async fn evaluate(
        &self,
        caller: &Caller,
        envelope: Envelope<'_>,
        message: Message,
        upstream: Option<UpstreamTiming>,
    ) -> PipelineOutcome {
        let draft = EventDraft::new(envelope, &message);
        let span = telemetry::pipeline_span(&envelope, &message);
        let mut outcome = caller
            .route
            .pipeline
            .run(envelope, message)
            .instrument(span.clone())
            .await;
        telemetry::record_decision(&span, &outcome.decision);
        let event = draft.finish(
            envelope,
            &mut outcome,
            Some(caller.key_prefix.clone()),
            upstream,
            self.payloads.as_ref(),
        );
        self.metrics.observe(&event);
        self.audit.record(event).await;
        outcome
    }
}
