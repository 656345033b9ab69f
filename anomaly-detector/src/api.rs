//! HTTP API: `/metrics`, `/health`, the live view at `/`, and under `/api/v1`: anomalies (live
//! and history), services, per-service metrics, summary and breakdown (JSON or CSV), the live
//! stream (Server-Sent Events) and the OpenAPI 3 document, generated from the handlers'
//! `#[utoipa::path]` annotations and the answer types' `ToSchema` derives (a test checks it
//! lists exactly the router's routes).
//!
//! `/api/*` (except the OpenAPI document) sits behind the optional guards of [`Guards`]: CORS,
//! a per-client rate limit (`tower_governor`, 429 with `Retry-After`) and a bearer token
//! compared in constant time. `/`, `/health` and `/metrics` stay open.
//!
//! Tests: `cargo test -p anomaly-detector api::` (every handler through [`app`] + `oneshot`);
//! `tests/insights_api.rs` against a real Prometheus.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use utoipa::OpenApi;

use crate::config::ServerConfig;
use crate::history::{HistoryQuery, MAX_PAGE};
use crate::insights::catalogue::{Dimension, Metric};
use crate::insights::live::{Live, LiveHistory, LiveSnapshot};
use crate::insights::range::{format, only, parse_time, time_range};
use crate::insights::{
    self, ApiError, Breakdown, Format, Insights, MetricAnswer, MetricsAnswer, Params,
    RequestTotals, ServiceInfo, ServicesAnswer, SourceStatus, Sources, TimeRange, SOURCE_ANOMALIES,
    SOURCE_PROMETHEUS, SOURCE_SLO,
};
use crate::metrics::Metrics;
use crate::state::{service_of, AnomalyRecord, CycleStatus, Store};

/// Prometheus scrape endpoint.
pub const ROUTE_METRICS: &str = "/metrics";
/// Liveness and per-detection status.
pub const ROUTE_HEALTH: &str = "/health";
/// The live view page.
pub const ROUTE_LIVE: &str = "/";
/// Firing anomalies and the anomaly history.
pub const ROUTE_ANOMALIES: &str = "/api/v1/anomalies";
/// Services seen.
pub const ROUTE_SERVICES: &str = "/api/v1/services";
/// Every metric of a service.
pub const ROUTE_SERVICE_METRICS: &str = "/api/v1/services/{service}/metrics";
/// One metric of a service.
pub const ROUTE_SERVICE_METRIC: &str = "/api/v1/services/{service}/metrics/{metric}";
/// Per-service summary.
pub const ROUTE_SERVICE_SUMMARY: &str = "/api/v1/services/{service}/summary";
/// Per-service breakdown.
pub const ROUTE_SERVICE_BREAKDOWN: &str = "/api/v1/services/{service}/breakdown";
/// Live updates (Server-Sent Events).
pub const ROUTE_STREAM: &str = "/api/v1/stream";
/// The OpenAPI document.
pub const ROUTE_OPENAPI: &str = "/api/v1/openapi.json";
/// Every route of [`app`].
pub const ROUTES: [&str; 11] = [
    ROUTE_METRICS,
    ROUTE_HEALTH,
    ROUTE_LIVE,
    ROUTE_ANOMALIES,
    ROUTE_SERVICES,
    ROUTE_SERVICE_METRICS,
    ROUTE_SERVICE_METRIC,
    ROUTE_SERVICE_SUMMARY,
    ROUTE_SERVICE_BREAKDOWN,
    ROUTE_STREAM,
    ROUTE_OPENAPI,
];

/// The live view: one HTML page with its script and styles inline (no build step, no CDN).
pub const LIVE_PAGE: &str = include_str!("live.html");

/// Default number of history episodes returned.
const DEFAULT_LIMIT: usize = 100;

/// State shared by the handlers.
#[derive(Debug, Clone)]
pub struct AppState {
    /// Detection results (and the anomaly history).
    pub store: Arc<Store>,
    /// Own telemetry.
    pub metrics: Arc<Metrics>,
    /// Process start, for `uptime_seconds`.
    pub started: Instant,
    /// Insights queries.
    pub insights: Arc<Insights>,
    /// Live snapshot publisher.
    pub live: Arc<Live>,
}

/// The generated OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "anomaly-detector API",
        version = "2.0.0",
        description = "Anomalies, service insights (metrics, summaries, breakdowns, CSV) and live host data. Every data answer carries `completeness` (share of expected samples present) and `sources` (per-source status: ok, partial with gaps, unavailable with the reason)."
    ),
    paths(
        metrics, health, live_page, anomalies, services, service_metrics, service_metric,
        service_summary, service_breakdown, stream, openapi
    ),
    components(schemas(ApiError, SourceStatus, AnomalyRecord, LiveSnapshot, LiveHistory)),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The OpenAPI document as JSON.
pub fn openapi_json() -> String {
    ApiDoc::openapi()
        .to_pretty_json()
        .unwrap_or_else(|_| "{}".into())
}

/// The router with every route in [`ROUTES`] and no guards (tests, embedding).
pub fn app(state: AppState) -> Router {
    router(state, &Guards::default())
}

/// Errors building the guards from configuration.
#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    /// The token file cannot be read or is empty.
    #[error("server.auth.token_file {path}: {message}")]
    TokenFile {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
}

/// Optional protections of `/api/*`.
#[derive(Debug, Clone, Default)]
pub struct Guards {
    /// SHA-256 of the bearer token, when auth is on.
    token: Option<[u8; 32]>,
    /// Sustained rate and burst per client, when on.
    rate: Option<(f64, u32)>,
    /// Allowed CORS origins (empty: no CORS headers).
    cors: Vec<String>,
}

impl Guards {
    /// From `server:` settings; reads the token file.
    ///
    /// # Errors
    /// [`GuardError::TokenFile`] when the token file is unreadable or empty.
    pub fn from_config(s: &ServerConfig) -> Result<Self, GuardError> {
        // An empty `token` (e.g. `${env:DETECTOR_API_TOKEN:-}` unset) means no auth.
        let inline = s
            .auth
            .token
            .as_ref()
            .map(|t| t.0.trim())
            .filter(|t| !t.is_empty());
        let token = match (inline, &s.auth.token_file) {
            (Some(t), _) => Some(t.to_string()),
            (None, Some(f)) => {
                let text = std::fs::read_to_string(f).map_err(|e| GuardError::TokenFile {
                    path: f.display().to_string(),
                    message: e.to_string(),
                })?;
                Some(text.trim().to_string())
            }
            (None, None) => None,
        };
        if let Some(t) = &token {
            if t.is_empty() {
                return Err(GuardError::TokenFile {
                    path: s
                        .auth
                        .token_file
                        .as_ref()
                        .map(|p| p.display().to_string())
                        .unwrap_or_else(|| "server.auth.token".into()),
                    message: "the token is empty".into(),
                });
            }
        }
        Ok(Self {
            token: token.map(|t| digest(&t)),
            rate: s
                .rate_limit
                .enabled
                .then_some((s.rate_limit.per_second, s.rate_limit.burst)),
            cors: s.cors.allowed_origins.clone(),
        })
    }

    /// Whether a bearer token is required.
    pub fn auth_enabled(&self) -> bool {
        self.token.is_some()
    }
}

fn digest(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

/// The router with `guards` on `/api/*` (except the OpenAPI document).
pub fn router(state: AppState, guards: &Guards) -> Router {
    let mut api: Router<AppState> = Router::new()
        .route(ROUTE_ANOMALIES, get(anomalies))
        .route(ROUTE_SERVICES, get(services))
        .route(ROUTE_SERVICE_METRICS, get(service_metrics))
        .route(ROUTE_SERVICE_METRIC, get(service_metric))
        .route(ROUTE_SERVICE_SUMMARY, get(service_summary))
        .route(ROUTE_SERVICE_BREAKDOWN, get(service_breakdown))
        .route(ROUTE_STREAM, get(stream));
    if let Some(hash) = guards.token {
        api = api.layer(axum::middleware::from_fn(
            move |req: Request, next: Next| require_token(hash, req, next),
        ));
    }
    if let Some((per_second, burst)) = guards.rate {
        api = api.layer(rate_limit_layer(per_second, burst));
    }
    if !guards.cors.is_empty() {
        api = api.layer(cors_layer(&guards.cors));
    }
    Router::new()
        .route(ROUTE_METRICS, get(metrics))
        .route(ROUTE_HEALTH, get(health))
        .route(ROUTE_LIVE, get(live_page))
        .route(ROUTE_OPENAPI, get(openapi))
        .merge(api)
        .with_state(state)
}

async fn require_token(hash: [u8; 32], req: Request, next: Next) -> Response {
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match given {
        Some(t) if bool::from(digest(t).ct_eq(&hash)) => next.run(req).await,
        _ => {
            let mut r = reply(ApiError::status(
                401,
                "missing or wrong bearer token: send Authorization: Bearer <token> (server.auth)",
            ));
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"anomaly-detector\""),
            );
            r
        }
    }
}

/// Rate-limit key: the peer IP (all clients share one bucket when it is unknown, e.g. in
/// `oneshot` tests).
#[derive(Debug, Clone, Copy)]
struct ClientIp;

impl tower_governor::key_extractor::KeyExtractor for ClientIp {
    type Key = IpAddr;

    fn extract<T>(
        &self,
        req: &axum::http::Request<T>,
    ) -> Result<Self::Key, tower_governor::GovernorError> {
        Ok(req
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip())
            .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)))
    }
}

fn rate_limit_layer(
    per_second: f64,
    burst: u32,
) -> tower_governor::GovernorLayer<ClientIp, governor::middleware::NoOpMiddleware, axum::body::Body>
{
    let config = tower_governor::governor::GovernorConfigBuilder::default()
        .period(Duration::from_secs_f64(1.0 / per_second))
        .burst_size(burst)
        .key_extractor(ClientIp)
        .finish()
        .expect("validated: per_second > 0, burst > 0");
    let config = Arc::new(config);
    // Forget idle clients now and then so the table does not grow without bound.
    let limiter = config.limiter().clone();
    if let Ok(rt) = tokio::runtime::Handle::try_current() {
        rt.spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            loop {
                tick.tick().await;
                limiter.retain_recent();
            }
        });
    }
    tower_governor::GovernorLayer::new(config).error_handler(|e| {
        let (wait, status) = match e {
            tower_governor::GovernorError::TooManyRequests { wait_time, .. } => (wait_time, 429),
            _ => (1, 500),
        };
        let wait = wait.max(1);
        let mut r = reply(ApiError::status(
            status,
            format!(
                "rate limit exceeded for this client; retry after {wait} s (server.rate_limit)"
            ),
        ));
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(wait));
        r
    })
}

fn cors_layer(origins: &[String]) -> tower_http::cors::CorsLayer {
    use tower_http::cors::{AllowOrigin, CorsLayer};
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    CorsLayer::new()
        .allow_origin(allow)
        .allow_methods([Method::GET, Method::OPTIONS])
        .allow_headers([header::AUTHORIZATION, header::ACCEPT])
        .expose_headers([header::RETRY_AFTER])
        .max_age(Duration::from_secs(600))
}

/// A JSON error answer with the status of `e`.
fn reply(e: ApiError) -> Response {
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, Json(e)).into_response()
}

fn json_or_503<T: Serialize>(r: Result<T, ApiError>) -> Response {
    match r {
        Ok(v) => Json(v).into_response(),
        Err(e) => reply(e),
    }
}

#[utoipa::path(get, path = "/metrics", tag = "operations",
    summary = "Own telemetry and per-series anomaly gauges in the Prometheus text format.",
    responses((status = 200, description = "Prometheus text exposition format 0.0.4.", body = String, content_type = "text/plain")))]
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

#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "operations",
    summary = "This document (open, even when auth is on).",
    responses((status = 200, description = "OpenAPI 3 document.", body = Object, content_type = "application/json")))]
async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], openapi_json()).into_response()
}

#[utoipa::path(get, path = "/", tag = "live",
    summary = "The live view: CPU, memory, top processes and anomalies of the hosts, updated from /api/v1/stream.",
    responses((status = 200, description = "HTML page (script and styles inline).", body = String, content_type = "text/html")))]
async fn live_page() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        LIVE_PAGE,
    )
        .into_response()
}

#[derive(Serialize, utoipa::ToSchema)]
struct DetectionHealth {
    name: String,
    status: CycleStatus,
    /// True when no cycle completed within 3 intervals (runner stuck or dead).
    stalled: bool,
    series: usize,
    firing: usize,
    consecutive_failures: u32,
    last_success: Option<i64>,
    last_error: Option<String>,
    last_duration_seconds: f64,
}

#[derive(Serialize, utoipa::ToSchema)]
struct Health {
    /// `ok`; `degraded` when a detection's last cycle failed; `failing` when a detection
    /// completed no cycle within 3 intervals.
    status: &'static str,
    uptime_seconds: u64,
    detections: Vec<DetectionHealth>,
}

/// Liveness: 200 while every detection completes its cycles on time (`ok`, or `degraded` when a
/// last cycle failed, e.g. Prometheus down, which a restart would not fix); 503 when a detection
/// completed no cycle within 3 intervals (`failing`: its runner is stuck or dead, which a restart
/// does fix), so probes and orchestrators see it.
#[utoipa::path(get, path = "/health", tag = "operations",
    summary = "Liveness and per-detection cycle status: 503 when a detection is stalled.",
    responses((status = 200, description = "Every detection completes its cycles on time.", body = Health),
        (status = 503, description = "A detection completed no cycle within 3 intervals.", body = Health)))]
async fn health(State(s): State<AppState>) -> (StatusCode, Json<Health>) {
    let now = crate::engine::unix_now();
    let detections: Vec<DetectionHealth> = s
        .store
        .detections()
        .iter()
        .map(|d| DetectionHealth {
            name: d.name.clone(),
            status: d.cycle.status,
            stalled: d.cycle.stalled(now),
            series: d.series.len(),
            firing: d.firing.len(),
            consecutive_failures: d.cycle.consecutive_failures,
            last_success: d.cycle.last_success,
            last_error: d.cycle.last_error.clone(),
            last_duration_seconds: d.cycle.last_duration_seconds,
        })
        .collect();
    let status = if detections.iter().any(|d| d.stalled) {
        "failing"
    } else if detections.iter().any(|d| d.status == CycleStatus::Failure) {
        "degraded"
    } else {
        "ok"
    };
    let code = if status == "failing" {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    let body = Health {
        status,
        uptime_seconds: s.started.elapsed().as_secs(),
        detections,
    };
    (code, Json(body))
}

#[derive(Serialize, utoipa::ToSchema)]
struct Anomalies {
    /// Open episodes now (from the detections), highest score first.
    firing: Vec<AnomalyRecord>,
    /// Episodes from the history matching the filters, newest start first (one page).
    recent: Vec<AnomalyRecord>,
    /// Episodes in the history matching the filters (all pages).
    total: u64,
    /// Pass as `cursor` for the next page; null on the last page.
    next_cursor: Option<String>,
    /// 1, or 0 when the history is unavailable.
    completeness: f64,
    #[schema(value_type = BTreeMap<String, SourceStatus>)]
    sources: Sources,
}

const ANOMALY_PARAMS: [&str; 8] = [
    "detection",
    "service",
    "severity",
    "state",
    "from",
    "to",
    "cursor",
    "limit",
];

fn matches(r: &AnomalyRecord, q: &HistoryQuery) -> bool {
    q.detection.as_deref().is_none_or(|d| r.detection == d)
        && q.service
            .as_deref()
            .is_none_or(|s| service_of(&r.labels) == Some(s))
        && q.severity.as_deref().is_none_or(|s| r.severity == s)
}

fn firing(store: &Store, q: &HistoryQuery) -> Vec<AnomalyRecord> {
    let mut firing: Vec<AnomalyRecord> = store
        .detections()
        .iter()
        .flat_map(|d| d.firing.iter())
        .filter(|r| matches(r, q))
        .cloned()
        .collect();
    firing.sort_by(|a, b| b.score.total_cmp(&a.score));
    firing
}

fn one_of(p: &Params, name: &str, accepted: &[&str]) -> Result<Option<String>, ApiError> {
    match p.get(name) {
        None => Ok(None),
        Some(v) if accepted.contains(&v.as_str()) => Ok(Some(v.clone())),
        Some(v) => Err(ApiError::bad(
            name,
            format!("{name}={v:?} is not accepted"),
            accepted,
        )),
    }
}

fn history_query(p: &Params) -> Result<HistoryQuery, ApiError> {
    only(p, &ANOMALY_PARAMS)?;
    let limit = match p.get("limit") {
        None => DEFAULT_LIMIT,
        Some(v) => match v.parse::<usize>() {
            Ok(n) if n <= MAX_PAGE => n,
            _ => {
                return Err(ApiError::bad(
                    "limit",
                    format!("limit={v:?} is not a whole number from 0 to {MAX_PAGE}"),
                    &[&format!("0..={MAX_PAGE}")],
                ))
            }
        },
    };
    let from = p.get("from").map(|v| parse_time("from", v)).transpose()?;
    let to = p.get("to").map(|v| parse_time("to", v)).transpose()?;
    if let (Some(f), Some(t)) = (from, to) {
        if f > t {
            return Err(ApiError::bad(
                "from",
                format!("from ({f}) is after to ({t})"),
                &["from <= to"],
            ));
        }
    }
    let cursor = p.get("cursor").cloned();
    if let Some(c) = &cursor {
        let ok = c
            .split_once('.')
            .is_some_and(|(a, b)| a.parse::<i64>().is_ok() && b.parse::<i64>().is_ok());
        if !ok {
            return Err(ApiError::bad(
                "cursor",
                format!("cursor={c:?} was not produced by this API"),
                &["the next_cursor of a previous answer"],
            ));
        }
    }
    Ok(HistoryQuery {
        from,
        to,
        service: p.get("service").cloned(),
        detection: p.get("detection").cloned(),
        severity: one_of(p, "severity", &["warning", "critical"])?,
        state: one_of(p, "state", &["firing", "resolved"])?,
        cursor,
        limit,
    })
}

/// Reads a history page (and the total) off the async workers; `None` with the reason when the
/// store fails.
async fn history_page(
    store: &Store,
    q: HistoryQuery,
) -> (Vec<AnomalyRecord>, u64, Option<String>, SourceStatus) {
    let Some(h) = store.history().cloned() else {
        // No store attached: the in-memory list of resolved episodes.
        let items: Vec<AnomalyRecord> = store
            .recent()
            .into_iter()
            .filter(|r| matches(r, &q))
            .collect();
        let total = items.len() as u64;
        return (
            items.into_iter().take(q.limit).collect(),
            total,
            None,
            SourceStatus::ok(),
        );
    };
    if q.limit == 0 {
        let count = tokio::task::spawn_blocking(move || h.count(&q)).await;
        return match count {
            Ok(Ok(n)) => (Vec::new(), n, None, SourceStatus::ok()),
            Ok(Err(e)) => (
                Vec::new(),
                0,
                None,
                SourceStatus::unavailable(e.to_string()),
            ),
            Err(e) => (
                Vec::new(),
                0,
                None,
                SourceStatus::unavailable(e.to_string()),
            ),
        };
    }
    let r = tokio::task::spawn_blocking(move || {
        let page = h.query(&q)?;
        let total = h.count(&q)?;
        Ok::<_, crate::history::HistoryError>((page, total))
    })
    .await;
    match r {
        Ok(Ok((page, total))) => (page.items, total, page.next_cursor, SourceStatus::ok()),
        Ok(Err(e)) => (
            Vec::new(),
            0,
            None,
            SourceStatus::unavailable(e.to_string()),
        ),
        Err(e) => (
            Vec::new(),
            0,
            None,
            SourceStatus::unavailable(e.to_string()),
        ),
    }
}

#[utoipa::path(get, path = "/api/v1/anomalies", tag = "anomalies",
    summary = "Firing anomalies (highest score first) and the anomaly history (newest first), filtered and paginated.",
    params(
        ("detection" = Option<String>, Query, description = "Only this detection."),
        ("service" = Option<String>, Query, description = "Only series whose service_name, job or service label equals this."),
        ("severity" = Option<String>, Query, description = "warning or critical."),
        ("state" = Option<String>, Query, description = "History only: firing or resolved."),
        ("from" = Option<String>, Query, description = "History: episodes still open at or ending after this (unix seconds or RFC 3339)."),
        ("to" = Option<String>, Query, description = "History: episodes started at or before this (unix seconds or RFC 3339)."),
        ("cursor" = Option<String>, Query, description = "next_cursor of the previous page."),
        ("limit" = Option<u32>, Query, description = "Page size, 0..=1000 (default 100).", maximum = 1000),
    ),
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "Anomalies.", body = Anomalies),
        (status = 400, description = "Unknown or malformed parameter.", body = ApiError),
        (status = 401, description = "Bearer token required.", body = ApiError),
        (status = 429, description = "Rate limit exceeded (see Retry-After).", body = ApiError),
    ))]
async fn anomalies(State(s): State<AppState>, Query(p): Query<Params>) -> Response {
    let q = match history_query(&p) {
        Ok(q) => q,
        Err(e) => return reply(e),
    };
    let live = firing(&s.store, &q);
    let (recent, total, next_cursor, status) = history_page(&s.store, q).await;
    let completeness = if status.status == insights::SourceState::Ok {
        1.0
    } else {
        0.0
    };
    Json(Anomalies {
        firing: live,
        recent,
        total,
        next_cursor,
        completeness,
        sources: insights::sources_of(SOURCE_ANOMALIES, status),
    })
    .into_response()
}

#[utoipa::path(get, path = "/api/v1/services", tag = "insights",
    summary = "Services seen (target_info and request metrics), with their last report time and whether they report now.",
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "Services.", body = ServicesAnswer),
        (status = 400, description = "Unknown parameter.", body = ApiError),
        (status = 401, description = "Bearer token required.", body = ApiError),
        (status = 429, description = "Rate limit exceeded (see Retry-After).", body = ApiError),
        (status = 503, description = "Prometheus unavailable and no service known otherwise.", body = ApiError),
    ))]
async fn services(State(s): State<AppState>, Query(p): Query<Params>) -> Response {
    if let Err(e) = only(&p, &[]) {
        return reply(e);
    }
    match s.insights.services().await {
        Ok(list) => Json(ServicesAnswer {
            services: list.as_ref().clone(),
            completeness: 1.0,
            sources: insights::sources_of(SOURCE_PROMETHEUS, SourceStatus::ok()),
        })
        .into_response(),
        Err(e) => {
            // Say what the detections know.
            let mut known: BTreeMap<String, i64> = BTreeMap::new();
            for d in s.store.detections() {
                for x in &d.series {
                    if let Some(svc) = service_of(&x.labels) {
                        let t = known.entry(svc.to_string()).or_insert(x.timestamp);
                        *t = (*t).max(x.timestamp);
                    }
                }
            }
            let sources = insights::sources_of(SOURCE_PROMETHEUS, insights::unavailable(&e));
            if known.is_empty() {
                let mut err = ApiError::status(
                    503,
                    "Prometheus is unavailable and no detection has seen a service yet",
                );
                err.sources = Some(sources);
                return reply(err);
            }
            let services = known
                .into_iter()
                .map(|(job, last)| ServiceInfo {
                    name: job
                        .rsplit_once('/')
                        .map(|(_, n)| n.to_string())
                        .unwrap_or(job.clone()),
                    namespace: job.rsplit_once('/').map(|(ns, _)| ns.to_string()),
                    job,
                    last_report: last,
                    reporting: false,
                    has_requests: false,
                })
                .collect();
            Json(ServicesAnswer {
                services,
                completeness: 0.0,
                sources,
            })
            .into_response()
        }
    }
}

const RANGE_PARAMS: [&str; 4] = ["from", "to", "step", "format"];

fn csv_response(body: Vec<u8>, completeness: f64, sources: &Sources, name: &str) -> Response {
    let status: Vec<String> = sources
        .iter()
        .map(|(k, v)| {
            format!(
                "{k}={}",
                serde_json::to_value(v.status)
                    .ok()
                    .and_then(|v| v.as_str().map(String::from))
                    .unwrap_or_default()
            )
        })
        .collect();
    let mut r = (
        [
            (
                header::CONTENT_TYPE,
                "text/csv; charset=utf-8; header=present".to_string(),
            ),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}.csv\""),
            ),
        ],
        body,
    )
        .into_response();
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&format!("{completeness}")) {
        h.insert("x-completeness", v);
    }
    if let Ok(v) = HeaderValue::from_str(&status.join(", ")) {
        h.insert("x-source-status", v);
    }
    r
}

fn file_name(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Parses range and format; `(range, format)`.
fn range_and_format(
    s: &AppState,
    p: &Params,
    headers: &HeaderMap,
    allowed: &[&str],
) -> Result<(TimeRange, Format), ApiError> {
    only(p, allowed)?;
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let f = format(p, accept)?;
    Ok((time_range(p, &s.insights.cfg, insights::now())?, f))
}

fn prometheus_failed(e: &crate::prometheus::QueryError, what: &str) -> ApiError {
    let mut err = ApiError::status(
        503,
        format!("cannot compute {what}: Prometheus is unavailable"),
    );
    err.sources = Some(insights::sources_of(
        SOURCE_PROMETHEUS,
        insights::unavailable(e),
    ));
    err
}

#[utoipa::path(get, path = "/api/v1/services/{service}/metrics", tag = "insights",
    summary = "Every supported metric of a service (request_rate, error_ratio, latency_p50/p95/p99, cpu, memory, availability) over a range, with min/max/avg/last.",
    params(
        ("service" = String, Path, description = "Service name (job without namespace) or job."),
        ("from" = Option<String>, Query, description = "Start: unix seconds or RFC 3339 (default: to - 24h)."),
        ("to" = Option<String>, Query, description = "End: unix seconds or RFC 3339 (default: now)."),
        ("step" = Option<String>, Query, description = "Resolution: seconds or a duration such as 15s (default: 15s, coarser for long ranges)."),
        ("format" = Option<String>, Query, description = "json or csv (default: by Accept)."),
    ),
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "Series.", content((MetricsAnswer = "application/json"), (String = "text/csv"))),
        (status = 400, description = "Bad parameter or unknown service.", body = ApiError),
        (status = 401, description = "Bearer token required.", body = ApiError),
        (status = 429, description = "Rate limit exceeded (see Retry-After).", body = ApiError),
        (status = 503, description = "Prometheus unavailable.", body = ApiError),
    ))]
async fn service_metrics(
    State(s): State<AppState>,
    Path(service): Path<String>,
    Query(p): Query<Params>,
    headers: HeaderMap,
) -> Response {
    let (r, f) = match range_and_format(&s, &p, &headers, &RANGE_PARAMS) {
        Ok(x) => x,
        Err(e) => return reply(e),
    };
    let job = match s.insights.resolve(&service).await {
        Ok(j) => j,
        Err(e) => return reply(e),
    };
    let all = match s.insights.all_series(&job, &r).await {
        Ok(a) => a,
        Err(e) => return reply(prometheus_failed(&e, "the metrics")),
    };
    let completeness = all.iter().map(|m| m.completeness).sum::<f64>() / all.len().max(1) as f64;
    let sources = insights::sources_of(SOURCE_PROMETHEUS, worst(all.iter().map(|m| &m.status)));
    if f == Format::Csv {
        return csv_response(
            insights::csv::series(&all),
            completeness,
            &sources,
            &format!("{}-metrics", file_name(&service)),
        );
    }
    Json(MetricsAnswer {
        service,
        job,
        from: r.from,
        to: r.to,
        step: r.step,
        metrics: all,
        completeness,
        sources,
    })
    .into_response()
}

/// The least healthy of several statuses (gaps merged, reasons joined).
fn worst<'a>(all: impl Iterator<Item = &'a SourceStatus>) -> SourceStatus {
    let all: Vec<&SourceStatus> = all.collect();
    if all.iter().all(|s| s.status == insights::SourceState::Ok) {
        return SourceStatus::ok();
    }
    let mut gaps: Vec<insights::Gap> = all.iter().flat_map(|s| s.gaps.iter().copied()).collect();
    gaps.sort_by_key(|g| (g.from, g.to));
    gaps.dedup();
    gaps.truncate(100);
    let mut reasons: Vec<String> = all.iter().filter_map(|s| s.reason.clone()).collect();
    reasons.dedup();
    SourceStatus::partial(gaps, reasons.join("; "))
}

#[utoipa::path(get, path = "/api/v1/services/{service}/metrics/{metric}", tag = "insights",
    summary = "One metric of a service over a range, with min/max/avg/last.",
    params(
        ("service" = String, Path, description = "Service name (job without namespace) or job."),
        ("metric" = String, Path, description = "request_rate, error_ratio, latency_p50, latency_p95, latency_p99, cpu, memory or availability."),
        ("from" = Option<String>, Query, description = "Start: unix seconds or RFC 3339 (default: to - 24h)."),
        ("to" = Option<String>, Query, description = "End: unix seconds or RFC 3339 (default: now)."),
        ("step" = Option<String>, Query, description = "Resolution: seconds or a duration such as 15s."),
        ("format" = Option<String>, Query, description = "json or csv (default: by Accept)."),
    ),
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "Series.", content((MetricAnswer = "application/json"), (String = "text/csv"))),
        (status = 400, description = "Bad parameter, unknown service or metric.", body = ApiError),
        (status = 401, description = "Bearer token required.", body = ApiError),
        (status = 429, description = "Rate limit exceeded (see Retry-After).", body = ApiError),
        (status = 503, description = "Prometheus unavailable.", body = ApiError),
    ))]
async fn service_metric(
    State(s): State<AppState>,
    Path((service, metric)): Path<(String, String)>,
    Query(p): Query<Params>,
    headers: HeaderMap,
) -> Response {
    let Some(m) = Metric::parse(&metric) else {
        return reply(ApiError::bad(
            "metric",
            format!("unknown metric {metric:?}"),
            &Metric::names(),
        ));
    };
    let (r, f) = match range_and_format(&s, &p, &headers, &RANGE_PARAMS) {
        Ok(x) => x,
        Err(e) => return reply(e),
    };
    let job = match s.insights.resolve(&service).await {
        Ok(j) => j,
        Err(e) => return reply(e),
    };
    let series = match s.insights.series(&job, m, &r).await {
        Ok(x) => x,
        Err(e) => return reply(prometheus_failed(&e, m.name())),
    };
    let sources = insights::sources_of(SOURCE_PROMETHEUS, series.status.clone());
    let completeness = series.completeness;
    if f == Format::Csv {
        return csv_response(
            insights::csv::series(std::slice::from_ref(&series)),
            completeness,
            &sources,
            &format!("{}-{}", file_name(&service), m.name()),
        );
    }
    Json(MetricAnswer {
        service,
        job,
        from: r.from,
        to: r.to,
        step: r.step,
        series,
        completeness,
        sources,
    })
    .into_response()
}

#[derive(Serialize, utoipa::ToSchema)]
struct DetectionSummary {
    detection: String,
    series: usize,
    firing: usize,
    max_score: f64,
    /// Series count per model kind.
    #[schema(value_type = BTreeMap<String, usize>)]
    models: BTreeMap<&'static str, usize>,
}

#[derive(Serialize, utoipa::ToSchema)]
struct ServiceSummary {
    service: String,
    /// Prometheus job (null when Prometheus does not know the service or is unavailable).
    job: Option<String>,
    /// Series of the service the detections evaluate.
    series: usize,
    firing_count: usize,
    detections: Vec<DetectionSummary>,
    /// Open episodes now.
    firing: Vec<AnomalyRecord>,
    /// Recently resolved episodes (in memory).
    recent: Vec<AnomalyRecord>,
    /// Range start (unix seconds).
    from: i64,
    /// Range end (unix seconds).
    to: i64,
    /// Step used for completeness (seconds).
    step: i64,
    /// Requests, errors, latency, availability and SLOs over the range.
    #[serde(flatten)]
    totals: RequestTotals,
    /// Episodes of the service overlapping the range (history).
    anomalies_in_range: u64,
    /// The newest 100 of them.
    anomalies: Vec<AnomalyRecord>,
    completeness: f64,
    #[schema(value_type = BTreeMap<String, SourceStatus>)]
    sources: Sources,
}

/// Whether a series' service (its `service_name`, `job` or `service` label) is `service`: the
/// same value, or a job `namespace/<service>`.
fn same_service(of: Option<&str>, service: &str) -> bool {
    of.is_some_and(|v| v == service || v.rsplit_once('/').is_some_and(|(_, n)| n == service))
}

/// The service value the detections and the history use for `service` (e.g. the job
/// `demo/demo-frontend` for `demo-frontend`), when the detections know it.
fn local_key(store: &Store, service: &str) -> Option<String> {
    store
        .detections()
        .iter()
        .flat_map(|d| {
            d.series
                .iter()
                .map(|x| service_of(&x.labels).map(String::from))
                .collect::<Vec<_>>()
        })
        .flatten()
        .filter(|v| same_service(Some(v), service))
        .min_by_key(|v| (v != service, v.clone()))
}

fn detection_summaries(store: &Store, service: &str) -> Vec<DetectionSummary> {
    let mut detections = Vec::new();
    for d in store.detections() {
        let mine: Vec<_> = d
            .series
            .iter()
            .filter(|x| same_service(service_of(&x.labels), service))
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
    detections
}

#[utoipa::path(get, path = "/api/v1/services/{service}/summary", tag = "insights",
    summary = "How a service did over a range: requests, errors, error ratio, latency percentiles, availability, SLO error budget, anomalies; plus its detections' state.",
    params(
        ("service" = String, Path, description = "Service name (job without namespace), job, or a service label the detections see."),
        ("from" = Option<String>, Query, description = "Start: unix seconds or RFC 3339 (default: to - 24h)."),
        ("to" = Option<String>, Query, description = "End: unix seconds or RFC 3339 (default: now)."),
        ("step" = Option<String>, Query, description = "Resolution of the completeness check."),
    ),
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "Summary (sources say what is missing).", body = ServiceSummary),
        (status = 400, description = "Bad parameter or unknown service.", body = ApiError),
        (status = 401, description = "Bearer token required.", body = ApiError),
        (status = 429, description = "Rate limit exceeded (see Retry-After).", body = ApiError),
        (status = 503, description = "Prometheus unavailable and the service unknown to the detections.", body = ApiError),
    ))]
async fn service_summary(
    State(s): State<AppState>,
    Path(service): Path<String>,
    Query(p): Query<Params>,
) -> Response {
    let r = match only(&p, &["from", "to", "step"])
        .and_then(|_| time_range(&p, &s.insights.cfg, insights::now()))
    {
        Ok(r) => r,
        Err(e) => return reply(e),
    };
    let detections = detection_summaries(&s.store, &service);
    let mut key = local_key(&s.store, &service).unwrap_or_else(|| service.clone());
    let live_q = HistoryQuery {
        service: Some(key.clone()),
        ..Default::default()
    };
    let firing_now = firing(&s.store, &live_q);
    let recent: Vec<AnomalyRecord> = s
        .store
        .recent()
        .into_iter()
        .filter(|x| matches(x, &live_q))
        .take(DEFAULT_LIMIT)
        .collect();
    let known_locally = !detections.is_empty() || !recent.is_empty() || !firing_now.is_empty();
    let mut sources = Sources::new();
    let (job, totals, completeness) = match s.insights.resolve(&service).await {
        Ok(job) => {
            key = job.clone();
            match s.insights.totals(&service, &job, &r).await {
                Ok((t, cov)) => {
                    sources.insert(SOURCE_PROMETHEUS.into(), cov.status);
                    (Some(job), t, cov.completeness)
                }
                Err(e) => {
                    sources.insert(SOURCE_PROMETHEUS.into(), insights::unavailable(&e));
                    (Some(job), RequestTotals::default(), 0.0)
                }
            }
        }
        Err(e) if known_locally => {
            sources.insert(
                SOURCE_PROMETHEUS.into(),
                match e.sources.and_then(|mut m| m.remove(SOURCE_PROMETHEUS)) {
                    Some(st) => st,
                    None => SourceStatus::unavailable(format!(
                        "Prometheus has no target_info or request metrics for {service:?}"
                    )),
                },
            );
            (None, RequestTotals::default(), 0.0)
        }
        Err(e) => return reply(e),
    };
    let (anomalies, in_range, _, store_status) = history_page(
        &s.store,
        HistoryQuery {
            from: Some(r.from),
            to: Some(r.to),
            service: Some(key),
            limit: DEFAULT_LIMIT,
            ..Default::default()
        },
    )
    .await;
    sources.insert(SOURCE_ANOMALIES.into(), store_status);
    sources.insert(SOURCE_SLO.into(), s.insights.slo_source());
    json_or_503(Ok(ServiceSummary {
        service,
        job,
        series: detections.iter().map(|d| d.series).sum(),
        firing_count: firing_now.len(),
        detections,
        firing: firing_now,
        recent,
        from: r.from,
        to: r.to,
        step: r.step,
        totals,
        anomalies_in_range: in_range,
        anomalies,
        completeness,
        sources,
    }))
}

#[utoipa::path(get, path = "/api/v1/services/{service}/breakdown", tag = "insights",
    summary = "Requests, errors and latency of a service over a range by route, status code, method or instance; totals equal the summary's.",
    params(
        ("service" = String, Path, description = "Service name (job without namespace) or job."),
        ("by" = String, Query, description = "route, status_code, method or instance."),
        ("from" = Option<String>, Query, description = "Start: unix seconds or RFC 3339 (default: to - 24h)."),
        ("to" = Option<String>, Query, description = "End: unix seconds or RFC 3339 (default: now)."),
        ("step" = Option<String>, Query, description = "Resolution of the completeness check."),
        ("format" = Option<String>, Query, description = "json or csv (default: by Accept)."),
    ),
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "Breakdown.", content((Breakdown = "application/json"), (String = "text/csv"))),
        (status = 400, description = "Bad parameter (by), unknown service.", body = ApiError),
        (status = 401, description = "Bearer token required.", body = ApiError),
        (status = 429, description = "Rate limit exceeded (see Retry-After).", body = ApiError),
        (status = 503, description = "Prometheus unavailable.", body = ApiError),
    ))]
async fn service_breakdown(
    State(s): State<AppState>,
    Path(service): Path<String>,
    Query(p): Query<Params>,
    headers: HeaderMap,
) -> Response {
    let (r, f) = match range_and_format(&s, &p, &headers, &["from", "to", "step", "format", "by"]) {
        Ok(x) => x,
        Err(e) => return reply(e),
    };
    let dim = match p.get("by").map(|b| (b, Dimension::parse(b))) {
        Some((_, Some(d))) => d,
        Some((b, None)) => {
            return reply(ApiError::bad(
                "by",
                format!("by={b:?} is not a breakdown dimension"),
                &Dimension::names(),
            ))
        }
        None => return reply(ApiError::bad("by", "by is required", &Dimension::names())),
    };
    let job = match s.insights.resolve(&service).await {
        Ok(j) => j,
        Err(e) => return reply(e),
    };
    let (rows, totals, cov) = match s.insights.breakdown(&job, dim, &r).await {
        Ok(x) => x,
        Err(e) => return reply(prometheus_failed(&e, "the breakdown")),
    };
    let sources = insights::sources_of(SOURCE_PROMETHEUS, cov.status);
    if f == Format::Csv {
        return csv_response(
            insights::csv::breakdown(dim.name(), &rows),
            cov.completeness,
            &sources,
            &format!("{}-by-{}", file_name(&service), dim.name()),
        );
    }
    Json(Breakdown {
        service,
        job,
        by: dim.name().into(),
        label: dim.label().into(),
        from: r.from,
        to: r.to,
        step: r.step,
        rows,
        totals,
        completeness: cov.completeness,
        sources,
    })
    .into_response()
}

#[utoipa::path(get, path = "/api/v1/stream", tag = "live",
    summary = "Live updates as Server-Sent Events: first an event `history` (JSON LiveHistory: the last 10 minutes of CPU and memory per host), then an event `snapshot` (JSON LiveSnapshot) every insights.live_interval.",
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "text/event-stream: one `history` event (LiveHistory), then `snapshot` events (LiveSnapshot).", body = String, content_type = "text/event-stream"),
        (status = 401, description = "Bearer token required.", body = ApiError),
        (status = 429, description = "Rate limit exceeded (see Retry-After).", body = ApiError),
    ))]
async fn stream(
    State(s): State<AppState>,
) -> Sse<impl futures::Stream<Item = Result<Event, Infallible>>> {
    use futures::StreamExt as _;
    let rx = s.live.subscribe();
    let insights = s.insights.clone();
    // First the last minutes (so the charts start filled), then every snapshot.
    let past = futures::stream::once(async move {
        let h = insights::live::history(&insights).await;
        Ok(Event::default()
            .event("history")
            .json_data(&h)
            .unwrap_or_else(|_| Event::default().event("error").data("serialization failed")))
    });
    let snapshots = futures::stream::unfold((rx, true), |(mut rx, first)| async move {
        if !first && rx.changed().await.is_err() {
            return None;
        }
        let snap = rx.borrow_and_update().clone();
        let ev = Event::default()
            .event("snapshot")
            .json_data(&*snap)
            .unwrap_or_else(|_| Event::default().event("error").data("serialization failed"));
        Some((Ok(ev), (rx, false)))
    });
    let events = past
        .chain(snapshots)
        .take_until(s.live.stopped().cancelled_owned());
    Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{InsightsConfig, PrometheusConfig};
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

    /// A Prometheus URL nothing listens on: every insights query fails with `connect`.
    fn dead_prometheus() -> PrometheusConfig {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        drop(l);
        serde_yaml::from_str(&format!("url: '{url}'")).unwrap()
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
            insights: Arc::new(
                Insights::new(&dead_prometheus(), InsightsConfig::default()).unwrap(),
            ),
            live: Arc::new(Live::default()),
        }
    }

    async fn send(app: Router, req: Request<Body>) -> (StatusCode, HeaderMap, String) {
        let resp = app.oneshot(req).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (status, headers, String::from_utf8(body.to_vec()).unwrap())
    }

    async fn get(app: Router, uri: &str) -> (StatusCode, String) {
        let (st, _, body) = send(app, Request::get(uri).body(Body::empty()).unwrap()).await;
        (st, body)
    }

    fn json(body: &str) -> serde_json::Value {
        serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
    }

    #[tokio::test]
    async fn health_reports_detections() {
        let (st, body) = get(app(state()), ROUTE_HEALTH).await;
        assert_eq!(st, StatusCode::OK);
        let v = json(&body);
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
    async fn health_fails_a_detection_without_a_cycle_for_three_intervals() {
        let s = state();
        let now = crate::engine::unix_now();
        let cycle = |completed: i64| crate::state::CycleInfo {
            status: CycleStatus::Success,
            interval_seconds: 10,
            scheduled_at: Some(now - 1000),
            last_completed: Some(completed),
            ..Default::default()
        };
        let publish = |c| {
            s.store.publish(DetectionSnapshot {
                name: "errors".into(),
                cycle: c,
                ..Default::default()
            })
        };
        // Last cycle 25 s ago with a 10 s interval: on time.
        publish(cycle(now - 25));
        let (st, body) = get(app(s.clone()), ROUTE_HEALTH).await;
        assert_eq!(st, StatusCode::OK);
        assert_eq!(json(&body)["status"], "ok");
        // 40 s ago (> 3 intervals) while the last outcome was a success: failing.
        publish(cycle(now - 40));
        let (st, body) = get(app(s.clone()), ROUTE_HEALTH).await;
        assert_eq!(
            st,
            StatusCode::SERVICE_UNAVAILABLE,
            "probes must see a stall"
        );
        let v = json(&body);
        assert_eq!(v["status"], "failing", "{v}");
        let d = v["detections"].as_array().unwrap();
        let errors = d.iter().find(|d| d["name"] == "errors").unwrap();
        assert_eq!(errors["stalled"], true);
        // Scheduled long ago and never completed a first cycle: failing too.
        publish(crate::state::CycleInfo {
            last_completed: None,
            ..cycle(0)
        });
        let v = json(&get(app(s.clone()), ROUTE_HEALTH).await.1);
        assert_eq!(v["status"], "failing", "{v}");
    }

    #[tokio::test]
    async fn anomalies_filters() {
        let (st, body) = get(app(state()), ROUTE_ANOMALIES).await;
        assert_eq!(st, StatusCode::OK);
        let v = json(&body);
        assert_eq!(v["firing"].as_array().unwrap().len(), 1);
        assert_eq!(v["recent"].as_array().unwrap().len(), 1);
        assert_eq!(v["firing"][0]["labels"]["job"], "checkout");
        assert_eq!(v["sources"]["anomaly_store"]["status"], "ok");
        let (_, body) = get(app(state()), "/api/v1/anomalies?service=cart").await;
        let v = json(&body);
        assert_eq!(v["firing"].as_array().unwrap().len(), 0);
        assert_eq!(v["recent"][0]["status"], "resolved");
        let (_, body) = get(app(state()), "/api/v1/anomalies?detection=errors").await;
        let v = json(&body);
        assert!(
            v["firing"].as_array().unwrap().is_empty()
                && v["recent"].as_array().unwrap().is_empty()
        );
        for bad in [
            "bogus=1",
            "severity=high",
            "state=open",
            "limit=-1",
            "limit=5000",
            "from=10&to=5",
            "cursor=zzz",
        ] {
            let (st, body) = get(app(state()), &format!("/api/v1/anomalies?{bad}")).await;
            assert_eq!(st, StatusCode::BAD_REQUEST, "{bad}: {body}");
            let v = json(&body);
            let param = bad.split('=').next().unwrap();
            assert_eq!(v["parameter"], param, "{bad}: {body}");
            assert!(!v["accepted"].as_array().unwrap().is_empty(), "{body}");
        }
    }

    #[tokio::test]
    async fn anomalies_page_through_the_history() {
        let s = state();
        let history = Arc::new(
            crate::history::History::open(&crate::config::HistoryConfig::default(), 0).unwrap(),
        );
        let store = Store::new(["rate"], 10).with_history(history);
        for i in 0..5 {
            let mut r = record("cart", "resolved");
            r.starts_at = 100 + i;
            r.ends_at = Some(200 + i);
            store.record_resolved(r);
        }
        let s = AppState {
            store: Arc::new(store),
            ..s
        };
        let (_, body) = get(app(s.clone()), "/api/v1/anomalies?limit=2").await;
        let v = json(&body);
        assert_eq!(v["total"], 5);
        assert_eq!(v["recent"][0]["starts_at"], 104);
        let cursor = v["next_cursor"].as_str().unwrap().to_string();
        let (_, body) = get(
            app(s.clone()),
            &format!("/api/v1/anomalies?limit=2&cursor={cursor}"),
        )
        .await;
        let v = json(&body);
        assert_eq!(v["recent"][0]["starts_at"], 102);
        let (_, body) = get(app(s), "/api/v1/anomalies?from=203&to=300").await;
        assert_eq!(json(&body)["total"], 2);
    }

    /// Prometheus down: the summary still answers from the detections and names the source.
    #[tokio::test]
    async fn summary_without_prometheus_and_unknown_service() {
        let (st, body) = get(app(state()), "/api/v1/services/checkout/summary").await;
        assert_eq!(st, StatusCode::OK, "{body}");
        let v = json(&body);
        assert_eq!(v["service"], "checkout");
        assert_eq!(v["series"], 1);
        assert_eq!(v["firing_count"], 1);
        assert_eq!(v["detections"][0]["models"]["holt_winters"], 1);
        assert_eq!(v["sources"]["prometheus"]["status"], "unavailable");
        assert!(
            v["sources"]["prometheus"]["reason"]
                .as_str()
                .unwrap()
                .contains("connect"),
            "{body}"
        );
        assert_eq!(v["completeness"], 0.0);
        assert!(v["requests"].is_null());
        // Unknown everywhere and Prometheus cannot say: 503 naming the source.
        let (st, body) = get(app(state()), "/api/v1/services/nope/summary").await;
        assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert_eq!(
            json(&body)["sources"]["prometheus"]["status"],
            "unavailable"
        );
        // Services: what the detections know.
        let (st, body) = get(app(state()), ROUTE_SERVICES).await;
        assert_eq!(st, StatusCode::OK, "{body}");
        let v = json(&body);
        assert_eq!(v["services"].as_array().unwrap().len(), 2);
        assert_eq!(v["completeness"], 0.0);
        // Metrics need Prometheus.
        let (st, _) = get(app(state()), "/api/v1/services/checkout/metrics").await;
        assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE);
    }

    #[tokio::test]
    async fn parameters_are_validated_before_any_query() {
        for (uri, param) in [
            ("/api/v1/services/x/metrics/bogus", "metric"),
            ("/api/v1/services/x/metrics?from=10&to=5", "from"),
            ("/api/v1/services/x/metrics?from=0&to=99999999", "from"),
            ("/api/v1/services/x/metrics?from=0&to=86400&step=1", "step"),
            ("/api/v1/services/x/metrics?format=xml", "format"),
            ("/api/v1/services/x/breakdown?by=colour", "by"),
            ("/api/v1/services/x/breakdown", "by"),
            ("/api/v1/services/x/summary?nope=1", "nope"),
            ("/api/v1/services?x=1", "x"),
        ] {
            let (st, body) = get(app(state()), uri).await;
            assert_eq!(st, StatusCode::BAD_REQUEST, "{uri}: {body}");
            let v = json(&body);
            assert_eq!(v["parameter"], param, "{uri}: {body}");
            assert!(
                !v["accepted"].as_array().unwrap().is_empty(),
                "{uri}: {body}"
            );
        }
        let (_, body) = get(app(state()), "/api/v1/services/x/breakdown?by=colour").await;
        assert!(body.contains("status_code"), "{body}");
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

    #[tokio::test]
    async fn live_page_is_self_contained() {
        let (st, body) = get(app(state()), ROUTE_LIVE).await;
        assert_eq!(st, StatusCode::OK);
        assert!(body.contains("/api/v1/stream"));
        assert!(
            !body.contains("http://") && !body.contains("https://"),
            "no CDN or external asset"
        );
    }

    /// Every route of the router is documented and every documented path is served.
    #[tokio::test]
    async fn openapi_matches_router() {
        let (st, body) = get(app(state()), ROUTE_OPENAPI).await;
        assert_eq!(st, StatusCode::OK);
        let doc = json(&body);
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
        }
        // Every $ref points at a defined schema.
        for r in body.match_indices("#/components/schemas/") {
            let rest = &body[r.0 + r.1.len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            assert!(
                doc["components"]["schemas"][&name].is_object(),
                "schema {name} missing"
            );
        }
    }

    fn guards(token: Option<&str>, rate: Option<(f64, u32)>, cors: &[&str]) -> Guards {
        Guards {
            token: token.map(digest),
            rate,
            cors: cors.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[tokio::test]
    async fn bearer_token_guards_the_api_only() {
        let g = guards(Some("s3cret"), None, &[]);
        let req = |auth: Option<&str>| {
            let mut b = Request::get(ROUTE_ANOMALIES);
            if let Some(a) = auth {
                b = b.header(header::AUTHORIZATION, a);
            }
            b.body(Body::empty()).unwrap()
        };
        let (st, h, body) = send(router(state(), &g), req(None)).await;
        assert_eq!(st, StatusCode::UNAUTHORIZED, "{body}");
        assert!(h[header::WWW_AUTHENTICATE]
            .to_str()
            .unwrap()
            .starts_with("Bearer"));
        let (st, _, _) = send(router(state(), &g), req(Some("Bearer wrong"))).await;
        assert_eq!(st, StatusCode::UNAUTHORIZED);
        let (st, _, _) = send(router(state(), &g), req(Some("Basic s3cret"))).await;
        assert_eq!(st, StatusCode::UNAUTHORIZED);
        let (st, _, _) = send(router(state(), &g), req(Some("Bearer s3cret"))).await;
        assert_eq!(st, StatusCode::OK);
        for open in [ROUTE_HEALTH, ROUTE_METRICS, ROUTE_OPENAPI, ROUTE_LIVE] {
            let (st, _) = get(router(state(), &g), open).await;
            assert_eq!(st, StatusCode::OK, "{open} stays open");
        }
    }

    #[tokio::test]
    async fn rate_limit_answers_429_with_retry_after() {
        let app = router(state(), &guards(None, Some((0.5, 3)), &[]));
        let mut statuses = Vec::new();
        let mut retry_after = None;
        for _ in 0..5 {
            let (st, h, body) = send(
                app.clone(),
                Request::get(ROUTE_ANOMALIES).body(Body::empty()).unwrap(),
            )
            .await;
            if st == StatusCode::TOO_MANY_REQUESTS {
                retry_after = h.get(header::RETRY_AFTER).cloned();
                assert!(json(&body)["error"]
                    .as_str()
                    .unwrap()
                    .contains("rate limit"));
            }
            statuses.push(st.as_u16());
        }
        assert_eq!(statuses, vec![200, 200, 200, 429, 429]);
        let secs: u64 = retry_after.unwrap().to_str().unwrap().parse().unwrap();
        assert!((1..=2).contains(&secs), "{secs}");
        // /health is not limited.
        for _ in 0..5 {
            let (st, _) = get(app.clone(), ROUTE_HEALTH).await;
            assert_eq!(st, StatusCode::OK);
        }
    }

    #[tokio::test]
    async fn cors_allows_configured_origins() {
        let guarded = router(state(), &guards(None, None, &["https://grafana.example"]));
        let req = |origin: &str| {
            Request::get(ROUTE_ANOMALIES)
                .header(header::ORIGIN, origin)
                .body(Body::empty())
                .unwrap()
        };
        let (_, h, _) = send(guarded.clone(), req("https://grafana.example")).await;
        assert_eq!(
            h[header::ACCESS_CONTROL_ALLOW_ORIGIN],
            "https://grafana.example"
        );
        let (_, h, _) = send(guarded, req("https://evil.example")).await;
        assert!(h.get(header::ACCESS_CONTROL_ALLOW_ORIGIN).is_none());
        let (_, h, _) = send(app(state()), req("https://grafana.example")).await;
        assert!(
            h.get(header::ACCESS_CONTROL_ALLOW_ORIGIN).is_none(),
            "off by default"
        );
    }

    #[test]
    fn guards_from_config() {
        let mut s = ServerConfig::default();
        assert!(!Guards::from_config(&s).unwrap().auth_enabled());
        s.auth.token = Some(crate::config::Secret(String::new()));
        assert!(
            !Guards::from_config(&s).unwrap().auth_enabled(),
            "empty token: no auth"
        );
        let f = std::env::temp_dir().join(format!("ad-token-{}", std::process::id()));
        std::fs::write(&f, "tok\n").unwrap();
        s.auth.token = None;
        s.auth.token_file = Some(f.clone());
        let g = Guards::from_config(&s).unwrap();
        assert_eq!(g.token, Some(digest("tok")), "file content, trimmed");
        std::fs::write(&f, "  \n").unwrap();
        let err = Guards::from_config(&s).unwrap_err().to_string();
        assert!(err.contains("empty"), "{err}");
        let _ = std::fs::remove_file(&f);
    }

    #[tokio::test]
    async fn unknown_route_is_404() {
        let (st, _) = get(app(state()), "/api/v1/nope").await;
        assert_eq!(st, StatusCode::NOT_FOUND);
    }
}
