//! Holt-Winters anomaly detection over Prometheus series.
//!
//! `model` holds the per-series detectors (pure, no I/O); `backtest` replays CSV series through
//! them; the live service (config, scheduler, Prometheus client, alerting, HTTP API) lives in the
//! other modules.

pub mod backtest;
pub mod model;
