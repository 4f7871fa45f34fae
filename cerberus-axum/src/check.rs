//! `cerberus check`: a dry run of the guardrail pipeline for policy authors, from the command line
//! and from the admin console (`POST /api/v1/policies/check`).

#[cfg(feature = "cli")]
use std::io::Read;
#[cfg(feature = "cli")]
use std::path::Path;
use std::path::PathBuf;

use cerberus_core::{
    Decision, Direction, EffectivePolicy, Envelope, GuardrailRegistry, Identity, Message,
    MessageKind, PolicyDocument, PolicyError, PolicyLevel, Trace,
};
use serde_json::{Map, Value};

#[cfg(feature = "cli")]
use crate::cli::{CheckArgs, CliDirection};

/// Why a check could not run.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A policy is malformed.
    #[error("policy {path}: {source}")]
    Policy {
        /// The file.
        path: PathBuf,
        /// What is wrong, with the field named.
        source: PolicyError,
    },
    /// More policy files than levels.
    #[error("at most three --policy files (organisation, workspace, agent), got {0}")]
    TooManyPolicies(usize),
    /// The policies merge into a pipeline that cannot be built.
    #[error("effective policy: {0}")]
    Build(PolicyError),
    /// The message is not a JSON-RPC 2.0 message.
    #[error("message: {0}")]
    Message(#[from] cerberus_core::MessageError),
}

/// What a check prints.
#[derive(Debug)]
pub struct CheckReport {
    /// The final decision.
    pub decision: Decision,
    /// The message after the pipeline.
    pub message: Message,
    /// What each guardrail decided.
    pub trace: Trace,
    /// Lower-level entries ignored because of mandatory guardrails.
    pub ignored: Vec<cerberus_core::IgnoredOverride>,
}

impl CheckReport {
    /// The report as one JSON object: `decision`, the decision's details, `message`, `trace`, `ignored`.
    pub fn to_json(&self) -> Value {
        let mut out = match serde_json::to_value(&self.decision) {
            Ok(Value::Object(map)) => map,
            _ => Map::new(),
        };
        out.insert("message".into(), self.message.to_value());
        out.insert(
            "trace".into(),
            serde_json::to_value(&self.trace).unwrap_or(Value::Null),
        );
        if !self.ignored.is_empty() {
            out.insert(
                "ignored".into(),
                serde_json::to_value(&self.ignored).unwrap_or(Value::Null),
            );
        }
        Value::Object(out)
    }
}

#[cfg(feature = "cli")]
fn read(path: &Path) -> Result<String, CheckError> {
    std::fs::read_to_string(path).map_err(|source| CheckError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Loads and checks the policy files, highest level first.
#[cfg(feature = "cli")]
pub fn load_policies(
    registry: &GuardrailRegistry,
    paths: &[PathBuf],
) -> Result<Vec<(PolicyLevel, PolicyDocument)>, CheckError> {
    if paths.len() > PolicyLevel::ALL.len() {
        return Err(CheckError::TooManyPolicies(paths.len()));
    }
    paths
        .iter()
        .zip(PolicyLevel::ALL)
        .map(|(path, level)| {
            let policy_error = |source| CheckError::Policy {
                path: path.clone(),
                source,
            };
            let format = cerberus_core::PolicyFormat::from_path(path);
            let document = PolicyDocument::parse(&read(path)?, format).map_err(policy_error)?;
            registry.validate(&document).map_err(policy_error)?;
            Ok((level, document))
        })
        .collect()
}

/// Runs `message` through the merged `policies`.
pub async fn check(
    registry: &GuardrailRegistry,
    policies: &[(PolicyLevel, PolicyDocument)],
    message: Message,
    direction: Option<Direction>,
    request_method: Option<&str>,
) -> Result<CheckReport, CheckError> {
    let effective = EffectivePolicy::merge(policies.iter().map(|(level, doc)| (*level, doc)));
    let pipeline = registry.build(&effective).map_err(CheckError::Build)?;
    let direction = direction.unwrap_or(match message.kind() {
        MessageKind::Request | MessageKind::Notification => Direction::Request,
        MessageKind::Response | MessageKind::Error => Direction::Response,
    });
    let identity = Identity::new_random();
    let envelope = Envelope::new(direction, &identity).answering(request_method);
    let outcome = pipeline.run(envelope, message).await;
    Ok(CheckReport {
        decision: outcome.decision,
        message: outcome.message,
        trace: outcome.trace,
        ignored: effective.ignored,
    })
}

/// `cerberus check` from its command-line arguments, with the guardrail types of `registry`.
#[cfg(feature = "cli")]
pub async fn run(
    args: &CheckArgs,
    registry: &GuardrailRegistry,
) -> Result<CheckReport, CheckError> {
    let policies = load_policies(registry, &args.policies)?;
    let text = match args.message.as_deref() {
        None => read_stdin()?,
        Some(path) if path == Path::new("-") => read_stdin()?,
        Some(path) => read(path)?,
    };
    let message = Message::parse(text.into_bytes())?;
    let direction = args.direction.map(|d| match d {
        CliDirection::Request => Direction::Request,
        CliDirection::Response => Direction::Response,
    });
    check(
        registry,
        &policies,
        message,
        direction,
        args.method.as_deref(),
    )
    .await
}

#[cfg(feature = "cli")]
fn read_stdin() -> Result<String, CheckError> {
    let mut text = String::new();
    std::io::stdin()
        .read_to_string(&mut text)
        .map_err(|source| CheckError::Read {
            path: PathBuf::from("<stdin>"),
            source,
        })?;
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn policy(v: Value) -> PolicyDocument {
        PolicyDocument::from_value(v).unwrap()
    }

    async fn report(policies: Vec<Value>, message: Value, method: Option<&str>) -> Value {
        let registry = GuardrailRegistry::default();
        let policies: Vec<_> = PolicyLevel::ALL
            .into_iter()
            .zip(policies.into_iter().map(policy))
            .collect();
        let message = Message::from_value(message).unwrap();
        check(&registry, &policies, message, None, method)
            .await
            .unwrap()
            .to_json()
    }

    #[tokio::test]
    async fn infers_the_direction_from_the_message() {
        let redact = json!({"guardrails": [{"type": "pii_email", "action": "redact", "direction": "response"}]});
        let result = json!({"jsonrpc": "2.0", "id": 1, "result": {"content": [{"type": "text", "text": "a@example.com"}]}});
        let out = report(vec![redact.clone()], result, None).await;
        assert_eq!(out["decision"], "modify");
        assert_eq!(
            out["message"]["result"]["content"][0]["text"],
            "[REDACTED:EMAIL]"
        );
        let request = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "t", "arguments": {"e": "a@example.com"}}});
        assert_eq!(
            report(vec![redact], request, None).await["decision"],
            "allow"
        );
    }

    #[tokio::test]
    async fn levels_merge_in_order_and_report_ignored_overrides() {
        let org = json!({"guardrails": [{"type": "rbac", "allow": ["*"], "mandatory": true}]});
        let ws = json!({"guardrails": [{"type": "pii_email", "action": "block"}]});
        let agent = json!({"guardrails": [{"type": "rbac", "allow": []}, {"type": "pii_email", "action": "redact"}]});
        let call = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "t", "arguments": {"e": "a@example.com"}}});
        let out = report(vec![org, ws, agent], call, None).await;
        assert_eq!(out["decision"], "modify");
        assert_eq!(
            out["trace"][0],
            json!({"guardrail": "rbac", "level": "organisation", "decision": "allow"})
        );
        assert_eq!(out["trace"][1]["level"], "agent");
        assert_eq!(
            out["ignored"],
            json!([{"guardrail": "rbac", "level": "agent", "mandatory_at": "organisation"}])
        );
    }

    #[tokio::test]
    async fn a_listed_response_is_filtered_when_the_method_is_given() {
        let rbac = json!({"guardrails": [{"type": "rbac", "allow": ["a"]}]});
        let list =
            json!({"jsonrpc": "2.0", "id": 1, "result": {"tools": [{"name": "a"}, {"name": "b"}]}});
        let out = report(vec![rbac], list, Some("tools/list")).await;
        assert_eq!(out["message"]["result"]["tools"], json!([{"name": "a"}]));
    }
}
