//! A minimal OTLP/gRPC metrics sink for benchmarks: accepts `MetricsService/Export` on the
//! given loopback address, counts requests and data points, and prints the totals on
//! SIGTERM/Ctrl-C. Used by `make bench-node-agent` so the agent exports to a real receiver.
//!
//! Run: `cargo run --release -p node-agent --example agent_otlp_sink -- 127.0.0.1:4317`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::metrics::v1::metric;

#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    points: AtomicU64,
}

#[derive(Clone, Default)]
struct Sink(Arc<Counters>);

#[tonic::async_trait]
impl MetricsService for Sink {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        let req = request.into_inner();
        let n: usize = req
            .resource_metrics
            .iter()
            .flat_map(|r| &r.scope_metrics)
            .flat_map(|s| &s.metrics)
            .map(|m| match &m.data {
                Some(metric::Data::Gauge(g)) => g.data_points.len(),
                Some(metric::Data::Sum(s)) => s.data_points.len(),
                _ => 0,
            })
            .sum();
        self.0.requests.fetch_add(1, Ordering::Relaxed);
        self.0.points.fetch_add(n as u64, Ordering::Relaxed);
        Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let addr: std::net::SocketAddr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:4317".into())
        .parse()?;
    anyhow::ensure!(addr.ip().is_loopback(), "the sink listens on loopback only");
    let sink = Sink::default();
    let s2 = sink.clone();
    let shutdown = async {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    };
    tonic::transport::Server::builder()
        .add_service(MetricsServiceServer::new(s2))
        .serve_with_shutdown(addr, shutdown)
        .await?;
    println!(
        "sink_requests={} sink_points={}",
        sink.0.requests.load(Ordering::Relaxed),
        sink.0.points.load(Ordering::Relaxed)
    );
    Ok(())
}
