//! Filter matching: include/exclude, strict/regexp, attributes, services, metric names, logs.

use super::*;
use crate::pipeline::{ConsumeFuture, Consumer};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{Metric, ResourceMetrics, ScopeMetrics};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use std::sync::{Arc, Mutex};

#[derive(Default)]
struct Sink(Mutex<Vec<Telemetry>>);
impl Consumer for Sink {
    fn consume(&self, d: Telemetry) -> ConsumeFuture<'_> {
        self.0.lock().unwrap().push(d);
        Box::pin(async { Ok(()) })
    }
}

fn s(v: &str) -> Option<AnyValue> {
    Some(AnyValue {
        value: Some(AnyInner::StringValue(v.into())),
    })
}
fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: s(v),
        ..Default::default()
    }
}

fn spans(service: &str, list: &[(&str, &[(&str, &str)])]) -> ResourceSpans {
    ResourceSpans {
        resource: Some(Resource {
            attributes: vec![kv("service.name", service)],
            ..Default::default()
        }),
        scope_spans: vec![ScopeSpans {
            spans: list
                .iter()
                .map(|(n, attrs)| Span {
                    name: n.to_string(),
                    attributes: attrs.iter().map(|(k, v)| kv(k, v)).collect(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn processor(yaml: &str, signal: Signal) -> (FilterProcessor, Arc<Sink>) {
    let c = FilterConfig::parse(serde_yaml::from_str(yaml).unwrap()).unwrap();
    c.validate().unwrap();
    let sink = Arc::new(Sink::default());
    (
        FilterProcessor::new("filter", &c, signal, sink.clone()),
        sink,
    )
}

fn span_names(sink: &Sink) -> Vec<String> {
    sink.0
        .lock()
        .unwrap()
        .iter()
        .flat_map(|t| match t {
            Telemetry::Traces(r) => r
                .resource_spans
                .iter()
                .flat_map(|r| &r.scope_spans)
                .flat_map(|s| &s.spans)
                .map(|s| s.name.clone())
                .collect::<Vec<_>>(),
            _ => vec![],
        })
        .collect()
}

#[tokio::test]
async fn exclude_by_regexp_name_and_attribute() {
    let (p, sink) = processor(
        "spans:\n  exclude:\n    match_type: regexp\n    span_names: ['^GET /health']\n",
        Signal::Traces,
    );
    let data = Telemetry::Traces(ExportTraceServiceRequest {
        resource_spans: vec![spans(
            "a",
            &[
                ("GET /health", &[]),
                ("GET /api", &[]),
                ("GET /healthz", &[]),
            ],
        )],
    });
    p.consume(data).await.unwrap();
    assert_eq!(span_names(&sink), ["GET /api"]);

    let (p, sink) = processor(
        "spans:\n  exclude:\n    match_type: strict\n    attributes: [{key: http.route, value: /health}]\n",
        Signal::Traces,
    );
    let data = Telemetry::Traces(ExportTraceServiceRequest {
        resource_spans: vec![spans(
            "a",
            &[
                ("x", &[("http.route", "/health")]),
                ("y", &[("http.route", "/api")]),
                ("z", &[]),
            ],
        )],
    });
    p.consume(data).await.unwrap();
    assert_eq!(span_names(&sink), ["y", "z"]);
}

#[tokio::test]
async fn include_by_service_drops_others_and_empty_batches() {
    let (p, sink) = processor(
        "spans:\n  include:\n    services: [checkout]\n",
        Signal::Traces,
    );
    let data = Telemetry::Traces(ExportTraceServiceRequest {
        resource_spans: vec![
            spans("checkout", &[("a", &[])]),
            spans("cart", &[("b", &[])]),
        ],
    });
    p.consume(data).await.unwrap();
    assert_eq!(span_names(&sink), ["a"]);
    let only_other = Telemetry::Traces(ExportTraceServiceRequest {
        resource_spans: vec![spans("cart", &[("b", &[])])],
    });
    p.consume(only_other).await.unwrap();
    assert_eq!(
        sink.0.lock().unwrap().len(),
        1,
        "a batch filtered to nothing is not forwarded"
    );
}

#[tokio::test]
async fn metrics_by_name_and_logs_by_severity() {
    let (p, sink) = processor(
        "metrics:\n  exclude:\n    match_type: regexp\n    metric_names: ['^go_']\n",
        Signal::Metrics,
    );
    let m = |n: &str| Metric {
        name: n.into(),
        data: Some(
            opentelemetry_proto::tonic::metrics::v1::metric::Data::Gauge(
                opentelemetry_proto::tonic::metrics::v1::Gauge {
                    data_points: vec![Default::default()],
                },
            ),
        ),
        ..Default::default()
    };
    let data = Telemetry::Metrics(ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![m("go_gc"), m("http.server.duration")],
                ..Default::default()
            }],
            ..Default::default()
        }],
    });
    p.consume(data).await.unwrap();
    {
        let Telemetry::Metrics(got) = &sink.0.lock().unwrap()[0] else {
            unreachable!()
        };
        let names: Vec<&str> = got.resource_metrics[0].scope_metrics[0]
            .metrics
            .iter()
            .map(|m| m.name.as_str())
            .collect();
        assert_eq!(names, ["http.server.duration"]);
    }

    let (p, sink) = processor(
        "logs:\n  exclude:\n    severity_texts: [DEBUG]\n",
        Signal::Logs,
    );
    let l = |sev: &str| LogRecord {
        severity_text: sev.into(),
        ..Default::default()
    };
    let data = Telemetry::Logs(ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: vec![l("DEBUG"), l("ERROR")],
                ..Default::default()
            }],
            ..Default::default()
        }],
    });
    p.consume(data).await.unwrap();
    assert_eq!(sink.0.lock().unwrap()[0].item_count(), 1);
}

#[test]
fn config_errors_name_the_key() {
    let e = FilterConfig::parse(
        serde_yaml::from_str("spans:\n  exclude:\n    span_name: [x]\n").unwrap(),
    )
    .unwrap_err();
    assert_eq!(e.path, "spans.exclude.span_name");
    assert!(e.message.contains("did you mean `span_names`"), "{e}");
    let c = FilterConfig::parse(
        serde_yaml::from_str("spans:\n  exclude:\n    match_type: regexp\n    span_names: ['(']\n")
            .unwrap(),
    )
    .unwrap();
    let e = c.validate().unwrap_err();
    assert_eq!(e.path, "spans.exclude.span_names[0]");
    let e = FilterConfig::parse(serde_yaml::from_str("logs:\n  log_record: ['x']\n").unwrap())
        .unwrap_err();
    assert!(e.message.contains("OTTL"), "{e}");
}

/// `error_mode` was parsed and ignored; it cannot act on the legacy matchers, so it is refused,
/// naming it, whatever its value.
#[test]
fn error_mode_is_refused_naming_the_key() {
    for mode in ["ignore", "silent", "propagate", "bogus"] {
        let c = FilterConfig::parse(
            serde_yaml::from_str(&format!(
                "error_mode: {mode}\nspans:\n  exclude:\n    span_names: [x]\n"
            ))
            .unwrap(),
        )
        .unwrap();
        let e = c.validate().unwrap_err();
        assert_eq!(e.path, "error_mode", "{mode}");
        assert!(e.message.contains("OTTL"), "{e}");
    }
}
