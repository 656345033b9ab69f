//! Benchmarks of the Prometheus exporters (ignored in `make test`; run by
//! `make bench-prom-remote-write` and `make bench-prom-scrape`, i.e. `otel-collector/bench/prom_*.sh`):
//!
//! - `bench_remote_write`: OTLP protobuf bytes in (decode) → translation → remote-write encoding
//!   and snappy → HTTP POST to a local sink, on one tokio thread (the script pins the process to
//!   one core with `taskset`). Prints data points/s and samples/s, wall and per CPU-second.
//! - `bench_scrape`: scrape latency of a 100k-series `prometheus` exporter over HTTP, next to a
//!   scrape of `prometheus-node-exporter` in the same run, with ratios.
//!
//! Run: `cargo test --release -p otel-collector --test prom_bench -- --ignored --nocapture`.

use axum::body::Bytes;
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    metric, number_data_point, Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint,
    ResourceMetrics, ScopeMetrics, Sum,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use otel_collector::exporter::prometheus::{PrometheusExporter, PrometheusExporterConfig};
use otel_collector::exporter::prometheusremotewrite::{
    RemoteWriteConfig, RemoteWriteExporter, RemoteWriteQueue,
};
use otel_collector::pipeline::{Consumer, Shutdown, Telemetry};
use prost::Message;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use test_support::{free_port, require_bin, TempDir};
use tokio_util::sync::CancellationToken;

fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.into())),
        }),
        ..Default::default()
    }
}

/// One OTLP request: 10 metrics (4 counters, 3 gauges, 3 histograms with 10 bounds) x
/// `series` data points, 3 attributes each, like an instrumented service.
fn request(round: u64, series: usize, now_ns: u64) -> ExportMetricsServiceRequest {
    let t = now_ns + round * 1_000_000_000;
    let attrs = |i: usize| {
        vec![
            kv("http.route", &format!("/api/r{}", i % 20)),
            kv(
                "http.request.method",
                if i.is_multiple_of(2) { "GET" } else { "POST" },
            ),
            kv("series", &i.to_string()),
        ]
    };
    let number = |i: usize, v: f64| NumberDataPoint {
        attributes: attrs(i),
        start_time_unix_nano: now_ns - 1_000_000_000,
        time_unix_nano: t,
        value: Some(number_data_point::Value::AsDouble(v)),
        ..Default::default()
    };
    let mut metrics = Vec::new();
    for m in 0..4 {
        metrics.push(Metric {
            name: format!("app.requests.{m}"),
            unit: "{request}".into(),
            data: Some(metric::Data::Sum(Sum {
                data_points: (0..series)
                    .map(|i| number(i, (round * 10 + i as u64) as f64))
                    .collect(),
                aggregation_temporality: 2,
                is_monotonic: true,
            })),
            ..Default::default()
        });
    }
    for m in 0..3 {
        metrics.push(Metric {
            name: format!("app.queue.depth.{m}"),
            unit: "{item}".into(),
            data: Some(metric::Data::Gauge(Gauge {
                data_points: (0..series).map(|i| number(i, i as f64 * 0.5)).collect(),
            })),
            ..Default::default()
        });
    }
    let bounds = vec![0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];
    for m in 0..3 {
        metrics.push(Metric {
            name: format!("http.server.request.duration.{m}"),
            unit: "s".into(),
            data: Some(metric::Data::Histogram(Histogram {
                data_points: (0..series)
                    .map(|i| HistogramDataPoint {
                        attributes: attrs(i),
                        start_time_unix_nano: now_ns - 1_000_000_000,
                        time_unix_nano: t,
                        count: 110 * (round + 1),
                        sum: Some(12.5 * (round + 1) as f64),
                        bucket_counts: vec![10 * (round + 1); 11],
                        explicit_bounds: bounds.clone(),
                        ..Default::default()
                    })
                    .collect(),
                aggregation_temporality: 2,
            })),
            ..Default::default()
        });
    }
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: vec![
                    kv("service.name", "bench"),
                    kv("service.instance.id", "bench-1"),
                    kv("host.name", "h1"),
                ],
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(InstrumentationScope {
                    name: "bench".into(),
                    version: "1".into(),
                    ..Default::default()
                }),
                metrics,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// User + system CPU seconds of this process.
fn cpu_seconds() -> f64 {
    proc_cpu_seconds(std::process::id())
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_nanos() as u64
}

#[test]
#[ignore = "benchmark: make bench-prom-remote-write"]
fn bench_remote_write() {
    let secs: u64 = std::env::var("PROM_BENCH_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let received = Arc::new(AtomicU64::new(0));
        let r2 = received.clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind sink");
        let addr = listener.local_addr().expect("addr");
        let app = Router::new().route(
            "/api/v1/write",
            post(move |body: Bytes| {
                let r = r2.clone();
                async move {
                    r.fetch_add(body.len() as u64, Ordering::Relaxed);
                    StatusCode::NO_CONTENT
                }
            }),
        );
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let e = RemoteWriteExporter::start(
            "prometheusremotewrite/bench",
            RemoteWriteConfig {
                endpoint: format!("http://{addr}/api/v1/write"),
                remote_write_queue: RemoteWriteQueue {
                    queue_size: 2_000,
                    ..Default::default()
                },
                ..Default::default()
            },
            &CancellationToken::new(),
        )
        .expect("exporter");
        let series = 100;
        let start_ns = now_ns();
        // Pre-encode protobuf bodies: the receiver's input.
        let bodies: Vec<Vec<u8>> = (0..50).map(|r| request(r, series, start_ns).encode_to_vec()).collect();
        let points_per_req = Telemetry::Metrics(request(0, series, start_ns)).item_count() as u64;
        let samples_per_req: u64 = series as u64 * (4 + 3 + 3 * (11 + 2));
        let cpu0 = cpu_seconds();
        let t0 = Instant::now();
        let mut sent = 0u64;
        let mut refused = 0u64;
        let mut round = 0u64;
        while t0.elapsed() < Duration::from_secs(secs) {
            let body = &bodies[(round % bodies.len() as u64) as usize];
            let req = ExportMetricsServiceRequest::decode(body.as_slice()).expect("decode");
            // Distinct timestamps per round so every sample is new.
            match e.consume(Telemetry::Metrics(req)).await {
                Ok(()) => sent += 1,
                Err(_) => {
                    refused += 1;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
            round += 1;
            tokio::task::yield_now().await;
        }
        e.shutdown(tokio::time::Instant::now() + Duration::from_secs(120)).await;
        let wall = t0.elapsed().as_secs_f64();
        let cpu = cpu_seconds() - cpu0;
        let points = sent * points_per_req;
        let samples = sent * samples_per_req;
        println!("== bench-prom-remote-write: OTLP protobuf in -> translate -> remote write (protobuf+snappy) -> local HTTP sink, one tokio thread ==");
        println!("requests accepted {sent} (refused while queue full: {refused}), {points_per_req} data points / {samples_per_req} samples each");
        println!("wall {wall:.2}s, process CPU {cpu:.2}s (sink included), compressed bytes to sink {}", received.load(Ordering::Relaxed));
        println!("data points/s (wall):       {:>12.0}", points as f64 / wall);
        println!("data points/s per CPU-sec:  {:>12.0}", points as f64 / cpu.max(1e-9));
        println!("samples/s (wall):           {:>12.0}", samples as f64 / wall);
        println!("samples/s per CPU-sec:      {:>12.0}", samples as f64 / cpu.max(1e-9));
        assert!(sent > 0);
    });
}

async fn scrape_stats(url: &str, n: usize) -> (Vec<f64>, usize, usize) {
    let client = reqwest::Client::new();
    let mut lat = Vec::with_capacity(n);
    let mut bytes = 0;
    let mut series = 0;
    for i in 0..n + 3 {
        let t = Instant::now();
        let body = client
            .get(url)
            .header("Accept", "text/plain;version=0.0.4")
            .send()
            .await
            .expect("scrape")
            .text()
            .await
            .expect("body");
        let ms = t.elapsed().as_secs_f64() * 1000.0;
        if i >= 3 {
            lat.push(ms);
        }
        bytes = body.len();
        series = body
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .count();
    }
    lat.sort_by(f64::total_cmp);
    (lat, bytes, series)
}

fn pct(v: &[f64], p: f64) -> f64 {
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

#[test]
#[ignore = "benchmark: make bench-prom-scrape"]
fn bench_scrape() {
    let node_exporter = require_bin("prometheus-node-exporter");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let (exporter, _server, addr) = PrometheusExporter::start(
            "prometheus/bench",
            PrometheusExporterConfig {
                endpoint: "127.0.0.1:0".into(),
                ..Default::default()
            },
            CancellationToken::new(),
        )
        .await
        .expect("exporter");
        // 100k series: 100 gauge/counter metrics x 1000 label sets.
        let t = now_ns();
        for m in 0..100u32 {
            let points: Vec<NumberDataPoint> = (0..1000)
                .map(|i| NumberDataPoint {
                    attributes: vec![kv("series", &i.to_string()), kv("pod", &format!("pod-{}", i % 37))],
                    time_unix_nano: t,
                    value: Some(number_data_point::Value::AsDouble(i as f64 * 1.5)),
                    ..Default::default()
                })
                .collect();
            let data = if m.is_multiple_of(2) {
                metric::Data::Gauge(Gauge { data_points: points })
            } else {
                metric::Data::Sum(Sum { data_points: points, aggregation_temporality: 2, is_monotonic: true })
            };
            exporter.ingest(&ExportMetricsServiceRequest {
                resource_metrics: vec![ResourceMetrics {
                    resource: Some(Resource { attributes: vec![kv("service.name", "bench")], ..Default::default() }),
                    scope_metrics: vec![ScopeMetrics {
                        metrics: vec![Metric { name: format!("bench.metric.{m}"), unit: "By".into(), data: Some(data), ..Default::default() }],
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
            });
        }
        let port = free_port();
        let dir = TempDir::new("node-exporter");
        let mut child = std::process::Command::new(node_exporter)
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg(format!("--collector.textfile.directory={}", dir.display()))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn node exporter");
        let node_url = format!("http://127.0.0.1:{port}/metrics");
        let client = reqwest::Client::new();
        for _ in 0..100 {
            if client.get(&node_url).send().await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let n = 20;
        let (ours, ours_bytes, ours_series) = scrape_stats(&format!("http://{addr}/metrics"), n).await;
        let (node, node_bytes, node_series) = scrape_stats(&node_url, n).await;
        let _ = child.kill();
        let _ = child.wait();
        println!("== bench-prom-scrape: {n} sequential scrapes each (after 3 warm-up), text format 0.0.4 ==");
        println!("{:<28} {:>8} {:>10} {:>9} {:>9} {:>9} {:>12}", "target", "series", "bytes", "p50 ms", "p90 ms", "max ms", "us/series");
        let row = |name: &str, lat: &[f64], bytes: usize, series: usize| {
            println!(
                "{:<28} {:>8} {:>10} {:>9.2} {:>9.2} {:>9.2} {:>12.3}",
                name, series, bytes, pct(lat, 0.5), pct(lat, 0.9), lat[lat.len() - 1], pct(lat, 0.5) * 1000.0 / series as f64
            );
        };
        row("otel-collector prometheus", &ours, ours_bytes, ours_series);
        row("prometheus-node-exporter", &node, node_bytes, node_series);
        println!(
            "ratio p50 latency (ours / node_exporter): {:.2}; ratio per series: {:.3}",
            pct(&ours, 0.5) / pct(&node, 0.5),
            (pct(&ours, 0.5) / ours_series as f64) / (pct(&node, 0.5) / node_series as f64)
        );
        assert_eq!(ours_series, 100_000);
    });
}

/// User + system CPU seconds of process `pid` (from /proc; clock ticks of 10 ms).
fn proc_cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    ticks / 100.0
}

/// The whole binary: `telemetrygen` (core 1) → OTLP/gRPC → `otel-collector` pinned to core 0
/// (otlp receiver → batch → prometheusremotewrite) → a local remote-write sink (in this process)
/// that decodes and counts samples.
#[test]
#[ignore = "benchmark: make bench-prom-remote-write"]
fn bench_collector_remote_write() {
    let secs: u64 = std::env::var("PROM_BENCH_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let samples = Arc::new(AtomicU64::new(0));
        let s2 = samples.clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind sink");
        let sink = listener.local_addr().expect("addr");
        let app = Router::new().route(
            "/api/v1/write",
            post(move |body: Bytes| {
                let s = s2.clone();
                async move {
                    match otel_collector::exporter::prometheusremotewrite::proto::decode_request(&body) {
                        Ok(req) => {
                            let n: usize = req.timeseries.iter().map(|t| t.samples.len()).sum();
                            s.fetch_add(n as u64, Ordering::Relaxed);
                            StatusCode::NO_CONTENT
                        }
                        Err(_) => StatusCode::BAD_REQUEST,
                    }
                }
            }),
        );
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let otlp = free_port();
        let dir = TempDir::new("bench-rw");
        let config = dir.join("collector.yaml");
        std::fs::write(
            &config,
            format!(
                "receivers:\n  otlp:\n    protocols:\n      grpc:\n        endpoint: 127.0.0.1:{otlp}\nprocessors:\n  batch:\n    timeout: 200ms\n    send_batch_size: 8192\nexporters:\n  prometheusremotewrite:\n    endpoint: http://{sink}/api/v1/write\n    remote_write_queue:\n      queue_size: 10000\nservice:\n  telemetry:\n    metrics:\n      level: none\n  pipelines:\n    metrics:\n      receivers: [otlp]\n      processors: [batch]\n      exporters: [prometheusremotewrite]\n"
            ),
        )
        .expect("config");
        let mut collector = std::process::Command::new("taskset")
            .args(["-c", "0"])
            .arg(env!("CARGO_BIN_EXE_otel-collector"))
            .arg("--config")
            .arg(&config)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start collector (needs taskset)");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", otlp)).is_err() {
            assert!(Instant::now() < deadline, "collector not listening");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // taskset runs the collector via exec, so the child's pid is the collector's.
        let pid = collector.id();
        let cpu0 = proc_cpu_seconds(pid);
        let t0 = Instant::now();
        let out = tokio::process::Command::new("taskset")
            .args(["-c", "1"])
            .arg(env!("CARGO_BIN_EXE_telemetrygen"))
            .args(["metrics", "--otlp-endpoint"])
            .arg(format!("127.0.0.1:{otlp}"))
            .args(["--rate", "0", "--workers", "4", "--batch", "1000", "--attributes", "4"])
            .arg("--duration")
            .arg(format!("{secs}s"))
            .output()
            .await
            .expect("run telemetrygen");
        let gen = String::from_utf8_lossy(&out.stdout).trim().to_string();
        // Wait until the sink stops growing (queue drained).
        let mut last = u64::MAX;
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let now = samples.load(Ordering::Relaxed);
            if now == last {
                break;
            }
            last = now;
        }
        let wall = t0.elapsed().as_secs_f64() - 0.5;
        let cpu = proc_cpu_seconds(pid) - cpu0;
        let _ = std::process::Command::new("kill").arg("-TERM").arg(pid.to_string()).status();
        let _ = collector.wait();
        let n = samples.load(Ordering::Relaxed);
        println!("== bench-prom-remote-write (binary): telemetrygen (core 1, OTLP/gRPC, 4 workers, 1000 points/request) -> otel-collector pinned to core 0 (otlp -> batch -> prometheusremotewrite) -> local sink ==");
        println!("telemetrygen: {gen}");
        println!("samples received by the sink {n} (1 sample per gauge data point), wall {wall:.2}s, collector CPU {cpu:.2}s");
        println!("data points/s through the collector (wall):    {:>12.0}", n as f64 / wall);
        println!("data points/s per collector CPU-second:        {:>12.0}", n as f64 / cpu.max(1e-9));
        assert!(n > 0, "nothing arrived: {gen} {}", String::from_utf8_lossy(&out.stderr));
    });
}
