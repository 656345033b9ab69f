//! `otel-collector`: runs, validates or prints an otelcol-format configuration.
//!
//! ```text
//! otel-collector --config a.yaml [--config b.yaml]    # run until SIGTERM/SIGINT (SIGHUP reloads)
//! otel-collector validate --config a.yaml             # check, exit 1 with the problems
//! otel-collector print-config --config a.yaml         # the merged, substituted config
//! otel-collector components                           # the component types implemented
//! otel-collector --health-probe http://127.0.0.1:13133/  # exit 0 when the URL answers 2xx
//! ```
//! Logs: `RUST_LOG` (default `info`, OpenTelemetry crates at `warn`), `LOG_FORMAT=json`.
//! Tests: `tests/core_*.rs` run this binary.

/// mimalloc: the decode → batch → encode path allocates and frees millions of small strings and
/// vectors per second; glibc malloc spent a quarter of the CPU on them in the trace benchmark.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use otel_collector::config::Config;
use otel_collector::pipeline::service::Service;
use std::path::PathBuf;
use tracing_subscriber::EnvFilter;

/// An OpenTelemetry collector: OTLP in, processors, fan-out to exporters.
#[derive(Parser, Debug)]
#[command(name = "otel-collector", version, about)]
struct Cli {
    /// Configuration file(s) in the otelcol YAML format; several are merged in order.
    #[arg(long = "config", global = true, value_name = "FILE")]
    config: Vec<PathBuf>,
    /// Probe a health endpoint and exit 0 when it answers 2xx, 1 otherwise (the image's
    /// HEALTHCHECK: e.g. http://127.0.0.1:13133/).
    #[arg(long, value_name = "URL", conflicts_with = "config")]
    health_probe: Option<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Check the configuration without starting anything; exit 1 with the problems found.
    Validate,
    /// Print the effective configuration (files merged, variables substituted) as YAML.
    PrintConfig,
    /// List the component types this collector implements.
    Components,
}

/// Default filter: info, and the OpenTelemetry and transport crates at warn.
const DEFAULT_FILTER: &str =
    "opentelemetry=warn,opentelemetry_sdk=warn,opentelemetry_otlp=warn,h2=warn,hyper=warn,hyper_util=warn,tonic=warn,tower=warn,reqwest=warn";

fn init_logging(config: Option<&Config>) {
    let level = config
        .and_then(|c| c.service.telemetry.logs.level)
        .map(|l| l.as_str())
        .unwrap_or("info");
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("{level},{DEFAULT_FILTER}")));
    let json = match std::env::var("LOG_FORMAT") {
        Ok(v) => v.eq_ignore_ascii_case("json"),
        Err(_) => {
            config.and_then(|c| c.service.telemetry.logs.encoding)
                == Some(otel_collector::config::LogEncoding::Json)
        }
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().flatten_event(true).init();
    } else {
        builder.init();
    }
}

/// Turns transparent huge pages off for this process unless `MIMALLOC_ALLOW_THP=1` asks for them.
///
/// mimalloc asks the kernel for 2 MiB pages on its arenas, so every touched region costs 2 MiB of
/// RSS: at a steady 10,000 spans/s that was 31-34 MiB peak instead of 19-20 MiB, and full-load
/// throughput does not need them (see docs/collector-exporters.md for the measurements).
fn disable_transparent_huge_pages() {
    if std::env::var("MIMALLOC_ALLOW_THP").is_ok_and(|v| v.trim() == "1") {
        return;
    }
    // Best effort: kernels without PR_SET_THP_DISABLE just keep their default.
    let _ = rustix::thread::disable_transparent_huge_pages(true);
}

/// Raises the soft open-files limit to the hard one (as Go programs, the upstream collector
/// among them, do at start): each client connection is a descriptor, and the common soft
/// default of 1,024 would cap the receivers far below their `max_connections`.
fn raise_open_files_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        limit.current = limit.maximum;
        // Best effort: a container may forbid it; the receivers then refuse beyond what fits.
        let _ = setrlimit(Resource::Nofile, limit);
    }
}

fn main() -> std::process::ExitCode {
    disable_transparent_huge_pages();
    raise_open_files_limit();
    let cli = Cli::parse();
    if let Some(url) = &cli.health_probe {
        return health_probe::run(url);
    }
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Some(Command::Components) => {
            use otel_collector::{
                exporter::ExporterConfig, processor::ProcessorConfig, receiver::ReceiverConfig,
            };
            println!("receivers:  {}", ReceiverConfig::KINDS.join(", "));
            println!("processors: {}", ProcessorConfig::KINDS.join(", "));
            println!("exporters:  {}", ExporterConfig::KINDS.join(", "));
            println!(
                "connectors: {}",
                otel_collector::connector::ConnectorConfig::KINDS.join(", ")
            );
            println!(
                "extensions: {}",
                otel_collector::extension::ExtensionConfig::KINDS.join(", ")
            );
            Ok(())
        }
        Some(Command::Validate) => {
            let config = Config::load(&cli.config)?;
            for w in &config.warnings {
                eprintln!("warning: {w}");
            }
            println!("configuration is valid");
            Ok(())
        }
        Some(Command::PrintConfig) => {
            let config = Config::load(&cli.config)?;
            for w in &config.warnings {
                eprintln!("warning: {w}");
            }
            print!("{}", serde_yaml::to_string(&config.effective)?);
            Ok(())
        }
        None => {
            let config = Config::load(&cli.config)?;
            init_logging(Some(&config));
            for w in &config.warnings {
                tracing::warn!("{w}");
            }
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("cannot start the async runtime")?;
            rt.block_on(serve(config, cli.config))
        }
    }
}

/// Runs until SIGTERM or SIGINT; SIGHUP reloads the config files (kept if the new one is invalid).
async fn serve(mut config: Config, paths: Vec<PathBuf>) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("cannot install the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot install the SIGINT handler")?;
    let mut hup = signal(SignalKind::hangup()).context("cannot install the SIGHUP handler")?;
    let mut service = Service::start(&config).await?;
    tracing::info!(
        pipelines = config.service.pipelines.len(),
        "collector started"
    );
    loop {
        tokio::select! {
            _ = term.recv() => { tracing::info!("SIGTERM: shutting down"); break; }
            _ = int.recv() => { tracing::info!("SIGINT: shutting down"); break; }
            _ = hup.recv() => {
                match Config::load(&paths) {
                    Err(e) => tracing::error!("SIGHUP: new configuration rejected, keeping the running one: {e}"),
                    Ok(new) => {
                        tracing::info!("SIGHUP: reloading configuration");
                        service.shutdown().await;
                        service = match Service::start(&new).await {
                            Ok(s) => {
                                config = new;
                                s
                            }
                            Err(e) => {
                                tracing::error!("reloaded configuration failed to start ({e}); restarting the previous one");
                                Service::start(&config).await?
                            }
                        };
                    }
                }
            }
        }
    }
    service.shutdown().await;
    tracing::info!("collector stopped");
    Ok(())
}
