//! The `otlp` exporter against a real tonic OTLP server on loopback: retries until delivered,
//! permanent errors dropped, compression and headers on the wire, a slow exporter not stalling a
//! fast one, and the queue drained at shutdown.
//!
//! Run: `cargo test -p otel-collector --test export_otlp`.

mod export_support;

use export_support::*;
use otel_collector::exporter::{start, RunningExporter};
use otel_collector::telemetry::SelfMetrics;
use std::sync::atomic::Ordering;
use std::time::Duration;

fn metric_value(name: &str, exporter: &str) -> f64 {
    let text = SelfMetrics::global().render();
    let prefix = format!("{name}{{exporter=\"{exporter}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map(|v| v.parse().unwrap())
        .unwrap_or(0.0)
}

async fn otlp(id: &str, endpoint: std::net::SocketAddr, extra: &str) -> RunningExporter {
    let retry = if extra.contains("retry_on_failure") {
        ""
    } else {
        "retry_on_failure: {initial_interval: 10ms, max_interval: 50ms}"
    };
    let cfg = exporter_config(
        "otlp",
        &format!("endpoint: {endpoint}\ntls: {{insecure: true}}\n{retry}\n{extra}"),
    );
    start(id, &cfg, &ctx(id)).await.unwrap()
}

async fn shutdown(e: &RunningExporter) {
    e.lifecycle
        .shutdown(tokio::time::Instant::now() + Duration::from_secs(10))
        .await;
}

#[tokio::test]
async fn retries_until_the_server_recovers_and_loses_nothing() {
    let (addr, state) = start_server().await;
    state.fail_first.store(3, Ordering::SeqCst);
    let e = otlp("otlp/flaky", addr, "").await;
    for i in 0..5 {
        e.consumer
            .consume(spans(&format!("b{i}"), 20))
            .await
            .unwrap();
    }
    e.consumer.consume(points(7)).await.unwrap();
    e.consumer.consume(logs(3)).await.unwrap();
    assert!(
        eventually(Duration::from_secs(10), || state
            .spans
            .load(Ordering::SeqCst)
            == 100)
        .await,
        "spans arrived: {}",
        state.spans.load(Ordering::SeqCst)
    );
    shutdown(&e).await;
    assert_eq!(state.points.load(Ordering::SeqCst), 7);
    assert_eq!(state.logs.load(Ordering::SeqCst), 3);
    let mut names = state.names.lock().unwrap().clone();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), 100, "every span exactly once");
    assert!(
        state.requests.load(Ordering::SeqCst) >= 10,
        "3 failures were retried"
    );
    assert_eq!(
        metric_value("otelcol_exporter_sent_spans_total", "otlp/flaky"),
        100.0
    );
    assert_eq!(
        metric_value("otelcol_exporter_send_failed_spans_total", "otlp/flaky"),
        0.0
    );
    assert_eq!(
        metric_value("otelcol_exporter_sent_metric_points_total", "otlp/flaky"),
        7.0
    );
}

#[tokio::test]
async fn permanent_status_is_not_retried() {
    let (addr, state) = start_server().await;
    *state.fail_code.lock().unwrap() = Some(tonic::Code::InvalidArgument);
    state.fail_first.store(1, Ordering::SeqCst);
    let e = otlp("otlp/permanent", addr, "sending_queue: {enabled: false}").await;
    let err = e.consumer.consume(spans("bad", 4)).await.unwrap_err();
    assert!(!err.is_retryable(), "{err}");
    assert_eq!(state.requests.load(Ordering::SeqCst), 1, "no retry");
    assert_eq!(
        metric_value("otelcol_exporter_send_failed_spans_total", "otlp/permanent"),
        4.0
    );
    // The next batch goes through.
    e.consumer.consume(spans("good", 2)).await.unwrap();
    assert_eq!(state.spans.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn compression_and_headers_reach_the_server() {
    let (addr, state) = start_server().await;
    for (id, comp, want) in [
        ("otlp/gz", "gzip", Some("gzip")),
        ("otlp/zstd", "zstd", Some("zstd")),
        ("otlp/none", "none", None),
    ] {
        state.encodings.lock().unwrap().clear();
        let e = otlp(
            id,
            addr,
            &format!("compression: {comp}\nheaders: {{x-tenant: acme}}\nsending_queue: {{enabled: false}}"),
        )
        .await;
        e.consumer.consume(spans(id, 50)).await.unwrap();
        let enc = state.encodings.lock().unwrap().clone();
        match want {
            Some(w) => assert_eq!(enc, vec![w.to_string()], "{id}"),
            None => assert!(
                enc.is_empty() || enc == vec!["identity".to_string()],
                "{id}: {enc:?}"
            ),
        }
        shutdown(&e).await;
    }
    assert_eq!(state.spans.load(Ordering::SeqCst), 150);
    assert!(state.tenants.lock().unwrap().iter().all(|t| t == "acme"));
    assert_eq!(state.tenants.lock().unwrap().len(), 3);
}

#[tokio::test]
async fn slow_exporter_does_not_stall_a_fast_one() {
    let (slow_addr, slow) = start_server().await;
    slow.delay_ms.store(2_000, Ordering::SeqCst);
    let (fast_addr, fast) = start_server().await;
    let slow_e = otlp(
        "otlp/slow",
        slow_addr,
        "timeout: 10s\nsending_queue: {num_consumers: 1, queue_size: 2}",
    )
    .await;
    let fast_e = otlp("otlp/fast", fast_addr, "").await;
    // Feed both like a fan-out does: each batch to each exporter; the slow one must refuse
    // quickly once its queue is full, never block the caller.
    let mut refused: u32 = 0;
    let t = std::time::Instant::now();
    for i in 0..20 {
        let b = spans(&format!("f{i}"), 10);
        if slow_e.consumer.consume(b.clone()).await.is_err() {
            refused += 1;
        }
        fast_e.consumer.consume(b).await.unwrap();
    }
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "feeding took {:?}",
        t.elapsed()
    );
    assert!(refused >= 17, "slow exporter refused {refused} of 20");
    assert!(
        eventually(Duration::from_secs(5), || fast.spans.load(Ordering::SeqCst)
            == 200)
        .await,
        "fast exporter delivered {}",
        fast.spans.load(Ordering::SeqCst)
    );
    assert_eq!(
        metric_value("otelcol_exporter_enqueue_failed_spans_total", "otlp/slow"),
        f64::from(refused * 10)
    );
    shutdown(&fast_e).await;
    // Shutdown drains what the slow one accepted within the deadline.
    shutdown(&slow_e).await;
    assert_eq!(
        slow.spans.load(Ordering::SeqCst),
        u64::from(20 - refused) * 10,
        "accepted batches are delivered at shutdown"
    );
}

#[tokio::test]
async fn unreachable_endpoint_counts_failures_after_max_elapsed_time() {
    // Bind and drop to get a port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let e = otlp(
        "otlp/down",
        port,
        "timeout: 1s\nretry_on_failure: {initial_interval: 10ms, max_interval: 20ms, max_elapsed_time: 200ms}",
    )
    .await;
    e.consumer.consume(spans("x", 5)).await.unwrap();
    assert!(
        eventually(Duration::from_secs(5), || metric_value(
            "otelcol_exporter_send_failed_spans_total",
            "otlp/down"
        ) == 5.0)
        .await
    );
    shutdown(&e).await;
}
