use super::proto::{decode_request, WriteRequest};
use super::*;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use std::sync::atomic::AtomicU32;

/// An in-process remote-write receiver: fails the first `fail_first` requests with `fail_status`.
#[derive(Default)]
struct Sink {
    fail_first: u32,
    fail_status: u16,
    /// Also fail this one attempt (0-based) with 503.
    fail_attempt: Option<u32>,
    attempts: AtomicU32,
    received: Mutex<Vec<WriteRequest>>,
    headers: Mutex<Vec<HeaderMap>>,
}

async fn write(State(sink): State<Arc<Sink>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let n = sink.attempts.fetch_add(1, Ordering::SeqCst);
    if n < sink.fail_first {
        return StatusCode::from_u16(sink.fail_status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    }
    if sink.fail_attempt == Some(n) {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    match decode_request(&body) {
        Ok(req) => {
            sink.received.lock().expect("lock").push(req);
            sink.headers.lock().expect("lock").push(headers);
            StatusCode::NO_CONTENT
        }
        Err(_) => StatusCode::BAD_REQUEST,
    }
}

async fn start_sink(sink: Arc<Sink>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let app = Router::new()
        .route("/api/v1/write", post(write))
        .with_state(sink);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}/api/v1/write")
}

use crate::translate::tests::fixture;

fn config(endpoint: String) -> RemoteWriteConfig {
    RemoteWriteConfig {
        endpoint,
        retry_on_failure: RetrySettings {
            initial_interval: Duration::from_millis(5),
            max_interval: Duration::from_millis(20),
            ..Default::default()
        },
        ..Default::default()
    }
}

fn samples(sink: &Sink) -> usize {
    sink.received
        .lock()
        .expect("lock")
        .iter()
        .flat_map(|r| &r.timeseries)
        .map(|t| t.samples.len())
        .sum()
}

async fn drain(e: &RemoteWriteExporter) {
    for _ in 0..500 {
        if e.in_flight() == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("queue did not drain");
}

#[tokio::test]
async fn sends_snappy_protobuf_with_the_remote_write_headers() {
    let sink = Arc::new(Sink::default());
    let mut c = config(start_sink(sink.clone()).await);
    c.external_labels.insert("cluster".into(), "c1".into());
    c.headers.insert("X-Scope-OrgID".into(), "tenant".into());
    let e = RemoteWriteExporter::start("prometheusremotewrite/t1", c, &CancellationToken::new())
        .expect("start");
    e.consume(Telemetry::Metrics(fixture("gauges_and_sums.json")))
        .await
        .expect("accepted");
    drain(&e).await;
    let got = sink.received.lock().expect("lock").clone();
    let h = sink.headers.lock().expect("lock")[0].clone();
    assert_eq!(h["content-encoding"], "snappy");
    assert_eq!(h["x-prometheus-remote-write-version"], "0.1.0");
    assert_eq!(h["content-type"], "application/x-protobuf");
    assert_eq!(h["x-scope-orgid"], "tenant");
    let series: Vec<String> = got
        .iter()
        .flat_map(|r| &r.timeseries)
        .map(|t| {
            let l: Vec<String> = t
                .labels
                .iter()
                .map(|l| format!("{}={}", l.name, l.value))
                .collect();
            format!("{} {}", l.join(","), t.samples[0].value)
        })
        .collect();
    assert!(
        series.contains(&"__name__=http_server_requests_total,cluster=c1,http_request_method=GET,http_response_status_code=200,instance=i-1,job=shop/checkout,otel_scope_name=app.meter,otel_scope_version=1.2 42".to_string()),
        "{series:#?}"
    );
    assert!(
        series
            .iter()
            .any(|s| s.starts_with("__name__=target_info,cluster=c1,host_name=h1")),
        "{series:#?}"
    );
    for t in got.iter().flat_map(|r| &r.timeseries) {
        assert!(
            t.labels.windows(2).all(|w| w[0].name < w[1].name),
            "labels sorted: {:?}",
            t.labels
        );
        assert_eq!(t.samples[0].timestamp, 1_700_000_000_000);
    }
    e.shutdown(tokio::time::Instant::now() + Duration::from_secs(1))
        .await;
}

#[tokio::test]
async fn retries_5xx_and_429_until_delivered() {
    for status in [500u16, 503, 429] {
        let sink = Arc::new(Sink {
            fail_first: 4,
            fail_status: status,
            ..Default::default()
        });
        let e = RemoteWriteExporter::start(
            "prometheusremotewrite/t2",
            config(start_sink(sink.clone()).await),
            &CancellationToken::new(),
        )
        .expect("start");
        e.consume(Telemetry::Metrics(fixture("histograms.json")))
            .await
            .expect("accepted");
        drain(&e).await;
        assert_eq!(
            samples(&sink),
            14,
            "status {status}: every sample delivered once"
        );
        assert_eq!(sink.attempts.load(Ordering::SeqCst), 5, "status {status}");
    }
}

#[tokio::test]
async fn other_4xx_are_dropped_without_retry() {
    let sink = Arc::new(Sink {
        fail_first: 100,
        fail_status: 400,
        ..Default::default()
    });
    let e = RemoteWriteExporter::start(
        "prometheusremotewrite/t3",
        config(start_sink(sink.clone()).await),
        &CancellationToken::new(),
    )
    .expect("start");
    e.consume(Telemetry::Metrics(fixture("summary.json")))
        .await
        .expect("accepted");
    drain(&e).await;
    assert_eq!(sink.attempts.load(Ordering::SeqCst), 1);
    assert_eq!(e.sender.metrics.failed_points.get(), 1);
}

#[tokio::test]
async fn network_errors_are_retried_until_the_endpoint_comes_up() {
    // Reserve a port, close it, send, then start the sink on that port.
    let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = probe.local_addr().expect("addr");
    drop(probe);
    let e = RemoteWriteExporter::start(
        "prometheusremotewrite/t4",
        config(format!("http://{addr}/api/v1/write")),
        &CancellationToken::new(),
    )
    .expect("start");
    e.consume(Telemetry::Metrics(fixture("summary.json")))
        .await
        .expect("accepted");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(e.in_flight(), 1, "still retrying");
    let sink = Arc::new(Sink::default());
    let listener = tokio::net::TcpListener::bind(addr).await.expect("rebind");
    let app = Router::new()
        .route("/api/v1/write", post(write))
        .with_state(sink.clone());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    drain(&e).await;
    assert_eq!(samples(&sink), 4);
    assert!(e.sender.metrics.retries.get() >= 1);
}

#[tokio::test]
async fn requests_are_split_by_max_samples() {
    let sink = Arc::new(Sink::default());
    let mut c = config(start_sink(sink.clone()).await);
    c.max_samples_per_request = 5;
    let e = RemoteWriteExporter::start("prometheusremotewrite/t5", c, &CancellationToken::new())
        .expect("start");
    e.consume(Telemetry::Metrics(fixture("histograms.json")))
        .await
        .expect("accepted");
    drain(&e).await;
    let got = sink.received.lock().expect("lock").clone();
    assert_eq!(got.len(), 3, "14 samples in requests of <= 5");
    assert!(got.iter().all(|r| r.timeseries.len() <= 5));
    assert_eq!(samples(&sink), 14);
}

#[tokio::test]
async fn a_full_queue_refuses_the_whole_batch() {
    // Nothing listens: requests stay queued and retrying.
    let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = probe.local_addr().expect("addr");
    drop(probe);
    let mut c = config(format!("http://{addr}/api/v1/write"));
    c.remote_write_queue.queue_size = 2;
    c.max_samples_per_request = 5;
    let e = RemoteWriteExporter::start("prometheusremotewrite/t6", c, &CancellationToken::new())
        .expect("start");
    let health = crate::extension::health::HealthState::new();
    health.set_ready();
    e.set_health(health.clone());
    // 3 requests > capacity 2 (one may be taken by the worker, but 3 never fit at once).
    let first = e.consume(Telemetry::Metrics(fixture("summary.json"))).await;
    assert!(first.is_ok());
    let err = e
        .consume(Telemetry::Metrics(fixture("histograms.json")))
        .await
        .expect_err("refused");
    assert!(err.is_retryable(), "{err}");
    assert_eq!(e.sender.metrics.enqueue_failed.get(), 2);
    assert!(
        !health.is_healthy(),
        "a full queue is reported to the health state"
    );
    e.shutdown(tokio::time::Instant::now() + Duration::from_millis(50))
        .await;
}

#[tokio::test]
async fn shutdown_drains_then_refuses() {
    let sink = Arc::new(Sink {
        fail_first: 2,
        fail_status: 503,
        ..Default::default()
    });
    let e = RemoteWriteExporter::start(
        "prometheusremotewrite/t7",
        config(start_sink(sink.clone()).await),
        &CancellationToken::new(),
    )
    .expect("start");
    e.consume(Telemetry::Metrics(fixture("histograms.json")))
        .await
        .expect("accepted");
    e.shutdown(tokio::time::Instant::now() + Duration::from_secs(5))
        .await;
    assert_eq!(samples(&sink), 14, "drained before shutdown returned");
    let err = e
        .consume(Telemetry::Metrics(fixture("summary.json")))
        .await
        .expect_err("closed");
    assert!(err.is_retryable());
}

/// The retry block is checked by the validation every exporter shares: values that made the
/// worker panic on its first retry (`delay.mul_f64(NaN)`) or retry with no delay are refused,
/// naming the key.
#[test]
fn retry_settings_are_validated_like_every_exporters() {
    let cases = [
        ("multiplier: .nan", "retry_on_failure.multiplier"),
        ("multiplier: .inf", "retry_on_failure.multiplier"),
        ("multiplier: 0.5", "retry_on_failure.multiplier"),
        (
            "randomization_factor: .nan",
            "retry_on_failure.randomization_factor",
        ),
        (
            "randomization_factor: 2",
            "retry_on_failure.randomization_factor",
        ),
        ("max_interval: 0s", "retry_on_failure.max_interval"),
        ("initial_interval: 0s", "retry_on_failure.initial_interval"),
    ];
    for (retry, key) in cases {
        let yaml =
            format!("endpoint: http://127.0.0.1:9/api/v1/write\nretry_on_failure: {{{retry}}}");
        let c =
            RemoteWriteConfig::parse(serde_yaml::from_str(&yaml).expect("yaml")).expect("parse");
        let e = c.validate().expect_err(retry);
        assert_eq!(e.path, key, "{retry}: {e}");
        let otlp: crate::exporter::retry::RetryConfig =
            serde_yaml::from_str(&format!("{{{retry}}}")).expect("otlp's block parses");
        assert_eq!(
            otlp.validate().expect_err(retry).path,
            key,
            "same answer for otlp"
        );
    }
    // A block that sets one key keeps this exporter's defaults for the others.
    let yaml = "endpoint: http://127.0.0.1:9/api/v1/write\nretry_on_failure: {max_interval: 1s}";
    let c = RemoteWriteConfig::parse(serde_yaml::from_str(yaml).expect("yaml")).expect("parse");
    c.validate().expect("valid");
    assert_eq!(
        c.retry_on_failure.initial_interval,
        Duration::from_millis(50)
    );
}

/// `tls.insecure` cannot make an https:// endpoint plain text: refused there, accepted (and
/// true to what happens) with http://.
#[test]
fn tls_insecure_must_agree_with_the_endpoint_scheme() {
    let parse =
        |y: &str| RemoteWriteConfig::parse(serde_yaml::from_str(y).expect("yaml")).expect("parse");
    parse("endpoint: http://127.0.0.1:9090/api/v1/write\ntls: {insecure: true}")
        .validate()
        .expect("plain text endpoint");
    let e = parse("endpoint: https://prom.example/api/v1/write\ntls: {insecure: true}")
        .validate()
        .expect_err("contradiction");
    assert_eq!(e.path, "tls.insecure");
    assert!(e.message.contains("https://"), "{e}");
}

#[test]
fn config_parses_and_validates() {
    let yaml = "endpoint: https://prom.example/api/v1/write\nheaders: {Authorization: Bearer x}\ntimeout: 10s\ntls: {insecure_skip_verify: true}\nexternal_labels: {cluster: c1}\ntarget_info: {enabled: false}\nresource_to_telemetry_conversion: {enabled: true}\nremote_write_queue: {queue_size: 100, num_consumers: 2}\nretry_on_failure: {initial_interval: 100ms, max_elapsed_time: 1m}\n";
    let c = RemoteWriteConfig::parse(serde_yaml::from_str(yaml).expect("yaml")).expect("parse");
    c.validate().expect("valid");
    assert!(!c.target_info.enabled);
    assert_eq!(c.retry_on_failure.max_elapsed_time, Duration::from_secs(60));
    let missing = RemoteWriteConfig::parse(serde_yaml::Value::Null).expect("parse");
    assert_eq!(
        missing.validate().expect_err("endpoint required").path,
        "endpoint"
    );
    let err =
        RemoteWriteConfig::parse(serde_yaml::from_str("endpoint: x\nqueue: {}").expect("yaml"))
            .expect_err("unknown");
    assert!(err.to_string().contains("queue"), "{err}");
    let bad = RemoteWriteConfig {
        endpoint: "ftp://x".into(),
        ..Default::default()
    };
    assert_eq!(bad.validate().expect_err("scheme").path, "endpoint");
}

/// Remote write keeps upstream's remote-write rule: no `target_info` for a resource with only
/// `service.*` identity attributes, one for a resource with other attributes.
#[tokio::test]
async fn target_info_only_for_resources_with_descriptive_attributes() {
    let e = RemoteWriteExporter::start(
        "prometheusremotewrite/ti",
        config("http://127.0.0.1:9/api/v1/write".into()),
        &CancellationToken::new(),
    )
    .expect("start");
    let requests = e.encode(&fixture("target_info_scrape.json"));
    let names: Vec<String> = requests
        .iter()
        .map(|r| decode_request(&r.body).expect("a remote-write request"))
        .flat_map(|w| w.timeseries)
        .filter(|t| {
            t.labels
                .iter()
                .any(|l| l.name == "__name__" && l.value == "target_info")
        })
        .map(|t| {
            t.labels
                .iter()
                .map(|l| format!("{}={}", l.name, l.value))
                .collect::<Vec<_>>()
                .join(",")
        })
        .collect();
    assert_eq!(
        names,
        vec!["__name__=target_info,host_name=h1,job=web".to_string()]
    );
    e.shutdown(tokio::time::Instant::now()).await;
}

#[test]
fn sending_queue_is_the_persistent_queue_and_needs_storage() {
    let parse = |yaml: &str| {
        RemoteWriteConfig::parse(serde_yaml::from_str(yaml).expect("yaml")).expect("parse")
    };
    let base = "endpoint: http://127.0.0.1:9/api/v1/write\n";
    let c = parse(&format!("{base}sending_queue: {{storage: file_storage/q}}"));
    c.validate().expect("valid");
    let q = c.sending_queue.as_ref().expect("block").queue_config(1);
    assert_eq!(
        (q.num_consumers, q.queue_size, q.max_size_mib),
        (1, 1000, 256)
    );
    assert_eq!(q.storage.as_deref(), Some("file_storage/q"));
    let e = parse(&format!("{base}sending_queue: {{queue_size: 5}}"))
        .validate()
        .expect_err("storage required");
    assert_eq!(e.path, "sending_queue.storage", "{e}");
    let e = parse(&format!(
        "{base}sending_queue: {{storage: s}}\nremote_write_queue: {{enabled: false}}"
    ))
    .validate()
    .expect_err("sync mode and disk queue");
    assert_eq!(e.path, "remote_write_queue.enabled", "{e}");
    let e = parse(&format!(
        "{base}sending_queue: {{storage: s}}\nremote_write_queue: {{num_consumers: 0}}"
    ))
    .validate()
    .expect_err("no sender");
    assert!(e.path.starts_with("remote_write_queue"), "{e}");
    let e = parse(&format!(
        "{base}sending_queue: {{storage: s, queue_size: 0}}"
    ))
    .validate()
    .expect_err("empty queue");
    assert_eq!(e.path, "sending_queue.queue_size", "{e}");
    let err = RemoteWriteConfig::parse(
        serde_yaml::from_str(&format!(
            "{base}sending_queue: {{storage: s, num_consumers: 3}}"
        ))
        .expect("yaml"),
    )
    .expect_err("num_consumers belongs to remote_write_queue");
    assert!(err.to_string().contains("num_consumers"), "{err}");
}

/// A batch of three requests whose second one fails once: the retry resumes at the second, so
/// the endpoint gets every sample exactly once.
#[tokio::test]
async fn a_persistent_batch_retry_resumes_after_the_accepted_requests() {
    use crate::exporter::queue::Export;
    let sink = Arc::new(Sink {
        fail_attempt: Some(1),
        ..Default::default()
    });
    let mut c = config(start_sink(sink.clone()).await);
    c.max_samples_per_request = 5;
    c.remote_write_queue.enabled = false;
    let e = RemoteWriteExporter::start(
        "prometheusremotewrite/durable",
        c,
        &CancellationToken::new(),
    )
    .expect("start");
    let durable = DurableRemoteWrite(e);
    let batch = durable
        .prepare(Telemetry::Metrics(fixture("histograms.json")))
        .expect("prepare");
    assert_eq!(batch.len(), 3, "14 samples in requests of <= 5");
    let err = durable
        .send(&batch)
        .await
        .expect_err("the second request fails");
    assert!(err.retryable, "503 is retryable: {err}");
    assert_eq!(sink.received.lock().expect("lock").len(), 1);
    durable
        .send(&batch)
        .await
        .expect("the retry delivers the rest");
    assert_eq!(
        sink.received.lock().expect("lock").len(),
        3,
        "each request once"
    );
    assert_eq!(samples(&sink), 14);
    assert_eq!(
        sink.attempts.load(Ordering::SeqCst),
        4,
        "1 ok, 1 failed, 2 ok"
    );
    durable
        .send(&batch)
        .await
        .expect("a finished batch sends nothing more");
    assert_eq!(sink.attempts.load(Ordering::SeqCst), 4);
}
