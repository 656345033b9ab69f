use super::*;
use crate::connector::testing::{
    attr, failed, histograms, labels, metrics, request, span, sums, with_attrs,
};
use opentelemetry_proto::tonic::trace::v1::span::{Event, SpanKind};

fn config(yaml: &str) -> SpanMetricsConfig {
    let c: SpanMetricsConfig =
        crate::config::parse_component(serde_yaml::from_str(yaml).unwrap()).unwrap();
    c.validate().unwrap();
    c
}

fn collect(sm: &SpanMetrics, unix: u64) -> ExportMetricsServiceRequest {
    sm.collect(Instant::now(), unix).expect("metrics")
}

const CALLS: &str = "traces.span.metrics.calls";
const DURATION: &str = "traces.span.metrics.duration";

#[test]
fn counts_calls_and_buckets_durations_per_service_span_kind_and_status() {
    let sm = SpanMetrics::new("t", &config("{}"));
    let req = request(vec![
        (
            "frontend",
            vec![
                span(1, 1, 0, SpanKind::Server, "GET /orders", 1_000),
                span(1, 2, 1, SpanKind::Client, "GET inventory", 3_000),
                failed(span(2, 3, 0, SpanKind::Server, "GET /orders", 60_000)),
            ],
        ),
        (
            "inventory",
            vec![span(1, 4, 2, SpanKind::Server, "GET /stock", 20_000_000)],
        ),
    ]);
    sm.ingest(&req, Instant::now());
    let out = collect(&sm, 5);
    assert_eq!(
        sums(&out, CALLS),
        vec![
            ("service.name=frontend,span.kind=SPAN_KIND_CLIENT,span.name=GET inventory,status.code=STATUS_CODE_UNSET".into(), 1),
            ("service.name=frontend,span.kind=SPAN_KIND_SERVER,span.name=GET /orders,status.code=STATUS_CODE_ERROR".into(), 1),
            ("service.name=frontend,span.kind=SPAN_KIND_SERVER,span.name=GET /orders,status.code=STATUS_CODE_UNSET".into(), 1),
            ("service.name=inventory,span.kind=SPAN_KIND_SERVER,span.name=GET /stock,status.code=STATUS_CODE_UNSET".into(), 1),
        ]
    );
    let h = histograms(&out, DURATION);
    let bucket = |i: usize| {
        let mut b = vec![0u64; 17];
        b[i] = 1;
        b
    };
    // 3 ms in (2, 4]; 1 ms in (0, 2]; 60 ms in (50, 100]; 20 s above 15 s.
    assert_eq!(h[0].1, bucket(1));
    assert_eq!(h[0].2, 3.0);
    assert_eq!(h[1].1, bucket(6));
    assert_eq!(h[2].1, bucket(0));
    assert_eq!(h[3].1, bucket(16));
    assert_eq!(h[3].2, 20_000.0);
    let m = metrics(&out, DURATION)[0];
    assert_eq!(m.unit, "ms");
    let Some(Data::Histogram(hist)) = &m.data else {
        panic!("histogram")
    };
    assert_eq!(hist.data_points[0].explicit_bounds[..3], [2.0, 4.0, 6.0]);
    assert_eq!(hist.data_points[0].explicit_bounds.len(), 16);
    assert_eq!(
        hist.aggregation_temporality,
        AggregationTemporality::Cumulative as i32
    );
    // The span's resource is the metrics' resource.
    let mut resources: Vec<String> = out
        .resource_metrics
        .iter()
        .map(|rm| labels(&rm.resource.as_ref().unwrap().attributes))
        .collect();
    resources.sort();
    assert_eq!(
        resources,
        vec![
            "service.instance.id=frontend-1,service.name=frontend",
            "service.instance.id=inventory-1,service.name=inventory"
        ]
    );
    let Some(Data::Sum(s)) = &metrics(&out, CALLS)[0].data else {
        panic!("sum")
    };
    assert!(s.is_monotonic);
}

#[test]
fn unit_seconds_scales_buckets_and_values() {
    let sm = SpanMetrics::new("t", &config("histogram: {unit: s}"));
    sm.ingest(
        &request(vec![(
            "a",
            vec![span(1, 1, 0, SpanKind::Server, "x", 1_500_000)],
        )]),
        Instant::now(),
    );
    let out = collect(&sm, 5);
    let m = metrics(&out, DURATION)[0];
    assert_eq!(m.unit, "s");
    let Some(Data::Histogram(h)) = &m.data else {
        panic!("histogram")
    };
    let p = &h.data_points[0];
    assert_eq!(p.explicit_bounds[0], 0.002);
    assert_eq!(p.explicit_bounds[15], 15.0);
    assert_eq!(p.sum, Some(1.5));
    // 1.5 s in (1.4, 2]: bounds index 11 (0.002 … 1.4 are 0..=11, 2 is 12).
    assert_eq!(p.bucket_counts[12], 1);
    assert_eq!(p.bucket_counts.iter().sum::<u64>(), 1);
}

#[test]
fn explicit_buckets_from_config() {
    let sm = SpanMetrics::new("t", &config("histogram: {explicit: {buckets: [10ms, 1s]}}"));
    sm.ingest(
        &request(vec![(
            "a",
            vec![
                span(1, 1, 0, SpanKind::Server, "x", 5_000),
                span(1, 2, 0, SpanKind::Server, "x", 500_000),
            ],
        )]),
        Instant::now(),
    );
    let h = histograms(&collect(&sm, 5), DURATION);
    assert_eq!(h[0].1, vec![1, 1, 0]);
    assert_eq!(h[0].2, 505.0);
}

#[test]
fn extra_dimensions_from_span_then_resource_then_default() {
    let sm = SpanMetrics::new(
        "t",
        &config(
            "dimensions: [{name: http.method, default: GET}, {name: service.instance.id}, {name: http.route}]\nexclude_dimensions: [status.code]",
        ),
    );
    sm.ingest(
        &request(vec![(
            "a",
            vec![
                with_attrs(
                    span(1, 1, 0, SpanKind::Server, "x", 1),
                    &[("http.method", "POST"), ("http.route", "/r")],
                ),
                span(1, 2, 0, SpanKind::Server, "x", 1),
            ],
        )]),
        Instant::now(),
    );
    assert_eq!(
        sums(&collect(&sm, 5), CALLS),
        vec![
            ("http.method=GET,service.instance.id=a-1,service.name=a,span.kind=SPAN_KIND_SERVER,span.name=x".into(), 1),
            ("http.method=POST,http.route=/r,service.instance.id=a-1,service.name=a,span.kind=SPAN_KIND_SERVER,span.name=x".into(), 1),
        ]
    );
}

#[test]
fn cumulative_keeps_totals_and_delta_resets_after_each_flush() {
    let one = || {
        request(vec![(
            "a",
            vec![span(1, 1, 0, SpanKind::Server, "x", 1_000)],
        )])
    };
    let cum = SpanMetrics::new("t", &config("{}"));
    cum.ingest(&one(), Instant::now());
    let first = collect(&cum, 10);
    cum.ingest(&one(), Instant::now());
    let second = collect(&cum, 20);
    assert_eq!(sums(&first, CALLS)[0].1, 1);
    assert_eq!(sums(&second, CALLS)[0].1, 2);
    let start = |r: &ExportMetricsServiceRequest| match &metrics(r, CALLS)[0].data {
        Some(Data::Sum(s)) => (
            s.data_points[0].start_time_unix_nano,
            s.data_points[0].time_unix_nano,
        ),
        _ => panic!("sum"),
    };
    assert_eq!(start(&first).0, start(&second).0);
    assert_eq!(start(&second).1, 20);
    // Nothing new: cumulative still reports the series.
    assert_eq!(sums(&collect(&cum, 30), CALLS)[0].1, 2);

    let delta = SpanMetrics::new(
        "t",
        &config("aggregation_temporality: AGGREGATION_TEMPORALITY_DELTA"),
    );
    delta.ingest(&one(), Instant::now());
    delta.ingest(&one(), Instant::now());
    let d1 = collect(&delta, 10);
    assert_eq!(sums(&d1, CALLS)[0].1, 2);
    assert!(
        delta.collect(Instant::now(), 20).is_none(),
        "nothing new since the flush"
    );
    delta.ingest(&one(), Instant::now());
    let d2 = collect(&delta, 30);
    assert_eq!(sums(&d2, CALLS)[0].1, 1);
    // The new interval starts at the previous flush.
    assert_eq!(start(&d2), (20, 30));
    let Some(Data::Sum(s)) = &metrics(&d2, CALLS)[0].data else {
        panic!("sum")
    };
    assert_eq!(
        s.aggregation_temporality,
        AggregationTemporality::Delta as i32
    );
}

#[test]
fn series_expire_after_metrics_expiration() {
    let sm = SpanMetrics::new("t", &config("metrics_expiration: 5s"));
    let t0 = Instant::now();
    sm.ingest(
        &request(vec![("a", vec![span(1, 1, 0, SpanKind::Server, "old", 1)])]),
        t0,
    );
    sm.ingest(
        &request(vec![("a", vec![span(1, 2, 0, SpanKind::Server, "new", 1)])]),
        t0 + Duration::from_secs(4),
    );
    let out = sm.collect(t0 + Duration::from_secs(6), 5).expect("metrics");
    let names: Vec<String> = sums(&out, CALLS).into_iter().map(|(l, _)| l).collect();
    assert_eq!(names.len(), 1);
    assert!(names[0].contains("span.name=new"), "{names:?}");
    assert!(sm.collect(t0 + Duration::from_secs(20), 6).is_none());
}

#[test]
fn exemplars_carry_trace_and_span_ids_up_to_the_limit_and_reset_per_flush() {
    let sm = SpanMetrics::new(
        "t",
        &config("exemplars: {enabled: true, max_per_data_point: 2}"),
    );
    let spans: Vec<Span> = (1..=3)
        .map(|i| span(i, i, 0, SpanKind::Server, "x", 2_000))
        .collect();
    sm.ingest(&request(vec![("a", spans)]), Instant::now());
    let out = collect(&sm, 5);
    let Some(Data::Histogram(h)) = &metrics(&out, DURATION)[0].data else {
        panic!("histogram")
    };
    let ex = &h.data_points[0].exemplars;
    assert_eq!(ex.len(), 2);
    assert_eq!(ex[0].trace_id, vec![1u8; 16]);
    assert_eq!(ex[0].span_id, vec![1u8; 8]);
    assert_eq!(ex[1].trace_id, vec![2u8; 16]);
    assert_eq!(ex[0].value, Some(exemplar::Value::AsDouble(2.0)));
    let again = collect(&sm, 6);
    let Some(Data::Histogram(h)) = &metrics(&again, DURATION)[0].data else {
        panic!("histogram")
    };
    assert!(h.data_points[0].exemplars.is_empty());
}

#[test]
fn dimensions_cache_size_bounds_the_series_evicting_the_oldest() {
    let sm = SpanMetrics::new("evict-test", &config("dimensions_cache_size: 10"));
    let t0 = Instant::now();
    for i in 0..25u64 {
        let name = format!("op{i}");
        sm.ingest(
            &request(vec![("a", vec![span(1, 1, 0, SpanKind::Server, &name, 1)])]),
            t0 + Duration::from_millis(i),
        );
    }
    let out = collect(&sm, 5);
    let names: Vec<String> = sums(&out, CALLS).into_iter().map(|(l, _)| l).collect();
    assert_eq!(names.len(), 10, "{names:?}");
    assert!(names.iter().any(|n| n.contains("span.name=op24")));
    assert!(!names.iter().any(|n| n.contains("span.name=op0,")));
    assert_eq!(sm.evicted.get(), 15);
}

#[test]
fn resource_key_attributes_merge_resources_that_differ_elsewhere() {
    let sm = SpanMetrics::new(
        "t",
        &config("resource_metrics_key_attributes: [service.name]"),
    );
    let mut req = request(vec![("a", vec![span(1, 1, 0, SpanKind::Server, "x", 1)])]);
    let mut other = request(vec![("a", vec![span(2, 1, 0, SpanKind::Server, "x", 1)])]);
    other.resource_spans[0]
        .resource
        .as_mut()
        .unwrap()
        .attributes
        .push(attr("process.pid", "42"));
    req.resource_spans.extend(other.resource_spans);
    sm.ingest(&req, Instant::now());
    let out = collect(&sm, 5);
    assert_eq!(out.resource_metrics.len(), 1);
    assert_eq!(sums(&out, CALLS)[0].1, 2);

    let all = SpanMetrics::new("t", &config("{}"));
    all.ingest(&req, Instant::now());
    assert_eq!(collect(&all, 5).resource_metrics.len(), 2);
}

#[test]
fn events_are_counted_with_their_dimensions() {
    let sm = SpanMetrics::new(
        "t",
        &config("events: {enabled: true, dimensions: [{name: exception.type}]}"),
    );
    let mut s = span(1, 1, 0, SpanKind::Server, "x", 1);
    for t in ["Timeout", "Timeout", "Refused"] {
        s.events.push(Event {
            name: "exception".into(),
            attributes: vec![attr("exception.type", t)],
            ..Default::default()
        });
    }
    sm.ingest(&request(vec![("a", vec![s])]), Instant::now());
    let out = collect(&sm, 5);
    let ev = sums(&out, "traces.span.metrics.events");
    assert_eq!(ev.len(), 2);
    assert!(ev[0].0.contains("exception.type=Refused") && ev[0].0.contains("event.name=exception"));
    assert_eq!((ev[0].1, ev[1].1), (1, 2));
    assert_eq!(sums(&out, CALLS)[0].1, 1);
}

#[test]
fn exponential_histogram_fits_max_size() {
    let sm = SpanMetrics::new("t", &config("histogram: {exponential: {max_size: 8}}"));
    let spans: Vec<Span> = [1u64, 10, 100, 1_000, 10_000, 100_000]
        .iter()
        .map(|us| span(1, 1, 0, SpanKind::Server, "x", *us))
        .collect();
    sm.ingest(&request(vec![("a", spans)]), Instant::now());
    let out = collect(&sm, 5);
    let Some(Data::ExponentialHistogram(h)) = &metrics(&out, DURATION)[0].data else {
        panic!("expo")
    };
    let p = &h.data_points[0];
    let b = p.positive.as_ref().unwrap();
    assert!(b.bucket_counts.len() <= 8, "{b:?}");
    assert_eq!(b.bucket_counts.iter().sum::<u64>(), 6);
    assert_eq!(p.count, 6);
    // Every value lies in the bucket its index says: (base^i, base^(i+1)].
    let base = 2f64.powf(2f64.powi(-p.scale));
    for v in [0.001f64, 0.01, 0.1, 1.0, 10.0, 100.0] {
        let i = ExpoHistogram::index(v, p.scale);
        assert!(
            base.powi(i as i32) < v * (1.0 + 1e-9) && v <= base.powi(i as i32 + 1) * (1.0 + 1e-9)
        );
        let at = (i - b.offset as i64) as usize;
        assert!(b.bucket_counts[at] >= 1, "value {v} not counted at {at}");
    }
}

#[test]
fn spans_without_service_name_are_skipped() {
    let sm = SpanMetrics::new("t", &config("{}"));
    let mut req = request(vec![("a", vec![span(1, 1, 0, SpanKind::Server, "x", 1)])]);
    req.resource_spans[0].resource = None;
    sm.ingest(&req, Instant::now());
    assert!(sm.collect(Instant::now(), 5).is_none());
}

#[test]
fn namespace_renames_the_metrics() {
    let sm = SpanMetrics::new(
        "t",
        &config("namespace: span.metrics\nhistogram: {disable: true}"),
    );
    sm.ingest(
        &request(vec![("a", vec![span(1, 1, 0, SpanKind::Server, "x", 1)])]),
        Instant::now(),
    );
    let out = collect(&sm, 5);
    assert_eq!(sums(&out, "span.metrics.calls").len(), 1);
    assert!(metrics(&out, "span.metrics.duration").is_empty());
}

#[test]
fn config_mistakes_are_refused_with_their_key() {
    let bad = |yaml: &str| {
        let v = serde_yaml::from_str(yaml).unwrap();
        match crate::config::parse_component::<SpanMetricsConfig>(v) {
            Err(e) => e.path,
            Ok(c) => c.validate().expect_err(yaml).path,
        }
    };
    assert_eq!(bad("histogram: {unit: us}"), "histogram.unit");
    assert_eq!(
        bad("histogram: {explicit: {buckets: [2ms]}, exponential: {}}"),
        "histogram"
    );
    assert_eq!(
        bad("histogram: {explicit: {buckets: [4ms, 2ms]}}"),
        "histogram.explicit.buckets"
    );
    assert_eq!(
        bad("exclude_dimensions: [http.method]"),
        "exclude_dimensions"
    );
    assert_eq!(bad("dimensions: [{name: span.name}]"), "dimensions");
    assert_eq!(
        bad("aggregation_temporality: DELTA"),
        "aggregation_temporality"
    );
    assert_eq!(bad("metrics_flush_interval: 0s"), "metrics_flush_interval");
    assert_eq!(bad("bogus: 1"), "bogus");
}
