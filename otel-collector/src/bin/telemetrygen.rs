//! `telemetrygen`: an OTLP load generator for testing pipelines (like the upstream telemetrygen).
//!
//! ```text
//! telemetrygen traces  --otlp-endpoint 127.0.0.1:4317 --rate 10000 --duration 60s
//! telemetrygen metrics --otlp-endpoint 127.0.0.1:4318 --otlp-http --rate 0 --duration 10s --workers 4
//! telemetrygen logs    --otlp-endpoint 127.0.0.1:4317 --count 100000 --batch 500 --attributes 10
//! ```
//! `--rate` is items per second over all workers (0 = as fast as possible). The run stops after
//! `--duration` or once `--count` items were sent, whichever comes first (one of them must be
//! set). At the end it prints one JSON line: items sent / failed, requests, elapsed, rate. The
//! exit status is 1 when any request failed.
//!
//! Tests: `tests/export_telemetrygen.rs` runs it against a test OTLP server.

use anyhow::{bail, Context as _};
use clap::{Parser, ValueEnum};
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    metric, number_data_point, Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{span, ResourceSpans, ScopeSpans, Span, Status};
use prost::Message as _;
use rand::Rng as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tonic::codec::CompressionEncoding;
use tonic::transport::Channel;

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
enum SignalArg {
    Traces,
    Metrics,
    Logs,
}

#[derive(Parser, Debug)]
#[command(
    name = "telemetrygen",
    about = "Send synthetic OTLP traces, metrics or logs at a given rate"
)]
struct Args {
    /// Which signal to generate.
    #[arg(value_enum)]
    signal: SignalArg,
    /// Collector address: host:port (gRPC 4317 / HTTP 4318) or an http:// URL.
    #[arg(long, default_value = "127.0.0.1:4317", env = "TELEMETRYGEN_ENDPOINT")]
    otlp_endpoint: String,
    /// Send OTLP/HTTP protobuf to <endpoint>/v1/<signal> instead of gRPC.
    #[arg(long)]
    otlp_http: bool,
    /// Items (spans, data points, log records) per second over all workers; 0 = unlimited.
    #[arg(long, default_value_t = 1000)]
    rate: u64,
    /// Stop after this long (e.g. 10s, 1m); 0s = only --count bounds the run.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Stop after this many items in total; 0 = only --duration bounds the run.
    #[arg(long, default_value_t = 0)]
    count: u64,
    /// Concurrent senders.
    #[arg(long, default_value_t = 1)]
    workers: u64,
    /// Items per request.
    #[arg(long, default_value_t = 100)]
    batch: u64,
    /// Attributes per item (`attr.N = "value-N"`).
    #[arg(long, default_value_t = 4)]
    attributes: usize,
    /// Compress requests (gzip) or not (none).
    #[arg(long, default_value = "none", value_parser = ["gzip", "none"])]
    compression: String,
    /// `service.name` of the generated resource.
    #[arg(long, default_value = "telemetrygen")]
    service: String,
    /// Per-request timeout.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    timeout: Duration,
}

#[derive(Default)]
struct Stats {
    sent: AtomicU64,
    failed: AtomicU64,
    requests: AtomicU64,
    failed_requests: AtomicU64,
}

fn kv(key: String, value: String) -> KeyValue {
    KeyValue {
        key,
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value)),
        }),
        ..Default::default()
    }
}

fn attrs(n: usize) -> Vec<KeyValue> {
    (0..n)
        .map(|i| kv(format!("attr.{i}"), format!("value-{i}")))
        .collect()
}

fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as u64
}

/// Builds one request of `n` items.
struct Generator {
    resource: Resource,
    scope: InstrumentationScope,
    attributes: usize,
}

impl Generator {
    fn traces(&self, n: u64) -> ExportTraceServiceRequest {
        let mut rng = rand::rng();
        let now = now_nanos();
        let mut trace_id = rng.random::<[u8; 16]>().to_vec();
        let spans = (0..n)
            .map(|i| {
                // Ten spans per trace: a root and nine children.
                if i % 10 == 0 {
                    trace_id = rng.random::<[u8; 16]>().to_vec();
                }
                Span {
                    trace_id: trace_id.clone(),
                    span_id: rng.random::<[u8; 8]>().to_vec(),
                    name: if i % 10 == 0 {
                        "root".into()
                    } else {
                        "child".into()
                    },
                    kind: span::SpanKind::Internal as i32,
                    start_time_unix_nano: now - 1_000_000,
                    end_time_unix_nano: now,
                    attributes: attrs(self.attributes),
                    status: Some(Status::default()),
                    ..Default::default()
                }
            })
            .collect();
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(self.resource.clone()),
                scope_spans: vec![ScopeSpans {
                    scope: Some(self.scope.clone()),
                    spans,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    fn metrics(&self, n: u64) -> ExportMetricsServiceRequest {
        let now = now_nanos();
        let metrics = (0..n)
            .map(|i| Metric {
                name: format!("gen.gauge.{}", i % 50),
                unit: "1".into(),
                data: Some(metric::Data::Gauge(Gauge {
                    data_points: vec![NumberDataPoint {
                        attributes: attrs(self.attributes),
                        time_unix_nano: now,
                        value: Some(number_data_point::Value::AsDouble(i as f64)),
                        ..Default::default()
                    }],
                })),
                ..Default::default()
            })
            .collect();
        ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: Some(self.resource.clone()),
                scope_metrics: vec![ScopeMetrics {
                    scope: Some(self.scope.clone()),
                    metrics,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    fn logs(&self, n: u64) -> ExportLogsServiceRequest {
        let now = now_nanos();
        let records = (0..n)
            .map(|i| LogRecord {
                time_unix_nano: now,
                observed_time_unix_nano: now,
                severity_number: 9,
                severity_text: "INFO".into(),
                body: Some(AnyValue {
                    value: Some(any_value::Value::StringValue(format!("log message {i}"))),
                }),
                attributes: attrs(self.attributes),
                ..Default::default()
            })
            .collect();
        ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: Some(self.resource.clone()),
                scope_logs: vec![ScopeLogs {
                    scope: Some(self.scope.clone()),
                    log_records: records,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }
}

/// How requests leave the process.
#[derive(Clone)]
enum Transport {
    Grpc {
        channel: Channel,
        gzip: bool,
    },
    Http {
        client: reqwest::Client,
        base: String,
        gzip: bool,
    },
}

impl Transport {
    async fn send(&self, signal: SignalArg, g: &Generator, n: u64) -> Result<(), String> {
        match self {
            Transport::Grpc { channel, gzip } => {
                let enc = |c: bool| c.then_some(CompressionEncoding::Gzip);
                let r = match signal {
                    SignalArg::Traces => {
                        let mut c = TraceServiceClient::new(channel.clone());
                        if let Some(e) = enc(*gzip) {
                            c = c.send_compressed(e);
                        }
                        c.export(g.traces(n)).await.map(|_| ())
                    }
                    SignalArg::Metrics => {
                        let mut c = MetricsServiceClient::new(channel.clone());
                        if let Some(e) = enc(*gzip) {
                            c = c.send_compressed(e);
                        }
                        c.export(g.metrics(n)).await.map(|_| ())
                    }
                    SignalArg::Logs => {
                        let mut c = LogsServiceClient::new(channel.clone());
                        if let Some(e) = enc(*gzip) {
                            c = c.send_compressed(e);
                        }
                        c.export(g.logs(n)).await.map(|_| ())
                    }
                };
                r.map_err(|s| format!("gRPC {:?}: {}", s.code(), s.message()))
            }
            Transport::Http { client, base, gzip } => {
                let (path, body) = match signal {
                    SignalArg::Traces => ("traces", g.traces(n).encode_to_vec()),
                    SignalArg::Metrics => ("metrics", g.metrics(n).encode_to_vec()),
                    SignalArg::Logs => ("logs", g.logs(n).encode_to_vec()),
                };
                let mut rb = client
                    .post(format!("{base}/v1/{path}"))
                    .header("content-type", "application/x-protobuf");
                let body = if *gzip {
                    use std::io::Write as _;
                    let mut e =
                        flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                    e.write_all(&body).map_err(|e| e.to_string())?;
                    rb = rb.header("content-encoding", "gzip");
                    e.finish().map_err(|e| e.to_string())?
                } else {
                    body
                };
                let resp = rb.body(body).send().await.map_err(|e| e.to_string())?;
                if resp.status().is_success() {
                    Ok(())
                } else {
                    Err(format!("HTTP {}", resp.status()))
                }
            }
        }
    }
}

fn base_url(endpoint: &str) -> String {
    if endpoint.starts_with("http://") || endpoint.starts_with("https://") {
        endpoint.trim_end_matches('/').to_string()
    } else {
        format!("http://{endpoint}")
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.duration.is_zero() && args.count == 0 {
        bail!("the run must be bounded: give --duration (e.g. 10s) or --count (e.g. 100000)");
    }
    if args.batch == 0 || args.workers == 0 {
        bail!("--batch and --workers must be at least 1");
    }
    let gzip = args.compression == "gzip";
    let transport = if args.otlp_http {
        Transport::Http {
            client: reqwest::Client::builder()
                .timeout(args.timeout)
                .build()
                .context("building the HTTP client")?,
            base: base_url(&args.otlp_endpoint),
            gzip,
        }
    } else {
        let channel = tonic::transport::Endpoint::from_shared(base_url(&args.otlp_endpoint))
            .with_context(|| {
                format!(
                    "--otlp-endpoint {:?} is not host:port or a URL",
                    args.otlp_endpoint
                )
            })?
            .timeout(args.timeout)
            .connect_lazy();
        Transport::Grpc { channel, gzip }
    };
    let generator = Arc::new(Generator {
        resource: Resource {
            attributes: vec![kv("service.name".into(), args.service.clone())],
            ..Default::default()
        },
        scope: InstrumentationScope {
            name: "telemetrygen".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            ..Default::default()
        },
        attributes: args.attributes,
    });
    let stats = Arc::new(Stats::default());
    let started = Instant::now();
    let deadline = (!args.duration.is_zero()).then(|| started + args.duration);
    // Items each worker may still send (count split evenly, remainder to the first workers).
    let per_worker_count = |w: u64| {
        (args.count > 0)
            .then(|| args.count / args.workers + u64::from(w < args.count % args.workers))
    };
    let per_worker_rate = args.rate as f64 / args.workers as f64;
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..args.workers {
        let (transport, generator, stats) = (transport.clone(), generator.clone(), stats.clone());
        let mut budget = per_worker_count(w);
        let (signal, batch) = (args.signal, args.batch);
        tasks.spawn(async move {
            let mut first_error_logged = false;
            let t0 = tokio::time::Instant::now();
            let mut done: u64 = 0;
            loop {
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    break;
                }
                let n = match budget {
                    Some(0) => break,
                    Some(b) => b.min(batch),
                    None => batch,
                };
                match transport.send(signal, &generator, n).await {
                    Ok(()) => {
                        stats.sent.fetch_add(n, Ordering::Relaxed);
                    }
                    Err(e) => {
                        stats.failed.fetch_add(n, Ordering::Relaxed);
                        stats.failed_requests.fetch_add(1, Ordering::Relaxed);
                        if !first_error_logged {
                            eprintln!("telemetrygen: worker {w}: request failed: {e}");
                            first_error_logged = true;
                        }
                    }
                }
                stats.requests.fetch_add(1, Ordering::Relaxed);
                done += n;
                if let Some(b) = budget.as_mut() {
                    *b -= n;
                }
                if per_worker_rate > 0.0 {
                    // Pace against the schedule, not the last send, so the mean rate holds.
                    let due = t0 + Duration::from_secs_f64(done as f64 / per_worker_rate);
                    let due = match deadline {
                        Some(d) => due.min(tokio::time::Instant::from_std(d)),
                        None => due,
                    };
                    tokio::time::sleep_until(due).await;
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let elapsed = started.elapsed().as_secs_f64();
    let sent = stats.sent.load(Ordering::Relaxed);
    let failed = stats.failed.load(Ordering::Relaxed);
    let summary = serde_json::json!({
        "signal": format!("{:?}", args.signal).to_lowercase(),
        "items_sent": sent,
        "items_failed": failed,
        "requests": stats.requests.load(Ordering::Relaxed),
        "requests_failed": stats.failed_requests.load(Ordering::Relaxed),
        "elapsed_s": (elapsed * 1000.0).round() / 1000.0,
        "items_per_s": (sent as f64 / elapsed.max(1e-9)).round(),
    });
    println!("{summary}");
    if failed > 0 {
        std::process::exit(1);
    }
    Ok(())
}
