//! The `loadbalancing` exporter: routes each trace (or each service) to one of several
//! downstream collectors over OTLP gRPC, so every span of a trace meets in the same collector
//! (tail sampling and the service graph need whole traces).
//!
//! ```yaml
//! exporters:
//!   loadbalancing:
//!     routing_key: traceID          # or service
//!     protocol:
//!       otlp: {tls: {insecure: true}, timeout: 5s}   # our `otlp` exporter's keys, no endpoint
//!     resolver:
//!       static: {hostnames: [gw-1:4317, gw-2:4317]}
//!       # or dns: {hostname: gateway-headless, port: 4317, interval: 5s, timeout: 1s}
//! ```
//! Routing is rendezvous (highest random weight) hashing: each key goes to the endpoint whose
//! hash with the key is highest. So all agents with the same endpoint list route alike, a
//! change of the list moves only the keys of the endpoints added or removed, and the keys of an
//! endpoint that is taken out fall on the remaining ones evenly.
//!
//! Delivery: the exporter sits behind one bounded `sending_queue` with `retry_on_failure` (from
//! `protocol.otlp`, or the same keys at the top level). A batch is split by key; each part goes
//! to its endpoint. When an endpoint fails with a retryable error it is taken out for
//! [`DOWN_FOR`] and its parts are re-routed at once to the next endpoints; parts already
//! delivered are not sent again, and parts that no endpoint took stay queued for the retry.
//! Permanent errors (the downstream rejected the data) drop those parts, counted.
//!
//! Own metrics (upstream's names): `otelcol_loadbalancer_num_backends{exporter}`,
//! `otelcol_loadbalancer_backend_outcome_total{exporter,endpoint,success}`,
//! `otelcol_loadbalancer_num_resolutions_total{exporter,resolver,success}`,
//! `otelcol_loadbalancer_num_backend_updates_total{exporter}`.
//!
//! Tests: `cargo test -p otel-collector exporter::loadbalancing` and
//! `tests/export_loadbalancing.rs` (three downstream collector processes).

use super::otlp::{OtlpExporterConfig, OtlpGrpc};
use super::queue::{Export, QueueConfig};
use super::retry::{ExportError, RetryConfig};
use crate::config::{duration, ComponentConfigError};
use crate::pipeline::Telemetry;
use crate::telemetry::{Counter, Gauge, SelfMetrics};
use futures::future::BoxFuture;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value::Value as AnyInner, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::hash::Hasher as _;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How long an endpoint that failed is left out of routing before it is tried again.
pub const DOWN_FOR: Duration = Duration::from_secs(5);
/// The port used for a static hostname without one (OTLP gRPC).
const DEFAULT_PORT: u16 = 4317;

/// What decides the endpoint of an item.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
pub enum RoutingKey {
    /// The trace id (spans; log records by their trace id; metrics fall back to the service).
    #[default]
    #[serde(rename = "traceID")]
    TraceId,
    /// The resource's `service.name`.
    #[serde(rename = "service")]
    Service,
}

/// `protocol`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ProtocolConfig {
    /// The `otlp` exporter's settings without `endpoint` (filled per downstream).
    #[serde(default)]
    pub otlp: serde_yaml::Value,
}

/// `resolver.static`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StaticResolver {
    /// `host[:port]` of every downstream (port 4317 when absent).
    pub hostnames: Vec<String>,
}

/// `resolver.dns`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DnsResolver {
    /// The name whose A/AAAA records are the downstreams (a headless Service).
    pub hostname: String,
    /// Port of every downstream (default 4317).
    #[serde(default = "default_port")]
    pub port: u16,
    /// How often the name is resolved again (default 5s).
    #[serde(default = "default_interval", with = "duration")]
    pub interval: Duration,
    /// Deadline of one resolution (default 1s).
    #[serde(default = "default_dns_timeout", with = "duration")]
    pub timeout: Duration,
}

fn default_port() -> u16 {
    DEFAULT_PORT
}
fn default_interval() -> Duration {
    Duration::from_secs(5)
}
fn default_dns_timeout() -> Duration {
    Duration::from_secs(1)
}

/// `resolver`: exactly one of `static` and `dns`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ResolverConfig {
    /// A fixed list.
    #[serde(default, rename = "static")]
    pub static_: Option<StaticResolver>,
    /// A DNS name resolved every `interval`.
    #[serde(default)]
    pub dns: Option<DnsResolver>,
}

/// `exporters.loadbalancing`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LoadBalancingConfig {
    /// `traceID` (default) or `service`.
    #[serde(default)]
    pub routing_key: RoutingKey,
    /// How to talk to each downstream.
    pub protocol: ProtocolConfig,
    /// Where the downstreams are.
    pub resolver: ResolverConfig,
    /// Overrides `protocol.otlp.sending_queue` (the one queue in front of all endpoints).
    #[serde(default)]
    pub sending_queue: Option<QueueConfig>,
    /// Overrides `protocol.otlp.retry_on_failure`.
    #[serde(default)]
    pub retry_on_failure: Option<RetryConfig>,
}

impl LoadBalancingConfig {
    /// The `otlp` exporter config for one endpoint.
    ///
    /// # Errors
    /// A `protocol.otlp` key the `otlp` exporter does not take (path under `protocol.otlp`).
    pub fn otlp_for(&self, endpoint: &str) -> Result<OtlpExporterConfig, ComponentConfigError> {
        let mut m = match &self.protocol.otlp {
            serde_yaml::Value::Mapping(m) => m.clone(),
            serde_yaml::Value::Null => serde_yaml::Mapping::new(),
            _ => {
                return Err(ComponentConfigError::new(
                    "protocol.otlp",
                    "must be a mapping of the otlp exporter's settings",
                ))
            }
        };
        if m.contains_key("endpoint") {
            return Err(ComponentConfigError::new(
                "protocol.otlp.endpoint",
                "is set per downstream from the resolver; remove it",
            ));
        }
        m.insert("endpoint".into(), endpoint.into());
        super::parse_as(serde_yaml::Value::Mapping(m)).map_err(under_otlp)
    }

    /// The queue and retry policy in force.
    ///
    /// # Errors
    /// As [`Self::otlp_for`].
    pub fn queue_and_retry(&self) -> Result<(QueueConfig, RetryConfig), ComponentConfigError> {
        let o = self.otlp_for("placeholder:4317")?;
        Ok((
            self.sending_queue.clone().unwrap_or(o.sending_queue),
            self.retry_on_failure.clone().unwrap_or(o.retry_on_failure),
        ))
    }

    /// Checks what serde cannot, naming the key.
    ///
    /// # Errors
    /// Resolver not exactly one of `static`/`dns`, empty or malformed hostnames, bad
    /// `protocol.otlp`.
    pub fn validate(&self) -> Result<(), ComponentConfigError> {
        let o = self.otlp_for("placeholder:4317")?;
        o.validate().map_err(under_otlp)?;
        match (&self.resolver.static_, &self.resolver.dns) {
            (Some(s), None) => {
                if s.hostnames.is_empty() {
                    return Err(ComponentConfigError::new(
                        "resolver.static.hostnames",
                        "list at least one host[:port]",
                    ));
                }
                for h in &s.hostnames {
                    self.otlp_for(&static_endpoint(h))
                        .and_then(|c| c.validate())
                        .map_err(|e| {
                            ComponentConfigError::new(
                                "resolver.static.hostnames",
                                format!("{h:?}: {}", e.message),
                            )
                        })?;
                }
            }
            (None, Some(d)) => {
                if d.hostname.is_empty() {
                    return Err(ComponentConfigError::new(
                        "resolver.dns.hostname",
                        "must name the DNS record of the downstreams",
                    ));
                }
                if d.interval.is_zero() || d.timeout.is_zero() {
                    return Err(ComponentConfigError::new(
                        "resolver.dns",
                        "interval and timeout must be greater than 0",
                    ));
                }
            }
            _ => {
                return Err(ComponentConfigError::new(
                    "resolver",
                    "give exactly one of `static` (hostnames) and `dns` (hostname, port)",
                ))
            }
        }
        let (q, r) = self.queue_and_retry()?;
        q.validate()?;
        r.validate()
    }
}

/// The error of a `protocol.otlp` key, with its full path.
fn under_otlp(e: ComponentConfigError) -> ComponentConfigError {
    ComponentConfigError::new(e.prefixed("protocol.otlp"), e.message)
}

/// `host` → `host:4317`; `host:port` unchanged.
fn static_endpoint(h: &str) -> String {
    let has_port = h.rsplit_once(':').is_some_and(|(host, p)| {
        !host.is_empty() && !host.ends_with(':') && p.parse::<u16>().is_ok()
    });
    if has_port {
        h.to_string()
    } else {
        format!("{h}:{DEFAULT_PORT}")
    }
}

/// FNV-1a 64 of `bytes`.
fn fnv(bytes: &[u8]) -> u64 {
    let mut h = fnv::FnvHasher::default();
    h.write(bytes);
    h.finish()
}

/// A 64-bit finaliser (splitmix64) so that rendezvous scores are evenly spread.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Rendezvous score of endpoint hash `e` for key hash `k`.
pub fn score(e: u64, k: u64) -> u64 {
    mix(e ^ mix(k))
}

/// One downstream.
struct Backend {
    endpoint: String,
    hash: u64,
    client: OtlpGrpc,
    down_until: Mutex<Option<Instant>>,
    ok: Counter,
    failed: Counter,
}

impl Backend {
    fn is_up(&self, now: Instant) -> bool {
        self.down_until
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_none_or(|t| now >= t)
    }

    fn take_out(&self, now: Instant) {
        *self.down_until.lock().unwrap_or_else(|e| e.into_inner()) = Some(now + DOWN_FOR);
    }
}

/// A batch split by routing key: the parts not yet delivered.
pub struct Parts {
    remaining: Mutex<Vec<(u64, Telemetry)>>,
}

impl Parts {
    fn take(&self) -> Vec<(u64, Telemetry)> {
        std::mem::take(&mut *self.remaining.lock().unwrap_or_else(|e| e.into_inner()))
    }
    fn put_back(&self, parts: Vec<(u64, Telemetry)>) {
        self.remaining
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(parts);
    }
}

/// The routing and delivery side of the exporter (what the queue drives).
pub struct LoadBalancer {
    id: String,
    config: LoadBalancingConfig,
    backends: RwLock<Arc<Vec<Arc<Backend>>>>,
    num_backends: Gauge,
    updates: Counter,
}

impl LoadBalancer {
    /// Builds it for exporter `id` with the static hostnames, if any (DNS fills them later).
    ///
    /// # Errors
    /// A `protocol.otlp` that the `otlp` exporter cannot build (unreadable TLS files).
    pub fn new(id: &str, config: &LoadBalancingConfig) -> Result<Arc<Self>, ComponentConfigError> {
        let m = SelfMetrics::global();
        let lb = Arc::new(LoadBalancer {
            id: id.to_string(),
            config: config.clone(),
            backends: RwLock::new(Arc::new(Vec::new())),
            num_backends: m.gauge(
                "otelcol_loadbalancer_num_backends",
                "Downstream endpoints the load balancer routes to.",
                vec![("exporter", id.to_string())],
            ),
            updates: m.counter(
                "otelcol_loadbalancer_num_backend_updates_total",
                "Changes of the endpoint list.",
                vec![("exporter", id.to_string())],
            ),
        });
        if let Some(s) = &config.resolver.static_ {
            lb.set_endpoints(s.hostnames.iter().map(|h| static_endpoint(h)).collect())?;
        }
        Ok(lb)
    }

    /// Replaces the endpoint list (kept: the clients of endpoints still listed).
    ///
    /// # Errors
    /// As [`Self::new`].
    pub fn set_endpoints(&self, mut endpoints: Vec<String>) -> Result<(), ComponentConfigError> {
        endpoints.sort();
        endpoints.dedup();
        let old = self.snapshot();
        if old.iter().map(|b| &b.endpoint).eq(endpoints.iter()) {
            return Ok(());
        }
        let m = SelfMetrics::global();
        let mut next = Vec::with_capacity(endpoints.len());
        for e in endpoints {
            if let Some(b) = old.iter().find(|b| b.endpoint == e) {
                next.push(Arc::clone(b));
                continue;
            }
            let client = OtlpGrpc::new(&self.config.otlp_for(&e)?)?;
            let outcome = |success: &str| {
                m.counter(
                    "otelcol_loadbalancer_backend_outcome_total",
                    "Export attempts per downstream endpoint (success=true|false).",
                    vec![
                        ("exporter", self.id.clone()),
                        ("endpoint", e.clone()),
                        ("success", success.to_string()),
                    ],
                )
            };
            next.push(Arc::new(Backend {
                hash: fnv(e.as_bytes()),
                ok: outcome("true"),
                failed: outcome("false"),
                endpoint: e,
                client,
                down_until: Mutex::new(None),
            }));
        }
        tracing::info!(exporter = %self.id, endpoints = ?next.iter().map(|b| &b.endpoint).collect::<Vec<_>>(), "load balancer endpoints");
        self.num_backends.set(next.len() as i64);
        self.updates.add(1);
        *self.backends.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(next);
        Ok(())
    }

    fn snapshot(&self) -> Arc<Vec<Arc<Backend>>> {
        Arc::clone(&self.backends.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// The endpoints in use, sorted.
    pub fn endpoints(&self) -> Vec<String> {
        self.snapshot().iter().map(|b| b.endpoint.clone()).collect()
    }

    /// Resolves `resolver.dns` every interval until `cancel` (nothing to do for `static`).
    pub async fn run_resolver(self: Arc<Self>, cancel: CancellationToken) {
        let Some(d) = self.config.resolver.dns.clone() else {
            return;
        };
        let m = SelfMetrics::global();
        let outcome = |success: &str| {
            m.counter(
                "otelcol_loadbalancer_num_resolutions_total",
                "DNS resolutions of the downstream list (success=true|false).",
                vec![
                    ("exporter", self.id.clone()),
                    ("resolver", "dns".to_string()),
                    ("success", success.to_string()),
                ],
            )
        };
        let (ok, failed) = (outcome("true"), outcome("false"));
        let mut every = tokio::time::interval(d.interval);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = every.tick() => {}
            }
            let lookup = tokio::net::lookup_host((d.hostname.as_str(), d.port));
            match tokio::time::timeout(d.timeout, lookup).await {
                Ok(Ok(addrs)) => {
                    ok.add(1);
                    let eps: Vec<String> = addrs.map(|a| a.to_string()).collect();
                    if eps.is_empty() {
                        continue; // keep the last known list
                    }
                    if let Err(e) = self.set_endpoints(eps) {
                        tracing::warn!(exporter = %self.id, error = %e, "cannot use resolved endpoints");
                    }
                }
                Ok(Err(e)) => {
                    failed.add(1);
                    tracing::warn!(exporter = %self.id, host = %d.hostname, error = %e, "DNS resolution failed; keeping the last endpoints");
                }
                Err(_) => {
                    failed.add(1);
                    tracing::warn!(exporter = %self.id, host = %d.hostname, "DNS resolution timed out; keeping the last endpoints");
                }
            }
        }
    }

    /// Index of the endpoint for key hash `k` among those `up` (rendezvous).
    fn route(backends: &[Arc<Backend>], up: &[bool], k: u64) -> Option<usize> {
        backends
            .iter()
            .enumerate()
            .filter(|(i, _)| up[*i])
            .max_by_key(|(_, b)| score(b.hash, k))
            .map(|(i, _)| i)
    }

    /// One round: every part to its endpoint; returns the parts that failed retryably, the
    /// permanent failures, and takes failing endpoints out.
    async fn round(
        &self,
        parts: Vec<(u64, Telemetry)>,
    ) -> (Vec<(u64, Telemetry)>, Option<ExportError>) {
        let backends = self.snapshot();
        let now = Instant::now();
        let up: Vec<bool> = backends.iter().map(|b| b.is_up(now)).collect();
        let mut per: BTreeMap<usize, Vec<(u64, Telemetry)>> = BTreeMap::new();
        let mut unrouted = Vec::new();
        for (k, t) in parts {
            match Self::route(&backends, &up, k) {
                Some(i) => per.entry(i).or_default().push((k, t)),
                None => unrouted.push((k, t)),
            }
        }
        if per.is_empty() {
            // Every endpoint is out (or none is known yet): the caller keeps the parts.
            return (unrouted, None);
        }
        let sends = per.into_iter().map(|(i, group)| {
            let b = Arc::clone(&backends[i]);
            async move {
                let merged = merge(group.iter().map(|(_, t)| t.clone()));
                let n = merged.item_count();
                let r = match b.client.prepare(merged) {
                    Ok(req) => b.client.send(&req).await,
                    Err(e) => Err(e),
                };
                (b, group, n, r)
            }
        });
        let mut failed = unrouted;
        let mut permanent = None;
        for (b, group, _n, r) in futures::future::join_all(sends).await {
            match r {
                Ok(()) => b.ok.add(1),
                Err(e) if e.retryable => {
                    b.failed.add(1);
                    b.take_out(Instant::now());
                    tracing::warn!(exporter = %self.id, endpoint = %b.endpoint, error = %e, "downstream failed; taking it out and re-routing its share");
                    failed.extend(group);
                }
                Err(e) => {
                    b.failed.add(1);
                    permanent = Some(e);
                }
            }
        }
        (failed, permanent)
    }
}

impl Export for LoadBalancer {
    type Prepared = Parts;

    fn prepare(&self, data: Telemetry) -> Result<Parts, ExportError> {
        Ok(Parts {
            remaining: Mutex::new(split(data, self.config.routing_key)),
        })
    }

    fn send<'a>(&'a self, parts: &'a Parts) -> BoxFuture<'a, Result<(), ExportError>> {
        Box::pin(async move {
            let mut todo = parts.take();
            let mut permanent = None;
            // Each round delivers or takes at least one endpoint out: at most n+1 rounds.
            let rounds = self.snapshot().len() + 1;
            for _ in 0..rounds {
                if todo.is_empty() {
                    break;
                }
                let before = todo.len();
                let (left, p) = self.round(todo).await;
                permanent = permanent.or(p);
                let stuck = left.len() == before
                    && self.snapshot().iter().all(|b| !b.is_up(Instant::now()));
                todo = left;
                if stuck {
                    break;
                }
            }
            if !todo.is_empty() {
                let n: usize = todo.iter().map(|(_, t)| t.item_count()).sum();
                parts.put_back(todo);
                return Err(ExportError::retryable(
                    format!(
                        "{n} items found no working downstream endpoint ({} known); kept for the retry",
                        self.snapshot().len()
                    ),
                    None,
                ));
            }
            match permanent {
                Some(e) => Err(e),
                None => Ok(()),
            }
        })
    }
}

/// Concatenates batches of one signal.
fn merge(parts: impl Iterator<Item = Telemetry>) -> Telemetry {
    let mut out: Option<Telemetry> = None;
    for p in parts {
        match (&mut out, p) {
            (None, p) => out = Some(p),
            (Some(Telemetry::Traces(a)), Telemetry::Traces(b)) => {
                a.resource_spans.extend(b.resource_spans)
            }
            (Some(Telemetry::Metrics(a)), Telemetry::Metrics(b)) => {
                a.resource_metrics.extend(b.resource_metrics)
            }
            (Some(Telemetry::Logs(a)), Telemetry::Logs(b)) => {
                a.resource_logs.extend(b.resource_logs)
            }
            // A batch holds one signal, so its parts do too.
            (Some(_), _) => {}
        }
    }
    out.unwrap_or(Telemetry::Traces(ExportTraceServiceRequest::default()))
}

fn service_hash(resource: &Option<Resource>) -> u64 {
    let name = resource
        .as_ref()
        .and_then(|r| find_str(&r.attributes, "service.name"))
        .unwrap_or("");
    fnv(name.as_bytes())
}

fn find_str<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a str> {
    attrs.iter().find(|kv| kv.key == key).and_then(|kv| {
        match kv.value.as_ref()?.value.as_ref()? {
            AnyInner::StringValue(s) => Some(s.as_str()),
            _ => None,
        }
    })
}

/// Splits a batch into (key hash, part) by `key`.
pub fn split(data: Telemetry, key: RoutingKey) -> Vec<(u64, Telemetry)> {
    match (data, key) {
        (Telemetry::Traces(req), RoutingKey::TraceId) => {
            crate::processor::tail_sampling::by_trace(req)
                .into_iter()
                .map(|(id, (resource_spans, _))| {
                    (
                        fnv(&id),
                        Telemetry::Traces(ExportTraceServiceRequest { resource_spans }),
                    )
                })
                .collect()
        }
        (Telemetry::Traces(req), RoutingKey::Service) => group(
            req.resource_spans,
            |rs| service_hash(&rs.resource),
            |v| Telemetry::Traces(ExportTraceServiceRequest { resource_spans: v }),
        ),
        (Telemetry::Logs(req), RoutingKey::TraceId) => split_logs_by_trace(req),
        (Telemetry::Logs(req), RoutingKey::Service) => group(
            req.resource_logs,
            |rl| service_hash(&rl.resource),
            |v| Telemetry::Logs(ExportLogsServiceRequest { resource_logs: v }),
        ),
        (Telemetry::Metrics(req), _) => group(
            req.resource_metrics,
            |rm| service_hash(&rm.resource),
            |v| {
                Telemetry::Metrics(ExportMetricsServiceRequest {
                    resource_metrics: v,
                })
            },
        ),
    }
}

/// Groups resource-level entries by `key`.
fn group<R>(
    items: Vec<R>,
    key: impl Fn(&R) -> u64,
    wrap: impl Fn(Vec<R>) -> Telemetry,
) -> Vec<(u64, Telemetry)> {
    let mut m: HashMap<u64, Vec<R>> = HashMap::new();
    for r in items {
        m.entry(key(&r)).or_default().push(r);
    }
    m.into_iter().map(|(k, v)| (k, wrap(v))).collect()
}

fn split_logs_by_trace(req: ExportLogsServiceRequest) -> Vec<(u64, Telemetry)> {
    let mut out: HashMap<u64, Vec<ResourceLogs>> = HashMap::new();
    for rl in req.resource_logs {
        let mut per: HashMap<u64, Vec<ScopeLogs>> = HashMap::new();
        for sl in rl.scope_logs {
            let mut groups: HashMap<u64, Vec<LogRecord>> = HashMap::new();
            for l in sl.log_records {
                groups.entry(fnv(&l.trace_id)).or_default().push(l);
            }
            for (k, log_records) in groups {
                per.entry(k).or_default().push(ScopeLogs {
                    scope: sl.scope.clone(),
                    log_records,
                    schema_url: sl.schema_url.clone(),
                });
            }
        }
        for (k, scope_logs) in per {
            out.entry(k).or_default().push(ResourceLogs {
                resource: rl.resource.clone(),
                scope_logs,
                schema_url: rl.schema_url.clone(),
            });
        }
    }
    out.into_iter()
        .map(|(k, resource_logs)| {
            (
                k,
                Telemetry::Logs(ExportLogsServiceRequest { resource_logs }),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests;
