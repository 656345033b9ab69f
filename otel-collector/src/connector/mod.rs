//! Connectors: components that are an exporter of one pipeline and a receiver of another.
//!
//! Implemented: `forward` (passes data unchanged from pipelines of one signal to pipelines of
//! the same signal — for example one `traces/in` pipeline feeding `traces/tempo` and
//! `traces/file` with different processors). The graph builder ([`crate::pipeline::graph`])
//! wires a connector's consumer as a fan-out to every pipeline that lists it as a receiver, so
//! span-to-metric connectors (spanmetrics, servicegraph) can be added later as new variants
//! whose consumer converts before fanning out.
//!
//! Tests: `cargo test -p otel-collector connector` and `config::tests`.

use crate::config::{parse_component, ComponentConfigError, ComponentKind};
use crate::pipeline::{SharedConsumer, Signal};
use serde::{Deserialize, Serialize};

/// `connectors.forward`: no settings.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardConfig {}

/// Typed config of one connector.
#[derive(Debug, Clone)]
pub enum ConnectorConfig {
    /// `forward`.
    Forward(ForwardConfig),
}

impl ConnectorConfig {
    /// Every connector type implemented.
    pub const KINDS: &'static [&'static str] = &["forward"];

    /// True when this connector can take `from` (as an exporter) and emit `to` (as a receiver).
    pub fn supports(&self, from: Signal, to: Signal) -> bool {
        match self {
            ConnectorConfig::Forward(_) => from == to,
        }
    }

    /// Which signals it connects, for error messages.
    pub fn describe(&self) -> &'static str {
        match self {
            ConnectorConfig::Forward(_) => {
                "a signal to the same signal (traces→traces, metrics→metrics, logs→logs)"
            }
        }
    }

    /// The consumer a pipeline of signal `from` exports into: it feeds `targets`, the fan-out of
    /// the pipelines of signal `to` that list the connector as a receiver.
    pub fn consumer(&self, _from: Signal, targets: SharedConsumer) -> SharedConsumer {
        match self {
            ConnectorConfig::Forward(_) => targets,
        }
    }
}

impl ComponentKind for ConnectorConfig {
    const SECTION: &'static str = "connectors";
    fn kinds() -> &'static [&'static str] {
        Self::KINDS
    }
    fn parse_kind(kind: &str, value: serde_yaml::Value) -> Result<Self, ComponentConfigError> {
        match kind {
            "forward" => Ok(ConnectorConfig::Forward(parse_component(value)?)),
            other => Err(ComponentConfigError::new(
                "",
                format!("unknown connector type `{other}`"),
            )),
        }
    }
    fn check(&self) -> Result<(), ComponentConfigError> {
        Ok(())
    }
}
