//! Logging and tracing setup: `tracing-subscriber` with `RUST_LOG` (default `info`, the
//! OpenTelemetry and transport crates at `warn`), JSON lines when `LOG_FORMAT=json`; and, only
//! when `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set and
//! `OTEL_SDK_DISABLED` is not `true`, every `detection_cycle` span (with its
//! `prometheus.query_range` children) exported over OTLP (`OTEL_EXPORTER_OTLP_PROTOCOL`: `grpc`
//! default, `http/protobuf`, `http/json`). Without an endpoint nothing is exported and nothing
//! complains.
//!
//! Tests: `cargo test -p anomaly-detector telemetry::`.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry::KeyValue;
use opentelemetry_otlp::{Protocol, WithExportConfig as _};
use opentelemetry_sdk::runtime::Tokio;
use opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// Default `RUST_LOG` directives.
pub const DEFAULT_LOG_FILTER: &str = "info,opentelemetry=warn,opentelemetry_sdk=warn,opentelemetry_otlp=warn,h2=warn,hyper=warn,hyper_util=warn,tonic=warn,tower=warn,reqwest=warn";

/// Spans that become OpenTelemetry spans: ours only, never the exporter's own transport.
const OTEL_FILTER: &str = "info,anomaly_detector=debug,opentelemetry=off,opentelemetry_sdk=off,opentelemetry_otlp=off,h2=off,hyper=off,hyper_util=off,tonic=off,tower=off,reqwest=off";

/// Setup failures.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// Unsupported `OTEL_EXPORTER_OTLP_PROTOCOL`.
    #[error(
        "OTEL_EXPORTER_OTLP_PROTOCOL={0:?} is not supported: use grpc, http/protobuf or http/json"
    )]
    Protocol(String),
    /// The exporter could not be built.
    #[error("cannot build the OTLP exporter (check OTEL_EXPORTER_OTLP_ENDPOINT and OTEL_EXPORTER_OTLP_HEADERS): {0}")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
    /// A global subscriber already exists.
    #[error("cannot install the log subscriber: {0}")]
    Subscriber(#[from] tracing_subscriber::util::TryInitError),
}

/// Installed telemetry; [`Telemetry::shutdown`] flushes pending spans.
#[derive(Debug)]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Whether spans are exported.
    pub fn exporting(&self) -> bool {
        self.provider.is_some()
    }

    /// Flushes and stops the tracer provider (blocking; call off the async workers).
    pub fn shutdown(self) {
        if let Some(p) = self.provider {
            if let Err(e) = p.shutdown() {
                tracing::warn!(error = %e, "flushing traces failed");
            }
        }
    }
}

/// Whether OTLP export is configured by the environment (`lookup` reads a variable).
pub fn export_enabled(lookup: impl Fn(&str) -> Option<String>) -> bool {
    let set = |k: &str| lookup(k).is_some_and(|v| !v.trim().is_empty());
    let disabled =
        lookup("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
    !disabled && (set("OTEL_EXPORTER_OTLP_ENDPOINT") || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
}

fn protocol(lookup: impl Fn(&str) -> Option<String>) -> Result<Option<Protocol>, TelemetryError> {
    let v = lookup("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        .or_else(|| lookup("OTEL_EXPORTER_OTLP_PROTOCOL"))
        .unwrap_or_default();
    match v.trim().to_ascii_lowercase().as_str() {
        "" | "grpc" => Ok(None),
        "http/protobuf" => Ok(Some(Protocol::HttpBinary)),
        "http/json" => Ok(Some(Protocol::HttpJson)),
        _ => Err(TelemetryError::Protocol(v)),
    }
}

/// Installs logging and, when configured, OTLP trace export. Must run inside a Tokio runtime.
///
/// # Errors
/// [`TelemetryError`] for a bad protocol or endpoint or a second installation.
pub fn init() -> Result<Telemetry, TelemetryError> {
    let env = |k: &str| std::env::var(k).ok();
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG_FILTER));
    let json = env("LOG_FORMAT").is_some_and(|v| v.eq_ignore_ascii_case("json"));
    let fmt_layer = if json {
        tracing_subscriber::fmt::layer()
            .json()
            .with_filter(filter)
            .boxed()
    } else {
        tracing_subscriber::fmt::layer().with_filter(filter).boxed()
    };
    let provider = if export_enabled(env) {
        let exporter = match protocol(env)? {
            None => opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .build()?,
            Some(p) => opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_protocol(p)
                .build()?,
        };
        let resource = Resource::builder()
            .with_service_name(
                env("OTEL_SERVICE_NAME").unwrap_or_else(|| "anomaly-detector".into()),
            )
            .with_attributes([KeyValue::new("service.version", env!("CARGO_PKG_VERSION"))])
            .build();
        // The batch processor runs on the Tokio runtime: the OTLP HTTP (async reqwest) and gRPC
        // (tonic) clients need a reactor, which the SDK's default processor thread lacks.
        let processor = BatchSpanProcessor::builder(exporter, Tokio).build();
        Some(
            SdkTracerProvider::builder()
                .with_span_processor(processor)
                .with_resource(resource)
                .build(),
        )
    } else {
        None
    };
    let otel_layer = provider.as_ref().map(|p| {
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer("anomaly-detector"))
            .with_filter(EnvFilter::new(OTEL_FILTER))
    });
    tracing_subscriber::registry()
        .with(fmt_layer)
        .with(otel_layer)
        .try_init()?;
    Ok(Telemetry { provider })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn export_only_with_endpoint() {
        assert!(!export_enabled(|_| None));
        assert!(export_enabled(
            |k| (k == "OTEL_EXPORTER_OTLP_ENDPOINT").then(|| "http://127.0.0.1:4317".into())
        ));
        assert!(!export_enabled(|k| match k {
            "OTEL_EXPORTER_OTLP_ENDPOINT" => Some("http://127.0.0.1:4317".into()),
            "OTEL_SDK_DISABLED" => Some("true".into()),
            _ => None,
        }));
        assert!(matches!(
            protocol(|_| Some("xml".into())),
            Err(TelemetryError::Protocol(_))
        ));
        assert!(matches!(
            protocol(|_| Some("http/protobuf".into())),
            Ok(Some(Protocol::HttpBinary))
        ));
    }
}
