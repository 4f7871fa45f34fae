//! Who is calling: organisation, workspace and agent identifiers.

use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A new random identifier.
            pub fn new_random() -> Self {
                Self(Uuid::new_v4())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl From<Uuid> for $name {
            fn from(id: Uuid) -> Self {
                Self(id)
            }
        }
    };
}

id_type!(
    /// Identifies an organisation, the tenant that owns everything else.
    OrganisationId
);
id_type!(
    /// Identifies an MCP server workspace within an organisation.
    WorkspaceId
);
id_type!(
    /// Identifies an agent access: one client credential within a workspace.
    AgentId
);

/// The caller of a message, as resolved from its credential.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Identity {
    /// The tenant.
    pub organisation: OrganisationId,
    /// The MCP server workspace the agent reaches.
    pub workspace: WorkspaceId,
    /// The agent itself.
    pub agent: AgentId,
}

impl Identity {
    /// An identity of three fresh random ids, for dry runs and tests.
    pub fn new_random() -> Self {
        Self {
            organisation: OrganisationId::new_random(),
            workspace: WorkspaceId::new_random(),
            agent: AgentId::new_random(),
        }
    }
}
