//! Run-time fault injection: error rate, added latency, CPU burn and a bounded memory leak,
//! per route, optionally clearing itself after `duration_s`. Driven over `/admin/faults`
//! (GET shows, PUT replaces, DELETE clears) and applied by the HTTP middleware in
//! [`crate::http`]. Every change is logged.
//!
//! Tests: `cargo test -p demo-app faults` and `tests/handlers.rs` (observed error rate).

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::Service;

/// Largest accepted `latency_ms` / `latency_jitter_ms` (one minute).
pub const MAX_LATENCY_MS: u64 = 60_000;
/// Largest accepted `cpu_burn_ms` per request.
pub const MAX_CPU_BURN_MS: u64 = 1_000;
/// Largest accepted `memory_leak_kb` per request.
pub const MAX_LEAK_KB_PER_REQUEST: u64 = 1_024;
/// The memory leak stops growing at this many bytes; it is freed when the fault clears.
pub const MAX_LEAK_TOTAL_BYTES: usize = 256 * 1024 * 1024;
/// Largest accepted `duration_s` (one day).
pub const MAX_DURATION_S: u64 = 86_400;

/// The fault configuration, as PUT to `/admin/faults`. Missing fields mean "no fault of that
/// kind"; a PUT replaces the whole configuration.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FaultSpec {
    /// Fraction of requests answered with HTTP 500, 0.0..=1.0.
    pub error_rate: f64,
    /// Latency added to every affected request, milliseconds.
    pub latency_ms: u64,
    /// Extra latency drawn uniformly from `0..latency_jitter_ms` on top of `latency_ms`.
    pub latency_jitter_ms: u64,
    /// Seconds after which the faults clear by themselves; absent = until changed.
    pub duration_s: Option<u64>,
    /// Routes (axum route templates such as `/api/users/{id}`) affected; absent = all
    /// routes of the service except `/health`, `/ready` and `/admin/faults`.
    pub routes: Option<Vec<String>>,
    /// Busy CPU time burnt per affected request, milliseconds.
    pub cpu_burn_ms: u64,
    /// Memory leaked per affected request, KiB (bounded by [`MAX_LEAK_TOTAL_BYTES`]).
    pub memory_leak_kb: u64,
}

impl FaultSpec {
    /// True when the spec injects nothing.
    pub fn is_noop(&self) -> bool {
        self.error_rate == 0.0
            && self.latency_ms == 0
            && self.latency_jitter_ms == 0
            && self.cpu_burn_ms == 0
            && self.memory_leak_kb == 0
    }

    /// Checks ranges and route names.
    ///
    /// # Errors
    /// [`FaultError`] naming the field, the value and the accepted range.
    pub fn validate(&self, known_routes: &[&str]) -> Result<(), FaultError> {
        if !(0.0..=1.0).contains(&self.error_rate) || !self.error_rate.is_finite() {
            return Err(FaultError::ErrorRate(self.error_rate));
        }
        for (field, v) in [
            ("latency_ms", self.latency_ms),
            ("latency_jitter_ms", self.latency_jitter_ms),
        ] {
            if v > MAX_LATENCY_MS {
                return Err(FaultError::TooLarge {
                    field,
                    value: v,
                    max: MAX_LATENCY_MS,
                });
            }
        }
        if self.cpu_burn_ms > MAX_CPU_BURN_MS {
            return Err(FaultError::TooLarge {
                field: "cpu_burn_ms",
                value: self.cpu_burn_ms,
                max: MAX_CPU_BURN_MS,
            });
        }
        if self.memory_leak_kb > MAX_LEAK_KB_PER_REQUEST {
            return Err(FaultError::TooLarge {
                field: "memory_leak_kb",
                value: self.memory_leak_kb,
                max: MAX_LEAK_KB_PER_REQUEST,
            });
        }
        if let Some(d) = self.duration_s {
            if d == 0 || d > MAX_DURATION_S {
                return Err(FaultError::Duration(d));
            }
        }
        if let Some(routes) = &self.routes {
            for r in routes {
                if !known_routes.contains(&r.as_str()) {
                    return Err(FaultError::UnknownRoute {
                        route: r.clone(),
                        known: known_routes.join(", "),
                    });
                }
            }
        }
        Ok(())
    }
}

/// A rejected fault configuration.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum FaultError {
    /// `error_rate` outside 0.0..=1.0.
    #[error("error_rate {0} is out of range: use a fraction between 0.0 and 1.0")]
    ErrorRate(f64),
    /// A numeric field above its bound.
    #[error("{field} {value} is too large: the maximum is {max}")]
    TooLarge {
        /// The JSON field.
        field: &'static str,
        /// The value given.
        value: u64,
        /// The accepted maximum.
        max: u64,
    },
    /// `duration_s` zero or above one day.
    #[error(
        "duration_s {0} is out of range: use 1..=86400 seconds, or leave it out for no expiry"
    )]
    Duration(u64),
    /// A route this service does not serve.
    #[error("route {route:?} is not served by this service; known routes: {known}")]
    UnknownRoute {
        /// The route given.
        route: String,
        /// The routes that can be faulted.
        known: String,
    },
}

/// What the middleware must do to one request.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct FaultAction {
    /// Sleep this long before handling.
    pub delay: Duration,
    /// Burn this much CPU before handling.
    pub cpu_burn: Duration,
    /// Leak this many bytes.
    pub leak_bytes: usize,
    /// Answer 500 instead of handling.
    pub fail: bool,
}

/// The current fault state of one service, shown by `GET /admin/faults`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FaultStatus {
    /// The service whose faults these are.
    pub service: String,
    /// True while a non-empty spec is in force.
    pub active: bool,
    /// The spec in force (all zero when none).
    #[serde(flatten)]
    pub spec: FaultSpec,
    /// Seconds until the spec clears itself, when it has a duration.
    pub expires_in_s: Option<f64>,
    /// Bytes currently held by the memory-leak fault.
    pub leaked_bytes: usize,
}

struct Current {
    spec: FaultSpec,
    expires: Option<Instant>,
}

struct Inner {
    service: Service,
    known_routes: Vec<&'static str>,
    armed: AtomicBool,
    generation: AtomicU64,
    current: Mutex<Current>,
    leak: Mutex<Vec<Box<[u8]>>>,
    leaked_bytes: AtomicUsize,
    leak_full_logged: AtomicBool,
}

/// Shared, cheaply clonable fault state of one service.
#[derive(Clone)]
pub struct Faults {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Faults {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Faults")
            .field("service", &self.inner.service)
            .field("armed", &self.inner.armed.load(Ordering::Relaxed))
            .finish()
    }
}

impl Faults {
    /// No faults; `known_routes` are the routes that can be faulted (the default set).
    pub fn new(service: Service, known_routes: &[&'static str]) -> Self {
        Faults {
            inner: Arc::new(Inner {
                service,
                known_routes: known_routes.to_vec(),
                armed: AtomicBool::new(false),
                generation: AtomicU64::new(0),
                current: Mutex::new(Current {
                    spec: FaultSpec::default(),
                    expires: None,
                }),
                leak: Mutex::new(Vec::new()),
                leaked_bytes: AtomicUsize::new(0),
                leak_full_logged: AtomicBool::new(false),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Current> {
        self.inner.current.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Replaces the fault spec (logged). A spec with `duration_s` clears itself after that time.
    ///
    /// # Errors
    /// [`FaultError`] when the spec is out of range; the current spec then stays in force.
    pub fn set(&self, spec: FaultSpec) -> Result<FaultStatus, FaultError> {
        spec.validate(&self.inner.known_routes)?;
        let generation = self.inner.generation.fetch_add(1, Ordering::SeqCst) + 1;
        let expires = spec
            .duration_s
            .map(|s| Instant::now() + Duration::from_secs(s));
        {
            let mut cur = self.lock();
            cur.spec = spec.clone();
            cur.expires = expires;
        }
        self.inner.armed.store(!spec.is_noop(), Ordering::SeqCst);
        if spec.memory_leak_kb == 0 {
            self.free_leak();
        }
        tracing::info!(
            service = self.inner.service.service_name(),
            error_rate = spec.error_rate,
            latency_ms = spec.latency_ms,
            latency_jitter_ms = spec.latency_jitter_ms,
            cpu_burn_ms = spec.cpu_burn_ms,
            memory_leak_kb = spec.memory_leak_kb,
            duration_s = ?spec.duration_s,
            routes = ?spec.routes,
            "faults changed"
        );
        if let (Some(secs), Ok(handle)) = (spec.duration_s, tokio::runtime::Handle::try_current()) {
            let me = self.clone();
            handle.spawn(async move {
                tokio::time::sleep(Duration::from_secs(secs)).await;
                if me.inner.generation.load(Ordering::SeqCst) == generation {
                    me.clear("duration elapsed");
                }
            });
        }
        Ok(self.status())
    }

    /// Removes every fault and frees the leaked memory (logged with `reason`).
    pub fn clear(&self, reason: &str) {
        self.inner.generation.fetch_add(1, Ordering::SeqCst);
        let was_active = {
            let mut cur = self.lock();
            let was = !cur.spec.is_noop();
            cur.spec = FaultSpec::default();
            cur.expires = None;
            was
        };
        self.inner.armed.store(false, Ordering::SeqCst);
        self.free_leak();
        tracing::info!(
            service = self.inner.service.service_name(),
            was_active,
            reason,
            "faults cleared"
        );
    }

    fn free_leak(&self) {
        let mut leak = self.inner.leak.lock().unwrap_or_else(|e| e.into_inner());
        leak.clear();
        leak.shrink_to_fit();
        self.inner.leaked_bytes.store(0, Ordering::SeqCst);
        self.inner.leak_full_logged.store(false, Ordering::SeqCst);
    }

    /// The current state.
    pub fn status(&self) -> FaultStatus {
        self.expire_if_due();
        let cur = self.lock();
        FaultStatus {
            service: self.inner.service.service_name().to_string(),
            active: !cur.spec.is_noop(),
            spec: cur.spec.clone(),
            expires_in_s: cur
                .expires
                .map(|e| e.saturating_duration_since(Instant::now()).as_secs_f64()),
            leaked_bytes: self.inner.leaked_bytes.load(Ordering::SeqCst),
        }
    }

    fn expire_if_due(&self) {
        let due = matches!(self.lock().expires, Some(e) if Instant::now() >= e);
        if due {
            self.clear("duration elapsed");
        }
    }

    /// Decides the faults for one request on `route` (the matched route template).
    pub fn decide(&self, route: &str) -> Option<FaultAction> {
        if !self.inner.armed.load(Ordering::Relaxed) {
            return None;
        }
        self.expire_if_due();
        let spec = self.lock().spec.clone();
        if spec.is_noop() {
            return None;
        }
        let applies = match &spec.routes {
            Some(routes) => routes.iter().any(|r| r == route),
            None => self.inner.known_routes.contains(&route),
        };
        if !applies {
            return None;
        }
        let mut rng = rand::rng();
        let jitter = if spec.latency_jitter_ms > 0 {
            rng.random_range(0..spec.latency_jitter_ms)
        } else {
            0
        };
        Some(FaultAction {
            delay: Duration::from_millis(spec.latency_ms + jitter),
            cpu_burn: Duration::from_millis(spec.cpu_burn_ms),
            leak_bytes: (spec.memory_leak_kb * 1024) as usize,
            fail: spec.error_rate > 0.0 && rng.random_bool(spec.error_rate),
        })
    }

    /// Leaks `bytes` (touched, so they are resident) unless the total bound is reached.
    pub fn leak(&self, bytes: usize) {
        if bytes == 0 {
            return;
        }
        let held = self.inner.leaked_bytes.load(Ordering::SeqCst);
        if held + bytes > MAX_LEAK_TOTAL_BYTES {
            if !self.inner.leak_full_logged.swap(true, Ordering::SeqCst) {
                tracing::warn!(
                    service = self.inner.service.service_name(),
                    held,
                    max = MAX_LEAK_TOTAL_BYTES,
                    "memory leak fault reached its bound; not growing further"
                );
            }
            return;
        }
        let block = vec![0xA5u8; bytes].into_boxed_slice();
        self.inner
            .leak
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(block);
        self.inner.leaked_bytes.fetch_add(bytes, Ordering::SeqCst);
    }

    /// The `/admin/faults` routes (GET, PUT, DELETE) bound to this state.
    pub fn router(&self) -> Router {
        Router::new()
            .route(
                "/admin/faults",
                get(get_faults).put(put_faults).delete(delete_faults),
            )
            .with_state(self.clone())
    }
}

/// Burns `d` of CPU time on the blocking pool (bounded by [`MAX_CPU_BURN_MS`] upstream).
pub async fn burn_cpu(d: Duration) {
    if d.is_zero() {
        return;
    }
    let _ = tokio::task::spawn_blocking(move || {
        let start = Instant::now();
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        while start.elapsed() < d {
            for _ in 0..10_000 {
                x = std::hint::black_box(x.rotate_left(5).wrapping_mul(0x2545_F491_4F6C_DD1D));
            }
        }
        x
    })
    .await;
}

async fn get_faults(State(f): State<Faults>) -> Json<FaultStatus> {
    Json(f.status())
}

async fn put_faults(
    State(f): State<Faults>,
    body: Result<Json<FaultSpec>, JsonRejection>,
) -> Response {
    let spec = match body {
        Ok(Json(spec)) => spec,
        Err(e) => {
            return crate::http::error_response(
                StatusCode::BAD_REQUEST,
                format!(
                    "invalid fault JSON: {}; expected {{\"error_rate\": 0.0..1.0, \"latency_ms\": N, \"duration_s\": N, \"routes\": [...]}}",
                    e.body_text()
                ),
            )
        }
    };
    match f.set(spec) {
        Ok(status) => Json(status).into_response(),
        Err(e) => crate::http::error_response(StatusCode::BAD_REQUEST, e.to_string()),
    }
}

async fn delete_faults(State(f): State<Faults>) -> Json<FaultStatus> {
    f.clear("DELETE /admin/faults");
    Json(f.status())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROUTES: &[&str] = &["/api/products", "/api/users"];

    #[test]
    fn validation_names_the_field() {
        let bad = FaultSpec {
            error_rate: 1.5,
            ..Default::default()
        };
        assert_eq!(bad.validate(ROUTES), Err(FaultError::ErrorRate(1.5)));
        let bad = FaultSpec {
            cpu_burn_ms: 5_000,
            ..Default::default()
        };
        assert!(bad
            .validate(ROUTES)
            .unwrap_err()
            .to_string()
            .contains("cpu_burn_ms"));
        let bad = FaultSpec {
            routes: Some(vec!["/nope".into()]),
            ..Default::default()
        };
        let msg = bad.validate(ROUTES).unwrap_err().to_string();
        assert!(
            msg.contains("/nope") && msg.contains("/api/products"),
            "{msg}"
        );
        let bad = FaultSpec {
            duration_s: Some(0),
            ..Default::default()
        };
        assert_eq!(bad.validate(ROUTES), Err(FaultError::Duration(0)));
    }

    #[test]
    fn decide_respects_routes_and_rates() {
        let f = Faults::new(Service::Frontend, ROUTES);
        assert_eq!(f.decide("/api/products"), None);
        f.set(FaultSpec {
            error_rate: 1.0,
            latency_ms: 5,
            routes: Some(vec!["/api/products".into()]),
            ..Default::default()
        })
        .unwrap();
        let a = f.decide("/api/products").unwrap();
        assert!(a.fail);
        assert_eq!(a.delay, Duration::from_millis(5));
        assert_eq!(f.decide("/api/users"), None);
        assert_eq!(f.decide("/health"), None);
        f.clear("test");
        assert_eq!(f.decide("/api/products"), None);
        assert!(!f.status().active);
    }

    #[test]
    fn default_routes_exclude_health() {
        let f = Faults::new(Service::Frontend, ROUTES);
        f.set(FaultSpec {
            error_rate: 1.0,
            ..Default::default()
        })
        .unwrap();
        assert!(f.decide("/api/users").unwrap().fail);
        assert_eq!(f.decide("/health"), None);
    }

    #[test]
    fn leak_is_bounded_and_freed() {
        let f = Faults::new(Service::Frontend, ROUTES);
        f.set(FaultSpec {
            memory_leak_kb: 1024,
            ..Default::default()
        })
        .unwrap();
        for _ in 0..300 {
            f.leak(1024 * 1024);
        }
        let held = f.status().leaked_bytes;
        assert!((MAX_LEAK_TOTAL_BYTES - 1024 * 1024..=MAX_LEAK_TOTAL_BYTES).contains(&held));
        f.clear("test");
        assert_eq!(f.status().leaked_bytes, 0);
    }

    #[tokio::test]
    async fn duration_clears_the_spec() {
        let f = Faults::new(Service::Frontend, ROUTES);
        f.set(FaultSpec {
            error_rate: 0.5,
            duration_s: Some(1),
            ..Default::default()
        })
        .unwrap();
        assert!(f.status().active);
        assert!(f.decide("/api/users").is_some());
        // Expiry is checked against the clock on every read, so this cannot race the timer.
        tokio::time::sleep(Duration::from_millis(1_100)).await;
        assert!(!f.status().active);
        assert_eq!(f.decide("/api/users"), None);
    }
}
