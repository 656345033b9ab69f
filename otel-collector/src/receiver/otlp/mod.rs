//! The `otlp` receiver: OTLP/gRPC (tonic) and OTLP/HTTP (axum, protobuf and JSON).
//!
//! Config (upstream's keys):
//! ```yaml
//! receivers:
//!   otlp:
//!     protocols:
//!       grpc: {endpoint: "localhost:4317", max_recv_msg_size_mib: 4, max_concurrent_streams: 0}
//!       http:
//!         endpoint: "localhost:4318"
//!         max_request_body_size: 20971520   # bytes, compressed and decompressed
//!         cors: {allowed_origins: ["https://*.example.com"], allowed_headers: [], max_age: 7200}
//! ```
//! A protocol is on when its key is present (`grpc:` alone means defaults).
//!
//! Tests: `cargo test -p otel-collector receiver::otlp` (handlers driven with `oneshot`) and the
//! integration tests `tests/core_*.rs`.

mod grpc;
mod http;

use super::{ReceiverError, SignalConsumers, SignalTarget};
use crate::config::{endpoint, ComponentConfigError};
use crate::pipeline::Signal;
use serde::{Deserialize, Deserializer, Serialize};
use std::net::SocketAddr;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Upstream's default gRPC endpoint.
pub const DEFAULT_GRPC_ENDPOINT: &str = "localhost:4317";
/// Upstream's default HTTP endpoint.
pub const DEFAULT_HTTP_ENDPOINT: &str = "localhost:4318";
/// Upstream's default largest gRPC message, MiB.
pub const DEFAULT_MAX_RECV_MSG_SIZE_MIB: u64 = 4;
/// Upstream's default largest HTTP body (compressed and decompressed), bytes.
pub const DEFAULT_MAX_REQUEST_BODY_SIZE: u64 = 20 * 1024 * 1024;

/// `receivers.otlp`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OtlpReceiverConfig {
    /// The protocols to serve.
    #[serde(default)]
    pub protocols: Protocols,
}

/// `receivers.otlp.protocols`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Protocols {
    /// OTLP/gRPC, on when the key is present.
    #[serde(default, deserialize_with = "present")]
    pub grpc: Option<GrpcConfig>,
    /// OTLP/HTTP, on when the key is present.
    #[serde(default, deserialize_with = "present")]
    pub http: Option<HttpConfig>,
}

/// A key written with no value (`grpc:`) means "on, with defaults".
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de> + Default>(
    d: D,
) -> Result<Option<T>, D::Error> {
    Ok(Some(Option::<T>::deserialize(d)?.unwrap_or_default()))
}

/// `receivers.otlp.protocols.grpc`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct GrpcConfig {
    /// `host:port` to listen on.
    pub endpoint: String,
    /// Only `tcp` is supported.
    pub transport: String,
    /// Largest accepted message (after decompression), MiB.
    pub max_recv_msg_size_mib: u64,
    /// Concurrent streams per connection; 0 = no limit.
    pub max_concurrent_streams: u32,
}

impl Default for GrpcConfig {
    fn default() -> Self {
        GrpcConfig {
            endpoint: DEFAULT_GRPC_ENDPOINT.into(),
            transport: "tcp".into(),
            max_recv_msg_size_mib: DEFAULT_MAX_RECV_MSG_SIZE_MIB,
            max_concurrent_streams: 0,
        }
    }
}

/// `receivers.otlp.protocols.http`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// `host:port` to listen on.
    pub endpoint: String,
    /// Largest body accepted, compressed and after decompression, bytes.
    pub max_request_body_size: u64,
    /// Cross-origin requests from browsers.
    pub cors: Option<CorsConfig>,
    /// Path for traces.
    pub traces_url_path: String,
    /// Path for metrics.
    pub metrics_url_path: String,
    /// Path for logs.
    pub logs_url_path: String,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            endpoint: DEFAULT_HTTP_ENDPOINT.into(),
            max_request_body_size: DEFAULT_MAX_REQUEST_BODY_SIZE,
            cors: None,
            traces_url_path: "/v1/traces".into(),
            metrics_url_path: "/v1/metrics".into(),
            logs_url_path: "/v1/logs".into(),
        }
    }
}

impl HttpConfig {
    /// The URL path of `signal`.
    pub fn path(&self, signal: Signal) -> &str {
        match signal {
            Signal::Traces => &self.traces_url_path,
            Signal::Metrics => &self.metrics_url_path,
            Signal::Logs => &self.logs_url_path,
        }
    }
}

/// `receivers.otlp.protocols.http.cors`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CorsConfig {
    /// Origins allowed (`*` for any, or exact origins like `https://app.example.com`).
    pub allowed_origins: Vec<String>,
    /// Extra request headers allowed besides the CORS-safelisted ones.
    pub allowed_headers: Vec<String>,
    /// How long browsers may cache a preflight answer, seconds.
    pub max_age: Option<u64>,
}

impl OtlpReceiverConfig {
    /// Checks endpoints and sizes.
    ///
    /// # Errors
    /// The offending key and the fix.
    pub fn validate(&self) -> Result<(), ComponentConfigError> {
        let p = &self.protocols;
        if p.grpc.is_none() && p.http.is_none() {
            return Err(ComponentConfigError::new(
                "protocols",
                "no protocol enabled; add `grpc:` and/or `http:` under `protocols`",
            ));
        }
        if let Some(g) = &p.grpc {
            endpoint::parse_host_port(&g.endpoint)
                .map_err(|m| ComponentConfigError::new("protocols.grpc.endpoint", m))?;
            if g.transport != "tcp" {
                return Err(ComponentConfigError::new(
                    "protocols.grpc.transport",
                    format!("transport `{}` is not supported; use `tcp`", g.transport),
                ));
            }
            if g.max_recv_msg_size_mib == 0 {
                return Err(ComponentConfigError::new(
                    "protocols.grpc.max_recv_msg_size_mib",
                    "must be at least 1 (MiB)",
                ));
            }
        }
        if let Some(h) = &p.http {
            endpoint::parse_host_port(&h.endpoint)
                .map_err(|m| ComponentConfigError::new("protocols.http.endpoint", m))?;
            if h.max_request_body_size == 0 {
                return Err(ComponentConfigError::new(
                    "protocols.http.max_request_body_size",
                    "must be greater than 0 (bytes)",
                ));
            }
            for s in Signal::ALL {
                if !h.path(s).starts_with('/') {
                    return Err(ComponentConfigError::new(
                        format!("protocols.http.{}_url_path", s.as_str()),
                        "must start with `/`",
                    ));
                }
            }
            if let Some(c) = &h.cors {
                for (i, o) in c.allowed_origins.iter().enumerate() {
                    if o != "*" && o.parse::<::http::HeaderValue>().is_err() {
                        return Err(ComponentConfigError::new(
                            format!("protocols.http.cors.allowed_origins[{i}]"),
                            format!(
                                "`{o}` is not a valid origin; write `https://host[:port]` or `*`"
                            ),
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}

/// Binds a listener for `endpoint` (`localhost` binds 127.0.0.1, an empty host all interfaces)
/// of `transport` (`grpc`, `http`) and logs where it listens.
async fn bind(
    id: &str,
    transport: &str,
    endpoint_text: &str,
) -> Result<(tokio::net::TcpListener, SocketAddr), ReceiverError> {
    let err = |message: String| ReceiverError::Bind {
        id: id.to_string(),
        key: format!("receivers.{id}.protocols.{transport}.endpoint"),
        endpoint: endpoint_text.to_string(),
        message,
    };
    let text = match endpoint_text.strip_prefix("localhost:") {
        Some(port) => format!("127.0.0.1:{port}"),
        None => endpoint_text.to_string(),
    };
    let addr: SocketAddr = endpoint::resolve_listen(&text).await.map_err(err)?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| err(e.to_string()))?;
    let addr = listener.local_addr().map_err(|e| err(e.to_string()))?;
    tracing::info!(receiver = id, transport, %addr, "OTLP receiver listening");
    Ok((listener, addr))
}

/// Builds the per-signal targets (consumer + counters) for one transport.
fn targets(
    id: &str,
    transport: &'static str,
    consumers: &SignalConsumers,
) -> [Option<SignalTarget>; 3] {
    Signal::ALL.map(|s| {
        consumers
            .get(s)
            .map(|c| SignalTarget::new(c.clone(), id, transport, s))
    })
}

pub(super) async fn start(
    id: &str,
    config: &OtlpReceiverConfig,
    consumers: SignalConsumers,
    stop: CancellationToken,
    tasks: &mut JoinSet<()>,
) -> Result<Vec<(&'static str, SocketAddr)>, ReceiverError> {
    let mut bound = Vec::new();
    if let Some(g) = &config.protocols.grpc {
        let (listener, addr) = bind(id, "grpc", &g.endpoint).await?;
        bound.push(("grpc", addr));
        let server = grpc::serve(listener, g, targets(id, "grpc", &consumers), stop.clone());
        let rid = id.to_string();
        tasks.spawn(async move {
            if let Err(e) = server.await {
                tracing::error!(receiver = %rid, error = %e, "OTLP/gRPC server failed");
            }
        });
    }
    if let Some(h) = &config.protocols.http {
        let (listener, addr) = bind(id, "http", &h.endpoint).await?;
        bound.push(("http", addr));
        let router = http::app(h, targets(id, "http", &consumers));
        let rid = id.to_string();
        tasks.spawn(async move {
            let res = axum::serve(listener, router)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await;
            if let Err(e) = res {
                tracing::error!(receiver = %rid, error = %e, "OTLP/HTTP server failed");
            }
        });
    }
    Ok(bound)
}
