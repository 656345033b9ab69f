//! Visitors over the attribute lists inside a [`Telemetry`] batch, shared by processors.

use crate::pipeline::Telemetry;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::metrics::v1::metric::Data;

/// Calls `f` on every resource's attribute list.
pub(crate) fn resource_attrs(t: &mut Telemetry, mut f: impl FnMut(&mut Vec<KeyValue>)) {
    match t {
        Telemetry::Traces(r) => r
            .resource_spans
            .iter_mut()
            .filter_map(|rs| rs.resource.as_mut())
            .for_each(|res| f(&mut res.attributes)),
        Telemetry::Metrics(r) => r
            .resource_metrics
            .iter_mut()
            .filter_map(|rs| rs.resource.as_mut())
            .for_each(|res| f(&mut res.attributes)),
        Telemetry::Logs(r) => r
            .resource_logs
            .iter_mut()
            .filter_map(|rs| rs.resource.as_mut())
            .for_each(|res| f(&mut res.attributes)),
    }
}

/// Makes sure every resource has a `Resource` (so inserts have somewhere to go).
pub(crate) fn ensure_resources(t: &mut Telemetry) {
    match t {
        Telemetry::Traces(r) => r.resource_spans.iter_mut().for_each(|rs| {
            rs.resource.get_or_insert_with(Default::default);
        }),
        Telemetry::Metrics(r) => r.resource_metrics.iter_mut().for_each(|rs| {
            rs.resource.get_or_insert_with(Default::default);
        }),
        Telemetry::Logs(r) => r.resource_logs.iter_mut().for_each(|rs| {
            rs.resource.get_or_insert_with(Default::default);
        }),
    }
}

/// Calls `f` on the attribute list of every span, log record and metric data point.
pub(crate) fn item_attrs(t: &mut Telemetry, mut f: impl FnMut(&mut Vec<KeyValue>)) {
    match t {
        Telemetry::Traces(r) => {
            for s in r
                .resource_spans
                .iter_mut()
                .flat_map(|rs| rs.scope_spans.iter_mut())
                .flat_map(|ss| ss.spans.iter_mut())
            {
                f(&mut s.attributes);
            }
        }
        Telemetry::Logs(r) => {
            for l in r
                .resource_logs
                .iter_mut()
                .flat_map(|rl| rl.scope_logs.iter_mut())
                .flat_map(|sl| sl.log_records.iter_mut())
            {
                f(&mut l.attributes);
            }
        }
        Telemetry::Metrics(r) => {
            for m in r
                .resource_metrics
                .iter_mut()
                .flat_map(|rm| rm.scope_metrics.iter_mut())
                .flat_map(|sm| sm.metrics.iter_mut())
            {
                match m.data.as_mut() {
                    Some(Data::Gauge(g)) => {
                        g.data_points.iter_mut().for_each(|p| f(&mut p.attributes))
                    }
                    Some(Data::Sum(s)) => {
                        s.data_points.iter_mut().for_each(|p| f(&mut p.attributes))
                    }
                    Some(Data::Histogram(h)) => {
                        h.data_points.iter_mut().for_each(|p| f(&mut p.attributes))
                    }
                    Some(Data::ExponentialHistogram(h)) => {
                        h.data_points.iter_mut().for_each(|p| f(&mut p.attributes))
                    }
                    Some(Data::Summary(s)) => {
                        s.data_points.iter_mut().for_each(|p| f(&mut p.attributes))
                    }
                    None => {}
                }
            }
        }
    }
}
