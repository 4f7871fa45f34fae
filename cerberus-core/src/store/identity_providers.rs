//! Identity providers an organisation trusts for OAuth access tokens, set through the admin API, and
//! the policies of the groups and people they sign in.
//!
//! The store keeps what an admin set, checked by the admin API before it is stored; the gateway
//! reads it back per workspace ([`IdentityProviderStore::workspace_trust`]) to check a token and
//! build its person's pipeline.

use std::fmt;
use std::str::FromStr;
use std::time::SystemTime;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{Page, ResolvedPolicies, StoreError, Workspace, rfc3339};
use crate::identity::{OrganisationId, Profile, WorkspaceId};

id_type!(
    /// Identifies a stored identity provider.
    IdentityProviderId
);

/// The names of the claims a provider puts a person's identity in.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields, default)]
pub struct ClaimNames {
    /// The person's stable identifier (`sub`).
    pub subject: String,
    /// Their email address (`email`); optional in a token.
    pub email: String,
    /// Their groups (`groups`): a list of strings, or one string of space-separated names.
    pub groups: String,
}

impl Default for ClaimNames {
    fn default() -> Self {
        Self {
            subject: "sub".into(),
            email: "email".into(),
            groups: "groups".into(),
        }
    }
}

/// Which of its organisation's workspaces a provider's people may reach.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "WorkspacesText", into = "WorkspacesText")]
pub enum TrustedWorkspaces {
    /// Every workspace of the organisation, those made later too (`"*"`).
    All,
    /// These (a list of ids).
    Only(Vec<WorkspaceId>),
}

impl TrustedWorkspaces {
    /// Whether `workspace` (of the provider's organisation) is among them.
    pub fn contains(&self, workspace: WorkspaceId) -> bool {
        match self {
            Self::All => true,
            Self::Only(ids) => ids.contains(&workspace),
        }
    }
}

#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for TrustedWorkspaces {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{
            ArrayBuilder, KnownFormat, ObjectBuilder, OneOfBuilder, SchemaFormat, Type,
        };
        OneOfBuilder::new()
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .enum_values(Some(["*"])),
            )
            .item(
                ArrayBuilder::new().items(
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Uuid))),
                ),
            )
            .description(Some(
                "`\"*\"` for every workspace of the organisation, or a list of workspace ids",
            ))
            .into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for TrustedWorkspaces {}

/// [`TrustedWorkspaces`] as written: `"*"` or a list of ids.
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum WorkspacesText {
    All(String),
    Only(Vec<WorkspaceId>),
}

impl TryFrom<WorkspacesText> for TrustedWorkspaces {
    type Error = String;

    fn try_from(text: WorkspacesText) -> Result<Self, String> {
        match text {
            WorkspacesText::All(star) if star == "*" => Ok(Self::All),
            WorkspacesText::All(other) => Err(format!(
                "expected \"*\" or a list of workspace ids, found `{other}`"
            )),
            WorkspacesText::Only(ids) => Ok(Self::Only(ids)),
        }
    }
}

impl From<TrustedWorkspaces> for WorkspacesText {
    fn from(workspaces: TrustedWorkspaces) -> Self {
        match workspaces {
            TrustedWorkspaces::All => Self::All("*".into()),
            TrustedWorkspaces::Only(ids) => Self::Only(ids),
        }
    }
}

/// What an admin sets on an identity provider.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct IdentityProviderSettings {
    /// Its name, unique in the organisation, for logs and labels.
    pub name: String,
    /// Its issuer identifier: a token's `iss` must be this, exactly; unique in the organisation.
    pub issuer: String,
    /// Where its keys are; when set, its metadata is not read. Without it, the key set its
    /// metadata names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_uri: Option<String>,
    /// The workspaces whose MCP servers its people may reach: `"*"` or a list of ids.
    pub workspaces: TrustedWorkspaces,
    /// The scopes every token must carry.
    #[serde(default)]
    pub required_scopes: Vec<String>,
    /// When not empty, a person must be in one of these groups.
    #[serde(default)]
    pub allowed_groups: Vec<String>,
    /// The algorithms its tokens may be signed with (`RS256`, `ES256`, …); empty for every
    /// public-key algorithm.
    #[serde(default)]
    pub algorithms: Vec<String>,
    /// Where its tokens carry a person's identity.
    #[serde(default)]
    pub claims: ClaimNames,
    /// The policy of every person it signs in, at the agent level.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub policy: Option<serde_json::Value>,
}

/// A stored identity provider.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StoredIdentityProvider {
    /// Its id.
    pub id: IdentityProviderId,
    /// The organisation that trusts it.
    pub organisation: OrganisationId,
    /// What an admin set.
    #[serde(flatten)]
    pub settings: IdentityProviderSettings,
    /// When it was created.
    #[serde(with = "rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created_at: SystemTime,
    /// When it last changed.
    #[serde(with = "rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub updated_at: SystemTime,
}

/// Whom a member policy applies to among a provider's people.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "kind", content = "name", rename_all = "lowercase")]
pub enum Member {
    /// Everyone whose token names this group.
    Group(String),
    /// The person with this subject.
    Person(String),
}

impl Member {
    /// The kind as stored (`group`, `person`).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Group(_) => "group",
            Self::Person(_) => "person",
        }
    }

    /// The group's name or the person's subject.
    pub fn name(&self) -> &str {
        match self {
            Self::Group(name) | Self::Person(name) => name,
        }
    }
}

impl FromStr for Member {
    type Err = String;

    /// `group:<name>` or `person:<subject>`.
    fn from_str(text: &str) -> Result<Self, String> {
        match text.split_once(':') {
            Some(("group", name)) => Ok(Self::Group(name.to_owned())),
            Some(("person", subject)) => Ok(Self::Person(subject.to_owned())),
            _ => Err(format!(
                "expected group:<name> or person:<subject>, found `{text}`"
            )),
        }
    }
}

impl fmt::Display for Member {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind(), self.name())
    }
}

/// A policy attached to a group or a person of an identity provider: it applies at the agent level,
/// after the provider's own (groups' first, in name order, then the person's).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MemberPolicy {
    /// The provider.
    pub identity_provider: IdentityProviderId,
    /// Whom it applies to.
    pub member: Member,
    /// The policy document, as validated when it was stored.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub document: serde_json::Value,
    /// When it last changed.
    #[serde(with = "rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub updated_at: SystemTime,
}

/// A workspace that takes access tokens, with everything the gateway needs to check one and build
/// its person's pipeline, found in one lookup.
#[derive(Clone, Debug, PartialEq)]
pub struct WorkspaceTrust {
    /// The workspace.
    pub workspace: Workspace,
    /// Its organisation's name and labels.
    pub organisation: Profile,
    /// The policy documents of its organisation and itself (`agent` is `None`).
    pub policies: ResolvedPolicies,
    /// The providers that reach it, each with its member policies.
    pub providers: Vec<(StoredIdentityProvider, Vec<MemberPolicy>)>,
}

/// Identity providers, by organisation.
#[async_trait]
pub trait IdentityProviderStore: Send + Sync {
    /// Stores a provider (a [`StoreError::Conflict`] when its name or issuer is taken in the
    /// organisation).
    async fn create_identity_provider(
        &self,
        organisation: OrganisationId,
        settings: &IdentityProviderSettings,
    ) -> Result<StoredIdentityProvider, StoreError>;
    /// The organisation's providers, oldest first.
    async fn identity_providers(
        &self,
        organisation: OrganisationId,
        page: Page,
    ) -> Result<Vec<StoredIdentityProvider>, StoreError>;
    /// One of the organisation's providers.
    async fn identity_provider(
        &self,
        organisation: OrganisationId,
        id: IdentityProviderId,
    ) -> Result<Option<StoredIdentityProvider>, StoreError>;
    /// Replaces a provider's settings.
    async fn update_identity_provider(
        &self,
        organisation: OrganisationId,
        id: IdentityProviderId,
        settings: &IdentityProviderSettings,
    ) -> Result<Option<StoredIdentityProvider>, StoreError>;
    /// Deletes a provider and its member policies.
    async fn delete_identity_provider(
        &self,
        organisation: OrganisationId,
        id: IdentityProviderId,
    ) -> Result<bool, StoreError>;
    /// Attaches a policy to a group or person of a provider, replacing theirs (`None`: no such
    /// provider).
    async fn set_member_policy(
        &self,
        organisation: OrganisationId,
        id: IdentityProviderId,
        member: &Member,
        document: &serde_json::Value,
    ) -> Result<Option<MemberPolicy>, StoreError>;
    /// A provider's member policies, groups first, by name (`None`: no such provider).
    async fn member_policies(
        &self,
        organisation: OrganisationId,
        id: IdentityProviderId,
    ) -> Result<Option<Vec<MemberPolicy>>, StoreError>;
    /// Detaches a group's or person's policy.
    async fn delete_member_policy(
        &self,
        organisation: OrganisationId,
        id: IdentityProviderId,
        member: &Member,
    ) -> Result<bool, StoreError>;
    /// The live workspace `workspace` with the providers that reach it; `None` when it is not live
    /// or no provider reaches it.
    async fn workspace_trust(
        &self,
        workspace: WorkspaceId,
    ) -> Result<Option<WorkspaceTrust>, StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trusted_workspaces_are_a_star_or_a_list_of_ids() {
        let id = WorkspaceId(Uuid::nil());
        let all: TrustedWorkspaces = serde_json::from_value(serde_json::json!("*")).unwrap();
        assert_eq!(all, TrustedWorkspaces::All);
        assert!(all.contains(id));
        let listed: TrustedWorkspaces =
            serde_json::from_value(serde_json::json!([id.to_string()])).unwrap();
        assert_eq!(listed, TrustedWorkspaces::Only(vec![id]));
        assert!(!listed.contains(WorkspaceId(Uuid::max())));
        assert_eq!(
            serde_json::to_value(&listed).unwrap(),
            serde_json::json!([id.to_string()])
        );
        assert_eq!(serde_json::to_value(&all).unwrap(), "*");
        for wrong in [
            serde_json::json!("all"),
            serde_json::json!(["crm"]),
            serde_json::json!(3),
        ] {
            assert!(serde_json::from_value::<TrustedWorkspaces>(wrong).is_err());
        }
    }

    #[test]
    fn members_read_and_write_as_kind_and_name() {
        for text in ["group:staff", "person:00u1:x"] {
            assert_eq!(text.parse::<Member>().unwrap().to_string(), text);
        }
        assert!("team:staff".parse::<Member>().is_err());
        assert_eq!(
            serde_json::to_value(Member::Group("staff".into())).unwrap(),
            serde_json::json!({"kind": "group", "name": "staff"})
        );
    }
}
