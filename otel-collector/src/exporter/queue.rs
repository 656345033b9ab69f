//! `sending_queue` and the send loop shared by the network exporters (`otlp`, `otlphttp`).
//!
//! An exporter implements [`Export`]: `prepare` turns a batch into its wire form once (encode +
//! compress), `send` makes one attempt. [`QueuedExporter`] wraps it into a [`Consumer`]:
//! - queue enabled (default): `consume` reserves a slot in a bounded channel of `queue_size`
//!   batches, prepares the batch and enqueues it, and returns at once. A full queue refuses the
//!   batch (`ConsumeError::Refused`, counted in `otelcol_exporter_enqueue_failed_*`, health turns
//!   503) without waiting, so a slow backend cannot stall the pipelines feeding other exporters.
//!   A dispatcher hands queued batches to at most `num_consumers` concurrent senders.
//! - queue disabled: `consume` sends synchronously (with retries) and returns the outcome.
//!
//! Each send retries retryable failures per [`RetryConfig`]; permanent failures are dropped and
//! counted (`otelcol_exporter_send_failed_*`); so is a batch whose send panicked (the panic is
//! contained and counted, see `pipeline::contain`). Shutdown stops intake, drains the
//! queue until the deadline, then abandons retries and counts what is left as failed.
//!
//! Tests: `cargo test -p otel-collector exporter::queue` and `tests/export_otlp.rs`.

use super::retry::{Backoff, ExportError, RetryConfig};
use crate::extension::health::HealthState;
use crate::pipeline::{
    contain, ConsumeError, ConsumeFuture, Consumer, Shutdown, ShutdownFuture, Signal, Telemetry,
};
use crate::telemetry::{Counter, Gauge, SelfMetrics};
use futures::future::BoxFuture;
use serde::Deserialize;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;

/// The `sending_queue` block of an exporter.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct QueueConfig {
    /// Queue batches and send them in the background (default true).
    pub enabled: bool,
    /// Concurrent senders draining the queue (default 10).
    pub num_consumers: usize,
    /// Capacity in batches (default 1000).
    pub queue_size: usize,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            enabled: true,
            num_consumers: 10,
            queue_size: 1000,
        }
    }
}

impl QueueConfig {
    /// Checks the values serde cannot, naming the key.
    ///
    /// # Errors
    /// The key path (relative to the exporter) and the fix.
    pub fn validate(&self) -> Result<(), crate::config::ComponentConfigError> {
        use crate::config::ComponentConfigError as E;
        if !self.enabled {
            return Ok(());
        }
        if self.num_consumers == 0 {
            return Err(E::new(
                "sending_queue.num_consumers",
                "must be at least 1 (for example 10)",
            ));
        }
        if self.queue_size == 0 {
            return Err(E::new(
                "sending_queue.queue_size",
                "must be at least 1 batch (for example 1000), or set sending_queue.enabled: false",
            ));
        }
        Ok(())
    }
}

/// One network exporter's wire protocol: prepare a batch once, then attempt to send it.
pub trait Export: Send + Sync + 'static {
    /// The batch in wire form (encoded, compressed), reused by every retry.
    type Prepared: Send + Sync + 'static;

    /// Encodes `data`.
    ///
    /// # Errors
    /// A permanent [`ExportError`] when the data cannot be encoded.
    fn prepare(&self, data: Telemetry) -> Result<Self::Prepared, ExportError>;

    /// Makes one attempt to deliver `prepared`.
    fn send<'a>(&'a self, prepared: &'a Self::Prepared) -> BoxFuture<'a, Result<(), ExportError>>;
}

/// Counters of one exporter for one signal.
#[derive(Clone, Debug)]
struct SignalCounters {
    sent: Counter,
    send_failed: Counter,
    enqueue_failed: Counter,
}

/// The `otelcol_exporter_*` instruments of one exporter.
#[derive(Clone, Debug)]
pub struct ExporterMetrics {
    by_signal: [SignalCounters; 3],
    /// Batches currently queued.
    pub queue_size: Gauge,
    /// Queue capacity in batches.
    pub queue_capacity: Gauge,
}

fn signal_index(s: Signal) -> usize {
    match s {
        Signal::Traces => 0,
        Signal::Metrics => 1,
        Signal::Logs => 2,
    }
}

impl ExporterMetrics {
    /// Creates (or finds) the instruments labelled `exporter=id` in the global registry.
    pub fn new(id: &str) -> Self {
        Self::in_registry(SelfMetrics::global(), id)
    }

    /// Creates (or finds) the instruments labelled `exporter=id` in `reg`.
    pub fn in_registry(reg: &SelfMetrics, id: &str) -> Self {
        let labels = || vec![("exporter", id.to_string())];
        let counters = |s: Signal| {
            let (sent, failed, enq): (&'static str, &'static str, &'static str) = match s {
                Signal::Traces => (
                    "otelcol_exporter_sent_spans_total",
                    "otelcol_exporter_send_failed_spans_total",
                    "otelcol_exporter_enqueue_failed_spans_total",
                ),
                Signal::Metrics => (
                    "otelcol_exporter_sent_metric_points_total",
                    "otelcol_exporter_send_failed_metric_points_total",
                    "otelcol_exporter_enqueue_failed_metric_points_total",
                ),
                Signal::Logs => (
                    "otelcol_exporter_sent_log_records_total",
                    "otelcol_exporter_send_failed_log_records_total",
                    "otelcol_exporter_enqueue_failed_log_records_total",
                ),
            };
            SignalCounters {
                sent: reg.counter(
                    sent,
                    "Items successfully sent to the destination.",
                    labels(),
                ),
                send_failed: reg.counter(
                    failed,
                    "Items the exporter failed to send (permanent error or retries exhausted).",
                    labels(),
                ),
                enqueue_failed: reg.counter(
                    enq,
                    "Items refused because the sending queue was full.",
                    labels(),
                ),
            }
        };
        ExporterMetrics {
            by_signal: Signal::ALL.map(counters),
            queue_size: reg.gauge(
                "otelcol_exporter_queue_size",
                "Current number of batches in the sending queue.",
                labels(),
            ),
            queue_capacity: reg.gauge(
                "otelcol_exporter_queue_capacity",
                "Capacity of the sending queue in batches.",
                labels(),
            ),
        }
    }

    /// Counts `n` items of `signal` delivered.
    pub fn sent(&self, signal: Signal, n: u64) {
        self.by_signal[signal_index(signal)].sent.add(n);
    }

    /// Counts `n` items of `signal` given up on.
    pub fn send_failed(&self, signal: Signal, n: u64) {
        self.by_signal[signal_index(signal)].send_failed.add(n);
    }

    /// Counts `n` items of `signal` refused by a full queue.
    pub fn enqueue_failed(&self, signal: Signal, n: u64) {
        self.by_signal[signal_index(signal)].enqueue_failed.add(n);
    }
}

/// A prepared batch waiting in the queue.
struct Item<P> {
    signal: Signal,
    items: u64,
    prepared: P,
}

/// What the sender tasks share.
struct Shared<E: Export> {
    id: String,
    exporter: E,
    retry: RetryConfig,
    metrics: ExporterMetrics,
    /// Cancelled at the shutdown deadline: retries stop waiting, leftovers count as failed.
    abort: CancellationToken,
}

/// Delay after which a client refused by a full queue should retry.
const QUEUE_FULL_RETRY_AFTER: Duration = Duration::from_secs(1);

/// An [`Export`] behind a `sending_queue` and `retry_on_failure`: a [`Consumer`] and [`Shutdown`].
pub struct QueuedExporter<E: Export> {
    shared: Arc<Shared<E>>,
    /// `None` when the queue is disabled (synchronous sends).
    tx: Option<mpsc::Sender<Item<E::Prepared>>>,
    closing: AtomicBool,
    /// Set while the queue is reported full to the health state.
    full: Arc<AtomicBool>,
    health: HealthState,
    /// Cancelled to make the dispatcher drain and stop.
    drain: CancellationToken,
    /// Resolves when the dispatcher and every sender finished.
    done: tokio::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl<E: Export> std::fmt::Debug for QueuedExporter<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueuedExporter")
            .field("id", &self.shared.id)
            .finish_non_exhaustive()
    }
}

impl<E: Export> QueuedExporter<E> {
    /// Starts the queue's dispatcher (when enabled) for exporter `id`.
    pub fn start(
        id: &str,
        exporter: E,
        queue: &QueueConfig,
        retry: RetryConfig,
        metrics: ExporterMetrics,
        health: HealthState,
    ) -> Arc<Self> {
        let shared = Arc::new(Shared {
            id: id.to_string(),
            exporter,
            retry,
            metrics,
            abort: CancellationToken::new(),
        });
        let drain = CancellationToken::new();
        let full = Arc::new(AtomicBool::new(false));
        let (tx, handle) = if queue.enabled {
            let (tx, rx) = mpsc::channel(queue.queue_size);
            shared.metrics.queue_capacity.set(queue.queue_size as i64);
            let handle = tokio::spawn(dispatch(
                Arc::clone(&shared),
                rx,
                queue.num_consumers,
                drain.clone(),
                Arc::clone(&full),
                health.clone(),
            ));
            (Some(tx), Some(handle))
        } else {
            (None, None)
        };
        Arc::new(QueuedExporter {
            shared,
            tx,
            closing: AtomicBool::new(false),
            full,
            health,
            drain,
            done: tokio::sync::Mutex::new(handle),
        })
    }

    async fn consume_inner(&self, data: Telemetry) -> Result<(), ConsumeError> {
        let signal = data.signal();
        let items = data.item_count() as u64;
        let metrics = &self.shared.metrics;
        if self.closing.load(Ordering::Acquire) {
            metrics.enqueue_failed(signal, items);
            return Err(ConsumeError::Refused {
                reason: format!("exporter {} is shutting down", self.shared.id),
                retry_after: QUEUE_FULL_RETRY_AFTER,
            });
        }
        let Some(tx) = &self.tx else {
            let prepared = match self.shared.exporter.prepare(data) {
                Ok(p) => p,
                Err(e) => {
                    metrics.send_failed(signal, items);
                    return Err(ConsumeError::Permanent(e.message));
                }
            };
            let item = Item {
                signal,
                items,
                prepared,
            };
            let send = send_with_retry(&self.shared, &item);
            let sent = contain::catch("exporter", &self.shared.id, send)
                .await
                .unwrap_or_else(|p| {
                    metrics.send_failed(signal, items);
                    Err(ExportError::permanent(format!(
                        "internal error while sending ({}); the batch was dropped",
                        p.message
                    )))
                });
            return match sent {
                Ok(()) => Ok(()),
                Err(e) if e.retryable => Err(ConsumeError::Refused {
                    reason: e.message,
                    retry_after: e.retry_after.unwrap_or(QUEUE_FULL_RETRY_AFTER),
                }),
                Err(e) => Err(ConsumeError::Permanent(e.message)),
            };
        };
        // Reserve first so a full queue refuses before any encoding work is spent.
        let permit = match tx.try_reserve() {
            Ok(p) => p,
            Err(err) => {
                metrics.enqueue_failed(signal, items);
                let full = matches!(err, mpsc::error::TrySendError::Full(()));
                if full && !self.full.swap(true, Ordering::AcqRel) {
                    tracing::warn!(
                        exporter = %self.shared.id,
                        "sending queue is full; refusing data until it drains (further refusals are counted in otelcol_exporter_enqueue_failed_*)"
                    );
                    self.health.queue_full(&self.shared.id);
                }
                return Err(ConsumeError::Refused {
                    reason: format!("sending queue of exporter {} is full", self.shared.id),
                    retry_after: QUEUE_FULL_RETRY_AFTER,
                });
            }
        };
        match self.shared.exporter.prepare(data) {
            Ok(prepared) => {
                metrics.queue_size.add(1);
                permit.send(Item {
                    signal,
                    items,
                    prepared,
                });
                Ok(())
            }
            Err(e) => {
                metrics.send_failed(signal, items);
                tracing::error!(exporter = %self.shared.id, error = %e, "cannot encode batch; dropped");
                Err(ConsumeError::Permanent(e.message))
            }
        }
    }
}

impl<E: Export> Consumer for QueuedExporter<E> {
    fn consume(&self, data: Telemetry) -> ConsumeFuture<'_> {
        Box::pin(self.consume_inner(data))
    }
}

impl<E: Export> Shutdown for QueuedExporter<E> {
    fn shutdown(&self, deadline: tokio::time::Instant) -> ShutdownFuture<'_> {
        Box::pin(async move {
            self.closing.store(true, Ordering::Release);
            self.drain.cancel();
            let handle = self.done.lock().await.take();
            let Some(mut handle) = handle else { return };
            tokio::select! {
                _ = &mut handle => {}
                _ = tokio::time::sleep_until(deadline) => {
                    tracing::warn!(exporter = %self.shared.id, "shutdown deadline reached; abandoning queued and retrying batches");
                    self.shared.abort.cancel();
                    let _ = handle.await;
                }
            }
        })
    }
}

/// Hands queued batches to at most `num_consumers` concurrent senders until drained.
async fn dispatch<E: Export>(
    shared: Arc<Shared<E>>,
    mut rx: mpsc::Receiver<Item<E::Prepared>>,
    num_consumers: usize,
    drain: CancellationToken,
    full: Arc<AtomicBool>,
    health: HealthState,
) {
    let slots = Arc::new(Semaphore::new(num_consumers));
    let mut draining = false;
    loop {
        // Wait for a free sender first, so batches stay counted in the queue while all are busy.
        let permit = match Arc::clone(&slots).acquire_owned().await {
            Ok(p) => p,
            Err(_) => break,
        };
        let item = if draining {
            rx.recv().await
        } else {
            tokio::select! {
                item = rx.recv() => item,
                _ = drain.cancelled() => {
                    draining = true;
                    rx.close();
                    rx.recv().await
                }
            }
        };
        let Some(item) = item else { break };
        shared.metrics.queue_size.add(-1);
        if full.swap(false, Ordering::AcqRel) {
            health.queue_recovered(&shared.id);
            tracing::info!(exporter = %shared.id, "sending queue has room again");
        }
        if shared.abort.is_cancelled() {
            shared.metrics.send_failed(item.signal, item.items);
            continue;
        }
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            let send = send_with_retry(&shared, &item);
            if contain::catch("exporter", &shared.id, send).await.is_err() {
                shared.metrics.send_failed(item.signal, item.items);
            }
            drop(permit);
        });
    }
    // Wait for the in-flight senders.
    let _ = slots.acquire_many(num_consumers as u32).await;
}

/// Sends one batch, retrying retryable failures per the retry config; counts the outcome.
async fn send_with_retry<E: Export>(
    shared: &Shared<E>,
    item: &Item<E::Prepared>,
) -> Result<(), ExportError> {
    let started = tokio::time::Instant::now();
    let mut backoff: Option<Backoff> = None;
    let cfg = &shared.retry;
    loop {
        let err = match shared.exporter.send(&item.prepared).await {
            Ok(()) => {
                shared.metrics.sent(item.signal, item.items);
                return Ok(());
            }
            Err(e) => e,
        };
        let give_up = |reason: &str, err: ExportError| {
            shared.metrics.send_failed(item.signal, item.items);
            tracing::error!(
                exporter = %shared.id,
                signal = %item.signal,
                items = item.items,
                error = %err.message,
                "export failed ({reason}); dropping data"
            );
            Err(err)
        };
        if !err.retryable {
            return give_up("permanent error", err);
        }
        if !cfg.enabled {
            return give_up("retry_on_failure disabled", err);
        }
        let b = backoff.get_or_insert_with(|| Backoff::new(cfg));
        let mut delay = b.next_delay();
        if let Some(asked) = err.retry_after {
            delay = delay.max(asked);
        }
        if !cfg.max_elapsed_time.is_zero() && started.elapsed() + delay > cfg.max_elapsed_time {
            return give_up("retries exhausted (max_elapsed_time)", err);
        }
        tracing::debug!(exporter = %shared.id, error = %err.message, ?delay, "export failed; retrying");
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shared.abort.cancelled() => return give_up("shutdown deadline reached", err),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
    use std::sync::atomic::AtomicUsize;

    /// Fails the first `fail` attempts (retryable), then succeeds; optionally waits on a gate.
    struct Flaky {
        fail: usize,
        attempts: AtomicUsize,
        gate: Arc<Semaphore>,
        permanent: bool,
    }

    impl Export for Flaky {
        type Prepared = usize;
        fn prepare(&self, data: Telemetry) -> Result<usize, ExportError> {
            Ok(data.item_count())
        }
        fn send<'a>(&'a self, _p: &'a usize) -> BoxFuture<'a, Result<(), ExportError>> {
            Box::pin(async move {
                let _g = self.gate.acquire().await;
                let n = self.attempts.fetch_add(1, Ordering::SeqCst);
                if n < self.fail {
                    if self.permanent {
                        Err(ExportError::permanent("bad data"))
                    } else {
                        Err(ExportError::retryable("down", None))
                    }
                } else {
                    Ok(())
                }
            })
        }
    }

    fn spans(n: usize) -> Telemetry {
        Telemetry::Traces(ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans: vec![Span::default(); n],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        })
    }

    fn fast_retry() -> RetryConfig {
        RetryConfig {
            initial_interval: Duration::from_millis(5),
            max_interval: Duration::from_millis(20),
            ..RetryConfig::default()
        }
    }

    fn flaky(fail: usize, permanent: bool, gate_permits: usize) -> (Flaky, Arc<Semaphore>) {
        let gate = Arc::new(Semaphore::new(gate_permits));
        (
            Flaky {
                fail,
                attempts: AtomicUsize::new(0),
                gate: Arc::clone(&gate),
                permanent,
            },
            gate,
        )
    }

    #[tokio::test]
    async fn full_queue_refuses_without_blocking_and_counts() {
        let reg = SelfMetrics::default();
        let metrics = ExporterMetrics::in_registry(&reg, "otlp/slow");
        let health = HealthState::new();
        health.set_ready();
        // The sender is blocked (gate closed): one batch in flight, two queued, the rest refused.
        let (exp, gate) = flaky(0, false, 0);
        let q = QueuedExporter::start(
            "otlp/slow",
            exp,
            &QueueConfig {
                enabled: true,
                num_consumers: 1,
                queue_size: 2,
            },
            fast_retry(),
            metrics.clone(),
            health.clone(),
        );
        let mut refused = 0;
        for _ in 0..6 {
            match tokio::time::timeout(Duration::from_secs(1), q.consume(spans(10)))
                .await
                .expect("consume must not block")
            {
                Ok(()) => {}
                Err(e) => {
                    assert!(e.is_retryable());
                    refused += 1;
                }
            }
            tokio::task::yield_now().await;
        }
        assert!(refused >= 3, "refused {refused}");
        assert!(!health.is_healthy(), "health reports the full queue");
        let text = reg.render();
        assert!(
            text.contains(&format!(
                "otelcol_exporter_enqueue_failed_spans_total{{exporter=\"otlp/slow\"}} {}",
                refused * 10
            )),
            "{text}"
        );
        // Open the gate: everything accepted is delivered, health recovers.
        gate.add_permits(100);
        q.shutdown(tokio::time::Instant::now() + Duration::from_secs(5))
            .await;
        assert_eq!(
            metrics.by_signal[0].sent.get(),
            (6 - refused as u64) * 10,
            "{}",
            reg.render()
        );
        assert!(health.is_healthy());
        assert_eq!(metrics.queue_size.get(), 0);
    }

    /// Panics sending a batch of 13 items, sends the others.
    struct PanicsOn13;
    impl Export for PanicsOn13 {
        type Prepared = usize;
        fn prepare(&self, data: Telemetry) -> Result<usize, ExportError> {
            Ok(data.item_count())
        }
        fn send<'a>(&'a self, p: &'a usize) -> BoxFuture<'a, Result<(), ExportError>> {
            Box::pin(async move {
                assert_ne!(*p, 13, "exporter bug");
                Ok(())
            })
        }
    }

    /// A panic while sending drops that batch, counted as failed; the queue goes on sending, with
    /// the queue on and off.
    #[tokio::test]
    async fn a_panic_while_sending_is_counted_and_the_queue_goes_on() {
        for enabled in [true, false] {
            let id = format!("otlp/panics-{enabled}");
            let reg = SelfMetrics::default();
            let metrics = ExporterMetrics::in_registry(&reg, &id);
            let q = QueuedExporter::start(
                &id,
                PanicsOn13,
                &QueueConfig {
                    enabled,
                    num_consumers: 1,
                    queue_size: 10,
                },
                fast_retry(),
                metrics.clone(),
                HealthState::new(),
            );
            q.consume(spans(2)).await.unwrap();
            let second = q.consume(spans(13)).await;
            assert_eq!(second.is_err(), !enabled, "{second:?}");
            q.consume(spans(3)).await.unwrap();
            q.shutdown(tokio::time::Instant::now() + Duration::from_secs(5))
                .await;
            assert_eq!(metrics.by_signal[0].sent.get(), 5, "enabled {enabled}");
            assert_eq!(
                metrics.by_signal[0].send_failed.get(),
                13,
                "enabled {enabled}"
            );
            assert_eq!(contain::panics("exporter", &id), 1);
        }
    }

    #[tokio::test]
    async fn retryable_failures_are_retried_until_sent() {
        let reg = SelfMetrics::default();
        let metrics = ExporterMetrics::in_registry(&reg, "x");
        let (exp, _gate) = flaky(3, false, 1000);
        let q = QueuedExporter::start(
            "x",
            exp,
            &QueueConfig::default(),
            fast_retry(),
            metrics.clone(),
            HealthState::new(),
        );
        q.consume(spans(4)).await.unwrap();
        q.shutdown(tokio::time::Instant::now() + Duration::from_secs(5))
            .await;
        assert_eq!(metrics.by_signal[0].sent.get(), 4);
        assert_eq!(metrics.by_signal[0].send_failed.get(), 0);
        assert_eq!(q.shared.exporter.attempts.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn permanent_failures_are_not_retried() {
        let reg = SelfMetrics::default();
        let metrics = ExporterMetrics::in_registry(&reg, "x");
        let (exp, _gate) = flaky(1, true, 1000);
        let q = QueuedExporter::start(
            "x",
            exp,
            &QueueConfig {
                enabled: false,
                ..QueueConfig::default()
            },
            fast_retry(),
            metrics.clone(),
            HealthState::new(),
        );
        let err = q.consume(spans(2)).await.unwrap_err();
        assert!(!err.is_retryable());
        assert_eq!(q.shared.exporter.attempts.load(Ordering::SeqCst), 1);
        assert_eq!(metrics.by_signal[0].send_failed.get(), 2);
        // Second batch succeeds synchronously.
        q.consume(spans(3)).await.unwrap();
        assert_eq!(metrics.by_signal[0].sent.get(), 3);
    }

    #[tokio::test]
    async fn max_elapsed_time_gives_up() {
        let reg = SelfMetrics::default();
        let metrics = ExporterMetrics::in_registry(&reg, "x");
        let (exp, _gate) = flaky(usize::MAX, false, 1000);
        let q = QueuedExporter::start(
            "x",
            exp,
            &QueueConfig {
                enabled: false,
                ..QueueConfig::default()
            },
            RetryConfig {
                max_elapsed_time: Duration::from_millis(60),
                ..fast_retry()
            },
            metrics.clone(),
            HealthState::new(),
        );
        let err = q.consume(spans(1)).await.unwrap_err();
        assert!(err.is_retryable());
        let attempts = q.shared.exporter.attempts.load(Ordering::SeqCst);
        assert!(attempts >= 2, "retried at least once: {attempts}");
        assert_eq!(metrics.by_signal[0].send_failed.get(), 1);
    }

    #[tokio::test]
    async fn shutdown_deadline_abandons_stuck_retries() {
        let reg = SelfMetrics::default();
        let metrics = ExporterMetrics::in_registry(&reg, "x");
        let (exp, _gate) = flaky(usize::MAX, false, 1000);
        let q = QueuedExporter::start(
            "x",
            exp,
            &QueueConfig::default(),
            RetryConfig {
                max_elapsed_time: Duration::ZERO,
                ..fast_retry()
            },
            metrics.clone(),
            HealthState::new(),
        );
        q.consume(spans(5)).await.unwrap();
        q.consume(spans(5)).await.unwrap();
        let t = std::time::Instant::now();
        q.shutdown(tokio::time::Instant::now() + Duration::from_millis(200))
            .await;
        assert!(t.elapsed() < Duration::from_secs(3));
        assert_eq!(metrics.by_signal[0].send_failed.get(), 10);
        let err = q.consume(spans(1)).await.unwrap_err();
        assert!(err.is_retryable(), "refuses after shutdown");
    }
}
