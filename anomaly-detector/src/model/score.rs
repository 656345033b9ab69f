//! From normalised one-step residuals to anomaly scores.
//!
//! `z` is the residual divided by a robust running scale (see `SeriesDetector`). Two statistics
//! are scored: the point's own surprise combined with the mean of the last `short_window`
//! residuals, and (optionally) the mean over `long_window` residuals (slow drifts). Each is
//! calibrated against this series' usual value of it (running mean and spread of the clipped
//! statistic), so series with heavy-tailed residuals need a larger surprise for the same score;
//! the larger is mapped to [0, 1]. Optional statistics max-combined the same way: a residual
//! CUSUM (`cusum_k`), a variance-change statistic (`var_window`), the anomaly likelihood of the
//! recent scores (`likelihood_window`); the optional tail normalisation (`tail_events`) then
//! compresses the surprise of a series whose past events were far above the band edge.
//! An onset score keeps only new highs within a suppression
//! window, and after a significant onset only clearly larger ones: the first detection of an
//! event, what the NAB scorer rewards (later repeats outside a window are false positives).
//!
//! Run its unit tests with `cargo test -p anomaly-detector model::score`.

use std::collections::VecDeque;

/// Scoring settings (copied from `ModelConfig`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ScoreSettings {
    pub(crate) z_crit: f64,
    pub(crate) short_window: usize,
    pub(crate) long_window: usize,
    pub(crate) suppress_points: usize,
    pub(crate) onset_ratio: f64,
    pub(crate) calib_halflife: f64,
    pub(crate) calib_clip: f64,
    pub(crate) sig_level: f64,
    pub(crate) refractory_points: usize,
    /// CUSUM allowance in standard deviations (0 = no CUSUM statistic).
    pub(crate) cusum_k: f64,
    /// Points averaged by the anomaly-likelihood post-processing (0 = off).
    pub(crate) likelihood_window: usize,
    /// Half-life, in points, of the likelihood's distribution of averaged scores.
    pub(crate) likelihood_halflife: f64,
    /// Keep the larger of the likelihood and the surprise instead of the likelihood alone.
    pub(crate) likelihood_max: bool,
    /// Points of the variance-change statistic (0 = off).
    pub(crate) var_window: usize,
    /// Score variance drops too (a stuck or flattened series), not only rises.
    pub(crate) var_down: bool,
    /// Pseudo-events of the tail prior (0 = no tail normalisation).
    pub(crate) tail_events: f64,
    /// Prior mean log excess of significant onsets over `z_crit`.
    pub(crate) tail_prior: f64,
}

/// Residuals beyond this many standard deviations enter the CUSUM as if this large (one spike
/// is the point statistic's job, not the change detector's).
const CUSUM_CLIP: f64 = 4.0;
/// Squared residuals beyond this many standard deviations enter the variance statistic as if
/// this large (one spike is the point statistic's job, not the variance detector's).
const VAR_CLIP: f64 = 4.0;
/// Averaged scores needed before the likelihood replaces the surprise (NAB's
/// `estimationSamples`); until then the calibrated surprise is used as it is.
const LIKELIHOOD_MIN_SAMPLES: u64 = 100;
/// Floors of the mean and variance of the averaged scores (NAB's lower-bound check), so a
/// perfectly predictable stretch does not make every small wobble a certain anomaly.
const LIKELIHOOD_MIN_MEAN: f64 = 0.03;
const LIKELIHOOD_MIN_VAR: f64 = 0.0003;

/// A running sum over the last `len` values.
#[derive(Debug, Clone)]
struct WindowSum {
    len: usize,
    values: VecDeque<f64>,
    sum: f64,
    pushes: u64,
}

impl WindowSum {
    fn new(len: usize) -> Self {
        Self {
            len: len.max(1),
            values: VecDeque::with_capacity(len.max(1)),
            sum: 0.0,
            pushes: 0,
        }
    }

    /// Adds `v`; returns |sum| / sqrt(count): the surprise of the window mean in standard
    /// deviations when the values are independent standard normal.
    fn push(&mut self, v: f64) -> f64 {
        self.values.push_back(v);
        self.sum += v;
        if self.values.len() > self.len {
            if let Some(old) = self.values.pop_front() {
                self.sum -= old;
            }
        }
        self.pushes += 1;
        // recompute now and then so float drift stays out of the running sum
        if self.pushes.is_multiple_of(1024) {
            self.sum = self.values.iter().sum();
        }
        if self.values.len() >= 2 {
            self.sum.abs() / (self.values.len() as f64).sqrt()
        } else {
            0.0
        }
    }

    /// Mean of the values in the window (0 when empty).
    fn mean(&self) -> f64 {
        if self.values.is_empty() {
            0.0
        } else {
            self.sum / self.values.len() as f64
        }
    }
}

/// Running mean and mean square of a clipped statistic: this series' usual surprise.
#[derive(Debug, Clone, Default)]
struct Calibration {
    mean: f64,
    sq: f64,
    n: u64,
}

impl Calibration {
    /// `x` re-expressed as a standard-normal-like |z| relative to the past values (then learns
    /// `x`). Off (identity) when `halflife <= 0`.
    fn apply(&mut self, x: f64, halflife: f64, clip: f64) -> f64 {
        if halflife <= 0.0 {
            return x;
        }
        // a Gaussian |z| has mean 0.80 and sd 0.60: the prior until the series shows its own
        let (m, sd) = if self.n == 0 {
            (0.8, 0.6)
        } else {
            (self.mean, (self.sq - self.mean * self.mean).max(0.0).sqrt())
        };
        let out = 0.8 + 0.6 * (x - m) / sd.max(0.3);
        let lam = (1.0 - 0.5f64.powf(1.0 / halflife)).max(1.0 / (self.n as f64 + 1.0));
        let c = x.min(clip);
        self.mean += lam * (c - self.mean);
        self.sq += lam * (c * c - self.sq);
        self.n += 1;
        out.max(0.0)
    }
}

/// Two-sided CUSUM of clipped residuals: a sustained shift of either sign (level-shift detector).
#[derive(Debug, Clone, Default)]
struct Cusum {
    up: f64,
    down: f64,
}

impl Cusum {
    /// Adds residual `z`; returns the larger of the two sums.
    fn push(&mut self, z: f64, k: f64) -> f64 {
        let z = z.clamp(-CUSUM_CLIP, CUSUM_CLIP);
        self.up = (self.up + z - k).max(0.0);
        self.down = (self.down - z - k).max(0.0);
        self.up.max(self.down)
    }
}

/// Variance-change statistic: the mean of the last `len` squared (clipped) residuals against the
/// long-run scale (the residuals are already divided by it, so the expected mean is 1), as a
/// standard-normal deviate of the chi-square with `len` degrees of freedom (Wilson–Hilferty).
/// Positive when the recent residuals are wider than usual, negative when narrower.
#[derive(Debug, Clone)]
struct VarChange {
    window: WindowSum,
}

impl VarChange {
    fn new(len: usize) -> Self {
        Self {
            window: WindowSum::new(len.max(2)),
        }
    }

    /// Adds residual `z`; returns the Wilson–Hilferty deviate of the window's mean square
    /// (0 until the window is full).
    fn push(&mut self, z: f64) -> f64 {
        let c = z.clamp(-VAR_CLIP, VAR_CLIP);
        self.window.push(c * c);
        let n = self.window.values.len();
        if n < self.window.len {
            return 0.0;
        }
        let v = (2.0 / (9.0 * n as f64)).sqrt();
        (self.window.mean().max(0.0).cbrt() - (1.0 - v * v)) / v
    }
}

/// Per-series tail scale of events: the mean log excess `ln(u / z_crit)` of this series' past
/// significant onsets (one sample per event, not per point, so one long event does not dominate
/// it), shrunk towards a prior with `events` pseudo-events. A series whose events are usually
/// far above the band edge (bursty, heavy-tailed) has its surprises above the edge compressed
/// by the ratio prior / own (never expanded): `u' = z_crit · (u / z_crit)^min(1, prior / own)`.
#[derive(Debug, Clone, Default)]
struct TailScale {
    sum: f64,
    n: f64,
}

impl TailScale {
    /// `u` with the series' tail scale applied (unchanged at or below `u0`).
    fn apply(&self, u: f64, u0: f64, events: f64, prior: f64) -> f64 {
        if u <= u0 || u0 <= 0.0 {
            return u;
        }
        let own = (events * prior + self.sum) / (events + self.n);
        let e = if own > 0.0 {
            (prior / own).min(1.0)
        } else {
            1.0
        };
        u0 * (u / u0).powf(e)
    }

    /// Learns the raw surprise `u` of a significant onset.
    fn learn(&mut self, u: f64, u0: f64) {
        if u > u0 && u0 > 0.0 && u.is_finite() {
            self.sum += (u / u0).ln();
        }
        self.n += 1.0;
    }
}

/// NAB's anomaly likelihood: the Gaussian upper-tail surprise of the mean of the last few raw
/// scores against the running distribution of that mean.
#[derive(Debug, Clone)]
struct Likelihood {
    window: WindowSum,
    mean: f64,
    var: f64,
    n: u64,
}

impl Likelihood {
    fn new(len: usize) -> Self {
        Self {
            window: WindowSum::new(len),
            mean: 0.0,
            var: 0.0,
            n: 0,
        }
    }

    /// Adds raw score `s` in [0, 1]; returns the surprise of the recent mean in standard
    /// deviations of its past distribution (`None` while that is still being estimated).
    fn push(&mut self, s: f64, halflife: f64) -> Option<f64> {
        self.window.push(s);
        let m = self.window.mean();
        let out = (self.n >= LIKELIHOOD_MIN_SAMPLES).then(|| {
            let mu = self.mean.max(LIKELIHOOD_MIN_MEAN);
            let sd = self.var.max(LIKELIHOOD_MIN_VAR).sqrt();
            ((m - mu) / sd).max(0.0)
        });
        let lam = (1.0 - 0.5f64.powf(1.0 / halflife.max(1.0))).max(1.0 / (self.n as f64 + 1.0));
        let d = m - self.mean;
        self.mean += lam * d;
        self.var = (1.0 - lam) * (self.var + lam * d * d);
        self.n += 1;
        out
    }
}

/// Streaming scorer state.
#[derive(Debug, Clone)]
pub(crate) struct Scorer {
    s: ScoreSettings,
    short: WindowSum,
    long: WindowSum,
    cal_short: Calibration,
    cal_long: Calibration,
    cusum: Cusum,
    cal_cusum: Calibration,
    likelihood: Likelihood,
    var: VarChange,
    cal_var: Calibration,
    tail: TailScale,
    /// (index, score) pairs with decreasing scores: sliding maximum of past scores.
    maxq: VecDeque<(u64, f64)>,
    t: u64,
    /// Time and surprise of the last onset at or above `sig_level`.
    last_sig: Option<(u64, f64)>,
}

/// One point's scores.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PointScore {
    /// Calibrated surprise (standard-normal-like |z|).
    pub(crate) z: f64,
    /// Score in [0, 1]; 0.5 at `z_crit`.
    pub(crate) score: f64,
    /// `score` when it is a new onset, else 0.
    pub(crate) onset: f64,
}

impl Scorer {
    pub(crate) fn new(s: ScoreSettings) -> Self {
        Self {
            s,
            short: WindowSum::new(s.short_window),
            long: WindowSum::new(s.long_window),
            cal_short: Calibration::default(),
            cal_long: Calibration::default(),
            cusum: Cusum::default(),
            cal_cusum: Calibration::default(),
            likelihood: Likelihood::new(s.likelihood_window),
            var: VarChange::new(s.var_window),
            cal_var: Calibration::default(),
            tail: TailScale::default(),
            maxq: VecDeque::new(),
            t: 0,
            last_sig: None,
        }
    }

    /// Scores one normalised residual (finite; callers clamp).
    pub(crate) fn push(&mut self, z: f64) -> PointScore {
        let zs = self.short.push(z);
        let mut zc =
            self.cal_short
                .apply(z.abs().max(zs), self.s.calib_halflife, self.s.calib_clip);
        if self.s.long_window >= 2 {
            let zl = self.long.push(z);
            zc = zc.max(
                self.cal_long
                    .apply(zl, self.s.calib_halflife, self.s.calib_clip),
            );
        }
        if self.s.cusum_k > 0.0 {
            let c = self.cusum.push(z, self.s.cusum_k);
            zc = zc.max(
                self.cal_cusum
                    .apply(c, self.s.calib_halflife, self.s.calib_clip),
            );
        }
        if self.s.var_window >= 2 {
            let v = self.var.push(z);
            let v = if self.s.var_down { v.abs() } else { v.max(0.0) };
            zc = zc.max(
                self.cal_var
                    .apply(v, self.s.calib_halflife, self.s.calib_clip),
            );
        }
        if self.s.likelihood_window > 0 {
            let raw = to_score(zc, self.s.z_crit);
            if let Some(zl) = self.likelihood.push(raw, self.s.likelihood_halflife) {
                zc = if self.s.likelihood_max {
                    zc.max(zl)
                } else {
                    zl
                };
            }
        }
        let raw_z = zc;
        if self.s.tail_events > 0.0 {
            zc = self
                .tail
                .apply(zc, self.s.z_crit, self.s.tail_events, self.s.tail_prior);
        }
        let score = to_score(zc, self.s.z_crit);
        let mut onset = self.onset(score);
        // after a significant onset, a later one in the window must be clearly larger
        if onset > 0.0 && self.s.suppress_points > 0 && score >= self.s.sig_level {
            let t = self.t - 1;
            match self.last_sig {
                Some((t0, z0))
                    if t0 + self.s.refractory_points as u64 >= t
                        || (t0 + self.s.suppress_points as u64 >= t
                            && zc <= z0 * self.s.onset_ratio) =>
                {
                    onset = 0.0;
                }
                _ => self.last_sig = Some((t, zc)),
            }
            if onset > 0.0 && self.s.tail_events > 0.0 {
                self.tail.learn(raw_z, self.s.z_crit);
            }
        }
        PointScore {
            z: zc,
            score,
            onset,
        }
    }

    /// Forgets earlier events for the onset rules (suppression window, last significant onset):
    /// the next positive score is an onset.
    pub(crate) fn forget_events(&mut self) {
        self.maxq.clear();
        self.last_sig = None;
    }

    /// A point that was not scored (gap): keeps the time base of the suppression window.
    pub(crate) fn skip(&mut self) {
        self.onset(0.0);
    }

    /// `score` if it exceeds every score of the last `suppress_points` points, else 0.
    fn onset(&mut self, score: f64) -> f64 {
        let t = self.t;
        self.t += 1;
        let win = self.s.suppress_points as u64;
        while self.maxq.front().is_some_and(|(i, _)| *i + win < t) {
            self.maxq.pop_front();
        }
        let prev_max = self.maxq.front().map_or(0.0, |(_, s)| *s);
        while self.maxq.back().is_some_and(|(_, s)| *s <= score) {
            self.maxq.pop_back();
        }
        self.maxq.push_back((t, score));
        if win == 0 || score > prev_max {
            score
        } else {
            0.0
        }
    }
}

/// Maps a surprise in standard deviations to [0, 1): 0.5 at `z_crit`.
pub(crate) fn to_score(z: f64, z_crit: f64) -> f64 {
    if !z.is_finite() {
        return if z.is_nan() { 0.0 } else { 1.0 };
    }
    let z = z.max(0.0);
    z / (z + z_crit.max(1e-9))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every optional statistic off.
    const SETTINGS_OFF: ScoreSettings = ScoreSettings {
        z_crit: 3.0,
        short_window: 1,
        long_window: 0,
        suppress_points: 0,
        onset_ratio: 1.0,
        calib_halflife: 0.0,
        calib_clip: 10.0,
        sig_level: 0.5,
        refractory_points: 0,
        cusum_k: 0.0,
        likelihood_window: 0,
        likelihood_halflife: 3000.0,
        likelihood_max: false,
        var_window: 0,
        var_down: false,
        tail_events: 0.0,
        tail_prior: 1.0,
    };

    #[test]
    fn cusum_finds_a_small_sustained_shift_the_point_statistic_misses() {
        let mut s = Scorer::new(ScoreSettings {
            cusum_k: 0.5,
            ..SETTINGS_OFF
        });
        let mut last = s.push(0.0);
        for _ in 0..20 {
            last = s.push(1.5);
        }
        // each point is 1.5 sd off; the CUSUM has accumulated 20 * (1.5 - 0.5)
        assert!((last.z - 20.0).abs() < 1e-9, "{}", last.z);
        let mut plain = Scorer::new(SETTINGS_OFF);
        assert!((plain.push(1.5).z - 1.5).abs() < 1e-9);
    }

    /// Deterministic residuals with mean square 1 and a bounded range (a clean stream).
    fn clean(i: usize) -> f64 {
        // values ±0.5, ±1.0, ±1.5 with equal weight have mean square 7/6; scaled to 1
        let v = [0.5, -1.0, 1.5, -0.5, 1.0, -1.5][i % 6];
        v / (7.0f64 / 6.0).sqrt()
    }

    /// (largest calibrated surprise on a long clean stream, then on `after` 40 points of
    /// residuals `factor` times as wide), for a scorer with `var_window` / `var_down`.
    fn clean_then(var_window: usize, var_down: bool, factor: f64) -> (f64, f64) {
        let mut s = Scorer::new(ScoreSettings {
            var_window,
            var_down,
            calib_halflife: 3000.0,
            calib_clip: 2.5,
            ..SETTINGS_OFF
        });
        let mut calm = 0.0f64;
        for i in 0..2000 {
            let p = s.push(clean(i));
            if i > 100 {
                calm = calm.max(p.z);
            }
        }
        let mut after = 0.0f64;
        for i in 0..40 {
            after = after.max(s.push(factor * clean(i)).z);
        }
        (calm, after)
    }

    #[test]
    fn variance_change_fires_on_wider_residuals_and_not_on_a_clean_stream() {
        let (calm_plain, wide_plain) = clean_then(0, false, 2.8);
        let (calm, wide) = clean_then(20, false, 2.8);
        // quiet where the series is: the variance statistic adds nothing to the calm maximum
        assert!((calm - calm_plain).abs() < 1e-9, "{calm} vs {calm_plain}");
        // residuals 2.8 times as wide (none beyond 4 sd): far above what the point statistic gives
        assert!(
            wide > 2.0 * wide_plain && wide > 10.0,
            "{wide} vs {wide_plain}"
        );
    }

    #[test]
    fn variance_drop_scores_only_with_var_down() {
        // a stuck value: residuals near zero
        let (_, up_only) = clean_then(20, false, 0.0);
        let (calm, both) = clean_then(20, true, 0.0);
        assert!(up_only < 1.0, "drop without var_down: {up_only}");
        assert!(both > 10.0, "drop with var_down: {both}");
        assert!(calm < 2.0, "{calm}");
    }

    #[test]
    fn tail_scale_compresses_a_bursty_series_and_leaves_a_quiet_one() {
        let settings = ScoreSettings {
            suppress_points: 50,
            tail_events: 3.0,
            tail_prior: 1.0,
            ..SETTINGS_OFF
        };
        // a series whose events are all far above the band edge (u = 60: ln 20 = 3.0 each)
        let mut bursty = Scorer::new(settings);
        for k in 0..20 {
            for _ in 0..99 {
                bursty.push(0.5);
            }
            let p = bursty.push(60.0);
            assert!(p.onset > 0.0, "event {k} is an onset");
        }
        for _ in 0..99 {
            bursty.push(0.5);
        }
        // own mean log excess (3 * 1 + 20 * 3.0) / 23 = 2.74: exponent 0.36
        let u = bursty.push(10.0).z;
        let want = 3.0 * (10.0f64 / 3.0).powf(1.0 / ((3.0 + 20.0 * 20f64.ln()) / 23.0));
        assert!((u - want).abs() < 1e-9, "{u} vs {want}");
        assert!(u < 5.0);
        // no event history: the prior alone gives exponent 1 (unchanged); never expanded
        let mut quiet = Scorer::new(settings);
        for _ in 0..200 {
            quiet.push(0.5);
        }
        assert!((quiet.push(10.0).z - 10.0).abs() < 1e-9);
        let mut small = Scorer::new(settings);
        for _ in 0..10 {
            for _ in 0..99 {
                small.push(0.5);
            }
            small.push(3.5);
        }
        for _ in 0..99 {
            small.push(0.5);
        }
        assert!(
            (small.push(10.0).z - 10.0).abs() < 1e-9,
            "quiet events do not expand"
        );
        // below the band edge nothing changes
        assert!((bursty.push(2.0).z - 2.0).abs() < 1e-9);
    }

    #[test]
    fn likelihood_is_quiet_on_usual_scores_and_high_on_a_burst() {
        let mut s = Scorer::new(ScoreSettings {
            likelihood_window: 5,
            ..SETTINGS_OFF
        });
        // alternating usual surprises: until LIKELIHOOD_MIN_SAMPLES the surprise passes through
        let first = s.push(2.0);
        assert!((first.z - 2.0).abs() < 1e-9);
        let mut calm = 0.0f64;
        for i in 0..400 {
            let p = s.push(if i % 2 == 0 { 0.5 } else { 1.5 });
            if i > 200 {
                calm = calm.max(p.z);
            }
        }
        assert!(calm < 1.5, "calm stretch reached {calm}");
        let mut burst = 0.0f64;
        for _ in 0..5 {
            burst = burst.max(s.push(6.0).z);
        }
        assert!(burst > 5.0, "burst only {burst}");
    }

    #[test]
    fn score_is_half_on_the_band_edge_and_monotone() {
        assert!((to_score(3.0, 3.0) - 0.5).abs() < 1e-12);
        assert!(to_score(1.0, 3.0) < to_score(2.0, 3.0));
        assert_eq!(to_score(f64::NAN, 3.0), 0.0);
        assert!(to_score(1e300, 3.0) <= 1.0);
    }

    #[test]
    fn repeats_within_the_window_are_suppressed() {
        let mut s = Scorer::new(ScoreSettings {
            z_crit: 3.0,
            short_window: 1,
            long_window: 0,
            suppress_points: 5,
            onset_ratio: 1.0,
            calib_halflife: 0.0,
            calib_clip: 10.0,
            sig_level: 0.5,
            refractory_points: 0,
            ..SETTINGS_OFF
        });
        let first = s.push(10.0);
        assert!(first.onset > 0.5);
        assert_eq!(s.push(9.0).onset, 0.0);
        assert_eq!(s.push(-8.0).onset, 0.0);
        // a higher one is a new onset
        assert!(s.push(20.0).onset > first.onset);
        for _ in 0..6 {
            s.push(0.0);
        }
        assert!(s.push(9.0).onset > 0.5, "window expired");
    }

    #[test]
    fn sustained_small_shift_scores_through_the_short_window() {
        let mut s = Scorer::new(ScoreSettings {
            z_crit: 3.0,
            short_window: 9,
            long_window: 0,
            suppress_points: 0,
            onset_ratio: 1.0,
            calib_halflife: 0.0,
            calib_clip: 10.0,
            sig_level: 0.5,
            refractory_points: 0,
            ..SETTINGS_OFF
        });
        let mut last = 0.0;
        for _ in 0..9 {
            last = s.push(1.5).z;
        }
        assert!((last - 4.5).abs() < 1e-9, "{last}");
    }
}
