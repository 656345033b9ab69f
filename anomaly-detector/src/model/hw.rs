//! Additive Holt-Winters (triple exponential smoothing) recursion, its heuristic initialisation and
//! a small grid-search fit.
//!
//! The recursion is the one statsmodels' `ExponentialSmoothing(trend="add", seasonal="add")` runs,
//! so the same parameters and initial states give the same fitted values (checked by
//! `tests/model_statsmodels_parity.rs` against a fixture made by `bench/statsmodels_parity.py`).
//! Run its unit tests with `cargo test -p anomaly-detector model::hw`.

/// Smoothing parameters of one additive Holt-Winters model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HwParams {
    /// Level smoothing (alpha), in [0, 1].
    pub alpha: f64,
    /// Trend smoothing (beta); `None` = no trend component.
    pub beta: Option<f64>,
    /// Seasonal smoothing (gamma); `None` = no seasonal component.
    pub gamma: Option<f64>,
    /// Trend damping (phi) in (0, 1]; 1 = undamped.
    pub phi: f64,
}

/// The state of the recursion after some observations.
#[derive(Debug, Clone, PartialEq)]
pub struct HwState {
    /// Current level.
    pub level: f64,
    /// Current trend (0 without a trend component).
    pub trend: f64,
    /// Seasonal components as a ring; `seasonals[pos]` is the one for the next point.
    pub seasonals: Vec<f64>,
    /// Ring position of the next point's seasonal component.
    pub pos: usize,
}

impl HwState {
    /// A state from initial level, trend and seasonals (`seasonals[0]` applies to the first point).
    #[must_use]
    pub fn new(level: f64, trend: f64, seasonals: Vec<f64>) -> Self {
        Self {
            level,
            trend,
            seasonals,
            pos: 0,
        }
    }

    /// One-step-ahead forecast of the next point.
    #[must_use]
    pub fn forecast(&self, params: &HwParams) -> f64 {
        self.level + params.phi * self.trend + self.season()
    }

    /// Forecast `h >= 1` steps ahead.
    #[must_use]
    pub fn forecast_h(&self, params: &HwParams, h: usize) -> f64 {
        let damp: f64 = if params.phi == 1.0 {
            h as f64
        } else {
            (1..=h).map(|i| params.phi.powi(i as i32)).sum()
        };
        let s = if self.seasonals.is_empty() {
            0.0
        } else {
            self.seasonals[(self.pos + h - 1) % self.seasonals.len()]
        };
        self.level + damp * self.trend + s
    }

    fn season(&self) -> f64 {
        self.seasonals.get(self.pos).copied().unwrap_or(0.0)
    }

    /// Update with the observation `y`; a non-finite `y` (a gap) advances the state along its
    /// forecast without learning from it.
    pub fn update(&mut self, params: &HwParams, y: f64) {
        let prev_level = self.level;
        let damped = params.phi * self.trend;
        let s_old = self.season();
        if !y.is_finite() {
            self.level = prev_level + damped;
            self.trend = damped;
        } else {
            self.level = params.alpha * (y - s_old) + (1.0 - params.alpha) * (prev_level + damped);
            if let Some(beta) = params.beta {
                self.trend = beta * (self.level - prev_level) + (1.0 - beta) * damped;
            }
            if let Some(gamma) = params.gamma {
                if let Some(s) = self.seasonals.get_mut(self.pos) {
                    *s = gamma * (y - prev_level - damped) + (1.0 - gamma) * s_old;
                }
            }
        }
        if !self.seasonals.is_empty() {
            self.pos = (self.pos + 1) % self.seasonals.len();
        }
    }
}

/// Runs the recursion over `y` from `state` and returns the one-step-ahead fitted values
/// (statsmodels' `fittedvalues`); `state` ends after the last point.
pub fn filter(y: &[f64], params: &HwParams, state: &mut HwState) -> Vec<f64> {
    let mut out = Vec::with_capacity(y.len());
    for &v in y {
        out.push(state.forecast(params));
        state.update(params, v);
    }
    out
}

/// Sum of absolute one-step errors over `y` after skipping `burn_in` points; leaves `state` after
/// the last point. Non-finite forecasts count as infinitely bad.
fn run_cost(y: &[f64], params: &HwParams, state: &mut HwState, burn_in: usize) -> f64 {
    let mut cost = 0.0;
    for (i, &v) in y.iter().enumerate() {
        let f = state.forecast(params);
        if i >= burn_in && v.is_finite() {
            cost += (v - f).abs();
        }
        state.update(params, v);
    }
    if cost.is_finite() {
        cost
    } else {
        f64::INFINITY
    }
}

/// Heuristic initial state from the start of `y` (non-finite values must have been filled):
/// level = mean of the first season (or first points), trend = mean change between the first two
/// seasons, seasonals = first season minus the level.
#[must_use]
pub fn heuristic_init(y: &[f64], period: usize, trend: bool) -> HwState {
    if period >= 2 && y.len() >= 2 * period {
        let first = mean(&y[..period]);
        let second = mean(&y[period..2 * period]);
        let slope = if trend {
            (second - first) / period as f64
        } else {
            0.0
        };
        // the forecast of point i is level + (i + 1) * slope + seasonal[i]; the first season's
        // mean sits at its centre (period - 1) / 2
        let level = first - slope * ((period as f64 - 1.0) / 2.0 + 1.0);
        let seasonals = (0..period)
            .map(|i| {
                let a = y[i] - (first + slope * (i as f64 - (period as f64 - 1.0) / 2.0));
                let b = y[i + period] - (second + slope * (i as f64 - (period as f64 - 1.0) / 2.0));
                (a + b) / 2.0
            })
            .collect();
        HwState::new(level, slope, seasonals)
    } else {
        let k = y.len().clamp(1, 10);
        let level = if y.is_empty() { 0.0 } else { mean(&y[..k]) };
        HwState::new(level, 0.0, Vec::new())
    }
}

fn mean(y: &[f64]) -> f64 {
    if y.is_empty() {
        0.0
    } else {
        y.iter().sum::<f64>() / y.len() as f64
    }
}

const ALPHAS: [f64; 8] = [0.02, 0.05, 0.1, 0.2, 0.35, 0.5, 0.7, 0.95];
const BETAS: [f64; 2] = [0.0, 0.02];
const GAMMAS: [f64; 4] = [0.02, 0.05, 0.15, 0.35];
/// Damping of the trend in fitted models: keeps long-horizon forecasts sane after a fitted trend.
const PHI: f64 = 0.98;

/// A fitted model: parameters, and the state after the last point of the fit data.
#[derive(Debug, Clone)]
pub struct Fitted {
    /// Chosen parameters.
    pub params: HwParams,
    /// State after the last fitted point.
    pub state: HwState,
    /// Mean absolute one-step error over the fitted data (after burn-in).
    pub mae: f64,
}

/// Grid values within one step of the grid value nearest to `v` (all values without `v`).
fn near_grid(grid: &[f64], v: Option<f64>) -> &[f64] {
    let Some(v) = v else {
        return grid;
    };
    let i = grid
        .iter()
        .enumerate()
        .min_by(|a, b| (a.1 - v).abs().total_cmp(&(b.1 - v).abs()))
        .map_or(0, |(i, _)| i);
    &grid[i.saturating_sub(1)..(i + 2).min(grid.len())]
}

/// Fits an additive model (seasonal with `period >= 2`, else non-seasonal) to `y` by grid search
/// on the mean absolute one-step error. `y` must be gap-filled (finite). With `near` (the previous
/// fit's parameters) only grid neighbours of those are tried: refits between full fits stay cheap.
/// Returns `None` when `y` is too short.
#[must_use]
pub fn fit(y: &[f64], period: usize, with_trend: bool, near: Option<&HwParams>) -> Option<Fitted> {
    let seasonal = period >= 2;
    let min_len = if seasonal { 2 * period + 2 } else { 4 };
    if y.len() < min_len {
        return None;
    }
    let init = heuristic_init(y, if seasonal { period } else { 0 }, with_trend);
    let burn_in = if seasonal { period } else { 2 }.min(y.len() / 2);
    let betas: &[f64] = if with_trend { &BETAS } else { &[0.0] };
    let gammas: &[f64] = if seasonal {
        near_grid(&GAMMAS, near.and_then(|p| p.gamma))
    } else {
        &[0.0]
    };
    let alphas = near_grid(&ALPHAS, near.map(|p| p.alpha));
    let mut best: Option<(f64, HwParams, HwState)> = None;
    for &alpha in alphas {
        for &beta in betas {
            for &gamma in gammas {
                let params = HwParams {
                    alpha,
                    beta: with_trend.then_some(beta),
                    gamma: seasonal.then_some(gamma),
                    phi: if with_trend { PHI } else { 1.0 },
                };
                let mut state = init.clone();
                let cost = run_cost(y, &params, &mut state, burn_in);
                if best.as_ref().is_none_or(|(c, _, _)| cost < *c) {
                    best = Some((cost, params, state));
                }
            }
        }
    }
    let (cost, params, state) = best?;
    if !cost.is_finite() {
        return None;
    }
    let n = y.len().saturating_sub(burn_in).max(1);
    Some(Fitted {
        params,
        state,
        mae: cost / n as f64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fits_a_clean_seasonal_series_closely() {
        let y: Vec<f64> = (0..400)
            .map(|i| {
                10.0 + 0.01 * i as f64
                    + 3.0 * ((i % 24) as f64 / 24.0 * std::f64::consts::TAU).sin()
            })
            .collect();
        let fitted = fit(&y, 24, true, None).expect("long enough");
        assert!(fitted.mae < 0.05, "mae {}", fitted.mae);
        let next = fitted.state.forecast(&fitted.params);
        let truth = 10.0 + 0.01 * 400.0 + 3.0 * (16.0 / 24.0 * std::f64::consts::TAU).sin();
        assert!((next - truth).abs() < 0.2, "forecast {next} vs {truth}");
    }

    #[test]
    fn gaps_advance_without_learning() {
        let params = HwParams {
            alpha: 0.5,
            beta: Some(0.1),
            gamma: Some(0.1),
            phi: 1.0,
        };
        let mut state = HwState::new(1.0, 0.5, vec![0.0, 1.0]);
        state.update(&params, f64::NAN);
        assert_eq!(state.level, 1.5);
        assert_eq!(state.seasonals, vec![0.0, 1.0]);
        assert_eq!(state.pos, 1);
    }

    #[test]
    fn too_short_series_do_not_fit() {
        assert!(fit(&[1.0, 2.0], 0, false, None).is_none());
        assert!(fit(&[1.0; 10], 24, false, None).is_none());
        assert!(fit(&[], 0, true, None).is_none());
    }
}
