//! Building the service routers and running them with graceful shutdown.
//!
//! [`app`] returns a service's complete `Router` (routes + `/health`, `/ready`,
//! `/admin/faults` + tracking middleware); handler tests drive it with `oneshot`.
//! [`run`] binds every listener first (so port 0 works and the frontend learns the real
//! downstream addresses), marks the process ready, serves until the shutdown token fires, then
//! marks it not ready, waits the drain delay and lets axum finish in-flight requests.
//!
//! Tests: `tests/handlers.rs`, `tests/otlp.rs`.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use opentelemetry::metrics::Meter;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::SimLatency;
use crate::faults::Faults;
use crate::front::{self, FrontState};
use crate::http::{finish_router, Downstream, Readiness, ServerCtx, TracedClient};
use crate::metrics::{HttpClientMetrics, HttpServerMetrics, ShopMetrics};
use crate::{inventory, payment, Service};

/// How long in-flight requests get to finish after shutdown starts.
pub const DRAIN_BUDGET: Duration = Duration::from_secs(10);

/// Errors while building or running the services.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A listen address is taken or not allowed.
    #[error("cannot listen on {addr} for {service}: {source}; pick a free address with the flag or variable shown in `demo-app --help`")]
    Bind {
        /// The service.
        service: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A downstream URL does not parse.
    #[error("invalid {what} URL {url:?}: {source}; use e.g. http://127.0.0.1:8081")]
    Url {
        /// Which URL.
        what: &'static str,
        /// The text given.
        url: String,
        /// The parse error.
        #[source]
        source: url_error::ParseError,
    },
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
    /// Serving failed.
    #[error("{service} server failed: {source}")]
    Serve {
        /// The service.
        service: &'static str,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// Re-export of the URL parse error type used by [`ServerError::Url`].
pub mod url_error {
    pub use reqwest::Url;
    /// The URL parse error.
    pub type ParseError = <Url as std::str::FromStr>::Err;
}

/// Shared options of the routers.
#[derive(Debug, Clone)]
pub struct AppOptions {
    /// Simulated work latency.
    pub sim: SimLatency,
    /// Base URL of the inventory service (frontend only).
    pub inventory_url: String,
    /// Base URL of the payment service (frontend only).
    pub payment_url: String,
    /// The process readiness flag.
    pub ready: Readiness,
}

fn parse_url(what: &'static str, url: &str) -> Result<reqwest::Url, ServerError> {
    url.parse::<reqwest::Url>()
        .map_err(|source| ServerError::Url {
            what,
            url: url.to_string(),
            source,
        })
}

/// The complete router of `service`, with instruments from `meter`.
///
/// # Errors
/// [`ServerError::Url`] for a bad downstream URL, [`ServerError::Client`] when the HTTP client
/// cannot be built.
pub fn app(service: Service, meter: &Meter, opts: &AppOptions) -> Result<Router, ServerError> {
    let (routes, known) = match service {
        Service::Frontend => {
            let client = TracedClient::new(service, HttpClientMetrics::new(meter))?;
            let inventory = Downstream {
                service: Service::Inventory,
                base: parse_url("inventory", &opts.inventory_url)?,
            };
            let payment = Downstream {
                service: Service::Payment,
                base: parse_url("payment", &opts.payment_url)?,
            };
            let state = FrontState::new(
                client,
                inventory,
                payment,
                ShopMetrics::new(meter),
                opts.sim,
            );
            (front::routes(state), front::ROUTES)
        }
        Service::Inventory => (inventory::routes(meter, opts.sim), inventory::ROUTES),
        Service::Payment => (payment::routes(opts.sim), payment::ROUTES),
    };
    let ctx = ServerCtx {
        service,
        metrics: HttpServerMetrics::new(meter),
        faults: Faults::new(service, known),
        ready: opts.ready.clone(),
    };
    Ok(finish_router(routes, ctx))
}

/// A service to run and where.
#[derive(Debug, Clone)]
pub struct Listen {
    /// The service.
    pub service: Service,
    /// Its listen address.
    pub addr: SocketAddr,
}

/// Options of [`run`].
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Services and addresses.
    pub listen: Vec<Listen>,
    /// Inventory URL for the frontend; default: the inventory listener of this process.
    pub inventory_url: Option<String>,
    /// Payment URL for the frontend; default: the payment listener of this process.
    pub payment_url: Option<String>,
    /// Simulated work latency.
    pub sim: SimLatency,
    /// How long `/ready` answers 503 before the listeners close.
    pub drain_delay: Duration,
}

/// The addresses actually bound, in the order of [`RunOptions::listen`].
pub type Bound = Vec<(Service, SocketAddr)>;

/// Binds, serves until `shutdown` fires, then drains. `on_bound` is called once all
/// listeners are bound (tests use it to learn port-0 addresses).
///
/// # Errors
/// [`ServerError`] when binding or serving fails.
pub async fn run(
    opts: RunOptions,
    meter_of: impl Fn(Service) -> Meter,
    ready: Readiness,
    shutdown: CancellationToken,
    on_bound: impl FnOnce(&Bound),
) -> Result<(), ServerError> {
    let mut listeners = Vec::new();
    for l in &opts.listen {
        let listener = TcpListener::bind(l.addr)
            .await
            .map_err(|source| ServerError::Bind {
                service: l.service.service_name(),
                addr: l.addr,
                source,
            })?;
        let local = listener.local_addr().map_err(|source| ServerError::Bind {
            service: l.service.service_name(),
            addr: l.addr,
            source,
        })?;
        listeners.push((l.service, local, listener));
    }
    let bound: Bound = listeners.iter().map(|(s, a, _)| (*s, *a)).collect();
    let local_url = |svc: Service, default: &str| {
        bound
            .iter()
            .find(|(s, _)| *s == svc)
            .map(|(_, a)| format!("http://{a}"))
            .unwrap_or_else(|| default.to_string())
    };
    let app_opts = AppOptions {
        sim: opts.sim,
        inventory_url: opts
            .inventory_url
            .clone()
            .unwrap_or_else(|| local_url(Service::Inventory, "http://127.0.0.1:8081")),
        payment_url: opts
            .payment_url
            .clone()
            .unwrap_or_else(|| local_url(Service::Payment, "http://127.0.0.1:8082")),
        ready: ready.clone(),
    };

    let stop_accepting = CancellationToken::new();
    let mut tasks = tokio::task::JoinSet::new();
    for (service, addr, listener) in listeners {
        let router = app(service, &meter_of(service), &app_opts)?;
        let stop = stop_accepting.clone();
        tracing::info!(service = service.service_name(), %addr, "listening");
        tasks.spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await
                .map_err(|source| ServerError::Serve {
                    service: service.service_name(),
                    source,
                })
        });
    }
    on_bound(&bound);
    ready.set(true);

    tokio::select! {
        _ = shutdown.cancelled() => {}
        Some(res) = tasks.join_next() => {
            ready.set(false);
            stop_accepting.cancel();
            return match res {
                Ok(r) => r,
                Err(e) => Err(ServerError::Serve { service: "demo-app", source: std::io::Error::other(e) }),
            };
        }
    }
    tracing::info!(drain_delay = ?opts.drain_delay, "shutting down: not ready, draining");
    ready.set(false);
    tokio::time::sleep(opts.drain_delay).await;
    stop_accepting.cancel();
    let drained = tokio::time::timeout(DRAIN_BUDGET, async {
        while let Some(res) = tasks.join_next().await {
            if let Ok(Err(e)) = res {
                tracing::warn!(error = %e, "server ended with an error");
            }
        }
    })
    .await;
    if drained.is_err() {
        tracing::warn!(budget = ?DRAIN_BUDGET, "in-flight requests did not finish in time; closing");
        tasks.abort_all();
    }
    Ok(())
}
