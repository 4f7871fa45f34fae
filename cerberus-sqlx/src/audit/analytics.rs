//! Analytics over the audit log: a handful of grouped queries that both backends run alike, so that
//! nothing but the aggregates leaves the database.

use std::time::{Duration, UNIX_EPOCH};

use cerberus_core::audit::{
    AnalyticsQuery, AuditAnalytics, Breakdown, Bucket, DecisionCounts, GuardrailCount, PERCENTILES,
    Percentiles,
};
use cerberus_core::store::StoreError;
use cerberus_core::{Cause, DecisionKind, Direction, OrganisationId};
use sqlx::any::AnyRow;
use sqlx::{AnyPool, Row};

use super::conditions::Conditions;
use crate::rows::{millis, store_error};

/// The records `query` selects: the organisation and time columns prefixed by `table`, the workspace
/// and agent columns by `record` (`""`, or the aliases of a join).
fn selection(
    organisation: OrganisationId,
    query: &AnalyticsQuery,
    table: &str,
    record: &str,
) -> Conditions {
    let mut conditions = Conditions::default();
    conditions
        .text(
            &format!("{table}organisation_id = $?"),
            organisation.to_string(),
        )
        .number(&format!("{table}occurred_at >= $?"), millis(query.from))
        .number(&format!("{table}occurred_at < $?"), millis(query.to));
    if let Some(workspace) = query.workspace {
        conditions.text(&format!("{record}workspace_id = $?"), workspace.to_string());
    }
    if let Some(agent) = query.agent {
        conditions.text(&format!("{record}agent_id = $?"), agent.to_string());
    }
    conditions
}

/// `selection`, narrowed to the query's direction.
fn directed(organisation: OrganisationId, query: &AnalyticsQuery) -> Conditions {
    let mut conditions = selection(organisation, query, "", "");
    if let Some(direction) = query.direction {
        conditions.text("direction = $?", direction.as_str());
    }
    conditions
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(Cause::message(format!(
        "stored audit {what} is unreadable: {e}"
    )))
}

fn number(row: &AnyRow, index: usize) -> Result<u64, StoreError> {
    let value: i64 = row.try_get(index).map_err(|e| corrupt("aggregate", e))?;
    Ok(u64::try_from(value).unwrap_or(0))
}

fn text(row: &AnyRow, index: usize) -> Result<String, StoreError> {
    row.try_get(index).map_err(|e| corrupt("aggregate", e))
}

fn decision(text: &str) -> Result<DecisionKind, StoreError> {
    serde_json::from_value(serde_json::Value::String(text.to_owned()))
        .map_err(|e| corrupt("decision", e))
}

fn direction(text: &str) -> Result<Direction, StoreError> {
    serde_json::from_value(serde_json::Value::String(text.to_owned()))
        .map_err(|e| corrupt("direction", e))
}

/// Every aggregate of the analytics answer.
pub(super) async fn aggregate(
    pool: &AnyPool,
    organisation: OrganisationId,
    query: &AnalyticsQuery,
) -> Result<AuditAnalytics, StoreError> {
    let over_time = over_time(pool, organisation, query).await?;
    let mut totals = DecisionCounts::default();
    for bucket in &over_time {
        for (kind, n) in [
            (DecisionKind::Allow, bucket.counts.allow),
            (DecisionKind::Modify, bucket.counts.modify),
            (DecisionKind::Block, bucket.counts.block),
            (DecisionKind::Throttle, bucket.counts.throttle),
        ] {
            totals.add(kind, n);
        }
    }
    let gateway_overhead_us =
        percentiles(pool, directed(organisation, query), "overhead_us").await?;
    let mut answered = selection(organisation, query, "", "");
    answered.fixed("upstream_us IS NOT NULL");
    let upstream_us = percentiles(pool, answered, "upstream_us").await?;
    Ok(AuditAnalytics {
        totals,
        over_time,
        by_tool: breakdown(pool, organisation, query, "target").await?,
        by_agent: breakdown(pool, organisation, query, "agent_id").await?,
        guardrails: guardrails(pool, organisation, query).await?,
        latency: cerberus_core::audit::Latency {
            gateway_overhead_us,
            upstream_us,
        },
    })
}

/// The width of a bucket in milliseconds (at least one).
fn bucket_millis(bucket: Duration) -> i64 {
    i64::try_from(bucket.as_millis()).unwrap_or(i64::MAX).max(1)
}

/// Messages per bucket and decision; every bucket from the one holding `from` to the one holding the
/// last millisecond before `to`, empty ones included.
async fn over_time(
    pool: &AnyPool,
    organisation: OrganisationId,
    query: &AnalyticsQuery,
) -> Result<Vec<Bucket>, StoreError> {
    let width = bucket_millis(query.bucket);
    let conditions = directed(organisation, query);
    // The width is a number this process made, not caller text: it is written into the statement so
    // that both backends group by the very same expression.
    let sql = format!(
        "SELECT (occurred_at / {width}) * {width} AS bucket, decision, COUNT(*) FROM audit_logs \
         WHERE {} GROUP BY (occurred_at / {width}) * {width}, decision",
        conditions.sql()
    );
    let rows = conditions
        .bind(sqlx::query(&sql))
        .fetch_all(pool)
        .await
        .map_err(store_error)?;
    let first = millis(query.from).div_euclid(width) * width;
    let last = (millis(query.to) - 1)
        .max(millis(query.from))
        .div_euclid(width)
        * width;
    let count = usize::try_from((last - first) / width + 1).unwrap_or(0);
    let mut buckets: Vec<Bucket> = (0..count)
        .map(|n| {
            let start = first + i64::try_from(n).unwrap_or(0) * width;
            Bucket {
                start: UNIX_EPOCH + Duration::from_millis(u64::try_from(start).unwrap_or(0)),
                counts: DecisionCounts::default(),
            }
        })
        .collect();
    for row in &rows {
        let start: i64 = row.try_get(0).map_err(|e| corrupt("bucket", e))?;
        let index = usize::try_from((start - first) / width).unwrap_or(usize::MAX);
        if let Some(bucket) = buckets.get_mut(index) {
            bucket
                .counts
                .add(decision(&text(row, 1)?)?, number(row, 2)?);
        }
    }
    Ok(buckets)
}

/// Messages per value of `column` (the tool or the agent), busiest first, at most `query.top`.
async fn breakdown(
    pool: &AnyPool,
    organisation: OrganisationId,
    query: &AnalyticsQuery,
    column: &str,
) -> Result<Vec<Breakdown>, StoreError> {
    let mut conditions = directed(organisation, query);
    conditions.fixed(&format!("{column} IS NOT NULL"));
    let count = |kind: DecisionKind| {
        format!(
            "SUM(CASE WHEN decision = '{}' THEN 1 ELSE 0 END)",
            kind.as_str()
        )
    };
    let sql = format!(
        "SELECT {column}, COUNT(*), {}, {}, {}, {} FROM audit_logs WHERE {} GROUP BY {column} \
         ORDER BY COUNT(*) DESC, {column} LIMIT {}",
        count(DecisionKind::Allow),
        count(DecisionKind::Modify),
        count(DecisionKind::Block),
        count(DecisionKind::Throttle),
        conditions.sql(),
        query.top
    );
    conditions
        .bind(sqlx::query(&sql))
        .fetch_all(pool)
        .await
        .map_err(store_error)?
        .iter()
        .map(|row| {
            Ok(Breakdown {
                key: text(row, 0)?,
                counts: DecisionCounts {
                    total: number(row, 1)?,
                    allow: number(row, 2)?,
                    modify: number(row, 3)?,
                    block: number(row, 4)?,
                    throttle: number(row, 5)?,
                },
            })
        })
        .collect()
}

/// Redactions, blocks and throttles by guardrail type, direction and decision, most first.
async fn guardrails(
    pool: &AnyPool,
    organisation: OrganisationId,
    query: &AnalyticsQuery,
) -> Result<Vec<GuardrailCount>, StoreError> {
    // The interventions carry the organisation and time themselves; the record is joined only to
    // narrow to a workspace or an agent.
    let narrowed = query.workspace.is_some() || query.agent.is_some();
    let conditions = selection(organisation, query, "i.", "a.");
    let join = if narrowed {
        " JOIN audit_logs a ON a.id = i.audit_id"
    } else {
        ""
    };
    let sql = format!(
        "SELECT i.guardrail, i.direction, i.decision, COUNT(*) FROM audit_interventions i{join} \
         WHERE {} GROUP BY i.guardrail, i.direction, i.decision \
         ORDER BY COUNT(*) DESC, i.guardrail, i.direction, i.decision",
        conditions.sql()
    );
    conditions
        .bind(sqlx::query(&sql))
        .fetch_all(pool)
        .await
        .map_err(store_error)?
        .iter()
        .map(|row| {
            Ok(GuardrailCount {
                guardrail: text(row, 0)?,
                direction: direction(&text(row, 1)?)?,
                decision: decision(&text(row, 2)?)?,
                count: number(row, 3)?,
            })
        })
        .collect()
}

/// Exact nearest-rank percentiles (and the maximum) of `column` over the selected records, in one
/// query: each value is ranked, and only the rows at the wanted ranks come back.
async fn percentiles(
    pool: &AnyPool,
    mut conditions: Conditions,
    column: &str,
) -> Result<Percentiles, StoreError> {
    conditions.fixed(&format!("{column} IS NOT NULL"));
    // Row `nth` is the p-th percentile when it is the first whose share reaches p:
    // nth * 100 >= p * n and (nth - 1) * 100 < p * n.
    let wanted: Vec<String> = PERCENTILES
        .iter()
        .map(|p| format!("(nth * 100 >= {p} * n AND (nth - 1) * 100 < {p} * n)"))
        .chain(std::iter::once("nth = n".to_owned()))
        .collect();
    let sql = format!(
        "SELECT measured, nth, n FROM (SELECT {column} AS measured, \
         ROW_NUMBER() OVER (ORDER BY {column}) AS nth, COUNT(*) OVER () AS n \
         FROM audit_logs WHERE {}) ranked WHERE {}",
        conditions.sql(),
        wanted.join(" OR ")
    );
    let rows = conditions
        .bind(sqlx::query(&sql))
        .fetch_all(pool)
        .await
        .map_err(store_error)?;
    let mut result = Percentiles::default();
    for row in &rows {
        let (value, rank, n) = (number(row, 0)?, number(row, 1)?, number(row, 2)?);
        result.count = n;
        for p in PERCENTILES {
            if Percentiles::rank(p, n) == rank {
                result.set(p, value);
            }
        }
        if rank == n {
            result.set(100, value);
        }
    }
    Ok(result)
}
