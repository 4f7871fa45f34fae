//! Policy documents (JSON and TOML), as an admin sends them: parsing and building a pipeline never
//! panic, whatever the document holds.
#![no_main]

use cerberus_core::{EffectivePolicy, GuardrailRegistry, PolicyDocument, PolicyFormat};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let registry = GuardrailRegistry::default();
    for format in [PolicyFormat::Json, PolicyFormat::Toml] {
        if let Ok(document) = PolicyDocument::parse(text, format) {
            let _ = registry.build(&EffectivePolicy::single(&document));
        }
    }
});
