//! Analytics over an organisation's audit log: calls over time, per tool, per agent and per decision,
//! interventions by guardrail type, and latency percentiles, for a time range and bucket size.

use std::time::{Duration, SystemTime};

use axum::Json;
use axum::extract::{FromRequestParts, Query, State};
use axum::http::request::Parts;
use cerberus_core::audit::{AnalyticsQuery, AuditAnalytics};
use cerberus_core::{AgentId, Direction, WorkspaceId};
use serde::Deserialize;
use uuid::Uuid;

use super::AdminState;
use super::error::{ApiError, ErrorBody};
use super::extract::{AdminCaller, Id};

/// The most buckets one answer holds.
const MAX_BUCKETS: u128 = 10_000;
/// The most tools or agents one answer lists.
const MAX_TOP: u32 = 1000;
/// The range when none is given: the last day.
const DEFAULT_RANGE: Duration = Duration::from_secs(24 * 3600);

/// The query of `GET /organisations/{id}/analytics`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AnalyticsParams {
    /// At or after this time (RFC 3339); 24 hours before `to` by default.
    #[param(format = DateTime)]
    from: Option<String>,
    /// Before this time (RFC 3339); now by default.
    #[param(format = DateTime)]
    to: Option<String>,
    /// The width of each bucket of `over_time`, such as `1m`, `15m`, `1h` or `1d` (`1h` by default;
    /// at least one second, at most 10,000 buckets in the range).
    bucket: Option<String>,
    /// Which messages are counted: `request` (calls from clients, the default), `response` or `all`.
    #[param(pattern = "^(request|response|all)$")]
    direction: Option<String>,
    /// Only this workspace's records.
    workspace_id: Option<Uuid>,
    /// Only this agent access's records.
    agent_id: Option<Uuid>,
    /// How many tools and agents to list, busiest first (1 to 1000, 20 by default).
    #[param(minimum = 1, maximum = 1000)]
    top: Option<u32>,
}

fn time(field: &str, text: &str) -> Result<SystemTime, ApiError> {
    humantime::parse_rfc3339_weak(text)
        .map_err(|e| ApiError::invalid(field, format!("not an RFC 3339 time: {e}")))
}

impl AnalyticsParams {
    fn parse(self, now: SystemTime) -> Result<AnalyticsQuery, ApiError> {
        let to = self
            .to
            .as_deref()
            .map(|t| time("to", t))
            .transpose()?
            .unwrap_or(now);
        let from = match self.from.as_deref() {
            Some(text) => time("from", text)?,
            None => to
                .checked_sub(DEFAULT_RANGE)
                .unwrap_or(SystemTime::UNIX_EPOCH),
        };
        let range = to
            .duration_since(from)
            .ok()
            .filter(|range| !range.is_zero())
            .ok_or_else(|| ApiError::invalid("from", "must be before `to`"))?;
        let bucket = match self.bucket.as_deref() {
            None => Duration::from_secs(3600),
            Some(text) => humantime::parse_duration(text)
                .map_err(|e| ApiError::invalid("bucket", format!("not a duration: {e}")))?,
        };
        if bucket < Duration::from_secs(1) {
            return Err(ApiError::invalid("bucket", "must be at least 1s"));
        }
        // One more than the range divides into: the first and last bucket may be partial.
        if range.as_millis() / bucket.as_millis() + 1 > MAX_BUCKETS {
            return Err(ApiError::invalid(
                "bucket",
                format!("the range would need more than {MAX_BUCKETS} buckets; choose a wider one"),
            ));
        }
        let direction = match self.direction.as_deref() {
            None | Some("request") => Some(Direction::Request),
            Some("response") => Some(Direction::Response),
            Some("all") => None,
            Some(_) => return Err(ApiError::invalid("direction", "request, response or all")),
        };
        let top = self.top.unwrap_or(20);
        if !(1..=MAX_TOP).contains(&top) {
            return Err(ApiError::invalid(
                "top",
                format!("must be from 1 to {MAX_TOP}"),
            ));
        }
        Ok(AnalyticsQuery {
            from,
            to,
            bucket,
            direction,
            workspace: self.workspace_id.map(WorkspaceId),
            agent: self.agent_id.map(AgentId),
            top,
        })
    }
}

/// The query string, with a bad one refused as 422.
pub struct Checked(AnalyticsQuery);

impl<S: Send + Sync> FromRequestParts<S> for Checked {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Query(params) = Query::<AnalyticsParams>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::invalid("query", e.body_text()))?;
        params.parse(SystemTime::now()).map(Checked)
    }
}

/// `GET /organisations/{id}/analytics`.
#[utoipa::path(get, operation_id = "analytics_get", path = "/api/v1/organisations/{id}/analytics", tag = "audit", params(("id" = Uuid, Path, description = "the organisation"), AnalyticsParams), responses((status = 200, body = AuditAnalytics), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn get(
    State(state): State<AdminState>,
    caller: AdminCaller,
    id: Id,
    Checked(query): Checked,
) -> Result<Json<AuditAnalytics>, ApiError> {
    let organisation = caller.own(id)?;
    Ok(Json(
        state.store.audit_analytics(organisation, &query).await?,
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic, reason = "tests fail loudly")]

    use super::*;

    fn params(pairs: &[(&str, &str)]) -> AnalyticsParams {
        let text = serde_urlencoded_pairs(pairs);
        serde_json::from_value(text).unwrap()
    }

    fn serde_urlencoded_pairs(pairs: &[(&str, &str)]) -> serde_json::Value {
        let mut map = serde_json::Map::new();
        for (key, value) in pairs {
            let value = if *key == "top" {
                serde_json::Value::from(value.parse::<u32>().unwrap())
            } else {
                serde_json::Value::from(*value)
            };
            map.insert((*key).to_owned(), value);
        }
        serde_json::Value::Object(map)
    }

    fn field(error: ApiError) -> String {
        match error {
            ApiError::Invalid { field, .. } => field,
            other => panic!("not a 422: {other:?}"),
        }
    }

    #[test]
    fn defaults_are_the_last_day_by_hour_of_requests() {
        let now = humantime::parse_rfc3339("2026-11-25T12:00:00Z").unwrap();
        let query = params(&[]).parse(now).unwrap();
        assert_eq!(query.to, now);
        assert_eq!(now.duration_since(query.from).unwrap(), DEFAULT_RANGE);
        assert_eq!(query.bucket, Duration::from_secs(3600));
        assert_eq!(query.direction, Some(Direction::Request));
        assert_eq!(query.top, 20);
    }

    #[test]
    fn bad_ranges_buckets_and_directions_are_named() {
        let now = SystemTime::now();
        let cases: [(&[(&str, &str)], &str); 7] = [
            (&[("from", "yesterday")], "from"),
            (
                &[
                    ("from", "2026-11-25T12:00:00Z"),
                    ("to", "2026-11-25T11:00:00Z"),
                ],
                "from",
            ),
            (&[("bucket", "soon")], "bucket"),
            (&[("bucket", "10ms")], "bucket"),
            (
                &[
                    ("from", "2020-01-01T00:00:00Z"),
                    ("to", "2026-01-01T00:00:00Z"),
                    ("bucket", "1m"),
                ],
                "bucket",
            ),
            (&[("direction", "sideways")], "direction"),
            (&[("top", "0")], "top"),
        ];
        for (pairs, expected) in cases {
            let error = params(pairs).parse(now).unwrap_err();
            assert_eq!(field(error), expected, "{pairs:?}");
        }
        let all = params(&[("direction", "all")]).parse(now).unwrap();
        assert_eq!(all.direction, None);
    }
}
