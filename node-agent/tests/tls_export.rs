//! OTLP/gRPC export over TLS: a CA and a server certificate for 127.0.0.1 are made with the
//! `openssl` CLI, the in-test tonic OTLP server serves TLS with them, and the agent trusts
//! the CA through `OTEL_EXPORTER_OTLP_CERTIFICATE` with an `https://` endpoint.
//!
//! Run: `cargo test -p node-agent --test tls_export` (needs `openssl`, see `make deps`).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::MetricsServiceServer;
use test_support::tls::TestCerts;
use test_support::TempDir;

mod common;
use common::Sink;

#[tokio::test]
async fn grpc_export_over_tls_with_custom_ca() {
    let dir = TempDir::new("node-agent-tls");
    let certs = TestCerts::create(&dir);
    let identity = tonic::transport::Identity::from_pem(
        std::fs::read(&certs.cert).unwrap(),
        std::fs::read(&certs.key).unwrap(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let sink = Sink::default();
    let got = sink.got.clone();
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .tls_config(tonic::transport::ServerTlsConfig::new().identity(identity))
            .unwrap()
            .add_service(MetricsServiceServer::new(sink))
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
            .await
            .unwrap();
    });
    let mut child = Command::new(env!("CARGO_BIN_EXE_node-agent"))
        .env_remove("NODE_AGENT_CONFIG")
        .env(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            format!("https://127.0.0.1:{port}"),
        )
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
        .env("OTEL_EXPORTER_OTLP_CERTIFICATE", &certs.ca)
        .env("OTEL_METRIC_EXPORT_INTERVAL", "500")
        .env("RUST_LOG", "node_agent=info")
        .stdout(Stdio::null())
        .spawn()
        .expect("start node-agent");
    let deadline = Instant::now() + Duration::from_secs(20);
    let ok = loop {
        if !got.lock().unwrap().is_empty() {
            break true;
        }
        if Instant::now() > deadline {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let st = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert!(ok, "no export arrived over TLS");
    assert!(st.success());
    let req = got.lock().unwrap()[0].1.clone();
    assert!(req.resource_metrics[0].scope_metrics[0]
        .metrics
        .iter()
        .any(|m| m.name == "system.cpu.time"));
}
