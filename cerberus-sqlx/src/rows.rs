//! Between rows and values: times as Unix milliseconds, ids as UUID text, hashes as hex, and the
//! database's errors as [`StoreError`]s that never carry SQL details to an API client.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cerberus_core::store::{
    AgentAccess, Organisation, PolicyTarget, StoreError, StoredPolicy, User, Workspace,
};
use cerberus_core::{AgentId, Cause, OrganisationId, WorkspaceId};
use sqlx::Row;
use sqlx::any::AnyRow;
use uuid::Uuid;

/// The columns [`organisation`] reads.
pub(crate) const ORGANISATION_COLUMNS: &str = "id, name, labels, created_at, updated_at";
/// The columns [`user`] reads.
pub(crate) const USER_COLUMNS: &str = "id, organisation_id, email, role, created_at, updated_at";
/// The columns [`workspace`] reads.
pub(crate) const WORKSPACE_COLUMNS: &str =
    "id, organisation_id, name, labels, environment, upstream, created_at, updated_at";
/// The columns [`agent_access`] reads.
pub(crate) const AGENT_COLUMNS: &str = "id, organisation_id, workspace_id, name, labels, key_prefix, created_at, \
     rotated_at, previous_key_valid_until, expires_at, revoked_at";
/// The columns [`policy`] reads.
pub(crate) const POLICY_COLUMNS: &str =
    "id, organisation_id, level, target_id, document, created_at, updated_at";

/// A time as stored.
pub(crate) fn millis(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The current time as stored.
pub(crate) fn now() -> i64 {
    millis(SystemTime::now())
}

/// A stored time.
pub(crate) fn time(millis: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(u64::try_from(millis).unwrap_or(0))
}

/// A key or token hash as stored.
pub(crate) fn hash_text(hash: [u8; 32]) -> String {
    hex::encode(hash)
}

/// A database error, as the store reports it: a unique violation is a conflict; a data exception
/// (SQLSTATE class 22, such as a byte sequence the encoding cannot hold) is a refusal that trying
/// again will not mend; anything else makes the store unavailable.
pub(crate) fn store_error(error: sqlx::Error) -> StoreError {
    if let sqlx::Error::Database(e) = &error {
        if e.is_unique_violation() {
            return StoreError::Conflict("a row with that unique value".into());
        }
        // PostgreSQL's five-character SQLSTATE; SQLite's codes are numbers of up to four digits.
        if e.code()
            .is_some_and(|code| code.len() == 5 && code.starts_with("22"))
        {
            return StoreError::Rejected(Cause::new(error));
        }
    }
    StoreError::Unavailable(Cause::new(error))
}

/// Text as stored: what both PostgreSQL and SQLite can hold. PostgreSQL's `text` cannot hold a NUL
/// character, which a client may put in any string of a message (a tool name, a method): each is
/// stored as the six characters `\u0000`, as JSON writes it. Text without one is borrowed as it is.
/// Every text that comes from outside goes through here on its way in, whether it is stored or
/// searched for, so that a search finds what was stored.
pub(crate) fn storable(text: &str) -> std::borrow::Cow<'_, str> {
    if text.contains('\0') {
        std::borrow::Cow::Owned(text.replace('\0', "\\u0000"))
    } else {
        std::borrow::Cow::Borrowed(text)
    }
}

/// A unique violation named for what it means to the caller.
pub(crate) fn conflict(what: &str) -> impl Fn(sqlx::Error) -> StoreError + '_ {
    move |error| match store_error(error) {
        StoreError::Conflict(_) => StoreError::Conflict(what.to_owned()),
        other => other,
    }
}

pub(crate) fn corrupt(column: &str, error: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(Cause::message(format!(
        "stored {column} is unreadable: {error}"
    )))
}

pub(crate) fn text(row: &AnyRow, column: &str) -> Result<String, StoreError> {
    row.try_get::<String, _>(column)
        .map_err(|e| corrupt(column, e))
}

fn uuid(row: &AnyRow, column: &str) -> Result<Uuid, StoreError> {
    Uuid::parse_str(&text(row, column)?).map_err(|e| corrupt(column, e))
}

pub(crate) fn at(row: &AnyRow, column: &str) -> Result<SystemTime, StoreError> {
    row.try_get::<i64, _>(column)
        .map(time)
        .map_err(|e| corrupt(column, e))
}

pub(crate) fn maybe_at(row: &AnyRow, column: &str) -> Result<Option<SystemTime>, StoreError> {
    row.try_get::<Option<i64>, _>(column)
        .map(|t| t.map(time))
        .map_err(|e| corrupt(column, e))
}

fn parsed<T: std::str::FromStr<Err = String>>(row: &AnyRow, column: &str) -> Result<T, StoreError> {
    text(row, column)?.parse().map_err(|e| corrupt(column, e))
}

pub(crate) fn json<T: serde::de::DeserializeOwned>(
    row: &AnyRow,
    column: &str,
) -> Result<T, StoreError> {
    serde_json::from_str(&text(row, column)?).map_err(|e| corrupt(column, e))
}

/// An organisation from a row of [`ORGANISATION_COLUMNS`].
pub(crate) fn organisation(row: &AnyRow) -> Result<Organisation, StoreError> {
    Ok(Organisation {
        id: OrganisationId(uuid(row, "id")?),
        name: text(row, "name")?,
        labels: json(row, "labels")?,
        created_at: at(row, "created_at")?,
        updated_at: at(row, "updated_at")?,
    })
}

/// A user from a row of [`USER_COLUMNS`].
pub(crate) fn user(row: &AnyRow) -> Result<User, StoreError> {
    Ok(User {
        id: cerberus_core::store::UserId(uuid(row, "id")?),
        organisation: OrganisationId(uuid(row, "organisation_id")?),
        email: text(row, "email")?,
        role: parsed(row, "role")?,
        created_at: at(row, "created_at")?,
        updated_at: at(row, "updated_at")?,
    })
}

/// A workspace from a row of [`WORKSPACE_COLUMNS`].
pub(crate) fn workspace(row: &AnyRow) -> Result<Workspace, StoreError> {
    Ok(Workspace {
        id: WorkspaceId(uuid(row, "id")?),
        organisation: OrganisationId(uuid(row, "organisation_id")?),
        name: text(row, "name")?,
        labels: json(row, "labels")?,
        environment: parsed(row, "environment")?,
        upstream: json(row, "upstream")?,
        created_at: at(row, "created_at")?,
        updated_at: at(row, "updated_at")?,
    })
}

/// An agent access from a row of [`AGENT_COLUMNS`].
pub(crate) fn agent_access(row: &AnyRow) -> Result<AgentAccess, StoreError> {
    Ok(AgentAccess {
        id: AgentId(uuid(row, "id")?),
        organisation: OrganisationId(uuid(row, "organisation_id")?),
        workspace: WorkspaceId(uuid(row, "workspace_id")?),
        name: text(row, "name")?,
        labels: json(row, "labels")?,
        key_prefix: text(row, "key_prefix")?,
        created_at: at(row, "created_at")?,
        rotated_at: maybe_at(row, "rotated_at")?,
        previous_key_valid_until: maybe_at(row, "previous_key_valid_until")?,
        expires_at: maybe_at(row, "expires_at")?,
        revoked_at: maybe_at(row, "revoked_at")?,
    })
}

/// A policy from a row of [`POLICY_COLUMNS`].
pub(crate) fn policy(row: &AnyRow) -> Result<StoredPolicy, StoreError> {
    let target_id = uuid(row, "target_id")?;
    let target = match text(row, "level")?.as_str() {
        "organisation" => PolicyTarget::Organisation(OrganisationId(target_id)),
        "workspace" => PolicyTarget::Workspace(WorkspaceId(target_id)),
        "agent" => PolicyTarget::Agent(AgentId(target_id)),
        other => return Err(corrupt("level", other)),
    };
    Ok(StoredPolicy {
        id: cerberus_core::store::PolicyId(uuid(row, "id")?),
        organisation: OrganisationId(uuid(row, "organisation_id")?),
        target,
        document: json(row, "document")?,
        created_at: at(row, "created_at")?,
        updated_at: at(row, "updated_at")?,
    })
}

/// A hash column as bytes.
pub(crate) fn hash(row: &AnyRow, column: &str) -> Result<[u8; 32], StoreError> {
    let bytes = hex::decode(text(row, column)?).map_err(|e| corrupt(column, e))?;
    bytes
        .try_into()
        .map_err(|_| corrupt(column, "not 32 bytes"))
}

/// An SQL `LIMIT`/`OFFSET` pair from a page.
pub(crate) fn page(page: cerberus_core::store::Page) -> (i64, i64) {
    (
        i64::from(page.limit.min(1000)),
        i64::try_from(page.offset).unwrap_or(i64::MAX),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nul_characters_are_stored_as_their_json_escape() {
        assert_eq!(storable("tools/call"), "tools/call");
        assert!(matches!(storable("plain"), std::borrow::Cow::Borrowed(_)));
        assert_eq!(storable("a\0b\0"), "a\\u0000b\\u0000");
    }
}
