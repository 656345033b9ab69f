//! Alert payloads and delivery: Alertmanager (`POST /api/v2/alerts`, a JSON array of
//! `postableAlert`) and generic webhooks (one JSON object per batch, signed with
//! `X-Signature-256: sha256=<hex HMAC-SHA256 of the body>`). Each sink runs as its own task fed
//! through a bounded channel, so a slow receiver never delays an evaluation cycle; every POST is
//! retried with exponential backoff and jitter; webhooks deduplicate by fingerprint (a firing
//! alert is sent again only after `repeat_interval`, a resolution only once).
//!
//! Tests: `cargo test -p anomaly-detector alert::` and `tests/service_alert_schema.rs` (payload
//! against Alertmanager's v2 schema, signature verification).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use hmac::{Hmac, KeyInit, Mac};
use serde::Serialize;
use sha2::Sha256;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::{AlertmanagerConfig, RetryConfig, WebhookConfig};
use crate::metrics::Metrics;
use crate::prometheus::{header_map, ClientError, Labels};
use crate::retry::backoff;

/// Signature header of generic webhooks.
pub const SIGNATURE_HEADER: &str = "X-Signature-256";
/// `alertname` label of every alert.
pub const ALERT_NAME: &str = "AnomalyDetected";
/// Batches waiting per sink before new ones are dropped (and counted).
const SINK_QUEUE: usize = 256;
/// Sink name used in metrics for Alertmanager.
pub const ALERTMANAGER_SINK: &str = "alertmanager";

/// Firing or resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertStatus {
    /// The series is anomalous.
    Firing,
    /// The series is back to normal (or gone).
    Resolved,
}

impl AlertStatus {
    /// `firing` or `resolved`.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertStatus::Firing => "firing",
            AlertStatus::Resolved => "resolved",
        }
    }
}

/// One alert in Alertmanager's `postableAlert` shape.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Alert {
    /// Identifying labels (`alertname`, `severity`, `detection`, the series labels, extras).
    pub labels: Labels,
    /// Human-readable annotations.
    pub annotations: Labels,
    /// RFC 3339 start of the anomaly.
    #[serde(rename = "startsAt")]
    pub starts_at: String,
    /// RFC 3339 end: in the future while firing (so Alertmanager expires it if we die), now when
    /// resolved.
    #[serde(rename = "endsAt")]
    pub ends_at: String,
    /// Link to the series in Prometheus.
    #[serde(rename = "generatorURL")]
    pub generator_url: String,
}

/// An alert on its way to the sinks.
#[derive(Debug, Clone)]
pub struct AlertEvent {
    /// The payload.
    pub alert: Alert,
    /// Firing or resolved.
    pub status: AlertStatus,
    /// Stable hash of the labels.
    pub fingerprint: String,
    /// Send to Alertmanager.
    pub to_alertmanager: bool,
    /// Names of the webhooks that get it.
    pub webhooks: Arc<[String]>,
}

/// The JSON body POSTed to a generic webhook.
#[derive(Debug, Serialize)]
pub struct WebhookPayload<'a> {
    /// Payload format version.
    pub version: &'static str,
    /// Name of the webhook in the config.
    pub receiver: &'a str,
    /// `firing` when any alert in the batch fires, else `resolved`.
    pub status: AlertStatus,
    /// The alerts.
    pub alerts: Vec<WebhookAlert<'a>>,
}

/// One alert inside a [`WebhookPayload`]: the Alertmanager fields plus status and fingerprint.
#[derive(Debug, Serialize)]
pub struct WebhookAlert<'a> {
    /// Firing or resolved.
    pub status: AlertStatus,
    /// Stable hash of the labels.
    pub fingerprint: &'a str,
    /// Same fields as sent to Alertmanager.
    #[serde(flatten)]
    pub alert: &'a Alert,
}

/// RFC 3339 text of `t` with millisecond precision.
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// RFC 3339 text of unix seconds.
pub fn rfc3339_secs(secs: i64) -> String {
    rfc3339(SystemTime::UNIX_EPOCH + Duration::from_secs(secs.max(0) as u64))
}

/// FNV-1a 64 of the sorted labels, as 16 hex digits; stable across runs and versions.
pub fn fingerprint(labels: &Labels) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (k, v) in labels {
        for b in k.bytes().chain([0xff]).chain(v.bytes()).chain([0xff]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}

/// `sha256=<hex>` HMAC-SHA256 of `body` with `secret`: the `X-Signature-256` header value.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(secret).expect("HMAC accepts keys of any length");
    mac.update(body);
    let bytes = mac.finalize().into_bytes();
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256=");
    for b in bytes.iter() {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// Checks a `sha256=<hex>` signature in constant time (for receivers and tests).
pub fn verify(secret: &[u8], body: &[u8], signature: &str) -> bool {
    let Some(hex) = signature.strip_prefix("sha256=") else {
        return false;
    };
    if hex.len() != 64 {
        return false;
    }
    let mut expected = Vec::with_capacity(32);
    for i in (0..64).step_by(2) {
        match u8::from_str_radix(&hex[i..i + 2], 16) {
            Ok(b) => expected.push(b),
            Err(_) => return false,
        }
    }
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(secret).expect("HMAC accepts keys of any length");
    mac.update(body);
    mac.verify_slice(&expected).is_ok()
}

/// Serializes the Alertmanager body: a JSON array of `postableAlert`.
pub fn alertmanager_body(events: &[AlertEvent]) -> Vec<u8> {
    let alerts: Vec<&Alert> = events.iter().map(|e| &e.alert).collect();
    serde_json::to_vec(&alerts).expect("alerts serialize")
}

/// Serializes a webhook body for `receiver`.
pub fn webhook_body(receiver: &str, events: &[AlertEvent]) -> Vec<u8> {
    let status = if events.iter().any(|e| e.status == AlertStatus::Firing) {
        AlertStatus::Firing
    } else {
        AlertStatus::Resolved
    };
    let payload = WebhookPayload {
        version: "1",
        receiver,
        status,
        alerts: events
            .iter()
            .map(|e| WebhookAlert {
                status: e.status,
                fingerprint: &e.fingerprint,
                alert: &e.alert,
            })
            .collect(),
    };
    serde_json::to_vec(&payload).expect("payload serializes")
}

/// Why a delivery failed.
#[derive(Debug, thiserror::Error)]
enum SendError {
    #[error("{0}")]
    Transport(String),
    #[error("HTTP {status}: {body}")]
    Status { status: u16, body: String },
}

impl SendError {
    fn retryable(&self) -> bool {
        match self {
            SendError::Transport(_) => true,
            SendError::Status { status, .. } => *status >= 500 || *status == 429,
        }
    }
}

/// One HTTP destination with its retry policy.
#[derive(Debug, Clone)]
struct Target {
    name: String,
    url: String,
    http: reqwest::Client,
    retry: RetryConfig,
    secret: Option<Vec<u8>>,
}

impl Target {
    fn new(
        name: &str,
        url: String,
        headers: &std::collections::BTreeMap<String, String>,
        timeout: Duration,
        retry: &RetryConfig,
        secret: Option<&str>,
    ) -> Result<Self, ClientError> {
        let http = reqwest::Client::builder()
            .default_headers(header_map(headers)?)
            .timeout(timeout)
            .user_agent(concat!("anomaly-detector/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ClientError::Build(e.to_string()))?;
        Ok(Self {
            name: name.to_string(),
            url,
            http,
            retry: retry.clone(),
            secret: secret.map(|s| s.as_bytes().to_vec()),
        })
    }

    async fn post_once(&self, body: &[u8]) -> Result<(), SendError> {
        let mut req = self
            .http
            .post(&self.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_vec());
        if let Some(secret) = &self.secret {
            req = req.header(SIGNATURE_HEADER, sign(secret, body));
        }
        let resp = req
            .send()
            .await
            .map_err(|e| SendError::Transport(e.to_string()))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let text = resp.text().await.unwrap_or_default();
        Err(SendError::Status {
            status: status.as_u16(),
            body: text.chars().take(300).collect(),
        })
    }

    /// POSTs with retries; gives up early on shutdown after one more attempt.
    async fn post(&self, body: &[u8], cancel: &CancellationToken) -> Result<(), SendError> {
        let mut attempt = 0;
        loop {
            match self.post_once(body).await {
                Ok(()) => return Ok(()),
                Err(e) if e.retryable() && attempt + 1 < self.retry.max_attempts => {
                    let wait = backoff(&self.retry, attempt);
                    tracing::debug!(sink = %self.name, error = %e, attempt, ?wait, "alert delivery failed, retrying");
                    attempt += 1;
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = cancel.cancelled() => return Err(e),
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// Fans alert batches out to the configured sinks.
#[derive(Debug, Clone, Default)]
pub struct AlertDispatcher {
    alertmanager: Option<mpsc::Sender<Vec<AlertEvent>>>,
    webhooks: HashMap<String, mpsc::Sender<Vec<AlertEvent>>>,
    metrics: Option<Arc<Metrics>>,
}

impl AlertDispatcher {
    /// Starts one task per sink in `tasks`. Dropping every clone of the dispatcher closes the
    /// queues; the tasks then deliver what is queued and end.
    ///
    /// # Errors
    /// [`ClientError`] when a sink's headers or client settings are invalid.
    pub fn start(
        alertmanager: Option<&AlertmanagerConfig>,
        webhooks: &[WebhookConfig],
        metrics: Arc<Metrics>,
        tasks: &mut JoinSet<()>,
        cancel: CancellationToken,
    ) -> Result<Self, ClientError> {
        let mut d = AlertDispatcher {
            metrics: Some(metrics.clone()),
            ..Default::default()
        };
        if let Some(am) = alertmanager {
            let url = format!("{}/api/v2/alerts", am.url.trim_end_matches('/'));
            let target = Target::new(
                ALERTMANAGER_SINK,
                url,
                &am.headers,
                am.timeout,
                &am.retry,
                None,
            )?;
            let (tx, rx) = mpsc::channel(SINK_QUEUE);
            tasks.spawn(run_alertmanager(
                target,
                rx,
                metrics.clone(),
                cancel.clone(),
            ));
            d.alertmanager = Some(tx);
        }
        for w in webhooks {
            let target = Target::new(
                &w.name,
                w.url.clone(),
                &w.headers,
                w.timeout,
                &w.retry,
                w.secret.as_ref().map(|s| s.0.as_str()),
            )?;
            let (tx, rx) = mpsc::channel(SINK_QUEUE);
            tasks.spawn(run_webhook(
                target,
                w.repeat_interval,
                rx,
                metrics.clone(),
                cancel.clone(),
            ));
            d.webhooks.insert(w.name.clone(), tx);
        }
        Ok(d)
    }

    /// Queues `events` for their sinks without waiting; a full queue drops the batch for that
    /// sink and counts it under `anomaly_detector_alert_failures_total{reason="queue_full"}`.
    pub fn dispatch(&self, events: &[AlertEvent]) {
        if events.is_empty() {
            return;
        }
        if let Some(tx) = &self.alertmanager {
            let batch: Vec<AlertEvent> = events
                .iter()
                .filter(|e| e.to_alertmanager)
                .cloned()
                .collect();
            self.enqueue(ALERTMANAGER_SINK, tx, batch);
        }
        for (name, tx) in &self.webhooks {
            let batch: Vec<AlertEvent> = events
                .iter()
                .filter(|e| e.webhooks.iter().any(|w| w == name))
                .cloned()
                .collect();
            self.enqueue(name, tx, batch);
        }
    }

    fn enqueue(&self, sink: &str, tx: &mpsc::Sender<Vec<AlertEvent>>, batch: Vec<AlertEvent>) {
        if batch.is_empty() {
            return;
        }
        let n = batch.len() as u64;
        if tx.try_send(batch).is_err() {
            tracing::warn!(
                sink,
                alerts = n,
                "alert queue full or closed, batch dropped"
            );
            if let Some(m) = &self.metrics {
                m.alert_failed(sink, "queue_full", n);
            }
        }
    }
}

async fn run_alertmanager(
    target: Target,
    mut rx: mpsc::Receiver<Vec<AlertEvent>>,
    metrics: Arc<Metrics>,
    cancel: CancellationToken,
) {
    while let Some(batch) = rx.recv().await {
        let body = alertmanager_body(&batch);
        match target.post(&body, &cancel).await {
            Ok(()) => count_sent(&metrics, ALERTMANAGER_SINK, &batch),
            Err(e) => {
                tracing::warn!(sink = ALERTMANAGER_SINK, url = %target.url, error = %e, alerts = batch.len(), "cannot deliver alerts to Alertmanager");
                metrics.alert_failed(ALERTMANAGER_SINK, "delivery", batch.len() as u64);
            }
        }
    }
}

async fn run_webhook(
    target: Target,
    repeat_interval: Duration,
    mut rx: mpsc::Receiver<Vec<AlertEvent>>,
    metrics: Arc<Metrics>,
    cancel: CancellationToken,
) {
    // fingerprint -> when the firing alert was last delivered. Entries exist only while firing.
    let mut sent: HashMap<String, Instant> = HashMap::new();
    while let Some(batch) = rx.recv().await {
        let now = Instant::now();
        let batch: Vec<AlertEvent> = batch
            .into_iter()
            .filter(|e| match e.status {
                AlertStatus::Firing => sent
                    .get(&e.fingerprint)
                    .is_none_or(|t| now.duration_since(*t) >= repeat_interval),
                AlertStatus::Resolved => sent.contains_key(&e.fingerprint),
            })
            .collect();
        if batch.is_empty() {
            continue;
        }
        let body = webhook_body(&target.name, &batch);
        match target.post(&body, &cancel).await {
            Ok(()) => {
                for e in &batch {
                    match e.status {
                        AlertStatus::Firing => {
                            sent.insert(e.fingerprint.clone(), now);
                        }
                        AlertStatus::Resolved => {
                            sent.remove(&e.fingerprint);
                        }
                    }
                }
                count_sent(&metrics, &target.name, &batch);
            }
            Err(e) => {
                tracing::warn!(sink = %target.name, error = %e, alerts = batch.len(), "cannot deliver alerts to webhook");
                metrics.alert_failed(&target.name, "delivery", batch.len() as u64);
                // A lost resolution must not keep the fingerprint forever.
                for e in batch.iter().filter(|e| e.status == AlertStatus::Resolved) {
                    sent.remove(&e.fingerprint);
                }
            }
        }
    }
}

fn count_sent(metrics: &Metrics, sink: &str, batch: &[AlertEvent]) {
    let firing = batch
        .iter()
        .filter(|e| e.status == AlertStatus::Firing)
        .count() as u64;
    if firing > 0 {
        metrics.alert_sent(sink, "firing", firing);
    }
    let resolved = batch.len() as u64 - firing;
    if resolved > 0 {
        metrics.alert_sent(sink, "resolved", resolved);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_round_trip_and_known_vector() {
        // RFC 4231 test case 2.
        let sig = sign(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            sig,
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert!(verify(b"Jefe", b"what do ya want for nothing?", &sig));
        assert!(!verify(b"Jefe", b"what do ya want for nothing!", &sig));
        assert!(!verify(b"other", b"what do ya want for nothing?", &sig));
        assert!(!verify(b"Jefe", b"x", "sha1=00"));
    }

    #[test]
    fn fingerprint_is_order_independent_and_distinct() {
        let a: Labels = [("a", "1"), ("b", "2")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut b = Labels::new();
        b.insert("b".into(), "2".into());
        b.insert("a".into(), "1".into());
        assert_eq!(fingerprint(&a), fingerprint(&b));
        b.insert("a".into(), "12".into());
        assert_ne!(fingerprint(&a), fingerprint(&b));
        assert_eq!(fingerprint(&a).len(), 16);
    }

    #[test]
    fn rfc3339_format() {
        assert_eq!(rfc3339_secs(0), "1970-01-01T00:00:00.000Z");
    }
}
