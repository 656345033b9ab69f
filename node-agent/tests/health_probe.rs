//! `--health-addr` and `--health-probe`: the agent serves `/health` (200 once it has collected),
//! the probe exits 0 against it and 1 once the agent has stopped.
//!
//! Run: `cargo test -p node-agent --test health_probe`.

use std::process::{Command, Output};
use std::time::Duration;
use test_support::{free_port, Proc, TempDir};

fn probe(url: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_node-agent"))
        .args(["--health-probe", url])
        .output()
        .unwrap()
}

#[tokio::test]
async fn health_endpoint_and_probe() {
    let dir = TempDir::new("node-agent-health");
    let (health, nothing) = (free_port(), free_port());
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_node-agent"));
    cmd.args(["--health-addr", &format!("127.0.0.1:{health}")])
        .env_remove("NODE_AGENT_CONFIG")
        // Nothing listens there: exports fail and are retried, collections go on.
        .env(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            format!("http://127.0.0.1:{nothing}"),
        )
        .env("OTEL_METRIC_EXPORT_INTERVAL", "1000");
    let mut agent = Proc::spawn("node-agent", cmd, dir.join("agent.log"));
    agent.wait_port(health).await;
    let url = format!("http://127.0.0.1:{health}/health");
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
        "probe of a collecting agent failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        agent.log_text()
    );
    let body = reqwest::get(&url).await.unwrap().text().await.unwrap();
    assert!(body.contains("\"status\":\"ok\""), "{body}");

    assert!(agent.terminate(Duration::from_secs(20)).await.success());
    let out = probe(&url);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot connect"));
}

#[test]
fn health_addr_in_use_is_a_start_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_node-agent"))
        .args(["--health-addr", &addr])
        .env_remove("NODE_AGENT_CONFIG")
        .env(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            format!("http://127.0.0.1:{}", free_port()),
        )
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--health-addr") && err.contains(&addr),
        "{err}"
    );
}
