//! Audit events: one per message through the gateway, with the pipeline's trace.
//!
//! An event never holds the message itself; the trace it carries names guardrails, decisions and counts,
//! never the personal data found.

use std::fmt;
use std::sync::Mutex;
use std::time::SystemTime;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::guardrail::Direction;
use crate::identity::Identity;
use crate::trace::{DecisionKind, Trace};

mod analytics;
mod draft;
mod payload;

pub use analytics::{
    AnalyticsQuery, AuditAnalytics, Breakdown, Bucket, DecisionCounts, GuardrailCount, Latency,
    PERCENTILES, Percentiles,
};
pub use draft::{EventDraft, UpstreamTiming};
pub use payload::{DEFAULT_MAX_PAYLOAD_BYTES, PayloadMode, PayloadRedactor};

/// What happened to one message.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// The record's id, given when the event is made, so that storing it twice (a retried write whose
    /// first attempt did land) keeps one record. The gateway uses UUIDv7 ids, which sort by time, so
    /// that stores append to their indexes rather than insert all over them.
    pub id: uuid::Uuid,
    /// When the gateway decided.
    #[serde(with = "unix_millis")]
    pub time: SystemTime,
    /// Who.
    pub identity: Identity,
    /// The agent's key prefix, for display.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_prefix: Option<String>,
    /// The gateway session, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    /// The JSON-RPC id, as JSON text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jsonrpc_id: Option<String>,
    /// Which way the message travelled.
    pub direction: Direction,
    /// The method (for a response, the method it answers, when known).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// The tool, prompt or resource named.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// The final decision.
    pub decision: DecisionKind,
    /// What each guardrail decided.
    pub trace: Trace,
    /// The message size in bytes as received.
    pub size_bytes: usize,
    /// Time spent in the gateway's guardrails, in microseconds.
    pub overhead_us: u64,
    /// For a message from the upstream: the HTTP status of the upstream's answer (none for stdio).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_status: Option<u16>,
    /// For a message from the upstream: microseconds from sending the request upstream to this
    /// message's arrival, apart from the gateway's own overhead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_us: Option<u64>,
    /// The message, redacted, when the gateway keeps payloads ([`PayloadMode::Redacted`]); never the
    /// raw message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<serde_json::Value>,
}

/// Where audit events go.
#[async_trait]
pub trait AuditSink: Send + Sync + fmt::Debug {
    /// Records one event.
    async fn record(&self, event: AuditEvent);

    /// Records one event without waiting, for a caller that cannot wait: the record of a held call
    /// whose client went away, made as its future is dropped. A sink whose queue is full loses it
    /// and counts the loss as `record` would; the default loses it and logs an error.
    fn record_now(&self, event: AuditEvent) {
        tracing::error!(id = %event.id, "this audit sink cannot record without waiting: an event was lost");
    }

    /// Writes out whatever the sink still holds; called once at shutdown, after the last `record`.
    async fn flush(&self) {}

    /// Whether the sink keeps what it is given. A sink that discards every event says no, and callers
    /// may then skip making events at all.
    fn keeps_events(&self) -> bool {
        true
    }

    /// How many events it was given and has not yet written for good: what ending the process now
    /// would lose. A sink that writes each event before `record` returns has none.
    fn unwritten(&self) -> u64 {
        0
    }
}

/// Where audit events are stored for good, in batches (a database).
#[async_trait]
pub trait AuditStore: Send + Sync + fmt::Debug {
    /// Stores `events`, all or none.
    async fn append(&self, events: &[AuditEvent]) -> Result<(), crate::store::StoreError>;

    /// One organisation's records that match `filter`, newest first, from just after `after` (the last
    /// record of the previous page), as many as `budget` allows.
    async fn audit_records(
        &self,
        organisation: crate::OrganisationId,
        filter: &AuditFilter,
        after: Option<AuditCursor>,
        budget: RecordBudget,
    ) -> Result<RecordPage, crate::store::StoreError>;

    /// Aggregates one organisation's records that `query` selects.
    async fn audit_analytics(
        &self,
        organisation: crate::OrganisationId,
        query: &AnalyticsQuery,
    ) -> Result<AuditAnalytics, crate::store::StoreError>;

    /// Deletes every record older than `before` (retention); how many went.
    async fn delete_audit_before(
        &self,
        before: SystemTime,
    ) -> Result<u64, crate::store::StoreError>;
}

/// Which audit records to find; every field that is set must match.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// At or after this time.
    pub from: Option<SystemTime>,
    /// Before this time.
    pub to: Option<SystemTime>,
    /// Of this workspace.
    pub workspace: Option<crate::WorkspaceId>,
    /// Of this agent.
    pub agent: Option<crate::AgentId>,
    /// Naming this tool, prompt or resource.
    pub target: Option<String>,
    /// With this final decision.
    pub decision: Option<DecisionKind>,
    /// Of this method.
    pub method: Option<String>,
    /// Changed or refused by this guardrail type: its trace has an entry of this guardrail whose
    /// decision is not `allow`.
    pub guardrail: Option<String>,
}

/// How much one read of audit records may return: at most `records` of them, and none past the one
/// that brings their stored size (payload, trace and the other fields) to `bytes`. The first record
/// is always returned, whatever its size, so that a reader always moves on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordBudget {
    /// The most records.
    pub records: u32,
    /// The most bytes, about: records are read whole.
    pub bytes: u64,
}

impl RecordBudget {
    /// The byte budget of a page unless said otherwise: 8 MiB.
    pub const DEFAULT_BYTES: u64 = 8 << 20;

    /// At most `records` records, within the default byte budget.
    pub fn records(records: u32) -> Self {
        Self {
            records,
            bytes: Self::DEFAULT_BYTES,
        }
    }
}

/// Records read within a [`RecordBudget`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RecordPage {
    /// The records, newest first.
    pub records: Vec<AuditEvent>,
    /// Whether more records match after the last of these.
    pub more: bool,
}

/// Where a page of audit records ends: the time and id of its last record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuditCursor {
    /// The record's time.
    pub time: SystemTime,
    /// The record's id.
    pub id: uuid::Uuid,
}

impl AuditCursor {
    /// The cursor after `event`.
    pub fn after(event: &AuditEvent) -> Self {
        Self {
            time: event.time,
            id: event.id,
        }
    }
}

/// Several sinks at once: every event goes to each, in order.
#[derive(Debug, Default)]
pub struct FanoutAuditSink {
    sinks: Vec<std::sync::Arc<dyn AuditSink>>,
}

impl FanoutAuditSink {
    /// A sink that records into each of `sinks`.
    pub fn new(sinks: Vec<std::sync::Arc<dyn AuditSink>>) -> Self {
        Self { sinks }
    }
}

#[async_trait]
impl AuditSink for FanoutAuditSink {
    async fn record(&self, event: AuditEvent) {
        if let Some((last, others)) = self.sinks.split_last() {
            for sink in others {
                sink.record(event.clone()).await;
            }
            last.record(event).await;
        }
    }

    fn record_now(&self, event: AuditEvent) {
        if let Some((last, others)) = self.sinks.split_last() {
            for sink in others {
                sink.record_now(event.clone());
            }
            last.record_now(event);
        }
    }

    async fn flush(&self) {
        for sink in &self.sinks {
            sink.flush().await;
        }
    }

    fn keeps_events(&self) -> bool {
        self.sinks.iter().any(|sink| sink.keeps_events())
    }

    fn unwritten(&self) -> u64 {
        self.sinks.iter().map(|sink| sink.unwritten()).sum()
    }
}

/// Keeps events in memory, for tests and dry runs.
#[derive(Debug, Default)]
pub struct MemoryAuditSink {
    events: Mutex<Vec<AuditEvent>>,
}

impl MemoryAuditSink {
    /// An empty sink.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every event recorded so far.
    pub fn events(&self) -> Vec<AuditEvent> {
        self.events.lock().map(|e| e.clone()).unwrap_or_default()
    }
}

#[async_trait]
impl AuditSink for MemoryAuditSink {
    async fn record(&self, event: AuditEvent) {
        self.record_now(event);
    }

    fn record_now(&self, event: AuditEvent) {
        if let Ok(mut events) = self.events.lock() {
            events.push(event);
        }
    }
}

/// Discards every event.
#[derive(Debug, Default, Clone, Copy)]
pub struct NullAuditSink;

#[async_trait]
impl AuditSink for NullAuditSink {
    async fn record(&self, _event: AuditEvent) {}

    fn record_now(&self, _event: AuditEvent) {}

    fn keeps_events(&self) -> bool {
        false
    }
}

mod unix_millis {
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(time: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        let millis = time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
        s.serialize_u64(u64::try_from(millis).unwrap_or(u64::MAX))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
        let millis = u64::deserialize(d)?;
        Ok(UNIX_EPOCH + Duration::from_millis(millis))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn only_a_sink_that_discards_everything_keeps_no_events() {
        assert!(!NullAuditSink.keeps_events());
        assert!(MemoryAuditSink::new().keeps_events());
        let discarding: Vec<Arc<dyn AuditSink>> =
            vec![Arc::new(NullAuditSink), Arc::new(NullAuditSink)];
        assert!(!FanoutAuditSink::new(discarding).keeps_events());
        assert!(!FanoutAuditSink::default().keeps_events());
        let one_keeps: Vec<Arc<dyn AuditSink>> =
            vec![Arc::new(NullAuditSink), Arc::new(MemoryAuditSink::new())];
        assert!(FanoutAuditSink::new(one_keeps).keeps_events());
    }
}
