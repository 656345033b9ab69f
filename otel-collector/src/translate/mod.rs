//! OTLP metrics → Prometheus series, shared by the `prometheus` (scrape) and
//! `prometheusremotewrite` exporters.
//!
//! The rules follow the OpenTelemetry specification's "Prometheus and OpenMetrics
//! compatibility" section and what the upstream collector's exporters produce; the comparison
//! cases are in `docs/prometheus-translation.md`:
//! - names: [`names::metric_name`] (sanitising, unit suffixes, `_total`, `_ratio`), labels:
//!   [`names::label_name`]; attributes whose sanitised names collide are merged, values joined
//!   with `;` in the order of the original keys;
//! - `service.name` (+ `service.namespace`) → `job`, `service.instance.id` → `instance`, the other
//!   resource attributes → one `target_info` series per resource (or, with
//!   `resource_to_telemetry_conversion`, labels on every series) — which resources get one
//!   differs per exporter as upstream ([`TargetInfo`]); scope → `otel_scope_name` /
//!   `otel_scope_version`;
//! - monotonic sums → counters, non-monotonic sums → gauges, histograms → classic histograms,
//!   exponential histograms → classic histograms with the exponential bucket boundaries as `le`
//!   (downscaled to at most [`MAX_EXP_BUCKETS`] buckets), summaries → summaries;
//! - delta sums and histograms are accumulated to cumulative ([`delta`]) or dropped
//!   ([`DeltaMode::Drop`]);
//! - a cardinality guard caps series per metric ([`guard`]).
//!
//! Every point that is not translated is counted in the self-metric
//! `otelcol_exporter_prometheus_dropped_metric_points_total{exporter, reason}`.
//!
//! Tests: `cargo test -p otel-collector translate` (table tests over the OTLP JSON fixtures in
//! `otel-collector/testdata/prom/`).

pub mod delta;
pub mod guard;
pub mod model;
pub mod names;

pub use model::{Exemplar, Family, Labels, MetricKind, Point, PointValue};

use crate::telemetry::{Counter, SelfMetrics};
use delta::{DeltaOutcome, DeltaState};
use guard::CardinalityGuard;
use model::{add_label_if_absent, set_label};
use names::NameKind;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    exponential_histogram_data_point::Buckets, metric::Data, number_data_point,
    Exemplar as OtlpExemplar, ExponentialHistogramDataPoint, HistogramDataPoint, NumberDataPoint,
};
use serde::Deserialize;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Exponential histograms with more populated buckets than this are downscaled before they are
/// turned into classic `le` buckets.
pub const MAX_EXP_BUCKETS: usize = 160;

const AGG_DELTA: i32 = 1;
const AGG_CUMULATIVE: i32 = 2;
const FLAG_NO_RECORDED_VALUE: u32 = 1;

/// What to do with delta-temporality sums and histograms.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeltaMode {
    /// Accumulate into cumulative series (per-series state, bounded, expiring).
    #[default]
    Accumulate,
    /// Drop them, counted with reason `delta_temporality`.
    Drop,
}

/// Which resources get a `target_info` series. Upstream's two exporters differ, and each of ours
/// follows its counterpart.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TargetInfo {
    /// None (`target_info.enabled: false` of the remote-write exporter).
    Off,
    /// Resources with attributes besides `service.name`, `service.namespace` and
    /// `service.instance.id` (upstream's remote-write translator: `job`/`instance` alone say
    /// nothing the series do not).
    #[default]
    Descriptive,
    /// Also every resource with a `job` or an `instance` (upstream's scrape exporter).
    Identified,
}

/// Translation options common to both exporters.
#[derive(Clone, Debug)]
pub struct TranslateOptions {
    /// Prefix for every metric name (`namespace`).
    pub namespace: String,
    /// Add unit, `_total` and `_ratio` suffixes (`add_metric_suffixes`, default true).
    pub add_metric_suffixes: bool,
    /// Copy every resource attribute to every series (`resource_to_telemetry_conversion`).
    pub resource_to_telemetry: bool,
    /// Which resources get a `target_info` series (default [`TargetInfo::Descriptive`]).
    pub target_info: TargetInfo,
    /// Delta handling.
    pub delta_mode: DeltaMode,
    /// Series cap per metric name; 0 means no cap.
    pub max_series_per_metric: usize,
    /// Cap of delta series held for accumulation.
    pub max_delta_series: usize,
    /// Delta state and cardinality-guard entries not updated for this long are forgotten.
    pub state_expiry: Duration,
}

impl Default for TranslateOptions {
    fn default() -> Self {
        TranslateOptions {
            namespace: String::new(),
            add_metric_suffixes: true,
            resource_to_telemetry: false,
            target_info: TargetInfo::Descriptive,
            delta_mode: DeltaMode::Accumulate,
            max_series_per_metric: 0,
            max_delta_series: 100_000,
            state_expiry: Duration::from_secs(300),
        }
    }
}

/// Reasons a point is not translated (the `reason` label of the drop counter).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Metric name empty after sanitising.
    InvalidName,
    /// A data point without a value or with an unspecified temporality.
    InvalidPoint,
    /// Delta temporality with `delta_temporality: drop`.
    DeltaTemporality,
    /// A delta point older than (or overlapping) the last one accumulated for its series.
    OutOfOrder,
    /// The delta accumulation state is full.
    DeltaStateFull,
    /// The series cap of its metric is reached.
    CardinalityLimit,
}

impl DropReason {
    const ALL: [DropReason; 6] = [
        DropReason::InvalidName,
        DropReason::InvalidPoint,
        DropReason::DeltaTemporality,
        DropReason::OutOfOrder,
        DropReason::DeltaStateFull,
        DropReason::CardinalityLimit,
    ];

    /// Label value.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::InvalidName => "invalid_name",
            DropReason::InvalidPoint => "invalid_point",
            DropReason::DeltaTemporality => "delta_temporality",
            DropReason::OutOfOrder => "out_of_order",
            DropReason::DeltaStateFull => "delta_state_full",
            DropReason::CardinalityLimit => "cardinality_limit",
        }
    }
}

/// Drop counters of one exporter, by reason.
#[derive(Clone, Debug)]
pub struct DropCounters(HashMap<DropReason, Counter>);

impl DropCounters {
    /// Registers `otelcol_exporter_prometheus_dropped_metric_points_total{exporter,reason}` in `metrics`.
    pub fn new(metrics: &SelfMetrics, exporter: &str) -> Self {
        DropCounters(
            DropReason::ALL
                .iter()
                .map(|r| {
                    let c = metrics.counter(
                        "otelcol_exporter_prometheus_dropped_metric_points_total",
                        "Metric points the Prometheus translation dropped, by reason.",
                        vec![
                            ("exporter", exporter.to_string()),
                            ("reason", r.as_str().into()),
                        ],
                    );
                    (*r, c)
                })
                .collect(),
        )
    }

    /// Counts `n` drops for `reason`.
    pub fn add(&self, reason: DropReason, n: u64) {
        if let Some(c) = self.0.get(&reason) {
            c.add(n);
        }
    }

    /// Drops counted so far for `reason`.
    pub fn get(&self, reason: DropReason) -> u64 {
        self.0.get(&reason).map(Counter::get).unwrap_or(0)
    }
}

/// Stateful OTLP → Prometheus translator (the state: delta accumulation and the series guard).
#[derive(Debug)]
pub struct Translator {
    opts: TranslateOptions,
    deltas: DeltaState,
    guard: CardinalityGuard,
    drops: DropCounters,
}

/// Resource-level labels shared by every point of one resource.
struct ResourceLabels {
    /// job / instance.
    identity: Vec<(&'static str, String)>,
    /// Sanitised resource attributes other than the service identity (for target_info).
    attrs: Labels,
    /// All sanitised resource attributes (for resource_to_telemetry_conversion).
    all: Labels,
}

impl Translator {
    /// A translator with `opts`, counting drops in `drops`.
    pub fn new(opts: TranslateOptions, drops: DropCounters) -> Self {
        Translator {
            deltas: DeltaState::new(opts.max_delta_series, opts.state_expiry),
            guard: CardinalityGuard::new(opts.max_series_per_metric, opts.state_expiry),
            opts,
            drops,
        }
    }

    /// The options.
    pub fn options(&self) -> &TranslateOptions {
        &self.opts
    }

    /// The drop counters.
    pub fn drops(&self) -> &DropCounters {
        &self.drops
    }

    /// Translates one OTLP request into metric families (one per OTLP metric plus a
    /// `target_info` family for the resources [`TargetInfo`] selects).
    pub fn translate(&mut self, req: &ExportMetricsServiceRequest) -> Vec<Family> {
        let now_ms = now_ms();
        self.deltas.sweep();
        self.guard.sweep();
        let mut out = Vec::new();
        for rm in &req.resource_metrics {
            let empty = Vec::new();
            let rattrs = rm
                .resource
                .as_ref()
                .map(|r| &r.attributes)
                .unwrap_or(&empty);
            let res = resource_labels(rattrs);
            let mut latest_ms = 0i64;
            for sm in &rm.scope_metrics {
                let mut scope_labels: Vec<(&'static str, String)> = Vec::new();
                if let Some(scope) = &sm.scope {
                    if !scope.name.is_empty() {
                        scope_labels.push(("otel_scope_name", scope.name.clone()));
                        if !scope.version.is_empty() {
                            scope_labels.push(("otel_scope_version", scope.version.clone()));
                        }
                    }
                }
                for metric in &sm.metrics {
                    let ctx = PointCtx {
                        res: &res,
                        scope: &scope_labels,
                        now_ms,
                    };
                    if let Some(family) = self.translate_metric(metric, &ctx) {
                        for p in &family.points {
                            latest_ms = latest_ms.max(p.timestamp_ms);
                        }
                        if !family.points.is_empty() {
                            out.push(family);
                        }
                    }
                }
            }
            let wanted = match self.opts.target_info {
                TargetInfo::Off => false,
                TargetInfo::Descriptive => !res.attrs.is_empty(),
                TargetInfo::Identified => !res.attrs.is_empty() || !res.identity.is_empty(),
            };
            if wanted && latest_ms > 0 {
                let mut labels = res.attrs.clone();
                for (k, v) in &res.identity {
                    set_label(&mut labels, k, v.clone());
                }
                out.push(Family {
                    name: "target_info".into(),
                    kind: MetricKind::Gauge,
                    help: "Target metadata".into(),
                    points: vec![Point {
                        labels,
                        timestamp_ms: latest_ms,
                        value: PointValue::Number(1.0),
                        stale: false,
                        exemplars: Vec::new(),
                    }],
                });
            }
        }
        out
    }

    fn translate_metric(
        &mut self,
        metric: &opentelemetry_proto::tonic::metrics::v1::Metric,
        ctx: &PointCtx<'_>,
    ) -> Option<Family> {
        let data = metric.data.as_ref()?;
        let (kind, name_kind) = match data {
            Data::Gauge(_) => (MetricKind::Gauge, NameKind::Gauge),
            Data::Sum(s) if s.is_monotonic => (MetricKind::Counter, NameKind::Counter),
            // A Prometheus gauge, but named as upstream does for a sum: no `_ratio`.
            Data::Sum(_) => (MetricKind::Gauge, NameKind::Other),
            Data::Histogram(_) | Data::ExponentialHistogram(_) => {
                (MetricKind::Histogram, NameKind::Other)
            }
            Data::Summary(_) => (MetricKind::Summary, NameKind::Other),
        };
        let name = names::metric_name(
            &metric.name,
            &metric.unit,
            name_kind,
            &self.opts.namespace,
            self.opts.add_metric_suffixes,
        );
        let n_points = point_count(data);
        if name.is_empty() {
            self.drops.add(DropReason::InvalidName, n_points as u64);
            return None;
        }
        let mut points = Vec::with_capacity(n_points);
        match data {
            Data::Gauge(g) => {
                for dp in &g.data_points {
                    if let Some(p) = self.number_point(&name, dp, ctx, None) {
                        points.push(p);
                    }
                }
            }
            Data::Sum(s) => {
                let temporality = s.aggregation_temporality;
                for dp in &s.data_points {
                    if let Some(p) = self.number_point(&name, dp, ctx, Some(temporality)) {
                        points.push(p);
                    }
                }
            }
            Data::Histogram(h) => {
                for dp in &h.data_points {
                    if let Some(p) = self.histogram_point(&name, dp, ctx, h.aggregation_temporality)
                    {
                        points.push(p);
                    }
                }
            }
            Data::ExponentialHistogram(h) => {
                for dp in &h.data_points {
                    // The receiver takes such points out; data from elsewhere may still have them.
                    if crate::receiver::validate::exp_histogram_problem(dp).is_some() {
                        self.drops.add(DropReason::InvalidPoint, 1);
                        continue;
                    }
                    let classic = exp_to_classic(dp);
                    if let Some(p) =
                        self.histogram_point(&name, &classic, ctx, h.aggregation_temporality)
                    {
                        points.push(p);
                    }
                }
            }
            Data::Summary(s) => {
                for dp in &s.data_points {
                    let labels = point_labels(&dp.attributes, ctx, self.opts.resource_to_telemetry);
                    if !self.guard.admit(&name, &labels) {
                        self.drops.add(DropReason::CardinalityLimit, 1);
                        continue;
                    }
                    let mut quantiles: Vec<(f64, f64)> = dp
                        .quantile_values
                        .iter()
                        .map(|q| (q.quantile, q.value))
                        .collect();
                    quantiles.sort_by(|a, b| a.0.total_cmp(&b.0));
                    points.push(Point {
                        labels,
                        timestamp_ms: ts_ms(dp.time_unix_nano, ctx.now_ms),
                        value: PointValue::Summary {
                            count: dp.count,
                            sum: dp.sum,
                            quantiles,
                        },
                        stale: dp.flags & FLAG_NO_RECORDED_VALUE != 0,
                        exemplars: Vec::new(),
                    });
                }
            }
        }
        Some(Family {
            name,
            kind,
            help: metric.description.clone(),
            points,
        })
    }

    /// Checks temporality; returns false (and counts) when the point must be dropped.
    fn temporality_ok(&self, temporality: i32) -> bool {
        match temporality {
            AGG_CUMULATIVE => true,
            AGG_DELTA if self.opts.delta_mode == DeltaMode::Accumulate => true,
            AGG_DELTA => {
                self.drops.add(DropReason::DeltaTemporality, 1);
                false
            }
            _ => {
                self.drops.add(DropReason::InvalidPoint, 1);
                false
            }
        }
    }

    fn number_point(
        &mut self,
        name: &str,
        dp: &NumberDataPoint,
        ctx: &PointCtx<'_>,
        temporality: Option<i32>,
    ) -> Option<Point> {
        let stale = dp.flags & FLAG_NO_RECORDED_VALUE != 0;
        let mut value = match dp.value {
            Some(number_data_point::Value::AsDouble(v)) => v,
            Some(number_data_point::Value::AsInt(v)) => v as f64,
            None if stale => f64::NAN,
            None => {
                self.drops.add(DropReason::InvalidPoint, 1);
                return None;
            }
        };
        if let Some(t) = temporality {
            if !self.temporality_ok(t) {
                return None;
            }
        }
        let labels = point_labels(&dp.attributes, ctx, self.opts.resource_to_telemetry);
        if !self.guard.admit(name, &labels) {
            self.drops.add(DropReason::CardinalityLimit, 1);
            return None;
        }
        if temporality == Some(AGG_DELTA) && !stale {
            match self.deltas.add_number(
                name,
                &labels,
                dp.start_time_unix_nano,
                dp.time_unix_nano,
                value,
            ) {
                DeltaOutcome::Value(total) => value = total,
                DeltaOutcome::Histogram { .. } => unreachable!("number state holds numbers"),
                DeltaOutcome::Dropped(reason) => {
                    self.drops.add(reason, 1);
                    return None;
                }
            }
        }
        Some(Point {
            labels,
            timestamp_ms: ts_ms(dp.time_unix_nano, ctx.now_ms),
            value: PointValue::Number(value),
            stale,
            exemplars: exemplars(&dp.exemplars),
        })
    }

    fn histogram_point(
        &mut self,
        name: &str,
        dp: &HistogramDataPoint,
        ctx: &PointCtx<'_>,
        temporality: i32,
    ) -> Option<Point> {
        if !self.temporality_ok(temporality) {
            return None;
        }
        let stale = dp.flags & FLAG_NO_RECORDED_VALUE != 0;
        let labels = point_labels(&dp.attributes, ctx, self.opts.resource_to_telemetry);
        if !self.guard.admit(name, &labels) {
            self.drops.add(DropReason::CardinalityLimit, 1);
            return None;
        }
        let mut count = dp.count;
        let mut sum = dp.sum;
        let mut counts: Vec<u64> = dp.bucket_counts.clone();
        if temporality == AGG_DELTA && !stale {
            match self.deltas.add_histogram(
                name,
                &labels,
                dp.start_time_unix_nano,
                dp.time_unix_nano,
                &dp.explicit_bounds,
                &counts,
                count,
                sum.unwrap_or(0.0),
            ) {
                DeltaOutcome::Histogram {
                    count: c,
                    sum: s,
                    buckets,
                } => {
                    count = c;
                    sum = sum.map(|_| s);
                    counts = buckets;
                }
                DeltaOutcome::Value(_) => unreachable!("histogram state holds histograms"),
                DeltaOutcome::Dropped(reason) => {
                    self.drops.add(reason, 1);
                    return None;
                }
            }
        }
        // Cumulative buckets; bounds without counts (or counts without bounds) give only +Inf.
        let mut buckets = Vec::with_capacity(dp.explicit_bounds.len() + 1);
        if counts.len() == dp.explicit_bounds.len() + 1 {
            let mut acc = 0u64;
            for (bound, c) in dp.explicit_bounds.iter().zip(&counts) {
                acc = acc.saturating_add(*c);
                buckets.push((*bound, acc));
            }
        }
        buckets.push((f64::INFINITY, count));
        Some(Point {
            labels,
            timestamp_ms: ts_ms(dp.time_unix_nano, ctx.now_ms),
            value: PointValue::Histogram {
                count,
                sum,
                buckets,
            },
            stale,
            exemplars: exemplars(&dp.exemplars),
        })
    }
}

/// Number of data points in an OTLP metrics request.
pub fn data_point_count(req: &ExportMetricsServiceRequest) -> usize {
    req.resource_metrics
        .iter()
        .flat_map(|rm| &rm.scope_metrics)
        .flat_map(|sm| &sm.metrics)
        .filter_map(|m| m.data.as_ref())
        .map(point_count)
        .sum()
}

fn point_count(data: &Data) -> usize {
    match data {
        Data::Gauge(g) => g.data_points.len(),
        Data::Sum(s) => s.data_points.len(),
        Data::Histogram(h) => h.data_points.len(),
        Data::ExponentialHistogram(h) => h.data_points.len(),
        Data::Summary(s) => s.data_points.len(),
    }
}

struct PointCtx<'a> {
    res: &'a ResourceLabels,
    scope: &'a [(&'static str, String)],
    now_ms: i64,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn ts_ms(nanos: u64, now_ms: i64) -> i64 {
    if nanos == 0 {
        now_ms
    } else {
        (nanos / 1_000_000) as i64
    }
}

/// Renders an attribute value as a label value (strings as-is, others in their JSON-like form).
pub fn any_value_string(v: Option<&AnyValue>) -> String {
    match v.and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::DoubleValue(d)) => model::format_float(*d),
        Some(any_value::Value::BytesValue(b)) => {
            let mut s = String::with_capacity(b.len() * 2);
            for byte in b {
                let _ = write!(s, "{byte:02x}");
            }
            s
        }
        Some(any_value::Value::ArrayValue(a)) => {
            let items: Vec<String> = a
                .values
                .iter()
                .map(|v| serde_json::Value::String(any_value_string(Some(v))).to_string())
                .collect();
            format!("[{}]", items.join(","))
        }
        Some(any_value::Value::KvlistValue(kv)) => {
            let items: Vec<String> = kv
                .values
                .iter()
                .map(|kv| {
                    format!(
                        "{}:{}",
                        serde_json::Value::String(kv.key.clone()),
                        serde_json::Value::String(any_value_string(kv.value.as_ref()))
                    )
                })
                .collect();
            format!("{{{}}}", items.join(","))
        }
        // Unset, or a dictionary reference (profiles only) we cannot resolve here.
        _ => String::new(),
    }
}

/// Sanitises attribute keys into label names; keys that collide after sanitising are merged,
/// their values joined with `;` in the sorted order of the original keys (spec). Empty values
/// are dropped (Prometheus treats an empty label as absent).
pub fn attributes_to_labels<'a>(attrs: impl IntoIterator<Item = &'a KeyValue>) -> Labels {
    let mut raw: Vec<(String, &str, String)> = attrs
        .into_iter()
        .filter_map(|kv| {
            let name = names::label_name(&kv.key)?;
            let value = any_value_string(kv.value.as_ref());
            Some((name, kv.key.as_str(), value))
        })
        .filter(|(_, _, v)| !v.is_empty())
        .collect();
    raw.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(b.1)));
    let mut out: Labels = Vec::with_capacity(raw.len());
    for (name, _, value) in raw {
        match out.last_mut() {
            Some((last, v)) if *last == name => {
                v.push(';');
                v.push_str(&value);
            }
            _ => out.push((name, value)),
        }
    }
    out
}

const SERVICE_NAME: &str = "service.name";
const SERVICE_NAMESPACE: &str = "service.namespace";
const SERVICE_INSTANCE_ID: &str = "service.instance.id";

fn resource_labels(attrs: &[KeyValue]) -> ResourceLabels {
    let get = |key: &str| {
        attrs
            .iter()
            .find(|kv| kv.key == key)
            .map(|kv| any_value_string(kv.value.as_ref()))
            .filter(|v| !v.is_empty())
    };
    let mut identity = Vec::new();
    if let Some(name) = get(SERVICE_NAME) {
        let job = match get(SERVICE_NAMESPACE) {
            Some(ns) => format!("{ns}/{name}"),
            None => name,
        };
        identity.push(("job", job));
    }
    if let Some(instance) = get(SERVICE_INSTANCE_ID) {
        identity.push(("instance", instance));
    }
    let descriptive = attrs.iter().filter(|kv| {
        ![SERVICE_NAME, SERVICE_NAMESPACE, SERVICE_INSTANCE_ID].contains(&kv.key.as_str())
    });
    ResourceLabels {
        identity,
        attrs: attributes_to_labels(descriptive),
        all: attributes_to_labels(attrs),
    }
}

/// Labels of one point: its attributes, scope labels, resource attributes (with
/// `resource_to_telemetry`, never overriding point attributes), then job/instance (which win).
fn point_labels(attrs: &[KeyValue], ctx: &PointCtx<'_>, resource_to_telemetry: bool) -> Labels {
    let mut labels = attributes_to_labels(attrs);
    for (k, v) in ctx.scope {
        set_label(&mut labels, k, v.clone());
    }
    if resource_to_telemetry {
        for (k, v) in &ctx.res.all {
            add_label_if_absent(&mut labels, k, v.clone());
        }
    }
    for (k, v) in &ctx.res.identity {
        set_label(&mut labels, k, v.clone());
    }
    labels
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

fn exemplars(ex: &[OtlpExemplar]) -> Vec<Exemplar> {
    use opentelemetry_proto::tonic::metrics::v1::exemplar::Value;
    ex.iter()
        .filter_map(|e| {
            let value = match e.value? {
                Value::AsDouble(v) => v,
                Value::AsInt(v) => v as f64,
            };
            let mut labels = attributes_to_labels(&e.filtered_attributes);
            if !e.trace_id.is_empty() && e.trace_id.iter().any(|b| *b != 0) {
                set_label(&mut labels, "trace_id", hex(&e.trace_id));
            }
            if !e.span_id.is_empty() && e.span_id.iter().any(|b| *b != 0) {
                set_label(&mut labels, "span_id", hex(&e.span_id));
            }
            Some(Exemplar {
                value,
                timestamp_ms: (e.time_unix_nano / 1_000_000) as i64,
                labels,
            })
        })
        .collect()
}

/// Converts an exponential histogram point to a classic one whose bounds are the exponential
/// bucket boundaries: negative buckets (upper bound `-base^i`), the zero bucket (upper bound the
/// zero threshold), positive buckets (upper bound `base^(i+1)`). Points with more than
/// [`MAX_EXP_BUCKETS`] buckets are downscaled first (pairs of buckets merged per scale step).
pub fn exp_to_classic(dp: &ExponentialHistogramDataPoint) -> HistogramDataPoint {
    let empty = Buckets::default();
    let pos = dp.positive.as_ref().unwrap_or(&empty);
    let neg = dp.negative.as_ref().unwrap_or(&empty);
    let mut scale = dp.scale;
    let mut pos_b = (pos.offset, pos.bucket_counts.clone());
    let mut neg_b = (neg.offset, neg.bucket_counts.clone());
    while pos_b.1.len() + neg_b.1.len() > MAX_EXP_BUCKETS && scale > -10 {
        pos_b = downscale(pos_b.0, &pos_b.1);
        neg_b = downscale(neg_b.0, &neg_b.1);
        scale -= 1;
    }
    let base_exp = 2f64.powf(-(scale as f64)); // log2(base)
    let bound = |index: i64| 2f64.powf(index as f64 * base_exp);
    let mut bounds = Vec::new();
    let mut counts = Vec::new();
    // Negative buckets: index j covers [-base^(j+1), -base^j); ascending value = descending j.
    for (k, c) in neg_b.1.iter().enumerate().rev() {
        let j = neg_b.0 as i64 + k as i64;
        bounds.push(-bound(j));
        counts.push(*c);
    }
    if dp.zero_count > 0 || !neg_b.1.is_empty() {
        bounds.push(dp.zero_threshold.max(0.0));
        counts.push(dp.zero_count);
    }
    for (k, c) in pos_b.1.iter().enumerate() {
        let i = pos_b.0 as i64 + k as i64;
        bounds.push(bound(i + 1));
        counts.push(*c);
    }
    // Overflow bucket (+Inf): whatever the buckets do not hold (nothing, for a valid point).
    // Saturating: a malformed point's counts may add up past u64 (found by fuzzing).
    let held = counts.iter().fold(0u64, |a, c| a.saturating_add(*c));
    counts.push(dp.count.saturating_sub(held));
    HistogramDataPoint {
        attributes: dp.attributes.clone(),
        start_time_unix_nano: dp.start_time_unix_nano,
        time_unix_nano: dp.time_unix_nano,
        count: dp.count,
        sum: dp.sum,
        bucket_counts: counts,
        explicit_bounds: bounds,
        exemplars: dp.exemplars.clone(),
        flags: dp.flags,
        min: dp.min,
        max: dp.max,
    }
}

/// Halves the resolution: bucket i goes to i >> 1 (floor for negative indexes). Index arithmetic
/// is done in `i64`, so no offset and length can overflow it; counts saturate.
fn downscale(offset: i32, counts: &[u64]) -> (i32, Vec<u64>) {
    let new_offset = offset >> 1;
    if counts.is_empty() {
        return (new_offset, Vec::new());
    }
    let first = i64::from(offset);
    let last = (first + counts.len() as i64 - 1) >> 1;
    let mut out = vec![0u64; (last - i64::from(new_offset) + 1) as usize];
    for (k, c) in counts.iter().enumerate() {
        let slot = ((first + k as i64) >> 1) - i64::from(new_offset);
        out[slot as usize] = out[slot as usize].saturating_add(*c);
    }
    (new_offset, out)
}

#[cfg(test)]
pub(crate) mod tests;
