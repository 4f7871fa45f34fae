//! Approvals of held calls, by organisation.

use async_trait::async_trait;
use cerberus_core::store::{
    Approval, ApprovalId, ApprovalStatus, ApprovalStore, Page, StoreError, Verdict,
};
use cerberus_core::{AgentId, Cause, OrganisationId, WorkspaceId};
use sqlx::Row;
use sqlx::any::AnyRow;
use uuid::Uuid;

use crate::SqlStore;
use crate::rows::{self, at, corrupt, maybe_at, millis, now, storable, store_error, text};

/// The columns [`approval`] reads.
const COLUMNS: &str = "id, organisation_id, workspace_id, agent_id, method, target, arguments, \
     guardrail, reason, status, requested_at, expires_at, decided_by, decided_at, note";

fn optional_text(row: &AnyRow, column: &str) -> Result<Option<String>, StoreError> {
    row.try_get::<Option<String>, _>(column)
        .map_err(|e| corrupt(column, e))
}

fn id(row: &AnyRow, column: &str) -> Result<Uuid, StoreError> {
    Uuid::parse_str(&text(row, column)?).map_err(|e| corrupt(column, e))
}

/// An approval from a row of [`COLUMNS`].
fn approval(row: &AnyRow) -> Result<Approval, StoreError> {
    let arguments = optional_text(row, "arguments")?
        .map(|text| serde_json::from_str(&text).map_err(|e| corrupt("arguments", e)))
        .transpose()?;
    Ok(Approval {
        id: ApprovalId(id(row, "id")?),
        organisation: OrganisationId(id(row, "organisation_id")?),
        workspace: WorkspaceId(id(row, "workspace_id")?),
        agent: AgentId(id(row, "agent_id")?),
        method: text(row, "method")?,
        target: optional_text(row, "target")?,
        arguments,
        guardrail: text(row, "guardrail")?,
        reason: text(row, "reason")?,
        status: text(row, "status")?
            .parse()
            .map_err(|e: String| corrupt("status", e))?,
        requested_at: at(row, "requested_at")?,
        expires_at: at(row, "expires_at")?,
        decided_by: optional_text(row, "decided_by")?,
        decided_at: maybe_at(row, "decided_at")?,
        note: optional_text(row, "note")?,
    })
}

#[async_trait]
impl ApprovalStore for SqlStore {
    async fn create_approval(&self, approval: &Approval) -> Result<(), StoreError> {
        let arguments = approval
            .arguments
            .as_ref()
            .map(serde_json::to_string)
            .transpose()
            .map_err(|e| StoreError::Rejected(Cause::new(e)))?;
        sqlx::query(
            "INSERT INTO approvals (id, organisation_id, workspace_id, agent_id, method, target, \
             arguments, guardrail, reason, status, requested_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(approval.id.to_string())
        .bind(approval.organisation.to_string())
        .bind(approval.workspace.to_string())
        .bind(approval.agent.to_string())
        .bind(storable(&approval.method).as_ref())
        .bind(approval.target.as_deref().map(|t| storable(t).into_owned()))
        .bind(arguments)
        .bind(storable(&approval.guardrail).as_ref())
        .bind(storable(&approval.reason).as_ref())
        .bind(approval.status.as_str())
        .bind(millis(approval.requested_at))
        .bind(millis(approval.expires_at))
        .execute(&self.pool)
        .await
        .map_err(store_error)?;
        Ok(())
    }

    async fn approval(
        &self,
        organisation: OrganisationId,
        id: ApprovalId,
    ) -> Result<Option<Approval>, StoreError> {
        sqlx::query(&format!(
            "SELECT {COLUMNS} FROM approvals WHERE organisation_id = $1 AND id = $2"
        ))
        .bind(organisation.to_string())
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await
        .map_err(store_error)?
        .as_ref()
        .map(approval)
        .transpose()
    }

    async fn approvals(
        &self,
        organisation: OrganisationId,
        status: Option<ApprovalStatus>,
        page: Page,
    ) -> Result<Vec<Approval>, StoreError> {
        let (limit, offset) = rows::page(page);
        sqlx::query(&format!(
            "SELECT {COLUMNS} FROM approvals WHERE organisation_id = $1 \
             AND ($2 IS NULL OR status = $2) ORDER BY requested_at DESC, id DESC LIMIT $3 OFFSET $4"
        ))
        .bind(organisation.to_string())
        .bind(status.map(ApprovalStatus::as_str))
        .bind(limit)
        .bind(offset)
        .fetch_all(&self.pool)
        .await
        .map_err(store_error)?
        .iter()
        .map(approval)
        .collect()
    }

    async fn decide_approval(
        &self,
        organisation: OrganisationId,
        id: ApprovalId,
        verdict: Verdict,
        by: &str,
        note: Option<&str>,
    ) -> Result<Option<Approval>, StoreError> {
        let status = match verdict {
            Verdict::Approve => ApprovalStatus::Approved,
            Verdict::Deny => ApprovalStatus::Denied,
        };
        let now = now();
        sqlx::query(
            "UPDATE approvals SET status = $3, decided_by = $4, decided_at = $5, note = $6 \
             WHERE organisation_id = $1 AND id = $2 AND status = 'pending' AND expires_at > $5",
        )
        .bind(organisation.to_string())
        .bind(id.to_string())
        .bind(status.as_str())
        .bind(by)
        .bind(now)
        .bind(note.map(|n| storable(n).into_owned()))
        .execute(&self.pool)
        .await
        .map_err(store_error)?;
        self.approval(organisation, id).await
    }

    async fn delete_approvals_before(
        &self,
        before: std::time::SystemTime,
    ) -> Result<u64, StoreError> {
        Ok(sqlx::query(
            "DELETE FROM approvals WHERE requested_at < $1 \
                 AND (status <> 'pending' OR expires_at < $2)",
        )
        .bind(millis(before))
        .bind(now())
        .execute(&self.pool)
        .await
        .map_err(store_error)?
        .rows_affected())
    }

    async fn expire_approval(
        &self,
        organisation: OrganisationId,
        id: ApprovalId,
    ) -> Result<Option<Approval>, StoreError> {
        sqlx::query(
            "UPDATE approvals SET status = 'timed_out', decided_at = $3 \
             WHERE organisation_id = $1 AND id = $2 AND status = 'pending'",
        )
        .bind(organisation.to_string())
        .bind(id.to_string())
        .bind(now())
        .execute(&self.pool)
        .await
        .map_err(store_error)?;
        self.approval(organisation, id).await
    }
}
