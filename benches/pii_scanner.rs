//! PII scanner throughput on mixed text, all five kinds in one pass; on the labelled corpus's hard
//! text (numeric-dense without personal data, and personal data in every sentence); and on hostile
//! text where a candidate starts, and fails, at nearly every byte; and the cost of context words on the
//! hard text.
//!
//! `cargo bench -p cerberus-benches --bench pii_scanner`

use std::hint::black_box;

use cerberus_benches::corpus::{self, Holds};
use cerberus_benches::mixed_text;
use cerberus_core::guardrails::pii::{
    ContextWords, PHONE_WORDS, PiiKind, PiiKinds, PiiScanner, SSN_WORDS,
};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("pii_scanner");
    let all = PiiScanner::new(PiiKinds::all());
    let email = PiiScanner::new([PiiKind::Email].into_iter().collect());
    let mut context = ContextWords::new();
    context.add(PiiKind::Ssn, SSN_WORDS);
    context.add(PiiKind::Phone, PHONE_WORDS);
    for (name, text) in [
        ("mixed_1mb_pii_every_50_words", mixed_text(1 << 20, 50)),
        ("clean_1mb", mixed_text(1 << 20, 0)),
    ] {
        group.throughput(Throughput::Bytes(text.len() as u64));
        group.bench_function(format!("all_kinds/{name}"), |b| {
            b.iter(|| all.find_all(black_box(&text)).len())
        });
        group.bench_function(format!("email_only/{name}"), |b| {
            b.iter(|| email.find_all(black_box(&text)).len())
        });
    }
    for (name, text) in [
        ("numeric_dense_1mb", corpus::text(1 << 20, Holds::Negative)),
        ("pii_every_sentence_1mb", corpus::text(1 << 20, Holds::Both)),
    ] {
        group.throughput(Throughput::Bytes(text.len() as u64));
        group.bench_function(format!("all_kinds/{name}"), |b| {
            b.iter(|| all.find_all(black_box(&text)).len())
        });
        group.bench_function(format!("all_kinds_context_words/{name}"), |b| {
            b.iter(|| {
                let mut count = 0;
                all.scan_with(black_box(&text), Some(&context), |_| count += 1);
                count
            })
        });
    }
    // The strings of a JSON result of many short strings, each scanned on its own.
    let short: Vec<String> = corpus::sentences(50_000, Holds::Either)
        .into_iter()
        .map(|s| s.text)
        .collect();
    group.throughput(Throughput::Bytes(
        short.iter().map(|s| s.len() as u64).sum(),
    ));
    group.bench_function("all_kinds/short_strings_50k", |b| {
        b.iter(|| {
            short
                .iter()
                .map(|s| all.find_all(black_box(s)).len())
                .sum::<usize>()
        })
    });
    for (name, unit) in [
        ("hostile_1mb_colons", "a:"),
        ("hostile_1mb_dotted_numbers", "1.1."),
        ("hostile_1mb_at_signs", "a@"),
        ("hostile_1mb_card_groups", "4111 "),
    ] {
        let text = unit.repeat((1 << 20) / unit.len());
        group.throughput(Throughput::Bytes(text.len() as u64));
        group.bench_function(format!("all_kinds/{name}"), |b| {
            b.iter(|| all.find_all(black_box(&text)).len())
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
