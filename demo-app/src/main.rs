//! `demo-app`: runs the demo shop. By default one process runs all three services (frontend,
//! inventory, payment) on their own loopback ports, each with its own `service.name`;
//! `--service NAME` runs one (for Kubernetes). See `docs/demo-app.md`.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use demo_app::config::SimLatency;
use demo_app::http::Readiness;
use demo_app::server::{run, Listen, RunOptions};
use demo_app::telemetry::{init, TelemetryOptions};
use demo_app::Service;
use tokio_util::sync::CancellationToken;

/// mimalloc: every traced request builds and frees many small objects (span data, attribute
/// strings, the batch queue's entries); mimalloc's thread-local free lists make that cheaper
/// than glibc malloc (measured with `make bench-demo-app`, see docs/demo-app.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Budget for flushing telemetry at exit.
const FLUSH_BUDGET: Duration = Duration::from_secs(10);

/// Instrumented demo shop (frontend, inventory, payment).
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// Run only this service (default: all three in one process).
    #[arg(long, value_enum, env = "DEMO_SERVICE")]
    service: Option<Service>,
    /// Listen address of the frontend.
    #[arg(long, env = "DEMO_ADDR", default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    /// Listen address of the inventory service.
    #[arg(long, env = "DEMO_INVENTORY_ADDR", default_value = "127.0.0.1:8081")]
    inventory_addr: SocketAddr,
    /// Listen address of the payment service.
    #[arg(long, env = "DEMO_PAYMENT_ADDR", default_value = "127.0.0.1:8082")]
    payment_addr: SocketAddr,
    /// Inventory base URL the frontend calls (default: this process's inventory listener,
    /// or http://<inventory-addr> with --service frontend).
    #[arg(long, env = "DEMO_INVENTORY_URL")]
    inventory_url: Option<String>,
    /// Payment base URL the frontend calls (default as for --inventory-url).
    #[arg(long, env = "DEMO_PAYMENT_URL")]
    payment_url: Option<String>,
    /// Multiplier of the simulated work latencies (0 turns them off).
    #[arg(long, env = "DEMO_LATENCY_SCALE", default_value_t = 1.0)]
    latency_scale: f64,
    /// How long /ready answers 503 before the listeners close at shutdown (e.g. 5s).
    #[arg(long, env = "DEMO_DRAIN_DELAY", default_value = "0s", value_parser = humantime::parse_duration)]
    drain_delay: Duration,
    /// Probe a health endpoint and exit 0 when it answers 2xx, 1 otherwise (the image's
    /// HEALTHCHECK: e.g. http://127.0.0.1:8080/health).
    #[arg(long, value_name = "URL")]
    health_probe: Option<String>,
}

async fn shutdown_signal(token: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(
            tokio::signal::unix::SignalKind::terminate(),
        ) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops the app");
                let _ = ctrl_c.await;
                token.cancel();
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => tracing::info!("Ctrl-C received"),
            _ = term.recv() => tracing::info!("SIGTERM received"),
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
    token.cancel();
}

fn main() -> anyhow::Result<std::process::ExitCode> {
    let cli = Cli::parse();
    if let Some(url) = &cli.health_probe {
        return Ok(health_probe::run(url));
    }
    tokio::runtime::Runtime::new()
        .context("cannot start the Tokio runtime")?
        .block_on(serve(cli))
        .map(|()| std::process::ExitCode::SUCCESS)
}

async fn serve(cli: Cli) -> anyhow::Result<()> {
    let services: Vec<Service> = match cli.service {
        Some(s) => vec![s],
        None => Service::ALL.to_vec(),
    };
    let listen = services
        .iter()
        .map(|&service| Listen {
            service,
            addr: match service {
                Service::Frontend => cli.addr,
                Service::Inventory => cli.inventory_addr,
                Service::Payment => cli.payment_addr,
            },
        })
        .collect();
    let telemetry =
        init(&TelemetryOptions::from_env(services.clone())).context("setting up telemetry")?;
    tracing::info!(
        services = ?services.iter().map(|s| s.service_name()).collect::<Vec<_>>(),
        exporting = telemetry.exporting(),
        "demo-app starting"
    );

    let inventory_url = cli
        .inventory_url
        .or_else(|| (cli.service.is_some()).then(|| format!("http://{}", cli.inventory_addr)));
    let payment_url = cli
        .payment_url
        .or_else(|| (cli.service.is_some()).then(|| format!("http://{}", cli.payment_addr)));
    let opts = RunOptions {
        listen,
        inventory_url,
        payment_url,
        sim: SimLatency::new(cli.latency_scale),
        drain_delay: cli.drain_delay,
    };
    let token = CancellationToken::new();
    tokio::spawn(shutdown_signal(token.clone()));
    let ready = Readiness::new();
    let served = run(opts, |s| telemetry.meter(s), ready, token, |_| {}).await;

    tracing::info!("flushing telemetry");
    let flush = tokio::task::spawn_blocking(move || telemetry.shutdown());
    match tokio::time::timeout(FLUSH_BUDGET, flush).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => eprintln!("telemetry flush failed: {e}"),
        Ok(Err(e)) => eprintln!("telemetry flush panicked: {e}"),
        Err(_) => eprintln!("telemetry flush did not finish within {FLUSH_BUDGET:?}"),
    }
    served.context("serving")?;
    Ok(())
}
