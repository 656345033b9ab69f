//! End-to-end test of the live service with a REAL Prometheus and a REAL Alertmanager (Debian
//! packages `prometheus` and `prometheus-alertmanager`; `make deps` installs them).
//!
//! 1. A test HTTP server exposes a gauge we control (`/metrics`) and receives Alertmanager's
//!    webhook (`/am`) and the detector's own signed webhook (`/signed`).
//! 2. An hour of normal history is backfilled with `promtool tsdb create-blocks-from
//!    openmetrics` into Prometheus' data directory.
//! 3. The detector binary starts while Prometheus is still down: cycles fail with reason
//!    `connect`, `/health` says `degraded`, the process stays up.
//! 4. Prometheus starts (scraping the test server every second): the detector recovers and
//!    replays the history.
//! 5. The gauge triples: Alertmanager's webhook must receive the firing `AnomalyDetected`
//!    alert, the signed webhook must receive it with a valid `X-Signature-256`.
//! 6. The gauge returns to normal: Alertmanager's webhook must receive the resolution.
//! 7. SIGTERM: the detector exits 0.
//!
//! Run: `cargo test -p anomaly-detector --test service_live -- --nocapture` (about 1 minute).

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::{get, post};
use axum::Router;
use test_support::prometheus::Prometheus;
use test_support::{free_port, require_bin, Procs, TempDir};

const SECRET: &str = "live-test-secret";
const NORMAL: f64 = 0.1;
const SPIKE: f64 = 0.3;

#[derive(Default)]
struct Received {
    am: Mutex<Vec<serde_json::Value>>,
    signed: Mutex<Vec<(Option<String>, Bytes)>>,
}

impl Received {
    /// The first Alertmanager payload received with `status` (`firing` or `resolved`).
    fn am_payload(&self, status: &str) -> Option<serde_json::Value> {
        self.am
            .lock()
            .unwrap()
            .iter()
            .find(|p| p["status"] == status)
            .cloned()
    }
}

#[derive(Clone)]
struct TestServer {
    value: Arc<AtomicU64>,
    received: Arc<Received>,
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// Deterministic "normal" signal: a 10-minute wave plus pseudo-random noise.
fn normal_value(t: i64) -> f64 {
    let noise = ((t.wrapping_mul(2_654_435_761) >> 7) % 1000) as f64 / 1000.0 - 0.5;
    NORMAL + 0.01 * (2.0 * std::f64::consts::PI * t as f64 / 600.0).sin() + 0.01 * noise
}

async fn start_test_server() -> (TestServer, u16) {
    let server = TestServer {
        value: Arc::new(AtomicU64::new(0f64.to_bits())),
        received: Arc::default(),
    };
    let app = Router::new()
        .route(
            "/metrics",
            get(|State(s): State<TestServer>| async move {
                let spike = f64::from_bits(s.value.load(Ordering::SeqCst));
                let v = if spike > 0.0 { spike } else { normal_value(unix_now() as i64) };
                format!("# TYPE demo_latency_seconds gauge\ndemo_latency_seconds{{route=\"/api/orders\"}} {v}\n")
            }),
        )
        .route(
            "/am",
            post(|State(s): State<TestServer>, body: Bytes| async move {
                let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
                s.received.am.lock().unwrap().push(v);
                ""
            }),
        )
        .route(
            "/signed",
            post(|State(s): State<TestServer>, headers: HeaderMap, body: Bytes| async move {
                let sig = headers
                    .get("x-signature-256")
                    .map(|v| v.to_str().unwrap().to_string());
                s.received.signed.lock().unwrap().push((sig, body));
                ""
            }),
        )
        .with_state(server.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (server, port)
}

async fn wait_for<T>(what: &str, timeout: Duration, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn get_text(http: &reqwest::Client, url: &str) -> Option<String> {
    let r = http.get(url).send().await.ok()?;
    if !r.status().is_success() {
        return None;
    }
    r.text().await.ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detects_and_resolves_through_real_prometheus_and_alertmanager() {
    let promtool = require_bin("promtool");
    let alertmanager = require_bin("prometheus-alertmanager");
    let started = Instant::now();

    let dir = TempDir::new("anomaly-detector-live");
    std::fs::create_dir_all(dir.join("prom-data")).unwrap();
    std::fs::create_dir_all(dir.join("am-data")).unwrap();

    let (server, tport) = start_test_server().await;
    let (prom_port, am_port, det_port) = (free_port(), free_port(), free_port());

    // Backfill one hour of normal history for the exact series the scrape will produce.
    let now = unix_now() as i64;
    let mut om = String::from("# TYPE demo_latency_seconds gauge\n");
    for t in (now - 3600..now - 3).step_by(2) {
        om.push_str(&format!(
            "demo_latency_seconds{{instance=\"127.0.0.1:{tport}\",job=\"app\",route=\"/api/orders\"}} {} {t}\n",
            normal_value(t)
        ));
    }
    om.push_str("# EOF\n");
    std::fs::write(dir.join("history.om"), om).unwrap();
    let out = Command::new(&promtool)
        .args(["tsdb", "create-blocks-from", "openmetrics", "-q"])
        .arg(dir.join("history.om"))
        .arg(dir.join("prom-data"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool backfill failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let scrape_configs = format!(
        "scrape_configs:\n  - job_name: app\n    static_configs: [{{targets: ['127.0.0.1:{tport}']}}]\n"
    );
    std::fs::write(
        dir.join("alertmanager.yml"),
        format!(
            "route:\n  receiver: test\n  group_by: [alertname, detection]\n  group_wait: 1s\n  group_interval: 1s\n  repeat_interval: 1h\nreceivers:\n  - name: test\n    webhook_configs:\n      - url: http://127.0.0.1:{tport}/am\n        send_resolved: true\n"
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("detector.yaml"),
        format!(
            r#"prometheus:
  url: http://127.0.0.1:{prom_port}
  timeout: 5s
  retry: {{max_attempts: 2, initial_backoff: 50ms, max_backoff: 100ms}}
evaluation_interval: 2s
alertmanager:
  url: http://127.0.0.1:{am_port}
  retry: {{max_attempts: 5, initial_backoff: 100ms, max_backoff: 500ms}}
webhooks:
  - name: signed
    url: http://127.0.0.1:{tport}/signed
    secret: ${{env:LIVE_TEST_SECRET}}
detections:
  - name: latency
    query: demo_latency_seconds
    step: 2s
    history: 1h
    series_expiry: 1m
    labels: {{team: test}}
    webhooks: [signed]
"#
        ),
    )
    .unwrap();

    let mut procs = Procs::default();
    let mut am_cmd = Command::new(&alertmanager);
    am_cmd
        .arg(format!(
            "--config.file={}",
            dir.join("alertmanager.yml").display()
        ))
        .arg(format!("--storage.path={}", dir.join("am-data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{am_port}"))
        .arg("--cluster.listen-address=");
    procs.spawn("alertmanager", am_cmd, dir.join("alertmanager.log"));
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let am_ready = format!("http://127.0.0.1:{am_port}/-/ready");
    wait_for("Alertmanager ready", Duration::from_secs(20), async || {
        get_text(&http, &am_ready).await
    })
    .await;

    // The detector starts while Prometheus is down.
    let mut det_cmd = Command::new(env!("CARGO_BIN_EXE_anomaly-detector"));
    det_cmd
        .arg("--config")
        .arg(dir.join("detector.yaml"))
        .env("DETECTOR_ADDR", format!("127.0.0.1:{det_port}"))
        .env("LIVE_TEST_SECRET", SECRET)
        .env("RUST_LOG", "info,anomaly_detector=debug")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .env_remove("PROMETHEUS_URL")
        .env_remove("ALERTMANAGER_URL");
    let detector = procs.spawn("detector", det_cmd, dir.join("detector.log"));
    let det = format!("http://127.0.0.1:{det_port}");
    let metrics_url = format!("{det}/metrics");
    let health_url = format!("{det}/health");
    wait_for(
        "a failed cycle with reason connect",
        Duration::from_secs(20),
        async || {
            get_text(&http, &metrics_url).await.filter(|m| {
                m.contains(
                    "anomaly_detector_failures_total{detection=\"latency\",reason=\"connect\"}",
                )
            })
        },
    )
    .await;
    let health: serde_json::Value =
        serde_json::from_str(&get_text(&http, &health_url).await.unwrap()).unwrap();
    assert_eq!(health["status"], "degraded", "{health}");
    assert_eq!(health["detections"][0]["status"], "failure", "{health}");

    // Prometheus comes up: the detector recovers by itself.
    let _prometheus = Prometheus::new(&scrape_configs)
        .port(prom_port)
        .data_dir(dir.join("prom-data"))
        .flag("--storage.tsdb.retention.time=1d")
        .start()
        .await;
    let health = wait_for(
        "the detector to recover",
        Duration::from_secs(30),
        async || {
            let h: serde_json::Value =
                serde_json::from_str(&get_text(&http, &health_url).await?).ok()?;
            (h["status"] == "ok" && h["detections"][0]["series"] == 1).then_some(h)
        },
    )
    .await;
    eprintln!("recovered: {health}");
    let metrics = get_text(&http, &metrics_url).await.unwrap();
    let series = format!(
        "detection=\"latency\",instance=\"127.0.0.1:{tport}\",job=\"app\",route=\"/api/orders\""
    );
    for g in [
        "anomaly_score",
        "anomaly_expected_value",
        "anomaly_lower_bound",
        "anomaly_upper_bound",
    ] {
        assert!(
            metrics.contains(&format!("{g}{{{series}}}")),
            "{g} missing:\n{metrics}"
        );
    }
    // The exposition passes Prometheus' own linter.
    let mut check = Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    check
        .stdin
        .take()
        .unwrap()
        .write_all(metrics.as_bytes())
        .unwrap();
    let out = check.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The history was replayed: far more points than cycles.
    let points: f64 = metrics
        .lines()
        .find_map(|l| {
            l.strip_prefix("anomaly_detector_points_evaluated_total{detection=\"latency\"} ")
        })
        .expect("points counter")
        .parse()
        .unwrap();
    assert!(points > 1000.0, "history replayed, got {points} points");
    assert!(
        !metrics.contains("model=\"warming_up\""),
        "history must end warm-up:\n{metrics}"
    );

    // Let a few live points through, then spike.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(
        server.received.am.lock().unwrap().is_empty(),
        "no alert before the spike"
    );
    let spike_at = Instant::now();
    server.value.store(SPIKE.to_bits(), Ordering::SeqCst);
    let firing = wait_for(
        "Alertmanager to deliver the firing alert",
        Duration::from_secs(60),
        async || server.received.am_payload("firing"),
    )
    .await;
    eprintln!(
        "firing delivered by Alertmanager {:.1}s after the spike",
        spike_at.elapsed().as_secs_f64()
    );
    let alert = &firing["alerts"][0];
    assert_eq!(alert["labels"]["alertname"], "AnomalyDetected");
    assert_eq!(alert["labels"]["detection"], "latency");
    assert_eq!(alert["labels"]["route"], "/api/orders");
    assert_eq!(alert["labels"]["team"], "test");
    assert!(matches!(
        alert["labels"]["severity"].as_str(),
        Some("warning" | "critical")
    ));
    let desc = alert["annotations"]["description"].as_str().unwrap();
    assert!(desc.starts_with("Observed 0.3 vs expected"), "{desc}");
    assert!(alert["annotations"]["model"].is_string() && alert["annotations"]["score"].is_string());

    // The signed webhook got the same anomaly, with a valid signature.
    let (sig, body) = wait_for("the signed webhook", Duration::from_secs(20), async || {
        server.received.signed.lock().unwrap().first().cloned()
    })
    .await;
    let sig = sig.expect("X-Signature-256 header");
    assert!(
        anomaly_detector::alert::verify(SECRET.as_bytes(), &body, &sig),
        "signature {sig} does not verify"
    );
    let payload: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(payload["status"], "firing");
    assert_eq!(
        payload["alerts"][0]["labels"]["alertname"],
        "AnomalyDetected"
    );

    let anomalies: serde_json::Value = serde_json::from_str(
        &get_text(&http, &format!("{det}/api/v1/anomalies"))
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        anomalies["firing"].as_array().unwrap().len(),
        1,
        "{anomalies}"
    );
    let summary: serde_json::Value = serde_json::from_str(
        &get_text(&http, &format!("{det}/api/v1/services/app/summary"))
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(summary["firing_count"], 1, "{summary}");

    // Back to normal: the resolution reaches Alertmanager's receiver.
    let normal_at = Instant::now();
    server.value.store(0f64.to_bits(), Ordering::SeqCst);
    wait_for(
        "Alertmanager to deliver the resolution",
        Duration::from_secs(90),
        async || server.received.am_payload("resolved"),
    )
    .await;
    eprintln!(
        "resolution delivered by Alertmanager {:.1}s after the return to normal",
        normal_at.elapsed().as_secs_f64()
    );
    let signed = server.received.signed.lock().unwrap().clone();
    let sent_firing = signed
        .iter()
        .filter(|(_, b)| {
            serde_json::from_slice::<serde_json::Value>(b).unwrap()["status"] == "firing"
        })
        .count();
    assert_eq!(
        sent_firing, 1,
        "webhook deduplicates the re-sent firing alert"
    );
    let metrics = get_text(&http, &metrics_url).await.unwrap();
    assert!(
        metrics.contains(
            "anomaly_detector_alerts_sent_total{sink=\"alertmanager\",status=\"resolved\"}"
        ),
        "{metrics}"
    );

    // Graceful shutdown on SIGTERM.
    let exit = procs.terminate(detector, Duration::from_secs(15)).await;
    assert!(exit.success(), "detector exit status {exit}");
    eprintln!("live test took {:.1}s", started.elapsed().as_secs_f64());
}
