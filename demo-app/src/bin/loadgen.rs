//! `loadgen`: open-loop HTTP load against the demo shop, with incident injection.
//!
//! `loadgen --target URL --rps N --duration 60s [--pattern flat|diurnal] [--inject KIND@START+LEN]`
//! See `docs/demo-app.md`.

use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use demo_app::loadgen::{run, Inject, LoadOptions, Pattern, Schedule};

/// Largest accepted --duration.
const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);

/// Open-loop load generator for the demo shop.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// Base URL of the frontend.
    #[arg(long, env = "LOADGEN_TARGET", default_value = "http://127.0.0.1:8080")]
    target: reqwest::Url,
    /// Mean requests per second (open loop).
    #[arg(long, required_unless_present = "concurrency")]
    rps: Option<f64>,
    /// How long to send (e.g. 60s, 10m).
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Rate shape.
    #[arg(long, value_enum, default_value = "flat")]
    pattern: Pattern,
    /// Length of one compressed day for --pattern diurnal.
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    day: Duration,
    /// Incident KIND[=VALUE]@START+LEN (repeatable): error-spike, latency-spike, traffic-drop.
    #[arg(long)]
    inject: Vec<Inject>,
    /// Per-request timeout.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// Most requests open at once; planned starts beyond it are dropped and counted.
    #[arg(long, default_value_t = 10_000)]
    max_in_flight: usize,
    /// Progress line period.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    progress: Duration,
    /// Closed loop: N workers sending back to back, ignoring --rps (throughput benchmarks).
    #[arg(long)]
    concurrency: Option<usize>,
    /// Also print the summary as one JSON line.
    #[arg(long)]
    json: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if cli.duration.is_zero() || cli.duration > MAX_DURATION {
        anyhow::bail!(
            "--duration {:?} is out of range: use 1s..=24h",
            cli.duration
        );
    }
    let rps = cli.rps.unwrap_or(0.0);
    if cli.concurrency.is_none() && !(rps > 0.0 && rps <= 100_000.0) {
        anyhow::bail!("--rps {rps} is out of range: use 0 < N <= 100000");
    }
    let opts = LoadOptions {
        target: cli.target.clone(),
        schedule: Schedule {
            rps,
            pattern: cli.pattern,
            day: cli.day,
            injects: cli.inject,
        },
        duration: cli.duration,
        timeout: cli.timeout,
        max_in_flight: cli.max_in_flight,
        progress_every: cli.progress.max(Duration::from_millis(100)),
        concurrency: cli.concurrency,
    };
    let mode = match cli.concurrency {
        Some(c) => format!("closed loop, {c} workers"),
        None => format!("open loop, {rps} rps {:?}", cli.pattern),
    };
    println!(
        "loadgen: target={} {mode} for {:?}",
        cli.target, cli.duration
    );
    let summary = run(opts, |line| println!("{line}"))
        .await
        .context("running load")?;
    println!("{}", summary.render());
    if cli.json {
        println!("{}", serde_json::to_string(&summary)?);
    }
    Ok(())
}
