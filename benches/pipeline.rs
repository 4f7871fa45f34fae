//! The full default pipeline over a realistic 4 KB message: parse, every guardrail, serialise.
//!
//! `cargo bench -p cerberus-benches --bench pipeline`
#![allow(clippy::unwrap_used, reason = "a benchmark stops loudly on bad input")]

use std::hint::black_box;

use cerberus_benches::{Payload, default_policy, tool_call_4k, tool_result_4k};
use cerberus_core::{
    Direction, EffectivePolicy, Envelope, GuardrailRegistry, Identity, Message, Pipeline, methods,
};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn pipeline() -> Pipeline {
    let registry = GuardrailRegistry::default();
    let policy = default_policy();
    registry.validate(&policy).unwrap();
    registry.build(&EffectivePolicy::single(&policy)).unwrap()
}

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

fn bench(c: &mut Criterion) {
    let pipeline = pipeline();
    let identity = Identity::new_random();
    let mut group = c.benchmark_group("default_pipeline_4k");
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
            b.iter(|| {
                run(
                    &pipeline,
                    &identity,
                    direction,
                    answering,
                    black_box(&bytes),
                )
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
