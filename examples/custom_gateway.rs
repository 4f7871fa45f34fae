//! The whole `cerberus` command with a guardrail type of your own.
//!
//! `require_argument` refuses tool calls that lack an argument, here a change ticket: every call
//! says which ticket allowed it. Registered in `main`, it can be named in every policy this program
//! reads: `serve` (configuration files and the admin API), `check`, `stdio`.
//!
//! ```sh
//! cargo run -p cerberus-examples --example custom_gateway -- check \
//!     --policy examples/custom_gateway/policy.json examples/messages/tools_call.json
//! cargo run -p cerberus-examples --example custom_gateway -- serve --config gateway.toml
//! ```

use std::process::ExitCode;
use std::sync::Arc;

use cerberus_axum::cli::Cerberus;
use cerberus_core::{
    BuildEnv, Guardrail, GuardrailContext, GuardrailRegistry, GuardrailResult, PolicyError,
    SyncGuardrail, parse_settings,
};
use serde_json::{Map, Value};

/// Refuses tool calls whose arguments lack `argument` (a policy entry
/// `{"type": "require_argument", "argument": "ticket"}`).
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RequireArgument {
    argument: String,
}

impl SyncGuardrail for RequireArgument {
    fn type_name(&self) -> &str {
        "require_argument"
    }

    fn applies_to(&self, ctx: &GuardrailContext<'_>) -> bool {
        ctx.message.tool_name().is_some()
    }

    fn evaluate_sync(&self, ctx: &GuardrailContext<'_>) -> GuardrailResult {
        match ctx.message.arguments().and_then(|a| a.get(&self.argument)) {
            Some(Value::String(value)) if !value.trim().is_empty() => GuardrailResult::Allow,
            _ => GuardrailResult::block(
                "argument_missing",
                format!("tool calls must give `{}`", self.argument),
            ),
        }
    }
}

fn require_argument(
    settings: &Map<String, Value>,
    _: &BuildEnv,
) -> Result<Arc<dyn Guardrail>, PolicyError> {
    Ok(Arc::new(parse_settings::<RequireArgument>(settings)?))
}

fn main() -> ExitCode {
    let mut registry = GuardrailRegistry::default();
    if let Err(e) = registry.register("require_argument", require_argument) {
        eprintln!("error: {e}");
        return ExitCode::FAILURE;
    }
    Cerberus::with_registry(registry).main()
}
