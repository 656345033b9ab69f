//! The collector's own-metrics endpoint: `GET /metrics` in the Prometheus text format.
//!
//! Serves everything in [`SelfMetrics::global`] plus process gauges computed at scrape time from
//! `/proc/self`: `otelcol_process_memory_rss` (bytes), `otelcol_process_cpu_seconds` (user +
//! system), `otelcol_process_uptime` (seconds). The service starts it on the
//! `service.telemetry.metrics` address (default 127.0.0.1:8888) unless `level: none`.
//!
//! Tests: `cargo test -p otel-collector extension::metrics_server` and `tests/export_health.rs`.

use super::{bind, ExtensionError, RunningExtension, ServerHandle};
use crate::telemetry::SelfMetrics;
use axum::response::IntoResponse;
use axum::Router;
use std::sync::Arc;
use std::time::Instant;

/// Clock ticks per second of `/proc/self/stat` times (USER_HZ, 100 on every Linux ABI in use).
const USER_HZ: f64 = 100.0;

/// Resident set size of this process in bytes (from `/proc/self/status` `VmRSS`), 0 if unknown.
pub fn process_rss_bytes() -> u64 {
    proc_status_kb("VmRSS:").unwrap_or(0) * 1024
}

/// Peak resident set size in bytes (`VmHWM`), 0 if unknown.
pub fn process_peak_rss_bytes() -> u64 {
    proc_status_kb("VmHWM:").unwrap_or(0) * 1024
}

fn proc_status_kb(key: &str) -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    s.lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

/// User + system CPU seconds used by this process (from `/proc/self/stat`), 0 if unknown.
pub fn process_cpu_seconds() -> f64 {
    let Ok(s) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the command name (which may contain spaces) start at index 3 (state).
    let Some(rest) = s.rfind(')').map(|i| &s[i + 2..]) else {
        return 0.0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: indexes 11 and 12 here.
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    (ticks(11) + ticks(12)) as f64 / USER_HZ
}

/// Registers the process gauges in `reg` (idempotent).
pub fn register_process_metrics(reg: &SelfMetrics) {
    let started = Instant::now();
    reg.gauge_fn(
        "otelcol_process_memory_rss",
        "Total physical memory (resident set size) in bytes.",
        vec![],
        || process_rss_bytes() as f64,
    );
    reg.gauge_fn(
        "otelcol_process_cpu_seconds",
        "Total CPU user and system time in seconds.",
        vec![],
        process_cpu_seconds,
    );
    reg.gauge_fn(
        "otelcol_process_uptime",
        "Uptime of the process in seconds.",
        vec![],
        move || started.elapsed().as_secs_f64(),
    );
}

async fn metrics() -> impl IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        SelfMetrics::global().render(),
    )
}

/// The router: `/metrics`.
pub fn app() -> Router {
    Router::new().route("/metrics", axum::routing::get(metrics))
}

/// Registers the process gauges, binds `address` and serves `/metrics` until shut down.
///
/// # Errors
/// The address cannot be bound.
pub async fn start(address: &str) -> Result<RunningExtension, ExtensionError> {
    register_process_metrics(SelfMetrics::global());
    let id = "service.telemetry.metrics";
    let listener = bind(id, address).await?;
    let local_addr = listener
        .local_addr()
        .map_err(|source| ExtensionError::Bind {
            id: id.to_string(),
            endpoint: address.to_string(),
            source,
        })?;
    let stop = tokio_util::sync::CancellationToken::new();
    let s = stop.clone();
    let task = tokio::spawn(async move {
        let r = axum::serve(listener, app())
            .with_graceful_shutdown(async move { s.cancelled().await })
            .await;
        if let Err(e) = r {
            tracing::error!(error = %e, "own-metrics server failed");
        }
    });
    tracing::info!(%local_addr, "own metrics on /metrics");
    Ok(RunningExtension {
        local_addr,
        lifecycle: Arc::new(ServerHandle::new(stop, task)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_figures_are_plausible() {
        let rss = process_rss_bytes();
        assert!(rss > 1 << 20 && rss < 64 << 30, "rss {rss}");
        assert!(process_peak_rss_bytes() >= rss);
        // Burn a little CPU so the counter is non-zero.
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        assert!(process_cpu_seconds() > 0.0);
    }

    #[test]
    fn render_includes_process_gauges() {
        let reg = SelfMetrics::default();
        register_process_metrics(&reg);
        let text = reg.render();
        for name in [
            "otelcol_process_memory_rss ",
            "otelcol_process_cpu_seconds ",
            "otelcol_process_uptime ",
        ] {
            assert!(text.contains(name), "{name} missing in {text}");
        }
    }
}
