//! What `tool_pinning` costs: a `tools/call` (about 1 KB of arguments) and a `tools/list` answer of
//! 100 tools through `rbac` alone (the baseline) and through `rbac` and `tool_pinning` in `enforce`
//! mode, with pins in memory, in SQLite, and in SQLite behind the status cache the gateway puts in
//! front of its database (`CachedPinStore`, 500 ms), in the same process. Every tool is pinned and unchanged:
//! the steady state, in which a listing writes nothing and a call reads one pin's status.
//!
//! `cargo bench -p cerberus-benches --bench tool_pinning`
#![allow(clippy::unwrap_used, reason = "a benchmark stops loudly on bad input")]

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use cerberus_benches::rule_call_1kb;
use cerberus_core::pinning::{CachedPinStore, MemoryPinStore, PinStore};
use cerberus_core::{
    Direction, EffectivePolicy, Envelope, GuardrailRegistry, Identity, Message, PolicyDocument,
};
use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::json;

/// A `tools/list` answer of 100 tools, `transfer` among them.
fn listing() -> Message {
    let tools: Vec<_> = (0..100)
        .map(|i| {
            let name = if i == 0 { "transfer".to_owned() } else { format!("tool_{i:03}") };
            json!({"name": name, "description": format!("Tool {i}: does one thing well, with care."),
                "inputSchema": {"type": "object", "properties": {"q": {"type": "string"}, "limit": {"type": "integer"}}}})
        })
        .collect();
    Message::from_value(json!({"jsonrpc": "2.0", "id": 1, "result": {"tools": tools}})).unwrap()
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let sqlite = runtime.block_on(async {
        let store = cerberus_sqlx::SqlStore::connect("sqlite::memory:")
            .await
            .unwrap();
        store.migrate().await.unwrap();
        store
    });
    let sqlite: Arc<dyn PinStore> = Arc::new(sqlite);
    let stores: [(&str, Option<Arc<dyn PinStore>>); 4] = [
        ("rbac_baseline", None),
        ("pinned_memory", Some(Arc::new(MemoryPinStore::new()))),
        ("pinned_sqlite", Some(Arc::clone(&sqlite))),
        (
            "pinned_sqlite_cached",
            Some(Arc::new(CachedPinStore::new(
                sqlite,
                Duration::from_millis(500),
                10_000,
            ))),
        ),
    ];
    let identity = Identity::new_random();
    let call = Message::parse(rule_call_1kb()).unwrap();
    let listing = listing();
    let mut group = c.benchmark_group("tool_pinning");
    for (name, store) in stores {
        let mut guardrails = vec![json!({"type": "rbac", "allow": ["*"]})];
        let registry = match store {
            Some(store) => {
                guardrails.push(json!({"type": "tool_pinning", "mode": "enforce"}));
                GuardrailRegistry::default().with_pin_store(store)
            }
            None => GuardrailRegistry::default(),
        };
        let policy = PolicyDocument::from_value(json!({"guardrails": guardrails})).unwrap();
        let pipeline = registry.build(&EffectivePolicy::single(&policy)).unwrap();
        let answering = Envelope::new(Direction::Response, &identity).answering(Some("tools/list"));
        // The first listing pins every tool.
        let first = runtime.block_on(pipeline.run(answering, listing.clone()));
        assert!(first.decision.passes());
        group.bench_function(format!("call_1kb/{name}"), |b| {
            b.iter(|| {
                let outcome = runtime.block_on(
                    pipeline.run(Envelope::new(Direction::Request, &identity), call.clone()),
                );
                assert!(outcome.decision.passes());
                black_box(outcome)
            });
        });
        group.bench_function(format!("list_100_tools/{name}"), |b| {
            b.iter(|| {
                let outcome = runtime.block_on(pipeline.run(answering, listing.clone()));
                assert!(outcome.decision.passes());
                black_box(outcome)
            });
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
