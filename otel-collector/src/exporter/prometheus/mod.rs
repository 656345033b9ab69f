//! Exporter `prometheus`: keeps the latest value of every translated series and serves them on a
//! scrape endpoint (default `0.0.0.0:8889`, path `/metrics`).
//!
//! - text exposition format 0.0.4, or OpenMetrics 1.0 (with exemplars carrying `trace_id` /
//!   `span_id`) when `enable_open_metrics` is set and the scraper asks for it in `Accept`;
//! - `namespace`, `const_labels`, `send_timestamps`, `metric_expiration` (series not updated for
//!   that long disappear), `resource_to_telemetry_conversion`, `add_metric_suffixes`, plus our
//!   `max_series_per_metric` (cardinality guard) and `delta_temporality` (`accumulate`/`drop`);
//! - a scrape renders straight into one buffer from pre-rendered label text (no per-sample
//!   allocation), so 100k series scrape in milliseconds.
//!
//! Tests: `cargo test -p otel-collector exporter::prometheus` (unit) and
//! `cargo test -p otel-collector --test prom_scrape` (a real Prometheus scrapes it).

mod render;

use crate::config::ComponentConfigError;
use crate::pipeline::{ConsumeError, ConsumeFuture, Consumer, Shutdown, ShutdownFuture, Telemetry};
use crate::telemetry::{Counter, SelfMetrics};
use crate::translate::model::add_label_if_absent;
use crate::translate::{
    names, DeltaMode, DropCounters, Family, Labels, MetricKind, Point, TargetInfo,
    TranslateOptions, Translator,
};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Content type of the text exposition format 0.0.4.
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
/// Content type of OpenMetrics 1.0.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// `resource_to_telemetry_conversion` block.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ResourceToTelemetry {
    /// Copy every resource attribute to every series as a label.
    pub enabled: bool,
}

/// Configuration of the `prometheus` exporter (upstream keys plus `max_series_per_metric` and
/// `delta_temporality`).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PrometheusExporterConfig {
    /// `host:port` of the scrape endpoint.
    pub endpoint: String,
    /// Prefix of every metric name.
    pub namespace: String,
    /// Labels added to every series (a series' own label of the same name wins).
    pub const_labels: BTreeMap<String, String>,
    /// Write each sample's timestamp (otherwise Prometheus uses the scrape time).
    pub send_timestamps: bool,
    /// Series not updated for this long are removed.
    #[serde(with = "humantime_serde")]
    pub metric_expiration: Duration,
    /// Resource attributes as labels.
    pub resource_to_telemetry_conversion: ResourceToTelemetry,
    /// Serve OpenMetrics (with exemplars) to scrapers that ask for it.
    pub enable_open_metrics: bool,
    /// Unit, `_total` and `_ratio` suffixes.
    pub add_metric_suffixes: bool,
    /// Cap of series per metric name (0: no cap); new series beyond it are dropped and counted.
    pub max_series_per_metric: usize,
    /// What to do with delta sums and histograms.
    pub delta_temporality: DeltaMode,
}

impl Default for PrometheusExporterConfig {
    fn default() -> Self {
        PrometheusExporterConfig {
            endpoint: "0.0.0.0:8889".into(),
            namespace: String::new(),
            const_labels: BTreeMap::new(),
            send_timestamps: false,
            metric_expiration: Duration::from_secs(300),
            resource_to_telemetry_conversion: ResourceToTelemetry::default(),
            enable_open_metrics: false,
            add_metric_suffixes: true,
            max_series_per_metric: 0,
            delta_temporality: DeltaMode::Accumulate,
        }
    }
}

impl PrometheusExporterConfig {
    /// Parses the YAML value of `exporters.prometheus[/name]`.
    ///
    /// # Errors
    /// The failing key and what to write instead.
    pub fn parse(value: serde_yaml::Value) -> Result<Self, ComponentConfigError> {
        super::parse_as(value)
    }

    /// Checks what serde cannot: endpoint syntax, a positive expiration, label names.
    ///
    /// # Errors
    /// Names the key and the fix.
    pub fn validate(&self) -> Result<(), ComponentConfigError> {
        resolve_endpoint(&self.endpoint)?;
        if self.metric_expiration.is_zero() {
            return Err(ComponentConfigError::new(
                "metric_expiration",
                "must be greater than 0 (for example 5m)",
            ));
        }
        for k in self.const_labels.keys() {
            if names::label_name(k).as_deref() != Some(k.as_str()) {
                return Err(ComponentConfigError::new(
                    format!("const_labels.{k}"),
                    "is not a valid Prometheus label name; use letters, digits and '_' and do not start with a digit",
                ));
            }
        }
        Ok(())
    }

    fn translate_options(&self) -> TranslateOptions {
        TranslateOptions {
            namespace: self.namespace.clone(),
            add_metric_suffixes: self.add_metric_suffixes,
            resource_to_telemetry: self.resource_to_telemetry_conversion.enabled,
            // Upstream's scrape exporter: every resource with a job or instance.
            target_info: TargetInfo::Identified,
            delta_mode: self.delta_temporality,
            max_series_per_metric: self.max_series_per_metric,
            state_expiry: self.metric_expiration,
            ..TranslateOptions::default()
        }
    }
}

/// Parses `host:port` (host may be empty for all interfaces, or a name such as `localhost`).
fn resolve_endpoint(endpoint: &str) -> Result<SocketAddr, ComponentConfigError> {
    use std::net::ToSocketAddrs;
    let e = if endpoint.starts_with(':') {
        format!("0.0.0.0{endpoint}")
    } else {
        endpoint.to_string()
    };
    e.to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| {
            ComponentConfigError::new(
                "endpoint",
                format!("{endpoint:?} is not host:port; write for example 0.0.0.0:8889"),
            )
        })
}

/// Errors starting the exporter.
#[derive(Debug, thiserror::Error)]
pub enum PrometheusExporterError {
    /// The configuration is invalid.
    #[error("exporter {id}: {source}")]
    Config {
        /// Exporter id.
        id: String,
        /// What is wrong.
        source: ComponentConfigError,
    },
    /// The endpoint could not be bound.
    #[error(
        "exporter {id}: cannot listen on {endpoint}: {source}; choose a free port in `endpoint`"
    )]
    Bind {
        /// Exporter id.
        id: String,
        /// Configured endpoint.
        endpoint: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// One stored series.
#[derive(Debug)]
pub(crate) struct SeriesState {
    /// `a="1",b="2"` (escaped), without braces.
    pub(crate) label_text: String,
    pub(crate) point: Point,
    pub(crate) seen: Instant,
}

/// One stored family.
#[derive(Debug)]
pub(crate) struct FamilyState {
    pub(crate) kind: MetricKind,
    pub(crate) help: String,
    pub(crate) series: HashMap<Labels, SeriesState>,
}

#[derive(Debug, Default)]
pub(crate) struct Store {
    pub(crate) families: BTreeMap<String, FamilyState>,
}

#[derive(Debug)]
struct Inner {
    config: PrometheusExporterConfig,
    const_labels: Labels,
    translator: Mutex<Translator>,
    store: Mutex<Store>,
    sent: Counter,
    series_gauge: crate::telemetry::Gauge,
}

/// The `prometheus` exporter: a [`Consumer`] that stores series, and the scrape handler.
#[derive(Clone, Debug)]
pub struct PrometheusExporter {
    inner: Arc<Inner>,
}

impl PrometheusExporter {
    /// A new exporter `id` with `config` (no server yet; see [`PrometheusExporter::start`]).
    pub fn new(id: &str, config: PrometheusExporterConfig) -> Self {
        let metrics = SelfMetrics::global();
        let translator =
            Translator::new(config.translate_options(), DropCounters::new(metrics, id));
        let const_labels = config
            .const_labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        PrometheusExporter {
            inner: Arc::new(Inner {
                const_labels,
                translator: Mutex::new(translator),
                store: Mutex::new(Store::default()),
                sent: metrics.counter(
                    "otelcol_exporter_sent_metric_points_total",
                    "Metric points successfully sent to destination.",
                    vec![("exporter", id.to_string())],
                ),
                series_gauge: metrics.gauge(
                    "otelcol_exporter_prometheus_series",
                    "Series held by the prometheus exporter after the last scrape.",
                    vec![("exporter", id.to_string())],
                ),
                config,
            }),
        }
    }

    /// Translates and stores one batch (what [`Consumer::consume`] does, synchronously).
    pub fn ingest(
        &self,
        req: &opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest,
    ) {
        let families = lock(&self.inner.translator).translate(req);
        self.store(families);
    }

    fn store(&self, families: Vec<Family>) {
        let now = Instant::now();
        let mut n = 0u64;
        let mut store = lock(&self.inner.store);
        for fam in families {
            let state = store
                .families
                .entry(fam.name)
                .or_insert_with(|| FamilyState {
                    kind: fam.kind,
                    help: String::new(),
                    series: HashMap::new(),
                });
            state.kind = fam.kind;
            if !fam.help.is_empty() {
                state.help = fam.help;
            }
            for mut point in fam.points {
                n += 1;
                for (k, v) in &self.inner.const_labels {
                    add_label_if_absent(&mut point.labels, k, v.clone());
                }
                if point.stale {
                    state.series.remove(&point.labels);
                    continue;
                }
                match state.series.get_mut(&point.labels) {
                    Some(existing) => {
                        // An older point than the one held (out of order) does not replace it.
                        if point.timestamp_ms >= existing.point.timestamp_ms {
                            // Exemplars are "the latest known": a point that brings none keeps
                            // the previous ones (SDKs reset their reservoirs at each collection).
                            if point.exemplars.is_empty() {
                                point.exemplars = std::mem::take(&mut existing.point.exemplars);
                            }
                            existing.point = point;
                        }
                        existing.seen = now;
                    }
                    None => {
                        let label_text = render::label_text(&point.labels);
                        state.series.insert(
                            point.labels.clone(),
                            SeriesState {
                                label_text,
                                point,
                                seen: now,
                            },
                        );
                    }
                }
            }
        }
        self.inner.sent.add(n);
    }

    /// Removes series not updated within `metric_expiration`; returns how many remain.
    pub fn expire(&self) -> usize {
        let cutoff = self.inner.config.metric_expiration;
        let now = Instant::now();
        let mut store = lock(&self.inner.store);
        let mut total = 0;
        store.families.retain(|_, f| {
            f.series.retain(|_, s| now.duration_since(s.seen) < cutoff);
            total += f.series.len();
            !f.series.is_empty()
        });
        self.inner.series_gauge.set(total as i64);
        total
    }

    /// Renders every live series, in OpenMetrics when `open_metrics`, else text 0.0.4.
    pub fn render(&self, open_metrics: bool) -> String {
        self.expire();
        let store = lock(&self.inner.store);
        render::render(&store, open_metrics, self.inner.config.send_timestamps)
    }

    /// The scrape router: `GET /metrics`.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/metrics", get(scrape))
            .with_state(self.clone())
    }

    /// Binds the endpoint and serves scrapes until `cancel` fires or the returned handle is shut
    /// down. Returns the exporter (the consumer), the server handle and the bound address.
    ///
    /// # Errors
    /// Invalid config, or the endpoint cannot be bound.
    pub async fn start(
        id: &str,
        config: PrometheusExporterConfig,
        cancel: CancellationToken,
    ) -> Result<(PrometheusExporter, Arc<PrometheusServer>, SocketAddr), PrometheusExporterError>
    {
        config
            .validate()
            .map_err(|source| PrometheusExporterError::Config {
                id: id.to_string(),
                source,
            })?;
        let addr = resolve_endpoint(&config.endpoint).map_err(|source| {
            PrometheusExporterError::Config {
                id: id.to_string(),
                source,
            }
        })?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| PrometheusExporterError::Bind {
                id: id.to_string(),
                endpoint: config.endpoint.clone(),
                source,
            })?;
        let local = listener.local_addr().unwrap_or(addr);
        let exporter = PrometheusExporter::new(id, config);
        let stop = cancel.child_token();
        let router = exporter.router();
        let server_stop = stop.clone();
        let sid = id.to_string();
        let task = tokio::spawn(async move {
            let res = axum::serve(listener, router)
                .with_graceful_shutdown(async move { server_stop.cancelled().await })
                .await;
            if let Err(e) = res {
                tracing::error!(exporter = %sid, error = %e, "prometheus scrape server failed");
            }
        });
        tracing::info!(exporter = %id, address = %local, "prometheus exporter serving /metrics");
        Ok((
            exporter,
            Arc::new(PrometheusServer {
                stop,
                task: Mutex::new(Some(task)),
            }),
            local,
        ))
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

async fn scrape(State(exporter): State<PrometheusExporter>, headers: HeaderMap) -> Response {
    let wants_om = exporter.inner.config.enable_open_metrics
        && headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("application/openmetrics-text"));
    let body = tokio::task::spawn_blocking(move || exporter.render(wants_om)).await;
    match body {
        Ok(body) => {
            let ct = if wants_om {
                OPENMETRICS_CONTENT_TYPE
            } else {
                TEXT_CONTENT_TYPE
            };
            ([(header::CONTENT_TYPE, ct)], body).into_response()
        }
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("render failed: {e}"),
        )
            .into_response(),
    }
}

impl Consumer for PrometheusExporter {
    fn consume(&self, data: Telemetry) -> ConsumeFuture<'_> {
        Box::pin(async move {
            match data {
                Telemetry::Metrics(req) => {
                    self.ingest(&req);
                    Ok(())
                }
                other => Err(ConsumeError::Permanent(format!(
                    "the prometheus exporter takes metrics only, got {}",
                    other.signal()
                ))),
            }
        })
    }
}

/// The running scrape server.
#[derive(Debug)]
pub struct PrometheusServer {
    stop: CancellationToken,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Shutdown for PrometheusServer {
    fn shutdown(&self, deadline: tokio::time::Instant) -> ShutdownFuture<'_> {
        Box::pin(async move {
            self.stop.cancel();
            let task = lock(&self.task).take();
            if let Some(task) = task {
                if tokio::time::timeout_at(deadline, task).await.is_err() {
                    tracing::warn!("prometheus scrape server did not stop by the deadline");
                }
            }
        })
    }
}

#[cfg(test)]
mod tests;
