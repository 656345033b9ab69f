//! `demo-app --health-probe URL`, the HEALTHCHECK of the shell-less image: exit 0 while `/health`
//! answers, 1 once the service has stopped.
//!
//! Run: `cargo test -p demo-app --test health_probe`.

use std::process::{Command, Output};
use std::time::Duration;
use test_support::{free_port, Proc, TempDir};

fn probe(url: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_demo-app"))
        .args(["--health-probe", url])
        .output()
        .unwrap()
}

#[tokio::test]
async fn probe_follows_the_service() {
    let dir = TempDir::new("demo-health");
    let port = free_port();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_demo-app"));
    cmd.args(["--service", "payment", "--payment-addr"])
        .arg(format!("127.0.0.1:{port}"))
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .env("OTEL_SDK_DISABLED", "true");
    let mut app = Proc::spawn("demo-app", cmd, dir.join("demo.log"));
    app.wait_port(port).await;
    let url = format!("http://127.0.0.1:{port}/health");
    let out = probe(&url);
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        app.log_text()
    );
    assert!(app.terminate(Duration::from_secs(20)).await.success());
    let out = probe(&url);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unhealthy"));
}
