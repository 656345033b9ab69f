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
//! - `storage: <file_storage id>`: the queue is a write-ahead log on disk ([`super::wal`]);
//!   `consume` returns once the batch (as its OTLP protobuf request) is written, synced when the
//!   extension has `fsync: true`; a record leaves the disk only once sent or given up on, and
//!   what a run leaves behind is sent first by the next one (at-least-once). The sender merges
//!   consecutive records of one signal already on disk into one send, up to
//!   `sending_queue.batch.max_size` items and [`MERGE_MAX_BYTES`] (the batching that the batch
//!   processor, which holds nothing with durable acks, no longer does); a group's records are
//!   acknowledged together, and stay on disk together when the shutdown deadline cuts the
//!   send short.
//!
//! Both queues are bounded by `queue_size` batches and `max_size_mib` of encoded bytes; a full
//! queue refuses with a retryable error, or with `block_on_overflow: true` waits up to
//! `block_timeout` for room first.
//!
//! A persistent queue that cannot write (disk full, file size limit, I/O error) refuses with a
//! retryable error too: the first failure is logged once as an error naming the directory and
//! the cause, every one is counted in
//! `otelcol_exporter_persistent_queue_write_errors_total{reason}` (and the refused items in
//! `otelcol_exporter_enqueue_failed_*`), health turns 503, and the next write that succeeds
//! logs the recovery and accepts data again, without a restart.
//!
//! Each send retries retryable failures per [`RetryConfig`]; permanent failures are dropped and
//! counted (`otelcol_exporter_send_failed_*`); so is a batch whose send panicked (the panic is
//! contained and counted, see `pipeline::contain`). Shutdown stops intake, drains the
//! queue until the deadline, then abandons retries and counts what is left as failed.
//!
//! Tests: `cargo test -p otel-collector exporter::queue` and `tests/export_otlp.rs`.

use super::retry::{Backoff, ExportError, RetryConfig};
use super::wal::{Wal, WalError, WalOptions, WriteFailure};
use crate::extension::health::HealthState;
use crate::pipeline::{
    contain, ConsumeError, ConsumeFuture, Consumer, Shutdown, ShutdownFuture, Signal, Telemetry,
};
use crate::telemetry::{Counter, Gauge, SelfMetrics};
use futures::future::BoxFuture;
use serde::Deserialize;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, Notify, Semaphore};
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
    /// Capacity in MiB of encoded batches (default 256), in memory or on disk (ours).
    pub max_size_mib: u64,
    /// When full, wait for room up to `block_timeout` instead of refusing at once.
    pub block_on_overflow: bool,
    /// Longest wait of `block_on_overflow` before refusing (default 5s; ours).
    #[serde(with = "humantime_serde")]
    pub block_timeout: Duration,
    /// Id of a `file_storage` extension: keep the queue on disk there (write-ahead, resumed on
    /// restart) instead of in memory.
    pub storage: Option<String>,
    /// How the persistent queue's sender merges stored records into one send.
    pub batch: QueueBatchConfig,
}

/// Items per merged send of the persistent queue by default (`sending_queue.batch.max_size`).
pub const DEFAULT_MERGE_MAX_ITEMS: usize = 8192;

/// Encoded bytes per merged send of the persistent queue: under gRPC's default 4 MiB limit on a
/// received message (a record larger than that alone is still sent alone).
pub const MERGE_MAX_BYTES: usize = 4 << 20;

/// `sending_queue.batch`: with a persistent queue, consecutive stored records of one signal
/// are sent as one request of at most `max_size` items (and [`MERGE_MAX_BYTES`] encoded bytes);
/// only records already on disk are merged, the sender never waits for more. The memory queue
/// sends the batches it is given as they are.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct QueueBatchConfig {
    /// Most items (spans, data points, log records) in one merged send (default 8192); `1`
    /// sends every record on its own.
    pub max_size: usize,
}

impl Default for QueueBatchConfig {
    fn default() -> Self {
        QueueBatchConfig {
            max_size: DEFAULT_MERGE_MAX_ITEMS,
        }
    }
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            enabled: true,
            num_consumers: 10,
            queue_size: 1000,
            max_size_mib: 256,
            block_on_overflow: false,
            block_timeout: Duration::from_secs(5),
            storage: None,
            batch: QueueBatchConfig::default(),
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
        if self.max_size_mib == 0 {
            return Err(E::new(
                "sending_queue.max_size_mib",
                "must be at least 1 (for example 256)",
            ));
        }
        if self.batch.max_size == 0 {
            return Err(E::new(
                "sending_queue.batch.max_size",
                format!("must be at least 1 item (default {DEFAULT_MERGE_MAX_ITEMS}; 1 sends each stored batch on its own)"),
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

    /// Prepares a batch of a persistent queue from its stored form, the OTLP protobuf request
    /// [`Telemetry::encode_to_vec`] wrote, when the exporter sends that encoding unchanged (so
    /// it need not be decoded and encoded again). `None`, the default: the queue decodes the
    /// record and calls [`Export::prepare`].
    fn prepare_encoded(
        &self,
        _signal: Signal,
        _request: &[u8],
    ) -> Option<Result<Self::Prepared, ExportError>> {
        None
    }

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
    /// Bytes currently queued (encoded batches).
    pub queue_bytes: Gauge,
    /// Damaged records skipped in the persistent queue (at start and on read).
    pub queue_skipped: Counter,
    /// Failed writes to the persistent queue, by [`WriteFailure`] (in `WriteFailure::ALL` order).
    write_errors: [Counter; 3],
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
            queue_bytes: reg.gauge(
                "otelcol_exporter_queue_size_bytes",
                "Bytes of encoded batches in the sending queue.",
                labels(),
            ),
            queue_skipped: reg.counter(
                "otelcol_exporter_persistent_queue_skipped_records_total",
                "Damaged records (torn, corrupt, undecodable) skipped in the persistent queue.",
                labels(),
            ),
            write_errors: WriteFailure::ALL.map(|f| {
                reg.counter(
                    "otelcol_exporter_persistent_queue_write_errors_total",
                    "Batches the persistent queue could not write (refused upstream), by reason.",
                    vec![
                        ("exporter", id.to_string()),
                        ("reason", f.label().to_string()),
                    ],
                )
            }),
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

    /// Counts one batch the persistent queue could not write.
    pub fn write_error(&self, why: WriteFailure) {
        self.write_errors[why.index()].add(1);
    }

    /// Batches the persistent queue could not write for `why`.
    pub fn write_errors(&self, why: WriteFailure) -> u64 {
        self.write_errors[why.index()].get()
    }
}

/// A prepared batch waiting in the queue.
struct Item<P> {
    signal: Signal,
    items: u64,
    /// Encoded size, counted against `max_size_mib` while queued.
    bytes: u64,
    prepared: P,
}

/// The on-disk queue of an exporter with `sending_queue.storage`.
struct Disk {
    wal: std::sync::Mutex<Wal>,
    /// Signalled after each append (the dispatcher waits on it when the queue is empty).
    wake: Notify,
    /// The queue directory, for logs.
    dir: String,
}

impl Disk {
    /// Runs `f` on the write-ahead log on a blocking thread.
    async fn with<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&mut Wal) -> T + Send + 'static,
    ) -> Option<T> {
        let disk = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let mut wal = disk.wal.lock().unwrap_or_else(|e| e.into_inner());
            f(&mut wal)
        })
        .await
        .ok()
    }
}

/// What the sender tasks share.
struct Shared<E: Export> {
    id: String,
    exporter: E,
    retry: RetryConfig,
    metrics: ExporterMetrics,
    /// Cancelled at the shutdown deadline: retries stop waiting, leftovers count as failed
    /// (in a persistent queue they stay on disk for the next start instead).
    abort: CancellationToken,
    /// True with a persistent queue.
    persistent: bool,
    /// Signalled whenever queued data leaves (room for `block_on_overflow` waiters).
    room: Notify,
}

/// Delay after which a client refused by a full queue should retry.
const QUEUE_FULL_RETRY_AFTER: Duration = Duration::from_secs(1);

/// An [`Export`] behind a `sending_queue` and `retry_on_failure`: a [`Consumer`] and [`Shutdown`].
pub struct QueuedExporter<E: Export> {
    shared: Arc<Shared<E>>,
    /// `None` when the queue is disabled (synchronous sends) or on disk.
    tx: Option<mpsc::Sender<Item<E::Prepared>>>,
    /// The persistent queue, with `sending_queue.storage`.
    disk: Option<Arc<Disk>>,
    /// Bytes in the memory queue.
    mem_bytes: Arc<AtomicU64>,
    max_bytes: u64,
    block: Option<Duration>,
    closing: AtomicBool,
    /// Set while the queue is reported full to the health state.
    full: Arc<AtomicBool>,
    /// Set while the persistent queue cannot write (the last append failed).
    unwritable: AtomicBool,
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
    /// Starts the queue's dispatcher (when enabled) for exporter `id`, with the queue in
    /// memory (`sending_queue.storage` is ignored here; see [`QueuedExporter::start_persistent`]).
    pub fn start(
        id: &str,
        exporter: E,
        queue: &QueueConfig,
        retry: RetryConfig,
        metrics: ExporterMetrics,
        health: HealthState,
    ) -> Arc<Self> {
        let shared = Self::shared(id, exporter, retry, metrics, false);
        let drain = CancellationToken::new();
        let full = Arc::new(AtomicBool::new(false));
        let mem_bytes = Arc::new(AtomicU64::new(0));
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
                Arc::clone(&mem_bytes),
            ));
            (Some(tx), Some(handle))
        } else {
            (None, None)
        };
        Self::assemble(
            shared, queue, tx, None, mem_bytes, full, health, drain, handle,
        )
    }

    /// Starts exporter `id` with its queue on disk in `dir` (`sending_queue.storage`): batches
    /// are accepted once written to the write-ahead log (synced when `fsync`), and what an
    /// earlier run left there is sent first. Damaged records are skipped and counted in
    /// `otelcol_exporter_persistent_queue_skipped_records_total`.
    ///
    /// # Errors
    /// The directory cannot be created, listed or read.
    #[allow(clippy::too_many_arguments)]
    pub fn start_persistent(
        id: &str,
        exporter: E,
        queue: &QueueConfig,
        retry: RetryConfig,
        metrics: ExporterMetrics,
        health: HealthState,
        dir: &std::path::Path,
        storage: &crate::extension::file_storage::FileStorageConfig,
    ) -> Result<Arc<Self>, WalError> {
        let opts = WalOptions {
            max_items: queue.queue_size,
            max_bytes: queue.max_size_mib << 20,
            segment_size: storage.segment_size_kib << 10,
            fsync: storage.fsync,
        };
        let (wal, report) = Wal::open(dir, opts)?;
        metrics.queue_skipped.add(report.skipped);
        if report.resumed > 0 || report.skipped > 0 || storage.compaction.on_start {
            tracing::info!(
                exporter = %id,
                dir = %dir.display(),
                resumed = report.resumed,
                skipped_damaged = report.skipped,
                reclaimed_segments = report.reclaimed,
                "persistent queue opened"
            );
        }
        if report.skipped > 0 {
            tracing::warn!(exporter = %id, skipped = report.skipped, "persistent queue: damaged records skipped (torn or corrupt)");
        }
        metrics.queue_size.set(wal.len() as i64);
        metrics.queue_bytes.set(wal.bytes() as i64);
        metrics.queue_capacity.set(queue.queue_size as i64);
        let shared = Self::shared(id, exporter, retry, metrics, true);
        let disk = Arc::new(Disk {
            dir: wal.dir().display().to_string(),
            wal: std::sync::Mutex::new(wal),
            wake: Notify::new(),
        });
        let drain = CancellationToken::new();
        let full = Arc::new(AtomicBool::new(false));
        let handle = tokio::spawn(dispatch_disk(
            Arc::clone(&shared),
            Arc::clone(&disk),
            queue.num_consumers,
            queue.batch.max_size.max(1) as u64,
            drain.clone(),
            Arc::clone(&full),
            health.clone(),
        ));
        Ok(Self::assemble(
            shared,
            queue,
            None,
            Some(disk),
            Arc::new(AtomicU64::new(0)),
            full,
            health,
            drain,
            Some(handle),
        ))
    }

    fn shared(
        id: &str,
        exporter: E,
        retry: RetryConfig,
        metrics: ExporterMetrics,
        persistent: bool,
    ) -> Arc<Shared<E>> {
        Arc::new(Shared {
            id: id.to_string(),
            exporter,
            retry,
            metrics,
            abort: CancellationToken::new(),
            persistent,
            room: Notify::new(),
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn assemble(
        shared: Arc<Shared<E>>,
        queue: &QueueConfig,
        tx: Option<mpsc::Sender<Item<E::Prepared>>>,
        disk: Option<Arc<Disk>>,
        mem_bytes: Arc<AtomicU64>,
        full: Arc<AtomicBool>,
        health: HealthState,
        drain: CancellationToken,
        handle: Option<tokio::task::JoinHandle<()>>,
    ) -> Arc<Self> {
        Arc::new(QueuedExporter {
            shared,
            tx,
            disk,
            mem_bytes,
            max_bytes: queue.max_size_mib << 20,
            block: queue.block_on_overflow.then_some(queue.block_timeout),
            closing: AtomicBool::new(false),
            full,
            unwritable: AtomicBool::new(false),
            health,
            drain,
            done: tokio::sync::Mutex::new(handle),
        })
    }

    /// True when batches are accepted only once written to disk.
    pub fn is_persistent(&self) -> bool {
        self.disk.is_some()
    }

    fn refuse_full(&self, signal: Signal, items: u64, why: &str) -> ConsumeError {
        self.shared.metrics.enqueue_failed(signal, items);
        if !self.full.swap(true, Ordering::AcqRel) {
            tracing::warn!(
                exporter = %self.shared.id,
                reason = why,
                "sending queue is full; refusing data until it drains (further refusals are counted in otelcol_exporter_enqueue_failed_*)"
            );
            self.health.queue_full(&self.shared.id);
        }
        ConsumeError::Refused {
            reason: format!(
                "sending queue of exporter {} is full ({why})",
                self.shared.id
            ),
            retry_after: QUEUE_FULL_RETRY_AFTER,
        }
    }

    /// The health state's name for this exporter while its queue directory is not writable.
    fn unwritable_key(&self) -> String {
        format!("{} (queue directory not writable)", self.shared.id)
    }

    /// Refuses a batch the persistent queue could not write: counted by reason, logged once
    /// per episode (until a write succeeds again), health 503, retryable status upstream.
    fn refuse_unwritable(
        &self,
        signal: Signal,
        items: u64,
        dir: &str,
        e: &WalError,
    ) -> ConsumeError {
        let why = e.write_failure().unwrap_or(WriteFailure::Other);
        let metrics = &self.shared.metrics;
        metrics.enqueue_failed(signal, items);
        metrics.write_error(why);
        if !self.unwritable.swap(true, Ordering::AcqRel) {
            tracing::error!(
                exporter = %self.shared.id,
                dir,
                reason = why.label(),
                error = %e,
                "persistent queue: cannot write to the queue directory: {}; refusing data with a retryable status until a write succeeds (further failures are counted in otelcol_exporter_persistent_queue_write_errors_total)",
                why.describe()
            );
            self.health.queue_full(&self.unwritable_key());
        }
        ConsumeError::Refused {
            reason: format!(
                "the persistent queue of exporter {} cannot write to disk: {}",
                self.shared.id,
                why.describe()
            ),
            retry_after: QUEUE_FULL_RETRY_AFTER,
        }
    }

    /// Notes a successful write: ends an episode of [`Self::refuse_unwritable`].
    fn writable_again(&self, dir: &str) {
        if self.unwritable.swap(false, Ordering::AcqRel) {
            tracing::info!(exporter = %self.shared.id, dir, "persistent queue: writes succeed again; accepting data");
            self.health.queue_recovered(&self.unwritable_key());
        }
    }

    /// Waits for room when `block_on_overflow` is set and the deadline allows; false = refuse.
    async fn wait_for_room(&self, until: Option<tokio::time::Instant>) -> bool {
        let Some(until) = until else { return false };
        let room = self.shared.room.notified();
        // Re-check periodically too: a notification may race with the caller's check.
        let tick = tokio::time::Instant::now() + Duration::from_millis(50);
        tokio::select! {
            _ = room => {}
            _ = tokio::time::sleep_until(tick.min(until)) => {}
        }
        tokio::time::Instant::now() < until
    }

    /// Sends synchronously (queue disabled).
    async fn send_now(&self, data: Telemetry) -> Result<(), ConsumeError> {
        let signal = data.signal();
        let items = data.item_count() as u64;
        let metrics = &self.shared.metrics;
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
            bytes: 0,
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
        match sent {
            Ok(()) => Ok(()),
            Err(e) if e.retryable => Err(ConsumeError::Refused {
                reason: e.message,
                retry_after: e.retry_after.unwrap_or(QUEUE_FULL_RETRY_AFTER),
            }),
            Err(e) => Err(ConsumeError::Permanent(e.message)),
        }
    }

    /// Appends to the persistent queue; `Ok` once written (and synced with `fsync`).
    async fn enqueue_disk(&self, disk: &Arc<Disk>, data: Telemetry) -> Result<(), ConsumeError> {
        let signal = data.signal();
        let items = data.item_count() as u64;
        let payload = Arc::new(data.encode_to_vec());
        let until = self.block.map(|b| tokio::time::Instant::now() + b);
        loop {
            let p = Arc::clone(&payload);
            let appended = disk
                .with(move |w| {
                    let r = w.append(signal, &p);
                    (r, w.len(), w.bytes())
                })
                .await;
            let Some((result, len, bytes)) = appended else {
                return Err(self.refuse_full(signal, items, "queue writer failed"));
            };
            let metrics = &self.shared.metrics;
            metrics.queue_size.set(len as i64);
            metrics.queue_bytes.set(bytes as i64);
            match result {
                Ok(_) => {
                    disk.wake.notify_one();
                    self.writable_again(&disk.dir);
                    return Ok(());
                }
                Err(WalError::Full { .. }) => {
                    if !self.wait_for_room(until).await {
                        return Err(self.refuse_full(signal, items, "persistent queue limits"));
                    }
                }
                Err(e) => return Err(self.refuse_unwritable(signal, items, &disk.dir, &e)),
            }
        }
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
        if let Some(disk) = &self.disk {
            return self.enqueue_disk(disk, data).await;
        }
        let Some(tx) = &self.tx else {
            return self.send_now(data).await;
        };
        let bytes = data.encoded_len() as u64;
        let until = self.block.map(|b| tokio::time::Instant::now() + b);
        // Reserve first so a full queue refuses before any encoding work is spent.
        let permit = loop {
            let used = self.mem_bytes.fetch_add(bytes, Ordering::AcqRel);
            // One batch larger than the whole bound still goes through an empty queue.
            if used > 0 && used + bytes > self.max_bytes {
                self.mem_bytes.fetch_sub(bytes, Ordering::AcqRel);
                if self.wait_for_room(until).await {
                    continue;
                }
                return Err(self.refuse_full(signal, items, "max_size_mib"));
            }
            match tx.try_reserve() {
                Ok(p) => break p,
                Err(err) => {
                    self.mem_bytes.fetch_sub(bytes, Ordering::AcqRel);
                    let full = matches!(err, mpsc::error::TrySendError::Full(()));
                    if full && self.wait_for_room(until).await {
                        continue;
                    }
                    if !full {
                        metrics.enqueue_failed(signal, items);
                        return Err(ConsumeError::Refused {
                            reason: format!("exporter {} is shutting down", self.shared.id),
                            retry_after: QUEUE_FULL_RETRY_AFTER,
                        });
                    }
                    return Err(self.refuse_full(signal, items, "queue_size"));
                }
            }
        };
        match self.shared.exporter.prepare(data) {
            Ok(prepared) => {
                metrics.queue_size.add(1);
                metrics.queue_bytes.add(bytes as i64);
                permit.send(Item {
                    signal,
                    items,
                    bytes,
                    prepared,
                });
                Ok(())
            }
            Err(e) => {
                self.mem_bytes.fetch_sub(bytes, Ordering::AcqRel);
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
            // The dispatcher and its senders are done: free the directory for a reload.
            if let Some(disk) = &self.disk {
                disk.with(|w| w.release_lock()).await;
            }
        })
    }
}

/// Marks the queue as having room again (health, blocked callers).
fn dequeued<E: Export>(shared: &Shared<E>, full: &AtomicBool, health: &HealthState) {
    shared.room.notify_waiters();
    if full.swap(false, Ordering::AcqRel) {
        health.queue_recovered(&shared.id);
        tracing::info!(exporter = %shared.id, "sending queue has room again");
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
    mem_bytes: Arc<AtomicU64>,
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
        shared.metrics.queue_bytes.add(-(item.bytes as i64));
        mem_bytes.fetch_sub(item.bytes, Ordering::AcqRel);
        dequeued(&shared, &full, &health);
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

/// Consecutive stored records of one signal, taken off the persistent queue for one send.
///
/// An encoded `Export*ServiceRequest` is `repeated Resource* = 1`, so the concatenation of
/// encoded requests is the encoding of the merged request: merging is a byte concatenation.
struct Group {
    signal: Signal,
    /// The records' sequence numbers, acknowledged together.
    seqs: Vec<u64>,
    /// Items of all records read off the wire ([`super::wire_count`]); `None` when the record's
    /// bytes are not a well-formed request (it is then the only record of its group).
    items: Option<u64>,
    /// The records' payloads, concatenated.
    payload: Vec<u8>,
    /// Where each record's payload ends in `payload`.
    ends: Vec<usize>,
}

/// Takes the oldest unread record, then, without waiting, the records after it while they are
/// of the same signal and the group stays within `max_items` items and `max_bytes` encoded
/// bytes (a first record above the bounds is a group on its own). The first record that does
/// not fit goes back to the front of the queue.
///
/// # Errors
/// The first record cannot be read (a later one failing to read just ends the group).
fn take_group(w: &mut Wal, max_items: u64, max_bytes: usize) -> Result<Option<Group>, WalError> {
    let Some(first) = w.take_next()? else {
        return Ok(None);
    };
    let signal = first.signal;
    let items = super::wire_count::item_count(signal, &first.payload);
    let mut g = Group {
        signal,
        seqs: vec![first.seq],
        items,
        ends: vec![first.payload.len()],
        payload: first.payload,
    };
    let Some(mut total) = items else {
        return Ok(Some(g));
    };
    while total < max_items && g.payload.len() < max_bytes {
        let Ok(Some(next)) = w.take_next() else {
            break;
        };
        let n = if next.signal == signal {
            super::wire_count::item_count(signal, &next.payload)
        } else {
            None
        };
        match n {
            Some(n)
                if total + n <= max_items && g.payload.len() + next.payload.len() <= max_bytes =>
            {
                total += n;
                g.seqs.push(next.seq);
                g.payload.extend_from_slice(&next.payload);
                g.ends.push(g.payload.len());
            }
            _ => {
                w.requeue(next.seq);
                break;
            }
        }
    }
    g.items = Some(total);
    Ok(Some(g))
}

/// The next group of records of the persistent queue ([`take_group`]), waiting for a record;
/// `None` once draining finds the queue empty, or at the shutdown deadline (`abort`).
async fn next_group(
    disk: &Arc<Disk>,
    drain: &CancellationToken,
    abort: &CancellationToken,
    max_items: u64,
) -> Option<Group> {
    loop {
        if abort.is_cancelled() {
            return None;
        }
        let draining = drain.is_cancelled();
        let wake = disk.wake.notified();
        match disk
            .with(move |w| take_group(w, max_items, MERGE_MAX_BYTES))
            .await?
        {
            Ok(Some(g)) => return Some(g),
            Ok(None) if draining => return None,
            Ok(None) => {}
            Err(e) => {
                tracing::error!(error = %e, "persistent queue: cannot read a record; retrying in 1s");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        }
        tokio::select! {
            _ = wake => {}
            _ = drain.cancelled() => {}
        }
    }
}

/// Sends the persistent queue's records with at most `num_consumers` concurrent senders, each
/// send merging the consecutive records already on disk up to `max_items` items
/// ([`take_group`]); a group's records are removed from disk together once delivered or given
/// up on. At shutdown it goes on sending until the queue is empty or the deadline; what is left
/// (a group cut short included, all of its records) stays on disk for the next start.
async fn dispatch_disk<E: Export>(
    shared: Arc<Shared<E>>,
    disk: Arc<Disk>,
    num_consumers: usize,
    max_items: u64,
    drain: CancellationToken,
    full: Arc<AtomicBool>,
    health: HealthState,
) {
    let slots = Arc::new(Semaphore::new(num_consumers));
    loop {
        let permit = match Arc::clone(&slots).acquire_owned().await {
            Ok(p) => p,
            Err(_) => break,
        };
        let Some(group) = next_group(&disk, &drain, &shared.abort, max_items).await else {
            break;
        };
        let shared = Arc::clone(&shared);
        let disk = Arc::clone(&disk);
        let full = Arc::clone(&full);
        let health = health.clone();
        tokio::spawn(async move {
            let keep = send_group(&shared, &group).await;
            let seqs = group.seqs;
            let done = disk
                .with(move |w| {
                    let r = if keep { Ok(()) } else { w.ack_all(&seqs) };
                    (r, w.len(), w.bytes())
                })
                .await;
            if let Some((r, len, bytes)) = done {
                if let Err(e) = r {
                    tracing::warn!(exporter = %shared.id, error = %e, "persistent queue: cannot record a delivery (the records may be sent again after a restart)");
                }
                shared.metrics.queue_size.set(len as i64);
                shared.metrics.queue_bytes.set(bytes as i64);
            }
            dequeued(&shared, &full, &health);
            drop(permit);
        });
    }
    let _ = slots.acquire_many(num_consumers as u32).await;
    let damaged = disk.with(|w| w.damaged_on_read).await.unwrap_or(0);
    if damaged > 0 {
        tracing::warn!(exporter = %shared.id, damaged, "persistent queue: records damaged on disk were skipped while sending");
    }
}

/// Prepares and sends one group of stored records as one request. True when its records must
/// stay on disk (the send was cut short by the shutdown deadline); false when they are done
/// with (sent, or dropped and counted).
async fn send_group<E: Export>(shared: &Arc<Shared<E>>, g: &Group) -> bool {
    let Some((items, prepared)) = prepare_group(shared, g) else {
        return false;
    };
    let item = Item {
        signal: g.signal,
        items,
        bytes: 0,
        prepared,
    };
    let sent = contain::catch("exporter", &shared.id, send_with_retry(shared, &item)).await;
    match sent {
        Ok(Ok(())) => false,
        Ok(Err(_)) => shared.abort.is_cancelled(),
        Err(_) => {
            shared.metrics.send_failed(g.signal, items);
            false
        }
    }
}

/// A group in wire form with its item count: straight from the stored bytes when the exporter
/// can ([`Export::prepare_encoded`]), else decoded and prepared (an undecodable record is
/// skipped and counted, the others of its group are sent). `None` when nothing is left to send
/// (undecodable, unencodable; counted and logged).
fn prepare_group<E: Export>(shared: &Shared<E>, g: &Group) -> Option<(u64, E::Prepared)> {
    if let Some(items) = g.items {
        match shared.exporter.prepare_encoded(g.signal, &g.payload) {
            Some(Ok(p)) => return Some((items, p)),
            Some(Err(e)) => return unencodable(shared, g.signal, items, &e),
            None => {}
        }
    }
    let data = match Telemetry::decode(g.signal, &g.payload) {
        Ok(d) => d,
        Err(_) => {
            // Some record does not decode: keep the ones that do (their concatenation decodes).
            let mut good = Vec::new();
            let mut start = 0;
            for &end in &g.ends {
                let part = &g.payload[start..end];
                match Telemetry::decode(g.signal, part) {
                    Ok(_) => good.extend_from_slice(part),
                    Err(e) => {
                        shared.metrics.queue_skipped.add(1);
                        tracing::error!(exporter = %shared.id, error = %e, "persistent queue: undecodable record skipped");
                    }
                }
                start = end;
            }
            if good.is_empty() {
                return None;
            }
            Telemetry::decode(g.signal, &good).ok()?
        }
    };
    let items = data.item_count() as u64;
    match shared.exporter.prepare(data) {
        Ok(p) => Some((items, p)),
        Err(e) => unencodable(shared, g.signal, items, &e),
    }
}

/// Drops a stored group the exporter cannot encode: logged and counted as failed.
fn unencodable<E: Export, T>(
    shared: &Shared<E>,
    signal: Signal,
    items: u64,
    e: &ExportError,
) -> Option<T> {
    shared.metrics.send_failed(signal, items);
    tracing::error!(exporter = %shared.id, error = %e, "cannot encode a stored batch; dropped");
    None
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
            _ = shared.abort.cancelled() => {
                if shared.persistent {
                    tracing::warn!(exporter = %shared.id, items = item.items, "shutdown deadline reached; batch kept in the persistent queue for the next start");
                    return Err(err);
                }
                return give_up("shutdown deadline reached", err);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exporter::wal;
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
                ..QueueConfig::default()
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
                    ..QueueConfig::default()
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

    fn persistent(
        id: &str,
        exp: Flaky,
        dir: &std::path::Path,
        reg: &SelfMetrics,
        queue_size: usize,
    ) -> Arc<QueuedExporter<Flaky>> {
        persistent_merging(id, exp, dir, reg, queue_size, DEFAULT_MERGE_MAX_ITEMS)
    }

    fn persistent_merging<E: Export>(
        id: &str,
        exp: E,
        dir: &std::path::Path,
        reg: &SelfMetrics,
        queue_size: usize,
        merge_items: usize,
    ) -> Arc<QueuedExporter<E>> {
        let storage = crate::extension::file_storage::FileStorageConfig {
            directory: dir.to_path_buf(),
            fsync: true,
            ..Default::default()
        };
        QueuedExporter::start_persistent(
            id,
            exp,
            &QueueConfig {
                num_consumers: 2,
                queue_size,
                batch: QueueBatchConfig {
                    max_size: merge_items,
                },
                ..QueueConfig::default()
            },
            RetryConfig {
                max_elapsed_time: Duration::ZERO,
                ..fast_retry()
            },
            ExporterMetrics::in_registry(reg, id),
            HealthState::new(),
            &storage.queue_dir(id),
            &storage,
        )
        .unwrap()
    }

    /// What a persistent queue accepted but could not send before shutdown is sent by the next
    /// start; a full one refuses with a retryable error.
    #[tokio::test]
    async fn persistent_queue_keeps_unsent_batches_for_the_next_start() {
        let d = test_support::tempdir::TempDir::new("queue-persistent");
        let reg = SelfMetrics::default();
        let (down, _g) = flaky(usize::MAX, false, 1000);
        let q = persistent("otlp/p", down, d.path(), &reg, 3);
        assert!(q.is_persistent());
        for n in [1, 2, 3] {
            q.consume(spans(n)).await.unwrap();
        }
        let err = q.consume(spans(4)).await.unwrap_err();
        assert!(err.is_retryable(), "{err}");
        q.shutdown(tokio::time::Instant::now() + Duration::from_millis(200))
            .await;
        assert_eq!(q.shared.metrics.by_signal[0].sent.get(), 0);
        assert_eq!(
            q.shared.metrics.by_signal[0].send_failed.get(),
            0,
            "kept, not failed"
        );
        drop(q);
        let reg = SelfMetrics::default();
        let (up, _g) = flaky(0, false, 1000);
        let q = persistent("otlp/p", up, d.path(), &reg, 3);
        q.consume(spans(10)).await.unwrap_err();
        let t = std::time::Instant::now();
        while q.shared.metrics.by_signal[0].sent.get() < 6 && t.elapsed() < Duration::from_secs(5) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        q.consume(spans(10)).await.unwrap();
        q.shutdown(tokio::time::Instant::now() + Duration::from_secs(5))
            .await;
        assert_eq!(
            q.shared.metrics.by_signal[0].sent.get(),
            16,
            "{}",
            reg.render()
        );
        assert_eq!(q.shared.metrics.queue_size.get(), 0);
    }

    /// A persistent queue that cannot write (here: the file size limit, simulated) refuses with a
    /// retryable error naming the cause, counts each failure by reason, turns health 503, and
    /// accepts again without a restart once writes succeed; nothing it accepted is damaged.
    #[tokio::test]
    async fn a_persistent_queue_that_cannot_write_refuses_retryably_and_recovers() {
        let d = test_support::tempdir::TempDir::new("queue-unwritable");
        let reg = SelfMetrics::default();
        let (down, _g) = flaky(usize::MAX, false, 1000);
        let q = persistent("otlp/u", down, d.path(), &reg, 100);
        q.health.set_ready();
        q.consume(spans(1)).await.unwrap();
        q.consume(spans(2)).await.unwrap();
        let set_fault = |fault: wal::SimulatedFault| {
            let disk = q.disk.as_ref().unwrap();
            let mut w = disk.wal.lock().unwrap();
            let held = w.bytes();
            w.simulate(wal::SimulatedFault {
                max_segment_bytes: fault.max_segment_bytes.map(|m| m + held),
                ..fault
            });
        };
        set_fault(wal::SimulatedFault {
            max_segment_bytes: Some(10),
            error: Some(std::io::ErrorKind::FileTooLarge),
            truncate_fails: false,
        });
        for _ in 0..3 {
            let err = q.consume(spans(4)).await.unwrap_err();
            assert!(err.is_retryable(), "{err}");
            assert!(err.to_string().contains("file too large"), "{err}");
        }
        let m = &q.shared.metrics;
        assert_eq!(m.write_errors(WriteFailure::FileTooLarge), 3);
        assert_eq!(m.write_errors(WriteFailure::NoSpace), 0);
        assert_eq!(m.by_signal[0].enqueue_failed.get(), 12);
        assert!(!q.health.is_healthy(), "503 while the queue cannot write");
        assert!(reg.render().contains(
            "otelcol_exporter_persistent_queue_write_errors_total{exporter=\"otlp/u\",reason=\"file_too_large\"} 3"
        ), "{}", reg.render());
        // Space returns: accepted again, no restart.
        set_fault(wal::SimulatedFault::default());
        q.consume(spans(8)).await.unwrap();
        assert!(q.health.is_healthy(), "recovered");
        q.shutdown(tokio::time::Instant::now() + Duration::from_millis(200))
            .await;
        drop(q);
        // Every accepted batch reads back intact on the next start.
        let reg = SelfMetrics::default();
        let (up, _g) = flaky(0, false, 1000);
        let q = persistent("otlp/u", up, d.path(), &reg, 100);
        q.shutdown(tokio::time::Instant::now() + Duration::from_secs(5))
            .await;
        assert_eq!(q.shared.metrics.by_signal[0].sent.get(), 11);
        assert_eq!(q.shared.metrics.queue_skipped.get(), 0);
    }

    /// `block_on_overflow`: a full queue makes the caller wait for room, up to `block_timeout`.
    #[tokio::test]
    async fn block_on_overflow_waits_for_room_then_refuses_at_the_timeout() {
        let reg = SelfMetrics::default();
        let (exp, gate) = flaky(0, false, 0);
        let q = QueuedExporter::start(
            "otlp/block",
            exp,
            &QueueConfig {
                num_consumers: 1,
                queue_size: 1,
                block_on_overflow: true,
                block_timeout: Duration::from_millis(300),
                ..QueueConfig::default()
            },
            fast_retry(),
            ExporterMetrics::in_registry(&reg, "otlp/block"),
            HealthState::new(),
        );
        q.consume(spans(1)).await.unwrap(); // taken by the (blocked) sender
        tokio::time::sleep(Duration::from_millis(50)).await;
        q.consume(spans(1)).await.unwrap(); // fills the queue
        let t = std::time::Instant::now();
        let err = q.consume(spans(1)).await.unwrap_err();
        assert!(err.is_retryable());
        assert!(
            t.elapsed() >= Duration::from_millis(250),
            "{:?}",
            t.elapsed()
        );
        // With room made while waiting, the caller gets in.
        let opener = {
            let gate = Arc::clone(&gate);
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(100)).await;
                gate.add_permits(100);
            })
        };
        q.consume(spans(1)).await.unwrap();
        opener.await.unwrap();
        q.shutdown(tokio::time::Instant::now() + Duration::from_secs(5))
            .await;
        assert_eq!(q.shared.metrics.by_signal[0].sent.get(), 3);
    }

    /// `max_size_mib` bounds the memory queue in bytes as well as in batches.
    #[tokio::test]
    async fn the_memory_queue_is_bounded_in_bytes() {
        let reg = SelfMetrics::default();
        let (exp, gate) = flaky(0, false, 0);
        let q = QueuedExporter::start(
            "otlp/bytes",
            exp,
            &QueueConfig {
                num_consumers: 1,
                queue_size: 1000,
                max_size_mib: 1,
                ..QueueConfig::default()
            },
            fast_retry(),
            ExporterMetrics::in_registry(&reg, "otlp/bytes"),
            HealthState::new(),
        );
        // The bound holds `fit` batches, plus the one the blocked sender took.
        let fit = (1usize << 20) / spans(20_000).encoded_len();
        let mut accepted = 0;
        for _ in 0..2 * fit + 10 {
            if q.consume(spans(20_000)).await.is_ok() {
                accepted += 1;
            }
        }
        assert!(
            (fit..=fit + 1).contains(&accepted),
            "accepted {accepted}, fit {fit}"
        );
        assert!(q.shared.metrics.queue_bytes.get() <= 1 << 20);
        gate.add_permits(1000);
        q.shutdown(tokio::time::Instant::now() + Duration::from_secs(5))
            .await;
    }

    /// Records every attempt's request (the stored bytes through `prepare_encoded` when
    /// `encoded`, else the re-encoded batch); answers per `outcome`.
    struct Recorder {
        encoded: bool,
        outcome: fn() -> Result<(), ExportError>,
        attempts: std::sync::Mutex<Vec<(Signal, Vec<u8>)>>,
    }

    impl Recorder {
        fn new(encoded: bool, outcome: fn() -> Result<(), ExportError>) -> Self {
            Recorder {
                encoded,
                outcome,
                attempts: std::sync::Mutex::new(Vec::new()),
            }
        }

        /// Item counts of the attempts, decoding each request with its signal.
        fn attempt_items(&self) -> Vec<(Signal, usize)> {
            let a = self.attempts.lock().unwrap();
            a.iter()
                .map(|(sig, b)| (*sig, Telemetry::decode(*sig, b).unwrap().item_count()))
                .collect()
        }

        /// Span names of every attempt, sorted.
        fn span_names(&self) -> Vec<String> {
            let a = self.attempts.lock().unwrap();
            let mut out: Vec<String> = a
                .iter()
                .filter(|(sig, _)| *sig == Signal::Traces)
                .flat_map(|(sig, b)| match Telemetry::decode(*sig, b).unwrap() {
                    Telemetry::Traces(r) => r
                        .resource_spans
                        .into_iter()
                        .flat_map(|r| r.scope_spans)
                        .flat_map(|s| s.spans)
                        .map(|s| s.name)
                        .collect::<Vec<_>>(),
                    _ => Vec::new(),
                })
                .collect();
            out.sort();
            out
        }
    }

    impl Export for Recorder {
        type Prepared = (Signal, Vec<u8>);
        fn prepare(&self, data: Telemetry) -> Result<Self::Prepared, ExportError> {
            Ok((data.signal(), data.encode_to_vec()))
        }
        fn prepare_encoded(
            &self,
            signal: Signal,
            request: &[u8],
        ) -> Option<Result<Self::Prepared, ExportError>> {
            self.encoded.then(|| Ok((signal, request.to_vec())))
        }
        fn send<'a>(&'a self, p: &'a Self::Prepared) -> BoxFuture<'a, Result<(), ExportError>> {
            self.attempts.lock().unwrap().push(p.clone());
            Box::pin(async move { (self.outcome)() })
        }
    }

    fn ok() -> Result<(), ExportError> {
        Ok(())
    }

    /// `n` spans named `s<start>`.. in one request.
    fn named_spans(n: usize, start: usize) -> Telemetry {
        Telemetry::Traces(ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans: (start..start + n)
                        .map(|i| Span {
                            name: format!("s{i:05}"),
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                }],
                ..Default::default()
            }],
        })
    }

    fn points(n: usize) -> Telemetry {
        use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
        use opentelemetry_proto::tonic::metrics::v1::{
            metric, Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics,
        };
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

    /// Writes `batches` straight into exporter `id`'s queue directory (what an earlier run
    /// left on disk), so the next start finds them all at once.
    fn leave_on_disk(dir: &std::path::Path, id: &str, batches: &[Telemetry]) {
        let storage = crate::extension::file_storage::FileStorageConfig {
            directory: dir.to_path_buf(),
            ..Default::default()
        };
        let opts = WalOptions {
            max_items: 1000,
            max_bytes: 256 << 20,
            segment_size: storage.segment_size_kib << 10,
            fsync: false,
        };
        let (mut w, _) = Wal::open(&storage.queue_dir(id), opts).unwrap();
        for b in batches {
            w.append(b.signal(), &b.encode_to_vec()).unwrap();
        }
    }

    /// Starts exporter `id` on `dir` with `exp`, merging up to `merge_items` items per send, and
    /// shuts it down once drained (or after 5 s).
    async fn drain_with<E: Export>(
        id: &str,
        exp: E,
        dir: &std::path::Path,
        merge_items: usize,
    ) -> Arc<QueuedExporter<E>> {
        let reg = SelfMetrics::default();
        let q = persistent_merging(id, exp, dir, &reg, 1000, merge_items);
        q.shutdown(tokio::time::Instant::now() + Duration::from_secs(5))
            .await;
        q
    }

    /// Records on disk are sent as fewer merged sends, each within `batch.max_size` items, and
    /// the merged requests hold exactly every stored item; with or without `prepare_encoded`.
    #[tokio::test]
    async fn the_persistent_queue_merges_stored_records_within_the_bound() {
        for encoded in [true, false] {
            let d = test_support::tempdir::TempDir::new("queue-merge");
            let batches: Vec<Telemetry> = (0..20).map(|i| named_spans(10, i * 10)).collect();
            leave_on_disk(d.path(), "otlp/m", &batches);
            let q = drain_with("otlp/m", Recorder::new(encoded, ok), d.path(), 45).await;
            let exp = &q.shared.exporter;
            let sends = exp.attempt_items();
            assert!(
                sends.len() < 20 && sends.len() >= 5,
                "20 records of 10 in sends of at most 45: {sends:?}"
            );
            assert!(sends.iter().all(|(_, n)| *n <= 45), "{sends:?}");
            assert!(sends.iter().any(|(_, n)| *n > 10), "{sends:?}");
            let want: Vec<String> = (0..200).map(|i| format!("s{i:05}")).collect();
            assert_eq!(exp.span_names(), want, "encoded {encoded}");
            assert_eq!(q.shared.metrics.by_signal[0].sent.get(), 200);
            assert_eq!(q.shared.metrics.queue_size.get(), 0);
        }
    }

    /// The byte bound: a group stays within `max_bytes` of encoded requests, a first record
    /// larger than the bound is a group on its own, and the record that did not fit is next.
    #[test]
    fn a_group_stays_within_the_byte_bound() {
        let d = test_support::tempdir::TempDir::new("queue-merge-bytes");
        let opts = WalOptions {
            max_items: 100,
            max_bytes: 1 << 20,
            segment_size: 1 << 20,
            fsync: false,
        };
        let (mut w, _) = Wal::open(d.path(), opts).unwrap();
        let big = named_spans(200, 0).encode_to_vec();
        let small = named_spans(10, 200).encode_to_vec();
        w.append(Signal::Traces, &big).unwrap();
        for _ in 0..5 {
            w.append(Signal::Traces, &small).unwrap();
        }
        let bound = small.len() * 3 + small.len() / 2;
        assert!(big.len() > bound);
        let sizes: Vec<(usize, Option<u64>)> = std::iter::from_fn(|| {
            take_group(&mut w, 8192, bound)
                .unwrap()
                .map(|g| (g.seqs.len(), g.items))
        })
        .collect();
        assert_eq!(sizes, vec![(1, Some(200)), (3, Some(30)), (2, Some(20))]);
    }

    /// Records of different signals are never merged: each send holds one signal's run.
    #[tokio::test]
    async fn records_of_different_signals_are_not_merged() {
        let d = test_support::tempdir::TempDir::new("queue-merge-signals");
        let batches = vec![
            named_spans(3, 0),
            named_spans(4, 3),
            points(5),
            points(6),
            named_spans(7, 7),
            points(8),
        ];
        leave_on_disk(d.path(), "otlp/s", &batches);
        let q = drain_with("otlp/s", Recorder::new(true, ok), d.path(), 8192).await;
        let mut sends = q.shared.exporter.attempt_items();
        sends.sort_by_key(|(s, n)| (signal_index(*s), *n));
        assert_eq!(
            sends,
            vec![
                (Signal::Traces, 7),
                (Signal::Traces, 7),
                (Signal::Metrics, 8),
                (Signal::Metrics, 11)
            ],
            "one send per run of one signal"
        );
        assert_eq!(q.shared.metrics.by_signal[0].sent.get(), 14);
        assert_eq!(q.shared.metrics.by_signal[1].sent.get(), 19);
    }

    /// A merged send that still fails (retryably) at the shutdown deadline leaves every record
    /// of its group on disk: the next start sends them all.
    #[tokio::test]
    async fn a_merged_group_cut_short_at_shutdown_stays_on_disk_entirely() {
        let d = test_support::tempdir::TempDir::new("queue-merge-shutdown");
        let batches: Vec<Telemetry> = (0..12).map(|i| named_spans(5, i * 5)).collect();
        leave_on_disk(d.path(), "otlp/k", &batches);
        let down = || Err(ExportError::retryable("down", None));
        let reg = SelfMetrics::default();
        let q = persistent_merging(
            "otlp/k",
            Recorder::new(true, down),
            d.path(),
            &reg,
            1000,
            8192,
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        q.shutdown(tokio::time::Instant::now() + Duration::from_millis(200))
            .await;
        let tried = q.shared.exporter.attempt_items();
        assert!(
            tried.iter().any(|(_, n)| *n > 5),
            "a merged group was attempted: {tried:?}"
        );
        assert_eq!(q.shared.metrics.by_signal[0].sent.get(), 0);
        assert_eq!(
            q.shared.metrics.by_signal[0].send_failed.get(),
            0,
            "kept, not failed"
        );
        drop(q);
        let q = drain_with("otlp/k", Recorder::new(true, ok), d.path(), 8192).await;
        let want: Vec<String> = (0..60).map(|i| format!("s{i:05}")).collect();
        assert_eq!(q.shared.exporter.span_names(), want);
        assert_eq!(q.shared.metrics.by_signal[0].sent.get(), 60);
    }

    /// A permanent failure of a merged send acknowledges the whole group and counts every one
    /// of its items as failed; nothing is left for the next start.
    #[tokio::test]
    async fn a_permanent_failure_acks_the_whole_group_and_counts_every_item() {
        let d = test_support::tempdir::TempDir::new("queue-merge-permanent");
        let batches: Vec<Telemetry> = (0..12).map(|i| named_spans(5, i * 5)).collect();
        leave_on_disk(d.path(), "otlp/x", &batches);
        let bad = || Err(ExportError::permanent("bad data"));
        let q = drain_with("otlp/x", Recorder::new(true, bad), d.path(), 8192).await;
        let tried = q.shared.exporter.attempt_items();
        assert!(tried.len() < 12, "merged: {tried:?}");
        assert_eq!(
            tried.iter().map(|(_, n)| n).sum::<usize>(),
            60,
            "each item tried once"
        );
        assert_eq!(q.shared.metrics.by_signal[0].send_failed.get(), 60);
        assert_eq!(q.shared.metrics.by_signal[0].sent.get(), 0);
        assert_eq!(q.shared.metrics.queue_size.get(), 0);
        drop(q);
        let q = drain_with("otlp/x", Recorder::new(true, ok), d.path(), 8192).await;
        assert!(
            q.shared.exporter.attempt_items().is_empty(),
            "nothing left on disk"
        );
    }

    /// `sending_queue.batch.max_size` is read from the config and must be at least 1.
    #[test]
    fn batch_max_size_is_configurable_and_validated() {
        let q: QueueConfig =
            serde_yaml::from_str("storage: file_storage/q\nbatch: {max_size: 1000}").unwrap();
        assert_eq!(q.batch.max_size, 1000);
        assert_eq!(
            QueueConfig::default().batch.max_size,
            DEFAULT_MERGE_MAX_ITEMS
        );
        let zero: QueueConfig = serde_yaml::from_str("batch: {max_size: 0}").unwrap();
        let err = zero.validate().unwrap_err();
        assert!(
            err.to_string().contains("sending_queue.batch.max_size"),
            "{err}"
        );
        assert!(serde_yaml::from_str::<QueueConfig>("batch: {max_items: 5}").is_err());
    }
}
