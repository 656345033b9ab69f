//! Assembly of the configured graph: exporters (each id once), pipelines (processors in order
//! in front of a fan-out to the pipeline's exporters and connectors), and receivers (each id
//! once, fanning out per signal to every pipeline that lists it).
//!
//! A connector is the exporter of one pipeline and a receiver of others: its consumer is the
//! fan-out of the pipelines listing it as a receiver, so pipelines are built downstream-first
//! (the config loader has already rejected cycles).
//!
//! Tests: `cargo test -p otel-collector pipeline::graph` and `tests/core_*.rs`.

use super::fanout::FanOut;
use super::{SharedConsumer, Shutdown, Signal, StartContext};
use crate::config::{pipeline_signal, Config};
use crate::connector::{Observe, Observed};
use crate::exporter;
use crate::processor;
use crate::receiver::{self, RunningReceiver, SignalConsumers};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Why the graph could not be started.
#[derive(Debug, thiserror::Error)]
pub enum GraphError {
    /// An exporter failed to start.
    #[error(transparent)]
    Exporter(#[from] exporter::ExporterError),
    /// A receiver failed to start.
    #[error(transparent)]
    Receiver(#[from] receiver::ReceiverError),
    /// An extension (or the own-metrics server) failed to start.
    #[error(transparent)]
    Extension(#[from] crate::extension::ExtensionError),
    /// An authenticator extension failed to start.
    #[error(transparent)]
    Auth(#[from] crate::extension::auth::AuthStartError),
}

/// The started components, in start order.
pub struct Graph {
    /// Receivers by id.
    pub receivers: Vec<(String, Arc<RunningReceiver>)>,
    /// Processor and connector lifecycles, downstream pipelines first, each pipeline's last
    /// processor first; shut down in reverse.
    pub processors: Vec<(String, Arc<dyn Shutdown>)>,
    /// Exporter lifecycles by id.
    pub exporters: Vec<(String, Arc<dyn Shutdown>)>,
}

struct Builder<'a> {
    config: &'a Config,
    ctx: &'a StartContext,
    exporters: BTreeMap<String, SharedConsumer>,
    entries: BTreeMap<String, SharedConsumer>,
    connectors: BTreeMap<String, (SharedConsumer, Option<Arc<dyn Observe>>)>,
    processors: Vec<(String, Arc<dyn Shutdown>)>,
}

impl Builder<'_> {
    /// The consumer at the head of pipeline `name`, building it (and what it feeds) once.
    fn entry(&mut self, name: &str) -> SharedConsumer {
        if let Some(c) = self.entries.get(name) {
            return c.clone();
        }
        let config = self.config;
        let p = &config.service.pipelines[name];
        let signal = pipeline_signal(name).unwrap_or(Signal::Traces);
        let mut outs = Vec::with_capacity(p.exporters.len());
        let mut observers: Vec<Arc<dyn Observe>> = Vec::new();
        for id in &p.exporters {
            if let Some(c) = self.exporters.get(id) {
                outs.push((c.clone(), persistent_exporter(config, id)));
            } else if let Some(conn) = config.connectors.get(id) {
                // One instance per connector and input signal, shared by every pipeline
                // exporting to it (as upstream), so a trace → metrics aggregate is not split.
                let built_key = format!("{id}\0{signal}");
                if let Some((c, o)) = self.connectors.get(&built_key) {
                    match o {
                        Some(o) => observers.push(o.clone()),
                        None => outs.push((c.clone(), false)),
                    }
                    continue;
                }
                let targets: Vec<String> = config
                    .pipelines_receiving_from(id)
                    .filter(|(n, _)| pipeline_signal(n).is_ok_and(|to| conn.supports(signal, to)))
                    .map(|(n, _)| n.clone())
                    .collect();
                let heads: Vec<SharedConsumer> = targets.iter().map(|n| self.entry(n)).collect();
                let cctx = self.ctx.for_component(id.clone());
                let built = conn.build(id, signal, FanOut::build(heads), &cctx);
                if let Some(l) = built.lifecycle {
                    // After the pipelines it feeds, before the ones feeding it: shut down
                    // (in reverse) after its senders drained and before its receivers drain.
                    self.processors.push((format!("connector/{id}"), l));
                }
                self.connectors
                    .insert(built_key, (built.consumer.clone(), built.observer.clone()));
                match built.observer {
                    Some(o) => observers.push(o),
                    None => outs.push((built.consumer, false)),
                }
            }
        }
        // Connectors that only read see each batch by reference before the fan-out.
        let mut head = Observed::build(observers, FanOut::build_decisive(outs));
        // A pipeline feeding a persistent queue must not acknowledge data held in memory.
        let durable = durable_pipeline(config, name);
        for id in p.processors.iter().rev() {
            let pctx = self
                .ctx
                .for_component(id.clone())
                .with_durable_acks(durable);
            let built = processor::build(id, &config.processors[id], signal, head, &pctx);
            if let Some(l) = built.lifecycle {
                self.processors.push((format!("{name}/{id}"), l));
            }
            head = built.consumer;
        }
        self.entries.insert(name.to_string(), head.clone());
        head
    }
}

/// True when exporter `id` keeps its queue on disk (`sending_queue.storage`).
fn persistent_exporter(config: &Config, id: &str) -> bool {
    config
        .exporters
        .get(id)
        .is_some_and(|e| e.storage().is_some())
}

/// True when pipeline `name` exports to a persistent queue: it acknowledges only durable data,
/// and a receiver feeding it answers its refusal even when other pipelines took the batch.
fn durable_pipeline(config: &Config, name: &str) -> bool {
    config.service.pipelines[name]
        .exporters
        .iter()
        .any(|id| persistent_exporter(config, id))
}

/// Starts exporters, builds the pipelines, then starts receivers.
///
/// # Errors
/// The first component that failed to start (already-started ones are shut down by the caller
/// dropping the cancellation token).
pub async fn build(config: &Config, ctx: &StartContext) -> Result<Graph, GraphError> {
    let mut exporter_lifecycles = Vec::new();
    let mut exporters = BTreeMap::new();
    for (id, c) in &config.exporters {
        let used = config
            .service
            .pipelines
            .values()
            .any(|p| p.exporters.contains(id));
        if !used {
            continue;
        }
        let running = exporter::start(id, c, &ctx.for_component(id.clone())).await?;
        tracing::debug!(exporter = %id, "exporter started");
        exporters.insert(id.clone(), running.consumer);
        exporter_lifecycles.push((id.clone(), running.lifecycle));
    }
    let mut b = Builder {
        config,
        ctx,
        exporters,
        entries: BTreeMap::new(),
        connectors: BTreeMap::new(),
        processors: Vec::new(),
    };
    let names: Vec<String> = config.service.pipelines.keys().cloned().collect();
    for n in &names {
        b.entry(n);
    }
    let mut receivers = Vec::new();
    for (id, rc) in &config.receivers {
        let mut consumers = SignalConsumers::default();
        for signal in Signal::ALL {
            let heads: Vec<(SharedConsumer, bool)> = config
                .pipelines_receiving_from(id)
                .filter(|(n, _)| pipeline_signal(n) == Ok(signal))
                .map(|(n, _)| n.clone())
                .collect::<Vec<_>>()
                .iter()
                .map(|n| (b.entry(n), durable_pipeline(config, n)))
                .collect();
            if !heads.is_empty() {
                consumers.set(signal, FanOut::build_decisive(heads));
            }
        }
        let r = receiver::start(id, rc, consumers, &ctx.for_component(id.clone())).await?;
        receivers.push((id.clone(), r));
    }
    Ok(Graph {
        receivers,
        processors: b.processors,
        exporters: exporter_lifecycles,
    })
}

impl Graph {
    /// Stops receivers, then drains processors upstream-first, then exporters, by `deadline`.
    pub async fn shutdown(&self, deadline: tokio::time::Instant) {
        for (id, r) in &self.receivers {
            tracing::debug!(receiver = %id, "stopping receiver");
            r.shutdown(deadline).await;
        }
        for (id, p) in self.processors.iter().rev() {
            tracing::debug!(processor = %id, "draining processor");
            p.shutdown(deadline).await;
        }
        for (id, e) in &self.exporters {
            tracing::debug!(exporter = %id, "draining exporter");
            e.shutdown(deadline).await;
        }
    }
}
