//! Service identities and the simulated-latency knob shared by all services.
//!
//! Tests: `cargo test -p demo-app config`.

use std::time::Duration;

use rand::Rng;

/// One of the three demo services. Each has its own `service.name` resource attribute.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum Service {
    /// The public shop API (`/api/*`, `/admin/faults`), `service.name` = `demo-frontend`.
    Frontend,
    /// Stock keeping (`/inventory/*`), `service.name` = `demo-inventory`.
    Inventory,
    /// Payment authorisation and capture (`/payments/*`), `service.name` = `demo-payment`.
    Payment,
}

impl Service {
    /// All services, in start order (dependencies first).
    pub const ALL: [Service; 3] = [Service::Inventory, Service::Payment, Service::Frontend];

    /// The OpenTelemetry `service.name` of this service.
    pub fn service_name(self) -> &'static str {
        match self {
            Service::Frontend => "demo-frontend",
            Service::Inventory => "demo-inventory",
            Service::Payment => "demo-payment",
        }
    }

    /// Looks a service up by its `service.name`.
    pub fn from_service_name(name: &str) -> Option<Service> {
        Service::ALL.into_iter().find(|s| s.service_name() == name)
    }
}

/// Simulated work latency ("database", "card network"): `scale` multiplies every pause;
/// 0 disables them (used by tests and the overhead benchmark).
#[derive(Clone, Copy, Debug)]
pub struct SimLatency {
    scale: f64,
}

impl Default for SimLatency {
    fn default() -> Self {
        SimLatency { scale: 1.0 }
    }
}

impl SimLatency {
    /// A latency simulator; negative or non-finite scales count as 0.
    pub fn new(scale: f64) -> Self {
        let scale = if scale.is_finite() && scale > 0.0 {
            scale
        } else {
            0.0
        };
        SimLatency { scale }
    }

    /// No simulated latency at all.
    pub fn none() -> Self {
        SimLatency { scale: 0.0 }
    }

    /// The pause for a step that takes `base_ms` plus a uniform `0..jitter_ms`, scaled.
    pub fn sample(&self, base_ms: f64, jitter_ms: f64) -> Duration {
        if self.scale == 0.0 {
            return Duration::ZERO;
        }
        let jitter = if jitter_ms > 0.0 {
            rand::rng().random_range(0.0..jitter_ms)
        } else {
            0.0
        };
        Duration::from_secs_f64((base_ms + jitter) * self.scale / 1000.0)
    }

    /// Sleeps for [`SimLatency::sample`].
    pub async fn pause(&self, base_ms: f64, jitter_ms: f64) {
        let d = self.sample(base_ms, jitter_ms);
        if !d.is_zero() {
            tokio::time::sleep(d).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_names_round_trip() {
        for s in Service::ALL {
            assert_eq!(Service::from_service_name(s.service_name()), Some(s));
        }
        assert_eq!(Service::from_service_name("nope"), None);
    }

    #[test]
    fn sim_latency_scales_and_disables() {
        assert_eq!(SimLatency::none().sample(10.0, 5.0), Duration::ZERO);
        assert_eq!(SimLatency::new(-1.0).sample(10.0, 0.0), Duration::ZERO);
        let d = SimLatency::new(2.0).sample(10.0, 0.0);
        assert_eq!(d, Duration::from_millis(20));
        let d = SimLatency::new(1.0).sample(10.0, 5.0);
        assert!(d >= Duration::from_millis(10) && d < Duration::from_millis(15));
    }
}
