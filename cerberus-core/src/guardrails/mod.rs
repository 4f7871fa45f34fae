//! The built-in guardrails, and the pieces custom guardrails can reuse.
//!
//! | type | module |
//! |---|---|
//! | `rbac` | [`rbac`] |
//! | `pii_ssn`, `pii_credit_card`, `pii_email`, `pii_phone`, `pii_ip_address` | [`pii`] |
//! | `rate_limit_per_minute`, `rate_limit_per_hour` | [`rate_limit`] |
//! | `content_large_documents`, `content_structured_data`, `content_source_code` | [`content`] |

pub mod content;
pub mod pii;
pub mod rate_limit;
pub mod rbac;
pub mod wildcard;

use serde::{Deserialize, Serialize};

use crate::guardrail::Direction;

/// The `direction` setting: which messages a guardrail inspects.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Directions {
    /// Messages from the client to the server.
    Request,
    /// Messages from the server to the client.
    Response,
    /// Both.
    #[default]
    Both,
}

impl Directions {
    /// Whether a message travelling in `direction` is inspected.
    pub fn includes(self, direction: Direction) -> bool {
        match self {
            Self::Both => true,
            Self::Request => direction == Direction::Request,
            Self::Response => direction == Direction::Response,
        }
    }
}
