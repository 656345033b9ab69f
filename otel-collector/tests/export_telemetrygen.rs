//! `telemetrygen` against the loopback test OTLP server: counts are bounded and exact, the
//! summary line is JSON, failures give a non-zero exit.
//!
//! Run: `cargo test -p otel-collector --test export_telemetrygen`.

mod export_support;

use export_support::*;
use std::process::Command;
use std::sync::atomic::Ordering;

fn telemetrygen(args: &[&str]) -> (bool, serde_json::Value, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_telemetrygen"))
        .args(args)
        .output()
        .expect("run telemetrygen");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let summary = serde_json::from_str(stdout.trim()).unwrap_or(serde_json::Value::Null);
    (out.status.success(), summary, stderr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_exactly_count_items_over_grpc() {
    let (addr, state) = start_server().await;
    let a = addr.to_string();
    let (ok, s, err) = tokio::task::spawn_blocking(move || {
        telemetrygen(&[
            "traces",
            "--otlp-endpoint",
            &a,
            "--count",
            "1050",
            "--batch",
            "100",
            "--workers",
            "3",
            "--rate",
            "0",
            "--duration",
            "30s",
            "--attributes",
            "2",
        ])
    })
    .await
    .unwrap();
    assert!(ok, "{err}");
    assert_eq!(s["items_sent"], 1050, "{s}");
    assert_eq!(s["items_failed"], 0);
    assert_eq!(state.spans.load(Ordering::SeqCst), 1050);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_logs_with_gzip() {
    let (addr, state) = start_server().await;
    let a = addr.to_string();
    let (ok, s, err) = tokio::task::spawn_blocking(move || {
        let m = telemetrygen(&[
            "metrics",
            "--otlp-endpoint",
            &a,
            "--count",
            "200",
            "--compression",
            "gzip",
        ]);
        let l = telemetrygen(&[
            "logs",
            "--otlp-endpoint",
            &a,
            "--count",
            "30",
            "--batch",
            "7",
        ]);
        (m.0 && l.0, l.1, format!("{} {}", m.2, l.2))
    })
    .await
    .unwrap();
    assert!(ok, "{err}");
    assert_eq!(s["requests"], 5, "30 records in batches of 7: {s}");
    assert_eq!(state.points.load(Ordering::SeqCst), 200);
    assert_eq!(state.logs.load(Ordering::SeqCst), 30);
    assert!(state.encodings.lock().unwrap().iter().any(|e| e == "gzip"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_and_duration_bounds_the_run() {
    let (addr, state) = start_server().await;
    let a = addr.to_string();
    let (ok, s, err) = tokio::task::spawn_blocking(move || {
        telemetrygen(&[
            "traces",
            "--otlp-endpoint",
            &a,
            "--rate",
            "500",
            "--duration",
            "1s",
            "--batch",
            "50",
        ])
    })
    .await
    .unwrap();
    assert!(ok, "{err}");
    let sent = s["items_sent"].as_u64().unwrap();
    // 500/s for 1 s in batches of 50: about 500, never unbounded.
    assert!((400..=600).contains(&sent), "sent {sent}: {s}");
    assert_eq!(state.spans.load(Ordering::SeqCst), sent);
}

#[test]
fn failures_exit_non_zero_and_unbounded_runs_are_refused() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let (ok, s, err) = telemetrygen(&[
        "traces",
        "--otlp-endpoint",
        &port.to_string(),
        "--count",
        "10",
        "--timeout",
        "1s",
    ]);
    assert!(!ok, "nobody listens: must fail");
    assert_eq!(s["items_failed"], 10, "{s} {err}");
    let (ok, _, err) = telemetrygen(&["traces", "--duration", "0s"]);
    assert!(!ok);
    assert!(err.contains("bounded"), "{err}");
}
