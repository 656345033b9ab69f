//! Seasonal period detection: candidates from `augurs::seasons` (a Welch periodogram) and the
//! calendar (hour, day, week at the series' step), each confirmed by the autocorrelation of the
//! detrended history at and around that lag.
//!
//! Run its unit tests with `cargo test -p anomaly-detector model::season`.

use augurs::seasons::{Detector as _, PeriodogramDetector};

/// Bounds and thresholds for period detection.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SeasonBounds {
    pub(crate) min_period: usize,
    pub(crate) max_period: usize,
    pub(crate) min_cycles: usize,
    pub(crate) min_acf: f64,
}

/// The detected period (in points) and its autocorrelation, or `None` when no period passes.
/// `y` must be finite (gaps filled).
pub(crate) fn detect_period(
    y: &[f64],
    step_seconds: f64,
    b: &SeasonBounds,
) -> Option<(usize, f64)> {
    let n = y.len();
    let min_cycles = b.min_cycles.max(2);
    let max_p = b.max_period.min(n.saturating_sub(10) / min_cycles);
    let min_p = b.min_period.max(2);
    if max_p < min_p || n < 16 {
        return None;
    }
    let x = detrend(y);
    let var: f64 = x.iter().map(|v| v * v).sum();
    if !(var.is_finite() && var > 0.0) {
        return None;
    }
    // (lo, hi) lag ranges with a preference bonus: calendar periods win near-ties with the
    // neighbouring lags a periodogram peak's range also holds
    let mut candidates: Vec<(usize, usize, f64)> = Vec::new();
    if step_seconds.is_finite() && step_seconds > 0.0 {
        for span in [3600.0, 86_400.0, 604_800.0] {
            let p = span / step_seconds;
            let r = p.round();
            if (p - r).abs() < 0.01 * p && r >= min_p as f64 && r <= max_p as f64 {
                candidates.push((r as usize, r as usize, CALENDAR_BONUS));
            }
        }
    }
    for p in periodogram_peaks(&x, min_p, max_p) {
        let lo = ((p as f64 * 0.85).floor() as usize).max(min_p);
        let hi = ((p as f64 * 1.15).ceil() as usize).min(max_p);
        if lo <= hi {
            candidates.push((lo, hi, 0.0));
        }
    }
    let mut best: Option<(usize, f64)> = None;
    for (lo, hi, bonus) in candidates {
        let Some((lag, a)) = (lo..=hi)
            .map(|lag| (lag, acf(&x, var, lag)))
            // the shorter lag wins near-ties (a multiple of the true period scores as well)
            .fold(None, |acc: Option<(usize, f64)>, c| match acc {
                Some(b) if b.1 + 1e-9 >= c.1 => Some(b),
                _ => Some(c),
            })
        else {
            continue;
        };
        // a season shows as a peak of the autocorrelation after a trough; a smooth non-seasonal
        // series has a high autocorrelation at short lags but no trough before them
        let trough = (0..16)
            .map(|i| lag / 4 + i * (lag / 2) / 15)
            .filter(|&k| k >= 1 && k < lag)
            .map(|k| acf(&x, var, k))
            .fold(f64::INFINITY, f64::min);
        if a < b.min_acf || !trough.is_finite() || a - trough < b.min_acf {
            continue;
        }
        if best.is_none_or(|(_, ba)| a + bonus > ba + 1e-9) {
            best = Some((lag, a + bonus));
        }
    }
    best.map(|(lag, a)| (lag, acf(&x, var, lag).min(a)))
}

/// Autocorrelation a calendar period (hour, day, week) may lose to a neighbouring lag and still
/// be chosen.
const CALENDAR_BONUS: f64 = 0.05;

fn periodogram_peaks(x: &[f64], min_p: usize, max_p: usize) -> Vec<usize> {
    // the periodogram needs a few cycles of the longest period and bounded sizes
    if x.len() < 3 * min_p.max(4) || max_p < 4 {
        return Vec::new();
    }
    let detector = PeriodogramDetector::builder()
        .min_period(min_p.max(4) as u32)
        .max_period(max_p.min(u32::MAX as usize) as u32)
        .threshold(0.5)
        .build();
    // welch_sde may assert on degenerate sizes; a failed detection only drops candidates
    std::panic::catch_unwind(|| detector.detect(x))
        .map(|v| v.into_iter().rev().take(3).map(|p| p as usize).collect())
        .unwrap_or_default()
}

/// Removes a least-squares line (and the mean).
fn detrend(y: &[f64]) -> Vec<f64> {
    let n = y.len() as f64;
    let mx = (n - 1.0) / 2.0;
    let my = y.iter().sum::<f64>() / n;
    let mut sxy = 0.0;
    let mut sxx = 0.0;
    for (i, v) in y.iter().enumerate() {
        let dx = i as f64 - mx;
        sxy += dx * (v - my);
        sxx += dx * dx;
    }
    let slope = if sxx > 0.0 { sxy / sxx } else { 0.0 };
    y.iter()
        .enumerate()
        .map(|(i, v)| v - my - slope * (i as f64 - mx))
        .collect()
}

fn acf(x: &[f64], var: f64, lag: usize) -> f64 {
    if lag >= x.len() {
        return 0.0;
    }
    let s: f64 = x[..x.len() - lag]
        .iter()
        .zip(&x[lag..])
        .map(|(a, b)| a * b)
        .sum();
    s / var
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: SeasonBounds = SeasonBounds {
        min_period: 4,
        max_period: 1440,
        min_cycles: 2,
        min_acf: 0.3,
    };

    fn noise(i: usize) -> f64 {
        // deterministic pseudo-noise in [-0.5, 0.5) (splitmix64)
        let mut z = (i as u64)
            .wrapping_add(1)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64 - 0.5
    }

    #[test]
    fn finds_a_non_calendar_period() {
        let y: Vec<f64> = (0..600)
            .map(|i| {
                (i as f64 / 37.0 * std::f64::consts::TAU).sin() * 5.0 + noise(i) + 0.01 * i as f64
            })
            .collect();
        let (p, a) = detect_period(&y, 60.0, &B).expect("period");
        assert!((36..=38).contains(&p), "period {p} acf {a}");
    }

    #[test]
    fn finds_the_daily_period_of_five_minute_data() {
        let y: Vec<f64> = (0..288 * 4)
            .map(|i| (i as f64 / 288.0 * std::f64::consts::TAU).sin() * 3.0 + noise(i))
            .collect();
        assert_eq!(detect_period(&y, 300.0, &B).map(|x| x.0), Some(288));
    }

    #[test]
    fn noise_and_constants_have_no_period() {
        let y: Vec<f64> = (0..1000).map(noise).collect();
        assert_eq!(detect_period(&y, 300.0, &B), None);
        assert_eq!(detect_period(&[7.0; 500], 300.0, &B), None);
        assert_eq!(detect_period(&[], 300.0, &B), None);
    }
}
