//! Assembles the live service: HTTP API, one [`DetectionRunner`] task per detection, the alert
//! sink tasks, and the graceful shutdown order (stop accepting and stop scheduling, finish the
//! running cycles, deliver queued alerts within [`ALERT_FLUSH_DEADLINE`], exit).
//!
//! Tests: `tests/service_live.rs` runs the binary against a real Prometheus (down at start,
//! then up) and Alertmanager; `tests/insights_api.rs` calls [`run_with_listener`] in-process.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::alert::AlertDispatcher;
use crate::api::{router, AppState, GuardError, Guards};
use crate::config::Config;
use crate::engine::{unix_now, DetectionRunner, RunnerContext};
use crate::history::{History, HistoryError};
use crate::insights::live::Live;
use crate::insights::Insights;
use crate::metrics::Metrics;
use crate::prometheus::{ClientError, PrometheusClient};
use crate::state::Store;

/// Time given to the alert sinks to deliver what is queued at shutdown.
pub const ALERT_FLUSH_DEADLINE: Duration = Duration::from_secs(5);

/// How often the anomaly history's retention is applied.
pub const HISTORY_PRUNE_INTERVAL: Duration = Duration::from_secs(600);

/// Errors that stop the service from starting.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The API address is taken or not local.
    #[error(
        "cannot listen on {addr}: {source} (set DETECTOR_ADDR or server.addr to a free address)"
    )]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A client could not be built from the configuration.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The HTTP server failed.
    #[error("HTTP server failed: {0}")]
    Serve(std::io::Error),
    /// The anomaly history cannot be opened (permissions, disk full).
    #[error("{0} (check history.path)")]
    History(#[from] HistoryError),
    /// The API guards cannot be set up.
    #[error(transparent)]
    Guard(#[from] GuardError),
}

/// Binds `config.server.addr` and runs until `cancel` fires.
///
/// # Errors
/// [`ServiceError`] when the address cannot be bound or a client cannot be built.
pub async fn run(config: Config, cancel: CancellationToken) -> Result<(), ServiceError> {
    let addr = config.server.addr;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ServiceError::Bind { addr, source })?;
    run_with_listener(config, listener, cancel).await
}

/// Runs the service on an already bound listener until `cancel` fires, then shuts down
/// gracefully.
///
/// # Errors
/// [`ServiceError`] when a client cannot be built or the server fails.
pub async fn run_with_listener(
    config: Config,
    listener: TcpListener,
    cancel: CancellationToken,
) -> Result<(), ServiceError> {
    let metrics = Arc::new(Metrics::default());
    let history = Arc::new(History::open(&config.history, unix_now())?);
    let store = Arc::new(
        Store::new(
            config.detections.iter().map(|d| d.name.as_str()),
            config.server.recent_anomalies,
        )
        .with_history(history.clone()),
    );
    let guards = Guards::from_config(&config.server)?;
    let insights = Arc::new(Insights::new(&config.prometheus, config.insights.clone())?);
    let live = Arc::new(Live::default());
    let client = PrometheusClient::new(&config.prometheus)?;
    let mut sinks = JoinSet::new();
    let sink_cancel = CancellationToken::new();
    let dispatcher = AlertDispatcher::start(
        config.alertmanager.as_ref(),
        &config.webhooks,
        metrics.clone(),
        &mut sinks,
        sink_cancel.clone(),
    )?;
    let ctx = RunnerContext {
        client,
        store: store.clone(),
        metrics: metrics.clone(),
        alerts: dispatcher,
        dashboard_url: config.dashboard_url.clone(),
    };
    let addr = listener.local_addr().ok();
    tracing::info!(
        addr = ?addr,
        prometheus = %config.prometheus.url,
        alertmanager = config.alertmanager.as_ref().map(|a| a.url.as_str()).unwrap_or("none"),
        webhooks = config.webhooks.len(),
        detections = config.detections.len(),
        "anomaly-detector started"
    );
    let mut runners = JoinSet::new();
    for d in config.detections {
        let interval = d.interval(config.evaluation_interval);
        tracing::info!(detection = %d.name, interval = ?interval, step = ?d.step, history = ?d.history, "scheduling detection");
        runners.spawn(DetectionRunner::new(d, interval, ctx.clone()).run(cancel.clone()));
    }
    // The runners hold the only dispatcher clones now: when they end, the sink queues close.
    drop(ctx);

    let mut background = JoinSet::new();
    background.spawn(
        live.clone()
            .run(insights.clone(), store.clone(), cancel.clone()),
    );
    background.spawn(prune_history(history, cancel.clone()));
    tracing::info!(
        auth = guards.auth_enabled(),
        rate_limit = config.server.rate_limit.enabled,
        history = config
            .history
            .path
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "in memory".into()),
        "insights API and live view at /"
    );
    let state = AppState {
        store,
        metrics,
        started: Instant::now(),
        insights,
        live,
    };
    let app = router(state, &guards).into_make_service_with_connect_info::<std::net::SocketAddr>();
    let server =
        axum::serve(listener, app).with_graceful_shutdown(cancel.clone().cancelled_owned());
    let server = tokio::spawn(async move { server.await });

    cancel.cancelled().await;
    tracing::info!("shutting down: finishing cycles and delivering queued alerts");
    while runners.join_next().await.is_some() {}
    let drained = tokio::time::timeout(ALERT_FLUSH_DEADLINE, async {
        while sinks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(deadline = ?ALERT_FLUSH_DEADLINE, "alert delivery did not finish before the deadline; dropping the rest");
        sink_cancel.cancel();
        sinks.shutdown().await;
    }
    while background.join_next().await.is_some() {}
    match server.await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(ServiceError::Serve(e)),
        Err(_) => Ok(()),
    }
}

async fn prune_history(history: Arc<History>, cancel: CancellationToken) {
    let mut tick = tokio::time::interval(HISTORY_PRUNE_INTERVAL);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        let h = history.clone();
        if let Ok(Err(e)) = tokio::task::spawn_blocking(move || h.prune(unix_now())).await {
            tracing::warn!(error = %e, "anomaly history retention failed");
        }
    }
}
