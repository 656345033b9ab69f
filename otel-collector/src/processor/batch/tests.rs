//! Batching edge cases: size trigger, split of oversize batches, timeout, flush on shutdown.

use super::*;
use crate::pipeline::{ConsumeFuture, Consumer};
use opentelemetry_proto::tonic::metrics::v1::{NumberDataPoint, ResourceMetrics};
use opentelemetry_proto::tonic::trace::v1::Span;
use std::sync::Mutex as StdMutex;

#[derive(Default)]
struct Sink(StdMutex<Vec<Telemetry>>);
impl Consumer for Sink {
    fn consume(&self, d: Telemetry) -> ConsumeFuture<'_> {
        self.0.lock().unwrap().push(d);
        Box::pin(async { Ok(()) })
    }
}
impl Sink {
    fn sizes(&self) -> Vec<usize> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .map(|t| t.item_count())
            .collect()
    }
}

/// A trace batch with `resources` resources × `scopes` scopes × `spans` spans, span names numbered.
fn traces(resources: usize, scopes: usize, spans: usize, start: usize) -> Telemetry {
    let mut n = start;
    Telemetry::Traces(ExportTraceServiceRequest {
        resource_spans: (0..resources)
            .map(|_| ResourceSpans {
                scope_spans: (0..scopes)
                    .map(|_| ScopeSpans {
                        spans: (0..spans)
                            .map(|_| {
                                n += 1;
                                Span {
                                    name: format!("s{}", n - 1),
                                    ..Default::default()
                                }
                            })
                            .collect(),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            })
            .collect(),
    })
}

fn names(t: &Telemetry) -> Vec<String> {
    match t {
        Telemetry::Traces(r) => r
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .flat_map(|s| &s.spans)
            .map(|s| s.name.clone())
            .collect(),
        _ => vec![],
    }
}

fn cfg(timeout_ms: u64, size: usize, max: usize) -> BatchConfig {
    BatchConfig {
        timeout: Duration::from_millis(timeout_ms),
        send_batch_size: size,
        send_batch_max_size: max,
    }
}

fn ctx() -> StartContext {
    StartContext::new("batch", CancellationToken::new())
}

#[test]
fn split_front_keeps_order_across_resources_and_scopes() {
    let mut t = traces(2, 2, 3, 0); // 12 spans
    let front = split_front(&mut t, 5);
    assert_eq!(names(&front), ["s0", "s1", "s2", "s3", "s4"]);
    assert_eq!(t.item_count(), 7);
    assert_eq!(names(&t)[0], "s5");
    let rest = split_front(&mut t, 7);
    assert_eq!(rest.item_count(), 7);
    assert_eq!(t.item_count(), 0);
}

#[test]
fn split_metrics_at_data_point_granularity() {
    let metric = Metric {
        name: "m".into(),
        data: Some(Data::Sum(Sum {
            data_points: (0..5)
                .map(|i| NumberDataPoint {
                    time_unix_nano: i,
                    ..Default::default()
                })
                .collect(),
            aggregation_temporality: 2,
            is_monotonic: true,
        })),
        ..Default::default()
    };
    let mut t = Telemetry::Metrics(ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![metric],
                ..Default::default()
            }],
            ..Default::default()
        }],
    });
    let front = split_front(&mut t, 2);
    assert_eq!(front.item_count(), 2);
    assert_eq!(t.item_count(), 3);
    let Telemetry::Metrics(f) = &front else {
        unreachable!()
    };
    let m = &f.resource_metrics[0].scope_metrics[0].metrics[0];
    assert_eq!(m.name, "m");
    let Some(Data::Sum(s)) = &m.data else {
        unreachable!()
    };
    assert!(s.is_monotonic);
    assert_eq!(s.aggregation_temporality, 2);
}

#[tokio::test]
async fn sends_at_size_and_splits_oversize() {
    let sink = Arc::new(Sink::default());
    let b = BatchProcessor::start(
        "batch",
        &cfg(60_000, 10, 15),
        Signal::Traces,
        sink.clone(),
        &ctx(),
    );
    b.consume(traces(1, 1, 4, 0)).await.unwrap();
    assert!(sink.sizes().is_empty(), "below send_batch_size: held");
    b.consume(traces(1, 1, 36, 4)).await.unwrap(); // 40 held → 15, 15, then 10 ≥ 10 → 10
    assert_eq!(sink.sizes(), vec![15, 15, 10]);
    let all: Vec<String> = sink.0.lock().unwrap().iter().flat_map(names).collect();
    let expected: Vec<String> = (0..40).map(|i| format!("s{i}")).collect();
    assert_eq!(all, expected, "order preserved, nothing lost");
    b.shutdown(Instant::now() + Duration::from_secs(1)).await;
}

#[tokio::test]
async fn timeout_flushes_partial_batch() {
    let sink = Arc::new(Sink::default());
    let b = BatchProcessor::start(
        "batch",
        &cfg(50, 1000, 0),
        Signal::Traces,
        sink.clone(),
        &ctx(),
    );
    b.consume(traces(1, 1, 3, 0)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sink.sizes(), vec![3]);
    b.shutdown(Instant::now() + Duration::from_secs(1)).await;
}

#[tokio::test]
async fn shutdown_flushes_what_is_held() {
    let sink = Arc::new(Sink::default());
    let b = BatchProcessor::start(
        "batch",
        &cfg(60_000, 1000, 0),
        Signal::Traces,
        sink.clone(),
        &ctx(),
    );
    b.consume(traces(2, 1, 2, 0)).await.unwrap();
    assert!(sink.sizes().is_empty());
    b.shutdown(Instant::now() + Duration::from_secs(1)).await;
    assert_eq!(sink.sizes(), vec![4]);
    b.consume(traces(1, 1, 1, 0)).await.unwrap();
    assert_eq!(
        sink.sizes(),
        vec![4, 1],
        "after shutdown data passes straight through"
    );
}

#[tokio::test]
async fn empty_batches_are_ignored() {
    let sink = Arc::new(Sink::default());
    let b = BatchProcessor::start("batch", &cfg(0, 1, 0), Signal::Traces, sink.clone(), &ctx());
    b.consume(Telemetry::Traces(Default::default()))
        .await
        .unwrap();
    assert!(sink.sizes().is_empty());
}

#[test]
fn max_below_size_is_rejected() {
    let e = cfg(200, 100, 50).validate().unwrap_err();
    assert_eq!(e.path, "send_batch_max_size");
}

/// Panics on a batch holding a span named `poison` (before returning its future, as a stage
/// doing its work synchronously would), takes the others.
#[derive(Default)]
struct Poisoned(Sink);
impl Consumer for Poisoned {
    fn consume(&self, d: Telemetry) -> ConsumeFuture<'_> {
        if names(&d).iter().any(|n| n == "poison") {
            panic!("downstream bug on a poison batch");
        }
        self.0.consume(d)
    }
}

/// A panic downstream of a timed flush drops that batch, is counted, and timed flushes go on
/// (the timer task used to die with it, so later partial batches were never sent).
#[tokio::test]
async fn a_panic_downstream_does_not_stop_timed_flushes() {
    let sink = Arc::new(Poisoned::default());
    let b = BatchProcessor::start(
        "batch/panic",
        &cfg(20, 1000, 0),
        Signal::Traces,
        sink.clone(),
        &ctx(),
    );
    let mut poison = traces(1, 1, 1, 0);
    if let Telemetry::Traces(r) = &mut poison {
        r.resource_spans[0].scope_spans[0].spans[0].name = "poison".into();
    }
    b.consume(poison).await.unwrap();
    let until = Instant::now() + Duration::from_secs(10);
    while contain::panics("processor", "batch/panic") == 0 {
        assert!(Instant::now() < until, "the poison batch was never flushed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    b.consume(traces(1, 1, 3, 0)).await.unwrap();
    while sink.0.sizes().is_empty() {
        assert!(
            Instant::now() < until,
            "no timed flush after the panic: the timer task died"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(sink.0.sizes(), vec![3]);
    assert_eq!(contain::panics("processor", "batch/panic"), 1);
    b.shutdown(Instant::now() + Duration::from_secs(1)).await;
}

/// Refuses every batch (a full persistent queue).
struct Refuses;
impl Consumer for Refuses {
    fn consume(&self, _d: Telemetry) -> ConsumeFuture<'_> {
        Box::pin(async {
            Err(ConsumeError::Refused {
                reason: "full".into(),
                retry_after: Duration::from_secs(1),
            })
        })
    }
}

/// Holds every consume until the gate opens, then accepts.
struct Gated(tokio::sync::Semaphore, Sink);
impl Consumer for Gated {
    fn consume(&self, d: Telemetry) -> ConsumeFuture<'_> {
        Box::pin(async move {
            let _p = self.0.acquire().await.unwrap();
            self.1.consume(d).await
        })
    }
}

/// With durable acks the processor holds nothing: each consume goes downstream at once (split
/// by `send_batch_max_size`), concurrent callers are not merged, and the caller is answered
/// with the downstream outcome once downstream answered; without durable acks, at once with Ok.
#[tokio::test]
async fn durable_acks_forward_each_request_and_return_the_downstream_outcome() {
    let sink = Arc::new(Sink::default());
    let dctx = ctx().with_durable_acks(true);
    // A 60 s timeout and a size far above the data: nothing would flush for a minute.
    let p = BatchProcessor::start(
        "batch",
        &cfg(60_000, 8192, 0),
        Signal::Traces,
        sink.clone(),
        &dctx,
    );
    p.consume(traces(1, 1, 3, 0)).await.unwrap();
    assert_eq!(sink.sizes(), vec![3], "sent before the caller was answered");
    // Concurrent callers: each request is its own send (not merged into one flush).
    let (a, b) = tokio::join!(
        p.consume(traces(1, 1, 600, 0)),
        p.consume(traces(1, 1, 700, 0))
    );
    a.unwrap();
    b.unwrap();
    assert_eq!(sink.sizes(), vec![3, 600, 700]);
    // No quiet wait per request: 500 sequential one-span requests take far less than the
    // 500 x 2 ms a quiet flush after each would.
    let t = std::time::Instant::now();
    for i in 0..500 {
        p.consume(traces(1, 1, 1, i)).await.unwrap();
    }
    assert!(
        t.elapsed() < Duration::from_millis(1000),
        "{:?} for 500 requests",
        t.elapsed()
    );
    assert_eq!(sink.sizes().len(), 503);
    p.shutdown(Instant::now() + Duration::from_secs(1)).await;

    // send_batch_max_size splits a request; all pieces go down before the answer.
    let sink = Arc::new(Sink::default());
    let p = BatchProcessor::start(
        "batch",
        &cfg(60_000, 1000, 1000),
        Signal::Traces,
        sink.clone(),
        &dctx,
    );
    p.consume(traces(1, 1, 2500, 0)).await.unwrap();
    assert_eq!(sink.sizes(), vec![1000, 1000, 500]);
    p.shutdown(Instant::now() + Duration::from_secs(1)).await;

    // The answer waits for downstream's answer (the append), not longer.
    let gated = Arc::new(Gated(tokio::sync::Semaphore::new(0), Sink::default()));
    let p = BatchProcessor::start(
        "batch",
        &cfg(60_000, 8192, 0),
        Signal::Traces,
        gated.clone(),
        &dctx,
    );
    let pending = p.consume(traces(1, 1, 5, 0));
    tokio::pin!(pending);
    assert!(
        tokio::time::timeout(Duration::from_millis(50), &mut pending)
            .await
            .is_err(),
        "answered before downstream took the data"
    );
    gated.0.add_permits(1);
    tokio::time::timeout(Duration::from_secs(5), &mut pending)
        .await
        .expect("answered once downstream answered")
        .unwrap();
    assert_eq!(gated.1.sizes(), vec![5]);
    p.shutdown(Instant::now() + Duration::from_secs(1)).await;

    let p = BatchProcessor::start(
        "batch",
        &cfg(20, 1000, 0),
        Signal::Traces,
        Arc::new(Refuses),
        &dctx,
    );
    let err = p.consume(traces(1, 1, 2, 0)).await.unwrap_err();
    assert!(
        err.is_retryable(),
        "a refusal downstream reaches the caller: {err}"
    );
    p.shutdown(Instant::now() + Duration::from_secs(1)).await;

    let p = BatchProcessor::start(
        "batch",
        &cfg(20, 1000, 0),
        Signal::Traces,
        Arc::new(Refuses),
        &ctx(),
    );
    p.consume(traces(1, 1, 2, 0)).await.unwrap();
    p.shutdown(Instant::now() + Duration::from_secs(1)).await;
}
