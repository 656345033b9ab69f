//! Cycle traces over OTLP: with `OTEL_EXPORTER_OTLP_ENDPOINT` set (protocol `http/json`), the
//! binary exports a `detection_cycle` span per cycle, with its `prometheus.query_range` child,
//! to a test OTLP/HTTP receiver; spans still queued at SIGTERM are flushed before exit 0.
//! Prometheus is deliberately absent (connection refused): failed cycles are traced too.
//!
//! Run: `cargo test -p anomaly-detector --test service_traces`.

use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use axum::Router;
use test_support::free_port;

/// Names of the spans in an OTLP/JSON ExportTraceServiceRequest.
fn span_names(v: &serde_json::Value) -> Vec<(String, serde_json::Value)> {
    let mut out = Vec::new();
    for rs in v["resourceSpans"].as_array().into_iter().flatten() {
        for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
            for s in ss["spans"].as_array().into_iter().flatten() {
                out.push((
                    s["name"].as_str().unwrap_or_default().to_string(),
                    s.clone(),
                ));
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cycles_are_traced_over_otlp() {
    let received: Arc<Mutex<Vec<serde_json::Value>>> = Arc::default();
    let app = Router::new()
        .route(
            "/v1/traces",
            post(
                |State(r): State<Arc<Mutex<Vec<serde_json::Value>>>>, body: Bytes| async move {
                    let v: serde_json::Value =
                        serde_json::from_slice(&body).expect("OTLP/JSON body");
                    r.lock().unwrap().push(v);
                    axum::Json(serde_json::json!({}))
                },
            ),
        )
        .with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let otlp = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });

    let dir = std::env::temp_dir().join(format!("anomaly-detector-traces-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("detector.yaml");
    std::fs::write(
        &config,
        format!(
            "prometheus:\n  url: http://127.0.0.1:{}\n  retry: {{max_attempts: 1}}\nevaluation_interval: 1s\ndetections: [{{name: traced, query: up, step: 1s, history: 10m}}]\n",
            free_port()
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_anomaly-detector"))
        .arg("--config")
        .arg(&config)
        .env("DETECTOR_ADDR", format!("127.0.0.1:{}", free_port()))
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{otlp}"))
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")
        .env("OTEL_BSP_SCHEDULE_DELAY", "200")
        .env_remove("OTEL_SDK_DISABLED")
        .env_remove("PROMETHEUS_URL")
        .env_remove("ALERTMANAGER_URL")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Let a few cycles run, then stop: queued spans must be flushed on the way out.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "detector did not exit after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(status.success(), "exit {status}: {stderr}");
    let _ = std::fs::remove_dir_all(&dir);

    let batches = received.lock().unwrap().clone();
    let spans: Vec<(String, serde_json::Value)> = batches.iter().flat_map(span_names).collect();
    let cycles: Vec<&serde_json::Value> = spans
        .iter()
        .filter(|(n, _)| n == "detection_cycle")
        .map(|(_, s)| s)
        .collect();
    assert!(
        cycles.len() >= 2,
        "expected several cycle spans, got {:?}\n{stderr}",
        spans.iter().map(|(n, _)| n).collect::<Vec<_>>()
    );
    assert!(
        spans.iter().any(|(n, _)| n == "prometheus.query_range"),
        "query spans are children of cycles"
    );
    let attrs = cycles[0]["attributes"].to_string();
    assert!(attrs.contains("traced"), "detection attribute: {attrs}");
    assert!(attrs.contains("failure"), "outcome attribute: {attrs}");
    let resource = batches[0]["resourceSpans"][0]["resource"].to_string();
    assert!(
        resource.contains("anomaly-detector"),
        "service.name: {resource}"
    );
}
