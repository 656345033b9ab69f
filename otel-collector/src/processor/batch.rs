//! The `batch` processor: gathers batches until `send_batch_size` items or `timeout`, splits
//! batches larger than `send_batch_max_size`, and flushes what it holds on shutdown.
//!
//! Design: the buffer sits behind a mutex held only to append or take (never across an await);
//! the caller whose batch crosses `send_batch_size` sends the full batch downstream itself, so
//! the hot path has no channel hop; a timer task flushes partial batches after `timeout`. A panic
//! downstream of a flush drops that batch and is counted (`otelcol_component_panics_total`); the
//! timer task is restarted after one, so timed flushes never stop.
//! As upstream, errors from downstream of a batch are logged and counted, not returned (the
//! batch mixes data of many requests); put `memory_limiter` before `batch` so refusals reach
//! clients.
//!
//! Durable acks: in a pipeline feeding an exporter with a persistent queue
//! (`StartContext::durable_acks`), the processor holds nothing: each `consume` goes straight
//! downstream (split by `send_batch_max_size` when set) and returns the downstream outcome, so
//! a caller is answered once its data is in the queue (written, synced with `fsync`) and a
//! refusal reaches the client, which retries. The batch is thus never a window in which
//! acknowledged data lives only in memory, and a caller waits only for its own append, not for
//! a flush it shares with others. Batching then happens on the read side: the persistent
//! queue's sender merges consecutive stored records into one send
//! (`sending_queue.batch.max_size`, see `exporter/queue.rs`).
//!
//! Self-metrics: `otelcol_processor_batch_batch_send_size` (histogram),
//! `otelcol_processor_batch_batch_size_trigger_send_total`, `otelcol_processor_batch_timeout_trigger_send_total`.
//!
//! Tests: `cargo test -p otel-collector processor::batch`.

use crate::config::{duration, ComponentConfigError};
use crate::pipeline::{
    contain, ConsumeError, ConsumeFuture, Consumer, SharedConsumer, Shutdown, ShutdownFuture,
    Signal, StartContext, Telemetry,
};
use crate::telemetry::{Counter, Histogram, SelfMetrics};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::logs::v1::{ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use opentelemetry_proto::tonic::metrics::v1::{
    ExponentialHistogram, Gauge, Histogram as PbHistogram, Metric, ResourceMetrics, ScopeMetrics,
    Sum, Summary,
};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Bucket bounds of the batch size histogram (upstream's).
const SIZE_BUCKETS: &[f64] = &[
    10.0, 25.0, 50.0, 75.0, 100.0, 250.0, 500.0, 750.0, 1000.0, 2000.0, 3000.0, 4000.0, 5000.0,
    6000.0, 7000.0, 8000.0, 9000.0, 10000.0, 20000.0, 30000.0, 50000.0, 100000.0,
];

/// `processors.batch`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct BatchConfig {
    /// Send a partial batch after this long (`200ms`); `0` sends every request at once.
    #[serde(with = "duration")]
    pub timeout: Duration,
    /// Send when this many items (spans, data points, log records) are gathered.
    pub send_batch_size: usize,
    /// Largest batch sent; bigger ones are split. `0` = no limit.
    pub send_batch_max_size: usize,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            timeout: Duration::from_millis(200),
            send_batch_size: 8192,
            send_batch_max_size: 0,
        }
    }
}

impl BatchConfig {
    /// Checks the sizes.
    ///
    /// # Errors
    /// When `send_batch_max_size` is below `send_batch_size`.
    pub fn validate(&self) -> Result<(), ComponentConfigError> {
        if self.send_batch_max_size > 0 && self.send_batch_max_size < self.send_batch_size {
            return Err(ComponentConfigError::new(
                "send_batch_max_size",
                format!(
                    "{} is below send_batch_size ({}); set it to 0 (no limit) or at least send_batch_size",
                    self.send_batch_max_size, self.send_batch_size
                ),
            ));
        }
        Ok(())
    }
}

#[derive(Default)]
struct Buffer {
    data: Option<Telemetry>,
    items: usize,
    since: Option<Instant>,
}

impl Buffer {
    fn push(&mut self, data: Telemetry, n: usize) {
        self.items += n;
        match (&mut self.data, data) {
            (None, d) => self.data = Some(d),
            (Some(Telemetry::Traces(a)), Telemetry::Traces(b)) => {
                a.resource_spans.extend(b.resource_spans)
            }
            (Some(Telemetry::Metrics(a)), Telemetry::Metrics(b)) => {
                a.resource_metrics.extend(b.resource_metrics)
            }
            (Some(Telemetry::Logs(a)), Telemetry::Logs(b)) => {
                a.resource_logs.extend(b.resource_logs)
            }
            // A pipeline carries one signal; a mismatch is a wiring bug, keep the data anyway.
            (Some(_), d) => {
                tracing::error!(signal = %d.signal(), "batch processor got a second signal; dropped")
            }
        }
    }

    /// Takes everything, in pieces of at most `max` items (0 = one piece).
    fn take_all(&mut self, max: usize) -> Vec<(Telemetry, usize)> {
        let mut out = Vec::new();
        while let Some(x) = self.take(max) {
            out.push(x);
        }
        out
    }

    /// Takes up to `max` items (0 = all) from the front.
    fn take(&mut self, max: usize) -> Option<(Telemetry, usize)> {
        let data = self.data.as_mut()?;
        if max == 0 || self.items <= max {
            let n = std::mem::take(&mut self.items);
            self.since = None;
            return self.data.take().map(|d| (d, n));
        }
        let front = split_front(data, max);
        self.items -= max;
        Some((front, max))
    }
}

/// The running `batch` processor of one pipeline.
pub struct BatchProcessor {
    id: String,
    config: BatchConfig,
    buffer: Mutex<Buffer>,
    wake: Notify,
    next: SharedConsumer,
    /// Hold nothing: each request goes straight downstream (a persistent queue).
    durable_acks: bool,
    closed: AtomicBool,
    /// Set from a refused flush until a flush is taken again: a refusal is logged once per
    /// such episode (the refused items are counted downstream, e.g. `enqueue_failed`).
    refusing: AtomicBool,
    stop: CancellationToken,
    timer: Mutex<Option<tokio::task::JoinHandle<()>>>,
    send_size: Histogram,
    size_trigger: Counter,
    timeout_trigger: Counter,
}

impl BatchProcessor {
    /// Starts the processor (and its timer task) in front of `next`.
    pub fn start(
        id: &str,
        config: &BatchConfig,
        _signal: Signal,
        next: SharedConsumer,
        ctx: &StartContext,
    ) -> Arc<Self> {
        let m = SelfMetrics::global();
        let labels = vec![("processor", id.to_string())];
        let p = Arc::new(BatchProcessor {
            id: id.to_string(),
            config: config.clone(),
            buffer: Mutex::new(Buffer::default()),
            wake: Notify::new(),
            next,
            durable_acks: ctx.durable_acks,
            closed: AtomicBool::new(false),
            refusing: AtomicBool::new(false),
            stop: ctx.cancel.child_token(),
            timer: Mutex::new(None),
            send_size: m.histogram(
                "otelcol_processor_batch_batch_send_size",
                "Number of items in each batch sent.",
                labels.clone(),
                SIZE_BUCKETS,
            ),
            size_trigger: m.counter(
                "otelcol_processor_batch_batch_size_trigger_send_total",
                "Batches sent because they reached send_batch_size.",
                labels.clone(),
            ),
            timeout_trigger: m.counter(
                "otelcol_processor_batch_timeout_trigger_send_total",
                "Batches sent because the timeout expired.",
                labels,
            ),
        });
        if !config.timeout.is_zero() && !ctx.durable_acks {
            // Supervised: a panic while flushing must not end timed flushes for good.
            let timer = Arc::clone(&p);
            let task = tokio::spawn(contain::supervise("processor", id.to_string(), move || {
                Arc::clone(&timer).run_timer()
            }));
            *p.timer.lock().unwrap_or_else(|e| e.into_inner()) = Some(task);
        }
        p
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Buffer> {
        self.buffer.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sends one batch downstream; a refusal or a panic there drops the batch (a refusal is logged
    /// once per episode, see [`Self::refused`]; a panic is logged and counted by [`contain`]) and
    /// the processor goes on. Returns the outcome for durable acks (then the caller gets the
    /// refusal and nothing was acknowledged).
    async fn send(&self, data: Telemetry, n: usize) -> Result<(), ConsumeError> {
        self.send_size.observe(n as f64);
        let consume = async { self.next.consume(data).await };
        match contain::catch("processor", &self.id, consume).await {
            Ok(Ok(())) => {
                if self.refusing.swap(false, Ordering::AcqRel) {
                    tracing::info!(processor = %self.id, "batches are accepted downstream again");
                }
                Ok(())
            }
            Ok(Err(e)) => {
                self.refused(n, &e);
                Err(e)
            }
            Err(_) => {
                tracing::warn!(processor = %self.id, items = n, "batch dropped after a panic downstream");
                Err(ConsumeError::Refused {
                    reason: format!("processor {}: internal error downstream", self.id),
                    retry_after: Duration::from_secs(1),
                })
            }
        }
    }

    /// Logs the first refusal of an episode (until a batch is taken again); later ones at debug.
    fn refused(&self, n: usize, e: &ConsumeError) {
        let first = !self.refusing.swap(true, Ordering::AcqRel);
        let what = if self.durable_acks {
            "batch not accepted downstream; its caller gets the refusal (not acknowledged, it retries)"
        } else {
            "batch not accepted downstream; dropped"
        };
        if first {
            tracing::warn!(processor = %self.id, items = n, error = %e, "{what} (further refusals are logged at debug level until a batch is accepted again)");
        } else {
            tracing::debug!(processor = %self.id, items = n, error = %e, "{what}");
        }
    }

    /// Sends flushed pieces in order; returns the first failure (so a caller with durable acks
    /// retries whenever any part of its data was not taken).
    async fn flush(
        &self,
        pieces: Vec<(Telemetry, usize)>,
        trigger: Option<&Counter>,
    ) -> Result<(), ConsumeError> {
        let mut outcome = Ok(());
        for (d, n) in pieces {
            if let Some(t) = trigger {
                t.add(1);
            }
            let r = self.send(d, n).await;
            if outcome.is_ok() {
                outcome = r;
            }
        }
        outcome
    }

    /// Durable acks: sends `data` downstream at once, split by `send_batch_max_size` when set,
    /// and returns the outcome (the first failure of its pieces).
    async fn forward(&self, data: Telemetry, n: usize) -> Result<(), ConsumeError> {
        let mut own = Buffer::default();
        own.push(data, n);
        let pieces = own.take_all(self.config.send_batch_max_size);
        self.flush(pieces, None).await
    }

    async fn run_timer(self: Arc<Self>) {
        loop {
            let since = self.lock().since;
            match since {
                None => {
                    tokio::select! {
                        _ = self.wake.notified() => {}
                        _ = self.stop.cancelled() => return,
                    }
                }
                Some(t0) => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(t0 + self.config.timeout) => {
                            let pieces = {
                                let mut b = self.lock();
                                if b.since.is_some_and(|s| s + self.config.timeout <= Instant::now()) {
                                    b.take_all(self.config.send_batch_max_size)
                                } else {
                                    Vec::new()
                                }
                            };
                            let _ = self.flush(pieces, Some(&self.timeout_trigger)).await;
                        }
                        _ = self.stop.cancelled() => return,
                    }
                }
            }
        }
    }
}

impl Consumer for BatchProcessor {
    fn consume(&self, data: Telemetry) -> ConsumeFuture<'_> {
        Box::pin(async move {
            let n = data.item_count();
            if n == 0 {
                return Ok(());
            }
            if self.durable_acks {
                return self.forward(data, n).await;
            }
            if self.closed.load(Ordering::Acquire)
                || self.config.timeout.is_zero() && self.config.send_batch_max_size == 0
            {
                self.send_size.observe(n as f64);
                return self.next.consume(data).await;
            }
            let ready = {
                let mut b = self.lock();
                if b.data.is_none() {
                    b.since = Some(Instant::now());
                    self.wake.notify_one();
                }
                b.push(data, n);
                let flush_all = self.config.timeout.is_zero();
                let mut ready = Vec::new();
                while b.items > 0 && (flush_all || b.items >= self.config.send_batch_size) {
                    match b.take(self.config.send_batch_max_size) {
                        Some(x) => ready.push(x),
                        None => break,
                    }
                }
                if b.items > 0 && !ready.is_empty() {
                    b.since = Some(Instant::now());
                }
                ready
            };
            // As upstream, a batch's downstream errors are logged and counted, not returned.
            let _ = self.flush(ready, Some(&self.size_trigger)).await;
            Ok(())
        })
    }
}

impl Shutdown for BatchProcessor {
    fn shutdown(&self, deadline: Instant) -> ShutdownFuture<'_> {
        Box::pin(async move {
            self.closed.store(true, Ordering::Release);
            self.stop.cancel();
            let task = self.timer.lock().unwrap_or_else(|e| e.into_inner()).take();
            if let Some(t) = task {
                let _ = tokio::time::timeout_at(deadline, t).await;
            }
            let rest = self.lock().take_all(self.config.send_batch_max_size);
            let flush = self.flush(rest, None);
            if tokio::time::timeout_at(deadline, flush).await.is_err() {
                tracing::warn!(processor = %self.id, "batch flush did not finish by the shutdown deadline");
            }
        })
    }
}

/// Removes the first `n` items (spans, data points, log records) of `data` and returns them.
pub fn split_front(data: &mut Telemetry, n: usize) -> Telemetry {
    match data {
        Telemetry::Traces(r) => Telemetry::Traces(ExportTraceServiceRequest {
            resource_spans: split_traces(&mut r.resource_spans, n),
        }),
        Telemetry::Logs(r) => Telemetry::Logs(ExportLogsServiceRequest {
            resource_logs: split_logs(&mut r.resource_logs, n),
        }),
        Telemetry::Metrics(r) => Telemetry::Metrics(ExportMetricsServiceRequest {
            resource_metrics: split_metrics(&mut r.resource_metrics, n),
        }),
    }
}

/// Generates the three-level split for traces and logs (resource → scope → items).
macro_rules! split_three_level {
    ($fn:ident, $R:ident, $S:ident, $scopes:ident, $items:ident) => {
        fn $fn(resources: &mut Vec<$R>, n: usize) -> Vec<$R> {
            let mut out = Vec::new();
            let mut need = n;
            let mut whole = 0;
            // Whole resources first (moved, not cloned).
            for r in resources.iter() {
                let c: usize = r.$scopes.iter().map(|s| s.$items.len()).sum();
                if c > need {
                    break;
                }
                need -= c;
                whole += 1;
            }
            out.extend(resources.drain(..whole));
            if need > 0 {
                if let Some(r) = resources.first_mut() {
                    let mut part = $R {
                        resource: r.resource.clone(),
                        schema_url: r.schema_url.clone(),
                        $scopes: Vec::new(),
                    };
                    let mut whole_scopes = 0;
                    for s in r.$scopes.iter() {
                        if s.$items.len() > need {
                            break;
                        }
                        need -= s.$items.len();
                        whole_scopes += 1;
                    }
                    part.$scopes.extend(r.$scopes.drain(..whole_scopes));
                    if need > 0 {
                        if let Some(s) = r.$scopes.first_mut() {
                            part.$scopes.push($S {
                                scope: s.scope.clone(),
                                schema_url: s.schema_url.clone(),
                                $items: s.$items.drain(..need).collect(),
                            });
                        }
                    }
                    out.push(part);
                }
            }
            out
        }
    };
}

split_three_level!(split_traces, ResourceSpans, ScopeSpans, scope_spans, spans);
split_three_level!(split_logs, ResourceLogs, ScopeLogs, scope_logs, log_records);

fn metric_points(m: &Metric) -> usize {
    crate::pipeline::data_point_count(m.data.as_ref())
}

/// Takes the first `k` data points of `m` into a new metric with the same metadata.
fn split_metric(m: &mut Metric, k: usize) -> Metric {
    let data = match m.data.as_mut() {
        Some(Data::Gauge(g)) => Data::Gauge(Gauge {
            data_points: g.data_points.drain(..k).collect(),
        }),
        Some(Data::Sum(s)) => Data::Sum(Sum {
            data_points: s.data_points.drain(..k).collect(),
            aggregation_temporality: s.aggregation_temporality,
            is_monotonic: s.is_monotonic,
        }),
        Some(Data::Histogram(h)) => Data::Histogram(PbHistogram {
            data_points: h.data_points.drain(..k).collect(),
            aggregation_temporality: h.aggregation_temporality,
        }),
        Some(Data::ExponentialHistogram(h)) => Data::ExponentialHistogram(ExponentialHistogram {
            data_points: h.data_points.drain(..k).collect(),
            aggregation_temporality: h.aggregation_temporality,
        }),
        Some(Data::Summary(s)) => Data::Summary(Summary {
            data_points: s.data_points.drain(..k).collect(),
        }),
        None => return m.clone(),
    };
    Metric {
        name: m.name.clone(),
        description: m.description.clone(),
        unit: m.unit.clone(),
        metadata: m.metadata.clone(),
        data: Some(data),
    }
}

fn split_metrics(resources: &mut Vec<ResourceMetrics>, n: usize) -> Vec<ResourceMetrics> {
    let mut out = Vec::new();
    let mut need = n;
    while need > 0 && !resources.is_empty() {
        let r = &mut resources[0];
        let c: usize = r
            .scope_metrics
            .iter()
            .flat_map(|s| &s.metrics)
            .map(metric_points)
            .sum();
        if c <= need {
            need -= c;
            out.push(resources.remove(0));
            continue;
        }
        let mut part = ResourceMetrics {
            resource: r.resource.clone(),
            schema_url: r.schema_url.clone(),
            scope_metrics: Vec::new(),
        };
        while need > 0 && !r.scope_metrics.is_empty() {
            let s = &mut r.scope_metrics[0];
            let sc: usize = s.metrics.iter().map(metric_points).sum();
            if sc <= need {
                need -= sc;
                part.scope_metrics.push(r.scope_metrics.remove(0));
                continue;
            }
            let mut spart = ScopeMetrics {
                scope: s.scope.clone(),
                schema_url: s.schema_url.clone(),
                metrics: Vec::new(),
            };
            while need > 0 && !s.metrics.is_empty() {
                let mc = metric_points(&s.metrics[0]);
                if mc <= need {
                    need -= mc;
                    spart.metrics.push(s.metrics.remove(0));
                } else {
                    spart.metrics.push(split_metric(&mut s.metrics[0], need));
                    need = 0;
                }
            }
            part.scope_metrics.push(spart);
        }
        out.push(part);
    }
    out
}

#[cfg(test)]
mod tests;
