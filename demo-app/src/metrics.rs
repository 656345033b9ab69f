//! The metric instruments: semconv HTTP server/client metrics and the shop's business metrics.
//! Instruments are built once per service from that service's `Meter` (so each carries its
//! service's resource) and cloned into handlers.
//!
//! Tests: exported values are checked end to end in `tests/otlp.rs`.

use opentelemetry::metrics::{Counter, Histogram, Meter, UpDownCounter};

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
    pub active: UpDownCounter<i64>,
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
            active: meter
                .i64_up_down_counter("http.server.active_requests")
                .with_unit("{request}")
                .with_description("Number of active HTTP server requests.")
                .build(),
        }
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
