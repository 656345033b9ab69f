//! Shared helpers of the `prom_*` integration tests: start a real Prometheus / VictoriaMetrics on
//! a free loopback port with a temporary data dir, query it, run the Python SDK app, and a
//! minimal OTLP/HTTP (protobuf) intake that hands batches to an exporter.
//!
//! The intake is a test stand-in for the collector's OTLP receiver, so these tests exercise the
//! exporters with real SDK payloads without depending on the rest of the pipeline.

#![allow(dead_code, unreachable_pub)]

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use otel_collector::pipeline::{SharedConsumer, Telemetry};
use prost::Message;
use serde_json::Value;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Repository root (the parent of the crate dir).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("crate has a parent")
        .to_path_buf()
}

/// Finds `name` on PATH or panics telling to run `make deps`.
pub fn require_bin(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let p = dir.join(name);
        if p.is_file() {
            return p;
        }
    }
    panic!("{name} not found on PATH: run `make deps` (installs the Debian package)");
}

/// The venv Python with the OpenTelemetry SDK, or a panic telling to run `make deps`.
pub fn python() -> PathBuf {
    let p = repo_root().join(".venv/bin/python");
    assert!(p.is_file(), "{} missing: run `make deps`", p.display());
    p
}

/// A free loopback port (bound then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind 127.0.0.1:0")
        .local_addr()
        .expect("local addr")
        .port()
}

/// A temporary directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        let p = std::env::temp_dir().join(format!(
            "otelcol-{tag}-{}-{}",
            std::process::id(),
            Instant::now().elapsed().as_nanos() ^ rand_u64()
        ));
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }
}

fn rand_u64() -> u128 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u8(0);
    h.finish() as u128
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A server process killed on drop.
pub struct Server {
    pub child: Child,
    pub port: u16,
    pub _dir: TempDir,
    pub log: PathBuf,
}

impl Server {
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn wait_ready(url: &str, what: &str, server: &mut Server) {
    let client = reqwest::Client::new();
    // Generous: the machine may be busy compiling.
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Ok(r) = client.get(url).send().await {
            if r.status().is_success() {
                return;
            }
        }
        if let Ok(Some(status)) = server.child.try_wait() {
            panic!("{what} exited early ({status}):\n{}", server.log_text());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "{what} not ready at {url} within 30s:\n{}",
        server.log_text()
    );
}

/// Starts Prometheus on a free loopback port with `scrape_configs_yaml` (may be empty) and
/// `extra` flags.
pub async fn start_prometheus(scrape_configs_yaml: &str, extra: &[&str]) -> Server {
    let bin = require_bin("prometheus");
    let dir = TempDir::new("prom");
    let port = free_port();
    let cfg = dir.0.join("prometheus.yml");
    std::fs::write(
        &cfg,
        format!("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n{scrape_configs_yaml}"),
    )
    .expect("write prometheus.yml");
    let log = dir.0.join("prometheus.log");
    let logf = std::fs::File::create(&log).expect("log file");
    let child = Command::new(bin)
        .arg(format!("--config.file={}", cfg.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.0.join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .args(extra)
        .stdout(Stdio::null())
        .stderr(logf)
        .spawn()
        .expect("spawn prometheus");
    let mut s = Server {
        child,
        port,
        _dir: dir,
        log,
    };
    let ready = format!("{}/-/ready", s.url());
    wait_ready(&ready, "prometheus", &mut s).await;
    s
}

/// Starts VictoriaMetrics on a free loopback port; queries see new samples at once.
pub async fn start_victoria_metrics() -> Server {
    let bin = require_bin("victoria-metrics");
    let dir = TempDir::new("vm");
    let port = free_port();
    let log = dir.0.join("vm.log");
    let logf = std::fs::File::create(&log).expect("log file");
    let child = Command::new(bin)
        .arg(format!("-httpListenAddr=127.0.0.1:{port}"))
        .arg(format!("-storageDataPath={}", dir.0.join("data").display()))
        .arg("-search.latencyOffset=0s")
        .arg("-search.disableCache")
        .arg("-retentionPeriod=1d")
        .stdout(Stdio::null())
        .stderr(logf)
        .spawn()
        .expect("spawn victoria-metrics");
    let mut s = Server {
        child,
        port,
        _dir: dir,
        log,
    };
    let ready = format!("{}/health", s.url());
    wait_ready(&ready, "victoria-metrics", &mut s).await;
    s
}

/// One result of an instant query: labels and value.
#[derive(Debug, Clone)]
pub struct Sample {
    pub labels: serde_json::Map<String, Value>,
    pub value: f64,
}

impl Sample {
    pub fn label(&self, k: &str) -> &str {
        self.labels.get(k).and_then(Value::as_str).unwrap_or("")
    }
}

/// Runs an instant query against `/api/v1/query` (Prometheus and VictoriaMetrics).
pub async fn query(base: &str, promql: &str) -> Vec<Sample> {
    let client = reqwest::Client::new();
    let url =
        reqwest::Url::parse_with_params(&format!("{base}/api/v1/query"), &[("query", promql)])
            .expect("query URL");
    let resp = client.get(url).send().await.expect("query request");
    let body: Value = resp.json().await.expect("query JSON");
    assert_eq!(body["status"], "success", "{promql}: {body}");
    body["data"]["result"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|r| Sample {
            labels: r["metric"].as_object().cloned().unwrap_or_default(),
            value: r["value"][1]
                .as_str()
                .and_then(|v| v.parse().ok())
                .unwrap_or(f64::NAN),
        })
        .collect()
}

/// Polls `promql` until `ok` holds for its result (or panics after `timeout` with the last one).
pub async fn query_until(
    base: &str,
    promql: &str,
    timeout: Duration,
    ok: impl Fn(&[Sample]) -> bool,
) -> Vec<Sample> {
    let deadline = Instant::now() + timeout;
    loop {
        let r = query(base, promql).await;
        if ok(&r) {
            return r;
        }
        if Instant::now() > deadline {
            panic!("{promql}: condition not met within {timeout:?}; last result: {r:#?}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn intake(State(consumer): State<SharedConsumer>, body: Bytes) -> StatusCode {
    let Ok(req) = ExportMetricsServiceRequest::decode(body.as_ref()) else {
        return StatusCode::BAD_REQUEST;
    };
    match consumer.consume(Telemetry::Metrics(req)).await {
        Ok(()) => StatusCode::OK,
        Err(e) if e.is_retryable() => StatusCode::SERVICE_UNAVAILABLE,
        Err(_) => StatusCode::BAD_REQUEST,
    }
}

/// Starts the OTLP/HTTP protobuf intake (`POST /v1/metrics`) feeding `consumer`.
pub async fn start_intake(consumer: SharedConsumer) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind intake");
    let addr = listener.local_addr().expect("addr");
    let app = Router::new()
        .route("/v1/metrics", post(intake))
        .with_state(consumer);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}

/// Runs the Python SDK app (`tests/python/prom_sdk_app.py`) against `endpoint`.
pub async fn run_sdk_app(endpoint: &str, env: &[(&str, &str)]) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/prom_sdk_app.py");
    let mut cmd = tokio::process::Command::new(python());
    cmd.arg(&script)
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
        .env("OTEL_METRICS_EXPORTER", "otlp")
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .expect("python app finished within 60s")
        .expect("run python");
    assert!(
        out.status.success(),
        "python app failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Checks the series the Python SDK app produces after `rounds` cumulative rounds, as the
/// OpenTelemetry Collector names and labels them (polls until they appear).
pub async fn assert_sdk_series(base: &str, rounds: f64) {
    let wait = Duration::from_secs(40);
    let orders = query_until(base, "orders_placed_total", wait, |r| {
        r.len() == 2 && r.iter().all(|s| s.value >= 2.0 * rounds)
    })
    .await;
    for s in &orders {
        assert_eq!(s.label("job"), "shop/checkout", "{s:?}");
        assert_eq!(s.label("instance"), "checkout-1", "{s:?}");
        assert_eq!(s.label("otel_scope_name"), "prom.test.app", "{s:?}");
        assert_eq!(s.label("otel_scope_version"), "0.1.0", "{s:?}");
        let want = match s.label("payment_method") {
            "card" => 5.0 * rounds,
            "cash" => 2.0 * rounds,
            other => panic!("unexpected payment_method {other:?}"),
        };
        assert_eq!(s.value, want, "{s:?}");
    }

    let count = query(base, "http_server_request_duration_seconds_count").await;
    assert_eq!(count.len(), 1, "{count:?}");
    assert_eq!(count[0].value, 100.0 * rounds);
    assert_eq!(count[0].label("http_route"), "/api/orders");
    let p95 = query(
        base,
        "histogram_quantile(0.95, sum by (le) (http_server_request_duration_seconds_bucket))",
    )
    .await;
    assert_eq!(p95.len(), 1, "{p95:?}");
    assert!(
        p95[0].value > 0.75 && p95[0].value <= 1.0,
        "p95 {} must fall in the bucket of the true p95 0.95: (0.75, 1.0]",
        p95[0].value
    );
    let sum = query(base, "http_server_request_duration_seconds_sum").await;
    assert!((sum[0].value - 50.5 * rounds).abs() < 1e-6, "{sum:?}");

    let active = query(base, "active_requests").await;
    assert_eq!(active.len(), 1, "{active:?}");
    assert_eq!(
        active[0].value,
        3.0 * rounds,
        "up-down counter becomes a gauge"
    );

    let cpu = query(base, "system_cpu_utilization_ratio").await;
    assert_eq!(cpu.len(), 1, "{cpu:?}");
    assert_eq!(cpu[0].value, 0.42);
    assert_eq!(cpu[0].label("cpu"), "0");

    let info = query(base, "target_info").await;
    assert_eq!(info.len(), 1, "{info:?}");
    assert_eq!(info[0].label("deployment_environment"), "test");
    assert_eq!(info[0].label("telemetry_sdk_language"), "python");
    assert_eq!(info[0].label("job"), "shop/checkout");
    assert_eq!(info[0].label("instance"), "checkout-1");
    assert!(info[0].labels.get("service_name").is_none(), "{info:?}");
}

/// Asserts Prometheus holds at least one exemplar for `selector` whose `trace_id` / `span_id`
/// labels are 32 / 16 hex digits (polls until it appears).
pub async fn assert_trace_exemplars(base: &str, selector: &str) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let url = reqwest::Url::parse_with_params(
        &format!("{base}/api/v1/query_exemplars"),
        &[
            ("query", selector),
            ("start", &(now - 600).to_string()),
            ("end", &(now + 60).to_string()),
        ],
    )
    .expect("url");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let body: Value = reqwest::get(url.clone())
            .await
            .expect("exemplars")
            .json()
            .await
            .expect("json");
        if let Some(ex) = body["data"][0]["exemplars"].get(0) {
            let trace_id = ex["labels"]["trace_id"].as_str().unwrap_or_default();
            let span_id = ex["labels"]["span_id"].as_str().unwrap_or_default();
            assert_eq!(trace_id.len(), 32, "{body}");
            assert_eq!(span_id.len(), 16, "{body}");
            assert!(
                trace_id
                    .chars()
                    .chain(span_id.chars())
                    .all(|c| c.is_ascii_hexdigit()),
                "{body}"
            );
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no exemplars for {selector}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
