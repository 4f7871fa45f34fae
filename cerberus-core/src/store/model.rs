//! What the control plane stores: organisations, their users, MCP server workspaces, agent accesses and
//! policies. Secrets never appear here in the clear: keys and refresh tokens as SHA-256 hashes, passwords
//! as argon2id hashes, and neither hash is part of what the admin API shows.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::identity::{AgentId, Identity, OrganisationId, Profile, WorkspaceId};

id_type!(
    /// Identifies a user of the admin API.
    UserId
);
id_type!(
    /// Identifies a stored policy.
    PolicyId
);

/// What a user may do within its organisation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Role {
    /// Reads everything in the organisation, changes nothing.
    Viewer,
    /// Manages workspaces, agent accesses and policies.
    Admin,
    /// Everything an admin does, and manages the organisation and its users.
    Owner,
}

impl Role {
    /// The role's name as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Viewer => "viewer",
            Self::Admin => "admin",
            Self::Owner => "owner",
        }
    }

    /// Whether the role may change workspaces, agent accesses and policies.
    pub fn can_write(self) -> bool {
        self >= Self::Admin
    }

    /// Whether the role may change the organisation and its users.
    pub fn can_manage(self) -> bool {
        self == Self::Owner
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "viewer" => Ok(Self::Viewer),
            "admin" => Ok(Self::Admin),
            "owner" => Ok(Self::Owner),
            other => Err(format!("unknown role `{other}` (owner, admin or viewer)")),
        }
    }
}

/// The stage an MCP server workspace serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Environment {
    /// Production.
    Production,
    /// Staging.
    Staging,
    /// Development.
    Development,
}

impl Environment {
    /// The environment's name as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Production => "production",
            Self::Staging => "staging",
            Self::Development => "development",
        }
    }
}

impl FromStr for Environment {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "production" => Ok(Self::Production),
            "staging" => Ok(Self::Staging),
            "development" => Ok(Self::Development),
            other => Err(format!(
                "unknown environment `{other}` (production, staging or development)"
            )),
        }
    }
}

/// How the gateway reaches a workspace's MCP server, as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged, deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum UpstreamDefinition {
    /// A Streamable HTTP endpoint.
    Http {
        /// The endpoint URL.
        url: String,
        /// Headers sent with every upstream request (an upstream credential, for example).
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        headers: BTreeMap<String, String>,
    },
    /// A command the gateway runs, one process per session, speaking stdio.
    Stdio {
        /// The program.
        command: String,
        /// Its arguments.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        args: Vec<String>,
        /// Its environment (the gateway's own is not passed on).
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        env: BTreeMap<String, String>,
        /// Its working directory.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cwd: Option<String>,
    },
}

/// A tenant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Organisation {
    /// Its id.
    pub id: OrganisationId,
    /// Its name, unique among live organisations.
    pub name: String,
    /// Key-value pairs an admin set on it, which rules read (`organisation.labels`).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// When it was created.
    #[serde(with = "rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created_at: SystemTime,
    /// When it last changed.
    #[serde(with = "rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub updated_at: SystemTime,
}

/// A user of the admin API; its password hash is kept apart, in [`UserCredentials`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct User {
    /// Its id.
    pub id: UserId,
    /// The organisation it belongs to.
    pub organisation: OrganisationId,
    /// Its email address, unique among live users; it logs in with it.
    pub email: String,
    /// What it may do.
    pub role: Role,
    /// When it was created.
    #[serde(with = "rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created_at: SystemTime,
    /// When it last changed.
    #[serde(with = "rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub updated_at: SystemTime,
}

/// A user with its argon2id password hash (PHC string), for logging in.
#[derive(Clone, PartialEq, Eq)]
pub struct UserCredentials {
    /// The user.
    pub user: User,
    /// Its password hash.
    pub password_hash: String,
}

impl fmt::Debug for UserCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserCredentials")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// An MCP server workspace: one upstream server and the agents that reach it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Workspace {
    /// Its id.
    pub id: WorkspaceId,
    /// The organisation it belongs to.
    pub organisation: OrganisationId,
    /// Its name, unique among the organisation's live workspaces.
    pub name: String,
    /// Key-value pairs an admin set on it, which rules read (`workspace.labels`).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The stage it serves.
    pub environment: Environment,
    /// Its MCP server.
    pub upstream: UpstreamDefinition,
    /// When it was created.
    #[serde(with = "rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created_at: SystemTime,
    /// When it last changed.
    #[serde(with = "rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub updated_at: SystemTime,
}

/// An agent access: one client credential within a workspace. The key itself is never stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AgentAccess {
    /// Its id.
    pub id: AgentId,
    /// The organisation it belongs to.
    pub organisation: OrganisationId,
    /// The workspace it reaches.
    pub workspace: WorkspaceId,
    /// Its name, unique among the workspace's live agent accesses.
    pub name: String,
    /// Key-value pairs an admin set on it, which rules read (`agent.labels`).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The first characters of the current key, for display.
    pub key_prefix: String,
    /// When it was created.
    #[serde(with = "rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created_at: SystemTime,
    /// When its key was last rotated.
    #[serde(with = "rfc3339::option", default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub rotated_at: Option<SystemTime>,
    /// Until when the key before the last rotation still works.
    #[serde(with = "rfc3339::option", default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub previous_key_valid_until: Option<SystemTime>,
    /// When the access stops working by itself.
    #[serde(with = "rfc3339::option", default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub expires_at: Option<SystemTime>,
    /// When it was revoked.
    #[serde(with = "rfc3339::option", default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub revoked_at: Option<SystemTime>,
}

impl AgentAccess {
    /// The identity the proxy gives the agent's messages.
    pub fn identity(&self) -> Identity {
        Identity {
            organisation: self.organisation,
            workspace: self.workspace,
            agent: self.id,
        }
    }
}

/// What a stored policy attaches to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "level", content = "id", rename_all = "lowercase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum PolicyTarget {
    /// The whole organisation.
    Organisation(OrganisationId),
    /// One workspace.
    Workspace(WorkspaceId),
    /// One agent access.
    Agent(AgentId),
}

impl PolicyTarget {
    /// The level's name as stored (`organisation`, `workspace`, `agent`).
    pub fn level(self) -> &'static str {
        match self {
            Self::Organisation(_) => "organisation",
            Self::Workspace(_) => "workspace",
            Self::Agent(_) => "agent",
        }
    }

    /// The id of what the policy attaches to.
    pub fn uuid(self) -> Uuid {
        match self {
            Self::Organisation(id) => id.0,
            Self::Workspace(id) => id.0,
            Self::Agent(id) => id.0,
        }
    }
}

/// A policy document attached to one level of the hierarchy; one per target.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StoredPolicy {
    /// Its id.
    pub id: PolicyId,
    /// The organisation it belongs to.
    pub organisation: OrganisationId,
    /// What it attaches to.
    pub target: PolicyTarget,
    /// The policy document, as validated when it was stored.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub document: serde_json::Value,
    /// When it was created.
    #[serde(with = "rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created_at: SystemTime,
    /// When it last changed.
    #[serde(with = "rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub updated_at: SystemTime,
}

/// Everything the proxy needs about the holder of a key, found in one lookup.
#[derive(Clone, Debug, PartialEq)]
pub struct ResolvedAgent {
    /// The agent access.
    pub agent: AgentAccess,
    /// Its workspace.
    pub workspace: Workspace,
    /// Its organisation's name and labels.
    pub organisation: Profile,
    /// The policy documents of its organisation, workspace and itself, where there are any.
    pub policies: ResolvedPolicies,
}

/// The policy documents of one agent's three levels.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ResolvedPolicies {
    /// The organisation's.
    pub organisation: Option<serde_json::Value>,
    /// The workspace's.
    pub workspace: Option<serde_json::Value>,
    /// The agent's own.
    pub agent: Option<serde_json::Value>,
}

/// A refresh token's record; the token itself is only ever held as its SHA-256 hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefreshTokenRecord {
    /// The user it refreshes.
    pub user: UserId,
    /// The family of tokens it was rotated from: reusing a spent token revokes the whole family.
    pub family: Uuid,
    /// When it stops working.
    pub expires_at: SystemTime,
    /// When it was spent or revoked.
    pub revoked_at: Option<SystemTime>,
}

/// Times as RFC 3339 text with milliseconds (`2026-11-25T10:00:00.000Z`).
pub mod rfc3339 {
    use std::time::SystemTime;

    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes a time.
    pub fn serialize<S: Serializer>(time: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_rfc3339_millis(*time))
    }

    /// Reads a time.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_rfc3339_weak(&text).map_err(serde::de::Error::custom)
    }

    /// The same for optional times (`null` when absent).
    pub mod option {
        use std::time::SystemTime;

        use serde::{Deserialize, Deserializer, Serializer};

        /// Writes an optional time.
        pub fn serialize<S: Serializer>(
            time: &Option<SystemTime>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            match time {
                Some(time) => s.collect_str(&humantime::format_rfc3339_millis(*time)),
                None => s.serialize_none(),
            }
        }

        /// Reads an optional time.
        pub fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Option<SystemTime>, D::Error> {
            Option::<String>::deserialize(d)?
                .map(|text| humantime::parse_rfc3339_weak(&text).map_err(serde::de::Error::custom))
                .transpose()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_order_their_powers() {
        assert!(Role::Owner.can_manage() && Role::Owner.can_write());
        assert!(!Role::Admin.can_manage() && Role::Admin.can_write());
        assert!(!Role::Viewer.can_write());
        for role in [Role::Viewer, Role::Admin, Role::Owner] {
            assert_eq!(role.as_str().parse::<Role>().unwrap(), role);
        }
        assert!("root".parse::<Role>().is_err());
    }

    #[test]
    fn upstreams_read_as_either_kind() {
        let http: UpstreamDefinition =
            serde_json::from_str(r#"{"url": "http://127.0.0.1:3901/mcp"}"#).unwrap();
        assert!(matches!(http, UpstreamDefinition::Http { .. }));
        let stdio: UpstreamDefinition =
            serde_json::from_str(r#"{"command": "npx", "args": ["-y", "server"]}"#).unwrap();
        assert!(matches!(stdio, UpstreamDefinition::Stdio { .. }));
        assert!(serde_json::from_str::<UpstreamDefinition>(r#"{"port": 1}"#).is_err());
    }

    #[test]
    fn times_round_trip_as_rfc3339() {
        let org = Organisation {
            id: OrganisationId::new_random(),
            name: "acme".into(),
            labels: BTreeMap::from([("region".into(), "eu".into())]),
            created_at: SystemTime::UNIX_EPOCH
                + std::time::Duration::from_millis(1_700_000_000_123),
            updated_at: SystemTime::UNIX_EPOCH,
        };
        let json = serde_json::to_value(&org).unwrap();
        assert_eq!(json["created_at"], "2023-11-14T22:13:20.123Z");
        assert_eq!(serde_json::from_value::<Organisation>(json).unwrap(), org);
    }

    #[test]
    fn credentials_never_show_their_hash() {
        let credentials = UserCredentials {
            user: User {
                id: UserId::new_random(),
                organisation: OrganisationId::new_random(),
                email: "a@example.com".into(),
                role: Role::Owner,
                created_at: SystemTime::UNIX_EPOCH,
                updated_at: SystemTime::UNIX_EPOCH,
            },
            password_hash: "$argon2id$secret".into(),
        };
        assert!(!format!("{credentials:?}").contains("argon2id"));
    }
}
