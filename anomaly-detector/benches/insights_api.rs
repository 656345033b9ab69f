//! Insights API overhead and anomaly-store memory (`make bench-detector-api`).
//!
//! 1. 24 h of RED metrics for 10 services at 15 s (2 routes × 2 status codes each, histogram
//!    with 3 buckets) are backfilled into a real Prometheus with `promtool`.
//! 2. The detector runs in-process; `GET .../summary` and `GET .../breakdown?by=route` over the
//!    24 h are timed (p50/p99 of `ROUNDS` requests per service, round-robin), and so are the
//!    very PromQL queries each answer needs, sent straight to Prometheus with the same
//!    concurrency. The ratio of the two is the API's own overhead.
//! 3. 100,000 anomaly episodes are written to a file-backed store; the process' resident memory
//!    growth and the file size are reported.
//!
//! Run: `cargo bench -p anomaly-detector --bench insights_api` (needs `prometheus`, `promtool`).

use std::process::Command;
use std::time::{Duration, Instant};

use anomaly_detector::config::{Config, HistoryConfig};
use anomaly_detector::history::History;
use anomaly_detector::insights::catalogue;
use anomaly_detector::state::AnomalyRecord;
use test_support::prometheus::Prometheus;
use test_support::{require_bin, TempDir};
use tokio_util::sync::CancellationToken;

const SERVICES: usize = 10;
const STEP: i64 = 15;
const DAY: i64 = 86_400;
const ROUNDS: usize = 30;
const EVENTS: u64 = 100_000;

/// Writes the OpenMetrics backfill to `path` (streamed: about 100 MB).
fn openmetrics(path: &std::path::Path, start: i64, end: i64) {
    use std::io::Write as _;
    let mut om = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut emit = |s: String| om.write_all(s.as_bytes()).unwrap();
    let w = &mut emit;
    w("# TYPE http_server_request_duration_seconds histogram\n".into());
    let bounds = ["0.1", "0.5", "+Inf"];
    for s in 0..SERVICES {
        for (ri, route) in ["/api/a", "/api/b"].iter().enumerate() {
            for (code, rate) in [("200", 1.0 + ri as f64), ("500", 0.05)] {
                let l = format!(
                    "job=\"bench/svc-{s}\",instance=\"i-{s}\",http_route=\"{route}\",http_request_method=\"GET\",http_response_status_code=\"{code}\""
                );
                for t in (start + 7..end).step_by(STEP as usize) {
                    let n = (rate * (t - start) as f64).floor();
                    for (le, share) in bounds.iter().zip([0.6, 0.95, 1.0]) {
                        w(format!(
                            "http_server_request_duration_seconds_bucket{{{l},le=\"{le}\"}} {} {t}\n",
                            (n * share).floor()
                        ));
                    }
                    w(format!(
                        "http_server_request_duration_seconds_count{{{l}}} {n} {t}\n"
                    ));
                }
            }
        }
    }
    w("# TYPE target_info gauge\n".into());
    for s in 0..SERVICES {
        for t in (start + 7..end).step_by(60) {
            w(format!(
                "target_info{{job=\"bench/svc-{s}\",instance=\"i-{s}\"}} 1 {t}\n"
            ));
        }
    }
    w("# EOF\n".into());
    om.flush().unwrap();
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn report(name: &str, mut api: Vec<f64>, mut direct: Vec<f64>) {
    api.sort_by(f64::total_cmp);
    direct.sort_by(f64::total_cmp);
    let (a50, a99) = (percentile(&api, 0.5), percentile(&api, 0.99));
    let (d50, d99) = (percentile(&direct, 0.5), percentile(&direct, 0.99));
    println!(
        "{name:<10} API p50 {:>7.1} ms p99 {:>7.1} ms | same PromQL direct p50 {:>7.1} ms p99 {:>7.1} ms | ratio p50 {:.2} p99 {:.2}",
        a50 * 1e3,
        a99 * 1e3,
        d50 * 1e3,
        d99 * 1e3,
        a50 / d50,
        a99 / d99
    );
}

async fn direct(
    http: &reqwest::Client,
    prom: &str,
    instant: &[String],
    range: &[String],
    from: i64,
    to: i64,
) {
    let mut futs = Vec::new();
    for q in instant {
        let url = reqwest::Url::parse_with_params(
            &format!("{prom}/api/v1/query"),
            &[("query", q.as_str()), ("time", &to.to_string())],
        )
        .unwrap();
        futs.push(http.get(url).send());
    }
    for q in range {
        let url = reqwest::Url::parse_with_params(
            &format!("{prom}/api/v1/query_range"),
            &[
                ("query", q.as_str()),
                ("start", &from.to_string()),
                ("end", &to.to_string()),
                ("step", &STEP.to_string()),
            ],
        )
        .unwrap();
        futs.push(http.get(url).send());
    }
    for r in futures::future::join_all(futs).await {
        let r = r.expect("prometheus answers");
        assert!(r.status().is_success());
        r.bytes().await.unwrap();
    }
}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn store_memory(dir: &TempDir) {
    let path = dir.join("bench-anomalies.db");
    let cfg = HistoryConfig {
        path: Some(path.clone()),
        max_events: EVENTS + 1,
        ..HistoryConfig::default()
    };
    let before = rss_bytes();
    let h = History::open(&cfg, 0).unwrap();
    let started = Instant::now();
    for i in 0..EVENTS as i64 {
        let labels = [
            ("job".to_string(), format!("bench/svc-{}", i % 10)),
            ("http_route".to_string(), format!("/api/route/{}", i % 50)),
        ]
        .into_iter()
        .collect();
        let r = AnomalyRecord {
            detection: ["request_rate", "error_ratio", "latency_p95"][(i % 3) as usize].into(),
            labels,
            fingerprint: format!("{:016x}", i % 500),
            status: "resolved",
            severity: if i % 7 == 0 { "critical" } else { "warning" },
            starts_at: 1_700_000_000 + i * 60,
            ends_at: Some(1_700_000_000 + i * 60 + 300),
            timestamp: 1_700_000_000 + i * 60 + 30,
            value: 3.0,
            expected: 1.0,
            lower: 0.5,
            upper: 1.5,
            score: 0.97,
            model: "holt_winters",
        };
        h.upsert(&r, 1_700_000_000 + i * 60).unwrap();
    }
    let write = started.elapsed();
    let after = rss_bytes();
    let file = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0)
        + std::fs::metadata(format!("{}-wal", path.display()))
            .map(|m| m.len())
            .unwrap_or(0);
    let q = Instant::now();
    let page = h
        .query(&anomaly_detector::history::HistoryQuery {
            service: Some("bench/svc-3".into()),
            limit: 100,
            ..Default::default()
        })
        .unwrap();
    let query = q.elapsed();
    assert_eq!(page.items.len(), 100);
    println!(
        "anomaly store, {EVENTS} episodes: {} stored, RSS growth {:.1} MiB, file {:.1} MiB, write {:.1} s ({:.0} µs/episode, synchronous=FULL), filtered page of 100 in {:.2} ms",
        h.len().unwrap(),
        after.saturating_sub(before) as f64 / (1 << 20) as f64,
        file as f64 / (1 << 20) as f64,
        write.as_secs_f64(),
        write.as_secs_f64() * 1e6 / EVENTS as f64,
        query.as_secs_f64() * 1e3
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let promtool = require_bin("promtool");
    let dir = TempDir::new("bench-insights");
    let data = dir.join("prom-data");
    std::fs::create_dir_all(&data).unwrap();
    let now = anomaly_detector::engine::unix_now();
    let end = now - now.rem_euclid(STEP) - 60;
    let start = end - DAY - 600;
    let t = Instant::now();
    openmetrics(&dir.join("data.om"), start, end);
    let out = Command::new(&promtool)
        .args(["tsdb", "create-blocks-from", "openmetrics", "-q"])
        .arg(dir.join("data.om"))
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_file(dir.join("data.om"));
    eprintln!(
        "backfilled 24 h × {SERVICES} services in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let prom = Prometheus::new("").data_dir(data).start().await;

    let yaml = format!(
        "prometheus: {{url: '{}'}}\nserver: {{rate_limit: {{enabled: false}}}}\ninsights: {{services_lookback: 2d}}\ndetections: [{{name: d, query: 'vector(1)', step: 1m, history: 10m}}]\n",
        prom.url()
    );
    let cfg_path = dir.join("detector.yaml");
    std::fs::write(&cfg_path, yaml).unwrap();
    let config = Config::load(&cfg_path).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let cancel = CancellationToken::new();
    let server = tokio::spawn(anomaly_detector::service::run_with_listener(
        config,
        listener,
        cancel.clone(),
    ));
    let http = reqwest::Client::new();
    let (from, to) = (end - DAY, end);
    let len = to - from;

    // Warm-up: Prometheus' caches and the service list.
    for s in 0..SERVICES {
        let r = http
            .get(format!(
                "{base}/api/v1/services/svc-{s}/summary?from={from}&to={to}&step={STEP}"
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    }

    let mut results = Vec::new();
    for kind in ["summary", "breakdown"] {
        let mut api = Vec::new();
        let mut dir_t = Vec::new();
        for round in 0..ROUNDS * SERVICES {
            let s = round % SERVICES;
            let job = format!("bench/svc-{s}");
            let by = (kind == "breakdown").then_some("http_route");
            let mut instant = vec![
                catalogue::increase_query(&job, len, by, false),
                catalogue::increase_query(&job, len, by, true),
            ];
            for q in [0.5, 0.95, 0.99] {
                instant.push(catalogue::range_quantile_query(&job, len, q, by));
            }
            let range = vec![catalogue::presence_query(catalogue::REQUESTS, &job, STEP)];
            let url = match kind {
                "summary" => format!("{base}/api/v1/services/svc-{s}/summary?from={from}&to={to}&step={STEP}"),
                _ => format!("{base}/api/v1/services/svc-{s}/breakdown?by=route&from={from}&to={to}&step={STEP}"),
            };
            let t = Instant::now();
            let r = http.get(&url).send().await.unwrap();
            assert_eq!(r.status(), 200);
            r.bytes().await.unwrap();
            api.push(t.elapsed().as_secs_f64());
            let t = Instant::now();
            direct(&http, prom.url(), &instant, &range, from, to).await;
            dir_t.push(t.elapsed().as_secs_f64());
        }
        results.push((kind, api, dir_t));
    }
    println!(
        "insights API over 24 h, {SERVICES} services, step {STEP}s, {} requests each:",
        ROUNDS * SERVICES
    );
    for (kind, api, d) in results {
        report(kind, api, d);
    }
    cancel.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(20), server).await;
    drop(prom);
    // BENCH_API_ONLY=1 skips the store part (100,000 durable writes take minutes).
    if std::env::var_os("BENCH_API_ONLY").is_none() {
        store_memory(&dir);
    }
}
