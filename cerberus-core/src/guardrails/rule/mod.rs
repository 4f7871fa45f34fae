//! `rule`: a condition on the message, written in CEL, and what to do when it holds.
//!
//! ```json
//! {"type": "rule", "name": "amount-cap", "when": "tool == 'transfer' && arguments.amount > 1000",
//!  "action": "block", "reason": "transfers above 1,000 need a person"}
//! ```
//!
//! `when` is a [Common Expression Language](https://cel.dev) expression, run by the `cel` crate, over
//! these variables:
//!
//! | variable | type | what |
//! |---|---|---|
//! | `method` | string | the message's method, or for a response the method it answers (when known) |
//! | `tool` | string | the tool, prompt or resource URI a request names; `""` otherwise |
//! | `arguments` | map | the `arguments` of a `tools/call` or `prompts/get` request; `{}` otherwise |
//! | `direction` | string | `"request"` or `"response"` |
//! | `result` | map | a response's `result`; `{}` otherwise |
//! | `agent`, `workspace`, `organisation` | map | `id`, `name`, `labels` (a map of strings) and `groups` (a list of strings: a person's groups from their identity provider) of the caller |
//! | `now` | timestamp | when the message is judged |
//!
//! A rule is checked when its policy is saved: it must parse, read only these variables, and give
//! true or false with operands every operator accepts (the `check` module); the error names the column.
//! When it holds, the message is blocked with code [`CODE`] and the rule's `reason`. When it fails to
//! run (a member it reads is missing, a value of another type than it expects: a client can send
//! either on purpose), the message is blocked too, with code [`FAILED_CODE`], unless the entry says
//! `"on_error": "allow"`; `has(arguments.x)` lets a rule handle an optional member itself. Errors
//! name operators, functions and types, never the values of the message.
//!
//! Every `rule` entry of a policy runs in one [`RuleGuardrail`], at the place of the first, over
//! variables made once per message (and only those some rule reads); the trace has one entry per
//! rule, named `rule:` and the rule's `name` (or its text).

mod check;
mod variables;

use std::borrow::Cow;
use std::fmt;
use std::sync::{Arc, LazyLock};

use async_trait::async_trait;
use cel::{Env, ExecutionError, Program, Value};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::guardrail::{Guardrail, GuardrailContext, GuardrailResult};
use crate::guardrails::Directions;
use crate::policy::{PolicyError, PolicyLevel};
use crate::trace::Trace;

use variables::Variables;

/// The block code of a message a rule matched.
pub const CODE: &str = "rule_matched";

/// The block code of a message a rule could not be run on.
pub const FAILED_CODE: &str = "rule_failed";

/// How long a rule's text may be in its trace name before it is shortened.
const LABEL_CHARS: usize = 80;

/// The CEL standard library, built once: every rule is compiled and run with it.
static ENV: LazyLock<Arc<Env>> = LazyLock::new(|| Arc::new(Env::stdlib()));

/// What a rule does when it holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleAction {
    /// Refuse the message.
    #[default]
    Block,
    /// Hold the request until a person approves it ([`crate::approval`]); the rules after it still
    /// run, and one that blocks refuses it without asking anyone.
    Approve,
}

/// What a rule does when it cannot be run on a message.
pub use crate::guardrails::OnError;

/// The settings of one `rule` entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSettings {
    /// The condition, in CEL.
    pub when: String,
    /// What to do when it holds.
    #[serde(default)]
    pub action: RuleAction,
    /// Why, for the caller and the audit log; a default names the rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// A name for the trace, and to tell this rule apart from the policy's others through the levels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Which messages it judges.
    #[serde(default)]
    pub direction: Directions,
    /// What to do when it cannot be run on a message.
    #[serde(default)]
    pub on_error: OnError,
    /// With `action = "approve"`: who approves, `admin` (the default), `user` or `user_or_admin`.
    #[serde(default)]
    pub approve_by: crate::approval::ApproveBy,
}

/// One compiled `rule` entry.
#[derive(Clone)]
pub struct Rule {
    settings: RuleSettings,
    level: PolicyLevel,
    program: Arc<Program>,
    reads: Variables,
    /// `rule:` and the name or the (shortened) text.
    label: String,
}

impl fmt::Debug for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rule")
            .field("label", &self.label)
            .field("level", &self.level)
            .finish_non_exhaustive()
    }
}

impl Rule {
    /// Compiles and checks a rule; the error names the column of what is wrong in `when`.
    ///
    /// ```
    /// use cerberus_core::guardrails::rule::{Rule, RuleSettings};
    /// use cerberus_core::PolicyLevel;
    /// let settings: RuleSettings = serde_json::from_str(r#"{"when": "tool == 'x' && agent.nmae == 'ci'"}"#)?;
    /// let error = Rule::new(settings, PolicyLevel::Organisation).unwrap_err();
    /// assert_eq!(error.to_string(), "when: column 21: no field `nmae`: the caller has id, name, labels and groups");
    /// # Ok::<(), serde_json::Error>(())
    /// ```
    pub fn new(settings: RuleSettings, level: PolicyLevel) -> Result<Self, PolicyError> {
        let program = ENV.compile(&settings.when).map_err(|errors| {
            // The first syntax error is the one to fix; those after it often follow from it.
            let first = errors
                .errors
                .iter()
                .find(|e| e.msg.starts_with("Syntax error"))
                .or(errors.errors.first());
            let message = match first {
                Some(e) => format!("{}: {}", position(&settings.when, e.pos), e.msg),
                None => "the expression does not parse".to_owned(),
            };
            PolicyError::new("when", message)
        })?;
        let info = program.source_info();
        let offset_of = |id: u64| info.offset_for(id).map_or(0, |(start, _)| start as usize);
        let reads = check::check(program.expression(), &offset_of).map_err(|e| {
            PolicyError::new(
                "when",
                format!("{}: {}", column_of(&settings.when, e.at), e.message),
            )
        })?;
        let label = match &settings.name {
            Some(name) => format!("rule:{name}"),
            None => format!("rule:{}", shortened(&settings.when)),
        };
        Ok(Self {
            settings,
            level,
            program: Arc::new(program),
            reads,
            label,
        })
    }

    /// The name the trace gives this rule: `rule:` and its name, or its text.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Its settings.
    pub fn settings(&self) -> &RuleSettings {
        &self.settings
    }

    /// The policy level it came from.
    pub fn level(&self) -> PolicyLevel {
        self.level
    }

    /// Runs the rule over `variables`.
    fn judge(&self, variables: &cel::Context<'_, '_>) -> Outcome {
        match self.program.execute(variables) {
            Ok(Value::Bool(true)) => Outcome::Holds,
            Ok(Value::Bool(false)) => Outcome::DoesNotHold,
            Ok(other) => Outcome::Failed(format!(
                "it gave a {} instead of true or false",
                other.type_of()
            )),
            Err(error) => Outcome::Failed(describe(&error)),
        }
    }
}

enum Outcome {
    Holds,
    DoesNotHold,
    Failed(String),
}

/// Every `rule` entry of a policy, run over variables made once per message.
#[derive(Clone, Debug)]
pub struct RuleGuardrail {
    rules: Vec<Rule>,
    /// What any rule reads.
    reads: Variables,
    /// What `now` is.
    clock: fn() -> DateTime<Utc>,
}

impl RuleGuardrail {
    /// A guardrail for `rules`, run in their order.
    pub fn new(rules: Vec<Rule>) -> Self {
        let reads = rules
            .iter()
            .fold(Variables::default(), |all, r| all.union(r.reads.clone()));
        Self {
            rules,
            reads,
            clock: Utc::now,
        }
    }

    /// The same guardrail with `now` read from `clock`: a dry run as of another time, or a test.
    ///
    /// ```
    /// use cerberus_core::guardrails::rule::{Rule, RuleGuardrail};
    /// use cerberus_core::{Direction, Guardrail, GuardrailContext, GuardrailResult, Identity, Message, PolicyLevel, Trace};
    /// let rule = Rule::new(serde_json::from_str(r#"{"when": "now.getHours('UTC') < 9"}"#)?, PolicyLevel::Organisation)?;
    /// let at_seven = || chrono::DateTime::parse_from_rfc3339("2026-01-05T07:00:00Z").unwrap().to_utc();
    /// let guardrail = RuleGuardrail::new(vec![rule]).with_clock(at_seven);
    /// let message = Message::parse(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#)?;
    /// let identity = Identity::new_random();
    /// let ctx = GuardrailContext::new(Direction::Request, &identity, &message);
    /// let decided = guardrail.evaluate_now(&ctx, PolicyLevel::Organisation, &mut Trace::new());
    /// assert!(matches!(decided, Some(GuardrailResult::Block { .. })), "before nine");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn with_clock(self, clock: fn() -> DateTime<Utc>) -> Self {
        Self { clock, ..self }
    }

    fn decide(&self, ctx: &GuardrailContext<'_>, trace: &mut Trace) -> GuardrailResult {
        let variables = self.reads.context(&ENV, ctx, (self.clock)());
        let mut held = None;
        for rule in self
            .rules
            .iter()
            .filter(|r| r.settings.direction.includes(ctx.direction))
        {
            let label = Cow::Owned(rule.label.clone());
            match rule.judge(&variables) {
                Outcome::DoesNotHold => trace.record(label, rule.level, &GuardrailResult::Allow),
                Outcome::Holds => {
                    let reason = rule
                        .settings
                        .reason
                        .clone()
                        .unwrap_or_else(|| format!("the message matches {}", rule.label));
                    if rule.settings.action == RuleAction::Approve {
                        let result = GuardrailResult::Hold {
                            code: crate::approval::codes::REQUIRED.to_owned(),
                            reason,
                            by: rule.settings.approve_by,
                        };
                        trace.record(label, rule.level, &result);
                        held.get_or_insert(result);
                        continue;
                    }
                    let result = GuardrailResult::block(CODE, reason);
                    trace.record(label, rule.level, &result);
                    return result;
                }
                Outcome::Failed(why) => {
                    let reason = format!("{} could not be run: {why}", rule.label);
                    let result = rule.settings.on_error.settle(
                        FAILED_CODE,
                        reason,
                        label,
                        rule.level,
                        trace,
                    );
                    if !matches!(result, GuardrailResult::Allow) {
                        return result;
                    }
                }
            }
        }
        held.unwrap_or(GuardrailResult::Allow)
    }
}

#[async_trait]
impl Guardrail for RuleGuardrail {
    /// `rule`: the trace names each rule instead.
    fn type_name(&self) -> &str {
        "rule"
    }

    fn applies_to(&self, ctx: &GuardrailContext<'_>) -> bool {
        self.rules
            .iter()
            .any(|r| r.settings.direction.includes(ctx.direction))
    }

    async fn evaluate(&self, ctx: &GuardrailContext<'_>) -> GuardrailResult {
        self.decide(ctx, &mut Trace::new())
    }

    async fn evaluate_traced(
        &self,
        ctx: &GuardrailContext<'_>,
        _level: PolicyLevel,
        trace: &mut Trace,
    ) -> GuardrailResult {
        self.decide(ctx, trace)
    }

    /// A rule never waits.
    fn evaluate_now(
        &self,
        ctx: &GuardrailContext<'_>,
        _level: PolicyLevel,
        trace: &mut Trace,
    ) -> Option<GuardrailResult> {
        Some(self.decide(ctx, trace))
    }
}

/// Why a rule could not be run, naming operators, functions and types but no value of the message
/// (the crate's own messages quote the values).
fn describe(error: &ExecutionError) -> String {
    match error {
        ExecutionError::NoSuchKey(_) => {
            "a member it reads is missing (has() tells whether one is there)".into()
        }
        ExecutionError::UndeclaredReference(name) => format!("`{name}` is not declared"),
        ExecutionError::NoSuchOverload(overload) => format!(
            "`{}` does not take a {}",
            overload.function().trim_matches('_'),
            overload
                .argument_types()
                .iter()
                .map(|t| type_name(t))
                .collect::<Vec<_>>()
                .join(" and a ")
        ),
        ExecutionError::UnexpectedType { want, .. } => {
            format!(
                "a value of another type where a {} was expected",
                type_name(want)
            )
        }
        ExecutionError::InvalidArgumentCount { expected, actual } => {
            format!("a function got {actual} arguments instead of {expected}")
        }
        ExecutionError::UnsupportedBinaryOperator(op, a, b) => format!(
            "`{op}` does not take a {} and a {}",
            a.type_of(),
            b.type_of()
        ),
        ExecutionError::ValuesNotComparable(a, b) => {
            format!(
                "a {} cannot be compared with a {}",
                a.type_of(),
                b.type_of()
            )
        }
        ExecutionError::NotSupportedAsMethod { method, target } => {
            format!("`{method}` cannot be called on a {}", target.type_of())
        }
        ExecutionError::UnsupportedTargetType { target } => {
            format!("a function cannot take a {}", target.type_of())
        }
        ExecutionError::UnsupportedIndex(index, container) => format!(
            "a {} cannot be indexed with a {}",
            container.type_of(),
            index.type_of()
        ),
        ExecutionError::UnsupportedKeyType(key) => {
            format!("a {} cannot be a map key", key.type_of())
        }
        ExecutionError::FunctionError { function, .. } => format!("`{function}` failed"),
        ExecutionError::DivisionByZero(_) | ExecutionError::RemainderByZero(_) => {
            "a division by zero".into()
        }
        ExecutionError::Overflow(op, _, _) => format!("`{op}` overflowed"),
        ExecutionError::IndexOutOfBounds(_) => "an index out of bounds".into(),
        _ => "the expression failed".into(),
    }
}

/// `name` if it reads as a type name (`string`, `google.protobuf.Timestamp`); the crate sometimes puts
/// a value's debug form where a type name goes, and a value of the message must not be shown.
fn type_name(name: &str) -> &str {
    let plain = name.len() <= 40
        && !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.');
    if plain { name } else { "value" }
}

/// `line L, column C` of a parse error, or `column C` in a one-line rule.
fn position(text: &str, (line, column): (isize, isize)) -> String {
    if text.contains('\n') {
        format!("line {line}, column {column}")
    } else {
        format!("column {column}")
    }
}

/// The position of byte `at` of `text`, in the words of [`position`].
fn column_of(text: &str, at: usize) -> String {
    let before = text.get(..at).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before
        .rsplit('\n')
        .next()
        .map_or(0, |last| last.chars().count())
        + 1;
    position(
        text,
        (
            isize::try_from(line).unwrap_or(isize::MAX),
            isize::try_from(column).unwrap_or(isize::MAX),
        ),
    )
}

/// `text` on one line, at most [`LABEL_CHARS`] characters.
fn shortened(text: &str) -> String {
    let one_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match one_line.char_indices().nth(LABEL_CHARS) {
        Some((cut, _)) => format!("{}…", one_line.get(..cut).unwrap_or_default()),
        None => one_line,
    }
}

#[cfg(test)]
mod tests;
