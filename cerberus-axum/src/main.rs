//! The `cerberus` binary.

use std::io::Write;
use std::process::ExitCode;

use cerberus_axum::check;
use cerberus_axum::cli::{Cli, Command};
use clap::Parser;
use tracing_subscriber::EnvFilter;

/// mimalloc: the proxy allocates and frees many small buffers per message, where the system allocator
/// spent a fifth of the gateway's instructions (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Logs go to stderr (stdout carries `check` reports); RUST_LOG overrides the level.
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match cli.command {
        Command::Check(args) => match runtime.block_on(check::run(&args)) {
            Ok(report) => {
                let mut out = std::io::stdout().lock();
                let printed = serde_json::to_writer_pretty(&mut out, &report.to_json())
                    .map_err(std::io::Error::from)
                    .and_then(|()| writeln!(out));
                match printed {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => {
                        eprintln!("error: cannot write the report: {e}");
                        ExitCode::FAILURE
                    }
                }
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
        },
        Command::Keygen => {
            let key = cerberus_axum::auth::generate_key();
            println!("key: {}", key.secret);
            println!("key_sha256: {}", key.hash.to_hex());
            ExitCode::SUCCESS
        }
        Command::Serve(args) => match runtime.block_on(cerberus_axum::serve::run(&args)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::from(2)
            }
        },
    }
}
