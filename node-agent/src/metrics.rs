//! Building OTLP metric messages directly (no SDK aggregation): every scraper appends
//! points to a [`MetricSet`], which becomes one `ExportMetricsServiceRequest`.
//!
//! Metric names, units and instrument kinds are declared once as [`Desc`] constants in the
//! scrapers. Tests: `cargo test -p node-agent metrics::`.

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    metric, number_data_point, AggregationTemporality, Gauge, Metric, NumberDataPoint,
    ResourceMetrics, ScopeMetrics, Sum,
};
use opentelemetry_proto::tonic::resource::v1::Resource;

/// Instrument kind, mapped to the OTLP data type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Gauge.
    Gauge,
    /// Monotonic cumulative sum.
    Counter,
    /// Non-monotonic cumulative sum.
    UpDownCounter,
}

/// A metric's identity: name, unit, description and kind.
#[derive(Debug, Clone, Copy)]
pub struct Desc {
    /// Semantic-convention name.
    pub name: &'static str,
    /// UCUM unit.
    pub unit: &'static str,
    /// Short description.
    pub description: &'static str,
    /// Instrument kind.
    pub kind: Kind,
}

/// A point value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Val {
    /// Integer value.
    I(i64),
    /// Floating point value.
    F(f64),
}

/// String attribute.
pub fn kv(key: impl Into<String>, value: impl Into<String>) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        ..Default::default()
    }
}

/// Integer attribute.
pub fn kv_i(key: &'static str, value: i64) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue {
            value: Some(any_value::Value::IntValue(value)),
        }),
        ..Default::default()
    }
}

/// The metrics of one collection, in the order they were first added.
#[derive(Debug, Default)]
pub struct MetricSet {
    /// Collection time, ns since the epoch.
    pub time_ns: u64,
    /// Metrics built so far.
    pub metrics: Vec<Metric>,
}

impl MetricSet {
    /// An empty set stamped with `time_ns`.
    pub fn new(time_ns: u64) -> Self {
        Self {
            time_ns,
            metrics: Vec::with_capacity(64),
        }
    }

    /// Appends one point; `start_ns` is used for sums (cumulative start), ignored for gauges.
    pub fn add(&mut self, d: &Desc, start_ns: u64, attributes: Vec<KeyValue>, v: Val) {
        let time_ns = self.time_ns;
        let point = NumberDataPoint {
            attributes,
            start_time_unix_nano: if d.kind == Kind::Gauge { 0 } else { start_ns },
            time_unix_nano: time_ns,
            exemplars: Vec::new(),
            flags: 0,
            value: Some(match v {
                Val::I(i) => number_data_point::Value::AsInt(i),
                Val::F(f) => number_data_point::Value::AsDouble(f),
            }),
        };
        let m = self.metric_mut(d);
        match m.data.as_mut() {
            Some(metric::Data::Gauge(g)) => g.data_points.push(point),
            Some(metric::Data::Sum(s)) => s.data_points.push(point),
            _ => {}
        }
    }

    fn metric_mut(&mut self, d: &Desc) -> &mut Metric {
        let idx = match self.metrics.iter().rposition(|m| m.name == d.name) {
            Some(i) => i,
            None => {
                let data = match d.kind {
                    Kind::Gauge => metric::Data::Gauge(Gauge {
                        data_points: Vec::new(),
                    }),
                    Kind::Counter | Kind::UpDownCounter => metric::Data::Sum(Sum {
                        data_points: Vec::new(),
                        aggregation_temporality: AggregationTemporality::Cumulative as i32,
                        is_monotonic: d.kind == Kind::Counter,
                    }),
                };
                self.metrics.push(Metric {
                    name: d.name.to_string(),
                    description: d.description.to_string(),
                    unit: d.unit.to_string(),
                    metadata: Vec::new(),
                    data: Some(data),
                });
                self.metrics.len() - 1
            }
        };
        &mut self.metrics[idx]
    }

    /// Number of data points in the set.
    pub fn point_count(&self) -> usize {
        self.metrics
            .iter()
            .map(|m| match &m.data {
                Some(metric::Data::Gauge(g)) => g.data_points.len(),
                Some(metric::Data::Sum(s)) => s.data_points.len(),
                _ => 0,
            })
            .sum()
    }

    /// Wraps the set into an export request with `resource`.
    pub fn into_request(self, resource: &Resource) -> ExportMetricsServiceRequest {
        ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: Some(resource.clone()),
                scope_metrics: vec![ScopeMetrics {
                    scope: Some(InstrumentationScope {
                        name: "node-agent".to_string(),
                        version: env!("CARGO_PKG_VERSION").to_string(),
                        attributes: Vec::new(),
                        dropped_attributes_count: 0,
                    }),
                    metrics: self.metrics,
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            }],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const G: Desc = Desc {
        name: "g",
        unit: "1",
        description: "",
        kind: Kind::Gauge,
    };
    const C: Desc = Desc {
        name: "c",
        unit: "s",
        description: "",
        kind: Kind::Counter,
    };

    #[test]
    fn points_group_by_metric_and_sums_are_cumulative_monotonic() {
        let mut s = MetricSet::new(42);
        s.add(&C, 7, vec![kv("a", "x")], Val::F(1.5));
        s.add(&G, 7, vec![], Val::I(3));
        s.add(&C, 7, vec![kv("a", "y")], Val::F(2.5));
        assert_eq!(s.metrics.len(), 2);
        assert_eq!(s.point_count(), 3);
        let Some(metric::Data::Sum(sum)) = &s.metrics[0].data else {
            panic!("not a sum")
        };
        assert!(sum.is_monotonic);
        assert_eq!(
            sum.aggregation_temporality,
            AggregationTemporality::Cumulative as i32
        );
        assert_eq!(sum.data_points[1].start_time_unix_nano, 7);
        assert_eq!(sum.data_points[1].time_unix_nano, 42);
        let Some(metric::Data::Gauge(g)) = &s.metrics[1].data else {
            panic!("not a gauge")
        };
        assert_eq!(g.data_points[0].start_time_unix_nano, 0);
    }
}
