//! Many and slow clients against the real binary, over gRPC and HTTP, on loopback sockets:
//!
//! - 1,000 idle connections on each transport with `max_connections: 200`: the collector
//!   evicts idle ones to stay within its table, its memory stays bounded, and a well-behaved
//!   client is served throughout;
//! - 500 idle connections per transport plus slow-loris clients (a request dribbled a byte at a
//!   time): `read_header_timeout` / `idle_timeout` (HTTP) and `max_connection_idle` (gRPC) close
//!   every one of them, while a well-behaved client is served.
//!
//! Every loop is bounded in count and time. Run: `cargo test -p otel-collector --test sec_connections`.

mod core_support;

use core_support::Collector;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message as _;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};
use test_support::{free_port, TempDir};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// RSS growth allowed for ~1,000 idle connections (about 48 KiB each, hyper's buffers included).
const RSS_BUDGET_KIB: u64 = 48 * 1024;

fn request() -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: vec![Span {
                    name: "served".into(),
                    trace_id: vec![1; 16],
                    span_id: vec![2; 8],
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// One export per transport on fresh connections; panics unless both are accepted.
async fn served(grpc: u16, http: u16, what: &str) {
    let ch = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{grpc}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(10))
        .connect()
        .await
        .unwrap_or_else(|e| panic!("{what}: gRPC connect: {e:?}"));
    TraceServiceClient::new(ch)
        .export(request())
        .await
        .unwrap_or_else(|e| panic!("{what}: gRPC export: {e:?}"));
    let r = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
        .post(format!("http://127.0.0.1:{http}/v1/traces"))
        .header("content-type", "application/x-protobuf")
        .body(request().encode_to_vec())
        .send()
        .await
        .unwrap_or_else(|e| panic!("{what}: HTTP export: {e:?}"));
    assert!(r.status().is_success(), "{what}: HTTP {}", r.status());
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

async fn self_metrics(port: u16) -> BTreeMap<String, f64> {
    let text = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .expect("self-metrics")
        .text()
        .await
        .unwrap_or_default();
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .filter_map(|(k, v)| Some((k.to_string(), v.parse().ok()?)))
        .collect()
}

fn metric(m: &BTreeMap<String, f64>, name: &str, needles: &[&str]) -> f64 {
    m.iter()
        .filter(|(k, _)| {
            k.starts_with(&format!("{name}{{")) && needles.iter().all(|n| k.contains(n))
        })
        .map(|(_, v)| v)
        .sum()
}

fn start(dir: &Path, name: &str, grpc_extra: &str, http_extra: &str) -> (Collector, u16, u16, u16) {
    let (g, h, m) = (free_port(), free_port(), free_port());
    let config = format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc: {{endpoint: "127.0.0.1:{g}", {grpc_extra}}}
      http: {{endpoint: "127.0.0.1:{h}", {http_extra}}}
exporters:
  debug: {{verbosity: basic}}
service:
  telemetry: {{metrics: {{address: "127.0.0.1:{m}"}}}}
  pipelines:
    traces: {{receivers: [otlp], exporters: [debug]}}
"#
    );
    let c = Collector::start(dir, name, &config, &[g, h, m]);
    (c, g, h, m)
}

/// Opens `n` connections to `port` that send nothing.
async fn idle(port: u16, n: usize) -> Vec<TcpStream> {
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        match TcpStream::connect(("127.0.0.1", port)).await {
            Ok(s) => v.push(s),
            // The collector may reset some while it evicts; that is the point.
            Err(_) => continue,
        }
    }
    v
}

/// Waits (at most `within`) until the server closes `s`; returns whether it did.
async fn closed_by_server(mut s: TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue, // HTTP/2 SETTINGS, GOAWAY: keep reading until EOF
        }
    }
}

/// A slow-loris client: dribbles `payload` one byte every `every` until the server closes the
/// connection (returns true) or `within` passes (false).
async fn slow_loris(port: u16, payload: &'static [u8], every: Duration, within: Duration) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)).await else {
        return true;
    };
    let deadline = Instant::now() + within;
    let mut buf = [0u8; 1024];
    for b in payload.iter().cycle() {
        if Instant::now() > deadline {
            return false;
        }
        if s.write_all(&[*b]).await.is_err() {
            return true;
        }
        match tokio::time::timeout(every, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            _ => {}
        }
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_idle_connections_per_transport_are_bounded_and_others_keep_being_served() {
    let dir = TempDir::new("sec-flood");
    let (c, g, h, m) = start(
        &dir,
        "flood",
        "max_connections: 200",
        "max_connections: 200",
    );
    served(g, h, "before the flood").await;
    let before = rss_kib(c.child.id());
    let mut held = idle(g, 1000).await;
    held.extend(idle(h, 1000).await);
    served(g, h, "during the flood").await;
    // The kernel completes connections before the collector accepts them: wait (bounded)
    // until it has worked through the backlog.
    let deadline = Instant::now() + Duration::from_secs(60);
    let metrics = loop {
        let metrics = self_metrics(m).await;
        // Evicted (an idle one made room) or refused (the table and its small slack were
        // full of connections still closing): either way not held.
        let shed = |t: &str, reason: &str| {
            metric(
                &metrics,
                "otelcol_receiver_connections_closed_total",
                &[
                    &format!("transport=\"{t}\""),
                    &format!("reason=\"{reason}\""),
                ],
            )
        };
        let ok = |t: &str| {
            shed(t, "evicted") >= 100.0 && shed(t, "evicted") + shed(t, "refused") >= 800.0
        };
        if ok("grpc") && ok("http") {
            break metrics;
        }
        assert!(
            Instant::now() < deadline,
            "grpc: evicted {} refused {}; http: evicted {} refused {}",
            shed("grpc", "evicted"),
            shed("grpc", "refused"),
            shed("http", "evicted"),
            shed("http", "refused")
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let during = rss_kib(c.child.id());
    for t in ["grpc", "http"] {
        let tr = format!("transport=\"{t}\"");
        let open = metric(&metrics, "otelcol_receiver_open_connections", &[&tr]);
        assert!(
            open <= 200.0 + 200.0 / 8.0 + 8.0,
            "{t}: {open} connections held"
        );
    }
    served(g, h, "with the table full of idle connections").await;
    eprintln!("flood: RSS {before} KiB before, {during} KiB with the table full");
    assert!(
        during.saturating_sub(before) < RSS_BUDGET_KIB,
        "RSS grew from {before} KiB to {during} KiB with 2,000 connection attempts"
    );
    drop(held);
    served(g, h, "after the flood").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_loris_and_idle_connections_are_closed_by_their_timeouts() {
    let dir = TempDir::new("sec-loris");
    let (c, g, h, m) = start(
        &dir,
        "loris",
        "keepalive: {server_parameters: {max_connection_idle: 2s}}",
        "read_header_timeout: 2s, idle_timeout: 3s",
    );
    let before = rss_kib(c.child.id());
    let mut held = idle(g, 500).await;
    let grpc_idle = held.len();
    held.extend(idle(h, 500).await);
    assert_eq!(held.len(), 1000, "all idle connections accepted");
    let within = Duration::from_secs(30);
    let every = Duration::from_millis(300);
    let mut loris = Vec::new();
    for _ in 0..20 {
        loris.push(tokio::spawn(slow_loris(
            h,
            b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\nX-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n",
            every,
            within,
        )));
        loris.push(tokio::spawn(slow_loris(
            g,
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00",
            every,
            within,
        )));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    served(g, h, "while 1,000 idle and 40 slow connections are open").await;
    let during = rss_kib(c.child.id());
    eprintln!("slow-loris: RSS {before} KiB before, {during} KiB with 1,040 open connections");
    assert!(
        during.saturating_sub(before) < RSS_BUDGET_KIB,
        "RSS grew from {before} KiB to {during} KiB with 1,040 open connections"
    );
    let waits: Vec<_> = held
        .into_iter()
        .map(|s| tokio::spawn(closed_by_server(s, within)))
        .collect();
    let mut still_open = 0;
    for w in waits {
        if !w.await.unwrap() {
            still_open += 1;
        }
    }
    assert_eq!(
        still_open, 0,
        "idle connections the server did not close within {within:?}"
    );
    for l in loris {
        assert!(
            l.await.unwrap(),
            "a slow-loris connection was not closed within {within:?}"
        );
    }
    served(g, h, "after the timeouts").await;
    let metrics = self_metrics(m).await;
    let idle_closed = metric(
        &metrics,
        "otelcol_receiver_connections_closed_total",
        &["reason=\"idle\""],
    );
    assert!(
        idle_closed >= (grpc_idle + 500) as f64,
        "closed as idle: {idle_closed}"
    );
    for t in ["grpc", "http"] {
        let open = metric(
            &metrics,
            "otelcol_receiver_open_connections",
            &[&format!("transport=\"{t}\"")],
        );
        assert!(open <= 2.0, "{t}: {open} connections left open");
    }
}
