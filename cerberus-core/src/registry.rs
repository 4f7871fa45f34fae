//! The [`GuardrailRegistry`]: guardrail type names, their factories, and pipelines built from policies.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::guardrail::Guardrail;
use crate::guardrails::content::{
    ContentLimit, ContentLimits, LargeDocuments, SourceCode, StructuredData,
};
use crate::guardrails::pii::{PiiGuardrail, PiiKind, PiiKinds, PiiRule, PiiScanner, PiiSettings};
use crate::guardrails::rate_limit::{RateLimitGuardrail, RateLimitPeriod, RateLimitRule};
use crate::guardrails::rbac::Rbac;
#[cfg(feature = "rules")]
use crate::guardrails::rule::{Rule, RuleGuardrail};
use crate::guardrails::tool_pinning::ToolPinning;
use crate::pinning::{MemoryPinStore, PinStore};
use crate::pipeline::Pipeline;
use crate::policy::{EffectivePolicy, PolicyDocument, PolicyError, PolicyLevel};
use crate::rate_limit::{MemoryRateLimiter, RateLimiter};

/// The type names of the built-in guardrails.
pub const BUILTIN_TYPES: &[&str] = &[
    "rbac",
    "pii_ssn",
    "pii_credit_card",
    "pii_email",
    "pii_phone",
    "pii_ip_address",
    "rate_limit_per_minute",
    "rate_limit_per_hour",
    "content_large_documents",
    "content_structured_data",
    "content_source_code",
    "tool_pinning",
    #[cfg(feature = "rules")]
    "rule",
];

/// Parses a guardrail's settings into `T`, naming the offending field on error.
///
/// ```
/// #[derive(Debug, serde::Deserialize)]
/// #[serde(deny_unknown_fields)]
/// struct Settings { words: Vec<String> }
///
/// let settings = serde_json::json!({"words": ["a", 3]});
/// let err = cerberus_core::parse_settings::<Settings>(settings.as_object().unwrap()).unwrap_err();
/// assert_eq!(err.path, "words[1]");
/// ```
pub fn parse_settings<T: DeserializeOwned>(
    settings: &Map<String, Value>,
) -> Result<T, PolicyError> {
    serde_path_to_error::deserialize(Value::Object(settings.clone())).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { String::new() } else { path };
        PolicyError::new(path, e.into_inner().to_string())
    })
}

/// What a factory may hand to the guardrails it builds.
#[derive(Clone, Debug)]
pub struct BuildEnv {
    /// Where rate limits are counted.
    pub rate_limiter: Arc<dyn RateLimiter>,
    /// Where tool definitions are pinned.
    pub pin_store: Arc<dyn PinStore>,
}

/// Builds a guardrail of one type from its settings.
pub trait GuardrailFactory: Send + Sync {
    /// Checks `settings` and builds the guardrail.
    fn build(
        &self,
        settings: &Map<String, Value>,
        env: &BuildEnv,
    ) -> Result<Arc<dyn Guardrail>, PolicyError>;
}

impl<F> GuardrailFactory for F
where
    F: Fn(&Map<String, Value>, &BuildEnv) -> Result<Arc<dyn Guardrail>, PolicyError> + Send + Sync,
{
    fn build(
        &self,
        settings: &Map<String, Value>,
        env: &BuildEnv,
    ) -> Result<Arc<dyn Guardrail>, PolicyError> {
        self(settings, env)
    }
}

/// Why a factory cannot be registered.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// The name is a built-in guardrail's or was registered already.
    #[error("guardrail type `{0}` is already registered")]
    Taken(String),
    /// The name is not a lowercase identifier.
    #[error(
        "guardrail type `{0}` must be lowercase letters, digits and underscores, starting with a letter"
    )]
    InvalidName(String),
}

/// Knows every guardrail type, checks policy documents and builds pipelines.
///
/// ```
/// use cerberus_core::{EffectivePolicy, GuardrailRegistry, PolicyDocument};
/// let registry = GuardrailRegistry::default();
/// let doc = PolicyDocument::from_json(r#"{"guardrails":[{"type":"pii_email","action":"redact"},{"type":"rate_limit_per_minute","limit":60}]}"#)?;
/// registry.validate(&doc)?;
/// let pipeline = registry.build(&EffectivePolicy::single(&doc))?;
/// assert_eq!(pipeline.type_names().collect::<Vec<_>>(), ["pii", "rate_limit"]);
/// let bad = PolicyDocument::from_json(r#"{"guardrails":[{"type":"rate_limit_per_minute","limit":0}]}"#)?;
/// assert!(registry.validate(&bad).unwrap_err().to_string().starts_with("guardrails[0].limit:"));
/// # Ok::<(), cerberus_core::PolicyError>(())
/// ```
pub struct GuardrailRegistry {
    custom: HashMap<String, Arc<dyn GuardrailFactory>>,
    env: BuildEnv,
    /// Compiled scanners by kind set, shared by every pipeline this registry (and its sandboxes)
    /// builds.
    scanners: Arc<Mutex<HashMap<PiiKinds, Arc<PiiScanner>>>>,
}

impl fmt::Debug for GuardrailRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut custom: Vec<_> = self.custom.keys().collect();
        custom.sort();
        f.debug_struct("GuardrailRegistry")
            .field("custom", &custom)
            .field("env", &self.env)
            .finish_non_exhaustive()
    }
}

impl Default for GuardrailRegistry {
    /// A registry counting rate limits and pinning tool definitions in memory.
    fn default() -> Self {
        Self::new(Arc::new(MemoryRateLimiter::new()))
    }
}

/// One stage of a pipeline under construction.
enum Planned {
    Single(PolicyLevel, Arc<dyn Guardrail>),
    /// Where the PII stage goes (at the first `pii_*` entry).
    Pii,
    /// Where the rate-limit stage goes (at the first `rate_limit_*` entry).
    RateLimit,
    /// Where the content stage goes (at the first `content_*` entry).
    Content,
    /// Where the rule stage goes (at the first `rule` entry).
    #[cfg(feature = "rules")]
    Rules,
}

impl GuardrailRegistry {
    /// A registry whose rate-limit guardrails count in `rate_limiter`, pinning tool definitions in
    /// memory.
    pub fn new(rate_limiter: Arc<dyn RateLimiter>) -> Self {
        Self {
            custom: HashMap::new(),
            env: BuildEnv {
                rate_limiter,
                pin_store: Arc::new(MemoryPinStore::new()),
            },
            scanners: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// The same registry, its custom types kept, with rate limits counted in `rate_limiter`: what a
    /// gateway does to the registry it is given when several instances share their limits.
    pub fn with_rate_limiter(mut self, rate_limiter: Arc<dyn RateLimiter>) -> Self {
        self.env.rate_limiter = rate_limiter;
        self
    }

    /// A registry of the same guardrail types that counts rate limits and pins tool definitions in
    /// memory of its own, and shares this one's compiled scanners: for trying a policy on a sample
    /// message (a dry run) without spending an agent's quota or pinning definitions in the
    /// gateway's store. Made per trial, it forgets the trial with it.
    pub fn sandbox(&self) -> Self {
        Self {
            custom: self.custom.clone(),
            scanners: Arc::clone(&self.scanners),
            ..Self::default()
        }
    }

    /// The same registry with tool definitions pinned in `pin_store`: what a gateway with a
    /// database does, so that pins and approvals outlive the process and reach every instance.
    pub fn with_pin_store(mut self, pin_store: Arc<dyn PinStore>) -> Self {
        self.env.pin_store = pin_store;
        self
    }

    /// Registers a custom guardrail type, so that policy documents can name it.
    pub fn register(
        &mut self,
        type_name: &str,
        factory: impl GuardrailFactory + 'static,
    ) -> Result<(), RegistryError> {
        let valid = type_name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase())
            && type_name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !valid {
            return Err(RegistryError::InvalidName(type_name.to_owned()));
        }
        if BUILTIN_TYPES.contains(&type_name) || self.custom.contains_key(type_name) {
            return Err(RegistryError::Taken(type_name.to_owned()));
        }
        self.custom.insert(type_name.to_owned(), Arc::new(factory));
        Ok(())
    }

    /// Every type name known, built-in first.
    pub fn type_names(&self) -> Vec<&str> {
        let mut custom: Vec<&str> = self.custom.keys().map(String::as_str).collect();
        custom.sort_unstable();
        BUILTIN_TYPES.iter().copied().chain(custom).collect()
    }

    /// What built guardrails may use.
    pub fn env(&self) -> &BuildEnv {
        &self.env
    }

    /// Checks every entry of a document: known type, valid settings (entries that only switch a guardrail
    /// off carry no settings and are checked for their type alone).
    pub fn validate(&self, document: &PolicyDocument) -> Result<(), PolicyError> {
        for (index, spec) in document.guardrails.iter().enumerate() {
            let path = format!("guardrails[{index}]");
            if !self.knows(&spec.type_name) {
                return Err(PolicyError::new(
                    format!("{path}.type"),
                    format!(
                        "unknown guardrail type `{}`; known types: {}",
                        spec.type_name,
                        self.type_names().join(", ")
                    ),
                ));
            }
            if spec.enabled {
                self.build_one(&spec.type_name, &spec.settings, PolicyLevel::Organisation)
                    .map_err(|e| e.within(&path))?;
            }
        }
        Ok(())
    }

    /// Builds the pipeline of an effective policy.
    ///
    /// Guardrails run in the policy's order; every `pii_*` entry runs in one stage at the place of the
    /// first, and so do every `rate_limit_*`, every `content_*` and every `rule` entry.
    pub fn build(&self, policy: &EffectivePolicy) -> Result<Pipeline, PolicyError> {
        let mut planned = Vec::with_capacity(policy.entries.len());
        let mut pii_rules = Vec::new();
        let mut rate_rules = Vec::new();
        let mut content_limits = Vec::new();
        #[cfg(feature = "rules")]
        let mut rules: Vec<Rule> = Vec::new();
        for entry in &policy.entries {
            let spec = &entry.spec;
            let within =
                |e: PolicyError| e.within(&format!("{} policy, {}", entry.level, spec.type_name));
            if let Some(kind) = PiiKind::from_type_name(&spec.type_name) {
                let settings: PiiSettings = parse_settings(&spec.settings).map_err(within)?;
                settings.check(kind).map_err(within)?;
                if pii_rules.is_empty() {
                    planned.push(Planned::Pii);
                }
                pii_rules.push(PiiRule {
                    kind,
                    settings,
                    level: entry.level,
                });
            } else if cfg!(feature = "rules") && spec.type_name == "rule" {
                #[cfg(feature = "rules")]
                {
                    let rule =
                        Rule::new(parse_settings(&spec.settings).map_err(within)?, entry.level)
                            .map_err(within)?;
                    if rules.is_empty() {
                        planned.push(Planned::Rules);
                    }
                    rules.push(rule);
                }
            } else if let Some(period) = RateLimitPeriod::from_type_name(&spec.type_name) {
                let settings = parse_settings(&spec.settings).map_err(within)?;
                if rate_rules.is_empty() {
                    planned.push(Planned::RateLimit);
                }
                rate_rules.push(RateLimitRule {
                    period,
                    settings,
                    level: entry.level,
                });
            } else if let Some(limit) = content_limit(&spec.type_name, &spec.settings) {
                if content_limits.is_empty() {
                    planned.push(Planned::Content);
                }
                content_limits.push((limit.map_err(within)?, entry.level));
            } else {
                let guardrail = self
                    .build_one(&spec.type_name, &spec.settings, entry.level)
                    .map_err(within)?;
                planned.push(Planned::Single(entry.level, guardrail));
            }
        }
        let content_level = content_limits.first().map(|(_, level)| *level);
        let mut content = (!content_limits.is_empty()).then(|| ContentLimits::new(content_limits));
        let pii_level = pii_rules.first().map(|r| r.level);
        let rate_level = rate_rules.first().map(|r| r.level);
        let mut pii = (!pii_rules.is_empty())
            .then(|| PiiGuardrail::with_scanners(pii_rules, |kinds| self.scanner(kinds)));
        let mut rate = (!rate_rules.is_empty())
            .then(|| RateLimitGuardrail::new(rate_rules, Arc::clone(&self.env.rate_limiter)));
        #[cfg(feature = "rules")]
        let rules_level = rules.first().map(|r| r.level());
        #[cfg(feature = "rules")]
        let mut rules = (!rules.is_empty()).then(|| RuleGuardrail::new(rules));
        let mut pipeline = Pipeline::new();
        for stage in planned {
            match stage {
                Planned::Single(level, guardrail) => pipeline.push(level, guardrail),
                Planned::Pii => {
                    if let (Some(g), Some(level)) = (pii.take(), pii_level) {
                        pipeline.push(level, Arc::new(g));
                    }
                }
                Planned::RateLimit => {
                    if let (Some(g), Some(level)) = (rate.take(), rate_level) {
                        pipeline.push(level, Arc::new(g));
                    }
                }
                Planned::Content => {
                    if let (Some(g), Some(level)) = (content.take(), content_level) {
                        pipeline.push(level, Arc::new(g));
                    }
                }
                #[cfg(feature = "rules")]
                Planned::Rules => {
                    if let (Some(g), Some(level)) = (rules.take(), rules_level) {
                        pipeline.push(level, Arc::new(g));
                    }
                }
            }
        }
        Ok(pipeline)
    }

    fn knows(&self, type_name: &str) -> bool {
        BUILTIN_TYPES.contains(&type_name) || self.custom.contains_key(type_name)
    }

    /// Builds one guardrail (a PII or rate-limit entry alone, for validation).
    fn build_one(
        &self,
        type_name: &str,
        settings: &Map<String, Value>,
        level: PolicyLevel,
    ) -> Result<Arc<dyn Guardrail>, PolicyError> {
        if let Some(kind) = PiiKind::from_type_name(type_name) {
            let settings: PiiSettings = parse_settings(settings)?;
            settings.check(kind)?;
            let rule = PiiRule {
                kind,
                settings,
                level,
            };
            return Ok(Arc::new(PiiGuardrail::with_scanners(vec![rule], |kinds| {
                self.scanner(kinds)
            })));
        }
        if let Some(period) = RateLimitPeriod::from_type_name(type_name) {
            let rule = RateLimitRule {
                period,
                settings: parse_settings(settings)?,
                level,
            };
            return Ok(Arc::new(RateLimitGuardrail::new(
                vec![rule],
                Arc::clone(&self.env.rate_limiter),
            )));
        }
        let guardrail: Arc<dyn Guardrail> = match type_name {
            "rbac" => Arc::new(Rbac::new(parse_settings(settings)?)),
            #[cfg(feature = "rules")]
            "rule" => Arc::new(RuleGuardrail::new(vec![Rule::new(
                parse_settings(settings)?,
                level,
            )?])),
            "content_large_documents" => Arc::new(LargeDocuments(parse_settings(settings)?)),
            "content_structured_data" => Arc::new(StructuredData(parse_settings(settings)?)),
            "content_source_code" => Arc::new(SourceCode(parse_settings(settings)?)),
            "tool_pinning" => Arc::new(ToolPinning::new(
                parse_settings(settings)?,
                Arc::clone(&self.env.pin_store),
            )),
            custom => match self.custom.get(custom) {
                Some(factory) => factory.build(settings, &self.env)?,
                None => {
                    return Err(PolicyError::new(
                        "type",
                        format!("unknown guardrail type `{custom}`"),
                    ));
                }
            },
        };
        Ok(guardrail)
    }

    fn scanner(&self, kinds: PiiKinds) -> Arc<PiiScanner> {
        match self.scanners.lock() {
            Ok(mut cache) => Arc::clone(
                cache
                    .entry(kinds)
                    .or_insert_with(|| Arc::new(PiiScanner::new(kinds))),
            ),
            // A panic elsewhere poisoned the cache: compiling afresh is always correct.
            Err(_) => Arc::new(PiiScanner::new(kinds)),
        }
    }
}

/// The `content_*` entry of `type_name`, if it is one, with its settings parsed.
fn content_limit(
    type_name: &str,
    settings: &Map<String, Value>,
) -> Option<Result<ContentLimit, PolicyError>> {
    Some(match type_name {
        "content_large_documents" => {
            parse_settings(settings).map(|s| ContentLimit::LargeDocuments(LargeDocuments(s)))
        }
        "content_structured_data" => {
            parse_settings(settings).map(|s| ContentLimit::StructuredData(StructuredData(s)))
        }
        "content_source_code" => {
            parse_settings(settings).map(|s| ContentLimit::SourceCode(SourceCode(s)))
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        Decision, Direction, Envelope, GuardrailContext, GuardrailResult, Identity, Message,
        SyncGuardrail,
    };
    use serde_json::json;

    fn doc(v: Value) -> PolicyDocument {
        PolicyDocument::from_value(v).unwrap()
    }

    fn validate(v: Value) -> Result<(), String> {
        GuardrailRegistry::default()
            .validate(&doc(v))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn accepts_every_builtin_with_valid_settings() {
        validate(json!({"guardrails": [
            {"type": "rbac", "allow": ["fs_*"], "deny": ["fs_delete*"]},
            {"type": "pii_ssn", "action": "block", "context": ["ssn", "taxpayer id"]},
            {"type": "pii_credit_card", "action": "redact", "direction": "response"},
            {"type": "pii_email", "action": "redact", "direction": "both"},
            {"type": "pii_phone", "context": true},
            {"type": "pii_ip_address", "replacement": "<ip>", "context": false},
            {"type": "rate_limit_per_minute", "limit": 60},
            {"type": "rate_limit_per_hour", "limit": 1000, "key": "agent_tool"},
            {"type": "content_large_documents", "max_bytes": 100000},
            {"type": "content_structured_data", "max_rows": 100},
            {"type": "content_source_code", "max_lines": 50},
            {"type": "tool_pinning", "mode": "warn", "on_error": "allow"}
        ]}))
        .unwrap();
    }

    #[test]
    fn rejects_unknown_types_and_bad_settings_naming_the_field() {
        let cases = [
            (
                json!({"guardrails": [{"type": "pii_passport"}]}),
                "guardrails[0].type: unknown guardrail type `pii_passport`",
            ),
            (
                json!({"guardrails": [{"type": "rbac"}, {"type": "pii_email", "action": "mask"}]}),
                "guardrails[1].action: unknown variant `mask`",
            ),
            (
                json!({"guardrails": [{"type": "pii_email", "directions": "both"}]}),
                "guardrails[0].directions: unknown field `directions`",
            ),
            (
                json!({"guardrails": [{"type": "rate_limit_per_minute"}]}),
                "guardrails[0]: missing field `limit`",
            ),
            (
                json!({"guardrails": [{"type": "rate_limit_per_hour", "limit": 0}]}),
                "guardrails[0].limit: invalid value: integer `0`",
            ),
            (
                json!({"guardrails": [{"type": "rbac", "allow": ["ok", ""]}]}),
                "guardrails[0].allow[1]: a pattern cannot be empty",
            ),
            (
                json!({"guardrails": [{"type": "pii_email", "context": true}]}),
                "guardrails[0].context: context words apply to pii_ssn and pii_phone",
            ),
            (
                json!({"guardrails": [{"type": "pii_ssn", "context": ["ssn", "form 1040"]}]}),
                "guardrails[0].context[1]: the word holds a digit",
            ),
            (
                json!({"guardrails": [{"type": "content_large_documents", "max_bytes": "big"}]}),
                "guardrails[0].max_bytes: invalid type",
            ),
        ];
        for (policy, expected) in cases {
            let err = validate(policy.clone()).unwrap_err();
            assert!(err.starts_with(expected), "{policy}: {err}");
        }
    }

    #[test]
    fn a_disabling_entry_needs_no_settings_but_a_known_type() {
        validate(json!({"guardrails": [{"type": "rate_limit_per_minute", "enabled": false}]}))
            .unwrap();
        assert!(validate(json!({"guardrails": [{"type": "nope", "enabled": false}]})).is_err());
    }

    #[test]
    fn builds_composite_stages_in_policy_order() {
        let registry = GuardrailRegistry::default();
        let policy = doc(json!({"guardrails": [
            {"type": "content_large_documents", "max_bytes": 10},
            {"type": "pii_email", "action": "redact"},
            {"type": "rbac", "allow": ["*"]},
            {"type": "rate_limit_per_hour", "limit": 5},
            {"type": "pii_ssn"},
            {"type": "content_source_code", "max_lines": 5},
            {"type": "rate_limit_per_minute", "limit": 5}
        ]}));
        let pipeline = registry.build(&EffectivePolicy::single(&policy)).unwrap();
        assert_eq!(
            pipeline.type_names().collect::<Vec<_>>(),
            ["content", "pii", "rbac", "rate_limit"]
        );
    }

    #[test]
    fn rules_are_told_apart_by_name_and_checked_where_they_stand() {
        validate(json!({"guardrails": [
            {"type": "rule", "name": "read-only", "when": "tool == 'run_sql' && !arguments.sql.startsWith('SELECT')"},
            {"type": "rule", "name": "cap", "when": "arguments.amount > 1000"},
            {"type": "rule", "when": "tool == 'a'"},
            {"type": "rule", "when": "tool == 'b'"}
        ]}))
        .unwrap();
        let error = validate(json!({"guardrails": [
            {"type": "rbac", "allow": ["*"]},
            {"type": "rule", "name": "cap", "when": "arguments.amount > '1000' && tool > 5"}
        ]}))
        .unwrap_err();
        assert_eq!(
            error,
            "guardrails[1].when: column 35: cannot order a string and int"
        );
        let twice = PolicyDocument::from_value(json!({"guardrails": [
            {"type": "rule", "name": "cap", "when": "true"},
            {"type": "rule", "name": "cap", "when": "false"}
        ]}))
        .unwrap_err()
        .to_string();
        assert!(
            twice.starts_with("guardrails[1].type: `rule` `cap` appears twice"),
            "{twice}"
        );
    }

    #[test]
    fn rules_merge_through_the_levels_by_name() {
        let org = doc(json!({"guardrails": [
            {"type": "rule", "name": "cap", "when": "arguments.amount > 1000", "mandatory": true},
            {"type": "rule", "name": "hours", "when": "now.getHours('UTC') < 6"},
            {"type": "rbac", "allow": ["*"]}
        ]}));
        let workspace = doc(json!({"guardrails": [
            {"type": "rule", "name": "cap", "enabled": false},
            {"type": "rule", "name": "hours", "enabled": false},
            {"type": "rule", "name": "local", "when": "tool == 'x'"}
        ]}));
        let policy = EffectivePolicy::merge([
            (PolicyLevel::Organisation, &org),
            (PolicyLevel::Workspace, &workspace),
        ]);
        let names: Vec<_> = policy
            .entries
            .iter()
            .filter_map(|e| e.spec.name())
            .collect();
        assert_eq!(names, ["cap", "local"]);
        assert_eq!(policy.ignored[0].guardrail, "rule:cap");
        let pipeline = GuardrailRegistry::default().build(&policy).unwrap();
        assert_eq!(pipeline.type_names().collect::<Vec<_>>(), ["rule", "rbac"]);
    }

    #[test]
    fn pipelines_share_compiled_scanners() {
        let registry = GuardrailRegistry::default();
        let policy = EffectivePolicy::single(&doc(json!({"guardrails": [{"type": "pii_email"}]})));
        registry.build(&policy).unwrap();
        registry.build(&policy).unwrap();
        assert_eq!(registry.scanners.lock().unwrap().len(), 1);
    }

    #[test]
    fn a_sandbox_keeps_the_types_and_scanners_but_not_the_state() {
        let shared: Arc<dyn RateLimiter> = Arc::new(MemoryRateLimiter::new());
        let mut registry = GuardrailRegistry::new(Arc::clone(&shared));
        registry
            .register("deny_word", |_: &Map<String, Value>, _: &BuildEnv| {
                Ok(Arc::new(Deny("x".into())) as Arc<dyn Guardrail>)
            })
            .unwrap();
        let policy = EffectivePolicy::single(&doc(json!({"guardrails": [{"type": "pii_email"}]})));
        registry.build(&policy).unwrap();
        let sandbox = registry.sandbox();
        assert_eq!(sandbox.type_names(), registry.type_names());
        sandbox.build(&policy).unwrap();
        assert!(Arc::ptr_eq(&sandbox.scanners, &registry.scanners));
        assert!(!Arc::ptr_eq(&sandbox.env.rate_limiter, &shared));
        assert!(!Arc::ptr_eq(
            &sandbox.env.pin_store,
            &registry.env.pin_store
        ));
    }

    #[derive(Debug)]
    struct Deny(String);

    impl SyncGuardrail for Deny {
        fn type_name(&self) -> &str {
            "deny_word"
        }
        fn evaluate_sync(&self, ctx: &GuardrailContext<'_>) -> GuardrailResult {
            if ctx
                .message
                .payload()
                .is_some_and(|p| p.to_string().contains(&self.0))
            {
                GuardrailResult::block("word", "forbidden word")
            } else {
                GuardrailResult::Allow
            }
        }
    }

    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct DenySettings {
        word: String,
    }

    #[tokio::test]
    async fn custom_guardrails_plug_in_by_type_name() {
        let mut registry = GuardrailRegistry::default();
        registry
            .register(
                "deny_word",
                |settings: &Map<String, Value>, _: &BuildEnv| {
                    let s: DenySettings = parse_settings(settings)?;
                    Ok(Arc::new(Deny(s.word)) as Arc<dyn Guardrail>)
                },
            )
            .unwrap();
        assert_eq!(
            registry
                .register(
                    "deny_word",
                    |_: &Map<String, Value>, _: &BuildEnv| unreachable!()
                )
                .unwrap_err(),
            RegistryError::Taken("deny_word".into())
        );
        assert!(
            registry
                .register(
                    "rbac",
                    |_: &Map<String, Value>, _: &BuildEnv| unreachable!()
                )
                .is_err()
        );
        assert!(matches!(
            registry.register(
                "Bad-Name",
                |_: &Map<String, Value>, _: &BuildEnv| unreachable!()
            ),
            Err(RegistryError::InvalidName(_))
        ));
        assert!(registry.type_names().contains(&"deny_word"));

        let bad = doc(json!({"guardrails": [{"type": "deny_word", "words": "x"}]}));
        assert!(
            registry
                .validate(&bad)
                .unwrap_err()
                .to_string()
                .starts_with("guardrails[0].words: unknown field `words`")
        );

        let policy = doc(json!({"guardrails": [{"type": "deny_word", "word": "secret"}]}));
        let pipeline = registry.build(&EffectivePolicy::single(&policy)).unwrap();
        let identity = Identity::new_random();
        let message = Message::parse(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":{"q":"the secret"}}}"#).unwrap();
        let outcome = pipeline
            .run(Envelope::new(Direction::Request, &identity), message)
            .await;
        assert!(
            matches!(outcome.decision, Decision::Block { ref guardrail, .. } if guardrail == "deny_word")
        );
    }
}
