//! Shared by the integration tests: an in-process OTLP/gRPC metrics receiver
//! (opentelemetry-proto's generated `MetricsService` on tonic) that keeps every request.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::MetricsService;
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};

/// Requests received, with their arrival time.
pub(crate) type Received = Arc<Mutex<Vec<(Instant, ExportMetricsServiceRequest)>>>;

/// The receiver; clones share the same list.
#[derive(Clone, Default)]
pub(crate) struct Sink {
    /// Everything received so far.
    pub(crate) got: Received,
}

#[tonic::async_trait]
impl MetricsService for Sink {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        self.got
            .lock()
            .unwrap()
            .push((Instant::now(), request.into_inner()));
        Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
    }
}
