//! Back-pressure between collectors: collector A (otlp receiver → batch → `otlp` and `otlphttp`
//! exporters) forwards to collector B, whose only exporter has a one-batch queue in front of a
//! backend that is down, so B refuses data on both transports and every signal. Every item A
//! acknowledged must reach B's backend once it recovers: A's exporters take B's refusal as
//! retryable (gRPC UNAVAILABLE + RetryInfo, HTTP 503 + Retry-After) and keep the data. The
//! Python SDK's gRPC and HTTP exporters, sending to B while it refuses, retry too, waiting the
//! delay B announces.
//!
//! Needs `make deps` (the Python venv). Run: `cargo test -p otel-collector --test core_backpressure`.

mod core_support;
mod export_support;

use core_support::Collector;
use export_support::{eventually, logs, points, spans, start_server};
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use otel_collector::pipeline::Telemetry;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Duration;
use test_support::{free_port, python, workspace_root, TempDir};
use tokio::io::AsyncBufReadExt;

/// Batches of each signal sent to A, and items per batch.
const ROUNDS: usize = 6;
const PER_BATCH: usize = 10;

/// The collector's own metrics on `port`: `name{labels}` → value.
async fn self_metrics(port: u16) -> BTreeMap<String, f64> {
    let text = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .and_then(|r| r.error_for_status())
        .expect("self-metrics answer");
    let text = text.text().await.unwrap_or_default();
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .filter_map(|(k, v)| Some((k.to_string(), v.parse().ok()?)))
        .collect()
}

fn b_config(grpc: u16, http: u16, metrics: u16, sink: std::net::SocketAddr) -> String {
    format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc: {{endpoint: "127.0.0.1:{grpc}"}}
      http: {{endpoint: "127.0.0.1:{http}"}}
exporters:
  otlp:
    endpoint: "{sink}"
    tls: {{insecure: true}}
    timeout: 2s
    sending_queue: {{num_consumers: 1, queue_size: 1}}
    retry_on_failure: {{initial_interval: 50ms, max_interval: 200ms, max_elapsed_time: 0s}}
service:
  telemetry:
    metrics:
      address: "127.0.0.1:{metrics}"
  pipelines:
    traces: {{receivers: [otlp], exporters: [otlp]}}
    metrics: {{receivers: [otlp], exporters: [otlp]}}
    logs: {{receivers: [otlp], exporters: [otlp]}}
"#
    )
}

fn a_config(grpc: u16, metrics: u16, b_grpc: u16, b_http: u16) -> String {
    let retry =
        "retry_on_failure: {initial_interval: 100ms, max_interval: 1s, max_elapsed_time: 120s}";
    format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc: {{endpoint: "127.0.0.1:{grpc}"}}
processors:
  batch: {{timeout: 20ms}}
exporters:
  otlp:
    endpoint: "127.0.0.1:{b_grpc}"
    tls: {{insecure: true}}
    # More senders than batches, so every batch (of every signal) is offered to B while it
    # refuses, instead of waiting behind the ones being retried.
    sending_queue: {{num_consumers: 32, queue_size: 1000}}
    {retry}
  otlphttp:
    endpoint: "http://127.0.0.1:{b_http}"
    sending_queue: {{num_consumers: 32, queue_size: 1000}}
    {retry}
service:
  telemetry:
    metrics:
      address: "127.0.0.1:{metrics}"
  pipelines:
    traces: {{receivers: [otlp], processors: [batch], exporters: [otlp, otlphttp]}}
    metrics: {{receivers: [otlp], processors: [batch], exporters: [otlp, otlphttp]}}
    logs: {{receivers: [otlp], processors: [batch], exporters: [otlp, otlphttp]}}
"#
    )
}

/// Sends ROUNDS batches of each signal to A (20ms apart, so A's batch processor forwards them as
/// several batches); returns the items A acknowledged per signal.
async fn send_to_a(port: u16) -> (Vec<String>, u64, u64) {
    let url = format!("http://127.0.0.1:{port}");
    let mut t = TraceServiceClient::connect(url.clone()).await.unwrap();
    let mut m = MetricsServiceClient::connect(url.clone()).await.unwrap();
    let mut l = LogsServiceClient::connect(url).await.unwrap();
    let (mut names, mut acked_points, mut acked_logs) = (Vec::new(), 0u64, 0u64);
    for round in 0..ROUNDS {
        let prefix = format!("bp{round}");
        let Telemetry::Traces(req) = spans(&prefix, PER_BATCH) else {
            unreachable!()
        };
        t.export(req).await.expect("A acknowledges spans");
        names.extend((0..PER_BATCH).map(|i| format!("{prefix}-{i}")));
        let Telemetry::Metrics(req) = points(PER_BATCH) else {
            unreachable!()
        };
        m.export(req).await.expect("A acknowledges points");
        acked_points += PER_BATCH as u64;
        let Telemetry::Logs(req) = logs(PER_BATCH) else {
            unreachable!()
        };
        l.export(req).await.expect("A acknowledges log records");
        acked_logs += PER_BATCH as u64;
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    (names, acked_points, acked_logs)
}

/// Waits until B's receiver has refused items of every signal on both transports.
async fn wait_for_refusals(b_metrics: u16, a: &Collector, b: &Collector) {
    let keys: Vec<String> = ["spans", "metric_points", "log_records"]
        .iter()
        .flat_map(|n| {
            ["grpc", "http"].map(|t| {
                format!(r#"otelcol_receiver_refused_{n}_total{{receiver="otlp",transport="{t}"}}"#)
            })
        })
        .collect();
    let until = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let m = self_metrics(b_metrics).await;
        let missing: Vec<&String> = keys
            .iter()
            .filter(|k| m.get(*k).copied().unwrap_or(0.0) == 0.0)
            .collect();
        if missing.is_empty() {
            return;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "B refused nothing for {missing:?}:\nA log:\n{}\nB log:\n{}",
            a.logs(),
            b.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_data_is_retried_until_the_downstream_collector_recovers() {
    let py = python();
    let dir = TempDir::new("backpressure");
    let (sink_addr, sink) = start_server().await;
    sink.fail_first.store(usize::MAX / 2, Ordering::SeqCst);
    let (bg, bh, bm) = (free_port(), free_port(), free_port());
    let (ag, am) = (free_port(), free_port());
    let mut b = Collector::start(&dir, "b", &b_config(bg, bh, bm, sink_addr), &[bg, bh, bm]);
    let mut a = Collector::start(&dir, "a", &a_config(ag, am, bg, bh), &[ag, am]);

    // 1. A acknowledges everything while B refuses (its backend is down, its queue full).
    let (names, acked_points, acked_logs) = send_to_a(ag).await;
    wait_for_refusals(bm, &a, &b).await;

    // 2. The Python SDK sends to B while it still refuses: both exporters must retry.
    let mut sdk = tokio::process::Command::new(&py)
        .arg(workspace_root().join("otel-collector/tests/python/core_backpressure_sdk.py"))
        .arg(format!("127.0.0.1:{bg}"))
        .arg(format!("http://127.0.0.1:{bh}"))
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("run the Python SDK client");
    let mut lines = tokio::io::BufReader::new(sdk.stdout.take().unwrap()).lines();
    let mut retried = BTreeMap::<String, Vec<String>>::new();
    let last = tokio::time::timeout(Duration::from_secs(120), async {
        let mut recovered = false;
        while let Some(line) = lines.next_line().await.expect("read the SDK's output") {
            let Some(rest) = line.strip_prefix("retrying ") else {
                return line;
            };
            let (exporter, delay) = rest.split_once(' ').unwrap_or((rest, ""));
            retried
                .entry(exporter.to_string())
                .or_default()
                .push(delay.to_string());
            // 3. Both SDK exporters were refused and are retrying: the backend comes back.
            if !recovered && retried.len() == 2 {
                sink.fail_first.store(0, Ordering::SeqCst);
                recovered = true;
            }
        }
        String::new()
    })
    .await
    .expect("the SDK client finishes");
    let status = sdk.wait().await.expect("SDK client exit status");
    assert!(status.success(), "SDK client failed: {status}");
    let results: serde_json::Value =
        serde_json::from_str(&last).unwrap_or_else(|e| panic!("SDK result {last:?}: {e}"));
    assert_eq!(
        results,
        serde_json::json!({"grpc": "SUCCESS", "http": "SUCCESS"}),
        "retries: {retried:?}\nB log:\n{}",
        b.logs()
    );
    // 4. Everything A acknowledged arrives, through both of A's exporters.
    let complete = eventually(Duration::from_secs(60), || {
        let got = sink.names.lock().unwrap();
        names
            .iter()
            .all(|n| got.iter().filter(|g| *g == n).count() >= 2)
            && got.iter().any(|g| g == "sdk-grpc")
            && got.iter().any(|g| g == "sdk-http")
            && sink.points.load(Ordering::SeqCst) >= 2 * acked_points
            && sink.logs.load(Ordering::SeqCst) >= 2 * acked_logs
    })
    .await;
    let a_metrics = self_metrics(am).await;
    let failed: Vec<_> = a_metrics
        .iter()
        .filter(|(k, v)| k.starts_with("otelcol_exporter_send_failed_") && **v > 0.0)
        .collect();
    assert!(
        complete && failed.is_empty(),
        "sink has {} span names, {} of {} points, {} of {} log records; A gave up on {failed:?}\nA log:\n{}\nB log:\n{}",
        sink.names.lock().unwrap().len(),
        sink.points.load(Ordering::SeqCst),
        2 * acked_points,
        sink.logs.load(Ordering::SeqCst),
        2 * acked_logs,
        a.logs(),
        b.logs()
    );
    // The SDK waited the delay B announced (1s), not its own backoff (2^n s ± 20%).
    for (exporter, delays) in &retried {
        assert!(
            delays.iter().all(|d| d == "1.00"),
            "{exporter} waited {delays:?}"
        );
    }

    assert!(a.terminate().success(), "A:\n{}", a.logs());
    assert!(b.terminate().success(), "B:\n{}", b.logs());
}
