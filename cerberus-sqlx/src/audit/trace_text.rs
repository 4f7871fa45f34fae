//! How a trace is stored: one JSON array per entry, `[guardrail, level, decision]`, with an object of
//! its code, reason, retry hint and wait appended only when it has any. The trace is most of an audit row
//! and most entries are plain `allow`s, so this form stores about half the bytes of the trace's JSON
//! objects. Reading accepts both forms.

use cerberus_core::{DecisionKind, PolicyLevel, Trace, TraceEntry};
use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Deserialize, Serialize, Serializer};

/// One entry, written compactly.
struct Compact<'a>(&'a TraceEntry);

impl Serialize for Compact<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let entry = self.0;
        let extras = entry.code.is_some()
            || entry.reason.is_some()
            || entry.retry_after_ms.is_some()
            || entry.waited_us.is_some();
        let mut seq = serializer.serialize_seq(Some(if extras { 4 } else { 3 }))?;
        seq.serialize_element(&entry.guardrail)?;
        seq.serialize_element(&entry.level)?;
        seq.serialize_element(&entry.decision)?;
        if extras {
            seq.serialize_element(&Extras(entry))?;
        }
        seq.end()
    }
}

/// The optional fields of an entry, as an object.
struct Extras<'a>(&'a TraceEntry);

impl Serialize for Extras<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let entry = self.0;
        let mut map = serializer.serialize_map(None)?;
        if let Some(code) = &entry.code {
            map.serialize_entry("code", code)?;
        }
        if let Some(reason) = &entry.reason {
            map.serialize_entry("reason", reason)?;
        }
        if let Some(retry) = entry.retry_after_ms {
            map.serialize_entry("retry_after_ms", &retry)?;
        }
        if let Some(waited) = entry.waited_us {
            map.serialize_entry("waited_us", &waited)?;
        }
        map.end()
    }
}

/// The stored text of `trace`.
pub(super) fn encode(trace: &Trace) -> Result<String, serde_json::Error> {
    let entries: Vec<Compact<'_>> = trace.entries().iter().map(Compact).collect();
    serde_json::to_string(&entries)
}

/// An entry as stored: compact, or the object form of earlier rows.
#[derive(Deserialize)]
#[serde(untagged)]
enum Stored {
    Compact(
        String,
        PolicyLevel,
        DecisionKind,
        #[serde(default)] Option<StoredExtras>,
    ),
    Object(TraceEntry),
}

#[derive(Default, Deserialize)]
struct StoredExtras {
    code: Option<String>,
    reason: Option<String>,
    retry_after_ms: Option<u64>,
    waited_us: Option<u64>,
}

/// The trace stored as `text`.
pub(super) fn decode(text: &str) -> Result<Trace, serde_json::Error> {
    let stored: Vec<Stored> = serde_json::from_str(text)?;
    let mut trace = Trace::new();
    for entry in stored {
        trace.push(match entry {
            Stored::Object(entry) => entry,
            Stored::Compact(guardrail, level, decision, extras) => {
                let extras = extras.unwrap_or_default();
                TraceEntry {
                    code: extras.code,
                    reason: extras.reason,
                    retry_after_ms: extras.retry_after_ms,
                    waited_us: extras.waited_us,
                    ..TraceEntry::new(guardrail, level, decision)
                }
            }
        });
    }
    Ok(trace)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly")]

    use super::*;

    fn sample() -> Trace {
        let mut trace = Trace::new();
        trace.push(TraceEntry::new(
            "rbac",
            PolicyLevel::Organisation,
            DecisionKind::Allow,
        ));
        trace.push(
            TraceEntry::new("pii_email", PolicyLevel::Agent, DecisionKind::Modify)
                .with_reason("redacted 1 email \"address\""),
        );
        trace.push(TraceEntry {
            code: Some("rate_limited".into()),
            retry_after_ms: Some(1500),
            waited_us: Some(830),
            ..TraceEntry::new(
                "rate_limit_per_minute",
                PolicyLevel::Workspace,
                DecisionKind::Throttle,
            )
        });
        trace
    }

    #[test]
    fn traces_round_trip_in_half_the_bytes() {
        let trace = sample();
        let text = encode(&trace).unwrap();
        assert!(
            text.starts_with(r#"[["rbac","organisation","allow"],"#),
            "{text}"
        );
        assert_eq!(decode(&text).unwrap(), trace);
        let objects = serde_json::to_string(&trace).unwrap();
        assert!(text.len() * 10 < objects.len() * 8, "{text} vs {objects}");
    }

    #[test]
    fn rows_written_as_objects_still_read() {
        let trace = sample();
        let objects = serde_json::to_string(&trace).unwrap();
        assert_eq!(decode(&objects).unwrap(), trace);
        assert_eq!(decode("[]").unwrap(), Trace::new());
        assert!(decode(r#"[["rbac"]]"#).is_err());
    }
}
