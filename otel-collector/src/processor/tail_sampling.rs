//! The `tail_sampling` processor: holds each trace for `decision_wait` after its first span, then
//! decides on the whole trace with the configured policies (upstream's types and shape).
//!
//! ```yaml
//! processors:
//!   tail_sampling:
//!     decision_wait: 10s
//!     num_traces: 50000
//!     expected_new_traces_per_sec: 1000
//!     decision_cache: {sampled_cache_size: 50000, non_sampled_cache_size: 50000}
//!     policies:
//!       - {name: errors, type: status_code, status_code: {status_codes: [ERROR]}}
//!       - {name: slow, type: latency, latency: {threshold_ms: 500}}
//!       - {name: share, type: probabilistic, probabilistic: {sampling_percentage: 10}}
//! ```
//! Guarantees: at most `num_traces` traces are held (a new trace beyond that evicts the oldest,
//! counted in `otelcol_processor_tail_sampling_sampling_trace_dropped_too_early_total`); a trace
//! whose spans arrive in several requests within `decision_wait` gets one decision; spans that
//! arrive after the decision follow it while the trace id is in the bounded decision cache
//! (kept ones are passed at once, dropped ones dropped). Decisions: a policy of `invert_match`
//! that matches vetoes; otherwise any policy that samples keeps the trace (upstream's rule).
//!
//! Held spans are kept protobuf-encoded per trace, with their resource and scope shared by all
//! traces of the request they came in (memory near the wire size: see docs/sampling.md), and
//! decoded once at the decision.
//!
//! Design: one mutex around the pending traces (a map plus an arrival-ordered queue; traces are
//! decided and evicted from its front, so both stay O(1) per trace), the policies and the
//! decision cache; held for appends and for deciding, never across an await. A timer task
//! decides due traces and sends the kept ones downstream in one batch; shutdown decides every
//! pending trace at once and flushes.
//!
//! Tests: `cargo test -p otel-collector processor::tail_sampling`.

pub mod policy;

use crate::config::{duration, ComponentConfigError};
use crate::pipeline::{
    contain, ConsumeFuture, Consumer, SharedConsumer, Shutdown, ShutdownFuture, StartContext,
    Telemetry,
};
use crate::telemetry::{Counter, Gauge, SelfMetrics};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use policy::{combine, Decision, Policy, PolicyConfig, TraceView};
use prost::Message as _;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Trace id as the map key.
pub type TraceId = [u8; 16];

/// `processors.tail_sampling`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TailSamplingConfig {
    /// How long after its first span a trace is decided (upstream default 30s).
    #[serde(with = "duration")]
    pub decision_wait: Duration,
    /// Most traces held at once (upstream default 50000).
    pub num_traces: usize,
    /// Expected new traces per second: sizes the table up front.
    pub expected_new_traces_per_sec: usize,
    /// The bounded cache of decided trace ids that late spans follow.
    pub decision_cache: DecisionCacheConfig,
    /// The policies (at least one).
    pub policies: Vec<PolicyConfig>,
}

/// `decision_cache`: how many decided trace ids are remembered, per outcome.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DecisionCacheConfig {
    /// Kept trace ids remembered; 0 = `num_traces`.
    pub sampled_cache_size: usize,
    /// Dropped trace ids remembered; 0 = `num_traces`.
    pub non_sampled_cache_size: usize,
}

impl Default for TailSamplingConfig {
    fn default() -> Self {
        TailSamplingConfig {
            decision_wait: Duration::from_secs(30),
            num_traces: 50_000,
            expected_new_traces_per_sec: 0,
            decision_cache: DecisionCacheConfig::default(),
            policies: Vec::new(),
        }
    }
}

impl TailSamplingConfig {
    /// Checks what serde cannot and compiles every policy once.
    ///
    /// # Errors
    /// The key path (`policies[1].latency`) and the fix.
    pub fn validate(&self) -> Result<(), ComponentConfigError> {
        if self.decision_wait.is_zero() {
            return Err(ComponentConfigError::new(
                "decision_wait",
                "must be greater than 0 (for example 10s)",
            ));
        }
        if self.num_traces == 0 {
            return Err(ComponentConfigError::new(
                "num_traces",
                "must be at least 1 (for example 50000)",
            ));
        }
        if self.policies.is_empty() {
            return Err(ComponentConfigError::new(
                "policies",
                "list at least one policy (for example {name: all, type: always_sample})",
            ));
        }
        self.compile().map(|_| ())
    }

    fn compile(&self) -> Result<Vec<(String, Policy)>, ComponentConfigError> {
        self.policies
            .iter()
            .enumerate()
            .map(|(i, p)| {
                Ok((
                    p.name.clone(),
                    Policy::compile(p, &format!("policies[{i}]"))?,
                ))
            })
            .collect()
    }
}

/// The resource and scope a run of spans came with, shared by every trace of that request.
#[derive(Debug)]
struct Head {
    resource: Option<Resource>,
    resource_schema: String,
    scope: Option<InstrumentationScope>,
    scope_schema: String,
}

/// Spans of one trace that came under one [`Head`], protobuf-encoded (length-delimited): a held
/// span takes its wire size, not the 3-4 times larger decoded form.
#[derive(Debug)]
struct Fragment {
    head: Arc<Head>,
    buf: Vec<u8>,
}

/// A trace waiting for its decision.
#[derive(Debug, Default)]
struct Pending {
    fragments: Vec<Fragment>,
    span_count: usize,
}

impl Pending {
    fn push(&mut self, head: &Arc<Head>, span: &Span) {
        let len = span.encoded_len();
        let frag = match self.fragments.last_mut() {
            Some(f) if Arc::ptr_eq(&f.head, head) => f,
            _ => {
                self.fragments.push(Fragment {
                    head: Arc::clone(head),
                    buf: Vec::new(),
                });
                let last = self.fragments.len() - 1;
                &mut self.fragments[last]
            }
        };
        frag.buf
            .reserve_exact(len + prost::length_delimiter_len(len));
        // Encoding into a Vec cannot fail (it grows).
        let _ = span.encode_length_delimited(&mut frag.buf);
        self.span_count += 1;
    }

    /// The held spans decoded back, one `ResourceSpans` per fragment.
    fn decode(&self) -> Vec<ResourceSpans> {
        self.fragments
            .iter()
            .map(|f| {
                let mut rest = f.buf.as_slice();
                let mut spans = Vec::new();
                while !rest.is_empty() {
                    match Span::decode_length_delimited(&mut rest) {
                        Ok(s) => spans.push(s),
                        // Bytes we encoded ourselves; stop rather than loop on corruption.
                        Err(_) => break,
                    }
                }
                ResourceSpans {
                    resource: f.head.resource.clone(),
                    scope_spans: vec![ScopeSpans {
                        scope: f.head.scope.clone(),
                        spans,
                        schema_url: f.head.scope_schema.clone(),
                    }],
                    schema_url: f.head.resource_schema.clone(),
                }
            })
            .collect()
    }
}

/// Remembers the last `cap` trace ids of one outcome.
#[derive(Debug)]
struct IdRing {
    cap: usize,
    order: VecDeque<TraceId>,
}

/// Decided trace ids, bounded per outcome; late spans follow these.
#[derive(Debug)]
struct DecisionCache {
    map: HashMap<TraceId, bool>,
    sampled: IdRing,
    dropped: IdRing,
}

impl DecisionCache {
    fn new(sampled_cap: usize, dropped_cap: usize) -> Self {
        DecisionCache {
            map: HashMap::new(),
            sampled: IdRing {
                cap: sampled_cap,
                order: VecDeque::new(),
            },
            dropped: IdRing {
                cap: dropped_cap,
                order: VecDeque::new(),
            },
        }
    }

    fn get(&self, id: &TraceId) -> Option<bool> {
        self.map.get(id).copied()
    }

    fn insert(&mut self, id: TraceId, keep: bool) {
        let ring = if keep {
            &mut self.sampled
        } else {
            &mut self.dropped
        };
        if ring.cap == 0 {
            return;
        }
        if ring.order.len() >= ring.cap {
            if let Some(old) = ring.order.pop_front() {
                self.map.remove(&old);
            }
        }
        ring.order.push_back(id);
        self.map.insert(id, keep);
    }

    fn len(&self) -> usize {
        self.map.len()
    }
}

/// The processor's own metrics.
#[derive(Debug, Clone)]
struct Metrics {
    per_policy: Vec<(Counter, Counter)>,
    global: (Counter, Counter),
    dropped_too_early: Counter,
    late_spans: (Counter, Counter),
    new_traces: Counter,
    on_memory: Gauge,
    send_failed: Counter,
}

impl Metrics {
    fn new(id: &str, policies: &[(String, Policy)]) -> Self {
        let m = SelfMetrics::global();
        let pair = |name: &'static str, help: &'static str, extra: Vec<(&'static str, String)>| {
            let with = |sampled: &str| {
                let mut l = vec![("processor", id.to_string())];
                l.extend(extra.iter().cloned());
                l.push(("sampled", sampled.to_string()));
                m.counter(name, help, l)
            };
            (with("true"), with("false"))
        };
        let one = vec![("processor", id.to_string())];
        Metrics {
            per_policy: policies
                .iter()
                .map(|(name, _)| {
                    pair(
                        "otelcol_processor_tail_sampling_count_traces_sampled_total",
                        "Traces each policy sampled (sampled=true) or not.",
                        vec![("policy", name.clone())],
                    )
                })
                .collect(),
            global: pair(
                "otelcol_processor_tail_sampling_global_count_traces_sampled_total",
                "Traces kept (sampled=true) or dropped by the final decision.",
                Vec::new(),
            ),
            dropped_too_early: m.counter(
                "otelcol_processor_tail_sampling_sampling_trace_dropped_too_early_total",
                "Traces evicted before their decision because num_traces were held.",
                one.clone(),
            ),
            late_spans: pair(
                "otelcol_processor_tail_sampling_early_releases_from_cache_decision_total",
                "Spans that arrived after their trace's decision and followed it.",
                Vec::new(),
            ),
            new_traces: m.counter(
                "otelcol_processor_tail_sampling_new_trace_id_received_total",
                "Trace ids seen for the first time.",
                one.clone(),
            ),
            on_memory: m.gauge(
                "otelcol_processor_tail_sampling_sampling_traces_on_memory",
                "Traces held waiting for their decision.",
                one.clone(),
            ),
            send_failed: m.counter(
                "otelcol_processor_tail_sampling_sampling_send_failed_spans_total",
                "Kept spans the next stage refused.",
                one,
            ),
        }
    }
}

/// The sampling state machine without tasks or clocks of its own (the processor drives it; tests
/// drive it with chosen instants).
#[derive(Debug)]
pub struct Engine {
    wait: Duration,
    num_traces: usize,
    pending: HashMap<TraceId, Pending>,
    order: VecDeque<(TraceId, Instant)>,
    cache: DecisionCache,
    policies: Vec<(String, Policy)>,
    metrics: Metrics,
}

/// Splits a request's spans by trace id, keeping each span's resource and scope.
pub(crate) fn by_trace(
    req: ExportTraceServiceRequest,
) -> HashMap<TraceId, (Vec<ResourceSpans>, usize)> {
    let mut out: HashMap<TraceId, (Vec<ResourceSpans>, usize)> = HashMap::new();
    for rs in req.resource_spans {
        let mut per: HashMap<TraceId, Vec<ScopeSpans>> = HashMap::new();
        for ss in rs.scope_spans {
            let mut groups: HashMap<TraceId, Vec<Span>> = HashMap::new();
            for s in ss.spans {
                let mut id = [0u8; 16];
                if s.trace_id.len() == 16 {
                    id.copy_from_slice(&s.trace_id);
                }
                groups.entry(id).or_default().push(s);
            }
            for (id, spans) in groups {
                per.entry(id).or_default().push(ScopeSpans {
                    scope: ss.scope.clone(),
                    spans,
                    schema_url: ss.schema_url.clone(),
                });
            }
        }
        for (id, scope_spans) in per {
            let n = scope_spans.iter().map(|s| s.spans.len()).sum::<usize>();
            let e = out.entry(id).or_default();
            e.0.push(ResourceSpans {
                resource: rs.resource.clone(),
                scope_spans,
                schema_url: rs.schema_url.clone(),
            });
            e.1 += n;
        }
    }
    out
}

fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Engine {
    /// Builds the engine for component `id` from a validated config.
    ///
    /// # Errors
    /// A policy that does not compile (never after `validate`).
    pub fn new(id: &str, c: &TailSamplingConfig) -> Result<Self, ComponentConfigError> {
        let policies = c.compile()?;
        let cache_size = |n: usize| if n == 0 { c.num_traces } else { n };
        let expected = c
            .expected_new_traces_per_sec
            .saturating_mul(c.decision_wait.as_secs().max(1) as usize)
            .min(c.num_traces);
        Ok(Engine {
            wait: c.decision_wait,
            num_traces: c.num_traces,
            pending: HashMap::with_capacity(expected),
            order: VecDeque::with_capacity(expected),
            cache: DecisionCache::new(
                cache_size(c.decision_cache.sampled_cache_size),
                cache_size(c.decision_cache.non_sampled_cache_size),
            ),
            metrics: Metrics::new(id, &policies),
            policies,
        })
    }

    /// Takes a request's spans at `now`. Returns the spans of already-kept traces, to pass on at
    /// once; spans of already-dropped traces are dropped; the rest wait for their decision.
    pub fn ingest(&mut self, req: ExportTraceServiceRequest, now: Instant) -> Vec<ResourceSpans> {
        let mut pass = Vec::new();
        for rs in req.resource_spans {
            for ss in rs.scope_spans {
                let head = Arc::new(Head {
                    resource: rs.resource.clone(),
                    resource_schema: rs.schema_url.clone(),
                    scope: ss.scope,
                    scope_schema: ss.schema_url,
                });
                let late: Vec<Span> = ss
                    .spans
                    .into_iter()
                    .filter_map(|span| self.hold(&head, span, now))
                    .collect();
                if !late.is_empty() {
                    pass.push(ResourceSpans {
                        resource: head.resource.clone(),
                        scope_spans: vec![ScopeSpans {
                            scope: head.scope.clone(),
                            spans: late,
                            schema_url: head.scope_schema.clone(),
                        }],
                        schema_url: head.resource_schema.clone(),
                    });
                }
            }
        }
        self.metrics.on_memory.set(self.pending.len() as i64);
        pass
    }

    /// Holds one span for its trace's decision; returns it when its trace was already kept.
    fn hold(&mut self, head: &Arc<Head>, span: Span, now: Instant) -> Option<Span> {
        let mut id = [0u8; 16];
        if span.trace_id.len() == 16 {
            id.copy_from_slice(&span.trace_id);
        }
        if let Some(p) = self.pending.get_mut(&id) {
            p.push(head, &span);
            return None;
        }
        match self.cache.get(&id) {
            Some(true) => {
                self.metrics.late_spans.0.add(1);
                return Some(span);
            }
            Some(false) => {
                self.metrics.late_spans.1.add(1);
                return None;
            }
            None => {}
        }
        while self.pending.len() >= self.num_traces {
            let Some((old, _)) = self.order.pop_front() else {
                break;
            };
            if self.pending.remove(&old).is_some() {
                self.metrics.dropped_too_early.add(1);
            }
        }
        self.metrics.new_traces.add(1);
        self.order.push_back((id, now));
        let mut p = Pending::default();
        p.push(head, &span);
        self.pending.insert(id, p);
        None
    }

    /// Decides every trace first seen at least `decision_wait` before `now` (all of them when
    /// `all`), returning the spans of the kept ones.
    pub fn decide_due(&mut self, now: Instant, all: bool) -> Vec<ResourceSpans> {
        let secs = unix_secs();
        let mut kept = Vec::new();
        while let Some(&(id, first)) = self.order.front() {
            if !all && now.saturating_duration_since(first) < self.wait {
                break;
            }
            self.order.pop_front();
            let Some(p) = self.pending.remove(&id) else {
                continue;
            };
            let spans = p.decode();
            if self.decide(&id, &spans, p.span_count, secs) {
                kept.extend(spans);
            }
        }
        self.metrics.on_memory.set(self.pending.len() as i64);
        kept
    }

    fn decide(
        &mut self,
        id: &TraceId,
        spans: &[ResourceSpans],
        span_count: usize,
        now_secs: u64,
    ) -> bool {
        let view = TraceView {
            fragments: spans,
            span_count,
            trace_id: id,
            now_secs,
        };
        let mut decisions: Vec<Decision> = Vec::with_capacity(self.policies.len());
        for (i, (_, policy)) in self.policies.iter_mut().enumerate() {
            let d = policy.evaluate(&view);
            let (yes, no) = &self.metrics.per_policy[i];
            if d.sampled() { yes } else { no }.add(1);
            decisions.push(d);
        }
        let keep = combine(decisions);
        if keep {
            &self.metrics.global.0
        } else {
            &self.metrics.global.1
        }
        .add(1);
        self.cache.insert(*id, keep);
        keep
    }

    /// Traces waiting for their decision.
    pub fn pending_traces(&self) -> usize {
        self.pending.len()
    }

    /// Spans waiting for their decision.
    pub fn pending_spans(&self) -> usize {
        self.pending.values().map(|p| p.span_count).sum()
    }

    /// Decided trace ids remembered.
    pub fn cached_decisions(&self) -> usize {
        self.cache.len()
    }

    /// How often the timer should look for due traces.
    fn tick(&self) -> Duration {
        (self.wait / 10).clamp(Duration::from_millis(10), Duration::from_secs(1))
    }
}

/// The running `tail_sampling` processor (traces only).
pub struct TailSampler {
    id: String,
    engine: Mutex<Engine>,
    next: SharedConsumer,
    stop: CancellationToken,
    timer: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl TailSampler {
    /// Starts the processor and its decision timer in front of `next`.
    ///
    /// # Errors
    /// A config that does not compile (never after `validate`).
    pub fn start(
        id: &str,
        c: &TailSamplingConfig,
        next: SharedConsumer,
        ctx: &StartContext,
    ) -> Result<Arc<Self>, ComponentConfigError> {
        let p = Arc::new(TailSampler {
            id: id.to_string(),
            engine: Mutex::new(Engine::new(id, c)?),
            next,
            stop: ctx.cancel.child_token(),
            timer: Mutex::new(None),
        });
        let timer = Arc::clone(&p);
        let task = tokio::spawn(contain::supervise("processor", id.to_string(), move || {
            Arc::clone(&timer).run_timer()
        }));
        *p.timer.lock().unwrap_or_else(|e| e.into_inner()) = Some(task);
        Ok(p)
    }

    fn engine(&self) -> std::sync::MutexGuard<'_, Engine> {
        self.engine.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn run_timer(self: Arc<Self>) {
        let tick = self.engine().tick();
        let mut every = tokio::time::interval(tick);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = self.stop.cancelled() => return,
                _ = every.tick() => {}
            }
            let kept = self.engine().decide_due(Instant::now(), false);
            self.send(kept).await;
        }
    }

    /// Sends kept spans downstream; a refusal is logged and counted (the decision is made).
    async fn send(&self, resource_spans: Vec<ResourceSpans>) {
        if resource_spans.is_empty() {
            return;
        }
        let data = Telemetry::Traces(ExportTraceServiceRequest { resource_spans });
        let n = data.item_count() as u64;
        if let Err(e) = self.next.consume(data).await {
            let m = self.engine().metrics.send_failed.clone();
            if m.get() == 0 {
                tracing::warn!(processor = %self.id, error = %e, spans = n, "next stage refused sampled spans; dropping them (counted from now on)");
            }
            m.add(n);
        }
    }
}

impl Consumer for TailSampler {
    fn consume(&self, data: Telemetry) -> ConsumeFuture<'_> {
        let Telemetry::Traces(req) = data else {
            // Only traces pipelines list it (see `processor::build`); pass anything else.
            return self.next.consume(data);
        };
        let pass = self.engine().ingest(req, Instant::now());
        if pass.is_empty() {
            return Box::pin(async { Ok(()) });
        }
        self.next
            .consume(Telemetry::Traces(ExportTraceServiceRequest {
                resource_spans: pass,
            }))
    }
}

impl Shutdown for TailSampler {
    fn shutdown(&self, deadline: Instant) -> ShutdownFuture<'_> {
        Box::pin(async move {
            self.stop.cancel();
            let task = self.timer.lock().unwrap_or_else(|e| e.into_inner()).take();
            if let Some(t) = task {
                let _ = tokio::time::timeout_at(deadline, t).await;
            }
            // Decide what is held now rather than lose it.
            let kept = self.engine().decide_due(Instant::now(), true);
            let _ = tokio::time::timeout_at(deadline, self.send(kept)).await;
        })
    }
}

#[cfg(test)]
mod tests;
