//! The few `google.rpc` messages OTLP error answers carry: `Status` (the body of an OTLP/HTTP
//! error, the `grpc-status-details-bin` of a gRPC one) and its `RetryInfo` detail, which tells
//! a client how long to wait before retrying. Written by the receivers
//! ([`crate::receiver::answer`]), read by the `otlp` exporter.
//!
//! Tests: `cargo test -p otel-collector rpc::`.

use prost::Message as _;
use std::time::Duration;

/// `type_url` of a `google.rpc.RetryInfo` packed in an `Any`.
pub(crate) const RETRY_INFO_TYPE_URL: &str = "type.googleapis.com/google.rpc.RetryInfo";

/// `google.rpc.Status`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Status {
    /// A `google.rpc.Code` (the gRPC status code).
    #[prost(int32, tag = "1")]
    pub(crate) code: i32,
    /// What happened, for people.
    #[prost(string, tag = "2")]
    pub(crate) message: String,
    /// Typed details (`RetryInfo`, ...).
    #[prost(message, repeated, tag = "3")]
    pub(crate) details: Vec<Any>,
}

/// `google.protobuf.Any`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Any {
    /// Names the packed message type.
    #[prost(string, tag = "1")]
    pub(crate) type_url: String,
    /// The packed message.
    #[prost(bytes = "vec", tag = "2")]
    pub(crate) value: Vec<u8>,
}

/// `google.rpc.RetryInfo`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct RetryInfo {
    /// How long the client should wait before retrying.
    #[prost(message, optional, tag = "1")]
    pub(crate) retry_delay: Option<ProtoDuration>,
}

/// `google.protobuf.Duration`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct ProtoDuration {
    /// Whole seconds.
    #[prost(int64, tag = "1")]
    pub(crate) seconds: i64,
    /// Nanoseconds on top of `seconds`.
    #[prost(int32, tag = "2")]
    pub(crate) nanos: i32,
}

impl RetryInfo {
    /// A `RetryInfo` asking for `delay`.
    pub(crate) fn after(delay: Duration) -> Self {
        RetryInfo {
            retry_delay: Some(ProtoDuration {
                seconds: i64::try_from(delay.as_secs()).unwrap_or(i64::MAX),
                nanos: delay.subsec_nanos() as i32,
            }),
        }
    }

    /// The delay asked for, if any (negative parts read as 0).
    pub(crate) fn delay(&self) -> Option<Duration> {
        self.retry_delay.as_ref().map(|d| {
            Duration::new(
                u64::try_from(d.seconds).unwrap_or(0),
                u32::try_from(d.nanos).unwrap_or(0).min(999_999_999),
            )
        })
    }

    /// Packed as a `Status` detail.
    pub(crate) fn to_any(&self) -> Any {
        Any {
            type_url: RETRY_INFO_TYPE_URL.into(),
            value: self.encode_to_vec(),
        }
    }
}

/// The `RetryInfo.retry_delay` in an encoded `google.rpc.Status` (a gRPC status's details), if
/// any.
pub(crate) fn retry_delay_in_status(details: &[u8]) -> Option<Duration> {
    let st = Status::decode(details).ok()?;
    st.details
        .iter()
        .find(|a| a.type_url.ends_with("google.rpc.RetryInfo"))
        .and_then(|a| RetryInfo::decode(a.value.as_slice()).ok())
        .and_then(|ri| ri.delay())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_info_round_trips_through_a_status() {
        let st = Status {
            code: 14,
            message: "full".into(),
            details: vec![RetryInfo::after(Duration::from_millis(2500)).to_any()],
        };
        assert_eq!(
            retry_delay_in_status(&st.encode_to_vec()),
            Some(Duration::from_millis(2500))
        );
        let plain = Status {
            code: 14,
            message: "full".into(),
            details: Vec::new(),
        };
        assert_eq!(retry_delay_in_status(&plain.encode_to_vec()), None);
        assert_eq!(retry_delay_in_status(b"\xff\xff"), None);
    }

    #[test]
    fn negative_delays_read_as_zero() {
        let ri = RetryInfo {
            retry_delay: Some(ProtoDuration {
                seconds: -3,
                nanos: -1,
            }),
        };
        assert_eq!(ri.delay(), Some(Duration::ZERO));
    }
}
