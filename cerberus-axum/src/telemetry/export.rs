//! The OTLP/HTTP span exporter (cargo feature `otel`): a tracing layer that sends the proxy's spans
//! to a collector.

use opentelemetry::trace::TracerProvider;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tracing_subscriber::Layer;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::registry::LookupSpan;

use super::{EXPORTING, OtlpProtocol, TelemetrySettings};

/// A tracing layer boxed for the subscriber `S`.
pub type BoxedLayer<S> = Box<dyn Layer<S> + Send + Sync>;

/// The exporter could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("telemetry.otlp_endpoint: cannot set up the OTLP exporter")]
pub struct ExportError(#[source] opentelemetry_otlp::ExporterBuildError);

/// The exporter, running: [`Telemetry::shutdown`] sends the spans still buffered.
#[derive(Debug)]
pub struct Telemetry {
    provider: SdkTracerProvider,
}

impl Telemetry {
    /// Sends what is buffered and stops the exporter (at the end of a graceful shutdown).
    pub fn shutdown(self) {
        if let Err(e) = self.provider.shutdown() {
            tracing::warn!(error = %e, "cannot send the last spans to the collector");
        }
    }
}

/// Starts exporting spans to the collector `settings` (or the standard `OTEL_EXPORTER_OTLP_*`
/// variables) name, returning the layer to add to the subscriber; from then on the proxy makes its
/// spans (see [`super::exporting`]). Call it outside an async runtime: the exporter's HTTP client
/// is a blocking one on its own thread.
pub fn start<S>(settings: &TelemetrySettings) -> Result<(BoxedLayer<S>, Telemetry), ExportError>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a> + Send + Sync,
{
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
    let exporter = builder.build().map_err(ExportError)?;
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
    EXPORTING.store(true, std::sync::atomic::Ordering::Relaxed);
    Ok((layer, Telemetry { provider }))
}

/// The OTLP/HTTP traces URL under a collector's base URL, as `OTEL_EXPORTER_OTLP_ENDPOINT` is read.
fn traces_url(base: &str) -> String {
    let base = base.trim_end_matches('/');
    if base.ends_with("/v1/traces") {
        base.to_owned()
    } else {
        format!("{base}/v1/traces")
    }
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
}
