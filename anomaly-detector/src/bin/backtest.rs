//! Temporary stand-alone backtest runner until `anomaly-detector backtest` is wired in `main.rs`:
//! `backtest --input DIR --output DIR [--config MODEL.yaml] [--raw-score]`.
//!
//! The optional YAML file holds a `ModelConfig` (see `docs/anomaly-model.md`).

use std::path::PathBuf;

use anomaly_detector::backtest::{run_backtest_with, BacktestOptions, ScoreColumn};
use anomaly_detector::model::ModelConfig;
use anyhow::Context as _;
use clap::Parser;

/// Replays CSV series through the anomaly model and writes NAB-format scores.
#[derive(Parser)]
struct Args {
    /// Directory tree (or file) of CSV series with columns timestamp,value.
    #[arg(long)]
    input: PathBuf,
    /// Output directory (mirrors the input tree).
    #[arg(long)]
    output: PathBuf,
    /// YAML file with model settings (ModelConfig); defaults otherwise.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Write the raw per-point score instead of the onset score.
    #[arg(long)]
    raw_score: bool,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let config: ModelConfig = match &args.config {
        Some(p) => {
            let text =
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            serde_yaml::from_str(&text)
                .with_context(|| format!("{}: invalid model settings", p.display()))?
        }
        None => ModelConfig::default(),
    };
    let opts = BacktestOptions {
        score: if args.raw_score {
            ScoreColumn::Raw
        } else {
            ScoreColumn::Onset
        },
        progress: true,
    };
    let s = run_backtest_with(&args.input, &args.output, &config, &opts)?;
    if std::env::var_os("BACKTEST_VERBOSE").is_some() {
        for f in &s.per_file {
            eprintln!(
                "{:60} rows={:6} model={:13} period={}",
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
