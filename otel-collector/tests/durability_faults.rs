//! Fault tests of the persistent queue against the real binary over loopback (docs/durability.md):
//! SIGKILL mid-stream, a corrupted queue directory, a backend down for 30 s under load, overload,
//! and a full disk (the file size limit `RLIMIT_FSIZE`, raised again on the running process).
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
/// whose sending queue lives in `dir` (fsync on, 16 KiB segments).
fn config(grpc: u16, metrics: u16, backend: u16, dir: &Path, processors: &str) -> String {
    config_segments(grpc, metrics, backend, dir, processors, 16)
}

/// [`config`] with segments of `segment_kib` KiB.
fn config_segments(
    grpc: u16,
    metrics: u16,
    backend: u16,
    dir: &Path,
    processors: &str,
    segment_kib: u64,
) -> String {
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
    segment_size_kib: {segment_kib}
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
    // The backend answers each request after DELAY_MS with SENDERS concurrent senders: the
    // collector can drain SENDERS * 1000 / DELAY_MS requests/s; the clients offer 10x that or more.
    const DELAY_MS: u64 = 250;
    const SENDERS: u64 = 2;
    const LOAD_S: u64 = 10;
    state.delay_ms.store(DELAY_MS, Ordering::SeqCst);
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
    sending_queue: {{num_consumers: {SENDERS}, queue_size: 100000, max_size_mib: 16}}
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
    tokio::time::sleep(Duration::from_secs(LOAD_S)).await;
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
    let offered = (o.acknowledged / 500) as u64 + refused as u64;
    let drainable = SENDERS * LOAD_S * 1000 / DELAY_MS;
    let overload = offered as f64 / drainable as f64;
    println!(
        "overload: {offered} requests offered in {LOAD_S} s against {drainable} drainable ({overload:.1}x): {} acknowledged, {refused} refused with a retryable status",
        o.acknowledged / 500
    );
    assert!(refused > 0, "senders were told to retry");
    assert!(
        overload >= 10.0,
        "only {overload:.1}x the drain rate was offered"
    );
    assert!(rss / 1024 < LIMIT_MIB, "peak RSS {} MiB", rss / 1024);
    assert_eq!(o.lost, 0, "acknowledged spans lost:\n{}", c.logs());
    assert!(c.running(), "recovered");
    let status = c.terminate();
    assert!(status.success(), "{status}");
}

/// Runs the child with a soft file size limit of `bytes` (`RLIMIT_FSIZE`; the hard limit stays,
/// so the test can raise the soft one again) and `SIGXFSZ` ignored, so a write past the limit
/// fails with `EFBIG` instead of killing the process: a full disk without root or a mount.
fn limit_file_size(cmd: &mut std::process::Command, bytes: u64) {
    use std::os::unix::process::CommandExt;
    let hook = move || {
        // SAFETY: only async-signal-safe system calls between fork and exec, on a local struct.
        unsafe {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            let mut lim = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            if libc::getrlimit(libc::RLIMIT_FSIZE, &mut lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            lim.rlim_cur = bytes.min(lim.rlim_max);
            if libc::setrlimit(libc::RLIMIT_FSIZE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        Ok(())
    };
    // SAFETY: the hook only makes async-signal-safe calls (above).
    unsafe {
        cmd.pre_exec(hook);
    }
}

/// Raises the soft file size limit of the running process `pid` to its hard limit ("space
/// returns"), as `prlimit --pid P --fsize=unlimited` would.
fn raise_file_size_limit(pid: u32) {
    let pid = libc::pid_t::try_from(pid).expect("pid");
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: prlimit reads and writes only the local struct passed by pointer.
    unsafe {
        assert_eq!(
            libc::prlimit(pid, libc::RLIMIT_FSIZE, std::ptr::null(), &mut lim),
            0,
            "prlimit get: {}",
            std::io::Error::last_os_error()
        );
        lim.rlim_cur = lim.rlim_max;
        assert_eq!(
            libc::prlimit(pid, libc::RLIMIT_FSIZE, &lim, std::ptr::null_mut()),
            0,
            "prlimit set: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// The collector's stderr, copied into its log file by a thread of the test (so the log is
/// not subject to the collector's file size limit).
fn copy_stderr_to_log(c: &mut Collector) -> std::thread::JoinHandle<()> {
    let mut pipe = c.child.stderr.take().expect("stderr piped");
    let mut log = std::fs::File::create(&c.log).expect("log file");
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut pipe, &mut log);
    })
}

/// `senders` concurrent senders of `per`-span requests for `run`; their results summed.
async fn load_for(grpc: u16, tag: &str, senders: usize, per: usize, run: Duration) -> Sent {
    let stop = Arc::new(AtomicBool::new(false));
    let tasks: Vec<_> = (0..senders)
        .map(|t| {
            tokio::spawn(sender_counting(
                grpc,
                format!("{tag}{t}"),
                per,
                200,
                100_000,
                Duration::from_millis(10),
                Arc::clone(&stop),
            ))
        })
        .collect();
    tokio::time::sleep(run).await;
    stop.store(true, Ordering::SeqCst);
    let mut all = Sent::default();
    for t in tasks {
        let s = t.await.unwrap();
        all.acked.extend(s.acked);
        all.retryable += s.retryable;
    }
    all
}

/// Checks that every segment holds whole, valid records only; returns the record count.
fn whole_records_only(qdir: &Path) -> usize {
    let mut records = 0;
    for seg in segments(qdir) {
        let bytes = std::fs::read(&seg).unwrap();
        let scan = otel_collector::exporter::wal::scan_segment(&bytes);
        let end = scan
            .records
            .last()
            .map_or(0, |f| f.offset + u64::from(f.len));
        assert_eq!(scan.skipped, 0, "damaged region in {}", seg.display());
        assert_eq!(end, bytes.len() as u64, "torn tail in {}", seg.display());
        records += scan.records.len();
    }
    records
}

/// The value of the series `series` (name and labels as rendered) on the metrics endpoint.
async fn metric(port: u16, series: &str) -> f64 {
    let text = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {series} in:\n{text}"))
}

/// Disk full: the collector runs with a 256 KiB file size limit and 4 MiB segments, so its
/// queue segment hits the limit (EFBIG, like ENOSPC on a full filesystem) while the backend is
/// down. Senders get UNAVAILABLE, the log names the directory and the cause once, the failures
/// are counted by reason, and the segment holds whole records only. Then the limit is raised on
/// the running process: data is accepted again without a restart, and once the backend is up
/// every acknowledged span arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn disk_full_for_the_queue_is_refused_retryably_and_recovers() {
    const FSIZE: u64 = 256 << 10;
    let dir = TempDir::new("dur-diskfull");
    let (backend, state) = start_server().await;
    state.fail_first.store(usize::MAX, Ordering::SeqCst);
    let (grpc, metrics) = (free_port(), free_port());
    let qdir = dir.join("q");
    let cfg = config_segments(grpc, metrics, backend.port(), &qdir, "batch", 4096);
    let mut c = Collector::start_with(&dir, "a", &cfg, &[grpc, metrics], |cmd| {
        cmd.stderr(std::process::Stdio::piped());
        limit_file_size(cmd, FSIZE);
    });
    let log_copy = copy_stderr_to_log(&mut c);
    // Full: 8 senders write ~256 KiB of records within the first seconds, then are refused.
    let full = load_for(grpc, "f", 8, 50, Duration::from_secs(6)).await;
    let q = qdir.join("exporter_otlp");
    let on_disk = whole_records_only(&q);
    let series =
        "otelcol_exporter_persistent_queue_write_errors_total{exporter=\"otlp\",reason=\"file_too_large\"}";
    let write_errors = metric(metrics, series).await;
    let logs = c.logs();
    assert!(full.retryable > 0, "senders were refused:\n{logs}");
    assert!(write_errors > 0.0, "failed writes counted");
    let clear = "persistent queue: cannot write to the queue directory: file too large";
    // Logged once per episode of failures: an episode ends when a write succeeds (near the
    // limit a smaller batch may still fit), so a repeat always follows a logged recovery.
    let (errors, recoveries) = (
        logs.matches(clear).count(),
        logs.matches("writes succeed again").count(),
    );
    assert!(errors >= 1, "the cause is logged:\n{logs}");
    assert!(
        errors <= recoveries + 1,
        "not logged again while failing:\n{logs}"
    );
    assert!(
        (errors as f64) * 10.0 < write_errors,
        "not logged per failure"
    );
    let batch_warns = logs.matches("batch not accepted downstream").count();
    assert!(
        (batch_warns as f64) * 10.0 < write_errors,
        "the batch processor logs refusals once per episode too:\n{logs}"
    );
    if let Some(line) = logs.lines().find(|l| l.contains(clear)) {
        println!("disk_full: the log says: {line}");
    }
    assert!(
        logs.contains(&q.display().to_string()),
        "names the directory:\n{logs}"
    );
    // Space returns on the running process; the backend is still down.
    raise_file_size_limit(c.child.id());
    let after = load_for(grpc, "r", 8, 50, Duration::from_secs(3)).await;
    assert!(
        !after.acked.is_empty(),
        "accepted again without a restart:\n{}",
        c.logs()
    );
    assert!(c.logs().contains("writes succeed again"), "{}", c.logs());
    state.fail_first.store(0, Ordering::SeqCst);
    let mut acked = full.acked.clone();
    acked.extend(after.acked.iter().cloned());
    wait_all_arrived(&acked, &state, Duration::from_secs(30)).await;
    let o = outcome(&acked, &state);
    report(
        "disk_full",
        &o,
        peak_rss_kib(c.child.id()),
        "none configured",
    );
    println!(
        "disk_full: while full (6 s) {} spans acknowledged, {} requests refused with UNAVAILABLE, \
         {write_errors} failed writes (reason file_too_large) logged in {errors} error line(s) \
         ({batch_warns} batch processor warning(s)), \
         {on_disk} whole records on disk (limit {} KiB), 0 damaged; after the limit was raised \
         (3 s) {} spans acknowledged, {} refused",
        full.acked.len(),
        full.retryable,
        FSIZE >> 10,
        after.acked.len(),
        after.retryable
    );
    assert_eq!(o.lost, 0, "acknowledged spans lost:\n{}", c.logs());
    let status = c.terminate();
    assert!(status.success(), "{status}");
    let _ = log_copy.join();
}
