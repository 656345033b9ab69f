//! Per-series anomaly models: pure, no I/O.
//!
//! [`SeriesDetector`] takes a series point by point ([`SeriesDetector::observe`]) and scores each
//! point using only earlier points. Live evaluation and the offline backtest both go through it.
//!
//! * Forecast: additive Holt-Winters ([`hw`]), seasonal when a period is detected ([`season`],
//!   augurs' periodogram + autocorrelation), else non-seasonal (level, damped trend); before
//!   `min_history` points a robust median/MAD estimate; before `warmup_points` nothing.
//! * Refit: smoothing parameters and season are re-estimated every `refit_every` points on the
//!   bounded history (`history_points`); in between the state is updated incrementally.
//! * Score: residual / robust running scale (EWMA of winsorised absolute residuals) = z; the
//!   point's |z| and the mean of the last `short_window` z's are combined, calibrated against
//!   this series' usual surprise, and mapped to [0, 1] with 0.5 at `sensitivity` (for Gaussian
//!   residuals: the band edge, `expected ± sensitivity·σ`); anomalous after `consecutive` points
//!   at or above `score_threshold`, the first of them outside the band; critical when the
//!   surprise is ≥ `critical_sensitivity`.
//!   `onset_score` keeps only the first score of an event (what the backtest writes).
//! * Gaps (NaN or missing timestamps) advance the model without learning; counters (`counter:
//!   true`) are differenced with resets treated as restarts from zero.
//!
//! Tests: `cargo test -p anomaly-detector model` (unit) and
//! `cargo test -p anomaly-detector --test model_synthetic --test model_statsmodels_parity`.

pub mod hw;
mod repeat;
mod score;
mod season;

use std::collections::VecDeque;
use std::fmt;

use serde::Deserialize;

use self::hw::{HwParams, HwState};
use self::repeat::{RepeatGate, RunPoint};
use self::score::{PointScore, ScoreSettings, Scorer};
use self::season::SeasonBounds;

/// Model settings shared by every series of a detection. Defaults are the configuration the NAB
/// benchmark was measured with (see `docs/anomaly-model.md`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelConfig {
    /// Half-width of the band in robust standard deviations; the score is 0.5 at this (calibrated)
    /// surprise.
    pub sensitivity: f64,
    /// Deviation (robust standard deviations) at or above which an anomaly is critical.
    pub critical_sensitivity: f64,
    /// Score at or above which a point counts towards an anomaly (a run of such points starts
    /// only outside the band).
    pub score_threshold: f64,
    /// Consecutive points at or above `score_threshold`, the first outside the band, before a
    /// point is anomalous; a point whose surprise reaches `critical_sensitivity` does not wait.
    pub consecutive: usize,
    /// Points before any score is given (score 0, `warming_up`).
    pub warmup_points: usize,
    /// Points before the first Holt-Winters fit; until then the median/MAD model scores.
    pub min_history: usize,
    /// Points kept per series for refits (bounds memory: 8 bytes each).
    pub history_points: usize,
    /// Points between refits (smoothing parameters and season re-estimated).
    pub refit_every: usize,
    /// Shortest seasonal period considered, in points.
    pub min_period: usize,
    /// Longest seasonal period considered, in points.
    pub max_period: usize,
    /// Full seasons of history needed before a seasonal model is used.
    pub min_cycles: usize,
    /// Autocorrelation at the period needed to accept a season.
    pub min_acf: f64,
    /// Half-life, in points, of the running residual scale.
    pub scale_halflife: f64,
    /// Residuals beyond this many standard deviations update the scale as if they were this large.
    pub scale_clip: f64,
    /// Points whose mean residual is scored besides the single point (level shifts, drifts).
    pub short_window: usize,
    /// Points whose mean residual is scored as a third statistic (slow drifts; 0 = off).
    pub long_window: usize,
    /// Points after a high score in which lower scores are not new onsets (`onset_score`).
    pub suppress_points: usize,
    /// Points after a significant onset (score at or above 0.5, the band edge) in which no new
    /// onset is given however large.
    pub refractory_points: usize,
    /// Within `suppress_points` after a significant onset, a new onset needs a surprise this many
    /// times larger than that onset's.
    pub onset_ratio: f64,
    /// Half-life, in points, of this series' usual surprise (0 = scores are not calibrated).
    pub calib_halflife: f64,
    /// Surprises above this many standard deviations count as this large in the calibration.
    pub calib_clip: f64,
    /// A residual beyond this many robust standard deviations moves the model state as if it
    /// were this large, unless the previous point was such an outlier on the same side too (a
    /// level shift is then learnt at full speed); 0 = off. Keeps one spike from dragging the
    /// forecast (and the alert) along for many points.
    pub update_clip: f64,
    /// Allowance, in robust standard deviations, of a two-sided CUSUM of the residuals (clipped
    /// at 4): a level-shift detector calibrated like the surprise and max-combined with it
    /// (0 = off).
    pub cusum_k: f64,
    /// Anomaly-likelihood post-processing (NAB): the score becomes the Gaussian tail surprise of
    /// the mean of the last this many raw scores against their running distribution (0 = off).
    pub likelihood_window: usize,
    /// Half-life, in points, of that distribution.
    pub likelihood_halflife: f64,
    /// With the likelihood on: score the larger of the likelihood and the calibrated surprise
    /// (a large single spike keeps its rank) instead of the likelihood alone.
    pub likelihood_max: bool,
    /// Variance-change statistic: the mean square of the last this many residuals (clipped at 4
    /// robust standard deviations) against the running scale, as a chi-square deviate
    /// (Wilson–Hilferty), calibrated like the surprise and max-combined with it (0 = off).
    pub var_window: usize,
    /// With `var_window`: a variance drop (residuals narrower than usual: a stuck or flattened
    /// series) scores as well as a rise.
    pub var_down: bool,
    /// Per-series tail normalisation (0 = off): surprises above the band edge are compressed for
    /// a series whose past significant onsets lay far above it (mean of ln(u / sensitivity),
    /// one sample per event), shrunk towards `tail_prior` with this many pseudo-events. Aims at
    /// one threshold fitting bursty and quiet series alike.
    pub tail_events: f64,
    /// Prior mean log excess of a significant onset over the band edge (with `tail_events`).
    pub tail_prior: f64,
    /// Fit a (damped) trend component; the fit may still choose none.
    pub trend: bool,
    /// The series is a monotonic counter: score its increments; a decrease is a reset.
    pub counter: bool,
    /// Which deviations may raise an alert: `both` (default), `up` (above the band only, e.g.
    /// latency or error ratio, where a drop is good news) or `down`. Scores are not affected.
    pub direction: Direction,
    /// Whether every run of anomalous points alerts. `false` (default): a run alerts only if it
    /// holds an event onset (a non-zero `onset_score`) and is not a repeat of an alert of the
    /// last `suppress_points` points (it needs an `onset_ratio` times larger surprise); see
    /// `model::repeat`. The NAB scorer counts repeats outside a window as false positives.
    pub alert_repeats: bool,
}

/// Side of the band on which a deviation may raise an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Above or below the band.
    #[default]
    Both,
    /// Above the band only.
    Up,
    /// Below the band only.
    Down,
}

impl Direction {
    /// Whether `y` lies beyond the band `lower..upper` on an alerting side.
    fn beyond(self, y: f64, lower: f64, upper: f64) -> bool {
        match self {
            Self::Both => y < lower || y > upper,
            Self::Up => y > upper,
            Self::Down => y < lower,
        }
    }

    /// Whether `y` lies on an alerting side of `expected` (a run that started beyond the band
    /// ends when the value crosses to the other side).
    fn on_side(self, y: f64, expected: f64) -> bool {
        match self {
            Self::Both => true,
            Self::Up => y >= expected,
            Self::Down => y <= expected,
        }
    }
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            sensitivity: 3.0,
            critical_sensitivity: 6.0,
            score_threshold: 0.6,
            consecutive: 2,
            warmup_points: 10,
            min_history: 60,
            history_points: 3000,
            refit_every: 288,
            min_period: 4,
            max_period: 1440,
            min_cycles: 2,
            min_acf: 0.4,
            scale_halflife: 300.0,
            scale_clip: 4.0,
            short_window: 3,
            long_window: 0,
            suppress_points: 400,
            refractory_points: 20,
            onset_ratio: 2.0,
            calib_halflife: 3000.0,
            calib_clip: 2.5,
            update_clip: 10.0,
            cusum_k: 0.0,
            likelihood_window: 5,
            likelihood_halflife: 3000.0,
            likelihood_max: true,
            var_window: 0,
            var_down: false,
            tail_events: 0.0,
            tail_prior: 1.0,
            trend: true,
            counter: false,
            direction: Direction::Both,
            alert_repeats: false,
        }
    }
}

/// Which model produced an evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ModelKind {
    /// Too few points: nothing is scored.
    WarmingUp,
    /// Median/MAD of the recent points (too little history for Holt-Winters).
    RobustMad,
    /// Holt's linear method (level + damped trend): no season detected or not enough seasons yet.
    NonSeasonal,
    /// Additive Holt-Winters with the detected seasonal period.
    SeasonalHoltWinters,
}

impl ModelKind {
    /// Stable name for logs, metrics and alert annotations.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::WarmingUp => "warming_up",
            Self::RobustMad => "robust_mad",
            Self::NonSeasonal => "holt",
            Self::SeasonalHoltWinters => "holt_winters",
        }
    }
}

impl fmt::Display for ModelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Severity of an anomalous point.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Severity {
    /// Outside the band.
    Warning,
    /// At least `critical_sensitivity` robust standard deviations off.
    Critical,
}

impl Severity {
    /// Stable name (the Alertmanager `severity` label).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Warning => "warning",
            Self::Critical => "critical",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The evaluation of one point, made before the point updates the model.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    /// Unix seconds of the point.
    pub timestamp: i64,
    /// Observed value (NaN for a gap).
    pub value: f64,
    /// Forecast of the point from earlier data (NaN while warming up).
    pub expected: f64,
    /// Lower edge of the band (NaN while warming up).
    pub lower: f64,
    /// Upper edge of the band (NaN while warming up).
    pub upper: f64,
    /// Anomaly score in [0, 1]: 0.5 on the band edge, towards 1 far outside; 0 for gaps.
    pub score: f64,
    /// `score` if it is the highest within the last `suppress_points` points, else 0: one score
    /// per event, what the backtest writes for the NAB scorer.
    pub onset_score: f64,
    /// Signed deviation in robust standard deviations (0 when not scored).
    pub deviation: f64,
    /// `score >= score_threshold` for `consecutive` points up to this one, the first of them
    /// outside the band.
    pub anomalous: bool,
    /// Severity when anomalous.
    pub severity: Option<Severity>,
    /// Model that produced the forecast.
    pub model: ModelKind,
    /// Seasonal period in points (0 when non-seasonal).
    pub period: usize,
}

#[derive(Debug, Clone)]
struct Active {
    kind: ModelKind,
    params: HwParams,
    state: HwState,
    period: usize,
}

/// Detector state for one series: bounded history, the current model, scale and scorer.
#[derive(Debug, Clone)]
pub struct SeriesDetector {
    cfg: ModelConfig,
    step_seconds: f64,
    history: VecDeque<f64>,
    valid_in_history: usize,
    seen_valid: u64,
    last_ts: Option<i64>,
    last_raw: Option<f64>,
    model: Option<Active>,
    since_refit: usize,
    /// Running mean absolute residual (0 = not initialised).
    scale: f64,
    scale_floor: f64,
    scorer: Scorer,
    over_threshold: usize,
    /// Which anomalous runs alert and which repeat a recent alert.
    repeats: RepeatGate,
    /// Refits so far.
    refits: u32,
    /// History length at the last season detection.
    detected_len: usize,
    /// Sign of the previous point's residual when it was beyond `update_clip` (0 = it was not).
    outlier_sign: f64,
}

/// Converts mean absolute deviation to a standard deviation under normality.
const MAD_TO_SD: f64 = 1.253_314_137_315_500_3;
/// Onsets at or above this score (the band edge) start the refractory and ratio rules.
const SIGNIFICANT_SCORE: f64 = 0.5;
/// |z| is capped here so scores and deviations stay finite.
const Z_CAP: f64 = 1e6;

impl SeriesDetector {
    /// A fresh detector; `step_seconds` is the series' sampling interval (used to detect missing
    /// points and calendar periods; non-positive or NaN disables both).
    #[must_use]
    pub fn new(config: &ModelConfig, step_seconds: f64) -> Self {
        let cfg = sanitize(config.clone());
        let scorer = Scorer::new(ScoreSettings {
            z_crit: cfg.sensitivity,
            short_window: cfg.short_window,
            long_window: cfg.long_window,
            suppress_points: cfg.suppress_points,
            onset_ratio: cfg.onset_ratio,
            calib_halflife: cfg.calib_halflife,
            calib_clip: cfg.calib_clip,
            sig_level: SIGNIFICANT_SCORE,
            refractory_points: cfg.refractory_points,
            cusum_k: cfg.cusum_k,
            likelihood_window: cfg.likelihood_window,
            likelihood_halflife: cfg.likelihood_halflife,
            likelihood_max: cfg.likelihood_max,
            var_window: cfg.var_window,
            var_down: cfg.var_down,
            tail_events: cfg.tail_events,
            tail_prior: cfg.tail_prior,
        });
        Self {
            history: VecDeque::with_capacity(cfg.history_points.min(4096)),
            cfg,
            step_seconds,
            valid_in_history: 0,
            seen_valid: 0,
            last_ts: None,
            last_raw: None,
            model: None,
            since_refit: 0,
            scale: 0.0,
            scale_floor: 0.0,
            scorer,
            over_threshold: 0,
            repeats: RepeatGate::default(),
            refits: 0,
            detected_len: 0,
            outlier_sign: 0.0,
        }
    }

    /// The model currently in use.
    #[must_use]
    pub fn model_kind(&self) -> ModelKind {
        match &self.model {
            Some(a) => a.kind,
            None if self.valid_in_history < self.cfg.warmup_points => ModelKind::WarmingUp,
            None => ModelKind::RobustMad,
        }
    }

    /// Seasonal period in points of the current model (0 = none).
    #[must_use]
    pub fn period(&self) -> usize {
        self.model.as_ref().map_or(0, |a| a.period)
    }

    /// Forgets earlier events and alerts: the next anomalous run is a new event (and alerts)
    /// however high the scores before it were. The service calls it after replaying a new
    /// series' history, which never alerts, so that an event in the replay cannot make a live
    /// one a repeat.
    pub fn forget_events(&mut self) {
        self.scorer.forget_events();
        self.repeats.forget();
    }

    /// Feeds the next point in time order (NaN = gap) and returns its evaluation, made from
    /// earlier points only. Points at or before the previous timestamp are evaluated but do not
    /// update the model. Missing steps between timestamps are treated as gaps.
    pub fn observe(&mut self, timestamp: i64, value: f64) -> Evaluation {
        if let Some(last) = self.last_ts {
            if timestamp <= last {
                let mut e = self.evaluate(timestamp, self.transform_peek(value));
                e.value = value;
                e.anomalous = false;
                e.severity = None;
                e.onset_score = 0.0;
                return e;
            }
            if self.step_seconds.is_finite() && self.step_seconds > 0.0 {
                let steps = ((timestamp - last) as f64 / self.step_seconds).round();
                let missing = (steps - 1.0).clamp(0.0, self.cfg.history_points as f64) as usize;
                for _ in 0..missing {
                    self.advance(f64::NAN, f64::NAN);
                    self.scorer.skip();
                }
                if missing > 0 {
                    // a counter cannot be differenced across a gap
                    self.last_raw = None;
                }
            }
        }
        self.last_ts = Some(timestamp);
        let y = self.transform(value);
        let mut e = self.evaluate(timestamp, y);
        e.value = value;
        if y.is_finite() && e.model != ModelKind::WarmingUp {
            let z = e.deviation.clamp(-Z_CAP, Z_CAP);
            let ps = self.scorer.push(z);
            self.apply_score(&mut e, ps, y);
        } else {
            self.scorer.skip();
            self.repeats.skip();
            self.over_threshold = 0;
        }
        let y_state = self.clip_update(y, e.expected);
        self.learn(y, e.expected);
        self.advance(y, y_state);
        self.maybe_refit();
        e
    }

    /// The value the model state learns from: `y`, or `y` pulled to `update_clip` robust standard
    /// deviations of the forecast when it is an isolated outlier.
    fn clip_update(&mut self, y: f64, expected: f64) -> f64 {
        let c = self.cfg.update_clip;
        if c <= 0.0 || self.model.is_none() || !y.is_finite() || !expected.is_finite() {
            self.outlier_sign = 0.0;
            return y;
        }
        let r = y - expected;
        let lim = c * self.sd();
        if r.abs() <= lim {
            self.outlier_sign = 0.0;
            return y;
        }
        let sign = r.signum();
        let repeated = self.outlier_sign == sign;
        self.outlier_sign = sign;
        if repeated {
            y
        } else {
            expected + sign * lim
        }
    }

    fn transform_peek(&self, value: f64) -> f64 {
        if !self.cfg.counter {
            return value;
        }
        match self.last_raw {
            Some(prev) if value.is_finite() => {
                if value >= prev {
                    value - prev
                } else {
                    value
                }
            }
            _ => f64::NAN,
        }
    }

    fn transform(&mut self, value: f64) -> f64 {
        let y = self.transform_peek(value);
        if self.cfg.counter {
            self.last_raw = value.is_finite().then_some(value);
        }
        if y.is_finite() {
            y
        } else {
            f64::NAN
        }
    }

    fn sd(&self) -> f64 {
        (self.scale * MAD_TO_SD).max(self.scale_floor).max(1e-12)
    }

    /// Forecast and band for `y` from the current state; score fields left at zero.
    fn evaluate(&self, timestamp: i64, y: f64) -> Evaluation {
        let kind = self.model_kind();
        let (expected, sd) = match (&self.model, kind) {
            (Some(a), _) => (a.state.forecast(&a.params), self.sd()),
            (None, ModelKind::RobustMad) => self.median_mad(),
            _ => (f64::NAN, f64::NAN),
        };
        let width = self.cfg.sensitivity * sd;
        let deviation = if y.is_finite() && expected.is_finite() && sd.is_finite() {
            ((y - expected) / sd).clamp(-Z_CAP, Z_CAP)
        } else {
            0.0
        };
        Evaluation {
            timestamp,
            value: y,
            expected,
            lower: expected - width,
            upper: expected + width,
            score: 0.0,
            onset_score: 0.0,
            deviation,
            anomalous: false,
            severity: None,
            model: kind,
            period: self.period(),
        }
    }

    /// Sets the score fields of `e` for the transformed value `y`. A run of points at or above
    /// `score_threshold` counts towards an alert only if it starts with a point outside the band:
    /// the windowed statistics and the likelihood can score a point highly while it is still
    /// inside the range the alert and the dashboards call normal, and an alert saying "observed
    /// inside the expected band" is noise to whoever is paged. Once started, the run goes on while
    /// the score stays high (a spike's next point, still carrying it in its window, continues it).
    /// With `direction: up|down` only that side starts or continues a run. Onset scores (what
    /// the backtest writes) are not gated.
    fn apply_score(&mut self, e: &mut Evaluation, ps: PointScore, y: f64) {
        e.score = ps.score;
        e.onset_score = ps.onset;
        let dir = self.cfg.direction;
        let starts = dir.beyond(y, e.lower, e.upper);
        let continues = self.over_threshold > 0 && dir.on_side(y, e.expected);
        if ps.score >= self.cfg.score_threshold && (starts || continues) {
            self.over_threshold += 1;
        } else {
            self.over_threshold = 0;
        }
        let point = RunPoint {
            over: self.over_threshold > 0,
            // `consecutive` guards against noise at the threshold; a critical point is not that
            candidate: self.over_threshold >= self.cfg.consecutive.max(1)
                || (self.over_threshold > 0 && ps.z >= self.cfg.critical_sensitivity),
            onset: ps.onset > 0.0,
            z: ps.z,
        };
        let alerts = self
            .repeats
            .push(point, self.cfg.suppress_points, self.cfg.onset_ratio);
        e.anomalous = if self.cfg.alert_repeats {
            point.candidate
        } else {
            alerts
        };
        if e.anomalous {
            e.severity = Some(if ps.z >= self.cfg.critical_sensitivity {
                Severity::Critical
            } else {
                Severity::Warning
            });
        }
    }

    /// Median and robust standard deviation of the recent history (robust model).
    fn median_mad(&self) -> (f64, f64) {
        let take = self.cfg.min_history.max(self.cfg.warmup_points);
        let mut v: Vec<f64> = self
            .history
            .iter()
            .rev()
            .filter(|x| x.is_finite())
            .take(take)
            .copied()
            .collect();
        if v.is_empty() {
            return (f64::NAN, f64::NAN);
        }
        let med = median(&mut v);
        let mut dev: Vec<f64> = v.iter().map(|x| (x - med).abs()).collect();
        let mad = median(&mut dev) * 1.4826;
        let floor = 1e-3 * med.abs() + 1e-9;
        (med, mad.max(floor))
    }

    /// Updates the running residual scale with the point's residual. Residuals are winsorised at
    /// `scale_clip` times the scale, which needs a scale to winsorise against: while it is at or
    /// below the floor (a series constant over the whole fit, no variability known yet) the
    /// residual sets it instead. Clipping against the floor, as before, let a constant series'
    /// scale grow by under 1 % a point after its first change, so every later point had |z| at
    /// the cap and stayed `anomalous` (issue 20). The point itself was scored before this.
    fn learn(&mut self, y: f64, expected: f64) {
        if self.model.is_none() || !y.is_finite() || !expected.is_finite() {
            return;
        }
        let r = (y - expected).abs();
        if self.scale * MAD_TO_SD <= self.scale_floor {
            if r.is_finite() {
                self.scale = r;
            }
            return;
        }
        let lam = 1.0 - 0.5f64.powf(1.0 / self.cfg.scale_halflife.max(1.0));
        let cap = self.cfg.scale_clip * self.scale.max(self.scale_floor / MAD_TO_SD);
        let r = if cap > 0.0 { r.min(cap) } else { r };
        self.scale += lam * (r - self.scale);
        if !self.scale.is_finite() {
            self.scale = 0.0;
        }
    }

    /// Appends `y` to the history and steps the model state with `y_state`.
    fn advance(&mut self, y: f64, y_state: f64) {
        if self.history.len() >= self.cfg.history_points {
            if let Some(old) = self.history.pop_front() {
                if old.is_finite() {
                    self.valid_in_history -= 1;
                }
            }
        }
        self.history.push_back(y);
        if y.is_finite() {
            self.valid_in_history += 1;
            self.seen_valid += 1;
        }
        if let Some(a) = &mut self.model {
            a.state.update(&a.params, y_state);
            if !a.state.level.is_finite() || !a.state.trend.is_finite() {
                // numeric blow-up (e.g. values near f64::MAX): start over from the history
                self.model = None;
                self.since_refit = usize::MAX / 2;
            }
        }
        self.since_refit = self.since_refit.saturating_add(1);
    }

    fn maybe_refit(&mut self) {
        let due = match self.model {
            None => self.valid_in_history >= self.cfg.min_history,
            Some(_) => self.since_refit >= self.cfg.refit_every,
        };
        if due {
            self.refit();
        }
    }

    /// Re-estimates season and smoothing parameters on the history and replaces the state.
    fn refit(&mut self) {
        self.since_refit = 0;
        let y = fill_gaps(&self.history);
        if y.is_empty() {
            return;
        }
        let bounds = SeasonBounds {
            min_period: self.cfg.min_period,
            max_period: self.cfg.max_period,
            min_cycles: self.cfg.min_cycles,
            min_acf: self.cfg.min_acf,
        };
        // season detection is the costly part: redo it while the history grows by a quarter or
        // more, else every fourth refit; a full parameter search goes with it
        let full = self.model.is_none()
            || self.refits.is_multiple_of(4)
            || y.len() * 4 >= self.detected_len * 5;
        self.refits = self.refits.wrapping_add(1);
        let period = if full {
            self.detected_len = y.len();
            season::detect_period(&y, self.step_seconds, &bounds).map_or(0, |p| p.0)
        } else {
            self.period()
        };
        let near = if full {
            None
        } else {
            self.model.as_ref().map(|a| a.params)
        };
        let fitted = if period >= 2 {
            hw::fit(&y, period, self.cfg.trend, near.as_ref())
                .map(|f| (f, ModelKind::SeasonalHoltWinters))
        } else {
            None
        }
        .or_else(|| {
            hw::fit(&y, 0, self.cfg.trend, near.as_ref()).map(|f| (f, ModelKind::NonSeasonal))
        });
        let Some((mut f, kind)) = fitted else {
            return;
        };
        // the filled history ends where the live state is: nothing to replay
        if !f.state.level.is_finite() {
            return;
        }
        // gaps at the end of the history were filled by carrying forward; keep the state as is
        f.state.pos %= f.state.seasonals.len().max(1);
        self.scale_floor = scale_floor(&y);
        if self.scale <= 0.0 || self.model.is_none() {
            self.scale = f.mae.max(0.0);
        }
        self.model = Some(Active {
            kind,
            params: f.params,
            state: f.state,
            period: if kind == ModelKind::SeasonalHoltWinters {
                period
            } else {
                0
            },
        });
    }
}

/// Lower bound for the residual standard deviation: a thousandth of the history's spread (plus
/// a tiny absolute term), so flat or quantised series do not score every change as infinite.
fn scale_floor(y: &[f64]) -> f64 {
    let n = y.len().max(1) as f64;
    let m = y.iter().sum::<f64>() / n;
    let var = y.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / n;
    let f = 1e-3 * var.sqrt() + 1e-9 * (1.0 + m.abs());
    if f.is_finite() {
        f
    } else {
        f64::MAX / 1e6
    }
}

/// Gaps filled by carrying the last value forward (backward for leading gaps).
fn fill_gaps(h: &VecDeque<f64>) -> Vec<f64> {
    let first = h.iter().copied().find(|v| v.is_finite());
    let Some(mut last) = first else {
        return Vec::new();
    };
    h.iter()
        .map(|&v| {
            if v.is_finite() {
                last = v;
            }
            last
        })
        .collect()
}

fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mid = v.len() / 2;
    let (_, m, _) = v.select_nth_unstable_by(mid, f64::total_cmp);
    let m = *m;
    if v.len() % 2 == 1 {
        m
    } else {
        let lo = v[..mid].iter().copied().fold(f64::NEG_INFINITY, f64::max);
        (lo + m) / 2.0
    }
}

/// Clamps settings to workable ranges so no configuration can make the model panic.
fn sanitize(mut c: ModelConfig) -> ModelConfig {
    let d = ModelConfig::default();
    let pos = |v: f64, dv: f64| if v.is_finite() && v > 0.0 { v } else { dv };
    c.sensitivity = pos(c.sensitivity, d.sensitivity);
    c.critical_sensitivity = pos(c.critical_sensitivity, d.critical_sensitivity);
    if !c.score_threshold.is_finite() {
        c.score_threshold = d.score_threshold;
    }
    c.consecutive = c.consecutive.max(1);
    c.warmup_points = c.warmup_points.max(1);
    c.history_points = c.history_points.clamp(16, 1 << 20);
    c.min_history = c
        .min_history
        .clamp(c.warmup_points.max(8), c.history_points);
    c.refit_every = c.refit_every.max(1);
    c.min_period = c.min_period.max(2);
    c.min_cycles = c.min_cycles.max(2);
    c.scale_halflife = pos(c.scale_halflife, d.scale_halflife);
    c.scale_clip = pos(c.scale_clip, d.scale_clip);
    c.short_window = c.short_window.max(1);
    c.onset_ratio = pos(c.onset_ratio, d.onset_ratio);
    if !(c.calib_halflife.is_finite() && c.calib_halflife >= 0.0) {
        c.calib_halflife = d.calib_halflife;
    }
    c.calib_clip = pos(c.calib_clip, d.calib_clip);
    if !(c.update_clip.is_finite() && c.update_clip > 0.0) {
        c.update_clip = 0.0;
    }
    if !(c.cusum_k.is_finite() && c.cusum_k > 0.0) {
        c.cusum_k = 0.0;
    }
    c.likelihood_window = c.likelihood_window.min(c.history_points);
    c.var_window = c.var_window.min(c.history_points);
    if !(c.tail_events.is_finite() && c.tail_events > 0.0) {
        c.tail_events = 0.0;
    }
    c.tail_prior = pos(c.tail_prior, d.tail_prior);
    c.likelihood_halflife = pos(c.likelihood_halflife, d.likelihood_halflife);
    c
}
