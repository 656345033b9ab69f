//! Item checks at the receiver: items the OTLP specification calls invalid are taken out of a
//! request before it enters the pipelines, and the sender learns how many through the export
//! response's `partial_success` (the rest of the request is accepted).
//!
//! Invalid means:
//! * a span whose `trace_id` is not 16 bytes or all zero, whose `span_id` is not 8 bytes or all
//!   zero, or whose `parent_span_id` is neither empty nor 8 bytes;
//! * a log record whose `trace_id` is neither empty nor 16 bytes, or `span_id` neither empty nor
//!   8 bytes;
//! * a metric without a name (all its data points are rejected);
//! * an exponential histogram data point whose bucket indexes leave the `int32` range the data
//!   model gives them (`offset + bucket_counts.len() - 1 > i32::MAX`, for the positive or the
//!   negative buckets): [`exp_histogram_problem`].

use crate::pipeline::Telemetry;

/// What was taken out of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// Spans, data points or log records removed.
    pub count: u64,
    /// Why, naming the first offending item; goes to `partial_success.error_message`.
    pub message: String,
}

/// Removes invalid items from `data`; `None` when everything is valid.
pub fn drop_invalid(data: &mut Telemetry) -> Option<Rejected> {
    let mut first: Option<String> = None;
    let count = match data {
        Telemetry::Traces(req) => drop_invalid_spans(req, &mut first),
        Telemetry::Metrics(req) => {
            drop_unnamed_metrics(req, &mut first) + drop_invalid_exp_points(req, &mut first)
        }
        Telemetry::Logs(req) => drop_invalid_logs(req, &mut first),
    };
    (count > 0).then(|| Rejected {
        count,
        message: format!(
            "{count} item(s) rejected as invalid per the OTLP specification; first: {}",
            first.unwrap_or_default()
        ),
    })
}

fn id_problem(what: &str, id: &[u8], len: usize, may_be_empty: bool) -> Option<String> {
    if id.is_empty() && may_be_empty {
        return None;
    }
    if id.len() != len {
        return Some(format!("{what} has {} bytes, must be {len}", id.len()));
    }
    if id.iter().all(|b| *b == 0) {
        return Some(format!("{what} is all zero"));
    }
    None
}

fn span_problem(s: &opentelemetry_proto::tonic::trace::v1::Span) -> Option<String> {
    id_problem("trace_id", &s.trace_id, 16, false)
        .or_else(|| id_problem("span_id", &s.span_id, 8, false))
        .or_else(|| {
            (!s.parent_span_id.is_empty() && s.parent_span_id.len() != 8).then(|| {
                format!(
                    "parent_span_id has {} bytes, must be 8 or empty",
                    s.parent_span_id.len()
                )
            })
        })
        .map(|p| format!("span `{}`: {p}", s.name))
}

/// Removes the items `problem` objects to from a resource → scope → item tree, then the
/// scopes and resources left empty. `problem` gives an item's weight (items or data points it
/// stands for) and why it is invalid; the first reason goes to `first`. Returns the weight
/// removed.
fn retain_valid<R, S, T>(
    resources: &mut Vec<R>,
    scopes: fn(&mut R) -> &mut Vec<S>,
    items: fn(&mut S) -> &mut Vec<T>,
    mut problem: impl FnMut(&T) -> Option<(u64, String)>,
    first: &mut Option<String>,
) -> u64 {
    let mut weight = 0u64;
    let mut removed = false;
    for resource in resources.iter_mut() {
        let scope_list = scopes(resource);
        for scope in scope_list.iter_mut() {
            items(scope).retain(|item| match problem(item) {
                None => true,
                Some((w, why)) => {
                    weight += w;
                    removed = true;
                    first.get_or_insert(why);
                    false
                }
            });
        }
        if removed {
            scope_list.retain_mut(|scope| !items(scope).is_empty());
        }
    }
    if removed {
        resources.retain_mut(|resource| !scopes(resource).is_empty());
    }
    weight
}

fn drop_invalid_spans(
    req: &mut opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest,
    first: &mut Option<String>,
) -> u64 {
    retain_valid(
        &mut req.resource_spans,
        |rs| &mut rs.scope_spans,
        |ss| &mut ss.spans,
        |s| span_problem(s).map(|p| (1, p)),
        first,
    )
}

fn drop_invalid_logs(
    req: &mut opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest,
    first: &mut Option<String>,
) -> u64 {
    retain_valid(
        &mut req.resource_logs,
        |rl| &mut rl.scope_logs,
        |sl| &mut sl.log_records,
        |r| {
            id_problem("trace_id", &r.trace_id, 16, true)
                .or_else(|| id_problem("span_id", &r.span_id, 8, true))
                .map(|p| (1, format!("log record: {p}")))
        },
        first,
    )
}

fn drop_unnamed_metrics(
    req: &mut opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest,
    first: &mut Option<String>,
) -> u64 {
    retain_valid(
        &mut req.resource_metrics,
        |rm| &mut rm.scope_metrics,
        |sm| &mut sm.metrics,
        |m| {
            m.name.is_empty().then(|| {
                (
                    crate::pipeline::data_point_count(m.data.as_ref()) as u64,
                    "a metric has no name".to_string(),
                )
            })
        },
        first,
    )
}

/// Why an exponential histogram point is invalid, if it is: bucket indexes (`offset + i`) that
/// do not fit the data model's `int32`.
pub fn exp_histogram_problem(
    dp: &opentelemetry_proto::tonic::metrics::v1::ExponentialHistogramDataPoint,
) -> Option<String> {
    for (side, b) in [("positive", &dp.positive), ("negative", &dp.negative)] {
        let Some(b) = b else { continue };
        let last = i64::from(b.offset) + b.bucket_counts.len() as i64 - 1;
        if !b.bucket_counts.is_empty() && last > i64::from(i32::MAX) {
            return Some(format!(
                "exponential histogram {side} buckets: offset {} with {} buckets puts bucket indexes beyond 2^31-1",
                b.offset,
                b.bucket_counts.len()
            ));
        }
    }
    None
}

/// Removes exponential histogram points [`exp_histogram_problem`] objects to (metrics whose
/// points all go stay, empty).
fn drop_invalid_exp_points(
    req: &mut opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest,
    first: &mut Option<String>,
) -> u64 {
    use opentelemetry_proto::tonic::metrics::v1::metric::Data;
    let mut removed = 0u64;
    for m in req
        .resource_metrics
        .iter_mut()
        .flat_map(|rm| &mut rm.scope_metrics)
        .flat_map(|sm| &mut sm.metrics)
    {
        let name = &m.name;
        let Some(Data::ExponentialHistogram(h)) = &mut m.data else {
            continue;
        };
        h.data_points.retain(|dp| match exp_histogram_problem(dp) {
            None => true,
            Some(why) => {
                removed += 1;
                first.get_or_insert_with(|| format!("metric `{name}`: {why}"));
                false
            }
        });
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    use opentelemetry_proto::tonic::metrics::v1::{
        metric, Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics,
    };
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

    fn span(name: &str, trace_id: Vec<u8>, span_id: Vec<u8>) -> Span {
        Span {
            name: name.into(),
            trace_id,
            span_id,
            ..Default::default()
        }
    }

    fn traces(groups: Vec<Vec<Span>>) -> Telemetry {
        Telemetry::Traces(ExportTraceServiceRequest {
            resource_spans: groups
                .into_iter()
                .map(|spans| ResourceSpans {
                    scope_spans: vec![ScopeSpans {
                        spans,
                        ..Default::default()
                    }],
                    ..Default::default()
                })
                .collect(),
        })
    }

    #[test]
    fn valid_requests_are_untouched() {
        let mut t = traces(vec![vec![span("ok", vec![1; 16], vec![2; 8])]]);
        let before = t.clone();
        assert_eq!(drop_invalid(&mut t), None);
        assert_eq!(t, before);
    }

    #[test]
    fn bad_spans_are_removed_and_emptied_groups_go() {
        let mut t = traces(vec![
            vec![
                span("ok", vec![1; 16], vec![2; 8]),
                span("short", vec![1; 15], vec![2; 8]),
            ],
            vec![span("zero", vec![0; 16], vec![2; 8])],
            vec![span("nospan", vec![1; 16], vec![])],
        ]);
        let r = drop_invalid(&mut t).unwrap();
        assert_eq!(r.count, 3);
        assert!(
            r.message
                .contains("span `short`: trace_id has 15 bytes, must be 16"),
            "{}",
            r.message
        );
        let Telemetry::Traces(req) = t else {
            unreachable!()
        };
        assert_eq!(req.resource_spans.len(), 1);
        assert_eq!(req.resource_spans[0].scope_spans[0].spans[0].name, "ok");
    }

    #[test]
    fn bad_parent_span_id_is_rejected_but_empty_is_fine() {
        let mut root = span("root", vec![1; 16], vec![2; 8]);
        let mut bad = span("child", vec![1; 16], vec![3; 8]);
        bad.parent_span_id = vec![2; 4];
        root.parent_span_id = vec![];
        let mut t = traces(vec![vec![root, bad]]);
        let r = drop_invalid(&mut t).unwrap();
        assert_eq!(r.count, 1);
        assert!(
            r.message.contains("parent_span_id has 4 bytes"),
            "{}",
            r.message
        );
    }

    #[test]
    fn log_records_may_omit_ids_but_not_give_wrong_ones() {
        let rec = |trace_id: Vec<u8>, span_id: Vec<u8>| LogRecord {
            trace_id,
            span_id,
            ..Default::default()
        };
        let mut t = Telemetry::Logs(ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                scope_logs: vec![ScopeLogs {
                    log_records: vec![
                        rec(vec![], vec![]),
                        rec(vec![1; 16], vec![2; 8]),
                        rec(vec![1; 3], vec![]),
                    ],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        });
        let r = drop_invalid(&mut t).unwrap();
        assert_eq!(r.count, 1);
        assert_eq!(t.item_count(), 2);
    }

    #[test]
    fn exponential_histogram_points_with_out_of_range_buckets_are_rejected() {
        use opentelemetry_proto::tonic::metrics::v1::exponential_histogram_data_point::Buckets;
        use opentelemetry_proto::tonic::metrics::v1::{
            ExponentialHistogram, ExponentialHistogramDataPoint,
        };
        let point = |offset: i32, n: usize, negative: bool| {
            let b = Some(Buckets {
                offset,
                bucket_counts: vec![1; n],
            });
            let mut dp = ExponentialHistogramDataPoint {
                count: n as u64,
                ..Default::default()
            };
            if negative {
                dp.negative = b;
            } else {
                dp.positive = b;
            }
            dp
        };
        let mut t = Telemetry::Metrics(ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                scope_metrics: vec![ScopeMetrics {
                    metrics: vec![Metric {
                        name: "latency".into(),
                        data: Some(metric::Data::ExponentialHistogram(ExponentialHistogram {
                            data_points: vec![
                                point(i32::MAX - 199, 200, false), // last index i32::MAX: valid
                                point(i32::MAX - 2, 200, false),
                                point(i32::MAX, 2, true),
                                point(i32::MIN, 200, true), // valid
                                point(i32::MAX, 0, false),  // no buckets: valid
                            ],
                            aggregation_temporality: 2,
                        })),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        });
        let r = drop_invalid(&mut t).unwrap();
        assert_eq!(r.count, 2);
        assert!(
            r.message.contains("metric `latency`: exponential histogram positive buckets: offset 2147483645 with 200 buckets"),
            "{}",
            r.message
        );
        assert_eq!(t.item_count(), 3);
    }

    #[test]
    fn unnamed_metrics_reject_all_their_points() {
        let gauge = |name: &str, points: usize| Metric {
            name: name.into(),
            data: Some(metric::Data::Gauge(Gauge {
                data_points: vec![NumberDataPoint::default(); points],
            })),
            ..Default::default()
        };
        let mut t = Telemetry::Metrics(ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                scope_metrics: vec![ScopeMetrics {
                    metrics: vec![gauge("", 3), gauge("load", 2)],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        });
        let r = drop_invalid(&mut t).unwrap();
        assert_eq!(r.count, 3);
        assert_eq!(t.item_count(), 2);
        assert!(r.message.contains("no name"));
    }
}
