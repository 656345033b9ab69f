//! How a receiver answers a request the pipelines did not take: one mapping, used by every
//! receiver path (gRPC and HTTP, all three signals), so every OTLP client retries what may
//! succeed later and drops what never will.
//!
//! | pipeline error | gRPC | HTTP |
//! | --- | --- | --- |
//! | [`ConsumeError::Refused`] (memory limit, full queue, shutting down) | `UNAVAILABLE`, with `google.rpc.RetryInfo{retry_delay}` in the status details | `503` + `Retry-After: <seconds>` |
//! | [`ConsumeError::Permanent`] (the data can never be taken) | `INVALID_ARGUMENT` | `400` |
//!
//! Why `UNAVAILABLE` and not `RESOURCE_EXHAUSTED`: the OTLP specification lets a client retry
//! `RESOURCE_EXHAUSTED` only when the status carries `RetryInfo`, and clients differ in how they
//! read it; `UNAVAILABLE` is retryable for every client (our `otlp` exporter, the upstream
//! collector, the SDKs), which is also what the upstream collector's receiver answers for a
//! refusal. The delay goes three ways so each client finds it: `RetryInfo` inside
//! `grpc-status-details-bin` (the specification's place; our exporter and the Go SDK read it),
//! the same `RetryInfo` as the `google.rpc.retryinfo-bin` trailer (the Python SDK reads that),
//! and `grpc-retry-pushback-ms` (gRPC's own retry policy). Over HTTP, `503` rather than `429`:
//! both are retryable per OTLP/HTTP, but older SDK exporters (older Python SDK releases) retry
//! only 408 and 5xx; the body is the same `google.rpc.Status` as over gRPC.
//!
//! Tests: `cargo test -p otel-collector receiver::answer` and `tests/core_backpressure.rs`.

use crate::pipeline::ConsumeError;
use crate::rpc;
use prost::Message as _;
use std::time::Duration;

/// gRPC trailer in which the Python SDK looks for the `RetryInfo` of a failed export.
const RETRY_INFO_TRAILER: &str = "google.rpc.retryinfo-bin";
/// gRPC's own retry-policy pushback header, milliseconds.
const PUSHBACK_HEADER: &str = "grpc-retry-pushback-ms";

/// The answer to a request the pipelines did not take, for either transport.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ErrorAnswer {
    /// gRPC status code (also the `code` of the HTTP body's `google.rpc.Status`).
    pub(crate) grpc: tonic::Code,
    /// HTTP status.
    pub(crate) http: http::StatusCode,
    /// For people.
    pub(crate) message: String,
    /// How long the client should wait before retrying; `None` when it should not retry.
    pub(crate) retry_after: Option<Duration>,
}

/// Maps a pipeline error to the answer (the one place that decides it).
pub(crate) fn answer(e: ConsumeError) -> ErrorAnswer {
    match e {
        ConsumeError::Refused {
            reason,
            retry_after,
        } => {
            let secs = retry_after_seconds(retry_after);
            ErrorAnswer {
                grpc: tonic::Code::Unavailable,
                http: http::StatusCode::SERVICE_UNAVAILABLE,
                message: format!("{reason}; retry after {secs}s"),
                retry_after: Some(Duration::from_secs(secs)),
            }
        }
        ConsumeError::Permanent(m) => ErrorAnswer {
            grpc: tonic::Code::InvalidArgument,
            http: http::StatusCode::BAD_REQUEST,
            message: m,
            retry_after: None,
        },
    }
}

/// Whole seconds, rounded up and at least 1: `Retry-After` has second resolution, and the same
/// delay is announced on both transports.
fn retry_after_seconds(d: Duration) -> u64 {
    d.as_secs()
        .saturating_add(u64::from(d.subsec_nanos() > 0))
        .max(1)
}

impl ErrorAnswer {
    /// The `google.rpc.Status` of this answer (with `RetryInfo` when retryable).
    pub(crate) fn rpc_status(&self) -> rpc::Status {
        rpc::Status {
            code: self.grpc as i32,
            message: self.message.clone(),
            details: self
                .retry_after
                .map(|d| vec![rpc::RetryInfo::after(d).to_any()])
                .unwrap_or_default(),
        }
    }

    /// The gRPC status to return.
    pub(crate) fn grpc_status(&self) -> tonic::Status {
        let Some(delay) = self.retry_after else {
            return tonic::Status::new(self.grpc, self.message.clone());
        };
        let details = self.rpc_status().encode_to_vec();
        let mut s = tonic::Status::with_details(self.grpc, self.message.clone(), details.into());
        let md = s.metadata_mut();
        md.insert_bin(
            tonic::metadata::BinaryMetadataKey::from_static(RETRY_INFO_TRAILER),
            tonic::metadata::BinaryMetadataValue::from_bytes(
                &rpc::RetryInfo::after(delay).encode_to_vec(),
            ),
        );
        md.insert(
            PUSHBACK_HEADER,
            tonic::metadata::MetadataValue::from(delay.as_millis() as u64),
        );
        s
    }

    /// The `Retry-After` header value (whole seconds), when retryable.
    pub(crate) fn retry_after_header(&self) -> Option<http::HeaderValue> {
        self.retry_after
            .map(|d| http::HeaderValue::from(retry_after_seconds(d)))
    }

    /// The HTTP body's `google.rpc.Status` as proto3 JSON (`RetryInfo` as a typed `Any`).
    pub(crate) fn json_body(&self) -> serde_json::Value {
        let mut v = serde_json::json!({"code": self.grpc as i32, "message": self.message});
        if let Some(d) = self.retry_after {
            v["details"] = serde_json::json!([{
                "@type": rpc::RETRY_INFO_TYPE_URL,
                "retryDelay": format!("{}s", retry_after_seconds(d)),
            }]);
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exporter::retry::{grpc_code_retryable, http_status_retryable};

    fn refused(ms: u64) -> ConsumeError {
        ConsumeError::Refused {
            reason: "sending queue of exporter otlp is full".into(),
            retry_after: Duration::from_millis(ms),
        }
    }

    #[test]
    fn a_refusal_is_retryable_on_both_transports_with_its_delay() {
        let a = answer(refused(1500));
        assert_eq!(a.grpc, tonic::Code::Unavailable);
        assert_eq!(a.http, http::StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(a.retry_after, Some(Duration::from_secs(2)), "rounded up");
        assert_eq!(a.retry_after_header().unwrap(), "2");
        // Our own exporters' classification (the OTLP specification's) retries it...
        let s = a.grpc_status();
        let delay = rpc::retry_delay_in_status(s.details());
        assert_eq!(delay, Some(Duration::from_secs(2)));
        assert!(
            grpc_code_retryable(s.code(), None),
            "retryable even without RetryInfo"
        );
        assert!(http_status_retryable(a.http.as_u16()));
        // ... and the delay is where each client looks for it.
        let md = s.metadata();
        let bin = md
            .get_bin(RETRY_INFO_TRAILER)
            .expect("retryinfo trailer")
            .to_bytes()
            .unwrap();
        assert_eq!(
            rpc::RetryInfo::decode(bin.as_ref()).unwrap().delay(),
            Some(Duration::from_secs(2))
        );
        assert_eq!(md.get(PUSHBACK_HEADER).unwrap(), "2000");
        assert!(
            s.message().contains("queue of exporter otlp is full"),
            "{}",
            s.message()
        );
    }

    #[test]
    fn short_delays_are_announced_as_one_second() {
        let a = answer(refused(10));
        assert_eq!(a.retry_after, Some(Duration::from_secs(1)));
        assert_eq!(a.json_body()["details"][0]["retryDelay"], "1s");
        assert_eq!(a.json_body()["code"], 14);
    }

    #[test]
    fn a_permanent_error_is_not_retryable() {
        let a = answer(ConsumeError::Permanent("bad data".into()));
        assert_eq!(a.grpc, tonic::Code::InvalidArgument);
        assert_eq!(a.http, http::StatusCode::BAD_REQUEST);
        assert_eq!(a.retry_after_header(), None);
        let s = a.grpc_status();
        assert!(!grpc_code_retryable(s.code(), None));
        assert!(s.details().is_empty());
        assert!(a.rpc_status().details.is_empty());
        assert!(a.json_body().get("details").is_none());
    }
}
