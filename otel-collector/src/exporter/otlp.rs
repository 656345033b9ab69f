//! The `otlp` exporter: OTLP over gRPC (tonic channel), all three signals.
//!
//! Each batch is encoded once and compressed once (gzip level 1 by default, see
//! [`super::otlp_common::Compressor`]) into a complete gRPC frame; every retry reuses those
//! bytes. The call is a plain unary gRPC request on a shared HTTP/2 channel; the status comes from
//! the trailers and is classified per the OTLP specification ([`super::retry::grpc_code_retryable`]),
//! honouring the server's `RetryInfo`.
//!
//! Tests: `cargo test -p otel-collector exporter::otlp` and `tests/export_otlp.rs`.

use super::otlp_common::{
    header_map, Compression, CompressionParams, Compressor, Headers, TlsClientConfig,
};
use super::queue::{Export, QueueConfig};
use super::retry::{grpc_code_retryable, ExportError, RetryConfig};
use crate::config::ComponentConfigError;
use crate::pipeline::{Signal, Telemetry};
use bytes::Bytes;
use futures::future::BoxFuture;
use http_body_util::BodyExt as _;
use prost::Message as _;
use serde::Deserialize;
use std::time::Duration;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tower::{Service as _, ServiceExt as _};

/// Configuration of an `otlp` exporter (upstream `otlpexporter.Config`, the parts we implement).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OtlpExporterConfig {
    /// `host:port` (TLS unless `tls.insecure`), or `http://host:port` / `https://host:port`.
    pub endpoint: String,
    /// TLS settings.
    #[serde(default)]
    pub tls: TlsClientConfig,
    /// Extra gRPC metadata sent with every request.
    #[serde(default)]
    pub headers: Headers,
    /// `gzip` (default), `zstd` or `none`.
    #[serde(default)]
    pub compression: Compression,
    /// Compression level.
    #[serde(default)]
    pub compression_params: CompressionParams,
    /// Deadline of one export attempt (default 5s).
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Retry policy.
    #[serde(default)]
    pub retry_on_failure: RetryConfig,
    /// In-memory queue.
    #[serde(default)]
    pub sending_queue: QueueConfig,
    /// Authenticator extension that signs every request (client side).
    #[serde(default)]
    pub auth: Option<crate::extension::auth::AuthRef>,
}

fn default_timeout() -> Duration {
    Duration::from_secs(5)
}

impl OtlpExporterConfig {
    /// Checks what serde cannot, naming the key.
    ///
    /// # Errors
    /// The key path and the fix.
    pub fn validate(&self) -> Result<(), ComponentConfigError> {
        self.target()?;
        self.tls.validate()?;
        if self.tls.insecure_skip_verify {
            return Err(ComponentConfigError::new(
                "tls.insecure_skip_verify",
                "is not supported by the otlp (gRPC) exporter; give the server's CA with tls.ca_file instead (the otlphttp exporter supports it)",
            ));
        }
        header_map(&self.headers)?;
        Compressor::new(self.compression, &self.compression_params)?;
        if self.timeout.is_zero() {
            return Err(ComponentConfigError::new(
                "timeout",
                "must be greater than 0 (for example 5s)",
            ));
        }
        self.retry_on_failure.validate()?;
        self.sending_queue.validate()
    }

    /// The URI to connect to and whether to use TLS.
    fn target(&self) -> Result<(String, bool), ComponentConfigError> {
        let e = &self.endpoint;
        let bad = |why: &str| {
            ComponentConfigError::new(
                "endpoint",
                format!(
                    "{e:?} {why}; write host:port (for example tempo:4317) or http(s)://host:port"
                ),
            )
        };
        let (tls, rest) = if let Some(r) = e.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = e.strip_prefix("http://") {
            (false, r)
        } else if e.contains("://") {
            return Err(bad("has an unsupported scheme"));
        } else {
            (!self.tls.insecure, e.as_str())
        };
        let rest = rest.trim_end_matches('/');
        let (host, port) = rest.rsplit_once(':').ok_or_else(|| bad("has no port"))?;
        if host.is_empty() || rest.contains('/') {
            return Err(bad("is not host:port"));
        }
        port.parse::<u16>()
            .map_err(|_| bad("has an invalid port"))?;
        let scheme = if tls { "https" } else { "http" };
        Ok((format!("{scheme}://{rest}"), tls))
    }
}

/// gRPC method paths of the three OTLP services.
fn method_path(signal: Signal) -> &'static str {
    match signal {
        Signal::Traces => "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
        Signal::Metrics => "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
        Signal::Logs => "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
    }
}

/// One batch as a complete gRPC request body.
#[derive(Debug)]
pub struct GrpcRequest {
    path: &'static str,
    body: Bytes,
}

/// The gRPC wire side of the `otlp` exporter.
#[derive(Debug)]
pub struct OtlpGrpc {
    channel: Channel,
    compressor: Compressor,
    headers: http::HeaderMap,
    timeout: Duration,
    grpc_timeout: http::HeaderValue,
    auth: Option<std::sync::Arc<dyn crate::extension::auth::ClientAuthenticator>>,
}

/// gRPC frame header: 1 byte compressed flag + 4 bytes big-endian length.
const FRAME_HEADER: usize = 5;

impl OtlpGrpc {
    /// Builds the channel (connects lazily, reconnects by itself).
    ///
    /// # Errors
    /// Unreadable TLS files or an endpoint tonic rejects.
    pub fn new(cfg: &OtlpExporterConfig) -> Result<Self, ComponentConfigError> {
        let (uri, tls) = cfg.target()?;
        let mut ep = Endpoint::from_shared(uri)
            .map_err(|e| ComponentConfigError::new("endpoint", e.to_string()))?
            .connect_timeout(cfg.timeout)
            .tcp_nodelay(true)
            .initial_stream_window_size(Some(4 << 20))
            .initial_connection_window_size(Some(16 << 20))
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_while_idle(false);
        if tls {
            let read = |key: &str, p: &str| {
                std::fs::read(p)
                    .map_err(|e| ComponentConfigError::new(key, format!("cannot read {p:?}: {e}")))
            };
            let mut t = ClientTlsConfig::new();
            match &cfg.tls.ca_file {
                Some(ca) => t = t.ca_certificate(Certificate::from_pem(read("tls.ca_file", ca)?)),
                None => t = t.with_native_roots(),
            }
            if let (Some(c), Some(k)) = (&cfg.tls.cert_file, &cfg.tls.key_file) {
                t = t.identity(Identity::from_pem(
                    read("tls.cert_file", c)?,
                    read("tls.key_file", k)?,
                ));
            }
            if let Some(name) = &cfg.tls.server_name_override {
                t = t.domain_name(name.clone());
            }
            ep = ep
                .tls_config(t)
                .map_err(|e| ComponentConfigError::new("tls", e.to_string()))?;
        }
        let grpc_timeout = http::HeaderValue::from_str(&format!("{}m", cfg.timeout.as_millis()))
            .map_err(|e| ComponentConfigError::new("timeout", e.to_string()))?;
        Ok(OtlpGrpc {
            channel: ep.connect_lazy(),
            compressor: Compressor::new(cfg.compression, &cfg.compression_params)?,
            headers: header_map(&cfg.headers)?,
            timeout: cfg.timeout,
            grpc_timeout,
            auth: None,
        })
    }

    /// Signs every request with `auth` (an authenticator extension's client side).
    pub fn with_auth(
        mut self,
        auth: Option<std::sync::Arc<dyn crate::extension::auth::ClientAuthenticator>>,
    ) -> Self {
        self.auth = auth;
        self
    }

    async fn call(&self, req: &GrpcRequest) -> Result<(), ExportError> {
        let mut builder = http::Request::builder()
            .method(http::Method::POST)
            .uri(req.path)
            .header(http::header::CONTENT_TYPE, "application/grpc")
            .header(http::header::TE, "trailers")
            .header("grpc-timeout", self.grpc_timeout.clone())
            .header("grpc-accept-encoding", "gzip,zstd,identity");
        if let Some(enc) = self.compressor.kind.encoding() {
            builder = builder.header("grpc-encoding", enc);
        }
        let mut request = builder
            .body(tonic::body::Body::new(http_body_util::Full::new(
                req.body.clone(),
            )))
            .map_err(|e| ExportError::permanent(format!("building request: {e}")))?;
        request
            .headers_mut()
            .extend(self.headers.iter().map(|(k, v)| (k.clone(), v.clone())));
        if let Some(a) = &self.auth {
            let (name, value) = a.header();
            request.headers_mut().insert(name, value);
        }
        let mut channel = self.channel.clone();
        let response = channel
            .ready()
            .await
            .map_err(|e| ExportError::retryable(format!("connecting: {}", source_chain(&e)), None))?
            .call(request)
            .await
            .map_err(|e| ExportError::retryable(format!("sending: {}", source_chain(&e)), None))?;
        let (parts, body) = response.into_parts();
        if parts.status != http::StatusCode::OK {
            let s = parts.status.as_u16();
            let msg = format!("HTTP status {s} from gRPC server");
            return Err(if super::retry::http_status_retryable(s) {
                ExportError::retryable(msg, None)
            } else {
                ExportError::permanent(msg)
            });
        }
        // Trailers-only response (errors usually come this way).
        if let Some(status) = tonic::Status::from_header_map(&parts.headers) {
            return status_result(&status);
        }
        let collected = body
            .collect()
            .await
            .map_err(|e| ExportError::retryable(format!("reading response: {e}"), None))?;
        let trailers = collected.trailers().cloned();
        let data = collected.to_bytes();
        match trailers.as_ref().and_then(tonic::Status::from_header_map) {
            Some(status) if status.code() != tonic::Code::Ok => status_result(&status),
            Some(_) => {
                log_partial_success(req.path, &data);
                Ok(())
            }
            None => Err(ExportError::retryable(
                "gRPC response without grpc-status",
                None,
            )),
        }
    }
}

fn source_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

fn status_result(status: &tonic::Status) -> Result<(), ExportError> {
    let code = status.code();
    if code == tonic::Code::Ok {
        return Ok(());
    }
    let delay = crate::rpc::retry_delay_in_status(status.details());
    let msg = format!("gRPC status {code:?}: {}", status.message());
    if grpc_code_retryable(code, delay) {
        Err(ExportError::retryable(msg, delay))
    } else {
        Err(ExportError::permanent(msg))
    }
}

/// Logs a non-empty `partial_success` (the server rejected part of the batch).
fn log_partial_success(path: &'static str, data: &[u8]) {
    // Only uncompressed responses are inspected; servers rarely compress these tiny messages.
    if data.len() <= FRAME_HEADER || data[0] != 0 {
        return;
    }
    let msg = &data[FRAME_HEADER..];
    use opentelemetry_proto::tonic::collector::{logs, metrics, trace};
    let (rejected, message) = if path.contains("trace") {
        trace::v1::ExportTraceServiceResponse::decode(msg)
            .ok()
            .and_then(|r| r.partial_success)
            .map(|p| (p.rejected_spans, p.error_message))
    } else if path.contains("metrics") {
        metrics::v1::ExportMetricsServiceResponse::decode(msg)
            .ok()
            .and_then(|r| r.partial_success)
            .map(|p| (p.rejected_data_points, p.error_message))
    } else {
        logs::v1::ExportLogsServiceResponse::decode(msg)
            .ok()
            .and_then(|r| r.partial_success)
            .map(|p| (p.rejected_log_records, p.error_message))
    }
    .unwrap_or_default();
    if rejected > 0 || !message.is_empty() {
        tracing::warn!(rejected, message, "server accepted the batch only partly");
    }
}

/// Encodes `data` as protobuf into a reused buffer-free `Vec`.
pub(crate) fn encode_proto(data: &Telemetry) -> Vec<u8> {
    match data {
        Telemetry::Traces(r) => r.encode_to_vec(),
        Telemetry::Metrics(r) => r.encode_to_vec(),
        Telemetry::Logs(r) => r.encode_to_vec(),
    }
}

impl Export for OtlpGrpc {
    type Prepared = GrpcRequest;

    fn prepare(&self, data: Telemetry) -> Result<GrpcRequest, ExportError> {
        let path = method_path(data.signal());
        let (body, compressed) = if self.compressor.kind == Compression::None {
            // Encode straight after the frame header: no second copy.
            let len = encoded_len(&data);
            let mut buf = Vec::with_capacity(FRAME_HEADER + len);
            buf.resize(FRAME_HEADER, 0);
            encode_into(&data, &mut buf);
            (buf, false)
        } else {
            let raw = encode_proto(&data);
            drop(data);
            let out = self
                .compressor
                .compress_with_prefix(&raw, FRAME_HEADER)
                .map_err(|e| ExportError::permanent(format!("compressing: {e}")))?;
            (out, true)
        };
        framed(path, body, compressed)
    }

    /// The stored request compressed straight into a frame (no decode, no second encode).
    fn prepare_encoded(
        &self,
        signal: Signal,
        request: &[u8],
    ) -> Option<Result<GrpcRequest, ExportError>> {
        let body = match self.compressor.compress_with_prefix(request, FRAME_HEADER) {
            Ok(b) => b,
            Err(e) => return Some(Err(ExportError::permanent(format!("compressing: {e}")))),
        };
        let compressed = self.compressor.kind != Compression::None;
        Some(framed(method_path(signal), body, compressed))
    }

    fn send<'a>(&'a self, req: &'a GrpcRequest) -> BoxFuture<'a, Result<(), ExportError>> {
        Box::pin(async move {
            match tokio::time::timeout(self.timeout, self.call(req)).await {
                Ok(r) => r,
                Err(_) => Err(ExportError::retryable(
                    format!("no answer within timeout {:?}", self.timeout),
                    None,
                )),
            }
        })
    }
}

/// Fills in the gRPC frame header (compressed flag, length) in front of `body`'s message.
fn framed(
    path: &'static str,
    mut body: Vec<u8>,
    compressed: bool,
) -> Result<GrpcRequest, ExportError> {
    let len = u32::try_from(body.len() - FRAME_HEADER)
        .map_err(|_| ExportError::permanent("batch larger than 4 GiB"))?;
    body[0] = u8::from(compressed);
    body[1..FRAME_HEADER].copy_from_slice(&len.to_be_bytes());
    Ok(GrpcRequest {
        path,
        body: Bytes::from(body),
    })
}

fn encoded_len(data: &Telemetry) -> usize {
    match data {
        Telemetry::Traces(r) => r.encoded_len(),
        Telemetry::Metrics(r) => r.encoded_len(),
        Telemetry::Logs(r) => r.encoded_len(),
    }
}

fn encode_into(data: &Telemetry, buf: &mut Vec<u8>) {
    // Encoding into a Vec cannot run out of space.
    let _ = match data {
        Telemetry::Traces(r) => r.encode(buf),
        Telemetry::Metrics(r) => r.encode(buf),
        Telemetry::Logs(r) => r.encode(buf),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stored request framed as it is equals the frame `prepare` builds from the decoded batch.
    #[tokio::test]
    async fn a_stored_request_is_framed_as_prepare_frames_the_batch() {
        use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
        use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
        let data = Telemetry::Traces(ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans: vec![Span {
                        name: "a".repeat(300),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        });
        for compression in ["none", "gzip", "zstd"] {
            let c: OtlpExporterConfig = serde_yaml::from_str(&format!(
                "endpoint: 127.0.0.1:1\ntls: {{insecure: true}}\ncompression: {compression}"
            ))
            .unwrap();
            let e = OtlpGrpc::new(&c).unwrap();
            let stored = e
                .prepare_encoded(Signal::Traces, &data.encode_to_vec())
                .expect("the otlp exporter sends stored requests as they are")
                .unwrap();
            let fresh = e.prepare(data.clone()).unwrap();
            assert_eq!(stored.path, fresh.path);
            assert_eq!(stored.body, fresh.body, "{compression}");
        }
    }

    fn cfg(endpoint: &str, insecure: bool) -> OtlpExporterConfig {
        serde_yaml::from_str(&format!(
            "endpoint: {endpoint:?}\ntls: {{insecure: {insecure}}}"
        ))
        .unwrap()
    }

    #[test]
    fn endpoint_forms() {
        assert_eq!(
            cfg("tempo:4317", true).target().unwrap(),
            ("http://tempo:4317".into(), false)
        );
        assert_eq!(
            cfg("tempo:4317", false).target().unwrap(),
            ("https://tempo:4317".into(), true)
        );
        assert_eq!(
            cfg("http://127.0.0.1:4317", false).target().unwrap(),
            ("http://127.0.0.1:4317".into(), false)
        );
        for bad in ["tempo", "ftp://x:1", "x:notaport", "http://x:1/path"] {
            let e = cfg(bad, true).validate().unwrap_err();
            assert_eq!(e.path, "endpoint", "{bad}: {e}");
        }
    }

    #[test]
    fn defaults_match_upstream() {
        let c = cfg("a:1", true);
        assert_eq!(c.compression, Compression::Gzip);
        assert_eq!(c.timeout, Duration::from_secs(5));
        assert!(c.sending_queue.enabled);
        assert!(c.retry_on_failure.enabled);
        c.validate().unwrap();
    }

    #[test]
    fn retry_info_is_read_from_status_details() {
        use crate::rpc;
        let st = rpc::Status {
            code: 8,
            message: "slow down".into(),
            details: vec![rpc::RetryInfo::after(Duration::from_millis(2500)).to_any()],
        };
        let status = tonic::Status::with_details(
            tonic::Code::ResourceExhausted,
            "slow down",
            st.encode_to_vec().into(),
        );
        let err = status_result(&status).unwrap_err();
        assert!(err.retryable);
        assert_eq!(err.retry_after, Some(Duration::from_millis(2500)));
        let plain = tonic::Status::resource_exhausted("full");
        assert!(!status_result(&plain).unwrap_err().retryable);
    }

    #[test]
    fn the_receivers_refusal_is_retried_with_its_delay() {
        let refusal = crate::receiver::answer::answer(crate::pipeline::ConsumeError::Refused {
            reason: "queue full".into(),
            retry_after: Duration::from_secs(3),
        });
        let err = status_result(&refusal.grpc_status()).unwrap_err();
        assert!(err.retryable, "{err:?}");
        assert_eq!(err.retry_after, Some(Duration::from_secs(3)));
    }
}
