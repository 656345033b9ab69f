//! What the trace → metrics connectors (`span_metrics`, `service_graph`) share: the
//! [`Derive`] trait an aggregator implements, the [`DeriveConnector`] that feeds it spans and
//! flushes its metrics downstream on a timer (and once more at shutdown), and small helpers
//! (explicit-bucket histogram accumulator, attribute lookup, clocks).
//!
//! Tests: `cargo test -p otel-collector connector::derive`.

use super::Observe;
use crate::pipeline::{
    contain, ConsumeFuture, Consumer, SharedConsumer, Shutdown, ShutdownFuture, Telemetry,
};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{Exemplar, HistogramDataPoint};
use opentelemetry_proto::tonic::trace::v1::Span;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// An aggregator turning spans into metrics.
pub(crate) trait Derive: Send + Sync + 'static {
    /// Takes the spans of one request into the aggregate (`now` for expiry bookkeeping).
    fn ingest(&self, req: &ExportTraceServiceRequest, now: Instant);
    /// Periodic housekeeping besides flushing (expiring unpaired edges); default: nothing.
    fn tick(&self, _now: Instant) {}
    /// The metrics to send now, `unix_nanos` being the data points' timestamp; `None` when
    /// there is nothing to send.
    fn collect(&self, now: Instant, unix_nanos: u64) -> Option<ExportMetricsServiceRequest>;
}

/// Nanoseconds since the Unix epoch, now.
pub(crate) fn unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// A string attribute.
pub(crate) fn kv_str(key: &str, value: &str) -> KeyValue {
    kv(key, any_value::Value::StringValue(value.to_string()))
}

/// An attribute of any value.
pub(crate) fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

/// The value of attribute `key` in `attrs`, if present and set.
pub(crate) fn find<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a any_value::Value> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.as_ref())
}

/// The string value of attribute `key` in `attrs` (empty strings count as missing).
pub(crate) fn find_str<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a str> {
    match find(attrs, key) {
        Some(any_value::Value::StringValue(s)) if !s.is_empty() => Some(s),
        _ => None,
    }
}

/// Appends a compact, unambiguous encoding of `v` (type tag, length-prefixed bytes) to `out`,
/// for building map keys without allocating a string per lookup.
pub(crate) fn encode_value(v: Option<&any_value::Value>, out: &mut Vec<u8>) {
    use any_value::Value as V;
    let mut bytes = |tag: u8, b: &[u8]| {
        out.push(tag);
        out.extend_from_slice(&(b.len() as u32).to_le_bytes());
        out.extend_from_slice(b);
    };
    match v {
        None => bytes(0, &[]),
        Some(V::StringValue(s)) => bytes(1, s.as_bytes()),
        Some(V::BoolValue(b)) => bytes(2, &[*b as u8]),
        Some(V::IntValue(i)) => bytes(3, &i.to_le_bytes()),
        Some(V::DoubleValue(d)) => bytes(4, &d.to_bits().to_le_bytes()),
        Some(V::BytesValue(b)) => bytes(5, b),
        Some(other) => {
            let text = crate::translate::any_value_string(Some(&AnyValue {
                value: Some(other.clone()),
            }));
            bytes(6, text.as_bytes())
        }
    }
}

/// The resources of `req` that have a `service.name` (others are skipped, as upstream), each
/// with its attributes, service name and spans.
pub(crate) fn service_spans(
    req: &ExportTraceServiceRequest,
) -> impl Iterator<Item = (&[KeyValue], &str, impl Iterator<Item = &Span>)> {
    req.resource_spans.iter().filter_map(|rs| {
        let attrs: &[KeyValue] = rs
            .resource
            .as_ref()
            .map(|r| &r.attributes[..])
            .unwrap_or(&[]);
        let service = find_str(attrs, "service.name")?;
        Some((
            attrs,
            service,
            rs.scope_spans.iter().flat_map(|ss| &ss.spans),
        ))
    })
}

/// Span duration in nanoseconds (0 when the end precedes the start).
pub(crate) fn duration_nanos(start: u64, end: u64) -> u64 {
    end.saturating_sub(start)
}

/// Serde `with` module for a list of durations (`[2ms, 4ms, 1s]`), as histogram buckets are
/// written upstream.
pub(crate) mod duration_list {
    use crate::config::duration;
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    /// Parses every item with [`duration::parse`].
    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Duration>, D::Error> {
        Vec::<String>::deserialize(d)?
            .iter()
            .map(|t| duration::parse(t).map_err(serde::de::Error::custom))
            .collect()
    }

    /// Writes every item like Go does (`2ms`).
    pub(crate) fn serialize<S: Serializer>(v: &[Duration], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(|d| duration::format(*d)))
    }
}

/// An explicit-bucket histogram being accumulated.
#[derive(Debug, Clone)]
pub(crate) struct ExplicitHistogram {
    bounds: Arc<[f64]>,
    counts: Vec<u64>,
    count: u64,
    sum: f64,
    min: f64,
    max: f64,
    exemplars: Vec<Exemplar>,
}

impl ExplicitHistogram {
    /// An empty histogram with upper `bounds` (ascending).
    pub(crate) fn new(bounds: Arc<[f64]>) -> Self {
        let n = bounds.len() + 1;
        ExplicitHistogram {
            bounds,
            counts: vec![0; n],
            count: 0,
            sum: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            exemplars: Vec::new(),
        }
    }

    /// Records `v` (bucket `i` holds values in `(bounds[i-1], bounds[i]]`, as OTLP says).
    pub(crate) fn record(&mut self, v: f64) {
        let i = self.bounds.partition_point(|b| *b < v);
        self.counts[i] += 1;
        self.count += 1;
        self.sum += v;
        self.min = self.min.min(v);
        self.max = self.max.max(v);
    }

    /// Keeps `e` unless `max` exemplars are held already (`0` = no limit).
    pub(crate) fn add_exemplar(&mut self, e: Exemplar, max: usize) {
        if max == 0 || self.exemplars.len() < max {
            self.exemplars.push(e);
        }
    }

    /// Forgets the exemplars (after each flush).
    pub(crate) fn clear_exemplars(&mut self) {
        self.exemplars.clear();
    }

    /// The data point, with `attributes` and the time range.
    pub(crate) fn point(
        &self,
        attributes: Vec<KeyValue>,
        start: u64,
        now: u64,
    ) -> HistogramDataPoint {
        HistogramDataPoint {
            attributes,
            start_time_unix_nano: start,
            time_unix_nano: now,
            count: self.count,
            sum: Some(self.sum),
            bucket_counts: self.counts.clone(),
            explicit_bounds: self.bounds.to_vec(),
            exemplars: self.exemplars.clone(),
            flags: 0,
            min: (self.count > 0).then_some(self.min),
            max: (self.count > 0).then_some(self.max),
        }
    }
}

/// A started trace → metrics connector: the observer (or consumer) of the traces pipelines
/// that export to it, and (through [`Shutdown`]) its flush timer's lifecycle.
pub(crate) struct DeriveConnector<D: Derive> {
    id: String,
    kind: &'static str,
    derive: D,
    next: SharedConsumer,
    flush_interval: Duration,
    stop: CancellationToken,
    timer: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Wakes the timer task to flush now (observed requests with `flush_interval` zero).
    flush_now: Notify,
}

impl<D: Derive> DeriveConnector<D> {
    /// Starts the connector `id` feeding `next`: flushes every `flush_interval` (after each
    /// request when zero) and runs [`Derive::tick`] every `tick_interval` (never when zero).
    pub(crate) fn start(
        id: &str,
        kind: &'static str,
        derive: D,
        next: SharedConsumer,
        flush_interval: Duration,
        tick_interval: Duration,
        cancel: &CancellationToken,
    ) -> Arc<Self> {
        let c = Arc::new(DeriveConnector {
            id: id.to_string(),
            kind,
            derive,
            next,
            flush_interval,
            stop: cancel.child_token(),
            timer: Mutex::new(None),
            flush_now: Notify::new(),
        });
        let timer = Arc::clone(&c);
        let task = tokio::spawn(contain::supervise("connector", id.to_string(), move || {
            Arc::clone(&timer).run_timer(tick_interval)
        }));
        *c.timer.lock().unwrap_or_else(|e| e.into_inner()) = Some(task);
        c
    }

    /// Collects and sends; a refusal downstream drops that flush (logged): the aggregate is
    /// cumulative by default, so the next flush carries the totals again.
    pub(crate) async fn flush(&self) {
        let Some(req) = self.derive.collect(Instant::now(), unix_nanos()) else {
            return;
        };
        let send = self.next.consume(Telemetry::Metrics(req));
        match contain::catch("connector", &self.id, send).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(connector = %self.id, kind = self.kind, error = %e, "derived metrics not accepted downstream; dropped")
            }
            Err(_) => {
                tracing::warn!(connector = %self.id, kind = self.kind, "derived metrics dropped after a panic downstream")
            }
        }
    }

    async fn run_timer(self: Arc<Self>, tick_interval: Duration) {
        let far = Duration::from_secs(86_400 * 365);
        let flush_every = if self.flush_interval.is_zero() {
            far
        } else {
            self.flush_interval
        };
        let tick_every = if tick_interval.is_zero() {
            far
        } else {
            tick_interval
        };
        let mut flush = tokio::time::interval_at(Instant::now() + flush_every, flush_every);
        let mut tick = tokio::time::interval_at(Instant::now() + tick_every, tick_every);
        flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = flush.tick() => self.flush().await,
                _ = self.flush_now.notified() => self.flush().await,
                _ = tick.tick() => self.derive.tick(Instant::now()),
                _ = self.stop.cancelled() => return,
            }
        }
    }
}

impl<D: Derive> Consumer for DeriveConnector<D> {
    fn consume(&self, data: Telemetry) -> ConsumeFuture<'_> {
        Box::pin(async move {
            if let Telemetry::Traces(req) = &data {
                self.derive.ingest(req, Instant::now());
                if self.flush_interval.is_zero() {
                    self.flush().await;
                }
            }
            Ok(())
        })
    }
}

impl<D: Derive> Observe for DeriveConnector<D> {
    fn observe(&self, data: &Telemetry) {
        if let Telemetry::Traces(req) = data {
            self.derive.ingest(req, Instant::now());
            if self.flush_interval.is_zero() {
                self.flush_now.notify_one();
            }
        }
    }
}

impl<D: Derive> Shutdown for DeriveConnector<D> {
    fn shutdown(&self, deadline: Instant) -> ShutdownFuture<'_> {
        Box::pin(async move {
            self.stop.cancel();
            let task = self.timer.lock().unwrap_or_else(|e| e.into_inner()).take();
            if let Some(t) = task {
                let _ = tokio::time::timeout_at(deadline, t).await;
            }
            if tokio::time::timeout_at(deadline, self.flush())
                .await
                .is_err()
            {
                tracing::warn!(connector = %self.id, "final flush did not finish by the shutdown deadline");
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_upper_inclusive() {
        let mut h = ExplicitHistogram::new(Arc::from(vec![1.0, 2.0]));
        for v in [0.5, 1.0, 1.5, 2.0, 3.0] {
            h.record(v);
        }
        let p = h.point(vec![], 1, 2);
        assert_eq!(p.bucket_counts, vec![2, 2, 1]);
        assert_eq!(p.count, 5);
        assert_eq!(p.sum, Some(8.0));
        assert_eq!((p.min, p.max), (Some(0.5), Some(3.0)));
    }

    #[test]
    fn value_encoding_tells_types_apart() {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        encode_value(Some(&any_value::Value::StringValue("1".into())), &mut a);
        encode_value(Some(&any_value::Value::IntValue(1)), &mut b);
        assert_ne!(a, b);
        let (mut c, mut d) = (Vec::new(), Vec::new());
        encode_value(Some(&any_value::Value::StringValue("ab".into())), &mut c);
        encode_value(Some(&any_value::Value::StringValue("a".into())), &mut d);
        encode_value(Some(&any_value::Value::StringValue("b".into())), &mut d);
        assert_ne!(c, d);
    }
}
