//! The `span_metrics` connector (alias `spanmetrics`, upstream's type name): traces → metrics.
//! Every span counts in `<namespace>.calls` (monotonic sum) and `<namespace>.duration`
//! (histogram in `histogram.unit`), per resource and per dimension set (`service.name`,
//! `span.name`, `span.kind`, `status.code`, then the configured `dimensions`); span events
//! optionally count in `<namespace>.events`. The span's resource becomes the metrics' resource,
//! so the Prometheus exporter derives `job`/`instance` from it. Flushed every
//! `metrics_flush_interval`, cumulative (all live series) or delta (series updated since the
//! last flush, then forgotten).
//!
//! Default unit: `ms`, as upstream without its `connector.spanmetrics.useSecondAsDefaultMetricsUnit`
//! feature gate (Prometheus: `traces_span_metrics_duration_milliseconds_*`); set `unit: s` for
//! `_seconds_*`, as our sample config and dashboards do.
//!
//! Tests: `cargo test -p otel-collector connector::spanmetrics`.

use super::derive::{
    duration_list, duration_nanos, encode_value, find, kv, kv_str, service_spans, unix_nanos,
    Derive, ExplicitHistogram,
};
use crate::config::{duration, ComponentConfigError};
use crate::telemetry::{Counter, SelfMetrics};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    exemplar, exponential_histogram_data_point::Buckets, metric::Data, number_data_point,
    AggregationTemporality, Exemplar, ExponentialHistogram, ExponentialHistogramDataPoint,
    Histogram, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use opentelemetry_proto::tonic::trace::v1::Span;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// Upstream's default explicit buckets, in milliseconds.
const DEFAULT_BUCKETS_MS: &[u64] = &[
    2, 4, 6, 8, 10, 50, 100, 200, 400, 800, 1000, 1400, 2000, 5000, 10000, 15000,
];
/// The instrumentation scope of the metrics emitted (upstream's).
const SCOPE: &str = "spanmetricsconnector";
/// The default dimensions, in upstream's order.
const DEFAULT_DIMENSIONS: [&str; 4] = ["service.name", "span.name", "span.kind", "status.code"];
/// Share of the series evicted at once when `dimensions_cache_size` is reached.
const EVICT_SHARE: usize = 10;

/// The unit of the duration histogram.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
pub enum Unit {
    /// Milliseconds (upstream's default; ours too).
    #[default]
    #[serde(rename = "ms")]
    Milliseconds,
    /// Seconds.
    #[serde(rename = "s")]
    Seconds,
}

impl Unit {
    fn symbol(self) -> &'static str {
        match self {
            Unit::Milliseconds => "ms",
            Unit::Seconds => "s",
        }
    }

    fn nanos_per_unit(self) -> f64 {
        match self {
            Unit::Milliseconds => 1e6,
            Unit::Seconds => 1e9,
        }
    }
}

/// `histogram.explicit`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExplicitConfig {
    /// Bucket upper bounds as durations (`[2ms, 4ms, 1s]`); empty = upstream's defaults.
    #[serde(with = "duration_list")]
    pub buckets: Vec<Duration>,
}

/// `histogram.exponential`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExponentialConfig {
    /// Largest number of positive buckets; the scale drops until the values fit (160).
    pub max_size: u32,
}

impl Default for ExponentialConfig {
    fn default() -> Self {
        ExponentialConfig { max_size: 160 }
    }
}

/// `histogram`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HistogramConfig {
    /// No duration histogram at all (calls only).
    pub disable: bool,
    /// `ms` (default) or `s`.
    pub unit: Unit,
    /// Explicit buckets (the default kind).
    pub explicit: Option<ExplicitConfig>,
    /// Base-2 exponential buckets instead.
    pub exponential: Option<ExponentialConfig>,
}

/// One extra dimension: an attribute looked up in the span's attributes, then its resource's.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Dimension {
    /// Attribute key (also the data point attribute's key).
    pub name: String,
    /// Value used when neither the span nor the resource has it; without one the dimension is
    /// left out of that series.
    #[serde(default)]
    pub default: Option<String>,
}

/// `aggregation_temporality`, with upstream's spelling.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
pub enum Temporality {
    /// Totals since the series started (default).
    #[default]
    #[serde(rename = "AGGREGATION_TEMPORALITY_CUMULATIVE")]
    Cumulative,
    /// Changes since the last flush.
    #[serde(rename = "AGGREGATION_TEMPORALITY_DELTA")]
    Delta,
}

/// `exemplars`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExemplarsConfig {
    /// Attach exemplars (trace id, span id, duration) to the duration histogram.
    pub enabled: bool,
    /// Most exemplars per data point and flush (`0` = no limit); default 5.
    pub max_per_data_point: usize,
}

impl Default for ExemplarsConfig {
    fn default() -> Self {
        ExemplarsConfig {
            enabled: false,
            max_per_data_point: 5,
        }
    }
}

/// `events`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct EventsConfig {
    /// Count span events in `<namespace>.events`.
    pub enabled: bool,
    /// Extra dimensions of the events metric, looked up in the event's attributes, then the
    /// span's, then the resource's.
    pub dimensions: Vec<Dimension>,
}

/// `connectors.span_metrics` / `connectors.spanmetrics`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpanMetricsConfig {
    /// The duration histogram.
    pub histogram: HistogramConfig,
    /// Extra dimensions after the default four.
    pub dimensions: Vec<Dimension>,
    /// Default dimensions to leave out (`status.code`, ...).
    pub exclude_dimensions: Vec<String>,
    /// Most series held (calls/duration and events together); when reached, the least
    /// recently updated tenth is forgotten (counted in
    /// `otelcol_connector_spanmetrics_evicted_series_total`). Default 1000, as upstream.
    pub dimensions_cache_size: usize,
    /// Cumulative (default) or delta.
    pub aggregation_temporality: Temporality,
    /// How often the metrics are sent (60s).
    #[serde(with = "duration")]
    pub metrics_flush_interval: Duration,
    /// Series not updated for this long are dropped (cumulative only); `0` = never (default).
    #[serde(with = "duration")]
    pub metrics_expiration: Duration,
    /// Exemplars on the duration histogram.
    pub exemplars: ExemplarsConfig,
    /// Prefix of the metric names (`traces.span.metrics`).
    pub namespace: String,
    /// Resource attributes whose values tell resources apart (default: all of them); the
    /// first resource seen with a key is the one emitted.
    pub resource_metrics_key_attributes: Vec<String>,
    /// Span event counting.
    pub events: EventsConfig,
}

impl Default for SpanMetricsConfig {
    fn default() -> Self {
        SpanMetricsConfig {
            histogram: HistogramConfig::default(),
            dimensions: Vec::new(),
            exclude_dimensions: Vec::new(),
            dimensions_cache_size: 1000,
            aggregation_temporality: Temporality::Cumulative,
            metrics_flush_interval: Duration::from_secs(60),
            metrics_expiration: Duration::ZERO,
            exemplars: ExemplarsConfig::default(),
            namespace: "traces.span.metrics".into(),
            resource_metrics_key_attributes: Vec::new(),
            events: EventsConfig::default(),
        }
    }
}

impl SpanMetricsConfig {
    /// Checks what serde cannot.
    ///
    /// # Errors
    /// Both histogram kinds set, a dimension listed twice or clashing with a default one, an
    /// unknown excluded dimension, a zero cache size or flush interval, or unsorted buckets.
    pub fn validate(&self) -> Result<(), ComponentConfigError> {
        let h = &self.histogram;
        if h.explicit.is_some() && h.exponential.is_some() {
            return Err(ComponentConfigError::new(
                "histogram",
                "set either `explicit` or `exponential`, not both",
            ));
        }
        if let Some(e) = &h.explicit {
            if e.buckets.windows(2).any(|w| w[0] >= w[1]) {
                return Err(ComponentConfigError::new(
                    "histogram.explicit.buckets",
                    "buckets must be strictly increasing, like [2ms, 4ms, 6ms]",
                ));
            }
        }
        if h.exponential.as_ref().is_some_and(|e| e.max_size < 2) {
            return Err(ComponentConfigError::new(
                "histogram.exponential.max_size",
                "must be at least 2 (upstream's default is 160)",
            ));
        }
        for x in &self.exclude_dimensions {
            if !DEFAULT_DIMENSIONS.contains(&x.as_str()) {
                return Err(ComponentConfigError::new(
                    "exclude_dimensions",
                    format!(
                        "`{x}` is not a default dimension; these can be excluded: {}",
                        DEFAULT_DIMENSIONS.join(", ")
                    ),
                ));
            }
        }
        check_dimensions("dimensions", &self.dimensions)?;
        check_dimensions("events.dimensions", &self.events.dimensions)?;
        if self.dimensions_cache_size == 0 {
            return Err(ComponentConfigError::new(
                "dimensions_cache_size",
                "must be positive (default 1000)",
            ));
        }
        if self.metrics_flush_interval.is_zero() {
            return Err(ComponentConfigError::new(
                "metrics_flush_interval",
                "must be positive, like `15s` (default 60s)",
            ));
        }
        Ok(())
    }
}

fn check_dimensions(path: &str, dims: &[Dimension]) -> Result<(), ComponentConfigError> {
    let mut seen: Vec<&str> = DEFAULT_DIMENSIONS.to_vec();
    for d in dims {
        if seen.contains(&d.name.as_str()) {
            return Err(ComponentConfigError::new(
                path,
                format!(
                    "dimension `{}` is listed twice or is a default one; list it once",
                    d.name
                ),
            ));
        }
        seen.push(&d.name);
    }
    Ok(())
}

/// A base-2 exponential histogram of positive values (durations), downscaled to fit
/// `max_size` buckets.
#[derive(Debug, Clone)]
struct ExpoHistogram {
    max_size: usize,
    scale: i32,
    offset: i64,
    counts: Vec<u64>,
    zero: u64,
    count: u64,
    sum: f64,
    min: f64,
    max: f64,
    exemplars: Vec<Exemplar>,
}

/// The finest scale used (upstream's).
const MAX_SCALE: i32 = 20;

impl ExpoHistogram {
    fn new(max_size: usize) -> Self {
        ExpoHistogram {
            max_size,
            scale: MAX_SCALE,
            offset: 0,
            counts: Vec::new(),
            zero: 0,
            count: 0,
            sum: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            exemplars: Vec::new(),
        }
    }

    /// Bucket index of `v > 0` at `scale`: bucket `i` holds `(2^(i/2^scale), 2^((i+1)/2^scale)]`.
    fn index(v: f64, scale: i32) -> i64 {
        (v.log2() * 2f64.powi(scale)).ceil() as i64 - 1
    }

    fn record(&mut self, v: f64) {
        self.count += 1;
        self.sum += v;
        self.min = self.min.min(v);
        self.max = self.max.max(v);
        if v <= 0.0 {
            self.zero += 1;
            return;
        }
        let mut i = Self::index(v, self.scale);
        if self.counts.is_empty() {
            self.offset = i;
            self.counts.push(1);
            return;
        }
        let mut lo = self.offset.min(i);
        let mut hi = (self.offset + self.counts.len() as i64 - 1).max(i);
        let mut shift = 0;
        while hi - lo + 1 > self.max_size as i64 {
            lo >>= 1;
            hi >>= 1;
            shift += 1;
        }
        if shift > 0 {
            self.downscale(shift);
            i >>= shift;
        }
        if i < self.offset {
            let grow = (self.offset - i) as usize;
            self.counts.splice(0..0, std::iter::repeat_n(0, grow));
            self.offset = i;
        }
        let at = (i - self.offset) as usize;
        if at >= self.counts.len() {
            self.counts.resize(at + 1, 0);
        }
        self.counts[at] += 1;
    }

    fn downscale(&mut self, shift: i32) {
        let new_offset = self.offset >> shift;
        let mut merged: Vec<u64> = Vec::new();
        for (k, c) in self.counts.iter().enumerate() {
            let at = (((self.offset + k as i64) >> shift) - new_offset) as usize;
            if at >= merged.len() {
                merged.resize(at + 1, 0);
            }
            merged[at] += c;
        }
        self.counts = merged;
        self.offset = new_offset;
        self.scale -= shift;
    }

    fn point(
        &self,
        attributes: Vec<KeyValue>,
        start: u64,
        now: u64,
    ) -> ExponentialHistogramDataPoint {
        ExponentialHistogramDataPoint {
            attributes,
            start_time_unix_nano: start,
            time_unix_nano: now,
            count: self.count,
            sum: Some(self.sum),
            scale: self.scale,
            zero_count: self.zero,
            positive: Some(Buckets {
                offset: self.offset as i32,
                bucket_counts: self.counts.clone(),
            }),
            negative: Some(Buckets::default()),
            flags: 0,
            exemplars: self.exemplars.clone(),
            min: (self.count > 0).then_some(self.min),
            max: (self.count > 0).then_some(self.max),
            zero_threshold: 0.0,
        }
    }
}

/// The duration aggregate of one series.
#[derive(Debug, Clone)]
enum DurationAgg {
    Explicit(ExplicitHistogram),
    Exponential(ExpoHistogram),
}

impl DurationAgg {
    fn record(&mut self, v: f64, exemplar: Option<(Exemplar, usize)>) {
        match self {
            DurationAgg::Explicit(h) => {
                h.record(v);
                if let Some((e, max)) = exemplar {
                    h.add_exemplar(e, max);
                }
            }
            DurationAgg::Exponential(h) => {
                h.record(v);
                if let Some((e, max)) = exemplar {
                    if max == 0 || h.exemplars.len() < max {
                        h.exemplars.push(e);
                    }
                }
            }
        }
    }

    fn clear_exemplars(&mut self) {
        match self {
            DurationAgg::Explicit(h) => h.clear_exemplars(),
            DurationAgg::Exponential(h) => h.exemplars.clear(),
        }
    }
}

/// One series: its attributes and aggregates.
#[derive(Debug)]
struct Series {
    attributes: Vec<KeyValue>,
    calls: u64,
    duration: Option<DurationAgg>,
    start: u64,
    last_seen: Instant,
    updated: bool,
}

/// The series of one resource.
#[derive(Debug, Default)]
struct ResourceEntry {
    attributes: Vec<KeyValue>,
    spans: HashMap<Vec<u8>, Series>,
    events: HashMap<Vec<u8>, Series>,
}

#[derive(Debug, Default)]
struct State {
    resources: HashMap<Vec<u8>, ResourceEntry>,
    series: usize,
    last_flush: u64,
}

impl State {
    /// Forgets the least recently updated tenth of the series (at least one).
    fn evict(&mut self) -> usize {
        let mut ages: Vec<Instant> = self
            .resources
            .values()
            .flat_map(|r| r.spans.values().chain(r.events.values()))
            .map(|s| s.last_seen)
            .collect();
        if ages.is_empty() {
            return 0;
        }
        let n = (ages.len() / EVICT_SHARE).max(1);
        let (_, cut, _) = ages.select_nth_unstable(n - 1);
        let cut = *cut;
        let mut removed = 0;
        for r in self.resources.values_mut() {
            for map in [&mut r.spans, &mut r.events] {
                map.retain(|_, s| {
                    let keep = removed >= n || s.last_seen > cut;
                    if !keep {
                        removed += 1;
                    }
                    keep
                });
            }
        }
        // Emptied resources are dropped at the end of the ingest (the one being filled stays).
        self.series -= removed;
        removed
    }
}

/// Where and when a span is being counted: its resource and the ingest's clocks.
struct At<'a> {
    res_key: &'a [u8],
    res_attrs: &'a [KeyValue],
    service: &'a str,
    now: Instant,
    unix: u64,
}

/// The span metrics aggregator.
pub(crate) struct SpanMetrics {
    config: SpanMetricsConfig,
    bounds: Arc<[f64]>,
    dims: Vec<&'static str>,
    state: Mutex<State>,
    evicted: Counter,
}

fn kind_name(kind: i32) -> &'static str {
    SpanKind::try_from(kind)
        .unwrap_or(SpanKind::Unspecified)
        .as_str_name()
}

fn status_name(span: &Span) -> &'static str {
    let code = span.status.as_ref().map(|s| s.code).unwrap_or(0);
    StatusCode::try_from(code)
        .unwrap_or(StatusCode::Unset)
        .as_str_name()
}

/// Looks `d` up in each attribute list in turn, then falls back to its default.
fn dimension_value<'a>(d: &'a Dimension, lists: &[&'a [KeyValue]]) -> Option<any_value::Value> {
    lists
        .iter()
        .find_map(|l| find(l, &d.name))
        .cloned()
        .or_else(|| d.default.clone().map(any_value::Value::StringValue))
}

impl SpanMetrics {
    /// An empty aggregator for `config` (already validated), counting evictions for `id`.
    pub(crate) fn new(id: &str, config: &SpanMetricsConfig) -> Self {
        let unit = config.histogram.unit;
        let bounds: Vec<f64> = match config.histogram.explicit.as_ref() {
            Some(e) if !e.buckets.is_empty() => e
                .buckets
                .iter()
                .map(|d| d.as_nanos() as f64 / unit.nanos_per_unit())
                .collect(),
            _ => DEFAULT_BUCKETS_MS
                .iter()
                .map(|ms| *ms as f64 * 1e6 / unit.nanos_per_unit())
                .collect(),
        };
        let dims = DEFAULT_DIMENSIONS
            .into_iter()
            .filter(|d| !config.exclude_dimensions.iter().any(|x| x == d))
            .collect();
        SpanMetrics {
            config: config.clone(),
            bounds: Arc::from(bounds),
            dims,
            state: Mutex::new(State::default()),
            evicted: SelfMetrics::global().counter(
                "otelcol_connector_spanmetrics_evicted_series_total",
                "Series forgotten because dimensions_cache_size was reached.",
                vec![("connector", id.to_string())],
            ),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn resource_key(&self, attrs: &[KeyValue], out: &mut Vec<u8>) {
        out.clear();
        if self.config.resource_metrics_key_attributes.is_empty() {
            let mut sorted: Vec<&KeyValue> = attrs.iter().collect();
            sorted.sort_by(|a, b| a.key.cmp(&b.key));
            for a in sorted {
                out.extend_from_slice(a.key.as_bytes());
                encode_value(a.value.as_ref().and_then(|v| v.value.as_ref()), out);
            }
        } else {
            for k in &self.config.resource_metrics_key_attributes {
                encode_value(find(attrs, k), out);
            }
        }
    }

    /// The default dimensions' attributes of `span`.
    fn default_attributes(&self, service: &str, span: &Span) -> Vec<KeyValue> {
        self.dims
            .iter()
            .map(|d| match *d {
                "service.name" => kv_str(d, service),
                "span.name" => kv_str(d, &span.name),
                "span.kind" => kv_str(d, kind_name(span.kind)),
                _ => kv_str(d, status_name(span)),
            })
            .collect()
    }

    fn new_duration(&self) -> Option<DurationAgg> {
        let h = &self.config.histogram;
        if h.disable {
            None
        } else if let Some(e) = &h.exponential {
            Some(DurationAgg::Exponential(ExpoHistogram::new(
                e.max_size as usize,
            )))
        } else {
            Some(DurationAgg::Explicit(ExplicitHistogram::new(
                self.bounds.clone(),
            )))
        }
    }

    /// The start time of a new series.
    fn start_time(&self, state: &State, unix: u64) -> u64 {
        match self.config.aggregation_temporality {
            Temporality::Delta if state.last_flush > 0 => state.last_flush,
            _ => unix,
        }
    }

    fn ingest_span(&self, state: &mut State, at: &At<'_>, span: &Span, key: &mut Vec<u8>) {
        let (res_attrs, service) = (at.res_attrs, at.service);
        key.clear();
        key.extend_from_slice(span.name.as_bytes());
        key.push(0);
        key.extend_from_slice(&span.kind.to_le_bytes());
        key.extend_from_slice(
            &span
                .status
                .as_ref()
                .map(|s| s.code)
                .unwrap_or(0)
                .to_le_bytes(),
        );
        let lists: [&[KeyValue]; 2] = [&span.attributes, res_attrs];
        for d in &self.config.dimensions {
            match lists.iter().find_map(|l| find(l, &d.name)) {
                Some(v) => encode_value(Some(v), key),
                None => match &d.default {
                    Some(def) => {
                        encode_value(Some(&any_value::Value::StringValue(def.clone())), key)
                    }
                    None => key.push(0xff),
                },
            }
        }
        let nanos = duration_nanos(span.start_time_unix_nano, span.end_time_unix_nano);
        let value = nanos as f64 / self.config.histogram.unit.nanos_per_unit();
        let exemplar = self.config.exemplars.enabled.then(|| {
            (
                Exemplar {
                    filtered_attributes: Vec::new(),
                    time_unix_nano: span.end_time_unix_nano,
                    span_id: span.span_id.clone(),
                    trace_id: span.trace_id.clone(),
                    value: Some(exemplar::Value::AsDouble(value)),
                },
                self.config.exemplars.max_per_data_point,
            )
        });
        self.upsert(
            state,
            at,
            false,
            key,
            |s| {
                s.calls += 1;
                if let Some(d) = s.duration.as_mut() {
                    d.record(value, exemplar);
                }
            },
            || {
                let mut attrs = self.default_attributes(service, span);
                for d in &self.config.dimensions {
                    if let Some(v) = dimension_value(d, &lists) {
                        attrs.push(kv(&d.name, v));
                    }
                }
                attrs
            },
        );
        if self.config.events.enabled {
            let base_len = key.len();
            for ev in &span.events {
                key.truncate(base_len);
                key.extend_from_slice(ev.name.as_bytes());
                key.push(0);
                let ev_lists: [&[KeyValue]; 3] = [&ev.attributes, &span.attributes, res_attrs];
                for d in &self.config.events.dimensions {
                    encode_value(dimension_value(d, &ev_lists).as_ref(), key);
                }
                self.upsert(
                    state,
                    at,
                    true,
                    key,
                    |s| s.calls += 1,
                    || {
                        let mut attrs = self.default_attributes(service, span);
                        for d in &self.config.dimensions {
                            if let Some(v) = dimension_value(d, &lists) {
                                attrs.push(kv(&d.name, v));
                            }
                        }
                        attrs.push(kv_str("event.name", &ev.name));
                        for d in &self.config.events.dimensions {
                            if let Some(v) = dimension_value(d, &ev_lists) {
                                attrs.push(kv(&d.name, v));
                            }
                        }
                        attrs
                    },
                );
            }
            key.truncate(base_len);
        }
    }

    /// Updates the series `key` of resource `res_key` with `update`, creating it (attributes
    /// from `attrs`) when new — evicting old series first when the cache is full.
    fn upsert(
        &self,
        state: &mut State,
        at: &At<'_>,
        event: bool,
        key: &[u8],
        update: impl FnOnce(&mut Series),
        attrs: impl FnOnce() -> Vec<KeyValue>,
    ) {
        let (res_key, now, unix) = (at.res_key, at.now, at.unix);
        // Hot path: the series exists (one lookup per map).
        if let Some(r) = state.resources.get_mut(res_key) {
            let map = if event { &mut r.events } else { &mut r.spans };
            if let Some(s) = map.get_mut(key) {
                s.last_seen = now;
                s.updated = true;
                update(s);
                return;
            }
        }
        if state.series >= self.config.dimensions_cache_size {
            self.evicted.add(state.evict() as u64);
        }
        let fresh = Series {
            attributes: attrs(),
            calls: 0,
            duration: if event { None } else { self.new_duration() },
            start: self.start_time(state, unix),
            last_seen: now,
            updated: true,
        };
        // The resource entry exists: ingest creates it before its spans.
        let Some(r) = state.resources.get_mut(res_key) else {
            return;
        };
        let map = if event { &mut r.events } else { &mut r.spans };
        state.series += 1;
        update(map.entry(key.to_vec()).or_insert(fresh));
    }

    fn sum_metric(&self, suffix: &str, points: Vec<NumberDataPoint>) -> Metric {
        Metric {
            name: format!("{}.{suffix}", self.config.namespace),
            description: String::new(),
            unit: String::new(),
            metadata: Vec::new(),
            data: Some(Data::Sum(Sum {
                data_points: points,
                aggregation_temporality: self.temporality() as i32,
                is_monotonic: true,
            })),
        }
    }

    fn temporality(&self) -> AggregationTemporality {
        match self.config.aggregation_temporality {
            Temporality::Cumulative => AggregationTemporality::Cumulative,
            Temporality::Delta => AggregationTemporality::Delta,
        }
    }

    fn resource_metrics(&self, r: &mut ResourceEntry, unix: u64) -> Option<ResourceMetrics> {
        let delta = self.config.aggregation_temporality == Temporality::Delta;
        let emit = |s: &Series| !delta || s.updated;
        let count_point = |s: &Series| NumberDataPoint {
            attributes: s.attributes.clone(),
            start_time_unix_nano: s.start,
            time_unix_nano: unix,
            exemplars: Vec::new(),
            flags: 0,
            value: Some(number_data_point::Value::AsInt(s.calls as i64)),
        };
        let calls: Vec<NumberDataPoint> = r
            .spans
            .values()
            .filter(|s| emit(s))
            .map(count_point)
            .collect();
        if calls.is_empty() && !r.events.values().any(emit) {
            return None;
        }
        let mut metrics = vec![self.sum_metric("calls", calls)];
        let mut explicit = Vec::new();
        let mut expo = Vec::new();
        for s in r.spans.values().filter(|s| emit(s)) {
            match &s.duration {
                Some(DurationAgg::Explicit(h)) => {
                    explicit.push(h.point(s.attributes.clone(), s.start, unix))
                }
                Some(DurationAgg::Exponential(h)) => {
                    expo.push(h.point(s.attributes.clone(), s.start, unix))
                }
                None => {}
            }
        }
        let name = format!("{}.duration", self.config.namespace);
        let unit = self.config.histogram.unit.symbol().to_string();
        let temporality = self.temporality() as i32;
        if !self.config.histogram.disable {
            let data = if self.config.histogram.exponential.is_some() {
                Data::ExponentialHistogram(ExponentialHistogram {
                    data_points: expo,
                    aggregation_temporality: temporality,
                })
            } else {
                Data::Histogram(Histogram {
                    data_points: explicit,
                    aggregation_temporality: temporality,
                })
            };
            metrics.push(Metric {
                name,
                description: String::new(),
                unit,
                metadata: Vec::new(),
                data: Some(data),
            });
        }
        if self.config.events.enabled {
            let points = r
                .events
                .values()
                .filter(|s| emit(s))
                .map(count_point)
                .collect();
            metrics.push(self.sum_metric("events", points));
        }
        for s in r.spans.values_mut().chain(r.events.values_mut()) {
            s.updated = false;
            if let Some(d) = s.duration.as_mut() {
                d.clear_exemplars();
            }
        }
        Some(ResourceMetrics {
            resource: Some(Resource {
                attributes: r.attributes.clone(),
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(InstrumentationScope {
                    name: SCOPE.into(),
                    ..Default::default()
                }),
                metrics,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        })
    }
}

impl Derive for SpanMetrics {
    fn ingest(&self, req: &ExportTraceServiceRequest, now: Instant) {
        let unix = unix_nanos();
        let mut res_key = Vec::with_capacity(128);
        let mut key = Vec::with_capacity(128);
        let mut state = self.lock();
        for (res_attrs, service, spans) in service_spans(req) {
            self.resource_key(res_attrs, &mut res_key);
            state
                .resources
                .entry(res_key.clone())
                .or_insert_with(|| ResourceEntry {
                    attributes: res_attrs.to_vec(),
                    ..Default::default()
                });
            for span in spans {
                let at = At {
                    res_key: &res_key,
                    res_attrs,
                    service,
                    now,
                    unix,
                };
                self.ingest_span(&mut state, &at, span, &mut key);
            }
        }
        state
            .resources
            .retain(|_, r| !r.spans.is_empty() || !r.events.is_empty());
    }

    fn collect(&self, now: Instant, unix: u64) -> Option<ExportMetricsServiceRequest> {
        let mut state = self.lock();
        let exp = self.config.metrics_expiration;
        let delta = self.config.aggregation_temporality == Temporality::Delta;
        if !exp.is_zero() && !delta {
            let mut dropped = 0;
            for r in state.resources.values_mut() {
                for map in [&mut r.spans, &mut r.events] {
                    let before = map.len();
                    map.retain(|_, s| now.saturating_duration_since(s.last_seen) <= exp);
                    dropped += before - map.len();
                }
            }
            state.series -= dropped;
            state
                .resources
                .retain(|_, r| !r.spans.is_empty() || !r.events.is_empty());
        }
        let out: Vec<ResourceMetrics> = state
            .resources
            .values_mut()
            .filter_map(|r| self.resource_metrics(r, unix))
            .collect();
        state.last_flush = unix;
        if delta {
            state.resources.clear();
            state.series = 0;
        }
        (!out.is_empty()).then_some(ExportMetricsServiceRequest {
            resource_metrics: out,
        })
    }
}

#[cfg(test)]
mod tests;
