//! Item counts (spans, data points, log records) of an encoded OTLP export request, read off the
//! protobuf wire format without decoding it: the persistent queue uses it to send a stored
//! record as it is (`Export::prepare_encoded`) and still count what it sent.
//!
//! Tests: `cargo test -p otel-collector exporter::wire_count` (counts equal
//! `Telemetry::item_count` of the decoded request).

use crate::pipeline::Signal;

/// Field numbers from the request down to the repeated item message, per signal:
/// `resource_*` (1), `scope_*` (2), then spans / metrics / log records (2).
const PATH: [u32; 3] = [1, 2, 2];
/// `Metric` fields holding a message with `data_points` (1): gauge, sum, histogram,
/// exponential_histogram, summary.
const METRIC_DATA: [u32; 5] = [5, 7, 9, 10, 11];

fn varint(b: &[u8], at: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *b.get(*at)?;
        *at += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// Calls `f(field, bytes)` for every length-delimited field of the message `b`; `None` when
/// the bytes are not a well-formed message (groups included).
fn fields(b: &[u8], mut f: impl FnMut(u32, &[u8]) -> Option<()>) -> Option<()> {
    let mut at = 0;
    while at < b.len() {
        let key = varint(b, &mut at)?;
        let field = u32::try_from(key >> 3).ok()?;
        match key & 7 {
            0 => {
                varint(b, &mut at)?;
            }
            1 => at = at.checked_add(8).filter(|&e| e <= b.len())?,
            5 => at = at.checked_add(4).filter(|&e| e <= b.len())?,
            2 => {
                let len = usize::try_from(varint(b, &mut at)?).ok()?;
                let end = at.checked_add(len).filter(|&e| e <= b.len())?;
                f(field, &b[at..end])?;
                at = end;
            }
            _ => return None,
        }
    }
    Some(())
}

/// Sum of `leaf` over the messages reached by following `path` from `b`.
fn walk(b: &[u8], path: &[u32], leaf: &impl Fn(&[u8]) -> Option<u64>) -> Option<u64> {
    let Some((&first, rest)) = path.split_first() else {
        return leaf(b);
    };
    let mut n = 0u64;
    fields(b, |field, sub| {
        if field == first {
            n += walk(sub, rest, leaf)?;
        }
        Some(())
    })?;
    Some(n)
}

/// Data points of one encoded `Metric` (the last data field wins, as when decoding a oneof).
fn metric_points(m: &[u8]) -> Option<u64> {
    let mut n = 0u64;
    fields(m, |field, sub| {
        if METRIC_DATA.contains(&field) {
            n = walk(sub, &[1], &|_| Some(1))?;
        }
        Some(())
    })?;
    Some(n)
}

/// Items in an encoded export request of `signal`; `None` when it is not well formed.
pub fn item_count(signal: Signal, request: &[u8]) -> Option<u64> {
    match signal {
        Signal::Metrics => walk(request, &PATH, &metric_points),
        Signal::Traces | Signal::Logs => walk(request, &PATH, &|_| Some(1)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::Telemetry;
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::metrics::v1::{
        metric::Data, Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint,
        ResourceMetrics, ScopeMetrics, Sum,
    };
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

    fn traces() -> Telemetry {
        let scope = |n: usize| ScopeSpans {
            spans: (0..n)
                .map(|i| Span {
                    name: format!("s{i}"),
                    start_time_unix_nano: 7,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        Telemetry::Traces(ExportTraceServiceRequest {
            resource_spans: vec![
                ResourceSpans {
                    scope_spans: vec![scope(3), scope(0), scope(5)],
                    ..Default::default()
                },
                ResourceSpans {
                    scope_spans: vec![scope(2)],
                    ..Default::default()
                },
            ],
        })
    }

    fn metrics() -> Telemetry {
        let points = |n: usize| (0..n).map(|_| NumberDataPoint::default()).collect();
        let metric = |data| Metric {
            name: "m".into(),
            data: Some(data),
            ..Default::default()
        };
        Telemetry::Metrics(ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                scope_metrics: vec![ScopeMetrics {
                    metrics: vec![
                        metric(Data::Gauge(Gauge {
                            data_points: points(4),
                        })),
                        metric(Data::Sum(Sum {
                            data_points: points(2),
                            ..Default::default()
                        })),
                        metric(Data::Histogram(Histogram {
                            data_points: vec![HistogramDataPoint::default(); 3],
                            ..Default::default()
                        })),
                    ],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        })
    }

    #[test]
    fn counts_match_the_decoded_request() {
        for t in [traces(), metrics()] {
            let bytes = t.encode_to_vec();
            assert_eq!(
                item_count(t.signal(), &bytes),
                Some(t.item_count() as u64),
                "{}",
                t.signal()
            );
        }
        assert_eq!(item_count(Signal::Logs, &[]), Some(0));
    }

    #[test]
    fn malformed_bytes_are_none_not_a_panic() {
        let bytes = traces().encode_to_vec();
        assert_eq!(item_count(Signal::Traces, &bytes[..bytes.len() - 1]), None);
        assert_eq!(item_count(Signal::Traces, &[0x0b]), None, "group start");
        assert_eq!(item_count(Signal::Metrics, &[0xff; 11]), None);
    }
}
