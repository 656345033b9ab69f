//! `node-agent`: collects host and top-N process metrics and exports them over OTLP.
//!
//! `node-agent [--config FILE]` runs until SIGTERM/Ctrl-C, then collects once more and
//! flushes. `node-agent --once` prints one collection as OTLP JSON and exits.
//! `node-agent --print-config` prints the effective configuration. `--health-addr ADDR` serves
//! `/health` for probes; `--health-probe URL` checks such an endpoint and exits (HEALTHCHECK).
//! Runs on a single-threaded tokio runtime: the work is a short burst of file reads per
//! interval, so more threads would only add memory.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use node_agent::agent::Agent;
use node_agent::config::Config;
use node_agent::export::Exporter;
use node_agent::resource;
use tokio::time::MissedTickBehavior;

#[derive(Debug, Parser)]
#[command(
    name = "node-agent",
    version,
    about = "Host and process metrics over OTLP"
)]
struct Cli {
    /// YAML config file (defaults apply without one).
    #[arg(long, short = 'c', env = "NODE_AGENT_CONFIG")]
    config: Option<PathBuf>,
    /// Print one collection as OTLP JSON (ExportMetricsServiceRequest) and exit.
    #[arg(long)]
    once: bool,
    /// With --once: time between the priming and the printed collection (for utilization).
    #[arg(long, default_value = "1s", value_parser = humantime_serde::re::humantime::parse_duration)]
    once_window: Duration,
    /// The host's root filesystem mounted in a container (e.g. `/host`): report on the host,
    /// not the container (sets `root.host`; wins over the file).
    #[arg(long, env = "NODE_AGENT_HOST_ROOT", value_name = "DIR")]
    host_root: Option<PathBuf>,
    /// Print the effective configuration (file + environment) as YAML and exit.
    #[arg(long)]
    print_config: bool,
    /// Serve `GET /health` on this address (200 while collections keep happening, 503 once the
    /// last is 3 intervals old), for Kubernetes probes. Off by default.
    #[arg(long, env = "NODE_AGENT_HEALTH_ADDR", value_name = "ADDR")]
    health_addr: Option<std::net::SocketAddr>,
    /// Probe a health endpoint and exit 0 when it answers 2xx, 1 otherwise (the image's
    /// HEALTHCHECK: e.g. http://127.0.0.1:13134/health).
    #[arg(long, value_name = "URL")]
    health_probe: Option<String>,
}

fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new("info,h2=warn,hyper=warn,tonic=warn,tower=warn,reqwest=warn")
    });
    let json = std::env::var("LOG_FORMAT").is_ok_and(|v| v.eq_ignore_ascii_case("json"));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        b.json().init();
    } else {
        b.init();
    }
}

fn env(k: &str) -> Option<String> {
    std::env::var(k).ok()
}

fn main() -> anyhow::Result<std::process::ExitCode> {
    let cli = Cli::parse();
    if let Some(url) = &cli.health_probe {
        return Ok(health_probe::run(url));
    }
    init_logging();
    let mut cfg = Config::load(cli.config.as_deref(), &env)?;
    if let Some(dir) = &cli.host_root {
        cfg.root.host = Some(dir.clone());
        cfg.validate()?;
    }
    if cli.print_config {
        print!("{}", serde_yaml::to_string(&cfg)?);
        return Ok(std::process::ExitCode::SUCCESS);
    }
    let attrs = resource::attributes(&cfg, &env)?;
    let res = resource::to_proto(&attrs);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("building the tokio runtime")?;
    rt.block_on(run(cli, cfg, res))?;
    Ok(std::process::ExitCode::SUCCESS)
}

async fn run(
    cli: Cli,
    cfg: Config,
    res: opentelemetry_proto::tonic::resource::v1::Resource,
) -> anyhow::Result<()> {
    let mut agent = Agent::new(&cfg, res);
    if cli.once {
        agent.collect(true);
        tokio::time::sleep(cli.once_window).await;
        let req = agent.collect(true);
        let out = serde_json::to_string_pretty(&req)?;
        println!("{out}");
        return Ok(());
    }
    let mut exporter = Exporter::new(&cfg.export)?;
    tracing::info!(
        url = exporter.url(),
        protocol = ?cfg.export.protocol,
        interval = ?cfg.interval,
        top_n = cfg.scrapers.process.top_n,
        "node-agent started"
    );
    let heartbeat = node_agent::health::Heartbeat::new(cfg.interval);
    if let Some(addr) = cli.health_addr {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr} (--health-addr)"))?;
        let app = node_agent::health::app(heartbeat.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        tracing::info!(%addr, "serving /health");
    }
    let mut tick = tokio::time::interval(cfg.interval);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = tick.tick() => {
                let req = agent.collect(false);
                exporter.enqueue(&req);
                drop(req);
                heartbeat.beat();
                // The send may take up to the export timeout; a signal interrupts it and the
                // unsent body stays queued for the final flush.
                tokio::select! {
                    _ = &mut shutdown => break,
                    _ = exporter.drain(false) => {}
                }
            }
        }
    }
    tracing::info!(
        queued = exporter.queued(),
        "shutting down: final collection and flush"
    );
    let req = agent.collect(false);
    exporter.enqueue(&req);
    if tokio::time::timeout(cfg.export.shutdown_timeout, exporter.drain(true))
        .await
        .is_err()
    {
        tracing::warn!(budget = ?cfg.export.shutdown_timeout, "flush deadline reached");
    }
    let s = exporter.stats;
    tracing::info!(
        sent = s.sent,
        unsent = exporter.queued(),
        failed_attempts = s.failed_attempts,
        dropped_buffer_full = s.dropped_full,
        dropped_rejected = s.dropped_rejected,
        unreadable_files = agent.unreadable_total(),
        "node-agent stopped"
    );
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot install SIGTERM handler; Ctrl-C only");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
