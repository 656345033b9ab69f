//! Tail sampling policies: their config (upstream's shape) and their evaluation on a whole trace.

use crate::config::ComponentConfigError;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyInner;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::trace::v1::{status::StatusCode, ResourceSpans, Span};
use regex::Regex;
use serde::{Deserialize, Serialize};
use std::hash::Hasher as _;

/// One entry of `policies` (and of `and_sub_policy` / `composite_sub_policy`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// Name, the `policy` label of the decision counters.
    pub name: String,
    /// Which policy: `always_sample`, `latency`, `status_code`, ...
    #[serde(rename = "type")]
    pub kind: String,
    /// `latency` settings.
    #[serde(default)]
    pub latency: Option<LatencyConfig>,
    /// `status_code` settings.
    #[serde(default)]
    pub status_code: Option<StatusCodeConfig>,
    /// `string_attribute` settings.
    #[serde(default)]
    pub string_attribute: Option<StringAttributeConfig>,
    /// `numeric_attribute` settings.
    #[serde(default)]
    pub numeric_attribute: Option<NumericAttributeConfig>,
    /// `probabilistic` settings.
    #[serde(default)]
    pub probabilistic: Option<ProbabilisticConfig>,
    /// `rate_limiting` settings.
    #[serde(default)]
    pub rate_limiting: Option<RateLimitingConfig>,
    /// `span_count` settings.
    #[serde(default)]
    pub span_count: Option<SpanCountConfig>,
    /// `and` settings.
    #[serde(default)]
    pub and: Option<AndConfig>,
    /// `composite` settings.
    #[serde(default)]
    pub composite: Option<CompositeConfig>,
}

/// `latency`: the trace's duration (earliest start to latest end).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LatencyConfig {
    /// Sample traces at least this long (ms).
    #[serde(default)]
    pub threshold_ms: i64,
    /// And at most this long (ms); 0 = no upper bound.
    #[serde(default)]
    pub upper_threshold_ms: i64,
}

/// `status_code`: any span with one of these status codes.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StatusCodeConfig {
    /// `OK`, `ERROR`, `UNSET`.
    pub status_codes: Vec<String>,
}

/// `string_attribute`: a span or resource attribute with one of these values.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StringAttributeConfig {
    /// Attribute key.
    pub key: String,
    /// Accepted values (regular expressions when `enabled_regex_matching`).
    #[serde(default)]
    pub values: Vec<String>,
    /// Treat `values` as unanchored regular expressions.
    #[serde(default)]
    pub enabled_regex_matching: bool,
    /// Upstream's regex result cache size; accepted, not needed here.
    #[serde(default)]
    pub cache_max_size: usize,
    /// Sample traces that do not match; a match vetoes sampling.
    #[serde(default)]
    pub invert_match: bool,
}

/// `numeric_attribute`: a span or resource attribute within `[min_value, max_value]`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NumericAttributeConfig {
    /// Attribute key.
    pub key: String,
    /// Lower bound (inclusive).
    #[serde(default)]
    pub min_value: i64,
    /// Upper bound (inclusive); 0 = none.
    #[serde(default)]
    pub max_value: i64,
    /// Sample traces that do not match; a match vetoes sampling.
    #[serde(default)]
    pub invert_match: bool,
}

/// `probabilistic`: a share of traces by a salted hash of the trace id.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProbabilisticConfig {
    /// Salt; collectors that must agree share it (upstream default `default-hash-seed`).
    #[serde(default)]
    pub hash_salt: String,
    /// Share kept, 0..=100.
    pub sampling_percentage: f64,
}

/// `rate_limiting`: at most this many spans per second.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitingConfig {
    /// Span budget per second.
    pub spans_per_second: u64,
}

/// `span_count`: traces with a span count in `[min_spans, max_spans]`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SpanCountConfig {
    /// At least this many spans.
    #[serde(default)]
    pub min_spans: usize,
    /// At most this many; 0 = no upper bound.
    #[serde(default)]
    pub max_spans: usize,
}

/// `and`: every sub-policy samples.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AndConfig {
    /// The sub-policies.
    pub and_sub_policy: Vec<PolicyConfig>,
}

/// `composite`: sub-policies in order, each within its share of a span rate.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CompositeConfig {
    /// Span budget per second of the whole composite.
    pub max_total_spans_per_second: u64,
    /// Sub-policy names in evaluation order (default: as listed).
    #[serde(default)]
    pub policy_order: Vec<String>,
    /// The sub-policies.
    pub composite_sub_policy: Vec<PolicyConfig>,
    /// Share of `max_total_spans_per_second` per sub-policy (the unlisted get the whole budget).
    #[serde(default)]
    pub rate_allocation: Vec<RateAllocation>,
}

/// One sub-policy's share of a composite's budget.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RateAllocation {
    /// Sub-policy name.
    pub policy: String,
    /// Percent of the budget.
    pub percent: u64,
}

/// A policy's verdict on one trace (upstream's decisions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Keep.
    Sampled,
    /// No opinion to keep.
    NotSampled,
    /// Inverted policy did not match: keep unless vetoed.
    InvertSampled,
    /// Inverted policy matched: veto.
    InvertNotSampled,
}

impl Decision {
    /// True for the decisions that count as `sampled="true"`.
    pub fn sampled(self) -> bool {
        matches!(self, Decision::Sampled | Decision::InvertSampled)
    }
}

/// What a policy sees of one trace.
pub struct TraceView<'a> {
    /// The trace's spans, with their resources.
    pub fragments: &'a [ResourceSpans],
    /// Number of spans.
    pub span_count: usize,
    /// The trace id.
    pub trace_id: &'a [u8],
    /// Unix seconds now (rate limits).
    pub now_secs: u64,
}

impl TraceView<'_> {
    fn spans(&self) -> impl Iterator<Item = (&[KeyValue], &Span)> {
        self.fragments.iter().flat_map(|rs| {
            let res = rs
                .resource
                .as_ref()
                .map(|r| r.attributes.as_slice())
                .unwrap_or(&[]);
            rs.scope_spans
                .iter()
                .flat_map(move |ss| ss.spans.iter().map(move |s| (res, s)))
        })
    }

    /// True when any span or its resource has `key` with a value `f` accepts.
    fn any_attr(&self, key: &str, f: impl Fn(&AnyInner) -> bool) -> bool {
        let hit = |attrs: &[KeyValue]| {
            attrs.iter().any(|kv| {
                kv.key == key
                    && kv
                        .value
                        .as_ref()
                        .and_then(|v| v.value.as_ref())
                        .is_some_and(&f)
            })
        };
        self.spans().any(|(res, s)| hit(res) || hit(&s.attributes))
    }
}

/// A second-bucketed span budget.
#[derive(Debug, Default)]
pub struct RateWindow {
    second: u64,
    used: u64,
}

impl RateWindow {
    /// Takes `n` spans from the budget of `now_secs` if they fit.
    fn take(&mut self, now_secs: u64, n: u64, budget: u64) -> bool {
        if self.second != now_secs {
            self.second = now_secs;
            self.used = 0;
        }
        if self.used + n > budget {
            return false;
        }
        self.used += n;
        true
    }
}

/// A compiled policy.
#[derive(Debug)]
pub enum Policy {
    /// Every trace.
    AlwaysSample,
    /// Duration bounds in nanoseconds.
    Latency {
        /// Lower bound.
        min_ns: u64,
        /// Upper bound (`u64::MAX` = none).
        max_ns: u64,
    },
    /// Status codes (proto values).
    StatusCode(Vec<i32>),
    /// String attribute values.
    StringAttr {
        /// Key.
        key: String,
        /// Exact values.
        values: Vec<String>,
        /// Or patterns.
        regexes: Vec<Regex>,
        /// Inverted.
        invert: bool,
    },
    /// Numeric attribute range.
    NumericAttr {
        /// Key.
        key: String,
        /// Lower bound.
        min: i64,
        /// Upper bound.
        max: i64,
        /// Inverted.
        invert: bool,
    },
    /// Salted FNV-1a 64 of the trace id at most `threshold` (upstream's rule).
    Probabilistic {
        /// Salt.
        salt: String,
        /// Hash bound.
        threshold: u64,
    },
    /// Span budget per second.
    RateLimiting {
        /// Spans per second.
        budget: u64,
        /// This second's use.
        window: RateWindow,
    },
    /// Span count bounds.
    SpanCount {
        /// Lower bound.
        min: usize,
        /// Upper bound.
        max: usize,
    },
    /// All must sample.
    And(Vec<Policy>),
    /// First sub-policy that samples within its budget.
    Composite {
        /// Whole budget.
        total: u64,
        /// Sub-policies in order with their budgets and windows.
        subs: Vec<(Policy, u64, RateWindow)>,
        /// The whole composite's window.
        window: RateWindow,
    },
}

/// Every policy type implemented.
pub const POLICY_TYPES: &[&str] = &[
    "always_sample",
    "latency",
    "status_code",
    "string_attribute",
    "numeric_attribute",
    "probabilistic",
    "rate_limiting",
    "span_count",
    "and",
    "composite",
];

/// Upstream's default salt of the `probabilistic` policy.
const DEFAULT_SALT: &str = "default-hash-seed";

fn need<'a, T>(v: &'a Option<T>, kind: &str, path: &str) -> Result<&'a T, ComponentConfigError> {
    v.as_ref().ok_or_else(|| {
        ComponentConfigError::new(
            path,
            format!("policy of type `{kind}` needs its settings under `{kind}:`"),
        )
    })
}

/// FNV-1a 64 of `salt` then `trace_id` (upstream's tail sampling `probabilistic` hash).
pub fn salted_hash(salt: &str, trace_id: &[u8]) -> u64 {
    let mut h = fnv::FnvHasher::default();
    h.write(salt.as_bytes());
    h.write(trace_id);
    h.finish()
}

impl Policy {
    /// Compiles `c`; `path` names it in errors (`policies[2]`).
    ///
    /// # Errors
    /// Unknown type, missing or out-of-range settings, bad regex, naming the key.
    pub fn compile(c: &PolicyConfig, path: &str) -> Result<Policy, ComponentConfigError> {
        let kind = c.kind.as_str();
        let sub = |k: &str| format!("{path}.{k}");
        Ok(match kind {
            "always_sample" => Policy::AlwaysSample,
            "latency" => {
                let l = need(&c.latency, kind, path)?;
                if l.threshold_ms < 0 || l.upper_threshold_ms < 0 {
                    return Err(ComponentConfigError::new(
                        sub("latency"),
                        "thresholds must not be negative",
                    ));
                }
                let ms = |v: i64| v as u64 * 1_000_000;
                Policy::Latency {
                    min_ns: ms(l.threshold_ms),
                    max_ns: if l.upper_threshold_ms == 0 {
                        u64::MAX
                    } else {
                        ms(l.upper_threshold_ms)
                    },
                }
            }
            "status_code" => {
                let s = need(&c.status_code, kind, path)?;
                let codes = s
                    .status_codes
                    .iter()
                    .map(|code| match code.as_str() {
                        "OK" => Ok(StatusCode::Ok as i32),
                        "ERROR" => Ok(StatusCode::Error as i32),
                        "UNSET" => Ok(StatusCode::Unset as i32),
                        other => Err(ComponentConfigError::new(
                            sub("status_code.status_codes"),
                            format!("unknown status code `{other}`; use OK, ERROR or UNSET"),
                        )),
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                if codes.is_empty() {
                    return Err(ComponentConfigError::new(
                        sub("status_code.status_codes"),
                        "list at least one of OK, ERROR, UNSET",
                    ));
                }
                Policy::StatusCode(codes)
            }
            "string_attribute" => {
                let s = need(&c.string_attribute, kind, path)?;
                let regexes = if s.enabled_regex_matching {
                    s.values
                        .iter()
                        .map(|v| {
                            Regex::new(v).map_err(|e| {
                                ComponentConfigError::new(
                                    sub("string_attribute.values"),
                                    format!("invalid regular expression {v:?}: {e}"),
                                )
                            })
                        })
                        .collect::<Result<Vec<_>, _>>()?
                } else {
                    Vec::new()
                };
                Policy::StringAttr {
                    key: s.key.clone(),
                    values: if s.enabled_regex_matching {
                        Vec::new()
                    } else {
                        s.values.clone()
                    },
                    regexes,
                    invert: s.invert_match,
                }
            }
            "numeric_attribute" => {
                let n = need(&c.numeric_attribute, kind, path)?;
                Policy::NumericAttr {
                    key: n.key.clone(),
                    min: n.min_value,
                    max: if n.max_value == 0 {
                        i64::MAX
                    } else {
                        n.max_value
                    },
                    invert: n.invert_match,
                }
            }
            "probabilistic" => {
                let p = need(&c.probabilistic, kind, path)?;
                if !(0.0..=100.0).contains(&p.sampling_percentage) {
                    return Err(ComponentConfigError::new(
                        sub("probabilistic.sampling_percentage"),
                        "must be from 0 to 100",
                    ));
                }
                let salt = if p.hash_salt.is_empty() {
                    DEFAULT_SALT.to_string()
                } else {
                    p.hash_salt.clone()
                };
                let ratio = p.sampling_percentage / 100.0;
                Policy::Probabilistic {
                    salt,
                    threshold: if ratio >= 1.0 {
                        u64::MAX
                    } else {
                        (ratio * u64::MAX as f64) as u64
                    },
                }
            }
            "rate_limiting" => Policy::RateLimiting {
                budget: need(&c.rate_limiting, kind, path)?.spans_per_second,
                window: RateWindow::default(),
            },
            "span_count" => {
                let s = need(&c.span_count, kind, path)?;
                Policy::SpanCount {
                    min: s.min_spans,
                    max: if s.max_spans == 0 {
                        usize::MAX
                    } else {
                        s.max_spans
                    },
                }
            }
            "and" => {
                let a = need(&c.and, kind, path)?;
                if a.and_sub_policy.is_empty() {
                    return Err(ComponentConfigError::new(
                        sub("and.and_sub_policy"),
                        "list at least one sub-policy",
                    ));
                }
                Policy::And(
                    a.and_sub_policy
                        .iter()
                        .enumerate()
                        .map(|(i, p)| Policy::compile(p, &sub(&format!("and.and_sub_policy[{i}]"))))
                        .collect::<Result<_, _>>()?,
                )
            }
            "composite" => Self::compile_composite(need(&c.composite, kind, path)?, path)?,
            other => {
                return Err(ComponentConfigError::new(
                    sub("type"),
                    format!(
                        "unknown policy type `{other}`; known: {}",
                        POLICY_TYPES.join(", ")
                    ),
                ))
            }
        })
    }

    fn compile_composite(c: &CompositeConfig, path: &str) -> Result<Policy, ComponentConfigError> {
        let base = format!("{path}.composite");
        let mut order: Vec<&PolicyConfig> = Vec::new();
        if c.policy_order.is_empty() {
            order.extend(&c.composite_sub_policy);
        } else {
            for name in &c.policy_order {
                let p = c
                    .composite_sub_policy
                    .iter()
                    .find(|p| &p.name == name)
                    .ok_or_else(|| {
                        ComponentConfigError::new(
                            format!("{base}.policy_order"),
                            format!("`{name}` is not a composite_sub_policy name"),
                        )
                    })?;
                order.push(p);
            }
        }
        let mut subs = Vec::new();
        for (i, p) in order.into_iter().enumerate() {
            let percent = c
                .rate_allocation
                .iter()
                .find(|a| a.policy == p.name)
                .map_or(100, |a| a.percent);
            let budget = c.max_total_spans_per_second * percent / 100;
            let compiled = Policy::compile(p, &format!("{base}.composite_sub_policy[{i}]"))?;
            subs.push((compiled, budget, RateWindow::default()));
        }
        Ok(Policy::Composite {
            total: c.max_total_spans_per_second,
            subs,
            window: RateWindow::default(),
        })
    }

    /// Evaluates the policy on a whole trace.
    pub fn evaluate(&mut self, t: &TraceView<'_>) -> Decision {
        let yes = |b: bool| {
            if b {
                Decision::Sampled
            } else {
                Decision::NotSampled
            }
        };
        let inverted = |matched: bool, invert: bool| match (matched, invert) {
            (m, false) => yes(m),
            (true, true) => Decision::InvertNotSampled,
            (false, true) => Decision::InvertSampled,
        };
        match self {
            Policy::AlwaysSample => Decision::Sampled,
            Policy::Latency { min_ns, max_ns } => {
                let (mut start, mut end) = (u64::MAX, 0u64);
                for (_, s) in t.spans() {
                    start = start.min(s.start_time_unix_nano);
                    end = end.max(s.end_time_unix_nano);
                }
                let d = end.saturating_sub(start);
                yes(start != u64::MAX && d >= *min_ns && d <= *max_ns)
            }
            Policy::StatusCode(codes) => yes(t
                .spans()
                .any(|(_, s)| codes.contains(&s.status.as_ref().map_or(0, |st| st.code)))),
            Policy::StringAttr {
                key,
                values,
                regexes,
                invert,
            } => {
                let m = t.any_attr(key, |v| match v {
                    AnyInner::StringValue(s) => {
                        values.iter().any(|x| x == s) || regexes.iter().any(|r| r.is_match(s))
                    }
                    _ => false,
                });
                inverted(m, *invert)
            }
            Policy::NumericAttr {
                key,
                min,
                max,
                invert,
            } => {
                let m = t.any_attr(key, |v| match v {
                    AnyInner::IntValue(i) => (*min..=*max).contains(i),
                    AnyInner::DoubleValue(d) => *d >= *min as f64 && *d <= *max as f64,
                    _ => false,
                });
                inverted(m, *invert)
            }
            Policy::Probabilistic { salt, threshold } => {
                yes(salted_hash(salt, t.trace_id) <= *threshold)
            }
            Policy::RateLimiting { budget, window } => {
                yes(window.take(t.now_secs, t.span_count as u64, *budget))
            }
            Policy::SpanCount { min, max } => yes(t.span_count >= *min && t.span_count <= *max),
            Policy::And(subs) => yes(subs.iter_mut().all(|p| p.evaluate(t).sampled())),
            Policy::Composite {
                total,
                subs,
                window,
            } => {
                let n = t.span_count as u64;
                for (p, budget, w) in subs.iter_mut() {
                    // Over its share, the next sub-policy may still take it.
                    if p.evaluate(t).sampled()
                        && w.take(t.now_secs, n, *budget)
                        && window.take(t.now_secs, n, *total)
                    {
                        return Decision::Sampled;
                    }
                }
                Decision::NotSampled
            }
        }
    }
}

/// Upstream's final decision: any veto drops; else any sampled keeps.
pub fn combine(decisions: impl IntoIterator<Item = Decision>) -> bool {
    let mut keep = false;
    for d in decisions {
        match d {
            Decision::InvertNotSampled => return false,
            Decision::Sampled | Decision::InvertSampled => keep = true,
            Decision::NotSampled => {}
        }
    }
    keep
}
