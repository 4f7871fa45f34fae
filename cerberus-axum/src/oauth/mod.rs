//! OAuth 2.1 for MCP clients: the proxy as a resource server, as the MCP authorization specification
//! (2025-06-18 and later) asks, so that a person signs in with their organisation's identity provider
//! and calls tools as themselves instead of through a shared agent key.
//!
//! - **Where.** Each workspace an identity provider is trusted for is a protected resource of its own,
//!   at `/mcp/{workspace id}` (and `/governance-plane/api/v1/proxy/mcp/{workspace id}`). Its
//!   metadata (RFC 9728) is at `/.well-known/oauth-protected-resource` followed by that path, and
//!   names the issuers the organisation trusts for it; a call without a good token gets 401 with
//!   `WWW-Authenticate: Bearer resource_metadata="…"` pointing there, which is how a client finds
//!   where to sign in.
//! - **What a token must be.** A JWT signed with a key the issuer publishes (its JWKS, found through
//!   its metadata, cached, and fetched again when a token names a key id the cache does not know, at
//!   most once per `oauth.key_refresh_interval_secs`), by one of the provider's algorithms (never a
//!   symmetric one), from a trusted issuer, for this resource (`aud`, RFC 8707), within its `exp` and
//!   `nbf` (with `oauth.leeway_secs` of clock skew), carrying the provider's required scopes (else
//!   403 `insufficient_scope`) and, when the provider lists groups, one of them.
//! - **Who it is.** The subject becomes an identity of its own in each workspace
//!   ([`cerberus_core::AgentId::from_name`] of workspace, issuer and subject), as an agent key is:
//!   rate limits count per person, sessions belong to the person, and the audit record carries
//!   `oauth:<subject>` where an agent key's prefix would be. Rules read the person as
//!   `agent`: `agent.name` (the email, or the subject), `agent.labels` (`subject`, `email`, `issuer`,
//!   `identity_provider`) and `agent.groups`. The provider's policy, the policies of the person's
//!   groups and the person's own apply at the agent level, in that order, below the organisation's
//!   and the workspace's.
//! - **No passthrough.** The token is never forwarded: the upstream gets the workspace's own
//!   credentials, as for agent keys.

mod keys;
mod metadata;
mod person;
#[cfg(feature = "control-plane")]
mod stored;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use cerberus_core::{
    CallerProfile, GuardrailRegistry, OrganisationId, PolicyDocument, Profile, WorkspaceId,
};
use jsonwebtoken::Algorithm;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::gateway::{AgentRoute, Caller};
use crate::proxy::{ALIAS_PATH, PROXY_PATH};
use crate::upstream::Upstream;
use crate::upstream_client::UpstreamClient;

pub use cerberus_core::store::ClaimNames;
pub use metadata::{refuse, router};

/// The OAuth settings of the gateway (`[oauth]` in the configuration file).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct OAuthSettings {
    /// The address clients reach the gateway at (`https://mcp.example.com`): resource URLs, and so
    /// the audience every token must name, are made from it. Required with identity providers; it
    /// is never taken from a request's `Host`, which the client chooses.
    pub public_url: Option<String>,
    /// How far the clocks of the gateway and an identity provider may disagree, in seconds, when
    /// `exp` and `nbf` are checked.
    pub leeway_secs: u64,
    /// The least time between two fetches of an issuer's keys, in seconds: a token naming an unknown
    /// key id fetches them again at most this often, so a flood of made-up key ids cannot flood
    /// the identity provider.
    pub key_refresh_interval_secs: u64,
    /// How long fetched keys are used before they are fetched again, in seconds.
    pub key_max_age_secs: u64,
    /// How long a person's route (their pipeline and profile) is kept once built, in seconds.
    pub person_cache_secs: u64,
}

impl Default for OAuthSettings {
    fn default() -> Self {
        Self {
            public_url: None,
            leeway_secs: 30,
            key_refresh_interval_secs: 30,
            key_max_age_secs: 3600,
            person_cache_secs: 60,
        }
    }
}

/// The algorithms a provider may sign with unless it lists its own: every public-key algorithm
/// `jsonwebtoken` knows. HMAC is never accepted: its key would be a secret the gateway shares.
pub const DEFAULT_ALGORITHMS: [Algorithm; 9] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// An identity provider an organisation trusts, checked (`[[identity_providers]]`).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct IdentityProvider {
    /// Its name, for logs and labels.
    pub name: String,
    /// The organisation that trusts it.
    pub organisation: OrganisationId,
    /// Its issuer identifier: a token's `iss` must be this, exactly.
    pub issuer: String,
    /// Where its keys are, when not found through its metadata.
    pub jwks_uri: Option<String>,
    /// The workspaces whose MCP servers its people may reach.
    pub workspaces: Vec<WorkspaceId>,
    /// The scopes every token must carry.
    pub required_scopes: Vec<String>,
    /// When not empty, a person must be in one of these groups.
    pub allowed_groups: Vec<String>,
    /// The algorithms its tokens may be signed with.
    pub algorithms: Vec<Algorithm>,
    /// Where its tokens carry a person's identity.
    pub claims: ClaimNames,
    /// The policy of every person it signs in, at the agent level.
    pub policy: Option<PolicyDocument>,
    /// Policies of the people in a group, at the agent level after `policy`, in this order.
    pub group_policies: Vec<(String, PolicyDocument)>,
    /// Policies of one person each, by subject, at the agent level after the groups'.
    pub person_policies: Vec<(String, PolicyDocument)>,
}

impl IdentityProvider {
    /// The provider an admin set through the API, reaching `workspaces`, with the policies of its
    /// groups and people (`members`); a field that cannot be used is named with what is wrong.
    pub fn from_settings(
        organisation: OrganisationId,
        settings: &cerberus_core::store::IdentityProviderSettings,
        members: &[cerberus_core::store::MemberPolicy],
        workspaces: Vec<WorkspaceId>,
    ) -> Result<Self, (String, String)> {
        let algorithms = if settings.algorithms.is_empty() {
            DEFAULT_ALGORITHMS.to_vec()
        } else {
            settings
                .algorithms
                .iter()
                .enumerate()
                .map(|(i, name)| {
                    name.parse::<Algorithm>().map_err(|_| {
                        (
                            format!("algorithms[{i}]"),
                            format!("`{name}` is not a JWS algorithm (RS256, ES256, EdDSA, …)"),
                        )
                    })
                })
                .collect::<Result<_, _>>()?
        };
        let document = |field: String, value: &serde_json::Value| {
            PolicyDocument::from_value(value.clone()).map_err(|e| {
                let at = if e.path.is_empty() {
                    field.clone()
                } else {
                    format!("{field}.{}", e.path)
                };
                (at, e.message)
            })
        };
        let policy = settings
            .policy
            .as_ref()
            .map(|value| document("policy".into(), value))
            .transpose()?;
        let mut group_policies = Vec::new();
        let mut person_policies = Vec::new();
        for member in members {
            let field = format!("members.{}", member.member);
            let parsed = document(field, &member.document)?;
            match &member.member {
                cerberus_core::store::Member::Group(group) => {
                    group_policies.push((group.clone(), parsed));
                }
                cerberus_core::store::Member::Person(subject) => {
                    person_policies.push((subject.clone(), parsed));
                }
            }
        }
        let provider = Self {
            name: settings.name.clone(),
            organisation,
            issuer: settings.issuer.clone(),
            jwks_uri: settings.jwks_uri.clone(),
            workspaces,
            required_scopes: settings.required_scopes.clone(),
            allowed_groups: settings.allowed_groups.clone(),
            algorithms,
            claims: settings.claims.clone(),
            policy,
            group_policies,
            person_policies,
        };
        provider.check()?;
        Ok(provider)
    }

    /// Refuses a provider whose tokens could not be checked safely, naming the field at fault.
    fn check(&self) -> Result<(), (String, String)> {
        let field = |name: &str, message: String| (name.to_owned(), message);
        if self.name.trim().is_empty() || self.name.chars().any(char::is_control) {
            return Err(field(
                "name",
                "must be given, without control characters".into(),
            ));
        }
        // Kept as written: a token's `iss` must equal it character for character.
        let urls = [
            ("issuer", Some(&self.issuer)),
            ("jwks_uri", self.jwks_uri.as_ref()),
        ];
        for (name, url) in urls {
            let Some(url) = url else { continue };
            if url.len() > MAX_URL_BYTES {
                return Err(field(name, format!("at most {MAX_URL_BYTES} bytes")));
            }
            check_url(url).map_err(|m| field(name, m))?;
        }
        if self.algorithms.is_empty()
            || self
                .algorithms
                .iter()
                .any(|a| matches!(a, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512))
        {
            return Err(field(
                "algorithms",
                "at least one, and no HMAC algorithm: tokens are checked with public keys".into(),
            ));
        }
        for (name, claim) in [
            ("subject", &self.claims.subject),
            ("email", &self.claims.email),
            ("groups", &self.claims.groups),
        ] {
            if claim.is_empty() {
                return Err(field(&format!("claims.{name}"), "cannot be empty".into()));
            }
        }
        // A scope is RFC 6749's scope-token (printable ASCII but `"` and `\`), which the challenge
        // carries in a quoted string; a group may be any name a list holds.
        for (i, scope) in self.required_scopes.iter().enumerate() {
            if scope.is_empty()
                || scope.len() > MAX_CLAIM_BYTES
                || !scope
                    .bytes()
                    .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
            {
                return Err(field(
                    &format!("required_scopes[{i}]"),
                    format!(
                        "must be 1 to {MAX_CLAIM_BYTES} printable ASCII characters, without spaces, `\"` or `\\`"
                    ),
                ));
            }
        }
        for (i, group) in self.allowed_groups.iter().enumerate() {
            if group.is_empty()
                || group.len() > MAX_CLAIM_BYTES
                || group.chars().any(char::is_control)
            {
                return Err(field(
                    &format!("allowed_groups[{i}]"),
                    format!("must be 1 to {MAX_CLAIM_BYTES} bytes, without control characters"),
                ));
            }
        }
        Ok(())
    }
}

/// A workspace as the resource server sees it: what a person's route is made of.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ProtectedWorkspace {
    /// Its organisation.
    pub organisation: OrganisationId,
    /// The workspace.
    pub workspace: WorkspaceId,
    /// Its MCP server.
    pub upstream: Upstream,
    /// The names and labels of its organisation and itself.
    pub profile: CallerProfile,
    /// Its organisation's policy.
    pub organisation_policy: Option<PolicyDocument>,
    /// Its own policy.
    pub workspace_policy: Option<PolicyDocument>,
}

/// Why a resource server cannot be built.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct InvalidOAuth {
    /// The setting at fault.
    pub path: String,
    /// What is wrong with it.
    pub message: String,
}

/// Why a request's access token opens nothing. Each answers as the specification asks: 401 with a
/// challenge, 403 for missing scopes, 503 when the token cannot be checked right now (the gateway
/// fails closed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenRefusal {
    /// The request's credential is malformed (several, or not `Bearer`): `invalid_request`.
    #[error("{0}")]
    Malformed(String),
    /// The token is not one this resource accepts: `invalid_token`.
    #[error("{0}")]
    Invalid(String),
    /// The token lacks scopes this resource requires: `insufficient_scope`.
    #[error("the access token lacks the scopes {0}")]
    InsufficientScope(String),
    /// The person may not use this MCP server (not in an allowed group).
    #[error("{0}")]
    Forbidden(String),
    /// The token cannot be checked now (the issuer's keys cannot be fetched, a policy cannot be
    /// built).
    #[error("{0}")]
    Unavailable(String),
}

impl TokenRefusal {
    /// The reason, as metrics label it: RFC 6750's error code where there is one.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "invalid_request",
            Self::Invalid(_) => "invalid_token",
            Self::InsufficientScope(_) => "insufficient_scope",
            Self::Forbidden(_) => "forbidden",
            Self::Unavailable(_) => "unavailable",
        }
    }
}

/// The gateway as an OAuth resource server: its protected workspaces and the providers they trust.
pub struct ResourceServer {
    public_url: String,
    leeway: u64,
    /// The workspaces of the configuration file that take tokens.
    resources: HashMap<WorkspaceId, Arc<Resource>>,
    /// The identity providers of the configuration file.
    providers: Vec<Arc<Provider>>,
    /// The workspaces of the control-plane database, and their providers set through the admin API.
    #[cfg(feature = "control-plane")]
    stored: Option<stored::StoredResources>,
    /// What the keys of the store's issuers are fetched with, and how often.
    #[cfg(feature = "control-plane")]
    http: Arc<UpstreamClient>,
    #[cfg(feature = "control-plane")]
    key_refresh_interval: Duration,
    #[cfg(feature = "control-plane")]
    key_max_age: Duration,
    people: moka::future::Cache<person::PersonKey, Arc<AgentRoute>>,
    /// Tokens verified lately, by build of the resource and SHA-256 of the token, with the caller
    /// each made:
    /// a client presents one token for many calls, and its signature is checked once.
    verified: moka::future::Cache<(u64, [u8; 32]), Verified>,
    registry: Arc<GuardrailRegistry>,
}

/// A verified token's caller, and the time (seconds since the epoch) until which the token holds.
#[derive(Clone, Debug)]
struct Verified {
    caller: Caller,
    until: u64,
}

impl std::fmt::Debug for ResourceServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResourceServer")
            .field("public_url", &self.public_url)
            .field("resources", &self.resources.len())
            .finish_non_exhaustive()
    }
}

/// A protected workspace and the providers it trusts.
pub struct Resource {
    workspace: ProtectedWorkspace,
    providers: Vec<Arc<Provider>>,
    /// Which build of the resource this is, unique in the process: verified tokens and people's
    /// routes are remembered per build, so that once the store's settings are read again (an admin
    /// changed them, or the cache let them go), nothing made from the old ones is served.
    build: u64,
}

/// The next [`Resource::build`].
static BUILDS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl Resource {
    fn new(workspace: ProtectedWorkspace, providers: Vec<Arc<Provider>>) -> Self {
        Self {
            workspace,
            providers,
            build: BUILDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        }
    }
}

impl std::fmt::Debug for Resource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resource")
            .field("workspace", &self.workspace.workspace)
            .field(
                "issuers",
                &self
                    .providers
                    .iter()
                    .map(|p| &p.settings.issuer)
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Resource {
    /// `organisation/workspace`.
    fn name(&self) -> String {
        let profile = &self.workspace.profile;
        format!("{}/{}", profile.organisation.name, profile.workspace.name)
    }

    /// The scopes its providers require, sorted, without repeats.
    fn scopes(&self) -> Vec<&str> {
        let mut scopes: Vec<&str> = self
            .providers
            .iter()
            .flat_map(|p| p.settings.required_scopes.iter().map(String::as_str))
            .collect();
        scopes.sort_unstable();
        scopes.dedup();
        scopes
    }

    /// The scopes its providers require, space-separated, for a challenge.
    pub fn required_scopes(&self) -> String {
        self.scopes().join(" ")
    }
}

struct Provider {
    settings: IdentityProvider,
    keys: keys::IssuerKeys,
}

/// The most groups of one person kept; a token with more is refused.
const MAX_GROUPS: usize = 256;
/// The longest subject, email or group name kept, in bytes; a token with a longer one is refused.
pub(crate) const MAX_CLAIM_BYTES: usize = 320;
/// The longest issuer or key set URL, in bytes.
const MAX_URL_BYTES: usize = 2048;
/// The most people's routes kept at once.
const MAX_PEOPLE: u64 = 100_000;

impl ResourceServer {
    /// A resource server for `workspaces` trusting `providers`, with `settings`; its issuers'
    /// metadata and keys are fetched through `http` (as operator-set URLs: the configuration file's),
    /// and people's pipelines are built with `registry`.
    pub fn new(
        settings: &OAuthSettings,
        providers: Vec<IdentityProvider>,
        workspaces: Vec<ProtectedWorkspace>,
        http: Arc<UpstreamClient>,
        registry: Arc<GuardrailRegistry>,
    ) -> Result<Self, InvalidOAuth> {
        // Tokens are checked with the process's JWT provider: install it before any arrives.
        crate::jose::install();
        let invalid = |path: &str, message: String| InvalidOAuth {
            path: path.to_owned(),
            message,
        };
        let public_url = settings.public_url.as_deref().ok_or_else(|| {
            invalid(
                "oauth.public_url",
                "required with identity providers: every token's audience is checked against it"
                    .into(),
            )
        })?;
        let public_url = check_url(public_url).map_err(|m| invalid("oauth.public_url", m))?;
        // The metadata's well-known path goes right after the host (RFC 9728, section 3.1), where
        // the gateway serves it: a public URL with a path of its own would put it elsewhere.
        if public_url
            .splitn(4, '/')
            .nth(3)
            .is_some_and(|path| !path.is_empty())
        {
            return Err(invalid(
                "oauth.public_url",
                "must be an origin (`https://mcp.example.com`), without a path".into(),
            ));
        }
        if settings.key_refresh_interval_secs == 0 {
            return Err(invalid(
                "oauth.key_refresh_interval_secs",
                "at least 1: it bounds how often a flood of unknown key ids fetches keys".into(),
            ));
        }
        let key_refresh_interval = Duration::from_secs(settings.key_refresh_interval_secs);
        let key_max_age = Duration::from_secs(settings.key_max_age_secs);
        let mut trusted: HashMap<WorkspaceId, (ProtectedWorkspace, Vec<Arc<Provider>>)> =
            workspaces
                .into_iter()
                .map(|workspace| (workspace.workspace, (workspace, Vec::new())))
                .collect();
        let mut built: Vec<Arc<Provider>> = Vec::with_capacity(providers.len());
        for (i, provider) in providers.into_iter().enumerate() {
            let path = format!("identity_providers[{i}]");
            provider
                .check()
                .map_err(|(field, message)| invalid(&format!("{path}.{field}"), message))?;
            if let Some(other) = built.iter().find(|p| {
                p.settings.issuer == provider.issuer
                    && p.settings.organisation != provider.organisation
            }) {
                tracing::warn!(
                    issuer = %provider.issuer,
                    providers = %format!("{}, {}", other.settings.name, provider.name),
                    "two organisations trust one issuer: only the audience keeps one's people out of the other's workspaces"
                );
            }
            let keys = keys::IssuerKeys::new(
                provider.issuer.clone(),
                provider.jwks_uri.clone(),
                keys::SetBy::Operator,
                Arc::clone(&http),
                key_refresh_interval,
                key_max_age,
            );
            let provider = Arc::new(Provider {
                settings: provider,
                keys,
            });
            for workspace in &provider.settings.workspaces {
                let (protected, providers) = trusted.get_mut(workspace).ok_or_else(|| {
                    invalid(
                        &format!("{path}.workspaces"),
                        format!("no workspace {workspace}"),
                    )
                })?;
                if protected.organisation != provider.settings.organisation {
                    return Err(invalid(
                        &format!("{path}.workspaces"),
                        "a workspace of another organisation".into(),
                    ));
                }
                if providers
                    .iter()
                    .any(|p| p.settings.issuer == provider.settings.issuer)
                {
                    return Err(invalid(
                        &format!("{path}.issuer"),
                        "another identity provider with this issuer reaches one of these workspaces"
                            .into(),
                    ));
                }
                providers.push(Arc::clone(&provider));
            }
            built.push(provider);
        }
        let resources = trusted
            .into_iter()
            .filter(|(_, (_, providers))| !providers.is_empty())
            .map(|(id, (workspace, providers))| (id, Arc::new(Resource::new(workspace, providers))))
            .collect();
        Ok(Self {
            public_url,
            leeway: settings.leeway_secs,
            resources,
            providers: built,
            #[cfg(feature = "control-plane")]
            stored: None,
            #[cfg(feature = "control-plane")]
            http,
            #[cfg(feature = "control-plane")]
            key_refresh_interval,
            #[cfg(feature = "control-plane")]
            key_max_age,
            people: moka::future::Cache::builder()
                .max_capacity(MAX_PEOPLE)
                .time_to_live(Duration::from_secs(settings.person_cache_secs.max(1)))
                .build(),
            verified: moka::future::Cache::builder()
                .max_capacity(MAX_PEOPLE)
                .time_to_live(Duration::from_secs(settings.person_cache_secs.max(1)))
                .build(),
            registry,
        })
    }

    /// The same resource server also protecting the workspaces of `store` its identity providers
    /// (set through the admin API) reach; relative stdio commands of their upstreams are relative
    /// to `base`. What the store says is kept for `ttl`, or until [`ResourceServer::invalidate`].
    /// Their issuers are reached as admin-set URLs are: only where the egress policy permits.
    #[cfg(feature = "control-plane")]
    pub fn with_store(
        mut self,
        store: Arc<dyn cerberus_core::store::ControlStore>,
        base: std::path::PathBuf,
        ttl: Duration,
    ) -> Self {
        self.stored = Some(stored::StoredResources::new(store, base, ttl));
        self
    }

    /// Forgets what the store said and every person's cached route and token: the next request of
    /// each asks again. The admin API calls it after each change.
    pub fn invalidate(&self) {
        #[cfg(feature = "control-plane")]
        if let Some(stored) = &self.stored {
            stored.invalidate();
        }
        self.people.invalidate_all();
        self.verified.invalidate_all();
    }

    /// The workspace `workspace` as a protected resource, if it takes access tokens: one of the
    /// configuration file's, or one of the store's that an identity provider reaches.
    pub async fn resource(
        &self,
        workspace: WorkspaceId,
    ) -> Result<Option<Arc<Resource>>, TokenRefusal> {
        if let Some(resource) = self.resources.get(&workspace) {
            return Ok(Some(Arc::clone(resource)));
        }
        #[cfg(feature = "control-plane")]
        if let Some(stored) = &self.stored {
            return stored.find(self, workspace).await;
        }
        Ok(None)
    }

    /// Starts fetching every identity provider's keys, each in a task of its own (within a Tokio
    /// runtime): what comes, or why not, is logged before the first token arrives.
    pub fn prefetch_keys(&self) {
        for provider in &self.providers {
            provider.keys.prefetch();
        }
    }

    /// The protected workspaces, each named `organisation/workspace` with the URL its clients
    /// connect to, by name.
    pub fn endpoints(&self) -> Vec<(String, String)> {
        let mut endpoints: Vec<(String, String)> = self
            .resources
            .iter()
            .map(|(id, resource)| (resource.name(), self.resource_url(ALIAS_PATH, *id)))
            .collect();
        endpoints.sort();
        endpoints
    }

    /// The resource URL of `workspace` reached under `base` (the proxy path or its alias).
    pub fn resource_url(&self, base: &str, workspace: WorkspaceId) -> String {
        format!("{}{base}/{workspace}", self.public_url)
    }

    /// Where the metadata of the resource at `base`/`workspace` is.
    pub fn metadata_url(&self, base: &str, workspace: WorkspaceId) -> String {
        format!(
            "{}{}{base}/{workspace}",
            self.public_url,
            metadata::WELL_KNOWN
        )
    }

    /// The caller `token` makes of a request to `resource`: a person of a provider it trusts, or
    /// why not.
    ///
    /// A token verified before is taken again without its signature checked, until its `exp` (with
    /// the leeway) or for `oauth.person_cache_secs` at most, whichever is sooner: a key the issuer
    /// withdraws stops the tokens it signed within that time.
    pub async fn authenticate(
        &self,
        resource: &Resource,
        token: &str,
    ) -> Result<Caller, TokenRefusal> {
        let workspace = resource.workspace.workspace;
        let seen = (
            resource.build,
            <[u8; 32]>::from(Sha256::digest(token.as_bytes())),
        );
        if let Some(verified) = self.verified.get(&seen).await
            && unix_now() <= verified.until
        {
            return Ok(verified.caller);
        }
        let (caller, until) = self.verify(workspace, resource, token).await?;
        self.verified
            .insert(
                seen,
                Verified {
                    caller: caller.clone(),
                    until,
                },
            )
            .await;
        Ok(caller)
    }

    /// The caller `token` makes of a request to `resource`, and until when (seconds since the
    /// epoch) the token holds: every check made.
    async fn verify(
        &self,
        workspace: WorkspaceId,
        resource: &Resource,
        token: &str,
    ) -> Result<(Caller, u64), TokenRefusal> {
        let invalid = |message: &str| TokenRefusal::Invalid(message.to_owned());
        // The issuer picks the provider, hence the keys; the signature is checked next, and `iss`
        // again with it.
        let issuer = person::unverified_issuer(token)
            .ok_or_else(|| invalid("the access token is not a JWT with an issuer"))?;
        let provider = resource
            .providers
            .iter()
            .find(|p| p.settings.issuer == issuer)
            .ok_or_else(|| {
                invalid("the access token's issuer is not trusted for this MCP server")
            })?;
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| invalid("the access token's header cannot be read"))?;
        if !provider.settings.algorithms.contains(&header.alg) {
            return Err(invalid(
                "the access token is signed with an algorithm its issuer is not trusted to use",
            ));
        }
        let key = provider
            .keys
            .key(header.kid.as_deref(), header.alg)
            .await
            .map_err(|e| {
                tracing::warn!(issuer = %provider.settings.issuer, error = %e, "cannot fetch an identity provider's keys");
                TokenRefusal::Unavailable("the gateway cannot check access tokens right now".into())
            })?
            .ok_or_else(|| invalid("the access token is signed with a key its issuer does not publish"))?;
        let audiences = [
            self.resource_url(ALIAS_PATH, workspace),
            self.resource_url(PROXY_PATH, workspace),
        ];
        let claims = person::verify(
            token,
            &key,
            header.alg,
            &provider.settings,
            &audiences,
            self.leeway,
        )?;
        let person = person::Person::from_claims(&claims, &provider.settings.claims)?;
        // `exp` was checked as a number; one that is no whole number of seconds is remembered for
        // no time at all (the token is verified again on its next use).
        let until = claims
            .get("exp")
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0)
            .saturating_add(self.leeway);
        let missing: Vec<&str> = provider
            .settings
            .required_scopes
            .iter()
            .filter(|scope| !person.scopes.contains(*scope))
            .map(String::as_str)
            .collect();
        if !missing.is_empty() {
            return Err(TokenRefusal::InsufficientScope(missing.join(" ")));
        }
        let allowed = &provider.settings.allowed_groups;
        if !allowed.is_empty() && !person.groups.iter().any(|g| allowed.contains(g)) {
            return Err(TokenRefusal::Forbidden(
                "the person is in no group allowed to use this MCP server".into(),
            ));
        }
        let key_prefix = format!("oauth:{}", person.subject);
        let route = self
            .people
            .try_get_with(
                person.key(resource.build, &provider.settings.issuer),
                self.route(resource, provider, &person),
            )
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "cannot build a person's pipeline");
                TokenRefusal::Unavailable(
                    "the gateway cannot build this person's policy right now".into(),
                )
            })?;
        Ok((Caller { route, key_prefix }, until))
    }

    /// A person's route: the workspace's upstream, the pipeline of its policies, the provider's and
    /// those of the person's groups, and a profile of their claims.
    async fn route(
        &self,
        resource: &Resource,
        provider: &Provider,
        person: &person::Person,
    ) -> Result<Arc<AgentRoute>, cerberus_core::PolicyError> {
        let workspace = &resource.workspace;
        let settings = &provider.settings;
        let mut levels = Vec::new();
        if let Some(policy) = &workspace.organisation_policy {
            levels.push((cerberus_core::PolicyLevel::Organisation, policy));
        }
        if let Some(policy) = &workspace.workspace_policy {
            levels.push((cerberus_core::PolicyLevel::Workspace, policy));
        }
        if let Some(policy) = &settings.policy {
            levels.push((cerberus_core::PolicyLevel::Agent, policy));
        }
        for (group, policy) in &settings.group_policies {
            if person.groups.contains(group) {
                levels.push((cerberus_core::PolicyLevel::Agent, policy));
            }
        }
        for (subject, policy) in &settings.person_policies {
            if *subject == person.subject {
                levels.push((cerberus_core::PolicyLevel::Agent, policy));
            }
        }
        let pipeline = self
            .registry
            .build(&cerberus_core::EffectivePolicy::merge(levels))?;
        let identity = cerberus_core::Identity {
            organisation: workspace.organisation,
            workspace: workspace.workspace,
            agent: person.agent_id(workspace.workspace, &settings.issuer),
        };
        // Logs and process labels name the person by subject; the email is for rules only.
        let name = format!("oauth:{}", person.subject);
        let mut labels = std::collections::BTreeMap::from([
            ("subject".to_owned(), person.subject.clone()),
            ("issuer".to_owned(), settings.issuer.clone()),
            ("identity_provider".to_owned(), settings.name.clone()),
        ]);
        if let Some(email) = &person.email {
            labels.insert("email".to_owned(), email.clone());
        }
        let profile = CallerProfile {
            agent: Profile {
                name: person
                    .email
                    .clone()
                    .unwrap_or_else(|| person.subject.clone()),
                labels,
                groups: person.groups.clone(),
            },
            ..workspace.profile.clone()
        };
        Ok(Arc::new(
            AgentRoute::new(identity, name, workspace.upstream.clone(), pipeline)
                .with_profile(profile),
        ))
    }

    /// The protected resource metadata of `resource` reached under `base`.
    fn metadata(&self, base: &str, resource: &Resource) -> serde_json::Value {
        serde_json::json!({
            "resource": self.resource_url(base, resource.workspace.workspace),
            "authorization_servers": resource
                .providers
                .iter()
                .map(|p| &p.settings.issuer)
                .collect::<Vec<_>>(),
            "scopes_supported": resource.scopes(),
            "bearer_methods_supported": ["header"],
            "resource_name": resource.name(),
        })
    }
}

/// Seconds since the epoch, now.
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

/// Checks an `http(s)` URL without query or fragment, `https` unless its host is a loopback one;
/// returns it without a trailing `/`.
fn check_url(url: &str) -> Result<String, String> {
    let uri: http::Uri = url.parse().map_err(|e| format!("not a URL: {e}"))?;
    let host = uri
        .host()
        .ok_or("must be a URL with a host and without query or fragment")?;
    let loopback = host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|address| address.is_loopback());
    match uri.scheme_str() {
        Some("https") => {}
        Some("http") if loopback => {}
        _ => return Err("must be an https URL (http only on a loopback address)".into()),
    }
    if host.is_empty() || uri.query().is_some() || url.contains('#') {
        return Err("must be a URL with a host and without query or fragment".into());
    }
    Ok(url.trim_end_matches('/').to_owned())
}
