//! Prometheus HTTP API client: `GET /api/v1/query_range` with auth headers, TLS options, a
//! timeout per attempt and retries with exponential backoff and jitter on connection errors,
//! timeouts, 429 and 5xx.
//!
//! Tests: `cargo test -p anomaly-detector prometheus::` (response parsing, retry against a test
//! HTTP server that answers 503 first); the real Prometheus is exercised by
//! `tests/service_live.rs`.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::config::{PrometheusConfig, RetryConfig};
use crate::retry::backoff;

/// Labels of one series, sorted by name.
pub type Labels = BTreeMap<String, String>;

/// One series of a range query result.
#[derive(Debug, Clone, PartialEq)]
pub struct RangeSeries {
    /// The series labels (`__name__` included when the query kept it).
    pub labels: Labels,
    /// `(unix seconds, value)` in time order; `NaN`/`±Inf` are kept as such.
    pub points: Vec<(i64, f64)>,
}

/// Why a query failed. [`QueryError::reason`] is the `reason` label of the failure metric.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// TCP connect/TLS failed (Prometheus down or unreachable).
    #[error("cannot connect to Prometheus at {url}: {message}")]
    Connect {
        /// The request URL without query string.
        url: String,
        /// The underlying error.
        message: String,
    },
    /// One attempt took longer than `prometheus.timeout`.
    #[error("Prometheus query timed out after {0:?}")]
    Timeout(Duration),
    /// Prometheus answered with an HTTP error status.
    #[error("Prometheus answered HTTP {status}: {body}")]
    Status {
        /// The status code.
        status: u16,
        /// Start of the body (Prometheus puts the PromQL error there).
        body: String,
    },
    /// The body was not a Prometheus matrix response.
    #[error("cannot decode Prometheus response: {0}")]
    Decode(String),
    /// Another transport error.
    #[error("request to Prometheus failed: {0}")]
    Transport(String),
    /// Shutdown interrupted the query.
    #[error("query cancelled by shutdown")]
    Cancelled,
}

impl QueryError {
    /// Short stable reason for metrics: `connect`, `timeout`, `http_5xx`, `http_4xx`, `decode`,
    /// `transport`, `cancelled`.
    pub fn reason(&self) -> &'static str {
        match self {
            QueryError::Connect { .. } => "connect",
            QueryError::Timeout(_) => "timeout",
            QueryError::Status { status, .. } if *status >= 500 || *status == 429 => "http_5xx",
            QueryError::Status { .. } => "http_4xx",
            QueryError::Decode(_) => "decode",
            QueryError::Transport(_) => "transport",
            QueryError::Cancelled => "cancelled",
        }
    }

    /// Whether another attempt may succeed.
    pub fn retryable(&self) -> bool {
        match self {
            QueryError::Connect { .. } | QueryError::Timeout(_) | QueryError::Transport(_) => true,
            QueryError::Status { status, .. } => *status >= 500 || *status == 429,
            QueryError::Decode(_) | QueryError::Cancelled => false,
        }
    }
}

/// Errors building the client from its configuration.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// A TLS file could not be read or parsed.
    #[error("prometheus.tls.{key}: cannot use {path}: {message}")]
    Tls {
        /// Which key.
        key: &'static str,
        /// The file.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// A header name or value is invalid.
    #[error("invalid header {0:?}: use a valid HTTP header name and value")]
    Header(String),
    /// The URL does not parse.
    #[error("invalid URL {0:?}: write e.g. http://127.0.0.1:9090")]
    Url(String),
    /// reqwest refused the settings.
    #[error("cannot build HTTP client: {0}")]
    Build(String),
}

/// Builds a header map from configuration.
///
/// # Errors
/// [`ClientError::Header`] for an invalid name or value.
pub fn header_map(headers: &BTreeMap<String, String>) -> Result<HeaderMap, ClientError> {
    let mut map = HeaderMap::new();
    for (k, v) in headers {
        let name =
            HeaderName::from_bytes(k.as_bytes()).map_err(|_| ClientError::Header(k.clone()))?;
        let value = HeaderValue::from_str(v).map_err(|_| ClientError::Header(k.clone()))?;
        map.insert(name, value);
    }
    Ok(map)
}

/// One series of an instant query result.
#[derive(Debug, Clone, PartialEq)]
pub struct InstantSample {
    /// The series labels.
    pub labels: Labels,
    /// Unix seconds of the evaluation.
    pub timestamp: i64,
    /// The value (`NaN`/`±Inf` kept).
    pub value: f64,
}

/// A Prometheus client; cheap to clone.
#[derive(Debug, Clone)]
pub struct PrometheusClient {
    http: reqwest::Client,
    query_range_url: reqwest::Url,
    query_url: reqwest::Url,
    timeout: Duration,
    retry: RetryConfig,
}

impl PrometheusClient {
    /// Builds a client from `prometheus:` configuration.
    ///
    /// # Errors
    /// [`ClientError`] when a TLS file, header or the URL is unusable.
    pub fn new(config: &PrometheusConfig) -> Result<Self, ClientError> {
        let mut builder = reqwest::Client::builder()
            .default_headers(header_map(&config.headers)?)
            .connect_timeout(config.timeout.min(Duration::from_secs(5)))
            .user_agent(concat!("anomaly-detector/", env!("CARGO_PKG_VERSION")));
        let tls = &config.tls;
        if let Some(ca) = &tls.ca_file {
            let pem = std::fs::read(ca).map_err(|e| tls_err("ca_file", ca, e))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| tls_err("ca_file", ca, e))?;
            if certs.is_empty() {
                return Err(tls_err("ca_file", ca, "no PEM certificate in the file"));
            }
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        if let (Some(cert), Some(key)) = (&tls.cert_file, &tls.key_file) {
            let mut pem = std::fs::read(cert).map_err(|e| tls_err("cert_file", cert, e))?;
            pem.push(b'\n');
            pem.extend(std::fs::read(key).map_err(|e| tls_err("key_file", key, e))?);
            let id =
                reqwest::Identity::from_pem(&pem).map_err(|e| tls_err("cert_file", cert, e))?;
            builder = builder.identity(id);
        }
        if tls.insecure_skip_verify {
            builder = builder.danger_accept_invalid_certs(true);
        }
        let http = builder
            .build()
            .map_err(|e| ClientError::Build(e.to_string()))?;
        let base = config.url.trim_end_matches('/');
        let query_range_url = reqwest::Url::parse(&format!("{base}/api/v1/query_range"))
            .map_err(|_| ClientError::Url(config.url.clone()))?;
        let query_url = reqwest::Url::parse(&format!("{base}/api/v1/query"))
            .map_err(|_| ClientError::Url(config.url.clone()))?;
        Ok(Self {
            http,
            query_range_url,
            query_url,
            timeout: config.timeout,
            retry: config.retry.clone(),
        })
    }

    /// URL of the Prometheus graph page for `query` (used as the alerts' `generatorURL`).
    pub fn graph_url(&self, query: &str) -> String {
        let mut url = self.query_range_url.clone();
        url.set_path(&url.path().replace("/api/v1/query_range", "/graph"));
        url.query_pairs_mut()
            .clear()
            .append_pair("g0.expr", query)
            .append_pair("g0.tab", "0");
        url.to_string()
    }

    /// Runs `query` over `[start, end]` (unix seconds) at `step`, retrying transient errors.
    ///
    /// # Errors
    /// The last [`QueryError`] when every attempt failed or the error is not retryable.
    pub async fn query_range(
        &self,
        query: &str,
        start: i64,
        end: i64,
        step: Duration,
        cancel: &CancellationToken,
    ) -> Result<Vec<RangeSeries>, QueryError> {
        let mut url = self.query_range_url.clone();
        url.query_pairs_mut()
            .append_pair("query", query)
            .append_pair("start", &start.to_string())
            .append_pair("end", &end.to_string())
            .append_pair("step", &format!("{}", step.as_secs_f64()))
            .append_pair("timeout", &format!("{}s", self.timeout.as_secs().max(1)));
        let body = self.get_with_retries(url, cancel).await?;
        parse_matrix(&body)
    }

    /// Runs the instant `query` at `time` (unix seconds), retrying transient errors.
    ///
    /// # Errors
    /// The last [`QueryError`] when every attempt failed or the error is not retryable.
    pub async fn query_instant(
        &self,
        query: &str,
        time: i64,
        cancel: &CancellationToken,
    ) -> Result<Vec<InstantSample>, QueryError> {
        let mut url = self.query_url.clone();
        url.query_pairs_mut()
            .append_pair("query", query)
            .append_pair("time", &time.to_string())
            .append_pair("timeout", &format!("{}s", self.timeout.as_secs().max(1)));
        let body = self.get_with_retries(url, cancel).await?;
        parse_vector(&body)
    }

    async fn get_with_retries(
        &self,
        url: reqwest::Url,
        cancel: &CancellationToken,
    ) -> Result<bytes::Bytes, QueryError> {
        let mut attempt = 0;
        loop {
            let result = tokio::select! {
                r = self.attempt(url.clone()) => r,
                _ = cancel.cancelled() => return Err(QueryError::Cancelled),
            };
            match result {
                Ok(series) => return Ok(series),
                Err(e) if e.retryable() && attempt + 1 < self.retry.max_attempts => {
                    let wait = backoff(&self.retry, attempt);
                    tracing::debug!(error = %e, attempt, ?wait, "prometheus query failed, retrying");
                    attempt += 1;
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = cancel.cancelled() => return Err(QueryError::Cancelled),
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn attempt(&self, url: reqwest::Url) -> Result<bytes::Bytes, QueryError> {
        let endpoint = format!(
            "{}://{}{}",
            url.scheme(),
            url.host_str().unwrap_or(""),
            url.port().map(|p| format!(":{p}")).unwrap_or_default()
        );
        let send = self.http.get(url).send();
        let response = match tokio::time::timeout(self.timeout, send).await {
            Err(_) => return Err(QueryError::Timeout(self.timeout)),
            Ok(Err(e)) if e.is_connect() => {
                return Err(QueryError::Connect {
                    url: endpoint,
                    message: error_chain(&e),
                })
            }
            Ok(Err(e)) if e.is_timeout() => return Err(QueryError::Timeout(self.timeout)),
            Ok(Err(e)) => return Err(QueryError::Transport(error_chain(&e))),
            Ok(Ok(r)) => r,
        };
        let status = response.status();
        let body = match tokio::time::timeout(self.timeout, response.bytes()).await {
            Err(_) => return Err(QueryError::Timeout(self.timeout)),
            Ok(Err(e)) => return Err(QueryError::Transport(error_chain(&e))),
            Ok(Ok(b)) => b,
        };
        if !status.is_success() {
            let text = String::from_utf8_lossy(&body[..body.len().min(512)]).into_owned();
            return Err(QueryError::Status {
                status: status.as_u16(),
                body: text,
            });
        }
        Ok(body)
    }
}

fn tls_err(key: &'static str, path: &std::path::Path, e: impl std::fmt::Display) -> ClientError {
    ClientError::Tls {
        key,
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

/// The envelope of every Prometheus API answer.
#[derive(Deserialize)]
struct Envelope<D> {
    status: String,
    #[serde(default = "Option::default")]
    data: Option<D>,
    #[serde(default)]
    error: Option<String>,
}

/// `data` of an instant or range answer: its type and results.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Data<R> {
    result_type: String,
    result: Vec<R>,
}

/// Decodes `body`, checks `status: success` and that `resultType` is `expected`.
fn decode<'a, R: Deserialize<'a>>(body: &'a [u8], expected: &str) -> Result<Vec<R>, QueryError> {
    let r: Envelope<Data<R>> =
        serde_json::from_slice(body).map_err(|e| QueryError::Decode(e.to_string()))?;
    if r.status != "success" {
        return Err(QueryError::Decode(format!(
            "status {}: {}",
            r.status,
            r.error.unwrap_or_default()
        )));
    }
    let data = r
        .data
        .ok_or_else(|| QueryError::Decode("no data in response".into()))?;
    if data.result_type != expected {
        return Err(QueryError::Decode(format!(
            "expected a {expected}, got {}",
            data.result_type
        )));
    }
    Ok(data.result)
}

#[derive(Deserialize)]
struct VectorEntry<'a> {
    metric: Labels,
    #[serde(borrow)]
    value: (f64, std::borrow::Cow<'a, str>),
}

/// Parses an instant `query` response body (`resultType: vector` or `scalar`).
///
/// # Errors
/// [`QueryError::Decode`] when the body is not a successful vector or scalar response.
pub fn parse_vector(body: &[u8]) -> Result<Vec<InstantSample>, QueryError> {
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| QueryError::Decode(e.to_string()))?;
    if v["data"]["resultType"] == "scalar" {
        let t = v["data"]["result"][0].as_f64().unwrap_or(0.0);
        let x = v["data"]["result"][1]
            .as_str()
            .map(parse_value)
            .unwrap_or(f64::NAN);
        return Ok(vec![InstantSample {
            labels: Labels::new(),
            timestamp: t.round() as i64,
            value: x,
        }]);
    }
    Ok(decode::<VectorEntry<'_>>(body, "vector")?
        .into_iter()
        .map(|e| InstantSample {
            labels: e.metric,
            timestamp: e.value.0.round() as i64,
            value: parse_value(&e.value.1),
        })
        .collect())
}

#[derive(Deserialize)]
struct MatrixEntry<'a> {
    metric: Labels,
    /// Sample values are JSON strings without escapes: borrowed, not allocated.
    #[serde(default, borrow)]
    values: Vec<(f64, std::borrow::Cow<'a, str>)>,
}

/// Parses a `query_range` response body (`resultType: matrix`).
///
/// # Errors
/// [`QueryError::Decode`] when the body is not a successful matrix response.
pub fn parse_matrix(body: &[u8]) -> Result<Vec<RangeSeries>, QueryError> {
    Ok(decode::<MatrixEntry<'_>>(body, "matrix")?
        .into_iter()
        .map(|m| RangeSeries {
            labels: m.metric,
            points: m
                .values
                .into_iter()
                .map(|(t, v)| (t.round() as i64, parse_value(&v)))
                .collect(),
        })
        .collect())
}

fn parse_value(v: &str) -> f64 {
    match v {
        "NaN" => f64::NAN,
        "+Inf" | "Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        other => other.parse().unwrap_or(f64::NAN),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[test]
    fn parses_matrix_with_special_values() {
        let body = br#"{"status":"success","data":{"resultType":"matrix","result":[
            {"metric":{"job":"a"},"values":[[100,"1.5"],[160,"NaN"],[220,"+Inf"]]},
            {"metric":{"job":"b"},"values":[[100.0,"2"]]}]}}"#;
        let s = parse_matrix(body).unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].labels["job"], "a");
        assert_eq!(s[0].points[0], (100, 1.5));
        assert!(s[0].points[1].1.is_nan());
        assert!(s[0].points[2].1.is_infinite());
        assert_eq!(s[1].points, vec![(100, 2.0)]);
    }

    #[test]
    fn parses_vector_and_scalar() {
        let body = br#"{"status":"success","data":{"resultType":"vector","result":[
            {"metric":{"job":"a"},"value":[100,"1.5"]},{"metric":{},"value":[100,"NaN"]}]}}"#;
        let v = parse_vector(body).unwrap();
        assert_eq!(v[0].labels["job"], "a");
        assert_eq!((v[0].timestamp, v[0].value), (100, 1.5));
        assert!(v[1].value.is_nan());
        let s = parse_vector(
            br#"{"status":"success","data":{"resultType":"scalar","result":[5,"2"]}}"#,
        )
        .unwrap();
        assert_eq!(s[0].value, 2.0);
        assert!(parse_vector(br#"{"status":"error","error":"bad"}"#).is_err());
    }

    #[test]
    fn rejects_error_and_vector() {
        let err =
            parse_matrix(br#"{"status":"error","errorType":"bad_data","error":"parse error"}"#)
                .unwrap_err();
        assert!(err.to_string().contains("parse error"));
        let err =
            parse_matrix(br#"{"status":"success","data":{"resultType":"vector","result":[]}}"#)
                .unwrap_err();
        assert!(err.to_string().contains("matrix"));
    }

    fn config(url: String) -> PrometheusConfig {
        serde_yaml::from_str(&format!(
            "url: '{url}'\ntimeout: 2s\nretry: {{max_attempts: 3, initial_backoff: 10ms, max_backoff: 20ms}}\nheaders: {{X-Scope-OrgID: tenant1}}"
        ))
        .unwrap()
    }

    /// A test HTTP server stands in for Prometheus here only to inject 503s, which a real
    /// Prometheus cannot be made to answer on demand.
    #[tokio::test]
    async fn retries_5xx_then_succeeds_and_sends_headers() {
        let hits = Arc::new(AtomicUsize::new(0));
        let h = hits.clone();
        let app = axum::Router::new().route(
            "/api/v1/query_range",
            axum::routing::get(move |headers: axum::http::HeaderMap| {
                let h = h.clone();
                async move {
                    assert_eq!(headers["x-scope-orgid"], "tenant1");
                    if h.fetch_add(1, Ordering::SeqCst) < 2 {
                        (axum::http::StatusCode::SERVICE_UNAVAILABLE, "busy".to_string())
                    } else {
                        (
                            axum::http::StatusCode::OK,
                            r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[1,"3"]]}]}}"#.to_string(),
                        )
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move { axum::serve(listener, app).await });
        let client = PrometheusClient::new(&config(format!("http://{addr}"))).unwrap();
        let cancel = CancellationToken::new();
        let s = client
            .query_range("up", 0, 60, Duration::from_secs(60), &cancel)
            .await
            .unwrap();
        assert_eq!(s[0].points, vec![(1, 3.0)]);
        assert_eq!(hits.load(Ordering::SeqCst), 3);
        server.abort();
    }

    #[tokio::test]
    async fn connection_refused_is_a_connect_error_after_retries() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let client = PrometheusClient::new(&config(format!("http://{addr}"))).unwrap();
        let err = client
            .query_range(
                "up",
                0,
                60,
                Duration::from_secs(60),
                &CancellationToken::new(),
            )
            .await
            .unwrap_err();
        assert_eq!(err.reason(), "connect", "{err}");
    }

    #[test]
    fn unusable_tls_files_name_the_key() {
        let dir = std::env::temp_dir().join(format!("ad-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let bad = dir.join("ca.pem");
        std::fs::write(&bad, "not a certificate").unwrap();
        let mut c = config("https://127.0.0.1:9090".into());
        c.tls.ca_file = Some(bad.clone());
        let err = PrometheusClient::new(&c).unwrap_err().to_string();
        assert!(
            err.contains("prometheus.tls.ca_file") && err.contains("ca.pem"),
            "{err}"
        );
        let mut c = config("https://127.0.0.1:9090".into());
        c.tls.cert_file = Some(bad.clone());
        c.tls.key_file = Some(bad);
        let err = PrometheusClient::new(&c).unwrap_err().to_string();
        assert!(err.contains("prometheus.tls.cert_file"), "{err}");
        let mut c = config("https://127.0.0.1:9090".into());
        c.tls.insecure_skip_verify = true;
        assert!(PrometheusClient::new(&c).is_ok());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn graph_url_encodes_query() {
        let c = PrometheusClient::new(&config("http://127.0.0.1:9090/prom".into())).unwrap();
        let u = c.graph_url("rate(x[5m])");
        assert!(
            u.starts_with("http://127.0.0.1:9090/prom/graph?g0.expr=rate%28x%5B5m%5D%29"),
            "{u}"
        );
    }
}
