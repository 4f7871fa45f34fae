//! The audit log: batches of events in one multi-row insert each.

use async_trait::async_trait;
use cerberus_core::audit::{AuditEvent, AuditStore};
use cerberus_core::store::StoreError;

use crate::rows::{millis, store_error};
use crate::{Backend, SqlStore};

/// Columns of one audit row.
const COLUMNS: [&str; 15] = [
    "id",
    "occurred_at",
    "organisation_id",
    "workspace_id",
    "agent_id",
    "key_prefix",
    "session_id",
    "jsonrpc_id",
    "direction",
    "method",
    "target",
    "decision",
    "trace",
    "size_bytes",
    "overhead_us",
];

/// Rows per statement: one round trip (to the server, or to SQLite's connection thread) for many rows,
/// well under both backends' limits on bound parameters.
const ROWS_PER_STATEMENT: usize = 500;

/// The insert of `rows` rows. SQLite gets anonymous `?` parameters: it looks a numbered or named
/// parameter up by a linear scan, which made a 500-row statement spend most of its time binding.
fn statement(rows: usize, backend: Backend) -> String {
    let mut sql = format!("INSERT INTO audit_logs ({}) VALUES ", COLUMNS.join(", "));
    for row in 0..rows {
        if row > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for column in 0..COLUMNS.len() {
            if column > 0 {
                sql.push_str(", ");
            }
            match backend {
                Backend::Sqlite => sql.push('?'),
                Backend::Postgres => {
                    sql.push_str(&format!("${}", row * COLUMNS.len() + column + 1))
                }
            }
        }
        sql.push(')');
    }
    // A retried batch whose first attempt did land stores nothing twice.
    sql.push_str(" ON CONFLICT (id) DO NOTHING");
    sql
}

fn int(value: impl TryInto<i64>) -> i64 {
    value.try_into().unwrap_or(i64::MAX)
}

#[async_trait]
impl AuditStore for SqlStore {
    async fn append(&self, events: &[AuditEvent]) -> Result<(), StoreError> {
        let mut transaction = self.pool.begin().await.map_err(store_error)?;
        for chunk in events.chunks(ROWS_PER_STATEMENT) {
            let sql = statement(chunk.len(), self.backend);
            let mut query = sqlx::query(&sql);
            for event in chunk {
                let trace = serde_json::to_string(&event.trace)
                    .map_err(|e| StoreError::Unavailable(e.to_string()))?;
                query = query
                    .bind(event.id.to_string())
                    .bind(millis(event.time))
                    .bind(event.identity.organisation.to_string())
                    .bind(event.identity.workspace.to_string())
                    .bind(event.identity.agent.to_string())
                    .bind(event.key_prefix.clone())
                    .bind(event.session.clone())
                    .bind(event.jsonrpc_id.clone())
                    .bind(event.direction.as_str())
                    .bind(event.method.clone())
                    .bind(event.target.clone())
                    .bind(event.decision.as_str())
                    .bind(trace)
                    .bind(int(event.size_bytes))
                    .bind(int(event.overhead_us));
            }
            query
                .execute(&mut *transaction)
                .await
                .map_err(store_error)?;
        }
        transaction.commit().await.map_err(store_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_number_their_parameters_row_by_row() {
        let sql = statement(2, Backend::Postgres);
        assert!(sql.contains("($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"));
        assert!(sql.ends_with("$29, $30) ON CONFLICT (id) DO NOTHING"));
        let sql = statement(2, Backend::Sqlite);
        assert_eq!(sql.matches('?').count(), 30);
        assert!(!sql.contains('$'));
    }
}
