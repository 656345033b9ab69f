//! The `prometheusremotewrite` exporter writes into a real Prometheus (remote-write receiver on)
//! and a real VictoriaMetrics, fed by the Python OpenTelemetry SDK (OTLP/HTTP → test intake →
//! exporter); and a fault test: the endpoint is down, then answers 500, then answers too slowly,
//! then recovers — every accepted sample is in Prometheus exactly once; and remote write over TLS
//! to a Prometheus serving HTTPS with a certificate from a private CA (`tls.ca_file`).
//!
//! Needs `prometheus`, `victoria-metrics`, `openssl` and the `.venv` from `make deps`. Run:
//! `cargo test -p otel-collector --test prom_remote_write`.

mod prom_support;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use otel_collector::exporter::prometheusremotewrite::{
    RemoteWriteConfig, RemoteWriteExporter, RetrySettings,
};
use otel_collector::pipeline::{Consumer, SharedConsumer, Shutdown, Telemetry};
use prom_support::*;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use test_support::prometheus::{query, query_until, query_with, start_prometheus, Prometheus};
use test_support::tls::TestCerts;
use test_support::{free_port, TempDir};
use tokio_util::sync::CancellationToken;

fn exporter(endpoint: String) -> Arc<RemoteWriteExporter> {
    let config = RemoteWriteConfig {
        endpoint,
        timeout: Duration::from_secs(1),
        retry_on_failure: RetrySettings {
            initial_interval: Duration::from_millis(50),
            max_interval: Duration::from_millis(500),
            ..Default::default()
        },
        ..Default::default()
    };
    RemoteWriteExporter::start(
        "prometheusremotewrite/test",
        config,
        &CancellationToken::new(),
    )
    .expect("exporter starts")
}

async fn drain(e: &RemoteWriteExporter) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    e.shutdown(deadline).await;
    assert_eq!(e.in_flight(), 0, "queue drained");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_write_into_prometheus_matches_otel_names_and_values() {
    let prom = start_prometheus(
        "",
        &[
            "--web.enable-remote-write-receiver",
            "--enable-feature=exemplar-storage",
        ],
    )
    .await;
    let e = exporter(format!("{}/api/v1/write", prom.url()));
    let consumer: SharedConsumer = e.clone();
    let intake = start_intake(consumer).await;
    run_sdk_app(&format!("http://{intake}"), &[("PROM_APP_ROUNDS", "2")]).await;
    drain(&e).await;
    assert_sdk_series(prom.url(), 2.0).await;
    assert_trace_exemplars(prom.url(), "http_server_request_duration_seconds_bucket").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_write_into_victoria_metrics() {
    let vm = start_victoria_metrics().await;
    let e = exporter(format!("{}/api/v1/write", vm.url()));
    let consumer: SharedConsumer = e.clone();
    let intake = start_intake(consumer).await;
    run_sdk_app(&format!("http://{intake}"), &[("PROM_APP_ROUNDS", "2")]).await;
    drain(&e).await;
    assert_sdk_series(vm.url(), 2.0).await;
}

/// A proxy in front of the real receiver: 0 = answer 500, 1 = forward, 2 = forward after 1.5 s
/// (longer than the exporter's 1 s timeout: Prometheus stores the data, the exporter times out
/// and sends it again).
struct Proxy {
    mode: AtomicU8,
    upstream: String,
    client: reqwest::Client,
    failed: AtomicUsize,
    slow: AtomicUsize,
    forwarded: AtomicUsize,
}

async fn proxy(
    State(p): State<Arc<Proxy>>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    if p.mode.load(Ordering::SeqCst) == 0 {
        p.failed.fetch_add(1, Ordering::SeqCst);
        return (StatusCode::INTERNAL_SERVER_ERROR, "induced failure".into());
    }
    if p.mode.load(Ordering::SeqCst) == 2 {
        p.slow.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    let mut req = p.client.post(&p.upstream).body(body);
    for (k, v) in &headers {
        if k != "host" && k != "content-length" {
            req = req.header(k, v);
        }
    }
    match req.send().await {
        Ok(r) => {
            p.forwarded.fetch_add(1, Ordering::SeqCst);
            let status =
                StatusCode::from_u16(r.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
            (status, r.text().await.unwrap_or_default())
        }
        Err(e) => (StatusCode::BAD_GATEWAY, e.to_string()),
    }
}

const BATCHES: usize = 40;
const SERIES: usize = 50;

/// Batch `i`: a point per series at `base_ms + i` seconds, value `i`.
fn batch(i: usize, base_ms: u64) -> ExportMetricsServiceRequest {
    gauge_batch(
        "fault",
        "fault.gauge",
        SERIES,
        base_ms + i as u64 * 1000,
        i as f64,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_down_then_500_then_recovering_loses_nothing() {
    let prom = start_prometheus("", &["--web.enable-remote-write-receiver"]).await;
    let p = Arc::new(Proxy {
        mode: AtomicU8::new(0),
        upstream: format!("{}/api/v1/write", prom.url()),
        client: reqwest::Client::new(),
        failed: AtomicUsize::new(0),
        slow: AtomicUsize::new(0),
        forwarded: AtomicUsize::new(0),
    });
    // Phase 1: nothing listens on the endpoint (connection refused).
    let port = free_port();
    let e = exporter(format!("http://127.0.0.1:{port}/api/v1/write"));
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64;
    let base_ms = now_ms - (BATCHES as u64 + 5) * 1000;
    for i in 0..BATCHES / 2 {
        e.consume(Telemetry::Metrics(batch(i, base_ms)))
            .await
            .expect("queued");
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(e.in_flight() > 0, "requests wait for the endpoint");
    // Phase 2: the endpoint answers 500.
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("rebind port");
    let app = Router::new()
        .route("/api/v1/write", post(proxy))
        .with_state(p.clone());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    for i in BATCHES / 2..BATCHES {
        e.consume(Telemetry::Metrics(batch(i, base_ms)))
            .await
            .expect("queued");
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        p.failed.load(Ordering::SeqCst) > 0,
        "the 500s were seen and retried"
    );
    assert_eq!(p.forwarded.load(Ordering::SeqCst), 0);
    // Phase 3: slow (answers after the exporter's timeout; the data does reach Prometheus, so
    // the resends are duplicates Prometheus must take as the same samples).
    p.mode.store(2, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(p.slow.load(Ordering::SeqCst) > 0, "slow answers were seen");
    assert!(e.in_flight() > 0, "timed-out requests are still retried");
    // Phase 4: recovery.
    p.mode.store(1, Ordering::SeqCst);
    drain(&e).await;
    let total = query_until(
        prom.url(),
        "sum(count_over_time(fault_gauge[10m]))",
        Duration::from_secs(20),
        |r| !r.is_empty(),
    )
    .await;
    assert_eq!(
        total[0].value,
        (BATCHES * SERIES) as f64,
        "every accepted sample exactly once"
    );
    let series = query(prom.url(), "count(fault_gauge)").await;
    assert_eq!(series[0].value, SERIES as f64);
    let last = query(prom.url(), "max(max_over_time(fault_gauge[10m]))").await;
    assert_eq!(last[0].value, (BATCHES - 1) as f64);
    assert!(
        !prom.log_text().contains("out of order"),
        "no out-of-order rejections: {}",
        prom.log_text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_write_over_tls_with_a_private_ca() {
    let dir = TempDir::new("tls");
    let certs = TestCerts::create(&dir);
    let prom = Prometheus::new("")
        .flag("--web.enable-remote-write-receiver")
        .tls(&certs)
        .start()
        .await;
    let base = prom.url();

    let mut config = RemoteWriteConfig {
        endpoint: format!("{base}/api/v1/write"),
        ..Default::default()
    };
    config.tls.ca_file = Some(certs.ca.clone());
    let e = RemoteWriteExporter::start(
        "prometheusremotewrite/tls",
        config,
        &CancellationToken::new(),
    )
    .expect("exporter starts");
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64;
    e.consume(Telemetry::Metrics(batch(0, now_ms - 5_000)))
        .await
        .expect("queued");
    drain(&e).await;
    let series = query_with(&certs.client(), base, "count(fault_gauge)").await;
    assert_eq!(series.len(), 1, "{series:?}");
    assert_eq!(series[0].value, SERIES as f64, "{series:?}");
}
