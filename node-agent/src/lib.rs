//! node-agent: host and top-N process metrics from /proc and /sys, named by the
//! OpenTelemetry semantic conventions, exported over OTLP (gRPC or HTTP).
//!
//! Modules: [`config`] (YAML + `OTEL_*` env), [`parse`] (pure /proc parsers),
//! [`host`] and [`process`] (scrapers), [`metrics`] (OTLP message building),
//! [`resource`], [`export`] (retry + bounded buffer), [`agent`] (schedule), [`health`]
//! (`/health` for probes).
//! Tests: `cargo test -p node-agent` (unit tests on `testdata/` fixtures, and integration
//! tests in `tests/` against a real node_exporter and an in-process OTLP gRPC server).

pub mod agent;
pub mod config;
pub mod export;
pub mod health;
pub mod host;
pub mod metrics;
pub mod parse;
pub mod process;
pub mod resource;
