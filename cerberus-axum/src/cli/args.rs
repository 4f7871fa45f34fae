//! The `cerberus` command line's arguments, as clap reads them.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// Cerberus: a governance gateway for the Model Context Protocol.
#[derive(Debug, Parser)]
#[command(name = "cerberus", version, about, long_about = None)]
pub struct Cli {
    /// How logs (on standard error) are written: `text` (coloured on a terminal) or `json` (one
    /// object per line, for log shippers). RUST_LOG sets the level (default `info`).
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "CERBERUS_LOG_FORMAT"
    )]
    pub log_format: LogFormat,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// `--log-format` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines, coloured when standard error is a terminal.
    Text,
    /// One JSON object per line.
    Json,
}

/// Every setting of the configuration file and the environment variable that overrides it; shown by
/// `cerberus serve --help`.
pub const SETTINGS_HELP: &str = "\
Settings: each one of the file's [server], [database], [admin], [audit] and [redis] sections may be
set by an environment variable CERBERUS_<SECTION>__<KEY> (two underscores), which wins over the
file. Values are read as TOML when they can be (8080, true, [\"a\", \"b\"]) and as text otherwise.
--listen (or CERBERUS_LISTEN) wins over both. An unknown or malformed setting stops the start-up
with the file's field or the variable named.

  CERBERUS_SERVER__LISTEN                   address to listen on (127.0.0.1:8080)
  CERBERUS_SERVER__MAX_BODY_BYTES           largest request body; larger ones get 413 (4194304)
  CERBERUS_SERVER__BODY_READ_TIMEOUT_SECS   how long a request body may take; then 408 (30)
  CERBERUS_SERVER__MAX_HEADER_BYTES         largest request head; larger ones get 431 (65536)
  CERBERUS_SERVER__HEADER_READ_TIMEOUT_SECS how long a request head may take, or a connection idle
                                            between requests; then it is closed (30)
  CERBERUS_SERVER__MAX_CONNECTIONS          client connections served at once (10000)
  CERBERUS_SERVER__UPSTREAM_TIMEOUT_SECS    how long an upstream may take to start answering (120)
  CERBERUS_SERVER__ALLOWED_ORIGINS          origins allowed besides loopback ones ([])
  CERBERUS_SERVER__ALLOWED_HOSTS            Host header names allowed ([]: loopback names on loopback)
  CERBERUS_SERVER__STDIO_IDLE_TIMEOUT_SECS  idle time before a stdio upstream is stopped (300)
  CERBERUS_SERVER__MAX_STDIO_SESSIONS       stdio upstream processes at once (64)
  CERBERUS_SERVER__MAX_STDIO_SESSIONS_PER_WORKSPACE of one workspace; its idlest makes room (16)
  CERBERUS_SERVER__MAX_STDIO_SESSIONS_PER_AGENT of one agent; its idlest makes room (4)
  CERBERUS_SERVER__UPSTREAM_CA_FILE         PEM certificate authorities trusted for https upstreams
                                            besides the public ones (none)
  CERBERUS_SERVER__MAX_SESSIONS             sessions kept in memory without Redis (100000)
  CERBERUS_SERVER__MAX_SESSIONS_PER_AGENT   sessions one agent keeps; its idlest makes room (1000)
  CERBERUS_SERVER__SESSION_IDLE_SECS        unused time before a session kept in memory ends (3600)
  CERBERUS_SERVER__ADMIN_UPSTREAM_ALLOW     private networks upstreams set through the admin API
                                            may reach ([]: public addresses only)
  CERBERUS_SERVER__ADMIN_UPSTREAM_DENY      networks they may never reach ([])
  CERBERUS_SERVER__WEBHOOK_ALLOW            private networks `webhook` guardrails may reach ([])
  CERBERUS_DATABASE__URL                    sqlite://cerberus.db?mode=rwc, sqlite::memory: or postgres://...
  CERBERUS_DATABASE__MIGRATE                apply missing migrations at start-up (true)
  CERBERUS_DATABASE__CACHE_TTL_MS           how long a looked-up key and policy are trusted (500)
  CERBERUS_ADMIN__JWT_SECRET                access-token signing secret, 32+ characters (random;
                                            CERBERUS_JWT_SECRET wins over it)
  CERBERUS_ADMIN__ACCESS_TOKEN_TTL_SECS     access-token lifetime (900)
  CERBERUS_ADMIN__REFRESH_TOKEN_TTL_SECS    refresh-token lifetime (2592000)
  CERBERUS_ADMIN__KEY_ROTATION_GRACE_SECS   how long a rotated key keeps working (0)
  CERBERUS_ADMIN__ALLOW_STDIO_UPSTREAMS     whether admins may define stdio upstreams (false)
  CERBERUS_ADMIN__LOGIN_FAILURES_PER_ACCOUNT failed logins for one email in the window; then 429 (10)
  CERBERUS_ADMIN__LOGIN_FAILURES_PER_ADDRESS failed logins from one address in the window (100)
  CERBERUS_ADMIN__LOGIN_FAILURE_WINDOW_SECS how long failed logins are remembered (900)
  CERBERUS_ADMIN__APPROVAL_TIMEOUT_SECS     how long a held call waits for an admin (300)
  CERBERUS_ADMIN__APPROVAL_POLL_INTERVAL_MS how often it looks for an answer given elsewhere (500)
  CERBERUS_ADMIN__APPROVAL_KEEP_ALIVE_SECS  keep-alive comments to a held call's client (15)
  CERBERUS_ADMIN__APPROVAL_WEBHOOK_URL      where a signed notice of each held call goes (none)
  CERBERUS_ADMIN__APPROVAL_WEBHOOK_SECRET   the notices' HMAC key, 16+ bytes (none)
  CERBERUS_AUDIT__DATABASE                  store audit records in the database (true)
  CERBERUS_AUDIT__QUEUE_CAPACITY            events waiting for the writer (65536)
  CERBERUS_AUDIT__BATCH_SIZE                most events per transaction (1000)
  CERBERUS_AUDIT__OVERFLOW                  when the queue is full: block or drop (block)
  CERBERUS_AUDIT__MAX_RETRY_INTERVAL_MS     longest pause between write attempts (5000)
  CERBERUS_AUDIT__LINGER_MS                 how long a batch gathers (5)
  CERBERUS_AUDIT__RETENTION_DAYS            delete older records; 0 keeps them (0)
  CERBERUS_AUDIT__PAYLOADS                  none or redacted (none)
  CERBERUS_AUDIT__MAX_PAYLOAD_BYTES         a kept payload's JSON; past it, its head, length and
                                            hash (65536)
  CERBERUS_REDIS__URL                       redis://host:6379/0: shares limits, sessions, invalidations
  CERBERUS_REDIS__KEY_PREFIX                prefix of every key and channel (cerberus:)
  CERBERUS_REDIS__FAILURE_MODE              fail_closed, fail_open or local_fallback (fail_closed)
  CERBERUS_REDIS__BREAKER_THRESHOLD         failures in a row that open the breaker (3)
  CERBERUS_REDIS__BREAKER_COOLDOWN_MS       how long the breaker stays open (5000)
  CERBERUS_REDIS__TIMEOUT_MS                connect and command timeout (500)
  CERBERUS_REDIS__SESSION_IDLE_SECS         how long an unused session is kept (86400)
  CERBERUS_TELEMETRY__OTLP_ENDPOINT         http://collector:4318: export OpenTelemetry traces (off;
                                            OTEL_EXPORTER_OTLP_ENDPOINT works too)
  CERBERUS_TELEMETRY__OTLP_PROTOCOL         http/protobuf or http/json (http/protobuf)
  CERBERUS_TELEMETRY__SERVICE_NAME          the spans' service.name (cerberus)
  CERBERUS_TELEMETRY__SAMPLE_RATIO          share of new traces recorded, 0 to 1 (1)

Other variables: CERBERUS_CONFIG (--config), CERBERUS_LISTEN (--listen), CERBERUS_AUDIT_LOG
(--audit-log), CERBERUS_LOG_FORMAT (--log-format), CERBERUS_JWT_SECRET, and
CERBERUS_BOOTSTRAP_ORGANISATION, _EMAIL and _PASSWORD (the first owner of a new database), and
CERBERUS_WEBHOOK_SECRET_<NAME> (the key of `webhook` entries with `secret = \"<name>\"`).";

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Runs a message through a policy and prints the decision, the resulting message and the trace.
    ///
    /// Several --policy files merge in order: organisation, then workspace, then agent. The message is
    /// read from MESSAGE_FILE, or from standard input when it is `-` or absent. Exit status: 0 when the
    /// pipeline ran (whatever it decided), 2 for a malformed message or policy.
    Check(CheckArgs),
    /// Runs the gateway: the MCP proxy in front of the workspaces' MCP servers, the admin API (with a
    /// database), /health, /ready and /metrics.
    #[command(after_long_help = SETTINGS_HELP)]
    Serve(ServeArgs),
    /// Runs a local stdio MCP server behind the guardrails: put `cerberus stdio --policy FILE --` in
    /// front of the server's command in a desktop client's configuration.
    ///
    /// Messages from standard input go through the policy as requests, then to the server; the
    /// server's messages go through it as responses, then to standard output. Refused requests are
    /// answered with a JSON-RPC error and never reach the server. Logs go to standard error. Exit
    /// status: the server's, or 2 when the policy or the command is unusable.
    Stdio(StdioArgs),
    /// Generates an agent access key: prints the key (shown once) and the SHA-256 hash to put in a
    /// configuration file's `key_sha256`.
    Keygen,
    /// Applies the control-plane database's missing migrations (safe while other instances run).
    #[cfg(feature = "control-plane")]
    Migrate(MigrateArgs),
    /// Prints the admin API's OpenAPI document (the one served at /openapi.json).
    #[cfg(feature = "control-plane")]
    Openapi,
    /// Administers the control plane from the command line.
    #[cfg(feature = "control-plane")]
    #[command(subcommand)]
    Admin(AdminCommand),
}

/// Arguments of `cerberus migrate`.
#[cfg(feature = "control-plane")]
#[derive(Debug, clap::Args)]
pub struct MigrateArgs {
    /// The configuration file whose `[database]` to migrate.
    #[arg(long, value_name = "FILE", env = "CERBERUS_CONFIG")]
    pub config: PathBuf,
}

/// `cerberus admin` subcommands.
#[cfg(feature = "control-plane")]
#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Creates an organisation and its first owner; the password is read from
    /// CERBERUS_ADMIN_PASSWORD, or from standard input.
    CreateUser(CreateUserArgs),
}

/// Arguments of `cerberus admin create-user`.
#[cfg(feature = "control-plane")]
#[derive(Debug, clap::Args)]
pub struct CreateUserArgs {
    /// The configuration file whose `[database]` to use.
    #[arg(long, value_name = "FILE", env = "CERBERUS_CONFIG")]
    pub config: PathBuf,
    /// The new organisation's name.
    #[arg(long)]
    pub organisation: String,
    /// The owner's email address (the login).
    #[arg(long)]
    pub email: String,
}

/// Arguments of `cerberus serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// The configuration file (TOML).
    #[arg(long, value_name = "FILE", env = "CERBERUS_CONFIG")]
    pub config: PathBuf,
    /// The address to listen on, overriding the file's `server.listen`.
    #[arg(long, value_name = "ADDR", env = "CERBERUS_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Where to write the audit log as JSON lines (`-` for standard output).
    #[arg(long, value_name = "FILE", env = "CERBERUS_AUDIT_LOG")]
    pub audit_log: Option<PathBuf>,
}

/// Arguments of `cerberus stdio`.
#[derive(Debug, clap::Args)]
pub struct StdioArgs {
    /// A policy file (JSON, or TOML when it ends in .toml); up to three, merged as organisation,
    /// workspace and agent levels in that order.
    #[arg(
        long = "policy",
        value_name = "FILE",
        required = true,
        env = "CERBERUS_STDIO_POLICY"
    )]
    pub policies: Vec<PathBuf>,
    /// Where to append the audit log as JSON lines (standard output carries the protocol).
    #[arg(long, value_name = "FILE", env = "CERBERUS_AUDIT_LOG")]
    pub audit_log: Option<PathBuf>,
    /// What audit records keep of each message: `none`, or `redacted` (the message with every kind
    /// of personal data redacted).
    #[arg(
        long,
        value_name = "MODE",
        default_value = "none",
        env = "CERBERUS_AUDIT_PAYLOADS"
    )]
    pub audit_payloads: cerberus_core::audit::PayloadMode,
    /// The agent name in audit records and rate-limit keys (default: the command's file name).
    #[arg(long, value_name = "NAME")]
    pub agent: Option<String>,
    /// The largest message accepted from either side, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = 4 * 1024 * 1024)]
    pub max_message_bytes: usize,
    /// The MCP server's command and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<std::ffi::OsString>,
}

/// Arguments of `cerberus check`.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// A policy file (JSON, or TOML when it ends in .toml); up to three, highest level first.
    #[arg(long = "policy", value_name = "FILE", required = true)]
    pub policies: Vec<PathBuf>,
    /// Which way the message travels; by default requests and notifications are checked as requests and
    /// results and errors as responses.
    #[arg(long, value_enum)]
    pub direction: Option<CliDirection>,
    /// For a response: the method of the request it answers (for example tools/list).
    #[arg(long, value_name = "METHOD")]
    pub method: Option<String>,
    /// The JSON-RPC message to check; `-` or absent reads standard input.
    #[arg(value_name = "MESSAGE_FILE")]
    pub message: Option<PathBuf>,
}

/// `--direction` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum CliDirection {
    /// Client to server.
    Request,
    /// Server to client.
    Response,
}
