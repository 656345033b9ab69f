//! End to end through the real collector: the `demo-app` binary (all three services on port 0)
//! exports OTLP (gRPC in one test, HTTP/protobuf in the other) to the `otel-collector` binary (otlp receiver → batch → `file` exporter for
//! traces, → `prometheus` exporter for metrics), and a real Prometheus scrapes the exporter
//! every second (`honor_labels: true`).
//!
//! Checks:
//! * one `POST /api/orders` is one trace: the collector's file (OTLP JSON lines) holds spans of
//!   the order's trace id from `demo-frontend`, `demo-inventory` and `demo-payment` (by the
//!   `service.name` resource attribute), forming one tree whose inventory and payment server
//!   spans are children of frontend client spans (W3C `traceparent` across the HTTP hops), and
//!   no other trace holds inventory or payment spans;
//! * after N `GET /api/products`, `sum(http_server_request_duration_seconds_count{...})` in
//!   Prometheus equals N exactly (and stays N), with the translated labels, and the order's
//!   `demo_orders_created_total` is 1;
//! * the collector exits 0 on SIGTERM.
//!
//! Needs `prometheus` on PATH (`make deps`) and the `otel-collector` binary of the same target
//! dir: `cargo test --workspace` builds it; alone, run
//! `cargo build -p otel-collector && cargo test -p demo-app --test e2e_collector`.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;
use test_support::collector::{collector_bin, start_collector};
use test_support::prometheus::{honor_labels_scrape_config, query, query_until, start_prometheus};
use test_support::{free_port, require_bin, Procs, TempDir};

/// Bound of every wait for data to arrive.
const WAIT: Duration = Duration::from_secs(60);
/// Number of `GET /api/products` whose histogram count is checked.
const N: u64 = 37;

/// OTLP JSON span kinds.
const KIND_SERVER: i64 = 2;
const KIND_CLIENT: i64 = 3;

/// One span read back from the file exporter.
#[derive(Debug, Clone)]
struct FileSpan {
    service: String,
    trace_id: String,
    span_id: String,
    parent: String,
    name: String,
    kind: i64,
}

/// Every span in the collector's JSON-lines file (one `ExportTraceServiceRequest` per line).
fn read_spans(path: &Path) -> Vec<FileSpan> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut out = Vec::new();
    // A line may still be being written; only complete lines are parsed.
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let Ok(req) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        for rs in req["resourceSpans"].as_array().into_iter().flatten() {
            let service = rs["resource"]["attributes"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|kv| kv["key"] == "service.name")
                .and_then(|kv| kv["value"]["stringValue"].as_str())
                .unwrap_or_default()
                .to_string();
            for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
                for s in ss["spans"].as_array().into_iter().flatten() {
                    let text = |k: &str| s[k].as_str().unwrap_or_default().to_lowercase();
                    out.push(FileSpan {
                        service: service.clone(),
                        trace_id: text("traceId"),
                        span_id: text("spanId"),
                        parent: text("parentSpanId"),
                        name: s["name"].as_str().unwrap_or_default().to_string(),
                        kind: s["kind"].as_i64().unwrap_or_default(),
                    });
                }
            }
        }
    }
    out
}

/// The spans of `trace_id` once they form one complete tree (one root, every parent present)
/// with spans from all three services; panics after [`WAIT`].
async fn wait_for_trace(path: &Path, trace_id: &str) -> Vec<FileSpan> {
    let want = BTreeSet::from(["demo-frontend", "demo-inventory", "demo-payment"]);
    let deadline = Instant::now() + WAIT;
    loop {
        let spans: Vec<FileSpan> = read_spans(path)
            .into_iter()
            .filter(|s| s.trace_id == trace_id)
            .collect();
        let services: BTreeSet<&str> = spans.iter().map(|s| s.service.as_str()).collect();
        let ids: BTreeSet<&str> = spans.iter().map(|s| s.span_id.as_str()).collect();
        let roots = spans.iter().filter(|s| s.parent.is_empty()).count();
        let linked = spans
            .iter()
            .all(|s| s.parent.is_empty() || ids.contains(s.parent.as_str()));
        if services == want && roots == 1 && linked {
            return spans;
        }
        assert!(
            Instant::now() < deadline,
            "trace {trace_id} incomplete in {} after {WAIT:?}: services {services:?}, roots \
             {roots}, all parents present {linked}; spans: {:#?}",
            path.display(),
            spans
                .iter()
                .map(|s| (&s.service, &s.name, &s.span_id, &s.parent))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_app_over_grpc_through_collector_to_file_and_prometheus() {
    through_collector("grpc").await;
}

/// The same over OTLP/HTTP (protobuf): the SDK's export threads need the Tokio reactor for the
/// HTTP client (regression test of `demo_app::otlp_runtime`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_app_over_http_through_collector_to_file_and_prometheus() {
    through_collector("http/protobuf").await;
}

/// Runs the whole check with the app exporting by `protocol` (`grpc` or `http/protobuf`).
async fn through_collector(protocol: &str) {
    let collector = collector_bin(env!("CARGO_BIN_EXE_demo-app"));
    require_bin("prometheus");
    let dir = TempDir::new("demo-app");
    let mut procs = Procs::default();
    let otlp_port = free_port();
    let otlp_http_port = free_port();
    let exporter_port = free_port();
    let traces_file = dir.join("traces.jsonl");
    let config = format!(
        r#"receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{otlp_port}
      http:
        endpoint: 127.0.0.1:{otlp_http_port}
processors:
  batch:
    timeout: 200ms
exporters:
  file:
    path: {traces}
    flush_interval: 100ms
  prometheus:
    endpoint: 127.0.0.1:{exporter_port}
service:
  telemetry:
    metrics:
      level: none
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [file]
    metrics:
      receivers: [otlp]
      processors: [batch]
      exporters: [prometheus]
"#,
        traces = traces_file.display()
    );
    let collector_i = start_collector(
        &mut procs,
        &collector,
        &dir,
        &config,
        &[otlp_port, otlp_http_port, exporter_port],
    )
    .await;
    let targets = [format!("127.0.0.1:{exporter_port}")];
    let prometheus =
        start_prometheus(&honor_labels_scrape_config("otel-collector", &targets), &[]).await;
    let prom = prometheus.url();
    let port = if protocol == "grpc" {
        otlp_port
    } else {
        otlp_http_port
    };
    let app = common::start_demo_app(
        format!("127.0.0.1:{port}").parse().expect("addr"),
        &[
            ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol),
            ("OTEL_METRIC_EXPORT_INTERVAL", "1000"),
            ("OTEL_BSP_SCHEDULE_DELAY", "200"),
            ("HOSTNAME", "e2e-host"),
        ],
    )
    .await;
    let client = reqwest::Client::new();

    // ---- One order is one trace across three services.
    let resp = client
        .post(format!("{}/api/orders", app.front))
        .json(&serde_json::json!({"user_id": 3, "items": [{"product_id": 4, "quantity": 1}]}))
        .send()
        .await
        .expect("POST /api/orders");
    assert_eq!(resp.status(), 201);
    let order: Value = resp.json().await.expect("order JSON");
    let trace_id = order["trace_id"]
        .as_str()
        .expect("order answer carries trace_id")
        .to_lowercase();
    assert_eq!(trace_id.len(), 32, "{order}");

    let spans = wait_for_trace(&traces_file, &trace_id).await;
    let by_id: HashMap<&str, &FileSpan> = spans.iter().map(|s| (s.span_id.as_str(), s)).collect();
    let root = spans.iter().find(|s| s.parent.is_empty()).expect("a root");
    assert_eq!(
        (root.service.as_str(), root.name.as_str(), root.kind),
        ("demo-frontend", "POST /api/orders", KIND_SERVER),
        "the frontend's server span is the root: {root:?}"
    );
    for (svc, name) in [
        ("demo-inventory", "POST /inventory/reserve"),
        ("demo-payment", "POST /payments/charge"),
    ] {
        let server = spans
            .iter()
            .find(|s| s.service == svc && s.name == name)
            .unwrap_or_else(|| panic!("no {name:?} span from {svc}: {spans:#?}"));
        assert_eq!(server.kind, KIND_SERVER, "{server:?}");
        let parent = by_id[server.parent.as_str()];
        assert_eq!(
            (parent.service.as_str(), parent.kind),
            ("demo-frontend", KIND_CLIENT),
            "{svc}'s server span must be a child of a frontend client span (traceparent): \
             {parent:?}"
        );
        // The client span descends from the root within the frontend.
        let mut cur = parent;
        while !cur.parent.is_empty() {
            cur = by_id[cur.parent.as_str()];
            assert_eq!(cur.service, "demo-frontend", "{cur:?}");
        }
        assert_eq!(cur.span_id, root.span_id);
    }
    // One order, one trace: every inventory / payment span in the file belongs to it.
    let all = read_spans(&traces_file);
    let downstream_traces: BTreeSet<&str> = all
        .iter()
        .filter(|s| s.service != "demo-frontend")
        .map(|s| s.trace_id.as_str())
        .collect();
    assert_eq!(
        downstream_traces,
        BTreeSet::from([trace_id.as_str()]),
        "one order made spans in other traces"
    );

    // ---- After N requests the duration histogram's count is N, read from Prometheus.
    for _ in 0..N {
        let r = client
            .get(format!("{}/api/products", app.front))
            .send()
            .await
            .expect("GET /api/products");
        assert_eq!(r.status(), 200);
    }
    let sel = r#"http_server_request_duration_seconds_count{job="demo/demo-frontend",http_route="/api/products"}"#;
    let count_q = format!("sum({sel})");
    query_until(prom, &count_q, WAIT, |r| {
        r.len() == 1 && r[0].value >= N as f64
    })
    .await;
    let series = query(prom, sel).await;
    assert_eq!(series.len(), 1, "one series (GET, 200): {series:#?}");
    let s = &series[0];
    assert_eq!(s.value, N as f64, "{s:?}");
    assert_eq!(s.label("http_request_method"), "GET", "{s:?}");
    assert_eq!(s.label("http_response_status_code"), "200", "{s:?}");
    assert_eq!(s.label("url_scheme"), "http", "{s:?}");
    let pid = app.child.id().expect("demo-app pid");
    assert_eq!(
        s.label("instance"),
        format!("e2e-host-{pid}-demo-frontend"),
        "instance = service.instance.id: {s:?}"
    );
    let inf = query(
        prom,
        r#"sum(http_server_request_duration_seconds_bucket{job="demo/demo-frontend",http_route="/api/products",le="+Inf"})"#,
    )
    .await;
    assert_eq!(inf.len(), 1, "{inf:?}");
    assert_eq!(inf[0].value, N as f64, "+Inf bucket = count");
    let sum = query(
        prom,
        r#"sum(http_server_request_duration_seconds_sum{job="demo/demo-frontend",http_route="/api/products"})"#,
    )
    .await;
    assert!(
        sum.len() == 1 && sum[0].value > 0.0 && sum[0].value.is_finite(),
        "{sum:?}"
    );
    // The order's business counter and the in-flight gauge made it through too.
    let orders = query(
        prom,
        r#"demo_orders_created_total{job="demo/demo-frontend"}"#,
    )
    .await;
    assert_eq!(orders.len(), 1, "{orders:#?}");
    assert_eq!(orders[0].label("order_status"), "created", "{orders:?}");
    assert_eq!(orders[0].value, 1.0, "one order: {orders:?}");
    // (Polled: an export may fall between a request's duration record and its decrement.)
    query_until(
        prom,
        r#"sum(http_server_active_requests{job="demo/demo-frontend"})"#,
        WAIT,
        |r| r.len() == 1 && r[0].value == 0.0,
    )
    .await;
    // Later exports and scrapes do not count anything twice.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let again = query(prom, &count_q).await;
    assert_eq!(again.len(), 1, "{again:?}");
    assert_eq!(again[0].value, N as f64, "count changed without requests");

    drop(app);
    let exit = procs.terminate(collector_i, Duration::from_secs(30)).await;
    assert!(
        exit.success(),
        "collector exit {exit} after SIGTERM:\n{}",
        procs.get(collector_i).log_text()
    );
}
