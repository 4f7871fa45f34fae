//! `pii-corpus`: the labelled corpus of `benches/corpus.rs` with what Cerberus finds in it, as one
//! JSON document on standard output, for `benches/presidio/compare` to score beside Presidio.
//!
//! Every sentence is scanned on its own, as a detector sees a short string, and the whole corpus is
//! scanned again and again for at least a second to time it.

use std::time::{Duration, Instant};

use cerberus_benches::corpus::{self, Holds};
use cerberus_core::guardrails::pii::{PiiKinds, PiiScanner};
use clap::Parser;
use serde_json::{Value, json};

#[derive(Parser)]
#[command(about = "Prints the labelled PII corpus with Cerberus's findings and speed")]
struct Args {
    /// How many sentences.
    #[arg(long, default_value_t = 2_000)]
    sentences: usize,
}

fn main() {
    let args = Args::parse();
    let sentences = corpus::sentences(args.sentences, Holds::Either);
    let scanner = PiiScanner::new(PiiKinds::all());
    let bytes: usize = sentences.iter().map(|s| s.text.len()).sum();
    let (mut runs, started) = (0u32, Instant::now());
    while runs < 3 || started.elapsed() < Duration::from_secs(1) {
        for sentence in &sentences {
            std::hint::black_box(scanner.find_all(std::hint::black_box(&sentence.text)));
        }
        runs += 1;
    }
    let seconds = started.elapsed().as_secs_f64() / f64::from(runs);
    let scored: Vec<Value> = sentences
        .iter()
        .map(|sentence| {
            let mut out = sentence.to_json();
            let found: Vec<Value> = scanner
                .find_all(&sentence.text)
                .into_iter()
                .map(|f| json!({"kind": f.kind.type_name(), "start": f.span.start, "end": f.span.end}))
                .collect();
            if let Some(object) = out.as_object_mut() {
                object.insert("cerberus".to_owned(), Value::Array(found));
            }
            out
        })
        .collect();
    let document = json!({"bytes": bytes, "cerberus_seconds": seconds, "sentences": scored});
    println!("{document}");
}
