//! Benchmark of the trace → metrics connectors (ignored in `make test`; run by
//! `make bench-connectors`, i.e. `otel-collector/bench/connectors.sh`, which pins the process to
//! one core with `taskset`).
//!
//! `bench_connectors`: spans/s on one tokio thread (mimalloc, as the binary) through two pipelines, alternated in the same
//! run: plain = OTLP protobuf decode (the receiver's work) → `batch` → a sink that encodes each
//! batch to protobuf (the OTLP exporter's work, without the network); with connectors = the
//! same plus `spanmetrics` and `servicegraph` reading each batch before the fan-out (as the graph
//! wires them), flushing every
//! second into a metrics sink that encodes too. Traces are three-service orders (five spans,
//! eight attributes each, 20 operations). Prints spans/s per pipeline and the connectors' cost
//! as a share of plain throughput (target: under 30 %).
//!
//! Run: `cargo test --release -p otel-collector --test conn_bench -- --ignored --nocapture`.
//! Env: CONN_BENCH_SECONDS (per pipeline and round, default 5), CONN_BENCH_ROUNDS (default 2).

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use otel_collector::config::ComponentKind;
use otel_collector::connector::{ConnectorConfig, Observe, Observed};
use otel_collector::pipeline::fanout::FanOut;
use otel_collector::pipeline::{
    ConsumeFuture, Consumer, SharedConsumer, Shutdown, Signal, StartContext, Telemetry,
};
use otel_collector::processor::batch::{BatchConfig, BatchProcessor};
use prost::Message;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

// The collector binary's allocator, so allocation costs are the binary's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Orders (traces) per request: 100 × 5 spans.
const ORDERS_PER_REQUEST: usize = 100;

fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.into())),
        }),
        ..Default::default()
    }
}

fn span(trace: [u8; 16], id: u64, parent: u64, kind: SpanKind, name: &str, us: u64) -> Span {
    let start = 1_700_000_000_000_000_000u64;
    Span {
        trace_id: trace.to_vec(),
        span_id: id.to_be_bytes().to_vec(),
        parent_span_id: if parent == 0 {
            Vec::new()
        } else {
            parent.to_be_bytes().to_vec()
        },
        name: name.into(),
        kind: kind as i32,
        start_time_unix_nano: start,
        end_time_unix_nano: start + us * 1000,
        attributes: vec![
            kv("http.request.method", "POST"),
            kv("http.route", name),
            kv("url.scheme", "http"),
            kv("server.address", "127.0.0.1"),
            kv("network.protocol.version", "1.1"),
            kv("user_agent.original", "loadgen/1.0"),
            kv("http.response.status_code", "200"),
            kv("client.address", "127.0.0.1"),
        ],
        ..Default::default()
    }
}

fn resource(service: &str, spans: Vec<Span>) -> ResourceSpans {
    ResourceSpans {
        resource: Some(Resource {
            attributes: vec![
                kv("service.name", service),
                kv("service.instance.id", &format!("{service}-1")),
                kv("telemetry.sdk.language", "rust"),
            ],
            ..Default::default()
        }),
        scope_spans: vec![ScopeSpans {
            spans,
            ..Default::default()
        }],
        schema_url: String::new(),
    }
}

/// Request `r`: [`ORDERS_PER_REQUEST`] orders, frontend/inventory/payment spans per resource.
fn request(r: u64) -> ExportTraceServiceRequest {
    let (mut front, mut inv, mut pay) = (Vec::new(), Vec::new(), Vec::new());
    for o in 0..ORDERS_PER_REQUEST as u64 {
        let mut trace = [0u8; 16];
        trace[..8].copy_from_slice(&r.to_be_bytes());
        trace[8..].copy_from_slice(&o.to_be_bytes());
        let op = format!("/api/op{}", o % 20);
        let base = o * 8 + 1;
        front.push(span(trace, base, 0, SpanKind::Server, &op, 30_000 + o * 97));
        front.push(span(
            trace,
            base + 1,
            base,
            SpanKind::Client,
            "GET /stock",
            5_000,
        ));
        front.push(span(
            trace,
            base + 2,
            base,
            SpanKind::Client,
            "POST /charge",
            20_000,
        ));
        inv.push(span(
            trace,
            base + 3,
            base + 1,
            SpanKind::Server,
            "GET /stock",
            4_000 + o,
        ));
        pay.push(span(
            trace,
            base + 4,
            base + 2,
            SpanKind::Server,
            "POST /charge",
            15_000 + o,
        ));
    }
    ExportTraceServiceRequest {
        resource_spans: vec![
            resource("frontend", front),
            resource("inventory", inv),
            resource("payment", pay),
        ],
    }
}

/// Encodes what it gets (an OTLP exporter's work without the network) and counts items.
struct EncodeSink {
    items: AtomicU64,
    bytes: AtomicU64,
}

impl Consumer for EncodeSink {
    fn consume(&self, data: Telemetry) -> ConsumeFuture<'_> {
        Box::pin(async move {
            let n = match &data {
                Telemetry::Traces(r) => r.encode_to_vec().len(),
                Telemetry::Metrics(r) => r.encode_to_vec().len(),
                Telemetry::Logs(r) => r.encode_to_vec().len(),
            };
            self.bytes.fetch_add(n as u64, Ordering::Relaxed);
            self.items
                .fetch_add(data.item_count() as u64, Ordering::Relaxed);
            Ok(())
        })
    }
}

fn sink() -> Arc<EncodeSink> {
    Arc::new(EncodeSink {
        items: AtomicU64::new(0),
        bytes: AtomicU64::new(0),
    })
}

fn connector(kind: &str, yaml: &str) -> ConnectorConfig {
    let c = ConnectorConfig::parse_kind(kind, serde_yaml::from_str(yaml).expect("yaml"))
        .expect("connector config");
    c.check().expect("valid");
    c
}

/// One pipeline under test, with what must be stopped after.
struct Pipeline {
    head: SharedConsumer,
    lifecycles: Vec<Arc<dyn Shutdown>>,
    metrics: Arc<EncodeSink>,
}

fn pipeline(with_connectors: bool, cancel: &CancellationToken) -> Pipeline {
    let ctx = StartContext::new("bench", cancel.clone());
    let traces = sink();
    let batch = BatchProcessor::start(
        "batch",
        &BatchConfig::default(),
        Signal::Traces,
        traces,
        &ctx,
    );
    let outs: Vec<SharedConsumer> = vec![batch.clone()];
    let mut lifecycles: Vec<Arc<dyn Shutdown>> = vec![batch];
    let mut observers: Vec<Arc<dyn Observe>> = Vec::new();
    let metrics = sink();
    if with_connectors {
        let sm = connector(
            "spanmetrics",
            "{histogram: {unit: s}, metrics_flush_interval: 1s}",
        );
        let sg = connector(
            "servicegraph",
            "{store: {ttl: 2s, max_items: 100000}, metrics_flush_interval: 1s}",
        );
        for (id, c) in [("spanmetrics", sm), ("servicegraph", sg)] {
            // Wired as the graph does: read by reference before the fan-out.
            let built = c.build(id, Signal::Traces, metrics.clone(), &ctx);
            observers.extend(built.observer);
            lifecycles.extend(built.lifecycle);
        }
    }
    Pipeline {
        head: Observed::build(observers, FanOut::build(outs)),
        lifecycles,
        metrics,
    }
}

/// Feeds decoded `bodies` for `secs`; returns (spans, wall seconds).
async fn run(p: &Pipeline, bodies: &[Vec<u8>], spans_per_req: u64, secs: u64) -> (u64, f64) {
    let t0 = Instant::now();
    let mut spans = 0u64;
    let mut i = 0usize;
    while t0.elapsed() < Duration::from_secs(secs) {
        let req =
            ExportTraceServiceRequest::decode(bodies[i % bodies.len()].as_slice()).expect("decode");
        p.head
            .consume(Telemetry::Traces(req))
            .await
            .expect("accepted");
        spans += spans_per_req;
        i += 1;
        // Let the flush timers run, as a receiver's task would.
        tokio::task::yield_now().await;
    }
    (spans, t0.elapsed().as_secs_f64())
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
#[ignore = "benchmark: make bench-connectors"]
fn bench_connectors() {
    let secs = env_u64("CONN_BENCH_SECONDS", 5);
    let rounds = env_u64("CONN_BENCH_ROUNDS", 2);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        // Distinct trace ids across 200 requests (20,000 traces), then they repeat.
        let bodies: Vec<Vec<u8>> = (0..200).map(|r| request(r).encode_to_vec()).collect();
        let spans_per_req = Telemetry::Traces(request(0)).item_count() as u64;
        let cancel = CancellationToken::new();
        let (mut plain, mut conn) = ((0u64, 0f64), (0u64, 0f64));
        let mut metric_points = 0u64;
        for _ in 0..rounds {
            for with in [false, true] {
                let p = pipeline(with, &cancel);
                let (n, wall) = run(&p, &bodies, spans_per_req, secs).await;
                for l in &p.lifecycles {
                    l.shutdown(tokio::time::Instant::now() + Duration::from_secs(10))
                        .await;
                }
                let acc = if with { &mut conn } else { &mut plain };
                acc.0 += n;
                acc.1 += wall;
                if with {
                    metric_points += p.metrics.items.load(Ordering::Relaxed);
                }
            }
        }
        cancel.cancel();
        let plain_rate = plain.0 as f64 / plain.1;
        let conn_rate = conn.0 as f64 / conn.1;
        let cost = 100.0 * (1.0 - conn_rate / plain_rate);
        println!("== bench-connectors: OTLP protobuf decode -> batch -> encode sink, one tokio thread; {rounds} rounds x {secs}s per pipeline ==");
        println!("requests of {spans_per_req} spans ({ORDERS_PER_REQUEST} three-service orders, 8 attributes per span)");
        println!("plain pipeline:                         {plain_rate:>12.0} spans/s");
        println!("with spanmetrics + servicegraph:        {conn_rate:>12.0} spans/s  ({metric_points} derived data points sent)");
        println!("connectors' cost: {cost:.1} % of plain throughput (target < 30 %)");
        assert!(conn.0 > 0 && metric_points > 0);
    });
}
