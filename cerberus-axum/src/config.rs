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
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cerberus_core::store::UpstreamDefinition;
use cerberus_core::{
    AgentId, CallerProfile, EffectivePolicy, GuardrailRegistry, Identity, OrganisationId,
    PolicyDocument, PolicyFormat, PolicyLevel, Profile, WorkspaceId,
};
use serde::Deserialize;
use uuid::Uuid;

use crate::audit::AuditSettings;
use crate::auth::KeyHash;
#[cfg(feature = "redis")]
use crate::distributed::RedisSettings;
use crate::gateway::{AgentRoute, Routes, ServerSettings};
use crate::telemetry::TelemetrySettings;
use crate::upstream::Upstream;
#[cfg(feature = "control-plane")]
use crate::{admin::AdminSettings, control_plane::DatabaseSettings};

/// The namespace of the ids derived from names, so that every instance reading one file agrees on them.
const ID_NAMESPACE: Uuid = Uuid::from_u128(0x6365_7262_6572_7573_2d69_6473_2d76_3100);

/// A configuration that cannot be used, with the field named.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
#[non_exhaustive]
pub struct ConfigError {
    /// Where: the file, then the field.
    pub path: String,
    /// What is wrong.
    pub message: String,
    /// What failed underneath, when something did (a file that cannot be read).
    #[source]
    pub source: Option<std::io::Error>,
}

impl ConfigError {
    pub(crate) fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            source: None,
            path: path.into(),
            message: message.into(),
        }
    }
}

/// A policy given by path or inline.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
enum PolicySource {
    Path(PathBuf),
    Inline(serde_json::Value),
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

impl RawUpstream {
    /// The upstream, checked as the admin API checks one (`Upstream::from_definition`), after the
    /// combinations only a file can write (`url` with `args`, both or neither) are refused.
    fn check(&self, base: &Path, path: &str) -> Result<Upstream, ConfigError> {
        let definition = match (&self.url, &self.command) {
            (Some(url), None) => {
                if !self.args.is_empty() || !self.env.is_empty() || self.cwd.is_some() {
                    return Err(ConfigError::new(
                        path,
                        "`args`, `env` and `cwd` go with `command`, not `url`",
                    ));
                }
                UpstreamDefinition::Http {
                    url: url.clone(),
                    headers: self.headers.clone(),
                }
            }
            (None, Some(command)) => {
                if !self.headers.is_empty() {
                    return Err(ConfigError::new(
                        format!("{path}.headers"),
                        "`headers` go with `url`, not `command`",
                    ));
                }
                UpstreamDefinition::Stdio {
                    command: command.clone(),
                    args: self.args.clone(),
                    env: self.env.clone(),
                    cwd: self
                        .cwd
                        .as_ref()
                        .map(|cwd| cwd.to_string_lossy().into_owned()),
                }
            }
            (Some(_), Some(_)) => {
                return Err(ConfigError::new(
                    path,
                    "give either `url` or `command`, not both",
                ));
            }
            (None, None) => {
                return Err(ConfigError::new(
                    path,
                    "give `url` (Streamable HTTP) or `command` (stdio)",
                ));
            }
        };
        Upstream::from_definition(&definition, base)
            .map(Upstream::set_by_operator)
            .map_err(|e| ConfigError::new(format!("{path}.{}", e.field), e.message))
    }
}

/// `labels` as given at `path`, checked as the admin API checks them.
fn checked_labels(
    labels: &BTreeMap<String, String>,
    path: &str,
) -> Result<BTreeMap<String, String>, ConfigError> {
    cerberus_core::check_labels(labels).map_err(|(key, message)| {
        let at = if key.is_empty() {
            format!("{path}.labels")
        } else {
            format!("{path}.labels.{key}")
        };
        ConfigError::new(at, message)
    })?;
    Ok(labels.clone())
}

/// A section this build leaves out, kept as written: a file that has one is refused with the cargo
/// feature it needs named, rather than as an unknown field.
#[cfg(not(all(feature = "control-plane", feature = "redis", feature = "oauth")))]
type Unsupported = Option<toml::Value>;

/// Refuses a `section` this build leaves out: it needs `feature`.
#[cfg(not(all(feature = "control-plane", feature = "redis", feature = "oauth")))]
fn unsupported(section: &str, value: &Unsupported, feature: &str) -> Result<(), ConfigError> {
    match value {
        None => Ok(()),
        Some(_) => Err(ConfigError::new(
            section,
            format!("this build of cerberus has no `[{section}]` (cargo feature `{feature}`)"),
        )),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    server: ServerSettings,
    #[cfg(feature = "control-plane")]
    #[serde(default)]
    database: Option<DatabaseSettings>,
    #[cfg(feature = "control-plane")]
    #[serde(default)]
    admin: AdminSettings,
    #[cfg(not(feature = "control-plane"))]
    #[serde(default)]
    database: Unsupported,
    #[cfg(not(feature = "control-plane"))]
    #[serde(default)]
    admin: Unsupported,
    #[serde(default)]
    audit: AuditSettings,
    #[cfg(feature = "redis")]
    #[serde(default)]
    redis: RedisSettings,
    #[cfg(not(feature = "redis"))]
    #[serde(default)]
    redis: Unsupported,
    #[serde(default)]
    telemetry: TelemetrySettings,
    #[serde(default)]
    organisations: Vec<RawOrganisation>,
    #[serde(default)]
    workspaces: Vec<RawWorkspace>,
    #[serde(default)]
    agents: Vec<RawAgent>,
    #[cfg(feature = "oauth")]
    #[serde(default)]
    oauth: crate::oauth::OAuthSettings,
    #[cfg(feature = "oauth")]
    #[serde(default)]
    identity_providers: Vec<RawIdentityProvider>,
    #[cfg(not(feature = "oauth"))]
    #[serde(default)]
    oauth: Unsupported,
    #[cfg(not(feature = "oauth"))]
    #[serde(default)]
    identity_providers: Unsupported,
}

#[cfg(feature = "oauth")]
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIdentityProvider {
    name: String,
    organisation: String,
    issuer: String,
    jwks_uri: Option<String>,
    workspaces: Vec<String>,
    #[serde(default)]
    required_scopes: Vec<String>,
    #[serde(default)]
    allowed_groups: Vec<String>,
    algorithms: Option<Vec<jsonwebtoken::Algorithm>>,
    #[serde(default)]
    claims: crate::oauth::ClaimNames,
    policy: Option<PolicySource>,
    #[serde(default)]
    group_policies: Vec<RawGroupPolicy>,
    #[serde(default)]
    people: Vec<RawPerson>,
}

#[cfg(feature = "oauth")]
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPerson {
    subject: String,
    policy: PolicySource,
}

#[cfg(feature = "oauth")]
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGroupPolicy {
    group: String,
    policy: PolicySource,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOrganisation {
    name: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    policy: Option<PolicySource>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWorkspace {
    name: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    organisation: String,
    upstream: RawUpstream,
    policy: Option<PolicySource>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAgent {
    name: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
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
    /// Its labels, for rules (`organisation.labels`).
    pub labels: BTreeMap<String, String>,
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
    /// Its labels, for rules (`workspace.labels`).
    pub labels: BTreeMap<String, String>,
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
    /// Its labels, for rules (`agent.labels`).
    pub labels: BTreeMap<String, String>,
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
    #[cfg(feature = "control-plane")]
    pub database: Option<DatabaseSettings>,
    /// The admin API's settings.
    #[cfg(feature = "control-plane")]
    pub admin: AdminSettings,
    /// Where and how audit events are stored.
    pub audit: AuditSettings,
    /// Distributed mode.
    #[cfg(feature = "redis")]
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
    /// OAuth settings.
    #[cfg(feature = "oauth")]
    pub oauth: crate::oauth::OAuthSettings,
    /// The identity providers organisations trust for their people's access tokens.
    #[cfg(feature = "oauth")]
    pub identity_providers: Vec<crate::oauth::IdentityProvider>,
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
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            message: format!("cannot read: {e}"),
            source: Some(e),
            path: path.display().to_string(),
        })?;
        let base = path.parent().unwrap_or_else(|| Path::new("."));
        Self::parse_with_overrides(&text, base, registry, overrides).map_err(|e| {
            if e.path.starts_with(ENV_PREFIX) {
                e
            } else {
                ConfigError {
                    path: format!("{}: {}", path.display(), e.path),
                    ..e
                }
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
                    let text = std::fs::read_to_string(&file).map_err(|e| ConfigError {
                        message: format!("cannot read {}: {e}", file.display()),
                        source: Some(e),
                        path: path.clone(),
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
                labels: checked_labels(&org.labels, &path)?,
                policy: policy(&org.policy, format!("{path}.policy"))?,
            });
        }

        let mut workspaces: Vec<WorkspaceConfig> = Vec::with_capacity(raw.workspaces.len());
        for (i, ws) in raw.workspaces.iter().enumerate() {
            let path = format!("workspaces[{i}]");
            let organisation = organisation_named(&organisations, &ws.organisation, &path)?;
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
                labels: checked_labels(&ws.labels, &path)?,
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
                .map_err(|e| ConfigError::new(format!("{path}.key_sha256"), e.to_string()))?;
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
                labels: checked_labels(&agent.labels, &path)?,
                workspace,
                key_hash,
                policy: policy(&agent.policy, format!("{path}.policy"))?,
            });
        }

        #[cfg(feature = "oauth")]
        let identity_providers = {
            let mut providers = Vec::with_capacity(raw.identity_providers.len());
            for (i, provider) in raw.identity_providers.iter().enumerate() {
                let path = format!("identity_providers[{i}]");
                providers.push(identity_provider(
                    provider,
                    &path,
                    &organisations,
                    &workspaces,
                    &policy,
                )?);
            }
            providers
        };
        #[cfg(not(feature = "oauth"))]
        {
            unsupported("oauth", &raw.oauth, "oauth")?;
            unsupported("identity_providers", &raw.identity_providers, "oauth")?;
        }
        #[cfg(not(feature = "control-plane"))]
        {
            unsupported("database", &raw.database, "control-plane")?;
            unsupported("admin", &raw.admin, "control-plane")?;
        }
        #[cfg(not(feature = "redis"))]
        unsupported("redis", &raw.redis, "redis")?;
        #[cfg(feature = "control-plane")]
        raw.admin.check()?;
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
            #[cfg(feature = "control-plane")]
            database: raw.database,
            #[cfg(feature = "control-plane")]
            admin: raw.admin,
            audit: raw.audit,
            #[cfg(feature = "redis")]
            redis: raw.redis,
            telemetry: raw.telemetry,
            base: base.to_path_buf(),
            organisations,
            workspaces,
            agents,
            #[cfg(feature = "oauth")]
            oauth: raw.oauth,
            #[cfg(feature = "oauth")]
            identity_providers,
        })
    }
}

/// Reads and validates a policy given at a path of the file.
#[cfg(feature = "oauth")]
type ReadPolicy<'a> =
    dyn Fn(&Option<PolicySource>, String) -> Result<Option<PolicyDocument>, ConfigError> + 'a;

/// An identity provider of the file, checked: its organisation and workspaces exist, its policies
/// read and validate.
#[cfg(feature = "oauth")]
fn identity_provider(
    raw: &RawIdentityProvider,
    path: &str,
    organisations: &[OrganisationConfig],
    workspaces: &[WorkspaceConfig],
    policy: &ReadPolicy<'_>,
) -> Result<crate::oauth::IdentityProvider, ConfigError> {
    if raw.name.trim().is_empty() {
        return Err(ConfigError::new(format!("{path}.name"), "cannot be empty"));
    }
    let organisation = organisation_named(organisations, &raw.organisation, path)?;
    let in_organisation = || workspaces.iter().filter(|w| w.organisation == organisation);
    let mut reached = Vec::new();
    for name in &raw.workspaces {
        if name == "*" {
            reached.extend(in_organisation().map(|w| w.id));
            continue;
        }
        let workspace = in_organisation().find(|w| &w.name == name).ok_or_else(|| {
            ConfigError::new(
                format!("{path}.workspaces"),
                format!("no workspace named `{name}` in `{}`", raw.organisation),
            )
        })?;
        reached.push(workspace.id);
    }
    reached.sort_unstable();
    reached.dedup();
    if reached.is_empty() {
        return Err(ConfigError::new(
            format!("{path}.workspaces"),
            "name at least one workspace (or \"*\" for all of the organisation's)",
        ));
    }
    let mut group_policies = Vec::with_capacity(raw.group_policies.len());
    for (i, group) in raw.group_policies.iter().enumerate() {
        let at = format!("{path}.group_policies[{i}].policy");
        let document = policy(&Some(group.policy.clone()), at.clone())?
            .ok_or_else(|| ConfigError::new(&at, "missing"))?;
        group_policies.push((group.group.clone(), document));
    }
    let mut person_policies: Vec<(String, PolicyDocument)> = Vec::with_capacity(raw.people.len());
    for (i, person) in raw.people.iter().enumerate() {
        let at = format!("{path}.people[{i}]");
        if person.subject.is_empty() || person_policies.iter().any(|(s, _)| *s == person.subject) {
            return Err(ConfigError::new(
                format!("{at}.subject"),
                "must be given, and once per identity provider",
            ));
        }
        let document = policy(&Some(person.policy.clone()), format!("{at}.policy"))?
            .ok_or_else(|| ConfigError::new(&at, "missing"))?;
        person_policies.push((person.subject.clone(), document));
    }
    Ok(crate::oauth::IdentityProvider {
        name: raw.name.clone(),
        organisation: organisations
            .get(organisation)
            .map_or(OrganisationId(Uuid::nil()), |o| o.id),
        issuer: raw.issuer.clone(),
        jwks_uri: raw.jwks_uri.clone(),
        workspaces: reached,
        required_scopes: raw.required_scopes.clone(),
        allowed_groups: raw.allowed_groups.clone(),
        algorithms: raw
            .algorithms
            .clone()
            .unwrap_or_else(|| crate::oauth::DEFAULT_ALGORITHMS.to_vec()),
        claims: raw.claims.clone(),
        policy: policy(&raw.policy, format!("{path}.policy"))?,
        group_policies,
        person_policies,
    })
}

#[cfg(feature = "oauth")]
impl GatewayConfig {
    /// The resource server of the file's identity providers, fetching their keys through `http` and
    /// building people's pipelines with `registry`; `None` without identity providers and without
    /// `oauth.public_url` (which identity providers set through the admin API need).
    pub fn resource_server(
        &self,
        http: Arc<crate::upstream_client::UpstreamClient>,
        registry: Arc<GuardrailRegistry>,
    ) -> Result<Option<crate::oauth::ResourceServer>, ConfigError> {
        if self.identity_providers.is_empty() && self.oauth.public_url.is_none() {
            return Ok(None);
        }
        let workspaces = self
            .workspaces
            .iter()
            .filter_map(|workspace| {
                let organisation = self.organisations.get(workspace.organisation)?;
                Some(crate::oauth::ProtectedWorkspace {
                    organisation: organisation.id,
                    workspace: workspace.id,
                    upstream: workspace.upstream.clone(),
                    profile: profile_of(organisation, workspace),
                    organisation_policy: organisation.policy.clone(),
                    workspace_policy: workspace.policy.clone(),
                })
            })
            .collect();
        crate::oauth::ResourceServer::new(
            &self.oauth,
            self.identity_providers.clone(),
            workspaces,
            http,
            registry,
        )
        .map(Some)
        .map_err(|e| ConfigError::new(e.path, e.message))
    }
}

impl GatewayConfig {
    /// The agents of this file by key, each with its upstream and its pipeline, built with
    /// `registry` from its organisation's, workspace's and own policies.
    pub fn routes(&self, registry: &GuardrailRegistry) -> Result<Routes, ConfigError> {
        let mut routes = Routes::default();
        for (i, agent) in self.agents.iter().enumerate() {
            // Parsing resolves every reference; a configuration built otherwise with a dangling one
            // must not serve the agent without its organisation's policy.
            let dangling = || {
                ConfigError::new(
                    format!("agents[{i}]"),
                    "refers to no workspace or organisation",
                )
            };
            let workspace = self.workspaces.get(agent.workspace).ok_or_else(dangling)?;
            let organisation = self
                .organisations
                .get(workspace.organisation)
                .ok_or_else(dangling)?;
            let levels = [
                (PolicyLevel::Organisation, organisation.policy.as_ref()),
                (PolicyLevel::Workspace, workspace.policy.as_ref()),
                (PolicyLevel::Agent, agent.policy.as_ref()),
            ];
            let policy = EffectivePolicy::merge(
                levels
                    .into_iter()
                    .filter_map(|(level, doc)| Some((level, doc?))),
            );
            let pipeline = registry.build(&policy).map_err(|e| {
                let e = e.within(&format!("agents[{i}].effective_policy"));
                ConfigError::new(e.path, e.message)
            })?;
            let profile = CallerProfile {
                agent: Profile {
                    name: agent.name.clone(),
                    labels: agent.labels.clone(),
                    ..Default::default()
                },
                ..profile_of(organisation, workspace)
            };
            routes.insert(
                agent.key_hash,
                Arc::new(
                    AgentRoute::new(
                        agent.identity,
                        agent.name.clone(),
                        workspace.upstream.clone(),
                        pipeline,
                    )
                    .with_profile(profile),
                ),
            );
        }
        Ok(routes)
    }

    /// Every workspace's upstream, named `organisation/workspace`: what readiness checks probe.
    pub fn upstreams(&self) -> Vec<(String, Upstream)> {
        self.workspaces
            .iter()
            .map(|workspace| {
                let organisation = self
                    .organisations
                    .get(workspace.organisation)
                    .map_or("", |o| o.name.as_str());
                (
                    format!("{organisation}/{}", workspace.name),
                    workspace.upstream.clone(),
                )
            })
            .collect()
    }
}

/// The names and labels of `organisation` and its `workspace`, for a caller of the workspace (whose
/// own profile the caller fills in).
fn profile_of(organisation: &OrganisationConfig, workspace: &WorkspaceConfig) -> CallerProfile {
    CallerProfile {
        organisation: Profile {
            name: organisation.name.clone(),
            labels: organisation.labels.clone(),
            ..Default::default()
        },
        workspace: Profile {
            name: workspace.name.clone(),
            labels: workspace.labels.clone(),
            ..Default::default()
        },
        agent: Profile::default(),
    }
}

/// The index of the organisation `name` that the entry at `path` refers to.
fn organisation_named(
    organisations: &[OrganisationConfig],
    name: &str,
    path: &str,
) -> Result<usize, ConfigError> {
    organisations
        .iter()
        .position(|o| o.name == name)
        .ok_or_else(|| {
            ConfigError::new(
                format!("{path}.organisation"),
                format!("no organisation named `{name}`"),
            )
        })
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
    fn labels_are_checked_as_the_admin_api_checks_them() {
        let text = minimal("labels = { \"a b\" = \"x\" }\n");
        let err = GatewayConfig::parse(&text, Path::new("."), &GuardrailRegistry::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("agents[0].labels.a b: a label key is"),
            "{err}"
        );
    }

    #[test]
    fn labels_and_names_reach_the_route_for_rules() {
        let text = minimal("labels = { role = \"release\" }\n")
            .replace(
                "name = \"acme\"\n",
                "name = \"acme\"\nlabels = { region = \"eu\" }\n",
            )
            .replace(
                "organisation = \"acme\"\n",
                "organisation = \"acme\"\nlabels = { kind = \"crm\" }\n",
            )
            .replace(HASH, &KeyHash::of("cbk_labels").to_hex());
        let config = parse(&text).unwrap();
        let routes = config.routes(&GuardrailRegistry::default()).unwrap();
        let route = routes.find("cbk_labels").unwrap();
        let label = |p: &Profile, k: &str| p.labels.get(k).cloned();
        assert_eq!(route.profile.agent.name, "bot");
        assert_eq!(
            label(&route.profile.agent, "role").as_deref(),
            Some("release")
        );
        assert_eq!(route.profile.workspace.name, "crm");
        assert_eq!(
            label(&route.profile.workspace, "kind").as_deref(),
            Some("crm")
        );
        assert_eq!(route.profile.organisation.name, "acme");
        assert_eq!(
            label(&route.profile.organisation, "region").as_deref(),
            Some("eu")
        );
        assert!(
            parse(&minimal("labels = { role = 5 }\n")).is_err(),
            "labels are strings"
        );
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
