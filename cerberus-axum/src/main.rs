//! The `cerberus` binary.

use std::io::Write;
use std::process::ExitCode;

use cerberus_axum::check;
use cerberus_axum::cli::{AdminCommand, Cli, Command, CreateUserArgs, LogFormat, ServeArgs};
use cerberus_axum::config::{GatewayConfig, TelemetrySettings};
use cerberus_axum::telemetry::Telemetry;
use clap::Parser;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// mimalloc: the proxy allocates and frees many small buffers per message, where the system allocator
/// spent a fifth of the gateway's instructions (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // `serve` sets its logs up after reading its configuration, which says whether spans are exported.
    if !matches!(cli.command, Command::Serve(_))
        && let Err(e) = init_logs(cli.log_format, None)
    {
        eprintln!("error: {e:#}");
        return ExitCode::from(2);
    }
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
        Command::Stdio(args) => {
            let result = runtime.block_on(cerberus_axum::stdio_wrapper::run(&args));
            // The read of standard input may still be blocked in a thread: do not wait for it.
            runtime.shutdown_background();
            match result {
                Ok(status) => exit_code_of(status),
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Keygen => {
            let key = cerberus_axum::auth::generate_key();
            println!("key: {}", key.secret);
            println!("key_sha256: {}", key.hash.to_hex());
            ExitCode::SUCCESS
        }
        Command::Serve(args) => serve(cli.log_format, &args, &runtime),
        Command::Openapi => {
            let document = cerberus_axum::admin::openapi_document();
            match serde_json::to_string_pretty(&document) {
                Ok(text) => {
                    println!("{text}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Migrate(args) => finish(runtime.block_on(migrate(&args.config))),
        Command::Admin(AdminCommand::CreateUser(args)) => {
            finish(runtime.block_on(create_user(&args)))
        }
    }
}

/// `cerberus serve`: the configuration, then the logs (and the span exporter it may ask for), then the
/// gateway until it stops; the last spans leave after the last requests have been served.
fn serve(format: LogFormat, args: &ServeArgs, runtime: &tokio::runtime::Runtime) -> ExitCode {
    let config = match cerberus_axum::serve::load_config(args) {
        Ok(config) => config,
        Err(e) => return finish(Err(e)),
    };
    let telemetry = match init_logs(format, Some(&config.telemetry)) {
        Ok(telemetry) => telemetry,
        Err(e) => return finish(Err(e)),
    };
    let result = runtime.block_on(cerberus_axum::serve::run_with(config, args));
    if let Some(telemetry) = telemetry {
        telemetry.shutdown();
    }
    finish(result)
}

/// The server's exit status as this process's (a signal's death as 128 + the signal, as shells do).
fn exit_code_of(status: std::process::ExitStatus) -> ExitCode {
    #[cfg(unix)]
    if let Some(signal) = std::os::unix::process::ExitStatusExt::signal(&status) {
        return ExitCode::from(u8::try_from(128 + signal).unwrap_or(u8::MAX));
    }
    match status.code() {
        Some(0) => ExitCode::SUCCESS,
        Some(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        None => ExitCode::FAILURE,
    }
}

/// Logs go to stderr (stdout carries `check` reports and the `stdio` protocol); RUST_LOG sets the
/// level. With telemetry settings that name a collector, spans are exported too, whatever RUST_LOG
/// says.
fn init_logs(
    format: LogFormat,
    telemetry: Option<&TelemetrySettings>,
) -> anyhow::Result<Option<Telemetry>> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let logs = match format {
        LogFormat::Text => logs
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .boxed(),
        LogFormat::Json => logs.json().flatten_event(true).boxed(),
    };
    let subscriber = tracing_subscriber::registry().with(logs.with_filter(filter));
    let (spans, telemetry) = match telemetry {
        Some(settings) => cerberus_axum::telemetry::start(settings)?.unzip(),
        None => (None, None),
    };
    subscriber.with(spans).init();
    Ok(telemetry)
}

fn finish(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// The configuration's database, opened; an error when the file has none.
async fn database(config: &std::path::Path) -> anyhow::Result<cerberus_sqlx::SqlStore> {
    let config = GatewayConfig::load(config, &cerberus_core::GuardrailRegistry::default())?;
    let Some(database) = &config.database else {
        anyhow::bail!("the configuration has no [database] section");
    };
    Ok(cerberus_sqlx::SqlStore::connect(&database.url).await?)
}

async fn migrate(config: &std::path::Path) -> anyhow::Result<()> {
    database(config).await?.migrate().await?;
    println!("the database is up to date");
    Ok(())
}

async fn create_user(args: &CreateUserArgs) -> anyhow::Result<()> {
    let store = database(&args.config).await?;
    store.migrate().await?;
    let password = match std::env::var("CERBERUS_ADMIN_PASSWORD") {
        Ok(password) => password,
        Err(_) => {
            let mut line = String::new();
            std::io::stdin().read_line(&mut line)?;
            line.trim_end_matches(['\r', '\n']).to_owned()
        }
    };
    cerberus_axum::serve::create_owner(&store, &args.organisation, &args.email, password).await?;
    println!(
        "created organisation `{}` with owner {}",
        args.organisation, args.email
    );
    Ok(())
}
