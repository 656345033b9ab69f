//! Exporters: where pipelines deliver data, and the registry that builds them from config.
//!
//! Kinds: `otlp` (gRPC), `otlphttp`, `debug`, `file`, `prometheus` (scrape endpoint) and
//! `prometheusremotewrite` (metrics only; see [`prometheus`], [`prometheusremotewrite`]) and
//! `loadbalancing` (OTLP gRPC to one of several downstreams by trace id, [`loadbalancing`]). The network exporters sit behind a bounded
//! `sending_queue` with `retry_on_failure` ([`queue`], [`retry`]); `file` has its own bounded
//! writer queue; `debug` logs synchronously. Every exporter counts `otelcol_exporter_*` items per
//! signal.
//!
//! The service parses each `exporters.<id>` value with [`ExporterConfig::parse`], checks it with
//! [`ExporterConfig::validate`], and starts each id once with [`start`]; every pipeline naming the
//! id feeds the same [`RunningExporter::consumer`].
//!
//! Tests: `cargo test -p otel-collector exporter` and `tests/export_*.rs`.

pub mod debug;
pub mod file;
pub mod loadbalancing;
pub mod otlp;
pub mod otlp_common;
pub mod otlphttp;
pub mod prometheus;
pub mod prometheusremotewrite;
pub mod queue;
pub mod retry;
pub mod wal;
pub mod wire_count;

use crate::config::ComponentConfigError;
use crate::pipeline::{SharedConsumer, Shutdown, Signal, StartContext};
use std::sync::Arc;

/// Typed config of one exporter, chosen by the component type (the part of the id before '/').
#[derive(Clone, Debug, PartialEq)]
pub enum ExporterConfig {
    /// `otlp`: OTLP over gRPC.
    Otlp(otlp::OtlpExporterConfig),
    /// `otlphttp`: OTLP over HTTP (protobuf or JSON).
    OtlpHttp(otlphttp::OtlpHttpExporterConfig),
    /// `debug`: logs what passes.
    Debug(debug::DebugExporterConfig),
    /// `file`: OTLP JSON lines into a file.
    File(file::FileExporterConfig),
    /// `prometheus`: scrape endpoint (metrics only).
    Prometheus(prometheus::PrometheusExporterConfig),
    /// `prometheusremotewrite`: Prometheus remote write (metrics only).
    PrometheusRemoteWrite(prometheusremotewrite::RemoteWriteConfig),
    /// `loadbalancing`: OTLP to one of several downstreams by trace id or service.
    LoadBalancing(Box<loadbalancing::LoadBalancingConfig>),
}

/// Why an exporter could not start.
#[derive(Debug, thiserror::Error)]
pub enum ExporterError {
    /// A setting that only fails when used (unreadable TLS file, ...).
    #[error("exporter {id}: {source}")]
    Config {
        /// Exporter id.
        id: String,
        /// What is wrong, with the key path.
        source: ComponentConfigError,
    },
    /// An I/O failure at start (cannot create the output file, ...).
    #[error("exporter {id}: {what}: {source}")]
    Io {
        /// Exporter id.
        id: String,
        /// What was attempted.
        what: String,
        /// The OS error.
        source: std::io::Error,
    },
}

/// A started exporter: the consumer pipelines feed, and its shutdown handle.
#[derive(Clone)]
pub struct RunningExporter {
    /// Feed batches here; refuses (never blocks) when the exporter's queue is full.
    pub consumer: SharedConsumer,
    /// Drains the queue and stops the exporter by a deadline.
    pub lifecycle: Arc<dyn Shutdown>,
}

impl std::fmt::Debug for RunningExporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningExporter").finish_non_exhaustive()
    }
}

/// Parses a component's YAML value into its config type (null = defaults), naming the failing key.
pub(crate) fn parse_as<T: serde::de::DeserializeOwned>(
    value: serde_yaml::Value,
) -> Result<T, ComponentConfigError> {
    // An exporter written as `debug:` with no body is YAML null: use the defaults.
    let value = if value.is_null() {
        serde_yaml::Value::Mapping(Default::default())
    } else {
        value
    };
    serde_path_to_error::deserialize(value).map_err(ComponentConfigError::from_serde)
}

impl ExporterConfig {
    /// Every exporter type name we implement (for "unknown type" errors that list them).
    pub const KINDS: &'static [&'static str] = &[
        "otlp",
        "otlphttp",
        "debug",
        "file",
        "prometheus",
        "prometheusremotewrite",
        "loadbalancing",
    ];

    /// Parses the YAML value of `exporters.<id>`; `kind` is the type part of the id.
    ///
    /// # Errors
    /// Unknown kind (listing the known ones), unknown key or wrong type, naming the key path.
    pub fn parse(kind: &str, value: serde_yaml::Value) -> Result<Self, ComponentConfigError> {
        Ok(match kind {
            "otlp" => ExporterConfig::Otlp(parse_as(value)?),
            "otlphttp" => ExporterConfig::OtlpHttp(parse_as(value)?),
            "debug" => ExporterConfig::Debug(parse_as(value)?),
            "file" => ExporterConfig::File(parse_as(value)?),
            "prometheus" => ExporterConfig::Prometheus(parse_as(value)?),
            "prometheusremotewrite" => ExporterConfig::PrometheusRemoteWrite(parse_as(value)?),
            "loadbalancing" => ExporterConfig::LoadBalancing(Box::new(parse_as(value)?)),
            other => {
                return Err(ComponentConfigError::new(
                    "",
                    format!(
                        "unknown exporter type {other:?}; known types: {}",
                        Self::KINDS.join(", ")
                    ),
                ))
            }
        })
    }

    /// Signals this exporter accepts.
    pub fn signals(&self) -> &'static [Signal] {
        match self {
            ExporterConfig::Prometheus(_) | ExporterConfig::PrometheusRemoteWrite(_) => {
                &[Signal::Metrics]
            }
            _ => &Signal::ALL,
        }
    }

    /// The authenticator extension it names (client side): (key path, extension id).
    pub fn authenticator(&self) -> Option<(String, String)> {
        let a = match self {
            ExporterConfig::Otlp(c) => c.auth.as_ref(),
            ExporterConfig::OtlpHttp(c) => c.auth.as_ref(),
            ExporterConfig::PrometheusRemoteWrite(c) => c.auth.as_ref(),
            _ => None,
        }?;
        Some(("auth.authenticator".to_string(), a.authenticator.clone()))
    }

    /// The `file_storage` extension its `sending_queue.storage` names: (key path, extension id).
    pub fn storage(&self) -> Option<(String, String)> {
        let q = match self {
            ExporterConfig::Otlp(c) => &c.sending_queue,
            ExporterConfig::OtlpHttp(c) => &c.sending_queue,
            ExporterConfig::PrometheusRemoteWrite(c) => {
                let s = c.sending_queue.as_ref()?.storage.clone()?;
                return Some(("sending_queue.storage".to_string(), s));
            }
            _ => return None,
        };
        let s = q.storage.clone().filter(|_| q.enabled)?;
        Some(("sending_queue.storage".to_string(), s))
    }

    /// Checks values serde cannot (endpoint syntax, durations > 0, ...), naming the key.
    ///
    /// # Errors
    /// The key path inside the component and the fix.
    pub fn validate(&self) -> Result<(), ComponentConfigError> {
        match self {
            ExporterConfig::Otlp(c) => c.validate(),
            ExporterConfig::OtlpHttp(c) => c.validate(),
            ExporterConfig::Debug(c) => c.validate(),
            ExporterConfig::File(c) => c.validate(),
            ExporterConfig::Prometheus(c) => c.validate(),
            ExporterConfig::PrometheusRemoteWrite(c) => c.validate(),
            ExporterConfig::LoadBalancing(c) => c.validate(),
        }
    }
}

/// The queue's handle on a shared [`loadbalancing::LoadBalancer`] (its resolver task holds
/// another).
struct LbExport(Arc<loadbalancing::LoadBalancer>);

impl queue::Export for LbExport {
    type Prepared = loadbalancing::Parts;
    fn prepare(
        &self,
        data: crate::pipeline::Telemetry,
    ) -> Result<Self::Prepared, retry::ExportError> {
        <loadbalancing::LoadBalancer as queue::Export>::prepare(&self.0, data)
    }
    fn send<'a>(
        &'a self,
        p: &'a Self::Prepared,
    ) -> futures::future::BoxFuture<'a, Result<(), retry::ExportError>> {
        <loadbalancing::LoadBalancer as queue::Export>::send(&self.0, p)
    }
}

/// The client side of the authenticator `auth` names, from the started ones.
fn client_auth(
    auth: Option<&crate::extension::auth::AuthRef>,
    ctx: &StartContext,
) -> Result<Option<Arc<dyn crate::extension::auth::ClientAuthenticator>>, ComponentConfigError> {
    let Some(a) = auth else { return Ok(None) };
    ctx.auth.client(&a.authenticator).map(Some).ok_or_else(|| {
        ComponentConfigError::new(
            "auth.authenticator",
            format!(
                "`{}` is not a started client authenticator; define it under extensions and list it in service.extensions",
                a.authenticator
            ),
        )
    })
}

/// Starts a network exporter behind its `sending_queue`: on disk when `storage` names a started
/// `file_storage` extension, in memory otherwise.
fn start_queued<E: queue::Export>(
    id: &str,
    exp: E,
    q: &queue::QueueConfig,
    retry: &retry::RetryConfig,
    metrics: queue::ExporterMetrics,
    ctx: &StartContext,
) -> Result<RunningExporter, ExporterError> {
    let Some(name) = q.storage.as_ref().filter(|_| q.enabled) else {
        let q =
            queue::QueuedExporter::start(id, exp, q, retry.clone(), metrics, ctx.health.clone());
        return Ok(RunningExporter {
            consumer: q.clone(),
            lifecycle: q,
        });
    };
    let storage = ctx.storage.get(name).ok_or_else(|| ExporterError::Config {
        id: id.to_string(),
        source: ComponentConfigError::new(
            "sending_queue.storage",
            format!("`{name}` is not an enabled file_storage extension; define it under extensions and list it in service.extensions"),
        ),
    })?;
    let io = |what: String, source| ExporterError::Io {
        id: id.to_string(),
        what,
        source,
    };
    storage.prepare().map_err(|m| {
        io(
            format!("file_storage {name}: {m}"),
            std::io::Error::other("unusable directory"),
        )
    })?;
    let dir = storage.queue_dir(id);
    let q = queue::QueuedExporter::start_persistent(
        id,
        exp,
        q,
        retry.clone(),
        metrics,
        ctx.health.clone(),
        &dir,
        storage,
    )
    .map_err(|e| match e {
        wal::WalError::Io { what, path, source } => io(
            format!("persistent queue: {what} {}", path.display()),
            source,
        ),
        other => io(other.to_string(), std::io::Error::other("persistent queue")),
    })?;
    Ok(RunningExporter {
        consumer: q.clone(),
        lifecycle: q,
    })
}

/// Starts `prometheusremotewrite`: with its own in-memory queue, or with `sending_queue.storage`
/// behind the shared persistent queue (the exporter then runs without its own queue).
fn start_remote_write(
    id: &str,
    c: &prometheusremotewrite::RemoteWriteConfig,
    metrics: queue::ExporterMetrics,
    ctx: &StartContext,
) -> Result<RunningExporter, ExporterError> {
    let cfg_err = |source| ExporterError::Config {
        id: id.to_string(),
        source,
    };
    // Validated here as a whole: `start_with_auth` below sees the copy without `sending_queue`.
    c.validate().map_err(cfg_err)?;
    let auth = client_auth(c.auth.as_ref(), ctx).map_err(cfg_err)?;
    let persistent = c.sending_queue.clone();
    let mut own = c.clone();
    if persistent.is_some() {
        own.remote_write_queue.enabled = false;
        own.sending_queue = None;
    }
    let exp =
        prometheusremotewrite::RemoteWriteExporter::start_with_auth(id, own, auth, &ctx.cancel)
            .map_err(|e| cfg_err(e.source))?;
    exp.set_health(ctx.health.clone());
    let Some(pq) = persistent else {
        return Ok(RunningExporter {
            consumer: exp.clone(),
            lifecycle: exp,
        });
    };
    let q = pq.queue_config(c.remote_write_queue.num_consumers);
    let durable = prometheusremotewrite::DurableRemoteWrite(exp);
    start_queued(id, durable, &q, &c.retry_on_failure.policy(), metrics, ctx)
}

/// Starts an exporter: spawns its queue consumers / writer, returns the consumer to feed.
///
/// Must run inside a tokio runtime.
///
/// # Errors
/// Settings that fail only when used (unreadable TLS files, an output file that cannot be created).
pub async fn start(
    id: &str,
    config: &ExporterConfig,
    ctx: &StartContext,
) -> Result<RunningExporter, ExporterError> {
    let cfg_err = |source| ExporterError::Config {
        id: id.to_string(),
        source,
    };
    let metrics = queue::ExporterMetrics::new(id);
    Ok(match config {
        ExporterConfig::Otlp(c) => {
            let exp = otlp::OtlpGrpc::new(c)
                .map_err(cfg_err)?
                .with_auth(client_auth(c.auth.as_ref(), ctx).map_err(cfg_err)?);
            start_queued(id, exp, &c.sending_queue, &c.retry_on_failure, metrics, ctx)?
        }
        ExporterConfig::OtlpHttp(c) => {
            let exp = otlphttp::OtlpHttp::new(c)
                .map_err(cfg_err)?
                .with_auth(client_auth(c.auth.as_ref(), ctx).map_err(cfg_err)?);
            start_queued(id, exp, &c.sending_queue, &c.retry_on_failure, metrics, ctx)?
        }
        ExporterConfig::Debug(c) => {
            let d = Arc::new(debug::DebugExporter::new(id, c, metrics));
            RunningExporter {
                consumer: d.clone(),
                lifecycle: d,
            }
        }
        ExporterConfig::File(c) => {
            let f = Arc::new(file::FileExporter::start(id, c, metrics).map_err(|source| {
                ExporterError::Io {
                    id: id.to_string(),
                    what: format!("opening {:?}", c.path),
                    source,
                }
            })?);
            RunningExporter {
                consumer: f.clone(),
                lifecycle: f,
            }
        }
        ExporterConfig::Prometheus(c) => {
            let (exp, server, _addr) =
                prometheus::PrometheusExporter::start(id, c.clone(), ctx.cancel.clone())
                    .await
                    .map_err(|e| match e {
                        prometheus::PrometheusExporterError::Config { source, .. } => {
                            cfg_err(source)
                        }
                        prometheus::PrometheusExporterError::Bind {
                            endpoint, source, ..
                        } => ExporterError::Io {
                            id: id.to_string(),
                            what: format!(
                                "listening on {endpoint} (choose a free port in `endpoint`)"
                            ),
                            source,
                        },
                    })?;
            RunningExporter {
                consumer: Arc::new(exp),
                lifecycle: server,
            }
        }
        ExporterConfig::LoadBalancing(c) => {
            let lb = loadbalancing::LoadBalancer::new(id, c).map_err(cfg_err)?;
            tokio::spawn(Arc::clone(&lb).run_resolver(ctx.cancel.child_token()));
            let (queue, retry) = c.queue_and_retry().map_err(cfg_err)?;
            let q = queue::QueuedExporter::start(
                id,
                LbExport(lb),
                &queue,
                retry,
                metrics,
                ctx.health.clone(),
            );
            RunningExporter {
                consumer: q.clone(),
                lifecycle: q,
            }
        }
        ExporterConfig::PrometheusRemoteWrite(c) => start_remote_write(id, c, metrics, ctx)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(s: &str) -> serde_yaml::Value {
        serde_yaml::from_str(s).unwrap()
    }

    #[test]
    fn unknown_kind_lists_known_ones() {
        let e = ExporterConfig::parse("kafka", yaml("{}")).unwrap_err();
        assert!(e.message.contains("otlphttp"), "{e}");
    }

    #[test]
    fn unknown_key_names_the_path() {
        let e = ExporterConfig::parse(
            "otlp",
            yaml("endpoint: a:1\nsending_queue: {queue_sise: 5}"),
        )
        .unwrap_err();
        assert_eq!(e.path, "sending_queue.queue_sise", "{e}");
        assert!(e.message.contains("queue_sise"), "{e}");
        let e = ExporterConfig::parse("otlp", yaml("endpoint: a:1\ntimeout: soon")).unwrap_err();
        assert_eq!(e.path, "timeout", "{e}");
    }

    #[test]
    fn null_body_gets_defaults() {
        let c = ExporterConfig::parse("debug", serde_yaml::Value::Null).unwrap();
        c.validate().unwrap();
    }

    #[test]
    fn validate_reaches_nested_blocks() {
        let c = ExporterConfig::parse(
            "otlphttp",
            yaml("endpoint: http://a:4318\nsending_queue: {num_consumers: 0}"),
        )
        .unwrap();
        assert_eq!(
            c.validate().unwrap_err().path,
            "sending_queue.num_consumers"
        );
    }
}
