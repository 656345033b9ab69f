//! Handler tests: each service's `Router` driven with `oneshot` (the frontend's order path
//! calls real inventory and payment routers served on 127.0.0.1:0), plus fault injection's
//! observed error rate. No telemetry is installed here; see `tests/otlp.rs` for that.
//!
//! Run: `cargo test -p demo-app --test handlers`.

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use axum::Router;
use demo_app::config::SimLatency;
use demo_app::http::Readiness;
use demo_app::server::{app, AppOptions};
use demo_app::Service;
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

fn opts(ready: &Readiness, inventory_url: &str, payment_url: &str) -> AppOptions {
    AppOptions {
        sim: SimLatency::none(),
        inventory_url: inventory_url.into(),
        payment_url: payment_url.into(),
        ready: ready.clone(),
    }
}

fn meter() -> opentelemetry::metrics::Meter {
    opentelemetry::global::meter("test")
}

/// Serves `router` on an ephemeral loopback port; returns its base URL.
async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    format!("http://{addr}")
}

/// The frontend router wired to live inventory and payment routers; also returns the inventory URL.
async fn shop() -> (Router, String) {
    let ready = Readiness::new();
    ready.set(true);
    let none = opts(&ready, "http://unused", "http://unused");
    let inv = serve(app(Service::Inventory, &meter(), &none).unwrap()).await;
    let pay = serve(app(Service::Payment, &meter(), &none).unwrap()).await;
    (
        app(Service::Frontend, &meter(), &opts(&ready, &inv, &pay)).unwrap(),
        inv,
    )
}

/// The frontend alone (downstream calls would fail); enough for everything but orders.
fn front() -> Router {
    let ready = Readiness::new();
    ready.set(true);
    app(
        Service::Frontend,
        &meter(),
        &opts(&ready, "http://127.0.0.1:9", "http://127.0.0.1:9"),
    )
    .unwrap()
}

async fn call(app: &Router, method: Method, uri: &str, body: Option<&str>) -> (StatusCode, Value) {
    let mut req = Request::builder().method(method).uri(uri);
    if body.is_some() {
        req = req.header("content-type", "application/json");
    }
    let req = req
        .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let value = serde_json::from_slice(&bytes)
        .unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into()));
    (status, value)
}

fn error_of(v: &Value) -> &str {
    v.get("error")
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no error message in {v}"))
}

#[tokio::test]
async fn health_and_readiness() {
    let ready = Readiness::new();
    let a = app(
        Service::Frontend,
        &meter(),
        &opts(&ready, "http://x", "http://y"),
    )
    .unwrap();
    assert_eq!(
        call(&a, Method::GET, "/health", None).await.0,
        StatusCode::OK
    );
    let (s, v) = call(&a, Method::GET, "/ready", None).await;
    assert_eq!(
        (s, v["ready"].as_bool()),
        (StatusCode::SERVICE_UNAVAILABLE, Some(false))
    );
    ready.set(true);
    assert_eq!(
        call(&a, Method::GET, "/ready", None).await.0,
        StatusCode::OK
    );
    ready.set(false);
    assert_eq!(
        call(&a, Method::GET, "/ready", None).await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
}

#[tokio::test]
async fn users_and_products() {
    let a = front();
    let (s, v) = call(&a, Method::GET, "/api/users", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v.as_array().unwrap().len(), 50);
    let (s, v) = call(&a, Method::GET, "/api/users/3", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["id"], 3);
    assert!(v["email"].as_str().unwrap().contains('@'));
    let (s, v) = call(&a, Method::GET, "/api/users/999", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(error_of(&v).contains("user 999 not found"));
    let (s, v) = call(&a, Method::GET, "/api/users/abc", None).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(error_of(&v).contains("invalid user id"));
    let (s, v) = call(&a, Method::GET, "/api/products", None).await;
    assert_eq!(s, StatusCode::OK);
    let products = v.as_array().unwrap();
    assert_eq!(products.len(), 20);
    assert!(products
        .iter()
        .all(|p| p["price_cents"].as_u64().unwrap() > 0 && p.get("initial_stock").is_none()));
    let (s, v) = call(&a, Method::GET, "/api/nope", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(error_of(&v).contains("no route"));
}

#[tokio::test]
async fn order_is_created_across_services() {
    let (a, _) = shop().await;
    let (s, v) = call(&a, Method::POST, "/api/orders", Some(r#"{"user_id": 1, "items": [{"product_id": 2, "quantity": 3}, {"product_id": 4, "quantity": 1}]}"#)).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    // Product 2 costs 59.00, product 4 costs 6.50.
    assert_eq!(v["total_cents"], 3 * 5_900 + 650);
    assert!(v["order_id"].as_str().unwrap().starts_with("ord-"));
    assert!(v["payment_id"].as_str().unwrap().starts_with("pay-"));
    // No tracing subscriber here, so no trace id.
    assert_eq!(v["trace_id"], "");
}

#[tokio::test]
async fn bad_orders_are_rejected_with_a_message() {
    let (a, inv) = shop().await;
    let cases: &[(&str, StatusCode, &str)] = &[
        (
            r#"{"user_id": 1, "items": ["#,
            StatusCode::BAD_REQUEST,
            "invalid order JSON",
        ),
        (
            r#"{"user_id": 1}"#,
            StatusCode::BAD_REQUEST,
            "missing field `items`",
        ),
        (
            r#"{"user_id": 1, "items": [], "coupon": 5}"#,
            StatusCode::BAD_REQUEST,
            "unknown field `coupon`",
        ),
        (
            r#"{"user_id": 1, "items": []}"#,
            StatusCode::BAD_REQUEST,
            "1 to 20 items",
        ),
        (
            r#"{"user_id": 777, "items": [{"product_id": 1, "quantity": 1}]}"#,
            StatusCode::NOT_FOUND,
            "user 777 not found",
        ),
        (
            r#"{"user_id": 1, "items": [{"product_id": 99, "quantity": 1}]}"#,
            StatusCode::NOT_FOUND,
            "product 99 not found",
        ),
        (
            r#"{"user_id": 1, "items": [{"product_id": 1, "quantity": 0}]}"#,
            StatusCode::BAD_REQUEST,
            "quantity 0",
        ),
    ];
    for (body, status, needle) in cases {
        let (s, v) = call(&a, Method::POST, "/api/orders", Some(body)).await;
        assert_eq!(s, *status, "{body} -> {v}");
        assert!(error_of(&v).contains(needle), "{body} -> {v}");
    }
    // Without a JSON content type it is still a 400 with a message.
    let req = Request::builder()
        .method(Method::POST)
        .uri("/api/orders")
        .body(Body::from("{}"))
        .unwrap();
    let resp = a.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);

    // A declined payment (100 espresso machines) is a 402 and gives the stock back.
    let client = reqwest::Client::new();
    let stock_before: Value = client
        .get(format!("{inv}/inventory/stock"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let (s, v) = call(
        &a,
        Method::POST,
        "/api/orders",
        Some(r#"{"user_id": 1, "items": [{"product_id": 15, "quantity": 100}]}"#),
    )
    .await;
    assert_eq!(s, StatusCode::PAYMENT_REQUIRED, "{v}");
    assert!(error_of(&v).contains("declined"));
    let stock_after: Value = client
        .get(format!("{inv}/inventory/stock"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stock_before, stock_after);
}

#[tokio::test]
async fn downstream_outage_is_a_502() {
    let a = front();
    let (s, v) = call(
        &a,
        Method::POST,
        "/api/orders",
        Some(r#"{"user_id": 1, "items": [{"product_id": 1, "quantity": 1}]}"#),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_GATEWAY);
    assert!(error_of(&v).contains("demo-inventory unreachable"), "{v}");
}

#[tokio::test]
async fn fault_admin_validates_and_reports() {
    let a = front();
    let (s, v) = call(&a, Method::GET, "/admin/faults", None).await;
    assert_eq!((s, v["active"].as_bool()), (StatusCode::OK, Some(false)));
    let bad: &[(&str, &str)] = &[
        (r#"{"error_rate": 2}"#, "error_rate 2"),
        (r#"{"error_rate": "x"}"#, "invalid fault JSON"),
        (r#"{"eror_rate": 0.1}"#, "unknown field `eror_rate`"),
        (r#"{"routes": ["/api/nope"]}"#, "/api/nope"),
        (r#"{"cpu_burn_ms": 99999}"#, "cpu_burn_ms"),
    ];
    for (body, needle) in bad {
        let (s, v) = call(&a, Method::PUT, "/admin/faults", Some(body)).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
        assert!(error_of(&v).contains(needle), "{body} -> {v}");
    }
    let (s, v) = call(&a, Method::PUT, "/admin/faults", Some(r#"{"error_rate": 0.25, "latency_ms": 5, "duration_s": 60, "routes": ["/api/products"]}"#)).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        (v["active"].as_bool(), v["error_rate"].as_f64()),
        (Some(true), Some(0.25))
    );
    assert!(v["expires_in_s"].as_f64().unwrap() > 50.0);
    let (_, v) = call(&a, Method::DELETE, "/admin/faults", None).await;
    assert_eq!(v["active"].as_bool(), Some(false));
}

#[tokio::test]
async fn injected_error_rate_is_observed() {
    let a = front();
    let (s, _) = call(
        &a,
        Method::PUT,
        "/admin/faults",
        Some(r#"{"error_rate": 0.3, "routes": ["/api/products"]}"#),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let n = 2_000;
    let mut errors = 0;
    for _ in 0..n {
        let (s, v) = call(&a, Method::GET, "/api/products", None).await;
        if s == StatusCode::INTERNAL_SERVER_ERROR {
            assert!(error_of(&v).contains("injected fault"));
            errors += 1;
        } else {
            assert_eq!(s, StatusCode::OK);
        }
    }
    let rate = errors as f64 / n as f64;
    // Binomial sd at p=0.3, n=2000 is ~0.0102; 0.05 is about 5 sd.
    assert!(
        (rate - 0.3).abs() < 0.05,
        "observed error rate {rate}, configured 0.3"
    );
    // Other routes are untouched.
    for _ in 0..200 {
        assert_eq!(
            call(&a, Method::GET, "/api/users/1", None).await.0,
            StatusCode::OK
        );
    }
    // Clearing restores a clean service.
    call(&a, Method::DELETE, "/admin/faults", None).await;
    for _ in 0..200 {
        assert_eq!(
            call(&a, Method::GET, "/api/products", None).await.0,
            StatusCode::OK
        );
    }
}

#[tokio::test]
async fn injected_latency_delays_requests() {
    let a = front();
    call(
        &a,
        Method::PUT,
        "/admin/faults",
        Some(r#"{"latency_ms": 80, "routes": ["/api/users"]}"#),
    )
    .await;
    let t = Instant::now();
    assert_eq!(
        call(&a, Method::GET, "/api/users", None).await.0,
        StatusCode::OK
    );
    // A lower bound only (the fault sleeps at least this long); never an upper bound.
    assert!(t.elapsed() >= Duration::from_millis(80));
}

#[tokio::test]
async fn internal_services_have_their_own_faults() {
    let ready = Readiness::new();
    let inv = app(Service::Inventory, &meter(), &opts(&ready, "x", "y")).unwrap();
    let (s, v) = call(
        &inv,
        Method::PUT,
        "/admin/faults",
        Some(r#"{"error_rate": 1.0}"#),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["service"], "demo-inventory");
    let (s, _) = call(
        &inv,
        Method::POST,
        "/inventory/reserve",
        Some(r#"{"order_id": "o1", "items": [{"product_id": 1, "quantity": 1}]}"#),
    )
    .await;
    assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR);
    // Health is never faulted.
    assert_eq!(
        call(&inv, Method::GET, "/health", None).await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn cpu_burn_and_memory_leak_faults_act_and_clear() {
    let a = front();
    let (s, _) = call(
        &a,
        Method::PUT,
        "/admin/faults",
        Some(r#"{"cpu_burn_ms": 30, "memory_leak_kb": 64, "routes": ["/api/products"]}"#),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let t = Instant::now();
    for _ in 0..4 {
        assert_eq!(
            call(&a, Method::GET, "/api/products", None).await.0,
            StatusCode::OK
        );
    }
    // Lower bound only: each request burnt at least 30 ms of CPU before being handled.
    assert!(t.elapsed() >= Duration::from_millis(120));
    let (_, v) = call(&a, Method::GET, "/admin/faults", None).await;
    assert_eq!(v["leaked_bytes"].as_u64(), Some(4 * 64 * 1024));
    let (_, v) = call(&a, Method::DELETE, "/admin/faults", None).await;
    assert_eq!(v["leaked_bytes"].as_u64(), Some(0));
}
