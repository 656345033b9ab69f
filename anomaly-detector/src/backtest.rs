//! Offline replay of CSV series through [`SeriesDetector`], the same code path as the live service:
//! every point is scored from earlier points only, then fed to the model.
//!
//! Input: a directory tree of CSV files with a header and columns `timestamp,value` (timestamps as
//! `YYYY-MM-DD HH:MM:SS[.fff]`, RFC 3339 or unix seconds). Output: the same tree with one file per
//! input, columns `timestamp,value,anomaly_score` (the Numenta Anomaly Benchmark's results format;
//! `../shared/nab-public/score.py --results OUT` scores it directly).
//!
//! Tests: `cargo test -p anomaly-detector backtest` and `--test model_backtest`.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use crate::model::{ModelConfig, ModelKind, SeriesDetector};

/// Errors of a backtest run.
#[derive(Debug, thiserror::Error)]
pub enum BacktestError {
    /// A file or directory could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The path concerned.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A CSV file is malformed.
    #[error("{path}: {source} (expected a header and columns timestamp,value)")]
    Csv {
        /// The file concerned.
        path: PathBuf,
        /// The underlying error.
        source: csv::Error,
    },
    /// A row has a timestamp that cannot be parsed.
    #[error("{path}: row {row}: cannot parse timestamp {value:?} (use YYYY-MM-DD HH:MM:SS, RFC 3339 or unix seconds)")]
    Timestamp {
        /// The file concerned.
        path: PathBuf,
        /// 1-based data row.
        row: usize,
        /// The text found.
        value: String,
    },
    /// The input has no CSV files.
    #[error("{0}: no .csv files found; pass a directory (or file) of CSV series with columns timestamp,value")]
    NoInput(PathBuf),
}

/// Which score the backtest writes as `anomaly_score`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ScoreColumn {
    /// [`crate::model::Evaluation::onset_score`]: one score per event (default; NAB rewards it).
    #[default]
    Onset,
    /// [`crate::model::Evaluation::score`]: the raw per-point score.
    Raw,
    /// What the live service pages for: the score at the first point of each run of
    /// [`crate::model::Evaluation::anomalous`] points (an alert starting), 0 elsewhere. The
    /// `score_threshold`, `consecutive`, band and `direction` rules apply; scored by NAB, every
    /// alert outside a window is a false positive.
    Alert,
}

/// Options beyond the model configuration.
#[derive(Debug, Clone, Default)]
pub struct BacktestOptions {
    /// Score written to the output.
    pub score: ScoreColumn,
    /// Draw a progress bar on stderr.
    pub progress: bool,
}

/// What a backtest did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BacktestSummary {
    /// Files processed.
    pub files: usize,
    /// Rows processed.
    pub rows: usize,
    /// Rows flagged anomalous (score over the threshold for `consecutive` points).
    pub anomalous_rows: usize,
    /// Files whose last model was seasonal Holt-Winters.
    pub seasonal_files: usize,
    /// Per file: relative path, rows, last model and its seasonal period (0 = none).
    pub per_file: Vec<FileSummary>,
    /// Time spent in the model (excludes I/O).
    pub model_time: Duration,
    /// Wall time including I/O.
    pub wall_time: Duration,
}

/// One file of a backtest.
#[derive(Debug, Clone, PartialEq)]
pub struct FileSummary {
    /// Path relative to the input.
    pub path: PathBuf,
    /// Rows.
    pub rows: usize,
    /// Model after the last row.
    pub model: ModelKind,
    /// Seasonal period after the last row, in points (0 = none).
    pub period: usize,
}

/// Replays every CSV under `input` through a fresh detector per file and writes the scores under
/// `output`, mirroring the tree; draws a progress bar.
///
/// # Errors
/// I/O and CSV errors name the file; see [`BacktestError`].
pub fn run_backtest(
    input: &Path,
    output: &Path,
    config: &ModelConfig,
) -> Result<BacktestSummary, BacktestError> {
    run_backtest_with(
        input,
        output,
        config,
        &BacktestOptions {
            progress: true,
            ..BacktestOptions::default()
        },
    )
}

/// [`run_backtest`] with options.
///
/// # Errors
/// I/O and CSV errors name the file; see [`BacktestError`].
pub fn run_backtest_with(
    input: &Path,
    output: &Path,
    config: &ModelConfig,
    opts: &BacktestOptions,
) -> Result<BacktestSummary, BacktestError> {
    let start = Instant::now();
    let mut files = Vec::new();
    if input.is_file() {
        files.push(PathBuf::new());
    } else {
        collect_csv(input, Path::new(""), &mut files)?;
    }
    files.sort();
    if files.is_empty() {
        return Err(BacktestError::NoInput(input.to_path_buf()));
    }
    let bar = if opts.progress {
        let b = ProgressBar::new(files.len() as u64);
        if let Ok(style) =
            ProgressStyle::with_template("{bar:40} {pos}/{len} files {elapsed} {wide_msg}")
        {
            b.set_style(style);
        }
        b
    } else {
        ProgressBar::hidden()
    };
    let mut summary = BacktestSummary::default();
    for rel in &files {
        let (src, dst) = if rel.as_os_str().is_empty() {
            let name = input
                .file_name()
                .map(PathBuf::from)
                .unwrap_or_else(|| "series.csv".into());
            (input.to_path_buf(), output.join(name))
        } else {
            (input.join(rel), output.join(rel))
        };
        bar.set_message(rel.display().to_string());
        let series = read_series(&src)?;
        let t0 = Instant::now();
        let scored = score_series(&series, config, opts.score);
        summary.model_time += t0.elapsed();
        summary.rows += series.len();
        summary.anomalous_rows += scored.anomalous;
        summary.seasonal_files += usize::from(scored.last_model == ModelKind::SeasonalHoltWinters);
        summary.files += 1;
        summary.per_file.push(FileSummary {
            path: rel.clone(),
            rows: series.len(),
            model: scored.last_model,
            period: scored.last_period,
        });
        write_scores(&dst, &series, &scored.scores)?;
        bar.inc(1);
    }
    bar.finish_and_clear();
    summary.wall_time = start.elapsed();
    Ok(summary)
}

/// One input row.
#[derive(Debug, Clone)]
pub struct Row {
    /// Timestamp text as read (written back unchanged).
    pub raw_ts: String,
    /// Unix seconds.
    pub ts: i64,
    /// Value (NaN when empty or unparsable).
    pub value: f64,
}

/// Scores of one series.
#[derive(Debug, Clone)]
pub struct Scored {
    /// One score per row.
    pub scores: Vec<f64>,
    /// Rows flagged anomalous.
    pub anomalous: usize,
    /// Model after the last row.
    pub last_model: ModelKind,
    /// Seasonal period after the last row (0 = none).
    pub last_period: usize,
}

/// Runs one series through a fresh detector (step = median timestamp difference).
#[must_use]
pub fn score_series(rows: &[Row], config: &ModelConfig, column: ScoreColumn) -> Scored {
    let step = median_step(rows);
    let mut det = SeriesDetector::new(config, step);
    let mut scores = Vec::with_capacity(rows.len());
    let mut anomalous = 0;
    let mut was_anomalous = false;
    for r in rows {
        let e = det.observe(r.ts, r.value);
        anomalous += usize::from(e.anomalous);
        let s = match column {
            ScoreColumn::Onset => e.onset_score,
            ScoreColumn::Raw => e.score,
            ScoreColumn::Alert if e.anomalous && !was_anomalous => e.score,
            ScoreColumn::Alert => 0.0,
        };
        was_anomalous = e.anomalous;
        scores.push(if s.is_finite() {
            s.clamp(0.0, 1.0)
        } else {
            0.0
        });
    }
    Scored {
        scores,
        anomalous,
        last_model: det.model_kind(),
        last_period: det.period(),
    }
}

fn median_step(rows: &[Row]) -> f64 {
    let mut d: Vec<i64> = rows
        .windows(2)
        .map(|w| w[1].ts - w[0].ts)
        .filter(|d| *d > 0)
        .collect();
    if d.is_empty() {
        return f64::NAN;
    }
    let mid = d.len() / 2;
    *d.select_nth_unstable(mid).1 as f64
}

fn collect_csv(root: &Path, rel: &Path, out: &mut Vec<PathBuf>) -> Result<(), BacktestError> {
    let dir = root.join(rel);
    let entries = fs::read_dir(&dir).map_err(|source| BacktestError::Io {
        path: dir.clone(),
        source,
    })?;
    for entry in entries {
        let entry = entry.map_err(|source| BacktestError::Io {
            path: dir.clone(),
            source,
        })?;
        let name = entry.file_name();
        let path = rel.join(&name);
        let ft = entry.file_type().map_err(|source| BacktestError::Io {
            path: dir.join(&name),
            source,
        })?;
        if ft.is_dir() {
            collect_csv(root, &path, out)?;
        } else if path.extension().is_some_and(|e| e == "csv") {
            out.push(path);
        }
    }
    Ok(())
}

/// Reads a `timestamp,value` CSV (extra columns ignored).
///
/// # Errors
/// Unreadable files, malformed CSV and unparsable timestamps.
pub fn read_series(path: &Path) -> Result<Vec<Row>, BacktestError> {
    let csv_err = |source| BacktestError::Csv {
        path: path.to_path_buf(),
        source,
    };
    let mut rdr = csv::ReaderBuilder::new()
        .flexible(true)
        .from_path(path)
        .map_err(csv_err)?;
    let headers = rdr.headers().map_err(csv_err)?.clone();
    let col = |name: &str, dflt: usize| {
        headers
            .iter()
            .position(|h| h.trim() == name)
            .unwrap_or(dflt)
    };
    let (ti, vi) = (col("timestamp", 0), col("value", 1));
    let mut rows = Vec::new();
    for (i, rec) in rdr.records().enumerate() {
        let rec = rec.map_err(csv_err)?;
        let raw_ts = rec.get(ti).unwrap_or("").trim().to_string();
        let ts = parse_timestamp(&raw_ts).ok_or_else(|| BacktestError::Timestamp {
            path: path.to_path_buf(),
            row: i + 1,
            value: raw_ts.clone(),
        })?;
        let value = rec
            .get(vi)
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(f64::NAN);
        rows.push(Row { raw_ts, ts, value });
    }
    Ok(rows)
}

fn write_scores(path: &Path, rows: &[Row], scores: &[f64]) -> Result<(), BacktestError> {
    let io_err = |source| BacktestError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(io_err)?;
    }
    let mut out = String::with_capacity(rows.len() * 40);
    out.push_str("timestamp,value,anomaly_score\n");
    for (r, s) in rows.iter().zip(scores) {
        let v = if r.value.is_finite() {
            r.value.to_string()
        } else {
            String::new()
        };
        out.push_str(&format!("{},{},{:.9}\n", r.raw_ts, v, s));
    }
    let mut f = fs::File::create(path).map_err(io_err)?;
    f.write_all(out.as_bytes()).map_err(io_err)
}

/// Parses `YYYY-MM-DD[ T]HH:MM[:SS[.fff]][Z|±HH:MM]` or integer/float unix seconds.
#[must_use]
pub fn parse_timestamp(s: &str) -> Option<i64> {
    let s = s.trim();
    if let Ok(v) = s.parse::<f64>() {
        return (v.is_finite() && v.abs() < 1e15).then_some(v.floor() as i64);
    }
    let b = s.as_bytes();
    if b.len() < 16
        || b[4] != b'-'
        || b[7] != b'-'
        || !(b[10] == b' ' || b[10] == b'T')
        || b[13] != b':'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d, h, mi) = (
        num(0..4)?,
        num(5..7)?,
        num(8..10)?,
        num(11..13)?,
        num(14..16)?,
    );
    let mut rest = &s[16..];
    let mut sec = 0;
    if let Some(r) = rest.strip_prefix(':') {
        sec = r.get(0..2)?.parse::<i64>().ok()?;
        rest = &r[2..];
        if let Some(r) = rest.strip_prefix('.') {
            let n = r.bytes().take_while(u8::is_ascii_digit).count();
            rest = &r[n..];
        }
    }
    let offset = match rest {
        "" | "Z" | "z" => 0,
        tz if tz.len() == 6 && (tz.starts_with('+') || tz.starts_with('-')) => {
            let sign = if tz.starts_with('-') { -1 } else { 1 };
            sign * (tz.get(1..3)?.parse::<i64>().ok()? * 3600
                + tz.get(4..6)?.parse::<i64>().ok()? * 60)
        }
        _ => return None,
    };
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    Some(days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + sec - offset)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_nab_and_rfc3339_timestamps() {
        assert_eq!(parse_timestamp("1970-01-01 00:00:00"), Some(0));
        assert_eq!(parse_timestamp("2014-04-01 00:05:00"), Some(1_396_310_700));
        assert_eq!(parse_timestamp("2014-04-01T00:05:00Z"), Some(1_396_310_700));
        assert_eq!(
            parse_timestamp("2014-04-01T02:05:00+02:00"),
            Some(1_396_310_700)
        );
        assert_eq!(
            parse_timestamp("2014-04-01 00:05:00.250"),
            Some(1_396_310_700)
        );
        assert_eq!(parse_timestamp("1396310700"), Some(1_396_310_700));
        assert_eq!(parse_timestamp("yesterday"), None);
        assert_eq!(parse_timestamp("2014-13-01 00:00:00"), None);
    }
}
