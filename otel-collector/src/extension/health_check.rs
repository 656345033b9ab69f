//! The `health_check` extension: an HTTP readiness probe.
//!
//! `GET <path>` (default `/`) answers 200 `{"status":"Server available","upSince":...,"uptime":...}`
//! when the service is ready and no exporter's sending queue is full, and 503
//! `{"status":"Server not available","reason":...}` while starting, while shutting down, or while
//! a queue is full (the reason names the exporters). Default endpoint `127.0.0.1:13133` (upstream
//! now also defaults to localhost); set `endpoint: 0.0.0.0:13133` for probes from outside.
//!
//! Tests: `cargo test -p otel-collector extension::health_check`.

use super::health::{HealthState, Phase};
use super::{bind, ExtensionError, RunningExtension, ServerHandle};
use crate::config::ComponentConfigError;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Router;
use serde::Deserialize;
use std::sync::Arc;

/// Custom bodies instead of the JSON status.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ResponseBody {
    /// Body when healthy.
    pub healthy: Option<String>,
    /// Body when not healthy.
    pub unhealthy: Option<String>,
}

/// Configuration of the `health_check` extension.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HealthCheckConfig {
    /// `host:port` to listen on (default `127.0.0.1:13133`).
    pub endpoint: String,
    /// Path of the probe (default `/`).
    pub path: String,
    /// Optional fixed bodies.
    pub response_body: Option<ResponseBody>,
}

/// Default listen address (docs/collector-exporters.md, "Health check": 13133, loopback by default).
pub const DEFAULT_ENDPOINT: &str = "127.0.0.1:13133";

impl Default for HealthCheckConfig {
    fn default() -> Self {
        HealthCheckConfig {
            endpoint: DEFAULT_ENDPOINT.to_string(),
            path: "/".to_string(),
            response_body: None,
        }
    }
}

impl HealthCheckConfig {
    /// Checks the endpoint and path, naming the key.
    ///
    /// # Errors
    /// The key path and the fix.
    pub fn validate(&self) -> Result<(), ComponentConfigError> {
        let ok_port = self
            .endpoint
            .rsplit_once(':')
            .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
        if !ok_port {
            return Err(ComponentConfigError::new(
                "endpoint",
                format!(
                    "{:?} is not host:port; write for example 127.0.0.1:13133",
                    self.endpoint
                ),
            ));
        }
        if !self.path.starts_with('/') {
            return Err(ComponentConfigError::new(
                "path",
                "must start with '/' (for example /health/status)",
            ));
        }
        Ok(())
    }
}

struct Probe {
    health: HealthState,
    body: Option<ResponseBody>,
}

/// The probe's HTTP status and body for the current health.
pub fn probe_response(health: &HealthState, custom: Option<&ResponseBody>) -> (StatusCode, String) {
    let report = health.report();
    if report.healthy {
        if let Some(b) = custom.and_then(|c| c.healthy.clone()) {
            return (StatusCode::OK, b);
        }
        let up_since = crate::exporter::file::rfc3339(health.started_at());
        let body = serde_json::json!({
            "status": "Server available",
            "upSince": up_since,
            "uptime": format!("{:.3}s", health.uptime().as_secs_f64()),
        });
        return (StatusCode::OK, body.to_string());
    }
    if let Some(b) = custom.and_then(|c| c.unhealthy.clone()) {
        return (StatusCode::SERVICE_UNAVAILABLE, b);
    }
    let reason = match report.phase {
        Phase::Starting => "starting".to_string(),
        Phase::ShuttingDown => "shutting down".to_string(),
        Phase::Ready => format!("sending queue full: {}", report.full_queues.join(", ")),
    };
    let body = serde_json::json!({"status": "Server not available", "reason": reason});
    (StatusCode::SERVICE_UNAVAILABLE, body.to_string())
}

async fn handle(State(p): State<Arc<Probe>>) -> impl IntoResponse {
    let (status, body) = probe_response(&p.health, p.body.as_ref());
    (
        status,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
}

/// The probe's router (also driven directly by tests).
pub fn app(cfg: &HealthCheckConfig, health: HealthState) -> Router {
    let probe = Arc::new(Probe {
        health,
        body: cfg.response_body.clone(),
    });
    Router::new()
        .route(&cfg.path, axum::routing::get(handle))
        .with_state(probe)
}

/// Binds the endpoint and serves the probe until shut down.
///
/// # Errors
/// The endpoint cannot be bound.
pub async fn start(
    id: &str,
    cfg: &HealthCheckConfig,
    health: HealthState,
) -> Result<RunningExtension, ExtensionError> {
    let listener = bind(id, &cfg.endpoint).await?;
    let local_addr = listener
        .local_addr()
        .map_err(|source| ExtensionError::Bind {
            id: id.to_string(),
            endpoint: cfg.endpoint.clone(),
            source,
        })?;
    let stop = tokio_util::sync::CancellationToken::new();
    let app = app(cfg, health);
    let s = stop.clone();
    let task = tokio::spawn(async move {
        let r = axum::serve(listener, app)
            .with_graceful_shutdown(async move { s.cancelled().await })
            .await;
        if let Err(e) = r {
            tracing::error!(error = %e, "health_check server failed");
        }
    });
    tracing::info!(extension = id, %local_addr, "health_check listening");
    Ok(RunningExtension {
        local_addr,
        lifecycle: Arc::new(ServerHandle::new(stop, task)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_the_health_state() {
        let h = HealthState::new();
        let (s, b) = probe_response(&h, None);
        assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
        assert!(b.contains("starting"), "{b}");
        h.set_ready();
        let (s, b) = probe_response(&h, None);
        assert_eq!(s, StatusCode::OK);
        assert!(b.contains("\"status\":\"Server available\""), "{b}");
        h.queue_full("otlp/tempo");
        let (s, b) = probe_response(&h, None);
        assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
        assert!(b.contains("otlp/tempo"), "{b}");
        let custom = ResponseBody {
            healthy: None,
            unhealthy: Some("nope".into()),
        };
        assert_eq!(probe_response(&h, Some(&custom)).1, "nope");
    }

    #[test]
    fn config_checks() {
        let c = HealthCheckConfig {
            endpoint: "13133".into(),
            ..Default::default()
        };
        assert_eq!(c.validate().unwrap_err().path, "endpoint");
        let c = HealthCheckConfig {
            path: "health".into(),
            ..Default::default()
        };
        assert_eq!(c.validate().unwrap_err().path, "path");
        HealthCheckConfig::default().validate().unwrap();
    }
}
