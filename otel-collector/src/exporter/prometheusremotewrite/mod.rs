//! Exporter `prometheusremotewrite`: translated series sent as Prometheus remote-write 1.0
//! (protobuf + snappy, `Content-Encoding: snappy`, `X-Prometheus-Remote-Write-Version: 0.1.0`).
//!
//! `consume` translates the batch, splits it into requests of at most
//! `max_samples_per_request` samples / `max_batch_size_bytes` bytes, and puts them on a bounded
//! queue (`remote_write_queue.queue_size` requests; a batch that does not fit whole is refused,
//! so the receiver answers "retry later" and nothing is half-taken). `num_consumers` workers send
//! them; 5xx, 429 and network errors are retried with exponential backoff
//! (`retry_on_failure`, honouring `Retry-After`) until `max_elapsed_time`; other 4xx answers are
//! dropped with an error log and counted in `otelcol_exporter_send_failed_metric_points_total`.
//! Shutdown stops taking batches and drains the queue until the deadline.
//!
//! The queue is our own small one rather than the generic exporter queue, because requests are
//! split and encoded before queueing. With `sending_queue.storage` the generic persistent queue
//! takes its place ([`DurableRemoteWrite`]): batches are stored as OTLP and translated when sent.
//!
//! Tests: `cargo test -p otel-collector exporter::prometheusremotewrite` (against an in-process
//! sink), `cargo test -p otel-collector --test prom_remote_write` (real Prometheus and
//! VictoriaMetrics, fault proxy).

mod durable;
pub mod proto;

pub use durable::DurableRemoteWrite;

use crate::config::ComponentConfigError;
use crate::exporter::prometheus::ResourceToTelemetry;
use crate::exporter::queue::{QueueBatchConfig, QueueConfig};
use crate::exporter::retry::{Backoff, RetryConfig};
use crate::extension::health::HealthState;
use crate::pipeline::{
    contain, ConsumeError, ConsumeFuture, Consumer, Shutdown, ShutdownFuture, Telemetry,
};
use crate::telemetry::{Counter, Gauge, SelfMetrics};
use crate::translate::{names, DeltaMode, DropCounters, Labels, TranslateOptions, Translator};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use proto::EncodedRequest;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// `tls` block (upstream `configtls` keys).
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// Plain text: the endpoint's scheme decides TLS, so `true` is accepted with an `http://`
    /// endpoint and is a config error with an `https://` one (it could not act).
    pub insecure: bool,
    /// Do not verify the server certificate (testing only).
    pub insecure_skip_verify: bool,
    /// PEM file of the CA that signed the server certificate.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate for mutual TLS.
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file`.
    pub key_file: Option<PathBuf>,
}

/// `target_info` block.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TargetInfo {
    /// Send a `target_info` series per resource that has attributes besides `service.name`,
    /// `service.namespace` and `service.instance.id` (default true).
    pub enabled: bool,
}

impl Default for TargetInfo {
    fn default() -> Self {
        TargetInfo { enabled: true }
    }
}

/// `remote_write_queue` block.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RemoteWriteQueue {
    /// Queue requests (default true); false sends synchronously inside `consume`.
    pub enabled: bool,
    /// Requests the queue holds (default 10000).
    pub queue_size: usize,
    /// Parallel senders (default 1, so samples of a series arrive in order; upstream's 5 can
    /// make Prometheus reject retried requests as out of order).
    pub num_consumers: usize,
}

impl Default for RemoteWriteQueue {
    fn default() -> Self {
        RemoteWriteQueue {
            enabled: true,
            queue_size: 10_000,
            num_consumers: 1,
        }
    }
}

/// `sending_queue` block of this exporter (ours): the persistent queue. When present, batches
/// are written to the `file_storage` extension `storage` names and acknowledged once written;
/// they are translated and split into requests when taken off the disk, and sent by
/// `remote_write_queue.num_consumers` senders (default 1, in order). `remote_write_queue.queue_size`
/// then does not apply: this block's `queue_size` and `max_size_mib` bound the queue.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PersistentQueueSettings {
    /// Id of a `file_storage` extension (required).
    pub storage: Option<String>,
    /// Capacity in stored batches (default 1000).
    pub queue_size: usize,
    /// Capacity in MiB of stored batches (default 256).
    pub max_size_mib: u64,
    /// When full, wait for room up to `block_timeout` instead of refusing at once.
    pub block_on_overflow: bool,
    /// Longest wait of `block_on_overflow` before refusing (default 5s).
    #[serde(with = "humantime_serde")]
    pub block_timeout: Duration,
}

impl Default for PersistentQueueSettings {
    fn default() -> Self {
        let q = QueueConfig::default();
        PersistentQueueSettings {
            storage: None,
            queue_size: q.queue_size,
            max_size_mib: q.max_size_mib,
            block_on_overflow: q.block_on_overflow,
            block_timeout: q.block_timeout,
        }
    }
}

impl PersistentQueueSettings {
    /// The shared queue's settings, with `num_consumers` senders.
    pub fn queue_config(&self, num_consumers: usize) -> QueueConfig {
        QueueConfig {
            enabled: true,
            num_consumers,
            queue_size: self.queue_size,
            max_size_mib: self.max_size_mib,
            block_on_overflow: self.block_on_overflow,
            block_timeout: self.block_timeout,
            storage: self.storage.clone(),
            // Each stored batch is translated and sent on its own (no merging of records).
            batch: QueueBatchConfig { max_size: 1 },
        }
    }
}

/// `retry_on_failure` block: the keys of every exporter's [`RetryConfig`], with this exporter's
/// defaults (a block that sets some keys keeps these defaults for the others). Validated and
/// scheduled by the shared [`RetryConfig`] / [`Backoff`].
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetrySettings {
    /// Retry at all (default true).
    pub enabled: bool,
    /// First delay (default 50ms).
    #[serde(with = "humantime_serde")]
    pub initial_interval: Duration,
    /// Largest delay (default 5s).
    #[serde(with = "humantime_serde")]
    pub max_interval: Duration,
    /// Give up on a request after this long; 0 = never (default 5m).
    #[serde(with = "humantime_serde")]
    pub max_elapsed_time: Duration,
    /// Delay growth per attempt (default 1.5).
    pub multiplier: f64,
    /// Each delay is randomised by ± this share (default 0.5).
    pub randomization_factor: f64,
}

impl RetrySettings {
    /// The same settings as the shared retry policy.
    pub fn policy(&self) -> RetryConfig {
        RetryConfig {
            enabled: self.enabled,
            initial_interval: self.initial_interval,
            randomization_factor: self.randomization_factor,
            multiplier: self.multiplier,
            max_interval: self.max_interval,
            max_elapsed_time: self.max_elapsed_time,
        }
    }
}

impl Default for RetrySettings {
    fn default() -> Self {
        RetrySettings {
            enabled: true,
            initial_interval: Duration::from_millis(50),
            max_interval: Duration::from_secs(5),
            max_elapsed_time: Duration::from_secs(300),
            multiplier: 1.5,
            randomization_factor: 0.5,
        }
    }
}

/// Configuration of the `prometheusremotewrite` exporter.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RemoteWriteConfig {
    /// Remote-write URL, e.g. `http://127.0.0.1:9090/api/v1/write`.
    pub endpoint: String,
    /// Extra HTTP headers (e.g. `Authorization`, `X-Scope-OrgID`).
    pub headers: BTreeMap<String, String>,
    /// Per-request timeout (default 5s).
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// TLS settings.
    pub tls: TlsConfig,
    /// Labels added to every series unless it has them.
    pub external_labels: BTreeMap<String, String>,
    /// Metric name prefix.
    pub namespace: String,
    /// `target_info` series on/off.
    pub target_info: TargetInfo,
    /// Resource attributes as labels.
    pub resource_to_telemetry_conversion: ResourceToTelemetry,
    /// Unit, `_total`, `_ratio` suffixes (default true).
    pub add_metric_suffixes: bool,
    /// Upper bound of one uncompressed request body (default 3000000, as upstream).
    pub max_batch_size_bytes: usize,
    /// Upper bound of samples per request (default 2000).
    pub max_samples_per_request: usize,
    /// Queue settings.
    pub remote_write_queue: RemoteWriteQueue,
    /// Persistent queue (`sending_queue.storage`); absent = the in-memory `remote_write_queue`.
    pub sending_queue: Option<PersistentQueueSettings>,
    /// Retry settings.
    pub retry_on_failure: RetrySettings,
    /// Series cap per metric (0: none).
    pub max_series_per_metric: usize,
    /// Delta sums/histograms: accumulate (default) or drop.
    pub delta_temporality: DeltaMode,
    /// Client authenticator extension that signs every request (`auth: {authenticator: ID}`).
    pub auth: Option<crate::extension::auth::AuthRef>,
}

impl Default for RemoteWriteConfig {
    fn default() -> Self {
        RemoteWriteConfig {
            endpoint: String::new(),
            headers: BTreeMap::new(),
            timeout: Duration::from_secs(5),
            tls: TlsConfig::default(),
            external_labels: BTreeMap::new(),
            namespace: String::new(),
            target_info: TargetInfo::default(),
            resource_to_telemetry_conversion: ResourceToTelemetry::default(),
            add_metric_suffixes: true,
            max_batch_size_bytes: 3_000_000,
            max_samples_per_request: 2_000,
            remote_write_queue: RemoteWriteQueue::default(),
            sending_queue: None,
            retry_on_failure: RetrySettings::default(),
            max_series_per_metric: 0,
            auth: None,
            delta_temporality: DeltaMode::Accumulate,
        }
    }
}

impl RemoteWriteConfig {
    /// Parses the YAML value of `exporters.prometheusremotewrite[/name]`.
    ///
    /// # Errors
    /// The failing key and what to write instead.
    pub fn parse(value: serde_yaml::Value) -> Result<Self, ComponentConfigError> {
        super::parse_as(value)
    }

    /// Checks the values serde cannot.
    ///
    /// # Errors
    /// Names the key and the fix.
    pub fn validate(&self) -> Result<(), ComponentConfigError> {
        if self.endpoint.is_empty() {
            return Err(ComponentConfigError::new(
                "endpoint",
                "is required: the remote-write URL, e.g. http://127.0.0.1:9090/api/v1/write",
            ));
        }
        match reqwest::Url::parse(&self.endpoint) {
            Ok(u) if u.scheme() == "http" || u.scheme() == "https" => {}
            _ => {
                return Err(ComponentConfigError::new(
                    "endpoint",
                    format!(
                        "{:?} is not an http(s) URL; write e.g. http://127.0.0.1:9090/api/v1/write",
                        self.endpoint
                    ),
                ))
            }
        }
        if self.timeout.is_zero() {
            return Err(ComponentConfigError::new(
                "timeout",
                "must be greater than 0 (e.g. 5s)",
            ));
        }
        if self.max_samples_per_request == 0 {
            return Err(ComponentConfigError::new(
                "max_samples_per_request",
                "must be at least 1 (e.g. 2000)",
            ));
        }
        let q = &self.remote_write_queue;
        if q.enabled && (q.queue_size == 0 || q.num_consumers == 0) {
            return Err(ComponentConfigError::new(
                "remote_write_queue",
                "queue_size and num_consumers must be at least 1 (or set enabled: false)",
            ));
        }
        self.validate_persistent_queue()?;
        self.retry_on_failure.policy().validate()?;
        for k in self.external_labels.keys() {
            if names::label_name(k).as_deref() != Some(k.as_str()) {
                return Err(ComponentConfigError::new(
                    format!("external_labels.{k}"),
                    "is not a valid Prometheus label name; use letters, digits and '_'",
                ));
            }
        }
        if self.tls.insecure && self.endpoint.starts_with("https://") {
            return Err(ComponentConfigError::new(
                "tls.insecure",
                "is true but the endpoint is https://; the URL scheme decides TLS: write http:// for plain text, or remove tls.insecure",
            ));
        }
        if self.tls.cert_file.is_some() != self.tls.key_file.is_some() {
            return Err(ComponentConfigError::new(
                "tls",
                "cert_file and key_file must be set together",
            ));
        }
        Ok(())
    }

    fn validate_persistent_queue(&self) -> Result<(), ComponentConfigError> {
        let Some(pq) = &self.sending_queue else {
            return Ok(());
        };
        if pq.storage.is_none() {
            return Err(ComponentConfigError::new(
                "sending_queue.storage",
                "is required: the id of a file_storage extension (this exporter's sending_queue is the persistent queue; remove the block to queue in memory)",
            ));
        }
        if !self.remote_write_queue.enabled {
            return Err(ComponentConfigError::new(
                "remote_write_queue.enabled",
                "is false (send synchronously) while sending_queue.storage queues on disk; remove one of them",
            ));
        }
        pq.queue_config(self.remote_write_queue.num_consumers)
            .validate()
            .map_err(|e| {
                let path = if e.path.starts_with("sending_queue.num_consumers") {
                    "remote_write_queue.num_consumers".to_string()
                } else {
                    e.path.clone()
                };
                ComponentConfigError::new(path, e.message)
            })
    }

    fn translate_options(&self) -> TranslateOptions {
        TranslateOptions {
            namespace: self.namespace.clone(),
            add_metric_suffixes: self.add_metric_suffixes,
            resource_to_telemetry: self.resource_to_telemetry_conversion.enabled,
            // Upstream's remote-write translator: only resources with descriptive attributes.
            target_info: if self.target_info.enabled {
                crate::translate::TargetInfo::Descriptive
            } else {
                crate::translate::TargetInfo::Off
            },
            delta_mode: self.delta_temporality,
            max_series_per_metric: self.max_series_per_metric,
            ..TranslateOptions::default()
        }
    }

    fn client(&self) -> Result<reqwest::Client, ComponentConfigError> {
        let mut b = reqwest::Client::builder()
            .timeout(self.timeout)
            .user_agent(concat!("otel-collector/", env!("CARGO_PKG_VERSION")));
        let read = |key: &str, p: &PathBuf| {
            std::fs::read(p).map_err(|e| {
                ComponentConfigError::new(
                    format!("tls.{key}"),
                    format!("cannot read {}: {e}", p.display()),
                )
            })
        };
        if let Some(ca) = &self.tls.ca_file {
            let pem = read("ca_file", ca)?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                ComponentConfigError::new("tls.ca_file", format!("not a PEM certificate: {e}"))
            })?;
            for c in certs {
                b = b.add_root_certificate(c);
            }
        }
        if let (Some(cert), Some(key)) = (&self.tls.cert_file, &self.tls.key_file) {
            let mut pem = read("cert_file", cert)?;
            pem.extend(read("key_file", key)?);
            let id = reqwest::Identity::from_pem(&pem).map_err(|e| {
                ComponentConfigError::new(
                    "tls.cert_file",
                    format!("not a PEM certificate/key pair: {e}"),
                )
            })?;
            b = b.identity(id);
        }
        if self.tls.insecure_skip_verify {
            b = b.danger_accept_invalid_certs(true);
        }
        b.build().map_err(|e| {
            ComponentConfigError::new("tls", format!("cannot build the HTTP client: {e}"))
        })
    }
}

/// Errors starting the exporter.
#[derive(Debug, thiserror::Error)]
#[error("exporter {id}: {source}")]
pub struct RemoteWriteError {
    /// Exporter id.
    pub id: String,
    /// The configuration problem.
    pub source: ComponentConfigError,
}

#[derive(Debug)]
struct Metrics {
    sent_points: Counter,
    sent_samples: Counter,
    failed_points: Counter,
    enqueue_failed: Counter,
    retries: Counter,
    queue_size: Gauge,
}

impl Metrics {
    fn new(reg: &SelfMetrics, id: &str) -> Self {
        let l = || vec![("exporter", id.to_string())];
        reg.gauge(
            "otelcol_exporter_queue_capacity",
            "Fixed capacity of the sending queue, in batches.",
            l(),
        );
        Metrics {
            sent_points: reg.counter(
                "otelcol_exporter_sent_metric_points_total",
                "Metric points successfully sent to destination.",
                l(),
            ),
            sent_samples: reg.counter(
                "otelcol_exporter_prometheusremotewrite_sent_samples_total",
                "Remote-write samples accepted by the destination.",
                l(),
            ),
            failed_points: reg.counter(
                "otelcol_exporter_send_failed_metric_points_total",
                "Metric points that failed to be sent to destination.",
                l(),
            ),
            enqueue_failed: reg.counter(
                "otelcol_exporter_enqueue_failed_metric_points_total",
                "Metric points that failed to be added to the sending queue.",
                l(),
            ),
            retries: reg.counter(
                "otelcol_exporter_prometheusremotewrite_retries_total",
                "Remote-write request attempts that failed retryably and were retried.",
                l(),
            ),
            queue_size: reg.gauge(
                "otelcol_exporter_queue_size",
                "Current size of the retry queue (in batches).",
                l(),
            ),
        }
    }
}

#[derive(Debug)]
struct Sender {
    id: String,
    client: reqwest::Client,
    endpoint: String,
    headers: Vec<(String, String)>,
    /// Adds the authenticator's header (bearer token, basic) to every request.
    auth: Option<Arc<dyn crate::extension::auth::ClientAuthenticator>>,
    retry: RetryConfig,
    metrics: Metrics,
    /// Requests queued or being sent.
    in_flight: AtomicUsize,
    /// The first error of a burst is logged, the rest only counted.
    logged_failure: AtomicBool,
    /// Where "queue full" / "recovered" is reported (the health_check extension).
    health: Mutex<Option<HealthState>>,
    /// Set while the queue is reported full.
    reported_full: AtomicBool,
}

enum Attempt {
    Ok,
    Retry(String, Option<Duration>),
    Permanent(String),
}

impl Sender {
    async fn attempt(&self, req: &EncodedRequest) -> Attempt {
        let mut r = self
            .client
            .post(&self.endpoint)
            .header("Content-Encoding", "snappy")
            .header("Content-Type", "application/x-protobuf")
            .header("X-Prometheus-Remote-Write-Version", "0.1.0")
            .body(req.body.clone());
        for (k, v) in &self.headers {
            r = r.header(k, v);
        }
        if let Some(a) = &self.auth {
            let (name, value) = a.header();
            r = r.header(name, value);
        }
        match r.send().await {
            Ok(resp) => {
                let status = resp.status();
                if status.is_success() {
                    return Attempt::Ok;
                }
                let retry_after = resp
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs);
                let body = resp.text().await.unwrap_or_default();
                let msg = format!(
                    "HTTP {status}: {}",
                    body.trim().chars().take(300).collect::<String>()
                );
                if status.is_server_error() || status.as_u16() == 429 {
                    Attempt::Retry(msg, retry_after)
                } else {
                    Attempt::Permanent(msg)
                }
            }
            Err(e) => Attempt::Retry(format!("request failed: {e}"), None),
        }
    }

    /// Logs and counts a request the endpoint refused permanently (it is dropped).
    fn rejected(&self, req: &EncodedRequest, msg: &str) {
        tracing::error!(exporter = %self.id, endpoint = %self.endpoint, samples = req.samples, error = %msg,
            "remote write rejected the request; dropping it (fix the data or the endpoint)");
        self.metrics.failed_points.add(req.points as u64);
    }

    /// Sends one request, retrying until success, a permanent error, the retry budget, or
    /// `stop`. Returns true when delivered.
    async fn send(&self, req: &EncodedRequest, stop: &CancellationToken) -> bool {
        let started = Instant::now();
        let mut backoff: Option<Backoff> = None;
        loop {
            match self.attempt(req).await {
                Attempt::Ok => {
                    self.metrics.sent_points.add(req.points as u64);
                    self.metrics.sent_samples.add(req.samples as u64);
                    if self.reported_full.swap(false, Ordering::AcqRel) {
                        if let Some(h) = self
                            .health
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .as_ref()
                        {
                            h.queue_recovered(&self.id);
                        }
                    }
                    if self.logged_failure.swap(false, Ordering::Relaxed) {
                        tracing::info!(exporter = %self.id, "remote write recovered");
                    }
                    return true;
                }
                Attempt::Permanent(msg) => {
                    self.rejected(req, &msg);
                    return false;
                }
                Attempt::Retry(msg, retry_after) => {
                    let budget = self.retry.max_elapsed_time;
                    if !self.retry.enabled || (!budget.is_zero() && started.elapsed() >= budget) {
                        tracing::error!(exporter = %self.id, endpoint = %self.endpoint, samples = req.samples, error = %msg,
                            "remote write failed and the retry budget is spent; dropping the request");
                        self.metrics.failed_points.add(req.points as u64);
                        return false;
                    }
                    if !self.logged_failure.swap(true, Ordering::Relaxed) {
                        tracing::warn!(exporter = %self.id, endpoint = %self.endpoint, error = %msg,
                            "remote write failed, retrying with backoff");
                    }
                    self.metrics.retries.add(1);
                    let wait = backoff
                        .get_or_insert_with(|| Backoff::new(&self.retry))
                        .next_delay()
                        .max(retry_after.unwrap_or_default());
                    tokio::select! {
                        _ = stop.cancelled() => {
                            self.metrics.failed_points.add(req.points as u64);
                            return false;
                        }
                        _ = tokio::time::sleep(wait) => {}
                    }
                }
            }
        }
    }
}

/// The `prometheusremotewrite` exporter.
#[derive(Debug)]
pub struct RemoteWriteExporter {
    id: String,
    translator: Mutex<Translator>,
    external: Labels,
    max_samples: usize,
    max_bytes: usize,
    sender: Arc<Sender>,
    queue: Option<mpsc::Sender<EncodedRequest>>,
    closing: AtomicBool,
    /// Cancels retries and workers once the shutdown deadline has passed.
    hard_stop: CancellationToken,
    workers: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl RemoteWriteExporter {
    /// Validates `config`, builds the HTTP client and starts the queue workers.
    ///
    /// # Errors
    /// Invalid configuration (unreadable TLS files included).
    pub fn start(
        id: &str,
        config: RemoteWriteConfig,
        cancel: &CancellationToken,
    ) -> Result<Arc<Self>, RemoteWriteError> {
        Self::start_with_auth(id, config, None, cancel)
    }

    /// [`Self::start`], with every request signed by `auth` (the client side of the
    /// authenticator extension that `config.auth` names).
    ///
    /// # Errors
    /// Invalid configuration (unreadable TLS files included).
    pub fn start_with_auth(
        id: &str,
        config: RemoteWriteConfig,
        auth: Option<Arc<dyn crate::extension::auth::ClientAuthenticator>>,
        cancel: &CancellationToken,
    ) -> Result<Arc<Self>, RemoteWriteError> {
        let err = |source| RemoteWriteError {
            id: id.to_string(),
            source,
        };
        config.validate().map_err(err)?;
        let client = config.client().map_err(err)?;
        let reg = SelfMetrics::global();
        let metrics = Metrics::new(reg, id);
        let sender = Arc::new(Sender {
            id: id.to_string(),
            client,
            endpoint: config.endpoint.clone(),
            headers: config
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            auth,
            retry: config.retry_on_failure.policy(),
            metrics,
            in_flight: AtomicUsize::new(0),
            logged_failure: AtomicBool::new(false),
            health: Mutex::new(None),
            reported_full: AtomicBool::new(false),
        });
        let hard_stop = cancel.child_token();
        let mut workers = Vec::new();
        let queue = if config.remote_write_queue.enabled {
            let q = &config.remote_write_queue;
            reg.gauge(
                "otelcol_exporter_queue_capacity",
                "Fixed capacity of the sending queue, in batches.",
                vec![("exporter", id.to_string())],
            )
            .set(q.queue_size as i64);
            let (tx, rx) = mpsc::channel::<EncodedRequest>(q.queue_size);
            let rx = Arc::new(tokio::sync::Mutex::new(rx));
            for _ in 0..q.num_consumers {
                let rx = rx.clone();
                let sender = sender.clone();
                let stop = hard_stop.clone();
                workers.push(tokio::spawn(async move {
                    loop {
                        let next = tokio::select! {
                            _ = stop.cancelled() => None,
                            r = async { rx.lock().await.recv().await } => r,
                        };
                        let Some(req) = next else { break };
                        sender.metrics.queue_size.add(-1);
                        let send = sender.send(&req, &stop);
                        if contain::catch("exporter", &sender.id, send).await.is_err() {
                            sender.metrics.failed_points.add(req.points as u64);
                        }
                        sender.in_flight.fetch_sub(1, Ordering::AcqRel);
                    }
                }));
            }
            Some(tx)
        } else {
            None
        };
        tracing::info!(exporter = %id, endpoint = %config.endpoint, "prometheusremotewrite exporter started");
        Ok(Arc::new(RemoteWriteExporter {
            id: id.to_string(),
            translator: Mutex::new(Translator::new(
                config.translate_options(),
                DropCounters::new(reg, id),
            )),
            external: config
                .external_labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            max_samples: config.max_samples_per_request,
            max_bytes: config.max_batch_size_bytes,
            sender,
            queue,
            closing: AtomicBool::new(false),
            hard_stop,
            workers: Mutex::new(workers),
        }))
    }

    /// Translates and encodes one OTLP batch into remote-write requests.
    pub fn encode(&self, req: &ExportMetricsServiceRequest) -> Vec<EncodedRequest> {
        let families = self
            .translator
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .translate(req);
        let series = proto::to_timeseries(&families, &self.external);
        proto::encode_requests(series, self.max_samples, self.max_bytes)
    }

    /// Reports "queue full" / "recovered" to `health` from now on.
    pub fn set_health(&self, health: HealthState) {
        *self.sender.health.lock().unwrap_or_else(|e| e.into_inner()) = Some(health);
    }

    /// Requests queued or being sent right now.
    pub fn in_flight(&self) -> usize {
        self.sender.in_flight.load(Ordering::Acquire)
    }

    async fn export(&self, req: ExportMetricsServiceRequest) -> Result<(), ConsumeError> {
        if self.closing.load(Ordering::Acquire) {
            return Err(ConsumeError::Refused {
                reason: format!("exporter {} is shutting down", self.id),
                retry_after: Duration::from_secs(1),
            });
        }
        let points = crate::translate::data_point_count(&req) as u64;
        let requests = self.encode(&req);
        if requests.is_empty() {
            return Ok(());
        }
        let Some(queue) = &self.queue else {
            // Synchronous mode: deliver (with retries) before answering.
            let mut ok = true;
            for r in &requests {
                ok &= self.sender.send(r, &self.hard_stop).await;
            }
            return if ok {
                Ok(())
            } else {
                Err(ConsumeError::Permanent(format!(
                    "exporter {}: remote write failed (see the error log)",
                    self.id
                )))
            };
        };
        // All requests of the batch or none, so a refused batch can be resent whole.
        match queue.try_reserve_many(requests.len()) {
            Ok(permits) => {
                self.sender
                    .in_flight
                    .fetch_add(requests.len(), Ordering::AcqRel);
                self.sender.metrics.queue_size.add(requests.len() as i64);
                for (permit, r) in permits.zip(requests) {
                    permit.send(r);
                }
                Ok(())
            }
            Err(_) => {
                self.sender.metrics.enqueue_failed.add(points);
                if !self.sender.reported_full.swap(true, Ordering::AcqRel) {
                    tracing::warn!(exporter = %self.id, "remote-write queue full; refusing batches until it drains");
                    if let Some(h) = self
                        .sender
                        .health
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .as_ref()
                    {
                        h.queue_full(&self.id);
                    }
                }
                Err(ConsumeError::Refused {
                    reason: format!("exporter {}: sending queue is full", self.id),
                    retry_after: Duration::from_secs(1),
                })
            }
        }
    }
}

impl Consumer for RemoteWriteExporter {
    fn consume(&self, data: Telemetry) -> ConsumeFuture<'_> {
        Box::pin(async move {
            match data {
                Telemetry::Metrics(req) => self.export(req).await,
                other => Err(ConsumeError::Permanent(format!(
                    "the prometheusremotewrite exporter takes metrics only, got {}",
                    other.signal()
                ))),
            }
        })
    }
}

impl Shutdown for RemoteWriteExporter {
    fn shutdown(&self, deadline: tokio::time::Instant) -> ShutdownFuture<'_> {
        Box::pin(async move {
            self.closing.store(true, Ordering::Release);
            while self.in_flight() > 0 && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let left = self.in_flight();
            if left > 0 {
                tracing::error!(exporter = %self.id, requests = left,
                    "shutdown deadline reached with remote-write requests undelivered; dropping them");
            }
            self.hard_stop.cancel();
            let workers: Vec<_> =
                std::mem::take(&mut *self.workers.lock().unwrap_or_else(|e| e.into_inner()));
            for w in workers {
                let _ = tokio::time::timeout(Duration::from_secs(1), w).await;
            }
        })
    }
}

#[cfg(test)]
mod tests;
