//! `/health` for a DaemonSet's probes (`--health-addr`): the agent pushes, so nothing else of it
//! listens. It answers 200 while collections keep happening and 503 before the first one or
//! once the last is older than [`STALE_INTERVALS`] intervals (a stuck loop), JSON either way:
//! `{"status":"ok"|"stale"|"starting","last_collection_age_seconds":N,"interval_seconds":N}`.
//!
//! Tests: `cargo test -p node-agent health::`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};

/// A collection older than this many intervals makes `/health` fail.
pub const STALE_INTERVALS: u32 = 3;

/// "No collection yet" in [`Heartbeat`]'s timestamp.
const NEVER: u64 = u64::MAX;

/// When the last collection finished, shared between the agent loop and the endpoint.
#[derive(Debug)]
pub struct Heartbeat {
    start: Instant,
    /// Milliseconds after `start` of the last collection, or [`NEVER`].
    last_ms: AtomicU64,
    interval: Duration,
}

impl Heartbeat {
    /// A heartbeat for an agent collecting every `interval`; no collection yet.
    pub fn new(interval: Duration) -> Arc<Heartbeat> {
        Arc::new(Heartbeat {
            start: Instant::now(),
            last_ms: AtomicU64::new(NEVER),
            interval,
        })
    }

    /// Records a finished collection now.
    pub fn beat(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(NEVER - 1);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// Age of the last collection at `now`, `None` before the first.
    fn age(&self, now: Instant) -> Option<Duration> {
        let ms = self.last_ms.load(Ordering::Relaxed);
        (ms != NEVER).then(|| now.saturating_duration_since(self.start + Duration::from_millis(ms)))
    }

    /// The probe's status code and body at `now`.
    fn report(&self, now: Instant) -> (StatusCode, serde_json::Value) {
        let age = self.age(now);
        let (code, status) = match age {
            None => (StatusCode::SERVICE_UNAVAILABLE, "starting"),
            Some(a) if a > self.interval * STALE_INTERVALS => {
                (StatusCode::SERVICE_UNAVAILABLE, "stale")
            }
            Some(_) => (StatusCode::OK, "ok"),
        };
        let body = serde_json::json!({
            "status": status,
            "last_collection_age_seconds": age.map(|a| a.as_secs_f64()),
            "interval_seconds": self.interval.as_secs_f64(),
        });
        (code, body)
    }
}

/// `GET /health` over `heartbeat`.
pub fn app(heartbeat: Arc<Heartbeat>) -> Router {
    Router::new()
        .route("/health", get(health))
        .with_state(heartbeat)
}

async fn health(State(hb): State<Arc<Heartbeat>>) -> (StatusCode, Json<serde_json::Value>) {
    let (code, body) = hb.report(Instant::now());
    (code, Json(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starting_ok_then_stale() {
        let hb = Heartbeat::new(Duration::from_secs(10));
        let (code, body) = hb.report(Instant::now());
        assert_eq!(
            (code, body["status"].as_str()),
            (StatusCode::SERVICE_UNAVAILABLE, Some("starting"))
        );
        hb.beat();
        let now = Instant::now();
        let (code, body) = hb.report(now + Duration::from_secs(29));
        assert_eq!(
            (code, body["status"].as_str()),
            (StatusCode::OK, Some("ok"))
        );
        assert!(body["last_collection_age_seconds"].as_f64().unwrap() >= 29.0);
        let (code, body) = hb.report(now + Duration::from_secs(31));
        assert_eq!(
            (code, body["status"].as_str()),
            (StatusCode::SERVICE_UNAVAILABLE, Some("stale"))
        );
    }

    #[tokio::test]
    async fn route_answers_json() {
        use tower::ServiceExt as _;
        let hb = Heartbeat::new(Duration::from_secs(1));
        hb.beat();
        let resp = app(hb)
            .oneshot(
                axum::http::Request::get("/health")
                    .body(axum::body::Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
    }
}
