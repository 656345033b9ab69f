//! The batch type carried between components: one OTLP export request of one signal.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use std::fmt;

/// The three OpenTelemetry signals a pipeline can carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Signal {
    /// Spans.
    Traces,
    /// Metric data points.
    Metrics,
    /// Log records.
    Logs,
}

impl Signal {
    /// All signals, in the order used for display and iteration.
    pub const ALL: [Signal; 3] = [Signal::Traces, Signal::Metrics, Signal::Logs];

    /// The name used in config (`service.pipelines.traces`) and in metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Signal::Traces => "traces",
            Signal::Metrics => "metrics",
            Signal::Logs => "logs",
        }
    }

    /// The item noun used in otelcol's own metric names (`otelcol_receiver_accepted_spans_total`).
    pub fn item_noun(self) -> &'static str {
        match self {
            Signal::Traces => "spans",
            Signal::Metrics => "metric_points",
            Signal::Logs => "log_records",
        }
    }

    /// Parses a pipeline signal name (`traces`, `metrics`, `logs`).
    pub fn parse(name: &str) -> Option<Signal> {
        Signal::ALL.into_iter().find(|s| s.as_str() == name)
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One batch of telemetry: the OTLP export request that carries it, unchanged in shape so it can be
/// forwarded without conversion.
#[derive(Clone, Debug, PartialEq)]
pub enum Telemetry {
    /// A batch of spans.
    Traces(ExportTraceServiceRequest),
    /// A batch of metrics.
    Metrics(ExportMetricsServiceRequest),
    /// A batch of log records.
    Logs(ExportLogsServiceRequest),
}

impl Telemetry {
    /// Which signal this batch carries.
    pub fn signal(&self) -> Signal {
        match self {
            Telemetry::Traces(_) => Signal::Traces,
            Telemetry::Metrics(_) => Signal::Metrics,
            Telemetry::Logs(_) => Signal::Logs,
        }
    }

    /// Number of items: spans, metric data points, or log records.
    pub fn item_count(&self) -> usize {
        match self {
            Telemetry::Traces(req) => req
                .resource_spans
                .iter()
                .flat_map(|rs| &rs.scope_spans)
                .map(|ss| ss.spans.len())
                .sum(),
            Telemetry::Metrics(req) => req
                .resource_metrics
                .iter()
                .flat_map(|rm| &rm.scope_metrics)
                .flat_map(|sm| &sm.metrics)
                .map(|m| data_point_count(m.data.as_ref()))
                .sum(),
            Telemetry::Logs(req) => req
                .resource_logs
                .iter()
                .flat_map(|rl| &rl.scope_logs)
                .map(|sl| sl.log_records.len())
                .sum(),
        }
    }

    /// The batch as the OTLP protobuf request of its signal (what the persistent queue stores).
    pub fn encode_to_vec(&self) -> Vec<u8> {
        use prost::Message;
        match self {
            Telemetry::Traces(r) => r.encode_to_vec(),
            Telemetry::Metrics(r) => r.encode_to_vec(),
            Telemetry::Logs(r) => r.encode_to_vec(),
        }
    }

    /// Size of [`Telemetry::encode_to_vec`]'s output, without encoding.
    pub fn encoded_len(&self) -> usize {
        use prost::Message;
        match self {
            Telemetry::Traces(r) => r.encoded_len(),
            Telemetry::Metrics(r) => r.encoded_len(),
            Telemetry::Logs(r) => r.encoded_len(),
        }
    }

    /// Decodes an OTLP protobuf request of `signal`.
    ///
    /// # Errors
    /// When `bytes` is not a valid request of that signal.
    pub fn decode(signal: Signal, bytes: &[u8]) -> Result<Telemetry, prost::DecodeError> {
        use prost::Message;
        Ok(match signal {
            Signal::Traces => Telemetry::Traces(ExportTraceServiceRequest::decode(bytes)?),
            Signal::Metrics => Telemetry::Metrics(ExportMetricsServiceRequest::decode(bytes)?),
            Signal::Logs => Telemetry::Logs(ExportLogsServiceRequest::decode(bytes)?),
        })
    }

    /// True when the batch holds no items.
    pub fn is_empty(&self) -> bool {
        self.item_count() == 0
    }
}

/// Number of data points in one metric, whatever its type.
pub(crate) fn data_point_count(data: Option<&Data>) -> usize {
    match data {
        Some(Data::Gauge(g)) => g.data_points.len(),
        Some(Data::Sum(s)) => s.data_points.len(),
        Some(Data::Histogram(h)) => h.data_points.len(),
        Some(Data::ExponentialHistogram(h)) => h.data_points.len(),
        Some(Data::Summary(s)) => s.data_points.len(),
        None => 0,
    }
}
