//! The metric instruments: semconv HTTP server/client metrics and the shop's business metrics.
//! Instruments are built once per service from that service's `Meter` (so each carries its
//! service's resource) and cloned into handlers.
//!
//! Tests: exported values are checked end to end in `tests/otlp.rs`.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;

use opentelemetry::metrics::{Counter, Histogram, Meter, ObservableUpDownCounter};
use opentelemetry::KeyValue;

/// Bucket boundaries (seconds) the HTTP semantic conventions recommend for
/// `http.server.request.duration` and `http.client.request.duration`.
pub const HTTP_DURATION_BOUNDARIES: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

/// Bucket boundaries for `demo.order.value` (US dollars).
pub const ORDER_VALUE_BOUNDARIES: [f64; 10] = [
    5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0,
];

/// HTTP server instruments (semantic conventions v1.26+ names).
#[derive(Clone, Debug)]
pub struct HttpServerMetrics {
    /// `http.server.request.duration`, seconds; attributes `http.request.method`,
    /// `http.route`, `http.response.status_code`, `url.scheme`, `error.type` on 5xx.
    pub duration: Histogram<f64>,
    /// `http.server.active_requests`; attributes `http.request.method`, `url.scheme`.
    pub active: ActiveRequests,
}

impl HttpServerMetrics {
    /// Builds the instruments on `meter`.
    pub fn new(meter: &Meter) -> Self {
        HttpServerMetrics {
            duration: meter
                .f64_histogram("http.server.request.duration")
                .with_unit("s")
                .with_description("Duration of HTTP server requests.")
                .with_boundaries(HTTP_DURATION_BOUNDARIES.to_vec())
                .build(),
            active: ActiveRequests::new(meter),
        }
    }
}

/// The `http.request.method` values semconv allows, in the order of [`ActiveRequests`]' slots.
const METHODS: [&str; 10] = [
    "GET", "POST", "PUT", "DELETE", "HEAD", "PATCH", "OPTIONS", "CONNECT", "TRACE", "_OTHER",
];

/// `http.server.active_requests`: requests in flight per method, kept in atomics and reported
/// by an asynchronous up-down counter at each collection. The same data as a synchronous
/// up-down counter, without two SDK measurements (attribute hashing, a lock) per request; and a
/// request whose future is dropped mid-way (client gone) still leaves the count.
#[derive(Clone, Debug)]
pub struct ActiveRequests {
    slots: Arc<MethodSlots>,
    _instrument: Arc<ObservableUpDownCounter<i64>>,
}

/// Per method: requests in flight, and whether the method was ever seen.
#[derive(Debug, Default)]
struct MethodSlots {
    in_flight: [AtomicI64; METHODS.len()],
    seen: [AtomicBool; METHODS.len()],
}

impl ActiveRequests {
    /// Registers the instrument on `meter`. A method is reported once a request of it has
    /// started (then also at 0, as a synchronous up-down counter would), so methods never
    /// used make no series.
    pub fn new(meter: &Meter) -> Self {
        let slots = Arc::new(MethodSlots::default());
        let observed = slots.clone();
        let instrument = meter
            .i64_observable_up_down_counter("http.server.active_requests")
            .with_unit("{request}")
            .with_description("Number of active HTTP server requests.")
            .with_callback(move |obs| {
                for (i, method) in METHODS.iter().enumerate() {
                    if !observed.seen[i].load(Ordering::Relaxed) {
                        continue;
                    }
                    obs.observe(
                        observed.in_flight[i].load(Ordering::Relaxed),
                        &[
                            KeyValue::new("http.request.method", *method),
                            KeyValue::new("url.scheme", "http"),
                        ],
                    );
                }
            })
            .build();
        ActiveRequests {
            slots,
            _instrument: Arc::new(instrument),
        }
    }

    /// Counts one request of `method` (a semconv value, see [`crate::http::semconv_method`])
    /// until the returned guard is dropped.
    pub fn start(&self, method: &str) -> ActiveGuard {
        let slot = METHODS
            .iter()
            .position(|m| *m == method)
            .unwrap_or(METHODS.len() - 1);
        if !self.slots.seen[slot].load(Ordering::Relaxed) {
            self.slots.seen[slot].store(true, Ordering::Relaxed);
        }
        self.slots.in_flight[slot].fetch_add(1, Ordering::Relaxed);
        ActiveGuard {
            slots: self.slots.clone(),
            slot,
        }
    }

    /// Requests of `method` in flight now.
    pub fn current(&self, method: &str) -> i64 {
        METHODS
            .iter()
            .position(|m| *m == method)
            .map_or(0, |i| self.slots.in_flight[i].load(Ordering::Relaxed))
    }
}

/// One request in flight; leaving the count when dropped.
#[derive(Debug)]
pub struct ActiveGuard {
    slots: Arc<MethodSlots>,
    slot: usize,
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.slots.in_flight[self.slot].fetch_sub(1, Ordering::Relaxed);
    }
}

/// HTTP client instruments.
#[derive(Clone, Debug)]
pub struct HttpClientMetrics {
    /// `http.client.request.duration`, seconds; attributes `http.request.method`,
    /// `server.address`, `server.port`, `http.response.status_code`, `error.type`.
    pub duration: Histogram<f64>,
}

impl HttpClientMetrics {
    /// Builds the instruments on `meter`.
    pub fn new(meter: &Meter) -> Self {
        HttpClientMetrics {
            duration: meter
                .f64_histogram("http.client.request.duration")
                .with_unit("s")
                .with_description("Duration of HTTP client requests.")
                .with_boundaries(HTTP_DURATION_BOUNDARIES.to_vec())
                .build(),
        }
    }
}

/// Business metrics of the frontend.
#[derive(Clone, Debug)]
pub struct ShopMetrics {
    /// `demo.orders.created`: orders accepted (paid and reserved).
    pub orders_created: Counter<u64>,
    /// `demo.order.value`: value of accepted orders, US dollars.
    pub order_value: Histogram<f64>,
}

impl ShopMetrics {
    /// Builds the instruments on `meter`.
    pub fn new(meter: &Meter) -> Self {
        ShopMetrics {
            orders_created: meter
                .u64_counter("demo.orders.created")
                .with_unit("{order}")
                .with_description("Orders created (stock reserved and payment captured).")
                .build(),
            order_value: meter
                .f64_histogram("demo.order.value")
                .with_unit("USD")
                .with_description("Value of created orders.")
                .with_boundaries(ORDER_VALUE_BOUNDARIES.to_vec())
                .build(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn active_requests_count_until_the_guard_drops() {
        let meter = opentelemetry::global::meter("test");
        let active = ActiveRequests::new(&meter);
        let a = active.start("GET");
        let b = active.start("GET");
        let c = active.start("BREW");
        assert_eq!(active.current("GET"), 2);
        assert_eq!(active.current("_OTHER"), 1);
        drop(a);
        assert_eq!(active.current("GET"), 1);
        drop((b, c));
        assert_eq!(active.current("GET"), 0);
        assert_eq!(active.current("_OTHER"), 0);
    }
}
