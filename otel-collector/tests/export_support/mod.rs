//! Shared helpers of the `export_*` integration tests: a loopback OTLP gRPC test server that
//! counts what it receives and can fail or stall on demand, and batch builders.

#![allow(dead_code, unreachable_pub)]

use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    metric, Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics,
};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use otel_collector::pipeline::Telemetry;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tonic::codec::CompressionEncoding;

/// Behaviour and counters of the test server.
#[derive(Default)]
pub struct ServerState {
    /// Fail this many requests (then succeed) with `fail_code`.
    pub fail_first: AtomicUsize,
    /// The status code of the induced failures (default UNAVAILABLE).
    pub fail_code: Mutex<Option<tonic::Code>>,
    /// Sleep this long (ms) in every request.
    pub delay_ms: AtomicU64,
    /// Requests seen (including failed ones).
    pub requests: AtomicUsize,
    /// Items accepted.
    pub spans: AtomicU64,
    pub points: AtomicU64,
    pub logs: AtomicU64,
    /// Span names accepted, in arrival order.
    pub names: Mutex<Vec<String>>,
    /// grpc-encoding of requests seen.
    pub encodings: Mutex<Vec<String>>,
    /// A header to record (`x-tenant`).
    pub tenants: Mutex<Vec<String>>,
}

impl ServerState {
    async fn gate<T>(&self, req: &tonic::Request<T>) -> Result<(), tonic::Status> {
        self.requests.fetch_add(1, Ordering::SeqCst);
        let md = req.metadata();
        if let Some(e) = md.get("grpc-encoding").and_then(|v| v.to_str().ok()) {
            self.encodings.lock().unwrap().push(e.to_string());
        }
        if let Some(t) = md.get("x-tenant").and_then(|v| v.to_str().ok()) {
            self.tenants.lock().unwrap().push(t.to_string());
        }
        let d = self.delay_ms.load(Ordering::SeqCst);
        if d > 0 {
            tokio::time::sleep(Duration::from_millis(d)).await;
        }
        // One atomic step, so a test may reset the count at any time.
        let failing = self
            .fail_first
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if failing {
            let code = self
                .fail_code
                .lock()
                .unwrap()
                .unwrap_or(tonic::Code::Unavailable);
            return Err(tonic::Status::new(code, "induced failure"));
        }
        Ok(())
    }
}

#[derive(Clone)]
struct Svc(Arc<ServerState>);

#[tonic::async_trait]
impl TraceService for Svc {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.0.gate(&request).await?;
        let req = request.into_inner();
        let mut names = self.0.names.lock().unwrap();
        for s in req
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .flat_map(|s| &s.spans)
        {
            names.push(s.name.clone());
            self.0.spans.fetch_add(1, Ordering::SeqCst);
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl MetricsService for Svc {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        self.0.gate(&request).await?;
        let n = Telemetry::Metrics(request.into_inner()).item_count() as u64;
        self.0.points.fetch_add(n, Ordering::SeqCst);
        Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl LogsService for Svc {
    async fn export(
        &self,
        request: tonic::Request<ExportLogsServiceRequest>,
    ) -> Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status> {
        self.0.gate(&request).await?;
        let n = Telemetry::Logs(request.into_inner()).item_count() as u64;
        self.0.logs.fetch_add(n, Ordering::SeqCst);
        Ok(tonic::Response::new(ExportLogsServiceResponse::default()))
    }
}

/// Starts the test server on a free loopback port.
pub async fn start_server() -> (SocketAddr, Arc<ServerState>) {
    let state = Arc::new(ServerState::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let svc = Svc(Arc::clone(&state));
    let incoming = tokio_stream_shim(listener);
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(
                TraceServiceServer::new(svc.clone())
                    .accept_compressed(CompressionEncoding::Gzip)
                    .accept_compressed(CompressionEncoding::Zstd)
                    .max_decoding_message_size(64 << 20),
            )
            .add_service(
                MetricsServiceServer::new(svc.clone())
                    .accept_compressed(CompressionEncoding::Gzip)
                    .accept_compressed(CompressionEncoding::Zstd),
            )
            .add_service(
                LogsServiceServer::new(svc)
                    .accept_compressed(CompressionEncoding::Gzip)
                    .accept_compressed(CompressionEncoding::Zstd),
            )
            .serve_with_incoming(incoming)
            .await
            .unwrap();
    });
    (addr, state)
}

/// A stream of accepted connections for `serve_with_incoming`.
fn tokio_stream_shim(
    listener: tokio::net::TcpListener,
) -> impl futures::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    futures::stream::unfold(listener, |l| async move {
        let r = l.accept().await.map(|(s, _)| s);
        Some((r, l))
    })
}

fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.into())),
        }),
        ..Default::default()
    }
}

/// A traces batch with spans named `{prefix}-{i}`.
pub fn spans(prefix: &str, n: usize) -> Telemetry {
    Telemetry::Traces(ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: (0..n)
                    .map(|i| Span {
                        name: format!("{prefix}-{i}"),
                        trace_id: vec![7; 16],
                        span_id: (i as u64 + 1).to_be_bytes().to_vec(),
                        attributes: vec![kv("http.route", "/api/orders")],
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    })
}

/// A metrics batch with `n` gauge points.
pub fn points(n: usize) -> Telemetry {
    Telemetry::Metrics(ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: "g".into(),
                    data: Some(metric::Data::Gauge(Gauge {
                        data_points: vec![NumberDataPoint::default(); n],
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    })
}

/// A logs batch with `n` records.
pub fn logs(n: usize) -> Telemetry {
    Telemetry::Logs(ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: vec![
                    LogRecord {
                        body: Some(AnyValue {
                            value: Some(any_value::Value::StringValue("hello".into())),
                        }),
                        attributes: vec![kv("k", "v")],
                        ..Default::default()
                    };
                    n
                ],
                ..Default::default()
            }],
            ..Default::default()
        }],
    })
}

/// Waits until `f` is true or `timeout` passes.
pub async fn eventually(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < end {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    f()
}

/// Parses an exporter config from YAML.
pub fn exporter_config(kind: &str, yaml: &str) -> otel_collector::exporter::ExporterConfig {
    let v: serde_yaml::Value = serde_yaml::from_str(yaml).unwrap();
    let c = otel_collector::exporter::ExporterConfig::parse(kind, v).unwrap();
    c.validate().unwrap();
    c
}

/// A start context with a fresh, ready health state.
pub fn ctx(id: &str) -> otel_collector::pipeline::StartContext {
    let c = otel_collector::pipeline::StartContext::new(id, Default::default());
    c.health.set_ready();
    c
}
