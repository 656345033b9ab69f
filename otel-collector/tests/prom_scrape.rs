//! A real Prometheus scrapes the `prometheus` exporter fed by the Python OpenTelemetry SDK
//! (OTLP/HTTP → test intake → exporter), and the series are queried back with the names,
//! labels and values the OpenTelemetry Collector produces.
//!
//! Needs `prometheus` and the `.venv` from `make deps`. Run:
//! `cargo test -p otel-collector --test prom_scrape`.

mod prom_support;

use otel_collector::exporter::prometheus::{PrometheusExporter, PrometheusExporterConfig};
use otel_collector::pipeline::SharedConsumer;
use prom_support::*;
use std::sync::Arc;
use std::time::Duration;
use test_support::prometheus::{
    honor_labels_scrape_config, query, query_until, start_prometheus, Server,
};
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(30);

async fn scrape_setup(
    config: PrometheusExporterConfig,
    extra: &[&str],
) -> (Server, std::net::SocketAddr, PrometheusExporter) {
    let (exporter, _server, addr) = PrometheusExporter::start(
        "prometheus/test",
        PrometheusExporterConfig {
            endpoint: "127.0.0.1:0".into(),
            ..config
        },
        CancellationToken::new(),
    )
    .await
    .expect("exporter starts");
    let consumer: SharedConsumer = Arc::new(exporter.clone());
    let intake = start_intake(consumer).await;
    let prom = start_prometheus(
        &honor_labels_scrape_config("otelcol", &[addr.to_string()]),
        extra,
    )
    .await;
    (prom, intake, exporter)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_sdk_metrics_with_otel_names_and_labels() {
    let (prom, intake, _exporter) = scrape_setup(PrometheusExporterConfig::default(), &[]).await;
    run_sdk_app(&format!("http://{intake}"), &[("PROM_APP_ROUNDS", "2")]).await;
    let base = prom.url();

    assert_sdk_series(base, 2.0).await;

    // Metadata (TYPE/HELP) as Prometheus recorded it from the scrape.
    let meta: serde_json::Value =
        reqwest::get(format!("{base}/api/v1/metadata?metric=orders_placed_total"))
            .await
            .expect("metadata")
            .json()
            .await
            .expect("json");
    assert_eq!(
        meta["data"]["orders_placed_total"][0]["type"], "counter",
        "{meta}"
    );
    assert_eq!(
        meta["data"]["orders_placed_total"][0]["help"], "Orders placed",
        "{meta}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delta_temporality_sdk_is_accumulated_to_cumulative() {
    let (prom, intake, _exporter) = scrape_setup(PrometheusExporterConfig::default(), &[]).await;
    run_sdk_app(
        &format!("http://{intake}"),
        &[
            ("PROM_APP_ROUNDS", "3"),
            ("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", "delta"),
        ],
    )
    .await;
    let base = prom.url();
    let orders = query_until(
        base,
        "orders_placed_total{payment_method=\"card\"}",
        WAIT,
        |r| r.len() == 1,
    )
    .await;
    assert_eq!(orders[0].value, 15.0, "3 delta exports of 5 add up");
    let count = query(base, "http_server_request_duration_seconds_count").await;
    assert_eq!(count[0].value, 300.0, "{count:?}");
    let bucket = query(
        base,
        "http_server_request_duration_seconds_bucket{le=\"0.5\"}",
    )
    .await;
    assert_eq!(
        bucket[0].value, 150.0,
        "3 x 50 observations <= 0.5: {bucket:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openmetrics_scrape_carries_exemplars_and_namespace() {
    let (prom, intake, _exporter) = scrape_setup(
        PrometheusExporterConfig {
            enable_open_metrics: true,
            namespace: "otel".into(),
            const_labels: [("region".to_string(), "eu".to_string())]
                .into_iter()
                .collect(),
            ..Default::default()
        },
        &["--enable-feature=exemplar-storage"],
    )
    .await;
    run_sdk_app(&format!("http://{intake}"), &[]).await;
    let base = prom.url();
    let orders = query_until(base, "otel_orders_placed_total", WAIT, |r| r.len() == 2).await;
    assert!(
        orders.iter().all(|s| s.label("region") == "eu"),
        "{orders:?}"
    );
    let cpu = query(base, "otel_system_cpu_utilization_ratio").await;
    assert_eq!(cpu.len(), 1, "{cpu:?}");
    // Exemplars of the histogram buckets, parsed by Prometheus from the OpenMetrics scrape.
    assert_trace_exemplars(base, "otel_http_server_request_duration_seconds_bucket").await;
}
