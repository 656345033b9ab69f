//! The `otlp` receiver: OTLP/gRPC (tonic) and OTLP/HTTP (axum, protobuf and JSON).
//!
//! Config (upstream's keys, plus `max_connections`):
//! ```yaml
//! receivers:
//!   otlp:
//!     protocols:
//!       grpc:
//!         endpoint: "localhost:4317"
//!         max_recv_msg_size_mib: 4
//!         max_concurrent_streams: 0         # 0 = 200 per connection
//!         max_connections: 4096
//!         keepalive:
//!           server_parameters: {max_connection_idle: 5m, max_connection_age: 0, max_connection_age_grace: 5s, time: 2h, timeout: 20s}
//!         tls: {cert_file: server.pem, key_file: server.key, client_ca_file: ca.pem, min_version: "1.2", reload_interval: 1h}
//!         auth: {authenticator: bearertokenauth}
//!       http:
//!         endpoint: "localhost:4318"
//!         max_request_body_size: 20971520   # bytes, compressed and decompressed
//!         read_header_timeout: 1m
//!         read_timeout: 1m
//!         idle_timeout: 1m
//!         max_connections: 4096
//!         cors: {allowed_origins: ["https://*.example.com"], allowed_headers: [], max_age: 7200}
//!         tls: {cert_file: server.pem, key_file: server.key}
//!         auth: {authenticator: basicauth/server}
//! ```
//! A protocol is on when its key is present (`grpc:` alone means defaults). Connections, TLS and
//! authentication are handled by [`crate::receiver::server`].
//!
//! Tests: `cargo test -p otel-collector receiver::otlp` (handlers driven with `oneshot`) and the
//! integration tests `tests/core_*.rs`.

mod grpc;
mod http;

use super::server::tls::{ReloadingAcceptor, TlsServerConfig};
use super::server::{self, Limits, Protocol, ServeOptions};
use super::{ReceiverError, SignalConsumers, SignalTarget};
use crate::config::{endpoint, ComponentConfigError};
use crate::extension::auth::{AuthRef, Authenticators, ServerAuth};
use crate::pipeline::Signal;
use serde::{Deserialize, Deserializer, Serialize};
use std::net::SocketAddr;
use std::time::Duration;
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
/// Upstream's default `read_header_timeout` and `idle_timeout` of HTTP servers.
pub const DEFAULT_HTTP_TIMEOUT: Duration = Duration::from_secs(60);
/// Our default `read_timeout` (upstream has none): a request body must arrive within it.
pub const DEFAULT_HTTP_READ_TIMEOUT: Duration = Duration::from_secs(60);

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
    /// Concurrent streams per connection; 0 = 200 (hyper's default).
    pub max_concurrent_streams: u32,
    /// Most connections held at once; idle ones are evicted beyond it (our key).
    pub max_connections: usize,
    /// Connection keepalive and lifetime.
    pub keepalive: Option<GrpcKeepalive>,
    /// TLS (plain text when absent).
    pub tls: Option<TlsServerConfig>,
    /// Authenticator extension checking every request.
    pub auth: Option<AuthRef>,
}

impl Default for GrpcConfig {
    fn default() -> Self {
        GrpcConfig {
            endpoint: DEFAULT_GRPC_ENDPOINT.into(),
            transport: "tcp".into(),
            max_recv_msg_size_mib: DEFAULT_MAX_RECV_MSG_SIZE_MIB,
            max_concurrent_streams: 0,
            max_connections: server::DEFAULT_MAX_CONNECTIONS,
            keepalive: None,
            tls: None,
            auth: None,
        }
    }
}

/// `protocols.grpc.keepalive` (`enforcement_policy` is not implemented and refused).
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct GrpcKeepalive {
    /// Server-side settings.
    pub server_parameters: Option<KeepaliveServerParameters>,
}

/// `protocols.grpc.keepalive.server_parameters` (grpc-go's `keepalive.ServerParameters`).
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct KeepaliveServerParameters {
    /// Close a connection with no call in flight for this long (also before its first call).
    #[serde(with = "crate::config::duration::option")]
    pub max_connection_idle: Option<Duration>,
    /// Close a connection (gracefully) after this long.
    #[serde(with = "crate::config::duration::option")]
    pub max_connection_age: Option<Duration>,
    /// After `max_connection_age`, how long calls in flight get.
    #[serde(with = "crate::config::duration::option")]
    pub max_connection_age_grace: Option<Duration>,
    /// Ping an idle client this often.
    #[serde(with = "crate::config::duration::option")]
    pub time: Option<Duration>,
    /// Close when a ping is not answered within this long.
    #[serde(with = "crate::config::duration::option")]
    pub timeout: Option<Duration>,
}

impl GrpcConfig {
    fn limits(&self) -> Limits {
        let sp = self
            .keepalive
            .as_ref()
            .and_then(|k| k.server_parameters.clone())
            .unwrap_or_default();
        let nz = |d: Option<Duration>| d.filter(|d| !d.is_zero());
        Limits {
            max_connections: self.max_connections,
            first_request: nz(sp.max_connection_idle),
            idle: nz(sp.max_connection_idle),
            max_age: nz(sp.max_connection_age),
            max_age_grace: nz(sp.max_connection_age_grace),
            header_read: None,
            keepalive_time: nz(sp.time),
            keepalive_timeout: nz(sp.timeout),
            max_concurrent_streams: self.max_concurrent_streams,
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
    /// The request line and headers must arrive within this long (also the longest a new
    /// connection may wait before its first request); 0 = no limit.
    #[serde(with = "crate::config::duration")]
    pub read_header_timeout: Duration,
    /// The request body must arrive within this long (answered 408 otherwise); 0 = no limit.
    #[serde(with = "crate::config::duration")]
    pub read_timeout: Duration,
    /// A keep-alive connection idle this long is closed; 0 = no limit.
    #[serde(with = "crate::config::duration")]
    pub idle_timeout: Duration,
    /// Most connections held at once; idle ones are evicted beyond it (our key).
    pub max_connections: usize,
    /// TLS (plain text when absent).
    pub tls: Option<TlsServerConfig>,
    /// Authenticator extension checking every request.
    pub auth: Option<AuthRef>,
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
            read_header_timeout: DEFAULT_HTTP_TIMEOUT,
            read_timeout: DEFAULT_HTTP_READ_TIMEOUT,
            idle_timeout: DEFAULT_HTTP_TIMEOUT,
            max_connections: server::DEFAULT_MAX_CONNECTIONS,
            tls: None,
            auth: None,
        }
    }
}

impl HttpConfig {
    fn limits(&self) -> Limits {
        let nz = |d: Duration| (!d.is_zero()).then_some(d);
        Limits {
            max_connections: self.max_connections,
            first_request: nz(self.read_header_timeout),
            idle: nz(self.idle_timeout),
            header_read: nz(self.read_header_timeout),
            ..Limits::default()
        }
    }

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
            check_common(
                "protocols.grpc",
                g.max_connections,
                g.tls.as_ref(),
                g.auth.as_ref(),
            )?;
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
            check_common(
                "protocols.http",
                h.max_connections,
                h.tls.as_ref(),
                h.auth.as_ref(),
            )?;
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

fn check_common(
    prefix: &str,
    max_connections: usize,
    tls: Option<&TlsServerConfig>,
    auth: Option<&AuthRef>,
) -> Result<(), ComponentConfigError> {
    if max_connections == 0 {
        return Err(ComponentConfigError::new(
            format!("{prefix}.max_connections"),
            "must be at least 1",
        ));
    }
    if let Some(t) = tls {
        t.validate(&format!("{prefix}.tls"))?;
    }
    if auth.is_some_and(|a| a.authenticator.is_empty()) {
        return Err(ComponentConfigError::new(
            format!("{prefix}.auth.authenticator"),
            "is empty; name an authenticator extension, like bearertokenauth",
        ));
    }
    Ok(())
}

impl OtlpReceiverConfig {
    /// The authenticators this receiver names: (key path inside the receiver, extension id).
    pub fn authenticators(&self) -> Vec<(String, String)> {
        let p = &self.protocols;
        let grpc = p.grpc.as_ref().and_then(|g| g.auth.as_ref());
        let http = p.http.as_ref().and_then(|h| h.auth.as_ref());
        [
            ("protocols.grpc.auth.authenticator", grpc),
            ("protocols.http.auth.authenticator", http),
        ]
        .into_iter()
        .filter_map(|(k, a)| a.map(|a| (k.to_string(), a.authenticator.clone())))
        .collect()
    }
}

/// Builds the connection options of one transport: TLS acceptor (files read now) and auth.
fn serve_options(
    id: &str,
    protocol: Protocol,
    limits: Limits,
    tls: Option<&TlsServerConfig>,
    auth: Option<&AuthRef>,
    authenticators: &Authenticators,
    stop: &CancellationToken,
) -> Result<ServeOptions, ReceiverError> {
    let transport = protocol.transport();
    let tls = match tls {
        Some(t) => {
            let alpn: &[&[u8]] = match protocol {
                Protocol::Grpc => &[b"h2"],
                Protocol::Http => &[b"h2", b"http/1.1"],
            };
            let prefix = format!("receivers.{id}.protocols.{transport}.tls");
            let acceptor =
                ReloadingAcceptor::new(t, &prefix, id, transport, alpn).map_err(|e| {
                    ReceiverError::Setting {
                        id: id.to_string(),
                        message: e.to_string(),
                    }
                })?;
            acceptor.spawn_reloader(id, stop.clone());
            Some(acceptor)
        }
        None => None,
    };
    let auth = match auth {
        Some(a) => {
            let inner = authenticators.server(&a.authenticator).ok_or_else(|| {
                ReceiverError::Setting {
                    id: id.to_string(),
                    message: format!(
                        "protocols.{transport}.auth.authenticator: `{}` is not a started server authenticator",
                        a.authenticator
                    ),
                }
            })?;
            Some(ServerAuth::new(inner, &a.authenticator, id, transport))
        }
        None => None,
    };
    Ok(ServeOptions {
        receiver: id.to_string(),
        protocol,
        limits,
        tls,
        auth,
    })
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
    authenticators: &Authenticators,
) -> Result<Vec<(&'static str, SocketAddr)>, ReceiverError> {
    let mut bound = Vec::new();
    if let Some(g) = &config.protocols.grpc {
        let options = serve_options(
            id,
            Protocol::Grpc,
            g.limits(),
            g.tls.as_ref(),
            g.auth.as_ref(),
            authenticators,
            &stop,
        )?;
        let (listener, addr) = bind(id, "grpc", &g.endpoint).await?;
        bound.push(("grpc", addr));
        let router = grpc::router(g, targets(id, "grpc", &consumers));
        tasks.spawn(server::serve(listener, router, options, stop.clone()));
    }
    if let Some(h) = &config.protocols.http {
        let options = serve_options(
            id,
            Protocol::Http,
            h.limits(),
            h.tls.as_ref(),
            h.auth.as_ref(),
            authenticators,
            &stop,
        )?;
        let (listener, addr) = bind(id, "http", &h.endpoint).await?;
        bound.push(("http", addr));
        let router = http::app(h, targets(id, "http", &consumers));
        tasks.spawn(server::serve(listener, router, options, stop.clone()));
    }
    Ok(bound)
}
