//! The `service` section: enabled extensions, pipelines, and the collector's own telemetry.

use super::Problem;
use serde::{Deserialize, Serialize};
use serde_yaml::Value;
use std::collections::BTreeMap;

/// `service`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    /// Extension ids to start, in order.
    #[serde(default)]
    pub extensions: Vec<String>,
    /// Pipelines by name (`traces`, `traces/tempo`).
    #[serde(default)]
    pub pipelines: BTreeMap<String, PipelineConfig>,
    /// The collector's own logs and metrics.
    #[serde(default)]
    pub telemetry: TelemetryConfig,
}

/// `service.pipelines.<signal>[/<name>]`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    /// Receiver (or connector) ids feeding the pipeline.
    #[serde(default)]
    pub receivers: Vec<String>,
    /// Processor ids, applied in order.
    #[serde(default)]
    pub processors: Vec<String>,
    /// Exporter (or connector) ids the pipeline fans out to.
    #[serde(default)]
    pub exporters: Vec<String>,
}

/// `service.telemetry`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    /// `service.telemetry.logs`.
    #[serde(default)]
    pub logs: TelemetryLogs,
    /// `service.telemetry.metrics`.
    #[serde(default)]
    pub metrics: TelemetryMetrics,
    /// Resource attributes of the collector's own telemetry (accepted for compatibility; the
    /// Prometheus endpoint does not show them).
    #[serde(default)]
    pub resource: BTreeMap<String, Value>,
}

/// `service.telemetry.logs`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryLogs {
    /// `debug`, `info`, `warn` or `error`; used when `RUST_LOG` is not set.
    #[serde(default)]
    pub level: Option<LogLevel>,
    /// `console` or `json`; used when `LOG_FORMAT` is not set.
    #[serde(default)]
    pub encoding: Option<LogEncoding>,
}

/// A log level.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    /// Debug.
    Debug,
    /// Info.
    Info,
    /// Warn.
    Warn,
    /// Error.
    Error,
}

impl LogLevel {
    /// The `tracing` filter directive.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }
}

/// Log encoding.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogEncoding {
    /// Human-readable lines.
    Console,
    /// One JSON object per line.
    Json,
}

/// `service.telemetry.metrics`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryMetrics {
    /// `none` turns the own-metrics endpoint off; `basic`, `normal`, `detailed` keep it on.
    #[serde(default)]
    pub level: MetricsLevel,
    /// Listen address of the `/metrics` endpoint (upstream's older form), `host:port`.
    #[serde(default)]
    pub address: Option<String>,
    /// Upstream's newer form: `- pull: {exporter: {prometheus: {host: H, port: P}}}`.
    #[serde(default)]
    pub readers: Vec<Value>,
}

/// How much the collector reports about itself.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum MetricsLevel {
    /// No own-metrics endpoint.
    None,
    /// Basic.
    Basic,
    /// Normal (default).
    #[default]
    Normal,
    /// Detailed.
    Detailed,
}

/// Where the own-metrics endpoint listens when nothing is configured (docs/collector.md "Self-metrics": 8888, loopback).
pub const DEFAULT_METRICS_ADDRESS: &str = "127.0.0.1:8888";

impl TelemetryConfig {
    /// The own-metrics listen address, or `None` when `level: none`.
    pub fn metrics_address(&self) -> Option<String> {
        if self.metrics.level == MetricsLevel::None {
            return None;
        }
        if let Some(a) = &self.metrics.address {
            return Some(a.clone());
        }
        for r in &self.metrics.readers {
            let p = &r["pull"]["exporter"]["prometheus"];
            if let (Some(host), Some(port)) = (p["host"].as_str(), p["port"].as_u64()) {
                let host = if host.contains(':') {
                    format!("[{host}]")
                } else {
                    host.to_string()
                };
                return Some(format!("{host}:{port}"));
            }
        }
        Some(DEFAULT_METRICS_ADDRESS.to_string())
    }

    pub(super) fn check(&self) -> Result<(), Problem> {
        for (i, r) in self.metrics.readers.iter().enumerate() {
            let p = &r["pull"]["exporter"]["prometheus"];
            if p.as_mapping().is_none() {
                return Err(Problem {
                    path: format!("service.telemetry.metrics.readers[{i}]"),
                    message: "only a pull reader with a prometheus exporter is supported: `- pull: {exporter: {prometheus: {host: 127.0.0.1, port: 8888}}}`".into(),
                });
            }
            if p["host"].as_str().is_none() || p["port"].as_u64().is_none_or(|v| v > 65535) {
                return Err(Problem {
                    path: format!(
                        "service.telemetry.metrics.readers[{i}].pull.exporter.prometheus"
                    ),
                    message: "needs `host` (a string) and `port` (0-65535)".into(),
                });
            }
        }
        if let Some(a) = &self.metrics.address {
            super::endpoint::parse_host_port(a).map_err(|m| Problem {
                path: "service.telemetry.metrics.address".into(),
                message: m,
            })?;
        }
        Ok(())
    }
}
