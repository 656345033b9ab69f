//! The `loadbalancing` exporter end to end: one collector routes by trace id to three downstream
//! collector processes (each writing what it receives to its own file). Every span of a trace
//! arrives at the same downstream and the traces spread evenly; then one downstream is stopped
//! (SIGTERM: it drains what it acknowledged into its file and stops listening) in the middle of
//! the traffic: no span the load balancer acknowledged is lost, and the traces sent after the
//! stop go to the two others, evenly.
//!
//! Run: `cargo test -p otel-collector --test export_loadbalancing`.

mod core_support;

use core_support::Collector;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value::Value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use otel_collector::exporter::file::read_json_lines;
use otel_collector::pipeline::{Signal, Telemetry};
use rand::{rngs::StdRng, Rng, SeedableRng};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use test_support::{free_port, TempDir};

const SPANS_PER_TRACE: u8 = 3;
/// Traces per request: each request carries one span of each of this many traces, so every
/// trace is split over `SPANS_PER_TRACE` requests.
const TRACES_PER_REQUEST: usize = 100;

fn downstream_config(port: u16, out: &Path) -> String {
    format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{port}
exporters:
  file:
    path: {out}
    flush_interval: 100ms
service:
  telemetry:
    metrics:
      level: none
  pipelines:
    traces: {{receivers: [otlp], exporters: [file]}}
"#,
        out = out.display()
    )
}

fn balancer_config(port: u16, downstreams: &[u16]) -> String {
    let hosts: Vec<String> = downstreams
        .iter()
        .map(|p| format!("'127.0.0.1:{p}'"))
        .collect();
    format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{port}
exporters:
  loadbalancing:
    routing_key: traceID
    protocol:
      otlp:
        tls: {{insecure: true}}
        timeout: 2s
        retry_on_failure: {{enabled: true, initial_interval: 100ms, max_interval: 1s, max_elapsed_time: 60s}}
        sending_queue: {{enabled: true, queue_size: 1000, num_consumers: 4}}
    resolver:
      static:
        hostnames: [{hosts}]
service:
  telemetry:
    metrics:
      level: none
  pipelines:
    traces: {{receivers: [otlp], exporters: [loadbalancing]}}
"#,
        hosts = hosts.join(", ")
    )
}

fn ids(n: usize, seed: u64) -> Vec<[u8; 16]> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n).map(|_| rng.random()).collect()
}

/// The requests carrying `traces`: request `j` of a chunk holds span `j` of each trace.
fn requests(traces: &[[u8; 16]]) -> Vec<ExportTraceServiceRequest> {
    let resource = Resource {
        attributes: vec![KeyValue {
            key: "service.name".into(),
            value: Some(AnyValue {
                value: Some(Value::StringValue("lb-test".into())),
            }),
            ..Default::default()
        }],
        ..Default::default()
    };
    let mut out = Vec::new();
    for chunk in traces.chunks(TRACES_PER_REQUEST) {
        for part in 0..SPANS_PER_TRACE {
            let spans = chunk
                .iter()
                .map(|t| Span {
                    trace_id: t.to_vec(),
                    span_id: vec![part + 1; 8],
                    name: format!("part-{part}"),
                    ..Default::default()
                })
                .collect();
            out.push(ExportTraceServiceRequest {
                resource_spans: vec![ResourceSpans {
                    resource: Some(resource.clone()),
                    scope_spans: vec![ScopeSpans {
                        spans,
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
            });
        }
    }
    out
}

/// (trace id, span id) of every span each downstream wrote, per downstream.
fn received(files: &[PathBuf]) -> Vec<Vec<(Vec<u8>, Vec<u8>)>> {
    files
        .iter()
        .map(|f| {
            read_json_lines(f, Signal::Traces)
                .unwrap_or_default()
                .into_iter()
                .flat_map(|t| match t {
                    Telemetry::Traces(r) => r.resource_spans,
                    _ => Vec::new(),
                })
                .flat_map(|rs| rs.scope_spans)
                .flat_map(|ss| ss.spans)
                .map(|s| (s.trace_id, s.span_id))
                .collect()
        })
        .collect()
}

/// Which downstreams each trace's spans reached.
fn owners(got: &[Vec<(Vec<u8>, Vec<u8>)>]) -> HashMap<Vec<u8>, HashSet<usize>> {
    let mut m: HashMap<Vec<u8>, HashSet<usize>> = HashMap::new();
    for (i, spans) in got.iter().enumerate() {
        for (t, _) in spans {
            m.entry(t.clone()).or_default().insert(i);
        }
    }
    m
}

/// Asserts each count is within 10 % of the mean.
fn assert_even(counts: &[usize], what: &str) {
    let mean = counts.iter().sum::<usize>() as f64 / counts.len() as f64;
    for c in counts {
        assert!(
            (*c as f64 - mean).abs() <= 0.1 * mean,
            "{what}: {counts:?} not within 10% of even ({mean})"
        );
    }
}

async fn send_all(
    client: &mut TraceServiceClient<tonic::transport::Channel>,
    reqs: Vec<ExportTraceServiceRequest>,
) {
    for r in reqs {
        client
            .export(r)
            .await
            .expect("the load balancer acknowledges every request");
    }
}

/// Waits (bounded) until the downstreams together wrote `n` spans.
fn wait_for_spans(files: &[PathBuf], n: usize) -> usize {
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let got: usize = received(files).iter().map(Vec::len).sum();
        if got >= n || Instant::now() > until {
            return got;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traces_stay_whole_spread_evenly_and_survive_a_downstream_stop() {
    let dir = TempDir::new("loadbalancing");
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let files: Vec<PathBuf> = (0..3)
        .map(|i| dir.join(format!("down-{i}.jsonl")))
        .collect();
    let mut downs: Vec<Collector> = (0..3)
        .map(|i| {
            Collector::start(
                &dir,
                &format!("down-{i}"),
                &downstream_config(ports[i], &files[i]),
                &[ports[i]],
            )
        })
        .collect();
    let lb_port = free_port();
    let mut lb = Collector::start(
        &dir,
        "balancer",
        &balancer_config(lb_port, &ports),
        &[lb_port],
    );
    let mut client = TraceServiceClient::connect(format!("http://127.0.0.1:{lb_port}"))
        .await
        .unwrap();

    // Phase 1: all three up.
    let first = ids(4000, 1);
    send_all(&mut client, requests(&first)).await;
    let n1 = first.len() * usize::from(SPANS_PER_TRACE);
    assert_eq!(wait_for_spans(&files, n1), n1, "{}", lb.logs());
    let got = received(&files);
    let own = owners(&got);
    let mut per = [0usize; 3];
    for t in &first {
        let o = &own[&t.to_vec()];
        assert_eq!(o.len(), 1, "all spans of a trace at one downstream");
        per[*o.iter().next().unwrap()] += 1;
    }
    assert_even(&per, "traces per downstream with three up");

    // Phase 2: downstream 2 is stopped while traffic flows: part A before, part B during the
    // stop, part C after it.
    let second = ids(6000, 2);
    let (a, rest) = second.split_at(2000);
    let (b, c) = rest.split_at(2000);
    send_all(&mut client, requests(a)).await;
    let stopping = tokio::task::spawn_blocking(move || {
        let s = downs[2].terminate();
        (downs, s)
    });
    send_all(&mut client, requests(b)).await;
    let (mut downs, status) = stopping.await.unwrap();
    assert!(status.success(), "downstream 2 exit: {status}");
    send_all(&mut client, requests(c)).await;

    // Drain the balancer (it delivers what it acknowledged), then the two left.
    assert!(lb.terminate().success(), "{}", lb.logs());
    for d in downs.iter_mut().take(2) {
        assert!(d.terminate().success(), "{}", d.logs());
    }
    let got = received(&files);
    let all: HashSet<(Vec<u8>, Vec<u8>)> = got.iter().flatten().cloned().collect();
    let mut lost = 0;
    for t in first.iter().chain(&second) {
        for part in 0..SPANS_PER_TRACE {
            if !all.contains(&(t.to_vec(), vec![part + 1; 8])) {
                lost += 1;
            }
        }
    }
    assert_eq!(
        lost,
        0,
        "acknowledged spans lost; balancer log:\n{}",
        lb.logs()
    );

    // The traces sent after the stop went, whole, to the two others, evenly: the stopped one's
    // share was re-routed.
    let own = owners(&got);
    let mut per = [0usize; 2];
    for t in c {
        let o = &own[&t.to_vec()];
        assert_eq!(o.len(), 1, "all spans of a trace at one downstream");
        let i = *o.iter().next().unwrap();
        assert_ne!(
            i, 2,
            "a span went to the stopped downstream after it stopped"
        );
        per[i] += 1;
    }
    assert_even(&per, "traces per downstream after one stopped");
}
