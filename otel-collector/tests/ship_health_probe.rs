//! `otel-collector --health-probe URL`, the HEALTHCHECK of the shell-less image: exit 0 while the
//! health_check extension answers 200, exit 1 (and a message naming the URL) once nothing
//! listens there.
//!
//! Run: `cargo test -p otel-collector --test ship_health_probe`.

use std::process::{Command, Output};
use std::time::Duration;
use test_support::{free_port, Proc, TempDir};

fn probe(url: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_otel-collector"))
        .args(["--health-probe", url])
        .output()
        .unwrap()
}

#[tokio::test]
async fn probe_follows_the_health_endpoint() {
    let dir = TempDir::new("health-probe");
    let (health, grpc, own) = (free_port(), free_port(), free_port());
    let config = dir.join("c.yaml");
    std::fs::write(
        &config,
        format!(
            "extensions:\n  health_check:\n    endpoint: 127.0.0.1:{health}\nreceivers:\n  otlp:\n    protocols:\n      grpc:\n        endpoint: 127.0.0.1:{grpc}\nexporters:\n  debug:\nservice:\n  extensions: [health_check]\n  telemetry:\n    metrics:\n      address: 127.0.0.1:{own}\n  pipelines:\n    traces:\n      receivers: [otlp]\n      exporters: [debug]\n"
        ),
    )
    .unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_otel-collector"));
    cmd.arg("--config").arg(&config);
    let mut collector = Proc::spawn("otel-collector", cmd, dir.join("collector.log"));
    collector.wait_port(health).await;
    let url = format!("http://127.0.0.1:{health}/");
    // The extension answers 503 until the pipelines have started.
    let mut out = probe(&url);
    for _ in 0..100 {
        if out.status.success() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        out = probe(&url);
    }
    assert!(
        out.status.success(),
        "probe of a running collector failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("HTTP 200"));

    assert!(collector.terminate(Duration::from_secs(15)).await.success());
    let out = probe(&url);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unhealthy") && err.contains(&format!("127.0.0.1:{health}")),
        "{err}"
    );
}

#[test]
fn probe_rejects_a_url_it_cannot_use() {
    let out = probe("https://127.0.0.1:13133/");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("only http://"));
}
