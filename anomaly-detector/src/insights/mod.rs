//! Insights: answers about services without writing PromQL — services seen, per-service metric
//! series, summaries over a range (requests, errors, latency, availability, SLO error budget,
//! anomalies), breakdowns by route/status/method/instance — each with its `completeness` and
//! the status of every source it used.
//!
//! **Completeness** is the share of the expected samples that are present: for each step of the
//! range, whether the metric's raw series had at least one sample in the step before it
//! ([`catalogue::presence_query`]). Missing steps are reported as gaps. A source is `ok` (all
//! present), `partial` (with the gaps) or `unavailable` (with the reason, e.g. Prometheus down).
//!
//! `catalogue` holds the PromQL, `range` the parameter checks; the HTTP layer is `api.rs`.
//!
//! Tests: `cargo test -p anomaly-detector insights::` and `tests/insights_api.rs` (a real
//! Prometheus holding known samples).

pub mod catalogue;
pub mod csv;
pub mod live;
pub mod range;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::config::{InsightsConfig, PrometheusConfig, RetryConfig};
use crate::prometheus::{ClientError, InstantSample, PrometheusClient, QueryError, RangeSeries};
use crate::slo::Slo;
use catalogue::{Dimension, Metric, METRICS};
pub use range::{ApiError, Format, Params, TimeRange};

/// Name of the Prometheus source in `sources`.
pub const SOURCE_PROMETHEUS: &str = "prometheus";
/// Name of the anomaly store source in `sources`.
pub const SOURCE_ANOMALIES: &str = "anomaly_store";
/// Name of the SLO file source in `sources`.
pub const SOURCE_SLO: &str = "slo_file";

/// How long the list of services is reused before Prometheus is asked again.
const SERVICES_TTL: Duration = Duration::from_secs(10);
/// How long a cached service list answers "which job is this service" without a refresh.
const RESOLVE_TTL: Duration = Duration::from_secs(300);
/// Resolution (seconds) of the look back over past reports in `/api/v1/services`.
const PAST_RESOLUTION: u64 = 300;
/// Most gaps listed per source (the rest are counted in `completeness` only).
const MAX_GAPS: usize = 100;

/// State of one source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SourceState {
    /// Everything expected is there.
    Ok,
    /// Some samples are missing (see `gaps`).
    Partial,
    /// The source could not be read (see `reason`).
    Unavailable,
}

/// A run of missing steps, `[from, to]` in unix seconds (both are evaluation timestamps).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Gap {
    /// First missing step.
    pub from: i64,
    /// Last missing step.
    pub to: i64,
}

/// Status of one source of an answer.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct SourceStatus {
    /// `ok`, `partial` or `unavailable`.
    pub status: SourceState,
    /// Missing stretches (`partial` only; at most 100 listed).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub gaps: Vec<Gap>,
    /// Why it is unavailable, or what is partial.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl SourceStatus {
    /// All there.
    pub fn ok() -> Self {
        Self {
            status: SourceState::Ok,
            gaps: Vec::new(),
            reason: None,
        }
    }

    /// Could not be read.
    pub fn unavailable(reason: impl Into<String>) -> Self {
        Self {
            status: SourceState::Unavailable,
            gaps: Vec::new(),
            reason: Some(reason.into()),
        }
    }

    /// Some of it is missing.
    pub fn partial(gaps: Vec<Gap>, reason: impl Into<String>) -> Self {
        Self {
            status: SourceState::Partial,
            gaps,
            reason: Some(reason.into()),
        }
    }
}

/// Sources of an answer by name (`prometheus`, `anomaly_store`, `slo_file`).
pub type Sources = BTreeMap<String, SourceStatus>;

/// Presence of samples over a range.
#[derive(Debug, Clone, PartialEq)]
pub struct Coverage {
    /// Share of expected steps present, in [0, 1].
    pub completeness: f64,
    /// Status for `sources`.
    pub status: SourceStatus,
}

/// Coverage of `range` given the timestamps at which data was present.
pub fn coverage(range: &TimeRange, present: &BTreeSet<i64>, what: &str) -> Coverage {
    let expected = range.points();
    let mut gaps: Vec<Gap> = Vec::new();
    let mut missing = 0u64;
    let mut t = range.from;
    while t <= range.to {
        if !present.contains(&t) {
            missing += 1;
            match gaps.last_mut() {
                Some(g) if g.to == t - range.step => g.to = t,
                _ => gaps.push(Gap { from: t, to: t }),
            }
        }
        t += range.step;
    }
    let completeness = (expected - missing) as f64 / expected as f64;
    let status = if missing == 0 {
        SourceStatus::ok()
    } else {
        let n = gaps.len();
        gaps.truncate(MAX_GAPS);
        SourceStatus::partial(
            gaps,
            format!(
                "{missing} of {expected} steps of {}s have no {what} sample ({n} gaps)",
                range.step
            ),
        )
    };
    Coverage {
        completeness,
        status,
    }
}

/// A point of a series; `value` is null where the query had no value.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Point {
    /// Unix seconds.
    pub timestamp: i64,
    /// The value (null: no data, or not a number).
    pub value: Option<f64>,
}

/// min/max/avg/last of a series' values.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, utoipa::ToSchema)]
pub struct Stats {
    /// Smallest value.
    pub min: Option<f64>,
    /// Largest value.
    pub max: Option<f64>,
    /// Mean of the values.
    pub avg: Option<f64>,
    /// Latest value.
    pub last: Option<f64>,
}

impl Stats {
    /// Statistics of the non-null points.
    pub fn of(points: &[Point]) -> Self {
        let vals: Vec<f64> = points.iter().filter_map(|p| p.value).collect();
        if vals.is_empty() {
            return Self::default();
        }
        Self {
            min: vals.iter().copied().reduce(f64::min),
            max: vals.iter().copied().reduce(f64::max),
            avg: Some(vals.iter().sum::<f64>() / vals.len() as f64),
            last: vals.last().copied(),
        }
    }
}

/// One metric over a range.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct MetricSeries {
    /// Metric name (`request_rate`, ...).
    pub metric: String,
    /// Unit of the values.
    pub unit: String,
    /// What it is.
    pub description: String,
    /// Values at every step (null where absent).
    pub points: Vec<Point>,
    /// Statistics of the present values.
    pub stats: Stats,
    /// Share of steps whose raw samples are present.
    pub completeness: f64,
    /// Status of the metric's raw data.
    pub status: SourceStatus,
}

/// `/api/v1/services/{service}/metrics/{metric}`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct MetricAnswer {
    /// Service as asked.
    pub service: String,
    /// Prometheus `job` of the service.
    pub job: String,
    /// Range start (unix seconds).
    pub from: i64,
    /// Range end (unix seconds).
    pub to: i64,
    /// Step (seconds).
    pub step: i64,
    /// The series.
    pub series: MetricSeries,
    /// Share of expected samples present.
    pub completeness: f64,
    /// Per-source status.
    #[schema(value_type = BTreeMap<String, SourceStatus>)]
    pub sources: Sources,
}

/// `/api/v1/services/{service}/metrics`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct MetricsAnswer {
    /// Service as asked.
    pub service: String,
    /// Prometheus `job` of the service.
    pub job: String,
    /// Range start (unix seconds).
    pub from: i64,
    /// Range end (unix seconds).
    pub to: i64,
    /// Step (seconds).
    pub step: i64,
    /// Every supported metric.
    pub metrics: Vec<MetricSeries>,
    /// Share of expected samples present over all metrics.
    pub completeness: f64,
    /// Per-source status.
    #[schema(value_type = BTreeMap<String, SourceStatus>)]
    pub sources: Sources,
}

/// A service seen in Prometheus.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ServiceInfo {
    /// `service.name` (the `job` without its namespace).
    pub name: String,
    /// `service.namespace`, when the job has one.
    pub namespace: Option<String>,
    /// The Prometheus `job` label.
    pub job: String,
    /// Unix seconds of its latest sample (`target_info` or request metrics).
    pub last_report: i64,
    /// Whether the latest sample is recent (within `insights.reporting_window`).
    pub reporting: bool,
    /// Whether it has HTTP request metrics.
    pub has_requests: bool,
}

/// `/api/v1/services`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ServicesAnswer {
    /// Services by name.
    pub services: Vec<ServiceInfo>,
    /// 1 when Prometheus answered, else 0.
    pub completeness: f64,
    /// Per-source status.
    #[schema(value_type = BTreeMap<String, SourceStatus>)]
    pub sources: Sources,
}

/// Latency percentiles in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, utoipa::ToSchema)]
pub struct Percentiles {
    /// Median.
    pub p50: Option<f64>,
    /// 95th percentile.
    pub p95: Option<f64>,
    /// 99th percentile.
    pub p99: Option<f64>,
}

/// An SLO over the range.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SloStatus {
    /// SLO name from the spec.
    pub name: String,
    /// Objective in percent.
    pub objective: f64,
    /// Observed error ratio of the SLI over the range.
    pub error_ratio: Option<f64>,
    /// 1 - error ratio.
    pub compliance: Option<f64>,
    /// Share of the error budget left (1 untouched, 0 spent, negative overspent).
    pub error_budget_remaining: Option<f64>,
}

/// Request figures of a service over a range (the Prometheus part of the summary).
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct RequestTotals {
    /// Requests (Prometheus `increase()` over the range; null when Prometheus is unavailable).
    pub requests: Option<f64>,
    /// Of which 5xx.
    pub errors: Option<f64>,
    /// errors / requests (null without requests).
    pub error_ratio: Option<f64>,
    /// 1 - error ratio.
    pub availability: Option<f64>,
    /// Latency percentiles over the whole range.
    pub latency_seconds: Percentiles,
    /// SLOs of the service from the SLO file.
    pub slos: Vec<SloStatus>,
}

/// A breakdown row.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct BreakdownRow {
    /// The label value (`""` for series without the label).
    pub key: String,
    /// Requests.
    pub requests: f64,
    /// Of which 5xx.
    pub errors: f64,
    /// errors / requests.
    pub error_ratio: Option<f64>,
    /// requests / all requests.
    pub share: Option<f64>,
    /// Latency percentiles of this group.
    pub latency_seconds: Percentiles,
}

/// `/api/v1/services/{service}/breakdown`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Breakdown {
    /// Service as asked.
    pub service: String,
    /// Prometheus `job`.
    pub job: String,
    /// Dimension (`route`, `status_code`, `method`, `instance`).
    pub by: String,
    /// The Prometheus label of the dimension.
    pub label: String,
    /// Range start (unix seconds).
    pub from: i64,
    /// Range end (unix seconds).
    pub to: i64,
    /// Step used for completeness (seconds).
    pub step: i64,
    /// Rows by requests, most first.
    pub rows: Vec<BreakdownRow>,
    /// Sums of the rows (equal to the summary's requests/errors for the same range).
    pub totals: RequestTotals,
    /// Share of expected samples present.
    pub completeness: f64,
    /// Per-source status.
    #[schema(value_type = BTreeMap<String, SourceStatus>)]
    pub sources: Sources,
}

/// What the SLO file gave.
#[derive(Debug, Clone)]
pub enum SloSource {
    /// No file configured or the file does not exist.
    None(String),
    /// Read.
    Loaded(Vec<Slo>),
    /// Present but unreadable.
    Failed(String),
}

/// The insights service: a Prometheus client for API queries and the settings.
#[derive(Debug)]
pub struct Insights {
    client: PrometheusClient,
    /// Settings.
    pub cfg: InsightsConfig,
    slos: SloSource,
    services: Mutex<Option<(Instant, Arc<Vec<ServiceInfo>>)>>,
}

/// Wall-clock now in unix seconds.
pub fn now() -> i64 {
    crate::engine::unix_now()
}

fn reason(e: &QueryError) -> String {
    format!("{e} (reason {})", e.reason())
}

impl Insights {
    /// A service over `prometheus` (one retry, `cfg.timeout` per attempt) and the SLO file of
    /// `cfg.slo_file`.
    ///
    /// # Errors
    /// [`ClientError`] when the Prometheus settings are unusable.
    pub fn new(prometheus: &PrometheusConfig, cfg: InsightsConfig) -> Result<Self, ClientError> {
        let mut p = prometheus.clone();
        p.timeout = cfg.timeout;
        p.retry = RetryConfig {
            max_attempts: 2,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(200),
        };
        let slos = match &cfg.slo_file {
            None => SloSource::None("no insights.slo_file configured".into()),
            Some(path) => match crate::slo::load(path) {
                Ok(Some(s)) => SloSource::Loaded(s),
                Ok(None) => SloSource::None(format!("{} does not exist", path.display())),
                Err(e) => {
                    tracing::warn!(error = %e, "SLO file unusable; summaries report no SLOs");
                    SloSource::Failed(e.to_string())
                }
            },
        };
        Ok(Self {
            client: PrometheusClient::new(&p)?,
            cfg,
            slos,
            services: Mutex::new(None),
        })
    }

    /// The Prometheus client used for API queries.
    pub fn client(&self) -> &PrometheusClient {
        &self.client
    }

    async fn instant(&self, q: &str, t: i64) -> Result<Vec<InstantSample>, QueryError> {
        self.client
            .query_instant(q, t, &CancellationToken::new())
            .await
    }

    async fn range(&self, q: &str, r: &TimeRange) -> Result<Vec<RangeSeries>, QueryError> {
        self.client
            .query_range(
                q,
                r.from,
                r.to,
                Duration::from_secs(r.step as u64),
                &CancellationToken::new(),
            )
            .await
    }

    /// Services seen in the last `services_lookback` (cached for a few seconds).
    ///
    /// # Errors
    /// The [`QueryError`] when Prometheus cannot be queried.
    pub async fn services(&self) -> Result<Arc<Vec<ServiceInfo>>, QueryError> {
        if let Some((at, s)) = &*self.services.lock().unwrap_or_else(|p| p.into_inner()) {
            if at.elapsed() < SERVICES_TTL {
                return Ok(s.clone());
            }
        }
        let now = now();
        let lookback = self.cfg.services_lookback.as_secs();
        // The latest sample now (exact, within Prometheus' 5 m lookback), and over the whole
        // lookback at a coarse resolution (cheap even for days: one point per 5 minutes).
        let latest = |m: &str| format!("max by (job) (timestamp({m}))");
        let past = |m: &str| {
            format!("max by (job) (max_over_time(timestamp({m})[{lookback}s:{PAST_RESOLUTION}s]))")
        };
        let qs = [
            latest("target_info"),
            latest(catalogue::REQUESTS),
            past("target_info"),
            past(catalogue::REQUESTS),
        ];
        let (a, b, c, d) = futures::join!(
            self.instant(&qs[0], now),
            self.instant(&qs[1], now),
            self.instant(&qs[2], now),
            self.instant(&qs[3], now)
        );
        let (info_now, req_now, info, req) = (a?, b?, c?, d?);
        let info: Vec<InstantSample> = info.into_iter().chain(info_now).collect();
        let req: Vec<InstantSample> = req.into_iter().chain(req_now).collect();
        let has_requests: BTreeSet<String> = req
            .iter()
            .filter_map(|s| s.labels.get("job").cloned())
            .collect();
        let mut by_job: BTreeMap<String, i64> = BTreeMap::new();
        for s in info.iter().chain(req.iter()) {
            if let Some(job) = s.labels.get("job") {
                if s.value.is_finite() {
                    let e = by_job.entry(job.clone()).or_insert(i64::MIN);
                    *e = (*e).max(s.value as i64);
                }
            }
        }
        let window = self.cfg.reporting_window.as_secs() as i64;
        let mut list: Vec<ServiceInfo> = by_job
            .into_iter()
            .map(|(job, last)| {
                let (namespace, name) = match job.rsplit_once('/') {
                    Some((ns, n)) => (Some(ns.to_string()), n.to_string()),
                    None => (None, job.clone()),
                };
                ServiceInfo {
                    name,
                    namespace,
                    has_requests: has_requests.contains(&job),
                    job,
                    last_report: last,
                    reporting: now - last <= window,
                }
            })
            .collect();
        list.sort_by(|a, b| a.name.cmp(&b.name).then(a.job.cmp(&b.job)));
        let list = Arc::new(list);
        *self.services.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((Instant::now(), list.clone()));
        Ok(list)
    }

    /// Finds the job of `service` (a `job` value, or a service name = the job without its
    /// namespace).
    ///
    /// # Errors
    /// 400 naming the known services when none matches or the name is ambiguous; the
    /// [`QueryError`] text when Prometheus cannot say (503).
    pub async fn resolve(&self, service: &str) -> Result<String, ApiError> {
        // A service seen in the last few minutes is still known: no refresh on the request path.
        if let Some((at, list)) = &*self.services.lock().unwrap_or_else(|p| p.into_inner()) {
            if at.elapsed() < RESOLVE_TTL {
                if let Ok(job) = match_service(list, service) {
                    return Ok(job);
                }
            }
        }
        let list = self.services().await.map_err(|e| {
            let mut err = ApiError::status(
                503,
                format!("cannot look up service {service:?}: Prometheus is unavailable"),
            );
            err.sources = Some(
                [(
                    SOURCE_PROMETHEUS.to_string(),
                    SourceStatus::unavailable(reason(&e)),
                )]
                .into_iter()
                .collect(),
            );
            err
        })?;
        match_service(&list, service).map_err(|e| {
            let (message, accepted) = match e {
                NoMatch::Unknown(names) => (
                    format!(
                        "unknown service {service:?}: nothing reported it in the last {}",
                        humantime::format_duration(self.cfg.services_lookback)
                    ),
                    names,
                ),
                NoMatch::Ambiguous(jobs) => (
                    format!("service {service:?} is ambiguous; name its job"),
                    jobs,
                ),
            };
            let accepted: Vec<&str> = accepted.iter().map(String::as_str).collect();
            ApiError::bad("service", message, &accepted)
        })
    }

    /// Coverage of the raw series `base` of `job` over `range`.
    async fn presence(&self, base: &str, job: &str, r: &TimeRange) -> Result<Coverage, QueryError> {
        let q = catalogue::presence_query(base, job, r.step);
        let series = self.range(&q, r).await?;
        let present: BTreeSet<i64> = series
            .iter()
            .flat_map(|s| s.points.iter())
            .filter(|(_, v)| *v > 0.0)
            .map(|(t, _)| *t)
            .collect();
        Ok(coverage(r, &present, base))
    }

    /// One metric of `job` over `range`.
    ///
    /// # Errors
    /// The [`QueryError`] when Prometheus cannot be queried.
    pub async fn series(
        &self,
        job: &str,
        metric: Metric,
        r: &TimeRange,
    ) -> Result<MetricSeries, QueryError> {
        let window = r.step.max(self.cfg.min_rate_window.as_secs() as i64);
        let q = metric.promql(job, window);
        let (values, cov) = futures::join!(self.range(&q, r), self.presence(metric.base(), job, r));
        let (values, cov) = (values?, cov?);
        let by_t: BTreeMap<i64, f64> = values
            .into_iter()
            .next()
            .map(|s| s.points.into_iter().collect())
            .unwrap_or_default();
        let mut points = Vec::with_capacity(r.points() as usize);
        let mut t = r.from;
        while t <= r.to {
            points.push(Point {
                timestamp: t,
                value: by_t.get(&t).copied().filter(|v| v.is_finite()),
            });
            t += r.step;
        }
        Ok(MetricSeries {
            metric: metric.name().into(),
            unit: metric.unit().into(),
            description: metric.description().into(),
            stats: Stats::of(&points),
            points,
            completeness: cov.completeness,
            status: cov.status,
        })
    }

    /// Every metric of `job` over `range`.
    ///
    /// # Errors
    /// The first [`QueryError`] when Prometheus cannot be queried.
    pub async fn all_series(
        &self,
        job: &str,
        r: &TimeRange,
    ) -> Result<Vec<MetricSeries>, QueryError> {
        let all = futures::future::join_all(METRICS.iter().map(|m| self.series(job, *m, r))).await;
        all.into_iter().collect()
    }

    /// Requests, errors, latency and SLOs of `job` over the whole range, plus the coverage of
    /// its request metrics.
    ///
    /// # Errors
    /// The [`QueryError`] when Prometheus cannot be queried.
    pub async fn totals(
        &self,
        service: &str,
        job: &str,
        r: &TimeRange,
    ) -> Result<(RequestTotals, Coverage), QueryError> {
        let len = r.len();
        let q_req = catalogue::increase_query(job, len, None, false);
        let q_err = catalogue::increase_query(job, len, None, true);
        let qs: Vec<String> = [0.5, 0.95, 0.99]
            .iter()
            .map(|q| catalogue::range_quantile_query(job, len, *q, None))
            .collect();
        let (req, err, p50, p95, p99, cov, slos) = futures::join!(
            self.instant(&q_req, r.to),
            self.instant(&q_err, r.to),
            self.instant(&qs[0], r.to),
            self.instant(&qs[1], r.to),
            self.instant(&qs[2], r.to),
            self.presence(catalogue::REQUESTS, job, r),
            self.slo_status(service, job, r)
        );
        let first = |v: Vec<InstantSample>| v.first().map(|s| s.value).filter(|v| v.is_finite());
        let requests = first(req?).unwrap_or(0.0);
        let errors = first(err?).unwrap_or(0.0);
        let error_ratio = (requests > 0.0).then(|| errors / requests);
        Ok((
            RequestTotals {
                requests: Some(requests),
                errors: Some(errors),
                error_ratio,
                availability: error_ratio.map(|e| 1.0 - e),
                latency_seconds: Percentiles {
                    p50: first(p50?),
                    p95: first(p95?),
                    p99: first(p99?),
                },
                slos: slos?,
            },
            cov?,
        ))
    }

    /// SLOs of the service (matched on the spec's `service` = service name or job).
    async fn slo_status(
        &self,
        service: &str,
        job: &str,
        r: &TimeRange,
    ) -> Result<Vec<SloStatus>, QueryError> {
        let SloSource::Loaded(all) = &self.slos else {
            return Ok(Vec::new());
        };
        let name = job.rsplit_once('/').map(|(_, n)| n).unwrap_or(job);
        let mine: Vec<&Slo> = all
            .iter()
            .filter(|s| s.service == service || s.service == job || s.service == name)
            .collect();
        let answers = futures::future::join_all(
            mine.iter()
                .map(|s| async move { self.instant(&s.error_ratio_query(r.len()), r.to).await }),
        )
        .await;
        let mut out = Vec::new();
        for (s, a) in mine.into_iter().zip(answers) {
            let ratio = a?.first().map(|x| x.value).filter(|v| v.is_finite());
            out.push(SloStatus {
                name: s.name.clone(),
                objective: s.objective,
                error_ratio: ratio,
                compliance: ratio.map(|e| 1.0 - e),
                error_budget_remaining: ratio.map(|e| s.budget_remaining(e)),
            });
        }
        Ok(out)
    }

    /// Status of the SLO file for `sources`.
    pub fn slo_source(&self) -> SourceStatus {
        match &self.slos {
            SloSource::Loaded(_) => SourceStatus::ok(),
            SloSource::None(why) => SourceStatus::unavailable(why.clone()),
            SloSource::Failed(why) => SourceStatus::unavailable(why.clone()),
        }
    }

    /// Requests of `job` over the range by `dim`, with errors and latency per group.
    ///
    /// # Errors
    /// The [`QueryError`] when Prometheus cannot be queried.
    pub async fn breakdown(
        &self,
        job: &str,
        dim: Dimension,
        r: &TimeRange,
    ) -> Result<(Vec<BreakdownRow>, RequestTotals, Coverage), QueryError> {
        let (len, l) = (r.len(), dim.label());
        let q_req = catalogue::increase_query(job, len, Some(l), false);
        let q_err = catalogue::increase_query(job, len, Some(l), true);
        let qs: Vec<String> = [0.5, 0.95, 0.99]
            .iter()
            .map(|q| catalogue::range_quantile_query(job, len, *q, Some(l)))
            .collect();
        let (req, err, p50, p95, p99, cov) = futures::join!(
            self.instant(&q_req, r.to),
            self.instant(&q_err, r.to),
            self.instant(&qs[0], r.to),
            self.instant(&qs[1], r.to),
            self.instant(&qs[2], r.to),
            self.presence(catalogue::REQUESTS, job, r)
        );
        let by_key = |v: Vec<InstantSample>| -> BTreeMap<String, f64> {
            v.into_iter()
                .map(|s| (s.labels.get(l).cloned().unwrap_or_default(), s.value))
                .collect()
        };
        let (req, err) = (by_key(req?), by_key(err?));
        let (p50, p95, p99) = (by_key(p50?), by_key(p95?), by_key(p99?));
        let total: f64 = req.values().filter(|v| v.is_finite()).sum();
        let total_err: f64 = err.values().filter(|v| v.is_finite()).sum();
        let fin = |m: &BTreeMap<String, f64>, k: &str| m.get(k).copied().filter(|v| v.is_finite());
        let mut rows: Vec<BreakdownRow> = req
            .iter()
            .map(|(k, v)| {
                let requests = if v.is_finite() { *v } else { 0.0 };
                let errors = fin(&err, k).unwrap_or(0.0);
                BreakdownRow {
                    key: k.clone(),
                    requests,
                    errors,
                    error_ratio: (requests > 0.0).then(|| errors / requests),
                    share: (total > 0.0).then(|| requests / total),
                    latency_seconds: Percentiles {
                        p50: fin(&p50, k),
                        p95: fin(&p95, k),
                        p99: fin(&p99, k),
                    },
                }
            })
            .collect();
        rows.sort_by(|a, b| b.requests.total_cmp(&a.requests).then(a.key.cmp(&b.key)));
        let error_ratio = (total > 0.0).then(|| total_err / total);
        let totals = RequestTotals {
            requests: Some(total),
            errors: Some(total_err),
            error_ratio,
            availability: error_ratio.map(|e| 1.0 - e),
            latency_seconds: Percentiles::default(),
            slos: Vec::new(),
        };
        Ok((rows, totals, cov?))
    }
}

/// Why [`match_service`] found no single job.
enum NoMatch {
    /// No service of that name: every known name.
    Unknown(Vec<String>),
    /// Several namespaces have it: their jobs.
    Ambiguous(Vec<String>),
}

/// The job of `service` in `list` (a job, or a unique service name).
fn match_service(list: &[ServiceInfo], service: &str) -> Result<String, NoMatch> {
    if list.iter().any(|s| s.job == service) {
        return Ok(service.to_string());
    }
    let matches: Vec<&ServiceInfo> = list.iter().filter(|s| s.name == service).collect();
    match matches.as_slice() {
        [one] => Ok(one.job.clone()),
        [] => Err(NoMatch::Unknown(
            list.iter().map(|s| s.name.clone()).collect(),
        )),
        many => Err(NoMatch::Ambiguous(
            many.iter().map(|s| s.job.clone()).collect(),
        )),
    }
}

/// `sources` with one entry.
pub fn sources_of(name: &str, status: SourceStatus) -> Sources {
    [(name.to_string(), status)].into_iter().collect()
}

/// Describes a Prometheus failure for `sources`.
pub fn unavailable(e: &QueryError) -> SourceStatus {
    SourceStatus::unavailable(reason(e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coverage_finds_gaps() {
        let r = TimeRange {
            from: 0,
            to: 90,
            step: 10,
        };
        let present: BTreeSet<i64> = [0, 10, 20, 50, 60, 90].into_iter().collect();
        let c = coverage(&r, &present, "x");
        assert!((c.completeness - 0.6).abs() < 1e-9, "{c:?}");
        assert_eq!(c.status.status, SourceState::Partial);
        assert_eq!(
            c.status.gaps,
            vec![Gap { from: 30, to: 40 }, Gap { from: 70, to: 80 }]
        );
        let all: BTreeSet<i64> = (0..=90).step_by(10).collect();
        assert_eq!(coverage(&r, &all, "x").status, SourceStatus::ok());
        let none = coverage(&r, &BTreeSet::new(), "x");
        assert_eq!(none.completeness, 0.0);
        assert_eq!(none.status.gaps, vec![Gap { from: 0, to: 90 }]);
    }

    #[test]
    fn stats_skip_nulls() {
        let p = |t, v| Point {
            timestamp: t,
            value: v,
        };
        let s = Stats::of(&[p(0, Some(1.0)), p(1, None), p(2, Some(3.0))]);
        assert_eq!(
            (s.min, s.max, s.avg, s.last),
            (Some(1.0), Some(3.0), Some(2.0), Some(3.0))
        );
        assert_eq!(Stats::of(&[p(0, None)]), Stats::default());
    }
}
