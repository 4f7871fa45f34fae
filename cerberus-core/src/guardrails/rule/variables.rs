//! The variables a rule reads, made from one message and its caller.

use std::collections::{BTreeSet, HashMap};
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

/// The variables some rule reads, so that no other is made; and of `arguments` and `result`, the
/// members read, so that no other is converted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct Variables {
    read: u16,
    arguments: Members,
    result: Members,
}

/// What rules read of a map variable: members by name (`arguments.amount`, `has(arguments.to)`), or
/// the whole map (iterated, indexed by a computed key, compared, passed to a function).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Members {
    whole: bool,
    names: BTreeSet<String>,
}

impl Members {
    fn union(mut self, other: Self) -> Self {
        self.whole |= other.whole;
        self.names.extend(other.names);
        self
    }

    /// `json` as CEL reads it, holding only the members read (a missing member reads alike: a
    /// member absent from the map, whose `has()` is false and whose reading fails).
    fn value(&self, json: Option<JsonRef<'_>>) -> Value {
        match json {
            None => empty_map(),
            Some(json) if self.whole => to_value(json),
            Some(JsonRef::Object(members)) => {
                let map: HashMap<Key, Value> = members
                    .filter(|(name, _)| self.names.contains(*name))
                    .map(|(name, value)| (Key::from(name), to_value(value)))
                    .collect();
                Value::Map(Map { map: Arc::new(map) })
            }
            Some(other) => to_value(other),
        }
    }
}

impl Variables {
    /// Notes that `variable` is read whole.
    pub(super) fn insert(&mut self, variable: Variable) {
        self.read |= variable.bit();
        match variable {
            Variable::Arguments => self.arguments.whole = true,
            Variable::Result => self.result.whole = true,
            _ => {}
        }
    }

    /// Notes that member `name` of `variable` is read; for a variable that is not a map of the
    /// message, the variable whole.
    pub(super) fn insert_member(&mut self, variable: Variable, name: &str) {
        let members = match variable {
            Variable::Arguments => &mut self.arguments,
            Variable::Result => &mut self.result,
            _ => return self.insert(variable),
        };
        self.read |= variable.bit();
        members.names.insert(name.to_owned());
    }

    pub(super) fn union(self, other: Self) -> Self {
        Self {
            read: self.read | other.read,
            arguments: self.arguments.union(other.arguments),
            result: self.result.union(other.result),
        }
    }

    fn contains(&self, variable: Variable) -> bool {
        self.read & variable.bit() != 0
    }

    /// A context holding these variables for the message of `ctx`, read at `now`.
    pub(super) fn context(
        &self,
        env: &Arc<Env>,
        ctx: &GuardrailContext<'_>,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Context<'static, 'static> {
        let mut context = Context::with_env(Arc::clone(env));
        for variable in Variable::ALL.into_iter().filter(|v| self.contains(*v)) {
            let value = match variable {
                Variable::Method => string(ctx.method().unwrap_or_default()),
                Variable::Tool => string(target(ctx).unwrap_or_default()),
                Variable::Arguments => self.arguments.value(arguments(ctx)),
                Variable::Direction => string(ctx.direction.as_str()),
                Variable::Result => self.result.value(result(ctx)),
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

/// `agent`, `workspace` or `organisation`: `{id, name, labels, groups}`.
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
        (
            Key::from("groups"),
            Value::List(Arc::new(
                profile
                    .map(|p| p.groups.iter().map(|g| string(g)).collect())
                    .unwrap_or_default(),
            )),
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
