//! `rule` entries (CEL) over a `tools/call` request with about 1 KB of arguments: one rule, and a
//! policy of 50 rules, each decided through the guardrail as the pipeline calls it (the variables
//! made once per message, then every rule run).
//!
//! `cargo bench -p cerberus-benches --bench rules`
#![allow(clippy::unwrap_used, reason = "a benchmark stops loudly on bad input")]

use std::hint::black_box;

use cerberus_benches::{fifty_rules, rule_call_1kb};
use cerberus_core::guardrails::rule::{Rule, RuleGuardrail, RuleSettings};
use cerberus_core::{
    Direction, Guardrail, GuardrailContext, Identity, Message, PolicyLevel, Trace,
};
use criterion::{Criterion, criterion_group, criterion_main};

fn guardrail(rules: &[RuleSettings]) -> RuleGuardrail {
    RuleGuardrail::new(
        rules
            .iter()
            .map(|r| Rule::new(r.clone(), PolicyLevel::Organisation).unwrap())
            .collect(),
    )
}

fn bench(c: &mut Criterion) {
    let message = Message::parse(rule_call_1kb()).unwrap();
    let identity = Identity::new_random();
    let mut group = c.benchmark_group("rules");
    let one: RuleSettings = serde_json::from_value(serde_json::json!({
        "when": "tool == 'transfer' && double(arguments.amount) > 1000.0"
    }))
    .unwrap();
    for (name, rules) in [
        ("one_rule_1kb_arguments", vec![one]),
        ("fifty_rules_1kb_arguments", fifty_rules()),
    ] {
        let guardrail = guardrail(&rules);
        group.bench_function(name, |b| {
            b.iter(|| {
                let ctx = GuardrailContext::new(Direction::Request, &identity, black_box(&message));
                let mut trace = Trace::with_capacity(rules.len());
                guardrail.evaluate_now(&ctx, PolicyLevel::Organisation, &mut trace)
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
