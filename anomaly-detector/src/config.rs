//! Service configuration: the YAML file, `${env:VAR}` substitution in its values (`config-env`,
//! an unset variable without a default is an error), the environment overrides
//! (`PROMETHEUS_URL`, `ALERTMANAGER_URL`, `DETECTOR_ADDR`) and validation.
//!
//! Every default lives in the `default_*` functions at the bottom of this file; the structs use
//! `deny_unknown_fields`, so a misspelt key is an error that names the key.
//!
//! Tests: `cargo test -p anomaly-detector config::` (plus `tests/service_config.rs`, which loads
//! the shipped `config/detector.yaml`).

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::model::ModelConfig;

/// Environment variable that overrides `prometheus.url`.
pub const ENV_PROMETHEUS_URL: &str = "PROMETHEUS_URL";
/// Environment variable that overrides `alertmanager.url`.
pub const ENV_ALERTMANAGER_URL: &str = "ALERTMANAGER_URL";
/// Environment variable that overrides `server.addr`.
pub const ENV_DETECTOR_ADDR: &str = "DETECTOR_ADDR";

/// Errors from loading or validating a configuration. Each names the file or key and the fix.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source} (check the path given to --config)")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid YAML.
    #[error("invalid config file {path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The YAML error, which names the line.
        source: serde_yaml::Error,
    },
    /// A `${env:VAR}` reference cannot be substituted (unset without `:-default`, malformed,
    /// or another provider).
    #[error("config file {path}: {error}")]
    Substitution {
        /// The file.
        path: PathBuf,
        /// What is wrong, with the key path and the fix.
        error: config_env::SubstError,
    },
    /// A key is unknown or a value has the wrong type.
    #[error("invalid config file {path}: {message}")]
    Schema {
        /// The file.
        path: PathBuf,
        /// serde's message, prefixed with the key path.
        message: String,
    },
    /// A value is present but not acceptable.
    #[error("invalid config: {key}: {message}")]
    Invalid {
        /// Dotted path of the key, e.g. `detections[2].step`.
        key: String,
        /// What is wrong and what to do.
        message: String,
    },
}

fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        message: message.into(),
    }
}

/// The whole service configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where series are read from.
    pub prometheus: PrometheusConfig,
    /// How often every detection runs unless it sets its own `interval`.
    #[serde(with = "humantime_serde", default = "default_evaluation_interval")]
    pub evaluation_interval: Duration,
    /// HTTP API settings.
    #[serde(default)]
    pub server: ServerConfig,
    /// Alertmanager to send alerts to (optional).
    #[serde(default)]
    pub alertmanager: Option<AlertmanagerConfig>,
    /// Generic webhooks that detections may name in their `webhooks` list.
    #[serde(default)]
    pub webhooks: Vec<WebhookConfig>,
    /// Link put into every alert's `dashboard` annotation; `{detection}` and `{service}` are replaced.
    #[serde(default = "default_dashboard_url")]
    pub dashboard_url: String,
    /// The detections to run.
    pub detections: Vec<DetectionConfig>,
    /// Insights API and live view settings.
    #[serde(default)]
    pub insights: InsightsConfig,
    /// Anomaly history store.
    #[serde(default)]
    pub history: HistoryConfig,
}

/// Prometheus connection settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrometheusConfig {
    /// Base URL, e.g. `http://127.0.0.1:9090` (overridden by `PROMETHEUS_URL`).
    #[serde(default = "default_prometheus_url")]
    pub url: String,
    /// Extra request headers, e.g. `Authorization: Bearer ...` or `X-Scope-OrgID`.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Timeout of one query attempt.
    #[serde(with = "humantime_serde", default = "default_query_timeout")]
    pub timeout: Duration,
    /// TLS settings for `https://` URLs.
    #[serde(default)]
    pub tls: TlsConfig,
    /// Retry policy for connection errors, timeouts, 429 and 5xx.
    #[serde(default)]
    pub retry: RetryConfig,
}

/// TLS client settings.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file of extra CA certificates to trust.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate (with `key_file`) for mutual TLS.
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file`.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// Accept any server certificate (testing only).
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

/// Exponential backoff with jitter.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    /// Attempts in total, including the first (1 = no retry).
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// Wait before the first retry; doubles on every further retry.
    #[serde(with = "humantime_serde", default = "default_initial_backoff")]
    pub initial_backoff: Duration,
    /// Upper bound of one wait.
    #[serde(with = "humantime_serde", default = "default_max_backoff")]
    pub max_backoff: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            max_attempts: default_max_attempts(),
            initial_backoff: default_initial_backoff(),
            max_backoff: default_max_backoff(),
        }
    }
}

/// HTTP API settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Listen address (overridden by `DETECTOR_ADDR`).
    #[serde(default = "default_addr")]
    pub addr: SocketAddr,
    /// How many resolved anomalies the in-memory list (`/metrics`, summary `recent`) keeps.
    #[serde(default = "default_recent_anomalies")]
    pub recent_anomalies: usize,
    /// Optional bearer-token check on `/api/*` (the OpenAPI document stays open).
    #[serde(default)]
    pub auth: AuthConfig,
    /// Per-client (peer IP) rate limit on `/api/*`.
    #[serde(default)]
    pub rate_limit: RateLimitConfig,
    /// Cross-origin requests to `/api/*`.
    #[serde(default)]
    pub cors: CorsConfig,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            addr: default_addr(),
            recent_anomalies: default_recent_anomalies(),
            auth: AuthConfig::default(),
            rate_limit: RateLimitConfig::default(),
            cors: CorsConfig::default(),
        }
    }
}

/// Bearer-token settings; no check when neither `token` nor `token_file` is set.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// The token itself (use `${env:VAR}`; redacted in `--check`); empty = no auth.
    #[serde(default)]
    pub token: Option<Secret>,
    /// A file whose content (trimmed) is the token, e.g. a Kubernetes secret mount.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
}

/// Token bucket per client IP.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Off when false.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Sustained requests per second per client.
    #[serde(default = "default_rate_per_second")]
    pub per_second: f64,
    /// Requests a client may send at once before the sustained rate applies.
    #[serde(default = "default_rate_burst")]
    pub burst: u32,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            per_second: default_rate_per_second(),
            burst: default_rate_burst(),
        }
    }
}

/// CORS: which browser origins may call `/api/*`; none by default (same-origin only).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorsConfig {
    /// Origins such as `https://grafana.example.com`, or `["*"]` for any.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
}

/// Settings of the insights API (`/api/v1/services/...`) and the live view.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InsightsConfig {
    /// Range used when `from` is absent (`to` defaults to now).
    #[serde(with = "humantime_serde", default = "default_insights_range")]
    pub default_range: Duration,
    /// Longest accepted `to - from`.
    #[serde(with = "humantime_serde", default = "default_insights_max_range")]
    pub max_range: Duration,
    /// Most points per series an answer may have (`(to - from) / step`).
    #[serde(default = "default_insights_max_points")]
    pub max_points: u64,
    /// Finest step used when `step` is absent (coarser when the range needs it).
    #[serde(with = "humantime_serde", default = "default_insights_step")]
    pub default_step: Duration,
    /// Shortest window of `rate()` in series queries (the window is `max(step, this)`).
    #[serde(with = "humantime_serde", default = "default_rate_window")]
    pub min_rate_window: Duration,
    /// A service whose last sample is older than this is not `reporting`.
    #[serde(with = "humantime_serde", default = "default_reporting_window")]
    pub reporting_window: Duration,
    /// How far back `/api/v1/services` looks for services.
    #[serde(with = "humantime_serde", default = "default_services_lookback")]
    pub services_lookback: Duration,
    /// Sloth `prometheus/v1` SLO file(s) (one YAML document per service); absent file = no SLOs.
    #[serde(default)]
    pub slo_file: Option<PathBuf>,
    /// How often the live stream (`/api/v1/stream`) sends an update.
    #[serde(with = "humantime_serde", default = "default_live_interval")]
    pub live_interval: Duration,
    /// Timeout of one API query to Prometheus.
    #[serde(with = "humantime_serde", default = "default_insights_timeout")]
    pub timeout: Duration,
}

impl Default for InsightsConfig {
    fn default() -> Self {
        Self {
            default_range: default_insights_range(),
            max_range: default_insights_max_range(),
            max_points: default_insights_max_points(),
            default_step: default_insights_step(),
            min_rate_window: default_rate_window(),
            reporting_window: default_reporting_window(),
            services_lookback: default_services_lookback(),
            slo_file: None,
            live_interval: default_live_interval(),
            timeout: default_insights_timeout(),
        }
    }
}

/// The anomaly history (embedded SQLite database).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryConfig {
    /// Database file; absent = in memory (lost at exit).
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// Episodes that started longer ago than this are deleted.
    #[serde(with = "humantime_serde", default = "default_history_retention")]
    pub retention: Duration,
    /// At most this many episodes are kept (oldest deleted first).
    #[serde(default = "default_history_max_events")]
    pub max_events: u64,
    /// The file is kept under this many bytes (oldest episodes deleted first).
    #[serde(default = "default_history_max_bytes")]
    pub max_bytes: u64,
}

impl Default for HistoryConfig {
    fn default() -> Self {
        Self {
            path: None,
            retention: default_history_retention(),
            max_events: default_history_max_events(),
            max_bytes: default_history_max_bytes(),
        }
    }
}

/// Alertmanager settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertmanagerConfig {
    /// Base URL, e.g. `http://127.0.0.1:9093` (overridden by `ALERTMANAGER_URL`).
    pub url: String,
    /// Extra request headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Timeout of one POST.
    #[serde(with = "humantime_serde", default = "default_alert_timeout")]
    pub timeout: Duration,
    /// Retry policy.
    #[serde(default)]
    pub retry: RetryConfig,
}

/// A generic webhook receiving signed JSON alerts.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Name that detections refer to.
    pub name: String,
    /// URL to POST to.
    pub url: String,
    /// HMAC-SHA256 key for the `X-Signature-256` header (use `${env:VAR}`); no header when absent.
    #[serde(default)]
    pub secret: Option<Secret>,
    /// Extra request headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Timeout of one POST.
    #[serde(with = "humantime_serde", default = "default_alert_timeout")]
    pub timeout: Duration,
    /// Retry policy.
    #[serde(default)]
    pub retry: RetryConfig,
    /// A still-firing alert is sent again after this long (dedup window per fingerprint).
    #[serde(with = "humantime_serde", default = "default_repeat_interval")]
    pub repeat_interval: Duration,
}

/// A secret string whose `Debug` output is redacted (so `--print-config` does not leak it).
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("\"<redacted>\"")
    }
}

/// One detection: a PromQL query whose every returned series gets its own model.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetectionConfig {
    /// Unique name; becomes the `detection` label.
    pub name: String,
    /// PromQL; may return many series.
    pub query: String,
    /// Resolution of the series (the `step` of `query_range`).
    #[serde(with = "humantime_serde", default = "default_step")]
    pub step: Duration,
    /// How much history is read when a series is first seen and at every refit.
    #[serde(with = "humantime_serde", default = "default_history")]
    pub history: Duration,
    /// Overrides the global `evaluation_interval`.
    #[serde(with = "humantime_serde", default)]
    pub interval: Option<Duration>,
    /// A series absent from the results for this long is forgotten (and its alert resolved).
    #[serde(with = "humantime_serde", default = "default_series_expiry")]
    pub series_expiry: Duration,
    /// At most this many series are tracked; further series are dropped and counted.
    #[serde(default = "default_max_series")]
    pub max_series: usize,
    /// Model settings (seasonal periods searched, sensitivity, minimum history, consecutive
    /// points, ...); the model refits itself every `model.refit_every` points.
    #[serde(default)]
    pub model: ModelConfig,
    /// Labels added to every alert of this detection.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Annotations added to every alert of this detection.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// Names of `webhooks` that receive this detection's alerts.
    #[serde(default)]
    pub webhooks: Vec<String>,
    /// Send this detection's alerts to Alertmanager (when one is configured).
    #[serde(default = "default_true")]
    pub alertmanager: bool,
}

impl DetectionConfig {
    /// The effective evaluation interval of this detection.
    pub fn interval(&self, global: Duration) -> Duration {
        self.interval.unwrap_or(global)
    }
}

impl Config {
    /// Reads, substitutes, parses, applies the environment overrides and validates `path`.
    ///
    /// # Errors
    /// [`ConfigError`] naming the file or key at fault.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut config = Self::from_yaml(&text, path, |v| std::env::var(v).ok())?;
        config.apply_env(|v| std::env::var(v).ok())?;
        config.validate()?;
        Ok(config)
    }

    /// Parses YAML text, substitutes `${env:VAR}` references in its values with `lookup` (an
    /// unset variable without a default is an error), then deserializes it (no overrides, no
    /// validation).
    ///
    /// # Errors
    /// [`ConfigError::Parse`], [`ConfigError::Substitution`] or [`ConfigError::Schema`].
    pub fn from_yaml(
        text: &str,
        path: &Path,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let mut doc: serde_yaml::Value =
            serde_yaml::from_str(text).map_err(|source| ConfigError::Parse {
                path: path.to_path_buf(),
                source,
            })?;
        config_env::substitute(&mut doc, &lookup, config_env::Unset::Error).map_err(|error| {
            ConfigError::Substitution {
                path: path.to_path_buf(),
                error,
            }
        })?;
        deserialize(doc).map_err(|message| ConfigError::Schema {
            path: path.to_path_buf(),
            message,
        })
    }

    /// Applies `PROMETHEUS_URL`, `ALERTMANAGER_URL` and `DETECTOR_ADDR` (looked up with `lookup`).
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] when `DETECTOR_ADDR` is not a socket address.
    pub fn apply_env(
        &mut self,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<(), ConfigError> {
        if let Some(url) = lookup(ENV_PROMETHEUS_URL).filter(|v| !v.is_empty()) {
            self.prometheus.url = url;
        }
        if let Some(url) = lookup(ENV_ALERTMANAGER_URL).filter(|v| !v.is_empty()) {
            match &mut self.alertmanager {
                Some(am) => am.url = url,
                None => {
                    self.alertmanager = Some(AlertmanagerConfig {
                        url,
                        headers: BTreeMap::new(),
                        timeout: default_alert_timeout(),
                        retry: RetryConfig::default(),
                    })
                }
            }
        }
        if let Some(addr) = lookup(ENV_DETECTOR_ADDR).filter(|v| !v.is_empty()) {
            self.server.addr = addr.parse().map_err(|_| {
                invalid(
                    ENV_DETECTOR_ADDR,
                    format!("{addr:?} is not a socket address; use e.g. 127.0.0.1:9464"),
                )
            })?;
        }
        Ok(())
    }

    /// Checks every value that serde cannot.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the first bad key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_url("prometheus.url", &self.prometheus.url)?;
        check_retry("prometheus.retry", &self.prometheus.retry)?;
        check_tls(&self.prometheus.tls)?;
        check_headers("prometheus.headers", &self.prometheus.headers)?;
        if self.prometheus.timeout.is_zero() {
            return Err(invalid("prometheus.timeout", "must be greater than 0"));
        }
        if self.evaluation_interval < Duration::from_secs(1) {
            return Err(invalid("evaluation_interval", "must be at least 1s"));
        }
        if let Some(am) = &self.alertmanager {
            check_url("alertmanager.url", &am.url)?;
            check_retry("alertmanager.retry", &am.retry)?;
            check_headers("alertmanager.headers", &am.headers)?;
        }
        let mut hook_names = HashSet::new();
        for (i, w) in self.webhooks.iter().enumerate() {
            let key = format!("webhooks[{i}]");
            if w.name.is_empty() || !hook_names.insert(w.name.as_str()) {
                return Err(invalid(
                    format!("{key}.name"),
                    format!(
                        "{:?} is empty or used twice; give every webhook a unique name",
                        w.name
                    ),
                ));
            }
            check_url(&format!("{key}.url"), &w.url)?;
            check_retry(&format!("{key}.retry"), &w.retry)?;
            check_headers(&format!("{key}.headers"), &w.headers)?;
        }
        check_insights(&self.insights)?;
        check_server(&self.server)?;
        check_history(&self.history)?;
        if self.detections.is_empty() {
            return Err(invalid("detections", "at least one detection is needed"));
        }
        let mut names = HashSet::new();
        for (i, d) in self.detections.iter().enumerate() {
            let key = format!("detections[{i}]");
            if d.name.is_empty() || !names.insert(d.name.as_str()) {
                return Err(invalid(
                    format!("{key}.name"),
                    format!(
                        "{:?} is empty or used twice; give every detection a unique name",
                        d.name
                    ),
                ));
            }
            if d.query.trim().is_empty() {
                return Err(invalid(
                    format!("{key}.query"),
                    "must be a PromQL expression",
                ));
            }
            if d.step < Duration::from_secs(1) {
                return Err(invalid(format!("{key}.step"), "must be at least 1s"));
            }
            if d.history < d.step * 2 {
                return Err(invalid(
                    format!("{key}.history"),
                    "must cover at least two steps (usually several seasons, e.g. 14d)",
                ));
            }
            // Prometheus refuses query_range with more than 11,000 points per series.
            if d.history.as_secs() / d.step.as_secs().max(1) > 11_000 {
                return Err(invalid(
                    format!("{key}.history"),
                    format!(
                        "{}s / step {}s is more than 11000 points, which Prometheus refuses; raise step or shorten history",
                        d.history.as_secs(),
                        d.step.as_secs()
                    ),
                ));
            }
            if let Some(iv) = d.interval {
                if iv < Duration::from_secs(1) {
                    return Err(invalid(format!("{key}.interval"), "must be at least 1s"));
                }
            }
            if d.max_series == 0 {
                return Err(invalid(
                    format!("{key}.max_series"),
                    "must be greater than 0",
                ));
            }
            if d.series_expiry < d.interval(self.evaluation_interval) {
                return Err(invalid(
                    format!("{key}.series_expiry"),
                    "must be at least one evaluation interval",
                ));
            }
            for l in d.labels.keys() {
                if !valid_label_name(l) {
                    return Err(invalid(
                        format!("{key}.labels.{l}"),
                        "label names must match [a-zA-Z_][a-zA-Z0-9_]*",
                    ));
                }
            }
            for w in &d.webhooks {
                if !hook_names.contains(w.as_str()) {
                    return Err(invalid(
                        format!("{key}.webhooks"),
                        format!("webhook {w:?} is not defined under `webhooks:`"),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// True when `name` is a valid Prometheus label name.
pub fn valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn check_url(key: &str, url: &str) -> Result<(), ConfigError> {
    match reqwest::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Ok(()),
        _ => Err(invalid(
            key,
            format!("{url:?} is not an http(s) URL; write e.g. http://127.0.0.1:9090"),
        )),
    }
}

fn check_retry(key: &str, r: &RetryConfig) -> Result<(), ConfigError> {
    if r.max_attempts == 0 {
        return Err(invalid(format!("{key}.max_attempts"), "must be at least 1"));
    }
    if r.initial_backoff > r.max_backoff {
        return Err(invalid(
            format!("{key}.initial_backoff"),
            "must not exceed max_backoff",
        ));
    }
    Ok(())
}

fn check_headers(key: &str, headers: &BTreeMap<String, String>) -> Result<(), ConfigError> {
    for (k, v) in headers {
        if reqwest::header::HeaderName::from_bytes(k.as_bytes()).is_err()
            || reqwest::header::HeaderValue::from_str(v).is_err()
        {
            return Err(invalid(
                format!("{key}.{k}"),
                "not a valid HTTP header name/value",
            ));
        }
    }
    Ok(())
}

fn check_insights(i: &InsightsConfig) -> Result<(), ConfigError> {
    if i.max_points < 2 {
        return Err(invalid("insights.max_points", "must be at least 2"));
    }
    for (key, d) in [
        ("insights.default_step", i.default_step),
        ("insights.live_interval", i.live_interval),
        ("insights.timeout", i.timeout),
        ("insights.default_range", i.default_range),
    ] {
        if d < Duration::from_secs(1) {
            return Err(invalid(key, "must be at least 1s"));
        }
    }
    if i.default_range > i.max_range {
        return Err(invalid(
            "insights.default_range",
            "must not exceed max_range",
        ));
    }
    Ok(())
}

fn check_server(s: &ServerConfig) -> Result<(), ConfigError> {
    let r = &s.rate_limit;
    if r.enabled && !(r.per_second > 0.0 && r.per_second.is_finite()) {
        return Err(invalid(
            "server.rate_limit.per_second",
            "must be a positive number (or set enabled: false)",
        ));
    }
    if r.enabled && r.burst == 0 {
        return Err(invalid("server.rate_limit.burst", "must be at least 1"));
    }
    let inline = s
        .auth
        .token
        .as_ref()
        .is_some_and(|t| !t.0.trim().is_empty());
    if inline && s.auth.token_file.is_some() {
        return Err(invalid("server.auth", "set token or token_file, not both"));
    }
    if let Some(f) = &s.auth.token_file {
        if !f.is_file() {
            return Err(invalid(
                "server.auth.token_file",
                format!("{} does not exist or is not a file", f.display()),
            ));
        }
    }
    for o in &s.cors.allowed_origins {
        if o != "*" && reqwest::header::HeaderValue::from_str(o).is_err() {
            return Err(invalid(
                "server.cors.allowed_origins",
                format!("{o:?} is not an origin such as https://grafana.example.com or \"*\""),
            ));
        }
    }
    Ok(())
}

fn check_history(h: &HistoryConfig) -> Result<(), ConfigError> {
    if h.max_events == 0 {
        return Err(invalid("history.max_events", "must be at least 1"));
    }
    if h.max_bytes < 64 * 1024 {
        return Err(invalid("history.max_bytes", "must be at least 64 KiB"));
    }
    Ok(())
}

fn check_tls(tls: &TlsConfig) -> Result<(), ConfigError> {
    if tls.cert_file.is_some() != tls.key_file.is_some() {
        return Err(invalid(
            "prometheus.tls",
            "cert_file and key_file must be given together",
        ));
    }
    for (name, file) in [
        ("ca_file", &tls.ca_file),
        ("cert_file", &tls.cert_file),
        ("key_file", &tls.key_file),
    ] {
        if let Some(f) = file {
            if !f.is_file() {
                return Err(invalid(
                    format!("prometheus.tls.{name}"),
                    format!("{} does not exist or is not a file", f.display()),
                ));
            }
        }
    }
    Ok(())
}

/// Deserializes the substituted document through its YAML text.
///
/// Going through text (not `serde_yaml::from_value`) keeps plain scalars such as `tier: 1` or a
/// numeric `${env:SECRET}` acceptable for string fields. Positions are dropped from the message:
/// they would point into the re-serialized text, not the file; the key path stays.
fn deserialize(doc: serde_yaml::Value) -> Result<Config, String> {
    let text = serde_yaml::to_string(&doc).map_err(|e| e.to_string())?;
    serde_yaml::from_str(&text).map_err(|e| {
        let message = e.to_string();
        match message.find(" at line ") {
            Some(i) => message[..i].to_string(),
            None => message,
        }
    })
}

fn default_evaluation_interval() -> Duration {
    Duration::from_secs(60)
}
fn default_prometheus_url() -> String {
    "http://127.0.0.1:9090".to_string()
}
fn default_query_timeout() -> Duration {
    Duration::from_secs(20)
}
fn default_max_attempts() -> u32 {
    4
}
fn default_initial_backoff() -> Duration {
    Duration::from_millis(250)
}
fn default_max_backoff() -> Duration {
    Duration::from_secs(5)
}
fn default_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9464))
}
fn default_recent_anomalies() -> usize {
    500
}
fn default_alert_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_repeat_interval() -> Duration {
    Duration::from_secs(4 * 3600)
}
fn default_dashboard_url() -> String {
    "http://127.0.0.1:3000/d/anomaly-detector/anomaly-detector?var-detection={detection}&var-service={service}".to_string()
}
fn default_step() -> Duration {
    Duration::from_secs(60)
}
fn default_history() -> Duration {
    Duration::from_secs(7 * 86_400)
}
fn default_series_expiry() -> Duration {
    Duration::from_secs(15 * 60)
}
fn default_max_series() -> usize {
    10_000
}
fn default_true() -> bool {
    true
}
fn default_rate_per_second() -> f64 {
    20.0
}
fn default_rate_burst() -> u32 {
    40
}
fn default_insights_range() -> Duration {
    Duration::from_secs(86_400)
}
fn default_insights_max_range() -> Duration {
    Duration::from_secs(31 * 86_400)
}
fn default_insights_max_points() -> u64 {
    11_000
}
fn default_insights_step() -> Duration {
    Duration::from_secs(15)
}
fn default_rate_window() -> Duration {
    Duration::from_secs(60)
}
fn default_reporting_window() -> Duration {
    Duration::from_secs(120)
}
fn default_services_lookback() -> Duration {
    Duration::from_secs(86_400)
}
fn default_live_interval() -> Duration {
    Duration::from_secs(2)
}
fn default_insights_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_history_retention() -> Duration {
    Duration::from_secs(90 * 86_400)
}
fn default_history_max_events() -> u64 {
    100_000
}
fn default_history_max_bytes() -> u64 {
    256 * 1024 * 1024
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str =
        "prometheus: {url: 'http://127.0.0.1:9090'}\ndetections:\n  - name: rate\n    query: up\n";

    fn parse(text: &str) -> Result<Config, ConfigError> {
        let c = Config::from_yaml(text, Path::new("t.yaml"), |_| None)?;
        c.validate()?;
        Ok(c)
    }

    #[test]
    fn minimal_config_gets_defaults() {
        let c = parse(MINIMAL).unwrap();
        assert_eq!(c.evaluation_interval, Duration::from_secs(60));
        assert_eq!(c.server.addr.port(), 9464);
        let d = &c.detections[0];
        assert_eq!(d.step, Duration::from_secs(60));
        assert!(d.alertmanager);
        assert!(c.alertmanager.is_none());
    }

    #[test]
    fn unknown_key_is_named() {
        let err = parse(&format!("{MINIMAL}    stepp: 1m\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("stepp"), "{err}");
    }

    #[test]
    fn undefined_webhook_is_rejected() {
        let err = parse(&format!("{MINIMAL}    webhooks: [ops]\n"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("detections[0].webhooks") && err.contains("ops"),
            "{err}"
        );
    }

    #[test]
    fn duplicate_detection_is_rejected() {
        let text = format!("{MINIMAL}  - name: rate\n    query: up\n");
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.contains("detections[1].name"), "{err}");
    }

    #[test]
    fn bad_url_is_rejected() {
        let err =
            parse("prometheus: {url: 'localhost:9090'}\ndetections: [{name: a, query: up}]\n")
                .unwrap_err()
                .to_string();
        assert!(err.contains("prometheus.url"), "{err}");
    }

    #[test]
    fn tls_files_are_checked() {
        let err = parse("prometheus: {url: 'https://p:9090', tls: {ca_file: /nonexistent/ca.pem}}\ndetections: [{name: a, query: up}]\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("prometheus.tls.ca_file") && err.contains("/nonexistent/ca.pem"),
            "{err}"
        );
        let err = parse("prometheus: {url: 'https://p:9090', tls: {cert_file: /nonexistent/c.pem}}\ndetections: [{name: a, query: up}]\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("cert_file and key_file"), "{err}");
    }

    #[test]
    fn too_many_points_is_rejected() {
        let err = parse(&format!("{MINIMAL}    step: 1s\n    history: 1d\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("11000"), "{err}");
    }

    #[test]
    fn env_substitution_and_missing_var() {
        let text = "prometheus: {url: '${env:P_URL:-http://127.0.0.1:1}'}\nwebhooks: [{name: w, url: 'http://127.0.0.1:2', secret: '${env:SECRET}'}]\ndetections: [{name: a, query: up, webhooks: [w]}]\n";
        let c = Config::from_yaml(text, Path::new("t.yaml"), |v| {
            (v == "SECRET").then(|| "s3cret".to_string())
        })
        .unwrap();
        assert_eq!(c.prometheus.url, "http://127.0.0.1:1");
        assert_eq!(c.webhooks[0].secret, Some(Secret("s3cret".into())));
        assert!(!format!("{c:?}").contains("s3cret"));
        let err = Config::from_yaml(text, Path::new("t.yaml"), |_| None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("SECRET is not set"), "{err}");
        assert!(err.contains("webhooks[0].secret"), "{err}");
    }

    #[test]
    fn env_value_cannot_inject_yaml_and_numbers_fit_strings() {
        let text = "prometheus:\n  url: ${env:P_URL}\n  retry: {max_attempts: '${env:N}'}\nwebhooks: [{name: w, url: 'http://127.0.0.1:2', secret: '${env:SECRET}'}]\ndetections: [{name: a, query: up, labels: {tier: 1}, webhooks: [w]}]\n";
        let c = Config::from_yaml(text, Path::new("t.yaml"), |v| match v {
            "P_URL" => Some("http://p:1\nextra: 1".into()),
            "N" => Some("7".into()),
            "SECRET" => Some("12345".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(c.prometheus.url, "http://p:1\nextra: 1");
        assert_eq!(c.prometheus.retry.max_attempts, 7);
        assert_eq!(c.webhooks[0].secret, Some(Secret("12345".into())));
        assert_eq!(c.detections[0].labels["tier"], "1");
    }

    #[test]
    fn unknown_key_error_names_path_not_a_misleading_line() {
        let err = parse(&format!("{MINIMAL}    stepp: 1m\n"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("detections[0]") && err.contains("stepp"),
            "{err}"
        );
        assert!(!err.contains(" at line "), "{err}");
    }

    #[test]
    fn env_overrides_apply() {
        let mut c = parse(MINIMAL).unwrap();
        c.apply_env(|v| match v {
            ENV_PROMETHEUS_URL => Some("http://10.0.0.1:9090".into()),
            ENV_ALERTMANAGER_URL => Some("http://127.0.0.1:9093".into()),
            ENV_DETECTOR_ADDR => Some("127.0.0.1:1234".into()),
            _ => None,
        })
        .unwrap();
        c.validate().unwrap();
        assert_eq!(c.prometheus.url, "http://10.0.0.1:9090");
        assert_eq!(c.alertmanager.unwrap().url, "http://127.0.0.1:9093");
        assert_eq!(c.server.addr.port(), 1234);
    }

    #[test]
    fn bad_detector_addr_is_named() {
        let mut c = parse(MINIMAL).unwrap();
        let err = c
            .apply_env(|v| (v == ENV_DETECTOR_ADDR).then(|| "nope".to_string()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("DETECTOR_ADDR"), "{err}");
    }
}
