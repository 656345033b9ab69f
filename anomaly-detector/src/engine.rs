//! One detection's evaluation loop: queries Prometheus every interval, keeps a
//! [`SeriesDetector`] per returned series (history replayed on first sight, only new points fed
//! afterwards), turns anomalous points into firing alerts and normal points into resolutions,
//! expires series that disappear and publishes the results to the [`Store`].
//!
//! Scheduling: `tokio::time::interval` with [`MissedTickBehavior::Skip`], chosen deliberately:
//! ticks stay on the original grid (no drift), a cycle that overruns its interval makes the loop
//! skip the ticks it missed instead of firing a burst of back-to-back cycles, and because the
//! cycle runs inside the loop body, two cycles of one detection never overlap.
//!
//! Tests: `cargo test -p anomaly-detector engine::` (synthetic series through a fake query
//! source) and `tests/service_live.rs` (real Prometheus that is down, then up).

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::alert::{
    fingerprint, rfc3339_secs, Alert, AlertDispatcher, AlertEvent, AlertStatus, ALERT_NAME,
};
use crate::config::DetectionConfig;
use crate::metrics::Metrics;
use crate::model::{Evaluation, ModelKind, SeriesDetector, Severity};
use crate::prometheus::{Labels, PrometheusClient, QueryError, RangeSeries};
use crate::state::{
    service_of, AnomalyRecord, CycleInfo, CycleStatus, DetectionSnapshot, SeriesSnapshot, Store,
};

/// Firing alerts carry `endsAt = now + FIRING_VALIDITY × interval`, so Alertmanager resolves
/// them by itself if the detector stops re-sending (same rule as Prometheus).
const FIRING_VALIDITY: u32 = 4;

/// Current unix time in seconds.
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// What a detection needs besides its own config.
#[derive(Debug, Clone)]
pub struct RunnerContext {
    /// Prometheus client.
    pub client: PrometheusClient,
    /// Shared results.
    pub store: Arc<Store>,
    /// Own telemetry.
    pub metrics: Arc<Metrics>,
    /// Alert sinks.
    pub alerts: AlertDispatcher,
    /// Dashboard link template (`{detection}`, `{service}`).
    pub dashboard_url: String,
}

/// An open anomaly episode of one series.
#[derive(Debug, Clone)]
struct Firing {
    starts_at: i64,
    severity: Severity,
    /// The most anomalous evaluation of the episode.
    peak: Evaluation,
    /// The latest anomalous evaluation (what the alert describes).
    latest: Evaluation,
}

#[derive(Debug)]
struct SeriesState {
    detector: SeriesDetector,
    last_ts: i64,
    last_seen: i64,
    last_eval: Option<Evaluation>,
    firing: Option<Firing>,
}

/// Per-detection series tracking, independent of I/O so it can run on a blocking thread.
#[derive(Debug)]
pub struct Tracker {
    cfg: Arc<DetectionConfig>,
    interval: Duration,
    template: AlertTemplate,
    series: HashMap<Labels, SeriesState>,
    limit_warned: bool,
    /// Series on a fallback model at the end of the previous cycle (logged when it changes).
    degraded: usize,
    /// How a point is fed to a series' model ([`SeriesDetector::observe`]; tests swap it).
    observe: Observe,
}

/// Feeds one point to a series' model.
type Observe = fn(&mut SeriesDetector, i64, f64) -> Evaluation;

/// Result of feeding one query result to a [`Tracker`].
#[derive(Debug, Default)]
pub struct CycleOutcome {
    /// Alerts to send (firing ones every cycle, resolutions once).
    pub events: Vec<AlertEvent>,
    /// Episodes that ended this cycle.
    pub resolved: Vec<AnomalyRecord>,
    /// Series that got new points.
    pub series_evaluated: u64,
    /// Points fed to models.
    pub points: u64,
    /// Series ignored because `max_series` was reached.
    pub dropped: u64,
    /// Series forgotten because they disappeared.
    pub expired: u64,
    /// Series whose model panicked this cycle (forgotten; rebuilt from history next cycle).
    pub model_panics: u64,
}

impl Tracker {
    /// A tracker for `cfg` evaluated every `interval`.
    pub fn new(
        cfg: Arc<DetectionConfig>,
        interval: Duration,
        generator_url: String,
        dashboard_url: String,
    ) -> Self {
        let template = AlertTemplate {
            webhooks: cfg.webhooks.clone().into(),
            cfg: cfg.clone(),
            interval,
            generator_url,
            dashboard_url,
        };
        Self {
            cfg,
            interval,
            template,
            series: HashMap::new(),
            limit_warned: false,
            degraded: 0,
            observe: SeriesDetector::observe,
        }
    }

    /// Number of series tracked.
    pub fn len(&self) -> usize {
        self.series.len()
    }

    /// True when no series is tracked.
    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    /// Whether every series in `results` is already tracked.
    pub fn knows_all(&self, results: &[RangeSeries]) -> bool {
        results
            .iter()
            .all(|s| s.points.is_empty() || self.series.contains_key(&s.labels))
    }

    /// Feeds a query result evaluated at `now` (unix seconds). Points at or before a series'
    /// last fed point are ignored; for a series seen for the first time every point is replayed
    /// but only points newer than one interval can raise an alert.
    pub fn process(&mut self, results: Vec<RangeSeries>, now: i64) -> CycleOutcome {
        let mut out = CycleOutcome::default();
        let step = self.cfg.step.as_secs_f64();
        let window = self.interval.max(self.cfg.step).as_secs() as i64;
        let new_series_from = now - window;
        for rs in results {
            if rs.points.is_empty() {
                continue;
            }
            let is_new = !self.series.contains_key(&rs.labels);
            if is_new && self.series.len() >= self.cfg.max_series {
                out.dropped += 1;
                continue;
            }
            let state = self
                .series
                .entry(rs.labels.clone())
                .or_insert_with(|| SeriesState {
                    detector: SeriesDetector::new(&self.cfg.model, step),
                    last_ts: i64::MIN,
                    last_seen: now,
                    last_eval: None,
                    firing: None,
                });
            state.last_seen = now;
            let eligible_from = if is_new {
                new_series_from
            } else {
                state.last_ts
            };
            let prev_model = state.last_eval.as_ref().map(|e| e.model);
            // A panicking model must not take the other series (or the detection) with it:
            // contain it here, forget the series (its model state is unknown) and count it.
            let observe = self.observe;
            let fed = catch_unwind(AssertUnwindSafe(|| {
                feed(state, observe, rs.points, eligible_from)
            }));
            let Ok(Fed {
                fed,
                any_eligible,
                worst,
            }) = fed
            else {
                self.series.remove(&rs.labels);
                out.model_panics += 1;
                tracing::warn!(detection = %self.cfg.name, series = ?rs.labels, "series model panicked; series dropped and rebuilt from history next cycle");
                continue;
            };
            if fed == 0 {
                continue;
            }
            out.series_evaluated += 1;
            out.points += fed;
            if let (Some(prev), Some(e)) = (prev_model, &state.last_eval) {
                if prev != e.model {
                    tracing::info!(detection = %self.cfg.name, series = ?rs.labels, from = prev.as_str(), to = e.model.as_str(), degraded = is_degraded(e.model), "series model changed");
                }
            }
            if !any_eligible {
                continue;
            }
            match worst {
                Some(e) => {
                    let severity = e.severity.unwrap_or(Severity::Warning);
                    match &mut state.firing {
                        Some(f) => {
                            if severity == Severity::Critical && f.severity == Severity::Warning {
                                // The severity label changes: resolve the warning alert.
                                let old = f.clone();
                                out.events.push(self.template.event(
                                    &rs.labels,
                                    &old,
                                    AlertStatus::Resolved,
                                    now,
                                ));
                                f.severity = Severity::Critical;
                            }
                            if e.score >= f.peak.score {
                                f.peak = e.clone();
                            }
                            f.latest = e;
                        }
                        None => {
                            tracing::info!(detection = %self.cfg.name, series = ?rs.labels, value = e.value, expected = e.expected, score = e.score, model = e.model.as_str(), "anomaly started");
                            state.firing = Some(Firing {
                                starts_at: e.timestamp,
                                severity,
                                peak: e.clone(),
                                latest: e,
                            });
                        }
                    }
                }
                None => {
                    if let Some(f) = state.firing.take() {
                        tracing::info!(detection = %self.cfg.name, series = ?rs.labels, "anomaly resolved");
                        out.events.push(self.template.event(
                            &rs.labels,
                            &f,
                            AlertStatus::Resolved,
                            now,
                        ));
                        out.resolved
                            .push(record(&self.cfg.name, &rs.labels, &f, Some(now)));
                    }
                }
            }
        }
        // Expire series that left the results.
        let expiry = self.cfg.series_expiry.as_secs() as i64;
        let gone: Vec<Labels> = self
            .series
            .iter()
            .filter(|(_, s)| now - s.last_seen > expiry)
            .map(|(l, _)| l.clone())
            .collect();
        for labels in gone {
            if let Some(s) = self.series.remove(&labels) {
                out.expired += 1;
                if let Some(f) = s.firing {
                    out.events
                        .push(self.template.event(&labels, &f, AlertStatus::Resolved, now));
                    out.resolved
                        .push(record(&self.cfg.name, &labels, &f, Some(now)));
                }
            }
        }
        // Every still-firing alert is re-sent each cycle (Alertmanager needs it; webhooks dedup).
        for (labels, s) in &self.series {
            if let Some(f) = &s.firing {
                out.events
                    .push(self.template.event(labels, f, AlertStatus::Firing, now));
            }
        }
        let degraded = self
            .series
            .values()
            .filter(|s| s.last_eval.as_ref().is_some_and(|e| is_degraded(e.model)))
            .count();
        if degraded != self.degraded {
            if degraded > 0 {
                tracing::info!(detection = %self.cfg.name, degraded, series = self.series.len(), "series on a fallback model (warming_up or robust_mad: not enough history for Holt-Winters yet)");
            } else {
                tracing::info!(detection = %self.cfg.name, series = self.series.len(), "every series has enough history for Holt(-Winters)");
            }
            self.degraded = degraded;
        }
        if out.dropped > 0 && !self.limit_warned {
            tracing::warn!(detection = %self.cfg.name, max_series = self.cfg.max_series, dropped = out.dropped, "series limit reached; further series are ignored (raise max_series or narrow the query)");
            self.limit_warned = true;
        }
        out
    }

    /// The latest evaluation of every series, for the store.
    pub fn snapshot(&self) -> Vec<SeriesSnapshot> {
        self.series
            .iter()
            .filter_map(|(labels, s)| {
                let e = s.last_eval.as_ref()?;
                Some(SeriesSnapshot {
                    labels: labels.clone(),
                    timestamp: e.timestamp,
                    value: e.value,
                    expected: e.expected,
                    lower: e.lower,
                    upper: e.upper,
                    score: e.score,
                    anomalous: e.anomalous,
                    model: e.model.as_str(),
                    firing: s.firing.is_some(),
                })
            })
            .collect()
    }

    /// Currently firing episodes, for the API.
    pub fn firing(&self) -> Vec<AnomalyRecord> {
        self.series
            .iter()
            .filter_map(|(l, s)| {
                s.firing
                    .as_ref()
                    .map(|f| record(&self.cfg.name, l, f, None))
            })
            .collect()
    }
}

/// What feeding one series' new points produced.
struct Fed {
    /// Points fed.
    fed: u64,
    /// Whether a point newer than `eligible_from` was fed.
    any_eligible: bool,
    /// The most anomalous eligible evaluation.
    worst: Option<Evaluation>,
}

/// Feeds the points of `points` newer than the series' last one to its model.
fn feed(
    state: &mut SeriesState,
    observe: Observe,
    points: Vec<(i64, f64)>,
    eligible_from: i64,
) -> Fed {
    let mut r = Fed {
        fed: 0,
        any_eligible: false,
        worst: None,
    };
    let mut replayed = false;
    for (ts, v) in points {
        if ts <= state.last_ts {
            continue;
        }
        if ts > eligible_from && replayed {
            // the replay never alerts: its events must not make the first live one a repeat
            state.detector.forget_events();
            replayed = false;
        }
        replayed |= ts <= eligible_from;
        let v = if v.is_finite() { v } else { f64::NAN };
        let e = observe(&mut state.detector, ts, v);
        state.last_ts = ts;
        r.fed += 1;
        if ts > eligible_from {
            r.any_eligible = true;
            if e.anomalous && r.worst.as_ref().is_none_or(|w| e.score >= w.score) {
                r.worst = Some(e.clone());
            }
        }
        state.last_eval = Some(e);
    }
    r
}

/// Whether `kind` is a fallback used for lack of history.
pub fn is_degraded(kind: ModelKind) -> bool {
    !matches!(
        kind,
        ModelKind::SeasonalHoltWinters | ModelKind::NonSeasonal
    )
}

fn record(detection: &str, labels: &Labels, f: &Firing, ends_at: Option<i64>) -> AnomalyRecord {
    let p = &f.peak;
    AnomalyRecord {
        detection: detection.to_string(),
        labels: labels.clone(),
        fingerprint: fingerprint(labels),
        status: if ends_at.is_some() {
            "resolved"
        } else {
            "firing"
        },
        severity: f.severity.as_str(),
        starts_at: f.starts_at,
        ends_at,
        timestamp: p.timestamp,
        value: p.value,
        expected: p.expected,
        lower: p.lower,
        upper: p.upper,
        score: p.score,
        model: p.model.as_str(),
    }
}

/// Label names the detector sets itself; a series label of the same name becomes `exported_*`.
const RESERVED: [&str; 3] = ["alertname", "severity", "detection"];

/// The alert labels of a series: series labels (without `__name__`), the detection's extra
/// labels, `alertname`, `severity` and `detection`.
pub fn alert_labels(cfg: &DetectionConfig, series: &Labels, severity: Severity) -> Labels {
    let mut l = Labels::new();
    for (k, v) in series {
        if k == "__name__" || v.is_empty() {
            continue;
        }
        if RESERVED.contains(&k.as_str()) {
            l.insert(format!("exported_{k}"), v.clone());
        } else {
            l.insert(k.clone(), v.clone());
        }
    }
    for (k, v) in &cfg.labels {
        l.insert(k.clone(), v.clone());
    }
    l.insert("alertname".into(), ALERT_NAME.into());
    l.insert("severity".into(), severity.as_str().into());
    l.insert("detection".into(), cfg.name.clone());
    l
}

fn fmt_num(v: f64) -> String {
    if !v.is_finite() {
        return "n/a".into();
    }
    let a = v.abs();
    if a != 0.0 && !(1e-3..1e6).contains(&a) {
        format!("{v:.4e}")
    } else {
        format!("{:.4}", v)
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
    }
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// What every alert of a detection shares.
#[derive(Debug)]
struct AlertTemplate {
    cfg: Arc<DetectionConfig>,
    interval: Duration,
    generator_url: String,
    dashboard_url: String,
    webhooks: Arc<[String]>,
}

impl AlertTemplate {
    /// The alert of `series` for episode `f` with `status`, as of `now`.
    fn event(&self, series: &Labels, f: &Firing, status: AlertStatus, now: i64) -> AlertEvent {
        let (cfg, interval) = (&*self.cfg, self.interval);
        let labels = alert_labels(cfg, series, f.severity);
        let e = &f.latest;
        let service = service_of(series).unwrap_or("");
        let who = series
            .iter()
            .filter(|(k, _)| k.as_str() != "__name__")
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(", ");
        let mut annotations = Labels::new();
        annotations.insert(
            "summary".into(),
            format!(
                "Anomaly in {} for {}",
                cfg.name,
                if who.is_empty() { "the series" } else { &who }
            ),
        );
        let mut description = format!(
            "Observed {} vs expected {} (band {} .. {}), score {:.3}, model {}",
            fmt_num(e.value),
            fmt_num(e.expected),
            fmt_num(e.lower),
            fmt_num(e.upper),
            e.score,
            e.model.as_str()
        );
        if is_degraded(e.model) {
            description.push_str(" (degraded: not enough history for Holt-Winters yet)");
        }
        annotations.insert("description".into(), description);
        annotations.insert("observed".into(), fmt_num(e.value));
        annotations.insert("expected".into(), fmt_num(e.expected));
        annotations.insert("lower_bound".into(), fmt_num(e.lower));
        annotations.insert("upper_bound".into(), fmt_num(e.upper));
        annotations.insert("score".into(), format!("{:.3}", e.score));
        annotations.insert("peak_score".into(), format!("{:.3}", f.peak.score));
        annotations.insert("model".into(), e.model.as_str().into());
        annotations.insert(
            "dashboard".into(),
            self.dashboard_url
                .replace("{detection}", &percent_encode(&cfg.name))
                .replace("{service}", &percent_encode(service)),
        );
        for (k, v) in &cfg.annotations {
            annotations.insert(k.clone(), v.clone());
        }
        let ends_at = match status {
            AlertStatus::Firing => now + (interval * FIRING_VALIDITY).as_secs() as i64,
            AlertStatus::Resolved => now,
        };
        let fp = fingerprint(&labels);
        AlertEvent {
            alert: Alert {
                labels,
                annotations,
                starts_at: rfc3339_secs(f.starts_at),
                ends_at: rfc3339_secs(ends_at),
                generator_url: self.generator_url.clone(),
            },
            status,
            fingerprint: fp,
            to_alertmanager: cfg.alertmanager,
            webhooks: self.webhooks.clone(),
        }
    }
}

/// Why a cycle failed.
#[derive(Debug, thiserror::Error)]
pub enum CycleError {
    /// The Prometheus query failed.
    #[error(transparent)]
    Query(#[from] QueryError),
    /// Model evaluation panicked outside the per-series containment; the tracker was reset.
    #[error("model evaluation panicked ({0}); series state reset")]
    ModelPanic(String),
}

impl CycleError {
    /// Short stable reason for `anomaly_detector_failures_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            CycleError::Query(e) => e.reason(),
            CycleError::ModelPanic(_) => "model_panic",
        }
    }
}

/// Runs one detection on its schedule until `cancel` fires.
#[derive(Debug)]
pub struct DetectionRunner {
    cfg: Arc<DetectionConfig>,
    interval: Duration,
    ctx: RunnerContext,
    tracker: Option<Tracker>,
    /// End of the last successful query; the next query starts one step before it.
    last_end: Option<i64>,
    cycle: CycleInfo,
}

impl DetectionRunner {
    /// A runner for `cfg` evaluated every `interval`.
    pub fn new(cfg: DetectionConfig, interval: Duration, ctx: RunnerContext) -> Self {
        let cfg = Arc::new(cfg);
        let tracker = Tracker::new(
            cfg.clone(),
            interval,
            ctx.client.graph_url(&cfg.query),
            ctx.dashboard_url.clone(),
        );
        let cycle = CycleInfo {
            interval_seconds: interval.as_secs().max(1),
            scheduled_at: Some(unix_now()),
            ..CycleInfo::default()
        };
        Self {
            cfg,
            interval,
            ctx,
            tracker: Some(tracker),
            last_end: None,
            cycle,
        }
    }

    /// The schedule loop (see the module docs for the tick policy).
    pub async fn run(mut self, cancel: CancellationToken) {
        let mut ticker = tokio::time::interval(self.interval);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
        // Publish the schedule so `/health` can tell a stalled detection from a pending one.
        self.publish();
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = ticker.tick() => {}
            }
            self.run_cycle(unix_now(), &cancel).await;
        }
        tracing::debug!(detection = %self.cfg.name, "detection stopped");
    }

    /// Runs one cycle as of `now` (unix seconds): query, evaluate, alert, publish.
    /// Returns whether it succeeded; failures are counted, logged and published, never fatal.
    pub async fn run_cycle(&mut self, now: i64, cancel: &CancellationToken) -> bool {
        let span = tracing::info_span!(
            "detection_cycle",
            detection = %self.cfg.name,
            series = tracing::field::Empty,
            points = tracing::field::Empty,
            alerts = tracing::field::Empty,
            outcome = tracing::field::Empty,
        );
        let started = Instant::now();
        let result = self.cycle(now, cancel).instrument(span.clone()).await;
        let elapsed = started.elapsed();
        let ok = match result {
            Ok(out) => {
                span.record("series", out.series_evaluated);
                span.record("points", out.points);
                span.record("alerts", out.events.len());
                span.record("outcome", "success");
                if self.cycle.consecutive_failures > 0 {
                    tracing::info!(detection = %self.cfg.name, after_failures = self.cycle.consecutive_failures, "detection recovered");
                }
                self.cycle.status = CycleStatus::Success;
                self.cycle.last_success = Some(now);
                self.cycle.last_error = None;
                self.cycle.consecutive_failures = 0;
                true
            }
            Err(CycleError::Query(QueryError::Cancelled)) => return false,
            Err(e) => {
                span.record("outcome", "failure");
                let reason = e.reason();
                self.ctx.metrics.failure(&self.cfg.name, reason, 1);
                self.cycle.status = CycleStatus::Failure;
                self.cycle.consecutive_failures += 1;
                // Log the first failure of a burst at WARN, the rest at DEBUG.
                if self.cycle.consecutive_failures == 1 {
                    tracing::warn!(detection = %self.cfg.name, reason, error = %e, "cycle failed; will retry next interval");
                } else {
                    tracing::debug!(detection = %self.cfg.name, reason, error = %e, failures = self.cycle.consecutive_failures, "cycle failed again");
                }
                self.cycle.last_error = Some(e.to_string());
                false
            }
        };
        self.cycle.last_duration_seconds = elapsed.as_secs_f64();
        self.cycle.last_completed = Some(unix_now());
        self.ctx.metrics.cycle(&self.cfg.name, elapsed, ok);
        self.publish();
        ok
    }

    async fn cycle(
        &mut self,
        now: i64,
        cancel: &CancellationToken,
    ) -> Result<CycleOutcome, CycleError> {
        let step = self.cfg.step.as_secs().max(1) as i64;
        let end = now - now.rem_euclid(step);
        let history_start = end - self.cfg.history.as_secs() as i64;
        let start = match self.last_end {
            Some(last) => (last - step).clamp(history_start, end),
            None => history_start,
        };
        let client = &self.ctx.client;
        let mut results = client
            .query_range(&self.cfg.query, start, end, self.cfg.step, cancel)
            .instrument(tracing::debug_span!("prometheus.query_range", start, end))
            .await?;
        let tracker = self
            .tracker
            .take()
            .expect("tracker is returned every cycle");
        if start > history_start && !tracker.knows_all(&results) {
            // New series appeared: fetch the full history so their models start informed.
            let full = client
                .query_range(&self.cfg.query, history_start, end, self.cfg.step, cancel)
                .instrument(tracing::debug_span!(
                    "prometheus.query_range",
                    start = history_start,
                    end,
                    reason = "new_series"
                ))
                .await;
            match full {
                Ok(r) => results = r,
                Err(e) => {
                    self.tracker = Some(tracker);
                    return Err(e.into());
                }
            }
        }
        self.tracker = Some(tracker);
        self.evaluate(results, now, end).await
    }

    /// Feeds a query result to the tracker on a blocking thread, counts and dispatches.
    async fn evaluate(
        &mut self,
        results: Vec<RangeSeries>,
        now: i64,
        end: i64,
    ) -> Result<CycleOutcome, CycleError> {
        let tracker = self
            .tracker
            .take()
            .expect("tracker is returned every cycle");
        // Model updates are CPU work: keep them off the async workers.
        let evaluated = tokio::task::spawn_blocking(move || {
            let mut tracker = tracker;
            let out = tracker.process(results, now);
            (tracker, out)
        })
        .await;
        let m = &self.ctx.metrics;
        let (tracker, out) = match evaluated {
            Ok(r) => r,
            Err(e) => {
                // Per-series panics are contained in `process`; this is a panic outside
                // them. Start over with an empty tracker (history is replayed next cycle).
                self.tracker = Some(self.fresh_tracker());
                self.last_end = None;
                return Err(CycleError::ModelPanic(e.to_string()));
            }
        };
        self.tracker = Some(tracker);
        self.last_end = Some(end);
        m.evaluated(&self.cfg.name, out.series_evaluated, out.points);
        if out.model_panics > 0 {
            m.failure(&self.cfg.name, "model_panic", out.model_panics);
        }
        if out.dropped > 0 {
            m.failure(&self.cfg.name, "series_limit", out.dropped);
        }
        for r in &out.resolved {
            self.ctx.store.record_resolved(r.clone());
        }
        self.ctx.alerts.dispatch(&out.events);
        Ok(out)
    }

    fn fresh_tracker(&self) -> Tracker {
        Tracker::new(
            self.cfg.clone(),
            self.interval,
            self.ctx.client.graph_url(&self.cfg.query),
            self.ctx.dashboard_url.clone(),
        )
    }

    fn publish(&self) {
        let tracker = self
            .tracker
            .as_ref()
            .expect("tracker present between cycles");
        self.ctx.store.publish(DetectionSnapshot {
            name: self.cfg.name.clone(),
            series: tracker.snapshot(),
            firing: tracker.firing(),
            cycle: self.cycle.clone(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use std::path::Path;

    fn detection(extra: &str) -> DetectionConfig {
        let text = format!(
            "prometheus: {{url: 'http://127.0.0.1:1'}}\ndetections:\n  - name: lat\n    query: q\n    step: 10s\n    history: 1h\n    series_expiry: 1m\n    labels: {{team: sre}}\n    model: {{warmup_points: 5, min_history: 20, consecutive: 1}}\n{extra}"
        );
        let c = Config::from_yaml(&text, Path::new("t.yaml"), |_| None).unwrap();
        c.validate().unwrap();
        c.detections.into_iter().next().unwrap()
    }

    fn labels(job: &str) -> Labels {
        [("job", job), ("__name__", "x"), ("severity", "s")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn series(job: &str, from: i64, to: i64, f: impl Fn(i64) -> f64) -> RangeSeries {
        RangeSeries {
            labels: labels(job),
            points: (from..=to).step_by(10).map(|t| (t, f(t))).collect(),
        }
    }

    fn wave(t: i64) -> f64 {
        100.0 + ((t / 10) % 7) as f64
    }

    fn tracker(extra: &str) -> Tracker {
        Tracker::new(
            Arc::new(detection(extra)),
            Duration::from_secs(10),
            "http://prom/graph".into(),
            "http://grafana/d?x={detection}&s={service}".into(),
        )
    }

    #[test]
    fn replay_is_silent_then_spike_fires_and_resolves() {
        let mut t = tracker("");
        // 300 points of history with an old spike: replayed, never alerted.
        let out = t.process(
            vec![series(
                "a",
                0,
                2990,
                |x| if x == 1500 { 1e6 } else { wave(x) },
            )],
            2990,
        );
        assert_eq!(out.points, 300);
        assert!(out.events.is_empty(), "{:?}", out.events);
        // A new spike fires within the cycle that sees it.
        let out = t.process(vec![series("a", 2990, 3000, |_| 1e6)], 3000);
        assert_eq!(out.points, 1);
        assert_eq!(out.events.len(), 1, "{:?}", out.events);
        let ev = &out.events[0];
        assert_eq!(ev.status, AlertStatus::Firing);
        let l = &ev.alert.labels;
        assert_eq!(l["alertname"], "AnomalyDetected");
        assert_eq!(l["detection"], "lat");
        assert_eq!(l["job"], "a");
        assert_eq!(l["team"], "sre");
        assert_eq!(l["exported_severity"], "s");
        assert!(!l.contains_key("__name__"));
        assert!(matches!(l["severity"].as_str(), "warning" | "critical"));
        let a = &ev.alert.annotations;
        assert!(
            a["description"].contains("Observed 1.0000e6 vs expected"),
            "{a:?}"
        );
        assert_eq!(a["dashboard"], "http://grafana/d?x=lat&s=a");
        assert!(a.contains_key("model") && a.contains_key("score"));
        assert_eq!(t.firing().len(), 1);
        // Still firing next cycle: re-sent.
        let out = t.process(vec![series("a", 3000, 3010, |_| 1e6)], 3010);
        assert!(out.events.iter().all(|e| e.status == AlertStatus::Firing));
        // Back to normal: resolved once, with endsAt = now.
        let mut resolved = None;
        for now in (3020..3400).step_by(10) {
            let out = t.process(vec![series("a", now - 10, now, wave)], now);
            if let Some(e) = out
                .events
                .iter()
                .find(|e| e.status == AlertStatus::Resolved)
            {
                resolved = Some((now, e.clone(), out.resolved.len()));
                break;
            }
        }
        let (now, e, n) = resolved.expect("anomaly resolves when the series is normal again");
        assert_eq!(e.alert.ends_at, rfc3339_secs(now));
        assert_eq!(n, 1);
        assert!(t.firing().is_empty());
    }

    #[test]
    fn empty_and_nan_series_never_alert() {
        let mut t = tracker("");
        let out = t.process(
            vec![
                RangeSeries {
                    labels: labels("empty"),
                    points: vec![],
                },
                series("nan", 0, 2000, |_| f64::NAN),
            ],
            2000,
        );
        assert!(out.events.is_empty());
        assert_eq!(t.len(), 1);
        let snap = t.snapshot();
        assert_eq!(snap[0].model, "warming_up");
    }

    #[test]
    fn series_limit_and_expiry() {
        let mut t = tracker("    max_series: 2\n");
        let out = t.process(
            vec![
                series("a", 0, 100, wave),
                series("b", 0, 100, wave),
                series("c", 0, 100, wave),
            ],
            100,
        );
        assert_eq!(out.dropped, 1);
        assert_eq!(t.len(), 2);
        // `a` keeps reporting, `b` disappears and expires after series_expiry (60 s).
        let out = t.process(vec![series("a", 100, 130, wave)], 130);
        assert_eq!(out.expired, 0);
        let out = t.process(vec![series("a", 130, 200, wave)], 200);
        assert_eq!(out.expired, 1);
        assert_eq!(t.len(), 1);
    }

    /// Panics on a value of exactly 13.0, otherwise the real model.
    fn panicking_observe(d: &mut SeriesDetector, ts: i64, v: f64) -> Evaluation {
        assert!(v != 13.0, "injected model panic");
        d.observe(ts, v)
    }

    #[test]
    fn a_panicking_series_model_is_contained_and_counted() {
        let mut t = tracker("");
        t.observe = panicking_observe;
        let out = t.process(
            vec![
                series("a", 0, 2990, wave),
                series("bad", 0, 2990, |x| if x == 2000 { 13.0 } else { wave(x) }),
                series("c", 0, 2990, wave),
            ],
            2990,
        );
        assert_eq!(out.model_panics, 1);
        assert_eq!(out.series_evaluated, 2);
        assert_eq!(t.len(), 2, "the other series are kept");
        // The next cycle goes on: the good series keep their models, and a spike still fires.
        let out = t.process(
            vec![
                series("a", 2990, 3000, |_| 1e6),
                series("bad", 2990, 3000, wave),
                series("c", 2990, 3000, wave),
            ],
            3000,
        );
        assert_eq!(out.model_panics, 0);
        assert_eq!(out.events.len(), 1, "{:?}", out.events);
        assert_eq!(out.events[0].alert.labels["job"], "a");
        assert_eq!(t.len(), 3, "the panicked series is tracked again");
    }

    #[tokio::test]
    async fn runner_counts_model_panics_and_keeps_cycling() {
        let d = detection("");
        let metrics = Arc::new(Metrics::default());
        let store = Arc::new(Store::new(["lat"], 10));
        let mut sinks = tokio::task::JoinSet::new();
        let alerts = AlertDispatcher::start(
            None,
            &[],
            metrics.clone(),
            &mut sinks,
            CancellationToken::new(),
        )
        .unwrap();
        let c = Config::from_yaml(
            "prometheus: {url: 'http://127.0.0.1:1'}\ndetections: []\n",
            Path::new("t.yaml"),
            |_| None,
        )
        .unwrap();
        let ctx = RunnerContext {
            client: PrometheusClient::new(&c.prometheus).unwrap(),
            store: store.clone(),
            metrics: metrics.clone(),
            alerts,
            dashboard_url: String::new(),
        };
        let mut r = DetectionRunner::new(d, Duration::from_secs(10), ctx);
        r.tracker.as_mut().unwrap().observe = panicking_observe;
        let results = vec![series("a", 0, 100, wave), series("bad", 0, 100, |_| 13.0)];
        let out = r.evaluate(results, 100, 100).await.unwrap();
        assert_eq!(out.series_evaluated, 1);
        assert_eq!(metrics.failures("lat", "model_panic"), 1);
        assert_eq!(r.tracker.as_ref().unwrap().len(), 1);
    }

    #[test]
    fn alert_label_reserved_names_are_exported() {
        let d = detection("");
        let l = alert_labels(&d, &labels("a"), Severity::Critical);
        assert_eq!(l["severity"], "critical");
        assert_eq!(l["exported_severity"], "s");
    }
}
