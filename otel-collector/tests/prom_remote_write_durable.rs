//! The persistent queue of `prometheusremotewrite` (`sending_queue.storage`) with the real binary
//! and a real Prometheus: metrics acknowledged while the remote-write endpoint is down survive a
//! SIGKILL of the collector and reach Prometheus after the restart, each sample once.
//! Prints `acknowledged, arrived, lost, duplicates` for docs/durability.md.
//!
//! Needs `prometheus` from `make deps`. Run:
//! `cargo test -p otel-collector --test prom_remote_write_durable -- --nocapture`.

mod core_support;
mod prom_support;

use core_support::Collector;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use prom_support::gauge_batch;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use test_support::prometheus::{query_until, start_prometheus};
use test_support::{free_port, TempDir};

const BATCHES: usize = 60;
const SERIES: usize = 40;

/// OTLP gRPC in, batch, remote write to `endpoint` through the persistent queue in `dir`.
fn config(grpc: u16, metrics: u16, endpoint: &str, dir: &Path) -> String {
    format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc: {{endpoint: "127.0.0.1:{grpc}"}}
processors:
  batch: {{timeout: 500ms, send_batch_size: 400}}
extensions:
  file_storage/queue:
    directory: "{dir}"
    create_directory: true
    fsync: true
exporters:
  prometheusremotewrite:
    endpoint: "{endpoint}"
    timeout: 1s
    sending_queue: {{storage: file_storage/queue}}
    retry_on_failure: {{initial_interval: 100ms, max_interval: 500ms, max_elapsed_time: 0s}}
service:
  extensions: [file_storage/queue]
  telemetry:
    metrics:
      address: "127.0.0.1:{metrics}"
  pipelines:
    metrics: {{receivers: [otlp], processors: [batch], exporters: [prometheusremotewrite]}}
"#,
        dir = dir.display()
    )
}

/// Batch `i`: one gauge point per series at `base_ms + i` seconds, value `i`.
fn batch(i: usize, base_ms: u64) -> ExportMetricsServiceRequest {
    gauge_batch(
        "durable",
        "durable.gauge",
        SERIES,
        base_ms + i as u64 * 1000,
        i as f64,
    )
}

/// `otelcol_exporter_prometheusremotewrite_sent_samples_total` of the collector on `port`.
async fn sent_samples(port: u16) -> f64 {
    let text = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .expect("self metrics")
        .text()
        .await
        .expect("body");
    text.lines()
        .filter(|l| l.starts_with("otelcol_exporter_prometheusremotewrite_sent_samples_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_with_the_endpoint_down_then_restart_delivers_every_acknowledged_sample() {
    let prom = start_prometheus("", &["--web.enable-remote-write-receiver"]).await;
    let dir = TempDir::new("prw-durable");
    let queue = dir.join("q");
    let (grpc, metrics) = (free_port(), free_port());
    // Run A: nothing listens on the endpoint, so every acknowledged batch waits on disk.
    let down = format!("http://127.0.0.1:{}/api/v1/write", free_port());
    let mut a = Collector::start(&dir, "a", &config(grpc, metrics, &down, &queue), &[grpc]);
    let mut client = MetricsServiceClient::connect(format!("http://127.0.0.1:{grpc}"))
        .await
        .expect("connect");
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64;
    let base_ms = now_ms - (BATCHES as u64 + 5) * 1000;
    let mut acked = 0;
    for i in 0..BATCHES {
        let sent = tokio::time::timeout(Duration::from_secs(10), client.export(batch(i, base_ms)))
            .await
            .expect("an answer within 10 s");
        if sent.is_ok() {
            acked += 1;
        }
    }
    assert_eq!(
        acked, BATCHES,
        "every batch fits the queue and is acknowledged"
    );
    let _ = a.child.kill();
    let _ = a.child.wait();
    // Run B: same queue directory, the endpoint is now Prometheus.
    let up = format!("{}/api/v1/write", prom.url());
    let mut b = Collector::start(&dir, "b", &config(grpc, metrics, &up, &queue), &[grpc]);
    let want = (BATCHES * SERIES) as f64;
    let total = query_until(
        prom.url(),
        "sum(count_over_time(durable_gauge[10m]))",
        Duration::from_secs(30),
        |r| r.first().is_some_and(|s| s.value >= want),
    )
    .await;
    let arrived = total.first().map_or(0.0, |s| s.value);
    // Prometheus stores an identical resent sample once, so duplicates show only on our side.
    let sent = sent_samples(metrics).await;
    println!(
        "prw_sigkill_endpoint_down: acknowledged {} samples, arrived {arrived}, lost {}, sent by the restarted collector {sent} (resent: {})",
        BATCHES * SERIES,
        want - arrived.min(want),
        sent - want,
    );
    assert_eq!(
        arrived,
        want,
        "every acknowledged sample once:\n{}",
        b.logs()
    );
    assert!(b.logs().contains("persistent queue opened"), "{}", b.logs());
    b.terminate();
}
