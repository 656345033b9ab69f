//! Benchmark of the `tail_sampling` processor (ignored in `make test`; run by
//! `make bench-tail-sampling`, i.e. `otel-collector/bench/tail_sampling.sh`), in one process on
//! one thread, in the same run:
//!
//! - plain: OTLP protobuf bytes → decode → batch → sink;
//! - tail sampling: the same, with `tail_sampling` (errors, > 500 ms, 10 % of the rest) before
//!   `batch`: every span is held, then every trace decided, the kept ones sent on;
//! - memory: bytes the processor holds for 10,000 in-flight traces (5 spans each), counted by a
//!   counting global allocator (live bytes after ingesting minus before).
//!
//! Prints spans/s of both, the ratio, and bytes per in-flight trace and span.
//!
//! Run: `cargo test --release -p otel-collector --test sampling_bench -- --ignored --nocapture`.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{status, ResourceSpans, ScopeSpans, Span, Status};
use otel_collector::config::parse_component;
use otel_collector::pipeline::{ConsumeFuture, Consumer, StartContext, Telemetry};
use otel_collector::processor::batch::{BatchConfig, BatchProcessor};
use otel_collector::processor::tail_sampling::{Engine, TailSamplingConfig};
use prost::Message;
use rand::{rngs::StdRng, Rng, SeedableRng};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Counts live heap bytes.
struct Counting;
static LIVE: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size(), Ordering::Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        LIVE.fetch_add(new, Ordering::Relaxed);
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const SPANS_PER_TRACE: usize = 5;
/// Traces with a span in each request; each request holds one span of each.
const TRACES_PER_REQUEST: usize = 200;
const POLICIES: &str = r#"
decision_wait: 10s
num_traces: 200000
policies:
  - {name: errors, type: status_code, status_code: {status_codes: [ERROR]}}
  - {name: slow, type: latency, latency: {threshold_ms: 500}}
  - {name: share, type: probabilistic, probabilistic: {sampling_percentage: 10}}
"#;

fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.into())),
        }),
        ..Default::default()
    }
}

/// Requests of `traces` traces, a span of each of `TRACES_PER_REQUEST` traces per request, as a
/// typical SDK span (6 attributes) under a resource of 4 attributes; 2 % errors, 2 % slow.
fn workload(traces: usize, seed: u64) -> Vec<Vec<u8>> {
    let mut rng = StdRng::seed_from_u64(seed);
    let ids: Vec<[u8; 16]> = (0..traces).map(|_| rng.random()).collect();
    let resource = Resource {
        attributes: vec![
            kv("service.name", "checkout"),
            kv("service.instance.id", "checkout-7d9f8c6b5-x2x4q"),
            kv("host.name", "node-12"),
            kv("telemetry.sdk.language", "rust"),
        ],
        ..Default::default()
    };
    let mut out = Vec::new();
    for chunk in ids.chunks(TRACES_PER_REQUEST) {
        for part in 0..SPANS_PER_TRACE {
            let spans = chunk
                .iter()
                .enumerate()
                .map(|(i, t)| {
                    let start = 1_700_000_000_000_000_000u64 + part as u64 * 1_000_000;
                    let slow = i % 50 == 1 && part == 0;
                    Span {
                        trace_id: t.to_vec(),
                        span_id: rng.random::<[u8; 8]>().to_vec(),
                        parent_span_id: if part == 0 { vec![] } else { vec![1; 8] },
                        name: "GET /api/orders/{id}".into(),
                        kind: 2,
                        start_time_unix_nano: start,
                        end_time_unix_nano: start + if slow { 800_000_000 } else { 3_000_000 },
                        attributes: vec![
                            kv("http.request.method", "GET"),
                            kv("http.route", "/api/orders/{id}"),
                            kv("url.path", "/api/orders/1234"),
                            kv("server.address", "checkout"),
                            kv("network.protocol.version", "1.1"),
                            kv("user_agent.original", "loadgen/0.1"),
                        ],
                        status: (i % 50 == 0).then(|| Status {
                            code: status::StatusCode::Error as i32,
                            ..Default::default()
                        }),
                        ..Default::default()
                    }
                })
                .collect();
            let req = ExportTraceServiceRequest {
                resource_spans: vec![ResourceSpans {
                    resource: Some(resource.clone()),
                    scope_spans: vec![ScopeSpans {
                        scope: Some(InstrumentationScope {
                            name: "tracing-opentelemetry".into(),
                            version: "0.34".into(),
                            ..Default::default()
                        }),
                        spans,
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
            };
            out.push(req.encode_to_vec());
        }
    }
    out
}

/// Counts what reaches it.
#[derive(Default)]
struct Sink(AtomicU64);
impl Consumer for Sink {
    fn consume(&self, data: Telemetry) -> ConsumeFuture<'_> {
        self.0
            .fetch_add(data.item_count() as u64, Ordering::Relaxed);
        Box::pin(async { Ok(()) })
    }
}

fn batch(sink: Arc<Sink>) -> Arc<BatchProcessor> {
    let c: BatchConfig = parse_component(
        serde_yaml::from_str("{timeout: 200ms, send_batch_size: 8192, send_batch_max_size: 16384}")
            .unwrap(),
    )
    .unwrap();
    let ctx = StartContext::new("batch/bench", CancellationToken::new());
    BatchProcessor::start(
        "batch/bench",
        &c,
        otel_collector::pipeline::Signal::Traces,
        sink,
        &ctx,
    )
}

fn decode(b: &[u8]) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest::decode(b).unwrap()
}

/// Spans/s of decode → batch → sink over `reqs`, repeated `rounds` times.
async fn plain(reqs: &[Vec<u8>], rounds: usize) -> f64 {
    let sink = Arc::new(Sink::default());
    let b = batch(sink.clone());
    let t = Instant::now();
    let mut n = 0u64;
    for _ in 0..rounds {
        for r in reqs {
            let req = decode(r);
            n += req.resource_spans[0].scope_spans[0].spans.len() as u64;
            b.consume(Telemetry::Traces(req)).await.unwrap();
        }
    }
    n as f64 / t.elapsed().as_secs_f64()
}

/// Spans/s of decode → tail_sampling (hold all, decide all) → batch → sink; also the share kept.
async fn tail(reqs: &[Vec<u8>], rounds: usize) -> (f64, f64) {
    let sink = Arc::new(Sink::default());
    let b = batch(sink.clone());
    let cfg: TailSamplingConfig = parse_component(serde_yaml::from_str(POLICIES).unwrap()).unwrap();
    let t = Instant::now();
    let mut n = 0u64;
    let mut kept = 0u64;
    for round in 0..rounds {
        let mut e = Engine::new(&format!("tail_sampling/bench{round}"), &cfg).unwrap();
        let now = tokio::time::Instant::now();
        for r in reqs {
            let req = decode(r);
            n += req.resource_spans[0].scope_spans[0].spans.len() as u64;
            let passed = e.ingest(req, now);
            assert!(passed.is_empty());
        }
        let out = e.decide_due(now + Duration::from_secs(11), false);
        let data = Telemetry::Traces(ExportTraceServiceRequest {
            resource_spans: out,
        });
        kept += data.item_count() as u64;
        b.consume(data).await.unwrap();
    }
    (n as f64 / t.elapsed().as_secs_f64(), kept as f64 / n as f64)
}

#[tokio::test(flavor = "current_thread")]
#[ignore = "benchmark: make bench-tail-sampling"]
async fn bench_tail_sampling() {
    let seconds: f64 = std::env::var("TAIL_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10.0);
    let reqs = workload(20_000, 7);
    let spans = 20_000 * SPANS_PER_TRACE;
    // Size the rounds so each measurement takes about `seconds / 2`.
    let probe = plain(&reqs, 1).await;
    let rounds = ((probe * seconds / 2.0) / spans as f64).clamp(1.0, 200.0) as usize;
    // Interleave: plain, tail, plain, tail; report the better of each.
    let (p1, (t1, share)) = (plain(&reqs, rounds).await, tail(&reqs, rounds).await);
    let (p2, (t2, _)) = (plain(&reqs, rounds).await, tail(&reqs, rounds).await);
    let (p, t) = (p1.max(p2), t1.max(t2));
    println!(
        "tail_sampling bench: {spans} spans x {rounds} rounds per run, {} traces of {SPANS_PER_TRACE} spans, spans split over {SPANS_PER_TRACE} requests",
        20_000
    );
    println!("plain (decode -> batch -> sink):                 {p:>12.0} spans/s");
    println!("tail_sampling (decode -> tail_sampling -> batch): {t:>12.0} spans/s  ({:.1} % of plain; kept {:.1} % of spans)", 100.0 * t / p, 100.0 * share);

    // Memory held for 10,000 in-flight traces: live bytes after ingesting minus before decoding
    // (the decoded requests are consumed by the processor: what it keeps of them is counted).
    let cfg: TailSamplingConfig = parse_component(serde_yaml::from_str(POLICIES).unwrap()).unwrap();
    let reqs = workload(10_000, 8);
    let mut e = Engine::new("tail_sampling/mem", &cfg).unwrap();
    let now = tokio::time::Instant::now();
    let before = LIVE.load(Ordering::Relaxed) as f64;
    for r in &reqs {
        e.ingest(decode(r), now);
    }
    let held = LIVE.load(Ordering::Relaxed) as f64 - before;
    let (traces, spans) = (e.pending_traces(), e.pending_spans());
    assert_eq!(traces, 10_000);
    println!(
        "memory: {traces} in-flight traces ({spans} spans): {:.1} MiB held, {:.0} B per trace, {:.0} B per span (target < 1024 B per span)",
        held / (1 << 20) as f64,
        held / traces as f64,
        held / spans as f64
    );
    drop(e);
    // The same spans as decoded requests, for scale.
    let before = LIVE.load(Ordering::Relaxed) as f64;
    let decoded: Vec<ExportTraceServiceRequest> = reqs.iter().map(|r| decode(r)).collect();
    let decoded_bytes = LIVE.load(Ordering::Relaxed) as f64 - before;
    println!(
        "for scale: the same spans as decoded requests take {:.0} B per span",
        decoded_bytes / (decoded.len() * TRACES_PER_REQUEST) as f64
    );
}
