//! OTLP/gRPC: tonic servers for the three collector services, gzip and zstd accepted. A request
//! the pipelines do not take gets the status [`crate::receiver::answer`] decides.
//!
//! Tests: `cargo test -p otel-collector receiver::otlp::grpc` (zstd and gzip requests on every
//! signal) and `tests/core_bad_input.rs`, `tests/core_backpressure.rs`.

use super::GrpcConfig;
use crate::pipeline::Telemetry;
use crate::receiver::answer::answer;
use crate::receiver::SignalTarget;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
#[cfg(test)]
use tokio_util::sync::CancellationToken;
use tonic::codec::CompressionEncoding;
use tonic::{Request, Response, Status};

/// One signal's handler.
pub(super) struct Handler(SignalTarget);

impl Handler {
    /// Delivers `data`; `Some((count, message))` when invalid items were taken out.
    async fn handle(&self, data: Telemetry) -> Result<Option<(i64, String)>, Status> {
        let rejected = self
            .0
            .deliver(data)
            .await
            .map_err(|e| answer(e).grpc_status())?;
        Ok(rejected.map(|r| (r.count as i64, r.message)))
    }
}

#[tonic::async_trait]
impl TraceService for Handler {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let rejected = self.handle(Telemetry::Traces(request.into_inner())).await?;
        Ok(Response::new(ExportTraceServiceResponse {
            partial_success: rejected.map(|(rejected_spans, error_message)| {
                ExportTracePartialSuccess {
                    rejected_spans,
                    error_message,
                }
            }),
        }))
    }
}

#[tonic::async_trait]
impl MetricsService for Handler {
    async fn export(
        &self,
        request: Request<ExportMetricsServiceRequest>,
    ) -> Result<Response<ExportMetricsServiceResponse>, Status> {
        let rejected = self
            .handle(Telemetry::Metrics(request.into_inner()))
            .await?;
        Ok(Response::new(ExportMetricsServiceResponse {
            partial_success: rejected.map(|(rejected_data_points, error_message)| {
                ExportMetricsPartialSuccess {
                    rejected_data_points,
                    error_message,
                }
            }),
        }))
    }
}

#[tonic::async_trait]
impl LogsService for Handler {
    async fn export(
        &self,
        request: Request<ExportLogsServiceRequest>,
    ) -> Result<Response<ExportLogsServiceResponse>, Status> {
        let rejected = self.handle(Telemetry::Logs(request.into_inner())).await?;
        Ok(Response::new(ExportLogsServiceResponse {
            partial_success: rejected.map(|(rejected_log_records, error_message)| {
                ExportLogsPartialSuccess {
                    rejected_log_records,
                    error_message,
                }
            }),
        }))
    }
}

/// The OTLP/gRPC services as one router (served by [`crate::receiver::server`]). A signal no
/// pipeline takes is not registered, so clients get UNIMPLEMENTED for it.
pub(super) fn router(config: &GrpcConfig, targets: [Option<SignalTarget>; 3]) -> axum::Router {
    let max = (config.max_recv_msg_size_mib as usize).saturating_mul(1024 * 1024);
    let [traces, metrics, logs] = targets;
    let mut routes = tonic::service::Routes::default();
    if let Some(t) = traces {
        routes = routes.add_service(
            TraceServiceServer::new(Handler(t))
                .accept_compressed(CompressionEncoding::Gzip)
                .accept_compressed(CompressionEncoding::Zstd)
                .max_decoding_message_size(max),
        );
    }
    if let Some(t) = metrics {
        routes = routes.add_service(
            MetricsServiceServer::new(Handler(t))
                .accept_compressed(CompressionEncoding::Gzip)
                .accept_compressed(CompressionEncoding::Zstd)
                .max_decoding_message_size(max),
        );
    }
    if let Some(t) = logs {
        routes = routes.add_service(
            LogsServiceServer::new(Handler(t))
                .accept_compressed(CompressionEncoding::Gzip)
                .accept_compressed(CompressionEncoding::Zstd)
                .max_decoding_message_size(max),
        );
    }
    routes.prepare().into_axum_router()
}

/// Serves OTLP/gRPC on `listener` with default connection options until `stop` (tests).
#[cfg(test)]
pub(super) fn serve(
    listener: tokio::net::TcpListener,
    config: &GrpcConfig,
    targets: [Option<SignalTarget>; 3],
    stop: CancellationToken,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let options = crate::receiver::server::ServeOptions {
        receiver: "otlp/test".into(),
        protocol: crate::receiver::server::Protocol::Grpc,
        limits: config.limits(),
        tls: None,
        auth: None,
    };
    crate::receiver::server::serve(listener, router(config, targets), options, stop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::{ConsumeFuture, Consumer, Signal};
    use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
    use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
    use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    use opentelemetry_proto::tonic::metrics::v1::{
        metric, Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics,
    };
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
    use std::sync::{Arc, Mutex};

    #[derive(Default)]
    struct Sink(Mutex<Vec<Telemetry>>);
    impl Consumer for Sink {
        fn consume(&self, d: Telemetry) -> ConsumeFuture<'_> {
            self.0.lock().unwrap().push(d);
            Box::pin(async { Ok(()) })
        }
    }

    fn requests() -> (
        ExportTraceServiceRequest,
        ExportMetricsServiceRequest,
        ExportLogsServiceRequest,
    ) {
        let spans = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans: (1..=3u8)
                        .map(|i| Span {
                            name: format!("zstd-{i}"),
                            trace_id: vec![7; 16],
                            span_id: vec![i; 8],
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let metrics = ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                scope_metrics: vec![ScopeMetrics {
                    metrics: vec![Metric {
                        name: "g".into(),
                        data: Some(metric::Data::Gauge(Gauge {
                            data_points: vec![NumberDataPoint::default(); 2],
                        })),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let logs = ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                scope_logs: vec![ScopeLogs {
                    log_records: vec![LogRecord::default(); 4],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        (spans, metrics, logs)
    }

    /// Every signal arrives intact when the client compresses with zstd (and with gzip), the
    /// encodings the receiver advertises.
    #[tokio::test]
    async fn zstd_and_gzip_compressed_requests_are_accepted_on_every_signal() {
        let sink = Arc::new(Sink::default());
        let targets =
            Signal::ALL.map(|s| Some(SignalTarget::new(sink.clone(), "otlp/zstd", "grpc", s)));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let stop = CancellationToken::new();
        let server = tokio::spawn(serve(
            listener,
            &GrpcConfig::default(),
            targets,
            stop.clone(),
        ));
        let (spans, metrics, logs) = requests();
        for enc in [CompressionEncoding::Zstd, CompressionEncoding::Gzip] {
            let mut t = TraceServiceClient::connect(url.clone())
                .await
                .unwrap()
                .send_compressed(enc);
            t.export(spans.clone()).await.expect("traces");
            let mut m = MetricsServiceClient::connect(url.clone())
                .await
                .unwrap()
                .send_compressed(enc);
            m.export(metrics.clone()).await.expect("metrics");
            let mut l = LogsServiceClient::connect(url.clone())
                .await
                .unwrap()
                .send_compressed(enc);
            l.export(logs.clone()).await.expect("logs");
        }
        let got = sink.0.lock().unwrap().clone();
        let want = [
            Telemetry::Traces(spans),
            Telemetry::Metrics(metrics),
            Telemetry::Logs(logs),
        ];
        assert_eq!(got.len(), 6);
        assert_eq!(&got[..3], &want[..], "zstd");
        assert_eq!(&got[3..], &want[..], "gzip");
        stop.cancel();
        server.await.unwrap();
    }
}
