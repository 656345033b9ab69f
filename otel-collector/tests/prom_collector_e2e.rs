//! End to end through the collector binary: the Python OpenTelemetry SDK sends OTLP/HTTP to
//! `otel-collector` (otlp receiver → metrics pipeline → `prometheus` + `prometheusremotewrite`
//! exporters); one real Prometheus scrapes the exporter, another receives the remote write, and
//! both are queried for the names, labels and values the OpenTelemetry Collector produces. The
//! collector then stops on SIGTERM with exit code 0.
//!
//! Needs `prometheus` and the `.venv` from `make deps`. Run:
//! `cargo test -p otel-collector --test prom_collector_e2e`.

mod prom_support;

use prom_support::*;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_to_collector_to_prometheus_by_scrape_and_remote_write() {
    let rw_prom = start_prometheus("", &["--web.enable-remote-write-receiver"]).await;
    let otlp_port = free_port();
    let exporter_port = free_port();
    let dir = TempDir::new("e2e");
    let config = dir.0.join("collector.yaml");
    std::fs::write(
        &config,
        format!(
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
        ),
    )
    .expect("write config");
    let log = dir.0.join("collector.log");
    let mut collector = Command::new(env!("CARGO_BIN_EXE_otel-collector"))
        .arg("--config")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("start otel-collector");
    let scrape_prom = start_prometheus(
        &format!(
            "scrape_configs:\n  - job_name: otelcol\n    honor_labels: true\n    static_configs:\n      - targets: ['127.0.0.1:{exporter_port}']\n"
        ),
        &[],
    )
    .await;
    // Wait for the collector's OTLP/HTTP port.
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", otlp_port)).is_err() {
        if let Ok(Some(s)) = collector.try_wait() {
            panic!(
                "collector exited ({s}): {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        assert!(
            Instant::now() < deadline,
            "collector did not listen on {otlp_port}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    run_sdk_app(
        &format!("http://127.0.0.1:{otlp_port}"),
        &[("PROM_APP_ROUNDS", "2")],
    )
    .await;

    assert_sdk_series(&scrape_prom.url(), 2.0).await;
    assert_sdk_series(&rw_prom.url(), 2.0).await;

    let status = Command::new("kill")
        .arg("-TERM")
        .arg(collector.id().to_string())
        .status()
        .expect("kill -TERM");
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let exit = loop {
        if let Some(s) = collector.try_wait().expect("wait") {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "collector did not stop within 30s of SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        exit.success(),
        "exit {exit}: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
}
