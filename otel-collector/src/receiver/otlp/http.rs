//! OTLP/HTTP: `POST /v1/{traces,metrics,logs}` with protobuf or JSON bodies, optionally gzip,
//! deflate or zstd compressed; the answer uses the request's content type.
//!
//! Status codes (OTLP spec): 200 accepted (with `partial_success` when invalid items were
//! taken out, see [`crate::receiver::validate`]); 400 undecodable or empty body, bad encoding;
//! 413 body (or its decompressed form) over `max_request_body_size`; 415 unsupported content
//! type; 408 body not received within `read_timeout`; when the pipeline refuses (memory limit, full queues) the answer
//! [`crate::receiver::answer`] decides: 503 + `Retry-After`.

use super::{CorsConfig, HttpConfig};
use crate::pipeline::{Signal, Telemetry};
use crate::receiver::answer::{answer, ErrorAnswer};
use crate::receiver::validate::Rejected;
use crate::receiver::SignalTarget;
use axum::body::HttpBody as _;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use bytes::Bytes;
use http::{header, HeaderMap, StatusCode};
use http_body_util::BodyExt;
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;
use std::io::Read;
use std::sync::Arc;

const PROTOBUF: &str = "application/x-protobuf";
const JSON: &str = "application/json";

/// The body format of a request (and of its answer).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    Protobuf,
    Json,
}

impl Format {
    fn content_type(self) -> &'static str {
        match self {
            Format::Protobuf => PROTOBUF,
            Format::Json => JSON,
        }
    }
}

struct SignalState {
    signal: Signal,
    target: SignalTarget,
    max_body: usize,
    read_timeout: Option<std::time::Duration>,
}

/// Builds the OTLP/HTTP router for `config`; signals without a target answer 404.
pub(crate) fn app(config: &HttpConfig, targets: [Option<SignalTarget>; 3]) -> Router {
    let mut router = Router::new();
    for (signal, target) in Signal::ALL.into_iter().zip(targets) {
        let Some(target) = target else { continue };
        let state = Arc::new(SignalState {
            signal,
            target,
            max_body: usize::try_from(config.max_request_body_size).unwrap_or(usize::MAX),
            read_timeout: (!config.read_timeout.is_zero()).then_some(config.read_timeout),
        });
        router = router.route(
            config.path(signal),
            post(move |req: Request| handle(state.clone(), req)),
        );
    }
    if let Some(cors) = &config.cors {
        router = router.layer(cors_layer(cors));
    }
    router
}

fn cors_layer(c: &CorsConfig) -> tower_http::cors::CorsLayer {
    use tower_http::cors::{AllowOrigin, CorsLayer};
    let origins = if c.allowed_origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(c.allowed_origins.iter().filter_map(|o| o.parse().ok()))
    };
    let mut headers: Vec<header::HeaderName> = vec![header::CONTENT_TYPE, header::CONTENT_ENCODING];
    headers.extend(c.allowed_headers.iter().filter_map(|h| h.parse().ok()));
    let mut layer = CorsLayer::new()
        .allow_origin(origins)
        .allow_methods([http::Method::POST])
        .allow_headers(headers);
    if let Some(age) = c.max_age {
        layer = layer.max_age(std::time::Duration::from_secs(age));
    }
    layer
}

/// An error answer: HTTP status, gRPC code for the body's `google.rpc.Status`, message, and the
/// `RetryInfo` / `Retry-After` delay of a retryable one.
struct Failure(ErrorAnswer);

impl Failure {
    fn new(http: StatusCode, grpc: tonic::Code, message: impl Into<String>) -> Self {
        Failure(ErrorAnswer {
            grpc,
            http,
            message: message.into(),
            retry_after: None,
        })
    }
    fn bad(msg: impl Into<String>) -> Self {
        Failure::new(StatusCode::BAD_REQUEST, tonic::Code::InvalidArgument, msg)
    }
    fn into_response(self, format: Format) -> Response {
        let a = self.0;
        let body = match format {
            Format::Protobuf => a.rpc_status().encode_to_vec(),
            Format::Json => a.json_body().to_string().into_bytes(),
        };
        let mut resp = (
            a.http,
            [(header::CONTENT_TYPE, format.content_type())],
            body,
        )
            .into_response();
        if let Some(v) = a.retry_after_header() {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        resp
    }
}

fn format_of(headers: &HeaderMap) -> Option<Format> {
    let ct = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    let media = ct.split(';').next().unwrap_or("").trim();
    if media.eq_ignore_ascii_case(PROTOBUF) || media.eq_ignore_ascii_case("application/protobuf") {
        Some(Format::Protobuf)
    } else if media.eq_ignore_ascii_case(JSON) {
        Some(Format::Json)
    } else {
        None
    }
}

async fn handle(state: Arc<SignalState>, req: Request) -> Response {
    let Some(format) = format_of(req.headers()) else {
        let got = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("none")
            .to_string();
        return Failure::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            tonic::Code::InvalidArgument,
            format!("unsupported content type `{got}`; send `{PROTOBUF}` or `{JSON}`"),
        )
        .into_response(Format::Json);
    };
    match process(&state, req).await {
        Ok(rejected) => success(state.signal, format, rejected),
        Err(f) => f.into_response(format),
    }
}

/// Decodes and delivers one request; `Some` when invalid items were taken out of it.
async fn process(state: &SignalState, req: Request) -> Result<Option<Rejected>, Failure> {
    let format = format_of(req.headers()).unwrap_or(Format::Protobuf);
    let encoding = req
        .headers()
        .get(header::CONTENT_ENCODING)
        .map(|v| v.to_str().unwrap_or("?").trim().to_ascii_lowercase());
    let body = match state.read_timeout {
        None => read_body(req.into_body(), state.max_body).await?,
        Some(limit) => tokio::time::timeout(limit, read_body(req.into_body(), state.max_body))
            .await
            .map_err(|_| {
                Failure::new(
                    StatusCode::REQUEST_TIMEOUT,
                    tonic::Code::DeadlineExceeded,
                    format!(
                        "the request body did not arrive within read_timeout ({}s)",
                        limit.as_secs_f64()
                    ),
                )
            })??,
    };
    let body = if encoding.is_some() && body.len() > BLOCKING_DECOMPRESS_THRESHOLD {
        // Large compressed bodies are inflated off the async workers so one upload cannot stall
        // every other connection on its thread.
        let max = state.max_body;
        tokio::task::spawn_blocking(move || decompress(encoding.as_deref(), body, max))
            .await
            .map_err(|e| Failure::bad(format!("decompression failed: {e}")))??
    } else {
        decompress(encoding.as_deref(), body, state.max_body)?
    };
    if body.is_empty() {
        return Err(Failure::bad(
            "empty request body; send an OTLP export request",
        ));
    }
    let data = decode(state.signal, format, &body).map_err(Failure::bad)?;
    state
        .target
        .deliver(data)
        .await
        .map_err(|e| Failure(answer(e)))
}

/// After a body exceeds the limit, at most this much more is read (and discarded) so the client
/// gets the 413 instead of a connection reset while it is still sending.
const OVERSIZE_DRAIN_BYTES: usize = 64 * 1024 * 1024;
/// ... and for at most this long.
const OVERSIZE_DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(2);

/// Reads the whole body, refusing (413) one larger than `limit`.
async fn read_body(mut body: axum::body::Body, limit: usize) -> Result<Bytes, Failure> {
    let mut buf = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| Failure::bad(format!("cannot read request body: {e}")))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if buf.len() + data.len() > limit {
            let mut drained = 0usize;
            let drain = async {
                while let Some(Ok(f)) = body.frame().await {
                    drained += f.data_ref().map_or(0, |d| d.len());
                    if drained > OVERSIZE_DRAIN_BYTES {
                        break;
                    }
                }
            };
            let _ = tokio::time::timeout(OVERSIZE_DRAIN_TIME, drain).await;
            return Err(too_large("request body", limit));
        }
        if buf.is_empty() {
            // Most bodies arrive in one frame: keep it without copying.
            if body.is_end_stream() {
                return Ok(data);
            }
            buf.reserve(data.len());
        }
        buf.extend_from_slice(&data);
    }
    Ok(buf.freeze())
}

/// Compressed bodies larger than this are decompressed on the blocking pool.
const BLOCKING_DECOMPRESS_THRESHOLD: usize = 256 * 1024;

/// The 413 answer for `what` exceeding `limit` bytes.
fn too_large(what: &str, limit: usize) -> Failure {
    Failure::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        tonic::Code::ResourceExhausted,
        format!(
            "{what} is larger than max_request_body_size ({limit} bytes); send smaller batches"
        ),
    )
}

/// Decompresses `body` per `encoding`, refusing output larger than `limit` (gzip bombs).
fn decompress(encoding: Option<&str>, body: Bytes, limit: usize) -> Result<Bytes, Failure> {
    fn read_all(r: impl Read, limit: usize) -> std::io::Result<(Vec<u8>, bool)> {
        let mut out = Vec::new();
        r.take(limit as u64 + 1).read_to_end(&mut out)?;
        let over = out.len() > limit;
        Ok((out, over))
    }
    let result = match encoding {
        None | Some("") | Some("identity") => return Ok(body),
        Some("gzip") | Some("x-gzip") => {
            read_all(flate2::read::MultiGzDecoder::new(&body[..]), limit)
        }
        Some("deflate") => read_all(flate2::read::ZlibDecoder::new(&body[..]), limit),
        Some("zstd") => match zstd::stream::read::Decoder::new(&body[..]) {
            Ok(d) => read_all(d, limit),
            Err(e) => Err(e),
        },
        Some(other) => {
            return Err(Failure::bad(format!(
                "unsupported Content-Encoding `{other}`; use gzip, deflate, zstd or none"
            )))
        }
    };
    match result {
        Ok((_, true)) => Err(too_large("decompressed request body", limit)),
        Ok((data, false)) => Ok(Bytes::from(data)),
        Err(e) => Err(Failure::bad(format!(
            "cannot decompress the {} body: {e}",
            encoding.unwrap_or("")
        ))),
    }
}

/// Decodes an export request body of `signal` in `format`.
fn decode(signal: Signal, format: Format, body: &[u8]) -> Result<Telemetry, String> {
    fn pb<T: Message + Default>(b: &[u8]) -> Result<T, String> {
        T::decode(b).map_err(|e| format!("invalid protobuf body: {e}"))
    }
    fn js<T: serde::de::DeserializeOwned>(b: &[u8]) -> Result<T, String> {
        serde_json::from_slice(b).map_err(|e| format!("invalid OTLP JSON body: {e}"))
    }
    Ok(match (signal, format) {
        (Signal::Traces, Format::Protobuf) => {
            Telemetry::Traces(pb::<ExportTraceServiceRequest>(body)?)
        }
        (Signal::Traces, Format::Json) => Telemetry::Traces(js::<ExportTraceServiceRequest>(body)?),
        (Signal::Metrics, Format::Protobuf) => {
            Telemetry::Metrics(pb::<ExportMetricsServiceRequest>(body)?)
        }
        (Signal::Metrics, Format::Json) => {
            Telemetry::Metrics(js::<ExportMetricsServiceRequest>(body)?)
        }
        (Signal::Logs, Format::Protobuf) => Telemetry::Logs(pb::<ExportLogsServiceRequest>(body)?),
        (Signal::Logs, Format::Json) => Telemetry::Logs(js::<ExportLogsServiceRequest>(body)?),
    })
}

/// The success answer in the request's format: an empty export response, or one whose
/// `partial_success` says how many items were rejected and why.
fn success(signal: Signal, format: Format, rejected: Option<Rejected>) -> Response {
    let body: Vec<u8> = match (format, rejected) {
        (Format::Protobuf, None) => Vec::new(),
        (Format::Protobuf, Some(r)) => {
            let (count, error_message) = (r.count as i64, r.message);
            match signal {
                Signal::Traces => ExportTraceServiceResponse {
                    partial_success: Some(ExportTracePartialSuccess {
                        rejected_spans: count,
                        error_message,
                    }),
                }
                .encode_to_vec(),
                Signal::Metrics => ExportMetricsServiceResponse {
                    partial_success: Some(ExportMetricsPartialSuccess {
                        rejected_data_points: count,
                        error_message,
                    }),
                }
                .encode_to_vec(),
                Signal::Logs => ExportLogsServiceResponse {
                    partial_success: Some(ExportLogsPartialSuccess {
                        rejected_log_records: count,
                        error_message,
                    }),
                }
                .encode_to_vec(),
            }
        }
        (Format::Json, None) => b"{}".to_vec(),
        (Format::Json, Some(r)) => {
            let field = match signal {
                Signal::Traces => "rejectedSpans",
                Signal::Metrics => "rejectedDataPoints",
                Signal::Logs => "rejectedLogRecords",
            };
            // proto3 JSON: int64 as a string.
            serde_json::json!({"partialSuccess": {field: r.count.to_string(), "errorMessage": r.message}})
                .to_string()
                .into_bytes()
        }
    };
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, format.content_type())],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests;
