//! The control plane's storage, as traits: what the admin API and the proxy need from a database,
//! without knowing which one. `cerberus-sqlx` implements them for SQLite and PostgreSQL.
//!
//! Every method that takes an id from a caller also takes the caller's [`OrganisationId`] and finds
//! nothing outside it: another tenant's id is as unknown as one that never existed. Deletes are soft
//! (a deleted row keeps its id but is found by nothing), and names are unique among live rows only.

mod approvals;
mod identity_providers;
mod model;

use std::collections::BTreeMap;
use std::fmt;
use std::time::SystemTime;

use async_trait::async_trait;
use uuid::Uuid;

pub use approvals::{Approval, ApprovalId, ApprovalStatus, ApprovalStore, Verdict};
pub use identity_providers::{
    ClaimNames, IdentityProviderId, IdentityProviderSettings, IdentityProviderStore, Member,
    MemberPolicy, StoredIdentityProvider, TrustedWorkspaces, WorkspaceTrust,
};
pub use model::{
    AgentAccess, Environment, Organisation, PolicyId, PolicyTarget, RefreshTokenRecord,
    ResolvedAgent, ResolvedPolicies, Role, StoredPolicy, UpstreamDefinition, User, UserCredentials,
    UserId, Workspace, rfc3339,
};

use crate::identity::{AgentId, OrganisationId, WorkspaceId};

/// A storage operation that failed.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A live row already has that unique value (a name, an email, a policy for that target).
    #[error("{0} already exists")]
    Conflict(String),
    /// The database could not be reached or failed, or holds what cannot be read; the cause is for
    /// logs, never for API clients. Trying again later may succeed.
    #[error("storage unavailable: {0}")]
    Unavailable(#[source] crate::Cause),
    /// The database refused what it was given for its content (a value it cannot hold): trying the
    /// same again will fail the same way.
    #[error("storage refused the data: {0}")]
    Rejected(#[source] crate::Cause),
    /// The change would leave an organisation without a live owner.
    #[error("an organisation keeps at least one owner")]
    LastOwner,
}

/// Which slice of a list to return.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Page {
    /// How many rows at most.
    pub limit: u32,
    /// How many rows to skip, in the list's order (oldest first).
    pub offset: u64,
}

impl Default for Page {
    fn default() -> Self {
        Self {
            limit: 50,
            offset: 0,
        }
    }
}

/// A new workspace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewWorkspace {
    /// Its name.
    pub name: String,
    /// The stage it serves.
    pub environment: Environment,
    /// Its MCP server.
    pub upstream: UpstreamDefinition,
}

/// Changes to a workspace; `None` leaves a field as it is.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WorkspaceChanges {
    /// A new name.
    pub name: Option<String>,
    /// A new environment.
    pub environment: Option<Environment>,
    /// A new upstream.
    pub upstream: Option<UpstreamDefinition>,
}

/// A key as stored: its SHA-256 hash and its display prefix.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct StoredKey<'a> {
    /// The SHA-256 hash of the key.
    pub hash: [u8; 32],
    /// Its first characters.
    pub prefix: &'a str,
}

impl fmt::Debug for StoredKey<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredKey")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// What happened when a refresh token was presented.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RefreshOutcome {
    /// It was live; it is now spent, and a new one may be issued in its family.
    Spent(RefreshTokenRecord),
    /// It had been spent or revoked already: a sign of theft, so its whole family is now revoked.
    Reused,
    /// Unknown or expired.
    Invalid,
}

/// Organisations.
#[async_trait]
pub trait OrganisationStore: Send + Sync {
    /// Creates an organisation and its first owner, together or not at all.
    async fn create_organisation(
        &self,
        name: &str,
        owner_email: &str,
        owner_password_hash: &str,
    ) -> Result<(Organisation, User), StoreError>;
    /// The live organisation `id`.
    async fn organisation(&self, id: OrganisationId) -> Result<Option<Organisation>, StoreError>;
    /// Renames an organisation.
    async fn rename_organisation(
        &self,
        id: OrganisationId,
        name: &str,
    ) -> Result<Option<Organisation>, StoreError>;
    /// Deletes an organisation (softly); its users, workspaces and keys stop working with it.
    async fn delete_organisation(&self, id: OrganisationId) -> Result<bool, StoreError>;
    /// Replaces the labels of the organisation itself, or of one of its workspaces or agent
    /// accesses; `false` when the target is not the organisation's (or not live).
    async fn set_labels(
        &self,
        organisation: OrganisationId,
        target: PolicyTarget,
        labels: &BTreeMap<String, String>,
    ) -> Result<bool, StoreError>;
}

/// Users of the admin API.
#[async_trait]
pub trait UserStore: Send + Sync {
    /// Adds a user to an organisation.
    async fn create_user(
        &self,
        organisation: OrganisationId,
        email: &str,
        role: Role,
        password_hash: &str,
    ) -> Result<User, StoreError>;
    /// The organisation's users.
    async fn users(
        &self,
        organisation: OrganisationId,
        page: Page,
    ) -> Result<Vec<User>, StoreError>;
    /// One of the organisation's users.
    async fn user(
        &self,
        organisation: OrganisationId,
        id: UserId,
    ) -> Result<Option<User>, StoreError>;
    /// A live user of a live organisation, by an id the gateway issued itself (in a refresh token's
    /// record), never by one a caller names.
    async fn user_by_id(&self, id: UserId) -> Result<Option<User>, StoreError>;
    /// A live user of a live organisation, with its password hash, by email (for logging in).
    async fn credentials(&self, email: &str) -> Result<Option<UserCredentials>, StoreError>;
    /// Changes a user's role; `None` when there is no such live user.
    ///
    /// Refuses with [`StoreError::LastOwner`] to demote the organisation's last live owner. The check
    /// and the change are one: of two owners demoting or removing each other at once, one is refused.
    async fn set_role(
        &self,
        organisation: OrganisationId,
        id: UserId,
        role: Role,
    ) -> Result<Option<User>, StoreError>;
    /// Removes a user (softly) and ends its sessions; `false` when there is no such live user.
    ///
    /// Refuses with [`StoreError::LastOwner`] to remove the last live owner, as [`set_role`](Self::set_role) does.
    async fn delete_user(
        &self,
        organisation: OrganisationId,
        id: UserId,
    ) -> Result<bool, StoreError>;
}

/// MCP server workspaces.
#[async_trait]
pub trait WorkspaceStore: Send + Sync {
    /// Creates a workspace.
    async fn create_workspace(
        &self,
        organisation: OrganisationId,
        workspace: NewWorkspace,
    ) -> Result<Workspace, StoreError>;
    /// The organisation's workspaces.
    async fn workspaces(
        &self,
        organisation: OrganisationId,
        page: Page,
    ) -> Result<Vec<Workspace>, StoreError>;
    /// One of the organisation's workspaces.
    async fn workspace(
        &self,
        organisation: OrganisationId,
        id: WorkspaceId,
    ) -> Result<Option<Workspace>, StoreError>;
    /// Changes a workspace.
    async fn update_workspace(
        &self,
        organisation: OrganisationId,
        id: WorkspaceId,
        changes: WorkspaceChanges,
    ) -> Result<Option<Workspace>, StoreError>;
    /// Deletes a workspace (softly); its agent accesses stop working with it.
    async fn delete_workspace(
        &self,
        organisation: OrganisationId,
        id: WorkspaceId,
    ) -> Result<bool, StoreError>;
}

/// Agent accesses and the key lookup the proxy makes.
#[async_trait]
pub trait AgentAccessStore: Send + Sync {
    /// Creates an agent access in one of the organisation's workspaces (`None`: no such workspace).
    async fn create_agent_access(
        &self,
        organisation: OrganisationId,
        workspace: WorkspaceId,
        name: &str,
        key: StoredKey<'_>,
        expires_at: Option<SystemTime>,
    ) -> Result<Option<AgentAccess>, StoreError>;
    /// A workspace's agent accesses.
    async fn agent_accesses(
        &self,
        organisation: OrganisationId,
        workspace: WorkspaceId,
        page: Page,
    ) -> Result<Vec<AgentAccess>, StoreError>;
    /// One of the organisation's agent accesses.
    async fn agent_access(
        &self,
        organisation: OrganisationId,
        id: AgentId,
    ) -> Result<Option<AgentAccess>, StoreError>;
    /// Gives an agent access a new key; the old one keeps working until `previous_valid_until`.
    async fn rotate_key(
        &self,
        organisation: OrganisationId,
        id: AgentId,
        key: StoredKey<'_>,
        previous_valid_until: Option<SystemTime>,
    ) -> Result<Option<AgentAccess>, StoreError>;
    /// Revokes an agent access: its keys stop working.
    async fn revoke_agent_access(
        &self,
        organisation: OrganisationId,
        id: AgentId,
    ) -> Result<Option<AgentAccess>, StoreError>;
    /// Deletes an agent access (softly).
    async fn delete_agent_access(
        &self,
        organisation: OrganisationId,
        id: AgentId,
    ) -> Result<bool, StoreError>;
    /// The live, unrevoked, unexpired agent access whose current key (or previous key, within its grace
    /// period) hashes to `key_hash` at time `now`, with its workspace and policies. The caller compares
    /// the hash it gets back in constant time before trusting it.
    async fn resolve_key(
        &self,
        key_hash: [u8; 32],
        now: SystemTime,
    ) -> Result<Option<(ResolvedAgent, [u8; 32])>, StoreError>;
}

/// Policies attached to the hierarchy.
#[async_trait]
pub trait PolicyStore: Send + Sync {
    /// Attaches a policy to a target of the organisation (`None`: no such target); one per target.
    async fn create_policy(
        &self,
        organisation: OrganisationId,
        target: PolicyTarget,
        document: &serde_json::Value,
    ) -> Result<Option<StoredPolicy>, StoreError>;
    /// The organisation's policies.
    async fn policies(
        &self,
        organisation: OrganisationId,
        page: Page,
    ) -> Result<Vec<StoredPolicy>, StoreError>;
    /// One of the organisation's policies.
    async fn policy(
        &self,
        organisation: OrganisationId,
        id: PolicyId,
    ) -> Result<Option<StoredPolicy>, StoreError>;
    /// The policy attached to a target, if any.
    async fn policy_for(
        &self,
        organisation: OrganisationId,
        target: PolicyTarget,
    ) -> Result<Option<StoredPolicy>, StoreError>;
    /// Replaces a policy's document.
    async fn update_policy(
        &self,
        organisation: OrganisationId,
        id: PolicyId,
        document: &serde_json::Value,
    ) -> Result<Option<StoredPolicy>, StoreError>;
    /// Detaches a policy (softly).
    async fn delete_policy(
        &self,
        organisation: OrganisationId,
        id: PolicyId,
    ) -> Result<bool, StoreError>;
}

/// Refresh tokens, by their SHA-256 hash.
#[async_trait]
pub trait RefreshTokenStore: Send + Sync {
    /// Records a new refresh token.
    async fn insert_refresh_token(
        &self,
        hash: [u8; 32],
        record: &RefreshTokenRecord,
    ) -> Result<(), StoreError>;
    /// Spends a refresh token, once: a second use revokes its family.
    async fn spend_refresh_token(
        &self,
        hash: [u8; 32],
        now: SystemTime,
    ) -> Result<RefreshOutcome, StoreError>;
    /// Revokes every refresh token of a family.
    async fn revoke_refresh_family(&self, family: Uuid) -> Result<(), StoreError>;
}

/// Whether the store answers, for readiness checks.
#[async_trait]
pub trait StoreHealth: Send + Sync {
    /// Asks the store something trivial; an error when it cannot answer.
    async fn ping(&self) -> Result<(), StoreError>;
}

/// Everything the control plane stores, its audit log, tool pins and approvals included, behind one
/// object.
pub trait ControlStore:
    StoreHealth
    + OrganisationStore
    + UserStore
    + WorkspaceStore
    + AgentAccessStore
    + PolicyStore
    + RefreshTokenStore
    + crate::audit::AuditStore
    + crate::pinning::PinStore
    + ApprovalStore
    + IdentityProviderStore
    + fmt::Debug
{
}

impl<T> ControlStore for T where
    T: StoreHealth
        + OrganisationStore
        + UserStore
        + WorkspaceStore
        + AgentAccessStore
        + PolicyStore
        + RefreshTokenStore
        + crate::audit::AuditStore
        + crate::pinning::PinStore
        + ApprovalStore
        + IdentityProviderStore
        + fmt::Debug
{
}
