//! The demo shop: three small axum services (frontend, inventory, payment) instrumented with
//! `tracing` + OpenTelemetry, a fault injector, and the `loadgen` load generator's library part.
//!
//! One order is one trace across the three services: the frontend calls inventory and payment
//! over HTTP with a W3C `traceparent` header. See `docs/demo-app.md` for usage.
//!
//! Tests: `cargo test -p demo-app` (unit tests beside the code, handler tests in
//! `tests/handlers.rs`, OTLP export tests against an in-test OTLP gRPC receiver in `tests/otlp.rs`).

pub mod config;
pub mod faults;
pub mod front;
pub mod http;
pub mod inventory;
pub mod loadgen;
pub mod metrics;
pub mod otlp_runtime;
pub mod payment;
pub mod sampler;
pub mod server;
pub mod telemetry;

pub use config::Service;
