//! Receivers: the components that take data in and hand it to the pipelines that list them.
//!
//! A receiver id is started once, whatever the number of pipelines naming it; for each signal it
//! gets one [`SharedConsumer`] (a fan-out to every pipeline of that signal listing it, built by
//! [`crate::pipeline::graph`]). It counts what it accepted and what was refused
//! (`otelcol_receiver_accepted_*`, `otelcol_receiver_refused_*`, labels receiver and transport).
//!
//! Tests: `cargo test -p otel-collector receiver::`.

pub(crate) mod answer;
pub mod otlp;
pub mod server;
pub mod validate;

use crate::config::{ComponentConfigError, ComponentKind};
use crate::pipeline::{
    contain, ConsumeError, SharedConsumer, Shutdown, ShutdownFuture, Signal, StartContext,
    Telemetry,
};
use crate::telemetry::{Counter, SelfMetrics};
use std::sync::Arc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Typed config of one receiver, chosen by its type.
#[derive(Debug, Clone)]
pub enum ReceiverConfig {
    /// `otlp`: OTLP over gRPC and HTTP.
    Otlp(otlp::OtlpReceiverConfig),
}

impl ReceiverConfig {
    /// Every receiver type implemented.
    pub const KINDS: &'static [&'static str] = &["otlp"];

    /// The authenticator extensions it names: (key path inside the receiver, extension id).
    pub fn authenticators(&self) -> Vec<(String, String)> {
        match self {
            ReceiverConfig::Otlp(c) => c.authenticators(),
        }
    }

    /// Signals this receiver can produce.
    pub fn signals(&self) -> &'static [Signal] {
        match self {
            ReceiverConfig::Otlp(_) => &Signal::ALL,
        }
    }
}

impl ComponentKind for ReceiverConfig {
    const SECTION: &'static str = "receivers";
    fn kinds() -> &'static [&'static str] {
        Self::KINDS
    }
    fn parse_kind(kind: &str, value: serde_yaml::Value) -> Result<Self, ComponentConfigError> {
        match kind {
            "otlp" => Ok(ReceiverConfig::Otlp(crate::config::parse_component(value)?)),
            other => Err(ComponentConfigError::new(
                "",
                format!("unknown receiver type `{other}`"),
            )),
        }
    }
    fn check(&self) -> Result<(), ComponentConfigError> {
        match self {
            ReceiverConfig::Otlp(c) => c.validate(),
        }
    }
}

/// Where a receiver sends each signal; `None` when no pipeline of that signal lists it.
#[derive(Clone, Default)]
pub struct SignalConsumers {
    /// Consumer for spans.
    pub traces: Option<SharedConsumer>,
    /// Consumer for metrics.
    pub metrics: Option<SharedConsumer>,
    /// Consumer for logs.
    pub logs: Option<SharedConsumer>,
}

impl SignalConsumers {
    /// The consumer for `signal`.
    pub fn get(&self, signal: Signal) -> Option<&SharedConsumer> {
        match signal {
            Signal::Traces => self.traces.as_ref(),
            Signal::Metrics => self.metrics.as_ref(),
            Signal::Logs => self.logs.as_ref(),
        }
    }

    /// Sets the consumer for `signal`.
    pub fn set(&mut self, signal: Signal, consumer: SharedConsumer) {
        match signal {
            Signal::Traces => self.traces = Some(consumer),
            Signal::Metrics => self.metrics = Some(consumer),
            Signal::Logs => self.logs = Some(consumer),
        }
    }
}

/// Why a receiver could not start.
#[derive(Debug, thiserror::Error)]
pub enum ReceiverError {
    /// Its listen address could not be bound.
    #[error("receiver {id}: cannot listen on {endpoint} ({key}): {message}; pick a free port or stop the process using it")]
    Bind {
        /// Receiver id.
        id: String,
        /// Config key of the endpoint.
        key: String,
        /// The endpoint.
        endpoint: String,
        /// The OS error.
        message: String,
    },
    /// A setting that fails only when used (unreadable TLS file, unknown authenticator).
    #[error("receiver {id}: {message}")]
    Setting {
        /// Receiver id.
        id: String,
        /// What is wrong, with its key path.
        message: String,
    },
}

/// One signal's consumer with its accepted/refused counters, built once at start.
#[derive(Clone)]
pub(crate) struct SignalTarget {
    pub(crate) consumer: SharedConsumer,
    receiver: Arc<str>,
    accepted: Counter,
    refused: Counter,
}

impl SignalTarget {
    pub(crate) fn new(
        consumer: SharedConsumer,
        receiver: &str,
        transport: &'static str,
        signal: Signal,
    ) -> Self {
        let m = SelfMetrics::global();
        let labels = vec![
            ("receiver", receiver.to_string()),
            ("transport", transport.to_string()),
        ];
        let (acc, refused) = match signal {
            Signal::Traces => (
                "otelcol_receiver_accepted_spans_total",
                "otelcol_receiver_refused_spans_total",
            ),
            Signal::Metrics => (
                "otelcol_receiver_accepted_metric_points_total",
                "otelcol_receiver_refused_metric_points_total",
            ),
            Signal::Logs => (
                "otelcol_receiver_accepted_log_records_total",
                "otelcol_receiver_refused_log_records_total",
            ),
        };
        SignalTarget {
            consumer,
            receiver: receiver.into(),
            accepted: m.counter(
                acc,
                "Items successfully pushed into the pipeline.",
                labels.clone(),
            ),
            refused: m.counter(
                refused,
                "Items that could not be pushed into the pipeline.",
                labels,
            ),
        }
    }

    /// Takes out invalid items (counted as refused and returned for the answer's
    /// `partial_success`), hands the rest to the pipelines and counts the outcome. A panic in the
    /// pipelines is contained ([`crate::pipeline::contain`]): the request is answered as a
    /// permanent failure, its items counted as refused, and the receiver keeps serving.
    pub(crate) async fn deliver(
        &self,
        mut data: Telemetry,
    ) -> Result<Option<validate::Rejected>, ConsumeError> {
        let rejected = validate::drop_invalid(&mut data);
        if let Some(r) = &rejected {
            self.refused.add(r.count);
            tracing::debug!(rejected = r.count, "{}", r.message);
        }
        let n = data.item_count() as u64;
        if n == 0 {
            return Ok(rejected);
        }
        // `consume` itself runs inside the caught future: stages may work before they return one.
        let consume = async { self.consumer.consume(data).await };
        let outcome = contain::catch("receiver", &self.receiver, consume)
            .await
            .unwrap_or_else(|p| {
                Err(ConsumeError::Permanent(format!(
                    "internal error while handling the request ({}); it was dropped",
                    p.message
                )))
            });
        match outcome {
            Ok(()) => {
                self.accepted.add(n);
                Ok(rejected)
            }
            Err(e) => {
                self.refused.add(n);
                Err(e)
            }
        }
    }
}

/// A started receiver: its server tasks and the token that stops them.
pub struct RunningReceiver {
    id: String,
    stop: CancellationToken,
    tasks: tokio::sync::Mutex<JoinSet<()>>,
    /// Addresses actually bound, by transport (`grpc`, `http`), for logs and tests.
    pub bound: Vec<(&'static str, std::net::SocketAddr)>,
}

impl Shutdown for RunningReceiver {
    fn shutdown(&self, deadline: tokio::time::Instant) -> ShutdownFuture<'_> {
        Box::pin(async move {
            self.stop.cancel();
            let mut tasks = self.tasks.lock().await;
            let drained = tokio::time::timeout_at(deadline, async {
                while tasks.join_next().await.is_some() {}
            })
            .await;
            if drained.is_err() {
                tracing::warn!(receiver = %self.id, "receiver did not stop by the deadline; aborting its connections");
                tasks.abort_all();
            }
        })
    }
}

/// Starts receiver `id`: binds its listeners (errors surface here) and spawns its servers.
///
/// # Errors
/// [`ReceiverError::Bind`] when a listen address cannot be bound.
pub async fn start(
    id: &str,
    config: &ReceiverConfig,
    consumers: SignalConsumers,
    ctx: &StartContext,
) -> Result<Arc<RunningReceiver>, ReceiverError> {
    let stop = ctx.cancel.child_token();
    let mut tasks = JoinSet::new();
    let bound = match config {
        ReceiverConfig::Otlp(c) => {
            otlp::start(id, c, consumers, stop.clone(), &mut tasks, &ctx.auth).await?
        }
    };
    Ok(Arc::new(RunningReceiver {
        id: id.to_string(),
        stop,
        tasks: tokio::sync::Mutex::new(tasks),
        bound,
    }))
}
