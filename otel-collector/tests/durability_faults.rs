//! Fault tests of the persistent queue against the real binary over loopback (docs/durability.md):
//! SIGKILL mid-stream, a corrupted queue directory, and a backend down for 30 s under load.
//! Each prints `acknowledged, arrived, lost, duplicates, peak RSS` for the closing note.
//!
//! The backend is the in-process OTLP gRPC server of `export_support` (it records every span
//! name, so loss and duplicates are counted by name).
//!
//! Run: `cargo test -p otel-collector --test durability_faults -- --nocapture`.

mod core_support;
mod export_support;

use core_support::Collector;
use export_support::{start_server, ServerState};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use test_support::{free_port, TempDir};

/// A collector with one OTLP gRPC receiver, `processors`, and an otlp exporter to `backend`
/// whose sending queue lives in `dir` (fsync on).
fn config(grpc: u16, metrics: u16, backend: u16, dir: &Path, processors: &str) -> String {
    format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc: {{endpoint: "127.0.0.1:{grpc}"}}
processors:
  batch: {{timeout: 500ms, send_batch_size: 200}}
extensions:
  file_storage/queue:
    directory: "{dir}"
    create_directory: true
    fsync: true
    segment_size_kib: 16
exporters:
  otlp:
    endpoint: "127.0.0.1:{backend}"
    tls: {{insecure: true}}
    timeout: 2s
    sending_queue: {{storage: file_storage/queue, num_consumers: 4, queue_size: 100000}}
    retry_on_failure: {{initial_interval: 100ms, max_interval: 500ms, max_elapsed_time: 0s}}
service:
  extensions: [file_storage/queue]
  telemetry:
    metrics:
      address: "127.0.0.1:{metrics}"
  pipelines:
    traces: {{receivers: [otlp], processors: [{processors}], exporters: [otlp]}}
"#,
        dir = dir.display()
    )
}

/// One request of `n` spans named `{prefix}-{i}`, each padded to about `pad` bytes.
fn request(prefix: &str, n: usize, pad: usize) -> (ExportTraceServiceRequest, Vec<String>) {
    let names: Vec<String> = (0..n)
        .map(|i| format!("{prefix}-{i}-{}", "x".repeat(pad)))
        .collect();
    let spans = names
        .iter()
        .map(|name| Span {
            name: name.clone(),
            trace_id: vec![1; 16],
            span_id: vec![2; 8],
            ..Default::default()
        })
        .collect();
    let req = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    (req, names)
}

/// What one sender got back.
#[derive(Default)]
struct Sent {
    /// Names of the spans whose request was acknowledged.
    acked: Vec<String>,
    /// Requests refused with a retryable status (UNAVAILABLE, RESOURCE_EXHAUSTED).
    retryable: usize,
}

/// Sends requests of `per` spans until `stop` is set or `max` requests were sent, one every
/// `gap`; returns the names of the spans whose request was acknowledged.
async fn sender(
    port: u16,
    tag: String,
    per: usize,
    pad: usize,
    max: usize,
    gap: Duration,
    stop: Arc<AtomicBool>,
) -> Vec<String> {
    sender_counting(port, tag, per, pad, max, gap, stop)
        .await
        .acked
}

/// [`sender`], also counting retryable refusals.
async fn sender_counting(
    port: u16,
    tag: String,
    per: usize,
    pad: usize,
    max: usize,
    gap: Duration,
    stop: Arc<AtomicBool>,
) -> Sent {
    let mut sent = Sent::default();
    let mut client = None;
    for i in 0..max {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        if client.is_none() {
            client = TraceServiceClient::connect(format!("http://127.0.0.1:{port}"))
                .await
                .ok();
        }
        let Some(c) = client.as_mut() else {
            tokio::time::sleep(gap).await;
            continue;
        };
        let (req, names) = request(&format!("{tag}-{i}"), per, pad);
        match tokio::time::timeout(Duration::from_secs(10), c.export(req)).await {
            Ok(Ok(_)) => sent.acked.extend(names),
            Ok(Err(st))
                if matches!(
                    st.code(),
                    tonic::Code::Unavailable | tonic::Code::ResourceExhausted
                ) =>
            {
                sent.retryable += 1
            }
            Ok(Err(_)) => {}
            Err(_) => client = None,
        }
        tokio::time::sleep(gap).await;
    }
    sent
}

/// Counts of one run, printed for the closing note.
struct Outcome {
    acknowledged: usize,
    arrived_unique: usize,
    lost: usize,
    duplicates: usize,
}

fn outcome(acked: &[String], state: &ServerState) -> Outcome {
    let arrived = state.names.lock().unwrap().clone();
    let unique: BTreeSet<&String> = arrived.iter().collect();
    let lost = acked.iter().filter(|n| !unique.contains(n)).count();
    Outcome {
        acknowledged: acked.len(),
        arrived_unique: unique.len(),
        lost,
        duplicates: arrived.len() - unique.len(),
    }
}

fn report(test: &str, o: &Outcome, peak_rss_kib: u64, limit: &str) {
    println!(
        "{test}: acknowledged {} arrived {} lost {} duplicates {} peak RSS {} MiB (limit: {limit})",
        o.acknowledged,
        o.arrived_unique,
        o.lost,
        o.duplicates,
        peak_rss_kib / 1024
    );
}

/// Peak resident set (VmHWM) of `pid` in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Waits (bounded) until every acknowledged name arrived.
async fn wait_all_arrived(acked: &[String], state: &ServerState, within: Duration) {
    let until = Instant::now() + within;
    while Instant::now() < until {
        if outcome(acked, state).lost == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|r| r.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    v.retain(|p| p.extension().is_some_and(|x| x == "seg"));
    v.sort();
    v
}

fn sigkill(c: &mut Collector) {
    let _ = c.child.kill();
    let _ = c.child.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_mid_stream_then_restart_delivers_every_acknowledged_span() {
    let dir = TempDir::new("dur-kill");
    let (backend, state) = start_server().await;
    state.fail_first.store(usize::MAX, Ordering::SeqCst); // down: everything stays queued
    let (grpc, metrics) = (free_port(), free_port());
    let cfg = config(grpc, metrics, backend.port(), &dir.join("q"), "batch");
    let mut c = Collector::start(&dir, "a", &cfg, &[grpc]);
    let stop = Arc::new(AtomicBool::new(false));
    let tasks: Vec<_> = (0..4)
        .map(|t| {
            tokio::spawn(sender(
                grpc,
                format!("k{t}"),
                20,
                50,
                10_000,
                Duration::from_millis(20),
                Arc::clone(&stop),
            ))
        })
        .collect();
    // Long enough for several flushes into the queue; the kill lands with requests waiting in
    // the batch processor (500 ms timeout) and records in the queue.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let rss = peak_rss_kib(c.child.id());
    sigkill(&mut c);
    stop.store(true, Ordering::SeqCst);
    let mut acked = Vec::new();
    for t in tasks {
        acked.extend(t.await.unwrap());
    }
    assert!(
        acked.len() >= 200,
        "only {} spans acknowledged",
        acked.len()
    );
    assert!(
        state.names.lock().unwrap().is_empty(),
        "backend was down, nothing arrived yet"
    );
    state.fail_first.store(0, Ordering::SeqCst);
    let mut c = Collector::start(&dir, "b", &cfg, &[grpc]);
    wait_all_arrived(&acked, &state, Duration::from_secs(30)).await;
    let o = outcome(&acked, &state);
    report(
        "sigkill_mid_stream",
        &o,
        rss.max(peak_rss_kib(c.child.id())),
        "none configured",
    );
    assert_eq!(o.lost, 0, "acknowledged spans lost:\n{}", c.logs());
    assert!(c.logs().contains("persistent queue opened"), "{}", c.logs());
    c.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_corrupted_queue_directory_is_skipped_counted_and_the_rest_delivered() {
    let dir = TempDir::new("dur-corrupt");
    let (backend, state) = start_server().await;
    state.fail_first.store(usize::MAX, Ordering::SeqCst);
    let (grpc, metrics) = (free_port(), free_port());
    let qdir = dir.join("q");
    // No batch processor: one request is one record, so damage is counted in whole requests.
    let cfg = config(grpc, metrics, backend.port(), &qdir, "");
    let mut c = Collector::start(&dir, "a", &cfg, &[grpc]);
    let stop = Arc::new(AtomicBool::new(false));
    let acked = sender(grpc, "c".into(), 10, 200, 60, Duration::ZERO, stop).await;
    assert_eq!(
        acked.len(),
        600,
        "every request acknowledged:\n{}",
        c.logs()
    );
    sigkill(&mut c);
    let segs = segments(&qdir.join("exporter_otlp"));
    assert!(segs.len() >= 3, "{segs:?}");
    // Flip a byte in the middle of the first segment, truncate the last one mid-record.
    let mut first = std::fs::read(&segs[0]).unwrap();
    let mid = first.len() / 2;
    first[mid] ^= 0x5a;
    std::fs::write(&segs[0], &first).unwrap();
    let last = segs.last().unwrap();
    let len = std::fs::metadata(last).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(last)
        .unwrap()
        .set_len(len - 10)
        .unwrap();
    state.fail_first.store(0, Ordering::SeqCst);
    let mut c = Collector::start(&dir, "b", &cfg, &[grpc, metrics]);
    // Everything but the two damaged requests (10 spans each) arrives.
    let until = Instant::now() + Duration::from_secs(30);
    while outcome(&acked, &state).lost > 20 && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let o = outcome(&acked, &state);
    report(
        "corrupt_queue_dir",
        &o,
        peak_rss_kib(c.child.id()),
        "none configured",
    );
    assert_eq!(o.lost, 20, "exactly the two damaged records are lost");
    assert!(c.running(), "the collector keeps running");
    let text = reqwest::get(format!("http://127.0.0.1:{metrics}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains(
            "otelcol_exporter_persistent_queue_skipped_records_total{exporter=\"otlp\"} 2"
        ),
        "{text}"
    );
    assert!(c.logs().contains("damaged records skipped"), "{}", c.logs());
    c.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn backend_down_30s_under_load_then_up_delivers_every_acknowledged_span() {
    let dir = TempDir::new("dur-down");
    let (backend, state) = start_server().await;
    state.fail_first.store(usize::MAX, Ordering::SeqCst);
    let (grpc, metrics) = (free_port(), free_port());
    let cfg = config(grpc, metrics, backend.port(), &dir.join("q"), "batch");
    let mut c = Collector::start(&dir, "a", &cfg, &[grpc]);
    let stop = Arc::new(AtomicBool::new(false));
    // Concurrent senders: with a persistent queue each request waits for its batch's flush.
    let load: Vec<_> = (0..8)
        .map(|t| {
            tokio::spawn(sender(
                grpc,
                format!("d{t}"),
                50,
                50,
                100_000,
                Duration::from_millis(25),
                Arc::clone(&stop),
            ))
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(30)).await;
    let down_arrivals = state.names.lock().unwrap().len();
    state.fail_first.store(0, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::SeqCst);
    let mut acked = Vec::new();
    for t in load {
        acked.extend(t.await.unwrap());
    }
    assert_eq!(down_arrivals, 0, "backend was down");
    wait_all_arrived(&acked, &state, Duration::from_secs(30)).await;
    let o = outcome(&acked, &state);
    report(
        "backend_down_30s",
        &o,
        peak_rss_kib(c.child.id()),
        "none configured",
    );
    assert!(o.acknowledged > 5_000, "steady load: {}", o.acknowledged);
    assert_eq!(o.lost, 0, "acknowledged spans lost:\n{}", c.logs());
    let status = c.terminate();
    assert!(status.success(), "{status}");
}

/// Overload: senders push far more than the exporter drains (a backend answering in 100 ms, two
/// senders). The memory limiter and the byte-bounded queue refuse with UNAVAILABLE, RSS stays
/// under `limit_mib`, and once the load stops everything acknowledged arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn overload_is_refused_with_a_retryable_status_under_the_memory_limit() {
    const LIMIT_MIB: u64 = 150;
    let dir = TempDir::new("dur-overload");
    let (backend, state) = start_server().await;
    state.delay_ms.store(100, Ordering::SeqCst);
    let (grpc, metrics) = (free_port(), free_port());
    let cfg = format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc: {{endpoint: "127.0.0.1:{grpc}"}}
processors:
  memory_limiter: {{check_interval: 100ms, limit_mib: {LIMIT_MIB}, spike_limit_mib: 50}}
exporters:
  otlp:
    endpoint: "127.0.0.1:{backend}"
    tls: {{insecure: true}}
    sending_queue: {{num_consumers: 2, queue_size: 100000, max_size_mib: 16}}
    retry_on_failure: {{initial_interval: 100ms, max_interval: 500ms, max_elapsed_time: 0s}}
service:
  telemetry:
    metrics:
      address: "127.0.0.1:{metrics}"
  pipelines:
    traces: {{receivers: [otlp], processors: [memory_limiter], exporters: [otlp]}}
"#,
        backend = backend.port()
    );
    let mut c = Collector::start(&dir, "a", &cfg, &[grpc]);
    let stop = Arc::new(AtomicBool::new(false));
    let load: Vec<_> = (0..16)
        .map(|t| {
            tokio::spawn(sender_counting(
                grpc,
                format!("o{t}"),
                500,
                100,
                100_000,
                Duration::ZERO,
                Arc::clone(&stop),
            ))
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(10)).await;
    stop.store(true, Ordering::SeqCst);
    let (mut acked, mut refused) = (Vec::new(), 0);
    for t in load {
        let s = t.await.unwrap();
        acked.extend(s.acked);
        refused += s.retryable;
    }
    let rss = peak_rss_kib(c.child.id());
    state.delay_ms.store(0, Ordering::SeqCst);
    wait_all_arrived(&acked, &state, Duration::from_secs(60)).await;
    let o = outcome(&acked, &state);
    report(
        "overload",
        &o,
        rss.max(peak_rss_kib(c.child.id())),
        &format!("{LIMIT_MIB} MiB"),
    );
    println!(
        "overload: {} requests acknowledged, {refused} refused with a retryable status in 10 s",
        o.acknowledged / 500
    );
    assert!(refused > 0, "senders were told to retry");
    assert!(rss / 1024 < LIMIT_MIB, "peak RSS {} MiB", rss / 1024);
    assert_eq!(o.lost, 0, "acknowledged spans lost:\n{}", c.logs());
    assert!(c.running(), "recovered");
    let status = c.terminate();
    assert!(status.success(), "{status}");
}
