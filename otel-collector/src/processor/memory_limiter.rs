//! The `memory_limiter` processor: refuses data while the process RSS is above the soft limit
//! (`limit - spike_limit`), so receivers answer "retry later" (gRPC UNAVAILABLE / HTTP 503 +
//! Retry-After, see `receiver::answer`) instead of the collector growing until it is
//! killed.
//!
//! RSS is read from `/proc/self/status` (VmRSS) every `check_interval`. Percentages are of the
//! cgroup memory limit when one is set (`/sys/fs/cgroup/memory.max`), else of MemTotal.
//! Self-metric: `otelcol_processor_refused_{spans,metric_points,log_records}{processor}`.
//!
//! Tests: `cargo test -p otel-collector processor::memory_limiter`.

use crate::config::{duration, ComponentConfigError};
use crate::pipeline::{
    ConsumeError, ConsumeFuture, Consumer, SharedConsumer, Shutdown, ShutdownFuture, Signal,
    StartContext, Telemetry,
};
use crate::telemetry::{Counter, SelfMetrics};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const MIB: u64 = 1024 * 1024;

/// `processors.memory_limiter`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MemoryLimiterConfig {
    /// How often RSS is measured (`1s`). Required, > 0.
    #[serde(with = "duration")]
    pub check_interval: Duration,
    /// Hard limit, MiB.
    pub limit_mib: u64,
    /// Headroom below the hard limit where refusing starts, MiB (default 20% of the limit).
    pub spike_limit_mib: u64,
    /// Hard limit as a percentage of total (or cgroup) memory, when `limit_mib` is 0.
    pub limit_percentage: u64,
    /// Spike limit as a percentage, with `limit_percentage`.
    pub spike_limit_percentage: u64,
}

impl MemoryLimiterConfig {
    /// Checks the limits.
    ///
    /// # Errors
    /// The offending key and the fix.
    pub fn validate(&self) -> Result<(), ComponentConfigError> {
        if self.check_interval.is_zero() {
            return Err(ComponentConfigError::new(
                "check_interval",
                "must be greater than 0; set it like `check_interval: 1s`",
            ));
        }
        if self.limit_mib == 0 && self.limit_percentage == 0 {
            return Err(ComponentConfigError::new(
                "limit_mib",
                "set `limit_mib` (e.g. 512) or `limit_percentage` (e.g. 80)",
            ));
        }
        if self.limit_mib > 0 && self.spike_limit_mib >= self.limit_mib {
            return Err(ComponentConfigError::new(
                "spike_limit_mib",
                format!(
                    "must be below limit_mib ({}); 20% of it is a good start",
                    self.limit_mib
                ),
            ));
        }
        if self.limit_percentage > 100 {
            return Err(ComponentConfigError::new(
                "limit_percentage",
                "must be between 1 and 100",
            ));
        }
        if self.limit_mib == 0 && self.spike_limit_percentage >= self.limit_percentage {
            return Err(ComponentConfigError::new(
                "spike_limit_percentage",
                "must be below limit_percentage",
            ));
        }
        Ok(())
    }

    /// The (hard, soft) limits in bytes given `total` memory bytes.
    pub fn limits(&self, total: u64) -> (u64, u64) {
        let (hard, spike) = if self.limit_mib > 0 {
            let spike = if self.spike_limit_mib > 0 {
                self.spike_limit_mib
            } else {
                self.limit_mib / 5
            };
            (self.limit_mib * MIB, spike * MIB)
        } else {
            let hard = total / 100 * self.limit_percentage;
            (hard, total / 100 * self.spike_limit_percentage)
        };
        (hard, hard.saturating_sub(spike))
    }
}

/// The process resident set size in bytes, from `/proc/self/status`.
pub fn process_rss() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Memory available to the process: the cgroup limit if set, else MemTotal.
pub fn total_memory() -> Option<u64> {
    if let Ok(s) = std::fs::read_to_string("/sys/fs/cgroup/memory.max") {
        if let Ok(v) = s.trim().parse::<u64>() {
            return Some(v);
        }
    }
    let s = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = s.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// The running `memory_limiter` of one pipeline.
pub struct MemoryLimiter {
    id: String,
    next: SharedConsumer,
    over: Arc<AtomicBool>,
    soft_limit: u64,
    last_rss: Arc<AtomicU64>,
    retry_after: Duration,
    refused: Counter,
    stop: CancellationToken,
}

impl MemoryLimiter {
    /// Starts the RSS check task and returns the processor.
    pub fn start(
        id: &str,
        config: &MemoryLimiterConfig,
        signal: Signal,
        next: SharedConsumer,
        ctx: &StartContext,
    ) -> Arc<Self> {
        let (hard, soft) = config.limits(total_memory().unwrap_or(u64::MAX / 2));
        Self::with_probe(
            id,
            config,
            signal,
            next,
            ctx,
            hard,
            soft,
            Arc::new(process_rss),
        )
    }

    /// Like [`MemoryLimiter::start`] with explicit limits and RSS probe (for tests).
    #[allow(clippy::too_many_arguments)]
    pub fn with_probe(
        id: &str,
        config: &MemoryLimiterConfig,
        signal: Signal,
        next: SharedConsumer,
        ctx: &StartContext,
        hard: u64,
        soft: u64,
        probe: Arc<dyn Fn() -> Option<u64> + Send + Sync>,
    ) -> Arc<Self> {
        let over = Arc::new(AtomicBool::new(false));
        let last_rss = Arc::new(AtomicU64::new(0));
        let stop = ctx.cancel.child_token();
        let noun = signal.item_noun();
        let name: &'static str = match signal {
            Signal::Traces => "otelcol_processor_refused_spans_total",
            Signal::Metrics => "otelcol_processor_refused_metric_points_total",
            Signal::Logs => "otelcol_processor_refused_log_records_total",
        };
        let refused = SelfMetrics::global().counter(
            name,
            "Items refused by a processor (memory limit).",
            vec![("processor", id.to_string())],
        );
        tracing::info!(
            processor = id,
            hard_limit_mib = hard / MIB,
            soft_limit_mib = soft / MIB,
            items = noun,
            "memory limiter started"
        );
        let check = move |over: &AtomicBool,
                          last: &AtomicU64,
                          probe: &dyn Fn() -> Option<u64>,
                          id: &str| {
            if let Some(rss) = probe() {
                last.store(rss, Ordering::Relaxed);
                let now_over = rss > soft;
                let was = over.swap(now_over, Ordering::Relaxed);
                if now_over && !was {
                    tracing::warn!(
                        processor = id,
                        rss_mib = rss / MIB,
                        soft_limit_mib = soft / MIB,
                        "memory above the soft limit; refusing data until it drops"
                    );
                } else if !now_over && was {
                    tracing::info!(
                        processor = id,
                        rss_mib = rss / MIB,
                        "memory back below the soft limit; accepting data"
                    );
                }
            }
        };
        check(&over, &last_rss, &*probe, id);
        {
            let (over, last, stop, id) =
                (over.clone(), last_rss.clone(), stop.clone(), id.to_string());
            let interval = config.check_interval;
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(interval);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = tick.tick() => check(&over, &last, &*probe, &id),
                        _ = stop.cancelled() => return,
                    }
                }
            });
        }
        Arc::new(MemoryLimiter {
            id: id.to_string(),
            next,
            over,
            soft_limit: soft,
            last_rss,
            retry_after: config.check_interval.max(Duration::from_secs(1)),
            refused,
            stop,
        })
    }
}

impl Consumer for MemoryLimiter {
    fn consume(&self, data: Telemetry) -> ConsumeFuture<'_> {
        if self.over.load(Ordering::Relaxed) {
            self.refused.add(data.item_count() as u64);
            let rss = self.last_rss.load(Ordering::Relaxed);
            let err = ConsumeError::Refused {
                reason: format!(
                    "memory limiter {}: process memory {} MiB is above the soft limit {} MiB",
                    self.id,
                    rss / MIB,
                    self.soft_limit / MIB
                ),
                retry_after: self.retry_after,
            };
            return Box::pin(async move { Err(err) });
        }
        self.next.consume(data)
    }
}

impl Shutdown for MemoryLimiter {
    fn shutdown(&self, _deadline: tokio::time::Instant) -> ShutdownFuture<'_> {
        self.stop.cancel();
        Box::pin(async {})
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_component;
    use std::sync::atomic::AtomicUsize;

    struct Count(AtomicUsize);
    impl Consumer for Count {
        fn consume(&self, _d: Telemetry) -> ConsumeFuture<'_> {
            self.0.fetch_add(1, Ordering::Relaxed);
            Box::pin(async { Ok(()) })
        }
    }

    #[test]
    fn limits_from_mib_and_percentage() {
        let c: MemoryLimiterConfig =
            parse_component(serde_yaml::from_str("check_interval: 1s\nlimit_mib: 100").unwrap())
                .unwrap();
        c.validate().unwrap();
        assert_eq!(c.limits(0), (100 * MIB, 80 * MIB));
        let c: MemoryLimiterConfig = parse_component(
            serde_yaml::from_str(
                "check_interval: 1s\nlimit_percentage: 50\nspike_limit_percentage: 10",
            )
            .unwrap(),
        )
        .unwrap();
        c.validate().unwrap();
        assert_eq!(c.limits(1000 * MIB), (500 * MIB, 400 * MIB));
    }

    #[test]
    fn validation_names_the_key() {
        let bad = |y: &str| {
            let c: MemoryLimiterConfig = parse_component(serde_yaml::from_str(y).unwrap()).unwrap();
            c.validate().unwrap_err()
        };
        assert_eq!(bad("limit_mib: 100").path, "check_interval");
        assert_eq!(bad("check_interval: 1s").path, "limit_mib");
        assert_eq!(
            bad("check_interval: 1s\nlimit_mib: 100\nspike_limit_mib: 100").path,
            "spike_limit_mib"
        );
        let e = parse_component::<MemoryLimiterConfig>(
            serde_yaml::from_str("check_interval: 5x").unwrap(),
        )
        .unwrap_err();
        assert_eq!(e.path, "check_interval");
        assert!(e.message.contains("like `5s`"), "{e}");
    }

    #[tokio::test]
    async fn refuses_above_soft_limit_and_recovers() {
        let c: MemoryLimiterConfig =
            parse_component(serde_yaml::from_str("check_interval: 10ms\nlimit_mib: 100").unwrap())
                .unwrap();
        let rss = Arc::new(AtomicU64::new(90 * MIB));
        let probe_rss = rss.clone();
        let next = Arc::new(Count(AtomicUsize::new(0)));
        let ctx = StartContext::new("memory_limiter", CancellationToken::new());
        let m = MemoryLimiter::with_probe(
            "memory_limiter",
            &c,
            Signal::Traces,
            next.clone(),
            &ctx,
            100 * MIB,
            80 * MIB,
            Arc::new(move || Some(probe_rss.load(Ordering::Relaxed))),
        );
        let data = Telemetry::Traces(Default::default());
        let e = m.consume(data.clone()).await.unwrap_err();
        assert!(e.is_retryable());
        assert!(e.to_string().contains("above the soft limit"), "{e}");
        rss.store(10 * MIB, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(100)).await;
        m.consume(data).await.unwrap();
        assert_eq!(next.0.load(Ordering::Relaxed), 1);
        m.shutdown(tokio::time::Instant::now()).await;
    }
}
