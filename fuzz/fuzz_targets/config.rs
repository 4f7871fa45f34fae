//! The gateway's configuration file: any text is accepted or refused with an error, never a panic.
#![no_main]

use cerberus_axum::config::GatewayConfig;
use cerberus_core::GuardrailRegistry;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = GatewayConfig::parse(
        text,
        std::path::Path::new("/nonexistent"),
        &GuardrailRegistry::default(),
    );
});
