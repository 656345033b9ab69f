//! An OpenTelemetry collector: OTLP in, processors, fan-out to exporters.
//!
//! Layout (one module per component kind, as in the upstream collector):
//! - [`config`]: the otelcol YAML format, env substitution, validation with key paths;
//! - [`pipeline`]: the data type that flows ([`pipeline::Telemetry`]), the [`pipeline::Consumer`]
//!   trait every stage implements, fan-out, and assembly of the configured graph;
//! - [`receiver`], [`processor`], [`exporter`], [`connector`], [`extension`]: the components;
//! - [`telemetry`]: the collector's own metrics (`otelcol_*`) served on :8888;
//! - [`translate`]: OTLP metrics → Prometheus series (used by the Prometheus exporters);
//! - [`fuzzing`]: the entry points of the fuzz targets and of their stable replay test.

pub mod config;
pub mod connector;
pub mod exporter;
pub mod extension;
pub mod fuzzing;
pub mod pipeline;
pub mod processor;
pub mod receiver;
pub(crate) mod rpc;
pub mod telemetry;
pub mod translate;
