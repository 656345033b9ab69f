//! HTTP API: `/metrics`, `/health`, `/api/v1/anomalies`, `/api/v1/services/{service}/summary`
//! and the OpenAPI 3 document of all of them at `/api/v1/openapi.json` (hand-written in
//! `openapi.json` beside this file; a test checks it lists exactly the router's routes).
//!
//! Tests: `cargo test -p anomaly-detector api::` (every handler through [`app`] + `oneshot`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use crate::metrics::Metrics;
use crate::state::{service_of, AnomalyRecord, CycleStatus, Store};

/// Prometheus scrape endpoint.
pub const ROUTE_METRICS: &str = "/metrics";
/// Liveness and per-detection status.
pub const ROUTE_HEALTH: &str = "/health";
/// Firing and recently resolved anomalies.
pub const ROUTE_ANOMALIES: &str = "/api/v1/anomalies";
/// Per-service summary.
pub const ROUTE_SERVICE_SUMMARY: &str = "/api/v1/services/{service}/summary";
/// The OpenAPI document.
pub const ROUTE_OPENAPI: &str = "/api/v1/openapi.json";
/// Every route of [`app`].
pub const ROUTES: [&str; 5] = [
    ROUTE_METRICS,
    ROUTE_HEALTH,
    ROUTE_ANOMALIES,
    ROUTE_SERVICE_SUMMARY,
    ROUTE_OPENAPI,
];

/// The OpenAPI 3 document served at [`ROUTE_OPENAPI`].
pub const OPENAPI: &str = include_str!("openapi.json");

/// Default number of resolved anomalies returned.
const DEFAULT_LIMIT: usize = 100;

/// State shared by the handlers.
#[derive(Debug, Clone)]
pub struct AppState {
    /// Detection results.
    pub store: Arc<Store>,
    /// Own telemetry.
    pub metrics: Arc<Metrics>,
    /// Process start, for `uptime_seconds`.
    pub started: Instant,
}

/// The router with every route in [`ROUTES`].
pub fn app(state: AppState) -> Router {
    Router::new()
        .route(ROUTE_METRICS, get(metrics))
        .route(ROUTE_HEALTH, get(health))
        .route(ROUTE_ANOMALIES, get(anomalies))
        .route(ROUTE_SERVICE_SUMMARY, get(service_summary))
        .route(ROUTE_OPENAPI, get(openapi))
        .with_state(state)
}

async fn metrics(State(s): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        s.metrics.render(&s.store),
    )
        .into_response()
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

#[derive(Serialize)]
struct DetectionHealth {
    name: String,
    status: CycleStatus,
    series: usize,
    firing: usize,
    consecutive_failures: u32,
    last_success: Option<i64>,
    last_error: Option<String>,
    last_duration_seconds: f64,
}

#[derive(Serialize)]
struct Health {
    /// `ok`, or `degraded` when a detection's last cycle failed.
    status: &'static str,
    uptime_seconds: u64,
    detections: Vec<DetectionHealth>,
}

/// Always 200 while the process serves (liveness); `status` says whether every detection's
/// last cycle succeeded.
async fn health(State(s): State<AppState>) -> Json<Health> {
    let detections: Vec<DetectionHealth> = s
        .store
        .detections()
        .iter()
        .map(|d| DetectionHealth {
            name: d.name.clone(),
            status: d.cycle.status,
            series: d.series.len(),
            firing: d.firing.len(),
            consecutive_failures: d.cycle.consecutive_failures,
            last_success: d.cycle.last_success,
            last_error: d.cycle.last_error.clone(),
            last_duration_seconds: d.cycle.last_duration_seconds,
        })
        .collect();
    let degraded = detections.iter().any(|d| d.status == CycleStatus::Failure);
    Json(Health {
        status: if degraded { "degraded" } else { "ok" },
        uptime_seconds: s.started.elapsed().as_secs(),
        detections,
    })
}

/// Query parameters of `/api/v1/anomalies`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AnomalyQuery {
    detection: Option<String>,
    service: Option<String>,
    limit: Option<usize>,
}

#[derive(Serialize)]
struct Anomalies {
    firing: Vec<AnomalyRecord>,
    recent: Vec<AnomalyRecord>,
}

fn matches(r: &AnomalyRecord, detection: Option<&str>, service: Option<&str>) -> bool {
    detection.is_none_or(|d| r.detection == d)
        && service.is_none_or(|s| service_of(&r.labels) == Some(s))
}

fn collect(
    store: &Store,
    detection: Option<&str>,
    service: Option<&str>,
    limit: usize,
) -> Anomalies {
    let mut firing: Vec<AnomalyRecord> = store
        .detections()
        .iter()
        .flat_map(|d| d.firing.iter())
        .filter(|r| matches(r, detection, service))
        .cloned()
        .collect();
    firing.sort_by(|a, b| b.score.total_cmp(&a.score));
    let recent = store
        .recent()
        .into_iter()
        .filter(|r| matches(r, detection, service))
        .take(limit)
        .collect();
    Anomalies { firing, recent }
}

async fn anomalies(
    State(s): State<AppState>,
    query: Result<Query<AnomalyQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Query(q) = match query {
        Ok(q) => q,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("{e}; allowed parameters: detection, service, limit"),
            )
        }
    };
    Json(collect(
        &s.store,
        q.detection.as_deref(),
        q.service.as_deref(),
        q.limit.unwrap_or(DEFAULT_LIMIT),
    ))
    .into_response()
}

#[derive(Serialize)]
struct DetectionSummary {
    detection: String,
    series: usize,
    firing: usize,
    max_score: f64,
    models: BTreeMap<&'static str, usize>,
}

#[derive(Serialize)]
struct ServiceSummary {
    service: String,
    series: usize,
    firing_count: usize,
    detections: Vec<DetectionSummary>,
    firing: Vec<AnomalyRecord>,
    recent: Vec<AnomalyRecord>,
}

async fn service_summary(State(s): State<AppState>, Path(service): Path<String>) -> Response {
    let mut detections = Vec::new();
    for d in s.store.detections() {
        let mine: Vec<_> = d
            .series
            .iter()
            .filter(|x| service_of(&x.labels) == Some(service.as_str()))
            .collect();
        if mine.is_empty() {
            continue;
        }
        let mut models = BTreeMap::new();
        for x in &mine {
            *models.entry(x.model).or_default() += 1;
        }
        detections.push(DetectionSummary {
            detection: d.name.clone(),
            series: mine.len(),
            firing: mine.iter().filter(|x| x.firing).count(),
            max_score: mine.iter().map(|x| x.score).fold(0.0, f64::max),
            models,
        });
    }
    let a = collect(&s.store, None, Some(&service), DEFAULT_LIMIT);
    if detections.is_empty() && a.recent.is_empty() {
        return error(
            StatusCode::NOT_FOUND,
            &format!("no series with service_name, job or service label {service:?}; see /health for what is evaluated"),
        );
    }
    Json(ServiceSummary {
        service,
        series: detections.iter().map(|d| d.series).sum(),
        firing_count: a.firing.len(),
        detections,
        firing: a.firing,
        recent: a.recent,
    })
    .into_response()
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prometheus::Labels;
    use crate::state::{DetectionSnapshot, SeriesSnapshot};
    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    fn labels(job: &str) -> Labels {
        [("job".to_string(), job.to_string())].into_iter().collect()
    }

    fn record(job: &str, status: &'static str) -> AnomalyRecord {
        AnomalyRecord {
            detection: "rate".into(),
            labels: labels(job),
            fingerprint: "f".into(),
            status,
            severity: "warning",
            starts_at: 10,
            ends_at: (status == "resolved").then_some(20),
            timestamp: 10,
            value: 9.0,
            expected: 1.0,
            lower: 0.0,
            upper: 2.0,
            score: 0.9,
            model: "holt_winters",
        }
    }

    fn state() -> AppState {
        let store = Store::new(["rate", "errors"], 10);
        let snap = |job: &str, firing: bool| SeriesSnapshot {
            labels: labels(job),
            timestamp: 10,
            value: 9.0,
            expected: 1.0,
            lower: 0.0,
            upper: 2.0,
            score: if firing { 0.9 } else { 0.1 },
            anomalous: firing,
            model: if firing { "holt_winters" } else { "robust_mad" },
            firing,
        };
        store.publish(DetectionSnapshot {
            name: "rate".into(),
            series: vec![snap("checkout", true), snap("cart", false)],
            firing: vec![record("checkout", "firing")],
            cycle: crate::state::CycleInfo {
                status: CycleStatus::Success,
                last_success: Some(10),
                ..Default::default()
            },
        });
        store.record_resolved(record("cart", "resolved"));
        AppState {
            store: Arc::new(store),
            metrics: Arc::new(Metrics::default()),
            started: Instant::now(),
        }
    }

    async fn get(app: Router, uri: &str) -> (StatusCode, String) {
        let resp = app
            .oneshot(Request::get(uri).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn health_reports_detections() {
        let (st, body) = get(app(state()), ROUTE_HEALTH).await;
        assert_eq!(st, StatusCode::OK);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["status"], "ok");
        let d = v["detections"].as_array().unwrap();
        assert_eq!(d.len(), 2);
        let errors = d.iter().find(|d| d["name"] == "errors").unwrap();
        assert_eq!(errors["status"], "pending");
        let rate = d.iter().find(|d| d["name"] == "rate").unwrap();
        assert_eq!(rate["series"], 2);
        assert_eq!(rate["firing"], 1);
    }

    #[tokio::test]
    async fn anomalies_filters() {
        let (st, body) = get(app(state()), ROUTE_ANOMALIES).await;
        assert_eq!(st, StatusCode::OK);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["firing"].as_array().unwrap().len(), 1);
        assert_eq!(v["recent"].as_array().unwrap().len(), 1);
        assert_eq!(v["firing"][0]["labels"]["job"], "checkout");
        let (_, body) = get(app(state()), "/api/v1/anomalies?service=cart").await;
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["firing"].as_array().unwrap().len(), 0);
        assert_eq!(v["recent"][0]["status"], "resolved");
        let (_, body) = get(app(state()), "/api/v1/anomalies?detection=errors").await;
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert!(
            v["firing"].as_array().unwrap().is_empty()
                && v["recent"].as_array().unwrap().is_empty()
        );
        let (st, body) = get(app(state()), "/api/v1/anomalies?bogus=1").await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{body}");
    }

    #[tokio::test]
    async fn service_summary_and_unknown_service() {
        let (st, body) = get(app(state()), "/api/v1/services/checkout/summary").await;
        assert_eq!(st, StatusCode::OK, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["service"], "checkout");
        assert_eq!(v["series"], 1);
        assert_eq!(v["firing_count"], 1);
        assert_eq!(v["detections"][0]["models"]["holt_winters"], 1);
        let (st, body) = get(app(state()), "/api/v1/services/nope/summary").await;
        assert_eq!(st, StatusCode::NOT_FOUND);
        assert!(body.contains("nope"));
    }

    #[tokio::test]
    async fn metrics_endpoint_serves_text_format() {
        let (st, body) = get(app(state()), ROUTE_METRICS).await;
        assert_eq!(st, StatusCode::OK);
        assert!(
            body.contains("anomaly_score{detection=\"rate\",job=\"checkout\"} 0.9"),
            "{body}"
        );
        assert!(body.contains("# TYPE anomaly_detector_cycle_duration_seconds histogram"));
    }

    /// Every route of the router is documented and every documented path is served.
    #[tokio::test]
    async fn openapi_matches_router() {
        let (st, body) = get(app(state()), ROUTE_OPENAPI).await;
        assert_eq!(st, StatusCode::OK);
        let doc: serde_json::Value = serde_json::from_str(&body).expect("openapi.json is JSON");
        assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
        let paths = doc["paths"].as_object().unwrap();
        let documented: std::collections::BTreeSet<&str> =
            paths.keys().map(String::as_str).collect();
        let routed: std::collections::BTreeSet<&str> = ROUTES.into_iter().collect();
        assert_eq!(documented, routed);
        for (path, item) in paths {
            assert!(
                item["get"]["responses"]["200"].is_object(),
                "{path} documents its 200"
            );
            let uri = path.replace("{service}", "checkout");
            let (st, _) = get(app(state()), &uri).await;
            assert_eq!(st, StatusCode::OK, "{uri}");
        }
        // Every $ref points at a defined schema.
        for r in body.match_indices("#/components/schemas/") {
            let rest = &body[r.0 + r.1.len()..];
            let name: String = rest.chars().take_while(|c| c.is_alphanumeric()).collect();
            assert!(
                doc["components"]["schemas"][&name].is_object(),
                "schema {name} missing"
            );
        }
    }

    #[tokio::test]
    async fn unknown_route_is_404() {
        let (st, _) = get(app(state()), "/api/v1/nope").await;
        assert_eq!(st, StatusCode::NOT_FOUND);
    }
}
