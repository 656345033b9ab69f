//! OTLP export with retry, backoff and a bounded in-memory buffer.
//!
//! Each collection is encoded once into the wire body of the configured protocol
//! (protobuf for gRPC and `http/protobuf`, OTLP JSON for `http/json`) and appended to a
//! queue bounded in bytes. The queue is sent oldest first; a body leaves the queue only
//! after the collector accepted it (or rejected it as non-retryable), so cancelling a send
//! (shutdown) loses nothing. When the collector is down, sends stop for an exponentially
//! growing backoff while collections keep queueing; when the byte bound is reached the
//! oldest collection is dropped and counted.
//!
//! gRPC goes through tonic with a pass-through codec (the body is already protobuf), so a
//! collection is encoded exactly once. Tests: `cargo test -p node-agent export::` and
//! `tests/otlp_export.rs` (a real tonic OTLP server).

use std::collections::VecDeque;
use std::io::Write;
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use prost::bytes::Bytes;
use prost::Message;
use tonic::codec::{Codec, CompressionEncoding, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Code, Status};

use crate::config::{Compression, ExportConfig, Protocol};

/// Errors building the exporter or sending one body.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// Invalid endpoint, header or TLS file (user-caused, at start).
    #[error("export setup: {0}")]
    Setup(String),
    /// The collector is unreachable or asked us to retry later.
    #[error("retryable export failure: {message}")]
    Retryable {
        /// What happened.
        message: String,
        /// Server-provided delay (HTTP Retry-After).
        retry_after: Option<Duration>,
    },
    /// The collector rejected the data; retrying would not help.
    #[error("export rejected: {0}")]
    Permanent(String),
}

/// Counters the exporter keeps about itself.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ExportStats {
    /// Collections accepted by the collector.
    pub sent: u64,
    /// Failed send attempts (each retry counts).
    pub failed_attempts: u64,
    /// Collections dropped because the buffer was full.
    pub dropped_full: u64,
    /// Collections dropped because the collector rejected them.
    pub dropped_rejected: u64,
}

#[derive(Debug)]
enum Transport {
    Grpc {
        grpc: tonic::client::Grpc<Channel>,
        metadata: MetadataMap,
    },
    Http {
        client: reqwest::Client,
        url: String,
        content_type: &'static str,
        headers: Vec<(String, String)>,
    },
}

/// The exporter: transport, queue of wire bodies, backoff state.
#[derive(Debug)]
pub struct Exporter {
    transport: Transport,
    protocol: Protocol,
    compression: Compression,
    timeout: Duration,
    queue: VecDeque<Bytes>,
    queued_bytes: usize,
    max_bytes: usize,
    initial_backoff: Duration,
    max_backoff: Duration,
    backoff: Duration,
    next_try: Option<Instant>,
    /// Counters.
    pub stats: ExportStats,
    url: String,
}

const GRPC_PATH: &str = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export";

fn read_file(what: &str, p: &std::path::Path) -> Result<Vec<u8>, ExportError> {
    std::fs::read(p).map_err(|e| {
        ExportError::Setup(format!("cannot read {what} {}: {e}; fix export.tls in the config or the OTEL_EXPORTER_OTLP_* variable", p.display()))
    })
}

impl Exporter {
    /// Builds the transport; connects lazily, so a collector that is down is not an error here.
    ///
    /// # Errors
    /// Invalid URL, header or TLS material.
    pub fn new(cfg: &ExportConfig) -> Result<Self, ExportError> {
        let url = cfg.url();
        let tls = &cfg.tls;
        let transport = match cfg.protocol {
            Protocol::Grpc => {
                let mut ep = Endpoint::from_shared(url.clone())
                    .map_err(|e| ExportError::Setup(format!("invalid endpoint {url:?}: {e}")))?
                    .connect_timeout(cfg.timeout)
                    .timeout(cfg.timeout)
                    .tcp_nodelay(true);
                if url.starts_with("https://") {
                    let mut t = ClientTlsConfig::new().with_native_roots();
                    if let Some(ca) = &tls.ca_file {
                        t = t.ca_certificate(Certificate::from_pem(read_file("CA file", ca)?));
                    }
                    if let (Some(c), Some(k)) = (&tls.cert_file, &tls.key_file) {
                        t = t.identity(Identity::from_pem(
                            read_file("client certificate", c)?,
                            read_file("client key", k)?,
                        ));
                    }
                    ep = ep
                        .tls_config(t)
                        .map_err(|e| ExportError::Setup(format!("TLS config for {url}: {e}")))?;
                }
                let mut grpc = tonic::client::Grpc::new(ep.connect_lazy());
                if cfg.compression == Compression::Gzip {
                    grpc = grpc.send_compressed(CompressionEncoding::Gzip);
                }
                let mut metadata = MetadataMap::new();
                for (k, v) in &cfg.headers {
                    let key = MetadataKey::from_bytes(k.to_ascii_lowercase().as_bytes()).map_err(
                        |e| ExportError::Setup(format!("invalid header name {k:?}: {e}")),
                    )?;
                    let val = MetadataValue::try_from(v.as_str()).map_err(|e| {
                        ExportError::Setup(format!("invalid value of header {k:?}: {e}"))
                    })?;
                    metadata.insert(key, val);
                }
                Transport::Grpc { grpc, metadata }
            }
            Protocol::HttpProtobuf | Protocol::HttpJson => {
                let mut b = reqwest::Client::builder().timeout(cfg.timeout);
                if let Some(ca) = &tls.ca_file {
                    let cert = reqwest::Certificate::from_pem(&read_file("CA file", ca)?).map_err(
                        |e| ExportError::Setup(format!("CA file {}: {e}", ca.display())),
                    )?;
                    b = b.add_root_certificate(cert);
                }
                if let (Some(c), Some(k)) = (&tls.cert_file, &tls.key_file) {
                    let mut pem = read_file("client certificate", c)?;
                    pem.extend_from_slice(b"\n");
                    pem.extend_from_slice(&read_file("client key", k)?);
                    let id = reqwest::Identity::from_pem(&pem)
                        .map_err(|e| ExportError::Setup(format!("client certificate/key: {e}")))?;
                    b = b.identity(id);
                }
                let client = b
                    .build()
                    .map_err(|e| ExportError::Setup(format!("HTTP client: {e}")))?;
                Transport::Http {
                    client,
                    url: url.clone(),
                    content_type: if cfg.protocol == Protocol::HttpJson {
                        "application/json"
                    } else {
                        "application/x-protobuf"
                    },
                    headers: cfg
                        .headers
                        .iter()
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect(),
                }
            }
        };
        Ok(Self {
            transport,
            protocol: cfg.protocol,
            compression: cfg.compression,
            timeout: cfg.timeout,
            queue: VecDeque::new(),
            queued_bytes: 0,
            max_bytes: cfg.buffer_max_bytes,
            initial_backoff: cfg.initial_backoff,
            max_backoff: cfg.max_backoff,
            backoff: cfg.initial_backoff,
            next_try: None,
            stats: ExportStats::default(),
            url,
        })
    }

    /// Where the exporter sends.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Collections waiting to be sent.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Encodes `req` for the wire and appends it, dropping the oldest collections if the
    /// byte bound would be exceeded.
    pub fn enqueue(&mut self, req: &ExportMetricsServiceRequest) {
        let body = match self.protocol {
            Protocol::HttpJson => serde_json::to_vec(req).unwrap_or_default(),
            Protocol::Grpc | Protocol::HttpProtobuf => req.encode_to_vec(),
        };
        self.enqueue_body(Bytes::from(body));
    }

    fn enqueue_body(&mut self, body: Bytes) {
        while !self.queue.is_empty() && self.queued_bytes + body.len() > self.max_bytes {
            if let Some(old) = self.queue.pop_front() {
                self.queued_bytes -= old.len();
                self.stats.dropped_full += 1;
                if self.stats.dropped_full == 1 || self.stats.dropped_full.is_power_of_two() {
                    tracing::warn!(
                        dropped_total = self.stats.dropped_full,
                        max_bytes = self.max_bytes,
                        "export buffer full, dropped the oldest collection"
                    );
                }
            }
        }
        self.queued_bytes += body.len();
        self.queue.push_back(body);
    }

    /// Whether a send may be attempted now (not inside a backoff window).
    pub fn ready(&self) -> bool {
        self.next_try.is_none_or(|t| Instant::now() >= t)
    }

    /// Sends queued collections oldest first until the queue is empty or a send fails
    /// (which starts or extends the backoff). Does nothing inside a backoff window unless
    /// `ignore_backoff`. Cancel-safe: a body is removed only after its send finished.
    pub async fn drain(&mut self, ignore_backoff: bool) {
        if !ignore_backoff && !self.ready() {
            return;
        }
        while let Some(body) = self.queue.front() {
            let res = self.send(body.clone()).await;
            match res {
                Ok(()) => {
                    self.pop_front();
                    self.stats.sent += 1;
                    if self.next_try.take().is_some() {
                        tracing::info!(url = %self.url, queued = self.queue.len(), "export recovered");
                    }
                    self.backoff = self.initial_backoff;
                }
                Err(ExportError::Permanent(msg)) => {
                    self.pop_front();
                    self.stats.dropped_rejected += 1;
                    tracing::error!(url = %self.url, error = %msg, "collector rejected a collection; dropped (not retryable)");
                }
                Err(e) => {
                    self.stats.failed_attempts += 1;
                    let wait = match &e {
                        ExportError::Retryable {
                            retry_after: Some(d),
                            ..
                        } => *d,
                        _ => self.backoff,
                    };
                    if self.stats.failed_attempts == 1 || self.next_try.is_none() {
                        tracing::warn!(url = %self.url, error = %e, retry_in = ?wait, queued = self.queue.len(), "export failed, will retry");
                    } else {
                        tracing::debug!(url = %self.url, error = %e, retry_in = ?wait, queued = self.queue.len(), "export failed again");
                    }
                    self.next_try = Some(Instant::now() + wait);
                    self.backoff = (self.backoff * 2).min(self.max_backoff);
                    return;
                }
            }
        }
    }

    fn pop_front(&mut self) {
        if let Some(b) = self.queue.pop_front() {
            self.queued_bytes -= b.len();
        }
    }

    async fn send(&mut self, body: Bytes) -> Result<(), ExportError> {
        let timeout = self.timeout;
        let compression = self.compression;
        match &mut self.transport {
            Transport::Grpc { grpc, metadata } => {
                let call = async {
                    grpc.ready().await.map_err(|e| ExportError::Retryable {
                        message: format!("connect: {e}"),
                        retry_after: None,
                    })?;
                    let mut req = tonic::Request::new(body);
                    *req.metadata_mut() = metadata.clone();
                    req.set_timeout(timeout);
                    grpc.unary(req, PathAndQuery::from_static(GRPC_PATH), RawCodec)
                        .await
                        .map(|resp| log_partial(resp.into_inner()))
                        .map_err(status_error)
                };
                tokio::time::timeout(timeout + Duration::from_secs(1), call)
                    .await
                    .unwrap_or_else(|_| {
                        Err(ExportError::Retryable {
                            message: "timed out".into(),
                            retry_after: None,
                        })
                    })
            }
            Transport::Http {
                client,
                url,
                content_type,
                headers,
            } => {
                let mut rb = client
                    .post(url.as_str())
                    .header("content-type", *content_type);
                for (k, v) in headers.iter() {
                    rb = rb.header(k.as_str(), v.as_str());
                }
                let body = match compression {
                    Compression::Gzip => {
                        rb = rb.header("content-encoding", "gzip");
                        let mut enc = flate2::write::GzEncoder::new(
                            Vec::with_capacity(body.len() / 4),
                            flate2::Compression::fast(),
                        );
                        let _ = enc.write_all(&body);
                        Bytes::from(enc.finish().unwrap_or_default())
                    }
                    Compression::None => body,
                };
                let resp = rb
                    .body(body)
                    .send()
                    .await
                    .map_err(|e| ExportError::Retryable {
                        message: format!("{e}"),
                        retry_after: None,
                    })?;
                let status = resp.status().as_u16();
                if (200..300).contains(&status) {
                    return Ok(());
                }
                let retry_after = resp
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|s| s.trim().parse::<u64>().ok())
                    .map(Duration::from_secs);
                let text = resp.text().await.unwrap_or_default();
                let message = format!(
                    "HTTP {status}: {}",
                    text.chars().take(200).collect::<String>()
                );
                if matches!(status, 429 | 502 | 503 | 504) {
                    Err(ExportError::Retryable {
                        message,
                        retry_after,
                    })
                } else {
                    Err(ExportError::Permanent(message))
                }
            }
        }
    }
}

fn log_partial(resp: ExportMetricsServiceResponse) {
    if let Some(p) = resp.partial_success {
        if p.rejected_data_points > 0 {
            tracing::warn!(rejected = p.rejected_data_points, message = %p.error_message, "collector rejected some data points");
        }
    }
}

fn status_error(s: Status) -> ExportError {
    let message = format!("{:?}: {}", s.code(), s.message());
    match s.code() {
        Code::Unavailable
        | Code::ResourceExhausted
        | Code::DeadlineExceeded
        | Code::Aborted
        | Code::Cancelled
        | Code::OutOfRange
        | Code::DataLoss
        | Code::Unknown
        | Code::Internal => ExportError::Retryable {
            message,
            retry_after: None,
        },
        _ => ExportError::Permanent(message),
    }
}

/// gRPC codec that sends an already-encoded protobuf body and decodes the OTLP response.
#[derive(Debug, Clone, Copy, Default)]
struct RawCodec;

#[derive(Debug)]
struct RawEncoder;

#[derive(Debug)]
struct ResponseDecoder;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = ExportMetricsServiceResponse;
    type Encoder = RawEncoder;
    type Decoder = ResponseDecoder;
    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }
    fn decoder(&mut self) -> ResponseDecoder {
        ResponseDecoder
    }
}

impl Encoder for RawEncoder {
    type Item = Bytes;
    type Error = Status;
    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        use prost::bytes::BufMut;
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for ResponseDecoder {
    type Item = ExportMetricsServiceResponse;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Self::Item>, Status> {
        ExportMetricsServiceResponse::decode(src)
            .map(Some)
            .map_err(|e| Status::internal(format!("decode response: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exporter(max_bytes: usize) -> Exporter {
        let cfg = ExportConfig {
            endpoint: Some("http://127.0.0.1:1".into()),
            buffer_max_bytes: max_bytes,
            ..ExportConfig::default()
        };
        Exporter::new(&cfg).unwrap()
    }

    #[tokio::test]
    async fn buffer_is_bounded_and_drops_oldest() {
        let mut e = exporter(100);
        for i in 0..10u8 {
            e.enqueue_body(Bytes::from(vec![i; 30]));
        }
        assert_eq!(e.queued(), 3);
        assert!(e.queued_bytes <= 100);
        assert_eq!(e.stats.dropped_full, 7);
        assert_eq!(e.queue.front().unwrap()[0], 7);
    }

    #[tokio::test]
    async fn unreachable_collector_keeps_queue_and_backs_off() {
        let mut e = exporter(1 << 20);
        e.enqueue(&ExportMetricsServiceRequest::default());
        e.drain(false).await;
        assert_eq!(e.queued(), 1, "failed body stays queued");
        assert_eq!(e.stats.failed_attempts, 1);
        assert!(!e.ready(), "in backoff after a failure");
        e.drain(false).await;
        assert_eq!(e.stats.failed_attempts, 1, "no attempt during backoff");
        assert_eq!(e.backoff, Duration::from_secs(2));
    }

    #[test]
    fn status_codes_map_to_retryability() {
        assert!(matches!(
            status_error(Status::unavailable("x")),
            ExportError::Retryable { .. }
        ));
        assert!(matches!(
            status_error(Status::invalid_argument("x")),
            ExportError::Permanent(_)
        ));
    }
}
