//! Who is calling: organisation, workspace and agent identifiers, and their names and labels.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The namespace of ids derived from names ([`AgentId::from_name`] and its siblings).
pub(crate) const NAMES: Uuid = Uuid::from_u128(0x6365_7262_6572_7573_2d6e_616d_6573_0001);

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

            /// A stable identifier for `name` (a user, a client, a credential's fingerprint): the
            /// same name gives the same id in every process, and ids of different kinds never meet.
            pub fn from_name(name: impl AsRef<[u8]>) -> Self {
                let kind = stringify!($name).as_bytes();
                let mut text = Vec::with_capacity(kind.len() + 1 + name.as_ref().len());
                text.extend_from_slice(kind);
                text.push(b':');
                text.extend_from_slice(name.as_ref());
                Self(Uuid::new_v5(&$crate::identity::NAMES, &text))
            }
        }

        impl $name {
            /// The identifier written in a URL path, in its one canonical form (lower-case,
            /// hyphenated): another spelling of the same id names nothing, so that each resource has
            /// one URL.
            pub fn from_path(segment: &str) -> Option<Self> {
                let id = Uuid::try_parse(segment).ok()?;
                (id.hyphenated().to_string() == segment).then_some(Self(id))
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
    /// The organisation and workspace of every [`Identity::standalone`] caller: the nil id.
    pub const STANDALONE: (OrganisationId, WorkspaceId) =
        (OrganisationId(Uuid::nil()), WorkspaceId(Uuid::nil()));

    /// A caller of a server that has no organisations or workspaces of its own (an MCP server that
    /// embeds the tower layer, say): `agent` alone tells callers apart, for rate limits, sessions and
    /// audit records; the organisation and workspace are [`Identity::STANDALONE`]'s.
    ///
    /// ```
    /// use cerberus_core::{AgentId, Identity};
    ///
    /// let alice = Identity::standalone(AgentId::from_name("alice@example.com"));
    /// assert_eq!(alice, Identity::standalone(AgentId::from_name("alice@example.com")));
    /// assert_ne!(alice, Identity::standalone(AgentId::from_name("bob@example.com")));
    /// ```
    pub fn standalone(agent: AgentId) -> Self {
        let (organisation, workspace) = Self::STANDALONE;
        Self {
            organisation,
            workspace,
            agent,
        }
    }

    /// An identity of three fresh random ids, for dry runs and tests.
    pub fn new_random() -> Self {
        Self {
            organisation: OrganisationId::new_random(),
            workspace: WorkspaceId::new_random(),
            agent: AgentId::new_random(),
        }
    }
}

/// The names and labels of a caller's organisation, workspace and agent access: what a guardrail may
/// read about the caller beside the ids (a `rule`'s `agent.labels`, for example).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallerProfile {
    /// The organisation's.
    pub organisation: Profile,
    /// The workspace's.
    pub workspace: Profile,
    /// The agent access's.
    pub agent: Profile,
}

/// The name and labels of one organisation, workspace or agent access.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    /// Its name, as an admin gave it.
    pub name: String,
    /// Key-value pairs an admin set on it (`team: payments`, `tier: trusted`).
    pub labels: BTreeMap<String, String>,
    /// The groups its identity provider puts it in: a person signed in with OAuth; empty for
    /// everything else.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
}

/// The most labels one organisation, workspace or agent access may carry.
pub const MAX_LABELS: usize = 64;
/// The longest label key, in characters.
pub const MAX_LABEL_KEY_CHARS: usize = 63;
/// The longest label value, in characters.
pub const MAX_LABEL_VALUE_CHARS: usize = 256;

/// Checks labels as an admin writes them: at most [`MAX_LABELS`]; keys of 1 to
/// [`MAX_LABEL_KEY_CHARS`] ASCII letters, digits, `_`, `-`, `.` and `/`, starting with a letter or
/// digit (so that a rule reads `agent.labels.team` or `agent.labels["cost-centre"]`); values of at
/// most [`MAX_LABEL_VALUE_CHARS`] characters, none a control character. The error names the label.
///
/// ```
/// use std::collections::BTreeMap;
/// let good = BTreeMap::from([("team".to_owned(), "payments".to_owned())]);
/// assert!(cerberus_core::check_labels(&good).is_ok());
/// let bad = BTreeMap::from([("a b".to_owned(), "x".to_owned())]);
/// assert_eq!(cerberus_core::check_labels(&bad).unwrap_err().0, "a b");
/// ```
pub fn check_labels(labels: &BTreeMap<String, String>) -> Result<(), (String, String)> {
    if labels.len() > MAX_LABELS {
        return Err((
            String::new(),
            format!("at most {MAX_LABELS} labels, not {}", labels.len()),
        ));
    }
    for (key, value) in labels {
        let starts_well = key
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric());
        let key_ok = starts_well
            && key.len() <= MAX_LABEL_KEY_CHARS
            && key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'/'));
        if !key_ok {
            return Err((
                key.clone(),
                format!(
                    "a label key is 1 to {MAX_LABEL_KEY_CHARS} letters, digits, `_`, `-`, `.` and `/`, starting with a letter or digit"
                ),
            ));
        }
        if value.chars().count() > MAX_LABEL_VALUE_CHARS || value.chars().any(char::is_control) {
            return Err((
                key.clone(),
                format!(
                    "a label value is at most {MAX_LABEL_VALUE_CHARS} characters, none a control character"
                ),
            ));
        }
    }
    Ok(())
}
