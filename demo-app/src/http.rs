//! HTTP plumbing shared by the three services: the server middleware (semconv server span with
//! W3C trace-context extraction, `http.server.*` metrics, fault injection), `/health`, `/ready`,
//! the JSON error body, and the traced HTTP client (client span, `traceparent` injection,
//! `http.client.request.duration`).
//!
//! Tests: `tests/handlers.rs` (status codes, fault rates) and `tests/otlp.rs` (spans, metrics).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use opentelemetry::context::FutureExt as _;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator as _};
use opentelemetry::trace::{Span as _, SpanKind, SpanRef, Status, TraceContextExt, Tracer as _};
use opentelemetry::{Context, KeyValue, StringValue};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::Span as SdkSpan;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tracing::field::Empty;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::faults::{burn_cpu, Faults};
use crate::metrics::{HttpClientMetrics, HttpServerMetrics};
use crate::telemetry::{ACCESS_LOG_TARGET, SERVICE_FIELD};
use crate::Service;

/// Readiness flag shared by the services of one process: false until telemetry is set up and
/// again once draining starts.
#[derive(Clone, Debug, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    /// A flag that starts not ready.
    pub fn new() -> Self {
        Readiness::default()
    }

    /// Sets the flag.
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::SeqCst);
    }

    /// Reads the flag.
    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// What the server middleware needs for one service.
#[derive(Clone, Debug)]
pub struct ServerCtx {
    /// The service the router belongs to.
    pub service: Service,
    /// Its HTTP server instruments.
    pub metrics: HttpServerMetrics,
    /// Its fault state.
    pub faults: Faults,
    /// The process readiness flag.
    pub ready: Readiness,
}

/// Adds `/health`, `/ready`, `/admin/faults`, a JSON 404 fallback and the tracking middleware
/// to a service's routes.
pub fn finish_router(routes: Router, ctx: ServerCtx) -> Router {
    let ready = ctx.ready.clone();
    routes
        .merge(ctx.faults.router())
        .route(
            "/health",
            get(|| async { Json(serde_json::json!({"status": "ok"})) }),
        )
        .route(
            "/ready",
            get(move || {
                let ready = ready.is_ready();
                async move {
                    let (code, status) = if ready {
                        (StatusCode::OK, "ready")
                    } else {
                        (StatusCode::SERVICE_UNAVAILABLE, "not ready")
                    };
                    (
                        code,
                        Json(serde_json::json!({"status": status, "ready": ready})),
                    )
                }
            }),
        )
        .fallback(|req: Request| async move {
            error_response(
                StatusCode::NOT_FOUND,
                format!("no route for {} {}", req.method(), req.uri().path()),
            )
        })
        .layer(middleware::from_fn_with_state(Arc::new(ctx), track))
}

/// A JSON error body `{"error": message}` with `status`.
pub fn error_response(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(serde_json::json!({"error": message.into()}))).into_response()
}

/// The semconv `http.request.method` value: known methods as is, others `_OTHER`.
pub fn semconv_method(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "_OTHER",
    }
}

/// The semconv `network.protocol.version` of an HTTP version.
fn protocol_version(v: http::Version) -> &'static str {
    match v {
        http::Version::HTTP_09 => "0.9",
        http::Version::HTTP_10 => "1.0",
        http::Version::HTTP_2 => "2",
        http::Version::HTTP_3 => "3",
        _ => "1.1",
    }
}

struct HeaderExtractor<'a>(&'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

struct HeaderInjector<'a>(&'a mut HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(k), Ok(v)) = (
            HeaderName::from_bytes(key.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            self.0.insert(k, v);
        }
    }
}

/// Route templates of all services plus the shared ones, so a matched route can be recorded as
/// a `&'static str` (no allocation per request in the span or the metric attributes).
const SHARED_ROUTES: &[&str] = &["/health", "/ready", "/admin/faults"];

/// The `'static` copy of the route template `r`, when it is one of ours.
fn static_route(r: &str) -> Option<&'static str> {
    [
        crate::front::ROUTES,
        crate::inventory::ROUTES,
        crate::payment::ROUTES,
        SHARED_ROUTES,
    ]
    .into_iter()
    .flatten()
    .find(|t| **t == r)
    .copied()
}

/// The server middleware. The `http.server` span is made with the OpenTelemetry API directly
/// (not through `tracing` and `tracing-opentelemetry`, which cost about twice as much per span
/// and went through a field visitor for each attribute); it continues the caller's W3C trace
/// context and is the current OpenTelemetry context while the handler runs, so the handlers'
/// `tracing` spans become its children. Log lines get the trace id from a log-only `tracing`
/// span ([`ACCESS_LOG_TARGET`], never exported), built only when the log filter wants it.
async fn track(State(ctx): State<Arc<ServerCtx>>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = semconv_method(req.method());
    let matched = req
        .extensions()
        .get::<MatchedPath>()
        .map(MatchedPath::as_str);
    // Our templates are `'static`; anything else (never seen so far) is copied.
    let route: Option<StringValue> = matched.map(|r| match static_route(r) {
        Some(s) => StringValue::from(s),
        None => StringValue::from(r.to_owned()),
    });

    // The W3C propagator directly rather than the global one (`telemetry::init` installs the
    // same kind there for other users): the global lookup takes a lock and a dynamic call per
    // request, and W3C is what the services speak to each other.
    let parent = TraceContextPropagator::new().extract(&HeaderExtractor(req.headers()));
    let scope = start_span(method, SpanKind::Server, parent, |span| {
        if let Some(r) = &route {
            span.update_name(format!("{method} {}", r.as_str()));
        }
        let user_agent = req
            .headers()
            .get(http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let mut attributes = Vec::with_capacity(7);
        attributes.extend([
            KeyValue::new(SERVICE_FIELD, ctx.service.service_name()),
            KeyValue::new("http.request.method", method),
            KeyValue::new("url.path", req.uri().path().to_owned()),
            KeyValue::new("url.scheme", "http"),
            KeyValue::new("network.protocol.version", protocol_version(req.version())),
            KeyValue::new("user_agent.original", user_agent.to_owned()),
        ]);
        if let Some(r) = &route {
            attributes.push(KeyValue::new("http.route", r.clone()));
        }
        attributes
    });

    let log_span = tracing::info_span!(
        target: ACCESS_LOG_TARGET,
        "request",
        http.request.method = method,
        http.route = route.as_ref().map(StringValue::as_str),
        trace_id = Empty,
    );
    if !log_span.is_disabled() {
        let sc = scope.cx.span().span_context().clone();
        if sc.is_valid() {
            log_span.record("trace_id", tracing::field::display(sc.trace_id()));
        }
    }

    let _active = ctx.metrics.active.start(method);

    let fault = route.as_ref().and_then(|r| ctx.faults.decide(r.as_str()));
    let faults = ctx.faults.clone();
    let response = async move {
        if let Some(f) = fault {
            let otel = Context::current();
            if !f.delay.is_zero() {
                let ms = f.delay.as_millis() as u64;
                tracing::debug!(delay_ms = ms, "fault injected: latency");
                otel.span().add_event(
                    "fault injected: latency",
                    vec![KeyValue::new("delay_ms", ms as i64)],
                );
                tokio::time::sleep(f.delay).await;
            }
            if !f.cpu_burn.is_zero() {
                let ms = f.cpu_burn.as_millis() as u64;
                tracing::debug!(cpu_burn_ms = ms, "fault injected: cpu burn");
                otel.span().add_event(
                    "fault injected: cpu burn",
                    vec![KeyValue::new("cpu_burn_ms", ms as i64)],
                );
                burn_cpu(f.cpu_burn).await;
            }
            faults.leak(f.leak_bytes);
            if f.fail {
                tracing::debug!("fault injected: error");
                otel.span().add_event("fault injected: error", vec![]);
                return error_response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "injected fault (see GET /admin/faults)",
                );
            }
        }
        next.run(req).await
    }
    .instrument(log_span)
    .with_context(scope.cx.clone())
    .await;

    let status = response.status();
    let code = i64::from(status.as_u16());
    let mut attrs = Vec::with_capacity(5);
    attrs.push(KeyValue::new("http.request.method", method));
    if let Some(r) = route {
        attrs.push(KeyValue::new("http.route", r));
    }
    attrs.push(KeyValue::new("http.response.status_code", code));
    attrs.push(KeyValue::new("url.scheme", "http"));
    let error_type = status
        .is_server_error()
        .then(|| KeyValue::new("error.type", status.as_str().to_owned()));
    if let Some(span) = scope.span() {
        span.set_attribute(KeyValue::new("http.response.status_code", code));
        if let Some(kind) = &error_type {
            span.set_attribute(kind.clone());
            span.set_status(Status::error(format!("HTTP {code}")));
        }
        span.end();
    }
    attrs.extend(error_type);
    ctx.metrics
        .duration
        .record(start.elapsed().as_secs_f64(), &attrs);
    response
}

/// The context a piece of work runs in, and the span [`start_span`] started for it, if any.
pub(crate) struct SpanScope {
    /// The new span's context, or the parent unchanged when no span was made.
    pub(crate) cx: Context,
    started: bool,
}

impl SpanScope {
    /// The span this scope started, to annotate and end; `None` when none was made (the
    /// parent's span is not this code's to end).
    pub(crate) fn span(&self) -> Option<SpanRef<'_>> {
        self.started.then(|| self.cx.span())
    }
}

/// Starts a span of `kind` under `parent` with the exporting tracer. No span is made when
/// traces are not exported, nor under a parent the sampler dropped when children follow their
/// parent (the child would be dropped too; the work runs in the parent's context, whose trace
/// id still reaches the logs and the downstream services). `describe` runs only when the
/// sampler records the span: it may rename it and returns its attributes, so a request the
/// sampler drops formats no name and copies no attribute values.
pub(crate) fn start_span(
    name: &'static str,
    kind: SpanKind,
    parent: Context,
    describe: impl FnOnce(&mut SdkSpan) -> Vec<KeyValue>,
) -> SpanScope {
    let unchanged = |cx| SpanScope { cx, started: false };
    let Some(exporting) = crate::telemetry::tracer() else {
        return unchanged(parent);
    };
    if exporting.children_follow_parent && crate::telemetry::holds_dropped_span(&parent) {
        return unchanged(parent);
    }
    let tracer = &exporting.tracer;
    let mut span = tracer
        .span_builder(name)
        .with_kind(kind)
        .start_with_context(tracer, &parent);
    if span.is_recording() {
        let attributes = describe(&mut span);
        span.set_attributes(attributes);
    }
    SpanScope {
        cx: parent.with_span(span),
        started: true,
    }
}

/// The OpenTelemetry context new spans are children of: the current `tracing` span's (a
/// business span), else the request's server span (the current OpenTelemetry context).
pub(crate) fn current_otel_context() -> Context {
    // Inside a dropped trace, with children following their parent, no business span was made
    // (see `telemetry::otel_layer_filter`): the `tracing` lookup would find nothing.
    let follows = crate::telemetry::tracer().is_some_and(|t| t.children_follow_parent);
    if follows && !crate::telemetry::inside_sampled_or_no_span() {
        return Context::current();
    }
    let cx = tracing::Span::current().context();
    if cx.has_active_span() {
        cx
    } else {
        Context::current()
    }
}

/// A downstream service the frontend calls.
#[derive(Clone, Debug)]
pub struct Downstream {
    /// Which service it is (for `peer.service` and error messages).
    pub service: Service,
    /// Base URL, e.g. `http://127.0.0.1:8081`.
    pub base: reqwest::Url,
}

/// A failed downstream call.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// Connection refused, timeout, ...
    #[error("{service} unreachable at {url}: {source}")]
    Transport {
        /// The callee.
        service: &'static str,
        /// The URL called.
        url: String,
        /// The transport error.
        #[source]
        source: reqwest::Error,
    },
    /// The callee answered with a non-success status.
    #[error("{service} answered {status}: {message}")]
    Status {
        /// The callee.
        service: &'static str,
        /// HTTP status.
        status: u16,
        /// The callee's error message.
        message: String,
    },
    /// The callee's success body did not parse.
    #[error("{service} sent an unexpected body: {source}")]
    Decode {
        /// The callee.
        service: &'static str,
        /// The parse error.
        #[source]
        source: reqwest::Error,
    },
}

/// Timeout of one downstream call.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);

/// An HTTP client whose calls are client spans with W3C trace-context propagation.
#[derive(Clone, Debug)]
pub struct TracedClient {
    client: reqwest::Client,
    metrics: HttpClientMetrics,
    caller: Service,
}

impl TracedClient {
    /// A client for `caller`'s outgoing calls.
    ///
    /// # Errors
    /// When the TLS backend cannot be initialised.
    pub fn new(caller: Service, metrics: HttpClientMetrics) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .timeout(CLIENT_TIMEOUT)
            .pool_max_idle_per_host(256)
            .build()?;
        Ok(TracedClient {
            client,
            metrics,
            caller,
        })
    }

    /// POSTs `body` as JSON to `path` on `to` and parses the JSON answer.
    ///
    /// # Errors
    /// [`CallError`] on transport failure, a non-2xx status (with the callee's message) or an
    /// unparsable body.
    pub async fn post_json<B: Serialize, R: DeserializeOwned>(
        &self,
        to: &Downstream,
        path: &str,
        body: &B,
    ) -> Result<R, CallError> {
        let service = to.service.service_name();
        let url = to
            .base
            .join(path)
            .map_or_else(|_| format!("{}{}", to.base, path), |u| u.to_string());
        let host = to.base.host_str().unwrap_or("").to_owned();
        let port = i64::from(to.base.port_or_known_default().unwrap_or(80));
        // The client span is made with the OpenTelemetry API directly (see `track`), as a child
        // of the current `tracing` span's OpenTelemetry context (or of the request's server
        // span when the call is made outside any `tracing` span).
        let parent = current_otel_context();
        let scope = start_span("POST", SpanKind::Client, parent, |_| {
            vec![
                KeyValue::new(SERVICE_FIELD, self.caller.service_name()),
                KeyValue::new("http.request.method", "POST"),
                KeyValue::new("server.address", host.clone()),
                KeyValue::new("server.port", port),
                KeyValue::new("url.full", url.clone()),
                KeyValue::new("peer.service", service),
            ]
        });
        let mut headers = HeaderMap::new();
        TraceContextPropagator::new().inject_context(&scope.cx, &mut HeaderInjector(&mut headers));

        let start = Instant::now();
        let result = async {
            let resp = self
                .client
                .post(&url)
                .headers(headers)
                .json(body)
                .send()
                .await
                .map_err(|source| CallError::Transport {
                    service,
                    url: url.clone(),
                    source,
                })?;
            let status = resp.status();
            if !status.is_success() {
                let text = resp.text().await.unwrap_or_default();
                let message = serde_json::from_str::<serde_json::Value>(&text)
                    .ok()
                    .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
                    .unwrap_or(text);
                return Err(CallError::Status {
                    service,
                    status: status.as_u16(),
                    message,
                });
            }
            let parsed = resp
                .json::<R>()
                .await
                .map_err(|source| CallError::Decode { service, source })?;
            Ok((status.as_u16(), parsed))
        }
        .await;

        let mut attrs = vec![
            KeyValue::new("http.request.method", "POST"),
            KeyValue::new("server.address", host),
            KeyValue::new("server.port", port),
        ];
        let (code, error_type, error) = match &result {
            Ok((status, _)) => (Some(*status), None, None),
            Err(CallError::Status { status, .. }) if *status >= 500 => (
                Some(*status),
                Some(status.to_string()),
                Some(format!("HTTP {status}")),
            ),
            Err(CallError::Status { status, .. }) => (Some(*status), None, None),
            Err(e) => {
                let kind = if matches!(e, CallError::Transport { source, .. } if source.is_timeout())
                {
                    "timeout"
                } else {
                    "transport"
                };
                (None, Some(kind.to_owned()), Some(e.to_string()))
            }
        };
        // The outcome goes on the metric and, when one was made, on the span.
        let outcome: Vec<KeyValue> = code
            .map(|c| KeyValue::new("http.response.status_code", i64::from(c)))
            .into_iter()
            .chain(error_type.map(|k| KeyValue::new("error.type", k)))
            .collect();
        attrs.extend(outcome.iter().cloned());
        if let Some(span) = scope.span() {
            span.set_attributes(outcome);
            if let Some(message) = error {
                span.set_status(Status::error(message));
            }
            span.end();
        }
        self.metrics
            .duration
            .record(start.elapsed().as_secs_f64(), &attrs);
        result.map(|(_, body)| body)
    }
}
