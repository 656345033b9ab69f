//! The trace → metrics connectors through the collector binary: OTLP/HTTP traces of a
//! three-service order (frontend → inventory, frontend → payment, some payments failing) go in,
//! `spanmetrics` and `servicegraph` turn them into metrics, the metrics pipeline exports them
//! with the `prometheus` exporter, and both the exporter's scrape page and a real Prometheus
//! scraping it show upstream's series names, labels and exact counts. The collector then stops
//! on SIGTERM with exit code 0.
//!
//! Needs `prometheus` on PATH (`make deps`). Run:
//! `cargo test -p otel-collector --test conn_trace_metrics`.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use prost::Message;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};
use test_support::collector::start_collector;
use test_support::prometheus::{honor_labels_scrape_config, query_until, start_prometheus};
use test_support::{free_port, Procs, TempDir};

/// Orders sent; every third payment fails.
const ORDERS: u8 = 12;
/// Bound of every wait.
const WAIT: Duration = Duration::from_secs(30);

fn attr(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.into())),
        }),
        ..Default::default()
    }
}

fn span(trace: u8, id: u8, parent: u8, kind: SpanKind, name: &str, ms: u64, error: bool) -> Span {
    let start = 1_700_000_000_000_000_000u64;
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
        start_time_unix_nano: start,
        end_time_unix_nano: start + ms * 1_000_000,
        status: error.then(|| Status {
            code: StatusCode::Error as i32,
            message: String::new(),
        }),
        ..Default::default()
    }
}

fn resource_spans(service: &str, spans: Vec<Span>) -> ResourceSpans {
    ResourceSpans {
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
    }
}

/// Order `t`: the frontend's server and client spans in one request, the two downstream
/// services' server spans in another (sent first for odd orders: out of order).
fn order(t: u8) -> (ExportTraceServiceRequest, ExportTraceServiceRequest) {
    let fail = t.is_multiple_of(3);
    let front = resource_spans(
        "frontend",
        vec![
            span(t, 1, 0, SpanKind::Server, "POST /api/orders", 40, fail),
            span(t, 2, 1, SpanKind::Client, "GET inventory", 5, false),
            span(t, 3, 1, SpanKind::Client, "POST payment", 20, fail),
        ],
    );
    let inventory = resource_spans(
        "inventory",
        vec![span(t, 4, 2, SpanKind::Server, "GET /stock", 3, false)],
    );
    let payment = resource_spans(
        "payment",
        vec![span(t, 5, 3, SpanKind::Server, "POST /charge", 15, fail)],
    );
    (
        ExportTraceServiceRequest {
            resource_spans: vec![front],
        },
        ExportTraceServiceRequest {
            resource_spans: vec![inventory, payment],
        },
    )
}

async fn post(client: &reqwest::Client, url: &str, req: &ExportTraceServiceRequest) {
    let resp = client
        .post(url)
        .header("content-type", "application/x-protobuf")
        .body(req.encode_to_vec())
        .send()
        .await
        .expect("POST /v1/traces");
    assert!(resp.status().is_success(), "{}", resp.status());
}

/// One sample line of a Prometheus text page: name, labels, value.
type Line = (String, BTreeMap<String, String>, f64);

fn parse_page(text: &str) -> Vec<Line> {
    let mut out = Vec::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (series, value) = match line.rsplit_once(' ') {
            Some(x) => x,
            None => continue,
        };
        // An OpenMetrics exemplar or timestamp is not expected on the classic page.
        let value: f64 = value.parse().unwrap_or(f64::NAN);
        let (name, labels) = match series.split_once('{') {
            Some((n, rest)) => (n, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        let mut map = BTreeMap::new();
        for pair in labels.split("\",").filter(|p| !p.is_empty()) {
            if let Some((k, v)) = pair.split_once("=\"") {
                map.insert(k.to_string(), v.trim_end_matches('"').to_string());
            }
        }
        out.push((name.to_string(), map, value));
    }
    out
}

fn value(page: &[Line], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let hits: Vec<f64> = page
        .iter()
        .filter(|(n, l, _)| {
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| l.get(*k).map(String::as_str).unwrap_or("") == *v)
        })
        .map(|(_, _, v)| *v)
        .collect();
    assert!(
        hits.len() <= 1,
        "{name}{labels:?} matches {} series",
        hits.len()
    );
    hits.first().copied()
}

async fn scrape_until(url: &str, ok: impl Fn(&[Line]) -> bool) -> Vec<Line> {
    let deadline = Instant::now() + WAIT;
    loop {
        let text = reqwest::get(url)
            .await
            .expect("scrape")
            .text()
            .await
            .expect("text");
        let page = parse_page(&text);
        if ok(&page) {
            return page;
        }
        assert!(
            Instant::now() < deadline,
            "condition not met; last page:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traces_become_span_metrics_and_service_graph_series_in_prometheus() {
    let otlp_port = free_port();
    let exporter_port = free_port();
    let own_port = free_port();
    let dir = TempDir::new("conn");
    let config = format!(
        r#"receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{otlp_port}
connectors:
  spanmetrics:
    histogram:
      unit: s
    metrics_flush_interval: 200ms
  servicegraph:
    store:
      ttl: 1s
    store_expiration_loop: 100ms
    metrics_flush_interval: 200ms
exporters:
  prometheus:
    endpoint: 127.0.0.1:{exporter_port}
service:
  telemetry:
    metrics:
      address: 127.0.0.1:{own_port}
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [spanmetrics, servicegraph]
    metrics:
      receivers: [spanmetrics, servicegraph]
      exporters: [prometheus]
"#
    );
    let mut procs = Procs::default();
    let bin = Path::new(env!("CARGO_BIN_EXE_otel-collector"));
    let collector =
        start_collector(&mut procs, bin, &dir, &config, &[otlp_port, exporter_port]).await;
    let prom = start_prometheus(
        &honor_labels_scrape_config("otelcol", &[format!("127.0.0.1:{exporter_port}")]),
        &["--enable-feature=exemplar-storage"],
    )
    .await;

    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{otlp_port}/v1/traces");
    for t in 1..=ORDERS {
        let (front, downstream) = order(t);
        if t % 2 == 1 {
            post(&client, &url, &downstream).await;
            post(&client, &url, &front).await;
        } else {
            post(&client, &url, &front).await;
            post(&client, &url, &downstream).await;
        }
    }
    let failed = f64::from(ORDERS / 3);
    let orders = f64::from(ORDERS);

    // The exporter's page: wait until the user → frontend edges (virtual node, after the ttl)
    // are there too, then check everything at once.
    let page_url = format!("http://127.0.0.1:{exporter_port}/metrics");
    let user_edge = [
        ("client", "user"),
        ("server", "frontend"),
        ("connection_type", "virtual_node"),
        ("failed", "false"),
    ];
    let page = scrape_until(&page_url, |p| {
        value(p, "traces_service_graph_request_total", &user_edge) == Some(orders - failed)
    })
    .await;

    // Span metrics: upstream's names after translation, default dimensions as labels,
    // job/instance from the span's resource.
    let calls = |svc: &str, name: &str, kind: &str, status: &str| {
        value(
            &page,
            "traces_span_metrics_calls_total",
            &[
                ("service_name", svc),
                ("span_name", name),
                ("span_kind", kind),
                ("status_code", status),
                ("job", svc),
                ("instance", &format!("{svc}-1")),
            ],
        )
    };
    assert_eq!(
        calls(
            "frontend",
            "POST /api/orders",
            "SPAN_KIND_SERVER",
            "STATUS_CODE_UNSET"
        ),
        Some(orders - failed)
    );
    assert_eq!(
        calls(
            "frontend",
            "POST /api/orders",
            "SPAN_KIND_SERVER",
            "STATUS_CODE_ERROR"
        ),
        Some(failed)
    );
    assert_eq!(
        calls(
            "frontend",
            "GET inventory",
            "SPAN_KIND_CLIENT",
            "STATUS_CODE_UNSET"
        ),
        Some(orders)
    );
    assert_eq!(
        calls(
            "inventory",
            "GET /stock",
            "SPAN_KIND_SERVER",
            "STATUS_CODE_UNSET"
        ),
        Some(orders)
    );
    let stock = [("service_name", "inventory"), ("span_name", "GET /stock")];
    let bucket = |le: &str| {
        let mut l = stock.to_vec();
        l.push(("le", le));
        value(&page, "traces_span_metrics_duration_seconds_bucket", &l)
    };
    // 3 ms: not in (0, 2 ms], in (2 ms, 4 ms].
    assert_eq!(bucket("0.002"), Some(0.0));
    assert_eq!(bucket("0.004"), Some(orders));
    assert_eq!(bucket("+Inf"), Some(orders));
    assert_eq!(
        value(&page, "traces_span_metrics_duration_seconds_count", &stock),
        Some(orders)
    );
    let sum = value(&page, "traces_span_metrics_duration_seconds_sum", &stock).expect("sum");
    assert!((sum - 0.003 * orders).abs() < 1e-9, "{sum}");

    // Service graph: the edges Grafana reads.
    fn edge(server: &'static str, failed: &'static str) -> Vec<(&'static str, &'static str)> {
        vec![
            ("client", "frontend"),
            ("server", server),
            ("connection_type", ""),
            ("failed", failed),
        ]
    }
    let total = "traces_service_graph_request_total";
    assert_eq!(
        value(&page, total, &edge("inventory", "false")),
        Some(orders)
    );
    assert_eq!(value(&page, total, &edge("inventory", "true")), None);
    assert_eq!(
        value(&page, total, &edge("payment", "false")),
        Some(orders - failed)
    );
    assert_eq!(value(&page, total, &edge("payment", "true")), Some(failed));
    let failed_total = "traces_service_graph_request_failed_total";
    assert_eq!(
        value(&page, failed_total, &edge("payment", "true")),
        Some(failed)
    );
    assert_eq!(
        value(&page, failed_total, &edge("inventory", "false")),
        None
    );
    let mut le = edge("inventory", "false");
    le.push(("le", "0.004"));
    assert_eq!(
        value(
            &page,
            "traces_service_graph_request_server_seconds_bucket",
            &le
        ),
        Some(orders)
    );
    let mut le = edge("inventory", "false");
    le.push(("le", "0.006"));
    // The client span took 5 ms.
    assert_eq!(
        value(
            &page,
            "traces_service_graph_request_client_seconds_bucket",
            &le
        ),
        Some(orders)
    );
    assert_eq!(
        value(
            &page,
            "traces_service_graph_request_server_seconds_count",
            &edge("payment", "true")
        ),
        Some(failed)
    );
    assert!(value(
        &page,
        "traces_service_graph_request_client_seconds_sum",
        &edge("payment", "false")
    )
    .is_some());

    // A real Prometheus sees the same.
    let base = prom.url();
    let r = query_until(
        base,
        r#"traces_service_graph_request_total{client="frontend",server="inventory"}"#,
        WAIT,
        |r| r.len() == 1 && r[0].value == orders,
    )
    .await;
    assert_eq!(r[0].label("failed"), "false");
    query_until(
        base,
        r#"sum(traces_service_graph_request_total{client="frontend",server="payment"})"#,
        WAIT,
        |r| r.len() == 1 && r[0].value == orders,
    )
    .await;
    query_until(
        base,
        r#"sum by (service_name) (traces_span_metrics_calls_total{span_kind="SPAN_KIND_SERVER"})"#,
        WAIT,
        |r| r.len() == 3 && r.iter().all(|s| s.value == orders),
    )
    .await;

    // Own metrics: the root spans' edges expired (into user → frontend).
    let own = scrape_until(&format!("http://127.0.0.1:{own_port}/metrics"), |p| {
        value(
            p,
            "otelcol_connector_servicegraph_expired_edges_total",
            &[("connector", "servicegraph")],
        )
        .is_some()
    })
    .await;
    assert_eq!(
        value(
            &own,
            "otelcol_connector_servicegraph_expired_edges_total",
            &[("connector", "servicegraph")]
        ),
        Some(orders)
    );
    assert_eq!(
        value(
            &own,
            "otelcol_connector_servicegraph_total_edges_total",
            &[("connector", "servicegraph")]
        ),
        Some(3.0 * orders)
    );

    let status = procs.terminate(collector, Duration::from_secs(10)).await;
    assert!(status.success(), "collector exit: {status:?}");
}
