//! Policies: which guardrails apply, with which settings, at which level.
//!
//! A [`PolicyDocument`] is what an operator writes. Documents attach to an organisation, a workspace or an
//! agent; [`EffectivePolicy::merge`] folds them into the one list of guardrails that applies to an agent,
//! and a [`GuardrailRegistry`](crate::GuardrailRegistry) turns that into a [`Pipeline`](crate::Pipeline).

mod document;
mod hierarchy;

use std::fmt;

use serde::{Deserialize, Serialize};

pub use document::{GuardrailSpec, PolicyDocument, PolicyFormat};
pub use hierarchy::{EffectiveEntry, EffectivePolicy, IgnoredOverride};

/// Where a policy is attached. Lower levels (closer to the agent) override higher ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum PolicyLevel {
    /// Applies to every workspace and agent of the organisation.
    Organisation,
    /// Applies to every agent of one MCP server workspace.
    Workspace,
    /// Applies to one agent.
    Agent,
}

impl PolicyLevel {
    /// All levels, from the highest to the lowest.
    pub const ALL: [Self; 3] = [Self::Organisation, Self::Workspace, Self::Agent];

    /// The lowercase name used in documents and the audit log.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Organisation => "organisation",
            Self::Workspace => "workspace",
            Self::Agent => "agent",
        }
    }
}

impl fmt::Display for PolicyLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A policy document that cannot be used, with the path of the offending field.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
#[non_exhaustive]
pub struct PolicyError {
    /// Where in the document, for example `guardrails[2].limit`.
    pub path: String,
    /// What is wrong there.
    pub message: String,
}

impl PolicyError {
    /// An error at `path`.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }

    /// The same error below `prefix` (`guardrails[2]` + `limit` = `guardrails[2].limit`).
    pub fn within(self, prefix: &str) -> Self {
        let path = if self.path.is_empty() {
            prefix.to_owned()
        } else if self.path.starts_with('[') {
            format!("{prefix}{}", self.path)
        } else {
            format!("{prefix}.{}", self.path)
        };
        Self { path, ..self }
    }
}
