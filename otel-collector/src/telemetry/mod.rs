//! The collector's own metrics, served in Prometheus text format on :8888 `/metrics`.
//!
//! Components create their instruments once at start-up (labels fixed then, so the hot path is a
//! single atomic add) from the process-wide [`SelfMetrics::global`] registry. Names follow the
//! upstream collector's (`otelcol_receiver_accepted_spans`, `otelcol_exporter_queue_size`, ...).
//!
//! Tests: `cargo test -p otel-collector telemetry`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

/// A monotonically increasing count.
#[derive(Clone, Debug, Default)]
pub struct Counter(Arc<AtomicU64>);

impl Counter {
    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    /// Current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down.
#[derive(Clone, Debug, Default)]
pub struct Gauge(Arc<AtomicI64>);

impl Gauge {
    /// Sets the value.
    pub fn set(&self, v: i64) {
        self.0.store(v, Ordering::Relaxed);
    }
    /// Adds `n` (may be negative).
    pub fn add(&self, n: i64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    /// Current value.
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A cumulative histogram with fixed bucket upper bounds.
#[derive(Clone, Debug)]
pub struct Histogram(Arc<HistogramState>);

#[derive(Debug)]
struct HistogramState {
    bounds: Vec<f64>,
    buckets: Vec<AtomicU64>,
    count: AtomicU64,
    /// Sum stored as f64 bits, updated with a CAS loop.
    sum_bits: AtomicU64,
}

impl Histogram {
    fn new(bounds: &[f64]) -> Self {
        Histogram(Arc::new(HistogramState {
            bounds: bounds.to_vec(),
            buckets: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_bits: AtomicU64::new(0f64.to_bits()),
        }))
    }

    /// Records one observation.
    pub fn observe(&self, v: f64) {
        let s = &self.0;
        if let Some(i) = s.bounds.iter().position(|b| v <= *b) {
            s.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        s.count.fetch_add(1, Ordering::Relaxed);
        let mut cur = s.sum_bits.load(Ordering::Relaxed);
        loop {
            let new = (f64::from_bits(cur) + v).to_bits();
            match s
                .sum_bits
                .compare_exchange_weak(cur, new, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => break,
                Err(actual) => cur = actual,
            }
        }
    }

    /// Number of observations so far.
    pub fn count(&self) -> u64 {
        self.0.count.load(Ordering::Relaxed)
    }
}

/// Label pairs of one series, in the order given at creation.
pub type Labels = Vec<(&'static str, String)>;

enum Instrument {
    Counter(Counter),
    Gauge(Gauge),
    /// A gauge computed at scrape time (process RSS, CPU).
    GaugeFn(Arc<dyn Fn() -> f64 + Send + Sync>),
    Histogram(Histogram),
}

struct Family {
    help: &'static str,
    kind: &'static str,
    series: Vec<(Labels, Instrument)>,
}

/// A registry of the collector's own instruments.
#[derive(Default)]
pub struct SelfMetrics {
    families: Mutex<BTreeMap<&'static str, Family>>,
}

impl std::fmt::Debug for SelfMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SelfMetrics").finish_non_exhaustive()
    }
}

impl SelfMetrics {
    /// The process-wide registry served on the telemetry endpoint.
    pub fn global() -> &'static SelfMetrics {
        static GLOBAL: OnceLock<SelfMetrics> = OnceLock::new();
        GLOBAL.get_or_init(SelfMetrics::default)
    }

    /// Returns the counter `name{labels}`, creating it on first use.
    pub fn counter(&self, name: &'static str, help: &'static str, labels: Labels) -> Counter {
        self.get_or_insert(
            name,
            help,
            "counter",
            labels,
            || Instrument::Counter(Counter::default()),
            |i| match i {
                Instrument::Counter(c) => Some(c.clone()),
                _ => None,
            },
        )
    }

    /// Returns the gauge `name{labels}`, creating it on first use.
    pub fn gauge(&self, name: &'static str, help: &'static str, labels: Labels) -> Gauge {
        self.get_or_insert(
            name,
            help,
            "gauge",
            labels,
            || Instrument::Gauge(Gauge::default()),
            |i| match i {
                Instrument::Gauge(g) => Some(g.clone()),
                _ => None,
            },
        )
    }

    /// Registers a gauge whose value is computed by `f` at each scrape (replaces an earlier one).
    pub fn gauge_fn(
        &self,
        name: &'static str,
        help: &'static str,
        labels: Labels,
        f: impl Fn() -> f64 + Send + Sync + 'static,
    ) {
        let mut families = self.lock();
        let family = families.entry(name).or_insert_with(|| Family {
            help,
            kind: "gauge",
            series: Vec::new(),
        });
        family.series.retain(|(l, _)| *l != labels);
        family
            .series
            .push((labels, Instrument::GaugeFn(Arc::new(f))));
    }

    /// Returns the histogram `name{labels}` with bucket upper `bounds`, creating it on first use.
    pub fn histogram(
        &self,
        name: &'static str,
        help: &'static str,
        labels: Labels,
        bounds: &[f64],
    ) -> Histogram {
        self.get_or_insert(
            name,
            help,
            "histogram",
            labels,
            || Instrument::Histogram(Histogram::new(bounds)),
            |i| match i {
                Instrument::Histogram(h) => Some(h.clone()),
                _ => None,
            },
        )
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<&'static str, Family>> {
        // A panic while holding the lock cannot leave the map half-updated in a harmful way.
        self.families.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn get_or_insert<T>(
        &self,
        name: &'static str,
        help: &'static str,
        kind: &'static str,
        labels: Labels,
        make: impl FnOnce() -> Instrument,
        extract: impl Fn(&Instrument) -> Option<T>,
    ) -> T {
        let mut families = self.lock();
        let family = families.entry(name).or_insert_with(|| Family {
            help,
            kind,
            series: Vec::new(),
        });
        if let Some(found) = family
            .series
            .iter()
            .find(|(l, _)| *l == labels)
            .and_then(|(_, i)| extract(i))
        {
            return found;
        }
        let instrument = make();
        let handle = extract(&instrument).expect("constructor builds the requested kind");
        family.series.push((labels, instrument));
        handle
    }

    /// Renders every instrument in the Prometheus text exposition format (0.0.4).
    pub fn render(&self) -> String {
        let families = self.lock();
        let mut out = String::with_capacity(4096);
        for (name, family) in families.iter() {
            let name = exposition_name(name, family.kind);
            let _ = writeln!(out, "# HELP {name} {}", family.help);
            let _ = writeln!(out, "# TYPE {name} {}", family.kind);
            for (labels, instrument) in &family.series {
                render_series(&mut out, &name, labels, instrument);
            }
        }
        out
    }
}

/// Counters are exposed with the `_total` suffix, as Prometheus naming and the upstream collector's
/// current exposition do (`otelcol_receiver_accepted_spans_total`); instruments are registered
/// under the base name.
fn exposition_name(name: &str, kind: &str) -> std::borrow::Cow<'static, str> {
    if kind == "counter" && !name.ends_with("_total") {
        format!("{name}_total").into()
    } else {
        name.to_owned().into()
    }
}

fn render_series(out: &mut String, name: &str, labels: &Labels, instrument: &Instrument) {
    match instrument {
        Instrument::Counter(c) => write_sample(out, name, "", labels, None, c.get() as f64),
        Instrument::Gauge(g) => write_sample(out, name, "", labels, None, g.get() as f64),
        Instrument::GaugeFn(f) => write_sample(out, name, "", labels, None, f()),
        Instrument::Histogram(h) => {
            let s = &h.0;
            let mut cumulative = 0u64;
            for (bound, bucket) in s.bounds.iter().zip(&s.buckets) {
                cumulative += bucket.load(Ordering::Relaxed);
                let le = format_value(*bound);
                write_sample(out, name, "_bucket", labels, Some(&le), cumulative as f64);
            }
            let count = s.count.load(Ordering::Relaxed);
            write_sample(out, name, "_bucket", labels, Some("+Inf"), count as f64);
            let sum = f64::from_bits(s.sum_bits.load(Ordering::Relaxed));
            write_sample(out, name, "_sum", labels, None, sum);
            write_sample(out, name, "_count", labels, None, count as f64);
        }
    }
}

fn write_sample(
    out: &mut String,
    name: &str,
    suffix: &str,
    labels: &Labels,
    le: Option<&str>,
    v: f64,
) {
    out.push_str(name);
    out.push_str(suffix);
    if !labels.is_empty() || le.is_some() {
        out.push('{');
        let mut first = true;
        let pairs = labels
            .iter()
            .map(|(k, v)| (*k, v.as_str()))
            .chain(le.map(|le| ("le", le)));
        for (k, v) in pairs {
            if !first {
                out.push(',');
            }
            first = false;
            let _ = write!(out, "{k}=\"{}\"", escape_label(v));
        }
        out.push('}');
    }
    let _ = writeln!(out, " {}", format_value(v));
}

fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn format_value(v: f64) -> String {
    if v.is_infinite() {
        if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_with_same_labels_share_state() {
        let m = SelfMetrics::default();
        let a = m.counter(
            "otelcol_receiver_accepted_spans",
            "h",
            vec![("receiver", "otlp".into())],
        );
        let b = m.counter(
            "otelcol_receiver_accepted_spans",
            "h",
            vec![("receiver", "otlp".into())],
        );
        a.add(2);
        b.add(3);
        assert_eq!(a.get(), 5);
        let text = m.render();
        assert!(
            text.contains("# TYPE otelcol_receiver_accepted_spans_total counter"),
            "{text}"
        );
        assert!(
            text.contains("otelcol_receiver_accepted_spans_total{receiver=\"otlp\"} 5\n"),
            "{text}"
        );
    }

    #[test]
    fn histogram_renders_cumulative_buckets() {
        let m = SelfMetrics::default();
        let h = m.histogram(
            "otelcol_processor_batch_batch_send_size",
            "h",
            vec![],
            &[10.0, 100.0],
        );
        h.observe(5.0);
        h.observe(50.0);
        h.observe(500.0);
        let text = m.render();
        assert!(
            text.contains("otelcol_processor_batch_batch_send_size_bucket{le=\"10\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("otelcol_processor_batch_batch_send_size_bucket{le=\"100\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("otelcol_processor_batch_batch_send_size_bucket{le=\"+Inf\"} 3\n"),
            "{text}"
        );
        assert!(
            text.contains("otelcol_processor_batch_batch_send_size_sum 555\n"),
            "{text}"
        );
    }

    #[test]
    fn label_values_are_escaped() {
        let m = SelfMetrics::default();
        m.gauge("g", "h", vec![("k", "a\"b\\c".into())]).set(1);
        assert!(m.render().contains("g{k=\"a\\\"b\\\\c\"} 1\n"));
    }
}
