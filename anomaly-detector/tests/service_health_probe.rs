//! `anomaly-detector --health-probe URL`, the HEALTHCHECK of the shell-less image: exit 0 while
//! `/health` answers (also with Prometheus unreachable: liveness, not readiness), 1 once the
//! service has stopped.
//!
//! Run: `cargo test -p anomaly-detector --test service_health_probe`.

use std::process::{Command, Output};
use std::time::Duration;
use test_support::{free_port, Proc, TempDir};

fn probe(url: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_anomaly-detector"))
        .args(["--health-probe", url])
        .output()
        .unwrap()
}

#[tokio::test]
async fn probe_follows_the_service() {
    let dir = TempDir::new("detector-health");
    let (port, nothing) = (free_port(), free_port());
    let config = dir.join("detector.yaml");
    std::fs::write(
        &config,
        format!(
            "prometheus: {{url: 'http://127.0.0.1:{nothing}'}}\nserver: {{addr: '127.0.0.1:{port}'}}\ndetections: [{{name: a, query: up}}]\n"
        ),
    )
    .unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_anomaly-detector"));
    cmd.arg("--config").arg(&config);
    for var in [
        "PROMETHEUS_URL",
        "ALERTMANAGER_URL",
        "DETECTOR_ADDR",
        "DETECTOR_CONFIG",
    ] {
        cmd.env_remove(var);
    }
    cmd.env_remove("OTEL_EXPORTER_OTLP_ENDPOINT");
    let mut detector = Proc::spawn("anomaly-detector", cmd, dir.join("detector.log"));
    detector.wait_port(port).await;
    let url = format!("http://127.0.0.1:{port}/health");
    let out = probe(&url);
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        detector.log_text()
    );
    assert!(detector.terminate(Duration::from_secs(20)).await.success());
    let out = probe(&url);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unhealthy"));
}
