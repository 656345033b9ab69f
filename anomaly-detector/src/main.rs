//! `anomaly-detector --config FILE.yaml` runs the detections on their schedule and serves the
//! HTTP API; `anomaly-detector backtest --input DIR --output DIR` replays CSV series through the
//! same model and writes NAB-format scores. See `docs/anomaly-detector.md`.
//!
//! Tests: `cargo test -p anomaly-detector` (the live tests start this binary).

use std::path::PathBuf;

use anomaly_detector::backtest::{run_backtest_with, BacktestOptions, ScoreColumn};
use anomaly_detector::config::Config;
use anomaly_detector::model::ModelConfig;
use anomaly_detector::{service, telemetry};
use anyhow::Context as _;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

/// Holt-Winters anomaly detection over Prometheus series, with Alertmanager and webhook alerts.
#[derive(Parser)]
#[command(name = "anomaly-detector", version)]
struct Cli {
    /// Service configuration (YAML); the shipped one is anomaly-detector/config/detector.yaml.
    /// PROMETHEUS_URL, ALERTMANAGER_URL and DETECTOR_ADDR override it.
    #[arg(long, env = "DETECTOR_CONFIG")]
    config: Option<PathBuf>,
    /// Validate the configuration, print the effective settings and exit.
    #[arg(long)]
    check: bool,
    /// Probe a health endpoint and exit 0 when it answers 2xx, 1 otherwise (the image's
    /// HEALTHCHECK: e.g. http://127.0.0.1:9464/health).
    #[arg(long, value_name = "URL")]
    health_probe: Option<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

/// `backtest --score` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ScoreArg {
    Onset,
    Raw,
    Alert,
}

impl From<ScoreArg> for ScoreColumn {
    fn from(a: ScoreArg) -> Self {
        match a {
            ScoreArg::Onset => ScoreColumn::Onset,
            ScoreArg::Raw => ScoreColumn::Raw,
            ScoreArg::Alert => ScoreColumn::Alert,
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Replay CSV series (timestamp,value) and write timestamp,value,anomaly_score per file.
    Backtest {
        /// Directory tree (or file) of CSV series.
        #[arg(long)]
        input: PathBuf,
        /// Output directory (mirrors the input tree).
        #[arg(long)]
        output: PathBuf,
        /// YAML file with model settings (the `model:` section of a detection); defaults otherwise.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Score written as `anomaly_score`: `onset` (first score of each event, what NAB
        /// rewards), `raw` (every point's score) or `alert` (the score where a live alert
        /// starts: the first point of each run of anomalous points, 0 elsewhere).
        #[arg(long, value_enum, default_value_t = ScoreArg::Onset)]
        score: ScoreArg,
        /// Same as `--score raw` (kept for older scripts).
        #[arg(long, conflicts_with = "score")]
        raw_score: bool,
        /// Print the model and seasonal period chosen for each file (stderr).
        #[arg(long)]
        per_file: bool,
    },
}

fn main() -> anyhow::Result<std::process::ExitCode> {
    let cli = Cli::parse();
    if let Some(url) = &cli.health_probe {
        return Ok(health_probe::run(url));
    }
    run(cli).map(|()| std::process::ExitCode::SUCCESS)
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Some(Command::Backtest {
            input,
            output,
            config,
            score,
            raw_score,
            per_file,
        }) => {
            let column = if raw_score {
                ScoreColumn::Raw
            } else {
                score.into()
            };
            backtest(input, output, config, column, per_file)
        }
        None => {
            let path = cli.config.context(
                "--config FILE.yaml is required (the shipped one is anomaly-detector/config/detector.yaml)",
            )?;
            let config = Config::load(&path)?;
            if cli.check {
                println!("{config:#?}");
                eprintln!("{}: configuration is valid", path.display());
                return Ok(());
            }
            let rt = tokio::runtime::Runtime::new().context("cannot start the Tokio runtime")?;
            rt.block_on(serve(config))
        }
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let telemetry = telemetry::init()?;
    if telemetry.exporting() {
        tracing::info!("exporting cycle traces over OTLP");
    }
    let cancel = CancellationToken::new();
    tokio::spawn(shutdown_on_signal(cancel.clone()));
    let result = service::run(config, cancel).await;
    tokio::task::spawn_blocking(move || telemetry.shutdown())
        .await
        .ok();
    result?;
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_on_signal(cancel: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot watch SIGTERM; Ctrl-C only");
                    let _ = ctrl_c.await;
                    cancel.cancel();
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutdown signal received");
    cancel.cancel();
}

fn backtest(
    input: PathBuf,
    output: PathBuf,
    config: Option<PathBuf>,
    column: ScoreColumn,
    per_file: bool,
) -> anyhow::Result<()> {
    let model: ModelConfig = match &config {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read model settings {}", p.display()))?;
            serde_yaml::from_str(&text).with_context(|| {
                format!(
                    "{}: invalid model settings (keys of a detection's `model:` section)",
                    p.display()
                )
            })?
        }
        None => ModelConfig::default(),
    };
    let opts = BacktestOptions {
        score: column,
        progress: true,
    };
    let s = run_backtest_with(&input, &output, &model, &opts)?;
    if per_file {
        for f in &s.per_file {
            eprintln!(
                "{}: {} rows, model {}, period {}",
                f.path.display(),
                f.rows,
                f.model,
                f.period
            );
        }
    }
    eprintln!(
        "backtest: {} files, {} rows, {} anomalous rows, {} seasonal files, model {:.3}s, wall {:.3}s",
        s.files,
        s.rows,
        s.anomalous_rows,
        s.seasonal_files,
        s.model_time.as_secs_f64(),
        s.wall_time.as_secs_f64()
    );
    Ok(())
}
