//! Extensions: `health_check`, the authenticators `bearertokenauth` and `basicauth`, and the
//! collector's own-metrics server (:8888 `/metrics`).
//!
//! - [`auth`]: the authenticators receivers and exporters name in `auth: {authenticator: ID}`;
//!   the service starts them (as [`auth::Authenticators`]) before everything else;
//! - [`health`]: the shared [`health::HealthState`] (service phase, full exporter queues);
//! - [`health_check`]: the `health_check` extension's HTTP probe (200 when ready, 503 otherwise);
//! - [`metrics_server`]: serves [`crate::telemetry::SelfMetrics`] plus process gauges
//!   (`otelcol_process_memory_rss`, `otelcol_process_cpu_seconds`, `otelcol_process_uptime`) on
//!   the `service.telemetry.metrics` address; the service starts it, it is not listed under
//!   `extensions`.
//!
//! Tests: `cargo test -p otel-collector extension` and `tests/export_health.rs`.

pub mod auth;
pub mod file_storage;
pub mod health;
pub mod health_check;
pub mod metrics_server;

use crate::config::ComponentConfigError;
use crate::pipeline::{Shutdown, ShutdownFuture, StartContext};
use std::net::SocketAddr;
use std::sync::Arc;

/// Typed config of one extension, chosen by its type name.
#[derive(Clone, Debug, PartialEq)]
pub enum ExtensionConfig {
    /// `health_check`: readiness probe over HTTP.
    HealthCheck(health_check::HealthCheckConfig),
    /// `bearertokenauth`: bearer token authenticator (server and client).
    BearerTokenAuth(auth::BearerTokenAuthConfig),
    /// `basicauth`: HTTP Basic authenticator (htpasswd server, or client).
    BasicAuth(auth::BasicAuthConfig),
    /// `file_storage`: directory of the exporters' persistent queues.
    FileStorage(file_storage::FileStorageConfig),
}

/// Why an extension could not start.
#[derive(Debug, thiserror::Error)]
pub enum ExtensionError {
    /// The listen address cannot be bound (in use, not local, bad host).
    #[error("{id}: cannot listen on {endpoint}: {source}; choose a free port or another address")]
    Bind {
        /// Extension id (or `service.telemetry` for the metrics server).
        id: String,
        /// The configured address.
        endpoint: String,
        /// The OS error.
        source: std::io::Error,
    },
}

/// A started extension (or the metrics server): where it listens and how to stop it.
#[derive(Clone)]
pub struct RunningExtension {
    /// The address actually bound (useful with port 0).
    pub local_addr: SocketAddr,
    /// Stops the server.
    pub lifecycle: Arc<dyn Shutdown>,
}

impl std::fmt::Debug for RunningExtension {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningExtension")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

impl ExtensionConfig {
    /// Every extension type name we implement.
    pub const KINDS: &'static [&'static str] = &[
        "health_check",
        "bearertokenauth",
        "basicauth",
        "file_storage",
    ];

    /// The authenticator view of this extension, when it is one.
    pub fn as_auth(&self) -> Option<auth::AuthConfig<'_>> {
        match self {
            ExtensionConfig::BearerTokenAuth(c) => Some(auth::AuthConfig::Bearer(c)),
            ExtensionConfig::BasicAuth(c) => Some(auth::AuthConfig::Basic(c)),
            ExtensionConfig::HealthCheck(_) | ExtensionConfig::FileStorage(_) => None,
        }
    }

    /// The storage view of this extension, when it is a `file_storage`.
    pub fn as_storage(&self) -> Option<&file_storage::FileStorageConfig> {
        match self {
            ExtensionConfig::FileStorage(c) => Some(c),
            _ => None,
        }
    }

    /// Parses the YAML value of `extensions.<id>`; `kind` is the type part of the id.
    ///
    /// # Errors
    /// Unknown kind (listing the known ones), unknown key or wrong type, naming the key path.
    pub fn parse(kind: &str, value: serde_yaml::Value) -> Result<Self, ComponentConfigError> {
        let value = if value.is_null() {
            serde_yaml::Value::Mapping(Default::default())
        } else {
            value
        };
        match kind {
            "health_check" => Ok(ExtensionConfig::HealthCheck(
                serde_path_to_error::deserialize(value)
                    .map_err(ComponentConfigError::from_serde)?,
            )),
            "bearertokenauth" => Ok(ExtensionConfig::BearerTokenAuth(
                serde_path_to_error::deserialize(value)
                    .map_err(ComponentConfigError::from_serde)?,
            )),
            "basicauth" => Ok(ExtensionConfig::BasicAuth(
                serde_path_to_error::deserialize(value)
                    .map_err(ComponentConfigError::from_serde)?,
            )),
            "file_storage" => Ok(ExtensionConfig::FileStorage(
                serde_path_to_error::deserialize(value)
                    .map_err(ComponentConfigError::from_serde)?,
            )),
            other => Err(ComponentConfigError::new(
                "",
                format!(
                    "unknown extension type {other:?}; known types: {}",
                    Self::KINDS.join(", ")
                ),
            )),
        }
    }

    /// Checks values serde cannot, naming the key.
    ///
    /// # Errors
    /// The key path and the fix.
    pub fn validate(&self) -> Result<(), ComponentConfigError> {
        match self {
            ExtensionConfig::HealthCheck(c) => c.validate(),
            ExtensionConfig::BearerTokenAuth(c) => c.validate(),
            ExtensionConfig::BasicAuth(c) => c.validate(),
            ExtensionConfig::FileStorage(c) => c.validate(),
        }
    }
}

/// Starts extension `id` (binds its listener before returning); `None` for the authenticators,
/// which the service starts with [`auth::Authenticators::start`], and for `file_storage`.
///
/// # Errors
/// The listen address cannot be bound.
pub async fn start(
    id: &str,
    config: &ExtensionConfig,
    ctx: &StartContext,
) -> Result<Option<RunningExtension>, ExtensionError> {
    match config {
        ExtensionConfig::HealthCheck(c) => health_check::start(id, c, ctx.health.clone())
            .await
            .map(Some),
        // Authenticators start with `auth::Authenticators::start`; a file_storage is opened
        // by the exporters naming it (its directory is checked by the service first).
        ExtensionConfig::BearerTokenAuth(_)
        | ExtensionConfig::BasicAuth(_)
        | ExtensionConfig::FileStorage(_) => Ok(None),
    }
}

/// A server task that stops on its own token (and on the service's) and is awaited on shutdown.
pub(crate) struct ServerHandle {
    stop: tokio_util::sync::CancellationToken,
    task: tokio::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl ServerHandle {
    pub(crate) fn new(
        stop: tokio_util::sync::CancellationToken,
        task: tokio::task::JoinHandle<()>,
    ) -> Self {
        ServerHandle {
            stop,
            task: tokio::sync::Mutex::new(Some(task)),
        }
    }
}

impl Shutdown for ServerHandle {
    fn shutdown(&self, deadline: tokio::time::Instant) -> ShutdownFuture<'_> {
        Box::pin(async move {
            self.stop.cancel();
            let task = self.task.lock().await.take();
            if let Some(t) = task {
                let abort = t.abort_handle();
                if tokio::time::timeout_at(deadline, t).await.is_err() {
                    abort.abort();
                }
            }
        })
    }
}

/// Binds `endpoint` (`host:port`; names are resolved).
pub(crate) async fn bind(
    id: &str,
    endpoint: &str,
) -> Result<tokio::net::TcpListener, ExtensionError> {
    tokio::net::TcpListener::bind(endpoint)
        .await
        .map_err(|source| ExtensionError::Bind {
            id: id.to_string(),
            endpoint: endpoint.to_string(),
            source,
        })
}
