//! Logs on standard error, and spans to a collector when the configuration asks for them.

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use super::LogFormat;
use crate::telemetry::TelemetrySettings;

/// Why logging cannot start.
#[derive(Debug, thiserror::Error)]
pub(super) enum LogError {
    /// The configuration names a collector, and this build cannot export spans.
    #[cfg(not(feature = "otel"))]
    #[error(
        "telemetry.otlp_endpoint: this build of cerberus has no OpenTelemetry support (cargo feature `otel`)"
    )]
    NoExporter,
    /// The span exporter cannot start.
    #[cfg(feature = "otel")]
    #[error(transparent)]
    Export(#[from] crate::telemetry::export::ExportError),
}

/// The span exporter, when one runs: [`Spans::finish`] sends what it still holds.
#[derive(Debug)]
pub(super) struct Spans {
    #[cfg(feature = "otel")]
    exporter: Option<crate::telemetry::export::Telemetry>,
}

impl Spans {
    /// Sends the last spans and stops the exporter, at the end of a graceful shutdown.
    pub(super) fn finish(self) {
        #[cfg(feature = "otel")]
        if let Some(exporter) = self.exporter {
            exporter.shutdown();
        }
    }
}

/// Logs go to stderr (stdout carries `check` reports and the `stdio` protocol); RUST_LOG sets the
/// level. With telemetry settings that name a collector, spans are exported too, whatever RUST_LOG
/// says.
pub(super) fn init(
    format: LogFormat,
    telemetry: Option<&TelemetrySettings>,
) -> Result<Spans, LogError> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let logs = match format {
        LogFormat::Text => logs
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .boxed(),
        LogFormat::Json => logs.json().flatten_event(true).boxed(),
    };
    let subscriber = tracing_subscriber::registry().with(logs.with_filter(filter));
    let wanted = telemetry.filter(|settings| crate::telemetry::wanted(settings));
    #[cfg(feature = "otel")]
    {
        let (spans, exporter) = match wanted {
            Some(settings) => {
                let (spans, exporter) = crate::telemetry::export::start(settings)?;
                (Some(spans), Some(exporter))
            }
            None => (None, None),
        };
        subscriber.with(spans).init();
        Ok(Spans { exporter })
    }
    #[cfg(not(feature = "otel"))]
    {
        if wanted.is_some() {
            return Err(LogError::NoExporter);
        }
        subscriber.init();
        Ok(Spans {})
    }
}
