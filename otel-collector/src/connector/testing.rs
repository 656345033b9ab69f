//! Builders of synthetic traces and lookups in derived metrics, for the connectors' unit tests.

use crate::translate::any_value_string;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{metric::Data, Metric};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};

/// Start of every synthetic span (ns since the epoch).
pub(crate) const T0: u64 = 1_700_000_000_000_000_000;

/// A string attribute.
pub(crate) fn attr(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.into())),
        }),
        ..Default::default()
    }
}

/// A span of trace `trace`, id `id`, parent `parent` (0 = none), lasting `micros`.
pub(crate) fn span(trace: u8, id: u8, parent: u8, kind: SpanKind, name: &str, micros: u64) -> Span {
    Span {
        trace_id: vec![trace; 16],
        span_id: vec![id; 8],
        parent_span_id: if parent == 0 {
            Vec::new()
        } else {
            vec![parent; 8]
        },
        name: name.into(),
        kind: kind as i32,
        start_time_unix_nano: T0,
        end_time_unix_nano: T0 + micros * 1000,
        ..Default::default()
    }
}

/// The same span with status ERROR.
pub(crate) fn failed(mut s: Span) -> Span {
    s.status = Some(Status {
        code: StatusCode::Error as i32,
        message: String::new(),
    });
    s
}

/// The same span with attributes `attrs`.
pub(crate) fn with_attrs(mut s: Span, attrs: &[(&str, &str)]) -> Span {
    s.attributes.extend(attrs.iter().map(|(k, v)| attr(k, v)));
    s
}

/// One request with the spans of each `(service, spans)` under its own resource.
pub(crate) fn request(parts: Vec<(&str, Vec<Span>)>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: parts
            .into_iter()
            .map(|(service, spans)| ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![
                        attr("service.name", service),
                        attr("service.instance.id", &format!("{service}-1")),
                    ],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    spans,
                    ..Default::default()
                }],
                schema_url: String::new(),
            })
            .collect(),
    }
}

/// Every metric named `name` in `req`, with the service name of its resource.
pub(crate) fn metrics<'a>(req: &'a ExportMetricsServiceRequest, name: &str) -> Vec<&'a Metric> {
    req.resource_metrics
        .iter()
        .flat_map(|rm| &rm.scope_metrics)
        .flat_map(|sm| &sm.metrics)
        .filter(|m| m.name == name)
        .collect()
}

/// The attributes of a data point as sorted `key=value` text.
pub(crate) fn labels(attrs: &[KeyValue]) -> String {
    let mut v: Vec<String> = attrs
        .iter()
        .map(|kv| format!("{}={}", kv.key, any_value_string(kv.value.as_ref())))
        .collect();
    v.sort();
    v.join(",")
}

/// `(labels, value)` of every sum point of metric `name`, sorted.
pub(crate) fn sums(req: &ExportMetricsServiceRequest, name: &str) -> Vec<(String, i64)> {
    use opentelemetry_proto::tonic::metrics::v1::number_data_point::Value;
    let mut out: Vec<(String, i64)> = metrics(req, name)
        .into_iter()
        .flat_map(|m| match &m.data {
            Some(Data::Sum(s)) => s.data_points.iter().collect::<Vec<_>>(),
            _ => Vec::new(),
        })
        .map(|p| {
            let v = match p.value {
                Some(Value::AsInt(i)) => i,
                _ => -1,
            };
            (labels(&p.attributes), v)
        })
        .collect();
    out.sort();
    out
}

/// `(labels, bucket counts, sum)` of every histogram point of metric `name`, sorted.
pub(crate) fn histograms(
    req: &ExportMetricsServiceRequest,
    name: &str,
) -> Vec<(String, Vec<u64>, f64)> {
    let mut out: Vec<(String, Vec<u64>, f64)> = metrics(req, name)
        .into_iter()
        .flat_map(|m| match &m.data {
            Some(Data::Histogram(h)) => h.data_points.iter().collect::<Vec<_>>(),
            _ => Vec::new(),
        })
        .map(|p| {
            (
                labels(&p.attributes),
                p.bucket_counts.clone(),
                p.sum.unwrap_or(f64::NAN),
            )
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}
