use super::*;
use crate::config::parse_component;
use crate::pipeline::ConsumeFuture;
use opentelemetry_proto::tonic::common::v1::{any_value::Value as AnyInner, AnyValue, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{status::StatusCode, Status};
use rand::{rngs::StdRng, Rng, SeedableRng};
use std::collections::HashSet;

const KEEP_ERRORS_SLOW_SHARE: &str = r#"
decision_wait: 10s
num_traces: 100000
expected_new_traces_per_sec: 1000
policies:
  - {name: errors, type: status_code, status_code: {status_codes: [ERROR]}}
  - {name: slow, type: latency, latency: {threshold_ms: 500}}
  - {name: share, type: probabilistic, probabilistic: {sampling_percentage: 20}}
"#;

fn cfg(yaml: &str) -> TailSamplingConfig {
    let c: TailSamplingConfig = parse_component(serde_yaml::from_str(yaml).unwrap()).unwrap();
    c.validate().unwrap();
    c
}

fn attr(k: &str, v: AnyInner) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue { value: Some(v) }),
        ..Default::default()
    }
}

fn span(trace: TraceId, n: u8, dur_ms: u64, error: bool) -> Span {
    Span {
        trace_id: trace.to_vec(),
        span_id: vec![n; 8],
        start_time_unix_nano: 1_000_000_000 + u64::from(n) * 1_000,
        end_time_unix_nano: 1_000_000_000 + dur_ms * 1_000_000,
        status: error.then(|| Status {
            code: StatusCode::Error as i32,
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn req(spans: Vec<Span>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![attr("service.name", AnyInner::StringValue("svc".into()))],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn ids(n: usize, seed: u64) -> Vec<TraceId> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n).map(|_| rng.random()).collect()
}

/// Span counts per trace id in `out`.
fn kept(out: &[ResourceSpans]) -> HashMap<Vec<u8>, usize> {
    let mut m = HashMap::new();
    for rs in out {
        for ss in &rs.scope_spans {
            for s in &ss.spans {
                *m.entry(s.trace_id.clone()).or_insert(0) += 1;
            }
        }
    }
    m
}

#[test]
fn keeps_every_error_and_slow_trace_and_a_share_of_the_rest() {
    let mut e = Engine::new("tail_sampling/share", &cfg(KEEP_ERRORS_SLOW_SHARE)).unwrap();
    let t0 = Instant::now();
    let traces = ids(5000, 42);
    // Three spans per trace, each in its own request, interleaved with other traces' spans; the
    // error or the latency shows only on one span of the trace.
    for part in 0..3u8 {
        let spans = traces
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let error = i % 10 == 0 && part == 2;
                let dur = if i % 10 == 1 && part == 1 { 700 } else { 20 };
                span(*t, part, dur, error)
            })
            .collect();
        let passed = e.ingest(req(spans), t0 + Duration::from_millis(u64::from(part)));
        assert!(passed.is_empty(), "no trace is decided yet");
    }
    assert!(e.decide_due(t0 + Duration::from_secs(5), false).is_empty());
    let out = kept(&e.decide_due(t0 + Duration::from_secs(11), false));
    assert_eq!(e.pending_traces(), 0);
    let mut rest_kept = 0usize;
    for (i, t) in traces.iter().enumerate() {
        let n = out.get(t.as_slice()).copied().unwrap_or(0);
        assert!(
            n == 0 || n == 3,
            "trace {i}: one decision for all its spans, got {n}"
        );
        if i % 10 <= 1 {
            assert_eq!(n, 3, "error/slow trace {i} kept whole");
        } else if n == 3 {
            rest_kept += 1;
        }
    }
    let rest = (traces.len() * 8 / 10) as f64;
    let sd = (rest * 0.2 * 0.8).sqrt();
    let got = rest_kept as f64;
    assert!(
        (got - rest * 0.2).abs() < 4.0 * sd,
        "kept {got} of {rest} others, expected {} ± {}",
        rest * 0.2,
        4.0 * sd
    );
    let (errors_yes, _) = &e.metrics.per_policy[0];
    assert_eq!(errors_yes.get(), 500);
    assert_eq!(e.metrics.global.0.get() as usize, 1000 + rest_kept);
}

#[test]
fn memory_is_bounded_by_num_traces_and_evictions_are_counted() {
    let c =
        cfg("{num_traces: 100, decision_wait: 1s, policies: [{name: all, type: always_sample}]}");
    let mut e = Engine::new("tail_sampling/bound", &c).unwrap();
    let t0 = Instant::now();
    let traces = ids(1000, 1);
    for (i, t) in traces.iter().enumerate() {
        e.ingest(
            req(vec![span(*t, 0, 1, false), span(*t, 1, 1, false)]),
            t0 + Duration::from_micros(i as u64),
        );
        assert!(e.pending_traces() <= 100);
    }
    assert_eq!(e.pending_spans(), 200);
    assert_eq!(e.metrics.dropped_too_early.get(), 900);
    assert_eq!(e.metrics.on_memory.get(), 100);
    // The newest 100 survive and are decided.
    let out = kept(&e.decide_due(t0 + Duration::from_secs(2), false));
    assert_eq!(out.len(), 100);
    assert!(traces[900..].iter().all(|t| out.contains_key(t.as_slice())));
}

#[test]
fn late_spans_follow_the_decision() {
    let c = cfg(
        "{decision_wait: 1s, policies: [{name: errors, type: status_code, status_code: {status_codes: [ERROR]}}]}",
    );
    let mut e = Engine::new("tail_sampling/late", &c).unwrap();
    let t0 = Instant::now();
    let (good, bad) = ([1u8; 16], [2u8; 16]);
    e.ingest(
        req(vec![span(good, 0, 1, true), span(bad, 0, 1, false)]),
        t0,
    );
    let out = kept(&e.decide_due(t0 + Duration::from_secs(1), false));
    assert_eq!(out.get(good.as_slice()), Some(&1));
    assert!(!out.contains_key(bad.as_slice()));
    // Late spans: the kept trace's pass at once, the dropped trace's are dropped, nothing waits.
    let passed = kept(&e.ingest(
        req(vec![span(good, 1, 1, false), span(bad, 1, 1, true)]),
        t0 + Duration::from_secs(3),
    ));
    assert_eq!(passed.get(good.as_slice()), Some(&1));
    assert!(!passed.contains_key(bad.as_slice()));
    assert_eq!(e.pending_traces(), 0);
    assert_eq!(e.metrics.late_spans.0.get(), 1);
    assert_eq!(e.metrics.late_spans.1.get(), 1);
}

#[test]
fn decision_cache_is_bounded() {
    let c = cfg("{decision_wait: 1s, decision_cache: {sampled_cache_size: 10, non_sampled_cache_size: 5}, policies: [{name: half, type: probabilistic, probabilistic: {sampling_percentage: 50}}]}");
    let mut e = Engine::new("tail_sampling/cache", &c).unwrap();
    let t0 = Instant::now();
    for t in ids(500, 2) {
        e.ingest(req(vec![span(t, 0, 1, false)]), t0);
    }
    e.decide_due(t0 + Duration::from_secs(1), false);
    assert_eq!(e.cached_decisions(), 15);
}

#[test]
fn rate_limiting_span_count_and_attributes() {
    let c = cfg(r#"
decision_wait: 1s
policies:
  - {name: rate, type: rate_limiting, rate_limiting: {spans_per_second: 10}}
"#);
    let mut e = Engine::new("tail_sampling/rate", &c).unwrap();
    let t0 = Instant::now();
    for t in ids(5, 3) {
        e.ingest(req((0..3).map(|n| span(t, n, 1, false)).collect()), t0);
    }
    let out = kept(&e.decide_due(t0 + Duration::from_secs(1), false));
    // 10 spans per second fit three 3-span traces (unless the second turned meanwhile).
    assert!((3..=5).contains(&out.len()), "{}", out.len());

    let c = cfg(r#"
decision_wait: 1s
policies:
  - {name: big, type: span_count, span_count: {min_spans: 3}}
  - {name: vip, type: string_attribute, string_attribute: {key: tier, values: ["^gold"], enabled_regex_matching: true}}
  - {name: retries, type: numeric_attribute, numeric_attribute: {key: retries, min_value: 2, max_value: 9}}
  - {name: not-health, type: string_attribute, string_attribute: {key: http.route, values: [/health], invert_match: true}}
"#);
    let mut e = Engine::new("tail_sampling/attrs", &c).unwrap();
    let [small, big, vip, retried, health] = [[1u8; 16], [2; 16], [3; 16], [4; 16], [5; 16]];
    let with = |t, a: KeyValue| {
        let mut s = span(t, 0, 1, false);
        s.attributes.push(a);
        s
    };
    let mut spans = vec![span(small, 0, 1, false)];
    spans.extend((0..3).map(|n| span(big, n, 1, false)));
    spans.push(with(
        vip,
        attr("tier", AnyInner::StringValue("gold-1".into())),
    ));
    spans.push(with(retried, attr("retries", AnyInner::IntValue(3))));
    let mut h = with(
        health,
        attr("http.route", AnyInner::StringValue("/health".into())),
    );
    h.attributes.push(attr("retries", AnyInner::IntValue(3)));
    spans.push(h);
    e.ingest(req(spans), t0);
    let out = kept(&e.decide_due(t0 + Duration::from_secs(1), false));
    let got: HashSet<Vec<u8>> = out.into_keys().collect();
    // The inverted policy keeps every trace without the route ("small" too) and vetoes
    // "health" although `retries` matched.
    let want: HashSet<Vec<u8>> = [small, big, vip, retried]
        .iter()
        .map(|t| t.to_vec())
        .collect();
    assert_eq!(got, want);
}

#[test]
fn and_and_composite() {
    let c = cfg(r#"
decision_wait: 1s
policies:
  - name: slow-errors
    type: and
    and:
      and_sub_policy:
        - {name: slow, type: latency, latency: {threshold_ms: 100}}
        - {name: err, type: status_code, status_code: {status_codes: [ERROR]}}
  - name: budget
    type: composite
    composite:
      max_total_spans_per_second: 4
      policy_order: [vip, rest]
      composite_sub_policy:
        - {name: vip, type: numeric_attribute, numeric_attribute: {key: vip, min_value: 1}}
        - {name: rest, type: always_sample}
      rate_allocation:
        - {policy: vip, percent: 50}
        - {policy: rest, percent: 50}
"#);
    let mut e = Engine::new("tail_sampling/and", &c).unwrap();
    let t0 = Instant::now();
    let slow_err = [9u8; 16];
    // A slow error is kept by `and`; five plain one-span traces share the composite's 4
    // spans/s: the "rest" share is 2.
    let mut spans = vec![span(slow_err, 0, 200, true)];
    spans.extend(ids(5, 4).into_iter().map(|t| span(t, 0, 1, false)));
    e.ingest(req(spans), t0);
    let out = kept(&e.decide_due(t0 + Duration::from_secs(1), false));
    assert!(out.contains_key(slow_err.as_slice()));
    // Every policy sees every trace: the slow error (decided first) also takes one span of the
    // composite's "rest" share of 2, leaving room for one plain trace (more only if the second
    // turns between traces and refills the window).
    assert!((2..=4).contains(&out.len()), "{}", out.len());
}

#[test]
fn config_errors_name_the_key() {
    let bad = |y: &str| {
        let c: TailSamplingConfig = parse_component(serde_yaml::from_str(y).unwrap()).unwrap();
        c.validate().unwrap_err()
    };
    assert_eq!(bad("{}").path, "policies");
    assert_eq!(
        bad("{policies: [{name: a, type: latency}]}").path,
        "policies[0]"
    );
    let e = bad("{policies: [{name: a, type: ottl_condition}]}");
    assert_eq!(e.path, "policies[0].type");
    assert!(e.message.contains("always_sample"), "{e}");
    assert_eq!(
        bad("{policies: [{name: a, type: status_code, status_code: {status_codes: [FAIL]}}]}").path,
        "policies[0].status_code.status_codes"
    );
    assert_eq!(
        bad("{policies: [{name: c, type: composite, composite: {max_total_spans_per_second: 1, policy_order: [x], composite_sub_policy: [{name: y, type: always_sample}]}}]}").path,
        "policies[0].composite.policy_order"
    );
    let e = parse_component::<TailSamplingConfig>(
        serde_yaml::from_str("{policies: [{name: a, type: latency, latency: {threshold: 5}}]}")
            .unwrap(),
    )
    .unwrap_err();
    assert!(e.message.contains("threshold"), "{e}");
}

struct Sink(Mutex<Vec<ExportTraceServiceRequest>>);
impl Consumer for Sink {
    fn consume(&self, data: Telemetry) -> ConsumeFuture<'_> {
        if let Telemetry::Traces(r) = data {
            self.0.lock().unwrap().push(r);
        }
        Box::pin(async { Ok(()) })
    }
}

#[tokio::test]
async fn processor_decides_after_the_wait_and_flushes_on_shutdown() {
    let sink = Arc::new(Sink(Mutex::new(Vec::new())));
    let ctx = StartContext::new("tail_sampling/run", CancellationToken::new());
    let c = cfg("{decision_wait: 200ms, policies: [{name: all, type: always_sample}]}");
    let p = TailSampler::start("tail_sampling/run", &c, sink.clone(), &ctx).unwrap();
    let t = [7u8; 16];
    p.consume(Telemetry::Traces(req(vec![span(t, 0, 1, false)])))
        .await
        .unwrap();
    p.consume(Telemetry::Traces(req(vec![span(t, 1, 1, false)])))
        .await
        .unwrap();
    assert!(sink.0.lock().unwrap().is_empty(), "held until decided");
    let deadline = Instant::now() + Duration::from_secs(10);
    while sink.0.lock().unwrap().is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    {
        let got = sink.0.lock().unwrap();
        assert_eq!(got.len(), 1, "one batch for the decided trace");
        assert_eq!(kept(&got[0].resource_spans).get(t.as_slice()), Some(&2));
    }
    // A trace still waiting at shutdown is decided then, not lost.
    p.consume(Telemetry::Traces(req(vec![span([8; 16], 0, 1, false)])))
        .await
        .unwrap();
    p.shutdown(Instant::now() + Duration::from_secs(5)).await;
    let got = sink.0.lock().unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!(kept(&got[1].resource_spans).get(&vec![8; 16]), Some(&1));
}
