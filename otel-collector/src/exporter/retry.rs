//! `retry_on_failure`: exponential backoff with jitter, as the upstream exporterhelper does it.
//!
//! An export attempt fails either permanently (the backend rejected the data; never retried) or
//! retryably (network error, gRPC UNAVAILABLE, HTTP 503, ...). Retryable failures are retried
//! after `initial_interval`, growing by `multiplier` up to `max_interval`, each delay randomised
//! by ±`randomization_factor`, until `max_elapsed_time` has passed (0 = retry forever). A delay the
//! server asks for (gRPC RetryInfo, HTTP Retry-After) is honoured when it is longer.
//!
//! Tests: `cargo test -p otel-collector exporter::retry`.

use rand::{Rng, SeedableRng};
use serde::Deserialize;
use std::time::Duration;

/// The `retry_on_failure` block of an exporter.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// Retry retryable failures at all (default true).
    pub enabled: bool,
    /// First delay (default 5s).
    #[serde(with = "humantime_serde")]
    pub initial_interval: Duration,
    /// Each delay is drawn uniformly from `d * (1 ± randomization_factor)` (default 0.5).
    pub randomization_factor: f64,
    /// Growth factor of the delay (default 1.5).
    pub multiplier: f64,
    /// Upper bound of one delay (default 30s).
    #[serde(with = "humantime_serde")]
    pub max_interval: Duration,
    /// Give up once this much time has passed since the first attempt; 0 = never (default 300s).
    #[serde(with = "humantime_serde")]
    pub max_elapsed_time: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            enabled: true,
            initial_interval: Duration::from_secs(5),
            randomization_factor: 0.5,
            multiplier: 1.5,
            max_interval: Duration::from_secs(30),
            max_elapsed_time: Duration::from_secs(300),
        }
    }
}

impl RetryConfig {
    /// Checks the values serde cannot, naming the key. The one validation of every exporter's
    /// `retry_on_failure` (`otlp`, `otlphttp`, `prometheusremotewrite`): NaN or infinite factors
    /// and a zero `max_interval` (a retry storm) are refused.
    ///
    /// # Errors
    /// The key path (relative to the exporter) and the fix.
    pub fn validate(&self) -> Result<(), crate::config::ComponentConfigError> {
        use crate::config::ComponentConfigError as E;
        if !self.enabled {
            return Ok(());
        }
        if self.initial_interval.is_zero() {
            return Err(E::new(
                "retry_on_failure.initial_interval",
                "must be greater than 0 (for example 5s)",
            ));
        }
        if !(0.0..=1.0).contains(&self.randomization_factor) {
            return Err(E::new(
                "retry_on_failure.randomization_factor",
                "must be between 0 and 1 (for example 0.5)",
            ));
        }
        if !(self.multiplier >= 1.0 && self.multiplier.is_finite()) {
            return Err(E::new(
                "retry_on_failure.multiplier",
                "must be at least 1 (for example 1.5)",
            ));
        }
        if self.max_interval < self.initial_interval {
            return Err(E::new(
                "retry_on_failure.max_interval",
                "must be at least initial_interval",
            ));
        }
        Ok(())
    }
}

/// The delays of one export's retries.
#[derive(Debug)]
pub struct Backoff {
    current: Duration,
    max_interval: Duration,
    multiplier: f64,
    randomization_factor: f64,
    rng: rand::rngs::SmallRng,
}

impl Backoff {
    /// A schedule for `cfg`, with jitter drawn from a fresh random seed.
    pub fn new(cfg: &RetryConfig) -> Self {
        Self::with_seed(cfg, rand::random())
    }

    /// A schedule for `cfg` whose jitter is reproducible from `seed` (tests).
    pub fn with_seed(cfg: &RetryConfig, seed: u64) -> Self {
        Backoff {
            current: cfg.initial_interval,
            max_interval: cfg.max_interval,
            multiplier: cfg.multiplier,
            randomization_factor: cfg.randomization_factor,
            rng: rand::rngs::SmallRng::seed_from_u64(seed),
        }
    }

    /// The next delay: the current interval randomised by ±factor; then the interval grows.
    pub fn next_delay(&mut self) -> Duration {
        let base = self.current.as_secs_f64();
        let delta = base * self.randomization_factor;
        let delay = if delta > 0.0 {
            self.rng.random_range((base - delta)..=(base + delta))
        } else {
            base
        };
        let grown = (base * self.multiplier).min(self.max_interval.as_secs_f64());
        // Validated settings keep these finite and non-negative; a delay too long for a
        // `Duration` (a max_interval of centuries) becomes max_interval instead of a panic.
        let secs = |v: f64| Duration::try_from_secs_f64(v.max(0.0)).unwrap_or(self.max_interval);
        self.current = secs(grown);
        secs(delay)
    }
}

/// Why one export attempt failed, and whether to try again.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ExportError {
    /// What went wrong (status, body excerpt, I/O error).
    pub message: String,
    /// True when the same data may succeed later.
    pub retryable: bool,
    /// The delay the server asked for (gRPC RetryInfo, HTTP Retry-After).
    pub retry_after: Option<Duration>,
}

impl ExportError {
    /// A failure that retrying cannot fix (the backend rejected the data).
    pub fn permanent(message: impl Into<String>) -> Self {
        ExportError {
            message: message.into(),
            retryable: false,
            retry_after: None,
        }
    }

    /// A failure that may go away (network, overload).
    pub fn retryable(message: impl Into<String>, retry_after: Option<Duration>) -> Self {
        ExportError {
            message: message.into(),
            retryable: true,
            retry_after,
        }
    }
}

/// Classifies a gRPC status per the OTLP specification: retryable are CANCELLED,
/// DEADLINE_EXCEEDED, ABORTED, OUT_OF_RANGE, UNAVAILABLE, DATA_LOSS, and RESOURCE_EXHAUSTED only
/// when the server sent RetryInfo (`retry_info`); everything else is permanent.
pub fn grpc_code_retryable(code: tonic::Code, retry_info: Option<Duration>) -> bool {
    use tonic::Code;
    match code {
        Code::Cancelled
        | Code::DeadlineExceeded
        | Code::Aborted
        | Code::OutOfRange
        | Code::Unavailable
        | Code::DataLoss => true,
        Code::ResourceExhausted => retry_info.is_some(),
        _ => false,
    }
}

/// Classifies an HTTP status per the OTLP/HTTP specification: 429, 502, 503, 504 are retryable;
/// other non-2xx statuses are permanent.
pub fn http_status_retryable(status: u16) -> bool {
    matches!(status, 429 | 502 | 503 | 504)
}

/// Parses an HTTP `Retry-After` value: delay-seconds or an HTTP date.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate_parse(v)?;
    Some(
        when.duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// Parses an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), the form servers send.
fn httpdate_parse(v: &str) -> Option<std::time::SystemTime> {
    let parts: Vec<&str> = v.split_whitespace().collect();
    if parts.len() != 6 || parts[5] != "GMT" {
        return None;
    }
    let day: u64 = parts[1].parse().ok()?;
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = MONTHS.iter().position(|m| *m == parts[2])? as u64 + 1;
    let year: i64 = parts[3].parse().ok()?;
    let hms: Vec<u64> = parts[4]
        .split(':')
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    if hms.len() != 3 {
        return None;
    }
    // Days from civil (Howard Hinnant's algorithm).
    let (y, m) = if month <= 2 {
        (year - 1, month + 9)
    } else {
        (year, month - 3)
    };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m as i64 + 2) / 5 + day as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + (hms[0] * 3600 + hms[1] * 60 + hms[2]) as i64;
    let secs = u64::try_from(secs).ok()?;
    Some(std::time::UNIX_EPOCH + Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(initial_ms: u64, factor: f64, mult: f64, max_ms: u64) -> RetryConfig {
        RetryConfig {
            initial_interval: Duration::from_millis(initial_ms),
            randomization_factor: factor,
            multiplier: mult,
            max_interval: Duration::from_millis(max_ms),
            ..RetryConfig::default()
        }
    }

    #[test]
    fn schedule_without_jitter_grows_and_caps() {
        let mut b = Backoff::with_seed(&cfg(100, 0.0, 2.0, 500), 1);
        let got: Vec<u128> = (0..6).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(got, vec![100, 200, 400, 500, 500, 500]);
    }

    #[test]
    fn jitter_stays_within_bounds_and_is_seeded() {
        let c = cfg(1000, 0.5, 1.5, 30_000);
        let mut a = Backoff::with_seed(&c, 42);
        let mut b = Backoff::with_seed(&c, 42);
        let mut base = 1000.0f64;
        for _ in 0..12 {
            let d = a.next_delay();
            assert_eq!(d, b.next_delay(), "same seed, same schedule");
            let ms = d.as_secs_f64() * 1000.0;
            assert!(
                ms >= base * 0.5 - 1e-6 && ms <= base * 1.5 + 1e-6,
                "{ms} not in {base}±50%"
            );
            base = (base * 1.5).min(30_000.0);
        }
        let mut other = Backoff::with_seed(&c, 7);
        let a2: Vec<_> = (0..5)
            .map(|_| Backoff::with_seed(&c, 42).next_delay())
            .collect();
        assert_ne!(
            a2[0],
            other.next_delay(),
            "different seed, different jitter"
        );
    }

    #[test]
    fn grpc_classification_follows_otlp_spec() {
        use tonic::Code;
        for c in [
            Code::Unavailable,
            Code::Aborted,
            Code::OutOfRange,
            Code::DataLoss,
            Code::Cancelled,
            Code::DeadlineExceeded,
        ] {
            assert!(grpc_code_retryable(c, None), "{c:?}");
        }
        assert!(!grpc_code_retryable(Code::ResourceExhausted, None));
        assert!(grpc_code_retryable(
            Code::ResourceExhausted,
            Some(Duration::from_secs(1))
        ));
        for c in [
            Code::InvalidArgument,
            Code::Unauthenticated,
            Code::PermissionDenied,
            Code::Unimplemented,
            Code::Internal,
            Code::NotFound,
        ] {
            assert!(!grpc_code_retryable(c, None), "{c:?}");
        }
    }

    #[test]
    fn http_classification_and_retry_after() {
        for s in [429, 502, 503, 504] {
            assert!(http_status_retryable(s));
        }
        for s in [400, 401, 403, 404, 413, 500] {
            assert!(!http_status_retryable(s));
        }
        assert_eq!(parse_retry_after("7"), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(Duration::ZERO),
            "a date in the past means now"
        );
        let t = httpdate_parse("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        assert_eq!(
            t.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs(),
            784_111_777
        );
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn nan_infinite_and_zero_settings_are_refused() {
        let bad = |c: RetryConfig| c.validate().unwrap_err().path;
        let base = RetryConfig::default;
        for m in [f64::NAN, f64::INFINITY, 0.9] {
            assert_eq!(
                bad(RetryConfig {
                    multiplier: m,
                    ..base()
                }),
                "retry_on_failure.multiplier",
                "{m}"
            );
        }
        for f in [f64::NAN, f64::INFINITY, -0.1, 1.5] {
            assert_eq!(
                bad(RetryConfig {
                    randomization_factor: f,
                    ..base()
                }),
                "retry_on_failure.randomization_factor",
                "{f}"
            );
        }
        assert_eq!(
            bad(RetryConfig {
                max_interval: Duration::ZERO,
                ..base()
            }),
            "retry_on_failure.max_interval"
        );
        assert_eq!(
            bad(RetryConfig {
                initial_interval: Duration::ZERO,
                ..base()
            }),
            "retry_on_failure.initial_interval"
        );
    }

    #[test]
    fn huge_intervals_do_not_overflow_the_schedule() {
        let c = RetryConfig {
            initial_interval: Duration::from_secs(u64::MAX / 4),
            max_interval: Duration::MAX,
            multiplier: 1e300,
            ..RetryConfig::default()
        };
        c.validate().unwrap();
        let mut b = Backoff::with_seed(&c, 3);
        for _ in 0..5 {
            let _ = b.next_delay();
        }
    }

    #[test]
    fn validate_names_the_key() {
        let mut c = RetryConfig {
            multiplier: 0.5,
            ..RetryConfig::default()
        };
        assert_eq!(
            c.validate().unwrap_err().path,
            "retry_on_failure.multiplier"
        );
        c.enabled = false;
        assert!(c.validate().is_ok());
    }
}
