//! The detector's own telemetry in the Prometheus text format (`/metrics`): per-series
//! `anomaly_score`, `anomaly_expected_value`, `anomaly_lower_bound`, `anomaly_upper_bound`,
//! `anomaly_observed_value` and `anomaly_firing` gauges (series labels + `detection`), plus cycle
//! duration histogram, cycles, series/points evaluated, failures by reason, series by model kind
//! and alerts sent.
//!
//! Tests: `cargo test -p anomaly-detector metrics::`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

use crate::prometheus::Labels;
use crate::state::{CycleStatus, Store};

/// Upper bounds (seconds) of the cycle duration histogram.
const CYCLE_BUCKETS: [f64; 12] = [
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

#[derive(Debug, Default, Clone)]
struct Histogram {
    counts: [u64; CYCLE_BUCKETS.len()],
    count: u64,
    sum: f64,
}

#[derive(Debug, Default)]
struct Inner {
    cycles: BTreeMap<(String, &'static str), u64>,
    cycle_duration: BTreeMap<String, Histogram>,
    series_evaluated: BTreeMap<String, u64>,
    points_evaluated: BTreeMap<String, u64>,
    failures: BTreeMap<(String, String), u64>,
    alerts_sent: BTreeMap<(String, &'static str), u64>,
    alert_failures: BTreeMap<(String, &'static str), u64>,
}

/// Counters and histograms of the service; cheap to update from any task.
#[derive(Debug, Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

impl Metrics {
    fn with<R>(&self, f: impl FnOnce(&mut Inner) -> R) -> R {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut g)
    }

    /// Records a finished cycle.
    pub fn cycle(&self, detection: &str, duration: Duration, success: bool) {
        let secs = duration.as_secs_f64();
        self.with(|m| {
            let outcome = if success { "success" } else { "failure" };
            *m.cycles
                .entry((detection.to_string(), outcome))
                .or_default() += 1;
            let h = m.cycle_duration.entry(detection.to_string()).or_default();
            for (i, b) in CYCLE_BUCKETS.iter().enumerate() {
                if secs <= *b {
                    h.counts[i] += 1;
                }
            }
            h.count += 1;
            h.sum += secs;
        });
    }

    /// Counts series and points fed to models in a cycle.
    pub fn evaluated(&self, detection: &str, series: u64, points: u64) {
        self.with(|m| {
            *m.series_evaluated.entry(detection.to_string()).or_default() += series;
            *m.points_evaluated.entry(detection.to_string()).or_default() += points;
        });
    }

    /// Counts a failure (`connect`, `timeout`, `http_5xx`, `series_limit`, ...).
    pub fn failure(&self, detection: &str, reason: &str, n: u64) {
        self.with(|m| {
            *m.failures
                .entry((detection.to_string(), reason.to_string()))
                .or_default() += n;
        });
    }

    /// Counts alerts delivered to `sink` with `status` (`firing`/`resolved`).
    pub fn alert_sent(&self, sink: &str, status: &'static str, n: u64) {
        self.with(|m| *m.alerts_sent.entry((sink.to_string(), status)).or_default() += n);
    }

    /// Counts alerts that could not be delivered to `sink`.
    pub fn alert_failed(&self, sink: &str, reason: &'static str, n: u64) {
        self.with(|m| {
            *m.alert_failures
                .entry((sink.to_string(), reason))
                .or_default() += n
        });
    }

    /// Total failures of `detection` with `reason` (for tests and health).
    pub fn failures(&self, detection: &str, reason: &str) -> u64 {
        self.with(|m| {
            m.failures
                .get(&(detection.to_string(), reason.to_string()))
                .copied()
                .unwrap_or(0)
        })
    }

    /// Renders everything, including the per-series gauges from `store`, as Prometheus text.
    pub fn render(&self, store: &Store) -> String {
        let mut out = String::with_capacity(16 * 1024);
        let detections = store.detections();

        type Pick = fn(&crate::state::SeriesSnapshot) -> f64;
        let gauges: [(&str, &str, Pick); 6] = [
            (
                "anomaly_score",
                "Anomaly score in [0,1] of the latest point of the series.",
                |s| s.score,
            ),
            (
                "anomaly_expected_value",
                "Value the model expected for the latest point.",
                |s| s.expected,
            ),
            (
                "anomaly_lower_bound",
                "Lower edge of the prediction interval for the latest point.",
                |s| s.lower,
            ),
            (
                "anomaly_upper_bound",
                "Upper edge of the prediction interval for the latest point.",
                |s| s.upper,
            ),
            (
                "anomaly_observed_value",
                "Observed value of the latest point.",
                |s| s.value,
            ),
            (
                "anomaly_firing",
                "1 while an anomaly alert fires for the series.",
                |s| f64::from(u8::from(s.firing)),
            ),
        ];
        for (name, help, pick) in gauges {
            header(&mut out, name, help, "gauge");
            for d in &detections {
                for s in &d.series {
                    sample(&mut out, name, &series_labels(&d.name, &s.labels), pick(s));
                }
            }
        }

        header(
            &mut out,
            "anomaly_detector_series",
            "Series tracked per detection and model kind (warming_up, robust_mad: too little history; holt: no season detected yet; holt_winters).",
            "gauge",
        );
        for d in &detections {
            let mut by_model: BTreeMap<&str, u64> = BTreeMap::new();
            for s in &d.series {
                *by_model.entry(s.model).or_default() += 1;
            }
            for (model, n) in by_model {
                sample(
                    &mut out,
                    "anomaly_detector_series",
                    &format!("detection=\"{}\",model=\"{}\"", escape(&d.name), model),
                    n as f64,
                );
            }
        }
        header(
            &mut out,
            "anomaly_detector_last_cycle_success",
            "1 when the detection's last cycle succeeded, 0 when it failed, -1 before the first.",
            "gauge",
        );
        header(
            &mut out,
            "anomaly_detector_last_success_timestamp_seconds",
            "Unix time of the detection's last successful cycle.",
            "gauge",
        );
        for d in &detections {
            let l = format!("detection=\"{}\"", escape(&d.name));
            let v = match d.cycle.status {
                CycleStatus::Pending => -1.0,
                CycleStatus::Success => 1.0,
                CycleStatus::Failure => 0.0,
            };
            sample(&mut out, "anomaly_detector_last_cycle_success", &l, v);
            if let Some(t) = d.cycle.last_success {
                sample(
                    &mut out,
                    "anomaly_detector_last_success_timestamp_seconds",
                    &l,
                    t as f64,
                );
            }
        }

        let m = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        header(
            &mut out,
            "anomaly_detector_cycle_duration_seconds",
            "Duration of evaluation cycles (query, model updates, alerts).",
            "histogram",
        );
        for (d, h) in &m.cycle_duration {
            let base = format!("detection=\"{}\"", escape(d));
            for (i, b) in CYCLE_BUCKETS.iter().enumerate() {
                sample(
                    &mut out,
                    "anomaly_detector_cycle_duration_seconds_bucket",
                    &format!("{base},le=\"{b}\""),
                    h.counts[i] as f64,
                );
            }
            sample(
                &mut out,
                "anomaly_detector_cycle_duration_seconds_bucket",
                &format!("{base},le=\"+Inf\""),
                h.count as f64,
            );
            sample(
                &mut out,
                "anomaly_detector_cycle_duration_seconds_sum",
                &base,
                h.sum,
            );
            sample(
                &mut out,
                "anomaly_detector_cycle_duration_seconds_count",
                &base,
                h.count as f64,
            );
        }
        counter(
            &mut out,
            "anomaly_detector_cycles_total",
            "Evaluation cycles by outcome.",
            m.cycles
                .iter()
                .map(|((d, o), v)| (format!("detection=\"{}\",outcome=\"{o}\"", escape(d)), *v)),
        );
        counter(
            &mut out,
            "anomaly_detector_series_evaluated_total",
            "Series evaluated (one per series per cycle with new points).",
            m.series_evaluated
                .iter()
                .map(|(d, v)| (format!("detection=\"{}\"", escape(d)), *v)),
        );
        counter(
            &mut out,
            "anomaly_detector_points_evaluated_total",
            "Points fed to the models, history replays included.",
            m.points_evaluated
                .iter()
                .map(|(d, v)| (format!("detection=\"{}\"", escape(d)), *v)),
        );
        counter(&mut out, "anomaly_detector_failures_total", "Failures by detection and reason (connect, timeout, http_5xx, http_4xx, decode, series_limit, model_panic, ...).",
            m.failures.iter().map(|((d, r), v)| (format!("detection=\"{}\",reason=\"{}\"", escape(d), escape(r)), *v)));
        counter(
            &mut out,
            "anomaly_detector_alerts_sent_total",
            "Alerts delivered by sink and status.",
            m.alerts_sent
                .iter()
                .map(|((s, st), v)| (format!("sink=\"{}\",status=\"{st}\"", escape(s)), *v)),
        );
        counter(
            &mut out,
            "anomaly_detector_alert_failures_total",
            "Alerts that could not be delivered, by sink and reason.",
            m.alert_failures
                .iter()
                .map(|((s, r), v)| (format!("sink=\"{}\",reason=\"{r}\"", escape(s)), *v)),
        );
        out
    }
}

fn header(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn counter(out: &mut String, name: &str, help: &str, rows: impl Iterator<Item = (String, u64)>) {
    header(out, name, help, "counter");
    for (labels, v) in rows {
        sample(out, name, &labels, v as f64);
    }
}

fn sample(out: &mut String, name: &str, labels: &str, value: f64) {
    let v = if value.is_nan() {
        "NaN".to_string()
    } else if value.is_infinite() {
        if value > 0.0 { "+Inf" } else { "-Inf" }.to_string()
    } else {
        value.to_string()
    };
    if labels.is_empty() {
        let _ = writeln!(out, "{name} {v}");
    } else {
        let _ = writeln!(out, "{name}{{{labels}}} {v}");
    }
}

/// `detection="..."` followed by the series labels; `__name__` is dropped and a series label
/// called `detection` is renamed `exported_detection`.
fn series_labels(detection: &str, labels: &Labels) -> String {
    let mut s = format!("detection=\"{}\"", escape(detection));
    for (k, v) in labels {
        if k == "__name__" {
            continue;
        }
        let key = if k == "detection" {
            "exported_detection"
        } else {
            k
        };
        let _ = write!(s, ",{key}=\"{}\"", escape(v));
    }
    s
}

/// Escapes a label value for the text format.
fn escape(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{DetectionSnapshot, SeriesSnapshot};

    #[test]
    fn renders_series_gauges_and_counters() {
        let store = Store::new(["lat"], 10);
        let mut labels = Labels::new();
        labels.insert("job".into(), "shop\"x".into());
        labels.insert("__name__".into(), "m".into());
        store.publish(DetectionSnapshot {
            name: "lat".into(),
            series: vec![SeriesSnapshot {
                labels,
                timestamp: 1,
                value: 5.0,
                expected: 1.0,
                lower: 0.5,
                upper: 1.5,
                score: 0.9,
                anomalous: true,
                model: "holt_winters",
                firing: true,
            }],
            firing: vec![],
            cycle: Default::default(),
        });
        let m = Metrics::default();
        m.cycle("lat", Duration::from_millis(30), true);
        m.failure("lat", "connect", 2);
        m.alert_sent("alertmanager", "firing", 1);
        let text = m.render(&store);
        assert!(
            text.contains("anomaly_score{detection=\"lat\",job=\"shop\\\"x\"} 0.9"),
            "{text}"
        );
        assert!(text.contains("anomaly_lower_bound{detection=\"lat\",job=\"shop\\\"x\"} 0.5"));
        assert!(
            text.contains("anomaly_detector_series{detection=\"lat\",model=\"holt_winters\"} 1")
        );
        assert!(text.contains(
            "anomaly_detector_cycle_duration_seconds_bucket{detection=\"lat\",le=\"0.05\"} 1"
        ));
        assert!(text.contains(
            "anomaly_detector_cycle_duration_seconds_bucket{detection=\"lat\",le=\"0.025\"} 0"
        ));
        assert!(text
            .contains("anomaly_detector_failures_total{detection=\"lat\",reason=\"connect\"} 2"));
        assert!(text.contains(
            "anomaly_detector_alerts_sent_total{sink=\"alertmanager\",status=\"firing\"} 1"
        ));
        assert!(!text.contains("__name__"));
        assert_eq!(m.failures("lat", "connect"), 2);
    }
}
