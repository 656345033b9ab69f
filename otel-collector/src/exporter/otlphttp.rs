//! The `otlphttp` exporter: OTLP over HTTP (protobuf or JSON), all three signals.
//!
//! URLs: `<endpoint>/v1/traces`, `/v1/metrics`, `/v1/logs`, each replaceable by
//! `traces_endpoint` / `metrics_endpoint` / `logs_endpoint` (used as given). Bodies are encoded
//! and compressed once per batch. Status handling per the OTLP/HTTP specification: 2xx success;
//! 429, 502, 503, 504 retryable, honouring `Retry-After`; other statuses permanent; network
//! errors and timeouts retryable.
//!
//! TLS follows the URL scheme (`https://`); `tls.insecure: true` with an `https://` URL is a
//! config error (it cannot act). `tls.server_name_override` puts the name in the request URL (TLS
//! SNI, certificate check and `Host` header use it) and resolves it to the configured host.
//!
//! Tests: `cargo test -p otel-collector exporter::otlphttp` and `tests/export_otlphttp.rs`.

use super::otlp_common::{
    header_map, Compression, CompressionParams, Compressor, Headers, TlsClientConfig,
};
use super::queue::{Export, QueueConfig};
use super::retry::{http_status_retryable, parse_retry_after, ExportError, RetryConfig};
use crate::config::ComponentConfigError;
use crate::pipeline::{Signal, Telemetry};
use bytes::Bytes;
use futures::future::BoxFuture;
use serde::Deserialize;
use std::time::Duration;

/// Body encoding of the `otlphttp` exporter.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    /// `application/x-protobuf` (default).
    #[default]
    Proto,
    /// `application/json` (OTLP JSON mapping).
    Json,
}

/// Configuration of an `otlphttp` exporter.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OtlpHttpExporterConfig {
    /// Base URL (`http://host:4318`); the signal path is appended.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Full URL for traces, overriding `endpoint`.
    #[serde(default)]
    pub traces_endpoint: Option<String>,
    /// Full URL for metrics, overriding `endpoint`.
    #[serde(default)]
    pub metrics_endpoint: Option<String>,
    /// Full URL for logs, overriding `endpoint`.
    #[serde(default)]
    pub logs_endpoint: Option<String>,
    /// `proto` (default) or `json`.
    #[serde(default)]
    pub encoding: Encoding,
    /// TLS settings (for `https://` URLs).
    #[serde(default)]
    pub tls: TlsClientConfig,
    /// Extra request headers.
    #[serde(default)]
    pub headers: Headers,
    /// `gzip` (default), `zstd` or `none`.
    #[serde(default)]
    pub compression: Compression,
    /// Compression level.
    #[serde(default)]
    pub compression_params: CompressionParams,
    /// Deadline of one request (default 30s, as upstream).
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Retry policy.
    #[serde(default)]
    pub retry_on_failure: RetryConfig,
    /// In-memory queue.
    #[serde(default)]
    pub sending_queue: QueueConfig,
    /// Authenticator extension that signs every request (client side).
    #[serde(default)]
    pub auth: Option<crate::extension::auth::AuthRef>,
}

fn default_timeout() -> Duration {
    Duration::from_secs(30)
}

impl OtlpHttpExporterConfig {
    /// The URL for `signal`.
    ///
    /// # Errors
    /// Neither the per-signal key nor `endpoint` is set, or the URL is not http(s).
    pub fn url(&self, signal: Signal) -> Result<reqwest::Url, ComponentConfigError> {
        let (key, specific) = match signal {
            Signal::Traces => ("traces_endpoint", &self.traces_endpoint),
            Signal::Metrics => ("metrics_endpoint", &self.metrics_endpoint),
            Signal::Logs => ("logs_endpoint", &self.logs_endpoint),
        };
        let (key, text) = match (specific, &self.endpoint) {
            (Some(s), _) => (key, s.clone()),
            (None, Some(base)) => (
                "endpoint",
                format!("{}/v1/{}", base.trim_end_matches('/'), signal.as_str()),
            ),
            (None, None) => {
                return Err(ComponentConfigError::new(
                    "endpoint",
                    format!("is required (or set {key}); for example http://collector:4318"),
                ))
            }
        };
        let url = reqwest::Url::parse(&text).map_err(|e| {
            ComponentConfigError::new(
                key,
                format!("{text:?} is not a URL ({e}); write http://host:4318"),
            )
        })?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(ComponentConfigError::new(
                key,
                format!("{text:?} must be an http:// or https:// URL with a host"),
            ));
        }
        Ok(url)
    }

    /// Checks what serde cannot, naming the key.
    ///
    /// # Errors
    /// The key path and the fix.
    pub fn validate(&self) -> Result<(), ComponentConfigError> {
        for s in Signal::ALL {
            self.url(s)?;
        }
        self.tls.validate()?;
        self.check_tls_keys()?;
        header_map(&self.headers)?;
        Compressor::new(self.compression, &self.compression_params)?;
        if self.timeout.is_zero() {
            return Err(ComponentConfigError::new(
                "timeout",
                "must be greater than 0 (for example 30s)",
            ));
        }
        self.retry_on_failure.validate()?;
        self.sending_queue.validate()
    }
}

impl OtlpHttpExporterConfig {
    /// The hosts of the `https://` URLs (deduplicated).
    fn tls_hosts(&self) -> Vec<String> {
        let mut hosts: Vec<String> = Signal::ALL
            .iter()
            .filter_map(|s| self.url(*s).ok())
            .filter(|u| u.scheme() == "https")
            .filter_map(|u| u.host_str().map(str::to_string))
            .collect();
        hosts.sort();
        hosts.dedup();
        hosts
    }

    /// `tls.insecure` and `tls.server_name_override` must be able to act on the URLs: the scheme
    /// decides TLS here, so `insecure: true` contradicts an `https://` URL, and a server name
    /// override needs exactly one TLS host.
    fn check_tls_keys(&self) -> Result<(), ComponentConfigError> {
        let hosts = self.tls_hosts();
        if self.tls.insecure && !hosts.is_empty() {
            return Err(ComponentConfigError::new(
                "tls.insecure",
                format!(
                    "is true but the endpoint of {} is https://; the URL scheme decides TLS for otlphttp: write http:// for plain text, or remove tls.insecure",
                    hosts.join(", ")
                ),
            ));
        }
        if let Some(name) = &self.tls.server_name_override {
            let why = if name.parse::<std::net::IpAddr>().is_ok()
                || reqwest::Url::parse(&format!("https://{name}/")).map_or(true, |u| {
                    u.host_str() != Some(name.to_ascii_lowercase().as_str())
                }) {
                Some(format!("{name:?} is not a DNS name; give the name the server's certificate is issued for"))
            } else if hosts.is_empty() {
                Some("has nothing to act on: no endpoint is https://".to_string())
            } else if hosts.len() > 1 {
                Some(format!(
                    "applies to one TLS host, but the endpoints name {}; use one exporter per host",
                    hosts.join(", ")
                ))
            } else {
                None
            };
            if let Some(why) = why {
                return Err(ComponentConfigError::new("tls.server_name_override", why));
            }
        }
        Ok(())
    }

    /// The URLs requests go to: with `tls.server_name_override` the `https://` URLs name the
    /// override (so TLS sends it as SNI and verifies the certificate against it), and
    /// [`OverrideResolver`] connects that name to the configured host.
    fn request_urls(&self) -> Result<[reqwest::Url; 3], ComponentConfigError> {
        let urls = Signal::ALL.map(|s| self.url(s));
        let mut out = Vec::with_capacity(3);
        for u in urls {
            let mut u = u?;
            if let Some(name) = &self.tls.server_name_override {
                if u.scheme() == "https" {
                    u.set_host(Some(name)).map_err(|e| {
                        ComponentConfigError::new("tls.server_name_override", e.to_string())
                    })?;
                }
            }
            out.push(u);
        }
        out.try_into()
            .map_err(|_| ComponentConfigError::new("endpoint", "three URLs expected"))
    }
}

/// DNS for a client with `tls.server_name_override`: the override name resolves to the
/// configured endpoint host (looked up at every connection, so a moved service is followed);
/// every other name resolves as usual.
#[derive(Debug)]
struct OverrideResolver {
    /// The override (the name in the request URLs).
    name: String,
    /// The endpoint's host: an IP address or a DNS name.
    host: String,
}

impl reqwest::dns::Resolve for OverrideResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = if name.as_str().eq_ignore_ascii_case(&self.name) {
            self.host.clone()
        } else {
            name.as_str().to_string()
        };
        Box::pin(async move {
            let literal = host.trim_start_matches('[').trim_end_matches(']');
            let addrs: Vec<std::net::SocketAddr> = match literal.parse::<std::net::IpAddr>() {
                Ok(ip) => vec![std::net::SocketAddr::new(ip, 0)],
                Err(_) => tokio::net::lookup_host((host.as_str(), 0)).await?.collect(),
            };
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// One batch, encoded and compressed, with its URL.
#[derive(Debug)]
pub struct HttpRequest {
    signal: Signal,
    body: Bytes,
}

/// The HTTP wire side of the `otlphttp` exporter.
#[derive(Debug)]
pub struct OtlpHttp {
    client: reqwest::Client,
    urls: [reqwest::Url; 3],
    encoding: Encoding,
    compressor: Compressor,
    headers: http::HeaderMap,
    auth: Option<std::sync::Arc<dyn crate::extension::auth::ClientAuthenticator>>,
}

impl OtlpHttp {
    /// Builds the HTTP client.
    ///
    /// # Errors
    /// Unreadable TLS files, invalid URLs.
    pub fn new(cfg: &OtlpHttpExporterConfig) -> Result<Self, ComponentConfigError> {
        let read = |key: &str, p: &str| {
            std::fs::read(p)
                .map_err(|e| ComponentConfigError::new(key, format!("cannot read {p:?}: {e}")))
        };
        let mut b = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .connect_timeout(cfg.timeout)
            .tcp_nodelay(true)
            .pool_max_idle_per_host(cfg.sending_queue.num_consumers.max(1))
            .danger_accept_invalid_certs(cfg.tls.insecure_skip_verify);
        if let Some(ca) = &cfg.tls.ca_file {
            let certs = reqwest::Certificate::from_pem_bundle(&read("tls.ca_file", ca)?)
                .map_err(|e| ComponentConfigError::new("tls.ca_file", e.to_string()))?;
            b = b.tls_certs_only(certs);
        }
        if let (Some(c), Some(k)) = (&cfg.tls.cert_file, &cfg.tls.key_file) {
            let mut pem = read("tls.cert_file", c)?;
            pem.extend_from_slice(&read("tls.key_file", k)?);
            let id = reqwest::Identity::from_pem(&pem)
                .map_err(|e| ComponentConfigError::new("tls.cert_file", e.to_string()))?;
            b = b.identity(id);
        }
        if let (Some(name), [host]) = (&cfg.tls.server_name_override, &cfg.tls_hosts()[..]) {
            b = b.dns_resolver(std::sync::Arc::new(OverrideResolver {
                name: name.clone(),
                host: host.clone(),
            }));
        }
        let client = b
            .build()
            .map_err(|e| ComponentConfigError::new("tls", e.to_string()))?;
        Ok(OtlpHttp {
            client,
            urls: cfg.request_urls()?,
            encoding: cfg.encoding,
            compressor: Compressor::new(cfg.compression, &cfg.compression_params)?,
            headers: header_map(&cfg.headers)?,
            auth: None,
        })
    }

    /// Signs every request with `auth` (an authenticator extension's client side).
    pub fn with_auth(
        mut self,
        auth: Option<std::sync::Arc<dyn crate::extension::auth::ClientAuthenticator>>,
    ) -> Self {
        self.auth = auth;
        self
    }

    fn url(&self, s: Signal) -> &reqwest::Url {
        match s {
            Signal::Traces => &self.urls[0],
            Signal::Metrics => &self.urls[1],
            Signal::Logs => &self.urls[2],
        }
    }

    async fn call(&self, req: &HttpRequest) -> Result<(), ExportError> {
        let content_type = match self.encoding {
            Encoding::Proto => "application/x-protobuf",
            Encoding::Json => "application/json",
        };
        let mut rb = self
            .client
            .post(self.url(req.signal).clone())
            .headers(self.headers.clone())
            .header(http::header::CONTENT_TYPE, content_type)
            .body(req.body.clone());
        if let Some(enc) = self.compressor.kind.encoding() {
            rb = rb.header(http::header::CONTENT_ENCODING, enc);
        }
        if let Some(a) = &self.auth {
            let (name, value) = a.header();
            rb = rb.header(name, value);
        }
        let resp = rb.send().await.map_err(|e| {
            ExportError::retryable(format!("sending to {}: {e}", self.url(req.signal)), None)
        })?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let retry_after = resp
            .headers()
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        let body = resp.bytes().await.unwrap_or_default();
        let excerpt = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
        let msg = format!(
            "HTTP {} from {}: {excerpt}",
            status.as_u16(),
            self.url(req.signal)
        );
        if http_status_retryable(status.as_u16()) {
            Err(ExportError::retryable(msg, retry_after))
        } else {
            Err(ExportError::permanent(msg))
        }
    }
}

impl Export for OtlpHttp {
    type Prepared = HttpRequest;

    fn prepare(&self, data: Telemetry) -> Result<HttpRequest, ExportError> {
        let signal = data.signal();
        let raw = match self.encoding {
            Encoding::Proto => super::otlp::encode_proto(&data),
            Encoding::Json => match &data {
                Telemetry::Traces(r) => serde_json::to_vec(r),
                Telemetry::Metrics(r) => serde_json::to_vec(r),
                Telemetry::Logs(r) => serde_json::to_vec(r),
            }
            .map_err(|e| ExportError::permanent(format!("encoding JSON: {e}")))?,
        };
        drop(data);
        let body = if self.compressor.kind == Compression::None {
            raw
        } else {
            self.compressor
                .compress_with_prefix(&raw, 0)
                .map_err(|e| ExportError::permanent(format!("compressing: {e}")))?
        };
        Ok(HttpRequest {
            signal,
            body: Bytes::from(body),
        })
    }

    fn send<'a>(&'a self, req: &'a HttpRequest) -> BoxFuture<'a, Result<(), ExportError>> {
        Box::pin(self.call(req))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(y: &str) -> OtlpHttpExporterConfig {
        serde_yaml::from_str(y).unwrap()
    }

    #[test]
    fn urls_from_endpoint_and_overrides() {
        let c = cfg("endpoint: http://a:4318/\nlogs_endpoint: https://logs.example/ingest");
        assert_eq!(
            c.url(Signal::Traces).unwrap().as_str(),
            "http://a:4318/v1/traces"
        );
        assert_eq!(
            c.url(Signal::Metrics).unwrap().as_str(),
            "http://a:4318/v1/metrics"
        );
        assert_eq!(
            c.url(Signal::Logs).unwrap().as_str(),
            "https://logs.example/ingest"
        );
        c.validate().unwrap();
    }

    #[test]
    fn missing_or_bad_endpoint_names_the_key() {
        assert_eq!(
            cfg("traces_endpoint: http://a/x")
                .validate()
                .unwrap_err()
                .path,
            "endpoint"
        );
        assert_eq!(
            cfg("endpoint: a:4318").validate().unwrap_err().path,
            "endpoint"
        );
        assert_eq!(
            cfg("endpoint: http://a:1\nmetrics_endpoint: ftp://x")
                .validate()
                .unwrap_err()
                .path,
            "metrics_endpoint"
        );
    }

    #[test]
    fn tls_insecure_must_agree_with_the_url_scheme() {
        cfg("endpoint: http://a:4318\ntls: {insecure: true}")
            .validate()
            .unwrap();
        let e = cfg("endpoint: https://a:4318\ntls: {insecure: true}")
            .validate()
            .unwrap_err();
        assert_eq!(e.path, "tls.insecure");
        assert!(e.message.contains("https://"), "{e}");
        let e =
            cfg("endpoint: http://a:4318\nlogs_endpoint: https://b/logs\ntls: {insecure: true}")
                .validate()
                .unwrap_err();
        assert_eq!(e.path, "tls.insecure");
    }

    #[test]
    fn server_name_override_needs_one_tls_host_and_a_dns_name() {
        let c =
            cfg("endpoint: https://10.0.0.7:4318\ntls: {server_name_override: collector.example}");
        c.validate().unwrap();
        let urls = c.request_urls().unwrap();
        assert_eq!(urls[0].as_str(), "https://collector.example:4318/v1/traces");
        assert_eq!(c.tls_hosts(), vec!["10.0.0.7".to_string()]);
        for (yaml, why) in [
            ("endpoint: http://a:4318\ntls: {server_name_override: x.example}", "nothing to act on"),
            ("endpoint: https://a:4318\nlogs_endpoint: https://b/l\ntls: {server_name_override: x.example}", "one TLS host"),
            ("endpoint: https://a:4318\ntls: {server_name_override: 10.0.0.1}", "not a DNS name"),
            ("endpoint: https://a:4318\ntls: {server_name_override: \"a b\"}", "not a DNS name"),
        ] {
            let e = cfg(yaml).validate().unwrap_err();
            assert_eq!(e.path, "tls.server_name_override", "{yaml}");
            assert!(e.message.contains(why), "{yaml}: {e}");
        }
    }

    #[test]
    fn defaults() {
        let c = cfg("endpoint: http://a:4318");
        assert_eq!(c.encoding, Encoding::Proto);
        assert_eq!(c.compression, Compression::Gzip);
        assert_eq!(c.timeout, Duration::from_secs(30));
    }
}
