//! Processors: stages between a pipeline's receivers and its exporters, applied in the order the
//! pipeline lists them. Each pipeline gets its own instance of every processor it lists (as
//! upstream); a processor wraps the next [`SharedConsumer`] into a new one.
//!
//! Implemented: `batch`, `memory_limiter`, `resource`, `attributes`, `filter` (legacy
//! include/exclude form; OTTL conditions are refused with a clear error), `probabilistic_sampler`,
//! `tail_sampling`.
//!
//! Tests: `cargo test -p otel-collector processor::`.

pub mod attributes;
pub mod batch;
pub mod filter;
pub mod memory_limiter;
pub mod probabilistic_sampler;
pub mod tail_sampling;
pub(crate) mod walk;

use crate::config::{parse_component, ComponentConfigError, ComponentKind};
use crate::pipeline::{SharedConsumer, Shutdown, Signal, StartContext};
use std::sync::Arc;

/// Typed config of one processor, chosen by its type.
#[derive(Debug, Clone)]
pub enum ProcessorConfig {
    /// `batch`.
    Batch(batch::BatchConfig),
    /// `memory_limiter`.
    MemoryLimiter(memory_limiter::MemoryLimiterConfig),
    /// `resource`: actions on resource attributes.
    Resource(attributes::ResourceConfig),
    /// `attributes`: actions on span, log record and data point attributes.
    Attributes(attributes::AttributesConfig),
    /// `filter`: drop spans, metrics, log records by name or attribute.
    Filter(Box<filter::FilterConfig>),
    /// `probabilistic_sampler`: keep a share of traces by trace id.
    ProbabilisticSampler(probabilistic_sampler::ProbabilisticSamplerConfig),
    /// `tail_sampling`: decide on whole traces after `decision_wait`.
    TailSampling(Box<tail_sampling::TailSamplingConfig>),
}

impl ProcessorConfig {
    /// Every processor type implemented.
    pub const KINDS: &'static [&'static str] = &[
        "attributes",
        "batch",
        "filter",
        "memory_limiter",
        "probabilistic_sampler",
        "resource",
        "tail_sampling",
    ];
}

impl ComponentKind for ProcessorConfig {
    const SECTION: &'static str = "processors";
    fn kinds() -> &'static [&'static str] {
        Self::KINDS
    }
    fn parse_kind(kind: &str, value: serde_yaml::Value) -> Result<Self, ComponentConfigError> {
        Ok(match kind {
            "batch" => ProcessorConfig::Batch(parse_component(value)?),
            "memory_limiter" => ProcessorConfig::MemoryLimiter(parse_component(value)?),
            "resource" => ProcessorConfig::Resource(parse_component(value)?),
            "attributes" => ProcessorConfig::Attributes(parse_component(value)?),
            "filter" => ProcessorConfig::Filter(Box::new(filter::FilterConfig::parse(value)?)),
            "probabilistic_sampler" => {
                ProcessorConfig::ProbabilisticSampler(parse_component(value)?)
            }
            "tail_sampling" => ProcessorConfig::TailSampling(Box::new(parse_component(value)?)),
            other => {
                return Err(ComponentConfigError::new(
                    "",
                    format!("unknown processor type `{other}`"),
                ))
            }
        })
    }
    fn check(&self) -> Result<(), ComponentConfigError> {
        match self {
            ProcessorConfig::Batch(c) => c.validate(),
            ProcessorConfig::MemoryLimiter(c) => c.validate(),
            ProcessorConfig::Resource(c) => c.validate(),
            ProcessorConfig::Attributes(c) => c.validate(),
            ProcessorConfig::Filter(c) => c.validate(),
            ProcessorConfig::ProbabilisticSampler(c) => c.validate(),
            ProcessorConfig::TailSampling(c) => c.validate(),
        }
    }
}

/// A built processor: the consumer to feed, and its lifecycle if it holds tasks or data.
pub struct BuiltProcessor {
    /// Feed this.
    pub consumer: SharedConsumer,
    /// Stop/flush handle, for processors that buffer (batch) or run tasks (memory_limiter).
    pub lifecycle: Option<Arc<dyn Shutdown>>,
}

/// Builds processor `id` for a pipeline of `signal`, feeding `next`.
pub fn build(
    id: &str,
    config: &ProcessorConfig,
    signal: Signal,
    next: SharedConsumer,
    ctx: &StartContext,
) -> BuiltProcessor {
    match config {
        ProcessorConfig::Batch(c) => {
            let b = batch::BatchProcessor::start(id, c, signal, next, ctx);
            BuiltProcessor {
                consumer: b.clone(),
                lifecycle: Some(b),
            }
        }
        ProcessorConfig::MemoryLimiter(c) => {
            let m = memory_limiter::MemoryLimiter::start(id, c, signal, next, ctx);
            BuiltProcessor {
                consumer: m.clone(),
                lifecycle: Some(m),
            }
        }
        ProcessorConfig::Resource(c) => BuiltProcessor {
            consumer: Arc::new(attributes::ResourceProcessor::new(c, next)),
            lifecycle: None,
        },
        ProcessorConfig::Attributes(c) => BuiltProcessor {
            consumer: Arc::new(attributes::AttributesProcessor::new(c, next)),
            lifecycle: None,
        },
        ProcessorConfig::Filter(c) => BuiltProcessor {
            consumer: Arc::new(filter::FilterProcessor::new(id, c, signal, next)),
            lifecycle: None,
        },
        ProcessorConfig::ProbabilisticSampler(c) => BuiltProcessor {
            consumer: Arc::new(probabilistic_sampler::ProbabilisticSampler::new(
                id, c, signal, next,
            )),
            lifecycle: None,
        },
        ProcessorConfig::TailSampling(c) if signal == Signal::Traces => {
            match tail_sampling::TailSampler::start(id, c, next.clone(), ctx) {
                Ok(t) => BuiltProcessor {
                    consumer: t.clone(),
                    lifecycle: Some(t),
                },
                Err(e) => {
                    // Unreachable after `validate`; keep the data flowing rather than panic.
                    tracing::error!(processor = id, error = %e, "tail_sampling did not start; passing spans unsampled");
                    BuiltProcessor {
                        consumer: next,
                        lifecycle: None,
                    }
                }
            }
        }
        // Upstream's tail_sampling is traces-only; in another pipeline it passes data on.
        ProcessorConfig::TailSampling(_) => BuiltProcessor {
            consumer: next,
            lifecycle: None,
        },
    }
}
