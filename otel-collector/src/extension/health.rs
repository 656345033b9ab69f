//! [`HealthState`]: the collector's readiness as the `health_check` extension reports it.
//!
//! The service moves the phase (starting → ready → shutting down); exporters report when their
//! sending queue is full and when it has room again. The collector is healthy only when it is
//! ready and no exporter queue is full.
//!
//! Tests: `cargo test -p otel-collector extension::health`.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

/// The service's lifecycle phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Components are being started; not ready for traffic.
    Starting = 0,
    /// Every component started.
    Ready = 1,
    /// Shutdown began; receivers stop accepting.
    ShuttingDown = 2,
}

/// A shared, cheap-to-clone handle on the collector's health.
#[derive(Clone, Debug)]
pub struct HealthState {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    phase: AtomicU8,
    /// Number of exporters whose queue is full right now (fast path for the probe).
    full_count: AtomicUsize,
    /// Their ids, for the probe's message. Only touched on transitions, never across an await.
    full_ids: Mutex<BTreeSet<String>>,
    started: Instant,
    started_wall: SystemTime,
}

impl Default for HealthState {
    fn default() -> Self {
        HealthState::new()
    }
}

/// A snapshot of the health for the probe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthReport {
    /// True when the collector accepts and forwards data normally.
    pub healthy: bool,
    /// The lifecycle phase.
    pub phase: Phase,
    /// Exporters whose sending queue is full.
    pub full_queues: Vec<String>,
}

impl HealthState {
    /// A new state in phase [`Phase::Starting`].
    pub fn new() -> Self {
        HealthState {
            inner: Arc::new(Inner {
                phase: AtomicU8::new(Phase::Starting as u8),
                full_count: AtomicUsize::new(0),
                full_ids: Mutex::new(BTreeSet::new()),
                started: Instant::now(),
                started_wall: SystemTime::now(),
            }),
        }
    }

    /// Sets the lifecycle phase.
    pub fn set_phase(&self, phase: Phase) {
        self.inner.phase.store(phase as u8, Ordering::Release);
    }

    /// Marks the service ready (all components started).
    pub fn set_ready(&self) {
        self.set_phase(Phase::Ready);
    }

    /// Marks the service as shutting down.
    pub fn set_shutting_down(&self) {
        self.set_phase(Phase::ShuttingDown);
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        match self.inner.phase.load(Ordering::Acquire) {
            0 => Phase::Starting,
            1 => Phase::Ready,
            _ => Phase::ShuttingDown,
        }
    }

    fn ids(&self) -> std::sync::MutexGuard<'_, BTreeSet<String>> {
        self.inner
            .full_ids
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Exporter `id` found its queue full (idempotent).
    pub fn queue_full(&self, id: &str) {
        let mut ids = self.ids();
        if ids.insert(id.to_string()) {
            self.inner.full_count.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// Exporter `id`'s queue has room again (idempotent).
    pub fn queue_recovered(&self, id: &str) {
        let mut ids = self.ids();
        if ids.remove(id) {
            self.inner.full_count.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// True when ready and no exporter queue is full.
    pub fn is_healthy(&self) -> bool {
        self.phase() == Phase::Ready && self.inner.full_count.load(Ordering::Acquire) == 0
    }

    /// A snapshot for the probe.
    pub fn report(&self) -> HealthReport {
        let full_queues: Vec<String> = if self.inner.full_count.load(Ordering::Acquire) == 0 {
            Vec::new()
        } else {
            self.ids().iter().cloned().collect()
        };
        let phase = self.phase();
        HealthReport {
            healthy: phase == Phase::Ready && full_queues.is_empty(),
            phase,
            full_queues,
        }
    }

    /// Time since this state was created (the service start).
    pub fn uptime(&self) -> std::time::Duration {
        self.inner.started.elapsed()
    }

    /// Wall-clock time the service started.
    pub fn started_at(&self) -> SystemTime {
        self.inner.started_wall
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn healthy_only_when_ready_and_no_queue_full() {
        let h = HealthState::new();
        assert!(!h.is_healthy(), "starting is not healthy");
        h.set_ready();
        assert!(h.is_healthy());
        h.queue_full("otlp/a");
        h.queue_full("otlp/a");
        assert!(!h.is_healthy());
        assert_eq!(h.report().full_queues, vec!["otlp/a".to_string()]);
        h.queue_recovered("otlp/a");
        assert!(h.is_healthy());
        h.queue_recovered("otlp/a");
        assert!(h.is_healthy(), "double recovery must not underflow");
        h.set_shutting_down();
        assert!(!h.is_healthy());
        assert_eq!(h.report().phase, Phase::ShuttingDown);
    }
}
