//! The `service_graph` connector (alias `servicegraph`, upstream's type name): traces →
//! metrics describing the calls between services.
//!
//! A CLIENT or PRODUCER span opens an edge keyed by (trace id, its span id); a SERVER or
//! CONSUMER span opens or completes the edge keyed by (trace id, its parent span id), so the
//! two halves pair whatever order and whichever requests they arrive in. An edge completes when
//! both services are known (a client span carrying a `database_name_attributes` attribute
//! completes at once: `connection_type="database"`, server = the database name). Edges not
//! completed within `store.ttl` expire: a server span without parent gets client `user`, a
//! client span without server gets the first `virtual_node_peer_attributes` value (else
//! `unknown`), both with `connection_type="virtual_node"`; other expired edges are only
//! counted. At most `store.max_items` edges wait; spans that would open more are dropped and
//! counted.
//!
//! Emitted (cumulative, every `metrics_flush_interval`; after every request when `0`):
//! `traces_service_graph_request_total`, `traces_service_graph_request_failed_total` (edges with
//! an error on either side), `traces_service_graph_request_server` and `..._client` histograms in
//! seconds, labels `client`, `server`, `connection_type`, `failed` and `client_<dim>` /
//! `server_<dim>`. Own metrics: `otelcol_connector_servicegraph_total_edges_total`,
//! `..._expired_edges_total`, `..._dropped_spans_total`.
//!
//! Tests: `cargo test -p otel-collector connector::servicegraph`.

use super::derive::{
    duration_list, duration_nanos, find, kv, kv_str, service_spans, unix_nanos, Derive,
    ExplicitHistogram,
};
use crate::config::{duration, ComponentConfigError};
use crate::telemetry::{Counter, SelfMetrics};
use crate::translate::any_value_string;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    metric::Data, number_data_point, AggregationTemporality, Histogram, Metric, NumberDataPoint,
    ResourceMetrics, ScopeMetrics, Sum,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use opentelemetry_proto::tonic::trace::v1::Span;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// The instrumentation scope of the metrics emitted (upstream's).
const SCOPE: &str = "servicegraphconnector";
/// Upstream's default latency buckets, in milliseconds.
const DEFAULT_BUCKETS_MS: &[u64] = &[
    2, 4, 6, 8, 10, 50, 100, 200, 400, 800, 1000, 1400, 2000, 5000, 10000, 15000,
];

/// `store`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// How long an edge waits for its other half (2s).
    #[serde(with = "duration")]
    pub ttl: Duration,
    /// Most edges waiting at once (1000).
    pub max_items: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            ttl: Duration::from_secs(2),
            max_items: 1000,
        }
    }
}

/// `connectors.service_graph` / `connectors.servicegraph`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServiceGraphConfig {
    /// Latency histogram bucket bounds as durations (upstream's 2ms … 15s by default).
    #[serde(with = "duration_list")]
    pub latency_histogram_buckets: Vec<Duration>,
    /// Span (then resource) attributes added as `client_<dim>` / `server_<dim>` labels.
    pub dimensions: Vec<String>,
    /// The store of edges waiting for their other half.
    pub store: StoreConfig,
    /// How often expired edges are looked for (2s).
    #[serde(with = "duration")]
    pub store_expiration_loop: Duration,
    /// Client span attributes naming an uninstrumented server, first found wins.
    pub virtual_node_peer_attributes: Vec<String>,
    /// Add `virtual_node="client"|"server"` to edges with a virtual node.
    pub virtual_node_extra_label: bool,
    /// Client span attributes that make an edge a database call (server = their value).
    pub database_name_attributes: Vec<String>,
    /// How often the metrics are sent (60s); `0` = after every request.
    #[serde(with = "duration")]
    pub metrics_flush_interval: Duration,
}

impl Default for ServiceGraphConfig {
    fn default() -> Self {
        ServiceGraphConfig {
            latency_histogram_buckets: Vec::new(),
            dimensions: Vec::new(),
            store: StoreConfig::default(),
            store_expiration_loop: Duration::from_secs(2),
            virtual_node_peer_attributes: vec![
                "peer.service".into(),
                "db.name".into(),
                "db.system".into(),
            ],
            virtual_node_extra_label: false,
            database_name_attributes: vec!["db.name".into()],
            metrics_flush_interval: Duration::from_secs(60),
        }
    }
}

impl ServiceGraphConfig {
    /// Checks what serde cannot.
    ///
    /// # Errors
    /// Unsorted buckets, a zero ttl, max_items or expiration loop.
    pub fn validate(&self) -> Result<(), ComponentConfigError> {
        if self
            .latency_histogram_buckets
            .windows(2)
            .any(|w| w[0] >= w[1])
        {
            return Err(ComponentConfigError::new(
                "latency_histogram_buckets",
                "buckets must be strictly increasing, like [10ms, 100ms, 1s]",
            ));
        }
        for (path, zero) in [
            ("store.ttl", self.store.ttl.is_zero()),
            ("store.max_items", self.store.max_items == 0),
            (
                "store_expiration_loop",
                self.store_expiration_loop.is_zero(),
            ),
        ] {
            if zero {
                return Err(ComponentConfigError::new(path, "must be positive"));
            }
        }
        Ok(())
    }
}

/// What kind of connection an edge is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum ConnectionType {
    /// Plain request (label value empty, as upstream).
    Unknown,
    /// Producer → consumer.
    MessagingSystem,
    /// Client span with a database name attribute.
    Database,
    /// One side is not instrumented.
    VirtualNode,
}

impl ConnectionType {
    fn label(self) -> &'static str {
        match self {
            ConnectionType::Unknown => "",
            ConnectionType::MessagingSystem => "messaging_system",
            ConnectionType::Database => "database",
            ConnectionType::VirtualNode => "virtual_node",
        }
    }
}

/// (trace id, span id of the client side), copied out of the span (no allocation).
type EdgeKey = ([u8; 16], [u8; 8]);

/// `bytes` in an array of `N`, zero-padded or cut (ids of another length are invalid OTLP,
/// still paired consistently).
fn id<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    let n = bytes.len().min(N);
    out[..n].copy_from_slice(&bytes[..n]);
    out
}

/// One edge waiting for its other half.
#[derive(Debug)]
struct Edge {
    client: Option<Arc<str>>,
    server: Option<Arc<str>>,
    client_latency: Option<f64>,
    server_latency: Option<f64>,
    failed: bool,
    connection: ConnectionType,
    dims: BTreeMap<String, String>,
    peer: Option<String>,
    /// The server span had no parent (so its caller is a user).
    root: bool,
    created: Instant,
}

impl Edge {
    fn new(created: Instant, root: bool) -> Self {
        Edge {
            client: None,
            server: None,
            client_latency: None,
            server_latency: None,
            failed: false,
            connection: ConnectionType::Unknown,
            dims: BTreeMap::new(),
            peer: None,
            root,
            created,
        }
    }

    fn complete(&self) -> bool {
        self.client.is_some() && self.server.is_some()
    }
}

/// The series key of a completed edge: every label.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct SeriesKey {
    client: Arc<str>,
    server: Arc<str>,
    connection: &'static str,
    failed: bool,
    virtual_node: Option<&'static str>,
    dims: Vec<(String, String)>,
}

#[derive(Debug)]
struct Series {
    total: u64,
    failed: u64,
    server: ExplicitHistogram,
    client: ExplicitHistogram,
    start: u64,
}

#[derive(Debug, Default)]
struct State {
    edges: HashMap<EdgeKey, Edge>,
    order: VecDeque<(EdgeKey, Instant)>,
    series: HashMap<SeriesKey, Series>,
}

/// The service graph aggregator.
pub(crate) struct ServiceGraph {
    config: ServiceGraphConfig,
    bounds: Arc<[f64]>,
    state: Mutex<State>,
    total_edges: Counter,
    expired_edges: Counter,
    dropped_spans: Counter,
}

fn latency_seconds(span: &Span) -> f64 {
    duration_nanos(span.start_time_unix_nano, span.end_time_unix_nano) as f64 / 1e9
}

fn is_error(span: &Span) -> bool {
    span.status
        .as_ref()
        .is_some_and(|s| s.code == StatusCode::Error as i32)
}

fn text(v: &any_value::Value) -> String {
    any_value_string(Some(&AnyValue {
        value: Some(v.clone()),
    }))
}

impl ServiceGraph {
    /// An empty aggregator for `config` (already validated), its own metrics labelled `id`.
    pub(crate) fn new(id: &str, config: &ServiceGraphConfig) -> Self {
        let bounds: Vec<f64> = if config.latency_histogram_buckets.is_empty() {
            DEFAULT_BUCKETS_MS
                .iter()
                .map(|ms| *ms as f64 / 1000.0)
                .collect()
        } else {
            config
                .latency_histogram_buckets
                .iter()
                .map(|d| d.as_secs_f64())
                .collect()
        };
        let m = SelfMetrics::global();
        let labels = vec![("connector", id.to_string())];
        ServiceGraph {
            config: config.clone(),
            bounds: Arc::from(bounds),
            state: Mutex::new(State::default()),
            total_edges: m.counter(
                "otelcol_connector_servicegraph_total_edges_total",
                "Edges opened in the service graph store.",
                labels.clone(),
            ),
            expired_edges: m.counter(
                "otelcol_connector_servicegraph_expired_edges_total",
                "Edges that expired before both halves arrived.",
                labels.clone(),
            ),
            dropped_spans: m.counter(
                "otelcol_connector_servicegraph_dropped_spans_total",
                "Spans dropped because the store held store.max_items edges.",
                labels,
            ),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Edges waiting for their other half (tests).
    #[cfg(test)]
    pub(crate) fn pending(&self) -> usize {
        self.lock().edges.len()
    }

    fn dimension_values(&self, prefix: &str, span: &Span, res: &[KeyValue], edge: &mut Edge) {
        for d in &self.config.dimensions {
            if let Some(v) = find(&span.attributes, d).or_else(|| find(res, d)) {
                edge.dims.insert(format!("{prefix}_{d}"), text(v));
            }
        }
    }

    fn first_attr(keys: &[String], span: &Span, res: &[KeyValue]) -> Option<String> {
        keys.iter()
            .find_map(|k| find(&span.attributes, k).or_else(|| find(res, k)))
            .map(text)
    }

    /// Adds `span`'s half to its edge; a completed edge is recorded and removed.
    fn ingest_span(
        &self,
        st: &mut State,
        service: &Arc<str>,
        res: &[KeyValue],
        span: &Span,
        now: Instant,
    ) {
        let kind = SpanKind::try_from(span.kind).unwrap_or(SpanKind::Unspecified);
        let client_side = matches!(kind, SpanKind::Client | SpanKind::Producer);
        let server_side = matches!(kind, SpanKind::Server | SpanKind::Consumer);
        if !client_side && !server_side {
            return;
        }
        let parent_id = if client_side {
            &span.span_id
        } else {
            &span.parent_span_id
        };
        let root = server_side && parent_id.iter().all(|b| *b == 0);
        let key: EdgeKey = (id(&span.trace_id), id(parent_id));
        if !st.edges.contains_key(&key) {
            if st.edges.len() >= self.config.store.max_items {
                self.dropped_spans.add(1);
                return;
            }
            st.edges.insert(key, Edge::new(now, root));
            st.order.push_back((key, now));
            self.total_edges.add(1);
        }
        let Some(edge) = st.edges.get_mut(&key) else {
            return;
        };
        let messaging = matches!(kind, SpanKind::Producer | SpanKind::Consumer);
        if messaging {
            edge.connection = ConnectionType::MessagingSystem;
        }
        edge.failed |= is_error(span);
        if client_side {
            edge.client = Some(service.clone());
            edge.client_latency = Some(latency_seconds(span));
            self.dimension_values("client", span, res, edge);
            edge.peer = Self::first_attr(&self.config.virtual_node_peer_attributes, span, res);
            if let Some(db) = Self::first_attr(&self.config.database_name_attributes, span, res) {
                edge.connection = ConnectionType::Database;
                edge.server = Some(Arc::from(db));
                edge.server_latency = Some(latency_seconds(span));
            }
        } else {
            edge.server = Some(service.clone());
            edge.server_latency = Some(latency_seconds(span));
            self.dimension_values("server", span, res, edge);
        }
        if edge.complete() {
            if let Some(e) = st.edges.remove(&key) {
                self.record(st, e, None);
            }
        }
    }

    /// Counts a completed edge into its series.
    fn record(&self, st: &mut State, e: Edge, virtual_node: Option<&'static str>) {
        let key = SeriesKey {
            client: e.client.unwrap_or_else(|| Arc::from("")),
            server: e.server.unwrap_or_else(|| Arc::from("")),
            connection: e.connection.label(),
            failed: e.failed,
            virtual_node: virtual_node.filter(|_| self.config.virtual_node_extra_label),
            dims: e.dims.into_iter().collect(),
        };
        let bounds = &self.bounds;
        let s = st.series.entry(key).or_insert_with(|| Series {
            total: 0,
            failed: 0,
            server: ExplicitHistogram::new(bounds.clone()),
            client: ExplicitHistogram::new(bounds.clone()),
            start: unix_nanos(),
        });
        s.total += 1;
        if e.failed {
            s.failed += 1;
        }
        // As upstream, the side a virtual node stands for records a latency of zero.
        s.server.record(e.server_latency.unwrap_or(0.0));
        s.client.record(e.client_latency.unwrap_or(0.0));
    }

    /// Expires edges older than `store.ttl` at `now`, completing those with a virtual node.
    pub(crate) fn expire(&self, now: Instant) {
        let ttl = self.config.store.ttl;
        let mut st = self.lock();
        while let Some((_, created)) = st.order.front() {
            if now.saturating_duration_since(*created) < ttl {
                break;
            }
            let Some((key, created)) = st.order.pop_front() else {
                break;
            };
            // Completed edges were removed already; a key reused later has a newer `created`.
            let live = st.edges.get(&key).is_some_and(|e| e.created == created);
            if !live {
                continue;
            }
            let Some(mut e) = st.edges.remove(&key) else {
                continue;
            };
            self.expired_edges.add(1);
            if e.client.is_none() && e.root {
                e.client = Some(Arc::from("user"));
                e.connection = ConnectionType::VirtualNode;
                self.record(&mut st, e, Some("client"));
            } else if e.server.is_none() && e.client.is_some() {
                e.server = Some(Arc::from(e.peer.take().unwrap_or_else(|| "unknown".into())));
                e.connection = ConnectionType::VirtualNode;
                self.record(&mut st, e, Some("server"));
            }
        }
    }

    fn labels(k: &SeriesKey) -> Vec<KeyValue> {
        let mut out = vec![
            kv_str("client", &k.client),
            kv_str("server", &k.server),
            kv_str("connection_type", k.connection),
            kv("failed", any_value::Value::BoolValue(k.failed)),
        ];
        if let Some(v) = k.virtual_node {
            out.push(kv_str("virtual_node", v));
        }
        out.extend(k.dims.iter().map(|(d, v)| kv_str(d, v)));
        out
    }
}

fn counter(name: &str, points: Vec<NumberDataPoint>) -> Metric {
    Metric {
        name: name.into(),
        description: String::new(),
        unit: String::new(),
        metadata: Vec::new(),
        data: Some(Data::Sum(Sum {
            data_points: points,
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
            is_monotonic: true,
        })),
    }
}

fn histogram(
    name: &str,
    points: Vec<opentelemetry_proto::tonic::metrics::v1::HistogramDataPoint>,
) -> Metric {
    Metric {
        name: name.into(),
        description: String::new(),
        unit: "s".into(),
        metadata: Vec::new(),
        data: Some(Data::Histogram(Histogram {
            data_points: points,
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
        })),
    }
}

impl Derive for ServiceGraph {
    fn ingest(&self, req: &ExportTraceServiceRequest, now: Instant) {
        let mut st = self.lock();
        for (res, service, spans) in service_spans(req) {
            let service: Arc<str> = Arc::from(service);
            for span in spans {
                self.ingest_span(&mut st, &service, res, span, now);
            }
        }
    }

    fn tick(&self, now: Instant) {
        self.expire(now);
    }

    fn collect(&self, now: Instant, unix: u64) -> Option<ExportMetricsServiceRequest> {
        self.expire(now);
        let st = self.lock();
        if st.series.is_empty() {
            return None;
        }
        let mut keys: Vec<&SeriesKey> = st.series.keys().collect();
        keys.sort();
        let point = |k: &SeriesKey, s: &Series, v: u64| NumberDataPoint {
            attributes: Self::labels(k),
            start_time_unix_nano: s.start,
            time_unix_nano: unix,
            exemplars: Vec::new(),
            flags: 0,
            value: Some(number_data_point::Value::AsInt(v as i64)),
        };
        let (mut total, mut failed, mut server, mut client) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for k in keys {
            let s = &st.series[k];
            total.push(point(k, s, s.total));
            if s.failed > 0 {
                failed.push(point(k, s, s.failed));
            }
            server.push(s.server.point(Self::labels(k), s.start, unix));
            client.push(s.client.point(Self::labels(k), s.start, unix));
        }
        let mut metrics = vec![counter("traces_service_graph_request_total", total)];
        if !failed.is_empty() {
            metrics.push(counter("traces_service_graph_request_failed_total", failed));
        }
        metrics.push(histogram("traces_service_graph_request_server", server));
        metrics.push(histogram("traces_service_graph_request_client", client));
        Some(ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: Some(Resource::default()),
                scope_metrics: vec![ScopeMetrics {
                    scope: Some(InstrumentationScope {
                        name: SCOPE.into(),
                        ..Default::default()
                    }),
                    metrics,
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            }],
        })
    }
}

#[cfg(test)]
mod tests;
