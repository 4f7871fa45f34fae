//! The record of what each guardrail decided about one message: what the audit log stores.
//!
//! A trace never holds the personal data a guardrail found, only its kind and count.

use std::borrow::Cow;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::guardrail::GuardrailResult;
use crate::policy::PolicyLevel;

/// The kind of a decision, without its payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum DecisionKind {
    /// Passed unchanged.
    Allow,
    /// Passed changed.
    Modify,
    /// Refused.
    Block,
    /// Refused for now.
    Throttle,
}

impl DecisionKind {
    /// Every kind, in the order of [`DecisionKind::index`].
    pub const ALL: [Self; 4] = [Self::Allow, Self::Modify, Self::Block, Self::Throttle];

    /// The kind's place in [`DecisionKind::ALL`], for tables indexed by kind.
    pub fn index(self) -> usize {
        match self {
            Self::Allow => 0,
            Self::Modify => 1,
            Self::Block => 2,
            Self::Throttle => 3,
        }
    }

    /// The lowercase name used on the wire and in the audit log.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Modify => "modify",
            Self::Block => "block",
            Self::Throttle => "throttle",
        }
    }
}

/// What one guardrail (one policy entry) decided.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceEntry {
    /// The guardrail's type name, as in the policy document: borrowed for the built-in types, so
    /// that recording a decision allocates nothing for it.
    pub guardrail: Cow<'static, str>,
    /// The policy level its settings came from.
    pub level: PolicyLevel,
    /// What it decided.
    pub decision: DecisionKind,
    /// The machine-readable code of a block.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// Why, for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// For a throttle: when a retry may succeed, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
    /// For a guardrail the pipeline had to wait for (a webhook, a rate limit counted in Redis): how
    /// long, in microseconds. `None` for one that decided without waiting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waited_us: Option<u64>,
}

impl TraceEntry {
    /// An entry with no code, reason or retry hint.
    pub fn new(
        guardrail: impl Into<Cow<'static, str>>,
        level: PolicyLevel,
        decision: DecisionKind,
    ) -> Self {
        Self {
            guardrail: guardrail.into(),
            level,
            decision,
            code: None,
            reason: None,
            retry_after_ms: None,
            waited_us: None,
        }
    }

    /// The same entry with a reason.
    pub fn with_reason(self, reason: impl Into<String>) -> Self {
        Self {
            reason: Some(reason.into()),
            ..self
        }
    }
}

/// Every trace entry of one pipeline run, in the order the guardrails ran.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Trace {
    entries: Vec<TraceEntry>,
}

impl Trace {
    /// An empty trace.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty trace with room for `entries` entries.
    pub fn with_capacity(entries: usize) -> Self {
        Self {
            entries: Vec::with_capacity(entries),
        }
    }

    /// Records what `guardrail` at `level` decided. A `&'static str` name is kept as it is; any other is
    /// copied.
    pub fn record(
        &mut self,
        guardrail: impl Into<Cow<'static, str>>,
        level: PolicyLevel,
        result: &GuardrailResult,
    ) {
        let guardrail = guardrail.into();
        let entry = match result {
            GuardrailResult::Allow => entry(guardrail, level, DecisionKind::Allow, None, None),
            GuardrailResult::Modify { reason, .. } => entry(
                guardrail,
                level,
                DecisionKind::Modify,
                None,
                Some(reason.clone()),
            ),
            GuardrailResult::Block { code, reason } => entry(
                guardrail,
                level,
                DecisionKind::Block,
                Some(code.clone()),
                Some(reason.clone()),
            ),
            // A hold lets the message on as far as this guardrail goes; the approval's own entry,
            // added when it is answered, says whether it went further.
            GuardrailResult::Hold { code, reason, .. } => entry(
                guardrail,
                level,
                DecisionKind::Allow,
                Some(code.clone()),
                Some(reason.clone()),
            ),
            GuardrailResult::Throttle {
                retry_after,
                reason,
            } => TraceEntry {
                retry_after_ms: Some(millis(*retry_after)),
                ..entry(
                    guardrail,
                    level,
                    DecisionKind::Throttle,
                    None,
                    Some(reason.clone()),
                )
            },
        };
        self.entries.push(entry);
    }

    /// Notes on every entry from index `from` on that the pipeline waited `waited` for them.
    pub(crate) fn mark_waited(&mut self, from: usize, waited: Duration) {
        let micros = u64::try_from(waited.as_micros()).unwrap_or(u64::MAX);
        for entry in self.entries.iter_mut().skip(from) {
            entry.waited_us = Some(micros);
        }
    }

    /// Appends an entry as it is.
    pub fn push(&mut self, entry: TraceEntry) {
        self.entries.push(entry);
    }

    /// The entries, in order.
    pub fn entries(&self) -> &[TraceEntry] {
        &self.entries
    }

    /// The entries, to change in place (the audit redacts their reasons).
    pub(crate) fn entries_mut(&mut self) -> &mut [TraceEntry] {
        &mut self.entries
    }

    /// The number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no guardrail ran.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

fn entry(
    guardrail: Cow<'static, str>,
    level: PolicyLevel,
    decision: DecisionKind,
    code: Option<String>,
    reason: Option<String>,
) -> TraceEntry {
    TraceEntry {
        guardrail,
        level,
        decision,
        code,
        reason,
        retry_after_ms: None,
        waited_us: None,
    }
}

/// A duration in whole milliseconds, rounded up so that a retry never comes too early.
pub(crate) fn millis(duration: Duration) -> u64 {
    let ms = duration.as_millis();
    let rounded = if duration.subsec_nanos().is_multiple_of(1_000_000) {
        ms
    } else {
        ms + 1
    };
    u64::try_from(rounded).unwrap_or(u64::MAX)
}
