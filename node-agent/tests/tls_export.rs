//! OTLP/gRPC export over TLS: a CA and a server certificate for 127.0.0.1 are made with the
//! `openssl` CLI, the in-test tonic OTLP server serves TLS with them, and the agent trusts
//! the CA through `OTEL_EXPORTER_OTLP_CERTIFICATE` with an `https://` endpoint.
//!
//! Run: `cargo test -p node-agent --test tls_export` (needs `openssl`, see `make deps`).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::MetricsServiceServer;

mod common;
use common::Sink;

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run openssl ({e}): run `make deps` (Debian package openssl)")
        });
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn make_certs(dir: &Path) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec![
        "req",
        "-x509",
        "-days",
        "1",
        "-subj",
        "/CN=node-agent test CA",
    ];
    ca.extend(ec);
    ca.extend(["-keyout", "ca.key", "-out", "ca.pem"]);
    openssl(dir, &ca);
    let mut csr = vec!["req", "-subj", "/CN=127.0.0.1"];
    csr.extend(ec);
    csr.extend(["-keyout", "server.key", "-out", "server.csr"]);
    openssl(dir, &csr);
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            "ext.cnf",
            "-out",
            "server.pem",
        ],
    );
}

#[tokio::test]
async fn grpc_export_over_tls_with_custom_ca() {
    let dir = std::env::temp_dir().join(format!("node-agent-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    make_certs(&dir);
    let identity = tonic::transport::Identity::from_pem(
        std::fs::read(dir.join("server.pem")).unwrap(),
        std::fs::read(dir.join("server.key")).unwrap(),
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
        .env("OTEL_EXPORTER_OTLP_CERTIFICATE", dir.join("ca.pem"))
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
    let _ = std::fs::remove_dir_all(&dir);
    assert!(ok, "no export arrived over TLS");
    assert!(st.success());
    let req = got.lock().unwrap()[0].1.clone();
    assert!(req.resource_metrics[0].scope_metrics[0]
        .metrics
        .iter()
        .any(|m| m.name == "system.cpu.time"));
}
