//! The agent really exports over OTLP/gRPC and OTLP/HTTP when pointed at a collector with
//! the standard `OTEL_EXPORTER_OTLP_*` variables, flushes on SIGTERM, and buffers
//! collections while the collector is down.
//!
//! The receiving side is a small OTLP server started in the test (opentelemetry-proto's
//! generated `MetricsService` server on tonic, or a minimal HTTP/1.1 listener for
//! `http/protobuf`), on 127.0.0.1 with a port picked at runtime. The end-to-end test through
//! the real collector and Prometheus lives at the repository level.
//!
//! Run: `cargo test -p node-agent --test otlp_export`.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::MetricsServiceServer;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AV;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::metrics::v1::{metric, NumberDataPoint};
use prost::Message;

type HttpReceived = Arc<Mutex<Vec<(String, ExportMetricsServiceRequest)>>>;

mod common;
use common::{Received, Sink};

async fn start_grpc(listener: tokio::net::TcpListener) -> Received {
    let sink = Sink::default();
    let got = sink.got.clone();
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(MetricsServiceServer::new(sink))
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
            .await
            .unwrap();
    });
    got
}

fn agent(env: &[(&str, String)]) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_node-agent"));
    cmd.env_remove("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT")
        .env_remove("OTEL_RESOURCE_ATTRIBUTES")
        .env_remove("OTEL_SERVICE_NAME")
        .env("RUST_LOG", "node_agent=info")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().expect("start node-agent")
}

fn sigterm(child: &mut Child) -> std::process::ExitStatus {
    let st = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .expect("kill");
    assert!(st.success());
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        assert!(
            Instant::now() < deadline,
            "agent did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

async fn wait_for(got: &Received, n: usize, secs: u64) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while got.lock().unwrap().len() < n {
        assert!(
            Instant::now() < deadline,
            "only {} exports received in {secs}s, wanted {n}",
            got.lock().unwrap().len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn str_attr(attrs: &[KeyValue], key: &str) -> Option<String> {
    attrs.iter().find(|kv| kv.key == key).and_then(|kv| {
        match kv.value.as_ref()?.value.as_ref()? {
            AV::StringValue(s) => Some(s.clone()),
            AV::IntValue(i) => Some(i.to_string()),
            _ => None,
        }
    })
}

fn points<'a>(req: &'a ExportMetricsServiceRequest, name: &str) -> Vec<&'a NumberDataPoint> {
    req.resource_metrics
        .iter()
        .flat_map(|rm| &rm.scope_metrics)
        .flat_map(|sm| &sm.metrics)
        .filter(|m| m.name == name)
        .flat_map(|m| match &m.data {
            Some(metric::Data::Gauge(g)) => g.data_points.iter().collect::<Vec<_>>(),
            Some(metric::Data::Sum(s)) => s.data_points.iter().collect(),
            _ => vec![],
        })
        .collect()
}

fn check_content(req: &ExportMetricsServiceRequest) {
    let res = req.resource_metrics[0].resource.as_ref().unwrap();
    assert_eq!(
        str_attr(&res.attributes, "service.name").as_deref(),
        Some("node-agent")
    );
    assert_eq!(
        str_attr(&res.attributes, "k8s.node.name").as_deref(),
        Some("test-node")
    );
    assert_eq!(str_attr(&res.attributes, "team").as_deref(), Some("obs"));
    for key in [
        "host.name",
        "host.arch",
        "os.type",
        "os.description",
        "service.instance.id",
    ] {
        assert!(
            str_attr(&res.attributes, key).is_some(),
            "resource lacks {key}"
        );
    }
    let names: BTreeSet<&str> = req.resource_metrics[0].scope_metrics[0]
        .metrics
        .iter()
        .map(|m| m.name.as_str())
        .collect();
    for want in [
        "system.cpu.time",
        "system.cpu.load_average.1m",
        "system.memory.usage",
        "system.memory.utilization",
        "system.paging.usage",
        "system.disk.io",
        "system.filesystem.usage",
        "system.network.io",
        "system.network.connections",
        "system.processes.count",
        "system.uptime",
        "process.cpu.time",
        "process.memory.usage",
        "process.thread.count",
    ] {
        assert!(names.contains(want), "missing {want} in {names:?}");
    }
    let cpu = points(req, "system.cpu.time");
    let modes: BTreeSet<_> = cpu
        .iter()
        .filter_map(|p| str_attr(&p.attributes, "cpu.mode"))
        .collect();
    assert!(
        modes.contains("user") && modes.contains("idle"),
        "{modes:?}"
    );
    assert!(cpu
        .iter()
        .any(|p| str_attr(&p.attributes, "cpu.logical_number").as_deref() == Some("0")));
    assert!(points(req, "system.memory.usage").iter().any(|p| str_attr(
        &p.attributes,
        "system.memory.state"
    )
    .as_deref()
        == Some("used")));
    let procs: BTreeSet<_> = points(req, "process.memory.usage")
        .iter()
        .map(|p| {
            assert!(str_attr(&p.attributes, "process.executable.name").is_some());
            assert!(str_attr(&p.attributes, "process.command").is_some());
            str_attr(&p.attributes, "process.pid").unwrap()
        })
        .collect();
    assert!(
        !procs.is_empty() && procs.len() <= 4,
        "top_n=2 gives 1..=4 processes, got {procs:?}"
    );
}

fn common_env(endpoint: String, protocol: &str) -> Vec<(&'static str, String)> {
    vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol.to_string()),
        ("OTEL_METRIC_EXPORT_INTERVAL", "500".to_string()),
        ("OTEL_RESOURCE_ATTRIBUTES", "team=obs".to_string()),
        ("K8S_NODE_NAME", "test-node".to_string()),
        (
            "NODE_AGENT_CONFIG",
            concat!(env!("CARGO_MANIFEST_DIR"), "/tests/top2.yaml").to_string(),
        ),
    ]
}

#[tokio::test]
async fn grpc_export_via_otel_env_and_flush_on_sigterm() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let got = start_grpc(listener).await;
    let mut child = agent(&common_env(format!("http://127.0.0.1:{port}"), "grpc"));
    wait_for(&got, 2, 20).await;
    let before = got.lock().unwrap().len();
    let st = tokio::task::spawn_blocking(move || sigterm(&mut child))
        .await
        .unwrap();
    assert!(st.success(), "exit status {st:?}");
    let all = got.lock().unwrap().clone();
    assert!(
        all.len() > before,
        "final collection was not flushed on SIGTERM"
    );
    for (_, req) in &all {
        check_content(req);
    }
    // Second collection onward carries utilization.
    assert!(!points(&all[1].1, "system.cpu.utilization").is_empty());
}

#[tokio::test]
async fn collector_down_then_up_gets_the_buffered_collections() {
    // Reserve a port, close it: nothing listens there while the agent starts.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut child = agent(&common_env(format!("http://127.0.0.1:{port}"), "grpc"));
    let down_since_ns = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let up_ns = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    let got = start_grpc(listener).await;
    // Backoff 1s, 2s, 4s: the retry after the server came up happens within ~5 s.
    wait_for(&got, 4, 20).await;
    let st = tokio::task::spawn_blocking(move || sigterm(&mut child))
        .await
        .unwrap();
    assert!(st.success());
    let all = got.lock().unwrap().clone();
    let stamps: Vec<u64> = all
        .iter()
        .map(|(_, r)| points(r, "system.uptime")[0].time_unix_nano)
        .collect();
    let while_down = stamps
        .iter()
        .filter(|&&t| t >= down_since_ns && t < up_ns)
        .count();
    assert!(
        while_down >= 3,
        "collections made while the collector was down should arrive later: {while_down} of {stamps:?}"
    );
    let mut sorted = stamps.clone();
    sorted.sort();
    assert_eq!(stamps, sorted, "buffer is sent oldest first");
}

/// A minimal OTLP/HTTP receiver: reads requests with Content-Length, answers 200.
fn start_http() -> (u16, HttpReceived) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let got = Arc::new(Mutex::new(Vec::new()));
    let g = got.clone();
    std::thread::spawn(move || {
        for conn in l.incoming().take(50) {
            let Ok(mut s) = conn else { continue };
            let g = g.clone();
            std::thread::spawn(move || {
                s.set_read_timeout(Some(Duration::from_secs(10))).ok();
                let mut buf = Vec::new();
                let mut tmp = [0u8; 65536];
                loop {
                    // Read headers.
                    let head_end = loop {
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i + 4;
                        }
                        match s.read(&mut tmp) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&tmp[..n]),
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    let path = head.split_whitespace().nth(1).unwrap_or("").to_string();
                    while buf.len() < head_end + len {
                        match s.read(&mut tmp) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&tmp[..n]),
                        }
                    }
                    let mut body = buf[head_end..head_end + len].to_vec();
                    if head.contains("content-encoding: gzip") {
                        let mut out = Vec::new();
                        if flate2::read::GzDecoder::new(&body[..])
                            .read_to_end(&mut out)
                            .is_err()
                        {
                            return;
                        }
                        body = out;
                    }
                    let req = if head.contains("content-type: application/json") {
                        serde_json::from_slice::<ExportMetricsServiceRequest>(&body).ok()
                    } else {
                        ExportMetricsServiceRequest::decode(&body[..]).ok()
                    };
                    if let Some(req) = req {
                        let kind = if head.contains("application/json") {
                            "json"
                        } else {
                            "protobuf"
                        };
                        let gz = if head.contains("content-encoding: gzip") {
                            "+gzip"
                        } else {
                            ""
                        };
                        g.lock().unwrap().push((format!("{path} {kind}{gz}"), req));
                    }
                    buf.drain(..head_end + len);
                    let _ = s.write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n",
                    );
                }
            });
        }
    });
    (port, got)
}

async fn http_export(protocol: &str, gzip: bool, want: &str) {
    let (port, got) = start_http();
    let mut env = common_env(format!("http://127.0.0.1:{port}"), protocol);
    if gzip {
        env.push(("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip".to_string()));
    }
    let mut child = agent(&env);
    let deadline = Instant::now() + Duration::from_secs(20);
    while got.lock().unwrap().len() < 2 {
        assert!(Instant::now() < deadline, "no OTLP/HTTP export received");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let st = tokio::task::spawn_blocking(move || sigterm(&mut child))
        .await
        .unwrap();
    assert!(st.success());
    for (what, req) in got.lock().unwrap().iter() {
        assert_eq!(what, want);
        check_content(req);
    }
}

#[tokio::test]
async fn http_protobuf_export_goes_to_v1_metrics() {
    http_export("http/protobuf", false, "/v1/metrics protobuf").await;
}

#[tokio::test]
async fn http_json_gzip_export_is_otlp_json() {
    http_export("http/json", true, "/v1/metrics json+gzip").await;
}
