//! The audit log: batches of events in one multi-row insert each, read back a filtered page at a time
//! or aggregated.

mod analytics;
mod conditions;
mod trace_text;

use std::time::SystemTime;

use async_trait::async_trait;
use cerberus_core::audit::{
    AnalyticsQuery, AuditAnalytics, AuditCursor, AuditEvent, AuditFilter, AuditStore, RecordBudget,
    RecordPage,
};
use cerberus_core::store::StoreError;
use cerberus_core::{AgentId, Cause, Identity, OrganisationId, WorkspaceId};
use cerberus_core::{DecisionKind, TraceEntry};
use sqlx::Row;
use sqlx::any::AnyRow;
use uuid::Uuid;

use crate::rows::{millis, storable, store_error, time};
use crate::{Backend, SqlStore};
use conditions::Conditions;

/// Columns of one audit row.
const COLUMNS: [&str; 18] = [
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
    "payload",
];

/// Columns of one intervention row (a trace entry that is not `allow`).
const INTERVENTION_COLUMNS: [&str; 7] = [
    "audit_id",
    "position",
    "organisation_id",
    "occurred_at",
    "direction",
    "guardrail",
    "decision",
];

/// Rows per statement: one round trip (to the server, or to SQLite's connection thread) for many rows,
/// well under both backends' limits on bound parameters.
const ROWS_PER_STATEMENT: usize = 500;

/// The insert of `rows` rows. SQLite gets anonymous `?` parameters: it looks a numbered or named
/// parameter up by a linear scan, which made a 500-row statement spend most of its time binding.
fn statement(table: &str, columns: &[&str], rows: usize, backend: Backend) -> String {
    let mut sql = format!("INSERT INTO {table} ({}) VALUES ", columns.join(", "));
    for row in 0..rows {
        if row > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for column in 0..columns.len() {
            if column > 0 {
                sql.push_str(", ");
            }
            match backend {
                Backend::Sqlite => sql.push('?'),
                Backend::Postgres => {
                    sql.push_str(&format!("${}", row * columns.len() + column + 1))
                }
            }
        }
        sql.push(')');
    }
    // A retried batch whose first attempt did land stores nothing twice.
    sql.push_str(" ON CONFLICT DO NOTHING");
    sql
}

fn int(value: impl TryInto<i64>) -> i64 {
    value.try_into().unwrap_or(i64::MAX)
}

/// The columns an audit record is read from.
const READ_COLUMNS: &str = "id, occurred_at, organisation_id, workspace_id, agent_id, key_prefix, \
     session_id, jsonrpc_id, direction, method, target, decision, trace, size_bytes, overhead_us, \
     upstream_status, upstream_us, payload";

/// What a record costs to read, about, in bytes: its payload and trace, and the rest of its fields.
const RECORD_SIZE: &str = "(COALESCE(LENGTH(payload), 0) + LENGTH(trace) + 512)";

fn record(row: &AnyRow) -> Result<AuditEvent, StoreError> {
    let corrupt = |column: &str, e: &dyn std::fmt::Display| {
        StoreError::Unavailable(Cause::message(format!(
            "stored audit {column} is unreadable: {e}"
        )))
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
        trace: trace_text::decode(&text("trace")?).map_err(|e| corrupt("trace", &e))?,
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
        payload: maybe("payload")?
            .map(|text| serde_json::from_str(&text).map_err(|e| corrupt("payload", &e)))
            .transpose()?,
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
        // The interventions first: a failure between the two leaves records without their
        // interventions, never interventions without their record.
        loop {
            let done = sqlx::query(
                "DELETE FROM audit_interventions WHERE audit_id IN (SELECT audit_id FROM \
                 audit_interventions WHERE audit_id < $1 AND occurred_at < $2 LIMIT $3)",
            )
            .bind(&bound)
            .bind(cutoff)
            .bind(DELETE_CHUNK)
            .execute(&self.pool)
            .await
            .map_err(store_error)?;
            if done.rows_affected() < u64::try_from(DELETE_CHUNK).unwrap_or(0) {
                break;
            }
        }
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
        budget: RecordBudget,
    ) -> Result<RecordPage, StoreError> {
        let mut conditions = Conditions::default();
        conditions.text("organisation_id = $?", organisation.to_string());
        if let Some(workspace) = filter.workspace {
            conditions.text("workspace_id = $?", workspace.to_string());
        }
        if let Some(agent) = filter.agent {
            conditions.text("agent_id = $?", agent.to_string());
        }
        if let Some(target) = &filter.target {
            conditions.text("target = $?", target.clone());
        }
        if let Some(decision) = filter.decision {
            conditions.text("decision = $?", decision.as_str());
        }
        if let Some(method) = &filter.method {
            conditions.text("method = $?", method.clone());
        }
        if let Some(guardrail) = &filter.guardrail {
            // Each record's interventions are found by its id, the first column of their key.
            conditions.text(
                "EXISTS (SELECT 1 FROM audit_interventions i \
                 WHERE i.audit_id = audit_logs.id AND i.guardrail = $?)",
                guardrail.clone(),
            );
        }
        if let Some(from) = filter.from {
            conditions.number("occurred_at >= $?", millis(from));
        }
        if let Some(to) = filter.to {
            conditions.number("occurred_at < $?", millis(to));
        }
        if let Some(cursor) = after {
            conditions.number_and_text(
                |time, id| {
                    format!("(occurred_at < ${time} OR (occurred_at = ${time} AND id < ${id}))")
                },
                millis(cursor.time),
                cursor.id.to_string(),
            );
        }
        // The page's rows are chosen by their ids and sizes alone (one more than the limit, to tell
        // whether more follow), then read whole up to the byte budget: a page of large records is cut
        // short before its payloads are read, and the first record is always read.
        let (limit, bytes) = (budget.records, budget.bytes);
        let columns: Vec<String> = READ_COLUMNS
            .split(',')
            .map(|column| format!("a.{}", column.trim()))
            .collect();
        let sql = format!(
            "WITH page AS (\
                SELECT id, occurred_at, {RECORD_SIZE} AS size FROM audit_logs WHERE {} \
                ORDER BY occurred_at DESC, id DESC LIMIT {} \
             ), sized AS (\
                SELECT id, \
                  SUM(size) OVER (ORDER BY occurred_at DESC, id DESC ROWS UNBOUNDED PRECEDING) - size AS before, \
                  ROW_NUMBER() OVER (ORDER BY occurred_at DESC, id DESC) AS n, \
                  COUNT(*) OVER () AS fetched \
                FROM page\
             ) \
             SELECT {}, sized.fetched AS fetched FROM sized JOIN audit_logs a ON a.id = sized.id \
             WHERE sized.n <= {limit} AND (sized.n = 1 OR sized.before < {bytes}) \
             ORDER BY a.occurred_at DESC, a.id DESC",
            conditions.sql(),
            u64::from(limit) + 1,
            columns.join(", "),
        );
        let rows = conditions
            .bind(sqlx::query(&sql))
            .fetch_all(&self.pool)
            .await
            .map_err(store_error)?;
        let fetched = match rows.first() {
            Some(row) => row.try_get::<i64, _>("fetched").map_err(store_error)?,
            None => 0,
        };
        let records = rows.iter().map(record).collect::<Result<Vec<_>, _>>()?;
        let more = usize::try_from(fetched).unwrap_or(usize::MAX) > records.len();
        Ok(RecordPage { records, more })
    }

    async fn audit_analytics(
        &self,
        organisation: OrganisationId,
        query: &AnalyticsQuery,
    ) -> Result<AuditAnalytics, StoreError> {
        analytics::aggregate(&self.pool, organisation, query).await
    }

    async fn append(&self, events: &[AuditEvent]) -> Result<(), StoreError> {
        let mut transaction = self.pool.begin().await.map_err(store_error)?;
        for chunk in events.chunks(ROWS_PER_STATEMENT) {
            let sql = statement("audit_logs", &COLUMNS, chunk.len(), self.backend);
            let mut query = sqlx::query(&sql);
            for event in chunk {
                let trace = trace_text::encode(&event.trace)
                    .map_err(|e| StoreError::Unavailable(Cause::new(e)))?;
                query = query
                    .bind(event.id.to_string())
                    .bind(millis(event.time))
                    .bind(event.identity.organisation.to_string())
                    .bind(event.identity.workspace.to_string())
                    .bind(event.identity.agent.to_string())
                    .bind(event.key_prefix.as_deref().map(text))
                    .bind(event.session.as_deref().map(text))
                    .bind(event.jsonrpc_id.as_deref().map(text))
                    .bind(event.direction.as_str())
                    .bind(event.method.as_deref().map(text))
                    .bind(event.target.as_deref().map(text))
                    .bind(event.decision.as_str())
                    .bind(trace)
                    .bind(int(event.size_bytes))
                    .bind(int(event.overhead_us))
                    .bind(event.upstream_status.map(i64::from))
                    .bind(event.upstream_us.map(int))
                    .bind(event.payload.as_ref().map(ToString::to_string));
            }
            query
                .execute(&mut *transaction)
                .await
                .map_err(store_error)?;
        }
        let interventions: Vec<(&AuditEvent, usize, &TraceEntry)> = events
            .iter()
            .flat_map(|event| {
                event
                    .trace
                    .entries()
                    .iter()
                    .enumerate()
                    .filter(|(_, entry)| entry.decision != DecisionKind::Allow)
                    .map(move |(position, entry)| (event, position, entry))
            })
            .collect();
        for chunk in interventions.chunks(ROWS_PER_STATEMENT) {
            let sql = statement(
                "audit_interventions",
                &INTERVENTION_COLUMNS,
                chunk.len(),
                self.backend,
            );
            let mut query = sqlx::query(&sql);
            for (event, position, entry) in chunk {
                query = query
                    .bind(event.id.to_string())
                    .bind(int(*position))
                    .bind(event.identity.organisation.to_string())
                    .bind(millis(event.time))
                    .bind(event.direction.as_str())
                    .bind(entry.guardrail.as_ref())
                    .bind(entry.decision.as_str());
            }
            query
                .execute(&mut *transaction)
                .await
                .map_err(store_error)?;
        }
        transaction.commit().await.map_err(store_error)
    }
}

/// A message's text as a column holds it (see [`storable`]).
fn text(value: &str) -> String {
    storable(value).into_owned()
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
        let sql = statement("audit_logs", &COLUMNS, 2, Backend::Postgres);
        assert!(sql.contains(
            "($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)"
        ));
        assert!(sql.ends_with("$35, $36) ON CONFLICT DO NOTHING"));
        let sql = statement("audit_logs", &COLUMNS, 2, Backend::Sqlite);
        assert_eq!(sql.matches('?').count(), 36);
        assert!(!sql.contains('$'));
    }
}
