//! Table tests: OTLP JSON fixtures in `testdata/prom/` → expected Prometheus series.

use super::*;
use serde_json::Value;
use std::path::PathBuf;

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testdata/prom")
}

/// The first request of fixture `name` (for the exporters' tests).
pub(crate) fn fixture(name: &str) -> ExportMetricsServiceRequest {
    let path = fixture_dir().join(name);
    let v: Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("fixture")).expect("json");
    serde_json::from_value(v["requests"][0].clone()).expect("OTLP JSON")
}

/// Renders labels as `{a="1",b="2"}` (sorted, `extra` merged in sorted position).
fn render_labels(labels: &Labels, extra: Option<(&str, String)>) -> String {
    let mut all = labels.clone();
    if let Some((k, v)) = extra {
        set_label(&mut all, k, v);
    }
    let inner: Vec<String> = all.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    format!("{{{}}}", inner.join(","))
}

/// Flattens families into `name{labels} value` lines, the way Prometheus shows series.
pub(super) fn flatten(families: &[Family]) -> Vec<String> {
    let mut out = Vec::new();
    for f in families {
        for p in &f.points {
            let plain = render_labels(&p.labels, None);
            match &p.value {
                PointValue::Number(v) => {
                    out.push(format!("{}{plain} {}", f.name, model::format_float(*v)))
                }
                PointValue::Histogram {
                    count,
                    sum,
                    buckets,
                } => {
                    for (le, c) in buckets {
                        let l = render_labels(&p.labels, Some(("le", model::format_float(*le))));
                        out.push(format!("{}_bucket{l} {c}", f.name));
                    }
                    if let Some(s) = sum {
                        out.push(format!("{}_sum{plain} {}", f.name, model::format_float(*s)));
                    }
                    out.push(format!("{}_count{plain} {count}", f.name));
                }
                PointValue::Summary {
                    count,
                    sum,
                    quantiles,
                } => {
                    for (q, v) in quantiles {
                        let l =
                            render_labels(&p.labels, Some(("quantile", model::format_float(*q))));
                        out.push(format!("{}{l} {}", f.name, model::format_float(*v)));
                    }
                    out.push(format!(
                        "{}_sum{plain} {}",
                        f.name,
                        model::format_float(*sum)
                    ));
                    out.push(format!("{}_count{plain} {count}", f.name));
                }
            }
        }
    }
    out
}

fn options(v: &Value) -> TranslateOptions {
    let mut o = TranslateOptions::default();
    if let Some(ns) = v.get("namespace").and_then(Value::as_str) {
        o.namespace = ns.into();
    }
    if let Some(b) = v.get("add_metric_suffixes").and_then(Value::as_bool) {
        o.add_metric_suffixes = b;
    }
    if let Some(b) = v.get("resource_to_telemetry").and_then(Value::as_bool) {
        o.resource_to_telemetry = b;
    }
    // `false`, or the exporter whose rule applies: "scrape" or "remote_write" (the default).
    match v.get("target_info") {
        None => {}
        Some(Value::Bool(false)) => o.target_info = TargetInfo::Off,
        Some(Value::String(s)) if s == "scrape" => o.target_info = TargetInfo::Identified,
        Some(Value::String(s)) if s == "remote_write" => o.target_info = TargetInfo::Descriptive,
        Some(other) => panic!("options.target_info: {other}"),
    }
    if let Some(m) = v.get("delta_temporality") {
        o.delta_mode = serde_json::from_value(m.clone()).expect("delta mode");
    }
    if let Some(n) = v.get("max_series_per_metric").and_then(Value::as_u64) {
        o.max_series_per_metric = n as usize;
    }
    o
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .expect("array of strings")
        .iter()
        .map(|s| s.as_str().expect("string").to_string())
        .collect()
}

#[test]
fn fixtures_translate_to_the_expected_series() {
    let mut files: Vec<_> = std::fs::read_dir(fixture_dir())
        .expect("testdata/prom exists")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(files.len() >= 7, "fixtures missing: {files:?}");
    for path in files {
        let name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        let text = std::fs::read_to_string(&path).expect("read fixture");
        let fixture: Value = serde_json::from_str(&text).expect("fixture JSON");
        let metrics = SelfMetrics::default();
        let mut t = Translator::new(
            options(&fixture["options"]),
            DropCounters::new(&metrics, "t"),
        );
        let requests = fixture["requests"].as_array().expect("requests");
        let mut last = Vec::new();
        for (i, req) in requests.iter().enumerate() {
            let req: ExportMetricsServiceRequest = serde_json::from_value(req.clone())
                .unwrap_or_else(|e| panic!("{name}: request {i}: {e}"));
            last = t.translate(&req);
            if let Some(per) = fixture.get("expected_per_request") {
                assert_eq!(
                    sorted(flatten(&last)),
                    sorted(strings(&per[i])),
                    "{name}: request {i}"
                );
            }
        }
        if let Some(expected) = fixture.get("expected") {
            assert_eq!(sorted(flatten(&last)), sorted(strings(expected)), "{name}");
        }
        if let Some(types) = fixture.get("types").and_then(Value::as_object) {
            for (fam, kind) in types {
                let f = last
                    .iter()
                    .find(|f| &f.name == fam)
                    .unwrap_or_else(|| panic!("{name}: no family {fam}"));
                assert_eq!(
                    f.kind.as_str(),
                    kind.as_str().unwrap_or_default(),
                    "{name}: {fam}"
                );
            }
        }
        if let Some(ex) = fixture.get("exemplars") {
            let got: Vec<String> = last
                .iter()
                .flat_map(|f| {
                    f.points
                        .iter()
                        .flat_map(move |p| p.exemplars.iter().map(move |e| (f, e)))
                })
                .map(|(f, e)| {
                    let l: Vec<String> = e.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    format!(
                        "{} {} {}",
                        f.name,
                        model::format_float(e.value),
                        l.join(",")
                    )
                })
                .collect();
            assert_eq!(got, strings(ex), "{name}: exemplars");
        }
        let dropped = fixture
            .get("dropped")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        for reason in DropReason::ALL {
            let want = dropped
                .get(reason.as_str())
                .and_then(Value::as_u64)
                .unwrap_or(0);
            assert_eq!(
                t.drops().get(reason),
                want,
                "{name}: dropped {}",
                reason.as_str()
            );
        }
    }
}

#[test]
fn exponential_histogram_downscales_wide_points() {
    use opentelemetry_proto::tonic::metrics::v1::exponential_histogram_data_point::Buckets;
    let dp = ExponentialHistogramDataPoint {
        count: 400,
        scale: 3,
        positive: Some(Buckets {
            offset: -5,
            bucket_counts: vec![1; 400],
        }),
        ..Default::default()
    };
    let classic = exp_to_classic(&dp);
    assert!(
        classic.explicit_bounds.len() <= MAX_EXP_BUCKETS,
        "{}",
        classic.explicit_bounds.len()
    );
    assert_eq!(classic.bucket_counts.iter().sum::<u64>(), 400);
    assert!(classic.explicit_bounds.windows(2).all(|w| w[0] < w[1]));
    // Every bucket's upper bound must be >= the original upper bound of the buckets it holds:
    // the last original bucket index is -5 + 399 at scale 3.
    let top = 2f64.powf((-5.0 + 399.0 + 1.0) / 8.0);
    assert!(*classic.explicit_bounds.last().unwrap_or(&0.0) >= top * 0.999_999);
}

/// Bucket indexes up to `i32::MAX` are valid; downscaling them must not overflow (it did, in
/// `offset + len`, panicking in debug builds and failing "capacity overflow" in release).
#[test]
fn exponential_histogram_at_the_index_limit_downscales_without_overflow() {
    use opentelemetry_proto::tonic::metrics::v1::exponential_histogram_data_point::Buckets;
    let (offset, counts) = downscale(i32::MAX - 199, &[1; 200]);
    assert_eq!(offset, (i32::MAX - 199) >> 1);
    assert_eq!(counts.iter().sum::<u64>(), 200);
    assert_eq!(counts.len(), 100);
    let (offset, counts) = downscale(i32::MIN, &[2; 300]);
    assert_eq!(offset, i32::MIN >> 1);
    assert_eq!(counts.iter().sum::<u64>(), 600);
    let dp = ExponentialHistogramDataPoint {
        count: 400,
        scale: 0,
        positive: Some(Buckets {
            offset: i32::MAX - 199,
            bucket_counts: vec![1; 200],
        }),
        negative: Some(Buckets {
            offset: i32::MAX - 199,
            bucket_counts: vec![1; 200],
        }),
        ..Default::default()
    };
    let classic = exp_to_classic(&dp);
    assert_eq!(classic.bucket_counts.iter().sum::<u64>(), 400);
}

/// Bucket counts whose total passes `u64::MAX` (a malformed point; found by `make fuzz`,
/// `testdata/fuzz/prometheus_translate/crash-6c06…`) saturate instead of panicking.
#[test]
fn exponential_histogram_counts_summing_past_u64_saturate() {
    use opentelemetry_proto::tonic::metrics::v1::exponential_histogram_data_point::Buckets;
    let dp = ExponentialHistogramDataPoint {
        count: 5,
        zero_count: u64::MAX,
        positive: Some(Buckets {
            offset: 0,
            bucket_counts: vec![u64::MAX, 3],
        }),
        ..Default::default()
    };
    let classic = exp_to_classic(&dp);
    assert_eq!(classic.count, 5);
    assert_eq!(
        classic.bucket_counts.last(),
        Some(&0),
        "nothing left for +Inf"
    );
}

/// A point whose bucket indexes leave the int32 range is dropped (`invalid_point`), the other
/// points of the request are translated.
#[test]
fn exponential_histogram_beyond_the_index_limit_is_dropped_and_counted() {
    use opentelemetry_proto::tonic::metrics::v1::exponential_histogram_data_point::Buckets;
    use opentelemetry_proto::tonic::metrics::v1::{
        ExponentialHistogram, Gauge, Metric, ResourceMetrics, ScopeMetrics,
    };
    let bad = ExponentialHistogramDataPoint {
        count: 500,
        time_unix_nano: 1_000_000,
        positive: Some(Buckets {
            offset: i32::MAX - 2,
            bucket_counts: vec![1; 500],
        }),
        ..Default::default()
    };
    let req = ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![
                    Metric {
                        name: "latency".into(),
                        data: Some(Data::ExponentialHistogram(ExponentialHistogram {
                            data_points: vec![bad],
                            aggregation_temporality: AGG_CUMULATIVE,
                        })),
                        ..Default::default()
                    },
                    Metric {
                        name: "up".into(),
                        data: Some(Data::Gauge(Gauge {
                            data_points: vec![NumberDataPoint {
                                value: Some(number_data_point::Value::AsInt(1)),
                                time_unix_nano: 1_000_000,
                                ..Default::default()
                            }],
                        })),
                        ..Default::default()
                    },
                ],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let metrics = SelfMetrics::default();
    let mut t = Translator::new(
        TranslateOptions::default(),
        DropCounters::new(&metrics, "t"),
    );
    let fams = t.translate(&req);
    assert_eq!(flatten(&fams), vec!["up{} 1".to_string()]);
    assert_eq!(t.drops().get(DropReason::InvalidPoint), 1);
}

#[test]
fn stale_points_are_marked() {
    use opentelemetry_proto::tonic::metrics::v1::{Gauge, Metric, ResourceMetrics, ScopeMetrics};
    let req = ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: "g".into(),
                    data: Some(Data::Gauge(Gauge {
                        data_points: vec![NumberDataPoint {
                            flags: 1,
                            time_unix_nano: 5_000_000,
                            ..Default::default()
                        }],
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let metrics = SelfMetrics::default();
    let mut t = Translator::new(
        TranslateOptions::default(),
        DropCounters::new(&metrics, "t"),
    );
    let fams = t.translate(&req);
    assert_eq!(fams.len(), 1);
    assert!(fams[0].points[0].stale);
    assert_eq!(fams[0].points[0].timestamp_ms, 5);
}
