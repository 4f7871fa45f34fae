//! What a `webhook` entry costs a `tools/call` request with about 1 KB of arguments: the whole
//! pipeline with one webhook to a decision service on loopback that allows everything (redacted and
//! whole payloads), beside the same pipeline with one `rule` instead, in the same process. The
//! difference is the call: the body written, redacted and signed, the round trip over a kept
//! connection, and the answer read. The signature alone is measured too.
//!
//! `cargo bench -p cerberus-benches --bench webhook`
#![allow(clippy::unwrap_used, reason = "a benchmark stops loudly on bad input")]

use std::hint::black_box;

use cerberus_axum::webhook::{Reach, Signer, Webhooks};
use cerberus_benches::rule_call_1kb;
use cerberus_core::{
    Direction, EffectivePolicy, Envelope, GuardrailRegistry, Identity, Message, PolicyDocument,
};
use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::json;

const SECRET: &str = "a-benchmark-secret-of-32-bytes!!";

/// Starts a decision service that allows everything; returns its URL.
async fn start_service() -> String {
    let router = axum::Router::new().route(
        "/decide",
        axum::routing::post(|| async {
            (
                [(axum::http::header::CONTENT_TYPE, "application/json")],
                r#"{"decision":"allow"}"#,
            )
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    format!("http://{address}/decide")
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let url = runtime.block_on(start_service());
    let mut registry = GuardrailRegistry::default();
    let webhooks = Webhooks::with_secrets(|_| Some(SECRET.to_owned()));
    webhooks.limit_to(Reach::Anywhere);
    webhooks.register(&mut registry).unwrap();
    let identity = Identity::new_random();
    let message = Message::parse(rule_call_1kb()).unwrap();
    let mut group = c.benchmark_group("webhook");
    for (name, entry) in [
        (
            "one_rule_baseline",
            json!({"type": "rule", "when": "tool == 'transfer' && double(arguments.amount) > 1000.0"}),
        ),
        (
            "one_webhook_redacted",
            json!({"type": "webhook", "url": url, "secret": "bench"}),
        ),
        (
            "one_webhook_whole",
            json!({"type": "webhook", "url": url, "secret": "bench", "payload": "whole"}),
        ),
    ] {
        let document = PolicyDocument::from_value(json!({"guardrails": [entry]})).unwrap();
        let pipeline = registry.build(&EffectivePolicy::single(&document)).unwrap();
        group.bench_function(name, |b| {
            b.iter(|| {
                runtime.block_on(pipeline.run(
                    Envelope::new(Direction::Request, &identity),
                    black_box(message.clone()),
                ))
            })
        });
    }
    let signer = Signer::new(SECRET.as_bytes()).unwrap();
    let body = message.to_bytes();
    group.bench_function("signature_1kb", |b| {
        b.iter(|| signer.sign(black_box("1700000000"), black_box(&body)))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
