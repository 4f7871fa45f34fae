//! Aggregates over one organisation's audit records: what the analytics endpoint serves.

use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::guardrail::Direction;
use crate::store::rfc3339;
use crate::trace::DecisionKind;
use crate::{AgentId, WorkspaceId};

/// Which records to aggregate, and how.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnalyticsQuery {
    /// At or after this time.
    pub from: SystemTime,
    /// Before this time.
    pub to: SystemTime,
    /// The width of each time bucket; buckets start at whole multiples of it since the Unix epoch.
    pub bucket: Duration,
    /// Which messages the counts, the breakdowns and the overhead cover: requests (calls from
    /// clients), responses, or `None` for both. Guardrail counts and upstream latency always cover
    /// both directions.
    pub direction: Option<Direction>,
    /// Only this workspace's records.
    pub workspace: Option<WorkspaceId>,
    /// Only this agent's records.
    pub agent: Option<AgentId>,
    /// The most tools and agents listed, busiest first.
    pub top: u32,
}

/// How many messages ended with each decision.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DecisionCounts {
    /// All of them.
    pub total: u64,
    /// Passed unchanged.
    pub allow: u64,
    /// Passed changed (redacted).
    pub modify: u64,
    /// Refused.
    pub block: u64,
    /// Refused for now (rate limits).
    pub throttle: u64,
}

impl DecisionCounts {
    /// Counts `n` more messages decided `kind`.
    pub fn add(&mut self, kind: DecisionKind, n: u64) {
        self.total += n;
        *match kind {
            DecisionKind::Allow => &mut self.allow,
            DecisionKind::Modify => &mut self.modify,
            DecisionKind::Block => &mut self.block,
            DecisionKind::Throttle => &mut self.throttle,
        } += n;
    }
}

/// The messages of one time bucket.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Bucket {
    /// Where the bucket starts (RFC 3339); it ends where the next one would start.
    #[serde(with = "rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub start: SystemTime,
    /// Its messages by decision.
    #[serde(flatten)]
    pub counts: DecisionCounts,
}

/// The messages of one tool or one agent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Breakdown {
    /// The tool (or prompt, or resource URI) name, or the agent's id.
    pub key: String,
    /// Its messages by decision.
    #[serde(flatten)]
    pub counts: DecisionCounts,
}

/// How often one guardrail type changed or refused messages.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GuardrailCount {
    /// The guardrail's type name (`pii_email`, `rbac`, `rate_limit_per_minute`).
    pub guardrail: String,
    /// Which way the messages travelled.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub direction: Direction,
    /// What it decided: `modify` (redacted), `block` or `throttle`.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub decision: DecisionKind,
    /// How many times.
    pub count: u64,
}

/// The percentiles an analytics answer reports, nearest-rank.
pub const PERCENTILES: [u8; 4] = [50, 90, 95, 99];

/// Exact nearest-rank percentiles of one latency, in microseconds; all `None` when nothing was
/// measured.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Percentiles {
    /// How many measurements.
    pub count: u64,
    /// The median.
    pub p50: Option<u64>,
    /// The 90th percentile.
    pub p90: Option<u64>,
    /// The 95th percentile.
    pub p95: Option<u64>,
    /// The 99th percentile.
    pub p99: Option<u64>,
    /// The largest.
    pub max: Option<u64>,
}

impl Percentiles {
    /// The rank (1-based, in ascending order) of the `percentile`th percentile of `count` values:
    /// the smallest rank whose share of the values reaches it.
    pub fn rank(percentile: u8, count: u64) -> u64 {
        (u64::from(percentile) * count).div_ceil(100).max(1)
    }

    /// Sets the `percentile`th percentile (one of [`PERCENTILES`], or 100 for the maximum).
    pub fn set(&mut self, percentile: u8, value: u64) {
        let slot = match percentile {
            50 => &mut self.p50,
            90 => &mut self.p90,
            95 => &mut self.p95,
            99 => &mut self.p99,
            100 => &mut self.max,
            _ => return,
        };
        *slot = Some(value);
    }
}

/// The latencies of the aggregated records.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Latency {
    /// Time spent in the gateway's guardrails per message.
    pub gateway_overhead_us: Percentiles,
    /// From sending a request upstream to the arrival of the upstream's answer (responses only).
    pub upstream_us: Percentiles,
}

/// What the analytics endpoint answers.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditAnalytics {
    /// Every message in range, by decision.
    pub totals: DecisionCounts,
    /// Messages per time bucket, oldest first; buckets without messages are listed with zeros.
    pub over_time: Vec<Bucket>,
    /// Messages per tool (or prompt, or resource), busiest first.
    pub by_tool: Vec<Breakdown>,
    /// Messages per agent, busiest first.
    pub by_agent: Vec<Breakdown>,
    /// Messages redacted, blocked or throttled, by guardrail type, most first.
    pub guardrails: Vec<GuardrailCount>,
    /// Latency percentiles.
    pub latency: Latency,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        assert_eq!(Percentiles::rank(50, 1), 1);
        assert_eq!(Percentiles::rank(99, 1), 1);
        assert_eq!(Percentiles::rank(50, 10), 5);
        assert_eq!(Percentiles::rank(90, 10), 9);
        assert_eq!(Percentiles::rank(95, 10), 10);
        assert_eq!(Percentiles::rank(99, 200), 198);
        assert_eq!(Percentiles::rank(100, 7), 7);
    }

    #[test]
    fn counts_add_up() {
        let mut counts = DecisionCounts::default();
        counts.add(DecisionKind::Allow, 3);
        counts.add(DecisionKind::Throttle, 2);
        assert_eq!(
            counts,
            DecisionCounts {
                total: 5,
                allow: 3,
                throttle: 2,
                ..DecisionCounts::default()
            }
        );
    }
}
