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

use axum::http::HeaderMap;
use cerberus_core::{Decision, Envelope, Identity, Message};
use tracing::Span;
use tracing::field::Empty;
use tracing_subscriber::Layer;
use tracing_subscriber::registry::LookupSpan;

#[cfg(feature = "otel")]
use crate::config::OtlpProtocol;
use crate::config::TelemetrySettings;

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

/// A tracing layer boxed for the subscriber `S`.
pub type BoxedLayer<S> = Box<dyn Layer<S> + Send + Sync>;

/// The exporter, running: [`Telemetry::shutdown`] sends the spans still buffered.
#[derive(Debug)]
pub struct Telemetry {
    #[cfg(feature = "otel")]
    provider: opentelemetry_sdk::trace::SdkTracerProvider,
}

impl Telemetry {
    /// Sends what is buffered and stops the exporter (at the end of a graceful shutdown).
    pub fn shutdown(self) {
        #[cfg(feature = "otel")]
        if let Err(e) = self.provider.shutdown() {
            tracing::warn!(error = %e, "cannot send the last spans to the collector");
        }
    }
}

/// Starts exporting spans as `settings` say, returning the layer to add to the subscriber; `None`
/// when no collector is configured. Call it outside an async runtime: the exporter's HTTP client is
/// a blocking one on its own thread.
pub fn start<S>(settings: &TelemetrySettings) -> anyhow::Result<Option<(BoxedLayer<S>, Telemetry)>>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a> + Send + Sync,
{
    let from_environment = OTLP_ENDPOINT_VARIABLES
        .iter()
        .any(|name| std::env::var_os(name).is_some_and(|v| !v.is_empty()));
    if settings.otlp_endpoint.is_none() && !from_environment {
        return Ok(None);
    }
    exporter(settings).map(Some)
}

#[cfg(not(feature = "otel"))]
fn exporter<S>(_: &TelemetrySettings) -> anyhow::Result<(BoxedLayer<S>, Telemetry)>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a> + Send + Sync,
{
    anyhow::bail!(
        "telemetry.otlp_endpoint: this build of cerberus has no OpenTelemetry support (cargo feature `otel`)"
    )
}

#[cfg(feature = "otel")]
fn exporter<S>(settings: &TelemetrySettings) -> anyhow::Result<(BoxedLayer<S>, Telemetry)>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a> + Send + Sync,
{
    use anyhow::Context;
    use opentelemetry::trace::TracerProvider;
    use opentelemetry_otlp::{Protocol, WithExportConfig};
    use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
    use tracing_subscriber::filter::{LevelFilter, Targets};

    let protocol = match settings.otlp_protocol {
        OtlpProtocol::HttpProtobuf => Protocol::HttpBinary,
        OtlpProtocol::HttpJson => Protocol::HttpJson,
    };
    let mut builder = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(protocol);
    if let Some(endpoint) = &settings.otlp_endpoint {
        builder = builder.with_endpoint(traces_url(endpoint));
    }
    let exporter = builder
        .build()
        .context("telemetry.otlp_endpoint: cannot set up the OTLP exporter")?;
    let sampler = Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(settings.sample_ratio)));
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(settings.service_name.clone())
        .with_attribute(opentelemetry::KeyValue::new(
            "service.version",
            env!("CARGO_PKG_VERSION"),
        ))
        .build();
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_sampler(sampler)
        .with_resource(resource)
        .build();
    let tracer = provider.tracer("cerberus");
    // The gateway's own spans, and the events logged inside them; not every library's internals.
    let targets = Targets::new()
        .with_default(LevelFilter::WARN)
        .with_target("cerberus_axum", LevelFilter::INFO)
        .with_target("cerberus_core", LevelFilter::INFO)
        .with_target("cerberus_sqlx", LevelFilter::INFO)
        .with_target("cerberus_redis", LevelFilter::INFO);
    let layer = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_filter(targets)
        .boxed();
    EXPORTING.store(true, Ordering::Relaxed);
    Ok((layer, Telemetry { provider }))
}

/// The OTLP/HTTP traces URL under a collector's base URL, as `OTEL_EXPORTER_OTLP_ENDPOINT` is read.
#[cfg_attr(
    not(feature = "otel"),
    allow(
        dead_code,
        reason = "used by the exporter, which this build leaves out"
    )
)]
fn traces_url(base: &str) -> String {
    let base = base.trim_end_matches('/');
    if base.ends_with("/v1/traces") {
        base.to_owned()
    } else {
        format!("{base}/v1/traces")
    }
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
    fn the_traces_path_is_added_once() {
        assert_eq!(
            traces_url("http://collector:4318"),
            "http://collector:4318/v1/traces"
        );
        assert_eq!(
            traces_url("http://collector:4318/"),
            "http://collector:4318/v1/traces"
        );
        assert_eq!(
            traces_url("http://collector:4318/v1/traces"),
            "http://collector:4318/v1/traces"
        );
    }

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
