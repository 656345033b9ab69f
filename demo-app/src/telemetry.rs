//! Logging and OpenTelemetry setup.
//!
//! * Logs: `tracing-subscriber` with `RUST_LOG` (default `info`, OpenTelemetry and transport
//!   crates at `warn`), JSON when `LOG_FORMAT=json`. Log lines inside a request carry the
//!   request span's `trace_id` field, so logs and traces correlate.
//! * Traces: one tracer provider (also installed as the global one) with one batch span
//!   processor whose exporter ([`ServiceRouter`]) routes every span to the OTLP exporter of the
//!   service it belongs to (the span's `demo.service` attribute, removed before export), so each
//!   service's spans carry their own `service.name` resource although they share one process.
//!   The per-request HTTP server/client and `db.query` spans are made with the OpenTelemetry
//!   API directly (cheaper); the business spans come from `tracing` through the
//!   `tracing-opentelemetry` layer. The batch queue defaults ([`BSP_MAX_QUEUE_SIZE`], ...) apply
//!   only where the `OTEL_BSP_*` variables are unset.
//! * Metrics: one `SdkMeterProvider` (own resource, periodic OTLP exporter) per service.
//! * Configuration by the standard variables: `OTEL_EXPORTER_OTLP_ENDPOINT` (default
//!   `http://127.0.0.1:4317`), `OTEL_EXPORTER_OTLP_PROTOCOL` (`grpc` default, `http/protobuf`,
//!   `http/json`), `OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_RESOURCE_ATTRIBUTES`,
//!   `OTEL_METRIC_EXPORT_INTERVAL`, `OTEL_BSP_*`, and `OTEL_SDK_DISABLED=true` (no export at all).
//!
//! Tests: `cargo test -p demo-app telemetry` and the end-to-end `tests/otlp.rs`.

use std::sync::OnceLock;
use std::time::Duration;

use opentelemetry::metrics::{Meter, MeterProvider as _};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry::{KeyValue, Value};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    BatchConfig, BatchConfigBuilder, BatchSpanProcessor, SdkTracer, SdkTracerProvider, SpanData,
    SpanExporter,
};
use opentelemetry_sdk::Resource;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

use crate::otlp_runtime::OnRuntime;
use crate::Service;

/// Span field naming the service a span belongs to; used for routing, not exported.
pub const SERVICE_FIELD: &str = "demo.service";

/// `tracing` target of the per-request log-only span that gives log lines their `trace_id`
/// (the exported server span is made with the OpenTelemetry API; see [`crate::http`]). It is
/// always off for OpenTelemetry.
pub const ACCESS_LOG_TARGET: &str = "demo_app::access";

/// The tracer of the HTTP server and client and the `db.query` spans, with what its sampler
/// does with children.
#[derive(Debug)]
pub(crate) struct ExportingTracer {
    /// The SDK's own type, not the global `BoxedTracer`, so a span costs no boxing and no
    /// dynamic calls.
    pub(crate) tracer: SdkTracer,
    /// The sampler follows the parent's decision ([`sampler_follows_parent`]).
    pub(crate) children_follow_parent: bool,
}

/// Set by [`init`] when spans are exported. The HTTP middleware and client make no spans while
/// it is unset.
static TRACER: OnceLock<ExportingTracer> = OnceLock::new();

/// True once [`init`] installed an exporting tracer provider.
pub fn traces_enabled() -> bool {
    TRACER.get().is_some()
}

/// The tracer [`init`] installed, if spans are exported.
pub(crate) fn tracer() -> Option<&'static ExportingTracer> {
    TRACER.get()
}

/// Default `RUST_LOG` directives.
pub const DEFAULT_LOG_FILTER: &str = "info,opentelemetry=warn,opentelemetry_sdk=warn,opentelemetry_otlp=warn,h2=warn,hyper=warn,hyper_util=warn,tonic=warn,tower=warn,reqwest=warn";

/// Which spans and events reach OpenTelemetry by default: ours down to DEBUG (per-step events
/// become span events without flooding the log), others from WARN, never the exporter's own
/// transport. `DEMO_OTEL_FILTER` replaces the first part (e.g. `warn,demo_app=info` for fewer
/// span events); the exporter's crates stay off whatever it says.
pub const DEFAULT_OTEL_FILTER: &str = "warn,demo_app=debug";

/// Always appended to the OpenTelemetry filter so the pipeline never traces itself.
const OTEL_FILTER_OFF: &str = "demo_app::access=off,opentelemetry=off,opentelemetry_sdk=off,opentelemetry_otlp=off,h2=off,hyper=off,hyper_util=off,tonic=off,tower=off,reqwest=off";

/// True when the tracer provider's sampler makes a child follow its parent's decision: the
/// default [`crate::sampler::NAME`] and every `parentbased_*` sampler; not `always_on`,
/// `always_off` or `traceidratio`, which decide for every span on their own.
pub fn sampler_follows_parent(otel_traces_sampler: Option<&str>) -> bool {
    match otel_traces_sampler.map(str::trim) {
        None | Some("") => true,
        Some(v) => v.starts_with("parentbased_"),
    }
}

/// False while the current OpenTelemetry context holds a span the sampler dropped.
///
/// The business spans and span events come from `tracing`; a span the layer sees costs a span
/// builder, its attributes and a sampler call even when the sampler then drops it, which at
/// saturation with the default sampler is almost every span. With a parent-based sampler the
/// child of a dropped span is always dropped, so the layer can skip it up front. The handlers
/// run inside the server span's context (see [`crate::http`]), which is where this looks.
pub fn inside_sampled_or_no_span() -> bool {
    opentelemetry::Context::map_current(|cx| !holds_dropped_span(cx))
}

/// True when `cx` holds a span (local or remote) the sampler dropped.
pub fn holds_dropped_span(cx: &opentelemetry::Context) -> bool {
    use opentelemetry::trace::TraceContextExt as _;
    let span = cx.span();
    let sc = span.span_context();
    sc.is_valid() && !sc.is_sampled()
}

fn otel_filter() -> EnvFilter {
    let base = std::env::var("DEMO_OTEL_FILTER")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_OTEL_FILTER.to_string());
    EnvFilter::try_new(format!("{base},{OTEL_FILTER_OFF}")).unwrap_or_else(|e| {
        eprintln!(
            "DEMO_OTEL_FILTER={base:?} is not a valid filter ({e}); using {DEFAULT_OTEL_FILTER:?}"
        );
        EnvFilter::new(format!("{DEFAULT_OTEL_FILTER},{OTEL_FILTER_OFF}"))
    })
}

/// Span batch queue size unless `OTEL_BSP_MAX_QUEUE_SIZE` is set (SDK default 2048, which
/// overflowed within a fraction of a second at saturation and dropped most spans).
pub const BSP_MAX_QUEUE_SIZE: usize = 32_768;
/// Spans per export request unless `OTEL_BSP_MAX_EXPORT_BATCH_SIZE` is set (SDK default 512):
/// fewer, larger requests cost the export thread less per span (4096 spans stay well under
/// the 4 MiB gRPC message limit of collectors).
pub const BSP_MAX_EXPORT_BATCH_SIZE: usize = 4_096;
/// Longest wait before a partial batch is sent unless `OTEL_BSP_SCHEDULE_DELAY` is set (SDK
/// default 5 s); a full batch is sent at once either way.
pub const BSP_SCHEDULE_DELAY: Duration = Duration::from_millis(1_000);

/// The span batch configuration: the `OTEL_BSP_*` variables where set, else the `BSP_*`
/// defaults above (a value set in code would override the environment, so only unset
/// variables get one).
fn batch_config() -> BatchConfig {
    let env_set = |k: &str| std::env::var(k).is_ok_and(|v| !v.trim().is_empty());
    let mut b = BatchConfigBuilder::default();
    if !env_set("OTEL_BSP_MAX_QUEUE_SIZE") {
        b = b.with_max_queue_size(BSP_MAX_QUEUE_SIZE);
    }
    if !env_set("OTEL_BSP_MAX_EXPORT_BATCH_SIZE") {
        b = b.with_max_export_batch_size(BSP_MAX_EXPORT_BATCH_SIZE);
    }
    if !env_set("OTEL_BSP_SCHEDULE_DELAY") {
        b = b.with_scheduled_delay(BSP_SCHEDULE_DELAY);
    }
    b.build()
}

/// Default OTLP gRPC endpoint when no `OTEL_EXPORTER_OTLP_*ENDPOINT` variable is set.
pub const DEFAULT_GRPC_ENDPOINT: &str = "http://127.0.0.1:4317";
/// Default OTLP HTTP base when no endpoint variable is set and the protocol is HTTP.
pub const DEFAULT_HTTP_ENDPOINT: &str = "http://127.0.0.1:4318";

/// Telemetry setup failures.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// `OTEL_EXPORTER_OTLP_PROTOCOL` has a value we do not support.
    #[error(
        "OTEL_EXPORTER_OTLP_PROTOCOL={0:?} is not supported: use grpc, http/protobuf or http/json"
    )]
    Protocol(String),
    /// `OTEL_TRACES_SAMPLER_ARG` is not valid for the chosen sampler.
    #[error("{0}")]
    Sampler(String),
    /// The OTLP exporter could not be built (bad endpoint, headers, ...).
    #[error("cannot build the OTLP exporter (check OTEL_EXPORTER_OTLP_ENDPOINT and OTEL_EXPORTER_OTLP_HEADERS): {0}")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
    /// A global `tracing` subscriber was already installed.
    #[error("cannot install the log subscriber: {0}")]
    Subscriber(#[from] tracing_subscriber::util::TryInitError),
}

/// Options for [`init`].
#[derive(Debug, Clone)]
pub struct TelemetryOptions {
    /// The services this process runs.
    pub services: Vec<Service>,
    /// Emit JSON log lines.
    pub log_json: bool,
    /// Export traces and metrics over OTLP (false when `OTEL_SDK_DISABLED=true`).
    pub export: bool,
}

impl TelemetryOptions {
    /// Options from the environment: `LOG_FORMAT=json`, `OTEL_SDK_DISABLED`.
    pub fn from_env(services: Vec<Service>) -> Self {
        TelemetryOptions {
            services,
            log_json: std::env::var("LOG_FORMAT").is_ok_and(|v| v.eq_ignore_ascii_case("json")),
            export: !sdk_disabled(),
        }
    }
}

/// True when `OTEL_SDK_DISABLED` is `true` (case-insensitive).
pub fn sdk_disabled() -> bool {
    std::env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v.trim().eq_ignore_ascii_case("true"))
}

/// The installed telemetry; call [`Telemetry::shutdown`] to flush before exit.
#[derive(Debug)]
pub struct Telemetry {
    tracer_provider: Option<SdkTracerProvider>,
    meter_providers: Vec<(Service, SdkMeterProvider)>,
}

impl Telemetry {
    /// The meter of `service` (a meter of a reader-less provider when export is off).
    pub fn meter(&self, service: Service) -> Meter {
        self.meter_providers
            .iter()
            .find(|(s, _)| *s == service)
            .map(|(_, p)| p.meter("demo-app"))
            .unwrap_or_else(|| opentelemetry::global::meter("demo-app"))
    }

    /// True when traces and metrics are exported.
    pub fn exporting(&self) -> bool {
        self.tracer_provider.is_some()
    }

    /// Flushes and stops every provider (blocking; run it off the async workers).
    ///
    /// # Errors
    /// The first provider error; the others are still shut down.
    pub fn shutdown(self) -> OTelSdkResult {
        let mut first = Ok(());
        if let Some(tp) = self.tracer_provider {
            if let Err(e) = tp.shutdown() {
                first = Err(e);
            }
        }
        for (_, mp) in self.meter_providers {
            if let Err(e) = mp.shutdown() {
                if first.is_ok() {
                    first = Err(e);
                }
            }
        }
        first
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Transport {
    Grpc,
    Http(Protocol),
}

fn transport_from_env() -> Result<Transport, TelemetryError> {
    match std::env::var("OTEL_EXPORTER_OTLP_PROTOCOL") {
        Err(_) => Ok(Transport::Grpc),
        Ok(v) => match v.trim().to_ascii_lowercase().as_str() {
            "" | "grpc" => Ok(Transport::Grpc),
            "http/protobuf" => Ok(Transport::Http(Protocol::HttpBinary)),
            "http/json" => Ok(Transport::Http(Protocol::HttpJson)),
            _ => Err(TelemetryError::Protocol(v)),
        },
    }
}

/// The endpoint to set programmatically, only when the environment names none (a programmatic
/// endpoint would override the environment).
fn default_endpoint(transport: Transport, signal: &str) -> Option<String> {
    let env_set = |k: &str| std::env::var(k).is_ok_and(|v| !v.trim().is_empty());
    let signal_var = format!(
        "OTEL_EXPORTER_OTLP_{}_ENDPOINT",
        signal.to_ascii_uppercase()
    );
    if env_set("OTEL_EXPORTER_OTLP_ENDPOINT") || env_set(&signal_var) {
        return None;
    }
    Some(match transport {
        Transport::Grpc => DEFAULT_GRPC_ENDPOINT.to_string(),
        Transport::Http(_) => format!("{DEFAULT_HTTP_ENDPOINT}/v1/{signal}"),
    })
}

fn span_exporter(transport: Transport) -> Result<opentelemetry_otlp::SpanExporter, TelemetryError> {
    let endpoint = default_endpoint(transport, "traces");
    let exporter = match transport {
        Transport::Grpc => {
            let b = opentelemetry_otlp::SpanExporter::builder().with_tonic();
            match endpoint {
                Some(e) => b.with_endpoint(e).build()?,
                None => b.build()?,
            }
        }
        Transport::Http(p) => {
            let b = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_protocol(p);
            match endpoint {
                Some(e) => b.with_endpoint(e).build()?,
                None => b.build()?,
            }
        }
    };
    Ok(exporter)
}

fn metric_exporter(
    transport: Transport,
) -> Result<opentelemetry_otlp::MetricExporter, TelemetryError> {
    let endpoint = default_endpoint(transport, "metrics");
    let exporter = match transport {
        Transport::Grpc => {
            let b = opentelemetry_otlp::MetricExporter::builder().with_tonic();
            match endpoint {
                Some(e) => b.with_endpoint(e).build()?,
                None => b.build()?,
            }
        }
        Transport::Http(p) => {
            let b = opentelemetry_otlp::MetricExporter::builder()
                .with_http()
                .with_protocol(p);
            match endpoint {
                Some(e) => b.with_endpoint(e).build()?,
                None => b.build()?,
            }
        }
    };
    Ok(exporter)
}

/// The resource of `service`: `OTEL_RESOURCE_ATTRIBUTES`, then `service.name` (from
/// `OTEL_SERVICE_NAME` only when the process runs a single service), `service.namespace=demo`,
/// `service.instance.id` (host and pid).
pub fn resource_for(service: Service, single: bool) -> Resource {
    let name = match std::env::var("OTEL_SERVICE_NAME") {
        Ok(n) if single && !n.trim().is_empty() => n,
        _ => service.service_name().to_string(),
    };
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "localhost".into());
    Resource::builder()
        .with_service_name(name)
        .with_attributes([
            KeyValue::new("service.namespace", "demo"),
            KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
            KeyValue::new(
                "service.instance.id",
                format!("{host}-{}-{}", std::process::id(), service.service_name()),
            ),
        ])
        .build()
}

/// A span exporter that sends each span to the exporter of its service (by the
/// [`SERVICE_FIELD`] attribute, removed on the way; spans without it go to the first route).
/// The `trace_id` attribute (a copy of the trace id kept for log lines) is removed as well.
#[derive(Debug)]
pub struct ServiceRouter<E> {
    routes: Vec<(Service, E)>,
}

impl<E: SpanExporter> ServiceRouter<E> {
    /// Routes to `routes`; each exporter must already carry its service's resource.
    pub fn new(routes: Vec<(Service, E)>) -> Self {
        ServiceRouter { routes }
    }

    fn partition(&self, batch: Vec<SpanData>) -> Vec<Vec<SpanData>> {
        let mut parts: Vec<Vec<SpanData>> = self.routes.iter().map(|_| Vec::new()).collect();
        for mut span in batch {
            let mut idx = 0;
            if let Some(pos) = span
                .attributes
                .iter()
                .position(|kv| kv.key.as_str() == SERVICE_FIELD)
            {
                let kv = span.attributes.swap_remove(pos);
                if let Value::String(name) = &kv.value {
                    if let Some(i) = Service::from_service_name(name.as_str())
                        .and_then(|s| self.routes.iter().position(|(r, _)| *r == s))
                    {
                        idx = i;
                    }
                }
            }
            // The log-correlation field duplicates the span's own trace id.
            span.attributes.retain(|kv| kv.key.as_str() != "trace_id");
            if let Some(part) = parts.get_mut(idx) {
                part.push(span);
            }
        }
        parts
    }
}

impl<E: SpanExporter> SpanExporter for ServiceRouter<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let mut result = Ok(());
        for (part, (_, exporter)) in self.partition(batch).into_iter().zip(&self.routes) {
            if part.is_empty() {
                continue;
            }
            if let Err(e) = exporter.export(part).await {
                result = Err(e);
            }
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        let mut result = Ok(());
        for (_, e) in &self.routes {
            if let Err(err) = e.shutdown_with_timeout(timeout) {
                result = Err(err);
            }
        }
        result
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.routes.iter().try_for_each(|(_, e)| e.force_flush())
    }

    fn set_resource(&mut self, _resource: &Resource) {
        // Each route keeps the resource of its own service.
    }
}

/// The OpenTelemetry layer's filter: [`otel_filter`] and, when children follow their parent's
/// sampling decision, nothing inside a dropped trace ([`inside_sampled_or_no_span`]).
fn otel_layer_filter<S>(follows: bool) -> impl tracing_subscriber::layer::Filter<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    use tracing_subscriber::filter::{dynamic_filter_fn, FilterExt};
    // A dynamic filter: its answer depends on the moment, so tracing asks it for every span
    // and event (a `filter_fn` answer is cached per call site on first use).
    otel_filter().and(dynamic_filter_fn(move |_, _| {
        !follows || inside_sampled_or_no_span()
    }))
}

/// Installs the global log subscriber, the W3C trace-context propagator and, unless export is
/// off, the OTLP trace and metric pipelines. Must run inside a Tokio runtime (the gRPC
/// exporter needs one).
///
/// # Errors
/// [`TelemetryError`] for a bad protocol/endpoint or a second installation.
pub fn init(opts: &TelemetryOptions) -> Result<Telemetry, TelemetryError> {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let single = opts.services.len() == 1;

    let mut telemetry = Telemetry {
        tracer_provider: None,
        meter_providers: Vec::new(),
    };
    let mut otel_layer = None;
    if opts.export {
        let transport = transport_from_env()?;
        // The exporters run in the SDK's own threads; the HTTP client needs the runtime's
        // reactor there (see `otlp_runtime`).
        let handle = tokio::runtime::Handle::current();
        let mut routes = Vec::new();
        for &s in &opts.services {
            let resource = resource_for(s, single);
            let mut exporter = span_exporter(transport)?;
            exporter.set_resource(&resource);
            routes.push((s, OnRuntime::new(exporter, handle.clone())));
            let mp = SdkMeterProvider::builder()
                .with_resource(resource)
                .with_periodic_exporter(OnRuntime::new(metric_exporter(transport)?, handle.clone()))
                .build();
            telemetry.meter_providers.push((s, mp));
        }
        let bsp = BatchSpanProcessor::builder(ServiceRouter::new(routes))
            .with_batch_config(batch_config())
            .build();
        let mut builder = SdkTracerProvider::builder().with_span_processor(bsp);
        let sampler_env = std::env::var("OTEL_TRACES_SAMPLER").ok();
        let sampler = crate::sampler::from_env(
            sampler_env.as_deref(),
            std::env::var("OTEL_TRACES_SAMPLER_ARG").ok().as_deref(),
        )
        .map_err(TelemetryError::Sampler)?;
        if let Some(sampler) = sampler {
            builder = builder.with_sampler(sampler);
        }
        let tp = builder.build();
        // The HTTP server and client spans are made with this provider directly.
        opentelemetry::global::set_tracer_provider(tp.clone());
        let tracer = tp.tracer("demo-app");
        let follows = sampler_follows_parent(sampler_env.as_deref());
        // A second `init` in one process fails below (the subscriber is global), so the
        // first tracer is the one.
        let _ = TRACER.set(ExportingTracer {
            tracer: tracer.clone(),
            children_follow_parent: follows,
        });
        otel_layer = Some(
            tracing_opentelemetry::layer()
                .with_tracer(tracer)
                .with_threads(false)
                .with_tracked_inactivity(false)
                .with_target(false)
                // code.file.path / code.module.name / code.line.number on every span and event
                // only make each span bigger to encode and send.
                .with_location(false)
                // Parents come from the tracing span tree; attaching the OTel context on every
                // poll (enter/exit) costs a thread-local push per poll and buys nothing here.
                .with_context_activation(false)
                .with_filter(otel_layer_filter(follows)),
        );
        telemetry.tracer_provider = Some(tp);
    } else {
        for &s in &opts.services {
            telemetry
                .meter_providers
                .push((s, SdkMeterProvider::builder().build()));
        }
    }

    let log_filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG_FILTER));
    let fmt_layer: Box<dyn Layer<Registry> + Send + Sync> = if opts.log_json {
        tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .with_filter(log_filter)
            .boxed()
    } else {
        tracing_subscriber::fmt::layer()
            .with_filter(log_filter)
            .boxed()
    };
    tracing_subscriber::registry()
        .with(fmt_layer)
        .with(otel_layer)
        .try_init()?;
    Ok(telemetry)
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::{SpanContext, SpanKind, Status, TraceFlags, TraceState};
    use opentelemetry::InstrumentationScope;
    use opentelemetry_sdk::error::OTelSdkError;
    use opentelemetry_sdk::trace::{SpanEvents, SpanLinks};
    use std::sync::{Arc, Mutex};
    use std::time::SystemTime;

    #[derive(Debug, Clone, Default)]
    struct Capture(Arc<Mutex<Vec<SpanData>>>);

    impl SpanExporter for Capture {
        async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
            self.0
                .lock()
                .map_err(|e| OTelSdkError::InternalFailure(e.to_string()))?
                .extend(batch);
            Ok(())
        }
    }

    fn span(service: Option<&'static str>) -> SpanData {
        let mut attributes = vec![KeyValue::new("http.route", "/x")];
        if let Some(s) = service {
            attributes.push(KeyValue::new(SERVICE_FIELD, s));
        }
        SpanData {
            span_context: SpanContext::new(
                opentelemetry::trace::TraceId::from(1u128),
                opentelemetry::trace::SpanId::from(1u64),
                TraceFlags::SAMPLED,
                false,
                TraceState::default(),
            ),
            parent_span_id: opentelemetry::trace::SpanId::INVALID,
            parent_span_is_remote: false,
            span_kind: SpanKind::Server,
            name: "s".into(),
            start_time: SystemTime::now(),
            end_time: SystemTime::now(),
            attributes,
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status: Status::Unset,
            instrumentation_scope: InstrumentationScope::builder("t").build(),
        }
    }

    #[test]
    fn parent_based_samplers_are_recognised() {
        for v in [
            None,
            Some(""),
            Some(" parentbased_always_on"),
            Some(crate::sampler::NAME),
        ] {
            assert!(sampler_follows_parent(v), "{v:?}");
        }
        for v in ["always_on", "always_off", "traceidratio"] {
            assert!(!sampler_follows_parent(Some(v)), "{v}");
        }
    }

    /// Counts the spans and events a layer is given.
    #[derive(Clone, Default)]
    struct Seen(Arc<Mutex<(usize, usize)>>);

    impl<S: tracing::Subscriber> Layer<S> for Seen {
        fn on_new_span(
            &self,
            _: &tracing::span::Attributes<'_>,
            _: &tracing::span::Id,
            _: tracing_subscriber::layer::Context<'_, S>,
        ) {
            self.0.lock().unwrap().0 += 1;
        }
        fn on_event(&self, _: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
            self.0.lock().unwrap().1 += 1;
        }
    }

    /// For each context of `contexts` in turn (`None`: no current span), one span and one event
    /// from the same call sites while it is current; returns what a layer behind
    /// [`otel_layer_filter`] saw of each: (spans, events).
    fn seen_by_otel_layer(
        follows: bool,
        contexts: &[Option<opentelemetry::Context>],
    ) -> Vec<(usize, usize)> {
        let seen = Seen::default();
        let subscriber = tracing_subscriber::registry()
            .with(seen.clone().with_filter(otel_layer_filter(follows)));
        tracing::subscriber::with_default(subscriber, || {
            contexts
                .iter()
                .map(|cx| {
                    let before = *seen.0.lock().unwrap();
                    let _attached = cx.clone().map(opentelemetry::Context::attach);
                    let span = tracing::info_span!("business.step");
                    span.in_scope(|| tracing::debug!("step event"));
                    let after = *seen.0.lock().unwrap();
                    (after.0 - before.0, after.1 - before.1)
                })
                .collect()
        })
    }

    fn remote_parent(flags: TraceFlags) -> opentelemetry::Context {
        use opentelemetry::trace::TraceContextExt as _;
        opentelemetry::Context::new().with_remote_span_context(SpanContext::new(
            opentelemetry::trace::TraceId::from(7u128),
            opentelemetry::trace::SpanId::from(7u64),
            flags,
            true,
            TraceState::default(),
        ))
    }

    #[test]
    fn otel_layer_skips_spans_and_events_inside_a_dropped_trace() {
        let dropped = Some(remote_parent(TraceFlags::default()));
        let sampled = Some(remote_parent(TraceFlags::SAMPLED));
        // The decision is taken per span, not cached per call site: the first use (sampled
        // here) must not decide for the later ones. No span at all means a new root, which
        // the sampler decides on.
        let contexts = [
            sampled.clone(),
            dropped.clone(),
            None,
            dropped.clone(),
            sampled,
        ];
        assert_eq!(
            seen_by_otel_layer(true, &contexts),
            [(1, 1), (0, 0), (1, 1), (0, 0), (1, 1)]
        );
        // A sampler that does not follow the parent decides for each span itself.
        assert_eq!(seen_by_otel_layer(false, &[dropped]), [(1, 1)]);
    }

    #[tokio::test]
    async fn router_routes_by_service_and_strips_the_field() {
        let (front, inv) = (Capture::default(), Capture::default());
        let router = ServiceRouter::new(vec![
            (Service::Frontend, front.clone()),
            (Service::Inventory, inv.clone()),
        ]);
        router
            .export(vec![
                span(Some("demo-inventory")),
                span(None),
                span(Some("demo-frontend")),
                span(Some("demo-payment")),
            ])
            .await
            .unwrap();
        let front = front.0.lock().unwrap();
        let inv = inv.0.lock().unwrap();
        assert_eq!(inv.len(), 1);
        // Unmarked spans and spans of services without a route go to the first route.
        assert_eq!(front.len(), 3);
        for s in front.iter().chain(inv.iter()) {
            assert!(s
                .attributes
                .iter()
                .all(|kv| kv.key.as_str() != SERVICE_FIELD));
            assert_eq!(s.attributes.len(), 1);
        }
    }
}
