//! The default trace sampler: every trace until a per-process rate, then no more new traces
//! until the budget refills (a token bucket), with children following their parent's decision.
//!
//! At the demo's normal loads (tens to hundreds of requests per second) every request is
//! traced. Under a load spike the cost of tracing stays bounded: exporting every span of a
//! saturated service cost it about a quarter of its throughput (docs/demo-app.md), exactly
//! when it needs the capacity. The request metrics are not sampled, so RED dashboards and SLOs
//! see every request either way.
//!
//! Selected by `OTEL_TRACES_SAMPLER=parentbased_ratelimited` (or no `OTEL_TRACES_SAMPLER` at
//! all), with `OTEL_TRACES_SAMPLER_ARG` = new traces per second (default
//! [`DEFAULT_TRACES_PER_SECOND`]). The standard values (`parentbased_always_on`,
//! `parentbased_traceidratio`, ...) are handled by the SDK as usual.
//!
//! Tests: `cargo test -p demo-app sampler`.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use opentelemetry::trace::{Link, SpanKind, TraceContextExt, TraceId};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::{Sampler, SamplingDecision, SamplingResult, ShouldSample};

/// `OTEL_TRACES_SAMPLER` value of this sampler.
pub const NAME: &str = "parentbased_ratelimited";
/// New traces per second per process when `OTEL_TRACES_SAMPLER_ARG` is not set: every trace
/// of the stack's normal loads (tens of requests per second) and of most demos. At saturation
/// a budget of 1000 cost 1.5 % more throughput than this one (docs/demo-app.md, Benchmark).
pub const DEFAULT_TRACES_PER_SECOND: f64 = 100.0;

/// The sampler the tracer provider should use, or `None` when `OTEL_TRACES_SAMPLER` names
/// one of the SDK's own samplers (the SDK reads the variables itself then).
///
/// # Errors
/// A message when `OTEL_TRACES_SAMPLER_ARG` is not a positive number.
pub fn from_env(sampler: Option<&str>, arg: Option<&str>) -> Result<Option<Sampler>, String> {
    match sampler.map(str::trim) {
        None | Some("") | Some(NAME) => {}
        Some(_) => return Ok(None),
    }
    let per_second = match arg.map(str::trim).filter(|a| !a.is_empty()) {
        None => DEFAULT_TRACES_PER_SECOND,
        Some(a) => match a.parse::<f64>() {
            Ok(v) if v.is_finite() && v > 0.0 => v,
            _ => {
                return Err(format!(
                    "OTEL_TRACES_SAMPLER_ARG={a:?} is not a positive number of traces per second for {NAME}"
                ))
            }
        },
    };
    Ok(Some(Sampler::ParentBased(Box::new(RateLimited::new(
        per_second,
    )))))
}

/// Samples root spans while the token bucket has a token; one token per trace, refilled at
/// `per_second`, holding at most one second's worth.
#[derive(Clone, Debug)]
pub struct RateLimited {
    per_second: f64,
    bucket: Arc<Mutex<Bucket>>,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    refilled: Instant,
}

impl RateLimited {
    /// A sampler taking up to `per_second` new traces per second.
    pub fn new(per_second: f64) -> Self {
        RateLimited {
            per_second,
            bucket: Arc::new(Mutex::new(Bucket {
                tokens: per_second,
                refilled: Instant::now(),
            })),
        }
    }

    /// Takes a token if one is left at `now`.
    fn take(&self, now: Instant) -> bool {
        let mut b = self.bucket.lock().unwrap_or_else(|e| e.into_inner());
        let elapsed = now.saturating_duration_since(b.refilled).as_secs_f64();
        b.tokens = (b.tokens + elapsed * self.per_second).min(self.per_second);
        b.refilled = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

impl ShouldSample for RateLimited {
    fn should_sample(
        &self,
        parent_context: Option<&Context>,
        _trace_id: TraceId,
        _name: &str,
        _span_kind: &SpanKind,
        _attributes: &[KeyValue],
        _links: &[Link],
    ) -> SamplingResult {
        let decision = if self.take(Instant::now()) {
            SamplingDecision::RecordAndSample
        } else {
            SamplingDecision::Drop
        };
        SamplingResult {
            decision,
            attributes: Vec::new(),
            trace_state: parent_context
                .map(|cx| cx.span().span_context().trace_state().clone())
                .unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn takes_the_rate_then_refills_with_time() {
        let s = RateLimited::new(10.0);
        let t0 = Instant::now();
        let first: usize = (0..50).filter(|_| s.take(t0)).count();
        assert_eq!(first, 10, "a full second's budget at start");
        assert!(!s.take(t0 + Duration::from_millis(50)), "half a token");
        assert!(
            s.take(t0 + Duration::from_millis(100)),
            "one token after 100 ms"
        );
        let later: usize = (0..50)
            .filter(|_| s.take(t0 + Duration::from_secs(10)))
            .count();
        assert_eq!(later, 10, "the bucket holds one second's worth, not ten");
    }

    #[test]
    fn env_selects_it_by_default_and_leaves_standard_samplers_to_the_sdk() {
        assert!(matches!(
            from_env(None, None),
            Ok(Some(Sampler::ParentBased(_)))
        ));
        assert!(matches!(
            from_env(Some(NAME), Some("50")),
            Ok(Some(Sampler::ParentBased(_)))
        ));
        assert!(matches!(
            from_env(Some("parentbased_always_on"), None),
            Ok(None)
        ));
        assert!(matches!(
            from_env(Some("parentbased_traceidratio"), Some("0.1")),
            Ok(None)
        ));
        let err = from_env(Some(NAME), Some("-3")).unwrap_err();
        assert!(err.contains("OTEL_TRACES_SAMPLER_ARG"), "{err}");
    }

    #[test]
    fn drop_decision_under_overload_sample_decision_otherwise() {
        let s = RateLimited::new(1.0);
        let sample = |s: &RateLimited| {
            s.should_sample(None, TraceId::from(1u128), "x", &SpanKind::Server, &[], &[])
                .decision
        };
        assert_eq!(sample(&s), SamplingDecision::RecordAndSample);
        assert_eq!(sample(&s), SamplingDecision::Drop);
    }
}
