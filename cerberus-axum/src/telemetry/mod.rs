//! OpenTelemetry traces of the proxy, exported over OTLP/HTTP (cargo feature `otel`, on by default).
//!
//! Tracing is off unless `[telemetry] otlp_endpoint` (or the standard `OTEL_EXPORTER_OTLP_ENDPOINT`)
//! names a collector. When it is off the proxy creates no spans at all, so it costs nothing. When it
//! is on, each proxied HTTP request is a server span (`mcp.proxy`). The span continues the client's
//! trace when the request carries a W3C `traceparent`, and its upstream request carries the trace on
//! to the MCP server. Each message through the guardrail pipeline is a child span (`mcp.guardrails`)
//! with the MCP method, the tool or resource, the direction and the decision (and the guardrail that
//! refused, if one did).
//!
//! Spans carry ids and names, never keys, tokens, session ids or message contents, so they hold
//! nothing that the audit log would redact.

use std::sync::atomic::{AtomicBool, Ordering};

#[cfg(feature = "otel")]
pub mod export;

use axum::http::HeaderMap;
use cerberus_core::{Decision, Envelope, Identity, Message};
use tracing::Span;
use tracing::field::Empty;

use serde::{Deserialize, Serialize};

/// OpenTelemetry traces (`[telemetry]`): exported over OTLP/HTTP when an endpoint is set here or in
/// the standard `OTEL_EXPORTER_OTLP_ENDPOINT`; off otherwise.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetrySettings {
    /// The collector's OTLP/HTTP base URL (`http://collector:4318`); spans go to `/v1/traces` under it.
    pub otlp_endpoint: Option<String>,
    /// `http/protobuf` (the default) or `http/json`.
    pub otlp_protocol: OtlpProtocol,
    /// The `service.name` of the spans.
    pub service_name: String,
    /// The share of new traces recorded, 0 to 1; a trace the client started follows its decision.
    pub sample_ratio: f64,
}

impl Default for TelemetrySettings {
    fn default() -> Self {
        Self {
            otlp_endpoint: None,
            otlp_protocol: OtlpProtocol::HttpProtobuf,
            service_name: "cerberus".to_owned(),
            sample_ratio: 1.0,
        }
    }
}

/// How spans are encoded for the collector.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
pub enum OtlpProtocol {
    /// Protocol buffers, as every collector accepts.
    #[serde(rename = "http/protobuf")]
    HttpProtobuf,
    /// JSON.
    #[serde(rename = "http/json")]
    HttpJson,
}

/// Whether spans are exported. Set once, when the exporter starts.
static EXPORTING: AtomicBool = AtomicBool::new(false);

/// The standard variables that also name a collector when the configuration does not.
const OTLP_ENDPOINT_VARIABLES: [&str; 2] = [
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
];

/// Whether the proxy's spans are exported: when not, the proxy makes none.
pub fn exporting() -> bool {
    EXPORTING.load(Ordering::Relaxed)
}

/// Whether `settings` (or the standard `OTEL_EXPORTER_OTLP_ENDPOINT` variables) name a collector to
/// export spans to.
pub fn wanted(settings: &TelemetrySettings) -> bool {
    settings.otlp_endpoint.is_some()
        || OTLP_ENDPOINT_VARIABLES
            .iter()
            .any(|name| std::env::var_os(name).is_some_and(|v| !v.is_empty()))
}

/// The server span of one proxied HTTP request, continuing the client's trace; none when spans are
/// not exported.
pub fn request_span(method: &axum::http::Method, headers: &HeaderMap) -> Span {
    if !exporting() {
        return Span::none();
    }
    let span = tracing::info_span!(
        "mcp.proxy",
        otel.name = %format_args!("{method} mcp"),
        otel.kind = "server",
        otel.status_code = Empty,
        http.request.method = %method,
        http.response.status_code = Empty,
        cerberus.organisation = Empty,
        cerberus.workspace = Empty,
        cerberus.agent = Empty,
    );
    #[cfg(feature = "otel")]
    {
        use opentelemetry::propagation::TextMapPropagator;
        use tracing_opentelemetry::OpenTelemetrySpanExt;
        let parent = opentelemetry_sdk::propagation::TraceContextPropagator::new()
            .extract(&opentelemetry_http::HeaderExtractor(headers));
        if let Err(e) = span.set_parent(parent) {
            tracing::debug!(error = %e, "cannot continue the client's trace");
        }
    }
    #[cfg(not(feature = "otel"))]
    let _ = headers;
    span
}

/// Records who the caller is on the current (request) span.
pub fn record_caller(identity: &Identity) {
    if !exporting() {
        return;
    }
    let span = Span::current();
    span.record("cerberus.organisation", identity.organisation.0.to_string());
    span.record("cerberus.workspace", identity.workspace.0.to_string());
    span.record("cerberus.agent", identity.agent.0.to_string());
}

/// The current span, for work that outlives it (a relayed stream); none when spans are not exported.
pub fn current_span() -> Span {
    if exporting() {
        Span::current()
    } else {
        Span::none()
    }
}

/// Records the HTTP status the client got on the request span.
pub fn record_status(span: &Span, status: axum::http::StatusCode) {
    if span.is_none() {
        return;
    }
    span.record("http.response.status_code", status.as_u16());
    if status.is_server_error() {
        span.record("otel.status_code", "ERROR");
    }
}

/// The span of `message` through the guardrail pipeline, a child of the current span; none when
/// spans are not exported.
pub fn pipeline_span(envelope: &Envelope<'_>, message: &Message) -> Span {
    if !exporting() {
        return Span::none();
    }
    let method = message.method().or(envelope.request_method);
    tracing::info_span!(
        "mcp.guardrails",
        otel.name = %format_args!("guardrails {}", method.unwrap_or("message")),
        cerberus.direction = envelope.direction.as_str(),
        mcp.method.name = method,
        cerberus.target = message.target(),
        cerberus.decision = Empty,
        cerberus.guardrail = Empty,
    )
}

/// Records the pipeline's decision on its span.
pub fn record_decision(span: &Span, decision: &Decision) {
    if span.is_none() {
        return;
    }
    span.record("cerberus.decision", decision.kind().as_str());
    if let Decision::Block { guardrail, .. } | Decision::Throttle { guardrail, .. } = decision {
        span.record("cerberus.guardrail", guardrail.as_str());
    }
}

/// The current span's trace context as headers (`traceparent`, `tracestate`) for an upstream
/// request; none when spans are not exported.
pub fn trace_headers() -> Option<HeaderMap> {
    if !exporting() {
        return None;
    }
    #[cfg(feature = "otel")]
    {
        use opentelemetry::propagation::TextMapPropagator;
        use tracing_opentelemetry::OpenTelemetrySpanExt;
        let mut headers = HeaderMap::new();
        opentelemetry_sdk::propagation::TraceContextPropagator::new().inject_context(
            &Span::current().context(),
            &mut opentelemetry_http::HeaderInjector(&mut headers),
        );
        Some(headers)
    }
    #[cfg(not(feature = "otel"))]
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_is_made_while_spans_are_not_exported() {
        assert!(!exporting());
        let headers = HeaderMap::new();
        assert!(request_span(&axum::http::Method::POST, &headers).is_none());
        let identity = Identity::new_random();
        let envelope = Envelope::new(cerberus_core::Direction::Request, &identity);
        let call = Message::parse(
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"}}"#,
        )
        .unwrap();
        assert!(pipeline_span(&envelope, &call).is_none());
        assert!(current_span().is_none());
        assert!(trace_headers().is_none());
    }
}
