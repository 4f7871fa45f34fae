//! `rate_limit_per_minute` and `rate_limit_per_hour`: how many calls an agent may make.
//!
//! ```json
//! {"type": "rate_limit_per_minute", "limit": 60}
//! {"type": "rate_limit_per_hour", "limit": 1000, "key": "agent_tool", "methods": ["tools/call", "resources/read"]}
//! ```
//!
//! `limit` calls per window (a burst of `limit`, then a steady `limit` per window); `key` is `agent` (the
//! default: all the agent's calls count together) or `agent_tool` (each tool has its own count);
//! `methods` lists the request methods counted, `tools/call` by default (`*` counts every request).
//!
//! Both entries of a policy run as one [`RateLimitGuardrail`] that checks their windows in a single
//! atomic [`RateLimiter::acquire`]: a call refused by one window
//! is not counted in the other. A refusal is THROTTLE with the time after which a retry passes. When the
//! limiter cannot answer, the call is blocked (`rate_limiter_unavailable`): limits fail closed.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::guardrail::{Direction, Guardrail, GuardrailContext, GuardrailResult};
use crate::guardrails::wildcard::Wildcard;
use crate::message::{MessageKind, methods};
use crate::policy::PolicyLevel;
use crate::rate_limit::{RateLimitDecision, RateLimitError, RateLimitWindow, RateLimiter};
use crate::trace::Trace;

/// The block code when the limiter cannot answer.
pub const UNAVAILABLE_CODE: &str = "rate_limiter_unavailable";

/// The window of a rate-limit guardrail type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RateLimitPeriod {
    /// `rate_limit_per_minute`.
    Minute,
    /// `rate_limit_per_hour`.
    Hour,
}

impl RateLimitPeriod {
    /// Both periods.
    pub const ALL: [Self; 2] = [Self::Minute, Self::Hour];

    /// The guardrail type name.
    pub fn type_name(self) -> &'static str {
        match self {
            Self::Minute => "rate_limit_per_minute",
            Self::Hour => "rate_limit_per_hour",
        }
    }

    /// The period of a guardrail type name.
    pub fn from_type_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.type_name() == name)
    }

    /// The window length.
    pub fn duration(self) -> Duration {
        match self {
            Self::Minute => Duration::from_secs(60),
            Self::Hour => Duration::from_secs(3600),
        }
    }

    fn noun(self) -> &'static str {
        match self {
            Self::Minute => "minute",
            Self::Hour => "hour",
        }
    }
}

/// What calls are counted together.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RateLimitKey {
    /// All calls of one agent.
    #[default]
    Agent,
    /// The calls of one agent to one tool.
    AgentTool,
}

/// Settings of a rate-limit guardrail.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitSettings {
    /// Calls allowed per window.
    pub limit: NonZeroU32,
    /// What is counted together.
    #[serde(default)]
    pub key: RateLimitKey,
    /// The request methods counted.
    #[serde(default = "default_methods")]
    pub methods: Vec<Wildcard>,
}

fn default_methods() -> Vec<Wildcard> {
    vec![Wildcard::from_str_unchecked(methods::TOOLS_CALL)]
}

/// One rate-limit policy entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RateLimitRule {
    /// Its window.
    pub period: RateLimitPeriod,
    /// Its settings.
    pub settings: RateLimitSettings,
    /// The policy level it came from.
    pub level: PolicyLevel,
}

impl RateLimitRule {
    fn counts(&self, method: &str) -> bool {
        self.settings.methods.iter().any(|m| m.matches(method))
    }

    fn window(&self, ctx: &GuardrailContext<'_>) -> RateLimitWindow {
        // `{agent}:60s` or `{agent}:60s:tool:NAME`; `{agent}` is a Redis Cluster hash tag: every
        // window of an agent lives in one slot. Built by hand: this runs on every counted call.
        let tool = match self.settings.key {
            RateLimitKey::AgentTool => ctx.message.tool_name(),
            RateLimitKey::Agent => None,
        };
        let mut key = String::with_capacity(48 + tool.map_or(0, |t| 6 + t.len()));
        key.push('{');
        key.push_str(
            ctx.identity
                .agent
                .0
                .hyphenated()
                .encode_lower(&mut uuid::Uuid::encode_buffer()),
        );
        key.push_str(match self.period {
            RateLimitPeriod::Minute => "}:60s",
            RateLimitPeriod::Hour => "}:3600s",
        });
        if let Some(tool) = tool {
            key.push_str(":tool:");
            key.push_str(tool);
        }
        RateLimitWindow {
            key,
            limit: self.settings.limit,
            period: self.period.duration(),
        }
    }
}

/// Every rate-limit rule of a policy, checked together.
#[derive(Clone, Debug)]
pub struct RateLimitGuardrail {
    rules: Vec<RateLimitRule>,
    limiter: Arc<dyn RateLimiter>,
}

impl RateLimitGuardrail {
    /// A guardrail for `rules` counting in `limiter`.
    pub fn new(rules: Vec<RateLimitRule>, limiter: Arc<dyn RateLimiter>) -> Self {
        Self { rules, limiter }
    }

    /// The rules that count this call, and their windows.
    fn windows(&self, ctx: &GuardrailContext<'_>) -> (Vec<&RateLimitRule>, Vec<RateLimitWindow>) {
        let rules: Vec<&RateLimitRule> = self.counted(ctx).collect();
        let windows = rules.iter().map(|r| r.window(ctx)).collect();
        (rules, windows)
    }

    fn counted<'r>(
        &'r self,
        ctx: &GuardrailContext<'_>,
    ) -> impl Iterator<Item = &'r RateLimitRule> {
        let method = ctx.message.method().unwrap_or_default();
        self.rules.iter().filter(move |r| r.counts(method))
    }
}

#[async_trait]
impl Guardrail for RateLimitGuardrail {
    /// `rate_limit`: the trace names each `rate_limit_per_*` entry instead.
    fn type_name(&self) -> &str {
        "rate_limit"
    }

    fn applies_to(&self, ctx: &GuardrailContext<'_>) -> bool {
        ctx.direction == Direction::Request
            && ctx.message.kind() == MessageKind::Request
            && self.counted(ctx).next().is_some()
    }

    async fn evaluate(&self, ctx: &GuardrailContext<'_>) -> GuardrailResult {
        self.evaluate_traced(ctx, PolicyLevel::Organisation, &mut Trace::new())
            .await
    }

    async fn evaluate_traced(
        &self,
        ctx: &GuardrailContext<'_>,
        _level: PolicyLevel,
        trace: &mut Trace,
    ) -> GuardrailResult {
        let (rules, windows) = self.windows(ctx);
        let answer = self.limiter.acquire(&windows).await;
        conclude(&rules, answer, trace)
    }

    /// An in-memory limiter answers at once; one in Redis is awaited, and nothing is built for it here.
    fn evaluate_now(
        &self,
        ctx: &GuardrailContext<'_>,
        _level: PolicyLevel,
        trace: &mut Trace,
    ) -> Option<GuardrailResult> {
        let limiter = self.limiter.local()?;
        let (rules, windows) = self.windows(ctx);
        Some(conclude(&rules, limiter.acquire_now(&windows), trace))
    }
}

/// The limiter's answer for `rules`, recorded in `trace`: a throttle names the window that refused,
/// and a limiter that cannot answer blocks the call (limits fail closed).
fn conclude(
    rules: &[&RateLimitRule],
    answer: Result<RateLimitDecision, RateLimitError>,
    trace: &mut Trace,
) -> GuardrailResult {
    match answer {
        Ok(RateLimitDecision::Allowed) => {
            for rule in rules {
                trace.record(rule.period.type_name(), rule.level, &GuardrailResult::Allow);
            }
            GuardrailResult::Allow
        }
        Ok(RateLimitDecision::Denied {
            window,
            retry_after,
        }) => {
            let mut throttle = GuardrailResult::Allow;
            for (index, rule) in rules.iter().enumerate() {
                if index == window {
                    throttle = GuardrailResult::Throttle {
                        retry_after,
                        reason: format!(
                            "rate limit of {} calls per {} exceeded ({})",
                            rule.settings.limit,
                            rule.period.noun(),
                            rule.period.type_name()
                        ),
                    };
                    trace.record(rule.period.type_name(), rule.level, &throttle);
                } else {
                    trace.record(rule.period.type_name(), rule.level, &GuardrailResult::Allow);
                }
            }
            throttle
        }
        Err(error) => {
            let result = GuardrailResult::block(UNAVAILABLE_CODE, error.to_string());
            if let Some(rule) = rules.first() {
                trace.record(rule.period.type_name(), rule.level, &result);
            }
            result
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rate_limit::ManualClock;
    use crate::rate_limit::{LocalRateLimiter, MemoryRateLimiter, RateLimitError};
    use crate::{DecisionKind, Identity, Message};
    use serde_json::json;

    fn rule(period: RateLimitPeriod, settings: serde_json::Value) -> RateLimitRule {
        RateLimitRule {
            period,
            settings: serde_json::from_value(settings).unwrap(),
            level: PolicyLevel::Workspace,
        }
    }

    fn call(tool: &str) -> Message {
        Message::from_value(
            json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": tool}}),
        )
        .unwrap()
    }

    async fn decide(
        guardrail: &RateLimitGuardrail,
        identity: &Identity,
        message: &Message,
    ) -> (GuardrailResult, Trace) {
        let ctx = GuardrailContext::new(Direction::Request, identity, message);
        let mut trace = Trace::new();
        if !guardrail.applies_to(&ctx) {
            return (GuardrailResult::Allow, trace);
        }
        let result = guardrail
            .evaluate_traced(&ctx, PolicyLevel::Organisation, &mut trace)
            .await;
        (result, trace)
    }

    fn memory() -> (ManualClock, Arc<MemoryRateLimiter<ManualClock>>) {
        let clock = ManualClock::new();
        (
            clock.clone(),
            Arc::new(MemoryRateLimiter::with_clock(clock)),
        )
    }

    #[tokio::test]
    async fn throttles_past_the_limit_with_a_retry_hint() {
        let (clock, limiter) = memory();
        let guardrail = RateLimitGuardrail::new(
            vec![rule(RateLimitPeriod::Minute, json!({"limit": 2}))],
            limiter,
        );
        let identity = Identity::new_random();
        for _ in 0..2 {
            assert_eq!(
                decide(&guardrail, &identity, &call("a")).await.0,
                GuardrailResult::Allow
            );
        }
        let (result, trace) = decide(&guardrail, &identity, &call("b")).await;
        assert_eq!(
            result,
            GuardrailResult::Throttle {
                retry_after: Duration::from_secs(30),
                reason: "rate limit of 2 calls per minute exceeded (rate_limit_per_minute)".into()
            }
        );
        assert_eq!(trace.entries()[0].guardrail, "rate_limit_per_minute");
        assert_eq!(trace.entries()[0].level, PolicyLevel::Workspace);
        assert_eq!(trace.entries()[0].retry_after_ms, Some(30_000));
        clock.advance(Duration::from_secs(30));
        assert_eq!(
            decide(&guardrail, &identity, &call("b")).await.0,
            GuardrailResult::Allow
        );
        let other_agent = Identity::new_random();
        assert_eq!(
            decide(&guardrail, &other_agent, &call("a")).await.0,
            GuardrailResult::Allow
        );
    }

    /// A limiter that can only be awaited, as a shared store is.
    #[derive(Debug)]
    struct AwaitedOnly(MemoryRateLimiter<ManualClock>);

    #[async_trait]
    impl RateLimiter for AwaitedOnly {
        async fn acquire(
            &self,
            windows: &[RateLimitWindow],
        ) -> Result<RateLimitDecision, RateLimitError> {
            self.0.acquire_now(windows)
        }
    }

    #[tokio::test]
    async fn deciding_now_matches_the_awaited_decision_call_for_call() {
        let rules = || {
            vec![
                rule(RateLimitPeriod::Minute, json!({"limit": 3})),
                rule(RateLimitPeriod::Hour, json!({"limit": 4})),
            ]
        };
        let (now_clock, now_limiter) = memory();
        let (awaited_clock, awaited_limiter) = memory();
        let now = RateLimitGuardrail::new(rules(), now_limiter);
        let awaited = RateLimitGuardrail::new(rules(), awaited_limiter);
        let identity = Identity::new_random();
        for step in 0..8 {
            let message = call("a");
            let ctx = GuardrailContext::new(Direction::Request, &identity, &message);
            let mut now_trace = Trace::new();
            let decided_now = now
                .evaluate_now(&ctx, PolicyLevel::Organisation, &mut now_trace)
                .expect("an in-memory limiter decides at once");
            let (decided_later, awaited_trace) = decide(&awaited, &identity, &message).await;
            assert_eq!(decided_now, decided_later, "call {step}");
            assert_eq!(now_trace, awaited_trace, "call {step}");
            if step == 4 {
                now_clock.advance(Duration::from_secs(40));
                awaited_clock.advance(Duration::from_secs(40));
            }
        }
    }

    #[tokio::test]
    async fn a_limiter_that_must_be_awaited_is_not_asked_to_decide_now() {
        let limiter = Arc::new(AwaitedOnly(MemoryRateLimiter::with_clock(
            ManualClock::new(),
        )));
        let guardrail = RateLimitGuardrail::new(
            vec![rule(RateLimitPeriod::Minute, json!({"limit": 1}))],
            Arc::clone(&limiter) as Arc<dyn RateLimiter>,
        );
        let identity = Identity::new_random();
        let message = call("a");
        let ctx = GuardrailContext::new(Direction::Request, &identity, &message);
        let mut trace = Trace::new();
        assert_eq!(
            guardrail.evaluate_now(&ctx, PolicyLevel::Organisation, &mut trace),
            None
        );
        assert!(trace.is_empty());
        // Nothing was counted: the one call the limit allows still passes, awaited.
        assert_eq!(limiter.0.tracked_keys(), 0);
        assert_eq!(
            decide(&guardrail, &identity, &message).await.0,
            GuardrailResult::Allow
        );
        assert!(matches!(
            decide(&guardrail, &identity, &message).await.0,
            GuardrailResult::Throttle { .. }
        ));
    }

    #[test]
    fn window_keys_name_the_agent_as_a_hash_tag_the_period_and_the_tool() {
        let identity = Identity::new_random();
        let agent = identity.agent;
        let message = call("search");
        let ctx = GuardrailContext::new(Direction::Request, &identity, &message);
        let minute = rule(RateLimitPeriod::Minute, json!({"limit": 1}));
        let hour_per_tool = rule(
            RateLimitPeriod::Hour,
            json!({"limit": 1, "key": "agent_tool"}),
        );
        assert_eq!(minute.window(&ctx).key, format!("{{{agent}}}:60s"));
        assert_eq!(
            hour_per_tool.window(&ctx).key,
            format!("{{{agent}}}:3600s:tool:search")
        );
    }

    #[tokio::test]
    async fn per_tool_keys_count_each_tool_apart() {
        let (_, limiter) = memory();
        let guardrail = RateLimitGuardrail::new(
            vec![rule(
                RateLimitPeriod::Hour,
                json!({"limit": 1, "key": "agent_tool"}),
            )],
            limiter,
        );
        let identity = Identity::new_random();
        assert_eq!(
            decide(&guardrail, &identity, &call("a")).await.0,
            GuardrailResult::Allow
        );
        assert_eq!(
            decide(&guardrail, &identity, &call("b")).await.0,
            GuardrailResult::Allow
        );
        assert!(matches!(
            decide(&guardrail, &identity, &call("a")).await.0,
            GuardrailResult::Throttle { .. }
        ));
    }

    #[tokio::test]
    async fn only_counted_methods_are_limited() {
        let (_, limiter) = memory();
        let guardrail = RateLimitGuardrail::new(
            vec![rule(RateLimitPeriod::Minute, json!({"limit": 1}))],
            limiter,
        );
        let identity = Identity::new_random();
        let list = Message::from_value(json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}))
            .unwrap();
        for _ in 0..5 {
            let (result, trace) = decide(&guardrail, &identity, &list).await;
            assert_eq!(result, GuardrailResult::Allow);
            assert!(trace.is_empty());
        }
        let all = RateLimitGuardrail::new(
            vec![rule(
                RateLimitPeriod::Minute,
                json!({"limit": 1, "methods": ["*"]}),
            )],
            Arc::new(MemoryRateLimiter::new()),
        );
        assert_eq!(
            decide(&all, &identity, &list).await.0,
            GuardrailResult::Allow
        );
        assert!(matches!(
            decide(&all, &identity, &list).await.0,
            GuardrailResult::Throttle { .. }
        ));
    }

    #[tokio::test]
    async fn minute_and_hour_are_checked_together() {
        let (_, limiter) = memory();
        let guardrail = RateLimitGuardrail::new(
            vec![
                rule(RateLimitPeriod::Minute, json!({"limit": 10})),
                rule(RateLimitPeriod::Hour, json!({"limit": 2})),
            ],
            limiter,
        );
        let identity = Identity::new_random();
        for _ in 0..2 {
            let (result, trace) = decide(&guardrail, &identity, &call("a")).await;
            assert_eq!(result, GuardrailResult::Allow);
            assert_eq!(trace.len(), 2);
        }
        let (result, trace) = decide(&guardrail, &identity, &call("a")).await;
        assert!(
            matches!(result, GuardrailResult::Throttle { retry_after, .. } if retry_after == Duration::from_secs(1800))
        );
        let decisions: Vec<_> = trace
            .entries()
            .iter()
            .map(|e| (e.guardrail.as_ref(), e.decision))
            .collect();
        assert_eq!(
            decisions,
            [
                ("rate_limit_per_minute", DecisionKind::Allow),
                ("rate_limit_per_hour", DecisionKind::Throttle)
            ]
        );
    }

    #[derive(Debug)]
    struct Down;

    #[async_trait]
    impl RateLimiter for Down {
        async fn acquire(
            &self,
            _: &[RateLimitWindow],
        ) -> Result<RateLimitDecision, RateLimitError> {
            Err(RateLimitError(crate::Cause::message("connection refused")))
        }
    }

    #[tokio::test]
    async fn an_unreachable_limiter_fails_closed() {
        let guardrail = RateLimitGuardrail::new(
            vec![rule(RateLimitPeriod::Minute, json!({"limit": 1}))],
            Arc::new(Down),
        );
        let (result, _) = decide(&guardrail, &Identity::new_random(), &call("a")).await;
        assert!(matches!(result, GuardrailResult::Block { code, .. } if code == UNAVAILABLE_CODE));
    }

    #[test]
    fn rejects_bad_settings() {
        for bad in [
            json!({}),
            json!({"limit": 0}),
            json!({"limit": -1}),
            json!({"limit": "60"}),
            json!({"limit": 1, "key": "org"}),
            json!({"limit": 1, "per": "x"}),
        ] {
            assert!(
                serde_json::from_value::<RateLimitSettings>(bad.clone()).is_err(),
                "{bad}"
            );
        }
    }
}
