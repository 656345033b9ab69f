//! The `probabilistic_sampler` processor: keeps a configured share of traces (and logs, by their
//! trace id), decided from the trace id alone so every collector that sees a span of a trace
//! takes the same decision.
//!
//! ```yaml
//! processors:
//!   probabilistic_sampler:
//!     sampling_percentage: 15     # 0..100
//!     mode: proportional          # hash_seed | proportional | equalizing
//!     hash_seed: 22               # hash_seed mode (the default mode when hash_seed != 0)
//!     sampling_precision: 4       # hex digits of the `th` written into tracestate
//!     fail_closed: true           # drop items whose randomness cannot be read
//! ```
//! Modes (upstream's):
//! - `hash_seed`: FNV-1a (32 bit) of the seed's 4 little-endian bytes and the trace id, the low
//!   14 bits compared with `sampling_percentage` × 2¹⁴ / 100: the same decision as the upstream
//!   collector with the same seed. A span whose tracestate already carries `ot=th:` or `ot=rv:`
//!   is a configuration conflict (consistent sampling is in use upstream of us): it is kept
//!   or dropped by `fail_closed`.
//! - `proportional` / `equalizing` (OTEP 235): randomness is `ot=rv:` when present, else the
//!   trace id's low 56 bits; the threshold of an incoming `ot=th:` is honoured. `proportional`
//!   multiplies the incoming probability by ours; `equalizing` applies ours only when it is
//!   lower. A kept span gets the new `th` in its tracestate so later stages can count it.
//!
//! A span attribute `sampling.priority` overrides: 0 drops, a positive value keeps.
//! Metrics pass unchanged. Self-metric:
//! `otelcol_processor_probabilistic_sampler_count_{traces,logs}_sampled_total{processor,sampled}`.
//!
//! Tests: `cargo test -p otel-collector processor::probabilistic_sampler`.

use crate::config::ComponentConfigError;
use crate::pipeline::{ConsumeFuture, Consumer, SharedConsumer, Signal, Telemetry};
use crate::telemetry::{Counter, SelfMetrics};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyInner;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use serde::{Deserialize, Serialize};

/// 2⁵⁶: the OTEP 235 randomness and threshold range.
pub const MAX_ADJUSTED: u64 = 1 << 56;
/// Upstream's number of hash buckets in `hash_seed` mode (2¹⁴).
const HASH_BUCKETS: u32 = 0x4000;

/// How the decision is made.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SamplerMode {
    /// Upstream's default: `hash_seed` when a seed is set, else `proportional`.
    #[default]
    #[serde(rename = "")]
    Auto,
    /// FNV hash of seed and trace id (upstream-compatible).
    HashSeed,
    /// OTEP 235, probability multiplied with the incoming one.
    Proportional,
    /// OTEP 235, the lower of the incoming and the configured probability.
    Equalizing,
}

/// `processors.probabilistic_sampler`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProbabilisticSamplerConfig {
    /// Share of traces kept, in percent (0..=100).
    #[serde(default)]
    pub sampling_percentage: f64,
    /// Seed of the `hash_seed` mode; collectors that must agree share it.
    #[serde(default)]
    pub hash_seed: u32,
    /// `hash_seed`, `proportional` or `equalizing`.
    #[serde(default)]
    pub mode: SamplerMode,
    /// Drop items whose randomness cannot be read (empty trace id, malformed tracestate).
    #[serde(default = "default_true")]
    pub fail_closed: bool,
    /// Hex digits of the threshold written into tracestate (1..=14).
    #[serde(default = "default_precision")]
    pub sampling_precision: u8,
}

fn default_true() -> bool {
    true
}

fn default_precision() -> u8 {
    4
}

impl Default for ProbabilisticSamplerConfig {
    fn default() -> Self {
        ProbabilisticSamplerConfig {
            sampling_percentage: 0.0,
            hash_seed: 0,
            mode: SamplerMode::Auto,
            fail_closed: true,
            sampling_precision: default_precision(),
        }
    }
}

impl ProbabilisticSamplerConfig {
    /// Checks ranges serde cannot.
    ///
    /// # Errors
    /// The key and the allowed range.
    pub fn validate(&self) -> Result<(), ComponentConfigError> {
        if !(0.0..=100.0).contains(&self.sampling_percentage) {
            return Err(ComponentConfigError::new(
                "sampling_percentage",
                format!(
                    "{} is out of range; give a percentage from 0 to 100",
                    self.sampling_percentage
                ),
            ));
        }
        if !(1..=14).contains(&self.sampling_precision) {
            return Err(ComponentConfigError::new(
                "sampling_precision",
                "must be 1 to 14 hex digits",
            ));
        }
        Ok(())
    }

    /// The mode in force (resolves the default).
    pub fn effective_mode(&self) -> SamplerMode {
        match self.mode {
            SamplerMode::Auto if self.hash_seed != 0 => SamplerMode::HashSeed,
            SamplerMode::Auto => SamplerMode::Proportional,
            m => m,
        }
    }
}

/// FNV-1a (32 bit) of `seed` (4 bytes, little endian) followed by `bytes`, as upstream.
pub fn seeded_hash(seed: u32, bytes: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in seed.to_le_bytes().iter().chain(bytes) {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// True when `trace_id` falls in the kept share under upstream's `hash_seed` rule.
pub fn hash_seed_keeps(seed: u32, percentage: f64, trace_id: &[u8]) -> bool {
    let scaled = (percentage * f64::from(HASH_BUCKETS) / 100.0) as u32;
    seeded_hash(seed, trace_id) & (HASH_BUCKETS - 1) < scaled
}

/// The OTEP 235 rejection threshold for keeping `percentage` percent, rounded to `precision`
/// hex digits (rounded down, so the kept share is never smaller than asked).
pub fn threshold_for(percentage: f64, precision: u8) -> u64 {
    if percentage >= 100.0 {
        return 0;
    }
    let reject = (1.0 - percentage / 100.0) * MAX_ADJUSTED as f64;
    let t = (reject as u64).min(MAX_ADJUSTED);
    let drop_bits = 4 * (14 - u32::from(precision.clamp(1, 14)));
    (t >> drop_bits) << drop_bits
}

/// Formats a threshold as OTEP 235 `th` value: 14 hex digits, trailing zeros removed (`0` for
/// "keep all").
pub fn format_threshold(t: u64) -> String {
    if t == 0 {
        return "0".into();
    }
    let s = format!("{t:014x}");
    s.trim_end_matches('0').to_string()
}

/// Parses an OTEP 235 `th` value (1..14 hex digits, right-padded with zeros).
pub fn parse_threshold(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 14 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let v = u64::from_str_radix(s, 16).ok()?;
    Some(v << (4 * (14 - s.len() as u32)))
}

/// Parses an OTEP 235 `rv` value (exactly 14 hex digits).
fn parse_randomness(s: &str) -> Option<u64> {
    if s.len() != 14 {
        return None;
    }
    u64::from_str_radix(s, 16).ok()
}

/// The `ot` member of a W3C tracestate, as `key:value` pairs.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct OtelTraceState {
    /// `th` when present (`Err` when malformed).
    pub threshold: Option<Result<u64, String>>,
    /// `rv` when present (`Err` when malformed).
    pub randomness: Option<Result<u64, String>>,
}

/// Splits a tracestate into the `ot` member's value and the other members, in order.
fn split_tracestate(ts: &str) -> (Option<&str>, Vec<&str>) {
    let mut ot = None;
    let mut rest = Vec::new();
    for member in ts.split(',').map(str::trim).filter(|m| !m.is_empty()) {
        match member.strip_prefix("ot=") {
            Some(v) if ot.is_none() => ot = Some(v),
            _ => rest.push(member),
        }
    }
    (ot, rest)
}

/// Reads `th` and `rv` from a tracestate's `ot` member.
pub fn parse_otel_tracestate(ts: &str) -> OtelTraceState {
    let mut out = OtelTraceState::default();
    let Some(ot) = split_tracestate(ts).0 else {
        return out;
    };
    for kv in ot.split(';') {
        if let Some(v) = kv.strip_prefix("th:") {
            out.threshold = Some(parse_threshold(v).ok_or_else(|| v.to_string()));
        } else if let Some(v) = kv.strip_prefix("rv:") {
            out.randomness = Some(parse_randomness(v).ok_or_else(|| v.to_string()));
        }
    }
    out
}

/// Returns `ts` with `ot=th:` set to `threshold` (the `ot` member moved first, as W3C asks of a
/// modified member); other `ot` sub-keys and members are kept.
pub fn with_threshold(ts: &str, threshold: u64) -> String {
    let (ot, rest) = split_tracestate(ts);
    let mut parts = vec![format!("th:{}", format_threshold(threshold))];
    if let Some(ot) = ot {
        parts.extend(
            ot.split(';')
                .filter(|kv| !kv.is_empty() && !kv.starts_with("th:"))
                .map(str::to_string),
        );
    }
    let mut out = format!("ot={}", parts.join(";"));
    for m in rest {
        out.push(',');
        out.push_str(m);
    }
    out
}

/// The trace id's low 56 bits (OTEP 235 randomness when no `rv` is given).
fn trace_id_randomness(trace_id: &[u8]) -> Option<u64> {
    if trace_id.len() != 16 || trace_id.iter().all(|b| *b == 0) {
        return None;
    }
    let mut b = [0u8; 8];
    b[1..].copy_from_slice(&trace_id[9..16]);
    Some(u64::from_be_bytes(b))
}

/// What to do with one item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Drop it.
    Drop,
    /// Keep it unchanged.
    Keep,
    /// Keep it and set its tracestate to this value.
    KeepWithTraceState(String),
}

/// The compiled sampler, shared by the span and log paths.
#[derive(Debug, Clone)]
pub struct Sampler {
    mode: SamplerMode,
    seed: u32,
    percentage: f64,
    threshold: u64,
    fail_closed: bool,
}

impl Sampler {
    /// Compiles a validated config.
    pub fn new(c: &ProbabilisticSamplerConfig) -> Self {
        Sampler {
            mode: c.effective_mode(),
            seed: c.hash_seed,
            percentage: c.sampling_percentage,
            threshold: threshold_for(c.sampling_percentage, c.sampling_precision),
            fail_closed: c.fail_closed,
        }
    }

    fn failed(&self) -> Verdict {
        if self.fail_closed {
            Verdict::Drop
        } else {
            Verdict::Keep
        }
    }

    /// Decides for an item of trace `trace_id` carrying `tracestate`.
    pub fn decide(&self, trace_id: &[u8], tracestate: &str) -> Verdict {
        let ots = parse_otel_tracestate(tracestate);
        match self.mode {
            SamplerMode::HashSeed | SamplerMode::Auto => {
                if trace_id.is_empty()
                    || trace_id.iter().all(|b| *b == 0)
                    || ots.threshold.is_some()
                    || ots.randomness.is_some()
                {
                    return self.failed();
                }
                if hash_seed_keeps(self.seed, self.percentage, trace_id) {
                    Verdict::Keep
                } else {
                    Verdict::Drop
                }
            }
            SamplerMode::Proportional | SamplerMode::Equalizing => {
                self.decide_consistent(trace_id, tracestate, &ots)
            }
        }
    }

    fn decide_consistent(&self, trace_id: &[u8], ts: &str, ots: &OtelTraceState) -> Verdict {
        let randomness = match &ots.randomness {
            Some(Ok(r)) => Some(*r),
            Some(Err(_)) => None,
            None => trace_id_randomness(trace_id),
        };
        let incoming = match &ots.threshold {
            Some(Ok(t)) => *t,
            Some(Err(_)) => return self.failed(),
            None => 0,
        };
        let Some(r) = randomness else {
            return self.failed();
        };
        if self.percentage <= 0.0 {
            return Verdict::Drop;
        }
        let t = match self.mode {
            SamplerMode::Equalizing => incoming.max(self.threshold),
            _ => {
                // p_new = p_in * p: (2^56 - T_new) = (2^56 - T_in) * p.
                let kept = (MAX_ADJUSTED - incoming) as f64 * (self.percentage / 100.0);
                MAX_ADJUSTED - (kept as u64).min(MAX_ADJUSTED)
            }
        };
        if r < t {
            Verdict::Drop
        } else if t == incoming && ots.threshold.is_some() {
            Verdict::Keep
        } else {
            Verdict::KeepWithTraceState(with_threshold(ts, t))
        }
    }
}

/// `sampling.priority`: Some(true) keep, Some(false) drop, None no override.
fn priority(attrs: &[KeyValue]) -> Option<bool> {
    let v = attrs.iter().find(|kv| kv.key == "sampling.priority")?;
    match v.value.as_ref()?.value.as_ref()? {
        AnyInner::IntValue(i) => Some(*i > 0),
        AnyInner::DoubleValue(d) => Some(*d > 0.0),
        AnyInner::StringValue(s) => s.parse::<f64>().ok().map(|d| d > 0.0),
        _ => None,
    }
}

/// The running `probabilistic_sampler`.
pub struct ProbabilisticSampler {
    sampler: Sampler,
    next: SharedConsumer,
    sampled: Counter,
    not_sampled: Counter,
}

impl ProbabilisticSampler {
    /// Builds it in front of `next` for a pipeline of `signal`. The config was validated.
    pub fn new(
        id: &str,
        c: &ProbabilisticSamplerConfig,
        signal: Signal,
        next: SharedConsumer,
    ) -> Self {
        let name: &'static str = match signal {
            Signal::Logs => "otelcol_processor_probabilistic_sampler_count_logs_sampled_total",
            _ => "otelcol_processor_probabilistic_sampler_count_traces_sampled_total",
        };
        let counter = |sampled: &str| {
            SelfMetrics::global().counter(
                name,
                "Items the probabilistic sampler kept (sampled=true) or dropped (sampled=false).",
                vec![
                    ("processor", id.to_string()),
                    ("sampled", sampled.to_string()),
                ],
            )
        };
        ProbabilisticSampler {
            sampler: Sampler::new(c),
            next,
            sampled: counter("true"),
            not_sampled: counter("false"),
        }
    }

    /// Applies the sampler in place.
    fn apply(&self, data: &mut Telemetry) {
        match data {
            Telemetry::Traces(r) => {
                for rs in &mut r.resource_spans {
                    for ss in &mut rs.scope_spans {
                        ss.spans.retain_mut(|s| {
                            let verdict = match priority(&s.attributes) {
                                Some(true) => Verdict::Keep,
                                Some(false) => Verdict::Drop,
                                None => self.sampler.decide(&s.trace_id, &s.trace_state),
                            };
                            self.keep(verdict, &mut s.trace_state)
                        });
                    }
                    rs.scope_spans.retain(|ss| !ss.spans.is_empty());
                }
                r.resource_spans.retain(|rs| !rs.scope_spans.is_empty());
            }
            Telemetry::Logs(r) => {
                for rl in &mut r.resource_logs {
                    for sl in &mut rl.scope_logs {
                        sl.log_records.retain(|l| {
                            let verdict = match priority(&l.attributes) {
                                Some(true) => Verdict::Keep,
                                Some(false) => Verdict::Drop,
                                None => self.sampler.decide(&l.trace_id, ""),
                            };
                            // Log records carry no tracestate: a new `th` has nowhere to go.
                            self.keep(verdict, &mut String::new())
                        });
                    }
                    rl.scope_logs.retain(|sl| !sl.log_records.is_empty());
                }
                r.resource_logs.retain(|rl| !rl.scope_logs.is_empty());
            }
            Telemetry::Metrics(_) => {}
        }
    }

    fn keep(&self, verdict: Verdict, trace_state: &mut String) -> bool {
        let keep = match verdict {
            Verdict::Drop => false,
            Verdict::Keep => true,
            Verdict::KeepWithTraceState(ts) => {
                *trace_state = ts;
                true
            }
        };
        if keep {
            &self.sampled
        } else {
            &self.not_sampled
        }
        .add(1);
        keep
    }
}

impl Consumer for ProbabilisticSampler {
    fn consume(&self, mut data: Telemetry) -> ConsumeFuture<'_> {
        self.apply(&mut data);
        if data.item_count() == 0 && data.signal() != Signal::Metrics {
            return Box::pin(async { Ok(()) });
        }
        self.next.consume(data)
    }
}

#[cfg(test)]
mod tests;
