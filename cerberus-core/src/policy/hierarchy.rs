//! The effective policy of an agent: organisation, workspace and agent documents folded into one.
//!
//! Rules, applied level by level from the organisation down:
//! - an entry of a type (and name, for types that take one) not seen yet is appended, so guardrails run
//!   in the order they were first named;
//! - an entry of a type and name already present replaces its settings in place (lower levels override
//!   higher ones);
//! - `enabled: false` switches the inherited guardrail off, and a later level may switch it on again;
//! - an entry marked `mandatory` cannot be changed or switched off by any lower level: such attempts are
//!   ignored and reported in [`EffectivePolicy::ignored`], so the admin API can show them.

use serde::Serialize;

use super::{GuardrailSpec, PolicyDocument, PolicyLevel};

/// One guardrail of an effective policy.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub struct EffectiveEntry {
    /// The entry whose settings apply.
    #[serde(flatten, serialize_with = "serialize_spec")]
    pub spec: GuardrailSpec,
    /// The level the settings came from.
    pub level: PolicyLevel,
}

/// A lower-level entry that could not apply because a higher level made that guardrail mandatory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct IgnoredOverride {
    /// The guardrail type, followed by `:` and its name for a type that takes one (`rule:amount-cap`).
    pub guardrail: String,
    /// The level whose entry was ignored.
    pub level: PolicyLevel,
    /// The level that made it mandatory.
    pub mandatory_at: PolicyLevel,
}

/// The guardrails that apply to one agent, in order, each with the level its settings came from.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[non_exhaustive]
pub struct EffectivePolicy {
    /// The enabled guardrails, in the order they run.
    pub entries: Vec<EffectiveEntry>,
    /// Lower-level entries ignored because of a mandatory guardrail.
    pub ignored: Vec<IgnoredOverride>,
}

struct Slot {
    spec: GuardrailSpec,
    level: PolicyLevel,
    /// The level that locked this guardrail, if any.
    locked_at: Option<PolicyLevel>,
}

impl EffectivePolicy {
    /// Folds documents attached at several levels into one policy.
    ///
    /// Documents are applied from the highest level to the lowest whatever order they come in; several
    /// documents at one level apply in the order given.
    ///
    /// ```
    /// use cerberus_core::{EffectivePolicy, PolicyDocument, PolicyLevel};
    /// let org = PolicyDocument::from_json(r#"{"guardrails":[{"type":"pii_ssn","action":"block","mandatory":true},{"type":"pii_email","action":"block"}]}"#)?;
    /// let agent = PolicyDocument::from_json(r#"{"guardrails":[{"type":"pii_email","action":"redact"},{"type":"pii_ssn","enabled":false}]}"#)?;
    /// let policy = EffectivePolicy::merge([(PolicyLevel::Organisation, &org), (PolicyLevel::Agent, &agent)]);
    /// assert_eq!(policy.entries.len(), 2);
    /// assert_eq!(policy.entries[1].spec.settings["action"], "redact");
    /// assert_eq!(policy.entries[1].level, PolicyLevel::Agent);
    /// assert_eq!(policy.ignored[0].guardrail, "pii_ssn");
    /// # Ok::<(), cerberus_core::PolicyError>(())
    /// ```
    pub fn merge<'a>(
        documents: impl IntoIterator<Item = (PolicyLevel, &'a PolicyDocument)>,
    ) -> Self {
        let mut documents: Vec<_> = documents.into_iter().collect();
        documents.sort_by_key(|(level, _)| *level);
        let mut slots: Vec<Slot> = Vec::new();
        let mut ignored = Vec::new();
        for (level, document) in documents {
            for spec in &document.guardrails {
                match slots.iter_mut().find(|slot| slot.spec.same_guardrail(spec)) {
                    Some(slot) => match slot.locked_at {
                        Some(locked_at) if locked_at < level => ignored.push(IgnoredOverride {
                            guardrail: match spec.name() {
                                Some(name) => format!("{}:{name}", spec.type_name),
                                None => spec.type_name.clone(),
                            },
                            level,
                            mandatory_at: locked_at,
                        }),
                        _ => {
                            slot.spec = spec.clone();
                            slot.level = level;
                            slot.locked_at = spec.mandatory.then_some(level).or(slot.locked_at);
                        }
                    },
                    None => slots.push(Slot {
                        spec: spec.clone(),
                        level,
                        locked_at: spec.mandatory.then_some(level),
                    }),
                }
            }
        }
        let entries = slots
            .into_iter()
            .filter(|slot| slot.spec.enabled)
            .map(|slot| EffectiveEntry {
                spec: slot.spec,
                level: slot.level,
            })
            .collect();
        Self { entries, ignored }
    }

    /// The policy of a single document, as if attached to the organisation.
    pub fn single(document: &PolicyDocument) -> Self {
        Self::merge([(PolicyLevel::Organisation, document)])
    }

    /// The entry of `type_name`, if it is enabled.
    pub fn get(&self, type_name: &str) -> Option<&EffectiveEntry> {
        self.entries.iter().find(|e| e.spec.type_name == type_name)
    }
}

fn serialize_spec<S: serde::Serializer>(spec: &GuardrailSpec, s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut map = s.serialize_map(None)?;
    map.serialize_entry("type", &spec.type_name)?;
    if spec.mandatory {
        map.serialize_entry("mandatory", &true)?;
    }
    for (key, value) in &spec.settings {
        map.serialize_entry(key, value)?;
    }
    map.end()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc(value: serde_json::Value) -> PolicyDocument {
        PolicyDocument::from_value(value).unwrap()
    }

    fn summary(policy: &EffectivePolicy) -> Vec<(String, PolicyLevel, serde_json::Value)> {
        policy
            .entries
            .iter()
            .map(|e| {
                (
                    e.spec.type_name.clone(),
                    e.level,
                    serde_json::Value::Object(e.spec.settings.clone()),
                )
            })
            .collect()
    }

    use PolicyLevel::{Agent, Organisation, Workspace};

    #[test]
    fn no_documents_means_no_guardrails() {
        assert_eq!(EffectivePolicy::merge([]), EffectivePolicy::default());
    }

    #[test]
    fn lower_levels_override_per_type_in_place() {
        let org = doc(
            json!({"guardrails": [{"type": "a", "v": 1}, {"type": "b", "v": 1}, {"type": "c", "v": 1}]}),
        );
        let ws = doc(json!({"guardrails": [{"type": "b", "v": 2}, {"type": "d", "v": 2}]}));
        let agent = doc(json!({"guardrails": [{"type": "c", "v": 3}, {"type": "b", "v": 3}]}));
        let policy =
            EffectivePolicy::merge([(Organisation, &org), (Workspace, &ws), (Agent, &agent)]);
        assert_eq!(
            summary(&policy),
            [
                ("a".into(), Organisation, json!({"v": 1})),
                ("b".into(), Agent, json!({"v": 3})),
                ("c".into(), Agent, json!({"v": 3})),
                ("d".into(), Workspace, json!({"v": 2})),
            ]
        );
        assert!(policy.ignored.is_empty());
    }

    #[test]
    fn levels_apply_top_down_whatever_the_argument_order() {
        let org = doc(json!({"guardrails": [{"type": "a", "v": 1}]}));
        let agent = doc(json!({"guardrails": [{"type": "a", "v": 3}]}));
        let policy = EffectivePolicy::merge([(Agent, &agent), (Organisation, &org)]);
        assert_eq!(summary(&policy), [("a".into(), Agent, json!({"v": 3}))]);
    }

    #[test]
    fn a_level_can_disable_and_a_lower_one_re_enable() {
        let org = doc(json!({"guardrails": [{"type": "a", "v": 1}, {"type": "b"}]}));
        let ws = doc(json!({"guardrails": [{"type": "a", "enabled": false}]}));
        let disabled = EffectivePolicy::merge([(Organisation, &org), (Workspace, &ws)]);
        assert_eq!(summary(&disabled), [("b".into(), Organisation, json!({}))]);

        let agent = doc(json!({"guardrails": [{"type": "a", "v": 3}]}));
        let enabled =
            EffectivePolicy::merge([(Organisation, &org), (Workspace, &ws), (Agent, &agent)]);
        assert_eq!(
            summary(&enabled),
            [
                ("a".into(), Agent, json!({"v": 3})),
                ("b".into(), Organisation, json!({}))
            ],
            "re-enabled in its original position"
        );
    }

    #[test]
    fn mandatory_guardrails_cannot_be_changed_or_removed_below() {
        let org = doc(json!({"guardrails": [{"type": "a", "v": 1, "mandatory": true}]}));
        let ws = doc(json!({"guardrails": [{"type": "a", "enabled": false}]}));
        let agent = doc(json!({"guardrails": [{"type": "a", "v": 3}]}));
        let policy =
            EffectivePolicy::merge([(Organisation, &org), (Workspace, &ws), (Agent, &agent)]);
        assert_eq!(
            summary(&policy),
            [("a".into(), Organisation, json!({"v": 1}))]
        );
        assert_eq!(
            policy.ignored,
            [
                IgnoredOverride {
                    guardrail: "a".into(),
                    level: Workspace,
                    mandatory_at: Organisation
                },
                IgnoredOverride {
                    guardrail: "a".into(),
                    level: Agent,
                    mandatory_at: Organisation
                },
            ]
        );
    }

    #[test]
    fn a_workspace_can_make_a_guardrail_mandatory_for_its_agents() {
        let org = doc(json!({"guardrails": [{"type": "a", "v": 1}]}));
        let ws = doc(json!({"guardrails": [{"type": "a", "v": 2, "mandatory": true}]}));
        let agent = doc(json!({"guardrails": [{"type": "a", "enabled": false}]}));
        let policy =
            EffectivePolicy::merge([(Organisation, &org), (Workspace, &ws), (Agent, &agent)]);
        assert_eq!(summary(&policy), [("a".into(), Workspace, json!({"v": 2}))]);
        assert_eq!(policy.ignored.len(), 1);
    }

    #[test]
    fn several_documents_at_one_level_apply_in_order() {
        let first = doc(json!({"guardrails": [{"type": "a", "v": 1, "mandatory": true}]}));
        let second = doc(json!({"guardrails": [{"type": "a", "v": 2}]}));
        let policy = EffectivePolicy::merge([(Organisation, &first), (Organisation, &second)]);
        assert_eq!(
            summary(&policy),
            [("a".into(), Organisation, json!({"v": 2}))]
        );
        assert!(policy.ignored.is_empty(), "a level does not lock itself");
        assert!(
            policy.get("a").is_some(),
            "a same-level update keeps the lock"
        );
    }

    #[test]
    fn serialises_for_the_admin_api() {
        let org =
            doc(json!({"guardrails": [{"type": "pii_ssn", "action": "block", "mandatory": true}]}));
        let value = serde_json::to_value(EffectivePolicy::single(&org)).unwrap();
        assert_eq!(
            value,
            json!({"entries": [{"type": "pii_ssn", "mandatory": true, "action": "block", "level": "organisation"}], "ignored": []})
        );
    }
}
