//! The service: starts the own-metrics server and extensions, then the configured graph
//! (exporters, processors, receivers in that order), and shuts everything down in reverse
//! with a drain deadline.
//!
//! Tests: `tests/core_*.rs` (signals and exit codes against the real binary).

use super::graph::{self, Graph, GraphError};
use super::{Shutdown, StartContext};
use crate::config::Config;
use crate::extension;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How long shutdown may take to drain receivers, batches and exporter queues.
pub const SHUTDOWN_DRAIN_DEADLINE: Duration = Duration::from_secs(10);

/// How long extensions and the metrics server get to stop after the pipelines drained.
const EXTENSION_STOP_DEADLINE: Duration = Duration::from_secs(2);

/// A running collector.
pub struct Service {
    graph: Graph,
    /// Extensions in start order (the metrics server first).
    extensions: Vec<(String, Arc<dyn Shutdown>)>,
    cancel: CancellationToken,
    ctx: StartContext,
    /// Own-metrics server address, when enabled.
    pub metrics_addr: Option<SocketAddr>,
}

async fn stop_all(list: &[(String, Arc<dyn Shutdown>)]) {
    let deadline = tokio::time::Instant::now() + EXTENSION_STOP_DEADLINE;
    for (id, e) in list.iter().rev() {
        tracing::debug!(extension = %id, "stopping extension");
        e.shutdown(deadline).await;
    }
}

impl Service {
    /// Starts every component of `config`.
    ///
    /// # Errors
    /// The first component that failed to start; those started before it are stopped.
    pub async fn start(config: &Config) -> Result<Service, GraphError> {
        let cancel = CancellationToken::new();
        let auth = extension::auth::Authenticators::start(
            config
                .service
                .extensions
                .iter()
                .filter_map(|id| Some((id.as_str(), config.extensions.get(id)?.as_auth()?))),
            &cancel,
        );
        let auth = match auth {
            Ok(a) => a,
            Err(e) => {
                cancel.cancel();
                return Err(e.into());
            }
        };
        let storage = config
            .service
            .extensions
            .iter()
            .filter_map(|id| Some((id.clone(), config.extensions.get(id)?.as_storage()?.clone())))
            .collect();
        let ctx = StartContext::new("service", cancel.clone())
            .with_auth(auth)
            .with_storage(storage);
        let mut extensions: Vec<(String, Arc<dyn Shutdown>)> = Vec::new();
        let mut metrics_addr = None;
        let started: Result<Graph, GraphError> = async {
            if let Some(addr) = config.service.telemetry.metrics_address() {
                let m = extension::metrics_server::start(&addr).await?;
                tracing::info!(address = %m.local_addr, "own metrics served on /metrics");
                metrics_addr = Some(m.local_addr);
                extensions.push(("service.telemetry.metrics".into(), m.lifecycle));
            }
            for id in &config.service.extensions {
                let e =
                    extension::start(id, &config.extensions[id], &ctx.for_component(id.clone()))
                        .await?;
                let Some(e) = e else {
                    tracing::info!(extension = %id, "authenticator started");
                    continue;
                };
                tracing::info!(extension = %id, address = %e.local_addr, "extension started");
                extensions.push((id.clone(), e.lifecycle));
            }
            graph::build(config, &ctx).await
        }
        .await;
        match started {
            Ok(graph) => {
                ctx.health.set_ready();
                Ok(Service {
                    graph,
                    extensions,
                    cancel,
                    ctx,
                    metrics_addr,
                })
            }
            Err(e) => {
                cancel.cancel();
                stop_all(&extensions).await;
                Err(e)
            }
        }
    }

    /// The receivers' bound addresses (`receiver id`, transport, address).
    pub fn bound_addresses(&self) -> Vec<(String, &'static str, SocketAddr)> {
        self.graph
            .receivers
            .iter()
            .flat_map(|(id, r)| r.bound.iter().map(move |(t, a)| (id.clone(), *t, *a)))
            .collect()
    }

    /// Stops receivers, drains processors and exporters within [`SHUTDOWN_DRAIN_DEADLINE`],
    /// then stops extensions.
    pub async fn shutdown(self) {
        self.ctx.health.set_shutting_down();
        let deadline = tokio::time::Instant::now() + SHUTDOWN_DRAIN_DEADLINE;
        self.graph.shutdown(deadline).await;
        stop_all(&self.extensions).await;
        self.cancel.cancel();
    }
}
