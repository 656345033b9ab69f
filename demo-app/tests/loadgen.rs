//! `loadgen` against the three services served in-process on 127.0.0.1:0: the open loop sends
//! exactly the planned number of requests, a configured fault error rate is what loadgen
//! observes, and an `error-spike` injection shows up as errors inside its window only.
//!
//! Run: `cargo test -p demo-app --test loadgen` (about 12 s).

use std::time::Duration;

use axum::Router;
use demo_app::config::SimLatency;
use demo_app::http::Readiness;
use demo_app::loadgen::{run, LoadOptions, Pattern, Schedule, Summary};
use demo_app::server::{app, AppOptions};
use demo_app::Service;

async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    format!("http://{addr}")
}

/// Serves the whole shop; returns the frontend URL.
async fn shop() -> String {
    let ready = Readiness::new();
    ready.set(true);
    let meter = opentelemetry::global::meter("test");
    let mut o = AppOptions {
        sim: SimLatency::none(),
        inventory_url: "http://unused".into(),
        payment_url: "http://unused".into(),
        ready,
    };
    let inv = serve(app(Service::Inventory, &meter, &o).unwrap()).await;
    let pay = serve(app(Service::Payment, &meter, &o).unwrap()).await;
    o.inventory_url = inv;
    o.payment_url = pay;
    serve(app(Service::Frontend, &meter, &o).unwrap()).await
}

fn options(target: &str, rps: f64, secs: u64, injects: &[&str]) -> LoadOptions {
    LoadOptions {
        target: target.parse().unwrap(),
        schedule: Schedule {
            rps,
            pattern: Pattern::Flat,
            day: Duration::from_secs(600),
            injects: injects.iter().map(|s| s.parse().unwrap()).collect(),
        },
        duration: Duration::from_secs(secs),
        timeout: Duration::from_secs(5),
        max_in_flight: 1_000,
        progress_every: Duration::from_secs(1),
        concurrency: None,
    }
}

async fn load(opts: LoadOptions) -> Summary {
    let s = run(opts, |line| eprintln!("{line}")).await.unwrap();
    eprintln!("{}", s.render());
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_loop_sends_the_planned_requests() {
    let target = shop().await;
    let opts = options(&target, 100.0, 2, &["traffic-drop=0.5@1s+1s"]);
    let planned = opts
        .schedule
        .planned_starts(opts.duration, usize::MAX)
        .len() as u64;
    assert_eq!(planned, 150);
    let s = load(opts).await;
    assert_eq!(s.sent + s.dropped, planned);
    assert_eq!(s.dropped, 0);
    assert_eq!(s.ok + s.client_errors + s.errors, s.sent);
    assert_eq!(s.errors, 0);
    assert!(s.latency_ms.p50 > 0.0 && s.latency_ms.p99 >= s.latency_ms.p50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_error_rate_is_what_loadgen_observes() {
    let target = shop().await;
    let r = reqwest::Client::new()
        .put(format!("{target}/admin/faults"))
        .json(&serde_json::json!({"error_rate": 0.2}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let s = load(options(&target, 300.0, 3, &[])).await;
    assert_eq!(s.sent, 900);
    // sd of the observed ratio at p=0.2, n=900 is ~0.013; 0.06 is ~4.5 sd.
    assert!(
        (s.error_ratio - 0.2).abs() < 0.06,
        "observed {} vs configured 0.2",
        s.error_ratio
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_spike_injection_is_bounded_to_its_window() {
    let target = shop().await;
    // 200 rps for 5 s; every request fails from 1 s to 3 s (about 400 requests).
    let s = load(options(&target, 200.0, 5, &["error-spike=1.0@1s+2s"])).await;
    assert_eq!(s.sent, 1_000);
    assert!(
        (340..=460).contains(&s.errors),
        "errors {} outside the spike window's ~400",
        s.errors
    );
    let after: serde_json::Value = reqwest::get(format!("{target}/admin/faults"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(after["active"], false, "the spike clears itself: {after}");
}
