//! One proxied call's guardrail work, repeated: the load benchmark's `tools/call` request and its
//! echoed result through the load policy, for counting instructions under Valgrind.
//!
//! `benches/instructions.sh` runs it twice (with 0 and with N calls) and prints the instructions per
//! call: a count that, unlike a timing, is the same on every run, so two builds can be compared on a
//! noisy machine.

use std::process::ExitCode;

use bytes::Bytes;

use cerberus_core::{
    Direction, EffectivePolicy, Envelope, GuardrailRegistry, Identity, Message, PolicyDocument,
    methods,
};

// The gateway's allocator, so that allocation costs what it costs in the gateway.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let calls: usize = match std::env::args().nth(1).map(|n| n.parse()) {
        None => 1000,
        Some(Ok(calls)) => calls,
        Some(Err(e)) => {
            eprintln!("usage: pipeline-instructions [CALLS]: {e}");
            return ExitCode::from(2);
        }
    };
    let registry = GuardrailRegistry::default();
    let pipeline = match PolicyDocument::from_json(include_str!("../load/policy.json"))
        .map_err(|e| e.to_string())
        .and_then(|policy| {
            registry
                .build(&EffectivePolicy::single(&policy))
                .map_err(|e| e.to_string())
        }) {
        Ok(pipeline) => pipeline,
        Err(e) => {
            eprintln!("the load policy does not build: {e}");
            return ExitCode::FAILURE;
        }
    };
    let identity = Identity::new_random();
    let text = cerberus_benches::load_text();
    let request = serde_json::json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
        "params": {"name": "echo", "arguments": {"text": text}}});
    let result = serde_json::json!({"jsonrpc": "2.0", "id": 7,
        "result": {"content": [{"type": "text", "text": text}], "isError": false}});
    let messages = [
        (Direction::Request, None, Bytes::from(request.to_string())),
        (
            Direction::Response,
            Some(methods::TOOLS_CALL),
            Bytes::from(result.to_string()),
        ),
    ];
    let mut forwarded = 0;
    for _ in 0..calls {
        for (direction, answering, bytes) in &messages {
            let Ok(message) = Message::parse(bytes.clone()) else {
                eprintln!("a benchmark message does not parse");
                return ExitCode::FAILURE;
            };
            let envelope = Envelope::new(*direction, &identity).answering(*answering);
            let outcome = futures::executor::block_on(pipeline.run(envelope, message));
            forwarded += usize::from(outcome.decision.passes());
        }
    }
    if forwarded != 2 * calls {
        eprintln!("the pipeline refused a benchmark message");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
