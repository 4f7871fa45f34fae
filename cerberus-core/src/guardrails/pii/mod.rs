//! `pii_ssn`, `pii_credit_card`, `pii_email`, `pii_phone`, `pii_ip_address`: personal data in messages.
//!
//! ```json
//! {"type": "pii_email", "action": "redact", "direction": "both", "replacement": "[REDACTED:{type}]"}
//! ```
//!
//! `action` is `block` (the default: fail closed) or `redact`; `direction` is `request`, `response` or
//! `both` (the default); `replacement` is the text that stands in for a redacted value, where `{type}`
//! becomes `SSN`, `CREDIT_CARD`, `EMAIL`, `PHONE` or `IP_ADDRESS`. `pii_ssn` and `pii_phone` also take
//! `context`: `true`, or a list of words, for bare numbers labelled by a word before them
//! (`SSN: 536221234`); off by default, see [`PiiContext`].
//!
//! Every `pii_*` entry of a policy runs in one [`PiiGuardrail`], which reads the message once for all of
//! them: every string of `params`, `result` or `error`, every object key, every number, and the JSON held
//! inside strings (a text content item carrying a JSON document). Redaction replaces only the matched span.
//! The trace names each entry and counts what it found, never the values.

mod context;
mod scanner;
mod validate;

use std::fmt;
use std::ops::ControlFlow;
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{Number, Value};

use crate::guardrail::{Direction, Guardrail, GuardrailContext, GuardrailResult};
use crate::guardrails::{Directions, EMBEDDED_JSON_DEPTH, embedded_json};
use crate::message::{JsonEdit, JsonRef, Part};
use crate::policy::{PolicyError, PolicyLevel};
use crate::trace::{DecisionKind, Trace, TraceEntry};

pub use context::{
    CONTEXT_REACH, ContextWords, LONGEST_CONTEXT_WORD, PHONE_WORDS, PiiContext, SSN_WORDS,
};
pub use scanner::{Finding, PiiScanner};

/// The block code of a message refused for personal data.
pub const CODE: &str = "pii_detected";

/// The default stand-in for a redacted value.
pub const DEFAULT_REPLACEMENT: &str = "[REDACTED:{type}]";

/// What replaces a whole text when redaction keeps producing personal data.
const FALLBACK_REPLACEMENT: &str = "[REDACTED]";

/// A kind of personal data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PiiKind {
    /// A US social security number.
    Ssn = 0,
    /// A payment card number.
    CreditCard = 1,
    /// An email address.
    Email = 2,
    /// A phone number.
    Phone = 3,
    /// An IPv4 or IPv6 address.
    IpAddress = 4,
}

impl PiiKind {
    /// Every kind.
    pub const ALL: [Self; 5] = [
        Self::Ssn,
        Self::CreditCard,
        Self::Email,
        Self::Phone,
        Self::IpAddress,
    ];

    /// The guardrail type name of this kind (`pii_ssn`, …).
    pub fn type_name(self) -> &'static str {
        match self {
            Self::Ssn => "pii_ssn",
            Self::CreditCard => "pii_credit_card",
            Self::Email => "pii_email",
            Self::Phone => "pii_phone",
            Self::IpAddress => "pii_ip_address",
        }
    }

    /// The kind of a guardrail type name.
    pub fn from_type_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.type_name() == name)
    }

    /// The label used in redactions (`SSN`, `CREDIT_CARD`, …).
    pub fn label(self) -> &'static str {
        match self {
            Self::Ssn => "SSN",
            Self::CreditCard => "CREDIT_CARD",
            Self::Email => "EMAIL",
            Self::Phone => "PHONE",
            Self::IpAddress => "IP_ADDRESS",
        }
    }

    /// How the trace speaks of one and of several values of this kind.
    fn nouns(self) -> (&'static str, &'static str) {
        match self {
            Self::Ssn => ("social security number", "social security numbers"),
            Self::CreditCard => ("payment card number", "payment card numbers"),
            Self::Email => ("email address", "email addresses"),
            Self::Phone => ("phone number", "phone numbers"),
            Self::IpAddress => ("IP address", "IP addresses"),
        }
    }

    fn with_article(self) -> String {
        let one = self.nouns().0;
        let article = if matches!(self, Self::Email | Self::IpAddress) {
            "an"
        } else {
            "a"
        };
        format!("{article} {one}")
    }

    fn count(self, count: usize) -> String {
        let (one, many) = self.nouns();
        format!("{count} {}", if count == 1 { one } else { many })
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for PiiKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// A set of PII kinds.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct PiiKinds(u8);

impl PiiKinds {
    /// No kind.
    pub fn empty() -> Self {
        Self(0)
    }

    /// Every kind.
    pub fn all() -> Self {
        PiiKind::ALL.into_iter().collect()
    }

    /// Whether `kind` is in the set.
    pub fn contains(self, kind: PiiKind) -> bool {
        self.0 & (1 << kind.index()) != 0
    }

    /// Adds `kind`.
    pub fn insert(&mut self, kind: PiiKind) {
        self.0 |= 1 << kind.index();
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl FromIterator<PiiKind> for PiiKinds {
    fn from_iter<I: IntoIterator<Item = PiiKind>>(iter: I) -> Self {
        let mut kinds = Self::empty();
        iter.into_iter().for_each(|k| kinds.insert(k));
        kinds
    }
}

impl fmt::Debug for PiiKinds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set()
            .entries(PiiKind::ALL.into_iter().filter(|k| self.contains(*k)))
            .finish()
    }
}

/// What to do with personal data found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PiiAction {
    /// Refuse the message.
    #[default]
    Block,
    /// Replace the value and let the message through.
    Redact,
}

/// Settings of one `pii_*` guardrail.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PiiSettings {
    /// Block or redact.
    #[serde(default)]
    pub action: PiiAction,
    /// Which messages to scan.
    #[serde(default)]
    pub direction: Directions,
    /// The stand-in for a redacted value; `{type}` becomes the kind's label.
    #[serde(default = "default_replacement")]
    pub replacement: String,
    /// Words that make a bare number after them this kind's value (`pii_ssn` and `pii_phone` only).
    #[serde(default, skip_serializing_if = "PiiContext::is_off")]
    pub context: PiiContext,
}

impl PiiSettings {
    /// Checks the settings for an entry of `kind` (see [`PiiContext::check`]).
    pub fn check(&self, kind: PiiKind) -> Result<(), PolicyError> {
        self.context.check(kind)
    }
}

impl Default for PiiSettings {
    fn default() -> Self {
        Self {
            action: PiiAction::default(),
            direction: Directions::default(),
            replacement: default_replacement(),
            context: PiiContext::default(),
        }
    }
}

fn default_replacement() -> String {
    DEFAULT_REPLACEMENT.to_owned()
}

/// One `pii_*` policy entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PiiRule {
    /// The kind it governs.
    pub kind: PiiKind,
    /// Its settings.
    pub settings: PiiSettings,
    /// The policy level it came from.
    pub level: PolicyLevel,
}

/// What one rule does in one direction.
#[derive(Clone, Debug)]
struct Active {
    action: PiiAction,
    replacement: String,
}

/// Everything needed to scan messages travelling one way.
#[derive(Clone, Debug)]
struct DirectionPlan {
    scanner: Arc<PiiScanner>,
    /// The context words of the kinds scanned this way; empty unless a rule turns them on.
    context: ContextWords,
    /// Indexed by [`PiiKind::index`]; `None` for kinds not scanned this way.
    actions: [Option<Active>; 5],
    /// The replacements in which a scan finds nothing: a text redacted to one of them whole (a JSON
    /// value that was an email address and nothing else) needs no second scan.
    inert: Vec<String>,
}

impl DirectionPlan {
    fn new(scanner: Arc<PiiScanner>, context: ContextWords, actions: [Option<Active>; 5]) -> Self {
        let context_words = (!context.is_empty()).then_some(&context);
        let mut inert: Vec<String> = Vec::new();
        for active in actions.iter().flatten() {
            let mut holds_any = false;
            scanner.scan_with(&active.replacement, context_words, |_| holds_any = true);
            if !holds_any && !inert.contains(&active.replacement) {
                inert.push(active.replacement.clone());
            }
        }
        Self {
            scanner,
            context,
            actions,
            inert,
        }
    }
}

/// Every `pii_*` rule of a policy, run in one pass.
#[derive(Clone, Debug)]
pub struct PiiGuardrail {
    rules: Vec<PiiRule>,
    request: Option<DirectionPlan>,
    response: Option<DirectionPlan>,
}

impl PiiGuardrail {
    /// A guardrail for `rules`, compiling its scanners.
    pub fn new(rules: Vec<PiiRule>) -> Self {
        Self::with_scanners(rules, |kinds| Arc::new(PiiScanner::new(kinds)))
    }

    /// A guardrail for `rules` that gets its scanners from `scanner_for` (for example a cache shared by
    /// every pipeline of a gateway).
    pub fn with_scanners(
        rules: Vec<PiiRule>,
        mut scanner_for: impl FnMut(PiiKinds) -> Arc<PiiScanner>,
    ) -> Self {
        let mut plan = |direction: Direction| {
            let mut actions: [Option<Active>; 5] = Default::default();
            let mut kinds = PiiKinds::empty();
            let mut context = ContextWords::new();
            for rule in rules
                .iter()
                .filter(|r| r.settings.direction.includes(direction))
            {
                kinds.insert(rule.kind);
                context.add(rule.kind, rule.settings.context.words(rule.kind));
                if let Some(slot) = actions.get_mut(rule.kind.index()) {
                    *slot = Some(Active {
                        action: rule.settings.action,
                        replacement: rule
                            .settings
                            .replacement
                            .replace("{type}", rule.kind.label()),
                    });
                }
            }
            (!kinds.is_empty()).then(|| DirectionPlan::new(scanner_for(kinds), context, actions))
        };
        let request = plan(Direction::Request);
        let response = plan(Direction::Response);
        Self {
            rules,
            request,
            response,
        }
    }

    fn plan(&self, direction: Direction) -> Option<&DirectionPlan> {
        match direction {
            Direction::Request => self.request.as_ref(),
            Direction::Response => self.response.as_ref(),
        }
    }

    /// The copy of `value` with every finding its rules redact replaced, for a message travelling
    /// `direction`; `None` when nothing in it was redacted. A kind whose rule blocks stops the scan
    /// and gives `None` too, so this is meant for guardrails whose rules all redact (see
    /// [`PiiGuardrail::redact_everything`]).
    pub fn redact(&self, direction: Direction, value: &Value) -> Option<Value> {
        let plan = self.plan(direction)?;
        let pass = self.inspect(plan, JsonRef::from(value));
        if pass.blocked.is_some() || pass.edits.is_empty() {
            return None;
        }
        let mut out = Vec::new();
        JsonRef::from(value).write_edited(&pass.edits, &mut out);
        serde_json::from_slice(&out).ok()
    }

    /// A guardrail that redacts every kind of personal data in both directions with the default
    /// replacement: what the audit log applies to the payloads it stores.
    pub fn redact_everything() -> Self {
        let settings = PiiSettings {
            action: PiiAction::Redact,
            direction: Directions::Both,
            replacement: default_replacement(),
            context: PiiContext::default(),
        };
        Self::new(
            PiiKind::ALL
                .into_iter()
                .map(|kind| PiiRule {
                    kind,
                    settings: settings.clone(),
                    level: PolicyLevel::Organisation,
                })
                .collect(),
        )
    }

    /// Scans `payload`, noting what its rules redact: the outcome of one pass.
    fn inspect<'p>(&self, plan: &'p DirectionPlan, payload: JsonRef<'_>) -> Pass<'p> {
        let mut pass = Pass::new(plan);
        pass.document(&payload, 0);
        pass
    }
}

/// The state of one scan over a payload.
struct Pass<'a> {
    plan_actions: &'a [Option<Active>; 5],
    /// See [`DirectionPlan::inert`].
    inert: &'a [String],
    scanner: &'a PiiScanner,
    context: Option<&'a ContextWords>,
    counts: [usize; 5],
    blocked: Option<PiiKind>,
    /// What to replace in the document being read, in document order.
    edits: Vec<JsonEdit>,
    /// The place of the next string, name or number of the document being read (see [`JsonEdit`]).
    place: usize,
}

impl<'a> Pass<'a> {
    fn new(plan: &'a DirectionPlan) -> Self {
        Self {
            plan_actions: &plan.actions,
            inert: &plan.inert,
            scanner: &plan.scanner,
            context: (!plan.context.is_empty()).then_some(&plan.context),
            counts: [0; 5],
            blocked: None,
            edits: Vec::new(),
            place: 0,
        }
    }

    /// Reads a whole document (a message's payload, or JSON held inside one of its strings), noting
    /// an edit for every string, name or number with something to redact; stops once blocked. Every
    /// member is read, a repeated name's earlier values too: the bytes forwarded hold them all. Over a
    /// parsed message this is one pass over a flat list, and nothing is copied but what is redacted.
    fn document(&mut self, json: &JsonRef<'_>, depth: u8) {
        let _ = json.walk(&mut |part| {
            let place = self.place;
            let redacted = match part {
                Part::Name(text) => self.text(text),
                Part::String(text) => self.string(text, depth),
                Part::Number(number) => self.number(number),
                Part::Array(_) => return ControlFlow::Continue(()),
            };
            self.place += 1;
            if self.blocked.is_some() {
                return ControlFlow::Break(());
            }
            if let Some(text) = redacted {
                self.edits.push(JsonEdit { place, text });
            }
            ControlFlow::Continue(())
        });
    }

    fn string(&mut self, text: &str, depth: u8) -> Option<String> {
        if depth < EMBEDDED_JSON_DEPTH
            && let Some(inner) = embedded_json(text)
        {
            // The document inside has places of its own.
            let outer = (
                std::mem::take(&mut self.edits),
                std::mem::replace(&mut self.place, 0),
            );
            self.document(&JsonRef::from(&inner), depth + 1);
            let inner_edits = std::mem::replace(&mut self.edits, outer.0);
            self.place = outer.1;
            if inner_edits.is_empty() || self.blocked.is_some() {
                return None;
            }
            let mut out = Vec::with_capacity(text.len());
            JsonRef::from(&inner).write_edited(&inner_edits, &mut out);
            return Some(String::from_utf8_lossy(&out).into_owned());
        }
        self.text(text)
    }

    fn number(&mut self, number: &Number) -> Option<String> {
        self.text(&number_text(number)?)
    }

    /// Scans one text; returns its redacted form when anything in it was redacted.
    fn text(&mut self, text: &str) -> Option<String> {
        // Most member names and short values hold nothing a match needs: no set-up for them.
        let glance = self.scanner.glance(text);
        if !glance.may_hold_any {
            return None;
        }
        let mut redacted: Option<String> = None;
        // Redaction can make new matches (a custom replacement that reads as data, or a number that
        // stood glued to a redacted value and now stands apart): scan the result again until nothing
        // is left, and give up on the text as a whole after a few rounds.
        for round in 0..4 {
            let current = redacted.as_deref().unwrap_or(text);
            let mut out: Option<String> = None;
            let mut last = 0;
            let mut blocked = None;
            let mut counts = [0usize; 5];
            let found = |finding: Finding| {
                if blocked.is_some() {
                    return;
                }
                let Some(active) = self
                    .plan_actions
                    .get(finding.kind.index())
                    .and_then(Option::as_ref)
                else {
                    return;
                };
                if let Some(count) = counts.get_mut(finding.kind.index()) {
                    *count += 1;
                }
                match active.action {
                    PiiAction::Block => blocked = Some(finding.kind),
                    PiiAction::Redact => {
                        let out = out.get_or_insert_with(|| String::with_capacity(current.len()));
                        out.push_str(current.get(last..finding.span.start).unwrap_or_default());
                        out.push_str(&active.replacement);
                        last = finding.span.end;
                    }
                }
            };
            // The first round reads the text as it came, already glanced at.
            match round {
                0 => self
                    .scanner
                    .scan_glanced(current, glance, self.context, found),
                _ => self.scanner.scan_with(current, self.context, found),
            }
            if round == 0 {
                self.counts
                    .iter_mut()
                    .zip(counts)
                    .for_each(|(total, n)| *total += n);
            }
            if let Some(kind) = blocked {
                self.blocked = Some(kind);
                return None;
            }
            match out {
                None => return redacted,
                Some(mut out) => {
                    out.push_str(current.get(last..).unwrap_or_default());
                    if self.inert.contains(&out) {
                        // What a scan of this text finds is known: nothing.
                        return Some(out);
                    }
                    redacted = Some(out);
                }
            }
        }
        // Still finding data after several rounds (a replacement that itself looks like personal data):
        // replace the whole text with a neutral marker.
        Some(FALLBACK_REPLACEMENT.to_owned())
    }
}

/// The text of a JSON number that may hide data: only a bare run of 13 or more digits (a card number)
/// can, so smaller integers need no scan. A whole number written as a float (`4.111111111111111e15`,
/// `4111111111111111.0`) is read as the integer it is: its own text would hide the digits.
fn number_text(number: &Number) -> Option<String> {
    const SMALLEST_CARD: u64 = 1_000_000_000_000;
    if let Some(n) = number.as_u64() {
        return (n >= SMALLEST_CARD).then(|| n.to_string());
    }
    if let Some(n) = number.as_i64() {
        return (n.unsigned_abs() >= SMALLEST_CARD).then(|| n.to_string());
    }
    let float = number.as_f64()?;
    // 1e20 is past the longest card (19 digits); the cast is exact for a whole float below it.
    let whole = float.is_finite() && float.fract() == 0.0 && float.abs() < 1e20;
    #[expect(
        clippy::cast_possible_truncation,
        reason = "a whole float under 1e20 fits an i128 exactly"
    )]
    let integer = whole.then_some(float as i128);
    match integer {
        Some(n) if n.unsigned_abs() >= u128::from(SMALLEST_CARD) => Some(n.to_string()),
        Some(_) => None,
        // A fraction (`123.45`) holds nothing: its digits after the point follow a digit and a dot,
        // where no number starts, and those before it end at a dot followed by a digit, where none
        // ends. Amounts and measures, common in tables, need no scan.
        None if float.is_finite() && float.fract() != 0.0 => None,
        None => Some(number.to_string()),
    }
}

#[async_trait]
impl Guardrail for PiiGuardrail {
    /// `pii`: the trace names each `pii_*` entry instead.
    fn type_name(&self) -> &str {
        "pii"
    }

    fn applies_to(&self, ctx: &GuardrailContext<'_>) -> bool {
        self.plan(ctx.direction).is_some() && ctx.message.payload_member().is_some()
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

    /// A scan never waits.
    fn evaluate_now(
        &self,
        ctx: &GuardrailContext<'_>,
        _level: PolicyLevel,
        trace: &mut Trace,
    ) -> Option<GuardrailResult> {
        Some(self.decide(ctx, trace))
    }
}

impl PiiGuardrail {
    /// Scans the message for every enabled kind, recording one trace entry per `pii_*` policy entry.
    fn decide(&self, ctx: &GuardrailContext<'_>, trace: &mut Trace) -> GuardrailResult {
        let (Some(plan), Some(view)) = (self.plan(ctx.direction), ctx.message.payload_view())
        else {
            return GuardrailResult::Allow;
        };
        // One pass over the parsed view counts, blocks and notes what to redact; no JSON object is
        // built for it, and a redacted message is written anew from the view.
        let pass = self.inspect(plan, view);
        let direction = ctx.direction;
        let active_rules = self
            .rules
            .iter()
            .filter(|r| r.settings.direction.includes(direction));
        if let Some(kind) = pass.blocked {
            let reason = format!(
                "the {direction} contains {} ({})",
                kind.with_article(),
                kind.type_name()
            );
            let result = GuardrailResult::block(CODE, reason);
            for rule in active_rules {
                let entry_result = if rule.kind == kind {
                    &result
                } else {
                    &GuardrailResult::Allow
                };
                trace.record(rule.kind.type_name(), rule.level, entry_result);
            }
            return result;
        }
        let mut reasons = Vec::new();
        for rule in active_rules {
            let count = pass.counts.get(rule.kind.index()).copied().unwrap_or(0);
            if count > 0 && rule.settings.action == PiiAction::Redact {
                let reason = format!("redacted {}", rule.kind.count(count));
                trace.push(
                    TraceEntry::new(rule.kind.type_name(), rule.level, DecisionKind::Modify)
                        .with_reason(&reason),
                );
                reasons.push(reason);
            } else {
                trace.record(rule.kind.type_name(), rule.level, &GuardrailResult::Allow);
            }
        }
        if pass.edits.is_empty() {
            return GuardrailResult::Allow;
        }
        match ctx.message.with_payload_edits(&pass.edits) {
            Ok(message) => GuardrailResult::Modify {
                message,
                reason: reasons.join(", "),
            },
            Err(e) => GuardrailResult::block(CODE, format!("could not redact the message: {e}")),
        }
    }
}

#[cfg(test)]
mod tests;
