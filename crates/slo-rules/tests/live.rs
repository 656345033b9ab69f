//! The SLOs against real series: the demo app (three services) sends OTLP to our collector,
//! a real Prometheus (Debian package) scrapes the collector's Prometheus exporter and evaluates
//! the checked-in `prometheus/rules/slos.yml`. Every SLI of the spec must resolve (the selectors
//! match the real metric names and labels, `le="0.25"` included), the probes must not count, and an
//! injected 5xx fault must page.
//!
//! Needs the `demo-app` and `otel-collector` binaries of the same target dir (`cargo test
//! --workspace` / `make test` build them) and `prometheus` on PATH (`make deps`).
//! Run: `cargo test -p slo-rules --test live` after `cargo build -p demo-app -p otel-collector`.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use test_support::collector::{collector_bin, start_collector};
use test_support::prometheus::{query, query_until, start_prometheus, Sample};
use test_support::{free_port, require_bin, workspace_root, Procs, TempDir};

const SERVICES: [&str; 3] = ["demo-frontend", "demo-inventory", "demo-payment"];
const WAIT: Duration = Duration::from_secs(60);

/// A binary of the workspace next to this crate's own (same target dir and profile), built
/// first when needed.
fn sibling_bin(name: &str) -> PathBuf {
    test_support::bins::workspace_bin(env!("CARGO_BIN_EXE_slo-rules"), name, name)
}

fn collector_config(otlp: u16, exporter: u16) -> String {
    format!(
        "receivers:\n  otlp:\n    protocols:\n      grpc:\n        endpoint: 127.0.0.1:{otlp}\n\
         processors:\n  batch:\n    timeout: 200ms\n\
         exporters:\n  prometheus:\n    endpoint: 127.0.0.1:{exporter}\n\
         service:\n  telemetry:\n    metrics:\n      level: none\n  pipelines:\n    metrics:\n\
         \x20     receivers: [otlp]\n      processors: [batch]\n      exporters: [prometheus]\n"
    )
}

async fn get(client: &reqwest::Client, url: &str) -> u16 {
    client
        .get(url)
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

fn value(samples: &[Sample], slo: &str, service: &str) -> Option<f64> {
    samples
        .iter()
        .find(|s| s.label("sloth_slo") == slo && s.label("sloth_service") == service)
        .map(|s| s.value)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slis_resolve_on_real_series_and_a_fault_pages() {
    require_bin("prometheus");
    let collector = collector_bin(env!("CARGO_BIN_EXE_slo-rules"));
    let demo_app = sibling_bin("demo-app");
    let dir = TempDir::new("slo-rules-live");
    let mut procs = Procs::default();

    let (otlp, exporter) = (free_port(), free_port());
    start_collector(
        &mut procs,
        &collector,
        &dir,
        &collector_config(otlp, exporter),
        &[otlp, exporter],
    )
    .await;

    let rules = workspace_root().join("prometheus/rules/slos.yml");
    let config = format!(
        "rule_files:\n  - {}\nscrape_configs:\n  - job_name: otel-collector-exporter\n    honor_labels: true\n    \
         static_configs:\n      - targets: ['127.0.0.1:{exporter}']\n",
        rules.display()
    );
    let prometheus = start_prometheus(&config, &[]).await;
    let prom = prometheus.url();

    let ports = [free_port(), free_port(), free_port()];
    let mut cmd = Command::new(&demo_app);
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            format!("http://127.0.0.1:{otlp}"),
        )
        .env("OTEL_METRIC_EXPORT_INTERVAL", "1000")
        .env("DEMO_ADDR", format!("127.0.0.1:{}", ports[0]))
        .env("DEMO_INVENTORY_ADDR", format!("127.0.0.1:{}", ports[1]))
        .env("DEMO_PAYMENT_ADDR", format!("127.0.0.1:{}", ports[2]))
        .env("DEMO_LATENCY_SCALE", "0")
        .env("OTEL_TRACES_SAMPLER", "always_off")
        .env("RUST_LOG", "warn");
    let app = procs.spawn("demo-app", cmd, dir.join("demo-app.log"));
    for port in ports {
        procs.wait_port(app, port).await;
    }
    let front = format!("http://127.0.0.1:{}", ports[0]);
    let client = reqwest::Client::new();

    // Prometheus must be scraping the app's series before the traffic: a counter first seen
    // after the requests has no increase, and without traffic an SLI is absent by design.
    query_until(
        prom,
        r#"demo_inventory_level{job="demo/demo-inventory"}"#,
        WAIT,
        |r| !r.is_empty(),
    )
    .await;

    // Traffic on every service (orders go through inventory and payment), and probes, which
    // must not count; in rounds until every SLO of the spec has its SLI from the real series.
    let order = serde_json::json!({"user_id": 1, "items": [{"product_id": 2, "quantity": 1}]});
    let deadline = Instant::now() + WAIT;
    let slis = loop {
        for _ in 0..5 {
            assert_eq!(get(&client, &format!("{front}/api/products")).await, 200);
            let status = client
                .post(format!("{front}/api/orders"))
                .json(&order)
                .send()
                .await
                .unwrap()
                .status();
            assert!(status.is_success(), "POST /api/orders: {status}");
            assert_eq!(get(&client, &format!("{front}/health")).await, 200);
        }
        let slis = query(prom, "slo:sli_error:ratio_rate5m").await;
        if slis.len() == 6 || Instant::now() > deadline {
            break slis;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    for service in SERVICES {
        for slo in ["requests-availability", "requests-latency"] {
            // No 5xx and no injected latency yet: every SLI is 0 (not absent).
            assert_eq!(
                value(&slis, slo, service),
                Some(0.0),
                "{service} {slo}: {slis:#?}"
            );
        }
    }

    // Every request to /api/products fails from now on (the fault clears itself after 120 s).
    let fault =
        serde_json::json!({"error_rate": 1.0, "duration_s": 120, "routes": ["/api/products"]});
    let status = client
        .put(format!("{front}/admin/faults"))
        .json(&fault)
        .send()
        .await
        .unwrap()
        .status();
    assert!(status.is_success(), "PUT /admin/faults: {status}");
    let deadline = Instant::now() + WAIT;
    let firing = loop {
        for _ in 0..5 {
            assert_eq!(get(&client, &format!("{front}/api/products")).await, 500);
        }
        let firing = query(
            prom,
            r#"ALERTS{alertname="SLOAvailabilityBudgetBurn", alertstate="firing"}"#,
        )
        .await;
        if !firing.is_empty() || Instant::now() > deadline {
            break firing;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(
        firing.iter().any(|a| a.label("severity") == "page"),
        "no page within {WAIT:?}: {firing:#?}"
    );
    assert!(
        firing
            .iter()
            .all(|a| a.label("sloth_service") == "demo-frontend"
                && a.label("service") == "demo-frontend"),
        "only the frontend burns: {firing:#?}"
    );
    let slis = query(
        prom,
        r#"slo:sli_error:ratio_rate5m{sloth_slo="requests-availability"}"#,
    )
    .await;
    assert!(
        value(&slis, "requests-availability", "demo-frontend").is_some_and(|v| v > 0.1),
        "{slis:#?}"
    );
    // The other services are untouched.
    assert_eq!(
        value(&slis, "requests-availability", "demo-inventory"),
        Some(0.0),
        "{slis:#?}"
    );
    assert_eq!(
        value(&slis, "requests-availability", "demo-payment"),
        Some(0.0),
        "{slis:#?}"
    );
    procs.assert_running(app);
}
