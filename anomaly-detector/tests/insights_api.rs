//! The insights API against a REAL Prometheus (Debian package `prometheus`) holding known
//! samples, backfilled with `promtool tsdb create-blocks-from openmetrics`:
//!
//! * `demo/demo-frontend`: `/api/products` GET 200 at 2 req/s (all under 0.1 s), `/api/orders`
//!   POST 200 at 1 req/s and 500 at 0.1 req/s (latency 50 % ≤ 0.1 s, 40 % ≤ 0.5 s, 10 % ≤ 1 s),
//!   CPU 0.25 cores, 100 MB resident;
//! * `demo/demo-inventory`: `/api/stock` GET 200 at 0.5 req/s on each of two instances;
//! * `demo/demo-payment`: 1 req/s, with a deliberate 10-minute hole in its samples.
//!
//! Samples are 15 s apart, 7 s off the 15 s grid, so every step window holds exactly one.
//! Checked: services, each metric's values (derived from the generating rates, with
//! Prometheus' own `histogram_quantile` interpolation for the percentiles), summary totals and
//! SLO budget, breakdown ↔ summary reconciliation for every `by` (to the request), CSV parsed
//! back, completeness and gaps, and Prometheus down (the API still answers, naming the source).
//!
//! Run: `cargo test -p anomaly-detector --test insights_api -- --nocapture` (needs `make deps`).

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use anomaly_detector::config::Config;
use serde_json::Value;
use test_support::prometheus::Prometheus;
use test_support::{require_bin, TempDir};
use tokio_util::sync::CancellationToken;

const STEP: i64 = 15;
const OFFSET: i64 = 7;
/// Hours of backfilled data.
const HOURS: i64 = 3;

/// One request series: labels and rate, with the share of requests under each bucket bound.
struct Route {
    job: &'static str,
    instance: &'static str,
    route: &'static str,
    method: &'static str,
    code: &'static str,
    rate: f64,
    /// Cumulative share at le = 0.1, 0.5, 1.
    buckets: [f64; 3],
}

const BOUNDS: [&str; 4] = ["0.1", "0.5", "1", "+Inf"];

fn routes() -> Vec<Route> {
    let r = |job, instance, route, method, code, rate, buckets| Route {
        job,
        instance,
        route,
        method,
        code,
        rate,
        buckets,
    };
    vec![
        r(
            "demo/demo-frontend",
            "i-1",
            "/api/products",
            "GET",
            "200",
            2.0,
            [1.0, 1.0, 1.0],
        ),
        r(
            "demo/demo-frontend",
            "i-1",
            "/api/orders",
            "POST",
            "200",
            1.0,
            [0.5, 0.9, 1.0],
        ),
        r(
            "demo/demo-frontend",
            "i-1",
            "/api/orders",
            "POST",
            "500",
            0.1,
            [0.5, 0.9, 1.0],
        ),
        r(
            "demo/demo-inventory",
            "i-2",
            "/api/stock",
            "GET",
            "200",
            0.5,
            [1.0, 1.0, 1.0],
        ),
        r(
            "demo/demo-inventory",
            "i-3",
            "/api/stock",
            "GET",
            "200",
            0.5,
            [1.0, 1.0, 1.0],
        ),
        r(
            "demo/demo-payment",
            "i-4",
            "/api/pay",
            "POST",
            "200",
            1.0,
            [0.2, 1.0, 1.0],
        ),
    ]
}

/// The payment service's samples are missing in `[start + GAP.0, start + GAP.1)`.
const GAP: (i64, i64) = (3600, 4200);

fn in_gap(job: &str, t: i64, start: i64) -> bool {
    job == "demo/demo-payment" && t >= start + GAP.0 && t < start + GAP.1
}

/// OpenMetrics text of all series from `start` (a multiple of STEP) to `end`.
fn openmetrics(start: i64, end: i64) -> String {
    let mut om = String::new();
    let times: Vec<i64> = (start + OFFSET..end).step_by(STEP as usize).collect();
    om.push_str("# TYPE http_server_request_duration_seconds histogram\n");
    for r in routes() {
        let l = format!(
            "job=\"{}\",instance=\"{}\",http_route=\"{}\",http_request_method=\"{}\",http_response_status_code=\"{}\"",
            r.job, r.instance, r.route, r.method, r.code
        );
        for &t in &times {
            if in_gap(r.job, t, start) {
                continue;
            }
            let n = r.rate * (t - start) as f64;
            for (i, le) in BOUNDS.iter().enumerate() {
                let share = if i < 3 { r.buckets[i] } else { 1.0 };
                om.push_str(&format!(
                    "http_server_request_duration_seconds_bucket{{{l},le=\"{le}\"}} {} {t}\n",
                    n * share
                ));
            }
            om.push_str(&format!(
                "http_server_request_duration_seconds_count{{{l}}} {n} {t}\n"
            ));
            om.push_str(&format!(
                "http_server_request_duration_seconds_sum{{{l}}} {} {t}\n",
                n * 0.1
            ));
        }
    }
    om.push_str("# TYPE target_info gauge\n");
    for (job, inst) in [
        ("demo/demo-frontend", "i-1"),
        ("demo/demo-inventory", "i-2"),
        ("demo/demo-payment", "i-4"),
    ] {
        for &t in &times {
            if !in_gap(job, t, start) {
                om.push_str(&format!(
                    "target_info{{job=\"{job}\",instance=\"{inst}\",host_name=\"h\"}} 1 {t}\n"
                ));
            }
        }
    }
    om.push_str("# TYPE process_cpu_time_seconds counter\n");
    for &t in &times {
        om.push_str(&format!(
            "process_cpu_time_seconds_total{{job=\"demo/demo-frontend\",instance=\"i-1\",cpu_mode=\"user\"}} {} {t}\n",
            0.25 * (t - start) as f64
        ));
    }
    om.push_str("# TYPE process_memory_usage_bytes gauge\n");
    for &t in &times {
        om.push_str(&format!(
            "process_memory_usage_bytes{{job=\"demo/demo-frontend\",instance=\"i-1\"}} 100000000 {t}\n"
        ));
    }
    om.push_str("# EOF\n");
    om
}

/// Prometheus' `histogram_quantile` on cumulative counts at BOUNDS (linear in the bucket).
fn quantile(q: f64, cumulative: &[f64; 4]) -> f64 {
    let bounds = [0.1, 0.5, 1.0];
    let rank = q * cumulative[3];
    let mut lower = 0.0;
    let mut below = 0.0;
    for (i, b) in bounds.iter().enumerate() {
        if cumulative[i] >= rank {
            return lower + (b - lower) * (rank - below) / (cumulative[i] - below);
        }
        lower = *b;
        below = cumulative[i];
    }
    1.0
}

/// Cumulative request rates of `job` at BOUNDS.
fn cumulative(job: &str) -> [f64; 4] {
    let mut c = [0.0; 4];
    for r in routes().iter().filter(|r| r.job == job) {
        for (ci, share) in c.iter_mut().zip(r.buckets) {
            *ci += r.rate * share;
        }
        c[3] += r.rate;
    }
    c
}

struct Env {
    http: reqwest::Client,
    base: String,
    cancel: CancellationToken,
    prom: Option<test_support::prometheus::Server>,
    server: tokio::task::JoinHandle<()>,
    start: i64,
    end: i64,
    _dir: TempDir,
}

impl Env {
    async fn get(&self, path: &str) -> (u16, Value) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        let v = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}: {text}"));
        (status, v)
    }

    async fn get_ok(&self, path: &str) -> Value {
        let (st, v) = self.get(path).await;
        assert_eq!(st, 200, "{path}: {v:#}");
        v
    }

    async fn csv(&self, path: &str, accept_header: bool) -> (Vec<String>, Vec<Vec<String>>) {
        let mut req = self.http.get(format!("{}{path}", self.base));
        if accept_header {
            req = req.header("accept", "text/csv");
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert!(r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv"));
        let body = r.bytes().await.unwrap();
        assert!(body.windows(2).any(|w| w == b"\r\n"), "RFC 4180 line ends");
        let mut rd = csv::Reader::from_reader(&body[..]);
        let header: Vec<String> = rd.headers().unwrap().iter().map(String::from).collect();
        let rows = rd
            .records()
            .map(|r| r.unwrap().iter().map(String::from).collect())
            .collect();
        (header, rows)
    }
}

async fn start() -> Env {
    let promtool = require_bin("promtool");
    let dir = TempDir::new("insights-api");
    let data = dir.join("prom-data");
    std::fs::create_dir_all(&data).unwrap();
    let now = anomaly_detector::engine::unix_now();
    let end = now - now.rem_euclid(STEP) - 2 * STEP;
    let start = end - HOURS * 3600;
    std::fs::write(dir.join("data.om"), openmetrics(start, end)).unwrap();
    let out = Command::new(&promtool)
        .args(["tsdb", "create-blocks-from", "openmetrics", "-q"])
        .arg(dir.join("data.om"))
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let prom = Prometheus::new("").data_dir(data).start().await;
    std::fs::write(
        dir.join("slos.yaml"),
        include_str!("../testdata/insights_slos.yaml"),
    )
    .unwrap();
    let yaml = format!(
        "prometheus: {{url: '{}', timeout: 5s, retry: {{max_attempts: 1}}}}\n\
         evaluation_interval: 2s\n\
         insights: {{slo_file: '{}', services_lookback: {}s}}\n\
         history: {{path: '{}'}}\n\
         detections:\n  - name: rate\n    query: sum by (job) (rate(http_server_request_duration_seconds_count[1m]))\n    step: 15s\n    history: 1h\n",
        prom.url(),
        dir.join("slos.yaml").display(),
        HOURS * 3600 + 3600,
        dir.join("anomalies.db").display()
    );
    let path = dir.join("detector.yaml");
    std::fs::write(&path, yaml).unwrap();
    let config = Config::load(&path).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let cancel = CancellationToken::new();
    let c = cancel.clone();
    let server = tokio::spawn(async move {
        anomaly_detector::service::run_with_listener(config, listener, c)
            .await
            .unwrap();
    });
    let env = Env {
        http: reqwest::Client::new(),
        base,
        cancel,
        prom: Some(prom),
        server,
        start,
        end,
        _dir: dir,
    };
    // Ready when the detection has evaluated every service once.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = env.http.get(format!("{}/health", env.base)).send().await {
            let v: Value = r.json().await.unwrap();
            if v["detections"][0]["series"].as_u64() == Some(3) {
                break;
            }
        }
        assert!(std::time::Instant::now() < deadline, "detector not ready");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    env
}

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol * b.abs().max(1e-12)
}

fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insights_against_real_prometheus() {
    let mut env = start().await;
    let (s, e) = (env.start, env.end);
    // A range well inside the data, away from the payment gap: [start + 2h, end - 5m].
    let (from, to) = (s + 7200, e - 300);
    let len = (to - from) as f64;

    // --- services
    let v = env.get_ok("/api/v1/services").await;
    let names: Vec<&str> = v["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["demo-frontend", "demo-inventory", "demo-payment"],
        "{v:#}"
    );
    let fe = &v["services"][0];
    assert_eq!(fe["job"], "demo/demo-frontend");
    assert_eq!(fe["namespace"], "demo");
    assert_eq!(fe["reporting"], true, "{fe}");
    assert!(
        (num(&fe["last_report"]) as i64 - (e - STEP + OFFSET)).abs() <= STEP,
        "{fe}"
    );
    assert_eq!(v["sources"]["prometheus"]["status"], "ok");

    // --- every metric's values
    let c = cumulative("demo/demo-frontend");
    let expected: BTreeMap<&str, f64> = [
        ("request_rate", 3.1),
        ("error_ratio", 0.1 / 3.1),
        ("availability", 1.0 - 0.1 / 3.1),
        ("latency_p50", quantile(0.5, &c)),
        ("latency_p95", quantile(0.95, &c)),
        ("latency_p99", quantile(0.99, &c)),
        ("cpu", 0.25),
        ("memory", 1e8),
    ]
    .into_iter()
    .collect();
    let all = env
        .get_ok(&format!(
            "/api/v1/services/demo-frontend/metrics?from={from}&to={to}&step=60"
        ))
        .await;
    assert_eq!(all["metrics"].as_array().unwrap().len(), expected.len());
    assert_eq!(all["completeness"], 1.0, "{}", all["sources"]);
    for m in all["metrics"].as_array().unwrap() {
        let name = m["metric"].as_str().unwrap();
        let want = expected[name];
        let points = m["points"].as_array().unwrap();
        assert_eq!(points.len() as i64, (to - from) / 60 + 1, "{name}");
        for p in points {
            assert!(
                close(num(&p["value"]), want, 1e-6),
                "{name} at {}: {} vs {want}",
                p["timestamp"],
                p["value"]
            );
        }
        for k in ["min", "max", "avg", "last"] {
            assert!(close(num(&m["stats"][k]), want, 1e-6), "{name} {k}");
        }
        assert_eq!(m["completeness"], 1.0, "{name}");
    }
    let one = env
        .get_ok(&format!(
            "/api/v1/services/demo%2Fdemo-frontend/metrics/latency_p95?from={from}&to={to}&step=5m"
        ))
        .await;
    assert_eq!(one["job"], "demo/demo-frontend");
    assert!(close(
        num(&one["series"]["stats"]["avg"]),
        expected["latency_p95"],
        1e-6
    ));
    // Inventory has no CPU series: no values and completeness 0, said in the status.
    let cpu = env
        .get_ok(&format!(
            "/api/v1/services/demo-inventory/metrics/cpu?from={from}&to={to}&step=5m"
        ))
        .await;
    assert_eq!(cpu["completeness"], 0.0);
    assert!(cpu["series"]["stats"]["avg"].is_null());
    assert_eq!(cpu["sources"]["prometheus"]["status"], "partial");

    // --- summary
    let sum = env
        .get_ok(&format!(
            "/api/v1/services/demo-frontend/summary?from={from}&to={to}"
        ))
        .await;
    assert!(
        close(num(&sum["requests"]), 3.1 * len, 1e-9),
        "{}",
        sum["requests"]
    );
    assert!(close(num(&sum["errors"]), 0.1 * len, 1e-9));
    assert!(close(num(&sum["error_ratio"]), 0.1 / 3.1, 1e-9));
    assert!(close(num(&sum["availability"]), 1.0 - 0.1 / 3.1, 1e-9));
    assert!(close(
        num(&sum["latency_seconds"]["p99"]),
        quantile(0.99, &c),
        1e-6
    ));
    assert_eq!(sum["completeness"], 1.0);
    assert_eq!(sum["sources"]["prometheus"]["status"], "ok");
    assert_eq!(sum["sources"]["slo_file"]["status"], "ok");
    assert_eq!(
        sum["detections"][0]["detection"], "rate",
        "the summary keeps the detections part"
    );
    let slos: BTreeMap<&str, &Value> = sum["slos"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| (x["name"].as_str().unwrap(), x))
        .collect();
    let avail = slos["requests-availability"];
    assert!(close(num(&avail["error_ratio"]), 0.1 / 3.1, 1e-9));
    assert!(close(
        num(&avail["error_budget_remaining"]),
        1.0 - (0.1 / 3.1) / 0.001,
        1e-6
    ));
    let lat = slos["requests-latency"];
    assert!(
        close(num(&lat["error_ratio"]), (3.1 - c[1]) / 3.1, 1e-6),
        "{lat}"
    );

    // --- breakdown ↔ summary, every dimension, JSON and CSV
    let want_rows: BTreeMap<&str, Vec<(&str, f64)>> = [
        ("route", vec![("/api/products", 2.0), ("/api/orders", 1.1)]),
        ("status_code", vec![("200", 3.0), ("500", 0.1)]),
        ("method", vec![("GET", 2.0), ("POST", 1.1)]),
        ("instance", vec![("i-1", 3.1)]),
    ]
    .into_iter()
    .collect();
    for (by, rows) in &want_rows {
        let path = format!("/api/v1/services/demo-frontend/breakdown?by={by}&from={from}&to={to}");
        let b = env.get_ok(&path).await;
        let got = b["rows"].as_array().unwrap();
        assert_eq!(got.len(), rows.len(), "{by}: {b:#}");
        let mut total = 0.0;
        let mut errors = 0.0;
        for (row, (key, rate)) in got.iter().zip(rows) {
            assert_eq!(row["key"], *key, "{by}");
            assert!(close(num(&row["requests"]), rate * len, 1e-9), "{by} {key}");
            total += num(&row["requests"]);
            errors += num(&row["errors"]);
        }
        // Reconciliation to the request.
        assert!(
            (total - num(&sum["requests"])).abs() < 0.5,
            "{by}: {total} vs {}",
            sum["requests"]
        );
        assert!((errors - num(&sum["errors"])).abs() < 0.5, "{by}: errors");
        assert!((num(&b["totals"]["requests"]) - num(&sum["requests"])).abs() < 0.5);
        assert_eq!(b["completeness"], 1.0);
        // The same as CSV, parsed back.
        let (header, csv_rows) = env.csv(&format!("{path}&format=csv"), false).await;
        assert_eq!(header[0], *by);
        assert_eq!(header[1], "requests (count)");
        assert_eq!(header[5], "latency_p50 (seconds)");
        assert_eq!(csv_rows.len(), got.len());
        for (r, j) in csv_rows.iter().zip(got) {
            assert_eq!(r[0], j["key"].as_str().unwrap());
            assert!(close(r[1].parse().unwrap(), num(&j["requests"]), 1e-12));
            assert!(close(
                r[2].parse::<f64>().unwrap() + 1.0,
                num(&j["errors"]) + 1.0,
                1e-12
            ));
        }
    }
    let inv = env
        .get_ok(&format!(
            "/api/v1/services/demo-inventory/breakdown?by=instance&from={from}&to={to}"
        ))
        .await;
    let keys: Vec<&str> = inv["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["i-2", "i-3"]);
    // Metric series as CSV through the Accept header.
    let (header, rows) = env
        .csv(
            &format!(
                "/api/v1/services/demo-frontend/metrics/request_rate?from={from}&to={to}&step=60"
            ),
            true,
        )
        .await;
    assert_eq!(header, ["timestamp (unix s)", "request_rate (requests/s)"]);
    assert_eq!(rows.len() as i64, (to - from) / 60 + 1);
    assert_eq!(rows[0][0].parse::<i64>().unwrap(), from);
    assert!(rows.iter().all(|r| close(r[1].parse().unwrap(), 3.1, 1e-6)));
    let (header, rows) = env
        .csv(
            &format!(
                "/api/v1/services/demo-frontend/metrics?from={from}&to={to}&step=300&format=csv"
            ),
            false,
        )
        .await;
    assert_eq!(header.len(), 9);
    assert_eq!(header[7], "memory (bytes)");
    assert!(rows.iter().all(|r| r[7] == "100000000"), "{rows:?}");

    // --- completeness with the payment service's gap
    let (gf, gt) = (s + GAP.0 - 1800, s + GAP.1 + 1800);
    let pay = env
        .get_ok(&format!(
            "/api/v1/services/demo-payment/metrics/request_rate?from={gf}&to={gt}&step=15"
        ))
        .await;
    let expected_points = (gt - gf) / STEP + 1;
    let missing = (GAP.1 - GAP.0) / STEP;
    let want = (expected_points - missing) as f64 / expected_points as f64;
    assert!(
        close(num(&pay["completeness"]), want, 1e-9),
        "{} vs {want}",
        pay["completeness"]
    );
    let src = &pay["sources"]["prometheus"];
    assert_eq!(src["status"], "partial", "{src}");
    let gaps = src["gaps"].as_array().unwrap();
    assert_eq!(gaps.len(), 1, "{src}");
    // Missing samples at s+GAP.0+7 ... s+GAP.1-8: the steps after them.
    assert_eq!(num(&gaps[0]["from"]) as i64, s + GAP.0 + STEP);
    assert_eq!(num(&gaps[0]["to"]) as i64, s + GAP.1);
    let psum = env
        .get_ok(&format!(
            "/api/v1/services/demo-payment/summary?from={gf}&to={gt}&step=15"
        ))
        .await;
    assert!(close(num(&psum["completeness"]), want, 1e-9));
    assert_eq!(psum["sources"]["prometheus"]["status"], "partial");

    // --- validation against real data
    let (st, v) = env.get("/api/v1/services/nope/summary").await;
    assert_eq!(st, 400, "{v}");
    assert_eq!(v["parameter"], "service");
    assert!(v["accepted"]
        .as_array()
        .unwrap()
        .iter()
        .any(|x| x == "demo-frontend"));

    // --- Prometheus down: answers that can still be given are given, naming the source.
    drop(env.prom.take());
    tokio::time::sleep(Duration::from_secs(11)).await; // past the services cache
    let (st, v) = env
        .get(&format!(
            "/api/v1/services/demo-frontend/summary?from={from}&to={to}"
        ))
        .await;
    assert_eq!(st, 200, "{v:#}");
    assert_eq!(v["sources"]["prometheus"]["status"], "unavailable");
    assert!(
        v["sources"]["prometheus"]["reason"]
            .as_str()
            .unwrap()
            .contains("connect"),
        "{v:#}"
    );
    assert!(v["requests"].is_null());
    assert_eq!(v["completeness"], 0.0);
    assert_eq!(v["sources"]["anomaly_store"]["status"], "ok");
    let (st, v) = env.get("/api/v1/services").await;
    assert_eq!(st, 200, "{v:#}");
    assert_eq!(v["completeness"], 0.0);
    assert_eq!(
        v["services"].as_array().unwrap().len(),
        3,
        "known from the detection"
    );
    let (st, v) = env
        .get(&format!(
            "/api/v1/services/demo-frontend/metrics/request_rate?from={from}&to={to}"
        ))
        .await;
    assert_eq!(st, 503, "{v:#}");
    assert_eq!(v["sources"]["prometheus"]["status"], "unavailable");
    let (st, v) = env.get("/api/v1/anomalies").await;
    assert_eq!(st, 200, "{v:#}");

    // The live stream: a `history` event, then snapshots naming the unavailable source. It
    // stays open across the shutdown below, which must still finish.
    let mut stream = env
        .http
        .get(format!("{}/api/v1/stream", env.base))
        .send()
        .await
        .unwrap();
    assert!(stream.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let mut text = String::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !text.contains("event: snapshot\ndata: {\"time\":1") {
        assert!(std::time::Instant::now() < deadline, "no snapshot: {text}");
        let chunk = tokio::time::timeout(Duration::from_secs(10), stream.chunk())
            .await
            .expect("stream sends")
            .unwrap()
            .expect("stream open");
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(text.starts_with("event: history\n"), "{text}");
    let snap = text
        .split("event: snapshot\ndata: ")
        .find(|s| s.starts_with("{\"time\":1"))
        .unwrap()
        .split('\n')
        .next()
        .unwrap();
    let snap: Value = serde_json::from_str(snap).unwrap();
    assert_eq!(
        snap["sources"]["prometheus"]["status"], "unavailable",
        "{snap}"
    );

    env.cancel.cancel();
    tokio::time::timeout(Duration::from_secs(30), &mut env.server)
        .await
        .expect("service stops, even with a stream open")
        .unwrap();
    drop(stream);
}
