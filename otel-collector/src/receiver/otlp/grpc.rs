//! OTLP/gRPC: tonic servers for the three collector services, gzip and zstd accepted. A request
//! the pipelines do not take gets the status [`crate::receiver::answer`] decides.

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
use tokio_util::sync::CancellationToken;
use tonic::codec::CompressionEncoding;
use tonic::transport::server::TcpIncoming;
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

/// Serves OTLP/gRPC on `listener` until `stop` is cancelled (then drains in-flight calls).
/// A signal no pipeline takes is not registered, so clients get UNIMPLEMENTED for it.
pub(super) fn serve(
    listener: tokio::net::TcpListener,
    config: &GrpcConfig,
    targets: [Option<SignalTarget>; 3],
    stop: CancellationToken,
) -> impl std::future::Future<Output = Result<(), tonic::transport::Error>> + Send + 'static {
    let max = (config.max_recv_msg_size_mib as usize).saturating_mul(1024 * 1024);
    let [traces, metrics, logs] = targets;
    let traces = traces.map(|t| {
        TraceServiceServer::new(Handler(t))
            .accept_compressed(CompressionEncoding::Gzip)
            .accept_compressed(CompressionEncoding::Zstd)
            .max_decoding_message_size(max)
    });
    let metrics = metrics.map(|t| {
        MetricsServiceServer::new(Handler(t))
            .accept_compressed(CompressionEncoding::Gzip)
            .accept_compressed(CompressionEncoding::Zstd)
            .max_decoding_message_size(max)
    });
    let logs = logs.map(|t| {
        LogsServiceServer::new(Handler(t))
            .accept_compressed(CompressionEncoding::Gzip)
            .accept_compressed(CompressionEncoding::Zstd)
            .max_decoding_message_size(max)
    });
    let mut builder = tonic::transport::Server::builder();
    if config.max_concurrent_streams > 0 {
        builder = builder.max_concurrent_streams(config.max_concurrent_streams);
    }
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    builder
        .add_optional_service(traces)
        .add_optional_service(metrics)
        .add_optional_service(logs)
        .serve_with_incoming_shutdown(incoming, stop.cancelled_owned())
}
