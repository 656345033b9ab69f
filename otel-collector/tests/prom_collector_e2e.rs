//! End to end through the collector binary: the Python OpenTelemetry SDK sends OTLP/HTTP to
//! `otel-collector` (otlp receiver → metrics pipeline → `prometheus` + `prometheusremotewrite`
//! exporters); one real Prometheus scrapes the exporter, another receives the remote write, and
//! both are queried for the names, labels and values the OpenTelemetry Collector produces. The
//! collector then stops on SIGTERM with exit code 0.
//!
//! Needs `prometheus` and the `.venv` from `make deps`. Run:
//! `cargo test -p otel-collector --test prom_collector_e2e`.

mod prom_support;

use prom_support::{assert_sdk_series, run_sdk_app};
use std::path::Path;
use std::time::Duration;
use test_support::collector::start_collector;
use test_support::prometheus::{honor_labels_scrape_config, start_prometheus};
use test_support::{free_port, Procs, TempDir};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_to_collector_to_prometheus_by_scrape_and_remote_write() {
    let rw_prom = start_prometheus("", &["--web.enable-remote-write-receiver"]).await;
    let otlp_port = free_port();
    let exporter_port = free_port();
    let dir = TempDir::new("e2e");
    let config = format!(
        r#"receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{otlp_port}
exporters:
  prometheus:
    endpoint: 127.0.0.1:{exporter_port}
    metric_expiration: 5m
  prometheusremotewrite:
    endpoint: {rw}/api/v1/write
    retry_on_failure:
      initial_interval: 50ms
service:
  telemetry:
    metrics:
      level: none
  pipelines:
    metrics:
      receivers: [otlp]
      exporters: [prometheus, prometheusremotewrite]
"#,
        rw = rw_prom.url()
    );
    let mut procs = Procs::default();
    let bin = Path::new(env!("CARGO_BIN_EXE_otel-collector"));
    let collector =
        start_collector(&mut procs, bin, &dir, &config, &[otlp_port, exporter_port]).await;
    let scrape_prom = start_prometheus(
        &honor_labels_scrape_config("otelcol", &[format!("127.0.0.1:{exporter_port}")]),
        &[],
    )
    .await;
    run_sdk_app(
        &format!("http://127.0.0.1:{otlp_port}"),
        &[("PROM_APP_ROUNDS", "2")],
    )
    .await;

    assert_sdk_series(scrape_prom.url(), 2.0).await;
    assert_sdk_series(rw_prom.url(), 2.0).await;

    let exit = procs.terminate(collector, Duration::from_secs(30)).await;
    assert!(
        exit.success(),
        "exit {exit}: {}",
        procs.get(collector).log_text()
    );
}
