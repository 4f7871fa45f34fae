//! The JSON-RPC message parser and its tape, on any bytes a client or an upstream may send: parsing
//! never panics, and what parses reads back consistently (its view, its value, its bytes).
#![no_main]

use std::ops::ControlFlow;

use cerberus_core::Message;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(messages) = Message::parse_batch(data.to_vec()) {
        for message in &messages {
            let _ = message.to_value();
        }
    }
    let Ok(message) = Message::parse(data.to_vec()) else {
        return;
    };
    let _ = (
        message.kind(),
        message.method(),
        message.id(),
        message.target(),
    );
    let _ = (
        message.tool_name(),
        message.resource_uri(),
        message.arguments(),
    );
    if let Some(view) = message.payload_view() {
        let mut parts = 0_usize;
        let _ = view.walk(&mut |_| -> ControlFlow<()> {
            parts += 1;
            ControlFlow::Continue(())
        });
    }
    // What parsed is the JSON object it holds, and its bytes parse back to the same.
    let value = message.to_value();
    let json: serde_json::Value =
        serde_json::from_slice(&message.to_bytes()).expect("its own bytes are JSON");
    assert_eq!(json, value);
    let again = Message::parse(message.to_bytes()).expect("its own bytes parse again");
    assert_eq!(again.to_value(), value);
});
