//! The full default pipeline over a realistic 4 KB message: parse, every guardrail, serialise; and
//! large results of the labelled corpus (`corpus.rs`): 50,000 short strings, and 1 MB of records.
//! With the gateway's allocator (mimalloc), so that a redacted message's allocations cost what they
//! cost in the gateway.
//!
//! `cargo bench -p cerberus-benches --bench pipeline`
#![allow(clippy::unwrap_used, reason = "a benchmark stops loudly on bad input")]

use std::hint::black_box;

use cerberus_benches::corpus::{records_result, short_strings_result};
use cerberus_benches::{Payload, default_policy, fifty_rules, tool_call_4k, tool_result_4k};
use cerberus_core::{
    Direction, EffectivePolicy, Envelope, GuardrailRegistry, GuardrailSpec, Identity, Message,
    Pipeline, PolicyDocument, methods,
};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn pipeline() -> Pipeline {
    pipeline_of(&default_policy())
}

fn pipeline_of(policy: &PolicyDocument) -> Pipeline {
    let registry = GuardrailRegistry::default();
    registry.validate(policy).unwrap();
    registry.build(&EffectivePolicy::single(policy)).unwrap()
}

/// Every kind of personal data redacted in results: the whole message is read, and what is found
/// rewritten.
const REDACT_EVERY_KIND: &str = r#"{"guardrails": [
    {"type": "pii_ssn", "action": "redact"},
    {"type": "pii_credit_card", "action": "redact"},
    {"type": "pii_email", "action": "redact"},
    {"type": "pii_phone", "action": "redact"},
    {"type": "pii_ip_address", "action": "redact"}
]}"#;

/// The example policy, every kind redacted and its limits raised so that a 1 MB table passes.
const LARGE_RESULTS: &str = r#"{"guardrails": [
    {"type": "rbac", "allow": ["*"], "deny": ["*delete*", "*drop*"]},
    {"type": "pii_ssn", "action": "redact"},
    {"type": "pii_credit_card", "action": "redact"},
    {"type": "pii_email", "action": "redact"},
    {"type": "pii_phone", "action": "redact"},
    {"type": "pii_ip_address", "action": "redact", "direction": "response"},
    {"type": "rate_limit_per_minute", "limit": 60},
    {"type": "rate_limit_per_hour", "limit": 1000},
    {"type": "content_large_documents", "max_bytes": 4000000},
    {"type": "content_structured_data", "max_rows": 20000, "direction": "response"},
    {"type": "content_source_code", "max_lines": 400, "direction": "response"}
]}"#;

fn run(
    pipeline: &Pipeline,
    identity: &Identity,
    direction: Direction,
    answering: Option<&str>,
    bytes: &[u8],
) -> usize {
    let message = Message::parse(bytes.to_vec()).unwrap();
    let envelope = Envelope::new(direction, identity).answering(answering);
    let outcome = futures::executor::block_on(pipeline.run(envelope, message));
    outcome.message.to_bytes().len()
}

/// The example policy and ten rules.
fn pipeline_with_rules() -> Pipeline {
    let mut policy = default_policy();
    for rule in fifty_rules().into_iter().take(10) {
        let serde_json::Value::Object(settings) = serde_json::to_value(rule).unwrap() else {
            unreachable!("settings serialise as an object")
        };
        policy.guardrails.push(GuardrailSpec::new("rule", settings));
    }
    pipeline_of(&policy)
}

fn bench(c: &mut Criterion) {
    four_kb(c, "default_pipeline_4k", &pipeline());
    four_kb(
        c,
        "default_pipeline_4k_with_10_rules",
        &pipeline_with_rules(),
    );
}

fn four_kb(c: &mut Criterion, group: &str, pipeline: &Pipeline) {
    let identity = Identity::new_random();
    let mut group = c.benchmark_group(group);
    for (name, direction, bytes) in [
        (
            "tools_call_result_clean",
            Direction::Response,
            tool_result_4k(Payload::Clean),
        ),
        (
            "tools_call_result_redacted",
            Direction::Response,
            tool_result_4k(Payload::Redactable),
        ),
        (
            "tools_call_result_blocked",
            Direction::Response,
            tool_result_4k(Payload::Blocked),
        ),
        ("tools_call_request", Direction::Request, tool_call_4k()),
    ] {
        group.throughput(Throughput::Bytes(bytes.len() as u64));
        let answering = (direction == Direction::Response).then_some(methods::TOOLS_CALL);
        group.bench_function(name, |b| {
            b.iter(|| run(pipeline, &identity, direction, answering, black_box(&bytes)))
        });
    }
    group.finish();
}

/// Large results, each with a policy that reads all of it and with an empty one: the difference is
/// what the guardrails cost.
fn large(c: &mut Criterion) {
    let identity = Identity::new_random();
    let empty = Pipeline::new();
    let pii = pipeline_of(&PolicyDocument::from_json(REDACT_EVERY_KIND).unwrap());
    let full = pipeline_of(&PolicyDocument::from_json(LARGE_RESULTS).unwrap());
    let mut group = c.benchmark_group("large_results");
    group.sample_size(20);
    for (name, bytes, policy, pipeline) in [
        (
            "short_strings_50k",
            short_strings_result(50_000),
            "pii_only",
            &pii,
        ),
        (
            "records_10k",
            records_result(10_000),
            "example_policy",
            &full,
        ),
    ] {
        group.throughput(Throughput::Bytes(bytes.len() as u64));
        for (policy, pipeline) in [(policy, pipeline), ("empty_policy", &empty)] {
            group.bench_function(format!("{name}/{policy}"), |b| {
                b.iter(|| {
                    run(
                        pipeline,
                        &identity,
                        Direction::Response,
                        Some(methods::TOOLS_CALL),
                        black_box(&bytes),
                    )
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench, large);
criterion_main!(benches);
