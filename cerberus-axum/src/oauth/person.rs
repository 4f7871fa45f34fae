//! A verified access token, and the person it names.

use cerberus_core::{AgentId, WorkspaceId};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

use super::{ClaimNames, IdentityProvider, MAX_CLAIM_BYTES, MAX_GROUPS, TokenRefusal};

/// The `iss` of `token`, read before its signature is checked: it only chooses which provider's
/// keys check it.
pub(super) fn unverified_issuer(token: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Issuer {
        iss: String,
    }
    jsonwebtoken::dangerous::insecure_decode::<Issuer>(token)
        .ok()
        .map(|data| data.claims.iss)
}

/// The claims of `token` once its signature (with `key`, under `algorithm`), issuer, audience (one
/// of `audiences`), expiry and start are checked.
pub(super) fn verify(
    token: &str,
    key: &DecodingKey,
    algorithm: Algorithm,
    provider: &IdentityProvider,
    audiences: &[String],
    leeway: u64,
) -> Result<Map<String, Value>, TokenRefusal> {
    let mut validation = Validation::new(algorithm);
    validation.set_issuer(&[&provider.issuer]);
    validation.set_audience(audiences);
    validation.set_required_spec_claims(&["exp", "iss", "aud"]);
    validation.validate_exp = true;
    validation.validate_nbf = true;
    validation.leeway = leeway;
    jsonwebtoken::decode::<Map<String, Value>>(token, key, &validation)
        .map(|data| data.claims)
        .map_err(|e| {
            TokenRefusal::Invalid(
                match e.kind() {
                    ErrorKind::ExpiredSignature => "the access token has expired",
                    ErrorKind::ImmatureSignature => "the access token is not valid yet",
                    ErrorKind::InvalidAudience => {
                        "the access token is for another resource than this MCP server"
                    }
                    ErrorKind::InvalidIssuer => {
                        "the access token's issuer is not trusted for this MCP server"
                    }
                    ErrorKind::InvalidSignature => "the access token's signature is wrong",
                    ErrorKind::MissingRequiredClaim(_) => {
                        "the access token lacks `exp`, `iss` or `aud`"
                    }
                    _ => "the access token cannot be read",
                }
                .to_owned(),
            )
        })
}

/// Who a verified token names, and what it grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Person {
    pub(super) subject: String,
    pub(super) email: Option<String>,
    pub(super) groups: Vec<String>,
    pub(super) scopes: Vec<String>,
}

/// What a person's route depends on: the same key gets the same cached route.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct PersonKey {
    resource: u64,
    issuer: String,
    subject: String,
    email: Option<String>,
    groups: Vec<String>,
}

impl Person {
    /// The person of verified `claims`, read where `names` says.
    pub(super) fn from_claims(
        claims: &Map<String, Value>,
        names: &ClaimNames,
    ) -> Result<Self, TokenRefusal> {
        let invalid = |message: String| TokenRefusal::Invalid(message);
        let subject = match claims.get(&names.subject) {
            Some(Value::String(subject)) if !subject.is_empty() => subject.clone(),
            _ => {
                return Err(invalid(format!(
                    "the access token names no subject (`{}`)",
                    names.subject
                )));
            }
        };
        // An address the provider says it has not verified is not taken (anyone could type it).
        let verified = !matches!(claims.get("email_verified"), Some(Value::Bool(false)));
        let email = match claims.get(&names.email) {
            Some(Value::String(email)) if !email.is_empty() && verified => Some(email.clone()),
            _ => None,
        };
        // One string is one group, spaces and all ("Finance Admins").
        let groups = names_in(claims.get(&names.groups), false);
        // `scope` (RFC 9068: space-separated) or `scp` (a list, as some providers write it).
        let mut scopes = names_in(claims.get("scope"), true);
        scopes.extend(names_in(claims.get("scp"), true));
        let too_long = |text: &String| text.len() > MAX_CLAIM_BYTES;
        if too_long(&subject)
            || email.as_ref().is_some_and(too_long)
            || groups.iter().any(too_long)
            || groups.len() > MAX_GROUPS
        {
            return Err(invalid(format!(
                "the access token's identity claims are too large (at most {MAX_GROUPS} groups of {MAX_CLAIM_BYTES} bytes)"
            )));
        }
        Ok(Self {
            subject,
            email,
            groups,
            scopes,
        })
    }

    /// The identity of this person of `issuer` in `workspace`: the same in every process, and apart
    /// in each workspace, as agent accesses are (rate limits, stdio processes and held calls count
    /// per workspace).
    pub(super) fn agent_id(&self, workspace: WorkspaceId, issuer: &str) -> AgentId {
        AgentId::from_name(format!("oauth\n{workspace}\n{issuer}\n{}", self.subject))
    }

    /// The key of this person's route in build `resource` of a protected workspace, through the
    /// provider of `issuer`.
    pub(super) fn key(&self, resource: u64, issuer: &str) -> PersonKey {
        PersonKey {
            resource,
            issuer: issuer.to_owned(),
            subject: self.subject.clone(),
            email: self.email.clone(),
            groups: self.groups.clone(),
        }
    }
}

/// A claim of names: a list of strings, or one string (of space-separated names when `split`);
/// sorted, without repeats.
fn names_in(claim: Option<&Value>, split: bool) -> Vec<String> {
    let mut names: Vec<String> = match claim {
        Some(Value::String(names)) if split => {
            names.split_ascii_whitespace().map(str::to_owned).collect()
        }
        Some(Value::String(name)) if !name.is_empty() => vec![name.clone()],
        Some(Value::Array(names)) => names
            .iter()
            .filter_map(Value::as_str)
            .filter(|name| !name.is_empty())
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    };
    names.sort_unstable();
    names.dedup();
    names
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    /// Arbitrary JSON, a few levels deep.
    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            "[a-z ]{0,12}".prop_map(Value::from),
        ];
        leaf.prop_recursive(3, 24, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map("[a-z_]{1,8}", inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn any_text_is_read_or_refused_without_panicking(token in ".{0,200}", parts in prop::collection::vec("[A-Za-z0-9_-]{0,40}", 3)) {
            let _ = unverified_issuer(&token);
            let _ = unverified_issuer(&parts.join("."));
        }

        #[test]
        fn any_claims_give_a_person_or_a_refusal(
            mut claims in prop::collection::btree_map("[a-z_]{1,8}", json_value(), 0..8),
            subject in prop::option::of(json_value()),
            groups in prop::option::of(json_value()),
        ) {
            if let Some(subject) = subject { claims.insert("sub".into(), subject); }
            if let Some(groups) = groups { claims.insert("groups".into(), groups); }
            let claims: Map<String, Value> = claims.into_iter().collect();
            match Person::from_claims(&claims, &ClaimNames::default()) {
                Ok(person) => {
                    prop_assert!(!person.subject.is_empty());
                    prop_assert!(person.groups.len() <= MAX_GROUPS);
                    prop_assert!(person.groups.windows(2).all(|w| w[0] < w[1]), "sorted, no repeats");
                }
                Err(refusal) => prop_assert!(matches!(refusal, TokenRefusal::Invalid(_))),
            }
        }
    }

    fn claims(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => Map::new(),
        }
    }

    #[test]
    fn reads_the_identity_where_the_provider_puts_it() {
        let person = Person::from_claims(
            &claims(json!({"sub": "00u1", "email": "ann@acme.example",
                           "groups": ["sales", "eng", "sales"], "scope": "mcp openid"})),
            &ClaimNames::default(),
        )
        .unwrap();
        assert_eq!(person.subject, "00u1");
        assert_eq!(person.email.as_deref(), Some("ann@acme.example"));
        assert_eq!(person.groups, ["eng", "sales"]);
        assert_eq!(person.scopes, ["mcp", "openid"]);

        let names = ClaimNames {
            subject: "oid".into(),
            email: "upn".into(),
            groups: "roles".into(),
        };
        let person = Person::from_claims(
            &claims(
                json!({"sub": "ignored", "oid": "e7a1", "upn": "bo@acme.example",
                           "roles": "Finance Admins", "scp": ["mcp.tools"]}),
            ),
            &names,
        )
        .unwrap();
        assert_eq!(person.subject, "e7a1");
        assert_eq!(person.groups, ["Finance Admins"], "one string is one group");
        assert_eq!(person.scopes, ["mcp.tools"]);
    }

    #[test]
    fn refuses_a_token_without_a_subject_or_with_oversized_claims() {
        for claims_value in [
            json!({}),
            json!({"sub": ""}),
            json!({"sub": 7}),
            json!({"sub": "x".repeat(MAX_CLAIM_BYTES + 1)}),
            json!({"sub": "a", "groups": (0..=MAX_GROUPS).map(|n| n.to_string()).collect::<Vec<_>>()}),
        ] {
            assert!(
                matches!(
                    Person::from_claims(&claims(claims_value.clone()), &ClaimNames::default()),
                    Err(TokenRefusal::Invalid(_))
                ),
                "{claims_value}"
            );
        }
    }

    #[test]
    fn a_person_is_one_identity_per_workspace_and_apart_from_other_issuers() {
        let person =
            Person::from_claims(&claims(json!({"sub": "00u1"})), &ClaimNames::default()).unwrap();
        let (here, there) = (
            WorkspaceId::from_name("here"),
            WorkspaceId::from_name("there"),
        );
        let issuer = "https://login.acme.example";
        assert_eq!(person.agent_id(here, issuer), person.agent_id(here, issuer));
        assert_ne!(
            person.agent_id(here, issuer),
            person.agent_id(here, "https://login.other.example")
        );
        assert_ne!(
            person.agent_id(here, issuer),
            person.agent_id(there, issuer)
        );
    }

    #[test]
    fn an_unverified_email_is_not_taken() {
        let person = Person::from_claims(
            &claims(json!({"sub": "00u1", "email": "ceo@acme.example", "email_verified": false})),
            &ClaimNames::default(),
        )
        .unwrap();
        assert_eq!(person.email, None);
    }
}
