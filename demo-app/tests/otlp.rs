//! End-to-end telemetry tests: the real `demo-app` binary exports over OTLP gRPC to an
//! in-test receiver (see `common/mod.rs`; it stands in for the collector until the collector's
//! file exporter and the Prometheus path are wired in). Checks that one order is one trace with
//! spans from three services, correct semconv attributes, and that the request-duration
//! histogram counts exactly the requests made. Everything is flushed by a SIGTERM shutdown,
//! which these tests therefore also cover.
//!
//! Run: `cargo test -p demo-app --test otlp`.

mod common;

use std::collections::{BTreeSet, HashMap};

use common::{attr_int, attr_str, service_name, start_demo_app, start_sink};
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::Span;
use serde_json::Value;

/// (service.name, http.route, http.response.status_code) of a duration series.
type SeriesKey = (String, String, i64);

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// POSTs an order of `quantity` of `product_id` for `user_id`; asserts 201 and returns the body.
async fn place_order(
    client: &reqwest::Client,
    front: &str,
    user_id: u64,
    product_id: u64,
    quantity: u64,
) -> Value {
    let r = client
        .post(format!("{front}/api/orders"))
        .json(&serde_json::json!({"user_id": user_id, "items": [{"product_id": product_id, "quantity": quantity}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        201,
        "order of {quantity} x product {product_id}"
    );
    r.json().await.unwrap()
}

/// GETs `/api/products` `n` times, asserting 200 each time.
async fn read_products(client: &reqwest::Client, front: &str, n: usize) {
    for _ in 0..n {
        let r = client
            .get(format!("{front}/api/products"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
}

/// Every span the sink received, with the `service.name` of its resource.
fn received_spans(sink: &common::Sink) -> Vec<(String, Span)> {
    let mut out = Vec::new();
    for req in sink.traces.lock().unwrap().iter() {
        for rs in &req.resource_spans {
            let svc = service_name(&rs.resource);
            for s in rs.scope_spans.iter().flat_map(|ss| &ss.spans) {
                out.push((svc.clone(), s.clone()));
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_order_is_one_trace_across_three_services() {
    let (sink, otlp) = start_sink().await;
    let app = start_demo_app(otlp, &[("OTEL_METRIC_EXPORT_INTERVAL", "60000")]).await;
    let client = reqwest::Client::new();
    let order = place_order(&client, &app.front, 2, 3, 2).await;
    let trace_id = order["trace_id"].as_str().unwrap().to_string();
    assert_eq!(
        trace_id.len(),
        32,
        "order answer carries the trace id: {order}"
    );
    read_products(&client, &app.front, 1).await;
    assert!(app.terminate().await, "demo-app must exit 0 after SIGTERM");

    // A list read: its `db.query` span is a child of its server span, in the same trace.
    let received = received_spans(&sink);
    let all: Vec<&Span> = received.iter().map(|(_, s)| s).collect();
    let db = all
        .iter()
        .find(|s| s.name == "SELECT products")
        .expect("a db.query span for GET /api/products");
    assert_eq!(db.kind, SpanKind::Client as i32);
    assert_eq!(
        attr_str(&db.attributes, "db.collection.name").as_deref(),
        Some("products")
    );
    let server = all
        .iter()
        .find(|s| s.span_id == db.parent_span_id)
        .expect("the db.query span's parent is exported");
    assert_eq!(server.name, "GET /api/products");
    assert_eq!(server.kind, SpanKind::Server as i32);
    assert_eq!(server.trace_id, db.trace_id);

    // (service, span) for every span of the order's trace.
    let spans: Vec<(String, Span)> = received
        .into_iter()
        .filter(|(_, s)| hex(&s.trace_id) == trace_id)
        .collect();
    let services: BTreeSet<&str> = spans.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(
        services,
        BTreeSet::from(["demo-frontend", "demo-inventory", "demo-payment"]),
        "spans of the trace: {:?}",
        spans
            .iter()
            .map(|(s, sp)| (s, &sp.name))
            .collect::<Vec<_>>()
    );
    let by_id: HashMap<String, &(String, Span)> =
        spans.iter().map(|e| (hex(&e.1.span_id), e)).collect();
    let find = |svc: &str, name: &str| {
        spans
            .iter()
            .find(|(s, sp)| s == svc && sp.name == name)
            .unwrap_or_else(|| panic!("no span {name:?} from {svc}"))
            .1
            .clone()
    };

    // Frontend server span: root, semconv attributes, 201.
    let root = find("demo-frontend", "POST /api/orders");
    assert!(
        root.parent_span_id.is_empty(),
        "the order's server span is the root"
    );
    assert_eq!(root.kind, SpanKind::Server as i32);
    assert_eq!(
        attr_str(&root.attributes, "http.request.method").as_deref(),
        Some("POST")
    );
    assert_eq!(
        attr_str(&root.attributes, "http.route").as_deref(),
        Some("/api/orders")
    );
    assert_eq!(
        attr_int(&root.attributes, "http.response.status_code"),
        Some(201),
        "{:?}",
        root.attributes
    );
    assert!(
        root.attributes
            .iter()
            .all(|kv| kv.key != "demo.service" && kv.key != "trace_id"),
        "routing and log-correlation fields are stripped"
    );

    // Each downstream server span's parent is a frontend client span (traceparent propagated).
    for (svc, route) in [
        ("demo-inventory", "POST /inventory/reserve"),
        ("demo-payment", "POST /payments/charge"),
    ] {
        let server = find(svc, route);
        assert_eq!(server.kind, SpanKind::Server as i32);
        let (parent_svc, parent) = by_id
            .get(&hex(&server.parent_span_id))
            .map(|e| (e.0.as_str(), &e.1))
            .unwrap_or_else(|| panic!("{route}: parent span not in the trace"));
        assert_eq!(parent_svc, "demo-frontend");
        assert_eq!(parent.kind, SpanKind::Client as i32);
        assert_eq!(
            attr_str(&parent.attributes, "http.request.method").as_deref(),
            Some("POST")
        );
        assert_eq!(
            attr_int(&parent.attributes, "http.response.status_code"),
            Some(200)
        );
        assert!(attr_int(&parent.attributes, "server.port").is_some());
    }

    // Business spans and span events.
    let place = find("demo-frontend", "order.place");
    assert!(
        place.events.iter().any(|e| e.name == "order created"),
        "events: {:?}",
        place.events
    );
    find("demo-inventory", "inventory.reserve");
    let capture = find("demo-payment", "payment.capture");
    assert!(capture.events.iter().any(|e| e.name == "payment captured"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duration_histogram_counts_every_request() {
    const N: u64 = 37;
    let (sink, otlp) = start_sink().await;
    let app = start_demo_app(otlp, &[("OTEL_METRIC_EXPORT_INTERVAL", "60000")]).await;
    let client = reqwest::Client::new();
    for i in 0..N {
        let r = client
            .get(format!("{}/api/users/{}", app.front, i % 50 + 1))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    // Errors are counted under their own status code.
    let r = client
        .get(format!("{}/api/users/999", app.front))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = client
        .put(format!("{}/admin/faults", app.front))
        .json(&serde_json::json!({"error_rate": 1.0, "routes": ["/api/products"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    for _ in 0..3 {
        assert_eq!(
            client
                .get(format!("{}/api/products", app.front))
                .send()
                .await
                .unwrap()
                .status(),
            500
        );
    }
    assert!(app.terminate().await, "demo-app must exit 0 after SIGTERM");

    // Cumulative temporality: the last export of each series holds the total.
    let mut last: HashMap<SeriesKey, (u64, Vec<f64>, String)> = HashMap::new();
    let mut names: BTreeSet<(String, String)> = BTreeSet::new();
    for req in sink.metrics.lock().unwrap().iter() {
        for rm in &req.resource_metrics {
            let svc = service_name(&rm.resource);
            for sm in &rm.scope_metrics {
                for m in &sm.metrics {
                    names.insert((svc.clone(), m.name.clone()));
                    if m.name != "http.server.request.duration" {
                        continue;
                    }
                    let Some(Data::Histogram(h)) = &m.data else {
                        panic!("{} is not a histogram", m.name)
                    };
                    for dp in &h.data_points {
                        let key = (
                            svc.clone(),
                            attr_str(&dp.attributes, "http.route").unwrap_or_default(),
                            attr_int(&dp.attributes, "http.response.status_code")
                                .unwrap_or_default(),
                        );
                        assert_eq!(
                            attr_str(&dp.attributes, "http.request.method").as_deref(),
                            Some(if key.1 == "/admin/faults" {
                                "PUT"
                            } else {
                                "GET"
                            })
                        );
                        last.insert(key, (dp.count, dp.explicit_bounds.clone(), m.unit.clone()));
                    }
                }
            }
        }
    }
    let ok = last
        .get(&("demo-frontend".into(), "/api/users/{id}".into(), 200))
        .unwrap_or_else(|| {
            panic!(
                "no /api/users/{{id}} 200 series; got {:?}",
                last.keys().collect::<Vec<_>>()
            )
        });
    assert_eq!(ok.0, N, "histogram count equals the number of requests");
    assert_eq!(ok.1, demo_app::metrics::HTTP_DURATION_BOUNDARIES.to_vec());
    assert_eq!(ok.2, "s");
    assert_eq!(
        last[&("demo-frontend".into(), "/api/users/{id}".into(), 404)].0,
        1
    );
    assert_eq!(
        last[&("demo-frontend".into(), "/api/products".into(), 500)].0,
        3
    );

    // The injected 500s are ERROR spans with error.type and a span event.
    let failed: Vec<_> = sink
        .traces
        .lock()
        .unwrap()
        .iter()
        .flat_map(|r| r.resource_spans.iter())
        .flat_map(|r| r.scope_spans.iter())
        .flat_map(|s| s.spans.iter())
        .filter(|s| s.name == "GET /api/products")
        .cloned()
        .collect();
    assert_eq!(failed.len(), 3);
    for s in &failed {
        let status = s.status.as_ref().expect("span status");
        assert_eq!(
            status.code,
            opentelemetry_proto::tonic::trace::v1::status::StatusCode::Error as i32
        );
        assert_eq!(
            attr_str(&s.attributes, "error.type").as_deref(),
            Some("500")
        );
        assert!(
            s.events.iter().any(|e| e.name == "fault injected: error"),
            "{:?}",
            s.events
        );
    }

    for (svc, name) in [
        ("demo-frontend", "http.server.active_requests"),
        ("demo-inventory", "demo.inventory.level"),
    ] {
        assert!(
            names.contains(&(svc.to_string(), name.to_string())),
            "missing {name} from {svc}; got {names:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn business_metrics_count_orders() {
    let (sink, otlp) = start_sink().await;
    let app = start_demo_app(otlp, &[("OTEL_METRIC_EXPORT_INTERVAL", "60000")]).await;
    let client = reqwest::Client::new();
    let mut total_usd = 0.0;
    for q in 1..=4u64 {
        let r = place_order(&client, &app.front, q, 1, q).await;
        total_usd += r["total_cents"].as_f64().unwrap() / 100.0;
    }
    assert!(app.terminate().await);

    let mut orders = None;
    let mut value = None;
    let mut level = None;
    for req in sink.metrics.lock().unwrap().iter() {
        for rm in &req.resource_metrics {
            let svc = service_name(&rm.resource);
            for m in rm.scope_metrics.iter().flat_map(|s| &s.metrics) {
                match (svc.as_str(), m.name.as_str(), &m.data) {
                    ("demo-frontend", "demo.orders.created", Some(Data::Sum(s))) => {
                        orders = Some(s.data_points.iter().map(|d| match d.value {
                            Some(opentelemetry_proto::tonic::metrics::v1::number_data_point::Value::AsInt(i)) => i,
                            _ => 0,
                        }).sum::<i64>());
                    }
                    ("demo-frontend", "demo.order.value", Some(Data::Histogram(h))) => {
                        value = Some((
                            h.data_points.iter().map(|d| d.count).sum::<u64>(),
                            h.data_points.iter().filter_map(|d| d.sum).sum::<f64>(),
                        ));
                    }
                    ("demo-inventory", "demo.inventory.level", Some(Data::Gauge(g))) => {
                        level = g.data_points.iter().find(|d| attr_int(&d.attributes, "product.id") == Some(1)).and_then(|d| match d.value {
                            Some(opentelemetry_proto::tonic::metrics::v1::number_data_point::Value::AsInt(i)) => Some(i),
                            _ => None,
                        });
                    }
                    _ => {}
                }
            }
        }
    }
    assert_eq!(orders, Some(4));
    let (count, sum) = value.expect("demo.order.value exported");
    assert_eq!(count, 4);
    assert!((sum - total_usd).abs() < 1e-6, "{sum} vs {total_usd}");
    // 1+2+3+4 units of product 1 left the initial 5000.
    assert_eq!(level, Some(5_000 - 10));
}

/// With a sampler that drops every trace, nothing is exported as a span (the attributes of
/// unsampled spans are not even built, and the business spans not made), requests still
/// succeed, an order still answers with its trace id, the downstream services still get that
/// trace id (their log lines carry it), and the metrics still count every request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsampled_requests_export_no_spans_but_count_in_metrics() {
    let (sink, otlp) = start_sink().await;
    let app = start_demo_app(
        otlp,
        &[
            ("OTEL_METRIC_EXPORT_INTERVAL", "60000"),
            ("OTEL_TRACES_SAMPLER", "parentbased_always_off"),
            // The downstream steps log at DEBUG, inside their request's log span.
            ("RUST_LOG", "info,demo_app=debug"),
        ],
    )
    .await;
    let client = reqwest::Client::new();
    let order = place_order(&client, &app.front, 2, 3, 1).await;
    let trace_id = order["trace_id"].as_str().unwrap_or_default();
    assert!(
        trace_id.len() == 32 && trace_id.chars().any(|c| c != '0'),
        "an unsampled order still has a trace id: {order}"
    );
    for (target, message) in [
        ("demo_app::inventory", "stock reserved"),
        ("demo_app::payment", "payment captured"),
    ] {
        let line = app
            .wait_for_log(|v| v["target"] == target && v["fields"]["message"] == message)
            .await
            .unwrap_or_else(|| panic!("no {target} log line {message:?}"));
        let request_span = line["spans"]
            .as_array()
            .and_then(|spans| spans.iter().find(|s| s["name"] == "request"));
        assert_eq!(
            request_span.map(|s| &s["trace_id"]),
            Some(&serde_json::json!(trace_id)),
            "the {target} step of the unsampled order logs the order's trace id: {line}"
        );
    }
    read_products(&client, &app.front, 3).await;
    assert!(app.terminate().await, "demo-app must exit 0 after SIGTERM");
    let spans = received_spans(&sink).len();
    assert_eq!(spans, 0, "parentbased_always_off exports no spans");
    let mut products = 0u64;
    for req in sink.metrics.lock().unwrap().iter() {
        for rm in &req.resource_metrics {
            for m in rm.scope_metrics.iter().flat_map(|sm| &sm.metrics) {
                if m.name != "http.server.request.duration" {
                    continue;
                }
                if let Some(Data::Histogram(h)) = &m.data {
                    products += h
                        .data_points
                        .iter()
                        .filter(|p| {
                            attr_str(&p.attributes, "http.route").as_deref()
                                == Some("/api/products")
                        })
                        .map(|p| p.count)
                        .sum::<u64>();
                }
            }
        }
    }
    assert_eq!(
        products, 3,
        "the duration histogram counts unsampled requests"
    );
}

/// `parentbased_ratelimited` (the default sampler) takes at most its rate of new traces per
/// second; a sampled order still has the spans of all three services (children follow the
/// parent), and requests over the budget are served but not traced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limited_sampler_caps_new_traces_and_keeps_whole_traces() {
    let (sink, otlp) = start_sink().await;
    let app = start_demo_app(
        otlp,
        &[
            ("OTEL_METRIC_EXPORT_INTERVAL", "60000"),
            ("OTEL_TRACES_SAMPLER", "parentbased_ratelimited"),
            ("OTEL_TRACES_SAMPLER_ARG", "2"),
        ],
    )
    .await;
    let client = reqwest::Client::new();
    let started = std::time::Instant::now();
    let order = place_order(&client, &app.front, 2, 3, 1).await;
    let order_trace = order["trace_id"].as_str().unwrap().to_string();
    const READS: usize = 30;
    read_products(&client, &app.front, READS).await;
    let elapsed = started.elapsed().as_secs_f64();
    assert!(app.terminate().await, "demo-app must exit 0 after SIGTERM");

    let mut traces: HashMap<String, BTreeSet<String>> = HashMap::new();
    for (svc, span) in received_spans(&sink) {
        traces.entry(hex(&span.trace_id)).or_default().insert(svc);
    }
    assert_eq!(
        traces.get(&order_trace).cloned().unwrap_or_default(),
        BTreeSet::from([
            "demo-frontend".to_string(),
            "demo-inventory".to_string(),
            "demo-payment".to_string()
        ]),
        "the first trace (within the budget) is whole"
    );
    // 2 tokens at start, 2 more per second of the test.
    let budget = 2 + (elapsed * 2.0).ceil() as usize;
    assert!(
        traces.len() <= budget && traces.len() < READS,
        "{} traces for {} requests in {elapsed:.2} s (budget {budget})",
        traces.len(),
        READS + 1
    );
}
