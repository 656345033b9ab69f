//! Scheduler invariants of a detection's loop, against a test HTTP server that answers
//! `query_range` slowly (300 ms per query, three times the 100 ms interval) — a real Prometheus
//! cannot be made that slow on demand, so a stand-in is used here:
//! * cycles never overlap (at most one query in flight), although every cycle overruns;
//! * the loop keeps running cycles and publishes results, and stops promptly on cancellation;
//! * a Prometheus answering 503 makes cycles fail with reason `http_5xx` while the loop goes on.
//!
//! The real Prometheus that is down and then up is in `tests/service_live.rs`.
//! Run: `cargo test -p anomaly-detector --test service_scheduler`.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anomaly_detector::alert::AlertDispatcher;
use anomaly_detector::config::Config;
use anomaly_detector::engine::{DetectionRunner, RunnerContext};
use anomaly_detector::metrics::Metrics;
use anomaly_detector::prometheus::PrometheusClient;
use anomaly_detector::state::{CycleStatus, Store};
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use tokio_util::sync::CancellationToken;

#[derive(Default)]
struct Slow {
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    requests: AtomicUsize,
    fail: AtomicBool,
}

async fn start(slow: Arc<Slow>) -> String {
    let app = Router::new()
        .route(
            "/api/v1/query_range",
            get(|State(s): State<Arc<Slow>>| async move {
                s.requests.fetch_add(1, Ordering::SeqCst);
                let now = s.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                s.max_in_flight.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(300)).await;
                s.in_flight.fetch_sub(1, Ordering::SeqCst);
                if s.fail.load(Ordering::SeqCst) {
                    return (StatusCode::SERVICE_UNAVAILABLE, "overloaded".to_string());
                }
                let t = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_secs();
                (
                    StatusCode::OK,
                    format!(r#"{{"status":"success","data":{{"resultType":"matrix","result":[{{"metric":{{"job":"a"}},"values":[[{t},"1"]]}}]}}}}"#),
                )
            }),
        )
        .with_state(slow);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

fn setup(url: &str) -> (DetectionRunner, Arc<Store>, Arc<Metrics>) {
    let text = format!(
        "prometheus: {{url: '{url}', retry: {{max_attempts: 1}}}}\ndetections: [{{name: slow, query: up, step: 1s, history: 1m}}]\n"
    );
    let config = Config::from_yaml(&text, Path::new("t.yaml"), |_| None).unwrap();
    config.validate().unwrap();
    let store = Arc::new(Store::new(["slow"], 10));
    let metrics = Arc::new(Metrics::default());
    let ctx = RunnerContext {
        client: PrometheusClient::new(&config.prometheus).unwrap(),
        store: store.clone(),
        metrics: metrics.clone(),
        alerts: AlertDispatcher::default(),
        dashboard_url: String::new(),
    };
    let d = config.detections.into_iter().next().unwrap();
    (
        DetectionRunner::new(d, Duration::from_millis(100), ctx),
        store,
        metrics,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overrunning_cycles_never_overlap_and_failures_do_not_stop_the_loop() {
    let slow = Arc::new(Slow::default());
    let url = start(slow.clone()).await;
    let (runner, store, metrics) = setup(&url);
    let cancel = CancellationToken::new();
    let task = tokio::spawn(runner.run(cancel.clone()));

    tokio::time::sleep(Duration::from_millis(1500)).await;
    let ok_requests = slow.requests.load(Ordering::SeqCst);
    assert!(
        ok_requests >= 2,
        "the loop keeps cycling: {ok_requests} queries"
    );
    let d = store.detections();
    assert_eq!(d[0].cycle.status, CycleStatus::Success);
    assert_eq!(d[0].series.len(), 1);

    // Prometheus starts answering 503: cycles fail, the loop continues.
    slow.fail.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(slow.requests.load(Ordering::SeqCst) >= ok_requests + 2);
    assert!(metrics.failures("slow", "http_5xx") >= 1);
    let d = store.detections();
    assert_eq!(d[0].cycle.status, CycleStatus::Failure);
    assert!(d[0].cycle.consecutive_failures >= 1);
    assert_eq!(d[0].series.len(), 1, "known series survive a failed cycle");

    // Cancellation interrupts the query in flight.
    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("the loop stops on cancellation")
        .unwrap();
    assert_eq!(
        slow.max_in_flight.load(Ordering::SeqCst),
        1,
        "cycles overlapped"
    );
}
