//! Speed of the anomaly model on one core: fit + score one 10,000-point series, and a cycle over
//! 10,000 series of 1,000 points (each a fresh detector replaying its window, as the live service
//! does after a restart). Writes the series it used so `bench/speed_statsmodels.py` can time
//! statsmodels' `ExponentialSmoothing` on the same data and print the ratios.
//!
//! Run: `make bench-detector-speed` (pins both to one core with `taskset -c 0`), or
//! `cargo bench -p anomaly-detector --bench speed -- [--dump DIR] [--series N] [--points N]`.

use std::hint::black_box;
use std::io::Write as _;
use std::path::PathBuf;
use std::time::Instant;

use anomaly_detector::model::{ModelConfig, SeriesDetector};

const STEP: i64 = 300;
const PERIOD: usize = 288;

/// Deterministic uniform noise in [-0.5, 0.5) (splitmix64).
fn noise(seed: u64) -> f64 {
    let mut z = seed.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64 - 0.5
}

/// A daily-seasonal series (5-minute steps) with trend, noise and a few spikes.
fn series(id: u64, n: usize) -> Vec<f64> {
    let base = 50.0 + (id % 17) as f64;
    let amp = 5.0 + (id % 5) as f64;
    (0..n)
        .map(|i| {
            let phase = (i % PERIOD) as f64 / PERIOD as f64 * std::f64::consts::TAU;
            let spike = if i % 1_777 == 1_000 { 40.0 } else { 0.0 };
            base + 0.002 * i as f64
                + amp * phase.sin()
                + 2.0 * noise(id * 1_000_003 + i as u64)
                + spike
        })
        .collect()
}

fn run(y: &[f64], config: &ModelConfig) -> f64 {
    let mut det = SeriesDetector::new(config, STEP as f64);
    let mut acc = 0.0;
    for (i, &v) in y.iter().enumerate() {
        acc += det.observe(1_700_000_000 + i as i64 * STEP, v).score;
    }
    acc
}

fn dump(path: &PathBuf, y: &[f64]) -> std::io::Result<()> {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    for v in y {
        writeln!(f, "{v}")?;
    }
    f.flush()
}

fn main() -> std::io::Result<()> {
    let mut dump_dir: Option<PathBuf> = None;
    let mut n_series = 10_000usize;
    let mut n_points = 1_000usize;
    let mut dump_series = 50usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--dump" => dump_dir = args.next().map(PathBuf::from),
            "--series" => n_series = args.next().and_then(|v| v.parse().ok()).unwrap_or(n_series),
            "--points" => n_points = args.next().and_then(|v| v.parse().ok()).unwrap_or(n_points),
            "--dump-series" => {
                dump_series = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(dump_series)
            }
            _ => {} // cargo bench passes --bench
        }
    }
    let config = ModelConfig::default();

    let long = series(0, 10_000);
    let t0 = Instant::now();
    black_box(run(&long, &config));
    let one = t0.elapsed().as_secs_f64();

    let cycle: Vec<Vec<f64>> = (1..=n_series as u64)
        .map(|id| series(id, n_points))
        .collect();
    let t0 = Instant::now();
    for y in &cycle {
        black_box(run(y, &config));
    }
    let many = t0.elapsed().as_secs_f64();

    if let Some(dir) = &dump_dir {
        std::fs::create_dir_all(dir)?;
        dump(&dir.join("long.txt"), &long)?;
        for (i, y) in cycle.iter().take(dump_series).enumerate() {
            dump(&dir.join(format!("cycle_{i:05}.txt")), y)?;
        }
    }
    println!(
        "{{\"one_series_points\":10000,\"one_series_s\":{one:.6},\"cycle_series\":{n_series},\"cycle_points\":{n_points},\"cycle_s\":{many:.6},\"period\":{PERIOD}}}"
    );
    eprintln!(
        "rust: one 10,000-point series {:.1} ms; cycle of {} series x {} points {:.2} s ({:.0} series/s)",
        one * 1e3,
        n_series,
        n_points,
        many,
        n_series as f64 / many
    );
    Ok(())
}
