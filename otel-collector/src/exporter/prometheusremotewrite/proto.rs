//! Prometheus remote-write 1.0 messages (`prometheus.WriteRequest`), the subset we send, and the
//! conversion of translated families into time series split into bounded requests.

use crate::translate::{Family, Labels, PointValue};
use bytes::Bytes;
use prost::Message;

/// The staleness marker Prometheus uses (a NaN with this bit pattern).
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// `prometheus.WriteRequest`.
#[derive(Clone, PartialEq, Message)]
pub struct WriteRequest {
    /// The series.
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
}

/// `prometheus.TimeSeries` (float samples and exemplars; native histograms are not sent).
#[derive(Clone, PartialEq, Message)]
pub struct TimeSeries {
    /// Labels including `__name__`, sorted by name.
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    /// Samples in time order.
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
    /// Exemplars.
    #[prost(message, repeated, tag = "3")]
    pub exemplars: Vec<Exemplar>,
}

/// `prometheus.Label`.
#[derive(Clone, PartialEq, Message)]
pub struct Label {
    /// Name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Value.
    #[prost(string, tag = "2")]
    pub value: String,
}

/// `prometheus.Sample`.
#[derive(Clone, PartialEq, Message)]
pub struct Sample {
    /// Value.
    #[prost(double, tag = "1")]
    pub value: f64,
    /// Milliseconds since the Unix epoch.
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

/// `prometheus.Exemplar`.
#[derive(Clone, PartialEq, Message)]
pub struct Exemplar {
    /// `trace_id`, `span_id`, filtered attributes.
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    /// Value.
    #[prost(double, tag = "2")]
    pub value: f64,
    /// Milliseconds since the Unix epoch.
    #[prost(int64, tag = "3")]
    pub timestamp: i64,
}

/// One encoded, snappy-compressed request ready to send.
#[derive(Clone, Debug)]
pub struct EncodedRequest {
    /// The snappy-compressed protobuf body.
    pub body: Bytes,
    /// Samples it carries.
    pub samples: usize,
    /// OTLP data points it carries (each point counted in the request holding its first series).
    pub points: usize,
}

fn series(
    name: &str,
    suffix: &str,
    labels: &Labels,
    extra: Option<(&str, String)>,
    external: &Labels,
) -> Vec<Label> {
    let mut out: Vec<Label> = Vec::with_capacity(labels.len() + external.len() + 2);
    out.push(Label {
        name: "__name__".into(),
        value: format!("{name}{suffix}"),
    });
    for (k, v) in labels {
        out.push(Label {
            name: k.clone(),
            value: v.clone(),
        });
    }
    if let Some((k, v)) = extra {
        out.push(Label {
            name: k.into(),
            value: v,
        });
    }
    for (k, v) in external {
        if !out.iter().any(|l| l.name == *k) {
            out.push(Label {
                name: k.clone(),
                value: v.clone(),
            });
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

fn exemplar(e: &crate::translate::Exemplar) -> Exemplar {
    Exemplar {
        labels: e
            .labels
            .iter()
            .map(|(k, v)| Label {
                name: k.clone(),
                value: v.clone(),
            })
            .collect(),
        value: e.value,
        timestamp: e.timestamp_ms,
    }
}

/// Converts families into time series; the second item of each pair is 1 for the first series
/// of each point (to count points per request).
pub fn to_timeseries(families: &[Family], external: &Labels) -> Vec<(TimeSeries, usize)> {
    let mut out = Vec::new();
    for f in families {
        for p in &f.points {
            let sample = |v: f64| Sample {
                value: if p.stale {
                    f64::from_bits(STALE_NAN_BITS)
                } else {
                    v
                },
                timestamp: p.timestamp_ms,
            };
            let mut first = 1usize;
            let mut push = |ts: TimeSeries| {
                out.push((ts, first));
                first = 0;
            };
            match &p.value {
                PointValue::Number(v) => push(TimeSeries {
                    labels: series(&f.name, "", &p.labels, None, external),
                    samples: vec![sample(*v)],
                    exemplars: p.exemplars.iter().map(exemplar).collect(),
                }),
                PointValue::Histogram {
                    count,
                    sum,
                    buckets,
                } => {
                    let mut lower = f64::NEG_INFINITY;
                    for (le, c) in buckets {
                        let ex = p
                            .exemplars
                            .iter()
                            .filter(|e| e.value > lower && e.value <= *le)
                            .map(exemplar)
                            .collect();
                        lower = *le;
                        push(TimeSeries {
                            labels: series(
                                &f.name,
                                "_bucket",
                                &p.labels,
                                Some(("le", crate::translate::model::format_float(*le))),
                                external,
                            ),
                            samples: vec![sample(*c as f64)],
                            exemplars: ex,
                        });
                    }
                    if let Some(s) = sum {
                        push(TimeSeries {
                            labels: series(&f.name, "_sum", &p.labels, None, external),
                            samples: vec![sample(*s)],
                            exemplars: vec![],
                        });
                    }
                    push(TimeSeries {
                        labels: series(&f.name, "_count", &p.labels, None, external),
                        samples: vec![sample(*count as f64)],
                        exemplars: vec![],
                    });
                }
                PointValue::Summary {
                    count,
                    sum,
                    quantiles,
                } => {
                    for (q, v) in quantiles {
                        push(TimeSeries {
                            labels: series(
                                &f.name,
                                "",
                                &p.labels,
                                Some(("quantile", crate::translate::model::format_float(*q))),
                                external,
                            ),
                            samples: vec![sample(*v)],
                            exemplars: vec![],
                        });
                    }
                    push(TimeSeries {
                        labels: series(&f.name, "_sum", &p.labels, None, external),
                        samples: vec![sample(*sum)],
                        exemplars: vec![],
                    });
                    push(TimeSeries {
                        labels: series(&f.name, "_count", &p.labels, None, external),
                        samples: vec![sample(*count as f64)],
                        exemplars: vec![],
                    });
                }
            }
        }
    }
    out
}

/// Splits series into requests of at most `max_samples` samples and about `max_bytes`
/// uncompressed bytes (a single larger series still goes alone), encodes and compresses them.
pub fn encode_requests(
    series: Vec<(TimeSeries, usize)>,
    max_samples: usize,
    max_bytes: usize,
) -> Vec<EncodedRequest> {
    let mut out = Vec::new();
    let mut cur = WriteRequest::default();
    let mut samples = 0usize;
    let mut points = 0usize;
    let mut bytes = 0usize;
    let mut flush =
        |cur: &mut WriteRequest, samples: &mut usize, points: &mut usize, bytes: &mut usize| {
            if cur.timeseries.is_empty() {
                return;
            }
            let raw = cur.encode_to_vec();
            let body = snap::raw::Encoder::new()
                .compress_vec(&raw)
                .unwrap_or_default();
            out.push(EncodedRequest {
                body: Bytes::from(body),
                samples: *samples,
                points: *points,
            });
            cur.timeseries.clear();
            *samples = 0;
            *points = 0;
            *bytes = 0;
        };
    for (ts, first) in series {
        let n = ts.samples.len();
        let len = ts.encoded_len() + 4;
        if !cur.timeseries.is_empty()
            && (samples + n > max_samples.max(1) || bytes + len > max_bytes)
        {
            flush(&mut cur, &mut samples, &mut points, &mut bytes);
        }
        samples += n;
        points += first;
        bytes += len;
        cur.timeseries.push(ts);
    }
    flush(&mut cur, &mut samples, &mut points, &mut bytes);
    out
}

/// Decodes a snappy-compressed request (tests and the local sink use it).
///
/// # Errors
/// The body is not snappy or not a `WriteRequest`.
pub fn decode_request(body: &[u8]) -> Result<WriteRequest, String> {
    let raw = snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(|e| format!("snappy: {e}"))?;
    WriteRequest::decode(raw.as_slice()).map_err(|e| format!("protobuf: {e}"))
}
