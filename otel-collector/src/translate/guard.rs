//! Cardinality guard: at most `max_series_per_metric` distinct label sets per metric name.
//!
//! A series already admitted keeps flowing; a new one beyond the cap is refused (the caller
//! counts it with reason `cardinality_limit`). Series not seen for the expiry time are forgotten,
//! which frees their slots. With a cap of 0 the guard admits everything and holds no state.
//!
//! Tests: `cargo test -p otel-collector translate::guard`.

use super::model::Labels;
use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::time::{Duration, Instant};

/// Per-metric series cap.
#[derive(Debug)]
pub struct CardinalityGuard {
    max: usize,
    expiry: Duration,
    metrics: HashMap<String, HashMap<u64, Instant>>,
    last_sweep: Instant,
}

impl CardinalityGuard {
    /// A guard admitting `max` series per metric (0: no cap), forgetting series idle for `expiry`.
    pub fn new(max: usize, expiry: Duration) -> Self {
        CardinalityGuard {
            max,
            expiry,
            metrics: HashMap::new(),
            last_sweep: Instant::now(),
        }
    }

    /// True when the series `name{labels}` may pass.
    pub fn admit(&mut self, name: &str, labels: &Labels) -> bool {
        if self.max == 0 {
            return true;
        }
        let mut h = DefaultHasher::new();
        labels.hash(&mut h);
        let key = h.finish();
        let now = Instant::now();
        let series = match self.metrics.get_mut(name) {
            Some(s) => s,
            None => self.metrics.entry(name.to_string()).or_default(),
        };
        if let Some(seen) = series.get_mut(&key) {
            *seen = now;
            return true;
        }
        if series.len() >= self.max {
            let expiry = self.expiry;
            series.retain(|_, t| now.duration_since(*t) < expiry);
            if series.len() >= self.max {
                return false;
            }
        }
        series.insert(key, now);
        true
    }

    /// Forgets idle series (at most every `expiry / 10`).
    pub fn sweep(&mut self) {
        if self.max == 0 {
            return;
        }
        let now = Instant::now();
        if now.duration_since(self.last_sweep) < self.expiry / 10 {
            return;
        }
        self.last_sweep = now;
        let expiry = self.expiry;
        for series in self.metrics.values_mut() {
            series.retain(|_, t| now.duration_since(*t) < expiry);
        }
        self.metrics.retain(|_, s| !s.is_empty());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(i: usize) -> Labels {
        vec![("id".into(), i.to_string())]
    }

    #[test]
    fn caps_new_series_per_metric_but_keeps_known_ones() {
        let mut g = CardinalityGuard::new(2, Duration::from_secs(60));
        assert!(g.admit("m", &labels(1)));
        assert!(g.admit("m", &labels(2)));
        assert!(!g.admit("m", &labels(3)));
        assert!(g.admit("m", &labels(1)));
        assert!(g.admit("other", &labels(3)));
    }

    #[test]
    fn idle_series_free_their_slot() {
        let mut g = CardinalityGuard::new(1, Duration::from_millis(1));
        assert!(g.admit("m", &labels(1)));
        std::thread::sleep(Duration::from_millis(5));
        assert!(g.admit("m", &labels(2)));
    }

    #[test]
    fn zero_means_unlimited() {
        let mut g = CardinalityGuard::new(0, Duration::from_secs(1));
        for i in 0..1000 {
            assert!(g.admit("m", &labels(i)));
        }
    }
}
