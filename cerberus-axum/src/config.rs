//! The gateway's configuration file: server settings, and the organisations, workspaces, agents and
//! policies it serves when there is no admin database (or to seed one).
//!
//! ```toml
//! [server]
//! listen = "127.0.0.1:8080"
//!
//! [[organisations]]
//! name = "acme"
//! policy = "policies/organisation.json"      # a path, relative to this file…
//!
//! [[workspaces]]
//! name = "crm"
//! organisation = "acme"
//! upstream = { url = "http://127.0.0.1:3901/mcp" }
//! policy = { guardrails = [{ type = "rbac", allow = ["*"] }] }   # …or inline
//!
//! [[agents]]
//! name = "support-bot"
//! workspace = "crm"
//! key_sha256 = "…64 hexadecimal digits…"
//! ```

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use cerberus_core::store::UpstreamDefinition;
use cerberus_core::{
    AgentId, GuardrailRegistry, Identity, OrganisationId, PolicyDocument, PolicyFormat, WorkspaceId,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::audit::AuditSettings;
use crate::auth::KeyHash;

/// The namespace of the ids derived from names, so that every instance reading one file agrees on them.
const ID_NAMESPACE: Uuid = Uuid::from_u128(0x6365_7262_6572_7573_2d69_6473_2d76_3100);

/// A configuration that cannot be used, with the field named.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ConfigError {
    /// Where: the file, then the field.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl ConfigError {
    fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// Server settings.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSettings {
    /// The address to listen on.
    pub listen: SocketAddr,
    /// The largest request body accepted, in bytes (larger ones get 413).
    pub max_body_bytes: usize,
    /// How long an upstream may take to start answering, in seconds.
    pub upstream_timeout_secs: u64,
    /// Origins allowed besides loopback ones (`https://app.example.com`); other origins get 403.
    pub allowed_origins: Vec<String>,
    /// Host names allowed in the `Host` header; empty means loopback names only when listening on
    /// loopback, and any host otherwise.
    pub allowed_hosts: Vec<String>,
    /// How long a stdio session may stay unused before its process is stopped, in seconds.
    pub stdio_idle_timeout_secs: u64,
    /// The most stdio upstream processes running at once (new sessions beyond it get 503).
    pub max_stdio_sessions: usize,
    /// A PEM file of certificate authorities trusted for `https` upstreams besides the public ones
    /// (an organisation's own authority); a relative path is relative to the configuration file.
    pub upstream_ca_file: Option<PathBuf>,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_body_bytes: 4 * 1024 * 1024,
            upstream_timeout_secs: 120,
            allowed_origins: Vec::new(),
            allowed_hosts: Vec::new(),
            stdio_idle_timeout_secs: 30 * 60,
            max_stdio_sessions: 64,
            upstream_ca_file: None,
        }
    }
}

impl ServerSettings {
    /// The upstream timeout.
    pub fn upstream_timeout(&self) -> Duration {
        Duration::from_secs(self.upstream_timeout_secs)
    }

    /// How long a stdio session may stay unused before its process is stopped.
    pub fn stdio_idle_timeout(&self) -> Duration {
        Duration::from_secs(self.stdio_idle_timeout_secs)
    }
}

/// The control-plane database: with one, agents, workspaces and policies come from it (besides those in
/// this file) and the admin API is served.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    /// `sqlite://cerberus.db?mode=rwc` (embedded), `sqlite::memory:`, or `postgres://…`.
    pub url: String,
    /// Whether to apply missing migrations at start-up (on PostgreSQL under an advisory lock).
    #[serde(default = "yes")]
    pub migrate: bool,
    /// How long the proxy trusts a key and policy it looked up, in milliseconds; admin changes made
    /// through this instance take effect at once, others within this time.
    #[serde(default = "default_cache_ttl_ms")]
    pub cache_ttl_ms: u64,
}

fn yes() -> bool {
    true
}

fn default_cache_ttl_ms() -> u64 {
    500
}

impl DatabaseSettings {
    /// How long a looked-up key stays trusted.
    pub fn cache_ttl(&self) -> Duration {
        Duration::from_millis(self.cache_ttl_ms)
    }
}

/// Distributed mode (`[redis]`): with a `url`, rate limits, sessions and cache invalidations are
/// shared through Redis by every instance; without one, everything stays in this process's memory.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisSettings {
    /// `redis://host:6379/0` (or `rediss://` for TLS); none keeps everything in memory.
    pub url: Option<String>,
    /// Prefix of every key and channel, so that several deployments can share one Redis.
    pub key_prefix: String,
    /// What rate limits do when Redis cannot answer: `fail_closed` (the default: refuse calls),
    /// `fail_open` (admit them uncounted) or `local_fallback` (count per instance).
    pub failure_mode: cerberus_redis::FailureMode,
    /// Failures in a row after which the limiter stops asking Redis for a while.
    pub breaker_threshold: u32,
    /// How long it then stops asking, in milliseconds.
    pub breaker_cooldown_ms: u64,
    /// How long a connection may take to open, and a command to answer, in milliseconds.
    pub timeout_ms: u64,
    /// How long an unused session is kept, in seconds.
    pub session_idle_secs: u64,
}

impl Default for RedisSettings {
    fn default() -> Self {
        Self {
            url: None,
            key_prefix: "cerberus:".to_owned(),
            failure_mode: cerberus_redis::FailureMode::default(),
            breaker_threshold: 3,
            breaker_cooldown_ms: 5_000,
            timeout_ms: 500,
            session_idle_secs: 24 * 3600,
        }
    }
}

/// OpenTelemetry traces (`[telemetry]`): exported over OTLP/HTTP when an endpoint is set here or in
/// the standard `OTEL_EXPORTER_OTLP_ENDPOINT`; off otherwise.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetrySettings {
    /// The collector's OTLP/HTTP base URL (`http://collector:4318`); spans go to `/v1/traces` under it.
    pub otlp_endpoint: Option<String>,
    /// `http/protobuf` (the default) or `http/json`.
    pub otlp_protocol: OtlpProtocol,
    /// The `service.name` of the spans.
    pub service_name: String,
    /// The share of new traces recorded, 0 to 1; a trace the client started follows its decision.
    pub sample_ratio: f64,
}

impl Default for TelemetrySettings {
    fn default() -> Self {
        Self {
            otlp_endpoint: None,
            otlp_protocol: OtlpProtocol::HttpProtobuf,
            service_name: "cerberus".to_owned(),
            sample_ratio: 1.0,
        }
    }
}

/// How spans are encoded for the collector.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
pub enum OtlpProtocol {
    /// Protocol buffers, as every collector accepts.
    #[serde(rename = "http/protobuf")]
    HttpProtobuf,
    /// JSON.
    #[serde(rename = "http/json")]
    HttpJson,
}

/// The admin API's settings.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminSettings {
    /// The secret that signs access tokens (at least 32 bytes; the same on every instance). Better given
    /// as `CERBERUS_JWT_SECRET`; without either, a random one is made and tokens die with the process.
    pub jwt_secret: Option<String>,
    /// How long an access token lives, in seconds.
    pub access_token_ttl_secs: u64,
    /// How long a refresh token lives, in seconds.
    pub refresh_token_ttl_secs: u64,
    /// How long an old key keeps working after a rotation, unless the rotation says otherwise.
    pub key_rotation_grace_secs: u64,
    /// Whether admins may define stdio upstreams, which run commands on the gateway's machine.
    pub allow_stdio_upstreams: bool,
}

impl Default for AdminSettings {
    fn default() -> Self {
        Self {
            jwt_secret: None,
            access_token_ttl_secs: 15 * 60,
            refresh_token_ttl_secs: 30 * 24 * 3600,
            key_rotation_grace_secs: 0,
            allow_stdio_upstreams: false,
        }
    }
}

impl AdminSettings {
    /// The default grace period of a rotated key.
    pub fn key_rotation_grace(&self) -> Duration {
        Duration::from_secs(self.key_rotation_grace_secs)
    }
}

/// A policy given by path or inline.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
enum PolicySource {
    Path(PathBuf),
    Inline(serde_json::Value),
}

/// A workspace's MCP server reached over Streamable HTTP.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpUpstream {
    /// The Streamable HTTP endpoint, parsed once: an absolute `http` or `https` URL.
    pub url: http::Uri,
    /// Headers sent with every upstream request (an upstream credential, for example), parsed once
    /// and marked sensitive, so that they never show in debug output.
    pub headers: Vec<(http::HeaderName, http::HeaderValue)>,
}

/// A workspace's MCP server run by the gateway as a child process speaking stdio, one per session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StdioUpstream {
    /// The program (a bare name is looked up on `PATH`; a relative path is relative to the config file).
    pub command: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
    /// Environment variables set for it (the gateway's own environment is not passed on).
    pub env: BTreeMap<String, String>,
    /// Its working directory.
    pub cwd: Option<PathBuf>,
}

/// How the gateway reaches a workspace's MCP server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Upstream {
    /// Over Streamable HTTP.
    Http(HttpUpstream),
    /// As a child process over stdio.
    Stdio(StdioUpstream),
}

/// The `upstream` table as written: `url` (and `headers`) or `command` (and `args`, `env`, `cwd`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUpstream {
    url: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    command: Option<String>,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    cwd: Option<PathBuf>,
}

/// An upstream's Streamable HTTP endpoint: an absolute `http` or `https` URL with a host, and no
/// credentials in it (they go in `headers`).
fn upstream_url(url: &str) -> Result<http::Uri, String> {
    if !url.contains("://") {
        return Err("must be an http or https URL".into());
    }
    let parsed: http::Uri = url.parse().map_err(|e| format!("not a URL: {e}"))?;
    if !matches!(parsed.scheme_str(), Some("http" | "https")) {
        return Err("must be an http or https URL".into());
    }
    let Some(authority) = parsed.authority() else {
        return Err("not a URL: it names no host".into());
    };
    if authority.as_str().contains('@') {
        return Err("must not contain credentials: send them in `headers`".into());
    }
    if authority.host().is_empty() {
        return Err("not a URL: it names no host".into());
    }
    Ok(parsed)
}

impl RawUpstream {
    fn check(&self, base: &Path, path: &str) -> Result<Upstream, ConfigError> {
        match (&self.url, &self.command) {
            (Some(url), None) => {
                let parsed = upstream_url(url)
                    .map_err(|why| ConfigError::new(format!("{path}.url"), why))?;
                let mut headers = Vec::with_capacity(self.headers.len());
                for (name, value) in &self.headers {
                    let parsed = http::HeaderName::from_bytes(name.as_bytes())
                        .ok()
                        .zip(http::HeaderValue::from_str(value).ok());
                    let Some((name, mut value)) = parsed else {
                        return Err(ConfigError::new(
                            format!("{path}.headers.{name}"),
                            "not a valid HTTP header",
                        ));
                    };
                    value.set_sensitive(true);
                    headers.push((name, value));
                }
                if !self.args.is_empty() || !self.env.is_empty() || self.cwd.is_some() {
                    return Err(ConfigError::new(
                        path,
                        "`args`, `env` and `cwd` go with `command`, not `url`",
                    ));
                }
                Ok(Upstream::Http(HttpUpstream {
                    url: parsed,
                    headers,
                }))
            }
            (None, Some(command)) => {
                if command.trim().is_empty() {
                    return Err(ConfigError::new(
                        format!("{path}.command"),
                        "cannot be empty",
                    ));
                }
                if !self.headers.is_empty() {
                    return Err(ConfigError::new(
                        format!("{path}.headers"),
                        "`headers` go with `url`, not `command`",
                    ));
                }
                let command = PathBuf::from(command);
                let command = if command.components().count() > 1 && command.is_relative() {
                    base.join(command)
                } else {
                    command
                };
                Ok(Upstream::Stdio(StdioUpstream {
                    command,
                    args: self.args.clone(),
                    env: self.env.clone(),
                    cwd: self.cwd.as_ref().map(|cwd| base.join(cwd)),
                }))
            }
            (Some(_), Some(_)) => Err(ConfigError::new(
                path,
                "give either `url` or `command`, not both",
            )),
            (None, None) => Err(ConfigError::new(
                path,
                "give `url` (Streamable HTTP) or `command` (stdio)",
            )),
        }
    }
}

impl Upstream {
    /// The upstream a stored definition describes, checked as a configuration file's would be (a
    /// relative command or working directory is relative to `base`).
    pub fn from_definition(
        definition: &UpstreamDefinition,
        base: &Path,
    ) -> Result<Self, ConfigError> {
        let raw = match definition.clone() {
            UpstreamDefinition::Http { url, headers } => RawUpstream {
                url: Some(url),
                headers,
                command: None,
                args: Vec::new(),
                env: BTreeMap::new(),
                cwd: None,
            },
            UpstreamDefinition::Stdio {
                command,
                args,
                env,
                cwd,
            } => RawUpstream {
                url: None,
                headers: BTreeMap::new(),
                command: Some(command),
                args,
                env,
                cwd: cwd.map(PathBuf::from),
            },
        };
        raw.check(base, "upstream")
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    server: ServerSettings,
    #[serde(default)]
    database: Option<DatabaseSettings>,
    #[serde(default)]
    admin: AdminSettings,
    #[serde(default)]
    audit: AuditSettings,
    #[serde(default)]
    redis: RedisSettings,
    #[serde(default)]
    telemetry: TelemetrySettings,
    #[serde(default)]
    organisations: Vec<RawOrganisation>,
    #[serde(default)]
    workspaces: Vec<RawWorkspace>,
    #[serde(default)]
    agents: Vec<RawAgent>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOrganisation {
    name: String,
    policy: Option<PolicySource>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWorkspace {
    name: String,
    organisation: String,
    upstream: RawUpstream,
    policy: Option<PolicySource>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAgent {
    name: String,
    workspace: String,
    key_sha256: String,
    policy: Option<PolicySource>,
}

/// An organisation, checked.
#[derive(Clone, Debug)]
pub struct OrganisationConfig {
    /// Its id, derived from its name.
    pub id: OrganisationId,
    /// Its name.
    pub name: String,
    /// Its policy, if any.
    pub policy: Option<PolicyDocument>,
}

/// A workspace, checked.
#[derive(Clone, Debug)]
pub struct WorkspaceConfig {
    /// Its id, derived from its organisation's and its own name.
    pub id: WorkspaceId,
    /// Its name.
    pub name: String,
    /// The organisation it belongs to (an index into [`GatewayConfig::organisations`]).
    pub organisation: usize,
    /// Its MCP server.
    pub upstream: Upstream,
    /// Its policy, if any.
    pub policy: Option<PolicyDocument>,
}

/// An agent, checked.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// Who it is.
    pub identity: Identity,
    /// Its name.
    pub name: String,
    /// Its workspace (an index into [`GatewayConfig::workspaces`]).
    pub workspace: usize,
    /// The hash of its key.
    pub key_hash: KeyHash,
    /// Its policy, if any.
    pub policy: Option<PolicyDocument>,
}

/// A checked configuration: names unique, references resolved, policies valid.
#[derive(Clone, Debug, Default)]
pub struct GatewayConfig {
    /// Server settings.
    pub server: ServerSettings,
    /// The control-plane database, if any.
    pub database: Option<DatabaseSettings>,
    /// The admin API's settings.
    pub admin: AdminSettings,
    /// Where and how audit events are stored.
    pub audit: AuditSettings,
    /// Distributed mode.
    pub redis: RedisSettings,
    /// OpenTelemetry traces.
    pub telemetry: TelemetrySettings,
    /// The directory relative paths are resolved against (the configuration file's).
    pub base: PathBuf,
    /// The organisations.
    pub organisations: Vec<OrganisationConfig>,
    /// The workspaces.
    pub workspaces: Vec<WorkspaceConfig>,
    /// The agents.
    pub agents: Vec<AgentConfig>,
}

/// The prefix of environment variables that override settings: `CERBERUS_<SECTION>__<KEY>`.
pub const ENV_PREFIX: &str = "CERBERUS_";

/// The sections whose settings environment variables may override.
pub const ENV_SECTIONS: [&str; 6] = ["server", "database", "admin", "audit", "redis", "telemetry"];

/// The settings overrides among environment variables: every `CERBERUS_<SECTION>__<KEY>`, sorted by
/// name (other `CERBERUS_*` variables, such as `CERBERUS_CONFIG`, have no `__` and are left alone).
pub fn env_overrides(
    vars: impl IntoIterator<Item = (std::ffi::OsString, std::ffi::OsString)>,
) -> Result<Vec<(String, String)>, ConfigError> {
    let mut overrides = Vec::new();
    for (name, value) in vars {
        let Some(name) = name.to_str() else { continue };
        if !(name.starts_with(ENV_PREFIX) && name.contains("__")) {
            continue;
        }
        let value = value
            .into_string()
            .map_err(|_| ConfigError::new(name, "the value is not valid UTF-8"))?;
        overrides.push((name.to_owned(), value));
    }
    overrides.sort();
    Ok(overrides)
}

/// A value given in an environment variable: TOML when it reads as a TOML value (`8080`, `true`,
/// `["a", "b"]`), otherwise the text itself.
fn env_value(text: &str) -> toml::Value {
    toml::from_str::<toml::Table>(&format!("value = {text}"))
        .ok()
        .and_then(|mut table| table.remove("value"))
        .unwrap_or_else(|| toml::Value::String(text.to_owned()))
}

/// Sets the setting `name` names to `text` in `table`, checking that the result still reads.
fn apply_override(table: &mut toml::Table, name: &str, text: &str) -> Result<(), ConfigError> {
    let setting = name.get(ENV_PREFIX.len()..).unwrap_or_default();
    let Some((section, key)) = setting.split_once("__") else {
        return Err(ConfigError::new(name, "expected CERBERUS_<SECTION>__<KEY>"));
    };
    let (section, key) = (section.to_ascii_lowercase(), key.to_ascii_lowercase());
    if !ENV_SECTIONS.contains(&section.as_str()) {
        return Err(ConfigError::new(
            name,
            format!(
                "`{section}` is not a section that can be set from the environment: {}",
                ENV_SECTIONS.join(", ")
            ),
        ));
    }
    let reads = |table: &toml::Table| {
        toml::Value::Table(table.clone())
            .try_into::<RawConfig>()
            .map(drop)
            .map_err(|e| e.message().to_owned())
    };
    let set = |table: &mut toml::Table, value: toml::Value| -> Result<(), ConfigError> {
        let entry = table
            .entry(section.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        let toml::Value::Table(section_table) = entry else {
            return Err(ConfigError::new(
                name,
                format!("`{section}` in the file is not a table"),
            ));
        };
        section_table.insert(key.clone(), value);
        Ok(())
    };
    set(table, env_value(text))?;
    let Err(typed) = reads(table) else {
        return Ok(());
    };
    // A value that reads as a number or a boolean may be meant as text (a secret, a name).
    set(table, toml::Value::String(text.to_owned()))?;
    reads(table).map_err(|_| ConfigError::new(name, typed))
}

impl GatewayConfig {
    /// Reads and checks a configuration file, with the overrides of this process's environment
    /// (see [`env_overrides`]).
    pub fn load(path: &Path, registry: &GuardrailRegistry) -> Result<Self, ConfigError> {
        let overrides = env_overrides(std::env::vars_os())?;
        Self::load_with_overrides(path, registry, &overrides)
    }

    /// Reads and checks a configuration file, then applies `overrides` (environment variable name,
    /// value); an error names the file's field or the variable.
    pub fn load_with_overrides(
        path: &Path,
        registry: &GuardrailRegistry,
        overrides: &[(String, String)],
    ) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::new(path.display().to_string(), format!("cannot read: {e}"))
        })?;
        let base = path.parent().unwrap_or_else(|| Path::new("."));
        Self::parse_with_overrides(&text, base, registry, overrides).map_err(|e| {
            if e.path.starts_with(ENV_PREFIX) {
                e
            } else {
                ConfigError::new(format!("{}: {}", path.display(), e.path), e.message)
            }
        })
    }

    /// Checks a configuration given as TOML text; policy paths are relative to `base`.
    pub fn parse(
        text: &str,
        base: &Path,
        registry: &GuardrailRegistry,
    ) -> Result<Self, ConfigError> {
        Self::parse_with_overrides(text, base, registry, &[])
    }

    /// Checks a configuration given as TOML text with `overrides` applied.
    pub fn parse_with_overrides(
        text: &str,
        base: &Path,
        registry: &GuardrailRegistry,
        overrides: &[(String, String)],
    ) -> Result<Self, ConfigError> {
        // The file alone first, so that its errors point into it.
        let mut raw: RawConfig = toml::from_str(text).map_err(|e| {
            let span = e
                .span()
                .map(|s| format!(" (bytes {}..{})", s.start, s.end))
                .unwrap_or_default();
            ConfigError::new("config", format!("{}{span}", e.message()))
        })?;
        if !overrides.is_empty() {
            let mut table: toml::Table = toml::from_str(text)
                .map_err(|e| ConfigError::new("config", e.message().to_owned()))?;
            for (name, value) in overrides {
                apply_override(&mut table, name, value)?;
            }
            raw = toml::Value::Table(table)
                .try_into()
                .map_err(|e: toml::de::Error| ConfigError::new("environment", e.message()))?;
        }
        let policy = |source: &Option<PolicySource>,
                      path: String|
         -> Result<Option<PolicyDocument>, ConfigError> {
            let Some(source) = source else {
                return Ok(None);
            };
            let document = match source {
                PolicySource::Path(file) => {
                    let file = base.join(file);
                    let text = std::fs::read_to_string(&file).map_err(|e| {
                        ConfigError::new(&path, format!("cannot read {}: {e}", file.display()))
                    })?;
                    PolicyDocument::parse(&text, PolicyFormat::from_path(&file))
                }
                PolicySource::Inline(value) => PolicyDocument::from_value(value.clone()),
            }
            .map_err(|e| ConfigError::new(format!("{path}.{}", e.path), e.message))?;
            registry
                .validate(&document)
                .map_err(|e| ConfigError::new(format!("{path}.{}", e.path), e.message))?;
            Ok(Some(document))
        };

        let mut organisations = Vec::with_capacity(raw.organisations.len());
        for (i, org) in raw.organisations.iter().enumerate() {
            let path = format!("organisations[{i}]");
            unique(
                &organisations
                    .iter()
                    .map(|o: &OrganisationConfig| o.name.as_str())
                    .collect::<Vec<_>>(),
                &org.name,
                &path,
            )?;
            organisations.push(OrganisationConfig {
                id: OrganisationId(Uuid::new_v5(
                    &ID_NAMESPACE,
                    format!("organisation:{}", org.name).as_bytes(),
                )),
                name: org.name.clone(),
                policy: policy(&org.policy, format!("{path}.policy"))?,
            });
        }

        let mut workspaces: Vec<WorkspaceConfig> = Vec::with_capacity(raw.workspaces.len());
        for (i, ws) in raw.workspaces.iter().enumerate() {
            let path = format!("workspaces[{i}]");
            let organisation = organisations
                .iter()
                .position(|o| o.name == ws.organisation)
                .ok_or_else(|| {
                    ConfigError::new(
                        format!("{path}.organisation"),
                        format!("no organisation named `{}`", ws.organisation),
                    )
                })?;
            if workspaces
                .iter()
                .any(|w| w.organisation == organisation && w.name == ws.name)
            {
                return Err(ConfigError::new(
                    format!("{path}.name"),
                    format!("`{}` is used twice in this organisation", ws.name),
                ));
            }
            let upstream = ws.upstream.check(base, &format!("{path}.upstream"))?;
            let org_name = organisations
                .get(organisation)
                .map_or("", |o| o.name.as_str());
            workspaces.push(WorkspaceConfig {
                id: WorkspaceId(Uuid::new_v5(
                    &ID_NAMESPACE,
                    format!("workspace:{org_name}/{}", ws.name).as_bytes(),
                )),
                name: ws.name.clone(),
                organisation,
                upstream,
                policy: policy(&ws.policy, format!("{path}.policy"))?,
            });
        }

        let mut agents: Vec<AgentConfig> = Vec::with_capacity(raw.agents.len());
        let mut hashes = HashSet::new();
        for (i, agent) in raw.agents.iter().enumerate() {
            let path = format!("agents[{i}]");
            let workspace = workspaces
                .iter()
                .position(|w| w.name == agent.workspace)
                .ok_or_else(|| {
                    ConfigError::new(
                        format!("{path}.workspace"),
                        format!("no workspace named `{}`", agent.workspace),
                    )
                })?;
            let ws = workspaces
                .get(workspace)
                .ok_or_else(|| ConfigError::new(&path, "workspace vanished"))?;
            if agents
                .iter()
                .any(|a| a.workspace == workspace && a.name == agent.name)
            {
                return Err(ConfigError::new(
                    format!("{path}.name"),
                    format!("`{}` is used twice in this workspace", agent.name),
                ));
            }
            let key_hash = KeyHash::from_hex(&agent.key_sha256)
                .map_err(|e| ConfigError::new(format!("{path}.key_sha256"), e))?;
            if !hashes.insert(key_hash) {
                return Err(ConfigError::new(
                    format!("{path}.key_sha256"),
                    "another agent has the same key",
                ));
            }
            let organisation = organisations
                .get(ws.organisation)
                .map_or(OrganisationId(Uuid::nil()), |o| o.id);
            agents.push(AgentConfig {
                identity: Identity {
                    organisation,
                    workspace: ws.id,
                    agent: AgentId(Uuid::new_v5(
                        &ID_NAMESPACE,
                        format!("agent:{}/{}", ws.id, agent.name).as_bytes(),
                    )),
                },
                name: agent.name.clone(),
                workspace,
                key_hash,
                policy: policy(&agent.policy, format!("{path}.policy"))?,
            });
        }

        if !(0.0..=1.0).contains(&raw.telemetry.sample_ratio) {
            return Err(ConfigError::new(
                "telemetry.sample_ratio",
                "must be between 0 and 1",
            ));
        }

        let mut server = raw.server;
        if let Some(ca_file) = server.upstream_ca_file.as_mut() {
            *ca_file = base.join(&*ca_file);
        }

        Ok(Self {
            server,
            database: raw.database,
            admin: raw.admin,
            audit: raw.audit,
            redis: raw.redis,
            telemetry: raw.telemetry,
            base: base.to_path_buf(),
            organisations,
            workspaces,
            agents,
        })
    }
}

fn unique(existing: &[&str], name: &str, path: &str) -> Result<(), ConfigError> {
    if name.trim().is_empty() {
        return Err(ConfigError::new(format!("{path}.name"), "cannot be empty"));
    }
    if existing.contains(&name) {
        return Err(ConfigError::new(
            format!("{path}.name"),
            format!("`{name}` is used twice"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<GatewayConfig, String> {
        GatewayConfig::parse(text, Path::new("."), &GuardrailRegistry::default())
            .map_err(|e| e.to_string())
    }

    const HASH: &str = "0000000000000000000000000000000000000000000000000000000000000001";

    fn minimal(agent_extra: &str) -> String {
        format!(
            "[[organisations]]\nname = \"acme\"\n\n[[workspaces]]\nname = \"crm\"\norganisation = \"acme\"\nupstream = {{ url = \"http://127.0.0.1:1/mcp\" }}\n\n[[agents]]\nname = \"bot\"\nworkspace = \"crm\"\nkey_sha256 = \"{HASH}\"\n{agent_extra}"
        )
    }

    #[test]
    fn reads_a_minimal_config_with_stable_ids() {
        let a = parse(&minimal("")).unwrap();
        let b = parse(&minimal("")).unwrap();
        assert_eq!(
            a.agents[0].identity, b.agents[0].identity,
            "ids derive from names"
        );
        assert_eq!(a.server.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(a.agents[0].identity.organisation, a.organisations[0].id);
    }

    #[test]
    fn http_upstream_headers_are_parsed_once_and_never_shown() {
        let text = minimal("").replace(
            "{ url = \"http://127.0.0.1:1/mcp\" }",
            "{ url = \"https://mcp.example.com/v1/mcp?x=1\", headers = { Authorization = \"Bearer up-secret\" } }",
        );
        let config = parse(&text).unwrap();
        let Upstream::Http(http) = &config.workspaces[0].upstream else {
            panic!("an HTTP upstream");
        };
        assert_eq!(http.url.scheme_str(), Some("https"));
        assert_eq!(http.url.host(), Some("mcp.example.com"));
        assert_eq!(http.headers.len(), 1);
        let (name, value) = &http.headers[0];
        assert_eq!(name, "authorization");
        assert!(value.is_sensitive());
        assert!(!format!("{config:?}").contains("up-secret"));
    }

    #[test]
    fn the_upstream_authority_file_is_relative_to_the_config() {
        for (setting, expected) in [
            ("ca/internal.pem", "/etc/cerberus/ca/internal.pem"),
            ("/srv/pki/root.pem", "/srv/pki/root.pem"),
        ] {
            let text = format!(
                "[server]\nupstream_ca_file = \"{setting}\"\n{}",
                minimal("")
            );
            let config = GatewayConfig::parse(
                &text,
                Path::new("/etc/cerberus"),
                &GuardrailRegistry::default(),
            )
            .unwrap();
            assert_eq!(
                config.server.upstream_ca_file.as_deref(),
                Some(Path::new(expected))
            );
        }
        let config = parse(&minimal("")).unwrap();
        assert_eq!(config.server.upstream_ca_file, None);
    }

    #[test]
    fn reads_stdio_upstreams_relative_to_the_config() {
        let text = minimal("").replace(
            "{ url = \"http://127.0.0.1:1/mcp\" }",
            "{ command = \"bin/server\", args = [\"--stdio\"], env = { LOG = \"1\" } }",
        );
        let config = GatewayConfig::parse(
            &text,
            Path::new("/etc/cerberus"),
            &GuardrailRegistry::default(),
        )
        .unwrap();
        let Upstream::Stdio(stdio) = &config.workspaces[0].upstream else {
            panic!()
        };
        assert_eq!(stdio.command, Path::new("/etc/cerberus/bin/server"));
        assert_eq!(stdio.args, ["--stdio"]);
        let bare = minimal("").replace(
            "{ url = \"http://127.0.0.1:1/mcp\" }",
            "{ command = \"npx\" }",
        );
        let config = GatewayConfig::parse(
            &bare,
            Path::new("/etc/cerberus"),
            &GuardrailRegistry::default(),
        )
        .unwrap();
        let Upstream::Stdio(stdio) = &config.workspaces[0].upstream else {
            panic!()
        };
        assert_eq!(
            stdio.command,
            Path::new("npx"),
            "bare names are looked up on PATH"
        );
    }

    #[test]
    fn reads_inline_policies() {
        let config = parse(&minimal(
            "policy = { guardrails = [{ type = \"rate_limit_per_minute\", limit = 5 }] }",
        ))
        .unwrap();
        assert_eq!(
            config.agents[0].policy.as_ref().unwrap().guardrails[0].type_name,
            "rate_limit_per_minute"
        );
    }

    #[test]
    fn names_the_field_that_is_wrong() {
        let cases = [
            (
                minimal("policy = { guardrails = [{ type = \"nope\" }] }"),
                "agents[0].policy.guardrails[0].type: unknown guardrail type",
            ),
            (minimal("colour = \"red\""), "unknown field `colour`"),
            (
                minimal("").replace(HASH, "abc"),
                "agents[0].key_sha256: not hexadecimal",
            ),
            (
                minimal("").replace("workspace = \"crm\"", "workspace = \"other\""),
                "agents[0].workspace: no workspace named `other`",
            ),
            (
                minimal("").replace("http://127.0.0.1:1/mcp", "ftp://x"),
                "workspaces[0].upstream.url: must be an http or https URL",
            ),
            (
                minimal("").replace("http://127.0.0.1:1/mcp", "127.0.0.1:1/mcp"),
                "workspaces[0].upstream.url: must be an http or https URL",
            ),
            (
                minimal("").replace(
                    "http://127.0.0.1:1/mcp",
                    "http://user:secret@127.0.0.1:1/mcp",
                ),
                "workspaces[0].upstream.url: must not contain credentials",
            ),
            (
                minimal("").replace("http://127.0.0.1:1/mcp", "http://exa mple/mcp"),
                "workspaces[0].upstream.url: not a URL",
            ),
            (
                minimal("").replace("organisation = \"acme\"", "organisation = \"zeta\""),
                "workspaces[0].organisation: no organisation named `zeta`",
            ),
            (
                minimal("policy = \"missing.json\""),
                "agents[0].policy: cannot read",
            ),
            (
                format!(
                    "{}\n[[agents]]\nname = \"bot2\"\nworkspace = \"crm\"\nkey_sha256 = \"{HASH}\"\n",
                    minimal("")
                ),
                "agents[1].key_sha256: another agent has the same key",
            ),
            (
                "[server]\nlisten = \"nowhere\"".to_owned(),
                "config: invalid socket address",
            ),
        ];
        for (text, expected) in cases {
            let err = parse(&text).unwrap_err();
            assert!(err.contains(expected), "expected {expected:?} in {err:?}");
        }
    }

    fn with_env(text: &str, vars: &[(&str, &str)]) -> Result<GatewayConfig, String> {
        let overrides = env_overrides(
            vars.iter()
                .map(|(name, value)| ((*name).into(), (*value).into())),
        )
        .map_err(|e| e.to_string())?;
        GatewayConfig::parse_with_overrides(
            text,
            Path::new("."),
            &GuardrailRegistry::default(),
            &overrides,
        )
        .map_err(|e| e.to_string())
    }

    #[test]
    fn environment_variables_override_the_file() {
        let text = format!(
            "[server]\nlisten = \"127.0.0.1:1000\"\nmax_body_bytes = 10\n\n{}",
            minimal("")
        );
        let config = with_env(
            &text,
            &[
                ("CERBERUS_SERVER__LISTEN", "127.0.0.1:2000"),
                (
                    "CERBERUS_SERVER__ALLOWED_ORIGINS",
                    r#"["https://app.example.com"]"#,
                ),
                ("CERBERUS_DATABASE__URL", "sqlite::memory:"),
                ("CERBERUS_REDIS__FAILURE_MODE", "fail_open"),
                ("CERBERUS_AUDIT__LINGER_MS", "25"),
                (
                    "CERBERUS_ADMIN__JWT_SECRET",
                    "12345678901234567890123456789012345",
                ),
                ("CERBERUS_CONFIG", "ignored: not a setting"),
                ("HOME", "/root"),
            ],
        )
        .unwrap();
        assert_eq!(config.server.listen.to_string(), "127.0.0.1:2000");
        assert_eq!(
            config.server.max_body_bytes, 10,
            "what is not overridden stays"
        );
        assert_eq!(config.server.allowed_origins, ["https://app.example.com"]);
        assert_eq!(config.database.unwrap().url, "sqlite::memory:");
        assert_eq!(
            config.redis.failure_mode,
            cerberus_redis::FailureMode::FailOpen
        );
        assert_eq!(config.audit.linger_ms, 25);
        assert_eq!(
            config.admin.jwt_secret.as_deref(),
            Some("12345678901234567890123456789012345"),
            "digits meant as text stay text"
        );
        assert_eq!(config.agents.len(), 1);
    }

    #[test]
    fn a_bad_environment_variable_is_named() {
        let cases = [
            (
                "CERBERUS_SERVER__MAX_BODY_BYTES",
                "lots",
                "CERBERUS_SERVER__MAX_BODY_BYTES: invalid type",
            ),
            (
                "CERBERUS_SERVER__COLOUR",
                "red",
                "CERBERUS_SERVER__COLOUR: unknown field `colour`",
            ),
            (
                "CERBERUS_AGENTS__NAME",
                "x",
                "CERBERUS_AGENTS__NAME: `agents` is not a section",
            ),
            (
                "CERBERUS_REDIS__FAILURE_MODE",
                "sometimes",
                "CERBERUS_REDIS__FAILURE_MODE: unknown variant `sometimes`",
            ),
            (
                "CERBERUS_SERVER__LISTEN",
                "nowhere",
                "CERBERUS_SERVER__LISTEN: invalid socket address",
            ),
        ];
        for (name, value, expected) in cases {
            let err = with_env(&minimal(""), &[(name, value)]).unwrap_err();
            assert!(err.contains(expected), "expected {expected:?} in {err:?}");
        }
    }

    #[test]
    fn the_help_lists_every_setting() {
        let sections = [
            (
                "server",
                serde_json::to_value(ServerSettings::default()).unwrap(),
            ),
            (
                "admin",
                serde_json::to_value(AdminSettings::default()).unwrap(),
            ),
            (
                "audit",
                serde_json::to_value(AuditSettings::default()).unwrap(),
            ),
            (
                "redis",
                serde_json::to_value(RedisSettings::default()).unwrap(),
            ),
            (
                "telemetry",
                serde_json::to_value(TelemetrySettings::default()).unwrap(),
            ),
            (
                "database",
                serde_json::to_value(DatabaseSettings {
                    url: String::new(),
                    migrate: true,
                    cache_ttl_ms: 0,
                })
                .unwrap(),
            ),
        ];
        let mut count = 0;
        for (section, settings) in sections {
            assert!(ENV_SECTIONS.contains(&section));
            for key in settings.as_object().unwrap().keys() {
                let variable = format!("CERBERUS_{}__{}", section, key).to_uppercase();
                assert!(
                    crate::cli::SETTINGS_HELP.contains(&format!("  {variable} ")),
                    "{variable} is not in `cerberus serve --help`"
                );
                count += 1;
            }
        }
        assert_eq!(
            crate::cli::SETTINGS_HELP.matches("\n  CERBERUS_").count(),
            count,
            "the help lists no setting that does not exist"
        );
    }
}
