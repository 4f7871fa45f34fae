//! The variables a rule reads, made from one message and its caller.

use std::collections::HashMap;
use std::sync::Arc;

use cel::objects::{Key, Map};
use cel::{Context, Env, Value};

use crate::guardrail::{Direction, GuardrailContext};
use crate::identity::Profile;
use crate::message::{JsonRef, methods};

/// A variable a rule may read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Variable {
    Method,
    Tool,
    Arguments,
    Direction,
    Result,
    Agent,
    Workspace,
    Organisation,
    Now,
}

impl Variable {
    pub(super) const ALL: [Self; 9] = [
        Self::Method,
        Self::Tool,
        Self::Arguments,
        Self::Direction,
        Self::Result,
        Self::Agent,
        Self::Workspace,
        Self::Organisation,
        Self::Now,
    ];

    pub(super) fn name(self) -> &'static str {
        match self {
            Self::Method => "method",
            Self::Tool => "tool",
            Self::Arguments => "arguments",
            Self::Direction => "direction",
            Self::Result => "result",
            Self::Agent => "agent",
            Self::Workspace => "workspace",
            Self::Organisation => "organisation",
            Self::Now => "now",
        }
    }

    pub(super) fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.name() == name)
    }

    fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

/// A set of variables: those some rule reads, so that no other is made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Variables(u16);

impl Variables {
    pub(super) fn insert(&mut self, variable: Variable) {
        self.0 |= variable.bit();
    }

    pub(super) fn union(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }

    fn contains(self, variable: Variable) -> bool {
        self.0 & variable.bit() != 0
    }

    /// A context holding these variables for the message of `ctx`, read at `now`.
    pub(super) fn context(
        self,
        env: &Arc<Env>,
        ctx: &GuardrailContext<'_>,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Context<'static, 'static> {
        let mut context = Context::with_env(Arc::clone(env));
        for variable in Variable::ALL.into_iter().filter(|v| self.contains(*v)) {
            let value = match variable {
                Variable::Method => string(ctx.method().unwrap_or_default()),
                Variable::Tool => string(target(ctx).unwrap_or_default()),
                Variable::Arguments => arguments(ctx).map_or_else(empty_map, to_value),
                Variable::Direction => string(ctx.direction.as_str()),
                Variable::Result => result(ctx).map_or_else(empty_map, to_value),
                Variable::Agent => who(
                    ctx.identity.agent.to_string(),
                    ctx.profile.map(|p| &p.agent),
                ),
                Variable::Workspace => who(
                    ctx.identity.workspace.to_string(),
                    ctx.profile.map(|p| &p.workspace),
                ),
                Variable::Organisation => who(
                    ctx.identity.organisation.to_string(),
                    ctx.profile.map(|p| &p.organisation),
                ),
                Variable::Now => Value::Timestamp(now.fixed_offset()),
            };
            context.add_variable_from_value(variable.name(), value);
        }
        context
    }
}

/// The tool, prompt or resource the message concerns: what a request names. A response does not
/// name it again, and gets the empty string.
fn target<'a>(ctx: &GuardrailContext<'a>) -> Option<&'a str> {
    match ctx.direction {
        Direction::Request => ctx.message.target(),
        Direction::Response => None,
    }
}

/// The `arguments` of a `tools/call` or `prompts/get` request.
fn arguments<'a>(ctx: &GuardrailContext<'a>) -> Option<JsonRef<'a>> {
    let call = matches!(
        ctx.message.method(),
        Some(methods::TOOLS_CALL | methods::PROMPTS_GET)
    );
    if ctx.direction != Direction::Request || !call {
        return None;
    }
    ctx.message.payload_view()?.as_object()?.get("arguments")
}

/// A response's `result`.
fn result<'a>(ctx: &GuardrailContext<'a>) -> Option<JsonRef<'a>> {
    (ctx.direction == Direction::Response && ctx.message.payload_member() == Some("result"))
        .then(|| ctx.message.payload_view())
        .flatten()
}

fn string(text: &str) -> Value {
    Value::String(Arc::new(text.to_owned()))
}

fn empty_map() -> Value {
    Value::Map(Map {
        map: Arc::new(HashMap::new()),
    })
}

/// `agent`, `workspace` or `organisation`: `{id, name, labels}`.
fn who(id: String, profile: Option<&Profile>) -> Value {
    let labels: HashMap<Key, Value> = profile
        .map(|p| {
            p.labels
                .iter()
                .map(|(k, v)| (Key::from(k.as_str()), string(v)))
                .collect()
        })
        .unwrap_or_default();
    let fields: HashMap<Key, Value> = [
        (Key::from("id"), Value::String(Arc::new(id))),
        (
            Key::from("name"),
            string(profile.map(|p| p.name.as_str()).unwrap_or_default()),
        ),
        (
            Key::from("labels"),
            Value::Map(Map {
                map: Arc::new(labels),
            }),
        ),
    ]
    .into_iter()
    .collect();
    Value::Map(Map {
        map: Arc::new(fields),
    })
}

/// A JSON value as CEL reads it: integers as `int` (or `uint` past `i64`), other numbers as
/// `double`; a member sent twice keeps its last value, as `serde_json` keeps it.
pub(super) fn to_value(json: JsonRef<'_>) -> Value {
    match json {
        JsonRef::Null => Value::Null,
        JsonRef::Bool(b) => Value::Bool(b),
        JsonRef::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Value::Int(i),
            (None, Some(u)) => Value::UInt(u),
            (None, None) => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        JsonRef::String(s) => string(s),
        JsonRef::Array(items) => Value::List(Arc::new(items.map(to_value).collect())),
        JsonRef::Object(members) => {
            let map: HashMap<Key, Value> = members
                .map(|(name, value)| (Key::from(name), to_value(value)))
                .collect();
            Value::Map(Map { map: Arc::new(map) })
        }
    }
}
