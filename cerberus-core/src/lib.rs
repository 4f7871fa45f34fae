#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

// First: its `id_type!` macro serves the modules below.
#[macro_use]
mod identity;

pub mod approval;
pub mod audit;
pub mod exchange;
pub mod guardrails;
pub mod pinning;
pub mod rate_limit;
pub mod refusal;
pub mod session;
pub mod store;
pub mod stream;

mod cause;
mod guardrail;
mod message;
mod pipeline;
mod policy;
mod registry;
mod trace;

pub use cause::{Cause, with_causes};
pub use guardrail::{Direction, Guardrail, GuardrailContext, GuardrailResult, SyncGuardrail};
pub use identity::{
    AgentId, CallerProfile, Identity, MAX_LABEL_KEY_CHARS, MAX_LABEL_VALUE_CHARS, MAX_LABELS,
    OrganisationId, Profile, WorkspaceId, check_labels,
};
pub use message::{
    Items, JsonEdit, JsonRef, Members, Message, MessageError, MessageKind, Part, RequestId, methods,
};
pub use pipeline::{Decision, Envelope, Pipeline, PipelineOutcome};
pub use policy::{
    EffectiveEntry, EffectivePolicy, GuardrailSpec, IgnoredOverride, PolicyDocument, PolicyError,
    PolicyFormat, PolicyLevel,
};
pub use registry::{
    BUILTIN_TYPES, BuildEnv, GuardrailFactory, GuardrailRegistry, RegistryError, parse_settings,
};
pub use trace::{DecisionKind, Trace, TraceEntry};
