//! The `cerberus` command (cargo feature `cli`): `serve`, `check`, `stdio`, `keygen` and, with the
//! control plane, `migrate`, `openapi` and `admin`.
//!
//! The stock binary is [`Cerberus::new`]`().main()`: its policies may name the built-in guardrail
//! types only. A build of your own registers its guardrail types first and gets the whole command
//! with them, in every subcommand (`examples/custom_gateway.rs` in the workspace is such a program):
//!
//! ```no_run
//! use std::process::ExitCode;
//! use std::sync::Arc;
//!
//! use cerberus_axum::cli::Cerberus;
//! use cerberus_core::guardrails::rbac::{Rbac, RbacSettings};
//! use cerberus_core::{Guardrail, GuardrailRegistry, parse_settings};
//!
//! fn main() -> ExitCode {
//!     let mut registry = GuardrailRegistry::default();
//!     // A policy entry of type `read_only` builds this guardrail (here a fixed rbac rule).
//!     let registered = registry.register("read_only", |_: &_, _: &_| {
//!         let settings: RbacSettings = parse_settings(
//!             serde_json::json!({"allow": ["read_*", "list_*"]}).as_object().unwrap_or(&Default::default()),
//!         )?;
//!         Ok(Arc::new(Rbac::new(settings)) as Arc<dyn Guardrail>)
//!     });
//!     if let Err(e) = registered {
//!         eprintln!("error: {e}");
//!         return ExitCode::FAILURE;
//!     }
//!     Cerberus::with_registry(registry).main()
//! }
//! ```

mod args;
mod logs;

use std::error::Error;
use std::ffi::OsString;
use std::io::Write;
use std::process::ExitCode;

use cerberus_core::GuardrailRegistry;
use clap::Parser;

pub use self::args::*;
use crate::config::GatewayConfig;
use crate::webhook::{Reach, Webhooks};

/// The `cerberus` command with the guardrail types of a registry; see the [module docs](self).
#[derive(Debug)]
pub struct Cerberus {
    registry: GuardrailRegistry,
    /// The `webhook` type, unless the registry had a type of that name already.
    webhooks: Option<Webhooks>,
}

impl Default for Cerberus {
    fn default() -> Self {
        Self::with_registry(GuardrailRegistry::default())
    }
}

impl Cerberus {
    /// The command as the stock binary runs it: the built-in guardrail types and the gateway's
    /// `webhook` (its secrets in `CERBERUS_WEBHOOK_SECRET_*` variables).
    pub fn new() -> Self {
        Self::default()
    }

    /// The command whose policies may name every type `registry` knows, built-in and registered,
    /// and `webhook` unless `registry` has a type of that name. Its rate-limit guardrails count in
    /// memory unless the configuration shares them through Redis; the custom types are kept either
    /// way.
    pub fn with_registry(mut registry: GuardrailRegistry) -> Self {
        let webhooks = Webhooks::from_environment();
        let webhooks = webhooks.register(&mut registry).is_ok().then_some(webhooks);
        Self { registry, webhooks }
    }

    /// Runs the command this process's arguments name, and says how it went as the process's exit
    /// status: 0 when it succeeded, 2 for unusable input (a policy, a configuration, a message), the
    /// server's own status for `stdio`.
    pub fn main(self) -> ExitCode {
        self.run(Cli::parse())
    }

    /// Runs the command `args` name (the program's name first, as in `std::env::args_os`); an
    /// unusable command line prints clap's message and exits the process, as [`Cerberus::main`]
    /// does.
    pub fn main_from<I, T>(self, args: I) -> ExitCode
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        self.run(Cli::parse_from(args))
    }

    /// Runs a parsed command.
    pub fn run(self, cli: Cli) -> ExitCode {
        // `serve` sets its logs up after reading its configuration, which says whether spans are
        // exported.
        if !matches!(cli.command, Command::Serve(_))
            && let Err(e) = logs::init(cli.log_format, None)
        {
            return failed(&e);
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
        let registry = self.registry;
        // `serve` may run a tenant's policies and limits webhooks to the addresses its configuration
        // permits; every other command runs the operator's own files.
        if let Some(webhooks) = &self.webhooks
            && !matches!(cli.command, Command::Serve(_))
        {
            webhooks.limit_to(Reach::Anywhere);
        }
        match cli.command {
            Command::Check(args) => match runtime.block_on(crate::check::run(&args, &registry)) {
                Ok(report) => print_json(&report.to_json()),
                Err(e) => failed(&e),
            },
            Command::Stdio(args) => {
                let result = runtime.block_on(crate::stdio_wrapper::run(&args, &registry));
                // The read of standard input may still be blocked in a thread: do not wait for it.
                runtime.shutdown_background();
                match result {
                    Ok(status) => exit_code_of(status),
                    Err(e) => failed(&e),
                }
            }
            Command::Keygen => {
                let key = crate::auth::generate_key();
                println!("key: {}", key.secret);
                println!("key_sha256: {}", key.hash.to_hex());
                ExitCode::SUCCESS
            }
            Command::Serve(args) => serve(
                cli.log_format,
                &args,
                registry,
                self.webhooks.as_ref(),
                &runtime,
            ),
            #[cfg(feature = "control-plane")]
            Command::Openapi => print_json(&crate::admin::openapi_document()),
            #[cfg(feature = "control-plane")]
            Command::Migrate(args) => finish(runtime.block_on(migrate(&args, &registry))),
            #[cfg(feature = "control-plane")]
            Command::Admin(AdminCommand::CreateUser(args)) => {
                finish(runtime.block_on(create_user(&args, &registry)))
            }
        }
    }
}

/// `cerberus serve`: the configuration, then the logs (and the span exporter it may ask for), then
/// the gateway until it stops; the last spans leave after the last requests have been served.
fn serve(
    format: LogFormat,
    args: &ServeArgs,
    registry: GuardrailRegistry,
    webhooks: Option<&Webhooks>,
    runtime: &tokio::runtime::Runtime,
) -> ExitCode {
    let config = match load_config(args, &registry) {
        Ok(config) => config,
        Err(e) => return failed(&e),
    };
    if let Some(webhooks) = webhooks {
        webhooks.limit_to(Reach::Limited(config.server.webhook_egress_policy()));
    }
    let telemetry = match logs::init(format, Some(&config.telemetry)) {
        Ok(telemetry) => telemetry,
        Err(e) => return failed(&e),
    };
    let result = runtime.block_on(crate::serve::run(
        config,
        registry,
        args.audit_log.as_deref(),
    ));
    telemetry.finish();
    finish(result.map_err(Into::into))
}

/// The configuration `cerberus serve` runs with: the file, the environment's overrides, then the
/// command line's; its policies may name the types of `registry`.
pub fn load_config(
    args: &ServeArgs,
    registry: &GuardrailRegistry,
) -> Result<GatewayConfig, crate::config::ConfigError> {
    let mut config = GatewayConfig::load(&args.config, registry)?;
    if let Some(listen) = args.listen {
        config.server.listen = listen;
    }
    Ok(config)
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

/// Prints `value` as pretty JSON on standard output.
fn print_json(value: &impl serde::Serialize) -> ExitCode {
    let mut out = std::io::stdout().lock();
    let printed = serde_json::to_writer_pretty(&mut out, value)
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

fn finish(result: Result<(), Box<dyn Error>>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => failed(e.as_ref()),
    }
}

/// Reports `error` with every cause after it, `error: a: b: c`, and exits with status 2.
fn failed(error: &dyn Error) -> ExitCode {
    eprintln!("error: {}", cerberus_core::with_causes(error));
    ExitCode::from(2)
}

/// The configuration's database, opened; an error when the file has none.
#[cfg(feature = "control-plane")]
async fn database(
    config: &std::path::Path,
    registry: &GuardrailRegistry,
) -> Result<std::sync::Arc<cerberus_sqlx::SqlStore>, Box<dyn Error>> {
    let config = GatewayConfig::load(config, registry)?;
    let Some(database) = &config.database else {
        return Err("the configuration has no [database] section".into());
    };
    let settings = crate::control_plane::DatabaseSettings {
        migrate: false,
        ..database.clone()
    };
    Ok(crate::control_plane::open_store(&settings).await?)
}

#[cfg(feature = "control-plane")]
async fn migrate(args: &MigrateArgs, registry: &GuardrailRegistry) -> Result<(), Box<dyn Error>> {
    database(&args.config, registry).await?.migrate().await?;
    println!("the database is up to date");
    Ok(())
}

#[cfg(feature = "control-plane")]
async fn create_user(
    args: &CreateUserArgs,
    registry: &GuardrailRegistry,
) -> Result<(), Box<dyn Error>> {
    let store = database(&args.config, registry).await?;
    store.migrate().await?;
    let password = match std::env::var("CERBERUS_ADMIN_PASSWORD") {
        Ok(password) => password,
        Err(_) => {
            let mut line = String::new();
            std::io::stdin().read_line(&mut line)?;
            line.trim_end_matches(['\r', '\n']).to_owned()
        }
    };
    crate::control_plane::create_owner(&store, &args.organisation, &args.email, password).await?;
    println!(
        "created organisation `{}` with owner {}",
        args.organisation, args.email
    );
    Ok(())
}
