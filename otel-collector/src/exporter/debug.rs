//! The `debug` exporter: logs what passes through a pipeline (upstream `debugexporter`).
//!
//! `verbosity: basic` (default) logs one line per batch with its counts; `normal` adds one line per
//! span / metric / log record; `detailed` logs the whole batch as OTLP JSON. Logs go through
//! `tracing` at INFO under target `otel_collector::exporter::debug`. Like upstream, logging is
//! sampled per second: the first `sampling_initial` batches (default 2), then every
//! `sampling_thereafter`-th (default 1 = all; 0 = none); every batch is counted as sent.
//!
//! Tests: `cargo test -p otel-collector exporter::debug`.

use super::queue::ExporterMetrics;
use crate::config::ComponentConfigError;
use crate::pipeline::{ConsumeFuture, Consumer, Shutdown, ShutdownFuture, Telemetry};
use serde::Deserialize;
use std::fmt::Write as _;

/// How much the debug exporter logs.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Verbosity {
    /// Counts per batch.
    #[default]
    Basic,
    /// One line per item.
    Normal,
    /// The whole batch as OTLP JSON.
    Detailed,
}

/// Configuration of a `debug` exporter.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DebugExporterConfig {
    /// Level of detail.
    pub verbosity: Verbosity,
    /// Batches logged in each second before sampling starts (default 2).
    pub sampling_initial: Option<u64>,
    /// After those, every this-many-th batch of the second is logged (default 1: all; 0: none).
    pub sampling_thereafter: Option<u64>,
}

/// Upstream's default `sampling_initial`.
pub const DEFAULT_SAMPLING_INITIAL: u64 = 2;
/// Upstream's default `sampling_thereafter`.
pub const DEFAULT_SAMPLING_THEREAFTER: u64 = 1;

/// Which batches get logged: per one-second window, the first `initial`, then every
/// `thereafter`-th.
#[derive(Debug)]
struct Sampler {
    initial: u64,
    thereafter: u64,
    /// Start of the current window (none before the first batch) and batches seen in it.
    window: std::sync::Mutex<(Option<std::time::Instant>, u64)>,
}

impl Sampler {
    fn new(cfg: &DebugExporterConfig) -> Self {
        Sampler {
            initial: cfg.sampling_initial.unwrap_or(DEFAULT_SAMPLING_INITIAL),
            thereafter: cfg
                .sampling_thereafter
                .unwrap_or(DEFAULT_SAMPLING_THEREAFTER),
            window: std::sync::Mutex::new((None, 0)),
        }
    }

    /// Whether the batch arriving at `now` is logged.
    fn admit(&self, now: std::time::Instant) -> bool {
        let mut w = self.window.lock().unwrap_or_else(|e| e.into_inner());
        let expired = w.0.is_none_or(|start| {
            now.saturating_duration_since(start) >= std::time::Duration::from_secs(1)
        });
        if expired {
            *w = (Some(now), 0);
        }
        let n = w.1;
        w.1 += 1;
        n < self.initial
            || (self.thereafter > 0 && (n - self.initial).is_multiple_of(self.thereafter))
    }
}

impl DebugExporterConfig {
    /// Nothing to check beyond serde.
    ///
    /// # Errors
    /// Never.
    pub fn validate(&self) -> Result<(), ComponentConfigError> {
        Ok(())
    }
}

/// A running `debug` exporter.
#[derive(Debug)]
pub struct DebugExporter {
    id: String,
    verbosity: Verbosity,
    sampler: Sampler,
    metrics: ExporterMetrics,
}

impl DebugExporter {
    /// A debug exporter with id `id`.
    pub fn new(id: &str, cfg: &DebugExporterConfig, metrics: ExporterMetrics) -> Self {
        DebugExporter {
            id: id.to_string(),
            verbosity: cfg.verbosity,
            sampler: Sampler::new(cfg),
            metrics,
        }
    }

    /// The text logged for `data` at this verbosity (also used by tests).
    pub fn render(&self, data: &Telemetry) -> String {
        let mut out = String::new();
        let (resources, kind) = match data {
            Telemetry::Traces(r) => (r.resource_spans.len(), "spans"),
            Telemetry::Metrics(r) => (r.resource_metrics.len(), "data points"),
            Telemetry::Logs(r) => (r.resource_logs.len(), "log records"),
        };
        let _ = write!(
            out,
            "{}: {} resources, {} {kind}",
            data.signal(),
            resources,
            data.item_count()
        );
        match self.verbosity {
            Verbosity::Basic => {}
            Verbosity::Normal => render_items(&mut out, data),
            Verbosity::Detailed => {
                let json = match data {
                    Telemetry::Traces(r) => serde_json::to_string_pretty(r),
                    Telemetry::Metrics(r) => serde_json::to_string_pretty(r),
                    Telemetry::Logs(r) => serde_json::to_string_pretty(r),
                };
                out.push('\n');
                out.push_str(&json.unwrap_or_else(|e| format!("<cannot render: {e}>")));
            }
        }
        out
    }
}

fn hex(b: &[u8]) -> String {
    b.iter()
        .fold(String::with_capacity(b.len() * 2), |mut s, x| {
            let _ = write!(s, "{x:02x}");
            s
        })
}

fn render_items(out: &mut String, data: &Telemetry) {
    match data {
        Telemetry::Traces(r) => {
            for s in r
                .resource_spans
                .iter()
                .flat_map(|rs| &rs.scope_spans)
                .flat_map(|ss| &ss.spans)
            {
                let _ = write!(
                    out,
                    "\n  span {} trace_id={} span_id={} attributes={}",
                    s.name,
                    hex(&s.trace_id),
                    hex(&s.span_id),
                    s.attributes.len()
                );
            }
        }
        Telemetry::Metrics(r) => {
            for m in r
                .resource_metrics
                .iter()
                .flat_map(|rm| &rm.scope_metrics)
                .flat_map(|sm| &sm.metrics)
            {
                let points = crate::pipeline::data_point_count(m.data.as_ref());
                let _ = write!(
                    out,
                    "\n  metric {} unit={:?} points={points}",
                    m.name, m.unit
                );
            }
        }
        Telemetry::Logs(r) => {
            for l in r
                .resource_logs
                .iter()
                .flat_map(|rl| &rl.scope_logs)
                .flat_map(|sl| &sl.log_records)
            {
                let body = l
                    .body
                    .as_ref()
                    .and_then(|b| b.value.as_ref())
                    .map(|v| format!("{v:?}"))
                    .unwrap_or_default();
                let _ = write!(
                    out,
                    "\n  log severity={} body={body} attributes={}",
                    l.severity_text,
                    l.attributes.len()
                );
            }
        }
    }
}

impl Consumer for DebugExporter {
    fn consume(&self, data: Telemetry) -> ConsumeFuture<'_> {
        Box::pin(async move {
            if self.sampler.admit(std::time::Instant::now()) {
                let text = self.render(&data);
                tracing::info!(exporter = %self.id, "{text}");
            }
            self.metrics.sent(data.signal(), data.item_count() as u64);
            Ok(())
        })
    }
}

impl Shutdown for DebugExporter {
    fn shutdown(&self, _deadline: tokio::time::Instant) -> ShutdownFuture<'_> {
        Box::pin(async {})
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::SelfMetrics;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

    fn batch() -> Telemetry {
        Telemetry::Traces(ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans: vec![Span {
                        name: "GET /api".into(),
                        trace_id: vec![0xab; 16],
                        span_id: vec![1; 8],
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        })
    }

    fn exporter(v: Verbosity) -> DebugExporter {
        let reg = SelfMetrics::default();
        DebugExporter::new(
            "debug",
            &DebugExporterConfig {
                verbosity: v,
                ..Default::default()
            },
            ExporterMetrics::in_registry(&reg, "debug"),
        )
    }

    #[test]
    fn verbosity_levels() {
        let b = batch();
        assert_eq!(
            exporter(Verbosity::Basic).render(&b),
            "traces: 1 resources, 1 spans"
        );
        let normal = exporter(Verbosity::Normal).render(&b);
        assert!(
            normal.contains("span GET /api trace_id=abababab"),
            "{normal}"
        );
        let detailed = exporter(Verbosity::Detailed).render(&b);
        assert!(detailed.contains("\"name\": \"GET /api\""), "{detailed}");
    }

    /// `sampling_initial` / `sampling_thereafter` act (they were accepted and ignored).
    #[test]
    fn sampling_logs_the_first_batches_of_each_second_then_every_nth() {
        let sampler = |initial, thereafter| {
            Sampler::new(&DebugExporterConfig {
                sampling_initial: Some(initial),
                sampling_thereafter: Some(thereafter),
                ..Default::default()
            })
        };
        let t0 = std::time::Instant::now();
        let logged = |s: &Sampler, at: std::time::Instant| (0..10).filter(|_| s.admit(at)).count();
        let s = sampler(2, 3);
        assert_eq!(logged(&s, t0), 5, "batches 0, 1, then 2, 5, 8");
        let next = t0 + std::time::Duration::from_secs(1);
        assert_eq!(logged(&s, next), 5, "a new second starts over");
        assert_eq!(
            logged(&sampler(1, 0), t0),
            1,
            "0: nothing after the initial ones"
        );
        let defaults = Sampler::new(&DebugExporterConfig::default());
        assert_eq!(
            logged(&defaults, t0),
            10,
            "upstream defaults log everything"
        );
    }

    /// Every item consumed counts in `otelcol_exporter_sent_*` of its signal (the test asserted
    /// a queue gauge this exporter never touches, so it could not fail).
    #[tokio::test]
    async fn counts_sent_items() {
        use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
        use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
        use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
        use opentelemetry_proto::tonic::metrics::v1::{
            metric, Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics,
        };
        let reg = SelfMetrics::default();
        let e = DebugExporter::new(
            "debug/count",
            &DebugExporterConfig::default(),
            ExporterMetrics::in_registry(&reg, "debug/count"),
        );
        e.consume(batch()).await.unwrap();
        e.consume(batch()).await.unwrap();
        let points = Telemetry::Metrics(ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                scope_metrics: vec![ScopeMetrics {
                    metrics: vec![Metric {
                        name: "g".into(),
                        data: Some(metric::Data::Gauge(Gauge {
                            data_points: vec![NumberDataPoint::default(); 3],
                        })),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        });
        e.consume(points).await.unwrap();
        let logs = Telemetry::Logs(ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                scope_logs: vec![ScopeLogs {
                    log_records: vec![LogRecord::default(); 4],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        });
        e.consume(logs).await.unwrap();
        let text = reg.render();
        for line in [
            r#"otelcol_exporter_sent_spans_total{exporter="debug/count"} 2"#,
            r#"otelcol_exporter_sent_metric_points_total{exporter="debug/count"} 3"#,
            r#"otelcol_exporter_sent_log_records_total{exporter="debug/count"} 4"#,
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
        }
    }
}
