//! Exponential backoff with jitter, shared by the Prometheus client and the alert senders.
//!
//! Tests: `cargo test -p anomaly-detector retry::`.

use std::time::Duration;

use rand::Rng;

use crate::config::RetryConfig;

/// Wait before retry number `retry` (0 = first retry): `initial * 2^retry`, capped at `max`,
/// then scaled by a random factor in [0.5, 1.0] ("equal jitter") so that many detections
/// failing together do not retry in lockstep.
pub fn backoff(config: &RetryConfig, retry: u32) -> Duration {
    let base = config
        .initial_backoff
        .saturating_mul(1u32 << retry.min(20))
        .min(config.max_backoff);
    let factor: f64 = rand::rng().random_range(0.5..=1.0);
    base.mul_f64(factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_exponentially_with_jitter_and_cap() {
        let c = RetryConfig {
            max_attempts: 10,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
        };
        for _ in 0..50 {
            let b0 = backoff(&c, 0);
            assert!(b0 >= Duration::from_millis(50) && b0 <= Duration::from_millis(100));
            let b2 = backoff(&c, 2);
            assert!(b2 >= Duration::from_millis(200) && b2 <= Duration::from_millis(400));
            let b9 = backoff(&c, 9);
            assert!(b9 >= Duration::from_millis(500) && b9 <= Duration::from_secs(1));
        }
        let samples: std::collections::HashSet<_> = (0..20).map(|_| backoff(&c, 3)).collect();
        assert!(samples.len() > 1, "jitter must vary the wait");
    }
}
