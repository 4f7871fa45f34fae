//! The policy document format.
//!
//! ```json
//! {"guardrails": [
//!   {"type": "rbac", "allow": ["fs_*"], "deny": ["fs_delete*"]},
//!   {"type": "pii_email", "action": "redact", "direction": "both"},
//!   {"type": "rate_limit_per_minute", "limit": 60},
//!   {"type": "pii_ssn", "enabled": false}
//! ]}
//! ```
//!
//! Every entry names its `type`; `enabled: false` switches off a guardrail inherited from a higher level;
//! `mandatory: true` stops lower levels from changing or switching it off. All other members are the
//! guardrail's settings, checked by the guardrail's factory.
//!
//! A policy has one entry per type, except for types that take a `name` (`rule`): there, one entry
//! per name, an unnamed rule being named by its `when` text. Levels override entries of the same
//! type and name.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::PolicyError;

/// A policy as written: an ordered list of guardrail entries.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "Value", into = "Value")]
pub struct PolicyDocument {
    /// The guardrail entries, in the order they run.
    pub guardrails: Vec<GuardrailSpec>,
}

/// One guardrail entry of a policy document.
#[derive(Clone, Debug, PartialEq)]
pub struct GuardrailSpec {
    /// The guardrail type, for example `pii_email`.
    pub type_name: String,
    /// `false` switches off an inherited guardrail of this type.
    pub enabled: bool,
    /// `true` stops lower levels from changing or switching off this guardrail.
    pub mandatory: bool,
    /// Every other member of the entry: the guardrail's own settings.
    pub settings: Map<String, Value>,
}

impl GuardrailSpec {
    /// What tells this entry apart from the others of its type, if its type has several: its `name`,
    /// or for a `rule` its `when` text, for a `webhook` its `url`.
    pub fn name(&self) -> Option<&str> {
        let text = |key: &str| self.settings.get(key).and_then(Value::as_str);
        text("name").or_else(|| match self.type_name.as_str() {
            "rule" => text("when"),
            "webhook" => text("url"),
            _ => None,
        })
    }

    /// Whether `other` is the same guardrail: same type, same name.
    pub fn same_guardrail(&self, other: &Self) -> bool {
        self.type_name == other.type_name && self.name() == other.name()
    }

    /// An enabled, non-mandatory entry of `type_name` with `settings`.
    pub fn new(type_name: impl Into<String>, settings: Map<String, Value>) -> Self {
        Self {
            type_name: type_name.into(),
            enabled: true,
            mandatory: false,
            settings,
        }
    }
}

/// The text formats a policy document can be written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PolicyFormat {
    /// JSON.
    Json,
    /// TOML: `[[guardrails]]` tables.
    Toml,
}

impl PolicyFormat {
    /// The format a file name's extension implies (`.toml` is TOML, anything else JSON).
    pub fn from_path(path: &std::path::Path) -> Self {
        match path.extension().and_then(|e| e.to_str()) {
            Some(ext) if ext.eq_ignore_ascii_case("toml") => Self::Toml,
            _ => Self::Json,
        }
    }
}

const RESERVED: [&str; 3] = ["type", "enabled", "mandatory"];

impl PolicyDocument {
    /// Parses a document written in `format`. Only the shape is checked here; a
    /// [`GuardrailRegistry`](crate::GuardrailRegistry) checks types and settings.
    pub fn parse(text: &str, format: PolicyFormat) -> Result<Self, PolicyError> {
        let value = match format {
            PolicyFormat::Json => serde_json::from_str::<Value>(text)
                .map_err(|e| PolicyError::new("", format!("invalid JSON: {e}")))?,
            PolicyFormat::Toml => toml::from_str::<Value>(text)
                .map_err(|e| PolicyError::new("", format!("invalid TOML: {}", e.message())))?,
        };
        Self::from_value(value)
    }

    /// Parses a JSON document.
    ///
    /// ```
    /// let doc = cerberus_core::PolicyDocument::from_json(r#"{"guardrails":[{"type":"pii_email","action":"redact"}]}"#)?;
    /// assert_eq!(doc.guardrails[0].type_name, "pii_email");
    /// assert_eq!(doc.guardrails[0].settings["action"], "redact");
    /// # Ok::<(), cerberus_core::PolicyError>(())
    /// ```
    pub fn from_json(text: &str) -> Result<Self, PolicyError> {
        Self::parse(text, PolicyFormat::Json)
    }

    /// Checks the shape of a document given as a JSON value.
    pub fn from_value(value: Value) -> Result<Self, PolicyError> {
        let Value::Object(mut top) = value else {
            return Err(PolicyError::new(
                "",
                "a policy must be an object with a `guardrails` list",
            ));
        };
        let guardrails = top
            .remove("guardrails")
            .ok_or_else(|| PolicyError::new("guardrails", "missing field"))?;
        // A free-form description is the only other member a policy may carry.
        if let Some(description) = top.remove("description")
            && !description.is_string()
        {
            return Err(PolicyError::new("description", "expected a string"));
        }
        if let Some(unknown) = top.keys().next() {
            return Err(PolicyError::new(
                unknown.clone(),
                "unknown field, expected `guardrails` or `description`",
            ));
        }
        let Value::Array(entries) = guardrails else {
            return Err(PolicyError::new(
                "guardrails",
                "expected a list of guardrail entries",
            ));
        };
        let mut specs: Vec<GuardrailSpec> = Vec::with_capacity(entries.len());
        for (index, entry) in entries.into_iter().enumerate() {
            let path = format!("guardrails[{index}]");
            let spec = parse_spec(entry).map_err(|e| e.within(&path))?;
            if specs.iter().any(|s| s.same_guardrail(&spec)) {
                let message = match spec.name() {
                    Some(name) => format!(
                        "`{}` `{name}` appears twice; a policy has at most one entry per type and name",
                        spec.type_name
                    ),
                    None => format!(
                        "`{}` appears twice; a policy has at most one entry per type",
                        spec.type_name
                    ),
                };
                return Err(PolicyError::new(format!("{path}.type"), message));
            }
            specs.push(spec);
        }
        Ok(Self { guardrails: specs })
    }

    /// The document as a JSON value, in the format [`PolicyDocument::from_value`] reads.
    pub fn to_value(&self) -> Value {
        Value::from(self.clone())
    }
}

fn parse_spec(entry: Value) -> Result<GuardrailSpec, PolicyError> {
    let Value::Object(mut settings) = entry else {
        return Err(PolicyError::new("", "expected an object with a `type`"));
    };
    let type_name = match settings.remove("type") {
        Some(Value::String(t)) if !t.is_empty() => t,
        Some(_) => return Err(PolicyError::new("type", "expected a non-empty string")),
        None => return Err(PolicyError::new("type", "missing field")),
    };
    let flag =
        |settings: &mut Map<String, Value>, key: &str, default: bool| match settings.remove(key) {
            None => Ok(default),
            Some(Value::Bool(b)) => Ok(b),
            Some(_) => Err(PolicyError::new(key, "expected true or false")),
        };
    let enabled = flag(&mut settings, "enabled", true)?;
    let mandatory = flag(&mut settings, "mandatory", false)?;
    // The name tells entries of one type apart through the levels: a wrong one would match nothing.
    if let Some(name) = settings.get("name")
        && name.as_str().is_none_or(str::is_empty)
    {
        return Err(PolicyError::new("name", "expected a non-empty string"));
    }
    if type_name == "rule" && !settings.contains_key("name") && !settings.contains_key("when") {
        return Err(PolicyError::new(
            "name",
            "missing field: a rule is told apart by its `name`, or else by its `when`",
        ));
    }
    Ok(GuardrailSpec {
        type_name,
        enabled,
        mandatory,
        settings,
    })
}

impl TryFrom<Value> for PolicyDocument {
    type Error = PolicyError;

    fn try_from(value: Value) -> Result<Self, Self::Error> {
        Self::from_value(value)
    }
}

impl From<PolicyDocument> for Value {
    fn from(document: PolicyDocument) -> Self {
        let entries = document
            .guardrails
            .into_iter()
            .map(|spec| {
                let mut entry = Map::with_capacity(spec.settings.len() + 3);
                entry.insert("type".into(), Value::String(spec.type_name));
                if !spec.enabled {
                    entry.insert("enabled".into(), Value::Bool(false));
                }
                if spec.mandatory {
                    entry.insert("mandatory".into(), Value::Bool(true));
                }
                entry.extend(
                    spec.settings
                        .into_iter()
                        .filter(|(k, _)| !RESERVED.contains(&k.as_str())),
                );
                Value::Object(entry)
            })
            .collect();
        let mut top = Map::new();
        top.insert("guardrails".into(), Value::Array(entries));
        Value::Object(top)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn err(value: Value) -> String {
        PolicyDocument::from_value(value).unwrap_err().to_string()
    }

    #[test]
    fn reads_the_documented_example() {
        let doc = PolicyDocument::from_json(
            r#"{"guardrails": [{"type": "rbac", "allow": ["fs_*"], "deny": ["fs_delete*"]},
            {"type": "pii_email", "action": "redact", "direction": "both"},
            {"type": "rate_limit_per_minute", "limit": 60}, {"type": "content_large_documents", "max_bytes": 100000}]}"#,
        )
        .unwrap();
        let types: Vec<_> = doc
            .guardrails
            .iter()
            .map(|g| g.type_name.as_str())
            .collect();
        assert_eq!(
            types,
            [
                "rbac",
                "pii_email",
                "rate_limit_per_minute",
                "content_large_documents"
            ]
        );
        assert!(doc.guardrails.iter().all(|g| g.enabled && !g.mandatory));
        assert_eq!(
            doc.guardrails[2].settings,
            json!({"limit": 60}).as_object().unwrap().clone()
        );
    }

    #[test]
    fn entries_of_one_type_are_told_apart_by_a_name_that_means_something() {
        assert_eq!(
            err(json!({"guardrails": [{"type": "rule", "enabled": false}]})),
            "guardrails[0].name: missing field: a rule is told apart by its `name`, or else by its `when`"
        );
        for name in [json!(""), json!(5), json!(null)] {
            assert_eq!(
                err(json!({"guardrails": [{"type": "rule", "name": name, "when": "true"}]})),
                "guardrails[0].name: expected a non-empty string"
            );
        }
        let doc = PolicyDocument::from_value(json!({"guardrails": [
            {"type": "rule", "name": "a", "enabled": false},
            {"type": "rule", "when": "true"}
        ]}))
        .unwrap();
        let names: Vec<_> = doc.guardrails.iter().map(GuardrailSpec::name).collect();
        assert_eq!(names, [Some("a"), Some("true")]);
    }

    #[test]
    fn reads_toml() {
        let doc = PolicyDocument::parse(
            "[[guardrails]]\ntype = \"pii_ssn\"\naction = \"block\"\nmandatory = true\n\n[[guardrails]]\ntype = \"rbac\"\nenabled = false\n",
            PolicyFormat::Toml,
        )
        .unwrap();
        assert!(doc.guardrails[0].mandatory);
        assert!(!doc.guardrails[1].enabled);
        assert_eq!(doc.guardrails[0].settings["action"], "block");
    }

    #[test]
    fn names_the_field_that_is_wrong() {
        assert_eq!(
            err(json!([])),
            ": a policy must be an object with a `guardrails` list"
        );
        assert_eq!(err(json!({})), "guardrails: missing field");
        assert_eq!(
            err(json!({"guardrails": {}})),
            "guardrails: expected a list of guardrail entries"
        );
        assert_eq!(
            err(json!({"guardrails": [], "rules": []})),
            "rules: unknown field, expected `guardrails` or `description`"
        );
        assert_eq!(
            err(json!({"guardrails": [1]})),
            "guardrails[0]: expected an object with a `type`"
        );
        assert_eq!(
            err(json!({"guardrails": [{"action": "x"}]})),
            "guardrails[0].type: missing field"
        );
        assert_eq!(
            err(json!({"guardrails": [{"type": ""}]})),
            "guardrails[0].type: expected a non-empty string"
        );
        assert_eq!(
            err(json!({"guardrails": [{"type": "rbac"}, {"type": "rbac", "enabled": "no"}]})),
            "guardrails[1].enabled: expected true or false"
        );
        assert!(
            err(json!({"guardrails": [{"type": "rbac"}, {"type": "rbac"}]}))
                .starts_with("guardrails[1].type: `rbac` appears twice")
        );
    }

    #[test]
    fn round_trips_through_json() {
        let value = json!({"guardrails": [{"type": "pii_ssn", "enabled": false}, {"type": "rbac", "mandatory": true, "allow": ["*"]}]});
        let doc = PolicyDocument::from_value(value.clone()).unwrap();
        assert_eq!(doc.to_value(), value);
        let again: PolicyDocument =
            serde_json::from_value(serde_json::to_value(&doc).unwrap()).unwrap();
        assert_eq!(again, doc);
    }
}
