//! The `cerberus` binary: the stock command, whose policies name the built-in guardrail types.

use std::process::ExitCode;

/// mimalloc: the proxy allocates and frees many small buffers per message, where the system allocator
/// spent a fifth of the gateway's instructions (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    cerberus_axum::cli::Cerberus::new().main()
}
