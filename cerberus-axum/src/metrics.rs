//! Prometheus metrics, served at `GET /metrics` in the text exposition format.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `cerberus_http_requests_total` | counter | `path` (the route, not the URL), `status` |
//! | `cerberus_messages_total` | counter | `direction`, `decision` |
//! | `cerberus_guardrail_decisions_total` | counter | `guardrail` (type), `direction`, `decision` |
//! | `cerberus_gateway_overhead_seconds` | histogram | `direction`: time in the guardrails per message |
//! | `cerberus_guardrail_wait_seconds` | histogram | `guardrail` (type): time the pipeline waited for a guardrail that answers asynchronously (a webhook, a rate limit counted in Redis) |
//! | `cerberus_tool_pin_reports_total` | counter | `report` (`changed`, `new`, `invalid`: a `tools/list` answer holding such definitions; `unapproved_call`: a call of a tool whose definition is not approved), `decision` (`allow` under `warn`, `modify` or `block` under `enforce`) |
//! | `cerberus_approvals_total` | counter | `outcome`: what became of calls held for approval (`approved`, `denied`, `timed_out`, `unavailable`) |
//! | `cerberus_oauth_tokens_total` | counter | `outcome` of each access token presented on a workspace's path (feature `oauth`): `accepted`, or why it was refused (`invalid_token`, `invalid_request`, `insufficient_scope`, `forbidden`, `unavailable`) |
//! | `cerberus_approvals_waiting` | gauge | calls held on this instance, waiting for an admin's answer |
//! | `cerberus_upstream_latency_seconds` | histogram | from sending a request upstream to each message of its answer |
//! | `cerberus_audit_queue_depth` | gauge | events waiting for the database writer |
//! | `cerberus_audit_events_unwritten` | gauge | events recorded and not yet stored (queued or in the batch being written): what a crash now would lose |
//! | `cerberus_audit_events_stored_total` | counter | events the database writer stored |
//! | `cerberus_audit_events_dropped_total` | counter | events lost because the queue was full (`overflow = "drop"`) |
//! | `cerberus_audit_events_rejected_total` | counter | events the database refused even in their plain form (each logged by id) |
//! | `cerberus_rate_limiter_backend_errors_total` | counter | Redis failures of the distributed rate limiter |
//! | `cerberus_rate_limiter_breaker_open` | gauge | 1 while the limiter's circuit breaker is open |
//! | `cerberus_stdio_sessions` | gauge | stdio upstream processes running |
//! | `cerberus_sessions_open` | gauge | gateway sessions kept in memory (without `[redis]`) |
//!
//! Labels hold only bounded sets (directions, decisions, guardrail types, routes, status codes):
//! never a tenant, agent, tool or key.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use cerberus_core::audit::{AuditEvent, AuditSink as _};
use cerberus_core::exchange::{Observation, Observer};
use cerberus_core::session::MemorySessionStore;
use cerberus_core::{DecisionKind, Direction, Envelope, Message, Trace, TraceEntry};
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use crate::audit::BatchedAuditSink;
use crate::proxy::stdio::StdioSessions;
use crate::telemetry;

/// Upper bounds of the overhead histogram, in seconds: 10 µs to 100 ms.
const OVERHEAD_BUCKETS: [f64; 13] = [
    0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025,
    0.05, 0.1,
];

/// Upper bounds of the guardrail wait histogram, in seconds: 500 µs to 30 s.
const WAIT_BUCKETS: [f64; 15] = [
    0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Upper bounds of the upstream latency histogram, in seconds: 1 ms to 2 minutes.
const UPSTREAM_BUCKETS: [f64; 16] = [
    0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    120.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    path: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WaitLabels {
    guardrail: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PinLabels {
    report: &'static str,
    decision: &'static str,
}

#[cfg(feature = "oauth")]
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TokenLabels {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ApprovalLabels {
    outcome: &'static str,
}

/// The `outcome` label of an `approval` trace entry's code.
fn approval_outcome(code: &str) -> Option<&'static str> {
    use cerberus_core::approval::codes;
    match code {
        codes::GRANTED => Some("approved"),
        codes::DENIED => Some("denied"),
        codes::TIMED_OUT => Some("timed_out"),
        codes::UNAVAILABLE => Some("unavailable"),
        _ => None,
    }
}

/// The `report` label of a `tool_pinning` trace entry's code.
fn pin_report(code: &str) -> Option<&'static str> {
    use cerberus_core::guardrails::tool_pinning::codes;
    match code {
        codes::CHANGED => Some("changed"),
        codes::NEW => Some("new"),
        codes::INVALID => Some("invalid"),
        codes::UNAPPROVED_CALL => Some("unapproved_call"),
        _ => None,
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GuardrailLabels {
    guardrail: String,
    direction: &'static str,
    decision: &'static str,
}

const DIRECTIONS: [Direction; 2] = [Direction::Request, Direction::Response];
const DECISIONS: [DecisionKind; DecisionKind::ALL.len()] = DecisionKind::ALL;

fn direction_index(direction: Direction) -> usize {
    match direction {
        Direction::Request => 0,
        Direction::Response => 1,
    }
}

/// The gateway's metrics. Message counters and overhead histograms are made up front, so that the
/// proxy's path only increments them; the audit, limiter and stdio figures are read at each scrape.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    http_requests: Family<HttpLabels, Counter>,
    /// By direction, then decision.
    messages: [[Counter; DecisionKind::ALL.len()]; 2],
    guardrails: Family<GuardrailLabels, Counter>,
    /// The counters of `guardrails` by type name, so that counting looks up a name and allocates
    /// nothing once a series exists.
    by_guardrail: RwLock<GuardrailTable>,
    /// By direction.
    overhead: [Histogram; 2],
    /// Time waited for asynchronous guardrails, by type.
    waits: Family<WaitLabels, Histogram>,
    /// Unapproved tool definitions the `tool_pinning` guardrail reported.
    pin_reports: Family<PinLabels, Counter>,
    /// Held calls, by what became of them.
    approvals: Family<ApprovalLabels, Counter>,
    /// Access tokens presented, by outcome.
    #[cfg(feature = "oauth")]
    tokens: Family<TokenLabels, Counter>,
    upstream: Histogram,
    sources: Arc<Sources>,
}

/// One guardrail type's counters by direction, then decision, each made on first use.
type GuardrailCounters = [[OnceLock<Counter>; DecisionKind::ALL.len()]; 2];

/// Guardrail types' counters, by name.
#[derive(Debug, Default)]
struct GuardrailTable {
    by_name: HashMap<String, Arc<GuardrailCounters>, foldhash::fast::RandomState>,
    /// The same counters by the address and length of a `&'static` name, as traces name the built-in
    /// types: comparing two words finds one sooner than hashing and comparing its text (a message's
    /// trace has a dozen entries).
    by_address: Vec<((usize, usize), Arc<GuardrailCounters>)>,
}

/// The type part of a trace entry's guardrail: `rule` for `rule:amount_cap`. A policy author names
/// rules and webhooks as they like, and a label must hold a bounded set.
fn guardrail_type(name: &str) -> &str {
    name.split_once(':')
        .map_or(name, |(type_name, _)| type_name)
}

/// More distinct `&'static` names than any policy has types: past this, names are found by text only.
const MAX_ADDRESSED_NAMES: usize = 64;

impl GuardrailTable {
    /// The counters of `entry`'s guardrail type, if it has been seen.
    fn get(&self, entry: &TraceEntry) -> Option<&Arc<GuardrailCounters>> {
        let name = &entry.guardrail;
        if let Cow::Borrowed(name) = name {
            let address = (name.as_ptr() as usize, name.len());
            if let Some((_, counters)) = self.by_address.iter().find(|(a, _)| *a == address) {
                return Some(counters);
            }
        }
        self.by_name.get(guardrail_type(name))
    }

    /// The counters of `entry`'s guardrail type, made on first use.
    fn get_or_insert(&mut self, entry: &TraceEntry) -> Arc<GuardrailCounters> {
        let name = &entry.guardrail;
        let counters = Arc::clone(
            self.by_name
                .entry(guardrail_type(name).to_owned())
                .or_default(),
        );
        if let Cow::Borrowed(name) = name
            && self.by_address.len() < MAX_ADDRESSED_NAMES
        {
            let address = (name.as_ptr() as usize, name.len());
            if !self.by_address.iter().any(|(a, _)| *a == address) {
                self.by_address.push((address, Arc::clone(&counters)));
            }
        }
        counters
    }
}

/// What is read at scrape time, attached once the gateway has built it.
#[derive(Debug, Default)]
struct Sources {
    audit: OnceLock<Arc<BatchedAuditSink>>,
    #[cfg(feature = "redis")]
    limiter: OnceLock<Arc<cerberus_redis::RedisRateLimiter>>,
    stdio: OnceLock<Arc<StdioSessions>>,
    sessions: OnceLock<Arc<MemorySessionStore>>,
    #[cfg(feature = "control-plane")]
    approvals: OnceLock<Arc<crate::approvals::AdminApprover>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Every metric at zero.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("cerberus");
        let http_requests = Family::<HttpLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by route and status",
            http_requests.clone(),
        );
        let messages_family = Family::<[(&'static str, &'static str); 2], Counter>::default();
        let messages = DIRECTIONS.map(|direction| {
            DECISIONS.map(|decision| {
                messages_family
                    .get_or_create(&[
                        ("direction", direction.as_str()),
                        ("decision", decision.as_str()),
                    ])
                    .clone()
            })
        });
        registry.register(
            "messages",
            "JSON-RPC messages through the guardrail pipeline, by direction and final decision",
            messages_family,
        );
        let guardrails = Family::<GuardrailLabels, Counter>::default();
        registry.register(
            "guardrail_decisions",
            "What each guardrail decided, by guardrail type, direction and decision",
            guardrails.clone(),
        );
        let overhead_family =
            Family::<[(&'static str, &'static str); 1], Histogram>::new_with_constructor(|| {
                Histogram::new(OVERHEAD_BUCKETS)
            });
        let overhead = DIRECTIONS.map(|direction| {
            overhead_family
                .get_or_create(&[("direction", direction.as_str())])
                .clone()
        });
        registry.register_with_unit(
            "gateway_overhead",
            "Time a message spends in the guardrail pipeline",
            Unit::Seconds,
            overhead_family,
        );
        let waits =
            Family::<WaitLabels, Histogram>::new_with_constructor(|| Histogram::new(WAIT_BUCKETS));
        registry.register_with_unit(
            "guardrail_wait",
            "Time the pipeline waited for a guardrail that answers asynchronously, by guardrail type",
            Unit::Seconds,
            waits.clone(),
        );
        let pin_reports = Family::<PinLabels, Counter>::default();
        registry.register(
            "tool_pin_reports",
            "Unapproved tool definitions reported by tool_pinning: tools/list answers holding changed, new or invalid definitions, and calls of unapproved tools",
            pin_reports.clone(),
        );
        let approvals = Family::<ApprovalLabels, Counter>::default();
        registry.register(
            "approvals",
            "Calls held for approval, by outcome: approved, denied, timed_out, unavailable",
            approvals.clone(),
        );
        #[cfg(feature = "oauth")]
        let tokens = Family::<TokenLabels, Counter>::default();
        #[cfg(feature = "oauth")]
        registry.register(
            "oauth_tokens",
            "Access tokens presented on a workspace's path, by outcome: accepted, or the reason of the refusal",
            tokens.clone(),
        );
        let upstream = Histogram::new(UPSTREAM_BUCKETS);
        registry.register_with_unit(
            "upstream_latency",
            "From sending a request upstream to the arrival of each message of its answer",
            Unit::Seconds,
            upstream.clone(),
        );
        let sources = Arc::new(Sources::default());
        registry.register_collector(Box::new(Arc::clone(&sources)));
        Self {
            registry,
            http_requests,
            messages,
            guardrails,
            by_guardrail: RwLock::new(GuardrailTable::default()),
            overhead,
            waits,
            pin_reports,
            approvals,
            #[cfg(feature = "oauth")]
            tokens,
            upstream,
            sources,
        }
    }

    /// Counts one access token presented: `accepted`, or the reason it was refused.
    #[cfg(feature = "oauth")]
    pub fn observe_token(&self, outcome: Result<(), &crate::oauth::TokenRefusal>) {
        let outcome = match outcome {
            Ok(()) => "accepted",
            Err(refusal) => refusal.reason(),
        };
        self.tokens.get_or_create(&TokenLabels { outcome }).inc();
    }

    /// Counts one message's decisions and times, from its audit event.
    pub fn observe_event(&self, event: &AuditEvent) {
        self.observe_message(
            event.direction,
            event.decision,
            &event.trace,
            Duration::from_micros(event.overhead_us),
            event.upstream_us.map(Duration::from_micros),
        );
    }

    /// Counts one message's decisions and times: its final decision, what each guardrail decided, the
    /// time it spent in the guardrails and, for a message from the upstream, the time since the request
    /// went upstream.
    pub fn observe_message(
        &self,
        direction: Direction,
        decision: DecisionKind,
        trace: &Trace,
        overhead: Duration,
        upstream: Option<Duration>,
    ) {
        let index = direction_index(direction);
        if let Some(counter) = self
            .messages
            .get(index)
            .and_then(|row| row.get(decision.index()))
        {
            counter.inc();
        }
        // One read lock for the whole trace; a guardrail type seen for the first time takes the
        // write lock once, outside it.
        let mut unknown = Vec::new();
        {
            let known = self
                .by_guardrail
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            for entry in trace.entries() {
                match known.get(entry) {
                    Some(counters) => self.count(counters, direction, entry),
                    None => unknown.push(entry),
                }
            }
        }
        for entry in unknown {
            let counters = self.guardrail_counters(entry);
            self.count(&counters, direction, entry);
        }
        for entry in trace.entries() {
            if entry.guardrail == "tool_pinning"
                && let Some(report) = entry.code.as_deref().and_then(pin_report)
            {
                self.pin_reports
                    .get_or_create(&PinLabels {
                        report,
                        decision: entry.decision.as_str(),
                    })
                    .inc();
            }
            if entry.guardrail == cerberus_core::approval::GUARDRAIL
                && let Some(outcome) = entry.code.as_deref().and_then(approval_outcome)
            {
                self.approvals
                    .get_or_create(&ApprovalLabels { outcome })
                    .inc();
            }
            if let Some(waited) = entry.waited_us {
                self.waits
                    .get_or_create(&WaitLabels {
                        guardrail: guardrail_type(&entry.guardrail).to_owned(),
                    })
                    .observe(Duration::from_micros(waited).as_secs_f64());
            }
        }
        if let Some(histogram) = self.overhead.get(index) {
            histogram.observe(overhead.as_secs_f64());
        }
        if let Some(upstream) = upstream {
            self.upstream.observe(upstream.as_secs_f64());
        }
    }

    /// Counts one trace entry in its guardrail type's counters, making its series on first use.
    fn count(&self, counters: &GuardrailCounters, direction: Direction, entry: &TraceEntry) {
        let Some(cell) = counters
            .get(direction_index(direction))
            .and_then(|row| row.get(entry.decision.index()))
        else {
            return;
        };
        cell.get_or_init(|| {
            self.guardrails
                .get_or_create(&GuardrailLabels {
                    guardrail: guardrail_type(&entry.guardrail).to_owned(),
                    direction: direction.as_str(),
                    decision: entry.decision.as_str(),
                })
                .clone()
        })
        .inc();
    }

    fn guardrail_counters(&self, entry: &TraceEntry) -> Arc<GuardrailCounters> {
        self.by_guardrail
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get_or_insert(entry)
    }

    /// Reads the audit writer's queue, stored and dropped counts at each scrape.
    pub fn watch_audit(&self, sink: Arc<BatchedAuditSink>) {
        let _ = self.sources.audit.set(sink);
    }

    /// Reads the distributed rate limiter's errors and breaker at each scrape.
    #[cfg(feature = "redis")]
    pub fn watch_limiter(&self, limiter: Arc<cerberus_redis::RedisRateLimiter>) {
        let _ = self.sources.limiter.set(limiter);
    }

    /// Reads the number of sessions kept in memory at each scrape.
    pub fn watch_sessions(&self, sessions: Arc<MemorySessionStore>) {
        let _ = self.sources.sessions.set(sessions);
    }

    /// Reads the number of stdio upstream processes at each scrape.
    pub fn watch_stdio(&self, sessions: Arc<StdioSessions>) {
        let _ = self.sources.stdio.set(sessions);
    }

    /// Reports how many held calls wait on this instance.
    #[cfg(feature = "control-plane")]
    pub fn watch_approvals(&self, approver: Arc<crate::approvals::AdminApprover>) {
        let _ = self.sources.approvals.set(approver);
    }

    /// Every metric in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut text = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &self.registry) {
            tracing::error!(error = %e, "cannot encode the metrics");
        }
        text
    }
}

impl prometheus_client::collector::Collector for Sources {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        fn counter(
            encoder: &mut DescriptorEncoder<'_>,
            name: &str,
            help: &str,
            value: u64,
        ) -> Result<(), std::fmt::Error> {
            let metric = ConstCounter::new(value);
            metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
        }
        fn gauge(
            encoder: &mut DescriptorEncoder<'_>,
            name: &str,
            help: &str,
            value: i64,
        ) -> Result<(), std::fmt::Error> {
            let metric = ConstGauge::new(value);
            metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
        }
        if let Some(audit) = self.audit.get() {
            gauge(
                &mut encoder,
                "audit_queue_depth",
                "Audit events waiting for the database writer",
                i64::try_from(audit.queued()).unwrap_or(i64::MAX),
            )?;
            gauge(
                &mut encoder,
                "audit_events_unwritten",
                "Audit events recorded and not yet stored: what a crash now would lose",
                i64::try_from(audit.unwritten()).unwrap_or(i64::MAX),
            )?;
            counter(
                &mut encoder,
                "audit_events_stored",
                "Audit events the database writer stored",
                audit.stored(),
            )?;
            counter(
                &mut encoder,
                "audit_events_dropped",
                "Audit events lost because the queue was full",
                audit.dropped(),
            )?;
            counter(
                &mut encoder,
                "audit_events_rejected",
                "Audit events the database refused even without their payload and texts",
                audit.rejected(),
            )?;
        }
        #[cfg(feature = "redis")]
        if let Some(limiter) = self.limiter.get() {
            counter(
                &mut encoder,
                "rate_limiter_backend_errors",
                "Redis failures of the distributed rate limiter",
                limiter.backend_errors(),
            )?;
            gauge(
                &mut encoder,
                "rate_limiter_breaker_open",
                "1 while the rate limiter's circuit breaker keeps calls away from Redis",
                i64::from(limiter.breaker_open()),
            )?;
        }
        if let Some(sessions) = self.sessions.get() {
            gauge(
                &mut encoder,
                "sessions_open",
                "Gateway sessions kept in this instance's memory",
                i64::try_from(sessions.len()).unwrap_or(i64::MAX),
            )?;
        }
        #[cfg(feature = "control-plane")]
        if let Some(approvals) = self.approvals.get() {
            gauge(
                &mut encoder,
                "approvals_waiting",
                "Calls held on this instance, waiting for an admin's answer",
                i64::try_from(approvals.waiting()).unwrap_or(i64::MAX),
            )?;
        }
        if let Some(stdio) = self.stdio.get() {
            gauge(
                &mut encoder,
                "stdio_sessions",
                "Stdio upstream processes running",
                i64::try_from(stdio.len()).unwrap_or(i64::MAX),
            )?;
        }
        Ok(())
    }
}

/// Every message through the gateway's pipelines is counted here, and runs in its span when spans
/// are exported.
impl Observer for Metrics {
    fn span(&self, envelope: &Envelope<'_>, message: &Message) -> tracing::Span {
        telemetry::pipeline_span(envelope, message)
    }

    fn observe(&self, observation: &Observation<'_>) {
        telemetry::record_decision(observation.span, observation.decision);
        self.observe_message(
            observation.envelope.direction,
            observation.decision.kind(),
            observation.trace,
            observation.elapsed,
            observation.upstream,
        );
    }
}

/// Counts every HTTP request by route and status (a middleware for the whole router).
pub async fn count_requests(
    State(metrics): State<Arc<Metrics>>,
    request: Request,
    next: Next,
) -> Response {
    let path = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let response = next.run(request).await;
    metrics
        .http_requests
        .get_or_create(&HttpLabels {
            path,
            status: response.status().as_u16(),
        })
        .inc();
    response
}

/// `GET /metrics`.
pub async fn serve(State(metrics): State<Arc<Metrics>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        metrics.render(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use cerberus_core::{Identity, PolicyLevel, Trace, TraceEntry};

    fn event(direction: Direction, decision: DecisionKind, trace: Trace) -> AuditEvent {
        AuditEvent {
            id: uuid::Uuid::now_v7(),
            time: std::time::SystemTime::now(),
            identity: Identity::new_random(),
            key_prefix: None,
            session: None,
            jsonrpc_id: None,
            direction,
            method: Some("tools/call".into()),
            target: Some("secret_tool_name".into()),
            decision,
            trace,
            size_bytes: 10,
            overhead_us: 40,
            upstream_status: None,
            upstream_us: (direction == Direction::Response).then_some(3_000),
            payload: None,
        }
    }

    #[test]
    fn counts_decisions_by_guardrail_and_times_by_direction() {
        let metrics = Metrics::new();
        let mut trace = Trace::default();
        trace.push(TraceEntry::new(
            "rbac",
            PolicyLevel::Organisation,
            DecisionKind::Allow,
        ));
        trace.push(TraceEntry::new(
            "pii_email",
            PolicyLevel::Agent,
            DecisionKind::Modify,
        ));
        metrics.observe_event(&event(Direction::Response, DecisionKind::Modify, trace));
        let mut trace = Trace::default();
        trace.push(TraceEntry::new(
            "rbac",
            PolicyLevel::Organisation,
            DecisionKind::Block,
        ));
        metrics.observe_event(&event(Direction::Request, DecisionKind::Block, trace));
        let text = metrics.render();
        for line in [
            r#"cerberus_messages_total{direction="response",decision="modify"} 1"#,
            r#"cerberus_messages_total{direction="request",decision="block"} 1"#,
            r#"cerberus_messages_total{direction="request",decision="allow"} 0"#,
            r#"cerberus_guardrail_decisions_total{guardrail="pii_email",direction="response",decision="modify"} 1"#,
            r#"cerberus_guardrail_decisions_total{guardrail="rbac",direction="request",decision="block"} 1"#,
            r#"cerberus_gateway_overhead_seconds_bucket{le="0.00005",direction="request"} 1"#,
            r#"cerberus_gateway_overhead_seconds_count{direction="response"} 1"#,
            r#"cerberus_upstream_latency_seconds_count 1"#,
            r#"cerberus_upstream_latency_seconds_bucket{le="0.0025"} 0"#,
            r#"cerberus_upstream_latency_seconds_bucket{le="0.005"} 1"#,
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line} in\n{text}");
        }
        assert!(
            !text.contains("secret_tool_name"),
            "no tool names in labels"
        );
    }

    #[tokio::test]
    async fn counts_the_sessions_kept_in_memory() {
        use cerberus_core::session::{SessionRecord, SessionStore};
        let metrics = Metrics::new();
        assert!(!metrics.render().contains("cerberus_sessions_open"));
        let sessions = Arc::new(MemorySessionStore::new());
        metrics.watch_sessions(Arc::clone(&sessions));
        for id in ["a", "b"] {
            let record = SessionRecord {
                identity: cerberus_core::Identity::new_random(),
                upstream_session: None,
                protocol_version: None,
                served_by: None,
                client_elicits: false,
            };
            sessions.insert(id, record).await.unwrap();
        }
        assert!(
            metrics
                .render()
                .lines()
                .any(|l| l == "cerberus_sessions_open 2")
        );
    }

    #[test]
    fn a_type_named_by_a_static_str_and_by_a_string_counts_in_one_series() {
        let metrics = Metrics::new();
        for _ in 0..2 {
            let mut trace = Trace::default();
            trace.push(TraceEntry::new(
                "pii_ssn",
                PolicyLevel::Organisation,
                DecisionKind::Allow,
            ));
            trace.push(TraceEntry::new(
                String::from("pii_ssn"),
                PolicyLevel::Organisation,
                DecisionKind::Allow,
            ));
            trace.push(TraceEntry::new(
                String::from("my_guardrail"),
                PolicyLevel::Agent,
                DecisionKind::Allow,
            ));
            metrics.observe_event(&event(Direction::Request, DecisionKind::Allow, trace));
        }
        let text = metrics.render();
        for line in [
            r#"cerberus_guardrail_decisions_total{guardrail="pii_ssn",direction="request",decision="allow"} 4"#,
            r#"cerberus_guardrail_decisions_total{guardrail="my_guardrail",direction="request",decision="allow"} 2"#,
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line} in\n{text}");
        }
        let table = metrics.by_guardrail.read().unwrap();
        assert_eq!(table.by_name.len(), 2);
        assert_eq!(
            table.by_address.len(),
            1,
            "only the static name has an address"
        );
    }

    #[test]
    fn named_rules_and_webhooks_count_under_their_type_alone() {
        let metrics = Metrics::new();
        let mut trace = Trace::default();
        for name in ["rule:amount_cap", "rule:sql_read_only", "rule:tool == 'x'"] {
            trace.push(TraceEntry::new(
                String::from(name),
                PolicyLevel::Workspace,
                DecisionKind::Allow,
            ));
        }
        metrics.observe_event(&event(Direction::Request, DecisionKind::Allow, trace));
        let mut trace = Trace::default();
        trace.push(TraceEntry {
            waited_us: Some(30_000),
            ..TraceEntry::new(
                String::from("webhook:opa"),
                PolicyLevel::Organisation,
                DecisionKind::Allow,
            )
        });
        metrics.observe_event(&event(Direction::Request, DecisionKind::Allow, trace));
        let text = metrics.render();
        for line in [
            r#"cerberus_guardrail_wait_seconds_bucket{le="0.025",guardrail="webhook"} 0"#,
            r#"cerberus_guardrail_wait_seconds_bucket{le="0.05",guardrail="webhook"} 1"#,
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line} in\n{text}");
        }
        let line = r#"cerberus_guardrail_decisions_total{guardrail="rule",direction="request",decision="allow"} 3"#;
        assert!(text.lines().any(|l| l == line), "missing {line} in\n{text}");
        assert!(!text.contains("amount_cap"), "a rule's name is no label");
    }
}
