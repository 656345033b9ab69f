//! Connectors: components that are an exporter of one pipeline and a receiver of another.
//!
//! Implemented: `forward` (passes data unchanged from pipelines of one signal to pipelines of
//! the same signal — for example one `traces/in` pipeline feeding `traces/tempo` and
//! `traces/file` with different processors), and two traces → metrics connectors:
//! `span_metrics` (alias `spanmetrics`: calls and duration per service, span name, kind and
//! status; [`spanmetrics`]) and `service_graph` (alias `servicegraph`: requests, failures and
//! latency per edge between services; [`servicegraph`]). The graph builder
//! ([`crate::pipeline::graph`]) builds each connector once and wires its consumer as a fan-out
//! to every pipeline that lists it as a receiver; the trace → metrics ones flush on a timer and
//! once more at shutdown.
//!
//! Tests: `cargo test -p otel-collector connector` and `config::tests`.

pub(crate) mod derive;
pub mod servicegraph;
pub mod spanmetrics;
#[cfg(test)]
pub(crate) mod testing;

use crate::config::{parse_component, ComponentConfigError, ComponentKind};
use crate::pipeline::{
    ConsumeFuture, Consumer, SharedConsumer, Shutdown, Signal, StartContext, Telemetry,
};
use derive::DeriveConnector;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// `connectors.forward`: no settings.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardConfig {}

/// Typed config of one connector.
#[derive(Debug, Clone)]
pub enum ConnectorConfig {
    /// `forward`.
    Forward(ForwardConfig),
    /// `span_metrics` / `spanmetrics`.
    SpanMetrics(Box<spanmetrics::SpanMetricsConfig>),
    /// `service_graph` / `servicegraph`.
    ServiceGraph(Box<servicegraph::ServiceGraphConfig>),
}

/// A built connector: the consumer its exporting pipelines feed, and its lifecycle if it runs
/// a flush timer.
pub struct BuiltConnector {
    /// Feed this (takes each batch by value).
    pub consumer: SharedConsumer,
    /// The same connector reading batches by reference, when it only reads them (the trace →
    /// metrics ones): the graph calls it before handing the batch on ([`Observed`]), which
    /// saves the fan-out a copy of every batch.
    pub observer: Option<Arc<dyn Observe>>,
    /// Stop/flush handle (the trace → metrics connectors).
    pub lifecycle: Option<Arc<dyn Shutdown>>,
}

/// A stage that only reads the batches passing by (it never refuses or keeps them).
pub trait Observe: Send + Sync + 'static {
    /// Reads `data`; must not block for long.
    fn observe(&self, data: &Telemetry);
}

/// Shows each batch to `observers` by reference, then hands it to `next`.
pub struct Observed {
    observers: Vec<Arc<dyn Observe>>,
    next: SharedConsumer,
}

impl Observed {
    /// `next` behind `observers`; `next` itself when there are none.
    pub fn build(observers: Vec<Arc<dyn Observe>>, next: SharedConsumer) -> SharedConsumer {
        if observers.is_empty() {
            next
        } else {
            Arc::new(Observed { observers, next })
        }
    }
}

impl Consumer for Observed {
    fn consume(&self, data: Telemetry) -> ConsumeFuture<'_> {
        for o in &self.observers {
            o.observe(&data);
        }
        self.next.consume(data)
    }
}

impl ConnectorConfig {
    /// Every connector type implemented (upstream's names and ours).
    pub const KINDS: &'static [&'static str] = &[
        "forward",
        "service_graph",
        "servicegraph",
        "span_metrics",
        "spanmetrics",
    ];

    /// True when this connector can take `from` (as an exporter) and emit `to` (as a receiver).
    pub fn supports(&self, from: Signal, to: Signal) -> bool {
        match self {
            ConnectorConfig::Forward(_) => from == to,
            ConnectorConfig::SpanMetrics(_) | ConnectorConfig::ServiceGraph(_) => {
                from == Signal::Traces && to == Signal::Metrics
            }
        }
    }

    /// Which signals it connects, for error messages.
    pub fn describe(&self) -> &'static str {
        match self {
            ConnectorConfig::Forward(_) => {
                "a signal to the same signal (traces→traces, metrics→metrics, logs→logs)"
            }
            ConnectorConfig::SpanMetrics(_) | ConnectorConfig::ServiceGraph(_) => {
                "traces to metrics"
            }
        }
    }

    /// Builds connector `id`: the consumer pipelines of signal `_from` export into; it feeds
    /// `targets`, the fan-out of the pipelines that list the connector as a receiver.
    pub fn build(
        &self,
        id: &str,
        _from: Signal,
        targets: SharedConsumer,
        ctx: &StartContext,
    ) -> BuiltConnector {
        fn started<D: derive::Derive>(c: Arc<DeriveConnector<D>>) -> BuiltConnector {
            BuiltConnector {
                consumer: c.clone(),
                observer: Some(c.clone()),
                lifecycle: Some(c),
            }
        }
        match self {
            ConnectorConfig::Forward(_) => BuiltConnector {
                consumer: targets,
                observer: None,
                lifecycle: None,
            },
            ConnectorConfig::SpanMetrics(c) => started(DeriveConnector::start(
                id,
                "span_metrics",
                spanmetrics::SpanMetrics::new(id, c),
                targets,
                c.metrics_flush_interval,
                std::time::Duration::ZERO,
                &ctx.cancel,
            )),
            ConnectorConfig::ServiceGraph(c) => started(DeriveConnector::start(
                id,
                "service_graph",
                servicegraph::ServiceGraph::new(id, c),
                targets,
                c.metrics_flush_interval,
                c.store_expiration_loop,
                &ctx.cancel,
            )),
        }
    }
}

impl ComponentKind for ConnectorConfig {
    const SECTION: &'static str = "connectors";
    fn kinds() -> &'static [&'static str] {
        Self::KINDS
    }
    fn parse_kind(kind: &str, value: serde_yaml::Value) -> Result<Self, ComponentConfigError> {
        match kind {
            "forward" => Ok(ConnectorConfig::Forward(parse_component(value)?)),
            "span_metrics" | "spanmetrics" => {
                Ok(ConnectorConfig::SpanMetrics(parse_component(value)?))
            }
            "service_graph" | "servicegraph" => {
                Ok(ConnectorConfig::ServiceGraph(parse_component(value)?))
            }
            other => Err(ComponentConfigError::new(
                "",
                format!("unknown connector type `{other}`"),
            )),
        }
    }
    fn check(&self) -> Result<(), ComponentConfigError> {
        match self {
            ConnectorConfig::Forward(_) => Ok(()),
            ConnectorConfig::SpanMetrics(c) => c.validate(),
            ConnectorConfig::ServiceGraph(c) => c.validate(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::ConsumeError;
    use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
    use std::sync::Mutex;
    use tokio_util::sync::CancellationToken;

    #[derive(Default)]
    struct Capture(Mutex<Vec<Telemetry>>);

    impl Consumer for Capture {
        fn consume(&self, data: Telemetry) -> ConsumeFuture<'_> {
            self.0.lock().unwrap().push(data);
            Box::pin(async { Ok::<(), ConsumeError>(()) })
        }
    }

    fn parse(kind: &str, yaml: &str) -> ConnectorConfig {
        let c = ConnectorConfig::parse_kind(kind, serde_yaml::from_str(yaml).unwrap()).unwrap();
        c.check().unwrap();
        c
    }

    fn traces() -> Telemetry {
        Telemetry::Traces(testing::request(vec![
            ("a", vec![testing::span(1, 1, 0, SpanKind::Client, "c", 1)]),
            ("b", vec![testing::span(1, 2, 1, SpanKind::Server, "s", 1)]),
        ]))
    }

    #[tokio::test]
    async fn observed_connectors_see_batches_by_reference_and_flush_at_shutdown() {
        let cancel = CancellationToken::new();
        let ctx = StartContext::new("t", cancel.clone());
        let metrics = Arc::new(Capture::default());
        let built = parse("span_metrics", "metrics_flush_interval: 1h").build(
            "spanmetrics",
            Signal::Traces,
            metrics.clone(),
            &ctx,
        );
        let observer = built.observer.expect("reads by reference");
        let rest = Arc::new(Capture::default());
        let head = Observed::build(vec![observer], rest.clone());
        head.consume(traces()).await.unwrap();
        assert_eq!(
            rest.0.lock().unwrap().len(),
            1,
            "the batch goes on unchanged"
        );
        assert!(
            metrics.0.lock().unwrap().is_empty(),
            "no flush before the interval"
        );
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
        built.lifecycle.expect("lifecycle").shutdown(deadline).await;
        let sent = metrics.0.lock().unwrap();
        assert_eq!(sent.len(), 1, "one flush at shutdown");
        assert_eq!(sent[0].signal(), Signal::Metrics);
        assert_eq!(sent[0].item_count(), 4, "2 calls + 2 duration points");
    }

    #[tokio::test]
    async fn zero_flush_interval_flushes_after_each_observed_batch() {
        let cancel = CancellationToken::new();
        let ctx = StartContext::new("t", cancel.clone());
        let metrics = Arc::new(Capture::default());
        let built = parse("servicegraph", "metrics_flush_interval: 0s").build(
            "servicegraph",
            Signal::Traces,
            metrics.clone(),
            &ctx,
        );
        built.observer.expect("observer").observe(&traces());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while metrics.0.lock().unwrap().is_empty() {
            assert!(
                std::time::Instant::now() < deadline,
                "no flush after the batch"
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        cancel.cancel();
    }

    #[test]
    fn aliases_parse_to_the_same_connector_and_only_connect_traces_to_metrics() {
        for kind in [
            "spanmetrics",
            "span_metrics",
            "servicegraph",
            "service_graph",
        ] {
            let c = parse(kind, "{}");
            assert!(c.supports(Signal::Traces, Signal::Metrics), "{kind}");
            assert!(!c.supports(Signal::Traces, Signal::Traces), "{kind}");
            assert!(!c.supports(Signal::Metrics, Signal::Metrics), "{kind}");
        }
    }
}
