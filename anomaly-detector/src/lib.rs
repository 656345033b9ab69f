//! Holt-Winters anomaly detection over Prometheus series.
//!
//! `model` holds the per-series detectors (pure, no I/O); `backtest` replays CSV series through
//! them. The live service: `config` (YAML + env overrides), `prometheus` (query client with
//! retries), `engine` (per-detection schedule and series tracking), `alert` (Alertmanager and
//! signed webhooks), `state` + `metrics` + `api` (what `/metrics` and the HTTP API serve),
//! `telemetry` (logs, OTLP traces) and `service` (assembly and graceful shutdown).
//!
//! Tests: `cargo test -p anomaly-detector` (unit tests beside the code, integration tests in
//! `tests/`; the live ones need `prometheus` and `prometheus-alertmanager`: `make deps`).

pub mod alert;
pub mod api;
pub mod backtest;
pub mod config;
pub mod engine;
pub mod history;
pub mod insights;
pub mod metrics;
pub mod model;
pub mod prometheus;
pub mod retry;
pub mod service;
pub mod slo;
pub mod state;
pub mod telemetry;
