//! The `health_check` extension and the own-metrics server over real HTTP on loopback:
//! 503 while starting, 200 when ready, 503 while an exporter's queue is full and 200 again once
//! it drains; `/metrics` serves the otelcol names and the process gauges.
//!
//! Run: `cargo test -p otel-collector --test export_health`.

mod export_support;

use export_support::*;
use otel_collector::extension::{self, ExtensionConfig};
use std::sync::atomic::Ordering;
use std::time::Duration;

async fn get(url: &str) -> (u16, String) {
    let r = reqwest::get(url).await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test]
async fn health_turns_503_while_a_queue_is_full() {
    let ctx = otel_collector::pipeline::StartContext::new("health_check", Default::default());
    let cfg = ExtensionConfig::parse(
        "health_check",
        serde_yaml::from_str("endpoint: 127.0.0.1:0\npath: /health/status").unwrap(),
    )
    .unwrap();
    cfg.validate().unwrap();
    let ext = extension::start("health_check", &cfg, &ctx)
        .await
        .unwrap()
        .expect("health_check listens");
    let url = format!("http://{}/health/status", ext.local_addr);
    let (s, body) = get(&url).await;
    assert_eq!(s, 503, "starting: {body}");
    ctx.health.set_ready();
    let (s, body) = get(&url).await;
    assert_eq!(s, 200, "{body}");
    assert!(body.contains("Server available"), "{body}");

    // An exporter whose backend stalls: one batch in flight, queue of 1, then full.
    let (addr, state) = start_server().await;
    state.delay_ms.store(1_500, Ordering::SeqCst);
    let ecfg = exporter_config(
        "otlp",
        &format!("endpoint: {addr}\ntls: {{insecure: true}}\nsending_queue: {{num_consumers: 1, queue_size: 1}}"),
    );
    let exp =
        otel_collector::exporter::start("otlp/stalled", &ecfg, &ctx.for_component("otlp/stalled"))
            .await
            .unwrap();
    let mut refused = false;
    for i in 0..5 {
        if exp
            .consumer
            .consume(spans(&format!("h{i}"), 1))
            .await
            .is_err()
        {
            refused = true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(refused, "queue must fill");
    let (s, body) = get(&url).await;
    assert_eq!(s, 503, "{body}");
    assert!(body.contains("otlp/stalled"), "{body}");
    // The backend catches up: the queue drains and health recovers.
    let mut healthy = false;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if get(&url).await.0 == 200 {
            healthy = true;
            break;
        }
    }
    assert!(healthy, "health recovers after the queue drains");
    exp.lifecycle
        .shutdown(tokio::time::Instant::now() + Duration::from_secs(5))
        .await;
    ctx.health.set_shutting_down();
    assert_eq!(get(&url).await.0, 503);
    ext.lifecycle
        .shutdown(tokio::time::Instant::now() + Duration::from_secs(2))
        .await;
    assert!(reqwest::get(&url).await.is_err(), "server stopped");
}

#[tokio::test]
async fn metrics_endpoint_serves_otelcol_names() {
    // Make sure exporter instruments exist.
    let (addr, _state) = start_server().await;
    let ecfg = exporter_config(
        "otlp",
        &format!("endpoint: {addr}\ntls: {{insecure: true}}"),
    );
    let exp = otel_collector::exporter::start("otlp/m", &ecfg, &ctx("otlp/m"))
        .await
        .unwrap();
    exp.consumer.consume(spans("m", 3)).await.unwrap();
    exp.lifecycle
        .shutdown(tokio::time::Instant::now() + Duration::from_secs(5))
        .await;
    let server = extension::metrics_server::start("127.0.0.1:0")
        .await
        .unwrap();
    let r = reqwest::get(format!("http://{}/metrics", server.local_addr))
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let ct = r.headers()["content-type"].to_str().unwrap().to_string();
    assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
    let text = r.text().await.unwrap();
    for want in [
        "otelcol_exporter_sent_spans_total{exporter=\"otlp/m\"} 3",
        "otelcol_exporter_send_failed_spans_total{exporter=\"otlp/m\"} 0",
        "otelcol_exporter_enqueue_failed_log_records_total{exporter=\"otlp/m\"} 0",
        "otelcol_exporter_queue_capacity{exporter=\"otlp/m\"} 1000",
        "otelcol_exporter_queue_size{exporter=\"otlp/m\"} 0",
        "# TYPE otelcol_process_memory_rss gauge",
        "otelcol_process_cpu_seconds ",
        "otelcol_process_uptime ",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }
    let rss: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("otelcol_process_memory_rss "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(rss > 1e6, "rss {rss}");
    server
        .lifecycle
        .shutdown(tokio::time::Instant::now() + Duration::from_secs(2))
        .await;
}

#[tokio::test]
async fn busy_port_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let err = extension::metrics_server::start(&addr).await.unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains(&addr) && msg.contains("free port"), "{msg}");
}
