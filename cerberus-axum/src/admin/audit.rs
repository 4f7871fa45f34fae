//! The audit log of an organisation: filtered, newest first, a page at a time with an opaque cursor, or
//! exported whole as JSON lines or CSV (streamed page by page, never held in memory whole).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::body::Body;
use axum::extract::{FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use cerberus_core::audit::{AuditCursor, AuditEvent, AuditFilter, RecordBudget};
use cerberus_core::store::ControlStore;
use cerberus_core::{AgentId, DecisionKind, OrganisationId, WorkspaceId};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::AdminState;
use super::error::{ApiError, ErrorBody};
use super::extract::{AdminCaller, Id};

/// The most records a page holds.
const MAX_PAGE: u32 = 500;
/// Records fetched per query while exporting.
const EXPORT_PAGE: u32 = 1000;

/// The query of `GET /organisations/{id}/audit-logs`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// At or after this time (RFC 3339).
    #[param(format = DateTime)]
    from: Option<String>,
    /// Before this time (RFC 3339).
    #[param(format = DateTime)]
    to: Option<String>,
    /// Of this workspace.
    workspace_id: Option<Uuid>,
    /// Of this agent access.
    agent_id: Option<Uuid>,
    /// Naming this tool (or prompt, or resource URI).
    tool: Option<String>,
    /// With this final decision: allow, modify, block or throttle.
    #[param(pattern = "^(allow|modify|block|throttle)$")]
    decision: Option<String>,
    /// Of this method (`tools/call`).
    method: Option<String>,
    /// Changed or refused by this guardrail type (`pii_email`, `rbac`): a trace entry of it that
    /// did not allow.
    guardrail: Option<String>,
    /// Records per page, 1 to 500 (100 by default).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
    /// Where the previous page ended (its `next_cursor`).
    cursor: Option<String>,
    /// For the export: `jsonl` (default) or `csv`.
    #[param(pattern = "^(jsonl|csv)$")]
    format: Option<String>,
}

/// A checked audit query.
struct Parsed {
    filter: AuditFilter,
    limit: u32,
    cursor: Option<AuditCursor>,
    csv: bool,
}

fn time(field: &str, text: &str) -> Result<SystemTime, ApiError> {
    humantime::parse_rfc3339_weak(text)
        .map_err(|e| ApiError::invalid(field, format!("not an RFC 3339 time: {e}")))
}

fn encode_cursor(cursor: AuditCursor) -> String {
    let millis = cursor
        .time
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    URL_SAFE_NO_PAD.encode(format!("{millis}.{}", cursor.id))
}

fn decode_cursor(text: &str) -> Result<AuditCursor, ApiError> {
    let invalid = || ApiError::invalid("cursor", "not a cursor this API gave");
    let bytes = URL_SAFE_NO_PAD.decode(text).map_err(|_| invalid())?;
    let text = String::from_utf8(bytes).map_err(|_| invalid())?;
    let (millis, id) = text.split_once('.').ok_or_else(invalid)?;
    Ok(AuditCursor {
        time: UNIX_EPOCH + Duration::from_millis(millis.parse().map_err(|_| invalid())?),
        id: Uuid::parse_str(id).map_err(|_| invalid())?,
    })
}

impl AuditQuery {
    fn parse(self) -> Result<Parsed, ApiError> {
        let decision = self
            .decision
            .map(|d| {
                serde_json::from_value::<DecisionKind>(serde_json::Value::String(d))
                    .map_err(|_| ApiError::invalid("decision", "allow, modify, block or throttle"))
            })
            .transpose()?;
        let limit = self.limit.unwrap_or(100);
        if !(1..=MAX_PAGE).contains(&limit) {
            return Err(ApiError::invalid(
                "limit",
                format!("must be from 1 to {MAX_PAGE}"),
            ));
        }
        let csv = match self.format.as_deref() {
            None | Some("jsonl") => false,
            Some("csv") => true,
            Some(_) => return Err(ApiError::invalid("format", "jsonl or csv")),
        };
        Ok(Parsed {
            filter: AuditFilter {
                from: self.from.as_deref().map(|t| time("from", t)).transpose()?,
                to: self.to.as_deref().map(|t| time("to", t)).transpose()?,
                workspace: self.workspace_id.map(WorkspaceId),
                agent: self.agent_id.map(AgentId),
                target: self.tool,
                decision,
                method: self.method,
                guardrail: self.guardrail,
            },
            limit,
            cursor: self.cursor.as_deref().map(decode_cursor).transpose()?,
            csv,
        })
    }
}

/// The query string, with a bad one refused as 422.
pub struct Checked(Parsed);

impl<S: Send + Sync> FromRequestParts<S> for Checked {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Query(query) = Query::<AuditQuery>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::invalid("query", e.body_text()))?;
        query.parse().map(Checked)
    }
}

/// A page of audit records.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AuditPage {
    /// The records, newest first.
    #[schema(value_type = Vec<Object>)]
    items: Vec<AuditEvent>,
    /// Pass as `cursor` for the next page; `null` on the last.
    next_cursor: Option<String>,
}

/// `GET /organisations/{id}/audit-logs`.
#[utoipa::path(get, operation_id = "audit_logs_list", path = "/api/v1/organisations/{id}/audit-logs", tag = "audit", params(("id" = Uuid, Path, description = "the organisation"), AuditQuery), responses((status = 200, body = AuditPage), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn list(
    State(state): State<AdminState>,
    caller: AdminCaller,
    id: Id,
    Checked(query): Checked,
) -> Result<Json<AuditPage>, ApiError> {
    let organisation = caller.own(id)?;
    let page = state
        .store
        .audit_records(
            organisation,
            &query.filter,
            query.cursor,
            RecordBudget::records(query.limit),
        )
        .await?;
    let next_cursor = page
        .records
        .last()
        .filter(|_| page.more)
        .map(|last| encode_cursor(AuditCursor::after(last)));
    Ok(Json(AuditPage {
        items: page.records,
        next_cursor,
    }))
}

/// `GET /organisations/{id}/audit-logs/export`: every matching record, as JSON lines or CSV.
#[utoipa::path(get, operation_id = "audit_logs_export", path = "/api/v1/organisations/{id}/audit-logs/export", tag = "audit", params(("id" = Uuid, Path, description = "the organisation"), AuditQuery), responses((status = 200, description = "JSON lines (application/x-ndjson) or CSV (text/csv)"), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn export(
    State(state): State<AdminState>,
    caller: AdminCaller,
    id: Id,
    Checked(query): Checked,
) -> Result<Response, ApiError> {
    let organisation = caller.own(id)?;
    let csv = query.csv;
    let pages = Pages {
        store: state.store,
        organisation,
        filter: query.filter,
        cursor: query.cursor,
        header: csv,
        done: false,
    };
    let body = futures::stream::unfold(pages, move |mut pages| async move {
        let chunk = pages.next(csv).await?;
        Some((chunk, pages))
    });
    let mut response = Body::from_stream(body).into_response();
    let (media, name) = if csv {
        ("text/csv; charset=utf-8", "audit-logs.csv")
    } else {
        ("application/x-ndjson", "audit-logs.jsonl")
    };
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(media));
    if let Ok(value) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        response
            .headers_mut()
            .insert(header::CONTENT_DISPOSITION, value);
    }
    Ok(response)
}

/// The export's state: where the next page starts.
struct Pages {
    store: std::sync::Arc<dyn ControlStore>,
    organisation: OrganisationId,
    filter: AuditFilter,
    cursor: Option<AuditCursor>,
    header: bool,
    done: bool,
}

impl Pages {
    /// The next page, encoded; `None` at the end. A storage failure ends the body early (the client
    /// sees a truncated transfer) and is logged.
    async fn next(&mut self, csv: bool) -> Option<Result<Bytes, std::io::Error>> {
        if self.done {
            return None;
        }
        let page = match self
            .store
            .audit_records(
                self.organisation,
                &self.filter,
                self.cursor,
                RecordBudget::records(EXPORT_PAGE),
            )
            .await
        {
            Ok(page) => page,
            Err(e) => {
                tracing::error!(error = %e, "audit export failed");
                self.done = true;
                return Some(Err(std::io::Error::other("storage unavailable")));
            }
        };
        let records = page.records;
        self.done = !page.more;
        self.cursor = records.last().map(AuditCursor::after);
        let mut out = String::new();
        if std::mem::take(&mut self.header) {
            out.push_str(CSV_HEADER);
        }
        for record in &records {
            if csv {
                csv_row(&mut out, record);
            } else if let Ok(line) = serde_json::to_string(record) {
                out.push_str(&line);
                out.push('\n');
            }
        }
        Some(Ok(Bytes::from(out)))
    }
}

const CSV_HEADER: &str = "id,time,organisation_id,workspace_id,agent_id,key_prefix,session_id,jsonrpc_id,direction,method,target,decision,size_bytes,overhead_us,upstream_status,upstream_us,trace,payload\r\n";

/// One CSV field: quoted where it must be, and a leading `=`, `+`, `-`, `@`, tab or carriage return
/// defused (OWASP's list) so that a spreadsheet does not run it as a formula.
fn csv_field(out: &mut String, value: &str) {
    let defused = value.starts_with(['=', '+', '-', '@', '\t', '\r']);
    let quoted = defused || value.contains([',', '"', '\r', '\n']);
    if quoted {
        out.push('"');
    }
    if defused {
        out.push('\'');
    }
    for c in value.chars() {
        if c == '"' {
            out.push('"');
        }
        out.push(c);
    }
    if quoted {
        out.push('"');
    }
}

fn csv_row(out: &mut String, record: &AuditEvent) {
    let time = humantime::format_rfc3339_millis(record.time).to_string();
    let trace = serde_json::to_string(&record.trace).unwrap_or_default();
    let fields = [
        record.id.to_string(),
        time,
        record.identity.organisation.to_string(),
        record.identity.workspace.to_string(),
        record.identity.agent.to_string(),
        record.key_prefix.clone().unwrap_or_default(),
        record.session.clone().unwrap_or_default(),
        record.jsonrpc_id.clone().unwrap_or_default(),
        record.direction.as_str().to_owned(),
        record.method.clone().unwrap_or_default(),
        record.target.clone().unwrap_or_default(),
        record.decision.as_str().to_owned(),
        record.size_bytes.to_string(),
        record.overhead_us.to_string(),
        record
            .upstream_status
            .map(|s| s.to_string())
            .unwrap_or_default(),
        record
            .upstream_us
            .map(|u| u.to_string())
            .unwrap_or_default(),
        trace,
        record
            .payload
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
    ];
    for (i, field) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        csv_field(out, field);
    }
    out.push_str("\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_refuse_forgeries() {
        let cursor = AuditCursor {
            time: UNIX_EPOCH + Duration::from_millis(1_764_000_000_123),
            id: Uuid::now_v7(),
        };
        assert_eq!(decode_cursor(&encode_cursor(cursor)).unwrap(), cursor);
        for bad in ["", "abc", "!!!", &URL_SAFE_NO_PAD.encode("12.not-a-uuid")] {
            assert!(decode_cursor(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn csv_fields_are_quoted_and_defused() {
        let mut out = String::new();
        for value in [
            "plain",
            "a,b",
            "say \"hi\"",
            "=SUM(A1)",
            "-1",
            "line\nbreak",
            "\t=SUM(A1)",
            "\r=1+1",
        ] {
            csv_field(&mut out, value);
            out.push('|');
        }
        assert_eq!(
            out,
            "plain|\"a,b\"|\"say \"\"hi\"\"\"|\"'=SUM(A1)\"|\"'-1\"|\"line\nbreak\"|\"'\t=SUM(A1)\"|\"'\r=1+1\"|"
        );
    }
}
