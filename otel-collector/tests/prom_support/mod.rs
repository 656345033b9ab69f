//! Shared helpers of the `prom_*` integration tests: start a real VictoriaMetrics on a free
//! loopback port with a temporary data dir, run the Python SDK app and check the series it
//! produces, and a minimal OTLP/HTTP (protobuf) intake that hands batches to an exporter.
//! Prometheus itself and PromQL queries come from `test_support::prometheus`.
//!
//! The intake is a test stand-in for the collector's OTLP receiver, so these tests exercise the
//! exporters with real SDK payloads without depending on the rest of the pipeline.

#![allow(dead_code, unreachable_pub)]

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use otel_collector::pipeline::{SharedConsumer, Telemetry};
use prost::Message;
use serde_json::Value;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use test_support::prometheus::{query, query_until, Server};
use test_support::{free_port, python, require_bin, TempDir};

/// Starts VictoriaMetrics on a free loopback port; queries see new samples at once.
pub async fn start_victoria_metrics() -> Server {
    let dir = TempDir::new("vm");
    let port = free_port();
    let mut cmd = Command::new(require_bin("victoria-metrics"));
    cmd.arg(format!("-httpListenAddr=127.0.0.1:{port}"))
        .arg(format!("-storageDataPath={}", dir.join("data").display()))
        .arg("-search.latencyOffset=0s")
        .arg("-search.disableCache")
        .arg("-retentionPeriod=1d");
    let url = format!("http://127.0.0.1:{port}");
    let mut vm = Server::spawn("victoria-metrics", cmd, url, port, dir);
    vm.wait_ready("/health", &reqwest::Client::new()).await;
    vm
}

async fn intake(State(consumer): State<SharedConsumer>, body: Bytes) -> StatusCode {
    let Ok(req) = ExportMetricsServiceRequest::decode(body.as_ref()) else {
        return StatusCode::BAD_REQUEST;
    };
    match consumer.consume(Telemetry::Metrics(req)).await {
        Ok(()) => StatusCode::OK,
        Err(e) if e.is_retryable() => StatusCode::SERVICE_UNAVAILABLE,
        Err(_) => StatusCode::BAD_REQUEST,
    }
}

/// Starts the OTLP/HTTP protobuf intake (`POST /v1/metrics`) feeding `consumer`.
pub async fn start_intake(consumer: SharedConsumer) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind intake");
    let addr = listener.local_addr().expect("addr");
    let app = Router::new()
        .route("/v1/metrics", post(intake))
        .with_state(consumer);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}

/// Runs the Python SDK app (`tests/python/prom_sdk_app.py`) against `endpoint`.
pub async fn run_sdk_app(endpoint: &str, env: &[(&str, &str)]) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/prom_sdk_app.py");
    let mut cmd = tokio::process::Command::new(python());
    cmd.arg(&script)
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
        .env("OTEL_METRICS_EXPORTER", "otlp")
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .expect("python app finished within 60s")
        .expect("run python");
    assert!(
        out.status.success(),
        "python app failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Checks the series the Python SDK app produces after `rounds` cumulative rounds, as the
/// OpenTelemetry Collector names and labels them (polls until they appear).
pub async fn assert_sdk_series(base: &str, rounds: f64) {
    let wait = Duration::from_secs(40);
    let orders = query_until(base, "orders_placed_total", wait, |r| {
        r.len() == 2 && r.iter().all(|s| s.value >= 2.0 * rounds)
    })
    .await;
    for s in &orders {
        assert_eq!(s.label("job"), "shop/checkout", "{s:?}");
        assert_eq!(s.label("instance"), "checkout-1", "{s:?}");
        assert_eq!(s.label("otel_scope_name"), "prom.test.app", "{s:?}");
        assert_eq!(s.label("otel_scope_version"), "0.1.0", "{s:?}");
        let want = match s.label("payment_method") {
            "card" => 5.0 * rounds,
            "cash" => 2.0 * rounds,
            other => panic!("unexpected payment_method {other:?}"),
        };
        assert_eq!(s.value, want, "{s:?}");
    }

    let count = query(base, "http_server_request_duration_seconds_count").await;
    assert_eq!(count.len(), 1, "{count:?}");
    assert_eq!(count[0].value, 100.0 * rounds);
    assert_eq!(count[0].label("http_route"), "/api/orders");
    let p95 = query(
        base,
        "histogram_quantile(0.95, sum by (le) (http_server_request_duration_seconds_bucket))",
    )
    .await;
    assert_eq!(p95.len(), 1, "{p95:?}");
    assert!(
        p95[0].value > 0.75 && p95[0].value <= 1.0,
        "p95 {} must fall in the bucket of the true p95 0.95: (0.75, 1.0]",
        p95[0].value
    );
    let sum = query(base, "http_server_request_duration_seconds_sum").await;
    assert!((sum[0].value - 50.5 * rounds).abs() < 1e-6, "{sum:?}");

    let active = query(base, "active_requests").await;
    assert_eq!(active.len(), 1, "{active:?}");
    assert_eq!(
        active[0].value,
        3.0 * rounds,
        "up-down counter becomes a gauge"
    );

    let cpu = query(base, "system_cpu_utilization_ratio").await;
    assert_eq!(cpu.len(), 1, "{cpu:?}");
    assert_eq!(cpu[0].value, 0.42);
    assert_eq!(cpu[0].label("cpu"), "0");

    let info = query(base, "target_info").await;
    assert_eq!(info.len(), 1, "{info:?}");
    assert_eq!(info[0].label("deployment_environment"), "test");
    assert_eq!(info[0].label("telemetry_sdk_language"), "python");
    assert_eq!(info[0].label("job"), "shop/checkout");
    assert_eq!(info[0].label("instance"), "checkout-1");
    assert!(info[0].labels.get("service_name").is_none(), "{info:?}");
}

/// Asserts Prometheus holds at least one exemplar for `selector` whose `trace_id` / `span_id`
/// labels are 32 / 16 hex digits (polls until it appears).
pub async fn assert_trace_exemplars(base: &str, selector: &str) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let url = reqwest::Url::parse_with_params(
        &format!("{base}/api/v1/query_exemplars"),
        &[
            ("query", selector),
            ("start", &(now - 600).to_string()),
            ("end", &(now + 60).to_string()),
        ],
    )
    .expect("url");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let body: Value = reqwest::get(url.clone())
            .await
            .expect("exemplars")
            .json()
            .await
            .expect("json");
        if let Some(ex) = body["data"][0]["exemplars"].get(0) {
            let trace_id = ex["labels"]["trace_id"].as_str().unwrap_or_default();
            let span_id = ex["labels"]["span_id"].as_str().unwrap_or_default();
            assert_eq!(trace_id.len(), 32, "{body}");
            assert_eq!(span_id.len(), 16, "{body}");
            assert!(
                trace_id
                    .chars()
                    .chain(span_id.chars())
                    .all(|c| c.is_ascii_hexdigit()),
                "{body}"
            );
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no exemplars for {selector}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// One OTLP request: gauge `metric` of service `service` with one point per series
/// (`series="0".."n-1"`), all at `time_ms` with `value`.
pub fn gauge_batch(
    service: &str,
    metric: &str,
    series: usize,
    time_ms: u64,
    value: f64,
) -> ExportMetricsServiceRequest {
    use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
    use opentelemetry_proto::tonic::metrics::v1::{
        metric, number_data_point, Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics,
    };
    use opentelemetry_proto::tonic::resource::v1::Resource;
    let attr = |key: &str, v: any_value::Value| KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(v) }),
        ..Default::default()
    };
    let points = (0..series)
        .map(|s| NumberDataPoint {
            attributes: vec![attr("series", any_value::Value::IntValue(s as i64))],
            time_unix_nano: time_ms * 1_000_000,
            value: Some(number_data_point::Value::AsDouble(value)),
            ..Default::default()
        })
        .collect();
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: vec![attr(
                    "service.name",
                    any_value::Value::StringValue(service.into()),
                )],
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: metric.into(),
                    data: Some(metric::Data::Gauge(Gauge {
                        data_points: points,
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}
