use super::*;
use crate::config::parse_component;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use rand::{rngs::StdRng, Rng, SeedableRng};
use std::sync::{Arc, Mutex};

fn cfg(yaml: &str) -> ProbabilisticSamplerConfig {
    let c: ProbabilisticSamplerConfig =
        parse_component(serde_yaml::from_str(yaml).unwrap()).unwrap();
    c.validate().unwrap();
    c
}

fn ids(n: usize, seed: u64) -> Vec<[u8; 16]> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n).map(|_| rng.random()).collect()
}

/// Kept count of `n` random trace ids, asserted within 4 standard deviations of `p * n`.
fn assert_share(s: &Sampler, p: f64, n: usize, seed: u64) {
    let kept = ids(n, seed)
        .iter()
        .filter(|t| s.decide(&t[..], "") != Verdict::Drop)
        .count() as f64;
    let n = n as f64;
    let sd = (n * p * (1.0 - p)).sqrt();
    assert!(
        (kept - n * p).abs() <= 4.0 * sd + 1.0,
        "kept {kept} of {n}, expected {} ± {}",
        n * p,
        4.0 * sd
    );
}

#[test]
fn fnv_matches_the_published_vectors() {
    // FNV-1a 32 of "foobar" is 0xbf9cf968: the seed supplies "foob" as its little-endian bytes.
    assert_eq!(
        seeded_hash(u32::from_le_bytes(*b"foob"), b"ar"),
        0xbf9c_f968
    );
    assert_eq!(seeded_hash(u32::from_le_bytes(*b"\0\0\0a"), b""), {
        // "\0\0\0a" by the definition, step by step.
        let mut h: u32 = 0x811c_9dc5;
        for b in b"\0\0\0a" {
            h = (h ^ u32::from(*b)).wrapping_mul(0x0100_0193);
        }
        h
    });
}

#[test]
fn hash_seed_keeps_the_configured_share() {
    for pct in [1.0, 10.0, 33.0, 50.0] {
        let s = Sampler::new(&cfg(&format!(
            "{{sampling_percentage: {pct}, hash_seed: 22}}"
        )));
        assert_eq!(s.mode, SamplerMode::HashSeed);
        assert_share(&s, pct / 100.0, 50_000, 7);
    }
}

#[test]
fn proportional_keeps_the_configured_share_and_writes_th() {
    let s = Sampler::new(&cfg("{sampling_percentage: 25}"));
    assert_eq!(s.mode, SamplerMode::Proportional);
    assert_share(&s, 0.25, 50_000, 8);
    // A kept span says so: th for 25 % is 0xc (0.75 * 2^56).
    let kept = ids(100, 9)
        .into_iter()
        .find_map(|t| match s.decide(&t, "vendor=x") {
            Verdict::KeepWithTraceState(ts) => Some(ts),
            _ => None,
        })
        .unwrap();
    assert_eq!(kept, "ot=th:c,vendor=x");
}

#[test]
fn decisions_agree_across_instances_and_ignore_other_spans() {
    let a = Sampler::new(&cfg("{sampling_percentage: 30, hash_seed: 5}"));
    let b = Sampler::new(&cfg("{sampling_percentage: 30, hash_seed: 5}"));
    let c = Sampler::new(&cfg("{sampling_percentage: 30, mode: proportional}"));
    let d = Sampler::new(&cfg("{sampling_percentage: 30, mode: proportional}"));
    for t in ids(2000, 3) {
        assert_eq!(a.decide(&t, ""), b.decide(&t, ""));
        assert_eq!(c.decide(&t, ""), d.decide(&t, ""));
    }
}

#[test]
fn proportional_multiplies_an_incoming_threshold() {
    // Upstream sampled at 50 % (th:8); we keep 50 % of that: 25 % overall, th:c.
    let s = Sampler::new(&cfg("{sampling_percentage: 50, mode: proportional}"));
    let mut kept = 0;
    let all = ids(40_000, 11);
    for t in &all {
        let r = trace_id_randomness(t).unwrap();
        if r < MAX_ADJUSTED / 2 {
            continue; // the upstream stage dropped it
        }
        match s.decide(t, "ot=th:8") {
            Verdict::KeepWithTraceState(ts) => {
                assert_eq!(ts, "ot=th:c");
                assert!(r >= 3 * (MAX_ADJUSTED / 4));
                kept += 1;
            }
            Verdict::Drop => assert!(r < 3 * (MAX_ADJUSTED / 4)),
            Verdict::Keep => panic!("threshold changed but tracestate kept"),
        }
    }
    let n = all.len() as f64;
    let sd = (n * 0.25 * 0.75).sqrt();
    assert!((kept as f64 - n * 0.25).abs() < 4.0 * sd, "{kept}");
}

#[test]
fn equalizing_keeps_the_stricter_threshold() {
    let s = Sampler::new(&cfg("{sampling_percentage: 50, mode: equalizing}"));
    // Incoming 25 % is already stricter: unchanged.
    let t = ids(500, 12)
        .into_iter()
        .find(|t| trace_id_randomness(t).unwrap() >= 3 * (MAX_ADJUSTED / 4))
        .unwrap();
    assert_eq!(s.decide(&t, "ot=th:c"), Verdict::Keep);
    // Incoming 100 %: ours applies.
    let low = ids(500, 13)
        .into_iter()
        .find(|t| trace_id_randomness(t).unwrap() < MAX_ADJUSTED / 2)
        .unwrap();
    assert_eq!(s.decide(&low, "ot=th:0"), Verdict::Drop);
}

#[test]
fn rv_overrides_the_trace_id() {
    let s = Sampler::new(&cfg("{sampling_percentage: 50, mode: proportional}"));
    let t = [0xffu8; 16]; // trace id randomness says keep
    assert_eq!(s.decide(&t, "ot=rv:00000000000001"), Verdict::Drop);
    assert!(matches!(
        s.decide(
            &[0u8, 1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0, 0, 0, 0, 0],
            "ot=rv:ffffffffffffff"
        ),
        Verdict::KeepWithTraceState(_)
    ));
}

#[test]
fn fail_closed_decides_unreadable_randomness() {
    let closed = Sampler::new(&cfg("{sampling_percentage: 100, mode: proportional}"));
    let open = Sampler::new(&cfg(
        "{sampling_percentage: 100, mode: proportional, fail_closed: false}",
    ));
    assert_eq!(closed.decide(&[], ""), Verdict::Drop);
    assert_eq!(closed.decide(&[1; 16], "ot=th:zz"), Verdict::Drop);
    assert_eq!(open.decide(&[1; 16], "ot=th:zz"), Verdict::Keep);
    // hash_seed mode: consistent sampling already in use is a conflict.
    let hs = Sampler::new(&cfg("{sampling_percentage: 100, hash_seed: 1}"));
    assert_eq!(hs.decide(&[1; 16], "ot=th:8"), Verdict::Drop);
    assert_eq!(hs.decide(&[1; 16], ""), Verdict::Keep);
}

#[test]
fn thresholds_encode_as_otep_235() {
    assert_eq!(format_threshold(threshold_for(50.0, 4)), "8");
    assert_eq!(format_threshold(threshold_for(100.0, 4)), "0");
    assert_eq!(format_threshold(threshold_for(10.0, 4)), "e666");
    assert_eq!(format_threshold(threshold_for(10.0, 2)), "e6");
    assert_eq!(parse_threshold("8"), Some(MAX_ADJUSTED / 2));
    assert_eq!(parse_threshold(""), None);
    assert_eq!(parse_threshold("123456789abcdef"), None);
    assert_eq!(
        with_threshold("a=b,ot=rv:00112233445566;th:1", 0),
        "ot=th:0;rv:00112233445566,a=b"
    );
}

#[test]
fn config_errors_name_the_key() {
    let c: ProbabilisticSamplerConfig =
        parse_component(serde_yaml::from_str("{sampling_percentage: 120}").unwrap()).unwrap();
    assert_eq!(c.validate().unwrap_err().path, "sampling_percentage");
    let e = parse_component::<ProbabilisticSamplerConfig>(
        serde_yaml::from_str("{sampling_percent: 1}").unwrap(),
    )
    .unwrap_err();
    assert!(e.message.contains("sampling_percent"), "{e}");
    let e = parse_component::<ProbabilisticSamplerConfig>(
        serde_yaml::from_str("{mode: random}").unwrap(),
    )
    .unwrap_err();
    assert_eq!(e.path, "mode");
}

struct Sink(Mutex<Vec<Telemetry>>);
impl Consumer for Sink {
    fn consume(&self, data: Telemetry) -> ConsumeFuture<'_> {
        self.0.lock().unwrap().push(data);
        Box::pin(async { Ok(()) })
    }
}

fn span(trace_id: [u8; 16], prio: Option<i64>) -> Span {
    Span {
        trace_id: trace_id.to_vec(),
        span_id: vec![1; 8],
        attributes: prio
            .map(|p| {
                vec![KeyValue {
                    key: "sampling.priority".into(),
                    value: Some(opentelemetry_proto::tonic::common::v1::AnyValue {
                        value: Some(AnyInner::IntValue(p)),
                    }),
                    ..Default::default()
                }]
            })
            .unwrap_or_default(),
        ..Default::default()
    }
}

#[tokio::test]
async fn processor_keeps_whole_traces_and_honours_priority() {
    let sink = Arc::new(Sink(Mutex::new(Vec::new())));
    let p = ProbabilisticSampler::new(
        "probabilistic_sampler/t",
        &cfg("{sampling_percentage: 50, hash_seed: 9}"),
        Signal::Traces,
        sink.clone(),
    );
    let traces = ids(200, 21);
    let mut spans: Vec<Span> = traces
        .iter()
        .flat_map(|t| [span(*t, None), span(*t, None)])
        .collect();
    spans.push(span([0xab; 16], Some(0)));
    spans.push(span([0xcd; 16], Some(1)));
    let req = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    p.consume(Telemetry::Traces(req)).await.unwrap();
    let got = sink.0.lock().unwrap();
    let Telemetry::Traces(out) = &got[0] else {
        panic!()
    };
    let kept: Vec<&Span> = out.resource_spans[0].scope_spans[0].spans.iter().collect();
    for t in &traces {
        let n = kept.iter().filter(|s| s.trace_id == t.to_vec()).count();
        let expect = if hash_seed_keeps(9, 50.0, t) { 2 } else { 0 };
        assert_eq!(n, expect, "both spans of a trace share its decision");
    }
    assert!(kept.iter().any(|s| s.trace_id == vec![0xcd; 16]));
    assert!(!kept.iter().any(|s| s.trace_id == vec![0xab; 16]));
    let share = kept.len() as f64 / 402.0;
    assert!((0.35..0.65).contains(&share), "{share}");
}
