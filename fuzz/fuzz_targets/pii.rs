//! The PII scanner on any text: findings lie on character boundaries, in order, without overlap.
#![no_main]

use std::sync::LazyLock;

use cerberus_core::guardrails::pii::{PiiKinds, PiiScanner};
use libfuzzer_sys::fuzz_target;

/// Built once: compiling the patterns costs far more than a scan.
static SCANNER: LazyLock<PiiScanner> = LazyLock::new(|| PiiScanner::new(PiiKinds::all()));

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut end = 0;
    for finding in SCANNER.find_all(text) {
        assert!(
            finding.span.start >= end,
            "findings overlap or go backwards"
        );
        assert!(
            text.get(finding.span.clone()).is_some(),
            "a span off a character boundary"
        );
        end = finding.span.end;
    }
});
