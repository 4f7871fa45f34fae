//! The audit log: batches of events in one multi-row insert each.

use std::time::SystemTime;

use async_trait::async_trait;
use cerberus_core::audit::{AuditCursor, AuditEvent, AuditFilter, AuditStore};
use cerberus_core::store::StoreError;
use cerberus_core::{AgentId, Identity, OrganisationId, WorkspaceId};
use sqlx::Row;
use sqlx::any::AnyRow;
use uuid::Uuid;

use crate::rows::{millis, store_error, time};
use crate::{Backend, SqlStore};

/// Columns of one audit row.
const COLUMNS: [&str; 17] = [
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
    "upstream_status",
    "upstream_us",
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

/// The columns an audit record is read from.
const READ_COLUMNS: &str = "id, occurred_at, organisation_id, workspace_id, agent_id, key_prefix, \
     session_id, jsonrpc_id, direction, method, target, decision, trace, size_bytes, overhead_us, \
     upstream_status, upstream_us";

fn record(row: &AnyRow) -> Result<AuditEvent, StoreError> {
    let corrupt = |column: &str, e: &dyn std::fmt::Display| {
        StoreError::Unavailable(format!("stored audit {column} is unreadable: {e}"))
    };
    let text = |column: &str| -> Result<String, StoreError> {
        row.try_get::<String, _>(column)
            .map_err(|e| corrupt(column, &e))
    };
    let maybe = |column: &str| -> Result<Option<String>, StoreError> {
        row.try_get::<Option<String>, _>(column)
            .map_err(|e| corrupt(column, &e))
    };
    let uuid = |column: &str| -> Result<Uuid, StoreError> {
        Uuid::parse_str(&text(column)?).map_err(|e| corrupt(column, &e))
    };
    let number = |column: &str| -> Result<i64, StoreError> {
        row.try_get::<i64, _>(column)
            .map_err(|e| corrupt(column, &e))
    };
    let word = |column: &str| -> Result<serde_json::Value, StoreError> {
        Ok(serde_json::Value::String(text(column)?))
    };
    Ok(AuditEvent {
        id: uuid("id")?,
        time: time(number("occurred_at")?),
        identity: Identity {
            organisation: OrganisationId(uuid("organisation_id")?),
            workspace: WorkspaceId(uuid("workspace_id")?),
            agent: AgentId(uuid("agent_id")?),
        },
        key_prefix: maybe("key_prefix")?,
        session: maybe("session_id")?,
        jsonrpc_id: maybe("jsonrpc_id")?,
        direction: serde_json::from_value(word("direction")?)
            .map_err(|e| corrupt("direction", &e))?,
        method: maybe("method")?,
        target: maybe("target")?,
        decision: serde_json::from_value(word("decision")?).map_err(|e| corrupt("decision", &e))?,
        trace: serde_json::from_str(&text("trace")?).map_err(|e| corrupt("trace", &e))?,
        size_bytes: usize::try_from(number("size_bytes")?).unwrap_or(0),
        overhead_us: u64::try_from(number("overhead_us")?).unwrap_or(0),
        upstream_status: row
            .try_get::<Option<i64>, _>("upstream_status")
            .map_err(|e| corrupt("upstream_status", &e))?
            .and_then(|s| u16::try_from(s).ok()),
        upstream_us: row
            .try_get::<Option<i64>, _>("upstream_us")
            .map_err(|e| corrupt("upstream_us", &e))?
            .and_then(|u| u64::try_from(u).ok()),
    })
}

/// Records deleted per statement by retention, so that no statement holds the table for long.
const DELETE_CHUNK: i64 = 10_000;

/// The smallest UUIDv7 of the millisecond `millis`, as text: gateway record ids are UUIDv7, so the
/// records older than a time are the ids below this one, found through the primary key's index.
fn first_v7_of(millis: i64) -> String {
    let millis = u64::try_from(millis).unwrap_or(0) & 0xffff_ffff_ffff;
    format!(
        "{:08x}-{:04x}-7000-8000-000000000000",
        millis >> 16,
        millis & 0xffff
    )
}

#[async_trait]
impl AuditStore for SqlStore {
    async fn delete_audit_before(&self, before: SystemTime) -> Result<u64, StoreError> {
        let (cutoff, bound) = (millis(before), first_v7_of(millis(before)));
        let mut deleted = 0;
        loop {
            let done = sqlx::query(
                "DELETE FROM audit_logs WHERE id IN (SELECT id FROM audit_logs \
                 WHERE id < $1 AND occurred_at < $2 LIMIT $3)",
            )
            .bind(&bound)
            .bind(cutoff)
            .bind(DELETE_CHUNK)
            .execute(&self.pool)
            .await
            .map_err(store_error)?;
            deleted += done.rows_affected();
            if done.rows_affected() < u64::try_from(DELETE_CHUNK).unwrap_or(0) {
                return Ok(deleted);
            }
        }
    }

    async fn audit_records(
        &self,
        organisation: OrganisationId,
        filter: &AuditFilter,
        after: Option<AuditCursor>,
        limit: u32,
    ) -> Result<Vec<AuditEvent>, StoreError> {
        // Conditions and their values in one order, so that the parameters number themselves.
        let mut conditions = vec!["organisation_id = $1".to_owned()];
        let mut texts: Vec<(usize, String)> = vec![(1, organisation.to_string())];
        let mut numbers: Vec<(usize, i64)> = Vec::new();
        let mut next = 2;
        let mut text_condition = |column: &str, value: String, conditions: &mut Vec<String>| {
            conditions.push(format!("{column} = ${next}"));
            texts.push((next, value));
            next += 1;
        };
        if let Some(workspace) = filter.workspace {
            text_condition("workspace_id", workspace.to_string(), &mut conditions);
        }
        if let Some(agent) = filter.agent {
            text_condition("agent_id", agent.to_string(), &mut conditions);
        }
        if let Some(target) = &filter.target {
            text_condition("target", target.clone(), &mut conditions);
        }
        if let Some(decision) = filter.decision {
            text_condition("decision", decision.as_str().to_owned(), &mut conditions);
        }
        if let Some(method) = &filter.method {
            text_condition("method", method.clone(), &mut conditions);
        }
        if let Some(from) = filter.from {
            conditions.push(format!("occurred_at >= ${next}"));
            numbers.push((next, millis(from)));
            next += 1;
        }
        if let Some(to) = filter.to {
            conditions.push(format!("occurred_at < ${next}"));
            numbers.push((next, millis(to)));
            next += 1;
        }
        if let Some(cursor) = after {
            conditions.push(format!(
                "(occurred_at < ${next} OR (occurred_at = ${next} AND id < ${}))",
                next + 1
            ));
            numbers.push((next, millis(cursor.time)));
            texts.push((next + 1, cursor.id.to_string()));
            next += 2;
        }
        let sql = format!(
            "SELECT {READ_COLUMNS} FROM audit_logs WHERE {} ORDER BY occurred_at DESC, id DESC LIMIT ${next}",
            conditions.join(" AND ")
        );
        numbers.push((next, i64::from(limit)));
        // Bind in parameter order.
        let mut values: Vec<(usize, Result<String, i64>)> = texts
            .into_iter()
            .map(|(n, t)| (n, Ok(t)))
            .chain(numbers.into_iter().map(|(n, v)| (n, Err(v))))
            .collect();
        values.sort_by_key(|(n, _)| *n);
        let mut query = sqlx::query(&sql);
        for (_, value) in values {
            query = match value {
                Ok(text) => query.bind(text),
                Err(number) => query.bind(number),
            };
        }
        query
            .fetch_all(&self.pool)
            .await
            .map_err(store_error)?
            .iter()
            .map(record)
            .collect()
    }

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
                    .bind(int(event.overhead_us))
                    .bind(event.upstream_status.map(i64::from))
                    .bind(event.upstream_us.map(int));
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
    fn the_first_v7_of_a_millisecond_sorts_below_every_later_id() {
        let at = 1_764_000_000_123_i64;
        let bound = first_v7_of(at);
        let timestamp = |ms: i64| {
            uuid::Timestamp::from_unix(
                uuid::NoContext,
                u64::try_from(ms / 1000).unwrap(),
                u32::try_from(ms % 1000).unwrap() * 1_000_000,
            )
        };
        for _ in 0..100 {
            let same = Uuid::new_v7(timestamp(at)).to_string();
            let earlier = Uuid::new_v7(timestamp(at - 1)).to_string();
            assert!(bound <= same, "{bound} {same}");
            assert!(earlier < bound, "{earlier} {bound}");
        }
    }

    #[test]
    fn statements_number_their_parameters_row_by_row() {
        let sql = statement(2, Backend::Postgres);
        assert!(sql.contains(
            "($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)"
        ));
        assert!(sql.ends_with("$33, $34) ON CONFLICT (id) DO NOTHING"));
        let sql = statement(2, Backend::Sqlite);
        assert_eq!(sql.matches('?').count(), 34);
        assert!(!sql.contains('$'));
    }
}
