//! Pinned tool definitions, by organisation and workspace: shared by every instance, so that a tool
//! an admin approves through one is served by all.

use std::collections::HashMap;

use async_trait::async_trait;
use cerberus_core::pinning::{
    Approval, MAX_PINNED_TOOLS, PinStatus, PinStore, ToolDefinition, ToolPin,
};
use cerberus_core::store::StoreError;
use cerberus_core::{Cause, OrganisationId, WorkspaceId};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::SqlStore;
use crate::rows::{at, corrupt, maybe_at, now, storable, store_error, text};

/// The columns [`pin`] reads.
const PIN_COLUMNS: &str = "pinned_definition, pinned_at, approved_by, listed_definition, listed_at";

/// A definition as stored: the JSON of its pinned members.
fn definition_text(definition: &ToolDefinition) -> Result<String, StoreError> {
    serde_json::to_string(definition.members()).map_err(|e| StoreError::Rejected(Cause::new(e)))
}

fn definition(row: &AnyRow, column: &str) -> Result<ToolDefinition, StoreError> {
    let value: serde_json::Value =
        serde_json::from_str(&text(row, column)?).map_err(|e| corrupt(column, e))?;
    ToolDefinition::from_tool(&value).map_err(|e| corrupt(column, e))
}

/// A pin from a row of [`PIN_COLUMNS`].
fn pin(row: &AnyRow) -> Result<ToolPin, StoreError> {
    let pinned = match row
        .try_get::<Option<String>, _>("pinned_definition")
        .map_err(|e| corrupt("pinned_definition", e))?
    {
        Some(_) => Some(definition(row, "pinned_definition")?),
        None => None,
    };
    Ok(ToolPin {
        pinned,
        pinned_at: maybe_at(row, "pinned_at")?,
        approved_by: row
            .try_get::<Option<String>, _>("approved_by")
            .map_err(|e| corrupt("approved_by", e))?,
        listed: definition(row, "listed_definition")?,
        listed_at: at(row, "listed_at")?,
    })
}

/// What a listing is compared with: each stored tool's fingerprints.
struct Fingerprints {
    pinned: Option<String>,
    listed: String,
}

impl SqlStore {
    async fn fingerprints(
        &self,
        organisation: OrganisationId,
        workspace: WorkspaceId,
    ) -> Result<(HashMap<String, Fingerprints>, bool), StoreError> {
        let rows = sqlx::query(
            "SELECT tool, pinned_fingerprint, listed_fingerprint FROM tool_pins \
             WHERE organisation_id = $1 AND workspace_id = $2",
        )
        .bind(organisation.to_string())
        .bind(workspace.to_string())
        .fetch_all(&self.pool)
        .await
        .map_err(store_error)?;
        let mut stored = HashMap::with_capacity(rows.len());
        for row in &rows {
            stored.insert(
                text(row, "tool")?,
                Fingerprints {
                    pinned: row
                        .try_get::<Option<String>, _>("pinned_fingerprint")
                        .map_err(|e| corrupt("pinned_fingerprint", e))?,
                    listed: text(row, "listed_fingerprint")?,
                },
            );
        }
        let complete = sqlx::query(
            "SELECT 1 FROM tool_pin_workspaces WHERE organisation_id = $1 AND workspace_id = $2",
        )
        .bind(organisation.to_string())
        .bind(workspace.to_string())
        .fetch_optional(&self.pool)
        .await
        .map_err(store_error)?
        .is_some();
        Ok((stored, complete))
    }
}

#[async_trait]
impl PinStore for SqlStore {
    async fn record_listing(
        &self,
        organisation: OrganisationId,
        workspace: WorkspaceId,
        definitions: &[ToolDefinition],
        complete: bool,
    ) -> Result<Vec<PinStatus>, StoreError> {
        let (stored, was_complete) = self.fingerprints(organisation, workspace).await?;
        let (org, ws) = (organisation.to_string(), workspace.to_string());
        let now = now();
        let mut statuses = Vec::with_capacity(definitions.len());
        let mut count = stored.len();
        // Only what changed is written, in one transaction: a listing like the last writes nothing.
        let mut transaction = None;
        for definition in definitions {
            let name = storable(definition.name());
            let fingerprint = definition.fingerprint();
            if let Some(known) = stored.get(name.as_ref()) {
                if known.listed != fingerprint {
                    let tx = match &mut transaction {
                        Some(tx) => tx,
                        None => transaction.insert(self.pool.begin().await.map_err(store_error)?),
                    };
                    sqlx::query(
                        "UPDATE tool_pins SET listed_fingerprint = $4, listed_definition = $5, \
                         listed_at = $6 WHERE organisation_id = $1 AND workspace_id = $2 AND tool = $3",
                    )
                    .bind(&org)
                    .bind(&ws)
                    .bind(name.as_ref())
                    .bind(fingerprint)
                    .bind(definition_text(definition)?)
                    .bind(now)
                    .execute(&mut **tx)
                    .await
                    .map_err(store_error)?;
                }
                statuses.push(match &known.pinned {
                    None => PinStatus::New,
                    Some(pinned) if pinned == fingerprint => PinStatus::Approved,
                    Some(_) => PinStatus::Changed,
                });
                continue;
            }
            if count >= MAX_PINNED_TOOLS {
                statuses.push(PinStatus::New);
                continue;
            }
            count += 1;
            let first_use = !was_complete;
            let text = definition_text(definition)?;
            let tx = match &mut transaction {
                Some(tx) => tx,
                None => transaction.insert(self.pool.begin().await.map_err(store_error)?),
            };
            // Another instance may record the same tool at the same moment: the first row stands.
            sqlx::query(
                "INSERT INTO tool_pins (organisation_id, workspace_id, tool, pinned_fingerprint, \
                 pinned_definition, pinned_at, listed_fingerprint, listed_definition, listed_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
                 ON CONFLICT (organisation_id, workspace_id, tool) DO NOTHING",
            )
            .bind(&org)
            .bind(&ws)
            .bind(name.as_ref())
            .bind(first_use.then_some(fingerprint))
            .bind(first_use.then_some(text.as_str()))
            .bind(first_use.then_some(now))
            .bind(fingerprint)
            .bind(text.as_str())
            .bind(now)
            .execute(&mut **tx)
            .await
            .map_err(store_error)?;
            statuses.push(if first_use {
                PinStatus::Approved
            } else {
                PinStatus::New
            });
        }
        if complete && !was_complete {
            let tx = match &mut transaction {
                Some(tx) => tx,
                None => transaction.insert(self.pool.begin().await.map_err(store_error)?),
            };
            sqlx::query(
                "INSERT INTO tool_pin_workspaces (organisation_id, workspace_id, completed_at) \
                 VALUES ($1, $2, $3) ON CONFLICT (organisation_id, workspace_id) DO NOTHING",
            )
            .bind(&org)
            .bind(&ws)
            .bind(now)
            .execute(&mut **tx)
            .await
            .map_err(store_error)?;
        }
        if let Some(tx) = transaction {
            tx.commit().await.map_err(store_error)?;
        }
        Ok(statuses)
    }

    async fn pin(
        &self,
        organisation: OrganisationId,
        workspace: WorkspaceId,
        tool: &str,
    ) -> Result<Option<ToolPin>, StoreError> {
        sqlx::query(&format!(
            "SELECT {PIN_COLUMNS} FROM tool_pins \
             WHERE organisation_id = $1 AND workspace_id = $2 AND tool = $3"
        ))
        .bind(organisation.to_string())
        .bind(workspace.to_string())
        .bind(storable(tool).as_ref())
        .fetch_optional(&self.pool)
        .await
        .map_err(store_error)?
        .as_ref()
        .map(pin)
        .transpose()
    }

    async fn status(
        &self,
        organisation: OrganisationId,
        workspace: WorkspaceId,
        tool: &str,
    ) -> Result<Option<PinStatus>, StoreError> {
        let Some(row) = sqlx::query(
            "SELECT pinned_fingerprint, listed_fingerprint FROM tool_pins \
             WHERE organisation_id = $1 AND workspace_id = $2 AND tool = $3",
        )
        .bind(organisation.to_string())
        .bind(workspace.to_string())
        .bind(storable(tool).as_ref())
        .fetch_optional(&self.pool)
        .await
        .map_err(store_error)?
        else {
            return Ok(None);
        };
        let pinned = row
            .try_get::<Option<String>, _>("pinned_fingerprint")
            .map_err(|e| corrupt("pinned_fingerprint", e))?;
        let listed = text(&row, "listed_fingerprint")?;
        Ok(Some(match pinned {
            None => PinStatus::New,
            Some(pinned) if pinned == listed => PinStatus::Approved,
            Some(_) => PinStatus::Changed,
        }))
    }

    async fn pins(
        &self,
        organisation: OrganisationId,
        workspace: WorkspaceId,
    ) -> Result<Vec<ToolPin>, StoreError> {
        sqlx::query(&format!(
            "SELECT {PIN_COLUMNS} FROM tool_pins \
             WHERE organisation_id = $1 AND workspace_id = $2 ORDER BY tool"
        ))
        .bind(organisation.to_string())
        .bind(workspace.to_string())
        .fetch_all(&self.pool)
        .await
        .map_err(store_error)?
        .iter()
        .map(pin)
        .collect()
    }

    async fn approve(
        &self,
        organisation: OrganisationId,
        workspace: WorkspaceId,
        tool: &str,
        fingerprint: &str,
        approved_by: &str,
    ) -> Result<Approval, StoreError> {
        let approved = sqlx::query(
            "UPDATE tool_pins SET pinned_fingerprint = listed_fingerprint, \
             pinned_definition = listed_definition, pinned_at = $5, approved_by = $6 \
             WHERE organisation_id = $1 AND workspace_id = $2 AND tool = $3 \
             AND listed_fingerprint = $4",
        )
        .bind(organisation.to_string())
        .bind(workspace.to_string())
        .bind(storable(tool).as_ref())
        .bind(fingerprint)
        .bind(now())
        .bind(approved_by)
        .execute(&self.pool)
        .await
        .map_err(store_error)?
        .rows_affected()
            > 0;
        Ok(
            match (approved, self.pin(organisation, workspace, tool).await?) {
                (_, None) => Approval::Unknown,
                (true, Some(pin)) => Approval::Approved(pin),
                (false, Some(pin)) => Approval::Stale(pin),
            },
        )
    }
}
