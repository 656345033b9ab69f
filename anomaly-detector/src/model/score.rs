//! From normalised one-step residuals to anomaly scores.
//!
//! `z` is the residual divided by a robust running scale (see `SeriesDetector`). The score combines
//! the point's own surprise with the surprise of the mean of the last few residuals (catches level
//! shifts and slow drifts whose single points stay inside the band), maps it to [0, 1] with 0.5 on
//! the band edge, and an onset score keeps only new highs within a suppression window (the first
//! detection of an event, what the NAB scorer rewards; later repeats would be false positives).
//!
//! Run its unit tests with `cargo test -p anomaly-detector model::score`.

use std::collections::VecDeque;

/// Scoring settings (copied from `ModelConfig`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ScoreSettings {
    pub(crate) z_crit: f64,
    pub(crate) short_window: usize,
    pub(crate) suppress_points: usize,
    pub(crate) onset_ratio: f64,
    pub(crate) calib_halflife: f64,
    pub(crate) calib_clip: f64,
    pub(crate) sig_level: f64,
    pub(crate) suppress_halflife: f64,
    pub(crate) calib_quantile: f64,
}

/// Streaming scorer state.
#[derive(Debug, Clone)]
pub(crate) struct Scorer {
    s: ScoreSettings,
    recent: VecDeque<f64>,
    recent_sum: f64,
    /// (index, score) pairs with decreasing scores: sliding maximum of past scores.
    maxq: VecDeque<(u64, f64)>,
    t: u64,
    /// EWMA mean and mean square of the (clipped) combined surprise: this series' usual surprise.
    cal_mean: f64,
    cal_sq: f64,
    cal_n: u64,
    /// Time and surprise of the last onset at or above `sig_level`.
    last_sig: Option<(u64, f64)>,
    /// Exponentially decaying maximum of past scores (when `suppress_halflife > 0`).
    decayed_max: f64,
    /// Log of the running `calib_quantile` quantile of the combined surprise.
    log_q: f64,
}

/// One point's scores.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PointScore {
    /// Combined surprise in standard deviations.
    pub(crate) z: f64,
    /// Score in [0, 1]; 0.5 on the band edge.
    pub(crate) score: f64,
    /// `score` when it is a new high within the suppression window, else 0.
    pub(crate) onset: f64,
}

impl Scorer {
    pub(crate) fn new(s: ScoreSettings) -> Self {
        Self {
            s,
            recent: VecDeque::with_capacity(s.short_window.max(1)),
            recent_sum: 0.0,
            maxq: VecDeque::new(),
            t: 0,
            cal_mean: 0.0,
            cal_sq: 0.0,
            cal_n: 0,
            last_sig: None,
            decayed_max: 0.0,
            log_q: f64::NAN,
        }
    }

    /// Scores one normalised residual (finite; callers clamp).
    pub(crate) fn push(&mut self, z: f64) -> PointScore {
        let w = self.s.short_window.max(1);
        self.recent.push_back(z);
        self.recent_sum += z;
        if self.recent.len() > w {
            if let Some(old) = self.recent.pop_front() {
                self.recent_sum -= old;
            }
        }
        // recompute occasionally to keep float drift out of the running sum
        if self.t % 1024 == 0 {
            self.recent_sum = self.recent.iter().sum();
        }
        let zs = if self.recent.len() >= 2 {
            self.recent_sum.abs() / (self.recent.len() as f64).sqrt()
        } else {
            0.0
        };
        let zc = z.abs().max(zs);
        let zc = self.calibrate(zc);
        let score = to_score(zc, self.s.z_crit);
        let mut onset = self.onset(score);
        // after a significant onset, a later one in the window must be clearly larger
        if onset > 0.0 && self.s.suppress_points > 0 && score >= self.s.sig_level {
            let t = self.t - 1;
            match self.last_sig {
                Some((t0, z0)) if t0 + self.s.suppress_points as u64 >= t && zc <= z0 * self.s.onset_ratio => {
                    onset = 0.0;
                }
                _ => self.last_sig = Some((t, zc)),
            }
        }
        PointScore { z: zc, score, onset }
    }

    /// Re-expresses `zc` relative to this series' usual surprise (mean and spread of past
    /// values), so series with heavy-tailed residuals need a larger surprise for the same score.
    fn calibrate(&mut self, zc: f64) -> f64 {
        if self.s.calib_quantile > 0.0 && self.s.calib_quantile < 1.0 {
            return self.calibrate_quantile(zc);
        }
        if self.s.calib_halflife <= 0.0 {
            return zc;
        }
        let lam = (1.0 - 0.5f64.powf(1.0 / self.s.calib_halflife)).max(1.0 / (self.cal_n as f64 + 1.0));
        // a Gaussian |z| has mean 0.80 and sd 0.60: the prior until the series shows its own
        let (m, sd) = if self.cal_n == 0 {
            (0.8, 0.6)
        } else {
            (self.cal_mean, (self.cal_sq - self.cal_mean * self.cal_mean).max(0.0).sqrt())
        };
        let out = 0.8 + 0.6 * (zc - m) / sd.max(0.3);
        let c = zc.min(self.s.calib_clip);
        self.cal_mean += lam * (c - self.cal_mean);
        self.cal_sq += lam * (c * c - self.cal_sq);
        self.cal_n += 1;
        out.max(0.0)
    }

    /// Divides `zc` by this series' running high quantile of surprise (relative to a Gaussian's),
    /// tracked by stochastic approximation on the log scale.
    fn calibrate_quantile(&mut self, zc: f64) -> f64 {
        let p = self.s.calib_quantile;
        let gauss_q = normal_quantile_two_sided(p);
        if self.log_q.is_nan() {
            self.log_q = gauss_q.ln();
        }
        let q = self.log_q.exp();
        let out = zc * gauss_q / q.max(1e-9);
        let rate = 1.0 / self.s.calib_halflife.max(10.0) / (1.0 - p);
        let step = if zc > q { p } else { -(1.0 - p) };
        self.log_q = (self.log_q + rate * step).clamp(-10.0, 10.0);
        out
    }

    /// A point that was not scored (gap): keeps the time base of the suppression window.
    pub(crate) fn skip(&mut self) {
        self.onset(0.0);
    }

    fn onset(&mut self, score: f64) -> f64 {
        if self.s.suppress_halflife > 0.0 {
            self.t += 1;
            let prev = self.decayed_max;
            self.decayed_max = prev.max(score) * 0.5f64.powf(1.0 / self.s.suppress_halflife);
            return if score > prev { score } else { 0.0 };
        }
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

/// The `p` quantile of |Z| for a standard normal Z (bisection on erf; p in (0, 1)).
fn normal_quantile_two_sided(p: f64) -> f64 {
    let (mut lo, mut hi) = (0.0f64, 40.0f64);
    for _ in 0..80 {
        let mid = 0.5 * (lo + hi);
        if erf(mid / std::f64::consts::SQRT_2) < p {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    0.5 * (lo + hi)
}

/// Error function (Abramowitz-Stegun 7.1.26, |error| < 1.5e-7).
fn erf(x: f64) -> f64 {
    let t = 1.0 / (1.0 + 0.327_591_1 * x.abs());
    let y = 1.0
        - (((((1.061_405_429 * t - 1.453_152_027) * t) + 1.421_413_741) * t - 0.284_496_736) * t + 0.254_829_592)
            * t
            * (-x * x).exp();
    if x < 0.0 {
        -y
    } else {
        y
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
            suppress_points: 5,
            onset_ratio: 1.0,
            calib_halflife: 0.0,
            calib_clip: 10.0,
            sig_level: 0.5,
            suppress_halflife: 0.0,
            calib_quantile: 0.0,
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
            suppress_points: 0,
            onset_ratio: 1.0,
            calib_halflife: 0.0,
            calib_clip: 10.0,
            sig_level: 0.5,
            suppress_halflife: 0.0,
            calib_quantile: 0.0,
        });
        let mut last = 0.0;
        for _ in 0..9 {
            last = s.push(1.5).z;
        }
        assert!((last - 4.5).abs() < 1e-9, "{last}");
    }
}
