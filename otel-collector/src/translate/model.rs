//! The Prometheus-side data model the translator produces and both exporters consume.

/// Label pairs of one series, sorted by name, names unique.
pub type Labels = Vec<(String, String)>;

/// Prometheus metric type of a family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MetricKind {
    /// Monotonic cumulative sum (name ends in `_total` when suffixes are on).
    Counter,
    /// Gauge or non-monotonic sum.
    Gauge,
    /// Classic histogram (`_bucket{le}`, `_sum`, `_count`).
    Histogram,
    /// Summary (`{quantile}`, `_sum`, `_count`).
    Summary,
}

impl MetricKind {
    /// The `# TYPE` word in the text formats.
    pub fn as_str(self) -> &'static str {
        match self {
            MetricKind::Counter => "counter",
            MetricKind::Gauge => "gauge",
            MetricKind::Histogram => "histogram",
            MetricKind::Summary => "summary",
        }
    }
}

/// An exemplar: one traced measurement attached to a sample.
#[derive(Clone, Debug, PartialEq)]
pub struct Exemplar {
    /// The measured value.
    pub value: f64,
    /// Milliseconds since the Unix epoch (0 when unknown).
    pub timestamp_ms: i64,
    /// `trace_id`/`span_id` (lower-case hex) and the exemplar's filtered attributes, sorted.
    pub labels: Labels,
}

/// The value of one data point.
#[derive(Clone, Debug, PartialEq)]
pub enum PointValue {
    /// Gauge or counter value.
    Number(f64),
    /// Classic histogram with cumulative bucket counts; the last bucket is `+Inf`.
    Histogram {
        /// Total observations.
        count: u64,
        /// Sum of observations, when the source had one.
        sum: Option<f64>,
        /// (upper bound, cumulative count), ascending; the last bound is `+Inf`.
        buckets: Vec<(f64, u64)>,
    },
    /// Summary.
    Summary {
        /// Total observations.
        count: u64,
        /// Sum of observations.
        sum: f64,
        /// (quantile, value).
        quantiles: Vec<(f64, f64)>,
    },
}

/// One series point: labels (without `__name__`), time, value.
#[derive(Clone, Debug, PartialEq)]
pub struct Point {
    /// Sorted, sanitised, unique labels, including job/instance/scope labels.
    pub labels: Labels,
    /// Sample time, milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
    /// The value.
    pub value: PointValue,
    /// The OTLP "no recorded value" flag: a staleness marker in remote write, skipped on scrape.
    pub stale: bool,
    /// Exemplars, already reduced to trace/span id labels.
    pub exemplars: Vec<Exemplar>,
}

/// All points of one translated OTLP metric.
#[derive(Clone, Debug, PartialEq)]
pub struct Family {
    /// Prometheus name (for counters with suffixes this already ends in `_total`; for
    /// histograms and summaries it is the base name without `_bucket`/`_sum`/`_count`).
    pub name: String,
    /// Metric type.
    pub kind: MetricKind,
    /// The OTLP description.
    pub help: String,
    /// The points.
    pub points: Vec<Point>,
}

/// Formats a float the way Prometheus and the upstream collector print label values such as
/// `le` and `quantile` (`0.005`, `1000`, `+Inf`, `NaN`).
pub fn format_float(v: f64) -> String {
    let mut s = String::new();
    push_float(&mut s, v);
    s
}

/// Appends `v` in Prometheus text form (shortest round-trip representation).
pub fn push_float(out: &mut String, v: f64) {
    use std::fmt::Write as _;
    if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
    } else {
        let _ = write!(out, "{v}");
    }
}

/// Inserts or replaces `name=value` in sorted `labels`.
pub fn set_label(labels: &mut Labels, name: &str, value: String) {
    match labels.binary_search_by(|(n, _)| n.as_str().cmp(name)) {
        Ok(i) => labels[i].1 = value,
        Err(i) => labels.insert(i, (name.to_string(), value)),
    }
}

/// Inserts `name=value` into sorted `labels` unless the name is already there.
pub fn add_label_if_absent(labels: &mut Labels, name: &str, value: String) {
    if let Err(i) = labels.binary_search_by(|(n, _)| n.as_str().cmp(name)) {
        labels.insert(i, (name.to_string(), value));
    }
}
